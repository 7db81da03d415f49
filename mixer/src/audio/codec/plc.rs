//! Packet loss concealment for the waveform codecs (G.711, G.722), at 48 kHz:
//! repeat the last pitch period of good audio, fading out over
//! [`FADE_SAMPLES`], then silence. (Opus has its own PLC and FEC.)

/// Good audio kept for pitch search: 50 ms.
const HISTORY: usize = 2400;
/// Pitch search range at 48 kHz: 2.5 ms (400 Hz) .. 15 ms (66 Hz).
const MIN_PERIOD: usize = 120;
const MAX_PERIOD: usize = 720;
/// Correlation window for the pitch search: 10 ms.
const WINDOW: usize = 480;
/// Concealment fades to silence over 60 ms (three 20 ms packets).
pub const FADE_SAMPLES: usize = 2880;

#[derive(Debug, Clone)]
pub struct Plc {
    history: Vec<i16>,
    period: usize,
    /// Samples concealed since the last good packet.
    concealed: usize,
}

impl Default for Plc {
    fn default() -> Self {
        Self {
            history: Vec::with_capacity(HISTORY * 2),
            period: MIN_PERIOD,
            concealed: 0,
        }
    }
}

impl Plc {
    /// Records decoded audio.
    pub fn good(&mut self, pcm: &[i16]) {
        self.concealed = 0;
        self.history.extend_from_slice(pcm);
        if self.history.len() > HISTORY {
            let excess = self.history.len() - HISTORY;
            self.history.drain(..excess);
        }
    }

    /// Appends `n` samples of concealment.
    pub fn conceal(&mut self, n: usize, out: &mut Vec<i16>) {
        if self.concealed == 0 {
            self.period = self.estimate_period();
        }
        let h = &self.history;
        for k in 0..n {
            let g = self.concealed + k;
            if g >= FADE_SAMPLES || h.len() < self.period {
                out.push(0);
                continue;
            }
            let src = h[h.len() - self.period + g % self.period];
            let gain = 1.0 - g as f32 / FADE_SAMPLES as f32;
            out.push((f32::from(src) * gain) as i16);
        }
        self.concealed += n;
    }

    /// Lag of maximum normalised autocorrelation over the recent history.
    fn estimate_period(&self) -> usize {
        let h = &self.history;
        if h.len() < MAX_PERIOD + WINDOW {
            return h.len().clamp(1, MIN_PERIOD);
        }
        let end = h.len();
        let x = &h[end - WINDOW..];
        let mut best = (f64::MIN, MIN_PERIOD);
        // Stride 2 over lags and samples: plenty for a repetition period.
        for lag in (MIN_PERIOD..=MAX_PERIOD).step_by(2) {
            let y = &h[end - WINDOW - lag..end - lag];
            let (mut xy, mut yy) = (0i64, 0i64);
            for i in (0..WINDOW).step_by(2) {
                xy += i64::from(x[i]) * i64::from(y[i]);
                yy += i64::from(y[i]) * i64::from(y[i]);
            }
            let score = if yy == 0 {
                0.0
            } else {
                xy as f64 / (yy as f64).sqrt()
            };
            if score > best.0 {
                best = (score, lag);
            }
        }
        best.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::testutil::{goertzel, sine};

    #[test]
    fn repeats_pitch_then_fades_to_silence() {
        let mut plc = Plc::default();
        // 200 Hz: period of 240 samples at 48 kHz.
        let tone = sine(200.0, 48000.0, 8000.0, 4800);
        plc.good(&tone);
        assert_eq!(plc.estimate_period() % 240, 0);
        let mut out = Vec::new();
        plc.conceal(960, &mut out);
        // The first concealed frame continues the tone.
        assert!(goertzel(&out, 200.0, 48000.0) > 4000.0);
        plc.conceal(960, &mut out);
        plc.conceal(960, &mut out);
        plc.conceal(960, &mut out);
        assert!(out[2880..].iter().all(|&s| s == 0));
        // Good audio resets the fade.
        plc.good(&tone[..960]);
        let mut again = Vec::new();
        plc.conceal(960, &mut again);
        assert!(again.iter().any(|&s| s.abs() > 1000));
    }

    #[test]
    fn no_history_gives_silence() {
        let mut plc = Plc::default();
        let mut out = Vec::new();
        plc.conceal(960, &mut out);
        assert_eq!(out.len(), 960);
        assert!(out.iter().all(|&s| s == 0));
    }
}
