//! # Real-peer test harness
//!
//! Shared by every file in `bridge/tests/`. It builds nothing: it runs the
//! `tandem` binary Cargo built for this test run (`CARGO_BIN_EXE_tandem`) as
//! `tandem up` with ports of its own choosing, and drives real peers (baresip,
//! sipp) plus a few hand-written raw peers against it.
//!
//! Layout:
//! - [`ports`]: hands out free loopback ports; tests in one binary run on
//!   parallel threads, so every node and peer gets its own block.
//! - [`node`]: a running `tandem up`; killed (SIGTERM, then SIGKILL) on drop.
//! - [`http`]: a tiny HTTP/1.1 GET and Prometheus text parsing (std only).
//! - [`peers`]: baresip and sipp, from the templates in `deploy/test-peers/`.
//!   A missing peer fails the test with the command that installs it; tests
//!   never skip silently.
//! - [`sip`]: raw SIP over UDP/TCP and a minimal PCMU call ([`sip::RawCall`])
//!   whose RTP port and socket the test controls (for malformed-RTP tests).
//! - [`uac`]: a scripted SIP dialog (late offer, re-INVITE, INFO, session
//!   timer headers) and an RTP endpoint whose codec and sending the test
//!   switches mid-call.
//! - [`rooms`]: synthetic room systems (`tandem-loadtest`) on a runtime the
//!   test owns.
//! - [`audio`]: WAV reading, G.711 µ-law, and a windowed Goertzel to check
//!   which tones a recording contains.
//! - [`video_peers`]: baresip room systems with a solid-colour camera that
//!   save what they see as PNG (from `deploy/test-peers/baresip-video/`),
//!   pane colours of a layout, and FFmpeg as an H.264 RTP receiver that
//!   counts decoded pictures and decoder errors.
//!
//! Everything binds to 127.0.0.1 only.

#![allow(dead_code)]

pub mod audio;
pub mod capture;
pub mod cluster;
pub mod h323;
pub mod http;
pub mod netns;
pub mod node;
pub mod peers;
pub mod ports;
pub mod rooms;
pub mod sip;
pub mod uac;
pub mod video_peers;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use node::Node;

/// A scratch directory, removed on drop unless the test is failing (then it
/// is kept and its path printed, so logs and recordings can be inspected).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("tandem-it-{}-{}-{}", std::process::id(), n, label));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("TANDEM_TEST_KEEP").is_some() {
            eprintln!("[harness] kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Polls `f` every 100 ms until it returns `Some`, or panics after `timeout`
/// with `what` and the last value `describe` produced.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last `max` bytes of a text file, for failure messages.
pub fn tail(path: &Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// Sends SIGTERM to `pid` (through `kill(1)`, as std has no signal API and we
/// keep libc out of the dev-dependencies). Returns false if `kill` is missing.
pub fn sigterm(pid: u32) -> bool {
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Stops a child: SIGTERM, up to `grace` to exit, then SIGKILL. Never panics.
pub fn stop_child(child: &mut std::process::Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if sigterm(child.id()) {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for a child to exit within `timeout`; None if it did not (it is then
/// still running; the caller decides).
pub fn wait_child(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
