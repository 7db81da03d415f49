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
//! - presentations go both ways (see [`content`]): a room system's slides
//!   are published as a screen share of their own while it holds the
//!   floor, and a native screen share is presented to the room systems.
//!
//! If the meeting session is lost (Janus restarts) or WebRTC fails, the
//! agent removes its legs, waits (1 s, doubling to 4 s; back to 1 s after a
//! session that connected) and joins again;
//! room systems stay in their calls throughout.

mod content;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use prometheus::IntCounter;
use tandem_cascade::agent::{
    CandidateKind, IceServer, LayerCounters, PublishSession, ReceivedCodec, ReceivedPacket,
    SessionConfig, SubscribeSession, TurnCredential,
};
use tandem_cascade::connector::{
    MediaKind, PublisherId, RemotePublisher, StreamRequest, SubscriptionId,
};
use tandem_cascade::janus::{JanusConfig, JanusConnector};
use tandem_cascade::{IcePolicy, MeetingConnector, MeetingEvent, RoomId};
use tandem_mixer::ParticipantId;
use tandem_mixer::video::codec::VideoDecoder;
use tandem_mixer::video::{
    Layout, LayoutChoice, SimulcastConfig, SimulcastEncoder, SimulcastLayer,
};
use tandem_proto::rtp::MediaTime;
use tandem_proto::rtp::h264::H264Depacketizer;
use tandem_proto::rtp::rtcp::RtcpPacket;
use tandem_proto::rtp::{RtpHeader, RtpPacket, Ssrc, is_rtcp, rtcp};
use tandem_proto::sdp::{AudioCodec, LocalMedia, SdpSession, SessionDescription};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::conference::{
    CascadeSnapshot, ConferenceCommand, ConferenceSnapshot, LegSetup, LegSide, NativeSnapshot,
};
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
#[derive(Clone)]
pub struct CascadeSettings {
    pub janus: JanusConfig,
    pub session: SessionConfig,
    pub native_speakers: usize,
    pub native_audio: usize,
    /// Room-system speakers published as people of their own (1: one
    /// publication, the active speaker and the mix).
    pub publish_speakers: usize,
    pub display_name: String,
    pub audio_dscp: u8,
    pub video_dscp: u8,
}

impl CascadeSettings {
    /// The settings every agent shares; the meeting server's URL is each
    /// binding's (see [`crate::bindings`]).
    pub fn from_config(c: &CascadeConfig, audio_dscp: u8, video_dscp: u8) -> Self {
        let mut janus = JanusConfig::new(c.janus_url.clone().unwrap_or_default());
        janus.create_room = c.create_room;
        janus.admin_key = c.admin_key.clone();
        janus.admin_url = c.janus_admin_url.clone();
        janus.admin_secret = c.janus_admin_secret.clone();
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
        CascadeSettings {
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
            native_audio: c.native_audio.max(c.native_speakers),
            publish_speakers: c.publish_speakers.max(1),
            display_name: c.display_name.clone(),
            audio_dscp,
            video_dscp,
        }
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
    /// The conference's published state: who is talking.
    pub snapshot: watch::Receiver<ConferenceSnapshot>,
    /// The node's floor control server: a native screen share takes the
    /// floor through it.
    pub bfcp: Option<Arc<crate::bfcp::Bfcp>>,
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
    // The conference may go on without a meeting (unbound by the API).
    publish_state(
        &ctx,
        &CascadeSnapshot {
            state: "off",
            rejoins: state.rejoins,
            ..Default::default()
        },
    );
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

/// A native publisher in the conference: always heard; shown (its video
/// subscribed and in the layouts) while among the `native_speakers` most
/// recent talkers.
struct Native {
    leg: InternalLeg,
    name: String,
    session: SubscribeSession,
    subscription: SubscriptionId,
    /// Its video in our subscription, and whether it comes as simulcast.
    video_mid: Option<String>,
    simulcast: bool,
    /// The layer asked of the meeting server (`None`: its default).
    layer: Option<SimulcastLayer>,
    shown: bool,
    talking: bool,
    last_talk: Option<Instant>,
    /// Join order: ties among talkers go to the earlier.
    seq: u64,
    /// The SSRC its video reaches the conference with (for TMMBN).
    video_ssrc: Option<u32>,
    forward: JoinHandle<()>,
    /// Reads the conference's RTCP for this leg: keyframe requests go to
    /// the publisher (PLI through the meeting server), bitrate limits
    /// (TMMBR) pick the simulcast layer the meeting server sends us.
    feedback: JoinHandle<()>,
}

/// What the conference asked of a native publisher's video.
enum Feedback {
    Keyframe,
    /// TMMBR from `requester` (the conference's SSRC on this leg).
    Limit {
        requester: u32,
        bitrate_bps: u64,
    },
}

/// The layer that fits a bitrate limit, as a room system would choose its
/// resolution (720p from 1 Mbit/s, 360p from 400 kbit/s).
fn layer_for_limit(bitrate_bps: u64) -> SimulcastLayer {
    match bitrate_bps {
        b if b >= 1_000_000 => SimulcastLayer::Hd720,
        b if b >= 400_000 => SimulcastLayer::Sd360,
        _ => SimulcastLayer::Low180,
    }
}

pub fn layer_label(layer: SimulcastLayer) -> &'static str {
    match layer {
        SimulcastLayer::Hd720 => "720p",
        SimulcastLayer::Sd360 => "360p",
        SimulcastLayer::Low180 => "180p",
    }
}

const LAYERS: [SimulcastLayer; 3] = [
    SimulcastLayer::Hd720,
    SimulcastLayer::Sd360,
    SimulcastLayer::Low180,
];

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
    next_seq: u64,
    packets_tx: mpsc::Sender<(PublisherId, ReceivedPacket)>,
    packets_rx: mpsc::Receiver<(PublisherId, ReceivedPacket)>,
    feedback_tx: mpsc::Sender<(PublisherId, Feedback)>,
    feedback_rx: mpsc::Receiver<(PublisherId, Feedback)>,
    layers: Option<LayerThread>,
    layers_rx: mpsc::Receiver<(SimulcastLayer, MediaTime, Vec<u8>)>,
    /// The low layers being encoded (the high one always is: it is the
    /// node's own view).
    active_layers: Vec<SimulcastLayer>,
    depacketizer: H264Depacketizer,
    send_buf: Vec<u8>,
    /// `tandem_cascade_packets_total`, resolved once (not per packet).
    counters: LinkCounters,
    /// Last sequence number per inbound SSRC, for loss.
    in_seq: HashMap<u32, u16>,
    /// Per-layer and audio counters at the last sample, for the deltas.
    sampled_layers: [LayerCounters; 3],
    sampled_audio: LayerCounters,
    /// What the meeting server had lost of ours at the last look.
    server_lost: u64,
    admin_failures: u32,
    /// Publishers of the 2nd, 3rd… room-system speakers (`publish_speakers`).
    speakers: Vec<SpeakerPublisher>,
    /// The main publication's name, when it is a speaker's.
    main_name: Option<String>,
    own_publishers: OwnPublishers,
    /// A room system's presentation, published into the meeting.
    content_out: Option<content::ContentOut>,
    /// The native screen share presented to the room systems.
    share: Option<(PublisherId, content::NativeShare)>,
}

