//! Codecs at the mixer's edge: every decoder produces 48 kHz mono i16 and
//! every encoder takes it, whatever the wire rate.
//!
//! - Opus (libopus through the `opus` crate) runs natively at 48 kHz.
//! - G.711 µ-law/A-law ([`g711`]) and G.722 ([`g722`]) are implemented here and
//!   wrapped with a streaming resampler ([`resample`]) to and from 8/16 kHz,
//!   plus a pitch-repetition PLC ([`plc`]).

pub mod g711;
pub mod g722;
pub mod plc;
pub mod resample;

use crate::error::{CodecError, Error};
use plc::Plc;
use resample::Resampler;

/// Internal sample rate.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples per millisecond at [`SAMPLE_RATE`].
pub const SAMPLES_PER_MS: usize = 48;
/// Largest Opus packet duration (120 ms) in samples.
const OPUS_MAX_SAMPLES: usize = 5760;
/// Room for one encoded Opus packet (libopus' recommended upper bound).
const OPUS_MAX_PACKET: usize = 4000;

/// Opus bitrate for the conference mix.
pub const OPUS_BITRATE: i32 = 32_000;
/// Expected loss the Opus encoder plans its in-band FEC for.
pub const OPUS_PACKET_LOSS_PERC: i32 = 5;

/// The audio codecs the bridge negotiates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CodecKind {
    Opus,
    G722,
    Pcmu,
    Pcma,
}

impl CodecKind {
    /// Rate the codec samples audio at (not its RTP clock: G.722's is 8000).
    pub fn audio_rate(self) -> u32 {
        match self {
            CodecKind::Opus => 48_000,
            CodecKind::G722 => 16_000,
            CodecKind::Pcmu | CodecKind::Pcma => 8_000,
        }
    }

    /// RTP timestamp rate as registered (RFC 3551 / RFC 7587).
    pub fn rtp_clock_rate(self) -> u32 {
        match self {
            CodecKind::Opus => 48_000,
            CodecKind::G722 | CodecKind::Pcmu | CodecKind::Pcma => 8_000,
        }
    }

    /// Static RTP payload type, if the codec has one.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            CodecKind::Opus => None,
            CodecKind::G722 => Some(9),
            CodecKind::Pcmu => Some(0),
            CodecKind::Pcma => Some(8),
        }
    }

    /// Whether an encoder can packetise at `ptime_ms`.
    pub fn supports_ptime(self, ptime_ms: u32) -> bool {
        match self {
            CodecKind::Opus => matches!(ptime_ms, 10 | 20 | 40 | 60),
            // Whole resampler blocks, up to 120 ms.
            _ => {
                ptime_ms > 0
                    && ptime_ms <= 120
                    && (ptime_ms as usize).is_multiple_of(resample::BLOCK_MS)
            }
        }
    }
}

/// Turns RTP payloads into 48 kHz mono PCM.
pub trait AudioDecoder: Send {
    /// Decodes one payload, appending its audio (one packet duration at 48 kHz) to `out`.
    /// A malformed payload is [`Error::MalformedPayload`]; `out` is then left as it was.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError>;
    /// Appends one packet duration of concealment for a lost packet. `next` is
    /// the packet after the lost one, if it already arrived (Opus recovers the
    /// lost audio from its in-band FEC).
    fn conceal(&mut self, next: Option<&[u8]>, out: &mut Vec<i16>) -> Result<(), CodecError>;
    /// Forgets the decoder's history, as after packets that were not decoded:
    /// the next packet then decodes from a clean state rather than a stale one.
    fn reset(&mut self) {}
}

/// The voice-activity flag an Opus encoder put in a packet, read without
/// decoding it (RFC 6716 §4.2.3): SILK and hybrid frames open with one VAD bit
/// per SILK frame, range-coded at probability 1/2, so the first frame's flag is
/// the top bit of the first byte after the TOC. `None` when the packet does not
/// say (CELT-only modes, multi-frame codes 2 and 3): then decode it.
/// `Some(false)` for a TOC-only packet (DTX: nothing to hear).
pub fn opus_voice_activity(payload: &[u8]) -> Option<bool> {
    let toc = *payload.first()?;
    let config = toc >> 3;
    let code = toc & 0x03;
    if config >= 16 || code > 1 {
        return None;
    }
    match payload.get(1) {
        None => Some(false),
        Some(b) => Some(b & 0x80 != 0),
    }
}

