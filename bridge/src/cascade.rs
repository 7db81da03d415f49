//! The cascade agent of one conference: while the conference has
//! participants, it sits in the native meeting (a Janus VideoRoom, the room
//! with the conference's number) and joins the two.
//!
//! It brings the meeting into the conference as internal legs, RTP over
//! loopback to the node's own media ports, set up with the same offer/answer
//! as a SIP call, so that everything a room system gets (jitter buffer,
//! mix-minus, active speaker, layouts, keyframes) works for them unchanged:
//! - one **link** leg ([`LegSide::Link`]): what the conference sends it is
//!   published into the meeting: the mix of the local speakers (never audio
//!   that came from the meeting: no echo across the cascade) and a 1x1 view
//!   of the local active speaker, as simulcast: the node's own encoding is
//!   the high layer; a layer thread decodes it once and encodes the 360p30
//!   and 180p15 layers with the mixer's [`SimulcastEncoder`]. The link is
//!   neither heard nor shown.
//! - one **remote** leg per native publisher ([`LegSide::Remote`]), up to
//!   `native_speakers`: the publisher's Opus and H.264, forwarded from the
//!   meeting's RTP, enter the conference as a participant with its display
//!   name.
//!
//! If the meeting session is lost (Janus restarts) or WebRTC fails, the
//! agent removes its legs, waits (1 s, doubling to 4 s; back to 1 s after a
//! session that connected) and joins again;
//! room systems stay in their calls throughout.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use prometheus::IntCounter;
use tandem_cascade::agent::{
    CandidateKind, IceServer, PublishSession, ReceivedCodec, ReceivedPacket, SessionConfig,
    SubscribeSession, TurnCredential,
};
use tandem_cascade::connector::{PublisherId, RemotePublisher, StreamRequest};
use tandem_cascade::janus::{JanusConfig, JanusConnector};
use tandem_cascade::{IcePolicy, MeetingConnector, MeetingEvent, RoomId};
use tandem_mixer::ParticipantId;
use tandem_mixer::video::codec::VideoDecoder;
use tandem_mixer::video::{
    Layout, LayoutChoice, SimulcastConfig, SimulcastEncoder, SimulcastLayer,
};
use tandem_proto::rtp::MediaTime;
use tandem_proto::rtp::h264::H264Depacketizer;
use tandem_proto::rtp::{RtpHeader, RtpPacket, Ssrc, is_rtcp, rtcp};
use tandem_proto::sdp::{AudioCodec, LocalMedia, SdpSession, SessionDescription};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::conference::{CascadeSnapshot, ConferenceCommand, LegSetup, LegSide};
use crate::config::{CascadeConfig, IcePolicyConfig};
use crate::driver::net::PortAllocator;
use crate::metrics::Metrics;

/// Payload types of internal legs (what our own offer says).
const OPUS_PT: u8 = 111;
const H264_PT: u8 = 96;
/// Participant IDs of internal legs start here, far above SIP calls'.
const INTERNAL_IDS: u64 = 1 << 40;
const KEEPALIVE: Duration = Duration::from_secs(25);
/// The longest wait between two attempts to join the meeting: a meeting
/// server that restarts is back in seconds, and the room systems are
/// waiting for its people.
const MAX_BACKOFF: Duration = Duration::from_secs(4);
/// How often the link's ICE stats are sampled.
const STATS_EVERY: Duration = Duration::from_secs(2);
/// The link's view is refreshed with a keyframe this often: the meeting
/// server's subscribers ask for keyframes with PLIs that do not reach us
/// (the WebRTC stack keeps inbound RTCP to itself), and a browser that
/// joins mid-stream must not wait long for its first picture.
const LINK_KEYFRAME_EVERY: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

static NEXT_INTERNAL: AtomicU64 = AtomicU64::new(INTERNAL_IDS);

/// What every agent of the node shares.
pub struct CascadeSettings {
    pub janus: JanusConfig,
    pub session: SessionConfig,
    pub native_speakers: usize,
    pub display_name: String,
    pub audio_dscp: u8,
    pub video_dscp: u8,
}

