//! ITU-T G.722 at 64 kbit/s (mode 1): a transmit QMF splits 16 kHz audio into
//! two 8 kHz sub-bands, each coded by its own ADPCM (6 bits low, 2 bits high),
//! and the receive QMF puts them back together.
//!
//! Written from the algorithm in G.722 (block numbers in comments follow the
//! Recommendation). Scaling follows the reference codecs deployed in SIP
//! endpoints (the 16-bit input is halved into the 15-bit ADPCM range, and the
//! decoder doubles it back), so our bitstream has the same level as theirs.

const QMF: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];

/// Low-band decision levels (QUANTL), scaled by `det`.
const Q6: [i32; 32] = [
    0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940,
    1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919, 0, 0,
];
/// 6-bit codes for negative / positive low-band errors, by decision interval.
const ILN: [i32; 32] = [
    0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11,
    10, 9, 8, 7, 6, 5, 4, 0,
];
const ILP: [i32; 32] = [
    0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39,
    38, 37, 36, 35, 34, 33, 32, 0,
];
/// Log scale factor multipliers (LOGSCL) for the 4-bit low-band magnitude.
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
const RL42: [i32; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
/// Inverse log table (SCALEL / SCALEH).
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];
/// Inverse quantiser outputs: 4-bit (feeds the predictor), 6-bit (decoder
/// output in mode 1), 2-bit high band.
const QM4: [i32; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584,
    1200, 0,
];
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
    -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
    -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280,
    11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776,
    2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
const WH: [i32; 3] = [0, -214, 798];
const RH2: [i32; 4] = [2, 1, 2, 1];
const IHN: [i32; 3] = [0, 1, 0];
const IHP: [i32; 3] = [0, 3, 2];

#[inline]
fn sat16(v: i32) -> i32 {
    v.clamp(i32::from(i16::MIN), i32::from(i16::MAX))
}

/// State of one sub-band's ADPCM (the adaptive predictor and scale factor).
#[derive(Debug, Clone)]
struct Band {
    /// Signal estimate.
    s: i32,
    /// Pole-section (`sp`) and zero-section (`sz`) predictor outputs.
    sp: i32,
    sz: i32,
    /// Partially reconstructed signal history.
    p: [i32; 3],
    /// Reconstructed signal history.
    r: [i32; 3],
    /// Pole coefficients and their updates.
    a: [i32; 3],
    ap: [i32; 3],
    /// Zero coefficients, their updates, and the quantised difference history.
    b: [i32; 7],
    bp: [i32; 7],
    d: [i32; 7],
    /// Log scale factor and the scale factor.
    nb: i32,
    det: i32,
}

impl Band {
    fn new(det: i32) -> Self {
        Self {
            s: 0,
            sp: 0,
            sz: 0,
            p: [0; 3],
            r: [0; 3],
            a: [0; 3],
            ap: [0; 3],
            b: [0; 7],
            bp: [0; 7],
            d: [0; 7],
            nb: 0,
            det,
        }
    }

    /// Blocks 3L/3H: adapt the log scale factor and derive `det` from it.
    fn scale(&mut self, wd: i32, max_nb: i32, shift_base: i32) {
        self.nb = (((self.nb * 127) >> 7) + wd).clamp(0, max_nb);
        let wd1 = ((self.nb >> 6) & 31) as usize;
        let wd2 = shift_base - (self.nb >> 11);
        let wd3 = if wd2 < 0 {
            ILB[wd1] << -wd2
        } else {
            ILB[wd1] >> wd2
        };
        self.det = wd3 << 2;
    }

