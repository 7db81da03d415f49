//! H.225.0 call signalling messages: the `H323-UserInformation` that the
//! Q.931 User-user element carries, in aligned PER (module H323-MESSAGES,
//! H.225.0 v7).
//!
//! What is modelled is what a gatekeeper-less call with Fast Connect and
//! tunnelled H.245 needs: Setup, Call Proceeding, Alerting, Connect,
//! Information, Release Complete and Facility bodies, and the
//! `h245Tunnelling` and `h245Control` fields of the PDU. Everything else a
//! peer sends decodes without failing: root components we do not model are
//! stepped over by their shape ([`super::schema`]) and dropped, unknown
//! extension additions are skipped by their open-type length, and CHOICE
//! alternatives we do not model are kept as [`UnknownAlt`] (so they encode
//! back). A decoded value encodes to bytes that decode to the same value.
//!
//! Tunnelled H.245 messages and Fast Connect proposals stay octet strings
//! here: decode each with [`super::h245`], so that one bad proposal does not
//! make the whole Setup unreadable.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::h245;
use super::opaque::{Opaque, UnknownAlt, encode_smallest};
use super::per::{Alt, Extensions, Oid, Reader, Result, Size, Writer};
use super::q931;
use super::schema;

/// `protocolIdentifier` of H.225.0 version 4: {itu-t(0) recommendation(0)
/// h(8) h225-0(2250) version(0) 4}.
pub const PROTOCOL_V4: [u32; 6] = [0, 0, 8, 2250, 0, 4];
/// `protocolIdentifier` of H.225.0 version 6.
pub const PROTOCOL_V6: [u32; 6] = [0, 0, 8, 2250, 0, 6];

/// The protocol identifier we send.
pub fn protocol_identifier() -> Oid {
    Oid::new(&PROTOCOL_V4)
}

/// The H.225.0 version of a protocol identifier (`0.0.8.2250.0.v`).
pub fn protocol_version(oid: &Oid) -> Option<u32> {
    match oid.arcs() {
        [0, 0, 8, 2250, 0, v] => Some(*v),
        _ => None,
    }
}

/// A 16-octet globally unique identifier: a conference ID or a call ID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Guid(pub [u8; 16]);

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// The sizes of the strings and lists in H323-MESSAGES we read or write.
mod size {
    use super::Size;
    pub const DIALED_DIGITS: Size = Size::range(1, 128);
    pub const H323_ID: Size = Size::range(1, 256);
    pub const URL: Size = Size::range(1, 512);
    pub const VENDOR_STRING: Size = Size::range(1, 256);
}

/// `dialledDigits` is `IA5String (FROM ("0123456789#*,"))`: 13 characters,
/// 4 bits each as indexes into the alphabet in code order (X.691 30.5.4).
const DIGITS: &[u8] = b"#*,0123456789";

/// H323-UserInformation: the H.225.0 body of a Q.931 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInformation {
    pub body: Body,
    /// `h245Tunnelling`: H.245 messages travel in `h245_control` of the
    /// call signalling messages rather than on a separate connection.
    pub h245_tunnelling: bool,
    /// `h245Control`: tunnelled H.245 messages, each one PER-encoded
    /// `MultimediaSystemControlMessage`.
    pub h245_control: Vec<Vec<u8>>,
}

impl UserInformation {
    pub fn new(body: Body) -> UserInformation {
        UserInformation {
            body,
            h245_tunnelling: false,
            h245_control: Vec::new(),
        }
    }

    /// Sets `h245Tunnelling`.
    pub fn tunnelling(mut self, on: bool) -> UserInformation {
        self.h245_tunnelling = on;
        self
    }

    /// Adds tunnelled H.245 messages (and sets `h245Tunnelling`).
    pub fn with_h245(mut self, messages: &[h245::Message]) -> UserInformation {
        self.h245_tunnelling = true;
        self.h245_control
            .extend(messages.iter().map(h245::Message::encode));
        self
    }

    /// Decodes the tunnelled H.245 messages, each on its own: those of
    /// `h245Control`, then a Setup's `parallelH245Control`.
    pub fn h245_messages(&self) -> impl Iterator<Item = Result<h245::Message>> + '_ {
        let parallel: &[Vec<u8>] = match &self.body {
            Body::Setup(s) => &s.parallel_h245_control,
            _ => &[],
        };
        self.h245_control
            .iter()
            .chain(parallel)
            .map(|m| h245::Message::decode(m))
    }

    pub fn decode(bytes: &[u8]) -> Result<UserInformation> {
        let mut r = Reader::new(bytes);
        // H323-UserInformation ::= SEQUENCE { h323-uu-pdu, user-data OPTIONAL, ... }
        let pre = r.preamble(true, 1)?;
        // H323-UU-PDU ::= SEQUENCE { h323-message-body, nonStandardData OPTIONAL, ..., }
        let pdu = r.preamble(true, 1)?;
        let body = Body::decode(&mut r)?;
        if pdu.has(0) {
            Opaque::skip(&mut r, &schema::H225_NON_STANDARD_PARAMETER)?;
        }
        let mut ui = UserInformation::new(body);
        if pdu.extended {
            let e = r.extensions()?;
            if let Some(c) = e.get(1) {
                ui.h245_tunnelling = r.nested(c, |r| r.boolean())?;
            }
            if let Some(c) = e.get(2) {
                ui.h245_control = r.nested(c, octet_strings)?;
            }
        }
        if pre.has(0) {
            Opaque::skip(&mut r, &schema::H225_USER_DATA)?;
        }
        if pre.extended {
            r.extensions()?;
        }
        Ok(ui)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.preamble(Some(false), &[false]);
        w.preamble(Some(true), &[false]);
        self.body.encode(&mut w);
        let mut ext = vec![(1, Writer::complete(|w| w.boolean(self.h245_tunnelling)))];
        if !self.h245_control.is_empty() {
            ext.push((
                2,
                Writer::complete(|w| write_octet_strings(w, &self.h245_control)),
            ));
        }
        w.extensions(9, &ext);
        w.finish()
    }

    /// The PER bytes of the User-user element of `msg`, decoded.
    pub fn from_q931(msg: &q931::Message) -> Option<Result<UserInformation>> {
        msg.user_user().map(UserInformation::decode)
    }

    /// A Q.931 message of the type that goes with the body, carrying this
    /// in its User-user element (other elements are the caller's).
    pub fn to_q931(&self, call_reference: u16, from_destination: bool) -> q931::Message {
        q931::Message::new(self.body.q931_type(), call_reference, from_destination)
            .with_user_user(&self.encode())
    }
}

/// `h323-message-body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Setup(Setup),
    CallProceeding(CallProceeding),
    Connect(Connect),
    Alerting(Alerting),
    Information(Information),
    ReleaseComplete(ReleaseComplete),
    Facility(Facility),
    /// `empty`: a Facility that only carries tunnelled H.245 or
    /// supplementary services (H.225.0 v4 and later).
    Empty,
    /// progress, status, statusInquiry, setupAcknowledge, notify, or an
    /// alternative of a later version: kept as the open type it came in.
    Unsupported(UnknownAlt),
}

/// The CHOICE has 7 root alternatives; `empty` is extension alternative 1.
const BODY_ROOT: usize = 7;
const BODY_EMPTY: usize = 1;

impl Body {
    /// The Q.931 message type this body goes in.
    pub fn q931_type(&self) -> q931::MessageType {
        use q931::MessageType as T;
        match self {
            Body::Setup(_) => T::Setup,
            Body::CallProceeding(_) => T::CallProceeding,
            Body::Connect(_) => T::Connect,
            Body::Alerting(_) => T::Alerting,
            Body::Information(_) => T::Information,
            Body::ReleaseComplete(_) => T::ReleaseComplete,
            Body::Facility(_) | Body::Empty => T::Facility,
            Body::Unsupported(u) => match u.alternative() {
                Alt::Ext(0) => T::Progress,
                Alt::Ext(2) => T::Status,
                Alt::Ext(3) => T::StatusEnquiry,
                Alt::Ext(4) => T::SetupAcknowledge,
                Alt::Ext(5) => T::Notify,
                _ => T::Facility,
            },
        }
    }

    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Body::Setup(_) => "setup",
            Body::CallProceeding(_) => "call_proceeding",
            Body::Connect(_) => "connect",
            Body::Alerting(_) => "alerting",
            Body::Information(_) => "information",
            Body::ReleaseComplete(_) => "release_complete",
            Body::Facility(_) => "facility",
            Body::Empty => "empty",
            Body::Unsupported(_) => "unsupported",
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Body> {
        Ok(match r.choice(BODY_ROOT, true)? {
            Alt::Root(0) => Body::Setup(Setup::decode(r)?),
            Alt::Root(1) => Body::CallProceeding(CallProceeding::decode(r)?),
            Alt::Root(2) => Body::Connect(Connect::decode(r)?),
            Alt::Root(3) => Body::Alerting(Alerting::decode(r)?),
            Alt::Root(4) => Body::Information(Information::decode(r)?),
            Alt::Root(5) => Body::ReleaseComplete(ReleaseComplete::decode(r)?),
            Alt::Root(_) => Body::Facility(Facility::decode(r)?),
            Alt::Ext(BODY_EMPTY) => {
                r.open_type()?;
                Body::Empty
            }
            alt @ Alt::Ext(_) => Body::Unsupported(UnknownAlt::decode(r, &BODY_SHAPE, alt)?),
        })
    }

