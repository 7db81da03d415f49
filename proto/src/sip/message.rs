//! SIP messages: the RFC 3261 §7 grammar, framing for datagrams (§18.3) and
//! streams, and typed accessors for the headers a UAS needs.
//!
//! The parser is deliberately tolerant where RFC 3261 §7.5 asks for tolerance
//! (leading CRLF, folded header lines, bare LF line ends, compact header names)
//! and strict where a mistake would break the transaction layer (Via, CSeq,
//! Call-ID, From, To, Content-Length). Every limit is a constant and checked
//! before allocating: a hostile peer costs at most one message of work.
//!
//! When a malformed *request* still carries enough to address a response, the
//! [`ParseError`] keeps the recovered head so the caller can answer it with
//! [`ParseError::bad_request`] (RFC 3261 §21.4.1). Malformed responses are
//! dropped and only counted.

use std::fmt;
use std::str::FromStr;

/// Largest message accepted, head and body (datagram or stream frame).
pub const MAX_MESSAGE_SIZE: usize = 65_535;
/// Longest header line, after unfolding continuation lines.
pub const MAX_HEADER_LINE_LEN: usize = 8_192;
/// Most header lines in one message.
pub const MAX_HEADERS: usize = 256;
/// The RFC 3261 branch prefix (§8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

// ---------------------------------------------------------------------------
// Method

/// A request method. Methods are case-sensitive tokens (RFC 3261 §7.1); any
/// token we do not know is kept as [`Method::Other`] so the caller can answer
/// 501 instead of treating it as garbage.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Info,
    Update,
    Register,
    Prack,
    Refer,
    Notify,
    Subscribe,
    Message,
    Publish,
    Other(String),
}

impl Method {
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Register => "REGISTER",
            Method::Prack => "PRACK",
            Method::Refer => "REFER",
            Method::Notify => "NOTIFY",
            Method::Subscribe => "SUBSCRIBE",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }

    fn from_token(s: &str) -> Method {
        match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "REGISTER" => Method::Register,
            "PRACK" => Method::Prack,
            "REFER" => Method::Refer,
            "NOTIFY" => Method::Notify,
            "SUBSCRIBE" => Method::Subscribe,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_owned()),
        }
    }
}

/// The string is not a SIP token (RFC 3261 §25.1), so it cannot be a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid SIP method token")]
pub struct InvalidMethod;

impl FromStr for Method {
    type Err = InvalidMethod;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_token(s) {
            Ok(Method::from_token(s))
        } else {
            Err(InvalidMethod)
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

// ---------------------------------------------------------------------------
// Headers

/// Compact forms (RFC 3261 §7.3.3, RFC 4028 for `x`) expanded to full names.
fn expand_compact(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes()[0].to_ascii_lowercase() {
        b'v' => "Via",
        b'f' => "From",
        b't' => "To",
        b'i' => "Call-ID",
        b'm' => "Contact",
        b'l' => "Content-Length",
        b'c' => "Content-Type",
        b'k' => "Supported",
        b'x' => "Session-Expires",
        b's' => "Subject",
        b'e' => "Content-Encoding",
        b'o' => "Event",
        b'r' => "Refer-To",
        b'u' => "Allow-Events",
        _ => name,
    }
}

fn name_eq(a: &str, b: &str) -> bool {
    expand_compact(a).eq_ignore_ascii_case(expand_compact(b))
}

/// Headers whose values are comma-separated lists (RFC 3261 §7.3.1), so that
/// `Via: a, b` and two `Via` lines mean the same. Headers like
/// `WWW-Authenticate` or `Date` contain commas that are *not* separators.
const LIST_HEADERS: &[&str] = &[
    "Via",
    "Route",
    "Record-Route",
    "Contact",
    "Supported",
    "Require",
    "Proxy-Require",
    "Unsupported",
    "Allow",
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Allow-Events",
    "Content-Encoding",
    "Path",
    "Service-Route",
];

fn is_list_header(name: &str) -> bool {
    LIST_HEADERS.iter().any(|h| name_eq(h, name))
}

/// Message headers in wire order. Names are matched case-insensitively and
/// compact forms are equivalent to full names; values are stored trimmed and
/// unfolded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    /// The first value of `name` (the whole line, not split at commas).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| name_eq(n, name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` in order; list headers such as Via, Route,
    /// Record-Route and Contact are split at top-level commas.
    pub fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + use<'a> {
        let name = expand_compact(name).to_owned();
        let split = is_list_header(&name);
        self.entries
            .iter()
            .filter(move |(n, _)| name_eq(n, &name))
            .flat_map(move |(_, v)| CommaSplit {
                rest: v.as_str(),
                split,
            })
    }

    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.entries.push((name.into(), value.into()));
    }

    /// Inserts a header before all others (e.g. our own Via).
    pub fn push_front(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.entries.insert(0, (name.into(), value.into()));
    }

    /// Replaces every `name` header with one line, kept at the position of the
    /// first one (or appended).
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.entries.iter().position(|(n, _)| name_eq(n, &name)) {
            Some(first) => {
                self.entries[first] = (name.clone(), value);
                let mut i = 0;
                self.entries.retain(|(n, _)| {
                    let keep = i <= first || !name_eq(n, &name);
                    i += 1;
                    keep
                });
            }
            None => self.entries.push((name, value)),
        }
    }

    /// Removes every `name` header; returns whether there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(n, _)| !name_eq(n, name));
        self.entries.len() != before
    }

    /// Removes the first value of a list header (the top Via, say), also when
    /// several values share one line; returns it.
    pub fn pop_first(&mut self, name: &str) -> Option<String> {
        let name = expand_compact(name).to_owned();
        let i = self.entries.iter().position(|(n, _)| name_eq(n, &name))?;
        let line = self.entries[i].1.clone();
        let mut values = CommaSplit {
            rest: line.as_str(),
            split: is_list_header(&name),
        };
        let first = values.next()?.to_owned();
        let rest: Vec<&str> = values.collect();
        if rest.is_empty() {
            self.entries.remove(i);
        } else {
            self.entries[i].1 = rest.join(", ");
        }
        Some(first)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Whether a list header (e.g. `Supported`, `Require`) contains `option`.
    pub fn has_option(&self, name: &str, option: &str) -> bool {
        self.get_all(name).any(|v| v.eq_ignore_ascii_case(option))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Rewrites the first Via value (used by the transaction layer to add
    /// `received`/`rport`, RFC 3261 §18.2.1, RFC 3581). A header line holding
    /// several comma-separated Vias is split into one line per Via.
    pub(crate) fn replace_top_via(&mut self, top: String) {
        let Some(first) = self.entries.iter().position(|(n, _)| name_eq(n, "Via")) else {
            return;
        };
        let mut vias: Vec<String> = self.get_all("Via").map(str::to_owned).collect();
        if vias.is_empty() {
            return;
        }
        vias[0] = top;
        self.entries.retain(|(n, _)| !name_eq(n, "Via"));
        for (i, v) in vias.into_iter().enumerate() {
            self.entries.insert(first + i, ("Via".to_owned(), v));
        }
    }

    // Typed accessors shared by Request and Response.

    fn call_id(&self) -> Option<&str> {
        self.get("Call-ID").filter(|v| !v.is_empty())
    }

    fn cseq(&self) -> Option<(u32, Method)> {
        parse_cseq(self.get("CSeq")?)
    }

    fn tag_of_from(&self) -> Option<&str> {
        tag_param(self.get("From")?)
    }

    fn tag_of_to(&self) -> Option<&str> {
        tag_param(self.get("To")?)
    }

    fn top_via(&self) -> Option<Via> {
        Via::parse(self.get_all("Via").next()?)
    }

    fn max_forwards(&self) -> Option<u32> {
        let v = self.get("Max-Forwards")?;
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        v.parse().ok()
    }

    fn content_type(&self) -> Option<&str> {
        let v = self.get("Content-Type")?;
        let media = v.split(';').next().unwrap_or(v).trim();
        (!media.is_empty()).then_some(media)
    }

    fn contact(&self) -> Option<NameAddr> {
        parse_name_addr(self.get_all("Contact").next()?)
    }
}

/// Splits a header value at commas that are outside quoted strings and `<>`.
struct CommaSplit<'a> {
    rest: &'a str,
    split: bool,
}

impl<'a> Iterator for CommaSplit<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            if !self.split {
                let v = self.rest.trim();
                self.rest = "";
                return (!v.is_empty()).then_some(v);
            }
            let bytes = self.rest.as_bytes();
            let end = find_unquoted(bytes, b',', true);
            let item = self.rest[..end].trim();
            self.rest = if end < bytes.len() {
                &self.rest[end + 1..]
            } else {
                ""
            };
            if !item.is_empty() {
                return Some(item);
            }
        }
    }
}

