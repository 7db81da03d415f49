//! Story: conference 4711 on the node is cascaded into the native meeting,
//! Janus VideoRoom 4711, through the Edge (coturn) with a relay-only ICE
//! policy. A headless Chromium in the meeting publishes a red camera and a
//! 440 Hz microphone and listens to the room; two room systems (green/880 Hz
//! and blue/1320 Hz) dial conference 4711 on the node.
//! - the room systems hear the browser's 440 Hz and see its red picture;
//! - the browser hears the room systems and never its own 440 Hz back, and
//!   decodes the bridge's video;
//! - the node reports the cascade connected with one native participant;
//! - Janus is killed and restarted: the agent rejoins within 10 s of Janus
//!   being back, and the room systems' calls stay up throughout.
//!
//! Janus never uses loopback for media, so the test re-executes itself
//! inside `deploy/peers/browser/netns-peers.sh`: a private network namespace
//! (10.99.0.1 on a veth) where coturn and Janus run. Nothing leaves it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tandem_loadtest::{RoomSystem, RoomSystemConfig, VideoSpec};

use common::rooms::runtime;
use common::{Node, TempDir};

const ROOM: &str = "4711";
const TEST: &str = "room_systems_and_a_browser_hear_and_see_each_other_across_the_cascade";
const TEST_PEOPLE: &str = "room_system_speakers_appear_in_the_meeting_as_people_of_their_own";
const TEST_SPEAKERS: &str =
    "the_native_talker_is_shown_at_the_layer_its_pane_needs_and_only_watched_layers_are_encoded";

use common::netns::{Browser, reexec_in_namespace};

