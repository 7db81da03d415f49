//! H.245 (module MULTIMEDIA-SYSTEM-CONTROL) messages in aligned PER, as far
//! as a gatekeeper-less H.323 call with Fast Connect, tunnelled H.245 and
//! the H.239 presentation token needs them; plus the H.239 generic
//! messages ([`H239Message`]) and the H.241 H.264 capability
//! ([`H264Capability`]) on top of GenericMessage and GenericCapability.
//!
//! Every message decodes: an alternative we do not model becomes
//! `Unsupported` (keeping its bits, so the node can answer it with a
//! FunctionNotSupported carrying the original bytes, or a reject), unknown
//! capabilities and data types become `Other` (kept, and encoded back as
//! they came), and unknown extension additions are skipped by their
//! open-type length.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::opaque::{Node, Opaque, UnknownAlt};
use super::per::{Alt, BitTail, Extensions, Oid, Reader, Result, Size, Writer};
use super::schema;

/// `protocolIdentifier` of H.245 version 13: {itu-t(0) recommendation(0)
/// h(8) h245(245) version(0) 13}.
pub const PROTOCOL_V13: [u32; 6] = [0, 0, 8, 245, 0, 13];

/// The protocol identifier we send in a TerminalCapabilitySet.
pub fn protocol_identifier() -> Oid {
    Oid::new(&PROTOCOL_V13)
}

/// A CHOICE shape with `n` root alternatives we model ourselves: enough
/// for [`UnknownAlt`] to write an extension alternative back.
macro_rules! shape {
    ($n:expr) => {
        Node::Choice {
            ext: true,
            root: &[&Node::Null; $n],
        }
    };
}

/// Decoding and encoding of a modelled type.
trait Per: Sized {
    fn decode(r: &mut Reader<'_>) -> Result<Self>;
    fn encode(&self, w: &mut Writer);
}

fn list<T: Per>(r: &mut Reader<'_>, size: Size) -> Result<Vec<T>> {
    let n = r.count(size)?;
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(r.deeper(T::decode)?);
    }
    Ok(out)
}

fn write_list<T: Per>(w: &mut Writer, items: &[T], size: Size) {
    let n = w.count(items.len(), size);
    for item in items.iter().take(n) {
        item.encode(w);
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

/// The extensions of a SEQUENCE, or none.
fn extensions<'a>(r: &mut Reader<'a>, extended: bool) -> Result<Extensions<'a>> {
    if extended {
        r.extensions()
    } else {
        Ok(Extensions::default())
    }
}

/// An extension alternative whose value we drop (a NULL, or one we only
/// name): skip its open type.
fn skip_open(r: &mut Reader<'_>) -> Result<()> {
    r.open_type().map(|_| ())
}

/// Writes extension alternative `i` of a CHOICE with `root` root
/// alternatives, with `contents` as its complete encoding.
fn write_ext_alt(w: &mut Writer, i: usize, root: usize, contents: &[u8]) {
    w.choice(Alt::Ext(i), root, true);
    w.open_type(contents);
}

const LCN: (i64, i64) = (1, 65535);

fn lcn(r: &mut Reader<'_>) -> Result<u16> {
    r.number(LCN.0, LCN.1)
}

fn write_lcn(w: &mut Writer, n: u16) {
    w.constrained(i64::from(n), LCN.0, LCN.1)
}

/// A SEQUENCE with an extension marker, no optional root components and
/// one constrained number (`sequenceNumber`, a logical channel number):
/// the commonest H.245 shape.
fn one_number(r: &mut Reader<'_>, lb: i64, ub: i64) -> Result<i64> {
    let pre = r.preamble(true, 0)?;
    let v = r.constrained(lb, ub)?;
    extensions(r, pre.extended)?;
    Ok(v)
}

fn write_one_number(w: &mut Writer, v: i64, lb: i64, ub: i64) {
    w.preamble(Some(false), &[]);
    w.constrained(v, lb, ub);
}

/// `MultimediaSystemControlMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
    Command(Command),
    Indication(Indication),
    /// An alternative of a later H.245 version.
    Unsupported(Unsupported),
}

impl Message {
    pub fn decode(bytes: &[u8]) -> Result<Message> {
        let mut r = Reader::new(bytes);
        Ok(match r.choice(4, true)? {
            Alt::Root(0) => Message::Request(Request::decode(&mut r)?),
            Alt::Root(1) => Message::Response(Response::decode(&mut r)?),
            Alt::Root(2) => Message::Command(Command::decode(&mut r)?),
            Alt::Root(_) => Message::Indication(Indication::decode(&mut r)?),
            alt => Message::Unsupported(Unsupported::decode(&mut r, alt)?),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        let root = |w: &mut Writer, i| w.choice(Alt::Root(i), 4, true);
        match self {
            Message::Request(m) => {
                root(&mut w, 0);
                m.encode(&mut w)
            }
            Message::Response(m) => {
                root(&mut w, 1);
                m.encode(&mut w)
            }
            Message::Command(m) => {
                root(&mut w, 2);
                m.encode(&mut w)
            }
            Message::Indication(m) => {
                root(&mut w, 3);
                m.encode(&mut w)
            }
            Message::Unsupported(u) => u.encode(&mut w, 4),
        }
        w.finish()
    }

    /// A short name for logs and metrics, e.g. `terminalCapabilitySet`.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Request(m) => m.name(),
            Message::Response(m) => m.name(),
            Message::Command(m) => m.name(),
            Message::Indication(m) => m.name(),
            Message::Unsupported(_) => "unknown",
        }
    }

    /// The H.239 message this is, if it is one.
    pub fn h239(&self) -> Option<H239Message> {
        match self {
            Message::Request(Request::Generic(g))
            | Message::Response(Response::Generic(g))
            | Message::Command(Command::Generic(g))
            | Message::Indication(Indication::Generic(g)) => H239Message::from_generic(g),
            _ => None,
        }
    }
}

/// A message alternative we do not model. A root alternative keeps the
/// rest of the message's bits (written back at the same offset they
/// reproduce it); an extension alternative keeps its open type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    alt: Alt,
    tail: BitTail,
    open: Vec<u8>,
}

impl Unsupported {
    fn decode(r: &mut Reader<'_>, alt: Alt) -> Result<Unsupported> {
        Ok(match alt {
            Alt::Root(_) => Unsupported {
                alt,
                tail: r.tail(),
                open: Vec::new(),
            },
            Alt::Ext(_) => Unsupported {
                alt,
                tail: BitTail::default(),
                open: r.open_type()?.to_vec(),
            },
        })
    }

    fn encode(&self, w: &mut Writer, root: usize) {
        match self.alt {
            Alt::Root(i) if i < root => {
                w.choice(self.alt, root, true);
                w.tail(&self.tail);
            }
            Alt::Root(_) => {
                // Not an alternative of this CHOICE: the caller moved it.
                w.choice(Alt::Ext(63), root, true);
                w.open_type(&[0]);
            }
            Alt::Ext(_) => {
                w.choice(self.alt, root, true);
                w.open_type(&self.open);
            }
        }
    }

    /// Which alternative of its CHOICE.
    pub fn alternative(&self) -> Alt {
        self.alt
    }
}

macro_rules! names {
    ($f:ident, $root:expr, $ext:expr) => {
        fn $f(alt: Alt) -> &'static str {
            const ROOT: &[&str] = &$root;
            const EXT: &[&str] = &$ext;
            match alt {
                Alt::Root(i) => ROOT.get(i).copied().unwrap_or("unknown"),
                Alt::Ext(i) => EXT.get(i).copied().unwrap_or("unknown"),
            }
        }
    };
}

names!(
    request_name,
    [
        "nonStandard",
        "masterSlaveDetermination",
        "terminalCapabilitySet",
        "openLogicalChannel",
        "closeLogicalChannel",
        "requestChannelClose",
        "multiplexEntrySend",
        "requestMultiplexEntry",
        "requestMode",
        "roundTripDelayRequest",
        "maintenanceLoopRequest"
    ],
    [
        "communicationModeRequest",
        "conferenceRequest",
        "multilinkRequest",
        "logicalChannelRateRequest",
        "genericRequest"
    ]
);
names!(
    response_name,
    [
        "nonStandard",
        "masterSlaveDeterminationAck",
        "masterSlaveDeterminationReject",
        "terminalCapabilitySetAck",
        "terminalCapabilitySetReject",
        "openLogicalChannelAck",
        "openLogicalChannelReject",
        "closeLogicalChannelAck",
        "requestChannelCloseAck",
        "requestChannelCloseReject",
        "multiplexEntrySendAck",
        "multiplexEntrySendReject",
        "requestMultiplexEntryAck",
        "requestMultiplexEntryReject",
        "requestModeAck",
        "requestModeReject",
        "roundTripDelayResponse",
        "maintenanceLoopAck",
        "maintenanceLoopReject"
    ],
    [
        "communicationModeResponse",
        "conferenceResponse",
        "multilinkResponse",
        "logicalChannelRateAcknowledge",
        "logicalChannelRateReject",
        "genericResponse"
    ]
);
names!(
    command_name,
    [
        "nonStandard",
        "maintenanceLoopOffCommand",
        "sendTerminalCapabilitySet",
        "encryptionCommand",
        "flowControlCommand",
        "endSessionCommand",
        "miscellaneousCommand"
    ],
    [
        "communicationModeCommand",
        "conferenceCommand",
        "h223MultiplexReconfiguration",
        "newATMVCCommand",
        "mobileMultilinkReconfigurationCommand",
        "genericCommand"
    ]
);
names!(
    indication_name,
    [
        "nonStandard",
        "functionNotUnderstood",
        "masterSlaveDeterminationRelease",
        "terminalCapabilitySetRelease",
        "openLogicalChannelConfirm",
        "requestChannelCloseRelease",
        "multiplexEntrySendRelease",
        "requestMultiplexEntryRelease",
        "requestModeRelease",
        "miscellaneousIndication",
        "jitterIndication",
        "h223SkewIndication",
        "newATMVCIndication",
        "userInput"
    ],
    [
        "h2250MaximumSkewIndication",
        "mcLocationIndication",
        "conferenceIndication",
        "vendorIdentification",
        "functionNotSupported",
        "multilinkIndication",
        "logicalChannelRateRelease",
        "flowControlIndication",
        "mobileMultilinkReconfigurationIndication",
        "genericIndication"
    ]
);

/// `RequestMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    MasterSlaveDetermination(MasterSlaveDetermination),
    TerminalCapabilitySet(TerminalCapabilitySet),
    /// Boxed: the largest message by far.
    OpenLogicalChannel(Box<OpenLogicalChannel>),
    CloseLogicalChannel(CloseLogicalChannel),
    /// `requestChannelClose` of a forward logical channel.
    RequestChannelClose {
        forward_logical_channel_number: u16,
    },
    /// `roundTripDelayRequest` with its sequence number.
    RoundTripDelay(u8),
    /// `genericRequest` (H.239's presentationTokenRequest and
    /// flowControlReleaseRequest).
    Generic(GenericMessage),
    Unsupported(Unsupported),
}

const REQUEST_ROOT: usize = 11;

impl Request {
    pub fn name(&self) -> &'static str {
        request_name(match self {
            Request::MasterSlaveDetermination(_) => Alt::Root(1),
            Request::TerminalCapabilitySet(_) => Alt::Root(2),
            Request::OpenLogicalChannel(_) => Alt::Root(3),
            Request::CloseLogicalChannel(_) => Alt::Root(4),
            Request::RequestChannelClose { .. } => Alt::Root(5),
            Request::RoundTripDelay(_) => Alt::Root(9),
            Request::Generic(_) => Alt::Ext(4),
            Request::Unsupported(u) => u.alt,
        })
    }

    fn decode(r: &mut Reader<'_>) -> Result<Request> {
        Ok(match r.choice(REQUEST_ROOT, true)? {
            Alt::Root(1) => Request::MasterSlaveDetermination(MasterSlaveDetermination::decode(r)?),
            Alt::Root(2) => Request::TerminalCapabilitySet(TerminalCapabilitySet::decode(r)?),
            Alt::Root(3) => {
                Request::OpenLogicalChannel(Box::new(OpenLogicalChannel::decode_from(r)?))
            }
            Alt::Root(4) => Request::CloseLogicalChannel(CloseLogicalChannel::decode(r)?),
            Alt::Root(5) => {
                let pre = r.preamble(true, 0)?;
                let n = lcn(r)?;
                extensions(r, pre.extended)?;
                Request::RequestChannelClose {
                    forward_logical_channel_number: n,
                }
            }
            Alt::Root(9) => Request::RoundTripDelay(one_number(r, 0, 255)? as u8),
            Alt::Ext(4) => {
                let c = r.open_type()?;
                Request::Generic(r.nested(c, GenericMessage::decode)?)
            }
            alt => Request::Unsupported(Unsupported::decode(r, alt)?),
        })
    }

    fn encode(&self, w: &mut Writer) {
        let root = |w: &mut Writer, i| w.choice(Alt::Root(i), REQUEST_ROOT, true);
        match self {
            Request::MasterSlaveDetermination(m) => {
                root(w, 1);
                m.encode(w)
            }
            Request::TerminalCapabilitySet(m) => {
                root(w, 2);
                m.encode(w)
            }
            Request::OpenLogicalChannel(m) => {
                root(w, 3);
                m.encode_to(w)
            }
            Request::CloseLogicalChannel(m) => {
                root(w, 4);
                m.encode(w)
            }
            Request::RequestChannelClose {
                forward_logical_channel_number,
            } => {
                root(w, 5);
                w.preamble(Some(false), &[]);
                write_lcn(w, *forward_logical_channel_number);
            }
            Request::RoundTripDelay(n) => {
                root(w, 9);
                write_one_number(w, i64::from(*n), 0, 255);
            }
            Request::Generic(m) => {
                write_ext_alt(w, 4, REQUEST_ROOT, &Writer::complete(|w| m.encode(w)))
            }
            Request::Unsupported(u) => u.encode(w, REQUEST_ROOT),
        }
    }
}

/// `ResponseMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    MasterSlaveDeterminationAck(MsdDecision),
    /// The only cause is `identicalNumbers`.
    MasterSlaveDeterminationReject,
    TerminalCapabilitySetAck {
        sequence_number: u8,
    },
    TerminalCapabilitySetReject {
        sequence_number: u8,
        cause: TcsRejectCause,
    },
    OpenLogicalChannelAck(OpenLogicalChannelAck),
    OpenLogicalChannelReject {
        forward_logical_channel_number: u16,
        cause: OlcRejectCause,
    },
    CloseLogicalChannelAck {
        forward_logical_channel_number: u16,
    },
    RequestChannelCloseAck {
        forward_logical_channel_number: u16,
    },
    /// `roundTripDelayResponse` with the request's sequence number.
    RoundTripDelay(u8),
    /// `genericResponse` (H.239's presentationTokenResponse and
    /// flowControlReleaseResponse).
    Generic(GenericMessage),
    Unsupported(Unsupported),
}

const RESPONSE_ROOT: usize = 19;

impl Response {
    pub fn name(&self) -> &'static str {
        response_name(match self {
            Response::MasterSlaveDeterminationAck(_) => Alt::Root(1),
            Response::MasterSlaveDeterminationReject => Alt::Root(2),
            Response::TerminalCapabilitySetAck { .. } => Alt::Root(3),
            Response::TerminalCapabilitySetReject { .. } => Alt::Root(4),
            Response::OpenLogicalChannelAck(_) => Alt::Root(5),
            Response::OpenLogicalChannelReject { .. } => Alt::Root(6),
            Response::CloseLogicalChannelAck { .. } => Alt::Root(7),
            Response::RequestChannelCloseAck { .. } => Alt::Root(8),
            Response::RoundTripDelay(_) => Alt::Root(16),
            Response::Generic(_) => Alt::Ext(5),
            Response::Unsupported(u) => u.alt,
        })
    }

    fn decode(r: &mut Reader<'_>) -> Result<Response> {
        Ok(match r.choice(RESPONSE_ROOT, true)? {
            Alt::Root(1) => {
                let pre = r.preamble(true, 0)?;
                let d = if r.constrained(0, 1)? == 0 {
                    MsdDecision::Master
                } else {
                    MsdDecision::Slave
                };
                extensions(r, pre.extended)?;
                Response::MasterSlaveDeterminationAck(d)
            }
            Alt::Root(2) => {
                let pre = r.preamble(true, 0)?;
                if let Alt::Ext(_) = r.choice(1, true)? {
                    skip_open(r)?;
                }
                extensions(r, pre.extended)?;
                Response::MasterSlaveDeterminationReject
            }
            Alt::Root(3) => Response::TerminalCapabilitySetAck {
                sequence_number: one_number(r, 0, 255)? as u8,
            },
            Alt::Root(4) => {
                let pre = r.preamble(true, 0)?;
                let sequence_number = r.number(0, 255)?;
                let cause = TcsRejectCause::decode(r)?;
                extensions(r, pre.extended)?;
                Response::TerminalCapabilitySetReject {
                    sequence_number,
                    cause,
                }
            }
            Alt::Root(5) => Response::OpenLogicalChannelAck(OpenLogicalChannelAck::decode(r)?),
            Alt::Root(6) => {
                let pre = r.preamble(true, 0)?;
                let n = lcn(r)?;
                let cause = OlcRejectCause::decode(r)?;
                extensions(r, pre.extended)?;
                Response::OpenLogicalChannelReject {
                    forward_logical_channel_number: n,
                    cause,
                }
            }
            Alt::Root(7) => Response::CloseLogicalChannelAck {
                forward_logical_channel_number: one_number(r, LCN.0, LCN.1)? as u16,
            },
            Alt::Root(8) => Response::RequestChannelCloseAck {
                forward_logical_channel_number: one_number(r, LCN.0, LCN.1)? as u16,
            },
            Alt::Root(16) => Response::RoundTripDelay(one_number(r, 0, 255)? as u8),
            Alt::Ext(5) => {
                let c = r.open_type()?;
                Response::Generic(r.nested(c, GenericMessage::decode)?)
            }
            alt => Response::Unsupported(Unsupported::decode(r, alt)?),
        })
    }

    fn encode(&self, w: &mut Writer) {
        let root = |w: &mut Writer, i| w.choice(Alt::Root(i), RESPONSE_ROOT, true);
        match self {
            Response::MasterSlaveDeterminationAck(d) => {
                root(w, 1);
                w.preamble(Some(false), &[]);
                w.constrained(matches!(d, MsdDecision::Slave).into(), 0, 1);
            }
            Response::MasterSlaveDeterminationReject => {
                root(w, 2);
                w.preamble(Some(false), &[]);
                w.choice(Alt::Root(0), 1, true);
            }
            Response::TerminalCapabilitySetAck { sequence_number } => {
                root(w, 3);
                write_one_number(w, i64::from(*sequence_number), 0, 255);
            }
            Response::TerminalCapabilitySetReject {
                sequence_number,
                cause,
            } => {
                root(w, 4);
                w.preamble(Some(false), &[]);
                w.constrained(i64::from(*sequence_number), 0, 255);
                cause.encode(w);
            }
            Response::OpenLogicalChannelAck(m) => {
                root(w, 5);
                m.encode(w)
            }
            Response::OpenLogicalChannelReject {
                forward_logical_channel_number,
                cause,
            } => {
                root(w, 6);
                w.preamble(Some(false), &[]);
                write_lcn(w, *forward_logical_channel_number);
                cause.encode(w);
            }
            Response::CloseLogicalChannelAck {
                forward_logical_channel_number,
            } => {
                root(w, 7);
                write_one_number(w, i64::from(*forward_logical_channel_number), LCN.0, LCN.1);
            }
            Response::RequestChannelCloseAck {
                forward_logical_channel_number,
            } => {
                root(w, 8);
                write_one_number(w, i64::from(*forward_logical_channel_number), LCN.0, LCN.1);
            }
            Response::RoundTripDelay(n) => {
                root(w, 16);
                write_one_number(w, i64::from(*n), 0, 255);
            }
            Response::Generic(m) => {
                write_ext_alt(w, 5, RESPONSE_ROOT, &Writer::complete(|w| m.encode(w)))
            }
            Response::Unsupported(u) => u.encode(w, RESPONSE_ROOT),
        }
    }
}

