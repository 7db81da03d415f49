//! The SIP front door: `INVITE sip:ID@front-door` goes to the node that hosts
//! conference ID, placing it first if it is new. As a stateless proxy (RFC
//! 3261 §16.11: our Via on top with a branch derived from the caller's, the
//! Request-URI rewritten to the node, responses sent back along the Vias;
//! no Record-Route, so the dialog then runs between caller and node), or
//! with a 302 naming the node.
//!
//! A dial plan maps other URIs to conferences; the lobby number goes to the
//! least loaded node of the caller's site, whose lobby asks for the ID.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem_proto::sip::message::{
    MAX_MESSAGE_SIZE, Message, Method, Request, Response, Via, parse_datagram, parse_stream,
    uri_user,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::config::{ControlConfig, FrontDoorConfig, FrontDoorMode};
use crate::metrics::ControlMetrics;
use crate::placement::{Candidate, NoCapacity, Placer, RouteError, choose};
use crate::vmr::{RoomDirectory, valid_conference_id};

const USER_AGENT: &str = concat!("Tandem-FrontDoor/", env!("CARGO_PKG_VERSION"));
/// How long a routed INVITE's retransmissions, CANCEL and ACK follow it.
const ROUTE_MEMORY: Duration = Duration::from_secs(40);
/// How long a call's node is remembered after its last request.
const DIALOG_MEMORY: Duration = Duration::from_secs(4 * 3600);

/// What the front door needs to decide.
pub struct FrontDoorSettings {
    pub listen: SocketAddr,
    pub front_door: FrontDoorConfig,
    pub control: ControlConfig,
    /// Unknown conference IDs (no room record) are created on first call.
    pub auto_create: bool,
}

struct Rule {
    pattern: regex::Regex,
    conference: String,
}

/// Why an INVITE was answered rather than routed.
struct Refusal {
    status: u16,
    reason: &'static str,
    outcome: &'static str,
    retry_after: bool,
}

struct Inner {
    settings: FrontDoorSettings,
    rules: Vec<Rule>,
    placer: Arc<Placer>,
    rooms: Arc<dyn RoomDirectory>,
    metrics: Arc<ControlMetrics>,
    udp: Arc<UdpSocket>,
    addr: SocketAddr,
    /// TCP connections from callers, by their address.
    tcp: Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>,
    /// (Call-ID, caller's branch) → the node an INVITE went to.
    routes: Mutex<HashMap<(String, String), Remembered>>,
    /// Call-ID → its node and its caller: for callers that send in-dialog
    /// requests to us rather than to the node's Contact (sipp's built-in
    /// scenarios do), and for nodes that send theirs to us (a caller on
    /// TCP, whom a node cannot reach by itself).
    dialogs: Mutex<HashMap<String, DialogRoute>>,
}

/// Both ends of a call that came through us.
#[derive(Clone)]
struct DialogRoute {
    node: SocketAddr,
    conference: String,
    /// Where the caller's INVITE came from, and whether over TCP.
    caller: SocketAddr,
    caller_tcp: bool,
    at: Instant,
}

/// Where a request went: the node, the conference, when.
type Remembered = (SocketAddr, String, Instant);

