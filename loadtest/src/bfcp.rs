//! BFCP, the Binary Floor Control Protocol (RFC 8855), as a room system's
//! floor participant speaks it over TCP (version 1): enough to ask for the
//! floor of the conference's content channel, be told it is granted (or
//! taken away), and give it back. Written from the RFC, not shared with the
//! bridge, so that the two cannot agree on a mistake.
//!
//! - The wire format, both ways: [`Message`] (the 12-octet common header and
//!   a list of [`Attribute`]s), [`Value`] (octets, or a grouped attribute's
//!   16-bit ID and sub-attributes), TCP framing by the header's payload
//!   length ([`message_len`], [`StreamDecoder`]).
//! - [`FloorClient`]: the participant's side as a sans-IO core. Calls
//!   ([`FloorClient::request`], [`FloorClient::release`]) and bytes from
//!   the connection in; bytes to write ([`FloorClient::poll_transmit`]) and
//!   the floor's [`FloorState`] out. The room system's driver owns the TCP
//!   connection.
//!
//! ```text
//!  0               1               2               3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-----+-+-+-----+---------------+-------------------------------+
//! | Ver |R|F| Res |   Primitive   |        Payload Length         |
//! +-----+-+-+-----+---------------+-------------------------------+
//! |                         Conference ID                         |
//! +-------------------------------+-------------------------------+
//! |        Transaction ID         |            User ID            |
//! +-------------------------------+-------------------------------+
//! |    Type     |M|    Length     |  contents, padded to 4 ...    |
//! ```
//!
//! Payload Length counts 4-octet units after the header; an attribute's
//! Length counts octets including its 2-octet header, excluding padding.
//!
//! Over TCP the server's own messages (a grant arriving later, a
//! revocation) carry transaction ID 0 and are not acknowledged (§8); only
//! over UDP would a FloorRequestStatusAck answer them.

use std::collections::VecDeque;
use std::fmt;

use crate::error::{Error, Result};

/// The BFCP version spoken over a reliable transport (RFC 8855 §5.1).
pub const VERSION_TCP: u8 = 1;
/// The version spoken over UDP; parsed, not spoken by us.
pub const VERSION_UDP: u8 = 2;
/// The common header's size.
pub const HEADER_LEN: usize = 12;
/// The largest message the 16-bit payload length can describe.
pub const MAX_MESSAGE: usize = HEADER_LEN + 4 * u16::MAX as usize;
/// Grouped attributes nest (FLOOR-REQUEST-INFORMATION holds
/// OVERALL-REQUEST-STATUS holds REQUEST-STATUS): three levels are real,
/// more is a peer trying to exhaust the stack.
const MAX_DEPTH: usize = 6;

/// BFCP primitives (RFC 8855 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Primitive {
    FloorRequest,
    FloorRelease,
    FloorRequestQuery,
    FloorRequestStatus,
    UserQuery,
    UserStatus,
    FloorQuery,
    FloorStatus,
    ChairAction,
    ChairActionAck,
    Hello,
    HelloAck,
    Error,
    FloorRequestStatusAck,
    FloorStatusAck,
    Goodbye,
    GoodbyeAck,
    /// A code we do not know.
    Other(u8),
}

const PRIMITIVES: [(Primitive, u8); 17] = [
    (Primitive::FloorRequest, 1),
    (Primitive::FloorRelease, 2),
    (Primitive::FloorRequestQuery, 3),
    (Primitive::FloorRequestStatus, 4),
    (Primitive::UserQuery, 5),
    (Primitive::UserStatus, 6),
    (Primitive::FloorQuery, 7),
    (Primitive::FloorStatus, 8),
    (Primitive::ChairAction, 9),
    (Primitive::ChairActionAck, 10),
    (Primitive::Hello, 11),
    (Primitive::HelloAck, 12),
    (Primitive::Error, 13),
    (Primitive::FloorRequestStatusAck, 14),
    (Primitive::FloorStatusAck, 15),
    (Primitive::Goodbye, 16),
    (Primitive::GoodbyeAck, 17),
];

impl Primitive {
    pub fn from_code(code: u8) -> Primitive {
        PRIMITIVES
            .iter()
            .find(|(_, c)| *c == code)
            .map_or(Primitive::Other(code), |(p, _)| *p)
    }

    pub fn code(self) -> u8 {
        match self {
            Primitive::Other(code) => code,
            known => PRIMITIVES
                .iter()
                .find(|(p, _)| *p == known)
                .map_or(0, |(_, c)| *c),
        }
    }
}

/// An attribute type (RFC 8855 §5.2): 7 bits on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttrType(pub u8);

impl AttrType {
    pub const BENEFICIARY_ID: AttrType = AttrType(1);
    pub const FLOOR_ID: AttrType = AttrType(2);
    pub const FLOOR_REQUEST_ID: AttrType = AttrType(3);
    pub const PRIORITY: AttrType = AttrType(4);
    pub const REQUEST_STATUS: AttrType = AttrType(5);
    pub const ERROR_CODE: AttrType = AttrType(6);
    pub const ERROR_INFO: AttrType = AttrType(7);
    pub const PARTICIPANT_PROVIDED_INFO: AttrType = AttrType(8);
    pub const STATUS_INFO: AttrType = AttrType(9);
    pub const SUPPORTED_ATTRIBUTES: AttrType = AttrType(10);
    pub const SUPPORTED_PRIMITIVES: AttrType = AttrType(11);
    pub const USER_DISPLAY_NAME: AttrType = AttrType(12);
    pub const USER_URI: AttrType = AttrType(13);
    pub const BENEFICIARY_INFORMATION: AttrType = AttrType(14);
    pub const FLOOR_REQUEST_INFORMATION: AttrType = AttrType(15);
    pub const REQUESTED_BY_INFORMATION: AttrType = AttrType(16);
    pub const FLOOR_REQUEST_STATUS: AttrType = AttrType(17);
    pub const OVERALL_REQUEST_STATUS: AttrType = AttrType(18);

