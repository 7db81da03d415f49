//! Story: a conference spans two nodes. Node A is its home; node B is told
//! (as the control plane's placement would, through the node API) to link
//! its part of the conference to A over QUIC. Room systems on each node
//! hear the rooms on the other and never themselves, both APIs list the
//! other node's people and agree on who the active speaker is, a camera on
//! one node is seen on the other, a node without the cluster secret is
//! refused, and B's calls go on when A goes away (and B links again when A
//! is back).
//!
//! Peers: synthetic room systems (`tandem-loadtest`), PCMU or Opus, each
//! with a tone of its own; two `tandem up` processes. Kept small (2-core
//! machine): 3 + 3 rooms for audio, 1 + 1 cameras for video.

mod common;

use std::time::Duration;

use serde_json::Value;
use tandem_loadtest::{Codec, RoomSystem, RoomSystemConfig, VideoSpec};

use common::{Node, ports, rooms, wait_for};

const SECRET: &str = "correct horse battery staple";

/// A node with a span listener on a port of our choosing.
fn span_node(name: &str, span_port: u16, extra: &[(&str, &str)]) -> Node {
    let listen = format!("127.0.0.1:{span_port}");
    let mut env = vec![
        ("TANDEM_SPAN_LISTEN", listen.as_str()),
        ("TANDEM_SPAN_NAME", name),
        ("TANDEM_SPAN_SECRET", SECRET),
    ];
    env.extend_from_slice(extra);
    Node::start_with(&env)
}

fn span_of(node: &Node, conf: &str) -> Option<Value> {
    node.conference(conf)?.get("span").cloned()
}

fn link_state(node: &Node, conf: &str) -> Option<String> {
    Some(
        span_of(node, conf)?
            .get("peers")?
            .get(0)?
            .get("state")?
            .as_str()?
            .to_string(),
    )
}

