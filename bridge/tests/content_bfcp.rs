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

    // Bob releases: the presentation ends for everyone.
    rt.block_on(bob.release_floor()).expect("bob releases");
    floor(&rt, &node, &bob, FloorState::Released);
    wait_content(&node, "the presentation ended", |c| c["floor"] == "idle");
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
    drop((alice, bob, carol));
}
