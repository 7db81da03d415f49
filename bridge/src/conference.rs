//! One conference's media: a single task owns its legs' RTP state, decoders,
//! jitter buffers and the mixer, and runs the 20 ms audio tick. Signalling
//! and the API talk to it only through [`ConferenceCommand`]s; it reports back
//! through [`ConferenceEvent`]s and a published [`ConferenceSnapshot`].
//!
//! Per tick: each leg's jitter buffer gives a packet (or a loss, or nothing);
//! it is decoded (or concealed) to 48 kHz, pushed into the mixer; the mixer
//! returns one encoded payload per distinct output, which is sent to each of
//! its receivers with only the RTP header differing.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use tandem_mixer::ParticipantId;
use tandem_mixer::audio::codec::{self, AudioDecoder, CodecKind};
use tandem_mixer::audio::mix::{AudioMixer, MixerConfig, OutputFormat};
use tandem_mixer::video::LayoutChoice;
use tandem_proto::rtp::dtmf::DtmfDetector;
use tandem_proto::rtp::jitter::{JitterBuffer, Playout};
use tandem_proto::rtp::packet::{MediaTime, RtpHeader, RtpPacket, Ssrc};
use tandem_proto::rtp::rtcp;
use tandem_proto::rtp::stats::ReceiveStats;
use tandem_proto::sdp::{AudioCodec, Direction, NegotiatedAudio, VideoStream};

use crate::driver::net::{Delivery, MediaSockets, PortAllocator, spawn_datagram_reader};
use crate::ivr::{Door, DoorEvent, DoorKind, DoorOutcome, DoorSettings, Verdict};
use crate::metrics::{MediaCounters, Metrics};
use crate::rtcp_report;
pub use crate::video::VideoSettings;
use crate::video::{
    LegVideoSnapshot, VideoContext, VideoEngine, VideoInput, VideoLegSetup, VideoSnapshot,
};

/// 48 kHz mono, 20 ms.
const TICK: Duration = Duration::from_millis(20);
const FRAME_SAMPLES: usize = 960;
const RTCP_INTERVAL: Duration = Duration::from_secs(5);
const SNAPSHOT_EVERY_TICKS: u32 = 5;

pub struct LegSetup {
    pub participant: ParticipantId,
    pub name: String,
    pub call_id: String,
    pub signalling: &'static str,
    pub media: NegotiatedAudio,
    pub sockets: MediaSockets,
    /// The H.264 stream and its sockets (from the video port range).
    pub video: Option<(VideoStream, MediaSockets)>,
    pub side: LegSide,
    /// Whether it takes a place in the layouts (a native participant out
    /// of the top speakers does not).
    pub shown: bool,
    /// For a link: it shows the local speakers from this rank on (0: the
    /// active speaker).
    pub link_rank: usize,
    /// Held at the door (PIN entry, the lobby) before it is mixed and shown.
    pub door: Option<DoorSetup>,
}

/// A leg that starts at the door: not mixed, not shown, hearing the door's
/// prompts instead of the conference until it is admitted.
#[derive(Debug, Clone)]
pub struct DoorSetup {
    pub kind: DoorKind,
    pub settings: DoorSettings,
    /// The RTP streams it already has (a leg moved from the lobby), so
    /// the caller sees one stream continue rather than a new SSRC.
    pub rtp: Option<RtpOut>,
}

/// Where a leg's outgoing RTP stream stands.
#[derive(Debug, Clone)]
pub struct RtpOut {
    pub ssrc: u32,
    pub sequence: u16,
    pub timestamp: u32,
    /// The last key press seen coming in: the end packets of the `#` that
    /// closed the lobby entry arrive after the move and must not count again.
    pub dtmf: DtmfDetector,
}

/// A leg taken out of its conference with its sockets, to be added to
/// another (see [`ConferenceCommand::HandOver`]).
pub struct Detached {
    pub setup: Box<LegSetup>,
    pub rtp: RtpOut,
}

impl std::fmt::Debug for Detached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detached")
            .field("participant", &self.setup.participant)
            .field("call_id", &self.setup.call_id)
            .field("port", &self.setup.sockets.port)
            .finish_non_exhaustive()
    }
}

/// Which side of a cascade a leg is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LegSide {
    /// A room system on this node.
    #[default]
    Local,
    /// A native meeting's participant, brought in by the cascade agent: the
    /// link never carries it back.
    Remote,
    /// The cascade link itself: it hears and sees local people only, and is
    /// neither heard nor shown.
    Link,
}

pub enum ConferenceCommand {
    AddLeg(Box<LegSetup>),
    /// A re-INVITE changed codec, direction (hold) or address.
    UpdateMedia {
        participant: ParticipantId,
        media: NegotiatedAudio,
        /// The video stream after the exchange (`None`: declined or removed).
        video: Option<VideoStream>,
    },
    RemoveLeg {
        participant: ParticipantId,
    },
    Mute {
        participant: ParticipantId,
        muted: bool,
    },
    /// `participant: None` sets the conference default.
    SetLayout {
        participant: Option<ParticipantId>,
        layout: LayoutChoice,
    },
    /// A digit signalled out of band (SIP INFO).
    Dtmf {
        participant: ParticipantId,
        digit: char,
    },
    /// SIP INFO picture_fast_update from this participant (RFC 5168).
    VideoKeyframeRequest {
        participant: ParticipantId,
    },
    /// The cascade agent's state, for the API.
    CascadeState(CascadeSnapshot),
    /// Puts a participant into the layouts or takes it out (it stays heard).
    ShowVideo {
        participant: ParticipantId,
        shown: bool,
    },
    /// The conference ID a lobby caller entered cannot be joined.
    LobbyVerdict {
        participant: ParticipantId,
        verdict: Verdict,
    },
    /// Takes the leg out without closing its sockets or freeing its ports
    /// and hands it back as [`ConferenceEvent::HandedOver`] (a lobby caller
    /// moving to its conference: same dialog, same sockets).
    HandOver {
        participant: ParticipantId,
    },
    /// A span link's state and the people on its far side (`None`: the
    /// link is gone). See [`crate::span`].
    SpanLink {
        link: u64,
        state: Option<Box<crate::span::LinkSnapshot>>,
    },
    /// A span link's rule for the active speaker (`None`: withdrawn).
    SpanSpeaker {
        link: u64,
        rule: Option<SpeakerRule>,
    },
    /// Puts a span link's legs in the mixer's link group `group`: its
    /// out legs never hear its own in leg (see `AudioMixer::set_link_group`).
    LinkGroup {
        participant: ParticipantId,
        group: u32,
    },
    /// A new display name (a span leg now shows another person).
    Rename {
        participant: ParticipantId,
        name: String,
    },
    /// The leg's content channel (`a=content:slides`), from the video port
    /// range; a leg at the door gets it when admitted.
    AddContent {
        participant: ParticipantId,
        stream: VideoStream,
        sockets: MediaSockets,
    },
    /// A re-INVITE changed the content stream (`None`: removed).
    UpdateContent {
        participant: ParticipantId,
        stream: Option<VideoStream>,
    },
    /// Who holds the content floor now (see [`crate::bfcp`]).
    Floor {
        presenter: Option<ParticipantId>,
    },
}

/// How a spanned conference's active speaker is decided: once, by the
/// home, for the whole conference (see [`crate::span`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpeakerRule {
    /// A satellite follows the home: this leg is the active speaker
    /// (`Some(None)`: nobody), whatever its own mixer hears.
    pub follow: Option<Option<ParticipantId>>,
    /// When the mixer picks the first leg (a link's audio mix) the active
    /// speaker is the second (the leg showing that node's speaker).
    pub stand_in: Vec<(ParticipantId, ParticipantId)>,
}

