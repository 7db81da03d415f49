//! What a room system sees in continuous presence, checked on the decoded
//! pictures of synthetic room systems (`tandem-loadtest`, which has its own
//! H.264 packetizer, depacketizer and SDP): the right colours in the right
//! panes, never your own, the loudest talker in the large pane, and a frozen
//! camera that never stalls the others.

mod common;

use std::time::{Duration, Instant};

use tandem_loadtest::{RoomSystem, RoomSystemConfig, VideoSpec};

use common::rooms::runtime;
use common::{Node, wait_for};

type Rgb = (u8, u8, u8);

const RED: Rgb = (220, 30, 30);
const GREEN: Rgb = (30, 200, 30);
const BLUE: Rgb = (30, 30, 220);
const YELLOW: Rgb = (220, 220, 30);
const MAGENTA: Rgb = (200, 30, 200);
/// The node's name tile (a participant with no picture).
const NAME_TILE: Rgb = (40, 44, 52);
const BLACK: Rgb = (0, 0, 0);

const PALETTE: [(&str, Rgb); 7] = [
    ("red", RED),
    ("green", GREEN),
    ("blue", BLUE),
    ("yellow", YELLOW),
    ("magenta", MAGENTA),
    ("name tile", NAME_TILE),
    ("black", BLACK),
];

fn distance(a: Rgb, b: Rgb) -> u32 {
    let d = |x: u8, y: u8| (i32::from(x) - i32::from(y)).unsigned_abs();
    d(a.0, b.0) + d(a.1, b.1) + d(a.2, b.2)
}

/// The palette name nearest to `c`, if it is near enough to call it that.
fn name_of(c: Rgb) -> &'static str {
    PALETTE
        .iter()
        .map(|(n, p)| (distance(c, *p), *n))
        .min()
        .filter(|(d, _)| *d < 110)
        .map_or("unknown", |(_, n)| n)
}

/// Fractions of the picture to sample in each 2x2 pane: its middle, clear of
/// the name label along its bottom edge.
fn grid2x2_regions() -> Vec<(f32, f32, f32, f32)> {
    let mut v = Vec::new();
    for row in 0..2 {
        for col in 0..2 {
            let (x, y) = (col as f32 * 0.5, row as f32 * 0.5);
            v.push((x + 0.1, y + 0.08, x + 0.4, y + 0.33));
        }
    }
    v
}

/// The large pane of 1+5 (2x2 cells of a 3x3 grid), clear of its label.
const LARGE_PANE_1P5: (f32, f32, f32, f32) = (0.08, 0.06, 0.58, 0.5);

fn pane_names(room: &RoomSystem, regions: &[(f32, f32, f32, f32)]) -> Vec<&'static str> {
    regions
        .iter()
        .map(|&(x0, y0, x1, y1)| room.seen_colour(x0, y0, x1, y1).map_or("nothing", name_of))
        .collect()
}

fn camera(
    rt: &tokio::runtime::Runtime,
    node: &Node,
    conference: &str,
    name: &str,
    colour: Rgb,
    tone_hz: f32,
) -> RoomSystem {
    let cfg = RoomSystemConfig::new(node.sip_addr(), conference, name)
        .with_tone(tone_hz, 0.05)
        .with_video(VideoSpec::new(colour));
    match rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(15), RoomSystem::call(cfg)).await
    }) {
        Ok(Ok(room)) => room,
        Ok(Err(e)) => panic!("{name} could not join: {e}\n{}", node.log_tail()),
        Err(_) => panic!("{name}: no answer within 15 s\n{}", node.log_tail()),
    }
}

/// A node sending 640x360 at 15 fps: what the assertions need, at a cost
/// the two-core CI machine carries alongside five decoding room systems.
fn video_node(extra: &[(&str, &str)]) -> Node {
    let mut env = vec![
        ("TANDEM_VIDEO_MAX_RESOLUTION", "360p"),
        ("TANDEM_VIDEO_FPS", "15"),
    ];
    env.extend_from_slice(extra);
    Node::start_with(&env)
}