    fn encode(&self, w: &mut Writer) {
        let root = |w: &mut Writer, i| w.choice(Alt::Root(i), BODY_ROOT, true);
        match self {
            Body::Setup(m) => {
                root(w, 0);
                m.encode(w)
            }
            Body::CallProceeding(m) => {
                root(w, 1);
                m.encode(w)
            }
            Body::Connect(m) => {
                root(w, 2);
                m.encode(w)
            }
            Body::Alerting(m) => {
                root(w, 3);
                m.encode(w)
            }
            Body::Information(m) => {
                root(w, 4);
                m.encode(w)
            }
            Body::ReleaseComplete(m) => {
                root(w, 5);
                m.encode(w)
            }
            Body::Facility(m) => {
                root(w, 6);
                m.encode(w)
            }
            Body::Empty => {
                w.choice(Alt::Ext(BODY_EMPTY), BODY_ROOT, true);
                w.open_type(&[0]);
            }
            Body::Unsupported(u) => u.encode(w, &BODY_SHAPE),
        }
    }
}

/// The body CHOICE's shape for [`UnknownAlt`]: only its extension
/// alternatives end up there, so the root alternatives need no shape.
static BODY_SHAPE: super::opaque::Node = super::opaque::Node::Choice {
    ext: true,
    root: &[
        &super::opaque::Node::Null,
        &super::opaque::Node::Null,
        &super::opaque::Node::Null,
        &super::opaque::Node::Null,
        &super::opaque::Node::Null,
        &super::opaque::Node::Null,
        &super::opaque::Node::Null,
    ],
};

/// `TransportAddress` (H.225.0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportAddress {
    /// `ipAddress`.
    Ipv4 { ip: [u8; 4], port: u16 },
    /// `ip6Address`.
    Ipv6 { ip: [u8; 16], port: u16 },
    /// ipSourceRoute, ipxAddress, netBios, nsap, nonStandardAddress.
    Other(UnknownAlt),
}

impl TransportAddress {
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            TransportAddress::Ipv4 { ip, port } => {
                Some(SocketAddr::new(Ipv4Addr::from(*ip).into(), *port))
            }
            TransportAddress::Ipv6 { ip, port } => {
                Some(SocketAddr::new(Ipv6Addr::from(*ip).into(), *port))
            }
            TransportAddress::Other(_) => None,
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<TransportAddress> {
        Ok(match r.choice(7, true)? {
            Alt::Root(0) => {
                let ip = r.fixed_octets::<4>()?;
                let port = r.number(0, 65535)?;
                TransportAddress::Ipv4 { ip, port }
            }
            Alt::Root(3) => {
                let pre = r.preamble(true, 0)?;
                let ip = r.fixed_octets::<16>()?;
                let port = r.number(0, 65535)?;
                if pre.extended {
                    r.extensions()?;
                }
                TransportAddress::Ipv6 { ip, port }
            }
            alt => TransportAddress::Other(UnknownAlt::decode(
                r,
                &schema::H225_TRANSPORT_ADDRESS,
                alt,
            )?),
        })
    }

    fn encode(&self, w: &mut Writer) {
        match self {
            TransportAddress::Ipv4 { ip, port } => {
                w.choice(Alt::Root(0), 7, true);
                w.octet_string(ip, Size::fixed(4));
                w.constrained(i64::from(*port), 0, 65535);
            }
            TransportAddress::Ipv6 { ip, port } => {
                w.choice(Alt::Root(3), 7, true);
                w.preamble(Some(false), &[]);
                w.octet_string(ip, Size::fixed(16));
                w.constrained(i64::from(*port), 0, 65535);
            }
            TransportAddress::Other(u) => u.encode(w, &schema::H225_TRANSPORT_ADDRESS),
        }
    }
}

impl From<SocketAddr> for TransportAddress {
    fn from(a: SocketAddr) -> TransportAddress {
        match a.ip() {
            IpAddr::V4(ip) => TransportAddress::Ipv4 {
                ip: ip.octets(),
                port: a.port(),
            },
            IpAddr::V6(ip) => TransportAddress::Ipv6 {
                ip: ip.octets(),
                port: a.port(),
            },
        }
    }
}

/// `AliasAddress`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasAddress {
    /// `dialledDigits`: `0-9 # * ,` (others are dropped when sent).
    DialedDigits(String),
    /// `h323-ID`: a name, in UCS-2.
    H323Id(String),
    /// `url-ID`.
    Url(String),
    /// `transportID`.
    Transport(TransportAddress),
    /// `email-ID`.
    Email(String),
    /// partyNumber, mobileUIM, isupNumber.
    Other(UnknownAlt),
}

impl AliasAddress {
    /// The alias as text, if it is one.
    pub fn text(&self) -> Option<&str> {
        match self {
            AliasAddress::DialedDigits(s)
            | AliasAddress::H323Id(s)
            | AliasAddress::Url(s)
            | AliasAddress::Email(s) => Some(s),
            _ => None,
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<AliasAddress> {
        Ok(match r.choice(2, true)? {
            Alt::Root(0) => {
                AliasAddress::DialedDigits(r.indexed_string(size::DIALED_DIGITS, DIGITS, 4)?)
            }
            Alt::Root(_) => AliasAddress::H323Id(r.bmp_string(size::H323_ID)?),
            Alt::Ext(0) => {
                let c = r.open_type()?;
                AliasAddress::Url(r.nested(c, |r| r.ia5_string(size::URL))?)
            }
            Alt::Ext(1) => {
                let c = r.open_type()?;
                AliasAddress::Transport(r.nested(c, TransportAddress::decode)?)
            }
            Alt::Ext(2) => {
                let c = r.open_type()?;
                AliasAddress::Email(r.nested(c, |r| r.ia5_string(size::URL))?)
            }
            alt => AliasAddress::Other(UnknownAlt::decode(r, &ALIAS_SHAPE, alt)?),
        })
    }

    fn encode(&self, w: &mut Writer) {
        match self {
            AliasAddress::DialedDigits(s) => {
                w.choice(Alt::Root(0), 2, true);
                w.indexed_string(s, size::DIALED_DIGITS, DIGITS, 4);
            }
            AliasAddress::H323Id(s) => {
                w.choice(Alt::Root(1), 2, true);
                w.bmp_string(s, size::H323_ID);
            }
            AliasAddress::Url(s) => {
                w.choice(Alt::Ext(0), 2, true);
                w.open_type(&Writer::complete(|w| w.ia5_string(s, size::URL)));
            }
            AliasAddress::Transport(t) => {
                w.choice(Alt::Ext(1), 2, true);
                w.open_type(&Writer::complete(|w| t.encode(w)));
            }
            AliasAddress::Email(s) => {
                w.choice(Alt::Ext(2), 2, true);
                w.open_type(&Writer::complete(|w| w.ia5_string(s, size::URL)));
            }
            AliasAddress::Other(u) => u.encode(w, &ALIAS_SHAPE),
        }
    }
}

/// AliasAddress for [`UnknownAlt`]: its root alternatives are modelled.
static ALIAS_SHAPE: super::opaque::Node = super::opaque::Node::Choice {
    ext: true,
    root: &[&super::opaque::Node::Null, &super::opaque::Node::Null],
};

/// `VendorIdentifier`: who made the peer (T.35 country and manufacturer
/// codes, product and version strings).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VendorIdentifier {
    pub t35_country_code: u8,
    pub t35_extension: u8,
    pub manufacturer_code: u16,
    pub product_id: Option<Vec<u8>>,
    pub version_id: Option<Vec<u8>>,
}

impl VendorIdentifier {
    fn decode(r: &mut Reader<'_>) -> Result<VendorIdentifier> {
        let pre = r.preamble(true, 2)?;
        // H221NonStandard ::= SEQUENCE { t35CountryCode, t35Extension, manufacturerCode, ... }
        let h221 = r.preamble(true, 0)?;
        let t35_country_code = r.number(0, 255)?;
        let t35_extension = r.number(0, 255)?;
        let manufacturer_code = r.number(0, 65535)?;
        if h221.extended {
            r.extensions()?;
        }
        let product_id = pre
            .has(0)
            .then(|| r.octet_string(size::VENDOR_STRING))
            .transpose()?;
        let version_id = pre
            .has(1)
            .then(|| r.octet_string(size::VENDOR_STRING))
            .transpose()?;
        if pre.extended {
            r.extensions()?;
        }
        Ok(VendorIdentifier {
            t35_country_code,
            t35_extension,
            manufacturer_code,
            product_id,
            version_id,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(
            Some(false),
            &[self.product_id.is_some(), self.version_id.is_some()],
        );
        w.preamble(Some(false), &[]);
        w.constrained(self.t35_country_code.into(), 0, 255);
        w.constrained(self.t35_extension.into(), 0, 255);
        w.constrained(self.manufacturer_code.into(), 0, 65535);
        for s in [&self.product_id, &self.version_id].into_iter().flatten() {
            w.octet_string(s, size::VENDOR_STRING);
        }
    }
}

/// `EndpointType`: what kind of H.323 entity a peer is. The info
/// structures of the kinds are kept as present or not; their contents
/// (nonStandardData, a gateway's protocol list) are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointType {
    pub vendor: Option<VendorIdentifier>,
    pub gatekeeper: bool,
    pub gateway: bool,
    pub mcu: bool,
    pub terminal: bool,
    /// Contains a multipoint controller.
    pub mc: bool,
    pub undefined_node: bool,
}

impl EndpointType {
    /// A terminal.
    pub fn terminal() -> EndpointType {
        EndpointType {
            terminal: true,
            ..EndpointType::default()
        }
    }

