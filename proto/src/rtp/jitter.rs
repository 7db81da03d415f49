//! An adaptive jitter buffer for one audio leg.
//!
//! Packets go in with [`JitterBuffer::push`] as they arrive; the mixer calls
//! [`JitterBuffer::pop`] once per frame period and gets a frame to decode, a
//! request to conceal one ([`Playout::Lost`]), or [`Playout::Silent`] when the
//! leg has nothing to say (not started, DTX, or a long gap).
//!
//! ## Model
//! Playout is by sequence number: one pop plays one packet. The bridge decodes
//! whatever a packet holds, so when a peer sends 40 or 60 ms packets the
//! caller should pop every [`JitterBuffer::frame_duration`], which follows the
//! timestamp step between consecutive packets.
//!
//! The delay is not a timer but the number of packets held ahead of playout.
//! It grows by *stalling*: when the next packet is missing and the buffer is
//! shallower than the target, we conceal without advancing, so later packets
//! gain one frame of delay. It shrinks by *dropping* one frame when the buffer
//! stayed deeper than target for a whole window (about a second), which is
//! short enough to be inaudible. The target is the RFC 3550 interarrival
//! jitter estimate, `clamp(2·J + frame + boost, min, max)`, where `boost` rises
//! each time a packet proves the delay too short (arrives after its playout
//! time) and decays slowly.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::packet::MediaTime;

/// Most packets held; beyond this the oldest is dropped (counted as overflow).
pub const MAX_PACKETS: usize = 50;
/// A sequence jump larger than this (either way) means the sender restarted,
/// once the next packet confirms it.
const MAX_SEQ_JUMP: i32 = 2 * MAX_PACKETS as i32;
/// Consecutive concealed frames on an empty buffer before going silent and
/// re-buffering (100 ms at 20 ms frames).
const MAX_CONCEAL: u32 = 5;
/// Pops per adaptation window.
const WINDOW: u32 = 50;

/// What the mixer should do with this leg for one frame period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// Decode this.
    Frame {
        payload: Vec<u8>,
        timestamp: MediaTime,
    },
    /// Conceal one frame. `next` is the following packet if it is already
    /// here, so an Opus decoder can recover this one from its in-band FEC.
    Lost { next: Option<Vec<u8>> },
    /// Nothing buffered (not started, DTX, long gap): leave this leg out of the mix.
    Silent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JitterStats {
    /// Packets played out.
    pub played: u64,
    /// Packets declared lost at playout time (never arrived in time).
    pub lost: u64,
    /// Packets that arrived after their playout time, dropped.
    pub late: u64,
    /// Packets already buffered, dropped. (A duplicate of a packet already
    /// played counts as late.)
    pub duplicate: u64,
    /// Packets dropped because the buffer was full or far beyond `max_delay`.
    pub overflow: u64,
    /// Frames dropped on purpose to bring the delay down.
    pub discarded: u64,
    /// Pops that found the buffer empty while playing.
    pub underruns: u64,
    /// Times the buffer restarted on a sequence jump or `reset`.
    pub resyncs: u64,
    pub target_delay: Duration,
    /// Span from the next packet to play to the newest buffered, in time.
    pub depth: Duration,
}

#[derive(Debug)]
struct Buffered {
    timestamp: MediaTime,
    payload: Vec<u8>,
    arrival: Instant,
}

#[derive(Debug)]
pub struct JitterBuffer {
    clock_rate: u32,
    /// Frame duration in RTP units (follows the stream).
    frame_units: u32,
    /// A candidate new frame duration, adopted when seen twice in a row.
    frame_candidate: Option<u32>,
    min_delay: Duration,
    max_delay: Duration,

    packets: BTreeMap<u64, Buffered>,
    /// Highest extended sequence number pushed, and its timestamp.
    highest: Option<(u64, MediaTime)>,
    /// Packets below this sequence number are late.
    floor: Option<u64>,
    playing: bool,
    /// A far sequence jump waiting for a second packet to confirm it.
    pending_jump: Option<(u16, MediaTime, Vec<u8>, Instant)>,
    /// Consecutive pops that concealed without advancing.
    stalled: u32,

    epoch: Option<Instant>,
    transit: Option<i64>,
    /// RFC 3550 jitter estimate, in RTP units.
    jitter: f64,
    boost: Duration,
    window_pops: u32,
    window_min_depth: u64,
    window_late: bool,

