//! A synthetic H.323-lite room system: H.225.0 call signalling over TCP
//! (TPKT, Q.931, the PER user-user information), Fast Connect for G.711
//! and H.264, tunnelled H.245 (capabilities, master/slave, the H.239
//! presentation channel both ways) and the H.239 presentation token. Its
//! media is a loadtest room system's ([`RoomSystem::prepare`]): the tone it
//! sends, what it hears, the colours it sends and sees.
//!
//! The messages are built with tandem-proto's H.323 codec: the node's own.
//! What keeps that honest is tshark, which dissects what both sides put on
//! the wire (see `h323_calls.rs`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tandem_loadtest::sdp::{Answer, VideoAnswer};
use tandem_loadtest::{CallOptions, Codec, FloorState, RoomSystem, RoomSystemConfig};
use tandem_proto::h323::h225::{
    AliasAddress, Body, EndpointType, Facility, Guid, ReleaseComplete, Setup, UserInformation,
};
use tandem_proto::h323::h245::{
    self, AudioCapability, DataType, H239Message, H264Capability, MasterSlaveDetermination,
    MsdDecision, MultiplexParameters, OpenLogicalChannel, OpenLogicalChannelAck, Request, Response,
    TerminalCapabilitySet, VideoCapability,
};
use tandem_proto::h323::{q931, tpkt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

/// Our presentation channel's number and payload type.
const CONTENT_CHANNEL: u16 = 10;
const CONTENT_PT: u8 = 97;
const VIDEO_PT: u8 = 96;
const TERMINAL_LABEL: u16 = 1;

/// What the call saw, for assertions.
#[derive(Debug, Default, Clone)]
pub struct H323Seen {
    /// Q.931 message types received, in order.
    pub q931: Vec<String>,
    /// H.245 messages received, by name.
    pub h245: Vec<String>,
    /// The node opened its presentation channel to us.
    pub content_offered: bool,
    /// The node acknowledged our presentation channel.
    pub content_acked: bool,
    /// The token, as the node last said.
    pub token: FloorState,
    /// videoFastUpdatePicture commands from the node.
    pub fast_updates: u32,
    /// The cause of the node's Release Complete.
    pub released: Option<u8>,
}

fn lock(seen: &Mutex<H323Seen>) -> MutexGuard<'_, H323Seen> {
    seen.lock().unwrap_or_else(|p| p.into_inner())
}

enum Ctl {
    RequestToken,
    ReleaseToken,
    Hangup,
}

pub struct H323Call {
    pub room: RoomSystem,
    ctl: mpsc::UnboundedSender<Ctl>,
    seen: Arc<Mutex<H323Seen>>,
}

impl H323Call {
    pub fn seen(&self) -> H323Seen {
        lock(&self.seen).clone()
    }

    /// Asks for the H.239 presentation token; the answer shows in
    /// [`H323Seen::token`] (and the room presents while it is granted).
    pub fn request_token(&self) {
        let _ = self.ctl.send(Ctl::RequestToken);
    }

    pub fn release_token(&self) {
        let _ = self.ctl.send(Ctl::ReleaseToken);
    }

    /// Release Complete (normal call clearing).
    pub fn hangup(&self) {
        let _ = self.ctl.send(Ctl::Hangup);
    }
}

