//! Mix-minus with encode-once.
//!
//! Each tick the mixer picks up to [`MixerConfig::max_mixed_speakers`] loudest
//! unmuted participants with voice activity (the *mixed speakers*) and sums
//! their frames into the *base mix*. Then:
//!
//! - every other participant receives the base mix through **one shared
//!   encoder per output format** (codec, ptime): one encode serves them all;
//! - each mixed speaker receives base mix minus its own frame through an
//!   encoder of its own, so nobody ever hears themselves.
//!
//! Cascades: a participant may be *remote* (its audio came over a cascade
//! link from the native meeting) and a participant may be a *link*: what it
//! hears goes back over that link, so it hears every mixed speaker except
//! the remote ones (else the native side would hear itself, delayed). A
//! link always has an encoder of its own, fed with the base mix minus the
//! remote speakers' frames.
//!
//! So the encodes per packet time are `mixed speakers + formats in use by
//! listeners`, not N, and a participant that pushed no frame costs nothing
//! but a few bytes of bookkeeping. Encoders live across ticks (codec state is
//! continuous); a speaker's own encoder is created when it starts being mixed
//! and dropped at the first packet boundary after it stops. For ptimes above
//! 20 ms each encoder accumulates ticks and emits every 2nd/3rd tick; a new
//! speaker's own stream starts from its group's partial packet so it stays on
//! the same packet boundaries and never misses audio.
//!
//! Buffers are reused from tick to tick: after warm-up, a tick allocates only
//! when the set of mixed speakers changes (a new encoder).

use std::collections::HashMap;

use super::codec::{self, AudioEncoder, CodecKind};
use super::speaker::{SpeakerConfig, SpeakerDetector, frame_energy};
use super::{ParticipantId, TICK_SAMPLES};
use crate::error::Error;

/// Mixer tuning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixerConfig {
    /// How many talkers are summed into the mix at once.
    pub max_mixed_speakers: usize,
    /// A speaking participant outside a full mix replaces the quietest mixed
    /// one only when louder by this much (keeps own-encoders from churning).
    pub mix_switch_margin_db: f32,
    pub speaker: SpeakerConfig,
}

impl Default for MixerConfig {
    fn default() -> Self {
        Self {
            max_mixed_speakers: 3,
            mix_switch_margin_db: 6.0,
            speaker: SpeakerConfig::default(),
        }
    }
}

/// What a participant receives: codec and packet time (a multiple of 20 ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutputFormat {
    pub codec: CodecKind,
    pub ptime_ms: u32,
}

impl OutputFormat {
    fn validate(self) -> Result<Self, Error> {
        if self.ptime_ms == 0
            || !self.ptime_ms.is_multiple_of(20)
            || !self.codec.supports_ptime(self.ptime_ms)
        {
            return Err(Error::UnsupportedPtime {
                codec: self.codec,
                ptime_ms: self.ptime_ms,
            });
        }
        Ok(self)
    }

    fn ticks(self) -> usize {
        self.ptime_ms as usize / 20
    }
}

/// One encoded RTP payload and who should get it.
#[derive(Debug, Clone, Default)]
pub struct EncodedPayload {
    pub bytes: Vec<u8>,
    pub receivers: Vec<ParticipantId>,
    /// True for a group's base mix, false for a speaker's own mix-minus.
    pub shared: bool,
    pub format: Option<OutputFormat>,
}

/// Everything to send after a tick.
#[derive(Debug, Clone, Default)]
pub struct MixOutput {
    pub payloads: Vec<EncodedPayload>,
}

/// Counters for the API and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MixStats {
    /// Ticks run so far.
    pub ticks: u64,
    pub participants: usize,
    /// Distinct output formats (encode groups).
    pub groups: usize,
    pub mixed_speakers: usize,
    /// Mixed speakers whose frame was present (summed) in the last tick.
    pub frames_mixed: usize,
    /// Encoder calls in the last tick: shared + own.
    pub encodes_last_tick: usize,
    pub shared_encodes_last_tick: usize,
    pub own_encodes_last_tick: usize,
    /// Encoder failures since creation (the payload was skipped).
    pub encode_errors: u64,
}

/// An encoder fed tick by tick, emitting once per ptime.
struct Accumulator {
    encoder: Box<dyn AudioEncoder>,
    pcm: Vec<i16>,
    frame: usize,
}

impl Accumulator {
    fn new(fmt: OutputFormat) -> Result<Self, Error> {
        let frame = fmt.ticks() * TICK_SAMPLES;
        Ok(Self {
            encoder: codec::encoder(fmt.codec, fmt.ptime_ms)?,
            pcm: Vec::with_capacity(frame),
            frame,
        })
    }

    /// Adds a tick; returns true when a packet's worth is ready.
    fn push(&mut self, tick: &[i16]) -> bool {
        self.pcm.extend_from_slice(tick);
        self.pcm.len() >= self.frame
    }

    fn encode(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        let r = self.encoder.encode(&self.pcm, out);
        self.pcm.clear();
        r
    }
}

struct Group {
    format: OutputFormat,
    acc: Accumulator,
    receivers: Vec<ParticipantId>,
}

