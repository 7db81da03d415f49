//! `tandem-loadtest`: places N synthetic room-system calls into one conference
//! at a given rate, holds them for a steady-state window, measures the node's
//! CPU over that window, checks that every talker is heard, hangs up, and
//! reports — as text, then as one JSON line.
//!
//! The loadtest shares the machine with the node, so it stays lean: one tokio
//! runtime (one thread unless `--threads`), real encoding only for talkers
//! (quiet legs replay one canned second of encoded noise), decoding only on
//! the talkers and `--listen-sample` quiet legs. Its own CPU is reported too.
//!
//! With `--video` every leg also offers H.264 and replays a clip encoded once
//! before the calls are placed (`--video-clips` of them, one colour each), so
//! the generator's video cost is packet copies; only `--video-decode-sample`
//! legs decode what the node sends them, the rest count packets and
//! keyframes. The report adds the node's CPU per participant, video packets,
//! keyframes and PLI/FIR both ways, and a same-run baseline: how many such
//! streams one core decodes with raw OpenH264.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::json;
use tandem_loadtest::{
    CallOptions, Codec, Rgb, RoomSystem, RoomSystemConfig, VideoClip, VideoSpec, VideoStats, codec,
    node,
};
use tokio::task::JoinSet;

#[derive(Debug, Parser)]
#[command(
    name = "tandem-loadtest",
    version,
    about = "Synthetic room systems against a Tandem node"
)]
struct Args {
    /// The node's (or front door's) SIP address, UDP.
    #[arg(long, default_value = "127.0.0.1:5060")]
    server: SocketAddr,
    /// Conference ID (Request-URI user part).
    #[arg(long, default_value = "1000")]
    conference: String,
    /// How many calls to place.
    #[arg(long, default_value_t = 10)]
    calls: usize,
    /// Calls placed per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// How many of the calls send a tone (each its own frequency); the rest send quiet noise.
    #[arg(long, default_value_t = 3)]
    talkers: usize,
    /// Steady-state window in seconds (all calls up) over which CPU is measured.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Seconds to wait after the last call is up before measuring.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// opus, pcmu or pcma.
    #[arg(long, default_value = "opus")]
    codec: Codec,
    #[arg(long, default_value_t = 20)]
    ptime: u32,
    /// Talkers' tone amplitude, of full scale.
    #[arg(long, default_value_t = 0.25)]
    amplitude: f32,
    /// The node's HTTP base (for /metrics and /api/conferences); "none" to skip.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
    /// The node's PID, to read its CPU from /proc (else process_cpu_seconds_total from /metrics).
    #[arg(long)]
    node_pid: Option<u32>,
    /// How many quiet legs decode and analyse what they hear (the talkers always do).
    #[arg(long, default_value_t = 5)]
    listen_sample: usize,
    /// Address to bind and to put in SIP/SDP.
    #[arg(long, default_value = "127.0.0.1")]
    local_ip: IpAddr,
    /// Runtime worker threads; 1 runs everything on one thread.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Display-name prefix of the synthetic rooms.
    #[arg(long, default_value = "loadtest")]
    name_prefix: String,
    /// Offer H.264 video on every call; each leg replays a pre-encoded clip.
    #[arg(long)]
    video: bool,
    /// Video picture size, WIDTHxHEIGHT (even sides).
    #[arg(long, default_value = "1280x720", value_parser = parse_size)]
    video_size: (u32, u32),
    #[arg(long, default_value_t = 30.0)]
    video_fps: f32,
    /// Video bitrate each leg sends, bit/s.
    #[arg(long, default_value_t = 1_500_000)]
    video_bitrate: u32,
    /// Pictures per clip; a leg sends a keyframe each time its clip loops.
    #[arg(long, default_value_t = 60)]
    video_clip_frames: usize,
    /// Distinct clips (one colour each); leg i replays clip i mod N.
    #[arg(long, default_value_t = 4)]
    video_clips: usize,
    /// How many legs decode the video the node sends them (the rest only count it).
    #[arg(long, default_value_t = 1)]
    video_decode_sample: usize,
    /// Save the last picture the first decoding leg saw here (PPM).
    #[arg(long)]
    video_snapshot: Option<PathBuf>,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{s}: expected WIDTHxHEIGHT"))?;
    let side = |v: &str| v.trim().parse::<u32>().map_err(|e| format!("{s}: {e}"));
    Ok((side(w)?, side(h)?))
}