/// Calls `conference` at the node's H.323 address with Fast Connect: G.711
/// µ-law, and H.264 if `cfg` has video. Returns once the node's Connect
/// is in and media runs.
pub async fn call(
    node: SocketAddr,
    cfg: RoomSystemConfig,
    options: CallOptions,
) -> Result<H323Call, String> {
    if cfg.codec != Codec::Pcmu {
        return Err("the H.323 room system speaks G.711 µ-law".into());
    }
    let conference = cfg.conference.clone();
    let name = cfg.name.clone();
    let prepared = RoomSystem::prepare(cfg, options)
        .await
        .map_err(|e| e.to_string())?;
    let rtp = prepared.local_rtp_addr();
    // The room system multiplexes RTCP on its RTP socket: its RTCP
    // addresses are its RTP addresses.
    let rtcp = rtp;
    let video = prepared.local_video_addr();
    let content = prepared.local_content_addr();
    let stream = TcpStream::connect(node)
        .await
        .map_err(|e| format!("connecting to {node}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut link = Link {
        read,
        write,
        decoder: tpkt::Decoder::new(),
        call_reference: rand::random::<u16>() & 0x7fff | 1,
        call_identifier: Guid(rand::random()),
        seen: Arc::new(Mutex::new(H323Seen::default())),
    };

    // Fast Connect: audio and video, each way.
    let audio = DataType::Audio(AudioCapability::G711Ulaw64k(20));
    let mut proposals = vec![
        OpenLogicalChannel::receive_proposal(1, audio.clone(), 1, rtp, rtcp, None),
        OpenLogicalChannel::new(2, audio, 1, rtcp),
    ];
    if let Some(v) = video {
        let v_rtcp = v;
        let h264 = DataType::Video(VideoCapability::Generic(
            H264Capability::hd720p30(20_000).to_generic(),
        ));
        proposals.push(OpenLogicalChannel::receive_proposal(
            3,
            h264.clone(),
            2,
            v,
            v_rtcp,
            Some(VIDEO_PT),
        ));
        let mut send = OpenLogicalChannel::new(4, h264, 2, v_rtcp);
        if let MultiplexParameters::H2250(p) = &mut send.forward.multiplex_parameters {
            p.dynamic_rtp_payload_type = Some(VIDEO_PT);
        }
        proposals.push(send);
    }
    let mut setup = Setup::new(
        Guid(rand::random()),
        link.call_identifier,
        EndpointType::terminal(),
    );
    setup.destination_address = vec![AliasAddress::DialedDigits(conference.clone())];
    setup.source_address = vec![AliasAddress::H323Id(name.clone())];
    setup.fast_start = proposals.iter().map(OpenLogicalChannel::encode).collect();
    let uu = UserInformation::new(Body::Setup(setup)).tunnelling(true);
    let q = uu
        .to_q931(link.call_reference, false)
        .with_display(&name)
        .with(0x04, vec![0x88, 0x90, 0xa5]);
    link.send(&q).await?;

    // Call Proceeding, then Connect (or Release Complete).
    let connect = loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), link.next())
            .await
            .map_err(|_| "no Connect within 10 s".to_string())??;
        match msg.message_type {
            q931::MessageType::Connect => break msg,
            q931::MessageType::ReleaseComplete => {
                return Err(format!("released, cause {:?}", msg.cause()));
            }
            _ => {}
        }
    };
    let uu = UserInformation::from_q931(&connect)
        .ok_or("Connect without user-user information")?
        .map_err(|e| format!("Connect's H.225.0: {e}"))?;
    let Body::Connect(c) = &uu.body else {
        return Err("Connect with another body".into());
    };
    let mut audio_answer = None;
    let mut video_answer = None;
    for bytes in &c.fast_start {
        let olc = OpenLogicalChannel::decode(bytes).map_err(|e| format!("fast start: {e}"))?;
        if olc.is_reverse_proposal() {
            continue;
        }
        let Some(p) = olc.forward.multiplex_parameters.h2250() else {
            continue;
        };
        let dest = p
            .media_channel
            .as_ref()
            .and_then(h245::TransportAddress::socket_addr);
        let dest_rtcp = p
            .media_control_channel
            .as_ref()
            .and_then(h245::TransportAddress::socket_addr);
        match (&olc.forward.data_type, dest) {
            (DataType::Audio(_), Some(rtp)) => {
                audio_answer = Some(Answer {
                    rtp,
                    payload_type: 0,
                    codec: Codec::Pcmu,
                    ptime_ms: Some(20),
                    direction: "sendrecv".into(),
                });
            }
            (DataType::Video(_), Some(rtp)) => {
                video_answer = Some(video_answer_for(
                    rtp,
                    dest_rtcp.unwrap_or(SocketAddr::new(rtp.ip(), rtp.port() + 1)),
                    VIDEO_PT,
                ));
            }
            _ => {}
        }
    }
    let audio_answer = audio_answer.ok_or("the Connect accepted no audio we send")?;
    let room = prepared.start(audio_answer, video_answer);
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    let seen = link.seen.clone();
    let mut h245_link = H245 {
        room: room.clone(),
        content,
        node_content: None,
        out: Vec::new(),
    };
    // Ours: capabilities (with a presentation channel when we have one),
    // master/slave (a terminal, so the MCU is master), our presentation
    // channel.
    h245_link
        .out
        .push(TerminalCapabilitySet::ours(1, 20_000, content.is_some()).to_message());
    h245_link.out.push(
        MasterSlaveDetermination {
            terminal_type: 50,
            status_determination_number: rand::random::<u32>() & 0xff_ffff,
        }
        .to_message(),
    );
    if let Some(c) = content {
        let c_rtcp = c;
        h245_link.out.push(
            OpenLogicalChannel::presentation(
                CONTENT_CHANNEL,
                &H264Capability::hd720p30(15_000),
                0,
                CONTENT_PT,
                c_rtcp,
            )
            .to_message(),
        );
    }
    for m in uu.h245_messages() {
        match m {
            Ok(m) => h245_link.handle(m, &link.seen),
            Err(e) => return Err(format!("Connect's tunnelled H.245: {e}")),
        }
    }
    link.flush(&mut h245_link.out).await?;
    tokio::spawn(run(link, h245_link, ctl_rx));
    Ok(H323Call {
        room,
        ctl: ctl_tx,
        seen,
    })
}

