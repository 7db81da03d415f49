//! H.323-lite room systems (issue 6): a synthetic H.323 room system calls
//! the node directly (no gatekeeper) with Fast Connect, hears and sees the
//! conference, takes the H.239 presentation token and presents to a SIP
//! room system's content channel; a BFCP request takes the floor over and
//! the H.323 room's token is taken back. Calls the node cannot serve are
//! released with a cause, and broken input is counted, never hangs a
//! call. tshark dissects the Q.931, H.225.0 and tunnelled H.245 on the
//! wire (port 1720, where it reads H.225.0).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::capture::Capture;
use common::h323::{self, H323Call};
use common::{Node, rooms};
use tandem_loadtest::{
    CallOptions, Codec, ContentConfig, FloorState, Rgb, RoomSystem, RoomSystemConfig, VideoSpec,
};

const CONF: &str = "5150";
const GREEN: Rgb = (40, 200, 60);
const ORANGE: Rgb = (230, 140, 20);
const BLUE: Rgb = (30, 40, 220);
const YELLOW: Rgb = (230, 220, 40);
/// Slides' colour area: above the sender's moving square in the bottom tenth.
const SLIDE: (f32, f32, f32, f32) = (0.05, 0.05, 0.95, 0.85);
const H323_PORT: u16 = 1720;

fn distance(a: Rgb, b: Rgb) -> u32 {
    let d = |x: u8, y: u8| u32::from(x.abs_diff(y));
    d(a.0, b.0) + d(a.1, b.1) + d(a.2, b.2)
}

fn wait(node: &Node, what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} within {timeout:?}\n{}", node.log_tail());
}

/// The node on 1720, where tshark reads H.225.0 (it cannot be told to
/// read Q.931 on another port).
fn node() -> Node {
    if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", H323_PORT)) {
        panic!("port {H323_PORT} is taken ({e}): stop whatever H.323 endpoint or node uses it");
    }
    Node::start_with(&[("TANDEM_H323_PORT", &H323_PORT.to_string())])
}

fn h323_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], H323_PORT))
}

fn call_h323(
    rt: &tokio::runtime::Runtime,
    node: &Node,
    cfg: RoomSystemConfig,
    opts: CallOptions,
) -> H323Call {
    match rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(15), h323::call(h323_addr(), cfg, opts)).await
    }) {
        Ok(Ok(call)) => call,
        Ok(Err(e)) => panic!("the H.323 call failed: {e}\n{}", node.log_tail()),
        Err(_) => panic!("the H.323 call: nothing in 15 s\n{}", node.log_tail()),
    }
}

fn sees_slides(node: &Node, room: &RoomSystem, who: &str, colour: Rgb) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = None;
    while Instant::now() < deadline {
        last = room.content_seen_colour(SLIDE.0, SLIDE.1, SLIDE.2, SLIDE.3);
        if last.is_some_and(|c| distance(c, colour) < 60) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{who} should see slides of {colour:?} on its content channel, sees {last:?}; its content {:?}; the conference's {}\n{}",
        room.content_stats(),
        node.conference(CONF)
            .map(|c| c["content"].clone())
            .unwrap_or_default(),
        node.log_tail()
    );
}

