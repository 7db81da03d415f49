//! Video cost, against raw OpenH264 measured in the same run.
//!
//! - raw (the baseline): OpenH264 720p encode and decode, frames per second
//!   on one core, of the same camera-like pictures the conference uses;
//!   measured at the start and again right before and after each
//!   conference run, whose ratios use the mean of those two.
//! - conference: a 20-party 720p30 continuous-presence conference run
//!   in-process, the way the bridge drives the mixer. 20 sources, each a
//!   pre-encoded 720p H.264 stream (a textured box moving over a noisy
//!   gradient, a distinct colour per source, faint sensor noise; encoded
//!   once before timing, 2 s loops starting on an IDR), 20 receivers at
//!   720p, layout 1+7 and 4x4, the speaker changing every 3 s. Per tick
//!   only the visible sources are decoded (`visible_sources()`, with
//!   `decode_many` on the mixer's threads), their pictures pushed, the
//!   mixer ticked; a source that enters a pane restarts on its IDR, as a
//!   sender asked for a keyframe would. Reported: real-time factor (wall
//!   clock), CPU seconds per media second (= cores the conference needs;
//!   process CPU from /proc/self/stat), CPU per participant and HD ports
//!   per core, encoders against participants and whether they stay within
//!   1 + visible, and the ratio of the measured cost to what the same
//!   encodes and decodes would cost at the raw rates. Run with the default
//!   thread count and with 1 (the work itself, without contention between
//!   the threads).
//! - first-version figures: one 720p view's compose + encode rate as the
//!   first version of this bench measured it (moving stripes, 360p
//!   sources, one thread), kept for comparison with earlier runs, and
//!   encoders for 20 receivers at one class.
//!
//! `cargo bench -p tandem-mixer --bench video [-- --quick] [-- --sweep]`:
//! `--quick` halves the timed runs; `--sweep` adds the OpenH264 settings
//! sweep (encode speed, size and PSNR per encoder setting) and the scaler
//! comparison; `--conference-only`, `--layout 1+7`, `--threads N` and
//! `--adaptive-only` narrow the run down for profiling.
//!
//! Senders follow the mixer's resolution requests (the bridge sends them
//! TMMBR): a source shown only in 320x180 panes sends 180p, the one in the
//! large pane 720p, switching on an IDR. One run per layout keeps every
//! sender at 720p, for comparison, as senders that ignore TMMBR would.
//!
//! Rates on one core are per CPU second of the measuring thread, and the
//! conference's cost is process CPU time, so that other work on a shared
//! machine skews them less; the real-time factor is wall-clock and does.
//!
//! Plain `main` (harness = false) so that the whole run stays around a
//! minute and a half on two cores. Wall-clock reads are what a benchmark is
//! for; the core itself never reads the clock (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use openh264::OpenH264API;
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, IntraFramePeriod, Profile,
    RateControlMode, UsageType,
};
use openh264::formats::YUVSlices;
use tandem_mixer::ParticipantId;
use tandem_mixer::video::compose::{Compositor, PaneContent, scale_to};
use tandem_mixer::video::frame::{Rgb, rgb_to_yuv};
use tandem_mixer::video::scale::Scaler;
use tandem_mixer::video::{
    DecodeJob, EncoderSettings, I420Frame, Layout, LayoutChoice, ReceiverSettings, Rect,
    ResolutionClass, VideoConfig, VideoDecoder, VideoEncoder, VideoMixer, decode_many,
};

const PARTIES: u64 = 20;
const FPS: f64 = 30.0;
/// Frames per pre-encoded source loop (2 s; the loop restarts on its IDR).
const LOOP: usize = 60;
/// Each rate measurement runs at least this many frames and this long.
const MIN_FRAMES: usize = 30;

struct Args {
    quick: bool,
    sweep: bool,
    /// Only the conference runs (for profiling).
    conference_only: bool,
    /// Only this layout's conference.
    layout: Option<Layout>,
    /// Mixer threads instead of the default (and 1).
    threads: Option<usize>,
    /// Skip the comparison run with every sender at 720p.
    adaptive_only: bool,
}

impl Args {
    fn parse() -> Args {
        let args: Vec<String> = std::env::args().collect();
        let has = |flag: &str| args.iter().any(|a| a == flag);
        let value = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
        };
        Args {
            quick: has("--quick"),
            sweep: has("--sweep"),
            conference_only: has("--conference-only"),
            layout: value("--layout").map(|l| l.parse().unwrap()),
            threads: value("--threads").map(|t| t.parse().unwrap()),
            adaptive_only: has("--adaptive-only"),
        }
    }

    fn min_time(&self) -> Duration {
        Duration::from_millis(if self.quick { 1500 } else { 3000 })
    }

    /// Timed conference ticks per run.
    fn conference_ticks(&self) -> u64 {
        if self.quick { 90 } else { 180 }
    }
}