#[derive(Debug)]
pub enum ConferenceEvent {
    /// No RTP from this leg for the configured timeout: signalling ends the call.
    MediaTimeout {
        call_id: String,
    },
    Dtmf {
        call_id: String,
        digit: char,
    },
    /// Ask this room system for a keyframe with SIP INFO (RFC 5168): it
    /// offered no RTCP feedback.
    PictureFastUpdate {
        call_id: String,
    },
    /// A lobby caller entered a conference ID.
    LobbyEntry {
        call_id: String,
        participant: ParticipantId,
        digits: String,
    },
    /// The door's goodbye has played: end the call with BYE.
    DoorHangup {
        call_id: String,
        outcome: DoorOutcome,
    },
    /// The leg asked for by [`ConferenceCommand::HandOver`].
    HandedOver {
        call_id: String,
        leg: Detached,
    },
    /// A span link arrived for this conference (this node is its home):
    /// signalling opens the conference (if it exists or may be created)
    /// and keeps it open until [`ConferenceEvent::SpanRelease`].
    SpanHold {
        conference: String,
        reply: tokio::sync::oneshot::Sender<Option<crate::registry::ConferenceHandle>>,
    },
    SpanRelease {
        conference: String,
    },
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ConferenceSnapshot {
    pub id: String,
    pub participants: Vec<ParticipantSnapshot>,
    pub active_speaker: Option<String>,
    pub layout: Option<String>,
    pub cascade: CascadeSnapshot,
    /// Room systems' names, most recent speaker first, as cascade links
    /// rank them.
    pub local_speakers: Vec<String>,
    /// Their participant IDs, in the same order (for span rosters).
    #[serde(skip)]
    pub local_speaker_ids: Vec<u64>,
    /// The speaker the mixer hears, before any span rule.
    #[serde(skip)]
    pub heard_speaker: Option<u64>,
    /// Links to other nodes when the conference spans nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span: Option<crate::span::SpanSnapshot>,
    /// The presentation: who holds the floor and what the relay carries.
    pub content: ContentState,
}

/// A conference's presentation, for the API.
#[derive(Debug, Clone, Serialize)]
pub struct ContentState {
    /// `idle`, or `presenting` while somebody holds the floor.
    pub floor: &'static str,
    /// The presenter's participant ID and name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presenter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presenter_name: Option<String>,
    /// The relay: channels, packets, bitrate.
    #[serde(flatten)]
    pub relay: crate::content::ContentSnapshot,
}

impl Default for ContentState {
    fn default() -> Self {
        ContentState {
            floor: "idle",
            presenter: None,
            presenter_name: None,
            relay: Default::default(),
        }
    }
}

/// Presentations across the cascade, for the API.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct CascadeContentSnapshot {
    /// A room system's presentation is published into the meeting (as the
    /// screen share `"<conference> content"`).
    pub publishing: bool,
    /// The meeting's screen share presented to the room systems, by its
    /// publisher's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub native_share: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct CascadeSnapshot {
    /// off, joining, connected, retrying.
    pub state: &'static str,
    /// Presentations across the cascade.
    pub content: CascadeContentSnapshot,
    /// The native meeting: server and room.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meeting: Option<String>,
    /// Native publishers brought into the conference.
    pub native_participants: usize,
    /// Rejoins after a lost meeting session or failed connection.
    pub rejoins: u64,
    /// The local candidate type the link's media flows on: host, srflx,
    /// prflx or relay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate: Option<&'static str>,
    /// Round-trip time to the meeting server's media, ms (ICE).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The native publishers: who is shown (the recent talkers) and at
    /// which simulcast layer the meeting server sends them.
    pub natives: Vec<NativeSnapshot>,
    /// The simulcast layers the link publishes (720p always; the smaller
    /// ones while the meeting server forwards them to someone).
    pub layers_sent: Vec<&'static str>,
    /// Packets of the link's the meeting server lost (when it tells).
    pub lost_out: u64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct NativeSnapshot {
    pub name: String,
    /// Its participant ID in the conference.
    pub participant: String,
    /// In the layouts (among the recent talkers).
    pub shown: bool,
    pub talking: bool,
    /// The simulcast layer asked of the meeting server for its pane.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParticipantSnapshot {
    pub id: String,
    pub name: String,
    /// `joined`, or at the door: `lobby` or `pin` (entering an ID or a
    /// PIN), `joining`, `leaving` (hearing the goodbye).
    pub state: &'static str,
    pub signalling: &'static str,
    pub audio_codec: &'static str,
    pub video: bool,
    /// Layout, resolution and counters of the video stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_stream: Option<LegVideoSnapshot>,
    pub speaking: bool,
    pub muted: bool,
    pub on_hold: bool,
    pub rtp_port: u16,
    pub remote: Option<String>,
    pub packets_in: u64,
    pub packets_out: u64,
    pub packets_lost: i64,
    pub jitter_ms: f64,
    /// The node a participant of a spanned conference is on, when not this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

pub fn codec_name(c: AudioCodec) -> &'static str {
    match c {
        AudioCodec::Opus => "opus",
        AudioCodec::G722 => "g722",
        AudioCodec::Pcmu => "pcmu",
        AudioCodec::Pcma => "pcma",
    }
}

fn codec_kind(c: AudioCodec) -> CodecKind {
    match c {
        AudioCodec::Opus => CodecKind::Opus,
        AudioCodec::G722 => CodecKind::G722,
        AudioCodec::Pcmu => CodecKind::Pcmu,
        AudioCodec::Pcma => CodecKind::Pcma,
    }
}

/// RTP clock rate as signalled (G.722 keeps 8000 for historical reasons, RFC 3551).
fn rtp_clock(c: AudioCodec) -> u32 {
    match c {
        AudioCodec::Opus => 48_000,
        _ => 8_000,
    }
}

struct Inbound {
    participant: ParticipantId,
    rtcp: bool,
    data: Vec<u8>,
    from: SocketAddr,
    at: Instant,
}

struct Leg {
    name: String,
    call_id: String,
    signalling: &'static str,
    media: NegotiatedAudio,
    port: u16,
    rtp: Arc<UdpSocket>,
    rtcp: Arc<UdpSocket>,
    receivers: Vec<JoinHandle<()>>,
    /// Where RTP really comes from (symmetric RTP); starts at the SDP address.
    remote: Option<SocketAddr>,
    remote_rtcp: Option<SocketAddr>,
    decoder: Box<dyn AudioDecoder>,
    jitter: JitterBuffer,
    pcm: VecDeque<i16>,
    stats: ReceiveStats,
    dtmf: DtmfDetector,
    ssrc: u32,
    out_seq: u16,
    out_ts: u32,
    out_packets: u64,
    out_octets: u64,
    in_packets: u64,
    last_rx: Instant,
    last_rtcp: Instant,
    last_sr: Option<(u32, Instant)>,
    muted: bool,
    /// Packets skipped since the last decode (see [`decode_next`]).
    undecoded: bool,
    vad_hangover: u8,
    timed_out: bool,
    lost_reported: i64,
    jb_reported: [u64; 4],
    marker_pending: bool,
    has_video: bool,
    /// In the layouts (see [`LegSetup::shown`]).
    shown: bool,
    side: LegSide,
    /// When this leg pressed `*`, for `*8`.
    star_at: Option<Instant>,
    /// At the door: not in the mixer nor the layouts yet.
    door: Option<Box<AtDoor>>,
}

/// A leg at the door: the door core, the leg's own encoder for its prompts
/// (a prompt playing to one leg is that leg's output), and the video it will
/// bring once admitted.
struct AtDoor {
    door: Door,
    encoder: Box<dyn tandem_mixer::audio::codec::AudioEncoder>,
    pcm: Vec<i16>,
    /// Samples per packet (ptime at 48 kHz).
    frame: usize,
    video: Option<(VideoStream, MediaSockets)>,
}

impl AtDoor {
    fn new(
        door: Door,
        media: &NegotiatedAudio,
        video: Option<(VideoStream, MediaSockets)>,
    ) -> Result<Self, tandem_mixer::CodecError> {
        Ok(AtDoor {
            door,
            encoder: codec::encoder(codec_kind(media.codec), media.ptime)?,
            pcm: Vec::with_capacity(FRAME_SAMPLES * 3),
            frame: media.ptime as usize * FRAME_SAMPLES / 20,
            video,
        })
    }
}

impl Leg {
    fn may_send(&self) -> bool {
        matches!(
            self.media.direction,
            Direction::SendRecv | Direction::SendOnly
        )
    }
    fn may_receive(&self) -> bool {
        matches!(
            self.media.direction,
            Direction::SendRecv | Direction::RecvOnly
        )
    }
}

pub struct ConferenceContext {
    pub id: String,
    pub metrics: Arc<Metrics>,
    pub ports: Arc<PortAllocator>,
    pub events: mpsc::Sender<ConferenceEvent>,
    pub mixed_speakers: usize,
    pub jitter_min: Duration,
    pub jitter_max: Duration,
    pub rtp_timeout: Duration,
    pub skip_silent_decode: bool,
    /// `None`: video is off (`[video] enabled = false`).
    pub video: Option<VideoSettings>,
    pub video_ports: Arc<PortAllocator>,
}

/// Starts the conference task; returns its command sender and snapshot feed.
pub fn spawn(
    ctx: ConferenceContext,
) -> (
    mpsc::Sender<ConferenceCommand>,
    watch::Receiver<ConferenceSnapshot>,
    JoinHandle<()>,
) {
    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    let (snap_tx, snap_rx) = watch::channel(ConferenceSnapshot {
        id: ctx.id.clone(),
        cascade: CascadeSnapshot {
            state: "off",
            ..Default::default()
        },
        ..Default::default()
    });
    let task = tokio::spawn(run(ctx, cmd_rx, snap_tx));
    (cmd_tx, snap_rx, task)
}

async fn run(
    ctx: ConferenceContext,
    mut commands: mpsc::Receiver<ConferenceCommand>,
    snapshot: watch::Sender<ConferenceSnapshot>,
) {
    let (in_tx, mut inbound) = mpsc::channel::<Inbound>(8192);
    let mut conf = Conference {
        mixer: AudioMixer::new(MixerConfig {
            max_mixed_speakers: ctx.mixed_speakers,
            ..MixerConfig::default()
        }),
        legs: HashMap::new(),
        counters: ctx.metrics.media_counters(),
        mixed: Vec::with_capacity(8),
        ctx,
        in_tx,
        ticks: 0,
        last_speaker: None,
        send_buf: Vec::with_capacity(1500),
        frame: Vec::with_capacity(FRAME_SAMPLES * 3),
        ssrc_seed: 0x5EED_u32,
        video: None,
        speaker_order: Vec::new(),
        cascade: CascadeSnapshot {
            state: "off",
            ..Default::default()
        },
        span_links: Default::default(),
        span_rules: Default::default(),
        presenter: None,
        pending_content: HashMap::new(),
    };
    info!(conference = %conf.ctx.id, "conference started");
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        tokio::select! {
            biased;
            cmd = commands.recv() => match cmd {
                Some(cmd) => conf.handle_command(cmd),
                None => break,
            },
            Some(pkt) = inbound.recv() => {
                conf.handle_inbound(pkt);
                // Drain what is already queued without re-entering select.
                while let Ok(pkt) = inbound.try_recv() {
                    conf.handle_inbound(pkt);
                }
            }
            _ = tick.tick() => {
                let started = Instant::now();
                conf.handle_tick(started);
                conf.ctx.metrics.mixer_tick.observe(started.elapsed().as_secs_f64());
                conf.ticks = conf.ticks.wrapping_add(1);
                if conf.ticks.is_multiple_of(SNAPSHOT_EVERY_TICKS) {
                    snapshot.send_replace(conf.snapshot());
                }
            }
        }
    }
    let ids: Vec<ParticipantId> = conf.legs.keys().copied().collect();
    for id in ids {
        conf.remove_leg(id);
    }
    let _ = conf
        .ctx
        .metrics
        .active_speaker
        .remove_label_values(&[&conf.ctx.id]);
    info!(conference = %conf.ctx.id, "conference ended");
}

