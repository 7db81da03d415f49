//! What a person would hear: tone levels in decoded audio or in a WAV file.
//!
//! The measure is a block-wise Goertzel filter. Audio is cut into 200 ms
//! Hann-windowed blocks; in each block the Goertzel output gives the
//! amplitude of the component at the probe frequency; the level is the RMS of
//! those amplitudes across blocks, in dBFS (a full-scale sine reads 0 dB, a
//! sine of amplitude 0.1 reads -20 dB). Working per block keeps the measure
//! honest across packet loss, concealment and clock slips, which would
//! cancel a single long coherent sum.
//!
//! A tone is *contained* when its level is at least [`CONTAINS_SNR_DB`] above
//! the local noise floor, above [`CONTAINS_MIN_DBFS`], and no more than
//! [`CONTAINS_BELOW_RMS_DB`] below the overall RMS (a leak or a codec's
//! intermodulation product 45 dB under the mix is not "hearing" a talker,
//! although it stands clear of a quiet floor). The local floor is
//! the median level at eight probes 40–150 Hz either side (outside the
//! window's main lobe); the median ignores a probe or two that land on another
//! tone, so two equal tones both show, and a tone absent from a mix of others
//! does not.

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};

/// How far above the local floor a contained tone must be.
pub const CONTAINS_SNR_DB: f32 = 15.0;
/// How loud a contained tone must be at least (dBFS).
pub const CONTAINS_MIN_DBFS: f32 = -60.0;
/// How far below the overall RMS a contained tone may be.
pub const CONTAINS_BELOW_RMS_DB: f32 = 35.0;
/// Offsets of the noise-floor probes, in Hz, either side of the tone.
pub const FLOOR_PROBE_OFFSETS_HZ: [f32; 4] = [40.0, 65.0, 100.0, 150.0];
/// What a level of nothing at all reads.
pub const SILENCE_DB: f32 = -200.0;

const BLOCK_SECONDS: f32 = 0.2;

/// A stretch of heard audio (mono, ±1.0 full scale) and its analysis.
#[derive(Debug, Clone, Default)]
pub struct Heard {
    samples: Vec<f32>,
    sample_rate: u32,
}

impl Heard {
    pub fn from_samples(samples: Vec<f32>, sample_rate: u32) -> Heard {
        Heard {
            samples,
            sample_rate,
        }
    }

