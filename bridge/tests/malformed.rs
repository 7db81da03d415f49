//! Story: a misbehaving or hostile peer cannot hurt the calls already up.
//!
//! With a call up (a baresip room system sending 1000 Hz and a raw PCMU
//! participant sending 600 Hz, both in one conference) we flood the node's
//! SIP UDP port with malformed requests and the raw participant's RTP/RTCP
//! ports with malformed packets, then check that:
//! - requests with recoverable headers get 400, an unknown method 501;
//! - `tandem_malformed_total{protocol="sip"}` and `{protocol="rtp"}` rose;
//! - the call keeps its audio both ways and OPTIONS still gets 200.
//!
//! The malformed RTP is sent from the raw participant's own RTP socket (the
//! address the node latched onto) to the port in the node's SDP answer, so a
//! node that filters unknown sources still has to parse it.

mod common;

use std::time::{Duration, Instant};

use common::audio::{assert_tones, read_wav};
use common::peers::{Baresip, BaresipSpec, Codec};
use common::sip::{self, RawCall, SipResponse, request, udp_exchange, udp_socket};
use common::{Node, wait_for};

const CONFERENCE: &str = "malformed";
const ROOM_TONE: f32 = 1000.0;
const RAW_TONE: f32 = 600.0;

/// A deterministic byte source (no unseeded randomness in tests).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u8 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u8
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next()).collect()
    }
}

fn finals(r: &[SipResponse]) -> Vec<u16> {
    r.iter().filter(|r| r.code >= 200).map(|r| r.code).collect()
}

/// Sends one malformed message from a fresh socket whose address is in its
/// Via, and returns the final response codes.
fn send_case(
    node: &Node,
    build: impl Fn(std::net::SocketAddr) -> Vec<u8>,
) -> (Vec<u16>, Vec<SipResponse>) {
    let sock = udp_socket();
    let local = sock.local_addr().expect("local addr");
    sock.send_to(&build(local), node.sip_addr()).expect("send");
    let r = sip::collect_responses(&sock, Duration::from_secs(2));
    (finals(&r), r)
}

fn sdp() -> &'static str {
    "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
}