// --- synthetic camera -------------------------------------------------------

fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// A distinct colour per source.
fn source_colour(p: u64) -> Rgb {
    let h = mix64(p * 0x9E37);
    Rgb(
        (h % 160) as u8 + 60,
        ((h >> 8) % 160) as u8 + 60,
        ((h >> 16) % 160) as u8 + 60,
    )
}

/// A camera-like source: a static textured background and a textured
/// "person" moving smoothly (one period per loop, so the loop is seamless).
struct Camera {
    w: u32,
    h: u32,
    p: u64,
    background: I420Frame,
    person: Rgb,
}

impl Camera {
    fn new(w: u32, h: u32, p: u64) -> Camera {
        let tint = source_colour(p);
        let mut background = I420Frame::solid(w, h, tint).unwrap();
        let (y, _, _) = background.planes_mut();
        let base = rgb_to_yuv(tint).0 as i32;
        for row in 0..h {
            for col in 0..w {
                let i = (row * w + col) as usize;
                let grad = (col * 50 / w + row * 30 / h) as i32 - 40;
                let tex = (mix64(p << 40 ^ u64::from(row) << 20 ^ u64::from(col)) % 33) as i32 - 16;
                y[i] = (base + grad + tex).clamp(16, 235) as u8;
            }
        }
        let c = source_colour(p + 1000);
        Camera {
            w,
            h,
            p,
            background,
            person: Rgb(255 - c.0 / 2, c.1 / 2, c.2),
        }
    }

    fn picture(&self, t: usize) -> I420Frame {
        let (w, h) = (self.w, self.h);
        let mut f = self.background.clone();
        let phase = t as f64 / LOOP as f64 * std::f64::consts::TAU;
        let (bw, bh) = ((w / 4) & !1, (h * 5 / 9) & !1);
        let bx = ((f64::from(w - bw) / 2.0) * (1.0 + 0.6 * phase.sin())) as u32 & !1;
        let by =
            ((f64::from(h - bh) * 0.7) + f64::from(h) * 0.05 * (2.0 * phase).sin()) as u32 & !1;
        f.fill_rect(Rect::new(bx, by, bw, bh), self.person);
        let person_luma = i32::from(rgb_to_yuv(self.person).0);
        let mut noise = mix64(self.p ^ (t as u64) << 32) | 1;
        let (y, _, _) = f.planes_mut();
        for row in 0..h {
            for col in 0..w {
                let i = (row * w + col) as usize;
                let mut v = i32::from(y[i]);
                if (bx..bx + bw).contains(&col) && (by..by + bh).contains(&row) {
                    // Texture that moves with the box: something to track.
                    let (lx, ly) = (col - bx, row - by);
                    v = person_luma
                        + if (lx / 12 + ly / 12) % 2 == 0 {
                            30
                        } else {
                            -30
                        };
                }
                // Faint sensor noise, new every frame.
                noise ^= noise << 13;
                noise ^= noise >> 7;
                noise ^= noise << 17;
                v += (noise >> 62) as i32 - 1;
                y[i] = v.clamp(16, 235) as u8;
            }
        }
        f
    }
}

/// One source: its pictures (for the raw baseline), its 720p stream, and
/// the same camera at 360p and 180p, which it switches to (on an IDR) when
/// the mixer asks for less, as a sender answering TMMBR does.
struct Source {
    pictures: Vec<I420Frame>,
    stream: Vec<Vec<u8>>,
    smaller: [Vec<Vec<u8>>; 2],
}

impl Source {
    fn stream(&self, class: ResolutionClass) -> &[Vec<u8>] {
        match class {
            ResolutionClass::Hd720 => &self.stream,
            ResolutionClass::Sd360 => &self.smaller[0],
            ResolutionClass::Low180 => &self.smaller[1],
        }
    }
}

/// Pixels of a class as a fraction of 720p's (decode cost scales with it).
fn hd_fraction(class: ResolutionClass) -> f64 {
    let (w, h) = class.size();
    f64::from(w * h) / (1280.0 * 720.0)
}