    /// Grouped attributes start with a 16-bit ID (a user, a floor request
    /// or a floor) followed by sub-attributes.
    pub fn is_grouped(self) -> bool {
        (14..=18).contains(&self.0)
    }

    pub fn name(self) -> Option<&'static str> {
        const NAMES: [&str; 18] = [
            "BENEFICIARY-ID",
            "FLOOR-ID",
            "FLOOR-REQUEST-ID",
            "PRIORITY",
            "REQUEST-STATUS",
            "ERROR-CODE",
            "ERROR-INFO",
            "PARTICIPANT-PROVIDED-INFO",
            "STATUS-INFO",
            "SUPPORTED-ATTRIBUTES",
            "SUPPORTED-PRIMITIVES",
            "USER-DISPLAY-NAME",
            "USER-URI",
            "BENEFICIARY-INFORMATION",
            "FLOOR-REQUEST-INFORMATION",
            "REQUESTED-BY-INFORMATION",
            "FLOOR-REQUEST-STATUS",
            "OVERALL-REQUEST-STATUS",
        ];
        NAMES.get(usize::from(self.0).checked_sub(1)?).copied()
    }
}

impl fmt::Debug for AttrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "AttrType({})", self.0),
        }
    }
}

/// The Request Status of a REQUEST-STATUS attribute (RFC 8855 §5.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestStatus {
    Pending,
    Accepted,
    Granted,
    Denied,
    Cancelled,
    Released,
    Revoked,
    Other(u8),
}

impl RequestStatus {
    pub fn from_code(code: u8) -> RequestStatus {
        match code {
            1 => RequestStatus::Pending,
            2 => RequestStatus::Accepted,
            3 => RequestStatus::Granted,
            4 => RequestStatus::Denied,
            5 => RequestStatus::Cancelled,
            6 => RequestStatus::Released,
            7 => RequestStatus::Revoked,
            other => RequestStatus::Other(other),
        }
    }

    pub fn code(self) -> u8 {
        match self {
            RequestStatus::Pending => 1,
            RequestStatus::Accepted => 2,
            RequestStatus::Granted => 3,
            RequestStatus::Denied => 4,
            RequestStatus::Cancelled => 5,
            RequestStatus::Released => 6,
            RequestStatus::Revoked => 7,
            RequestStatus::Other(code) => code,
        }
    }
}

/// What an ERROR-CODE means (RFC 8855 §5.2.6), for reports.
pub fn error_code_name(code: u8) -> &'static str {
    match code {
        1 => "Conference does not Exist",
        2 => "User does not Exist",
        3 => "Unknown Primitive",
        4 => "Unknown Mandatory Attribute",
        5 => "Unauthorized Operation",
        6 => "Invalid Floor ID",
        7 => "Floor Request ID Does Not Exist",
        8 => "Maximum Number of Ongoing Floor Requests Reached",
        9 => "Use TLS",
        10 => "Unable to Parse Message",
        11 => "Use DTLS",
        12 => "Unsupported Version",
        13 => "Incorrect Message Length",
        14 => "Generic Error",
        _ => "unknown error code",
    }
}

/// An attribute's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Everything but the grouped attributes: the octets after the
    /// attribute header, without padding (a FLOOR-ID is 2 octets, a
    /// REQUEST-STATUS 2, an ERROR-INFO as long as its text).
    Octets(Vec<u8>),
    /// A grouped attribute: its 16-bit ID and its sub-attributes.
    Grouped { id: u16, children: Vec<Attribute> },
}

/// One attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub kind: AttrType,
    /// The M bit: the receiver must understand it or refuse the message.
    pub mandatory: bool,
    pub value: Value,
}

impl Attribute {
    /// An Unsigned16 attribute (BENEFICIARY-ID, FLOOR-ID, FLOOR-REQUEST-ID).
    pub fn unsigned16(kind: AttrType, mandatory: bool, v: u16) -> Attribute {
        Attribute {
            kind,
            mandatory,
            value: Value::Octets(v.to_be_bytes().to_vec()),
        }
    }

    pub fn octets(kind: AttrType, mandatory: bool, v: impl Into<Vec<u8>>) -> Attribute {
        Attribute {
            kind,
            mandatory,
            value: Value::Octets(v.into()),
        }
    }

    pub fn grouped(
        kind: AttrType,
        mandatory: bool,
        id: u16,
        children: Vec<Attribute>,
    ) -> Attribute {
        Attribute {
            kind,
            mandatory,
            value: Value::Grouped { id, children },
        }
    }

    /// REQUEST-STATUS: the status and the queue position.
    pub fn request_status(status: RequestStatus, queue_position: u8) -> Attribute {
        Attribute::octets(
            AttrType::REQUEST_STATUS,
            false,
            [status.code(), queue_position],
        )
    }

    /// An Unsigned16's value, or a grouped attribute's ID.
    pub fn as_u16(&self) -> Option<u16> {
        match &self.value {
            Value::Octets(b) => match b.as_slice() {
                [hi, lo] => Some(u16::from_be_bytes([*hi, *lo])),
                _ => None,
            },
            Value::Grouped { id, .. } => Some(*id),
        }
    }

    pub fn as_octets(&self) -> Option<&[u8]> {
        match &self.value {
            Value::Octets(b) => Some(b),
            Value::Grouped { .. } => None,
        }
    }