struct LinkCounters {
    in_audio: IntCounter,
    in_video: IntCounter,
    out_audio: IntCounter,
    out_video: IntCounter,
    in_audio_bytes: IntCounter,
    in_video_bytes: IntCounter,
    lost_in: IntCounter,
}

impl<'a> Session<'a> {
    fn new(ctx: &'a AgentContext) -> Self {
        let (packets_tx, packets_rx) = mpsc::channel(4096);
        let (feedback_tx, feedback_rx) = mpsc::channel(64);
        let (layers_tx, layers_rx) = mpsc::channel(32);
        let layers = LayerThread::start(&ctx.conference, layers_tx);
        let m = &ctx.metrics.cascade;
        Session {
            ctx,
            connector: JanusConnector::new(ctx.settings.janus.clone()),
            publisher: None,
            link: None,
            natives: HashMap::new(),
            known: Vec::new(),
            own_id: None,
            next_seq: 0,
            packets_tx,
            packets_rx,
            feedback_tx,
            feedback_rx,
            layers,
            layers_rx,
            active_layers: vec![SimulcastLayer::Sd360, SimulcastLayer::Low180],
            depacketizer: H264Depacketizer::new(),
            send_buf: Vec::with_capacity(1500),
            counters: {
                let c = |d: &str, k: &str| m.packets.with_label_values(&[d, k]);
                let b = |d: &str, k: &str| m.bytes.with_label_values(&[d, k]);
                LinkCounters {
                    in_audio: c("in", "audio"),
                    in_video: c("in", "video"),
                    out_audio: c("out", "audio"),
                    out_video: c("out", "video"),
                    in_audio_bytes: b("in", "audio"),
                    in_video_bytes: b("in", "video"),
                    lost_in: m.lost.with_label_values(&["in"]),
                }
            },
            in_seq: HashMap::new(),
            sampled_layers: [LayerCounters::default(); 3],
            sampled_audio: LayerCounters::default(),
            server_lost: 0,
            admin_failures: 0,
            speakers: Vec::new(),
            main_name: None,
            own_publishers: OwnPublishers::default(),
            content_out: None,
            share: None,
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
        self.publisher = Some(publish(&mut self.connector, ctx).await?);
        info!(conference = %ctx.conference, room = ctx.room, "cascade published into the meeting");

        // The link shows the local active speaker, full frame.
        let link = add_link_view(ctx, &ctx.settings.display_name, 0).await?;
        let (link_audio, link_video) = (link.audio.clone(), link.video.clone());
        self.link = Some(link);
        state.state = "connected";
        publish_state(ctx, state);

        self.known = joined.publishers;
        self.subscribe_missing(state).await?;
        self.follow_share(state).await?;
        self.follow_content(&ctx.snapshot.clone(), state).await;

        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        let mut link_keyframes = tokio::time::interval(LINK_KEYFRAME_EVERY);
        let mut stats = tokio::time::interval(STATS_EVERY);
        let link_conf_video = self.link.as_ref().and_then(|l| l.conf_video);
        let mut speaking = ctx.snapshot.clone();
        let mut conference_alive = true;
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
                        self.follow_share(state).await?;
                    }
                    Some(MeetingEvent::PublisherLeft(id)) => {
                        self.known.retain(|k| k.id != id);
                        if let Some(n) = self.natives.remove(&id) {
                            remove_native(ctx, n).await;
                        }
                        self.subscribe_missing(state).await?;
                        self.follow_share(state).await?;
                    }
                    Some(MeetingEvent::Talking { publisher, talking }) => {
                        if let Some(n) = self.natives.get_mut(&publisher) {
                            n.talking = talking;
                            if talking {
                                n.last_talk = Some(Instant::now());
                            }
                            self.rerank(state).await?;
                        }
                    }
                    Some(MeetingEvent::HungUp { subscription: None, reason }) => {
                        return Err(format!("publisher hung up: {reason}"));
                    }
                    Some(_) => {}
                },
                r = speaking.changed(), if conference_alive => {
                    if r.is_err() {
                        conference_alive = false;
                        continue;
                    }
                    self.follow_local_speakers(&speaking).await?;
                    self.follow_content(&speaking, state).await;
                    let (any, changed) = self.heard_talking(&speaking);
                    if any {
                        self.rerank(state).await?;
                    }
                    if changed {
                        self.describe_natives(state);
                        publish_state(ctx, state);
                    }
                }
                Some((id, packet)) = self.packets_rx.recv() => self.forward_native(id, &packet).await,
                Some((layer, ts, data)) = self.layers_rx.recv() => {
                    if let Some(publisher) = self.publisher.as_mut() {
                        publisher
                            .send_video(layer, ts, &data)
                            .await
                            .map_err(|e| format!("send video: {e}"))?;
                        self.counters.out_video.inc();
                    }
                }
                Some((id, fb)) = self.feedback_rx.recv() => self.handle_feedback(id, fb, state).await?,
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
                _ = stats.tick() => {
                    self.sample_stats(state).await;
                    self.follow_server(state).await;
                    publish_state(ctx, state);
                }
                _ = keepalive.tick() => {
                    self.connector.keepalive().await.map_err(|e| format!("keepalive: {e}"))?;
                }
            }
        }
    }

    /// With `publish_speakers` > 1: the main publication takes the active
    /// room-system speaker's name, and the next speakers get publications
    /// of their own (as many as there are room systems to show).
    async fn follow_local_speakers(
        &mut self,
        snapshot: &watch::Receiver<ConferenceSnapshot>,
    ) -> Result<(), String> {
        let k = self.ctx.settings.publish_speakers;
        if k <= 1 {
            return Ok(());
        }
        let (first, locals) = {
            let snap = snapshot.borrow();
            (
                snap.local_speakers.first().cloned(),
                snap.local_speakers.len(),
            )
        };
        if first.is_some() && first != self.main_name {
            if let Some(name) = &first {
                self.connector
                    .rename(name)
                    .await
                    .map_err(|e| format!("rename: {e}"))?;
            }
            self.main_name = first;
        }
        let want = (k - 1).min(locals.saturating_sub(1));
        while self.speakers.len() < want {
            let rank = self.speakers.len() + 1;
            self.speakers.push(SpeakerPublisher::start(
                self.ctx.clone(),
                rank,
                self.own_publishers.clone(),
            ));
        }
        while self.speakers.len() > want {
            if let Some(p) = self.speakers.pop() {
                p.stop().await;
            }
        }
        Ok(())
    }

    /// Marks the natives the conference hears talking: whether any is,
    /// and whether who talks changed.
    fn heard_talking(&mut self, snapshot: &watch::Receiver<ConferenceSnapshot>) -> (bool, bool) {
        let snap = snapshot.borrow();
        let now = Instant::now();
        let mut any = false;
        let mut changed = false;
        for n in self.natives.values_mut() {
            let id = n.leg.participant.0.to_string();
            let talking = snap.participants.iter().any(|p| p.id == id && p.speaking);
            if talking {
                n.last_talk = Some(now);
                any = true;
            }
            changed |= n.talking != talking;
            n.talking = talking;
        }
        (any, changed)
    }

    /// Shows the `native_speakers` most recent talkers (join order among
    /// those who have not talked) and hides the others: their video is
    /// not sent to us and they leave the layouts; they stay heard.
    async fn rerank(&mut self, state: &mut CascadeSnapshot) -> Result<(), String> {
        let mut order: Vec<(Option<Instant>, u64, PublisherId)> = self
            .natives
            .iter()
            .map(|(id, n)| (n.last_talk, n.seq, *id))
            .collect();
        // Most recent talk first; never-talked last, by join order.
        order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let shown: Vec<PublisherId> = order
            .iter()
            .take(self.ctx.settings.native_speakers)
            .map(|o| o.2)
            .collect();
        let mut changed = false;
        for (id, n) in self.natives.iter_mut() {
            let want = shown.contains(id);
            if n.shown == want {
                continue;
            }
            changed = true;
            n.shown = want;
            if let Some(mid) = &n.video_mid {
                self.connector
                    .set_stream_sending(n.subscription, mid, want)
                    .await
                    .map_err(|e| format!("configure: {e}"))?;
            }
            let _ = self
                .ctx
                .commands
                .send(ConferenceCommand::ShowVideo {
                    participant: n.leg.participant,
                    shown: want,
                })
                .await;
            if want {
                // Its first picture is a keyframe.
                let _ = n.session.request_keyframe().await;
            }
            info!(conference = %self.ctx.conference, name = %n.name, shown = want, "native participant's video");
        }
        if changed {
            self.ctx.metrics.cascade.native_switches.inc();
            self.describe_natives(state);
            publish_state(self.ctx, state);
        }
        Ok(())
    }

    /// Publishes a room system's presentation into the meeting while one
    /// holds the floor (not the native share we present ourselves).
    async fn follow_content(
        &mut self,
        snapshot: &watch::Receiver<ConferenceSnapshot>,
        state: &mut CascadeSnapshot,
    ) {
        let presenter = snapshot.borrow().content.presenter.clone();
        let ours = self
            .share
            .as_ref()
            .map(|(_, s)| s.participant.0.to_string());
        let want = presenter.is_some() && presenter != ours;
        // A publication that ended by itself (the meeting server lost it)
        // is started again.
        if self.content_out.as_ref().is_some_and(|c| c.finished())
            && let Some(c) = self.content_out.take()
        {
            c.stop().await;
        }
        match (want, self.content_out.is_some()) {
            (true, false) => {
                self.content_out = Some(content::ContentOut::start(
                    self.ctx.clone(),
                    self.own_publishers.clone(),
                ));
            }
            (false, true) => {
                if let Some(c) = self.content_out.take() {
                    c.stop().await;
                }
            }
            _ => {}
        }
        if state.content.publishing != want {
            state.content.publishing = want;
            publish_state(self.ctx, state);
        }
    }

    /// Presents the meeting's screen share (the most recent) to the room
    /// systems, and stops when it goes.
    async fn follow_share(&mut self, state: &mut CascadeSnapshot) -> Result<(), String> {
        let ctx = self.ctx;
        // Without a floor control server (content off) nobody presents.
        if ctx.bfcp.is_none() {
            return Ok(());
        }
        let want = content::screen_share(&self.known, &self.own_publishers, self.own_id).cloned();
        if self.share.as_ref().map(|(id, _)| *id) == want.as_ref().map(|p| p.id) {
            return Ok(());
        }
        if let Some((_, share)) = self.share.take() {
            info!(conference = %ctx.conference, name = %share.name, "native screen share stopped");
            share.stop().await;
        }
        state.content.native_share = None;
        if let Some(p) = want {
            let video = p
                .streams
                .iter()
                .find(|s| s.kind == MediaKind::Video && !s.disabled)
                .map(|s| s.mid.clone());
            let name = p
                .display
                .clone()
                .unwrap_or_else(|| format!("Meeting screen share {}", p.id.0));
            let offer = self
                .connector
                .subscribe(&[StreamRequest {
                    publisher: p.id,
                    mid: video,
                }])
                .await
                .map_err(|e| format!("subscribe to a screen share: {e}"))?;
            let (session, answer) = SubscribeSession::answer(
                &ctx.settings.session,
                SystemTime::now(),
                &offer.offer,
                1024,
            )
            .await
            .map_err(|e| format!("screen share session: {e}"))?;
            self.connector
                .start(offer.id, answer)
                .await
                .map_err(|e| format!("start: {e}"))?;
            match content::NativeShare::start(ctx.clone(), name.clone(), session).await {
                Ok(share) => {
                    state.content.native_share = Some(name);
                    self.share = Some((p.id, share));
                }
                Err(e) => {
                    warn!(conference = %ctx.conference, error = %e, "native screen share not presented")
                }
            }
        }
        publish_state(ctx, state);
        Ok(())
    }

    fn describe_natives(&self, state: &mut CascadeSnapshot) {
        let mut list: Vec<&Native> = self.natives.values().collect();
        list.sort_by_key(|n| n.seq);
        state.native_participants = list.len();
        state.natives = list
            .into_iter()
            .map(|n| NativeSnapshot {
                name: n.name.clone(),
                participant: n.leg.participant.0.to_string(),
                shown: n.shown,
                talking: n.talking,
                layer: n.shown.then(|| n.layer.map(layer_label)).flatten(),
            })
            .collect();
    }

    async fn handle_feedback(
        &mut self,
        id: PublisherId,
        fb: Feedback,
        state: &mut CascadeSnapshot,
    ) -> Result<(), String> {
        let Some(n) = self.natives.get_mut(&id) else {
            return Ok(());
        };
        match fb {
            Feedback::Keyframe => {
                let asked = n.session.request_keyframe().await;
                tracing::debug!(
                    publisher = id.0,
                    asked,
                    "keyframe requested from a native publisher"
                );
                self.ctx.metrics.cascade.keyframe_requests.inc();
            }
            Feedback::Limit {
                requester,
                bitrate_bps,
            } => {
                let (Some(mid), true) = (n.video_mid.clone(), n.simulcast) else {
                    return Ok(());
                };
                let layer = layer_for_limit(bitrate_bps);
                if n.layer != Some(layer) {
                    self.connector
                        .switch_layer(n.subscription, &mid, layer)
                        .await
                        .map_err(|e| format!("switch layer: {e}"))?;
                    info!(conference = %self.ctx.conference, name = %n.name, layer = layer_label(layer), "native participant's layer");
                    n.layer = Some(layer);
                    self.ctx
                        .metrics
                        .cascade
                        .layer_switches
                        .with_label_values(&[layer_label(layer)])
                        .inc();
                }
                // Confirm (TMMBN): the limit is applied upstream.
                if let (Some(dest), Some(ssrc)) = (n.leg.conf_video, n.video_ssrc) {
                    let mut buf = Vec::with_capacity(20);
                    rtcp::write_tmmbn(&mut buf, Ssrc(ssrc), &[(Ssrc(requester), bitrate_bps, 40)]);
                    let _ = n.leg.video.send_to(&buf, dest).await;
                }
                self.describe_natives(state);
                publish_state(self.ctx, state);
            }
        }
        Ok(())
    }

    /// The link's candidate pair and RTT, and what went out per layer.
    async fn sample_stats(&mut self, state: &mut CascadeSnapshot) {
        let Some(publisher) = self.publisher.as_ref() else {
            return;
        };
        let m = &self.ctx.metrics.cascade;
        for (i, layer) in LAYERS.into_iter().enumerate() {
            let now = publisher.layer_counters(layer);
            let last = self.sampled_layers[i];
            let label = layer_label(layer);
            m.layer_frames
                .with_label_values(&[label])
                .inc_by(now.frames.saturating_sub(last.frames));
            let bytes = now.bytes.saturating_sub(last.bytes);
            m.layer_bytes.with_label_values(&[label]).inc_by(bytes);
            m.bytes.with_label_values(&["out", "video"]).inc_by(bytes);
            self.sampled_layers[i] = now;
        }
        let audio = publisher.audio_counters();
        m.bytes
            .with_label_values(&["out", "audio"])
            .inc_by(audio.bytes.saturating_sub(self.sampled_audio.bytes));
        self.sampled_audio = audio;
        let Some(pair) = publisher.stats().await.selected_pair else {
            return;
        };
        let candidate = candidate_label(pair.local);
        if state.candidate != Some(candidate) {
            m.connections.with_label_values(&[candidate]).inc();
        }
        state.candidate = Some(candidate);
        state.rtt_ms = pair.rtt.map(|d| d.as_secs_f64() * 1000.0);
        if let Some(rtt) = pair.rtt {
            m.rtt.observe(rtt.as_secs_f64());
        }
    }

    /// What the meeting server forwards of ours: layers nobody receives
    /// are not encoded. Its view of our loss, too.
    async fn follow_server(&mut self, state: &mut CascadeSnapshot) {
        let view = match self.connector.server_view().await {
            Ok(Some(v)) => v,
            Ok(None) => {
                // The server cannot tell: every layer is sent.
                self.set_active_layers(vec![SimulcastLayer::Sd360, SimulcastLayer::Low180], state);
                return;
            }
            Err(e) => {
                // Keep every layer while the server cannot tell.
                self.admin_failures += 1;
                if self.admin_failures == 1 {
                    warn!(conference = %self.ctx.conference, error = %e, "meeting server admin API; sending every layer");
                }
                self.ctx
                    .metrics
                    .cascade
                    .dropped
                    .with_label_values(&["admin_api"])
                    .inc();
                self.set_active_layers(vec![SimulcastLayer::Sd360, SimulcastLayer::Low180], state);
                return;
            }
        };
        self.admin_failures = 0;
        let lost = view.lost.saturating_sub(self.server_lost);
        self.server_lost = self.server_lost.max(view.lost);
        self.ctx
            .metrics
            .cascade
            .lost
            .with_label_values(&["out"])
            .inc_by(lost);
        state.lost_out = self.server_lost;
        let active: Vec<SimulcastLayer> = [SimulcastLayer::Sd360, SimulcastLayer::Low180]
            .into_iter()
            .filter(|l| view.forwarded.contains(l))
            .collect();
        self.set_active_layers(active, state);
    }

    fn set_active_layers(&mut self, active: Vec<SimulcastLayer>, state: &mut CascadeSnapshot) {
        if active != self.active_layers {
            info!(conference = %self.ctx.conference, layers = ?active.iter().map(|l| layer_label(*l)).collect::<Vec<_>>(), "simulcast layers encoded besides 720p");
            // Not taken (the thread's queue is full): again next time.
            if self.layers.as_ref().is_none_or(|l| l.set_active(&active)) {
                self.active_layers = active;
            }
        }
        state.layers_sent = std::iter::once(SimulcastLayer::Hd720)
            .chain(self.active_layers.iter().copied())
            .map(layer_label)
            .collect();
    }

    /// Subscribes to native publishers we do not carry yet, up to the limit.
    async fn subscribe_missing(&mut self, state: &mut CascadeSnapshot) -> Result<(), String> {
        let ctx = self.ctx;
        let wanted: Vec<RemotePublisher> = self
            .known
            .iter()
            .filter(|p| {
                Some(p.id) != self.own_id
                    && !p.streams.is_empty()
                    && !p.is_screen_share()
                    && !self.own_publishers.lock().is_ok_and(|o| o.contains(&p.id))
            })
            .take(ctx.settings.native_audio)
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
            let video_mid = offer
                .streams
                .iter()
                .find(|s| s.kind == MediaKind::Video)
                .map(|s| s.mid.clone());
            let simulcast = p
                .streams
                .iter()
                .any(|s| s.kind == MediaKind::Video && s.simulcast);
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
            // Shown only once ranked among the speakers (below).
            let leg = add_internal_leg(ctx, &name, LegSide::Remote, false)
                .await
                .map_err(|e| format!("remote leg: {e}"))?;
            if let Some(mid) = &video_mid {
                self.connector
                    .set_stream_sending(offer.id, mid, false)
                    .await
                    .map_err(|e| format!("configure: {e}"))?;
            }
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
            let feedback = spawn_feedback(leg.video.clone(), p.id, self.feedback_tx.clone());
            info!(conference = %ctx.conference, publisher = p.id.0, %name, "native publisher joins the conference");
            self.next_seq += 1;
            self.natives.insert(
                p.id,
                Native {
                    leg,
                    name,
                    session,
                    subscription: offer.id,
                    video_mid,
                    simulcast,
                    layer: None,
                    shown: false,
                    talking: p.talking.unwrap_or(false),
                    last_talk: None,
                    seq: self.next_seq,
                    video_ssrc: None,
                    forward,
                    feedback,
                },
            );
        }
        self.rerank(state).await?;
        self.describe_natives(state);
        publish_state(ctx, state);
        Ok(())
    }

    /// A native publisher's packet, into its leg.
    async fn forward_native(&mut self, id: PublisherId, p: &ReceivedPacket) {
        let Some(n) = self.natives.get_mut(&id) else {
            return;
        };
        let (socket, dest, pt, packets, bytes) = match p.codec {
            ReceivedCodec::Opus => (
                &n.leg.audio,
                Some(n.leg.conf_audio),
                OPUS_PT,
                &self.counters.in_audio,
                &self.counters.in_audio_bytes,
            ),
            ReceivedCodec::H264 => {
                n.video_ssrc = Some(p.ssrc);
                (
                    &n.leg.video,
                    n.leg.conf_video,
                    H264_PT,
                    &self.counters.in_video,
                    &self.counters.in_video_bytes,
                )
            }
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
        // Loss: gaps in each stream's sequence numbers (a jump of more
        // than a few seconds' packets is a new stream, not loss).
        if let Some(last) = self.in_seq.insert(p.ssrc, p.sequence) {
            let gap = p.sequence.wrapping_sub(last.wrapping_add(1));
            if gap > 0 && gap < 1000 {
                self.counters.lost_in.inc_by(u64::from(gap));
            }
        }
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
            packets.inc();
            bytes.inc_by(p.payload.len() as u64);
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
            if let Some(l) = &self.layers
                && !self.active_layers.is_empty()
            {
                l.push(au.timestamp, au.keyframe, au.data, &self.ctx.metrics);
            }
        }
        Ok(())
    }

    /// Leaves the meeting and takes the agent's legs out of the conference.
    async fn teardown(mut self) {
        let ctx = self.ctx;
        if let Some(c) = self.content_out.take() {
            c.stop().await;
        }
        if let Some((_, share)) = self.share.take() {
            share.stop().await;
        }
        for p in self.speakers.drain(..) {
            p.stop().await;
        }
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

/// Reads what the conference sends a native participant's leg (RTCP):
/// keyframe requests and bitrate limits, for the agent.
fn spawn_feedback(
    socket: Arc<UdpSocket>,
    id: PublisherId,
    tx: mpsc::Sender<(PublisherId, Feedback)>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        while let Ok((n, _)) = socket.recv_from(&mut buf).await {
            let Ok(packets) = rtcp::parse_compound(&buf[..n]) else {
                continue;
            };
            let mut out = Vec::new();
            if packets.iter().any(|p| p.is_pli() || p.is_fir()) {
                out.push(Feedback::Keyframe);
            }
            for p in &packets {
                if let RtcpPacket::TransportFeedback { sender_ssrc, .. } = p
                    && let Some(t) = p.tmmbr().first()
                {
                    out.push(Feedback::Limit {
                        requester: sender_ssrc.0,
                        bitrate_bps: t.bitrate_bps,
                    });
                }
            }
            for f in out {
                if tx.try_send((id, f)).is_err() && tx.is_closed() {
                    return;
                }
            }
        }
    })
}