fn make_sources(n: u64, threads: usize) -> Vec<Source> {
    let encode = |class: ResolutionClass, pictures: &[I420Frame]| -> Vec<Vec<u8>> {
        let (w, h) = class.size();
        let mut enc = VideoEncoder::new(EncoderSettings::new(
            w,
            h,
            30.0,
            class.default_bitrate_bps(),
        ))
        .unwrap();
        pictures
            .iter()
            .map(|pic| enc.encode(pic, false).unwrap().annexb)
            .collect()
    };
    let make = |p: u64| {
        let camera = |class: ResolutionClass| {
            let (w, h) = class.size();
            let cam = Camera::new(w, h, p);
            (0..LOOP).map(|t| cam.picture(t)).collect::<Vec<_>>()
        };
        let pictures = camera(ResolutionClass::Hd720);
        let stream = encode(ResolutionClass::Hd720, &pictures);
        let smaller = [ResolutionClass::Sd360, ResolutionClass::Low180]
            .map(|class| encode(class, &camera(class)));
        Source {
            pictures,
            stream,
            smaller,
        }
    };
    let ids: Vec<u64> = (1..=n).collect();
    let chunks: Vec<Vec<u64>> = ids
        .chunks(ids.len().div_ceil(threads.max(1)))
        .map(<[u64]>::to_vec)
        .collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|c| s.spawn(move || c.into_iter().map(make).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

// --- measuring ----------------------------------------------------------------

/// Minor page faults of this process so far (field 10 of /proc/self/stat):
/// fresh big allocations show up here.
fn process_minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    rest.split_whitespace()
        .nth(10 - 3)
        .unwrap()
        .parse()
        .unwrap()
}

/// User + system CPU seconds of this process (all threads, dead ones too).
fn process_cpu_seconds() -> f64 {
    // Fields restart after the last ')'; utime and stime are fields 14 and
    // 15, in USER_HZ (100 on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |n: usize| f[n - 3].parse::<f64>().unwrap();
    (ticks(14) + ticks(15)) / 100.0
}

/// CPU seconds the calling thread has run, from /proc/thread-self/schedstat
/// (nanoseconds): a rate per CPU second does not drop when other processes
/// take the cores, as a rate per wall second would on a shared machine.
fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    let ns: u64 = stat.split_whitespace().next().unwrap().parse().unwrap();
    ns as f64 / 1e9
}

/// Runs `step` on this thread until both minimums are met (CPU time);
/// returns iterations per CPU second.
fn rate(min_time: Duration, mut step: impl FnMut(usize)) -> f64 {
    let start = thread_cpu_seconds();
    let min = min_time.as_secs_f64();
    let mut n = 0;
    loop {
        step(n);
        n += 1;
        let spent = thread_cpu_seconds() - start;
        if n >= MIN_FRAMES && spent >= min {
            return n as f64 / spent;
        }
    }
}

// --- the conference -------------------------------------------------------------

struct ConferenceRun {
    ticks: u64,
    wall: f64,
    cpu: f64,
    decodes: u64,
    /// Decoded pixels in 720p pictures (a 180p picture counts 1/16).
    decoded_hd: f64,
    /// Decodes per class, 720p first.
    decodes_by_class: [u64; 3],
    encodes: u64,
    max_encoders: usize,
    max_visible: usize,
    keyframes: u64,
    bytes: u64,
    panes_drawn: u64,
    panes_unchanged: u64,
    /// CPU seconds (all threads) and wall seconds spent decoding.
    decode_cpu: f64,
    decode_wall: f64,
    minor_faults: u64,
}