    /// An OctetString's text (ERROR-INFO, STATUS-INFO), lossily.
    pub fn as_text(&self) -> Option<String> {
        self.as_octets()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// A REQUEST-STATUS attribute's status and queue position.
    pub fn as_request_status(&self) -> Option<(RequestStatus, u8)> {
        if self.kind != AttrType::REQUEST_STATUS {
            return None;
        }
        match self.as_octets()? {
            [status, position] => Some((RequestStatus::from_code(*status), *position)),
            _ => None,
        }
    }

    /// A grouped attribute's sub-attributes (none for the others).
    pub fn children(&self) -> &[Attribute] {
        match &self.value {
            Value::Grouped { children, .. } => children,
            Value::Octets(_) => &[],
        }
    }

    pub fn child(&self, kind: AttrType) -> Option<&Attribute> {
        self.children().iter().find(|a| a.kind == kind)
    }
}

/// One BFCP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub version: u8,
    /// The R bit (transaction responder; meaningful over UDP only).
    pub responder: bool,
    pub primitive: Primitive,
    pub conference_id: u32,
    /// 0 in a server's own message over TCP.
    pub transaction_id: u16,
    pub user_id: u16,
    pub attributes: Vec<Attribute>,
}

fn malformed(detail: impl Into<String>) -> Error {
    Error::parse("BFCP message", detail)
}

impl Message {
    /// A version-1 message without attributes.
    pub fn new(
        primitive: Primitive,
        conference_id: u32,
        transaction_id: u16,
        user_id: u16,
    ) -> Message {
        Message {
            version: VERSION_TCP,
            responder: false,
            primitive,
            conference_id,
            transaction_id,
            user_id,
            attributes: Vec::new(),
        }
    }

    pub fn with(mut self, attribute: Attribute) -> Message {
        self.attributes.push(attribute);
        self
    }

    /// The first top-level attribute of `kind`.
    pub fn attribute(&self, kind: AttrType) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.kind == kind)
    }

    /// The message's bytes. Fails only for a message no peer could read:
    /// an attribute longer than its 8-bit length allows, a type over 127, a
    /// version over 7.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        if self.version > 7 {
            return Err(Error::Config(format!("BFCP version {}", self.version)));
        }
        let mut out = Vec::with_capacity(64);
        out.push((self.version << 5) | (u8::from(self.responder) << 4));
        out.push(self.primitive.code());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.conference_id.to_be_bytes());
        out.extend_from_slice(&self.transaction_id.to_be_bytes());
        out.extend_from_slice(&self.user_id.to_be_bytes());
        for a in &self.attributes {
            write_attribute(a, &mut out)?;
        }
        let units = u16::try_from((out.len() - HEADER_LEN) / 4)
            .map_err(|_| Error::Config("BFCP message over 256 KiB".into()))?;
        out[2..4].copy_from_slice(&units.to_be_bytes());
        Ok(out)
    }

    /// Parses exactly one whole message (as framed by [`message_len`]).
    /// Strict about the header (the length must match what is there, no
    /// fragments); a grouped attribute may leave its last sub-attribute's
    /// padding outside its length, as some implementations write it.
    pub fn parse(buf: &[u8]) -> Result<Message> {
        let len = message_len(buf)?.ok_or_else(|| malformed("shorter than a header"))?;
        if buf.len() < HEADER_LEN {
            return Err(malformed(format!("{} octets", buf.len())));
        }
        if len != buf.len() {
            return Err(malformed(format!(
                "payload length says {len} octets, {} present",
                buf.len()
            )));
        }
        let attributes = parse_attributes(&buf[HEADER_LEN..], 0)?;
        Ok(Message {
            version: buf[0] >> 5,
            responder: buf[0] & 0x10 != 0,
            primitive: Primitive::from_code(buf[1]),
            conference_id: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            transaction_id: u16::from_be_bytes([buf[8], buf[9]]),
            user_id: u16::from_be_bytes([buf[10], buf[11]]),
            attributes,
        })
    }
}

fn write_attribute(a: &Attribute, out: &mut Vec<u8>) -> Result<()> {
    if a.kind.0 > 0x7F {
        return Err(Error::Config(format!("BFCP attribute type {}", a.kind.0)));
    }
    let start = out.len();
    out.push((a.kind.0 << 1) | u8::from(a.mandatory));
    out.push(0);
    match &a.value {
        Value::Octets(b) => out.extend_from_slice(b),
        Value::Grouped { id, children } => {
            out.extend_from_slice(&id.to_be_bytes());
            for c in children {
                write_attribute(c, out)?;
            }
        }
    }
    let len = u8::try_from(out.len() - start)
        .map_err(|_| Error::Config(format!("BFCP attribute {:?} over 255 octets", a.kind)))?;
    out[start + 1] = len;
    while !(out.len() - start).is_multiple_of(4) {
        out.push(0);
    }
    Ok(())
}

fn parse_attributes(mut buf: &[u8], depth: usize) -> Result<Vec<Attribute>> {
    if depth > MAX_DEPTH {
        return Err(malformed("grouped attributes nested too deep"));
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let [first, len, ..] = *buf else {
            return Err(malformed("a lone octet where an attribute should start"));
        };
        let kind = AttrType(first >> 1);
        let len = usize::from(len);
        if len < 2 || len > buf.len() {
            return Err(malformed(format!(
                "{kind:?} length {len} with {} octets left",
                buf.len()
            )));
        }
        let body = &buf[2..len];
        let value = if kind.is_grouped() {
            let [hi, lo, ref children @ ..] = *body else {
                return Err(malformed(format!("{kind:?} without its ID")));
            };
            Value::Grouped {
                id: u16::from_be_bytes([hi, lo]),
                children: parse_attributes(children, depth + 1)?,
            }
        } else {
            Value::Octets(body.to_vec())
        };
        out.push(Attribute {
            kind,
            mandatory: first & 1 != 0,
            value,
        });
        let padded = len.next_multiple_of(4);
        buf = buf.get(padded..).unwrap_or_default();
    }
    Ok(out)
}