/// `CommandMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    FlowControl(FlowControlCommand),
    EndSession(EndSessionCommand),
    Miscellaneous(MiscellaneousCommand),
    /// `genericCommand` (H.239's presentationTokenRelease).
    Generic(GenericMessage),
    Unsupported(Unsupported),
}

const COMMAND_ROOT: usize = 7;

impl Command {
    pub fn name(&self) -> &'static str {
        command_name(match self {
            Command::FlowControl(_) => Alt::Root(4),
            Command::EndSession(_) => Alt::Root(5),
            Command::Miscellaneous(_) => Alt::Root(6),
            Command::Generic(_) => Alt::Ext(5),
            Command::Unsupported(u) => u.alt,
        })
    }

    fn decode(r: &mut Reader<'_>) -> Result<Command> {
        Ok(match r.choice(COMMAND_ROOT, true)? {
            Alt::Root(4) => Command::FlowControl(FlowControlCommand::decode(r)?),
            Alt::Root(5) => Command::EndSession(EndSessionCommand::decode(r)?),
            Alt::Root(6) => Command::Miscellaneous(MiscellaneousCommand::decode(r)?),
            Alt::Ext(5) => {
                let c = r.open_type()?;
                Command::Generic(r.nested(c, GenericMessage::decode)?)
            }
            alt => Command::Unsupported(Unsupported::decode(r, alt)?),
        })
    }

    fn encode(&self, w: &mut Writer) {
        let root = |w: &mut Writer, i| w.choice(Alt::Root(i), COMMAND_ROOT, true);
        match self {
            Command::FlowControl(m) => {
                root(w, 4);
                m.encode(w)
            }
            Command::EndSession(m) => {
                root(w, 5);
                m.encode(w)
            }
            Command::Miscellaneous(m) => {
                root(w, 6);
                m.encode(w)
            }
            Command::Generic(m) => {
                write_ext_alt(w, 5, COMMAND_ROOT, &Writer::complete(|w| m.encode(w)))
            }
            Command::Unsupported(u) => u.encode(w, COMMAND_ROOT),
        }
    }
}

/// `IndicationMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Indication {
    FunctionNotUnderstood(FunctionNotUnderstood),
    UserInput(UserInput),
    FunctionNotSupported(FunctionNotSupported),
    /// `genericIndication` (H.239's presentationTokenIndicateOwner).
    Generic(GenericMessage),
    Unsupported(Unsupported),
}

const INDICATION_ROOT: usize = 14;

impl Indication {
    pub fn name(&self) -> &'static str {
        indication_name(match self {
            Indication::FunctionNotUnderstood(_) => Alt::Root(1),
            Indication::UserInput(_) => Alt::Root(13),
            Indication::FunctionNotSupported(_) => Alt::Ext(4),
            Indication::Generic(_) => Alt::Ext(9),
            Indication::Unsupported(u) => u.alt,
        })
    }

    fn decode(r: &mut Reader<'_>) -> Result<Indication> {
        Ok(match r.choice(INDICATION_ROOT, true)? {
            Alt::Root(1) => {
                Indication::FunctionNotUnderstood(r.deeper(FunctionNotUnderstood::decode)?)
            }
            Alt::Root(13) => Indication::UserInput(UserInput::decode(r)?),
            Alt::Ext(4) => {
                let c = r.open_type()?;
                Indication::FunctionNotSupported(r.nested(c, FunctionNotSupported::decode)?)
            }
            Alt::Ext(9) => {
                let c = r.open_type()?;
                Indication::Generic(r.nested(c, GenericMessage::decode)?)
            }
            alt => Indication::Unsupported(Unsupported::decode(r, alt)?),
        })
    }

    fn encode(&self, w: &mut Writer) {
        let root = |w: &mut Writer, i| w.choice(Alt::Root(i), INDICATION_ROOT, true);
        match self {
            Indication::FunctionNotUnderstood(m) => {
                root(w, 1);
                m.encode(w)
            }
            Indication::UserInput(m) => {
                root(w, 13);
                m.encode(w)
            }
            Indication::FunctionNotSupported(m) => {
                write_ext_alt(w, 4, INDICATION_ROOT, &Writer::complete(|w| m.encode(w)))
            }
            Indication::Generic(m) => {
                write_ext_alt(w, 9, INDICATION_ROOT, &Writer::complete(|w| m.encode(w)))
            }
            Indication::Unsupported(u) => u.encode(w, INDICATION_ROOT),
        }
    }
}

/// `FunctionNotUnderstood`: the message that was not understood, echoed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FunctionNotUnderstood {
    Request(Request),
    Response(Response),
    Command(Command),
}

impl Per for FunctionNotUnderstood {
    fn decode(r: &mut Reader<'_>) -> Result<FunctionNotUnderstood> {
        Ok(match r.choice(3, false)? {
            Alt::Root(0) => FunctionNotUnderstood::Request(Request::decode(r)?),
            Alt::Root(1) => FunctionNotUnderstood::Response(Response::decode(r)?),
            _ => FunctionNotUnderstood::Command(Command::decode(r)?),
        })
    }

    fn encode(&self, w: &mut Writer) {
        match self {
            FunctionNotUnderstood::Request(m) => {
                w.choice(Alt::Root(0), 3, false);
                m.encode(w)
            }
            FunctionNotUnderstood::Response(m) => {
                w.choice(Alt::Root(1), 3, false);
                m.encode(w)
            }
            FunctionNotUnderstood::Command(m) => {
                w.choice(Alt::Root(2), 3, false);
                m.encode(w)
            }
        }
    }
}

/// `FunctionNotSupported`: the answer to a message we do not support,
/// carrying it back (`returnedFunction`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionNotSupported {
    pub cause: FunctionNotSupportedCause,
    pub returned_function: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionNotSupportedCause {
    SyntaxError,
    SemanticError,
    UnknownFunction,
}

impl FunctionNotSupported {
    /// Answers `message` (its original bytes) as an unknown function.
    pub fn unknown(message: &[u8]) -> FunctionNotSupported {
        FunctionNotSupported {
            cause: FunctionNotSupportedCause::UnknownFunction,
            returned_function: Some(message.to_vec()),
        }
    }
}

impl Per for FunctionNotSupported {
    fn decode(r: &mut Reader<'_>) -> Result<FunctionNotSupported> {
        let pre = r.preamble(true, 1)?;
        let cause = match r.choice(3, true)? {
            Alt::Root(0) => FunctionNotSupportedCause::SyntaxError,
            Alt::Root(1) => FunctionNotSupportedCause::SemanticError,
            Alt::Root(_) => FunctionNotSupportedCause::UnknownFunction,
            Alt::Ext(_) => {
                skip_open(r)?;
                FunctionNotSupportedCause::UnknownFunction
            }
        };
        let returned_function = pre
            .has(0)
            .then(|| r.octet_string(Size::UNBOUNDED))
            .transpose()?;
        extensions(r, pre.extended)?;
        Ok(FunctionNotSupported {
            cause,
            returned_function,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(Some(false), &[self.returned_function.is_some()]);
        let i = match self.cause {
            FunctionNotSupportedCause::SyntaxError => 0,
            FunctionNotSupportedCause::SemanticError => 1,
            FunctionNotSupportedCause::UnknownFunction => 2,
        };
        w.choice(Alt::Root(i), 3, true);
        if let Some(f) = &self.returned_function {
            w.octet_string(f, Size::UNBOUNDED);
        }
    }
}

/// MasterSlaveDetermination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasterSlaveDetermination {
    /// The entity type value of H.323 §6.2.8.4: a plain terminal sends 50
    /// (Ekiga does), an MCU a higher value (190 for one with MC and MP) so
    /// that it becomes master; the higher number wins.
    pub terminal_type: u8,
    /// A random 24-bit number (the caller's seeded RNG; cores read none).
    pub status_determination_number: u32,
}

impl MasterSlaveDetermination {
    fn decode(r: &mut Reader<'_>) -> Result<MasterSlaveDetermination> {
        let pre = r.preamble(true, 0)?;
        let terminal_type = r.number(0, 255)?;
        let status_determination_number = r.number(0, 16_777_215)?;
        extensions(r, pre.extended)?;
        Ok(MasterSlaveDetermination {
            terminal_type,
            status_determination_number,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(Some(false), &[]);
        w.constrained(i64::from(self.terminal_type), 0, 255);
        w.constrained(i64::from(self.status_determination_number), 0, 16_777_215);
    }

    pub fn to_message(self) -> Message {
        Message::Request(Request::MasterSlaveDetermination(self))
    }
}

/// The `decision` of a MasterSlaveDeterminationAck: what the receiver of
/// the Ack is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsdDecision {
    Master,
    Slave,
}

/// The cause of a TerminalCapabilitySetReject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcsRejectCause {
    Unspecified,
    UndefinedTableEntryUsed,
    DescriptorCapacityExceeded,
    /// `tableEntryCapacityExceeded`: the highest entry number processed, or
    /// none.
    TableEntryCapacityExceeded(Option<u16>),
    Other(UnknownAlt),
}

static TCS_REJECT_SHAPE: Node = shape!(4);

impl TcsRejectCause {
    fn decode(r: &mut Reader<'_>) -> Result<TcsRejectCause> {
        Ok(match r.choice(4, true)? {
            Alt::Root(0) => TcsRejectCause::Unspecified,
            Alt::Root(1) => TcsRejectCause::UndefinedTableEntryUsed,
            Alt::Root(2) => TcsRejectCause::DescriptorCapacityExceeded,
            Alt::Root(_) => {
                TcsRejectCause::TableEntryCapacityExceeded(match r.choice(2, false)? {
                    Alt::Root(0) => Some(lcn(r)?),
                    _ => None,
                })
            }
            alt => TcsRejectCause::Other(UnknownAlt::decode(r, &TCS_REJECT_SHAPE, alt)?),
        })
    }

    fn encode(&self, w: &mut Writer) {
        match self {
            TcsRejectCause::Unspecified => w.choice(Alt::Root(0), 4, true),
            TcsRejectCause::UndefinedTableEntryUsed => w.choice(Alt::Root(1), 4, true),
            TcsRejectCause::DescriptorCapacityExceeded => w.choice(Alt::Root(2), 4, true),
            TcsRejectCause::TableEntryCapacityExceeded(n) => {
                w.choice(Alt::Root(3), 4, true);
                match n {
                    Some(n) => {
                        w.choice(Alt::Root(0), 2, false);
                        write_lcn(w, *n);
                    }
                    None => w.choice(Alt::Root(1), 2, false),
                }
            }
            TcsRejectCause::Other(u) => u.encode(w, &TCS_REJECT_SHAPE),
        }
    }
}

/// The cause of an OpenLogicalChannelReject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OlcRejectCause {
    Unspecified,
    UnsuitableReverseParameters,
    DataTypeNotSupported,
    DataTypeNotAvailable,
    UnknownDataType,
    DataTypeALCombinationNotSupported,
    MulticastChannelNotAllowed,
    InsufficientBandwidth,
    SeparateStackEstablishmentFailed,
    InvalidSessionId,
    MasterSlaveConflict,
    WaitForCommunicationMode,
    InvalidDependentChannel,
    ReplacementForRejected,
    SecurityDenied,
    QosControlNotSupported,
}

impl OlcRejectCause {
    const ALL: [OlcRejectCause; 16] = [
        OlcRejectCause::Unspecified,
        OlcRejectCause::UnsuitableReverseParameters,
        OlcRejectCause::DataTypeNotSupported,
        OlcRejectCause::DataTypeNotAvailable,
        OlcRejectCause::UnknownDataType,
        OlcRejectCause::DataTypeALCombinationNotSupported,
        OlcRejectCause::MulticastChannelNotAllowed,
        OlcRejectCause::InsufficientBandwidth,
        OlcRejectCause::SeparateStackEstablishmentFailed,
        OlcRejectCause::InvalidSessionId,
        OlcRejectCause::MasterSlaveConflict,
        OlcRejectCause::WaitForCommunicationMode,
        OlcRejectCause::InvalidDependentChannel,
        OlcRejectCause::ReplacementForRejected,
        OlcRejectCause::SecurityDenied,
        OlcRejectCause::QosControlNotSupported,
    ];

    fn decode(r: &mut Reader<'_>) -> Result<OlcRejectCause> {
        let i = match r.choice(6, true)? {
            Alt::Root(i) => i,
            Alt::Ext(i) => {
                skip_open(r)?;
                6 + i
            }
        };
        // A cause of a later version reads as unspecified.
        Ok(OlcRejectCause::ALL
            .get(i)
            .copied()
            .unwrap_or(OlcRejectCause::Unspecified))
    }

    fn encode(&self, w: &mut Writer) {
        let i = OlcRejectCause::ALL
            .iter()
            .position(|c| c == self)
            .unwrap_or(0);
        if i < 6 {
            w.choice(Alt::Root(i), 6, true);
        } else {
            write_ext_alt(w, i - 6, 6, &[0]);
        }
    }
}

/// TerminalCapabilitySet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalCapabilitySet {
    pub sequence_number: u8,
    pub protocol_identifier: Oid,
    pub multiplex_capability: Option<MultiplexCapability>,
    pub capability_table: Vec<CapabilityTableEntry>,
    pub capability_descriptors: Vec<CapabilityDescriptor>,
}

/// `capabilityTable` and friends are `SET SIZE (1..256) OF`.
const TABLE: Size = Size::range(1, 256);

impl TerminalCapabilitySet {
    /// An empty capability set (no table, no descriptors): H.323's way of
    /// pausing a peer's transmission (third-party reroute).
    pub fn empty(sequence_number: u8) -> TerminalCapabilitySet {
        TerminalCapabilitySet {
            sequence_number,
            protocol_identifier: protocol_identifier(),
            multiplex_capability: None,
            capability_table: Vec::new(),
            capability_descriptors: Vec::new(),
        }
    }

    /// Ours: G.711 µ-law and A-law and G.722 (20 ms), H.264 up to
    /// 720p30 at `max_video_bit_rate` (units of 100 bit/s), RFC 2833
    /// telephone events, and, if `presentation`, an H.239 presentation
    /// channel (H.264 in extendedVideoCapability) with the H.239 control
    /// capability. One descriptor: any one audio codec, the main video,
    /// the presentation video, the control capabilities.
    pub fn ours(
        sequence_number: u8,
        max_video_bit_rate: u32,
        presentation: bool,
    ) -> TerminalCapabilitySet {
        let h264 = H264Capability::hd720p30(max_video_bit_rate);
        let mut table = vec![
            CapabilityTableEntry::new(
                1,
                Capability::ReceiveAudio(AudioCapability::G711Ulaw64k(20)),
            ),
            CapabilityTableEntry::new(
                2,
                Capability::ReceiveAudio(AudioCapability::G711Alaw64k(20)),
            ),
            CapabilityTableEntry::new(3, Capability::ReceiveAudio(AudioCapability::G722_64k(20))),
            CapabilityTableEntry::new(
                4,
                Capability::ReceiveVideo(VideoCapability::Generic(h264.to_generic())),
            ),
            CapabilityTableEntry::new(
                5,
                Capability::ReceiveRtpAudioTelephonyEvent {
                    dynamic_rtp_payload_type: 101,
                    audio_telephone_event: "0-16".into(),
                },
            ),
            CapabilityTableEntry::new(
                6,
                Capability::ReceiveUserInput(UserInputCapability::BasicString),
            ),
            CapabilityTableEntry::new(7, Capability::ReceiveUserInput(UserInputCapability::Dtmf)),
        ];
        let mut sets = vec![vec![1, 2, 3], vec![4], vec![5], vec![6], vec![7]];
        if presentation {
            table.push(CapabilityTableEntry::new(
                8,
                Capability::ReceiveVideo(VideoCapability::presentation(h264.to_generic())),
            ));
            table.push(CapabilityTableEntry::new(
                9,
                Capability::GenericControl(h239_control_capability()),
            ));
            sets.push(vec![8]);
            sets.push(vec![9]);
        }
        TerminalCapabilitySet {
            sequence_number,
            protocol_identifier: protocol_identifier(),
            multiplex_capability: Some(MultiplexCapability::H2250(H2250Capability::default())),
            capability_table: table,
            capability_descriptors: vec![CapabilityDescriptor {
                number: 0,
                simultaneous_capabilities: sets,
            }],
        }
    }

    /// The capability with table entry `number`.
    pub fn capability(&self, number: u16) -> Option<&Capability> {
        self.capability_table
            .iter()
            .find(|e| e.number == number)
            .and_then(|e| e.capability.as_ref())
    }

    pub fn to_message(self) -> Message {
        Message::Request(Request::TerminalCapabilitySet(self))
    }

