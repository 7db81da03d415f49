//! H.264 through OpenH264, set up as a VTC would be: Constrained Baseline,
//! camera real-time mode, one thread, bitrate rate control, keyframes only at
//! the start and when asked (PLI/FIR), never periodically — so every
//! keyframe a test sees was requested by someone.
//!
//! Frame skipping is on, as OpenH264 needs it to hold a bitrate: a skipped
//! picture comes back empty (nothing is sent on that tick), and a forced
//! keyframe that was skipped has to be forced again — the sender keeps
//! asking until an IDR comes out.

use openh264::OpenH264API;
use openh264::decoder::{Decoder, DecoderConfig};
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Profile,
    RateControlMode, UsageType,
};
use openh264::formats::{YUVSlices, YUVSource};

use super::h264::{self, nal};
use super::picture::Picture;
use crate::error::{Error, Result};

fn video_err(e: openh264::Error) -> Error {
    Error::Video(e.to_string())
}

/// An OpenH264 encoder for pictures of one size.
pub struct H264Encoder {
    inner: Encoder,
    width: u32,
    height: u32,
    pictures: u64,
}

impl std::fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Encoder")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("pictures", &self.pictures)
            .finish_non_exhaustive()
    }
}

impl H264Encoder {
    pub fn new(width: u32, height: u32, fps: f32, bitrate_bps: u32) -> Result<H264Encoder> {
        // Validates the size the same way pictures do.
        Picture::solid(width, height, (0, 0, 0))?;
        if !(fps.is_finite() && fps > 0.0 && fps <= 120.0) || bitrate_bps < 10_000 {
            return Err(Error::Config(format!(
                "video at {fps} fps / {bitrate_bps} bit/s (want 0 < fps <= 120, >= 10 kbit/s)"
            )));
        }
        let config = EncoderConfig::new()
            .profile(Profile::Baseline)
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(fps))
            .skip_frames(true)
            .intra_frame_period(IntraFramePeriod::from_num_frames(0))
            .num_threads(1);
        let inner =
            Encoder::with_api_config(OpenH264API::from_source(), config).map_err(video_err)?;
        Ok(H264Encoder {
            inner,
            width,
            height,
            pictures: 0,
        })
    }

    /// Encodes one picture of the configured size into `annexb` (cleared
    /// first). Returns whether it came out as an IDR. The first picture
    /// always does; later ones when `force_keyframe`, unless the rate
    /// controller skipped the picture (`annexb` empty).
    pub fn encode(
        &mut self,
        picture: &Picture,
        force_keyframe: bool,
        annexb: &mut Vec<u8>,
    ) -> Result<bool> {
        annexb.clear();
        if (picture.width(), picture.height()) != (self.width, self.height) {
            return Err(Error::Config(format!(
                "encoder is {}x{}, picture is {}x{}",
                self.width,
                self.height,
                picture.width(),
                picture.height()
            )));
        }
        if force_keyframe && self.pictures > 0 {
            self.inner.force_intra_frame();
        }
        let w = self.width as usize;
        let h = self.height as usize;
        // Sizes were checked: even sides, planes packed, so YUVSlices' own
        // assertions hold.
        let source = YUVSlices::new(picture.planes(), (w, h), (w, w / 2, w / 2));
        let bitstream = self.inner.encode(&source).map_err(video_err)?;
        let keyframe = bitstream.frame_type() == FrameType::IDR;
        bitstream.write_vec(annexb);
        self.pictures += 1;
        Ok(keyframe && !annexb.is_empty())
    }
}

/// An OpenH264 decoder for one incoming stream. Error concealment is off:
/// a broken stream is an error here, not a smeared picture.
pub struct H264Decoder {
    inner: Decoder,
}

impl std::fmt::Debug for H264Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Decoder").finish_non_exhaustive()
    }
}

