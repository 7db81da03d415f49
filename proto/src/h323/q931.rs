//! Q.931 as H.225.0 uses it for call signalling (H.225.0 §7): protocol
//! discriminator 8, a two-octet call reference, the message type, then
//! information elements. The User-user element, which carries the
//! ASN.1 PER H323-UserInformation, has a two-octet length in H.225.0
//! (one octet in plain Q.931).

pub const PROTOCOL_DISCRIMINATOR: u8 = 0x08;
/// Most information elements we accept in one message.
pub const MAX_IES: usize = 64;

/// Information element identifiers we read or write.
pub mod ie {
    pub const BEARER_CAPABILITY: u8 = 0x04;
    pub const CAUSE: u8 = 0x08;
    pub const CALL_STATE: u8 = 0x14;
    pub const FACILITY: u8 = 0x1c;
    pub const PROGRESS_INDICATOR: u8 = 0x1e;
    pub const NOTIFICATION_INDICATOR: u8 = 0x27;
    pub const DISPLAY: u8 = 0x28;
    pub const KEYPAD: u8 = 0x2c;
    pub const SIGNAL: u8 = 0x34;
    pub const CONNECTED_NUMBER: u8 = 0x4c;
    pub const CALLING_PARTY_NUMBER: u8 = 0x6c;
    pub const CALLED_PARTY_NUMBER: u8 = 0x70;
    pub const USER_USER: u8 = 0x7e;
    /// The single-octet Sending Complete element.
    pub const SENDING_COMPLETE: u8 = 0xa1;
}

/// Q.850 cause values a bridge says or hears.
pub mod cause {
    pub const UNALLOCATED_NUMBER: u8 = 1;
    pub const NORMAL_CALL_CLEARING: u8 = 16;
    pub const USER_BUSY: u8 = 17;
    pub const NO_USER_RESPONDING: u8 = 18;
    pub const CALL_REJECTED: u8 = 21;
    pub const NORMAL_UNSPECIFIED: u8 = 31;
    pub const NO_CIRCUIT_AVAILABLE: u8 = 34;
    pub const TEMPORARY_FAILURE: u8 = 41;
    pub const RESOURCE_UNAVAILABLE: u8 = 47;
    pub const BEARER_CAPABILITY_NOT_IMPLEMENTED: u8 = 65;
    pub const INVALID_CALL_REFERENCE: u8 = 81;
    pub const INCOMPATIBLE_DESTINATION: u8 = 88;
    pub const INVALID_MESSAGE: u8 = 95;
    pub const MANDATORY_IE_MISSING: u8 = 96;
    pub const MESSAGE_TYPE_NOT_IMPLEMENTED: u8 = 97;
    pub const INVALID_IE_CONTENTS: u8 = 100;
    pub const PROTOCOL_ERROR: u8 = 111;
    pub const INTERWORKING: u8 = 127;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Q931Error {
    #[error("message ends early")]
    Truncated,
    #[error("protocol discriminator {0:#04x} is not Q.931's")]
    BadDiscriminator(u8),
    #[error("call reference of {0} octets (H.225.0 uses 2)")]
    BadCallReference(u8),
    #[error("too many information elements")]
    TooMany,
}

impl Q931Error {
    pub fn kind(&self) -> &'static str {
        match self {
            Q931Error::Truncated => "truncated",
            Q931Error::BadDiscriminator(_) => "bad_discriminator",
            Q931Error::BadCallReference(_) => "bad_call_reference",
            Q931Error::TooMany => "too_many",
        }
    }
}

macro_rules! message_types {
    ($($v:ident = $n:expr),+ $(,)?) => {
        /// Q.931 message types (H.225.0 §7.3 uses these).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum MessageType {
            $($v,)+
            Other(u8),
        }
        impl MessageType {
            pub fn from_u8(n: u8) -> Self {
                match n { $($n => MessageType::$v,)+ o => MessageType::Other(o) }
            }
            pub fn as_u8(self) -> u8 {
                match self { $(MessageType::$v => $n,)+ MessageType::Other(n) => n }
            }
        }
    };
}