fn video_answer_for(rtp: SocketAddr, rtcp: SocketAddr, pt: u8) -> VideoAnswer {
    VideoAnswer {
        rtp,
        rtcp,
        payload_type: pt,
        fmtp: String::new(),
        profile_level_id: None,
        direction: "sendrecv".into(),
        rtcp_fb: vec!["nack pli".into(), "ccm fir".into()],
        bandwidth_kbps: None,
    }
}

struct Link {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    decoder: tpkt::Decoder,
    call_reference: u16,
    call_identifier: Guid,
    seen: Arc<Mutex<H323Seen>>,
}

impl Link {
    async fn send(&mut self, q: &q931::Message) -> Result<(), String> {
        self.write
            .write_all(&tpkt::frame(&q.to_bytes()))
            .await
            .map_err(|e| format!("writing: {e}"))
    }

    /// The next Q.931 message from the node.
    async fn next(&mut self) -> Result<q931::Message, String> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(frame) = self.decoder.poll() {
                let frame = frame.map_err(|e| format!("TPKT: {e:?}"))?;
                let msg = q931::Message::parse(&frame).map_err(|e| format!("Q.931: {e:?}"))?;
                let mut seen = lock(&self.seen);
                seen.q931.push(format!("{:?}", msg.message_type));
                if msg.message_type == q931::MessageType::ReleaseComplete {
                    seen.released = Some(msg.cause().unwrap_or(16));
                }
                return Ok(msg);
            }
            let n = self
                .read
                .read(&mut buf)
                .await
                .map_err(|e| format!("reading: {e}"))?;
            if n == 0 {
                return Err("the node closed the connection".into());
            }
            self.decoder.push(&buf[..n]);
        }
    }

    /// Sends `out` tunnelled in one Facility.
    async fn flush(&mut self, out: &mut Vec<h245::Message>) -> Result<(), String> {
        if out.is_empty() {
            return Ok(());
        }
        let uu = UserInformation::new(Body::Facility(Facility::tunnel(self.call_identifier)))
            .with_h245(out);
        out.clear();
        let q = uu.to_q931(self.call_reference, false);
        self.send(&q).await
    }
}

/// The H.245 side of the call.
struct H245 {
    room: RoomSystem,
    content: Option<SocketAddr>,
    /// The node's presentation channel to us (its number).
    node_content: Option<u16>,
    out: Vec<h245::Message>,
}