/// Index of the first `sep` outside a quoted string (backslash escapes
/// honoured) and, when `angle` is set, outside `<...>`; `bytes.len()` if none.
fn find_unquoted(bytes: &[u8], sep: u8, angle: bool) -> usize {
    let mut in_quote = false;
    let mut in_angle = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quote = false;
            }
            continue;
        }
        match b {
            b'"' => in_quote = true,
            b'<' if angle => in_angle = true,
            b'>' if angle => in_angle = false,
            _ if b == sep && !in_angle => return i,
            _ => {}
        }
    }
    bytes.len()
}

/// Splits `;name=value;flag` parameters, honouring quoted values. Leading
/// text before the first `;` must already be removed.
fn params(s: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    let mut rest = s;
    std::iter::from_fn(move || {
        loop {
            rest = rest.trim_start_matches(|c: char| c == ';' || c.is_ascii_whitespace());
            if rest.is_empty() {
                return None;
            }
            let end = find_unquoted(rest.as_bytes(), b';', false);
            let item = &rest[..end];
            rest = &rest[end..];
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (item.trim(), None),
            };
            if !name.is_empty() {
                return Some((name, value));
            }
        }
    })
}

fn parse_cseq(v: &str) -> Option<(u32, Method)> {
    let mut it = v.split_ascii_whitespace();
    let num = it.next()?;
    let method = it.next()?;
    if it.next().is_some() || !num.bytes().all(|b| b.is_ascii_digit()) || num.len() > 10 {
        return None;
    }
    let num: u64 = num.parse().ok()?;
    // RFC 3261 §8.1.1.5: the sequence number MUST be less than 2**31.
    if num >= 1 << 31 {
        return None;
    }
    Some((u32::try_from(num).ok()?, method.parse().ok()?))
}

// ---------------------------------------------------------------------------
// Via, name-addr, URIs

/// One Via value (RFC 3261 §20.42), with the parameters the transaction and
/// transport layers use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Upper-cased transport, e.g. `UDP`, `TCP`, `TLS`, `WS`.
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub branch: Option<String>,
    /// `None`: absent; `Some(None)`: `;rport` requested; `Some(Some(p))`: filled in.
    pub rport: Option<Option<u16>>,
    pub received: Option<String>,
}

impl Via {
    /// Parses one Via value (not a comma-separated list).
    pub fn parse(value: &str) -> Option<Via> {
        let (head, rest) = match value.find(';') {
            Some(i) => (&value[..i], &value[i..]),
            None => (value, ""),
        };
        let mut parts = head.splitn(3, '/');
        let proto = parts.next()?.trim();
        let version = parts.next()?.trim();
        let tail = parts.next()?.trim_start();
        if !proto.eq_ignore_ascii_case("SIP") || version != "2.0" {
            return None;
        }
        let mut words = tail.split_ascii_whitespace();
        let transport = words.next()?;
        if !is_token(transport) {
            return None;
        }
        // sent-by may carry whitespace around the colon (COLON = SWS ":" SWS).
        let sent_by: String = words.collect();
        let (host, port) = split_host_port(&sent_by)?;
        let mut via = Via {
            transport: transport.to_ascii_uppercase(),
            host: host.to_owned(),
            port,
            branch: None,
            rport: None,
            received: None,
        };
        for (name, val) in params(rest) {
            if name.eq_ignore_ascii_case("branch") {
                via.branch = Some(val.filter(|v| !v.is_empty())?.to_owned());
            } else if name.eq_ignore_ascii_case("rport") {
                via.rport = Some(match val {
                    Some(p) => Some(p.parse().ok()?),
                    None => None,
                });
            } else if name.eq_ignore_ascii_case("received") {
                via.received = Some(val?.to_owned());
            }
        }
        Some(via)
    }

    /// `host[:port]` as it appears in the Via.
    pub fn sent_by(&self) -> String {
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        }
    }

    /// Whether the branch is RFC 3261-style (globally unique, usable as the
    /// transaction key on its own).
    pub fn has_magic_cookie(&self) -> bool {
        self.branch
            .as_deref()
            .is_some_and(|b| b.starts_with(MAGIC_COOKIE))
    }
}

fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if s.is_empty() {
        return None;
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let close = rest.find(']')?;
        let host = &s[..close + 2];
        let after = &rest[close + 1..];
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return None,
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let valid_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b));
    if !valid_host {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    Some((host, port))
}

/// A `name-addr` or `addr-spec` as in From, To, Contact, Route
/// (RFC 3261 §20.10), with its header parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    pub uri: String,
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
}

/// Splits a name-addr / addr-spec into (display name, URI, parameter text).
/// The display name is returned raw (still quoted-escaped if it was quoted).
fn split_name_addr(value: &str) -> Option<(Option<&str>, &str, &str)> {
    let value = value.trim();
    let (display, after_display) = if let Some(rest) = value.strip_prefix('"') {
        let mut escaped = false;
        let mut close = None;
        for (i, b) in rest.bytes().enumerate() {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                close = Some(i);
                break;
            }
        }
        let close = close?;
        let after = rest[close + 1..].trim_start();
        if !after.starts_with('<') {
            return None;
        }
        (Some(&rest[..close]), after)
    } else if let Some(lt) = value.find('<') {
        let d = value[..lt].trim();
        ((!d.is_empty()).then_some(d), &value[lt..])
    } else {
        (None, value)
    };
    let (uri, params) = if let Some(rest) = after_display.strip_prefix('<') {
        let gt = rest.find('>')?;
        (rest[..gt].trim(), rest[gt + 1..].trim())
    } else {
        // addr-spec: parameters after the first ';' belong to the header.
        match after_display.find(';') {
            Some(i) => (after_display[..i].trim(), &after_display[i..]),
            None => (after_display.trim(), ""),
        }
    };
    if uri.is_empty() || uri.contains(|c: char| c.is_ascii_whitespace() || c == '<' || c == '>') {
        return None;
    }
    if !params.is_empty() && !params.starts_with(';') {
        return None;
    }
    Some((display, uri, params))
}

/// Parses a From/To/Contact/Route value.
pub fn parse_name_addr(value: &str) -> Option<NameAddr> {
    let (display, uri, params_text) = split_name_addr(value)?;
    let display = display.map(|d| {
        let mut out = String::with_capacity(d.len());
        let mut escaped = false;
        for c in d.chars() {
            if escaped || c != '\\' {
                out.push(c);
                escaped = false;
            } else {
                escaped = true;
            }
        }
        out
    });
    Some(NameAddr {
        display,
        uri: uri.to_owned(),
        params: params(params_text)
            .map(|(n, v)| (n.to_owned(), v.map(str::to_owned)))
            .collect(),
    })
}

