//! The RFC 3261 §17 transaction layer, sans-IO.
//!
//! One [`TransactionLayer`] owns every client and server transaction of a SIP
//! endpoint. Parsed messages go in through [`TransactionLayer::handle_message`];
//! the TU (the bridge) answers with [`TransactionLayer::respond`] and starts
//! its own requests with [`TransactionLayer::send_request`]. Everything that
//! comes out — bytes for the socket, events for the TU, the next deadline — is
//! drained through `poll_transmit`, `poll_event` and `poll_timeout`.
//!
//! Besides the four state machines of §17 (with the RFC 6026 `Accepted`
//! states, so that retransmitted INVITEs after a 2xx are absorbed rather than
//! looking like new calls) the layer also does the UAS core's 2xx
//! retransmission (§13.3.1.4), because getting it wrong is the most common
//! reason a call drops after 32 seconds.
//!
//! Timers live in one ordered map keyed by deadline, so `poll_timeout` is
//! O(log n) with ten thousand live transactions; each transaction remembers
//! the ids of its armed timers so that stopping one removes it right away.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::message::{MAGIC_COOKIE, Message, Method, Request, Response, Via};

/// Default bound on live server transactions.
pub const DEFAULT_MAX_TRANSACTIONS: usize = 10_000;

/// The RFC 3261 timer base values (§17.1.1.1, Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate; default 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses; default 4 s.
    pub t2: Duration,
    /// Maximum duration a message remains in the network; default 5 s.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Timers {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    fn t64(&self) -> Duration {
        self.t1 * 64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// Reliable transports get no retransmissions and zero-length wait timers.
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Role {
    Server,
    Client,
}

/// Identifies a transaction: the top Via branch, sent-by and method
/// (RFC 3261 §17.2.3, §17.1.3). For RFC 2543 peers without a magic-cookie
/// branch the "branch" is built from Request-URI, From tag, Call-ID, CSeq
/// number and the whole top Via instead.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    role: Role,
    branch: String,
    sent_by: String,
    method: Method,
}

