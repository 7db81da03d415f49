//! The door: PIN entry and the lobby (a small IVR), as a sans-IO core.
//!
//! A caller to a room with a PIN, or to the lobby number, is answered and
//! media flows, but the leg is held at the door: its conference does not mix
//! it, does not show it, and sends it this core's audio instead of the mix.
//! The conference task drives one [`Door`] per such leg: digits in
//! ([`Door::handle_digit`], from RFC 4733 or SIP INFO), one 20 ms frame of
//! 48 kHz audio out per tick ([`Door::handle_tick`]: a prompt, a pause, or
//! quiet comfort noise, never digital silence), and [`DoorEvent`]s out
//! ([`Door::poll_event`]): a PIN accepted or wrong, a conference ID entered
//! (the lobby: signalling decides where it lives and answers with
//! [`Door::handle_verdict`] or moves the leg), admit, hang up.
//!
//! The prompts are pre-rendered with espeak-ng by `deploy/prompts/render.sh`
//! into `bridge/assets/prompts/*.raw` (8 kHz s16le mono) and built into the
//! binary; each is resampled to the mixer's 48 kHz once, on first use, and
//! then shared by every door.
//!
//! Timers: no digit for [`DoorSettings::digit_timeout`] after a prompt ends
//! repeats the prompt (or submits the digits entered so far); the whole
//! door has [`DoorSettings::max_wait`], after which the caller hears a
//! goodbye and the call ends.

use std::collections::VecDeque;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tandem_mixer::audio::codec::resample::Resampler;

/// 20 ms at 48 kHz: what the conference tick consumes.
pub const FRAME_SAMPLES: usize = 960;
/// The rate the prompt assets are stored at.
const ASSET_RATE: usize = 8_000;
const MIXER_RATE: usize = 48_000;
/// A breath between two prompts, in 48 kHz samples (400 ms).
const PAUSE: usize = MIXER_RATE * 2 / 5;
/// Prompts are stored peak-normalised to -3 dBFS; played 6 dB lower, about
/// as loud as a talker in the mix.
const PROMPT_GAIN: i32 = 1; // right shift
/// Comfort noise peak (about -50 dBFS): audibly "the line is open".
const COMFORT_PEAK: i32 = 100;
/// Longest entry kept; more digits submit it.
const MAX_DIGITS: usize = 32;

/// The spoken prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prompt {
    /// "Please enter the conference PIN, followed by the pound key."
    EnterPin,
    /// "You are now joining the conference."
    Joining,
    /// "That PIN is not correct. Please try again."
    WrongPin,
    /// "Sorry, that PIN is not correct. Goodbye."
    WrongPinGoodbye,
    /// "Please enter the conference ID, followed by the pound key."
    EnterId,
    /// "That conference was not found. Please try again."
    NotFound,
    /// "Sorry, that conference was not found. Goodbye."
    NotFoundGoodbye,
    /// "Sorry, we did not receive your entry in time. Goodbye."
    TimeoutGoodbye,
    /// "Sorry, that conference is full. Goodbye."
    FullGoodbye,
}

impl Prompt {
    pub const ALL: [Prompt; 9] = [
        Prompt::EnterPin,
        Prompt::Joining,
        Prompt::WrongPin,
        Prompt::WrongPinGoodbye,
        Prompt::EnterId,
        Prompt::NotFound,
        Prompt::NotFoundGoodbye,
        Prompt::TimeoutGoodbye,
        Prompt::FullGoodbye,
    ];

