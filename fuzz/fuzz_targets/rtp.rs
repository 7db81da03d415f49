#![no_main]
//! RTP parse, then feed the packets (and the raw bytes as a stream of
//! sequence numbers and gaps) through a jitter buffer, stats and DTMF.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tandem_proto::rtp::{DtmfDetector, JitterBuffer, MediaTime, ReceiveStats, RtpPacket};

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fuzz_target!(|data: &[u8]| {
    let t0 = epoch();
    if let Ok(p) = RtpPacket::parse(data) {
        assert!(p.payload.len() <= data.len());
        let _ = p.csrcs.iter().count();
        let mut out = Vec::new();
        p.header().write(p.payload, &mut out);
        let again = RtpPacket::parse(&out).expect("our own packet parses");
        assert_eq!(again.header(), p.header());
        assert_eq!(again.payload, p.payload);
    }

    // Interpret the input as 8-byte records: seq, timestamp, time step (ms), pop?
    let mut jb = JitterBuffer::new(
        8000,
        Duration::from_millis(20),
        Duration::from_millis(20),
        Duration::from_millis(300),
    );
    let mut stats = ReceiveStats::new(8000);
    let mut dtmf = DtmfDetector::new();
    let mut now = t0;
    for rec in data.chunks_exact(8) {
        let seq = u16::from_be_bytes([rec[0], rec[1]]);
        let ts = MediaTime(u32::from_be_bytes([rec[2], rec[3], rec[4], rec[5]]));
        now += Duration::from_millis(u64::from(rec[6]));
        stats.handle_packet(now, seq, ts);
        let _ = dtmf.handle_packet(ts, &rec[..4]);
        jb.push(now, seq, ts, rec.to_vec());
        assert!(jb.len() <= tandem_proto::rtp::jitter::MAX_PACKETS);
        for _ in 0..(rec[7] & 3) {
            if let tandem_proto::rtp::Playout::Frame { payload, .. } = jb.pop(now) {
                // Only what we pushed comes out.
                assert_eq!(payload.len(), 8);
            }
        }
        let _ = stats.report_block(0, 0);
    }
    let _ = stats.jitter_seconds();
    let _ = jb.stats();
});
