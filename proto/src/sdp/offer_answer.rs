//! The RFC 3264 offer/answer model, for the bridge's audio and video streams.
//!
//! The bridge mixes audio in Opus, G.722, PCMU or PCMA, with RFC 4733
//! telephone-event for DTMF and RFC 3389 comfort noise when offered, and
//! (when [`LocalMedia::video_port`] is set) takes one H.264 video stream (see
//! [`super::video`]), and (when [`LocalMedia::content`] is set) a content
//! stream (`a=content:slides`) with the BFCP floor that governs it (see
//! [`super::bfcp`]): both or neither. Everything else (other applications,
//! a second audio or video stream, SRTP profiles, TLS BFCP) is declined with
//! port 0, which keeps the m-line count and order the offerer expects (§6).
//!
//! The audio outcome is returned; the video outcome of the last exchange is
//! kept in the [`SdpSession`] ([`SdpSession::video`]), since most callers
//! only care about audio.
//!
//! When answering we pick the codec in the *offerer's* preference order (§6.1
//! says the answerer SHOULD), because a transcoding bridge has no reason to
//! override the endpoint. Our own preference order is used only in our offers.

use std::net::{IpAddr, SocketAddr};

use super::bfcp::{self as sdp_bfcp, BfcpAnswer, BfcpMedia, BfcpTransport, Setup};
use super::session::{
    Address, Attribute, Bandwidth, Connection, Direction, MediaDescription, MediaKind, Origin,
    RtpMap, SessionDescription, Timing,
};
use super::video::{NegotiatedVideo, RECEIVE_LEVEL_IDC, answer_fmtp, negotiate_h264};

/// Why negotiation failed. Each maps to a SIP answer (mostly 488 Not Acceptable Here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OfferAnswerError {
    /// The offer had active media but no audio codec we can mix.
    #[error("no common audio codec")]
    NoCommonCodec,
    /// The answer does not have one m-line per offered m-line (RFC 3264 §6).
    #[error("answer has {answer} m-lines, offer had {offer}")]
    MediaCountMismatch { offer: usize, answer: usize },
}

/// Audio codecs the mixer can decode and encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioCodec {
    Opus,
    G722,
    Pcmu,
    Pcma,
}

impl AudioCodec {
    pub const ALL: [AudioCodec; 4] = [
        AudioCodec::Opus,
        AudioCodec::G722,
        AudioCodec::Pcmu,
        AudioCodec::Pcma,
    ];

    /// Human-readable name.
    pub fn name(self) -> &'static str {
        match self {
            AudioCodec::Opus => "Opus",
            AudioCodec::G722 => "G.722",
            AudioCodec::Pcmu => "PCMU",
            AudioCodec::Pcma => "PCMA",
        }
    }

    /// The encoding name in `a=rtpmap`.
    pub fn encoding_name(self) -> &'static str {
        match self {
            AudioCodec::Opus => "opus",
            AudioCodec::G722 => "G722",
            AudioCodec::Pcmu => "PCMU",
            AudioCodec::Pcma => "PCMA",
        }
    }

    /// The clock rate as signalled in SDP and used for RTP timestamps. G.722
    /// samples at 16 kHz but RFC 3551 §4.5.2 fixes its RTP clock at 8000.
    pub fn clock_rate(self) -> u32 {
        match self {
            AudioCodec::Opus => 48_000,
            AudioCodec::G722 | AudioCodec::Pcmu | AudioCodec::Pcma => 8_000,
        }
    }

    /// The actual audio sample rate the codec works at.
    pub fn sample_rate(self) -> u32 {
        match self {
            AudioCodec::Opus => 48_000,
            AudioCodec::G722 => 16_000,
            AudioCodec::Pcmu | AudioCodec::Pcma => 8_000,
        }
    }

    /// Channel count in the rtpmap (RFC 7587 requires `opus/48000/2`).
    pub fn channels(self) -> Option<u16> {
        match self {
            AudioCodec::Opus => Some(2),
            _ => None,
        }
    }

    /// RFC 3551 static payload type, if any.
    pub fn static_pt(self) -> Option<u8> {
        match self {
            AudioCodec::Pcmu => Some(0),
            AudioCodec::Pcma => Some(8),
            AudioCodec::G722 => Some(9),
            AudioCodec::Opus => None,
        }
    }

    /// The payload type we use in our own offers.
    pub fn offer_pt(self) -> u8 {
        self.static_pt().unwrap_or(111)
    }

    pub fn rtpmap(self, pt: u8) -> RtpMap {
        RtpMap {
            pt,
            encoding: self.encoding_name().to_owned(),
            clock_rate: self.clock_rate(),
            channels: self.channels(),
        }
    }

    /// Recognise a codec from an rtpmap, tolerating common mistakes
    /// (case, `opus/48000` without channels, `G722/16000`).
    pub fn from_rtpmap(map: &RtpMap) -> Option<AudioCodec> {
        let enc = map.encoding.as_str();
        let codec = if enc.eq_ignore_ascii_case("opus") {
            AudioCodec::Opus
        } else if enc.eq_ignore_ascii_case("G722") {
            return matches!(map.clock_rate, 8_000 | 16_000).then_some(AudioCodec::G722);
        } else if enc.eq_ignore_ascii_case("PCMU") {
            AudioCodec::Pcmu
        } else if enc.eq_ignore_ascii_case("PCMA") {
            AudioCodec::Pcma
        } else {
            return None;
        };
        (map.clock_rate == codec.clock_rate()).then_some(codec)
    }
}

/// Our side of the media: where we receive and what we offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    pub addr: IpAddr,
    pub audio_port: u16,
    /// Our preference, used only for our offers.
    pub codecs: Vec<AudioCodec>,
    /// Packetization we offer, in ms.
    pub ptime: u32,
    /// Where we receive video; `None` declines video.
    pub video_port: Option<u16>,
    /// The presentation channel and its floor; `None` declines content.
    pub content: Option<LocalContent>,
}

/// Our side of a presentation (content) channel: its RTP port and the BFCP
/// floor control server that governs it (RFC 4796, RFC 8856).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalContent {
    /// Where we receive content RTP (RTCP multiplexed or on port+1).
    pub port: u16,
    /// Where our floor control server listens, on TCP and UDP.
    pub bfcp_port: u16,
    /// The BFCP conference and user IDs of this participant.
    pub conference_id: u32,
    pub user_id: u16,
    /// The floor that governs the content stream.
    pub floor: u16,
}

/// The label of our content m-line when the offer has none.
pub const CONTENT_LABEL: &str = "3";

/// The outcome of a BFCP m-line exchange: how the client reaches our floor
/// control server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedBfcp {
    pub transport: BfcpTransport,
    /// BFCP version spoken: 1 over TCP, 2 over UDP.
    pub version: u8,
    /// We open the TCP connection (the offerer was `passive`); otherwise it
    /// connects to us.
    pub connect: bool,
    /// The client's address (where we connect, for `connect`).
    pub remote: Option<SocketAddr>,
    pub conference_id: u32,
    pub user_id: u16,
    pub floor: u16,
    /// The label of our content stream the floor governs.
    pub label: String,
}

