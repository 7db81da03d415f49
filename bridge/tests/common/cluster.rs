//! A fleet on loopback: a real single-member etcd, `tandem control` (the
//! front door and control API) and `tandem node`s in sites, each a process
//! of its own, stopped on drop.

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use std::net::{IpAddr, Ipv4Addr};

use tandem_loadtest::{RoomSystem, RoomSystemConfig};

use super::{Node, TempDir, peers, ports, stop_child, tail, wait_for};

/// etcd 3 (Debian's etcd-server), data in a scratch directory.
pub struct Etcd {
    child: Option<Child>,
    pub client_port: u16,
    peer_port: u16,
    dir: TempDir,
}

impl Etcd {
    pub fn start() -> Etcd {
        let dir = TempDir::new("etcd");
        let client_port = ports::block(1, true);
        let peer_port = ports::block(1, true);
        let mut etcd = Etcd {
            child: None,
            client_port,
            peer_port,
            dir,
        };
        etcd.spawn();
        etcd
    }

    fn spawn(&mut self) {
        let bin = peers::require("etcd", "etcd-server");
        let log = File::create(self.dir.path().join("etcd.log")).expect("etcd log");
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(bin)
            .args(["--name", "t", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .args(["--initial-cluster-state", "new"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("run etcd");
        self.child = Some(child);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.client_port));
        wait_for("etcd to answer /health", Duration::from_secs(20), || {
            super::http::get(addr, "/health")
                .ok()
                .filter(|r| r.status == 200 && r.body.contains("true"))
        });
        eprintln!("[harness] etcd on {client}");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The TOML array `TANDEM_CONTROL_ETCD` / `TANDEM_NODE_CONTROL` take.
    pub fn endpoints_env(&self) -> String {
        format!("[\"{}\"]", self.endpoint())
    }

    /// Stops etcd (SIGTERM).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, Duration::from_secs(5));
        }
    }

    /// Starts it again on the same data.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    pub fn log_tail(&self) -> String {
        tail(&self.dir.path().join("etcd.log"), 4000)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, Duration::from_secs(3));
        }
    }
}

/// `tandem control` against `etcd`, callers' sites by source network
/// (`sites`: name and CIDR), more config file lines (`toml`), and extra
/// `TANDEM_*` settings.
pub fn control(etcd: &Etcd, sites: &[(&str, &str)], toml: &str, extra: &[(&str, &str)]) -> Node {
    let mut toml = toml.to_string();
    toml.push('\n');
    for (name, net) in sites {
        toml.push_str(&format!(
            "[[control.site]]\nname = \"{name}\"\nnetworks = [\"{net}\"]\n"
        ));
    }
    let dir = TempDir::new("control-config");
    let path = dir.path().join("control.toml");
    std::fs::write(&path, toml).expect("write control.toml");
    // The config file outlives this function: leak the scratch dir's guard.
    let path = path.to_string_lossy().into_owned();
    std::mem::forget(dir);
    let endpoints = etcd.endpoints_env();
    let mut env = vec![
        ("TANDEM_CONTROL_ETCD", endpoints.as_str()),
        ("TANDEM_CONTROL_LEASE_TTL", "3"),
    ];
    env.extend_from_slice(extra);
    Node::launch(&["control", "--config", &path], &env)
}

/// `tandem node` named `name` in `site`, taking `max` participants.
pub fn node(etcd: &Etcd, name: &str, site: &str, max: usize, extra: &[(&str, &str)]) -> Node {
    let endpoints = etcd.endpoints_env();
    let max = max.to_string();
    let mut env = vec![
        ("TANDEM_NODE_NAME", name),
        ("TANDEM_NODE_SITE", site),
        ("TANDEM_NODE_MAX_PARTICIPANTS", max.as_str()),
        ("TANDEM_NODE_CONTROL", endpoints.as_str()),
        ("TANDEM_CONTROL_LEASE_TTL", "3"),
    ];
    env.extend_from_slice(extra);
    Node::launch(&["node"], &env)
}

/// Waits until the control plane lists `n` live nodes.
pub fn wait_nodes(control: &Node, n: usize) {
    wait_for(
        &format!("{n} nodes registered"),
        Duration::from_secs(20),
        || {
            let r = control.get("/api/nodes");
            let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
            (v.as_array()?.len() == n).then_some(())
        },
    );
}

/// `GET /api/placements` of the control plane: conference → (nodes, reason).
pub fn placements(control: &Node) -> Vec<serde_json::Value> {
    let r = control.get("/api/placements");
    assert_eq!(r.status, 200, "GET /api/placements: {}", r.body);
    serde_json::from_str::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// The placement of one conference, if any.
pub fn placement(control: &Node, conference: &str) -> Option<serde_json::Value> {
    placements(control)
        .into_iter()
        .find(|p| p["conference"] == conference)
}

/// Two sites told apart by the caller's source network: east callers bind
/// 127.0.1.x, west callers 127.0.2.x (all of 127/8 is loopback on Linux).
pub const SITES: &[(&str, &str)] = &[("east", "127.0.1.0/24"), ("west", "127.0.2.0/24")];

pub fn caller_ip(site: &str, n: u8) -> IpAddr {
    let third = if site == "east" { 1 } else { 2 };
    IpAddr::V4(Ipv4Addr::new(127, 0, third, 10 + n))
}

/// Calls `conference` through the front door from `site` with a tone.
pub fn call(
    rt: &tokio::runtime::Runtime,
    front: &Node,
    conference: &str,
    name: &str,
    site: &str,
    n: u8,
    hz: Option<f32>,
) -> RoomSystem {
    let mut cfg = RoomSystemConfig::new(front.sip_addr(), conference, name);
    if let Some(hz) = hz {
        cfg = cfg.with_tone(hz, 0.2);
    }
    call_as(rt, front, cfg, site, n)
}

/// Places the call `cfg` describes through the front door `front`, from the
/// `n`th caller address of `site`.
pub fn call_as(
    rt: &tokio::runtime::Runtime,
    front: &Node,
    mut cfg: RoomSystemConfig,
    site: &str,
    n: u8,
) -> RoomSystem {
    cfg.server = front.sip_addr();
    cfg.local_ip = caller_ip(site, n);
    let (name, conference) = (cfg.name.clone(), cfg.conference.clone());
    let placed = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(15), RoomSystem::call(cfg)).await
    });
    match placed {
        Ok(Ok(room)) => room,
        Ok(Err(e)) => panic!(
            "{name} from {site} could not join {conference} through the front door: {e}\n--- control log ---\n{}",
            front.log_tail()
        ),
        Err(_) => panic!(
            "{name} from {site}: no answer from {conference} within 15 s\n--- control log ---\n{}",
            front.log_tail()
        ),
    }
}

/// Participants of `conference` whose calls are on `node` (0 if it has none
/// there); those a spanning conference lists from other nodes don't count.
pub fn participants_on(node: &Node, conference: &str) -> usize {
    node.conference(conference)
        .and_then(|c| {
            c["participants"]
                .as_array()
                .map(|a| a.iter().filter(|p| p["node"].is_null()).count())
        })
        .unwrap_or(0)
}