/// The `tag` parameter of a From/To value.
pub fn tag_param(value: &str) -> Option<&str> {
    let (_, _, p) = split_name_addr(value)?;
    params(p)
        .find(|(n, _)| n.eq_ignore_ascii_case("tag"))
        .and_then(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// The user part of a SIP/SIPS/TEL URI (`4711` in `sip:4711@host;transport=tcp`),
/// also when wrapped as `<...>` or `"Name" <...>`.
pub fn uri_user(uri: &str) -> Option<&str> {
    let uri = uri.trim();
    let uri = match (uri.find('<'), uri.rfind('>')) {
        (Some(a), Some(b)) if a < b => &uri[a + 1..b],
        _ => uri,
    };
    let (scheme, rest) = uri.split_once(':')?;
    if scheme.eq_ignore_ascii_case("tel") {
        let number = rest.split(';').next().unwrap_or(rest);
        return (!number.is_empty()).then_some(number);
    }
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return None;
    }
    let (userinfo, _) = rest.split_once('@')?;
    let user = userinfo.split(':').next().unwrap_or(userinfo);
    (!user.is_empty()).then_some(user)
}

/// Where a SIP URI with an IP-literal host points (`sip:a@192.0.2.1:5070`,
/// `<sip:[2001:db8::1]>`; port 5060 when absent, 5061 for `sips:`), and
/// whether it asks for a stream transport (`;transport=tcp`/`tls`, `sips:`).
/// `None` for host names (a UAS without DNS cannot resolve them) and
/// non-SIP URIs.
pub fn uri_addr(uri: &str) -> Option<(std::net::SocketAddr, bool)> {
    let uri = uri.trim();
    let uri = match (uri.find('<'), uri.rfind('>')) {
        (Some(a), Some(b)) if a < b => &uri[a + 1..b],
        _ => uri,
    };
    let (scheme, rest) = uri.split_once(':')?;
    let secure = scheme.eq_ignore_ascii_case("sips");
    if !secure && !scheme.eq_ignore_ascii_case("sip") {
        return None;
    }
    let rest = rest.split('?').next().unwrap_or(rest);
    let mut parts = rest.split(';');
    let hostport = parts.next()?;
    let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
    let stream = secure
        || parts.any(|p| {
            p.split_once('=').is_some_and(|(n, v)| {
                n.eq_ignore_ascii_case("transport")
                    && (v.eq_ignore_ascii_case("tcp") || v.eq_ignore_ascii_case("tls"))
            })
        });
    let default = if secure { 5061 } else { 5060 };
    let (ip, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (ip, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default,
            None => return None,
        };
        (ip.parse::<std::net::Ipv6Addr>().ok()?.into(), port)
    } else {
        let (host, port) = match hostport.split_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (hostport, default),
        };
        (host.parse::<std::net::Ipv4Addr>().ok()?.into(), port)
    };
    Some((std::net::SocketAddr::new(ip, port), stream))
}

// ---------------------------------------------------------------------------
// Messages

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

macro_rules! header_accessors {
    ($t:ty) => {
        impl $t {
            pub fn call_id(&self) -> Option<&str> {
                self.headers.call_id()
            }
            /// CSeq number and method.
            pub fn cseq(&self) -> Option<(u32, Method)> {
                self.headers.cseq()
            }
            pub fn from_tag(&self) -> Option<&str> {
                self.headers.tag_of_from()
            }
            pub fn to_tag(&self) -> Option<&str> {
                self.headers.tag_of_to()
            }
            pub fn top_via(&self) -> Option<Via> {
                self.headers.top_via()
            }
            pub fn max_forwards(&self) -> Option<u32> {
                self.headers.max_forwards()
            }
            /// Media type without parameters, e.g. `application/sdp`.
            pub fn content_type(&self) -> Option<&str> {
                self.headers.content_type()
            }
            /// The first Contact.
            pub fn contact(&self) -> Option<NameAddr> {
                self.headers.contact()
            }
            pub fn to_bytes(&self) -> Vec<u8> {
                let mut out = Vec::with_capacity(256 + self.body.len());
                self.write_start_line(&mut out);
                write_rest(&mut out, &self.headers, &self.body);
                out
            }
        }
    };
}

header_accessors!(Request);
header_accessors!(Response);

