//! One conference's video: a dedicated OS thread owns the video legs' RTP
//! state, the H.264 depacketizers and decoders, and the
//! [`tandem_mixer::video::VideoMixer`], and runs the view tick at the output
//! frame rate.
//!
//! Why a thread and not a tokio task: composing and encoding a 720p view takes
//! milliseconds of CPU, and a conference's views take tens of them per tick.
//! On the runtime's workers that would delay every other conference's 20 ms
//! audio tick. The conference task talks to this thread through
//! [`VideoInput`] messages on a bounded channel (never waiting: a full channel
//! drops and counts), and socket reader tasks hand it packets the same way.
//!
//! Per packet: RTP → [`H264Depacketizer`] → access unit → decoded only if the
//! source is in somebody's pane (nobody sees the others, so they cost one
//! byte copy) → the mixer's latest picture for that source.
//! Per tick: the mixer composes and encodes each distinct view once; each
//! view's access unit is packetized once per packetization mode and sent to
//! each receiver with only the RTP header differing.
//!
//! Keyframes: receivers' PLI/FIR and SIP INFO picture_fast_update go to the
//! mixer (rate-limited per view there); when a source enters a pane, or its
//! stream lost packets, we ask it for a keyframe with FIR, PLI or (for room
//! systems that offered neither) SIP INFO, rate-limited per source.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant, SystemTime};

use prometheus::IntCounter;
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use tandem_mixer::ParticipantId;
use tandem_mixer::video::{
    Layout, LayoutChoice, ReceiverSettings, ResolutionClass, VideoConfig, VideoMixer, VideoStats,
};
use tandem_proto::rtp::h264::{H264Depacketizer, H264Packetizer, PacketizationMode};
use tandem_proto::rtp::packet::{MediaTime, RtpHeader, RtpPacket, Ssrc, is_rtcp};
use tandem_proto::rtp::rtcp;
use tandem_proto::rtp::stats::ReceiveStats;
use tandem_proto::sdp::{Direction, VideoStream};

use crate::conference::ConferenceEvent;
use crate::content::{ContentRelay, ContentSnapshot, ContentStart};
use crate::driver::net::{Delivery, MediaSockets, PortAllocator, spawn_datagram_reader};
use crate::metrics::Metrics;
use crate::rtcp_report;
use crate::video_decode::{DecodeJob, DecodePool, Decoded};

/// RTP payload size we packetize to: fits a 1500-byte MTU with IP/UDP/RTP
/// headers and room for SRTP or a tunnel.
pub const VIDEO_MTU: usize = 1200;
/// Slices never exceed this, so that packetization-mode 0 receivers (one NAL
/// per packet) get the same encode as everyone else.
const MAX_SLICE_BYTES: u32 = 1100;
const RTCP_INTERVAL: Duration = Duration::from_secs(5);
/// Least time between two keyframe requests to one source.
const SOURCE_KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);
/// A TMMBR not confirmed by a TMMBN is sent again after this, a few times.
const SOURCE_LIMIT_RETRY: Duration = Duration::from_secs(1);
const SOURCE_LIMIT_TRIES: u8 = 3;
const SNAPSHOT_EVERY_TICKS: u64 = 15;
const INPUT_QUEUE: usize = 16_384;

/// The decode slot of the presentation (the presenter's content stream,
/// decoded for room systems that see it in their layout): no participant
/// ever has this ID.
const PRESENTATION: ParticipantId = ParticipantId(u64::MAX);

/// The DTMF `*8` cycle (as Pexip's): each press moves to the next.
const LAYOUT_CYCLE: [LayoutChoice; 10] = [
    LayoutChoice::Auto,
    LayoutChoice::Fixed(Layout::Grid1x1),
    LayoutChoice::Fixed(Layout::Grid2x2),
    LayoutChoice::Fixed(Layout::OnePlus5),
    LayoutChoice::Fixed(Layout::Grid3x3),
    LayoutChoice::Fixed(Layout::OnePlus7),
    LayoutChoice::Fixed(Layout::TwoPlus8),
    LayoutChoice::Fixed(Layout::Grid4x4),
    LayoutChoice::Fixed(Layout::OnePlus21),
    LayoutChoice::Fixed(Layout::Grid5x5),
];

/// The layout after `current` in the `*8` cycle.
pub fn next_layout(current: LayoutChoice) -> LayoutChoice {
    let at = LAYOUT_CYCLE.iter().position(|l| *l == current).unwrap_or(0);
    LAYOUT_CYCLE[(at + 1) % LAYOUT_CYCLE.len()]
}

/// A video stream joining the conference.
pub struct VideoLegSetup {
    pub participant: ParticipantId,
    pub call_id: String,
    pub stream: VideoStream,
    pub sockets: MediaSockets,
}

/// A datagram from a video leg's socket.
pub struct VideoPacket {
    participant: ParticipantId,
    rtcp: bool,
    /// From the content channel's sockets, not the people video's.
    content: bool,
    data: Vec<u8>,
    from: SocketAddr,
    at: Instant,
}

/// A leg as handed to the thread: its sockets' readers already run.
pub struct LegStart {
    participant: ParticipantId,
    call_id: String,
    stream: VideoStream,
    port: u16,
    rtp: Arc<UdpSocket>,
    rtcp: Arc<UdpSocket>,
    readers: Vec<JoinHandle<()>>,
}

