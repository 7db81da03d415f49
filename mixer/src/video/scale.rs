//! Scaling I420 pictures into panes and simulcast layers.
//!
//! Crop to fill (centred, the target's aspect ratio, never letterboxed),
//! then a separable triangle filter widened by the downscale factor: the
//! same filter as `fast_image_resize`'s bilinear convolution (see
//! [`super::compose::scale_to`], kept as the reference), to within rounding.
//!
//! Why our own: scaling is the largest cost of a tick after the codecs, and
//! a horizontal filter pass cannot use SIMD in safe Rust (every output
//! reads its own window). So both passes here are vertical: whole-row
//! multiply-adds on `u16`, sixteen columns at a time, that the compiler
//! vectorizes. The horizontal pass runs on the transposed picture (8x8
//! byte blocks transposed in eight `u64`s), after the vertical pass has
//! already cut the row count. Weights are 8-bit fixed point summing to
//! 256, so a tap sum of `u8` pixels never overflows a `u16`. Coefficient
//! tables are kept per size. Measured against `fast_image_resize` by the
//! `video` bench's `--sweep` (CPU time, 720p source): 1.5x faster into a
//! 1+7 layout's large pane (960x540) and a 3x3 pane (426x240), but about
//! 0.9x into a quarter-size pane (320x180), where `fast_image_resize`'s
//! AVX2 horizontal-first pass wins; from a 3.5:1 width ratio on, `Scaler`
//! hands the picture to it.

use std::collections::HashMap;

use fast_image_resize::Resizer;

use super::frame::I420Frame;
use crate::error::Error;

/// Weights sum to `1 << SHIFT`.
const SHIFT: u32 = 8;
const ONE: u16 = 1 << SHIFT;
const ROUND: u16 = 1 << (SHIFT - 1);
/// Coefficient tables kept before the cache starts over.
const MAX_TABLES: usize = 64;

/// Where each output sample reads and with which weights: output `i` is
/// `sum(weights[i * taps + k] * src[starts[i] + k])`, every window inside
/// the source.
#[derive(Debug, Clone, PartialEq)]
struct Coefficients {
    taps: usize,
    starts: Vec<usize>,
    weights: Vec<u16>,
}

impl Coefficients {
    /// `dst_len` samples from the source span `[crop_start, crop_start +
    /// crop_len)` of a line of `src_len` samples.
    fn new(src_len: usize, crop_start: f64, crop_len: f64, dst_len: usize) -> Coefficients {
        let scale = crop_len / dst_len as f64;
        let filter_scale = scale.max(1.0);
        let radius = filter_scale;
        // Real weights per output, over the samples they touch.
        let mut spans: Vec<(usize, Vec<f64>)> = Vec::with_capacity(dst_len);
        for i in 0..dst_len {
            let centre = crop_start + (i as f64 + 0.5) * scale;
            let first = (centre - radius).floor().max(0.0) as usize;
            let end = ((centre + radius).ceil().max(0.0) as usize).min(src_len);
            let mut ws: Vec<f64> = (first..end)
                .map(|x| (1.0 - ((x as f64 + 0.5 - centre) / filter_scale).abs()).max(0.0))
                .collect();
            // Trim zero weights at both ends: they would only cost taps.
            let lead = ws.iter().take_while(|&&w| w <= 0.0).count();
            let trail = ws.iter().rev().take_while(|&&w| w <= 0.0).count();
            if lead == ws.len() {
                // Nothing in reach (a crop past the edge): nearest sample.
                let nearest = (centre.floor().max(0.0) as usize).min(src_len.saturating_sub(1));
                spans.push((nearest, vec![1.0]));
                continue;
            }
            ws.truncate(ws.len() - trail);
            ws.drain(..lead);
            spans.push((first + lead, ws));
        }
        let taps = spans
            .iter()
            .map(|(_, ws)| ws.len())
            .max()
            .unwrap_or(1)
            .clamp(1, src_len.max(1));
        let mut starts = Vec::with_capacity(dst_len);
        let mut weights = vec![0u16; dst_len * taps];
        for (i, (first, ws)) in spans.into_iter().enumerate() {
            // A fixed-width window that stays inside the line.
            let start = first.min(src_len.saturating_sub(taps));
            let offset = first - start;
            let total: f64 = ws.iter().sum();
            let out = &mut weights[i * taps..(i + 1) * taps];
            let mut sum = 0u16;
            for (k, w) in ws.iter().enumerate() {
                if let Some(slot) = out.get_mut(offset + k) {
                    let q = (w / total * f64::from(ONE)).round() as u16;
                    *slot = q;
                    sum += q;
                }
            }
            // Rounding leftovers go to the heaviest tap: weights sum to ONE.
            if let Some((_, heaviest)) = out
                .iter_mut()
                .enumerate()
                .max_by_key(|(k, w)| (**w, std::cmp::Reverse(*k)))
            {
                *heaviest = (*heaviest + ONE).saturating_sub(sum);
            }
            starts.push(start);
        }
        Coefficients {
            taps,
            starts,
            weights,
        }
    }

