//! SDP (RFC 4566 / 3264), the two halves a UAC needs: write an offer (audio
//! with one codec, optionally H.264 video, optionally a presentation channel
//! as room systems offer it — a second H.264 m-line `a=content:slides`
//! (RFC 4796) governed by BFCP (RFC 8856)), and read the answer's address,
//! port and chosen codec for each.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::codec::Codec;
use crate::error::{Error, Result};

/// The telephone-event payload type of an answer (RFC 4733), if it has one.
pub fn telephone_event_pt(sdp: &str) -> Option<u8> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a=rtpmap:"))
        .find_map(|v| {
            let (pt, enc) = v.split_once(' ')?;
            enc.to_ascii_lowercase()
                .starts_with("telephone-event/")
                .then(|| pt.trim().parse().ok())
                .flatten()
        })
}

/// The telephone-event payload type we offer alongside the codec.
pub const TELEPHONE_EVENT_PT: u8 = 101;

/// The H.264 payload type we offer.
pub const H264_PT: u8 = 96;

/// What we offer for H.264 (RFC 6184): Constrained Baseline level 3.1
/// (up to 1280x720 at 30 fps), packetization-mode 1 (single NAL, STAP-A,
/// FU-A).
pub const H264_FMTP: &str = "profile-level-id=42e01f;packetization-mode=1";

/// The video half of an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoOffer {
    /// Our video RTP port (RTCP shares it).
    pub port: u16,
    /// Our sending bitrate, for `b=AS` (kbit/s, rounded up).
    pub bitrate_bps: u32,
}

/// An audio-only offer of exactly one codec (plus telephone-event), so the
/// answer has no choice to make. RTCP is asked to share the RTP port
/// (`a=rtcp-mux`, and `a=rtcp:` for answerers that ignore rtcp-mux), so one
/// socket per leg is enough.
pub fn offer(
    local_ip: IpAddr,
    rtp_port: u16,
    codec: Codec,
    ptime_ms: u32,
    session_id: u64,
) -> String {
    offer_with_video(local_ip, rtp_port, codec, ptime_ms, session_id, None)
}

/// [`offer`], plus — with `video` — a second m-line offering H.264 only
/// ([`H264_PT`], [`H264_FMTP`]) with PLI and FIR feedback, on its own port,
/// RTCP multiplexed on it as for audio. The profile is RTP/AVP with
/// `a=rtcp-fb`, as SIP room systems offer it (an RTP/AVPF offer is refused by
/// AVP-only answerers); plain `nack` is not offered because we do not
/// retransmit.
pub fn offer_with_video(
    local_ip: IpAddr,
    rtp_port: u16,
    codec: Codec,
    ptime_ms: u32,
    session_id: u64,
    video: Option<VideoOffer>,
) -> String {
    let mut s = audio_offer(local_ip, rtp_port, codec, ptime_ms, session_id);
    if let Some(video) = video {
        write_video(&mut s, H264_PT, video.port, video.bitrate_bps, true);
        s.push_str("a=sendrecv\r\n");
    }
    s
}

/// The payload type of H.264 on the content m-line (as Polycom and Cisco
/// room systems number it, apart from the main video's).
pub const CONTENT_PT: u8 = 97;

/// The presentation half of an offer: a second video m-line for content
/// and the BFCP m-line that governs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentOffer {
    /// Our content RTP port (RTCP shares it).
    pub port: u16,
    /// Our content bitrate, for `b=AS` (kbit/s, rounded up).
    pub bitrate_bps: u32,
    /// `a=label` of the content m-line, named by `a=floorid`'s `mstrm`.
    pub label: String,
    /// The floor we offer to request (`a=floorid`).
    pub floor_id: u16,
    /// The BFCP m-line's port. We connect (`a=setup:active`), so it is not
    /// listened on: 9 (discard) as room systems write it.
    pub bfcp_port: u16,
}

/// [`offer_with_video`] with a presentation channel, as Polycom and Cisco
/// room systems offer it: audio, main video, then content video
/// (`a=content:slides`, `a=label`, H.264 at [`CONTENT_PT`], PLI and FIR, no
/// TMMBR) and an `m=application ... TCP/BFCP *` line in which we are the
/// floor participant (`a=floorctrl:c-only`) that connects (`a=setup:active`,
/// `a=connection:new`) and speaks BFCP version 1. Content without main video
/// is not something room systems offer, hence both are required.
pub fn offer_with_content(
    local_ip: IpAddr,
    rtp_port: u16,
    codec: Codec,
    ptime_ms: u32,
    session_id: u64,
    video: VideoOffer,
    content: &ContentOffer,
) -> String {
    let mut s = offer_with_video(local_ip, rtp_port, codec, ptime_ms, session_id, Some(video));
    let ContentOffer {
        port,
        bitrate_bps,
        label,
        floor_id,
        bfcp_port,
    } = content;
    write_video(&mut s, CONTENT_PT, *port, *bitrate_bps, false);
    let _ = write!(
        s,
        "a=content:slides\r\n\
         a=label:{label}\r\n\
         a=sendrecv\r\n\
         m=application {bfcp_port} TCP/BFCP *\r\n\
         a=floorctrl:c-only\r\n\
         a=setup:active\r\n\
         a=connection:new\r\n\
         a=floorid:{floor_id} mstrm:{label}\r\n\
         a=bfcpver:1\r\n"
    );
    s
}

