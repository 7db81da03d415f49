//! H.264 video for room systems, as a VTC has it: a camera picture encoded
//! with OpenH264, RFC 6184 packetization (mode 1), RFC 4585/5104 keyframe
//! requests, and a decoder whose last picture a test can look at.
//!
//! ## Layout
//! - [`picture`]: [`Picture`] (I420) and perception on it —
//!   [`Picture::average_colour`] over a rectangle in fractions of the
//!   picture, PPM snapshots.
//! - [`codec`]: OpenH264 encoder and decoder set up as a VTC's.
//! - [`h264`]: the RTP payload format (single NAL unit, STAP-A, FU-A), both
//!   ways; written from the RFC, not shared with the bridge.
//! - [`rtcp`]: PLI and FIR, written as compound RTCP and read from any.
//! - [`sender`], [`receiver`]: the two halves of a leg's video as sans-IO
//!   cores (time and datagrams in, datagrams and pictures out). The
//!   [`RoomSystem`](crate::RoomSystem) driver owns one of each next to the
//!   video socket.
//! - [`clip`]: [`VideoClip`], encoded once and replayed by many legs in load
//!   runs.
//! - [`clock`]: a camera picture that shows its capture time (a grid of
//!   black and white cells) and its reader: glass-to-glass delay.
//!
//! A picture's path: `sender` paints and encodes → `h264::Packetizer` → RTP
//! → the node; back: RTP → `h264::Depacketizer` (gaps drop the access unit)
//! → `codec::H264Decoder` → `receiver` keeps the newest picture →
//! `RoomSystem::seen()` / `seen_colour()`. Feedback: the receiver writes a PLI
//! when it needs a keyframe; the sender reads PLI/FIR and makes the next
//! picture an IDR.

pub mod clip;
pub mod clock;
pub mod codec;
pub mod h264;
pub mod picture;
pub mod receiver;
pub mod rtcp;
pub mod sender;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use clip::VideoClip;
pub use clock::WallClock;
pub use picture::{Picture, Rgb};
pub use receiver::{ReceiverStats, VideoReceiver};
pub use rtcp::KeyframeRequest;
pub use sender::{SenderStats, VideoSender};

use crate::error::{Error, Result};
use crate::sdp::VideoAnswer;

/// What a room system's camera shows and how it is sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoSpec {
    /// The picture's colour (a small square in the complementary colour moves
    /// along the bottom tenth).
    pub colour: Rgb,
    /// Even, 2..=4096.
    pub width: u32,
    /// Even, 2..=4096.
    pub height: u32,
    pub fps: f32,
    /// The encoder's target, and the offer's `b=AS`.
    pub bitrate_bps: u32,
}

impl VideoSpec {
    /// 320x180 at 15 fps, 300 kbit/s: enough to see a colour in a pane, and
    /// cheap to encode on a machine shared with the node under test.
    pub fn new(colour: Rgb) -> Self {
        VideoSpec {
            colour,
            width: 320,
            height: 180,
            fps: 15.0,
            bitrate_bps: 300_000,
        }
    }

    pub fn with_size(mut self, width: u32, height: u32) -> Self {
        self.width = width;
        self.height = height;
        self
    }

    pub fn with_fps(mut self, fps: f32) -> Self {
        self.fps = fps;
        self
    }

    pub fn with_bitrate(mut self, bitrate_bps: u32) -> Self {
        self.bitrate_bps = bitrate_bps;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let even = |s: u32| s >= 2 && s.is_multiple_of(2) && s <= picture::MAX_SIDE;
        if !even(self.width) || !even(self.height) {
            return Err(Error::Config(format!(
                "video {}x{}: sides must be even, 2..={}",
                self.width,
                self.height,
                picture::MAX_SIDE
            )));
        }
        if !(self.fps.is_finite() && self.fps > 0.0 && self.fps <= 120.0) {
            return Err(Error::Config(format!("video at {} fps", self.fps)));
        }
        if self.bitrate_bps < 10_000 {
            return Err(Error::Config(format!(
                "video at {} bit/s (at least 10 kbit/s)",
                self.bitrate_bps
            )));
        }
        Ok(())
    }

    /// Time between pictures.
    pub fn frame_interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(self.fps))
    }
}

