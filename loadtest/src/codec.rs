//! Audio codecs of the synthetic room system: Opus through libopus, and a
//! hand-written G.711 (so that a G.711 bug in the bridge cannot hide behind a
//! shared table).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{Error, Result};

/// An audio codec a room system can offer. Each is offered alone (plus
/// telephone-event), so the answer must pick it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// `opus/48000/2`, PT 111, `useinbandfec=1`.
    Opus,
    /// G.711 µ-law, PT 0.
    Pcmu,
    /// G.711 A-law, PT 8.
    Pcma,
}

impl Codec {
    /// The payload type we offer.
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Opus => 111,
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The encoding name in `a=rtpmap` (and in the bridge's `audio_codec`,
    /// lower-cased).
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            Codec::Pcmu | Codec::Pcma => 8_000,
        }
    }

    /// The rate we generate and encode PCM at.
    pub fn encode_rate(self) -> u32 {
        self.clock_rate()
    }

    /// The rate we decode received audio to. Opus is decoded at 16 kHz:
    /// enough for every probe tone below 8 kHz at a third of the cost.
    pub fn decode_rate(self) -> u32 {
        match self {
            Codec::Opus => 16_000,
            Codec::Pcmu | Codec::Pcma => 8_000,
        }
    }

    /// Recognises an `a=rtpmap` encoding name.
    pub fn from_encoding_name(name: &str) -> Option<Codec> {
        [Codec::Opus, Codec::Pcmu, Codec::Pcma]
            .into_iter()
            .find(|c| c.encoding_name().eq_ignore_ascii_case(name))
    }

    /// Whether a packet time is one this codec can frame.
    pub fn supports_ptime(self, ptime_ms: u32) -> bool {
        match self {
            Codec::Opus => matches!(ptime_ms, 10 | 20 | 40 | 60),
            Codec::Pcmu | Codec::Pcma => {
                (10..=60).contains(&ptime_ms) && ptime_ms.is_multiple_of(10)
            }
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::Opus => "opus",
            Codec::Pcmu => "pcmu",
            Codec::Pcma => "pcma",
        })
    }
}

impl FromStr for Codec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Codec> {
        match s.to_ascii_lowercase().as_str() {
            "opus" => Ok(Codec::Opus),
            "pcmu" | "g711u" | "ulaw" => Ok(Codec::Pcmu),
            "pcma" | "g711a" | "alaw" => Ok(Codec::Pcma),
            other => Err(Error::Config(format!(
                "unknown codec {other:?} (opus, pcmu, pcma)"
            ))),
        }
    }
}

/// G.711 (ITU-T G.711, the classic segment/mantissa formulation).
pub mod g711 {
    const ULAW_BIAS: i32 = 0x84;
    const ULAW_CLIP: i32 = 32_635;

    pub fn ulaw_encode(sample: i16) -> u8 {
        let mut s = i32::from(sample);
        let sign = if s < 0 {
            s = -s;
            0x80
        } else {
            0
        };
        s = s.min(ULAW_CLIP) + ULAW_BIAS;
        // The segment is the position of the highest set bit above bit 7.
        let mut exponent = 7;
        while exponent > 0 && s & (0x80 << exponent) == 0 {
            exponent -= 1;
        }
        let mantissa = (s >> (exponent + 3)) & 0x0F;
        !((sign | (exponent << 4) | mantissa) as u8)
    }

    pub fn ulaw_decode(byte: u8) -> i16 {
        let u = !byte;
        let exponent = i32::from((u >> 4) & 0x07);
        let mantissa = i32::from(u & 0x0F);
        let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
        (if u & 0x80 != 0 { -magnitude } else { magnitude }) as i16
    }

    pub fn alaw_encode(sample: i16) -> u8 {
        let mut v = i32::from(sample) >> 3;
        let mask = if v >= 0 {
            0xD5
        } else {
            v = -v - 1;
            0x55
        };
        let segment = (0..8).find(|&seg| v < (0x20 << seg)).unwrap_or(8);
        if segment >= 8 {
            return (0x7F ^ mask) as u8;
        }
        let mantissa = if segment < 2 {
            (v >> 1) & 0x0F
        } else {
            (v >> segment) & 0x0F
        };
        (((segment << 4) | mantissa) ^ mask) as u8
    }

    pub fn alaw_decode(byte: u8) -> i16 {
        let a = i32::from(byte ^ 0x55);
        let mut t = (a & 0x0F) << 4;
        let segment = (a & 0x70) >> 4;
        match segment {
            0 => t += 8,
            1 => t += 0x108,
            _ => t = (t + 0x108) << (segment - 1),
        }
        (if a & 0x80 != 0 { t } else { -t }) as i16
    }
}