    /// The source range the windows read.
    fn reach(&self) -> (usize, usize) {
        let lo = self.starts.iter().copied().min().unwrap_or(0);
        let hi = self.starts.iter().copied().max().unwrap_or(0) + self.taps;
        (lo, hi)
    }
}

/// One plane to scale: packed samples, `width` per row.
struct Plane<'a> {
    data: &'a [u8],
    width: usize,
    height: usize,
}

/// A line mapping: source length, crop start and length (as bits), output
/// length.
type TableKey = (usize, u64, u64, usize);

/// Scales I420 pictures; keeps its coefficient tables and scratch rows.
#[derive(Debug, Default)]
pub struct Scaler {
    tables: HashMap<TableKey, Coefficients>,
    /// Vertically filtered rows, the same transposed, and the filtered
    /// columns.
    scratch: [Vec<u8>; 3],
    acc: Vec<u16>,
    /// For strong downscales, see [`STRONG_DOWNSCALE`].
    resizer: Resizer,
}

/// From this width ratio on, `fast_image_resize` (AVX2, horizontal pass
/// first) beats the two vertical passes here, whose first pass reads every
/// source row with twice as many taps as the ratio: quarter-size panes
/// (1280 -> 320) took it about 0.9x as long. Below it (large and medium
/// panes, 1280 -> 960 or 426) the passes here take about 0.65x as long.
const STRONG_DOWNSCALE: f64 = 3.5;

impl Scaler {
    pub fn new() -> Self {
        Self::default()
    }

    /// `src` scaled to `w x h` (both even), cropped to the target aspect.
    pub fn scale(&mut self, src: &I420Frame, w: u32, h: u32) -> Result<I420Frame, Error> {
        let mut dst = I420Frame::black(w, h)?;
        self.scale_into(src, &mut dst)?;
        Ok(dst)
    }

    /// Like [`Self::scale`], into `dst` (its size is the target), reusing
    /// its planes.
    pub fn scale_into(&mut self, src: &I420Frame, dst: &mut I420Frame) -> Result<(), Error> {
        let (sw, sh) = (f64::from(src.width()), f64::from(src.height()));
        let (dw, dh) = (dst.width(), dst.height());
        if dw % 2 != 0 || dh % 2 != 0 {
            return Err(Error::InvalidFrame(format!(
                "cannot scale into {dw}x{dh}: sides must be even"
            )));
        }
        if (src.width(), src.height()) == (dw, dh) {
            dst.clone_from(src);
            return Ok(());
        }
        // The crop box: the largest centred box of the target's aspect.
        let target = f64::from(dw) / f64::from(dh);
        let (cw, ch) = if sw / sh > target {
            (sh * target, sh)
        } else {
            (sw, sw / target)
        };
        let (cx, cy) = ((sw - cw) / 2.0, (sh - ch) / 2.0);
        if cw / f64::from(dw) >= STRONG_DOWNSCALE {
            let scaled = super::compose::scale_to(&mut self.resizer, src, dw, dh)?;
            *dst = scaled;
            return Ok(());
        }
        let (scw, sch) = src.chroma_size();
        let (dcw, dch) = dst.chroma_size();
        let (dy, du, dv) = dst.planes_mut();
        let luma = Plane {
            data: src.y(),
            width: src.width() as usize,
            height: src.height() as usize,
        };
        self.plane(&luma, (cx, cy, cw, ch), dy, dw as usize, dh as usize);
        for (data, out) in [(src.u(), du), (src.v(), dv)] {
            let chroma = Plane {
                data,
                width: scw as usize,
                height: sch as usize,
            };
            let crop = (cx / 2.0, cy / 2.0, cw / 2.0, ch / 2.0);
            self.plane(&chroma, crop, out, dcw as usize, dch as usize);
        }
        Ok(())
    }

