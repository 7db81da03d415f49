//! A small SIP user agent client: just enough of RFC 3261 to place one call
//! over UDP, keep it up, and hang it up.
//!
//! [`Message`] parses and builds text SIP. [`Uac`] is the call's signalling as a
//! sans-IO state machine (the house style, see `STYLE.md`): the driver feeds it
//! datagrams and the time, and drains [`Uac::poll_transmit`],
//! [`Uac::poll_event`] and [`Uac::poll_timeout`]. It never reads a clock and
//! draws no random numbers; identifiers come in through [`UacConfig`].
//!
//! Left out on purpose: TCP/TLS, authentication, CANCEL (a hang-up while the
//! INVITE is pending waits for the final response and then sends BYE), forking,
//! early media and offers in re-INVITEs beyond echoing our own SDP.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// RFC 3261 timer T1: the first retransmission interval on UDP.
pub const T1: Duration = Duration::from_millis(500);
/// RFC 3261 timer T2: the cap on non-INVITE retransmission intervals.
pub const T2: Duration = Duration::from_secs(4);
/// Timers B and F: how long a client transaction waits for a final response.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(32);

/// The first line of a SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, uri: String },
    Response { code: u16, reason: String },
}

/// A parsed (or to-be-sent) SIP message. Header names are kept in their long
/// form; compact forms (`v`, `f`, `t`, ...) are expanded on parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

fn expand_compact(name: &str) -> &str {
    match name {
        "v" | "V" => "Via",
        "f" | "F" => "From",
        "t" | "T" => "To",
        "i" | "I" => "Call-ID",
        "m" | "M" => "Contact",
        "l" | "L" => "Content-Length",
        "c" | "C" => "Content-Type",
        "k" | "K" => "Supported",
        _ => name,
    }
}

impl Message {
    pub fn request(method: &str, uri: &str) -> Self {
        Message {
            start: StartLine::Request {
                method: method.to_owned(),
                uri: uri.to_owned(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn response(code: u16, reason: &str) -> Self {
        Message {
            start: StartLine::Response {
                code,
                reason: reason.to_owned(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Appends a header (builder style).
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn with_body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.headers
            .push(("Content-Type".to_owned(), content_type.to_owned()));
        self.body = body.into();
        self
    }

    /// Parses one datagram. The body is cut at `Content-Length` when present;
    /// a `Content-Length` beyond the datagram is an error.
    pub fn parse(buf: &[u8]) -> Result<Message> {
        let (head_len, sep_len) = find_head_end(buf)
            .ok_or_else(|| Error::parse("SIP message", "no blank line after headers"))?;
        let head = std::str::from_utf8(&buf[..head_len])
            .map_err(|_| Error::parse("SIP message", "headers are not UTF-8"))?;
        let rest = &buf[head_len + sep_len..];

        let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let first = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| Error::parse("SIP message", "empty start line"))?;
        let start = parse_start_line(first)?;

        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                // Header folding: a continuation of the previous value.
                let (_, value) = headers
                    .last_mut()
                    .ok_or_else(|| Error::parse("SIP header", "continuation before any header"))?;
                value.push(' ');
                value.push_str(line.trim());
                continue;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| Error::parse("SIP header", format!("no colon in {line:?}")))?;
            let name = name.trim();
            if name.is_empty() {
                return Err(Error::parse("SIP header", "empty header name"));
            }
            headers.push((expand_compact(name).to_owned(), value.trim().to_owned()));
        }

        let mut msg = Message {
            start,
            headers,
            body: Vec::new(),
        };
        msg.body = match msg.header("Content-Length") {
            Some(v) => {
                let len: usize = v
                    .parse()
                    .map_err(|_| Error::parse("Content-Length", v.to_owned()))?;
                if len > rest.len() {
                    return Err(Error::parse(
                        "SIP message",
                        format!("Content-Length {len} but only {} bytes", rest.len()),
                    ));
                }
                rest[..len].to_vec()
            }
            None => rest.to_vec(),
        };
        Ok(msg)
    }

    /// Serialises, writing `Content-Length` from the body (any existing one is
    /// replaced).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(512);
        match &self.start {
            StartLine::Request { method, uri } => {
                let _ = write!(out, "{method} {uri} SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                let _ = write!(out, "SIP/2.0 {code} {reason}\r\n");
            }
        }
        for (name, value) in &self.headers {
            if name.eq_ignore_ascii_case("Content-Length") {
                continue;
            }
            let _ = write!(out, "{name}: {value}\r\n");
        }
        let _ = write!(out, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn code(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// `CSeq` as (number, method).
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let (n, m) = self.header("CSeq")?.split_once(char::is_whitespace)?;
        Some((n.trim().parse().ok()?, m.trim()))
    }

    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID")
    }

    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}

fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
        return Some((i, 4));
    }
    // Tolerate bare-LF peers.
    buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2))
}

fn parse_start_line(line: &str) -> Result<StartLine> {
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code: u16 = code
            .parse()
            .ok()
            .filter(|c| (100..700).contains(c))
            .ok_or_else(|| Error::parse("status line", line.to_owned()))?;
        return Ok(StartLine::Response {
            code,
            reason: reason.to_owned(),
        });
    }
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(uri), Some("SIP/2.0"), None)
            if !method.is_empty() && !uri.is_empty() =>
        {
            Ok(StartLine::Request {
                method: method.to_owned(),
                uri: uri.to_owned(),
            })
        }
        _ => Err(Error::parse("request line", line.to_owned())),
    }
}

