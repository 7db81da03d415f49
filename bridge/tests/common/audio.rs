//! What a participant heard: WAV reading, G.711 µ-law, and tone levels by a
//! Hann-windowed Goertzel filter (exact frequency, no FFT binning).

use std::path::Path;

/// Mono samples in [-1, 1] (channels averaged) at `rate` Hz.
pub struct Audio {
    pub rate: u32,
    pub samples: Vec<f32>,
}

impl Audio {
    pub fn seconds(&self) -> f32 {
        self.samples.len() as f32 / self.rate as f32
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads a PCM16 or float32 WAV. Lenient about the sizes in the header: a
/// recorder that was killed leaves them 0 or stale, so a bad `data` size means
/// "to the end of the file".
pub fn read_wav(path: &Path) -> Result<Audio, String> {
    let b = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        return Err(format!("{}: not a RIFF/WAVE file", path.display()));
    }
    let mut at = 12;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    while at + 8 <= b.len() {
        let id = &b[at..at + 4];
        let size = le32(&b, at + 4) as usize;
        let body = at + 8;
        if id == b"fmt " && body + 16 <= b.len() {
            let mut format = le16(&b, body);
            let channels = le16(&b, body + 2);
            let rate = le32(&b, body + 4);
            let bits = le16(&b, body + 14);
            if format == 0xFFFE && size >= 26 && body + 26 <= b.len() {
                format = le16(&b, body + 24); // sub-format GUID's first two bytes
            }
            fmt = Some((format, channels, rate, bits));
        } else if id == b"data" {
            let (format, channels, rate, bits) =
                fmt.ok_or_else(|| format!("{}: data before fmt", path.display()))?;
            let end = if size == 0 || body + size > b.len() {
                b.len()
            } else {
                body + size
            };
            let data = &b[body..end];
            let ch = usize::from(channels.max(1));
            let mono: Vec<f32> = match (format, bits) {
                (1, 16) => data
                    .chunks_exact(2 * ch)
                    .map(|f| {
                        f.chunks_exact(2)
                            .map(|s| f32::from(i16::from_le_bytes([s[0], s[1]])) / 32768.0)
                            .sum::<f32>()
                            / ch as f32
                    })
                    .collect(),
                (3, 32) => data
                    .chunks_exact(4 * ch)
                    .map(|f| {
                        f.chunks_exact(4)
                            .map(|s| f32::from_le_bytes([s[0], s[1], s[2], s[3]]))
                            .sum::<f32>()
                            / ch as f32
                    })
                    .collect(),
                _ => {
                    return Err(format!(
                        "{}: unsupported WAV format {format} with {bits} bits",
                        path.display()
                    ));
                }
            };
            return Ok(Audio {
                rate,
                samples: mono,
            });
        }
        at = body + size + (size & 1);
    }
    Err(format!("{}: no data chunk", path.display()))
}

/// Amplitude (peak, full scale = 1.0) of a sinusoid at `hz` in `x`, by a
/// Goertzel filter over a Hann window. A pure tone of amplitude A reads A.
pub fn goertzel(x: &[f32], rate: u32, hz: f32) -> f32 {
    let n = x.len();
    if n < 2 {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * f64::from(hz) / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut wsum = 0.0f64;
    for (i, &v) in x.iter().enumerate() {
        let win = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos();
        wsum += win;
        let s0 = f64::from(v) * win + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    // |X(w)|, exact for non-integer bins.
    let re = s1 - s2 * w.cos();
    let im = s2 * w.sin();
    let mag = (re * re + im * im).sqrt();
    (2.0 * mag / wsum) as f32
}

/// The median, over 200 ms blocks between `from_s` and `to_s` (seconds into
/// the audio; `to_s` is clamped to its end), of the tone's amplitude. The
/// median ignores a few blocks of join/leave transients or packet loss.
pub fn tone_level(a: &Audio, hz: f32, from_s: f32, to_s: f32) -> f32 {
    let block = (a.rate / 5) as usize;
    let from = ((from_s.max(0.0) * a.rate as f32) as usize).min(a.samples.len());
    let to = ((to_s * a.rate as f32) as usize).min(a.samples.len());
    let mut levels: Vec<f32> = a.samples[from..to.max(from)]
        .chunks_exact(block.max(1))
        .map(|c| goertzel(c, a.rate, hz))
        .collect();
    if levels.is_empty() {
        return 0.0;
    }
    levels.sort_by(|x, y| x.total_cmp(y));
    levels[levels.len() / 2]
}

pub fn dbfs(amplitude: f32) -> f32 {
    20.0 * amplitude.max(1e-9).log10()
}

/// The loudest amplitude in the window (to tell "silence" from "wrong tone").
pub fn peak(a: &Audio, from_s: f32, to_s: f32) -> f32 {
    let from = ((from_s.max(0.0) * a.rate as f32) as usize).min(a.samples.len());
    let to = ((to_s * a.rate as f32) as usize).min(a.samples.len());
    a.samples[from..to.max(from)]
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()))
}

/// G.711 µ-law encoding of one 16-bit sample.
pub fn ulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// G.711 µ-law decoding of one byte.
pub fn ulaw_decode(byte: u8) -> i16 {
    let u = !byte;
    let sign = u & 0x80;
    let exponent = i32::from((u >> 4) & 0x07);
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if sign != 0 { -magnitude } else { magnitude }) as i16
}