    /// An MCU (H.225.0: `mc` must be set with `mcu`).
    pub fn mcu() -> EndpointType {
        EndpointType {
            mcu: true,
            mc: true,
            ..EndpointType::default()
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<EndpointType> {
        let pre = r.preamble(true, 6)?;
        if pre.has(0) {
            Opaque::skip(r, &schema::H225_NON_STANDARD_PARAMETER)?;
        }
        let vendor = pre
            .has(1)
            .then(|| VendorIdentifier::decode(r))
            .transpose()?;
        let mut present = [false; 4];
        for (i, node) in [
            &schema::H225_GATEKEEPER_INFO,
            &schema::H225_GATEWAY_INFO,
            &schema::H225_MCU_INFO,
            &schema::H225_TERMINAL_INFO,
        ]
        .into_iter()
        .enumerate()
        {
            if pre.has(i + 2) {
                Opaque::skip(r, node)?;
                present[i] = true;
            }
        }
        let mc = r.boolean()?;
        let undefined_node = r.boolean()?;
        if pre.extended {
            r.extensions()?;
        }
        let [gatekeeper, gateway, mcu, terminal] = present;
        Ok(EndpointType {
            vendor,
            gatekeeper,
            gateway,
            mcu,
            terminal,
            mc,
            undefined_node,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(
            Some(false),
            &[
                false,
                self.vendor.is_some(),
                self.gatekeeper,
                self.gateway,
                self.mcu,
                self.terminal,
            ],
        );
        if let Some(v) = &self.vendor {
            v.encode(w);
        }
        for (on, node) in [
            (self.gatekeeper, &schema::H225_GATEKEEPER_INFO),
            (self.gateway, &schema::H225_GATEWAY_INFO),
            (self.mcu, &schema::H225_MCU_INFO),
            (self.terminal, &schema::H225_TERMINAL_INFO),
        ] {
            if on {
                encode_smallest(w, node);
            }
        }
        w.boolean(self.mc);
        w.boolean(self.undefined_node);
    }
}

/// `conferenceGoal` of a Setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConferenceGoal {
    Create,
    Join,
    Invite,
    CapabilityNegotiation,
    CallIndependentSupplementaryService,
    Other(UnknownAlt),
}

static GOAL_SHAPE: super::opaque::Node = super::opaque::Node::Choice {
    ext: true,
    root: &[
        &super::opaque::Node::Null,
        &super::opaque::Node::Null,
        &super::opaque::Node::Null,
    ],
};

impl ConferenceGoal {
    fn decode(r: &mut Reader<'_>) -> Result<ConferenceGoal> {
        Ok(match r.choice(3, true)? {
            Alt::Root(0) => ConferenceGoal::Create,
            Alt::Root(1) => ConferenceGoal::Join,
            Alt::Root(_) => ConferenceGoal::Invite,
            Alt::Ext(i @ 0..=1) => {
                r.open_type()?;
                if i == 0 {
                    ConferenceGoal::CapabilityNegotiation
                } else {
                    ConferenceGoal::CallIndependentSupplementaryService
                }
            }
            alt => ConferenceGoal::Other(UnknownAlt::decode(r, &GOAL_SHAPE, alt)?),
        })
    }

    fn encode(&self, w: &mut Writer) {
        let alt = match self {
            ConferenceGoal::Create => Alt::Root(0),
            ConferenceGoal::Join => Alt::Root(1),
            ConferenceGoal::Invite => Alt::Root(2),
            ConferenceGoal::CapabilityNegotiation => Alt::Ext(0),
            ConferenceGoal::CallIndependentSupplementaryService => Alt::Ext(1),
            ConferenceGoal::Other(u) => return u.encode(w, &GOAL_SHAPE),
        };
        w.choice(alt, 3, true);
        if let Alt::Ext(_) = alt {
            w.open_type(&[0]);
        }
    }
}

/// `callType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallType {
    PointToPoint,
    OneToN,
    NToOne,
    NToN,
}

impl CallType {
    fn decode(r: &mut Reader<'_>) -> Result<CallType> {
        Ok(match r.choice(4, true)? {
            Alt::Root(0) => CallType::PointToPoint,
            Alt::Root(1) => CallType::OneToN,
            Alt::Root(2) => CallType::NToOne,
            Alt::Root(_) => CallType::NToN,
            // No extension alternatives are defined; a later one reads as
            // the commonest kind.
            Alt::Ext(_) => {
                r.open_type()?;
                CallType::PointToPoint
            }
        })
    }

    fn encode(&self, w: &mut Writer) {
        let i = match self {
            CallType::PointToPoint => 0,
            CallType::OneToN => 1,
            CallType::NToOne => 2,
            CallType::NToN => 3,
        };
        w.choice(Alt::Root(i), 4, true);
    }
}

/// Setup-UUIE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    pub protocol_identifier: Oid,
    /// Where the caller listens for a separate H.245 connection.
    pub h245_address: Option<TransportAddress>,
    pub source_address: Vec<AliasAddress>,
    pub source_info: EndpointType,
    /// Whom the caller calls: the conference ID as `dialedDigits` or
    /// `h323-ID`, a URL.
    pub destination_address: Vec<AliasAddress>,
    pub dest_call_signal_address: Option<TransportAddress>,
    pub dest_extra_call_info: Vec<AliasAddress>,
    pub active_mc: bool,
    pub conference_id: Guid,
    pub conference_goal: ConferenceGoal,
    pub call_type: CallType,
    pub source_call_signal_address: Option<TransportAddress>,
    /// `callIdentifier` (all zeros from a version 1 peer, which has none).
    pub call_identifier: Guid,
    /// Fast Connect proposals: PER-encoded H.245 OpenLogicalChannels.
    pub fast_start: Vec<Vec<u8>>,
    pub media_wait_for_connect: bool,
    pub can_overlap_send: bool,
    pub multiple_calls: bool,
    pub maintain_connection: bool,
    /// `parallelH245Control`: H.245 messages tunnelled in the Setup along
    /// with Fast Connect proposals (H.323 §8.2.4), e.g. the caller's
    /// TerminalCapabilitySet and MasterSlaveDetermination.
    pub parallel_h245_control: Vec<Vec<u8>>,
}

impl Setup {
    /// A Setup of ours: version 4, create a conference, point to point.
    pub fn new(conference_id: Guid, call_identifier: Guid, source_info: EndpointType) -> Setup {
        Setup {
            protocol_identifier: protocol_identifier(),
            h245_address: None,
            source_address: Vec::new(),
            source_info,
            destination_address: Vec::new(),
            dest_call_signal_address: None,
            dest_extra_call_info: Vec::new(),
            active_mc: false,
            conference_id,
            conference_goal: ConferenceGoal::Create,
            call_type: CallType::PointToPoint,
            source_call_signal_address: None,
            call_identifier,
            fast_start: Vec::new(),
            media_wait_for_connect: false,
            can_overlap_send: false,
            multiple_calls: false,
            maintain_connection: false,
            parallel_h245_control: Vec::new(),
        }
    }

    /// The Fast Connect proposals, each decoded on its own.
    pub fn fast_start_channels(
        &self,
    ) -> impl Iterator<Item = Result<h245::OpenLogicalChannel>> + '_ {
        self.fast_start
            .iter()
            .map(|b| h245::OpenLogicalChannel::decode(b))
    }