    fn decode(r: &mut Reader<'_>) -> Result<TerminalCapabilitySet> {
        let pre = r.preamble(true, 3)?;
        let sequence_number = r.number(0, 255)?;
        let protocol_identifier = r.object_identifier()?;
        let multiplex_capability = pre
            .has(0)
            .then(|| MultiplexCapability::decode(r))
            .transpose()?;
        let capability_table = if pre.has(1) {
            list(r, TABLE)?
        } else {
            Vec::new()
        };
        let capability_descriptors = if pre.has(2) {
            list(r, TABLE)?
        } else {
            Vec::new()
        };
        extensions(r, pre.extended)?;
        Ok(TerminalCapabilitySet {
            sequence_number,
            protocol_identifier,
            multiplex_capability,
            capability_table,
            capability_descriptors,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(
            Some(false),
            &[
                self.multiplex_capability.is_some(),
                !self.capability_table.is_empty(),
                !self.capability_descriptors.is_empty(),
            ],
        );
        w.constrained(i64::from(self.sequence_number), 0, 255);
        w.object_identifier(&self.protocol_identifier);
        if let Some(m) = &self.multiplex_capability {
            m.encode(w);
        }
        if !self.capability_table.is_empty() {
            write_list(w, &self.capability_table, TABLE);
        }
        if !self.capability_descriptors.is_empty() {
            write_list(w, &self.capability_descriptors, TABLE);
        }
    }
}

/// CapabilityTableEntry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityTableEntry {
    pub number: u16,
    /// None removes the entry (in a later TerminalCapabilitySet).
    pub capability: Option<Capability>,
}

impl CapabilityTableEntry {
    pub fn new(number: u16, capability: Capability) -> CapabilityTableEntry {
        CapabilityTableEntry {
            number,
            capability: Some(capability),
        }
    }
}

impl Per for CapabilityTableEntry {
    fn decode(r: &mut Reader<'_>) -> Result<CapabilityTableEntry> {
        let pre = r.preamble(false, 1)?;
        let number = lcn(r)?;
        let capability = pre.has(0).then(|| Capability::decode(r)).transpose()?;
        Ok(CapabilityTableEntry { number, capability })
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(None, &[self.capability.is_some()]);
        write_lcn(w, self.number);
        if let Some(c) = &self.capability {
            c.encode(w);
        }
    }
}

/// CapabilityDescriptor: sets of alternative capabilities (table entry
/// numbers) that can all be used at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityDescriptor {
    pub number: u8,
    pub simultaneous_capabilities: Vec<Vec<u16>>,
}

impl Per for CapabilityDescriptor {
    fn decode(r: &mut Reader<'_>) -> Result<CapabilityDescriptor> {
        let pre = r.preamble(false, 1)?;
        let number = r.number(0, 255)?;
        let mut simultaneous_capabilities = Vec::new();
        if pre.has(0) {
            let n = r.count(TABLE)?;
            for _ in 0..n {
                let m = r.count(TABLE)?;
                let mut set = Vec::new();
                for _ in 0..m {
                    set.push(lcn(r)?);
                }
                simultaneous_capabilities.push(set);
            }
        }
        Ok(CapabilityDescriptor {
            number,
            simultaneous_capabilities,
        })
    }

    fn encode(&self, w: &mut Writer) {
        let sets: Vec<&Vec<u16>> = self
            .simultaneous_capabilities
            .iter()
            .filter(|s| !s.is_empty())
            .collect();
        w.preamble(None, &[!sets.is_empty()]);
        w.constrained(i64::from(self.number), 0, 255);
        if !sets.is_empty() {
            let n = w.count(sets.len(), TABLE);
            for set in sets.into_iter().take(n) {
                let m = w.count(set.len(), TABLE);
                for &e in set.iter().take(m) {
                    write_lcn(w, e);
                }
            }
        }
    }
}

/// `MultiplexCapability` of a TerminalCapabilitySet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiplexCapability {
    H2250(H2250Capability),
    /// nonStandard, h222, h223, v76, genericMultiplexCapability.
    Other(UnknownAlt),
}

impl MultiplexCapability {
    fn decode(r: &mut Reader<'_>) -> Result<MultiplexCapability> {
        Ok(match r.choice(4, true)? {
            Alt::Ext(0) => {
                let c = r.open_type()?;
                MultiplexCapability::H2250(r.nested(c, H2250Capability::decode)?)
            }
            alt => MultiplexCapability::Other(UnknownAlt::decode(
                r,
                &schema::H245_MULTIPLEX_CAPABILITY,
                alt,
            )?),
        })
    }

    fn encode(&self, w: &mut Writer) {
        match self {
            MultiplexCapability::H2250(c) => {
                write_ext_alt(w, 0, 4, &Writer::complete(|w| c.encode(w)))
            }
            MultiplexCapability::Other(u) => u.encode(w, &schema::H245_MULTIPLEX_CAPABILITY),
        }
    }
}

/// H2250Capability: what the H.225.0 media transport of a terminal can do.
/// The lists of data applications in MediaDistributionCapability, and the
/// extension additions other than the two booleans, are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H2250Capability {
    pub maximum_audio_delay_jitter: u16,
    pub receive_multipoint: MultipointCapability,
    pub transmit_multipoint: MultipointCapability,
    pub receive_and_transmit_multipoint: MultipointCapability,
    pub centralized_conference_mc: bool,
    pub decentralized_conference_mc: bool,
    pub rtcp_video_control: bool,
    pub h261a_video_packetization: bool,
    pub logical_channel_switching: bool,
    pub t120_dynamic_port: bool,
}

impl Default for H2250Capability {
    /// Ours: 60 ms of audio jitter, no multicast, one (empty) media
    /// distribution capability per direction as OpenH323-derived stacks
    /// send, RTCP video control (fast update requests) yes.
    fn default() -> H2250Capability {
        let multipoint = MultipointCapability {
            multicast: false,
            multi_unicast_conference: false,
            media_distribution: vec![MediaDistributionCapability::default()],
        };
        H2250Capability {
            maximum_audio_delay_jitter: 60,
            receive_multipoint: multipoint.clone(),
            transmit_multipoint: multipoint.clone(),
            receive_and_transmit_multipoint: multipoint,
            centralized_conference_mc: false,
            decentralized_conference_mc: false,
            rtcp_video_control: true,
            h261a_video_packetization: false,
            logical_channel_switching: false,
            t120_dynamic_port: false,
        }
    }
}

impl Per for H2250Capability {
    fn decode(r: &mut Reader<'_>) -> Result<H2250Capability> {
        let pre = r.preamble(true, 0)?;
        let maximum_audio_delay_jitter = r.number(0, 1023)?;
        let receive_multipoint = MultipointCapability::decode(r)?;
        let transmit_multipoint = MultipointCapability::decode(r)?;
        let receive_and_transmit_multipoint = MultipointCapability::decode(r)?;
        let mc = r.preamble(true, 0)?;
        let centralized_conference_mc = r.boolean()?;
        let decentralized_conference_mc = r.boolean()?;
        extensions(r, mc.extended)?;
        let rtcp_video_control = r.boolean()?;
        // MediaPacketizationCapability ::= SEQUENCE { h261aVideoPacketization BOOLEAN, ..., rtpPayloadType }
        let mp = r.preamble(true, 0)?;
        let h261a_video_packetization = r.boolean()?;
        extensions(r, mp.extended)?;
        let e = extensions(r, pre.extended)?;
        let logical_channel_switching = ext(r, &e, 2, |r| r.boolean())?.unwrap_or(false);
        let t120_dynamic_port = ext(r, &e, 3, |r| r.boolean())?.unwrap_or(false);
        Ok(H2250Capability {
            maximum_audio_delay_jitter,
            receive_multipoint,
            transmit_multipoint,
            receive_and_transmit_multipoint,
            centralized_conference_mc,
            decentralized_conference_mc,
            rtcp_video_control,
            h261a_video_packetization,
            logical_channel_switching,
            t120_dynamic_port,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(Some(true), &[]);
        w.constrained(i64::from(self.maximum_audio_delay_jitter), 0, 1023);
        self.receive_multipoint.encode(w);
        self.transmit_multipoint.encode(w);
        self.receive_and_transmit_multipoint.encode(w);
        w.preamble(Some(false), &[]);
        w.boolean(self.centralized_conference_mc);
        w.boolean(self.decentralized_conference_mc);
        w.boolean(self.rtcp_video_control);
        w.preamble(Some(false), &[]);
        w.boolean(self.h261a_video_packetization);
        w.extensions(
            4,
            &[
                (
                    2,
                    Writer::complete(|w| w.boolean(self.logical_channel_switching)),
                ),
                (3, Writer::complete(|w| w.boolean(self.t120_dynamic_port))),
            ],
        );
    }
}

/// MultipointCapability.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MultipointCapability {
    pub multicast: bool,
    pub multi_unicast_conference: bool,
    pub media_distribution: Vec<MediaDistributionCapability>,
}

/// MediaDistributionCapability (without its data application lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MediaDistributionCapability {
    pub centralized_control: bool,
    pub distributed_control: bool,
    pub centralized_audio: bool,
    pub distributed_audio: bool,
    pub centralized_video: bool,
    pub distributed_video: bool,
}

impl Per for MultipointCapability {
    fn decode(r: &mut Reader<'_>) -> Result<MultipointCapability> {
        let pre = r.preamble(true, 0)?;
        let multicast = r.boolean()?;
        let multi_unicast_conference = r.boolean()?;
        let media_distribution = list(r, Size::UNBOUNDED)?;
        extensions(r, pre.extended)?;
        Ok(MultipointCapability {
            multicast,
            multi_unicast_conference,
            media_distribution,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(Some(false), &[]);
        w.boolean(self.multicast);
        w.boolean(self.multi_unicast_conference);
        write_list(w, &self.media_distribution, Size::UNBOUNDED);
    }
}

impl Per for MediaDistributionCapability {
    fn decode(r: &mut Reader<'_>) -> Result<MediaDistributionCapability> {
        let pre = r.preamble(true, 2)?;
        let mut b = [false; 6];
        for x in &mut b {
            *x = r.boolean()?;
        }
        for i in 0..2 {
            if pre.has(i) {
                let n = r.count(Size::UNBOUNDED)?;
                for _ in 0..n {
                    r.deeper(|r| Opaque::skip(r, &schema::H245_DATA_APPLICATION_CAPABILITY))?;
                }
            }
        }
        extensions(r, pre.extended)?;
        let [
            centralized_control,
            distributed_control,
            centralized_audio,
            distributed_audio,
            centralized_video,
            distributed_video,
        ] = b;
        Ok(MediaDistributionCapability {
            centralized_control,
            distributed_control,
            centralized_audio,
            distributed_audio,
            centralized_video,
            distributed_video,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(Some(false), &[false, false]);
        for b in [
            self.centralized_control,
            self.distributed_control,
            self.centralized_audio,
            self.distributed_audio,
            self.centralized_video,
            self.distributed_video,
        ] {
            w.boolean(b);
        }
    }
}

/// `Capability`: one entry of a capability table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    ReceiveVideo(VideoCapability),
    TransmitVideo(VideoCapability),
    ReceiveAndTransmitVideo(VideoCapability),
    ReceiveAudio(AudioCapability),
    TransmitAudio(AudioCapability),
    ReceiveAndTransmitAudio(AudioCapability),
    ReceiveUserInput(UserInputCapability),
    TransmitUserInput(UserInputCapability),
    ReceiveAndTransmitUserInput(UserInputCapability),
    /// `genericControlCapability` (H.239's h239ControlCapability).
    GenericControl(GenericCapability),
    /// `receiveRTPAudioTelephonyEventCapability` (RFC 2833 DTMF).
    ReceiveRtpAudioTelephonyEvent {
        dynamic_rtp_payload_type: u8,
        /// The events, as in SDP's fmtp (`0-16`).
        audio_telephone_event: String,
    },
    /// Data applications, nonStandard, H.235, conference capability, ...
    Other(UnknownAlt),
}

const CAPABILITY_ROOT: usize = 12;

impl Capability {
    fn decode(r: &mut Reader<'_>) -> Result<Capability> {
        Ok(match r.choice(CAPABILITY_ROOT, true)? {
            Alt::Root(1) => Capability::ReceiveVideo(VideoCapability::decode(r)?),
            Alt::Root(2) => Capability::TransmitVideo(VideoCapability::decode(r)?),
            Alt::Root(3) => Capability::ReceiveAndTransmitVideo(VideoCapability::decode(r)?),
            Alt::Root(4) => Capability::ReceiveAudio(AudioCapability::decode(r)?),
            Alt::Root(5) => Capability::TransmitAudio(AudioCapability::decode(r)?),
            Alt::Root(6) => Capability::ReceiveAndTransmitAudio(AudioCapability::decode(r)?),
            Alt::Ext(i @ 3..=5) => {
                let c = r.open_type()?;
                let u = r.nested(c, UserInputCapability::decode)?;
                match i {
                    3 => Capability::ReceiveUserInput(u),
                    4 => Capability::TransmitUserInput(u),
                    _ => Capability::ReceiveAndTransmitUserInput(u),
                }
            }
            Alt::Ext(6) => {
                let c = r.open_type()?;
                Capability::GenericControl(r.nested(c, GenericCapability::decode)?)
            }
            Alt::Ext(10) => {
                let c = r.open_type()?;
                r.nested(c, |r| {
                    let pre = r.preamble(true, 0)?;
                    let dynamic_rtp_payload_type = r.number(96, 127)?;
                    let audio_telephone_event = r.general_string()?;
                    extensions(r, pre.extended)?;
                    Ok(Capability::ReceiveRtpAudioTelephonyEvent {
                        dynamic_rtp_payload_type,
                        audio_telephone_event,
                    })
                })?
            }
            alt => Capability::Other(UnknownAlt::decode(r, &schema::H245_CAPABILITY, alt)?),
        })
    }

    fn encode(&self, w: &mut Writer) {
        let root = |w: &mut Writer, i| w.choice(Alt::Root(i), CAPABILITY_ROOT, true);
        match self {
            Capability::ReceiveVideo(v) => {
                root(w, 1);
                v.encode(w)
            }
            Capability::TransmitVideo(v) => {
                root(w, 2);
                v.encode(w)
            }
            Capability::ReceiveAndTransmitVideo(v) => {
                root(w, 3);
                v.encode(w)
            }
            Capability::ReceiveAudio(a) => {
                root(w, 4);
                a.encode(w)
            }
            Capability::TransmitAudio(a) => {
                root(w, 5);
                a.encode(w)
            }
            Capability::ReceiveAndTransmitAudio(a) => {
                root(w, 6);
                a.encode(w)
            }
            Capability::ReceiveUserInput(u) => {
                write_ext_alt(w, 3, CAPABILITY_ROOT, &Writer::complete(|w| u.encode(w)))
            }
            Capability::TransmitUserInput(u) => {
                write_ext_alt(w, 4, CAPABILITY_ROOT, &Writer::complete(|w| u.encode(w)))
            }
            Capability::ReceiveAndTransmitUserInput(u) => {
                write_ext_alt(w, 5, CAPABILITY_ROOT, &Writer::complete(|w| u.encode(w)))
            }
            Capability::GenericControl(g) => {
                write_ext_alt(w, 6, CAPABILITY_ROOT, &Writer::complete(|w| g.encode(w)))
            }
            Capability::ReceiveRtpAudioTelephonyEvent {
                dynamic_rtp_payload_type,
                audio_telephone_event,
            } => write_ext_alt(
                w,
                10,
                CAPABILITY_ROOT,
                &Writer::complete(|w| {
                    w.preamble(Some(false), &[]);
                    w.constrained(i64::from(*dynamic_rtp_payload_type), 96, 127);
                    w.general_string(audio_telephone_event);
                }),
            ),
            Capability::Other(u) => u.encode(w, &schema::H245_CAPABILITY),
        }
    }
}

/// `UserInputCapability`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserInputCapability {
    BasicString,
    Ia5String,
    GeneralString,
    Dtmf,
    Hookflash,
    ExtendedAlphanumeric,
    Other(UnknownAlt),
}

impl Per for UserInputCapability {
    fn decode(r: &mut Reader<'_>) -> Result<UserInputCapability> {
        Ok(match r.choice(6, true)? {
            Alt::Root(1) => UserInputCapability::BasicString,
            Alt::Root(2) => UserInputCapability::Ia5String,
            Alt::Root(3) => UserInputCapability::GeneralString,
            Alt::Root(4) => UserInputCapability::Dtmf,
            Alt::Root(5) => UserInputCapability::Hookflash,
            Alt::Ext(0) => {
                skip_open(r)?;
                UserInputCapability::ExtendedAlphanumeric
            }
            alt => UserInputCapability::Other(UnknownAlt::decode(
                r,
                &schema::H245_USER_INPUT_CAPABILITY,
                alt,
            )?),
        })
    }

    fn encode(&self, w: &mut Writer) {
        let i = match self {
            UserInputCapability::BasicString => 1,
            UserInputCapability::Ia5String => 2,
            UserInputCapability::GeneralString => 3,
            UserInputCapability::Dtmf => 4,
            UserInputCapability::Hookflash => 5,
            UserInputCapability::ExtendedAlphanumeric => return write_ext_alt(w, 0, 6, &[0]),
            UserInputCapability::Other(u) => {
                return u.encode(w, &schema::H245_USER_INPUT_CAPABILITY);
            }
        };
        w.choice(Alt::Root(i), 6, true);
    }
}

/// `VideoCapability`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoCapability {
    /// `genericVideoCapability`: H.264 is this ([`H264Capability`]).
    Generic(GenericCapability),
    /// `extendedVideoCapability`: H.239 content and live roles.
    Extended(ExtendedVideoCapability),
    /// H.261, H.262, H.263, IS 11172, nonStandard.
    Other(UnknownAlt),
}

impl VideoCapability {
    /// H.239's presentation role: `video` in an extendedVideoCapability
    /// labelled with h239ExtendedVideoCapability roleLabel presentation.
    pub fn presentation(video: GenericCapability) -> VideoCapability {
        VideoCapability::Extended(ExtendedVideoCapability {
            video_capability: vec![VideoCapability::Generic(video)],
            video_capability_extension: vec![GenericCapability {
                collapsing: vec![GenericParameter::standard(
                    h239::ROLE_LABEL,
                    ParameterValue::BooleanArray(h239::ROLE_PRESENTATION),
                )],
                ..GenericCapability::new(Oid::new(&h239::EXTENDED_VIDEO_CAPABILITY))
            }],
        })
    }

    /// Whether this is an H.239 presentation (content) capability.
    pub fn is_presentation(&self) -> bool {
        match self {
            VideoCapability::Extended(e) => e.video_capability_extension.iter().any(|g| {
                g.is_standard(&h239::EXTENDED_VIDEO_CAPABILITY)
                    && g.collapsing.iter().any(|p| {
                        p.id == ParameterIdentifier::Standard(h239::ROLE_LABEL)
                            && matches!(p.value, ParameterValue::BooleanArray(b) if b & h239::ROLE_PRESENTATION != 0)
                    })
            }),
            _ => false,
        }
    }