/// The outcome of an offer/answer exchange for the video stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoStream {
    /// Payload type, H.264 parameters and the peer's bandwidth.
    pub h264: NegotiatedVideo,
    pub rtcp_mux: bool,
    /// Where to send RTP; `None` on hold or port 0.
    pub remote: Option<SocketAddr>,
    pub remote_rtcp: Option<SocketAddr>,
    /// From OUR side: what we may do.
    pub direction: Direction,
    /// The peer listed `a=rtcp-fb:<pt> nack pli` (RFC 4585).
    pub pli: bool,
    /// The peer listed `a=rtcp-fb:<pt> ccm fir` (RFC 5104).
    pub fir: bool,
    /// The peer listed `a=rtcp-fb:<pt> ccm tmmbr` (RFC 5104): it lowers its
    /// bitrate, and so its resolution, when asked to.
    pub tmmbr: bool,
}

/// The video bandwidth we ask peers to send us at most, kbit/s (b=AS): a
/// 720p30 camera is all a continuous-presence pane needs.
pub const VIDEO_RECEIVE_KBPS: u64 = 2000;
/// Our H.264 payload types in offers: packetization mode 1, then mode 0.
const OFFER_H264_PTS: [(u8, u8); 2] = [(96, 1), (97, 0)];

/// Whether `m` lists `a=rtcp-fb` `<pt>`/`*` with exactly this feedback.
fn has_rtcp_fb(m: &MediaDescription, pt: u8, feedback: &str) -> bool {
    let pt = pt.to_string();
    m.attributes
        .iter()
        .filter(|a| a.name.eq_ignore_ascii_case("rtcp-fb"))
        .filter_map(|a| a.value.as_deref())
        .any(|v| {
            let mut parts = v.split_whitespace();
            let target = parts.next().unwrap_or("");
            let rest: Vec<&str> = parts.collect();
            (target == pt || target == "*") && rest.join(" ").eq_ignore_ascii_case(feedback)
        })
}

fn video_stream(
    sd: &SessionDescription,
    m: &MediaDescription,
    h264: NegotiatedVideo,
    direction: Direction,
    rtcp_mux: bool,
) -> VideoStream {
    let (remote, remote_rtcp) = remote_addrs(sd, m, rtcp_mux);
    let direction = if remote.is_none() {
        direction.without_send()
    } else {
        direction
    };
    VideoStream {
        pli: has_rtcp_fb(m, h264.pt, "nack pli"),
        fir: has_rtcp_fb(m, h264.pt, "ccm fir"),
        tmmbr: has_rtcp_fb(m, h264.pt, "ccm tmmbr"),
        h264,
        rtcp_mux,
        remote,
        remote_rtcp,
        direction,
    }
}

/// Accept one offered video m-line with H.264, or `None`.
fn answer_video(
    offer: &SessionDescription,
    m: &MediaDescription,
    port: u16,
) -> Option<(MediaDescription, VideoStream)> {
    let h264 = negotiate_h264(m)?;
    let pt = h264.pt;
    let rtcp_mux = m.rtcp_mux();
    let stream = video_stream(offer, m, h264, offer.direction_of(m).reversed(), rtcp_mux);
    let mut attrs = vec![
        Attribute::value("rtpmap", format!("{pt} H264/90000")),
        Attribute::value("fmtp", format!("{pt} {}", answer_fmtp(&stream.h264))),
    ];
    // Echo the feedback we honour, so the peer knows it may ask (RFC 4585 §4.2).
    if stream.pli {
        attrs.push(Attribute::value("rtcp-fb", format!("{pt} nack pli")));
    }
    if stream.fir {
        attrs.push(Attribute::value("rtcp-fb", format!("{pt} ccm fir")));
    }
    if stream.tmmbr {
        attrs.push(Attribute::value("rtcp-fb", format!("{pt} ccm tmmbr")));
    }
    if rtcp_mux {
        attrs.push(Attribute::flag("rtcp-mux"));
    }
    attrs.push(Attribute::flag(stream.direction.as_str()));
    let md = MediaDescription {
        kind: MediaKind::Video,
        port,
        port_count: None,
        proto: m.proto.clone(),
        formats: vec![pt.to_string()],
        info: None,
        connection: None,
        bandwidth: vec![Bandwidth {
            kind: "AS".to_owned(),
            value: VIDEO_RECEIVE_KBPS,
        }],
        attributes: attrs,
    };
    Some((md, stream))
}

/// Our video m-line for offers.
fn offer_video(port: u16) -> MediaDescription {
    let mut attrs = Vec::new();
    for (pt, mode) in OFFER_H264_PTS {
        attrs.push(Attribute::value("rtpmap", format!("{pt} H264/90000")));
        attrs.push(Attribute::value(
            "fmtp",
            format!(
                "{pt} profile-level-id=42e0{RECEIVE_LEVEL_IDC:02x};packetization-mode={mode};level-asymmetry-allowed=1"
            ),
        ));
        attrs.push(Attribute::value("rtcp-fb", format!("{pt} nack pli")));
        attrs.push(Attribute::value("rtcp-fb", format!("{pt} ccm fir")));
        attrs.push(Attribute::value("rtcp-fb", format!("{pt} ccm tmmbr")));
    }
    attrs.push(Attribute::flag("rtcp-mux"));
    attrs.push(Attribute::flag(Direction::SendRecv.as_str()));
    MediaDescription {
        kind: MediaKind::Video,
        port,
        port_count: None,
        proto: "RTP/AVP".to_owned(),
        formats: OFFER_H264_PTS
            .iter()
            .map(|(pt, _)| pt.to_string())
            .collect(),
        info: None,
        connection: None,
        bandwidth: vec![Bandwidth {
            kind: "AS".to_owned(),
            value: VIDEO_RECEIVE_KBPS,
        }],
        attributes: attrs,
    }
}

/// The outcome of a completed offer/answer exchange for the audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedAudio {
    pub codec: AudioCodec,
    /// Payload type for `codec`, in both directions.
    pub pt: u8,
    /// telephone-event at the codec's clock rate, if both sides have it.
    pub dtmf_pt: Option<u8>,
    /// Comfort noise at the codec's clock rate, if offered.
    pub cn_pt: Option<u8>,
    /// 20, 40 or 60 ms: the mixer works in multiples of 20 ms.
    pub ptime: u32,
    pub rtcp_mux: bool,
    /// Where to send RTP; `None` when the port is 0 or the address is
    /// `0.0.0.0`/`::` (RFC 2543 hold), or a host name we cannot resolve here.
    pub remote: Option<SocketAddr>,
    /// Where to send RTCP: the RTP address under rtcp-mux, else `a=rtcp`, else port+1.
    pub remote_rtcp: Option<SocketAddr>,
    /// From OUR side: what we may do.
    pub direction: Direction,
    /// The peer asked to receive Opus in-band FEC (`useinbandfec=1`).
    pub opus_fec: bool,
    /// The peer would like to receive stereo Opus (`stereo=1`).
    pub opus_stereo: bool,
}

/// The RTP/AVP-family profiles we can speak (no SRTP, no DTLS).
fn plain_rtp(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("RTP/AVP") || proto.eq_ignore_ascii_case("RTP/AVPF")
}

/// Round a ptime to what the mixer can do: 20, 40 or 60 ms, never above `max`
/// (a=maxptime) unless even 20 is.
fn round_ptime(ptime: Option<u32>, max: Option<u32>) -> u32 {
    let p = match ptime {
        None => 20,
        Some(p) if p <= 30 => 20,
        Some(p) if p <= 50 => 40,
        Some(_) => 60,
    };
    match max {
        Some(max) if max < p => (max / 20 * 20).max(20),
        _ => p,
    }
}

fn fmtp_param<'a>(fmtp: Option<&'a str>, key: &str) -> Option<&'a str> {
    fmtp?.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(key)).then(|| v.trim())
    })
}