pub struct FrontDoor {
    pub addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for FrontDoor {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl FrontDoor {
    pub async fn start(
        settings: FrontDoorSettings,
        placer: Arc<Placer>,
        rooms: Arc<dyn RoomDirectory>,
        metrics: Arc<ControlMetrics>,
    ) -> anyhow::Result<FrontDoor> {
        let rules = settings
            .front_door
            .rule
            .iter()
            .map(|r| {
                Ok(Rule {
                    pattern: regex::Regex::new(&r.pattern)?,
                    conference: r.conference.clone(),
                })
            })
            .collect::<Result<Vec<_>, regex::Error>>()?;
        let udp = Arc::new(UdpSocket::bind(settings.listen).await.map_err(|e| {
            anyhow::anyhow!(
                "binding front door SIP UDP {} (sip.port): {e}",
                settings.listen
            )
        })?);
        let addr = udp.local_addr()?;
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("binding front door SIP TCP {addr} (sip.port): {e}"))?;
        let inner = Arc::new(Inner {
            settings,
            rules,
            placer,
            rooms,
            metrics,
            udp,
            addr,
            tcp: Mutex::new(HashMap::new()),
            routes: Mutex::new(HashMap::new()),
            dialogs: Mutex::new(HashMap::new()),
        });
        info!(%addr, mode = ?inner.settings.front_door.mode, "front door up");
        let tasks = vec![
            tokio::spawn(udp_loop(inner.clone())),
            tokio::spawn(tcp_loop(inner.clone(), tcp)),
        ];
        Ok(FrontDoor { addr, tasks })
    }
}

async fn udp_loop(inner: Arc<Inner>) {
    let mut buf = vec![0u8; MAX_MESSAGE_SIZE + 1];
    loop {
        let Ok((n, from)) = inner.udp.recv_from(&mut buf).await else {
            continue;
        };
        match parse_datagram(&buf[..n]) {
            Ok(msg) => handle(&inner, msg, from, false),
            Err(e) if e.kind() == tandem_proto::sip::message::ParseErrorKind::Keepalive => {}
            Err(e) => refuse_malformed(&inner, &e, from, false),
        }
    }
}

async fn tcp_loop(inner: Arc<Inner>, listener: TcpListener) {
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(tcp_connection(inner.clone(), stream, from));
    }
}

async fn tcp_connection(inner: Arc<Inner>, stream: TcpStream, from: SocketAddr) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
    inner
        .tcp
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(from, tx);
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    'conn: while let Ok(n) = rd.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match parse_stream(&buf) {
                Ok(Some((msg, used))) => {
                    buf.drain(..used);
                    handle(&inner, msg, from, true);
                }
                Ok(None) => {
                    let ka = tandem_proto::sip::message::stream_keepalive_len(&buf);
                    buf.drain(..ka);
                    if buf.len() > MAX_MESSAGE_SIZE {
                        break 'conn;
                    }
                    break;
                }
                Err(e) => {
                    refuse_malformed(&inner, &e, from, true);
                    break 'conn;
                }
            }
        }
    }
    inner
        .tcp
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&from);
    writer.abort();
}

/// Malformed SIP: counted, and answered 400 when it was a request that can
/// be answered (RFC 3261 §21.4.1).
fn refuse_malformed(
    inner: &Inner,
    e: &tandem_proto::sip::message::ParseError,
    from: SocketAddr,
    tcp: bool,
) {
    inner
        .metrics
        .front_door_calls
        .with_label_values(&["bad_request"])
        .inc();
    if let Some(resp) = e.bad_request() {
        send_to(inner, from, tcp, resp.to_bytes());
    }
}

fn send_to(inner: &Inner, dest: SocketAddr, tcp: bool, bytes: Vec<u8>) {
    if tcp {
        let tx = inner
            .tcp
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&dest)
            .cloned();
        match tx {
            Some(tx) => {
                let _ = tx.try_send(bytes);
            }
            None => debug!(%dest, "no TCP connection to answer on"),
        }
    } else {
        let udp = inner.udp.clone();
        tokio::spawn(async move {
            let _ = udp.send_to(&bytes, dest).await;
        });
    }
}

