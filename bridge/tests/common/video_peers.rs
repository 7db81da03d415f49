//! Real peers for video: baresip room systems whose camera shows one solid
//! colour and that save what they receive as PNG, and FFmpeg as an
//! independent H.264 RTP receiver that counts what it decodes.
//!
//! What a person would see is judged on pictures: [`Image`] samples the
//! centre of each pane of a layout and names the colour it finds
//! ([`Colour::nearest`]), so a test can say "red, green and blue are on
//! screen, my own magenta is not".
//!
//! The baresip config lives in `deploy/test-peers/baresip-video/` (read its
//! comments for why each line is there). Missing software is a failure that
//! says what to install, never a skip.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::peers::require;
use super::{TempDir, ports, stop_child, tail, wait_child};

const CONFIG: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/test-peers/baresip-video/config"
));
const ACCOUNTS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/test-peers/baresip-video/accounts"
));

const INSTALL_BARESIP: &str = "apt-get install --no-install-recommends baresip-core baresip-ffmpeg";

/// A named RGB colour, as sent by a camera or expected on screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Colour {
    pub name: &'static str,
    pub rgb: [u8; 3],
}

pub const RED: Colour = Colour {
    name: "red",
    rgb: [255, 0, 0],
};
pub const GREEN: Colour = Colour {
    name: "green",
    rgb: [0, 255, 0],
};
pub const BLUE: Colour = Colour {
    name: "blue",
    rgb: [0, 0, 255],
};
pub const MAGENTA: Colour = Colour {
    name: "magenta",
    rgb: [255, 0, 255],
};
pub const YELLOW: Colour = Colour {
    name: "yellow",
    rgb: [255, 255, 0],
};
/// The tile of a participant without video (the compositor's background
/// for a name label).
pub const DARK_TILE: Colour = Colour {
    name: "dark name tile",
    rgb: [40, 44, 52],
};
pub const BLACK: Colour = Colour {
    name: "black",
    rgb: [0, 0, 0],
};
pub const WHITE: Colour = Colour {
    name: "white",
    rgb: [255, 255, 255],
};

/// How far (Euclidean, in 8-bit RGB) a seen colour may be from the one it is
/// taken for. Two YUV 4:2:0 round trips in limited range turn pure red into
/// about (234, 14, 15), a distance of ~30; a washed-out or tinted picture
/// lands well past 90.
pub const TOLERANCE: f32 = 90.0;

impl Colour {
    /// The `0xRRGGBB` form FFmpeg's colour option takes (`#` would start a
    /// comment in baresip's config).
    pub fn ffmpeg(self) -> String {
        format!(
            "0x{:02x}{:02x}{:02x}",
            self.rgb[0], self.rgb[1], self.rgb[2]
        )
    }

    pub fn distance(self, rgb: [u8; 3]) -> f32 {
        self.rgb
            .iter()
            .zip(rgb)
            .map(|(&a, b)| (f32::from(a) - f32::from(b)).powi(2))
            .sum::<f32>()
            .sqrt()
    }

