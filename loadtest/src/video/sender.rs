//! The sending half of a room system's video, as a sans-IO core: ticks and
//! RTCP feedback in (each with the time), RTP datagrams out.
//!
//! Three sources. **Live** encodes the configured colour with a small square
//! moving along the bottom edge (so consecutive pictures differ and P-frames
//! carry something) on every tick; **Clock** encodes the tick's wall-clock
//! time as [`super::clock`]'s pattern. **Replay** sends the packets of a
//! [`VideoClip`] encoded once, rewriting SSRC, sequence number and timestamp,
//! so a load run of hundreds of legs costs packet copies, not encodes.
//!
//! Keyframes: the first picture is one; after that only on request. A PLI
//! for our SSRC, or a FIR entry for our SSRC with a sequence number we have
//! not seen from that requester, makes the next picture an IDR (requests
//! arriving before it are served by the same IDR). While paused, a request
//! waits for the resume. RTP timestamps follow the wall clock at 90 kHz
//! from the first tick, so a pause shows as a jump, as with a real camera.
//!
//! Bitrate limits: a TMMBR for our SSRC makes the camera step its picture
//! size down (or back up) the way room systems do, by
//! [`size_for_limit`], switching on an IDR, and is answered with a TMMBN.
//! A replayed clip switches to its rendition of that size, if it has one.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::clip::VideoClip;
use super::clock::{self, WallClock};
use super::codec::H264Encoder;
use super::h264::{self, Packetizer, PayloadUnit};
use super::picture::{Picture, Rgb};
use super::rtcp::Feedback;
use super::{VideoSource, VideoSpec};
use crate::error::Result;
use crate::rtp::{self, RtpHeader};

/// The RTP clock rate of video (RFC 6184 §8.2.1).
pub const VIDEO_CLOCK_RATE: u32 = 90_000;

/// What the sending half has done and been asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Pictures sent (each one access unit).
    pub frames: u64,
    /// Of those, IDR pictures.
    pub keyframes: u64,
    pub packets: u64,
    pub bytes: u64,
    /// PLIs naming our SSRC.
    pub pli_received: u64,
    /// FIR entries naming our SSRC (repeats of one request included).
    pub fir_received: u64,
    /// Generic NACKs naming our SSRC (we do not retransmit).
    pub nack_received: u64,
    /// Feedback naming some other SSRC: not for us, ignored.
    pub feedback_for_others: u64,
    /// Pictures the encoder refused (our fault, not the node's).
    pub encode_errors: u64,
    /// TMMBR entries naming our SSRC.
    pub tmmbr_received: u64,
    /// The bitrate limit in force (the last TMMBR's), bit/s.
    pub limit_bps: Option<u64>,
    /// The size of the pictures we send now.
    pub width: u32,
    pub height: u32,
}

/// The picture size a camera of `native` size sends under a bitrate limit,
/// stepping down as room systems do: 720p wants about 1 Mbit/s, 360p about
/// 400 kbit/s, below that 180p. Never above the native size; the aspect
/// ratio is kept.
pub fn size_for_limit(native: (u32, u32), limit_bps: Option<u64>) -> (u32, u32) {
    let max_height = match limit_bps {
        None => return native,
        Some(b) if b >= 1_000_000 => 720,
        Some(b) if b >= 400_000 => 360,
        Some(_) => 180,
    };
    let (w, h) = native;
    if h <= max_height {
        return native;
    }
    let width = (u64::from(w) * u64::from(max_height) / u64::from(h)) as u32 & !1;
    (width.max(2), max_height)
}

enum Source {
    Live {
        /// Boxed: OpenH264's output descriptor lives inline (kilobytes).
        encoder: Box<H264Encoder>,
        picture: Picture,
        colour: Rgb,
        count: u64,
        spec: VideoSpec,
        /// Paint the capture time ([`super::clock`]) instead of the colour.
        clock: Option<WallClock>,
    },
    Replay {
        clip: Arc<VideoClip>,
        /// Which rendition of the clip plays (0: the clip itself).
        rendition: usize,
        /// The clip frame sent next; 0 is the clip's IDR.
        next: usize,
        /// Which of the clip's two IDR encodings goes out next. Alternating
        /// keeps two IDRs in a row (a PLI just after one) from carrying the
        /// same `idr_pic_id`, which a decoder may take for one picture.
        second_idr: bool,
    },
}

impl Source {
    fn live(spec: &VideoSpec, clock: Option<WallClock>) -> Result<Source> {
        Ok(Source::Live {
            encoder: Box::new(H264Encoder::new(
                spec.width,
                spec.height,
                spec.fps,
                spec.bitrate_bps,
            )?),
            picture: Picture::solid(spec.width, spec.height, spec.colour)?,
            colour: spec.colour,
            count: 0,
            spec: *spec,
            clock,
        })
    }
}