/// Telephone-event / CN payload type at `clock_rate` listed in `m`.
fn find_aux(maps: &[RtpMap], encoding: &str, clock_rate: u32) -> Option<u8> {
    maps.iter()
        .find(|m| m.encoding.eq_ignore_ascii_case(encoding) && m.clock_rate == clock_rate)
        .map(|m| m.pt)
}

/// Everything about the remote end of one audio m-line.
fn remote_addrs(
    sd: &SessionDescription,
    m: &MediaDescription,
    rtcp_mux: bool,
) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let ip = sd
        .connection_of(m)
        .and_then(|c| c.addr.ip())
        .filter(|ip| !ip.is_unspecified());
    let Some(ip) = ip.filter(|_| m.port != 0) else {
        return (None, None);
    };
    let rtp = SocketAddr::new(ip, m.port);
    let rtcp = if rtcp_mux {
        rtp
    } else {
        match m.rtcp() {
            Some((port, addr)) => SocketAddr::new(addr.unwrap_or(ip), port),
            None => SocketAddr::new(ip, m.port.wrapping_add(1)),
        }
    };
    (Some(rtp), Some(rtcp))
}

/// Keeps our `o=` line across a dialog (RFC 3264 §8): same session id, and a
/// version that goes up by one whenever what we send changes.
#[derive(Debug, Clone)]
pub struct SdpSession {
    session_id: u64,
    version: u64,
    username: String,
    last: Option<SessionDescription>,
    video: Option<VideoStream>,
    content: Option<VideoStream>,
    bfcp: Option<NegotiatedBfcp>,
}

impl SdpSession {
    pub fn new(session_id: u64) -> Self {
        SdpSession {
            session_id,
            version: session_id,
            username: "tandem".to_owned(),
            last: None,
            video: None,
            content: None,
            bfcp: None,
        }
    }

    /// The presentation stream as the last completed exchange left it;
    /// only ever with its floor ([`Self::bfcp`]).
    pub fn content(&self) -> Option<&VideoStream> {
        self.content.as_ref()
    }

    /// The floor control negotiated with the content stream.
    pub fn bfcp(&self) -> Option<&NegotiatedBfcp> {
        self.bfcp.as_ref()
    }

    /// The video stream as the last completed exchange left it (`None`:
    /// declined, removed, or never offered).
    pub fn video(&self) -> Option<&VideoStream> {
        self.video.as_ref()
    }

    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// Version of the last SDP we produced.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Stamp `o=` on a freshly built description. §8: the version MUST
    /// increment when the SDP changes and MUST NOT when it is identical.
    fn stamp(&mut self, mut sd: SessionDescription) -> SessionDescription {
        sd.origin.session_id = self.session_id;
        if let Some(last) = &self.last {
            sd.origin.version = last.origin.version;
            if *last != sd {
                self.version = self.version.wrapping_add(1);
            }
        }
        sd.origin.version = self.version;
        self.last = Some(sd.clone());
        sd
    }

    fn skeleton(&self, addr: IpAddr) -> SessionDescription {
        SessionDescription {
            origin: Origin {
                username: self.username.clone(),
                session_id: self.session_id,
                version: self.version,
                addr: Address::Ip(addr),
            },
            session_name: "tandem".to_owned(),
            info: None,
            connection: Some(Connection::new(addr)),
            bandwidth: Vec::new(),
            timing: vec![Timing { start: 0, stop: 0 }],
            attributes: Vec::new(),
            media: Vec::new(),
        }
    }

    /// Answer `offer` (RFC 3264 §6). Returns the answer and the negotiated
    /// audio stream, `None` when the offer has no active audio (every audio
    /// m-line at port 0, e.g. the stream was removed in a re-offer).
    pub fn answer(
        &mut self,
        offer: &SessionDescription,
        local: &LocalMedia,
    ) -> Result<(SessionDescription, Option<NegotiatedAudio>), OfferAnswerError> {
        let mut answer = self.skeleton(local.addr);
        let mut negotiated: Option<NegotiatedAudio> = None;
        let mut video: Option<VideoStream> = None;
        let mut any_active = false;
        let plan = local
            .content
            .as_ref()
            .and_then(|c| ContentPlan::of(offer, c));
        let mut content = None;
        let mut bfcp = None;

        for (i, m) in offer.media.iter().enumerate() {
            any_active |= m.port != 0;
            if let (Some(plan), Some(c)) = (&plan, &local.content) {
                if i == plan.content
                    && let Some((md, stream)) = answer_content(offer, m, c.port, &plan.label)
                {
                    answer.media.push(md);
                    content = Some(stream);
                    continue;
                }
                if i == plan.bfcp {
                    let (md, neg) = answer_bfcp(offer, m, &plan.bfcp_media, c, &plan.label);
                    answer.media.push(md);
                    bfcp = Some(neg);
                    continue;
                }
            }
            let usable = m.port != 0 && plain_rtp(&m.proto) && !sdp_bfcp::is_content(m);
            if usable
                && negotiated.is_none()
                && m.kind == MediaKind::Audio
                && let Some((md, neg)) = answer_audio(offer, m, local)
            {
                answer.media.push(md);
                negotiated = Some(neg);
                continue;
            }
            if let (true, None, MediaKind::Video, Some(port)) =
                (usable, &video, &m.kind, local.video_port)
                && let Some((md, stream)) = answer_video(offer, m, port)
            {
                answer.media.push(md);
                video = Some(stream);
                continue;
            }
            answer.media.push(rejected(m));
        }

        if negotiated.is_none() && any_active {
            return Err(OfferAnswerError::NoCommonCodec);
        }
        self.video = video;
        // Both or neither: content without its floor cannot be governed.
        (self.content, self.bfcp) = match (content, bfcp) {
            (Some(c), Some(b)) => (Some(c), Some(b)),
            _ => (None, None),
        };
        Ok((self.stamp(answer), negotiated))
    }

    /// Our offer, for a late-offer INVITE (no SDP) answered in the 200 OK, or a
    /// re-INVITE we start.
    pub fn offer(&mut self, local: &LocalMedia) -> SessionDescription {
        let mut sd = self.skeleton(local.addr);
        let mut formats = Vec::new();
        let mut attrs = Vec::new();
        let mut seen = Vec::new();
        for &codec in &local.codecs {
            if seen.contains(&codec) {
                continue;
            }
            seen.push(codec);
            let pt = codec.offer_pt();
            formats.push(pt.to_string());
            attrs.push(Attribute::value("rtpmap", codec.rtpmap(pt).to_value()));
            if codec == AudioCodec::Opus {
                attrs.push(Attribute::value(
                    "fmtp",
                    format!("{pt} minptime=10;useinbandfec=1"),
                ));
            }
        }
        let narrowband = seen.iter().any(|c| c.clock_rate() == 8000);
        let opus = seen.contains(&AudioCodec::Opus);
        for (present, pt, rate) in [(narrowband, 101u8, 8000u32), (opus, 102, 48_000)] {
            if present {
                formats.push(pt.to_string());
                attrs.push(Attribute::value(
                    "rtpmap",
                    format!("{pt} telephone-event/{rate}"),
                ));
                attrs.push(Attribute::value("fmtp", format!("{pt} 0-16")));
            }
        }
        attrs.push(Attribute::value(
            "ptime",
            round_ptime(Some(local.ptime), None).to_string(),
        ));
        attrs.push(Attribute::flag("rtcp-mux"));
        attrs.push(Attribute::flag(Direction::SendRecv.as_str()));
        sd.media.push(MediaDescription {
            kind: MediaKind::Audio,
            port: local.audio_port,
            port_count: None,
            proto: "RTP/AVP".to_owned(),
            formats,
            info: None,
            connection: None,
            bandwidth: Vec::new(),
            attributes: attrs,
        });
        if let Some(port) = local.video_port {
            sd.media.push(offer_video(port));
        }
        if let Some(c) = &local.content {
            let mut content = offer_video(c.port);
            content
                .attributes
                .push(Attribute::value("content", "slides"));
            content
                .attributes
                .push(Attribute::value("label", CONTENT_LABEL));
            sd.media.push(content);
            let mut attributes = vec![
                Attribute::value("floorctrl", "s-only"),
                Attribute::value("setup", Setup::Passive.as_str()),
                Attribute::value("connection", "new"),
            ];
            attributes.extend(
                BfcpAnswer {
                    conference_id: c.conference_id,
                    user_id: c.user_id,
                    floor: c.floor,
                    content_label: CONTENT_LABEL.to_owned(),
                }
                .identity(),
            );
            attributes.push(Attribute::value("bfcpver", "1"));
            sd.media.push(MediaDescription {
                kind: MediaKind::Application,
                port: c.bfcp_port,
                port_count: None,
                proto: "TCP/BFCP".to_owned(),
                formats: vec!["*".to_owned()],
                info: None,
                connection: None,
                bandwidth: Vec::new(),
                attributes,
            });
        }
        self.stamp(sd)
    }

