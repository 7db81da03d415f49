//! BFCP in SDP (RFC 8856) and the content stream it governs (RFC 4796):
//! what a room system offers for its presentation channel, and the floor
//! control server's side of the answer.
//!
//! ```text
//! m=application 50000 TCP/BFCP *
//! a=floorctrl:c-only s-only        (roles the offerer can take)
//! a=setup:actpass                  (TCP: who connects, RFC 4145)
//! a=connection:new
//! a=confid:4711 / a=userid:3       (in the server's answer)
//! a=floorid:1 mstrm:10             (floor 1 governs the stream labelled 10)
//! m=video 50002 RTP/AVP 97
//! a=content:slides
//! a=label:10
//! ```

use super::session::{Attribute, MediaDescription, MediaKind};

/// How BFCP is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BfcpTransport {
    /// `TCP/BFCP` (version 1), `TCP/TLS/BFCP` with `tls`.
    Tcp,
    /// `UDP/BFCP` (version 2), `UDP/TLS/BFCP` (DTLS) with `tls`.
    Udp,
}

/// RFC 4145 `a=setup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    Active,
    Passive,
    ActPass,
    HoldConn,
}

impl Setup {
    fn parse(s: &str) -> Option<Setup> {
        match s.trim().to_ascii_lowercase().as_str() {
            "active" => Some(Setup::Active),
            "passive" => Some(Setup::Passive),
            "actpass" => Some(Setup::ActPass),
            "holdconn" => Some(Setup::HoldConn),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::ActPass => "actpass",
            Setup::HoldConn => "holdconn",
        }
    }
}

/// A BFCP m-line as offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfcpMedia {
    pub transport: BfcpTransport,
    pub tls: bool,
    pub port: u16,
    /// `a=floorctrl` roles the offerer can take (`c-only`, `s-only`,
    /// `c-s`); empty when absent (RFC 8856 §5: then `c-s`).
    pub roles: Vec<String>,
    pub setup: Option<Setup>,
    /// `a=connection:new` (or absent); `existing` reuses a connection.
    pub new_connection: bool,
    /// `a=floorid` lines: the floor and the labels of the streams it governs.
    pub floors: Vec<(u16, Vec<String>)>,
    pub conference_id: Option<u32>,
    pub user_id: Option<u16>,
    /// `a=bfcpver` (RFC 8856 §7); empty when absent.
    pub versions: Vec<u8>,
}

impl BfcpMedia {
    /// The BFCP description of `m`, if it is a BFCP m-line.
    pub fn from_media(m: &MediaDescription) -> Option<BfcpMedia> {
        if m.kind != MediaKind::Application {
            return None;
        }
        let proto = m.proto.to_ascii_uppercase();
        let (transport, tls) = match proto.as_str() {
            "TCP/BFCP" => (BfcpTransport::Tcp, false),
            "TCP/TLS/BFCP" => (BfcpTransport::Tcp, true),
            "UDP/BFCP" => (BfcpTransport::Udp, false),
            "UDP/TLS/BFCP" => (BfcpTransport::Udp, true),
            _ => return None,
        };
        let values = |name: &'static str| {
            m.attributes
                .iter()
                .filter(move |a| a.name.eq_ignore_ascii_case(name))
                .filter_map(|a| a.value.as_deref())
        };
        let roles = values("floorctrl")
            .flat_map(|v| v.split_whitespace())
            .map(str::to_ascii_lowercase)
            .collect();
        let floors = values("floorid")
            .filter_map(|v| {
                let mut words = v.split_whitespace();
                let floor = words.next()?.parse().ok()?;
                let labels = words
                    .filter_map(|w| {
                        let (k, label) = w.split_once(':')?;
                        (k.eq_ignore_ascii_case("mstrm") || k.eq_ignore_ascii_case("m-stream"))
                            .then(|| label.to_string())
                    })
                    .collect();
                Some((floor, labels))
            })
            .collect();
        Some(BfcpMedia {
            transport,
            tls,
            port: m.port,
            roles,
            setup: values("setup").next().and_then(Setup::parse),
            new_connection: values("connection")
                .next()
                .is_none_or(|v| !v.trim().eq_ignore_ascii_case("existing")),
            floors,
            conference_id: values("confid").next().and_then(|v| v.trim().parse().ok()),
            user_id: values("userid").next().and_then(|v| v.trim().parse().ok()),
            versions: values("bfcpver")
                .flat_map(|v| v.split_whitespace())
                .filter_map(|v| v.parse().ok())
                .collect(),
        })
    }

    /// Whether the offerer can be a floor control client (so we can serve).
    pub fn offers_client(&self) -> bool {
        self.roles.is_empty() || self.roles.iter().any(|r| r == "c-only" || r == "c-s")
    }

    /// The BFCP version to speak: the transport's (1 over TCP, 2 over UDP)
    /// when the offer allows it.
    pub fn version(&self) -> Option<u8> {
        let ours = match self.transport {
            BfcpTransport::Tcp => 1,
            BfcpTransport::Udp => 2,
        };
        (self.versions.is_empty() || self.versions.contains(&ours)).then_some(ours)
    }
}

/// What the floor control server answers on a BFCP m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfcpAnswer {
    pub conference_id: u32,
    pub user_id: u16,
    /// Our floor and the label of our content stream it governs.
    pub floor: u16,
    pub content_label: String,
}