    stats: JitterStats,
}

impl JitterBuffer {
    pub fn new(
        clock_rate: u32,
        frame_duration: Duration,
        min_delay: Duration,
        max_delay: Duration,
    ) -> Self {
        let clock_rate = clock_rate.max(1);
        let frame_units = duration_to_units(frame_duration, clock_rate).max(1);
        let mut jb = JitterBuffer {
            clock_rate,
            frame_units,
            frame_candidate: None,
            min_delay,
            max_delay: max_delay.max(min_delay),
            packets: BTreeMap::new(),
            highest: None,
            floor: None,
            playing: false,
            pending_jump: None,
            stalled: 0,
            epoch: None,
            transit: None,
            jitter: 0.0,
            boost: Duration::ZERO,
            window_pops: 0,
            window_min_depth: u64::MAX,
            window_late: false,
            stats: JitterStats::default(),
        };
        jb.stats.target_delay = jb.target_delay();
        jb
    }

    /// The current packet duration: how often the caller should pop.
    pub fn frame_duration(&self) -> Duration {
        units_to_duration(self.frame_units, self.clock_rate)
    }

    pub fn target_delay(&self) -> Duration {
        let jitter = Duration::from_secs_f64(self.jitter / f64::from(self.clock_rate));
        (2 * jitter + self.frame_duration() + self.boost).clamp(self.min_delay, self.max_delay)
    }

    pub fn stats(&self) -> JitterStats {
        JitterStats {
            target_delay: self.target_delay(),
            depth: self
                .frame_duration()
                .saturating_mul(u32::try_from(self.depth_frames()).unwrap_or(u32::MAX)),
            ..self.stats
        }
    }