impl CascadeSettings {
    /// `None` when cascade is off (no meeting server configured).
    pub fn from_config(c: &CascadeConfig, audio_dscp: u8, video_dscp: u8) -> Option<Self> {
        let url = c.janus_url.as_ref()?;
        let mut janus = JanusConfig::new(url.clone());
        janus.create_room = c.create_room;
        janus.admin_key = c.admin_key.clone();
        let ice_servers = c
            .turn
            .iter()
            .map(|t| IceServer {
                urls: vec![t.url.clone()],
                credential: match (&t.secret, &t.username, &t.credential) {
                    (Some(secret), _, _) => TurnCredential::SharedSecret {
                        secret: secret.clone(),
                        name: t.username.clone().unwrap_or_else(|| "tandem".into()),
                        ttl: Duration::from_secs(24 * 3600),
                    },
                    (None, Some(u), Some(p)) => TurnCredential::Static {
                        username: u.clone(),
                        password: p.clone(),
                    },
                    _ => TurnCredential::None,
                },
            })
            .collect();
        Some(CascadeSettings {
            janus,
            session: SessionConfig {
                ice_servers,
                ice_policy: match c.ice_policy {
                    IcePolicyConfig::All => IcePolicy::All,
                    IcePolicyConfig::Relay => IcePolicy::Relay,
                },
                bind: c.media_ip,
            },
            native_speakers: c.native_speakers,
            display_name: c.display_name.clone(),
            audio_dscp,
            video_dscp,
        })
    }
}

/// Where an agent puts its legs.
#[derive(Clone)]
pub struct AgentContext {
    pub conference: String,
    pub room: u64,
    pub commands: mpsc::Sender<ConferenceCommand>,
    pub ports: Arc<PortAllocator>,
    pub video_ports: Arc<PortAllocator>,
    pub metrics: Arc<Metrics>,
    pub settings: Arc<CascadeSettings>,
}

/// A running agent. Dropping it does not stop it: call [`Agent::stop`].
pub struct Agent {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Agent {
    pub fn start(ctx: AgentContext) -> Agent {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(ctx, stopped));
        Agent { stop, task }
    }

    /// Leaves the meeting and removes the agent's legs; the task ends soon.
    pub fn stop(self) {
        let _ = self.stop.send(true);
        // Detached: it ends by itself after leaving the meeting.
        drop(self.task);
    }
}

async fn run(ctx: AgentContext, mut stopped: watch::Receiver<bool>) {
    let mut state = CascadeSnapshot {
        state: "joining",
        meeting: Some(format!(
            "{} room {}",
            ctx.settings.janus.server_url, ctx.room
        )),
        ..Default::default()
    };
    let m = &ctx.metrics.cascade;
    m.agents.inc();
    let mut backoff = Duration::from_secs(1);
    loop {
        publish_state(&ctx, &state);
        let mut session = Session::new(&ctx);
        let result = session.run(&mut stopped, &mut state).await;
        session.teardown().await;
        if *stopped.borrow() {
            break;
        }
        // A session that got connected earns a quick retry again.
        if state.state == "connected" {
            backoff = Duration::from_secs(1);
        }
        let reason = match result {
            Ok(()) => "meeting session ended".to_string(),
            Err(e) => e,
        };
        warn!(conference = %ctx.conference, room = ctx.room, %reason, ?backoff, "cascade lost; rejoining");
        m.rejoins.inc();
        state.state = "retrying";
        state.rejoins += 1;
        state.native_participants = 0;
        state.candidate = None;
        state.rtt_ms = None;
        state.last_error = Some(reason);
        publish_state(&ctx, &state);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped.changed() => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        state.state = "joining";
    }
    m.agents.dec();
    info!(conference = %ctx.conference, room = ctx.room, "cascade agent stopped");
}

fn publish_state(ctx: &AgentContext, state: &CascadeSnapshot) {
    let _ = ctx
        .commands
        .try_send(ConferenceCommand::CascadeState(state.clone()));
}

/// One internal leg: the agent's loopback sockets, and where the
/// conference listens for it.
struct InternalLeg {
    participant: ParticipantId,
    audio: Arc<UdpSocket>,
    video: Arc<UdpSocket>,
    conf_audio: SocketAddr,
    conf_video: Option<SocketAddr>,
}

