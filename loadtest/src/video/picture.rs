//! Pictures: what a room system shows its camera, and what it sees.
//!
//! A [`Picture`] is I420 (4:2:0, planes packed without padding), the form
//! H.264 encoders take and decoders give. Colour conversion is BT.601 limited
//! range ("TV range", Y 16..=235), which is what H.264 streams without VUI
//! colour information mean by default and what Tandem's compositor writes;
//! the constants are the standard ones, not taken from the mixer.
//!
//! Perception works on fractions of the picture, so a test can say "the left
//! half" whatever size the node chose: [`Picture::average_colour`].

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use crate::error::{Error, Result};

/// 8-bit sRGB-ish red, green, blue.
pub type Rgb = (u8, u8, u8);

/// The largest side we encode or accept from a decoder.
pub const MAX_SIDE: u32 = 4_096;

/// RGB → Y'CbCr, BT.601 limited range.
pub fn rgb_to_yuv((r, g, b): Rgb) -> (u8, u8, u8) {
    let (r, g, b) = (f32::from(r), f32::from(g), f32::from(b));
    let y = 16.0 + 0.256_788 * r + 0.504_129 * g + 0.097_906 * b;
    let u = 128.0 - 0.148_223 * r - 0.290_993 * g + 0.439_216 * b;
    let v = 128.0 + 0.439_216 * r - 0.367_788 * g - 0.071_427 * b;
    let q = |x: f32| x.round().clamp(0.0, 255.0) as u8;
    (q(y), q(u), q(v))
}

/// Y'CbCr → RGB, BT.601 limited range, clamped to 0..=255.
pub fn yuv_to_rgb(y: u8, u: u8, v: u8) -> (f32, f32, f32) {
    let (c, d, e) = (
        f32::from(y) - 16.0,
        f32::from(u) - 128.0,
        f32::from(v) - 128.0,
    );
    let r = 1.164_383 * c + 1.596_027 * e;
    let g = 1.164_383 * c - 0.391_762 * d - 0.812_968 * e;
    let b = 1.164_383 * c + 2.017_232 * d;
    (
        r.clamp(0.0, 255.0),
        g.clamp(0.0, 255.0),
        b.clamp(0.0, 255.0),
    )
}

/// An I420 picture.
#[derive(Clone, PartialEq, Eq)]
pub struct Picture {
    width: u32,
    height: u32,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

impl fmt::Debug for Picture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Picture")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

fn check_size(width: u32, height: u32) -> Result<()> {
    if width < 2
        || height < 2
        || !width.is_multiple_of(2)
        || !height.is_multiple_of(2)
        || width > MAX_SIDE
        || height > MAX_SIDE
    {
        return Err(Error::Config(format!(
            "picture {width}x{height}: sides must be even, 2..={MAX_SIDE}"
        )));
    }
    Ok(())
}

impl Picture {
    /// A picture of one colour. Sides must be even (4:2:0).
    pub fn solid(width: u32, height: u32, colour: Rgb) -> Result<Picture> {
        check_size(width, height)?;
        let (y, u, v) = rgb_to_yuv(colour);
        let (w, h) = (width as usize, height as usize);
        Ok(Picture {
            width,
            height,
            y: vec![y; w * h],
            u: vec![u; w * h / 4],
            v: vec![v; w * h / 4],
        })
    }