impl H264Decoder {
    pub fn new() -> Result<H264Decoder> {
        let inner = Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new())
            .map_err(video_err)?;
        Ok(H264Decoder { inner })
    }

    /// Decodes one access unit (Annex B). `Ok(None)`: it held no picture
    /// (parameter sets only). Anything malformed is an `Err`.
    pub fn decode(&mut self, annexb: &[u8]) -> Result<Option<Picture>> {
        let units = h264::split_annexb(annexb);
        if units.is_empty() {
            return Err(Error::Video("access unit without NAL units".into()));
        }
        if units.iter().any(|u| u[0] & 0x80 != 0) {
            return Err(Error::Video("forbidden_zero_bit set".into()));
        }
        let Some(yuv) = self.inner.decode(annexb).map_err(video_err)? else {
            return Ok(None);
        };
        let (w, h) = yuv.dimensions();
        let (sy, su, sv) = yuv.strides();
        let (Ok(w), Ok(h)) = (u32::try_from(w), u32::try_from(h)) else {
            return Err(Error::Video(format!("decoded size {w}x{h}")));
        };
        Picture::from_strided(w, h, [yuv.y(), yuv.u(), yuv.v()], [sy, su, sv]).map(Some)
    }
}

/// Whether an Annex B access unit carries an IDR slice.
pub fn is_keyframe(annexb: &[u8]) -> bool {
    h264::split_annexb(annexb)
        .iter()
        .any(|u| h264::nal_type(u) == Some(nal::IDR))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::picture::colour_distance;

    #[test]
    fn encode_decode_keeps_the_colour_and_keyframes_come_when_asked() {
        let mut enc = H264Encoder::new(160, 96, 15.0, 200_000).expect("encoder");
        let mut dec = H264Decoder::new().expect("decoder");
        let picture = Picture::solid(160, 96, (200, 40, 40)).expect("picture");
        let mut au = Vec::new();
        let mut keyframes = Vec::new();
        let mut last = None;
        for i in 0..6 {
            keyframes.push(enc.encode(&picture, i == 4, &mut au).expect("encode"));
            assert_eq!(is_keyframe(&au), keyframes[i]);
            last = dec.decode(&au).expect("decode").or(last);
        }
        assert_eq!(keyframes, [true, false, false, false, true, false]);
        let seen = last.expect("a picture");
        assert_eq!((seen.width(), seen.height()), (160, 96));
        let c = seen.average_colour(0.1, 0.1, 0.9, 0.9).expect("colour");
        assert!(colour_distance(c, (200, 40, 40)) <= 12, "{c:?}");
        // The first access unit carries SPS and PPS in front of the IDR.
        let mut enc = H264Encoder::new(160, 96, 15.0, 200_000).expect("encoder");
        enc.encode(&picture, false, &mut au).expect("encode");
        let types: Vec<_> = h264::split_annexb(&au)
            .iter()
            .filter_map(|u| h264::nal_type(u))
            .collect();
        assert!(
            types.contains(&nal::SPS) && types.contains(&nal::PPS),
            "{types:?}"
        );
    }

    #[test]
    fn bad_settings_and_garbage_are_errors() {
        assert!(H264Encoder::new(161, 96, 15.0, 200_000).is_err());
        assert!(H264Encoder::new(160, 96, 0.0, 200_000).is_err());
        let mut enc = H264Encoder::new(160, 96, 15.0, 200_000).expect("encoder");
        let wrong = Picture::solid(320, 96, (0, 0, 0)).expect("picture");
        assert!(enc.encode(&wrong, false, &mut Vec::new()).is_err());
        let mut dec = H264Decoder::new().expect("decoder");
        assert!(dec.decode(&[]).is_err());
        assert!(dec.decode(&[0, 0, 1, 0x80 | 0x65, 1]).is_err());
        for junk in [
            &[0, 0, 0, 1, 0x65, 0xFF, 0x00, 0x13][..],
            &[0, 0, 1, 0x41, 7],
        ] {
            // An error or nothing, never a panic.
            let _ = dec.decode(junk);
        }
    }
}
