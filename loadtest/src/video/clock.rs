//! A camera that shows the time: the frame-counter pattern of the
//! glass-to-glass benchmark (`tandem-cascade-bench`).
//!
//! The picture is mid-grey with a block in the middle: a white ring around
//! a grid of [`COLUMNS`] x [`ROWS`] black or white cells. The first 32 cells
//! (row by row, most significant bit first) carry the capture time in
//! milliseconds since the Unix epoch, modulo 2^32; the last 8 a CRC-8 of
//! it, so a picture caught mid-change, smeared by the encoder or not the
//! pattern at all reads as nothing rather than as a wrong time.
//!
//! Cells are large (the block is 72% x 66% of the picture, a cell 1/9 of
//! its width and 1/6 of its height: 25 x 20 pixels at 320x180) so that the
//! pattern survives H.264 at 180p, scaling into a pane and cropping to the
//! pane's aspect ratio. The reader does not assume where the block is: it
//! finds the ring by scanning in from the edges of the picture (or of a
//! rectangle of it, such as a pane) and reads the cells relative to it.
//! The block stays clear of the bottom sixth, where the node draws a
//! pane's name label.
//!
//! Sans-IO like the rest of the crate: the time to paint and the time to
//! compare with come from the caller ([`WallClock`] turns an `Instant` into
//! Unix milliseconds from one reading of both clocks).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::picture::{Picture, Rgb};

/// Cells across and down; 32 time bits + 8 check bits.
pub const COLUMNS: u32 = 8;
pub const ROWS: u32 = 5;
/// Where the block (ring included) sits, in fractions of the picture.
const BLOCK: (f32, f32, f32, f32) = (0.14, 0.17, 0.86, 0.83);
/// The ring is half a cell thick: the block is 9 x 6 units.
const UNITS_W: f32 = COLUMNS as f32 + 1.0;
const UNITS_H: f32 = ROWS as f32 + 1.0;
const WHITE: Rgb = (255, 255, 255);
const BLACK: Rgb = (0, 0, 0);
const GREY: Rgb = (128, 128, 128);
/// Luma above this is white (the ring, a 1 cell), below [`BLACK_BELOW`]
/// black; between the two a cell is unreadable. Limited range: black is
/// 16, grey ~126, white 235.
const WHITE_ABOVE: f32 = 170.0;
const BLACK_BELOW: f32 = 80.0;
/// A read time further in the past than this is not a delay but a stale or
/// foreign picture.
const MAX_DELAY_MS: u32 = 60_000;

/// Unix time in milliseconds as a function of `Instant`, from one reading
/// of both clocks: the painter and the reader share one so that a delay is
/// measured on one clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    origin: Instant,
    origin_unix_ms: u64,
}

impl WallClock {
    /// Reads the system clock once (drivers and binaries only).
    pub fn now() -> WallClock {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        WallClock {
            origin: Instant::now(),
            origin_unix_ms: unix.as_millis() as u64,
        }
    }

    /// `origin` is `origin_unix_ms` (tests).
    pub fn at(origin: Instant, origin_unix_ms: u64) -> WallClock {
        WallClock {
            origin,
            origin_unix_ms,
        }
    }

    /// Unix milliseconds at `t` (saturating before the origin).
    pub fn unix_ms(&self, t: Instant) -> u64 {
        match t.checked_duration_since(self.origin) {
            Some(d) => self.origin_unix_ms + d.as_millis() as u64,
            None => self
                .origin_unix_ms
                .saturating_sub(self.origin.duration_since(t).as_millis() as u64),
        }
    }
}

