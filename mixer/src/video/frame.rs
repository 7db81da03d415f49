//! Raw pictures: I420 (planar 4:2:0 YUV) frames, rectangles and colours.
//!
//! I420 is what OpenH264 decodes to and encodes from, so the whole video path
//! stays in it: no RGB round trip per pixel. Planes are tightly packed (stride
//! = plane width); chroma planes are `ceil(w/2) x ceil(h/2)`.
//!
//! Colour conversion is BT.601 limited range ("TV range", Y 16..235), which is
//! what an H.264 stream without VUI colour information is taken to be by
//! browsers and SIP endpoints alike.

use crate::error::Error;

/// Largest side OpenH264 encodes or decodes (level 5.2).
pub const MAX_DIMENSION: u32 = 3840;

/// An 8-bit RGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    pub const BLACK: Rgb = Rgb(0, 0, 0);
    pub const WHITE: Rgb = Rgb(255, 255, 255);
    pub const RED: Rgb = Rgb(255, 0, 0);
    pub const GREEN: Rgb = Rgb(0, 255, 0);
    pub const BLUE: Rgb = Rgb(0, 0, 255);
    pub const YELLOW: Rgb = Rgb(255, 255, 0);

    /// Largest per-channel difference: a tolerance test reads as "within N".
    pub fn distance(self, other: Rgb) -> u8 {
        let d = |a: u8, b: u8| a.abs_diff(b);
        d(self.0, other.0)
            .max(d(self.1, other.1))
            .max(d(self.2, other.2))
    }
}

/// A YUV triple (BT.601 limited range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Yuv(pub u8, pub u8, pub u8);

fn clamp_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// RGB → YUV, BT.601 limited range.
pub fn rgb_to_yuv(c: Rgb) -> Yuv {
    let (r, g, b) = (f32::from(c.0), f32::from(c.1), f32::from(c.2));
    let y = 16.0 + 0.256_788 * r + 0.504_129 * g + 0.097_906 * b;
    let u = 128.0 - 0.148_223 * r - 0.290_993 * g + 0.439_216 * b;
    let v = 128.0 + 0.439_216 * r - 0.367_788 * g - 0.071_427 * b;
    Yuv(clamp_u8(y), clamp_u8(u), clamp_u8(v))
}

/// YUV → RGB, BT.601 limited range; fractional input so averages keep
/// their precision.
pub fn yuv_to_rgb(y: f32, u: f32, v: f32) -> Rgb {
    let (c, d, e) = (y - 16.0, u - 128.0, v - 128.0);
    let r = 1.164_383 * c + 1.596_027 * e;
    let g = 1.164_383 * c - 0.391_762 * d - 0.812_968 * e;
    let b = 1.164_383 * c + 2.017_232 * d;
    Rgb(clamp_u8(r), clamp_u8(g), clamp_u8(b))
}

/// A rectangle in pixels. Panes are even-aligned so that they map exactly
/// onto whole chroma samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Rect {
    pub const fn new(x: u32, y: u32, w: u32, h: u32) -> Self {
        Rect { x, y, w, h }
    }

    pub fn area(&self) -> u64 {
        u64::from(self.w) * u64::from(self.h)
    }

    /// The middle part of the rectangle, `frac` of each side (0..=1): tests
    /// look there to stay clear of labels and scaler edge blending.
    pub fn centre(&self, frac: f32) -> Rect {
        let frac = frac.clamp(0.0, 1.0);
        let w = ((self.w as f32 * frac) as u32).max(1).min(self.w);
        let h = ((self.h as f32 * frac) as u32).max(1).min(self.h);
        Rect::new(self.x + (self.w - w) / 2, self.y + (self.h - h) / 2, w, h)
    }

    /// This rectangle cut to a `width x height` canvas.
    pub fn clipped(&self, width: u32, height: u32) -> Rect {
        let x = self.x.min(width);
        let y = self.y.min(height);
        let w = self.w.min(width - x);
        let h = self.h.min(height - y);
        Rect::new(x, y, w, h)
    }
}

/// A picture in I420.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct I420Frame {
    width: u32,
    height: u32,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

fn check_size(width: u32, height: u32) -> Result<(), Error> {
    if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(Error::InvalidFrame(format!(
            "{width}x{height} is outside 1..={MAX_DIMENSION}"
        )));
    }
    Ok(())
}

impl I420Frame {
    /// A frame filled with one colour.
    pub fn solid(width: u32, height: u32, colour: Rgb) -> Result<Self, Error> {
        check_size(width, height)?;
        let Yuv(y, u, v) = rgb_to_yuv(colour);
        let (cw, ch) = chroma_size(width, height);
        Ok(I420Frame {
            width,
            height,
            y: vec![y; width as usize * height as usize],
            u: vec![u; cw as usize * ch as usize],
            v: vec![v; cw as usize * ch as usize],
        })
    }

    /// A black frame.
    pub fn black(width: u32, height: u32) -> Result<Self, Error> {
        Self::solid(width, height, Rgb::BLACK)
    }

