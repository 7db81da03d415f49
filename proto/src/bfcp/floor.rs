//! The floor control server of one conference (RFC 8855 §13): who holds
//! each floor (the content channel's floor, usually one), requests, grants,
//! releases and revocations. Sans-IO: a message from a user goes in, the
//! messages to send (to that user and to others) and the floor changes come
//! out. The node maps users to their transports.
//!
//! Policy: one holder per floor. A request for a held floor either takes it
//! over (the holder is told `Revoked`; the default, as room systems expect:
//! whoever presents last is shown) or waits in a queue (`Pending`, granted
//! when the holder releases).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::message::{AttrType, Attribute, ErrorCode, Message, Primitive, Status};

/// What the server does with a request for a floor someone holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Contention {
    /// The newer request takes the floor; the holder is revoked.
    #[default]
    TakeOver,
    /// The newer request waits until the holder releases.
    Queue,
}

/// A message for a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    pub user_id: u16,
    pub message: Message,
}

/// A change of a floor's holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorEvent {
    Granted {
        floor: u16,
        user_id: u16,
    },
    /// Released by its holder, revoked by a newer request, or gone with
    /// the holder's call.
    Released {
        floor: u16,
        user_id: u16,
        status: Status,
    },
}

/// What handling one input produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    pub sends: Vec<Send>,
    pub events: Vec<FloorEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Request {
    id: u16,
    user_id: u16,
    floor: u16,
}

#[derive(Debug, Default)]
struct Floor {
    holder: Option<Request>,
    queue: VecDeque<Request>,
    /// Users that asked (FloorQuery) to be told of this floor's changes.
    watchers: BTreeSet<u16>,
}

pub struct FloorServer {
    conference_id: u32,
    /// The BFCP version we speak to each user (as it spoke to us).
    versions: BTreeMap<u16, u8>,
    floors: BTreeMap<u16, Floor>,
    contention: Contention,
    next_request_id: u16,
    next_transaction_id: u16,
}

/// The primitives we answer (HelloAck's SUPPORTED-PRIMITIVES).
const SUPPORTED_PRIMITIVES: &[Primitive] = &[
    Primitive::FloorRequest,
    Primitive::FloorRelease,
    Primitive::FloorRequestQuery,
    Primitive::FloorRequestStatus,
    Primitive::UserQuery,
    Primitive::UserStatus,
    Primitive::FloorQuery,
    Primitive::FloorStatus,
    Primitive::Hello,
    Primitive::HelloAck,
    Primitive::Error,
    Primitive::FloorRequestStatusAck,
    Primitive::FloorStatusAck,
    Primitive::Goodbye,
    Primitive::GoodbyeAck,
];

const SUPPORTED_ATTRIBUTES: &[AttrType] = &[
    AttrType::BeneficiaryId,
    AttrType::FloorId,
    AttrType::FloorRequestId,
    AttrType::Priority,
    AttrType::RequestStatus,
    AttrType::ErrorCode,
    AttrType::ErrorInfo,
    AttrType::ParticipantProvidedInfo,
    AttrType::StatusInfo,
    AttrType::SupportedAttributes,
    AttrType::SupportedPrimitives,
    AttrType::UserDisplayName,
    AttrType::UserUri,
    AttrType::BeneficiaryInformation,
    AttrType::FloorRequestInformation,
    AttrType::RequestedByInformation,
    AttrType::FloorRequestStatus,
    AttrType::OverallRequestStatus,
];

impl FloorServer {
    /// A server for `conference_id` with these floors (the floor IDs the
    /// SDP's `a=floorid` lines name).
    pub fn new(conference_id: u32, floors: &[u16], contention: Contention) -> FloorServer {
        FloorServer {
            conference_id,
            versions: BTreeMap::new(),
            floors: floors.iter().map(|f| (*f, Floor::default())).collect(),
            contention,
            next_request_id: 1,
            next_transaction_id: 1,
        }
    }

    pub fn conference_id(&self) -> u32 {
        self.conference_id
    }