/// A header parameter (`;tag=abc`) of a From/To/Contact/Via value. Parameters
/// inside `<...>` belong to the URI and are skipped.
pub fn header_param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let params = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value.split_once(';').map_or("", |(_, p)| p),
    };
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// The URI of a name-addr (`"Bob" <sip:bob@h>;tag=1` → `sip:bob@h`) or of a
/// bare addr-spec (`sip:bob@h;tag=1` → `sip:bob@h`).
pub fn name_addr_uri(value: &str) -> &str {
    if let (Some(a), Some(b)) = (value.find('<'), value.find('>'))
        && a < b
    {
        return value[a + 1..b].trim();
    }
    value.split(';').next().unwrap_or(value).trim()
}

/// Where to send a request for a SIP URI, when its host is an IP literal.
/// Names are not resolved: the bridge is addressed by IP in every setup we run.
pub fn uri_socket_addr(uri: &str) -> Option<SocketAddr> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .unwrap_or(uri);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = rest.split([';', '?']).next().unwrap_or(rest);
    let addr = if let Ok(sa) = hostport.parse::<SocketAddr>() {
        sa
    } else {
        let host = hostport.trim_start_matches('[').trim_end_matches(']');
        SocketAddr::new(host.parse::<IpAddr>().ok()?, 5060)
    };
    (!addr.ip().is_unspecified() && addr.port() != 0).then_some(addr)
}

/// A SIP-safe user part made from a display name.
pub fn user_part(name: &str) -> String {
    let user: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.!~*'".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if user.is_empty() {
        "anonymous".into()
    } else {
        user
    }
}

fn quoted(name: &str) -> String {
    let mut q = String::with_capacity(name.len() + 2);
    q.push('"');
    for c in name.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// What the UAC needs to place one call.
#[derive(Debug, Clone)]
pub struct UacConfig {
    /// Where the INVITE goes.
    pub server: SocketAddr,
    /// The address of our SIP socket (Via, Contact).
    pub local: SocketAddr,
    /// Request-URI user part.
    pub conference: String,
    /// From display name (and, sanitised, user part).
    pub name: String,
    /// Our SDP offer.
    pub offer: String,
    pub call_id: String,
    pub local_tag: String,
    /// Unique per call; branch parameters are derived from it.
    pub branch_seed: String,
    /// Give up on the INVITE after this long without a final response.
    pub invite_timeout: Duration,
}

/// What happened to the call, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UacEvent {
    Provisional {
        code: u16,
    },
    /// 200 OK received and ACKed. `answer` is the SDP body.
    Established {
        answer: String,
    },
    Rejected {
        code: u16,
        reason: String,
    },
    /// No final response to the INVITE in time.
    TimedOut,
    /// The far end sent BYE (already answered 200).
    RemoteHangup,
    /// Our BYE got a final response.
    HungUp {
        code: u16,
    },
    /// Our BYE got no final response in time.
    ByeTimedOut,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    Calling,
    Established,
    Terminating,
    Terminated,
}

