//! H.264 through OpenH264: one encoder per view, one decoder per source.
//!
//! The encoder is set up for conferencing: Constrained Baseline (what every
//! SIP phone and browser decodes: OpenH264 marks its Baseline streams with
//! `constraint_set1`, i.e. profile-level-id 42e0xx/42c0xx), bitrate rate
//! control with frame skipping (OpenH264 cannot hold a bitrate without it:
//! a skipped picture comes back empty and the tick sends nothing), no periodic IDR
//! (keyframes only when asked: on a receiver's PLI/FIR or when a receiver
//! changes encoder), one thread (parallelism is across views, see
//! `VideoConfig::threads`).
//!
//! Real-time tuning, measured with the `video` bench's `--sweep` on 720p at
//! 1.5 Mbit/s (composed 1+7 views and camera-like pictures):
//! - low complexity: SAD instead of SATD in mode decision and fewer modes,
//!   about 1.1x faster on views and cameras at the same PSNR;
//! - no scene-change detection: in camera mode OpenH264 answers a detected
//!   scene change with an unrequested IDR, and in a continuous-presence view
//!   every speaker switch in the large pane looks like one. Such a keyframe
//!   goes to every receiver of the view, costs several times a P-frame, and
//!   the rate controller then skips pictures to pay for it. The detector
//!   also costs time on every picture: together with low complexity the
//!   encode runs about 1.17x faster on views;
//! - background detection stays on: it lets static regions (most of a
//!   conference picture) skip early, and turning it off made encoding
//!   slower (0.85-0.98x);
//! - adaptive quantization stays on: turning it off gained nothing
//!   measurable, and it is what keeps flat areas (walls, name tiles) clean.
//!
//! Output is Annex B (start codes), one access unit per `encode`. For
//! RFC 6184 packetization-mode 0 (single NAL unit per RTP packet) set
//! [`EncoderSettings::max_slice_bytes`] under the path MTU (≈1200): OpenH264
//! then cuts slices so that each NAL unit fits. With mode 1 the bridge can
//! fragment (FU-A) instead and leave it `None`.

use openh264::OpenH264API;
use openh264::decoder::{Decoder, DecoderConfig};
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Profile,
    RateControlMode, UsageType,
};
use openh264::formats::{YUVSlices, YUVSource};

use super::frame::I420Frame;
use crate::error::Error;

/// Largest access unit we hand to the decoder. A 4K IDR at high quality is
/// well under this; anything bigger is a peer (or a depacketizer) gone wrong.
pub const MAX_ACCESS_UNIT_BYTES: usize = 8 << 20;

/// How a [`VideoEncoder`] is set up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderSettings {
    /// Even, 2..=3840.
    pub width: u32,
    /// Even, 2..=3840.
    pub height: u32,
    /// Nominal frame rate; the rate controller spreads the bitrate over it.
    pub fps: f32,
    /// Target bitrate in bits per second.
    pub bitrate_bps: u32,
    /// Upper bound for one NAL unit, for packetization-mode 0. `None` means
    /// one slice per picture.
    pub max_slice_bytes: Option<u32>,
}

impl EncoderSettings {
    pub fn new(width: u32, height: u32, fps: f32, bitrate_bps: u32) -> Self {
        EncoderSettings {
            width,
            height,
            fps,
            bitrate_bps,
            max_slice_bytes: None,
        }
    }
}

/// One encoded picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// The access unit in Annex B form (each NAL unit after a start code).
    /// A keyframe carries SPS and PPS in front of its IDR slice(s).
    pub annexb: Vec<u8>,
    /// True for an IDR picture: a receiver can start decoding here.
    pub keyframe: bool,
}

impl EncodedFrame {
    /// The NAL units without their start codes, for an RTP packetizer.
    pub fn nal_units(&self) -> Vec<&[u8]> {
        split_annexb(&self.annexb)
    }
}

