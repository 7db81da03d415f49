//! BFCP messages (RFC 8855 §5): the 12-byte common header and TLV
//! attributes, grouped attributes nested inside. Parsing is strict (lengths
//! must agree, padding must fit, nesting is bounded) and never panics;
//! writing produces what parsing accepts.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Ver |R|F| Res |  Primitive    |        Payload Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         Conference ID                         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Transaction ID        |            User ID            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Fragment Offset (if F is set) | Fragment Length (if F is set) |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! Payload Length counts 4-octet units after the header. An attribute is
//! `Type (7 bits) | M | Length (octets, its own 2-byte header included,
//! padding excluded)`, padded to a 4-octet boundary.

/// The common header's length.
pub const HEADER_LEN: usize = 12;
/// BFCP over TCP/TLS (RFC 8855 §5.1: version 1 is also what RFC 4582 peers
/// speak).
pub const VERSION_STREAM: u8 = 1;
/// BFCP over UDP/DTLS (RFC 8855 §5.1).
pub const VERSION_DATAGRAM: u8 = 2;
/// Largest message we accept (header and payload), bytes.
pub const MAX_MESSAGE: usize = 65_536;
/// Deepest nesting of grouped attributes we accept (RFC 8855's grammar
/// nests at most two levels: FLOOR-REQUEST-INFORMATION holding
/// FLOOR-REQUEST-STATUS).
pub const MAX_DEPTH: usize = 3;
/// Most attributes in one message, at any depth.
pub const MAX_ATTRIBUTES: usize = 256;

/// Why a BFCP message was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BfcpError {
    #[error("message ends early")]
    Truncated,
    #[error("unsupported BFCP version {0}")]
    BadVersion(u8),
    #[error("payload length disagrees with the message's size")]
    BadLength,
    #[error("attribute length {0} out of bounds")]
    BadAttributeLength(usize),
    #[error("attribute {0} nested too deep or too many attributes")]
    TooComplex(u8),
    #[error("fragmented messages are not supported")]
    Fragmented,
    #[error("attribute {0} has the wrong size for its type")]
    BadAttribute(u8),
}

impl BfcpError {
    /// A short stable label for metrics (`malformed{kind=...}`).
    pub fn kind(&self) -> &'static str {
        match self {
            BfcpError::Truncated => "truncated",
            BfcpError::BadVersion(_) => "bad_version",
            BfcpError::BadLength => "bad_length",
            BfcpError::BadAttributeLength(_) => "bad_attribute_length",
            BfcpError::TooComplex(_) => "too_complex",
            BfcpError::Fragmented => "fragmented",
            BfcpError::BadAttribute(_) => "bad_attribute",
        }
    }

    /// The ERROR-CODE a floor control server answers this with (§5.2.6).
    pub fn error_code(&self) -> ErrorCode {
        match self {
            BfcpError::BadVersion(_) => ErrorCode::UnsupportedVersion,
            BfcpError::BadLength | BfcpError::Truncated => ErrorCode::IncorrectMessageLength,
            _ => ErrorCode::UnableToParse,
        }
    }
}

macro_rules! numbered {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $n:expr),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $v,)+
            /// A number this implementation does not know.
            Other(u8),
        }
        impl $name {
            pub fn from_u8(n: u8) -> Self {
                match n {
                    $($n => $name::$v,)+
                    other => $name::Other(other),
                }
            }
            pub fn as_u8(self) -> u8 {
                match self {
                    $($name::$v => $n,)+
                    $name::Other(n) => n,
                }
            }
        }
    };
}

numbered! {
    /// Primitives (RFC 8855 §5.1, IANA "BFCP Primitives").
    Primitive {
        FloorRequest = 1,
        FloorRelease = 2,
        FloorRequestQuery = 3,
        FloorRequestStatus = 4,
        UserQuery = 5,
        UserStatus = 6,
        FloorQuery = 7,
        FloorStatus = 8,
        ChairAction = 9,
        ChairActionAck = 10,
        Hello = 11,
        HelloAck = 12,
        Error = 13,
        FloorRequestStatusAck = 14,
        FloorStatusAck = 15,
        Goodbye = 16,
        GoodbyeAck = 17,
    }
}

