//! A clip encoded once and replayed by many legs: what keeps a video load
//! run's generator cheap.
//!
//! The clip is a camera-like picture — the room's colour with moving
//! diagonal texture and three squares travelling on different paths — so the
//! node's decoder and scaler do real work (a flat colour would encode to
//! almost nothing and flatter the node). Picture 0 is an IDR and the only
//! one; the replay loops back to it, so a replaying leg sends a keyframe once
//! per clip length (60 pictures at 30 fps: every 2 s) and on every PLI/FIR.
//! A second IDR encoding of picture 0 is kept so that two keyframes in a row
//! differ in `idr_pic_id`; the pictures after it then reference a slightly
//! different reconstruction, a drift no decoder reports as an error.

use std::time::{Duration, Instant};

use super::VideoSpec;
use super::codec::{H264Decoder, H264Encoder};
use super::h264::{self, Packetizer, PayloadUnit};
use super::picture::{Picture, Rgb};
use crate::error::{Error, Result};

/// One encoded picture, already packetized.
#[derive(Debug, Clone)]
pub(crate) struct ClipFrame {
    pub units: Vec<PayloadUnit>,
    pub keyframe: bool,
    /// The access unit as encoded, for the decode baseline.
    annexb: Vec<u8>,
}

/// See the module docs.
pub struct VideoClip {
    spec: VideoSpec,
    frames: Vec<ClipFrame>,
    second_keyframe: ClipFrame,
    /// The same clip at the smaller sizes a bitrate limit steps down to
    /// ([`super::sender::size_for_limit`]), largest first; empty unless
    /// made by [`VideoClip::encode_ladder`].
    renditions: Vec<VideoClip>,
}

impl std::fmt::Debug for VideoClip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoClip")
            .field("spec", &self.spec)
            .field("frames", &self.frames.len())
            .field("bytes", &self.encoded_bytes())
            .finish()
    }
}

/// Paints picture `t` of the clip.
fn draw(picture: &mut Picture, colour: Rgb, t: u32) {
    let (w, h) = (picture.width(), picture.height());
    picture.fill_rect(0, 0, w, h, colour);
    // Diagonal stripes, 16 px wide, moving 2 px per picture: texture the
    // encoder must code, with motion it can predict.
    let stride = w as usize;
    for (row, line) in picture.luma_mut().chunks_mut(stride).enumerate() {
        for (col, y) in line.iter_mut().enumerate() {
            let phase = (col + row + 2 * t as usize) / 16;
            let delta: i16 = if phase.is_multiple_of(2) { 18 } else { -18 };
            *y = (i16::from(*y) + delta).clamp(16, 235) as u8;
        }
    }
    let side = (h / 6).max(2) & !1;
    let span_x = w.saturating_sub(side).max(1);
    let span_y = h.saturating_sub(side).max(1);
    let inverse = (255 - colour.0, 255 - colour.1, 255 - colour.2);
    let squares = [
        ((t * 7) % span_x, span_y / 4, (255, 255, 255)),
        (span_x - (t * 5) % span_x, span_y / 2, (0, 0, 0)),
        ((t * 3) % span_x, (t * 4) % span_y, inverse),
    ];
    for (x, y, c) in squares {
        picture.fill_rect(x & !1, y & !1, side, side, c);
    }
}

impl VideoClip {
    /// Encodes `frames` pictures (at least 2) of `spec` once.
    pub fn encode(spec: &VideoSpec, frames: usize) -> Result<VideoClip> {
        spec.validate()?;
        if frames < 2 {
            return Err(Error::Config(format!(
                "a clip needs at least 2 pictures, not {frames}"
            )));
        }
        let mut encoder = H264Encoder::new(spec.width, spec.height, spec.fps, spec.bitrate_bps)?;
        let mut picture = Picture::solid(spec.width, spec.height, spec.colour)?;
        let packetizer = Packetizer::default();
        let mut annexb = Vec::new();
        let mut encode = |picture: &Picture, force: bool| -> Result<ClipFrame> {
            let keyframe = encoder.encode(picture, force, &mut annexb)?;
            let mut units = Vec::new();
            packetizer.packetize(&h264::split_annexb(&annexb), &mut units);
            Ok(ClipFrame {
                units,
                keyframe,
                annexb: annexb.clone(),
            })
        };
        let mut encoded = Vec::with_capacity(frames);
        for t in 0..frames {
            draw(&mut picture, spec.colour, t as u32);
            encoded.push(encode(&picture, t == 0)?);
        }
        // The rate controller may skip a picture (that tick then sends
        // nothing, as a real sender's would), even a forced IDR: ask again.
        draw(&mut picture, spec.colour, 0);
        let mut second_keyframe = encode(&picture, true)?;
        for _ in 0..10 {
            if second_keyframe.keyframe {
                break;
            }
            second_keyframe = encode(&picture, true)?;
        }
        if !(encoded[0].keyframe && second_keyframe.keyframe) {
            return Err(Error::Video("the encoder made no IDR where asked".into()));
        }
        Ok(VideoClip {
            spec: *spec,
            frames: encoded,
            second_keyframe,
            renditions: Vec::new(),
        })
    }