/// The 360p and 180p layers, made on a thread of their own from the link's
/// view (decoded once, and only while one of them is wanted): media
/// threads never run on the async runtime.
struct LayerThread {
    input: std::sync::mpsc::SyncSender<LayerInput>,
}

enum LayerInput {
    Picture {
        ts: MediaTime,
        keyframe: bool,
        au: Vec<u8>,
    },
    Keyframes,
    Active(Vec<SimulcastLayer>),
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
                let mut active = vec![SimulcastLayer::Sd360, SimulcastLayer::Low180];
                // After a pause the decoder has lost its references.
                let mut need_keyframe = false;
                while let Ok(msg) = rx.recv() {
                    match msg {
                        LayerInput::Keyframes => {
                            for l in &active {
                                encoder.request_keyframe(*l);
                            }
                        }
                        LayerInput::Active(now) => {
                            for l in [SimulcastLayer::Sd360, SimulcastLayer::Low180] {
                                let on = now.contains(&l);
                                encoder.set_layer_active(l, on);
                                if on && !active.contains(&l) {
                                    encoder.request_keyframe(l);
                                }
                            }
                            if active.is_empty() && !now.is_empty() {
                                need_keyframe = true;
                            }
                            active = now;
                        }
                        LayerInput::Picture { ts, keyframe, au } => {
                            if active.is_empty() || (need_keyframe && !keyframe) {
                                continue;
                            }
                            need_keyframe = false;
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
    fn push(&self, ts: MediaTime, keyframe: bool, au: Vec<u8>, metrics: &Metrics) {
        if self
            .input
            .try_send(LayerInput::Picture { ts, keyframe, au })
            .is_err()
        {
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

    fn set_active(&self, layers: &[SimulcastLayer]) -> bool {
        self.input
            .try_send(LayerInput::Active(layers.to_vec()))
            .is_ok()
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
    shown: bool,
) -> Result<InternalLeg, String> {
    add_leg_ranked(ctx, name, side, shown, 0).await
}

/// Publishes into the meeting (joined already): offer, answer, media up.
async fn publish(
    connector: &mut JanusConnector,
    ctx: &AgentContext,
) -> Result<PublishSession, String> {
    let mut publisher = PublishSession::new(&ctx.settings.session, SystemTime::now())
        .await
        .map_err(|e| format!("publish session: {e}"))?;
    let offer = publisher
        .create_offer()
        .await
        .map_err(|e| format!("offer: {e}"))?;
    let answer = connector
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
    Ok(publisher)
}

/// A link leg with a full-frame (1x1) view of the `rank`-th local speaker
/// (0: the active one).
async fn add_link_view(ctx: &AgentContext, name: &str, rank: usize) -> Result<InternalLeg, String> {
    let link = add_leg_ranked(ctx, name, LegSide::Link, true, rank)
        .await
        .map_err(|e| format!("link leg: {e}"))?;
    let _ = ctx
        .commands
        .send(ConferenceCommand::SetLayout {
            participant: Some(link.participant),
            layout: LayoutChoice::Fixed(Layout::Grid1x1),
        })
        .await;
    Ok(link)
}

async fn add_leg_ranked(
    ctx: &AgentContext,
    name: &str,
    side: LegSide,
    shown: bool,
    link_rank: usize,
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
         a=rtcp-fb:{H264_PT} nack pli\r\na=rtcp-fb:{H264_PT} ccm fir\r\na=rtcp-fb:{H264_PT} ccm tmmbr\r\na=rtcp-mux\r\na={direction}\r\n"
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
        content: None,
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
        shown,
        link_rank,
        door: None,
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

/// One more room-system speaker as a publisher of its own (option
/// `publish_speakers`): a link leg that shows the `rank`-th local speaker,
/// published under that speaker's name, video only (the meeting hears
/// everyone in the main publication's mix). Runs until stopped or its
/// meeting session is lost.
/// The agent's own publications in the meeting (never subscribed to).
type OwnPublishers = Arc<std::sync::Mutex<std::collections::HashSet<PublisherId>>>;

struct SpeakerPublisher {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl SpeakerPublisher {
    fn start(ctx: AgentContext, rank: usize, own: OwnPublishers) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            if let Err(e) = speaker_publisher(&ctx, rank, stopped, own).await {
                warn!(conference = %ctx.conference, rank, error = %e, "speaker publisher ended");
            }
        });
        SpeakerPublisher { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(3), self.task).await;
    }
}

fn speaker_name(snapshot: &ConferenceSnapshot, rank: usize) -> String {
    snapshot
        .local_speakers
        .get(rank)
        .cloned()
        .unwrap_or_else(|| format!("Room system {}", rank + 1))
}

async fn speaker_publisher(
    ctx: &AgentContext,
    rank: usize,
    mut stopped: watch::Receiver<bool>,
    own: OwnPublishers,
) -> Result<(), String> {
    let mut names = ctx.snapshot.clone();
    let mut name = speaker_name(&names.borrow(), rank);
    let mut connector = JanusConnector::new(ctx.settings.janus.clone());
    let mut leg: Option<InternalLeg> = None;
    let result = async {
        let joined = connector
            .join(RoomId(ctx.room), &name)
            .await
            .map_err(|e| format!("join: {e}"))?;
        // Before it publishes: the agent must never take it for a native.
        if let Ok(mut own) = own.lock() {
            own.insert(joined.id);
        }
        let mut publisher = publish(&mut connector, ctx).await?;
        let l = add_link_view(ctx, &name, rank).await?;
        let (socket, conf_video) = (l.video.clone(), l.conf_video);
        leg = Some(l);
        info!(conference = %ctx.conference, rank, %name, "room-system speaker published on its own");
        let mut depacketizer = H264Depacketizer::new();
        let mut buf = vec![0u8; 2048];
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        let mut keyframes = tokio::time::interval(LINK_KEYFRAME_EVERY);
        let frames = ctx.metrics.cascade.packets.with_label_values(&["out", "video"]);
        loop {
            tokio::select! {
                _ = stopped.changed() => return Ok(()),
                r = names.changed() => {
                    if r.is_err() {
                        return Ok(());
                    }
                    let now = speaker_name(&names.borrow(), rank);
                    if now != name {
                        connector.rename(&now).await.map_err(|e| format!("rename: {e}"))?;
                        name = now;
                    }
                }
                ev = connector.next_event() => match ev {
                    None | Some(MeetingEvent::SessionLost) => return Err("meeting session lost".into()),
                    Some(MeetingEvent::RoomDestroyed) => return Err("room destroyed".into()),
                    Some(_) => {}
                },
                r = socket.recv_from(&mut buf) => {
                    let Ok((n, _)) = r else { continue };
                    if is_rtcp(&buf[..n]) {
                        continue;
                    }
                    let Ok(packet) = RtpPacket::parse(&buf[..n]) else { continue };
                    depacketizer.handle_rtp(&packet);
                    while let Some(au) = depacketizer.poll_access_unit() {
                        publisher
                            .send_video(SimulcastLayer::Hd720, au.timestamp, &au.data)
                            .await
                            .map_err(|e| format!("send video: {e}"))?;
                        frames.inc();
                    }
                }
                _ = keyframes.tick() => {
                    if let Some(dest) = conf_video {
                        let mut pli = Vec::with_capacity(12);
                        rtcp::write_pli(&mut pli, Ssrc(0), Ssrc(0));
                        let _ = socket.send_to(&pli, dest).await;
                    }
                }
                _ = keepalive.tick() => {
                    connector.keepalive().await.map_err(|e| format!("keepalive: {e}"))?;
                }
            }
        }
    }
    .await;
    if let Some(l) = leg {
        remove_leg(ctx, &l).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), connector.leave()).await;
    result
}