/// The length of the message at the start of a stream's bytes, once its
/// length field has arrived (`None`: need more). A version other than 1 or
/// 2, or the F bit (fragments exist over UDP only), means the stream is not
/// BFCP we can follow: an error, after which the connection is useless.
pub fn message_len(buf: &[u8]) -> Result<Option<usize>> {
    let [first, _, hi, lo, ..] = *buf else {
        return Ok(None);
    };
    let version = first >> 5;
    if version != VERSION_TCP && version != VERSION_UDP {
        return Err(malformed(format!("version {version}")));
    }
    if first & 0x08 != 0 {
        return Err(malformed("a fragment (F bit) on a stream"));
    }
    Ok(Some(
        HEADER_LEN + 4 * usize::from(u16::from_be_bytes([hi, lo])),
    ))
}

/// Cuts a TCP byte stream into messages.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    buf: Vec<u8>,
}

impl StreamDecoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message's bytes. An error is a broken stream (see
    /// [`message_len`]); a frame that then does not parse is the caller's
    /// to count, and the stream goes on.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>> {
        let Some(len) = message_len(&self.buf)? else {
            return Ok(None);
        };
        if self.buf.len() < len {
            return Ok(None);
        }
        let rest = self.buf.split_off(len);
        Ok(Some(std::mem::replace(&mut self.buf, rest)))
    }

    /// Octets received but not yet a whole message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Where our request for the floor stands, as the floor control server last
/// told us (nothing changes on our say-so alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum FloorState {
    /// No request the server has answered yet.
    #[default]
    Idle,
    /// The server holds our request (Pending or Accepted): queued.
    Pending,
    /// We hold the floor: present.
    Granted,
    /// The server took the floor back (another presenter took over).
    Revoked,
    /// We released it (or cancelled a pending request) and the server
    /// confirmed.
    Released,
    /// The server refused the request.
    Denied,
}

/// An Error message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// ERROR-CODE (see [`error_code_name`]); 0 if absent.
    pub code: u8,
    /// ERROR-INFO, when given.
    pub info: Option<String>,
    /// Of the request it answers.
    pub transaction_id: u16,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error {} ({})", self.code, error_code_name(self.code))?;
        if let Some(info) = &self.info {
            write!(f, ": {info}")?;
        }
        Ok(())
    }
}

/// What the floor client has sent, heard and not understood.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FloorStats {
    pub state: FloorState,
    /// The FLOOR-REQUEST-ID the server gave our current request.
    pub floor_request_id: Option<u16>,
    /// The last REQUEST-STATUS the server gave our request, with its
    /// queue position.
    pub last_status: Option<(RequestStatus, u8)>,
    pub messages_sent: u64,
    pub messages_received: u64,
    pub requests_sent: u64,
    pub releases_sent: u64,
    /// The server answered our Hello.
    pub hello_acked: bool,
    /// Error messages from the server, oldest first.
    pub errors: Vec<ServerError>,
    /// Whole messages that did not parse.
    pub malformed: u64,
    /// Messages that were not for us or not about our request (another
    /// conference or user ID, another request's status, a FloorStatus).
    pub ignored: u64,
    /// The connection is gone (closed by the node, broken framing, or
    /// never made): nothing more will be said.
    pub closed: bool,
    /// Why, when it did not close cleanly.
    pub close_reason: Option<String>,
}

/// A floor participant of one conference, for one floor (see the module
/// docs). One request at a time, as a room system makes them.
#[derive(Debug)]
pub struct FloorClient {
    conference_id: u32,
    user_id: u16,
    floor_id: u16,
    next_transaction: u16,
    hello_sent: bool,
    /// The transaction of our FloorRequest until its answer names the
    /// request's ID.
    request_transaction: Option<u16>,
    request_id: Option<u16>,
    /// A release asked for before the request's ID was known.
    release_wanted: bool,
    /// A release is on its way: stop presenting whatever the server says.
    releasing: bool,
    decoder: StreamDecoder,
    out: VecDeque<Vec<u8>>,
    stats: FloorStats,
}

impl FloorClient {
    /// `conference_id` and `user_id` from the answer's `a=confid` and
    /// `a=userid`, `floor_id` from its `a=floorid`.
    pub fn new(conference_id: u32, user_id: u16, floor_id: u16) -> FloorClient {
        FloorClient {
            conference_id,
            user_id,
            floor_id,
            next_transaction: 1,
            hello_sent: false,
            request_transaction: None,
            request_id: None,
            release_wanted: false,
            releasing: false,
            decoder: StreamDecoder::default(),
            out: VecDeque::new(),
            stats: FloorStats::default(),
        }
    }

    pub fn floor_id(&self) -> u16 {
        self.floor_id
    }

    pub fn state(&self) -> FloorState {
        self.stats.state
    }

    pub fn stats(&self) -> &FloorStats {
        &self.stats
    }

    /// Whether to send content now: granted, not releasing, still connected.
    pub fn presenting(&self) -> bool {
        self.stats.state == FloorState::Granted && !self.releasing && !self.stats.closed
    }

    /// Whether a request is in flight or held (another one would be refused).
    pub fn has_request(&self) -> bool {
        self.request_transaction.is_some() || self.request_id.is_some()
    }

    fn transaction(&mut self) -> u16 {
        let t = self.next_transaction;
        // 0 is the server's own messages' transaction over TCP.
        self.next_transaction = self.next_transaction.wrapping_add(1).max(1);
        t
    }

    fn queue(&mut self, msg: &Message) {
        // Our messages are a header and a 4-octet attribute: they encode.
        if let Ok(bytes) = msg.to_bytes() {
            self.stats.messages_sent += 1;
            self.out.push_back(bytes);
        }
    }