/// `adaptive`: senders follow the mixer's `take_source_class_requests`
/// (the bridge sends them TMMBR); otherwise every sender stays at 720p.
fn run_conference(
    sources: &[Source],
    layout: Layout,
    threads: usize,
    ticks: u64,
    adaptive: bool,
) -> ConferenceRun {
    let mut m = VideoMixer::new(VideoConfig {
        threads,
        ..VideoConfig::default()
    })
    .unwrap();
    let ids: Vec<ParticipantId> = (1..=PARTIES).map(ParticipantId).collect();
    for &id in &ids {
        m.add_participant(id, &format!("Party {}", id.0)).unwrap();
        m.set_receiver(
            id,
            ReceiverSettings {
                layout: LayoutChoice::Fixed(layout),
                class: ResolutionClass::Hd720,
                presentation_in_layout: false,
            },
        );
    }
    let mut order = ids.clone();
    m.set_speaker_order(&order);
    let mut decoders: Vec<Option<VideoDecoder>> = ids.iter().map(|_| None).collect();
    let mut position = vec![0usize; ids.len()];
    let mut class = vec![ResolutionClass::Hd720; ids.len()];
    let speaker_every = 90;
    let warmup = 10;

    let mut run = ConferenceRun {
        ticks,
        wall: 0.0,
        cpu: 0.0,
        decodes: 0,
        decoded_hd: 0.0,
        decodes_by_class: [0; 3],
        encodes: 0,
        max_encoders: 0,
        max_visible: 0,
        keyframes: 0,
        bytes: 0,
        panes_drawn: 0,
        panes_unchanged: 0,
        decode_cpu: 0.0,
        decode_wall: 0.0,
        minor_faults: 0,
    };
    let mut start = (Instant::now(), process_cpu_seconds());
    let mut faults_at_start = process_minor_faults();
    let mut stats_at_start = m.stats();
    for t in 0..warmup + ticks {
        if t == warmup {
            start = (Instant::now(), process_cpu_seconds());
            faults_at_start = process_minor_faults();
            stats_at_start = m.stats();
        }
        if t > 0 && t % speaker_every == 0 {
            // Someone from a small pane (or beyond) takes the floor.
            let next = order[(t / speaker_every) as usize % 11 + 1];
            order.retain(|&id| id != next);
            order.insert(0, next);
            m.set_speaker_order(&order);
        }
        // Senders asked for a keyframe answer with one: their loop restarts
        // at its IDR, and our decoder for them starts afresh.
        for id in m.take_source_keyframe_requests() {
            let i = (id.0 - 1) as usize;
            position[i] = 0;
            decoders[i] = Some(VideoDecoder::new().unwrap());
        }
        // Senders asked for another resolution switch to it on an IDR.
        for (id, wanted) in m.take_source_class_requests() {
            let i = (id.0 - 1) as usize;
            if adaptive && class[i] != wanted {
                class[i] = wanted;
                position[i] = 0;
            }
        }
        let visible: BTreeSet<ParticipantId> = m.visible_sources().clone();
        let decode_start = (Instant::now(), process_cpu_seconds());
        // The visible sources' access units of this tick, decoded on the
        // mixer's threads (as the bridge can with `decode_many`).
        let mut jobs = Vec::new();
        for ((i, &id), dec) in ids.iter().enumerate().zip(decoders.iter_mut()) {
            let au = &sources[i].stream(class[i])[position[i] % LOOP];
            position[i] += 1;
            if !visible.contains(&id) || au.is_empty() {
                continue;
            }
            if let Some(dec) = dec.as_mut() {
                if t >= warmup {
                    run.decoded_hd += hd_fraction(class[i]);
                    let k = ResolutionClass::ALL.iter().position(|c| *c == class[i]);
                    run.decodes_by_class[k.unwrap_or(0)] += 1;
                }
                jobs.push((id, DecodeJob::new(dec, au)));
            }
        }
        let mut batch: Vec<DecodeJob<'_>> = Vec::with_capacity(jobs.len());
        let mut who = Vec::with_capacity(jobs.len());
        for (id, job) in jobs {
            who.push(id);
            batch.push(job);
        }
        decode_many(&mut batch, threads);
        if t >= warmup {
            run.decodes += batch.len() as u64;
        }
        for (id, job) in who.into_iter().zip(batch) {
            if let Some(frame) = job.result.unwrap().unwrap() {
                m.push_source_frame(id, frame).unwrap();
            }
        }
        if t >= warmup {
            run.decode_wall += decode_start.0.elapsed().as_secs_f64();
            run.decode_cpu += process_cpu_seconds() - decode_start.1;
        }
        let out = m.tick().unwrap();
        if t >= warmup {
            run.encodes += out.len() as u64;
            run.bytes += out
                .iter()
                .map(|o| o.encoded.annexb.len() as u64)
                .sum::<u64>();
            run.max_encoders = run.max_encoders.max(m.stats().encoders);
            run.max_visible = run.max_visible.max(m.visible_sources().len());
        }
        black_box(out);
    }
    run.wall = start.0.elapsed().as_secs_f64();
    run.cpu = process_cpu_seconds() - start.1;
    run.minor_faults = process_minor_faults() - faults_at_start;
    let stats = m.stats();
    run.keyframes = stats.keyframes - stats_at_start.keyframes;
    run.panes_drawn = stats.panes_drawn - stats_at_start.panes_drawn;
    run.panes_unchanged = stats.panes_unchanged - stats_at_start.panes_unchanged;
    run
}