fn handle(inner: &Arc<Inner>, msg: Message, from: SocketAddr, tcp: bool) {
    match msg {
        Message::Response(resp) => relay_response(inner, resp, from),
        Message::Request(req) => {
            if req.call_id().is_none() || req.cseq().is_none() || req.top_via().is_none() {
                inner
                    .metrics
                    .front_door_calls
                    .with_label_values(&["bad_request"])
                    .inc();
                if req.method != Method::Ack && req.top_via().is_some() {
                    reply(
                        inner,
                        &req,
                        from,
                        tcp,
                        400,
                        "Bad Request (missing Call-ID or CSeq)",
                    );
                }
                return;
            }
            match req.method {
                Method::Invite if req.to_tag().is_none() => {
                    let inner = inner.clone();
                    tokio::spawn(async move { route_invite(&inner, req, from, tcp).await });
                }
                Method::Cancel | Method::Ack => follow_invite(inner, req, from, tcp),
                _ if req.to_tag().is_some() => follow_dialog(inner, req, from, tcp),
                Method::Options if req.to_tag().is_none() => {
                    let mut resp = Response::for_request(&req, 200, "OK").with_to_tag(&tag(&req));
                    resp.headers.push("Allow", "INVITE, ACK, CANCEL, OPTIONS");
                    resp.headers.push("Server", USER_AGENT);
                    send_to(inner, response_dest(&req, from), tcp, resp.to_bytes());
                }
                _ => reply(inner, &req, from, tcp, 405, "Method Not Allowed"),
            }
        }
    }
}

/// A To tag for our own final answers: derived from the request, so that a
/// retransmitted INVITE gets the same one.
fn tag(req: &Request) -> String {
    let mut h = DefaultHasher::new();
    req.call_id().hash(&mut h);
    req.top_via().and_then(|v| v.branch).hash(&mut h);
    format!("fd{:x}", h.finish())
}

fn reply(inner: &Inner, req: &Request, from: SocketAddr, tcp: bool, status: u16, reason: &str) {
    if req.method == Method::Ack {
        return;
    }
    let mut resp = Response::for_request(req, status, reason);
    if status >= 200 {
        resp = resp.with_to_tag(&tag(req));
    }
    resp.headers.push("Server", USER_AGENT);
    send_to(inner, response_dest(req, from), tcp, resp.to_bytes());
}

/// Where a response to `req` goes (§18.2.2, RFC 3581): the source address
/// for TCP and for `rport`; else the Via's sent-by at the source host.
fn response_dest(req: &Request, from: SocketAddr) -> SocketAddr {
    match req.top_via() {
        Some(v) if v.rport.is_none() => SocketAddr::new(from.ip(), v.port.unwrap_or(5060)),
        _ => from,
    }
}

/// The branch we put on a request we forward: the same for an INVITE, its
/// retransmissions, its CANCEL and the ACK of a failure (§16.11).
fn our_branch(req: &Request) -> String {
    let mut h = DefaultHasher::new();
    req.call_id().hash(&mut h);
    req.top_via().and_then(|v| v.branch).hash(&mut h);
    req.cseq().map(|(n, _)| n).hash(&mut h);
    format!("z9hG4bKfd{:016x}", h.finish())
}

fn route_key(req: &Request) -> (String, String) {
    (
        req.call_id().unwrap_or_default().to_owned(),
        req.top_via().and_then(|v| v.branch).unwrap_or_default(),
    )
}

impl Inner {
    /// The conference a Request-URI means, by the dial plan.
    fn conference_for(&self, uri: &str) -> Option<String> {
        let user = uri_user(uri)?;
        let host = uri
            .split_once('@')
            .map(|(_, h)| h.split([';', '>', '?']).next().unwrap_or(h))
            .unwrap_or("");
        let target = format!("{user}@{host}");
        for r in &self.rules {
            if let Some(c) = r.pattern.captures(&target) {
                let mut out = String::new();
                c.expand(&r.conference, &mut out);
                return Some(out);
            }
        }
        Some(user.to_owned())
    }

    fn remember(
        &self,
        req: &Request,
        node: SocketAddr,
        conference: &str,
        caller: SocketAddr,
        caller_tcp: bool,
    ) {
        let now = Instant::now();
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if routes.len() > 10_000 {
            routes.retain(|_, (_, _, at)| now.duration_since(*at) < ROUTE_MEMORY);
        }
        routes.insert(route_key(req), (node, conference.to_owned(), now));
        drop(routes);
        let mut dialogs = self.dialogs.lock().unwrap_or_else(|p| p.into_inner());
        if dialogs.len() > 100_000 {
            dialogs.retain(|_, d| now.duration_since(d.at) < DIALOG_MEMORY);
        }
        dialogs.insert(
            req.call_id().unwrap_or_default().to_owned(),
            DialogRoute {
                node,
                conference: conference.to_owned(),
                caller,
                caller_tcp,
                at: now,
            },
        );
    }

