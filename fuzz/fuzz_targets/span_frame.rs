#![no_main]
//! Span link frames (control stream and media datagrams) from a hostile
//! peer: parsing never panics, the stream decoder never grows without
//! bound, and every frame we parse survives being written back.

use libfuzzer_sys::fuzz_target;
use tandem_proto::span::{ControlFrame, FrameDecoder, MAX_FRAME, MediaDatagram};

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = MediaDatagram::parse(data) {
        let mut out = Vec::new();
        MediaDatagram::write(d.flow, d.rtp, &mut out);
        assert_eq!(out, data);
    }
    if let Ok(frame) = ControlFrame::parse(data) {
        let bytes = frame.to_bytes();
        let again = ControlFrame::parse(&bytes[2..]).expect("our own frame parses");
        assert_eq!(again, frame);
    }
    // The same bytes as a stream, cut in three uneven chunks.
    let mut d = FrameDecoder::new();
    let (a, rest) = data.split_at(data.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    for chunk in [a, b, c] {
        d.push(chunk);
        let mut n = 0;
        while let Some(r) = d.poll_frame() {
            n += 1;
            if r.is_err() && n > data.len() + 1 {
                break; // a broken stream errs forever: the link ends there
            }
        }
        assert!(d.buffered() <= MAX_FRAME + 2);
    }
});
