//! H.323-lite: room systems call the node directly, without a gatekeeper.
//!
//! A call is one TCP connection to `[h323] port` (1720) carrying H.225.0
//! call signalling: TPKT-framed Q.931 messages whose User-user element is
//! the PER-encoded H323-UserInformation. The caller's Setup names the
//! conference (its destination alias, or the Q.931 called party number)
//! and proposes its media with Fast Connect (H.323 §8.1.7); the node
//! answers Call Proceeding at once, then Connect with the channels it
//! accepts, so media flows from the first round trip. H.245 is tunnelled
//! in the call signalling messages (§10.3): capability exchange, master/
//! slave determination, the H.239 presentation channel both ways and the
//! H.239 presentation token, which takes the conference's content floor
//! (the same floor BFCP room systems request, see `bfcp.rs`).
//!
//! Left out ("lite"): RAS and gatekeepers, a separate H.245 connection,
//! calls without Fast Connect (media opened by H.245 alone), H.235
//! security, Annex features. A caller that needs one of them is released
//! with a cause saying so; nothing waits on them.
//!
//! One task per connection owns the call's signalling; the call's media
//! and its place in the conference belong to the signalling task, which
//! this one asks through [`H323Inbound`] (admission, the content channel,
//! the end of the call) and hears from through [`H323Out`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use tandem_mixer::ParticipantId;
use tandem_proto::h323::h225::{
    self, AliasAddress, Body, CallProceeding, Connect, EndpointType, Facility, Guid,
    ReleaseComplete, ReleaseCompleteReason, UserInformation,
};
use tandem_proto::h323::h245::{
    self, AudioCapability, Capability, Command, DataType, H239Message, H264Capability, Indication,
    MiscellaneousCommand, MiscellaneousCommandKind, MsdDecision, OlcRejectCause,
    OpenLogicalChannel, OpenLogicalChannelAck, Request, Response, TerminalCapabilitySet, UserInput,
};
use tandem_proto::h323::{q931, tpkt};
use tandem_proto::sdp::video::{H264Params, H264Profile, NegotiatedVideo, ProfileLevelId};
use tandem_proto::sdp::{AudioCodec, Direction, NegotiatedAudio, VideoStream};

use crate::bfcp::{Bfcp, FloorNotice};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::signalling::{InfoCommand, SipInbound};

/// Our forward logical channel numbers: what we send.
const AUDIO_CHANNEL: u16 = 1;
const VIDEO_CHANNEL: u16 = 2;
const CONTENT_CHANNEL: u16 = 3;
/// The session we (the master) give the presentation channel (H.239 §8.1:
/// the master assigns session IDs of additional video channels).
const CONTENT_SESSION: u8 = 32;
/// H.264 payload type of the channels we open.
const CONTENT_PT: u8 = 109;
/// H.323 §6.2.8.4's entity type of an MCU with MC and MP: always master
/// against terminals.
const MCU_TERMINAL_TYPE: u8 = 190;
/// Presentation channel bit rate we offer, units of 100 bit/s (1.5 Mbit/s).
const CONTENT_MAX_BIT_RATE: u32 = 15_000;
/// Main video we receive at most, units of 100 bit/s (2 Mbit/s).
const VIDEO_MAX_BIT_RATE: u32 = 20_000;
/// Longest TPKT we accept (a Setup with many Fast Connect proposals is a
/// few kilobytes).
const MAX_MESSAGE: usize = 65_536;

/// What a call's connection task asks of signalling.
pub enum H323Inbound {
    /// A Setup to admit: answered on `reply`.
    Setup(Box<H323Setup>),
    /// The call's presentation channel is open (or changed): its stream.
    Content {
        call_id: String,
        stream: VideoStream,
    },
    /// DTMF (H.245 UserInputIndication) or a keyframe request.
    Info {
        call_id: String,
        command: InfoCommand,
    },
    /// The caller released the call or its connection is gone.
    Ended {
        call_id: String,
        cause: &'static str,
    },
}

pub struct H323Setup {
    pub call_id: String,
    pub conference: String,
    pub name: String,
    pub peer: SocketAddr,
    pub audio: NegotiatedAudio,
    pub video: Option<VideoStream>,
    /// Where the caller reached us: our media addresses use this IP when
    /// `media.advertise` does not name one.
    pub local_ip: IpAddr,
    pub out: mpsc::UnboundedSender<H323Out>,
    pub floor: mpsc::UnboundedSender<FloorNotice>,
    pub reply: oneshot::Sender<Result<H323Admit, Cause>>,
}

/// An admitted call: where we receive its media.
#[derive(Debug, Clone)]
pub struct H323Admit {
    pub participant: ParticipantId,
    /// RTP and RTCP addresses of each stream we receive.
    pub audio: (SocketAddr, SocketAddr),
    pub video: Option<(SocketAddr, SocketAddr)>,
    /// The presentation channel's, when content is on (the floor user is
    /// added with the call's floor notices).
    pub content: Option<(SocketAddr, SocketAddr)>,
}

/// What signalling tells a call's connection task.
#[derive(Debug)]
pub enum H323Out {
    /// The node ends the call (media timeout, the door, shutdown).
    Release(Cause),
    /// Ask the caller for a keyframe of its main video.
    FastUpdate,
}

/// Why a call ends: the Q.931 cause, its H.225.0 reason, a metric label.
#[derive(Debug, Clone)]
pub struct Cause {
    pub q931: u8,
    pub label: &'static str,
    pub reason: Option<ReleaseCompleteReason>,
}