    /// [`VideoClip::encode`], plus a rendition at each smaller size a
    /// bitrate limit steps the camera down to (360p and 180p for a 720p
    /// clip), so that a replaying leg answers TMMBR as a room system would.
    pub fn encode_ladder(spec: &VideoSpec, frames: usize) -> Result<VideoClip> {
        let mut clip = VideoClip::encode(spec, frames)?;
        let native = (spec.width, spec.height);
        let mut sizes: Vec<(u32, u32)> = [400_000, 200_000]
            .into_iter()
            .map(|bps| super::sender::size_for_limit(native, Some(bps)))
            .filter(|&s| s != native)
            .collect();
        sizes.dedup();
        for (w, h) in sizes {
            let bitrate = if h >= 360 { 600_000 } else { 200_000 };
            let small = VideoSpec {
                width: w,
                height: h,
                bitrate_bps: bitrate.min(spec.bitrate_bps),
                ..*spec
            };
            clip.renditions.push(VideoClip::encode(&small, frames)?);
        }
        Ok(clip)
    }

    /// Rendition `i` (0: this clip; past the last: the smallest).
    pub fn rendition(&self, i: usize) -> &VideoClip {
        match i.checked_sub(1) {
            None => self,
            Some(j) => self
                .renditions
                .get(j)
                .or(self.renditions.last())
                .unwrap_or(self),
        }
    }

    /// The rendition to play under a bitrate limit: the largest whose size
    /// is within [`super::sender::size_for_limit`] of it.
    pub fn rendition_for(&self, limit_bps: Option<u64>) -> usize {
        let (_, max_h) =
            super::sender::size_for_limit((self.spec.width, self.spec.height), limit_bps);
        std::iter::once(self)
            .chain(&self.renditions)
            .position(|c| c.spec.height <= max_h)
            .unwrap_or(self.renditions.len())
    }

    /// Size, rate, bitrate and colour it was encoded with.
    pub fn spec(&self) -> &VideoSpec {
        &self.spec
    }

    /// Pictures in the clip.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes of H.264 in one pass of the clip.
    pub fn encoded_bytes(&self) -> usize {
        self.frames.iter().map(|f| f.annexb.len()).sum()
    }

    /// RTP packets in one pass of the clip.
    pub fn packets(&self) -> usize {
        self.frames.iter().map(|f| f.units.len()).sum()
    }

    /// Picture `i` (modulo the length) as encoded, Annex B, and whether it
    /// is an IDR; empty where the rate controller skipped the picture. For
    /// senders that packetize themselves (a WebRTC publisher).
    pub fn access_unit(&self, i: usize) -> (&[u8], bool) {
        let f = self.frame(i);
        (&f.annexb, f.keyframe)
    }

    pub(crate) fn frame(&self, i: usize) -> &ClipFrame {
        &self.frames[i % self.frames.len()]
    }

    /// Picture 0 as an IDR: the first encoding or the second.
    pub(crate) fn keyframe(&self, second: bool) -> &ClipFrame {
        if second {
            &self.second_keyframe
        } else {
            &self.frames[0]
        }
    }

    /// The baseline a video load run is compared with, measured in the same
    /// run: how many streams like this one core could decode with raw
    /// OpenH264 if decoding were all it did (a transcoding MCU decodes every
    /// incoming stream before composing). Runs for about `budget`.
    pub fn raw_decode_streams_per_core(&self, budget: Duration) -> Result<f64> {
        let started = Instant::now();
        let mut decoded = 0u64;
        while decoded == 0 || started.elapsed() < budget {
            let mut decoder = H264Decoder::new()?;
            for frame in self.frames.iter().filter(|f| !f.annexb.is_empty()) {
                decoder.decode(&frame.annexb)?;
                decoded += 1;
            }
        }
        let per_second = decoded as f64 / started.elapsed().as_secs_f64().max(1e-9);
        Ok(per_second / f64::from(self.spec.fps))
    }
}