    /// Block 4: reconstruct, adapt the pole and zero predictors, predict.
    fn update(&mut self, d: i32) {
        // RECONS, PARREC
        self.d[0] = d;
        self.r[0] = sat16(self.s + d);
        self.p[0] = sat16(self.sz + d);

        // UPPOL2
        let sg0 = self.p[0] >> 15;
        let sg1 = self.p[1] >> 15;
        let sg2 = self.p[2] >> 15;
        let wd1 = sat16(self.a[1] << 2);
        let wd2 = (if sg0 == sg1 { -wd1 } else { wd1 }).min(32767);
        let mut wd3 = (wd2 >> 7) + if sg0 == sg2 { 128 } else { -128 };
        wd3 += (self.a[2] * 32512) >> 15;
        self.ap[2] = wd3.clamp(-12288, 12288);

        // UPPOL1
        let wd1 = if sg0 == sg1 { 192 } else { -192 };
        let wd2 = (self.a[1] * 32640) >> 15;
        let lim = sat16(15360 - self.ap[2]);
        self.ap[1] = sat16(wd1 + wd2).clamp(-lim, lim);

        // UPZERO
        let step = if d == 0 { 0 } else { 128 };
        let sgd = d >> 15;
        for i in 1..7 {
            let wd2 = if (self.d[i] >> 15) == sgd {
                step
            } else {
                -step
            };
            let wd3 = (self.b[i] * 32640) >> 15;
            self.bp[i] = sat16(wd2 + wd3);
        }

        // DELAYA
        for i in (1..7).rev() {
            self.d[i] = self.d[i - 1];
            self.b[i] = self.bp[i];
        }
        for i in (1..3).rev() {
            self.r[i] = self.r[i - 1];
            self.p[i] = self.p[i - 1];
            self.a[i] = self.ap[i];
        }

        // FILTEP
        let wd1 = (self.a[1] * sat16(self.r[1] + self.r[1])) >> 15;
        let wd2 = (self.a[2] * sat16(self.r[2] + self.r[2])) >> 15;
        self.sp = sat16(wd1 + wd2);

        // FILTEZ
        let mut sz = 0;
        for i in (1..7).rev() {
            sz += (self.b[i] * sat16(self.d[i] + self.d[i])) >> 15;
        }
        self.sz = sat16(sz);

        // PREDIC
        self.s = sat16(self.sp + self.sz);
    }
}

/// G.722 64 kbit/s encoder: 16 kHz PCM in, one byte per two samples out.
#[derive(Debug, Clone)]
pub struct G722Encoder {
    low: Band,
    high: Band,
    qmf: [i32; 24],
}

impl Default for G722Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Encoder {
    pub fn new() -> Self {
        Self {
            low: Band::new(32),
            high: Band::new(8),
            qmf: [0; 24],
        }
    }

    /// Encodes pairs of 16 kHz samples; a trailing odd sample is ignored.
    pub fn encode(&mut self, pcm16k: &[i16], out: &mut Vec<u8>) {
        out.reserve(pcm16k.len() / 2);
        for pair in pcm16k.chunks_exact(2) {
            // Transmit QMF: shift in two samples, produce one low and one high.
            self.qmf.copy_within(2.., 0);
            self.qmf[22] = i32::from(pair[0]);
            self.qmf[23] = i32::from(pair[1]);
            let mut sumodd = 0;
            let mut sumeven = 0;
            for i in 0..12 {
                sumodd += self.qmf[2 * i] * QMF[i];
                sumeven += self.qmf[2 * i + 1] * QMF[11 - i];
            }
            let xlow = (sumeven + sumodd) >> 14;
            let xhigh = (sumeven - sumodd) >> 14;
            out.push(self.encode_bands(xlow, xhigh));
        }
    }

    fn encode_bands(&mut self, xlow: i32, xhigh: i32) -> u8 {
        // 1L SUBTRA, QUANTL
        let el = sat16(xlow - self.low.s);
        let wd = if el >= 0 { el } else { -(el + 1) };
        let mut i = 1;
        while i < 30 && wd >= (Q6[i] * self.low.det) >> 12 {
            i += 1;
        }
        let ilow = if el < 0 { ILN[i] } else { ILP[i] };

        // 2L INVQAL (4-bit, for the predictor), 3L LOGSCL/SCALEL
        let ril = (ilow >> 2) as usize;
        let dlow = (self.low.det * QM4[ril]) >> 15;
        self.low.scale(WL[RL42[ril] as usize], 18432, 8);
        self.low.update(dlow);

        // 1H SUBTRA, QUANTH
        let eh = sat16(xhigh - self.high.s);
        let wd = if eh >= 0 { eh } else { -(eh + 1) };
        let mih = if wd >= (564 * self.high.det) >> 12 {
            2
        } else {
            1
        };
        let ihigh = if eh < 0 { IHN[mih] } else { IHP[mih] };

        // 2H INVQAH, 3H LOGSCH/SCALEH
        let dhigh = (self.high.det * QM2[ihigh as usize]) >> 15;
        self.high.scale(WH[RH2[ihigh as usize] as usize], 22528, 10);
        self.high.update(dhigh);

        ((ihigh << 6) | ilow) as u8
    }
}

