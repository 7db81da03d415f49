//! Story (issue 6, content through the cascade): conference 4711 on the
//! node is cascaded into Janus VideoRoom 4711 through the Edge (coturn,
//! relay-only), and presentations cross the cascade both ways:
//! - a room system takes the BFCP floor and presents red slides: headless
//!   Chromium in the meeting receives them as a second video track (the
//!   publisher "4711 content", beside the bridge's own people video) and
//!   decodes red pictures; the publication goes when the floor is released;
//! - Chromium shares a (fake) blue screen into the meeting (a publisher
//!   whose video is described as `screen`): the floor is taken on its
//!   behalf and a room system's content channel decodes blue slides; when
//!   the share stops the floor is free, and a room system takes it as
//!   usual.
//!
//! Like `cascade_janus.rs`, each test re-executes itself inside
//! `deploy/peers/browser/netns-peers.sh` (Janus never uses loopback for
//! media): a private network namespace with coturn and Janus.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use tandem_loadtest::{
    CallOptions, ContentConfig, FloorState, Rgb, RoomSystem, RoomSystemConfig, VideoSpec,
};

use common::rooms::runtime;
use common::{Node, TempDir};

const ROOM: &str = "4711";
const TEST_OUT: &str = "a_room_systems_slides_reach_the_meeting_as_a_second_video_track";
const TEST_IN: &str = "a_native_screen_share_reaches_the_room_systems_content_channels";
/// Slides' colour area: above the sender's moving square in the bottom tenth.
const SLIDE: (f32, f32, f32, f32) = (0.05, 0.05, 0.95, 0.85);

use common::netns::{Browser, reexec_in_namespace};

/// A node cascading room 4711 through the namespace's Janus and coturn.
fn cascaded_node(dir: &TempDir) -> (Node, String) {
    let janus = std::env::var("TANDEM_JANUS_URL").expect("netns-peers.sh sets TANDEM_JANUS_URL");
    let turn = std::env::var("TANDEM_TURN_URL").expect("netns-peers.sh sets TANDEM_TURN_URL");
    let config = dir.path().join("tandem.toml");
    std::fs::write(
        &config,
        format!(
            "[cascade]\njanus_url = \"{janus}\"\nice_policy = \"relay\"\nmedia_ip = \"10.99.0.1\"\n\
             create_room = true\nadmin_key = \"supersecret\"\n\
             [[cascade.turn]]\nurl = \"{turn}\"\nusername = \"tandem\"\ncredential = \"tandem123\"\n\
             [content]\nenabled = true\n"
        ),
    )
    .expect("config written");
    let node = Node::start_full(
        &[
            ("TANDEM_VIDEO_MAX_RESOLUTION", "720p"),
            ("TANDEM_VIDEO_FPS", "15"),
        ],
        &["--config", config.to_str().expect("utf-8 path")],
    );
    (node, turn)
}

/// A room system with a content channel presenting `slides` when it holds
/// the floor; a small grey camera.
fn call(rt: &tokio::runtime::Runtime, node: &Node, name: &str, slides: Rgb) -> RoomSystem {
    let cfg = RoomSystemConfig::new(node.sip_addr(), ROOM, name)
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

fn wait_conference(
    node: &Node,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let c = node.conference(ROOM).unwrap_or_default();
        if ok(&c) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: content {} cascade {}\n{}",
            c["content"],
            c["cascade"],
            node.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn distance(a: Rgb, b: Rgb) -> u32 {
    let d = |x: u8, y: u8| u32::from(x.abs_diff(y));
    d(a.0, b.0) + d(a.1, b.1) + d(a.2, b.2)
}

/// The client's last line: its summary.
fn summary(log: &Path) -> serde_json::Value {
    let out = std::fs::read_to_string(log).unwrap_or_default();
    out.lines()
        .rev()
        .find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["event"] == "summary").then_some(v)
        })
        .unwrap_or_default()
}