    /// Take the peer's answer to `our_offer` (late offer: the SDP in the ACK).
    ///
    /// An answer with more m-lines than the offer is refused. One with fewer
    /// breaks §6 too, but audio-only endpoints that answer only the audio
    /// m-line of our audio+video offer are common: the missing trailing
    /// m-lines are taken as declined.
    pub fn process_answer(
        &mut self,
        our_offer: &SessionDescription,
        answer: &SessionDescription,
    ) -> Result<Option<NegotiatedAudio>, OfferAnswerError> {
        if our_offer.media.len() < answer.media.len() || answer.media.is_empty() {
            return Err(OfferAnswerError::MediaCountMismatch {
                offer: our_offer.media.len(),
                answer: answer.media.len(),
            });
        }
        self.take_answered_content(our_offer, answer);
        self.video = our_offer
            .media
            .iter()
            .zip(&answer.media)
            .find(|(o, t)| {
                o.kind == MediaKind::Video && !sdp_bfcp::is_content(o) && o.port != 0 && t.port != 0
            })
            .and_then(|(ours, theirs)| answered_video(our_offer, answer, ours, theirs));
        let Some((ours, theirs)) = our_offer
            .media
            .iter()
            .zip(&answer.media)
            .find(|(o, _)| o.kind == MediaKind::Audio && o.port != 0)
        else {
            return Ok(None);
        };
        if theirs.port == 0 {
            // Declined. The dialog may go on without audio; the bridge decides.
            return Ok(None);
        }
        let offered: Vec<AudioCodec> = ours
            .rtpmaps()
            .iter()
            .filter_map(AudioCodec::from_rtpmap)
            .collect();
        let maps = theirs.rtpmaps();
        // The answerer lists what it will send in its preference order; take
        // the first we offered.
        let (map, codec) = maps
            .iter()
            .find_map(|m| {
                AudioCodec::from_rtpmap(m)
                    .filter(|c| offered.contains(c))
                    .map(|c| (m, c))
            })
            .ok_or(OfferAnswerError::NoCommonCodec)?;
        let rtcp_mux = theirs.rtcp_mux() && ours.rtcp_mux();
        let (remote, remote_rtcp) = remote_addrs(answer, theirs, rtcp_mux);
        // Their direction is from their side; ours is its reverse, capped by
        // what we offered, and without sending when they gave no address.
        let mut direction = answer
            .direction_of(theirs)
            .reversed()
            .intersect(our_offer.direction_of(ours));
        if remote.is_none() {
            direction = direction.without_send();
        }
        let fmtp = theirs.fmtp(map.pt);
        Ok(Some(NegotiatedAudio {
            codec,
            pt: map.pt,
            dtmf_pt: find_aux(&maps, "telephone-event", map.clock_rate),
            cn_pt: find_aux(&maps, "CN", map.clock_rate),
            ptime: round_ptime(theirs.ptime(), theirs.maxptime()),
            rtcp_mux,
            remote,
            remote_rtcp,
            direction,
            opus_fec: codec == AudioCodec::Opus && fmtp_param(fmtp, "useinbandfec") == Some("1"),
            opus_stereo: codec == AudioCodec::Opus && fmtp_param(fmtp, "stereo") == Some("1"),
        }))
    }
}

impl SdpSession {
    /// The content stream and floor of an answer to our offer: both
    /// accepted, or neither kept.
    fn take_answered_content(
        &mut self,
        our_offer: &SessionDescription,
        answer: &SessionDescription,
    ) {
        let pairs = || our_offer.media.iter().zip(&answer.media);
        let content = pairs()
            .find(|(o, t)| sdp_bfcp::is_content(o) && o.port != 0 && t.port != 0)
            .and_then(|(ours, theirs)| answered_video(our_offer, answer, ours, theirs));
        let bfcp = pairs()
            .filter(|(_, t)| t.port != 0)
            .find_map(|(ours, theirs)| Some((BfcpMedia::from_media(ours)?, theirs)))
            .and_then(|(ours, theirs)| {
                let media = BfcpMedia::from_media(theirs)?;
                let (remote, _) = remote_addrs(answer, theirs, true);
                Some(NegotiatedBfcp {
                    transport: media.transport,
                    version: media.version()?,
                    // We offered passive; an answerer that is passive too
                    // (wrongly) is connected to.
                    connect: media.transport == BfcpTransport::Tcp
                        && media.setup == Some(Setup::Passive),
                    remote,
                    conference_id: ours.conference_id?,
                    user_id: ours.user_id?,
                    floor: ours.floors.first()?.0,
                    label: CONTENT_LABEL.to_owned(),
                })
            });
        (self.content, self.bfcp) = match (content, bfcp) {
            (Some(c), Some(b)) => (Some(c), Some(b)),
            _ => (None, None),
        };
    }
}

/// The H.264 stream of an answered video m-line (people or content): the
/// answerer's rtpmap/fmtp for the PT it chose is what it can receive, and
/// it must be one we offered.
fn answered_video(
    our_offer: &SessionDescription,
    answer: &SessionDescription,
    ours: &MediaDescription,
    theirs: &MediaDescription,
) -> Option<VideoStream> {
    let h264 = negotiate_h264(theirs).filter(|v| ours.payload_types().any(|pt| pt == v.pt))?;
    let direction = answer
        .direction_of(theirs)
        .reversed()
        .intersect(our_offer.direction_of(ours));
    let rtcp_mux = theirs.rtcp_mux() && ours.rtcp_mux();
    Some(video_stream(answer, theirs, h264, direction, rtcp_mux))
}

/// Which offered m-lines carry content and its floor: the first content
/// video m-line with H.264 and the first BFCP m-line we can serve.
struct ContentPlan {
    content: usize,
    bfcp: usize,
    bfcp_media: BfcpMedia,
    /// The label our content m-line gets: the offer's, or ours.
    label: String,
}