struct Participant {
    id: ParticipantId,
    format: OutputFormat,
    group: usize,
    muted: bool,
    frame: Vec<i16>,
    has_frame: bool,
    mixed: bool,
    /// Own mix-minus stream, while mixed (and until its next packet boundary);
    /// always, for a link.
    own: Option<Accumulator>,
    /// Its audio came over a cascade link.
    remote: bool,
    /// It is a cascade link: it must not hear remote participants.
    link: bool,
    /// Always mixed while it speaks, beyond `max_mixed_speakers`: the mix
    /// of another node's part of the conference (many people in one).
    priority: bool,
    /// Which link: for a remote participant the link its audio came over,
    /// for a link the one it feeds. A link never hears remote audio of its
    /// own link group (0: the cascade's).
    link_group: u32,
}

/// The audio mixer of one conference. See the module docs.
pub struct AudioMixer {
    cfg: MixerConfig,
    participants: Vec<Participant>,
    index: HashMap<ParticipantId, usize>,
    groups: Vec<Group>,
    detector: SpeakerDetector,
    /// Indices of the mixed speakers.
    mixed: Vec<usize>,
    base: Vec<i32>,
    base_pcm: Vec<i16>,
    scratch_pcm: Vec<i16>,
    /// Scratch for a link group's mix.
    local: Vec<i32>,
    /// Each link group's mix (the base mix less its own remote speakers),
    /// and whether it was made this tick.
    link_mixes: Vec<(u32, Vec<i16>, bool)>,
    output: MixOutput,
    pool: Vec<EncodedPayload>,
    stats: MixStats,
}