/// The session and audio lines of every offer.
fn audio_offer(
    local_ip: IpAddr,
    rtp_port: u16,
    codec: Codec,
    ptime_ms: u32,
    session_id: u64,
) -> String {
    let family = if local_ip.is_ipv4() { "IP4" } else { "IP6" };
    let pt = codec.payload_type();
    let mut s = String::with_capacity(1_000);
    let _ = write!(
        s,
        "v=0\r\n\
         o=tandem-loadtest {session_id} {session_id} IN {family} {local_ip}\r\n\
         s=tandem-loadtest\r\n\
         c=IN {family} {local_ip}\r\n\
         t=0 0\r\n\
         m=audio {rtp_port} RTP/AVP {pt} {TELEPHONE_EVENT_PT}\r\n"
    );
    match codec {
        Codec::Opus => {
            let _ = write!(
                s,
                "a=rtpmap:{pt} opus/48000/2\r\na=fmtp:{pt} useinbandfec=1;minptime=10\r\n"
            );
        }
        Codec::Pcmu | Codec::Pcma => {
            let _ = write!(s, "a=rtpmap:{pt} {}/8000\r\n", codec.encoding_name());
        }
    }
    let _ = write!(
        s,
        "a=rtpmap:{TELEPHONE_EVENT_PT} telephone-event/{}\r\n\
         a=fmtp:{TELEPHONE_EVENT_PT} 0-15\r\n\
         a=ptime:{ptime_ms}\r\n\
         a=rtcp:{rtp_port}\r\n\
         a=rtcp-mux\r\n\
         a=sendrecv\r\n",
        // RFC 4733 events at the codec's clock rate (RFC 7587 §7 for Opus).
        codec.clock_rate()
    );
    s
}

/// An H.264 m-line up to (not including) its direction: mode 1, PLI and
/// FIR (and TMMBR with `tmmbr`), RTCP multiplexed.
fn write_video(s: &mut String, pt: u8, port: u16, bitrate_bps: u32, tmmbr: bool) {
    let kbps = bitrate_bps.div_ceil(1000);
    let _ = write!(
        s,
        "m=video {port} RTP/AVP {pt}\r\n\
         b=AS:{kbps}\r\n\
         a=rtpmap:{pt} H264/90000\r\n\
         a=fmtp:{pt} {H264_FMTP}\r\n\
         a=rtcp-fb:{pt} nack pli\r\n\
         a=rtcp-fb:{pt} ccm fir\r\n"
    );
    if tmmbr {
        let _ = write!(s, "a=rtcp-fb:{pt} ccm tmmbr\r\n");
    }
    let _ = write!(s, "a=rtcp:{port}\r\na=rtcp-mux\r\n");
}

/// What we take from an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Where to send RTP (media-level `c=` over session-level).
    pub rtp: SocketAddr,
    /// The first format of the answer's audio line that we recognise.
    pub payload_type: u8,
    pub codec: Codec,
    /// `a=ptime`, when given.
    pub ptime_ms: Option<u32>,
    /// `sendrecv`, `sendonly`, `recvonly` or `inactive` (default `sendrecv`).
    pub direction: String,
}

fn parse_connection(value: &str) -> Result<IpAddr> {
    // c=IN IP4 127.0.0.1[/ttl]
    let mut parts = value.split_whitespace();
    let (Some("IN"), Some(_), Some(addr)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Error::parse("SDP c= line", value.to_owned()));
    };
    let addr = addr.split('/').next().unwrap_or(addr);
    addr.parse()
        .map_err(|_| Error::parse("SDP c= address", addr.to_owned()))
}