impl TransactionKey {
    pub fn branch(&self) -> &str {
        &self.branch
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    pub fn is_server(&self) -> bool {
        self.role == Role::Server
    }

    /// The server-side key of an incoming request; ACK maps onto its INVITE.
    fn server(req: &Request, via: &Via, normalize_ack: bool) -> TransactionKey {
        let method = match &req.method {
            Method::Ack if normalize_ack => Method::Invite,
            m => m.clone(),
        };
        let branch = match &via.branch {
            Some(b) if via.has_magic_cookie() => b.clone(),
            _ => format!(
                "rfc2543|{}|{}|{}|{}|{}",
                req.uri,
                req.from_tag().unwrap_or(""),
                req.call_id().unwrap_or(""),
                req.cseq().map_or(0, |(n, _)| n),
                req.headers.get_all("Via").next().unwrap_or(""),
            ),
        };
        TransactionKey {
            role: Role::Server,
            branch,
            sent_by: via.sent_by().to_ascii_lowercase(),
            method,
        }
    }

    fn client(branch: &str, method: &Method) -> TransactionKey {
        TransactionKey {
            role: Role::Client,
            branch: branch.to_owned(),
            sent_by: String::new(),
            method: method.clone(),
        }
    }
}

/// Bytes to put on the wire. For TCP, `dest` names the connection (the peer
/// address the request came from, §18.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub dest: SocketAddr,
    pub transport: Transport,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionEvent {
    /// A new server transaction; respond through `key`. Also an ACK to a 2xx
    /// (which has no transaction of its own; do not respond to it), and a
    /// CANCEL that matches no INVITE (answer it 481).
    NewRequest {
        key: TransactionKey,
        request: Request,
        from: SocketAddr,
        transport: Transport,
    },
    /// A CANCEL matched an INVITE still in Proceeding. The layer has already
    /// answered the CANCEL `200 OK`; the TU should answer the INVITE 487.
    Cancelled {
        invite_key: TransactionKey,
        cancel_request: Request,
    },
    /// A response to a client transaction (retransmitted finals absorbed;
    /// retransmitted 2xx to INVITE are delivered so the TU can re-ACK).
    Response {
        key: TransactionKey,
        response: Response,
    },
    /// Timer B or F (no final response), or H (no ACK for our non-2xx final).
    Timeout { key: TransactionKey },
    /// A 2xx to INVITE was retransmitted for 64*T1 without an ACK: the session
    /// should be ended with a BYE (§13.3.1.4).
    AckTimeout { call_id: String },
    /// The transaction is gone; its key will not be seen again.
    Terminated { key: TransactionKey },
}

/// API misuse by the TU; the peer cannot cause these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransactionError {
    #[error("no live transaction for this key")]
    UnknownTransaction,
    #[error("only server transactions can be responded to")]
    NotServer,
    #[error("status code {0} is not valid")]
    InvalidStatus(u16),
    #[error("cannot send a {status} response in state {state}")]
    InvalidState { status: u16, state: &'static str },
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub server_transactions: usize,
    pub client_transactions: usize,
    /// 2xx responses waiting for their ACK.
    pub awaiting_ack: usize,
    /// Retransmitted requests/responses (and ACKs of non-2xx) swallowed.
    pub absorbed: u64,
    /// Messages we retransmitted on a timer.
    pub retransmitted: u64,
    /// Requests answered 503 because the layer was full.
    pub rejected_overload: u64,
    /// Responses matching no client transaction.
    pub stray_responses: u64,
    /// Messages without a usable top Via.
    pub dropped: u64,
    pub timeouts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    InviteServer,
    NonInviteServer,
    InviteClient,
    NonInviteClient,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Calling,
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    /// RFC 6026 §7.1 / §8.4: after a 2xx to INVITE.
    Accepted,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Calling => "Calling",
            State::Trying => "Trying",
            State::Proceeding => "Proceeding",
            State::Completed => "Completed",
            State::Confirmed => "Confirmed",
            State::Accepted => "Accepted",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimerKind {
    A,
    B,
    D,
    E,
    F,
    G,
    H,
    I,
    J,
    K,
    L,
    M,
}

type TimerId = (Instant, u64);
type AckId = (String, u32);

#[derive(Debug, Clone)]
enum TimerTarget {
    Txn(TransactionKey, TimerKind),
    AckRetransmit(AckId),
    AckGiveUp(AckId),
}

#[derive(Debug, Default)]
struct Wheel {
    map: BTreeMap<TimerId, TimerTarget>,
    seq: u64,
}

impl Wheel {
    fn insert(&mut self, at: Instant, target: TimerTarget) -> TimerId {
        self.seq += 1;
        let id = (at, self.seq);
        self.map.insert(id, target);
        id
    }

    fn remove(&mut self, id: &TimerId) {
        self.map.remove(id);
    }
}

#[derive(Debug)]
struct Txn {
    kind: Kind,
    state: State,
    /// Where this transaction sends: the request destination (client) or
    /// the §18.2.2 response destination (server).
    peer: SocketAddr,
    transport: Transport,
    /// Server: the last response sent, resent on request retransmissions.
    /// Client: the request, resent on Timer A/E.
    last_sent: Vec<u8>,
    /// Client INVITE: the original request (to build the ACK) and the ACK.
    request: Option<Request>,
    ack: Option<Vec<u8>>,
    /// Current retransmission interval of Timer A, E or G.
    interval: Duration,
    timers: Vec<(TimerKind, TimerId)>,
}

impl Txn {
    fn arm(&mut self, wheel: &mut Wheel, key: &TransactionKey, kind: TimerKind, at: Instant) {
        self.disarm(wheel, kind);
        let id = wheel.insert(at, TimerTarget::Txn(key.clone(), kind));
        self.timers.push((kind, id));
    }

    fn disarm(&mut self, wheel: &mut Wheel, kind: TimerKind) {
        if let Some(pos) = self.timers.iter().position(|(k, _)| *k == kind) {
            let (_, id) = self.timers.swap_remove(pos);
            wheel.remove(&id);
        }
    }

    fn disarm_all(&mut self, wheel: &mut Wheel) {
        for (_, id) in self.timers.drain(..) {
            wheel.remove(&id);
        }
    }

    fn transmit(&self, bytes: Vec<u8>) -> Transmit {
        Transmit {
            dest: self.peer,
            transport: self.transport,
            bytes,
        }
    }
}

/// §13.3.1.4: a 2xx to INVITE waiting for its ACK.
#[derive(Debug)]
struct AckWait {
    bytes: Vec<u8>,
    dest: SocketAddr,
    transport: Transport,
    interval: Duration,
    retransmit: Option<TimerId>,
    give_up: TimerId,
}

/// All SIP transactions of one endpoint. See the module docs.
#[derive(Debug)]
pub struct TransactionLayer {
    timers: Timers,
    max_transactions: usize,
    auto_trying: bool,
    txns: HashMap<TransactionKey, Txn>,
    server_count: usize,
    acks: HashMap<AckId, AckWait>,
    wheel: Wheel,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TransactionEvent>,
    stats: Stats,
    branch_seq: u64,
}

impl TransactionLayer {
    pub fn new(timers: Timers) -> TransactionLayer {
        TransactionLayer {
            timers,
            max_transactions: DEFAULT_MAX_TRANSACTIONS,
            auto_trying: true,
            txns: HashMap::new(),
            server_count: 0,
            acks: HashMap::new(),
            wheel: Wheel::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            branch_seq: 0,
        }
    }

    /// Bound on live server transactions; new requests beyond it get a 503
    /// from the layer itself.
    pub fn with_max_transactions(mut self, max: usize) -> TransactionLayer {
        self.max_transactions = max;
        self
    }

    /// Whether a new INVITE server transaction sends `100 Trying` at once
    /// (default true; §17.2.1 wants one within 200 ms unless the TU answers).
    pub fn with_auto_trying(mut self, on: bool) -> TransactionLayer {
        self.auto_trying = on;
        self
    }

    pub fn stats(&self) -> Stats {
        Stats {
            server_transactions: self.server_count,
            client_transactions: self.txns.len() - self.server_count,
            awaiting_ack: self.acks.len(),
            ..self.stats
        }
    }

    /// Live transactions (server and client).
    pub fn len(&self) -> usize {
        self.txns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TransactionEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.wheel.map.keys().next().map(|(at, _)| *at)
    }

    /// A parsed message from the network.
    pub fn handle_message(
        &mut self,
        now: Instant,
        msg: Message,
        from: SocketAddr,
        transport: Transport,
    ) {
        match msg {
            Message::Request(req) => self.handle_request(now, req, from, transport),
            Message::Response(resp) => self.handle_response(now, resp),
        }
        self.handle_timeout(now);
    }

    fn handle_request(
        &mut self,
        now: Instant,
        mut req: Request,
        from: SocketAddr,
        transport: Transport,
    ) {
        let Some(via) = req.top_via() else {
            self.stats.dropped += 1;
            return;
        };
        let key = TransactionKey::server(&req, &via, true);

        if req.method == Method::Ack {
            self.handle_ack(now, key, req, &via, from, transport);
            return;
        }

        if let Some(txn) = self.txns.get(&key) {
            // A retransmission: §17.2.1 / §17.2.2 resend the last response.
            self.stats.absorbed += 1;
            if !txn.last_sent.is_empty() {
                self.transmits
                    .push_back(txn.transmit(txn.last_sent.clone()));
            }
            return;
        }

        annotate_via(&mut req, &via, from);
        let dest = response_dest(&via, from, transport);

        if self.server_count >= self.max_transactions {
            self.stats.rejected_overload += 1;
            let mut resp = Response::for_request(&req, 503, "Service Unavailable")
                .with_to_tag(&stateless_tag(&req));
            resp.headers.push("Retry-After", "5");
            self.transmits.push_back(Transmit {
                dest,
                transport,
                bytes: resp.to_bytes(),
            });
            return;
        }

        let invite = req.method == Method::Invite;
        self.txns.insert(
            key.clone(),
            Txn {
                kind: if invite {
                    Kind::InviteServer
                } else {
                    Kind::NonInviteServer
                },
                state: if invite {
                    State::Proceeding
                } else {
                    State::Trying
                },
                peer: dest,
                transport,
                last_sent: Vec::new(),
                request: None,
                ack: None,
                interval: self.timers.t1,
                timers: Vec::new(),
            },
        );
        self.server_count += 1;

        if req.method == Method::Cancel {
            let invite_key = TransactionKey {
                method: Method::Invite,
                ..key.clone()
            };
            if let Some(inv) = self.txns.get(&invite_key) {
                // §9.2: the CANCEL is answered 200 whether or not it still
                // has an effect; only a pending INVITE concerns the TU.
                let pending = inv.state == State::Proceeding;
                let ok = Response::for_request(&req, 200, "OK");
                let ok = match req.to_tag() {
                    Some(_) => ok,
                    None => ok.with_to_tag(&stateless_tag(&req)),
                };
                let _ = self.respond(now, &key, ok);
                if pending {
                    self.events.push_back(TransactionEvent::Cancelled {
                        invite_key,
                        cancel_request: req,
                    });
                }
                return;
            }
        }

        if invite && self.auto_trying {
            let trying = Response::for_request(&req, 100, "Trying");
            let _ = self.respond(now, &key, trying);
        }
        self.events.push_back(TransactionEvent::NewRequest {
            key,
            request: req,
            from,
            transport,
        });
    }

    fn handle_ack(
        &mut self,
        now: Instant,
        invite_key: TransactionKey,
        req: Request,
        via: &Via,
        from: SocketAddr,
        transport: Transport,
    ) {
        if let Some(txn) = self.txns.get_mut(&invite_key)
            && txn.kind == Kind::InviteServer
        {
            match txn.state {
                State::Completed => {
                    // §17.2.1: ACK for our non-2xx final.
                    self.stats.absorbed += 1;
                    txn.state = State::Confirmed;
                    txn.disarm(&mut self.wheel, TimerKind::G);
                    txn.disarm(&mut self.wheel, TimerKind::H);
                    let wait = if txn.transport.is_reliable() {
                        Duration::ZERO
                    } else {
                        self.timers.t4
                    };
                    txn.arm(&mut self.wheel, &invite_key, TimerKind::I, now + wait);
                    return;
                }
                State::Confirmed | State::Proceeding => {
                    self.stats.absorbed += 1;
                    return;
                }
                // An RFC 2543 ACK for our 2xx lands here: it goes to the TU.
                _ => {}
            }
        }
        if let (Some(call_id), Some((cseq, _))) = (req.call_id(), req.cseq())
            && let Some(wait) = self.acks.remove(&(call_id.to_owned(), cseq))
        {
            if let Some(id) = wait.retransmit {
                self.wheel.remove(&id);
            }
            self.wheel.remove(&wait.give_up);
        }
        let key = TransactionKey::server(&req, via, false);
        self.events.push_back(TransactionEvent::NewRequest {
            key,
            request: req,
            from,
            transport,
        });
    }

    fn handle_response(&mut self, now: Instant, resp: Response) {
        let (Some(via), Some((_, method))) = (resp.top_via(), resp.cseq()) else {
            self.stats.dropped += 1;
            return;
        };
        let Some(branch) = via.branch.as_deref() else {
            self.stats.dropped += 1;
            return;
        };
        // CSeq method ACK never has a transaction; the key carries the method
        // so a response to CANCEL does not hit the INVITE (§17.1.3).
        let key = TransactionKey::client(branch, &method);
        let Some(txn) = self.txns.get_mut(&key) else {
            self.stats.stray_responses += 1;
            return;
        };
        let reliable = txn.transport.is_reliable();
        let status = resp.status;
        match (txn.kind, txn.state) {
            (Kind::InviteClient, State::Calling | State::Proceeding) => {
                txn.disarm(&mut self.wheel, TimerKind::A);
                txn.disarm(&mut self.wheel, TimerKind::B);
                if status < 200 {
                    txn.state = State::Proceeding;
                } else if status < 300 {
                    txn.state = State::Accepted;
                    txn.arm(&mut self.wheel, &key, TimerKind::M, now + self.timers.t64());
                } else {
                    let ack = txn.request.as_ref().map(|r| ack_for(r, &resp).to_bytes());
                    if let Some(ack) = &ack {
                        self.transmits.push_back(txn.transmit(ack.clone()));
                    }
                    txn.ack = ack;
                    txn.state = State::Completed;
                    let wait = if reliable {
                        Duration::ZERO
                    } else {
                        Duration::from_secs(32).max(self.timers.t64())
                    };
                    txn.arm(&mut self.wheel, &key, TimerKind::D, now + wait);
                }
                self.events.push_back(TransactionEvent::Response {
                    key,
                    response: resp,
                });
            }
            (Kind::InviteClient, State::Completed) => {
                self.stats.absorbed += 1;
                if status >= 300
                    && let Some(ack) = &txn.ack
                {
                    self.transmits.push_back(txn.transmit(ack.clone()));
                }
            }
            (Kind::InviteClient, State::Accepted) => {
                if (200..300).contains(&status) {
                    self.events.push_back(TransactionEvent::Response {
                        key,
                        response: resp,
                    });
                } else {
                    self.stats.absorbed += 1;
                }
            }
            (Kind::NonInviteClient, State::Trying | State::Proceeding) => {
                if status < 200 {
                    txn.state = State::Proceeding;
                } else {
                    txn.state = State::Completed;
                    txn.disarm(&mut self.wheel, TimerKind::E);
                    txn.disarm(&mut self.wheel, TimerKind::F);
                    let wait = if reliable {
                        Duration::ZERO
                    } else {
                        self.timers.t4
                    };
                    txn.arm(&mut self.wheel, &key, TimerKind::K, now + wait);
                }
                self.events.push_back(TransactionEvent::Response {
                    key,
                    response: resp,
                });
            }
            _ => self.stats.absorbed += 1,
        }
    }

    /// Sends `response` through the server transaction `key`.
    pub fn respond(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        response: Response,
    ) -> Result<(), TransactionError> {
        let status = response.status;
        if !(100..=699).contains(&status) {
            return Err(TransactionError::InvalidStatus(status));
        }
        let timers = self.timers;
        let txn = self
            .txns
            .get_mut(key)
            .ok_or(TransactionError::UnknownTransaction)?;
        let reliable = txn.transport.is_reliable();
        let invalid = TransactionError::InvalidState {
            status,
            state: txn.state.name(),
        };
        let bytes = response.to_bytes();
        match (txn.kind, txn.state) {
            (Kind::InviteClient | Kind::NonInviteClient, _) => {
                return Err(TransactionError::NotServer);
            }
            (Kind::InviteServer, State::Proceeding) => {
                if (200..300).contains(&status) {
                    txn.state = State::Accepted;
                    txn.arm(&mut self.wheel, key, TimerKind::L, now + timers.t64());
                } else if status >= 300 {
                    txn.state = State::Completed;
                    if !reliable {
                        txn.interval = timers.t1;
                        txn.arm(&mut self.wheel, key, TimerKind::G, now + timers.t1);
                    }
                    txn.arm(&mut self.wheel, key, TimerKind::H, now + timers.t64());
                }
            }
            // RFC 6026: further 2xx (e.g. from a forking proxy upstream) pass.
            (Kind::InviteServer, State::Accepted) if (200..300).contains(&status) => {}
            (Kind::NonInviteServer, State::Trying | State::Proceeding) => {
                if status < 200 {
                    txn.state = State::Proceeding;
                } else {
                    txn.state = State::Completed;
                    let wait = if reliable {
                        Duration::ZERO
                    } else {
                        timers.t64()
                    };
                    txn.arm(&mut self.wheel, key, TimerKind::J, now + wait);
                }
            }
            _ => return Err(invalid),
        }
        txn.last_sent = bytes.clone();
        let transmit = txn.transmit(bytes);

        if txn.kind == Kind::InviteServer
            && (200..300).contains(&status)
            && let (Some(call_id), Some((cseq, _))) = (response.call_id(), response.cseq())
        {
            let ack_id = (call_id.to_owned(), cseq);
            if let Some(old) = self.acks.remove(&ack_id) {
                if let Some(id) = old.retransmit {
                    self.wheel.remove(&id);
                }
                self.wheel.remove(&old.give_up);
            }
            let retransmit = (!reliable).then(|| {
                self.wheel
                    .insert(now + timers.t1, TimerTarget::AckRetransmit(ack_id.clone()))
            });
            let give_up = self
                .wheel
                .insert(now + timers.t64(), TimerTarget::AckGiveUp(ack_id.clone()));
            self.acks.insert(
                ack_id,
                AckWait {
                    bytes: transmit.bytes.clone(),
                    dest: transmit.dest,
                    transport: transmit.transport,
                    interval: timers.t1,
                    retransmit,
                    give_up,
                },
            );
        }
        self.transmits.push_back(transmit);
        self.handle_timeout(now);
        Ok(())
    }

    /// Starts a client transaction. The top Via should carry a fresh
    /// magic-cookie branch (see [`super::dialog::new_branch`]); if it has no
    /// branch the layer adds one. An ACK (for a 2xx) is sent without a
    /// transaction, as §17.1.1.3 prescribes.
    pub fn send_request(
        &mut self,
        now: Instant,
        mut request: Request,
        dest: SocketAddr,
        transport: Transport,
    ) -> TransactionKey {
        let branch = match request.top_via().and_then(|v| v.branch) {
            Some(b) => b,
            None => {
                self.branch_seq += 1;
                let mut h = DefaultHasher::new();
                request.call_id().hash(&mut h);
                self.branch_seq.hash(&mut h);
                let b = format!("{MAGIC_COOKIE}.t{:x}.{:016x}", self.branch_seq, h.finish());
                let top = request.headers.get_all("Via").next().map(str::to_owned);
                match top {
                    Some(top) => {
                        let top = format!("{top};branch={b}");
                        request.headers.replace_top_via(top);
                    }
                    None => request.headers.push_front(
                        "Via",
                        format!(
                            "SIP/2.0/{} tandem.invalid;branch={b};rport",
                            transport.as_str()
                        ),
                    ),
                }
                b
            }
        };
        let key = TransactionKey::client(&branch, &request.method);
        let bytes = request.to_bytes();
        if request.method == Method::Ack {
            self.transmits.push_back(Transmit {
                dest,
                transport,
                bytes,
            });
            return key;
        }
        if let Some(mut old) = self.txns.remove(&key) {
            old.disarm_all(&mut self.wheel);
        }
        let invite = request.method == Method::Invite;
        let reliable = transport.is_reliable();
        let mut txn = Txn {
            kind: if invite {
                Kind::InviteClient
            } else {
                Kind::NonInviteClient
            },
            state: if invite {
                State::Calling
            } else {
                State::Trying
            },
            peer: dest,
            transport,
            last_sent: bytes.clone(),
            request: invite.then_some(request),
            ack: None,
            interval: self.timers.t1,
            timers: Vec::new(),
        };
        let (retransmit, give_up) = if invite {
            (TimerKind::A, TimerKind::B)
        } else {
            (TimerKind::E, TimerKind::F)
        };
        if !reliable {
            txn.arm(&mut self.wheel, &key, retransmit, now + self.timers.t1);
        }
        txn.arm(&mut self.wheel, &key, give_up, now + self.timers.t64());
        self.transmits.push_back(txn.transmit(bytes));
        self.txns.insert(key.clone(), txn);
        key
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(entry) = self.wheel.map.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (id, target) = entry.remove_entry();
            match target {
                TimerTarget::Txn(key, kind) => self.fire(now, key, kind, id),
                TimerTarget::AckRetransmit(ack_id) => {
                    let t2 = self.timers.t2;
                    if let Some(wait) = self.acks.get_mut(&ack_id) {
                        self.stats.retransmitted += 1;
                        self.transmits.push_back(Transmit {
                            dest: wait.dest,
                            transport: wait.transport,
                            bytes: wait.bytes.clone(),
                        });
                        wait.interval = (wait.interval * 2).min(t2);
                        wait.retransmit = Some(
                            self.wheel
                                .insert(now + wait.interval, TimerTarget::AckRetransmit(ack_id)),
                        );
                    }
                }
                TimerTarget::AckGiveUp(ack_id) => {
                    if let Some(wait) = self.acks.remove(&ack_id) {
                        if let Some(id) = wait.retransmit {
                            self.wheel.remove(&id);
                        }
                        self.stats.timeouts += 1;
                        self.events
                            .push_back(TransactionEvent::AckTimeout { call_id: ack_id.0 });
                    }
                }
            }
        }
    }

    fn fire(&mut self, now: Instant, key: TransactionKey, kind: TimerKind, id: TimerId) {
        let t2 = self.timers.t2;
        let Some(txn) = self.txns.get_mut(&key) else {
            return;
        };
        let Some(pos) = txn.timers.iter().position(|(_, i)| *i == id) else {
            return;
        };
        txn.timers.swap_remove(pos);
        match kind {
            TimerKind::A | TimerKind::E | TimerKind::G => {
                self.stats.retransmitted += 1;
                self.transmits
                    .push_back(txn.transmit(txn.last_sent.clone()));
                txn.interval = match (kind, txn.state) {
                    // Timer A doubles without a cap (§17.1.1.2).
                    (TimerKind::A, _) => txn.interval * 2,
                    (TimerKind::E, State::Proceeding) => t2,
                    _ => (txn.interval * 2).min(t2),
                };
                let at = now + txn.interval;
                txn.arm(&mut self.wheel, &key, kind, at);
            }
            TimerKind::B | TimerKind::F | TimerKind::H => {
                self.stats.timeouts += 1;
                self.events
                    .push_back(TransactionEvent::Timeout { key: key.clone() });
                self.terminate(key);
            }
            TimerKind::D
            | TimerKind::I
            | TimerKind::J
            | TimerKind::K
            | TimerKind::L
            | TimerKind::M => {
                self.terminate(key);
            }
        }
    }

    fn terminate(&mut self, key: TransactionKey) {
        if let Some(mut txn) = self.txns.remove(&key) {
            txn.disarm_all(&mut self.wheel);
            if key.role == Role::Server {
                self.server_count -= 1;
            }
            self.events.push_back(TransactionEvent::Terminated { key });
        }
    }
}

/// §18.2.2 for a UAS: reliable transports answer on the same connection;
/// over UDP answer the source address when the client asked for `rport`
/// (RFC 3581), else the source IP at the port in sent-by.
fn response_dest(via: &Via, from: SocketAddr, transport: Transport) -> SocketAddr {
    if transport.is_reliable() || via.rport.is_some() {
        from
    } else {
        SocketAddr::new(from.ip(), via.port.unwrap_or(5060))
    }
}

/// §18.2.1 / RFC 3581 §4: record where the request really came from in the
/// top Via, so responses built from it carry `received` and `rport`.
fn annotate_via(req: &mut Request, via: &Via, from: SocketAddr) {
    let Some(raw) = req.headers.get_all("Via").next() else {
        return;
    };
    let host_ip = via
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    let wants_rport = via.rport == Some(None);
    let needs_received = via.received.is_none() && (host_ip != Some(from.ip()) || wants_rport);
    if !needs_received && !wants_rport {
        return;
    }
    let mut out = String::with_capacity(raw.len() + 40);
    for (i, part) in raw.split(';').enumerate() {
        if i > 0 {
            out.push(';');
        }
        if i > 0 && wants_rport && part.trim().eq_ignore_ascii_case("rport") {
            out.push_str(&format!("rport={}", from.port()));
        } else {
            out.push_str(part);
        }
    }
    if needs_received {
        out.push_str(&format!(";received={}", from.ip()));
    }
    req.headers.replace_top_via(out);
}

/// A deterministic To tag for responses the layer sends on its own.
fn stateless_tag(req: &Request) -> String {
    let mut h = DefaultHasher::new();
    req.call_id().hash(&mut h);
    req.from_tag().hash(&mut h);
    format!("t{:012x}", h.finish() & 0xffff_ffff_ffff)
}

/// §17.1.1.3: the ACK for a non-2xx final response, built by the transaction.
fn ack_for(invite: &Request, resp: &Response) -> Request {
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    if let Some(via) = invite.headers.get_all("Via").next() {
        ack.headers.push("Via", via);
    }
    for route in invite.headers.get_all("Route") {
        ack.headers.push("Route", route);
    }
    ack.headers.push("Max-Forwards", "70");
    if let Some(from) = invite.headers.get("From") {
        ack.headers.push("From", from);
    }
    if let Some(to) = resp.headers.get("To") {
        ack.headers.push("To", to);
    }
    if let Some(call_id) = invite.call_id() {
        ack.headers.push("Call-ID", call_id);
    }
    let cseq = invite.cseq().map_or(1, |(n, _)| n);
    ack.headers.push("CSeq", format!("{cseq} ACK"));
    ack
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sip::message::parse_datagram;

    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        // The one clock read in these tests; everything after is simulated.
        Instant::now()
    }