    /// Asks for the floor: Hello (the first time), then FloorRequest with
    /// the FLOOR-ID. Returns false, sending nothing, while a request is in
    /// flight or held, or once the connection is gone.
    pub fn request(&mut self) -> bool {
        if self.has_request() || self.stats.closed {
            return false;
        }
        if !self.hello_sent {
            self.hello_sent = true;
            let hello = Message::new(
                Primitive::Hello,
                self.conference_id,
                self.transaction(),
                self.user_id,
            );
            self.queue(&hello);
        }
        let transaction = self.transaction();
        let request = Message::new(
            Primitive::FloorRequest,
            self.conference_id,
            transaction,
            self.user_id,
        )
        .with(Attribute::unsigned16(
            AttrType::FLOOR_ID,
            true,
            self.floor_id,
        ));
        self.queue(&request);
        self.request_transaction = Some(transaction);
        self.releasing = false;
        self.release_wanted = false;
        self.stats.requests_sent += 1;
        true
    }

    /// Gives the floor back (or withdraws a pending request): FloorRelease
    /// with the FLOOR-REQUEST-ID. Sent once the ID is known if the request
    /// is still unanswered. Returns false when there is no request.
    pub fn release(&mut self) -> bool {
        if !self.has_request() || self.stats.closed {
            return false;
        }
        self.releasing = true;
        match self.request_id {
            Some(id) => self.send_release(id),
            None => self.release_wanted = true,
        }
        true
    }

    fn send_release(&mut self, id: u16) {
        let release = Message::new(
            Primitive::FloorRelease,
            self.conference_id,
            self.transaction(),
            self.user_id,
        )
        .with(Attribute::unsigned16(AttrType::FLOOR_REQUEST_ID, true, id));
        self.queue(&release);
        self.release_wanted = false;
        self.stats.releases_sent += 1;
    }