fn write_rest(out: &mut Vec<u8>, headers: &Headers, body: &[u8]) {
    for (n, v) in headers.iter() {
        if name_eq(n, "Content-Length") {
            continue;
        }
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        // A CR or LF in a value set by the caller would inject headers.
        out.extend(
            v.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
}

impl Request {
    pub fn new(method: Method, uri: impl Into<String>) -> Request {
        Request {
            method,
            uri: uri.into(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    fn write_start_line(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("{} {} SIP/2.0\r\n", self.method, self.uri).as_bytes());
    }
}

impl Response {
    pub fn new(status: u16, reason: impl Into<String>) -> Response {
        Response {
            status,
            reason: reason.into(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// A response to `req` carrying its Via(s), From, To, Call-ID and CSeq
    /// (RFC 3261 §8.2.6); a 100 also echoes Timestamp (§8.2.6.1).
    pub fn for_request(req: &Request, status: u16, reason: &str) -> Response {
        let mut resp = Response::new(status, reason);
        for v in req.headers.get_all("Via") {
            resp.headers.push("Via", v);
        }
        for name in ["From", "To", "Call-ID", "CSeq"] {
            if let Some(v) = req.headers.get(name) {
                resp.headers.push(name, v);
            }
        }
        if status == 100
            && let Some(ts) = req.headers.get("Timestamp")
        {
            resp.headers.push("Timestamp", ts);
        }
        resp
    }

    /// Adds `;tag=` to To unless it already has a tag.
    pub fn with_to_tag(mut self, tag: &str) -> Response {
        if let Some(to) = self.headers.get("To")
            && tag_param(to).is_none()
        {
            let to = format!("{to};tag={tag}");
            self.headers.set("To", to);
        }
        self
    }

    pub fn is_provisional(&self) -> bool {
        self.status < 200
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    fn write_start_line(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("SIP/2.0 {} {}\r\n", self.status, self.reason).as_bytes());
    }
}

impl Message {
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }

    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }
}

// ---------------------------------------------------------------------------
// Errors

/// Why a message was rejected; [`ParseErrorKind::as_str`] is a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// Not SIP at all (binary, HTTP, ...).
    Garbage,
    /// Only CRLF keep-alives (RFC 5626 §3.5.1); not an error to count as abuse.
    Keepalive,
    /// The header section never ended.
    Truncated,
    /// Larger than [`MAX_MESSAGE_SIZE`].
    Oversized,
    /// A header line longer than [`MAX_HEADER_LINE_LEN`].
    HeaderTooLong,
    /// More than [`MAX_HEADERS`] header lines.
    TooManyHeaders,
    BadContentLength,
    BadStartLine,
    /// A SIP version other than 2.0 (answered 505).
    UnsupportedVersion,
    BadHeader,
    MissingHeader,
}

impl ParseErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ParseErrorKind::Garbage => "garbage",
            ParseErrorKind::Keepalive => "keepalive",
            ParseErrorKind::Truncated => "truncated",
            ParseErrorKind::Oversized => "oversized",
            ParseErrorKind::HeaderTooLong => "header_too_long",
            ParseErrorKind::TooManyHeaders => "too_many_headers",
            ParseErrorKind::BadContentLength => "bad_content_length",
            ParseErrorKind::BadStartLine => "bad_start_line",
            ParseErrorKind::UnsupportedVersion => "unsupported_version",
            ParseErrorKind::BadHeader => "bad_header",
            ParseErrorKind::MissingHeader => "missing_header",
        }
    }
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message that could not be parsed. The peer misbehaved: count
/// [`kind`](ParseError::kind), answer with [`bad_request`](ParseError::bad_request)
/// if there is one, and move on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("malformed SIP message ({kind}): {detail}")]
pub struct ParseError {
    kind: ParseErrorKind,
    detail: &'static str,
    /// The head of a malformed request, as far as it could be recovered.
    request: Option<Box<Request>>,
}

impl ParseError {
    fn new(kind: ParseErrorKind, detail: &'static str) -> ParseError {
        ParseError {
            kind,
            detail,
            request: None,
        }
    }

    fn with_head(mut self, start: &Option<StartLine>, headers: &Headers) -> ParseError {
        if let Some(StartLine::Request(method, uri)) = start {
            self.request = Some(Box::new(Request {
                method: method.clone(),
                uri: uri.clone(),
                headers: headers.clone(),
                body: Vec::new(),
            }));
        }
        self
    }

    pub fn kind(&self) -> ParseErrorKind {
        self.kind
    }

    /// What was wrong, as used in the reason phrase (e.g. `Content-Length`).
    pub fn detail(&self) -> &'static str {
        self.detail
    }

    /// The response to send when the malformed message was a request whose
    /// top Via (with branch) and CSeq survived (RFC 3261 §21.4.1): `400 Bad
    /// Request (<what>)` echoing Via, From, To, Call-ID and CSeq as far as
    /// they exist, `505` for a foreign SIP version, `513` when too large.
    /// Never for ACK (it cannot be answered) nor for malformed responses.
    pub fn bad_request(&self) -> Option<Response> {
        let req = self.request.as_deref()?;
        if req.method == Method::Ack {
            return None;
        }
        // The client matches a response by top Via branch and CSeq method
        // (§17.1.3), and it goes where the Via says: those two are required.
        // From, To and Call-ID are echoed when present, so that a request
        // that lacks one of them still learns why it failed.
        req.top_via()?.branch.as_ref()?;
        req.cseq()?;
        let (status, reason) = match self.kind {
            ParseErrorKind::UnsupportedVersion => (505, "Version Not Supported".to_owned()),
            ParseErrorKind::Oversized => (513, "Message Too Large".to_owned()),
            _ => (400, format!("Bad Request ({})", self.detail)),
        };
        Some(Response::for_request(req, status, &reason))
    }
}

// ---------------------------------------------------------------------------
// Parsing

#[derive(Debug, Clone)]
enum StartLine {
    Request(Method, String),
    Response(u16, String),
}

struct Head {
    start: StartLine,
    headers: Headers,
    content_length: Option<usize>,
}

/// Bytes of leading CRLF / LF (keep-alives and §7.5 padding).
fn leading_crlf(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

/// Bytes of CRLF keep-alives at the start of a stream buffer. A driver that
/// gets `Ok(None)` from [`parse_stream`] may drop these so that a peer that
/// only pings cannot grow the buffer.
pub fn stream_keepalive_len(buf: &[u8]) -> usize {
    leading_crlf(buf)
}

/// Finds the empty line ending the head: returns (head length, body start).
/// Accepts CRLF and bare LF line ends.
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut pos = 0;
    while pos < buf.len() {
        let nl = pos + buf[pos..].iter().position(|&b| b == b'\n')?;
        let line = &buf[pos..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() && pos > 0 {
            return Some((pos, nl + 1));
        }
        pos = nl + 1;
    }
    None
}

/// Length of the line being received (no LF yet) at the end of `buf`.
fn open_line_len(buf: &[u8]) -> usize {
    buf.iter().rev().take_while(|&&b| b != b'\n').count()
}

fn parse_start_line(
    line: &[u8],
) -> Result<StartLine, (ParseErrorKind, &'static str, Option<StartLine>)> {
    use ParseErrorKind::*;
    let Ok(line) = std::str::from_utf8(line) else {
        return Err((Garbage, "Start Line", None));
    };
    if line.len() > MAX_HEADER_LINE_LEN {
        return Err((HeaderTooLong, "Start Line Too Long", None));
    }
    if let Some(rest) = line.strip_prefix("SIP/") {
        let mut parts = rest.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let code = parts.next().unwrap_or("");
        let reason = parts.next().unwrap_or("");
        if version != "2.0" {
            return Err((UnsupportedVersion, "SIP Version", None));
        }
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err((BadStartLine, "Status Code", None));
        }
        let status: u16 = code
            .parse()
            .map_err(|_| (BadStartLine, "Status Code", None))?;
        if !(100..=699).contains(&status) {
            return Err((BadStartLine, "Status Code", None));
        }
        return Ok(StartLine::Response(status, reason.trim().to_owned()));
    }
    let parts: Vec<&str> = line.split(' ').collect();
    let looks_sip = line.contains("SIP/");
    if parts.len() != 3 {
        return Err(if looks_sip {
            (BadStartLine, "Request Line", None)
        } else {
            (Garbage, "Request Line", None)
        });
    }
    let (method, uri, version) = (parts[0], parts[1], parts[2]);
    let Ok(method) = method.parse::<Method>() else {
        return Err(if looks_sip {
            (BadStartLine, "Method", None)
        } else {
            (Garbage, "Method", None)
        });
    };
    if !version.starts_with("SIP/") {
        return Err((Garbage, "Request Line", None));
    }
    let start = StartLine::Request(method, uri.to_owned());
    if uri.is_empty() || !uri.contains(':') || uri.bytes().any(|b| b.is_ascii_control()) {
        return Err((BadStartLine, "Request-URI", Some(start)));
    }
    if version != "SIP/2.0" {
        return Err((UnsupportedVersion, "SIP Version", Some(start)));
    }
    Ok(start)
}

/// Parses the head (start line and headers, no terminating blank line).
/// Header-level problems do not stop the scan: the first one is reported,
/// together with everything that did parse, so a 400 can be addressed.
fn parse_head(head: &[u8]) -> Result<Head, ParseError> {
    use ParseErrorKind::*;
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next().unwrap_or(b"");
    let mut error: Option<(ParseErrorKind, &'static str)> = None;
    let start = match parse_start_line(first) {
        Ok(s) => Some(s),
        Err((kind, detail, partial)) => {
            if partial.is_none() {
                return Err(ParseError::new(kind, detail));
            }
            error = Some((kind, detail));
            partial
        }
    };
    let mut headers = Headers::new();
    // Whether the last header line was kept (so continuations can attach).
    let mut last_kept = false;
    for line in lines {
        if line.is_empty() {
            // The line end before the blank line that ended the head.
            continue;
        }
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            if !last_kept {
                error.get_or_insert((BadHeader, "Header Continuation"));
                continue;
            }
            let Ok(more) = std::str::from_utf8(line) else {
                error.get_or_insert((BadHeader, "Header Encoding"));
                continue;
            };
            if let Some((name, value)) = headers.entries.last_mut() {
                if name.len() + value.len() + line.len() + 2 > MAX_HEADER_LINE_LEN {
                    error.get_or_insert((HeaderTooLong, "Header Too Long"));
                    headers.entries.pop();
                    last_kept = false;
                    continue;
                }
                if !value.is_empty() {
                    value.push(' ');
                }
                value.push_str(more.trim());
            }
            continue;
        }
        last_kept = false;
        if line.len() > MAX_HEADER_LINE_LEN {
            error.get_or_insert((HeaderTooLong, "Header Too Long"));
            continue;
        }
        if headers.len() >= MAX_HEADERS {
            error.get_or_insert((TooManyHeaders, "Too Many Headers"));
            break;
        }
        let Ok(line) = std::str::from_utf8(line) else {
            error.get_or_insert((BadHeader, "Header Encoding"));
            continue;
        };
        let Some((name, value)) = line.split_once(':') else {
            error.get_or_insert((BadHeader, "Header Syntax"));
            continue;
        };
        let name = name.trim_end_matches([' ', '\t']);
        if !is_token(name) {
            error.get_or_insert((BadHeader, "Header Name"));
            continue;
        }
        headers.push(name, value.trim());
        last_kept = true;
    }

    let content_length = match content_length(&headers) {
        Ok(cl) => cl,
        Err(()) => {
            error.get_or_insert((BadContentLength, "Content-Length"));
            None
        }
    };
    if error.is_none() {
        error = validate(start.as_ref(), &headers);
    }
    match (error, start) {
        (None, Some(start)) => Ok(Head {
            start,
            headers,
            content_length,
        }),
        (Some((kind, detail)), start) => {
            Err(ParseError::new(kind, detail).with_head(&start, &headers))
        }
        (None, None) => Err(ParseError::new(BadStartLine, "Start Line")),
    }
}

fn content_length(headers: &Headers) -> Result<Option<usize>, ()> {
    let mut found = None;
    for v in headers.get_all("Content-Length") {
        if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        let n: usize = v.parse().map_err(|_| ())?;
        if found.is_some_and(|f| f != n) {
            return Err(());
        }
        found = Some(n);
    }
    Ok(found)
}

/// The mandatory headers the transaction layer relies on (RFC 3261 §8.1.1).
/// Max-Forwards is not enforced: many UAs omit it in responses and a UAS
/// loses nothing by tolerating it.
fn validate(
    start: Option<&StartLine>,
    headers: &Headers,
) -> Option<(ParseErrorKind, &'static str)> {
    use ParseErrorKind::*;
    let missing: [(&str, &'static str); 5] = [
        ("Via", "Missing Via"),
        ("From", "Missing From"),
        ("To", "Missing To"),
        ("Call-ID", "Missing Call-ID"),
        ("CSeq", "Missing CSeq"),
    ];
    for (name, detail) in missing {
        if headers.get(name).is_none_or(str::is_empty) {
            return Some((MissingHeader, detail));
        }
    }
    if headers.top_via().is_none() {
        return Some((BadHeader, "Malformed Via"));
    }
    if split_name_addr(headers.get("From").unwrap_or("")).is_none() {
        return Some((BadHeader, "Malformed From"));
    }
    if split_name_addr(headers.get("To").unwrap_or("")).is_none() {
        return Some((BadHeader, "Malformed To"));
    }
    let Some((_, cseq_method)) = headers.cseq() else {
        return Some((BadHeader, "Malformed CSeq"));
    };
    if let Some(StartLine::Request(method, _)) = start
        && *method != cseq_method
    {
        return Some((BadHeader, "CSeq Method"));
    }
    if headers.contains("Max-Forwards") && headers.max_forwards().is_none_or(|m| m > 255) {
        return Some((BadHeader, "Malformed Max-Forwards"));
    }
    None
}

fn build(head: Head, body: &[u8]) -> Message {
    match head.start {
        StartLine::Request(method, uri) => Message::Request(Request {
            method,
            uri,
            headers: head.headers,
            body: body.to_vec(),
        }),
        StartLine::Response(status, reason) => Message::Response(Response {
            status,
            reason,
            headers: head.headers,
            body: body.to_vec(),
        }),
    }
}

/// Parses one UDP datagram (RFC 3261 §18.3): the body is Content-Length
/// bytes (extra bytes are discarded) or, without Content-Length, the rest of
/// the datagram.
pub fn parse_datagram(buf: &[u8]) -> Result<Message, ParseError> {
    use ParseErrorKind::*;
    if buf.len() > MAX_MESSAGE_SIZE {
        return Err(ParseError::new(Oversized, "Message Too Large"));
    }
    let buf = &buf[leading_crlf(buf)..];
    if buf.is_empty() {
        return Err(ParseError::new(Keepalive, "Keep-Alive"));
    }
    let Some((head_len, body_start)) = find_head_end(buf) else {
        // Parse what is there so a truncated request can still be answered.
        let err = match parse_head(buf) {
            Ok(head) => {
                ParseError::new(Truncated, "Truncated").with_head(&Some(head.start), &head.headers)
            }
            Err(e) if e.kind == Garbage => e,
            Err(e) => ParseError {
                kind: Truncated,
                detail: "Truncated",
                ..e
            },
        };
        return Err(err);
    };
    let head = parse_head(&buf[..head_len])?;
    let rest = &buf[body_start..];
    let body = match head.content_length {
        Some(n) if n > rest.len() => {
            return Err(ParseError::new(BadContentLength, "Content-Length")
                .with_head(&Some(head.start), &head.headers));
        }
        Some(n) => &rest[..n],
        None => rest,
    };
    Ok(build(head, body))
}

/// Frames one message from a stream (TCP/TLS) buffer. `Ok(None)`: need more
/// bytes. `Ok(Some((msg, n)))`: drop `n` bytes (including any keep-alive
/// CRLFs before the message). Content-Length is mandatory on streams
/// (RFC 3261 §18.3). After an error the stream cannot be re-synchronised:
/// answer [`ParseError::bad_request`] if any, then close the connection.
pub fn parse_stream(buf: &[u8]) -> Result<Option<(Message, usize)>, ParseError> {
    use ParseErrorKind::*;
    let skip = leading_crlf(buf);
    if skip > MAX_MESSAGE_SIZE {
        return Err(ParseError::new(Oversized, "Too Many Keep-Alives"));
    }
    let rest = &buf[skip..];
    if rest.is_empty() {
        return Ok(None);
    }
    let window = &rest[..rest.len().min(MAX_MESSAGE_SIZE)];
    let Some((head_len, body_start)) = find_head_end(window) else {
        if rest.len() >= MAX_MESSAGE_SIZE {
            return Err(ParseError::new(Oversized, "Message Too Large"));
        }
        if open_line_len(rest) > MAX_HEADER_LINE_LEN {
            return Err(ParseError::new(HeaderTooLong, "Header Too Long"));
        }
        // Reject non-SIP early instead of buffering 64 KiB of it.
        if let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let first = rest[..nl].strip_suffix(b"\r").unwrap_or(&rest[..nl]);
            if let Err((kind @ (Garbage | BadStartLine | HeaderTooLong), detail, None)) =
                parse_start_line(first)
            {
                return Err(ParseError::new(kind, detail));
            }
        }
        return Ok(None);
    };
    let head = parse_head(&rest[..head_len])?;
    let Some(len) = head.content_length else {
        return Err(ParseError::new(MissingHeader, "Missing Content-Length")
            .with_head(&Some(head.start), &head.headers));
    };
    let total = body_start.saturating_add(len);
    if total > MAX_MESSAGE_SIZE {
        return Err(ParseError::new(Oversized, "Message Too Large")
            .with_head(&Some(head.start), &head.headers));
    }
    if rest.len() < total {
        return Ok(None);
    }
    let body = &rest[body_start..total];
    Ok(Some((build(head, body), skip + total)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn uri_addresses() {
        let a = |u: &str| uri_addr(u).map(|(a, s)| (a.to_string(), s));
        assert_eq!(
            a("sip:alice@192.0.2.1:5070"),
            Some(("192.0.2.1:5070".into(), false))
        );
        assert_eq!(
            a("<sip:192.0.2.1;transport=TCP>"),
            Some(("192.0.2.1:5060".into(), true))
        );
        assert_eq!(
            a("\"A\" <sips:a@[2001:db8::1]:5071;lr>"),
            Some(("[2001:db8::1]:5071".into(), true))
        );
        assert_eq!(
            a("sip:a@[2001:db8::1]"),
            Some(("[2001:db8::1]:5060".into(), false))
        );
        assert_eq!(a("sip:a@example.com"), None);
        assert_eq!(a("sip:a@192.0.2.1:x"), None);
        assert_eq!(a("tel:+4711"), None);
        assert_eq!(a("sip:a@[::1"), None);
    }

    const BARESIP_INVITE: &str = "INVITE sip:4711@192.0.2.10 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK4a1f0c2b8e6d;rport\r\n\
Contact: <sip:alice-0x55d1@192.0.2.20:5060;transport=udp>\r\n\
Max-Forwards: 70\r\n\
To: <sip:4711@192.0.2.10>\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=4f8a1c2d9e0b7a66\r\n\
Call-ID: 6e2d6c0f8a4b1e3c\r\n\
CSeq: 16421 INVITE\r\n\
User-Agent: baresip v3.10.1 (x86_64/linux)\r\n\
Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,UPDATE,REFER\r\n\
Supported: replaces,norefersub,100rel\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 219\r\n\
\r\n\
v=0\r\n\
o=- 1193934870 1614452497 IN IP4 192.0.2.20\r\n\
s=-\r\n\
c=IN IP4 192.0.2.20\r\n\
t=0 0\r\n\
m=audio 10492 RTP/AVP 96 0 8 101\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=sendrecv\r\n\
a=label:1\r\n\
a=ssrc:1 cname:x\r\n";

    const SIPP_INVITE: &str = "INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.1.1:5061;branch=z9hG4bK-2769-1-0\r\n\
From: sipp <sip:sipp@127.0.1.1:5061>;tag=2769SIPpTag001\r\n\
To: service <sip:service@127.0.0.1:5060>\r\n\
Call-ID: 1-2769@127.0.1.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: sip:sipp@127.0.1.1:5061\r\n\
Max-Forwards: 70\r\n\
Subject: Performance Test\r\n\
Content-Type: application/sdp\r\n\
Content-Length:   129\r\n\
\r\n\
v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.1.1\r\n\
s=-\r\n\
c=IN IP4 127.0.1.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

    fn req(msg: Message) -> Request {
        match msg {
            Message::Request(r) => r,
            Message::Response(_) => panic!("expected a request"),
        }
    }

    #[test]
    fn baresip_invite() {
        let r = req(parse_datagram(BARESIP_INVITE.as_bytes()).unwrap());
        assert_eq!(r.method, Method::Invite);
        assert_eq!(uri_user(&r.uri), Some("4711"));
        assert_eq!(r.call_id(), Some("6e2d6c0f8a4b1e3c"));
        assert_eq!(r.cseq(), Some((16421, Method::Invite)));
        assert_eq!(r.from_tag(), Some("4f8a1c2d9e0b7a66"));
        assert_eq!(r.to_tag(), None);
        assert_eq!(r.max_forwards(), Some(70));
        assert_eq!(r.content_type(), Some("application/sdp"));
        assert_eq!(r.body.len(), 219);
        assert!(r.body.ends_with(b"a=ssrc:1 cname:x\r\n"));
        let via = r.top_via().unwrap();
        assert_eq!(via.transport, "UDP");
        assert_eq!(via.host, "192.0.2.20");
        assert_eq!(via.port, Some(5060));
        assert_eq!(via.branch.as_deref(), Some("z9hG4bK4a1f0c2b8e6d"));
        assert_eq!(via.rport, Some(None));
        assert!(r.headers.has_option("Supported", "100rel"));
        let contact = r.contact().unwrap();
        assert_eq!(
            contact.uri,
            "sip:alice-0x55d1@192.0.2.20:5060;transport=udp"
        );
        let from = parse_name_addr(r.headers.get("f").unwrap()).unwrap();
        assert_eq!(from.display.as_deref(), Some("Alice"));
        assert_eq!(from.param("tag"), Some(Some("4f8a1c2d9e0b7a66")));
    }

    #[test]
    fn sipp_invite_and_round_trip() {
        let msg = parse_datagram(SIPP_INVITE.as_bytes()).unwrap();
        let r = req(msg.clone());
        assert_eq!(r.body.len(), 129);
        assert_eq!(r.headers.get("subject"), Some("Performance Test"));
        assert_eq!(r.headers.get("s"), Some("Performance Test"));
        assert_eq!(r.contact().unwrap().uri, "sip:sipp@127.0.1.1:5061");
        assert_eq!(uri_user(&r.uri), Some("service"));
        let again = parse_datagram(&msg.to_bytes()).unwrap();
        assert_eq!(again, msg);
        let (framed, n) = parse_stream(&msg.to_bytes()).unwrap().unwrap();
        assert_eq!(framed, msg);
        assert_eq!(n, msg.to_bytes().len());
    }

    #[test]
    fn compact_headers_and_bare_lf() {
        let raw = "OPTIONS sip:bridge@example.com SIP/2.0\n\
v: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKcompact\n\
f: <sip:a@example.com>;tag=1\n\
t: sip:bridge@example.com\n\
i: abc@def\n\
CSeq: 7 OPTIONS\n\
k: timer\n\
l: 0\n\n";
        let r = req(parse_datagram(raw.as_bytes()).unwrap());
        assert_eq!(r.call_id(), Some("abc@def"));
        assert_eq!(r.headers.get("Via"), r.headers.get("v"));
        let via = r.top_via().unwrap();
        assert_eq!(via.transport, "TCP");
        assert_eq!(via.host, "[2001:db8::1]");
        assert_eq!(via.port, Some(5070));
        assert_eq!(via.sent_by(), "[2001:db8::1]:5070");
        assert!(r.headers.has_option("Supported", "timer"));
        assert_eq!(r.to_tag(), None);
        assert_eq!(r.from_tag(), Some("1"));
        assert!(r.body.is_empty());
    }

    #[test]
    fn folded_header_lines() {
        let raw = "BYE sip:a@b SIP/2.0\r\n\
Via: SIP/2.0/UDP h1;branch=z9hG4bK1\r\n\
Subject: I know you're there,\r\n   pick up the phone\r\n\tand talk to me!\r\n\
From: <sip:x@y>;tag=a\r\nTo: <sip:a@b>;tag=b\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\r\n";
        let r = req(parse_datagram(raw.as_bytes()).unwrap());
        assert_eq!(
            r.headers.get("Subject"),
            Some("I know you're there, pick up the phone and talk to me!")
        );
    }

    #[test]
    fn multiple_vias_in_one_header() {
        let raw = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP first.example.com:4000;branch=z9hG4bK1;received=192.0.2.1;rport=4001, SIP/2.0/UDP second.example.com;branch=z9hG4bK2\r\n\
Via: SIP/2.0/TCP third.example.com;branch=z9hG4bK3\r\n\
From: <sip:x@y>;tag=a\r\nTo: <sip:a@b>;tag=b\r\nCall-ID: c\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
        let Message::Response(r) = parse_datagram(raw.as_bytes()).unwrap() else {
            panic!("expected response")
        };
        assert_eq!(r.status, 200);
        assert_eq!(r.reason, "OK");
        let vias: Vec<&str> = r.headers.get_all("via").collect();
        assert_eq!(vias.len(), 3);
        assert!(vias[1].starts_with("SIP/2.0/UDP second"));
        let top = r.top_via().unwrap();
        assert_eq!(top.received.as_deref(), Some("192.0.2.1"));
        assert_eq!(top.rport, Some(Some(4001)));
        assert_eq!(top.port, Some(4000));
        // for_request copies every Via, in order.
        let mut request = Request::new(Method::Bye, "sip:a@b");
        request.headers = r.headers.clone();
        let resp = Response::for_request(&request, 200, "OK");
        assert_eq!(resp.headers.get_all("Via").collect::<Vec<_>>(), vias);
    }

    #[test]
    fn unknown_method_is_other() {
        let raw = "FOOBAR sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
From: <sip:x@y>;tag=a\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 FOOBAR\r\nContent-Length: 0\r\n\r\n";
        let r = req(parse_datagram(raw.as_bytes()).unwrap());
        assert_eq!(r.method, Method::Other("FOOBAR".into()));
        assert_eq!(r.method.as_str(), "FOOBAR");
        assert_eq!("INVITE".parse::<Method>(), Ok(Method::Invite));
        assert!("IN VITE".parse::<Method>().is_err());
    }

    #[test]
    fn garbage_and_keepalive() {
        assert_eq!(
            parse_datagram(b"\x00\x01\x02\xff\r\n\r\n")
                .unwrap_err()
                .kind(),
            ParseErrorKind::Garbage
        );
        assert_eq!(
            parse_datagram(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap_err()
                .kind(),
            ParseErrorKind::Garbage
        );
        assert_eq!(
            parse_datagram(b"\r\n\r\n").unwrap_err().kind(),
            ParseErrorKind::Keepalive
        );
        assert_eq!(
            parse_datagram(b"").unwrap_err().kind(),
            ParseErrorKind::Keepalive
        );
        let e = parse_datagram(b"SIP/2.0 abc OK\r\n\r\n").unwrap_err();
        assert_eq!(e.kind(), ParseErrorKind::BadStartLine);
        assert_eq!(e.kind().as_str(), "bad_start_line");
        assert!(e.bad_request().is_none());
    }

    #[test]
    fn truncated_request_can_still_be_answered() {
        let cut = &SIPP_INVITE[..SIPP_INVITE.find("Subject").unwrap()];
        let e = parse_datagram(cut.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), ParseErrorKind::Truncated);
        let resp = e.bad_request().unwrap();
        assert_eq!(resp.status, 400);
        // Cut inside the Via: nothing to address an answer to.
        let e = parse_datagram(&SIPP_INVITE.as_bytes()[..60]).unwrap_err();
        assert_eq!(e.kind(), ParseErrorKind::Truncated);
        assert!(e.bad_request().is_none());
    }

    #[test]
    fn oversized_header_and_limits() {
        let long = "a".repeat(MAX_HEADER_LINE_LEN + 1);
        let raw = SIPP_INVITE.replace("Subject: Performance Test", &format!("Subject: {long}"));
        let e = parse_datagram(raw.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), ParseErrorKind::HeaderTooLong);
        let resp = e.bad_request().unwrap();
        assert_eq!(resp.reason, "Bad Request (Header Too Long)");

        let many: String = (0..MAX_HEADERS).map(|i| format!("X-H{i}: v\r\n")).collect();
        let raw = SIPP_INVITE.replace("Subject: Performance Test\r\n", &many);
        assert_eq!(
            parse_datagram(raw.as_bytes()).unwrap_err().kind(),
            ParseErrorKind::TooManyHeaders
        );

        let huge = vec![b'A'; MAX_MESSAGE_SIZE + 1];
        assert_eq!(
            parse_datagram(&huge).unwrap_err().kind(),
            ParseErrorKind::Oversized
        );
        assert_eq!(
            parse_stream(&huge).unwrap_err().kind(),
            ParseErrorKind::Oversized
        );
        let mut sip_prefix = b"OPTIONS sip:a@b SIP/2.0\r\nX: ".to_vec();
        sip_prefix.extend(std::iter::repeat_n(b'a', MAX_HEADER_LINE_LEN + 1));
        assert_eq!(
            parse_stream(&sip_prefix).unwrap_err().kind(),
            ParseErrorKind::HeaderTooLong
        );
    }

    #[test]
    fn content_length_mismatch() {
        let raw = SIPP_INVITE.replace("Content-Length:   129", "Content-Length: 500");
        let e = parse_datagram(raw.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), ParseErrorKind::BadContentLength);
        assert_eq!(e.kind().as_str(), "bad_content_length");
        let resp = e.bad_request().unwrap();
        assert_eq!(resp.status, 400);
        assert_eq!(resp.reason, "Bad Request (Content-Length)");

        // Shorter Content-Length: the surplus is discarded (§18.3).
        let raw = SIPP_INVITE.replace("Content-Length:   129", "Content-Length: 4");
        assert_eq!(req(parse_datagram(raw.as_bytes()).unwrap()).body, b"v=0\r");

        let raw = SIPP_INVITE.replace("Content-Length:   129", "Content-Length: -1");
        assert_eq!(
            parse_datagram(raw.as_bytes()).unwrap_err().kind(),
            ParseErrorKind::BadContentLength
        );

        // Without Content-Length on UDP the body is the rest of the datagram.
        let raw = SIPP_INVITE.replace("Content-Length:   129\r\n", "");
        assert_eq!(req(parse_datagram(raw.as_bytes()).unwrap()).body.len(), 129);
        // ... but it is mandatory on streams.
        let e = parse_stream(raw.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), ParseErrorKind::MissingHeader);
        assert!(e.bad_request().is_some());
    }

    #[test]
    fn bad_request_has_the_right_headers() {
        let raw = SIPP_INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 INVITE\r\nMax-Forwards: lots");
        let e = parse_datagram(raw.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), ParseErrorKind::BadHeader);
        let resp = e.bad_request().unwrap();
        assert_eq!(resp.status, 400);
        assert_eq!(resp.reason, "Bad Request (Malformed Max-Forwards)");
        assert_eq!(resp.call_id(), Some("1-2769@127.0.1.1"));
        assert_eq!(resp.cseq(), Some((1, Method::Invite)));
        assert_eq!(resp.from_tag(), Some("2769SIPpTag001"));
        assert_eq!(
            resp.top_via().unwrap().branch.as_deref(),
            Some("z9hG4bK-2769-1-0")
        );
        assert_eq!(
            resp.headers.get("To"),
            Some("service <sip:service@127.0.0.1:5060>")
        );
        // The 400 itself is a well-formed message.
        let Message::Response(back) = parse_datagram(&resp.to_bytes()).unwrap() else {
            panic!("expected response")
        };
        assert_eq!(back.status, 400);

        let missing = SIPP_INVITE.replace("Call-ID: 1-2769@127.0.1.1\r\n", "");
        let e = parse_datagram(missing.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), ParseErrorKind::MissingHeader);
        let resp = e.bad_request().unwrap();
        assert_eq!(resp.reason, "Bad Request (Missing Call-ID)");
        assert_eq!(resp.call_id(), None);
        assert_eq!(resp.from_tag(), Some("2769SIPpTag001"));

        let no_cseq = SIPP_INVITE.replace("CSeq: 1 INVITE\r\n", "");
        assert!(
            parse_datagram(no_cseq.as_bytes())
                .unwrap_err()
                .bad_request()
                .is_none(),
            "without CSeq the client could not match an answer"
        );

        let ack = "ACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