    /// Who holds `floor`.
    pub fn holder(&self, floor: u16) -> Option<u16> {
        self.floors.get(&floor)?.holder.map(|r| r.user_id)
    }

    /// Requests waiting for `floor`.
    pub fn queued(&self, floor: u16) -> usize {
        self.floors.get(&floor).map_or(0, |f| f.queue.len())
    }

    /// A message from user `msg.user_id`.
    pub fn handle(&mut self, msg: &Message) -> Effects {
        let mut fx = Effects::default();
        self.versions.insert(msg.user_id, msg.version);
        if msg.responder {
            // Acks and responses to what we sent: nothing to do (we send
            // no requests that need an answer to go on).
            return fx;
        }
        if msg.conference_id != self.conference_id {
            fx.sends
                .push(error(msg, ErrorCode::ConferenceDoesNotExist, ""));
            return fx;
        }
        if let Some(kind) = msg.unknown_mandatory() {
            let mut e = error(msg, ErrorCode::UnknownMandatoryAttribute, "");
            // §5.2.6: the details list the unknown attributes.
            if let Some(a) = e.message.attributes.first_mut() {
                a.value = super::message::Value::Bytes(vec![
                    ErrorCode::UnknownMandatoryAttribute.as_u8(),
                    kind << 1,
                ]);
            }
            fx.sends.push(e);
            return fx;
        }
        match msg.primitive {
            Primitive::Hello => fx.sends.push(self.hello_ack(msg)),
            Primitive::FloorRequest => self.floor_request(msg, &mut fx),
            Primitive::FloorRelease => self.floor_release(msg, &mut fx),
            Primitive::FloorRequestQuery => self.floor_request_query(msg, &mut fx),
            Primitive::FloorQuery => self.floor_query(msg, &mut fx),
            Primitive::UserQuery => fx.sends.push(Send {
                user_id: msg.user_id,
                message: self.user_status(msg),
            }),
            Primitive::Goodbye => {
                fx.sends.push(Send {
                    user_id: msg.user_id,
                    message: Message::response_to(msg, Primitive::GoodbyeAck),
                });
                let gone = self.user_gone(msg.user_id);
                fx.sends.extend(gone.sends);
                fx.events.extend(gone.events);
            }
            Primitive::ChairAction => fx.sends.push(error(
                msg,
                ErrorCode::UnauthorizedOperation,
                "this conference has no chairs",
            )),
            // Acks without the R bit, errors and statuses from a client:
            // nothing to answer.
            Primitive::HelloAck
            | Primitive::Error
            | Primitive::FloorRequestStatusAck
            | Primitive::FloorStatusAck
            | Primitive::GoodbyeAck
            | Primitive::FloorRequestStatus
            | Primitive::FloorStatus
            | Primitive::UserStatus
            | Primitive::ChairActionAck => {}
            Primitive::Other(_) => fx.sends.push(error(msg, ErrorCode::UnknownPrimitive, "")),
        }
        fx
    }

    /// A user left (its call ended): its floors are released, its queued
    /// requests dropped; others are told.
    pub fn user_gone(&mut self, user_id: u16) -> Effects {
        let mut fx = Effects::default();
        let floors: Vec<u16> = self.floors.keys().copied().collect();
        for floor in floors {
            if let Some(f) = self.floors.get_mut(&floor) {
                f.queue.retain(|r| r.user_id != user_id);
                f.watchers.remove(&user_id);
            }
            let held = self
                .floors
                .get(&floor)
                .and_then(|f| f.holder)
                .filter(|r| r.user_id == user_id);
            if let Some(r) = held {
                self.end_grant(r, Status::Released, None, &mut fx);
            }
        }
        self.versions.remove(&user_id);
        fx
    }

    /// Takes `floor` for `user_id` without a message (the node does this on
    /// behalf of a presenter that has no BFCP: a native screen share, an
    /// H.239 token holder): as a FloorRequest would, with the same policy.
    pub fn request_for(&mut self, user_id: u16, floor: u16) -> Effects {
        let mut fx = Effects::default();
        if self.floors.contains_key(&floor) {
            self.new_request(user_id, floor, None, &mut fx);
        }
        fx
    }