    const MS: Duration = Duration::from_millis(1);

    fn peer() -> SocketAddr {
        "192.0.2.20:5062".parse().unwrap()
    }

    fn request(method: &str, branch: &str, extra: &str) -> Message {
        let raw = format!(
            "{method} sip:4711@bridge SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.20:5062;branch={branch};rport\r\n\
From: <sip:alice@example.com>;tag=ft\r\n\
To: <sip:4711@bridge>{extra}\r\n\
Call-ID: call-1\r\n\
CSeq: 1 {method}\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:alice@192.0.2.20:5062>\r\n\
Content-Length: 0\r\n\r\n"
        );
        parse_datagram(raw.as_bytes()).unwrap()
    }

    fn invite(branch: &str) -> Message {
        request("INVITE", branch, "")
    }

    fn as_req(m: &Message) -> &Request {
        match m {
            Message::Request(r) => r,
            Message::Response(_) => panic!("not a request"),
        }
    }

    fn drain_tx(l: &mut TransactionLayer) -> Vec<Transmit> {
        std::iter::from_fn(|| l.poll_transmit()).collect()
    }

    fn drain_ev(l: &mut TransactionLayer) -> Vec<TransactionEvent> {
        std::iter::from_fn(|| l.poll_event()).collect()
    }

    fn status_of(t: &Transmit) -> u16 {
        match parse_datagram(&t.bytes).unwrap() {
            Message::Response(r) => r.status,
            Message::Request(_) => 0,
        }
    }