    fn dialog(&self, req: &Request) -> Option<DialogRoute> {
        let mut dialogs = self.dialogs.lock().unwrap_or_else(|p| p.into_inner());
        let call_id = req.call_id()?;
        let entry = dialogs.get_mut(call_id)?;
        entry.at = Instant::now();
        let found = entry.clone();
        if req.method == Method::Bye {
            dialogs.remove(call_id);
        }
        Some(found)
    }

    fn remembered(&self, req: &Request) -> Option<(SocketAddr, String)> {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes
            .get(&route_key(req))
            .filter(|(_, _, at)| at.elapsed() < ROUTE_MEMORY)
            .map(|(a, c, _)| (*a, c.clone()))
    }
}

async fn route_invite(inner: &Arc<Inner>, req: Request, from: SocketAddr, tcp: bool) {
    // A retransmission goes where the first copy went, placing nothing.
    if let Some((node, conference)) = inner.remembered(&req) {
        forward(inner, req, from, tcp, node, &conference);
        return;
    }
    if req.max_forwards() == Some(0) {
        inner
            .metrics
            .front_door_calls
            .with_label_values(&["loop"])
            .inc();
        reply(inner, &req, from, tcp, 483, "Too Many Hops");
        return;
    }
    match decide(inner, &req, from).await {
        Ok((node, conference)) => {
            inner.remember(&req, node, &conference, from, tcp);
            match inner.settings.front_door.mode {
                FrontDoorMode::Proxy => {
                    inner
                        .metrics
                        .front_door_calls
                        .with_label_values(&["proxied"])
                        .inc();
                    forward(inner, req, from, tcp, node, &conference);
                }
                FrontDoorMode::Redirect => {
                    inner
                        .metrics
                        .front_door_calls
                        .with_label_values(&["redirected"])
                        .inc();
                    let mut resp = Response::for_request(&req, 302, "Moved Temporarily")
                        .with_to_tag(&tag(&req));
                    let transport = if tcp { ";transport=tcp" } else { "" };
                    resp.headers
                        .push("Contact", format!("<sip:{conference}@{node}{transport}>"));
                    resp.headers.push("Server", USER_AGENT);
                    send_to(inner, response_dest(&req, from), tcp, resp.to_bytes());
                }
            }
        }
        Err(r) => {
            inner
                .metrics
                .front_door_calls
                .with_label_values(&[r.outcome])
                .inc();
            info!(uri = %req.uri, status = r.status, outcome = r.outcome, "call refused");
            let mut resp = Response::for_request(&req, r.status, r.reason).with_to_tag(&tag(&req));
            if r.retry_after {
                resp.headers.push("Retry-After", "10");
            }
            resp.headers.push("Server", USER_AGENT);
            send_to(inner, response_dest(&req, from), tcp, resp.to_bytes());
        }
    }
}