/// Splits an Annex B byte stream into NAL units (start codes removed,
/// trailing zero bytes of a 4-byte start code trimmed). Empty units are
/// skipped.
pub fn split_annexb(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push((i, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut units = Vec::with_capacity(starts.len());
    for (k, &(_, payload)) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(data.len(), |&(sc, _)| sc);
        while end > payload && data[end - 1] == 0 {
            end -= 1;
        }
        if end > payload {
            units.push(&data[payload..end]);
        }
    }
    units
}

fn codec_err(e: openh264::Error) -> Error {
    Error::VideoCodec(e.to_string())
}

/// An OpenH264 encoder producing Constrained Baseline at a fixed size.
pub struct VideoEncoder {
    inner: Encoder,
    settings: EncoderSettings,
    frames: u64,
}

impl std::fmt::Debug for VideoEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoEncoder")
            .field("settings", &self.settings)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl VideoEncoder {
    pub fn new(settings: EncoderSettings) -> Result<Self, Error> {
        let EncoderSettings {
            width,
            height,
            fps,
            bitrate_bps,
            max_slice_bytes,
        } = settings;
        if width < 2
            || height < 2
            || width % 2 != 0
            || height % 2 != 0
            || width > super::frame::MAX_DIMENSION
            || height > super::frame::MAX_DIMENSION
        {
            return Err(Error::InvalidFrame(format!(
                "cannot encode {width}x{height}: sides must be even and at most {}",
                super::frame::MAX_DIMENSION
            )));
        }
        if !(fps.is_finite() && fps > 0.0 && fps <= 120.0) || bitrate_bps == 0 {
            return Err(Error::InvalidFrame(format!(
                "cannot encode at {fps} fps / {bitrate_bps} bps"
            )));
        }
        let mut config = EncoderConfig::new()
            .profile(Profile::Baseline)
            .usage_type(UsageType::CameraVideoRealTime)
            .complexity(Complexity::Low)
            .scene_change_detect(false)
            .background_detection(true)
            .adaptive_quantization(true)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(fps))
            .skip_frames(true)
            .intra_frame_period(IntraFramePeriod::from_num_frames(0))
            .num_threads(1);
        if let Some(max) = max_slice_bytes {
            config = config.max_slice_len(max);
        }
        let inner =
            Encoder::with_api_config(OpenH264API::from_source(), config).map_err(codec_err)?;
        Ok(VideoEncoder {
            inner,
            settings,
            frames: 0,
        })
    }

    pub fn settings(&self) -> &EncoderSettings {
        &self.settings
    }

    /// Encodes one picture, which must be exactly the configured size. The
    /// first picture is always a keyframe. If the rate controller skips the
    /// picture to hold the bitrate, `annexb` is empty and `keyframe` false
    /// (a forced keyframe that was skipped has to be forced again).
    pub fn encode(
        &mut self,
        frame: &I420Frame,
        force_keyframe: bool,
    ) -> Result<EncodedFrame, Error> {
        let (w, h) = (frame.width(), frame.height());
        if (w, h) != (self.settings.width, self.settings.height) {
            return Err(Error::InvalidFrame(format!(
                "encoder is {}x{}, frame is {w}x{h}",
                self.settings.width, self.settings.height
            )));
        }
        if force_keyframe && self.frames > 0 {
            self.inner.force_intra_frame();
        }
        // Even sides (checked in `new`) make these exact, which YUVSlices asserts.
        let (w, h) = (w as usize, h as usize);
        let source = YUVSlices::new((frame.y(), frame.u(), frame.v()), (w, h), (w, w / 2, w / 2));
        let bitstream = self.inner.encode(&source).map_err(codec_err)?;
        let frame_type = bitstream.frame_type();
        let annexb = bitstream.to_vec();
        self.frames += 1;
        Ok(EncodedFrame {
            keyframe: matches!(frame_type, FrameType::IDR) && !annexb.is_empty(),
            annexb,
        })
    }
}

/// An OpenH264 decoder for one source's stream.
pub struct VideoDecoder {
    inner: Decoder,
}

impl std::fmt::Debug for VideoDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoDecoder").finish_non_exhaustive()
    }
}

impl VideoDecoder {
    pub fn new() -> Result<Self, Error> {
        let inner = Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new())
            .map_err(codec_err)?;
        Ok(VideoDecoder { inner })
    }

    /// Decodes one access unit in Annex B form. `Ok(None)` means the unit
    /// carried no picture (parameter sets only, or the decoder needs more).
    /// Anything malformed is an `Err(MalformedVideo)`: count it, ask the
    /// sender for a keyframe, carry on.
    pub fn decode(&mut self, annexb: &[u8]) -> Result<Option<I420Frame>, Error> {
        if annexb.is_empty() {
            return Err(Error::MalformedVideo("empty access unit".into()));
        }
        if annexb.len() > MAX_ACCESS_UNIT_BYTES {
            return Err(Error::MalformedVideo(format!(
                "access unit of {} bytes exceeds {MAX_ACCESS_UNIT_BYTES}",
                annexb.len()
            )));
        }
        if !(annexb.starts_with(&[0, 0, 1]) || annexb.starts_with(&[0, 0, 0, 1])) {
            return Err(Error::MalformedVideo("no Annex B start code".into()));
        }
        let nals = split_annexb(annexb);
        if nals.is_empty() {
            return Err(Error::MalformedVideo("no NAL unit".into()));
        }
        for nal in &nals {
            // forbidden_zero_bit set: the unit is corrupt by definition.
            if nal[0] & 0x80 != 0 {
                return Err(Error::MalformedVideo("forbidden_zero_bit set".into()));
            }
        }
        let decoded = self
            .inner
            .decode(annexb)
            .map_err(|e| Error::MalformedVideo(e.to_string()))?;
        let Some(yuv) = decoded else {
            return Ok(None);
        };
        let (w, h) = yuv.dimensions();
        let (sy, su, sv) = yuv.strides();
        let (w, h) = (
            u32::try_from(w).map_err(|_| Error::MalformedVideo("width".into()))?,
            u32::try_from(h).map_err(|_| Error::MalformedVideo("height".into()))?,
        );
        I420Frame::from_strided(w, h, [yuv.y(), yuv.u(), yuv.v()], [sy, su, sv])
            .map(Some)
            .map_err(|e| Error::MalformedVideo(e.to_string()))
    }
}

