//! The node's BFCP floor control server (RFC 8855 over TCP and UDP, RFC
//! 8856 in SDP): who presents in each conference.
//!
//! One listener (TCP and UDP on `[content] bfcp_port`) serves every
//! conference on the node. A call that negotiated a content channel is
//! given a BFCP conference ID (its conference's) and user ID in the SDP
//! answer; its messages name both, which is how they find their floor.
//! Each conference has one floor (ID [`FLOOR`]), run by a sans-IO
//! [`FloorServer`]; this module moves its messages and tells the
//! conference who holds the floor ([`ConferenceCommand::Floor`]), which
//! then relays that presenter's content to everyone else.
//!
//! A user is bound to the transport its first message came on (a TCP
//! connection, a UDP address); messages for that user from elsewhere are
//! refused while the binding holds (a closed connection frees it, as a
//! reconnecting room system needs).
//!
//! Not here: TLS/DTLS (`TCP/TLS/BFCP` is declined in SDP), UDP
//! retransmission of our notifications (RFC 8855 §6.2: a client that
//! misses one learns the state at its next request).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use tandem_mixer::ParticipantId;
use tandem_proto::bfcp::{
    BfcpError, Contention, Effects, ErrorCode, FloorEvent, FloorServer, Message, Primitive, Status,
    floor, message_len,
};

use crate::conference::ConferenceCommand;
use crate::driver::net;
use crate::metrics::Metrics;

/// The floor of a conference's content channel.
pub const FLOOR: u16 = 1;
/// Largest BFCP message we take (a client's are tens of bytes).
const MAX_READ: usize = 64 * 1024;
/// Messages waiting to be written to one TCP connection.
const WRITE_QUEUE: usize = 64;

/// Where a user's messages come from and ours go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Tcp(u64),
    Udp(SocketAddr),
}

struct User {
    participant: ParticipantId,
    peer: Option<Peer>,
    /// A presenter without BFCP (an H.239 token holder) hears of its
    /// floor here.
    notify: Option<mpsc::UnboundedSender<FloorNotice>>,
}

/// What a user without BFCP is told of its own floor request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorNotice {
    Granted,
    /// Released by itself, or revoked: another presenter took over.
    Released {
        revoked: bool,
    },
}

/// One conference's floor.
struct Conf {
    name: String,
    server: FloorServer,
    users: HashMap<u16, User>,
    next_user: u16,
    /// The conference task, once it runs (weak: the floor does not keep
    /// the conference alive).
    commands: Option<mpsc::WeakSender<ConferenceCommand>>,
    /// Who the conference was last told presents.
    presenter: Option<ParticipantId>,
}

#[derive(Default)]
struct State {
    confs: HashMap<u32, Conf>,
    ids: HashMap<String, u32>,
    conns: HashMap<u64, mpsc::Sender<Vec<u8>>>,
    next_conn: u64,
    next_id: u32,
}

/// The node's floor control server; shared by `Arc` between signalling
/// (which adds and removes users) and the socket tasks.
pub struct Bfcp {
    port: u16,
    contention: Contention,
    udp: Arc<UdpSocket>,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
}