From: <sip:x@y>;tag=a\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 ACK\r\nContent-Length: 9\r\n\r\n";
        assert!(
            parse_datagram(ack.as_bytes())
                .unwrap_err()
                .bad_request()
                .is_none()
        );

        let v3 = SIPP_INVITE.replace(
            "INVITE sip:service@127.0.0.1:5060 SIP/2.0",
            "INVITE sip:s@h SIP/3.0",
        );
        let e = parse_datagram(v3.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), ParseErrorKind::UnsupportedVersion);
        assert_eq!(e.bad_request().unwrap().status, 505);

        // A malformed response is never answered.
        let resp =
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n";
        assert!(
            parse_datagram(resp.as_bytes())
                .unwrap_err()
                .bad_request()
                .is_none()
        );
    }

    #[test]
    fn stream_framing() {
        let a = parse_datagram(SIPP_INVITE.as_bytes()).unwrap().to_bytes();
        let b = parse_datagram(BARESIP_INVITE.as_bytes())
            .unwrap()
            .to_bytes();
        let mut buf = b"\r\n\r\n".to_vec();
        buf.extend_from_slice(&a);
        buf.extend_from_slice(&b);
        let (m1, n1) = parse_stream(&buf).unwrap().unwrap();
        assert_eq!(n1, 4 + a.len());
        assert_eq!(req(m1).call_id(), Some("1-2769@127.0.1.1"));
        let (m2, n2) = parse_stream(&buf[n1..]).unwrap().unwrap();
        assert_eq!(n2, b.len());
        assert_eq!(req(m2).call_id(), Some("6e2d6c0f8a4b1e3c"));
        assert!(parse_stream(&buf[n1 + n2..]).unwrap().is_none());

        // Every strict prefix is incomplete, never an error.
        for cut in [1, 10, 40, a.len() / 2, a.len() - 130, a.len() - 1] {
            assert!(parse_stream(&a[..cut]).unwrap().is_none(), "prefix {cut}");
        }
        assert!(parse_stream(b"\r\n\r\n").unwrap().is_none());
        assert_eq!(stream_keepalive_len(b"\r\n\r\nINV"), 4);
    }

    #[test]
    fn headers_editing() {
        let mut h = Headers::new();
        h.push(
            "Via",
            "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2",
        );
        h.push("X-A", "1");
        h.push("x-a", "2");
        h.push("Route", "<sip:p1;lr>,<sip:p2;lr>");
        assert_eq!(h.get_all("X-A").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(
            h.get_all("Route").collect::<Vec<_>>(),
            ["<sip:p1;lr>", "<sip:p2;lr>"]
        );
        h.set("X-A", "3");
        assert_eq!(h.get_all("X-A").collect::<Vec<_>>(), ["3"]);
        assert_eq!(h.iter().nth(1), Some(("X-A", "3")));
        assert!(h.remove("x-a"));
        assert!(!h.contains("X-A"));
        h.replace_top_via("SIP/2.0/UDP a;branch=z9hG4bK1;received=1.2.3.4".into());
        assert_eq!(h.get_all("v").count(), 2);
        assert_eq!(
            h.iter().next().map(|(_, v)| v),
            Some("SIP/2.0/UDP a;branch=z9hG4bK1;received=1.2.3.4")
        );
    }

    #[test]
    fn uri_and_name_addr_helpers() {
        assert_eq!(uri_user("sip:4711@host;transport=tcp"), Some("4711"));
        assert_eq!(uri_user("<sips:4711:pw@host>"), Some("4711"));
        assert_eq!(
            uri_user("\"Room\" <sip:conf-1@bridge>;tag=1"),
            Some("conf-1")
        );
        assert_eq!(uri_user("tel:+4930123;phone-context=x"), Some("+4930123"));
        assert_eq!(uri_user("sip:host.only"), None);
        assert_eq!(uri_user("http://x@y"), None);
        let na = parse_name_addr("\"A \\\"B\\\" <C>\" <sip:a@b;lr>;tag=x;foo").unwrap();
        assert_eq!(na.display.as_deref(), Some("A \"B\" <C>"));
        assert_eq!(na.uri, "sip:a@b;lr");
        assert_eq!(
            na.params,
            vec![("tag".into(), Some("x".into())), ("foo".into(), None)]
        );
        assert_eq!(tag_param("sip:a@b;tag=99"), Some("99"));
        assert_eq!(tag_param("<sip:a@b;tag=99>"), None);
        assert!(parse_name_addr("<sip:a@b").is_none());
        assert!(parse_name_addr("").is_none());
    }

    #[test]
    fn response_helpers() {
        let r = req(parse_datagram(SIPP_INVITE.as_bytes()).unwrap());
        let resp = Response::for_request(&r, 180, "Ringing").with_to_tag("bridge1");
        assert_eq!(resp.to_tag(), Some("bridge1"));
        let resp = resp.with_to_tag("other");
        assert_eq!(resp.to_tag(), Some("bridge1"));
        assert_eq!(resp.headers.get("Subject"), None);
        assert!(resp.is_provisional());
        let bytes = resp.to_bytes();
        assert!(bytes.starts_with(b"SIP/2.0 180 Ringing\r\n"));
        assert!(bytes.ends_with(b"Content-Length: 0\r\n\r\n"));
    }

    fn size_related(kind: ParseErrorKind) -> bool {
        matches!(
            kind,
            ParseErrorKind::Oversized
                | ParseErrorKind::TooManyHeaders
                | ParseErrorKind::HeaderTooLong
        )
    }

    /// The properties the cargo-fuzz target checks, over a deterministic
    /// mutation loop so they also run in `cargo test`.
    #[test]
    fn mutations_keep_the_fuzz_invariants() {
        let seeds = [
            BARESIP_INVITE,
            SIPP_INVITE,
            "SIP/2.0 200 OK\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1, SIP/2.0/UDP g\r\nf: <sip:a@b>;tag=1\r\nt: \"x,y\" <sip:c@d>;tag=2\r\ni: x\r\nCSeq: 1 BYE\r\nl: 0\r\n\r\n",
        ];
        let alphabet = b"\r\n :;,<>\"\\=@\t\x00\xff0aZ";
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000 {
            let mut data = seeds[round % seeds.len()].as_bytes().to_vec();
            for _ in 0..(1 + next() % 4) {
                let at = (next() as usize) % (data.len() + 1);
                let byte = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 if at < data.len() => data[at] = byte,
                    1 if at < data.len() => {
                        data.remove(at);
                    }
                    _ => data.insert(at, byte),
                }
            }
            match parse_datagram(&data) {
                Ok(msg) => {
                    let bytes = msg.to_bytes();
                    match parse_datagram(&bytes) {
                        Ok(again) => assert_eq!(
                            again.to_bytes(),
                            bytes,
                            "not a fixed point: {:?}",
                            String::from_utf8_lossy(&data)
                        ),
                        Err(e) => assert!(
                            size_related(e.kind()),
                            "{e}: {:?}",
                            String::from_utf8_lossy(&data)
                        ),
                    }
                    let (framed, used) = parse_stream(&bytes).unwrap().unwrap();
                    assert_eq!(used, bytes.len());
                    assert_eq!(framed.to_bytes(), bytes);
                }
                Err(e) => {
                    if let Some(resp) = e.bad_request()
                        && let Err(e2) = parse_datagram(&resp.to_bytes())
                    {
                        // Only what was missing or malformed in the request
                        // may be missing or malformed in our answer.
                        assert!(
                            matches!(
                                e2.kind(),
                                ParseErrorKind::MissingHeader | ParseErrorKind::BadHeader
                            ) || size_related(e2.kind()),
                            "400 does not parse ({e2}): {:?}",
                            String::from_utf8_lossy(&data)
                        );
                    }
                }
            }
            let _ = parse_stream(&data);
        }
    }

    #[test]
    fn never_panics_on_prefixes_and_bit_flips() {
        let base = BARESIP_INVITE.as_bytes();
        for i in 0..base.len() {
            let _ = parse_datagram(&base[..i]);
            let _ = parse_stream(&base[..i]);
            let mut flipped = base.to_vec();
            flipped[i] ^= 0x80;
            if let Err(e) = parse_datagram(&flipped) {
                let _ = e.bad_request();
            }
            flipped[i] = b',';
            let _ = parse_datagram(&flipped).map(|m| m.to_bytes());
        }
    }
}