impl BfcpAnswer {
    /// The answer's attributes for `offer` (RFC 8856 §5–§10): we are the
    /// server; over TCP we listen (`passive`) unless the offerer only
    /// listens too.
    pub fn attributes(&self, offer: &BfcpMedia) -> Vec<Attribute> {
        let mut out = vec![Attribute::value("floorctrl", "s-only")];
        if offer.transport == BfcpTransport::Tcp {
            let setup = match offer.setup {
                Some(Setup::Passive) => Setup::Active,
                Some(Setup::HoldConn) => Setup::HoldConn,
                _ => Setup::Passive,
            };
            out.push(Attribute::value("setup", setup.as_str()));
            out.push(Attribute::value("connection", "new"));
        }
        out.extend(self.identity());
        if let Some(v) = offer.version() {
            out.push(Attribute::value("bfcpver", v.to_string()));
        }
        out
    }
}

impl BfcpAnswer {
    /// `a=confid`, `a=userid` and `a=floorid`: who the client is to the
    /// server, and which floor governs which stream.
    pub fn identity(&self) -> [Attribute; 3] {
        [
            Attribute::value("confid", self.conference_id.to_string()),
            Attribute::value("userid", self.user_id.to_string()),
            Attribute::value(
                "floorid",
                format!("{} mstrm:{}", self.floor, self.content_label),
            ),
        ]
    }
}

/// `a=content` (RFC 4796) of a media line: `slides`, `main`, `speaker`,
/// `sl`, `alt`; lower-cased.
pub fn content(m: &MediaDescription) -> Vec<String> {
    m.attributes
        .iter()
        .filter(|a| a.name.eq_ignore_ascii_case("content"))
        .filter_map(|a| a.value.as_deref())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .collect()
}

/// Whether `m` is a presentation (content) channel: video with
/// `a=content:slides`.
pub fn is_content(m: &MediaDescription) -> bool {
    m.kind == MediaKind::Video && content(m).iter().any(|c| c == "slides")
}

/// `a=label` (RFC 4574) of a media line.
pub fn label(m: &MediaDescription) -> Option<&str> {
    m.attributes
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case("label"))
        .and_then(|a| a.value.as_deref())
        .map(str::trim)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sdp::SessionDescription;

    /// A Polycom-style offer: audio, main video, content video, BFCP/TCP.
    const OFFER: &str = "v=0\r\n\
o=vtc 1 1 IN IP4 192.0.2.5\r\n\
s=-\r\n\
c=IN IP4 192.0.2.5\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0\r\n\
m=video 49172 RTP/AVP 97\r\n\
a=rtpmap:97 H264/90000\r\n\
a=content:main\r\n\
a=label:1\r\n\
m=video 49174 RTP/AVP 97\r\n\
a=rtpmap:97 H264/90000\r\n\
a=content:slides\r\n\
a=label:3\r\n\
m=application 49176 TCP/BFCP *\r\n\
a=floorctrl:c-only s-only\r\n\
a=setup:actpass\r\n\
a=connection:new\r\n\
a=floorid:1 mstrm:3\r\n\
a=bfcpver:1 2\r\n";

    #[test]
    fn reads_a_room_systems_offer() {
        let sdp = SessionDescription::parse(OFFER).unwrap();
        let content: Vec<_> = sdp.media.iter().filter(|m| is_content(m)).collect();
        assert_eq!(content.len(), 1);
        assert_eq!(label(content[0]), Some("3"));
        let bfcp = sdp.media.iter().find_map(BfcpMedia::from_media).unwrap();
        assert_eq!(bfcp.transport, BfcpTransport::Tcp);
        assert!(!bfcp.tls);
        assert_eq!(bfcp.port, 49176);
        assert!(bfcp.offers_client());
        assert_eq!(bfcp.setup, Some(Setup::ActPass));
        assert!(bfcp.new_connection);
        assert_eq!(bfcp.floors, vec![(1, vec!["3".to_string()])]);
        assert_eq!(bfcp.version(), Some(1));
    }

    #[test]
    fn answers_as_the_floor_control_server() {
        let sdp = SessionDescription::parse(OFFER).unwrap();
        let bfcp = sdp.media.iter().find_map(BfcpMedia::from_media).unwrap();
        let a = BfcpAnswer {
            conference_id: 4711,
            user_id: 3,
            floor: 1,
            content_label: "10".into(),
        }
        .attributes(&bfcp);
        let text: Vec<String> = a
            .iter()
            .map(|a| format!("{}:{}", a.name, a.value.clone().unwrap_or_default()))
            .collect();
        assert_eq!(
            text,
            [
                "floorctrl:s-only",
                "setup:passive",
                "connection:new",
                "confid:4711",
                "userid:3",
                "floorid:1 mstrm:10",
                "bfcpver:1"
            ]
        );
    }

    #[test]
    fn udp_and_server_only_offers() {
        let text = OFFER
            .replace("TCP/BFCP", "UDP/BFCP")
            .replace("a=floorctrl:c-only s-only", "a=floorctrl:s-only")
            .replace("a=bfcpver:1 2", "a=bfcpver:1");
        let sdp = SessionDescription::parse(&text).unwrap();
        let bfcp = sdp.media.iter().find_map(BfcpMedia::from_media).unwrap();
        assert_eq!(bfcp.transport, BfcpTransport::Udp);
        assert!(
            !bfcp.offers_client(),
            "a server-only peer: no floor for us to serve"
        );
        assert_eq!(bfcp.version(), None, "UDP needs version 2, it offers 1");
    }
}