/// Turns 48 kHz mono PCM into RTP payloads.
pub trait AudioEncoder: Send {
    /// Encodes exactly one ptime of 48 kHz audio into one payload appended to `out`.
    fn encode(&mut self, pcm48: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError>;
}

/// A decoder for `kind`, producing 48 kHz mono.
pub fn decoder(kind: CodecKind) -> Result<Box<dyn AudioDecoder>, CodecError> {
    Ok(match kind {
        CodecKind::Opus => Box::new(OpusDecoder::new()?),
        CodecKind::G722 => Box::new(WaveformDecoder::new(kind, Core::G722(Box::default()))?),
        CodecKind::Pcmu => Box::new(WaveformDecoder::new(kind, Core::Pcmu)?),
        CodecKind::Pcma => Box::new(WaveformDecoder::new(kind, Core::Pcma)?),
    })
}

/// An encoder for `kind` taking `ptime_ms` of 48 kHz mono per call.
pub fn encoder(kind: CodecKind, ptime_ms: u32) -> Result<Box<dyn AudioEncoder>, CodecError> {
    if !kind.supports_ptime(ptime_ms) {
        return Err(Error::UnsupportedPtime {
            codec: kind,
            ptime_ms,
        });
    }
    let frame = ptime_ms as usize * SAMPLES_PER_MS;
    Ok(match kind {
        CodecKind::Opus => Box::new(OpusEncoder::new(frame)?),
        CodecKind::G722 => Box::new(WaveformEncoder::new(
            kind,
            EncCore::G722(Box::default()),
            frame,
        )?),
        CodecKind::Pcmu => Box::new(WaveformEncoder::new(kind, EncCore::Pcmu, frame)?),
        CodecKind::Pcma => Box::new(WaveformEncoder::new(kind, EncCore::Pcma, frame)?),
    })
}

// ---------------------------------------------------------------------------
// Opus

struct OpusDecoder {
    inner: opus::Decoder,
    scratch: Vec<i16>,
    /// Duration of the last packet, which is what a lost one is assumed to be.
    last_samples: usize,
}

impl OpusDecoder {
    fn new() -> Result<Self, Error> {
        // A mono decoder downmixes stereo-signalled packets itself.
        let inner = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)?;
        Ok(Self {
            inner,
            scratch: vec![0; OPUS_MAX_SAMPLES],
            last_samples: 20 * SAMPLES_PER_MS,
        })
    }
}

fn malformed(codec: CodecKind, e: impl std::fmt::Display) -> Error {
    Error::MalformedPayload {
        codec,
        reason: e.to_string(),
    }
}

impl AudioDecoder for OpusDecoder {
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        if payload.is_empty() {
            return Err(malformed(CodecKind::Opus, "empty payload"));
        }
        let n = self
            .inner
            .decode(payload, &mut self.scratch, false)
            .map_err(|e| malformed(CodecKind::Opus, e))?;
        out.extend_from_slice(&self.scratch[..n]);
        self.last_samples = n;
        Ok(())
    }

    fn conceal(&mut self, next: Option<&[u8]>, out: &mut Vec<i16>) -> Result<(), CodecError> {
        let want = self.last_samples.min(OPUS_MAX_SAMPLES);
        let buf = &mut self.scratch[..want];
        // FEC decode of the next packet recovers the lost one (if the sender
        // put FEC in it; otherwise libopus falls back to PLC by itself). A
        // corrupt `next` must not stop us concealing, so fall back to PLC.
        let n = match next.filter(|p| !p.is_empty()) {
            Some(p) => match self.inner.decode(p, buf, true) {
                Ok(n) => n,
                Err(_) => self.inner.decode(&[], buf, false)?,
            },
            None => self.inner.decode(&[], buf, false)?,
        };
        out.extend_from_slice(&self.scratch[..n]);
        Ok(())
    }

    fn reset(&mut self) {
        let _ = self.inner.reset_state();
    }
}

struct OpusEncoder {
    inner: opus::Encoder,
    frame: usize,
}

