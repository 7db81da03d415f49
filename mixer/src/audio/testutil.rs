//! Signal helpers shared by the unit tests.

pub fn sine(freq: f64, rate: f64, amp: f64, n: usize) -> Vec<i16> {
    sine_at(freq, rate, amp, 0, n)
}

/// `n` samples of a sine starting at sample index `start` (for frame-by-frame generation).
pub fn sine_at(freq: f64, rate: f64, amp: f64, start: usize, n: usize) -> Vec<i16> {
    (start..start + n)
        .map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / rate).sin()) as i16)
        .collect()
}

/// Best SNR of `output` against `input` over delays `0..=max_delay`,
/// ignoring the first `skip` input samples (codec start-up).
pub fn snr_aligned(input: &[i16], output: &[i16], max_delay: usize, skip: usize) -> (f64, usize) {
    let mut best = (f64::MIN, 0);
    for delay in 0..=max_delay {
        let mut sig = 0.0;
        let mut noise = 0.0;
        for i in skip..input.len().min(output.len().saturating_sub(delay)) {
            let x = f64::from(input[i]);
            let y = f64::from(output[i + delay]);
            sig += x * x;
            noise += (x - y) * (x - y);
        }
        let snr = 10.0 * (sig / noise.max(1e-9)).log10();
        if snr > best.0 {
            best = (snr, delay);
        }
    }
    best
}

/// Amplitude of the `freq` component of `x` (Goertzel), in sample units:
/// a full-length sine of amplitude A gives about A.
pub fn goertzel(x: &[i16], freq: f64, rate: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / rate;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / x.len() as f64
}

pub fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}
