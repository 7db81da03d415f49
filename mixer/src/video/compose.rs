//! Puts decoded source pictures into the panes of a canvas.
//!
//! Each pane gets the source scaled to fill it (cropped to the pane's aspect
//! ratio, centred, never letterboxed) by [`super::scale::Scaler`], plane by
//! plane in I420. Per tick, [`Compositor::prepare`] scales every picture
//! once per pane size, spread over the tick's threads, since every view
//! that shows the same participant in a pane of the same size needs the
//! very same pixels (with 20 receivers most views differ only in one or two
//! panes); the views then only read those copies, each on its own
//! [`Canvas`]. A canvas remembers what each pane shows and redraws only the
//! panes whose picture or occupant changed.
//!
//! A participant without a picture to show (no video, muted, frozen) gets a
//! name tile: a dark background with their name in the middle. Every video
//! pane carries the participant's name on a dark strip at its bottom.
//!
//! A presentation is the exception to crop-to-fill: cutting the edges off a
//! slide loses its title and page numbers, so it is scaled, by the same
//! path, to the largest box of its own aspect ratio that fits the pane
//! ([`fit`]), and the rest of the pane stays black (letterbox or
//! pillarbox). It carries no label.

use std::collections::HashMap;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::font;
use super::frame::{I420Frame, Rect, Rgb, Yuv, rgb_to_yuv};
use super::scale::Scaler;
use crate::audio::ParticipantId;
use crate::error::Error;

/// Background of a name tile.
pub const NAME_TILE_RGB: Rgb = Rgb(40, 44, 52);
/// Background of the name strip under a video pane.
const LABEL_BG: Yuv = Yuv(24, 128, 128);
/// Luma of text (white on neutral chroma).
const TEXT_LUMA: u8 = 235;

/// What one pane shows.
#[derive(Debug, Clone, Copy)]
pub enum PaneContent<'a> {
    /// Nobody: black.
    Empty,
    /// A participant's latest picture. `seq` numbers the source's pictures,
    /// so that a scaled copy is reused only for the very same picture.
    Video {
        source: ParticipantId,
        seq: u64,
        frame: &'a I420Frame,
        name: &'a str,
    },
    /// A participant with nothing to show: their name on a dark tile.
    NameTile { name: &'a str },
    /// The presentation's latest picture, fitted into the pane (see
    /// [`fit`]). `seq` numbers its pictures, as for `Video`.
    Presentation { seq: u64, frame: &'a I420Frame },
}

impl PaneContent<'_> {
    /// What the pane shows, owned, so that a canvas can remember what it
    /// holds and skip panes that would come out the same.
    pub fn sig(&self) -> PaneSig {
        match *self {
            PaneContent::Empty => PaneSig::Empty,
            PaneContent::Video { source, seq, .. } => PaneSig::Video { source, seq },
            PaneContent::NameTile { name } => PaneSig::NameTile(name.to_string()),
            PaneContent::Presentation { seq, .. } => PaneSig::Presentation { seq },
        }
    }
}

/// What a pane of a canvas was last drawn with (see [`PaneContent::sig`]).
/// A video pane is identified by its picture: sequence numbers are never
/// reused, so the same `(source, seq)` means the same pixels and label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaneSig {
    Empty,
    Video {
        source: ParticipantId,
        seq: u64,
    },
    NameTile(String),
    Presentation {
        seq: u64,
    },
    /// Drawn as a stand-in (its picture was not prepared): redraw next time.
    Stale,
}

/// Whose picture a scaled copy is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PictureSource {
    Participant(ParticipantId),
    Presentation,
}

/// A source picture scaled to one size: (source, picture seq, w, h).
pub type ScaleKey = (PictureSource, u64, u32, u32);