fn report_conference(layout: Layout, threads: usize, adaptive: bool, r: &ConferenceRun, raw: &Raw) {
    let media = r.ticks as f64 / FPS;
    let cores = r.cpu / media;
    let per_tick = |n: u64| n as f64 / r.ticks as f64;
    let model = r.decoded_hd / media / raw.decode_fps + r.encodes as f64 / media / raw.encode_fps;
    let bound = 1 + layout.pane_count().min(PARTIES as usize - 1);
    println!(
        "  {layout:>4} threads {threads}, {}: {media:.1} s media in {:.2} s wall = real-time \
         factor {:.2}x ({}; wall decoding {:.2} s, mixer ticks {:.2} s)",
        if adaptive {
            "senders sized to their panes (TMMBR)"
        } else {
            "senders all at 720p"
        },
        r.wall,
        media / r.wall,
        if media / r.wall >= 1.0 {
            "keeps up"
        } else {
            "falls behind"
        },
        r.decode_wall,
        r.wall - r.decode_wall,
    );
    println!(
        "      CPU {:.2} s = {cores:.2} cores per conference ({}, target <= 2 cores); \
         {:.3} cores per participant = {:.1} HD ports per core",
        r.cpu,
        if cores <= 2.0 { "fits" } else { "over" },
        cores / PARTIES as f64,
        PARTIES as f64 / cores,
    );
    let [hd, sd, low] = r.decodes_by_class.map(per_tick);
    println!(
        "      per tick {:.1} decodes ({hd:.1} at 720p, {sd:.1} at 360p, {low:.1} at 180p = \
         {:.1} in 720p pixels) + {:.1} encodes; at the raw 720p rates around this run (encode \
         {:.0} fps, decode {:.0} fps) that is {model:.2} cores: measured/raw-model {:.2}x",
        per_tick(r.decodes),
        r.decoded_hd / r.ticks as f64,
        per_tick(r.encodes),
        raw.encode_fps,
        raw.decode_fps,
        cores / model
    );
    println!(
        "      of which decoding {:.2} cores ({:.0} 720p-pixel decodes per CPU second, {:.2}x raw), \
         mixer tick {:.2} cores ({:.0} views per CPU second, {:.2}x raw encode)",
        r.decode_cpu / media,
        r.decoded_hd / r.decode_cpu,
        r.decoded_hd / r.decode_cpu / raw.decode_fps,
        (r.cpu - r.decode_cpu) / media,
        r.encodes as f64 / (r.cpu - r.decode_cpu),
        r.encodes as f64 / (r.cpu - r.decode_cpu) / raw.encode_fps,
    );
    println!(
        "      encoders {} for {PARTIES} participants, {} visible: {} (bound 1 + visible = {bound}); \
         {:.0} kbit/s per view, {} keyframes, panes drawn {} / unchanged {}, {:.0} page faults \
         per tick",
        r.max_encoders,
        r.max_visible,
        if r.max_encoders <= bound {
            "within"
        } else {
            "OVER"
        },
        r.bytes as f64 * 8.0 / media / per_tick(r.encodes).max(1.0) / 1000.0,
        r.keyframes,
        r.panes_drawn,
        r.panes_unchanged,
        r.minor_faults as f64 / r.ticks as f64,
    );
}

// --- raw baseline ----------------------------------------------------------------

struct Raw {
    encode_fps: f64,
    decode_fps: f64,
}

fn raw_baseline(src: &Source, min_time: Duration) -> Raw {
    let (w, h) = ResolutionClass::Hd720.size();
    let bitrate = ResolutionClass::Hd720.default_bitrate_bps();
    let mut enc = VideoEncoder::new(EncoderSettings::new(w, h, 30.0, bitrate)).unwrap();
    let encode_fps = rate(min_time, |i| {
        black_box(enc.encode(&src.pictures[i % LOOP], false).unwrap());
    });
    let stream: Vec<&Vec<u8>> = src.stream.iter().filter(|au| !au.is_empty()).collect();
    let mut dec = VideoDecoder::new().unwrap();
    let decode_fps = rate(min_time, |i| {
        if i > 0 && i % stream.len() == 0 {
            dec = VideoDecoder::new().unwrap();
        }
        black_box(dec.decode(stream[i % stream.len()]).unwrap());
    });
    Raw {
        encode_fps,
        decode_fps,
    }
}

// --- OpenH264 settings sweep --------------------------------------------------------

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = f64::from(x) - f64::from(y);
            d * d
        })
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0 * 255.0 / mse.max(1e-9)).log10()
}