/// A native publisher in the conference.
struct Native {
    leg: InternalLeg,
    session: SubscribeSession,
    forward: JoinHandle<()>,
    /// Reads the conference's RTCP for this leg: its keyframe requests go
    /// to the publisher (PLI through the meeting server).
    feedback: JoinHandle<()>,
}

/// One attempt at being in the meeting.
struct Session<'a> {
    ctx: &'a AgentContext,
    connector: JanusConnector,
    publisher: Option<PublishSession>,
    link: Option<InternalLeg>,
    natives: HashMap<PublisherId, Native>,
    /// Publishers we know of, in the order they appeared.
    known: Vec<RemotePublisher>,
    own_id: Option<PublisherId>,
    packets_tx: mpsc::Sender<(PublisherId, ReceivedPacket)>,
    packets_rx: mpsc::Receiver<(PublisherId, ReceivedPacket)>,
    keyframes_tx: mpsc::Sender<PublisherId>,
    keyframes_rx: mpsc::Receiver<PublisherId>,
    layers: Option<LayerThread>,
    layers_rx: mpsc::Receiver<(SimulcastLayer, MediaTime, Vec<u8>)>,
    depacketizer: H264Depacketizer,
    send_buf: Vec<u8>,
    /// `tandem_cascade_packets_total`, resolved once (not per packet).
    counters: LinkCounters,
}

struct LinkCounters {
    in_audio: IntCounter,
    in_video: IntCounter,
    out_audio: IntCounter,
    out_video: IntCounter,
}

impl<'a> Session<'a> {
    fn new(ctx: &'a AgentContext) -> Self {
        let (packets_tx, packets_rx) = mpsc::channel(4096);
        let (keyframes_tx, keyframes_rx) = mpsc::channel(64);
        let (layers_tx, layers_rx) = mpsc::channel(32);
        let layers = LayerThread::start(&ctx.conference, layers_tx);
        Session {
            ctx,
            connector: JanusConnector::new(ctx.settings.janus.clone()),
            publisher: None,
            link: None,
            natives: HashMap::new(),
            known: Vec::new(),
            own_id: None,
            packets_tx,
            packets_rx,
            keyframes_tx,
            keyframes_rx,
            layers,
            layers_rx,
            depacketizer: H264Depacketizer::new(),
            send_buf: Vec::with_capacity(1500),
            counters: {
                let c = |d: &str, k: &str| ctx.metrics.cascade.packets.with_label_values(&[d, k]);
                LinkCounters {
                    in_audio: c("in", "audio"),
                    in_video: c("in", "video"),
                    out_audio: c("out", "audio"),
                    out_video: c("out", "video"),
                }
            },
        }
    }