    /// The colour of `palette` closest to `rgb`, and its distance.
    pub fn nearest(palette: &[Colour], rgb: [u8; 3]) -> (Colour, f32) {
        palette
            .iter()
            .map(|&c| (c, c.distance(rgb)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((BLACK, BLACK.distance(rgb)))
    }
}

/// A decoded RGB picture.
pub struct Image {
    /// The file it was read from.
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    /// 3 bytes a pixel, rows top to bottom.
    pub rgb: Vec<u8>,
}

/// A rectangle of an [`Image`], in pixels.
#[derive(Debug, Clone, Copy)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Image {
    /// Reads an 8-bit PNG (any colour type; baresip's snapshot writes RGB).
    pub fn read_png(path: &Path) -> Result<Image, String> {
        let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut decoder = png::Decoder::new(BufReader::new(file));
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder
            .read_info()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let size = reader
            .output_buffer_size()
            .ok_or_else(|| format!("{}: image too large", path.display()))?;
        let mut buf = vec![0u8; size];
        let info = reader
            .next_frame(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let bytes = &buf[..info.buffer_size()];
        let rgb: Vec<u8> = match info.color_type {
            png::ColorType::Rgb => bytes.to_vec(),
            png::ColorType::Rgba => bytes
                .chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect(),
            png::ColorType::Grayscale => bytes.iter().flat_map(|&g| [g, g, g]).collect(),
            png::ColorType::GrayscaleAlpha => bytes
                .chunks_exact(2)
                .flat_map(|p| [p[0], p[0], p[0]])
                .collect(),
            other => {
                return Err(format!(
                    "{}: unexpected colour type {other:?}",
                    path.display()
                ));
            }
        };
        Ok(Image {
            path: path.to_path_buf(),
            width: info.width,
            height: info.height,
            rgb,
        })
    }

    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// The per-channel median over `r` (clamped to the image): robust to a
    /// label, a border or a few blocks of coding noise inside it.
    pub fn median(&self, r: Rect) -> [u8; 3] {
        let x1 = (r.x + r.w).min(self.width);
        let y1 = (r.y + r.h).min(self.height);
        let mut ch: [Vec<u8>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for y in r.y.min(y1)..y1 {
            for x in r.x.min(x1)..x1 {
                for (values, v) in ch.iter_mut().zip(self.pixel(x, y)) {
                    values.push(v);
                }
            }
        }
        ch.map(|mut values| {
            values.sort_unstable();
            values.get(values.len() / 2).copied().unwrap_or(0)
        })
    }

    /// The panes of a `cols` x `rows` grid filling the picture.
    pub fn grid(&self, cols: u32, rows: u32) -> Vec<Rect> {
        let mut v = Vec::new();
        for row in 0..rows {
            for col in 0..cols {
                let x = self.width * col / cols;
                let y = self.height * row / rows;
                v.push(Rect {
                    x,
                    y,
                    w: self.width * (col + 1) / cols - x,
                    h: self.height * (row + 1) / rows - y,
                });
            }
        }
        v
    }

    /// The fraction of pixels (sampled every 4th in each direction) within
    /// [`TOLERANCE`] of `c`.
    pub fn share_of(&self, c: Colour) -> f32 {
        let (mut n, mut hit) = (0u32, 0u32);
        for y in (0..self.height).step_by(4) {
            for x in (0..self.width).step_by(4) {
                n += 1;
                if c.distance(self.pixel(x, y)) <= TOLERANCE {
                    hit += 1;
                }
            }
        }
        if n == 0 { 0.0 } else { hit as f32 / n as f32 }
    }
}

/// The centre of a pane: its middle third each way, clear of name labels
/// (drawn along an edge) and of borders between panes.
pub fn centre(r: Rect) -> Rect {
    Rect {
        x: r.x + r.w / 3,
        y: r.y + r.h / 3,
        w: (r.w / 3).max(1),
        h: (r.h / 3).max(1),
    }
}

/// Everything a pane may show, so that a pane is named by its nearest colour.
pub const PALETTE: [Colour; 8] = [RED, GREEN, BLUE, MAGENTA, YELLOW, DARK_TILE, BLACK, WHITE];

/// What one room system saw, as a grid of panes.
pub struct GridView {
    pub who: String,
    pub image: Image,
    pub cols: u32,
    pub rows: u32,
    /// Per pane, left to right then top to bottom: the median colour of its
    /// centre, the nearest colour of [`PALETTE`] and how far it is from it.
    pub panes: Vec<([u8; 3], Colour, f32)>,
}

impl GridView {
    pub fn of(who: &str, image: Image, cols: u32, rows: u32) -> GridView {
        let panes = image
            .grid(cols, rows)
            .into_iter()
            .map(|r| {
                let rgb = image.median(centre(r));
                let (c, d) = Colour::nearest(&PALETTE, rgb);
                (rgb, c, d)
            })
            .collect();
        GridView {
            who: who.to_string(),
            image,
            cols,
            rows,
            panes,
        }
    }

    /// Panes that show `c` (nearest to it, and within tolerance).
    pub fn panes_showing(&self, c: Colour) -> usize {
        self.panes
            .iter()
            .filter(|(_, n, d)| *n == c && *d <= TOLERANCE)
            .count()
    }

    /// What a person would call wrong with this view: each of `others`
    /// must fill exactly one pane, `own` must be nowhere (not in a pane, not
    /// in more than 0.5 % of the picture: a thumbnail of itself would show
    /// there even off the grid).
    pub fn problems(&self, others: &[Colour], own: Colour) -> Vec<String> {
        let mut p = Vec::new();
        for &c in others {
            let n = self.panes_showing(c);
            if n != 1 {
                p.push(format!(
                    "{}: the {} camera fills {n} panes, want exactly 1",
                    self.who, c.name
                ));
            }
        }
        let own_panes = self.panes_showing(own);
        let own_share = self.image.share_of(own);
        if own_panes > 0 || own_share > 0.005 {
            p.push(format!(
                "{}: sees its own {} camera ({own_panes} panes, {:.1} % of the picture)",
                self.who,
                own.name,
                own_share * 100.0
            ));
        }
        p
    }

    /// One line per pane, for the test's output and failure messages.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} saw {}x{} ({}), as {}x{} panes:",
            self.who,
            self.image.width,
            self.image.height,
            self.image.path.display(),
            self.cols,
            self.rows
        );
        for (i, (rgb, c, d)) in self.panes.iter().enumerate() {
            let (row, col) = (i as u32 / self.cols.max(1), i as u32 % self.cols.max(1));
            s += &format!(
                "\n  row {row} col {col}: centre rgb({:3},{:3},{:3}) ~ {} (distance {d:.0})",
                rgb[0], rgb[1], rgb[2], c.name
            );
        }
        s
    }
}

/// What the video m-line of a baresip offer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoOffer {
    /// `video_codecs=H264`: only H264 packetization-mode=0,
    /// profile-level-id 42e01f (Constrained Baseline, level 3.1).
    H264Mode0,
    /// baresip's full list: H264 mode 0 (PT 96) and mode 1 (PT 97), both
    /// 42e01f, then H263, MP4V-ES and H265.
    Everything,
}