    fn method_of(t: &Transmit) -> Method {
        match parse_datagram(&t.bytes).unwrap() {
            Message::Request(r) => r.method,
            Message::Response(_) => panic!("not a request"),
        }
    }

    /// Runs the layer until `until`, returning the offsets (from `start`) at
    /// which something was transmitted, and the events seen.
    fn run(
        l: &mut TransactionLayer,
        start: Instant,
        until: Duration,
    ) -> (Vec<Duration>, Vec<TransactionEvent>) {
        let mut sent = Vec::new();
        let mut events = Vec::new();
        while let Some(at) = l.poll_timeout() {
            if at > start + until {
                break;
            }
            l.handle_timeout(at);
            for _ in drain_tx(l) {
                sent.push(at - start);
            }
            events.extend(drain_ev(l));
        }
        (sent, events)
    }

    fn new_server(
        l: &mut TransactionLayer,
        now: Instant,
        msg: Message,
        transport: Transport,
    ) -> (TransactionKey, Request) {
        l.handle_message(now, msg, peer(), transport);
        let ev = drain_ev(l);
        match ev.into_iter().next() {
            Some(TransactionEvent::NewRequest { key, request, .. }) => (key, request),
            other => panic!("expected NewRequest, got {other:?}"),
        }
    }

    fn secs(v: &[f64]) -> Vec<Duration> {
        v.iter().map(|s| Duration::from_secs_f64(*s)).collect()
    }