/// Names of the participants the node lists as being on `other`.
fn remote_names(node: &Node, conf: &str, other: &str) -> Vec<String> {
    let Some(c) = node.conference(conf) else {
        return Vec::new();
    };
    let mut v: Vec<String> = c["participants"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p.get("node").and_then(Value::as_str) == Some(other))
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The conference-wide active speaker's name, as the node reports it.
fn speaker_name(node: &Node, conf: &str) -> Option<String> {
    span_of(node, conf)?
        .get("active_speaker")?
        .get("name")?
        .as_str()
        .map(str::to_string)
}

fn put_span(node: &Node, conf: &str, home: u16) {
    let r = node.request(
        "PUT",
        &format!("/api/conferences/{conf}/span"),
        &format!(r#"{{"home":"127.0.0.1:{home}"}}"#),
    );
    assert_eq!(r.status, 200, "PUT span: {}", r.body);
}

#[test]
fn rooms_on_two_nodes_hear_each_other_never_themselves_and_agree_on_the_speaker() {
    let conf = "7700";
    // Audio only: no video flows, no video threads.
    let audio_only = [
        ("TANDEM_SPAN_VIDEO_FLOWS", "0"),
        ("TANDEM_VIDEO_ENABLED", "false"),
    ];
    let (pa, pb) = (ports::udp(), ports::udp());
    let a = span_node("node-a", pa, &audio_only);
    let b = span_node("node-b", pb, &audio_only);
    put_span(&b, conf, pa);
    let rt = rooms::runtime();
    let quiet = 0.05;
    let on_a = [("oslo", 440.0), ("bergen", 620.0), ("tromso", 1250.0)];
    let on_b = [("lyon", 880.0), ("nice", 1060.0), ("lille", 1500.0)];
    let mut all: Vec<(&str, f32, RoomSystem)> = Vec::new();
    for (node, list) in [(&a, &on_a), (&b, &on_b)] {
        for &(name, hz) in list {
            let room = rooms::call(&rt, node, conf, name, Codec::Opus, Some((hz, quiet)));
            all.push((name, hz, room));
        }
    }

    // Both APIs list the other node's people, marked with their node.
    let want_b: Vec<String> = ["lille", "lyon", "nice"].map(String::from).to_vec();
    let want_a: Vec<String> = ["bergen", "oslo", "tromso"].map(String::from).to_vec();
    wait_for(
        "node A lists node B's rooms",
        Duration::from_secs(15),
        || (remote_names(&a, conf, "node-b") == want_b).then_some(()),
    );
    wait_for(
        "node B lists node A's rooms",
        Duration::from_secs(5),
        || (remote_names(&b, conf, "node-a") == want_a).then_some(()),
    );
    let span_a = span_of(&a, conf).expect("span on A");
    let span_b = span_of(&b, conf).expect("span on B");
    assert_eq!(span_a["role"], "home", "{span_a}");
    assert_eq!(span_b["role"], "satellite", "{span_b}");
    assert_eq!(span_b["peers"][0]["state"], "connected", "{span_b}");
    assert_eq!(span_b["peers"][0]["node"], "node-a", "{span_b}");

    // Tone check: each room hears all five others (three of them through
    // the link) and not itself.
    std::thread::sleep(Duration::from_secs(2));
    for (_, _, room) in &all {
        room.mark();
    }
    std::thread::sleep(Duration::from_secs(4));
    let mut problems = Vec::new();
    for (name, own, room) in &all {
        let heard = room.heard();
        for (other, hz, _) in &all {
            let has = heard.contains(*hz);
            if other == name && has {
                problems.push(format!("{name} hears itself ({hz} Hz)"));
            }
            if other != name && !has {
                problems.push(format!(
                    "{name} does not hear {other} ({hz} Hz: {:.1} dBFS, floor {:.1})",
                    heard.tone_level(*hz),
                    heard.noise_floor(*hz)
                ));
            }
        }
        eprintln!(
            "[span] {name}: own {own} Hz at {:.1} dBFS, heard {:.1} s",
            heard.tone_level(*own),
            heard.duration().as_secs_f32()
        );
    }
    let span_metrics = |n: &Node| -> String {
        n.metrics()
            .lines()
            .filter(|l| l.starts_with("tandem_span") || l.starts_with("tandem_malformed"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    eprintln!(
        "--- A metrics ---\n{}\n--- B metrics ---\n{}",
        span_metrics(&a),
        span_metrics(&b)
    );
    let _ = std::fs::write("/tmp/span-a-metrics.txt", a.metrics());
    assert!(
        problems.is_empty(),
        "{problems:#?}\n--- A ---\n{}\n--- B ---\n{}",
        a.log_tail(),
        b.log_tail()
    );

    // One room talks up; both nodes name it the active speaker. First on
    // the satellite, then on the home.
    for loud in ["nice", "bergen"] {
        for (name, hz, room) in &all {
            room.set_tone(Some(*hz), if *name == loud { 0.4 } else { 0.02 });
        }
        let mut last = (None, None);
        wait_for(
            &format!("both nodes naming {loud} the active speaker"),
            Duration::from_secs(8),
            || {
                last = (speaker_name(&a, conf), speaker_name(&b, conf));
                (last.0.as_deref() == Some(loud) && last.1.as_deref() == Some(loud)).then_some(())
            },
        );
        let (sa, sb) = (span_of(&a, conf).expect("A"), span_of(&b, conf).expect("B"));
        assert_eq!(
            sa["active_speaker"], sb["active_speaker"],
            "both nodes report the same speaker"
        );
        // `active_speaker` names it as each node's participants list does.
        let on_a = a.conference(conf).expect("A")["active_speaker"].clone();
        let on_b = b.conference(conf).expect("B")["active_speaker"].clone();
        eprintln!("[span] {loud}: active_speaker on A {on_a}, on B {on_b}");
        let id = sa["active_speaker"]["participant"].as_str().unwrap_or("");
        let node = sa["active_speaker"]["node"].as_str().unwrap_or("");
        let here = |n: &str| {
            if n == node {
                id.to_string()
            } else {
                format!("{node}/{id}")
            }
        };
        assert_eq!(on_a.as_str(), Some(here("node-a").as_str()));
        assert_eq!(on_b.as_str(), Some(here("node-b").as_str()));
    }

    // The link's figures.
    assert_eq!(a.metric("tandem_span_links", &[("role", "home")]), 1.0);
    assert_eq!(b.metric("tandem_span_links", &[("role", "satellite")]), 1.0);
    for node in [&a, &b] {
        let out = node.metric(
            "tandem_span_bytes_total",
            &[("direction", "out"), ("kind", "audio")],
        );
        let inb = node.metric(
            "tandem_span_bytes_total",
            &[("direction", "in"), ("kind", "audio")],
        );
        assert!(
            out > 10_000.0 && inb > 10_000.0,
            "audio bytes out {out}, in {inb}"
        );
    }
    let rtt = a.metric("tandem_span_rtt_seconds_count", &[]);
    assert!(rtt > 0.0, "RTT sampled");

    // Unspanned: B's calls go on as a local conference; A forgets B's people.
    let r = b.request("DELETE", &format!("/api/conferences/{conf}/span"), "");
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for("A forgets node B's rooms", Duration::from_secs(8), || {
        remote_names(&a, conf, "node-b").is_empty().then_some(())
    });
    assert!(span_of(&b, conf).is_none(), "B no longer spans");
    let lyon = &all[3].2;
    lyon.mark();
    std::thread::sleep(Duration::from_secs(2));
    let heard = lyon.heard();
    assert!(heard.contains(1060.0), "lyon still hears nice on B");
    assert!(!heard.contains(440.0), "lyon no longer hears oslo on A");
}

#[test]
fn a_node_without_the_cluster_secret_is_refused_and_counted() {
    let conf = "7710";
    let env = [
        ("TANDEM_SPAN_VIDEO_FLOWS", "0"),
        ("TANDEM_VIDEO_ENABLED", "false"),
    ];
    let (pa, pc) = (ports::udp(), ports::udp());
    let a = span_node("node-a", pa, &env);
    let mut c_env = env.to_vec();
    c_env.push(("TANDEM_SPAN_SECRET", "guess"));
    let c = span_node("node-c", pc, &c_env);
    put_span(&c, conf, pa);
    let rt = rooms::runtime();
    let _room = rooms::call(&rt, &c, conf, "intruder", Codec::Pcmu, Some((440.0, 0.05)));
    wait_for("A counts the refused link", Duration::from_secs(10), || {
        (a.metric("tandem_span_auth_failures_total", &[]) >= 1.0).then_some(())
    });
    wait_for("C's link retries", Duration::from_secs(5), || {
        (link_state(&c, conf).as_deref() == Some("retrying")).then_some(())
    });
    let err = span_of(&c, conf).expect("span")["peers"][0]["last_error"].clone();
    assert!(
        err.as_str().is_some_and(|e| e.contains("authentication")),
        "C says why: {err}"
    );
    assert_eq!(a.metric("tandem_span_links", &[("role", "home")]), 0.0);
    assert!(
        a.conference(conf).is_none(),
        "no conference was opened on A for it"
    );
}

#[test]
fn the_satellites_calls_go_on_when_the_home_goes_away_and_it_links_again() {
    let conf = "7720";
    let env = [
        ("TANDEM_SPAN_VIDEO_FLOWS", "0"),
        ("TANDEM_VIDEO_ENABLED", "false"),
    ];
    let (pa, pb) = (ports::udp(), ports::udp());
    let a = span_node("node-a", pa, &env);
    let b = span_node("node-b", pb, &env);
    put_span(&b, conf, pa);
    let rt = rooms::runtime();
    let oslo = rooms::call(&rt, &a, conf, "oslo", Codec::Pcmu, Some((440.0, 0.05)));
    let lyon = rooms::call(&rt, &b, conf, "lyon", Codec::Pcmu, Some((880.0, 0.05)));
    let nice = rooms::call(&rt, &b, conf, "nice", Codec::Pcmu, Some((1060.0, 0.05)));
    wait_for("B lists oslo", Duration::from_secs(15), || {
        (remote_names(&b, conf, "node-a") == ["oslo"]).then_some(())
    });
    drop(oslo);
    drop(a); // the home's process is killed

    wait_for("B's link retries", Duration::from_secs(10), || {
        (link_state(&b, conf).as_deref() == Some("retrying")).then_some(())
    });
    assert!(remote_names(&b, conf, "node-a").is_empty());
    lyon.mark();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        lyon.heard().contains(1060.0),
        "lyon still hears nice with the home gone\n{}",
        b.log_tail()
    );
    assert!(lyon.is_active() && nice.is_active(), "B's calls go on");

    // The home is back on the same address: B links again by itself.
    let a = span_node("node-a", pa, &env);
    let oslo = rooms::call(&rt, &a, conf, "oslo", Codec::Pcmu, Some((440.0, 0.05)));
    wait_for(
        "B links again and lists oslo",
        Duration::from_secs(15),
        || (remote_names(&b, conf, "node-a") == ["oslo"]).then_some(()),
    );
    assert!(b.metric("tandem_span_reconnects_total", &[]) >= 1.0);
    lyon.mark();
    std::thread::sleep(Duration::from_secs(3));
    assert!(lyon.heard().contains(440.0), "lyon hears oslo again");
    drop(oslo);
}

type Rgb = (u8, u8, u8);
const RED: Rgb = (220, 30, 30);
const BLUE: Rgb = (30, 30, 220);

fn camera(
    rt: &tokio::runtime::Runtime,
    node: &Node,
    conf: &str,
    name: &str,
    colour: Rgb,
    tone: (f32, f32),
) -> RoomSystem {
    let cfg = RoomSystemConfig::new(node.sip_addr(), conf, name)
        .with_tone(tone.0, tone.1)
        .with_video(VideoSpec::new(colour));
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(15), RoomSystem::call(cfg)).await
    })
    .unwrap_or_else(|_| panic!("{name}: no answer within 15 s"))
    .unwrap_or_else(|e| panic!("{name} could not join: {e}\n{}", node.log_tail()))
}

fn distance(a: Rgb, b: Rgb) -> u32 {
    let d = |x: u8, y: u8| (i32::from(x) - i32::from(y)).unsigned_abs();
    d(a.0, b.0) + d(a.1, b.1) + d(a.2, b.2)
}

#[test]
fn a_camera_on_one_node_is_seen_in_its_pane_on_the_other() {
    let conf = "7730";
    let env = [
        ("TANDEM_SPAN_VIDEO_FLOWS", "1"),
        ("TANDEM_SPAN_VIDEO_KBPS", "500"),
        ("TANDEM_VIDEO_MAX_RESOLUTION", "360p"),
        ("TANDEM_VIDEO_FPS", "15"),
        ("TANDEM_VIDEO_LAYOUT", "1x1"),
    ];
    let (pa, pb) = (ports::udp(), ports::udp());
    let a = span_node("node-a", pa, &env);
    let b = span_node("node-b", pb, &env);
    put_span(&b, conf, pa);
    let rt = rooms::runtime();
    let red = camera(&rt, &a, conf, "red", RED, (440.0, 0.3));
    let blue = camera(&rt, &b, conf, "blue", BLUE, (880.0, 0.05));

    // B's viewer sees A's camera full frame (the only other person), and
    // B's API lists it with video, by name.
    let mut last = None;
    wait_for(
        "blue (on B) sees red (on A)",
        Duration::from_secs(20),
        || {
            last = blue.seen_colour(0.2, 0.2, 0.8, 0.7);
            last.filter(|c| distance(*c, RED) < 110).map(|_| ())
        },
    );
    let on_b = b
        .participant(conf, "red")
        .unwrap_or_else(|| panic!("B lists red: {:?}", b.conference(conf)));
    assert_eq!(on_b["node"], "node-a");
    assert_eq!(on_b["video"], true);
    // And A's room sees B's camera: each node sees the other's speakers.
    wait_for(
        "red (on A) sees blue (on B)",
        Duration::from_secs(15),
        || {
            red.seen_colour(0.2, 0.2, 0.8, 0.7)
                .filter(|c| distance(*c, BLUE) < 110)
                .map(|_| ())
        },
    );
    let frames = b.metric(
        "tandem_span_packets_total",
        &[("direction", "in"), ("kind", "video")],
    );
    assert!(frames > 0.0, "video came over the link");
    eprintln!("[span] video packets into B over the link: {frames}; last colour {last:?}");
}
