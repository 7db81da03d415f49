//! Story: the embedded TURN relay (`[turn]`) serves a TURN client
//! (webrtc-rs' `turn::client`, a real client over loopback UDP) that holds
//! TURN REST credentials minted from the shared secret: the allocation is
//! granted, a packet relayed to a peer's socket comes back the other way,
//! and closing it frees it. Wrong passwords and expired usernames are
//! refused, and every outcome is counted where an operator looks
//! (`tandem_turn_*`). `tandem up` whose TURN port is taken says so and exits.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tandem_bridge::config::{PortRange, TurnRelayConfig};
use tandem_bridge::metrics::Metrics;
use tandem_bridge::turn_relay::TurnRelay;
use tandem_cascade::agent::mint_turn_credential;
use tokio::net::UdpSocket;
use tokio::time::timeout;
use turn::client::{Client, ClientConfig};
use webrtc_util::Conn;

use common::ports;

const SECRET: &str = "north";
const RELAY_PORTS: u16 = 10;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A relay on a free loopback port with relay ports of its own.
async fn relay(metrics: &Metrics) -> (TurnRelay, PortRange) {
    let first = ports::block(RELAY_PORTS, false);
    let relay_ports = PortRange(first..=first + RELAY_PORTS - 1);
    let config = TurnRelayConfig {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        relay_ports: relay_ports.clone(),
        secret: Some(SECRET.into()),
        ..TurnRelayConfig::default()
    };
    let relay = TurnRelay::start(&config, metrics)
        .await
        .expect("the relay starts");
    (relay, relay_ports)
}

/// A TURN client of `relay`, listening.
async fn client(relay: &TurnRelay, username: &str, password: &str) -> Client {
    let server = relay.local_addr().to_string();
    let conn = UdpSocket::bind("127.0.0.1:0").await.expect("client socket");
    let client = Client::new(ClientConfig {
        stun_serv_addr: server.clone(),
        turn_serv_addr: server,
        username: username.into(),
        password: password.into(),
        // The client takes the realm from the server's 401 challenge.
        realm: String::new(),
        software: String::new(),
        rto_in_ms: 0,
        conn: Arc::new(conn),
        vnet: None,
    })
    .await
    .expect("client");
    client.listen().await.expect("client listens");
    client
}

