//! SIP signalling for the node (RFC 3261 UAS, plus the BYEs we send). One task
//! owns the transaction layer, every dialog and the conference membership; UDP
//! and TCP readers hand it parsed messages, and it hands the conferences
//! commands. Media never waits on it.
//!
//! A call: INVITE (conference = Request-URI user) → SDP answer (or our offer
//! when the INVITE has none) → 200 OK → ACK → the leg is in the conference's
//! mix. BYE, a media timeout, or shutdown ends it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, info_span, warn};

use tandem_mixer::ParticipantId;
use tandem_proto::sdp::{
    AudioCodec, LocalContent, LocalMedia, MediaKind, NegotiatedAudio, OfferAnswerError, SdpSession,
    SessionDescription,
};
use tandem_proto::sip::dialog::{self, Dialog, DialogId, dialog_id};
use tandem_proto::sip::message::{
    Message, Method, Request, Response, Via, parse_name_addr, uri_addr, uri_user,
};
use tandem_proto::sip::session_timer;
use tandem_proto::sip::transaction::{
    Timers, TransactionEvent, TransactionKey, TransactionLayer, Transport,
};

use tandem_control::{RoomDirectory, Vmr};

use crate::bindings::Cascades;
use crate::conference::{
    self, ConferenceCommand, ConferenceContext, ConferenceEvent, Detached, DoorSetup, LegSetup,
    LegSide, VideoSettings,
};
use crate::config::Config;
use crate::driver::net::{MediaPorts, MediaSockets, PortAllocator};
use crate::ivr::{DoorKind, Verdict};
use crate::metrics::Metrics;
use crate::registry::{ConferenceHandle, Registry};

const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE";
const SUPPORTED: &str = "timer";
const USER_AGENT: &str = concat!("Tandem/", env!("CARGO_PKG_VERSION"));

/// What the socket readers hand to signalling.
pub enum SipInbound {
    Message {
        msg: Message,
        from: SocketAddr,
        transport: Transport,
        /// For TCP: where to write toward this peer.
        reply: Option<mpsc::Sender<Vec<u8>>>,
    },
    TcpClosed {
        from: SocketAddr,
    },
    /// A call's H.323 connection task (`h323.rs`).
    H323(crate::h323::H323Inbound),
}

struct Call {
    /// The SIP dialog; `None` for an H.323 call.
    dialog: Option<Dialog>,
    /// An H.323 call's connection task.
    h323: Option<mpsc::UnboundedSender<crate::h323::H323Out>>,
    /// An H.323 call's main video, as Fast Connect settled it.
    h323_video: Option<tandem_proto::sdp::VideoStream>,
    /// Its content channel is with the conference.
    content_attached: bool,
    conference: String,
    participant: ParticipantId,
    name: String,
    sdp: SdpSession,
    local: LocalMedia,
    /// Late offer: our offer sent in the 200 OK, answered in the ACK.
    our_offer: Option<SessionDescription>,
    /// Sockets held until the leg is handed to its conference.
    pending_sockets: Option<MediaSockets>,
    port: u16,
    /// Video sockets, from the video range, while video is negotiated.
    pending_video: Option<MediaSockets>,
    video_port: Option<u16>,
    /// The content channel's sockets until the leg is in its conference,
    /// and its port while the call may have one (BFCP user too).
    pending_content: Option<MediaSockets>,
    content_port: Option<u16>,
    in_conference: bool,
    peer: SocketAddr,
    transport: Transport,
    /// The INVITE came through a proxy that did not Record-Route (the
    /// front door) from a caller on UDP: our in-dialog requests go to the
    /// caller's Contact, not back to the proxy (a TCP caller's go to the
    /// proxy, which holds its connection). A direct caller's are sent
    /// where its requests come from (NAT-friendly, as its responses are).
    proxied_udp: bool,
    started: Instant,
    bye_sent: bool,
    /// Where the leg starts: at the door (the lobby, a room's PIN) or in.
    door: Option<DoorKind>,
    /// A lobby caller on the way to this conference (the lobby is handing
    /// the leg over), with its room's PIN.
    moving_to: Option<(String, Option<String>)>,
}

/// Why a call may not join its conference (see [`Signalling::admission`]).
#[derive(Debug, Clone, Copy)]
enum Refusal {
    NodeFull,
    UnknownConference,
    ConferenceFull,
}

impl Refusal {
    /// The `tandem_calls_total` outcome.
    fn label(self) -> &'static str {
        match self {
            Refusal::NodeFull => "node_full",
            Refusal::UnknownConference => "unknown_conference",
            Refusal::ConferenceFull => "conference_full",
        }
    }
}

/// Where a conference a lobby caller selected lives (see [`Signalling::locate`]).
enum Placement {
    /// On this node; with its room record, if it has one.
    Local(Option<Vmr>),
    /// Unknown here, and not to be created.
    NotFound,
}

struct ConferenceEntry {
    handle: ConferenceHandle,
    task: JoinHandle<()>,
    /// What holds the conference open: calls, and span links of other
    /// nodes (`span_holds` of them).
    legs: usize,
    span_holds: usize,
}

impl ConferenceEntry {
    /// People in the conference across the fleet: this node's calls, and
    /// those the span roster lists on other nodes (a room's size holds for
    /// the whole conference, not per node).
    fn occupancy(&self) -> usize {
        let remote = self
            .handle
            .snapshot
            .borrow()
            .participants
            .iter()
            .filter(|p| p.node.is_some())
            .count();
        self.legs.saturating_sub(self.span_holds) + remote
    }
}

pub struct Signalling {
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    ports: Arc<PortAllocator>,
    video_ports: Arc<PortAllocator>,
    transactions: TransactionLayer,
    calls: HashMap<String, Call>,
    conferences: HashMap<String, ConferenceEntry>,
    events_tx: mpsc::Sender<ConferenceEvent>,
    udp: Arc<UdpSocket>,
    tcp: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    next_participant: u64,
    /// Joins conferences to their native meetings while they have calls.
    cascades: Arc<Cascades>,
    /// Meeting rooms: PIN, default layout, size (read for every INVITE).
    rooms: Arc<dyn RoomDirectory>,
    /// Links satellite conferences to their homes while they have calls.
    spans: Arc<crate::span::Spans>,
    seed: u64,
    contact: String,
    sent_by: String,
    /// Client transactions for BYEs we sent, to know when shutdown may finish.
    byes_in_flight: HashMap<TransactionKey, String>,
    /// The floor control server (`None`: `[content] enabled = false`).
    bfcp: Option<Arc<crate::bfcp::Bfcp>>,
}

