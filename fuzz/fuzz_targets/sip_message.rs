//! Fuzzes the SIP parser. Datagram and stream framing must never panic;
//! serialising a parsed message is a fixed point (`to_bytes` → parse →
//! `to_bytes` gives the same bytes); and the 400 built for a malformed
//! request must itself be a well-formed response.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_proto::sip::message::{Message, ParseErrorKind, parse_datagram, parse_stream};

/// Serialising may legitimately grow a message past a limit: bare LF becomes
/// CRLF, `l:` becomes `Content-Length:`, a missing Content-Length is added.
fn grew_past_a_limit(kind: ParseErrorKind) -> bool {
    matches!(
        kind,
        ParseErrorKind::Oversized | ParseErrorKind::TooManyHeaders | ParseErrorKind::HeaderTooLong
    )
}

fn round_trip(msg: &Message) {
    let bytes = msg.to_bytes();
    match parse_datagram(&bytes) {
        Ok(again) => assert_eq!(
            again.to_bytes(),
            bytes,
            "serialisation is not a fixed point"
        ),
        Err(e) => assert!(grew_past_a_limit(e.kind()), "own output rejected: {e}"),
    }
    match parse_stream(&bytes) {
        Ok(Some((again, used))) => {
            assert_eq!(used, bytes.len());
            assert_eq!(again.to_bytes(), bytes);
        }
        Ok(None) => panic!("own output is incomplete as a stream"),
        Err(e) => assert!(
            grew_past_a_limit(e.kind()),
            "own output rejected on a stream: {e}"
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    match parse_datagram(data) {
        Ok(msg) => round_trip(&msg),
        Err(e) => {
            let _ = e.kind().as_str();
            if let Some(resp) = e.bad_request() {
                // Our answer echoes what the request had; it may lack only
                // what the request lacked (From, To, Call-ID).
                if let Err(e) = parse_datagram(&resp.to_bytes()) {
                    assert!(
                        matches!(
                            e.kind(),
                            ParseErrorKind::MissingHeader | ParseErrorKind::BadHeader
                        ) || grew_past_a_limit(e.kind()),
                        "our 400 does not parse: {e}"
                    );
                }
            }
        }
    }

    // Stream framing: consume messages until the buffer runs dry or fails.
    let mut rest = data;
    loop {
        match parse_stream(rest) {
            Ok(Some((msg, used))) => {
                assert!(used > 0 && used <= rest.len());
                round_trip(&msg);
                rest = &rest[used..];
            }
            Ok(None) => break,
            Err(e) => {
                let _ = e.bad_request().map(|r| r.to_bytes());
                break;
            }
        }
    }
});