    pub fn samples(&self) -> &[f32] {
        &self.samples
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// How much audio this analysis covers.
    pub fn duration(&self) -> Duration {
        if self.sample_rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(self.samples.len() as f64 / f64::from(self.sample_rate))
    }

    /// The level of the sinusoid at `hz`, in dBFS ([`SILENCE_DB`] when there
    /// is no audio or the frequency is above Nyquist).
    pub fn tone_level(&self, hz: f32) -> f32 {
        tone_level(&self.samples, self.sample_rate, hz)
    }

    /// The median level at the off-tone probes around `hz`, in dBFS.
    pub fn noise_floor(&self, hz: f32) -> f32 {
        let nyquist = self.sample_rate as f32 / 2.0;
        let mut levels: Vec<f32> = FLOOR_PROBE_OFFSETS_HZ
            .iter()
            .flat_map(|o| [hz - o, hz + o])
            .filter(|&f| f > 20.0 && f < nyquist - 20.0)
            .map(|f| self.tone_level(f))
            .collect();
        if levels.is_empty() {
            return SILENCE_DB;
        }
        levels.sort_by(f32::total_cmp);
        let mid = levels.len() / 2;
        if levels.len().is_multiple_of(2) {
            (levels[mid - 1] + levels[mid]) / 2.0
        } else {
            levels[mid]
        }
    }

    /// Whether the tone at `hz` stands out (see the module docs).
    pub fn contains(&self, hz: f32) -> bool {
        let level = self.tone_level(hz);
        level >= CONTAINS_MIN_DBFS
            && level >= self.rms_db() - CONTAINS_BELOW_RMS_DB
            && level - self.noise_floor(hz) >= CONTAINS_SNR_DB
    }

    /// Root-mean-square of the audio, linear (1.0 = full-scale square wave).
    pub fn rms(&self) -> f32 {
        if self.samples.is_empty() {
            return 0.0;
        }
        let sum: f64 = self
            .samples
            .iter()
            .map(|&s| f64::from(s) * f64::from(s))
            .sum();
        (sum / self.samples.len() as f64).sqrt() as f32
    }

    /// [`Heard::rms`] in dBFS.
    pub fn rms_db(&self) -> f32 {
        to_db(self.rms())
    }
}

fn to_db(linear_amplitude: f32) -> f32 {
    if linear_amplitude <= 0.0 {
        SILENCE_DB
    } else {
        (20.0 * linear_amplitude.log10()).max(SILENCE_DB)
    }
}

/// Goertzel: the squared magnitude of the DFT of `samples` (weighted by
/// `window`) at `hz`.
pub fn goertzel_power(samples: &[f32], window: &[f32], sample_rate: u32, hz: f32) -> f64 {
    let w = 2.0 * std::f64::consts::PI * f64::from(hz) / f64::from(sample_rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for (&x, &win) in samples.iter().zip(window) {
        let s0 = f64::from(x * win) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// The level of the sinusoid at `hz` in `samples`, in dBFS (module docs).
pub fn tone_level(samples: &[f32], sample_rate: u32, hz: f32) -> f32 {
    if sample_rate == 0 || hz <= 0.0 || hz >= sample_rate as f32 / 2.0 {
        return SILENCE_DB;
    }
    let block = ((sample_rate as f32 * BLOCK_SECONDS) as usize).max(1);
    // Audio shorter than a block is analysed as one short block (at least 20 ms).
    let block = if samples.len() < block {
        samples.len()
    } else {
        block
    };
    if block < (sample_rate / 50) as usize {
        return SILENCE_DB;
    }
    let window: Vec<f32> = (0..block)
        .map(|i| {
            let phase = 2.0 * std::f32::consts::PI * i as f32 / block as f32;
            0.5 - 0.5 * phase.cos()
        })
        .collect();
    let gain: f64 = window.iter().map(|&w| f64::from(w)).sum();
    let (mut sum, mut blocks) = (0.0f64, 0u32);
    for chunk in samples.chunks_exact(block) {
        // |X| of a sine of amplitude A is A * gain / 2.
        let amplitude_sq = goertzel_power(chunk, &window, sample_rate, hz) * 4.0 / (gain * gain);
        sum += amplitude_sq;
        blocks += 1;
    }
    if blocks == 0 {
        return SILENCE_DB;
    }
    to_db((sum / f64::from(blocks)).sqrt() as f32)
}

/// A WAV file's audio, mixed down to mono.
#[derive(Debug, Clone)]
pub struct Wav {
    pub sample_rate: u32,
    pub channels: u16,
    /// Mono (channels averaged), ±1.0 full scale.
    pub samples: Vec<f32>,
}

/// Reads a WAV file: PCM 8/16/24/32-bit or 32-bit float, any channel count
/// and rate, plain or WAVE_FORMAT_EXTENSIBLE. A recording cut short (a data
/// chunk whose size is zero or runs past the end of the file, as when the
/// recorder was killed) is read up to the end of the file.
pub fn read_wav(path: impl AsRef<Path>) -> Result<Wav> {
    parse_wav(&std::fs::read(path)?)
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// [`read_wav`] over bytes in memory.
pub fn parse_wav(bytes: &[u8]) -> Result<Wav> {
    let bad = |detail: &str| Error::parse("WAV file", detail.to_owned());
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(bad("not RIFF/WAVE"));
    }
    let mut format: Option<(u16, u16, u32, u16)> = None; // tag, channels, rate, bits
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = le32(bytes, at + 4).ok_or_else(|| bad("truncated chunk header"))? as usize;
        let body = at + 8;
        if id == b"fmt " {
            let f = bytes
                .get(body..body + size.min(40))
                .ok_or_else(|| bad("truncated fmt chunk"))?;
            let mut tag = le16(f, 0).ok_or_else(|| bad("short fmt chunk"))?;
            let channels = le16(f, 2).ok_or_else(|| bad("short fmt chunk"))?;
            let rate = le32(f, 4).ok_or_else(|| bad("short fmt chunk"))?;
            let bits = le16(f, 14).ok_or_else(|| bad("short fmt chunk"))?;
            if tag == 0xFFFE {
                // WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format GUID.
                tag = le16(f, 24).ok_or_else(|| bad("short extensible fmt chunk"))?;
            }
            format = Some((tag, channels, rate, bits));
        } else if id == b"data" {
            let (tag, channels, rate, bits) = format.ok_or_else(|| bad("data before fmt"))?;
            let end = if size == 0 || body + size > bytes.len() {
                bytes.len()
            } else {
                body + size
            };
            return decode_wav_data(&bytes[body..end], tag, channels, rate, bits);
        }
        at = body + size + (size & 1);
    }
    Err(bad("no data chunk"))
}

fn decode_wav_data(
    data: &[u8],
    tag: u16,
    channels: u16,
    sample_rate: u32,
    bits: u16,
) -> Result<Wav> {
    let unsupported = || Error::parse("WAV format", format!("format tag {tag}, {bits} bits"));
    if channels == 0 || sample_rate == 0 {
        return Err(Error::parse("WAV format", "zero channels or sample rate"));
    }
    let width = usize::from(bits / 8);
    let sample: fn(&[u8]) -> f32 = match (tag, bits) {
        (1, 8) => |b| (f32::from(b[0]) - 128.0) / 128.0,
        (1, 16) => |b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0,
        (1, 24) => |b| (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as f32 / 8_388_608.0,
        (1, 32) => |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2_147_483_648.0,
        (3, 32) => |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        _ => return Err(unsupported()),
    };
    let frame = width * usize::from(channels);
    let samples = data
        .chunks_exact(frame)
        .map(|f| f.chunks_exact(width).map(sample).sum::<f32>() / f32::from(channels))
        .collect();
    Ok(Wav {
        sample_rate,
        channels,
        samples,
    })
}

/// The whole of a WAV file as a [`Heard`].
pub fn wav_heard(path: impl AsRef<Path>) -> Result<Heard> {
    let wav = read_wav(path)?;
    Ok(Heard::from_samples(wav.samples, wav.sample_rate))
}

/// The level in dBFS of each frequency in a WAV file (see [`Heard::tone_level`]).
pub fn wav_tones(path: impl AsRef<Path>, freqs: &[f32]) -> Result<Vec<f32>> {
    let heard = wav_heard(path)?;
    Ok(freqs.iter().map(|&f| heard.tone_level(f)).collect())
}

/// Whether a WAV file contains the tone (see [`Heard::contains`]).
pub fn wav_contains(path: impl AsRef<Path>, hz: f32) -> Result<bool> {
    Ok(wav_heard(path)?.contains(hz))
}

/// Writes a 16-bit PCM WAV (for tests and for saving what a leg heard).
pub fn write_wav(
    path: impl AsRef<Path>,
    sample_rate: u32,
    channels: u16,
    interleaved: &[f32],
) -> Result<()> {
    let data_len = (interleaved.len() * 2) as u32;
    let mut b = Vec::with_capacity(44 + interleaved.len() * 2);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&sample_rate.to_le_bytes());
    b.extend_from_slice(&(sample_rate * u32::from(channels) * 2).to_le_bytes());
    b.extend_from_slice(&(channels * 2).to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for &s in interleaved {
        b.extend_from_slice(&((s.clamp(-1.0, 1.0) * 32_767.0) as i16).to_le_bytes());
    }
    std::fs::write(path, b)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, secs: f32, tones: &[(f32, f32)]) -> Vec<f32> {
        let n = (rate as f32 * secs) as usize;
        (0..n)
            .map(|i| {
                let t = i as f32 / rate as f32;
                tones
                    .iter()
                    .map(|&(hz, a)| a * (2.0 * std::f32::consts::PI * hz * t).sin())
                    .sum()
            })
            .collect()
    }

    fn noise(n: usize, amplitude: f32, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0) * amplitude
            })
            .collect()
    }