impl Signalling {
    // The node's shared parts, wired once in `node.rs`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        registry: Arc<Registry>,
        ports: MediaPorts,
        udp: Arc<UdpSocket>,
        events_tx: mpsc::Sender<ConferenceEvent>,
        cascades: Arc<Cascades>,
        rooms: Arc<dyn RoomDirectory>,
        spans: Arc<crate::span::Spans>,
        bfcp: Option<Arc<crate::bfcp::Bfcp>>,
    ) -> Self {
        let transactions = TransactionLayer::new(Timers::default())
            .with_max_transactions(config.sip.max_transactions);
        let sent_by = format!("{}", SocketAddr::new(config.sip.listen, config.sip.port));
        Self {
            contact: format!("<{}>", config.sip.contact_uri()),
            cascades,
            rooms,
            spans,
            sent_by,
            config,
            metrics,
            registry,
            ports: ports.audio,
            video_ports: ports.video,
            transactions,
            calls: HashMap::new(),
            conferences: HashMap::new(),
            events_tx,
            udp,
            tcp: HashMap::new(),
            next_participant: 1,
            // Tags, branches and SDP session IDs start somewhere new each run.
            seed: rand::random::<u64>() | 1,
            byes_in_flight: HashMap::new(),
            bfcp,
        }
    }

    /// Runs until `shutdown` fires, then ends every call with BYE.
    pub async fn run(
        mut self,
        mut inbound: mpsc::Receiver<SipInbound>,
        mut events: mpsc::Receiver<ConferenceEvent>,
        shutdown: tokio::sync::oneshot::Receiver<()>,
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let timeout = self.transactions.poll_timeout();
            let sleep = async {
                match timeout {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                Some(input) = inbound.recv() => self.handle_inbound(Instant::now(), input),
                Some(ev) = events.recv() => self.handle_conference_event(Instant::now(), ev),
                _ = sleep => self.transactions.handle_timeout(Instant::now()),
            }
            self.drain(Instant::now()).await;
        }
        self.shutdown(&mut inbound).await;
    }

    /// Ctrl-C: BYE every call, wait for the answers (bounded), end conferences.
    async fn shutdown(&mut self, inbound: &mut mpsc::Receiver<SipInbound>) {
        let ids: Vec<String> = self.calls.keys().cloned().collect();
        info!(
            calls = ids.len(),
            "shutting down: ending every call with BYE"
        );
        let now = Instant::now();
        for id in ids {
            self.send_bye(now, &id);
        }
        self.drain(now).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while !self.byes_in_flight.is_empty() {
            let timeout = self.transactions.poll_timeout();
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                Some(input) = inbound.recv() => self.handle_inbound(Instant::now(), input),
                _ = async { match timeout { Some(t) => tokio::time::sleep_until(t.into()).await, None => std::future::pending().await } } => {
                    self.transactions.handle_timeout(Instant::now())
                }
            }
            self.drain(Instant::now()).await;
        }
        let ids: Vec<String> = self.calls.keys().cloned().collect();
        for id in ids {
            self.end_call(&id, "shutdown");
        }
    }

    async fn drain(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(ev) = self.transactions.poll_event() {
                progressed = true;
                self.handle_transaction_event(now, ev);
            }
            while let Some(t) = self.transactions.poll_transmit() {
                progressed = true;
                self.transmit(t.dest, t.transport, t.bytes).await;
            }
            if !progressed {
                break;
            }
        }
    }

    async fn transmit(&mut self, dest: SocketAddr, transport: Transport, bytes: Vec<u8>) {
        if let Some(code) = response_code(&bytes) {
            self.metrics.sip_responses.with_label_values(&[code]).inc();
        }
        match transport {
            Transport::Udp => {
                if let Err(e) = self.udp.send_to(&bytes, dest).await {
                    debug!(%e, %dest, "sip udp send");
                }
            }
            Transport::Tcp => match self.tcp.get(&dest) {
                Some(tx) => {
                    if tx.try_send(bytes).is_err() {
                        debug!(%dest, "sip tcp connection gone or full");
                    }
                }
                None => debug!(%dest, "no tcp connection to reply on"),
            },
        }
    }

    fn handle_inbound(&mut self, now: Instant, input: SipInbound) {
        match input {
            SipInbound::Message {
                msg,
                from,
                transport,
                reply,
            } => {
                if let Some(tx) = reply {
                    self.tcp.insert(from, tx);
                }
                if let Message::Request(r) = &msg {
                    self.metrics
                        .sip_requests
                        .with_label_values(&[method_label(&r.method)])
                        .inc();
                }
                self.transactions.handle_message(now, msg, from, transport);
            }
            SipInbound::TcpClosed { from } => {
                self.tcp.remove(&from);
            }
            SipInbound::H323(input) => self.handle_h323(now, input),
        }
    }

    fn handle_transaction_event(&mut self, now: Instant, ev: TransactionEvent) {
        match ev {
            TransactionEvent::NewRequest {
                key,
                request,
                from,
                transport,
            } => {
                let span = info_span!("sip", method = %request.method.as_str(), call_id = request.call_id().unwrap_or("-"));
                let _g = span.enter();
                self.handle_request(now, key, request, from, transport);
            }
            TransactionEvent::Cancelled {
                invite_key,
                cancel_request: _,
            } => {
                // We answer INVITEs at once, so a CANCEL almost always finds the
                // INVITE already answered (§9.2: then it has no effect). If not,
                // the INVITE gets 487.
                let _ = invite_key;
            }
            TransactionEvent::Response { key, response } => {
                if let Some(call_id) = self.byes_in_flight.remove(&key) {
                    debug!(%call_id, status = response.status, "BYE answered");
                }
            }
            TransactionEvent::Timeout { key } => {
                self.metrics
                    .sip_transaction_timeouts
                    .with_label_values(&["transaction"])
                    .inc();
                self.byes_in_flight.remove(&key);
            }
            TransactionEvent::AckTimeout { call_id } => {
                // §13.3.1.4: no ACK for our 2xx: the session is not up. End it.
                self.metrics
                    .sip_transaction_timeouts
                    .with_label_values(&["ack"])
                    .inc();
                warn!(%call_id, "no ACK for 200 OK; ending call");
                self.send_bye(now, &call_id);
                self.end_call(&call_id, "no_ack");
            }
            _ => {}
        }
    }

    fn respond(&mut self, now: Instant, key: &TransactionKey, resp: Response) {
        if let Err(e) = self
            .transactions
            .respond(now, key, with_server_headers(resp))
        {
            debug!(%e, "response for a transaction that is gone");
        }
    }

    fn reply(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        req: &Request,
        code: u16,
        reason: &str,
    ) {
        let mut resp = Response::for_request(req, code, reason);
        if code >= 200 && req.to_tag().is_none() && code != 100 {
            resp = resp.with_to_tag(&self.new_tag());
        }
        if code == 405 || code == 501 {
            resp.headers.push("Allow", ALLOW);
        }
        self.respond(now, key, resp);
    }

    fn new_tag(&mut self) -> String {
        // Seeded once from the OS, then counted up (see `dialog::new_tag`).
        self.seed = self.seed.wrapping_add(1);
        dialog::new_tag(self.seed)
    }

    fn handle_request(
        &mut self,
        now: Instant,
        key: TransactionKey,
        req: Request,
        from: SocketAddr,
        transport: Transport,
    ) {
        if req.call_id().is_none() || req.cseq().is_none() {
            self.metrics.malformed("sip", "missing_header");
            self.reply(
                now,
                &key,
                &req,
                400,
                "Bad Request (missing Call-ID or CSeq)",
            );
            return;
        }
        match req.method {
            Method::Invite => {
                if req.to_tag().is_some() {
                    self.handle_reinvite(now, key, req);
                } else {
                    self.handle_invite(now, key, req, from, transport);
                }
            }
            Method::Ack => self.handle_ack(now, req),
            Method::Bye => {
                let Some(call_id) = self.in_dialog(&req) else {
                    self.reply(now, &key, &req, 481, "Call/Transaction Does Not Exist");
                    return;
                };
                self.reply(now, &key, &req, 200, "OK");
                self.end_call(&call_id, "bye");
            }
            Method::Options => {
                let mut resp = Response::for_request(&req, 200, "OK");
                if req.to_tag().is_none() {
                    resp = resp.with_to_tag(&self.new_tag());
                }
                resp.headers.push("Allow", ALLOW);
                resp.headers.push("Accept", "application/sdp");
                resp.headers.push("Supported", SUPPORTED);
                self.respond(now, &key, resp);
            }
            Method::Info => {
                if self.in_dialog(&req).is_none() {
                    self.reply(now, &key, &req, 481, "Call/Transaction Does Not Exist");
                    return;
                }
                let command = if let Some(digit) = info_dtmf(&req) {
                    self.metrics.dtmf.inc();
                    debug!(%digit, "DTMF via INFO");
                    Some(InfoCommand::Dtmf(digit))
                } else if is_picture_fast_update(&req) {
                    Some(InfoCommand::PictureFastUpdate)
                } else {
                    None
                };
                if let Some((command, call_id)) = command.zip(req.call_id()) {
                    self.info_to_conference(call_id, command);
                }
                self.reply(now, &key, &req, 200, "OK");
            }
            Method::Update => {
                // Session refresh without SDP (RFC 4028 §7.4); with SDP it is an
                // offer like a re-INVITE.
                if req.body.is_empty() {
                    if self.in_dialog(&req).is_none() {
                        self.reply(now, &key, &req, 481, "Call/Transaction Does Not Exist");
                        return;
                    }
                    let mut resp = Response::for_request(&req, 200, "OK");
                    if let Ok(Some(timer)) = session_timer::negotiate(&req, self.config.sip.min_se)
                    {
                        timer.apply(&mut resp);
                    }
                    self.respond(now, &key, resp);
                } else {
                    self.handle_reinvite(now, key, req);
                }
            }
            Method::Cancel => {
                // A CANCEL that matched no INVITE transaction (§9.2).
                self.reply(now, &key, &req, 481, "Call/Transaction Does Not Exist");
            }
            Method::Register
            | Method::Subscribe
            | Method::Notify
            | Method::Refer
            | Method::Message
            | Method::Publish
            | Method::Prack => {
                self.reply(now, &key, &req, 405, "Method Not Allowed");
            }
            Method::Other(_) => {
                self.metrics.malformed("sip", "unknown_method");
                self.reply(now, &key, &req, 501, "Not Implemented");
            }
        }
    }

    /// Hands what an in-dialog INFO asked for to the caller's conference.
    fn info_to_conference(&mut self, call_id: &str, command: InfoCommand) {
        let Some(call) = self.calls.get(call_id) else {
            return;
        };
        let participant = call.participant;
        let command = match command {
            InfoCommand::Dtmf(digit) => ConferenceCommand::Dtmf { participant, digit },
            InfoCommand::PictureFastUpdate => {
                ConferenceCommand::VideoKeyframeRequest { participant }
            }
        };
        if let Some(c) = self.conferences.get(&call.conference) {
            let _ = c.handle.commands.try_send(command);
        }
    }

    /// What an H.323 call's connection task says.
    fn handle_h323(&mut self, now: Instant, input: crate::h323::H323Inbound) {
        use crate::h323::H323Inbound;
        match input {
            H323Inbound::Setup(setup) => self.handle_h323_setup(now, *setup),
            H323Inbound::Content { call_id, stream } => {
                let Some(call) = self.calls.get_mut(&call_id) else {
                    return;
                };
                let participant = call.participant;
                let command = match call.pending_content.take() {
                    Some(sockets) if call.in_conference => {
                        call.content_attached = true;
                        ConferenceCommand::AddContent {
                            participant,
                            stream,
                            sockets,
                        }
                    }
                    Some(sockets) => {
                        call.pending_content = Some(sockets);
                        return;
                    }
                    None if call.content_attached => ConferenceCommand::UpdateContent {
                        participant,
                        stream: Some(stream),
                    },
                    None => return,
                };
                if let Some(c) = self.conferences.get(&call.conference) {
                    let _ = c.handle.commands.try_send(command);
                }
            }
            H323Inbound::Info { call_id, command } => self.info_to_conference(&call_id, command),
            H323Inbound::Ended { call_id, cause } => {
                if let Some(call) = self.calls.get_mut(&call_id) {
                    call.bye_sent = true;
                }
                self.end_call(&call_id, cause);
            }
        }
    }

    /// An H.323 Setup: admitted like an INVITE (the same limits, rooms,
    /// door), with the media Fast Connect settled.
    fn handle_h323_setup(&mut self, now: Instant, setup: crate::h323::H323Setup) {
        use crate::h323::{Cause, H323Admit};
        let crate::h323::H323Setup {
            call_id,
            conference,
            name,
            peer,
            audio,
            video,
            local_ip,
            out,
            floor,
            reply,
        } = setup;
        macro_rules! refuse {
            ($label:expr, $cause:expr) => {{
                self.metrics.calls.with_label_values(&[$label]).inc();
                let _ = reply.send(Err($cause));
                return;
            }};
        }
        if self.calls.contains_key(&call_id) || !valid_conference_id(&conference) {
            refuse!("unknown_conference", Cause::unknown_conference());
        }
        let (lobby, room) = match self.admission(&conference) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                let cause = match refusal {
                    Refusal::NodeFull => Cause::node_full(),
                    Refusal::UnknownConference => Cause::unknown_conference(),
                    Refusal::ConferenceFull => Cause::conference_full(),
                };
                refuse!(refusal.label(), cause);
            }
        };
        let Some(sockets) = self.ports.allocate(self.config.qos.audio) else {
            warn!("audio port range exhausted");
            refuse!("no_ports", Cause::no_ports());
        };
        let hd_full = video.is_some() && self.hd_calls() >= self.config.node.hd_ports();
        if hd_full {
            self.metrics.hd_full.inc();
        }
        let video_sockets = match &video {
            Some(_) if self.config.video.enabled && !hd_full => {
                self.video_ports.allocate(self.config.qos.video)
            }
            _ => None,
        };
        let participant = ParticipantId(self.next_participant);
        self.next_participant += 1;
        let content_sockets = match &self.bfcp {
            Some(bfcp) if video_sockets.is_some() && !lobby => {
                let c = self.video_ports.allocate(self.config.qos.video);
                if c.is_some() {
                    bfcp.add_user_notified(&conference, participant, Some(floor));
                }
                c
            }
            _ => None,
        };
        let ip = match self.config.media_advertise() {
            ip if ip.is_unspecified() => local_ip,
            ip => ip,
        };
        let addrs = |s: &MediaSockets| {
            let rtcp = s.rtcp.local_addr().map_or(s.port + 1, |a| a.port());
            (SocketAddr::new(ip, s.port), SocketAddr::new(ip, rtcp))
        };
        let admit = H323Admit {
            participant,
            audio: addrs(&sockets),
            video: video_sockets.as_ref().map(addrs),
            content: content_sockets.as_ref().map(addrs),
        };
        if reply.send(Ok(admit)).is_err() {
            // The caller went away while we looked.
            self.ports.release(sockets.port);
            if let Some(v) = video_sockets {
                self.video_ports.release(v.port);
            }
            self.drop_content(&conference, participant, content_sockets);
            return;
        }
        info!(%conference, %name, participant = participant.0, %peer, "H.323 call answered");
        let port = sockets.port;
        self.calls.insert(
            call_id.clone(),
            Call {
                dialog: None,
                h323: Some(out),
                h323_video: video_sockets.as_ref().and(video),
                content_attached: false,
                conference: conference.clone(),
                participant,
                name,
                sdp: SdpSession::new(self.seed >> 16),
                local: self.local_media(port, video_sockets.as_ref().map(|v| v.port)),
                our_offer: None,
                pending_sockets: Some(sockets),
                port,
                video_port: video_sockets.as_ref().map(|v| v.port),
                pending_video: video_sockets,
                content_port: content_sockets.as_ref().map(|c| c.port),
                pending_content: content_sockets,
                in_conference: false,
                peer,
                transport: Transport::Tcp,
                proxied_udp: false,
                started: now,
                bye_sent: false,
                door: door_kind(lobby, room),
                moving_to: None,
            },
        );
        self.count_calls();
        self.metrics.calls.with_label_values(&["answered"]).inc();
        self.join_conference(&call_id, audio);
    }

    /// Whether a call may join `conference` (SIP and H.323 alike): whether
    /// it is the lobby, and its room record.
    fn admission(&self, conference: &str) -> Result<(bool, Option<Vmr>), Refusal> {
        let lobby = self.config.lobby.is_lobby(conference);
        let room = if lobby {
            None
        } else {
            self.rooms.room(conference)
        };
        if self.calls.len() >= self.config.node.max_participants {
            return Err(Refusal::NodeFull);
        }
        let limit = self.max_participants(room.as_ref());
        let existing = self
            .conferences
            .get(conference)
            .map(ConferenceEntry::occupancy);
        match existing {
            None if !self.config.conference.auto_create && !lobby && room.is_none() => {
                Err(Refusal::UnknownConference)
            }
            Some(n) if n >= limit => Err(Refusal::ConferenceFull),
            _ => Ok((lobby, room)),
        }
    }

    /// The call an in-dialog request belongs to, after CSeq checks (§12.2.2).
    fn in_dialog(&mut self, req: &Request) -> Option<String> {
        let call_id = req.call_id()?.to_string();
        let call = self.calls.get_mut(&call_id)?;
        let id: DialogId = dialog_id(req)?;
        let dialog = call.dialog.as_mut()?;
        if id.local_tag != dialog.local_tag {
            return None;
        }
        dialog.handle_in_dialog_request(req).ok()?;
        Some(call_id)
    }

    fn local_media(&self, port: u16, video_port: Option<u16>) -> LocalMedia {
        LocalMedia {
            video_port,
            content: None,
            addr: self.config.media_advertise(),
            audio_port: port,
            codecs: vec![
                AudioCodec::Opus,
                AudioCodec::G722,
                AudioCodec::Pcmu,
                AudioCodec::Pcma,
            ],
            ptime: 20,
        }
    }

    fn handle_invite(
        &mut self,
        now: Instant,
        key: TransactionKey,
        req: Request,
        from: SocketAddr,
        transport: Transport,
    ) {
        let Some(call_id) = req.call_id().map(str::to_string) else {
            return;
        };
        if self.calls.contains_key(&call_id) {
            // Same Call-ID, no To tag, new branch: a forked or broken retry.
            self.reply(now, &key, &req, 482, "Loop Detected");
            return;
        }
        if let Some(unsupported) = unsupported_requires(&req) {
            let mut resp =
                Response::for_request(&req, 420, "Bad Extension").with_to_tag(&self.new_tag());
            resp.headers.push("Unsupported", &unsupported);
            self.respond(now, &key, resp);
            return;
        }
        let conference = match uri_user(&req.uri) {
            Some(u) if valid_conference_id(u) => u.to_string(),
            _ => {
                self.metrics
                    .calls
                    .with_label_values(&["unknown_conference"])
                    .inc();
                self.reply(
                    now,
                    &key,
                    &req,
                    404,
                    "Not Found (no conference in Request-URI)",
                );
                return;
            }
        };
        let (lobby, room) = match self.admission(&conference) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                self.metrics
                    .calls
                    .with_label_values(&[refusal.label()])
                    .inc();
                let mut resp = match refusal {
                    // The node is full ([node] max_participants): the control
                    // plane places nothing more here; a caller that comes
                    // anyway is told to come back.
                    Refusal::NodeFull => {
                        let mut r =
                            Response::for_request(&req, 503, "Service Unavailable (node full)");
                        r.headers.push("Retry-After", "10");
                        r
                    }
                    Refusal::UnknownConference => {
                        Response::for_request(&req, 404, "Not Found (unknown conference)")
                    }
                    Refusal::ConferenceFull => {
                        Response::for_request(&req, 486, "Busy Here (conference full)")
                    }
                };
                resp = resp.with_to_tag(&self.new_tag());
                self.respond(now, &key, resp);
                return;
            }
        };
        let timer = match session_timer::negotiate(&req, self.config.sip.min_se) {
            Ok(t) => t,
            Err(min_se) => {
                let mut resp = Response::for_request(&req, 422, "Session Interval Too Small")
                    .with_to_tag(&self.new_tag());
                resp.headers.push("Min-SE", min_se.to_string());
                self.respond(now, &key, resp);
                return;
            }
        };
        let offer = if req.body.is_empty() {
            None
        } else {
            match parse_sdp(&req) {
                Ok(sdp) => Some(sdp),
                Err(kind) => {
                    self.metrics.malformed("sdp", kind);
                    self.metrics.calls.with_label_values(&["bad_sdp"]).inc();
                    self.reply(now, &key, &req, 400, "Bad Request (SDP)");
                    return;
                }
            }
        };
        let Some(sockets) = self.ports.allocate(self.config.qos.audio) else {
            self.metrics.calls.with_label_values(&["no_ports"]).inc();
            warn!("audio port range exhausted");
            self.reply(now, &key, &req, 503, "Service Unavailable (no media ports)");
            return;
        };
        let port = sockets.port;
        // Video sockets only when video could be negotiated: enabled, and
        // offered (or we make the offer).
        let wants_video = self.config.video.enabled
            && offer.as_ref().is_none_or(|o| {
                o.media
                    .iter()
                    .any(|m| m.kind == MediaKind::Video && m.port != 0)
            });
        // HD ports ([node] max_hd_participants): past them a caller joins
        // audio-only, as on an MCU whose video ports are all in use.
        let hd_in_use = self.hd_calls();
        let hd_full = wants_video && hd_in_use >= self.config.node.hd_ports();
        if hd_full {
            self.metrics.hd_full.inc();
            info!(%conference, hd_in_use, "HD ports all in use; answering audio-only");
        }
        let mut video_sockets = if wants_video && !hd_full {
            let v = self.video_ports.allocate(self.config.qos.video);
            if v.is_none() {
                warn!("video port range exhausted; answering without video");
            }
            v
        } else {
            None
        };
        let participant = ParticipantId(self.next_participant);
        self.next_participant += 1;
        // A content channel with its floor, when video is on and the offer
        // has one (or we make the offer); not in the lobby, whose callers
        // move on to another conference.
        let wants_content = video_sockets.is_some()
            && !lobby
            && offer.as_ref().is_none_or(|o| {
                o.media
                    .iter()
                    .any(|m| m.port != 0 && tandem_proto::sdp::bfcp::is_content(m))
            });
        let mut content_sockets = match &self.bfcp {
            Some(_) if wants_content => self.video_ports.allocate(self.config.qos.video),
            _ => None,
        };
        let mut local = self.local_media(port, video_sockets.as_ref().map(|v| v.port));
        if let (Some(cs), Some(bfcp)) = (&content_sockets, &self.bfcp) {
            let (conference_id, user_id) = bfcp.add_user(&conference, participant);
            local.content = Some(LocalContent {
                port: cs.port,
                bfcp_port: bfcp.port(),
                conference_id,
                user_id,
                floor: crate::bfcp::FLOOR,
            });
        }
        let mut sdp = SdpSession::new(self.seed >> 16);
        let (body, negotiated, our_offer) = match &offer {
            Some(offer) => match sdp.answer(offer, &local) {
                Ok((answer, negotiated)) => (answer.to_string(), negotiated, None),
                Err(e) => {
                    self.ports.release(port);
                    if let Some(v) = video_sockets.take() {
                        self.video_ports.release(v.port);
                    }
                    self.drop_content(&conference, participant, content_sockets.take());
                    let (code, reason) = match e {
                        OfferAnswerError::NoCommonCodec => {
                            (488, "Not Acceptable Here (no common codec)")
                        }
                        _ => (488, "Not Acceptable Here"),
                    };
                    self.metrics
                        .calls
                        .with_label_values(&["no_common_codec"])
                        .inc();
                    self.reply(now, &key, &req, code, reason);
                    return;
                }
            },
            None => {
                let ours = sdp.offer(&local);
                (ours.to_string(), None, Some(ours))
            }
        };
        let local_tag = self.new_tag();
        let dialog = match Dialog::new_uas(&req, local_tag.clone()) {
            Ok(d) => d,
            Err(_) => {
                self.ports.release(port);
                if let Some(v) = video_sockets.take() {
                    self.video_ports.release(v.port);
                }
                self.drop_content(&conference, participant, content_sockets.take());
                self.metrics.malformed("sip", "bad_dialog");
                self.reply(now, &key, &req, 400, "Bad Request (From/To/Contact)");
                return;
            }
        };
        if our_offer.is_none()
            && sdp.video().is_none()
            && let Some(v) = video_sockets.take()
        {
            // Video was offered but nothing in it fits (no H.264, SRTP...).
            self.video_ports.release(v.port);
        }
        if our_offer.is_none() && sdp.content().is_none() {
            // Content offered without a floor we can serve, or not at all.
            self.drop_content(&conference, participant, content_sockets.take());
        }
        if let (Some(b), Some(bfcp)) = (sdp.bfcp(), &self.bfcp)
            && b.connect
            && let Some(to) = b.remote
        {
            bfcp.connect(to);
        }
        let name = caller_name(&req);
        let mut resp = Response::for_request(&req, 200, "OK").with_to_tag(&local_tag);
        resp.headers.push("Contact", &self.contact);
        resp.headers.push("Allow", ALLOW);
        resp.headers.push("Supported", SUPPORTED);
        if let Some(t) = timer {
            t.apply(&mut resp);
        }
        resp.headers.push("Content-Type", "application/sdp");
        resp.body = body.into_bytes();
        info!(%conference, %name, participant = participant.0, %from, "call answered");
        self.calls.insert(
            call_id.clone(),
            Call {
                dialog: Some(dialog),
                h323: None,
                h323_video: None,
                content_attached: false,
                conference: conference.clone(),
                participant,
                name,
                sdp,
                local,
                our_offer,
                pending_sockets: Some(sockets),
                port,
                video_port: video_sockets.as_ref().map(|v| v.port),
                pending_video: video_sockets,
                content_port: content_sockets.as_ref().map(|c| c.port),
                pending_content: content_sockets,
                in_conference: false,
                peer: from,
                transport,
                proxied_udp: req.headers.get_all("Via").count() > 1
                    && req.headers.get("Record-Route").is_none()
                    && req
                        .headers
                        .get_all("Via")
                        .last()
                        .and_then(Via::parse)
                        .is_some_and(|v| v.transport == "UDP"),
                started: now,
                bye_sent: false,
                door: door_kind(lobby, room),
                moving_to: None,
            },
        );
        self.count_calls();
        self.respond(now, &key, resp);
        self.metrics.calls.with_label_values(&["answered"]).inc();
        // With the offer in the INVITE, media may flow before the ACK arrives.
        if let Some(negotiated) = negotiated {
            self.join_conference(&call_id, negotiated);
        }
    }

    fn handle_ack(&mut self, _now: Instant, req: Request) {
        let Some(call_id) = req.call_id().map(str::to_string) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        let Some(our_offer) = call.our_offer.take() else {
            return;
        };
        // Late offer: the ACK carries the answer (RFC 3264 via RFC 3261 §13.2.1).
        let answer = match parse_sdp(&req) {
            Ok(a) => a,
            Err(kind) => {
                self.metrics.malformed("sdp", kind);
                warn!(%call_id, "ACK without a usable SDP answer; ending call");
                self.send_bye(Instant::now(), &call_id);
                self.end_call(&call_id, "bad_sdp");
                return;
            }
        };
        match call.sdp.process_answer(&our_offer, &answer) {
            // A re-INVITE without SDP: the answer updates a leg already mixed.
            Ok(Some(media)) if call.in_conference => {
                let participant = call.participant;
                let video = call.sdp.video().cloned();
                if let Some(c) = self.conferences.get(&call.conference) {
                    let _ = c.handle.commands.try_send(ConferenceCommand::UpdateMedia {
                        participant,
                        media,
                        video,
                    });
                }
            }
            Ok(Some(negotiated)) => self.join_conference(&call_id, negotiated),
            _ => {
                warn!(%call_id, "SDP answer in ACK has no audio we offered; ending call");
                self.send_bye(Instant::now(), &call_id);
                self.end_call(&call_id, "no_common_codec");
            }
        }
    }

    fn handle_reinvite(&mut self, now: Instant, key: TransactionKey, req: Request) {
        let Some(call_id) = self.in_dialog(&req) else {
            self.reply(now, &key, &req, 481, "Call/Transaction Does Not Exist");
            return;
        };
        let timer = session_timer::negotiate(&req, self.config.sip.min_se)
            .ok()
            .flatten();
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        let mut resp = Response::for_request(&req, 200, "OK");
        resp.headers.push("Contact", &self.contact);
        resp.headers.push("Allow", ALLOW);
        resp.headers.push("Supported", SUPPORTED);
        if let Some(t) = timer {
            t.apply(&mut resp);
        }
        if req.body.is_empty() {
            // A session refresh, or a re-INVITE asking for our offer.
            let ours = call.sdp.offer(&call.local);
            resp.headers.push("Content-Type", "application/sdp");
            resp.body = ours.to_string().into_bytes();
            call.our_offer = Some(ours);
            self.respond(now, &key, resp);
            return;
        }
        let offer = match parse_sdp(&req) {
            Ok(o) => o,
            Err(kind) => {
                self.metrics.malformed("sdp", kind);
                self.reply(now, &key, &req, 400, "Bad Request (SDP)");
                return;
            }
        };
        match call.sdp.answer(&offer, &call.local) {
            Ok((answer, negotiated)) => {
                resp.headers.push("Content-Type", "application/sdp");
                resp.body = answer.to_string().into_bytes();
                let participant = call.participant;
                let conference = call.conference.clone();
                let video = call.sdp.video().cloned();
                let content = call
                    .content_port
                    .is_some()
                    .then(|| call.sdp.content().cloned());
                self.respond(now, &key, resp);
                if let Some(stream) = content
                    && let Some(c) = self.conferences.get(&conference)
                {
                    let _ = c
                        .handle
                        .commands
                        .try_send(ConferenceCommand::UpdateContent {
                            participant,
                            stream,
                        });
                }
                if let Some(media) = negotiated {
                    info!(%call_id, codec = conference::codec_name(media.codec), direction = ?media.direction, video = video.is_some(), "re-INVITE");
                    if let Some(c) = self.conferences.get(&conference) {
                        let _ = c.handle.commands.try_send(ConferenceCommand::UpdateMedia {
                            participant,
                            media,
                            video,
                        });
                    }
                }
            }
            Err(_) => {
                // §14.2: a rejected re-INVITE leaves the session as it was.
                self.reply(now, &key, &req, 488, "Not Acceptable Here");
            }
        }
    }

    fn join_conference(&mut self, call_id: &str, media: NegotiatedAudio) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let Some(sockets) = call.pending_sockets.take() else {
            return;
        };
        call.in_conference = true;
        let stream = match &call.h323 {
            Some(_) => call.h323_video.clone(),
            None => call.sdp.video().cloned(),
        };
        let video = match (call.pending_video.take(), stream) {
            (Some(v), Some(stream)) => Some((stream, v)),
            (Some(v), None) => {
                self.video_ports.release(v.port);
                None
            }
            (None, _) => None,
        };
        let door = call.door.take().map(|kind| DoorSetup {
            kind,
            settings: self.config.lobby.door_settings(),
            rtp: None,
        });
        let setup = LegSetup {
            participant: call.participant,
            name: call.name.clone(),
            call_id: call_id.to_string(),
            signalling: if call.h323.is_some() { "h323" } else { "sip" },
            media,
            sockets,
            video,
            side: LegSide::Local,
            shown: true,
            link_rank: 0,
            door,
        };
        let conference = call.conference.clone();
        // An H.323 call's content channel opens later, over H.245.
        let sdp_content = match call.h323 {
            Some(_) => None,
            None => call.pending_content.take(),
        };
        let content = match (sdp_content, call.sdp.content()) {
            (Some(sockets), Some(stream)) => Some((stream.clone(), sockets)),
            (Some(sockets), None) => {
                // Declined in the answer to our offer.
                call.content_port = None;
                let participant = call.participant;
                self.drop_content(&conference, participant, Some(sockets));
                None
            }
            (None, _) => None,
        };
        let participant = setup.participant;
        self.add_to_conference(&conference, setup);
        if let Some((stream, sockets)) = content
            && let Some(entry) = self.conferences.get(&conference)
        {
            let _ = entry
                .handle
                .commands
                .try_send(ConferenceCommand::AddContent {
                    participant,
                    stream,
                    sockets,
                });
        }
    }

    /// A content channel that will not be used: its port freed, its BFCP
    /// user gone.
    fn drop_content(
        &mut self,
        conference: &str,
        participant: ParticipantId,
        sockets: Option<MediaSockets>,
    ) {
        let Some(sockets) = sockets else {
            return;
        };
        self.video_ports.release(sockets.port);
        if let Some(bfcp) = &self.bfcp {
            bfcp.remove_user(conference, participant);
        }
    }

    /// Hands a leg to its conference, starting the conference first if needed.
    fn add_to_conference(&mut self, conference: &str, setup: LegSetup) {
        let entry = self.open_conference(conference);
        entry.legs += 1;
        if entry
            .handle
            .commands
            .try_send(ConferenceCommand::AddLeg(Box::new(setup)))
            .is_err()
        {
            warn!(%conference, "conference command queue full; leg not added");
        }
    }

    /// The conference `conference`, started if it is not running yet.
    fn open_conference(&mut self, conference: &str) -> &mut ConferenceEntry {
        if !self.conferences.contains_key(conference) {
            let entry = self.start_conference(conference);
            if !self.config.lobby.is_lobby(conference) {
                self.spans.conference_started(&entry.handle);
            }
            self.conferences.insert(conference.to_owned(), entry);
        }
        self.conferences
            .get_mut(conference)
            .expect("inserted above")
    }

    /// One holder (a span link) less; the conference ends with its last.
    fn release_conference(&mut self, conference: &str) {
        if let Some(entry) = self.conferences.get_mut(conference) {
            entry.span_holds = entry.span_holds.saturating_sub(1);
        }
        self.leave_conference(conference, None);
    }

    fn start_conference(&mut self, conference: &str) -> ConferenceEntry {
        let lobby = self.config.lobby.is_lobby(conference);
        // The room's layout is the conference's default (the API can change it).
        let room_layout = self
            .rooms
            .room(conference)
            .and_then(|r| r.layout)
            .and_then(|l| l.parse().ok());
        let ctx = ConferenceContext {
            id: conference.to_string(),
            metrics: self.metrics.clone(),
            ports: self.ports.clone(),
            events: self.events_tx.clone(),
            mixed_speakers: self.config.conference.mixed_speakers,
            jitter_min: Duration::from_millis(u64::from(self.config.media.jitter_min_ms)),
            jitter_max: Duration::from_millis(u64::from(self.config.media.jitter_max_ms)),
            rtp_timeout: Duration::from_secs(u64::from(self.config.media.rtp_timeout_s)),
            skip_silent_decode: self.config.media.skip_silent_decode,
            // The lobby shows nobody anything: its callers bring their video
            // to the conference they choose.
            video: (self.config.video.enabled && !lobby).then(|| VideoSettings {
                fps: self.config.video.fps,
                layout: room_layout
                    .unwrap_or_else(|| self.config.video.layout().unwrap_or_default()),
                max_class: self
                    .config
                    .video
                    .max_class()
                    .unwrap_or(tandem_mixer::video::ResolutionClass::Hd720),
                freeze_timeout: Duration::from_millis(u64::from(
                    self.config.video.freeze_timeout_ms,
                )),
                decode_threads: self.config.video.threads(self.config.video.decode_threads),
                encode_threads: self.config.video.threads(self.config.video.encode_threads),
                content_in_layout: self.config.content.show_in_layout,
            }),
            video_ports: self.video_ports.clone(),
        };
        let (commands, snapshot, task) = conference::spawn(ctx);
        let handle = ConferenceHandle {
            id: conference.to_string(),
            commands,
            snapshot,
        };
        self.registry.insert(handle.clone());
        self.metrics.conferences.inc();
        if let Some(bfcp) = self.bfcp.as_ref().filter(|_| !lobby) {
            bfcp.attach(conference, &handle.commands);
        }
        if !lobby {
            // A bound conference joins its native meeting (the cascade).
            self.cascades.conference_started(&handle);
        }
        ConferenceEntry {
            handle,
            task,
            legs: 0,
            span_holds: 0,
        }
    }

    /// Participants `room`'s conference accepts: the node's limit, or the
    /// room's when smaller.
    fn max_participants(&self, room: Option<&Vmr>) -> usize {
        let node = self.config.conference.max_participants;
        room.and_then(|r| r.max_participants)
            .map_or(node, |m| m.min(node))
    }

    /// Where the conference a lobby caller selected lives. Today every
    /// conference is on this node: a known room, or any valid ID when
    /// `auto_create` is on. This is the hook for a fleet: when the control
    /// plane places conferences on other nodes, a `Remote { node }` answer
    /// here would have the lobby transfer (REFER) or bridge the leg there
    /// over the node-to-node link, instead of handing it over locally.
    fn locate(&self, id: &str) -> Placement {
        if !valid_conference_id(id) || self.config.lobby.is_lobby(id) {
            return Placement::NotFound;
        }
        let room = self.rooms.room(id);
        if room.is_some() || self.conferences.contains_key(id) || self.config.conference.auto_create
        {
            Placement::Local(room)
        } else {
            Placement::NotFound
        }
    }

    /// A lobby caller entered `digits`: move it there, or tell the lobby why not.
    fn handle_lobby_entry(&mut self, call_id: &str, participant: ParticipantId, digits: String) {
        let Some(call) = self.calls.get(call_id) else {
            return;
        };
        let lobby = call.conference.clone();
        let verdict = match self.locate(&digits) {
            Placement::NotFound => Some(Verdict::NotFound),
            Placement::Local(room) => {
                let people = self
                    .conferences
                    .get(&digits)
                    .map_or(0, ConferenceEntry::occupancy);
                if people >= self.max_participants(room.as_ref()) {
                    Some(Verdict::Full)
                } else {
                    info!(%call_id, conference = %digits, "lobby: moving the caller");
                    if let Some(call) = self.calls.get_mut(call_id) {
                        call.moving_to = Some((digits, room.and_then(|r| r.pin)));
                    }
                    None
                }
            }
        };
        let command = match verdict {
            Some(verdict) => {
                info!(%call_id, ?verdict, "lobby: conference not joined");
                ConferenceCommand::LobbyVerdict {
                    participant,
                    verdict,
                }
            }
            None => ConferenceCommand::HandOver { participant },
        };
        if let Some(c) = self.conferences.get(&lobby) {
            let _ = c.handle.commands.try_send(command);
        }
    }

    /// The lobby let go of a leg: it joins the conference its caller chose,
    /// at the door if the room has a PIN, else after "you are now joining".
    fn handle_handed_over(&mut self, call_id: &str, leg: Detached) {
        let moving = self
            .calls
            .get_mut(call_id)
            .filter(|c| !c.bye_sent)
            .and_then(|c| c.moving_to.take().map(|m| (c.conference.clone(), m)));
        let Some((from, (target, pin))) = moving else {
            // The call ended meanwhile: free what the leg held.
            self.ports.release(leg.setup.sockets.port);
            if let Some((_, v)) = &leg.setup.video {
                self.video_ports.release(v.port);
            }
            return;
        };
        if let Some(call) = self.calls.get_mut(call_id) {
            call.conference = target.clone();
        }
        self.leave_conference(&from, None);
        let mut setup = leg.setup;
        setup.door = Some(DoorSetup {
            kind: pin.map_or(DoorKind::Joining, DoorKind::Pin),
            settings: self.config.lobby.door_settings(),
            rtp: Some(leg.rtp),
        });
        self.add_to_conference(&target, *setup);
    }

    fn send_bye(&mut self, now: Instant, call_id: &str) {
        self.send_bye_with_reason(now, call_id, None);
    }

    /// BYE with a `Reason` header (RFC 3326) saying why the node hung up.
    fn send_bye_with_reason(&mut self, now: Instant, call_id: &str, reason: Option<&str>) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if call.bye_sent {
            return;
        }
        call.bye_sent = true;
        if let Some(out) = &call.h323 {
            let cause = match reason {
                Some(_) => crate::h323::Cause::node("door"),
                None => crate::h323::Cause::normal(),
            };
            let _ = out.send(crate::h323::H323Out::Release(cause));
            return;
        }
        let headers: Vec<(&str, &str)> = reason.map(|r| ("Reason", r)).into_iter().collect();
        if let Some(key) = self.send_in_dialog_with(now, call_id, Method::Bye, None, &headers) {
            self.byes_in_flight.insert(key, call_id.to_string());
        }
    }

    /// Sends a request in `call_id`'s dialog, with an optional body
    /// (content type, bytes).
    fn send_in_dialog(
        &mut self,
        now: Instant,
        call_id: &str,
        method: Method,
        body: Option<(&str, Vec<u8>)>,
    ) -> Option<TransactionKey> {
        self.send_in_dialog_with(now, call_id, method, body, &[])
    }

    /// As [`Self::send_in_dialog`], with extra headers.
    fn send_in_dialog_with(
        &mut self,
        now: Instant,
        call_id: &str,
        method: Method,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&str, &str)],
    ) -> Option<TransactionKey> {
        self.seed = self.seed.wrapping_add(1);
        let branch = dialog::new_branch(self.seed);
        let call = self.calls.get_mut(call_id)?;
        let dialog = call.dialog.as_mut()?;
        let mut req = dialog.create_request(method, &self.contact, &self.sent_by, &branch);
        req.headers.push("User-Agent", USER_AGENT);
        for (name, value) in headers {
            req.headers.push(*name, *value);
        }
        if let Some((content_type, bytes)) = body {
            req.headers.push("Content-Type", content_type);
            req.body = bytes;
        }
        let (peer, transport) = match uri_addr(&dialog.remote_target) {
            Some((target, false)) if call.proxied_udp => (target, Transport::Udp),
            _ => (call.peer, call.transport),
        };
        Some(self.transactions.send_request(now, req, peer, transport))
    }

    /// The calls gauges the node publishes to the cluster: all, with video.
    fn count_calls(&self) {
        self.metrics.sip_calls.set(self.calls.len() as i64);
        self.metrics.sip_hd_calls.set(self.hd_calls() as i64);
    }

    /// Calls holding an HD (video) port.
    fn hd_calls(&self) -> usize {
        self.calls
            .values()
            .filter(|c| c.video_port.is_some())
            .count()
    }

    /// Forgets a call: its leg leaves the conference, which ends when empty.
    fn end_call(&mut self, call_id: &str, reason: &str) {
        let Some(call) = self.calls.remove(call_id) else {
            return;
        };
        self.count_calls();
        self.metrics
            .call_duration
            .with_label_values(&[if call.h323.is_some() { "h323" } else { "sip" }])
            .observe(call.started.elapsed().as_secs_f64());
        info!(%call_id, conference = %call.conference, name = %call.name, reason, "call ended");
        if call.content_port.is_some()
            && let Some(bfcp) = &self.bfcp
        {
            bfcp.remove_user(&call.conference, call.participant);
        }
        if !call.in_conference {
            self.ports.release(call.port);
            if let Some(v) = call.video_port {
                self.video_ports.release(v);
            }
            if let Some(c) = call.content_port {
                self.video_ports.release(c);
            }
            return;
        }
        if let Some(c) = call.pending_content {
            // An H.323 call whose presentation channel never opened.
            self.video_ports.release(c.port);
        }
        self.leave_conference(&call.conference, Some(call.participant));
    }

    /// A leg leaves `conference` (with `RemoveLeg` when it is still there),
    /// which ends when it was the last.
    fn leave_conference(&mut self, conference: &str, participant: Option<ParticipantId>) {
        let mut empty = false;
        if let Some(entry) = self.conferences.get_mut(conference) {
            if let Some(participant) = participant {
                let _ = entry
                    .handle
                    .commands
                    .try_send(ConferenceCommand::RemoveLeg { participant });
            }
            entry.legs = entry.legs.saturating_sub(1);
            empty = entry.legs == 0;
        }
        if empty && let Some(entry) = self.conferences.remove(conference) {
            self.registry.remove(conference);
            self.metrics.conferences.dec();
            // The agent takes its legs out and drops its command sender, so
            // the conference task still ends.
            if !self.config.lobby.is_lobby(conference) {
                self.cascades.conference_ended(conference);
                self.spans.conference_ended(conference);
                if let Some(bfcp) = &self.bfcp {
                    bfcp.end(conference);
                }
            }
            // Dropping the last command sender ends the task once it has
            // processed the RemoveLeg above.
            drop(entry.handle);
            drop(entry.task);
        }
    }

    fn handle_conference_event(&mut self, now: Instant, ev: ConferenceEvent) {
        match ev {
            ConferenceEvent::MediaTimeout { call_id } => {
                warn!(%call_id, "no RTP for too long; ending call");
                self.send_bye(now, &call_id);
                self.end_call(&call_id, "media_timeout");
            }
            ConferenceEvent::Dtmf { call_id, digit } => {
                debug!(%call_id, %digit, "DTMF");
            }
            ConferenceEvent::LobbyEntry {
                call_id,
                participant,
                digits,
            } => self.handle_lobby_entry(&call_id, participant, digits),
            ConferenceEvent::HandedOver { call_id, leg } => self.handle_handed_over(&call_id, leg),
            ConferenceEvent::DoorHangup { call_id, outcome } => {
                info!(%call_id, outcome = outcome.label(), "the door ends the call");
                self.send_bye_with_reason(now, &call_id, outcome.reason_header());
                self.end_call(&call_id, outcome.label());
            }
            ConferenceEvent::SpanHold { conference, reply } => {
                let known = self.conferences.contains_key(&conference);
                let handle = (known || self.config.conference.auto_create).then(|| {
                    let entry = self.open_conference(&conference);
                    entry.legs += 1;
                    entry.span_holds += 1;
                    entry.handle.clone()
                });
                let _ = reply.send(handle);
            }
            ConferenceEvent::SpanRelease { conference } => self.release_conference(&conference),
            ConferenceEvent::PictureFastUpdate { call_id } => {
                let in_call = self.calls.get(&call_id).filter(|c| !c.bye_sent);
                if let Some(out) = in_call.and_then(|c| c.h323.as_ref()) {
                    let _ = out.send(crate::h323::H323Out::FastUpdate);
                } else if in_call.is_some() {
                    let body = PICTURE_FAST_UPDATE.as_bytes().to_vec();
                    let _ = self.send_in_dialog(
                        now,
                        &call_id,
                        Method::Info,
                        Some(("application/media_control+xml", body)),
                    );
                }
            }
        }
    }
}