    /// Copies planes with strides (as a decoder hands them out). Sizes that
    /// do not add up are the decoder's or the stream's fault: an error.
    pub fn from_strided(
        width: u32,
        height: u32,
        planes: [&[u8]; 3],
        strides: [usize; 3],
    ) -> Result<Picture> {
        check_size(width, height).map_err(|_| {
            Error::Video(format!("decoded picture of unusable size {width}x{height}"))
        })?;
        let copy = |plane: &[u8], stride: usize, w: usize, h: usize| -> Result<Vec<u8>> {
            if stride < w || plane.len() < stride * (h - 1) + w {
                return Err(Error::Video(format!(
                    "plane of {} bytes, stride {stride}, for {w}x{h}",
                    plane.len()
                )));
            }
            let mut out = Vec::with_capacity(w * h);
            for row in plane.chunks(stride).take(h) {
                out.extend_from_slice(&row[..w]);
            }
            Ok(out)
        };
        let (w, h) = (width as usize, height as usize);
        Ok(Picture {
            width,
            height,
            y: copy(planes[0], strides[0], w, h)?,
            u: copy(planes[1], strides[1], w / 2, h / 2)?,
            v: copy(planes[2], strides[2], w / 2, h / 2)?,
        })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// The planes, packed (strides `width`, `width / 2`, `width / 2`).
    pub fn planes(&self) -> (&[u8], &[u8], &[u8]) {
        (&self.y, &self.u, &self.v)
    }

    pub(crate) fn luma_mut(&mut self) -> &mut [u8] {
        &mut self.y
    }

    /// Paints a rectangle in pixels (clipped to the picture). Chroma is
    /// painted for every 2x2 block whose top-left pixel is inside.
    pub fn fill_rect(&mut self, x: u32, y: u32, w: u32, h: u32, colour: Rgb) {
        let (yy, uu, vv) = rgb_to_yuv(colour);
        let x1 = x.saturating_add(w).min(self.width) as usize;
        let y1 = y.saturating_add(h).min(self.height) as usize;
        let (x0, y0) = (x as usize, y as usize);
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        let stride = self.width as usize;
        for row in y0..y1 {
            self.y[row * stride + x0..row * stride + x1].fill(yy);
        }
        let cstride = stride / 2;
        let (cx0, cy0) = (x0.div_ceil(2), y0.div_ceil(2));
        let (cx1, cy1) = (x1.div_ceil(2), y1.div_ceil(2));
        for row in cy0..cy1 {
            if cx0 < cx1 {
                self.u[row * cstride + cx0..row * cstride + cx1].fill(uu);
                self.v[row * cstride + cx0..row * cstride + cx1].fill(vv);
            }
        }
    }

    /// The colour of one pixel.
    pub fn pixel(&self, x: u32, y: u32) -> Option<Rgb> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let (x, y, w) = (x as usize, y as usize, self.width as usize);
        let c = (y / 2) * (w / 2) + x / 2;
        let (r, g, b) = yuv_to_rgb(self.y[y * w + x], self.u[c], self.v[c]);
        Some((r.round() as u8, g.round() as u8, b.round() as u8))
    }

    /// The average colour a person sees in a rectangle given as fractions of
    /// the picture (`0.0..=1.0`; `(0.0, 0.0, 0.5, 1.0)` is the left half).
    /// `None` when the rectangle covers no whole pixel row or column.
    /// Each pixel is converted to RGB before averaging, as an eye would mix
    /// them.
    pub fn average_colour(&self, x0: f32, y0: f32, x1: f32, y1: f32) -> Option<Rgb> {
        let span = |a: f32, b: f32, side: u32| -> Option<(usize, usize)> {
            if !(a.is_finite() && b.is_finite()) {
                return None;
            }
            let side_f = side as f32;
            let lo = (a.clamp(0.0, 1.0) * side_f).round() as usize;
            let hi = (b.clamp(0.0, 1.0) * side_f).round() as usize;
            (lo < hi).then_some((lo, hi.min(side as usize)))
        };
        let (px0, px1) = span(x0, x1, self.width)?;
        let (py0, py1) = span(y0, y1, self.height)?;
        let w = self.width as usize;
        let (mut r, mut g, mut b) = (0f64, 0f64, 0f64);
        for row in py0..py1 {
            let crow = (row / 2) * (w / 2);
            for col in px0..px1 {
                let c = crow + col / 2;
                let (pr, pg, pb) = yuv_to_rgb(self.y[row * w + col], self.u[c], self.v[c]);
                r += f64::from(pr);
                g += f64::from(pg);
                b += f64::from(pb);
            }
        }
        let n = ((px1 - px0) * (py1 - py0)) as f64;
        let q = |s: f64| (s / n).round().clamp(0.0, 255.0) as u8;
        Some((q(r), q(g), q(b)))
    }

    /// Packed RGB, row by row.
    pub fn to_rgb(&self) -> Vec<u8> {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut out = Vec::with_capacity(w * h * 3);
        for row in 0..h {
            for col in 0..w {
                let c = (row / 2) * (w / 2) + col / 2;
                let (r, g, b) = yuv_to_rgb(self.y[row * w + col], self.u[c], self.v[c]);
                out.extend_from_slice(&[r.round() as u8, g.round() as u8, b.round() as u8]);
            }
        }
        out
    }