    #[test]
    fn level_of_a_pure_tone_is_its_amplitude_in_dbfs() {
        let h = Heard::from_samples(sine(16_000, 1.0, &[(440.0, 0.1)]), 16_000);
        assert!(
            (h.tone_level(440.0) + 20.0).abs() < 1.5,
            "{}",
            h.tone_level(440.0)
        );
        assert!(h.contains(440.0));
        assert!(!h.contains(1000.0));
        assert!(h.tone_level(1000.0) < -80.0);
        assert!((h.rms() - 0.1 / 2f32.sqrt()).abs() < 0.005);
        // Off-bin frequency (not a multiple of 5 Hz) still reads within 1.5 dB.
        let h = Heard::from_samples(sine(8_000, 1.0, &[(1234.5, 0.5)]), 8_000);
        assert!((h.tone_level(1234.5) + 6.02).abs() < 1.5);
    }

    #[test]
    fn two_equal_tones_both_show_and_a_third_does_not() {
        let mut s = sine(16_000, 2.0, &[(400.0, 0.2), (650.0, 0.2)]);
        for (x, n) in s.iter_mut().zip(noise(32_000, 0.01, 1)) {
            *x += n;
        }
        let h = Heard::from_samples(s, 16_000);
        assert!(h.contains(400.0));
        assert!(h.contains(650.0));
        assert!(!h.contains(900.0));
        assert!(!h.contains(525.0));
        // Close neighbours: tones 100 Hz apart are told apart.
        let h = Heard::from_samples(sine(16_000, 2.0, &[(400.0, 0.2), (500.0, 0.2)]), 16_000);
        assert!(h.contains(400.0) && h.contains(500.0));
        assert!(!h.contains(450.0));
        assert!(!h.contains(600.0));
    }