    /// The H.264 capability in here (directly, or as the first H.264 video
    /// of an extended capability).
    pub fn h264(&self) -> Option<H264Capability> {
        match self {
            VideoCapability::Generic(g) => H264Capability::from_generic(g),
            VideoCapability::Extended(e) => e.video_capability.iter().find_map(|v| v.h264()),
            VideoCapability::Other(_) => None,
        }
    }
}

impl Per for VideoCapability {
    fn decode(r: &mut Reader<'_>) -> Result<VideoCapability> {
        Ok(match r.choice(5, true)? {
            Alt::Ext(0) => {
                let c = r.open_type()?;
                VideoCapability::Generic(r.nested(c, GenericCapability::decode)?)
            }
            Alt::Ext(1) => {
                let c = r.open_type()?;
                VideoCapability::Extended(r.nested(c, ExtendedVideoCapability::decode)?)
            }
            alt => {
                VideoCapability::Other(UnknownAlt::decode(r, &schema::H245_VIDEO_CAPABILITY, alt)?)
            }
        })
    }

    fn encode(&self, w: &mut Writer) {
        match self {
            VideoCapability::Generic(g) => {
                write_ext_alt(w, 0, 5, &Writer::complete(|w| g.encode(w)))
            }
            VideoCapability::Extended(e) => {
                write_ext_alt(w, 1, 5, &Writer::complete(|w| e.encode(w)))
            }
            VideoCapability::Other(u) => u.encode(w, &schema::H245_VIDEO_CAPABILITY),
        }
    }
}

/// ExtendedVideoCapability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendedVideoCapability {
    pub video_capability: Vec<VideoCapability>,
    pub video_capability_extension: Vec<GenericCapability>,
}

impl Per for ExtendedVideoCapability {
    fn decode(r: &mut Reader<'_>) -> Result<ExtendedVideoCapability> {
        let pre = r.preamble(true, 1)?;
        let video_capability = list(r, Size::UNBOUNDED)?;
        let video_capability_extension = if pre.has(0) {
            list(r, Size::UNBOUNDED)?
        } else {
            Vec::new()
        };
        extensions(r, pre.extended)?;
        Ok(ExtendedVideoCapability {
            video_capability,
            video_capability_extension,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(Some(false), &[!self.video_capability_extension.is_empty()]);
        write_list(w, &self.video_capability, Size::UNBOUNDED);
        if !self.video_capability_extension.is_empty() {
            write_list(w, &self.video_capability_extension, Size::UNBOUNDED);
        }
    }
}

/// `AudioCapability`; the numbers are the most frames (of the codec's
/// frame duration, 1 ms for G.711/G.722) in one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioCapability {
    G711Alaw64k(u16),
    G711Alaw56k(u16),
    G711Ulaw64k(u16),
    G711Ulaw56k(u16),
    G722_64k(u16),
    G722_56k(u16),
    G722_48k(u16),
    G7231 {
        max_al_sdu_audio_frames: u16,
        silence_suppression: bool,
    },
    G728(u16),
    G729(u16),
    G729AnnexA(u16),
    G729wAnnexB(u16),
    G729AnnexAwAnnexB(u16),
    /// `genericAudioCapability` (AMR, G.722.1, iLBC, ...).
    Generic(GenericCapability),
    /// nonStandard, IS 11172/13818, GSM, ...
    Other(UnknownAlt),
}

const AUDIO_ROOT: usize = 14;

impl AudioCapability {
    fn frames_alt(&self) -> Option<(Alt, u16)> {
        use AudioCapability as A;
        Some(match *self {
            A::G711Alaw64k(n) => (Alt::Root(1), n),
            A::G711Alaw56k(n) => (Alt::Root(2), n),
            A::G711Ulaw64k(n) => (Alt::Root(3), n),
            A::G711Ulaw56k(n) => (Alt::Root(4), n),
            A::G722_64k(n) => (Alt::Root(5), n),
            A::G722_56k(n) => (Alt::Root(6), n),
            A::G722_48k(n) => (Alt::Root(7), n),
            A::G728(n) => (Alt::Root(9), n),
            A::G729(n) => (Alt::Root(10), n),
            A::G729AnnexA(n) => (Alt::Root(11), n),
            A::G729wAnnexB(n) => (Alt::Ext(0), n),
            A::G729AnnexAwAnnexB(n) => (Alt::Ext(1), n),
            _ => return None,
        })
    }

    fn with_frames(alt: Alt, n: u16) -> Option<AudioCapability> {
        use AudioCapability as A;
        Some(match alt {
            Alt::Root(1) => A::G711Alaw64k(n),
            Alt::Root(2) => A::G711Alaw56k(n),
            Alt::Root(3) => A::G711Ulaw64k(n),
            Alt::Root(4) => A::G711Ulaw56k(n),
            Alt::Root(5) => A::G722_64k(n),
            Alt::Root(6) => A::G722_56k(n),
            Alt::Root(7) => A::G722_48k(n),
            Alt::Root(9) => A::G728(n),
            Alt::Root(10) => A::G729(n),
            Alt::Root(11) => A::G729AnnexA(n),
            Alt::Ext(0) => A::G729wAnnexB(n),
            Alt::Ext(1) => A::G729AnnexAwAnnexB(n),
            _ => return None,
        })
    }
}

impl Per for AudioCapability {
    fn decode(r: &mut Reader<'_>) -> Result<AudioCapability> {
        let alt = r.choice(AUDIO_ROOT, true)?;
        if let Some(probe) = AudioCapability::with_frames(alt, 1) {
            let n = match alt {
                Alt::Root(_) => r.number(1, 256)?,
                Alt::Ext(_) => {
                    let c = r.open_type()?;
                    r.nested(c, |r| r.number(1, 256))?
                }
            };
            return Ok(AudioCapability::with_frames(alt, n).unwrap_or(probe));
        }
        Ok(match alt {
            Alt::Root(8) => {
                let max_al_sdu_audio_frames = r.number(1, 256)?;
                let silence_suppression = r.boolean()?;
                AudioCapability::G7231 {
                    max_al_sdu_audio_frames,
                    silence_suppression,
                }
            }
            Alt::Ext(6) => {
                let c = r.open_type()?;
                AudioCapability::Generic(r.nested(c, GenericCapability::decode)?)
            }
            alt => {
                AudioCapability::Other(UnknownAlt::decode(r, &schema::H245_AUDIO_CAPABILITY, alt)?)
            }
        })
    }

    fn encode(&self, w: &mut Writer) {
        if let Some((alt, n)) = self.frames_alt() {
            match alt {
                Alt::Root(_) => {
                    w.choice(alt, AUDIO_ROOT, true);
                    w.constrained(i64::from(n), 1, 256);
                }
                Alt::Ext(i) => write_ext_alt(
                    w,
                    i,
                    AUDIO_ROOT,
                    &Writer::complete(|w| w.constrained(i64::from(n), 1, 256)),
                ),
            }
            return;
        }
        match self {
            AudioCapability::G7231 {
                max_al_sdu_audio_frames,
                silence_suppression,
            } => {
                w.choice(Alt::Root(8), AUDIO_ROOT, true);
                w.constrained(i64::from(*max_al_sdu_audio_frames), 1, 256);
                w.boolean(*silence_suppression);
            }
            AudioCapability::Generic(g) => {
                write_ext_alt(w, 6, AUDIO_ROOT, &Writer::complete(|w| g.encode(w)))
            }
            AudioCapability::Other(u) => u.encode(w, &schema::H245_AUDIO_CAPABILITY),
            // Covered by frames_alt.
            _ => w.choice(Alt::Root(3), AUDIO_ROOT, true),
        }
    }
}

/// CapabilityIdentifier (of a GenericCapability or GenericMessage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapabilityIdentifier {
    Standard(Oid),
    H221NonStandard(Opaque),
    Uuid([u8; 16]),
    DomainBased(String),
    Other(UnknownAlt),
}

static IDENTIFIER_SHAPE: Node = shape!(4);
const DOMAIN: Size = Size::range(1, 64);

impl Per for CapabilityIdentifier {
    fn decode(r: &mut Reader<'_>) -> Result<CapabilityIdentifier> {
        Ok(match r.choice(4, true)? {
            Alt::Root(0) => CapabilityIdentifier::Standard(r.object_identifier()?),
            Alt::Root(1) => CapabilityIdentifier::H221NonStandard(Opaque::decode(
                r,
                &schema::H245_NON_STANDARD_PARAMETER,
            )?),
            Alt::Root(2) => CapabilityIdentifier::Uuid(r.fixed_octets()?),
            Alt::Root(_) => CapabilityIdentifier::DomainBased(r.ia5_string(DOMAIN)?),
            alt => CapabilityIdentifier::Other(UnknownAlt::decode(r, &IDENTIFIER_SHAPE, alt)?),
        })
    }

    fn encode(&self, w: &mut Writer) {
        let root = |w: &mut Writer, i| w.choice(Alt::Root(i), 4, true);
        match self {
            CapabilityIdentifier::Standard(o) => {
                root(w, 0);
                w.object_identifier(o)
            }
            CapabilityIdentifier::H221NonStandard(o) => {
                root(w, 1);
                o.encode(w, &schema::H245_NON_STANDARD_PARAMETER)
            }
            CapabilityIdentifier::Uuid(u) => {
                root(w, 2);
                w.octet_string(u, Size::fixed(16))
            }
            CapabilityIdentifier::DomainBased(s) => {
                root(w, 3);
                w.ia5_string(s, DOMAIN)
            }
            CapabilityIdentifier::Other(u) => u.encode(w, &IDENTIFIER_SHAPE),
        }
    }
}

/// GenericCapability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericCapability {
    pub capability_identifier: CapabilityIdentifier,
    /// Units of 100 bit/s.
    pub max_bit_rate: Option<u32>,
    pub collapsing: Vec<GenericParameter>,
    pub non_collapsing: Vec<GenericParameter>,
    pub non_collapsing_raw: Option<Vec<u8>>,
    /// `transport` (a DataProtocolCapability), kept as it came.
    pub transport: Option<Opaque>,
}

impl GenericCapability {
    /// A capability with a standard identifier and nothing else.
    pub fn new(standard: Oid) -> GenericCapability {
        GenericCapability {
            capability_identifier: CapabilityIdentifier::Standard(standard),
            max_bit_rate: None,
            collapsing: Vec::new(),
            non_collapsing: Vec::new(),
            non_collapsing_raw: None,
            transport: None,
        }
    }

    /// Whether the identifier is the standard OID `oid`.
    pub fn is_standard(&self, oid: &[u32]) -> bool {
        matches!(&self.capability_identifier, CapabilityIdentifier::Standard(o) if o.arcs() == oid)
    }

    /// The collapsing or non-collapsing parameter with standard id `id`.
    pub fn parameter(&self, id: u8) -> Option<&ParameterValue> {
        self.collapsing
            .iter()
            .chain(&self.non_collapsing)
            .find(|p| p.id == ParameterIdentifier::Standard(id))
            .map(|p| &p.value)
    }
}

impl Per for GenericCapability {
    fn decode(r: &mut Reader<'_>) -> Result<GenericCapability> {
        let pre = r.preamble(true, 5)?;
        let capability_identifier = CapabilityIdentifier::decode(r)?;
        let max_bit_rate = pre.has(0).then(|| r.number(0, 4_294_967_295)).transpose()?;
        let collapsing = if pre.has(1) {
            list(r, Size::UNBOUNDED)?
        } else {
            Vec::new()
        };
        let non_collapsing = if pre.has(2) {
            list(r, Size::UNBOUNDED)?
        } else {
            Vec::new()
        };
        let non_collapsing_raw = pre
            .has(3)
            .then(|| r.octet_string(Size::UNBOUNDED))
            .transpose()?;
        let transport = pre
            .has(4)
            .then(|| Opaque::decode(r, &schema::H245_DATA_PROTOCOL_CAPABILITY))
            .transpose()?;
        extensions(r, pre.extended)?;
        Ok(GenericCapability {
            capability_identifier,
            max_bit_rate,
            collapsing,
            non_collapsing,
            non_collapsing_raw,
            transport,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(
            Some(false),
            &[
                self.max_bit_rate.is_some(),
                !self.collapsing.is_empty(),
                !self.non_collapsing.is_empty(),
                self.non_collapsing_raw.is_some(),
                self.transport.is_some(),
            ],
        );
        self.capability_identifier.encode(w);
        if let Some(b) = self.max_bit_rate {
            w.constrained(i64::from(b), 0, 4_294_967_295);
        }
        if !self.collapsing.is_empty() {
            write_list(w, &self.collapsing, Size::UNBOUNDED);
        }
        if !self.non_collapsing.is_empty() {
            write_list(w, &self.non_collapsing, Size::UNBOUNDED);
        }
        if let Some(raw) = &self.non_collapsing_raw {
            w.octet_string(raw, Size::UNBOUNDED);
        }
        if let Some(t) = &self.transport {
            t.encode(w, &schema::H245_DATA_PROTOCOL_CAPABILITY);
        }
    }
}

/// GenericParameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericParameter {
    pub id: ParameterIdentifier,
    pub value: ParameterValue,
    pub supersedes: Vec<ParameterIdentifier>,
}

impl GenericParameter {
    pub fn standard(id: u8, value: ParameterValue) -> GenericParameter {
        GenericParameter {
            id: ParameterIdentifier::Standard(id),
            value,
            supersedes: Vec::new(),
        }
    }
}

impl Per for GenericParameter {
    fn decode(r: &mut Reader<'_>) -> Result<GenericParameter> {
        let pre = r.preamble(true, 1)?;
        let id = ParameterIdentifier::decode(r)?;
        let value = ParameterValue::decode(r)?;
        let supersedes = if pre.has(0) {
            list(r, Size::UNBOUNDED)?
        } else {
            Vec::new()
        };
        extensions(r, pre.extended)?;
        Ok(GenericParameter {
            id,
            value,
            supersedes,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(Some(false), &[!self.supersedes.is_empty()]);
        self.id.encode(w);
        self.value.encode(w);
        if !self.supersedes.is_empty() {
            write_list(w, &self.supersedes, Size::UNBOUNDED);
        }
    }
}

/// ParameterIdentifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParameterIdentifier {
    /// 0..=127.
    Standard(u8),
    H221NonStandard(Opaque),
    Uuid([u8; 16]),
    DomainBased(String),
    Other(UnknownAlt),
}

impl Per for ParameterIdentifier {
    fn decode(r: &mut Reader<'_>) -> Result<ParameterIdentifier> {
        Ok(match r.choice(4, true)? {
            Alt::Root(0) => ParameterIdentifier::Standard(r.number(0, 127)?),
            Alt::Root(1) => ParameterIdentifier::H221NonStandard(Opaque::decode(
                r,
                &schema::H245_NON_STANDARD_PARAMETER,
            )?),
            Alt::Root(2) => ParameterIdentifier::Uuid(r.fixed_octets()?),
            Alt::Root(_) => ParameterIdentifier::DomainBased(r.ia5_string(DOMAIN)?),
            alt => ParameterIdentifier::Other(UnknownAlt::decode(r, &IDENTIFIER_SHAPE, alt)?),
        })
    }

    fn encode(&self, w: &mut Writer) {
        let root = |w: &mut Writer, i| w.choice(Alt::Root(i), 4, true);
        match self {
            ParameterIdentifier::Standard(n) => {
                root(w, 0);
                w.constrained(i64::from(*n), 0, 127)
            }
            ParameterIdentifier::H221NonStandard(o) => {
                root(w, 1);
                o.encode(w, &schema::H245_NON_STANDARD_PARAMETER)
            }
            ParameterIdentifier::Uuid(u) => {
                root(w, 2);
                w.octet_string(u, Size::fixed(16))
            }
            ParameterIdentifier::DomainBased(s) => {
                root(w, 3);
                w.ia5_string(s, DOMAIN)
            }
            ParameterIdentifier::Other(u) => u.encode(w, &IDENTIFIER_SHAPE),
        }
    }
}

/// ParameterValue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParameterValue {
    Logical,
    BooleanArray(u8),
    UnsignedMin(u16),
    UnsignedMax(u16),
    Unsigned32Min(u32),
    Unsigned32Max(u32),
    OctetString(Vec<u8>),
    GenericParameter(Vec<GenericParameter>),
    Other(UnknownAlt),
}

static VALUE_SHAPE: Node = shape!(8);

impl ParameterValue {
    /// The value as a number, whichever numeric kind it is.
    pub fn number(&self) -> Option<u32> {
        match *self {
            ParameterValue::BooleanArray(n) => Some(n.into()),
            ParameterValue::UnsignedMin(n) | ParameterValue::UnsignedMax(n) => Some(n.into()),
            ParameterValue::Unsigned32Min(n) | ParameterValue::Unsigned32Max(n) => Some(n),
            _ => None,
        }
    }
}

impl Per for ParameterValue {
    fn decode(r: &mut Reader<'_>) -> Result<ParameterValue> {
        const U32: i64 = 4_294_967_295;
        Ok(match r.choice(8, true)? {
            Alt::Root(0) => ParameterValue::Logical,
            Alt::Root(1) => ParameterValue::BooleanArray(r.number(0, 255)?),
            Alt::Root(2) => ParameterValue::UnsignedMin(r.number(0, 65535)?),
            Alt::Root(3) => ParameterValue::UnsignedMax(r.number(0, 65535)?),
            Alt::Root(4) => ParameterValue::Unsigned32Min(r.number(0, U32)?),
            Alt::Root(5) => ParameterValue::Unsigned32Max(r.number(0, U32)?),
            Alt::Root(6) => ParameterValue::OctetString(r.octet_string(Size::UNBOUNDED)?),
            Alt::Root(_) => {
                ParameterValue::GenericParameter(r.deeper(|r| list(r, Size::UNBOUNDED))?)
            }
            alt => ParameterValue::Other(UnknownAlt::decode(r, &VALUE_SHAPE, alt)?),
        })
    }

    fn encode(&self, w: &mut Writer) {
        const U32: i64 = 4_294_967_295;
        let root = |w: &mut Writer, i| w.choice(Alt::Root(i), 8, true);
        match self {
            ParameterValue::Logical => root(w, 0),
            ParameterValue::BooleanArray(n) => {
                root(w, 1);
                w.constrained(i64::from(*n), 0, 255)
            }
            ParameterValue::UnsignedMin(n) => {
                root(w, 2);
                w.constrained(i64::from(*n), 0, 65535)
            }
            ParameterValue::UnsignedMax(n) => {
                root(w, 3);
                w.constrained(i64::from(*n), 0, 65535)
            }
            ParameterValue::Unsigned32Min(n) => {
                root(w, 4);
                w.constrained(i64::from(*n), 0, U32)
            }
            ParameterValue::Unsigned32Max(n) => {
                root(w, 5);
                w.constrained(i64::from(*n), 0, U32)
            }
            ParameterValue::OctetString(b) => {
                root(w, 6);
                w.octet_string(b, Size::UNBOUNDED)
            }
            ParameterValue::GenericParameter(ps) => {
                root(w, 7);
                write_list(w, ps, Size::UNBOUNDED)
            }
            ParameterValue::Other(u) => u.encode(w, &VALUE_SHAPE),
        }
    }
}

/// GenericMessage (genericRequest, genericResponse, genericCommand,
/// genericIndication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericMessage {
    pub message_identifier: CapabilityIdentifier,
    pub sub_message_identifier: Option<u8>,
    pub message_content: Vec<GenericParameter>,
}

