//! A running `tandem up`, on ports of its own, stopped on drop.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{TempDir, http, ports, stop_child, tail};

/// How many RTP ports each node gets for audio and for video.
const MEDIA_PORTS: u16 = 100;
/// Relayed addresses each node's embedded TURN relay may hand out.
const TURN_RELAY_PORTS: u16 = 20;

pub struct Node {
    child: Child,
    pub sip_port: u16,
    pub http_port: u16,
    pub audio_ports: (u16, u16),
    pub video_ports: (u16, u16),
    /// The embedded TURN relay's UDP port on 127.0.0.1 (a test may move it
    /// with `TANDEM_TURN_LISTEN`).
    pub turn_port: u16,
    log: PathBuf,
    dir: TempDir,
}

impl Node {
    /// `tandem up` with defaults, except ports.
    pub fn start() -> Node {
        Node::start_with(&[])
    }

    /// `tandem up` with extra `TANDEM_*` variables (e.g.
    /// `("TANDEM_CONFERENCE_AUTO_CREATE", "false")`).
    pub fn start_with(extra_env: &[(&str, &str)]) -> Node {
        Node::start_full(extra_env, &[])
    }

    /// `tandem up ARGS...` (e.g. `--demo`) with extra `TANDEM_*` variables.
    pub fn start_full(extra_env: &[(&str, &str)], args: &[&str]) -> Node {
        let mut all = vec!["up"];
        all.extend_from_slice(args);
        Node::launch(&all, extra_env)
    }

