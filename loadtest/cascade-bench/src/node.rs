//! The node under test: a `tandem up` child process with a config of the
//! bench's own, looked at through its HTTP API and `/proc`; interrupted
//! (SIGINT: every call ends with BYE) and waited for on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::Value;
use tandem_loadtest::node;

pub struct NodeProcess {
    child: Child,
    pub sip: SocketAddr,
    pub api: String,
    log: PathBuf,
}

/// The cascade settings the node runs with.
pub struct CascadeSettings<'a> {
    pub janus_url: &'a str,
    pub turn_url: &'a str,
    pub media_ip: &'a str,
}

impl NodeProcess {
    /// Starts `tandem up` with SIP on `sip_port`, the API on `http_port`,
    /// and the cascade into `cascade`'s Janus through its TURN relay (the
    /// Edge, relay-only, as deployed). Waits for `/healthz`.
    pub async fn start(
        tandem: &Path,
        dir: &Path,
        sip_port: u16,
        http_port: u16,
        cascade: &CascadeSettings<'_>,
    ) -> anyhow::Result<NodeProcess> {
        let config = dir.join("tandem.toml");
        std::fs::write(
            &config,
            format!(
                "[cascade]\njanus_url = \"{}\"\nice_policy = \"relay\"\nmedia_ip = \"{}\"\n\
                 create_room = true\nadmin_key = \"supersecret\"\n\
                 [[cascade.turn]]\nurl = \"{}\"\nusername = \"tandem\"\ncredential = \"tandem123\"\n",
                cascade.janus_url, cascade.media_ip, cascade.turn_url
            ),
        )?;
        let log = dir.join("tandem.log");
        let out = std::fs::File::create(&log)?;
        let mut cmd = Command::new(tandem);
        cmd.arg("up").arg("--config").arg(&config).current_dir(dir);
        // The node sees only what the bench sets (TANDEM_* variables are
        // its configuration overrides, and the namespace script sets some).
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("TANDEM_") {
                cmd.env_remove(&k);
            }
        }
        cmd.env("TANDEM_SIP_PORT", sip_port.to_string())
            .env("TANDEM_HTTP_LISTEN", format!("127.0.0.1:{http_port}"))
            .env("TANDEM_H323_PORT", "0")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out));
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot run {}", tandem.display()))?;
        let mut node = NodeProcess {
            child,
            sip: SocketAddr::from(([127, 0, 0, 1], sip_port)),
            api: format!("http://127.0.0.1:{http_port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = node.child.try_wait()? {
                bail!("tandem up exited ({status}):\n{}", node.log_tail(30));
            }
            if matches!(node::http_get(&node.api, "/healthz").await, Ok((200, _))) {
                return Ok(node);
            }
            if Instant::now() > deadline {
                bail!(
                    "tandem up did not answer /healthz within 30 s:\n{}",
                    node.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The conference `id` as `GET /api/conferences` lists it.
    pub async fn conference(&self, id: &str) -> anyhow::Result<Option<Value>> {
        let (status, body) = node::http_get(&self.api, "/api/conferences").await?;
        if status != 200 {
            bail!("GET /api/conferences: {status} {body}");
        }
        let list: Value = serde_json::from_str(&body).context("/api/conferences is not JSON")?;
        Ok(list
            .as_array()
            .and_then(|l| l.iter().find(|c| c["id"] == id))
            .cloned())
    }

    /// Polls the conference every 100 ms until `ok` holds for it.
    pub async fn wait_conference(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        ok: impl Fn(Option<&Value>) -> bool,
    ) -> anyhow::Result<Option<Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.conference(id).await?;
            if ok(c.as_ref()) {
                return Ok(c);
            }
            if Instant::now() > deadline {
                bail!(
                    "{what}: not within {timeout:?}; conference {id} is {}",
                    c.map_or("absent".into(), |c| c.to_string())
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sets a conference's default layout (e.g. "1x1").
    pub async fn set_layout(&self, id: &str, layout: &str) -> anyhow::Result<()> {
        let (status, body) = node::http_post_json(
            &self.api,
            &format!("/api/conferences/{id}/layout"),
            &format!("{{\"layout\":\"{layout}\"}}"),
        )
        .await?;
        if !(200..300).contains(&status) {
            bail!("setting layout {layout} on {id}: {status} {body}");
        }
        Ok(())
    }

    /// The sum of a metric's series whose labels include `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> anyhow::Result<f64> {
        let (_, text) = node::http_get(&self.api, "/metrics").await?;
        let mut sum = 0.0;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            let (labelled, value) = match rest.strip_prefix('{') {
                Some(r) => match r.split_once('}') {
                    Some((l, v)) => (l, v),
                    None => continue,
                },
                None if rest.starts_with(' ') => ("", rest),
                None => continue,
            };
            if labels
                .iter()
                .all(|(k, v)| labelled.contains(&format!("{k}=\"{v}\"")))
                && let Some(v) = value
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
            {
                sum += v;
            }
        }
        Ok(sum)
    }

    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        node::process_cpu_seconds(self.pid()).map_err(|e| anyhow!("node CPU: {e}"))
    }

    /// SIGINT, then up to 10 s for the node to end its calls and exit.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}