/// One baresip room system with a camera.
pub struct VideoRoomSpec<'a> {
    /// Account user name, also the temp dir's label.
    pub name: &'a str,
    /// What its camera shows, edge to edge.
    pub colour: Colour,
    /// Another camera picture instead: a lavfi graph (commas allowed, at
    /// most 121 bytes), e.g. a ready-made mosaic to check the checks.
    pub lavfi: Option<String>,
    /// Camera picture size and frame rate (libx264 encodes it).
    pub size: (u32, u32),
    pub fps: u32,
    pub offer: VideoOffer,
    /// ausine tone it sends, Hz.
    pub tone_hz: u32,
    /// What to `/dial`, e.g. `node.uri("4711")`; None to only listen
    /// (`answermode=auto`).
    pub dial: Option<String>,
    /// baresip quits (sending BYE) after this many seconds from its start.
    pub seconds: u32,
}

/// The modules the video config loads; the ones from baresip-ffmpeg first.
const VIDEO_MODULES: [&str; 10] = [
    "avcodec.so",
    "avformat.so",
    "snapshot.so",
    "fakevideo.so",
    "ctrl_tcp.so",
    "g711.so",
    "ausine.so",
    "aubridge.so",
    "account.so",
    "menu.so",
];

/// baresip and its video modules, or a panic naming the packages.
pub fn require_baresip_video() -> (PathBuf, PathBuf) {
    let bin = require("baresip", "baresip-core baresip-ffmpeg");
    let dir = std::env::var_os("BARESIP_MODULE_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/baresip/modules"));
    for m in VIDEO_MODULES {
        assert!(
            dir.join(m).is_file(),
            "baresip module {m} not found in {}: the video tests need baresip's H.264 \
             (avcodec) and camera (avformat) modules. Install them with `{INSTALL_BARESIP}` \
             (Debian 12; .ci/run does this), or set BARESIP_MODULE_PATH.",
            dir.display()
        );
    }
    (bin, dir)
}

/// ffmpeg on PATH, or a panic naming the package.
pub fn require_ffmpeg() -> PathBuf {
    require("ffmpeg", "ffmpeg")
}

