//! Presentations over BFCP (issue 6): synthetic room systems that offer a
//! content channel (`a=content:slides`) and a BFCP floor, as Polycom and
//! Cisco room systems do, take the floor, present, take it over and
//! release it; the others see the slides on their content channel.
//! tshark dissects the BFCP the node spoke, captured on the wire.

mod common;

use std::time::{Duration, Instant};

use common::capture::Capture;
use common::{Node, ports, rooms};
use tandem_loadtest::{
    CallOptions, ContentConfig, FloorState, Rgb, RoomSystem, RoomSystemConfig, VideoSpec,
};

const CONF: &str = "4711";
const RED: Rgb = (220, 30, 30);
const BLUE: Rgb = (30, 40, 220);
/// Slides' colour area: above the sender's moving square in the bottom tenth.
const SLIDE: (f32, f32, f32, f32) = (0.05, 0.05, 0.95, 0.85);

fn distance(a: Rgb, b: Rgb) -> u32 {
    let d = |x: u8, y: u8| u32::from(x.abs_diff(y));
    d(a.0, b.0) + d(a.1, b.1) + d(a.2, b.2)
}

fn call(rt: &tokio::runtime::Runtime, node: &Node, name: &str, slides: Rgb) -> RoomSystem {
    // A small camera: the people video is not what this test looks at.
    let cfg = RoomSystemConfig::new(node.sip_addr(), CONF, name)
        .with_video(VideoSpec::new((90, 90, 90)).with_size(320, 180));
    let opts = CallOptions::default().with_content(ContentConfig::new(slides));
    match rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(15), RoomSystem::call_with(cfg, opts)).await
    }) {
        Ok(Ok(room)) => room,
        Ok(Err(e)) => panic!("{name} could not join: {e}\n{}", node.log_tail()),
        Err(_) => panic!("{name}: no answer in 15 s\n{}", node.log_tail()),
    }
}

fn floor(rt: &tokio::runtime::Runtime, node: &Node, room: &RoomSystem, state: FloorState) {
    if let Err(e) = rt.block_on(room.wait_for_floor(state, Duration::from_secs(10))) {
        panic!("floor: {e}\n{}", node.log_tail());
    }
}

/// Waits until `room`'s content channel shows `colour` in the slide area.
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
        "{who} should see slides of {colour:?} on its content channel, sees {last:?}; stats {:?}\n{}",
        room.content_stats().received,
        node.log_tail()
    );
}

/// The large pane of a 1+5 layout (top left, two thirds each way), inset.
const LARGE_PANE: (f32, f32, f32, f32) = (0.08, 0.08, 0.58, 0.58);

/// Waits until `room`'s people video shows `colour` (or, with `not`, stops
/// showing it) in the large pane: the presentation in its layout.
fn layout_shows(node: &Node, room: &RoomSystem, who: &str, colour: Rgb, not: bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = None;
    while Instant::now() < deadline {
        last = room.seen_colour(LARGE_PANE.0, LARGE_PANE.1, LARGE_PANE.2, LARGE_PANE.3);
        if last.is_some_and(|c| (distance(c, colour) < 60) != not) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{who}'s large pane should {}show {colour:?}, shows {last:?}\n{}",
        if not { "no longer " } else { "" },
        node.log_tail()
    );
}

fn content_state(node: &Node) -> serde_json::Value {
    node.conference(CONF).expect("conference listed")["content"].clone()
}