impl std::fmt::Debug for AudioMixer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioMixer")
            .field("participants", &self.participants.len())
            .field("groups", &self.groups.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Soft limiter: identity up to -2.5 dBFS, then a smooth knee into full scale.
#[inline]
fn limit(x: i32) -> i16 {
    const KNEE: i32 = 24576;
    const ROOM: i64 = (i16::MAX as i32 - KNEE) as i64;
    let a = x.abs();
    if a <= KNEE {
        return x as i16;
    }
    let e = i64::from(a - KNEE);
    let y = KNEE + (ROOM * e / (e + ROOM)) as i32;
    (if x < 0 { -y } else { y }) as i16
}

impl AudioMixer {
    pub fn new(cfg: MixerConfig) -> Self {
        Self {
            cfg,
            participants: Vec::new(),
            index: HashMap::new(),
            groups: Vec::new(),
            detector: SpeakerDetector::new(cfg.speaker),
            mixed: Vec::with_capacity(cfg.max_mixed_speakers),
            base: vec![0; TICK_SAMPLES],
            base_pcm: vec![0; TICK_SAMPLES],
            scratch_pcm: vec![0; TICK_SAMPLES],
            local: vec![0; TICK_SAMPLES],
            link_mixes: Vec::new(),
            output: MixOutput::default(),
            pool: Vec::new(),
            stats: MixStats::default(),
        }
    }

    pub fn add_participant(
        &mut self,
        id: ParticipantId,
        format: OutputFormat,
    ) -> Result<(), Error> {
        let format = format.validate()?;
        if self.index.contains_key(&id) {
            return Err(Error::DuplicateParticipant(id));
        }
        let group = self.group_for(format)?;
        self.index.insert(id, self.participants.len());
        self.participants.push(Participant {
            id,
            format,
            group,
            muted: false,
            frame: vec![0; TICK_SAMPLES],
            has_frame: false,
            mixed: false,
            own: None,
            remote: false,
            link: false,
            priority: false,
            link_group: 0,
        });
        self.detector.add(id);
        Ok(())
    }

    pub fn remove_participant(&mut self, id: ParticipantId) -> Result<(), Error> {
        let i = self
            .index
            .remove(&id)
            .ok_or(Error::UnknownParticipant(id))?;
        self.participants.swap_remove(i);
        if let Some(moved) = self.participants.get(i) {
            self.index.insert(moved.id, i);
        }
        self.detector.remove(id);
        self.rebuild_mixed();
        self.drop_unused_groups();
        Ok(())
    }

    /// Changes what `id` receives (codec change on re-INVITE). Its stream
    /// restarts in the new format's group.
    pub fn set_output_format(
        &mut self,
        id: ParticipantId,
        format: OutputFormat,
    ) -> Result<(), Error> {
        let format = format.validate()?;
        let i = self.slot(id)?;
        if self.participants[i].format == format {
            return Ok(());
        }
        let group = self.group_for(format)?;
        let p = &mut self.participants[i];
        p.format = format;
        p.group = group;
        // Recreated in the new format at the next tick if still mixed;
        // a link's at once.
        p.own = if p.link {
            Some(Accumulator::new(format)?)
        } else {
            None
        };
        self.drop_unused_groups();
        Ok(())
    }

    /// Marks `id` as heard over a cascade link (a native meeting's
    /// participant): links never get its audio back.
    pub fn set_remote(&mut self, id: ParticipantId, remote: bool) -> Result<(), Error> {
        let i = self.slot(id)?;
        self.participants[i].remote = remote;
        Ok(())
    }

    /// Marks `id` as a cascade link: it hears the local speakers only.
    pub fn set_link(&mut self, id: ParticipantId, link: bool) -> Result<(), Error> {
        let i = self.slot(id)?;
        let p = &mut self.participants[i];
        p.link = link;
        if link && p.own.is_none() {
            p.own = Some(Accumulator::new(p.format)?);
        }
        Ok(())
    }

    /// Puts `id` (a remote participant or a link) in link group `group`: a
    /// link hears every mixed speaker except the remote ones of its own
    /// group. Group 0 (the default) is the cascade's; a conference spanning
    /// nodes gives each node-to-node link a group of its own, so that a home
    /// sends each satellite the others' audio, never that satellite's own.
    pub fn set_link_group(&mut self, id: ParticipantId, group: u32) -> Result<(), Error> {
        let i = self.slot(id)?;
        self.participants[i].link_group = group;
        Ok(())
    }

    /// Marks `id` as always mixed while it speaks, outside the
    /// `max_mixed_speakers` count (a spanned conference's link: its audio
    /// is another node's mix, and must never lose its place to a local
    /// talker by the switch margin).
    pub fn set_priority(&mut self, id: ParticipantId, priority: bool) -> Result<(), Error> {
        let i = self.slot(id)?;
        self.participants[i].priority = priority;
        Ok(())
    }

    /// A muted participant is never mixed; its frames are ignored. It keeps receiving.
    pub fn set_muted(&mut self, id: ParticipantId, muted: bool) -> Result<(), Error> {
        let i = self.slot(id)?;
        let p = &mut self.participants[i];
        p.muted = muted;
        if muted {
            p.has_frame = false;
        }
        Ok(())
    }

    /// `id`'s decoded 20 ms frame (960 samples at 48 kHz) for this tick.
    pub fn push_frame(&mut self, id: ParticipantId, pcm: &[i16]) -> Result<(), Error> {
        let i = self.slot(id)?;
        if pcm.len() != TICK_SAMPLES {
            return Err(Error::FrameLength {
                expected: TICK_SAMPLES,
                got: pcm.len(),
            });
        }
        let p = &mut self.participants[i];
        if p.muted {
            return Ok(());
        }
        p.frame.copy_from_slice(pcm);
        p.has_frame = true;
        self.detector.observe(id, frame_energy(pcm));
        Ok(())
    }

    /// Mixes and encodes one tick. Payloads are valid until the next call.
    pub fn tick(&mut self) -> &MixOutput {
        for mut p in self.output.payloads.drain(..) {
            p.bytes.clear();
            p.receivers.clear();
            self.pool.push(p);
        }
        self.detector.tick();
        self.select_speakers();

        // Base mix: only the mixed speakers' frames are touched.
        self.base.fill(0);
        let mut frames_mixed = 0;
        for &i in &self.mixed {
            let p = &self.participants[i];
            if p.has_frame {
                frames_mixed += 1;
                for (b, &s) in self.base.iter_mut().zip(&p.frame) {
                    *b += i32::from(s);
                }
            }
        }
        for (o, &b) in self.base_pcm.iter_mut().zip(&self.base) {
            *o = limit(b);
        }
        // What links hear: the base mix less the remote speakers of their
        // own link group (one mix per group in use).
        for g in &mut self.link_mixes {
            g.2 = false;
        }
        for i in 0..self.participants.len() {
            let p = &self.participants[i];
            if !p.link {
                continue;
            }
            let group = p.link_group;
            if self.link_mixes.iter().any(|g| g.0 == group && g.2) {
                continue;
            }
            let k = match self.link_mixes.iter().position(|g| g.0 == group) {
                Some(k) => k,
                None => {
                    self.link_mixes.push((group, vec![0; TICK_SAMPLES], true));
                    self.link_mixes.len() - 1
                }
            };
            self.link_mixes[k].2 = true;
            let own_remote_mixed = self.mixed.iter().any(|&j| {
                let q = &self.participants[j];
                q.remote && q.has_frame && q.link_group == group
            });
            if own_remote_mixed {
                self.local.copy_from_slice(&self.base);
                for &j in &self.mixed {
                    let q = &self.participants[j];
                    if q.remote && q.has_frame && q.link_group == group {
                        for (l, &s) in self.local.iter_mut().zip(&q.frame) {
                            *l -= i32::from(s);
                        }
                    }
                }
                for (o, &l) in self.link_mixes[k].1.iter_mut().zip(&self.local) {
                    *o = limit(l);
                }
            } else {
                self.link_mixes[k].1.copy_from_slice(&self.base_pcm);
            }
        }

        let mut own_encodes = 0;
        let mut errors = 0;
        for g in &mut self.groups {
            g.receivers.clear();
        }
        for p in &mut self.participants {
            let Some(own) = p.own.as_mut() else {
                self.groups[p.group].receivers.push(p.id);
                p.has_frame = false;
                continue;
            };
            let tick_pcm: &[i16] = if p.link {
                let link_pcm = self
                    .link_mixes
                    .iter()
                    .find(|g| g.0 == p.link_group)
                    .map_or(&self.base_pcm, |g| &g.1);
                // A link's own frame (if it sent one: the local side never
                // hears a link as a speaker of its own) is remote audio.
                if p.mixed && p.has_frame && !p.remote {
                    for ((o, &b), &s) in self.scratch_pcm.iter_mut().zip(link_pcm).zip(&p.frame) {
                        *o = limit(i32::from(b) - i32::from(s));
                    }
                    &self.scratch_pcm
                } else {
                    link_pcm
                }
            } else if p.mixed && p.has_frame {
                for ((o, &b), &s) in self.scratch_pcm.iter_mut().zip(&self.base).zip(&p.frame) {
                    *o = limit(b - i32::from(s));
                }
                &self.scratch_pcm
            } else {
                // Not in the base mix (absent frame, or draining after it
                // stopped being mixed): the base mix is already mix-minus.
                &self.base_pcm
            };
            if own.push(tick_pcm) {
                let mut payload = self.pool.pop().unwrap_or_default();
                match own.encode(&mut payload.bytes) {
                    Ok(()) => {
                        own_encodes += 1;
                        payload.receivers.push(p.id);
                        payload.shared = false;
                        payload.format = Some(p.format);
                        self.output.payloads.push(payload);
                    }
                    Err(_) => {
                        errors += 1;
                        self.pool.push(payload);
                    }
                }
            }
            if !p.mixed && !p.link && own.pcm.is_empty() {
                p.own = None;
            }
            p.has_frame = false;
        }

        let mut shared_encodes = 0;
        for g in &mut self.groups {
            // Groups without listeners still accumulate so that a new
            // speaker's own stream can start from the right packet phase.
            if !g.acc.push(&self.base_pcm) {
                continue;
            }
            if g.receivers.is_empty() {
                g.acc.pcm.clear();
                continue;
            }
            let mut payload = self.pool.pop().unwrap_or_default();
            match g.acc.encode(&mut payload.bytes) {
                Ok(()) => {
                    shared_encodes += 1;
                    payload.receivers.extend_from_slice(&g.receivers);
                    payload.shared = true;
                    payload.format = Some(g.format);
                    self.output.payloads.push(payload);
                }
                Err(_) => {
                    errors += 1;
                    self.pool.push(payload);
                }
            }
        }

        self.stats.ticks += 1;
        self.stats.participants = self.participants.len();
        self.stats.groups = self.groups.len();
        self.stats.mixed_speakers = self.mixed.len();
        self.stats.frames_mixed = frames_mixed;
        self.stats.shared_encodes_last_tick = shared_encodes;
        self.stats.own_encodes_last_tick = own_encodes;
        self.stats.encodes_last_tick = shared_encodes + own_encodes;
        self.stats.encode_errors += errors;
        &self.output
    }

    /// The output of the last tick.
    pub fn output(&self) -> &MixOutput {
        &self.output
    }

    pub fn active_speaker(&self) -> Option<ParticipantId> {
        self.detector.active()
    }

    /// Participants currently summed into the mix.
    pub fn mixed_speakers(&self) -> impl Iterator<Item = ParticipantId> + '_ {
        self.mixed.iter().map(|&i| self.participants[i].id)
    }

    pub fn is_speaking(&self, id: ParticipantId) -> bool {
        self.detector.is_speaking(id)
    }

    /// Smoothed level of every participant, in dBov.
    pub fn levels(&self) -> impl Iterator<Item = (ParticipantId, f32)> + '_ {
        self.detector.levels()
    }

    pub fn stats(&self) -> MixStats {
        self.stats
    }

    fn slot(&self, id: ParticipantId) -> Result<usize, Error> {
        self.index
            .get(&id)
            .copied()
            .ok_or(Error::UnknownParticipant(id))
    }

    fn group_for(&mut self, format: OutputFormat) -> Result<usize, Error> {
        if let Some(g) = self.groups.iter().position(|g| g.format == format) {
            return Ok(g);
        }
        self.groups.push(Group {
            format,
            acc: Accumulator::new(format)?,
            receivers: Vec::new(),
        });
        Ok(self.groups.len() - 1)
    }

    fn drop_unused_groups(&mut self) {
        let before = self.groups.len();
        let participants = &self.participants;
        self.groups
            .retain(|g| participants.iter().any(|p| p.format == g.format));
        if self.groups.len() != before {
            for p in &mut self.participants {
                p.group = self
                    .groups
                    .iter()
                    .position(|g| g.format == p.format)
                    .unwrap_or(0);
            }
        }
    }

    /// Re-derives the index list after participants moved.
    fn rebuild_mixed(&mut self) {
        self.mixed.clear();
        self.mixed.extend(
            self.participants
                .iter()
                .enumerate()
                .filter(|(_, p)| p.mixed)
                .map(|(i, _)| i),
        );
    }

    /// Chooses this tick's mixed speakers, with hysteresis, and gives new
    /// ones their own encoder.
    fn select_speakers(&mut self) {
        let max = self.cfg.max_mixed_speakers;
        // Drop those who stopped speaking or were muted.
        let detector = &self.detector;
        let participants = &mut self.participants;
        self.mixed.retain(|&i| {
            let p = &mut participants[i];
            let keep = !p.muted && detector.is_speaking(p.id);
            p.mixed = keep;
            keep
        });
        // Priority talkers (other nodes' mixes) are always in.
        for &(id, _) in self.detector.speaking() {
            if let Some(&i) = self.index.get(&id) {
                let p = &mut self.participants[i];
                if p.priority && !p.mixed && !p.muted {
                    p.mixed = true;
                    self.mixed.push(i);
                }
            }
        }
        // Fill free slots loudest first, then let a clearly louder talker
        // replace the quietest mixed one (one change per tick).
        for &(id, level) in self.detector.speaking() {
            let Some(&i) = self.index.get(&id) else {
                continue;
            };
            let p = &self.participants[i];
            if p.mixed || p.muted {
                continue;
            }
            let counted = self
                .mixed
                .iter()
                .filter(|&&j| !self.participants[j].priority)
                .count();
            if counted < max {
                self.mixed.push(i);
                self.participants[i].mixed = true;
                continue;
            }
            let quietest = self
                .mixed
                .iter()
                .enumerate()
                .filter(|&(_, &j)| !self.participants[j].priority)
                .map(|(k, &j)| {
                    (
                        k,
                        self.detector
                            .level_dbov(self.participants[j].id)
                            .unwrap_or(f32::MIN),
                    )
                })
                .min_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((k, q)) = quietest
                && level > q + self.cfg.mix_switch_margin_db
            {
                let out = self.mixed[k];
                self.participants[out].mixed = false;
                self.mixed[k] = i;
                self.participants[i].mixed = true;
            }
            // The speaking list is loudest first: nobody after this is louder.
            break;
        }
        // New speakers get their own encoder, picking up the partial packet
        // of their group so packet boundaries stay aligned.
        for &i in &self.mixed {
            let p = &mut self.participants[i];
            if p.own.is_some() {
                continue;
            }
            match Accumulator::new(p.format) {
                Ok(mut acc) => {
                    acc.pcm.extend_from_slice(&self.groups[p.group].acc.pcm);
                    p.own = Some(acc);
                }
                // Cannot happen for a validated format; the speaker then
                // keeps getting the shared stream (and hears itself).
                Err(_) => self.stats.encode_errors += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::audio::codec::{AudioDecoder, decoder};
    use crate::audio::testutil::{goertzel, rms, sine_at};

    fn fmt(codec: CodecKind, ptime_ms: u32) -> OutputFormat {
        OutputFormat { codec, ptime_ms }
    }

    /// Decodes whatever each participant receives, checking it gets exactly
    /// one payload per ptime.
    struct Ears {
        decoders: HashMap<ParticipantId, (Box<dyn AudioDecoder>, Vec<i16>)>,
    }

    impl Ears {
        fn new(parts: &[(ParticipantId, OutputFormat)]) -> Self {
            let decoders = parts
                .iter()
                .map(|&(id, f)| (id, (decoder(f.codec).unwrap(), Vec::new())))
                .collect();
            Self { decoders }
        }

        fn hear(&mut self, out: &MixOutput) {
            let mut seen = Vec::new();
            for p in &out.payloads {
                for r in &p.receivers {
                    assert!(!seen.contains(r), "{r:?} got two payloads in one tick");
                    seen.push(*r);
                    let (dec, pcm) = self.decoders.get_mut(r).unwrap();
                    dec.decode(&p.bytes, pcm).unwrap();
                }
            }
        }

        fn tail(&self, id: ParticipantId, samples: usize) -> &[i16] {
            let pcm = &self.decoders[&id].1;
            &pcm[pcm.len() - samples..]
        }
    }

    const TONES: [f64; 3] = [400.0, 700.0, 1100.0];

    #[test]
    fn speakers_hear_the_others_but_never_themselves() {
        let speakers = [
            (ParticipantId(1), fmt(CodecKind::Pcmu, 20)),
            (ParticipantId(2), fmt(CodecKind::G722, 20)),
            (ParticipantId(3), fmt(CodecKind::Opus, 20)),
        ];
        let listeners: Vec<_> = (10..20)
            .map(|i| (ParticipantId(i), fmt(CodecKind::Opus, 20)))
            .collect();
        let mut mixer = AudioMixer::new(MixerConfig::default());
        let all: Vec<_> = speakers.iter().chain(&listeners).copied().collect();
        for &(id, f) in &all {
            mixer.add_participant(id, f).unwrap();
        }
        let mut ears = Ears::new(&all);
        for t in 0..75 {
            for (k, &(id, _)) in speakers.iter().enumerate() {
                mixer
                    .push_frame(id, &sine_at(TONES[k], 48000.0, 6000.0, t * 960, 960))
                    .unwrap();
            }
            ears.hear(mixer.tick());
            if t >= 5 {
                let s = mixer.stats();
                let out = mixer.output();
                assert_eq!(s.mixed_speakers, 3);
                // Three own mix-minus encodes plus one shared Opus encode; the
                // G.711 and G.722 groups have no listeners.
                assert_eq!(s.encodes_last_tick, 4, "tick {t}");
                let shared: Vec<_> = out.payloads.iter().filter(|p| p.shared).collect();
                assert_eq!(shared.len(), 1);
                assert_eq!(shared[0].receivers.len(), listeners.len());
            }
        }
        // Judge the last second (skipping codec start-up).
        for (k, &(id, f)) in speakers.iter().enumerate() {
            let x = ears.tail(id, 48000);
            for (j, &tone) in TONES.iter().enumerate() {
                let a = goertzel(x, tone, 48000.0);
                if j == k {
                    assert!(a < 150.0, "{f:?} speaker hears itself: {a:.0}");
                } else {
                    assert!(a > 3000.0, "{f:?} speaker misses {tone} Hz: {a:.0}");
                }
            }
        }
        for &(id, _) in &listeners {
            let x = ears.tail(id, 48000);
            for &tone in &TONES {
                assert!(goertzel(x, tone, 48000.0) > 3000.0);
            }
        }
    }

    #[test]
    fn a_priority_talker_is_mixed_beyond_the_limit_and_never_displaced() {
        let ids: Vec<ParticipantId> = (1..=5).map(ParticipantId).collect();
        let mut mixer = AudioMixer::new(MixerConfig::default());
        for id in &ids {
            mixer
                .add_participant(*id, fmt(CodecKind::Opus, 20))
                .unwrap();
        }
        // The quietest talker is another node's mix.
        let link_in = ids[4];
        mixer.set_priority(link_in, true).unwrap();
        let freqs = [400.0, 700.0, 1100.0, 1300.0, 1700.0];
        for t in 0..50 {
            for (k, id) in ids.iter().enumerate() {
                let amplitude = if *id == link_in { 1500.0 } else { 8000.0 };
                mixer
                    .push_frame(*id, &sine_at(freqs[k], 48000.0, amplitude, t * 960, 960))
                    .unwrap();
            }
            mixer.tick();
        }
        let mixed: Vec<ParticipantId> = mixer.mixed_speakers().collect();
        assert!(mixed.contains(&link_in), "{mixed:?}");
        assert_eq!(
            mixed.len(),
            4,
            "three local talkers and the link: {mixed:?}"
        );
    }

    #[test]
    fn a_cascade_link_hears_local_speakers_only() {
        let local = (ParticipantId(1), fmt(CodecKind::Pcmu, 20));
        let remote = (ParticipantId(2), fmt(CodecKind::Opus, 20));
        let link = (ParticipantId(3), fmt(CodecKind::Opus, 20));
        let listener = (ParticipantId(10), fmt(CodecKind::Opus, 20));
        let all = [local, remote, link, listener];
        let mut mixer = AudioMixer::new(MixerConfig::default());
        for &(id, f) in &all {
            mixer.add_participant(id, f).unwrap();
        }
        mixer.set_remote(remote.0, true).unwrap();
        mixer.set_link(link.0, true).unwrap();
        let mut ears = Ears::new(&all);
        for t in 0..75 {
            mixer
                .push_frame(local.0, &sine_at(TONES[0], 48000.0, 6000.0, t * 960, 960))
                .unwrap();
            mixer
                .push_frame(remote.0, &sine_at(TONES[1], 48000.0, 6000.0, t * 960, 960))
                .unwrap();
            ears.hear(mixer.tick());
        }
        let level = |id: ParticipantId, tone: f64| goertzel(ears.tail(id, 48000), tone, 48000.0);
        // The link carries the local speaker, never the remote one back.
        assert!(level(link.0, TONES[0]) > 3000.0);
        assert!(
            level(link.0, TONES[1]) < 150.0,
            "{}",
            level(link.0, TONES[1])
        );
        // Everyone local hears the remote speaker; the remote one hears the
        // local one and not itself.
        assert!(level(listener.0, TONES[0]) > 3000.0 && level(listener.0, TONES[1]) > 3000.0);
        assert!(level(local.0, TONES[1]) > 3000.0 && level(local.0, TONES[0]) < 150.0);
        assert!(level(remote.0, TONES[0]) > 3000.0 && level(remote.0, TONES[1]) < 150.0);
        // Nobody speaks: the link still gets a packet every tick (silence).
        for _ in 0..3 {
            mixer.tick();
            assert!(
                mixer
                    .output()
                    .payloads
                    .iter()
                    .any(|p| p.receivers.contains(&link.0))
            );
        }
    }

    #[test]
    fn each_link_group_hears_everyone_but_its_own_remote_side() {
        // A home with two satellites: each link carries the home's talker
        // and the other satellite, never its own satellite's mix back.
        let opus = fmt(CodecKind::Opus, 20);
        let (local, r1, r2, l1, l2) = (
            ParticipantId(1),
            ParticipantId(2),
            ParticipantId(3),
            ParticipantId(4),
            ParticipantId(5),
        );
        let all = [
            (local, opus),
            (r1, opus),
            (r2, opus),
            (l1, opus),
            (l2, opus),
        ];
        let mut mixer = AudioMixer::new(MixerConfig::default());
        for &(id, f) in &all {
            mixer.add_participant(id, f).unwrap();
        }
        for (remote, link, group) in [(r1, l1, 1), (r2, l2, 2)] {
            mixer.set_remote(remote, true).unwrap();
            mixer.set_link_group(remote, group).unwrap();
            mixer.set_link(link, true).unwrap();
            mixer.set_link_group(link, group).unwrap();
        }
        let mut ears = Ears::new(&all);
        for t in 0..75 {
            for (k, id) in [local, r1, r2].into_iter().enumerate() {
                mixer
                    .push_frame(id, &sine_at(TONES[k], 48000.0, 6000.0, t * 960, 960))
                    .unwrap();
            }
            ears.hear(mixer.tick());
        }
        let level = |id: ParticipantId, tone: f64| goertzel(ears.tail(id, 48000), tone, 48000.0);
        assert!(level(l1, TONES[0]) > 3000.0 && level(l1, TONES[2]) > 3000.0);
        assert!(level(l1, TONES[1]) < 150.0, "{}", level(l1, TONES[1]));
        assert!(level(l2, TONES[0]) > 3000.0 && level(l2, TONES[1]) > 3000.0);
        assert!(level(l2, TONES[2]) < 150.0, "{}", level(l2, TONES[2]));
    }

    #[test]
    fn encodes_scale_with_speakers_and_formats_not_participants() {
        let mut mixer = AudioMixer::new(MixerConfig::default());
        for i in 0..200 {
            let f = match i % 4 {
                0 => fmt(CodecKind::Pcmu, 20),
                1 => fmt(CodecKind::Opus, 20),
                2 => fmt(CodecKind::Opus, 20),
                _ => fmt(CodecKind::G722, 20),
            };
            mixer.add_participant(ParticipantId(i), f).unwrap();
        }
        // Five talkers (ids 1, 5, 9, 13, 17 are all Opus), different loudness.
        for t in 0..40 {
            for (k, id) in [1u64, 5, 9, 13, 17].into_iter().enumerate() {
                let amp = 8000.0 / (k + 1) as f64;
                mixer
                    .push_frame(
                        ParticipantId(id),
                        &sine_at(300.0 + 100.0 * k as f64, 48000.0, amp, t * 960, 960),
                    )
                    .unwrap();
            }
            let out = mixer.tick();
            let receivers: usize = out.payloads.iter().map(|p| p.receivers.len()).sum();
            assert_eq!(receivers, 200, "everyone gets exactly one payload");
        }
        let s = mixer.stats();
        assert_eq!(s.mixed_speakers, 3);
        assert_eq!(s.groups, 3);
        assert_eq!(s.own_encodes_last_tick, 3);
        assert_eq!(s.shared_encodes_last_tick, 3);
        let mixed: Vec<_> = mixer.mixed_speakers().collect();
        for loud in [1, 5, 9] {
            assert!(mixed.contains(&ParticipantId(loud)), "{mixed:?}");
        }
        assert_eq!(mixer.active_speaker(), Some(ParticipantId(1)));
        assert!(mixer.is_speaking(ParticipantId(17)));
        assert!(!mixer.is_speaking(ParticipantId(0)));
    }

    #[test]
    fn silence_still_sends_a_steady_shared_stream() {
        let mut mixer = AudioMixer::new(MixerConfig::default());
        for i in 0..5 {
            mixer
                .add_participant(ParticipantId(i), fmt(CodecKind::Opus, 20))
                .unwrap();
        }
        mixer
            .add_participant(ParticipantId(9), fmt(CodecKind::Pcma, 20))
            .unwrap();
        for _ in 0..10 {
            let out = mixer.tick();
            assert_eq!(out.payloads.len(), 2);
            assert!(out.payloads.iter().all(|p| p.shared && !p.bytes.is_empty()));
        }
        assert_eq!(mixer.stats().encodes_last_tick, 2);
        assert_eq!(mixer.stats().mixed_speakers, 0);
        assert_eq!(mixer.active_speaker(), None);
    }

    #[test]
    fn long_ptimes_emit_every_few_ticks_without_gaps_across_speaker_changes() {
        let a = ParticipantId(1);
        let b = ParticipantId(2);
        let parts = [
            (a, fmt(CodecKind::Pcma, 40)),
            (b, fmt(CodecKind::Opus, 60)),
            (ParticipantId(3), fmt(CodecKind::G722, 40)),
        ];
        let mut mixer = AudioMixer::new(MixerConfig::default());
        for &(id, f) in &parts {
            mixer.add_participant(id, f).unwrap();
        }
        let mut ears = Ears::new(&parts);
        let mut got = HashMap::<ParticipantId, Vec<usize>>::new();
        for t in 0..240 {
            // a talks in bursts starting mid-packet; b talks from tick 61 on.
            if (7..50).contains(&t) || (113..170).contains(&t) {
                mixer
                    .push_frame(a, &sine_at(500.0, 48000.0, 8000.0, t * 960, 960))
                    .unwrap();
            }
            if t >= 61 {
                mixer
                    .push_frame(b, &sine_at(900.0, 48000.0, 8000.0, t * 960, 960))
                    .unwrap();
            }
            let out = mixer.tick();
            for p in &out.payloads {
                for r in &p.receivers {
                    got.entry(*r).or_default().push(t);
                    let bytes = p.bytes.len();
                    match *r {
                        x if x == a => assert_eq!(bytes, 320),
                        x if x == b => assert!(bytes > 0),
                        _ => assert_eq!(bytes, 320),
                    }
                }
            }
            ears.hear(out);
        }
        // One payload per ptime, on fixed boundaries, no gaps.
        let every = |n: usize| (0..240).filter(|t| t % n == n - 1).collect::<Vec<_>>();
        assert_eq!(got[&a], every(2));
        assert_eq!(got[&ParticipantId(3)], every(2));
        assert_eq!(got[&b], every(3));
        // While both talk (ticks 113..170), each hears only the other.
        let pa = &ears.decoders[&a].1[120 * 960..165 * 960];
        assert!(goertzel(pa, 900.0, 48000.0) > 3000.0);
        assert!(goertzel(pa, 500.0, 48000.0) < 200.0);
        let pb = &ears.decoders[&b].1[120 * 960..165 * 960];
        assert!(goertzel(pb, 500.0, 48000.0) > 3000.0);
        assert!(goertzel(pb, 900.0, 48000.0) < 200.0);
        // After a stops, a's own stream was retired: a is back in the shared group.
        assert!(mixer.mixed_speakers().all(|id| id == b));
    }

    #[test]
    fn muted_participant_is_not_mixed() {
        let a = ParticipantId(1);
        let l = ParticipantId(2);
        let mut mixer = AudioMixer::new(MixerConfig::default());
        mixer.add_participant(a, fmt(CodecKind::Pcmu, 20)).unwrap();
        mixer.add_participant(l, fmt(CodecKind::Pcmu, 20)).unwrap();
        let mut ears = Ears::new(&[(a, fmt(CodecKind::Pcmu, 20)), (l, fmt(CodecKind::Pcmu, 20))]);
        mixer.set_muted(a, true).unwrap();
        for t in 0..50 {
            mixer
                .push_frame(a, &sine_at(600.0, 48000.0, 8000.0, t * 960, 960))
                .unwrap();
            ears.hear(mixer.tick());
        }
        assert_eq!(mixer.stats().mixed_speakers, 0);
        assert!(rms(ears.tail(l, 9600)) < 50.0);
        mixer.set_muted(a, false).unwrap();
        for t in 50..100 {
            mixer
                .push_frame(a, &sine_at(600.0, 48000.0, 8000.0, t * 960, 960))
                .unwrap();
            ears.hear(mixer.tick());
        }
        assert_eq!(mixer.stats().mixed_speakers, 1);
        assert!(goertzel(ears.tail(l, 9600), 600.0, 48000.0) > 4000.0);
    }

    #[test]
    fn membership_changes_and_misuse() {
        let a = ParticipantId(1);
        let mut mixer = AudioMixer::new(MixerConfig::default());
        assert!(matches!(
            mixer.add_participant(a, fmt(CodecKind::Opus, 30)),
            Err(Error::UnsupportedPtime { .. })
        ));
        assert!(matches!(
            mixer.add_participant(a, fmt(CodecKind::Pcmu, 10)),
            Err(Error::UnsupportedPtime { .. })
        ));
        mixer.add_participant(a, fmt(CodecKind::Opus, 20)).unwrap();
        assert!(matches!(
            mixer.add_participant(a, fmt(CodecKind::Opus, 20)),
            Err(Error::DuplicateParticipant(_))
        ));
        assert!(matches!(
            mixer.push_frame(ParticipantId(7), &[0; 960]),
            Err(Error::UnknownParticipant(_))
        ));
        assert!(matches!(
            mixer.push_frame(a, &[0; 480]),
            Err(Error::FrameLength { .. })
        ));
        // Codec change on re-INVITE while talking: the new format takes effect at once.
        for t in 0..30 {
            mixer
                .push_frame(a, &sine_at(600.0, 48000.0, 8000.0, t * 960, 960))
                .unwrap();
            mixer.tick();
        }
        mixer
            .set_output_format(a, fmt(CodecKind::Pcmu, 20))
            .unwrap();
        mixer.push_frame(a, &[0; 960]).unwrap();
        let out = mixer.tick();
        assert_eq!(out.payloads.len(), 1);
        assert_eq!(out.payloads[0].bytes.len(), 160);
        assert_eq!(mixer.stats().groups, 1);
        mixer.remove_participant(a).unwrap();
        assert!(matches!(
            mixer.remove_participant(a),
            Err(Error::UnknownParticipant(_))
        ));
        assert!(mixer.tick().payloads.is_empty());
        assert_eq!(mixer.stats().groups, 0);
        assert_eq!(mixer.levels().count(), 0);
    }

    #[test]
    fn limiter_is_transparent_below_the_knee_and_bounded_above() {
        assert_eq!(limit(1000), 1000);
        assert_eq!(limit(-24576), -24576);
        assert!(limit(3 * 32767) > 30000);
        assert!(limit(-3 * 32768) >= -i16::MAX);
        let mut prev = limit(-200_000);
        for x in (-200_000..200_000).step_by(97) {
            let y = limit(x);
            assert!(y >= prev);
            prev = y;
        }
    }
}