/// A running baresip with a camera; stopped (BYE, then SIGKILL) on drop.
pub struct VideoRoom {
    child: Child,
    pub name: String,
    pub colour: Colour,
    pub sip_port: u16,
    ctrl_port: u16,
    log: PathBuf,
    snapshots: u32,
    /// A `snapshot_recv` baresip has not served yet: it ignores new ones
    /// until the next decoded frame is saved under this name.
    pending: Option<PathBuf>,
    dir: TempDir,
}

impl VideoRoom {
    pub fn spawn(spec: VideoRoomSpec<'_>) -> VideoRoom {
        let (bin, modules) = require_baresip_video();
        let dir = TempDir::new(&format!("baresip-{}", spec.name));
        // sip_listen binds TLS on the next port (TCP) as well.
        let sip_port = ports::block(2, true);
        let ctrl_port = ports::block(1, true);
        let rtp = ports::block(20, false);
        let size = format!("{}x{}", spec.size.0, spec.size.1);
        let camera = spec
            .lavfi
            .clone()
            .unwrap_or_else(|| format!("color=c={}:s={size}:r={}", spec.colour.ffmpeg(), spec.fps));
        // baresip keeps 127 bytes of "lavfi,<graph>" and fails on the rest.
        assert!(
            camera.len() <= 121,
            "lavfi graph longer than baresip takes (121 bytes): {camera}"
        );
        let config = CONFIG
            .replace("@SIP_PORT@", &sip_port.to_string())
            .replace("@CTRL_PORT@", &ctrl_port.to_string())
            .replace("@RTP_PORTS@", &format!("{}-{}", rtp, rtp + 19))
            .replace("@TONE_HZ@", &spec.tone_hz.to_string())
            .replace("@CAMERA@", &camera)
            .replace("@VIDEO_SIZE@", &size)
            .replace("@FPS@", &spec.fps.to_string())
            .replace("@MODULE_PATH@", &modules.to_string_lossy());
        let accounts = ACCOUNTS.replace("@USER@", spec.name).replace(
            "@VIDEO_CODECS@",
            match spec.offer {
                VideoOffer::H264Mode0 => ";video_codecs=H264",
                VideoOffer::Everything => "",
            },
        );
        std::fs::write(dir.path().join("config"), config).expect("write baresip config");
        std::fs::write(dir.path().join("accounts"), accounts).expect("write baresip accounts");
        let log = dir.path().join("baresip.log");
        let out = File::create(&log).expect("create baresip log");
        let err = out.try_clone().expect("clone log handle");
        let mut cmd = Command::new(bin);
        cmd.arg("-f").arg(dir.path());
        if let Some(uri) = &spec.dial {
            cmd.arg("-e").arg(format!("/dial {uri}"));
        }
        let child = cmd
            .arg("-t")
            .arg(spec.seconds.to_string())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn baresip");
        eprintln!(
            "[harness] baresip {} (camera {} {size}@{}, {:?}) sip {sip_port} ctrl {ctrl_port} \
             rtp {}-{} -> {} log {}",
            spec.name,
            spec.colour.name,
            spec.fps,
            spec.offer,
            rtp,
            rtp + 19,
            spec.dial.as_deref().unwrap_or("(listening)"),
            log.display()
        );
        VideoRoom {
            child,
            name: spec.name.to_string(),
            colour: spec.colour,
            sip_port,
            ctrl_port,
            log,
            snapshots: 0,
            pending: None,
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        tail(&self.log, 6000)
    }

    fn log_contains(&self, what: &str) -> bool {
        std::fs::read_to_string(&self.log)
            .map(|l| l.contains(what))
            .unwrap_or(false)
    }

    /// True once baresip logged an established call.
    pub fn established(&self) -> bool {
        self.log_contains("Call established")
    }

    /// True once baresip decoded a first picture ("video: receiving with
    /// resolution W x H").
    pub fn receiving_video(&self) -> bool {
        self.log_contains("video: receiving with resolution")
    }

    /// Panics with the log if baresip has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!(
                "baresip {} exited ({st}).\n--- its log ---\n{}",
                self.name,
                self.log()
            );
        }
    }

    /// Runs a baresip command over ctrl_tcp (netstring-framed JSON) and
    /// returns its `data`, or why it failed.
    pub fn command(&self, command: &str, params: &str) -> Result<String, String> {
        let addr = (Ipv4Addr::LOCALHOST, self.ctrl_port);
        let mut s =
            TcpStream::connect(addr).map_err(|e| format!("connect ctrl_tcp {addr:?}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let token = format!("t{}", self.snapshots);
        let body =
            serde_json::json!({"command": command, "params": params, "token": token}).to_string();
        s.write_all(format!("{}:{body},", body.len()).as_bytes())
            .map_err(|e| format!("write ctrl_tcp: {e}"))?;
        // Events may arrive on the same connection; read netstrings until
        // the response carrying our token.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            while let Some((msg, used)) = netstring(&buf) {
                buf.drain(..used);
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&msg) else {
                    continue;
                };
                if v.get("response").and_then(|r| r.as_bool()) == Some(true)
                    && v.get("token").and_then(|t| t.as_str()) == Some(token.as_str())
                {
                    let data = v
                        .get("data")
                        .and_then(|d| d.as_str())
                        .unwrap_or("")
                        .to_string();
                    return if v.get("ok").and_then(|o| o.as_bool()) == Some(true) {
                        Ok(data)
                    } else {
                        Err(format!("baresip refused `{command} {params}`: {v}"))
                    };
                }
            }
            match s.read(&mut chunk) {
                Ok(0) => return Err("ctrl_tcp closed the connection".into()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("read ctrl_tcp: {e}")),
            }
        }
        Err(format!("no answer to `{command}` on ctrl_tcp within 5 s"))
    }

    /// The next picture baresip decodes from the call, as its snapshot
    /// module saves it (`snapshot_recv`). Err if none arrives in `timeout`
    /// (no video received) or the PNG is unreadable.
    pub fn snapshot(&mut self, timeout: Duration) -> Result<Image, String> {
        let path = match self.pending.clone() {
            Some(p) => p,
            None => {
                self.snapshots += 1;
                // Relative to baresip's working directory: its path buffer
                // holds 99 bytes.
                let name = format!("snapshot-{}.png", self.snapshots);
                self.command("snapshot_recv", &name)?;
                let p = self.dir.path().join(name);
                self.pending = Some(p.clone());
                p
            }
        };
        // The module logs "png: wrote" before it closes the file: wait until
        // the PNG decodes in full.
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no file yet");
        loop {
            if path.is_file() {
                match Image::read_png(&path) {
                    Ok(img) => {
                        self.pending = None;
                        return Ok(img);
                    }
                    Err(e) => last = e,
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "baresip {} saved no picture to {} within {timeout:?} ({last}): it decoded \
                     no video from the call",
                    self.name,
                    path.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for VideoRoom {
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

/// One netstring (`LEN:DATA,`) from the front of `buf`: its data and the
/// bytes it used, or None if it is not complete yet.
fn netstring(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    let colon = buf.iter().position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(&buf[..colon])
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let end = colon + 1 + len;
    if buf.len() <= end {
        return None;
    }
    Some((buf[colon + 1..end].to_vec(), end + 1))
}

/// Whether some socket is bound to UDP `port` on 127.0.0.1 or 0.0.0.0.
fn udp_bound(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let want = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    table.lines().skip(1).any(|l| {
        l.split_whitespace()
            .nth(1)
            .is_some_and(|local| want.iter().any(|w| w == local))
    })
}

/// The video part of an SDP answer.
#[derive(Debug, Clone)]
pub struct SdpVideo {
    pub ip: Option<std::net::IpAddr>,
    /// 0 when video was refused.
    pub port: u16,
    pub payload_types: Vec<u8>,
    /// `(pt, "H264/90000")` from `a=rtpmap:`.
    pub rtpmaps: Vec<(u8, String)>,
    /// `(pt, "packetization-mode=1;...")` from `a=fmtp:`.
    pub fmtps: Vec<(u8, String)>,
}

impl SdpVideo {
    /// The payload types mapped to H264.
    pub fn h264_payload_types(&self) -> Vec<u8> {
        self.rtpmaps
            .iter()
            .filter(|(_, enc)| enc.to_ascii_uppercase().starts_with("H264/"))
            .map(|(pt, _)| *pt)
            .collect()
    }
}

/// The first `m=video` of an SDP body (with the session's or its own `c=`).
pub fn parse_sdp_video(sdp: &str) -> Option<SdpVideo> {
    let mut session_ip = None;
    let mut v: Option<SdpVideo> = None;
    let mut in_video = false;
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            if v.is_some() {
                break;
            }
            let f: Vec<&str> = m.split_whitespace().collect();
            in_video = f.first() == Some(&"video");
            if in_video {
                v = Some(SdpVideo {
                    ip: session_ip,
                    port: f.get(1)?.parse().ok()?,
                    payload_types: f.iter().skip(3).filter_map(|p| p.parse().ok()).collect(),
                    rtpmaps: Vec::new(),
                    fmtps: Vec::new(),
                });
            }
        } else if let Some(c) = line.strip_prefix("c=IN IP4 ") {
            let ip = c.split('/').next().and_then(|a| a.trim().parse().ok());
            match (&mut v, in_video) {
                (Some(v), true) => v.ip = ip,
                _ => session_ip = ip,
            }
        } else if let (Some(v), true) = (&mut v, in_video) {
            let attr = |prefix: &str| {
                line.strip_prefix(prefix).and_then(|r| {
                    let (pt, rest) = r.split_once(' ')?;
                    Some((pt.parse::<u8>().ok()?, rest.trim().to_string()))
                })
            };
            if let Some(m) = attr("a=rtpmap:") {
                v.rtpmaps.push(m);
            } else if let Some(f) = attr("a=fmtp:") {
                v.fmtps.push(f);
            }
        }
    }
    v
}

/// What an [`FfmpegReceiver`] decoded.
#[derive(Debug)]
pub struct Decoded {
    /// Pictures the decoder output (one `-f framemd5` line each).
    pub frames: usize,
    /// `WxH` from framemd5's header, if any picture was decoded.
    pub dimensions: Option<(u32, u32)>,
    /// ffmpeg's `[error]` (and worse) lines: the decoder's complaints
    /// ("non-existing PPS", "error while decoding MB", "concealing N errors").
    pub errors: Vec<String>,
    /// Its `[warning]` lines (RTP sequence gaps and the like), for context.
    pub warnings: Vec<String>,
    /// Whether ffmpeg finished by itself (its `-t` elapsed) rather than
    /// being stopped at the deadline.
    pub finished: bool,
}

/// FFmpeg receiving one H.264 RTP stream described by an SDP file, decoding
/// every picture for `seconds` of stream time. Stopped on drop.
pub struct FfmpegReceiver {
    child: Child,
    pub port: u16,
    frames: PathBuf,
    stderr: PathBuf,
    dir: TempDir,
}

/// The SDP ffmpeg reads: one H.264 video stream arriving on `port` of
/// 127.0.0.1 with payload type `pt` and `fmtp` as offered. The depacketizer
/// takes single NAL units, STAP-A and FU-A whatever the fmtp says.
pub fn ffmpeg_sdp(port: u16, pt: u8, fmtp: &str) -> String {
    format!(
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=tandem-test\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=video {port} RTP/AVP {pt}\r\na=rtpmap:{pt} H264/90000\r\na=fmtp:{pt} {fmtp}\r\n\
         a=recvonly\r\n"
    )
}

impl FfmpegReceiver {
    /// Starts ffmpeg listening on `port` (RTP) and `port + 1` (RTCP) of
    /// 127.0.0.1, as `sdp` describes.
    pub fn start(port: u16, sdp: &str, seconds: u32) -> FfmpegReceiver {
        let bin = require_ffmpeg();
        let dir = TempDir::new("ffmpeg-rx");
        let sdp_path = dir.path().join("in.sdp");
        std::fs::write(&sdp_path, sdp).expect("write SDP for ffmpeg");
        let frames = dir.path().join("frames.md5");
        let stderr = dir.path().join("ffmpeg.err");
        let err = File::create(&stderr).expect("create ffmpeg stderr");
        // -loglevel level+warning: every line says its level, so errors can
        // be told from warnings. -fps_mode passthrough: one output line per
        // decoded picture, none duplicated or dropped to fit a frame rate.
        let args: Vec<String> = [
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "level+warning",
            "-protocol_whitelist",
            "file,udp,rtp",
            "-localaddr",
            "127.0.0.1",
            "-i",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([sdp_path.to_string_lossy().into_owned()])
        .chain(
            [
                "-map",
                "0:v:0",
                "-fps_mode",
                "passthrough",
                "-t",
                &seconds.to_string(),
                "-f",
                "framemd5",
            ]
            .iter()
            .map(|s| s.to_string()),
        )
        .chain([frames.to_string_lossy().into_owned()])
        .collect();
        eprintln!("[harness] ffmpeg {}", args.join(" "));
        let child = Command::new(bin)
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn ffmpeg");
        FfmpegReceiver {
            child,
            port,
            frames,
            stderr,
            dir,
        }
    }

    /// Blocks until ffmpeg has bound its RTP port (so nothing sent to it is
    /// lost), or panics after 5 s. Looks in /proc/net/udp rather than trying
    /// to bind the port, which could steal it from ffmpeg.
    pub fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if udp_bound(self.port) {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "ffmpeg exited ({st}) before listening on {}:\n{}",
                    self.port,
                    tail(&self.stderr, 4000)
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "ffmpeg did not bind UDP 127.0.0.1:{} within 5 s:\n{}",
                    self.port,
                    tail(&self.stderr, 4000)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `timeout` for ffmpeg to finish (stopping it then), and
    /// reads what it decoded.
    pub fn finish(&mut self, timeout: Duration) -> Decoded {
        let finished = wait_child(&mut self.child, timeout).is_some();
        if !finished {
            // SIGTERM: ffmpeg flushes what it decoded and exits.
            stop_child(&mut self.child, Duration::from_secs(3));
        }
        let md5 = std::fs::read_to_string(&self.frames).unwrap_or_default();
        let frames = md5
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .count();
        let dimensions = md5
            .lines()
            .find_map(|l| l.strip_prefix("#dimensions 0:"))
            .and_then(|d| d.trim().split_once('x'))
            .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)));
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let errors = err
            .lines()
            .filter(|l| {
                ["[error]", "[fatal]", "[panic]"]
                    .iter()
                    .any(|t| l.contains(t))
            })
            .map(str::to_string)
            .collect();
        let warnings = err
            .lines()
            .filter(|l| l.contains("[warning]"))
            .map(str::to_string)
            .collect();
        Decoded {
            frames,
            dimensions,
            errors,
            warnings,
            finished,
        }
    }

    /// The end of ffmpeg's stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        tail(&self.stderr, 4000)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for FfmpegReceiver {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(3));
        if std::thread::panicking() {
            eprintln!("[harness] --- ffmpeg stderr ---\n{}", self.stderr_tail());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netstrings_split() {
        let b = b"5:hello,3:abc,2:x";
        let (m, n) = netstring(b).expect("first");
        assert_eq!((m.as_slice(), n), (&b"hello"[..], 8));
        let (m, n) = netstring(&b[8..]).expect("second");
        assert_eq!((m.as_slice(), n), (&b"abc"[..], 6));
        assert!(netstring(&b[14..]).is_none());
    }

    #[test]
    fn sdp_video_of_an_answer() {
        let sdp = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
                   m=video 41002 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n\
                   a=fmtp:97 profile-level-id=42e01f;packetization-mode=1\r\n";
        let v = parse_sdp_video(sdp).expect("video");
        assert_eq!(v.port, 41002);
        assert_eq!(v.h264_payload_types(), vec![97]);
        assert_eq!(v.fmtps[0].1, "profile-level-id=42e01f;packetization-mode=1");
        assert_eq!(v.ip, Some(std::net::IpAddr::from([127, 0, 0, 1])));
        assert!(parse_sdp_video("v=0\r\nm=audio 4000 RTP/AVP 0\r\n").is_none());
    }

    #[test]
    fn nearest_colour() {
        let palette = [RED, GREEN, BLUE, MAGENTA, DARK_TILE, BLACK];
        let (c, d) = Colour::nearest(&palette, [234, 14, 15]);
        assert_eq!(c, RED);
        assert!(d < 35.0, "{d}");
        assert_eq!(Colour::nearest(&palette, [42, 45, 50]).0, DARK_TILE);
        assert_eq!(RED.ffmpeg(), "0xff0000");
    }
}