    /// Bytes read from the connection. An error means the stream can no
    /// longer be followed: the client counts itself closed.
    pub fn handle_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.decoder.push(bytes);
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => match Message::parse(&frame) {
                    Ok(msg) => self.handle_message(&msg),
                    Err(_) => self.stats.malformed += 1,
                },
                Ok(None) => return Ok(()),
                Err(e) => {
                    self.handle_closed(Some(e.to_string()));
                    return Err(e);
                }
            }
        }
    }

    /// The connection ended (`reason` when not cleanly). What was said
    /// stands; nothing is presented any more.
    pub fn handle_closed(&mut self, reason: Option<String>) {
        if !self.stats.closed {
            self.stats.closed = true;
            self.stats.close_reason = reason;
        }
        self.out.clear();
    }

    /// One parsed message from the server.
    pub fn handle_message(&mut self, msg: &Message) {
        self.stats.messages_received += 1;
        if msg.conference_id != self.conference_id || msg.user_id != self.user_id {
            self.stats.ignored += 1;
            return;
        }
        match msg.primitive {
            Primitive::HelloAck => self.stats.hello_acked = true,
            Primitive::FloorRequestStatus => self.handle_status(msg),
            Primitive::Error => self.handle_error(msg),
            Primitive::Goodbye => {
                // The server leaves: answer, and our request is gone with it.
                let ack = Message::new(
                    Primitive::GoodbyeAck,
                    self.conference_id,
                    msg.transaction_id,
                    self.user_id,
                );
                self.queue(&ack);
                if self.has_request() {
                    self.finish(FloorState::Released);
                }
            }
            _ => self.stats.ignored += 1,
        }
    }

    fn handle_error(&mut self, msg: &Message) {
        let error = ServerError {
            code: msg
                .attribute(AttrType::ERROR_CODE)
                .and_then(Attribute::as_octets)
                .and_then(|b| b.first().copied())
                .unwrap_or(0),
            info: msg
                .attribute(AttrType::ERROR_INFO)
                .and_then(Attribute::as_text),
            transaction_id: msg.transaction_id,
        };
        let t = Some(msg.transaction_id).filter(|t| *t != 0);
        if t.is_some() && t == self.request_transaction {
            // The request was refused outright: there is none.
            self.request_transaction = None;
            self.releasing = false;
            self.release_wanted = false;
        }
        self.stats.errors.push(error);
    }

    fn handle_status(&mut self, msg: &Message) {
        let answers_request =
            msg.transaction_id != 0 && Some(msg.transaction_id) == self.request_transaction;
        let infos = msg
            .attributes
            .iter()
            .filter(|a| a.kind == AttrType::FLOOR_REQUEST_INFORMATION);
        let info = if answers_request {
            infos.into_iter().next()
        } else {
            match self.request_id {
                Some(id) => infos.into_iter().find(|a| a.as_u16() == Some(id)),
                None => None,
            }
        };
        let Some(info) = info else {
            self.stats.ignored += 1;
            return;
        };
        let Some((status, position)) = self.status_in(info) else {
            self.stats.malformed += 1;
            return;
        };
        if answers_request {
            self.request_transaction = None;
            self.request_id = info.as_u16();
            self.stats.floor_request_id = self.request_id;
            if let (true, Some(id)) = (self.release_wanted, self.request_id) {
                self.send_release(id);
            }
        }
        self.stats.last_status = Some((status, position));
        match status {
            RequestStatus::Pending | RequestStatus::Accepted => {
                self.stats.state = FloorState::Pending
            }
            RequestStatus::Granted => self.stats.state = FloorState::Granted,
            RequestStatus::Denied => self.finish(FloorState::Denied),
            RequestStatus::Cancelled | RequestStatus::Released => self.finish(FloorState::Released),
            RequestStatus::Revoked => self.finish(FloorState::Revoked),
            RequestStatus::Other(_) => self.stats.malformed += 1,
        }
    }

    /// A FLOOR-REQUEST-INFORMATION's status: its OVERALL-REQUEST-STATUS's
    /// REQUEST-STATUS, else the one in the FLOOR-REQUEST-STATUS of our floor
    /// (both may carry one: RFC 8855 §5.2.17, §5.2.18).
    fn status_in(&self, info: &Attribute) -> Option<(RequestStatus, u8)> {
        let overall = info
            .child(AttrType::OVERALL_REQUEST_STATUS)
            .and_then(|o| o.child(AttrType::REQUEST_STATUS))
            .and_then(Attribute::as_request_status);
        overall.or_else(|| {
            info.children()
                .iter()
                .filter(|a| a.kind == AttrType::FLOOR_REQUEST_STATUS)
                .filter(|a| a.as_u16() == Some(self.floor_id))
                .find_map(|a| a.child(AttrType::REQUEST_STATUS))
                .and_then(Attribute::as_request_status)
        })
    }

    /// The request is over: the server forgot it.
    fn finish(&mut self, state: FloorState) {
        self.stats.state = state;
        self.request_id = None;
        self.request_transaction = None;
        self.releasing = false;
        self.release_wanted = false;
    }

    /// The next message to write to the connection.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// Whether anything waits to be written.
    pub fn wants_transmit(&self) -> bool {
        !self.out.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Conference 4711 (0x1267), user 2, as in the node's sample answer.
    const CONF: u32 = 4711;
    const USER: u16 = 2;

    /// A header as the RFC draws it: version 1, no R, no F.
    fn header(primitive: u8, units: u16, transaction: u16) -> Vec<u8> {
        let mut h = vec![0x20, primitive];
        h.extend_from_slice(&units.to_be_bytes());
        h.extend_from_slice(&[0x00, 0x00, 0x12, 0x67]);
        h.extend_from_slice(&transaction.to_be_bytes());
        h.extend_from_slice(&[0x00, 0x02]);
        h
    }

    /// FloorRequestStatus for request `id` on floor 1 with `status`, the way
    /// RFC 8855 §5.3.4 lays it out: FLOOR-REQUEST-INFORMATION (15) holding
    /// OVERALL-REQUEST-STATUS (18) holding REQUEST-STATUS (5), then
    /// FLOOR-REQUEST-STATUS (17) for the floor.
    fn status_bytes(transaction: u16, id: u16, status: u8, position: u8) -> Vec<u8> {
        let mut b = header(4, 4, transaction);
        let [hi, lo] = id.to_be_bytes();
        b.extend_from_slice(&[
            0x1E, 0x10, hi, lo, // FLOOR-REQUEST-INFORMATION, 16 octets, id
            0x24, 0x08, hi, lo, // OVERALL-REQUEST-STATUS, 8 octets, id
            0x0A, 0x04, status, position, // REQUEST-STATUS
            0x22, 0x04, 0x00, 0x01, // FLOOR-REQUEST-STATUS, floor 1
        ]);
        b
    }

    #[test]
    fn client_messages_are_the_octets_the_rfc_draws() {
        let hello = Message::new(Primitive::Hello, CONF, 1, USER);
        assert_eq!(
            hello.to_bytes().expect("encode"),
            [
                0x20, 0x0B, 0x00, 0x00, 0x00, 0x00, 0x12, 0x67, 0x00, 0x01, 0x00, 0x02
            ]
        );
        // FLOOR-ID: type 2 with M → 0x05, length 4, floor 1.
        let request = Message::new(Primitive::FloorRequest, CONF, 2, USER)
            .with(Attribute::unsigned16(AttrType::FLOOR_ID, true, 1));
        let mut want = header(1, 1, 2);
        want.extend_from_slice(&[0x05, 0x04, 0x00, 0x01]);
        assert_eq!(request.to_bytes().expect("encode"), want);
        // FLOOR-REQUEST-ID: type 3 with M → 0x07.
        let release = Message::new(Primitive::FloorRelease, CONF, 0x0102, USER).with(
            Attribute::unsigned16(AttrType::FLOOR_REQUEST_ID, true, 0x0304),
        );
        let mut want = header(2, 1, 0x0102);
        want.extend_from_slice(&[0x07, 0x04, 0x03, 0x04]);
        assert_eq!(release.to_bytes().expect("encode"), want);
        // And they read back as they were.
        for m in [hello, request, release] {
            assert_eq!(
                Message::parse(&m.to_bytes().expect("encode")).expect("parse"),
                m
            );
        }
    }

    #[test]
    fn a_grouped_status_with_padded_text_encodes_and_decodes() {
        // STATUS-INFO "abc" (type 9 → 0x12): length 5, 3 octets of padding,
        // counted in the enclosing OVERALL-REQUEST-STATUS's length.
        let mut bytes = header(4, 6, 0);
        bytes.extend_from_slice(&[
            0x1F, 0x18, 0x00, 0x07, // FLOOR-REQUEST-INFORMATION (M), 24 octets, id 7
            0x24, 0x10, 0x00, 0x07, // OVERALL-REQUEST-STATUS, 16 octets, id 7
            0x0A, 0x04, 0x01, 0x02, // REQUEST-STATUS Pending, position 2
            0x12, 0x05, b'a', b'b', b'c', 0x00, 0x00, 0x00, // STATUS-INFO "abc"
            0x22, 0x04, 0x00, 0x01, // FLOOR-REQUEST-STATUS floor 1
        ]);
        let msg = Message::parse(&bytes).expect("parse");
        assert_eq!(msg.primitive, Primitive::FloorRequestStatus);
        assert_eq!(
            (msg.conference_id, msg.transaction_id, msg.user_id),
            (CONF, 0, USER)
        );
        let info = msg
            .attribute(AttrType::FLOOR_REQUEST_INFORMATION)
            .expect("FRI");
        assert!(info.mandatory);
        assert_eq!(info.as_u16(), Some(7));
        let overall = info.child(AttrType::OVERALL_REQUEST_STATUS).expect("ORS");
        assert_eq!(
            overall
                .child(AttrType::REQUEST_STATUS)
                .and_then(Attribute::as_request_status),
            Some((RequestStatus::Pending, 2))
        );
        assert_eq!(
            overall
                .child(AttrType::STATUS_INFO)
                .and_then(Attribute::as_text)
                .as_deref(),
            Some("abc")
        );
        assert_eq!(
            info.child(AttrType::FLOOR_REQUEST_STATUS)
                .and_then(Attribute::as_u16),
            Some(1)
        );
        // Built from parts, it is the same octets.
        let built =
            Message::new(Primitive::FloorRequestStatus, CONF, 0, USER).with(Attribute::grouped(
                AttrType::FLOOR_REQUEST_INFORMATION,
                true,
                7,
                vec![
                    Attribute::grouped(
                        AttrType::OVERALL_REQUEST_STATUS,
                        false,
                        7,
                        vec![
                            Attribute::request_status(RequestStatus::Pending, 2),
                            Attribute::octets(AttrType::STATUS_INFO, false, "abc"),
                        ],
                    ),
                    Attribute::grouped(AttrType::FLOOR_REQUEST_STATUS, false, 1, vec![]),
                ],
            ));
        assert_eq!(built.to_bytes().expect("encode"), bytes);
        assert_eq!(status_bytes(0, 7, 3, 0).len(), HEADER_LEN + 16);
    }

    #[test]
    fn an_error_message_and_a_group_without_its_last_padding() {
        // Error: ERROR-CODE 7 (type 6 with M → 0x0D, length 3, one pad),
        // ERROR-INFO "no" (type 7 → 0x0E, length 4).
        let mut bytes = header(13, 2, 9);
        bytes.extend_from_slice(&[0x0D, 0x03, 0x07, 0x00, 0x0E, 0x04, b'n', b'o']);
        let msg = Message::parse(&bytes).expect("parse");
        assert_eq!(msg.primitive, Primitive::Error);
        let code = msg.attribute(AttrType::ERROR_CODE).expect("code");
        assert_eq!((code.mandatory, code.as_octets()), (true, Some(&[7u8][..])));
        assert_eq!(
            msg.attribute(AttrType::ERROR_INFO)
                .and_then(Attribute::as_text)
                .as_deref(),
            Some("no")
        );
        // A group whose length stops before its last child's padding (some
        // implementations write it so): the padding is skipped all the same.
        let mut bytes = header(4, 3, 0);
        bytes.extend_from_slice(&[
            0x1E, 0x09, 0x00, 0x05, // FRI, 9 octets: the child's padding left out
            0x12, 0x05, b'x', b'y', b'z', 0x00, 0x00, 0x00, // STATUS-INFO "xyz"
        ]);
        let msg = Message::parse(&bytes).expect("parse");
        let info = msg.attributes.first().expect("FRI");
        assert_eq!(info.children().len(), 1);
        assert_eq!(msg.attributes.len(), 1);
    }

    #[test]
    fn broken_messages_are_refused() {
        let good = status_bytes(0, 7, 3, 0);
        assert!(Message::parse(&good).is_ok());
        // Truncated anywhere: the payload length no longer matches.
        for cut in 0..good.len() {
            assert!(Message::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        // Version 3; the F bit.
        let mut v3 = good.clone();
        v3[0] = 0x60;
        assert!(Message::parse(&v3).is_err());
        let mut fragment = good.clone();
        fragment[0] |= 0x08;
        assert!(Message::parse(&fragment).is_err());
        // An attribute shorter than its own header; one longer than the rest.
        let mut short = header(4, 1, 0);
        short.extend_from_slice(&[0x04, 0x01, 0x00, 0x01]);
        assert!(Message::parse(&short).is_err());
        let mut long = header(4, 1, 0);
        long.extend_from_slice(&[0x04, 0x08, 0x00, 0x01]);
        assert!(Message::parse(&long).is_err());
        // A group too short for its ID.
        let mut group = header(4, 1, 0);
        group.extend_from_slice(&[0x1E, 0x03, 0x00, 0x00]);
        assert!(Message::parse(&group).is_err());
        // Nested past any real message.
        let mut deep = Attribute::request_status(RequestStatus::Granted, 0);
        for _ in 0..10 {
            deep = Attribute::grouped(AttrType::OVERALL_REQUEST_STATUS, false, 1, vec![deep]);
        }
        let deep = Message::new(Primitive::FloorRequestStatus, CONF, 0, USER)
            .with(deep)
            .to_bytes()
            .expect("encode");
        assert!(Message::parse(&deep).is_err());
        // Every single-octet change either parses or is refused: no panic.
        for i in 0..good.len() {
            for v in [0x00, 0x01, 0x7F, 0x80, 0xFF] {
                let mut b = good.clone();
                b[i] = v;
                let _ = Message::parse(&b);
            }
        }
        // What cannot be written is refused, not truncated.
        let huge = Message::new(Primitive::Error, CONF, 1, USER).with(Attribute::octets(
            AttrType::ERROR_INFO,
            false,
            vec![b'x'; 300],
        ));
        assert!(huge.to_bytes().is_err());
    }

    #[test]
    fn the_stream_is_cut_at_message_boundaries_whatever_the_reads() {
        let a = status_bytes(5, 7, 1, 1);
        let b = header(12, 0, 1); // HelloAck without attributes
        let stream: Vec<u8> = a.iter().chain(&b).chain(&a).copied().collect();
        for chunk in [1, 3, 7, 12, 100] {
            let mut d = StreamDecoder::default();
            let mut frames = Vec::new();
            for piece in stream.chunks(chunk) {
                d.push(piece);
                while let Some(f) = d.next_frame().expect("framing") {
                    frames.push(f);
                }
            }
            assert_eq!(
                frames,
                [a.clone(), b.clone(), a.clone()],
                "chunks of {chunk}"
            );
            assert_eq!(d.buffered(), 0);
        }
        let mut d = StreamDecoder::default();
        d.push(b"INVITE sip:");
        assert!(d.next_frame().is_err(), "not BFCP");
    }

    fn drain(c: &mut FloorClient) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| c.poll_transmit()).collect()
    }

    #[test]
    fn request_grant_release_and_a_revocation() {
        let mut c = FloorClient::new(CONF, USER, 1);
        assert!(c.request());
        assert!(!c.request(), "one request at a time");
        let sent = drain(&mut c);
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0], header(11, 0, 1), "Hello first");
        let mut want = header(1, 1, 2);
        want.extend_from_slice(&[0x05, 0x04, 0x00, 0x01]);
        assert_eq!(sent[1], want, "then FloorRequest for floor 1");
        assert_eq!(
            c.state(),
            FloorState::Idle,
            "nothing until the server speaks"
        );

        c.handle_bytes(&header(12, 0, 1)).expect("HelloAck");
        assert!(c.stats().hello_acked);
        // The response (our transaction 2) queues us, then a notification
        // (transaction 0) grants: split across reads.
        let mut bytes = status_bytes(2, 0x0A0B, 1, 1);
        bytes.extend_from_slice(&status_bytes(0, 0x0A0B, 3, 0));
        let (x, y) = bytes.split_at(HEADER_LEN + 16 + 6);
        c.handle_bytes(x).expect("bytes");
        assert_eq!(c.state(), FloorState::Pending);
        assert_eq!(c.stats().last_status, Some((RequestStatus::Pending, 1)));
        c.handle_bytes(y).expect("bytes");
        assert_eq!(c.state(), FloorState::Granted);
        assert!(c.presenting());
        assert_eq!(c.stats().floor_request_id, Some(0x0A0B));
        assert!(
            drain(&mut c).is_empty(),
            "over TCP notifications are not acked"
        );

        // Another request's news is not ours.
        c.handle_bytes(&status_bytes(0, 99, 7, 0)).expect("bytes");
        assert_eq!(c.state(), FloorState::Granted);
        assert_eq!(c.stats().ignored, 1);

        assert!(c.release());
        assert!(!c.presenting(), "stop at once, before the answer");
        let mut want = header(2, 1, 3);
        want.extend_from_slice(&[0x07, 0x04, 0x0A, 0x0B]);
        assert_eq!(drain(&mut c), [want]);
        c.handle_bytes(&status_bytes(3, 0x0A0B, 6, 0))
            .expect("bytes");
        assert_eq!(c.state(), FloorState::Released);
        assert!(!c.has_request());
        assert!(!c.release(), "nothing left to release");

        // Again, and this time someone takes over.
        assert!(c.request());
        let sent = drain(&mut c);
        assert_eq!(sent.len(), 1, "no second Hello");
        c.handle_bytes(&status_bytes(4, 12, 3, 0)).expect("bytes");
        assert!(c.presenting());
        c.handle_bytes(&status_bytes(0, 12, 7, 0)).expect("bytes");
        assert_eq!(c.state(), FloorState::Revoked);
        assert!(!c.presenting());
        assert_eq!(c.stats().requests_sent, 2);
    }

    #[test]
    fn errors_denials_early_releases_and_a_closed_stream() {
        let mut c = FloorClient::new(CONF, USER, 1);
        c.request();
        drain(&mut c);
        // Error to the FloorRequest (transaction 2): no request stands.
        let mut error = header(13, 2, 2);
        error.extend_from_slice(&[0x0D, 0x03, 0x06, 0x00, 0x0E, 0x04, b'n', b'o']);
        c.handle_bytes(&error).expect("bytes");
        assert_eq!(c.state(), FloorState::Idle);
        assert!(!c.has_request());
        let e = c.stats().errors.first().expect("error");
        assert_eq!((e.code, e.info.as_deref()), (6, Some("no")));
        assert!(e.to_string().contains("Invalid Floor ID"));

        // Denied.
        assert!(c.request());
        drain(&mut c);
        c.handle_bytes(&status_bytes(3, 5, 4, 0)).expect("bytes");
        assert_eq!(c.state(), FloorState::Denied);

        // Released before the answer: the release follows the ID.
        assert!(c.request());
        drain(&mut c);
        assert!(c.release());
        assert!(drain(&mut c).is_empty());
        c.handle_bytes(&status_bytes(4, 6, 1, 1)).expect("bytes");
        let mut want = header(2, 1, 5);
        want.extend_from_slice(&[0x07, 0x04, 0x00, 0x06]);
        assert_eq!(drain(&mut c), [want]);
        c.handle_bytes(&status_bytes(5, 6, 5, 0)).expect("bytes"); // Cancelled
        assert_eq!(c.state(), FloorState::Released);

        // The status may sit in the floor's FLOOR-REQUEST-STATUS instead.
        assert!(c.request());
        drain(&mut c);
        let mut b = header(4, 3, 6);
        b.extend_from_slice(&[
            0x1E, 0x0C, 0x00, 0x08, // FRI id 8
            0x22, 0x08, 0x00, 0x01, // FLOOR-REQUEST-STATUS floor 1
            0x0A, 0x04, 0x03, 0x00, // REQUEST-STATUS Granted
        ]);
        c.handle_bytes(&b).expect("bytes");
        assert_eq!(c.state(), FloorState::Granted);

        // A message for another user or conference is not ours.
        let mut other = status_bytes(0, 8, 7, 0);
        other[11] = 3;
        c.handle_bytes(&other).expect("bytes");
        assert_eq!(c.state(), FloorState::Granted);

        // A broken stream closes the client; the state stands, presenting stops.
        assert!(c.handle_bytes(&[0xE0, 0x04, 0x00, 0x00]).is_err());
        assert!(c.stats().closed);
        assert_eq!(c.state(), FloorState::Granted);
        assert!(!c.presenting());
        assert!(!c.request() && !c.release());
    }
}
