#![no_main]
//! H.225.0 call signalling from a hostile peer: TPKT framing and Q.931
//! parsing never panic, the TPKT decoder stays bounded, and every Q.931
//! message we parse survives being written back.

use libfuzzer_sys::fuzz_target;
use tandem_proto::h323::{q931, tpkt};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = q931::Message::parse(data) {
        let again = q931::Message::parse(&m.to_bytes()).expect("our own message parses");
        assert_eq!(again, m);
        let _ = m.cause();
        let _ = m.user_user();
    }
    let mut d = tpkt::Decoder::new();
    for chunk in data.chunks(7) {
        d.push(chunk);
        while let Some(r) = d.poll() {
            match r {
                Ok(payload) => {
                    let _ = q931::Message::parse(&payload);
                }
                Err(_) => break,
            }
        }
        assert!(d.buffered() <= tpkt::MAX_PACKET + 7);
    }
});