    #[test]
    fn invite_server_timer_g_until_timer_h() {
        let now = t0();
        let mut l = TransactionLayer::new(Timers::default());
        let (key, req) = new_server(&mut l, now, invite("z9hG4bK1"), Transport::Udp);
        let tx = drain_tx(&mut l);
        assert_eq!(tx.len(), 1);
        assert_eq!(status_of(&tx[0]), 100);
        assert_eq!(tx[0].dest, peer());

        l.respond(
            now,
            &key,
            Response::for_request(&req, 486, "Busy Here").with_to_tag("b"),
        )
        .unwrap();
        assert_eq!(status_of(&drain_tx(&mut l)[0]), 486);

        let (sent, events) = run(&mut l, now, Duration::from_secs(40));
        // Timer G: T1, 2T1, 4T1, then capped at T2; Timer H at 64*T1 = 32 s.
        assert_eq!(
            sent,
            secs(&[0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5])
        );
        assert_eq!(
            events,
            vec![
                TransactionEvent::Timeout { key: key.clone() },
                TransactionEvent::Terminated { key }
            ]
        );
        assert!(l.is_empty());
        assert_eq!(l.poll_timeout(), None);
    }

    #[test]
    fn invite_server_ack_stops_g_and_timer_i() {
        let now = t0();
        let mut l = TransactionLayer::new(Timers::default());
        let (key, req) = new_server(&mut l, now, invite("z9hG4bK2"), Transport::Udp);
        l.respond(
            now,
            &key,
            Response::for_request(&req, 603, "Decline").with_to_tag("b"),
        )
        .unwrap();
        drain_tx(&mut l);
        let (sent, _) = run(&mut l, now, 600 * MS);
        assert_eq!(sent, secs(&[0.5]));
        drain_tx(&mut l);

        let ack_at = now + Duration::from_secs(1);
        l.handle_message(
            ack_at,
            request("ACK", "z9hG4bK2", ";tag=b"),
            peer(),
            Transport::Udp,
        );
        assert!(drain_ev(&mut l).is_empty(), "ACK for non-2xx is absorbed");
        // Retransmitted ACK in Confirmed: absorbed too.
        l.handle_message(
            ack_at,
            request("ACK", "z9hG4bK2", ";tag=b"),
            peer(),
            Transport::Udp,
        );
        assert!(drain_ev(&mut l).is_empty());
        // Timer I = T4.
        assert_eq!(l.poll_timeout(), Some(ack_at + Duration::from_secs(5)));
        let (sent, events) = run(&mut l, now, Duration::from_secs(60));
        assert!(sent.is_empty());
        assert_eq!(events, vec![TransactionEvent::Terminated { key }]);
    }