#[derive(Debug)]
struct Retransmit {
    next_at: Option<Instant>,
    interval: Duration,
    give_up_at: Instant,
}

/// One outgoing call's signalling (a UAC INVITE transaction, then the dialog).
#[derive(Debug)]
pub struct Uac {
    cfg: UacConfig,
    state: CallState,
    from: String,
    /// `To` as the 2xx carried it (with the remote tag).
    to: String,
    remote_target: String,
    route_set: Vec<String>,
    next_hop: SocketAddr,
    cseq: u32,
    invite: Vec<u8>,
    /// Our ACK to the final response, re-sent when that response is retransmitted.
    ack: Option<Transmit>,
    bye: Option<Transmit>,
    timer: Option<Retransmit>,
    hangup_pending: bool,
    transmits: VecDeque<Transmit>,
    events: VecDeque<UacEvent>,
    malformed: u64,
    /// The `Reason` header (RFC 3326) of the far end's BYE.
    remote_bye_reason: Option<String>,
}

impl Uac {
    /// Builds the INVITE and queues its first transmission.
    pub fn new(cfg: UacConfig, now: Instant) -> Self {
        let user = user_part(&cfg.name);
        let from = format!(
            "{} <sip:{user}@{}>;tag={}",
            quoted(&cfg.name),
            cfg.local.ip(),
            cfg.local_tag
        );
        let target = format!("sip:{}@{}", user_part(&cfg.conference), cfg.server);
        let to = format!("<{target}>");
        let invite = Message::request("INVITE", &target)
            .with(
                "Via",
                format!(
                    "SIP/2.0/UDP {};branch={};rport",
                    cfg.local,
                    invite_branch(&cfg)
                ),
            )
            .with("Max-Forwards", "70")
            .with("From", from.clone())
            .with("To", to.clone())
            .with("Call-ID", cfg.call_id.clone())
            .with("CSeq", "1 INVITE")
            .with("Contact", format!("<sip:{user}@{}>", cfg.local))
            .with("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO")
            .with("User-Agent", "tandem-loadtest")
            .with_body("application/sdp", cfg.offer.clone())
            .to_bytes();
        let mut uac = Uac {
            next_hop: cfg.server,
            remote_target: target,
            state: CallState::Calling,
            from,
            to,
            route_set: Vec::new(),
            cseq: 1,
            invite: invite.clone(),
            ack: None,
            bye: None,
            timer: Some(Retransmit {
                next_at: Some(now + T1),
                interval: T1,
                give_up_at: now + cfg.invite_timeout,
            }),
            hangup_pending: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            malformed: 0,
            remote_bye_reason: None,
            cfg,
        };
        uac.transmits.push_back(Transmit {
            to: uac.cfg.server,
            payload: invite,
        });
        uac
    }

    pub fn state(&self) -> CallState {
        self.state
    }

    pub fn call_id(&self) -> &str {
        &self.cfg.call_id
    }

