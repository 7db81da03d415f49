#![no_main]
//! The H.225.0 body (H323-UserInformation, aligned PER) and the H.245
//! messages it carries, from a hostile peer: decoding never panics and stays
//! bounded, and whatever decodes encodes to bytes that decode to the same
//! value. The input is tried as a bare UUIE, as a bare H.245 message and as
//! a bare OpenLogicalChannel, and every tunnelled message (`h245Control`,
//! `parallelH245Control`) and Fast Connect proposal of a decoded UUIE goes
//! through the H.245 decoders too.

use libfuzzer_sys::fuzz_target;
use tandem_proto::h323::h225::{Body, UserInformation};
use tandem_proto::h323::h245::{Message, OpenLogicalChannel};

fn h245(data: &[u8]) {
    if let Ok(m) = Message::decode(data) {
        let again = Message::decode(&m.encode()).expect("our H.245 decodes");
        assert_eq!(again, m);
        let _ = m.name();
        let _ = m.h239();
    }
}

fn olc(data: &[u8]) {
    if let Ok(c) = OpenLogicalChannel::decode(data) {
        let again = OpenLogicalChannel::decode(&c.encode()).expect("our OLC decodes");
        assert_eq!(again, c);
        let _ = c.media();
    }
}

fuzz_target!(|data: &[u8]| {
    h245(data);
    olc(data);
    let Ok(ui) = UserInformation::decode(data) else {
        return;
    };
    let again = UserInformation::decode(&ui.encode()).expect("our UUIE decodes");
    assert_eq!(again, ui);
    let _ = ui.body.q931_type();
    for m in &ui.h245_control {
        h245(m);
    }
    if let Body::Setup(s) = &ui.body {
        for m in &s.parallel_h245_control {
            h245(m);
        }
        for p in &s.fast_start {
            olc(p);
        }
    }
    for p in match &ui.body {
        Body::CallProceeding(m) => &m.fast_start,
        Body::Alerting(m) => &m.fast_start,
        Body::Connect(m) => &m.fast_start,
        Body::Facility(m) => &m.fast_start,
        _ => return,
    } {
        olc(p);
    }
});