/// The largest even-sided box of `picture_w x picture_h`'s aspect ratio
/// that fits `pane`, centred on even coordinates: where a presentation
/// goes. The scaler crops to the box's aspect, which differs from the
/// picture's only by the rounding to even sides.
pub fn fit(pane: Rect, picture_w: u32, picture_h: u32) -> Rect {
    let (pw, ph) = (u64::from(pane.w & !1), u64::from(pane.h & !1));
    let (sw, sh) = (u64::from(picture_w.max(1)), u64::from(picture_h.max(1)));
    // The other side, rounded to the nearest even number.
    let even = |num: u64, den: u64| (num + den) / (2 * den) * 2;
    let (w, h) = if sw * ph >= sh * pw {
        (pw, even(pw * sh, sw).clamp(2, ph.max(2)))
    } else {
        (even(ph * sw, sh).clamp(2, pw.max(2)), ph)
    };
    // Both at most the pane's sides, which are u32.
    let (w, h) = (w as u32, h as u32);
    Rect::new(
        pane.x + (((pane.w & !1).saturating_sub(w) / 2) & !1),
        pane.y + (((pane.h & !1).saturating_sub(h) / 2) & !1),
        w,
        h,
    )
}

/// Scaled copies of this tick's pictures, shared read-only by every view.
pub type ScaledPictures = HashMap<ScaleKey, I420Frame>;

/// A canvas and what each of its panes holds, so that the next composition
/// redraws only the panes whose content changed.
#[derive(Debug, Clone)]
pub struct Canvas {
    pub frame: I420Frame,
    drawn: Vec<(Rect, PaneSig)>,
}

impl Canvas {
    /// A black canvas.
    pub fn new(width: u32, height: u32) -> Result<Self, Error> {
        Ok(Canvas {
            frame: I420Frame::black(width, height)?,
            drawn: Vec::new(),
        })
    }

    /// Draws `contents[i]` into `panes[i]`, skipping panes that already
    /// show exactly that (same rectangle, same picture or tile). A change
    /// of layout redraws everything. Video panes take their pixels from
    /// `scaled` (see [`Compositor::prepare`]). Returns the panes drawn.
    pub fn draw(
        &mut self,
        panes: &[Rect],
        contents: &[PaneContent<'_>],
        scaled: &ScaledPictures,
    ) -> usize {
        let (cw, ch) = (self.frame.width(), self.frame.height());
        let same_layout = self.drawn.len() == panes.len()
            && self.drawn.iter().zip(panes).all(|((r, _), p)| r == p);
        if !same_layout {
            self.frame.fill_rect(Rect::new(0, 0, cw, ch), Rgb::BLACK);
            self.drawn = panes.iter().map(|&p| (p, PaneSig::Stale)).collect();
        }
        let mut redrawn = 0;
        for (i, &rect) in panes.iter().enumerate() {
            let content = contents.get(i).copied().unwrap_or(PaneContent::Empty);
            let sig = content.sig();
            if self.drawn[i].1 == sig {
                continue;
            }
            redrawn += 1;
            let complete = draw_pane(&mut self.frame, rect, content, |key| scaled.get(&key));
            self.drawn[i].1 = if complete { sig } else { PaneSig::Stale };
        }
        redrawn
    }
}

/// Draws one pane; false if a video pane's picture was not in `scaled`
/// (the pane is then left black with its label).
fn draw_pane<'s>(
    canvas: &mut I420Frame,
    pane: Rect,
    content: PaneContent<'_>,
    scaled: impl Fn(ScaleKey) -> Option<&'s I420Frame>,
) -> bool {
    let pane = pane.clipped(canvas.width(), canvas.height());
    if pane.w < 2 || pane.h < 2 {
        return true;
    }
    match content {
        PaneContent::Empty => canvas.fill_rect(pane, Rgb::BLACK),
        PaneContent::NameTile { name } => draw_name_tile(canvas, pane, name),
        PaneContent::Video { .. } | PaneContent::Presentation { .. } => {
            let Some((key, at, _)) = placement(pane, &content) else {
                return true;
            };
            let found = scaled(key);
            if found.is_none() || at != pane {
                // Bars around a presentation, or a stand-in.
                canvas.fill_rect(pane, Rgb::BLACK);
            }
            if let Some(picture) = found {
                canvas.blit(picture, at.x, at.y);
            }
            if let PaneContent::Video { name, .. } = content {
                draw_label(canvas, pane, name);
            }
            return found.is_some();
        }
    }
    true
}