/// See the module docs.
pub struct VideoSender {
    source: Source,
    packetizer: Packetizer,
    header: RtpHeader,
    /// Wall time and RTP timestamp of the first tick.
    origin: Option<(Instant, u32)>,
    base_timestamp: u32,
    paused: bool,
    keyframe_wanted: bool,
    /// Last FIR sequence number per requesting SSRC.
    fir_seen: Vec<(u32, u8)>,
    queue: VecDeque<Vec<u8>>,
    /// RTCP we send as a sender (TMMBN).
    rtcp: VecDeque<Vec<u8>>,
    annexb: Vec<u8>,
    units: Vec<PayloadUnit>,
    stats: SenderStats,
}

impl std::fmt::Debug for VideoSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoSender")
            .field("header", &self.header)
            .field("paused", &self.paused)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Paints the live picture: the colour, and a square in the complementary
/// colour moving along the bottom tenth (measure colours above it).
fn draw_live(picture: &mut Picture, colour: Rgb, count: u64) {
    let (w, h) = (picture.width(), picture.height());
    let side = (h / 10).max(2) & !1;
    picture.fill_rect(0, h - side, w, side, colour);
    let travel = u64::from(w.saturating_sub(side).max(1));
    let step = u64::from((w / 64).max(2));
    let x = ((count * step) % travel) as u32 & !1;
    let inverse = (255 - colour.0, 255 - colour.1, 255 - colour.2);
    picture.fill_rect(x, h - side, side, side, inverse);
}

impl VideoSender {
    /// `payload_type` is what we offered; [`VideoSender::set_payload_type`]
    /// changes it to what the answer chose. SSRC and first sequence number
    /// come from the caller (random in a call, fixed in a test).
    pub fn new(
        source: &VideoSource,
        payload_type: u8,
        ssrc: u32,
        sequence: u16,
        base_timestamp: u32,
    ) -> Result<VideoSender> {
        let source = match source {
            VideoSource::Live(spec) => Source::live(spec, None)?,
            VideoSource::Clock { spec, clock } => Source::live(spec, Some(*clock))?,
            VideoSource::Replay(clip) => Source::Replay {
                clip: clip.clone(),
                rendition: 0,
                next: 0,
                second_idr: false,
            },
        };
        let native = source_spec(&source);
        Ok(VideoSender {
            source,
            packetizer: Packetizer::default(),
            header: RtpHeader {
                payload_type,
                marker: false,
                sequence,
                timestamp: base_timestamp,
                ssrc,
            },
            origin: None,
            base_timestamp,
            paused: false,
            keyframe_wanted: true,
            fir_seen: Vec::new(),
            queue: VecDeque::new(),
            rtcp: VecDeque::new(),
            annexb: Vec::new(),
            units: Vec::new(),
            stats: SenderStats {
                width: native.width,
                height: native.height,
                ..SenderStats::default()
            },
        })
    }

    pub fn ssrc(&self) -> u32 {
        self.header.ssrc
    }

    pub fn set_payload_type(&mut self, payload_type: u8) {
        self.header.payload_type = payload_type;
    }

    /// Stops (or resumes) sending pictures: a source that freezes mid-call.
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// Changes the live picture's colour from the next tick (no effect on a
    /// replayed clip).
    pub fn set_colour(&mut self, colour: Rgb) {
        if let Source::Live {
            picture,
            colour: current,
            spec,
            ..
        } = &mut self.source
            && let Ok(fresh) = Picture::solid(picture.width(), picture.height(), colour)
        {
            *picture = fresh;
            *current = colour;
            spec.colour = colour;
        }
    }

    pub fn stats(&self) -> SenderStats {
        self.stats
    }

    /// Makes the next picture an IDR, as a camera does when it starts to
    /// send again (a presentation that resumes on a new grant).
    pub fn request_keyframe(&mut self) {
        self.keyframe_wanted = true;
    }

    /// Whether the next picture will be an IDR.
    pub fn keyframe_pending(&self) -> bool {
        self.keyframe_wanted
    }

    /// Acts on one feedback message (see the module docs).
    pub fn handle_feedback(&mut self, feedback: &Feedback) {
        let ours = self.header.ssrc;
        match feedback {
            Feedback::Pli { media, .. } if *media == ours => {
                self.stats.pli_received += 1;
                self.keyframe_wanted = true;
            }
            Feedback::Fir { sender, entries } => {
                let mut for_us = false;
                for &(_, sequence) in entries.iter().filter(|(s, _)| *s == ours) {
                    for_us = true;
                    self.stats.fir_received += 1;
                    match self.fir_seen.iter_mut().find(|(s, _)| s == sender) {
                        Some((_, last)) if *last == sequence => {}
                        Some((_, last)) => {
                            *last = sequence;
                            self.keyframe_wanted = true;
                        }
                        None => {
                            self.fir_seen.push((*sender, sequence));
                            self.keyframe_wanted = true;
                        }
                    }
                }
                if !for_us {
                    self.stats.feedback_for_others += 1;
                }
            }
            Feedback::Nack { media, .. } if *media == ours => self.stats.nack_received += 1,
            Feedback::Tmmbr { sender, entries } => match entries.iter().find(|(s, _)| *s == ours) {
                Some(&(_, bps)) => self.apply_limit(*sender, bps),
                None => self.stats.feedback_for_others += 1,
            },
            _ => self.stats.feedback_for_others += 1,
        }
    }