/// Where a leg's pictures come from.
#[derive(Debug, Clone)]
pub enum VideoSource {
    /// Encoded live on every tick (tests).
    Live(VideoSpec),
    /// A clip encoded once, shared by many legs (load runs).
    Replay(Arc<VideoClip>),
    /// Encoded live, showing the capture time as [`clock`]'s pattern
    /// (glass-to-glass benchmarks).
    Clock { spec: VideoSpec, clock: WallClock },
}

impl VideoSource {
    pub fn spec(&self) -> &VideoSpec {
        match self {
            VideoSource::Live(spec) | VideoSource::Clock { spec, .. } => spec,
            VideoSource::Replay(clip) => clip.spec(),
        }
    }
}

/// The video side of one leg.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VideoStats {
    /// What the answer accepted; `None` until answered, or when video was
    /// not offered.
    pub answer: Option<VideoAnswer>,
    pub sent: SenderStats,
    pub received: ReceiverStats,
    /// Datagrams on the video port that were neither RTP nor RTCP we could
    /// parse.
    pub malformed_datagrams: u64,
    /// INVITE sent → first video packet received.
    pub first_packet_latency: Option<Duration>,
    /// INVITE sent → first picture decoded.
    pub first_picture_latency: Option<Duration>,
    /// When the newest picture was decoded.
    pub last_picture_at: Option<Instant>,
}

#[cfg(test)]
mod tests {
    //! The two cores wired back to back through a lossy in-memory link, on
    //! simulated time: no sockets, no sleeping, the same result every run.

    use std::time::Instant;

    use super::picture::colour_distance;
    use super::rtcp::Feedback;
    use super::*;
    use crate::rtp;

    struct Link {
        sender: VideoSender,
        receiver: VideoReceiver,
        now: Instant,
        interval: Duration,
        /// Indexes (in send order) of packets to lose.
        lose: Vec<u64>,
        /// Lose every packet of the next step.
        lose_step: bool,
        sent: u64,
    }

    impl Link {
        fn new(source: VideoSource, decode: bool) -> Link {
            let interval = source.spec().frame_interval();
            let mut sender = VideoSender::new(&source, 96, 0xAAAA, 65_500, 7).expect("sender");
            sender.set_payload_type(96);
            let mut receiver = VideoReceiver::new(0xBBBB, "rx@test", decode).expect("receiver");
            receiver.set_payload_type(96);
            Link {
                sender,
                receiver,
                now: Instant::now(),
                interval,
                lose: Vec::new(),
                lose_step: false,
                sent: 0,
            }
        }

        /// Advances one picture: tick, deliver RTP, deliver RTCP back.
        fn step(&mut self) {
            self.now += self.interval;
            self.sender.handle_tick(self.now);
            let lose_all = std::mem::take(&mut self.lose_step);
            while let Some(packet) = self.sender.poll_transmit() {
                let index = self.sent;
                self.sent += 1;
                if lose_all || self.lose.contains(&index) {
                    continue;
                }
                let parsed = rtp::parse(&packet).expect("our RTP parses");
                self.receiver
                    .handle_rtp(self.now, &parsed.header, parsed.payload, packet.len());
            }
            while let Some(rtcp) = self.receiver.poll_transmit() {
                for fb in rtcp::parse_feedback(&rtcp).expect("our RTCP parses") {
                    self.sender.handle_feedback(&fb);
                }
            }
        }
    }

    #[test]
    fn live_video_is_seen_and_loss_is_repaired_by_one_pli() {
        let spec = VideoSpec::new((30, 160, 220)).with_size(160, 96);
        let mut link = Link::new(VideoSource::Live(spec), true);
        for _ in 0..5 {
            link.step();
        }
        let r = link.receiver.stats();
        assert_eq!(
            (r.frames_decoded, r.keyframes, r.pli_sent),
            (5, 1, 0),
            "{r:?}"
        );
        assert_eq!(r.frame_size, Some((160, 96)));
        let picture = link.receiver.poll_picture().expect("a picture");
        let seen = picture.average_colour(0.0, 0.0, 1.0, 0.85).expect("colour");
        assert!(colour_distance(seen, spec.colour) <= 10, "{seen:?}");

        // Lose a whole picture. The next one shows the gap: it is dropped and
        // a PLI goes back; the picture after that is an IDR and decoding
        // resumes.
        link.lose_step = true;
        link.step();
        assert_eq!(link.receiver.stats().pli_sent, 0);
        link.step();
        let r = link.receiver.stats();
        assert_eq!((r.access_units_dropped, r.pli_sent), (1, 1), "{r:?}");
        assert!(r.packets_lost >= 1, "{r:?}");
        assert!(link.sender.keyframe_pending());
        assert_eq!(link.sender.stats().pli_received, 1);
        link.step();
        let (s, r) = (link.sender.stats(), link.receiver.stats());
        assert_eq!((s.keyframes, r.keyframes), (2, 2), "{s:?} {r:?}");
        assert_eq!(r.frames_decoded, 6);
        assert_eq!(r.decode_errors, 0);
    }

