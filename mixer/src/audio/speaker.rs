//! Voice activity and active-speaker detection from per-tick frame energy.
//!
//! Each participant's level is smoothed in dBov with a fast attack and a
//! linear release (in dB per tick), so a talker's level rises within a couple
//! of ticks and decays smoothly through the gaps between words; the decay is
//! also the VAD hangover. The active speaker changes only when another
//! speaking participant has stayed louder by [`SpeakerConfig::switch_margin_db`]
//! (or the current one has gone quiet) through [`SpeakerConfig::hold_ticks`]
//! ticks of its own sound; ticks where it is only in its release tail neither
//! count nor reset, so a cough does not take the floor and word gaps do not
//! restart the count. Silence keeps
//! the last speaker. Everything is a pure function of the observed energies:
//! no clock, no randomness.

use std::collections::HashMap;

use super::ParticipantId;

/// Level reported for a participant with no audio.
pub const SILENCE_DBOV: f32 = -96.0;

/// Tuning of [`SpeakerDetector`]. Times are in 20 ms ticks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeakerConfig {
    /// Smoothed level above which a participant is speaking.
    pub vad_on_dbov: f32,
    /// Smoothed level below which a speaking participant stops speaking.
    pub vad_off_dbov: f32,
    /// Fraction of the way to a louder frame the level moves in one tick.
    pub attack: f32,
    /// dB per tick the level falls towards a quieter frame.
    pub release_db_per_tick: f32,
    /// How much louder a challenger must be than the active speaker.
    pub switch_margin_db: f32,
    /// Voiced ticks a challenger must qualify for before taking over.
    pub hold_ticks: u32,
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        Self {
            vad_on_dbov: -45.0,
            vad_off_dbov: -50.0,
            attack: 0.5,
            // 75 dB/s: speech at -20 dBov stays "speaking" ~0.35 s after it stops.
            release_db_per_tick: 1.5,
            switch_margin_db: 6.0,
            // 400 ms: a clearly louder talker wins in well under a second.
            hold_ticks: 20,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    id: ParticipantId,
    level: f32,
    /// This tick's frame level, [`SILENCE_DBOV`] until observed.
    frame: f32,
    /// The frame level seen by the last tick.
    last_frame: f32,
    speaking: bool,
}

/// Tracks who is speaking and who the active speaker is. Drive it with
/// [`observe`](Self::observe) for each frame, then [`tick`](Self::tick) once per 20 ms.
#[derive(Debug, Clone)]
pub struct SpeakerDetector {
    cfg: SpeakerConfig,
    entries: Vec<Entry>,
    index: HashMap<ParticipantId, usize>,
    active: Option<ParticipantId>,
    challenger: Option<(ParticipantId, u32)>,
    /// Speaking participants after the last tick, loudest first.
    speaking: Vec<(ParticipantId, f32)>,
}

/// Mean square of a frame, in squared sample units.
pub fn frame_energy(pcm: &[i16]) -> f32 {
    if pcm.is_empty() {
        return 0.0;
    }
    // Integer sum: exact and vectorises.
    let sum: i64 = pcm
        .iter()
        .map(|&s| i64::from(i32::from(s) * i32::from(s)))
        .sum();
    sum as f32 / pcm.len() as f32
}

/// Mean square (squared sample units) to dBov (0 dBov = full-scale square wave).
pub fn energy_to_dbov(mean_square: f32) -> f32 {
    const FULL_SCALE: f32 = 32768.0 * 32768.0;
    if mean_square <= 0.0 {
        return SILENCE_DBOV;
    }
    (10.0 * (mean_square / FULL_SCALE).log10()).max(SILENCE_DBOV)
}

impl SpeakerDetector {
    pub fn new(cfg: SpeakerConfig) -> Self {
        Self {
            cfg,
            entries: Vec::new(),
            index: HashMap::new(),
            active: None,
            challenger: None,
            speaking: Vec::new(),
        }
    }

    pub fn add(&mut self, id: ParticipantId) {
        if self.index.contains_key(&id) {
            return;
        }
        self.index.insert(id, self.entries.len());
        self.entries.push(Entry {
            id,
            level: SILENCE_DBOV,
            frame: SILENCE_DBOV,
            last_frame: SILENCE_DBOV,
            speaking: false,
        });
    }

