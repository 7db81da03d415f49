//! `tandem-cascade-bench`: issue 4's figures for a conference cascaded into
//! a native meeting (a Janus VideoRoom), measured end to end on one machine.
//!
//! 1. **Join time**: the first room system's INVITE → a native subscriber
//!    in the meeting receives the bridge's first video and audio packets
//!    and decodes its first picture; `--joins` times, each a fresh join
//!    (the agent leaves when the last room system hangs up).
//! 2. **Glass-to-glass delay**, with a camera that shows its capture time
//!    (`tandem_loadtest::video::clock`): a synthetic room system's pattern
//!    read by a native subscriber on each simulcast layer, and a native
//!    publisher's pattern read by the room system. The pattern source is
//!    the talker (a tone), so it is what the active-speaker views show.
//! 3. **CPU of a cascaded conference**: 2 room systems + 5 native 720p30
//!    publishers, the bridge publishing 3 layers, against the same-run
//!    baseline of 7 room systems in a conference without a cascade.
//!
//! It runs inside `deploy/peers/browser/netns-peers.sh` (a private network
//! namespace with Janus and coturn; Janus never uses loopback for media),
//! which `loadtest/scripts/cascade-bench.sh` does, and starts the node
//! itself. Everything runs on one machine and one clock, so delays are
//! differences of one clock's readings.
//!
//! ## Layout
//! - [`native`]: native meeting participants (Janus connector + WebRTC
//!   sessions from tandem-cascade; OpenH264 and RFC 6184 from the loadtest).
//! - [`node`]: the `tandem up` child process and its API.
//! - this file: the three measurements and the report.

mod native;
mod node;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use serde_json::{Value, json};
use tandem_cascade::PublisherId;
use tandem_loadtest::video::clock::{self, WallClock};
use tandem_loadtest::{CallOptions, Picture, RoomSystem, RoomSystemConfig, VideoClip, VideoSpec};
use tandem_mixer::video::SimulcastLayer;

use native::{Meeting, NativePublisher, NativeVideo, Observer, Subscription};
use node::{CascadeSettings, NodeProcess};

/// How the node's agent appears in the meeting (its default display name).
const AGENT_DISPLAY: &str = "Tandem";
/// Looking for the pattern over the whole picture: the views are 1x1.
const WHOLE: (f32, f32, f32, f32) = (0.0, 0.0, 1.0, 1.0);
/// Fewer readings than this in a window: the pattern was not read.
const MIN_READINGS: usize = 10;

