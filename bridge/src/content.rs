//! A conference's content channel: the presenter's slides relayed to every
//! other room system's content m-line (`a=content:slides`).
//!
//! Content is routed, not mixed: whoever holds the floor (see
//! [`crate::bfcp`]) sends H.264 and everyone else receives those very
//! packets, so it costs no decode and no encode however many watch. The
//! relay is one outgoing stream per conference: its own SSRC, with
//! sequence numbers and timestamps that run on across presenters, so a
//! receiver sees one stream whose picture changes, never a new source. Each
//! receiver's copy differs only in its payload type.
//!
//! Keyframes: a new presenter is asked for one at once (PLI, and FIR when
//! it offered it), and nothing of its stream is relayed until one arrives,
//! so receivers never decode a picture that references another
//! presenter's. A receiver's PLI or FIR goes to the presenter, rate-limited.
//!
//! Runs on the conference's video thread, beside the people video.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use prometheus::IntCounter;
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tracing::{debug, info};

use tandem_mixer::ParticipantId;
use tandem_proto::rtp::h264::{H264Depacketizer, starts_keyframe};
use tandem_proto::rtp::packet::{RtpPacket, Ssrc, is_rtcp};
use tandem_proto::rtp::rtcp;
use tandem_proto::rtp::stats::ReceiveStats;
use tandem_proto::sdp::VideoStream;

use crate::metrics::Metrics;
use crate::rtcp_report;

const RTCP_INTERVAL: Duration = Duration::from_secs(5);
/// Least time between two keyframe requests to the presenter.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);
/// Timestamp step between the last packet of one presenter and the first of
/// the next (one frame at 30 fps).
const SWITCH_TS_STEP: u32 = 3000;

/// A content channel as handed to the video thread, its readers running.
pub struct ContentStart {
    pub participant: ParticipantId,
    pub stream: VideoStream,
    pub port: u16,
    pub rtp: Arc<UdpSocket>,
    pub rtcp: Arc<UdpSocket>,
    pub readers: Vec<JoinHandle<()>>,
}

/// One room system's content channel.
struct Leg {
    stream: VideoStream,
    port: u16,
    rtp: Arc<UdpSocket>,
    rtcp: Arc<UdpSocket>,
    readers: Vec<JoinHandle<()>>,
    remote: Option<SocketAddr>,
    remote_rtcp: Option<SocketAddr>,
    remote_ssrc: Option<u32>,
    stats: ReceiveStats,
    last_sr: Option<(u32, Instant)>,
    last_rtcp: Instant,
    packets_out: u64,
    octets_out: u64,
    fir_seq: u8,
}

impl Leg {
    fn rtcp_dest(&self) -> Option<(SocketAddr, &UdpSocket)> {
        if self.stream.rtcp_mux {
            self.remote.map(|d| (d, &*self.rtp))
        } else {
            self.remote_rtcp.map(|d| (d, &*self.rtcp))
        }
    }

    fn receives(&self) -> bool {
        self.stream.direction.sends() && self.remote.is_some()
    }
}

/// What the API shows of a conference's content.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct ContentSnapshot {
    /// The participant whose content is relayed (the conference names it).
    #[serde(skip)]
    pub presenter: Option<u64>,
    /// Room systems with a content channel.
    pub channels: usize,
    /// The presenter's stream has reached a keyframe and is being relayed.
    pub relaying: bool,
    pub packets_in: u64,
    pub packets_out: u64,
    pub keyframes_in: u64,
    /// Received from the presenter over the last few seconds, kbit/s.
    pub bitrate_kbps: u64,
}

pub struct ContentRelay {
    conference: String,
    legs: HashMap<ParticipantId, Leg>,
    presenter: Option<ParticipantId>,
    /// Nothing of the presenter's is relayed until its next keyframe.
    waiting_keyframe: bool,
    last_keyframe_request: Option<Instant>,
    /// The presenter's SSRC being relayed (a new one needs a keyframe too).
    source_ssrc: Option<u32>,
    ssrc: u32,
    seq: u16,
    /// Our timestamp = theirs + offset, fixed at each keyframe we start on.
    ts_offset: u32,
    last_ts: u32,
    buf: Vec<u8>,
    bytes_in: IntCounter,
    bytes_out: IntCounter,
    packets_in: IntCounter,
    packets_out: IntCounter,
    metrics: Arc<Metrics>,
    snapshot: ContentSnapshot,
    /// Bytes in since `rate_since`, for the bitrate.
    rate_bytes: u64,
    rate_since: Instant,
    /// Room systems without a content channel see the slides in their
    /// layout: while somebody does, the presenter's stream is also
    /// reassembled here for decoding ([`Self::take_access_units`]).
    decode: bool,
    depacketizer: H264Depacketizer,
    access_units: Vec<Vec<u8>>,
}