impl Per for GenericMessage {
    fn decode(r: &mut Reader<'_>) -> Result<GenericMessage> {
        let pre = r.preamble(true, 2)?;
        let message_identifier = CapabilityIdentifier::decode(r)?;
        let sub_message_identifier = pre.has(0).then(|| r.number(0, 127)).transpose()?;
        let message_content = if pre.has(1) {
            list(r, Size::UNBOUNDED)?
        } else {
            Vec::new()
        };
        extensions(r, pre.extended)?;
        Ok(GenericMessage {
            message_identifier,
            sub_message_identifier,
            message_content,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(
            Some(false),
            &[
                self.sub_message_identifier.is_some(),
                !self.message_content.is_empty(),
            ],
        );
        self.message_identifier.encode(w);
        if let Some(s) = self.sub_message_identifier {
            w.constrained(i64::from(s), 0, 127);
        }
        if !self.message_content.is_empty() {
            write_list(w, &self.message_content, Size::UNBOUNDED);
        }
    }
}

/// `DataType` of a logical channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataType {
    /// `nullData`: the forward direction of a Fast Connect proposal for
    /// the caller's receive direction.
    Null,
    Video(VideoCapability),
    Audio(AudioCapability),
    /// nonStandard, data, encryptionData, H.235 media, redundancy, ...
    Other(UnknownAlt),
}

impl Per for DataType {
    fn decode(r: &mut Reader<'_>) -> Result<DataType> {
        Ok(match r.choice(6, true)? {
            Alt::Root(1) => DataType::Null,
            Alt::Root(2) => DataType::Video(VideoCapability::decode(r)?),
            Alt::Root(3) => DataType::Audio(AudioCapability::decode(r)?),
            alt => DataType::Other(UnknownAlt::decode(r, &schema::H245_DATA_TYPE, alt)?),
        })
    }

    fn encode(&self, w: &mut Writer) {
        match self {
            DataType::Null => w.choice(Alt::Root(1), 6, true),
            DataType::Video(v) => {
                w.choice(Alt::Root(2), 6, true);
                v.encode(w)
            }
            DataType::Audio(a) => {
                w.choice(Alt::Root(3), 6, true);
                a.encode(w)
            }
            DataType::Other(u) => u.encode(w, &schema::H245_DATA_TYPE),
        }
    }
}

/// H.245 `TransportAddress` (media and RTCP addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportAddress {
    /// unicastAddress iPAddress.
    Ipv4 {
        network: [u8; 4],
        tsap_identifier: u16,
    },
    /// unicastAddress iP6Address.
    Ipv6 {
        network: [u8; 16],
        tsap_identifier: u16,
    },
    /// Another unicastAddress (IPX, NetBIOS, source route, NSAP, ...).
    Unicast(UnknownAlt),
    /// multicastAddress, kept as it came.
    Multicast(Opaque),
    Other(UnknownAlt),
}

static TRANSPORT_SHAPE: Node = shape!(2);

impl TransportAddress {
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            TransportAddress::Ipv4 {
                network,
                tsap_identifier,
            } => Some(SocketAddr::new(
                Ipv4Addr::from(*network).into(),
                *tsap_identifier,
            )),
            TransportAddress::Ipv6 {
                network,
                tsap_identifier,
            } => Some(SocketAddr::new(
                Ipv6Addr::from(*network).into(),
                *tsap_identifier,
            )),
            _ => None,
        }
    }
}

impl From<SocketAddr> for TransportAddress {
    fn from(a: SocketAddr) -> TransportAddress {
        match a.ip() {
            IpAddr::V4(ip) => TransportAddress::Ipv4 {
                network: ip.octets(),
                tsap_identifier: a.port(),
            },
            IpAddr::V6(ip) => TransportAddress::Ipv6 {
                network: ip.octets(),
                tsap_identifier: a.port(),
            },
        }
    }
}

impl Per for TransportAddress {
    fn decode(r: &mut Reader<'_>) -> Result<TransportAddress> {
        Ok(match r.choice(2, true)? {
            Alt::Root(0) => match r.choice(5, true)? {
                Alt::Root(0) => {
                    let pre = r.preamble(true, 0)?;
                    let network = r.fixed_octets()?;
                    let tsap_identifier = r.number(0, 65535)?;
                    extensions(r, pre.extended)?;
                    TransportAddress::Ipv4 {
                        network,
                        tsap_identifier,
                    }
                }
                Alt::Root(2) => {
                    let pre = r.preamble(true, 0)?;
                    let network = r.fixed_octets()?;
                    let tsap_identifier = r.number(0, 65535)?;
                    extensions(r, pre.extended)?;
                    TransportAddress::Ipv6 {
                        network,
                        tsap_identifier,
                    }
                }
                alt => TransportAddress::Unicast(UnknownAlt::decode(
                    r,
                    &schema::H245_UNICAST_ADDRESS,
                    alt,
                )?),
            },
            Alt::Root(_) => {
                TransportAddress::Multicast(Opaque::decode(r, &schema::H245_MULTICAST_ADDRESS)?)
            }
            alt => TransportAddress::Other(UnknownAlt::decode(r, &TRANSPORT_SHAPE, alt)?),
        })
    }

    fn encode(&self, w: &mut Writer) {
        match self {
            TransportAddress::Ipv4 {
                network,
                tsap_identifier,
            } => {
                w.choice(Alt::Root(0), 2, true);
                w.choice(Alt::Root(0), 5, true);
                w.preamble(Some(false), &[]);
                w.octet_string(network, Size::fixed(4));
                w.constrained(i64::from(*tsap_identifier), 0, 65535);
            }
            TransportAddress::Ipv6 {
                network,
                tsap_identifier,
            } => {
                w.choice(Alt::Root(0), 2, true);
                w.choice(Alt::Root(2), 5, true);
                w.preamble(Some(false), &[]);
                w.octet_string(network, Size::fixed(16));
                w.constrained(i64::from(*tsap_identifier), 0, 65535);
            }
            TransportAddress::Unicast(u) => {
                w.choice(Alt::Root(0), 2, true);
                u.encode(w, &schema::H245_UNICAST_ADDRESS);
            }
            TransportAddress::Multicast(o) => {
                w.choice(Alt::Root(1), 2, true);
                o.encode(w, &schema::H245_MULTICAST_ADDRESS);
            }
            TransportAddress::Other(u) => u.encode(w, &TRANSPORT_SHAPE),
        }
    }
}

/// TerminalLabel: an MCU number and a terminal number (H.243).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalLabel {
    pub mcu_number: u8,
    pub terminal_number: u8,
}

impl Per for TerminalLabel {
    fn decode(r: &mut Reader<'_>) -> Result<TerminalLabel> {
        let pre = r.preamble(true, 0)?;
        let mcu_number = r.number(0, 192)?;
        let terminal_number = r.number(0, 192)?;
        extensions(r, pre.extended)?;
        Ok(TerminalLabel {
            mcu_number,
            terminal_number,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(Some(false), &[]);
        w.constrained(i64::from(self.mcu_number), 0, 192);
        w.constrained(i64::from(self.terminal_number), 0, 192);
    }
}

/// `mediaPacketization` of H2250LogicalChannelParameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaPacketization {
    H261aVideo,
    RtpPayloadType(RtpPayloadType),
    Other(UnknownAlt),
}

static PACKETIZATION_SHAPE: Node = shape!(1);

impl Per for MediaPacketization {
    fn decode(r: &mut Reader<'_>) -> Result<MediaPacketization> {
        Ok(match r.choice(1, true)? {
            Alt::Root(_) => MediaPacketization::H261aVideo,
            Alt::Ext(0) => {
                let c = r.open_type()?;
                MediaPacketization::RtpPayloadType(r.nested(c, RtpPayloadType::decode)?)
            }
            alt => MediaPacketization::Other(UnknownAlt::decode(r, &PACKETIZATION_SHAPE, alt)?),
        })
    }

    fn encode(&self, w: &mut Writer) {
        match self {
            MediaPacketization::H261aVideo => w.choice(Alt::Root(0), 1, true),
            MediaPacketization::RtpPayloadType(p) => {
                write_ext_alt(w, 0, 1, &Writer::complete(|w| p.encode(w)))
            }
            MediaPacketization::Other(u) => u.encode(w, &PACKETIZATION_SHAPE),
        }
    }
}

/// RTPPayloadType: which RTP payload format (by RFC number or OID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPayloadType {
    pub descriptor: PayloadDescriptor,
    pub payload_type: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadDescriptor {
    NonStandard(Opaque),
    RfcNumber(u16),
    Oid(Oid),
    Other(UnknownAlt),
}

static DESCRIPTOR_SHAPE: Node = shape!(3);

impl Per for RtpPayloadType {
    fn decode(r: &mut Reader<'_>) -> Result<RtpPayloadType> {
        let pre = r.preamble(true, 1)?;
        let descriptor = match r.choice(3, true)? {
            Alt::Root(0) => PayloadDescriptor::NonStandard(Opaque::decode(
                r,
                &schema::H245_NON_STANDARD_PARAMETER,
            )?),
            Alt::Root(1) => {
                let n = r.constrained_ext(1, 32768)?;
                PayloadDescriptor::RfcNumber(
                    u16::try_from(n).map_err(|_| super::per::PerError::Constraint("rfc-number"))?,
                )
            }
            Alt::Root(_) => PayloadDescriptor::Oid(r.object_identifier()?),
            alt => PayloadDescriptor::Other(UnknownAlt::decode(r, &DESCRIPTOR_SHAPE, alt)?),
        };
        let payload_type = pre.has(0).then(|| r.number(0, 127)).transpose()?;
        extensions(r, pre.extended)?;
        Ok(RtpPayloadType {
            descriptor,
            payload_type,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(Some(false), &[self.payload_type.is_some()]);
        match &self.descriptor {
            PayloadDescriptor::NonStandard(o) => {
                w.choice(Alt::Root(0), 3, true);
                o.encode(w, &schema::H245_NON_STANDARD_PARAMETER);
            }
            PayloadDescriptor::RfcNumber(n) => {
                w.choice(Alt::Root(1), 3, true);
                w.constrained_ext(i64::from(*n), 1, 32768);
            }
            PayloadDescriptor::Oid(o) => {
                w.choice(Alt::Root(2), 3, true);
                w.object_identifier(o);
            }
            PayloadDescriptor::Other(u) => u.encode(w, &DESCRIPTOR_SHAPE),
        }
        if let Some(pt) = self.payload_type {
            w.constrained(i64::from(pt), 0, 127);
        }
    }
}

/// H2250LogicalChannelParameters: the RTP session of a logical channel.
/// Its nonStandard list and the extension additions are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct H2250LogicalChannelParameters {
    /// 1 audio, 2 video, 3 data (H.323 §6.2.8.x); 0 asks the master to
    /// assign one (an H.239 content channel opened by the slave).
    pub session_id: u8,
    pub associated_session_id: Option<u8>,
    /// Where to send RTP (in an OLC: the receiver's address).
    pub media_channel: Option<TransportAddress>,
    pub media_guaranteed_delivery: Option<bool>,
    /// Where to send RTCP.
    pub media_control_channel: Option<TransportAddress>,
    pub media_control_guaranteed_delivery: Option<bool>,
    pub silence_suppression: Option<bool>,
    pub destination: Option<TerminalLabel>,
    pub dynamic_rtp_payload_type: Option<u8>,
    pub media_packetization: Option<MediaPacketization>,
}

impl Per for H2250LogicalChannelParameters {
    fn decode(r: &mut Reader<'_>) -> Result<H2250LogicalChannelParameters> {
        let pre = r.preamble(true, 10)?;
        if pre.has(0) {
            let n = r.count(Size::UNBOUNDED)?;
            for _ in 0..n {
                Opaque::skip(r, &schema::H245_NON_STANDARD_PARAMETER)?;
            }
        }
        let session_id = r.number(0, 255)?;
        let associated_session_id = pre.has(1).then(|| r.number(1, 255)).transpose()?;
        let media_channel = pre
            .has(2)
            .then(|| TransportAddress::decode(r))
            .transpose()?;
        let media_guaranteed_delivery = pre.has(3).then(|| r.boolean()).transpose()?;
        let media_control_channel = pre
            .has(4)
            .then(|| TransportAddress::decode(r))
            .transpose()?;
        let media_control_guaranteed_delivery = pre.has(5).then(|| r.boolean()).transpose()?;
        let silence_suppression = pre.has(6).then(|| r.boolean()).transpose()?;
        let destination = pre.has(7).then(|| TerminalLabel::decode(r)).transpose()?;
        let dynamic_rtp_payload_type = pre.has(8).then(|| r.number(96, 127)).transpose()?;
        let media_packetization = pre
            .has(9)
            .then(|| MediaPacketization::decode(r))
            .transpose()?;
        extensions(r, pre.extended)?;
        Ok(H2250LogicalChannelParameters {
            session_id,
            associated_session_id,
            media_channel,
            media_guaranteed_delivery,
            media_control_channel,
            media_control_guaranteed_delivery,
            silence_suppression,
            destination,
            dynamic_rtp_payload_type,
            media_packetization,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(
            Some(false),
            &[
                false,
                self.associated_session_id.is_some(),
                self.media_channel.is_some(),
                self.media_guaranteed_delivery.is_some(),
                self.media_control_channel.is_some(),
                self.media_control_guaranteed_delivery.is_some(),
                self.silence_suppression.is_some(),
                self.destination.is_some(),
                self.dynamic_rtp_payload_type.is_some(),
                self.media_packetization.is_some(),
            ],
        );
        w.constrained(i64::from(self.session_id), 0, 255);
        if let Some(a) = self.associated_session_id {
            w.constrained(i64::from(a), 1, 255);
        }
        if let Some(a) = &self.media_channel {
            a.encode(w);
        }
        if let Some(b) = self.media_guaranteed_delivery {
            w.boolean(b);
        }
        if let Some(a) = &self.media_control_channel {
            a.encode(w);
        }
        if let Some(b) = self.media_control_guaranteed_delivery {
            w.boolean(b);
        }
        if let Some(b) = self.silence_suppression {
            w.boolean(b);
        }
        if let Some(d) = &self.destination {
            d.encode(w);
        }
        if let Some(pt) = self.dynamic_rtp_payload_type {
            w.constrained(i64::from(pt), 96, 127);
        }
        if let Some(p) = &self.media_packetization {
            p.encode(w);
        }
    }
}

/// `multiplexParameters` of a logical channel. The H.222, H.223 and V.76
/// alternatives (not H.323's) are kept as `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiplexParameters {
    H2250(H2250LogicalChannelParameters),
    /// `none` (forward parameters of a Fast Connect reverse proposal only;
    /// where the CHOICE has no `none` it is left out).
    None,
    Other(UnknownAlt),
}

/// Where multiplexParameters appear: the CHOICEs differ in their root
/// alternatives (h2250 is always extension alternative 0).
#[derive(Clone, Copy)]
enum MuxContext {
    Forward,
    Reverse,
    AckReverse,
}

impl MuxContext {
    fn shape(self) -> &'static Node {
        match self {
            MuxContext::Forward => &schema::H245_OLC_FORWARD_MULTIPLEX,
            MuxContext::Reverse => &schema::H245_OLC_REVERSE_MULTIPLEX,
            MuxContext::AckReverse => &schema::H245_OLC_ACK_REVERSE_MULTIPLEX,
        }
    }

    fn root(self) -> usize {
        match self {
            MuxContext::Forward => 3,
            MuxContext::Reverse => 2,
            MuxContext::AckReverse => 1,
        }
    }
}

impl MultiplexParameters {
    fn decode_in(r: &mut Reader<'_>, ctx: MuxContext) -> Result<MultiplexParameters> {
        Ok(match r.choice(ctx.root(), true)? {
            Alt::Ext(0) => {
                let c = r.open_type()?;
                MultiplexParameters::H2250(r.nested(c, H2250LogicalChannelParameters::decode)?)
            }
            Alt::Ext(1) if matches!(ctx, MuxContext::Forward) => {
                skip_open(r)?;
                MultiplexParameters::None
            }
            alt => MultiplexParameters::Other(UnknownAlt::decode(r, ctx.shape(), alt)?),
        })
    }

    fn encode_in(&self, w: &mut Writer, ctx: MuxContext) {
        match self {
            MultiplexParameters::H2250(p) => {
                write_ext_alt(w, 0, ctx.root(), &Writer::complete(|w| p.encode(w)))
            }
            MultiplexParameters::None => write_ext_alt(w, 1, ctx.root(), &[0]),
            MultiplexParameters::Other(u) => u.encode(w, ctx.shape()),
        }
    }

    /// The H.225.0 parameters, if these are.
    pub fn h2250(&self) -> Option<&H2250LogicalChannelParameters> {
        match self {
            MultiplexParameters::H2250(p) => Some(p),
            _ => None,
        }
    }

    fn h2250_mut(&mut self) -> Option<&mut H2250LogicalChannelParameters> {
        match self {
            MultiplexParameters::H2250(p) => Some(p),
            _ => None,
        }
    }
}

/// OpenLogicalChannel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenLogicalChannel {
    pub forward_logical_channel_number: u16,
    pub forward: ForwardLogicalChannelParameters,
    pub reverse: Option<ReverseLogicalChannelParameters>,
}

/// forwardLogicalChannelParameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardLogicalChannelParameters {
    pub port_number: Option<u16>,
    pub data_type: DataType,
    pub multiplex_parameters: MultiplexParameters,
    pub forward_logical_channel_dependency: Option<u16>,
    pub replacement_for: Option<u16>,
}

/// reverseLogicalChannelParameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReverseLogicalChannelParameters {
    pub data_type: DataType,
    pub multiplex_parameters: Option<MultiplexParameters>,
    pub reverse_logical_channel_dependency: Option<u16>,
    pub replacement_for: Option<u16>,
}

