//! SDP session descriptions (RFC 8866, which obsoletes RFC 4566): parsing and
//! serialization.
//!
//! The parser is tolerant where real endpoints are sloppy (LF or CRLF line ends,
//! empty `s=`, missing `t=`, unknown line types, trailing whitespace) and strict
//! where sloppiness would make us guess (`v=0` first, exactly one `o=` and `s=`
//! before the first `m=`, well-formed `m=`/`c=` lines). Input is bounded so a
//! hostile peer cannot make us allocate without limit.
//!
//! Lines we do not model (`u=`, `e=`, `p=`, `r=`, `z=`, `k=`) are accepted and
//! dropped: nothing in the bridge needs them and RFC 3264 answers do not echo them.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// At most this many lines are parsed; more is an error, not a truncation.
pub const MAX_LINES: usize = 1024;
/// At most this many `m=` sections.
pub const MAX_MEDIA: usize = 64;

/// Why an SDP body was rejected. A peer sending one of these gets a SIP 400/488.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    #[error("SDP is empty")]
    Empty,
    #[error("SDP has more than {MAX_LINES} lines")]
    TooManyLines,
    #[error("SDP has more than {MAX_MEDIA} media sections")]
    TooManyMedia,
    #[error("line {line}: not of the form <type>=<value>")]
    MalformedLine { line: usize },
    #[error("first line must be v=0")]
    BadVersion,
    #[error("missing {0}= line")]
    Missing(char),
    #[error("duplicate {0}= line")]
    Duplicate(char),
    #[error("line {line}: invalid {kind}= line")]
    Invalid { line: usize, kind: char },
}

/// An address in `o=` or `c=`: an IP literal, or (rarely) a host name we keep as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Ip(IpAddr),
    /// A name, or anything we could not parse as an IP (kept for round-tripping).
    Name {
        addr_type: String,
        name: String,
    },
}

impl Address {
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Address::Ip(ip) => Some(*ip),
            Address::Name { .. } => None,
        }
    }

    fn parse(addr_type: &str, addr: &str) -> Self {
        match IpAddr::from_str(addr) {
            Ok(ip @ IpAddr::V4(_)) if addr_type.eq_ignore_ascii_case("IP4") => Address::Ip(ip),
            Ok(ip @ IpAddr::V6(_)) if addr_type.eq_ignore_ascii_case("IP6") => Address::Ip(ip),
            _ => Address::Name {
                addr_type: addr_type.to_owned(),
                name: addr.to_owned(),
            },
        }
    }
}

impl fmt::Display for Address {
    /// `IN <addrtype> <address>`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Ip(IpAddr::V4(ip)) => write!(f, "IN IP4 {ip}"),
            Address::Ip(IpAddr::V6(ip)) => write!(f, "IN IP6 {ip}"),
            Address::Name { addr_type, name } => write!(f, "IN {addr_type} {name}"),
        }
    }
}

/// `o=<username> <sess-id> <sess-version> IN <addrtype> <address>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: u64,
    pub version: u64,
    pub addr: Address,
}

/// `c=IN <addrtype> <address>[/<ttl>[/<count>]]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub addr: Address,
    /// Multicast `/ttl[/count]` suffix, without the leading slash.
    pub multicast: Option<String>,
}

impl Connection {
    pub fn new(ip: IpAddr) -> Self {
        Connection {
            addr: Address::Ip(ip),
            multicast: None,
        }
    }

    /// True for `0.0.0.0` / `::`: RFC 2543-style hold ("don't send to me").
    pub fn is_hold(&self) -> bool {
        self.addr.ip().is_some_and(|ip| ip.is_unspecified())
    }
}

/// `b=<bwtype>:<bandwidth>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bandwidth {
    pub kind: String,
    pub value: u64,
}

/// `a=<name>[:<value>]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

impl Attribute {
    pub fn flag(name: &str) -> Self {
        Attribute {
            name: name.to_owned(),
            value: None,
        }
    }

    pub fn value(name: &str, value: impl Into<String>) -> Self {
        Attribute {
            name: name.to_owned(),
            value: Some(value.into()),
        }
    }
}

/// `t=<start> <stop>`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub start: u64,
    pub stop: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
    Application,
    Other(String),
}

impl MediaKind {
    fn parse(s: &str) -> Self {
        match s {
            "audio" => MediaKind::Audio,
            "video" => MediaKind::Video,
            "application" => MediaKind::Application,
            other => MediaKind::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Application => "application",
            MediaKind::Other(s) => s,
        }
    }
}

