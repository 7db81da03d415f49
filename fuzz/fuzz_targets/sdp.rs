#![no_main]
//! SDP parse → answer → serialize → parse. Any panic is a bug; the answer we
//! produce must always parse back to the same description.

use libfuzzer_sys::fuzz_target;
use tandem_proto::sdp::{AudioCodec, LocalContent, LocalMedia, SdpSession, SessionDescription};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(offer) = SessionDescription::parse(text) else {
        return;
    };
    // Whatever parses must serialize to something that parses again.
    let again = SessionDescription::parse(&offer.to_string()).expect("reparse offer");
    assert_eq!(again.media.len(), offer.media.len());

    let local = LocalMedia {
        addr: std::net::IpAddr::from([10, 0, 0, 1]),
        audio_port: 20000,
        codecs: AudioCodec::ALL.to_vec(),
        ptime: 20,
        video_port: Some(20002),
        // A content channel and its floor, so the BFCP and a=content
        // paths see fuzzed offers and answers too.
        content: Some(LocalContent {
            port: 20004,
            bfcp_port: 5072,
            conference_id: 4711,
            user_id: 1,
            floor: 1,
        }),
    };
    let mut session = SdpSession::new(1);
    if let Ok((answer, _negotiated)) = session.answer(&offer, &local) {
        assert_eq!(answer.media.len(), offer.media.len());
        let reparsed = SessionDescription::parse(&answer.to_string()).expect("reparse answer");
        assert_eq!(reparsed, answer);
        // Treat the fuzzed SDP as an answer to our own offer, too.
        let ours = session.offer(&local);
        let _ = session.process_answer(&ours, &offer);
    }
});
