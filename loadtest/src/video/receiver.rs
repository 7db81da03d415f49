//! The receiving half of a room system's video, as a sans-IO core: RTP
//! packets in (with the time), decoded pictures and RTCP keyframe requests
//! out.
//!
//! It behaves as a careful VTC does. Until it holds a keyframe it decodes
//! nothing: the first access unit not being an IDR, a sequence gap (which
//! drops the access unit it hits), a malformed packet or a decode error all
//! put it into *waiting for a keyframe*, where it drops access units until an
//! IDR arrives and asks for one with a PLI — at most one per
//! [`KEYFRAME_REQUEST_INTERVAL`] — so a node that ignores PLI shows up as
//! `pli_sent` climbing once a second while `frames_decoded` stands still.
//!
//! Without a decoder (a load run's quiet legs) the same logic runs on the
//! NAL unit types alone: packets, access units and keyframes are counted,
//! and PLIs still go out.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::codec::H264Decoder;
use super::h264::{AccessUnit, Depacketized, Depacketizer};
use super::picture::Picture;
use super::rtcp::{self, KeyframeRequest};
use crate::error::Result;
use crate::rtp::{RtpHeader, SequenceTracker};

/// At most one automatic keyframe request per this interval.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_secs(1);

/// What the receiving half has seen and done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    pub packets: u64,
    pub bytes: u64,
    /// From sequence-number gaps (RFC 3550 A.3).
    pub packets_lost: u64,
    /// Packets behind the expected sequence number (late or duplicate).
    pub packets_late: u64,
    /// Packets of another payload type than the answer's H.264 one.
    pub unexpected_payload_type: u64,
    /// Packets that were not valid packetization-mode-1 H.264.
    pub malformed_packets: u64,
    /// Access units reassembled whole.
    pub access_units: u64,
    /// Access units lost to a gap or a malformed packet.
    pub access_units_dropped: u64,
    /// Whole access units not decoded because a keyframe was awaited.
    pub access_units_skipped: u64,
    /// Whole access units carrying an IDR.
    pub keyframes: u64,
    pub frames_decoded: u64,
    pub decode_errors: u64,
    pub pli_sent: u64,
    pub fir_sent: u64,
    /// Width and height of the last decoded picture.
    pub frame_size: Option<(u32, u32)>,
    /// The SSRC of the stream we receive.
    pub remote_ssrc: Option<u32>,
}

/// See the module docs.
pub struct VideoReceiver {
    /// Our own SSRC: the sender field of our RTCP.
    ssrc: u32,
    cname: String,
    payload_type: Option<u8>,
    depacketizer: Depacketizer,
    decoder: Option<H264Decoder>,
    sequence: SequenceTracker,
    waiting_for_keyframe: bool,
    last_request: Option<Instant>,
    fir_sequence: u8,
    picture: Option<Picture>,
    queue: VecDeque<Vec<u8>>,
    stats: ReceiverStats,
}

