//! Story: a site without an Edge of its own. `tandem up` runs the embedded
//! TURN relay (`[turn]`) and no `[[cascade.turn]]` is configured, with a
//! relay-only ICE policy; when a room system calls conference 4711, the
//! cascade agent joins Janus VideoRoom 4711 through the embedded relay with
//! TURN REST credentials it mints itself from the relay's secret (generated
//! at start: nobody configured one).
//! - the node reports the cascade connected on a relay candidate;
//! - the embedded relay counted good credentials and granted the
//!   allocation (`tandem_turn_*` on /metrics), none refused;
//! - coturn, the other Edge in the namespace, allocated nothing.
//!
//! Janus never uses loopback for media, so the test re-executes itself
//! inside `deploy/peers/browser/netns-peers.sh` (a private network
//! namespace with Janus and coturn at 10.99.0.1); the relay listens there.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tandem_loadtest::{RoomSystem, RoomSystemConfig};

use common::rooms::runtime;
use common::{Node, TempDir, ports};

const ROOM: &str = "4711";
const TEST: &str = "the_cascade_reaches_the_meeting_through_the_embedded_turn_relay";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// Outside the namespace: check the peers are installed, then run this test
/// again inside one with Janus (and coturn, which this test must not need)
/// up.
fn reexec_in_namespace() {
    for (tool, package) in [
        ("janus", "janus"),
        ("turnserver", "coturn"),
        ("ip", "iproute2"),
        ("ss", "iproute2"),
        ("unshare", "util-linux"),
    ] {
        assert!(
            on_path(tool),
            "{tool} not found: apt-get install --no-install-recommends janus coturn iproute2 \
             util-linux ({package}; netns-peers.sh starts Janus and coturn)"
        );
    }
    let exe = std::env::current_exe().expect("test binary");
    let status = Command::new("bash")
        .arg(repo().join("deploy/peers/browser/netns-peers.sh"))
        .arg(exe)
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .status()
        .expect("netns-peers.sh runs");
    assert!(
        status.success(),
        "the embedded-TURN cascade scenario failed (see above)"
    );
}

#[test]
fn the_cascade_reaches_the_meeting_through_the_embedded_turn_relay() {
    if std::env::var_os("TANDEM_NETNS").is_none() {
        reexec_in_namespace();
        return;
    }
    let janus = std::env::var("TANDEM_JANUS_URL").expect("netns-peers.sh sets TANDEM_JANUS_URL");
    let dir = TempDir::new("cascade-embedded-turn");
    let config = dir.path().join("tandem.toml");
    // No [[cascade.turn]], no [turn] secret: the relay makes one and the
    // agents mint from it.
    std::fs::write(
        &config,
        format!(
            "[cascade]\njanus_url = \"{janus}\"\nice_policy = \"relay\"\nmedia_ip = \"10.99.0.1\"\n\
             create_room = true\nadmin_key = \"supersecret\"\n"
        ),
    )
    .expect("config written");
    // On the namespace's address (Janus drops loopback candidates); coturn
    // has 3478 there.
    let turn_listen = format!("10.99.0.1:{}", ports::udp());
    let node = Node::start_full(
        &[
            ("TANDEM_TURN_LISTEN", turn_listen.as_str()),
            ("TANDEM_VIDEO_FPS", "15"),
        ],
        &["--config", config.to_str().expect("utf-8 path")],
    );
    assert!(
        node.log_tail()
            .contains("cascade uses the embedded TURN relay"),
        "the node did not hand its relay to the cascade:\n{}",
        node.log_tail()
    );

    let rt = runtime();
    let cfg = RoomSystemConfig::new(node.sip_addr(), ROOM, "green").with_tone(880.0, 0.3);
    let green = rt
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(15), RoomSystem::call(cfg)).await
        })
        .unwrap_or_else(|_| panic!("green: no answer within 15 s"))
        .unwrap_or_else(|e| panic!("green could not join: {e}\n{}", node.log_tail()));

    let c = common::wait_for("cascade connected", Duration::from_secs(25), || {
        let c = node.conference(ROOM)?;
        (c["cascade"]["state"] == "connected").then_some(c)
    });
    eprintln!("[cascade] {}", c["cascade"]);
    assert_eq!(c["cascade"]["candidate"], "relay", "{}", c["cascade"]);
    assert!(
        node.metric(
            "tandem_cascade_connections_total",
            &[("candidate", "relay")]
        ) >= 1.0,
        "no relay connection counted"
    );

    // The embedded relay carried it: good credentials, an allocation open.
    let turn = |name: &str, labels: &[(&str, &str)]| node.metric(name, labels);
    let ok = turn("tandem_turn_auth_total", &[("result", "ok")]);
    let bad = turn("tandem_turn_auth_total", &[("result", "bad")]);
    let expired = turn("tandem_turn_auth_total", &[("result", "expired")]);
    let granted = turn("tandem_turn_allocations_total", &[]);
    let open = turn("tandem_turn_allocations", &[]);
    eprintln!(
        "[turn] auth ok {ok} bad {bad} expired {expired}; allocations granted {granted}, open {open}"
    );
    assert!(ok >= 1.0, "the embedded relay checked no good credentials");
    assert_eq!(
        bad + expired,
        0.0,
        "the agent's minted credentials were refused"
    );
    assert!(granted >= 1.0, "the embedded relay granted no allocation");
    assert!(
        open >= 1.0,
        "no allocation open while the cascade is connected"
    );

    // Media goes out over it for a while and the link stays up.
    std::thread::sleep(Duration::from_secs(2));
    let out = node.metric(
        "tandem_cascade_packets_total",
        &[("direction", "out"), ("kind", "audio")],
    );
    assert!(out > 10.0, "cascade audio packets out: {out}");
    let c = node.conference(ROOM).expect("conference");
    assert_eq!(c["cascade"]["state"], "connected", "{}", c["cascade"]);

    // coturn, the namespace's other Edge, saw no allocation: nothing was
    // configured to use it.
    let peers = PathBuf::from(std::env::var("TANDEM_PEERS_DIR").expect("TANDEM_PEERS_DIR"));
    let turn_log = std::fs::read_to_string(peers.join("turn.log")).unwrap_or_default();
    assert!(
        !turn_log.contains("ALLOCATE processed, success"),
        "coturn allocated for somebody: the agent did not use the embedded relay"
    );
    drop(green);
}