    fn asset(self) -> &'static [u8] {
        match self {
            Prompt::EnterPin => include_bytes!("../assets/prompts/enter_pin.raw"),
            Prompt::Joining => include_bytes!("../assets/prompts/joining.raw"),
            Prompt::WrongPin => include_bytes!("../assets/prompts/wrong_pin.raw"),
            Prompt::WrongPinGoodbye => include_bytes!("../assets/prompts/wrong_pin_goodbye.raw"),
            Prompt::EnterId => include_bytes!("../assets/prompts/enter_id.raw"),
            Prompt::NotFound => include_bytes!("../assets/prompts/not_found.raw"),
            Prompt::NotFoundGoodbye => include_bytes!("../assets/prompts/not_found_goodbye.raw"),
            Prompt::TimeoutGoodbye => include_bytes!("../assets/prompts/timeout_goodbye.raw"),
            Prompt::FullGoodbye => include_bytes!("../assets/prompts/full_goodbye.raw"),
        }
    }

    /// The prompt at 48 kHz, rendered on first use and shared afterwards.
    pub fn samples(self) -> &'static [i16] {
        static CACHE: [OnceLock<Vec<i16>>; 9] = [const { OnceLock::new() }; 9];
        let i = Prompt::ALL.iter().position(|p| *p == self).unwrap_or(0);
        CACHE[i].get_or_init(|| to_mixer_rate(self.asset()))
    }
}

/// 8 kHz s16le → 48 kHz with the mixer's resampler (delay removed), at
/// playback level.
fn to_mixer_rate(raw: &[u8]) -> Vec<i16> {
    let pcm: Vec<i16> = raw
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]) >> PROMPT_GAIN)
        .collect();
    let want = pcm.len() * (MIXER_RATE / ASSET_RATE);
    if let Ok(mut r) = Resampler::new(ASSET_RATE, MIXER_RATE) {
        let delay = r.delay();
        let mut out = Vec::with_capacity(want + delay + MIXER_RATE / 50);
        // Zeros after the prompt push its tail out through the filter delay.
        let flush = vec![0i16; ASSET_RATE / 20];
        if r.process(&pcm, &mut out).is_ok() && r.process(&flush, &mut out).is_ok() {
            out.drain(..delay.min(out.len()));
            out.truncate(want);
            return out;
        }
    }
    // Unreachable with the fixed rates above; sample-and-hold as a fallback.
    pcm.iter()
        .flat_map(|&s| std::iter::repeat_n(s, MIXER_RATE / ASSET_RATE))
        .collect()
}

/// Attempts and timers of a door (the `[lobby]` config section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoorSettings {
    /// Wrong PINs (or unknown conference IDs) before the goodbye.
    pub attempts: u32,
    /// No digit for this long after a prompt: repeat it (or take the
    /// digits entered so far as the entry).
    pub digit_timeout: Duration,
    /// The whole time a caller may spend at the door.
    pub max_wait: Duration,
}

impl Default for DoorSettings {
    fn default() -> Self {
        DoorSettings {
            attempts: 3,
            digit_timeout: Duration::from_secs(5),
            max_wait: Duration::from_secs(60),
        }
    }
}

/// What a door asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DoorKind {
    /// The room's PIN.
    Pin(String),
    /// A conference ID (the lobby number).
    Lobby,
    /// Nothing: "you are now joining", then in (a lobby caller whose
    /// conference has no PIN).
    Joining,
}

/// How a caller left the door (`tandem_ivr_calls_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorOutcome {
    Joined,
    WrongPin,
    NotFound,
    Timeout,
    Full,
    /// The caller hung up (or the call ended otherwise) at the door.
    Hangup,
}

impl DoorOutcome {
    pub fn label(self) -> &'static str {
        match self {
            DoorOutcome::Joined => "joined",
            DoorOutcome::WrongPin => "wrong_pin",
            DoorOutcome::NotFound => "not_found",
            DoorOutcome::Timeout => "timeout",
            DoorOutcome::Full => "full",
            DoorOutcome::Hangup => "hangup",
        }
    }

    /// The BYE's `Reason` header (RFC 3326) when the node ends the call.
    pub fn reason_header(self) -> Option<&'static str> {
        Some(match self {
            DoorOutcome::WrongPin => "SIP;cause=403;text=\"Wrong PIN\"",
            DoorOutcome::NotFound => "SIP;cause=404;text=\"Conference not found\"",
            DoorOutcome::Timeout => "SIP;cause=408;text=\"No entry in time\"",
            DoorOutcome::Full => "SIP;cause=486;text=\"Conference full\"",
            DoorOutcome::Joined | DoorOutcome::Hangup => return None,
        })
    }
}

