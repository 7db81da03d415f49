//! Real third-party peers: baresip (a room system that sends a tone and
//! records what it hears) and sipp (SIP load and scripted calls).
//!
//! Their configs live in `deploy/test-peers/` so the repository stands alone;
//! they are copied to a temp dir and filled in per run. A missing peer is a
//! test failure that says how to install it, never a silent skip.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::{TempDir, ports, stop_child, tail, wait_child};

const BARESIP_CONFIG: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/test-peers/baresip/config"
));
const BARESIP_ACCOUNTS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/test-peers/baresip/accounts"
));

/// The path of `program` on PATH, or a panic naming the package to install.
pub fn require(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(program);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{program} not found on PATH: these tests need the real peer. Install it with \
         `apt-get install --no-install-recommends {package}` (Debian 12; .ci/run does this)."
    );
}

/// Audio codecs a room system can be forced to. baresip wants the full
/// `name/srate/channels` (a bare `G722` is looked up as `G722/8000/1`, not
/// found, and the account silently offers everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Pcmu,
    Pcma,
    G722,
    Opus,
}

impl Codec {
    pub fn baresip(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU/8000/1",
            Codec::Pcma => "PCMA/8000/1",
            Codec::G722 => "G722/16000/1",
            Codec::Opus => "opus/48000/2",
        }
    }

    /// The name the node reports (`audio_codec`, `codec` label), lower-case.
    pub fn api(self) -> &'static str {
        match self {
            Codec::Pcmu => "pcmu",
            Codec::Pcma => "pcma",
            Codec::G722 => "g722",
            Codec::Opus => "opus",
        }
    }
}

fn baresip_module_path() -> PathBuf {
    let dir = std::env::var_os("BARESIP_MODULE_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/baresip/modules"));
    for m in [
        "g711.so",
        "g722.so",
        "opus.so",
        "ausine.so",
        "aubridge.so",
        "sndfile.so",
        "account.so",
        "menu.so",
    ] {
        assert!(
            dir.join(m).is_file(),
            "baresip module {m} not found in {} (set BARESIP_MODULE_PATH, or \
             `apt-get install --no-install-recommends baresip-core`)",
            dir.display()
        );
    }
    dir
}

/// One baresip room system.
pub struct BaresipSpec<'a> {
    /// Account user name, also the temp dir's label.
    pub name: &'a str,
    /// ausine tone it sends, Hz (10..20000).
    pub tone_hz: u32,
    pub codec: Codec,
    /// What to `/dial`, e.g. `node.uri("4711")`.
    pub dial: String,
    /// baresip quits (sending BYE) after this many seconds from its start.
    pub seconds: u32,
}

pub struct Baresip {
    child: Child,
    pub name: String,
    pub sip_port: u16,
    pub rec_dir: PathBuf,
    log: PathBuf,
    _dir: TempDir,
}