struct Conference {
    ctx: ConferenceContext,
    mixer: AudioMixer,
    legs: HashMap<ParticipantId, Leg>,
    counters: MediaCounters,
    mixed: Vec<ParticipantId>,
    in_tx: mpsc::Sender<Inbound>,
    ticks: u32,
    last_speaker: Option<ParticipantId>,
    send_buf: Vec<u8>,
    frame: Vec<i16>,
    ssrc_seed: u32,
    /// Started with the first video leg.
    video: Option<VideoEngine>,
    /// Most recent active speaker first, for the video layouts.
    speaker_order: Vec<ParticipantId>,
    cascade: CascadeSnapshot,
    /// Span links, by link ID, and their speaker rules.
    span_links: std::collections::BTreeMap<u64, crate::span::LinkSnapshot>,
    span_rules: std::collections::BTreeMap<u64, SpeakerRule>,
    /// Who holds the content floor (from [`crate::bfcp`]).
    presenter: Option<ParticipantId>,
    /// Content channels of legs still at the door, attached when admitted.
    pending_content: HashMap<ParticipantId, (VideoStream, MediaSockets)>,
}

fn spawn_receiver(
    socket: Arc<UdpSocket>,
    participant: ParticipantId,
    rtcp: bool,
    tx: mpsc::Sender<Inbound>,
    metrics: Arc<Metrics>,
) -> JoinHandle<()> {
    spawn_datagram_reader(socket, metrics, move |data, from, at| {
        let pkt = Inbound {
            participant,
            rtcp,
            data,
            from,
            at,
        };
        match tx.try_send(pkt) {
            Ok(()) => Delivery::Delivered,
            Err(mpsc::error::TrySendError::Full(_)) => Delivery::Full,
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Closed,
        }
    })
}

impl Conference {
    fn next_ssrc(&mut self) -> u32 {
        // xorshift: distinct per leg; no unseeded randomness needed here.
        let mut x = self.ssrc_seed ^ (self.legs.len() as u32).wrapping_mul(0x9E37_79B9);
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.ssrc_seed = x;
        x
    }