    #[test]
    fn invite_server_over_tcp_has_no_g_and_zero_i() {
        let now = t0();
        let mut l = TransactionLayer::new(Timers::default());
        let (key, req) = new_server(&mut l, now, invite("z9hG4bK3"), Transport::Tcp);
        drain_tx(&mut l);
        l.respond(
            now,
            &key,
            Response::for_request(&req, 486, "Busy Here").with_to_tag("b"),
        )
        .unwrap();
        drain_tx(&mut l);
        // Only Timer H is armed.
        assert_eq!(l.poll_timeout(), Some(now + Duration::from_secs(32)));
        l.handle_message(
            now + MS,
            request("ACK", "z9hG4bK3", ";tag=b"),
            peer(),
            Transport::Tcp,
        );
        assert_eq!(drain_ev(&mut l), vec![TransactionEvent::Terminated { key }]);
        assert!(l.is_empty());
        assert!(drain_tx(&mut l).is_empty());
    }

    #[test]
    fn retransmitted_invite_resends_last_provisional() {
        let now = t0();
        let mut l = TransactionLayer::new(Timers::default()).with_auto_trying(false);
        let (key, req) = new_server(&mut l, now, invite("z9hG4bK4"), Transport::Udp);
        // No response yet: a retransmission is absorbed silently.
        l.handle_message(now + 500 * MS, invite("z9hG4bK4"), peer(), Transport::Udp);
        assert!(drain_tx(&mut l).is_empty());
        assert!(drain_ev(&mut l).is_empty());

        l.respond(
            now + 600 * MS,
            &key,
            Response::for_request(&req, 180, "Ringing").with_to_tag("b"),
        )
        .unwrap();
        assert_eq!(status_of(&drain_tx(&mut l)[0]), 180);
        l.handle_message(
            now + Duration::from_millis(1500),
            invite("z9hG4bK4"),
            peer(),
            Transport::Udp,
        );
        let tx = drain_tx(&mut l);
        assert_eq!(tx.len(), 1);
        assert_eq!(status_of(&tx[0]), 180);
        assert!(
            drain_ev(&mut l).is_empty(),
            "retransmission never reaches the TU"
        );
        assert_eq!(l.stats().absorbed, 2);
        // Provisional responses are not retransmitted on a timer.
        assert_eq!(l.poll_timeout(), None);
    }

    #[test]
    fn non_invite_server_timer_j_and_retransmission() {
        let now = t0();
        let mut l = TransactionLayer::new(Timers::default());
        let (key, req) = new_server(
            &mut l,
            now,
            request("OPTIONS", "z9hG4bK5", ""),
            Transport::Udp,
        );
        assert!(
            drain_tx(&mut l).is_empty(),
            "no automatic 100 for non-INVITE"
        );
        l.respond(
            now,
            &key,
            Response::for_request(&req, 200, "OK").with_to_tag("b"),
        )
        .unwrap();
        assert_eq!(status_of(&drain_tx(&mut l)[0]), 200);
        l.handle_message(
            now + Duration::from_secs(2),
            request("OPTIONS", "z9hG4bK5", ""),
            peer(),
            Transport::Udp,
        );
        let tx = drain_tx(&mut l);
        assert_eq!(tx.len(), 1);
        assert_eq!(status_of(&tx[0]), 200);
        assert!(drain_ev(&mut l).is_empty());
        // Timer J = 64*T1.
        assert_eq!(l.poll_timeout(), Some(now + Duration::from_secs(32)));
        assert!(
            l.respond(now, &key, Response::for_request(&req, 500, "x"))
                .is_err()
        );
        let (sent, events) = run(&mut l, now, Duration::from_secs(40));
        assert!(sent.is_empty());
        assert_eq!(events, vec![TransactionEvent::Terminated { key }]);

        // TCP: J = 0.
        let (key, req) = new_server(
            &mut l,
            now,
            request("OPTIONS", "z9hG4bK6", ""),
            Transport::Tcp,
        );
        l.respond(now, &key, Response::for_request(&req, 200, "OK"))
            .unwrap();
        assert_eq!(drain_ev(&mut l), vec![TransactionEvent::Terminated { key }]);
        assert!(l.is_empty());
    }

    fn bye() -> Request {
        let mut r = Request::new(Method::Bye, "sip:alice@192.0.2.20:5062");
        r.headers
            .push("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKc1;rport");
        r.headers.push("From", "<sip:4711@bridge>;tag=b");
        r.headers.push("To", "<sip:alice@example.com>;tag=ft");
        r.headers.push("Call-ID", "call-1");
        r.headers.push("CSeq", "2 BYE");
        r.headers.push("Max-Forwards", "70");
        r
    }

    fn response_to(req: &Request, status: u16) -> Message {
        let r = Response::for_request(req, status, "X");
        parse_datagram(&r.to_bytes()).unwrap()
    }

    #[test]
    fn non_invite_client_timer_e_then_f() {
        let now = t0();
        let mut l = TransactionLayer::new(Timers::default());
        let key = l.send_request(now, bye(), peer(), Transport::Udp);
        assert_eq!(method_of(&drain_tx(&mut l)[0]), Method::Bye);
        let (sent, events) = run(&mut l, now, Duration::from_secs(40));
        // Timer E: T1 doubling to T2; Timer F at 64*T1.
        assert_eq!(
            sent,
            secs(&[0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5])
        );
        assert_eq!(
            events,
            vec![
                TransactionEvent::Timeout { key: key.clone() },
                TransactionEvent::Terminated { key }
            ]
        );
    }

    #[test]
    fn non_invite_client_proceeding_uses_t2_then_k() {
        let now = t0();
        let mut l = TransactionLayer::new(Timers::default());
        let req = bye();
        let key = l.send_request(now, req.clone(), peer(), Transport::Udp);
        drain_tx(&mut l);
        let (sent, _) = run(&mut l, now, 600 * MS);
        assert_eq!(sent, secs(&[0.5]));
        // A provisional at 0.6 s: the next E (due 1.5 s) fires, then every T2.
        l.handle_message(
            now + 600 * MS,
            response_to(&req, 100),
            peer(),
            Transport::Udp,
        );
        assert!(
            matches!(&drain_ev(&mut l)[..], [TransactionEvent::Response { response, .. }] if response.status == 100)
        );
        let (sent, _) = run(&mut l, now, Duration::from_secs(10));
        assert_eq!(sent, secs(&[1.5, 5.5, 9.5]));

        let final_at = now + Duration::from_secs(10);
        l.handle_message(final_at, response_to(&req, 200), peer(), Transport::Udp);
        assert!(
            matches!(&drain_ev(&mut l)[..], [TransactionEvent::Response { response, .. }] if response.status == 200)
        );
        // Retransmitted final absorbed in Completed.
        l.handle_message(
            final_at + MS,
            response_to(&req, 200),
            peer(),
            Transport::Udp,
        );
        assert!(drain_ev(&mut l).is_empty());
        // Timer K = T4, and nothing retransmitted any more.
        assert_eq!(l.poll_timeout(), Some(final_at + Duration::from_secs(5)));
        let (sent, events) = run(&mut l, now, Duration::from_secs(60));
        assert!(sent.is_empty());
        assert_eq!(events, vec![TransactionEvent::Terminated { key }]);
    }

