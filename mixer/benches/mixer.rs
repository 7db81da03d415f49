//! Mixer cost per participant per 20 ms tick, against raw libopus.
//!
//! One conference of N Opus/20 ms participants, 3 of them talking, every leg
//! sending packets (the listeners send low-level noise, as a leg without DTX
//! does). Two figures per N: "mix" = push every decoded frame + tick (mix,
//! speaker detection, encodes), and "decode+mix" = the same plus N Opus
//! decodes, which is what the media thread really spends per tick.
//!
//! Wall-clock reads are what a benchmark is for; the core itself never reads
//! the clock (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tandem_mixer::audio::{AudioDecoder, CodecKind, MixerConfig, OutputFormat, decoder, encoder};
use tandem_mixer::{AudioMixer, ParticipantId};

const FRAMES: usize = 50;
const SIZES: [usize; 3] = [10, 100, 500];
const SPEAKERS: usize = 3;

fn tone(freq: f64, amp: f64, frame: usize) -> Vec<i16> {
    (frame * 960..(frame + 1) * 960)
        .map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / 48000.0).sin()) as i16)
        .collect()
}

fn noise(seed: u64, amp: i32, frame: usize) -> Vec<i16> {
    let mut x = seed
        .wrapping_add(frame as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        | 1;
    (0..960)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as i32 % (2 * amp + 1) - amp) as i16
        })
        .collect()
}

/// Pre-encoded Opus packets and their decoded PCM, per stream kind.
struct Streams {
    packets: Vec<Vec<Vec<u8>>>,
    pcm: Vec<Vec<Vec<i16>>>,
}

fn streams() -> Streams {
    let mut packets = Vec::new();
    let mut pcm = Vec::new();
    for s in 0..SPEAKERS + 1 {
        let mut enc = encoder(CodecKind::Opus, 20).unwrap();
        let mut dec = decoder(CodecKind::Opus).unwrap();
        let (mut ps, mut fs) = (Vec::new(), Vec::new());
        for f in 0..FRAMES {
            let input = if s < SPEAKERS {
                tone(300.0 + 250.0 * s as f64, 6000.0, f)
            } else {
                noise(7, 30, f)
            };
            let mut p = Vec::new();
            enc.encode(&input, &mut p).unwrap();
            let mut out = Vec::new();
            dec.decode(&p, &mut out).unwrap();
            ps.push(p);
            fs.push(out);
        }
        packets.push(ps);
        pcm.push(fs);
    }
    Streams { packets, pcm }
}

struct Conference {
    mixer: AudioMixer,
    decoders: Vec<Box<dyn AudioDecoder>>,
    scratch: Vec<i16>,
    frame: usize,
}

impl Conference {
    fn new(n: usize) -> Self {
        let mut mixer = AudioMixer::new(MixerConfig::default());
        let fmt = OutputFormat {
            codec: CodecKind::Opus,
            ptime_ms: 20,
        };
        for i in 0..n {
            mixer.add_participant(ParticipantId(i as u64), fmt).unwrap();
        }
        let decoders = (0..n).map(|_| decoder(CodecKind::Opus).unwrap()).collect();
        Self {
            mixer,
            decoders,
            scratch: Vec::with_capacity(960),
            frame: 0,
        }
    }

    fn kind(i: usize) -> usize {
        i.min(SPEAKERS)
    }

    /// Push every leg's (already decoded) frame and tick.
    fn tick_mix(&mut self, s: &Streams) -> usize {
        let f = self.frame % FRAMES;
        for i in 0..self.decoders.len() {
            self.mixer
                .push_frame(ParticipantId(i as u64), &s.pcm[Self::kind(i)][f])
                .unwrap();
        }
        self.frame += 1;
        black_box(self.mixer.tick()).payloads.len()
    }

    /// Decode every leg's packet, push, tick.
    fn tick_decode_mix(&mut self, s: &Streams) -> usize {
        let f = self.frame % FRAMES;
        for i in 0..self.decoders.len() {
            self.scratch.clear();
            self.decoders[i]
                .decode(&s.packets[Self::kind(i)][f], &mut self.scratch)
                .unwrap();
            self.mixer
                .push_frame(ParticipantId(i as u64), &self.scratch)
                .unwrap();
        }
        self.frame += 1;
        black_box(self.mixer.tick()).payloads.len()
    }
}