impl Cause {
    pub fn normal() -> Cause {
        Cause {
            q931: 16,
            label: "normal_call_clearing",
            reason: None,
        }
    }
    pub fn unknown_conference() -> Cause {
        Cause {
            q931: 1,
            label: "unallocated_number",
            reason: Some(ReleaseCompleteReason::UnreachableDestination),
        }
    }
    pub fn conference_full() -> Cause {
        Cause {
            q931: 17,
            label: "user_busy",
            reason: Some(ReleaseCompleteReason::InConf),
        }
    }
    pub fn node_full() -> Cause {
        Cause {
            q931: 34,
            label: "no_circuit_available",
            reason: Some(ReleaseCompleteReason::GatewayResources),
        }
    }
    pub fn no_ports() -> Cause {
        Cause {
            q931: 47,
            label: "resource_unavailable",
            reason: Some(ReleaseCompleteReason::GatewayResources),
        }
    }
    pub fn no_common_codec() -> Cause {
        Cause {
            q931: 88,
            label: "incompatible_destination",
            reason: Some(ReleaseCompleteReason::UndefinedReason),
        }
    }
    /// What "lite" leaves out: a call without Fast Connect, a separate
    /// H.245 connection without tunnelling.
    fn not_implemented() -> Cause {
        Cause {
            q931: 79,
            label: "service_not_implemented",
            reason: Some(ReleaseCompleteReason::NeededFeatureNotSupported),
        }
    }
    fn invalid_message() -> Cause {
        Cause {
            q931: 95,
            label: "invalid_message",
            reason: Some(ReleaseCompleteReason::UndefinedReason),
        }
    }
    fn bad_version() -> Cause {
        Cause {
            q931: 88,
            label: "invalid_revision",
            reason: Some(ReleaseCompleteReason::InvalidRevision),
        }
    }
    /// The node's own hang-up for a reason of signalling's (media timeout,
    /// the door, shutdown): normal clearing, labelled with the reason.
    pub fn node(label: &'static str) -> Cause {
        Cause {
            label,
            ..Cause::normal()
        }
    }
    /// The cause a caller's Release Complete carried.
    fn from_caller(q931: Option<u8>) -> Cause {
        let label = match q931 {
            None | Some(16) => "normal_call_clearing",
            Some(17) => "user_busy",
            Some(18) => "no_user_responding",
            Some(19) => "no_answer",
            Some(21) => "call_rejected",
            Some(31) => "normal_unspecified",
            Some(41) => "temporary_failure",
            Some(47) => "resource_unavailable",
            Some(88) => "incompatible_destination",
            Some(102) => "recovery_on_timer_expiry",
            Some(_) => "other",
        };
        Cause {
            q931: q931.unwrap_or(16),
            label,
            reason: None,
        }
    }
}

/// What every connection task shares.
pub struct H323Context {
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub bfcp: Option<Arc<Bfcp>>,
    pub signalling: mpsc::Sender<SipInbound>,
}

/// Accepts call signalling connections until the task is aborted.
pub async fn serve(listener: TcpListener, ctx: Arc<H323Context>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(Connection::run(ctx.clone(), stream, peer));
            }
            Err(e) => {
                warn!(%e, "H.323 accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The presentation token, as this call sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    None,
    /// Asked for on the caller's behalf: (terminal label, channel).
    Requested(u16, u16),
    Held(u16, u16),
}

/// Our presentation channel to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OurContent {
    Closed,
    Opening,
    Open,
    Refused,
}

/// The admitted call.
struct Admitted {
    call_id: String,
    conference: String,
    participant: ParticipantId,
    content: Option<(SocketAddr, SocketAddr)>,
}

struct Connection {
    ctx: Arc<H323Context>,
    write: OwnedWriteHalf,
    peer: SocketAddr,
    local_ip: IpAddr,
    call_reference: u16,
    call_identifier: Guid,
    conference_id: Guid,
    call: Option<Admitted>,
    /// Tunnelled H.245 waiting to go out in one Facility.
    h245_out: Vec<h245::Message>,
    tcs_sequence: u8,
    /// The caller's presentation capability (it can receive content).
    their_presentation: Option<H264Capability>,
    their_tcs: bool,
    our_tcs_acked: bool,
    our_content: OurContent,
    /// The stream of the presentation channel, as far as it is known: the
    /// caller's address from its Ack of ours, the caller's payload type
    /// from its own channel.
    content_stream: Option<VideoStream>,
    /// The caller's presentation channel (its forward number).
    their_content: Option<u16>,
    /// The caller's main video channel (its forward number), for keyframe
    /// requests.
    their_video: Option<u16>,
    token: Token,
    /// Who released, and why; counted when the task ends.
    ended: Option<(Cause, &'static str)>,
}

impl Connection {
    async fn run(ctx: Arc<H323Context>, stream: TcpStream, peer: SocketAddr) {
        let local_ip = stream
            .local_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let (mut read, write) = stream.into_split();
        ctx.metrics.h323.connections.inc();
        let setup_timeout = Duration::from_secs(u64::from(ctx.config.h323.setup_timeout_s.max(1)));
        let (out_tx, mut out_rx) = mpsc::unbounded_channel();
        let (floor_tx, mut floor_rx) = mpsc::unbounded_channel();
        let mut conn = Connection {
            ctx: ctx.clone(),
            write,
            peer,
            local_ip,
            call_reference: 0,
            call_identifier: Guid::default(),
            conference_id: Guid::default(),
            call: None,
            h245_out: Vec::new(),
            tcs_sequence: 1,
            their_presentation: None,
            their_tcs: false,
            our_tcs_acked: false,
            our_content: OurContent::Closed,
            content_stream: None,
            their_content: None,
            their_video: None,
            token: Token::None,
            ended: None,
        };
        let mut decoder = tpkt::Decoder::new();
        let mut buf = vec![0u8; 8192];
        let setup_deadline = tokio::time::Instant::now() + setup_timeout;
        let mut links = Some((out_tx, floor_tx));
        while conn.ended.is_none() {
            tokio::select! {
                r = read.read(&mut buf) => match r {
                    Ok(0) | Err(_) => {
                        conn.ended = Some((Cause::from_caller(Some(41)), "caller"));
                        conn.ended.as_mut().expect("set").0.label = "connection_lost";
                    }
                    Ok(n) => {
                        decoder.push(&buf[..n]);
                        while conn.ended.is_none() {
                            match decoder.poll() {
                                None => break,
                                Some(Ok(frame)) => conn.handle_frame(&frame, &mut links).await,
                                Some(Err(e)) => {
                                    // TPKT framing is lost: nothing after it can be read.
                                    ctx.metrics.malformed("tpkt", e.kind());
                                    conn.release(Cause::invalid_message(), "node").await;
                                }
                            }
                        }
                        if decoder.buffered() > MAX_MESSAGE {
                            ctx.metrics.malformed("tpkt", "too_long");
                            conn.release(Cause::invalid_message(), "node").await;
                        }
                    }
                },
                Some(out) = out_rx.recv() => match out {
                    H323Out::Release(cause) => conn.release(cause, "node").await,
                    H323Out::FastUpdate => {
                        if let Some(n) = conn.their_video {
                            conn.h245_out.push(MiscellaneousCommand::video_fast_update(n).to_message());
                        }
                    }
                },
                Some(notice) = floor_rx.recv() => conn.handle_floor(notice),
                () = tokio::time::sleep_until(setup_deadline), if conn.call.is_none() && conn.call_reference == 0 => {
                    debug!(%peer, "no Setup in time; closing");
                    conn.ended = Some((Cause { label: "setup_timeout", ..Cause::from_caller(Some(102)) }, "node"));
                }
            }
            conn.flush_h245().await;
        }
        let (cause, by) = conn.ended.take().expect("loop ends when set");
        ctx.metrics
            .h323
            .calls
            .with_label_values(&[cause.label, by])
            .inc();
        if let Some(call) = conn.call.take() {
            if by == "caller" {
                let _ = ctx
                    .signalling
                    .send(SipInbound::H323(H323Inbound::Ended {
                        call_id: call.call_id.clone(),
                        cause: cause.label,
                    }))
                    .await;
            }
            info!(call_id = %call.call_id, conference = %call.conference, cause = cause.label, by, "H.323 call ended");
        }
        let _ = conn.write.shutdown().await;
        ctx.metrics.h323.connections.dec();
    }