/// Polls `ok` every 100 ms until it holds or `timeout` passes.
fn wait_until(timeout: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn room_systems_and_a_browser_hear_and_see_each_other_across_the_cascade() {
    if std::env::var_os("TANDEM_NETNS").is_none() {
        reexec_in_namespace(TEST);
        return;
    }
    let janus = std::env::var("TANDEM_JANUS_URL").expect("netns-peers.sh sets TANDEM_JANUS_URL");
    let turn = std::env::var("TANDEM_TURN_URL").expect("netns-peers.sh sets TANDEM_TURN_URL");
    let dir = TempDir::new("cascade");
    let config = dir.path().join("tandem.toml");
    std::fs::write(
        &config,
        format!(
            "[cascade]\njanus_url = \"{janus}\"\nice_policy = \"relay\"\nmedia_ip = \"10.99.0.1\"\n\
             create_room = true\nadmin_key = \"supersecret\"\n\
             [[cascade.turn]]\nurl = \"{turn}\"\nusername = \"tandem\"\ncredential = \"tandem123\"\n"
        ),
    )
    .expect("config written");
    let started = Instant::now();
    let node = Node::start_full(
        &[
            ("TANDEM_VIDEO_MAX_RESOLUTION", "720p"),
            ("TANDEM_VIDEO_FPS", "15"),
        ],
        &["--config", config.to_str().expect("utf-8 path")],
    );
    let rt = runtime();
    let call = |name: &str, colour: (u8, u8, u8), hz: f32| {
        let cfg = RoomSystemConfig::new(node.sip_addr(), ROOM, name)
            .with_tone(hz, 0.3)
            .with_video(VideoSpec::new(colour));
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(15), RoomSystem::call(cfg)).await
        })
        .unwrap_or_else(|_| panic!("{name}: no answer within 15 s"))
        .unwrap_or_else(|e| panic!("{name} could not join: {e}\n{}", node.log_tail()))
    };
    let green = call("green", (30, 200, 30), 880.0);

    // The agent joins the meeting (creating room 4711) when the first room
    // system arrives.
    let connected = common::wait_for("cascade connected", Duration::from_secs(20), || {
        let c = node.conference(ROOM)?;
        (c["cascade"]["state"] == "connected").then_some(c)
    });
    let join_time = started.elapsed();
    eprintln!(
        "[cascade] connected {join_time:?} after the node started: {}",
        connected["cascade"]
    );
    let blue = call("blue", (30, 30, 220), 1320.0);

    // The browser: publishes red + 440 Hz, listens to everyone else.
    let log = dir.path().join("browser.jsonl");
    let mut browser = Browser::start(
        ROOM,
        &turn,
        &log,
        &[
            "publish",
            "--display",
            "browser-red",
            "--color",
            "red",
            "--tone",
            "440",
            "--duration",
            "25",
            "--subscribe",
            "--match",
            ".",
            "--expect-frames",
            "--expect-not-tone",
            "440",
            "--probe-hz",
            "880",
        ],
    );

    // The browser comes into the conference as a participant with its name.
    common::wait_for(
        "the browser in the conference",
        Duration::from_secs(25),
        || node.participant(ROOM, "browser-red"),
    );
    let seen_at = started.elapsed();
    eprintln!("[cascade] the browser is a participant {seen_at:?} after the node started");

    // A native viewer of the bridge's small view: Janus forwards the 180p
    // layer of its simulcast (substream 0).
    let mut low = Browser::start(
        ROOM,
        &turn,
        &dir.path().join("low.jsonl"),
        &[
            "subscribe",
            "--match",
            "^Tandem",
            "--count",
            "1",
            "--substream",
            "0",
            "--duration",
            "10",
            "--expect-frames",
        ],
    );

    // Room systems hear 440 Hz and see red.
    let red_seen = |room: &RoomSystem| {
        let regions = [
            (0.05, 0.05, 0.45, 0.4),
            (0.55, 0.05, 0.95, 0.4),
            (0.05, 0.55, 0.45, 0.85),
            (0.55, 0.55, 0.95, 0.85),
            (0.1, 0.1, 0.9, 0.8),
        ];
        regions.iter().any(|&(x0, y0, x1, y1)| {
            room.seen_colour(x0, y0, x1, y1)
                .is_some_and(|(r, g, b)| r > 150 && g < 90 && b < 90)
        })
    };
    for (name, room) in [("green", &green), ("blue", &blue)] {
        let ok = wait_until(Duration::from_secs(15), || red_seen(room));
        assert!(
            ok,
            "{name} never saw the browser's red picture (it sees {:?}); the browser's leg: {}; \
             cascade packets in: {} video, {} audio",
            room.seen_colour(0.1, 0.1, 0.9, 0.8),
            node.participant(ROOM, "browser-red").unwrap_or_default(),
            node.metric(
                "tandem_cascade_packets_total",
                &[("direction", "in"), ("kind", "video")]
            ),
            node.metric(
                "tandem_cascade_packets_total",
                &[("direction", "in"), ("kind", "audio")]
            ),
        );
        room.mark();
    }
    // The browser's picture moves (its camera has a square sliding along
    // the bottom): in green's pane showing red, luma changes between two
    // pictures a second apart.
    let panes = [
        (0.0, 0.0, 0.5, 0.5),
        (0.5, 0.0, 1.0, 0.5),
        (0.0, 0.5, 0.5, 1.0),
        (0.5, 0.5, 1.0, 1.0),
        (0.0, 0.0, 1.0, 1.0),
    ];
    let red_pane = panes
        .iter()
        .copied()
        .find(|&(x0, y0, x1, y1)| {
            let m = |a: f64, b: f64| a + (b - a) * 0.15;
            green
                .seen_colour(
                    m(x0, x1) as f32,
                    m(y0, y1) as f32,
                    m(x1, x0) as f32,
                    m(y1, y0) as f32,
                )
                .is_some_and(|(r, g, b)| r > 150 && g < 90 && b < 90)
        })
        .expect("green sees red in a pane");
    let changed = |a: &tandem_loadtest::Picture, b: &tandem_loadtest::Picture| {
        let (w, h) = (a.width() as f64, a.height() as f64);
        let (x0, y0, x1, y1) = red_pane;
        let (ya, yb) = (a.planes().0, b.planes().0);
        let mut n = 0;
        for y in (y0 * h) as usize..(y1 * h) as usize {
            for x in (x0 * w) as usize..(x1 * w) as usize {
                let i = y * a.width() as usize + x;
                if ya
                    .get(i)
                    .zip(yb.get(i))
                    .is_some_and(|(p, q)| p.abs_diff(*q) > 40)
                {
                    n += 1;
                }
            }
        }
        n
    };
    let before = green.seen().expect("green decoded a picture");
    std::thread::sleep(Duration::from_secs(1));
    let after = green.seen().expect("green decoded a picture");
    let moved = changed(&before, &after);
    assert!(
        moved > 20 && before.width() == after.width(),
        "the browser's picture in green's pane {red_pane:?} does not move ({moved} pixels changed)"
    );
    std::thread::sleep(Duration::from_secs(2));
    for (name, room) in [("green", &green), ("blue", &blue)] {
        let heard = room.heard();
        assert!(
            heard.contains(440.0),
            "{name} does not hear the browser's 440 Hz (level {:.1} dB over {:?})",
            heard.tone_level(440.0),
            heard.duration()
        );
    }

    // The small view decoded at 320 wide: the 180p layer.
    let low_status = common::wait_child(&mut low.0, Duration::from_secs(30))
        .expect("the low-layer viewer ends after its 10 s");
    let low_out = std::fs::read_to_string(dir.path().join("low.jsonl")).unwrap_or_default();
    let low_stats = low_out
        .lines()
        .rev()
        .find(|l| l.contains("frameWidth"))
        .unwrap_or("(no stats)");
    assert!(
        low_status.success(),
        "the low-layer viewer failed: {low_stats}"
    );
    assert!(
        low_stats.contains("\"frameWidth\":320"),
        "substream 0 should be the 320x180 layer: {low_stats}"
    );

    // The operator's view while the browser is in the meeting: media on a
    // relay candidate (the Edge), and coturn saw the agent's allocation.
    let c = node.conference(ROOM).expect("conference");
    assert_eq!(c["cascade"]["state"], "connected", "{}", c["cascade"]);
    assert_eq!(c["cascade"]["native_participants"], 1, "{}", c["cascade"]);
    assert_eq!(c["cascade"]["candidate"], "relay", "{}", c["cascade"]);
    let peers = PathBuf::from(std::env::var("TANDEM_PEERS_DIR").expect("TANDEM_PEERS_DIR"));
    let turn_log = std::fs::read_to_string(peers.join("turn.log")).unwrap_or_default();
    assert!(
        turn_log
            .lines()
            .any(|l| l.contains("user <tandem>") && l.contains("ALLOCATE processed, success")),
        "coturn's log shows no allocation by the agent (user tandem):\n{}",
        turn_log
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The browser: decoded the bridge's video, heard the room systems, never
    // itself (client.js exits 3 when an --expect check fails).
    let status = common::wait_child(&mut browser.0, Duration::from_secs(40))
        .expect("the browser client ends after its 25 s");
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    let summary = out
        .lines()
        .rev()
        .find(|l| l.contains("\"summary\"") || l.contains("\"type\":\"summary\""))
        .unwrap_or("(no summary line)");
    eprintln!("[cascade] browser summary: {summary}");
    assert!(
        status.success(),
        "the browser's checks failed ({status}): {summary}"
    );
    // The browser's own view of the bridge: the high layer, 1280 wide.
    assert!(
        out.contains("\"frameWidth\":1280"),
        "the browser should decode the bridge's 1280x720 high layer: {summary}"
    );
    assert!(
        out.contains("880") || out.contains("1320"),
        "the browser's stats never name the room systems' tones: {summary}"
    );

    // The browser left when its run ended: the cascade stays up without it.
    let c = common::wait_for("the browser's leg removed", Duration::from_secs(10), || {
        let c = node.conference(ROOM)?;
        (c["cascade"]["native_participants"] == 0).then_some(c)
    });
    assert_eq!(c["cascade"]["state"], "connected", "{}", c["cascade"]);
    assert!(node.participant(ROOM, "browser-red").is_none());
    let packets = |direction: &str, kind: &str| {
        node.metric(
            "tandem_cascade_packets_total",
            &[("direction", direction), ("kind", kind)],
        )
    };
    for (d, k) in [
        ("in", "audio"),
        ("in", "video"),
        ("out", "audio"),
        ("out", "video"),
    ] {
        assert!(
            packets(d, k) > 50.0,
            "cascade packets {d}/{k}: {}",
            packets(d, k)
        );
    }

    // Janus dies and comes back: the agent rejoins, the calls stay up.
    let janus_pid =
        std::env::var("TANDEM_JANUS_PID").expect("netns-peers.sh sets TANDEM_JANUS_PID");
    let rejoins_before = c["cascade"]["rejoins"].as_u64().unwrap_or(0);
    let killed = Command::new("kill")
        .args(["-KILL", &janus_pid])
        .status()
        .is_ok_and(|s| s.success());
    assert!(killed, "could not kill Janus (pid {janus_pid})");
    common::wait_for("the agent to notice", Duration::from_secs(15), || {
        let c = node.conference(ROOM)?;
        (c["cascade"]["state"] != "connected").then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let janus_conf = peers.join("janus");
    let restarted = Command::new("janus")
        .arg("-F")
        .arg(&janus_conf)
        .arg("-C")
        .arg(janus_conf.join("janus.jcfg"))
        .args(["-o", "-D"])
        .stdout(std::fs::File::create(peers.join("janus-restarted.log")).expect("log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("janus restarts");
    let _janus = Browser(restarted);
    let back = Instant::now();
    let c = common::wait_for("the agent to rejoin", Duration::from_secs(20), || {
        let c = node.conference(ROOM)?;
        (c["cascade"]["state"] == "connected"
            && c["cascade"]["rejoins"].as_u64().unwrap_or(0) > rejoins_before)
            .then_some(c)
    });
    let rejoin = back.elapsed();
    eprintln!(
        "[cascade] rejoined {rejoin:?} after Janus restarted: {}",
        c["cascade"]
    );
    assert!(
        rejoin <= Duration::from_secs(10),
        "the agent took {rejoin:?} to rejoin (limit 10 s)"
    );
    for name in ["green", "blue"] {
        assert!(
            node.participant(ROOM, name).is_some(),
            "{name}'s call did not survive the Janus restart"
        );
    }
    green.mark();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        green.heard().contains(1320.0),
        "green no longer hears blue after the Janus restart"
    );
    drop((green, blue));
}

/// A mono 48 kHz WAV: `tone_s` of `hz` then `silence_s` of silence, or the
/// other way round (`silence_first`). Chromium loops it as its microphone.
fn talk_wav(path: &Path, hz: f32, tone_s: f32, silence_s: f32, silence_first: bool) {
    let rate = 48_000u32;
    let tone: Vec<i16> = (0..(tone_s * rate as f32) as usize)
        .map(|i| ((i as f32 * hz * std::f32::consts::TAU / rate as f32).sin() * 8000.0) as i16)
        .collect();
    let silence = vec![0i16; (silence_s * rate as f32) as usize];
    let samples: Vec<i16> = if silence_first {
        silence.iter().chain(&tone).copied().collect()
    } else {
        tone.iter().chain(&silence).copied().collect()
    };
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, out).expect("wav written");
}

/// A request to Janus' admin API (inside the namespace, on loopback).
fn janus_admin(path: &str, request: &str) -> serde_json::Value {
    let body =
        format!(r#"{{"janus":"{request}","transaction":"t","admin_secret":"janusoverlord"}}"#);
    let addr = "127.0.0.1:7088".parse().expect("address");
    let r = common::http::post_json(addr, &format!("/admin{path}"), &body)
        .unwrap_or_else(|e| panic!("Janus admin API {path}: {e}"));
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("Janus admin API {path}: {e}"))
}

/// Janus' own view of the bridge's publication: for its video, the packets
/// it received on each simulcast SSRC.
fn janus_layers_of(display: &str) -> Vec<u64> {
    for info in janus_handles() {
        let ps = &info["info"]["plugin_specific"];
        if ps["type"] != "publisher" || ps["display"] != display {
            continue;
        }
        let media = info["info"]["webrtc"]["media"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for m in media.values() {
            if m["type"] != "video" {
                continue;
            }
            let stats = &m["stats"]["in"];
            return [
                &stats["packets"],
                &stats["video-simulcast-1"]["packets"],
                &stats["video-simulcast-2"]["packets"],
            ]
            .iter()
            .filter_map(|v| v.as_u64())
            .collect();
        }
    }
    Vec::new()
}

/// `handle_info` of every handle Janus has (admin API).
fn janus_handles() -> Vec<serde_json::Value> {
    let ids = |v: &serde_json::Value, key: &str| -> Vec<u64> {
        v[key]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for session in ids(&janus_admin("", "list_sessions"), "sessions") {
        for handle in ids(
            &janus_admin(&format!("/{session}"), "list_handles"),
            "handles",
        ) {
            out.push(janus_admin(&format!("/{session}/{handle}"), "handle_info"));
        }
    }
    out
}

/// Story: the meeting has two native participants, red (simulcast
/// 1280x720) and blue; the node shows one native at a time
/// (`native_speakers = 1`). Red talks first, then blue.
/// - the room system sees and hears red while red talks, at the simulcast
///   layer its pane needs: a 1x1 pane gets the 720p layer, a 2x2 pane the
///   360p one (the node decodes what it asked for);
/// - when blue talks, blue takes red's place in the layout and red's
///   video stops (it stays heard);
/// - with nobody watching the bridge's small layers, the node does not
///   encode them; a viewer of substream 0 then 1 decodes 320 then 640
///   wide, and Janus shows packets on all three of the bridge's layers.
#[test]
fn the_native_talker_is_shown_at_the_layer_its_pane_needs_and_only_watched_layers_are_encoded() {
    if std::env::var_os("TANDEM_NETNS").is_none() {
        reexec_in_namespace(TEST_SPEAKERS);
        return;
    }
    let janus = std::env::var("TANDEM_JANUS_URL").expect("netns-peers.sh sets TANDEM_JANUS_URL");
    let turn = std::env::var("TANDEM_TURN_URL").expect("netns-peers.sh sets TANDEM_TURN_URL");
    let dir = TempDir::new("cascade-speakers");
    let config = dir.path().join("tandem.toml");
    std::fs::write(
        &config,
        format!(
            "[cascade]\njanus_url = \"{janus}\"\nice_policy = \"relay\"\nmedia_ip = \"10.99.0.1\"\n\
             create_room = true\nadmin_key = \"supersecret\"\nnative_speakers = 1\n\
             janus_admin_url = \"http://127.0.0.1:7088/admin\"\njanus_admin_secret = \"janusoverlord\"\n\
             [[cascade.turn]]\nurl = \"{turn}\"\nusername = \"tandem\"\ncredential = \"tandem123\"\n"
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
    let rt = runtime();
    // A 720p room system: its full pane is 1280x720.
    let cfg = RoomSystemConfig::new(node.sip_addr(), ROOM, "green")
        .with_tone(880.0, 0.3)
        .with_video(
            VideoSpec::new((30, 200, 30))
                .with_size(1280, 720)
                .with_bitrate(1_500_000),
        );
    let green = rt
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(15), RoomSystem::call(cfg)).await
        })
        .expect("green: no answer within 15 s")
        .unwrap_or_else(|e| panic!("green could not join: {e}\n{}", node.log_tail()));
    common::wait_for("cascade connected", Duration::from_secs(20), || {
        let c = node.conference(ROOM)?;
        (c["cascade"]["state"] == "connected").then_some(())
    });
    // Green goes quiet: the natives are the talkers.
    green.set_tone(None, 0.0);
    let layout = |l: &str| {
        let r = node.post(
            &format!("/api/conferences/{ROOM}/layout"),
            &format!(r#"{{"layout":"{l}"}}"#),
        );
        assert_eq!(r.status, 200, "layout {l}: {}", r.body);
    };
    layout("1x1");

    // Nobody in the meeting watches the bridge: only its 720p (the node's
    // own view) is made.
    let layer_frames = |l: &str| node.metric("tandem_cascade_layer_frames_total", &[("layer", l)]);
    common::wait_for("the small layers stopped", Duration::from_secs(10), || {
        let c = node.conference(ROOM)?;
        (c["cascade"]["layers_sent"] == serde_json::json!(["720p"])).then_some(())
    });
    let (low_before, mid_before, high_before) = (
        layer_frames("180p"),
        layer_frames("360p"),
        layer_frames("720p"),
    );

    // Red talks for 16 s then is silent for 16; blue the other way round.
    let red_wav = dir.path().join("red.wav");
    let blue_wav = dir.path().join("blue.wav");
    talk_wav(&red_wav, 440.0, 16.0, 16.0, false);
    talk_wav(&blue_wav, 660.0, 16.0, 16.0, true);
    let publish = |name: &str, colour: &str, wav: &Path, extra: &[&str]| {
        let mut args = vec![
            "publish",
            "--display",
            name,
            "--color",
            colour,
            "--wav",
            wav.to_str().expect("utf-8 path"),
            "--duration",
            "34",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        Browser::start(
            ROOM,
            &turn,
            &dir.path().join(format!("{name}.jsonl")),
            &args,
        )
    };
    let mut red = publish(
        "native-red",
        "red",
        &red_wav,
        &["--simulcast", "--size", "1280x720"],
    );
    let mut blue = publish("native-blue", "blue", &blue_wav, &[]);
    let natives = || {
        node.conference(ROOM)
            .map(|c| c["cascade"]["natives"].clone())
            .unwrap_or_default()
    };
    let native = |name: &str| {
        natives()
            .as_array()
            .and_then(|a| a.iter().find(|n| n["name"] == name).cloned())
            .unwrap_or_default()
    };
    let colour_is = |want: (bool, bool)| {
        green
            .seen_colour(0.2, 0.2, 0.8, 0.8)
            .is_some_and(|(r, g, b)| {
                (r > 150 && g < 90 && b < 90, b > 150 && r < 90 && g < 90) == want
            })
    };

    // Red talks: shown, in green's 1x1 view at the 720p layer.
    let red_id = common::wait_for("red shown, blue not", Duration::from_secs(30), || {
        let (r, b) = (native("native-red"), native("native-blue"));
        (r["shown"] == true && b["shown"] == false).then(|| r["participant"].clone())
    });
    eprintln!("[speakers] red shown: {}", natives());
    let received = |pid: &serde_json::Value| {
        node.conference(ROOM)
            .and_then(|c| {
                c["participants"]
                    .as_array()?
                    .iter()
                    .find(|p| p["id"] == *pid)
                    .map(|p| p["video_stream"]["received_resolution"].clone())
            })
            .unwrap_or_default()
    };
    let dump = |what: &str| -> String {
        format!(
            "{what}: natives {}; red's leg {}; green sees {:?}; TMMBR sent {}; layer switches {}\n{}",
            natives(),
            node.participant(ROOM, "native-red").unwrap_or_default(),
            green.seen_colour(0.2, 0.2, 0.8, 0.8),
            node.metric("tandem_video_source_limits_sent_total", &[]),
            node.metric("tandem_cascade_layer_switches_total", &[]),
            node.log_tail()
        )
    };
    assert!(
        wait_until(Duration::from_secs(12), || {
            native("native-red")["layer"] == "720p"
                && received(&red_id) == serde_json::json!("1280x720")
                && colour_is((true, false))
        }),
        "{}",
        dump("red at 720p in a full pane")
    );
    green.mark();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        green.heard().contains(440.0),
        "green does not hear red talking"
    );
    // A quarter pane: the 360p layer is enough.
    layout("2x2");
    assert!(
        wait_until(Duration::from_secs(10), || {
            native("native-red")["layer"] == "360p"
                && received(&red_id) == serde_json::json!("640x360")
        }),
        "{}",
        dump("red at 360p in a quarter pane")
    );
    eprintln!("[speakers] red in 2x2: {}", natives());
    layout("1x1");

    // Blue talks, red is silent: blue takes the pane, red's video stops.
    common::wait_for("blue shown, red not", Duration::from_secs(25), || {
        let (r, b) = (native("native-red"), native("native-blue"));
        (r["shown"] == false && b["shown"] == true).then_some(())
    });
    assert!(
        wait_until(Duration::from_secs(8), || colour_is((false, true))),
        "green should see blue once blue talks; it sees {:?}",
        green.seen_colour(0.2, 0.2, 0.8, 0.8)
    );
    green.mark();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        green.heard().contains(660.0),
        "green does not hear blue talking"
    );
    assert!(node.metric("tandem_cascade_native_switches_total", &[]) >= 2.0);
    assert!(node.metric("tandem_cascade_layer_switches_total", &[("layer", "360p")]) >= 1.0);
    assert!(
        node.metric(
            "tandem_cascade_bytes_total",
            &[("direction", "in"), ("kind", "video")]
        ) > 0.0
    );

    // All this time nobody watched the bridge's small layers.
    assert_eq!(
        (layer_frames("180p"), layer_frames("360p")),
        (low_before, mid_before),
        "layers nobody receives were encoded"
    );
    assert!(layer_frames("720p") > high_before, "the 720p layer stopped");
    for b in [&mut red, &mut blue] {
        let _ = common::wait_child(&mut b.0, Duration::from_secs(30));
    }

    // Viewers of the small layers: the node starts encoding what they get.
    for (substream, width, layer) in [("0", 320, "180p"), ("1", 640, "360p")] {
        let log = dir.path().join(format!("viewer-{substream}.jsonl"));
        let mut viewer = Browser::start(
            ROOM,
            &turn,
            &log,
            &[
                "subscribe",
                "--match",
                "^Tandem",
                "--count",
                "1",
                "--substream",
                substream,
                "--duration",
                "10",
                "--expect-frames",
            ],
        );
        let status = common::wait_child(&mut viewer.0, Duration::from_secs(40))
            .expect("the viewer ends after its 10 s");
        let out = std::fs::read_to_string(&log).unwrap_or_default();
        let stats = out
            .lines()
            .rev()
            .find(|l| l.contains("frameWidth"))
            .unwrap_or("(no stats)");
        assert!(
            status.success(),
            "the substream {substream} viewer failed: {stats}"
        );
        assert!(
            stats.contains(&format!("\"frameWidth\":{width}")),
            "substream {substream} should be {width} wide: {stats}"
        );
        assert!(
            layer_frames(layer) > 0.0,
            "the {layer} layer was never encoded"
        );
    }
    let layers = janus_layers_of("Tandem room systems");
    eprintln!("[speakers] Janus' packets per layer of the bridge: {layers:?}");
    assert!(
        layers.len() == 3 && layers.iter().all(|p| *p > 0),
        "Janus should show three simulcast layers with packets from the bridge: {layers:?}"
    );

    // A named conference bound by the API to room 4712: its agent joins
    // that room; unbound, it leaves while the call goes on.
    let r = node.request("PUT", "/api/conferences/sales/cascade", r#"{"room":4712}"#);
    assert_eq!(r.status, 200, "bind: {}", r.body);
    let r = node.request("PUT", "/api/conferences/sales/cascade", r#"{"room":"x"}"#);
    assert_eq!(r.status, 400, "a bad binding is refused: {}", r.body);
    let cfg = RoomSystemConfig::new(node.sip_addr(), "sales", "amber").with_tone(500.0, 0.3);
    let amber = rt
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(15), RoomSystem::call(cfg)).await
        })
        .expect("amber: no answer within 15 s")
        .unwrap_or_else(|e| panic!("amber could not join: {e}\n{}", node.log_tail()));
    let c = common::wait_for("sales joined room 4712", Duration::from_secs(20), || {
        let c = node.conference("sales")?;
        (c["cascade"]["state"] == "connected").then_some(c)
    });
    assert!(
        c["cascade"]["meeting"]
            .as_str()
            .is_some_and(|m| m.ends_with("room 4712")),
        "{}",
        c["cascade"]
    );
    assert!(
        janus_publisher_rooms("Tandem room systems").contains(&4712),
        "Janus has no bridge publisher in room 4712"
    );
    let r = node.request("DELETE", "/api/conferences/sales/cascade", "");
    assert_eq!(r.status, 200, "unbind: {}", r.body);
    common::wait_for("sales left the meeting", Duration::from_secs(10), || {
        let c = node.conference("sales")?;
        (c["cascade"]["state"] == "off").then_some(())
    });
    assert!(
        wait_until(Duration::from_secs(5), || {
            !janus_publisher_rooms("Tandem room systems").contains(&4712)
        }),
        "the bridge's publisher stayed in room 4712 after unbinding"
    );
    assert!(amber.is_active(), "amber's call ended with the binding");
    drop((green, amber));
}

/// The rooms where Janus has a publisher named `display`.
fn janus_publisher_rooms(display: &str) -> Vec<u64> {
    janus_handles()
        .iter()
        .map(|info| &info["info"]["plugin_specific"])
        .filter(|ps| ps["type"] == "publisher" && ps["display"] == display)
        .filter_map(|ps| ps["room"].as_u64())
        .collect()
}

/// Story: with `publish_speakers = 2`, the native meeting sees the two
/// room systems as two people: a viewer in the meeting finds publishers
/// named "green" and "blue", each showing that room system's picture.
#[test]
fn room_system_speakers_appear_in_the_meeting_as_people_of_their_own() {
    if std::env::var_os("TANDEM_NETNS").is_none() {
        reexec_in_namespace(TEST_PEOPLE);
        return;
    }
    let janus = std::env::var("TANDEM_JANUS_URL").expect("netns-peers.sh sets TANDEM_JANUS_URL");
    let turn = std::env::var("TANDEM_TURN_URL").expect("netns-peers.sh sets TANDEM_TURN_URL");
    let dir = TempDir::new("cascade-people");
    let config = dir.path().join("tandem.toml");
    std::fs::write(
        &config,
        format!(
            "[cascade]\njanus_url = \"{janus}\"\nice_policy = \"relay\"\nmedia_ip = \"10.99.0.1\"\n\
             create_room = true\nadmin_key = \"supersecret\"\npublish_speakers = 2\n\
             [[cascade.turn]]\nurl = \"{turn}\"\nusername = \"tandem\"\ncredential = \"tandem123\"\n"
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
    let rt = runtime();
    // Green talks louder: it is the active speaker, blue the next.
    let call = |name: &str, colour: (u8, u8, u8), hz: f32, level: f32| {
        let cfg = RoomSystemConfig::new(node.sip_addr(), ROOM, name)
            .with_tone(hz, level)
            .with_video(VideoSpec::new(colour));
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(15), RoomSystem::call(cfg)).await
        })
        .unwrap_or_else(|_| panic!("{name}: no answer within 15 s"))
        .unwrap_or_else(|e| panic!("{name} could not join: {e}\n{}", node.log_tail()))
    };
    let green = call("green", (30, 200, 30), 880.0, 0.5);
    let blue = call("blue", (30, 30, 220), 1320.0, 0.1);
    common::wait_for("cascade connected", Duration::from_secs(20), || {
        let c = node.conference(ROOM)?;
        (c["cascade"]["state"] == "connected").then_some(())
    });
    let log = dir.path().join("viewer.jsonl");
    let mut viewer = Browser::start(
        ROOM,
        &turn,
        &log,
        &[
            "subscribe",
            "--match",
            "^(green|blue)$",
            "--count",
            "2",
            "--duration",
            "12",
            "--expect-frames",
        ],
    );
    let status = common::wait_child(&mut viewer.0, Duration::from_secs(60))
        .expect("the viewer ends after its 12 s");
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    let summary = out
        .lines()
        .rev()
        .find(|l| l.contains("\"summary\""))
        .unwrap_or("(no summary line)");
    eprintln!("[people] viewer summary: {summary}");
    assert!(
        status.success(),
        "the viewer's checks failed ({status}): {summary}\n{}",
        node.log_tail()
    );
    let summary: serde_json::Value = serde_json::from_str(summary).expect("summary is JSON");
    let feeds = summary["feeds"].as_array().cloned().unwrap_or_default();
    let mut seen: Vec<(String, String)> = feeds
        .iter()
        .map(|f| {
            (
                f["display"].as_str().unwrap_or_default().to_owned(),
                f["video"]["dominant"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("blue".to_owned(), "blue".to_owned()),
            ("green".to_owned(), "green".to_owned())
        ],
        "each room system should be a person of its own, showing its own picture"
    );
    drop((green, blue));
}