#[test]
fn four_cameras_fill_a_2x2_nobody_sees_themselves_and_the_loudest_takes_the_large_pane() {
    let node = video_node(&[("TANDEM_VIDEO_LAYOUT", "2x2")]);
    let rt = runtime();
    let conf = "7400";
    let senders = [
        ("red", RED, 440.0),
        ("green", GREEN, 660.0),
        ("blue", BLUE, 880.0),
        ("yellow", YELLOW, 1100.0),
    ];
    let rooms: Vec<(&str, RoomSystem, f32)> = senders
        .iter()
        .map(|&(n, c, hz)| (n, camera(&rt, &node, conf, n, c, hz), hz))
        .collect();
    let viewer = camera(&rt, &node, conf, "magenta", MAGENTA, 1320.0);
    let regions = grid2x2_regions();

    // The viewer sees the four cameras, one per pane.
    let mut want = vec!["blue", "green", "red", "yellow"];
    want.sort_unstable();
    let mut last = Vec::new();
    let seen = wait_for_panes(&viewer, &regions, Duration::from_secs(10), |names| {
        last = names.to_vec();
        let mut got = names.to_vec();
        got.sort_unstable();
        got == want
    });
    assert!(
        seen,
        "the fifth room's 2x2 should hold red, green, blue and yellow; it shows {last:?}\n{}",
        node.log_tail()
    );

    // Each camera sees the other four (the viewer's magenta included), never itself.
    for (name, room, _) in &rooms {
        let mut want: Vec<&str> = ["red", "green", "blue", "yellow", "magenta"]
            .into_iter()
            .filter(|n| n != name)
            .collect();
        want.sort_unstable();
        let mut last = Vec::new();
        let ok = wait_for_panes(room, &regions, Duration::from_secs(5), |names| {
            last = names.to_vec();
            let mut got = names.to_vec();
            got.sort_unstable();
            got == want
        });
        assert!(
            ok,
            "{name}'s 2x2 should hold the other four and not {name}; it shows {last:?}"
        );
    }

    // 1+5: whoever is loudest moves into the large pane within 1.5 s.
    let r = node.post(
        &format!("/api/conferences/{conf}/layout"),
        r#"{"layout":"1+5"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    for (loud, _) in [("blue", ()), ("green", ()), ("yellow", ())] {
        for (name, room, hz) in &rooms {
            let amplitude = if *name == loud { 0.5 } else { 0.05 };
            room.set_tone(Some(*hz), amplitude);
        }
        let started = Instant::now();
        let mut last = "nothing";
        let moved = wait_for_panes(&viewer, &[LARGE_PANE_1P5], Duration::from_secs(5), |n| {
            last = n[0];
            n[0] == loud
        });
        let took = started.elapsed();
        assert!(
            moved,
            "{loud} became the loudest but the large pane still shows {last} after 5 s\n{}",
            node.log_tail()
        );
        eprintln!("[video] {loud} took the large pane {took:?} after becoming the loudest");
        assert!(
            took <= Duration::from_millis(1500),
            "{loud} took {took:?} to reach the large pane (limit 1.5 s)"
        );
    }
    // The node really composed once per view: five receivers, at most
    // 1 + visible encoders (here every participant is visible).
    let encoders = node.metric("tandem_video_encoders", &[]);
    assert!(encoders <= 6.0, "{encoders} encoders for 5 receivers");
}