/// Where the picture of a (clipped) pane goes and at which scale: the
/// whole pane for a participant, the fitted box for a presentation. `None`
/// for panes without a picture.
fn placement<'a>(pane: Rect, content: &PaneContent<'a>) -> Option<(ScaleKey, Rect, &'a I420Frame)> {
    let (source, seq, frame, at) = match *content {
        PaneContent::Video {
            source, seq, frame, ..
        } => (
            PictureSource::Participant(source),
            seq,
            frame,
            Rect::new(pane.x, pane.y, pane.w & !1, pane.h & !1),
        ),
        PaneContent::Presentation { seq, frame } => (
            PictureSource::Presentation,
            seq,
            frame,
            fit(pane, frame.width(), frame.height()),
        ),
        PaneContent::Empty | PaneContent::NameTile { .. } => return None,
    };
    Some(((source, seq, at.w, at.h), at, frame))
}

/// The picture of a pane and its scale key, or `None` for panes without
/// one or too small to draw.
fn scale_key<'a>(
    pane: Rect,
    canvas: (u32, u32),
    content: &PaneContent<'a>,
) -> Option<(ScaleKey, &'a I420Frame)> {
    let pane = pane.clipped(canvas.0, canvas.1);
    if pane.w < 2 || pane.h < 2 {
        return None;
    }
    placement(pane, content).map(|(key, _, frame)| (key, frame))
}

/// One view to prepare: its canvas size, panes and what goes in them.
pub struct ViewPanes<'v, 'a> {
    pub canvas: (u32, u32),
    pub panes: &'v [Rect],
    pub contents: &'v [PaneContent<'a>],
}

/// Composes canvases; owns the scalers and the scaled-picture cache.
#[derive(Default)]
pub struct Compositor {
    /// One per worker thread.
    scalers: Vec<Scaler>,
    scaled: ScaledPictures,
}

impl std::fmt::Debug for Compositor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compositor")
            .field("cached", &self.scaled.len())
            .field("scalers", &self.scalers.len())
            .finish_non_exhaustive()
    }
}

fn scaler_err(e: impl std::fmt::Display) -> Error {
    Error::Scaler(e.to_string())
}

/// One picture to scale, for a worker.
struct ScaleJob<'a> {
    key: ScaleKey,
    frame: &'a I420Frame,
    /// A picture of the target size to scale into (recycled from an
    /// earlier tick when there is one).
    into: Option<I420Frame>,
    out: Option<Result<I420Frame, Error>>,
}