    fn handle_command(&mut self, cmd: ConferenceCommand) {
        match cmd {
            ConferenceCommand::AddLeg(setup) => self.add_leg(*setup),
            ConferenceCommand::CascadeState(state) => self.cascade = state,
            ConferenceCommand::UpdateMedia {
                participant,
                media,
                video,
            } => {
                let Some(leg) = self.legs.get_mut(&participant) else {
                    return;
                };
                if leg.has_video
                    && let Some(engine) = &self.video
                {
                    engine.send(VideoInput::UpdateLeg {
                        participant,
                        stream: video,
                    });
                }
                if media.codec != leg.media.codec || media.ptime != leg.media.ptime {
                    match codec::decoder(codec_kind(media.codec)) {
                        Ok(d) => leg.decoder = d,
                        Err(e) => warn!(%e, "decoder for new codec"),
                    }
                    leg.jitter = new_jitter(&self.ctx, &media);
                    leg.pcm.clear();
                    let fmt = OutputFormat {
                        codec: codec_kind(media.codec),
                        ptime_ms: media.ptime,
                    };
                    if let Some(at) = leg.door.as_mut() {
                        // At the door the leg has its own encoder, not the mixer's.
                        match codec::encoder(fmt.codec, fmt.ptime_ms) {
                            Ok(e) => {
                                at.encoder = e;
                                at.pcm.clear();
                                at.frame = media.ptime as usize * FRAME_SAMPLES / 20;
                            }
                            Err(e) => warn!(%e, "door encoder for new codec"),
                        }
                    } else if let Err(e) = self.mixer.set_output_format(participant, fmt) {
                        warn!(%e, "output format change");
                    }
                    leg.marker_pending = true;
                }
                if media.remote.is_some() {
                    leg.remote = media.remote;
                    leg.remote_rtcp = media.remote_rtcp;
                }
                leg.last_rx = Instant::now();
                leg.media = media;
            }
            ConferenceCommand::RemoveLeg { participant } => self.remove_leg(participant),
            ConferenceCommand::Mute { participant, muted } => {
                if let Some(leg) = self.legs.get_mut(&participant) {
                    leg.muted = muted;
                    let _ = self.mixer.set_muted(participant, muted);
                }
                if let Some(engine) = &self.video {
                    engine.send(VideoInput::Mute { participant, muted });
                }
            }
            ConferenceCommand::SetLayout {
                participant,
                layout,
            } => {
                if participant.is_none()
                    && let Some(v) = self.ctx.video.as_mut()
                {
                    v.layout = layout;
                }
                if let Some(engine) = &self.video {
                    engine.send(VideoInput::Layout {
                        participant,
                        layout,
                    });
                }
            }
            ConferenceCommand::ShowVideo { participant, shown } => {
                let Some(leg) = self.legs.get_mut(&participant) else {
                    return;
                };
                if leg.shown == shown {
                    return;
                }
                leg.shown = shown;
                if let Some(engine) = &self.video {
                    engine.send(VideoInput::Shown {
                        participant,
                        name: leg.name.clone(),
                        shown,
                        remote: leg.side == LegSide::Remote,
                    });
                }
            }
            ConferenceCommand::SpanLink { link, state } => match state {
                Some(s) => {
                    self.span_links.insert(link, *s);
                }
                None => {
                    self.span_links.remove(&link);
                }
            },
            ConferenceCommand::SpanSpeaker { link, rule } => match rule {
                Some(r) => {
                    self.span_rules.insert(link, r);
                }
                None => {
                    self.span_rules.remove(&link);
                }
            },
            ConferenceCommand::LinkGroup { participant, group } => {
                let _ = self.mixer.set_link_group(participant, group);
            }
            ConferenceCommand::Rename { participant, name } => {
                let Some(leg) = self.legs.get_mut(&participant) else {
                    return;
                };
                leg.name = name;
                if leg.shown
                    && let Some(engine) = &self.video
                {
                    engine.send(VideoInput::Shown {
                        participant,
                        name: leg.name.clone(),
                        shown: true,
                        remote: leg.side == LegSide::Remote,
                    });
                }
            }
            ConferenceCommand::Dtmf { participant, digit } => self.handle_dtmf(participant, digit),
            ConferenceCommand::LobbyVerdict {
                participant,
                verdict,
            } => {
                if let Some(at) = self
                    .legs
                    .get_mut(&participant)
                    .and_then(|l| l.door.as_mut())
                {
                    at.door.handle_verdict(Instant::now(), verdict);
                }
            }
            ConferenceCommand::HandOver { participant } => self.hand_over(participant),
            ConferenceCommand::VideoKeyframeRequest { participant } => {
                if let Some(engine) = &self.video {
                    engine.send(VideoInput::KeyframeRequest { participant });
                }
            }
            ConferenceCommand::AddContent {
                participant,
                stream,
                sockets,
            } => match self.legs.get(&participant) {
                Some(leg) if leg.door.is_some() => {
                    if let Some((_, old)) =
                        self.pending_content.insert(participant, (stream, sockets))
                    {
                        self.ctx.video_ports.release(old.port);
                    }
                }
                Some(_) => self.attach_content(participant, stream, sockets),
                None => self.ctx.video_ports.release(sockets.port),
            },
            ConferenceCommand::UpdateContent {
                participant,
                stream,
            } => {
                if let Some(engine) = &self.video {
                    engine.send(VideoInput::UpdateContent {
                        participant,
                        stream,
                    });
                }
            }
            ConferenceCommand::Floor { presenter } => {
                self.presenter = presenter;
                if let Some(engine) = &self.video {
                    engine.send(VideoInput::Presenter(presenter));
                }
            }
        }
    }

    /// A leg that leaves from the door never gets its content channel.
    fn drop_pending_content(&mut self, id: ParticipantId) {
        if let Some((_, c)) = self.pending_content.remove(&id) {
            self.ctx.video_ports.release(c.port);
        }
    }

    /// Hands a content channel to the video thread's relay.
    fn attach_content(
        &mut self,
        participant: ParticipantId,
        stream: VideoStream,
        sockets: MediaSockets,
    ) {
        let call_id = self
            .legs
            .get(&participant)
            .map(|l| l.call_id.clone())
            .unwrap_or_default();
        let presenter = self.presenter;
        match self.ensure_video() {
            Some(engine) => {
                engine.add_content(VideoLegSetup {
                    participant,
                    call_id,
                    stream,
                    sockets,
                });
                engine.send(VideoInput::Presenter(presenter));
            }
            None => self.ctx.video_ports.release(sockets.port),
        }
    }

    /// Digits that drive the bridge: `*8` cycles the caller's layout.
    fn handle_dtmf(&mut self, participant: ParticipantId, digit: char) {
        let Some(leg) = self.legs.get_mut(&participant) else {
            return;
        };
        let now = Instant::now();
        if let Some(at) = leg.door.as_mut() {
            at.door.handle_digit(now, digit);
            return;
        }
        let after_star = leg
            .star_at
            .take()
            .is_some_and(|t| now.saturating_duration_since(t) < DTMF_COMMAND_WINDOW);
        match digit {
            '*' => leg.star_at = Some(now),
            '8' if after_star && leg.has_video => {
                self.ctx
                    .metrics
                    .video
                    .layout_changes
                    .with_label_values(&["dtmf"])
                    .inc();
                if let Some(engine) = &self.video {
                    engine.send(VideoInput::CycleLayout { participant });
                }
            }
            _ => {}
        }
    }