    /// Releases what `user_id` holds or waits for on `floor` (the node's
    /// counterpart of [`Self::request_for`]).
    pub fn release_for(&mut self, user_id: u16, floor: u16) -> Effects {
        let mut fx = Effects::default();
        let Some(f) = self.floors.get_mut(&floor) else {
            return fx;
        };
        f.queue.retain(|r| r.user_id != user_id);
        if let Some(r) = f.holder.filter(|r| r.user_id == user_id) {
            self.end_grant(r, Status::Released, None, &mut fx);
        }
        fx
    }

    fn hello_ack(&self, msg: &Message) -> Send {
        let primitives: Vec<u8> = SUPPORTED_PRIMITIVES.iter().map(|p| p.as_u8()).collect();
        let attributes: Vec<u8> = SUPPORTED_ATTRIBUTES
            .iter()
            .map(|a| a.as_u8() << 1)
            .collect();
        Send {
            user_id: msg.user_id,
            message: Message::response_to(msg, Primitive::HelloAck)
                .with(Attribute::bytes(AttrType::SupportedPrimitives, primitives))
                .with(Attribute::bytes(AttrType::SupportedAttributes, attributes)),
        }
    }

    fn user_status(&self, msg: &Message) -> Message {
        let mut m = Message::response_to(msg, Primitive::UserStatus);
        for f in self.floors.values() {
            for r in f.holder.iter().chain(f.queue.iter()) {
                if r.user_id == msg.user_id {
                    m.attributes
                        .push(self.request_information(r, self.status_of(r)));
                }
            }
        }
        m
    }

    fn floor_request(&mut self, msg: &Message, fx: &mut Effects) {
        let floors = msg.floor_ids();
        let Some(&floor) = floors.first() else {
            fx.sends
                .push(error(msg, ErrorCode::InvalidFloorId, "no FLOOR-ID"));
            return;
        };
        if floors.len() > 1 || !self.floors.contains_key(&floor) {
            fx.sends
                .push(error(msg, ErrorCode::InvalidFloorId, "unknown floor"));
            return;
        }
        let already = self.floors.get(&floor).is_some_and(|f| {
            f.holder
                .iter()
                .chain(f.queue.iter())
                .any(|r| r.user_id == msg.user_id)
        });
        if already {
            fx.sends.push(error(
                msg,
                ErrorCode::MaxFloorRequestsReached,
                "one request per floor",
            ));
            return;
        }
        self.new_request(msg.user_id, floor, Some(msg), fx);
    }

