//! SDP (RFC 4566 / 3264), the two halves a UAC needs: write an audio offer
//! for one codec, and read the answer's address, port and chosen codec.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::codec::Codec;
use crate::error::{Error, Result};

/// The telephone-event payload type we offer alongside the codec.
pub const TELEPHONE_EVENT_PT: u8 = 101;

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
        "a=rtpmap:{TELEPHONE_EVENT_PT} telephone-event/8000\r\n\
         a=fmtp:{TELEPHONE_EVENT_PT} 0-15\r\n\
         a=ptime:{ptime_ms}\r\n\
         a=rtcp:{rtp_port}\r\n\
         a=rtcp-mux\r\n\
         a=sendrecv\r\n"
    );
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
    fn answer_errors() {
        assert!(parse_answer("v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n").is_err());
        assert!(parse_answer("v=0\r\nm=audio 4000 RTP/AVP 0\r\n").is_err());
        assert!(parse_answer("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 18\r\n").is_err());
        assert!(parse_answer("v=0\r\nc=IN IP4 nonsense\r\nm=audio 4000 RTP/AVP 0\r\n").is_err());
        assert!(parse_answer("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n").is_err());
    }
}