    /// Makes sure the table for this line mapping exists; returns its key.
    /// (The cache is emptied, when full, before a plane's two tables are
    /// made, never between them.)
    fn table(&mut self, src_len: usize, start: f64, len: f64, dst_len: usize) -> TableKey {
        let key = (src_len, start.to_bits(), len.to_bits(), dst_len);
        self.tables
            .entry(key)
            .or_insert_with(|| Coefficients::new(src_len, start, len, dst_len));
        key
    }

    /// Scales one plane into `out` (`dw x dh`, packed).
    fn plane(
        &mut self,
        src: &Plane<'_>,
        (cx, cy, cw, ch): (f64, f64, f64, f64),
        out: &mut [u8],
        dw: usize,
        dh: usize,
    ) {
        if self.tables.len() + 2 > MAX_TABLES {
            self.tables.clear();
        }
        let h_key = self.table(src.width, cx, cw, dw);
        let v_key = self.table(src.height, cy, ch, dh);
        let (Some(horizontal), Some(vertical)) = (self.tables.get(&h_key), self.tables.get(&v_key))
        else {
            return;
        };
        let [rows, rows_t, cols] = &mut self.scratch;
        let acc = &mut self.acc;
        // Vertical, on the columns the horizontal filter reads...
        let (c0, c1) = horizontal.reach();
        let width = c1 - c0;
        rows.resize(width * dh, 0);
        vertical_pass(src.data, src.width, c0, width, vertical, 0, rows, acc);
        // ...then horizontal as a vertical pass over the transposed rows.
        rows_t.resize(width * dh, 0);
        transpose(rows, width, dh, rows_t);
        cols.resize(dw * dh, 0);
        vertical_pass(rows_t, dh, 0, dh, horizontal, c0, cols, acc);
        transpose(cols, dh, dw, out);
    }
}

/// `out` row `y` = weighted sum of source rows (`starts[y] - row0 ..`),
/// over columns `col0 .. col0 + width`. Sixteen columns at a time with
/// the taps innermost, so the sums stay in vector registers.
#[allow(clippy::too_many_arguments)]
fn vertical_pass(
    src: &[u8],
    stride: usize,
    col0: usize,
    width: usize,
    c: &Coefficients,
    row0: usize,
    out: &mut [u8],
    acc: &mut Vec<u16>,
) {
    const LANES: usize = 16;
    let taps = c.taps;
    let body = width - width % LANES;
    acc.resize(width - body, 0);
    for (y, out_row) in out.chunks_exact_mut(width).enumerate() {
        let start = c.starts[y] - row0;
        let ws = &c.weights[y * taps..(y + 1) * taps];
        let row_at = |k: usize| (start + k) * stride + col0;
        for (x, out16) in out_row[..body].chunks_exact_mut(LANES).enumerate() {
            let x = x * LANES;
            let mut sum = [ROUND; LANES];
            for (k, &w) in ws.iter().enumerate() {
                let at = row_at(k) + x;
                let Ok(px) = <&[u8; LANES]>::try_from(&src[at..at + LANES]) else {
                    continue;
                };
                for (s, &p) in sum.iter_mut().zip(px) {
                    *s += w * u16::from(p);
                }
            }
            for (o, s) in out16.iter_mut().zip(sum) {
                *o = (s >> SHIFT) as u8;
            }
        }
        // The last few columns.
        acc.fill(ROUND);
        for (k, &w) in ws.iter().enumerate() {
            let at = row_at(k) + body;
            for (a, &p) in acc.iter_mut().zip(&src[at..at + (width - body)]) {
                *a += w * u16::from(p);
            }
        }
        for (o, &a) in out_row[body..].iter_mut().zip(acc.iter()) {
            *o = (a >> SHIFT) as u8;
        }
    }
}