/// G.722 64 kbit/s decoder: one byte in, two 16 kHz samples out.
#[derive(Debug, Clone)]
pub struct G722Decoder {
    low: Band,
    high: Band,
    qmf: [i32; 24],
}

impl Default for G722Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Decoder {
    pub fn new() -> Self {
        Self {
            low: Band::new(32),
            high: Band::new(8),
            qmf: [0; 24],
        }
    }

    /// Every byte is a valid code word, so decoding cannot fail.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        out.reserve(payload.len() * 2);
        for &code in payload {
            let code = i32::from(code);
            let ilow6 = (code & 0x3F) as usize;
            let ihigh = ((code >> 6) & 0x03) as usize;

            // 5L INVQBL (6-bit output), 6L LIMIT
            let rlow = (self.low.s + ((self.low.det * QM6[ilow6]) >> 15)).clamp(-16384, 16383);

            // 2L INVQAL (4-bit, predictor), 3L
            let ril = ilow6 >> 2;
            let dlow = (self.low.det * QM4[ril]) >> 15;
            self.low.scale(WL[RL42[ril] as usize], 18432, 8);
            self.low.update(dlow);

            // 2H INVQAH, 5H RECONS, 6H LIMIT, 3H
            let dhigh = (self.high.det * QM2[ihigh]) >> 15;
            let rhigh = (dhigh + self.high.s).clamp(-16384, 16383);
            self.high.scale(WH[RH2[ihigh] as usize], 22528, 10);
            self.high.update(dhigh);

            // Receive QMF.
            self.qmf.copy_within(2.., 0);
            self.qmf[22] = rlow + rhigh;
            self.qmf[23] = rlow - rhigh;
            let mut xout1 = 0;
            let mut xout2 = 0;
            for i in 0..12 {
                xout2 += self.qmf[2 * i] * QMF[i];
                xout1 += self.qmf[2 * i + 1] * QMF[11 - i];
            }
            out.push(sat16(xout1 >> 11) as i16);
            out.push(sat16(xout2 >> 11) as i16);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::audio::testutil::{sine, snr_aligned};

    fn round_trip(pcm: &[i16]) -> Vec<i16> {
        let mut enc = G722Encoder::new();
        let mut dec = G722Decoder::new();
        let mut out = Vec::new();
        // 20 ms packets, as on the wire.
        for frame in pcm.chunks(320) {
            let mut bytes = Vec::new();
            enc.encode(frame, &mut bytes);
            assert_eq!(bytes.len(), frame.len() / 2);
            dec.decode(&bytes, &mut out);
        }
        out
    }

    #[test]
    fn sine_1khz_round_trips_with_high_snr() {
        let input = sine(1000.0, 16000.0, 10000.0, 16000);
        let output = round_trip(&input);
        let (snr, delay) = snr_aligned(&input, &output, 64, 800);
        // The QMF pair delays by 22 samples (modulo the tone's 16-sample period).
        assert_eq!(delay % 16, 22 % 16, "delay {delay}");
        assert!(snr > 20.0, "SNR {snr:.1} dB");
    }

    #[test]
    fn levels_and_high_band_are_preserved() {
        // 6 kHz lives in the upper sub-band: it must survive too (high-band
        // ADPCM has only 2 bits, so the bar is lower).
        for (freq, min_snr) in [(300.0, 20.0), (3000.0, 20.0), (6000.0, 8.0)] {
            for amp in [1000.0, 8000.0, 25000.0] {
                let input = sine(freq, 16000.0, amp, 8000);
                let output = round_trip(&input);
                let (snr, _) = snr_aligned(&input, &output, 64, 800);
                assert!(snr > min_snr, "{freq} Hz at {amp}: SNR {snr:.1} dB");
            }
        }
    }

    #[test]
    fn silence_decodes_to_near_silence() {
        let input = vec![0i16; 320];
        let mut enc = G722Encoder::new();
        let mut bytes = Vec::new();
        enc.encode(&input, &mut bytes);
        let mut dec = G722Decoder::new();
        let mut out = Vec::new();
        dec.decode(&bytes, &mut out);
        assert!(out.iter().all(|s| s.abs() < 64), "{out:?}");
    }

    #[test]
    fn decoder_survives_arbitrary_bytes() {
        let mut dec = G722Decoder::new();
        let mut out = Vec::new();
        let junk: Vec<u8> = (0..4000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        dec.decode(&junk, &mut out);
        assert_eq!(out.len(), 8000);
    }
}