    /// Starts the video thread for the first video leg, telling it about
    /// everyone already here (they show as name tiles until they send video).
    fn ensure_video(&mut self) -> Option<&VideoEngine> {
        if self.video.is_none() {
            let settings = self.ctx.video.clone()?;
            let engine = VideoEngine::start(VideoContext {
                conference: self.ctx.id.clone(),
                metrics: self.ctx.metrics.clone(),
                ports: self.ctx.video_ports.clone(),
                events: self.ctx.events.clone(),
                settings,
            });
            match engine {
                Ok(engine) => {
                    for (id, leg) in self
                        .legs
                        .iter()
                        .filter(|(_, l)| l.shown && l.door.is_none())
                    {
                        engine.send(VideoInput::AddSource {
                            participant: *id,
                            name: leg.name.clone(),
                        });
                    }
                    engine.send(VideoInput::SpeakerOrder(self.speaker_order.clone()));
                    self.video = Some(engine);
                }
                Err(e) => {
                    warn!(%e, conference = %self.ctx.id, "cannot start video");
                    return None;
                }
            }
        }
        self.video.as_ref()
    }

    fn add_leg(&mut self, mut s: LegSetup) {
        let mut video = s.video.take();
        let kind = codec_kind(s.media.codec);
        let decoder = match codec::decoder(kind) {
            Ok(d) => d,
            Err(e) => {
                warn!(%e, call_id = %s.call_id, "no decoder; leg not added");
                self.ctx.ports.release(s.sockets.port);
                if let Some((_, v)) = video {
                    self.ctx.video_ports.release(v.port);
                }
                return;
            }
        };
        // A leg at the door joins neither the mixer nor the layouts: it
        // keeps its video aside until it is admitted.
        let mut rtp_out = None;
        let door = match s.door.take() {
            Some(d) => {
                rtp_out = d.rtp;
                let door = Door::new(d.kind, d.settings);
                match AtDoor::new(door, &s.media, video.take()) {
                    Ok(at) => Some(Box::new(at)),
                    Err(e) => {
                        warn!(%e, call_id = %s.call_id, "no encoder; leg not added");
                        self.ctx.ports.release(s.sockets.port);
                        return;
                    }
                }
            }
            None => None,
        };
        if door.is_some() {
            self.ctx.metrics.ivr.waiting.inc();
        } else if let Err(e) = self.mixer.add_participant(
            s.participant,
            OutputFormat {
                codec: kind,
                ptime_ms: s.media.ptime,
            },
        ) {
            warn!(%e, call_id = %s.call_id, "mixer refused leg");
            self.ctx.ports.release(s.sockets.port);
            if let Some((_, v)) = video {
                self.ctx.video_ports.release(v.port);
            }
            return;
        }
        let side = s.side;
        let link_rank = s.link_rank;
        let _ = self
            .mixer
            .set_remote(s.participant, side == LegSide::Remote);
        let _ = self.mixer.set_link(s.participant, side == LegSide::Link);
        // A span link's audio is another node's mix: always mixed.
        let _ = self.mixer.set_priority(
            s.participant,
            side == LegSide::Remote && s.signalling == crate::span::SIGNALLING,
        );
        let rtp = Arc::new(s.sockets.rtp);
        let rtcp = Arc::new(s.sockets.rtcp);
        let receivers = vec![
            spawn_receiver(
                rtp.clone(),
                s.participant,
                false,
                self.in_tx.clone(),
                self.ctx.metrics.clone(),
            ),
            spawn_receiver(
                rtcp.clone(),
                s.participant,
                true,
                self.in_tx.clone(),
                self.ctx.metrics.clone(),
            ),
        ];
        let now = Instant::now();
        let ssrc = rtp_out
            .as_ref()
            .map_or_else(|| self.next_ssrc(), |r| r.ssrc);
        let jitter = new_jitter(&self.ctx, &s.media);
        let clock = rtp_clock(s.media.codec);
        self.ctx
            .metrics
            .participants
            .with_label_values(&[s.signalling, codec_name(s.media.codec)])
            .inc();
        info!(conference = %self.ctx.id, participant = s.participant.0, name = %s.name,
              codec = codec_name(s.media.codec), port = s.sockets.port, "leg joined");
        self.legs.insert(
            s.participant,
            Leg {
                name: s.name,
                call_id: s.call_id,
                signalling: s.signalling,
                remote: s.media.remote,
                remote_rtcp: s.media.remote_rtcp,
                media: s.media,
                port: s.sockets.port,
                rtp,
                rtcp,
                receivers,
                decoder,
                jitter,
                pcm: VecDeque::with_capacity(FRAME_SAMPLES * 4),
                stats: ReceiveStats::new(clock),
                dtmf: rtp_out.as_ref().map(|r| r.dtmf.clone()).unwrap_or_default(),
                ssrc,
                out_seq: rtp_out.as_ref().map_or((ssrc >> 16) as u16, |r| r.sequence),
                out_ts: rtp_out
                    .as_ref()
                    .map_or(ssrc.rotate_left(7), |r| r.timestamp),
                out_packets: 0,
                out_octets: 0,
                in_packets: 0,
                last_rx: now,
                last_rtcp: now,
                last_sr: None,
                muted: false,
                undecoded: false,
                vad_hangover: VAD_HANGOVER,
                timed_out: false,
                lost_reported: 0,
                jb_reported: [0; 4],
                marker_pending: rtp_out.is_none(),
                has_video: false,
                shown: s.shown,
                side,
                star_at: None,
                door,
            },
        );
        self.attach_video(s.participant, video, side, link_rank);
    }

    /// The video half of adding a leg (at once, or when admitted from the door).
    fn attach_video(
        &mut self,
        participant: ParticipantId,
        video: Option<(VideoStream, MediaSockets)>,
        side: LegSide,
        link_rank: usize,
    ) {
        if self
            .legs
            .get(&participant)
            .is_some_and(|l| l.door.is_some())
        {
            // At the door: neither a source nor a receiver yet.
            return;
        }
        let call_id = self
            .legs
            .get(&participant)
            .map(|l| l.call_id.clone())
            .unwrap_or_default();
        let had_engine = self.video.is_some();
        if video.is_some() {
            self.ensure_video();
        }
        let mut has_video = false;
        match (&self.video, video) {
            (Some(engine), video) => {
                if had_engine
                    && let Some(leg) = self.legs.get(&participant)
                    && leg.shown
                {
                    engine.send(VideoInput::AddSource {
                        participant,
                        name: leg.name.clone(),
                    });
                }
                if let Some((stream, sockets)) = video {
                    engine.add_leg(VideoLegSetup {
                        participant,
                        call_id,
                        stream,
                        sockets,
                    });
                    has_video = true;
                }
                if side != LegSide::Local {
                    engine.send(VideoInput::Side {
                        participant,
                        remote: side == LegSide::Remote,
                        link: side == LegSide::Link,
                        rank: link_rank,
                    });
                }
            }
            (None, Some((_, sockets))) => self.ctx.video_ports.release(sockets.port),
            (None, None) => {}
        }
        if let Some(leg) = self.legs.get_mut(&participant) {
            leg.has_video = has_video;
        }
    }

    /// Mixes and shows a leg the door let in.
    fn admit(&mut self, id: ParticipantId) {
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        let Some(at) = leg.door.take() else {
            return;
        };
        let metrics = &self.ctx.metrics;
        metrics.ivr.waiting.dec();
        metrics
            .ivr
            .calls
            .with_label_values(&[DoorOutcome::Joined.label()])
            .inc();
        let fmt = OutputFormat {
            codec: codec_kind(leg.media.codec),
            ptime_ms: leg.media.ptime,
        };
        if let Err(e) = self.mixer.add_participant(id, fmt) {
            warn!(%e, call_id = %leg.call_id, "mixer refused leg from the door");
        }
        let _ = self.mixer.set_muted(id, leg.muted);
        // Nothing was buffered at the door; start the playout afresh.
        leg.jitter = new_jitter(&self.ctx, &leg.media);
        leg.pcm.clear();
        let side = leg.side;
        info!(conference = %self.ctx.id, participant = id.0, name = %leg.name, "admitted from the door");
        let AtDoor { video, .. } = *at;
        self.attach_video(id, video, side, 0);
        if let Some((stream, sockets)) = self.pending_content.remove(&id) {
            self.attach_content(id, stream, sockets);
        }
    }