/// What the conference task (and the socket readers) tell the video thread.
pub enum VideoInput {
    /// A participant who may be shown (every participant, with video or not:
    /// those without show their name tile).
    AddSource {
        participant: ParticipantId,
        name: String,
    },
    /// Takes a source out of the layouts or puts it back (`remote`: a
    /// native participant, as in [`VideoInput::Side`]).
    Shown {
        participant: ParticipantId,
        name: String,
        shown: bool,
        remote: bool,
    },
    /// See [`VideoEngine::add_leg`].
    AddLeg(Box<LegStart>),
    /// See [`VideoEngine::add_content`].
    AddContent(Box<ContentStart>),
    /// A re-INVITE changed the content stream; `None` removed it.
    UpdateContent {
        participant: ParticipantId,
        stream: Option<VideoStream>,
    },
    /// Who holds the content floor: whose content is relayed.
    Presenter(Option<ParticipantId>),
    /// A re-INVITE changed the stream; `None` removed video (port 0).
    UpdateLeg {
        participant: ParticipantId,
        stream: Option<VideoStream>,
    },
    Remove {
        participant: ParticipantId,
    },
    /// Which side of a cascade the participant is on: `remote` (its
    /// pictures came from the native meeting: links never see it) or
    /// `link` (it carries a view into the native meeting: shows local
    /// people only, and is never shown itself).
    Side {
        participant: ParticipantId,
        remote: bool,
        link: bool,
        /// For a link: shows the local speakers from this rank on.
        rank: usize,
    },
    /// Most recent speaker first.
    SpeakerOrder(Vec<ParticipantId>),
    /// `None`: the conference default (participants without their own choice
    /// follow it); `Some`: one participant's own choice.
    Layout {
        participant: Option<ParticipantId>,
        layout: LayoutChoice,
    },
    /// DTMF `*8`: the participant's next layout.
    CycleLayout {
        participant: ParticipantId,
    },
    /// SIP INFO picture_fast_update (RFC 5168) from a receiver.
    KeyframeRequest {
        participant: ParticipantId,
    },
    /// Operator mute: the participant shows as a name tile.
    Mute {
        participant: ParticipantId,
        muted: bool,
    },
    Packet(VideoPacket),
    /// A picture (or error) back from a decode thread.
    Decoded(Decoded),
    /// The conference ended.
    Shutdown,
}

/// What the API shows of one participant's video.
#[derive(Debug, Clone, Serialize, Default)]
pub struct LegVideoSnapshot {
    /// What this participant sees: its own choice or the conference's.
    pub layout: String,
    /// `1280x720` etc.; absent when we send it no video.
    pub resolution: Option<String>,
    pub rtp_port: u16,
    /// In a pane of somebody's view (and so decoded).
    pub visible: bool,
    pub frames_received: u64,
    pub frames_decoded: u64,
    pub keyframes_received: u64,
    pub frames_sent: u64,
    pub packets_lost: i64,
    pub keyframe_requests_sent: u64,
    pub keyframe_requests_received: u64,
    /// The size of its last decoded picture, `1280x720` etc.
    pub received_resolution: Option<String>,
    /// The class its largest pane needs, which we asked it to stay within
    /// (TMMBR); absent when it is in no pane or cannot be asked.
    pub requested_resolution: Option<String>,
    /// Bitrate limit the sender confirmed (TMMBN), bit/s.
    pub confirmed_limit_bps: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct VideoSnapshot {
    /// The conference default layout.
    pub layout: String,
    pub views: usize,
    pub encoders: usize,
    pub decoders: usize,
    /// By participant ID.
    pub legs: HashMap<u64, LegVideoSnapshot>,
    /// The content channel.
    pub content: ContentSnapshot,
}

/// How a conference's video runs; from `[video]` config.
#[derive(Clone)]
pub struct VideoSettings {
    pub fps: u32,
    pub layout: LayoutChoice,
    pub max_class: ResolutionClass,
    pub freeze_timeout: Duration,
    pub decode_threads: usize,
    pub encode_threads: usize,
    /// Room systems without a content channel see the presentation in
    /// their layout (`[content] show_in_layout`).
    pub content_in_layout: bool,
}

/// What the video thread needs from its conference.
#[derive(Clone)]
pub struct VideoContext {
    pub conference: String,
    pub metrics: Arc<Metrics>,
    pub ports: Arc<PortAllocator>,
    pub events: mpsc::Sender<ConferenceEvent>,
    pub settings: VideoSettings,
}

/// The conference task's handle on its video thread. Dropping it ends the
/// thread (once the socket readers, which hold senders too, are gone).
pub struct VideoEngine {
    tx: SyncSender<VideoInput>,
    snapshot: watch::Receiver<VideoSnapshot>,
    metrics: Arc<Metrics>,
}

impl VideoEngine {
    pub fn start(ctx: VideoContext) -> std::io::Result<VideoEngine> {
        let (tx, rx) = sync_channel(INPUT_QUEUE);
        let (snap_tx, snapshot) = watch::channel(VideoSnapshot {
            layout: ctx.settings.layout.to_string(),
            ..Default::default()
        });
        let metrics = ctx.metrics.clone();
        let name = format!("video-{}", ctx.conference);
        let decoders = DecodePool::start(
            &name,
            ctx.settings.decode_threads,
            tx.clone(),
            VideoInput::Decoded,
        )?;
        let mixer = VideoMixer::new(VideoConfig {
            fps: ctx.settings.fps as f32,
            freeze_timeout_ticks: (ctx.settings.freeze_timeout.as_secs_f64()
                * f64::from(ctx.settings.fps)) as u64,
            keyframe_min_interval_ticks: u64::from(ctx.settings.fps / 2).max(1),
            max_slice_bytes: Some(MAX_SLICE_BYTES),
            threads: ctx.settings.encode_threads.max(1),
            ..VideoConfig::default()
        })
        .map_err(std::io::Error::other)?;
        std::thread::Builder::new().name(name).spawn(move || {
            Engine::new(ctx, mixer, decoders, snap_tx).run(rx);
        })?;
        Ok(VideoEngine {
            tx,
            snapshot,
            metrics,
        })
    }