    fn new_request(&mut self, user_id: u16, floor: u16, msg: Option<&Message>, fx: &mut Effects) {
        let id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1).max(1);
        let request = Request { id, user_id, floor };
        let holder = self.floors.get(&floor).and_then(|f| f.holder);
        let status = match (holder, self.contention) {
            (None, _) => Status::Granted,
            (Some(old), Contention::TakeOver) => {
                // Watchers hear of the new holder once, below.
                self.end_grant(old, Status::Revoked, None, fx);
                fx.sends
                    .retain(|x| x.message.primitive != Primitive::FloorStatus);
                Status::Granted
            }
            (Some(_), Contention::Queue) => Status::Pending,
        };
        let Some(f) = self.floors.get_mut(&floor) else {
            return;
        };
        if status == Status::Granted {
            f.holder = Some(request);
        } else {
            f.queue.push_back(request);
        }
        let position = if status == Status::Pending {
            f.queue.len().min(255) as u8
        } else {
            0
        };
        if let Some(msg) = msg {
            // The response first, then the floor's news to its watchers.
            fx.sends.push(Send {
                user_id,
                message: Message::response_to(msg, Primitive::FloorRequestStatus)
                    .with(self.request_information_at(&request, status, position)),
            });
        }
        if status == Status::Granted {
            fx.events.push(FloorEvent::Granted { floor, user_id });
            self.tell_watchers(floor, fx);
        }
    }

    /// Ends `r`'s grant (released, revoked): tells its user (unless
    /// `answer` is the response already going to it), then grants the next
    /// queued request.
    fn end_grant(
        &mut self,
        r: Request,
        status: Status,
        answer: Option<&Message>,
        fx: &mut Effects,
    ) {
        let Some(f) = self.floors.get_mut(&r.floor) else {
            return;
        };
        if f.holder != Some(r) {
            return;
        }
        f.holder = None;
        let next = f.queue.pop_front();
        match answer {
            Some(req) => fx.sends.push(Send {
                user_id: r.user_id,
                message: Message::response_to(req, Primitive::FloorRequestStatus)
                    .with(self.request_information(&r, status)),
            }),
            None if self.versions.contains_key(&r.user_id) => {
                let m = self.notification(r.user_id, Primitive::FloorRequestStatus);
                fx.sends.push(Send {
                    user_id: r.user_id,
                    message: m.with(self.request_information(&r, status)),
                });
            }
            None => {}
        }
        fx.events.push(FloorEvent::Released {
            floor: r.floor,
            user_id: r.user_id,
            status,
        });
        if let Some(next) = next {
            if let Some(f) = self.floors.get_mut(&r.floor) {
                f.holder = Some(next);
            }
            if self.versions.contains_key(&next.user_id) {
                let m = self.notification(next.user_id, Primitive::FloorRequestStatus);
                fx.sends.push(Send {
                    user_id: next.user_id,
                    message: m.with(self.request_information(&next, Status::Granted)),
                });
            }
            fx.events.push(FloorEvent::Granted {
                floor: r.floor,
                user_id: next.user_id,
            });
        }
        self.tell_watchers(r.floor, fx);
    }

    fn floor_release(&mut self, msg: &Message, fx: &mut Effects) {
        let Some(id) = msg
            .attribute(AttrType::FloorRequestId)
            .and_then(Attribute::id)
        else {
            fx.sends.push(error(
                msg,
                ErrorCode::FloorRequestIdDoesNotExist,
                "no FLOOR-REQUEST-ID",
            ));
            return;
        };
        let found = self.floors.values().find_map(|f| {
            f.holder
                .iter()
                .chain(f.queue.iter())
                .find(|r| r.id == id)
                .copied()
        });
        let Some(r) = found else {
            fx.sends
                .push(error(msg, ErrorCode::FloorRequestIdDoesNotExist, ""));
            return;
        };
        if r.user_id != msg.user_id {
            fx.sends.push(error(
                msg,
                ErrorCode::UnauthorizedOperation,
                "not your request",
            ));
            return;
        }
        let held = self
            .floors
            .get(&r.floor)
            .is_some_and(|f| f.holder == Some(r));
        if held {
            self.end_grant(r, Status::Released, Some(msg), fx);
        } else {
            if let Some(f) = self.floors.get_mut(&r.floor) {
                f.queue.retain(|q| q.id != r.id);
            }
            fx.sends.push(Send {
                user_id: msg.user_id,
                message: Message::response_to(msg, Primitive::FloorRequestStatus)
                    .with(self.request_information(&r, Status::Cancelled)),
            });
        }
    }

    fn floor_request_query(&self, msg: &Message, fx: &mut Effects) {
        let id = msg
            .attribute(AttrType::FloorRequestId)
            .and_then(Attribute::id);
        let found = self.floors.values().find_map(|f| {
            f.holder
                .iter()
                .chain(f.queue.iter())
                .find(|r| Some(r.id) == id)
                .copied()
        });
        match found {
            Some(r) => fx.sends.push(Send {
                user_id: msg.user_id,
                message: Message::response_to(msg, Primitive::FloorRequestStatus)
                    .with(self.request_information(&r, self.status_of(&r))),
            }),
            None => fx
                .sends
                .push(error(msg, ErrorCode::FloorRequestIdDoesNotExist, "")),
        }
    }

    fn floor_query(&mut self, msg: &Message, fx: &mut Effects) {
        let floors = msg.floor_ids();
        // A FloorQuery replaces the user's subscriptions (§13.5).
        for f in self.floors.values_mut() {
            f.watchers.remove(&msg.user_id);
        }
        for floor in &floors {
            if let Some(f) = self.floors.get_mut(floor) {
                f.watchers.insert(msg.user_id);
            }
        }
        let mut m = Message::response_to(msg, Primitive::FloorStatus);
        if let Some(&floor) = floors.first() {
            if !self.floors.contains_key(&floor) {
                fx.sends.push(error(msg, ErrorCode::InvalidFloorId, ""));
                return;
            }
            m = self.floor_status(m, floor);
        }
        fx.sends.push(Send {
            user_id: msg.user_id,
            message: m,
        });
    }

    fn tell_watchers(&mut self, floor: u16, fx: &mut Effects) {
        let watchers: Vec<u16> = self
            .floors
            .get(&floor)
            .map(|f| f.watchers.iter().copied().collect())
            .unwrap_or_default();
        for user_id in watchers {
            let m = self.notification(user_id, Primitive::FloorStatus);
            let m = self.floor_status(m, floor);
            fx.sends.push(Send {
                user_id,
                message: m,
            });
        }
    }

    fn floor_status(&self, mut m: Message, floor: u16) -> Message {
        m.attributes.push(Attribute::u16(AttrType::FloorId, floor));
        if let Some(f) = self.floors.get(&floor) {
            for r in f.holder.iter().chain(f.queue.iter()) {
                m.attributes
                    .push(self.request_information(r, self.status_of(r)));
            }
        }
        m
    }

    fn status_of(&self, r: &Request) -> Status {
        let held = self
            .floors
            .get(&r.floor)
            .is_some_and(|f| f.holder == Some(*r));
        if held {
            Status::Granted
        } else {
            Status::Pending
        }
    }

    fn request_information(&self, r: &Request, status: Status) -> Attribute {
        let position = if status == Status::Pending {
            self.floors
                .get(&r.floor)
                .and_then(|f| f.queue.iter().position(|q| q == r))
                .map_or(0, |p| (p + 1).min(255) as u8)
        } else {
            0
        };
        self.request_information_at(r, status, position)
    }

    fn request_information_at(&self, r: &Request, status: Status, position: u8) -> Attribute {
        Attribute::grouped(
            AttrType::FloorRequestInformation,
            r.id,
            vec![
                Attribute::grouped(
                    AttrType::OverallRequestStatus,
                    r.id,
                    vec![Attribute::request_status(status, position)],
                ),
                Attribute::grouped(AttrType::FloorRequestStatus, r.floor, vec![]),
                Attribute::grouped(AttrType::BeneficiaryInformation, r.user_id, vec![]),
            ],
        )
    }

    /// A server-initiated message to `user_id`: transaction ID 0 over a
    /// stream (RFC 8855 §8: no response expected), a fresh one over UDP
    /// (the client acknowledges it).
    fn notification(&mut self, user_id: u16, primitive: Primitive) -> Message {
        let version = self
            .versions
            .get(&user_id)
            .copied()
            .unwrap_or(super::message::VERSION_STREAM);
        let mut m = Message::new(version, primitive, self.conference_id, user_id);
        if version == super::message::VERSION_DATAGRAM {
            m.transaction_id = self.next_transaction_id;
            self.next_transaction_id = self.next_transaction_id.wrapping_add(1).max(1);
        }
        m
    }
}