numbered! {
    /// Attribute types (RFC 8855 §5.2).
    AttrType {
        BeneficiaryId = 1,
        FloorId = 2,
        FloorRequestId = 3,
        Priority = 4,
        RequestStatus = 5,
        ErrorCode = 6,
        ErrorInfo = 7,
        ParticipantProvidedInfo = 8,
        StatusInfo = 9,
        SupportedAttributes = 10,
        SupportedPrimitives = 11,
        UserDisplayName = 12,
        UserUri = 13,
        BeneficiaryInformation = 14,
        FloorRequestInformation = 15,
        RequestedByInformation = 16,
        FloorRequestStatus = 17,
        OverallRequestStatus = 18,
    }
}

numbered! {
    /// Request Status values (RFC 8855 §5.2.5).
    Status {
        Pending = 1,
        Accepted = 2,
        Granted = 3,
        Denied = 4,
        Cancelled = 5,
        Released = 6,
        Revoked = 7,
    }
}

numbered! {
    /// ERROR-CODE values (RFC 8855 §5.2.6).
    ErrorCode {
        ConferenceDoesNotExist = 1,
        UserDoesNotExist = 2,
        UnknownPrimitive = 3,
        UnknownMandatoryAttribute = 4,
        UnauthorizedOperation = 5,
        InvalidFloorId = 6,
        FloorRequestIdDoesNotExist = 7,
        MaxFloorRequestsReached = 8,
        UseTls = 9,
        UnableToParse = 10,
        UseDtls = 11,
        UnsupportedVersion = 12,
        IncorrectMessageLength = 13,
        GenericError = 14,
    }
}

impl AttrType {
    /// Grouped attributes carry a 16-bit ID then attributes.
    pub fn is_grouped(self) -> bool {
        matches!(
            self,
            AttrType::BeneficiaryInformation
                | AttrType::FloorRequestInformation
                | AttrType::RequestedByInformation
                | AttrType::FloorRequestStatus
                | AttrType::OverallRequestStatus
        )
    }

    /// Attributes whose content is exactly 16 bits.
    fn is_16bit(self) -> bool {
        matches!(
            self,
            AttrType::BeneficiaryId
                | AttrType::FloorId
                | AttrType::FloorRequestId
                | AttrType::Priority
                | AttrType::RequestStatus
        )
    }
}

/// One attribute's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// BENEFICIARY-ID, FLOOR-ID, FLOOR-REQUEST-ID; PRIORITY (its value in
    /// the top 3 bits); REQUEST-STATUS (status << 8 | queue position).
    U16(u16),
    /// Octet strings: ERROR-CODE (code then details), ERROR-INFO,
    /// PARTICIPANT-PROVIDED-INFO, STATUS-INFO, SUPPORTED-*, USER-*; and
    /// types we do not know.
    Bytes(Vec<u8>),
    /// A grouped attribute: its 16-bit ID, then attributes.
    Grouped(u16, Vec<Attribute>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub kind: AttrType,
    /// The M bit: the receiver must understand it.
    pub mandatory: bool,
    pub value: Value,
}

impl Attribute {
    pub fn u16(kind: AttrType, v: u16) -> Attribute {
        Attribute {
            kind,
            mandatory: false,
            value: Value::U16(v),
        }
    }

    pub fn bytes(kind: AttrType, v: impl Into<Vec<u8>>) -> Attribute {
        Attribute {
            kind,
            mandatory: false,
            value: Value::Bytes(v.into()),
        }
    }

    pub fn grouped(kind: AttrType, id: u16, children: Vec<Attribute>) -> Attribute {
        Attribute {
            kind,
            mandatory: false,
            value: Value::Grouped(id, children),
        }
    }

    /// REQUEST-STATUS with a status and queue position.
    pub fn request_status(status: Status, queue_position: u8) -> Attribute {
        Attribute::u16(
            AttrType::RequestStatus,
            (u16::from(status.as_u8()) << 8) | u16::from(queue_position),
        )
    }

    /// The 16-bit value or grouped ID.
    pub fn id(&self) -> Option<u16> {
        match self.value {
            Value::U16(v) | Value::Grouped(v, _) => Some(v),
            Value::Bytes(_) => None,
        }
    }