/// The baseline a load run is compared with, measured in the same run: how
/// many legs one core could carry if all it did was decode every leg's packets
/// with raw libopus at 48 kHz (what a naive MCU pays before mixing, encoding or
/// any socket work). Decodes the very frames the quiet legs send.
pub fn raw_decode_legs_per_core(codec: Codec, ptime_ms: u32) -> Result<f64> {
    let frames = comfort_frames(codec, ptime_ms)?;
    let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono)?;
    let mut pcm = vec![0i16; 5760];
    let rounds = 20;
    let started = std::time::Instant::now();
    for _ in 0..rounds {
        for f in frames.iter() {
            if codec == Codec::Opus {
                dec.decode(f, &mut pcm, false)?;
            } else {
                for (o, b) in pcm.iter_mut().zip(f.iter()) {
                    *o = if codec == Codec::Pcmu {
                        g711::ulaw_decode(*b)
                    } else {
                        g711::alaw_decode(*b)
                    };
                }
            }
        }
    }
    let per_frame = started.elapsed().as_secs_f64() / (rounds * frames.len()) as f64;
    Ok(f64::from(ptime_ms) / 1000.0 / per_frame.max(1e-9))
}

/// Encodes one frame of mono PCM at [`Codec::encode_rate`].
pub enum Encoder {
    Opus(Box<opus::Encoder>),
    Pcmu,
    Pcma,
}

impl Encoder {
    pub fn new(codec: Codec) -> Result<Encoder> {
        Ok(match codec {
            Codec::Opus => {
                let mut enc =
                    opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Audio)?;
                enc.set_bitrate(opus::Bitrate::Bits(40_000))?;
                enc.set_inband_fec(true)?;
                Encoder::Opus(Box::new(enc))
            }
            Codec::Pcmu => Encoder::Pcmu,
            Codec::Pcma => Encoder::Pcma,
        })
    }

    /// Replaces `out` with the encoded frame.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        match self {
            Encoder::Opus(enc) => {
                out.resize(1500, 0);
                let n = enc.encode(pcm, out)?;
                out.truncate(n);
            }
            Encoder::Pcmu => out.extend(pcm.iter().map(|&s| g711::ulaw_encode(s))),
            Encoder::Pcma => out.extend(pcm.iter().map(|&s| g711::alaw_encode(s))),
        }
        Ok(())
    }
}

/// Decodes received payloads to mono PCM at [`Codec::decode_rate`], scaled
/// to ±1.0.
pub enum Decoder {
    Opus {
        dec: Box<opus::Decoder>,
        scratch: Vec<i16>,
    },
    Pcmu,
    Pcma,
}

impl Decoder {
    pub fn new(codec: Codec) -> Result<Decoder> {
        Ok(match codec {
            Codec::Opus => Decoder::Opus {
                dec: Box::new(opus::Decoder::new(16_000, opus::Channels::Mono)?),
                // 120 ms, the longest Opus packet, at 16 kHz.
                scratch: vec![0; 1920],
            },
            Codec::Pcmu => Decoder::Pcmu,
            Codec::Pcma => Decoder::Pcma,
        })
    }

    /// Appends the decoded samples to `out`.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<f32>) -> Result<()> {
        const SCALE: f32 = 1.0 / 32_768.0;
        match self {
            Decoder::Opus { dec, scratch } => {
                let n = dec.decode(payload, scratch, false)?;
                out.extend(scratch[..n].iter().map(|&s| f32::from(s) * SCALE));
            }
            Decoder::Pcmu => out.extend(
                payload
                    .iter()
                    .map(|&b| f32::from(g711::ulaw_decode(b)) * SCALE),
            ),
            Decoder::Pcma => out.extend(
                payload
                    .iter()
                    .map(|&b| f32::from(g711::alaw_decode(b)) * SCALE),
            ),
        }
        Ok(())
    }
}

/// Samples per frame at the encode rate.
pub fn frame_samples(codec: Codec, ptime_ms: u32) -> usize {
    (codec.encode_rate() * ptime_ms / 1000) as usize
}

/// Level of the background noise a quiet room system sends, as a fraction of
/// full scale (about -66 dBFS): far below any speech detector, but a real
/// signal the bridge has to decode.
pub const COMFORT_NOISE_AMPLITUDE: f32 = 0.0005;

