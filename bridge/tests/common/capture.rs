//! Packets captured on the loopback interface (dumpcap) and dissected by
//! tshark, an independent decoder: what we put on the wire must parse as
//! the protocol it claims to be, with no malformed packets and no expert
//! errors or warnings.
//!
//! Needs `dumpcap` with the right to capture (root, or CAP_NET_RAW as the
//! wireshark-common package can grant) and `tshark`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{TempDir, peers, stop_child};

/// A running capture on `lo`.
pub struct Capture {
    child: Option<Child>,
    file: PathBuf,
    _dir: TempDir,
}

impl Capture {
    /// Captures packets matching the BPF `filter` (e.g. `tcp port 5072`)
    /// until [`Capture::stop`].
    pub fn start(filter: &str) -> Capture {
        let dumpcap = peers::require("dumpcap", "wireshark-common");
        peers::require("tshark", "tshark");
        let dir = TempDir::new("capture");
        let file = dir.path().join("capture.pcapng");
        let log = dir.path().join("dumpcap.log");
        let child = Command::new(dumpcap)
            .args(["-i", "lo", "-q", "-f", filter, "-w"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(&log).expect("create dumpcap log"),
            ))
            .spawn()
            .expect("run dumpcap");
        // dumpcap writes the file's header once it captures.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) == 0 {
            assert!(
                Instant::now() < deadline,
                "dumpcap did not start capturing on lo (it needs root or CAP_NET_RAW): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Capture {
            child: Some(child),
            file,
            _dir: dir,
        }
    }

    /// Stops capturing; the file is complete afterwards.
    pub fn stop(&mut self) -> &Path {
        if let Some(mut child) = self.child.take() {
            // Let the last packets reach the file.
            std::thread::sleep(Duration::from_millis(300));
            stop_child(&mut child, Duration::from_secs(5));
        }
        &self.file
    }

    /// tshark's verbose dissection of the capture, `decode_as` entries
    /// being `-d` arguments (`tcp.port==5072,bfcp`).
    pub fn dissect(&mut self, decode_as: &[String], filter: &str) -> String {
        let file = self.stop().to_path_buf();
        let mut cmd = Command::new("tshark");
        cmd.arg("-r").arg(&file).arg("-V");
        for d in decode_as {
            cmd.arg("-d").arg(d);
        }
        cmd.args(["-Y", filter]);
        let out = cmd.output().expect("run tshark");
        assert!(
            out.status.success(),
            "tshark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Packets tshark finds malformed or flags with an expert warning or
    /// error, in the part of the capture `filter` selects; empty when
    /// all is well.
    pub fn problems(&mut self, decode_as: &[String], filter: &str) -> String {
        self.dissect(
            decode_as,
            &format!("({filter}) && (_ws.malformed || _ws.expert.severity >= \"Warning\")"),
        )
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_secs(2));
        }
    }
}
