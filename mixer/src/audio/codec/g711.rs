//! ITU-T G.711 µ-law and A-law, table driven.
//!
//! The tables are built at compile time from the segment rules of G.711, so
//! encoding is one shift and one load per sample and decoding is one load.

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 8159;

/// Segment end points (in the 14-bit µ-law / 13-bit A-law magnitude domain).
const SEG_UEND: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
const SEG_AEND: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

const fn segment(val: i32, ends: &[i32; 8]) -> usize {
    let mut i = 0;
    while i < 8 {
        if val <= ends[i] {
            return i;
        }
        i += 1;
    }
    8
}

/// µ-law code for a 14-bit sample (`pcm16 >> 2`).
const fn ulaw_from_14(mut v: i32) -> u8 {
    let mask: i32 = if v < 0 {
        v = -v;
        0x7F
    } else {
        0xFF
    };
    if v > ULAW_CLIP {
        v = ULAW_CLIP;
    }
    v += ULAW_BIAS >> 2;
    let seg = segment(v, &SEG_UEND);
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let u = ((seg as i32) << 4) | ((v >> (seg + 1)) & 0xF);
    (u ^ mask) as u8
}

/// A-law code for a 13-bit sample (`pcm16 >> 3`).
const fn alaw_from_13(mut v: i32) -> u8 {
    let mask: i32 = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let seg = segment(v, &SEG_AEND);
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let mut a = (seg as i32) << 4;
    if seg < 2 {
        a |= (v >> 1) & 0xF;
    } else {
        a |= (v >> seg) & 0xF;
    }
    (a ^ mask) as u8
}

const fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code as i32;
    let mut t = ((u & 0x0F) << 3) + ULAW_BIAS;
    t <<= (u & 0x70) >> 4;
    (if u & 0x80 != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    }) as i16
}

const fn alaw_to_linear(code: u8) -> i16 {
    let a = (code ^ 0x55) as i32;
    let mut t = (a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// Indexed by the 14-bit sample plus 8192.
static ULAW_ENCODE: [u8; 16384] = {
    let mut t = [0u8; 16384];
    let mut i = 0;
    while i < 16384 {
        t[i] = ulaw_from_14(i as i32 - 8192);
        i += 1;
    }
    t
};

/// Indexed by the 13-bit sample plus 4096.
static ALAW_ENCODE: [u8; 8192] = {
    let mut t = [0u8; 8192];
    let mut i = 0;
    while i < 8192 {
        t[i] = alaw_from_13(i as i32 - 4096);
        i += 1;
    }
    t
};

static ULAW_DECODE: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_to_linear(i as u8);
        i += 1;
    }
    t
};

static ALAW_DECODE: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_to_linear(i as u8);
        i += 1;
    }
    t
};

#[inline]
pub fn ulaw_encode(s: i16) -> u8 {
    ULAW_ENCODE[((s >> 2) as i32 + 8192) as usize]
}

#[inline]
pub fn alaw_encode(s: i16) -> u8 {
    ALAW_ENCODE[((s >> 3) as i32 + 4096) as usize]
}

#[inline]
pub fn ulaw_decode(c: u8) -> i16 {
    ULAW_DECODE[c as usize]
}

#[inline]
pub fn alaw_decode(c: u8) -> i16 {
    ALAW_DECODE[c as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_reference_points() {
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        // Segment 2, step 0: (0x84 << 2) - 0x84.
        assert_eq!(ulaw_decode(0xDF), 396);
        assert_eq!(ulaw_decode(0x5F), -396);
    }

    #[test]
    fn alaw_reference_points() {
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
    }

    #[test]
    fn every_code_round_trips() {
        for c in 0..=255u8 {
            // 0x7F is µ-law "negative zero", which re-encodes as positive zero.
            if c != 0x7F {
                assert_eq!(ulaw_encode(ulaw_decode(c)), c, "ulaw {c:#04x}");
            }
            assert_eq!(alaw_encode(alaw_decode(c)), c, "alaw {c:#04x}");
        }
    }

    #[test]
    fn quantisation_error_is_bounded_and_monotonic() {
        let mut prev_u = i16::MIN;
        let mut prev_a = i16::MIN;
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let u = ulaw_decode(ulaw_encode(s));
            let a = alaw_decode(alaw_encode(s));
            assert!(u >= prev_u && a >= prev_a, "monotonic at {s}");
            prev_u = u;
            prev_a = a;
            // Relative error of a log-PCM quantiser stays within ~1/16 of the value
            // above the linear segments.
            let tol = (i32::from(s).abs() / 16).max(16) + 8;
            assert!(
                (i32::from(u) - i32::from(s)).abs() <= tol.max(140),
                "ulaw {s} -> {u}"
            );
            assert!(
                (i32::from(a) - i32::from(s)).abs() <= tol.max(140),
                "alaw {s} -> {a}"
            );
        }
    }
}