/// Media direction attribute (RFC 8866 §6.7), from the perspective of whoever wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    fn from_flags(send: bool, recv: bool) -> Self {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The same stream seen from the other end (RFC 3264 §6.1: sendonly is
    /// answered recvonly and vice versa).
    pub fn reversed(self) -> Self {
        Direction::from_flags(self.receives(), self.sends())
    }

    /// What both constraints allow.
    pub fn intersect(self, other: Direction) -> Self {
        Direction::from_flags(
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        )
    }

    /// Without the ability to send (e.g. the peer gave no address to send to).
    pub fn without_send(self) -> Self {
        Direction::from_flags(false, self.receives())
    }

    /// Without the ability to receive.
    pub fn without_recv(self) -> Self {
        Direction::from_flags(self.sends(), false)
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`, or a static payload type default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub pt: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
}

impl RtpMap {
    /// RFC 3551 static payload types an endpoint may use without an rtpmap.
    pub fn static_default(pt: u8) -> Option<RtpMap> {
        let (encoding, clock_rate) = match pt {
            0 => ("PCMU", 8000),
            3 => ("GSM", 8000),
            4 => ("G723", 8000),
            8 => ("PCMA", 8000),
            9 => ("G722", 8000),
            13 => ("CN", 8000),
            18 => ("G729", 8000),
            _ => return None,
        };
        Some(RtpMap {
            pt,
            encoding: encoding.to_owned(),
            clock_rate,
            channels: None,
        })
    }

    fn parse(value: &str) -> Option<RtpMap> {
        let (pt, rest) = value.trim().split_once(' ')?;
        let pt: u8 = pt.parse().ok().filter(|pt| *pt < 128)?;
        let mut parts = rest.trim().split('/');
        let encoding = parts.next()?.trim();
        if encoding.is_empty() {
            return None;
        }
        let clock_rate: u32 = parts.next()?.trim().parse().ok()?;
        let channels = match parts.next() {
            Some(c) => Some(c.trim().parse().ok()?),
            None => None,
        };
        Some(RtpMap {
            pt,
            encoding: encoding.to_owned(),
            clock_rate,
            channels,
        })
    }

    /// The attribute value, e.g. `111 opus/48000/2`.
    pub fn to_value(&self) -> String {
        match self.channels {
            Some(c) => format!("{} {}/{}/{}", self.pt, self.encoding, self.clock_rate, c),
            None => format!("{} {}/{}", self.pt, self.encoding, self.clock_rate),
        }
    }
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    pub kind: MediaKind,
    pub port: u16,
    /// The `/<number of ports>` suffix, if present.
    pub port_count: Option<u16>,
    pub proto: String,
    pub formats: Vec<String>,
    pub info: Option<String>,
    pub connection: Option<Connection>,
    pub bandwidth: Vec<Bandwidth>,
    pub attributes: Vec<Attribute>,
}

impl MediaDescription {
    /// The first attribute called `name`.
    pub fn attr(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// The value of the first attribute called `name` (`None` for absent or flag-only).
    pub fn attr_value(&self, name: &str) -> Option<&str> {
        self.attr(name).and_then(|a| a.value.as_deref())
    }

    /// Payload types from the `m=` line that are numeric (RTP profiles).
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok().filter(|pt| *pt < 128))
    }

    /// The rtpmap of each listed payload type, in `m=` order, falling back to
    /// the RFC 3551 static defaults. Payload types with neither are skipped.
    pub fn rtpmaps(&self) -> Vec<RtpMap> {
        let explicit: Vec<RtpMap> = self
            .attributes
            .iter()
            .filter(|a| a.name == "rtpmap")
            .filter_map(|a| a.value.as_deref().and_then(RtpMap::parse))
            .collect();
        self.payload_types()
            .filter_map(|pt| {
                explicit
                    .iter()
                    .find(|m| m.pt == pt)
                    .cloned()
                    .or_else(|| RtpMap::static_default(pt))
            })
            .collect()
    }

    /// The format parameters for `pt` (the part after `a=fmtp:<pt> `).
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.attributes
            .iter()
            .filter(|a| a.name == "fmtp")
            .filter_map(|a| a.value.as_deref())
            .find_map(|v| {
                let (p, rest) = v.split_once(' ').unwrap_or((v, ""));
                (p.parse::<u8>().ok() == Some(pt)).then_some(rest.trim())
            })
    }

    /// `a=ptime` in milliseconds (fractional values are truncated).
    pub fn ptime(&self) -> Option<u32> {
        parse_ms(self.attr_value("ptime")?)
    }

    /// `a=maxptime` in milliseconds.
    pub fn maxptime(&self) -> Option<u32> {
        parse_ms(self.attr_value("maxptime")?)
    }

    /// The media-level direction attribute, if any. See
    /// [`SessionDescription::direction_of`] for the effective one.
    pub fn direction_attr(&self) -> Option<Direction> {
        self.attributes
            .iter()
            .find_map(|a| Direction::from_name(&a.name).filter(|_| a.value.is_none()))
    }

    /// Media-level direction, defaulting to sendrecv (ignores session level).
    pub fn direction(&self) -> Direction {
        self.direction_attr().unwrap_or_default()
    }

    pub fn rtcp_mux(&self) -> bool {
        self.attr("rtcp-mux").is_some()
    }

    /// `a=rtcp:<port> [IN <addrtype> <address>]` (RFC 3605).
    pub fn rtcp(&self) -> Option<(u16, Option<IpAddr>)> {
        let v = self.attr_value("rtcp")?;
        let mut parts = v.split_ascii_whitespace();
        let port = parts.next()?.parse().ok()?;
        let ip = match (parts.next(), parts.next(), parts.next()) {
            (Some(_net), Some(addr_type), Some(addr)) => Address::parse(addr_type, addr).ip(),
            _ => None,
        };
        Some((port, ip))
    }
}

fn parse_ms(v: &str) -> Option<u32> {
    let v = v.trim();
    let int = v.split_once('.').map_or(v, |(i, _)| i);
    int.parse().ok()
}

/// A whole SDP body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub origin: Origin,
    pub session_name: String,
    pub info: Option<String>,
    pub connection: Option<Connection>,
    pub bandwidth: Vec<Bandwidth>,
    /// `t=` lines; serialized as `t=0 0` when empty.
    pub timing: Vec<Timing>,
    pub attributes: Vec<Attribute>,
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    /// Session-level attribute lookup.
    pub fn attr(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// The connection that applies to `media`: its own `c=` or the session's.
    pub fn connection_of<'a>(&'a self, media: &'a MediaDescription) -> Option<&'a Connection> {
        media.connection.as_ref().or(self.connection.as_ref())
    }

    /// The direction that applies to `media`: media level, else session level,
    /// else sendrecv (RFC 8866 §6.7).
    pub fn direction_of(&self, media: &MediaDescription) -> Direction {
        media
            .direction_attr()
            .or_else(|| {
                self.attributes
                    .iter()
                    .find_map(|a| Direction::from_name(&a.name).filter(|_| a.value.is_none()))
            })
            .unwrap_or_default()
    }

    pub fn parse(text: &str) -> Result<Self, SdpError> {
        let mut origin: Option<Origin> = None;
        let mut session_name: Option<String> = None;
        let mut info = None;
        let mut connection = None;
        let mut bandwidth = Vec::new();
        let mut timing = Vec::new();
        let mut attributes = Vec::new();
        let mut media: Vec<MediaDescription> = Vec::new();
        let mut saw_version = false;

        let mut count = 0usize;
        for (idx, raw) in text.split('\n').enumerate() {
            let line_no = idx + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw).trim_end();
            if line.is_empty() {
                continue;
            }
            count += 1;
            if count > MAX_LINES {
                return Err(SdpError::TooManyLines);
            }
            let bytes = line.as_bytes();
            if bytes.len() < 2 || bytes[1] != b'=' || !bytes[0].is_ascii_alphabetic() {
                return Err(SdpError::MalformedLine { line: line_no });
            }
            let kind = bytes[0] as char;
            // The first byte is ASCII, so index 2 is a char boundary.
            let value = &line[2..];
            let invalid = SdpError::Invalid {
                line: line_no,
                kind,
            };

            if !saw_version {
                if kind == 'v' && value.trim() == "0" {
                    saw_version = true;
                    continue;
                }
                return Err(SdpError::BadVersion);
            }

            if let Some(m) = media.last_mut() {
                match kind {
                    'm' => {}
                    'i' => {
                        m.info = Some(value.to_owned());
                        continue;
                    }
                    'c' => {
                        m.connection = Some(parse_connection(value).ok_or(invalid)?);
                        continue;
                    }
                    'b' => {
                        m.bandwidth.push(parse_bandwidth(value).ok_or(invalid)?);
                        continue;
                    }
                    'a' => {
                        m.attributes.push(parse_attribute(value));
                        continue;
                    }
                    'v' | 'o' | 's' | 't' => return Err(invalid),
                    // k= and unknown media-level lines: ignored.
                    _ => continue,
                }
            }

            match kind {
                'v' => return Err(SdpError::Duplicate('v')),
                'o' => {
                    if origin.is_some() {
                        return Err(SdpError::Duplicate('o'));
                    }
                    origin = Some(parse_origin(value).ok_or(invalid)?);
                }
                's' => {
                    if session_name.is_some() {
                        return Err(SdpError::Duplicate('s'));
                    }
                    session_name = Some(value.to_owned());
                }
                'i' => info = Some(value.to_owned()),
                'c' => connection = Some(parse_connection(value).ok_or(invalid)?),
                'b' => bandwidth.push(parse_bandwidth(value).ok_or(invalid)?),
                't' => timing.push(parse_timing(value).ok_or(invalid)?),
                'a' => attributes.push(parse_attribute(value)),
                'm' => {
                    if origin.is_none() {
                        return Err(SdpError::Missing('o'));
                    }
                    if session_name.is_none() {
                        return Err(SdpError::Missing('s'));
                    }
                    if media.len() >= MAX_MEDIA {
                        return Err(SdpError::TooManyMedia);
                    }
                    media.push(parse_media(value).ok_or(invalid)?);
                }
                _ => {}
            }
        }

        if !saw_version {
            return Err(SdpError::Empty);
        }
        Ok(SessionDescription {
            origin: origin.ok_or(SdpError::Missing('o'))?,
            session_name: session_name.ok_or(SdpError::Missing('s'))?,
            info,
            connection,
            bandwidth,
            timing,
            attributes,
            media,
        })
    }
}

impl FromStr for SessionDescription {
    type Err = SdpError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SessionDescription::parse(s)
    }
}

fn parse_origin(v: &str) -> Option<Origin> {
    let mut p = v.split_ascii_whitespace();
    let username = p.next()?.to_owned();
    let session_id = p.next()?.parse().ok()?;
    let version = p.next()?.parse().ok()?;
    let net = p.next()?;
    let addr_type = p.next()?;
    let addr = p.next()?;
    if p.next().is_some() || net != "IN" {
        return None;
    }
    Some(Origin {
        username,
        session_id,
        version,
        addr: Address::parse(addr_type, addr),
    })
}

fn parse_connection(v: &str) -> Option<Connection> {
    let mut p = v.split_ascii_whitespace();
    let net = p.next()?;
    let addr_type = p.next()?;
    let addr = p.next()?;
    if p.next().is_some() || net != "IN" {
        return None;
    }
    let (addr, multicast) = match addr.split_once('/') {
        Some((a, m)) => (a, Some(m.to_owned())),
        None => (addr, None),
    };
    Some(Connection {
        addr: Address::parse(addr_type, addr),
        multicast,
    })
}

fn parse_bandwidth(v: &str) -> Option<Bandwidth> {
    let (kind, value) = v.split_once(':')?;
    Some(Bandwidth {
        kind: kind.trim().to_owned(),
        value: value.trim().parse().ok()?,
    })
}

fn parse_timing(v: &str) -> Option<Timing> {
    let mut p = v.split_ascii_whitespace();
    Some(Timing {
        start: p.next()?.parse().ok()?,
        stop: p.next()?.parse().ok()?,
    })
}

fn parse_attribute(v: &str) -> Attribute {
    match v.split_once(':') {
        Some((name, value)) => Attribute {
            name: name.trim().to_owned(),
            value: Some(value.to_owned()),
        },
        None => Attribute {
            name: v.trim().to_owned(),
            value: None,
        },
    }
}

fn parse_media(v: &str) -> Option<MediaDescription> {
    let mut p = v.split_ascii_whitespace();
    let kind = p.next()?;
    let port = p.next()?;
    let proto = p.next()?;
    if !kind
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    let (port, port_count) = match port.split_once('/') {
        Some((port, count)) => (port.parse().ok()?, Some(count.parse().ok()?)),
        None => (port.parse().ok()?, None),
    };
    Some(MediaDescription {
        kind: MediaKind::parse(kind),
        port,
        port_count,
        proto: proto.to_owned(),
        formats: p.map(str::to_owned).collect(),
        info: None,
        connection: None,
        bandwidth: Vec::new(),
        attributes: Vec::new(),
    })
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.addr)?;
        if let Some(m) = &self.multicast {
            write!(f, "/{m}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "a={}:{}\r\n", self.name, v),
            None => write!(f, "a={}\r\n", self.name),
        }
    }
}

impl fmt::Display for MediaDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {}", self.kind.as_str(), self.port)?;
        if let Some(c) = self.port_count {
            write!(f, "/{c}")?;
        }
        write!(f, " {}", self.proto)?;
        for fmt in &self.formats {
            write!(f, " {fmt}")?;
        }
        f.write_str("\r\n")?;
        if let Some(i) = &self.info {
            write!(f, "i={i}\r\n")?;
        }
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        for b in &self.bandwidth {
            write!(f, "b={}:{}\r\n", b.kind, b.value)?;
        }
        for a in &self.attributes {
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

impl fmt::Display for SessionDescription {
    /// Serializes with CRLF line ends, in RFC 8866 §5 order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        f.write_str("v=0\r\n")?;
        write!(
            f,
            "o={} {} {} {}\r\n",
            o.username, o.session_id, o.version, o.addr
        )?;
        // RFC 8866 requires a non-empty s=; "-" is the conventional placeholder.
        let name = if self.session_name.trim().is_empty() {
            "-"
        } else {
            &self.session_name
        };
        write!(f, "s={name}\r\n")?;
        if let Some(i) = &self.info {
            write!(f, "i={i}\r\n")?;
        }
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        for b in &self.bandwidth {
            write!(f, "b={}:{}\r\n", b.kind, b.value)?;
        }
        if self.timing.is_empty() {
            f.write_str("t=0 0\r\n")?;
        }
        for t in &self.timing {
            write!(f, "t={} {}\r\n", t.start, t.stop)?;
        }
        for a in &self.attributes {
            write!(f, "{a}")?;
        }
        for m in &self.media {
            write!(f, "{m}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BARESIP: &str = "v=0\r\n\
o=- 1234 5678 IN IP4 192.168.1.10\r\n\
s=-\r\n\
c=IN IP4 192.168.1.10\r\n\
t=0 0\r\n\
m=audio 10000 RTP/AVP 111 9 0 8 101\r\n\
b=AS:64\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 stereo=1;sprop-stereo=1\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
a=rtcp-mux\r\n\
m=video 10002 RTP/AVP 96\r\n\
a=rtpmap:96 H264/90000\r\n";

    #[test]
    fn sdp_parse_baresip_like() -> Result<(), SdpError> {
        let sd = SessionDescription::parse(BARESIP)?;
        assert_eq!(sd.origin.session_id, 1234);
        assert_eq!(sd.origin.version, 5678);
        assert_eq!(
            sd.origin.addr,
            Address::Ip("192.168.1.10".parse().expect("ip"))
        );
        assert_eq!(sd.media.len(), 2);
        let a = &sd.media[0];
        assert_eq!(a.kind, MediaKind::Audio);
        assert_eq!(a.port, 10000);
        assert_eq!(a.formats, ["111", "9", "0", "8", "101"]);
        let maps = a.rtpmaps();
        assert_eq!(maps.len(), 5);
        assert_eq!(maps[0].encoding, "opus");
        assert_eq!(maps[0].channels, Some(2));
        assert_eq!(maps[2].encoding, "PCMU"); // static default
        assert_eq!(maps[3].encoding, "PCMA");
        assert_eq!(a.fmtp(111), Some("stereo=1;sprop-stereo=1"));
        assert_eq!(a.fmtp(101), Some("0-15"));
        assert_eq!(a.fmtp(9), None);
        assert_eq!(a.ptime(), Some(20));
        assert_eq!(a.direction(), Direction::SendRecv);
        assert!(a.rtcp_mux());
        assert_eq!(a.bandwidth[0].value, 64);
        assert_eq!(sd.media[1].kind, MediaKind::Video);
        assert!(!sd.media[1].rtcp_mux());
        Ok(())
    }

    #[test]
    fn sdp_roundtrip_and_lf_tolerance() -> Result<(), SdpError> {
        let lf = BARESIP.replace("\r\n", "\n");
        let sd = SessionDescription::parse(&lf)?;
        let text = sd.to_string();
        assert!(text.contains("\r\n"));
        assert!(!text.replace("\r\n", "").contains('\n'));
        assert_eq!(SessionDescription::parse(&text)?, sd);
        assert_eq!(SessionDescription::parse(BARESIP)?, sd);
        Ok(())
    }

    #[test]
    fn sdp_rejects_garbage() {
        assert_eq!(SessionDescription::parse(""), Err(SdpError::Empty));
        assert_eq!(
            SessionDescription::parse("hello"),
            Err(SdpError::MalformedLine { line: 1 })
        );
        assert_eq!(
            SessionDescription::parse("v=1\r\n"),
            Err(SdpError::BadVersion)
        );
        assert_eq!(
            SessionDescription::parse("o=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\n"),
            Err(SdpError::BadVersion)
        );
        assert_eq!(
            SessionDescription::parse("v=0\r\ns=x\r\n"),
            Err(SdpError::Missing('o'))
        );
        assert_eq!(
            SessionDescription::parse("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\n"),
            Err(SdpError::Missing('s'))
        );
        assert!(matches!(
            SessionDescription::parse("v=0\r\no=- x 1 IN IP4 1.2.3.4\r\ns=-\r\n"),
            Err(SdpError::Invalid { kind: 'o', .. })
        ));
        assert!(matches!(
            SessionDescription::parse(
                "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 99999 RTP/AVP 0\r\n"
            ),
            Err(SdpError::Invalid { kind: 'm', .. })
        ));
        assert!(matches!(
            SessionDescription::parse("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio\r\n"),
            Err(SdpError::Invalid { kind: 'm', .. })
        ));
        assert_eq!(
            SessionDescription::parse(
                "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n"
            ),
            Err(SdpError::Duplicate('o'))
        );
    }

    #[test]
    fn sdp_bounds() {
        let mut s = String::from("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n");
        for _ in 0..65 {
            s.push_str("m=audio 0 RTP/AVP 0\r\n");
        }
        assert_eq!(SessionDescription::parse(&s), Err(SdpError::TooManyMedia));
        let mut s = String::from("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n");
        for _ in 0..2000 {
            s.push_str("a=x\r\n");
        }
        assert_eq!(SessionDescription::parse(&s), Err(SdpError::TooManyLines));
    }

    #[test]
    fn sdp_session_level_direction_hold_and_rtcp() -> Result<(), SdpError> {
        let sd = SessionDescription::parse(
            "v=0\no=- 1 2 IN IP4 10.0.0.1\ns=\nc=IN IP4 0.0.0.0\na=sendonly\n\
             m=audio 4000 RTP/AVP 0\na=rtcp:4005 IN IP4 10.0.0.2\na=ptime:30.0\n",
        )?;
        let m = &sd.media[0];
        assert_eq!(m.direction_attr(), None);
        assert_eq!(sd.direction_of(m), Direction::SendOnly);
        assert!(sd.connection_of(m).is_some_and(Connection::is_hold));
        assert_eq!(
            m.rtcp(),
            Some((4005, Some("10.0.0.2".parse().expect("ip"))))
        );
        assert_eq!(m.ptime(), Some(30));
        // Empty s= is tolerated on input and written as "-".
        assert!(sd.to_string().contains("s=-\r\n"));
        Ok(())
    }

    #[test]
    fn sdp_direction_algebra() {
        use Direction::*;
        assert_eq!(SendOnly.reversed(), RecvOnly);
        assert_eq!(RecvOnly.reversed(), SendOnly);
        assert_eq!(SendRecv.reversed(), SendRecv);
        assert_eq!(Inactive.reversed(), Inactive);
        assert_eq!(SendRecv.intersect(RecvOnly), RecvOnly);
        assert_eq!(SendOnly.without_send(), Inactive);
    }

    #[test]
    fn sdp_ipv6_and_fqdn_addresses() -> Result<(), SdpError> {
        let sd = SessionDescription::parse(
            "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP4 host.example.com\r\nt=0 0\r\n",
        )?;
        assert_eq!(sd.origin.addr.ip(), Some("::1".parse().expect("ip")));
        assert!(matches!(
            sd.connection.as_ref().map(|c| &c.addr),
            Some(Address::Name { .. })
        ));
        assert_eq!(SessionDescription::parse(&sd.to_string())?, sd);
        Ok(())
    }
}