/// One second of encoded low-level noise per (codec, ptime), encoded once per
/// process and replayed by every quiet leg. Real room systems send packets
/// when nobody talks; replaying a canned second keeps the bridge's decode
/// cost real and ours near zero.
pub fn comfort_frames(codec: Codec, ptime_ms: u32) -> Result<Arc<[Vec<u8>]>> {
    type Cache = Mutex<HashMap<(Codec, u32), Arc<[Vec<u8>]>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    // Poisoning only means another encode panicked; the map is still valid.
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(frames) = map.get(&(codec, ptime_ms)) {
        return Ok(frames.clone());
    }
    let mut enc = Encoder::new(codec)?;
    let n = frame_samples(codec, ptime_ms);
    let count = (1000 / ptime_ms).max(1) as usize;
    // A fixed LCG: the canned noise is the same in every run.
    let mut state: u32 = 0x1234_5678;
    let amplitude = COMFORT_NOISE_AMPLITUDE * 32_767.0;
    let mut pcm = vec![0i16; n];
    let mut frames = Vec::with_capacity(count);
    for _ in 0..count {
        for s in pcm.iter_mut() {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let unit = (state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0;
            *s = (unit * amplitude) as i16;
        }
        let mut out = Vec::new();
        enc.encode(&pcm, &mut out)?;
        frames.push(out);
    }
    let frames: Arc<[Vec<u8>]> = frames.into();
    map.insert((codec, ptime_ms), frames.clone());
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_round_trip_is_within_quantisation_step() {
        for s in (-32_768i32..=32_767).step_by(7) {
            let s = s as i16;
            let back = g711::ulaw_decode(g711::ulaw_encode(s));
            let err = (i32::from(s) - i32::from(back)).abs();
            // The segment step is 2^(exp+3) <= (|s| + bias) / 16; the
            // error is at most one step.
            let bound = (i32::from(s).abs() + 0x84) / 16 + 1;
            assert!(err <= bound, "{s} -> {back}");
        }
        assert_eq!(g711::ulaw_encode(0), 0xFF);
        assert_eq!(g711::ulaw_decode(0xFF), 0);
        assert_eq!(g711::ulaw_decode(0x00), -32_124);
        assert_eq!(g711::ulaw_decode(0x80), 32_124);
    }

    #[test]
    fn ulaw_decode_encode_is_identity_on_codes() {
        for b in 0..=255u8 {
            let back = g711::ulaw_encode(g711::ulaw_decode(b));
            // 0x7F and 0xFF both mean zero.
            if b == 0x7F {
                assert_eq!(back, 0xFF);
            } else {
                assert_eq!(back, b, "code {b:#x}");
            }
        }
    }

    #[test]
    fn alaw_decode_encode_is_identity_on_codes() {
        for b in 0..=255u8 {
            assert_eq!(g711::alaw_encode(g711::alaw_decode(b)), b, "code {b:#x}");
        }
        assert_eq!(g711::alaw_encode(0), 0xD5);
        assert_eq!(g711::alaw_decode(0xD5), 8);
        assert_eq!(g711::alaw_decode(0xAA), 32_256);
        assert_eq!(g711::alaw_decode(0x2A), -32_256);
    }

    #[test]
    fn alaw_round_trip_relative_error_is_small() {
        for s in (-32_768i32..=32_767).step_by(11) {
            let back = i32::from(g711::alaw_decode(g711::alaw_encode(s as i16)));
            let err = (s - back).abs();
            assert!(err <= (s.abs() / 16).max(16), "{s} -> {back}");
        }
    }

    #[test]
    fn g711_codecs_round_trip_through_encoder_and_decoder() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let pcm: Vec<i16> = (0..160)
                .map(|i| ((i as f32 * 0.3).sin() * 10_000.0) as i16)
                .collect();
            let mut enc = Encoder::new(codec).expect("encoder");
            let mut payload = Vec::new();
            enc.encode(&pcm, &mut payload).expect("encode");
            assert_eq!(payload.len(), 160);
            let mut dec = Decoder::new(codec).expect("decoder");
            let mut out = Vec::new();
            dec.decode(&payload, &mut out).expect("decode");
            for (a, b) in pcm.iter().zip(&out) {
                assert!((f32::from(*a) / 32_768.0 - b).abs() < 0.02);
            }
        }
    }

    #[test]
    fn comfort_frames_are_cached_and_opus_frames_decode() {
        let a = comfort_frames(Codec::Opus, 20).expect("frames");
        let b = comfort_frames(Codec::Opus, 20).expect("frames");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.len(), 50);
        let mut dec = Decoder::new(Codec::Opus).expect("decoder");
        let mut out = Vec::new();
        for f in a.iter() {
            dec.decode(f, &mut out).expect("decode");
        }
        assert_eq!(out.len(), 16_000);
        let peak = out.iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!(peak < 0.01, "comfort noise too loud: {peak}");
    }

    #[test]
    fn codec_names_parse() {
        assert_eq!("OPUS".parse::<Codec>().ok(), Some(Codec::Opus));
        assert_eq!("pcmu".parse::<Codec>().ok(), Some(Codec::Pcmu));
        assert_eq!(Codec::from_encoding_name("pcma"), Some(Codec::Pcma));
        assert!("g729".parse::<Codec>().is_err());
    }
}