/// `dst` (`w` rows of `h`) = `src` (`h` rows of `w`) transposed, in 8x8
/// blocks held in eight `u64`s.
fn transpose(src: &[u8], w: usize, h: usize, dst: &mut [u8]) {
    let (w8, h8) = (w - w % 8, h - h % 8);
    for (by, band) in src[..h8 * w].chunks_exact(8 * w).enumerate() {
        let by = by * 8;
        let rows: [&[u8]; 8] = std::array::from_fn(|r| &band[r * w..r * w + w8]);
        for bx in (0..w8).step_by(8) {
            let mut block = [0u64; 8];
            for (v, row) in block.iter_mut().zip(&rows) {
                *v = u64::from_le_bytes(row[bx..bx + 8].try_into().unwrap_or([0; 8]));
            }
            transpose8(&mut block);
            for (c, v) in block.iter().enumerate() {
                let at = (bx + c) * h + by;
                dst[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    for y in 0..h {
        for x in w8..w {
            dst[x * h + y] = src[y * w + x];
        }
    }
    for y in h8..h {
        for x in 0..w8 {
            dst[x * h + y] = src[y * w + x];
        }
    }
}

/// Transposes an 8x8 byte matrix, row `r` in `m[r]` (byte `c` = column `c`),
/// by swapping ever larger sub-blocks across the diagonal.
fn transpose8(m: &mut [u64; 8]) {
    for (shift, mask, pairs) in [
        (
            8,
            0x00FF_00FF_00FF_00FFu64,
            [(0, 1), (2, 3), (4, 5), (6, 7)],
        ),
        (16, 0x0000_FFFF_0000_FFFF, [(0, 2), (1, 3), (4, 6), (5, 7)]),
        (32, 0x0000_0000_FFFF_FFFF, [(0, 4), (1, 5), (2, 6), (3, 7)]),
    ] {
        for (a, b) in pairs {
            let t = ((m[a] >> shift) ^ m[b]) & mask;
            m[b] ^= t;
            m[a] ^= t << shift;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::compose::scale_to;
    use crate::video::frame::{Rect, Rgb};
    use fast_image_resize::Resizer;

    /// A picture with detail everywhere: gradients, stripes, a block.
    fn textured(w: u32, h: u32) -> I420Frame {
        let mut f = I420Frame::solid(w, h, Rgb(90, 140, 200)).unwrap();
        f.fill_rect(Rect::new(w / 3, h / 4, w / 4, h / 3), Rgb::RED);
        let (y, u, _) = f.planes_mut();
        for row in 0..h {
            for col in 0..w {
                let i = (row * w + col) as usize;
                let stripe = if (col / 7 + row / 5) % 2 == 0 { 20 } else { 0 };
                y[i] = y[i].saturating_add(((col * 60 / w) + (row * 30 / h)) as u8 + stripe);
            }
        }
        // Chroma: a smooth ramp (its crop differs from the reference's by
        // a fraction of a sample for odd sources, see `scale_into`).
        let cw = w.div_ceil(2) as usize;
        for (i, p) in u.iter_mut().enumerate() {
            *p = p
                .saturating_sub(20)
                .saturating_add((i % cw * 40 / cw) as u8);
        }
        f
    }

    fn diff(a: &[u8], b: &[u8]) -> (u8, f64) {
        let max = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
        let mean = a
            .iter()
            .zip(b)
            .map(|(x, y)| f64::from(x.abs_diff(*y)))
            .sum::<f64>()
            / a.len() as f64;
        (max, mean)
    }

    #[test]
    fn video_scaler_matches_the_reference_filter() {
        let mut scaler = Scaler::new();
        let mut reference = Resizer::new();
        for (sw, sh) in [(1280, 720), (640, 480), (321, 241), (176, 144)] {
            let src = textured(sw, sh);
            for (w, h) in [(320, 180), (960, 540), (426, 240), (640, 360), (1280, 720)] {
                let ours = scaler.scale(&src, w, h).unwrap();
                let theirs = scale_to(&mut reference, &src, w, h).unwrap();
                assert_eq!((ours.width(), ours.height()), (w, h));
                for (plane, a, b) in [
                    ("y", ours.y(), theirs.y()),
                    ("u", ours.u(), theirs.u()),
                    ("v", ours.v(), theirs.v()),
                ] {
                    let (max, mean) = diff(a, b);
                    // For odd sources the reference crops chroma on its own
                    // (off by a fraction of a sample): hard edges differ.
                    let exact = plane == "y" || (sw % 2 == 0 && sh % 2 == 0);
                    let max_allowed = if exact { 6 } else { 80 };
                    assert!(
                        max <= max_allowed && mean < 0.6,
                        "{sw}x{sh} -> {w}x{h} {plane}: max {max}, mean {mean:.2}"
                    );
                }
            }
        }
    }

    #[test]
    fn video_scaler_crops_to_fill_and_keeps_colour() {
        // Left half red, right half blue, 4:3 into 16:9: still half and
        // half (cropped top and bottom, not squeezed sideways).
        let mut src = I420Frame::solid(320, 240, Rgb::BLUE).unwrap();
        src.fill_rect(Rect::new(0, 0, 160, 240), Rgb::RED);
        let mut scaler = Scaler::new();
        let out = scaler.scale(&src, 160, 90).unwrap();
        let red = out.average_rgb_in(Rect::new(10, 10, 60, 70));
        let blue = out.average_rgb_in(Rect::new(90, 10, 60, 70));
        assert!(red.distance(Rgb::RED) <= 4, "{red:?}");
        assert!(blue.distance(Rgb::BLUE) <= 4, "{blue:?}");
        // A tall source into a wide pane: the middle band is kept.
        let mut tall = I420Frame::solid(180, 320, Rgb::GREEN).unwrap();
        tall.fill_rect(Rect::new(0, 0, 180, 100), Rgb::RED);
        let out = scaler.scale(&tall, 320, 180).unwrap();
        assert!(
            out.average_rgb_in(Rect::new(0, 0, 320, 180))
                .distance(Rgb::GREEN)
                <= 4
        );
    }

    #[test]
    fn video_scaler_handles_extremes() {
        let mut scaler = Scaler::new();
        let src = textured(1280, 720);
        // Same size: an exact copy.
        assert_eq!(scaler.scale(&src, 1280, 720).unwrap(), src);
        // Down to almost nothing and up from almost nothing.
        let tiny = scaler.scale(&src, 2, 2).unwrap();
        assert_eq!((tiny.width(), tiny.height()), (2, 2));
        let grey = I420Frame::solid(2, 2, Rgb(128, 128, 128)).unwrap();
        let big = scaler.scale(&grey, 1280, 720).unwrap();
        assert!(
            big.average_rgb_in(Rect::new(0, 0, 1280, 720))
                .distance(Rgb(128, 128, 128))
                <= 2
        );
        // Odd target sides are refused, odd sources are fine.
        let mut odd = I420Frame::black(3, 3).unwrap();
        assert!(scaler.scale_into(&src, &mut odd).is_err());
        let out = scaler.scale(&textured(7, 5), 64, 36).unwrap();
        assert_eq!((out.width(), out.height()), (64, 36));
        // Into an existing frame of the target size.
        let mut dst = I420Frame::black(320, 180).unwrap();
        scaler.scale_into(&src, &mut dst).unwrap();
        assert_eq!(dst, scaler.scale(&src, 320, 180).unwrap());
    }

    #[test]
    fn video_scaler_transposes_any_shape() {
        for (w, h) in [
            (8usize, 8usize),
            (16, 8),
            (13, 9),
            (3, 21),
            (1, 1),
            (40, 17),
        ] {
            let src: Vec<u8> = (0..w * h).map(|i| (i * 7 % 251) as u8).collect();
            let mut dst = vec![0u8; w * h];
            transpose(&src, w, h, &mut dst);
            for y in 0..h {
                for x in 0..w {
                    assert_eq!(dst[x * h + y], src[y * w + x], "{w}x{h} at {x},{y}");
                }
            }
        }
    }

    #[test]
    fn video_scaler_weights_sum_to_one() {
        for (src_len, start, len, dst_len) in [
            (1280usize, 0.0, 1280.0, 320usize),
            (1280, 0.0, 1280.0, 960),
            (720, 0.0, 720.0, 1080),
            (480, 60.0, 360.0, 180),
            (3, 0.0, 3.0, 100),
            (100, 0.0, 100.0, 1),
        ] {
            let c = Coefficients::new(src_len, start, len, dst_len);
            assert_eq!(c.starts.len(), dst_len);
            for (i, ws) in c.weights.chunks_exact(c.taps).enumerate() {
                assert_eq!(ws.iter().sum::<u16>(), ONE, "{src_len}->{dst_len} #{i}");
                assert!(c.starts[i] + c.taps <= src_len);
            }
        }
    }
}