    #[test]
    fn non_invite_client_over_tcp() {
        let now = t0();
        let mut l = TransactionLayer::new(Timers::default());
        let req = bye();
        let key = l.send_request(now, req.clone(), peer(), Transport::Tcp);
        drain_tx(&mut l);
        // Only Timer F.
        assert_eq!(l.poll_timeout(), Some(now + Duration::from_secs(32)));
        l.handle_message(now + MS, response_to(&req, 200), peer(), Transport::Tcp);
        let ev = drain_ev(&mut l);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1], TransactionEvent::Terminated { key });
        assert!(l.is_empty());
    }

    fn client_invite() -> Request {
        let mut r = bye();
        r.method = Method::Invite;
        r.headers.set("CSeq", "3 INVITE");
        r.headers
            .set("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKci;rport");
        r.headers.push("Route", "<sip:proxy.example.com;lr>");
        r
    }

    #[test]
    fn invite_client_timer_a_and_b() {
        let now = t0();
        let mut l = TransactionLayer::new(Timers::default());
        let key = l.send_request(now, client_invite(), peer(), Transport::Udp);
        drain_tx(&mut l);
        let (sent, events) = run(&mut l, now, Duration::from_secs(40));
        // Timer A doubles without cap: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5; B at 32 s.
        assert_eq!(sent, secs(&[0.5, 1.5, 3.5, 7.5, 15.5, 31.5]));
        assert_eq!(
            events,
            vec![
                TransactionEvent::Timeout { key: key.clone() },
                TransactionEvent::Terminated { key }
            ]
        );
    }

    #[test]
    fn invite_client_non_2xx_acked_and_timer_d() {
        let now = t0();
        let mut l = TransactionLayer::new(Timers::default());
        let req = client_invite();
        let key = l.send_request(now, req.clone(), peer(), Transport::Udp);
        drain_tx(&mut l);
        l.handle_message(
            now + 100 * MS,
            response_to(&req, 180),
            peer(),
            Transport::Udp,
        );
        assert_eq!(drain_ev(&mut l).len(), 1);
        assert_eq!(l.poll_timeout(), None, "no A/B after a provisional");
        let resp = response_to(&req, 486);
        l.handle_message(
            now + Duration::from_secs(1),
            resp.clone(),
            peer(),
            Transport::Udp,
        );
        let tx = drain_tx(&mut l);
        assert_eq!(tx.len(), 1);
        let Message::Request(ack) = parse_datagram(&tx[0].bytes).unwrap() else {
            panic!()
        };
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.cseq(), Some((3, Method::Ack)));
        assert_eq!(ack.top_via().unwrap().branch.as_deref(), Some("z9hG4bKci"));
        assert_eq!(ack.headers.get("Route"), Some("<sip:proxy.example.com;lr>"));
        assert_eq!(drain_ev(&mut l).len(), 1);
        // Retransmitted 486: ACK again, TU not bothered.
        l.handle_message(now + Duration::from_secs(2), resp, peer(), Transport::Udp);
        assert_eq!(method_of(&drain_tx(&mut l)[0]), Method::Ack);
        assert!(drain_ev(&mut l).is_empty());
        // Timer D: 32 s.
        assert_eq!(l.poll_timeout(), Some(now + Duration::from_secs(33)));
        let (_, events) = run(&mut l, now, Duration::from_secs(60));
        assert_eq!(events, vec![TransactionEvent::Terminated { key }]);
    }

    #[test]
    fn invite_client_2xx_retransmissions_reach_tu() {
        let now = t0();
        let mut l = TransactionLayer::new(Timers::default());
        let req = client_invite();
        let key = l.send_request(now, req.clone(), peer(), Transport::Udp);
        l.handle_message(now + MS, response_to(&req, 200), peer(), Transport::Udp);
        l.handle_message(now + 2 * MS, response_to(&req, 200), peer(), Transport::Udp);
        let ev = drain_ev(&mut l);
        assert_eq!(ev.len(), 2);
        assert!(ev.iter().all(
            |e| matches!(e, TransactionEvent::Response { response, .. } if response.status == 200)
        ));
        // Timer M.
        assert_eq!(l.poll_timeout(), Some(now + MS + Duration::from_secs(32)));
        let (_, events) = run(&mut l, now, Duration::from_secs(60));
        assert_eq!(events, vec![TransactionEvent::Terminated { key }]);
    }

    #[test]
    fn cancel_matches_pending_invite() {
        let now = t0();
        let mut l = TransactionLayer::new(Timers::default());
        let (invite_key, req) = new_server(&mut l, now, invite("z9hG4bK7"), Transport::Udp);
        drain_tx(&mut l);
        l.handle_message(
            now + Duration::from_secs(1),
            request("CANCEL", "z9hG4bK7", ""),
            peer(),
            Transport::Udp,
        );
        let tx = drain_tx(&mut l);
        assert_eq!(tx.len(), 1);
        let Message::Response(ok) = parse_datagram(&tx[0].bytes).unwrap() else {
            panic!()
        };
        assert_eq!((ok.status, ok.cseq()), (200, Some((1, Method::Cancel))));
        let ev = drain_ev(&mut l);
        match &ev[..] {
            [
                TransactionEvent::Cancelled {
                    invite_key: k,
                    cancel_request,
                },
            ] => {
                assert_eq!(k, &invite_key);
                assert_eq!(cancel_request.method, Method::Cancel);
            }
            other => panic!("unexpected {other:?}"),
        }
        // A retransmitted CANCEL gets the same 200 from its own transaction.
        l.handle_message(
            now + Duration::from_secs(2),
            request("CANCEL", "z9hG4bK7", ""),
            peer(),
            Transport::Udp,
        );
        assert_eq!(status_of(&drain_tx(&mut l)[0]), 200);
        assert!(drain_ev(&mut l).is_empty());
        l.respond(
            now,
            &invite_key,
            Response::for_request(&req, 487, "Request Terminated").with_to_tag("b"),
        )
        .unwrap();
        assert_eq!(status_of(&drain_tx(&mut l)[0]), 487);

        // A CANCEL for nothing goes to the TU (to answer 481).
        l.handle_message(
            now,
            request("CANCEL", "z9hG4bKnone", ""),
            peer(),
            Transport::Udp,
        );
        assert!(matches!(
            &drain_ev(&mut l)[..],
            [TransactionEvent::NewRequest { request, .. }] if request.method == Method::Cancel
        ));
    }

    #[test]
    fn cancel_after_final_is_answered_without_event() {
        let now = t0();
        let mut l = TransactionLayer::new(Timers::default());
        let (key, req) = new_server(&mut l, now, invite("z9hG4bK8"), Transport::Udp);
        l.respond(
            now,
            &key,
            Response::for_request(&req, 200, "OK").with_to_tag("b"),
        )
        .unwrap();
        drain_tx(&mut l);
        l.handle_message(
            now,
            request("CANCEL", "z9hG4bK8", ""),
            peer(),
            Transport::Udp,
        );
        assert_eq!(status_of(&drain_tx(&mut l)[0]), 200);
        assert!(drain_ev(&mut l).is_empty());
    }

    #[test]
    fn ok_retransmitted_until_ack() {
        let now = t0();
        let mut l = TransactionLayer::new(Timers::default());
        let (key, req) = new_server(&mut l, now, invite("z9hG4bK9"), Transport::Udp);
        drain_tx(&mut l);
        l.respond(
            now,
            &key,
            Response::for_request(&req, 200, "OK").with_to_tag("b"),
        )
        .unwrap();
        assert_eq!(status_of(&drain_tx(&mut l)[0]), 200);
        let (sent, _) = run(&mut l, now, Duration::from_secs(8));
        assert_eq!(sent, secs(&[0.5, 1.5, 3.5, 7.5]));
        // A retransmitted INVITE in Accepted is absorbed (RFC 6026), 2xx resent.
        l.handle_message(
            now + Duration::from_secs(8),
            invite("z9hG4bK9"),
            peer(),
            Transport::Udp,
        );
        assert_eq!(status_of(&drain_tx(&mut l)[0]), 200);
        assert!(drain_ev(&mut l).is_empty());
        // The ACK for a 2xx is its own transaction (new branch); it reaches the TU.
        l.handle_message(
            now + Duration::from_secs(9),
            request("ACK", "z9hG4bKack", ";tag=b"),
            peer(),
            Transport::Udp,
        );
        assert!(matches!(
            &drain_ev(&mut l)[..],
            [TransactionEvent::NewRequest { request, .. }] if request.method == Method::Ack
        ));
        assert_eq!(l.stats().awaiting_ack, 0);
        let (sent, events) = run(&mut l, now, Duration::from_secs(60));
        assert!(sent.is_empty(), "no 2xx after the ACK");
        assert_eq!(
            events,
            vec![TransactionEvent::Terminated { key }],
            "Timer L"
        );
    }

    #[test]
    fn ok_without_ack_gives_ack_timeout() {
        let now = t0();
        let mut l = TransactionLayer::new(Timers::default());
        let (key, req) = new_server(&mut l, now, invite("z9hG4bKa"), Transport::Udp);
        drain_tx(&mut l);
        l.respond(
            now,
            &key,
            Response::for_request(&req, 200, "OK").with_to_tag("b"),
        )
        .unwrap();
        drain_tx(&mut l);
        let (sent, events) = run(&mut l, now, Duration::from_secs(40));
        assert_eq!(
            sent,
            secs(&[0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5])
        );
        assert!(events.contains(&TransactionEvent::AckTimeout {
            call_id: "call-1".into()
        }));
        assert!(events.contains(&TransactionEvent::Terminated { key }));

        // Over TCP the 2xx is not retransmitted, but the ACK is still awaited.
        let (key, req) = new_server(&mut l, now, invite("z9hG4bKb"), Transport::Tcp);
        drain_tx(&mut l);
        l.respond(
            now,
            &key,
            Response::for_request(&req, 200, "OK").with_to_tag("b"),
        )
        .unwrap();
        drain_tx(&mut l);
        let (sent, events) = run(&mut l, now, Duration::from_secs(40));
        assert!(sent.is_empty());
        assert!(events.contains(&TransactionEvent::AckTimeout {
            call_id: "call-1".into()
        }));
    }

    #[test]
    fn overload_answers_503() {
        let now = t0();
        let mut l = TransactionLayer::new(Timers::default()).with_max_transactions(1);
        new_server(&mut l, now, invite("z9hG4bKc"), Transport::Udp);
        drain_tx(&mut l);
        l.handle_message(now, invite("z9hG4bKd"), peer(), Transport::Udp);
        assert!(drain_ev(&mut l).is_empty());
        let tx = drain_tx(&mut l);
        assert_eq!(status_of(&tx[0]), 503);
        assert_eq!(l.stats().rejected_overload, 1);
        assert_eq!(l.stats().server_transactions, 1);
        // ACKs are never answered, even when full.
        l.handle_message(
            now,
            request("ACK", "z9hG4bKe", ";tag=x"),
            peer(),
            Transport::Udp,
        );
        assert!(drain_tx(&mut l).is_empty());
    }

    #[test]
    fn response_destination_and_via_annotation() {
        let now = t0();
        let mut l = TransactionLayer::new(Timers::default());
        // rport requested: answer the source address, fill in rport/received.
        let (_, req) = new_server(&mut l, now, invite("z9hG4bKf"), Transport::Udp);
        let via = req.top_via().unwrap();
        assert_eq!(via.rport, Some(Some(5062)));
        // RFC 3581 §4: with rport, received is added even when it matches.
        assert_eq!(via.received.as_deref(), Some("192.0.2.20"));
        assert_eq!(drain_tx(&mut l)[0].dest, peer());

        // No rport, NAT in between: source IP, port from sent-by.
        let raw = as_req(&invite("z9hG4bKg"))
            .to_bytes()
            .iter()
            .map(|&b| b as char)
            .collect::<String>()
            .replace(
                "192.0.2.20:5062;branch=z9hG4bKg;rport",
                "10.0.0.5:5070;branch=z9hG4bKg",
            );
        let nat: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        l.handle_message(
            now,
            parse_datagram(raw.as_bytes()).unwrap(),
            nat,
            Transport::Udp,
        );
        let tx = drain_tx(&mut l);
        assert_eq!(tx[0].dest, "198.51.100.7:5070".parse().unwrap());
        let Some(TransactionEvent::NewRequest { request, .. }) = l.poll_event() else {
            panic!()
        };
        assert_eq!(
            request.top_via().unwrap().received.as_deref(),
            Some("198.51.100.7")
        );
    }

    #[test]
    fn rfc2543_requests_match_without_magic_cookie() {
        let now = t0();
        let mut l = TransactionLayer::new(Timers::default());
        let (key, req) = new_server(&mut l, now, invite("oldstyle1"), Transport::Udp);
        drain_tx(&mut l);
        l.handle_message(now, invite("oldstyle1"), peer(), Transport::Udp);
        assert!(drain_ev(&mut l).is_empty());
        assert_eq!(status_of(&drain_tx(&mut l)[0]), 100);
        l.respond(
            now,
            &key,
            Response::for_request(&req, 404, "Not Found").with_to_tag("b"),
        )
        .unwrap();
        l.handle_message(
            now,
            request("ACK", "oldstyle1", ";tag=b"),
            peer(),
            Transport::Udp,
        );
        assert!(drain_ev(&mut l).is_empty(), "ACK matched the INVITE");
    }
}