/// Clip colours: far apart, and none near black or white (the node's empty
/// tiles and labels).
const VIDEO_COLOURS: [Rgb; 8] = [
    (200, 40, 40),
    (40, 170, 60),
    (50, 80, 210),
    (220, 190, 40),
    (170, 60, 190),
    (40, 180, 190),
    (230, 130, 40),
    (120, 120, 120),
];

/// Talkers' tones, all inside G.711's band, at least 150 Hz apart and at least
/// 60 Hz from every distortion product the others can make (harmonics 2–4,
/// a±b, 2a−b, a+b−c): codecs and limiters do make them, and an evenly spaced
/// set (400, 550, 700) puts 2·550−700 right on 400.
const TALKER_TONES: [f32; 7] = [400.0, 550.0, 860.0, 1470.0, 2140.0, 2870.0, 3120.0];

fn talker_tone(i: usize) -> f32 {
    TALKER_TONES[i]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.rate <= 0.0 || args.duration < 0.0 || args.calls == 0 {
        bail!("--calls must be > 0, --rate > 0 and --duration >= 0");
    }
    if args.talkers > TALKER_TONES.len() {
        bail!("at most {} talkers (distinct tones)", TALKER_TONES.len());
    }
    let clips = if args.video {
        encode_clips(&args)?
    } else {
        Vec::new()
    };
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(run(args, clips))
}