impl H245 {
    fn handle(&mut self, m: h245::Message, seen: &Mutex<H323Seen>) {
        lock(seen).h245.push(m.name().to_string());
        if let Some(h239) = m.h239() {
            match h239 {
                H239Message::PresentationTokenResponse { acknowledge, .. } => {
                    let state = if acknowledge {
                        FloorState::Granted
                    } else {
                        FloorState::Denied
                    };
                    lock(seen).token = state;
                    self.room.set_floor_state(state);
                }
                H239Message::PresentationTokenRelease { .. } => {
                    lock(seen).token = FloorState::Revoked;
                    self.room.set_floor_state(FloorState::Revoked);
                }
                _ => {}
            }
            return;
        }
        match m {
            h245::Message::Request(Request::TerminalCapabilitySet(tcs)) => {
                self.out.push(h245::Message::Response(
                    Response::TerminalCapabilitySetAck {
                        sequence_number: tcs.sequence_number,
                    },
                ));
            }
            h245::Message::Request(Request::MasterSlaveDetermination(_)) => {
                // The node (an MCU) is master: the Ack says what it is.
                self.out.push(h245::Message::Response(
                    Response::MasterSlaveDeterminationAck(MsdDecision::Master),
                ));
            }
            h245::Message::Request(Request::OpenLogicalChannel(olc)) => {
                let presentation =
                    matches!(&olc.forward.data_type, DataType::Video(v) if v.is_presentation());
                match (presentation, self.content) {
                    (true, Some(c)) => {
                        let session = olc
                            .forward
                            .multiplex_parameters
                            .h2250()
                            .map_or(0, |p| p.session_id);
                        self.node_content = Some(olc.forward_logical_channel_number);
                        lock(seen).content_offered = true;
                        self.out.push(
                            OpenLogicalChannelAck::new(
                                olc.forward_logical_channel_number,
                                session,
                                c,
                                c,
                            )
                            .to_message(),
                        );
                    }
                    _ => self.out.push(h245::Message::Response(
                        Response::OpenLogicalChannelReject {
                            forward_logical_channel_number: olc.forward_logical_channel_number,
                            cause: h245::OlcRejectCause::DataTypeNotSupported,
                        },
                    )),
                }
            }
            h245::Message::Response(Response::OpenLogicalChannelAck(ack))
                if ack.forward_logical_channel_number == CONTENT_CHANNEL =>
            {
                let p = ack.forward_multiplex_ack.as_ref();
                let rtp = p
                    .and_then(|p| p.media_channel.as_ref())
                    .and_then(h245::TransportAddress::socket_addr);
                let rtcp = p
                    .and_then(|p| p.media_control_channel.as_ref())
                    .and_then(h245::TransportAddress::socket_addr);
                if let Some(rtp) = rtp {
                    lock(seen).content_acked = true;
                    self.room.start_content(video_answer_for(
                        rtp,
                        rtcp.unwrap_or(SocketAddr::new(rtp.ip(), rtp.port() + 1)),
                        CONTENT_PT,
                    ));
                }
            }
            h245::Message::Command(h245::Command::Miscellaneous(h245::MiscellaneousCommand {
                logical_channel_number,
                kind: h245::MiscellaneousCommandKind::VideoFastUpdatePicture,
            })) => {
                lock(seen).fast_updates += 1;
                self.room
                    .send_keyframe(logical_channel_number == CONTENT_CHANNEL);
            }
            h245::Message::Request(Request::RoundTripDelay(n)) => {
                self.out
                    .push(h245::Message::Response(Response::RoundTripDelay(n)));
            }
            _ => {}
        }
    }
}

async fn run(mut link: Link, mut h245: H245, mut ctl: mpsc::UnboundedReceiver<Ctl>) {
    loop {
        tokio::select! {
            msg = link.next() => {
                let Ok(msg) = msg else { break };
                if msg.message_type == q931::MessageType::ReleaseComplete {
                    break;
                }
                if let Some(Ok(uu)) = UserInformation::from_q931(&msg) {
                    for m in uu.h245_messages().flatten() {
                        h245.handle(m, &link.seen);
                    }
                }
            }
            c = ctl.recv() => match c {
                Some(Ctl::RequestToken) => {
                    lock(&link.seen).token = FloorState::Pending;
                    h245.room.set_floor_state(FloorState::Pending);
                    h245.out.push(H239Message::PresentationTokenRequest {
                        terminal_label: TERMINAL_LABEL,
                        channel_id: CONTENT_CHANNEL,
                        symmetry_breaking: 42,
                    }.to_message());
                }
                Some(Ctl::ReleaseToken) => {
                    lock(&link.seen).token = FloorState::Released;
                    h245.room.set_floor_state(FloorState::Released);
                    h245.out.push(H239Message::PresentationTokenRelease {
                        terminal_label: TERMINAL_LABEL,
                        channel_id: CONTENT_CHANNEL,
                    }.to_message());
                }
                Some(Ctl::Hangup) | None => {
                    let uu = UserInformation::new(Body::ReleaseComplete(ReleaseComplete::new(
                        link.call_identifier,
                        None,
                    )))
                    .tunnelling(true);
                    let q = uu.to_q931(link.call_reference, false).with_cause(16);
                    let _ = link.send(&q).await;
                    break;
                }
            },
        }
        if link.flush(&mut h245.out).await.is_err() {
            break;
        }
    }
    h245.room.set_floor_state(FloorState::Idle);
}