    fn decode(r: &mut Reader<'_>) -> Result<Setup> {
        let pre = r.preamble(true, 7)?;
        let protocol_identifier = r.object_identifier()?;
        let h245_address = pre
            .has(0)
            .then(|| TransportAddress::decode(r))
            .transpose()?;
        let source_address = if pre.has(1) { aliases(r)? } else { Vec::new() };
        let source_info = EndpointType::decode(r)?;
        let destination_address = if pre.has(2) { aliases(r)? } else { Vec::new() };
        let dest_call_signal_address = pre
            .has(3)
            .then(|| TransportAddress::decode(r))
            .transpose()?;
        let dest_extra_call_info = if pre.has(4) { aliases(r)? } else { Vec::new() };
        if pre.has(5) {
            Opaque::skip(r, &schema::H225_DEST_EXTRA_CRV)?;
        }
        let active_mc = r.boolean()?;
        let conference_id = Guid(r.fixed_octets()?);
        let conference_goal = ConferenceGoal::decode(r)?;
        if pre.has(6) {
            Opaque::skip(r, &schema::H225_QSERIES_OPTIONS)?;
        }
        let call_type = CallType::decode(r)?;
        let mut m = Setup {
            protocol_identifier,
            h245_address,
            source_address,
            source_info,
            destination_address,
            dest_call_signal_address,
            dest_extra_call_info,
            active_mc,
            conference_id,
            conference_goal,
            call_type,
            ..Setup::new(Guid::default(), Guid::default(), EndpointType::default())
        };
        if pre.extended {
            let e = r.extensions()?;
            m.source_call_signal_address = ext(r, &e, 0, TransportAddress::decode)?;
            m.call_identifier = ext(r, &e, 2, call_identifier)?.unwrap_or_default();
            m.fast_start = ext(r, &e, 6, octet_strings)?.unwrap_or_default();
            m.media_wait_for_connect = ext_bool(r, &e, 7)?;
            m.can_overlap_send = ext_bool(r, &e, 8)?;
            m.multiple_calls = ext_bool(r, &e, 10)?;
            m.maintain_connection = ext_bool(r, &e, 11)?;
            m.parallel_h245_control = ext(r, &e, 24, octet_strings)?.unwrap_or_default();
        }
        Ok(m)
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(
            Some(true),
            &[
                self.h245_address.is_some(),
                !self.source_address.is_empty(),
                !self.destination_address.is_empty(),
                self.dest_call_signal_address.is_some(),
                !self.dest_extra_call_info.is_empty(),
                false,
                false,
            ],
        );
        w.object_identifier(&self.protocol_identifier);
        if let Some(a) = &self.h245_address {
            a.encode(w);
        }
        if !self.source_address.is_empty() {
            write_aliases(w, &self.source_address);
        }
        self.source_info.encode(w);
        if !self.destination_address.is_empty() {
            write_aliases(w, &self.destination_address);
        }
        if let Some(a) = &self.dest_call_signal_address {
            a.encode(w);
        }
        if !self.dest_extra_call_info.is_empty() {
            write_aliases(w, &self.dest_extra_call_info);
        }
        w.boolean(self.active_mc);
        w.octet_string(&self.conference_id.0, Size::fixed(16));
        self.conference_goal.encode(w);
        self.call_type.encode(w);
        let mut e = Vec::new();
        if let Some(a) = &self.source_call_signal_address {
            e.push((0, Writer::complete(|w| a.encode(w))));
        }
        e.push((2, call_identifier_bytes(&self.call_identifier)));
        if !self.fast_start.is_empty() {
            e.push((
                6,
                Writer::complete(|w| write_octet_strings(w, &self.fast_start)),
            ));
        }
        e.push((7, bool_bytes(self.media_wait_for_connect)));
        e.push((8, bool_bytes(self.can_overlap_send)));
        e.push((10, bool_bytes(self.multiple_calls)));
        e.push((11, bool_bytes(self.maintain_connection)));
        if !self.parallel_h245_control.is_empty() {
            e.push((
                24,
                Writer::complete(|w| write_octet_strings(w, &self.parallel_h245_control)),
            ));
        }
        w.extensions(28, &e);
    }
}

/// The fields Call Proceeding and Alerting share (and Progress would).
macro_rules! provisional {
    ($(#[$doc:meta])* $name:ident, $count:expr, fast_connect_refused = $fcr:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            pub protocol_identifier: Oid,
            pub destination_info: EndpointType,
            pub h245_address: Option<TransportAddress>,
            pub call_identifier: Guid,
            /// Accepted Fast Connect channels (PER-encoded OpenLogicalChannels).
            pub fast_start: Vec<Vec<u8>>,
            pub multiple_calls: bool,
            pub maintain_connection: bool,
            /// The callee refuses Fast Connect (H.245 procedures follow).
            pub fast_connect_refused: bool,
        }

        impl $name {
            pub fn new(call_identifier: Guid, destination_info: EndpointType) -> $name {
                $name {
                    protocol_identifier: protocol_identifier(),
                    destination_info,
                    h245_address: None,
                    call_identifier,
                    fast_start: Vec::new(),
                    multiple_calls: false,
                    maintain_connection: false,
                    fast_connect_refused: false,
                }
            }

            fn decode(r: &mut Reader<'_>) -> Result<$name> {
                let pre = r.preamble(true, 1)?;
                let protocol_identifier = r.object_identifier()?;
                let destination_info = EndpointType::decode(r)?;
                let h245_address = pre.has(0).then(|| TransportAddress::decode(r)).transpose()?;
                let mut m = $name {
                    protocol_identifier,
                    destination_info,
                    h245_address,
                    ..$name::new(Guid::default(), EndpointType::default())
                };
                if pre.extended {
                    let e = r.extensions()?;
                    m.call_identifier = ext(r, &e, 0, call_identifier)?.unwrap_or_default();
                    m.fast_start = ext(r, &e, 4, octet_strings)?.unwrap_or_default();
                    m.multiple_calls = ext_bool(r, &e, 5)?;
                    m.maintain_connection = ext_bool(r, &e, 6)?;
                    m.fast_connect_refused = e.get($fcr).is_some();
                }
                Ok(m)
            }

            fn encode(&self, w: &mut Writer) {
                w.preamble(Some(true), &[self.h245_address.is_some()]);
                w.object_identifier(&self.protocol_identifier);
                self.destination_info.encode(w);
                if let Some(a) = &self.h245_address {
                    a.encode(w);
                }
                let mut e = vec![(0, call_identifier_bytes(&self.call_identifier))];
                if !self.fast_start.is_empty() {
                    e.push((4, Writer::complete(|w| write_octet_strings(w, &self.fast_start))));
                }
                e.push((5, bool_bytes(self.multiple_calls)));
                e.push((6, bool_bytes(self.maintain_connection)));
                if self.fast_connect_refused {
                    e.push(($fcr, vec![0]));
                }
                w.extensions($count, &e);
            }
        }
    };
}

provisional!(
    /// CallProceeding-UUIE.
    CallProceeding,
    9,
    fast_connect_refused = 7
);
provisional!(
    /// Alerting-UUIE.
    Alerting,
    15,
    fast_connect_refused = 10
);

/// Connect-UUIE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub protocol_identifier: Oid,
    pub h245_address: Option<TransportAddress>,
    pub destination_info: EndpointType,
    pub conference_id: Guid,
    pub call_identifier: Guid,
    /// Accepted Fast Connect channels (PER-encoded OpenLogicalChannels).
    pub fast_start: Vec<Vec<u8>>,
    pub multiple_calls: bool,
    pub maintain_connection: bool,
    pub fast_connect_refused: bool,
}

impl Connect {
    pub fn new(
        conference_id: Guid,
        call_identifier: Guid,
        destination_info: EndpointType,
    ) -> Connect {
        Connect {
            protocol_identifier: protocol_identifier(),
            h245_address: None,
            destination_info,
            conference_id,
            call_identifier,
            fast_start: Vec::new(),
            multiple_calls: false,
            maintain_connection: false,
            fast_connect_refused: false,
        }
    }

    /// Answers Fast Connect with `channels` (see
    /// [`h245::OpenLogicalChannel::fast_start_answer`]).
    pub fn with_fast_start(mut self, channels: &[h245::OpenLogicalChannel]) -> Connect {
        self.fast_start = channels
            .iter()
            .map(h245::OpenLogicalChannel::encode)
            .collect();
        self
    }

    fn decode(r: &mut Reader<'_>) -> Result<Connect> {
        let pre = r.preamble(true, 1)?;
        let protocol_identifier = r.object_identifier()?;
        let h245_address = pre
            .has(0)
            .then(|| TransportAddress::decode(r))
            .transpose()?;
        let destination_info = EndpointType::decode(r)?;
        let conference_id = Guid(r.fixed_octets()?);
        let mut m = Connect {
            protocol_identifier,
            h245_address,
            ..Connect::new(conference_id, Guid::default(), destination_info)
        };
        if pre.extended {
            let e = r.extensions()?;
            m.call_identifier = ext(r, &e, 0, call_identifier)?.unwrap_or_default();
            m.fast_start = ext(r, &e, 4, octet_strings)?.unwrap_or_default();
            m.multiple_calls = ext_bool(r, &e, 5)?;
            m.maintain_connection = ext_bool(r, &e, 6)?;
            m.fast_connect_refused = e.get(11).is_some();
        }
        Ok(m)
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(Some(true), &[self.h245_address.is_some()]);
        w.object_identifier(&self.protocol_identifier);
        if let Some(a) = &self.h245_address {
            a.encode(w);
        }
        self.destination_info.encode(w);
        w.octet_string(&self.conference_id.0, Size::fixed(16));
        let mut e = vec![(0, call_identifier_bytes(&self.call_identifier))];
        if !self.fast_start.is_empty() {
            e.push((
                4,
                Writer::complete(|w| write_octet_strings(w, &self.fast_start)),
            ));
        }
        e.push((5, bool_bytes(self.multiple_calls)));
        e.push((6, bool_bytes(self.maintain_connection)));
        if self.fast_connect_refused {
            e.push((11, vec![0]));
        }
        w.extensions(16, &e);
    }
}

/// Information-UUIE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Information {
    pub protocol_identifier: Oid,
    pub call_identifier: Guid,
}