#[test]
fn an_h323_room_system_calls_in_with_fast_connect_and_presents_with_the_h239_token() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let node = node();
    let mut capture = Capture::start(&format!("tcp port {H323_PORT}"));

    // Alice: SIP, with a content channel (BFCP), a 440 Hz tone, green.
    let alice_cfg = RoomSystemConfig::new(node.sip_addr(), CONF, "alice")
        .with_codec(Codec::Pcmu)
        .with_tone(440.0, 0.3)
        .with_video(VideoSpec::new(GREEN).with_size(320, 180));
    let alice = rooms::place_with(
        &rt,
        &node,
        CONF,
        "alice",
        alice_cfg,
        CallOptions::default().with_content(ContentConfig::new(YELLOW)),
    );
    // Hugo: H.323, Fast Connect G.711 and H.264, 660 Hz, orange, blue slides.
    let hugo_cfg = RoomSystemConfig::new(h323_addr(), CONF, "hugo")
        .with_codec(Codec::Pcmu)
        .with_tone(660.0, 0.3)
        .with_video(VideoSpec::new(ORANGE).with_size(320, 180));
    let hugo = call_h323(
        &rt,
        &node,
        hugo_cfg,
        CallOptions::default().with_content(ContentConfig::new(BLUE)),
    );
    node.wait_state(CONF, "hugo", "joined");
    let p = node.participant(CONF, "hugo").expect("hugo in the API");
    assert_eq!(p["signalling"], "h323", "{p}");

    // Hugo hears alice (and not itself), and sees her in his layout;
    // alice sees hugo.
    std::thread::sleep(Duration::from_secs(2));
    hugo.room.mark();
    std::thread::sleep(Duration::from_secs(2));
    let heard = hugo.room.heard();
    assert!(
        heard.contains(440.0),
        "hugo should hear alice's 440 Hz: {:?}",
        hugo.room.stats()
    );
    assert!(!heard.contains(660.0), "hugo should not hear himself");
    wait(
        &node,
        "hugo should see alice (green)",
        Duration::from_secs(15),
        || {
            hugo.room
                .seen_colour(0.3, 0.3, 0.7, 0.7)
                .is_some_and(|c| distance(c, GREEN) < 80)
        },
    );
    wait(
        &node,
        "alice should see hugo (orange)",
        Duration::from_secs(15),
        || {
            alice
                .seen_colour(0.3, 0.3, 0.7, 0.7)
                .is_some_and(|c| distance(c, ORANGE) < 80)
        },
    );

    // The presentation channels opened both ways over tunnelled H.245.
    wait(
        &node,
        "the node should open its presentation channel to hugo and ack his",
        Duration::from_secs(10),
        || {
            let s = hugo.seen();
            s.content_offered && s.content_acked
        },
    );

    // Hugo takes the H.239 token: alice's content channel shows his slides.
    hugo.request_token();
    wait(
        &node,
        "hugo's token request should be granted",
        Duration::from_secs(10),
        || hugo.seen().token == FloorState::Granted,
    );
    wait(
        &node,
        "hugo should send slides",
        Duration::from_secs(10),
        || hugo.room.content_stats().sent.packets > 0,
    );
    sees_slides(&node, &alice, "alice", BLUE);
    let content = node.conference(CONF).expect("conference")["content"].clone();
    assert_eq!(content["floor"], "presenting", "{content}");
    assert_eq!(content["presenter_name"], "hugo", "{content}");
    assert_eq!(
        node.metric(
            "tandem_h239_token_requests_total",
            &[("outcome", "granted")]
        ),
        1.0
    );

    // Alice takes the floor over with BFCP: hugo's token is taken back
    // and he sees her slides on his content channel.
    rt.block_on(alice.request_floor())
        .expect("alice's floor request");
    rt.block_on(alice.wait_for_floor(FloorState::Granted, Duration::from_secs(10)))
        .expect("alice granted");
    wait(
        &node,
        "hugo's token should be taken back",
        Duration::from_secs(10),
        || hugo.seen().token == FloorState::Revoked,
    );
    sees_slides(&node, &hugo.room, "hugo", YELLOW);
    rt.block_on(alice.release_floor()).expect("alice releases");

    // Hugo hangs up: counted by cause; the conference goes on with alice.
    hugo.hangup();
    wait(
        &node,
        "hugo's call should end",
        Duration::from_secs(10),
        || {
            node.metric(
                "tandem_h323_calls_total",
                &[("cause", "normal_call_clearing"), ("by", "caller")],
            ) == 1.0
        },
    );
    wait(
        &node,
        "hugo should leave the conference",
        Duration::from_secs(10),
        || node.participant(CONF, "hugo").is_none(),
    );
    assert!(alice.is_active());
    let seen = hugo.seen();
    for expected in ["CallProceeding", "Connect", "Facility"] {
        assert!(
            seen.q931.iter().any(|t| t == expected),
            "hugo saw {:?}",
            seen.q931
        );
    }

    // tshark reads the call signalling as H.225.0 with H.245 inside,
    // nothing malformed, no expert warnings.
    let problems = capture.problems(&[], "q931 || h225 || h245");
    assert!(problems.is_empty(), "tshark finds problems:\n{problems}");
    let dissected = capture.dissect(&[], "h225");
    for expected in [
        "setup",
        "callProceeding",
        "connect",
        "facility",
        "releaseComplete",
        "fastStart",
        "terminalCapabilitySet",
        "masterSlaveDetermination",
        "openLogicalChannel",
        "openLogicalChannelAck",
        "genericRequest",
        "genericResponse",
    ] {
        assert!(
            dissected.contains(expected),
            "tshark's dissection lacks {expected:?}:\n{}",
            &dissected[..dissected.len().min(20_000)]
        );
    }
    drop(alice);
}

/// TPKT framing of `payload`.
fn tpkt(payload: &[u8]) -> Vec<u8> {
    let mut v = vec![3, 0];
    v.extend_from_slice(&((payload.len() + 4) as u16).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Reads TPKT frames until the node closes; the Q.931 message types and
/// cause values seen.
fn read_until_closed(stream: &mut TcpStream) -> Vec<(u8, Option<u8>)> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all);
    let mut out = Vec::new();
    let mut rest = &all[..];
    while rest.len() >= 4 {
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        if len < 4 || len > rest.len() {
            break;
        }
        let q = tandem_proto::h323::q931::Message::parse(&rest[4..len])
            .expect("the node's Q.931 parses");
        out.push((q.message_type.as_u8(), q.cause()));
        rest = &rest[len..];
    }
    out
}