    /// A TMMBR from `requester`: send at most `bps`, at the size that fits,
    /// and say so with a TMMBN.
    fn apply_limit(&mut self, requester: u32, bps: u64) {
        self.stats.tmmbr_received += 1;
        self.stats.limit_bps = Some(bps);
        let mut reply = Vec::with_capacity(64);
        super::rtcp::write_tmmbn(self.header.ssrc, requester, bps, "", &mut reply);
        self.rtcp.push_back(reply);
        let (w, h) = match &mut self.source {
            Source::Live {
                encoder,
                picture,
                spec,
                ..
            } => {
                let (w, h) = size_for_limit((spec.width, spec.height), Some(bps));
                if (w, h) != (picture.width(), picture.height()) {
                    let rate = u64::from(spec.bitrate_bps).min(bps) as u32;
                    match (
                        H264Encoder::new(w, h, spec.fps, rate.max(10_000)),
                        Picture::solid(w, h, spec.colour),
                    ) {
                        (Ok(e), Ok(p)) => {
                            **encoder = e;
                            *picture = p;
                            self.keyframe_wanted = true;
                        }
                        _ => self.stats.encode_errors += 1,
                    }
                }
                (picture.width(), picture.height())
            }
            Source::Replay {
                clip,
                rendition,
                next,
                ..
            } => {
                let want = clip.rendition_for(Some(bps));
                if want != *rendition {
                    *rendition = want;
                    *next = 0;
                    self.keyframe_wanted = true;
                }
                let spec = clip.rendition(*rendition).spec();
                (spec.width, spec.height)
            }
        };
        self.stats.width = w;
        self.stats.height = h;
    }

    /// One picture's worth of packets at `now` (nothing while paused).
    pub fn handle_tick(&mut self, now: Instant) {
        if self.paused {
            return;
        }
        let (origin, base) = *self.origin.get_or_insert((now, self.base_timestamp));
        let ticks = now.saturating_duration_since(origin).as_nanos() * u128::from(VIDEO_CLOCK_RATE)
            / 1_000_000_000;
        self.header.timestamp = base.wrapping_add(ticks as u32);

        self.units.clear();
        let keyframe = match &mut self.source {
            Source::Live {
                encoder,
                picture,
                colour,
                count,
                clock,
                ..
            } => {
                match clock {
                    Some(clock) => clock::paint_clock(picture, clock.unix_ms(now)),
                    None => draw_live(picture, *colour, *count),
                }
                *count += 1;
                match encoder.encode(picture, self.keyframe_wanted, &mut self.annexb) {
                    Ok(keyframe) => {
                        let nals = h264::split_annexb(&self.annexb);
                        self.packetizer.packetize(&nals, &mut self.units);
                        keyframe
                    }
                    Err(_) => {
                        self.stats.encode_errors += 1;
                        return;
                    }
                }
            }
            Source::Replay {
                clip,
                rendition,
                next,
                second_idr,
            } => {
                let clip = clip.rendition(*rendition);
                let frame = if self.keyframe_wanted || *next == 0 {
                    *next = 1;
                    let use_second = *second_idr;
                    *second_idr = !use_second;
                    clip.keyframe(use_second)
                } else {
                    let f = clip.frame(*next);
                    *next = (*next + 1) % clip.len();
                    f
                };
                self.units.extend_from_slice(&frame.units);
                frame.keyframe
            }
        };
        if self.units.is_empty() {
            return;
        }
        if keyframe {
            self.keyframe_wanted = false;
            self.stats.keyframes += 1;
        }
        self.stats.frames += 1;
        for unit in &self.units {
            self.header.marker = unit.marker;
            let mut packet = Vec::with_capacity(12 + unit.payload.len());
            rtp::write_packet(&self.header, &unit.payload, &mut packet);
            self.stats.packets += 1;
            self.stats.bytes += packet.len() as u64;
            self.queue.push_back(packet);
            self.header.sequence = self.header.sequence.wrapping_add(1);
        }
    }

    /// The next RTP datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.queue.pop_front()
    }

    /// The next RTCP datagram the sender has to say (TMMBN).
    pub fn poll_rtcp(&mut self) -> Option<Vec<u8>> {
        self.rtcp.pop_front()
    }
}

fn source_spec(source: &Source) -> VideoSpec {
    match source {
        Source::Live { spec, .. } => *spec,
        Source::Replay { clip, .. } => *clip.spec(),
    }
}