    /// Hands `input` to the thread without waiting; false (and counted) if
    /// its queue is full.
    pub fn send(&self, input: VideoInput) -> bool {
        match self.tx.try_send(input) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.metrics.malformed("video", "queue_overflow");
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Starts the socket readers for a video leg (on the caller's tokio
    /// runtime) and hands the leg to the thread.
    pub fn add_leg(&self, setup: VideoLegSetup) {
        let VideoLegSetup {
            participant,
            call_id,
            stream,
            sockets,
        } = setup;
        let rtp = Arc::new(sockets.rtp);
        let rtcp = Arc::new(sockets.rtcp);
        let readers = self.readers(participant, false, &rtp, &rtcp);
        self.send(VideoInput::AddLeg(Box::new(LegStart {
            participant,
            call_id,
            stream,
            port: sockets.port,
            rtp,
            rtcp,
            readers,
        })));
    }

    /// Starts the socket readers of a content channel and hands it to
    /// the thread's [`ContentRelay`].
    pub fn add_content(&self, setup: VideoLegSetup) {
        let rtp = Arc::new(setup.sockets.rtp);
        let rtcp = Arc::new(setup.sockets.rtcp);
        let readers = self.readers(setup.participant, true, &rtp, &rtcp);
        self.send(VideoInput::AddContent(Box::new(ContentStart {
            participant: setup.participant,
            stream: setup.stream,
            port: setup.sockets.port,
            rtp,
            rtcp,
            readers,
        })));
    }

    fn readers(
        &self,
        participant: ParticipantId,
        content: bool,
        rtp: &Arc<UdpSocket>,
        rtcp: &Arc<UdpSocket>,
    ) -> Vec<JoinHandle<()>> {
        [(rtp, false), (rtcp, true)]
            .into_iter()
            .map(|(socket, is_rtcp)| {
                let tx = self.tx.clone();
                spawn_datagram_reader(
                    socket.clone(),
                    self.metrics.clone(),
                    move |data, from, at| {
                        let pkt = VideoPacket {
                            participant,
                            rtcp: is_rtcp,
                            content,
                            data,
                            from,
                            at,
                        };
                        match tx.try_send(VideoInput::Packet(pkt)) {
                            Ok(()) => Delivery::Delivered,
                            Err(TrySendError::Full(_)) => Delivery::Full,
                            Err(TrySendError::Disconnected(_)) => Delivery::Closed,
                        }
                    },
                )
            })
            .collect()
    }

    pub fn snapshot(&self) -> VideoSnapshot {
        self.snapshot.borrow().clone()
    }
}

impl Drop for VideoEngine {
    fn drop(&mut self) {
        // The decode threads hold senders of the thread's own queue, so it
        // never sees the channel close by itself.
        let _ = self.tx.try_send(VideoInput::Shutdown);
    }
}

/// One participant's video stream, owned by the video thread.
struct Leg {
    call_id: String,
    stream: VideoStream,
    port: u16,
    rtp: Arc<UdpSocket>,
    rtcp: Arc<UdpSocket>,
    readers: Vec<JoinHandle<()>>,
    remote: Option<SocketAddr>,
    remote_rtcp: Option<SocketAddr>,
    remote_ssrc: Option<u32>,
    depacketizer: H264Depacketizer,
    /// It has a decoder on a decode thread. Only while the source is
    /// visible; dropped (and re-created at the next keyframe) while nobody
    /// sees it.
    decoding: bool,
    /// Pictures are dropped until a keyframe: the decoder is new, or lost
    /// its references.
    waiting_keyframe: bool,
    stats: ReceiveStats,
    last_sr: Option<(u32, Instant)>,
    ssrc: u32,
    seq: u16,
    ts_base: u32,
    mode: PacketizationMode,
    /// What we send it; `None` when it cannot decode any of our classes or
    /// does not receive.
    class: Option<ResolutionClass>,
    own_layout: Option<LayoutChoice>,
    last_keyframe_request: Option<Instant>,
    fir_seq: u8,
    last_rtcp: Instant,
    packets_out: u64,
    octets_out: u64,
    frames_received: u64,
    frames_decoded: u64,
    keyframes_received: u64,
    frames_sent: u64,
    keyframe_requests_sent: u64,
    keyframe_requests_received: u64,
    lost_reported: i64,
    /// Size of the last decoded picture.
    received_size: Option<(u32, u32)>,
    /// What its largest pane needs (from the mixer), and the TMMBR that
    /// asks for it: when last sent, and whether a TMMBN confirmed it.
    source_class: Option<ResolutionClass>,
    limit: Option<SourceLimit>,
    confirmed_limit_bps: Option<u64>,
}

/// A TMMBR in flight to a sender: repeated until its TMMBN arrives.
#[derive(Debug, Clone, Copy)]
struct SourceLimit {
    class: ResolutionClass,
    bitrate_bps: u64,
    sent_at: Instant,
    tries: u8,
    confirmed: bool,
}

impl Leg {
    fn sends_to_us(&self) -> bool {
        self.stream.direction.receives()
    }

    fn we_send(&self) -> bool {
        self.stream.direction.sends() && self.class.is_some()
    }

    /// The head of a compound RTCP packet: our report. Feedback (PLI, FIR,
    /// TMMBR) rides behind one (RFC 4585 §3.1).
    fn feedback_head(&mut self, now: Instant) -> Vec<u8> {
        let mut buf = Vec::with_capacity(128);
        let sent = rtcp_report::Sent {
            ssrc: self.ssrc,
            rtp_ts: self.ts_base,
            packets: self.packets_out,
            octets: self.octets_out,
        };
        let _ = rtcp_report::write_report(
            &mut buf,
            &sent,
            &mut self.stats,
            self.last_sr,
            now,
            SystemTime::now(),
        );
        buf
    }

    fn rtcp_dest(&self) -> Option<(SocketAddr, &UdpSocket)> {
        if self.stream.rtcp_mux {
            self.remote.map(|d| (d, &*self.rtp))
        } else {
            self.remote_rtcp.map(|d| (d, &*self.rtcp))
        }
    }
}

/// The receiver's class: what its H.264 level and bandwidth allow, capped by
/// configuration.
fn class_for(stream: &VideoStream, max: ResolutionClass) -> Option<ResolutionClass> {
    let format = stream.h264.send_format()?;
    let class = match format.class.width {
        w if w >= 1280 => ResolutionClass::Hd720,
        w if w >= 640 => ResolutionClass::Sd360,
        _ => ResolutionClass::Low180,
    };
    // ResolutionClass orders largest first.
    Some(class.max(max))
}

fn class_metric_label(class: ResolutionClass) -> &'static str {
    match class {
        ResolutionClass::Hd720 => "720p",
        ResolutionClass::Sd360 => "360p",
        ResolutionClass::Low180 => "180p",
    }
}

fn class_label(class: ResolutionClass) -> String {
    let (w, h) = class.size();
    format!("{w}x{h}")
}

struct Engine {
    ctx: VideoContext,
    mixer: VideoMixer,
    decoders: DecodePool,
    legs: HashMap<ParticipantId, Leg>,
    sources: BTreeSet<ParticipantId>,
    /// Cascade links: receivers that are never shown.
    links: BTreeSet<ParticipantId>,
    muted: BTreeSet<ParticipantId>,
    layout: LayoutChoice,
    snapshot: watch::Sender<VideoSnapshot>,
    ssrc_seed: u32,
    last_stats: VideoStats,
    /// This conference's share of the node-wide gauges, to take back out.
    reported: (i64, i64, i64),
    send_buf: Vec<u8>,
    /// Per-packet and per-picture counters, resolved once: a label lookup
    /// hashes and locks, which the media path should not do per packet.
    counters: Counters,
    /// The presenter's content, relayed to the content channels.
    content: ContentRelay,
}

struct Counters {
    packets_in: IntCounter,
    packets_out: IntCounter,
    not_visible: IntCounter,
    waiting_keyframe: IntCounter,
}

impl Engine {
    fn new(
        ctx: VideoContext,
        mixer: VideoMixer,
        decoders: DecodePool,
        snapshot: watch::Sender<VideoSnapshot>,
    ) -> Self {
        let seed = ctx
            .conference
            .bytes()
            .fold(0x9E37_79B9u32, |a, b| a.rotate_left(5) ^ u32::from(b));
        let counters = Counters {
            packets_in: ctx.metrics.rtp_packets.with_label_values(&["video_in"]),
            packets_out: ctx.metrics.rtp_packets.with_label_values(&["video_out"]),
            not_visible: ctx
                .metrics
                .video
                .frames_dropped
                .with_label_values(&["not_visible"]),
            waiting_keyframe: ctx
                .metrics
                .video
                .frames_dropped
                .with_label_values(&["waiting_keyframe"]),
        };
        Engine {
            content: ContentRelay::new(
                &ctx.conference,
                seed.rotate_left(17) | 1,
                ctx.metrics.clone(),
            ),
            layout: ctx.settings.layout,
            ctx,
            mixer,
            decoders,
            legs: HashMap::new(),
            sources: BTreeSet::new(),
            links: BTreeSet::new(),
            muted: BTreeSet::new(),
            snapshot,
            ssrc_seed: seed | 1,
            last_stats: VideoStats::default(),
            reported: (0, 0, 0),
            send_buf: Vec::with_capacity(1500),
            counters,
        }
    }