#[test]
fn a_room_systems_slides_reach_the_meeting_as_a_second_video_track() {
    if std::env::var_os("TANDEM_NETNS").is_none() {
        reexec_in_namespace(TEST_OUT);
        return;
    }
    let started = Instant::now();
    let dir = TempDir::new("cascade-content-out");
    let (node, turn) = cascaded_node(&dir);
    let rt = runtime();
    let alice = call(&rt, &node, "alice", (220, 30, 30));
    wait_conference(&node, "cascade connected", Duration::from_secs(20), |c| {
        c["cascade"]["state"] == "connected"
    });
    assert_eq!(
        node.conference(ROOM).expect("conference")["cascade"]["content"]["publishing"],
        false,
        "nothing is published before anybody presents"
    );

    // Alice presents: her slides go into the meeting as a publisher of
    // their own.
    rt.block_on(alice.request_floor())
        .expect("alice asks for the floor");
    floor(&rt, &node, &alice, FloorState::Granted);
    let floor_at = Instant::now();
    wait_conference(&node, "slides published", Duration::from_secs(10), |c| {
        c["content"]["presenter_name"] == "alice" && c["cascade"]["content"]["publishing"] == true
    });
    common::wait_for(
        "the transcoder encodes alice's slides",
        Duration::from_secs(15),
        || {
            (node.metric(
                "tandem_cascade_content_frames_total",
                &[("direction", "out")],
            ) > 0.0)
                .then_some(())
        },
    );
    eprintln!(
        "[content] first slide encoded for the meeting {:?} after the floor was granted",
        floor_at.elapsed()
    );

    // A native client subscribes to the room: the bridge's people video
    // and the slides, two video tracks.
    let log = dir.path().join("viewer.jsonl");
    let mut viewer = Browser::start(
        ROOM,
        &turn,
        &log,
        &[
            "subscribe",
            "--match",
            "^(Tandem room systems|4711 content)$",
            "--count",
            "2",
            "--duration",
            "10",
            "--expect-frames",
            "--quiet",
        ],
    );
    let status = common::wait_child(&mut viewer.0, Duration::from_secs(45))
        .expect("the viewer ends after its 10 s");
    let s = summary(&log);
    eprintln!("[content] viewer summary: {s}");
    assert!(status.success(), "the viewer's checks failed: {s}");
    let feeds = s["feeds"].as_array().cloned().unwrap_or_default();
    let video_tracks = feeds.iter().filter(|f| f["video"].is_object()).count();
    assert_eq!(
        video_tracks, 2,
        "two video tracks (people, slides): {feeds:?}"
    );
    // The bridge's people video goes on showing the people (alice's grey
    // camera), not the slides a second time.
    let people = feeds
        .iter()
        .find(|f| f["display"] == "Tandem room systems")
        .expect("the bridge's people video subscribed");
    assert_ne!(
        people["video"]["dominant"], "red",
        "the slides are not in the link's layout: {people}"
    );
    let slides = feeds
        .iter()
        .find(|f| f["display"] == "4711 content")
        .expect("the slides' publisher subscribed");
    let v = &slides["video"];
    assert!(
        v["framesDecoded"].as_u64().unwrap_or(0) > 10,
        "the slides decode in Chromium: {v}"
    );
    assert_eq!(
        v["dominant"], "red",
        "Chromium sees alice's red slides: {v}"
    );
    assert!(
        v["frameWidth"].as_u64().unwrap_or(0) <= 1920
            && v["frameHeight"].as_u64().unwrap_or(0) <= 1080,
        "at most 1080p: {v}"
    );
    // 5-15 fps (the transcoder's range; getStats' last figure).
    let fps = v["framesPerSecond"].as_f64().unwrap_or(0.0);
    assert!((3.0..=17.0).contains(&fps), "slides at {fps} fps: {v}");

    // Alice stops: the publication leaves the meeting.
    rt.block_on(alice.release_floor()).expect("alice releases");
    floor(&rt, &node, &alice, FloorState::Released);
    wait_conference(&node, "slides unpublished", Duration::from_secs(10), |c| {
        c["content"]["floor"] == "idle" && c["cascade"]["content"]["publishing"] == false
    });
    let m = |name: &str, labels: &[(&str, &str)]| node.metric(name, labels);
    assert_eq!(
        m("tandem_cascade_content_total", &[("direction", "out")]),
        1.0
    );
    let frames = m(
        "tandem_cascade_content_frames_total",
        &[("direction", "out")],
    );
    let bytes = m(
        "tandem_cascade_content_bytes_total",
        &[("direction", "out")],
    );
    eprintln!(
        "[content] {frames} slides pictures, {bytes} bytes published; test took {:?}",
        started.elapsed()
    );
    assert!(
        frames > 20.0 && bytes > 1000.0,
        "{frames} pictures, {bytes} bytes"
    );
}