    /// A binary PPM (P6): any image viewer opens it; no image crate needed.
    pub fn to_ppm(&self) -> Vec<u8> {
        let mut out = format!("P6\n{} {}\n255\n", self.width, self.height).into_bytes();
        out.extend_from_slice(&self.to_rgb());
        out
    }

    /// Writes [`Picture::to_ppm`] to `path`.
    pub fn save_ppm(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut file = std::fs::File::create(path)?;
        file.write_all(&self.to_ppm())?;
        Ok(())
    }
}

/// How far apart two colours are: the largest channel difference.
pub fn colour_distance(a: Rgb, b: Rgb) -> u8 {
    a.0.abs_diff(b.0)
        .max(a.1.abs_diff(b.1))
        .max(a.2.abs_diff(b.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_survive_the_round_trip_through_yuv() {
        for c in [
            (0, 0, 0),
            (255, 255, 255),
            (255, 0, 0),
            (0, 255, 0),
            (0, 0, 255),
            (200, 120, 40),
            (16, 16, 16),
        ] {
            let p = Picture::solid(16, 8, c).expect("picture");
            let seen = p.average_colour(0.0, 0.0, 1.0, 1.0).expect("colour");
            assert!(colour_distance(seen, c) <= 3, "{c:?} → {seen:?}");
            assert_eq!(p.pixel(3, 3), Some(seen));
        }
    }

    #[test]
    fn fractions_select_regions() {
        let mut p = Picture::solid(64, 32, (0, 0, 255)).expect("picture");
        p.fill_rect(0, 0, 32, 32, (255, 0, 0));
        let left = p.average_colour(0.0, 0.0, 0.5, 1.0).expect("left");
        let right = p.average_colour(0.5, 0.0, 1.0, 1.0).expect("right");
        assert!(colour_distance(left, (255, 0, 0)) <= 3, "{left:?}");
        assert!(colour_distance(right, (0, 0, 255)) <= 3, "{right:?}");
        // Half and half.
        let all = p.average_colour(0.0, 0.0, 1.0, 1.0).expect("all");
        assert!(colour_distance(all, (128, 0, 128)) <= 3, "{all:?}");
        assert_eq!(p.average_colour(0.5, 0.0, 0.5, 1.0), None);
        assert_eq!(p.average_colour(0.9, 0.0, 0.1, 1.0), None);
        assert_eq!(p.average_colour(f32::NAN, 0.0, 1.0, 1.0), None);
        // Out-of-range fractions clamp.
        assert!(p.average_colour(-1.0, -1.0, 2.0, 2.0).is_some());
        // Clipped rectangles do not panic.
        p.fill_rect(60, 30, 100, 100, (0, 255, 0));
        p.fill_rect(70, 0, 1, 1, (0, 255, 0));
        assert_eq!(p.pixel(64, 0), None);
    }

    #[test]
    fn sizes_are_checked_and_strided_planes_copied() {
        assert!(Picture::solid(15, 8, (0, 0, 0)).is_err());
        assert!(Picture::solid(0, 8, (0, 0, 0)).is_err());
        assert!(Picture::solid(8, MAX_SIDE + 2, (0, 0, 0)).is_err());
        let y: Vec<u8> = (0..8 * 4).map(|i| i as u8).collect(); // stride 8 for width 4
        let u = [128u8; 4 * 2];
        let p = Picture::from_strided(4, 4, [&y, &u, &u], [8, 4, 4]).expect("picture");
        assert_eq!(
            p.planes().0,
            [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27]
        );
        assert_eq!(p.planes().1, [128; 4]);
        assert!(Picture::from_strided(4, 4, [&y[..20], &u, &u], [8, 4, 4]).is_err());
        assert!(Picture::from_strided(4, 4, [&y, &u, &u], [2, 4, 4]).is_err());
        let ppm = p.to_ppm();
        assert!(ppm.starts_with(b"P6\n4 4\n255\n"));
        assert_eq!(ppm.len(), 11 + 4 * 4 * 3);
    }
}