    /// Datagrams we could not parse (counted, otherwise ignored).
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<UacEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = self.timer.as_ref()?;
        Some(t.next_at.map_or(t.give_up_at, |n| n.min(t.give_up_at)))
    }

    /// Ends the call: BYE when established; when still calling, waits for the
    /// final response and sends BYE right after the ACK.
    pub fn hangup(&mut self, now: Instant) {
        match self.state {
            CallState::Calling => self.hangup_pending = true,
            CallState::Established => self.send_bye(now),
            CallState::Terminating | CallState::Terminated => {}
        }
    }

    /// The `Reason` header of the BYE the far end sent, if any.
    pub fn remote_bye_reason(&self) -> Option<&str> {
        self.remote_bye_reason.as_deref()
    }

    /// Sends an in-dialog INFO with `body` (DTMF as `application/dtmf-relay`,
    /// say). Not retransmitted: on loopback a lost INFO is a lost key press,
    /// as on a real line without reliable INFO.
    pub fn send_info(&mut self, content_type: &str, body: &str) {
        if self.state != CallState::Established {
            return;
        }
        self.cseq += 1;
        let branch = format!("z9hG4bK{}-{}", self.cfg.branch_seed, self.cseq);
        let payload = self
            .build_message("INFO", self.cseq, &branch)
            .with_body(content_type, body.to_owned())
            .to_bytes();
        self.transmits.push_back(Transmit {
            to: self.next_hop,
            payload,
        });
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(timer) = self.timer.as_mut() else {
            return;
        };
        if now >= timer.give_up_at {
            self.timer = None;
            let event = match self.state {
                CallState::Calling => UacEvent::TimedOut,
                _ => UacEvent::ByeTimedOut,
            };
            self.state = CallState::Terminated;
            self.events.push_back(event);
            return;
        }
        if timer.next_at.is_some_and(|t| now >= t) {
            let payload = match self.state {
                // Timer A doubles without a cap; Timer E is capped at T2.
                CallState::Calling => {
                    timer.interval *= 2;
                    self.invite.clone()
                }
                CallState::Terminating => {
                    timer.interval = (timer.interval * 2).min(T2);
                    match &self.bye {
                        Some(b) => b.payload.clone(),
                        None => return,
                    }
                }
                _ => return,
            };
            timer.next_at = Some(now + timer.interval);
            let to = match self.state {
                CallState::Calling => self.cfg.server,
                _ => self.next_hop,
            };
            self.transmits.push_back(Transmit { to, payload });
        }
    }

    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        // Keep-alive CRLFs (RFC 5626) are not messages.
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(_) => {
                self.malformed += 1;
                return;
            }
        };
        match msg.start {
            StartLine::Response { .. } => self.handle_response(now, &msg),
            StartLine::Request { .. } => self.handle_request(from, &msg),
        }
    }

    fn handle_response(&mut self, now: Instant, msg: &Message) {
        let (Some(code), Some((cseq, method))) = (msg.code(), msg.cseq()) else {
            self.malformed += 1;
            return;
        };
        if msg.call_id() != Some(self.cfg.call_id.as_str()) {
            return;
        }
        match method {
            "INVITE" if cseq == 1 => self.handle_invite_response(now, code, msg),
            "BYE" if cseq == self.cseq && code >= 200 && self.state == CallState::Terminating => {
                self.state = CallState::Terminated;
                self.timer = None;
                self.events.push_back(UacEvent::HungUp { code });
            }
            _ => {}
        }
    }

    fn handle_invite_response(&mut self, now: Instant, code: u16, msg: &Message) {
        if self.state != CallState::Calling {
            // A retransmitted final response: our ACK was lost.
            if code >= 200
                && let Some(ack) = &self.ack
            {
                self.transmits.push_back(ack.clone());
            }
            return;
        }
        if code < 200 {
            // Proceeding: Timer A stops, Timer B keeps running.
            if let Some(t) = self.timer.as_mut() {
                t.next_at = None;
            }
            self.events.push_back(UacEvent::Provisional { code });
            return;
        }
        self.timer = None;
        if let Some(to) = msg.header("To") {
            self.to = to.to_owned();
        }
        if code >= 300 {
            // The ACK of a non-2xx belongs to the INVITE transaction: same branch.
            let ack = self.build_request("ACK", 1, &invite_branch(&self.cfg), self.cfg.server);
            self.transmits.push_back(ack.clone());
            self.ack = Some(ack);
            self.state = CallState::Terminated;
            let reason = match &msg.start {
                StartLine::Response { reason, .. } => reason.clone(),
                StartLine::Request { .. } => String::new(),
            };
            self.events.push_back(UacEvent::Rejected { code, reason });
            return;
        }
        if let Some(contact) = msg.header("Contact") {
            self.remote_target = name_addr_uri(contact).to_owned();
        }
        // A UAC uses Record-Route in reverse order as its route set.
        self.route_set = msg
            .headers_named("Record-Route")
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect();
        self.route_set.reverse();
        self.next_hop = self
            .route_set
            .first()
            .map(|r| name_addr_uri(r))
            .or(Some(self.remote_target.as_str()))
            .and_then(uri_socket_addr)
            .unwrap_or(self.cfg.server);
        let branch = format!("{}-ack", invite_branch(&self.cfg));
        let ack = self.build_request("ACK", 1, &branch, self.next_hop);
        self.transmits.push_back(ack.clone());
        self.ack = Some(ack);
        self.state = CallState::Established;
        let answer = msg.body_str().unwrap_or_default().to_owned();
        self.events.push_back(UacEvent::Established { answer });
        if self.hangup_pending {
            self.send_bye(now);
        }
    }

    fn handle_request(&mut self, from: SocketAddr, msg: &Message) {
        let method = msg.method().unwrap_or_default();
        if method == "ACK" {
            return;
        }
        let ours = msg.call_id() == Some(self.cfg.call_id.as_str());
        let (code, reason, body) = match method {
            "OPTIONS" => (200, "OK", None),
            _ if !ours => (481, "Call/Transaction Does Not Exist", None),
            "BYE" => {
                self.remote_bye_reason = msg.header("Reason").map(str::to_owned);
                if matches!(self.state, CallState::Established | CallState::Terminating) {
                    self.state = CallState::Terminated;
                    self.timer = None;
                    self.events.push_back(UacEvent::RemoteHangup);
                }
                (200, "OK", None)
            }
            // A re-INVITE (session refresh, hold): answer with our original
            // SDP; we never change our media.
            "INVITE" if self.state == CallState::Established => {
                (200, "OK", Some(self.cfg.offer.clone()))
            }
            "INVITE" => (481, "Call/Transaction Does Not Exist", None),
            "INFO" | "UPDATE" | "NOTIFY" | "MESSAGE" => (200, "OK", None),
            _ => (501, "Not Implemented", None),
        };
        let mut resp = Message::response(code, reason);
        for via in msg.headers_named("Via") {
            resp = resp.with("Via", via);
        }
        for name in ["From", "To", "Call-ID", "CSeq"] {
            if let Some(v) = msg.header(name) {
                let mut v = v.to_owned();
                if name == "To" && header_param(&v, "tag").is_none() {
                    let _ = write!(v, ";tag={}", self.cfg.local_tag);
                }
                resp = resp.with(name, v);
            }
        }
        resp = resp
            .with(
                "Contact",
                format!("<sip:{}@{}>", user_part(&self.cfg.name), self.cfg.local),
            )
            .with("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO");
        if let Some(body) = body {
            resp = resp.with_body("application/sdp", body);
        }
        // Responses go back where the request came from (rport-style), which
        // is also where the bridge listens.
        self.transmits.push_back(Transmit {
            to: from,
            payload: resp.to_bytes(),
        });
    }

    fn send_bye(&mut self, now: Instant) {
        self.cseq += 1;
        let branch = format!("{}-{}", self.cfg.branch_seed, self.cseq);
        let bye = self.build_request("BYE", self.cseq, &format!("z9hG4bK{branch}"), self.next_hop);
        self.transmits.push_back(bye.clone());
        self.bye = Some(bye);
        self.state = CallState::Terminating;
        self.timer = Some(Retransmit {
            next_at: Some(now + T1),
            interval: T1,
            give_up_at: now + TRANSACTION_TIMEOUT,
        });
    }

    fn build_request(&self, method: &str, cseq: u32, branch: &str, to: SocketAddr) -> Transmit {
        Transmit {
            to,
            payload: self.build_message(method, cseq, branch).to_bytes(),
        }
    }

    fn build_message(&self, method: &str, cseq: u32, branch: &str) -> Message {
        // Until a 2xx names a Contact, the remote target is the INVITE's
        // Request-URI, which is what the ACK of a non-2xx must carry.
        let mut m = Message::request(method, &self.remote_target)
            .with(
                "Via",
                format!("SIP/2.0/UDP {};branch={branch};rport", self.cfg.local),
            )
            .with("Max-Forwards", "70");
        for route in &self.route_set {
            m = m.with("Route", route.clone());
        }
        m.with("From", self.from.clone())
            .with("To", self.to.clone())
            .with("Call-ID", self.cfg.call_id.clone())
            .with("CSeq", format!("{cseq} {method}"))
            .with("User-Agent", "tandem-loadtest")
    }
}