/// CRC-8, polynomial 0x07 (CRC-8/SMBUS), over the time's four bytes.
fn crc8(value: u32) -> u8 {
    let mut crc = 0u8;
    for byte in value.to_be_bytes() {
        crc ^= byte;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The 40 cells: time bits, then check bits, most significant first.
fn cells(value: u32) -> impl Iterator<Item = bool> {
    let check = crc8(value);
    (0..32)
        .map(move |i| value >> (31 - i) & 1 == 1)
        .chain((0..8).map(move |i| check >> (7 - i) & 1 == 1))
}

/// Paints the pattern for `unix_ms` over the whole picture.
pub fn paint_clock(picture: &mut Picture, unix_ms: u64) {
    let (w, h) = (picture.width(), picture.height());
    picture.fill_rect(0, 0, w, h, GREY);
    let px = |f: f32, side: u32| ((f * side as f32).round() as u32) & !1;
    let (x0, y0) = (px(BLOCK.0, w), px(BLOCK.1, h));
    let (x1, y1) = (px(BLOCK.2, w), px(BLOCK.3, h));
    if x1 <= x0 || y1 <= y0 {
        return;
    }
    let (uw, uh) = ((x1 - x0) as f32 / UNITS_W, (y1 - y0) as f32 / UNITS_H);
    picture.fill_rect(x0, y0, x1 - x0, y1 - y0, WHITE);
    let at = |origin: u32, unit: f32, units: f32| origin + (unit * units).round() as u32;
    let (ix0, iy0) = (at(x0, uw, 0.5), at(y0, uh, 0.5));
    let (ix1, iy1) = (at(x0, uw, UNITS_W - 0.5), at(y0, uh, UNITS_H - 0.5));
    picture.fill_rect(ix0, iy0, ix1 - ix0, iy1 - iy0, BLACK);
    for (i, bit) in cells(unix_ms as u32).enumerate() {
        if !bit {
            continue;
        }
        let (col, row) = (i as u32 % COLUMNS, i as u32 / COLUMNS);
        let cx0 = at(x0, uw, 0.5 + col as f32);
        let cx1 = at(x0, uw, 1.5 + col as f32);
        let cy0 = at(y0, uh, 0.5 + row as f32);
        let cy1 = at(y0, uh, 1.5 + row as f32);
        picture.fill_rect(cx0, cy0, cx1 - cx0, cy1 - cy0, WHITE);
    }
}

/// Mean luma of a rectangle in pixels (clipped; `None` if empty).
fn mean_luma(picture: &Picture, x0: f32, y0: f32, x1: f32, y1: f32) -> Option<f32> {
    let (w, h) = (picture.width() as f32, picture.height() as f32);
    let xa = x0.max(0.0).round() as usize;
    let xb = x1.min(w).round() as usize;
    let ya = y0.max(0.0).round() as usize;
    let yb = y1.min(h).round() as usize;
    if xa >= xb || ya >= yb {
        return None;
    }
    let (luma, _, _) = picture.planes();
    let stride = picture.width() as usize;
    let mut sum = 0u64;
    for row in ya..yb {
        sum += luma[row * stride + xa..row * stride + xb]
            .iter()
            .map(|&y| u64::from(y))
            .sum::<u64>();
    }
    Some(sum as f32 / ((xb - xa) * (yb - ya)) as f32)
}

/// From `from` towards `to`, the last position of the run of `white`
/// that starts at `from` (a gap of one position is bridged: a pixel the
/// encoder smeared).
fn run_end(from: u32, to: u32, white: impl Fn(u32) -> bool) -> u32 {
    let mut last = from;
    let mut p = from;
    while p != to {
        p = if to > from { p + 1 } else { p - 1 };
        if white(p) {
            last = p;
        } else if p.abs_diff(last) > 2 {
            break;
        }
    }
    last
}

/// Reads the time a picture shows, looking for the block inside the
/// rectangle `area` (fractions of the picture, `(0.0, 0.0, 1.0, 1.0)`: all
/// of it). `None` if there is no block, a cell is unreadable or the check
/// bits do not match.
pub fn read_clock(picture: &Picture, area: (f32, f32, f32, f32)) -> Option<u32> {
    let (w, h) = (picture.width() as f32, picture.height() as f32);
    let ax0 = (area.0.clamp(0.0, 1.0) * w) as u32;
    let ay0 = (area.1.clamp(0.0, 1.0) * h) as u32;
    let ax1 = (area.2.clamp(0.0, 1.0) * w) as u32;
    let ay1 = (area.3.clamp(0.0, 1.0) * h) as u32;
    if ax1 < ax0 + 16 || ay1 < ay0 + 12 {
        return None;
    }
    // In from the left along the middle row of the area: the ring's left
    // side. Then along the ring itself, which is white all round: up and
    // down its left side (its top and bottom), right along its top side.
    // Following the ring, rather than scanning in from every edge, keeps a
    // pane's name label or a neighbouring pane from being taken for it.
    let white = |x: u32, y: u32| {
        mean_luma(picture, x as f32, y as f32, x as f32 + 2.0, y as f32 + 2.0)
            .is_some_and(|l| l > WHITE_ABOVE)
    };
    let mid_y = (ay0 + ay1) / 2;
    let left = (ax0..ax1 - 2).find(|&x| white(x, mid_y))?;
    let ring_x = left + 2;
    let top = run_end(mid_y, ay0, |y| white(ring_x, y));
    let bottom = run_end(mid_y, ay1 - 2, |y| white(ring_x, y)) + 2;
    let right = run_end(left, ax1 - 2, |x| white(x, top + 2)) + 2;
    if right <= left + 18 || bottom <= top + 12 {
        return None;
    }
    let (uw, uh) = (
        (right - left) as f32 / UNITS_W,
        (bottom - top) as f32 / UNITS_H,
    );
    let (left, top) = (left as f32, top as f32);
    // The ring's bottom side must be white too, or this is not our block.
    let ring_bottom = mean_luma(
        picture,
        left + uw,
        top + uh * (UNITS_H - 0.4),
        left + uw * (UNITS_W - 1.0),
        top + uh * (UNITS_H - 0.1),
    )?;
    if ring_bottom <= WHITE_ABOVE {
        return None;
    }
    // Each cell: the mean of its middle half.
    let mut value = 0u64;
    for i in 0..COLUMNS * ROWS {
        let (col, row) = ((i % COLUMNS) as f32, (i / COLUMNS) as f32);
        let cx = left + uw * (1.0 + col);
        let cy = top + uh * (1.0 + row);
        let y = mean_luma(
            picture,
            cx - uw * 0.25,
            cy - uh * 0.25,
            cx + uw * 0.25,
            cy + uh * 0.25,
        )?;
        let bit = if y > WHITE_ABOVE {
            1
        } else if y < BLACK_BELOW {
            0
        } else {
            return None;
        };
        value = value << 1 | bit;
    }
    let time = (value >> 8) as u32;
    (crc8(time) == (value & 0xFF) as u8).then_some(time)
}

/// How long ago (ms) a picture showing `read` was captured, at `now_unix_ms`.
/// `None` when it is more than a minute old or in the future: not a delay.
pub fn delay_ms(read: u32, now_unix_ms: u64) -> Option<u32> {
    let delay = (now_unix_ms as u32).wrapping_sub(read);
    (delay <= MAX_DELAY_MS).then_some(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::codec::{H264Decoder, H264Encoder};

    /// Box-filter downscale by an integer factor: what a pane does.
    fn shrink(p: &Picture, factor: u32) -> Picture {
        let (w, h) = (p.width() / factor, p.height() / factor);
        let (luma, _, _) = p.planes();
        let mut out = Picture::solid(w, h, GREY).expect("picture");
        let stride = p.width() as usize;
        let f = factor as usize;
        for (i, y) in out.luma_mut().iter_mut().enumerate() {
            let (x0, y0) = ((i % w as usize) * f, (i / w as usize) * f);
            let mut sum = 0u32;
            for dy in 0..f {
                for dx in 0..f {
                    sum += u32::from(luma[(y0 + dy) * stride + x0 + dx]);
                }
            }
            *y = (sum / (f * f) as u32) as u8;
        }
        out
    }

    /// `p` placed at (x, y) on a black canvas of `w` x `h`: a pane.
    fn in_pane(p: &Picture, w: u32, h: u32, x: u32, y: u32) -> Picture {
        let mut out = Picture::solid(w, h, BLACK).expect("canvas");
        let (luma, _, _) = p.planes();
        let (pw, stride) = (p.width() as usize, w as usize);
        let canvas = out.luma_mut();
        for row in 0..p.height() as usize {
            let dst = (y as usize + row) * stride + x as usize;
            canvas[dst..dst + pw].copy_from_slice(&luma[row * pw..(row + 1) * pw]);
        }
        out
    }

    const ALL: (f32, f32, f32, f32) = (0.0, 0.0, 1.0, 1.0);

    #[test]
    fn paints_and_reads_back_at_every_size() {
        for (w, h) in [(1280, 720), (640, 360), (320, 180), (176, 144)] {
            for t in [0u64, 1, 1_764_000_123_456, u64::from(u32::MAX) + 77] {
                let mut p = Picture::solid(w, h, BLACK).expect("picture");
                paint_clock(&mut p, t);
                assert_eq!(read_clock(&p, ALL), Some(t as u32), "{w}x{h} at {t}");
            }
        }
    }

    #[test]
    fn reads_through_scaling_and_in_a_pane() {
        let mut p = Picture::solid(1280, 720, BLACK).expect("picture");
        paint_clock(&mut p, 123_456_789);
        assert_eq!(read_clock(&shrink(&p, 4), ALL), Some(123_456_789));
        // The 320x180 picture as the top-right pane of a 2x2 at 640x360.
        let canvas = in_pane(&shrink(&p, 4), 640, 360, 320, 0);
        assert_eq!(read_clock(&canvas, (0.5, 0.0, 1.0, 0.5)), Some(123_456_789));
    }

    #[test]
    fn a_name_label_under_it_does_not_mislead() {
        // The node's label: white text on a dark strip, bottom left, in
        // line with the ring's left side.
        let mut p = Picture::solid(1280, 720, BLACK).expect("picture");
        paint_clock(&mut p, 987_654_321);
        p.fill_rect(0, 676, 300, 44, (20, 20, 20));
        for x in (8..290).step_by(12) {
            p.fill_rect(x, 684, 6, 28, WHITE);
        }
        assert_eq!(read_clock(&p, ALL), Some(987_654_321));
        assert_eq!(read_clock(&shrink(&p, 4), ALL), Some(987_654_321));
    }

    #[test]
    fn anything_else_reads_as_nothing() {
        let grey = Picture::solid(320, 180, GREY).expect("picture");
        assert_eq!(read_clock(&grey, ALL), None);
        let white = Picture::solid(320, 180, WHITE).expect("picture");
        assert_eq!(read_clock(&white, ALL), None);
        // One cell flipped: the check bits catch it.
        let mut p = Picture::solid(320, 180, BLACK).expect("picture");
        paint_clock(&mut p, 0);
        assert_eq!(read_clock(&p, ALL), Some(0));
        p.fill_rect(58, 41, 24, 18, WHITE);
        assert_eq!(read_clock(&p, ALL), None);
    }

    #[test]
    fn survives_h264_at_180p() {
        let mut enc = H264Encoder::new(320, 180, 15.0, 150_000).expect("encoder");
        let mut dec = H264Decoder::new().expect("decoder");
        let mut p = Picture::solid(320, 180, BLACK).expect("picture");
        let mut au = Vec::new();
        let mut read = 0;
        for i in 0..30u64 {
            let t = 1_700_000_000_000 + i * 67;
            paint_clock(&mut p, t);
            enc.encode(&p, false, &mut au).expect("encode");
            if au.is_empty() {
                continue;
            }
            if let Some(seen) = dec.decode(&au).expect("decode") {
                let got = read_clock(&seen, ALL);
                assert!(got.is_none() || got == Some(t as u32), "{i}: {got:?}");
                read += u32::from(got.is_some());
            }
        }
        assert!(read >= 25, "only {read} of 30 pictures read");
    }

    #[test]
    fn delays_and_wall_clock() {
        assert_eq!(delay_ms(1000, 1250), Some(250));
        assert_eq!(delay_ms(u32::MAX - 9, 1u64 << 32 | 20), Some(30));
        assert_eq!(delay_ms(2000, 1000), None);
        let origin = Instant::now();
        let clock = WallClock::at(origin, 5_000);
        assert_eq!(clock.unix_ms(origin + Duration::from_millis(1500)), 6_500);
        assert!(WallClock::now().unix_ms(Instant::now()) > 1_600_000_000_000);
    }
}