impl Compositor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets scaled pictures.
    pub fn clear_cache(&mut self) {
        self.scaled.clear();
    }

    /// The scaled pictures [`Self::prepare`] made, for [`Canvas::draw`].
    pub fn scaled(&self) -> &ScaledPictures {
        &self.scaled
    }

    /// Makes sure every video pane of `views` has its picture scaled to the
    /// pane's size, once per (picture, size), on up to `threads` threads.
    /// Scaled copies nobody needs any more are dropped; ones still needed
    /// (the source sent nothing new) are kept from earlier ticks.
    pub fn prepare(&mut self, views: &[ViewPanes<'_, '_>], threads: usize) -> Result<(), Error> {
        let mut needed: HashMap<ScaleKey, &I420Frame> = HashMap::new();
        for view in views {
            for (pane, content) in view.panes.iter().zip(view.contents) {
                if let Some((key, frame)) = scale_key(*pane, view.canvas, content) {
                    needed.insert(key, frame);
                }
            }
        }
        // Pictures nobody needs any more lend their buffers to new ones.
        let stale: Vec<ScaleKey> = self
            .scaled
            .keys()
            .filter(|key| !needed.contains_key(key))
            .copied()
            .collect();
        let mut spare: Vec<I420Frame> = stale
            .iter()
            .filter_map(|key| self.scaled.remove(key))
            .collect();
        let mut jobs: Vec<ScaleJob<'_>> = needed
            .into_iter()
            .filter(|(key, _)| !self.scaled.contains_key(key))
            .map(|(key, frame)| ScaleJob {
                key,
                frame,
                into: None,
                out: None,
            })
            .collect();
        // HashMap order is random; the work split should not be.
        jobs.sort_by_key(|j| j.key);
        for job in &mut jobs {
            let size = (job.key.2, job.key.3);
            if let Some(i) = spare.iter().position(|f| (f.width(), f.height()) == size) {
                job.into = Some(spare.swap_remove(i));
            }
        }
        let threads = threads.max(1);
        if self.scalers.len() < threads {
            self.scalers.resize_with(threads, Scaler::new);
        }
        super::parallel::run(
            &mut self.scalers[..threads],
            &mut jobs,
            |job| u64::from(job.key.2) * u64::from(job.key.3),
            |scaler, job| {
                job.out = Some(match job.into.take() {
                    Some(mut into) => scaler.scale_into(job.frame, &mut into).map(|()| into),
                    None => scaler.scale(job.frame, job.key.2, job.key.3),
                });
            },
        );
        for job in jobs {
            match job.out {
                Some(Ok(frame)) => {
                    self.scaled.insert(job.key, frame);
                }
                Some(Err(e)) => return Err(e),
                None => return Err(Error::Scaler("scale job did not run".into())),
            }
        }
        Ok(())
    }

    /// Draws `contents[i]` into `panes[i]` of `canvas` (panes without
    /// content are black), scaling what is not cached yet. Panes should be
    /// even-aligned, as [`super::layout::Layout::panes`] makes them. The
    /// cache grows until [`Self::clear_cache`].
    pub fn compose(
        &mut self,
        canvas: &mut I420Frame,
        panes: &[Rect],
        contents: &[PaneContent<'_>],
    ) -> Result<(), Error> {
        let size = (canvas.width(), canvas.height());
        for (pane, content) in panes.iter().zip(contents) {
            if let Some((key, frame)) = scale_key(*pane, size, content)
                && !self.scaled.contains_key(&key)
            {
                if self.scalers.is_empty() {
                    self.scalers.push(Scaler::new());
                }
                let scaled = self.scalers[0].scale(frame, key.2, key.3)?;
                self.scaled.insert(key, scaled);
            }
        }
        for (i, &pane) in panes.iter().enumerate() {
            let content = contents.get(i).copied().unwrap_or(PaneContent::Empty);
            draw_pane(canvas, pane, content, |key| self.scaled.get(&key));
        }
        Ok(())
    }
}

/// Scales `frame` to `w x h` (both even), cropping to the target aspect,
/// with `fast_image_resize`. The mixer scales with [`Scaler`] (same filter,
/// faster); this stays as its reference.
pub fn scale_to(
    resizer: &mut Resizer,
    frame: &I420Frame,
    w: u32,
    h: u32,
) -> Result<I420Frame, Error> {
    if (frame.width(), frame.height()) == (w, h) {
        return Ok(frame.clone());
    }
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
        .fit_into_destination(Some((0.5, 0.5)));
    let (scw, sch) = frame.chroma_size();
    let mut plane = |src: &[u8], sw: u32, sh: u32, dw: u32, dh: u32| -> Result<Vec<u8>, Error> {
        let src = ImageRef::new(sw, sh, src, PixelType::U8).map_err(scaler_err)?;
        let mut dst = Image::new(dw, dh, PixelType::U8);
        resizer
            .resize(&src, &mut dst, &options)
            .map_err(scaler_err)?;
        Ok(dst.into_vec())
    };
    let y = plane(frame.y(), frame.width(), frame.height(), w, h)?;
    let u = plane(frame.u(), scw, sch, w / 2, h / 2)?;
    let v = plane(frame.v(), scw, sch, w / 2, h / 2)?;
    I420Frame::from_planes(w, h, y, u, v)
}