#[test]
fn calls_the_node_cannot_serve_are_released_with_a_cause_and_bad_input_is_counted() {
    use tandem_proto::h323::h225::{
        AliasAddress, Body, EndpointType, Guid, Setup, UserInformation,
    };
    let port = common::ports::udp_tcp();
    let node = Node::start_with(&[
        ("TANDEM_CONFERENCE_AUTO_CREATE", "false"),
        ("TANDEM_H323_SETUP_TIMEOUT_S", "2"),
        ("TANDEM_H323_PORT", &port.to_string()),
    ]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    use tandem_proto::h323::h245::{AudioCapability, DataType, OpenLogicalChannel};
    let discard = SocketAddr::from(([127, 0, 0, 1], 9));
    let g711 = DataType::Audio(AudioCapability::G711Ulaw64k(20));
    // What the caller sends, and what it receives (Fast Connect's pair).
    let sends = OpenLogicalChannel::new(1, g711.clone(), 1, discard).encode();
    let receives =
        OpenLogicalChannel::receive_proposal(2, g711, 1, discard, discard, None).encode();
    let setup = |conference: &str, fast_start: &[&Vec<u8>]| {
        let mut s = Setup::new(Guid([7; 16]), Guid([9; 16]), EndpointType::terminal());
        s.destination_address = vec![AliasAddress::DialedDigits(conference.into())];
        s.fast_start = fast_start.iter().map(|b| (*b).clone()).collect();
        tpkt(
            &UserInformation::new(Body::Setup(s))
                .to_q931(0x1234, false)
                .to_bytes(),
        )
    };

    // An unknown conference (auto-create is off): unallocated number (1).
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(&setup("999", &[&sends, &receives]))
        .expect("write");
    let got = read_until_closed(&mut s);
    assert_eq!(
        got.first().map(|g| g.0),
        Some(0x02),
        "Call Proceeding first: {got:?}"
    );
    assert_eq!(
        got.last(),
        Some(&(0x5a, Some(1))),
        "Release Complete, cause 1: {got:?}"
    );

    // No Fast Connect (H.245 procedures only): service not implemented (79).
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(&setup("999", &[])).expect("write");
    let got = read_until_closed(&mut s);
    assert_eq!(
        got.last(),
        Some(&(0x5a, Some(79))),
        "Release Complete, cause 79: {got:?}"
    );

    // Fast Connect with nothing the caller receives: incompatible
    // destination (88).
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(&setup("999", &[&sends])).expect("write");
    let got = read_until_closed(&mut s);
    assert_eq!(
        got.last(),
        Some(&(0x5a, Some(88))),
        "Release Complete, cause 88: {got:?}"
    );

    // Garbage where Q.931 belongs: invalid message (95), counted.
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(&tpkt(&[0x08, 0x02, 0x12])).expect("write");
    let got = read_until_closed(&mut s);
    assert!(
        got.is_empty() || got.last().map(|g| g.0) == Some(0x5a),
        "{got:?}"
    );
    assert!(node.metric("tandem_malformed_total", &[("protocol", "q931")]) >= 1.0);

    // A Setup whose user-user information is not PER: counted, released.
    let mut s = TcpStream::connect(addr).expect("connect");
    let q = tandem_proto::h323::q931::Message::new(
        tandem_proto::h323::q931::MessageType::Setup,
        0x55,
        false,
    )
    .with_user_user(&[0xff, 0xff, 0xff]);
    s.write_all(&tpkt(&q.to_bytes())).expect("write");
    let got = read_until_closed(&mut s);
    assert_eq!(got.last().map(|g| g.0), Some(0x5a), "{got:?}");
    assert!(node.metric("tandem_malformed_total", &[("protocol", "h225")]) >= 1.0);

    // A silent connection is closed after the Setup timeout, not held.
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without a message");
    assert!(started.elapsed() < Duration::from_secs(18));

    for cause in [
        "unallocated_number",
        "service_not_implemented",
        "incompatible_destination",
        "invalid_message",
        "setup_timeout",
    ] {
        assert!(
            node.metric(
                "tandem_h323_calls_total",
                &[("cause", cause), ("by", "node")]
            ) >= 1.0,
            "tandem_h323_calls_total{{cause={cause}}}\n{}",
            node.metrics()
        );
    }
    // The node serves on.
    node.get("/healthz");
}