/// One source's access unit for [`decode_many`].
#[derive(Debug)]
pub struct DecodeJob<'a> {
    pub decoder: &'a mut VideoDecoder,
    pub access_unit: &'a [u8],
    /// Filled in by [`decode_many`]: what [`VideoDecoder::decode`] said.
    pub result: Option<Result<Option<I420Frame>, Error>>,
}

impl<'a> DecodeJob<'a> {
    pub fn new(decoder: &'a mut VideoDecoder, access_unit: &'a [u8]) -> Self {
        DecodeJob {
            decoder,
            access_unit,
            result: None,
        }
    }
}

/// Decodes a tick's access units (one per source, each with its own
/// decoder) on up to `threads` threads, the calling thread included, and
/// returns when all are done; each job's `result` is set. A 20-party
/// conference decodes its visible sources this way when one core cannot
/// both decode and encode a tick in time. Sans-IO like the rest: scoped
/// threads, nothing outlives the call.
pub fn decode_many(jobs: &mut [DecodeJob<'_>], threads: usize) {
    let mut workers = vec![(); threads.max(1)];
    super::parallel::run(
        &mut workers,
        jobs,
        // Work grows with the bits to parse (an IDR costs more).
        |job| job.access_unit.len() as u64,
        |(), job| job.result = Some(job.decoder.decode(job.access_unit)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::frame::{Rect, Rgb};

    fn nal_type(nal: &[u8]) -> u8 {
        nal[0] & 0x1f
    }

    #[test]
    fn video_codec_round_trip_keeps_colour() {
        let mut enc = VideoEncoder::new(EncoderSettings::new(320, 180, 30.0, 300_000)).unwrap();
        let mut dec = VideoDecoder::new().unwrap();
        let mut frame = I420Frame::solid(320, 180, Rgb::BLUE).unwrap();
        frame.fill_rect(Rect::new(0, 0, 160, 90), Rgb::RED);
        let mut decoded = None;
        for i in 0..5 {
            let out = enc.encode(&frame, false).unwrap();
            assert_eq!(out.keyframe, i == 0, "only the first frame is a keyframe");
            decoded = dec.decode(&out.annexb).unwrap().or(decoded);
        }
        let decoded = decoded.expect("a picture");
        assert_eq!((decoded.width(), decoded.height()), (320, 180));
        let red = decoded.average_rgb_in(Rect::new(0, 0, 160, 90).centre(0.8));
        let blue = decoded.average_rgb_in(Rect::new(160, 90, 160, 90).centre(0.8));
        assert!(red.distance(Rgb::RED) <= 24, "{red:?}");
        assert!(blue.distance(Rgb::BLUE) <= 24, "{blue:?}");
    }

    #[test]
    fn video_keyframe_on_demand_carries_parameter_sets() {
        let mut enc = VideoEncoder::new(EncoderSettings::new(160, 90, 30.0, 100_000)).unwrap();
        let frame = I420Frame::solid(160, 90, Rgb::GREEN).unwrap();
        let first = enc.encode(&frame, false).unwrap();
        let types: Vec<u8> = first.nal_units().iter().map(|n| nal_type(n)).collect();
        assert!(
            types.contains(&7) && types.contains(&8) && types.contains(&5),
            "{types:?}"
        );
        // Constrained Baseline: profile_idc 66 with constraint_set1.
        let sps = first
            .nal_units()
            .into_iter()
            .find(|n| nal_type(n) == 7)
            .unwrap();
        assert_eq!(sps[1], 66, "profile_idc");
        assert_ne!(sps[2] & 0x40, 0, "constraint_set1_flag");

        let delta = enc.encode(&frame, false).unwrap();
        assert!(!delta.keyframe);
        let forced = enc.encode(&frame, true).unwrap();
        assert!(forced.keyframe);
        assert!(forced.nal_units().iter().any(|n| nal_type(n) == 5));
    }

    #[test]
    fn video_max_slice_bytes_bounds_nal_units() {
        let mut settings = EncoderSettings::new(640, 360, 30.0, 2_000_000);
        settings.max_slice_bytes = Some(1100);
        let mut enc = VideoEncoder::new(settings).unwrap();
        // Noise makes a big IDR that has to be sliced.
        let mut frame = I420Frame::black(640, 360).unwrap();
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for p in frame.planes_mut().0.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *p = (x >> 56) as u8;
        }
        let out = enc.encode(&frame, false).unwrap();
        let nals = out.nal_units();
        assert!(nals.len() > 2, "sliced into several NAL units");
        for nal in nals {
            assert!(nal.len() <= 1100, "NAL of {} bytes", nal.len());
        }
    }

    #[test]
    fn video_encoder_rejects_wrong_sizes() {
        assert!(VideoEncoder::new(EncoderSettings::new(321, 180, 30.0, 1000)).is_err());
        assert!(VideoEncoder::new(EncoderSettings::new(320, 180, 0.0, 1000)).is_err());
        let mut enc = VideoEncoder::new(EncoderSettings::new(320, 180, 30.0, 100_000)).unwrap();
        let wrong = I420Frame::black(160, 90).unwrap();
        assert!(matches!(
            enc.encode(&wrong, false),
            Err(Error::InvalidFrame(_))
        ));
    }

    #[test]
    fn video_decoder_survives_garbage() {
        let mut dec = VideoDecoder::new().unwrap();
        assert!(dec.decode(&[]).is_err());
        assert!(dec.decode(&[1, 2, 3, 4]).is_err());
        assert!(dec.decode(&[0, 0, 1, 0x80]).is_err());
        // Random bytes behind a start code, and truncated real streams: an
        // error or no picture, never a panic.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for len in [1usize, 2, 7, 64, 1000] {
            for nal_header in [0x67u8, 0x68, 0x65, 0x41, 0x06] {
                let mut buf = vec![0, 0, 0, 1, nal_header];
                for _ in 0..len {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    buf.push((x >> 56) as u8);
                }
                let _ = dec.decode(&buf);
            }
        }
        let mut enc = VideoEncoder::new(EncoderSettings::new(160, 90, 30.0, 100_000)).unwrap();
        let good = enc
            .encode(&I420Frame::solid(160, 90, Rgb::RED).unwrap(), false)
            .unwrap();
        let mut dec = VideoDecoder::new().unwrap();
        for cut in [5, good.annexb.len() / 3, good.annexb.len() / 2] {
            let _ = dec.decode(&good.annexb[..cut]);
        }
        // And a fresh decoder still decodes the whole thing.
        let mut dec = VideoDecoder::new().unwrap();
        assert!(dec.decode(&good.annexb).unwrap().is_some());
    }

    #[test]
    fn video_decode_many_matches_one_by_one() {
        let colours = [Rgb::RED, Rgb::GREEN, Rgb::BLUE, Rgb::YELLOW, Rgb::WHITE];
        let streams: Vec<Vec<Vec<u8>>> = colours
            .iter()
            .map(|&c| {
                let mut enc =
                    VideoEncoder::new(EncoderSettings::new(160, 90, 30.0, 200_000)).unwrap();
                let pic = I420Frame::solid(160, 90, c).unwrap();
                (0..3)
                    .map(|_| enc.encode(&pic, false).unwrap().annexb)
                    .collect()
            })
            .collect();
        for threads in [1, 2, 4] {
            let mut decoders: Vec<VideoDecoder> = colours
                .iter()
                .map(|_| VideoDecoder::new().unwrap())
                .collect();
            for t in 0..3 {
                let mut jobs: Vec<DecodeJob<'_>> = decoders
                    .iter_mut()
                    .zip(&streams)
                    .map(|(d, s)| DecodeJob::new(d, &s[t]))
                    .collect();
                decode_many(&mut jobs, threads);
                for (job, &c) in jobs.into_iter().zip(&colours) {
                    let pic = job.result.unwrap().unwrap().unwrap();
                    let got = pic.average_rgb_in(Rect::new(0, 0, 160, 90));
                    assert!(
                        got.distance(c) <= 24,
                        "{threads} threads: {got:?} for {c:?}"
                    );
                }
            }
        }
        // Garbage is an error for that job only.
        let mut a = VideoDecoder::new().unwrap();
        let mut b = VideoDecoder::new().unwrap();
        let mut jobs = [
            DecodeJob::new(&mut a, &[1, 2, 3]),
            DecodeJob::new(&mut b, &streams[0][0]),
        ];
        decode_many(&mut jobs, 2);
        assert!(matches!(jobs[0].result, Some(Err(_))));
        assert!(matches!(jobs[1].result, Some(Ok(Some(_)))));
    }

    #[test]
    fn video_split_annexb_handles_both_start_codes() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4,
        ];
        let units = split_annexb(&data);
        assert_eq!(
            units,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4][..]]
        );
        assert!(split_annexb(&[0, 0, 0]).is_empty());
    }
}