    /// `tandem ARGS...` (`node`, `control`, `up --demo`) on ports of its own,
    /// waiting for `/healthz`.
    pub fn launch(args: &[&str], extra_env: &[(&str, &str)]) -> Node {
        let dir = TempDir::new("node");
        let sip_port = ports::udp_tcp();
        let http_port = ports::block(1, true);
        let audio = ports::block(MEDIA_PORTS, false);
        let video = ports::block(MEDIA_PORTS, false);
        let audio_ports = (audio, audio + MEDIA_PORTS - 1);
        let video_ports = (video, video + MEDIA_PORTS - 1);
        // `tandem up` runs the embedded TURN relay: each node its own ports,
        // so that nodes of parallel tests don't fight over 3478.
        let turn_port = ports::udp();
        let turn_relay = ports::block(TURN_RELAY_PORTS, false);
        let log = dir.path().join("tandem.log");
        let log_file = File::create(&log).expect("create node log");
        let log_err = log_file.try_clone().expect("clone log handle");

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tandem"));
        cmd.args(args).current_dir(dir.path());
        // The node must see only what this test sets, not a developer's shell.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("TANDEM_") {
                cmd.env_remove(&k);
            }
        }
        cmd.env("TANDEM_SIP_PORT", sip_port.to_string())
            .env("TANDEM_HTTP_LISTEN", format!("127.0.0.1:{http_port}"))
            .env(
                "TANDEM_MEDIA_AUDIO_PORTS",
                format!("{}-{}", audio_ports.0, audio_ports.1),
            )
            .env(
                "TANDEM_MEDIA_VIDEO_PORTS",
                format!("{}-{}", video_ports.0, video_ports.1),
            )
            .env("TANDEM_TURN_LISTEN", format!("127.0.0.1:{turn_port}"))
            // The span listener (QUIC): the OS picks a port unless a test sets one.
            .env("TANDEM_SPAN_LISTEN", "127.0.0.1:0")
            // H.323 call signalling: the OS picks a port unless a test sets
            // one (1720 is the default, and one node's at a time).
            .env("TANDEM_H323_PORT", "0")
            .env(
                "TANDEM_TURN_RELAY_PORTS",
                format!("{}-{}", turn_relay, turn_relay + TURN_RELAY_PORTS - 1),
            );
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(log_err));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", env!("CARGO_BIN_EXE_tandem")));
        let mut node = Node {
            child,
            sip_port,
            http_port,
            audio_ports,
            video_ports,
            turn_port,
            log,
            dir,
        };
        eprintln!(
            "[harness] tandem {} (pid {}): sip udp/tcp {} http {} audio {}-{} log {}",
            args.join(" "),
            node.child.id(),
            sip_port,
            http_port,
            audio_ports.0,
            audio_ports.1,
            node.log.display()
        );
        node.wait_healthy(Duration::from_secs(60));
        node
    }

    fn wait_healthy(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "tandem up exited ({st}) before /healthz answered.\n--- node log ---\n{}",
                    self.log_tail()
                );
            }
            match http::get(self.http_addr(), "/healthz") {
                Ok(r) if r.status == 200 => return,
                Ok(r) => last = format!("HTTP {}: {}", r.status, r.body),
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                panic!(
                    "tandem up did not answer GET /healthz with 200 within {timeout:?} (last: {last}).\n--- node log ---\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn sip_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.sip_port))
    }

    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.http_port))
    }

    /// `sip:<user>@127.0.0.1:<sip port>`.
    pub fn uri(&self, user: &str) -> String {
        format!("sip:{user}@127.0.0.1:{}", self.sip_port)
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log, 8000)
    }

    /// Panics (with the log) if the node process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!(
                "tandem exited unexpectedly ({st}).\n--- node log ---\n{}",
                self.log_tail()
            );
        }
    }

    pub fn get(&self, path: &str) -> http::Response {
        http::get(self.http_addr(), path).unwrap_or_else(|e| {
            panic!(
                "GET {path} failed: {e}\n--- node log ---\n{}",
                self.log_tail()
            )
        })
    }

    /// POST a JSON `body` to `path`; the response whatever its status.
    pub fn post(&self, path: &str, body: &str) -> http::Response {
        http::post_json(self.http_addr(), path, body).unwrap_or_else(|e| {
            panic!(
                "POST {path} failed: {e}\n--- node log ---\n{}",
                self.log_tail()
            )
        })
    }

    /// Any method with a JSON `body`; the response whatever its status.
    pub fn request(&self, method: &str, path: &str, body: &str) -> http::Response {
        http::request(self.http_addr(), method, path, body).unwrap_or_else(|e| {
            panic!(
                "{method} {path} failed: {e}\n--- node log ---\n{}",
                self.log_tail()
            )
        })
    }

    pub fn metrics(&self) -> String {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "GET /metrics: {}", r.body);
        r.body
    }

    /// Sum over the series of `name` whose labels include `labels`; 0 when
    /// there is none (a labelled counter appears on first increment).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        http::metric_sum(&self.metrics(), name, labels).unwrap_or(0.0)
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (a `kill -s` name: `INT`, `TERM`, ...) to the node, as
    /// an operator's Ctrl-C or service manager would. Panics if `kill` fails.
    pub fn signal(&self, signal: &str) {
        let ok = std::process::Command::new("kill")
            .arg("-s")
            .arg(signal)
            .arg(self.pid().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "kill -s {signal} {} failed (is kill(1) installed?)",
            self.pid()
        );
    }

    /// SIGKILL, as a crash or an OOM killer would: no BYE, no goodbye to the
    /// cluster.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` for the node to exit on its own; None if it is
    /// still running (drop then stops it).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        super::wait_child(&mut self.child, timeout)
    }

    /// The id of the participant named `name` (the From display name) in
    /// conference `conference`, if listed.
    pub fn participant_id(&self, conference: &str, name: &str) -> Option<String> {
        let c = self.conference(conference)?;
        c.get("participants")?
            .as_array()?
            .iter()
            .find(|p| p.get("name").and_then(|n| n.as_str()) == Some(name))
            .and_then(|p| p.get("id").and_then(|i| i.as_str()).map(str::to_string))
    }

    /// The participant named `name` in conference `conference` as JSON.
    pub fn participant(&self, conference: &str, name: &str) -> Option<serde_json::Value> {
        let c = self.conference(conference)?;
        c.get("participants")?
            .as_array()?
            .iter()
            .find(|p| p.get("name").and_then(|n| n.as_str()) == Some(name))
            .cloned()
    }

    /// The participant's `state` in the API (`joined`, or at the door
    /// `pin`, `lobby`, `joining`, ...).
    pub fn participant_state(&self, conference: &str, name: &str) -> Option<String> {
        self.participant(conference, name)?
            .get("state")?
            .as_str()
            .map(str::to_string)
    }

    /// Waits (15 s at most) until `name` is in `conference` with `state`.
    pub fn wait_state(&self, conference: &str, name: &str, state: &str) {
        super::wait_for(
            &format!("{name} in {conference} with state {state}"),
            std::time::Duration::from_secs(15),
            || (self.participant_state(conference, name).as_deref() == Some(state)).then_some(()),
        );
    }

    /// `GET /api/conferences` as JSON (an array).
    pub fn conferences(&self) -> serde_json::Value {
        let r = self.get("/api/conferences");
        assert_eq!(r.status, 200, "GET /api/conferences: {}", r.body);
        serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("/api/conferences is not JSON ({e}): {}", r.body))
    }

    /// The conference with this `id` from `GET /api/conferences`, if listed.
    pub fn conference(&self, id: &str) -> Option<serde_json::Value> {
        let all = self.conferences();
        let list = all
            .as_array()
            .unwrap_or_else(|| panic!("/api/conferences is not a JSON array: {all}"));
        list.iter()
            .find(|c| c.get("id").and_then(|v| v.as_str()) == Some(id))
            .cloned()
    }

    /// The `audio_codec` of each participant of conference `id`, lower-cased
    /// and sorted (empty if the conference is not listed).
    pub fn participant_codecs(&self, id: &str) -> Vec<String> {
        let Some(c) = self.conference(id) else {
            return Vec::new();
        };
        let mut v: Vec<String> = c
            .get("participants")
            .and_then(|p| p.as_array())
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        p.get("audio_codec")
                            .and_then(|c| c.as_str())
                            .unwrap_or("<none>")
                            .to_ascii_lowercase()
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(5));
        if std::thread::panicking() {
            eprintln!(
                "[harness] --- tandem log ({}) ---\n{}",
                self.log.display(),
                self.log_tail()
            );
        }
    }
}