/// Waits (the API's snapshot is refreshed a few times a second) until the
/// conference's content state satisfies `ok`.
fn wait_content(node: &Node, what: &str, ok: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state = content_state(node);
        if ok(&state) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: content state {state}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn presenters_take_the_floor_in_turn_and_every_content_channel_sees_their_slides() {
    let bfcp_port = ports::udp_tcp();
    let node = Node::start_with(&[("TANDEM_CONTENT_BFCP_PORT", &bfcp_port.to_string())]);
    let mut capture = Capture::start(&format!("tcp port {bfcp_port}"));
    let rt = rooms::runtime();
    let alice = call(&rt, &node, "alice", RED);
    let bob = call(&rt, &node, "bob", BLUE);
    let carol = call(&rt, &node, "carol", (30, 200, 30));
    // Dave's room system has no content channel: he sees the slides in the
    // large pane of his layout instead.
    let dave = rooms::call_video(
        &rt,
        &node,
        CONF,
        "dave",
        VideoSpec::new((90, 90, 90)).with_size(320, 180),
    );
    assert!(dave.content_answer().is_none(), "dave offered no content");
    for (who, room) in [("alice", &alice), ("bob", &bob), ("carol", &carol)] {
        let answer = room.content_answer().expect("content answered");
        let bfcp = answer.bfcp.as_ref().expect("BFCP accepted");
        assert_eq!(bfcp.addr.port(), bfcp_port, "{who}'s floor control server");
        assert!(answer.video.is_some(), "{who}'s content m-line accepted");
    }
    wait_content(&node, "three channels, nobody presenting", |c| {
        c["floor"] == "idle" && c["channels"] == 3
    });

    // Alice presents: everyone else sees red slides; she gets nothing back.
    rt.block_on(alice.request_floor())
        .expect("alice asks for the floor");
    floor(&rt, &node, &alice, FloorState::Granted);
    wait_content(&node, "alice presents", |c| {
        c["floor"] == "presenting" && c["presenter_name"] == "alice"
    });
    sees_slides(&node, &bob, "bob", RED);
    sees_slides(&node, &carol, "carol", RED);
    layout_shows(&node, &dave, "dave", RED, false);
    assert_eq!(
        alice.content_stats().received.frames_decoded,
        0,
        "a presenter is not sent its own slides"
    );

    // Bob presents too: the newer request takes the floor over.
    rt.block_on(bob.request_floor())
        .expect("bob asks for the floor");
    floor(&rt, &node, &bob, FloorState::Granted);
    floor(&rt, &node, &alice, FloorState::Revoked);
    wait_content(&node, "bob presents", |c| c["presenter_name"] == "bob");
    sees_slides(&node, &carol, "carol", BLUE);
    sees_slides(&node, &alice, "alice", BLUE);
    layout_shows(&node, &dave, "dave", BLUE, false);

    // Bob releases: the presentation ends for everyone.
    rt.block_on(bob.release_floor()).expect("bob releases");
    floor(&rt, &node, &bob, FloorState::Released);
    wait_content(&node, "the presentation ended", |c| c["floor"] == "idle");
    layout_shows(&node, &dave, "dave", BLUE, true);
    std::thread::sleep(Duration::from_millis(500));
    let before = carol.content_stats().received.frames_decoded;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        carol.content_stats().received.frames_decoded,
        before,
        "no slides after the release"
    );

    // What an operator sees.
    let m = |name: &str, labels: &[(&str, &str)]| node.metric(name, labels);
    assert_eq!(
        m("tandem_floor_requests_total", &[("outcome", "granted")]),
        1.0
    );
    assert_eq!(
        m("tandem_floor_requests_total", &[("outcome", "took_over")]),
        1.0
    );
    assert_eq!(m("tandem_floor_events_total", &[("event", "revoked")]), 1.0);
    assert_eq!(
        m("tandem_floor_events_total", &[("event", "released")]),
        1.0
    );
    assert_eq!(m("tandem_floor_held", &[("conference", CONF)]), 0.0);
    // Each presentation's packets reached two receivers (what came before a
    // keyframe, or from a presenter without the floor, was not relayed).
    let (bytes_in, packets_in, packets_out) = (
        m("tandem_content_bytes_total", &[("direction", "in")]),
        m("tandem_content_packets_total", &[("direction", "in")]),
        m("tandem_content_packets_total", &[("direction", "out")]),
    );
    assert!(
        bytes_in > 1000.0 && packets_in >= 2.0 && packets_out >= packets_in,
        "content in: {bytes_in} bytes, {packets_in} packets; out: {packets_out} packets"
    );
    assert_eq!(m("tandem_content_channels", &[]), 3.0);
    // Both presenters were relayed from a keyframe of theirs.
    assert!(content_state(&node)["keyframes_in"].as_u64() >= Some(2));

    // tshark, an independent decoder, reads the BFCP on the wire as BFCP
    // (version 1 over TCP), with nothing malformed and no expert warnings.
    let decode = [format!("tcp.port=={bfcp_port},bfcp")];
    let problems = capture.problems(&decode, "bfcp");
    assert!(problems.is_empty(), "tshark finds problems:\n{problems}");
    let dissected = capture.dissect(&decode, "bfcp");
    for expected in [
        "Primitive: Hello (11)",
        "Primitive: HelloAck (12)",
        "Primitive: FloorRequest (1)",
        "Primitive: FloorRelease (2)",
        "Primitive: FloorRequestStatus (4)",
        "Conference ID: 4711",
        "Request Status: Granted (3)",
        "Request Status: Revoked (7)",
        "Request Status: Released (6)",
    ] {
        assert!(
            dissected.contains(expected),
            "tshark's dissection lacks {expected:?}:\n{dissected}"
        );
    }
    drop((alice, bob, carol, dave));
}

/// A BFCP message with the common header (version 1) and `attrs`.
fn bfcp(primitive: u8, conference: u32, transaction: u16, user: u16, attrs: &[u8]) -> Vec<u8> {
    let mut m = vec![0x20, primitive];
    m.extend_from_slice(&((attrs.len() / 4) as u16).to_be_bytes());
    m.extend_from_slice(&conference.to_be_bytes());
    m.extend_from_slice(&transaction.to_be_bytes());
    m.extend_from_slice(&user.to_be_bytes());
    m.extend_from_slice(attrs);
    m
}