message_types! {
    Alerting = 0x01,
    CallProceeding = 0x02,
    Progress = 0x03,
    Setup = 0x05,
    Connect = 0x07,
    SetupAcknowledge = 0x0d,
    ReleaseComplete = 0x5a,
    Facility = 0x62,
    Notify = 0x6e,
    StatusEnquiry = 0x75,
    Information = 0x7b,
    Status = 0x7d,
}

/// One information element: a single-octet one has no content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ie {
    pub id: u8,
    pub content: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The call reference value (15 bits).
    pub call_reference: u16,
    /// The call reference flag: set in messages sent by the side that
    /// did not originate the call (ours, for calls we answer).
    pub from_destination: bool,
    pub message_type: MessageType,
    pub ies: Vec<Ie>,
}

impl Message {
    pub fn new(message_type: MessageType, call_reference: u16, from_destination: bool) -> Message {
        Message {
            call_reference: call_reference & 0x7fff,
            from_destination,
            message_type,
            ies: Vec::new(),
        }
    }

    pub fn with(mut self, id: u8, content: impl Into<Vec<u8>>) -> Message {
        self.ies.push(Ie {
            id,
            content: content.into(),
        });
        self
    }

    pub fn ie(&self, id: u8) -> Option<&[u8]> {
        self.ies
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.content.as_slice())
    }

    /// The H.225.0 user information (the PER-encoded H323-UserInformation,
    /// after the User-user element's protocol discriminator 5).
    pub fn user_user(&self) -> Option<&[u8]> {
        let c = self.ie(ie::USER_USER)?;
        match c.split_first() {
            Some((5, rest)) => Some(rest),
            _ => None,
        }
    }

    pub fn with_user_user(self, per: &[u8]) -> Message {
        let mut content = Vec::with_capacity(per.len() + 1);
        content.push(5);
        content.extend_from_slice(per);
        self.with(ie::USER_USER, content)
    }

    /// The Q.850 cause value of a Cause element.
    pub fn cause(&self) -> Option<u8> {
        let c = self.ie(ie::CAUSE)?;
        // Octet 3 (coding standard, location), optional 3a if its
        // extension bit is clear, then octet 4 (cause value).
        let at = if c.first()? & 0x80 != 0 { 1 } else { 2 };
        c.get(at).map(|v| v & 0x7f)
    }

    /// A Cause element: ITU-T coding, location "private network serving
    /// the local user", the cause value.
    pub fn with_cause(self, value: u8) -> Message {
        self.with(ie::CAUSE, vec![0x81, 0x80 | (value & 0x7f)])
    }

    /// A Display element (IA5 text, up to 82 characters).
    pub fn with_display(self, text: &str) -> Message {
        let ascii: Vec<u8> = text
            .bytes()
            .filter(|b| (0x20..0x7f).contains(b))
            .take(82)
            .collect();
        self.with(ie::DISPLAY, ascii)
    }

    pub fn parse(buf: &[u8]) -> Result<Message, Q931Error> {
        let [pd, cr_len, rest @ ..] = buf else {
            return Err(Q931Error::Truncated);
        };
        if *pd != PROTOCOL_DISCRIMINATOR {
            return Err(Q931Error::BadDiscriminator(*pd));
        }
        let cr_len = cr_len & 0x0f;
        if cr_len != 2 {
            return Err(Q931Error::BadCallReference(cr_len));
        }
        let [c0, c1, mt, tail @ ..] = rest else {
            return Err(Q931Error::Truncated);
        };
        let mut rest: &[u8] = tail;
        let mut ies = Vec::new();
        while let [id, tail @ ..] = rest {
            if ies.len() >= MAX_IES {
                return Err(Q931Error::TooMany);
            }
            if id & 0x80 != 0 {
                ies.push(Ie {
                    id: *id,
                    content: Vec::new(),
                });
                rest = tail;
                continue;
            }
            let (len, tail) = if *id == ie::USER_USER {
                let [a, b, tail @ ..] = tail else {
                    return Err(Q931Error::Truncated);
                };
                (usize::from(u16::from_be_bytes([*a, *b])), tail)
            } else {
                let [a, tail @ ..] = tail else {
                    return Err(Q931Error::Truncated);
                };
                (usize::from(*a), tail)
            };
            if tail.len() < len {
                return Err(Q931Error::Truncated);
            }
            ies.push(Ie {
                id: *id,
                content: tail[..len].to_vec(),
            });
            rest = &tail[len..];
        }
        Ok(Message {
            call_reference: u16::from_be_bytes([c0 & 0x7f, *c1]),
            from_destination: c0 & 0x80 != 0,
            message_type: MessageType::from_u8(*mt),
            ies,
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![PROTOCOL_DISCRIMINATOR, 2];
        let cr = (self.call_reference & 0x7fff) | if self.from_destination { 0x8000 } else { 0 };
        out.extend_from_slice(&cr.to_be_bytes());
        out.push(self.message_type.as_u8());
        for e in &self.ies {
            out.push(e.id);
            if e.id & 0x80 != 0 {
                continue;
            }
            if e.id == ie::USER_USER {
                let len = e.content.len().min(usize::from(u16::MAX));
                out.extend_from_slice(&(len as u16).to_be_bytes());
                out.extend_from_slice(&e.content[..len]);
            } else {
                let len = e.content.len().min(255);
                out.push(len as u8);
                out.extend_from_slice(&e.content[..len]);
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_setup_with_user_user() {
        let m = Message::new(MessageType::Setup, 0x1234, false)
            .with(ie::BEARER_CAPABILITY, vec![0x88, 0x90, 0xa5])
            .with_display("Board room")
            .with(ie::CALLED_PARTY_NUMBER, b"\x814711".to_vec())
            .with(ie::SENDING_COMPLETE, vec![])
            .with_user_user(&[0x20; 300]);
        let b = m.to_bytes();
        assert_eq!(&b[..5], &[0x08, 0x02, 0x12, 0x34, 0x05]);
        let back = Message::parse(&b).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.user_user().unwrap().len(), 300);
        assert_eq!(back.ie(ie::DISPLAY), Some(&b"Board room"[..]));
    }

    #[test]
    fn release_complete_carries_its_cause() {
        let m = Message::new(MessageType::ReleaseComplete, 7, true)
            .with_cause(cause::NORMAL_CALL_CLEARING);
        let b = m.to_bytes();
        assert_eq!(b[2] & 0x80, 0x80, "the flag of the answering side");
        let back = Message::parse(&b).unwrap();
        assert!(back.from_destination);
        assert_eq!(back.cause(), Some(16));
        // A cause with octet 3a.
        let m = Message::new(MessageType::ReleaseComplete, 7, false)
            .with(ie::CAUSE, vec![0x01, 0x81, 0x91]);
        assert_eq!(m.cause(), Some(17));
    }

    #[test]
    fn rejects_what_is_not_h225_q931() {
        assert_eq!(Message::parse(&[0x08]), Err(Q931Error::Truncated));
        assert_eq!(
            Message::parse(&[0x09, 2, 0, 1, 5]),
            Err(Q931Error::BadDiscriminator(9))
        );
        assert_eq!(
            Message::parse(&[0x08, 1, 1, 5]),
            Err(Q931Error::BadCallReference(1))
        );
        // An element longer than the message.
        assert_eq!(
            Message::parse(&[0x08, 2, 0, 1, 5, 0x28, 9, b'a']),
            Err(Q931Error::Truncated)
        );
        assert_eq!(
            Message::parse(&[0x08, 2, 0, 1, 5, 0x7e, 0]),
            Err(Q931Error::Truncated)
        );
        let many: Vec<u8> = [0x08, 2, 0, 1, 5]
            .into_iter()
            .chain(std::iter::repeat_n(0xa1, MAX_IES + 1))
            .collect();
        assert_eq!(Message::parse(&many), Err(Q931Error::TooMany));
    }
}