impl OpusEncoder {
    fn new(frame: usize) -> Result<Self, Error> {
        let mut inner =
            opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)?;
        inner.set_bitrate(opus::Bitrate::Bits(OPUS_BITRATE))?;
        inner.set_inband_fec(true)?;
        inner.set_packet_loss_perc(OPUS_PACKET_LOSS_PERC)?;
        // DTX off: the mix is one steady stream per group, and receivers'
        // jitter buffers and NAT bindings like a packet every ptime.
        inner.set_dtx(false)?;
        Ok(Self { inner, frame })
    }
}

impl AudioEncoder for OpusEncoder {
    fn encode(&mut self, pcm48: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        if pcm48.len() != self.frame {
            return Err(Error::FrameLength {
                expected: self.frame,
                got: pcm48.len(),
            });
        }
        let start = out.len();
        out.resize(start + OPUS_MAX_PACKET, 0);
        match self.inner.encode(pcm48, &mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e.into())
            }
        }
    }
}

// ---------------------------------------------------------------------------
// G.711 / G.722 with resampling

enum Core {
    Pcmu,
    Pcma,
    G722(Box<g722::G722Decoder>),
}

struct WaveformDecoder {
    core: Core,
    up: Resampler,
    plc: Plc,
    narrow: Vec<i16>,
    last_samples: usize,
}

impl WaveformDecoder {
    fn new(kind: CodecKind, core: Core) -> Result<Self, Error> {
        Ok(Self {
            core,
            up: Resampler::new(kind.audio_rate() as usize, SAMPLE_RATE as usize)?,
            plc: Plc::default(),
            narrow: Vec::with_capacity(OPUS_MAX_SAMPLES),
            last_samples: 20 * SAMPLES_PER_MS,
        })
    }
}

impl AudioDecoder for WaveformDecoder {
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        self.narrow.clear();
        match &mut self.core {
            Core::Pcmu => self
                .narrow
                .extend(payload.iter().map(|&c| g711::ulaw_decode(c))),
            Core::Pcma => self
                .narrow
                .extend(payload.iter().map(|&c| g711::alaw_decode(c))),
            Core::G722(d) => d.decode(payload, &mut self.narrow),
        }
        let start = out.len();
        self.up.process(&self.narrow, out)?;
        self.plc.good(&out[start..]);
        self.last_samples = out.len() - start;
        Ok(())
    }

    fn conceal(&mut self, _next: Option<&[u8]>, out: &mut Vec<i16>) -> Result<(), CodecError> {
        // `next` is decoded normally when its turn comes; waveform codecs
        // carry no redundancy for the lost packet.
        self.plc.conceal(self.last_samples, out);
        Ok(())
    }
}

enum EncCore {
    Pcmu,
    Pcma,
    G722(Box<g722::G722Encoder>),
}

struct WaveformEncoder {
    core: EncCore,
    down: Resampler,
    frame: usize,
    narrow: Vec<i16>,
}

impl WaveformEncoder {
    fn new(kind: CodecKind, core: EncCore, frame: usize) -> Result<Self, Error> {
        Ok(Self {
            core,
            down: Resampler::new(SAMPLE_RATE as usize, kind.audio_rate() as usize)?,
            frame,
            narrow: Vec::with_capacity(frame),
        })
    }
}