    async fn run(
        &mut self,
        stopped: &mut watch::Receiver<bool>,
        state: &mut CascadeSnapshot,
    ) -> Result<(), String> {
        let ctx = self.ctx;
        let joined = self
            .connector
            .join(RoomId(ctx.room), &ctx.settings.display_name)
            .await
            .map_err(|e| format!("join: {e}"))?;
        self.own_id = Some(joined.id);
        let mut publisher = PublishSession::new(&ctx.settings.session, SystemTime::now())
            .await
            .map_err(|e| format!("publish session: {e}"))?;
        let offer = publisher
            .create_offer()
            .await
            .map_err(|e| format!("offer: {e}"))?;
        let answer = self
            .connector
            .publish(offer)
            .await
            .map_err(|e| format!("publish: {e}"))?;
        publisher
            .handle_answer(answer)
            .await
            .map_err(|e| format!("answer: {e}"))?;
        publisher
            .wait_connected(CONNECT_TIMEOUT)
            .await
            .map_err(|e| format!("publisher connection: {e}"))?;
        self.publisher = Some(publisher);
        info!(conference = %ctx.conference, room = ctx.room, "cascade published into the meeting");

        let link = add_internal_leg(ctx, &ctx.settings.display_name, LegSide::Link)
            .await
            .map_err(|e| format!("link leg: {e}"))?;
        // The link shows the local active speaker, full frame.
        let _ = ctx
            .commands
            .send(ConferenceCommand::SetLayout {
                participant: Some(link.participant),
                layout: LayoutChoice::Fixed(Layout::Grid1x1),
            })
            .await;
        let (link_audio, link_video) = (link.audio.clone(), link.video.clone());
        self.link = Some(link);
        state.state = "connected";
        publish_state(ctx, state);

        self.known = joined.publishers;
        self.subscribe_missing(state).await?;

        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        let mut link_keyframes = tokio::time::interval(LINK_KEYFRAME_EVERY);
        let mut stats = tokio::time::interval(STATS_EVERY);
        let link_conf_video = self.link.as_ref().and_then(|l| l.conf_video);
        let mut abuf = vec![0u8; 2048];
        let mut vbuf = vec![0u8; 2048];
        loop {
            tokio::select! {
                _ = stopped.changed() => return Ok(()),
                ev = self.connector.next_event() => match ev {
                    None | Some(MeetingEvent::SessionLost) => return Err("meeting session lost".into()),
                    Some(MeetingEvent::RoomDestroyed) => return Err("room destroyed".into()),
                    Some(MeetingEvent::PublishersUpdated(list)) => {
                        for p in list {
                            match self.known.iter_mut().find(|k| k.id == p.id) {
                                Some(k) => *k = p,
                                None => self.known.push(p),
                            }
                        }
                        self.subscribe_missing(state).await?;
                    }
                    Some(MeetingEvent::PublisherLeft(id)) => {
                        self.known.retain(|k| k.id != id);
                        if let Some(n) = self.natives.remove(&id) {
                            remove_native(ctx, n).await;
                        }
                        self.subscribe_missing(state).await?;
                    }
                    Some(MeetingEvent::HungUp { subscription: None, reason }) => {
                        return Err(format!("publisher hung up: {reason}"));
                    }
                    Some(_) => {}
                },
                Some((id, packet)) = self.packets_rx.recv() => self.forward_native(id, &packet).await,
                Some((layer, ts, data)) = self.layers_rx.recv() => {
                    if let Some(publisher) = self.publisher.as_mut() {
                        publisher
                            .send_video(layer, ts, &data)
                            .await
                            .map_err(|e| format!("send video: {e}"))?;
                    }
                }
                Some(id) = self.keyframes_rx.recv() => {
                    if let Some(n) = self.natives.get(&id) {
                        let asked = n.session.request_keyframe().await;
                        tracing::debug!(publisher = id.0, asked, "keyframe requested from a native publisher");
                        ctx.metrics.cascade.keyframe_requests.inc();
                    }
                }
                r = link_audio.recv_from(&mut abuf) => {
                    if let Ok((n, _)) = r {
                        self.publish_audio(&abuf[..n]).await?;
                    }
                }
                r = link_video.recv_from(&mut vbuf) => {
                    if let Ok((n, _)) = r {
                        self.publish_video(&vbuf[..n]).await?;
                    }
                }
                _ = link_keyframes.tick() => {
                    if let Some(l) = &self.layers {
                        l.request_keyframes();
                    }
                    if let Some(dest) = link_conf_video {
                        let mut pli = Vec::with_capacity(12);
                        rtcp::write_pli(&mut pli, Ssrc(0), Ssrc(0));
                        let _ = link_video.send_to(&pli, dest).await;
                    }
                }
                _ = stats.tick() => self.sample_stats(state).await,
                _ = keepalive.tick() => {
                    self.connector.keepalive().await.map_err(|e| format!("keepalive: {e}"))?;
                }
            }
        }
    }

    /// The link's candidate pair and RTT, for the API and metrics.
    async fn sample_stats(&mut self, state: &mut CascadeSnapshot) {
        let Some(publisher) = self.publisher.as_ref() else {
            return;
        };
        let Some(pair) = publisher.stats().await.selected_pair else {
            return;
        };
        let m = &self.ctx.metrics.cascade;
        let candidate = candidate_label(pair.local);
        if state.candidate != Some(candidate) {
            m.connections.with_label_values(&[candidate]).inc();
        }
        state.candidate = Some(candidate);
        state.rtt_ms = pair.rtt.map(|d| d.as_secs_f64() * 1000.0);
        if let Some(rtt) = pair.rtt {
            m.rtt.observe(rtt.as_secs_f64());
        }
        publish_state(self.ctx, state);
    }