impl Information {
    pub fn new(call_identifier: Guid) -> Information {
        Information {
            protocol_identifier: protocol_identifier(),
            call_identifier,
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Information> {
        let pre = r.preamble(true, 0)?;
        let protocol_identifier = r.object_identifier()?;
        let mut call_id = Guid::default();
        if pre.extended {
            let e = r.extensions()?;
            call_id = ext(r, &e, 0, call_identifier)?.unwrap_or_default();
        }
        Ok(Information {
            protocol_identifier,
            call_identifier: call_id,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(Some(true), &[]);
        w.object_identifier(&self.protocol_identifier);
        w.extensions(6, &[(0, call_identifier_bytes(&self.call_identifier))]);
    }
}

/// ReleaseCompleteReason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseCompleteReason {
    NoBandwidth,
    GatekeeperResources,
    UnreachableDestination,
    DestinationRejection,
    InvalidRevision,
    NoPermission,
    UnreachableGatekeeper,
    GatewayResources,
    BadFormatAddress,
    AdaptiveBusy,
    /// The called party is busy.
    InConf,
    UndefinedReason,
    FacilityCallDeflection,
    SecurityDenied,
    CalledPartyNotRegistered,
    CallerNotRegistered,
    NewConnectionNeeded,
    ReplaceWithConferenceInvite(Guid),
    GenericDataReason,
    NeededFeatureNotSupported,
    TunnelledSignallingRejected,
    InvalidCid,
    HopCountExceeded,
    /// nonStandardReason, securityError, or a later alternative.
    Other(UnknownAlt),
}

static REASON_SHAPE: super::opaque::Node = super::opaque::Node::Choice {
    ext: true,
    root: &[&super::opaque::Node::Null; 12],
};

impl ReleaseCompleteReason {
    const ROOT: [ReleaseCompleteReason; 12] = [
        ReleaseCompleteReason::NoBandwidth,
        ReleaseCompleteReason::GatekeeperResources,
        ReleaseCompleteReason::UnreachableDestination,
        ReleaseCompleteReason::DestinationRejection,
        ReleaseCompleteReason::InvalidRevision,
        ReleaseCompleteReason::NoPermission,
        ReleaseCompleteReason::UnreachableGatekeeper,
        ReleaseCompleteReason::GatewayResources,
        ReleaseCompleteReason::BadFormatAddress,
        ReleaseCompleteReason::AdaptiveBusy,
        ReleaseCompleteReason::InConf,
        ReleaseCompleteReason::UndefinedReason,
    ];

    /// The NULL extension alternatives, by index (None where the
    /// alternative carries a value).
    fn ext_null(i: usize) -> Option<ReleaseCompleteReason> {
        use ReleaseCompleteReason as R;
        Some(match i {
            0 => R::FacilityCallDeflection,
            1 => R::SecurityDenied,
            2 => R::CalledPartyNotRegistered,
            3 => R::CallerNotRegistered,
            4 => R::NewConnectionNeeded,
            7 => R::GenericDataReason,
            8 => R::NeededFeatureNotSupported,
            9 => R::TunnelledSignallingRejected,
            10 => R::InvalidCid,
            12 => R::HopCountExceeded,
            _ => return None,
        })
    }

    fn decode(r: &mut Reader<'_>) -> Result<ReleaseCompleteReason> {
        Ok(match r.choice(12, true)? {
            Alt::Root(i) => ReleaseCompleteReason::ROOT
                .get(i)
                .cloned()
                .unwrap_or(ReleaseCompleteReason::UndefinedReason),
            Alt::Ext(6) => {
                let c = r.open_type()?;
                ReleaseCompleteReason::ReplaceWithConferenceInvite(Guid(
                    r.nested(c, |r| r.fixed_octets())?,
                ))
            }
            alt @ Alt::Ext(i) => match ReleaseCompleteReason::ext_null(i) {
                Some(reason) => {
                    r.open_type()?;
                    reason
                }
                None => ReleaseCompleteReason::Other(UnknownAlt::decode(r, &REASON_SHAPE, alt)?),
            },
        })
    }

    fn encode(&self, w: &mut Writer) {
        if let ReleaseCompleteReason::Other(u) = self {
            return u.encode(w, &REASON_SHAPE);
        }
        if let ReleaseCompleteReason::ReplaceWithConferenceInvite(g) = self {
            w.choice(Alt::Ext(6), 12, true);
            return w.open_type(&Writer::complete(|w| w.octet_string(&g.0, Size::fixed(16))));
        }
        if let Some(i) = ReleaseCompleteReason::ROOT.iter().position(|x| x == self) {
            return w.choice(Alt::Root(i), 12, true);
        }
        let i = (0..13)
            .find(|&i| ReleaseCompleteReason::ext_null(i).as_ref() == Some(self))
            .unwrap_or(0);
        w.choice(Alt::Ext(i), 12, true);
        w.open_type(&[0]);
    }
}

/// ReleaseComplete-UUIE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseComplete {
    pub protocol_identifier: Oid,
    pub reason: Option<ReleaseCompleteReason>,
    pub call_identifier: Guid,
}

impl ReleaseComplete {
    pub fn new(call_identifier: Guid, reason: Option<ReleaseCompleteReason>) -> ReleaseComplete {
        ReleaseComplete {
            protocol_identifier: protocol_identifier(),
            reason,
            call_identifier,
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<ReleaseComplete> {
        let pre = r.preamble(true, 1)?;
        let protocol_identifier = r.object_identifier()?;
        let reason = pre
            .has(0)
            .then(|| ReleaseCompleteReason::decode(r))
            .transpose()?;
        let mut call_id = Guid::default();
        if pre.extended {
            let e = r.extensions()?;
            call_id = ext(r, &e, 0, call_identifier)?.unwrap_or_default();
        }
        Ok(ReleaseComplete {
            protocol_identifier,
            reason,
            call_identifier: call_id,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(Some(true), &[self.reason.is_some()]);
        w.object_identifier(&self.protocol_identifier);
        if let Some(reason) = &self.reason {
            reason.encode(w);
        }
        w.extensions(11, &[(0, call_identifier_bytes(&self.call_identifier))]);
    }
}

/// FacilityReason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FacilityReason {
    RouteCallToGatekeeper,
    CallForwarded,
    RouteCallToMc,
    UndefinedReason,
    ConferenceListChoice,
    StartH245,
    NoH245,
    NewTokens,
    FeatureSetUpdate,
    ForwardedElements,
    TransportedInformation,
    Other(UnknownAlt),
}

static FACILITY_REASON_SHAPE: super::opaque::Node = super::opaque::Node::Choice {
    ext: true,
    root: &[&super::opaque::Node::Null; 4],
};

impl FacilityReason {
    const ALL: [FacilityReason; 11] = [
        FacilityReason::RouteCallToGatekeeper,
        FacilityReason::CallForwarded,
        FacilityReason::RouteCallToMc,
        FacilityReason::UndefinedReason,
        FacilityReason::ConferenceListChoice,
        FacilityReason::StartH245,
        FacilityReason::NoH245,
        FacilityReason::NewTokens,
        FacilityReason::FeatureSetUpdate,
        FacilityReason::ForwardedElements,
        FacilityReason::TransportedInformation,
    ];

    fn decode(r: &mut Reader<'_>) -> Result<FacilityReason> {
        Ok(match r.choice(4, true)? {
            Alt::Root(i) => FacilityReason::ALL
                .get(i)
                .cloned()
                .unwrap_or(FacilityReason::UndefinedReason),
            alt @ Alt::Ext(i) => match FacilityReason::ALL.get(4 + i) {
                Some(reason) => {
                    r.open_type()?;
                    reason.clone()
                }
                None => FacilityReason::Other(UnknownAlt::decode(r, &FACILITY_REASON_SHAPE, alt)?),
            },
        })
    }

    fn encode(&self, w: &mut Writer) {
        if let FacilityReason::Other(u) = self {
            return u.encode(w, &FACILITY_REASON_SHAPE);
        }
        let i = FacilityReason::ALL
            .iter()
            .position(|x| x == self)
            .unwrap_or(3);
        if i < 4 {
            w.choice(Alt::Root(i), 4, true);
        } else {
            w.choice(Alt::Ext(i - 4), 4, true);
            w.open_type(&[0]);
        }
    }
}

/// Facility-UUIE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facility {
    pub protocol_identifier: Oid,
    pub alternative_address: Option<TransportAddress>,
    pub alternative_alias_address: Vec<AliasAddress>,
    pub conference_id: Option<Guid>,
    pub reason: FacilityReason,
    pub call_identifier: Guid,
    pub h245_address: Option<TransportAddress>,
    pub fast_start: Vec<Vec<u8>>,
    pub multiple_calls: bool,
    pub maintain_connection: bool,
}

impl Facility {
    pub fn new(call_identifier: Guid, reason: FacilityReason) -> Facility {
        Facility {
            protocol_identifier: protocol_identifier(),
            alternative_address: None,
            alternative_alias_address: Vec::new(),
            conference_id: None,
            reason,
            call_identifier,
            h245_address: None,
            fast_start: Vec::new(),
            multiple_calls: false,
            maintain_connection: false,
        }
    }

    /// A Facility whose only purpose is to carry tunnelled H.245 (reason
    /// `undefinedReason`): `UserInformation::new(Body::Facility(..)).with_h245(..)`.
    pub fn tunnel(call_identifier: Guid) -> Facility {
        Facility::new(call_identifier, FacilityReason::UndefinedReason)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Facility> {
        let pre = r.preamble(true, 3)?;
        let protocol_identifier = r.object_identifier()?;
        let alternative_address = pre
            .has(0)
            .then(|| TransportAddress::decode(r))
            .transpose()?;
        let alternative_alias_address = if pre.has(1) { aliases(r)? } else { Vec::new() };
        let conference_id = pre.has(2).then(|| r.fixed_octets().map(Guid)).transpose()?;
        let reason = FacilityReason::decode(r)?;
        let mut m = Facility {
            protocol_identifier,
            alternative_address,
            alternative_alias_address,
            conference_id,
            ..Facility::new(Guid::default(), reason)
        };
        if pre.extended {
            let e = r.extensions()?;
            m.call_identifier = ext(r, &e, 0, call_identifier)?.unwrap_or_default();
            m.h245_address = ext(r, &e, 6, TransportAddress::decode)?;
            m.fast_start = ext(r, &e, 7, octet_strings)?.unwrap_or_default();
            m.multiple_calls = ext_bool(r, &e, 8)?;
            m.maintain_connection = ext_bool(r, &e, 9)?;
        }
        Ok(m)
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(
            Some(true),
            &[
                self.alternative_address.is_some(),
                !self.alternative_alias_address.is_empty(),
                self.conference_id.is_some(),
            ],
        );
        w.object_identifier(&self.protocol_identifier);
        if let Some(a) = &self.alternative_address {
            a.encode(w);
        }
        if !self.alternative_alias_address.is_empty() {
            write_aliases(w, &self.alternative_alias_address);
        }
        if let Some(g) = &self.conference_id {
            w.octet_string(&g.0, Size::fixed(16));
        }
        self.reason.encode(w);
        let mut e = vec![(0, call_identifier_bytes(&self.call_identifier))];
        if let Some(a) = &self.h245_address {
            e.push((6, Writer::complete(|w| a.encode(w))));
        }
        if !self.fast_start.is_empty() {
            e.push((
                7,
                Writer::complete(|w| write_octet_strings(w, &self.fast_start)),
            ));
        }
        e.push((8, bool_bytes(self.multiple_calls)));
        e.push((9, bool_bytes(self.maintain_connection)));
        w.extensions(16, &e);
    }
}

/// Extension addition `i`, decoded with `f` if present.
fn ext<'a, T>(
    r: &mut Reader<'a>,
    e: &Extensions<'a>,
    i: usize,
    f: impl FnOnce(&mut Reader<'a>) -> Result<T>,
) -> Result<Option<T>> {
    match e.get(i) {
        Some(c) => r.nested(c, f).map(Some),
        None => Ok(None),
    }
}

/// A BOOLEAN extension addition (false when absent).
fn ext_bool<'a>(r: &mut Reader<'a>, e: &Extensions<'a>, i: usize) -> Result<bool> {
    Ok(ext(r, e, i, |r| r.boolean())?.unwrap_or(false))
}

fn bool_bytes(b: bool) -> Vec<u8> {
    Writer::complete(|w| w.boolean(b))
}

/// CallIdentifier ::= SEQUENCE { guid GloballyUniqueID, ... }
fn call_identifier(r: &mut Reader<'_>) -> Result<Guid> {
    let pre = r.preamble(true, 0)?;
    let g = Guid(r.fixed_octets()?);
    if pre.extended {
        r.extensions()?;
    }
    Ok(g)
}

fn call_identifier_bytes(g: &Guid) -> Vec<u8> {
    Writer::complete(|w| {
        w.preamble(Some(false), &[]);
        w.octet_string(&g.0, Size::fixed(16));
    })
}

/// SEQUENCE OF OCTET STRING (fastStart, h245Control).
fn octet_strings(r: &mut Reader<'_>) -> Result<Vec<Vec<u8>>> {
    let n = r.count(Size::UNBOUNDED)?;
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(r.octet_string(Size::UNBOUNDED)?);
    }
    Ok(out)
}

fn write_octet_strings(w: &mut Writer, items: &[Vec<u8>]) {
    let n = w.count(items.len(), Size::UNBOUNDED);
    for item in items.iter().take(n) {
        w.octet_string(item, Size::UNBOUNDED);
    }
}

/// SEQUENCE OF AliasAddress.
fn aliases(r: &mut Reader<'_>) -> Result<Vec<AliasAddress>> {
    let n = r.count(Size::UNBOUNDED)?;
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(AliasAddress::decode(r)?);
    }
    Ok(out)
}

fn write_aliases(w: &mut Writer, items: &[AliasAddress]) {
    let n = w.count(items.len(), Size::UNBOUNDED);
    for item in items.iter().take(n) {
        item.encode(w);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::h323::per::PerError;
    use crate::h323::per::testing::{hex, unhex};
    use crate::h323::test_vectors;
    use std::net::SocketAddr;

    fn guid(seed: u8) -> Guid {
        Guid(std::array::from_fn(|i| seed.wrapping_add(i as u8)))
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ulaw_proposals() -> Vec<h245::OpenLogicalChannel> {
        use h245::*;
        let audio = DataType::Audio(AudioCapability::G711Ulaw64k(20));
        let receive = OpenLogicalChannel::receive_proposal(
            1,
            audio.clone(),
            1,
            addr("192.0.2.1:40000"),
            addr("192.0.2.1:40001"),
            None,
        );
        let send = OpenLogicalChannel::new(2, audio, 1, addr("192.0.2.1:40001"));
        vec![receive, send]
    }

    /// Our messages of a call, as Q.931 with the H.225.0 body: the bytes
    /// checked with tshark (see `proto/tests/h323/tshark_check.sh`).
    fn vectors() -> Vec<(&'static str, Vec<u8>)> {
        use h245::*;
        let conf = guid(0x10);
        let call = guid(0xa0);
        let mut setup = Setup::new(conf, call, EndpointType::mcu());
        setup.source_address = vec![AliasAddress::H323Id("Tandem MCU".into())];
        setup.destination_address = vec![AliasAddress::DialedDigits("4711".into())];
        setup.dest_call_signal_address = Some(addr("192.0.2.10:1720").into());
        setup.source_call_signal_address = Some(addr("192.0.2.1:1720").into());
        setup.fast_start = ulaw_proposals()
            .iter()
            .map(OpenLogicalChannel::encode)
            .collect();
        setup.parallel_h245_control = vec![
            TerminalCapabilitySet::ours(1, 20_000, true)
                .to_message()
                .encode(),
            MasterSlaveDetermination {
                terminal_type: 190,
                status_determination_number: 0x12_3456,
            }
            .to_message()
            .encode(),
        ];
        let setup = UserInformation::new(Body::Setup(setup)).tunnelling(true);

        let proceeding = UserInformation::new(Body::CallProceeding(CallProceeding::new(
            call,
            EndpointType::mcu(),
        )))
        .tunnelling(true);
        let alerting =
            UserInformation::new(Body::Alerting(Alerting::new(call, EndpointType::mcu())))
                .tunnelling(true);

        let answers: Vec<OpenLogicalChannel> = ulaw_proposals()
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.fast_start_answer(
                    11 + i as u16,
                    addr("198.51.100.7:50000"),
                    addr("198.51.100.7:50001"),
                )
            })
            .collect();
        let connect = UserInformation::new(Body::Connect(
            Connect::new(conf, call, EndpointType::mcu()).with_fast_start(&answers),
        ))
        .with_h245(&[
            TerminalCapabilitySet::ours(1, 20_000, true).to_message(),
            MasterSlaveDetermination {
                terminal_type: 190,
                status_determination_number: 7,
            }
            .to_message(),
        ]);

        let h264 = H264Capability::hd720p30(20_000);
        let channels = UserInformation::new(Body::Facility(Facility::tunnel(call))).with_h245(&[
            Message::Response(Response::TerminalCapabilitySetAck { sequence_number: 1 }),
            Message::Response(Response::MasterSlaveDeterminationAck(MsdDecision::Slave)),
            OpenLogicalChannel::presentation(3, &h264, 0, 109, addr("198.51.100.7:50021"))
                .to_message(),
            OpenLogicalChannelAck::new(3, 32, addr("192.0.2.1:40020"), addr("192.0.2.1:40021"))
                .to_message(),
            Message::Response(Response::OpenLogicalChannelReject {
                forward_logical_channel_number: 4,
                cause: OlcRejectCause::DataTypeNotSupported,
            }),
            Message::Response(Response::TerminalCapabilitySetReject {
                sequence_number: 2,
                cause: TcsRejectCause::TableEntryCapacityExceeded(Some(4)),
            }),
        ]);
        let token = UserInformation::new(Body::Facility(Facility::tunnel(call))).with_h245(&[
            H239Message::PresentationTokenRequest {
                terminal_label: 1,
                channel_id: 3,
                symmetry_breaking: 99,
            }
            .to_message(),
            H239Message::PresentationTokenResponse {
                acknowledge: true,
                terminal_label: 1,
                channel_id: 3,
            }
            .to_message(),
            H239Message::PresentationTokenResponse {
                acknowledge: false,
                terminal_label: 1,
                channel_id: 3,
            }
            .to_message(),
            H239Message::PresentationTokenRelease {
                terminal_label: 1,
                channel_id: 3,
            }
            .to_message(),
            H239Message::PresentationTokenIndicateOwner {
                terminal_label: 1,
                channel_id: 3,
            }
            .to_message(),
            H239Message::FlowControlReleaseRequest {
                channel_id: 3,
                bit_rate: 10_000,
            }
            .to_message(),
            H239Message::FlowControlReleaseResponse {
                acknowledge: true,
                channel_id: 3,
            }
            .to_message(),
        ]);
        let misc = UserInformation::new(Body::Facility(Facility::tunnel(call))).with_h245(&[
            MiscellaneousCommand::video_fast_update(3).to_message(),
            UserInput::Alphanumeric("5".into()).to_message(),
            UserInput::Signal(Signal {
                signal_type: '#',
                duration: Some(100),
                rtp: None,
            })
            .to_message(),
            CloseLogicalChannel::new(3).to_message(),
            Message::Response(Response::CloseLogicalChannelAck {
                forward_logical_channel_number: 3,
            }),
            Message::Request(Request::RoundTripDelay(5)),
            Message::Response(Response::RoundTripDelay(5)),
            Message::Command(Command::FlowControl(FlowControlCommand {
                scope: FlowControlScope::LogicalChannel(3),
                maximum_bit_rate: Some(5_000),
            })),
            Message::Indication(Indication::FunctionNotSupported(
                FunctionNotSupported::unknown(
                    &Message::Request(Request::RoundTripDelay(9)).encode(),
                ),
            )),
            Message::Command(Command::EndSession(EndSessionCommand::Disconnect)),
        ]);
        let empty = UserInformation::new(Body::Empty).with_h245(&[Message::Command(
            Command::EndSession(EndSessionCommand::Disconnect),
        )]);
        let release = UserInformation::new(Body::ReleaseComplete(ReleaseComplete::new(
            call,
            Some(ReleaseCompleteReason::UndefinedReason),
        )));
        let busy = UserInformation::new(Body::ReleaseComplete(ReleaseComplete::new(
            call,
            Some(ReleaseCompleteReason::InConf),
        )));
        let q = |ui: &UserInformation, from_destination| {
            ui.to_q931(0x1234, from_destination).to_bytes()
        };
        vec![
            ("setup", q(&setup, false)),
            ("call_proceeding", q(&proceeding, true)),
            ("alerting", q(&alerting, true)),
            ("connect", q(&connect, true)),
            ("facility_channels", q(&channels, true)),
            ("facility_token", q(&token, true)),
            ("facility_misc", q(&misc, true)),
            ("facility_empty", q(&empty, true)),
            ("release_complete", q(&release, true)),
            ("release_complete_busy", q(&busy, true)),
        ]
    }

    /// Prints the vectors for checking with tshark:
    /// `cargo test -p tandem-proto --lib h323::h225::tests::print_vectors -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn print_vectors() {
        for (name, b) in vectors() {
            println!("{name} {}", hex(&b));
        }
    }

    fn decode_q931(bytes: &[u8]) -> UserInformation {
        let q = q931::Message::parse(bytes).unwrap();
        let ui = UserInformation::from_q931(&q).unwrap().unwrap();
        assert_eq!(ui.body.q931_type(), q.message_type);
        ui
    }

    #[test]
    fn our_messages_are_the_bytes_checked_with_tshark_and_pycrate() {
        let ours = vectors();
        assert_eq!(ours.len(), test_vectors::OURS.len());
        for ((name, bytes), (vname, vhex)) in ours.iter().zip(test_vectors::OURS) {
            assert_eq!(name, &vname);
            assert_eq!(hex(bytes), vhex, "{name}");
        }
    }

    #[test]
    fn decodes_a_real_setup_with_fast_start_from_ekiga() {
        let ui = decode_q931(&unhex(test_vectors::EKIGA_SETUP));
        assert!(ui.h245_tunnelling);
        let Body::Setup(s) = &ui.body else {
            panic!("{:?}", ui.body)
        };
        assert_eq!(protocol_version(&s.protocol_identifier), Some(4));
        assert_eq!(
            s.source_address,
            [AliasAddress::H323Id("Jon Oberheide".into())]
        );
        assert_eq!(
            s.destination_address,
            [AliasAddress::H323Id("tcp$h323.voxgratia.org".into())]
        );
        assert_eq!(
            s.dest_call_signal_address,
            Some(addr("66.135.35.44:1720").into())
        );
        assert_eq!(
            s.source_call_signal_address,
            Some(addr("10.0.1.122:30000").into())
        );
        let vendor = s.source_info.vendor.as_ref().unwrap();
        assert_eq!((vendor.t35_country_code, vendor.manufacturer_code), (9, 61));
        assert_eq!(vendor.product_id.as_deref(), Some(&b"ekiga\0\0"[..]));
        assert!(s.source_info.terminal && !s.source_info.mc);
        assert_eq!(s.conference_id.0[..4], [0x6a, 0x8b, 0x1d, 0x0c]);
        assert_eq!(s.call_identifier.0[..4], [0x5e, 0x88, 0x1d, 0x0c]);
        assert_eq!(
            (s.conference_goal.clone(), s.call_type),
            (ConferenceGoal::Create, CallType::PointToPoint)
        );
        assert!(!s.media_wait_for_connect && !s.can_overlap_send);

        let proposals: Vec<h245::OpenLogicalChannel> =
            s.fast_start_channels().map(|c| c.unwrap()).collect();
        assert_eq!(proposals.len(), 14);
        // Caller-receive proposals on channel 1 (Speex, iLBC, GSM, G.711),
        // each followed by the matching caller-send proposal.
        let receive: Vec<_> = proposals
            .iter()
            .filter(|p| p.is_reverse_proposal())
            .collect();
        assert_eq!(receive.len(), 7);
        assert!(
            receive
                .iter()
                .all(|p| p.forward_logical_channel_number == 1)
        );
        let last = proposals.last().unwrap();
        assert_eq!(last.forward_logical_channel_number, 107);
        assert_eq!(
            last.forward.data_type,
            h245::DataType::Audio(h245::AudioCapability::G711Alaw64k(30))
        );
        let (_, rtp) = proposals[12].media();
        let rtp = rtp.unwrap();
        assert_eq!(rtp.session_id, 1);
        assert_eq!(
            rtp.media_channel
                .as_ref()
                .and_then(h245::TransportAddress::socket_addr),
            Some(addr("152.160.38.65:5002"))
        );
        assert_eq!(
            proposals[12].reverse.as_ref().unwrap().data_type,
            h245::DataType::Audio(h245::AudioCapability::G711Alaw64k(30))
        );

        let h245: Vec<h245::Message> = ui.h245_messages().map(|m| m.unwrap()).collect();
        assert_eq!(s.parallel_h245_control.len(), 2);
        let h245::Message::Request(h245::Request::TerminalCapabilitySet(tcs)) = &h245[0] else {
            panic!("{:?}", h245[0])
        };
        assert_eq!(tcs.sequence_number, 1);
        assert_eq!(tcs.protocol_identifier.to_string(), "0.0.8.245.0.11");
        assert_eq!(tcs.capability_table.len(), 12);
        assert_eq!(
            tcs.capability(6),
            Some(&h245::Capability::ReceiveAudio(
                h245::AudioCapability::G711Ulaw64k(240)
            ))
        );
        // H.261 is carried, not modelled.
        assert!(matches!(
            tcs.capability(8),
            Some(h245::Capability::ReceiveVideo(
                h245::VideoCapability::Other(_)
            ))
        ));
        assert_eq!(
            tcs.capability(12),
            Some(&h245::Capability::ReceiveUserInput(
                h245::UserInputCapability::Dtmf
            ))
        );
        let Some(h245::MultiplexCapability::H2250(mux)) = &tcs.multiplex_capability else {
            panic!()
        };
        assert_eq!(mux.maximum_audio_delay_jitter, 500);
        assert!(mux.t120_dynamic_port);
        assert_eq!(
            tcs.capability_descriptors[0].simultaneous_capabilities[0],
            [1, 2, 3, 4, 5, 6, 7]
        );
        assert_eq!(
            h245[1],
            h245::MasterSlaveDetermination {
                terminal_type: 50,
                status_determination_number: 10_944_332,
            }
            .to_message()
        );
    }

    #[test]
    fn ekigas_h245_encodes_back_byte_for_byte() {
        // Its Setup does not quite: OPAL sizes extension bitmaps to the
        // last addition present, we to all the additions of the type (both
        // are valid PER). The H.245 inside has no such freedom.
        let ui = decode_q931(&unhex(test_vectors::EKIGA_SETUP));
        if let Body::Setup(s) = &ui.body {
            for (raw, olc) in s.fast_start.iter().zip(s.fast_start_channels()) {
                assert_eq!(hex(&olc.unwrap().encode()), hex(raw));
            }
            for raw in &s.parallel_h245_control {
                assert_eq!(hex(&h245::Message::decode(raw).unwrap().encode()), hex(raw));
            }
        }
    }

    #[test]
    fn decodes_what_it_does_not_model_from_an_independent_encoder() {
        let v: Vec<UserInformation> = test_vectors::PYCRATE
            .iter()
            .map(|(_, h)| decode_q931(&unhex(h)))
            .collect();
        let Body::Setup(s) = &v[0].body else { panic!() };
        assert_eq!(protocol_version(&s.protocol_identifier), Some(6));
        assert_eq!(
            s.h245_address
                .as_ref()
                .and_then(TransportAddress::socket_addr),
            Some(SocketAddr::new(
                std::net::Ipv6Addr::from(std::array::from_fn::<u8, 16, _>(|i| i as u8)).into(),
                1721
            ))
        );
        assert_eq!(
            s.source_address[0],
            AliasAddress::H323Id("Salle \u{e9}t\u{e9}".into())
        );
        assert_eq!(
            s.source_address[1],
            AliasAddress::Url("h323:room@example.org".into())
        );
        assert_eq!(
            s.source_address[2],
            AliasAddress::Email("room@example.org".into())
        );
        assert!(matches!(s.source_address[3], AliasAddress::Other(_)));
        assert!(s.source_info.gateway && s.source_info.terminal && !s.source_info.mcu);
        assert_eq!(
            s.source_info.vendor.as_ref().unwrap().version_id.as_deref(),
            Some(&b"1.0"[..])
        );
        assert_eq!(
            s.destination_address[0],
            AliasAddress::DialedDigits("4711#*,0".into())
        );
        assert_eq!(
            s.destination_address[1],
            AliasAddress::Transport(addr("198.51.100.7:1720").into())
        );
        assert!(matches!(
            s.dest_call_signal_address,
            Some(TransportAddress::Other(_))
        ));
        assert_eq!(
            s.dest_extra_call_info,
            [AliasAddress::H323Id("extra".into())]
        );
        assert!(s.active_mc);
        assert_eq!(
            (s.conference_goal.clone(), s.call_type),
            (ConferenceGoal::Join, CallType::NToN)
        );
        assert_eq!(s.call_identifier.0[0], 0x50);
        assert!(
            s.media_wait_for_connect
                && s.can_overlap_send
                && s.multiple_calls
                && s.maintain_connection
        );
        assert_eq!(s.fast_start.len(), 1);
        assert!(v[0].h245_tunnelling);
        assert_eq!(v[0].h245_control.len(), 16);
        assert!(v[0].h245_messages().all(|m| m.is_ok()));

        let Body::Unsupported(status) = &v[1].body else {
            panic!()
        };
        assert_eq!(status.alternative(), Alt::Ext(2));
        assert_eq!(v[1].body.q931_type(), q931::MessageType::Status);
        let Body::ReleaseComplete(rc) = &v[2].body else {
            panic!()
        };
        assert_eq!(
            rc.reason,
            Some(ReleaseCompleteReason::ReplaceWithConferenceInvite(Guid(
                std::array::from_fn(|i| 0x30 + i as u8)
            )))
        );
        let Body::Facility(f) = &v[3].body else {
            panic!()
        };
        assert_eq!(f.reason, FacilityReason::ForwardedElements);
        assert_eq!(
            f.alternative_alias_address,
            [AliasAddress::DialedDigits("100".into())]
        );
        assert_eq!(f.h245_address, Some(addr("192.0.2.5:30001").into()));
        assert!(f.maintain_connection && !f.multiple_calls);
    }

    #[test]
    fn every_message_decodes_to_what_its_encoding_decodes_to() {
        for (name, bytes) in test_vectors::all() {
            let ui = decode_q931(&bytes);
            let again = UserInformation::decode(&ui.encode()).unwrap();
            assert_eq!(again, ui, "{name}");
            for m in ui.h245_messages() {
                let m = m.unwrap();
                assert_eq!(
                    h245::Message::decode(&m.encode()).unwrap(),
                    m,
                    "{name}: {}",
                    m.name()
                );
            }
            if let Body::Setup(s) = &ui.body {
                for c in s.fast_start_channels() {
                    let c = c.unwrap();
                    assert_eq!(
                        h245::OpenLogicalChannel::decode(&c.encode()).unwrap(),
                        c,
                        "{name}"
                    );
                }
            }
        }
    }

    /// Decodes `bytes` as a Q.931 message and everything inside it; what
    /// decodes must encode to bytes that decode the same. Never panics.
    fn decode_all(bytes: &[u8]) {
        let Ok(q) = q931::Message::parse(bytes) else {
            return;
        };
        let Some(Ok(ui)) = UserInformation::from_q931(&q) else {
            return;
        };
        assert_eq!(UserInformation::decode(&ui.encode()).as_ref(), Ok(&ui));
        for m in ui.h245_messages().flatten() {
            assert_eq!(h245::Message::decode(&m.encode()).as_ref(), Ok(&m));
        }
        if let Body::Setup(s) = &ui.body {
            for c in s.fast_start_channels().flatten() {
                assert_eq!(
                    h245::OpenLogicalChannel::decode(&c.encode()).as_ref(),
                    Ok(&c)
                );
            }
        }
    }

    #[test]
    fn truncations_and_byte_changes_return_an_error_or_a_value() {
        for (_, bytes) in test_vectors::all() {
            for n in 0..bytes.len() {
                decode_all(&bytes[..n]);
            }
            let mut m = bytes.clone();
            for i in 0..m.len() {
                let orig = m[i];
                for x in [
                    0x00,
                    0xff,
                    orig ^ 0x01,
                    orig ^ 0x80,
                    orig ^ 0x10,
                    orig.wrapping_add(1),
                ] {
                    m[i] = x;
                    decode_all(&m);
                }
                m[i] = orig;
            }
        }
    }

    #[test]
    fn the_user_user_body_itself_survives_every_truncation_and_change() {
        // The same on the PER bytes alone (the Q.931 wrapper catches some).
        for (_, bytes) in test_vectors::all() {
            let q = q931::Message::parse(&bytes).unwrap();
            let uu = q.user_user().unwrap().to_vec();
            for n in 0..uu.len() {
                if let Ok(ui) = UserInformation::decode(&uu[..n]) {
                    assert_eq!(UserInformation::decode(&ui.encode()), Ok(ui));
                }
            }
            let mut m = uu.clone();
            for i in 0..m.len() {
                let orig = m[i];
                for bit in 0..8 {
                    m[i] = orig ^ (1 << bit);
                    if let Ok(ui) = UserInformation::decode(&m) {
                        assert_eq!(UserInformation::decode(&ui.encode()), Ok(ui));
                    }
                }
                m[i] = orig;
            }
        }
    }

    #[test]
    fn hostile_counts_are_refused_before_allocating() {
        // A Facility whose h245Control claims 16383 messages.
        let mut w = Writer::new();
        w.preamble(Some(false), &[false]);
        w.preamble(Some(true), &[false]);
        Body::Empty.encode(&mut w);
        w.extensions(9, &[(2, Writer::complete(|w| w.general_length(16_383)))]);
        assert_eq!(UserInformation::decode(&w.finish()), Err(PerError::TooMany));
        // An alias list of 1000 with nothing behind it.
        let mut w = Writer::new();
        w.general_length(1000);
        assert_eq!(
            aliases(&mut Reader::new(&w.finish())),
            Err(PerError::Truncated)
        );
    }

    #[test]
    fn fast_start_answers_carry_our_addresses() {
        let p = ulaw_proposals();
        let rtp = addr("198.51.100.7:50000");
        let rtcp = addr("198.51.100.7:50001");
        // The caller's receive direction: our channel number, our RTCP,
        // the caller's RTP address stays.
        let a = p[0].fast_start_answer(11, rtp, rtcp);
        assert_eq!(a.forward_logical_channel_number, 11);
        let (dt, params) = a.media();
        assert_eq!(
            dt,
            &h245::DataType::Audio(h245::AudioCapability::G711Ulaw64k(20))
        );
        let params = params.unwrap();
        assert_eq!(params.media_channel, Some(addr("192.0.2.1:40000").into()));
        assert_eq!(params.media_control_channel, Some(rtcp.into()));
        // The caller's send direction: where we receive.
        let b = p[1].fast_start_answer(12, rtp, rtcp);
        assert_eq!(b.forward_logical_channel_number, 2);
        let params = b.media().1.unwrap();
        assert_eq!(params.media_channel, Some(rtp.into()));
        assert_eq!(params.media_control_channel, Some(rtcp.into()));
    }

    #[test]
    fn builders_fill_in_what_h225_requires() {
        let call = guid(1);
        let ui = UserInformation::new(Body::ReleaseComplete(ReleaseComplete::new(call, None)));
        let q = ui.to_q931(7, true);
        assert_eq!(q.message_type, q931::MessageType::ReleaseComplete);
        assert!(q.from_destination);
        let back = decode_q931(&q.to_bytes());
        assert_eq!(back, ui);
        let Body::ReleaseComplete(rc) = back.body else {
            panic!()
        };
        assert_eq!(rc.call_identifier, call);
        assert_eq!(protocol_version(&rc.protocol_identifier), Some(4));
        // A tunnel Facility carries the messages and says so.
        let msd = h245::MasterSlaveDetermination {
            terminal_type: 190,
            status_determination_number: 1,
        }
        .to_message();
        let ui = UserInformation::new(Body::Facility(Facility::tunnel(call)))
            .with_h245(std::slice::from_ref(&msd));
        assert!(ui.h245_tunnelling);
        let back = UserInformation::decode(&ui.encode()).unwrap();
        assert_eq!(back.h245_messages().collect::<Vec<_>>(), [Ok(msd)]);
        assert!(EndpointType::mcu().mc);
    }
}