    /// Takes a leg out with its sockets open and its ports held, and hands
    /// it to signalling to add to another conference.
    fn hand_over(&mut self, id: ParticipantId) {
        let Some(mut leg) = self.legs.remove(&id) else {
            return;
        };
        self.drop_pending_content(id);
        self.speaker_order.retain(|p| *p != id);
        for r in &leg.receivers {
            r.abort();
        }
        let _ = self.mixer.remove_participant(id);
        let metrics = &self.ctx.metrics;
        metrics
            .participants
            .with_label_values(&[leg.signalling, codec_name(leg.media.codec)])
            .dec();
        let video = match leg.door.take() {
            Some(at) => {
                metrics.ivr.waiting.dec();
                at.video
            }
            None => None,
        };
        let sockets = match MediaSockets::reopen(leg.port, &leg.rtp, &leg.rtcp) {
            Ok(s) => s,
            Err(e) => {
                warn!(%e, call_id = %leg.call_id, "cannot move the leg's sockets; ending the call");
                self.ctx.ports.release(leg.port);
                if let Some((_, v)) = video {
                    self.ctx.video_ports.release(v.port);
                }
                let _ = self.ctx.events.try_send(ConferenceEvent::MediaTimeout {
                    call_id: leg.call_id,
                });
                return;
            }
        };
        // Where the caller's media really comes from, learnt here.
        let mut media = leg.media.clone();
        media.remote = leg.remote.or(media.remote);
        media.remote_rtcp = leg.remote_rtcp.or(media.remote_rtcp);
        info!(conference = %self.ctx.id, participant = id.0, name = %leg.name, "leg handed over");
        let call_id = leg.call_id.clone();
        let detached = Detached {
            rtp: RtpOut {
                ssrc: leg.ssrc,
                sequence: leg.out_seq,
                timestamp: leg.out_ts,
                dtmf: leg.dtmf.clone(),
            },
            setup: Box::new(LegSetup {
                participant: id,
                name: leg.name,
                call_id: leg.call_id,
                signalling: leg.signalling,
                media,
                sockets,
                video,
                side: LegSide::Local,
                shown: true,
                link_rank: 0,
                door: None,
            }),
        };
        if let Err(
            mpsc::error::TrySendError::Full(ConferenceEvent::HandedOver { leg, .. })
            | mpsc::error::TrySendError::Closed(ConferenceEvent::HandedOver { leg, .. }),
        ) = self.ctx.events.try_send(ConferenceEvent::HandedOver {
            call_id,
            leg: detached,
        }) {
            // Signalling is gone or swamped: free what the leg held.
            self.ctx.ports.release(leg.setup.sockets.port);
            if let Some((_, v)) = &leg.setup.video {
                self.ctx.video_ports.release(v.port);
            }
        }
    }

    fn remove_leg(&mut self, id: ParticipantId) {
        let Some(leg) = self.legs.remove(&id) else {
            return;
        };
        self.speaker_order.retain(|p| *p != id);
        self.drop_pending_content(id);
        if let Some(at) = &leg.door {
            let ivr = &self.ctx.metrics.ivr;
            ivr.waiting.dec();
            ivr.calls
                .with_label_values(&[at.door.outcome().label()])
                .inc();
            if let Some((_, v)) = &at.video {
                self.ctx.video_ports.release(v.port);
            }
        } else if let Some(engine) = &self.video {
            // The video thread releases the leg's video port.
            engine.send(VideoInput::Remove { participant: id });
        }
        for r in &leg.receivers {
            r.abort();
        }
        // A goodbye lets the far end's RTCP know the stream ended on purpose.
        if let Some(dest) = leg.remote_rtcp.or(leg.remote) {
            let mut buf = Vec::new();
            let _ = rtcp::write_bye(&mut buf, &[Ssrc(leg.ssrc)], None);
            let _ = if leg.media.rtcp_mux {
                leg.rtp.try_send_to(&buf, dest)
            } else {
                leg.rtcp.try_send_to(&buf, dest)
            };
        }
        let _ = self.mixer.remove_participant(id);
        self.ctx.ports.release(leg.port);
        self.ctx
            .metrics
            .participants
            .with_label_values(&[leg.signalling, codec_name(leg.media.codec)])
            .dec();
        info!(conference = %self.ctx.id, participant = id.0, name = %leg.name, "leg left");
    }

    fn handle_inbound(&mut self, pkt: Inbound) {
        let metrics = &self.ctx.metrics;
        let Some(leg) = self.legs.get_mut(&pkt.participant) else {
            return;
        };
        // With rtcp-mux (RFC 5761) RTCP shares the RTP port.
        if pkt.rtcp || tandem_proto::rtp::packet::is_rtcp(&pkt.data) {
            match rtcp::parse_compound(&pkt.data) {
                Ok(packets) => {
                    self.counters.rtcp_in.inc();
                    if !leg.media.rtcp_mux || pkt.rtcp {
                        leg.remote_rtcp = Some(pkt.from);
                    }
                    if let Some(sr) = rtcp_report::last_sr_of(&packets, pkt.at) {
                        leg.last_sr = Some(sr);
                    }
                }
                Err(e) => metrics.malformed("rtcp", e.kind()),
            }
            return;
        }
        let packet = match RtpPacket::parse(&pkt.data) {
            Ok(p) => p,
            Err(e) => {
                metrics.malformed("rtp", e.kind());
                return;
            }
        };
        self.counters.rtp_in.inc();
        self.counters.bytes_in.inc_by(packet.payload.len() as u64);
        leg.in_packets += 1;
        leg.last_rx = pkt.at;
        leg.timed_out = false;
        if Some(packet.payload_type) == leg.media.dtmf_pt {
            if let Some(tandem_proto::rtp::dtmf::Dtmf(digit)) =
                leg.dtmf.handle_packet(packet.timestamp, packet.payload)
            {
                metrics.dtmf.inc();
                let _ = self.ctx.events.try_send(ConferenceEvent::Dtmf {
                    call_id: leg.call_id.clone(),
                    digit,
                });
                self.handle_dtmf(pkt.participant, digit);
            }
            return;
        }
        if Some(packet.payload_type) == leg.media.cn_pt {
            return;
        }
        if packet.payload_type != leg.media.pt {
            metrics.malformed("rtp", "unexpected_payload_type");
            return;
        }
        // Symmetric RTP (RFC 4961): answer to where the media really comes from.
        leg.remote = Some(pkt.from);
        leg.stats.handle_rtp(pkt.at, &packet);
        // At the door nobody hears the caller: nothing to buffer or decode.
        if leg.may_receive() && leg.door.is_none() {
            leg.jitter.push(
                pkt.at,
                packet.sequence,
                packet.timestamp,
                packet.payload.to_vec(),
            );
        }
    }