impl ContentRelay {
    pub fn new(conference: &str, ssrc: u32, metrics: Arc<Metrics>) -> ContentRelay {
        let c = &metrics.content;
        ContentRelay {
            conference: conference.to_owned(),
            legs: HashMap::new(),
            presenter: None,
            waiting_keyframe: true,
            last_keyframe_request: None,
            source_ssrc: None,
            ssrc,
            seq: (ssrc >> 16) as u16,
            ts_offset: 0,
            last_ts: ssrc.rotate_left(7),
            buf: Vec::with_capacity(1500),
            bytes_in: c.bytes.with_label_values(&["in"]),
            bytes_out: c.bytes.with_label_values(&["out"]),
            packets_in: c.packets.with_label_values(&["in"]),
            packets_out: c.packets.with_label_values(&["out"]),
            metrics,
            snapshot: ContentSnapshot::default(),
            rate_bytes: 0,
            rate_since: Instant::now(),
            decode: false,
            depacketizer: frozen_depacketizer(),
            access_units: Vec::new(),
        }
    }

    /// Whether `id` has a content channel that receives the slides.
    pub fn has_channel(&self, id: ParticipantId) -> bool {
        self.legs
            .get(&id)
            .is_some_and(|l| l.stream.direction.sends())
    }

    /// Whether the presenter's pictures are needed decoded (somebody sees
    /// them in a layout). Turning it on asks the presenter for a keyframe.
    pub fn set_decode(&mut self, decode: bool, now: Instant) {
        if decode == self.decode {
            return;
        }
        self.decode = decode;
        self.restart_decode(now);
    }

    /// Decoding starts afresh at the presenter's next keyframe (asked for
    /// now): the content channels' relay goes on meanwhile.
    pub fn restart_decode(&mut self, now: Instant) {
        self.depacketizer = frozen_depacketizer();
        self.access_units.clear();
        if self.decode {
            self.request_keyframe(now, true);
        }
    }