    pub fn children(&self) -> &[Attribute] {
        match &self.value {
            Value::Grouped(_, c) => c,
            _ => &[],
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.value {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// A BFCP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// 1 over TCP/TLS, 2 over UDP/DTLS.
    pub version: u8,
    /// The R bit: a response to a request the receiver sent.
    pub responder: bool,
    pub primitive: Primitive,
    pub conference_id: u32,
    pub transaction_id: u16,
    pub user_id: u16,
    pub attributes: Vec<Attribute>,
}

impl Message {
    pub fn new(version: u8, primitive: Primitive, conference_id: u32, user_id: u16) -> Message {
        Message {
            version,
            responder: false,
            primitive,
            conference_id,
            transaction_id: 0,
            user_id,
            attributes: Vec::new(),
        }
    }

    /// A response to `req` (same version, conference, transaction and
    /// user; R set).
    pub fn response_to(req: &Message, primitive: Primitive) -> Message {
        Message {
            version: req.version,
            responder: true,
            primitive,
            conference_id: req.conference_id,
            transaction_id: req.transaction_id,
            user_id: req.user_id,
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

    /// Every top-level FLOOR-ID.
    pub fn floor_ids(&self) -> Vec<u16> {
        self.attributes
            .iter()
            .filter(|a| a.kind == AttrType::FloorId)
            .filter_map(Attribute::id)
            .collect()
    }

    /// A mandatory attribute whose type we do not know (answered with
    /// Error 4, §13.1).
    pub fn unknown_mandatory(&self) -> Option<u8> {
        fn walk(list: &[Attribute]) -> Option<u8> {
            list.iter().find_map(|a| match a.kind {
                AttrType::Other(n) if a.mandatory => Some(n),
                _ => walk(a.children()),
            })
        }
        walk(&self.attributes)
    }

    /// Parses one whole message (a UDP datagram, or one framed off a TCP
    /// stream by [`message_len`]).
    pub fn parse(buf: &[u8]) -> Result<Message, BfcpError> {
        if buf.len() < HEADER_LEN {
            return Err(BfcpError::Truncated);
        }
        if buf.len() > MAX_MESSAGE {
            return Err(BfcpError::BadLength);
        }
        let version = buf[0] >> 5;
        if version != VERSION_STREAM && version != VERSION_DATAGRAM {
            return Err(BfcpError::BadVersion(version));
        }
        if buf[0] & 0x08 != 0 {
            return Err(BfcpError::Fragmented);
        }
        let payload_units = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if HEADER_LEN + payload_units * 4 != buf.len() {
            return Err(BfcpError::BadLength);
        }
        let mut budget = MAX_ATTRIBUTES;
        let attributes = parse_attributes(&buf[HEADER_LEN..], 0, &mut budget)?;
        Ok(Message {
            version,
            responder: buf[0] & 0x10 != 0,
            primitive: Primitive::from_u8(buf[1]),
            conference_id: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            transaction_id: u16::from_be_bytes([buf[8], buf[9]]),
            user_id: u16::from_be_bytes([buf[10], buf[11]]),
            attributes,
        })
    }

    /// Only the common header of `buf` (no attributes), when there are 12
    /// bytes of it: enough to answer a message that does not parse with an
    /// Error naming its conference, transaction and user (§13.8).
    pub fn header(buf: &[u8]) -> Option<Message> {
        let h = buf.get(..HEADER_LEN)?;
        let version = match h[0] >> 5 {
            v @ (VERSION_STREAM | VERSION_DATAGRAM) => v,
            _ => VERSION_STREAM,
        };
        Some(Message {
            version,
            responder: h[0] & 0x10 != 0,
            primitive: Primitive::from_u8(h[1]),
            conference_id: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            transaction_id: u16::from_be_bytes([h[8], h[9]]),
            user_id: u16::from_be_bytes([h[10], h[11]]),
            attributes: Vec::new(),
        })
    }

    /// The message's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push((self.version << 5) | if self.responder { 0x10 } else { 0 });
        out.push(self.primitive.as_u8());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.conference_id.to_be_bytes());
        out.extend_from_slice(&self.transaction_id.to_be_bytes());
        out.extend_from_slice(&self.user_id.to_be_bytes());
        for a in &self.attributes {
            write_attribute(&mut out, a);
        }
        let units = ((out.len() - HEADER_LEN) / 4) as u16;
        out[2..4].copy_from_slice(&units.to_be_bytes());
        out
    }
}

/// The length of the message at the start of a TCP stream's buffer, once
/// its header is there (`None`: need more bytes). Checks the version, so a
/// stream that is not BFCP fails at once.
pub fn message_len(buf: &[u8]) -> Result<Option<usize>, BfcpError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let version = buf[0] >> 5;
    if version != VERSION_STREAM && version != VERSION_DATAGRAM {
        return Err(BfcpError::BadVersion(version));
    }
    if buf[0] & 0x08 != 0 {
        return Err(BfcpError::Fragmented);
    }
    let len = HEADER_LEN + usize::from(u16::from_be_bytes([buf[2], buf[3]])) * 4;
    if len > MAX_MESSAGE {
        return Err(BfcpError::BadLength);
    }
    Ok(Some(len))
}

fn parse_attributes(
    mut buf: &[u8],
    depth: usize,
    budget: &mut usize,
) -> Result<Vec<Attribute>, BfcpError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        if buf.len() < 2 {
            return Err(BfcpError::Truncated);
        }
        let type_byte = buf[0] >> 1;
        let kind = AttrType::from_u8(type_byte);
        let mandatory = buf[0] & 1 != 0;
        let len = usize::from(buf[1]);
        if len < 2 || len > buf.len() {
            return Err(BfcpError::BadAttributeLength(len));
        }
        // A peer may leave the last attribute's padding out of a grouped
        // attribute's length: what is there is enough.
        let padded = (len.div_ceil(4) * 4).min(buf.len());
        if *budget == 0 {
            return Err(BfcpError::TooComplex(type_byte));
        }
        *budget -= 1;
        let body = &buf[2..len];
        let value = if kind.is_grouped() {
            if body.len() < 2 {
                return Err(BfcpError::BadAttribute(type_byte));
            }
            if depth + 1 >= MAX_DEPTH {
                return Err(BfcpError::TooComplex(type_byte));
            }
            // The children start after the ID, on the next 4-octet boundary
            // (the ID fills the attribute's first word).
            let children = parse_attributes(&body[2..], depth + 1, budget)?;
            Value::Grouped(u16::from_be_bytes([body[0], body[1]]), children)
        } else if kind.is_16bit() {
            if body.len() != 2 {
                return Err(BfcpError::BadAttribute(type_byte));
            }
            Value::U16(u16::from_be_bytes([body[0], body[1]]))
        } else {
            Value::Bytes(body.to_vec())
        };
        out.push(Attribute {
            kind,
            mandatory,
            value,
        });
        buf = &buf[padded..];
    }
    Ok(out)
}