    /// Takes ownership of tightly packed planes, checking their sizes.
    pub fn from_planes(
        width: u32,
        height: u32,
        y: Vec<u8>,
        u: Vec<u8>,
        v: Vec<u8>,
    ) -> Result<Self, Error> {
        check_size(width, height)?;
        let (cw, ch) = chroma_size(width, height);
        let luma = width as usize * height as usize;
        let chroma = cw as usize * ch as usize;
        if y.len() != luma || u.len() != chroma || v.len() != chroma {
            return Err(Error::InvalidFrame(format!(
                "{width}x{height} needs planes of {luma}/{chroma}/{chroma} bytes, got {}/{}/{}",
                y.len(),
                u.len(),
                v.len()
            )));
        }
        Ok(I420Frame {
            width,
            height,
            y,
            u,
            v,
        })
    }

    /// Copies strided planes (as a decoder hands them out) into a packed frame.
    pub fn from_strided(
        width: u32,
        height: u32,
        planes: [&[u8]; 3],
        strides: [usize; 3],
    ) -> Result<Self, Error> {
        check_size(width, height)?;
        let (cw, ch) = chroma_size(width, height);
        let dims = [(width, height), (cw, ch), (cw, ch)];
        let mut out: [Vec<u8>; 3] = Default::default();
        for (i, plane) in planes.iter().enumerate() {
            let (w, h) = (dims[i].0 as usize, dims[i].1 as usize);
            let stride = strides[i];
            let needed = stride.saturating_mul(h.saturating_sub(1)).saturating_add(w);
            if stride < w || plane.len() < needed {
                return Err(Error::InvalidFrame(format!(
                    "plane {i}: {w}x{h} with stride {stride} does not fit {} bytes",
                    plane.len()
                )));
            }
            let mut packed = Vec::with_capacity(w * h);
            for row in 0..h {
                packed.extend_from_slice(&plane[row * stride..row * stride + w]);
            }
            out[i] = packed;
        }
        let [y, u, v] = out;
        Ok(I420Frame {
            width,
            height,
            y,
            u,
            v,
        })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Width and height of the chroma planes.
    pub fn chroma_size(&self) -> (u32, u32) {
        chroma_size(self.width, self.height)
    }

    pub fn y(&self) -> &[u8] {
        &self.y
    }

    pub fn u(&self) -> &[u8] {
        &self.u
    }

    pub fn v(&self) -> &[u8] {
        &self.v
    }

    /// All three planes, mutably (Y, U, V).
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        (&mut self.y, &mut self.u, &mut self.v)
    }

    /// Paints `rect` (clipped to the frame) with one colour. Chroma covers
    /// every chroma sample the rectangle touches, so odd edges round outward.
    pub fn fill_rect(&mut self, rect: Rect, colour: Rgb) {
        self.fill_rect_yuv(rect, rgb_to_yuv(colour));
    }

    /// [`Self::fill_rect`] with a colour already in YUV.
    pub fn fill_rect_yuv(&mut self, rect: Rect, colour: Yuv) {
        let r = rect.clipped(self.width, self.height);
        if r.w == 0 || r.h == 0 {
            return;
        }
        let stride = self.width as usize;
        for row in r.y..r.y + r.h {
            let start = row as usize * stride + r.x as usize;
            self.y[start..start + r.w as usize].fill(colour.0);
        }
        let (cw, _) = self.chroma_size();
        let (cx0, cy0) = (r.x / 2, r.y / 2);
        let (cx1, cy1) = ((r.x + r.w).div_ceil(2), (r.y + r.h).div_ceil(2));
        for row in cy0..cy1 {
            let start = row as usize * cw as usize + cx0 as usize;
            let end = row as usize * cw as usize + cx1 as usize;
            self.u[start..end].fill(colour.1);
            self.v[start..end].fill(colour.2);
        }
    }

    /// Sets one luma sample (clipped): for drawing text, which is luma only.
    pub(crate) fn set_luma(&mut self, x: u32, y: u32, value: u8) {
        if x < self.width && y < self.height {
            self.y[y as usize * self.width as usize + x as usize] = value;
        }
    }

    /// Average colour over `rect` (clipped): mean Y, U and V, converted once.
    /// Returns black for an empty rectangle.
    pub fn average_rgb_in(&self, rect: Rect) -> Rgb {
        let r = rect.clipped(self.width, self.height);
        if r.w == 0 || r.h == 0 {
            return Rgb::BLACK;
        }
        let mean = |plane: &[u8], stride: u32, x0: u32, y0: u32, x1: u32, y1: u32| -> f32 {
            let mut sum = 0u64;
            for row in y0..y1 {
                let start = (row * stride + x0) as usize;
                let end = (row * stride + x1) as usize;
                sum += plane[start..end].iter().map(|&p| u64::from(p)).sum::<u64>();
            }
            let n = u64::from(x1 - x0) * u64::from(y1 - y0);
            sum as f32 / n.max(1) as f32
        };
        let y = mean(&self.y, self.width, r.x, r.y, r.x + r.w, r.y + r.h);
        let (cw, _) = self.chroma_size();
        let (cx0, cy0) = (r.x / 2, r.y / 2);
        let (cx1, cy1) = ((r.x + r.w).div_ceil(2), (r.y + r.h).div_ceil(2));
        let u = mean(&self.u, cw, cx0, cy0, cx1, cy1);
        let v = mean(&self.v, cw, cx0, cy0, cx1, cy1);
        yuv_to_rgb(y, u, v)
    }