    fn run(&mut self, rx: Receiver<VideoInput>) {
        info!(conference = %self.ctx.conference, fps = self.ctx.settings.fps, "video started");
        let interval = Duration::from_secs_f64(1.0 / f64::from(self.ctx.settings.fps));
        let mut next_tick = Instant::now() + interval;
        let mut ticks: u64 = 0;
        'outer: loop {
            // Inputs until the tick is due.
            loop {
                let wait = next_tick.saturating_duration_since(Instant::now());
                if wait.is_zero() {
                    break;
                }
                match rx.recv_timeout(wait) {
                    Ok(VideoInput::Shutdown) => break 'outer,
                    Ok(input) => self.handle_input(input),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => break 'outer,
                }
            }
            let started = Instant::now();
            self.tick(started);
            ticks += 1;
            let m = &self.ctx.metrics.video;
            m.tick_seconds.observe(started.elapsed().as_secs_f64());
            // Paced output: the next tick is one interval after this one was
            // due. A tick that overran by more than a whole interval gives up
            // the ticks it missed (counted) rather than bursting them.
            next_tick += interval;
            let now = Instant::now();
            if now > next_tick + interval {
                let missed = (now - next_tick).as_secs_f64() / interval.as_secs_f64();
                m.frames_dropped
                    .with_label_values(&["late"])
                    .inc_by(missed as u64);
                next_tick = now + interval;
            }
            if ticks.is_multiple_of(SNAPSHOT_EVERY_TICKS) {
                self.publish();
            }
        }
        let ids: Vec<ParticipantId> = self.legs.keys().copied().collect();
        for id in ids {
            self.remove(id);
        }
        for port in self.content.clear() {
            self.ctx.ports.release(port);
        }
        self.report_gauges(0, 0, 0);
        info!(conference = %self.ctx.conference, "video ended");
    }

    fn next_ssrc(&mut self) -> u32 {
        let mut x = self.ssrc_seed;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.ssrc_seed = x;
        x
    }

    fn effective_layout(&self, id: ParticipantId) -> LayoutChoice {
        self.legs
            .get(&id)
            .and_then(|l| l.own_layout)
            .unwrap_or(self.layout)
    }

    /// Tells the mixer what `id` should receive, if anything.
    fn update_receiver(&mut self, id: ParticipantId) {
        let layout = self.effective_layout(id);
        let Some(leg) = self.legs.get(&id) else {
            return;
        };
        match leg.class {
            Some(class) if leg.we_send() => {
                self.mixer.set_receiver(
                    id,
                    ReceiverSettings {
                        layout,
                        class,
                        // Links neither: a cascade publishes the slides
                        // as a screen share of their own.
                        presentation_in_layout: self.ctx.settings.content_in_layout
                            && !self.content.has_channel(id)
                            && !self.links.contains(&id),
                    },
                );
            }
            _ => {
                let _ = self.mixer.remove_receiver(id);
            }
        }
    }