    /// One TPKT payload: a Q.931 message.
    async fn handle_frame(
        &mut self,
        frame: &[u8],
        links: &mut Option<(
            mpsc::UnboundedSender<H323Out>,
            mpsc::UnboundedSender<FloorNotice>,
        )>,
    ) {
        let msg = match q931::Message::parse(frame) {
            Ok(m) => m,
            Err(e) => {
                self.ctx.metrics.malformed("q931", e.kind());
                if self.call_reference == 0 {
                    self.release(Cause::invalid_message(), "node").await;
                }
                return;
            }
        };
        self.ctx
            .metrics
            .h323
            .messages
            .with_label_values(&[q931_type_label(msg.message_type)])
            .inc();
        let uu = match UserInformation::from_q931(&msg) {
            Some(Ok(uu)) => Some(uu),
            Some(Err(e)) => {
                self.ctx.metrics.malformed("h225", e.kind());
                None
            }
            None => None,
        };
        // Tunnelled H.245 (h245Control, and a Setup's parallel H.245).
        let tunnelled: Vec<_> = uu
            .as_ref()
            .map(|u| u.h245_messages().collect())
            .unwrap_or_default();
        match msg.message_type {
            q931::MessageType::Setup => {
                if self.call_reference != 0 {
                    // One call per connection: a second Setup is refused alone.
                    self.ctx.metrics.malformed("h225", "second_setup");
                    let rc = q931::Message::new(
                        q931::MessageType::ReleaseComplete,
                        msg.call_reference,
                        true,
                    )
                    .with_cause(47);
                    self.send_q931(&rc).await;
                    return;
                }
                self.call_reference = msg.call_reference;
                match uu {
                    Some(UserInformation {
                        body: Body::Setup(setup),
                        h245_tunnelling,
                        ..
                    }) => {
                        self.handle_setup(&msg, setup, h245_tunnelling, tunnelled, links)
                            .await;
                        return;
                    }
                    _ => {
                        self.ctx.metrics.malformed("h225", "setup_without_uuie");
                        self.release(Cause::invalid_message(), "node").await;
                    }
                }
            }
            q931::MessageType::ReleaseComplete => {
                let cause = Cause::from_caller(msg.cause());
                info!(peer = %self.peer, cause = cause.label, "caller released");
                self.ended = Some((cause, "caller"));
            }
            q931::MessageType::StatusEnquiry => {
                // Q.931 §5.8.10: answer with Status, call state 10 (active)
                // or 0 (null), cause 30 (response to STATUS ENQUIRY).
                let state = if self.call.is_some() { 10 } else { 0 };
                let status =
                    q931::Message::new(q931::MessageType::Status, msg.call_reference, true)
                        .with_cause(30)
                        .with(0x14, vec![state]);
                self.send_q931(&status).await;
            }
            _ => {}
        }
        // Tunnelled H.245 rides in any message once the call is up.
        if self.call.is_some() {
            for (i, m) in tunnelled.into_iter().enumerate() {
                match m {
                    Ok(m) => self.handle_h245(m),
                    Err(e) => {
                        self.ctx.metrics.malformed("h245", e.kind());
                        debug!(i, %e, "tunnelled H.245 does not decode");
                    }
                }
            }
        }
    }