impl OpenLogicalChannel {
    /// A unidirectional channel of ours: `data_type` to the peer over RTP,
    /// with our RTCP address.
    pub fn new(
        number: u16,
        data_type: DataType,
        session_id: u8,
        media_control_channel: SocketAddr,
    ) -> OpenLogicalChannel {
        OpenLogicalChannel {
            forward_logical_channel_number: number,
            forward: ForwardLogicalChannelParameters {
                port_number: None,
                data_type,
                multiplex_parameters: MultiplexParameters::H2250(H2250LogicalChannelParameters {
                    session_id,
                    media_control_channel: Some(media_control_channel.into()),
                    ..H2250LogicalChannelParameters::default()
                }),
                forward_logical_channel_dependency: None,
                replacement_for: None,
            },
            reverse: None,
        }
    }

    /// A Fast Connect proposal of the caller's receive direction (H.323
    /// §8.1.7.1): forward `nullData`, and `data_type` in the reverse
    /// parameters with where the caller receives RTP (`rtp`) and RTCP
    /// (`rtcp`) and, for a dynamic format, its payload type.
    pub fn receive_proposal(
        number: u16,
        data_type: DataType,
        session_id: u8,
        rtp: SocketAddr,
        rtcp: SocketAddr,
        dynamic_rtp_payload_type: Option<u8>,
    ) -> OpenLogicalChannel {
        OpenLogicalChannel {
            forward_logical_channel_number: number,
            forward: ForwardLogicalChannelParameters {
                port_number: None,
                data_type: DataType::Null,
                multiplex_parameters: MultiplexParameters::None,
                forward_logical_channel_dependency: None,
                replacement_for: None,
            },
            reverse: Some(ReverseLogicalChannelParameters {
                data_type,
                multiplex_parameters: Some(MultiplexParameters::H2250(
                    H2250LogicalChannelParameters {
                        session_id,
                        media_channel: Some(rtp.into()),
                        media_control_channel: Some(rtcp.into()),
                        dynamic_rtp_payload_type,
                        ..H2250LogicalChannelParameters::default()
                    },
                )),
                reverse_logical_channel_dependency: None,
                replacement_for: None,
            }),
        }
    }

    /// The H.239 presentation channel of ours: H.264 `video` in the
    /// presentation role. `session_id` is 0 unless we are master (H.239:
    /// the master assigns the session), `dynamic_rtp_payload_type` is the
    /// H.264 payload type we send.
    pub fn presentation(
        number: u16,
        video: &H264Capability,
        session_id: u8,
        dynamic_rtp_payload_type: u8,
        media_control_channel: SocketAddr,
    ) -> OpenLogicalChannel {
        let mut olc = OpenLogicalChannel::new(
            number,
            DataType::Video(VideoCapability::presentation(video.to_generic())),
            session_id,
            media_control_channel,
        );
        if let Some(p) = olc.forward.multiplex_parameters.h2250_mut() {
            p.dynamic_rtp_payload_type = Some(dynamic_rtp_payload_type);
        }
        olc
    }

    /// Whether this proposes the caller's receive direction (Fast Connect:
    /// forward `nullData`, the codec in the reverse parameters).
    pub fn is_reverse_proposal(&self) -> bool {
        self.forward.data_type == DataType::Null && self.reverse.is_some()
    }

    /// The media description of the direction this channel carries:
    /// reverse parameters for a reverse proposal, forward otherwise.
    pub fn media(&self) -> (&DataType, Option<&H2250LogicalChannelParameters>) {
        match (&self.reverse, self.is_reverse_proposal()) {
            (Some(rev), true) => (
                &rev.data_type,
                rev.multiplex_parameters
                    .as_ref()
                    .and_then(MultiplexParameters::h2250),
            ),
            _ => (
                &self.forward.data_type,
                self.forward.multiplex_parameters.h2250(),
            ),
        }
    }

    /// Accepts a Fast Connect proposal (H.323 §8.1.7.1), for the callee's
    /// Alerting, Call Proceeding or Connect:
    /// - a proposal for the caller to send (forward parameters carry the
    ///   codec): echoed with our RTP receive address `rtp` and our RTCP
    ///   address `rtcp` in the forward H.225.0 parameters;
    /// - a proposal for the caller to receive (forward `nullData`): echoed
    ///   with `our_number` as the forward logical channel number (the
    ///   number we send on) and our RTCP address in the reverse
    ///   parameters; the caller's RTP address stays where it was.
    pub fn fast_start_answer(
        &self,
        our_number: u16,
        rtp: SocketAddr,
        rtcp: SocketAddr,
    ) -> OpenLogicalChannel {
        let mut olc = self.clone();
        if olc.is_reverse_proposal() {
            olc.forward_logical_channel_number = our_number;
            if let Some(p) = olc
                .reverse
                .as_mut()
                .and_then(|r| r.multiplex_parameters.as_mut())
                .and_then(MultiplexParameters::h2250_mut)
            {
                p.media_control_channel = Some(rtcp.into());
            }
        } else if let Some(p) = olc.forward.multiplex_parameters.h2250_mut() {
            p.media_channel = Some(rtp.into());
            p.media_control_channel = Some(rtcp.into());
        }
        olc
    }

    pub fn decode(bytes: &[u8]) -> Result<OpenLogicalChannel> {
        OpenLogicalChannel::decode_from(&mut Reader::new(bytes))
    }

    pub fn encode(&self) -> Vec<u8> {
        Writer::complete(|w| self.encode_to(w))
    }

    pub fn to_message(self) -> Message {
        Message::Request(Request::OpenLogicalChannel(Box::new(self)))
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<OpenLogicalChannel> {
        let pre = r.preamble(true, 1)?;
        let forward_logical_channel_number = lcn(r)?;
        let fwd = r.preamble(true, 1)?;
        let port_number = fwd.has(0).then(|| r.number(0, 65535)).transpose()?;
        let data_type = DataType::decode(r)?;
        let multiplex_parameters = MultiplexParameters::decode_in(r, MuxContext::Forward)?;
        let e = extensions(r, fwd.extended)?;
        let forward = ForwardLogicalChannelParameters {
            port_number,
            data_type,
            multiplex_parameters,
            forward_logical_channel_dependency: ext(r, &e, 0, lcn)?,
            replacement_for: ext(r, &e, 1, lcn)?,
        };
        let reverse = if pre.has(0) {
            let rev = r.preamble(true, 1)?;
            let data_type = DataType::decode(r)?;
            let multiplex_parameters = rev
                .has(0)
                .then(|| MultiplexParameters::decode_in(r, MuxContext::Reverse))
                .transpose()?;
            let e = extensions(r, rev.extended)?;
            Some(ReverseLogicalChannelParameters {
                data_type,
                multiplex_parameters,
                reverse_logical_channel_dependency: ext(r, &e, 0, lcn)?,
                replacement_for: ext(r, &e, 1, lcn)?,
            })
        } else {
            None
        };
        extensions(r, pre.extended)?;
        Ok(OpenLogicalChannel {
            forward_logical_channel_number,
            forward,
            reverse,
        })
    }

    fn encode_to(&self, w: &mut Writer) {
        w.preamble(Some(false), &[self.reverse.is_some()]);
        write_lcn(w, self.forward_logical_channel_number);
        let f = &self.forward;
        let f_ext = lcn_additions(f.forward_logical_channel_dependency, f.replacement_for);
        w.preamble(Some(!f_ext.is_empty()), &[f.port_number.is_some()]);
        if let Some(p) = f.port_number {
            w.constrained(i64::from(p), 0, 65535);
        }
        f.data_type.encode(w);
        f.multiplex_parameters.encode_in(w, MuxContext::Forward);
        if !f_ext.is_empty() {
            w.extensions(2, &f_ext);
        }
        if let Some(rev) = &self.reverse {
            let mux = rev
                .multiplex_parameters
                .as_ref()
                .filter(|m| !matches!(m, MultiplexParameters::None));
            let r_ext = lcn_additions(rev.reverse_logical_channel_dependency, rev.replacement_for);
            w.preamble(Some(!r_ext.is_empty()), &[mux.is_some()]);
            rev.data_type.encode(w);
            if let Some(m) = mux {
                m.encode_in(w, MuxContext::Reverse);
            }
            if !r_ext.is_empty() {
                w.extensions(2, &r_ext);
            }
        }
    }
}

/// Two optional LogicalChannelNumber extension additions (dependency,
/// replacementFor).
fn lcn_additions(a: Option<u16>, b: Option<u16>) -> Vec<(usize, Vec<u8>)> {
    [a, b]
        .into_iter()
        .enumerate()
        .filter_map(|(i, n)| n.map(|n| (i, Writer::complete(|w| write_lcn(w, n)))))
        .collect()
}

/// OpenLogicalChannelAck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenLogicalChannelAck {
    pub forward_logical_channel_number: u16,
    pub reverse: Option<OlcAckReverse>,
    /// `forwardMultiplexAckParameters`: where the acknowledging side
    /// receives the channel's RTP and RTCP.
    pub forward_multiplex_ack: Option<H2250LogicalChannelAckParameters>,
}

/// reverseLogicalChannelParameters of an OpenLogicalChannelAck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OlcAckReverse {
    pub reverse_logical_channel_number: u16,
    pub port_number: Option<u16>,
    pub multiplex_parameters: Option<MultiplexParameters>,
}

/// H2250LogicalChannelAckParameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct H2250LogicalChannelAckParameters {
    pub session_id: Option<u8>,
    pub media_channel: Option<TransportAddress>,
    pub media_control_channel: Option<TransportAddress>,
    pub dynamic_rtp_payload_type: Option<u8>,
    pub flow_control_to_zero: Option<bool>,
    pub port_number: Option<u16>,
}

impl OpenLogicalChannelAck {
    /// Accepts channel `number`: send RTP to `rtp`, RTCP to `rtcp`.
    pub fn new(
        number: u16,
        session_id: u8,
        rtp: SocketAddr,
        rtcp: SocketAddr,
    ) -> OpenLogicalChannelAck {
        OpenLogicalChannelAck {
            forward_logical_channel_number: number,
            reverse: None,
            forward_multiplex_ack: Some(H2250LogicalChannelAckParameters {
                session_id: (session_id > 0).then_some(session_id),
                media_channel: Some(rtp.into()),
                media_control_channel: Some(rtcp.into()),
                ..H2250LogicalChannelAckParameters::default()
            }),
        }
    }

    pub fn to_message(self) -> Message {
        Message::Response(Response::OpenLogicalChannelAck(self))
    }

    fn decode(r: &mut Reader<'_>) -> Result<OpenLogicalChannelAck> {
        let pre = r.preamble(true, 1)?;
        let forward_logical_channel_number = lcn(r)?;
        let reverse = if pre.has(0) {
            let rev = r.preamble(true, 2)?;
            let reverse_logical_channel_number = lcn(r)?;
            let port_number = rev.has(0).then(|| r.number(0, 65535)).transpose()?;
            let multiplex_parameters = rev
                .has(1)
                .then(|| MultiplexParameters::decode_in(r, MuxContext::AckReverse))
                .transpose()?;
            extensions(r, rev.extended)?;
            Some(OlcAckReverse {
                reverse_logical_channel_number,
                port_number,
                multiplex_parameters,
            })
        } else {
            None
        };
        let e = extensions(r, pre.extended)?;
        let forward_multiplex_ack = ext(r, &e, 1, |r| match r.choice(1, true)? {
            Alt::Root(_) => H2250LogicalChannelAckParameters::decode(r).map(Some),
            Alt::Ext(_) => skip_open(r).map(|_| None),
        })?
        .flatten();
        Ok(OpenLogicalChannelAck {
            forward_logical_channel_number,
            reverse,
            forward_multiplex_ack,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(
            Some(self.forward_multiplex_ack.is_some()),
            &[self.reverse.is_some()],
        );
        write_lcn(w, self.forward_logical_channel_number);
        if let Some(rev) = &self.reverse {
            let mux = rev
                .multiplex_parameters
                .as_ref()
                .filter(|m| !matches!(m, MultiplexParameters::None));
            w.preamble(Some(false), &[rev.port_number.is_some(), mux.is_some()]);
            write_lcn(w, rev.reverse_logical_channel_number);
            if let Some(p) = rev.port_number {
                w.constrained(i64::from(p), 0, 65535);
            }
            if let Some(m) = mux {
                m.encode_in(w, MuxContext::AckReverse);
            }
        }
        if let Some(a) = &self.forward_multiplex_ack {
            let contents = Writer::complete(|w| {
                w.choice(Alt::Root(0), 1, true);
                a.encode(w);
            });
            w.extensions(4, &[(1, contents)]);
        }
    }
}

impl Per for H2250LogicalChannelAckParameters {
    fn decode(r: &mut Reader<'_>) -> Result<H2250LogicalChannelAckParameters> {
        let pre = r.preamble(true, 5)?;
        if pre.has(0) {
            let n = r.count(Size::UNBOUNDED)?;
            for _ in 0..n {
                Opaque::skip(r, &schema::H245_NON_STANDARD_PARAMETER)?;
            }
        }
        let session_id = pre.has(1).then(|| r.number(1, 255)).transpose()?;
        let media_channel = pre
            .has(2)
            .then(|| TransportAddress::decode(r))
            .transpose()?;
        let media_control_channel = pre
            .has(3)
            .then(|| TransportAddress::decode(r))
            .transpose()?;
        let dynamic_rtp_payload_type = pre.has(4).then(|| r.number(96, 127)).transpose()?;
        let e = extensions(r, pre.extended)?;
        Ok(H2250LogicalChannelAckParameters {
            session_id,
            media_channel,
            media_control_channel,
            dynamic_rtp_payload_type,
            flow_control_to_zero: ext(r, &e, 0, |r| r.boolean())?,
            port_number: ext(r, &e, 1, |r| r.number(0, 65535))?,
        })
    }

    fn encode(&self, w: &mut Writer) {
        let mut e = Vec::new();
        if let Some(b) = self.flow_control_to_zero {
            e.push((0, Writer::complete(|w| w.boolean(b))));
        }
        if let Some(p) = self.port_number {
            e.push((
                1,
                Writer::complete(|w| w.constrained(i64::from(p), 0, 65535)),
            ));
        }
        w.preamble(
            Some(!e.is_empty()),
            &[
                false,
                self.session_id.is_some(),
                self.media_channel.is_some(),
                self.media_control_channel.is_some(),
                self.dynamic_rtp_payload_type.is_some(),
            ],
        );
        if let Some(s) = self.session_id {
            w.constrained(i64::from(s), 1, 255);
        }
        if let Some(a) = &self.media_channel {
            a.encode(w);
        }
        if let Some(a) = &self.media_control_channel {
            a.encode(w);
        }
        if let Some(pt) = self.dynamic_rtp_payload_type {
            w.constrained(i64::from(pt), 96, 127);
        }
        if !e.is_empty() {
            w.extensions(3, &e);
        }
    }
}

/// CloseLogicalChannel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseLogicalChannel {
    pub forward_logical_channel_number: u16,
    /// `source`: true for `lcse` (the H.245 signalling entity), false for
    /// `user`.
    pub lcse: bool,
    pub reason: Option<CloseReason>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Unknown,
    Reopen,
    ReservationFailure,
    NetworkErrorCode(u8),
}

impl CloseLogicalChannel {
    pub fn new(number: u16) -> CloseLogicalChannel {
        CloseLogicalChannel {
            forward_logical_channel_number: number,
            lcse: false,
            reason: None,
        }
    }

    pub fn to_message(self) -> Message {
        Message::Request(Request::CloseLogicalChannel(self))
    }