/// An Error response to `msg`.
pub fn error(msg: &Message, code: ErrorCode, info: &str) -> Send {
    let mut m = Message::response_to(msg, Primitive::Error)
        .with(Attribute::bytes(AttrType::ErrorCode, vec![code.as_u8()]));
    if !info.is_empty() {
        m = m.with(Attribute::bytes(AttrType::ErrorInfo, info));
    }
    Send {
        user_id: msg.user_id,
        message: m,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const CONF: u32 = 77;

    fn request(user: u16, tid: u16, floor: u16) -> Message {
        let mut m = Message::new(1, Primitive::FloorRequest, CONF, user)
            .with(Attribute::u16(AttrType::FloorId, floor));
        m.transaction_id = tid;
        m
    }

    fn status_in(m: &Message) -> Option<(u16, Status)> {
        let fri = m.attribute(AttrType::FloorRequestInformation)?;
        let ors = fri
            .children()
            .iter()
            .find(|a| a.kind == AttrType::OverallRequestStatus)?;
        let rs = ors
            .children()
            .iter()
            .find(|a| a.kind == AttrType::RequestStatus)?
            .id()?;
        Some((fri.id()?, Status::from_u8((rs >> 8) as u8)))
    }

    #[test]
    fn grants_a_free_floor_and_releases_it() {
        let mut s = FloorServer::new(CONF, &[1], Contention::TakeOver);
        let fx = s.handle(&request(5, 10, 1));
        assert_eq!(
            fx.events,
            vec![FloorEvent::Granted {
                floor: 1,
                user_id: 5
            }]
        );
        let resp = &fx.sends[0].message;
        assert!(resp.responder);
        assert_eq!(resp.transaction_id, 10);
        let (id, status) = status_in(resp).unwrap();
        assert_eq!(status, Status::Granted);
        assert_eq!(s.holder(1), Some(5));

        let mut rel = Message::new(1, Primitive::FloorRelease, CONF, 5)
            .with(Attribute::u16(AttrType::FloorRequestId, id));
        rel.transaction_id = 11;
        let fx = s.handle(&rel);
        assert_eq!(status_in(&fx.sends[0].message).unwrap().1, Status::Released);
        assert!(matches!(
            fx.events[0],
            FloorEvent::Released {
                floor: 1,
                user_id: 5,
                ..
            }
        ));
        assert_eq!(s.holder(1), None);
    }

    #[test]
    fn a_newer_request_takes_the_floor_over() {
        let mut s = FloorServer::new(CONF, &[1], Contention::TakeOver);
        s.handle(&request(5, 1, 1));
        let fx = s.handle(&request(6, 1, 1));
        // The old holder is told Revoked (a notification: tid 0 over TCP),
        // the new one Granted.
        let to5 = fx.sends.iter().find(|x| x.user_id == 5).unwrap();
        assert!(!to5.message.responder);
        assert_eq!(to5.message.transaction_id, 0);
        assert_eq!(status_in(&to5.message).unwrap().1, Status::Revoked);
        let to6 = fx.sends.iter().find(|x| x.user_id == 6).unwrap();
        assert_eq!(status_in(&to6.message).unwrap().1, Status::Granted);
        assert_eq!(s.holder(1), Some(6));
        assert_eq!(
            fx.events,
            vec![
                FloorEvent::Released {
                    floor: 1,
                    user_id: 5,
                    status: Status::Revoked
                },
                FloorEvent::Granted {
                    floor: 1,
                    user_id: 6
                },
            ]
        );
    }

    #[test]
    fn queued_requests_wait_and_get_the_floor_in_turn() {
        let mut s = FloorServer::new(CONF, &[1], Contention::Queue);
        s.handle(&request(5, 1, 1));
        let fx = s.handle(&request(6, 1, 1));
        assert_eq!(status_in(&fx.sends[0].message).unwrap().1, Status::Pending);
        assert_eq!(s.queued(1), 1);
        let fx = s.user_gone(5);
        assert_eq!(s.holder(1), Some(6));
        let to6 = fx.sends.iter().find(|x| x.user_id == 6).unwrap();
        assert_eq!(status_in(&to6.message).unwrap().1, Status::Granted);
    }

    #[test]
    fn refuses_what_it_cannot_do_with_the_right_error() {
        let mut s = FloorServer::new(CONF, &[1], Contention::TakeOver);
        let code = |fx: &Effects| {
            fx.sends[0]
                .message
                .attribute(AttrType::ErrorCode)
                .and_then(Attribute::as_bytes)
                .map(|b| ErrorCode::from_u8(b[0]))
        };
        let mut wrong = request(5, 1, 1);
        wrong.conference_id = 78;
        assert_eq!(
            code(&s.handle(&wrong)),
            Some(ErrorCode::ConferenceDoesNotExist)
        );
        assert_eq!(
            code(&s.handle(&request(5, 2, 9))),
            Some(ErrorCode::InvalidFloorId)
        );
        let rel = Message::new(1, Primitive::FloorRelease, CONF, 5)
            .with(Attribute::u16(AttrType::FloorRequestId, 999));
        assert_eq!(
            code(&s.handle(&rel)),
            Some(ErrorCode::FloorRequestIdDoesNotExist)
        );
        let odd = Message::new(1, Primitive::Other(40), CONF, 5);
        assert_eq!(code(&s.handle(&odd)), Some(ErrorCode::UnknownPrimitive));
        s.handle(&request(5, 3, 1));
        assert_eq!(
            code(&s.handle(&request(5, 4, 1))),
            Some(ErrorCode::MaxFloorRequestsReached)
        );
    }

    /// Every truncation and every single-byte change of messages a room
    /// system sends (and of our answers): parsing never panics, and the
    /// server answers whatever parses with messages that parse.
    #[test]
    fn mangled_messages_never_panic_the_server() {
        let mut seeds = vec![
            Message::new(1, Primitive::Hello, CONF, 5),
            request(5, 3, 1),
            Message::new(2, Primitive::FloorQuery, CONF, 6)
                .with(Attribute::u16(AttrType::FloorId, 1)),
            Message::new(1, Primitive::FloorRelease, CONF, 5)
                .with(Attribute::u16(AttrType::FloorRequestId, 1)),
        ];
        let mut s = FloorServer::new(CONF, &[1], Contention::TakeOver);
        let answers: Vec<Message> = seeds
            .iter()
            .flat_map(|m| s.handle(m).sends)
            .map(|x| x.message)
            .collect();
        seeds.extend(answers);
        let mut parsed = 0;
        for seed in &seeds {
            let bytes = seed.to_bytes();
            let mut variants: Vec<Vec<u8>> =
                (0..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
            for i in 0..bytes.len() {
                for v in [
                    0x00,
                    0xff,
                    bytes[i] ^ 0x01,
                    bytes[i] ^ 0x80,
                    bytes[i].wrapping_add(4),
                ] {
                    let mut b = bytes.clone();
                    b[i] = v;
                    variants.push(b);
                }
            }
            for b in variants {
                let _ = super::super::message::message_len(&b);
                let Ok(m) = Message::parse(&b) else { continue };
                parsed += 1;
                let mut server = FloorServer::new(CONF, &[1], Contention::Queue);
                server.handle(&request(9, 1, 1));
                for x in server.handle(&m).sends {
                    Message::parse(&x.message.to_bytes()).expect("our answer parses");
                }
                server.user_gone(m.user_id);
            }
        }
        assert!(parsed > 100, "the variants reach the server: {parsed}");
    }

    #[test]
    fn hello_and_floor_status_subscriptions() {
        let mut s = FloorServer::new(CONF, &[1], Contention::TakeOver);
        let fx = s.handle(&Message::new(2, Primitive::Hello, CONF, 7));
        assert_eq!(fx.sends[0].message.primitive, Primitive::HelloAck);
        assert!(
            fx.sends[0]
                .message
                .attribute(AttrType::SupportedPrimitives)
                .is_some()
        );
        let q = Message::new(2, Primitive::FloorQuery, CONF, 7)
            .with(Attribute::u16(AttrType::FloorId, 1));
        let fx = s.handle(&q);
        assert_eq!(fx.sends[0].message.primitive, Primitive::FloorStatus);
        // Someone takes the floor: the watcher hears of it, on UDP with a
        // transaction ID of its own.
        let fx = s.request_for(100, 1);
        let to7 = fx.sends.iter().find(|x| x.user_id == 7).unwrap();
        assert_eq!(to7.message.primitive, Primitive::FloorStatus);
        assert_ne!(to7.message.transaction_id, 0);
        assert_eq!(s.holder(1), Some(100));
        // A take-over is one piece of news to a watcher, not two.
        let fx = s.request_for(101, 1);
        let to7: Vec<_> = fx.sends.iter().filter(|x| x.user_id == 7).collect();
        assert_eq!(to7.len(), 1, "{to7:?}");
        assert_eq!(s.holder(1), Some(101));
    }
}
