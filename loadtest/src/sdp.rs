//! SDP (RFC 4566 / 3264), the two halves a UAC needs: write an offer (audio
//! with one codec, optionally H.264 video), and read the answer's address,
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
    let family = if local_ip.is_ipv4() { "IP4" } else { "IP6" };
    let pt = codec.payload_type();
    let mut s = String::with_capacity(400);
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
    if let Some(VideoOffer { port, bitrate_bps }) = video {
        let kbps = bitrate_bps.div_ceil(1000);
        let pt = H264_PT;
        let _ = write!(
            s,
            "m=video {port} RTP/AVP {pt}\r\n\
             b=AS:{kbps}\r\n\
             a=rtpmap:{pt} H264/90000\r\n\
             a=fmtp:{pt} {H264_FMTP}\r\n\
             a=rtcp-fb:{pt} nack pli\r\n\
             a=rtcp-fb:{pt} ccm fir\r\n\
             a=rtcp-fb:{pt} ccm tmmbr\r\n\
             a=rtcp:{port}\r\n\
             a=rtcp-mux\r\n\
             a=sendrecv\r\n"
        );
    }
    s
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

/// Reads the answer's first video m-line. `Ok(None)`: the answerer refused
/// video (port 0). An answer without any video m-line breaks RFC 3264 §6 (one
/// m-line per offered stream), and an accepted line we cannot use (no H.264,
/// or not packetization-mode 1, the only mode we offered) is unusable: both
/// are errors, so a bridge bug is reported rather than papered over.
pub fn parse_video_answer(sdp: &str) -> Result<Option<VideoAnswer>> {
    let mut session_addr: Option<IpAddr> = None;
    let mut session_direction: Option<String> = None;
    let mut seen_media = false;
    let mut in_video = false;
    let mut found = false;
    let mut port = 0u16;
    let mut formats: Vec<u8> = Vec::new();
    let mut media_addr: Option<IpAddr> = None;
    let mut rtpmap: HashMap<u8, String> = HashMap::new();
    let mut fmtp: HashMap<u8, String> = HashMap::new();
    let mut fb: Vec<(String, String)> = Vec::new();
    let mut direction: Option<String> = None;
    let mut rtcp_mux = false;
    let mut rtcp_port: Option<u16> = None;
    let mut bandwidth = None;

    for line in sdp.lines() {
        let line = line.trim_end();
        let Some((kind, value)) = line.split_once('=') else {
            continue;
        };
        match kind {
            "m" => {
                seen_media = true;
                in_video = false;
                if found {
                    continue;
                }
                let mut parts = value.split_whitespace();
                if parts.next() != Some("video") {
                    continue;
                }
                found = true;
                in_video = true;
                port = parts
                    .next()
                    .and_then(|p| p.split('/').next())
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| Error::parse("SDP m= line", value.to_owned()))?;
                let _proto = parts.next();
                formats = parts.filter_map(|f| f.parse().ok()).collect();
            }
            "c" if !seen_media => session_addr = Some(parse_connection(value)?),
            "c" if in_video => media_addr = Some(parse_connection(value)?),
            "b" if in_video => {
                if let Some(("AS", kbps)) = value.split_once(':') {
                    bandwidth = kbps.trim().parse().ok();
                }
            }
            "a" if in_video || !seen_media => {
                let (name, rest) = value.split_once(':').unwrap_or((value, ""));
                let dir = matches!(name, "sendrecv" | "sendonly" | "recvonly" | "inactive");
                if !seen_media {
                    if dir {
                        session_direction = Some(name.to_owned());
                    }
                    continue;
                }
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
                    _ if dir => direction = Some(name.to_owned()),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if !found {
        return Err(Error::Negotiation(
            "video was offered but the answer has no video m-line".into(),
        ));
    }
    if port == 0 {
        return Ok(None);
    }
    let addr = media_addr
        .or(session_addr)
        .ok_or_else(|| Error::Negotiation("no c= line for the video stream".into()))?;
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
                "video answer has no H264 among formats {formats:?} (we offered only H264)"
            ))
        })?;
    let params = fmtp.remove(&payload_type).unwrap_or_default();
    let mode = fmtp_param(&params, "packetization-mode").unwrap_or("0");
    if mode != "1" {
        return Err(Error::Negotiation(format!(
            "video answer has packetization-mode={mode} (fmtp \"{params}\"); we offered only mode 1"
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
            .or(session_direction)
            .unwrap_or_else(|| "sendrecv".to_owned()),
        rtcp_fb: fb
            .into_iter()
            .filter(|(pt, _)| *pt == pt_text || pt == "*")
            .map(|(_, v)| v)
            .collect(),
        bandwidth_kbps: bandwidth,
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
}
