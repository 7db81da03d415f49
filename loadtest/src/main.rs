//! `tandem-loadtest`: places N synthetic room-system calls into one conference
//! at a given rate, holds them for a steady-state window, measures the node's
//! CPU over that window, checks that every talker is heard, hangs up, and
//! reports — as text, then as one JSON line.
//!
//! The loadtest shares the machine with the node, so it stays lean: one tokio
//! runtime (one thread unless `--threads`), real encoding only for talkers
//! (quiet legs replay one canned second of encoded noise), decoding only on
//! the talkers and `--listen-sample` quiet legs. Its own CPU is reported too.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::json;
use tandem_loadtest::{CallOptions, Codec, RoomSystem, RoomSystemConfig, codec, node};
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
}

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
    runtime.block_on(run(args))
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

async fn run(args: Args) -> anyhow::Result<()> {
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
        let options = CallOptions {
            listen: i < listeners,
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
                    text.push_str(" (raise `ulimit -n`: each leg uses two sockets)");
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
    let before = sample_cpu(&args).await;
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    let after = sample_cpu(&args).await;
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
    // Measured after the calls ended, so the node is idle and it has a core.
    let baseline = codec::raw_decode_legs_per_core(args.codec, args.ptime).ok();
    let ratio = participants_per_core.zip(baseline).map(|(p, b)| p / b);
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
        "  participants per core: {}",
        opt(participants_per_core, "")
    );
    println!(
        "  baseline, same run: raw libopus 48 kHz decode of every leg alone: {} legs per core; ratio {}",
        opt(baseline, ""),
        opt(ratio, "x")
    );
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
        "baseline_raw_decode_legs_per_core": baseline,
        "ratio_to_baseline": ratio,
        "loadtest_cores": own_cores,
        "perception": {"checks": checks, "passed": passed, "failures": perception_failures},
        "api_participants": api_participants,
        "ended_by_node": dropped_by_node,
        "hangups": {"ok": hangup_ok, "failed": hangup_failed},
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
    }
}