    #[test]
    fn a_receiver_joining_mid_stream_asks_once_per_second() {
        let spec = VideoSpec::new((200, 200, 40))
            .with_size(64, 64)
            .with_fps(10.0);
        let mut link = Link::new(VideoSource::Live(spec), true);
        // The sender's first picture (the IDR) is lost, and its keyframe
        // requests are not delivered for two seconds: the receiver waits,
        // skipping pictures and asking at most once per second.
        link.lose.push(0);
        let mut requests = Vec::new();
        for _ in 0..20 {
            link.now += link.interval;
            link.sender.handle_tick(link.now);
            while let Some(p) = link.sender.poll_transmit() {
                let i = link.sent;
                link.sent += 1;
                if link.lose.contains(&i) {
                    continue;
                }
                let parsed = rtp::parse(&p).expect("parse");
                link.receiver
                    .handle_rtp(link.now, &parsed.header, parsed.payload, p.len());
            }
            while let Some(rtcp) = link.receiver.poll_transmit() {
                requests.push(rtcp);
            }
        }
        let r = link.receiver.stats();
        assert_eq!(r.frames_decoded, 0);
        assert!(link.receiver.waiting_for_keyframe());
        assert_eq!(r.pli_sent, 2, "once per second over 2 s: {r:?}");
        assert_eq!(requests.len(), 2);
        // Now deliver one: the next picture is an IDR, and it decodes.
        for fb in rtcp::parse_feedback(&requests[1]).expect("parse") {
            link.sender.handle_feedback(&fb);
        }
        link.step();
        assert_eq!(link.receiver.stats().frames_decoded, 1);
        assert!(!link.receiver.waiting_for_keyframe());
    }

    #[test]
    fn fir_repeats_are_one_request_and_other_ssrcs_are_ignored() {
        let spec = VideoSpec::new((0, 0, 0)).with_size(64, 64);
        let mut link = Link::new(VideoSource::Live(spec), false);
        link.step();
        assert!(!link.sender.keyframe_pending());
        let fir = |seq| rtcp::Feedback::Fir {
            sender: 5,
            entries: vec![(0xAAAA, seq)],
        };
        link.sender.handle_feedback(&fir(1));
        link.step();
        link.sender.handle_feedback(&fir(1)); // a retransmission
        link.step();
        link.sender.handle_feedback(&rtcp::Feedback::Pli {
            sender: 5,
            media: 0x1234,
        });
        link.step();
        let s = link.sender.stats();
        assert_eq!(
            (s.keyframes, s.fir_received, s.feedback_for_others),
            (2, 2, 1),
            "{s:?}"
        );
        link.sender.handle_feedback(&fir(2));
        link.step();
        assert_eq!(link.sender.stats().keyframes, 3);
        // Without a decoder the receiver still counts keyframes.
        assert_eq!(link.receiver.stats().keyframes, 3);
        assert_eq!(link.receiver.stats().frames_decoded, 0);
    }

    #[test]
    fn pause_stops_pictures_and_a_request_waits_for_the_resume() {
        let spec = VideoSpec::new((0, 255, 0)).with_size(64, 64);
        let mut link = Link::new(VideoSource::Live(spec), true);
        link.step();
        link.sender.set_paused(true);
        link.sender.handle_feedback(&rtcp::Feedback::Pli {
            sender: 1,
            media: 0xAAAA,
        });
        for _ in 0..5 {
            link.step();
        }
        assert_eq!(link.sender.stats().frames, 1);
        link.sender.set_paused(false);
        link.step();
        let s = link.sender.stats();
        assert_eq!((s.frames, s.keyframes), (2, 2));
        assert_eq!(link.receiver.stats().frames_decoded, 2);
    }