/// FLOOR-ID 1, mandatory.
const FLOOR_ID_1: [u8; 4] = [(2 << 1) | 1, 4, 0, 1];

/// Reads one BFCP message (header and payload) from `s`.
fn read_bfcp(s: &mut std::net::TcpStream) -> Vec<u8> {
    use std::io::Read;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).expect("a BFCP answer");
    let len = usize::from(u16::from_be_bytes([head[2], head[3]])) * 4;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("the answer's payload");
    let mut m = head.to_vec();
    m.extend(body);
    m
}

/// The ERROR-CODE of an Error answer (primitive 13, R bit set).
fn error_code(m: &[u8]) -> u8 {
    assert_eq!(m[1], 13, "an Error, got primitive {} ({m:02x?})", m[1]);
    assert_eq!(m[0] & 0x10, 0x10, "the R bit of an answer");
    assert_eq!(m[12] >> 1, 6, "ERROR-CODE first: {m:02x?}");
    m[14]
}

#[test]
fn bad_bfcp_gets_a_bfcp_error_and_is_counted_while_the_floor_keeps_working() {
    use std::io::Write;
    let node = Node::start();
    let rt = rooms::runtime();
    let erin = call(&rt, &node, "erin", RED);
    let frank = call(&rt, &node, "frank", BLUE);
    let ours = erin.content_answer().and_then(|a| a.bfcp).expect("BFCP");
    let (conference, user) = (ours.conference_id, ours.user_id);
    let connect = || {
        let s = std::net::TcpStream::connect(ours.addr).expect("connect to the BFCP port");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s
    };
    let malformed = |kind: &str| {
        node.metric(
            "tandem_malformed_total",
            &[("protocol", "bfcp"), ("kind", kind)],
        )
    };

    let mut s = connect();
    // A conference the node does not have: Error 1 (Conference does not Exist).
    s.write_all(&bfcp(1, conference + 1000, 7, user, &FLOOR_ID_1))
        .expect("send");
    let answer = read_bfcp(&mut s);
    assert_eq!(error_code(&answer), 1, "{answer:02x?}");
    assert_eq!(
        &answer[8..10],
        &7u16.to_be_bytes(),
        "the request's transaction"
    );
    // A user the conference does not have: Error 2.
    s.write_all(&bfcp(1, conference, 8, 999, &FLOOR_ID_1))
        .expect("send");
    assert_eq!(error_code(&read_bfcp(&mut s)), 2);
    // An attribute longer than its message: Error 10 (Unable to Parse).
    s.write_all(&bfcp(1, conference, 9, 999, &[(2 << 1) | 1, 40, 0, 1]))
        .expect("send");
    assert_eq!(error_code(&read_bfcp(&mut s)), 10);
    assert_eq!(malformed("bad_attribute_length"), 1.0);
    // Not BFCP: counted, and the connection is closed (a stream
    // cannot find the next message after garbage).
    let mut junk = connect();
    // Version 7 in the first three bits.
    junk.write_all(b"\xe0\x01\x00\x00not a floor request")
        .expect("send");
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut junk, &mut rest);
    assert_eq!(malformed("bad_version"), 1.0);

    // Everyone else is served as before: erin presents, frank sees it.
    rt.block_on(erin.request_floor())
        .expect("erin asks for the floor");
    floor(&rt, &node, &erin, FloorState::Granted);
    sees_slides(&node, &frank, "frank", RED);
    // Somebody else's user ID from erin's own connection's peer is refused:
    // our raw connection is not erin's transport.
    s.write_all(&bfcp(2, conference, 10, user, &[]))
        .expect("send");
    assert_eq!(error_code(&read_bfcp(&mut s)), 5, "Unauthorized Operation");
    assert_eq!(erin.floor_state(), FloorState::Granted);
    // BFCP over UDP (version 2) reaches the same server: frank's user,
    // which has not spoken yet, says Hello from a datagram socket.
    let theirs = frank.content_answer().and_then(|a| a.bfcp).expect("BFCP");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    udp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut hello = bfcp(11, theirs.conference_id, 21, theirs.user_id, &[]);
    hello[0] = 0x40;
    udp.send_to(&hello, theirs.addr).expect("send");
    let mut buf = [0u8; 1500];
    let (n, _) = udp.recv_from(&mut buf).expect("a HelloAck over UDP");
    let ack = &buf[..n];
    assert_eq!(
        (ack[0] >> 5, ack[0] & 0x10, ack[1]),
        (2, 0x10, 12),
        "HelloAck v2: {ack:02x?}"
    );
    assert_eq!(&ack[8..10], &21u16.to_be_bytes(), "its transaction");
    assert_eq!(&ack[10..12], &theirs.user_id.to_be_bytes(), "its user");
    assert_eq!(
        node.metric("tandem_floor_requests_total", &[("outcome", "error")]),
        4.0,
        "refused floor requests: unknown conference, unknown user, unparseable, bad version"
    );
    drop((erin, frank));
}
