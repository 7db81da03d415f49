//! Control-plane benchmark: placement latency and front-door routing rate
//! with a real etcd, each against the same work over the in-memory store in
//! the same run (the baseline: what the policy and SIP handling cost without
//! the cluster store's round trips).
//!
//! `cargo bench -p tandem-control --bench routing` (needs `etcd` on PATH:
//! `apt-get install etcd-server`). Prints figures; asserts nothing.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tandem_control::config::{ControlConfig, FrontDoorConfig, FrontDoorMode};
use tandem_control::front_door::{FrontDoor, FrontDoorSettings};
use tandem_control::metrics::ControlMetrics;
use tandem_control::store::{EtcdStore, MemoryStore, Mirror, SharedStore, Store, keys};
use tandem_control::{NodeRecord, Placer, StaticRooms};
use tokio::net::UdpSocket;

const NEW_CONFERENCES: usize = 1000;
const CALLS: usize = 4000;
const WINDOW: usize = 64;

struct EtcdProcess {
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start_etcd() -> (EtcdProcess, String) {
    let dir = std::env::temp_dir().join(format!("tandem-bench-etcd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (client, peer) = (free_port(), free_port());
    let c = format!("http://127.0.0.1:{client}");
    let p = format!("http://127.0.0.1:{peer}");
    let child = Command::new("etcd")
        .args(["--name", "b", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
        .args([
            "--listen-peer-urls",
            &p,
            "--initial-advertise-peer-urls",
            &p,
        ])
        .args([
            "--initial-cluster",
            &format!("b={p}"),
            "--initial-cluster-state",
            "new",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("etcd not runnable ({e}): install it with `apt-get install etcd-server`")
        });
    (EtcdProcess { child, dir }, c)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn register_nodes(store: &SharedStore, sinks: &[SocketAddr]) {
    for (i, sink) in sinks.iter().enumerate() {
        let record = NodeRecord {
            name: format!("node-{i}"),
            site: if i < 2 { "east".into() } else { "west".into() },
            sip: sink.to_string(),
            max_participants: 1_000_000,
            updated_ms: u64::MAX / 2,
            ..NodeRecord::default()
        };
        store
            .put(
                &keys::node(&record.name),
                serde_json::to_vec(&record).expect("json"),
                None,
            )
            .await
            .expect("register a node");
    }
}

struct Latency {
    new_p50: Duration,
    new_p99: Duration,
    known_p50: Duration,
    known_p99: Duration,
}

async fn placement_latency(raw: SharedStore, label: &str) -> Latency {
    let registry = prometheus::Registry::new();
    let metrics = Arc::new(ControlMetrics::new(&registry));
    let sinks: Vec<SocketAddr> = (0..3)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], 9 + i)))
        .collect();
    register_nodes(&raw, &sinks).await;
    let nodes = Arc::new(Mirror::start(raw.clone(), keys::NODES));
    nodes.ready(Duration::from_secs(5)).await;
    let placer = Placer::new(raw, nodes, metrics, true);
    let mut new = Vec::with_capacity(NEW_CONFERENCES);
    let mut known = Vec::with_capacity(NEW_CONFERENCES);
    for i in 0..NEW_CONFERENCES {
        let conf = format!("{label}-{i}");
        let t = Instant::now();
        placer
            .route(&conf, Some("east"), &[])
            .await
            .expect("placed");
        new.push(t.elapsed());
        let t = Instant::now();
        placer
            .route(&conf, Some("east"), &[])
            .await
            .expect("routed");
        known.push(t.elapsed());
    }
    new.sort();
    known.sort();
    Latency {
        new_p50: percentile(&new, 0.5),
        new_p99: percentile(&new, 0.99),
        known_p50: percentile(&known, 0.5),
        known_p99: percentile(&known, 0.99),
    }
}

/// INVITEs per second the front door forwards (proxy mode), `CALLS` calls
/// to `CALLS / 8` conferences, `WINDOW` outstanding at a time.
async fn routing_rate(raw: SharedStore) -> f64 {
    let registry = prometheus::Registry::new();
    let metrics = Arc::new(ControlMetrics::new(&registry));
    let mut sinks = Vec::new();
    let mut sink_addrs = Vec::new();
    for _ in 0..3 {
        let s = UdpSocket::bind("127.0.0.1:0").await.expect("sink");
        sink_addrs.push(s.local_addr().expect("addr"));
        sinks.push(s);
    }
    register_nodes(&raw, &sink_addrs).await;
    let nodes = Arc::new(Mirror::start(raw.clone(), keys::NODES));
    nodes.ready(Duration::from_secs(5)).await;
    let placer = Arc::new(Placer::new(raw, nodes, metrics.clone(), true));
    let fd = FrontDoor::start(
        FrontDoorSettings {
            listen: "127.0.0.1:0".parse().expect("addr"),
            front_door: FrontDoorConfig {
                mode: FrontDoorMode::Proxy,
                ..FrontDoorConfig::default()
            },
            control: ControlConfig::default(),
            auto_create: true,
        },
        placer,
        Arc::new(StaticRooms::default()),
        metrics,
    )
    .await
    .expect("front door");
    let forwarded = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = tokio::sync::watch::channel(0u64);
    for s in sinks {
        let forwarded = forwarded.clone();
        let done_tx = done_tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while s.recv_from(&mut buf).await.is_ok() {
                let n = forwarded.fetch_add(1, Ordering::Relaxed) + 1;
                done_tx.send_replace(n);
            }
        });
    }
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
    let local = client.local_addr().expect("addr");
    let started = Instant::now();
    let mut rx = done_rx;
    for i in 0..CALLS {
        // Keep WINDOW calls in flight.
        while i as u64 >= *rx.borrow() + WINDOW as u64 {
            if tokio::time::timeout(Duration::from_secs(5), rx.changed())
                .await
                .is_err()
            {
                panic!("front door stopped forwarding at {i} calls");
            }
        }
        let conf = 5000 + i / 8;
        let invite = format!(
            "INVITE sip:{conf}@{fd} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKb{i}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:bench@127.0.0.1>;tag=t{i}\r\nTo: <sip:{conf}@{fd}>\r\n\
             Call-ID: bench-{i}\r\nCSeq: 1 INVITE\r\nContact: <sip:bench@{local}>\r\nContent-Length: 0\r\n\r\n",
            fd = fd.addr
        );
        client
            .send_to(invite.as_bytes(), fd.addr)
            .await
            .expect("send");
    }
    while *rx.borrow() < CALLS as u64 {
        if tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .is_err()
        {
            break;
        }
    }
    let n = forwarded.load(Ordering::Relaxed);
    assert_eq!(n, CALLS as u64, "every INVITE forwarded once");
    n as f64 / started.elapsed().as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (_etcd, endpoint) = start_etcd();
    rt.block_on(async {
        let etcd: SharedStore = {
            let mut tries = 0;
            loop {
                match EtcdStore::connect(std::slice::from_ref(&endpoint), Duration::from_secs(2)).await {
                    Ok(s) if s.list("/").await.is_ok() => break Arc::new(s),
                    _ if tries < 50 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    _ => panic!("etcd at {endpoint} did not come up"),
                }
            }
        };
        let mem: SharedStore = Arc::new(MemoryStore::new());
        let base = placement_latency(mem.clone(), "m").await;
        let real = placement_latency(etcd.clone(), "e").await;
        println!(
            "placement, new conference (get + transaction): etcd p50 {:.3} ms p99 {:.3} ms; memory p50 {:.3} ms p99 {:.3} ms; ratio p50 {:.1}x",
            ms(real.new_p50),
            ms(real.new_p99),
            ms(base.new_p50),
            ms(base.new_p99),
            ms(real.new_p50) / ms(base.new_p50).max(1e-6)
        );
        println!(
            "placement, placed conference (get): etcd p50 {:.3} ms p99 {:.3} ms; memory p50 {:.3} ms p99 {:.3} ms; ratio p50 {:.1}x",
            ms(real.known_p50),
            ms(real.known_p99),
            ms(base.known_p50),
            ms(base.known_p99),
            ms(real.known_p50) / ms(base.known_p50).max(1e-6)
        );
        let mem_rate = routing_rate(Arc::new(MemoryStore::new())).await;
        let etcd_rate = routing_rate(etcd).await;
        println!(
            "front door (proxy), {CALLS} INVITEs to {} conferences, {WINDOW} in flight: etcd {:.0} calls/s; memory {:.0} calls/s; ratio {:.2}",
            CALLS / 8,
            etcd_rate,
            mem_rate,
            etcd_rate / mem_rate
        );
    });
}