    async fn handle_setup(
        &mut self,
        msg: &q931::Message,
        setup: h225::Setup,
        h245_tunnelling: bool,
        tunnelled: Vec<Result<h245::Message, tandem_proto::h323::per::PerError>>,
        links: &mut Option<(
            mpsc::UnboundedSender<H323Out>,
            mpsc::UnboundedSender<FloorNotice>,
        )>,
    ) {
        self.call_identifier = setup.call_identifier;
        self.conference_id = setup.conference_id;
        if h225::protocol_version(&setup.protocol_identifier).is_none_or(|v| v < 2) {
            self.release(Cause::bad_version(), "node").await;
            return;
        }
        // Call Proceeding at once: the caller's timers stop while we look.
        let proceeding = UserInformation::new(Body::CallProceeding(CallProceeding::new(
            self.call_identifier,
            EndpointType::mcu(),
        )))
        .tunnelling(true);
        self.send_uu(&proceeding).await;

        let Some(conference) = destination(&setup, msg) else {
            info!(peer = %self.peer, "Setup names no conference");
            self.ctx
                .metrics
                .calls
                .with_label_values(&["unknown_conference"])
                .inc();
            self.release(Cause::unknown_conference(), "node").await;
            return;
        };
        if !h245_tunnelling && setup.h245_address.is_some() && setup.fast_start.is_empty() {
            // A separate H.245 connection and no Fast Connect: not "lite".
            self.release(Cause::not_implemented(), "node").await;
            return;
        }
        let mut proposals = Vec::new();
        for p in setup.fast_start_channels() {
            match p {
                Ok(olc) => proposals.push(olc),
                Err(e) => self.ctx.metrics.malformed("h245", e.kind()),
            }
        }
        if proposals.is_empty() {
            info!(peer = %self.peer, %conference, "Setup without Fast Connect; releasing");
            self.release(Cause::not_implemented(), "node").await;
            return;
        }
        let Some(plan) = FastPlan::choose(&proposals) else {
            self.ctx
                .metrics
                .calls
                .with_label_values(&["no_common_codec"])
                .inc();
            self.release(Cause::no_common_codec(), "node").await;
            return;
        };
        let name = caller_name(&setup, msg);
        let call_id = format!("h323-{}", hex(&self.call_identifier.0));
        let Some((out, floor)) = links.take() else {
            return;
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        let request = H323Setup {
            call_id: call_id.clone(),
            conference: conference.clone(),
            name: name.clone(),
            peer: self.peer,
            audio: plan.audio.clone(),
            video: plan.video.clone(),
            local_ip: self.local_ip,
            out,
            floor,
            reply: reply_tx,
        };
        if self
            .ctx
            .signalling
            .send(SipInbound::H323(H323Inbound::Setup(Box::new(request))))
            .await
            .is_err()
        {
            self.release(Cause::node("shutdown"), "node").await;
            return;
        }
        let admit = match tokio::time::timeout(Duration::from_secs(5), reply_rx).await {
            Ok(Ok(Ok(admit))) => admit,
            Ok(Ok(Err(cause))) => {
                self.release(cause, "node").await;
                return;
            }
            _ => {
                self.release(Cause::no_ports(), "node").await;
                return;
            }
        };
        let answer = plan.answer(&admit);
        self.their_video = plan.their_video;
        self.call = Some(Admitted {
            call_id: call_id.clone(),
            conference: conference.clone(),
            participant: admit.participant,
            content: admit.content,
        });
        info!(%call_id, %conference, %name, peer = %self.peer, "H.323 call answered (Fast Connect)");
        // Our side of H.245 starts in the Connect.
        self.h245_out.push(
            TerminalCapabilitySet::ours(
                self.tcs_sequence,
                VIDEO_MAX_BIT_RATE,
                admit.content.is_some(),
            )
            .to_message(),
        );
        self.h245_out.push(
            h245::MasterSlaveDetermination {
                terminal_type: MCU_TERMINAL_TYPE,
                status_determination_number: rand::random::<u32>() & 0xff_ffff,
            }
            .to_message(),
        );
        let h245 = std::mem::take(&mut self.h245_out);
        let connect = UserInformation::new(Body::Connect(
            Connect::new(
                self.conference_id,
                self.call_identifier,
                EndpointType::mcu(),
            )
            .with_fast_start(&answer),
        ))
        .with_h245(&h245);
        let q = connect
            .to_q931(self.call_reference, true)
            .with_display("Tandem");
        self.send_q931(&q).await;
        // H.245 the caller sent along with its Setup (parallel H.245).
        for m in tunnelled {
            match m {
                Ok(m) => self.handle_h245(m),
                Err(e) => self.ctx.metrics.malformed("h245", e.kind()),
            }
        }
    }

    /// One tunnelled H.245 message from the caller.
    fn handle_h245(&mut self, m: h245::Message) {
        self.ctx
            .metrics
            .h323
            .h245_messages
            .with_label_values(&[m.name()])
            .inc();
        if let Some(h239) = m.h239() {
            self.handle_h239(h239);
            return;
        }
        match m {
            h245::Message::Request(Request::TerminalCapabilitySet(tcs)) => {
                self.their_tcs = true;
                self.their_presentation =
                    tcs.capability_table
                        .iter()
                        .find_map(|e| match &e.capability {
                            Some(
                                Capability::ReceiveVideo(v)
                                | Capability::ReceiveAndTransmitVideo(v),
                            ) if v.is_presentation() => v.h264(),
                            _ => None,
                        });
                self.h245_out.push(h245::Message::Response(
                    Response::TerminalCapabilitySetAck {
                        sequence_number: tcs.sequence_number,
                    },
                ));
                self.maybe_open_content();
            }
            h245::Message::Request(Request::MasterSlaveDetermination(msd)) => {
                let answer = if msd.terminal_type < MCU_TERMINAL_TYPE {
                    // The Ack's decision is what its receiver is.
                    Response::MasterSlaveDeterminationAck(MsdDecision::Slave)
                } else if msd.terminal_type > MCU_TERMINAL_TYPE {
                    Response::MasterSlaveDeterminationAck(MsdDecision::Master)
                } else {
                    Response::MasterSlaveDeterminationReject
                };
                self.h245_out.push(h245::Message::Response(answer));
            }
            h245::Message::Response(Response::TerminalCapabilitySetAck { .. }) => {
                self.our_tcs_acked = true;
                self.maybe_open_content();
            }
            h245::Message::Request(Request::OpenLogicalChannel(olc)) => self.handle_olc(&olc),
            h245::Message::Response(Response::OpenLogicalChannelAck(ack))
                if ack.forward_logical_channel_number == CONTENT_CHANNEL =>
            {
                let media = ack.forward_multiplex_ack.as_ref();
                let rtp = media
                    .and_then(|p| p.media_channel.as_ref())
                    .and_then(h245::TransportAddress::socket_addr);
                let rtcp = media
                    .and_then(|p| p.media_control_channel.as_ref())
                    .and_then(h245::TransportAddress::socket_addr);
                self.our_content = OurContent::Open;
                let direction = if self.their_content.is_some() {
                    Direction::SendRecv
                } else {
                    Direction::SendOnly
                };
                let stream = self.content_stream();
                stream.remote = rtp;
                stream.remote_rtcp = rtcp;
                stream.direction = direction;
                self.content_changed();
            }
            h245::Message::Response(Response::OpenLogicalChannelReject {
                forward_logical_channel_number: CONTENT_CHANNEL,
                ..
            }) => {
                self.our_content = OurContent::Refused;
            }
            h245::Message::Request(Request::CloseLogicalChannel(c)) => {
                let n = c.forward_logical_channel_number;
                self.h245_out
                    .push(h245::Message::Response(Response::CloseLogicalChannelAck {
                        forward_logical_channel_number: n,
                    }));
                if self.their_content == Some(n) {
                    self.their_content = None;
                    self.give_back_token();
                }
            }
            h245::Message::Request(Request::RequestChannelClose {
                forward_logical_channel_number,
            }) => {
                self.h245_out
                    .push(h245::Message::Response(Response::RequestChannelCloseAck {
                        forward_logical_channel_number,
                    }));
                if forward_logical_channel_number == CONTENT_CHANNEL {
                    self.h245_out
                        .push(h245::CloseLogicalChannel::new(CONTENT_CHANNEL).to_message());
                    self.our_content = OurContent::Refused;
                }
            }
            h245::Message::Request(Request::RoundTripDelay(seq)) => {
                self.h245_out
                    .push(h245::Message::Response(Response::RoundTripDelay(seq)));
            }
            h245::Message::Command(Command::Miscellaneous(MiscellaneousCommand {
                logical_channel_number: VIDEO_CHANNEL,
                kind: MiscellaneousCommandKind::VideoFastUpdatePicture,
            })) => self.to_conference(InfoCommand::PictureFastUpdate),
            h245::Message::Command(Command::EndSession(_)) => {
                // The caller ends H.245, and with it the call (§8.5).
                self.ended = Some((Cause::normal(), "caller"));
            }
            h245::Message::Indication(Indication::UserInput(input)) => match input {
                UserInput::Signal(s) => self.to_conference(InfoCommand::Dtmf(s.signal_type)),
                UserInput::Alphanumeric(text) => {
                    for c in text
                        .chars()
                        .filter(|c| c.is_ascii_digit() || *c == '*' || *c == '#')
                    {
                        self.to_conference(InfoCommand::Dtmf(c));
                    }
                }
                UserInput::Other(_) => {}
            },
            h245::Message::Request(Request::Unsupported(u)) => {
                // An unknown request is answered, never left to time out.
                let original = h245::Message::Request(Request::Unsupported(u)).encode();
                self.h245_out
                    .push(h245::Message::Indication(Indication::FunctionNotSupported(
                        h245::FunctionNotSupported::unknown(&original),
                    )));
            }
            _ => {}
        }
    }

    fn handle_olc(&mut self, olc: &OpenLogicalChannel) {
        let number = olc.forward_logical_channel_number;
        let presentation =
            matches!(&olc.forward.data_type, DataType::Video(v) if v.is_presentation());
        let content = self.call.as_ref().and_then(|c| c.content);
        match (presentation, content) {
            (true, Some((rtp, rtcp))) => {
                let (_, params) = olc.media();
                let pt = params.and_then(|p| p.dynamic_rtp_payload_type);
                let session = params
                    .map(|p| p.session_id)
                    .filter(|s| *s != 0)
                    .unwrap_or(CONTENT_SESSION);
                self.their_content = Some(number);
                let their_h264 = match &olc.forward.data_type {
                    DataType::Video(v) => v.h264(),
                    _ => None,
                };
                let opened = self.our_content != OurContent::Closed;
                let stream = self.content_stream();
                if let Some(pt) = pt {
                    if opened && pt != stream.h264.pt {
                        // Ours announced another: we follow the caller's.
                        debug!(
                            ours = stream.h264.pt,
                            theirs = pt,
                            "presentation payload types differ"
                        );
                    }
                    stream.h264.pt = pt;
                }
                if let Some(h) = their_h264 {
                    stream.h264.profile = h264_profile(h.profile);
                }
                stream.direction = if stream.remote.is_some() {
                    Direction::SendRecv
                } else {
                    Direction::RecvOnly
                };
                let mut ack = OpenLogicalChannelAck::new(number, session, rtp, rtcp);
                if let Some(p) = ack.forward_multiplex_ack.as_mut() {
                    p.dynamic_rtp_payload_type = pt;
                }
                self.h245_out.push(ack.to_message());
                self.content_changed();
            }
            _ => {
                // Media outside Fast Connect, or content while it is off.
                self.h245_out.push(h245::Message::Response(
                    Response::OpenLogicalChannelReject {
                        forward_logical_channel_number: number,
                        cause: OlcRejectCause::DataTypeNotSupported,
                    },
                ));
            }
        }
    }

    fn handle_h239(&mut self, m: H239Message) {
        match m {
            H239Message::PresentationTokenRequest {
                terminal_label,
                channel_id,
                ..
            } => {
                let floor = self
                    .ctx
                    .bfcp
                    .clone()
                    .zip(self.call.as_ref().filter(|c| c.content.is_some()));
                match floor {
                    Some((bfcp, call)) => {
                        if matches!(self.token, Token::Held(..)) {
                            self.respond_token(true, terminal_label, channel_id);
                            return;
                        }
                        self.token = Token::Requested(terminal_label, channel_id);
                        // The answer goes out when the floor says (handle_floor).
                        bfcp.hold_for(&call.conference, call.participant, true);
                    }
                    None => {
                        self.count_token("refused");
                        self.respond_token(false, terminal_label, channel_id);
                    }
                }
            }
            H239Message::PresentationTokenRelease { .. } => self.give_back_token(),
            H239Message::FlowControlReleaseRequest { channel_id, .. } => {
                self.h245_out.push(
                    H239Message::FlowControlReleaseResponse {
                        acknowledge: true,
                        channel_id,
                    }
                    .to_message(),
                );
            }
            _ => {}
        }
    }

    /// What the floor control server says of this call's request.
    fn handle_floor(&mut self, notice: FloorNotice) {
        match (notice, self.token) {
            (FloorNotice::Granted, Token::Requested(label, channel)) => {
                self.token = Token::Held(label, channel);
                self.count_token("granted");
                self.respond_token(true, label, channel);
                if let Some(n) = self.their_content {
                    self.h245_out
                        .push(MiscellaneousCommand::video_fast_update(n).to_message());
                }
            }
            (FloorNotice::Released { .. }, Token::Requested(label, channel)) => {
                self.token = Token::None;
                self.count_token("refused");
                self.respond_token(false, label, channel);
            }
            (FloorNotice::Released { revoked: true }, Token::Held(label, channel)) => {
                // Another presenter took over: the token is taken back.
                self.token = Token::None;
                self.h245_out.push(
                    H239Message::PresentationTokenRelease {
                        terminal_label: label,
                        channel_id: channel,
                    }
                    .to_message(),
                );
            }
            (FloorNotice::Released { .. }, _) => self.token = Token::None,
            _ => {}
        }
    }

    fn give_back_token(&mut self) {
        if self.token == Token::None {
            return;
        }
        self.token = Token::None;
        if let (Some(bfcp), Some(call)) = (&self.ctx.bfcp, &self.call) {
            bfcp.hold_for(&call.conference, call.participant, false);
        }
    }

    fn respond_token(&mut self, acknowledge: bool, terminal_label: u16, channel_id: u16) {
        self.h245_out.push(
            H239Message::PresentationTokenResponse {
                acknowledge,
                terminal_label,
                channel_id,
            }
            .to_message(),
        );
    }

    fn count_token(&self, outcome: &str) {
        self.ctx
            .metrics
            .h323
            .token_requests
            .with_label_values(&[outcome])
            .inc();
    }

    /// Opens our presentation channel once capabilities are exchanged,
    /// if the caller can receive one.
    fn maybe_open_content(&mut self) {
        if self.our_content != OurContent::Closed || !self.their_tcs || !self.our_tcs_acked {
            return;
        }
        let (Some(call), Some(cap)) = (&self.call, self.their_presentation) else {
            return;
        };
        let Some((_, rtcp)) = call.content else {
            return;
        };
        let ours = H264Capability {
            max_bit_rate: Some(CONTENT_MAX_BIT_RATE.min(cap.max_bit_rate.unwrap_or(u32::MAX))),
            ..cap
        };
        // One payload type both ways (the content relay's): the caller's,
        // if its presentation channel is open already.
        let stream = self.content_stream();
        let pt = stream.h264.pt;
        let profile = stream.h264.profile;
        stream.h264 = negotiated_video(&ours, pt, None);
        stream.h264.profile = profile;
        self.h245_out.push(
            OpenLogicalChannel::presentation(CONTENT_CHANNEL, &ours, CONTENT_SESSION, pt, rtcp)
                .to_message(),
        );
        self.our_content = OurContent::Opening;
    }

    /// The presentation channel's stream so far.
    fn content_stream(&mut self) -> &mut VideoStream {
        self.content_stream.get_or_insert_with(|| VideoStream {
            h264: negotiated_video(
                &H264Capability::hd720p30(CONTENT_MAX_BIT_RATE),
                CONTENT_PT,
                None,
            ),
            rtcp_mux: false,
            remote: None,
            remote_rtcp: None,
            direction: Direction::Inactive,
            pli: true,
            fir: true,
            tmmbr: false,
        })
    }

    fn content_changed(&mut self) {
        let (Some(call), Some(stream)) = (&self.call, &self.content_stream) else {
            return;
        };
        let _ = self
            .ctx
            .signalling
            .try_send(SipInbound::H323(H323Inbound::Content {
                call_id: call.call_id.clone(),
                stream: stream.clone(),
            }));
    }

    fn to_conference(&self, command: InfoCommand) {
        if let Some(call) = &self.call {
            let _ = self
                .ctx
                .signalling
                .try_send(SipInbound::H323(H323Inbound::Info {
                    call_id: call.call_id.clone(),
                    command,
                }));
        }
    }

    /// Sends the H.245 gathered while handling input, in one Facility.
    async fn flush_h245(&mut self) {
        if self.h245_out.is_empty() || self.call_reference == 0 || self.ended.is_some() {
            self.h245_out.clear();
            return;
        }
        let h245 = std::mem::take(&mut self.h245_out);
        let uu = UserInformation::new(Body::Facility(Facility::tunnel(self.call_identifier)))
            .with_h245(&h245);
        self.send_uu(&uu).await;
    }

    /// Release Complete with `cause`; the connection closes after it.
    async fn release(&mut self, cause: Cause, by: &'static str) {
        if self.ended.is_some() {
            return;
        }
        if self.token != Token::None {
            self.give_back_token();
        }
        if self.call_reference != 0 {
            let uu = UserInformation::new(Body::ReleaseComplete(ReleaseComplete::new(
                self.call_identifier,
                cause.reason.clone(),
            )))
            .tunnelling(true);
            let q = uu.to_q931(self.call_reference, true).with_cause(cause.q931);
            self.send_q931(&q).await;
        }
        info!(peer = %self.peer, cause = cause.label, "H.323 release");
        self.ended = Some((cause, by));
    }

    async fn send_uu(&mut self, uu: &UserInformation) {
        let q = uu.to_q931(self.call_reference, true);
        self.send_q931(&q).await;
    }

    async fn send_q931(&mut self, q: &q931::Message) {
        let bytes = tpkt::frame(&q.to_bytes());
        if let Err(e) = self.write.write_all(&bytes).await {
            debug!(%e, peer = %self.peer, "H.323 write failed");
            if self.ended.is_none() {
                self.ended = Some((
                    Cause {
                        label: "connection_lost",
                        ..Cause::from_caller(Some(41))
                    },
                    "caller",
                ));
            }
        }
    }
}

/// The conference a Setup calls: the first destination alias that is a
/// conference number (dialedDigits, an h323-ID or the user part of a URL
/// such as `h323:1234@node`), else the Q.931 called party number.
fn destination(setup: &h225::Setup, msg: &q931::Message) -> Option<String> {
    let from_alias = setup.destination_address.iter().find_map(|a| {
        let text = match a {
            AliasAddress::Url(u) => {
                let u = u.split_once(':').map_or(u.as_str(), |(_, rest)| rest);
                u.split('@').next().unwrap_or(u)
            }
            other => other.text()?,
        };
        valid_conference(text).then(|| text.to_string())
    });
    from_alias.or_else(|| {
        // Called party number (0x70): type/plan octet, then IA5 digits.
        let ie = msg.ie(0x70)?;
        let digits = String::from_utf8_lossy(ie.get(1..)?).to_string();
        valid_conference(&digits).then_some(digits)
    })
}

fn valid_conference(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The caller's name: the Q.931 Display, its h323-ID, else its number.
fn caller_name(setup: &h225::Setup, msg: &q931::Message) -> String {
    let display = msg
        .ie(0x28)
        .map(|d| String::from_utf8_lossy(d).trim().to_string())
        .filter(|d| !d.is_empty());
    display
        .or_else(|| {
            setup.source_address.iter().find_map(|a| match a {
                AliasAddress::H323Id(s) => Some(s.clone()),
                _ => None,
            })
        })
        .or_else(|| {
            setup
                .source_address
                .iter()
                .find_map(|a| a.text().map(str::to_string))
        })
        .unwrap_or_else(|| "H.323".into())
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn q931_type_label(t: q931::MessageType) -> &'static str {
    use q931::MessageType as T;
    match t {
        T::Alerting => "alerting",
        T::CallProceeding => "call_proceeding",
        T::Progress => "progress",
        T::Setup => "setup",
        T::Connect => "connect",
        T::SetupAcknowledge => "setup_acknowledge",
        T::ReleaseComplete => "release_complete",
        T::Facility => "facility",
        T::Notify => "notify",
        T::StatusEnquiry => "status_enquiry",
        T::Information => "information",
        T::Status => "status",
        T::Other(_) => "other",
    }
}

/// H.241 profile bits → the profile.
fn h264_profile(bits: u8) -> H264Profile {
    use h245::h241;
    if bits & h241::PROFILE_HIGH != 0 {
        H264Profile::High
    } else if bits & h241::PROFILE_MAIN != 0 {
        H264Profile::Main
    } else {
        H264Profile::ConstrainedBaseline
    }
}

/// H.241's level numbers → `level_idc` (H.241 Table 8-4).
fn level_idc(h241_level: u8) -> u8 {
    match h241_level {
        0..=15 => 10,
        16..=19 => 9,
        20..=22 => 11,
        23..=29 => 12,
        30..=36 => 13,
        37..=43 => 20,
        44..=50 => 21,
        51..=57 => 22,
        58..=64 => 30,
        65..=71 => 31,
        72..=78 => 32,
        79..=85 => 40,
        86..=92 => 41,
        93..=99 => 42,
        100..=106 => 50,
        _ => 51,
    }
}

/// What the caller can receive, in the SDP-side terms the video engine
/// works in (H.241 capability → RFC 6184 parameters).
fn negotiated_video(
    cap: &H264Capability,
    pt: u8,
    sends: Option<&H264Capability>,
) -> NegotiatedVideo {
    let profile = h264_profile(cap.profile);
    let profile_idc = match profile {
        H264Profile::High => 0x64,
        H264Profile::Main => 0x4d,
        _ => 0x42,
    };
    NegotiatedVideo {
        pt,
        params: H264Params {
            profile_level_id: Some(ProfileLevelId {
                profile_idc,
                profile_iop: if profile_idc == 0x42 { 0xe0 } else { 0 },
                level_idc: level_idc(cap.level),
            }),
            packetization_mode: 1,
            max_fs: cap.custom_max_fs.map(|f| u32::from(f) * 256),
            max_mbps: cap.custom_max_mbps.map(|m| u32::from(m) * 500),
            max_br: None,
            max_fps: None,
            level_asymmetry_allowed: false,
        },
        profile: sends.map_or(profile, |s| h264_profile(s.profile)),
        remote_bandwidth_kbps: cap.max_bit_rate.map(|b| b / 10),
    }
}

/// The Fast Connect proposals we accept, and the streams they make.
struct FastPlan {
    audio: NegotiatedAudio,
    /// Indexes into the proposals: (caller sends, caller receives).
    audio_pick: (Option<usize>, usize),
    video: Option<VideoStream>,
    video_pick: Option<(Option<usize>, usize)>,
    proposals: Vec<OpenLogicalChannel>,
    /// The caller's main video channel number (for keyframe requests).
    their_video: Option<u16>,
}

/// Audio codecs we take over H.323, best first, with their static payload
/// types.
fn audio_codec(cap: &AudioCapability) -> Option<(AudioCodec, u8, u8)> {
    // (codec, payload type, preference: lower is better)
    match cap {
        AudioCapability::G722_64k(_) => Some((AudioCodec::G722, 9, 0)),
        AudioCapability::G711Ulaw64k(_) => Some((AudioCodec::Pcmu, 0, 1)),
        AudioCapability::G711Alaw64k(_) => Some((AudioCodec::Pcma, 8, 2)),
        _ => None,
    }
}

impl FastPlan {
    fn choose(proposals: &[OpenLogicalChannel]) -> Option<FastPlan> {
        // Audio: the best codec the caller can receive; what it sends is
        // taken if it is the same codec.
        let audio_of = |o: &OpenLogicalChannel| match o.media().0 {
            DataType::Audio(a) => audio_codec(a),
            _ => None,
        };
        let (rx, (codec, pt, _)) = proposals
            .iter()
            .enumerate()
            .filter(|(_, o)| o.is_reverse_proposal())
            .filter_map(|(i, o)| audio_of(o).map(|c| (i, c)))
            .min_by_key(|(_, c)| c.2)?;
        let tx = proposals
            .iter()
            .position(|o| !o.is_reverse_proposal() && audio_of(o).is_some_and(|c| c.0 == codec));
        let rx_params = proposals[rx].media().1;
        let remote = rx_params
            .and_then(|p| p.media_channel.as_ref())
            .and_then(h245::TransportAddress::socket_addr);
        let remote_rtcp = rx_params
            .and_then(|p| p.media_control_channel.as_ref())
            .and_then(h245::TransportAddress::socket_addr)
            .or_else(|| {
                tx.and_then(|t| proposals[t].media().1)
                    .and_then(|p| p.media_control_channel.as_ref())
                    .and_then(h245::TransportAddress::socket_addr)
            });
        let audio = NegotiatedAudio {
            codec,
            pt,
            dtmf_pt: None,
            cn_pt: None,
            ptime: 20,
            rtcp_mux: false,
            remote,
            remote_rtcp,
            direction: if tx.is_some() {
                Direction::SendRecv
            } else {
                Direction::SendOnly
            },
            opus_fec: false,
            opus_stereo: false,
        };
        // Video: H.264 (not a presentation) the caller can receive.
        let h264_of = |o: &OpenLogicalChannel| match o.media().0 {
            DataType::Video(v) if !v.is_presentation() => v.h264(),
            _ => None,
        };
        let video_rx = proposals
            .iter()
            .enumerate()
            .find(|(_, o)| o.is_reverse_proposal() && h264_of(o).is_some())
            .map(|(i, _)| i);
        let video_tx = proposals
            .iter()
            .position(|o| !o.is_reverse_proposal() && h264_of(o).is_some());
        let (video, video_pick) = match video_rx {
            Some(rx) => {
                let cap = h264_of(&proposals[rx]).expect("found above");
                let sends = video_tx.and_then(|t| h264_of(&proposals[t]));
                let params = proposals[rx].media().1;
                let tx_params = video_tx.and_then(|t| proposals[t].media().1);
                let pt = tx_params
                    .and_then(|p| p.dynamic_rtp_payload_type)
                    .or_else(|| params.and_then(|p| p.dynamic_rtp_payload_type))
                    .unwrap_or(96);
                let stream = VideoStream {
                    h264: negotiated_video(&cap, pt, sends.as_ref()),
                    rtcp_mux: false,
                    remote: params
                        .and_then(|p| p.media_channel.as_ref())
                        .and_then(h245::TransportAddress::socket_addr),
                    remote_rtcp: params
                        .and_then(|p| p.media_control_channel.as_ref())
                        .and_then(h245::TransportAddress::socket_addr),
                    direction: if video_tx.is_some() {
                        Direction::SendRecv
                    } else {
                        Direction::SendOnly
                    },
                    // Keyframes are asked for with H.245 (videoFastUpdatePicture).
                    pli: false,
                    fir: false,
                    tmmbr: false,
                };
                (Some(stream), Some((video_tx, rx)))
            }
            None => (None, None),
        };
        Some(FastPlan {
            audio,
            audio_pick: (tx, rx),
            their_video: video_tx.map(|t| proposals[t].forward_logical_channel_number),
            video,
            video_pick,
            proposals: proposals.to_vec(),
        })
    }

    /// The accepted proposals, with our addresses, for the Connect.
    fn answer(&self, admit: &H323Admit) -> Vec<OpenLogicalChannel> {
        let mut out = Vec::new();
        let (a_rtp, a_rtcp) = admit.audio;
        if let Some(tx) = self.audio_pick.0 {
            out.push(self.proposals[tx].fast_start_answer(0, a_rtp, a_rtcp));
        }
        out.push(self.proposals[self.audio_pick.1].fast_start_answer(AUDIO_CHANNEL, a_rtp, a_rtcp));
        if let (Some((tx, rx)), Some((v_rtp, v_rtcp))) = (self.video_pick, admit.video) {
            if let Some(tx) = tx {
                out.push(self.proposals[tx].fast_start_answer(0, v_rtp, v_rtcp));
            }
            out.push(self.proposals[rx].fast_start_answer(VIDEO_CHANNEL, v_rtp, v_rtcp));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_proto::h323::h245::{MultiplexParameters, VideoCapability};

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    /// The caller's receive direction for `data_type` at `rtp`.
    fn receives(
        n: u16,
        data_type: DataType,
        session: u8,
        rtp: &str,
        pt: Option<u8>,
    ) -> OpenLogicalChannel {
        let rtp = addr(rtp);
        let rtcp = SocketAddr::new(rtp.ip(), rtp.port() + 1);
        OpenLogicalChannel::receive_proposal(n, data_type, session, rtp, rtcp, pt)
    }

    fn g711() -> DataType {
        DataType::Audio(AudioCapability::G711Ulaw64k(20))
    }
    fn g722() -> DataType {
        DataType::Audio(AudioCapability::G722_64k(20))
    }
    fn h264() -> DataType {
        DataType::Video(VideoCapability::Generic(
            H264Capability::hd720p30(10_000).to_generic(),
        ))
    }

    #[test]
    fn fast_connect_takes_the_best_audio_both_ways_and_h264() {
        let rtcp = addr("192.0.2.7:5001");
        let mut video_send = OpenLogicalChannel::new(6, h264(), 2, rtcp);
        if let MultiplexParameters::H2250(p) = &mut video_send.forward.multiplex_parameters {
            p.dynamic_rtp_payload_type = Some(109);
        }
        let proposals = vec![
            receives(1, g711(), 1, "192.0.2.7:5000", None),
            OpenLogicalChannel::new(2, g711(), 1, rtcp),
            receives(3, g722(), 1, "192.0.2.7:5000", None),
            OpenLogicalChannel::new(4, g722(), 1, rtcp),
            receives(5, h264(), 2, "192.0.2.7:5002", Some(109)),
            video_send,
        ];
        let plan = FastPlan::choose(&proposals).expect("a plan");
        assert_eq!(plan.audio.codec, AudioCodec::G722, "wideband first");
        assert_eq!(plan.audio.pt, 9);
        assert_eq!(plan.audio.remote, Some(addr("192.0.2.7:5000")));
        assert_eq!(plan.audio.remote_rtcp, Some(addr("192.0.2.7:5001")));
        assert_eq!(plan.audio.direction, Direction::SendRecv);
        let video = plan.video.as_ref().expect("video");
        assert_eq!(video.h264.pt, 109);
        assert_eq!(video.remote, Some(addr("192.0.2.7:5002")));
        assert_eq!(video.h264.remote_bandwidth_kbps, Some(1000));
        assert_eq!(
            video.h264.params.profile_level_id.map(|p| p.level_idc),
            Some(31),
            "H.241 level 71 is 3.1"
        );
        assert_eq!(plan.their_video, Some(6));

        let admit = H323Admit {
            participant: ParticipantId(1),
            audio: (addr("198.51.100.1:40000"), addr("198.51.100.1:40001")),
            video: Some((addr("198.51.100.1:41000"), addr("198.51.100.1:41001"))),
            content: None,
        };
        let answer = plan.answer(&admit);
        assert_eq!(answer.len(), 4, "audio and video, each way");
        // What the caller sends comes to our addresses; what it receives
        // goes out on our channel numbers.
        let sends = answer
            .iter()
            .find(|o| o.forward_logical_channel_number == 4)
            .expect("g722 send");
        let p = sends.forward.multiplex_parameters.h2250().expect("h2250");
        assert_eq!(
            p.media_channel.as_ref().and_then(|t| t.socket_addr()),
            Some(admit.audio.0)
        );
        let ours = answer
            .iter()
            .find(|o| o.forward_logical_channel_number == AUDIO_CHANNEL)
            .expect("ours");
        assert!(ours.is_reverse_proposal());
        assert_eq!(ours.reverse.as_ref().map(|r| &r.data_type), Some(&g722()));
    }

    #[test]
    fn nothing_the_caller_receives_is_no_plan() {
        let rtcp = addr("192.0.2.7:5001");
        assert!(FastPlan::choose(&[OpenLogicalChannel::new(2, g711(), 1, rtcp)]).is_none());
        let g729 = DataType::Audio(AudioCapability::G729(20));
        assert!(FastPlan::choose(&[receives(1, g729, 1, "192.0.2.7:5000", None)]).is_none());
    }

    #[test]
    fn the_conference_comes_from_an_alias_a_url_or_the_called_number() {
        let mut setup = h225::Setup::new(Guid([1; 16]), Guid([2; 16]), EndpointType::terminal());
        let q = q931::Message::new(q931::MessageType::Setup, 1, false);
        assert_eq!(destination(&setup, &q), None);
        let with_number = q.clone().with(0x70, b"\x814711".to_vec());
        assert_eq!(destination(&setup, &with_number).as_deref(), Some("4711"));
        setup.destination_address = vec![AliasAddress::Url("h323:5150@node.example".into())];
        assert_eq!(destination(&setup, &with_number).as_deref(), Some("5150"));
        setup.destination_address = vec![
            AliasAddress::H323Id("bad name!".into()),
            AliasAddress::DialedDigits("777".into()),
        ];
        assert_eq!(destination(&setup, &q).as_deref(), Some("777"));
    }
}