fn sweep(sources: &[Source], min_time: Duration) {
    let (w, h) = ResolutionClass::Hd720.size();
    // 1+7 views composed from the raw pictures, and one camera.
    let panes = Layout::OnePlus7.panes(w, h);
    let mut compositor = Compositor::new();
    let views: Vec<I420Frame> = (0..LOOP)
        .map(|t| {
            compositor.clear_cache();
            let contents: Vec<PaneContent<'_>> = sources
                .iter()
                .take(panes.len())
                .enumerate()
                .map(|(i, s)| PaneContent::Video {
                    source: ParticipantId(i as u64),
                    seq: t as u64,
                    frame: &s.pictures[t],
                    name: "Someone",
                })
                .collect();
            let mut canvas = I420Frame::black(w, h).unwrap();
            compositor.compose(&mut canvas, &panes, &contents).unwrap();
            canvas
        })
        .collect();
    let base = || {
        EncoderConfig::new()
            .profile(Profile::Baseline)
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(1_500_000))
            .max_frame_rate(FrameRate::from_hz(30.0))
            .skip_frames(true)
            .intra_frame_period(IntraFramePeriod::from_num_frames(0))
            .num_threads(1)
    };
    let configs: Vec<(&str, EncoderConfig)> = vec![
        ("defaults (medium, scd, bgd, aq)", base()),
        ("low complexity", base().complexity(Complexity::Low)),
        ("medium, no scene-change", base().scene_change_detect(false)),
        ("medium, no background", base().background_detection(false)),
        (
            "medium, no adaptive quant",
            base().adaptive_quantization(false),
        ),
        (
            "low, no scene-change",
            base()
                .complexity(Complexity::Low)
                .scene_change_detect(false),
        ),
        (
            "low, no scd, no bgd",
            base()
                .complexity(Complexity::Low)
                .scene_change_detect(false)
                .background_detection(false),
        ),
        (
            "low, no scd, no aq",
            base()
                .complexity(Complexity::Low)
                .scene_change_detect(false)
                .adaptive_quantization(false),
        ),
        (
            "low, no scd, no bgd, no aq",
            base()
                .complexity(Complexity::Low)
                .scene_change_detect(false)
                .background_detection(false)
                .adaptive_quantization(false),
        ),
    ];
    let mut first = None;
    for (content, pictures) in [("1+7 view", &views), ("camera", &sources[0].pictures)] {
        println!("  content: {content}");
        for (name, config) in &configs {
            let mut enc = Encoder::with_api_config(OpenH264API::from_source(), *config).unwrap();
            let encode = |enc: &mut Encoder, pic: &I420Frame| -> Vec<u8> {
                let (w, h) = (pic.width() as usize, pic.height() as usize);
                let src = YUVSlices::new((pic.y(), pic.u(), pic.v()), (w, h), (w, w / 2, w / 2));
                enc.encode(&src).unwrap().to_vec()
            };
            // Quality and size over two loops, from a fresh decoder.
            let mut dec = VideoDecoder::new().unwrap();
            let (mut bytes, mut skipped, mut psnr_sum, mut last) = (0usize, 0, 0.0, None);
            for i in 0..2 * LOOP {
                let pic = &pictures[i % LOOP];
                let au = encode(&mut enc, pic);
                bytes += au.len();
                if au.is_empty() {
                    skipped += 1;
                } else if let Some(d) = dec.decode(&au).unwrap() {
                    last = Some(d);
                }
                if let Some(d) = &last {
                    psnr_sum += psnr(d.y(), pic.y());
                }
            }
            let fps = rate(min_time / 2, |i| {
                black_box(encode(&mut enc, &pictures[i % LOOP]));
            });
            let baseline = *first.get_or_insert(fps);
            println!(
                "    {name:<34} {fps:6.1} fps ({:.2}x)  {:5.0} kbit/s  {skipped:3} skipped  \
                 PSNR-Y {:.2} dB",
                fps / baseline,
                bytes as f64 * 8.0 * FPS / (2 * LOOP) as f64 / 1000.0,
                psnr_sum / (2 * LOOP) as f64
            );
        }
        first = None;
    }
    // Scaling a 720p source into panes: filters, cost and fidelity (PSNR
    // against a Lanczos3 reference).
    use fast_image_resize::images::{Image, ImageRef};
    use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
    let src = &sources[0].pictures[0];
    let scale_y = |resizer: &mut Resizer, alg: ResizeAlg, w: u32, h: u32| -> Vec<u8> {
        let img = ImageRef::new(src.width(), src.height(), src.y(), PixelType::U8).unwrap();
        let mut dst = Image::new(w, h, PixelType::U8);
        let options = ResizeOptions::new()
            .resize_alg(alg)
            .fit_into_destination(Some((0.5, 0.5)));
        resizer.resize(&img, &mut dst, &options).unwrap();
        dst.into_vec()
    };
    let mut resizer = Resizer::new();
    for (w, h) in [(320u32, 180u32), (960, 540), (426, 240)] {
        let reference = scale_y(
            &mut resizer,
            ResizeAlg::Convolution(FilterType::Lanczos3),
            w,
            h,
        );
        let mut base = None;
        for (name, alg) in [
            ("bilinear", ResizeAlg::Convolution(FilterType::Bilinear)),
            ("box", ResizeAlg::Convolution(FilterType::Box)),
            ("hamming", ResizeAlg::Convolution(FilterType::Hamming)),
            (
                "interp. bilinear",
                ResizeAlg::Interpolation(FilterType::Bilinear),
            ),
            (
                "supersample 2 bilinear",
                ResizeAlg::SuperSampling(FilterType::Bilinear, 2),
            ),
        ] {
            let out = scale_y(&mut resizer, alg, w, h);
            // Luma only: chroma is a quarter of the work on top.
            let per_s = rate(min_time / 6, |_| {
                black_box(scale_y(&mut resizer, alg, w, h));
            });
            let b = *base.get_or_insert(per_s);
            println!(
                "  scale 1280x720 -> {w}x{h} luma, {name:<24} {:7.0} us ({:.2}x)  PSNR vs lanczos3 {:.1} dB",
                1e6 / per_s,
                per_s / b,
                psnr(&out, &reference)
            );
        }
        // The mixer's own scaler against fast_image_resize, whole I420
        // pictures (luma and both chroma planes).
        let mut ours = Scaler::new();
        let out = ours.scale(src, w, h).unwrap();
        let per_s = rate(min_time / 6, |_| {
            black_box(ours.scale(src, w, h).unwrap());
        });
        let mut fir = Resizer::new();
        let fir_per_s = rate(min_time / 6, |_| {
            black_box(scale_to(&mut fir, src, w, h).unwrap());
        });
        println!(
            "  scale 1280x720 -> {w}x{h} I420, mixer Scaler {:7.0} us vs fast_image_resize {:7.0} us \
             ({:.2}x)  luma PSNR vs lanczos3 {:.1} dB",
            1e6 / per_s,
            1e6 / fir_per_s,
            per_s / fir_per_s,
            psnr(out.y(), &reference)
        );
    }
    // What an unchanged picture costs: the same canvas again and again.
    let mut enc = VideoEncoder::new(EncoderSettings::new(w, h, 30.0, 1_500_000)).unwrap();
    enc.encode(&views[0], false).unwrap();
    let mut size = 0;
    let same = rate(min_time / 2, |_| {
        size = enc.encode(&views[0], false).unwrap().annexb.len();
    });
    println!("  identical 720p picture re-encoded: {same:.1} fps, {size} bytes each");
}