/// The node (SIP address) and conference for a new INVITE, or why not.
async fn decide(
    inner: &Inner,
    req: &Request,
    from: SocketAddr,
) -> Result<(SocketAddr, String), Refusal> {
    let not_found = Refusal {
        status: 404,
        reason: "Not Found (unknown conference)",
        outcome: "not_found",
        retry_after: false,
    };
    let no_capacity = Refusal {
        status: 503,
        reason: "Service Unavailable (no node has room)",
        outcome: "no_capacity",
        retry_after: true,
    };
    let store_down = Refusal {
        status: 503,
        reason: "Service Unavailable (cluster state unreachable)",
        outcome: "store_unavailable",
        retry_after: true,
    };
    let conference = inner.conference_for(&req.uri).ok_or(Refusal {
        status: 404,
        reason: "Not Found (no conference in Request-URI)",
        outcome: "not_found",
        retry_after: false,
    })?;
    let caller_site = inner.settings.control.site_of(from.ip());
    let lobby = &inner.settings.front_door.lobby;
    if !lobby.is_empty() && conference == *lobby {
        // The lobby is on every node: the caller's site's least loaded.
        let records = inner.placer.nodes();
        let candidates: Vec<Candidate<'_>> = records
            .iter()
            .map(|node| Candidate { node, pending: 0 })
            .collect();
        let (node, _) = choose(&candidates, caller_site, &[], &[]).map_err(|_| no_capacity)?;
        let addr = node.sip.parse().map_err(|_| store_down)?;
        return Ok((addr, conference));
    }
    if !valid_conference_id(&conference) {
        return Err(not_found);
    }
    let room = inner.rooms.room(&conference);
    if room.is_none() && !inner.settings.auto_create {
        return Err(not_found);
    }
    let pool = room.map(|r| r.pool).unwrap_or_default();
    match inner.placer.route(&conference, caller_site, &pool).await {
        Ok(route) => {
            let addr: SocketAddr = route.node.sip.parse().map_err(|_| {
                warn!(node = %route.node.name, sip = %route.node.sip, "node record has a bad SIP address");
                Refusal {
                    status: 500,
                    reason: "Server Internal Error (node address)",
                    outcome: "bad_node",
                    retry_after: false,
                }
            })?;
            debug!(%conference, node = %route.node.name, "routed");
            Ok((addr, conference))
        }
        Err(RouteError::NoCapacity(NoCapacity::NoNodes | NoCapacity::Full)) => Err(no_capacity),
        Err(RouteError::Store(e)) => {
            warn!(%e, "cannot route");
            Err(store_down)
        }
    }
}

/// Forwards a request to a node (§16.11): Max-Forwards down by one, the
/// Request-URI naming the node, our Via on top; the caller's Via gets
/// `received` (and `rport`) so the answer finds its way back.
fn forward(
    inner: &Inner,
    mut req: Request,
    from: SocketAddr,
    tcp: bool,
    node: SocketAddr,
    conference: &str,
) {
    if !count_hop(&mut req) {
        return;
    }
    req.uri = format!("sip:{conference}@{node}");
    if let Some(top) = req.headers.pop_first("Via") {
        let mut v = top.clone();
        let parsed = Via::parse(&top);
        if parsed.as_ref().is_some_and(|p| p.received.is_none()) {
            v.push_str(&format!(";received={}", from.ip()));
        }
        if parsed.as_ref().is_some_and(|p| p.rport == Some(None)) {
            v = v.replacen(";rport", &format!(";rport={}", from.port()), 1);
        } else if tcp && parsed.as_ref().is_some_and(|p| p.rport.is_none()) {
            v.push_str(&format!(";rport={}", from.port()));
        }
        req.headers.push_front("Via", v);
    }
    let branch = our_branch(&req);
    req.headers
        .push_front("Via", format!("SIP/2.0/UDP {};branch={branch}", inner.addr));
    let bytes = req.to_bytes();
    let udp = inner.udp.clone();
    tokio::spawn(async move {
        let _ = udp.send_to(&bytes, node).await;
    });
}

/// Requests inside a dialog normally go from caller to node directly (we do
/// not Record-Route); one that comes to us goes to the node of its call.
fn follow_dialog(inner: &Arc<Inner>, req: Request, from: SocketAddr, tcp: bool) {
    match inner.dialog(&req) {
        Some(d) if from == d.node => to_caller(inner, req, &d),
        Some(d) => forward(inner, req, from, tcp, d.node, &d.conference),
        None if req.method == Method::Ack => {}
        None => reply(
            inner,
            &req,
            from,
            tcp,
            481,
            "Call/Transaction Does Not Exist",
        ),
    }
}