#[test]
fn malformed_sip_and_rtp_are_refused_and_counted_and_the_call_survives() {
    let mut node = Node::start();
    let mut room = Baresip::spawn(BaresipSpec {
        name: "room-malformed",
        tone_hz: ROOM_TONE as u32,
        codec: Codec::Pcmu,
        dial: node.uri(CONFERENCE),
        seconds: 20,
    });
    wait_for("baresip to join", Duration::from_secs(10), || {
        room.established().then_some(())
    });
    // Its recording starts about now.
    let room_t0 = Instant::now();
    let call = RawCall::invite(&node, CONFERENCE, RAW_TONE);
    let raw_joined = room_t0.elapsed().as_secs_f32();
    eprintln!(
        "raw call: node RTP {} RTCP {}",
        call.node_rtp, call.node_rtcp
    );
    wait_for(
        "RTP from the node to the raw call",
        Duration::from_secs(5),
        || (call.rx_packets() > 25).then_some(()),
    );
    let sip_bad_before = node.metric("tandem_malformed_total", &[("protocol", "sip")]);
    let rtp_bad_before = node.metric("tandem_malformed_total", &[("protocol", "rtp")]);
    let flood_start = Instant::now();
    let ruri = node.uri(CONFERENCE);

    // --- SIP, one case at a time, each checked -------------------------------
    // Unknown method, valid syntax: 501.
    let (codes, raw) = send_case(&node, |l| {
        request("FOO", &ruri, l, "UDP", "", "").into_bytes()
    });
    assert_eq!(
        codes,
        vec![501],
        "FOO (unknown method) should get 501 Not Implemented: {raw:?}"
    );

    // Missing Call-ID: 400.
    let (codes, raw) = send_case(&node, |l| {
        let full = request("OPTIONS", &ruri, l, "UDP", "", "");
        let start = full.find("Call-ID:").expect("Call-ID header");
        let end = start + full[start..].find("\r\n").expect("CRLF") + 2;
        format!("{}{}", &full[..start], &full[end..]).into_bytes()
    });
    assert_eq!(
        codes,
        vec![400],
        "OPTIONS without Call-ID should get 400: {raw:?}"
    );

    // Content-Length larger than the datagram's body (RFC 3261 18.3): 400.
    let (codes, raw) = send_case(&node, |l| {
        request("INVITE", &node.uri("cl-too-long"), l, "UDP", "", sdp())
            .replace(
                &format!("Content-Length: {}", sdp().len()),
                "Content-Length: 900",
            )
            .into_bytes()
    });
    assert_eq!(
        codes,
        vec![400],
        "INVITE with Content-Length beyond the datagram should get 400: {raw:?}"
    );

    // Content-Length not a number: 400.
    let (codes, raw) = send_case(&node, |l| {
        request("INVITE", &node.uri("cl-nan"), l, "UDP", "", sdp())
            .replace(
                &format!("Content-Length: {}", sdp().len()),
                "Content-Length: abc",
            )
            .into_bytes()
    });
    assert_eq!(
        codes,
        vec![400],
        "INVITE with Content-Length: abc should get 400: {raw:?}"
    );

    // Truncated INVITE: cut inside the From header (no Call-ID, no CSeq): it
    // cannot be answered properly; it must never be accepted.
    let (codes, raw) = send_case(&node, |l| {
        let full = request("INVITE", &node.uri("truncated"), l, "UDP", "", sdp());
        let cut = full.find("From:").expect("From header") + 12;
        full.as_bytes()[..cut].to_vec()
    });
    assert!(
        codes.iter().all(|&c| c == 400),
        "a truncated INVITE may only be answered 400: {raw:?}"
    );

    // A 10 kB header in an otherwise valid OPTIONS: answered (200, or 400 /
    // 513 Message Too Large if the node caps sizes), never silently dropped.
    let (codes, raw) = send_case(&node, |l| {
        let pad = format!("X-Padding: {}\r\n", "a".repeat(10 * 1024));
        request("OPTIONS", &ruri, l, "UDP", &pad, "").into_bytes()
    });
    assert!(
        codes.len() == 1 && [200, 400, 513].contains(&codes[0]),
        "OPTIONS with a 10 kB header should get one of 200/400/513: {raw:?}"
    );

    // Random garbage: no answer is possible; none may be a success.
    let mut rng = Lcg(0x7a4d_e11a);
    let r = udp_exchange(&node, &rng.bytes(300), Duration::from_millis(500));
    assert!(
        finals(&r).iter().all(|&c| c >= 400),
        "garbage got a success: {r:?}"
    );

    // --- SIP flood: all of the above, many times, paced in bursts ------------
    let flood = udp_socket();
    let local = flood.local_addr().expect("local addr");
    for round in 0..20 {
        let mut msgs: Vec<Vec<u8>> = Vec::new();
        for _ in 0..10 {
            let n = 1 + usize::from(rng.next()) * 4;
            msgs.push(rng.bytes(n));
        }
        msgs.push(request("FOO", &ruri, local, "UDP", "", "").into_bytes());
        msgs.push(b"INVITE sip:4711@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\nFrom: <sip:a@b".to_vec());
        msgs.push(b"\r\n\r\n\r\n".to_vec());
        msgs.push(b"INVITE\r\n\r\n".to_vec());
        msgs.push(b"SIP/2.0 200 OK\r\n\r\n".to_vec());
        msgs.push(format!("INVITE {ruri} SIP/3.0\r\nContent-Length: 0\r\n\r\n").into_bytes());
        msgs.push(
            request("OPTIONS", &ruri, local, "UDP", "", "")
                .replace("CSeq: 1 OPTIONS", &format!("CSeq: x{round} OPTIONS"))
                .into_bytes(),
        );
        for m in &msgs {
            let _ = flood.send_to(m, node.sip_addr());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Drain what the flood provoked; none of it may be a 2xx.
    let r = sip::collect_responses(&flood, Duration::from_secs(1));
    assert!(
        r.iter().all(|r| r.code < 200 || r.code >= 400),
        "the malformed flood got a success response: {:?}",
        r.iter().find(|r| (200..400).contains(&r.code))
    );

    // --- RTP and RTCP: malformed packets from the call's own address ---------
    let ssrc = [0xde, 0xad, 0xbe, 0xef];
    let mut rtp_cases: Vec<Vec<u8>> = vec![
        // version 0 and 1 headers with a payload
        [
            &[0x00, 0x00, 0x00, 0x01, 0, 0, 0, 0][..],
            &ssrc,
            &[0xff; 160],
        ]
        .concat(),
        [
            &[0x40, 0x00, 0x00, 0x01, 0, 0, 0, 0][..],
            &ssrc,
            &[0xff; 160],
        ]
        .concat(),
        // truncated fixed header (V=2, 7 bytes)
        vec![0x80, 0x00, 0x12, 0x34, 0, 0, 1],
        // 15 CSRCs announced, none present
        [&[0x8f, 0x00, 0x00, 0x02, 0, 0, 0, 0][..], &ssrc, &[0; 8]].concat(),
        // extension header announced with 65535 words
        [
            &[0x90, 0x00, 0x00, 0x03, 0, 0, 0, 0][..],
            &ssrc,
            &[0xbe, 0xde, 0xff, 0xff],
        ]
        .concat(),
        // padding count larger than the packet
        [
            &[0xa0, 0x00, 0x00, 0x04, 0, 0, 0, 0][..],
            &ssrc,
            &[0xff, 0xff, 0xff, 0xf0],
        ]
        .concat(),
    ];
    for _ in 0..20 {
        // garbage whose first byte is not V=2 (and not an RTCP type)
        let n = 1 + usize::from(rng.next()) % 200;
        let mut g = rng.bytes(n);
        g[0] &= 0x3f;
        rtp_cases.push(g);
    }
    for _ in 0..10 {
        for p in &rtp_cases {
            call.send_rtp_raw(p);
        }
        // RTCP: truncated SR, a length field pointing past the end, garbage.
        call.send_rtcp_raw(&[0x80, 200, 0x00, 0x06, 0, 0]);
        call.send_rtcp_raw(&[0x81, 201, 0x7f, 0xff, 0xde, 0xad, 0xbe, 0xef]);
        call.send_rtcp_raw(&rng.bytes(40));
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("flood took {:?}", flood_start.elapsed());

    // --- Counted ---------------------------------------------------------------
    node.assert_running();
    let metrics = node.metrics();
    let sip_bad =
        common::http::metric_sum(&metrics, "tandem_malformed_total", &[("protocol", "sip")])
            .unwrap_or(0.0);
    let rtp_bad =
        common::http::metric_sum(&metrics, "tandem_malformed_total", &[("protocol", "rtp")])
            .unwrap_or(0.0);
    eprintln!(
        "tandem_malformed_total: sip {sip_bad_before} -> {sip_bad}, rtp {rtp_bad_before} -> {rtp_bad}"
    );
    assert!(
        sip_bad > sip_bad_before,
        "tandem_malformed_total{{protocol=\"sip\"}} did not rise:\n{metrics}"
    );
    assert!(
        rtp_bad > rtp_bad_before,
        "tandem_malformed_total{{protocol=\"rtp\"}} did not rise:\n{metrics}"
    );
    assert!(
        common::http::metric_sum(&metrics, "tandem_sip_responses_total", &[("code", "400")])
            .unwrap_or(0.0)
            >= 1.0,
        "tandem_sip_responses_total{{code=\"400\"}} should count the 400s sent"
    );
    assert!(
        common::http::metric_sum(&metrics, "tandem_sip_responses_total", &[("code", "501")])
            .unwrap_or(0.0)
            >= 1.0,
        "tandem_sip_responses_total{{code=\"501\"}} should count the 501s sent"
    );

    // --- The call survived -------------------------------------------------------
    assert!(
        !call.remote_hung_up(),
        "the node hung up the raw call during the flood"
    );
    let packets_after_flood = call.rx_packets();
    let samples_after_flood = call.rx_samples();
    std::thread::sleep(Duration::from_secs(3));
    let got = call.rx_packets() - packets_after_flood;
    assert!(
        got >= 100,
        "after the flood the raw call received only {got} RTP packets in 3 s (expected ~150)"
    );
    let heard = call.heard_since(samples_after_flood);
    assert_tones(
        "raw call (after the flood)",
        &heard,
        &[ROOM_TONE],
        &[RAW_TONE],
        0.0,
        heard.seconds(),
    );
    assert_eq!(
        sip::udp_options(&node),
        Some(200),
        "OPTIONS over UDP after the flood"
    );

    let raw_left = room_t0.elapsed().as_secs_f32();
    call.hang_up();
    let st = room.wait(Duration::from_secs(40));
    assert!(st.success(), "baresip exited with {st}\n{}", room.log());
    // The room system heard the raw call's tone (and not its own) for as long
    // as both were in, the flood included.
    let rec = read_wav(&room.recording()).unwrap_or_else(|e| panic!("{e}"));
    assert_tones(
        &room.name,
        &rec,
        &[RAW_TONE],
        &[ROOM_TONE],
        raw_joined + 1.0,
        raw_left - 0.5,
    );
}