// --- first-version sections (continuity) ----------------------------------------------

/// The first bench's picture: diagonal stripes shifting with `t`, a tint,
/// a white block sliding across (motion everywhere: a worst case).
fn stripes_picture(w: u32, h: u32, seed: u64, t: u64) -> I420Frame {
    let mut f = I420Frame::solid(
        w,
        h,
        Rgb(
            (seed * 53 % 200) as u8 + 30,
            (seed * 97 % 200) as u8 + 30,
            (seed * 151 % 200) as u8 + 30,
        ),
    )
    .unwrap();
    let (y, _, _) = f.planes_mut();
    for row in 0..h {
        for col in 0..w {
            let i = (row * w + col) as usize;
            let stripe = ((u64::from(row + col) + t * 3) / 8 % 2) as u8;
            y[i] = y[i].saturating_add(stripe * 24);
        }
    }
    let bx = (t * 7 % u64::from(w.saturating_sub(w / 5).max(1))) as u32 & !1;
    f.fill_rect(Rect::new(bx, h / 3, w / 5, h / 4), Rgb::WHITE);
    f
}

fn continuity(min_time: Duration) {
    let (w, h) = ResolutionClass::Hd720.size();
    let bitrate = ResolutionClass::Hd720.default_bitrate_bps();
    let pictures: Vec<I420Frame> = (0..30).map(|t| stripes_picture(w, h, 1, t)).collect();
    let mut enc = VideoEncoder::new(EncoderSettings::new(w, h, 30.0, bitrate)).unwrap();
    let mut stream = Vec::new();
    let encode_fps = rate(min_time, |i| {
        let out = enc.encode(&pictures[i % pictures.len()], false).unwrap();
        if stream.len() < 120 {
            stream.push(out.annexb.clone());
        }
        black_box(out);
    });
    let stream: Vec<Vec<u8>> = stream.into_iter().filter(|au| !au.is_empty()).collect();
    let mut dec = VideoDecoder::new().unwrap();
    let decode_fps = rate(min_time, |i| {
        if i > 0 && i % stream.len() == 0 {
            dec = VideoDecoder::new().unwrap();
        }
        black_box(dec.decode(&stream[i % stream.len()]).unwrap());
    });
    println!("  stripes 720p raw encode: {encode_fps:8.1} fps, decode {decode_fps:8.1} fps");

    let sources: Vec<Vec<I420Frame>> = (1..=PARTIES)
        .map(|p| (0..8).map(|t| stripes_picture(640, 360, p, t)).collect())
        .collect();
    let order: Vec<ParticipantId> = (1..=PARTIES).map(ParticipantId).collect();
    let onlooker = ParticipantId(1000);
    for layout in [Layout::OnePlus7, Layout::Grid4x4] {
        let mut m = VideoMixer::new(VideoConfig {
            threads: 1,
            ..VideoConfig::default()
        })
        .unwrap();
        for p in 1..=PARTIES {
            m.add_participant(ParticipantId(p), &format!("Party {p}"))
                .unwrap();
        }
        m.set_speaker_order(&order);
        m.set_receiver(
            onlooker,
            ReceiverSettings {
                layout: LayoutChoice::Fixed(layout),
                class: ResolutionClass::Hd720,
                presentation_in_layout: false,
            },
        );
        let views_per_s = rate(min_time, |t| {
            for p in 1..=PARTIES {
                let frame = sources[(p - 1) as usize][t % 8].clone();
                m.push_source_frame(ParticipantId(p), frame).unwrap();
            }
            black_box(m.tick().unwrap());
        });
        println!(
            "  compose+encode one {layout:>4} 720p view (stripes): {views_per_s:8.1} views/s \
             ({:.2}x raw encode; includes pushing 20 new 360p sources per tick)",
            views_per_s / encode_fps
        );
    }

    for layout in [Layout::OnePlus7, Layout::Grid4x4] {
        let mut m = VideoMixer::new(VideoConfig::default()).unwrap();
        for p in 1..=PARTIES {
            let id = ParticipantId(p);
            m.add_participant(id, &format!("Party {p}")).unwrap();
            m.push_source_frame(id, sources[(p - 1) as usize][0].clone())
                .unwrap();
            m.set_receiver(
                id,
                ReceiverSettings {
                    layout: LayoutChoice::Fixed(layout),
                    class: ResolutionClass::Sd360,
                    presentation_in_layout: false,
                },
            );
        }
        m.set_speaker_order(&order);
        m.tick().unwrap();
        let encoders = m.stats().encoders;
        let bound = 1 + layout.pane_count();
        println!(
            "  encoders for {PARTIES} receivers, {layout:>4} at 360p: {encoders} \
             (bound 1 + {} visible = {bound}: {}; one per receiver would be {PARTIES})",
            layout.pane_count(),
            if encoders <= bound { "within" } else { "OVER" }
        );
    }
}