    fn handle_input(&mut self, input: VideoInput) {
        match input {
            VideoInput::Packet(pkt) => self.handle_packet(pkt),
            VideoInput::Decoded(d) => self.handle_decoded(d),
            VideoInput::Shutdown => {}
            VideoInput::AddSource { participant, name } => {
                if !self.links.contains(&participant) && self.sources.insert(participant) {
                    let _ = self.mixer.add_participant(participant, &name);
                }
            }
            VideoInput::Shown {
                participant,
                shown: false,
                ..
            } => {
                if self.sources.remove(&participant) {
                    let _ = self.mixer.remove_participant(participant);
                    self.publish();
                }
            }
            VideoInput::Shown {
                participant,
                name,
                shown: true,
                remote,
            } => {
                if !self.links.contains(&participant) && self.sources.insert(participant) {
                    let _ = self.mixer.add_participant(participant, &name);
                    self.mixer.set_source_remote(participant, remote);
                    let muted = self.muted.contains(&participant)
                        || self.legs.get(&participant).is_none_or(|l| !l.sends_to_us());
                    let _ = self.mixer.set_video_muted(participant, muted);
                    // Its decoder waits for a keyframe to show anything.
                    self.request_source_keyframe(participant, Instant::now());
                    self.publish();
                }
            }
            VideoInput::Side {
                participant,
                remote,
                link,
                rank,
            } => {
                self.mixer.set_source_remote(participant, remote);
                self.mixer.set_receiver_link(participant, link);
                self.mixer.set_link_rank(participant, rank);
                if link {
                    self.links.insert(participant);
                    self.sources.remove(&participant);
                    self.mixer.remove_source(participant);
                } else {
                    self.links.remove(&participant);
                }
                self.update_receiver(participant);
            }
            VideoInput::AddLeg(start) => self.add_leg(*start),
            VideoInput::AddContent(start) => {
                let id = start.participant;
                if let Some(port) = self.content.add_leg(*start) {
                    self.ctx.ports.release(port);
                }
                // It sees slides on its content channel, not in its layout.
                self.update_receiver(id);
            }
            VideoInput::UpdateContent {
                participant,
                stream,
            } => {
                self.content.update_leg(participant, stream);
                self.update_receiver(participant);
            }
            VideoInput::Presenter(presenter) => {
                let now = Instant::now();
                self.content.set_presenter(presenter, now);
                self.mixer.set_presentation(presenter.is_some());
                // The old presenter's pictures are no reference for the new one's.
                self.decoders.submit(DecodeJob::Reset {
                    participant: PRESENTATION,
                });
                self.content
                    .set_decode(self.mixer.presentation_visible(), now);
                self.publish();
            }
            VideoInput::UpdateLeg {
                participant,
                stream,
            } => {
                let max = self.ctx.settings.max_class;
                let Some(leg) = self.legs.get_mut(&participant) else {
                    return;
                };
                match stream {
                    Some(stream) => {
                        if stream.remote.is_some() {
                            leg.remote = stream.remote;
                            leg.remote_rtcp = stream.remote_rtcp;
                        }
                        leg.class = class_for(&stream, max);
                        leg.mode = mode_of(&stream);
                        leg.stream = stream;
                    }
                    None => leg.stream.direction = Direction::Inactive,
                }
                let sending = leg.sends_to_us();
                self.update_receiver(participant);
                let _ = self
                    .mixer
                    .set_video_muted(participant, !sending || self.muted.contains(&participant));
            }
            VideoInput::Remove { participant } => {
                self.remove(participant);
                if let Some(port) = self.content.remove(participant) {
                    self.ctx.ports.release(port);
                }
                if self.sources.remove(&participant) {
                    let _ = self.mixer.remove_participant(participant);
                }
                if self.links.remove(&participant) {
                    let _ = self.mixer.remove_receiver(participant);
                    self.mixer.set_receiver_link(participant, false);
                }
                self.muted.remove(&participant);
            }
            VideoInput::SpeakerOrder(order) => self.mixer.set_speaker_order(&order),
            VideoInput::Layout {
                participant: None,
                layout,
            } => {
                self.layout = layout;
                let ids: Vec<ParticipantId> = self.legs.keys().copied().collect();
                for id in ids {
                    self.update_receiver(id);
                }
                info!(conference = %self.ctx.conference, %layout, "conference layout");
                self.publish();
            }
            VideoInput::Layout {
                participant: Some(id),
                layout,
            } => {
                if let Some(leg) = self.legs.get_mut(&id) {
                    leg.own_layout = Some(layout);
                    self.update_receiver(id);
                    self.publish();
                }
            }
            VideoInput::CycleLayout { participant } => {
                let next = next_layout(self.effective_layout(participant));
                if let Some(leg) = self.legs.get_mut(&participant) {
                    leg.own_layout = Some(next);
                    info!(conference = %self.ctx.conference, participant = participant.0, layout = %next, "layout cycled");
                    self.update_receiver(participant);
                    self.publish();
                }
            }
            VideoInput::KeyframeRequest { participant } => {
                self.ctx
                    .metrics
                    .video
                    .keyframe_requests_received
                    .with_label_values(&["info"])
                    .inc();
                if let Some(leg) = self.legs.get_mut(&participant) {
                    leg.keyframe_requests_received += 1;
                }
                let _ = self.mixer.request_keyframe(participant);
            }
            VideoInput::Mute { participant, muted } => {
                if muted {
                    self.muted.insert(participant);
                } else {
                    self.muted.remove(&participant);
                }
                let sending = self.legs.get(&participant).is_some_and(|l| l.sends_to_us());
                let _ = self.mixer.set_video_muted(participant, muted || !sending);
            }
        }
    }

    fn add_leg(&mut self, s: LegStart) {
        if self.legs.contains_key(&s.participant) {
            for r in &s.readers {
                r.abort();
            }
            self.ctx.ports.release(s.port);
            return;
        }
        let ssrc = self.next_ssrc();
        let now = Instant::now();
        let leg = Leg {
            call_id: s.call_id,
            remote: s.stream.remote,
            remote_rtcp: s.stream.remote_rtcp,
            class: class_for(&s.stream, self.ctx.settings.max_class),
            mode: mode_of(&s.stream),
            stream: s.stream,
            port: s.port,
            rtp: s.rtp,
            rtcp: s.rtcp,
            readers: s.readers,
            remote_ssrc: None,
            depacketizer: H264Depacketizer::new(),
            decoding: false,
            waiting_keyframe: true,
            stats: ReceiveStats::new(90_000),
            last_sr: None,
            ssrc,
            seq: (ssrc >> 16) as u16,
            ts_base: ssrc.rotate_left(11),
            own_layout: None,
            received_size: None,
            source_class: None,
            limit: None,
            confirmed_limit_bps: None,
            last_keyframe_request: None,
            fir_seq: 0,
            last_rtcp: now,
            packets_out: 0,
            octets_out: 0,
            frames_received: 0,
            frames_decoded: 0,
            keyframes_received: 0,
            frames_sent: 0,
            keyframe_requests_sent: 0,
            keyframe_requests_received: 0,
            lost_reported: 0,
        };
        info!(conference = %self.ctx.conference, participant = s.participant.0,
              port = leg.port, class = ?leg.class, mode = ?leg.mode, direction = ?leg.stream.direction,
              "video leg joined");
        let sending = leg.sends_to_us();
        self.legs.insert(s.participant, leg);
        self.ctx.metrics.video.legs.inc();
        self.update_receiver(s.participant);
        let _ = self.mixer.set_video_muted(
            s.participant,
            !sending || self.muted.contains(&s.participant),
        );
    }