/// Median time of `f` over `runs` calls, after `warm` calls.
fn median(warm: usize, runs: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..warm {
        f();
    }
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[runs / 2]
}

fn report(s: &Streams) {
    // Baselines: raw libopus, 20 ms mono 48 kHz, same settings as ours.
    let mut enc = opus::Encoder::new(48000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    enc.set_bitrate(opus::Bitrate::Bits(32000)).unwrap();
    enc.set_inband_fec(true).unwrap();
    enc.set_packet_loss_perc(5).unwrap();
    let mut dec = opus::Decoder::new(48000, opus::Channels::Mono).unwrap();
    let mut buf = vec![0u8; 4000];
    let mut pcm = vec![0i16; 960];
    let mut k = 0;
    let enc_t = median(50, 400, || {
        k += 1;
        black_box(enc.encode(&s.pcm[0][k % FRAMES], &mut buf).unwrap());
    });
    let talk_dec_t = median(50, 400, || {
        k += 1;
        black_box(
            dec.decode(&s.packets[0][k % FRAMES], &mut pcm, false)
                .unwrap(),
        );
    });
    // Most legs are listeners: their packets (low-level noise) are the typical decode.
    let mut dec = opus::Decoder::new(48000, opus::Channels::Mono).unwrap();
    let dec_t = median(50, 400, || {
        k += 1;
        black_box(
            dec.decode(&s.packets[SPEAKERS][k % FRAMES], &mut pcm, false)
                .unwrap(),
        );
    });
    println!();
    println!(
        "baseline: raw libopus 20 ms: encode {:.1} µs, decode {:.1} µs (talker packet), {:.1} µs (listener packet; ×decode below is against this)",
        us(enc_t),
        us(talk_dec_t),
        us(dec_t)
    );
    println!(
        "{:>5} {:>9} {:>12} {:>14} {:>16} {:>10} {:>8}",
        "N", "path", "tick µs", "µs/part/tick", "participants/core", "×decode", "encodes"
    );
    for n in SIZES {
        for (path, decode) in [("mix", false), ("dec+mix", true)] {
            let mut c = Conference::new(n);
            let t = median(60, 150, || {
                if decode {
                    c.tick_decode_mix(s);
                } else {
                    c.tick_mix(s);
                }
            });
            let per = us(t) / n as f64;
            let stats = c.mixer.stats();
            assert!(stats.encodes_last_tick <= SPEAKERS + stats.groups);
            println!(
                "{n:>5} {path:>9} {:>12.1} {per:>14.2} {:>16.0} {:>10.2} {:>4} ({} own + {} shared)",
                us(t),
                20_000.0 / per,
                per / us(dec_t),
                stats.encodes_last_tick,
                stats.own_encodes_last_tick,
                stats.shared_encodes_last_tick,
            );
        }
    }
    println!();
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn bench(c: &mut Criterion) {
    let s = streams();
    report(&s);

    let mut g = c.benchmark_group("opus_baseline");
    let mut enc = encoder(CodecKind::Opus, 20).unwrap();
    let mut out = Vec::with_capacity(4000);
    let mut k = 0;
    g.bench_function("encode_20ms", |b| {
        b.iter(|| {
            k += 1;
            out.clear();
            enc.encode(&s.pcm[0][k % FRAMES], &mut out).unwrap();
        })
    });
    let mut dec = decoder(CodecKind::Opus).unwrap();
    let mut pcm = Vec::with_capacity(960);
    g.bench_function("decode_20ms", |b| {
        b.iter(|| {
            k += 1;
            pcm.clear();
            dec.decode(&s.packets[0][k % FRAMES], &mut pcm).unwrap();
        })
    });
    g.finish();

    let mut g = c.benchmark_group("mixer_tick");
    for n in SIZES {
        let mut conf = Conference::new(n);
        g.bench_with_input(BenchmarkId::new("mix", n), &n, |b, _| {
            b.iter(|| conf.tick_mix(&s))
        });
        let mut conf = Conference::new(n);
        g.bench_with_input(BenchmarkId::new("decode+mix", n), &n, |b, _| {
            b.iter(|| conf.tick_decode_mix(&s))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