/// What the lobby's owner answers about an entered conference ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    NotFound,
    Full,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DoorEvent {
    PinAccepted,
    PinWrong,
    /// The lobby caller entered this conference ID: answer with
    /// [`Door::handle_verdict`], or take the leg to the conference.
    ConferenceId(String),
    /// The joining prompt has played: mix and show the caller.
    Admit,
    /// The goodbye has played to its end: end the call.
    Hangup(DoorOutcome),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Collect,
    AwaitVerdict,
    Joining,
    Leaving(DoorOutcome),
    Done(DoorOutcome),
}

#[derive(Debug, Clone, Copy)]
enum Play {
    Prompt(Prompt),
    Pause(usize),
}

/// One caller at the door. See the module docs.
#[derive(Debug)]
pub struct Door {
    kind: DoorKind,
    settings: DoorSettings,
    mode: Mode,
    digits: String,
    attempts: u32,
    /// What plays now and how far in (samples).
    playing: Option<(Play, usize)>,
    queue: VecDeque<Play>,
    started: Option<Instant>,
    /// Since when we wait for a digit (the last prompt ended or the last
    /// digit came); `None` while a prompt plays.
    waiting_since: Option<Instant>,
    events: VecDeque<DoorEvent>,
    noise: u32,
}

impl Door {
    pub fn new(kind: DoorKind, settings: DoorSettings) -> Door {
        let mut door = Door {
            mode: Mode::Collect,
            kind,
            settings,
            digits: String::new(),
            attempts: 0,
            playing: None,
            queue: VecDeque::new(),
            started: None,
            waiting_since: None,
            events: VecDeque::new(),
            noise: 0x1234_5678,
        };
        match door.kind {
            DoorKind::Joining => {
                door.mode = Mode::Joining;
                door.play(&[Play::Prompt(Prompt::Joining)]);
            }
            _ => door.prompt_entry(),
        }
        door
    }