    /// Subscribes to native publishers we do not carry yet, up to the limit.
    async fn subscribe_missing(&mut self, state: &mut CascadeSnapshot) -> Result<(), String> {
        let ctx = self.ctx;
        let wanted: Vec<RemotePublisher> = self
            .known
            .iter()
            .filter(|p| Some(p.id) != self.own_id && !p.streams.is_empty())
            .take(ctx.settings.native_speakers)
            .cloned()
            .collect();
        for p in wanted {
            if self.natives.contains_key(&p.id) {
                continue;
            }
            let name = p
                .display
                .clone()
                .unwrap_or_else(|| format!("Meeting participant {}", p.id.0));
            let offer = self
                .connector
                .subscribe(&[StreamRequest {
                    publisher: p.id,
                    mid: None,
                }])
                .await
                .map_err(|e| format!("subscribe: {e}"))?;
            let (mut session, answer) = SubscribeSession::answer(
                &ctx.settings.session,
                SystemTime::now(),
                &offer.offer,
                1024,
            )
            .await
            .map_err(|e| format!("subscriber session: {e}"))?;
            self.connector
                .start(offer.id, answer)
                .await
                .map_err(|e| format!("start: {e}"))?;
            let leg = add_internal_leg(ctx, &name, LegSide::Remote)
                .await
                .map_err(|e| format!("remote leg: {e}"))?;
            let forward = match session.take_packets() {
                Some(mut packets) => {
                    let tx = self.packets_tx.clone();
                    let id = p.id;
                    tokio::spawn(async move {
                        while let Some(packet) = packets.recv().await {
                            if tx.send((id, packet)).await.is_err() {
                                break;
                            }
                        }
                    })
                }
                None => tokio::spawn(async {}),
            };
            let feedback = {
                let socket = leg.video.clone();
                let tx = self.keyframes_tx.clone();
                let id = p.id;
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1500];
                    while let Ok((n, _)) = socket.recv_from(&mut buf).await {
                        let wants_keyframe = rtcp::parse_compound(&buf[..n])
                            .is_ok_and(|ps| ps.iter().any(|p| p.is_pli() || p.is_fir()));
                        if wants_keyframe && tx.try_send(id).is_err() && tx.is_closed() {
                            break;
                        }
                    }
                })
            };
            // Whatever keyframe the publisher sent before our subscription
            // was up is lost: ask for one now.
            let _ = self.keyframes_tx.try_send(p.id);
            info!(conference = %ctx.conference, publisher = p.id.0, %name, "native publisher joins the conference");
            self.natives.insert(
                p.id,
                Native {
                    leg,
                    session,
                    forward,
                    feedback,
                },
            );
        }
        state.native_participants = self.natives.len();
        publish_state(ctx, state);
        Ok(())
    }

    /// A native publisher's packet, into its leg.
    async fn forward_native(&mut self, id: PublisherId, p: &ReceivedPacket) {
        let Some(n) = self.natives.get(&id) else {
            return;
        };
        let (socket, dest, pt, kind) = match p.codec {
            ReceivedCodec::Opus => (
                &n.leg.audio,
                Some(n.leg.conf_audio),
                OPUS_PT,
                &self.counters.in_audio,
            ),
            ReceivedCodec::H264 => (
                &n.leg.video,
                n.leg.conf_video,
                H264_PT,
                &self.counters.in_video,
            ),
            ReceivedCodec::Other(_) => {
                self.ctx
                    .metrics
                    .cascade
                    .dropped
                    .with_label_values(&["codec"])
                    .inc();
                return;
            }
        };
        let Some(dest) = dest else { return };
        self.send_buf.clear();
        RtpHeader {
            marker: p.marker,
            payload_type: pt,
            sequence: p.sequence,
            timestamp: p.timestamp,
            ssrc: Ssrc(p.ssrc),
        }
        .write(&p.payload, &mut self.send_buf);
        if socket.send_to(&self.send_buf, dest).await.is_ok() {
            kind.inc();
        }
    }

    /// The conference's mix for the link, into the meeting.
    async fn publish_audio(&mut self, datagram: &[u8]) -> Result<(), String> {
        if is_rtcp(datagram) {
            return Ok(());
        }
        let Ok(packet) = RtpPacket::parse(datagram) else {
            return Ok(());
        };
        if let Some(publisher) = self.publisher.as_mut() {
            publisher
                .send_audio(packet.timestamp, packet.payload)
                .await
                .map_err(|e| format!("send audio: {e}"))?;
            self.counters.out_audio.inc();
        }
        Ok(())
    }

    /// The link's 1x1 view (the local active speaker), into the meeting.
    async fn publish_video(&mut self, datagram: &[u8]) -> Result<(), String> {
        if is_rtcp(datagram) {
            return Ok(());
        }
        let Ok(packet) = RtpPacket::parse(datagram) else {
            return Ok(());
        };
        self.depacketizer.handle_rtp(&packet);
        while let Some(au) = self.depacketizer.poll_access_unit() {
            if let Some(publisher) = self.publisher.as_mut() {
                publisher
                    .send_video(SimulcastLayer::Hd720, au.timestamp, &au.data)
                    .await
                    .map_err(|e| format!("send video: {e}"))?;
                self.counters.out_video.inc();
            }
            // The smaller layers are made from the same access unit: it
            // moves to the layer thread, no copy.
            if let Some(l) = &self.layers {
                l.push(au.timestamp, au.data, &self.ctx.metrics);
            }
        }
        Ok(())
    }

    /// Leaves the meeting and takes the agent's legs out of the conference.
    async fn teardown(mut self) {
        let ctx = self.ctx;
        for (_, n) in self.natives.drain() {
            remove_native(ctx, n).await;
        }
        if let Some(link) = self.link.take() {
            remove_leg(ctx, &link).await;
        }
        if let Some(p) = self.publisher.take() {
            let _ = p.close().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.connector.leave()).await;
    }
}