/// Polls what `room` sees in `regions` every 50 ms until `ok` or `timeout`.
fn wait_for_panes(
    room: &RoomSystem,
    regions: &[(f32, f32, f32, f32)],
    timeout: Duration,
    mut ok: impl FnMut(&[&'static str]) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ok(&pane_names(room, regions)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_frozen_camera_never_stalls_the_others_and_shows_its_name_tile() {
    let node = video_node(&[
        ("TANDEM_VIDEO_LAYOUT", "2x2"),
        ("TANDEM_VIDEO_FREEZE_TIMEOUT_MS", "1500"),
    ]);
    let rt = runtime();
    let conf = "7410";
    let red = camera(&rt, &node, conf, "red", RED, 440.0);
    let green = camera(&rt, &node, conf, "green", GREEN, 660.0);
    let blue = camera(&rt, &node, conf, "blue", BLUE, 880.0);
    let viewer = camera(&rt, &node, conf, "magenta", MAGENTA, 1320.0);
    let regions = grid2x2_regions();
    let has = |names: &[&str], n: &str| names.contains(&n);
    assert!(
        wait_for_panes(&viewer, &regions, Duration::from_secs(10), |n| {
            has(n, "red") && has(n, "green") && has(n, "blue")
        }),
        "the viewer should see red, green and blue; it shows {:?}",
        pane_names(&viewer, &regions)
    );
    let red_pane = pane_names(&viewer, &regions)
        .iter()
        .position(|n| *n == "red")
        .expect("red pane");

    // Red's camera stops mid-call.
    red.set_video_paused(true);
    let decoded = |r: &RoomSystem| r.video_stats().received.frames_decoded;
    let start = (Instant::now(), decoded(&viewer));
    std::thread::sleep(Duration::from_secs(3));
    let (frames, secs) = (decoded(&viewer) - start.1, start.0.elapsed().as_secs_f64());
    // 15 fps views: the viewer kept getting (nearly) every picture.
    let fps = frames as f64 / secs;
    eprintln!(
        "[video] viewer decoded {frames} pictures in {secs:.2} s ({fps:.1} fps) while red was frozen"
    );
    assert!(
        fps >= 13.0,
        "the views stalled with one frozen camera: {fps:.1} fps decoded (views are 15 fps)"
    );
    // Red's pane now shows its name tile; the others still move on.
    let names = pane_names(&viewer, &regions);
    assert_eq!(
        names[red_pane], "name tile",
        "red's pane after its camera froze: {names:?}"
    );
    assert!(has(&names, "green") && has(&names, "blue"), "{names:?}");
    assert!(!has(&names, "red"), "{names:?}");

    // The camera comes back, and so does its picture.
    red.set_video_paused(false);
    assert!(
        wait_for_panes(&viewer, &regions, Duration::from_secs(5), |n| n[red_pane]
            == "red"),
        "red's picture did not come back: {:?}",
        pane_names(&viewer, &regions)
    );
    drop((green, blue));
    let _ = wait_for("node still answering", Duration::from_secs(2), || {
        node.conference(conf)
    });
}

/// Cameras are asked (TMMBR) for no more than their largest pane needs: on
/// a 640x360 canvas in 1+5, the large pane needs 360p and the small panes
/// 180p. The speaker fills everyone's large pane, and the previous speaker
/// the speaker's own. A 640x360 room system steps down to 320x180 while it
/// is only small, and back up when it speaks; the node decodes what it
/// asked for, and the speaker is in the large pane throughout.
#[test]
fn cameras_send_what_their_pane_needs_and_step_up_when_they_speak() {
    let node = video_node(&[("TANDEM_VIDEO_LAYOUT", "1+5")]);
    let rt = runtime();
    let conf = "7420";
    let hd_camera = |name: &str, colour: Rgb, hz: f32| {
        let cfg = RoomSystemConfig::new(node.sip_addr(), conf, name)
            .with_tone(hz, 0.05)
            .with_video(
                VideoSpec::new(colour)
                    .with_size(640, 360)
                    .with_bitrate(600_000),
            );
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(15), RoomSystem::call(cfg)).await
        })
        .unwrap_or_else(|_| panic!("{name}: no answer within 15 s"))
        .unwrap_or_else(|e| panic!("{name} could not join: {e}\n{}", node.log_tail()))
    };
    let rooms = [
        ("red", hd_camera("red", RED, 440.0), 440.0),
        ("green", hd_camera("green", GREEN, 660.0), 660.0),
        ("blue", hd_camera("blue", BLUE, 880.0), 880.0),
    ];
    let viewer = camera(&rt, &node, conf, "magenta", MAGENTA, 1320.0);

    let decoded_at = |name: &str| {
        node.participant(conf, name).and_then(|p| {
            p["video_stream"]["received_resolution"]
                .as_str()
                .map(str::to_owned)
        })
    };
    // Before anyone spoke, which of the others is "previous" is not known.
    for (loud, previous) in [("green", None), ("blue", Some("green"))] {
        for (name, room, hz) in &rooms {
            room.set_tone(Some(*hz), if *name == loud { 0.5 } else { 0.05 });
        }
        let mut last = String::new();
        let settled = wait_for_state(Duration::from_secs(8), || {
            let sizes: Vec<String> = rooms
                .iter()
                .map(|(name, room, _)| {
                    let s = room.video_stats().sent;
                    format!(
                        "{name}: sends {}x{} (limit {:?}), node decodes {:?}",
                        s.width,
                        s.height,
                        s.limit_bps,
                        decoded_at(name)
                    )
                })
                .collect();
            last = sizes.join("; ");
            let at = |name: &str, want: (u32, u32)| {
                let Some((_, room, _)) = rooms.iter().find(|(n, _, _)| *n == name) else {
                    return false;
                };
                let s = room.video_stats().sent;
                (s.width, s.height) == want
                    && decoded_at(name).as_deref() == Some(&format!("{}x{}", want.0, want.1))
            };
            let small: Vec<&str> = rooms
                .iter()
                .map(|(n, _, _)| *n)
                .filter(|n| *n != loud && Some(*n) != previous)
                .collect();
            at(loud, (640, 360))
                && previous.is_none_or(|p| at(p, (640, 360)))
                && match previous {
                    Some(_) => small.iter().all(|n| at(n, (320, 180))),
                    None => small.iter().any(|n| at(n, (320, 180))),
                }
        });
        assert!(
            settled,
            "with {loud} speaking after {previous:?}, those two should send 640x360 and the \
             others 320x180: {last}\n{}",
            node.log_tail()
        );
        eprintln!("[video] {loud} speaking: {last}");
        assert!(
            wait_for_panes(&viewer, &[LARGE_PANE_1P5], Duration::from_secs(3), |n| n[0]
                == loud),
            "{loud} should fill the large pane: {:?}",
            pane_names(&viewer, &[LARGE_PANE_1P5])
        );
    }
    let limits =
        |class: &str| node.metric("tandem_video_source_limits_sent_total", &[("class", class)]);
    assert!(
        limits("180p") >= 2.0,
        "180p limits sent: {}",
        limits("180p")
    );
    assert!(
        limits("360p") >= 2.0,
        "360p limits sent: {}",
        limits("360p")
    );
    for (name, room, _) in &rooms {
        let s = room.video_stats();
        assert!(s.sent.tmmbr_received >= 1, "{name}: {:?}", s.sent);
        assert_eq!(s.received.decode_errors, 0, "{name}: {:?}", s.received);
    }
}

/// Polls `ok` every 100 ms until it holds or `timeout` passes.
fn wait_for_state(timeout: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if ok() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