/// Where a new call starts: the lobby, a room's PIN door, or (`None`) in.
fn door_kind(lobby: bool, room: Option<Vmr>) -> Option<DoorKind> {
    if lobby {
        Some(DoorKind::Lobby)
    } else {
        room.and_then(|r| r.pin).map(DoorKind::Pin)
    }
}

fn with_server_headers(mut resp: Response) -> Response {
    if resp.headers.get("Server").is_none() {
        resp.headers.push("Server", USER_AGENT);
    }
    resp
}

fn response_code(bytes: &[u8]) -> Option<&str> {
    let rest = bytes.strip_prefix(b"SIP/2.0 ")?;
    std::str::from_utf8(rest.get(..3)?).ok()
}

/// Metric label for a method: unknown methods share one label, so a peer
/// cannot grow the label set.
fn method_label(m: &Method) -> &str {
    match m {
        Method::Other(_) => "other",
        known => known.as_str(),
    }
}

fn parse_sdp(req: &Request) -> Result<SessionDescription, &'static str> {
    if let Some(ct) = req.content_type()
        && !ct.to_ascii_lowercase().starts_with("application/sdp")
    {
        return Err("unsupported_content_type");
    }
    let text = std::str::from_utf8(&req.body).map_err(|_| "not_utf8")?;
    SessionDescription::parse(text).map_err(|_| "bad_sdp")
}