    fn handle_tick(&mut self, now: Instant) {
        let metrics = self.ctx.metrics.clone();
        // 1. Decode: fill each leg's PCM queue to one frame and hand it to the mixer.
        self.mixed.clear();
        self.mixed.extend(self.mixer.mixed_speakers());
        for (id, leg) in self.legs.iter_mut() {
            if leg.door.is_some() {
                continue;
            }
            let heard = !self.ctx.skip_silent_decode || self.mixed.contains(id);
            let mut ready = false;
            while !ready && leg.pcm.len() < FRAME_SAMPLES {
                self.frame.clear();
                if !decode_next(leg, heard, now, &metrics, &mut self.frame) {
                    break;
                }
                if leg.pcm.is_empty() && self.frame.len() == FRAME_SAMPLES {
                    // The common case (20 ms packets): straight to the mixer.
                    ready = true;
                } else {
                    leg.pcm.extend(self.frame.iter().copied());
                    if leg.pcm.len() > FRAME_SAMPLES * 8 {
                        // Never let a misbehaving decoder grow the queue without bound.
                        let excess = leg.pcm.len() - FRAME_SAMPLES * 2;
                        leg.pcm.drain(..excess);
                    }
                }
            }
            if !ready && leg.pcm.len() >= FRAME_SAMPLES {
                self.frame.clear();
                self.frame.extend(leg.pcm.drain(..FRAME_SAMPLES));
                ready = true;
            }
            if ready && !leg.muted {
                let _ = self.mixer.push_frame(*id, &self.frame);
            }
        }
        // 2. Mix and encode once per distinct output; 3. send to each receiver.
        let output = self.mixer.tick();
        for payload in &output.payloads {
            metrics.audio_encodes.inc();
            for receiver in &payload.receivers {
                let Some(leg) = self.legs.get_mut(receiver) else {
                    continue;
                };
                send_audio(leg, &payload.bytes, &mut self.send_buf, &self.counters);
            }
        }
        // 2b. The door: each waiting leg hears its own prompt, encoded for it.
        self.door_tick(now);
        let speaker = self.active_speaker();
        if speaker != self.last_speaker {
            let gauge = &metrics.active_speaker;
            if let Some(p) = speaker {
                self.speaker_order.retain(|q| *q != p);
                self.speaker_order.insert(0, p);
                if let Some(engine) = &self.video {
                    engine.send(VideoInput::SpeakerOrder(self.speaker_order.clone()));
                }
            }
            match speaker {
                Some(p) => {
                    metrics.active_speaker_changes.inc();
                    gauge.with_label_values(&[&self.ctx.id]).set(p.0 as i64);
                }
                None => {
                    let _ = gauge.remove_label_values(&[&self.ctx.id]);
                }
            }
            self.last_speaker = speaker;
        }
        // 4. Housekeeping, spread out: RTCP reports, media timeouts, counters.
        if self.ticks.is_multiple_of(10) {
            self.housekeeping(now);
        }
    }

    /// Plays each door's audio to its leg and acts on what the doors decided.
    fn door_tick(&mut self, now: Instant) {
        let mut events: Vec<(ParticipantId, String, DoorEvent)> = Vec::new();
        for (id, leg) in self.legs.iter_mut() {
            let Some(at) = leg.door.as_mut() else {
                continue;
            };
            at.door.handle_tick(now, &mut at.pcm);
            if at.pcm.len() >= at.frame {
                let mut bytes = Vec::with_capacity(256);
                let encoded = at.encoder.encode(&at.pcm[..at.frame], &mut bytes);
                at.pcm.drain(..at.frame);
                if encoded.is_ok() {
                    self.ctx.metrics.audio_encodes.inc();
                    send_audio(leg, &bytes, &mut self.send_buf, &self.counters);
                }
            }
            let Some(at) = leg.door.as_mut() else {
                continue;
            };
            while let Some(ev) = at.door.poll_event() {
                events.push((*id, leg.call_id.clone(), ev));
            }
        }
        let metrics = self.ctx.metrics.clone();
        let ivr = &metrics.ivr;
        for (participant, call_id, ev) in events {
            match ev {
                DoorEvent::PinAccepted => {
                    ivr.pin_attempts.with_label_values(&["accepted"]).inc();
                }
                DoorEvent::PinWrong => {
                    ivr.pin_attempts.with_label_values(&["wrong"]).inc();
                    info!(conference = %self.ctx.id, participant = participant.0, "wrong PIN");
                }
                DoorEvent::ConferenceId(digits) => {
                    let _ = self.ctx.events.try_send(ConferenceEvent::LobbyEntry {
                        call_id,
                        participant,
                        digits,
                    });
                }
                DoorEvent::Admit => self.admit(participant),
                DoorEvent::Hangup(outcome) => {
                    let _ = self
                        .ctx
                        .events
                        .try_send(ConferenceEvent::DoorHangup { call_id, outcome });
                }
            }
        }
    }

    fn housekeeping(&mut self, now: Instant) {
        let metrics = &self.ctx.metrics;
        let wall = SystemTime::now();
        for leg in self.legs.values_mut() {
            // Loss and jitter buffer counters as deltas.
            let lost = i64::from(leg.stats.cumulative_lost());
            if lost > leg.lost_reported {
                metrics.rtp_lost.inc_by((lost - leg.lost_reported) as u64);
            }
            leg.lost_reported = lost;
            let jb = leg.jitter.stats();
            for (i, (name, v)) in [
                ("late", jb.late),
                ("duplicate", jb.duplicate),
                ("overflow", jb.overflow),
                ("underrun", jb.underruns),
            ]
            .into_iter()
            .enumerate()
            {
                if v > leg.jb_reported[i] {
                    metrics
                        .jitter_buffer_events
                        .with_label_values(&[name])
                        .inc_by(v - leg.jb_reported[i]);
                }
                leg.jb_reported[i] = v;
            }
            if !leg.timed_out
                && leg.may_receive()
                && now.saturating_duration_since(leg.last_rx) > self.ctx.rtp_timeout
            {
                leg.timed_out = true;
                metrics
                    .sip_transaction_timeouts
                    .with_label_values(&["rtp"])
                    .inc();
                let _ = self.ctx.events.try_send(ConferenceEvent::MediaTimeout {
                    call_id: leg.call_id.clone(),
                });
            }
            if now.saturating_duration_since(leg.last_rtcp) >= RTCP_INTERVAL {
                leg.last_rtcp = now;
                if leg.stats.packets_received() > 0 {
                    metrics.rtp_jitter.observe(leg.stats.jitter_seconds());
                }
                send_rtcp(leg, now, wall);
            }
        }
    }

    /// The mixer's pick, unless a span link rules otherwise (a satellite
    /// follows its home; a home shows a node's speaker for its mix).
    fn active_speaker(&self) -> Option<ParticipantId> {
        let heard = self.mixer.active_speaker();
        if self.span_rules.is_empty() {
            return heard;
        }
        if let Some(follow) = self.span_rules.values().find_map(|r| r.follow) {
            return follow;
        }
        let heard = heard?;
        Some(
            self.span_rules
                .values()
                .flat_map(|r| r.stand_in.iter())
                .find(|(mix, _)| *mix == heard)
                .map_or(heard, |(_, shown)| *shown),
        )
    }