    #[test]
    fn a_quiet_voice_counts_but_a_leak_under_a_loud_one_does_not() {
        let h = Heard::from_samples(sine(16_000, 2.0, &[(400.0, 0.3), (890.0, 0.03)]), 16_000);
        assert!(h.contains(400.0) && h.contains(890.0));
        // 46 dB under the loud tone: clear of the floor, yet not heard.
        let h = Heard::from_samples(sine(16_000, 2.0, &[(550.0, 0.3), (400.0, 0.0015)]), 16_000);
        assert!(h.tone_level(400.0) - h.noise_floor(400.0) > CONTAINS_SNR_DB);
        assert!(!h.contains(400.0));
    }

    #[test]
    fn noise_alone_contains_nothing_and_silence_reads_silence() {
        let h = Heard::from_samples(noise(16_000, 0.3, 9), 16_000);
        for hz in [300.0, 440.0, 1000.0, 3000.0] {
            assert!(!h.contains(hz), "{hz}");
        }
        let h = Heard::from_samples(vec![0.0; 16_000], 16_000);
        assert_eq!(h.tone_level(440.0), SILENCE_DB);
        assert!(!h.contains(440.0));
        let h = Heard::default();
        assert_eq!(h.tone_level(440.0), SILENCE_DB);
        assert_eq!(h.rms(), 0.0);
        // A very quiet tone is below the absolute floor.
        let h = Heard::from_samples(sine(16_000, 1.0, &[(440.0, 0.0005)]), 16_000);
        assert!(!h.contains(440.0));
    }

    #[test]
    fn a_tone_present_half_the_time_still_shows() {
        let mut s = sine(16_000, 1.0, &[(700.0, 0.3)]);
        s.extend(vec![0.0; 16_000]);
        let h = Heard::from_samples(s, 16_000);
        assert!(h.contains(700.0));
        let level = h.tone_level(700.0);
        assert!(
            (level - (20.0 * 0.3f32.log10() - 3.0)).abs() < 1.5,
            "{level}"
        );
    }

    #[test]
    fn wav_round_trip_mono_and_stereo() {
        let dir = std::env::temp_dir().join(format!("tandem-loadtest-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mono = dir.join("mono.wav");
        write_wav(&mono, 48_000, 1, &sine(48_000, 1.0, &[(1000.0, 0.5)])).expect("write");
        let levels = wav_tones(&mono, &[1000.0, 2000.0]).expect("read");
        assert!((levels[0] + 6.0).abs() < 1.5, "{levels:?}");
        assert!(levels[1] < -60.0);
        assert!(wav_contains(&mono, 1000.0).expect("read"));
        assert!(!wav_contains(&mono, 1500.0).expect("read"));

        // Stereo: a tone on each side; the mixdown holds both at half level.
        let left = sine(8_000, 1.0, &[(500.0, 0.4)]);
        let right = sine(8_000, 1.0, &[(800.0, 0.4)]);
        let inter: Vec<f32> = left
            .iter()
            .zip(&right)
            .flat_map(|(&l, &r)| [l, r])
            .collect();
        let stereo = dir.join("stereo.wav");
        write_wav(&stereo, 8_000, 2, &inter).expect("write");
        let wav = read_wav(&stereo).expect("read");
        assert_eq!(
            (wav.sample_rate, wav.channels, wav.samples.len()),
            (8_000, 2, 8_000)
        );
        assert!(wav_contains(&stereo, 500.0).expect("read"));
        assert!(wav_contains(&stereo, 800.0).expect("read"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn wav_parser_handles_extra_chunks_truncation_and_garbage() {
        // RIFF with a LIST chunk (odd size, padded) before fmt, and a data
        // chunk whose size field is zero (recorder killed before finalising).
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF\0\0\0\0WAVE");
        b.extend_from_slice(b"LIST");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(b"abc\0");
        b.extend_from_slice(b"fmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        for v in [1u16, 1] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&16_000u32.to_le_bytes());
        b.extend_from_slice(&32_000u32.to_le_bytes());
        b.extend_from_slice(&2u16.to_le_bytes());
        b.extend_from_slice(&16u16.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&0u32.to_le_bytes());
        for s in sine(16_000, 0.5, &[(300.0, 0.5)]) {
            b.extend_from_slice(&((s * 32_767.0) as i16).to_le_bytes());
        }
        let wav = parse_wav(&b).expect("parse");
        assert_eq!(wav.samples.len(), 8_000);
        assert!(Heard::from_samples(wav.samples, wav.sample_rate).contains(300.0));

        assert!(parse_wav(b"RIFF").is_err());
        assert!(parse_wav(b"RIFF\0\0\0\0WAVEdata\0\0\0\0").is_err());
        let mut float = b.clone();
        float[32] = 7; // an unknown format tag in the fmt chunk
        assert!(parse_wav(&float).is_err());
    }
}