/// Font scale for a pane: readable at 720p, still fits at 180p.
fn label_scale(pane: Rect) -> u32 {
    (pane.h / 120).clamp(1, 4)
}

/// The name on a dark strip along the bottom of a video pane.
fn draw_label(canvas: &mut I420Frame, pane: Rect, name: &str) {
    if name.is_empty() {
        return;
    }
    let s = label_scale(pane);
    let strip_h = ((font::GLYPH_H + 4) * s).min(pane.h) & !1;
    let max_chars = (pane.w.saturating_sub(4 * s) / (font::ADVANCE * s)) as usize;
    if max_chars == 0 || strip_h == 0 {
        return;
    }
    let text: String = name.chars().take(max_chars).collect();
    let strip_w = (font::text_width(text.chars().count(), s) + 4 * s).min(pane.w) & !1;
    let strip = Rect::new(pane.x, pane.y + pane.h - strip_h, strip_w.max(2), strip_h);
    canvas.fill_rect_yuv(strip, LABEL_BG);
    font::draw_text(
        canvas,
        strip.x + 2 * s,
        strip.y + 2 * s,
        s,
        TEXT_LUMA,
        &text,
    );
}

/// A dark tile with the name centred, as large as fits.
fn draw_name_tile(canvas: &mut I420Frame, pane: Rect, name: &str) {
    canvas.fill_rect_yuv(pane, rgb_to_yuv(NAME_TILE_RGB));
    let chars = name.chars().count().max(1) as u32;
    let fit_w = pane.w * 3 / 4 / (chars * font::ADVANCE);
    let fit_h = pane.h / 4 / font::GLYPH_H;
    let s = fit_w.min(fit_h).clamp(1, 8);
    let max_chars = (pane.w / (font::ADVANCE * s)) as usize;
    let text: String = name.chars().take(max_chars).collect();
    let tw = font::text_width(text.chars().count(), s);
    let x = pane.x + pane.w.saturating_sub(tw) / 2;
    let y = pane.y + pane.h.saturating_sub(font::GLYPH_H * s) / 2;
    font::draw_text(canvas, x, y, s, TEXT_LUMA, &text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::layout::Layout;

    #[test]
    fn video_compose_places_sources_tiles_and_black() {
        let red = I420Frame::solid(640, 480, Rgb::RED).unwrap();
        let green = I420Frame::solid(160, 90, Rgb::GREEN).unwrap();
        let mut canvas = I420Frame::black(640, 360).unwrap();
        let panes = Layout::Grid2x2.panes(640, 360);
        let contents = [
            PaneContent::Video {
                source: ParticipantId(1),
                seq: 0,
                frame: &red,
                name: "Alice",
            },
            PaneContent::Video {
                source: ParticipantId(2),
                seq: 0,
                frame: &green,
                name: "Bob",
            },
            PaneContent::NameTile { name: "Carol" },
            PaneContent::Empty,
        ];
        let mut c = Compositor::new();
        c.compose(&mut canvas, &panes, &contents).unwrap();
        let at = |i: usize| canvas.average_rgb_in(panes[i].centre(0.5));
        assert!(at(0).distance(Rgb::RED) <= 4, "{:?}", at(0));
        assert!(at(1).distance(Rgb::GREEN) <= 4, "{:?}", at(1));
        // The tile is dark with (bright) text in it: brighter than the bare
        // background but far from any source colour.
        let tile = canvas.average_rgb_in(panes[2]);
        assert!(tile.distance(NAME_TILE_RGB) <= 40, "{tile:?}");
        assert!(canvas.average_rgb_in(panes[3]).distance(Rgb::BLACK) <= 2);
        // The label strip sits at the bottom of pane 0 and has white text.
        let bottom = Rect::new(panes[0].x, panes[0].y + panes[0].h - 8, 60, 8);
        assert!(
            canvas.y()[(bottom.y * 640 + 4) as usize..(bottom.y * 640 + 60) as usize]
                .contains(&TEXT_LUMA)
        );
        // Two panes of one size from one picture: scaled once.
        assert_eq!(c.scaled.len(), 2);
    }

    #[test]
    fn video_fit_keeps_the_aspect_ratio() {
        // 4:3 into 16:9: pillarbox; 16:9 into 4:3: letterbox; same aspect:
        // the whole pane.
        let wide = Rect::new(0, 0, 320, 180);
        assert_eq!(fit(wide, 1024, 768), Rect::new(40, 0, 240, 180));
        assert_eq!(
            fit(Rect::new(100, 50, 240, 180), 1920, 1080),
            Rect::new(100, 72, 240, 136)
        );
        assert_eq!(fit(wide, 1280, 720), wide);
        // Even sides and corners, inside the pane, whatever the picture.
        for (w, h) in [(1, 1), (3, 1000), (1000, 3), (1366, 768), (853, 480)] {
            let r = fit(Rect::new(212, 0, 106, 60), w, h);
            assert!([r.x, r.y, r.w, r.h].iter().all(|v| v.is_multiple_of(2)));
            assert!(r.w >= 2 && r.h >= 2 && r.x >= 212 && r.x + r.w <= 318 && r.y + r.h <= 60);
        }
    }

    #[test]
    fn video_presentation_is_fitted_with_black_bars() {
        // A 4:3 slide: green title band on top, red left and blue right below.
        let mut slide = I420Frame::solid(640, 480, Rgb::BLUE).unwrap();
        slide.fill_rect(Rect::new(0, 0, 320, 480), Rgb::RED);
        slide.fill_rect(Rect::new(0, 0, 640, 80), Rgb::GREEN);
        let panes = Layout::Grid2x2.panes(640, 360);
        let contents = [
            PaneContent::Presentation {
                seq: 1,
                frame: &slide,
            },
            PaneContent::Empty,
        ];
        let mut canvas = I420Frame::solid(640, 360, Rgb::WHITE).unwrap();
        Compositor::new()
            .compose(&mut canvas, &panes, &contents)
            .unwrap();
        // Pane 0 is 320x180: the slide is 240x180 at x = 40.
        let at = |x, y, w, h| canvas.average_rgb_in(Rect::new(x, y, w, h));
        assert!(at(0, 0, 36, 180).distance(Rgb::BLACK) <= 2, "left bar");
        assert!(at(284, 0, 36, 180).distance(Rgb::BLACK) <= 2, "right bar");
        // Nothing cropped: the title band is at the top, both halves below.
        assert!(at(50, 2, 220, 24).distance(Rgb::GREEN) <= 4);
        assert!(at(50, 60, 60, 100).distance(Rgb::RED) <= 4);
        assert!(at(170, 60, 100, 100).distance(Rgb::BLUE) <= 4);
        // No label on slides: the bottom left corner is slide, not strip.
        assert!(at(44, 168, 40, 10).distance(Rgb::RED) <= 4);
    }

    #[test]
    fn video_scale_crops_to_fill() {
        // Left half red, right half blue, 4:3, into a 16:9 pane: still half
        // and half (cropped top and bottom, not squeezed sideways).
        let mut src = I420Frame::solid(320, 240, Rgb::BLUE).unwrap();
        src.fill_rect(Rect::new(0, 0, 160, 240), Rgb::RED);
        let out = scale_to(&mut Resizer::new(), &src, 160, 90).unwrap();
        assert!(
            out.average_rgb_in(Rect::new(10, 10, 60, 70))
                .distance(Rgb::RED)
                <= 4
        );
        assert!(
            out.average_rgb_in(Rect::new(90, 10, 60, 70))
                .distance(Rgb::BLUE)
                <= 4
        );
    }
}