impl Bfcp {
    /// Binds TCP and UDP on `ip:port` (the same port for both; 0: the OS
    /// picks one) and starts serving.
    pub async fn start(
        ip: IpAddr,
        port: u16,
        dscp: u8,
        contention: Contention,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Arc<Bfcp>> {
        let (tcp, udp) = bind_pair(ip, port, dscp)?;
        let port = tcp.local_addr()?.port();
        let bfcp = Arc::new(Bfcp {
            port,
            contention,
            udp: Arc::new(udp),
            metrics,
            state: Mutex::new(State {
                next_id: 1,
                ..State::default()
            }),
        });
        tokio::spawn(accept_loop(bfcp.clone(), tcp));
        tokio::spawn(udp_loop(bfcp.clone()));
        info!(port, "BFCP floor control server listening (TCP, UDP)");
        Ok(bfcp)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A BFCP identity for `participant` in `conference`: the conference ID
    /// and user ID its SDP answer carries.
    pub fn add_user(&self, conference: &str, participant: ParticipantId) -> (u32, u16) {
        self.add_user_notified(conference, participant, None)
    }

    /// As [`Self::add_user`], for a presenter without BFCP that takes the
    /// floor with [`Self::hold_for`]: `notify` hears when it is granted,
    /// released or revoked.
    pub fn add_user_notified(
        &self,
        conference: &str,
        participant: ParticipantId,
        notify: Option<mpsc::UnboundedSender<FloorNotice>>,
    ) -> (u32, u16) {
        let mut st = self.lock();
        let id = conf_id(&mut st, conference, self.contention);
        let conf = st.confs.get_mut(&id).expect("created by conf_id");
        // User IDs are never 0 and not reused while the floor runs.
        let mut user = conf.next_user.max(1);
        while conf.users.contains_key(&user) {
            user = user.wrapping_add(1).max(1);
        }
        conf.next_user = user.wrapping_add(1).max(1);
        conf.users.insert(
            user,
            User {
                participant,
                peer: None,
                notify,
            },
        );
        (id, user)
    }

    /// The conference task of `conference` now runs: floor changes go to it.
    pub fn attach(&self, conference: &str, commands: &mpsc::Sender<ConferenceCommand>) {
        let mut st = self.lock();
        let id = conf_id(&mut st, conference, self.contention);
        if let Some(conf) = st.confs.get_mut(&id) {
            conf.commands = Some(commands.downgrade());
        }
    }

    /// A call left: what it held is released and the others are told.
    pub fn remove_user(&self, conference: &str, participant: ParticipantId) {
        let mut st = self.lock();
        let Some(&id) = st.ids.get(conference) else {
            return;
        };
        let Some(conf) = st.confs.get_mut(&id) else {
            return;
        };
        let users: Vec<u16> = conf
            .users
            .iter()
            .filter(|(_, u)| u.participant == participant)
            .map(|(id, _)| *id)
            .collect();
        let mut all = Effects::default();
        for user in users {
            // Gone first, so that its release is counted as `gone`.
            conf.users.remove(&user);
            let fx = conf.server.user_gone(user);
            all.sends.extend(fx.sends);
            all.events.extend(fx.events);
        }
        self.apply(&mut st, id, all, None);
        // A floor whose conference never started (the call failed early).
        if st
            .confs
            .get(&id)
            .is_some_and(|c| c.users.is_empty() && c.commands.is_none())
            && let Some(conf) = st.confs.remove(&id)
        {
            st.ids.remove(&conf.name);
        }
    }

    /// The conference ended: its floor goes.
    pub fn end(&self, conference: &str) {
        let mut st = self.lock();
        if let Some(id) = st.ids.remove(conference) {
            st.confs.remove(&id);
        }
        let _ = self
            .metrics
            .content
            .floor_held
            .remove_label_values(&[conference]);
    }

    /// Takes (or, with `take: false`, gives back) the floor for a presenter
    /// without BFCP: a native screen share, an H.239 token holder.
    pub fn hold_for(&self, conference: &str, participant: ParticipantId, take: bool) {
        let mut st = self.lock();
        let Some(&id) = st.ids.get(conference) else {
            return;
        };
        let Some(conf) = st.confs.get_mut(&id) else {
            return;
        };
        let user = conf
            .users
            .iter()
            .find(|(_, u)| u.participant == participant)
            .map(|(id, _)| *id);
        let Some(user) = user else {
            return;
        };
        let fx = if take {
            conf.server.request_for(user, FLOOR)
        } else {
            conf.server.release_for(user, FLOOR)
        };
        if take {
            self.count_request(&fx, user);
        }
        self.apply(&mut st, id, fx, None);
    }

    /// A message from `peer`; answers go back through [`Self::apply`].
    fn handle(&self, msg: Message, peer: Peer) {
        self.metrics
            .content
            .bfcp_messages
            .with_label_values(&[primitive_label(msg.primitive)])
            .inc();
        let mut st = self.lock();
        let id = msg.conference_id;
        let refusal = match st.confs.get_mut(&id) {
            None => Some((ErrorCode::ConferenceDoesNotExist, "")),
            Some(conf) => match conf.users.get_mut(&msg.user_id) {
                None => Some((ErrorCode::UserDoesNotExist, "")),
                Some(user) => match user.peer {
                    Some(bound) if bound != peer => Some((
                        ErrorCode::UnauthorizedOperation,
                        "this user speaks BFCP on another transport",
                    )),
                    Some(_) => None,
                    None => {
                        debug!(conference = %conf.name, user = msg.user_id, ?peer, "BFCP user bound");
                        user.peer = Some(peer);
                        None
                    }
                },
            },
        };
        if let Some((code, info)) = refusal {
            self.refuse(&mut st, &msg, peer, code, info);
            return;
        }
        let Some(conf) = st.confs.get_mut(&id) else {
            return;
        };
        let fx = conf.server.handle(&msg);
        if msg.primitive == Primitive::FloorRequest && !msg.responder {
            self.count_request(&fx, msg.user_id);
        }
        self.apply(&mut st, id, fx, Some(peer));
    }

    fn count_request(&self, fx: &Effects, user: u16) {
        let to_user = |p: Primitive| {
            fx.sends
                .iter()
                .any(|s| s.user_id == user && s.message.primitive == p)
        };
        let granted = fx
            .events
            .iter()
            .any(|e| matches!(e, FloorEvent::Granted { user_id, .. } if *user_id == user));
        let took_over = fx.events.iter().any(|e| {
            matches!(e, FloorEvent::Released { status: Status::Revoked, user_id, .. } if *user_id != user)
        });
        let outcome = match (granted, took_over) {
            (true, true) => "took_over",
            (true, false) => "granted",
            _ if to_user(Primitive::Error) => "error",
            _ => "queued",
        };
        self.metrics
            .content
            .floor_requests
            .with_label_values(&[outcome])
            .inc();
    }

    /// An Error to a message we cannot take, sent where it came from.
    fn refuse(&self, st: &mut State, msg: &Message, peer: Peer, code: ErrorCode, info: &str) {
        if msg.responder {
            return;
        }
        self.metrics
            .content
            .floor_requests
            .with_label_values(&["error"])
            .inc_by(u64::from(msg.primitive == Primitive::FloorRequest));
        let e = floor::error(msg, code, info);
        self.send(st, peer, e.message.to_bytes());
    }

    /// Sends what the floor server produced and tells the conference of a
    /// new presenter. `from`: the transport of the message being answered
    /// (its user's answers go there even before it is bound).
    fn apply(&self, st: &mut State, id: u32, fx: Effects, from: Option<Peer>) {
        let Some(conf) = st.confs.get_mut(&id) else {
            return;
        };
        let mut out = Vec::new();
        for s in fx.sends {
            let peer = conf.users.get(&s.user_id).and_then(|u| u.peer).or(from);
            if let Some(peer) = peer {
                out.push((peer, s.message.to_bytes()));
            }
        }
        for e in &fx.events {
            let event = match e {
                FloorEvent::Granted { .. } => "granted",
                FloorEvent::Released {
                    status: Status::Revoked,
                    ..
                } => "revoked",
                FloorEvent::Released { user_id, .. } if !conf.users.contains_key(user_id) => "gone",
                FloorEvent::Released { .. } => "released",
            };
            self.metrics
                .content
                .floor_events
                .with_label_values(&[event])
                .inc();
            info!(conference = %conf.name, ?e, "floor");
            let (user_id, notice) = match e {
                FloorEvent::Granted { user_id, .. } => (user_id, FloorNotice::Granted),
                FloorEvent::Released {
                    user_id, status, ..
                } => (
                    user_id,
                    FloorNotice::Released {
                        revoked: *status == Status::Revoked,
                    },
                ),
            };
            if let Some(tx) = conf.users.get(user_id).and_then(|u| u.notify.as_ref()) {
                let _ = tx.send(notice);
            }
        }
        let presenter = conf
            .server
            .holder(FLOOR)
            .and_then(|u| conf.users.get(&u))
            .map(|u| u.participant);
        if presenter != conf.presenter {
            conf.presenter = presenter;
            self.metrics
                .content
                .floor_held
                .with_label_values(&[&conf.name])
                .set(i64::from(presenter.is_some()));
            if let Some(tx) = conf.commands.as_ref().and_then(mpsc::WeakSender::upgrade)
                && tx.try_send(ConferenceCommand::Floor { presenter }).is_err()
            {
                warn!(conference = %conf.name, "conference queue full; floor change not delivered");
            }
        }
        for (peer, bytes) in out {
            self.send(st, peer, bytes);
        }
    }

    fn send(&self, st: &mut State, peer: Peer, bytes: Vec<u8>) {
        match peer {
            Peer::Tcp(conn) => {
                if let Some(tx) = st.conns.get(&conn)
                    && tx.try_send(bytes).is_err()
                {
                    warn!(conn, "BFCP connection not keeping up; message dropped");
                }
            }
            Peer::Udp(addr) => {
                let _ = self.udp.try_send_to(&bytes, addr);
            }
        }
    }

    /// Counts a message that did not parse and answers it when its header
    /// is readable (§13.8).
    fn malformed(&self, buf: &[u8], e: BfcpError, peer: Peer) {
        self.metrics.malformed("bfcp", e.kind());
        if let Some(hdr) = Message::header(buf) {
            let mut st = self.lock();
            self.refuse(&mut st, &hdr, peer, e.error_code(), &e.to_string());
        }
    }

    /// Opens the TCP connection to a client that is `passive` (RFC 4145).
    pub fn connect(self: &Arc<Self>, to: SocketAddr) {
        let bfcp = self.clone();
        tokio::spawn(async move {
            match TcpStream::connect(to).await {
                Ok(stream) => serve_tcp(bfcp, stream, to).await,
                Err(e) => warn!(%to, "cannot connect to BFCP client: {e}"),
            }
        });
    }

    fn open_conn(&self, tx: mpsc::Sender<Vec<u8>>) -> u64 {
        let mut st = self.lock();
        st.next_conn += 1;
        let id = st.next_conn;
        st.conns.insert(id, tx);
        self.metrics.content.bfcp_connections.inc();
        id
    }

    /// A connection closed: users bound to it may come back on another.
    fn close_conn(&self, id: u64) {
        let mut st = self.lock();
        st.conns.remove(&id);
        for conf in st.confs.values_mut() {
            for user in conf.users.values_mut() {
                if user.peer == Some(Peer::Tcp(id)) {
                    user.peer = None;
                }
            }
        }
        self.metrics.content.bfcp_connections.dec();
    }
}

/// The BFCP conference ID of `conference`, its floor created on first
/// use: the conference's own number when it is one and free, else the
/// next free number.
fn conf_id(st: &mut State, conference: &str, contention: Contention) -> u32 {
    if let Some(id) = st.ids.get(conference) {
        return *id;
    }
    let mut id = conference
        .parse::<u32>()
        .ok()
        .filter(|n| *n != 0 && !st.confs.contains_key(n))
        .unwrap_or(0);
    while id == 0 || st.confs.contains_key(&id) {
        id = st.next_id;
        st.next_id = st.next_id.wrapping_add(1).max(1);
    }
    st.ids.insert(conference.to_owned(), id);
    st.confs.insert(
        id,
        Conf {
            name: conference.to_owned(),
            server: FloorServer::new(id, &[FLOOR], contention),
            users: HashMap::new(),
            next_user: 1,
            commands: None,
            presenter: None,
        },
    );
    id
}

fn primitive_label(p: Primitive) -> &'static str {
    match p {
        Primitive::FloorRequest => "FloorRequest",
        Primitive::FloorRelease => "FloorRelease",
        Primitive::FloorRequestQuery => "FloorRequestQuery",
        Primitive::FloorRequestStatus => "FloorRequestStatus",
        Primitive::UserQuery => "UserQuery",
        Primitive::UserStatus => "UserStatus",
        Primitive::FloorQuery => "FloorQuery",
        Primitive::FloorStatus => "FloorStatus",
        Primitive::ChairAction => "ChairAction",
        Primitive::ChairActionAck => "ChairActionAck",
        Primitive::Hello => "Hello",
        Primitive::HelloAck => "HelloAck",
        Primitive::Error => "Error",
        Primitive::FloorRequestStatusAck => "FloorRequestStatusAck",
        Primitive::FloorStatusAck => "FloorStatusAck",
        Primitive::Goodbye => "Goodbye",
        Primitive::GoodbyeAck => "GoodbyeAck",
        Primitive::Other(_) => "other",
    }
}

/// A TCP listener and a UDP socket on one port. With port 0 the TCP port
/// the OS picks is tried for UDP too, a few times.
fn bind_pair(ip: IpAddr, port: u16, dscp: u8) -> std::io::Result<(TcpListener, UdpSocket)> {
    let mut last = None;
    for _ in 0..16 {
        let tcp = net::tcp_listener(SocketAddr::new(ip, port), dscp)?;
        let chosen = tcp.local_addr()?.port();
        match net::udp_socket(SocketAddr::new(ip, chosen), dscp) {
            Ok(udp) => return Ok((tcp, udp)),
            Err(e) if port == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no port free on TCP and UDP")))
}

async fn accept_loop(bfcp: Arc<Bfcp>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, from)) => {
                tokio::spawn(serve_tcp(bfcp.clone(), stream, from));
            }
            Err(e) => {
                warn!("BFCP accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// One BFCP connection: messages framed by their header's length; one
/// that does not frame ends the connection (the stream cannot resync).
async fn serve_tcp(bfcp: Arc<Bfcp>, stream: TcpStream, from: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let conn = bfcp.open_conn(tx);
    let peer = Peer::Tcp(conn);
    debug!(%from, conn, "BFCP connection");
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    'read: loop {
        let n = match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let len = match message_len(&buf) {
                Ok(Some(len)) if buf.len() >= len => len,
                Ok(_) if buf.len() <= MAX_READ => break,
                Ok(_) => {
                    bfcp.malformed(&buf, BfcpError::BadLength, peer);
                    break 'read;
                }
                Err(e) => {
                    bfcp.malformed(&buf, e, peer);
                    break 'read;
                }
            };
            let frame: Vec<u8> = buf.drain(..len).collect();
            match Message::parse(&frame) {
                Ok(msg) => bfcp.handle(msg, peer),
                Err(e) => bfcp.malformed(&frame, e, peer),
            }
        }
    }
    bfcp.close_conn(conn);
    // Let the writer flush an Error it was given, then go.
    drop(tokio::time::timeout(std::time::Duration::from_millis(200), writer).await);
    debug!(%from, conn, "BFCP connection closed");
}

async fn udp_loop(bfcp: Arc<Bfcp>) {
    let mut buf = vec![0u8; MAX_READ];
    loop {
        let (n, from) = match bfcp.udp.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP port unreachable from a peer that went away.
                debug!("BFCP UDP: {e}");
                continue;
            }
        };
        let data = &buf[..n];
        match Message::parse(data) {
            Ok(msg) => bfcp.handle(msg, Peer::Udp(from)),
            Err(e) => bfcp.malformed(data, e, Peer::Udp(from)),
        }
    }
}