    pub fn remove(&mut self, id: ParticipantId) {
        let Some(i) = self.index.remove(&id) else {
            return;
        };
        self.entries.swap_remove(i);
        if let Some(moved) = self.entries.get(i) {
            self.index.insert(moved.id, i);
        }
        if self.active == Some(id) {
            self.active = None;
        }
        if self.challenger.is_some_and(|(c, _)| c == id) {
            self.challenger = None;
        }
        self.speaking.retain(|&(s, _)| s != id);
    }

    /// Records the energy ([`frame_energy`]) of `id`'s frame for this tick.
    /// Participants not observed in a tick count as silent. Unknown ids are added.
    pub fn observe(&mut self, id: ParticipantId, mean_square: f32) {
        let i = match self.index.get(&id) {
            Some(&i) => i,
            None => {
                self.add(id);
                self.entries.len() - 1
            }
        };
        self.entries[i].frame = energy_to_dbov(mean_square);
    }

    /// Advances one tick: smooths levels, updates VAD and the active speaker.
    pub fn tick(&mut self) -> Option<ParticipantId> {
        let c = self.cfg;
        self.speaking.clear();
        for e in &mut self.entries {
            e.level = if e.frame > e.level {
                e.level + c.attack * (e.frame - e.level)
            } else {
                (e.level - c.release_db_per_tick).max(e.frame)
            };
            e.last_frame = e.frame;
            e.frame = SILENCE_DBOV;
            e.speaking = if e.speaking {
                e.level >= c.vad_off_dbov
            } else {
                e.level > c.vad_on_dbov
            };
            if e.speaking {
                self.speaking.push((e.id, e.level));
            }
        }
        // Loudest first; ties by id so the order does not depend on arrival.
        self.speaking
            .sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));

        let Some(&(loudest, loudest_level)) = self.speaking.first() else {
            self.challenger = None;
            return self.active;
        };
        match self.active {
            None => {
                self.active = Some(loudest);
                self.challenger = None;
            }
            Some(a) if a == loudest => self.challenger = None,
            Some(a) => {
                let current = self.index.get(&a).map(|&i| &self.entries[i]);
                let qualifies = match current {
                    Some(cur) if cur.speaking => loudest_level > cur.level + c.switch_margin_db,
                    _ => true,
                };
                if qualifies {
                    // Only ticks in which the challenger actually made sound
                    // count towards the hold: its release tail (hangover)
                    // must not turn a cough into a takeover.
                    let voiced = self
                        .index
                        .get(&loudest)
                        .is_some_and(|&i| self.entries[i].last_frame > c.vad_on_dbov);
                    let n = match self.challenger {
                        Some((id, n)) if id == loudest => n + u32::from(voiced),
                        _ => u32::from(voiced),
                    };
                    if n >= c.hold_ticks {
                        self.active = Some(loudest);
                        self.challenger = None;
                    } else {
                        self.challenger = Some((loudest, n));
                    }
                } else {
                    self.challenger = None;
                }
            }
        }
        self.active
    }

    pub fn active(&self) -> Option<ParticipantId> {
        self.active
    }

    /// Participants speaking after the last tick, loudest first, with levels in dBov.
    pub fn speaking(&self) -> &[(ParticipantId, f32)] {
        &self.speaking
    }

    pub fn is_speaking(&self, id: ParticipantId) -> bool {
        self.index
            .get(&id)
            .is_some_and(|&i| self.entries[i].speaking)
    }

    /// Smoothed level in dBov.
    pub fn level_dbov(&self, id: ParticipantId) -> Option<f32> {
        self.index.get(&id).map(|&i| self.entries[i].level)
    }

    /// Every participant's smoothed level in dBov.
    pub fn levels(&self) -> impl Iterator<Item = (ParticipantId, f32)> + '_ {
        self.entries.iter().map(|e| (e.id, e.level))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mean square of a sine at `dbov` (sine peak = 0 dBov is -3 dBov RMS; we
    /// just want relative levels here).
    fn ms(dbov: f32) -> f32 {
        32768.0 * 32768.0 * 10f32.powf(dbov / 10.0)
    }

    /// Deterministic jitter of ±1.5 dB.
    struct Lcg(u64);
    impl Lcg {
        fn jitter(&mut self) -> f32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 3.0
        }
    }

    const A: ParticipantId = ParticipantId(1);
    const B: ParticipantId = ParticipantId(2);
    const C: ParticipantId = ParticipantId(3);

    #[test]
    fn first_talker_takes_the_floor_at_once() {
        let mut d = SpeakerDetector::new(SpeakerConfig::default());
        d.add(A);
        d.add(B);
        assert_eq!(d.tick(), None);
        let mut t = 0;
        while d.active().is_none() {
            d.observe(A, ms(-20.0));
            d.observe(B, ms(-70.0));
            d.tick();
            t += 1;
        }
        assert_eq!(d.active(), Some(A));
        assert!(t <= 3, "{t} ticks");
        assert!(d.is_speaking(A) && !d.is_speaking(B));
    }

    #[test]
    fn clearly_louder_participant_wins_within_a_second() {
        let mut d = SpeakerDetector::new(SpeakerConfig::default());
        let mut rng = Lcg(7);
        for _ in 0..100 {
            d.observe(A, ms(-30.0 + rng.jitter()));
            d.observe(B, ms(-60.0));
            d.tick();
        }
        assert_eq!(d.active(), Some(A));
        // B starts talking 12 dB louder than A, who keeps talking.
        let mut switched_at = None;
        for t in 1..=100 {
            d.observe(A, ms(-30.0 + rng.jitter()));
            d.observe(B, ms(-18.0 + rng.jitter()));
            if d.tick() == Some(B) && switched_at.is_none() {
                switched_at = Some(t);
            }
        }
        let t = switched_at.expect("B never became active");
        assert!(t <= 50, "switched after {t} ticks");
        assert!(t >= 10, "switched after only {t} ticks: no hold");
        assert_eq!(d.active(), Some(B));
    }

    #[test]
    fn a_cough_does_not_steal_the_floor() {
        let mut d = SpeakerDetector::new(SpeakerConfig::default());
        for t in 0..200 {
            d.observe(A, ms(-30.0));
            // B: 200 ms very loud burst every 1.5 s.
            if t % 75 >= 65 {
                d.observe(B, ms(-10.0));
            }
            d.tick();
            if t > 3 {
                assert_eq!(d.active(), Some(A), "tick {t}");
            }
        }
    }

    #[test]
    fn equal_talkers_do_not_flap() {
        let mut d = SpeakerDetector::new(SpeakerConfig::default());
        let mut rng = Lcg(42);
        let mut changes = 0;
        let mut last = None;
        for _ in 0..3000 {
            d.observe(A, ms(-25.0 + rng.jitter()));
            d.observe(B, ms(-25.0 + rng.jitter()));
            d.observe(C, ms(-26.0 + rng.jitter()));
            let now = d.tick();
            if now != last {
                changes += 1;
                last = now;
            }
        }
        assert_eq!(changes, 1, "only the initial pick");
    }

    #[test]
    fn silence_keeps_the_last_speaker() {
        let mut d = SpeakerDetector::new(SpeakerConfig::default());
        for _ in 0..50 {
            d.observe(A, ms(-20.0));
            d.tick();
        }
        for _ in 0..500 {
            d.observe(A, 0.0);
            d.observe(B, ms(-80.0));
            d.tick();
        }
        assert_eq!(d.active(), Some(A));
        assert!(!d.is_speaking(A));
        assert!(d.speaking().is_empty());
        assert_eq!(d.level_dbov(A), Some(SILENCE_DBOV));
    }

    #[test]
    fn quiet_speaker_is_replaced_by_the_only_talker() {
        let mut d = SpeakerDetector::new(SpeakerConfig::default());
        for _ in 0..50 {
            d.observe(A, ms(-20.0));
            d.tick();
        }
        // A stops; B talks more quietly than A did. B takes over after the hold.
        let mut t = 0;
        while d.active() != Some(B) {
            d.observe(B, ms(-35.0));
            d.tick();
            t += 1;
            assert!(t <= 50);
        }
    }

    #[test]
    fn removing_the_active_speaker_clears_it() {
        let mut d = SpeakerDetector::new(SpeakerConfig::default());
        for _ in 0..5 {
            d.observe(A, ms(-20.0));
            d.tick();
        }
        assert_eq!(d.active(), Some(A));
        d.remove(A);
        assert_eq!(d.active(), None);
        assert_eq!(d.level_dbov(A), None);
    }

    #[test]
    fn energy_helpers() {
        assert_eq!(frame_energy(&[]), 0.0);
        assert_eq!(energy_to_dbov(0.0), SILENCE_DBOV);
        let full = vec![i16::MAX; 960];
        assert!(energy_to_dbov(frame_energy(&full)).abs() < 0.01);
    }
}