    /// Copies `src` into this frame with its top-left corner at (`x`, `y`),
    /// clipped. `x` and `y` must be even for chroma to line up; odd values
    /// are rounded down.
    pub fn blit(&mut self, src: &I420Frame, x: u32, y: u32) {
        let (x, y) = (x & !1, y & !1);
        let copy = |dst: &mut [u8],
                    dst_w: u32,
                    dst_h: u32,
                    srcp: &[u8],
                    src_w: u32,
                    src_h: u32,
                    x: u32,
                    y: u32| {
            if x >= dst_w || y >= dst_h {
                return;
            }
            let w = src_w.min(dst_w - x) as usize;
            let h = src_h.min(dst_h - y);
            for row in 0..h {
                let d = ((y + row) * dst_w + x) as usize;
                let s = (row * src_w) as usize;
                dst[d..d + w].copy_from_slice(&srcp[s..s + w]);
            }
        };
        let (dw, dh) = (self.width, self.height);
        copy(&mut self.y, dw, dh, &src.y, src.width, src.height, x, y);
        let (dcw, dch) = self.chroma_size();
        let (scw, sch) = src.chroma_size();
        copy(&mut self.u, dcw, dch, &src.u, scw, sch, x / 2, y / 2);
        copy(&mut self.v, dcw, dch, &src.v, scw, sch, x / 2, y / 2);
    }
}

fn chroma_size(width: u32, height: u32) -> (u32, u32) {
    (width.div_ceil(2), height.div_ceil(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_colour_round_trip_is_close() {
        for c in [
            Rgb::RED,
            Rgb::GREEN,
            Rgb::BLUE,
            Rgb::YELLOW,
            Rgb::WHITE,
            Rgb::BLACK,
            Rgb(40, 40, 48),
        ] {
            let Yuv(y, u, v) = rgb_to_yuv(c);
            let back = yuv_to_rgb(f32::from(y), f32::from(u), f32::from(v));
            assert!(back.distance(c) <= 3, "{c:?} -> {back:?}");
        }
    }

    #[test]
    fn video_fill_and_average() {
        let mut f = I420Frame::solid(64, 48, Rgb::BLUE).unwrap();
        f.fill_rect(Rect::new(0, 0, 32, 24), Rgb::RED);
        assert!(f.average_rgb_in(Rect::new(0, 0, 32, 24)).distance(Rgb::RED) <= 3);
        assert!(
            f.average_rgb_in(Rect::new(32, 24, 32, 24))
                .distance(Rgb::BLUE)
                <= 3
        );
        // Out of range rectangles clip rather than panic.
        f.fill_rect(Rect::new(60, 40, 100, 100), Rgb::GREEN);
        assert!(
            f.average_rgb_in(Rect::new(60, 40, 100, 100))
                .distance(Rgb::GREEN)
                <= 3
        );
        assert_eq!(f.average_rgb_in(Rect::new(100, 100, 4, 4)), Rgb::BLACK);
    }

    #[test]
    fn video_planes_are_checked() {
        assert!(I420Frame::from_planes(4, 4, vec![0; 16], vec![0; 4], vec![0; 3]).is_err());
        assert!(I420Frame::from_planes(0, 4, vec![], vec![], vec![]).is_err());
        let odd = I420Frame::from_planes(3, 3, vec![0; 9], vec![0; 4], vec![0; 4]).unwrap();
        assert_eq!(odd.chroma_size(), (2, 2));
        let strided =
            I420Frame::from_strided(2, 2, [&[1, 2, 9, 3, 4], &[5], &[6]], [3, 1, 1]).unwrap();
        assert_eq!(strided.y(), &[1, 2, 3, 4]);
        assert!(I420Frame::from_strided(2, 2, [&[1, 2, 9, 3], &[5], &[6]], [3, 1, 1]).is_err());
    }

    #[test]
    fn video_blit_places_and_clips() {
        let mut canvas = I420Frame::black(16, 16).unwrap();
        let red = I420Frame::solid(8, 8, Rgb::RED).unwrap();
        canvas.blit(&red, 12, 4);
        assert!(
            canvas
                .average_rgb_in(Rect::new(12, 4, 4, 8))
                .distance(Rgb::RED)
                <= 3
        );
        assert!(
            canvas
                .average_rgb_in(Rect::new(0, 0, 12, 16))
                .distance(Rgb::BLACK)
                <= 3
        );
    }
}