/// The 360p and 180p layers, made on a thread of their own from the link's
/// view (decoded once): media threads never run on the async runtime.
struct LayerThread {
    input: std::sync::mpsc::SyncSender<LayerInput>,
}

enum LayerInput {
    Picture(MediaTime, Vec<u8>),
    Keyframes,
}

impl LayerThread {
    fn start(
        conference: &str,
        out: mpsc::Sender<(SimulcastLayer, MediaTime, Vec<u8>)>,
    ) -> Option<LayerThread> {
        let (input, rx) = std::sync::mpsc::sync_channel::<LayerInput>(8);
        let mut encoder = SimulcastEncoder::new(SimulcastConfig::default()).ok()?;
        // The high layer is the node's own encoding of the view.
        encoder.set_layer_active(SimulcastLayer::Hd720, false);
        let mut decoder = VideoDecoder::new().ok()?;
        std::thread::Builder::new()
            .name(format!("cascade-{conference}"))
            .spawn(move || {
                while let Ok(msg) = rx.recv() {
                    match msg {
                        LayerInput::Keyframes => {
                            encoder.request_keyframe(SimulcastLayer::Sd360);
                            encoder.request_keyframe(SimulcastLayer::Low180);
                        }
                        LayerInput::Picture(ts, au) => {
                            let Ok(Some(picture)) = decoder.decode(&au) else {
                                continue;
                            };
                            let Ok(layers) = encoder.tick(&picture) else {
                                continue;
                            };
                            for l in layers {
                                if l.encoded.annexb.is_empty() {
                                    continue;
                                }
                                if out.blocking_send((l.layer, ts, l.encoded.annexb)).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
            })
            .ok()?;
        Some(LayerThread { input })
    }

    /// A picture of the view; dropped (and counted) when the thread lags.
    fn push(&self, ts: MediaTime, au: Vec<u8>, metrics: &Metrics) {
        if self.input.try_send(LayerInput::Picture(ts, au)).is_err() {
            metrics
                .cascade
                .dropped
                .with_label_values(&["layers_busy"])
                .inc();
        }
    }

    fn request_keyframes(&self) {
        let _ = self.input.try_send(LayerInput::Keyframes);
    }
}

fn candidate_label(kind: CandidateKind) -> &'static str {
    match kind {
        CandidateKind::Host => "host",
        CandidateKind::ServerReflexive => "srflx",
        CandidateKind::PeerReflexive => "prflx",
        CandidateKind::Relay => "relay",
        CandidateKind::Unknown => "unknown",
    }
}

async fn remove_native(ctx: &AgentContext, n: Native) {
    n.forward.abort();
    n.feedback.abort();
    let _ = n.session.close().await;
    remove_leg(ctx, &n.leg).await;
}

async fn remove_leg(ctx: &AgentContext, leg: &InternalLeg) {
    let _ = ctx
        .commands
        .send(ConferenceCommand::RemoveLeg {
            participant: leg.participant,
        })
        .await;
}

/// Adds an internal leg to the conference: loopback sockets on our side, a
/// port pair from the node's ranges on the conference's, and the same
/// offer/answer a room system's INVITE goes through.
async fn add_internal_leg(
    ctx: &AgentContext,
    name: &str,
    side: LegSide,
) -> Result<InternalLeg, String> {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let audio_socket = UdpSocket::bind((lo, 0)).await.map_err(|e| e.to_string())?;
    let video_socket = UdpSocket::bind((lo, 0)).await.map_err(|e| e.to_string())?;
    let (ap, vp) = (
        audio_socket.local_addr().map_err(|e| e.to_string())?.port(),
        video_socket.local_addr().map_err(|e| e.to_string())?.port(),
    );
    let conf_audio = ctx
        .ports
        .allocate(ctx.settings.audio_dscp)
        .ok_or("audio port range exhausted")?;
    let Some(conf_video) = ctx.video_ports.allocate(ctx.settings.video_dscp) else {
        ctx.ports.release(conf_audio.port);
        return Err("video port range exhausted".into());
    };
    let conf_audio_addr = conf_audio.rtp.local_addr().map_err(|e| e.to_string())?;
    let conf_video_addr = conf_video.rtp.local_addr().map_err(|e| e.to_string())?;
    // What we offer, from the internal side: a link only receives, a
    // native publisher only sends.
    let direction = match side {
        LegSide::Link => "recvonly",
        LegSide::Remote => "sendonly",
        LegSide::Local => "sendrecv",
    };
    let offer = format!(
        "v=0\r\no=tandem-cascade 1 1 IN IP4 127.0.0.1\r\ns=cascade\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {ap} RTP/AVP {OPUS_PT}\r\na=rtpmap:{OPUS_PT} opus/48000/2\r\n\
         a=fmtp:{OPUS_PT} useinbandfec=1\r\na=rtcp-mux\r\na={direction}\r\n\
         m=video {vp} RTP/AVP {H264_PT}\r\nb=AS:2500\r\na=rtpmap:{H264_PT} H264/90000\r\n\
         a=fmtp:{H264_PT} profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1\r\n\
         a=rtcp-fb:{H264_PT} nack pli\r\na=rtcp-fb:{H264_PT} ccm fir\r\na=rtcp-mux\r\na={direction}\r\n"
    );
    let release = |why: String| {
        ctx.ports.release(conf_audio.port);
        ctx.video_ports.release(conf_video.port);
        why
    };
    let parsed = SessionDescription::parse(&offer).map_err(|e| release(format!("offer: {e}")))?;
    let local = LocalMedia {
        addr: conf_audio_addr.ip(),
        audio_port: conf_audio.port,
        codecs: vec![AudioCodec::Opus],
        ptime: 20,
        video_port: Some(conf_video.port),
    };
    let mut sdp = SdpSession::new(0);
    let (_, negotiated) = sdp
        .answer(&parsed, &local)
        .map_err(|e| release(format!("answer: {e}")))?;
    let media = negotiated.ok_or_else(|| release("no audio in the internal offer".into()))?;
    let stream = sdp.video().cloned();
    let participant = ParticipantId(NEXT_INTERNAL.fetch_add(1, Ordering::Relaxed));
    let video = match stream {
        Some(s) => Some((s, conf_video)),
        None => {
            ctx.video_ports.release(conf_video.port);
            None
        }
    };
    let has_video = video.is_some();
    let setup = LegSetup {
        participant,
        name: name.to_owned(),
        call_id: format!("cascade-{}-{}", ctx.conference, participant.0),
        signalling: "cascade",
        media,
        sockets: conf_audio,
        video,
        side,
    };
    ctx.commands
        .send(ConferenceCommand::AddLeg(Box::new(setup)))
        .await
        .map_err(|_| "conference ended".to_string())?;
    Ok(InternalLeg {
        participant,
        audio: Arc::new(audio_socket),
        video: Arc::new(video_socket),
        conf_audio: conf_audio_addr,
        conf_video: has_video.then_some(conf_video_addr),
    })
}