/// Reads the first active audio stream of an SDP answer.
pub fn parse_answer(sdp: &str) -> Result<Answer> {
    let mut session_addr: Option<IpAddr> = None;
    // The audio section we use: (port, formats, media c=, rtpmaps, ptime, direction)
    let mut in_audio = false;
    let mut found = false;
    let mut port = 0u16;
    let mut formats: Vec<u8> = Vec::new();
    let mut media_addr: Option<IpAddr> = None;
    let mut rtpmap: HashMap<u8, String> = HashMap::new();
    let mut ptime = None;
    let mut direction = "sendrecv".to_owned();
    let mut seen_media = false;

    for line in sdp.lines() {
        let line = line.trim_end();
        let Some((kind, value)) = line.split_once('=') else {
            continue;
        };
        match kind {
            "m" => {
                seen_media = true;
                if found {
                    // We already have our audio stream; later ones are ignored.
                    in_audio = false;
                    continue;
                }
                let mut parts = value.split_whitespace();
                let media = parts.next().unwrap_or_default();
                let p: u16 = parts
                    .next()
                    .and_then(|p| p.split('/').next())
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| Error::parse("SDP m= line", value.to_owned()))?;
                let _proto = parts.next();
                in_audio = media == "audio" && p != 0;
                if in_audio {
                    found = true;
                    port = p;
                    formats = parts.filter_map(|f| f.parse().ok()).collect();
                }
            }
            "c" if !seen_media => session_addr = Some(parse_connection(value)?),
            "c" if in_audio => media_addr = Some(parse_connection(value)?),
            "a" if in_audio || !seen_media => {
                let (name, rest) = value.split_once(':').unwrap_or((value, ""));
                match name {
                    "rtpmap" if in_audio => {
                        let (pt, enc) = rest.split_once(' ').unwrap_or((rest, ""));
                        if let Ok(pt) = pt.parse() {
                            rtpmap.insert(pt, enc.split('/').next().unwrap_or_default().to_owned());
                        }
                    }
                    "ptime" if in_audio => ptime = rest.trim().parse().ok(),
                    "sendrecv" | "sendonly" | "recvonly" | "inactive" => {
                        direction = name.to_owned()
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if !found {
        return Err(Error::Negotiation(
            "no active audio stream in the answer".into(),
        ));
    }
    let addr = media_addr
        .or(session_addr)
        .ok_or_else(|| Error::Negotiation("no c= line for the audio stream".into()))?;
    let (payload_type, codec) = formats
        .iter()
        .find_map(|&pt| {
            let by_name = rtpmap.get(&pt).and_then(|n| Codec::from_encoding_name(n));
            let by_static = match pt {
                0 => Some(Codec::Pcmu),
                8 => Some(Codec::Pcma),
                _ => None,
            };
            by_name
                .or(if rtpmap.contains_key(&pt) {
                    None
                } else {
                    by_static
                })
                .map(|c| (pt, c))
        })
        .ok_or_else(|| Error::Negotiation(format!("no known codec among formats {formats:?}")))?;
    Ok(Answer {
        rtp: SocketAddr::new(addr, port),
        payload_type,
        codec,
        ptime_ms: ptime,
        direction,
    })
}

/// What we take from the answer's video m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoAnswer {
    /// Where to send video RTP (media-level `c=` over session-level).
    pub rtp: SocketAddr,
    /// Where to send video RTCP: the RTP address under `a=rtcp-mux`, else
    /// `a=rtcp:`'s port, else RTP port + 1 (RFC 3550 §11).
    pub rtcp: SocketAddr,
    /// The answer's H.264 payload type.
    pub payload_type: u8,
    /// Its `a=fmtp` parameters as given (empty if none).
    pub fmtp: String,
    /// `profile-level-id`, lowercased, when given.
    pub profile_level_id: Option<String>,
    /// `sendrecv`, `sendonly`, `recvonly` or `inactive` (default `sendrecv`,
    /// or the session-level one), from the answerer's side.
    pub direction: String,
    /// `a=rtcp-fb` values for our payload type (or `*`), e.g. `nack pli`.
    pub rtcp_fb: Vec<String>,
    /// `b=AS` in kbit/s, when given.
    pub bandwidth_kbps: Option<u32>,
}

impl VideoAnswer {
    /// Whether we should send: the answerer receives.
    pub fn we_send(&self) -> bool {
        matches!(self.direction.as_str(), "sendrecv" | "recvonly")
    }

    /// Whether we should expect pictures: the answerer sends.
    pub fn we_receive(&self) -> bool {
        matches!(self.direction.as_str(), "sendrecv" | "sendonly")
    }
}

/// One `name=value;name=value` fmtp parameter, case-insensitively.
pub fn fmtp_param<'a>(fmtp: &'a str, name: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// One media section of an SDP body: its m-line and the lines under it.
struct Section<'a> {
    media: &'a str,
    /// `None`: not a number (an error only if the section is used).
    port: Option<u16>,
    proto: &'a str,
    formats: Vec<&'a str>,
    /// `(kind, value)` of each line after the m-line.
    lines: Vec<(&'a str, &'a str)>,
}

impl<'a> Section<'a> {
    fn attributes(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.lines
            .iter()
            .filter(|(kind, _)| *kind == "a")
            .map(|(_, v)| v.split_once(':').unwrap_or((v, "")))
    }

    fn attribute(&self, name: &str) -> Option<&'a str> {
        self.attributes()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    /// RFC 4796: `a=content:slides` (the values are a comma list).
    fn is_slides(&self) -> bool {
        self.media == "video"
            && self
                .attributes()
                .filter(|(n, _)| n.eq_ignore_ascii_case("content"))
                .flat_map(|(_, v)| v.split(','))
                .any(|v| v.trim().eq_ignore_ascii_case("slides"))
    }

    fn port(&self) -> Result<u16> {
        self.port.ok_or_else(|| {
            Error::parse(
                "SDP m= line",
                format!("{} {} without a port number", self.media, self.proto),
            )
        })
    }

    /// Media-level `c=` over the session's.
    fn address(&self, session: &Session) -> Result<Option<IpAddr>> {
        let mut addr = None;
        for (kind, value) in &self.lines {
            if *kind == "c" {
                addr = Some(parse_connection(value)?);
            }
        }
        Ok(addr.or(session.addr))
    }
}

/// The session-level lines we use.
#[derive(Default)]
struct Session {
    addr: Option<IpAddr>,
    direction: Option<String>,
}

fn is_direction(name: &str) -> bool {
    matches!(name, "sendrecv" | "sendonly" | "recvonly" | "inactive")
}

/// Cuts an SDP body into its session part and its media sections.
fn sections(sdp: &str) -> Result<(Session, Vec<Section<'_>>)> {
    let mut session = Session::default();
    let mut media: Vec<Section<'_>> = Vec::new();
    for line in sdp.lines() {
        let line = line.trim_end();
        let Some((kind, value)) = line.split_once('=') else {
            continue;
        };
        if kind == "m" {
            let mut parts = value.split_whitespace();
            media.push(Section {
                media: parts.next().unwrap_or_default(),
                port: parts
                    .next()
                    .and_then(|p| p.split('/').next())
                    .and_then(|p| p.parse().ok()),
                proto: parts.next().unwrap_or_default(),
                formats: parts.collect(),
                lines: Vec::new(),
            });
            continue;
        }
        match media.last_mut() {
            Some(section) => section.lines.push((kind, value)),
            None => match kind {
                "c" => session.addr = Some(parse_connection(value)?),
                "a" if is_direction(value) => session.direction = Some(value.to_owned()),
                _ => {}
            },
        }
    }
    Ok((session, media))
}

/// Reads the answer's main video m-line: the first `m=video` that is not
/// content (`a=content:slides`, RFC 4796), whatever comes after it.
/// `Ok(None)`: the answerer refused video (port 0). An answer without any
/// video m-line breaks RFC 3264 §6 (one m-line per offered stream), and an
/// accepted line we cannot use (no H.264, or not packetization-mode 1, the
/// only mode we offered) is unusable: both are errors, so a bridge bug is
/// reported rather than papered over.
pub fn parse_video_answer(sdp: &str) -> Result<Option<VideoAnswer>> {
    let (session, media) = sections(sdp)?;
    let main = media
        .iter()
        .find(|m| m.media == "video" && !m.is_slides())
        .ok_or_else(|| {
            Error::Negotiation("video was offered but the answer has no video m-line".into())
        })?;
    video_section(&session, main, "video")
}

/// One H.264 m-line of an answer (`what` names it in errors).
fn video_section(
    session: &Session,
    section: &Section<'_>,
    what: &str,
) -> Result<Option<VideoAnswer>> {
    let port = section.port()?;
    if port == 0 {
        return Ok(None);
    }
    let mut rtpmap: HashMap<u8, String> = HashMap::new();
    let mut fmtp: HashMap<u8, String> = HashMap::new();
    let mut fb: Vec<(String, String)> = Vec::new();
    let mut direction: Option<String> = None;
    let mut rtcp_mux = false;
    let mut rtcp_port: Option<u16> = None;
    let mut bandwidth = None;
    for (kind, value) in &section.lines {
        match *kind {
            "b" => {
                if let Some(("AS", kbps)) = value.split_once(':') {
                    bandwidth = kbps.trim().parse().ok();
                }
            }
            "a" => {
                let (name, rest) = value.split_once(':').unwrap_or((value, ""));
                let (pt, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                match name {
                    "rtpmap" => {
                        if let Ok(pt) = pt.parse() {
                            rtpmap
                                .insert(pt, tail.split('/').next().unwrap_or_default().to_owned());
                        }
                    }
                    "fmtp" => {
                        if let Ok(pt) = pt.parse() {
                            fmtp.insert(pt, tail.trim().to_owned());
                        }
                    }
                    "rtcp-fb" => fb.push((pt.to_owned(), tail.trim().to_owned())),
                    "rtcp-mux" => rtcp_mux = true,
                    "rtcp" => {
                        rtcp_port = rest.split_whitespace().next().and_then(|p| p.parse().ok())
                    }
                    _ if is_direction(name) => direction = Some(name.to_owned()),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let addr = section
        .address(session)?
        .ok_or_else(|| Error::Negotiation(format!("no c= line for the {what} stream")))?;
    let formats: Vec<u8> = section
        .formats
        .iter()
        .filter_map(|f| f.parse().ok())
        .collect();
    let payload_type = formats
        .iter()
        .copied()
        .find(|pt| {
            rtpmap
                .get(pt)
                .is_some_and(|enc| enc.eq_ignore_ascii_case("H264"))
        })
        .ok_or_else(|| {
            Error::Negotiation(format!(
                "{what} answer has no H264 among formats {formats:?} (we offered only H264)"
            ))
        })?;
    let params = fmtp.remove(&payload_type).unwrap_or_default();
    let mode = fmtp_param(&params, "packetization-mode").unwrap_or("0");
    if mode != "1" {
        return Err(Error::Negotiation(format!(
            "{what} answer has packetization-mode={mode} (fmtp \"{params}\"); we offered only mode 1"
        )));
    }
    let pt_text = payload_type.to_string();
    let rtp = SocketAddr::new(addr, port);
    let rtcp = if rtcp_mux {
        rtp
    } else {
        SocketAddr::new(addr, rtcp_port.unwrap_or(port.wrapping_add(1)))
    };
    Ok(Some(VideoAnswer {
        rtp,
        rtcp,
        payload_type,
        profile_level_id: fmtp_param(&params, "profile-level-id").map(str::to_ascii_lowercase),
        fmtp: params,
        direction: direction
            .or_else(|| session.direction.clone())
            .unwrap_or_else(|| "sendrecv".to_owned()),
        rtcp_fb: fb
            .into_iter()
            .filter(|(pt, _)| *pt == pt_text || pt == "*")
            .map(|(_, v)| v)
            .collect(),
        bandwidth_kbps: bandwidth,
    }))
}

/// How BFCP is carried (the m-line's proto).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BfcpTransport {
    /// `TCP/BFCP`: version 1, the one we speak.
    Tcp,
    /// `TCP/TLS/BFCP`.
    TcpTls,
    /// `UDP/BFCP`: version 2.
    Udp,
    /// `UDP/TLS/BFCP` (DTLS).
    UdpTls,
}

impl BfcpTransport {
    fn from_proto(proto: &str) -> Option<BfcpTransport> {
        match proto.to_ascii_uppercase().as_str() {
            "TCP/BFCP" => Some(BfcpTransport::Tcp),
            "TCP/TLS/BFCP" => Some(BfcpTransport::TcpTls),
            "UDP/BFCP" => Some(BfcpTransport::Udp),
            "UDP/TLS/BFCP" => Some(BfcpTransport::UdpTls),
            _ => None,
        }
    }
}

/// What we take from the answer's BFCP m-line (RFC 8856).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfcpAnswer {
    /// The floor control server's address: media-level `c=` over
    /// session-level, and the m-line's port.
    pub addr: SocketAddr,
    pub transport: BfcpTransport,
    /// `a=floorctrl` roles (the server answers `s-only`).
    pub floorctrl: Vec<String>,
    /// `a=setup` (RFC 4145), lowercased; `None` reads as `passive` in an
    /// answer: the server listens and we connect.
    pub setup: Option<String>,
    /// `a=connection` (`new` or `existing`), lowercased.
    pub connection: Option<String>,
    /// `a=confid`: the Conference ID of every message.
    pub conference_id: u32,
    /// `a=userid`: our User ID in every message.
    pub user_id: u16,
    /// `a=floorid` lines: a floor and the `mstrm` labels it governs.
    pub floors: Vec<(u16, Vec<String>)>,
    /// `a=bfcpver`, when given.
    pub versions: Vec<u8>,
}

impl BfcpAnswer {
    /// The floor that governs the stream labelled `label`, else the first
    /// floor named.
    pub fn floor_for(&self, label: Option<&str>) -> Option<u16> {
        label
            .and_then(|label| {
                self.floors
                    .iter()
                    .find(|(_, labels)| labels.iter().any(|l| l == label))
            })
            .or(self.floors.first())
            .map(|(floor, _)| *floor)
    }

    /// Whether we are the one to connect (the server is passive).
    pub fn we_connect(&self) -> bool {
        matches!(self.setup.as_deref(), None | Some("passive"))
    }
}

/// What the answer says of the presentation channel we offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentAnswer {
    /// The content m-line; `None`: refused (port 0).
    pub video: Option<VideoAnswer>,
    /// Its `a=label`.
    pub label: Option<String>,
    /// The BFCP m-line; `None`: refused (port 0).
    pub bfcp: Option<BfcpAnswer>,
}

impl ContentAnswer {
    /// The floor that governs the content stream.
    pub fn floor_id(&self) -> Option<u16> {
        self.bfcp.as_ref()?.floor_for(self.label.as_deref())
    }
}

/// Reads the answer's presentation channel (after [`offer_with_content`]):
/// the content m-line — the `m=video` with `a=content:slides`, or, refused,
/// the `m=video 0` after the main one (a refused line may drop its
/// attributes) — and the `m=application ... TCP/BFCP` (or `UDP/BFCP`) line.
/// Either missing breaks RFC 3264 §6 and is an error, as are an accepted
/// content line we cannot use and an accepted BFCP line without
/// `a=confid`/`a=userid` (no message could be written).
pub fn parse_content_answer(sdp: &str) -> Result<ContentAnswer> {
    let (session, media) = sections(sdp)?;
    let content = media.iter().find(|m| m.is_slides()).or_else(|| {
        media
            .iter()
            .filter(|m| m.media == "video")
            .nth(1)
            .filter(|m| m.port == Some(0))
    });
    let content = content.ok_or_else(|| {
        Error::Negotiation(
            "content was offered but the answer has no a=content:slides video m-line".into(),
        )
    })?;
    let video = video_section(&session, content, "content")?;
    let label = content.attribute("label").map(str::to_owned);
    let bfcp = media
        .iter()
        .find(|m| m.media == "application" && BfcpTransport::from_proto(m.proto).is_some())
        .ok_or_else(|| {
            Error::Negotiation("BFCP was offered but the answer has no BFCP m-line".into())
        })?;
    Ok(ContentAnswer {
        video,
        label,
        bfcp: bfcp_section(&session, bfcp)?,
    })
}

fn bfcp_section(session: &Session, section: &Section<'_>) -> Result<Option<BfcpAnswer>> {
    let port = section.port()?;
    if port == 0 {
        return Ok(None);
    }
    let transport = BfcpTransport::from_proto(section.proto)
        .ok_or_else(|| Error::Negotiation(format!("BFCP over {}", section.proto)))?;
    let addr = section
        .address(session)?
        .ok_or_else(|| Error::Negotiation("no c= line for BFCP".into()))?;
    let values = |name: &'static str| {
        section
            .attributes()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    let number = |name: &'static str| -> Result<u64> {
        let value = values(name).next().ok_or_else(|| {
            Error::Negotiation(format!("BFCP answer without a={name} (RFC 8856)"))
        })?;
        value
            .parse()
            .map_err(|_| Error::parse("SDP BFCP attribute", format!("a={name}:{value}")))
    };
    let conference_id = u32::try_from(number("confid")?)
        .map_err(|_| Error::parse("SDP BFCP attribute", "a=confid over 32 bits"))?;
    let user_id = u16::try_from(number("userid")?)
        .map_err(|_| Error::parse("SDP BFCP attribute", "a=userid over 16 bits"))?;
    let mut floors = Vec::new();
    for value in values("floorid") {
        // a=floorid:1 mstrm:3 [mstrm:4] (RFC 4583 wrote m-stream).
        let mut words = value.split_whitespace();
        let floor = words
            .next()
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| Error::parse("SDP BFCP attribute", format!("a=floorid:{value}")))?;
        let labels = words
            .filter_map(|w| {
                let (key, label) = w.split_once(':')?;
                (key.eq_ignore_ascii_case("mstrm") || key.eq_ignore_ascii_case("m-stream"))
                    .then(|| label.to_owned())
            })
            .collect();
        floors.push((floor, labels));
    }
    Ok(Some(BfcpAnswer {
        addr: SocketAddr::new(addr, port),
        transport,
        floorctrl: values("floorctrl")
            .flat_map(str::split_whitespace)
            .map(str::to_ascii_lowercase)
            .collect(),
        setup: values("setup").next().map(str::to_ascii_lowercase),
        connection: values("connection").next().map(str::to_ascii_lowercase),
        conference_id,
        user_id,
        floors,
        versions: values("bfcpver")
            .flat_map(str::split_whitespace)
            .filter_map(|v| v.parse().ok())
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn offer_names_one_codec_and_telephone_event() {
        let o = offer(IpAddr::V4(Ipv4Addr::LOCALHOST), 40_002, Codec::Opus, 20, 7);
        assert!(o.contains("m=audio 40002 RTP/AVP 111 101\r\n"));
        assert!(o.contains("a=rtpmap:111 opus/48000/2\r\n"));
        assert!(o.contains("a=fmtp:111 useinbandfec=1"));
        assert!(o.contains("c=IN IP4 127.0.0.1\r\n"));
        let u = offer(IpAddr::V4(Ipv4Addr::LOCALHOST), 5000, Codec::Pcmu, 20, 7);
        assert!(u.contains("m=audio 5000 RTP/AVP 0 101\r\n"));
        assert!(u.contains("a=rtpmap:0 PCMU/8000\r\n"));
    }

    #[test]
    fn our_own_offer_parses_as_an_answer() {
        let o = offer(IpAddr::V4(Ipv4Addr::LOCALHOST), 40_002, Codec::Pcma, 20, 7);
        let a = parse_answer(&o).expect("parse");
        assert_eq!(a.rtp, "127.0.0.1:40002".parse().expect("addr"));
        assert_eq!((a.payload_type, a.codec), (8, Codec::Pcma));
        assert_eq!(a.ptime_ms, Some(20));
    }

    #[test]
    fn answer_media_level_connection_and_dynamic_pt() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                   m=video 0 RTP/AVP 96\r\n\
                   m=audio 40010 RTP/AVP 96 101\r\nc=IN IP4 127.0.0.2\r\n\
                   a=rtpmap:96 OPUS/48000/2\r\na=rtpmap:101 telephone-event/48000\r\na=recvonly\r\n\
                   m=audio 40020 RTP/AVP 0\r\n";
        let a = parse_answer(sdp).expect("parse");
        assert_eq!(a.rtp, "127.0.0.2:40010".parse().expect("addr"));
        assert_eq!((a.payload_type, a.codec), (96, Codec::Opus));
        assert_eq!(a.direction, "recvonly");
    }

    #[test]
    fn answer_static_payload_type_without_rtpmap() {
        let sdp = "v=0\nc=IN IP4 127.0.0.1\nm=audio 4000 RTP/AVP 8\n";
        let a = parse_answer(sdp).expect("parse");
        assert_eq!((a.payload_type, a.codec), (8, Codec::Pcma));
    }

    #[test]
    fn video_offer_names_h264_mode_1_and_its_feedback() {
        let o = offer_with_video(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            40_002,
            Codec::Opus,
            20,
            7,
            Some(VideoOffer {
                port: 40_004,
                bitrate_bps: 300_500,
            }),
        );
        let video = &o[o.find("m=video").expect("video m-line")..];
        assert!(o.find("m=audio").expect("audio") < o.find("m=video").expect("video"));
        for line in [
            "m=video 40004 RTP/AVP 96\r\n",
            "b=AS:301\r\n",
            "a=rtpmap:96 H264/90000\r\n",
            "a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n",
            "a=rtcp-fb:96 nack pli\r\n",
            "a=rtcp-fb:96 ccm fir\r\n",
            "a=rtcp-fb:96 ccm tmmbr\r\n",
            "a=rtcp-mux\r\n",
            "a=sendrecv\r\n",
        ] {
            assert!(video.contains(line), "{line} in {video}");
        }
        // Audio parsing is not disturbed by the video m-line.
        let a = parse_answer(&o).expect("audio");
        assert_eq!(a.rtp.port(), 40_002);
        // And our own offer reads as a video answer.
        let v = parse_video_answer(&o).expect("parse").expect("accepted");
        assert_eq!(v.rtp, "127.0.0.1:40004".parse().expect("addr"));
        assert_eq!(v.rtcp, v.rtp);
        assert_eq!(v.payload_type, 96);
        assert_eq!(v.profile_level_id.as_deref(), Some("42e01f"));
        assert_eq!(v.bandwidth_kbps, Some(301));
        assert!(v.rtcp_fb.iter().any(|f| f == "nack pli"));
        assert!(v.we_send() && v.we_receive());
        // Without video, nothing of it.
        assert!(!offer(IpAddr::V4(Ipv4Addr::LOCALHOST), 1, Codec::Opus, 20, 7).contains("video"));
    }

    #[test]
    fn video_answers_accepted_refused_and_unusable() {
        let head = "v=0\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let accepted = format!(
            "{head}m=video 5000 RTP/AVPF 100 126\r\nc=IN IP4 10.0.0.2\r\n\
             a=rtpmap:126 h264/90000\r\na=fmtp:126 Packetization-Mode=1; profile-level-id=42E01F\r\n\
             a=rtpmap:100 VP8/90000\r\na=rtcp-fb:* ccm fir\r\na=rtcp:5009\r\na=sendonly\r\n"
        );
        let v = parse_video_answer(&accepted)
            .expect("parse")
            .expect("accepted");
        assert_eq!(v.payload_type, 126);
        assert_eq!(v.rtp, "10.0.0.2:5000".parse().expect("addr"));
        assert_eq!(v.rtcp, "10.0.0.2:5009".parse().expect("addr"));
        assert_eq!(v.profile_level_id.as_deref(), Some("42e01f"));
        assert_eq!(v.rtcp_fb, ["ccm fir"]);
        assert!(!v.we_send() && v.we_receive());
        // No a=rtcp, no rtcp-mux: port + 1.
        let plain = format!(
            "{head}m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n"
        );
        let v = parse_video_answer(&plain)
            .expect("parse")
            .expect("accepted");
        assert_eq!(v.rtcp, "10.0.0.1:5001".parse().expect("addr"));
        assert_eq!(v.direction, "sendrecv");

        let refused = format!("{head}m=video 0 RTP/AVP 96\r\n");
        assert_eq!(parse_video_answer(&refused).expect("parse"), None);
        assert!(parse_video_answer(head).is_err(), "no video m-line");
        let mode0 = format!("{head}m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n");
        assert!(parse_video_answer(&mode0).is_err(), "packetization-mode 0");
        let vp8 = format!("{head}m=video 5000 RTP/AVP 100\r\na=rtpmap:100 VP8/90000\r\n");
        assert!(parse_video_answer(&vp8).is_err(), "no H264");
        assert_eq!(fmtp_param("a=1; b = 2", "B"), Some("2"));
    }

    #[test]
    fn answer_errors() {
        assert!(parse_answer("v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n").is_err());
        assert!(parse_answer("v=0\r\nm=audio 4000 RTP/AVP 0\r\n").is_err());
        assert!(parse_answer("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 18\r\n").is_err());
        assert!(parse_answer("v=0\r\nc=IN IP4 nonsense\r\nm=audio 4000 RTP/AVP 0\r\n").is_err());
        assert!(parse_answer("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n").is_err());
    }

    fn content_offer() -> String {
        offer_with_content(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            40_002,
            Codec::Opus,
            20,
            7,
            VideoOffer {
                port: 40_004,
                bitrate_bps: 300_000,
            },
            &ContentOffer {
                port: 40_006,
                bitrate_bps: 999_001,
                label: "3".into(),
                floor_id: 1,
                bfcp_port: 9,
            },
        )
    }

    #[test]
    fn content_offer_adds_slides_and_bfcp_after_main_video_in_order() {
        let o = content_offer();
        let m_lines: Vec<&str> = o.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            m_lines,
            [
                "m=audio 40002 RTP/AVP 111 101",
                "m=video 40004 RTP/AVP 96",
                "m=video 40006 RTP/AVP 97",
                "m=application 9 TCP/BFCP *",
            ]
        );
        let tail = &o[o.find("m=video 40006").expect("content m-line")..];
        let want = "m=video 40006 RTP/AVP 97\r\n\
                    b=AS:1000\r\n\
                    a=rtpmap:97 H264/90000\r\n\
                    a=fmtp:97 profile-level-id=42e01f;packetization-mode=1\r\n\
                    a=rtcp-fb:97 nack pli\r\n\
                    a=rtcp-fb:97 ccm fir\r\n\
                    a=rtcp:40006\r\n\
                    a=rtcp-mux\r\n\
                    a=content:slides\r\n\
                    a=label:3\r\n\
                    a=sendrecv\r\n\
                    m=application 9 TCP/BFCP *\r\n\
                    a=floorctrl:c-only\r\n\
                    a=setup:active\r\n\
                    a=connection:new\r\n\
                    a=floorid:1 mstrm:3\r\n\
                    a=bfcpver:1\r\n";
        assert_eq!(tail, want);
        // The main video m-line is untouched and is still what reads as
        // main video, and audio is still audio.
        let main = &o[o.find("m=video 40004").expect("main")..o.find("m=video 40006").expect("c")];
        assert!(main.contains("a=rtcp-fb:96 ccm tmmbr\r\n"));
        assert!(!main.contains("content"));
        let v = parse_video_answer(&o).expect("parse").expect("accepted");
        assert_eq!((v.rtp.port(), v.payload_type), (40_004, 96));
        assert_eq!(parse_answer(&o).expect("audio").rtp.port(), 40_002);
    }

    /// The node's answer to [`content_offer`], as the brief gives it.
    const NODE_ANSWER: &str = "v=0\r\n\
        o=tandem 1 1 IN IP4 127.0.0.1\r\n\
        s=tandem\r\n\
        c=IN IP4 127.0.0.1\r\n\
        t=0 0\r\n\
        m=audio 40000 RTP/AVP 111 101\r\n\
        a=rtpmap:111 opus/48000/2\r\n\
        a=rtpmap:101 telephone-event/48000\r\n\
        a=rtcp-mux\r\n\
        a=sendrecv\r\n\
        m=video 41000 RTP/AVP 96\r\n\
        a=rtpmap:96 H264/90000\r\n\
        a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n\
        a=rtcp-fb:96 nack pli\r\n\
        a=rtcp-mux\r\n\
        a=sendrecv\r\n\
        m=video 41002 RTP/AVP 97\r\n\
        a=rtpmap:97 H264/90000\r\n\
        a=fmtp:97 profile-level-id=42e01f;packetization-mode=1\r\n\
        a=rtcp-fb:97 nack pli\r\n\
        a=rtcp-mux\r\n\
        a=content:slides\r\n\
        a=label:3\r\n\
        a=sendrecv\r\n\
        m=application 5072 TCP/BFCP *\r\n\
        a=floorctrl:s-only\r\n\
        a=setup:passive\r\n\
        a=connection:new\r\n\
        a=confid:4711\r\n\
        a=userid:2\r\n\
        a=floorid:1 mstrm:3\r\n\
        a=bfcpver:1\r\n";

    #[test]
    fn the_nodes_content_answer_parses_and_main_video_stays_main() {
        let main = parse_video_answer(NODE_ANSWER)
            .expect("parse")
            .expect("accepted");
        assert_eq!(main.rtp, "127.0.0.1:41000".parse().expect("addr"));
        assert_eq!(main.payload_type, 96);

        let c = parse_content_answer(NODE_ANSWER).expect("parse");
        let video = c.video.as_ref().expect("content accepted");
        assert_eq!(video.rtp, "127.0.0.1:41002".parse().expect("addr"));
        assert_eq!(video.rtcp, video.rtp, "rtcp-mux");
        assert_eq!(video.payload_type, 97);
        assert!(video.we_send() && video.we_receive());
        assert_eq!(c.label.as_deref(), Some("3"));
        let bfcp = c.bfcp.as_ref().expect("BFCP accepted");
        assert_eq!(bfcp.addr, "127.0.0.1:5072".parse().expect("addr"));
        assert_eq!(bfcp.transport, BfcpTransport::Tcp);
        assert_eq!((bfcp.conference_id, bfcp.user_id), (4711, 2));
        assert_eq!(bfcp.floors, [(1, vec!["3".to_owned()])]);
        assert_eq!(bfcp.floorctrl, ["s-only"]);
        assert_eq!(bfcp.setup.as_deref(), Some("passive"));
        assert_eq!(bfcp.connection.as_deref(), Some("new"));
        assert_eq!(bfcp.versions, [1]);
        assert!(bfcp.we_connect());
        assert_eq!(c.floor_id(), Some(1));

        // Content first would not fool the main video reader either.
        let swapped = {
            let at_main = NODE_ANSWER.find("m=video 41000").expect("main");
            let at_content = NODE_ANSWER.find("m=video 41002").expect("content");
            let at_app = NODE_ANSWER.find("m=application").expect("app");
            format!(
                "{}{}{}{}",
                &NODE_ANSWER[..at_main],
                &NODE_ANSWER[at_content..at_app],
                &NODE_ANSWER[at_main..at_content],
                &NODE_ANSWER[at_app..]
            )
        };
        let main = parse_video_answer(&swapped)
            .expect("parse")
            .expect("accepted");
        assert_eq!(main.rtp.port(), 41_000);
        let content = parse_content_answer(&swapped).expect("parse").video;
        assert_eq!(content.map(|v| v.rtp.port()), Some(41_002));
    }

    #[test]
    fn content_answers_refused_moved_and_broken() {
        // Media-level c= for BFCP, UDP/BFCP, several floors.
        let moved = NODE_ANSWER
            .replace(
                "m=application 5072 TCP/BFCP *\r\n",
                "m=application 5074 UDP/BFCP *\r\nc=IN IP4 10.0.0.9\r\n",
            )
            .replace(
                "a=floorid:1 mstrm:3",
                "a=floorid:5 mstrm:7\r\na=floorid:2 m-stream:3",
            );
        let c = parse_content_answer(&moved).expect("parse");
        let bfcp = c.bfcp.as_ref().expect("accepted");
        assert_eq!(bfcp.addr, "10.0.0.9:5074".parse().expect("addr"));
        assert_eq!(bfcp.transport, BfcpTransport::Udp);
        assert_eq!(c.floor_id(), Some(2), "the floor naming our label");

        // Content refused, with or without its attributes; BFCP refused.
        let refused = NODE_ANSWER.replace("m=video 41002 RTP/AVP 97", "m=video 0 RTP/AVP 97");
        assert_eq!(parse_content_answer(&refused).expect("parse").video, None);
        let bare = {
            let from = NODE_ANSWER.find("m=video 41002").expect("content");
            let to = NODE_ANSWER.find("m=application").expect("app");
            format!(
                "{}m=video 0 RTP/AVP 97\r\n{}",
                &NODE_ANSWER[..from],
                &NODE_ANSWER[to..]
            )
        };
        let c = parse_content_answer(&bare).expect("parse");
        assert_eq!((c.video, c.label), (None, None));
        assert!(parse_video_answer(&bare).expect("main").is_some());
        let no_bfcp = NODE_ANSWER.replace("m=application 5072", "m=application 0");
        assert_eq!(parse_content_answer(&no_bfcp).expect("parse").bfcp, None);

        // Missing lines and attributes are errors.
        let at_content = NODE_ANSWER.find("m=video 41002").expect("content");
        assert!(
            parse_content_answer(&NODE_ANSWER[..at_content]).is_err(),
            "no content m-line"
        );
        let at_app = NODE_ANSWER.find("m=application").expect("app");
        assert!(
            parse_content_answer(&NODE_ANSWER[..at_app]).is_err(),
            "no BFCP m-line"
        );
        for broken in [
            NODE_ANSWER.replace("a=confid:4711\r\n", ""),
            NODE_ANSWER.replace("a=userid:2", "a=userid:70000"),
            NODE_ANSWER.replace("a=floorid:1", "a=floorid:x"),
            NODE_ANSWER.replace("a=rtpmap:97 H264", "a=rtpmap:97 VP8"),
        ] {
            assert!(parse_content_answer(&broken).is_err(), "{broken}");
        }
    }
}
