//! Scenarios with the native meeting: each test runs again inside a network
//! namespace where `deploy/peers/browser/netns-peers.sh` has coturn (the
//! Edge) and Janus up, and drives headless Chromium through
//! `deploy/peers/browser/client.js`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The workspace root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// Outside the namespace: check the peers are installed, then run `test`
/// (of this test binary) again inside one with coturn and Janus up.
pub fn reexec_in_namespace(test: &str) {
    for (tool, package) in [
        ("janus", "janus"),
        ("turnserver", "coturn"),
        ("ip", "iproute2"),
        ("ss", "iproute2"),
        ("unshare", "util-linux"),
        ("chromium", "chromium"),
        ("node", "nodejs"),
    ] {
        assert!(
            on_path(tool),
            "{tool} not found: apt-get install janus coturn iproute2 util-linux chromium \
             libjs-janus-gateway libjs-webrtc-adapter nodejs ({package})"
        );
    }
    let browser = repo().join("deploy/peers/browser");
    assert!(
        browser.join("node_modules/puppeteer-core").is_dir(),
        "the browser driver's modules are missing: cd deploy/peers/browser && \
         PUPPETEER_SKIP_DOWNLOAD=1 npm ci"
    );
    let exe = std::env::current_exe().expect("test binary");
    let status = Command::new("bash")
        .arg(browser.join("netns-peers.sh"))
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .status()
        .expect("netns-peers.sh runs");
    assert!(status.success(), "the scenario {test} failed (see above)");
}

/// A browser client (`deploy/peers/browser/client.js`) in `room`,
/// relay-only through the Edge; stopped if the test ends early.
pub struct Browser(pub std::process::Child);

impl Browser {
    /// `args`: the mode and its options; JSON lines go to `log`.
    pub fn start(room: &str, turn: &str, log: &Path, args: &[&str]) -> Browser {
        let child = Command::new("node")
            .current_dir(repo().join("deploy/peers/browser"))
            .arg("client.js")
            .args(args)
            .args(["--room", room, "--turn", turn, "--turn-user", "test"])
            .args(["--turn-pass", "test123", "--relay"])
            .stdout(std::fs::File::create(log).expect("browser log"))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node client.js starts");
        Browser(child)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        super::stop_child(&mut self.0, Duration::from_secs(3));
    }
}