    fn decode(r: &mut Reader<'_>) -> Result<CloseLogicalChannel> {
        let pre = r.preamble(true, 0)?;
        let forward_logical_channel_number = lcn(r)?;
        let lcse = r.constrained(0, 1)? == 1;
        let e = extensions(r, pre.extended)?;
        let reason = ext(r, &e, 0, |r| {
            Ok(match r.choice(3, true)? {
                Alt::Root(0) => CloseReason::Unknown,
                Alt::Root(1) => CloseReason::Reopen,
                Alt::Root(_) => CloseReason::ReservationFailure,
                Alt::Ext(0) => {
                    let c = r.open_type()?;
                    CloseReason::NetworkErrorCode(r.nested(c, |r| r.number(0, 255))?)
                }
                Alt::Ext(_) => {
                    skip_open(r)?;
                    CloseReason::Unknown
                }
            })
        })?;
        Ok(CloseLogicalChannel {
            forward_logical_channel_number,
            lcse,
            reason,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(Some(self.reason.is_some()), &[]);
        write_lcn(w, self.forward_logical_channel_number);
        w.constrained(self.lcse.into(), 0, 1);
        if let Some(reason) = self.reason {
            let contents = Writer::complete(|w| match reason {
                CloseReason::Unknown => w.choice(Alt::Root(0), 3, true),
                CloseReason::Reopen => w.choice(Alt::Root(1), 3, true),
                CloseReason::ReservationFailure => w.choice(Alt::Root(2), 3, true),
                CloseReason::NetworkErrorCode(c) => write_ext_alt(
                    w,
                    0,
                    3,
                    &Writer::complete(|w| w.constrained(i64::from(c), 0, 255)),
                ),
            });
            w.extensions(1, &[(0, contents)]);
        }
    }
}

/// FlowControlCommand: the peer asks us to limit what we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowControlCommand {
    pub scope: FlowControlScope,
    /// `maximumBitRate` in units of 100 bit/s, or None for noRestriction.
    pub maximum_bit_rate: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowControlScope {
    LogicalChannel(u16),
    ResourceId(u16),
    WholeMultiplex,
}

impl FlowControlCommand {
    fn decode(r: &mut Reader<'_>) -> Result<FlowControlCommand> {
        let pre = r.preamble(true, 0)?;
        let scope = match r.choice(3, false)? {
            Alt::Root(0) => FlowControlScope::LogicalChannel(lcn(r)?),
            Alt::Root(1) => FlowControlScope::ResourceId(r.number(0, 65535)?),
            _ => FlowControlScope::WholeMultiplex,
        };
        let maximum_bit_rate = match r.choice(2, false)? {
            Alt::Root(0) => Some(r.number(0, 16_777_215)?),
            _ => None,
        };
        extensions(r, pre.extended)?;
        Ok(FlowControlCommand {
            scope,
            maximum_bit_rate,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(Some(false), &[]);
        match self.scope {
            FlowControlScope::LogicalChannel(n) => {
                w.choice(Alt::Root(0), 3, false);
                write_lcn(w, n);
            }
            FlowControlScope::ResourceId(n) => {
                w.choice(Alt::Root(1), 3, false);
                w.constrained(i64::from(n), 0, 65535);
            }
            FlowControlScope::WholeMultiplex => w.choice(Alt::Root(2), 3, false),
        }
        match self.maximum_bit_rate {
            Some(b) => {
                w.choice(Alt::Root(0), 2, false);
                w.constrained(i64::from(b), 0, 16_777_215);
            }
            None => w.choice(Alt::Root(1), 2, false),
        }
    }
}

/// EndSessionCommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndSessionCommand {
    Disconnect,
    /// nonStandard, gstnOptions, isdnOptions, genericInformation.
    Other(UnknownAlt),
}

impl EndSessionCommand {
    fn decode(r: &mut Reader<'_>) -> Result<EndSessionCommand> {
        Ok(match r.choice(3, true)? {
            Alt::Root(1) => EndSessionCommand::Disconnect,
            alt => EndSessionCommand::Other(UnknownAlt::decode(
                r,
                &schema::H245_END_SESSION_COMMAND,
                alt,
            )?),
        })
    }

    fn encode(&self, w: &mut Writer) {
        match self {
            EndSessionCommand::Disconnect => w.choice(Alt::Root(1), 3, true),
            EndSessionCommand::Other(u) => u.encode(w, &schema::H245_END_SESSION_COMMAND),
        }
    }
}

/// MiscellaneousCommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiscellaneousCommand {
    pub logical_channel_number: u16,
    pub kind: MiscellaneousCommandKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MiscellaneousCommandKind {
    /// Send a key frame.
    VideoFastUpdatePicture,
    VideoFreezePicture,
    /// Other commands (GOB/MB updates, trade-offs, encryption, ...).
    Other(UnknownAlt),
}

impl MiscellaneousCommand {
    /// Asks for a key frame on `logical_channel_number`.
    pub fn video_fast_update(logical_channel_number: u16) -> MiscellaneousCommand {
        MiscellaneousCommand {
            logical_channel_number,
            kind: MiscellaneousCommandKind::VideoFastUpdatePicture,
        }
    }

    pub fn to_message(self) -> Message {
        Message::Command(Command::Miscellaneous(self))
    }

    fn decode(r: &mut Reader<'_>) -> Result<MiscellaneousCommand> {
        let pre = r.preamble(true, 0)?;
        let logical_channel_number = lcn(r)?;
        let kind = match r.choice(10, true)? {
            Alt::Root(4) => MiscellaneousCommandKind::VideoFreezePicture,
            Alt::Root(5) => MiscellaneousCommandKind::VideoFastUpdatePicture,
            alt => MiscellaneousCommandKind::Other(UnknownAlt::decode(
                r,
                &schema::H245_MISCELLANEOUS_COMMAND_TYPE,
                alt,
            )?),
        };
        extensions(r, pre.extended)?;
        Ok(MiscellaneousCommand {
            logical_channel_number,
            kind,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(Some(false), &[]);
        write_lcn(w, self.logical_channel_number);
        match &self.kind {
            MiscellaneousCommandKind::VideoFreezePicture => w.choice(Alt::Root(4), 10, true),
            MiscellaneousCommandKind::VideoFastUpdatePicture => w.choice(Alt::Root(5), 10, true),
            MiscellaneousCommandKind::Other(u) => {
                u.encode(w, &schema::H245_MISCELLANEOUS_COMMAND_TYPE)
            }
        }
    }
}

/// UserInputIndication (DTMF out of band).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserInput {
    /// `alphanumeric` (a GeneralString; read as UTF-8, lossily).
    Alphanumeric(String),
    /// `signal`: one DTMF tone.
    Signal(Signal),
    Other(UnknownAlt),
}

/// The `signal` of a UserInputIndication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    /// One of `0-9 # * A-D !` (`!` is hook flash).
    pub signal_type: char,
    /// Milliseconds.
    pub duration: Option<u16>,
    pub rtp: Option<SignalRtp>,
}

/// The `rtp` of a signal: where in the media stream the tone is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalRtp {
    pub timestamp: Option<u32>,
    pub expiration_time: Option<u32>,
    pub logical_channel_number: u16,
}

/// `signalType`'s permitted alphabet; 17 characters take 8 bits in
/// ALIGNED PER and are sent as themselves (X.691 30.5.4 a).
const SIGNAL_TYPES: &[u8] = b"!#*0123456789ABCD";

impl UserInput {
    pub fn to_message(self) -> Message {
        Message::Indication(Indication::UserInput(self))
    }

    /// The DTMF digit(s) this carries.
    pub fn digits(&self) -> Option<String> {
        match self {
            UserInput::Alphanumeric(s) => Some(s.clone()),
            UserInput::Signal(s) => Some(s.signal_type.to_string()),
            UserInput::Other(_) => None,
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<UserInput> {
        Ok(match r.choice(2, true)? {
            Alt::Root(1) => UserInput::Alphanumeric(r.general_string()?),
            Alt::Ext(1) => {
                let c = r.open_type()?;
                UserInput::Signal(r.nested(c, Signal::decode)?)
            }
            alt => UserInput::Other(UnknownAlt::decode(
                r,
                &schema::H245_USER_INPUT_INDICATION,
                alt,
            )?),
        })
    }

    fn encode(&self, w: &mut Writer) {
        match self {
            UserInput::Alphanumeric(s) => {
                w.choice(Alt::Root(1), 2, true);
                w.general_string(s);
            }
            UserInput::Signal(s) => write_ext_alt(w, 1, 2, &Writer::complete(|w| s.encode(w))),
            UserInput::Other(u) => u.encode(w, &schema::H245_USER_INPUT_INDICATION),
        }
    }
}

impl Per for Signal {
    fn decode(r: &mut Reader<'_>) -> Result<Signal> {
        let pre = r.preamble(true, 2)?;
        let unit = r.string_units(Size::fixed(1), 8)?;
        let signal_type = unit
            .first()
            .and_then(|&u| u8::try_from(u).ok())
            .filter(|u| SIGNAL_TYPES.contains(u))
            .map(char::from)
            .ok_or(super::per::PerError::BadCharacter)?;
        let duration = pre.has(0).then(|| r.number(1, 65535)).transpose()?;
        let rtp = if pre.has(1) {
            let p = r.preamble(true, 2)?;
            let timestamp = p.has(0).then(|| r.number(0, 4_294_967_295)).transpose()?;
            let expiration_time = p.has(1).then(|| r.number(0, 4_294_967_295)).transpose()?;
            let logical_channel_number = lcn(r)?;
            extensions(r, p.extended)?;
            Some(SignalRtp {
                timestamp,
                expiration_time,
                logical_channel_number,
            })
        } else {
            None
        };
        extensions(r, pre.extended)?;
        Ok(Signal {
            signal_type,
            duration,
            rtp,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.preamble(Some(false), &[self.duration.is_some(), self.rtp.is_some()]);
        let c = u8::try_from(self.signal_type)
            .ok()
            .filter(|c| SIGNAL_TYPES.contains(c))
            .unwrap_or(b'!');
        w.string_units(&[u32::from(c)], Size::fixed(1), 8);
        if let Some(d) = self.duration {
            w.constrained(i64::from(d), 1, 65535);
        }
        if let Some(rtp) = &self.rtp {
            w.preamble(
                Some(false),
                &[rtp.timestamp.is_some(), rtp.expiration_time.is_some()],
            );
            for t in [rtp.timestamp, rtp.expiration_time].into_iter().flatten() {
                w.constrained(i64::from(t), 0, 4_294_967_295);
            }
            write_lcn(w, rtp.logical_channel_number);
        }
    }
}

/// H.241: the H.264 capability as a GenericCapability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H264Capability {
    /// `profile` (parameter 41), a booleanArray: 64 Baseline, 32 Main,
    /// 16 Extended, 8 High.
    pub profile: u8,
    /// `level` (parameter 42): H.241's numbering, e.g. 29 for 1.2, 36 for
    /// 1.3, 64 for 3, 71 for 3.1, 85 for 4.
    pub level: u8,
    /// Units of 100 bit/s.
    pub max_bit_rate: Option<u32>,
    /// CustomMaxMBPS (3), in units of 500 macroblocks/s.
    pub custom_max_mbps: Option<u16>,
    /// CustomMaxFS (4), in units of 256 macroblocks.
    pub custom_max_fs: Option<u16>,
}

/// H.241 constants.
pub mod h241 {
    /// {itu-t(0) recommendation(0) h(8) h241(241) specificVideoCodecCapabilities(0)
    /// h264(0) generic-capabilities(1)}.
    pub const H264_CAPABILITY: [u32; 7] = [0, 0, 8, 241, 0, 0, 1];
    pub const PROFILE: u8 = 41;
    pub const LEVEL: u8 = 42;
    pub const CUSTOM_MAX_MBPS: u8 = 3;
    pub const CUSTOM_MAX_FS: u8 = 4;
    pub const PROFILE_BASELINE: u8 = 64;
    pub const PROFILE_MAIN: u8 = 32;
    pub const PROFILE_HIGH: u8 = 8;
    pub const LEVEL_1_3: u8 = 36;
    pub const LEVEL_3: u8 = 64;
    pub const LEVEL_3_1: u8 = 71;
    pub const LEVEL_4: u8 = 85;
}

impl H264Capability {
    /// Baseline, level 3.1: up to 1280×720 at 30 frames/s.
    pub fn hd720p30(max_bit_rate: u32) -> H264Capability {
        H264Capability {
            profile: h241::PROFILE_BASELINE,
            level: h241::LEVEL_3_1,
            max_bit_rate: Some(max_bit_rate),
            custom_max_mbps: None,
            custom_max_fs: None,
        }
    }

    pub fn from_generic(g: &GenericCapability) -> Option<H264Capability> {
        if !g.is_standard(&h241::H264_CAPABILITY) {
            return None;
        }
        let num = |id| g.parameter(id).and_then(ParameterValue::number);
        Some(H264Capability {
            profile: num(h241::PROFILE)
                .and_then(|n| u8::try_from(n).ok())
                .unwrap_or(0),
            level: num(h241::LEVEL)
                .and_then(|n| u8::try_from(n).ok())
                .unwrap_or(0),
            max_bit_rate: g.max_bit_rate,
            custom_max_mbps: num(h241::CUSTOM_MAX_MBPS).and_then(|n| u16::try_from(n).ok()),
            custom_max_fs: num(h241::CUSTOM_MAX_FS).and_then(|n| u16::try_from(n).ok()),
        })
    }

    pub fn to_generic(&self) -> GenericCapability {
        let mut collapsing = vec![
            GenericParameter::standard(h241::PROFILE, ParameterValue::BooleanArray(self.profile)),
            GenericParameter::standard(h241::LEVEL, ParameterValue::UnsignedMin(self.level.into())),
        ];
        if let Some(m) = self.custom_max_mbps {
            collapsing.push(GenericParameter::standard(
                h241::CUSTOM_MAX_MBPS,
                ParameterValue::UnsignedMin(m),
            ));
        }
        if let Some(f) = self.custom_max_fs {
            collapsing.push(GenericParameter::standard(
                h241::CUSTOM_MAX_FS,
                ParameterValue::UnsignedMin(f),
            ));
        }
        GenericCapability {
            max_bit_rate: self.max_bit_rate,
            collapsing,
            ..GenericCapability::new(Oid::new(&h241::H264_CAPABILITY))
        }
    }
}

/// H.239 constants (H.239 Tables 4–12).
pub mod h239 {
    /// h239ControlCapability: {itu-t(0) recommendation(0) h(8) h239(239)
    /// generic-capabilities(1) 1}.
    pub const CONTROL_CAPABILITY: [u32; 6] = [0, 0, 8, 239, 1, 1];
    /// h239ExtendedVideoCapability: {... generic-capabilities(1) 2}.
    pub const EXTENDED_VIDEO_CAPABILITY: [u32; 6] = [0, 0, 8, 239, 1, 2];
    /// The H.239 generic message: {... generic-message(2)}.
    pub const GENERIC_MESSAGE: [u32; 5] = [0, 0, 8, 239, 2];
    /// roleLabel (booleanArray) in h239ExtendedVideoCapability.
    pub const ROLE_LABEL: u8 = 1;
    pub const ROLE_PRESENTATION: u8 = 1;
    pub const ROLE_LIVE: u8 = 2;
    // subMessageIdentifier.
    pub const FLOW_CONTROL_RELEASE_REQUEST: u8 = 1;
    pub const FLOW_CONTROL_RELEASE_RESPONSE: u8 = 2;
    pub const PRESENTATION_TOKEN_REQUEST: u8 = 3;
    pub const PRESENTATION_TOKEN_RESPONSE: u8 = 4;
    pub const PRESENTATION_TOKEN_RELEASE: u8 = 5;
    pub const PRESENTATION_TOKEN_INDICATE_OWNER: u8 = 6;
    // messageContent parameters.
    pub const BIT_RATE: u8 = 41;
    pub const CHANNEL_ID: u8 = 42;
    pub const SYMMETRY_BREAKING: u8 = 43;
    pub const TERMINAL_LABEL: u8 = 44;
    pub const ACKNOWLEDGE: u8 = 126;
    pub const REJECT: u8 = 127;
}

/// The H.239 control capability (genericControlCapability with no
/// parameters): we speak H.239.
pub fn h239_control_capability() -> GenericCapability {
    GenericCapability::new(Oid::new(&h239::CONTROL_CAPABILITY))
}

/// An H.239 message (a GenericMessage with identifier 0.0.8.239.2).
/// `terminal_label` is H.239's unsignedMin terminal label
/// (`mcuNumber * 256 + terminalNumber` by common practice), `channel_id`
/// the logical channel the message is about, `bit_rate` in units of 100
/// bit/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H239Message {
    /// genericRequest: may I (the sender) have `bit_rate` on `channel_id`?
    FlowControlReleaseRequest { channel_id: u16, bit_rate: u16 },
    /// genericResponse.
    FlowControlReleaseResponse { acknowledge: bool, channel_id: u16 },
    /// genericRequest: the sender wants to present. `symmetry_breaking`
    /// (1..=127, random) settles two requests crossing.
    PresentationTokenRequest {
        terminal_label: u16,
        channel_id: u16,
        symmetry_breaking: u8,
    },
    /// genericResponse: granted (`acknowledge`) or refused.
    PresentationTokenResponse {
        acknowledge: bool,
        terminal_label: u16,
        channel_id: u16,
    },
    /// genericCommand: the token holder gives it up (or the MCU takes it).
    PresentationTokenRelease {
        terminal_label: u16,
        channel_id: u16,
    },
    /// genericIndication: who holds the token.
    PresentationTokenIndicateOwner {
        terminal_label: u16,
        channel_id: u16,
    },
}

impl H239Message {
    pub fn from_generic(g: &GenericMessage) -> Option<H239Message> {
        match &g.message_identifier {
            CapabilityIdentifier::Standard(o) if o.arcs() == h239::GENERIC_MESSAGE => {}
            _ => return None,
        }
        let find = |id| {
            g.message_content
                .iter()
                .find(|p| p.id == ParameterIdentifier::Standard(id))
                .map(|p| &p.value)
        };
        let num = |id| {
            find(id)
                .and_then(ParameterValue::number)
                .and_then(|n| u16::try_from(n).ok())
                .unwrap_or(0)
        };
        let acknowledge = find(h239::ACKNOWLEDGE).is_some() && find(h239::REJECT).is_none();
        let channel_id = num(h239::CHANNEL_ID);
        let terminal_label = num(h239::TERMINAL_LABEL);
        Some(match g.sub_message_identifier? {
            h239::FLOW_CONTROL_RELEASE_REQUEST => H239Message::FlowControlReleaseRequest {
                channel_id,
                bit_rate: num(h239::BIT_RATE),
            },
            h239::FLOW_CONTROL_RELEASE_RESPONSE => H239Message::FlowControlReleaseResponse {
                acknowledge,
                channel_id,
            },
            h239::PRESENTATION_TOKEN_REQUEST => H239Message::PresentationTokenRequest {
                terminal_label,
                channel_id,
                symmetry_breaking: u8::try_from(num(h239::SYMMETRY_BREAKING)).unwrap_or(0),
            },
            h239::PRESENTATION_TOKEN_RESPONSE => H239Message::PresentationTokenResponse {
                acknowledge,
                terminal_label,
                channel_id,
            },
            h239::PRESENTATION_TOKEN_RELEASE => H239Message::PresentationTokenRelease {
                terminal_label,
                channel_id,
            },
            h239::PRESENTATION_TOKEN_INDICATE_OWNER => {
                H239Message::PresentationTokenIndicateOwner {
                    terminal_label,
                    channel_id,
                }
            }
            _ => return None,
        })
    }

    /// The GenericMessage, parameters in the order of H.239's tables.
    pub fn to_generic(&self) -> GenericMessage {
        let num = |id, v: u16| GenericParameter::standard(id, ParameterValue::UnsignedMin(v));
        let ack = |a: bool| {
            GenericParameter::standard(
                if a { h239::ACKNOWLEDGE } else { h239::REJECT },
                ParameterValue::Logical,
            )
        };
        let (sub, content) = match *self {
            H239Message::FlowControlReleaseRequest {
                channel_id,
                bit_rate,
            } => (
                h239::FLOW_CONTROL_RELEASE_REQUEST,
                vec![
                    num(h239::CHANNEL_ID, channel_id),
                    num(h239::BIT_RATE, bit_rate),
                ],
            ),
            H239Message::FlowControlReleaseResponse {
                acknowledge,
                channel_id,
            } => (
                h239::FLOW_CONTROL_RELEASE_RESPONSE,
                vec![ack(acknowledge), num(h239::CHANNEL_ID, channel_id)],
            ),
            H239Message::PresentationTokenRequest {
                terminal_label,
                channel_id,
                symmetry_breaking,
            } => (
                h239::PRESENTATION_TOKEN_REQUEST,
                vec![
                    num(h239::TERMINAL_LABEL, terminal_label),
                    num(h239::CHANNEL_ID, channel_id),
                    num(h239::SYMMETRY_BREAKING, symmetry_breaking.into()),
                ],
            ),
            H239Message::PresentationTokenResponse {
                acknowledge,
                terminal_label,
                channel_id,
            } => (
                h239::PRESENTATION_TOKEN_RESPONSE,
                vec![
                    ack(acknowledge),
                    num(h239::TERMINAL_LABEL, terminal_label),
                    num(h239::CHANNEL_ID, channel_id),
                ],
            ),
            H239Message::PresentationTokenRelease {
                terminal_label,
                channel_id,
            } => (
                h239::PRESENTATION_TOKEN_RELEASE,
                vec![
                    num(h239::TERMINAL_LABEL, terminal_label),
                    num(h239::CHANNEL_ID, channel_id),
                ],
            ),
            H239Message::PresentationTokenIndicateOwner {
                terminal_label,
                channel_id,
            } => (
                h239::PRESENTATION_TOKEN_INDICATE_OWNER,
                vec![
                    num(h239::TERMINAL_LABEL, terminal_label),
                    num(h239::CHANNEL_ID, channel_id),
                ],
            ),
        };
        GenericMessage {
            message_identifier: CapabilityIdentifier::Standard(Oid::new(&h239::GENERIC_MESSAGE)),
            sub_message_identifier: Some(sub),
            message_content: content,
        }
    }

    /// The H.245 message that carries this: requests as genericRequest,
    /// responses as genericResponse, the release as genericCommand, the
    /// owner indication as genericIndication.
    pub fn to_message(&self) -> Message {
        let g = self.to_generic();
        match self {
            H239Message::FlowControlReleaseRequest { .. }
            | H239Message::PresentationTokenRequest { .. } => Message::Request(Request::Generic(g)),
            H239Message::FlowControlReleaseResponse { .. }
            | H239Message::PresentationTokenResponse { .. } => {
                Message::Response(Response::Generic(g))
            }
            H239Message::PresentationTokenRelease { .. } => Message::Command(Command::Generic(g)),
            H239Message::PresentationTokenIndicateOwner { .. } => {
                Message::Indication(Indication::Generic(g))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::h323::h225::{Body, UserInformation};
    use crate::h323::per::PerError;
    use crate::h323::per::testing::hex;
    use crate::h323::{q931, test_vectors};

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// The H.245 messages and Fast Connect proposals of every test vector,
    /// as (vector name, bytes, is a proposal).
    fn embedded() -> Vec<(&'static str, Vec<u8>, bool)> {
        let mut out = Vec::new();
        for (name, bytes) in test_vectors::all() {
            let q = q931::Message::parse(&bytes).unwrap();
            let ui = UserInformation::from_q931(&q).unwrap().unwrap();
            out.extend(ui.h245_control.iter().map(|m| (name, m.clone(), false)));
            if let Body::Setup(s) = &ui.body {
                out.extend(
                    s.parallel_h245_control
                        .iter()
                        .map(|m| (name, m.clone(), false)),
                );
                out.extend(s.fast_start.iter().map(|m| (name, m.clone(), true)));
            }
        }
        out
    }

    fn round_trip(m: &Message) {
        assert_eq!(Message::decode(&m.encode()).as_ref(), Ok(m), "{}", m.name());
    }

    fn pycrate_h245() -> Vec<Message> {
        let (_, h) = test_vectors::PYCRATE[0];
        let q = q931::Message::parse(&crate::h323::per::testing::unhex(h)).unwrap();
        let ui = UserInformation::from_q931(&q).unwrap().unwrap();
        ui.h245_messages().map(|m| m.unwrap()).collect()
    }

    #[test]
    fn small_messages_have_the_bytes_tshark_read() {
        // From the `facility_*` vectors of test_vectors::OURS.
        let msd = MasterSlaveDetermination {
            terminal_type: 190,
            status_determination_number: 0x12_3456,
        };
        assert_eq!(hex(&msd.to_message().encode()), "0100be80123456");
        assert_eq!(
            hex(
                &Message::Response(Response::TerminalCapabilitySetAck { sequence_number: 1 })
                    .encode()
            ),
            "218001"
        );
        assert_eq!(
            hex(
                &Message::Response(Response::MasterSlaveDeterminationAck(MsdDecision::Slave))
                    .encode()
            ),
            "20a0"
        );
        assert_eq!(
            hex(&MiscellaneousCommand::video_fast_update(3)
                .to_message()
                .encode()),
            "4c000228"
        );
        assert_eq!(
            hex(&Message::Command(Command::EndSession(EndSessionCommand::Disconnect)).encode()),
            "4a40"
        );
        assert_eq!(
            hex(&H239Message::PresentationTokenRequest {
                terminal_label: 1,
                channel_id: 3,
                symmetry_breaking: 99,
            }
            .to_message()
            .encode()),
            "10801560050008816f02060302c2000102a2000302b20063"
        );
    }

    #[test]
    fn our_capabilities_read_back() {
        let tcs = TerminalCapabilitySet::ours(3, 20_000, true);
        let Message::Request(Request::TerminalCapabilitySet(back)) =
            Message::decode(&tcs.clone().to_message().encode()).unwrap()
        else {
            panic!()
        };
        assert_eq!(back, tcs);
        assert_eq!(
            back.capability(1),
            Some(&Capability::ReceiveAudio(AudioCapability::G711Ulaw64k(20)))
        );
        assert_eq!(
            back.capability(3),
            Some(&Capability::ReceiveAudio(AudioCapability::G722_64k(20)))
        );
        let Some(Capability::ReceiveVideo(main)) = back.capability(4) else {
            panic!()
        };
        assert!(!main.is_presentation());
        assert_eq!(main.h264(), Some(H264Capability::hd720p30(20_000)));
        let Some(Capability::ReceiveVideo(content)) = back.capability(8) else {
            panic!()
        };
        assert!(content.is_presentation());
        assert_eq!(content.h264().map(|h| h.level), Some(h241::LEVEL_3_1));
        assert_eq!(
            back.capability(9),
            Some(&Capability::GenericControl(h239_control_capability()))
        );
        assert_eq!(
            back.capability_descriptors[0].simultaneous_capabilities[0],
            [1, 2, 3]
        );
        // Without presentation, no H.239.
        let plain = TerminalCapabilitySet::ours(3, 20_000, false);
        assert!(plain.capability(8).is_none() && plain.capability(9).is_none());
        round_trip(&TerminalCapabilitySet::empty(4).to_message());
    }

    #[test]
    fn h239_messages_round_trip_through_their_h245_carriers() {
        let all = [
            H239Message::FlowControlReleaseRequest {
                channel_id: 3,
                bit_rate: 10_000,
            },
            H239Message::FlowControlReleaseResponse {
                acknowledge: false,
                channel_id: 3,
            },
            H239Message::PresentationTokenRequest {
                terminal_label: 0x0102,
                channel_id: 3,
                symmetry_breaking: 127,
            },
            H239Message::PresentationTokenResponse {
                acknowledge: true,
                terminal_label: 1,
                channel_id: 3,
            },
            H239Message::PresentationTokenRelease {
                terminal_label: 1,
                channel_id: 3,
            },
            H239Message::PresentationTokenIndicateOwner {
                terminal_label: 1,
                channel_id: 3,
            },
        ];
        let carriers = [
            "genericRequest",
            "genericResponse",
            "genericRequest",
            "genericResponse",
            "genericCommand",
            "genericIndication",
        ];
        for (h, carrier) in all.iter().zip(carriers) {
            let m = h.to_message();
            assert_eq!(m.name(), carrier);
            let back = Message::decode(&m.encode()).unwrap();
            assert_eq!(back.h239(), Some(*h));
        }
        // Another generic message is not H.239.
        let other = GenericMessage {
            message_identifier: CapabilityIdentifier::Standard(Oid::new(&[0, 0, 8, 460, 9])),
            sub_message_identifier: Some(3),
            message_content: Vec::new(),
        };
        assert_eq!(Message::Request(Request::Generic(other)).h239(), None);
    }

    #[test]
    fn logical_channels_and_their_answers() {
        let h264 = H264Capability::hd720p30(20_000);
        let olc = OpenLogicalChannel::presentation(3, &h264, 0, 109, addr("198.51.100.7:50021"));
        let (dt, params) = olc.media();
        let DataType::Video(v) = dt else { panic!() };
        assert!(v.is_presentation());
        assert_eq!(params.unwrap().dynamic_rtp_payload_type, Some(109));
        round_trip(&olc.to_message());
        let ack =
            OpenLogicalChannelAck::new(3, 32, addr("192.0.2.1:40020"), addr("192.0.2.1:40021"));
        let Message::Response(Response::OpenLogicalChannelAck(back)) =
            Message::decode(&ack.clone().to_message().encode()).unwrap()
        else {
            panic!()
        };
        let p = back.forward_multiplex_ack.as_ref().unwrap();
        assert_eq!(p.session_id, Some(32));
        assert_eq!(
            p.media_channel
                .as_ref()
                .and_then(TransportAddress::socket_addr),
            Some(addr("192.0.2.1:40020"))
        );
        assert_eq!(back, ack);
        // IPv6 media and a reverse channel in the Ack.
        let mut ack6 = OpenLogicalChannelAck::new(
            4,
            2,
            addr("[2001:db8::1]:5000"),
            addr("[2001:db8::1]:5001"),
        );
        ack6.reverse = Some(OlcAckReverse {
            reverse_logical_channel_number: 9,
            port_number: Some(77),
            multiplex_parameters: Some(MultiplexParameters::H2250(H2250LogicalChannelParameters {
                session_id: 2,
                ..H2250LogicalChannelParameters::default()
            })),
        });
        round_trip(&ack6.to_message());
        let mut clc = CloseLogicalChannel::new(3);
        clc.lcse = true;
        clc.reason = Some(CloseReason::NetworkErrorCode(7));
        round_trip(&clc.to_message());
    }

    #[test]
    fn every_modelled_message_round_trips() {
        let msgs = [
            Message::Request(Request::RequestChannelClose {
                forward_logical_channel_number: 5,
            }),
            Message::Response(Response::RequestChannelCloseAck {
                forward_logical_channel_number: 5,
            }),
            Message::Response(Response::MasterSlaveDeterminationReject),
            Message::Response(Response::TerminalCapabilitySetReject {
                sequence_number: 1,
                cause: TcsRejectCause::TableEntryCapacityExceeded(None),
            }),
            Message::Response(Response::OpenLogicalChannelReject {
                forward_logical_channel_number: 4,
                cause: OlcRejectCause::QosControlNotSupported,
            }),
            Message::Command(Command::FlowControl(FlowControlCommand {
                scope: FlowControlScope::ResourceId(9),
                maximum_bit_rate: None,
            })),
            Message::Indication(Indication::UserInput(UserInput::Signal(Signal {
                signal_type: 'D',
                duration: None,
                rtp: Some(SignalRtp {
                    timestamp: Some(u32::MAX),
                    expiration_time: None,
                    logical_channel_number: 1,
                }),
            }))),
            Message::Indication(Indication::FunctionNotUnderstood(
                FunctionNotUnderstood::Command(Command::Miscellaneous(
                    MiscellaneousCommand::video_fast_update(1),
                )),
            )),
            Message::Indication(Indication::FunctionNotSupported(FunctionNotSupported {
                cause: FunctionNotSupportedCause::SyntaxError,
                returned_function: None,
            })),
        ];
        for m in &msgs {
            round_trip(m);
        }
        let mut tcs = TerminalCapabilitySet::ours(9, 1000, true);
        tcs.capability_table.push(CapabilityTableEntry {
            number: 20,
            capability: None,
        });
        tcs.capability_table.push(CapabilityTableEntry::new(
            21,
            Capability::ReceiveAudio(AudioCapability::G7231 {
                max_al_sdu_audio_frames: 256,
                silence_suppression: true,
            }),
        ));
        tcs.capability_table.push(CapabilityTableEntry::new(
            22,
            Capability::TransmitAudio(AudioCapability::G729AnnexAwAnnexB(2)),
        ));
        round_trip(&tcs.to_message());
    }

    #[test]
    fn what_we_do_not_model_decodes_as_unsupported_or_other() {
        let m = pycrate_h245();
        assert_eq!(m.len(), 16);
        let Message::Request(Request::TerminalCapabilitySet(tcs)) = &m[0] else {
            panic!()
        };
        assert_eq!(
            tcs.capability(1),
            Some(&Capability::ReceiveAudio(AudioCapability::G722_64k(60)))
        );
        assert_eq!(
            tcs.capability(2),
            Some(&Capability::ReceiveAudio(AudioCapability::G7231 {
                max_al_sdu_audio_frames: 8,
                silence_suppression: false,
            }))
        );
        assert!(matches!(
            tcs.capability(3),
            Some(Capability::ReceiveAudio(AudioCapability::Generic(_)))
        ));
        assert!(matches!(
            tcs.capability(4),
            Some(Capability::ReceiveVideo(VideoCapability::Other(_)))
        ));
        let Some(Capability::ReceiveVideo(h264)) = tcs.capability(5) else {
            panic!()
        };
        assert_eq!(
            h264.h264(),
            Some(H264Capability {
                profile: h241::PROFILE_BASELINE | h241::PROFILE_HIGH,
                level: h241::LEVEL_4,
                max_bit_rate: Some(40_000),
                custom_max_mbps: Some(490),
                custom_max_fs: Some(32),
            })
        );
        let Some(Capability::ReceiveVideo(content)) = tcs.capability(6) else {
            panic!()
        };
        assert!(content.is_presentation());
        assert_eq!(
            tcs.capability(7),
            Some(&Capability::GenericControl(h239_control_capability()))
        );
        for n in [8, 9, 10] {
            assert!(
                matches!(tcs.capability(n), Some(Capability::Other(_))),
                "{n}"
            );
        }
        assert_eq!(tcs.capability_table[10].capability, None);
        assert_eq!(
            tcs.capability_descriptors[1].simultaneous_capabilities,
            Vec::<Vec<u16>>::new()
        );

        let Message::Request(Request::OpenLogicalChannel(olc)) = &m[1] else {
            panic!()
        };
        assert!(matches!(
            olc.forward.data_type,
            DataType::Video(VideoCapability::Other(_))
        ));
        assert_eq!(olc.forward.forward_logical_channel_dependency, Some(31));
        let p = olc.forward.multiplex_parameters.h2250().unwrap();
        assert_eq!(
            (
                p.session_id,
                p.associated_session_id,
                p.dynamic_rtp_payload_type
            ),
            (2, Some(1), Some(100))
        );
        assert_eq!(
            p.media_packetization,
            Some(MediaPacketization::RtpPayloadType(RtpPayloadType {
                descriptor: PayloadDescriptor::RfcNumber(2429),
                payload_type: Some(100),
            }))
        );
        assert_eq!(
            p.destination,
            Some(TerminalLabel {
                mcu_number: 1,
                terminal_number: 2
            })
        );
        let Message::Response(Response::OpenLogicalChannelAck(ack)) = &m[2] else {
            panic!()
        };
        let a = ack.forward_multiplex_ack.as_ref().unwrap();
        assert_eq!(
            (a.flow_control_to_zero, a.port_number),
            (Some(true), Some(9))
        );
        assert!(matches!(
            a.media_control_channel,
            Some(TransportAddress::Ipv6 {
                tsap_identifier: 6001,
                ..
            })
        ));

        let names: Vec<&str> = m.iter().map(Message::name).collect();
        assert_eq!(
            names[3..],
            [
                "requestMode",
                "conferenceRequest",
                "closeLogicalChannel",
                "functionNotUnderstood",
                "userInput",
                "userInput",
                "mcLocationIndication",
                "miscellaneousCommand",
                "miscellaneousCommand",
                "flowControlCommand",
                "endSessionCommand",
                "sendTerminalCapabilitySet",
                "masterSlaveDeterminationReject",
            ]
        );
        assert!(
            matches!(&m[3], Message::Request(Request::Unsupported(u)) if u.alternative() == Alt::Root(8))
        );
        assert!(
            matches!(&m[4], Message::Request(Request::Unsupported(u)) if u.alternative() == Alt::Ext(1))
        );
        assert_eq!(
            m[5],
            CloseLogicalChannel {
                forward_logical_channel_number: 32,
                lcse: true,
                reason: Some(CloseReason::Reopen),
            }
            .to_message()
        );
        assert!(matches!(
            &m[6],
            Message::Indication(Indication::FunctionNotUnderstood(
                FunctionNotUnderstood::Request(Request::Unsupported(_))
            ))
        ));
        assert_eq!(
            m[7],
            UserInput::Signal(Signal {
                signal_type: '7',
                duration: Some(250),
                rtp: Some(SignalRtp {
                    timestamp: Some(123_456),
                    expiration_time: None,
                    logical_channel_number: 1,
                }),
            })
            .to_message()
        );
        assert!(matches!(
            &m[8],
            Message::Indication(Indication::UserInput(UserInput::Other(_)))
        ));
        assert!(matches!(
            &m[10],
            Message::Command(Command::Miscellaneous(MiscellaneousCommand {
                kind: MiscellaneousCommandKind::Other(_),
                ..
            }))
        ));
        assert_eq!(
            m[12],
            Message::Command(Command::FlowControl(FlowControlCommand {
                scope: FlowControlScope::WholeMultiplex,
                maximum_bit_rate: None,
            }))
        );
        assert!(matches!(
            &m[13],
            Message::Command(Command::EndSession(EndSessionCommand::Other(_)))
        ));
        assert_eq!(
            m[15],
            Message::Response(Response::MasterSlaveDeterminationReject)
        );
    }

    #[test]
    fn unsupported_messages_encode_back_to_their_bytes() {
        let (_, h) = test_vectors::PYCRATE[0];
        let q = q931::Message::parse(&crate::h323::per::testing::unhex(h)).unwrap();
        let ui = UserInformation::from_q931(&q).unwrap().unwrap();
        for raw in &ui.h245_control {
            let m = Message::decode(raw).unwrap();
            if matches!(
                m,
                Message::Request(Request::Unsupported(_))
                    | Message::Command(Command::Unsupported(_))
                    | Message::Indication(Indication::Unsupported(_))
            ) {
                assert_eq!(hex(&m.encode()), hex(raw), "{}", m.name());
                // The answer carries it back.
                let answer = Message::Indication(Indication::FunctionNotSupported(
                    FunctionNotSupported::unknown(raw),
                ));
                round_trip(&answer);
            }
        }
    }

    #[test]
    fn truncations_and_byte_changes_of_h245_return_an_error_or_a_value() {
        let check = |b: &[u8], proposal: bool| {
            if proposal {
                if let Ok(c) = OpenLogicalChannel::decode(b) {
                    assert_eq!(OpenLogicalChannel::decode(&c.encode()), Ok(c));
                }
            } else if let Ok(m) = Message::decode(b) {
                assert_eq!(Message::decode(&m.encode()), Ok(m));
            }
        };
        for (_, bytes, proposal) in embedded() {
            for n in 0..bytes.len() {
                check(&bytes[..n], proposal);
            }
            let mut m = bytes.clone();
            for i in 0..m.len() {
                let orig = m[i];
                for bit in 0..8 {
                    m[i] = orig ^ (1 << bit);
                    check(&m, proposal);
                }
                m[i] = orig;
            }
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        // A GenericParameter whose value is a GenericParameter list, nested
        // deeper than MAX_DEPTH.
        let mut p = GenericParameter::standard(1, ParameterValue::Logical);
        for _ in 0..40 {
            p = GenericParameter::standard(1, ParameterValue::GenericParameter(vec![p]));
        }
        let m = Message::Indication(Indication::Generic(GenericMessage {
            message_identifier: CapabilityIdentifier::Standard(Oid::new(&h239::GENERIC_MESSAGE)),
            sub_message_identifier: None,
            message_content: vec![p],
        }));
        assert_eq!(Message::decode(&m.encode()), Err(PerError::TooDeep));
        assert_eq!(PerError::TooDeep.kind(), "too_deep");
    }
}