impl AudioEncoder for WaveformEncoder {
    fn encode(&mut self, pcm48: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        if pcm48.len() != self.frame {
            return Err(Error::FrameLength {
                expected: self.frame,
                got: pcm48.len(),
            });
        }
        self.narrow.clear();
        self.down.process(pcm48, &mut self.narrow)?;
        match &mut self.core {
            EncCore::Pcmu => out.extend(self.narrow.iter().map(|&s| g711::ulaw_encode(s))),
            EncCore::Pcma => out.extend(self.narrow.iter().map(|&s| g711::alaw_encode(s))),
            EncCore::G722(e) => e.encode(&self.narrow, out),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    /// The VAD bit is read off real libopus packets: a talker's frames carry
    /// it, near-silence does not (after the encoder's VAD settles).
    #[test]
    fn opus_vad_flag_is_read_without_decoding() {
        let mut enc = encoder(CodecKind::Opus, 20).expect("encoder");
        let mut noise_seed = 12345u32;
        let mut flags = |pcm: &dyn Fn(usize, &mut u32) -> i16, frames: usize| {
            let mut v = Vec::new();
            for f in 0..frames {
                let frame: Vec<i16> = (0..960)
                    .map(|i| pcm(f * 960 + i, &mut noise_seed))
                    .collect();
                let mut out = Vec::new();
                enc.encode(&frame, &mut out).expect("encode");
                v.push(opus_voice_activity(&out));
            }
            v
        };
        let quiet = flags(
            &|_, seed: &mut u32| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 17;
                *seed ^= *seed << 5;
                (*seed % 32) as i16 - 16
            },
            100,
        );
        let settled = &quiet[50..];
        assert!(
            settled.iter().all(|f| f.is_some()),
            "SILK/hybrid frames at 32 kbit/s VOIP"
        );
        let quiet_active = settled.iter().filter(|f| **f == Some(true)).count();
        assert!(
            quiet_active <= 5,
            "near-silence flagged active {quiet_active}/50"
        );
        let voice = flags(
            &|n, _| {
                let t = n as f32 / 48_000.0;
                // A vowel-like buzz: 150 Hz harmonics, syllables at 4 Hz.
                let env = (0.5 + 0.5 * (2.0 * std::f32::consts::PI * 4.0 * t).sin()).powi(2);
                let mut x = 0.0;
                for h in 1..12 {
                    x += (2.0 * std::f32::consts::PI * 150.0 * h as f32 * t).sin() / h as f32;
                }
                (x * env * 6000.0) as i16
            },
            100,
        );
        let voice_active = voice.iter().filter(|f| **f == Some(true)).count();
        assert!(
            voice_active >= 50,
            "voice flagged active only {voice_active}/100"
        );
        assert_eq!(opus_voice_activity(&[0x08]), Some(false), "TOC only: DTX");
        assert_eq!(
            opus_voice_activity(&[0xF8, 0xFF]),
            None,
            "CELT-only says nothing"
        );
        assert_eq!(opus_voice_activity(&[]), None);
    }

    use super::*;
    use crate::audio::testutil::{goertzel, sine_at, snr_aligned};

    /// Encodes `ms` of a tone frame by frame and decodes it again.
    fn through(
        kind: CodecKind,
        ptime: u32,
        freq: f64,
        ms: usize,
    ) -> (Vec<i16>, Vec<i16>, Vec<usize>) {
        let mut enc = encoder(kind, ptime).unwrap();
        let mut dec = decoder(kind).unwrap();
        let frame = ptime as usize * SAMPLES_PER_MS;
        let mut input = Vec::new();
        let mut output = Vec::new();
        let mut sizes = Vec::new();
        for f in 0..ms / ptime as usize {
            let pcm = sine_at(freq, 48000.0, 8000.0, f * frame, frame);
            let mut payload = Vec::new();
            enc.encode(&pcm, &mut payload).unwrap();
            sizes.push(payload.len());
            let before = output.len();
            dec.decode(&payload, &mut output).unwrap();
            assert_eq!(output.len() - before, frame, "{kind:?} decode length");
            input.extend(pcm);
        }
        (input, output, sizes)
    }

    #[test]
    fn payload_sizes_match_the_wire_format() {
        let (_, _, s) = through(CodecKind::Pcmu, 20, 1000.0, 100);
        assert!(s.iter().all(|&n| n == 160));
        let (_, _, s) = through(CodecKind::Pcma, 40, 1000.0, 120);
        assert!(s.iter().all(|&n| n == 320));
        let (_, _, s) = through(CodecKind::G722, 20, 1000.0, 100);
        assert!(s.iter().all(|&n| n == 160));
        let (_, _, s) = through(CodecKind::G722, 60, 1000.0, 120);
        assert!(s.iter().all(|&n| n == 480));
    }

    #[test]
    fn every_codec_round_trips_a_tone() {
        for kind in [
            CodecKind::Pcmu,
            CodecKind::Pcma,
            CodecKind::G722,
            CodecKind::Opus,
        ] {
            for ptime in [20, 60] {
                let (input, output, _) = through(kind, ptime, 1000.0, 1200);
                let a = goertzel(&output[9600..], 1000.0, 48000.0);
                let other = goertzel(&output[9600..], 1700.0, 48000.0);
                assert!(
                    a > 6000.0 && other < 400.0,
                    "{kind:?}/{ptime}: 1 kHz {a:.0}, 1.7 kHz {other:.0}"
                );
                if kind != CodecKind::Opus {
                    // Waveform codecs: sample-accurate after delay alignment.
                    let (snr, delay) = snr_aligned(&input, &output, 1200, 4800);
                    assert!(
                        snr > 20.0,
                        "{kind:?}/{ptime}: SNR {snr:.1} dB at delay {delay}"
                    );
                }
            }
        }
    }

    #[test]
    fn g722_wrapper_keeps_the_7khz_band() {
        let (input, output, _) = through(CodecKind::G722, 20, 5000.0, 1000);
        let (snr, _) = snr_aligned(&input, &output, 1200, 4800);
        assert!(snr > 10.0, "5 kHz through G.722: SNR {snr:.1} dB");
        // ...which G.711 cuts off.
        let (_, output, _) = through(CodecKind::Pcmu, 20, 5000.0, 1000);
        assert!(goertzel(&output[4800..], 5000.0, 48000.0) < 200.0);
    }

    #[test]
    fn opus_conceal_with_and_without_fec() {
        let mut enc = encoder(CodecKind::Opus, 20).unwrap();
        let mut dec = decoder(CodecKind::Opus).unwrap();
        let mut packets = Vec::new();
        for f in 0..50 {
            let mut p = Vec::new();
            enc.encode(&sine_at(440.0, 48000.0, 8000.0, f * 960, 960), &mut p)
                .unwrap();
            packets.push(p);
        }
        let mut out = Vec::new();
        for p in &packets[..40] {
            dec.decode(p, &mut out).unwrap();
        }
        // Packet 40 lost; 41 is here and carries FEC for it.
        let n = out.len();
        dec.conceal(Some(&packets[41]), &mut out).unwrap();
        assert_eq!(out.len() - n, 960);
        assert!(goertzel(&out[n..], 440.0, 48000.0) > 2000.0);
        dec.decode(&packets[41], &mut out).unwrap();
        // Two lost with nothing after: PLC.
        let n = out.len();
        dec.conceal(None, &mut out).unwrap();
        dec.conceal(None, &mut out).unwrap();
        assert_eq!(out.len() - n, 1920);
    }

    #[test]
    fn waveform_conceal_fades_out() {
        let mut dec = decoder(CodecKind::Pcma).unwrap();
        let mut enc = encoder(CodecKind::Pcma, 20).unwrap();
        let mut out = Vec::new();
        for f in 0..10 {
            let mut p = Vec::new();
            enc.encode(&sine_at(250.0, 48000.0, 8000.0, f * 960, 960), &mut p)
                .unwrap();
            dec.decode(&p, &mut out).unwrap();
        }
        let n = out.len();
        for _ in 0..5 {
            dec.conceal(None, &mut out).unwrap();
        }
        assert_eq!(out.len() - n, 5 * 960);
        assert!(goertzel(&out[n..n + 960], 250.0, 48000.0) > 3000.0);
        assert!(out[n + 3 * 960..].iter().all(|&s| s == 0));
    }

    #[test]
    fn malformed_opus_is_a_typed_error() {
        let mut dec = decoder(CodecKind::Opus).unwrap();
        let mut out = vec![7i16];
        assert!(matches!(
            dec.decode(&[], &mut out),
            Err(Error::MalformedPayload { .. })
        ));
        // A code-3 TOC with a frame count of zero is invalid.
        assert!(matches!(
            dec.decode(&[0x03, 0x00], &mut out),
            Err(Error::MalformedPayload { .. })
        ));
        assert_eq!(out, vec![7]);
    }

    #[test]
    fn wrong_ptime_and_frame_length_are_rejected() {
        assert!(matches!(
            encoder(CodecKind::Opus, 30),
            Err(Error::UnsupportedPtime { .. })
        ));
        assert!(matches!(
            encoder(CodecKind::Pcmu, 0),
            Err(Error::UnsupportedPtime { .. })
        ));
        let mut enc = encoder(CodecKind::Pcmu, 20).unwrap();
        assert!(matches!(
            enc.encode(&[0; 100], &mut Vec::new()),
            Err(Error::FrameLength { .. })
        ));
    }
}