    #[test]
    fn tmmbr_steps_the_picture_down_and_back_up_on_an_idr() {
        let tmmbr = |bps: u64| Feedback::Tmmbr {
            sender: 0xBBBB,
            entries: vec![(0xAAAA, bps)],
        };
        let spec = VideoSpec::new((30, 160, 220))
            .with_size(640, 360)
            .with_bitrate(600_000);
        let mut link = Link::new(VideoSource::Live(spec), true);
        link.step();
        assert_eq!(link.receiver.stats().frame_size, Some((640, 360)));
        link.sender.handle_feedback(&tmmbr(200_000));
        let reply = link.sender.poll_rtcp().expect("a TMMBN");
        assert!(crate::rtp::is_rtcp(&reply));
        link.step();
        let (s, r) = (link.sender.stats(), link.receiver.stats());
        assert_eq!((s.width, s.height, s.limit_bps), (320, 180, Some(200_000)));
        assert_eq!(r.frame_size, Some((320, 180)), "{r:?}");
        assert_eq!((s.keyframes, r.decode_errors), (2, 0));
        // Room again: the native size, on a fresh IDR.
        link.sender.handle_feedback(&tmmbr(2_000_000));
        link.step();
        assert_eq!(link.receiver.stats().frame_size, Some((640, 360)));
        assert_eq!(link.sender.stats().keyframes, 3);

        // A replayed 720p ladder: 360p under 600 kbit/s, 180p under 200.
        let clip = Arc::new(
            VideoClip::encode_ladder(&VideoSpec::new((200, 40, 40)).with_size(1280, 720), 4)
                .expect("clip"),
        );
        let mut link = Link::new(VideoSource::Replay(clip), true);
        link.step();
        assert_eq!(link.receiver.stats().frame_size, Some((1280, 720)));
        for (bps, size) in [
            (600_000, (640, 360)),
            (200_000, (320, 180)),
            (1_500_000, (1280, 720)),
        ] {
            link.sender.handle_feedback(&tmmbr(bps));
            link.step();
            link.step();
            assert_eq!(link.receiver.stats().frame_size, Some(size), "{bps}");
        }
        assert_eq!(link.receiver.stats().decode_errors, 0);
    }

    #[test]
    fn a_replayed_clip_decodes_and_answers_pli_with_alternate_idrs() {
        let spec = VideoSpec::new((220, 60, 60)).with_size(128, 72);
        let clip = Arc::new(VideoClip::encode(&spec, 6).expect("clip"));
        assert_eq!(clip.len(), 6);
        assert!(clip.encoded_bytes() > 0 && clip.packets() >= 6);
        let mut link = Link::new(VideoSource::Replay(clip.clone()), true);
        // Two passes: the loop restarts at the IDR.
        for _ in 0..12 {
            link.step();
        }
        let (s, r) = (link.sender.stats(), link.receiver.stats());
        assert_eq!((s.frames, s.keyframes), (12, 2), "{s:?}");
        assert_eq!((r.frames_decoded, r.decode_errors), (12, 0), "{r:?}");
        // Two PLIs in a row: two IDRs in a row, both decoded.
        for _ in 0..2 {
            link.receiver
                .request_keyframe(link.now, KeyframeRequest::Pli);
            while let Some(rtcp) = link.receiver.poll_transmit() {
                for fb in rtcp::parse_feedback(&rtcp).expect("parse") {
                    link.sender.handle_feedback(&fb);
                }
            }
            link.step();
        }
        let (s, r) = (link.sender.stats(), link.receiver.stats());
        assert_eq!((s.keyframes, r.keyframes, s.pli_received), (4, 4, 2));
        assert_eq!((r.frames_decoded, r.decode_errors), (14, 0), "{r:?}");
        let seen = link.receiver.poll_picture().expect("picture");
        assert_eq!((seen.width(), seen.height()), (128, 72));
        assert!(
            clip.raw_decode_streams_per_core(Duration::ZERO)
                .expect("baseline")
                > 0.0
        );
    }
}