impl std::fmt::Debug for VideoReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoReceiver")
            .field("ssrc", &self.ssrc)
            .field("waiting_for_keyframe", &self.waiting_for_keyframe)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl VideoReceiver {
    /// `ssrc` is ours (our RTCP's sender), `cname` goes in its SDES. With
    /// `decode` false nothing is decoded (see the module docs).
    pub fn new(ssrc: u32, cname: impl Into<String>, decode: bool) -> Result<VideoReceiver> {
        Ok(VideoReceiver {
            ssrc,
            cname: cname.into(),
            payload_type: None,
            depacketizer: Depacketizer::new(),
            decoder: if decode {
                Some(H264Decoder::new()?)
            } else {
                None
            },
            sequence: SequenceTracker::default(),
            waiting_for_keyframe: true,
            last_request: None,
            fir_sequence: 0,
            picture: None,
            queue: VecDeque::new(),
            stats: ReceiverStats::default(),
        })
    }

    /// Accept only this payload type (the answer's H.264 one).
    pub fn set_payload_type(&mut self, payload_type: u8) {
        self.payload_type = Some(payload_type);
    }

    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    pub fn waiting_for_keyframe(&self) -> bool {
        self.waiting_for_keyframe
    }

    /// One RTP packet (already parsed; `size` is the datagram's length).
    pub fn handle_rtp(&mut self, now: Instant, header: &RtpHeader, payload: &[u8], size: usize) {
        self.stats.packets += 1;
        self.stats.bytes += size as u64;
        if self
            .payload_type
            .is_some_and(|pt| pt != header.payload_type)
        {
            self.stats.unexpected_payload_type += 1;
            return;
        }
        self.sequence.record(header.ssrc, header.sequence);
        self.stats.packets_lost = self.sequence.lost();
        self.stats.remote_ssrc = Some(header.ssrc);
        self.depacketizer.handle_packet(header, payload);
        self.stats.packets_late = self.depacketizer.late_packets();
        self.stats.malformed_packets = self.depacketizer.malformed_packets();
        while let Some(out) = self.depacketizer.poll() {
            match out {
                Depacketized::Complete(unit) => self.handle_access_unit(now, unit),
                Depacketized::Dropped { .. } => {
                    self.stats.access_units_dropped += 1;
                    self.waiting_for_keyframe = true;
                    self.ask_for_keyframe(now);
                }
            }
        }
    }

    fn handle_access_unit(&mut self, now: Instant, unit: AccessUnit) {
        self.stats.access_units += 1;
        if unit.keyframe {
            self.stats.keyframes += 1;
        }
        if self.waiting_for_keyframe && !unit.keyframe {
            self.stats.access_units_skipped += 1;
            self.ask_for_keyframe(now);
            return;
        }
        let Some(decoder) = self.decoder.as_mut() else {
            self.waiting_for_keyframe = false;
            return;
        };
        match decoder.decode(&unit.annexb) {
            Ok(Some(picture)) => {
                self.waiting_for_keyframe = false;
                self.stats.frames_decoded += 1;
                self.stats.frame_size = Some((picture.width(), picture.height()));
                self.picture = Some(picture);
            }
            Ok(None) => self.waiting_for_keyframe = false,
            Err(_) => {
                self.stats.decode_errors += 1;
                self.waiting_for_keyframe = true;
                self.ask_for_keyframe(now);
            }
        }
    }

    /// A rate-limited PLI for the stream we receive.
    fn ask_for_keyframe(&mut self, now: Instant) {
        if self
            .last_request
            .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_REQUEST_INTERVAL)
        {
            return;
        }
        self.request_keyframe(now, KeyframeRequest::Pli);
    }

    /// Sends a PLI or a FIR (with a fresh sequence number) now, outside the
    /// rate limit: a test's explicit request. Nothing happens before the
    /// first packet names the SSRC to ask.
    pub fn request_keyframe(&mut self, now: Instant, kind: KeyframeRequest) {
        let Some(media) = self.stats.remote_ssrc else {
            return;
        };
        let mut packet = Vec::with_capacity(64);
        match kind {
            KeyframeRequest::Pli => {
                rtcp::write_pli(self.ssrc, media, &self.cname, &mut packet);
                self.stats.pli_sent += 1;
            }
            KeyframeRequest::Fir => {
                self.fir_sequence = self.fir_sequence.wrapping_add(1);
                rtcp::write_fir(
                    self.ssrc,
                    media,
                    self.fir_sequence,
                    &self.cname,
                    &mut packet,
                );
                self.stats.fir_sent += 1;
            }
        }
        self.last_request = Some(now);
        self.queue.push_back(packet);
    }

    /// The newest decoded picture since the last call.
    pub fn poll_picture(&mut self) -> Option<Picture> {
        self.picture.take()
    }

    /// The next RTCP datagram to send to the stream's sender.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.queue.pop_front()
    }
}