    /// For the API: `lobby` or `pin` while entering, `joining`, `leaving`.
    pub fn state(&self) -> &'static str {
        match self.mode {
            Mode::Collect | Mode::AwaitVerdict => match self.kind {
                DoorKind::Lobby => "lobby",
                _ => "pin",
            },
            Mode::Joining | Mode::Done(DoorOutcome::Joined) => "joining",
            Mode::Leaving(_) | Mode::Done(_) => "leaving",
        }
    }

    /// How the caller is leaving, if decided; `Hangup` otherwise (the call
    /// ended while the door was still asking).
    pub fn outcome(&self) -> DoorOutcome {
        match self.mode {
            Mode::Leaving(o) | Mode::Done(o) => o,
            _ => DoorOutcome::Hangup,
        }
    }

    pub fn poll_event(&mut self) -> Option<DoorEvent> {
        self.events.pop_front()
    }

    /// A key press (RFC 4733 or SIP INFO). `#` ends an entry, `*` clears
    /// it; a digit stops the prompt (barge-in).
    pub fn handle_digit(&mut self, now: Instant, digit: char) {
        // A lone `#` (the end of an entry already taken, say) changes nothing.
        if self.mode != Mode::Collect || (digit == '#' && self.digits.is_empty()) {
            return;
        }
        self.playing = None;
        self.queue.clear();
        self.waiting_since = Some(now);
        match digit {
            '#' => self.submit(),
            '*' => self.digits.clear(),
            d if d.is_ascii_digit() => {
                self.digits.push(d);
                let complete = match &self.kind {
                    DoorKind::Pin(pin) => self.digits.len() >= pin.len(),
                    _ => false,
                };
                if complete || self.digits.len() >= MAX_DIGITS {
                    self.submit();
                }
            }
            _ => {}
        }
    }

    /// The lobby's owner could not take the caller to the conference entered.
    pub fn handle_verdict(&mut self, _now: Instant, verdict: Verdict) {
        if self.mode != Mode::AwaitVerdict {
            return;
        }
        match verdict {
            Verdict::NotFound => {
                self.attempts += 1;
                if self.attempts >= self.settings.attempts {
                    self.leave(DoorOutcome::NotFound, Prompt::NotFoundGoodbye);
                } else {
                    self.mode = Mode::Collect;
                    self.play(&[
                        Play::Prompt(Prompt::NotFound),
                        Play::Pause(PAUSE),
                        Play::Prompt(Prompt::EnterId),
                    ]);
                }
            }
            Verdict::Full => self.leave(DoorOutcome::Full, Prompt::FullGoodbye),
        }
    }

    /// One tick: appends [`FRAME_SAMPLES`] of 48 kHz audio to `out` and runs
    /// the timers.
    pub fn handle_tick(&mut self, now: Instant, out: &mut Vec<i16>) {
        let started = *self.started.get_or_insert(now);
        let mut need = FRAME_SAMPLES;
        while need > 0 {
            let Some((play, at)) = self.playing else {
                if let Some(next) = self.queue.pop_front() {
                    self.playing = Some((next, 0));
                    continue;
                }
                self.comfort(need, out);
                break;
            };
            let (len, n) = match play {
                Play::Prompt(p) => {
                    let s = p.samples();
                    let n = need.min(s.len().saturating_sub(at));
                    out.extend_from_slice(&s[at..at + n]);
                    (s.len(), n)
                }
                Play::Pause(len) => {
                    let n = need.min(len.saturating_sub(at));
                    self.comfort(n, out);
                    (len, n)
                }
            };
            need -= n;
            if at + n >= len {
                self.playing = None;
                if self.queue.is_empty() {
                    self.finished_playing(now);
                }
            } else {
                self.playing = Some((play, at + n));
            }
        }
        // Timers.
        let waiting = matches!(self.mode, Mode::Collect | Mode::AwaitVerdict);
        if waiting && now.saturating_duration_since(started) >= self.settings.max_wait {
            self.leave(DoorOutcome::Timeout, Prompt::TimeoutGoodbye);
            return;
        }
        if self.mode == Mode::Collect
            && self.playing.is_none()
            && self.queue.is_empty()
            && let Some(since) = self.waiting_since
            && now.saturating_duration_since(since) >= self.settings.digit_timeout
        {
            if self.digits.is_empty() {
                self.prompt_entry();
            } else {
                self.submit();
            }
        }
    }

    fn finished_playing(&mut self, now: Instant) {
        match self.mode {
            Mode::Joining => {
                self.mode = Mode::Done(DoorOutcome::Joined);
                self.events.push_back(DoorEvent::Admit);
            }
            Mode::Leaving(o) => {
                self.mode = Mode::Done(o);
                self.events.push_back(DoorEvent::Hangup(o));
            }
            Mode::Collect => self.waiting_since = Some(now),
            Mode::AwaitVerdict | Mode::Done(_) => {}
        }
    }

    fn prompt_entry(&mut self) {
        self.waiting_since = None;
        let p = match self.kind {
            DoorKind::Lobby => Prompt::EnterId,
            _ => Prompt::EnterPin,
        };
        self.play(&[Play::Prompt(p)]);
    }

    fn play(&mut self, items: &[Play]) {
        self.playing = None;
        self.queue.clear();
        self.queue.extend(items.iter().copied());
        self.waiting_since = None;
    }

    fn leave(&mut self, outcome: DoorOutcome, goodbye: Prompt) {
        self.mode = Mode::Leaving(outcome);
        self.play(&[Play::Prompt(goodbye)]);
    }

    fn submit(&mut self) {
        let entry = std::mem::take(&mut self.digits);
        match &self.kind {
            DoorKind::Pin(pin) => {
                if constant_time_eq(entry.as_bytes(), pin.as_bytes()) {
                    self.events.push_back(DoorEvent::PinAccepted);
                    self.mode = Mode::Joining;
                    self.play(&[Play::Prompt(Prompt::Joining)]);
                } else {
                    self.events.push_back(DoorEvent::PinWrong);
                    self.attempts += 1;
                    if self.attempts >= self.settings.attempts {
                        self.leave(DoorOutcome::WrongPin, Prompt::WrongPinGoodbye);
                    } else {
                        self.play(&[
                            Play::Prompt(Prompt::WrongPin),
                            Play::Pause(PAUSE),
                            Play::Prompt(Prompt::EnterPin),
                        ]);
                    }
                }
            }
            DoorKind::Lobby => {
                self.events.push_back(DoorEvent::ConferenceId(entry));
                self.mode = Mode::AwaitVerdict;
                self.waiting_since = None;
            }
            DoorKind::Joining => {}
        }
    }

    /// Quiet white noise (xorshift; deterministic), never digital silence.
    fn comfort(&mut self, n: usize, out: &mut Vec<i16>) {
        for _ in 0..n {
            let mut x = self.noise;
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            self.noise = x;
            out.push(((x % (2 * COMFORT_PEAK as u32 + 1)) as i32 - COMFORT_PEAK) as i16);
        }
    }
}