    /// The presenter's access units reassembled since the last call
    /// (only while decoding is on).
    pub fn take_access_units(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.access_units)
    }

    pub fn add_leg(&mut self, s: ContentStart) -> Option<u16> {
        if self.legs.contains_key(&s.participant) {
            for r in &s.readers {
                r.abort();
            }
            return Some(s.port);
        }
        info!(conference = %self.conference, participant = s.participant.0, port = s.port,
              direction = ?s.stream.direction, "content channel joined");
        self.metrics.content.channels.inc();
        self.legs.insert(
            s.participant,
            Leg {
                remote: s.stream.remote,
                remote_rtcp: s.stream.remote_rtcp,
                stream: s.stream,
                port: s.port,
                rtp: s.rtp,
                rtcp: s.rtcp,
                readers: s.readers,
                remote_ssrc: None,
                stats: ReceiveStats::new(90_000),
                last_sr: None,
                last_rtcp: Instant::now(),
                packets_out: 0,
                octets_out: 0,
                fir_seq: 0,
            },
        );
        if self.presenter.is_some() {
            // A newcomer needs a keyframe to start decoding.
            self.request_keyframe(Instant::now(), true);
        }
        None
    }

    /// A re-INVITE changed the content stream (`None`: removed).
    pub fn update_leg(&mut self, id: ParticipantId, stream: Option<VideoStream>) {
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        match stream {
            Some(stream) => {
                if stream.remote.is_some() {
                    leg.remote = stream.remote;
                    leg.remote_rtcp = stream.remote_rtcp;
                }
                leg.stream = stream;
            }
            None => leg.stream.direction = tandem_proto::sdp::Direction::Inactive,
        }
    }

    /// Takes the channel out; returns its port to free.
    pub fn remove(&mut self, id: ParticipantId) -> Option<u16> {
        let leg = self.legs.remove(&id)?;
        for r in &leg.readers {
            r.abort();
        }
        if let Some((dest, socket)) = leg.rtcp_dest() {
            let mut buf = Vec::new();
            let _ = rtcp::write_bye(&mut buf, &[Ssrc(self.ssrc)], None);
            let _ = socket.try_send_to(&buf, dest);
        }
        self.metrics.content.channels.dec();
        Some(leg.port)
    }

    /// The floor changed hands.
    pub fn set_presenter(&mut self, presenter: Option<ParticipantId>, now: Instant) {
        if presenter == self.presenter {
            return;
        }
        info!(conference = %self.conference, presenter = ?presenter.map(|p| p.0), "content presenter");
        self.presenter = presenter;
        self.waiting_keyframe = true;
        self.source_ssrc = None;
        self.depacketizer = frozen_depacketizer();
        self.access_units.clear();
        self.last_keyframe_request = None;
        if presenter.is_some() {
            self.request_keyframe(now, true);
        }
    }

    pub fn presenter(&self) -> Option<ParticipantId> {
        self.presenter
    }

    /// A datagram on `id`'s content sockets.
    pub fn handle_packet(
        &mut self,
        id: ParticipantId,
        rtcp_socket: bool,
        data: &[u8],
        from: SocketAddr,
        at: Instant,
    ) {
        if rtcp_socket || is_rtcp(data) {
            self.handle_rtcp(id, rtcp_socket, data, from, at);
            return;
        }
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        let packet = match RtpPacket::parse(data) {
            Ok(p) => p,
            Err(e) => {
                self.metrics.malformed("rtp", e.kind());
                return;
            }
        };
        if packet.payload_type != leg.stream.h264.pt {
            self.metrics.malformed("rtp", "unexpected_payload_type");
            return;
        }
        leg.remote = Some(from);
        leg.remote_ssrc = Some(packet.ssrc.0);
        leg.stats.handle_rtp(at, &packet);
        self.packets_in.inc();
        self.bytes_in.inc_by(data.len() as u64);
        self.snapshot.packets_in += 1;
        if self.presenter != Some(id) {
            // Content without the floor (a room system that starts before
            // its grant arrives, or goes on after a takeover): not shown.
            return;
        }
        self.rate_bytes += data.len() as u64;
        let keyframe = starts_keyframe(packet.payload);
        if keyframe {
            self.snapshot.keyframes_in += 1;
        }
        if self.source_ssrc != Some(packet.ssrc.0) {
            self.waiting_keyframe = true;
            self.source_ssrc = Some(packet.ssrc.0);
        }
        if self.waiting_keyframe {
            if !keyframe {
                self.request_keyframe(at, false);
                return;
            }
            // Start on this keyframe, one frame after what was relayed last.
            self.waiting_keyframe = false;
            self.ts_offset = self
                .last_ts
                .wrapping_add(SWITCH_TS_STEP)
                .wrapping_sub(packet.timestamp.0);
            debug!(conference = %self.conference, "content relayed from a keyframe");
        }
        if self.decode {
            self.depacketizer.handle_rtp(&packet);
            while let Some(au) = self.depacketizer.poll_access_unit() {
                self.access_units.push(au.data);
            }
        }
        let ts = packet.timestamp.0.wrapping_add(self.ts_offset);
        self.last_ts = ts;
        self.seq = self.seq.wrapping_add(1);
        self.buf.clear();
        self.buf.push(0x80);
        self.buf.push(if packet.marker { 0x80 } else { 0 });
        self.buf.extend_from_slice(&self.seq.to_be_bytes());
        self.buf.extend_from_slice(&ts.to_be_bytes());
        self.buf.extend_from_slice(&self.ssrc.to_be_bytes());
        self.buf.extend_from_slice(packet.payload);
        let marker = if packet.marker { 0x80 } else { 0 };
        for (rx, leg) in &mut self.legs {
            if *rx == id || !leg.receives() {
                continue;
            }
            let Some(dest) = leg.remote else {
                continue;
            };
            self.buf[1] = marker | (leg.stream.h264.pt & 0x7f);
            if leg.rtp.try_send_to(&self.buf, dest).is_ok() {
                leg.packets_out += 1;
                leg.octets_out += (self.buf.len() - RtpPacket::FIXED_HEADER_LEN) as u64;
                self.packets_out.inc();
                self.bytes_out.inc_by(self.buf.len() as u64);
                self.snapshot.packets_out += 1;
            }
        }
    }

    fn handle_rtcp(
        &mut self,
        id: ParticipantId,
        rtcp_socket: bool,
        data: &[u8],
        from: SocketAddr,
        at: Instant,
    ) {
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        let packets = match rtcp::parse_compound(data) {
            Ok(p) => p,
            Err(e) => {
                self.metrics.malformed("rtcp", e.kind());
                return;
            }
        };
        if !leg.stream.rtcp_mux || rtcp_socket {
            leg.remote_rtcp = Some(from);
        }
        if let Some(sr) = rtcp_report::last_sr_of(&packets, at) {
            leg.last_sr = Some(sr);
        }
        let wants_keyframe = packets.iter().any(|p| p.is_pli() || p.is_fir());
        if wants_keyframe && self.presenter != Some(id) {
            self.metrics
                .video
                .keyframe_requests_received
                .with_label_values(&["content"])
                .inc();
            self.request_keyframe(at, false);
        }
    }

    /// Asks the presenter for a keyframe (PLI; FIR too when it offered
    /// it), at most every [`KEYFRAME_INTERVAL`] unless `now_anyway`.
    fn request_keyframe(&mut self, now: Instant, now_anyway: bool) {
        let Some(id) = self.presenter else {
            return;
        };
        if !now_anyway
            && self
                .last_keyframe_request
                .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_INTERVAL)
        {
            return;
        }
        let ssrc = self.ssrc;
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        self.last_keyframe_request = Some(now);
        let media = Ssrc(leg.remote_ssrc.unwrap_or(0));
        let mut buf = Vec::with_capacity(64);
        let _ = rtcp::write_receiver_report(&mut buf, Ssrc(ssrc), &[]);
        rtcp::write_pli(&mut buf, Ssrc(ssrc), media);
        let mut methods = vec!["pli"];
        if leg.stream.fir {
            leg.fir_seq = leg.fir_seq.wrapping_add(1);
            rtcp::write_fir(&mut buf, Ssrc(ssrc), media, leg.fir_seq);
            methods.push("fir");
        }
        if let Some((dest, socket)) = leg.rtcp_dest() {
            let _ = socket.try_send_to(&buf, dest);
        }
        for m in methods {
            self.metrics
                .video
                .keyframes_requested
                .with_label_values(&[m])
                .inc();
        }
    }

    /// Every video tick: RTCP reports, and a keyframe asked for again while
    /// the presenter's stream waits for one.
    pub fn tick(&mut self, now: Instant) {
        if self.presenter.is_some()
            && (self.waiting_keyframe || (self.decode && self.depacketizer.needs_keyframe()))
        {
            self.request_keyframe(now, false);
        }
        let wall = SystemTime::now();
        let ssrc = self.ssrc;
        let last_ts = self.last_ts;
        for leg in self.legs.values_mut() {
            if now.saturating_duration_since(leg.last_rtcp) < RTCP_INTERVAL {
                continue;
            }
            leg.last_rtcp = now;
            let mut buf = Vec::with_capacity(128);
            let sent = rtcp_report::Sent {
                ssrc,
                rtp_ts: last_ts,
                packets: leg.packets_out,
                octets: leg.octets_out,
            };
            if rtcp_report::write_report(&mut buf, &sent, &mut leg.stats, leg.last_sr, now, wall)
                && let Some((dest, socket)) = leg.rtcp_dest()
            {
                let _ = socket.try_send_to(&buf, dest);
            }
        }
    }

    /// The API's view, with the bitrate over the time since the last call.
    pub fn snapshot(&mut self, now: Instant) -> ContentSnapshot {
        let secs = now.saturating_duration_since(self.rate_since).as_secs_f64();
        if secs >= 1.0 {
            self.snapshot.bitrate_kbps = (self.rate_bytes as f64 * 8.0 / secs / 1000.0) as u64;
            self.rate_bytes = 0;
            self.rate_since = now;
        }
        self.snapshot.presenter = self.presenter.map(|p| p.0);
        self.snapshot.channels = self.legs.len();
        self.snapshot.relaying = self.presenter.is_some() && !self.waiting_keyframe;
        self.snapshot.clone()
    }

    /// Every channel out (the conference ended); their ports to free.
    pub fn clear(&mut self) -> Vec<u16> {
        let ids: Vec<ParticipantId> = self.legs.keys().copied().collect();
        ids.into_iter().filter_map(|id| self.remove(id)).collect()
    }
}

/// A depacketizer that holds back everything before a keyframe (a decoder
/// cannot start mid-GOP, nor go on after a loss).
fn frozen_depacketizer() -> H264Depacketizer {
    let mut d = H264Depacketizer::new();
    d.set_freeze_until_keyframe(true);
    d
}