fn main() {
    let args = Args::parse();
    let total = Instant::now();
    let threads = VideoConfig::default().threads;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("video bench: {cores} cores available, default mixer threads {threads}");

    let setup = Instant::now();
    let sources = make_sources(PARTIES, cores);
    let kbps: f64 = sources
        .iter()
        .map(|s| s.stream.iter().map(Vec::len).sum::<usize>() as f64 * 8.0 * FPS / LOOP as f64)
        .sum::<f64>()
        / PARTIES as f64
        / 1000.0;
    println!(
        "sources: {PARTIES} x 720p30 camera-like streams, {LOOP}-frame loops, {kbps:.0} kbit/s \
         average (made in {:.1} s)",
        setup.elapsed().as_secs_f64()
    );

    let raw = raw_baseline(&sources[0], args.min_time());
    let threads = args.threads.unwrap_or(threads);
    println!(
        "baseline, raw openh264 720p on one core: encode {:.1} fps, decode {:.1} fps",
        raw.encode_fps, raw.decode_fps
    );

    if args.sweep {
        println!("openh264 settings sweep (720p, 1.5 Mbit/s):");
        sweep(&sources, args.min_time());
    }

    println!(
        "conference: {PARTIES} parties, {PARTIES} receivers at 720p30, only visible sources \
         decoded:"
    );
    let layouts = match args.layout {
        Some(l) => vec![l],
        None => vec![Layout::OnePlus7, Layout::Grid4x4],
    };
    for layout in layouts {
        let mut thread_counts = vec![threads];
        if threads > 1 && args.threads.is_none() {
            thread_counts.push(1);
        }
        // Senders sized to their panes at every thread count, then, for
        // comparison, every sender at 720p on one thread.
        let mut runs: Vec<(usize, bool)> = thread_counts.iter().map(|&t| (t, true)).collect();
        if !args.adaptive_only {
            runs.push((1, false));
        }
        for (t, adaptive) in runs {
            // Other work on a shared machine moves every rate: the
            // baseline for this run is measured right before and after it.
            let before = raw_baseline(&sources[0], args.min_time() / 3);
            let r = run_conference(&sources, layout, t, args.conference_ticks(), adaptive);
            let after = raw_baseline(&sources[0], args.min_time() / 3);
            let raw = Raw {
                encode_fps: (before.encode_fps + after.encode_fps) / 2.0,
                decode_fps: (before.decode_fps + after.decode_fps) / 2.0,
            };
            report_conference(layout, t, adaptive, &r, &raw);
        }
    }

    if !args.conference_only {
        println!("first-version figures (for comparison with earlier runs; one thread):");
        continuity(args.min_time());
    }
    println!("total bench time: {:.1} s", total.elapsed().as_secs_f64());
}