    /// Packets currently held.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    pub fn is_playing(&self) -> bool {
        self.playing
    }

    /// Forget the stream (call on SSRC change). Counters and the jitter
    /// estimate are kept.
    pub fn reset(&mut self) {
        self.packets.clear();
        self.highest = None;
        self.floor = None;
        self.playing = false;
        self.pending_jump = None;
        self.stalled = 0;
        self.epoch = None;
        self.transit = None;
        self.stats.resyncs += 1;
    }

    /// Buffer one received packet.
    pub fn push(&mut self, now: Instant, seq: u16, timestamp: MediaTime, payload: Vec<u8>) {
        let Some((highest, highest_ts)) = self.highest else {
            self.accept(now, (1 << 32) | u64::from(seq), timestamp, payload);
            return;
        };
        let delta = i32::from(seq.wrapping_sub(highest as u16) as i16);
        if delta.abs() > MAX_SEQ_JUMP {
            match self.pending_jump.take() {
                Some((pseq, pts, ppayload, parrival)) if pseq.wrapping_add(1) == seq => {
                    self.reset();
                    self.push(parrival, pseq, pts, ppayload);
                    self.push(now, seq, timestamp, payload);
                }
                _ => self.pending_jump = Some((seq, timestamp, payload, now)),
            }
            return;
        }
        self.pending_jump = None;
        let ext = highest.wrapping_add_signed(i64::from(delta));
        if delta == 1 {
            self.learn_frame(timestamp.0.wrapping_sub(highest_ts.0));
        }
        if self.floor.is_some_and(|f| ext < f) {
            self.stats.late += 1;
            self.window_late = true;
            self.boost = (self.boost + self.frame_duration() / 2).min(self.max_delay);
            return;
        }
        if self.packets.contains_key(&ext) {
            self.stats.duplicate += 1;
            return;
        }
        if self.playing && self.stalled > 0 && self.floor == Some(ext) {
            // We concealed while waiting for this one: the delay is too short.
            self.boost = (self.boost + self.frame_duration() / 2).min(self.max_delay);
        }
        self.accept(now, ext, timestamp, payload);
    }

    fn accept(&mut self, now: Instant, ext: u64, timestamp: MediaTime, payload: Vec<u8>) {
        self.update_jitter(now, timestamp);
        if self.highest.is_none_or(|(h, _)| ext > h) {
            self.highest = Some((ext, timestamp));
        }
        self.packets.insert(
            ext,
            Buffered {
                timestamp,
                payload,
                arrival: now,
            },
        );
        while self.packets.len() > MAX_PACKETS {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some((seq, _)) = self.packets.pop_first() {
            self.stats.overflow += 1;
            self.floor = Some(seq + 1);
        }
    }

    /// Adopt a new packet duration once two consecutive packets agree on it.
    /// Steps outside 10–120 ms are timestamp jumps (DTX, talkspurts), not ptime.
    fn learn_frame(&mut self, step: u32) {
        let ms = u64::from(step) * 1000 / u64::from(self.clock_rate);
        if !(10..=120).contains(&ms) || step == self.frame_units {
            self.frame_candidate = None;
            return;
        }
        if self.frame_candidate == Some(step) {
            self.frame_units = step;
            self.frame_candidate = None;
        } else {
            self.frame_candidate = Some(step);
        }
    }

    /// RFC 3550 A.8 interarrival jitter, in RTP units.
    fn update_jitter(&mut self, now: Instant, timestamp: MediaTime) {
        let epoch = *self.epoch.get_or_insert(now);
        let since = now.saturating_duration_since(epoch);
        let arrival = (since.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as u32;
        let transit = i64::from(arrival.wrapping_sub(timestamp.0) as i32);
        if let Some(prev) = self.transit {
            let d = (transit - prev).unsigned_abs() as f64;
            // Ignore absurd steps (timestamp jumps) rather than poison the estimate.
            if d < f64::from(self.clock_rate) {
                self.jitter += (d - self.jitter) / 16.0;
            }
        }
        self.transit = Some(transit);
    }

    fn depth_frames(&self) -> u64 {
        match (self.floor, self.highest, self.packets.is_empty()) {
            (Some(floor), Some((h, _)), false) if h >= floor => h - floor + 1,
            (None, Some((h, _)), false) => {
                let first = self.packets.keys().next().copied().unwrap_or(h);
                h - first + 1
            }
            _ => 0,
        }
    }

    fn target_frames(&self) -> u64 {
        let frame = self.frame_duration().as_nanos().max(1);
        self.target_delay().as_nanos().div_ceil(frame) as u64
    }

    /// Take what the mixer should play for this frame period.
    pub fn pop(&mut self, now: Instant) -> Playout {
        let out = self.pop_inner(now);
        self.stats.target_delay = self.target_delay();
        out
    }

    fn pop_inner(&mut self, now: Instant) -> Playout {
        if !self.playing {
            let Some((&first, oldest)) = self.packets.first_key_value() else {
                return Playout::Silent;
            };
            if now.saturating_duration_since(oldest.arrival) < self.target_delay() {
                return Playout::Silent;
            }
            self.playing = true;
            self.floor = Some(first);
            self.stalled = 0;
        }
        let Some(next) = self.floor else {
            self.playing = false;
            return Playout::Silent;
        };

        self.adapt();
        let next = self.floor.unwrap_or(next);

        if let Some(p) = self.packets.remove(&next) {
            self.floor = Some(next + 1);
            self.stalled = 0;
            self.stats.played += 1;
            return Playout::Frame {
                payload: p.payload,
                timestamp: p.timestamp,
            };
        }

        if self.packets.is_empty() {
            self.stats.underruns += 1;
            self.stalled += 1;
            if self.stalled > MAX_CONCEAL {
                // Talk spurt over or the peer went quiet: re-buffer when it
                // comes back, and keep `floor` so stragglers count as late.
                self.playing = false;
                return Playout::Silent;
            }
            return Playout::Lost { next: None };
        }

        // A gap with later packets waiting. If we are shallower than target,
        // stall (conceal and wait), which also grows the delay by one frame;
        // otherwise the packet missed its playout time.
        if self.depth_frames() < self.target_frames() && self.stalled < MAX_CONCEAL {
            self.stalled += 1;
            return Playout::Lost { next: None };
        }
        self.stalled = 0;
        self.stats.lost += 1;
        self.floor = Some(next + 1);
        Playout::Lost {
            next: self.packets.get(&(next + 1)).map(|p| p.payload.clone()),
        }
    }

    /// Once per window: drop a frame if we stayed above target the whole
    /// time, and let the late-packet boost decay when nothing was late.
    /// Also enforce `max_delay` immediately.
    fn adapt(&mut self) {
        let frame = self.frame_duration();
        let max_frames = self.max_delay.as_nanos().div_ceil(frame.as_nanos().max(1)) as u64;
        while self.depth_frames() > max_frames + 1 {
            self.drop_oldest();
        }

        let depth = self.depth_frames();
        self.window_min_depth = self.window_min_depth.min(depth);
        self.window_pops += 1;
        if self.window_pops < WINDOW {
            return;
        }
        if !self.window_late {
            self.boost = self.boost.saturating_sub(frame / 4);
        }
        if self.window_min_depth > self.target_frames() + 1 {
            // Drop the next frame, but only if its successor is here, so we
            // never turn a skip into a gap.
            if let Some(next) = self.floor
                && self.packets.contains_key(&(next + 1))
                && self.packets.remove(&next).is_some()
            {
                self.floor = Some(next + 1);
                self.stats.discarded += 1;
            }
        }
        self.window_pops = 0;
        self.window_min_depth = u64::MAX;
        self.window_late = false;
    }
}

fn duration_to_units(d: Duration, clock_rate: u32) -> u32 {
    (d.as_nanos() * u128::from(clock_rate) / 1_000_000_000).min(u128::from(u32::MAX)) as u32
}

fn units_to_duration(units: u32, clock_rate: u32) -> Duration {
    Duration::from_nanos(u64::from(units) * 1_000_000_000 / u64::from(clock_rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // tests need one real Instant as an epoch
    fn epoch() -> Instant {
        Instant::now()
    }

    const MS20: Duration = Duration::from_millis(20);

    fn jb() -> JitterBuffer {
        JitterBuffer::new(
            8000,
            MS20,
            Duration::from_millis(40),
            Duration::from_millis(300),
        )
    }

    /// xorshift64*: a seeded PRNG, so the simulated network is reproducible.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn seq_of(p: &Playout) -> Option<u32> {
        match p {
            Playout::Frame { timestamp, .. } => Some(timestamp.0 / 160),
            _ => None,
        }
    }

    #[test]
    fn rtp_jitter_in_order_stream() {
        let t0 = epoch();
        let mut jb = jb();
        let mut played = Vec::new();
        for i in 0..100u32 {
            let now = t0 + MS20 * i;
            jb.push(now, i as u16, MediaTime(i * 160), vec![i as u8]);
            if let Some(s) = seq_of(&jb.pop(now)) {
                played.push(s);
            }
        }
        assert_eq!(played.first(), Some(&0));
        assert!(played.windows(2).all(|w| w[1] == w[0] + 1));
        let st = jb.stats();
        assert_eq!((st.lost, st.late, st.duplicate, st.underruns), (0, 0, 0, 0));
        assert!(st.depth <= Duration::from_millis(60), "{:?}", st.depth);
    }

    #[test]
    fn rtp_jitter_reorder_duplicate_late_and_wrap() {
        let t0 = epoch();
        let mut jb = JitterBuffer::new(
            8000,
            MS20,
            Duration::from_millis(60),
            Duration::from_millis(300),
        );
        let base: u16 = 65533;
        let seq = |i: u16| base.wrapping_add(i);
        // Arrive 0, 2, 1, 1 (dup), 3, 4 in the first 20 ms.
        for i in [0u16, 2, 1, 1, 3, 4] {
            jb.push(t0, seq(i), MediaTime(u32::from(i) * 160), vec![i as u8]);
        }
        assert_eq!(jb.stats().duplicate, 1);
        let mut out = Vec::new();
        for k in 0..5u32 {
            out.push(jb.pop(t0 + Duration::from_millis(60) + MS20 * k));
        }
        let seqs: Vec<_> = out.iter().filter_map(seq_of).collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4]);
        // A straggler for seq 0 is late.
        jb.push(
            t0 + Duration::from_millis(200),
            seq(0),
            MediaTime(0),
            vec![],
        );
        assert_eq!(jb.stats().late, 1);
    }

    #[test]
    fn rtp_jitter_loss_gives_fec_hint() {
        let t0 = epoch();
        let mut jb = jb();
        for i in (0..10u32).filter(|i| *i != 5) {
            jb.push(t0 + MS20 * i, i as u16, MediaTime(i * 160), vec![i as u8]);
        }
        let mut got = Vec::new();
        for k in 0..10u32 {
            got.push(jb.pop(t0 + Duration::from_millis(200) + MS20 * k));
        }
        assert!(
            got.contains(&Playout::Lost {
                next: Some(vec![6])
            }),
            "{got:?}"
        );
        assert_eq!(jb.stats().lost, 1);
    }

    #[test]
    fn rtp_jitter_silent_until_started_and_after_gap() {
        let t0 = epoch();
        let mut jb = jb();
        assert_eq!(jb.pop(t0), Playout::Silent);
        jb.push(t0, 10, MediaTime(1600), vec![1]);
        assert_eq!(jb.pop(t0), Playout::Silent, "waits for the target delay");
        assert!(matches!(
            jb.pop(t0 + Duration::from_millis(40)),
            Playout::Frame { .. }
        ));
        // Nothing more arrives: a few concealed frames, then silence.
        let outs: Vec<_> = (1..=10u32)
            .map(|k| jb.pop(t0 + Duration::from_millis(40) + MS20 * k))
            .collect();
        assert_eq!(
            outs.iter()
                .filter(|o| matches!(o, Playout::Lost { .. }))
                .count(),
            MAX_CONCEAL as usize
        );
        assert_eq!(outs.last(), Some(&Playout::Silent));
        assert!(!jb.is_playing());
        // The stream resumes (after DTX, say) and plays again.
        let t1 = t0 + Duration::from_secs(1);
        jb.push(t1, 11, MediaTime(1600 + 8000), vec![2]);
        assert!(matches!(
            jb.pop(t1 + Duration::from_millis(40)),
            Playout::Frame { .. }
        ));
    }

    #[test]
    fn rtp_jitter_resync_on_sequence_jump() {
        let t0 = epoch();
        let mut jb = jb();
        for i in 0..5u32 {
            jb.push(t0, i as u16, MediaTime(i * 160), vec![]);
        }
        // One stray far packet is ignored...
        jb.push(t0, 40000, MediaTime(0), vec![]);
        assert_eq!(jb.len(), 5);
        // ...but two in a row restart the stream.
        jb.push(t0, 30000, MediaTime(999), vec![7]);
        jb.push(t0, 30001, MediaTime(1159), vec![8]);
        assert_eq!(jb.len(), 2);
        assert_eq!(jb.stats().resyncs, 1);
        let p = jb.pop(t0 + Duration::from_millis(100));
        assert_eq!(
            p,
            Playout::Frame {
                payload: vec![7],
                timestamp: MediaTime(999)
            }
        );
    }

    #[test]
    fn rtp_jitter_learns_packet_duration() {
        let t0 = epoch();
        let mut jb = jb();
        for i in 0..5u32 {
            jb.push(t0 + MS20 * 2 * i, i as u16, MediaTime(i * 320), vec![]);
        }
        assert_eq!(jb.frame_duration(), Duration::from_millis(40));
        // A DTX-sized timestamp jump does not change it.
        jb.push(t0, 5, MediaTime(4 * 320 + 8000), vec![]);
        jb.push(t0, 6, MediaTime(4 * 320 + 16000), vec![]);
        assert_eq!(jb.frame_duration(), Duration::from_millis(40));
    }

    #[test]
    fn rtp_jitter_bounded_under_flood() {
        let t0 = epoch();
        let mut jb = jb();
        for i in 0..1000u32 {
            jb.push(t0, i as u16, MediaTime(i * 160), vec![0; 100]);
        }
        assert!(jb.len() <= MAX_PACKETS);
        assert!(jb.stats().overflow >= 950);
        let _ = jb.pop(t0 + Duration::from_secs(1));
        assert!(
            jb.stats().depth <= Duration::from_millis(340),
            "{:?}",
            jb.stats().depth
        );
    }

    struct SimResult {
        dropped: u32,
        played: Vec<u32>,
        concealed: u32,
        max_len: usize,
        /// (tick, target delay) sampled once per second.
        targets: Vec<Duration>,
        stats: JitterStats,
    }

    /// Drive a buffer through a seeded network: packet `i` is sent at
    /// `i·20 ms`, lost with probability `loss`, duplicated 1% of the time, and
    /// arrives after 20 ms plus a uniform `0..jitter_ms(i)` delay, so anything
    /// above 20 ms of jitter reorders. The mixer pops every 20 ms.
    fn simulate(seed: u64, n: u32, loss: f64, jitter_ms: impl Fn(u32) -> f64) -> SimResult {
        let t0 = epoch();
        let mut rng = Rng(seed);
        let mut jb = JitterBuffer::new(
            8000,
            MS20,
            Duration::from_millis(20),
            Duration::from_millis(400),
        );
        let mut arrivals: Vec<(u64, u32)> = Vec::new(); // (arrival µs, index)
        let mut dropped = 0;
        for i in 0..n {
            if rng.unit() < loss {
                dropped += 1;
                continue;
            }
            let send_us = u64::from(i) * 20_000;
            let spread = jitter_ms(i) * 1000.0;
            arrivals.push((send_us + 20_000 + (rng.unit() * spread) as u64, i));
            if rng.unit() < 0.01 {
                arrivals.push((send_us + 20_000 + (rng.unit() * spread) as u64, i));
            }
        }
        arrivals.sort();
        let mut next_arrival = 0;
        let mut res = SimResult {
            dropped,
            played: Vec::new(),
            concealed: 0,
            max_len: 0,
            targets: Vec::new(),
            stats: JitterStats::default(),
        };
        // Pop every 20 ms, offset 7 ms from the send clock.
        for tick in 0..(n + 50) {
            let tick_us = u64::from(tick) * 20_000 + 7_000;
            while let Some(&(at, i)) = arrivals.get(next_arrival) {
                if at > tick_us {
                    break;
                }
                let now = t0 + Duration::from_micros(at);
                jb.push(
                    now,
                    i as u16,
                    MediaTime(i.wrapping_mul(160)),
                    i.to_be_bytes().to_vec(),
                );
                res.max_len = res.max_len.max(jb.len());
                next_arrival += 1;
            }
            match jb.pop(t0 + Duration::from_micros(tick_us)) {
                Playout::Frame { payload, timestamp } => {
                    let i = u32::from_be_bytes(payload.try_into().expect("4 bytes"));
                    assert_eq!(timestamp.0, i * 160);
                    res.played.push(i);
                }
                Playout::Lost { .. } => res.concealed += 1,
                Playout::Silent => {}
            }
            if tick % 50 == 0 {
                res.targets.push(jb.target_delay());
            }
        }
        res.stats = jb.stats();
        res
    }

    /// 5% loss, ±30 ms jitter (plenty of reordering), 1% duplicates, a minute of audio.
    #[test]
    fn rtp_jitter_simulated_network() {
        let n = 3000;
        let r = simulate(0x5eed_1234_abcd_0001, n, 0.05, |_| 60.0);
        let st = r.stats;
        // Every delivered frame is in order, none twice.
        assert!(r.played.windows(2).all(|w| w[1] > w[0]), "out of order");
        let missing = n - r.played.len() as u32;
        // Lost ≈ the network's 5%: jitter-induced drops stay small.
        let extra = missing - r.dropped;
        assert!(
            f64::from(extra) < 0.02 * f64::from(n),
            "extra drops {extra} ({st:?})"
        );
        assert!(
            st.lost as u32 >= r.dropped * 9 / 10,
            "lost {} vs dropped {}",
            st.lost,
            r.dropped
        );
        assert!(
            (120..=180).contains(&r.dropped),
            "the seeded 5% loss: {}",
            r.dropped
        );
        assert!(r.concealed < n / 10, "concealed {}", r.concealed);
        assert!(st.duplicate + st.late >= 1, "{st:?}");
        // No unbounded growth: the delay settles near the jitter, well under max.
        assert!(r.max_len <= 12, "max buffered {}", r.max_len);
        assert!(st.target_delay <= Duration::from_millis(150), "{st:?}");
    }

    /// The network gets much worse, then calm: the delay grows to cover
    /// 200 ms of jitter, then comes back down by dropping frames.
    #[test]
    fn rtp_jitter_adapts_up_and_down() {
        let n = 4500;
        let r = simulate(0xfeed_0000_0000_0042, n, 0.02, |i| match i {
            0..1500 => 10.0,
            1500..3000 => 200.0,
            _ => 10.0,
        });
        let st = r.stats;
        assert!(r.played.windows(2).all(|w| w[1] > w[0]), "out of order");
        let calm = r.targets[25];
        let stormy = r.targets[55];
        let after = *r.targets.last().expect("samples");
        assert!(
            stormy > calm + Duration::from_millis(60),
            "calm {calm:?} stormy {stormy:?}"
        );
        assert!(after < stormy / 2, "stormy {stormy:?} after {after:?}");
        assert!(st.discarded >= 3, "{st:?}");
        let extra = n - r.played.len() as u32 - r.dropped;
        assert!(
            f64::from(extra) < 0.05 * f64::from(n),
            "extra drops {extra} ({st:?})"
        );
        assert!(r.max_len <= 30, "max buffered {}", r.max_len);
        assert!(st.depth <= Duration::from_millis(100), "{st:?}");
    }
}