/// Compares without an early exit, so the time taken does not tell how many
/// leading digits were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(20);

    /// Runs `door` for `ticks` ticks from `*now`, returning the events and
    /// the audio's peak per tick.
    fn run(door: &mut Door, now: &mut Instant, ticks: usize) -> (Vec<DoorEvent>, Vec<i16>) {
        let mut events = Vec::new();
        let mut peaks = Vec::new();
        let mut frame = Vec::with_capacity(FRAME_SAMPLES);
        for _ in 0..ticks {
            frame.clear();
            door.handle_tick(*now, &mut frame);
            assert_eq!(frame.len(), FRAME_SAMPLES);
            peaks.push(frame.iter().map(|s| s.saturating_abs()).max().unwrap_or(0));
            while let Some(e) = door.poll_event() {
                events.push(e);
            }
            *now += TICK;
        }
        (events, peaks)
    }

    fn ticks_of(p: Prompt) -> usize {
        p.samples().len().div_ceil(FRAME_SAMPLES)
    }

    fn press(door: &mut Door, now: Instant, digits: &str) {
        for d in digits.chars() {
            door.handle_digit(now, d);
        }
    }

    #[test]
    fn prompts_are_speech_at_48k_of_their_spoken_length() {
        for p in Prompt::ALL {
            let s = p.samples();
            let secs = s.len() as f32 / 48_000.0;
            assert!((1.0..6.0).contains(&secs), "{p:?}: {secs} s");
            let peak = s.iter().map(|v| v.saturating_abs()).max().unwrap_or(0);
            assert!(peak > 5_000, "{p:?} is too quiet: peak {peak}");
        }
    }

    #[test]
    fn right_pin_joins_after_the_joining_prompt_and_never_plays_silence() {
        let mut now = Instant::now();
        let mut door = Door::new(DoorKind::Pin("1234".into()), DoorSettings::default());
        assert_eq!(door.state(), "pin");
        let (events, peaks) = run(&mut door, &mut now, 50);
        assert!(events.is_empty());
        assert!(peaks.iter().all(|p| *p > 0), "no digital silence");
        press(&mut door, now, "1234");
        assert_eq!(door.poll_event(), Some(DoorEvent::PinAccepted));
        assert_eq!(door.state(), "joining");
        let (events, _) = run(&mut door, &mut now, ticks_of(Prompt::Joining) - 1);
        assert!(events.is_empty(), "admitted only once the prompt ends");
        let (events, _) = run(&mut door, &mut now, 2);
        assert_eq!(events, vec![DoorEvent::Admit]);
        assert_eq!(door.outcome(), DoorOutcome::Joined);
    }

    #[test]
    fn pound_ends_an_entry_and_three_wrong_pins_say_goodbye_then_hang_up() {
        let mut now = Instant::now();
        let mut door = Door::new(DoorKind::Pin("1234".into()), DoorSettings::default());
        run(&mut door, &mut now, 10);
        press(&mut door, now, "99#");
        assert_eq!(door.poll_event(), Some(DoorEvent::PinWrong));
        let (_, peaks) = run(&mut door, &mut now, 100);
        assert!(
            peaks.iter().any(|p| *p > 5000),
            "the wrong-PIN prompt plays"
        );
        press(&mut door, now, "4321");
        assert_eq!(door.poll_event(), Some(DoorEvent::PinWrong));
        assert_eq!(door.state(), "pin");
        press(&mut door, now, "0000");
        assert_eq!(door.poll_event(), Some(DoorEvent::PinWrong));
        assert_eq!(door.state(), "leaving");
        press(&mut door, now, "1234");
        assert_eq!(door.poll_event(), None, "digits are ignored while leaving");
        let (events, _) = run(&mut door, &mut now, ticks_of(Prompt::WrongPinGoodbye) - 1);
        assert!(events.is_empty(), "the goodbye plays to its end");
        let (events, _) = run(&mut door, &mut now, 2);
        assert_eq!(events, vec![DoorEvent::Hangup(DoorOutcome::WrongPin)]);
        assert_eq!(
            DoorOutcome::WrongPin.reason_header(),
            Some("SIP;cause=403;text=\"Wrong PIN\"")
        );
    }

    #[test]
    fn silence_repeats_the_prompt_and_the_overall_limit_ends_the_call() {
        let mut now = Instant::now();
        let settings = DoorSettings {
            attempts: 3,
            digit_timeout: Duration::from_secs(2),
            max_wait: Duration::from_secs(20),
        };
        let mut door = Door::new(DoorKind::Pin("1".into()), settings);
        let prompt = ticks_of(Prompt::EnterPin);
        // Prompt, 2 s of comfort noise, the prompt again.
        let (_, peaks) = run(&mut door, &mut now, prompt + 100 + 20);
        let loud_after_gap = peaks[prompt + 101..].iter().any(|p| *p > 5000);
        assert!(loud_after_gap, "the prompt repeats after the digit timeout");
        let (events, _) = run(&mut door, &mut now, 1000);
        assert!(
            events.contains(&DoorEvent::Hangup(DoorOutcome::Timeout)),
            "{events:?}"
        );
    }

    #[test]
    fn lobby_asks_for_an_id_and_retries_unknown_ones() {
        let mut now = Instant::now();
        let mut door = Door::new(DoorKind::Lobby, DoorSettings::default());
        assert_eq!(door.state(), "lobby");
        run(&mut door, &mut now, 5);
        press(&mut door, now, "4711#");
        assert_eq!(
            door.poll_event(),
            Some(DoorEvent::ConferenceId("4711".into()))
        );
        door.handle_verdict(now, Verdict::NotFound);
        assert_eq!(door.state(), "lobby");
        press(&mut door, now, "1#");
        assert_eq!(door.poll_event(), Some(DoorEvent::ConferenceId("1".into())));
        door.handle_verdict(now, Verdict::NotFound);
        press(&mut door, now, "2#");
        assert_eq!(door.poll_event(), Some(DoorEvent::ConferenceId("2".into())));
        door.handle_verdict(now, Verdict::NotFound);
        assert_eq!(door.state(), "leaving");
        let (events, _) = run(&mut door, &mut now, ticks_of(Prompt::NotFoundGoodbye) + 1);
        assert_eq!(events, vec![DoorEvent::Hangup(DoorOutcome::NotFound)]);
    }

    #[test]
    fn a_joining_door_admits_after_its_prompt() {
        let mut now = Instant::now();
        let mut door = Door::new(DoorKind::Joining, DoorSettings::default());
        assert_eq!(door.state(), "joining");
        let (events, _) = run(&mut door, &mut now, ticks_of(Prompt::Joining) + 1);
        assert_eq!(events, vec![DoorEvent::Admit]);
    }
}