#[derive(Debug, Parser)]
#[command(
    name = "tandem-cascade-bench",
    about = "Join time, glass-to-glass delay and CPU of a cascaded conference (issue 4)"
)]
struct Args {
    /// The node binary to start.
    #[arg(long, default_value = "target/release/tandem")]
    tandem: PathBuf,
    /// Janus' HTTP API (netns-peers.sh sets it).
    #[arg(long, env = "TANDEM_JANUS_URL")]
    janus_url: Option<String>,
    /// The Edge's TURN URL (netns-peers.sh sets it).
    #[arg(long, env = "TANDEM_TURN_URL")]
    turn_url: Option<String>,
    /// Janus' PID, to report its CPU beside the node's.
    #[arg(long, env = "TANDEM_JANUS_PID")]
    janus_pid: Option<u32>,
    /// The namespace's address, where WebRTC binds.
    #[arg(long, default_value = "10.99.0.1")]
    media_ip: IpAddr,
    /// The cascaded conference and Janus room.
    #[arg(long, default_value_t = 4711)]
    room: u64,
    /// Fresh joins to time.
    #[arg(long, default_value_t = 5)]
    joins: usize,
    /// Seconds of pattern reading per direction and layer.
    #[arg(long, default_value_t = 8.0)]
    delay_seconds: f64,
    /// Steady window over which CPU is measured, seconds.
    #[arg(long, default_value_t = 20.0)]
    cpu_seconds: f64,
    /// Seconds between everyone being in and the CPU window.
    #[arg(long, default_value_t = 5.0)]
    settle: f64,
    #[arg(long, default_value_t = 25260)]
    sip_port: u16,
    #[arg(long, default_value_t = 28280)]
    http_port: u16,
    /// Keep the node's log and snapshots here (default: a temp folder,
    /// removed after a run that passed).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cascade-bench: no runtime: {e}");
            std::process::exit(1);
        }
    };
    let out = args.out.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("tandem-cascade-bench.{}", std::process::id()))
    });
    let result = std::fs::create_dir_all(&out)
        .context("output folder")
        .and_then(|()| rt.block_on(run(&args, &out)));
    rt.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => {
            if args.out.is_none() {
                let _ = std::fs::remove_dir_all(&out);
            }
        }
        Err(e) => {
            eprintln!("\ncascade-bench: FAILED: {e:#}");
            eprintln!("cascade-bench: node log and snapshots in {}", out.display());
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------
// Figures.

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// One fresh join, each time from the INVITE.
#[derive(Debug, Clone, Copy)]
struct Join {
    answered: Duration,
    announced: Duration,
    video: Duration,
    audio: Duration,
    picture: Duration,
}

/// Pattern readings of one direction (or layer).
#[derive(Default)]
struct Readings {
    delays_ms: Vec<f64>,
    pictures: u64,
    unread: u64,
    size: Option<(u32, u32)>,
    last: Option<Picture>,
}

impl Readings {
    fn add(&mut self, picture: Picture, at: Instant, clock: &WallClock) {
        self.pictures += 1;
        self.size = Some((picture.width(), picture.height()));
        match clock::read_clock(&picture, WHOLE).and_then(|v| clock::delay_ms(v, clock.unix_ms(at)))
        {
            Some(d) => self.delays_ms.push(f64::from(d)),
            None => self.unread += 1,
        }
        self.last = Some(picture);
    }

    /// Fails loudly when the pattern was not read, keeping what was seen.
    fn check(&self, what: &str, out: &std::path::Path) -> anyhow::Result<()> {
        if self.delays_ms.len() >= MIN_READINGS {
            return Ok(());
        }
        let saved = match &self.last {
            Some(p) => {
                let path = out.join(format!("{}.ppm", what.replace([' ', '>', '/'], "_")));
                let _ = p.save_ppm(&path);
                format!("last picture saved to {}", path.display())
            }
            None => "no picture decoded at all".into(),
        };
        bail!(
            "{what}: the clock pattern was read {} times in {} pictures ({} unreadable); {saved}",
            self.delays_ms.len(),
            self.pictures,
            self.unread
        )
    }

    fn json(&self) -> Value {
        let d = sorted(self.delays_ms.clone());
        json!({
            "readings": d.len(), "pictures": self.pictures, "size": self.size,
            "p50_ms": percentile(&d, 50.0), "p95_ms": percentile(&d, 95.0),
            "max_ms": d.last().copied(),
        })
    }

    fn line(&self, label: &str) -> String {
        let d = sorted(self.delays_ms.clone());
        let size = self.size.map_or("?".into(), |(w, h)| format!("{w}x{h}"));
        format!(
            "  {label:<34} p50 {:>4.0} ms  p95 {:>4.0} ms  max {:>4.0} ms  ({} readings of {} pictures at {size})",
            percentile(&d, 50.0),
            percentile(&d, 95.0),
            d.last().copied().unwrap_or(f64::NAN),
            d.len(),
            self.pictures
        )
    }
}

/// CPU over a steady window, in cores (CPU seconds per wall second).
#[derive(Debug, Clone, Copy)]
struct Cpu {
    node: f64,
    janus: Option<f64>,
    bench: f64,
    wall: f64,
}

async fn measure_cpu(
    node: &NodeProcess,
    janus_pid: Option<u32>,
    seconds: f64,
) -> anyhow::Result<Cpu> {
    let janus =
        |pid: Option<u32>| pid.and_then(|p| tandem_loadtest::node::process_cpu_seconds(p).ok());
    let own = || tandem_loadtest::node::own_cpu_seconds().unwrap_or(0.0);
    let (n0, j0, b0, t0) = (node.cpu_seconds()?, janus(janus_pid), own(), Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let (n1, j1, b1) = (node.cpu_seconds()?, janus(janus_pid), own());
    let wall = t0.elapsed().as_secs_f64();
    Ok(Cpu {
        node: (n1 - n0) / wall,
        janus: j0.zip(j1).map(|(a, b)| (b - a) / wall),
        bench: (b1 - b0) / wall,
        wall,
    })
}

// ---------------------------------------------------------------------------
// The run.

async fn run(args: &Args, out: &std::path::Path) -> anyhow::Result<()> {
    let (Some(janus_url), Some(turn_url)) = (args.janus_url.as_deref(), args.turn_url.as_deref())
    else {
        bail!(
            "no Janus: run this through loadtest/scripts/cascade-bench.sh, which starts Janus \
             and coturn in a private network namespace (apt-get install janus coturn iproute2)"
        );
    };
    if !args.tandem.is_file() {
        bail!(
            "{} not found: cargo build --release --bin tandem",
            args.tandem.display()
        );
    }
    let room = args.room.to_string();
    let meeting = Meeting {
        janus_url: janus_url.to_owned(),
        room: args.room,
        admin_key: "supersecret".into(),
        media_ip: args.media_ip,
    };
    // The replayed cameras of the CPU runs, encoded before anything is
    // measured: 720p30 with 360p/180p renditions (room systems follow the
    // node's TMMBR; natives send the 720p one).
    let colours = [
        (200, 60, 60),
        (60, 160, 60),
        (60, 80, 200),
        (200, 180, 40),
        (160, 60, 180),
        (40, 170, 170),
        (220, 120, 40),
    ];
    let clips = colours
        .iter()
        .map(|&c| {
            let spec = VideoSpec::new(c)
                .with_size(1280, 720)
                .with_fps(30.0)
                .with_bitrate(1_500_000);
            VideoClip::encode_ladder(&spec, 60).map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut node = NodeProcess::start(
        &args.tandem,
        out,
        args.sip_port,
        args.http_port,
        &CascadeSettings {
            janus_url,
            turn_url,
            media_ip: &args.media_ip.to_string(),
        },
    )
    .await?;
    println!(
        "== Tandem cascade benchmark: node pid {} (release), Janus {} room {}, relay via {}",
        node.pid(),
        janus_url,
        args.room,
        turn_url
    );
    let mut observer = Observer::join(&meeting, "bench-observer").await?;
    let mut gone: Vec<PublisherId> = Vec::new();

    // 1. Join time.
    let joins = join_times(args, &node, &mut observer, &mut gone)
        .await
        .map_err(|e| anyhow!("join time: {e:#}\n--- node log ---\n{}", node.log_tail(25)))?;

    // 2. Glass-to-glass.
    let clock = WallClock::now();
    let (to_native, to_vtc) =
        glass_to_glass(args, &node, &meeting, &mut observer, &gone, clock, out)
            .await
            .map_err(|e| {
                anyhow!(
                    "glass-to-glass: {e:#}\n--- node log ---\n{}",
                    node.log_tail(25)
                )
            })?;
    observer.leave().await;

    // 3. CPU.
    let (cascaded, baseline, traffic) = cpu(args, &node, &meeting, &clips)
        .await
        .map_err(|e| anyhow!("CPU: {e:#}\n--- node log ---\n{}", node.log_tail(25)))?;
    node.stop();

    report(
        args, &joins, &to_native, &to_vtc, cascaded, baseline, &traffic, &room,
    );
    Ok(())
}

fn join_vtc(node: &NodeProcess, room: &str, name: &str) -> RoomSystemConfig {
    RoomSystemConfig::new(node.sip, room, name)
        .with_tone(440.0, 0.25)
        .with_video(VideoSpec::new((40, 90, 200)).with_size(640, 360))
}

async fn call(cfg: RoomSystemConfig, options: CallOptions) -> anyhow::Result<RoomSystem> {
    let name = cfg.name.clone();
    tokio::time::timeout(Duration::from_secs(15), RoomSystem::call_with(cfg, options))
        .await
        .map_err(|_| anyhow!("{name}: no answer within 15 s"))?
        .with_context(|| format!("{name} could not join"))
}

/// Waits until the conference has nobody left (the agent gone with it).
async fn wait_empty(node: &NodeProcess, room: &str) -> anyhow::Result<()> {
    node.wait_conference(
        room,
        "the conference to empty",
        Duration::from_secs(20),
        |c| c.is_none_or(|c| c["participants"].as_array().is_none_or(Vec::is_empty)),
    )
    .await
    .map(|_| ())
}

async fn join_times(
    args: &Args,
    node: &NodeProcess,
    observer: &mut Observer,
    gone: &mut Vec<PublisherId>,
) -> anyhow::Result<Vec<Join>> {
    let room = args.room.to_string();
    let mut joins = Vec::new();
    for i in 0..args.joins {
        let t0 = Instant::now();
        let vtc = call(
            join_vtc(node, &room, &format!("join-{i}")),
            CallOptions::default(),
        )
        .await?;
        let answered = vtc.stats().join_latency;
        let id = observer
            .wait_publisher(AGENT_DISPLAY, Duration::from_secs(30), gone)
            .await?;
        let announced = t0.elapsed();
        let mut sub = observer.subscribe(id).await?;
        let first = sub.wait_first_media(Duration::from_secs(20)).await;
        let since = |t: Option<Instant>, what: &str| {
            t.map(|t| t - t0).ok_or_else(|| {
                anyhow!(
                    "join {i}: media never flowed: no {what} at the native subscriber within 20 s \
                     of subscribing ({} pictures, {} decode errors)",
                    sub.pictures,
                    sub.decode_errors
                )
            })
        };
        let join = Join {
            answered,
            announced,
            video: since(first.video_packet, "video packet")?,
            audio: since(first.audio_packet, "audio packet")?,
            picture: since(first.picture, "decoded picture")?,
        };
        eprintln!(
            "[join {i}] answered {:.2} s, agent published {:.2} s, first video {:.2} s, audio {:.2} s, picture {:.2} s",
            secs(join.answered),
            secs(join.announced),
            secs(join.video),
            secs(join.audio),
            secs(join.picture)
        );
        joins.push(join);
        observer.unsubscribe(sub).await;
        vtc.hangup().await?;
        observer.wait_left(id, Duration::from_secs(20)).await?;
        gone.push(id);
        wait_empty(node, &room).await?;
    }
    Ok(joins)
}

/// Reads the pattern from a subscription's pictures of `width` for `seconds`.
async fn read_subscription(
    sub: &mut Subscription,
    width: u32,
    seconds: f64,
    clock: &WallClock,
) -> Readings {
    let mut r = Readings::default();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    // A layer switch waits for the layer's next keyframe: the window starts
    // with the first picture of the wanted size (or after 5 s without one).
    let mut started = false;
    let start_by = Instant::now() + Duration::from_secs(5);
    let mut end = deadline;
    while Instant::now() < end {
        let Some(d) = sub.next_picture(Duration::from_secs(5)).await else {
            break;
        };
        if d.picture.width() != width {
            if !started && Instant::now() > start_by {
                break;
            }
            continue;
        }
        if !started {
            started = true;
            end = Instant::now() + Duration::from_secs_f64(seconds);
        }
        r.add(d.picture, d.at, clock);
    }
    r
}

async fn glass_to_glass(
    args: &Args,
    node: &NodeProcess,
    meeting: &Meeting,
    observer: &mut Observer,
    gone: &[PublisherId],
    clock: WallClock,
    out: &std::path::Path,
) -> anyhow::Result<(Vec<(SimulcastLayer, Readings)>, Readings)> {
    let room = args.room.to_string();
    // (a) room system → native: the pattern camera talks, so the link's
    // 1x1 view of the local speaker is its picture.
    let camera = VideoSpec::new((0, 0, 0))
        .with_size(1280, 720)
        .with_fps(30.0)
        .with_bitrate(1_500_000);
    let vtc = call(
        RoomSystemConfig::new(node.sip, &room, "clock-vtc")
            .with_tone(1000.0, 0.25)
            .with_clock_video(camera, clock),
        CallOptions::default(),
    )
    .await?;
    let id = observer
        .wait_publisher(AGENT_DISPLAY, Duration::from_secs(30), gone)
        .await?;
    let mut sub = observer.subscribe(id).await?;
    let mut to_native = Vec::new();
    for layer in [
        SimulcastLayer::Hd720,
        SimulcastLayer::Sd360,
        SimulcastLayer::Low180,
    ] {
        if layer != SimulcastLayer::Hd720 {
            observer.switch_layer(&sub, layer).await?;
        }
        let width = match layer {
            SimulcastLayer::Hd720 => 1280,
            SimulcastLayer::Sd360 => 640,
            SimulcastLayer::Low180 => 320,
        };
        let r = read_subscription(&mut sub, width, args.delay_seconds, &clock).await;
        r.check(&format!("room system > native, {} layer", layer.rid()), out)?;
        eprintln!(
            "[g2g] {}",
            r.line(&format!("room system > native ({})", layer.rid()))
        );
        to_native.push((layer, r));
    }
    observer.unsubscribe(sub).await;

    // (b) native → room system: the room system falls quiet, a native
    // publisher with the pattern talks; the conference shows 1x1, so the
    // room system's view is the native's picture.
    vtc.set_tone(None, 0.0);
    node.set_layout(&room, "1x1").await?;
    let publisher = NativePublisher::start(
        meeting,
        "bench-clock",
        NativeVideo::Clock {
            clock,
            width: 1280,
            height: 720,
            fps: 30.0,
            bitrate_bps: 1_500_000,
        },
        Some(700.0),
    )
    .await?;
    node.wait_conference(
        &room,
        "the native publisher in the conference",
        Duration::from_secs(20),
        |c| {
            c.and_then(|c| c["participants"].as_array())
                .is_some_and(|p| p.iter().any(|p| p["name"] == "bench-clock"))
        },
    )
    .await?;
    let mut to_vtc = Readings::default();
    let mut last: Option<Instant> = None;
    let mut end = Instant::now() + Duration::from_secs(20);
    let mut started = false;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(4)).await;
        let Some((picture, at)) = vtc.seen_at() else {
            continue;
        };
        if last == Some(at) {
            continue;
        }
        last = Some(at);
        let readable = clock::read_clock(&picture, WHOLE).is_some();
        if !started {
            // The window opens with the first picture that shows the
            // pattern (the speaker switch and a keyframe come first).
            if !readable {
                continue;
            }
            started = true;
            end = Instant::now() + Duration::from_secs_f64(args.delay_seconds);
        }
        to_vtc.add(Picture::clone(&picture), at, &clock);
    }
    if to_vtc.pictures == 0
        && let Some((p, _)) = vtc.seen_at()
    {
        to_vtc.last = Some(Picture::clone(&p));
    }
    to_vtc.check("native > room system", out)?;
    eprintln!("[g2g] {}", to_vtc.line("native > room system"));
    publisher.leave().await?;
    vtc.hangup().await?;
    wait_empty(node, &room).await?;
    Ok((to_native, to_vtc))
}

/// What crossed the cascade during the CPU window, per second
/// (`tandem_cascade_packets_total`: RTP packets in; Opus packets and
/// high-layer pictures out).
#[derive(Debug, Default)]
struct Traffic {
    in_video: f64,
    in_audio: f64,
    out_video: f64,
    out_audio: f64,
}

async fn cascade_packets(node: &NodeProcess) -> anyhow::Result<[f64; 4]> {
    let mut v = [0.0; 4];
    for (i, (d, k)) in [
        ("in", "video"),
        ("in", "audio"),
        ("out", "video"),
        ("out", "audio"),
    ]
    .into_iter()
    .enumerate()
    {
        v[i] = node
            .metric(
                "tandem_cascade_packets_total",
                &[("direction", d), ("kind", k)],
            )
            .await?;
    }
    Ok(v)
}

async fn cpu(
    args: &Args,
    node: &NodeProcess,
    meeting: &Meeting,
    clips: &[Arc<VideoClip>],
) -> anyhow::Result<(Cpu, Cpu, Traffic)> {
    let room = args.room.to_string();
    // Load legs count what they receive but do not decode it (as in
    // tandem-loadtest): the bench shares the machine with the node.
    let quiet_leg = CallOptions {
        listen: false,
        decode_video: false,
        ..CallOptions::default()
    };
    let leg = |conf: &str, i: usize, tone: Option<f32>| {
        let cfg = RoomSystemConfig::new(node.sip, conf, format!("vtc-{i}"))
            .with_video_replay(clips[i].clone());
        match tone {
            Some(hz) => cfg.with_tone(hz, 0.25),
            None => cfg,
        }
    };

    // Cascaded: 2 room systems + 5 natives (one of each talks).
    let mut vtcs = Vec::new();
    for i in 0..2 {
        vtcs.push(call(leg(&room, i, (i == 0).then_some(600.0)), quiet_leg.clone()).await?);
    }
    let mut natives = Vec::new();
    for i in 0..5 {
        natives.push(
            NativePublisher::start(
                meeting,
                &format!("native-{i}"),
                NativeVideo::Clip(clips[2 + i].clone()),
                (i == 0).then_some(900.0),
            )
            .await?,
        );
    }
    node.wait_conference(
        &room,
        "5 native participants",
        Duration::from_secs(30),
        |c| {
            c.is_some_and(|c| {
                c["cascade"]["native_participants"] == 5 && c["cascade"]["state"] == "connected"
            })
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let before = cascade_packets(node).await?;
    let cascaded = measure_cpu(node, args.janus_pid, args.cpu_seconds).await?;
    let after = cascade_packets(node).await?;
    let rate = |i: usize| (after[i] - before[i]) / cascaded.wall;
    let traffic = Traffic {
        in_video: rate(0),
        in_audio: rate(1),
        out_video: rate(2),
        out_audio: rate(3),
    };
    if traffic.in_video < 1.0 || traffic.out_video < 1.0 {
        bail!("media did not flow across the cascade during the CPU window: {traffic:?}");
    }
    for n in natives {
        n.leave().await?;
    }
    for v in vtcs {
        v.hangup().await?;
    }
    wait_empty(node, &room).await?;

    // Baseline: the same 7 people as room systems, no cascade (a
    // conference ID that is not a number has no native meeting).
    let base = "cpu-baseline";
    let mut vtcs = Vec::new();
    for i in 0..7 {
        // The same two talkers: room system 0, and room system 2 in the
        // place of native 0.
        let tone = match i {
            0 => Some(600.0),
            2 => Some(900.0),
            _ => None,
        };
        vtcs.push(call(leg(base, i, tone), quiet_leg.clone()).await?);
    }
    node.wait_conference(base, "7 room systems", Duration::from_secs(20), |c| {
        c.and_then(|c| c["participants"].as_array())
            .is_some_and(|p| p.len() == 7)
    })
    .await?;
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let baseline = measure_cpu(node, args.janus_pid, args.cpu_seconds).await?;
    let received: u64 = vtcs.iter().map(|v| v.video_stats().received.packets).sum();
    if received == 0 {
        bail!("the baseline's room systems received no video");
    }
    for v in vtcs {
        v.hangup().await?;
    }
    Ok((cascaded, baseline, traffic))
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &Args,
    joins: &[Join],
    to_native: &[(SimulcastLayer, Readings)],
    to_vtc: &Readings,
    cascaded: Cpu,
    baseline: Cpu,
    traffic: &Traffic,
    room: &str,
) {
    let pick = |f: fn(&Join) -> Duration| sorted(joins.iter().map(|j| secs(f(j))).collect());
    println!(
        "\njoin time, first room system's INVITE → ..., {} fresh joins:",
        joins.len()
    );
    for (label, v) in [
        ("200 OK to the room system", pick(|j| j.answered)),
        ("the agent published in Janus", pick(|j| j.announced)),
        ("first video packet at a native", pick(|j| j.video)),
        ("first audio packet at a native", pick(|j| j.audio)),
        ("first picture decoded at a native", pick(|j| j.picture)),
    ] {
        println!(
            "  {label:<34} p50 {:>5.2} s  max {:>5.2} s",
            percentile(&v, 50.0),
            v.last().copied().unwrap_or(f64::NAN)
        );
    }
    println!("\nglass-to-glass delay, clock pattern captured → decoded and read (one clock):");
    for (layer, r) in to_native {
        println!(
            "{}",
            r.line(&format!("room system → native, layer {}", layer.rid()))
        );
    }
    println!("{}", to_vtc.line("native 720p30 → room system, 1x1"));
    let ratio = cascaded.node / baseline.node;
    println!(
        "\nnode CPU over {:.0} s steady windows (7 people, 720p30 cameras, 2 talking):",
        args.cpu_seconds
    );
    println!(
        "  cascaded {room}: 2 room systems + 5 natives in, 3 layers out  {:.2} cores",
        cascaded.node
    );
    println!(
        "  baseline (same run): 7 room systems, no cascade      {:.2} cores",
        baseline.node
    );
    println!("  ratio cascaded / baseline                            {ratio:.2}x");
    let janus = |c: Cpu| c.janus.map_or("?".into(), |j| format!("{j:.2}"));
    println!(
        "  (Janus {} / {} cores, the bench itself {:.2} / {:.2}; across the cascade per second: in {:.0} video + {:.0} audio RTP packets, out {:.0} high-layer pictures + {:.0} Opus packets)",
        janus(cascaded),
        janus(baseline),
        cascaded.bench,
        baseline.bench,
        traffic.in_video,
        traffic.in_audio,
        traffic.out_video,
        traffic.out_audio
    );
    let join_json = |f: fn(&Join) -> Duration| {
        let v = pick(f);
        json!({"p50_s": percentile(&v, 50.0), "max_s": v.last()})
    };
    let summary = json!({
        "join": {
            "runs": joins.len(),
            "answered": join_json(|j| j.answered),
            "published": join_json(|j| j.announced),
            "first_video_packet": join_json(|j| j.video),
            "first_audio_packet": join_json(|j| j.audio),
            "first_picture": join_json(|j| j.picture),
        },
        "glass_to_glass": {
            "vtc_to_native": to_native.iter().map(|(l, r)| (l.rid().to_owned(), r.json())).collect::<serde_json::Map<_, _>>(),
            "native_to_vtc": to_vtc.json(),
        },
        "cpu": {
            "cascaded_cores": cascaded.node, "baseline_cores": baseline.node, "ratio": ratio,
            "janus_cores": [cascaded.janus, baseline.janus],
        },
    });
    println!("{summary}");
}