/// Encodes the clips the legs replay, before any call is placed (so the
/// encoding does not land in the node's measuring window).
fn encode_clips(args: &Args) -> anyhow::Result<Vec<Arc<VideoClip>>> {
    let count = args.video_clips.clamp(1, VIDEO_COLOURS.len());
    let (width, height) = args.video_size;
    let started = Instant::now();
    let clips = VIDEO_COLOURS[..count]
        .iter()
        .map(|&colour| {
            let spec = VideoSpec {
                colour,
                width,
                height,
                fps: args.video_fps,
                bitrate_bps: args.video_bitrate,
            };
            VideoClip::encode_ladder(&spec, args.video_clip_frames).map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()
        .context("encoding the video clips")?;
    let bytes: usize = clips.iter().map(|c| c.encoded_bytes()).sum();
    eprintln!(
        "encoded {count} clips of {} pictures at {width}x{height} in {:.1} s ({:.0} kbit/s on average)",
        args.video_clip_frames,
        started.elapsed().as_secs_f64(),
        bytes as f64 * 8.0 * f64::from(args.video_fps)
            / (count * args.video_clip_frames) as f64
            / 1000.0
    );
    Ok(clips)
}

/// Video counters summed over legs.
#[derive(Debug, Clone, Copy, Default)]
struct VideoTotals {
    legs: usize,
    legs_receiving: usize,
    packets_sent: u64,
    packets_received: u64,
    packets_lost: u64,
    keyframes_sent: u64,
    keyframes_received: u64,
    pli_received: u64,
    fir_received: u64,
    pli_sent: u64,
    access_units_received: u64,
    access_units_dropped: u64,
    frames_decoded: u64,
    decode_errors: u64,
}

impl VideoTotals {
    fn of(stats: &[VideoStats]) -> Self {
        let mut t = VideoTotals::default();
        for s in stats {
            t.legs += usize::from(s.answer.is_some());
            t.legs_receiving += usize::from(s.received.packets > 0);
            t.packets_sent += s.sent.packets;
            t.packets_received += s.received.packets;
            t.packets_lost += s.received.packets_lost;
            t.keyframes_sent += s.sent.keyframes;
            t.keyframes_received += s.received.keyframes;
            t.pli_received += s.sent.pli_received;
            t.fir_received += s.sent.fir_received;
            t.pli_sent += s.received.pli_sent;
            t.access_units_received += s.received.access_units;
            t.access_units_dropped += s.received.access_units_dropped;
            t.frames_decoded += s.received.frames_decoded;
            t.decode_errors += s.received.decode_errors;
        }
        t
    }

    /// What happened between two snapshots (of the same legs).
    fn since(self, before: VideoTotals) -> Self {
        VideoTotals {
            legs: self.legs,
            legs_receiving: self.legs_receiving,
            packets_sent: self.packets_sent.saturating_sub(before.packets_sent),
            packets_received: self
                .packets_received
                .saturating_sub(before.packets_received),
            packets_lost: self.packets_lost.saturating_sub(before.packets_lost),
            keyframes_sent: self.keyframes_sent.saturating_sub(before.keyframes_sent),
            keyframes_received: self
                .keyframes_received
                .saturating_sub(before.keyframes_received),
            pli_received: self.pli_received.saturating_sub(before.pli_received),
            fir_received: self.fir_received.saturating_sub(before.fir_received),
            pli_sent: self.pli_sent.saturating_sub(before.pli_sent),
            access_units_received: self
                .access_units_received
                .saturating_sub(before.access_units_received),
            access_units_dropped: self
                .access_units_dropped
                .saturating_sub(before.access_units_dropped),
            frames_decoded: self.frames_decoded.saturating_sub(before.frames_decoded),
            decode_errors: self.decode_errors.saturating_sub(before.decode_errors),
        }
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "legs_with_video": self.legs,
            "legs_receiving": self.legs_receiving,
            "packets_sent": self.packets_sent,
            "packets_received": self.packets_received,
            "packets_lost": self.packets_lost,
            "keyframes_sent": self.keyframes_sent,
            "keyframes_received": self.keyframes_received,
            "pli_received": self.pli_received,
            "fir_received": self.fir_received,
            "pli_sent": self.pli_sent,
            "access_units_received": self.access_units_received,
            "access_units_dropped": self.access_units_dropped,
            "frames_decoded": self.frames_decoded,
            "decode_errors": self.decode_errors,
        })
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct CpuSample {
    wall: Option<Instant>,
    node_metrics: Option<f64>,
    node_proc: Option<f64>,
    own: Option<f64>,
}

async fn sample_cpu(args: &Args) -> CpuSample {
    let node_metrics = if args.api == "none" {
        None
    } else {
        match node::http_get(&args.api, "/metrics").await {
            Ok((200, text)) => node::metric_value(&text, "process_cpu_seconds_total"),
            _ => None,
        }
    };
    CpuSample {
        wall: Some(Instant::now()),
        node_metrics,
        node_proc: args
            .node_pid
            .and_then(|p| node::process_cpu_seconds(p).ok()),
        own: node::own_cpu_seconds().ok(),
    }
}

fn rate(before: Option<f64>, after: Option<f64>, wall: f64) -> Option<f64> {
    Some((after? - before?) / wall).filter(|_| wall > 0.0)
}

/// Nearest-rank percentile of sorted milliseconds.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn distribution(mut ms: Vec<f64>) -> serde_json::Value {
    ms.sort_by(f64::total_cmp);
    json!({
        "n": ms.len(),
        "p50": percentile(&ms, 0.50),
        "p90": percentile(&ms, 0.90),
        "p99": percentile(&ms, 0.99),
        "max": ms.last(),
    })
}

fn fmt_dist(d: &serde_json::Value) -> String {
    let f = |k: &str| d[k].as_f64().map_or("-".to_owned(), |v| format!("{v:.1}"));
    format!(
        "p50 {} / p90 {} / p99 {} / max {} ms (n={})",
        f("p50"),
        f("p90"),
        f("p99"),
        f("max"),
        d["n"]
    )
}

async fn run(args: Args, clips: Vec<Arc<VideoClip>>) -> anyhow::Result<()> {
    let listeners = args.talkers + args.listen_sample;
    eprintln!(
        "placing {} calls to sip:{}@{} at {}/s ({} talkers, {} listening, {})",
        args.calls,
        args.conference,
        args.server,
        args.rate,
        args.talkers,
        listeners.min(args.calls),
        args.codec
    );

    // Place the calls at the requested rate; each call completes on its own.
    let placing_started = Instant::now();
    let mut placing = JoinSet::new();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    for i in 0..args.calls {
        ticker.tick().await;
        let mut cfg = RoomSystemConfig::new(
            args.server,
            args.conference.clone(),
            format!("{}-{i:04}", args.name_prefix),
        );
        cfg.local_ip = args.local_ip;
        cfg.codec = args.codec;
        cfg.ptime_ms = args.ptime;
        if i < args.talkers {
            cfg = cfg.with_tone(talker_tone(i), args.amplitude);
        }
        if !clips.is_empty() {
            cfg = cfg.with_video_replay(clips[i % clips.len()].clone());
        }
        let options = CallOptions {
            listen: i < listeners,
            decode_video: i < args.video_decode_sample,
            ..CallOptions::default()
        };
        placing.spawn(async move { (i, RoomSystem::call_with(cfg, options).await) });
    }
    let mut legs: Vec<Option<RoomSystem>> = (0..args.calls).map(|_| None).collect();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(joined) = placing.join_next().await {
        match joined.context("call task panicked")? {
            (i, Ok(room)) => legs[i] = Some(room),
            (_, Err(e)) => {
                let mut text = e.to_string();
                if text.contains("Too many open files") {
                    text.push_str(
                        " (raise `ulimit -n`: each leg uses two sockets, three with video)",
                    );
                }
                *failures.entry(text).or_default() += 1;
            }
        }
    }
    let ok = legs.iter().flatten().count();
    eprintln!(
        "{ok}/{} calls up after {:.1} s; holding {:.0} s (+{:.0} s settle)",
        args.calls,
        placing_started.elapsed().as_secs_f64(),
        args.duration,
        args.settle
    );

    // Steady state.
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    for leg in legs.iter().take(listeners).flatten() {
        leg.mark();
    }
    let video_stats = |legs: &[Option<RoomSystem>]| -> Vec<VideoStats> {
        legs.iter().flatten().map(RoomSystem::video_stats).collect()
    };
    let video_before = VideoTotals::of(&video_stats(&legs));
    let before = sample_cpu(&args).await;
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    let after = sample_cpu(&args).await;
    let video_end = video_stats(&legs);
    let video_window = VideoTotals::of(&video_end).since(video_before);
    let video_total = VideoTotals::of(&video_end);
    // What the decoding legs see.
    let mut seen_sizes: BTreeMap<String, usize> = BTreeMap::new();
    for s in video_end.iter().filter(|s| s.received.frames_decoded > 0) {
        if let Some((w, h)) = s.received.frame_size {
            *seen_sizes.entry(format!("{w}x{h}")).or_default() += 1;
        }
    }
    let mut snapshot = None;
    if let Some(path) = &args.video_snapshot {
        let first = legs
            .iter()
            .take(args.video_decode_sample)
            .flatten()
            .find(|l| l.seen().is_some());
        snapshot = Some(match first {
            Some(leg) => match leg.save_seen(path) {
                Ok(()) => format!("saved to {}", path.display()),
                Err(e) => format!("not saved: {e}"),
            },
            None => "not saved: no leg decoded a picture".to_owned(),
        });
    }
    let wall = match (before.wall, after.wall) {
        (Some(b), Some(a)) => (a - b).as_secs_f64(),
        _ => 0.0,
    };
    let (node_cores, cpu_source) = match (
        rate(before.node_proc, after.node_proc, wall),
        rate(before.node_metrics, after.node_metrics, wall),
    ) {
        (Some(c), _) => (Some(c), "proc"),
        (None, Some(c)) => (Some(c), "metrics"),
        (None, None) => (None, "unavailable"),
    };
    let own_cores = rate(before.own, after.own, wall);

    // Perception: every listener hears every talker but itself.
    let tones: Vec<(usize, f32)> = (0..args.talkers.min(args.calls))
        .map(|t| (t, talker_tone(t)))
        .collect();
    let (mut checks, mut passed) = (0usize, 0usize);
    let mut perception_failures = Vec::new();
    for (l, leg) in legs.iter().enumerate().take(listeners) {
        let Some(leg) = leg else { continue };
        let heard = leg.heard();
        for &(t, hz) in &tones {
            if legs[t].is_none() {
                continue;
            }
            let expect = l != t;
            checks += 1;
            if heard.contains(hz) == expect {
                passed += 1;
            } else {
                perception_failures.push(format!(
                    "leg {l} {} {hz} Hz (level {:.1} dBFS, floor {:.1} dBFS, heard {:.1} s)",
                    if expect {
                        "does not hear"
                    } else {
                        "hears its own"
                    },
                    heard.tone_level(hz),
                    heard.noise_floor(hz),
                    heard.duration().as_secs_f64()
                ));
            }
        }
    }

    // What the node says.
    let api_participants = if args.api == "none" {
        None
    } else {
        match node::http_get(&args.api, &format!("/api/conferences/{}", args.conference)).await {
            Ok((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|c| c["participants"].as_array().map(Vec::len)),
            _ => None,
        }
    };

    let stats: Vec<_> = legs.iter().flatten().map(RoomSystem::stats).collect();
    let join_ms = distribution(
        stats
            .iter()
            .map(|s| s.join_latency.as_secs_f64() * 1e3)
            .collect(),
    );
    let first_audio_ms = distribution(
        stats
            .iter()
            .filter_map(|s| s.first_audio_latency)
            .map(|d| d.as_secs_f64() * 1e3)
            .collect(),
    );
    let no_audio = stats
        .iter()
        .filter(|s| s.first_audio_latency.is_none())
        .count();
    let sent: u64 = stats.iter().map(|s| s.packets_sent).sum();
    let received: u64 = stats.iter().map(|s| s.packets_received).sum();
    let lost: u64 = stats.iter().map(|s| s.packets_lost).sum();
    let dropped_by_node = stats.iter().filter(|s| s.ended_by_remote).count();

    // Hang up everything at once; BYE retransmission covers a busy node.
    let mut hanging = JoinSet::new();
    for leg in legs.into_iter().flatten() {
        hanging.spawn(leg.hangup());
    }
    let (mut hangup_ok, mut hangup_failed) = (0usize, 0usize);
    while let Some(r) = hanging.join_next().await {
        match r {
            Ok(Ok(())) => hangup_ok += 1,
            _ => hangup_failed += 1,
        }
    }

    let participants_per_core = node_cores.filter(|&c| c > 1e-3).map(|c| ok as f64 / c);
    let cpu_per_participant = node_cores.filter(|_| ok > 0).map(|c| c / ok as f64);
    // Measured after the calls ended, so the node is idle and it has a core.
    let baseline = codec::raw_decode_legs_per_core(args.codec, args.ptime).ok();
    let ratio = participants_per_core.zip(baseline).map(|(p, b)| p / b);
    let video_baseline = clips
        .first()
        .and_then(|c| c.raw_decode_streams_per_core(Duration::from_secs(1)).ok());
    let video_ratio = participants_per_core
        .zip(video_baseline)
        .map(|(p, b)| p / b);
    let opt = |v: Option<f64>, unit: &str| {
        v.map_or("unavailable".to_owned(), |v| format!("{v:.3}{unit}"))
    };
    println!(
        "tandem-loadtest: {} calls into conference {} ({})",
        args.calls, args.conference, args.codec
    );
    println!("  calls ok {ok}, failed {}", args.calls - ok);
    for (why, n) in &failures {
        println!("    {n} x {why}");
    }
    println!("  join latency (INVITE -> 200 OK): {}", fmt_dist(&join_ms));
    println!(
        "  time to first audio:             {} ; {no_audio} legs heard no RTP",
        fmt_dist(&first_audio_ms)
    );
    println!(
        "  packets sent {sent}, received {received}, lost {lost} ({:.3}%)",
        if received + lost > 0 {
            lost as f64 * 100.0 / (received + lost) as f64
        } else {
            0.0
        }
    );
    println!(
        "  node CPU over {wall:.1} s: {} cores ({cpu_source})",
        opt(node_cores, "")
    );
    println!(
        "  participants per core: {}; node CPU per participant: {}",
        opt(participants_per_core, ""),
        opt(cpu_per_participant.map(|c| c * 100.0), "% of a core")
    );
    println!(
        "  baseline, same run: raw libopus 48 kHz decode of every leg alone: {} legs per core; ratio {}",
        opt(baseline, ""),
        opt(ratio, "x")
    );
    if args.video {
        let (w, h) = args.video_size;
        let v = &video_window;
        println!(
            "  video ({w}x{h} @ {} fps, {} kbit/s, {} clips): {}/{ok} legs accepted, {} receiving",
            args.video_fps,
            args.video_bitrate / 1000,
            clips.len(),
            video_total.legs,
            video_total.legs_receiving
        );
        println!(
            "    over the window: packets sent {}, received {}, lost {}; access units {} whole, {} dropped",
            v.packets_sent,
            v.packets_received,
            v.packets_lost,
            v.access_units_received,
            v.access_units_dropped
        );
        println!(
            "    keyframes: node sent {} ({:.2}/s per leg), we sent {}; PLI from node {}, FIR from node {}, PLI to node {}",
            v.keyframes_received,
            v.keyframes_received as f64 / wall.max(1e-9) / ok.max(1) as f64,
            v.keyframes_sent,
            v.pli_received,
            v.fir_received,
            v.pli_sent
        );
        println!(
            "    decoding legs ({}): {} pictures ({:.1} fps per leg), {} decode errors, sizes {:?}",
            args.video_decode_sample.min(ok),
            v.frames_decoded,
            v.frames_decoded as f64
                / wall.max(1e-9)
                / args.video_decode_sample.clamp(1, ok.max(1)) as f64,
            v.decode_errors,
            seen_sizes
        );
        println!(
            "    baseline, same run: raw OpenH264 decode of one leg's clip: {} streams per core; ratio {}",
            opt(video_baseline, ""),
            opt(video_ratio, "x")
        );
        if let Some(s) = &snapshot {
            println!("    snapshot {s}");
        }
    }
    println!("  loadtest's own CPU: {} cores", opt(own_cores, ""));
    println!(
        "  perception: {passed}/{checks} checks passed (each listener hears each other talker, not itself)"
    );
    for f in &perception_failures {
        println!("    {f}");
    }
    println!(
        "  node API participants: {}; legs the node hung up: {dropped_by_node}; hangups ok {hangup_ok}, failed {hangup_failed}",
        api_participants.map_or("unavailable".to_owned(), |n| n.to_string())
    );
    let report = json!({
        "calls": args.calls,
        "ok": ok,
        "failed": args.calls - ok,
        "failures": failures,
        "codec": args.codec.to_string(),
        "join_ms": join_ms,
        "first_audio_ms": first_audio_ms,
        "legs_without_audio": no_audio,
        "packets_sent": sent,
        "packets_received": received,
        "packets_lost": lost,
        "window_s": wall,
        "node_cores": node_cores,
        "node_cpu_source": cpu_source,
        "participants_per_core": participants_per_core,
        "node_cores_per_participant": cpu_per_participant,
        "baseline_raw_decode_legs_per_core": baseline,
        "ratio_to_baseline": ratio,
        "loadtest_cores": own_cores,
        "perception": {"checks": checks, "passed": passed, "failures": perception_failures},
        "api_participants": api_participants,
        "ended_by_node": dropped_by_node,
        "hangups": {"ok": hangup_ok, "failed": hangup_failed},
        "video": if args.video {
            json!({
                "width": args.video_size.0,
                "height": args.video_size.1,
                "fps": args.video_fps,
                "bitrate_bps": args.video_bitrate,
                "clips": clips.len(),
                "window": video_window.json(),
                "total": video_total.json(),
                "decoded_sizes": seen_sizes,
                "baseline_raw_decode_streams_per_core": video_baseline,
                "ratio_to_video_baseline": video_ratio,
                "snapshot": snapshot,
            })
        } else {
            serde_json::Value::Null
        },
    });
    println!("{report}");
    if ok == 0 {
        bail!("no call was established");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&[7.0], 0.9), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn talker_tones_avoid_each_others_distortion_products() {
        let t = TALKER_TONES;
        for (i, &x) in t.iter().enumerate() {
            let others: Vec<f32> = t.iter().copied().filter(|&y| y != x).collect();
            let mut products = Vec::new();
            for &a in &others {
                products.extend([2.0 * a, 3.0 * a, 4.0 * a]);
                for &b in others.iter().filter(|&&b| b != a) {
                    products.extend([2.0 * a - b, a + b, (a - b).abs()]);
                    for &c in others.iter().filter(|&&c| c != a && c != b) {
                        products.push(a + b - c);
                    }
                }
            }
            let near: Vec<&f32> = products.iter().filter(|p| (*p - x).abs() < 60.0).collect();
            assert!(near.is_empty(), "{x}: {near:?}");
            assert!(t[i + 1..].iter().all(|&y| y - x >= 150.0));
        }
    }

    #[test]
    fn cli_parses_the_documented_invocation() {
        let a = Args::try_parse_from([
            "tandem-loadtest",
            "--server",
            "127.0.0.1:5060",
            "--conference",
            "1000",
            "--calls",
            "300",
            "--rate",
            "20",
            "--talkers",
            "3",
            "--duration",
            "30",
            "--codec",
            "opus",
            "--api",
            "http://127.0.0.1:8080",
            "--node-pid",
            "42",
        ])
        .expect("parse");
        assert_eq!(
            (a.calls, a.talkers, a.node_pid, a.codec),
            (300, 3, Some(42), Codec::Opus)
        );
        assert!(!a.video);
    }

    #[test]
    fn cli_parses_video_options() {
        let a = Args::try_parse_from([
            "tandem-loadtest",
            "--video",
            "--video-size",
            "640x360",
            "--video-fps",
            "15",
            "--video-decode-sample",
            "2",
        ])
        .expect("parse");
        assert!(a.video);
        assert_eq!(
            (a.video_size, a.video_fps, a.video_decode_sample),
            ((640, 360), 15.0, 2)
        );
        assert_eq!(a.video_clip_frames, 60);
        assert!(Args::try_parse_from(["tandem-loadtest", "--video-size", "640"]).is_err());
        assert!(Args::try_parse_from(["tandem-loadtest", "--video-size", "axb"]).is_err());
    }

    #[test]
    fn video_totals_sum_and_subtract() {
        let mut s = VideoStats::default();
        s.sent.packets = 10;
        s.received.keyframes = 2;
        s.received.packets = 5;
        let one = VideoTotals::of(std::slice::from_ref(&s));
        s.sent.packets = 25;
        s.received.keyframes = 3;
        let two = VideoTotals::of(&[s.clone(), s]);
        let d = two.since(one);
        assert_eq!(
            (d.packets_sent, d.keyframes_received, d.legs_receiving),
            (40, 4, 2)
        );
    }
}