/// Conference IDs are what a keypad or a URI user part can carry.
fn valid_conference_id(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 64
        && u.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'*' | b'#' | b'+')
        })
}

fn caller_name(req: &Request) -> String {
    let from = req.headers.get("From").and_then(parse_name_addr);
    if let Some(na) = &from {
        if let Some(d) = na.display.as_deref().filter(|d| !d.trim().is_empty()) {
            return d.trim().trim_matches('"').to_string();
        }
        if let Some(u) = uri_user(&na.uri) {
            return u.to_string();
        }
    }
    "unknown".into()
}

/// Option tags in Require that we do not support (§8.2.2.3).
fn unsupported_requires(req: &Request) -> Option<String> {
    let bad: Vec<&str> = req
        .headers
        .get_all("Require")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("timer"))
        .collect();
    (!bad.is_empty()).then(|| bad.join(", "))
}

/// What an INFO asks of the conference.
/// What a call asks of its conference outside the media: DTMF (SIP INFO, H.245
/// UserInputIndication) or a keyframe.
pub enum InfoCommand {
    Dtmf(char),
    PictureFastUpdate,
}

/// RFC 5168's request for a full picture.
const PICTURE_FAST_UPDATE: &str = "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\r\n\
<media_control><vc_primitive><to_encoder><picture_fast_update/></to_encoder></vc_primitive></media_control>\r\n";

/// An RFC 5168 `application/media_control+xml` body asking for a keyframe.
fn is_picture_fast_update(req: &Request) -> bool {
    let is_xml = req.content_type().is_some_and(|ct| {
        ct.to_ascii_lowercase()
            .starts_with("application/media_control+xml")
    });
    is_xml && std::str::from_utf8(&req.body).is_ok_and(|b| b.contains("picture_fast_update"))
}

/// DTMF from SIP INFO (`application/dtmf-relay` `Signal=5`, or `application/dtmf`).
fn info_dtmf(req: &Request) -> Option<char> {
    let ct = req.content_type()?.to_ascii_lowercase();
    let body = std::str::from_utf8(&req.body).ok()?;
    if ct.starts_with("application/dtmf-relay") {
        body.lines()
            .find_map(|l| l.trim().strip_prefix("Signal="))
            .and_then(|s| s.trim().chars().next())
    } else if ct.starts_with("application/dtmf") {
        body.trim().chars().next()
    } else {
        None
    }
}