#[test]
fn a_native_screen_share_reaches_the_room_systems_content_channels() {
    if std::env::var_os("TANDEM_NETNS").is_none() {
        reexec_in_namespace(TEST_IN);
        return;
    }
    let started = Instant::now();
    let dir = TempDir::new("cascade-content-in");
    let (node, turn) = cascaded_node(&dir);
    let rt = runtime();
    let bob = call(&rt, &node, "bob", (30, 200, 30));
    wait_conference(&node, "cascade connected", Duration::from_secs(20), |c| {
        c["cascade"]["state"] == "connected"
    });

    // Chromium shares a blue screen (and nothing else) into the meeting.
    let log = dir.path().join("sharer.jsonl");
    let mut sharer = Browser::start(
        ROOM,
        &turn,
        &log,
        &[
            "publish",
            "--display",
            "nat",
            "--no-audio",
            "--no-video",
            "--screen",
            "--screen-color",
            "blue",
            "--duration",
            "0",
            "--quiet",
        ],
    );
    let shared = Instant::now();
    let c = wait_conference(
        &node,
        "the floor taken for the share",
        Duration::from_secs(30),
        |c| {
            c["content"]["floor"] == "presenting"
                && c["content"]["presenter_name"] == "nat-screen"
                && c["cascade"]["content"]["native_share"] == "nat-screen"
        },
    );
    assert_eq!(
        c["cascade"]["native_participants"], 0,
        "a screen share is not a person: {}",
        c["cascade"]
    );
    assert_eq!(
        c["cascade"]["content"]["publishing"], false,
        "the native share is not published back into the meeting"
    );

    // Bob's content channel decodes the blue screen.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = None;
    while Instant::now() < deadline {
        seen = bob.content_seen_colour(SLIDE.0, SLIDE.1, SLIDE.2, SLIDE.3);
        if seen.is_some_and(|c| distance(c, (0, 0, 255)) < 90) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        seen.is_some_and(|c| distance(c, (0, 0, 255)) < 90),
        "bob should see the blue screen share on his content channel, sees {seen:?}; stats {:?}\n{}",
        bob.content_stats().received,
        node.log_tail()
    );
    eprintln!(
        "[content] bob sees the native share {:?} after Chromium started",
        shared.elapsed()
    );
    let decoded = bob.content_stats().received.frames_decoded;
    std::thread::sleep(Duration::from_secs(2));
    let rate = (bob.content_stats().received.frames_decoded - decoded) as f64 / 2.0;
    eprintln!("[content] bob decodes the share at {rate} fps");
    assert!(rate >= 3.0, "the share reaches bob at {rate} fps");

    // The share stops: the floor is free, and bob takes it as usual.
    common::stop_child(&mut sharer.0, Duration::from_secs(5));
    wait_conference(
        &node,
        "the floor released with the share",
        Duration::from_secs(15),
        |c| c["content"]["floor"] == "idle" && c["cascade"]["content"]["native_share"].is_null(),
    );
    rt.block_on(bob.request_floor())
        .expect("bob asks for the floor");
    floor(&rt, &node, &bob, FloorState::Granted);
    wait_conference(&node, "bob presents", Duration::from_secs(10), |c| {
        c["content"]["presenter_name"] == "bob"
    });
    let m = |name: &str, labels: &[(&str, &str)]| node.metric(name, labels);
    assert_eq!(
        m("tandem_cascade_content_total", &[("direction", "in")]),
        1.0
    );
    let frames = m(
        "tandem_cascade_content_frames_total",
        &[("direction", "in")],
    );
    eprintln!(
        "[content] {frames} share pictures sent to room systems; test took {:?}",
        started.elapsed()
    );
    assert!(frames > 10.0, "{frames} pictures");
}