/// Takes one from Max-Forwards; false when it was 0 (the request is not
/// forwarded: a loop, or a peer that asks for no more hops).
fn count_hop(req: &mut Request) -> bool {
    let mf = req.max_forwards().unwrap_or(70);
    if mf == 0 {
        return false;
    }
    req.headers.set("Max-Forwards", (mf - 1).to_string());
    true
}

/// A node's request in a call that came through us (its BYE, re-INVITE,
/// INFO): to the caller, where its INVITE came from and on its transport;
/// the response comes back by our Via.
fn to_caller(inner: &Inner, mut req: Request, d: &DialogRoute) {
    if !count_hop(&mut req) {
        return;
    }
    let branch = our_branch(&req);
    let transport = if d.caller_tcp { "TCP" } else { "UDP" };
    req.headers.push_front(
        "Via",
        format!("SIP/2.0/{transport} {};branch={branch}", inner.addr),
    );
    send_to(inner, d.caller, d.caller_tcp, req.to_bytes());
}

/// CANCEL and the ACK of a failed INVITE go where their INVITE went (an ACK
/// of a 2xx, with a branch of its own, where its call went).
fn follow_invite(inner: &Arc<Inner>, req: Request, from: SocketAddr, tcp: bool) {
    let dialog = inner.dialog(&req);
    if let Some(d) = dialog.as_ref().filter(|d| d.node == from) {
        // The ACK of a node's own re-INVITE.
        to_caller(inner, req, d);
        return;
    }
    let remembered = inner
        .remembered(&req)
        .or_else(|| dialog.map(|d| (d.node, d.conference)));
    match remembered {
        Some((node, conference)) => forward(inner, req, from, tcp, node, &conference),
        None if req.method == Method::Cancel => reply(
            inner,
            &req,
            from,
            tcp,
            481,
            "Call/Transaction Does Not Exist",
        ),
        None => {} // an ACK for a 2xx that came our way by mistake: drop
    }
}

/// A node's response: ours is the top Via; pop it and send the rest back.
fn relay_response(inner: &Inner, mut resp: Response, from: SocketAddr) {
    let ours = resp
        .top_via()
        .is_some_and(|v| v.sent_by() == inner.addr.to_string());
    if !ours {
        inner
            .metrics
            .front_door_calls
            .with_label_values(&["stray_response"])
            .inc();
        debug!(%from, "response not via us; dropped");
        return;
    }
    resp.headers.pop_first("Via");
    let Some(next) = resp.top_via() else {
        return;
    };
    let ip = next
        .received
        .as_deref()
        .and_then(|r| r.parse().ok())
        .or_else(|| next.host.parse().ok());
    let Some(ip) = ip else {
        debug!(via = %next.sent_by(), "cannot resolve the caller's Via");
        return;
    };
    let port = match next.rport {
        Some(Some(p)) => p,
        _ => next.port.unwrap_or(5060),
    };
    let tcp = next.transport == "TCP";
    send_to(inner, SocketAddr::new(ip, port), tcp, resp.to_bytes());
}

#[cfg(test)]
mod tests {
    use tandem_proto::sip::message::Headers;

    #[test]
    fn the_top_via_is_popped_also_from_a_shared_line() {
        let mut h = Headers::new();
        h.push(
            "Via",
            "SIP/2.0 UDP a:1;branch=z9hG4bK1, SIP/2.0 UDP b:2;branch=z9hG4bK2",
        );
        h.push("v", "SIP/2.0 UDP c:3;branch=z9hG4bK3");
        assert_eq!(
            h.pop_first("Via").as_deref(),
            Some("SIP/2.0 UDP a:1;branch=z9hG4bK1")
        );
        assert_eq!(
            h.pop_first("Via").as_deref(),
            Some("SIP/2.0 UDP b:2;branch=z9hG4bK2")
        );
        assert_eq!(
            h.pop_first("Via").as_deref(),
            Some("SIP/2.0 UDP c:3;branch=z9hG4bK3")
        );
        assert_eq!(h.pop_first("Via"), None);
    }
}