fn invite_branch(cfg: &UacConfig) -> String {
    format!("z9hG4bK{}", cfg.branch_seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    fn config() -> UacConfig {
        UacConfig {
            server: addr("127.0.0.1:5060"),
            local: addr("127.0.0.1:40000"),
            conference: "4711".into(),
            name: "Room \"A\" 1".into(),
            offer: "v=0\r\n".into(),
            call_id: "cid@test".into(),
            local_tag: "ltag".into(),
            branch_seed: "seed".into(),
            invite_timeout: TRANSACTION_TIMEOUT,
        }
    }

    fn sent(uac: &mut Uac) -> Vec<(SocketAddr, Message)> {
        std::iter::from_fn(|| uac.poll_transmit())
            .map(|t| {
                (
                    t.to,
                    Message::parse(&t.payload).expect("we send parseable SIP"),
                )
            })
            .collect()
    }

    fn response_to(req: &Message, code: u16, extra: &[(&str, &str)], body: &str) -> Vec<u8> {
        let mut r = Message::response(code, "Whatever");
        for name in ["Via", "From", "Call-ID", "CSeq"] {
            r = r.with(name, req.header(name).expect("header"));
        }
        r = r.with("To", format!("{};tag=rtag", req.header("To").expect("To")));
        for (n, v) in extra {
            r = r.with(n, *v);
        }
        if !body.is_empty() {
            r = r.with_body("application/sdp", body);
        }
        r.to_bytes()
    }

    #[test]
    fn parse_request_with_compact_headers_folding_and_body() {
        let raw = b"BYE sip:a@127.0.0.1:4000 SIP/2.0\r\nv: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\n\
                    i: abc\r\nSubject: one\r\n  two\r\nl: 4\r\n\r\nbodyEXTRA";
        let m = Message::parse(raw).expect("parse");
        assert_eq!(m.method(), Some("BYE"));
        assert_eq!(m.header("via"), Some("SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx"));
        assert_eq!(m.call_id(), Some("abc"));
        assert_eq!(m.header("Subject"), Some("one two"));
        assert_eq!(m.body, b"body");
        let again = Message::parse(&m.to_bytes()).expect("reparse");
        assert_eq!(again, m);
    }

    #[test]
    fn parse_response_bare_lf_and_errors() {
        let m = Message::parse(b"SIP/2.0 180 Ringing\nCSeq: 1 INVITE\n\n").expect("parse");
        assert_eq!(m.code(), Some(180));
        assert_eq!(m.cseq(), Some((1, "INVITE")));
        assert!(Message::parse(b"SIP/2.0 99 Nope\r\n\r\n").is_err());
        assert!(Message::parse(b"SIP/2.0 200 OK\r\nContent-Length: 10\r\n\r\nshort").is_err());
        assert!(Message::parse(b"INVITE sip:x SIP/3.0\r\n\r\n").is_err());
        assert!(Message::parse(b"SIP/2.0 200 OK\r\nno colon here\r\n\r\n").is_err());
        assert!(Message::parse(b"no blank line").is_err());
        assert!(Message::parse(&[0xFF, 0xFE, b'\r', b'\n', b'\r', b'\n']).is_err());
    }

    #[test]
    fn header_helpers() {
        let to = "\"Bob\" <sip:bob@10.0.0.1:5070;transport=udp>;tag=abc;x";
        assert_eq!(header_param(to, "tag"), Some("abc"));
        assert_eq!(header_param(to, "transport"), None);
        assert_eq!(name_addr_uri(to), "sip:bob@10.0.0.1:5070;transport=udp");
        assert_eq!(name_addr_uri("sip:bob@h;tag=1"), "sip:bob@h");
        assert_eq!(header_param("sip:bob@h;tag=1", "tag"), Some("1"));
        assert_eq!(
            uri_socket_addr("sip:bob@10.0.0.1:5070;transport=udp"),
            Some(addr("10.0.0.1:5070"))
        );
        assert_eq!(uri_socket_addr("sip:10.0.0.1"), Some(addr("10.0.0.1:5060")));
        assert_eq!(
            uri_socket_addr("sip:x@[::1]:5080"),
            Some(addr("[::1]:5080"))
        );
        assert_eq!(uri_socket_addr("sip:x@example.com"), None);
        assert_eq!(uri_socket_addr("sip:x@0.0.0.0:5060"), None);
        assert_eq!(user_part("Room A/1"), "Room-A-1");
        assert_eq!(user_part(""), "anonymous");
    }

    #[test]
    fn call_answer_ack_and_hang_up() {
        let t0 = Instant::now();
        let mut uac = Uac::new(config(), t0);
        let out = sent(&mut uac);
        assert_eq!(out.len(), 1);
        let (to, invite) = &out[0];
        assert_eq!(*to, addr("127.0.0.1:5060"));
        assert_eq!(
            invite.start,
            StartLine::Request {
                method: "INVITE".into(),
                uri: "sip:4711@127.0.0.1:5060".into()
            }
        );
        assert_eq!(
            invite.header("From"),
            Some("\"Room \\\"A\\\" 1\" <sip:Room--A--1@127.0.0.1>;tag=ltag")
        );
        assert_eq!(
            header_param(invite.header("Via").expect("Via"), "branch"),
            Some("z9hG4bKseed")
        );
        assert_eq!(invite.header("Content-Type"), Some("application/sdp"));
        assert_eq!(invite.body, b"v=0\r\n");

        // 100 Trying stops retransmission; only the overall timer remains.
        uac.handle_datagram(
            t0,
            addr("127.0.0.1:5060"),
            &response_to(invite, 100, &[], ""),
        );
        assert_eq!(uac.poll_event(), Some(UacEvent::Provisional { code: 100 }));
        assert_eq!(uac.poll_timeout(), Some(t0 + TRANSACTION_TIMEOUT));
        uac.handle_timeout(t0 + T1 * 3);
        assert!(sent(&mut uac).is_empty());

        let ok = response_to(
            invite,
            200,
            &[("Contact", "<sip:4711@127.0.0.1:5070>")],
            "v=0 answer",
        );
        uac.handle_datagram(t0, addr("127.0.0.1:5060"), &ok);
        assert_eq!(
            uac.poll_event(),
            Some(UacEvent::Established {
                answer: "v=0 answer".into()
            })
        );
        assert_eq!(uac.state(), CallState::Established);
        let out = sent(&mut uac);
        let (to, ack) = &out[0];
        assert_eq!(*to, addr("127.0.0.1:5070"));
        assert_eq!(ack.method(), Some("ACK"));
        assert_eq!(ack.cseq(), Some((1, "ACK")));
        assert_eq!(
            header_param(ack.header("To").expect("To"), "tag"),
            Some("rtag")
        );
        assert_ne!(
            header_param(ack.header("Via").expect("Via"), "branch"),
            Some("z9hG4bKseed")
        );
        assert_eq!(uac.poll_timeout(), None);

        // A retransmitted 200 (our ACK was lost) is ACKed again.
        uac.handle_datagram(t0, addr("127.0.0.1:5060"), &ok);
        assert_eq!(sent(&mut uac)[0].1.method(), Some("ACK"));

        let t1 = t0 + Duration::from_secs(10);
        uac.hangup(t1);
        let out = sent(&mut uac);
        let (to, bye) = &out[0];
        assert_eq!(*to, addr("127.0.0.1:5070"));
        assert_eq!(bye.cseq(), Some((2, "BYE")));
        assert_eq!(bye.call_id(), Some("cid@test"));
        // Unanswered BYE is retransmitted after T1.
        uac.handle_timeout(t1 + T1);
        assert_eq!(sent(&mut uac)[0].1.cseq(), Some((2, "BYE")));
        uac.handle_datagram(t1, addr("127.0.0.1:5070"), &response_to(bye, 200, &[], ""));
        assert_eq!(uac.poll_event(), Some(UacEvent::HungUp { code: 200 }));
        assert_eq!(uac.state(), CallState::Terminated);
    }

    #[test]
    fn invite_retransmits_with_doubling_then_times_out() {
        let t0 = Instant::now();
        let mut uac = Uac::new(config(), t0);
        sent(&mut uac);
        let mut at = t0;
        let mut gaps = Vec::new();
        while let Some(next) = uac.poll_timeout() {
            if next >= t0 + TRANSACTION_TIMEOUT {
                break;
            }
            gaps.push(next - at);
            at = next;
            uac.handle_timeout(next);
            assert_eq!(sent(&mut uac).len(), 1);
        }
        assert_eq!(&gaps[..4], &[T1, T1 * 2, T1 * 4, T1 * 8]);
        uac.handle_timeout(t0 + TRANSACTION_TIMEOUT);
        assert_eq!(uac.poll_event(), Some(UacEvent::TimedOut));
        assert_eq!(uac.state(), CallState::Terminated);
    }

    #[test]
    fn rejection_is_acked_in_the_invite_transaction() {
        let t0 = Instant::now();
        let mut uac = Uac::new(config(), t0);
        let invite = sent(&mut uac).remove(0).1;
        uac.handle_datagram(
            t0,
            addr("127.0.0.1:5060"),
            &response_to(&invite, 486, &[], ""),
        );
        assert_eq!(
            uac.poll_event(),
            Some(UacEvent::Rejected {
                code: 486,
                reason: "Whatever".into()
            })
        );
        let ack = sent(&mut uac).remove(0).1;
        assert_eq!(ack.method(), Some("ACK"));
        assert_eq!(
            header_param(ack.header("Via").expect("Via"), "branch"),
            Some("z9hG4bKseed")
        );
        assert_eq!(uac.state(), CallState::Terminated);
    }

    #[test]
    fn answers_remote_bye_options_and_strangers() {
        let t0 = Instant::now();
        let mut uac = Uac::new(config(), t0);
        let invite = sent(&mut uac).remove(0).1;
        uac.handle_datagram(
            t0,
            addr("127.0.0.1:5060"),
            &response_to(&invite, 200, &[], "sdp"),
        );
        sent(&mut uac);
        uac.poll_event();
        let node = addr("127.0.0.1:5999");

        let options = Message::request("OPTIONS", "sip:x@127.0.0.1:40000")
            .with("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKo")
            .with("From", "<sip:node@127.0.0.1>;tag=n")
            .with("To", "<sip:x@127.0.0.1>")
            .with("Call-ID", "other")
            .with("CSeq", "7 OPTIONS");
        uac.handle_datagram(t0, node, &options.to_bytes());
        let (to, resp) = sent(&mut uac).remove(0);
        assert_eq!(to, node);
        assert_eq!(resp.code(), Some(200));
        assert_eq!(
            resp.header("Via"),
            Some("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKo")
        );
        assert_eq!(
            header_param(resp.header("To").expect("To"), "tag"),
            Some("ltag")
        );

        let stray = options.clone();
        let mut stray = stray;
        stray.start = StartLine::Request {
            method: "BYE".into(),
            uri: "sip:x".into(),
        };
        uac.handle_datagram(t0, node, &stray.to_bytes());
        assert_eq!(sent(&mut uac)[0].1.code(), Some(481));
        assert_eq!(uac.state(), CallState::Established);

        let bye = Message::request("BYE", "sip:x@127.0.0.1:40000")
            .with("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKb")
            .with("From", "<sip:4711@127.0.0.1>;tag=rtag")
            .with("To", "<sip:x@127.0.0.1>;tag=ltag")
            .with("Call-ID", "cid@test")
            .with("CSeq", "1 BYE");
        uac.handle_datagram(t0, node, &bye.to_bytes());
        let resp = sent(&mut uac).remove(0).1;
        assert_eq!((resp.code(), resp.cseq()), (Some(200), Some((1, "BYE"))));
        assert_eq!(uac.poll_event(), Some(UacEvent::RemoteHangup));
        assert_eq!(uac.state(), CallState::Terminated);
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let mut uac = Uac::new(config(), Instant::now());
        uac.handle_datagram(Instant::now(), addr("127.0.0.1:1"), b"\x00\x01 garbage");
        uac.handle_datagram(Instant::now(), addr("127.0.0.1:1"), b"\r\n\r\n");
        assert_eq!(uac.malformed(), 1);
        assert_eq!(uac.state(), CallState::Calling);
    }

    #[test]
    fn hangup_while_calling_sends_bye_after_the_answer() {
        let t0 = Instant::now();
        let mut uac = Uac::new(config(), t0);
        let invite = sent(&mut uac).remove(0).1;
        uac.hangup(t0);
        uac.handle_datagram(
            t0,
            addr("127.0.0.1:5060"),
            &response_to(&invite, 200, &[], "sdp"),
        );
        let methods: Vec<_> = sent(&mut uac)
            .iter()
            .map(|(_, m)| m.method().map(str::to_owned))
            .collect();
        assert_eq!(methods, [Some("ACK".to_owned()), Some("BYE".to_owned())]);
        assert_eq!(uac.state(), CallState::Terminating);
    }
}