impl ContentPlan {
    fn of(offer: &SessionDescription, _local: &LocalContent) -> Option<ContentPlan> {
        let (content, m) = offer.media.iter().enumerate().find(|(_, m)| {
            m.port != 0
                && plain_rtp(&m.proto)
                && sdp_bfcp::is_content(m)
                && negotiate_h264(m).is_some()
        })?;
        let (bfcp, bfcp_media) = offer.media.iter().enumerate().find_map(|(i, m)| {
            let b = BfcpMedia::from_media(m)?;
            // No TLS/DTLS here; the offerer must be able to be a client.
            (m.port != 0 && !b.tls && b.offers_client() && b.version().is_some()).then_some((i, b))
        })?;
        Some(ContentPlan {
            content,
            bfcp,
            bfcp_media,
            label: sdp_bfcp::label(m).unwrap_or(CONTENT_LABEL).to_owned(),
        })
    }
}

/// Accepts the content m-line: H.264 as for the main video, marked as
/// slides and labelled for the floor.
fn answer_content(
    offer: &SessionDescription,
    m: &MediaDescription,
    port: u16,
    label: &str,
) -> Option<(MediaDescription, VideoStream)> {
    let (mut md, stream) = answer_video(offer, m, port)?;
    md.attributes.push(Attribute::value("content", "slides"));
    md.attributes.push(Attribute::value("label", label));
    Some((md, stream))
}

/// Answers a BFCP m-line as the floor control server.
fn answer_bfcp(
    offer: &SessionDescription,
    m: &MediaDescription,
    media: &BfcpMedia,
    local: &LocalContent,
    label: &str,
) -> (MediaDescription, NegotiatedBfcp) {
    let connect = media.transport == BfcpTransport::Tcp && media.setup == Some(Setup::Passive);
    let (remote, _) = remote_addrs(offer, m, true);
    let answer = BfcpAnswer {
        conference_id: local.conference_id,
        user_id: local.user_id,
        floor: local.floor,
        content_label: label.to_owned(),
    };
    let md = MediaDescription {
        kind: MediaKind::Application,
        // The active side's port is the discard port (RFC 4145 §4).
        port: if connect { 9 } else { local.bfcp_port },
        port_count: None,
        proto: m.proto.clone(),
        formats: vec!["*".to_owned()],
        info: None,
        connection: None,
        bandwidth: Vec::new(),
        attributes: answer.attributes(media),
    };
    let neg = NegotiatedBfcp {
        transport: media.transport,
        version: media.version().unwrap_or(1),
        connect,
        remote,
        conference_id: local.conference_id,
        user_id: local.user_id,
        floor: local.floor,
        label: label.to_owned(),
    };
    (md, neg)
}

/// A declined m-line: same kind, proto and formats, port 0 (RFC 3264 §6).
fn rejected(m: &MediaDescription) -> MediaDescription {
    MediaDescription {
        kind: m.kind.clone(),
        port: 0,
        port_count: None,
        proto: m.proto.clone(),
        formats: m.formats.clone(),
        info: None,
        connection: None,
        bandwidth: Vec::new(),
        attributes: Vec::new(),
    }
}