fn write_attribute(out: &mut Vec<u8>, a: &Attribute) {
    let start = out.len();
    out.push((a.kind.as_u8() << 1) | u8::from(a.mandatory));
    out.push(0);
    match &a.value {
        Value::U16(v) => out.extend_from_slice(&v.to_be_bytes()),
        Value::Bytes(b) => out.extend_from_slice(&b[..b.len().min(253)]),
        Value::Grouped(id, children) => {
            out.extend_from_slice(&id.to_be_bytes());
            for c in children {
                write_attribute(out, c);
            }
        }
    }
    // Length is one octet: a grouped attribute longer than 255 octets
    // cannot be written (ours never are: a handful of 16-bit children);
    // one that would be is written with its ID alone.
    if out.len() - start > 255 {
        out.truncate(start + 4);
    }
    let len = out.len() - start;
    out[start + 1] = len as u8;
    while !(out.len() - start).is_multiple_of(4) {
        out.push(0);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A FloorRequest as a room system sends it: floor 1 (RFC 8855 §5.3.1).
    fn floor_request() -> Vec<u8> {
        vec![
            0x20,
            1,
            0,
            1, // ver 1, FloorRequest, 1 word of payload
            0,
            0,
            0x12,
            0x34, // conference 0x1234
            0,
            7,
            0,
            9, // transaction 7, user 9
            (2 << 1) | 1,
            4,
            0,
            1, // FLOOR-ID 1, mandatory
        ]
    }

    #[test]
    fn parses_a_floor_request() {
        let m = Message::parse(&floor_request()).unwrap();
        assert_eq!(m.version, 1);
        assert!(!m.responder);
        assert_eq!(m.primitive, Primitive::FloorRequest);
        assert_eq!(m.conference_id, 0x1234);
        assert_eq!(m.transaction_id, 7);
        assert_eq!(m.user_id, 9);
        assert_eq!(m.floor_ids(), vec![1]);
        assert!(m.attributes[0].mandatory);
        assert_eq!(m.to_bytes(), floor_request());
    }

    #[test]
    fn writes_a_floor_request_status_that_parses_back() {
        let req = Message::parse(&floor_request()).unwrap();
        let m = Message::response_to(&req, Primitive::FloorRequestStatus).with(Attribute::grouped(
            AttrType::FloorRequestInformation,
            5,
            vec![
                Attribute::grouped(
                    AttrType::OverallRequestStatus,
                    5,
                    vec![Attribute::request_status(Status::Granted, 0)],
                ),
                Attribute::grouped(AttrType::FloorRequestStatus, 1, vec![]),
            ],
        ));
        let bytes = m.to_bytes();
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(bytes[0], 0x30, "version 1 with R");
        let back = Message::parse(&bytes).unwrap();
        assert_eq!(back, m);
        let fri = back.attribute(AttrType::FloorRequestInformation).unwrap();
        assert_eq!(fri.id(), Some(5));
        // 2+2 header/ID, ORS (4 + RS 4) = 8, FRS 4: 16 octets.
        assert_eq!(bytes[HEADER_LEN + 1], 16);
    }

    #[test]
    fn strings_are_padded_and_round_trip() {
        let m = Message::new(2, Primitive::Hello, 1, 2)
            .with(Attribute::bytes(AttrType::UserDisplayName, "Board room"))
            .with(Attribute::bytes(
                AttrType::SupportedPrimitives,
                vec![1, 2, 3],
            ));
        let b = m.to_bytes();
        assert_eq!(b.len() % 4, 0);
        assert_eq!(Message::parse(&b).unwrap(), m);
    }

    #[test]
    fn rejects_what_is_malformed() {
        let good = floor_request();
        assert_eq!(Message::parse(&good[..11]), Err(BfcpError::Truncated));
        let mut v3 = good.clone();
        v3[0] = 0x60;
        assert_eq!(Message::parse(&v3), Err(BfcpError::BadVersion(3)));
        let mut long = good.clone();
        long[3] = 2;
        assert_eq!(Message::parse(&long), Err(BfcpError::BadLength));
        let mut attr = good.clone();
        attr[13] = 9;
        assert!(matches!(
            Message::parse(&attr),
            Err(BfcpError::BadAttributeLength(9))
        ));
        let mut short16 = good.clone();
        short16[13] = 3;
        assert_eq!(Message::parse(&short16), Err(BfcpError::BadAttribute(2)));
        let mut frag = good;
        frag[0] |= 0x08;
        assert_eq!(Message::parse(&frag), Err(BfcpError::Fragmented));
    }

    #[test]
    fn nesting_is_bounded() {
        // FRI { FRS { FRI { ... } } }: three grouped levels.
        let inner = Attribute::grouped(AttrType::FloorRequestInformation, 1, vec![]);
        let mid = Attribute::grouped(AttrType::FloorRequestStatus, 1, vec![inner]);
        let outer = Attribute::grouped(AttrType::FloorRequestInformation, 1, vec![mid]);
        let m = Message::new(1, Primitive::FloorRequestStatus, 1, 1).with(outer);
        assert!(matches!(
            Message::parse(&m.to_bytes()),
            Err(BfcpError::TooComplex(_))
        ));
    }

    #[test]
    fn unknown_mandatory_attributes_are_found() {
        let m = Message::new(1, Primitive::FloorRequest, 1, 1)
            .with(Attribute::u16(AttrType::FloorId, 1))
            .with(Attribute {
                kind: AttrType::Other(99),
                mandatory: true,
                value: Value::Bytes(vec![1, 2]),
            });
        let back = Message::parse(&m.to_bytes()).unwrap();
        assert_eq!(back.unknown_mandatory(), Some(99));
    }

    #[test]
    fn frames_a_stream() {
        let mut two = floor_request();
        two.extend(floor_request());
        assert_eq!(message_len(&two[..3]), Ok(None));
        assert_eq!(message_len(&two), Ok(Some(16)));
        assert_eq!(
            message_len(b"\x00\x01\x00\x00"),
            Err(BfcpError::BadVersion(0))
        );
    }
}