fn auth(metrics: &Metrics, result: &str) -> u64 {
    metrics.turn.auth.with_label_values(&[result]).get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_credentials_allocate_and_packets_are_relayed_both_ways() {
    let metrics = Metrics::new();
    let (relay, relay_ports) = relay(&metrics).await;
    let (username, password) = mint_turn_credential(SECRET, "agent", unix_now() + 600);
    let client = client(&relay, &username, &password).await;

    let relay_conn = timeout(Duration::from_secs(10), client.allocate())
        .await
        .expect("the allocation is answered within 10 s")
        .expect("the allocation is granted");
    let relayed = relay_conn.local_addr().expect("relayed address");
    assert_eq!(
        relayed.ip(),
        Ipv4Addr::LOCALHOST,
        "relayed address {relayed}"
    );
    assert!(
        relay_ports.0.contains(&relayed.port()),
        "relayed port {} outside turn.relay_ports {:?}",
        relayed.port(),
        relay_ports.0
    );

    // Out through the relay: the peer sees the relayed address as sender.
    let peer = UdpSocket::bind("127.0.0.1:0").await.expect("peer socket");
    let peer_addr = peer.local_addr().expect("peer address");
    relay_conn
        .send_to(b"ping", peer_addr)
        .await
        .expect("send through the relay");
    let mut buf = [0u8; 1500];
    let (n, from) = timeout(Duration::from_secs(10), peer.recv_from(&mut buf))
        .await
        .expect("the peer receives the relayed packet within 10 s")
        .expect("peer recv");
    assert_eq!(&buf[..n], b"ping");
    assert_eq!(from, relayed, "the relayed packet's source");

    // And back: the peer answers the relayed address, the client gets it.
    peer.send_to(b"pong", relayed).await.expect("peer answers");
    let (n, from) = timeout(Duration::from_secs(10), relay_conn.recv_from(&mut buf))
        .await
        .expect("the client receives the answer within 10 s")
        .expect("relay recv");
    assert_eq!(&buf[..n], b"pong");
    assert_eq!(from, peer_addr);

    // Allocate and CreatePermission carried good credentials; one
    // allocation granted and open.
    assert!(auth(&metrics, "ok") >= 2, "ok: {}", auth(&metrics, "ok"));
    assert_eq!(auth(&metrics, "bad"), 0);
    assert_eq!(auth(&metrics, "expired"), 0);
    assert_eq!(metrics.turn.allocations.get(), 1);
    assert_eq!(metrics.turn.allocations_open.get(), 1);
    let text = metrics.render();
    assert!(
        text.contains("tandem_turn_allocations_total 1"),
        "/metrics text:\n{text}"
    );

    // Closing it (Refresh, lifetime 0) frees it.
    relay_conn.close().await.expect("close the allocation");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metrics.turn.allocations_open.get() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the allocation is still open 10 s after the client closed it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.close().await.expect("client closes");
    relay.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_and_expired_usernames_are_refused_and_counted() {
    let metrics = Metrics::new();
    let (relay, _) = relay(&metrics).await;

    let (username, _) = mint_turn_credential(SECRET, "agent", unix_now() + 600);
    // The password another secret makes.
    let (_, wrong_password) = mint_turn_credential("south", "agent", unix_now() + 600);
    let wrong = client(&relay, &username, &wrong_password).await;
    let refused = timeout(Duration::from_secs(10), wrong.allocate())
        .await
        .expect("answered within 10 s");
    assert!(refused.is_err(), "a wrong password got an allocation");
    wrong.close().await.expect("client closes");
    assert!(auth(&metrics, "bad") >= 1, "bad: {}", auth(&metrics, "bad"));

    // Minted right, but its time is over.
    let (username, password) = mint_turn_credential(SECRET, "agent", unix_now() - 60);
    let late = client(&relay, &username, &password).await;
    let refused = timeout(Duration::from_secs(10), late.allocate())
        .await
        .expect("answered within 10 s");
    assert!(refused.is_err(), "an expired username got an allocation");
    late.close().await.expect("client closes");
    assert!(
        auth(&metrics, "expired") >= 1,
        "expired: {}",
        auth(&metrics, "expired")
    );

    assert_eq!(auth(&metrics, "ok"), 0);
    assert_eq!(metrics.turn.allocations.get(), 0);
    assert_eq!(metrics.turn.allocations_open.get(), 0);
    relay.close().await;
}

#[tokio::test]
async fn a_taken_listen_port_is_an_error_that_names_the_key() {
    let taken = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    let config = TurnRelayConfig {
        listen: taken.local_addr().expect("address"),
        ..TurnRelayConfig::default()
    };
    let err = match TurnRelay::start(&config, &Metrics::new()).await {
        Ok(_) => panic!("a second relay bound {}", config.listen),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("turn.listen"), "{err}");
    assert!(err.to_lowercase().contains("in use"), "{err}");
}

/// `tandem up` on a TURN port somebody else has: a message that says which
/// key, and a failed exit, not a panic.
#[test]
fn tandem_up_on_a_taken_turn_port_exits_with_a_clear_error() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("socket");
    let turn = taken.local_addr().expect("address");
    let dir = common::TempDir::new("turn-taken");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tandem"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TANDEM_") {
            cmd.env_remove(&k);
        }
    }
    let audio = ports::block(10, false);
    let video = ports::block(10, false);
    let log = dir.path().join("tandem.log");
    let log_file = std::fs::File::create(&log).expect("log file");
    let mut child = cmd
        .arg("up")
        .current_dir(dir.path())
        .env("TANDEM_SIP_PORT", ports::udp_tcp().to_string())
        .env(
            "TANDEM_HTTP_LISTEN",
            format!("127.0.0.1:{}", ports::block(1, true)),
        )
        .env("TANDEM_MEDIA_AUDIO_PORTS", format!("{audio}-{}", audio + 9))
        .env("TANDEM_MEDIA_VIDEO_PORTS", format!("{video}-{}", video + 9))
        .env("TANDEM_TURN_LISTEN", turn.to_string())
        .env("TANDEM_H323_PORT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file))
        .spawn()
        .expect("tandem up runs");
    let status = common::wait_child(&mut child, Duration::from_secs(20));
    if status.is_none() {
        common::stop_child(&mut child, Duration::from_secs(3));
    }
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let status =
        status.unwrap_or_else(|| panic!("tandem up still runs on a taken port:\n{stderr}"));
    assert!(!status.success(), "tandem up started on a taken port");
    assert!(
        stderr.contains("turn.listen") && stderr.contains(&turn.to_string()),
        "stderr names neither the key nor the address:\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "tandem up panicked:\n{stderr}"
    );
}
