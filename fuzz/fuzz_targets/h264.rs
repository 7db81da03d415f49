#![no_main]
//! H.264 depacketizer fed with arbitrary payload sequences, then the
//! packetizer with what came out (and with the raw input as Annex B).
//!
//! Input format: records of `[seq_lo, ts_step, flags, len]` followed by
//! `len` payload bytes. `flags` bit 0 is the marker, bit 1 jumps the sequence
//! number by `ts_step` (loss, reordering), bit 2 flushes.

use libfuzzer_sys::fuzz_target;
use tandem_proto::rtp::MediaTime;
use tandem_proto::rtp::h264::{
    H264Depacketizer, H264Packetizer, MAX_ACCESS_UNIT_BYTES, PacketizationMode,
};

fuzz_target!(|data: &[u8]| {
    let window = data.first().map_or(0, |b| usize::from(b & 0x0f));
    let mut d = H264Depacketizer::with_reorder_window(window);
    d.set_freeze_until_keyframe(data.get(1).is_some_and(|b| b & 1 != 0));
    let packetizer = H264Packetizer::new(
        data.get(2).map_or(1200, |b| usize::from(*b) * 8),
        PacketizationMode::NonInterleaved,
    );
    let _ = packetizer.packetize(data);

    let mut seq: u16 = 0;
    let mut ts: u32 = 0;
    let mut rest = data.get(3..).unwrap_or(&[]);
    while let [seq_lo, step, flags, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, after) = tail.split_at(len);
        rest = after;
        if flags & 2 != 0 {
            seq = seq.wrapping_add(u16::from(*step)).wrapping_sub(64);
        } else {
            seq = (seq & 0xff00 | u16::from(*seq_lo)).wrapping_add(1);
        }
        ts = ts.wrapping_add(u32::from(*step) * 1500);
        d.handle_packet(seq, MediaTime(ts), flags & 1 != 0, payload);
        if flags & 4 != 0 {
            d.flush();
        }
        while let Some(au) = d.poll_access_unit() {
            assert!(au.data.len() <= MAX_ACCESS_UNIT_BYTES);
            assert!(au.data.starts_with(&[0, 0, 0, 1]));
            // What we reassembled can be packetized again.
            let _ = packetizer.packetize(&au.data);
        }
    }
    d.flush();
    let s = d.stats();
    assert!(s.access_units >= s.keyframes);
});