/// Asserts that `heard` contains every tone of `present` and not `absent`,
/// judged between `from_s` and `to_s`: each present tone at least
/// `MIN_PRESENT` amplitude, the absent one below `MAX_ABSENT` and at least
/// 20 dB under the weakest present tone. Prints every level.
pub fn assert_tones(
    who: &str,
    heard: &Audio,
    present: &[f32],
    absent: &[f32],
    from_s: f32,
    to_s: f32,
) {
    const MIN_PRESENT: f32 = 0.03; // about -30 dBFS; the tones are sent near -6 dBFS
    const MAX_ABSENT: f32 = 0.01; // -40 dBFS
    let report = |hz: f32| {
        let l = tone_level(heard, hz, from_s, to_s);
        (hz, l)
    };
    let p: Vec<(f32, f32)> = present.iter().map(|&h| report(h)).collect();
    let a: Vec<(f32, f32)> = absent.iter().map(|&h| report(h)).collect();
    let mut msg = format!(
        "{who}: heard {:.1} s at {} Hz, analysed {from_s:.1}-{to_s:.1} s, peak {:.3}:",
        heard.seconds(),
        heard.rate,
        peak(heard, from_s, to_s)
    );
    for (hz, l) in &p {
        msg += &format!(" [want {hz} Hz: {l:.4} = {:.1} dBFS]", dbfs(*l));
    }
    for (hz, l) in &a {
        msg += &format!(" [own {hz} Hz: {l:.4} = {:.1} dBFS]", dbfs(*l));
    }
    eprintln!("{msg}");
    let weakest = p.iter().map(|x| x.1).fold(f32::INFINITY, f32::min);
    for (hz, l) in &p {
        assert!(
            *l >= MIN_PRESENT,
            "{who} should hear {hz} Hz but its level is {l:.4} ({:.1} dBFS, need >= {MIN_PRESENT}). {msg}",
            dbfs(*l)
        );
    }
    for (hz, l) in &a {
        assert!(
            *l <= MAX_ABSENT && *l * 10.0 <= weakest,
            "{who} should not hear {hz} Hz (mix-minus) but its level is {l:.4} ({:.1} dBFS; need <= {MAX_ABSENT} and 20 dB under the others). {msg}",
            dbfs(*l)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f32, amp: f32, secs: f32) -> Vec<f32> {
        (0..(rate as f32 * secs) as usize)
            .map(|i| amp * (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin())
            .collect()
    }

    #[test]
    fn goertzel_reads_amplitude_and_rejects_others() {
        let mut x = tone(8000, 1000.0, 0.5, 1.0);
        for (s, t) in x.iter_mut().zip(tone(8000, 1700.0, 0.25, 1.0)) {
            *s += t;
        }
        let a = Audio {
            rate: 8000,
            samples: x,
        };
        assert!((tone_level(&a, 1000.0, 0.0, 1.0) - 0.5).abs() < 0.02);
        assert!((tone_level(&a, 1700.0, 0.0, 1.0) - 0.25).abs() < 0.02);
        assert!(tone_level(&a, 440.0, 0.0, 1.0) < 0.001);
    }

    #[test]
    fn ulaw_round_trips() {
        for s in [-32000i16, -1000, -10, 0, 10, 1000, 32000] {
            let d = ulaw_decode(ulaw_encode(s));
            assert!(
                (i32::from(d) - i32::from(s)).abs() <= (i32::from(s).abs() / 16).max(8),
                "{s} -> {d}"
            );
        }
    }
}