    fn snapshot(&self) -> ConferenceSnapshot {
        let video: Option<VideoSnapshot> = self.video.as_ref().map(VideoEngine::snapshot);
        let mut participants: Vec<ParticipantSnapshot> = self
            .legs
            .iter()
            // A span link's legs are plumbing: its far side's people are
            // listed from its roster instead.
            .filter(|(_, leg)| leg.signalling != crate::span::SIGNALLING)
            .map(|(id, leg)| ParticipantSnapshot {
                id: id.0.to_string(),
                name: leg.name.clone(),
                state: leg.door.as_ref().map_or("joined", |at| at.door.state()),
                signalling: leg.signalling,
                audio_codec: codec_name(leg.media.codec),
                video: leg.has_video,
                video_stream: video.as_ref().and_then(|v| v.legs.get(&id.0).cloned()),
                speaking: self.mixer.is_speaking(*id),
                muted: leg.muted,
                on_hold: !leg.may_send() || leg.media.remote.is_none(),
                rtp_port: leg.port,
                remote: leg.remote.map(|a| a.to_string()),
                packets_in: leg.in_packets,
                packets_out: leg.out_packets,
                packets_lost: i64::from(leg.stats.cumulative_lost()),
                jitter_ms: leg.stats.jitter_seconds() * 1000.0,
                node: None,
            })
            .collect();
        participants.sort_by_key(|p| p.id.parse::<u64>().unwrap_or(0));
        let speaker = self.active_speaker();
        let mut active_speaker = speaker.map(|p| p.0.to_string());
        let (local_speakers, local_speaker_ids) = self.local_speakers();
        let span = crate::span::summary(&self.span_links, speaker.map(|p| p.0), |id| {
            self.legs.get(&ParticipantId(id)).map(|l| l.name.clone())
        });
        if let Some(s) = &span {
            participants.extend(
                self.span_links
                    .values()
                    .flat_map(|l| l.remote.iter().cloned()),
            );
            active_speaker = s.active_speaker.as_ref().map(|a| a.api_id.clone());
        }
        ConferenceSnapshot {
            id: self.ctx.id.clone(),
            participants,
            active_speaker,
            layout: self.ctx.video.as_ref().map(|v| v.layout.to_string()),
            cascade: self.cascade.clone(),
            local_speakers,
            local_speaker_ids,
            heard_speaker: self.mixer.active_speaker().map(|p| p.0),
            span,
            content: ContentState {
                floor: if self.presenter.is_some() {
                    "presenting"
                } else {
                    "idle"
                },
                presenter: self.presenter.map(|p| p.0.to_string()),
                presenter_name: self
                    .presenter
                    .and_then(|p| self.legs.get(&p))
                    .map(|l| l.name.clone()),
                relay: video
                    .as_ref()
                    .map(|v| v.content.clone())
                    .unwrap_or_default(),
            },
        }
    }

    /// Room systems by the video mixer's order: recent speakers first, then
    /// the others by participant ID.
    fn local_speakers(&self) -> (Vec<String>, Vec<u64>) {
        let local = |id: &ParticipantId| {
            self.legs
                .get(id)
                .is_some_and(|l| l.side == LegSide::Local && l.shown && l.door.is_none())
        };
        let mut ids: Vec<ParticipantId> =
            self.speaker_order.iter().copied().filter(local).collect();
        let mut rest: Vec<ParticipantId> = self
            .legs
            .keys()
            .copied()
            .filter(|id| local(id) && !ids.contains(id))
            .collect();
        rest.sort();
        ids.extend(rest);
        ids.iter()
            .filter_map(|id| self.legs.get(id).map(|l| (l.name.clone(), id.0)))
            .unzip()
    }
}

/// How long after `*` a command digit counts (`*8`).
const DTMF_COMMAND_WINDOW: Duration = Duration::from_secs(3);

/// Packets a leg must go without voice activity before we stop decoding it
/// (a VAD hangover: 500 ms at 20 ms packets), so a talker's pauses between
/// words never cost it the first syllable of the next.
const VAD_HANGOVER: u8 = 25;

/// Pops one packet from the leg's jitter buffer and decodes (or conceals) it
/// into `out`. False when there is nothing to play (not started, DTX, gap) or
/// when nobody needs it: a leg that is not in the mix and whose Opus packets
/// say "no voice" is not decoded at all (the sender's own VAD decides; it
/// costs one byte read). Such a leg counts as silent, as with DTX.
fn decode_next(
    leg: &mut Leg,
    heard: bool,
    now: Instant,
    metrics: &Metrics,
    out: &mut Vec<i16>,
) -> bool {
    let ok = match leg.jitter.pop(now) {
        Playout::Frame { payload, .. } => {
            if leg.media.codec == AudioCodec::Opus {
                match codec::opus_voice_activity(&payload) {
                    Some(false) if leg.vad_hangover == 0 && !heard => {
                        metrics.audio_decodes_skipped.inc();
                        leg.undecoded = true;
                        return false;
                    }
                    Some(false) => leg.vad_hangover = leg.vad_hangover.saturating_sub(1),
                    _ => leg.vad_hangover = VAD_HANGOVER,
                }
            }
            if std::mem::take(&mut leg.undecoded) {
                leg.decoder.reset();
            }
            metrics.audio_decodes.inc();
            leg.decoder.decode(&payload, out).is_ok()
        }
        Playout::Lost { .. } if leg.undecoded => return false,
        Playout::Lost { next } => {
            let method = if next.is_some() && leg.media.codec == AudioCodec::Opus {
                "fec"
            } else {
                "plc"
            };
            metrics.concealed_frames.with_label_values(&[method]).inc();
            leg.decoder.conceal(next.as_deref(), out).is_ok()
        }
        Playout::Silent => false,
    };
    ok && !out.is_empty()
}

fn new_jitter(ctx: &ConferenceContext, media: &NegotiatedAudio) -> JitterBuffer {
    JitterBuffer::new(
        rtp_clock(media.codec),
        Duration::from_millis(u64::from(media.ptime)),
        ctx.jitter_min,
        ctx.jitter_max,
    )
}

/// Sends one encoded audio payload to `leg` as its next RTP packet.
fn send_audio(leg: &mut Leg, payload: &[u8], buf: &mut Vec<u8>, counters: &MediaCounters) {
    let samples = rtp_clock(leg.media.codec) * leg.media.ptime / 1000;
    let (Some(dest), true) = (leg.remote, leg.may_send()) else {
        // On hold or no address yet: keep the timeline moving.
        leg.out_ts = leg.out_ts.wrapping_add(samples);
        return;
    };
    buf.clear();
    RtpHeader {
        marker: std::mem::take(&mut leg.marker_pending),
        payload_type: leg.media.pt,
        sequence: leg.out_seq,
        timestamp: MediaTime(leg.out_ts),
        ssrc: Ssrc(leg.ssrc),
    }
    .write(payload, buf);
    leg.out_seq = leg.out_seq.wrapping_add(1);
    leg.out_ts = leg.out_ts.wrapping_add(samples);
    if leg.rtp.try_send_to(buf, dest).is_ok() {
        leg.out_packets += 1;
        leg.out_octets += payload.len() as u64;
        counters.rtp_out.inc();
        counters.bytes_out.inc_by(payload.len() as u64);
    }
}

fn send_rtcp(leg: &mut Leg, now: Instant, wall: SystemTime) {
    let Some(dest) = (if leg.media.rtcp_mux {
        leg.remote
    } else {
        leg.remote_rtcp
    }) else {
        return;
    };
    let mut buf = Vec::with_capacity(128);
    let sent = rtcp_report::Sent {
        ssrc: leg.ssrc,
        rtp_ts: leg.out_ts,
        packets: leg.out_packets,
        octets: leg.out_octets,
    };
    if !rtcp_report::write_report(&mut buf, &sent, &mut leg.stats, leg.last_sr, now, wall) {
        return;
    }
    let socket = if leg.media.rtcp_mux {
        &leg.rtp
    } else {
        &leg.rtcp
    };
    let _ = socket.try_send_to(&buf, dest);
}