/// Accept one offered audio m-line, or `None` when no codec fits.
fn answer_audio(
    offer: &SessionDescription,
    m: &MediaDescription,
    local: &LocalMedia,
) -> Option<(MediaDescription, NegotiatedAudio)> {
    let maps = m.rtpmaps();
    let (map, codec) = maps
        .iter()
        .find_map(|map| AudioCodec::from_rtpmap(map).map(|c| (map, c)))?;
    let pt = map.pt;
    let dtmf_pt = find_aux(&maps, "telephone-event", map.clock_rate);
    let cn_pt = find_aux(&maps, "CN", map.clock_rate);
    let ptime = round_ptime(m.ptime(), m.maxptime());
    let rtcp_mux = m.rtcp_mux();
    let (remote, remote_rtcp) = remote_addrs(offer, m, rtcp_mux);

    // RFC 3264 §6.1: answer sendonly with recvonly and so on. Under RFC 2543
    // hold (c=0.0.0.0) there is nowhere to send, so we only receive.
    let mut direction = offer.direction_of(m).reversed();
    if remote.is_none() {
        direction = direction.without_send();
    }

    let mut formats = vec![pt.to_string()];
    let mut attrs = vec![Attribute::value("rtpmap", codec.rtpmap(pt).to_value())];
    let fmtp = m.fmtp(pt);
    if codec == AudioCodec::Opus {
        attrs.push(Attribute::value(
            "fmtp",
            format!("{pt} minptime=10;useinbandfec=1"),
        ));
    }
    if let Some(dpt) = dtmf_pt {
        formats.push(dpt.to_string());
        attrs.push(Attribute::value(
            "rtpmap",
            format!("{dpt} telephone-event/{}", map.clock_rate),
        ));
        let events = m.fmtp(dpt).filter(|f| !f.is_empty()).unwrap_or("0-16");
        attrs.push(Attribute::value("fmtp", format!("{dpt} {events}")));
    }
    if let Some(cpt) = cn_pt {
        formats.push(cpt.to_string());
        attrs.push(Attribute::value(
            "rtpmap",
            format!("{cpt} CN/{}", map.clock_rate),
        ));
    }
    attrs.push(Attribute::value("ptime", ptime.to_string()));
    if rtcp_mux {
        attrs.push(Attribute::flag("rtcp-mux"));
    }
    attrs.push(Attribute::flag(direction.as_str()));

    let md = MediaDescription {
        kind: MediaKind::Audio,
        port: local.audio_port,
        port_count: None,
        proto: m.proto.clone(),
        formats,
        info: None,
        connection: None,
        bandwidth: Vec::new(),
        attributes: attrs,
    };
    let neg = NegotiatedAudio {
        codec,
        pt,
        dtmf_pt,
        cn_pt,
        ptime,
        rtcp_mux,
        remote,
        remote_rtcp,
        direction,
        opus_fec: codec == AudioCodec::Opus && fmtp_param(fmtp, "useinbandfec") == Some("1"),
        opus_stereo: codec == AudioCodec::Opus && fmtp_param(fmtp, "stereo") == Some("1"),
    };
    Some((md, neg))
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn local() -> LocalMedia {
        LocalMedia {
            addr: "10.0.0.1".parse().expect("ip"),
            audio_port: 20000,
            codecs: vec![
                AudioCodec::Opus,
                AudioCodec::G722,
                AudioCodec::Pcmu,
                AudioCodec::Pcma,
            ],
            ptime: 20,
            video_port: None,
            content: None,
        }
    }

    fn sdp(body: &str) -> SessionDescription {
        SessionDescription::parse(body).expect("test SDP parses")
    }

    const BARESIP: &str = "v=0\r\no=- 1 2 IN IP4 192.168.1.10\r\ns=-\r\nc=IN IP4 192.168.1.10\r\nt=0 0\r\n\
m=audio 10000 RTP/AVP 111 9 0 8 101 102\r\n\
a=rtpmap:111 opus/48000/2\r\na=fmtp:111 stereo=1;sprop-stereo=1;useinbandfec=1\r\n\
a=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/48000\r\na=rtpmap:102 telephone-event/8000\r\n\
a=fmtp:102 0-15\r\na=ptime:20\r\na=sendrecv\r\na=rtcp-mux\r\n";

    #[test]
    fn sdp_answer_baresip_picks_opus() -> TestResult {
        let mut s = SdpSession::new(42);
        let (ans, neg) = s.answer(&sdp(BARESIP), &local())?;
        let neg = neg.ok_or("no audio")?;
        assert_eq!(neg.codec, AudioCodec::Opus);
        assert_eq!(neg.pt, 111);
        assert_eq!(neg.dtmf_pt, Some(101)); // the 48 kHz one
        assert_eq!(neg.cn_pt, None);
        assert_eq!(neg.ptime, 20);
        assert!(neg.rtcp_mux);
        assert!(neg.opus_fec && neg.opus_stereo);
        assert_eq!(neg.remote, Some("192.168.1.10:10000".parse()?));
        assert_eq!(neg.remote_rtcp, neg.remote);
        assert_eq!(neg.direction, Direction::SendRecv);
        let m = &ans.media[0];
        assert_eq!(m.port, 20000);
        assert_eq!(m.formats, ["111", "101"]);
        assert_eq!(m.fmtp(111), Some("minptime=10;useinbandfec=1"));
        assert_eq!(m.fmtp(101), Some("0-16"));
        assert!(m.rtcp_mux());
        assert_eq!(ans.origin.session_id, 42);
        // The answer survives a round trip through text.
        assert_eq!(sdp(&ans.to_string()), ans);
        Ok(())
    }

    #[test]
    fn sdp_answer_sipp_pcmu_only() -> TestResult {
        let offer = sdp(
            "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        );
        let (ans, neg) = SdpSession::new(1).answer(&offer, &local())?;
        let neg = neg.ok_or("no audio")?;
        assert_eq!((neg.codec, neg.pt), (AudioCodec::Pcmu, 0));
        assert_eq!(neg.dtmf_pt, None);
        assert!(!neg.rtcp_mux);
        assert_eq!(neg.remote_rtcp, Some("127.0.0.1:6001".parse()?));
        assert_eq!(ans.media[0].formats, ["0"]);
        assert!(!ans.media[0].rtcp_mux());
        assert_eq!(ans.media[0].direction(), Direction::SendRecv);
        Ok(())
    }

    #[test]
    fn sdp_answer_polycom_skips_unsupported() -> TestResult {
        let offer = sdp(
            "v=0\r\no=- 1 1 IN IP4 10.1.1.5\r\ns=Polycom IP Phone\r\nc=IN IP4 10.1.1.5\r\nt=0 0\r\n\
m=audio 2222 RTP/AVP 115 102 9 0 8 18 13 127\r\n\
a=rtpmap:115 G7221/32000\r\na=fmtp:115 bitrate=48000\r\na=rtpmap:102 G7221/16000\r\n\
a=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:18 G729/8000\r\n\
a=rtpmap:127 telephone-event/8000\r\na=rtcp:2225\r\na=sendrecv\r\n",
        );
        let (ans, neg) = SdpSession::new(1).answer(&offer, &local())?;
        let neg = neg.ok_or("no audio")?;
        assert_eq!((neg.codec, neg.pt), (AudioCodec::G722, 9));
        assert_eq!(neg.dtmf_pt, Some(127));
        assert_eq!(neg.cn_pt, Some(13));
        assert_eq!(neg.remote_rtcp, Some("10.1.1.5:2225".parse()?));
        assert_eq!(ans.media[0].formats, ["9", "127", "13"]);
        Ok(())
    }

    #[test]
    fn sdp_answer_follows_offerer_order() -> TestResult {
        let offer = sdp(
            "v=0\r\no=- 1 1 IN IP4 10.1.1.5\r\ns=-\r\nc=IN IP4 10.1.1.5\r\nt=0 0\r\n\
m=audio 2222 RTP/AVP 8 0 96\r\na=rtpmap:96 opus/48000/2\r\n",
        );
        let (_, neg) = SdpSession::new(1).answer(&offer, &local())?;
        assert_eq!(neg.ok_or("no audio")?.codec, AudioCodec::Pcma);
        Ok(())
    }

    #[test]
    fn sdp_answer_ptime_rounding() -> TestResult {
        for (offered, expect) in [("30", 20), ("40", 40), ("60", 60), ("90", 60), ("10", 20)] {
            let offer = sdp(&format!(
                "v=0\r\no=- 1 1 IN IP4 10.1.1.5\r\ns=-\r\nc=IN IP4 10.1.1.5\r\nt=0 0\r\n\
m=audio 2222 RTP/AVP 0\r\na=ptime:{offered}\r\n"
            ));
            let (ans, neg) = SdpSession::new(1).answer(&offer, &local())?;
            assert_eq!(neg.ok_or("no audio")?.ptime, expect, "ptime {offered}");
            assert_eq!(ans.media[0].ptime(), Some(expect));
        }
        let offer = sdp(
            "v=0\r\no=- 1 1 IN IP4 10.1.1.5\r\ns=-\r\nc=IN IP4 10.1.1.5\r\nt=0 0\r\n\
m=audio 2222 RTP/AVP 0\r\na=ptime:60\r\na=maxptime:40\r\n",
        );
        let (_, neg) = SdpSession::new(1).answer(&offer, &local())?;
        assert_eq!(neg.ok_or("no audio")?.ptime, 40);
        Ok(())
    }

    #[test]
    fn sdp_answer_declines_video_and_extra_audio() -> TestResult {
        let offer = sdp(
            "v=0\r\no=- 1 1 IN IP4 10.1.1.5\r\ns=-\r\nc=IN IP4 10.1.1.5\r\nt=0 0\r\n\
m=video 3000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
m=audio 2000 RTP/SAVP 0\r\n\
m=audio 2222 RTP/AVP 0\r\n\
m=audio 2444 RTP/AVP 8\r\n\
m=application 5000 UDP/BFCP *\r\n",
        );
        let (ans, neg) = SdpSession::new(1).answer(&offer, &local())?;
        let ports: Vec<u16> = ans.media.iter().map(|m| m.port).collect();
        assert_eq!(ports, [0, 0, 20000, 0, 0]);
        assert_eq!(ans.media[0].formats, ["96"]);
        assert_eq!(ans.media[0].kind, MediaKind::Video);
        assert_eq!(ans.media[4].formats, ["*"]);
        assert_eq!(
            neg.ok_or("no audio")?.remote,
            Some("10.1.1.5:2222".parse()?)
        );
        Ok(())
    }

    #[test]
    fn sdp_answer_no_common_codec() {
        let offer = sdp(
            "v=0\r\no=- 1 1 IN IP4 10.1.1.5\r\ns=-\r\nc=IN IP4 10.1.1.5\r\nt=0 0\r\n\
m=audio 2222 RTP/AVP 18 4\r\nm=video 3000 RTP/AVP 96\r\n",
        );
        assert_eq!(
            SdpSession::new(1).answer(&offer, &local()).map(|_| ()),
            Err(OfferAnswerError::NoCommonCodec)
        );
        let video_only =
            sdp("v=0\r\no=- 1 1 IN IP4 10.1.1.5\r\ns=-\r\nt=0 0\r\nm=video 3000 RTP/AVP 96\r\n");
        assert_eq!(
            SdpSession::new(1).answer(&video_only, &local()).map(|_| ()),
            Err(OfferAnswerError::NoCommonCodec)
        );
    }

    const BARESIP_AV: &str = "v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\n\
m=audio 10000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
m=video 10002 RTP/AVP 100 96\r\nb=AS:800\r\na=rtpmap:100 VP8/90000\r\n\
a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=0;profile-level-id=42e01f\r\n\
a=rtcp-fb:* nack pli\r\na=sendrecv\r\n";

    #[test]
    fn sdp_answer_accepts_h264_video_when_we_have_a_port() -> TestResult {
        let mut s = SdpSession::new(5);
        let local = LocalMedia {
            video_port: Some(20002),
            ..local()
        };
        let (ans, neg) = s.answer(&sdp(BARESIP_AV), &local)?;
        assert!(neg.is_some());
        let v = s.video().ok_or("no video")?;
        assert_eq!(v.h264.pt, 96);
        assert_eq!(v.h264.params.packetization_mode, 0);
        assert!(v.pli && !v.fir && !v.rtcp_mux);
        assert_eq!(v.remote, Some("10.0.0.9:10002".parse()?));
        assert_eq!(v.remote_rtcp, Some("10.0.0.9:10003".parse()?));
        assert_eq!(v.direction, Direction::SendRecv);
        assert_eq!(v.h264.remote_bandwidth_kbps, Some(760));
        let m = &ans.media[1];
        assert_eq!((m.kind.clone(), m.port), (MediaKind::Video, 20002));
        assert_eq!(m.formats, ["96"]);
        assert_eq!(
            m.fmtp(96),
            Some("profile-level-id=42e01f;packetization-mode=0;level-asymmetry-allowed=1")
        );
        assert_eq!(sdp(&ans.to_string()), ans);

        // Without a video port, video is declined and forgotten.
        let (ans, _) = s.answer(&sdp(BARESIP_AV), &super::tests::local())?;
        assert_eq!(ans.media[1].port, 0);
        assert!(s.video().is_none());
        Ok(())
    }

    #[test]
    fn sdp_offer_with_video_and_answer_in_ack() -> TestResult {
        let mut s = SdpSession::new(9);
        let local = LocalMedia {
            video_port: Some(30002),
            ..local()
        };
        let ours = s.offer(&local);
        assert_eq!(ours.media.len(), 2);
        assert_eq!(ours.media[1].formats, ["96", "97"]);
        assert_eq!(sdp(&ours.to_string()), ours);
        let answer = sdp(
            "v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\n\
m=audio 10000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
m=video 10002 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n\
a=fmtp:97 profile-level-id=42e01e;packetization-mode=0\r\na=rtcp-fb:97 ccm fir\r\na=rtcp-mux\r\n",
        );
        assert!(s.process_answer(&ours, &answer)?.is_some());
        let v = s.video().ok_or("no video")?;
        assert_eq!(v.h264.pt, 97);
        assert!(v.fir && !v.pli && v.rtcp_mux);
        assert_eq!(v.remote_rtcp, v.remote);
        Ok(())
    }

    #[test]
    fn sdp_hold_and_resume_reoffers() -> TestResult {
        let mut s = SdpSession::new(7);
        let base = "v=0\r\no=- 1 1 IN IP4 10.1.1.5\r\ns=-\r\nc=IN IP4 10.1.1.5\r\nt=0 0\r\nm=audio 2222 RTP/AVP 0\r\n";
        let (a1, _) = s.answer(&sdp(base), &local())?;

        // RFC 3264 hold: sendonly → we answer recvonly, and only receive.
        let (a2, n2) = s.answer(&sdp(&format!("{base}a=sendonly\r\n")), &local())?;
        let n2 = n2.ok_or("no audio")?;
        assert_eq!(n2.direction, Direction::RecvOnly);
        assert_eq!(a2.media[0].direction(), Direction::RecvOnly);
        assert_eq!(a2.origin.version, a1.origin.version + 1);

        // inactive → inactive
        let (_, n) = s.answer(&sdp(&format!("{base}a=inactive\r\n")), &local())?;
        assert_eq!(n.ok_or("no audio")?.direction, Direction::Inactive);

        // recvonly → sendonly
        let (_, n) = s.answer(&sdp(&format!("{base}a=recvonly\r\n")), &local())?;
        assert_eq!(n.ok_or("no audio")?.direction, Direction::SendOnly);

        // RFC 2543 hold: c=0.0.0.0, nowhere to send.
        let held = base.replace("c=IN IP4 10.1.1.5", "c=IN IP4 0.0.0.0");
        let (a3, n3) = s.answer(&sdp(&held), &local())?;
        let n3 = n3.ok_or("no audio")?;
        assert_eq!(n3.remote, None);
        assert_eq!(n3.remote_rtcp, None);
        assert_eq!(n3.direction, Direction::RecvOnly);
        assert_eq!(a3.media[0].direction(), Direction::RecvOnly);

        // Resume.
        let (a4, n4) = s.answer(&sdp(base), &local())?;
        let n4 = n4.ok_or("no audio")?;
        assert_eq!(n4.direction, Direction::SendRecv);
        assert_eq!(n4.remote, Some("10.1.1.5:2222".parse()?));
        assert!(a4.origin.version > a3.origin.version);

        // Same offer again → identical answer, same version (§8).
        let (a5, _) = s.answer(&sdp(base), &local())?;
        assert_eq!(a5.origin.version, a4.origin.version);
        assert_eq!(a5.origin.session_id, 7);
        Ok(())
    }

    #[test]
    fn sdp_stream_removed_gives_no_audio() -> TestResult {
        let offer = sdp(
            "v=0\r\no=- 1 1 IN IP4 10.1.1.5\r\ns=-\r\nc=IN IP4 10.1.1.5\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n",
        );
        let (ans, neg) = SdpSession::new(1).answer(&offer, &local())?;
        assert!(neg.is_none());
        assert_eq!(ans.media[0].port, 0);
        Ok(())
    }

    #[test]
    fn sdp_late_offer_roundtrip() -> TestResult {
        let mut ours = SdpSession::new(99);
        let offer = ours.offer(&local());
        let m = &offer.media[0];
        assert_eq!(m.formats, ["111", "9", "0", "8", "101", "102"]);
        assert!(m.rtcp_mux());
        assert_eq!(m.ptime(), Some(20));
        assert_eq!(m.direction(), Direction::SendRecv);
        assert_eq!(m.fmtp(111), Some("minptime=10;useinbandfec=1"));

        // The peer answers it with our own answerer: it keeps our preference.
        let text = offer.to_string();
        let mut peer = SdpSession::new(5);
        let peer_local = LocalMedia {
            addr: "10.9.9.9".parse()?,
            audio_port: 4000,
            ..local()
        };
        let (answer, peer_neg) = peer.answer(&sdp(&text), &peer_local)?;
        let neg = ours.process_answer(&offer, &answer)?.ok_or("no audio")?;
        let peer_neg = peer_neg.ok_or("no audio")?;
        assert_eq!(neg.codec, AudioCodec::Opus);
        assert_eq!(neg.pt, 111);
        assert_eq!(neg.dtmf_pt, Some(102));
        assert!(neg.rtcp_mux && neg.opus_fec);
        assert_eq!(neg.remote, Some("10.9.9.9:4000".parse()?));
        assert_eq!(peer_neg.remote, Some("10.0.0.1:20000".parse()?));
        assert_eq!(neg.direction, Direction::SendRecv);

        // A PCMU-only, recvonly answer from a sipp-like peer.
        let ans = sdp(
            "v=0\r\no=- 1 1 IN IP4 10.1.1.5\r\ns=-\r\nc=IN IP4 10.1.1.5\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=recvonly\r\n",
        );
        let neg = ours.process_answer(&offer, &ans)?.ok_or("no audio")?;
        assert_eq!((neg.codec, neg.dtmf_pt), (AudioCodec::Pcmu, Some(101)));
        assert_eq!(neg.direction, Direction::SendOnly);
        assert!(!neg.rtcp_mux);

        let two = sdp(
            "v=0\r\no=- 1 1 IN IP4 10.1.1.5\r\ns=-\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\nm=video 0 RTP/AVP 96\r\n",
        );
        assert!(matches!(
            ours.process_answer(&offer, &two),
            Err(OfferAnswerError::MediaCountMismatch { .. })
        ));
        let bad =
            sdp("v=0\r\no=- 1 1 IN IP4 10.1.1.5\r\ns=-\r\nt=0 0\r\nm=audio 6000 RTP/AVP 18\r\n");
        assert_eq!(
            ours.process_answer(&offer, &bad),
            Err(OfferAnswerError::NoCommonCodec)
        );
        Ok(())
    }

    #[test]
    fn sdp_codec_tables() {
        assert_eq!(AudioCodec::G722.clock_rate(), 8000);
        assert_eq!(AudioCodec::G722.sample_rate(), 16000);
        assert_eq!(AudioCodec::Opus.rtpmap(111).to_value(), "111 opus/48000/2");
        let odd = RtpMap {
            pt: 96,
            encoding: "OPUS".into(),
            clock_rate: 48000,
            channels: None,
        };
        assert_eq!(AudioCodec::from_rtpmap(&odd), Some(AudioCodec::Opus));
        let wrong = RtpMap {
            pt: 96,
            encoding: "PCMU".into(),
            clock_rate: 16000,
            channels: None,
        };
        assert_eq!(AudioCodec::from_rtpmap(&wrong), None);
    }

    /// A Polycom-style offer: audio, people video, content video and BFCP.
    const CONTENT_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.7\r\ns=-\r\nc=IN IP4 10.0.0.7\r\nt=0 0\r\n\
m=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
m=video 49172 RTP/AVP 109\r\na=rtpmap:109 H264/90000\r\na=fmtp:109 profile-level-id=42e01f;packetization-mode=1\r\na=rtcp-fb:109 ccm fir\r\n\
m=video 49174 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\na=fmtp:97 profile-level-id=42e01f;packetization-mode=1\r\na=rtcp-fb:97 nack pli\r\na=content:slides\r\na=label:12\r\na=sendrecv\r\n\
m=application 50000 TCP/BFCP *\r\na=floorctrl:c-only\r\na=setup:active\r\na=connection:new\r\na=floorid:2 mstrm:12\r\n";

    fn with_content(local: LocalMedia) -> LocalMedia {
        LocalMedia {
            video_port: Some(20002),
            content: Some(LocalContent {
                port: 20004,
                bfcp_port: 5072,
                conference_id: 4711,
                user_id: 3,
                floor: 1,
            }),
            ..local
        }
    }

    #[test]
    fn content_and_its_floor_are_answered_together() -> TestResult {
        let mut s = SdpSession::new(1);
        let (answer, audio) = s.answer(&sdp(CONTENT_OFFER), &with_content(local()))?;
        assert!(audio.is_some());
        let text = answer.to_string();
        let m: Vec<&MediaDescription> = answer.media.iter().collect();
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].port, 20002, "people video");
        assert!(!sdp_bfcp::is_content(m[1]));
        assert_eq!(m[2].port, 20004, "content: {text}");
        assert!(sdp_bfcp::is_content(m[2]));
        assert_eq!(sdp_bfcp::label(m[2]), Some("12"));
        assert_eq!((m[3].port, m[3].proto.as_str()), (5072, "TCP/BFCP"));
        for line in [
            "a=floorctrl:s-only",
            "a=setup:passive",
            "a=connection:new",
            "a=confid:4711",
            "a=userid:3",
            "a=floorid:1 mstrm:12",
            "a=bfcpver:1",
        ] {
            assert!(text.contains(line), "{line} missing in {text}");
        }
        let content = s.content().ok_or("no content")?;
        assert_eq!(content.h264.pt, 97);
        assert_eq!(content.remote, Some("10.0.0.7:49174".parse()?));
        assert!(content.pli && !content.fir);
        let people = s.video().ok_or("no people video")?;
        assert_eq!(people.h264.pt, 109);
        let bfcp = s.bfcp().ok_or("no bfcp")?;
        assert!(!bfcp.connect);
        assert_eq!((bfcp.conference_id, bfcp.user_id, bfcp.floor), (4711, 3, 1));
        assert_eq!(bfcp.label, "12");
        assert_eq!(bfcp.version, 1);
        Ok(())
    }

    #[test]
    fn content_without_a_floor_or_without_our_support_is_declined() -> TestResult {
        // No BFCP m-line: the content m-line cannot be governed.
        let no_bfcp = CONTENT_OFFER
            .split("m=application")
            .next()
            .ok_or("split")?
            .to_owned();
        let mut s = SdpSession::new(1);
        let (answer, _) = s.answer(&sdp(&no_bfcp), &with_content(local()))?;
        assert_eq!(answer.media.len(), 3);
        assert_eq!(answer.media[2].port, 0);
        assert!(s.content().is_none() && s.bfcp().is_none());
        // We have no content: both declined, m-line count kept.
        let (answer, _) = s.answer(&sdp(CONTENT_OFFER), &local())?;
        assert_eq!(answer.media.len(), 4);
        assert_eq!((answer.media[2].port, answer.media[3].port), (0, 0));
        // A server-only offerer (it wants to be the server), TLS, or a
        // second video m-line that is not slides: declined.
        for offer in [
            CONTENT_OFFER.replace("a=floorctrl:c-only", "a=floorctrl:s-only"),
            CONTENT_OFFER.replace("TCP/BFCP", "TCP/TLS/BFCP"),
            CONTENT_OFFER.replace("a=content:slides", "a=content:main"),
        ] {
            let (answer, _) = s.answer(&sdp(&offer), &with_content(local()))?;
            assert_eq!(answer.media[3].port, 0, "{offer}");
            assert!(s.content().is_none(), "{offer}");
        }
        Ok(())
    }

    #[test]
    fn a_passive_bfcp_offerer_is_connected_to() -> TestResult {
        let offer = CONTENT_OFFER.replace("a=setup:active", "a=setup:passive");
        let mut s = SdpSession::new(1);
        let (answer, _) = s.answer(&sdp(&offer), &with_content(local()))?;
        assert_eq!(answer.media[3].port, 9);
        assert!(answer.to_string().contains("a=setup:active"));
        let bfcp = s.bfcp().ok_or("no bfcp")?;
        assert!(bfcp.connect);
        assert_eq!(bfcp.remote, Some("10.0.0.7:50000".parse()?));
        Ok(())
    }

    #[test]
    fn our_offer_carries_content_and_its_floor() -> TestResult {
        let mut ours = SdpSession::new(1);
        let offer = ours.offer(&with_content(local()));
        let text = offer.to_string();
        assert_eq!(offer.media.len(), 4, "{text}");
        assert!(sdp_bfcp::is_content(&offer.media[2]));
        let bfcp = BfcpMedia::from_media(&offer.media[3]).ok_or("no BFCP m-line")?;
        assert_eq!(bfcp.roles, vec!["s-only"]);
        assert_eq!((bfcp.conference_id, bfcp.user_id), (Some(4711), Some(3)));
        // A room system answers as a client and active.
        let answer = text
            .replace("a=floorctrl:s-only", "a=floorctrl:c-only")
            .replace("a=setup:passive", "a=setup:active");
        ours.process_answer(&offer, &sdp(&answer))?;
        assert!(ours.content().is_some());
        let b = ours.bfcp().ok_or("no bfcp")?;
        assert!(!b.connect);
        assert_eq!((b.conference_id, b.user_id, b.floor), (4711, 3, 1));
        // Declined content: no floor either.
        let declined = answer.replacen("m=application 5072", "m=application 0", 1);
        ours.process_answer(&offer, &sdp(&declined))?;
        assert!(ours.content().is_none() && ours.bfcp().is_none());
        Ok(())
    }
}