    fn remove(&mut self, id: ParticipantId) {
        let Some(leg) = self.legs.remove(&id) else {
            return;
        };
        for r in &leg.readers {
            r.abort();
        }
        if leg.decoding {
            self.decoders.submit(DecodeJob::Reset { participant: id });
        }
        if let Some((dest, socket)) = leg.rtcp_dest() {
            let mut buf = Vec::new();
            let _ = rtcp::write_bye(&mut buf, &[Ssrc(leg.ssrc)], None);
            let _ = socket.try_send_to(&buf, dest);
        }
        let _ = self.mixer.remove_receiver(id);
        let _ = self.mixer.set_video_muted(id, true);
        self.ctx.ports.release(leg.port);
        self.ctx.metrics.video.legs.dec();
    }

    fn handle_packet(&mut self, pkt: VideoPacket) {
        if pkt.content {
            self.content
                .handle_packet(pkt.participant, pkt.rtcp, &pkt.data, pkt.from, pkt.at);
            for data in self.content.take_access_units() {
                let job = DecodeJob::Decode {
                    participant: PRESENTATION,
                    data,
                };
                if !self.decoders.submit(job) {
                    self.ctx
                        .metrics
                        .video
                        .frames_dropped
                        .with_label_values(&["decode_queue_full"])
                        .inc();
                    // What follows references the picture just lost.
                    self.content.restart_decode(pkt.at);
                    break;
                }
            }
            return;
        }
        let metrics = self.ctx.metrics.clone();
        let visible = self.mixer.visible_sources().contains(&pkt.participant);
        let Some(leg) = self.legs.get_mut(&pkt.participant) else {
            return;
        };
        if pkt.rtcp || is_rtcp(&pkt.data) {
            match rtcp::parse_compound(&pkt.data) {
                Ok(packets) => {
                    if !leg.stream.rtcp_mux || pkt.rtcp {
                        leg.remote_rtcp = Some(pkt.from);
                    }
                    if let Some(sr) = rtcp_report::last_sr_of(&packets, pkt.at) {
                        leg.last_sr = Some(sr);
                    }
                    let method = packets.iter().find_map(|p| {
                        if p.is_pli() {
                            Some("pli")
                        } else if p.is_fir() {
                            Some("fir")
                        } else {
                            None
                        }
                    });
                    // A sender's TMMBN: the limits it now applies. Ours is
                    // the entry naming our SSRC.
                    if let Some(n) = packets
                        .iter()
                        .flat_map(|p| p.tmmbn())
                        .find(|e| e.ssrc == Ssrc(leg.ssrc))
                    {
                        leg.confirmed_limit_bps = Some(n.bitrate_bps);
                        if let Some(limit) = leg.limit.as_mut()
                            && n.bitrate_bps <= limit.bitrate_bps
                        {
                            limit.confirmed = true;
                        }
                    }
                    if let Some(method) = method {
                        metrics
                            .video
                            .keyframe_requests_received
                            .with_label_values(&[method])
                            .inc();
                        leg.keyframe_requests_received += 1;
                        let _ = self.mixer.request_keyframe(pkt.participant);
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
        if packet.payload_type != leg.stream.h264.pt {
            metrics.malformed("rtp", "unexpected_payload_type");
            return;
        }
        self.counters.packets_in.inc();
        if !leg.sends_to_us() {
            return;
        }
        leg.remote = Some(pkt.from);
        leg.remote_ssrc = Some(packet.ssrc.0);
        leg.stats.handle_rtp(pkt.at, &packet);
        leg.depacketizer.handle_rtp(&packet);
        while let Some(au) = leg.depacketizer.poll_access_unit() {
            leg.frames_received += 1;
            if au.keyframe {
                leg.keyframes_received += 1;
            }
            if !visible {
                // Nobody sees it: never decode what nobody needs. It gets a
                // keyframe request when it enters a pane.
                self.counters.not_visible.inc();
                leg.waiting_keyframe = true;
                continue;
            }
            if leg.waiting_keyframe && !au.keyframe {
                self.counters.waiting_keyframe.inc();
                continue;
            }
            if au.keyframe {
                // Optimistic: what follows the keyframe decodes unless the
                // decode thread says otherwise.
                leg.waiting_keyframe = false;
            }
            let job = DecodeJob::Decode {
                participant: pkt.participant,
                data: au.data,
            };
            if self.decoders.submit(job) {
                leg.decoding = true;
            } else {
                metrics
                    .video
                    .frames_dropped
                    .with_label_values(&["decode_queue_full"])
                    .inc();
                leg.waiting_keyframe = true;
                leg.decoding = false;
                self.decoders.submit(DecodeJob::Reset {
                    participant: pkt.participant,
                });
            }
        }
    }

    fn handle_decoded(&mut self, d: Decoded) {
        let metrics = &self.ctx.metrics.video;
        metrics.decode_seconds.observe(d.took.as_secs_f64());
        if d.participant == PRESENTATION {
            match d.result {
                Ok(Some(frame)) if self.mixer.presentation_visible() => {
                    metrics.frames_decoded.inc();
                    let _ = self.mixer.push_presentation_frame(frame);
                }
                Ok(_) => {}
                Err(e) => {
                    debug!(%e, "content decode error");
                    metrics
                        .frames_dropped
                        .with_label_values(&["decode_error"])
                        .inc();
                    // Start again from the presenter's next keyframe.
                    self.content.restart_decode(Instant::now());
                }
            }
            return;
        }
        let visible = self.mixer.visible_sources().contains(&d.participant);
        let Some(leg) = self.legs.get_mut(&d.participant) else {
            return;
        };
        match d.result {
            Ok(Some(frame)) if leg.decoding && visible => {
                leg.frames_decoded += 1;
                leg.received_size = Some((frame.width(), frame.height()));
                metrics.frames_decoded.inc();
                let _ = self.mixer.push_source_frame(d.participant, frame);
            }
            Ok(_) => {}
            Err(e) => {
                debug!(%e, participant = d.participant.0, "H.264 decode error");
                metrics
                    .frames_dropped
                    .with_label_values(&["decode_error"])
                    .inc();
                // The decode thread dropped the decoder: wait for a fresh start.
                leg.waiting_keyframe = true;
                leg.decoding = false;
            }
        }
    }

    /// Asks `id`'s sender for a keyframe, at most every
    /// [`SOURCE_KEYFRAME_INTERVAL`]: FIR or PLI as it offered, else SIP INFO.
    /// Sends `id` a TMMBR for its pane's class when that changed, and
    /// repeats it until the sender confirms with a TMMBN (a few times: a
    /// sender that never answers keeps the last one).
    fn limit_source(&mut self, id: ParticipantId, now: Instant) {
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        let (Some(class), Some(media)) = (leg.source_class, leg.remote_ssrc) else {
            return;
        };
        if !leg.stream.tmmbr || !leg.sends_to_us() {
            return;
        }
        let due = match leg.limit {
            Some(l) if l.class == class => {
                !l.confirmed
                    && l.tries < SOURCE_LIMIT_TRIES
                    && now.saturating_duration_since(l.sent_at) >= SOURCE_LIMIT_RETRY
            }
            _ => true,
        };
        if !due {
            return;
        }
        // Not more than the sender may send us anyway (our b=AS).
        let bitrate_bps = u64::from(class.default_bitrate_bps())
            .min(tandem_proto::sdp::offer_answer::VIDEO_RECEIVE_KBPS * 1000);
        let tries = match leg.limit {
            Some(l) if l.class == class => l.tries + 1,
            _ => 1,
        };
        leg.limit = Some(SourceLimit {
            class,
            bitrate_bps,
            sent_at: now,
            tries,
            confirmed: false,
        });
        let mut buf = leg.feedback_head(now);
        // 40 bytes: IPv4 + UDP + RTP headers, counted in the limit.
        rtcp::write_tmmbr(&mut buf, Ssrc(leg.ssrc), Ssrc(media), bitrate_bps, 40);
        if let Some((dest, socket)) = leg.rtcp_dest() {
            let _ = socket.try_send_to(&buf, dest);
        }
        if tries == 1 {
            self.ctx
                .metrics
                .video
                .source_limits_sent
                .with_label_values(&[class_metric_label(class)])
                .inc();
        }
    }

    fn request_source_keyframe(&mut self, id: ParticipantId, now: Instant) {
        let metrics = &self.ctx.metrics;
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        if !leg.sends_to_us()
            || leg
                .last_keyframe_request
                .is_some_and(|t| now.saturating_duration_since(t) < SOURCE_KEYFRAME_INTERVAL)
        {
            return;
        }
        leg.last_keyframe_request = Some(now);
        leg.keyframe_requests_sent += 1;
        let media = Ssrc(leg.remote_ssrc.unwrap_or(0));
        let mut buf = leg.feedback_head(now);
        let mut methods = Vec::with_capacity(2);
        if leg.stream.fir {
            leg.fir_seq = leg.fir_seq.wrapping_add(1);
            rtcp::write_fir(&mut buf, Ssrc(leg.ssrc), media, leg.fir_seq);
            methods.push("fir");
        }
        if leg.stream.pli || !leg.stream.fir {
            // Also when it offered no feedback at all: many senders honour
            // PLI regardless, and it costs one small packet.
            rtcp::write_pli(&mut buf, Ssrc(leg.ssrc), media);
            methods.push("pli");
        }
        if let Some((dest, socket)) = leg.rtcp_dest() {
            let _ = socket.try_send_to(&buf, dest);
        }
        if !leg.stream.pli && !leg.stream.fir {
            // RFC 5168: room systems without RTCP feedback take SIP INFO.
            let _ = self
                .ctx
                .events
                .try_send(ConferenceEvent::PictureFastUpdate {
                    call_id: leg.call_id.clone(),
                });
            methods.push("info");
        }
        for m in methods {
            metrics
                .video
                .keyframes_requested
                .with_label_values(&[m])
                .inc();
        }
    }

    fn tick(&mut self, now: Instant) {
        self.content.tick(now);
        // Decode the slides only while somebody sees them in a layout.
        self.content
            .set_decode(self.mixer.presentation_visible(), now);
        let metrics = self.ctx.metrics.clone();
        let started = Instant::now();
        let outputs = match self.mixer.tick() {
            Ok(o) => o,
            Err(e) => {
                warn!(%e, conference = %self.ctx.conference, "video tick failed");
                metrics
                    .video
                    .frames_dropped
                    .with_label_values(&["encode_error"])
                    .inc();
                Vec::new()
            }
        };
        let stats = self.mixer.stats();
        if stats.views > 0 {
            let per_view = started.elapsed().as_secs_f64() / stats.views as f64;
            for _ in 0..stats.views {
                metrics.video.encode_seconds.observe(per_view);
            }
        }
        let d = |now: u64, before: u64| now.saturating_sub(before);
        metrics
            .video
            .frames_composed
            .inc_by(d(stats.frames_encoded, self.last_stats.frames_encoded));
        metrics
            .video
            .keyframes_sent
            .inc_by(d(stats.keyframes, self.last_stats.keyframes));
        metrics
            .video
            .frames_dropped
            .with_label_values(&["skipped"])
            .inc_by(d(stats.frames_skipped, self.last_stats.frames_skipped));
        metrics
            .video
            .frames_dropped
            .with_label_values(&["encode_error"])
            .inc_by(d(stats.encode_errors, self.last_stats.encode_errors));
        self.last_stats = stats;

        // Send: packetize each view once per packetization mode in use.
        let fps = u64::from(self.ctx.settings.fps);
        for out in &outputs {
            let mut packets: [Option<Vec<Vec<u8>>>; 2] = [None, None];
            let ts_offset = (out.tick * 90_000 / fps) as u32;
            for rx in &out.receivers {
                let Some(leg) = self.legs.get_mut(rx) else {
                    continue;
                };
                let Some(dest) = leg.remote.filter(|_| leg.we_send()) else {
                    continue;
                };
                let slot = usize::from(leg.mode == PacketizationMode::NonInterleaved);
                if packets[slot].is_none() {
                    match H264Packetizer::new(VIDEO_MTU, leg.mode).packetize(&out.encoded.annexb) {
                        Ok(p) => packets[slot] = Some(p),
                        Err(e) => {
                            debug!(%e, "packetize");
                            metrics
                                .video
                                .frames_dropped
                                .with_label_values(&["packetize_error"])
                                .inc();
                            packets[slot] = Some(Vec::new());
                        }
                    }
                }
                let Some(payloads) = packets[slot].as_ref() else {
                    continue;
                };
                if payloads.is_empty() {
                    continue;
                }
                let ts = leg.ts_base.wrapping_add(ts_offset);
                let mut ok = true;
                for (i, payload) in payloads.iter().enumerate() {
                    self.send_buf.clear();
                    RtpHeader {
                        marker: i + 1 == payloads.len(),
                        payload_type: leg.stream.h264.pt,
                        sequence: leg.seq,
                        timestamp: MediaTime(ts),
                        ssrc: Ssrc(leg.ssrc),
                    }
                    .write(payload, &mut self.send_buf);
                    leg.seq = leg.seq.wrapping_add(1);
                    if leg.rtp.try_send_to(&self.send_buf, dest).is_ok() {
                        leg.packets_out += 1;
                        leg.octets_out += payload.len() as u64;
                    } else {
                        ok = false;
                    }
                }
                self.counters.packets_out.inc_by(payloads.len() as u64);
                if ok {
                    leg.frames_sent += 1;
                    metrics.video.frames_sent.inc();
                } else {
                    metrics
                        .video
                        .frames_dropped
                        .with_label_values(&["send_error"])
                        .inc();
                }
            }
        }

        // Sources that entered a pane, and visible ones whose stream broke,
        // need a keyframe; sources nobody sees lose their decoder.
        for id in self.mixer.take_source_keyframe_requests() {
            if let Some(leg) = self.legs.get_mut(&id) {
                leg.waiting_keyframe = true;
            }
            self.request_source_keyframe(id, now);
        }
        let visible = self.mixer.visible_sources().clone();
        let mut stale = Vec::new();
        for (id, leg) in self.legs.iter_mut() {
            if !visible.contains(id) {
                if std::mem::take(&mut leg.decoding) {
                    self.decoders.submit(DecodeJob::Reset { participant: *id });
                }
                leg.waiting_keyframe = true;
            } else if leg.sends_to_us()
                && leg.stats.packets_received() > 0
                && (leg.waiting_keyframe || leg.depacketizer.needs_keyframe())
            {
                stale.push(*id);
            }
        }
        for id in stale {
            self.request_source_keyframe(id, now);
        }

        // Senders are asked for what their largest pane needs (TMMBR), so
        // that a camera shown at 320x180 is not decoded at 720p.
        for (id, class) in self.mixer.take_source_class_requests() {
            if let Some(leg) = self.legs.get_mut(&id) {
                leg.source_class = Some(class);
            }
        }
        let ids: Vec<ParticipantId> = self.legs.keys().copied().collect();
        for id in ids {
            if visible.contains(&id) {
                self.limit_source(id, now);
            }
        }

        // RTCP reports, loss counters.
        let wall = SystemTime::now();
        for leg in self.legs.values_mut() {
            if now.saturating_duration_since(leg.last_rtcp) < RTCP_INTERVAL {
                continue;
            }
            leg.last_rtcp = now;
            let lost = i64::from(leg.stats.cumulative_lost());
            if lost > leg.lost_reported {
                metrics.rtp_lost.inc_by((lost - leg.lost_reported) as u64);
            }
            leg.lost_reported = lost;
            let sent = rtcp_report::Sent {
                ssrc: leg.ssrc,
                rtp_ts: leg
                    .ts_base
                    .wrapping_add((stats.ticks * 90_000 / fps) as u32),
                packets: leg.packets_out,
                octets: leg.octets_out,
            };
            let mut buf = Vec::with_capacity(128);
            if rtcp_report::write_report(&mut buf, &sent, &mut leg.stats, leg.last_sr, now, wall)
                && let Some((dest, socket)) = leg.rtcp_dest()
            {
                let _ = socket.try_send_to(&buf, dest);
            }
        }
    }

    /// Moves this conference's share of the node gauges to the given values.
    fn report_gauges(&mut self, decoders: i64, encoders: i64, views: i64) {
        let m = &self.ctx.metrics.video;
        m.decoders.add(decoders - self.reported.0);
        m.encoders.add(encoders - self.reported.1);
        m.views.add(views - self.reported.2);
        self.reported = (decoders, encoders, views);
    }

    fn publish(&mut self) {
        let stats = self.mixer.stats();
        let decoders = self.legs.values().filter(|l| l.decoding).count();
        self.report_gauges(decoders as i64, stats.encoders as i64, stats.views as i64);
        let visible = self.mixer.visible_sources();
        let legs = self
            .legs
            .iter()
            .map(|(id, leg)| {
                (
                    id.0,
                    LegVideoSnapshot {
                        layout: leg.own_layout.unwrap_or(self.layout).to_string(),
                        resolution: leg.class.filter(|_| leg.we_send()).map(class_label),
                        rtp_port: leg.port,
                        visible: visible.contains(id),
                        frames_received: leg.frames_received,
                        frames_decoded: leg.frames_decoded,
                        keyframes_received: leg.keyframes_received,
                        frames_sent: leg.frames_sent,
                        packets_lost: i64::from(leg.stats.cumulative_lost()),
                        keyframe_requests_sent: leg.keyframe_requests_sent,
                        keyframe_requests_received: leg.keyframe_requests_received,
                        received_resolution: leg.received_size.map(|(w, h)| format!("{w}x{h}")),
                        requested_resolution: leg
                            .limit
                            .filter(|_| visible.contains(id))
                            .map(|l| class_label(l.class)),
                        confirmed_limit_bps: leg.confirmed_limit_bps,
                    },
                )
            })
            .collect();
        self.snapshot.send_replace(VideoSnapshot {
            layout: self.layout.to_string(),
            views: stats.views,
            encoders: stats.encoders,
            decoders,
            legs,
            content: self.content.snapshot(Instant::now()),
        });
    }
}

fn mode_of(stream: &VideoStream) -> PacketizationMode {
    PacketizationMode::from_sdp(stream.h264.params.packetization_mode)
        .unwrap_or(PacketizationMode::SingleNal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_layout_cycle_visits_every_layout_and_wraps() {
        let mut seen = Vec::new();
        let mut l = LayoutChoice::Auto;
        for _ in 0..LAYOUT_CYCLE.len() {
            seen.push(l);
            l = next_layout(l);
        }
        assert_eq!(l, LayoutChoice::Auto);
        for layout in Layout::ALL {
            assert!(seen.contains(&LayoutChoice::Fixed(layout)), "{layout}");
        }
    }
}