impl Baresip {
    /// Writes the config from the template and starts baresip dialling.
    pub fn spawn(spec: BaresipSpec<'_>) -> Baresip {
        let bin = require("baresip", "baresip-core");
        let modules = baresip_module_path();
        let dir = TempDir::new(&format!("baresip-{}", spec.name));
        let rec_dir = dir.path().join("rec");
        std::fs::create_dir_all(&rec_dir).expect("create recording dir");
        let sip_port = ports::udp_tcp();
        let rtp = ports::block(20, false);
        let config = BARESIP_CONFIG
            .replace("@SIP_PORT@", &sip_port.to_string())
            .replace("@RTP_PORTS@", &format!("{}-{}", rtp, rtp + 19))
            .replace("@TONE_HZ@", &spec.tone_hz.to_string())
            .replace("@MODULE_PATH@", &modules.to_string_lossy())
            .replace("@SND_PATH@", &rec_dir.to_string_lossy());
        let accounts = BARESIP_ACCOUNTS
            .replace("@USER@", spec.name)
            .replace("@AUDIO_CODEC@", spec.codec.baresip());
        std::fs::write(dir.path().join("config"), config).expect("write baresip config");
        std::fs::write(dir.path().join("accounts"), accounts).expect("write baresip accounts");
        let log = dir.path().join("baresip.log");
        let out = File::create(&log).expect("create baresip log");
        let err = out.try_clone().expect("clone log handle");
        let child = Command::new(bin)
            .arg("-f")
            .arg(dir.path())
            .arg("-e")
            .arg(format!("/dial {}", spec.dial))
            .arg("-t")
            .arg(spec.seconds.to_string())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn baresip");
        eprintln!(
            "[harness] baresip {} (tone {} Hz, {}) sip {} rtp {}-{} -> {} log {}",
            spec.name,
            spec.tone_hz,
            spec.codec.baresip(),
            sip_port,
            rtp,
            rtp + 19,
            spec.dial,
            log.display()
        );
        Baresip {
            child,
            name: spec.name.to_string(),
            sip_port,
            rec_dir,
            log,
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        tail(&self.log, 6000)
    }

    /// True once baresip logged an established call.
    pub fn established(&self) -> bool {
        std::fs::read_to_string(&self.log)
            .map(|l| l.contains("Call established"))
            .unwrap_or(false)
    }

    /// Waits for baresip to exit by itself (its `-t`); panics after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        match wait_child(&mut self.child, timeout) {
            Some(st) => st,
            None => {
                stop_child(&mut self.child, Duration::from_secs(3));
                panic!(
                    "baresip {} did not exit within {timeout:?}.\n--- its log ---\n{}",
                    self.name,
                    self.log()
                );
            }
        }
    }

    /// The WAV of what it heard (`dump-<time>-dec.wav`); panics with its log
    /// if there is none (the call was never established).
    pub fn recording(&self) -> PathBuf {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&self.rec_dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.file_name()
                            .map(|n| n.to_string_lossy().ends_with("-dec.wav"))
                            .unwrap_or(false)
                    })
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        found.pop().unwrap_or_else(|| {
            panic!(
                "baresip {} recorded nothing in {} (no call established?).\n--- its log ---\n{}",
                self.name,
                self.rec_dir.display(),
                self.log()
            )
        })
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(3));
        if std::thread::panicking() {
            eprintln!(
                "[harness] --- baresip {} log ---\n{}",
                self.name,
                self.log()
            );
        }
    }
}

/// The outcome of one sipp run.
pub struct SippRun {
    pub status: ExitStatus,
    pub output: String,
}

impl SippRun {
    /// The "Successful call" / "Failed call" totals from sipp's final screen.
    pub fn calls(&self) -> (Option<u64>, Option<u64>) {
        let total = |label: &str| {
            self.output
                .lines()
                .rev()
                .find(|l| l.trim_start().starts_with(label))
                .and_then(|l| l.split('|').nth(2))
                .and_then(|c| c.trim().parse().ok())
        };
        (total("Successful call"), total("Failed call"))
    }
}

/// Runs sipp with `args` (the target and scenario included) in a temp dir
/// holding the `pcap` symlink its built-in pcap scenarios expect. Always adds
/// `-nostdin`; kills it after `timeout`.
pub fn sipp(args: &[String], timeout: Duration) -> SippRun {
    let bin = require("sipp", "sip-tester");
    let dir = TempDir::new("sipp");
    let pcaps = Path::new("/usr/share/sip-tester");
    assert!(
        pcaps.join("g711a.pcap").is_file(),
        "{} has no g711a.pcap: `apt-get install --no-install-recommends sip-tester`",
        pcaps.display()
    );
    std::os::unix::fs::symlink(pcaps, dir.path().join("pcap")).expect("symlink pcap dir");
    let log = dir.path().join("sipp.out");
    let out = File::create(&log).expect("create sipp log");
    let err = out.try_clone().expect("clone log handle");
    eprintln!("[harness] sipp {}", args.join(" "));
    let mut child = Command::new(bin)
        .args(args)
        .arg("-nostdin")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .expect("spawn sipp");
    let status = match wait_child(&mut child, timeout) {
        Some(st) => st,
        None => {
            stop_child(&mut child, Duration::from_secs(3));
            panic!(
                "sipp did not finish within {timeout:?}.\n--- sipp output ---\n{}",
                tail(&log, 6000)
            );
        }
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    SippRun { status, output }
}
