//! The synthetic room system: one SIP call carrying real encoded audio (a
//! chosen tone, or quiet background noise), which records what it hears —
//! and, with [`RoomSystemConfig::with_video`], H.264 video of a chosen colour,
//! keeping the last picture it saw.
//!
//! Each [`RoomSystem`] is a handle to one tokio task (the driver) that owns
//! the leg's UDP sockets (SIP, RTP, and video RTP when video is offered), the
//! [`Uac`] signalling core, the audio encoder and decoder and the video
//! [`VideoSender`]/[`VideoReceiver`] cores, and runs a `select!` over the
//! sockets, the UAC's timer, the packet and picture clocks and a command
//! channel. The handle talks to it with [`Command`]s. What the handle reads
//! synchronously — the recording, the last picture and the counters — sits
//! behind a std `Mutex`: it is held for a memcpy (or an `Arc` swap) at most,
//! never across an `.await`, and `heard()`/`seen()`/`stats()` must not need a
//! runtime.
//!
//! Video encoding and decoding run on the driver task: at the default
//! 320x180 a picture costs well under a millisecond, so the audio clock on
//! the same task does not notice.
//!
//! ## Presenting content
//!
//! With [`CallOptions::content`] the room offers a presentation channel as
//! Polycom and Cisco room systems do: a second H.264 m-line
//! (`a=content:slides`) and a BFCP m-line (see [`sdp::offer_with_content`]).
//! The content m-line is a second `VideoLeg` (its own socket, sender and
//! receiver cores); floor control is a [`FloorClient`] core next to a TCP
//! connection to the node, made on the first [`RoomSystem::request_floor`]
//! and kept for the call. The content sender runs only while the floor is
//! granted (and we have not released it): a grant starts it on a keyframe, a
//! revocation or release stops it. Whatever arrives on the content port is
//! decoded and kept ([`RoomSystem::content_seen_colour`]); the first packet
//! of a new content stream is answered with a PLI, as a room system asks for
//! a keyframe when a presentation starts.
//!
//! The floor's state goes to the handle through a `watch` channel, so a test
//! can await a state ([`RoomSystem::wait_for_floor`]) without polling.
//!
//! Dropping the handle hangs up (the driver sees its command channel close).

use std::collections::VecDeque;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Interval, MissedTickBehavior};

use crate::bfcp::{FloorClient, FloorState, FloorStats};
use crate::codec::{self, Codec, Decoder, Encoder};
use crate::error::{Error, Result};
use crate::perceive::Heard;
use crate::rtp::{self, RtpHeader, SequenceTracker};
use crate::sdp::{self, BfcpTransport, ContentAnswer, ContentOffer, VideoOffer};
use crate::sip::{CallState, TRANSACTION_TIMEOUT, Uac, UacConfig, UacEvent};
use crate::video::rtcp::{self, KeyframeRequest};
use crate::video::{
    Picture, Rgb, VideoClip, VideoReceiver, VideoSender, VideoSource, VideoSpec, VideoStats,
    WallClock,
};

/// How one synthetic room system calls in and what it says.
#[derive(Debug, Clone)]
pub struct RoomSystemConfig {
    /// The node's SIP address (UDP).
    pub server: SocketAddr,
    /// The Request-URI user part: the conference ID.
    pub conference: String,
    /// From display name (and, made SIP-safe, the user part).
    pub name: String,
    /// The address our sockets bind to and the SDP names.
    pub local_ip: IpAddr,
    pub codec: Codec,
    /// `Some(hz)`: send a sine at `hz`. `None`: a quiet room — packets of
    /// low-level noise (about -66 dBFS), as real endpoints keep sending.
    pub tone_hz: Option<f32>,
    /// Of full scale, 0.0..=1.0.
    pub amplitude: f32,
    pub ptime_ms: u32,
    /// `Some`: offer H.264 video and send these pictures. `None`: audio only.
    pub video: Option<VideoSource>,
}

impl RoomSystemConfig {
    /// Opus, 20 ms, silent, from 127.0.0.1.
    pub fn new(server: SocketAddr, conference: impl Into<String>, name: impl Into<String>) -> Self {
        RoomSystemConfig {
            server,
            conference: conference.into(),
            name: name.into(),
            local_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            codec: Codec::Opus,
            tone_hz: None,
            amplitude: 0.25,
            ptime_ms: 20,
            video: None,
        }
    }

    pub fn with_tone(mut self, hz: f32, amplitude: f32) -> Self {
        self.tone_hz = Some(hz);
        self.amplitude = amplitude;
        self
    }

    pub fn with_codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Offers H.264 video and sends a live-encoded picture of `spec`.
    pub fn with_video(mut self, spec: VideoSpec) -> Self {
        self.video = Some(VideoSource::Live(spec));
        self
    }

    /// Offers H.264 video and sends live-encoded pictures of `spec`'s size
    /// that show their capture time on `clock` (the glass-to-glass
    /// pattern of [`crate::video::clock`]).
    pub fn with_clock_video(mut self, spec: VideoSpec, clock: WallClock) -> Self {
        self.video = Some(VideoSource::Clock { spec, clock });
        self
    }

    /// Offers H.264 video and replays `clip` (encoded once, shared by many
    /// legs: load runs).
    pub fn with_video_replay(mut self, clip: Arc<VideoClip>) -> Self {
        self.video = Some(VideoSource::Replay(clip));
        self
    }
}

/// Knobs a load run needs and a test rarely does.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// Decode and record what arrives. Off: packets are only counted (a load
    /// run decodes a sample of legs and spares the CPU it shares with the node).
    pub listen: bool,
    /// How much heard audio to keep (the newest wins).
    pub keep: Duration,
    /// Give up on the INVITE after this long without a final response.
    pub invite_timeout: Duration,
    /// Decode arriving video and keep the last picture. Off: video packets,
    /// access units and keyframes are only counted (PLIs still go out).
    /// Content video follows the same setting.
    pub decode_video: bool,
    /// `Some`: offer a presentation channel (content video and BFCP) next
    /// to the main video, which must be configured too. Kept here rather
    /// than on [`RoomSystemConfig`], whose fields callers fill in by name.
    pub content: Option<ContentConfig>,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            listen: true,
            keep: Duration::from_secs(10),
            invite_timeout: TRANSACTION_TIMEOUT,
            decode_video: true,
            content: None,
        }
    }
}

impl CallOptions {
    /// Offers a presentation channel (see [`ContentConfig`]).
    pub fn with_content(mut self, content: ContentConfig) -> Self {
        self.content = Some(content);
        self
    }
}

/// A room system's presentation channel: what it offers and what it shows
/// while it holds the floor.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentConfig {
    /// The presentation, live-encoded: [`VideoSpec::colour`] with the
    /// moving square of main video along the bottom tenth (measure above
    /// it), at `spec`'s size, rate and bitrate (the offer's `b=AS`).
    pub spec: VideoSpec,
    /// The content m-line's `a=label`, named by the offered
    /// `a=floorid:<floor> mstrm:<label>`.
    pub label: String,
    /// The floor offered. The answer's `a=floorid` for our label is the
    /// one requested.
    pub floor_id: u16,
}

impl ContentConfig {
    /// Slides of one colour: 1280x720 at 5 fps, 1 Mbit/s, label 3, floor 1
    /// (what Polycom room systems offer).
    pub fn new(colour: Rgb) -> Self {
        ContentConfig {
            spec: VideoSpec::new(colour)
                .with_size(1280, 720)
                .with_fps(5.0)
                .with_bitrate(1_000_000),
            label: "3".to_owned(),
            floor_id: 1,
        }
    }

    /// Another size, rate or bitrate (a small picture keeps tests cheap).
    pub fn with_spec(mut self, spec: VideoSpec) -> Self {
        self.spec = spec;
        self
    }
}

/// Counters of one leg.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaStats {
    pub packets_sent: u64,
    pub packets_received: u64,
    /// From gaps in the received sequence numbers (RFC 3550 A.3).
    pub packets_lost: u64,
    pub bytes_received: u64,
    /// Datagrams on the RTP port that did not parse or did not decode.
    pub undecodable: u64,
    /// INVITE sent → 200 OK received.
    pub join_latency: Duration,
    /// INVITE sent → first RTP packet received.
    pub first_audio_latency: Option<Duration>,
    /// What the answer chose.
    pub codec: Option<Codec>,
    pub payload_type: Option<u8>,
    /// Where we send RTP (from the answer).
    pub remote_rtp: Option<SocketAddr>,
    /// The node hung up on us.
    pub ended_by_remote: bool,
    /// The `Reason` header (RFC 3326) of the node's BYE.
    pub bye_reason: Option<String>,
    /// DTMF digits sent (RFC 4733 events or SIP INFO).
    pub dtmf_sent: u64,
}

enum Command {
    SetTone {
        hz: Option<f32>,
        amplitude: f32,
    },
    SetVideoPaused(bool),
    SetVideoColour(Rgb),
    RequestKeyframe(KeyframeRequest),
    SetContentColour(Rgb),
    RequestContentKeyframe(KeyframeRequest),
    RequestFloor(oneshot::Sender<Result<()>>),
    ReleaseFloor(oneshot::Sender<Result<()>>),
    Dtmf {
        digits: String,
        method: DtmfMethod,
    },
    Hangup(oneshot::Sender<Result<()>>),
    /// Without SDP: where the content channel goes, once known.
    StartContent(sdp::VideoAnswer),
    /// The next picture of the camera (`false`) or the slides (`true`) is
    /// an IDR: a keyframe request that came by signalling.
    SendKeyframe {
        content: bool,
    },
    /// Without BFCP: the floor as the call's signalling says.
    SetFloor(FloorState),
}

/// How [`RoomSystem::send_dtmf`] signals key presses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfMethod {
    /// RFC 4733 telephone-event packets in the audio stream (100 ms per key,
    /// three end packets, 100 ms between keys).
    Rfc4733,
    /// One SIP INFO `application/dtmf-relay` per key, 200 ms apart.
    Info,
}

/// RFC 4733 sending: ticks of the event, and of the pause after it.
const DTMF_TICKS: u32 = 5;
const DTMF_END_PACKETS: u32 = 3;
const DTMF_GAP_TICKS: u32 = 5;

/// The key press being sent.
struct DtmfTone {
    event: u8,
    /// The event's RTP timestamp (its start).
    timestamp: u32,
    /// Packets sent so far for it (events then end packets), then gap ticks.
    tick: u32,
}

/// RFC 4733 event code of a key.
fn dtmf_event(key: char) -> Option<u8> {
    Some(match key {
        '0'..='9' => key as u8 - b'0',
        '*' => 10,
        '#' => 11,
        'A'..='D' => key as u8 - b'A' + 12,
        _ => return None,
    })
}

/// The newest `cap` decoded samples.
#[derive(Debug)]
struct Recording {
    samples: VecDeque<f32>,
    cap: usize,
    sample_rate: u32,
}

impl Recording {
    fn push(&mut self, samples: &[f32]) {
        let over = (self.samples.len() + samples.len()).saturating_sub(self.cap);
        self.samples.drain(..over.min(self.samples.len()));
        let skip = samples.len().saturating_sub(self.cap);
        self.samples.extend(&samples[skip..]);
    }
}

/// What the handle reads of one video m-line (main or content).
#[derive(Debug, Default)]
struct VideoView {
    stats: VideoStats,
    /// The newest decoded picture; an `Arc` so readers take it without
    /// copying under the lock.
    seen: Option<Arc<Picture>>,
    /// When it was decoded.
    seen_at: Option<Instant>,
}

#[derive(Debug)]
struct Observed {
    recording: Recording,
    stats: MediaStats,
    sequence: SequenceTracker,
    video: VideoView,
    content: VideoView,
    /// What the answer said of content (after it, with content offered).
    content_answer: Option<ContentAnswer>,
    floor: FloorStats,
}

#[derive(Debug)]
struct Shared {
    /// Sent on every tick; an atomic keeps the send path lock-free.
    packets_sent: AtomicU64,
    observed: Mutex<Observed>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Observed> {
        // A poisoned lock only means a panic elsewhere mid-update of counters;
        // reading them is still fine.
        self.observed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One synthetic room system in a call. See the module docs.
#[derive(Debug)]
/// Clones are handles on the same call (it hangs up when the last goes).
#[derive(Clone)]
pub struct RoomSystem {
    call_id: String,
    local_sip: SocketAddr,
    local_rtp: SocketAddr,
    local_video: Option<SocketAddr>,
    local_content: Option<SocketAddr>,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    floor: watch::Receiver<FloorState>,
}

impl RoomSystem {
    /// Places the call; returns once the 200 OK is ACKed and media flows.
    pub async fn call(cfg: RoomSystemConfig) -> Result<RoomSystem> {
        Self::call_with(cfg, CallOptions::default()).await
    }

    pub async fn call_with(cfg: RoomSystemConfig, options: CallOptions) -> Result<RoomSystem> {
        let (driver, room, established_rx) = Self::build(cfg, options, true).await?;
        tokio::spawn(driver.run());
        match established_rx.await {
            Ok(Ok(())) => Ok(room),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Ended),
        }
    }

    /// The media of a room system whose call signalling is somebody
    /// else's (an H.323 caller in a test): its sockets are bound, so their
    /// addresses can go into that signalling's offer;
    /// [`PreparedRoomSystem::start`] starts the media once it is answered.
    /// Content is started with [`RoomSystem::start_content`] and presented
    /// while [`RoomSystem::set_floor_state`] says `Granted`.
    pub async fn prepare(
        cfg: RoomSystemConfig,
        options: CallOptions,
    ) -> Result<PreparedRoomSystem> {
        let (driver, room, _) = Self::build(cfg, options, false).await?;
        Ok(PreparedRoomSystem { driver, room })
    }

    async fn build(
        cfg: RoomSystemConfig,
        options: CallOptions,
        sip: bool,
    ) -> Result<(Driver, RoomSystem, oneshot::Receiver<Result<()>>)> {
        if !cfg.codec.supports_ptime(cfg.ptime_ms) {
            return Err(Error::Config(format!(
                "ptime {} ms with {}",
                cfg.ptime_ms, cfg.codec
            )));
        }
        if !(0.0..=1.0).contains(&cfg.amplitude) {
            return Err(Error::Config(format!(
                "amplitude {} outside 0..=1",
                cfg.amplitude
            )));
        }
        if let Some(hz) = cfg.tone_hz
            && !(hz > 0.0 && hz < cfg.codec.decode_rate() as f32 / 2.0)
        {
            return Err(Error::Config(format!(
                "tone {hz} Hz out of band for {}",
                cfg.codec
            )));
        }
        if let Some(VideoSource::Live(spec) | VideoSource::Clock { spec, .. }) = &cfg.video {
            spec.validate()?;
        }
        if let Some(content) = &options.content {
            if cfg.video.is_none() {
                return Err(Error::Config(
                    "content needs main video (RoomSystemConfig::with_video)".into(),
                ));
            }
            content.spec.validate()?;
        }
        let sip_socket = UdpSocket::bind((cfg.local_ip, 0)).await?;
        let rtp = UdpSocket::bind((cfg.local_ip, 0)).await?;
        let local_sip = sip_socket.local_addr()?;
        let local_rtp = rtp.local_addr()?;

        // Video: its own socket, and both cores built before the INVITE so a
        // bad setting fails the call before the node sees it. Content is a
        // second such leg.
        let video = match &cfg.video {
            Some(source) => Some(
                VideoLeg::open(cfg.local_ip, source, sdp::H264_PT, options.decode_video).await?,
            ),
            None => None,
        };
        let local_video = video.as_ref().map(|v| v.local);
        let content = match &options.content {
            Some(content) => {
                let mut leg = VideoLeg::open(
                    cfg.local_ip,
                    &VideoSource::Live(content.spec),
                    sdp::CONTENT_PT,
                    options.decode_video,
                )
                .await?;
                leg.ask_on_new_stream = true;
                Some(leg)
            }
            None => None,
        };
        let local_content = content.as_ref().map(|c| c.local);

        let call_id = format!("{:016x}@tandem-loadtest", rand::random::<u64>());
        let video_offer = cfg
            .video
            .as_ref()
            .zip(local_video)
            .map(|(source, local)| VideoOffer {
                port: local.port(),
                bitrate_bps: source.spec().bitrate_bps,
            });
        let session_id = rand::random::<u32>().into();
        let offer = match (video_offer, &options.content, local_content) {
            (Some(video), Some(content), Some(local)) => sdp::offer_with_content(
                cfg.local_ip,
                local_rtp.port(),
                cfg.codec,
                cfg.ptime_ms,
                session_id,
                video,
                &ContentOffer {
                    port: local.port(),
                    bitrate_bps: content.spec.bitrate_bps,
                    label: content.label.clone(),
                    floor_id: content.floor_id,
                    bfcp_port: 9,
                },
            ),
            _ => sdp::offer_with_video(
                cfg.local_ip,
                local_rtp.port(),
                cfg.codec,
                cfg.ptime_ms,
                session_id,
                video_offer,
            ),
        };
        let invite_sent = Instant::now();
        let uac = sip.then(|| {
            Uac::new(
                UacConfig {
                    server: cfg.server,
                    local: local_sip,
                    conference: cfg.conference.clone(),
                    name: cfg.name.clone(),
                    offer,
                    call_id: call_id.clone(),
                    local_tag: format!("{:08x}", rand::random::<u32>()),
                    branch_seed: format!("{:016x}", rand::random::<u64>()),
                    invite_timeout: options.invite_timeout,
                },
                invite_sent,
            )
        });

        let shared = Arc::new(Shared {
            packets_sent: AtomicU64::new(0),
            observed: Mutex::new(Observed {
                recording: Recording {
                    samples: VecDeque::new(),
                    cap: (options.keep.as_secs_f64() * f64::from(cfg.codec.decode_rate())) as usize,
                    sample_rate: cfg.codec.decode_rate(),
                },
                stats: MediaStats::default(),
                sequence: SequenceTracker::default(),
                video: VideoView::default(),
                content: VideoView::default(),
                content_answer: None,
                floor: FloorStats::default(),
            }),
        });
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (floor_tx, floor_rx) = watch::channel(FloorState::Idle);
        let (established_tx, established_rx) = oneshot::channel();
        let driver = Driver {
            uac,
            ended: false,
            sip: sip_socket,
            rtp,
            shared: shared.clone(),
            commands: command_rx,
            commands_open: true,
            established: Some(established_tx),
            hangups: Vec::new(),
            invite_sent,
            codec: cfg.codec,
            answered_pt: None,
            source: Source {
                codec: cfg.codec,
                frame: vec![0; codec::frame_samples(cfg.codec, cfg.ptime_ms)],
                hz: cfg.tone_hz,
                amplitude: cfg.amplitude,
                phase: 0.0,
                encoder: None,
                comfort: codec::comfort_frames(cfg.codec, cfg.ptime_ms)?,
                comfort_at: 0,
            },
            decoder: if options.listen {
                Some(Decoder::new(cfg.codec)?)
            } else {
                None
            },
            decoded: Vec::new(),
            ptime: Duration::from_millis(cfg.ptime_ms.into()),
            media: None,
            video,
            video_ticker: None,
            content,
            content_ticker: None,
            content_label: options.content.as_ref().map(|c| c.label.clone()),
            floor: if options.content.is_some() {
                Floor::Unanswered
            } else {
                Floor::NotOffered
            },
            floor_read: None,
            floor_connecting: None,
            floor_state: floor_tx,
            dtmf_pt: None,
            dtmf_queue: VecDeque::new(),
            dtmf_tone: None,
            info_queue: VecDeque::new(),
            info_ticker: None,
        };
        let room = RoomSystem {
            call_id,
            local_sip,
            local_rtp,
            local_video,
            local_content,
            shared,
            commands,
            floor: floor_rx,
        };
        Ok((driver, room, established_rx))
    }

    /// Without SDP: the content channel's far end (the node's address and
    /// payload type), once the call's signalling knows it.
    pub fn start_content(&self, answer: sdp::VideoAnswer) {
        let _ = self.commands.send(Command::StartContent(answer));
    }

    /// A keyframe request that came by the call's signalling (H.245
    /// videoFastUpdatePicture): the next picture of the camera, or of the
    /// slides (`content`), is an IDR.
    pub fn send_keyframe(&self, content: bool) {
        let _ = self.commands.send(Command::SendKeyframe { content });
    }

    /// Without BFCP: the floor, as the call's signalling (the H.239
    /// token) says; content is sent while it is `Granted`.
    pub fn set_floor_state(&self, state: FloorState) {
        let _ = self.commands.send(Command::SetFloor(state));
    }

    /// Changes what this room sends from the next packet on.
    pub fn set_tone(&self, tone_hz: Option<f32>, amplitude: f32) {
        let _ = self.commands.send(Command::SetTone {
            hz: tone_hz,
            amplitude: amplitude.clamp(0.0, 1.0),
        });
    }

    /// What was heard since the last [`RoomSystem::mark`] (at most
    /// [`CallOptions::keep`] of it). Empty when not listening.
    pub fn heard(&self) -> Heard {
        let observed = self.shared.lock();
        let r = &observed.recording;
        Heard::from_samples(r.samples.iter().copied().collect(), r.sample_rate)
    }

    /// Starts a new analysis window: forgets what was heard so far.
    pub fn mark(&self) {
        self.shared.lock().recording.samples.clear();
    }

    pub fn stats(&self) -> MediaStats {
        let mut stats = self.shared.lock().stats.clone();
        stats.packets_sent = self.shared.packets_sent.load(Ordering::Relaxed);
        stats
    }

    /// False once either side has hung up.
    pub fn is_active(&self) -> bool {
        !self.commands.is_closed() && !self.shared.lock().stats.ended_by_remote
    }

    /// Sends BYE and waits for its final response. A call the node already
    /// ended is not an error.
    pub async fn hangup(self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Hangup(tx)).is_err() {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    pub fn local_sip_addr(&self) -> SocketAddr {
        self.local_sip
    }

    pub fn local_rtp_addr(&self) -> SocketAddr {
        self.local_rtp
    }

    /// The video RTP (and RTCP) socket, when video was offered.
    pub fn local_video_addr(&self) -> Option<SocketAddr> {
        self.local_video
    }

    /// Stops (`true`) or resumes sending pictures — a source that freezes
    /// mid-call. Keyframe requests that arrive meanwhile are served by the
    /// first picture after the resume.
    pub fn set_video_paused(&self, paused: bool) {
        let _ = self.commands.send(Command::SetVideoPaused(paused));
    }

    /// Changes the live picture's colour from the next picture on (no
    /// effect on a replayed clip).
    pub fn set_video_colour(&self, colour: Rgb) {
        let _ = self.commands.send(Command::SetVideoColour(colour));
    }

    /// Presses `digits` (0-9, `*`, `#`, A-D), one after the other, by
    /// `method`. Returns at once; the keys go out over the next moments
    /// (about 300 ms per key in band, 200 ms by INFO).
    pub fn send_dtmf(&self, digits: &str, method: DtmfMethod) {
        let _ = self.commands.send(Command::Dtmf {
            digits: digits.to_owned(),
            method,
        });
    }

    /// Sends a PLI or a FIR for the video we receive now (not rate limited;
    /// nothing happens before the first video packet names its SSRC).
    pub fn request_keyframe(&self, kind: KeyframeRequest) {
        let _ = self.commands.send(Command::RequestKeyframe(kind));
    }

    /// Video counters (all zero without video).
    pub fn video_stats(&self) -> VideoStats {
        self.shared.lock().video.stats.clone()
    }

    /// The last picture decoded, if any.
    pub fn seen(&self) -> Option<Arc<Picture>> {
        self.shared.lock().video.seen.clone()
    }

    /// The last picture decoded and when it was (the moment its access
    /// unit was complete and decoded, on the call's task).
    pub fn seen_at(&self) -> Option<(Arc<Picture>, Instant)> {
        let observed = self.shared.lock();
        observed.video.seen.clone().zip(observed.video.seen_at)
    }

    /// The average colour of a rectangle of the last picture decoded, in
    /// fractions of the picture (`0.0..=1.0`: `(0.0, 0.0, 0.5, 1.0)` is the
    /// left half). `None` before the first picture, or for an empty rectangle.
    pub fn seen_colour(&self, x0: f32, y0: f32, x1: f32, y1: f32) -> Option<Rgb> {
        self.seen()?.average_colour(x0, y0, x1, y1)
    }

    /// Writes the last picture decoded to `path` as a PPM, for a person to
    /// look at when a test fails.
    pub fn save_seen(&self, path: impl AsRef<Path>) -> Result<()> {
        self.seen()
            .ok_or_else(|| Error::Video("no picture decoded yet".into()))?
            .save_ppm(path)
    }

    /// The content RTP (and RTCP) socket, when content was offered.
    pub fn local_content_addr(&self) -> Option<SocketAddr> {
        self.local_content
    }

    /// What the node answered for the presentation channel: the content
    /// m-line and the BFCP m-line. `None` when content was not offered.
    pub fn content_answer(&self) -> Option<ContentAnswer> {
        self.shared.lock().content_answer.clone()
    }

    /// Asks for the floor: connects to the node's BFCP address (the first
    /// time; the connection is kept for the call), sends Hello and a
    /// FloorRequest for the answered floor. Returns once the request is
    /// written, not when it is granted: follow it with
    /// [`RoomSystem::wait_for_floor`]. While a request is in flight or held,
    /// asking again does nothing and returns `Ok`.
    ///
    /// Errors: content not offered ([`Error::Config`]); content or BFCP
    /// refused in the answer, or BFCP we cannot speak (UDP, TLS, a server
    /// that wants to connect to us) ([`Error::Negotiation`]); the connection
    /// failed (within 5 s) or is gone ([`Error::Io`]); the call has ended.
    pub async fn request_floor(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::RequestFloor(tx))
            .map_err(|_| Error::Ended)?;
        rx.await.unwrap_or(Err(Error::Ended))
    }

    /// Gives the floor back (or withdraws a pending request): FloorRelease
    /// with the server's FLOOR-REQUEST-ID. Content stops at once; the state
    /// becomes [`FloorState::Released`] when the server confirms. Without a
    /// request this does nothing and returns `Ok`.
    pub async fn release_floor(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::ReleaseFloor(tx))
            .map_err(|_| Error::Ended)?;
        rx.await.unwrap_or(Err(Error::Ended))
    }

    /// Where our floor request stands, as the server last said.
    pub fn floor_state(&self) -> FloorState {
        *self.floor.borrow()
    }

    /// Waits until the floor is in `state` (returns at once if it is).
    /// [`Error::FloorTimeout`] after `timeout`, naming the state it is in
    /// and what the server said; [`Error::Ended`] if the call ends first.
    /// A state passed through between two looks (granted, then revoked at
    /// once) is missed: wait for each step before causing the next.
    pub async fn wait_for_floor(&self, state: FloorState, timeout: Duration) -> Result<()> {
        let mut rx = self.floor.clone();
        match tokio::time::timeout(timeout, rx.wait_for(|s| *s == state)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Error::Ended),
            Err(_) => {
                let stats = self.floor_stats();
                let mut detail = String::new();
                if !stats.hello_acked {
                    detail.push_str("; no HelloAck");
                }
                if let Some((status, position)) = stats.last_status {
                    detail.push_str(&format!("; last status {status:?} (queue {position})"));
                }
                for e in &stats.errors {
                    detail.push_str(&format!("; server {e}"));
                }
                if stats.closed {
                    detail.push_str("; connection closed");
                    if let Some(reason) = &stats.close_reason {
                        detail.push_str(&format!(": {reason}"));
                    }
                }
                Err(Error::FloorTimeout {
                    wanted: state,
                    state: self.floor_state(),
                    after: timeout,
                    detail,
                })
            }
        }
    }

    /// Floor control counters and what the server said (errors included).
    pub fn floor_stats(&self) -> FloorStats {
        self.shared.lock().floor.clone()
    }

    /// Changes the presentation's colour from its next picture on.
    pub fn set_content_colour(&self, colour: Rgb) {
        let _ = self.commands.send(Command::SetContentColour(colour));
    }

    /// Sends a PLI or a FIR for the content we receive now (not rate
    /// limited; nothing happens before the first content packet).
    pub fn request_content_keyframe(&self, kind: KeyframeRequest) {
        let _ = self.commands.send(Command::RequestContentKeyframe(kind));
    }

    /// Content counters: `sent` is what we presented, `received` what the
    /// node sent us (packets, access units, keyframes, frames decoded, PLIs
    /// we sent); `last_picture_at` when the newest content picture was
    /// decoded. All zero without content.
    pub fn content_stats(&self) -> VideoStats {
        self.shared.lock().content.stats.clone()
    }

    /// The last content picture decoded, if any.
    pub fn content_seen(&self) -> Option<Arc<Picture>> {
        self.shared.lock().content.seen.clone()
    }

    /// The last content picture decoded and when it was.
    pub fn content_seen_at(&self) -> Option<(Arc<Picture>, Instant)> {
        let observed = self.shared.lock();
        observed.content.seen.clone().zip(observed.content.seen_at)
    }

    /// The average colour of a rectangle of the last content picture, in
    /// fractions of the picture, as [`RoomSystem::seen_colour`]. `None`
    /// before the first content picture.
    pub fn content_seen_colour(&self, x0: f32, y0: f32, x1: f32, y1: f32) -> Option<Rgb> {
        self.content_seen()?.average_colour(x0, y0, x1, y1)
    }

    /// Writes the last content picture to `path` as a PPM.
    pub fn save_content_seen(&self, path: impl AsRef<Path>) -> Result<()> {
        self.content_seen()
            .ok_or_else(|| Error::Video("no content picture decoded yet".into()))?
            .save_ppm(path)
    }
}

/// What the leg sends: an encoded tone, or canned background noise.
struct Source {
    codec: Codec,
    frame: Vec<i16>,
    hz: Option<f32>,
    amplitude: f32,
    phase: f64,
    /// Created on the first tone frame: quiet legs never pay for an encoder.
    encoder: Option<Encoder>,
    comfort: Arc<[Vec<u8>]>,
    comfort_at: usize,
}

impl Source {
    fn next_frame(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let Some(hz) = self.hz.filter(|_| self.amplitude > 0.0) else {
            out.clear();
            if !self.comfort.is_empty() {
                out.extend_from_slice(&self.comfort[self.comfort_at % self.comfort.len()]);
            }
            self.comfort_at = self.comfort_at.wrapping_add(1);
            return Ok(());
        };
        let encoder = match &mut self.encoder {
            Some(e) => e,
            None => self.encoder.insert(Encoder::new(self.codec)?),
        };
        let step = std::f64::consts::TAU * f64::from(hz) / f64::from(self.codec.encode_rate());
        let scale = f64::from(self.amplitude) * 32_767.0;
        for s in self.frame.iter_mut() {
            *s = (self.phase.sin() * scale) as i16;
            self.phase += step;
        }
        self.phase %= std::f64::consts::TAU;
        encoder.encode(&self.frame, out)
    }
}

struct MediaOut {
    remote: SocketAddr,
    header: RtpHeader,
    ts_step: u32,
    ticker: Interval,
}

/// One H.264 m-line of the leg (main video, or content): its socket and
/// the two cores.
struct VideoLeg {
    socket: UdpSocket,
    local: SocketAddr,
    sender: VideoSender,
    receiver: VideoReceiver,
    /// From the answer; nothing is sent before it.
    remote: Option<sdp::VideoAnswer>,
    /// Whether the answer lets us send (and the call is up).
    sending: bool,
    interval: Duration,
    /// Ask for a keyframe (PLI) when a new stream starts arriving, as a
    /// room system does when a presentation starts (content).
    ask_on_new_stream: bool,
}

impl VideoLeg {
    /// Binds the socket and builds both cores (a bad setting fails here,
    /// before the INVITE).
    async fn open(
        local_ip: IpAddr,
        source: &VideoSource,
        payload_type: u8,
        decode: bool,
    ) -> Result<VideoLeg> {
        let socket = UdpSocket::bind((local_ip, 0)).await?;
        // A 720p keyframe is a burst of ~100 packets; the default receive
        // buffer (208 KiB) overflows when a few arrive at once.
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(1 << 20);
        let local = socket.local_addr()?;
        let ssrc: u32 = rand::random();
        let sender = VideoSender::new(source, payload_type, ssrc, rand::random(), rand::random())?;
        let mut receiver = VideoReceiver::new(ssrc, format!("{ssrc:08x}@tandem-loadtest"), decode)?;
        receiver.set_payload_type(payload_type);
        Ok(VideoLeg {
            socket,
            local,
            sender,
            receiver,
            remote: None,
            sending: false,
            interval: source.spec().frame_interval(),
            ask_on_new_stream: false,
        })
    }

    /// Takes the answer's payload type, addresses and direction.
    fn start(&mut self, answer: sdp::VideoAnswer) {
        self.sender.set_payload_type(answer.payload_type);
        self.receiver.set_payload_type(answer.payload_type);
        self.sending = answer.we_send();
        self.remote = Some(answer);
    }

    /// The picture clock, from now.
    fn ticker(&self) -> Interval {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now(), self.interval);
        // A picture that is late is not made up for: a camera drops it.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        ticker
    }

    /// One datagram on the socket: RTCP feedback for the sender, or RTP for
    /// the receiver. Returns a newly decoded picture (stamped after
    /// decoding: what a glass-to-glass reading compares with), and whether
    /// the datagram was malformed.
    fn handle_datagram(&mut self, datagram: &[u8]) -> (Option<(Arc<Picture>, Instant)>, bool) {
        let now = Instant::now();
        if rtp::is_rtcp(datagram) {
            let Ok(feedback) = rtcp::parse_feedback(datagram) else {
                return (None, true);
            };
            for fb in &feedback {
                self.sender.handle_feedback(fb);
            }
            return (None, false);
        }
        let Ok(packet) = rtp::parse(datagram) else {
            return (None, true);
        };
        let stream = self.receiver.stats().remote_ssrc;
        self.receiver
            .handle_rtp(now, &packet.header, packet.payload, datagram.len());
        if self.ask_on_new_stream && self.receiver.stats().remote_ssrc != stream {
            self.receiver.request_keyframe(now, KeyframeRequest::Pli);
        }
        // Built outside the lock: the lock only swaps an Arc.
        let picture = self.receiver.poll_picture().map(Arc::new);
        (picture.map(|p| (p, Instant::now())), false)
    }

    /// Copies the cores' counters (and a new picture) where the handle reads.
    fn publish(
        &self,
        view: &mut VideoView,
        invite_sent: Instant,
        picture: Option<(Arc<Picture>, Instant)>,
        malformed: bool,
    ) {
        let stats = &mut view.stats;
        stats.sent = self.sender.stats();
        stats.received = self.receiver.stats();
        if malformed {
            stats.malformed_datagrams += 1;
        }
        if stats.received.packets > 0 && stats.first_packet_latency.is_none() {
            stats.first_packet_latency = Some(Instant::now() - invite_sent);
        }
        if let Some((picture, at)) = picture {
            stats.first_picture_latency.get_or_insert(at - invite_sent);
            stats.last_picture_at = Some(at);
            view.seen = Some(picture);
            view.seen_at = Some(at);
        }
    }

    /// Sends what the cores have queued: RTP to the answer's RTP address
    /// (when it lets us send), RTCP to its RTCP address. Nothing goes out
    /// before the answer.
    async fn flush(&mut self) {
        let Some(remote) = self.remote.as_ref() else {
            return;
        };
        while let Some(packet) = self.sender.poll_transmit() {
            if self.sending {
                // A lost datagram is a lost packet; the receiver will PLI.
                let _ = self.socket.send_to(&packet, remote.rtp).await;
            }
        }
        while let Some(packet) = self.receiver.poll_transmit() {
            let _ = self.socket.send_to(&packet, remote.rtcp).await;
        }
        while let Some(packet) = self.sender.poll_rtcp() {
            let _ = self.socket.send_to(&packet, remote.rtcp).await;
        }
    }
}

/// How long a BFCP connection may take to be made.
const FLOOR_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection being made, polled by the driver's `select!`.
type Connecting = Pin<Box<dyn Future<Output = std::io::Result<TcpStream>> + Send>>;

/// Floor control of the call.
enum Floor {
    /// Content was not offered.
    NotOffered,
    /// Offered; the answer is not in yet.
    Unanswered,
    /// The answer leaves nothing to request: why.
    Unusable(String),
    /// Boxed: the client core is most of the driver's size otherwise.
    Usable(Box<FloorLink>),
    /// Held through the call's own signalling (the H.239 token): its
    /// state as that signalling says ([`RoomSystem::set_floor_state`]).
    External(FloorState),
}

/// The floor client core and the writing half of its connection (the
/// reading half and the connection being made are fields of their own
/// in [`Driver`], for `select!` to borrow apart).
struct FloorLink {
    client: FloorClient,
    addr: SocketAddr,
    write: Option<OwnedWriteHalf>,
    /// `request_floor` callers waiting for their request to go out.
    waiting: Vec<oneshot::Sender<Result<()>>>,
}

/// A room system's media, ready to start when its call is answered (see
/// [`RoomSystem::prepare`]).
pub struct PreparedRoomSystem {
    driver: Driver,
    room: RoomSystem,
}

impl PreparedRoomSystem {
    /// Where the room receives audio RTP (RTCP: the next port).
    pub fn local_rtp_addr(&self) -> SocketAddr {
        self.room.local_rtp
    }

    pub fn local_video_addr(&self) -> Option<SocketAddr> {
        self.room.local_video
    }

    pub fn local_content_addr(&self) -> Option<SocketAddr> {
        self.room.local_content
    }

    /// Starts sending and receiving: `audio` and `video` say where the far
    /// end receives and with which payload types.
    pub fn start(mut self, audio: sdp::Answer, video: Option<sdp::VideoAnswer>) -> RoomSystem {
        let d = &mut self.driver;
        d.shared.lock().stats.join_latency = d.invite_sent.elapsed();
        d.start_media(&audio);
        if let Some(video) = video {
            d.start_video(video);
        }
        if d.content.is_some() {
            d.floor = Floor::External(FloorState::Idle);
        }
        tokio::spawn(self.driver.run());
        self.room
    }
}

struct Driver {
    /// The SIP call; `None` when the signalling is somebody else's
    /// ([`RoomSystem::prepare`]).
    uac: Option<Uac>,
    /// Without SIP: hung up.
    ended: bool,
    sip: UdpSocket,
    rtp: UdpSocket,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    commands_open: bool,
    established: Option<oneshot::Sender<Result<()>>>,
    hangups: Vec<oneshot::Sender<Result<()>>>,
    invite_sent: Instant,
    codec: Codec,
    answered_pt: Option<u8>,
    source: Source,
    decoder: Option<Decoder>,
    decoded: Vec<f32>,
    ptime: Duration,
    media: Option<MediaOut>,
    video: Option<VideoLeg>,
    /// The picture clock; apart from `video` so `select!` can borrow both.
    video_ticker: Option<Interval>,
    /// The content m-line, when offered.
    content: Option<VideoLeg>,
    /// Runs only while we present.
    content_ticker: Option<Interval>,
    /// Our content m-line's label, to pick the floor that governs it.
    content_label: Option<String>,
    floor: Floor,
    floor_read: Option<OwnedReadHalf>,
    floor_connecting: Option<Connecting>,
    floor_state: watch::Sender<FloorState>,
    /// The answer's telephone-event payload type.
    dtmf_pt: Option<u8>,
    /// Keys waiting to be pressed, in band, and the one being pressed.
    dtmf_queue: VecDeque<u8>,
    dtmf_tone: Option<DtmfTone>,
    /// Keys waiting to go out by INFO, and the clock that paces them.
    info_queue: VecDeque<char>,
    info_ticker: Option<Interval>,
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

async fn next_tick(media: &mut Option<MediaOut>) {
    match media {
        Some(m) => {
            m.ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn next_picture(ticker: &mut Option<Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn recv_video(
    video: &Option<VideoLeg>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match video {
        Some(v) => v.socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

async fn floor_connected(connecting: &mut Option<Connecting>) -> std::io::Result<TcpStream> {
    match connecting {
        Some(c) => c.as_mut().await,
        None => std::future::pending().await,
    }
}

async fn read_floor(read: &mut Option<OwnedReadHalf>, buf: &mut [u8]) -> std::io::Result<usize> {
    match read {
        // Cancel-safe: a read that loses the race has taken no bytes.
        Some(r) => r.read(buf).await,
        None => std::future::pending().await,
    }
}

impl Driver {
    async fn run(mut self) {
        let mut sip_buf = vec![0u8; 65_536];
        let mut rtp_buf = vec![0u8; 2_048];
        let mut video_buf = vec![0u8; 65_536];
        let mut content_buf = vec![0u8; 65_536];
        let mut floor_buf = vec![0u8; 4_096];
        let mut packet = Vec::with_capacity(1_500);
        let mut payload = Vec::with_capacity(1_500);
        loop {
            self.flush_sip().await;
            self.drain_events();
            if let Some(v) = self.video.as_mut() {
                v.flush().await;
            }
            if let Some(c) = self.content.as_mut() {
                c.flush().await;
            }
            self.flush_floor().await;
            let terminated = match &self.uac {
                Some(uac) => uac.state() == CallState::Terminated,
                None => self.ended,
            };
            if terminated {
                // An ACK or a 200 to the node's BYE may still be queued.
                self.flush_sip().await;
                break;
            }
            let deadline = self.uac.as_ref().and_then(Uac::poll_timeout);
            tokio::select! {
                r = self.sip.recv_from(&mut sip_buf) => {
                    // Receive errors on an unconnected UDP socket are transient
                    // (e.g. a reported ICMP error); the next read is fine.
                    if let (Ok((n, from)), Some(uac)) = (r, self.uac.as_mut()) {
                        uac.handle_datagram(Instant::now(), from, &sip_buf[..n]);
                    }
                }
                () = sleep_until(deadline) => {
                    if let Some(uac) = self.uac.as_mut() {
                        uac.handle_timeout(Instant::now());
                    }
                }
                r = self.rtp.recv_from(&mut rtp_buf) => {
                    if let Ok((n, _)) = r {
                        self.handle_rtp(&rtp_buf[..n]);
                    }
                }
                () = next_tick(&mut self.media) => self.send_frame(&mut payload, &mut packet).await,
                r = recv_video(&self.video, &mut video_buf) => {
                    if let Ok((n, _)) = r {
                        self.handle_video(&video_buf[..n]);
                    }
                }
                () = next_picture(&mut self.video_ticker) => self.send_picture(),
                r = recv_video(&self.content, &mut content_buf) => {
                    if let Ok((n, _)) = r {
                        self.handle_content(&content_buf[..n]);
                    }
                }
                () = next_picture(&mut self.content_ticker) => self.send_content_picture(),
                r = floor_connected(&mut self.floor_connecting) => self.handle_floor_connected(r),
                r = read_floor(&mut self.floor_read, &mut floor_buf) => {
                    self.handle_floor_read(r, &floor_buf);
                }
                () = next_picture(&mut self.info_ticker) => self.send_info_key(),
                cmd = self.commands.recv(), if self.commands_open => self.handle_command(cmd),
            }
        }
        for tx in self.hangups.drain(..) {
            let _ = tx.send(Ok(()));
        }
        if let Some(tx) = self.established.take() {
            let _ = tx.send(Err(Error::Ended));
        }
    }

    async fn flush_sip(&mut self) {
        while let Some(t) = self.uac.as_mut().and_then(Uac::poll_transmit) {
            // A lost datagram is what retransmission is for.
            let _ = self.sip.send_to(&t.payload, t.to).await;
        }
    }

    fn drain_events(&mut self) {
        while let Some(event) = self.uac.as_mut().and_then(Uac::poll_event) {
            let now = Instant::now();
            match event {
                UacEvent::Established { answer } => {
                    self.shared.lock().stats.join_latency = now - self.invite_sent;
                    let result = sdp::parse_answer(&answer).and_then(|a| {
                        if a.codec == self.codec {
                            Ok(a)
                        } else {
                            Err(Error::Negotiation(format!(
                                "offered only {}, answer chose {}",
                                self.codec, a.codec
                            )))
                        }
                    });
                    let result = match (result, &self.video) {
                        (Ok(audio), Some(_)) => sdp::parse_video_answer(&answer)
                            .map(|video| (audio, video))
                            .map_err(|e| Error::Negotiation(format!("video: {e}"))),
                        (Ok(audio), None) => Ok((audio, None)),
                        (Err(e), _) => Err(e),
                    };
                    let result = match (result, &self.content) {
                        (Ok((audio, video)), Some(_)) => sdp::parse_content_answer(&answer)
                            .map(|content| (audio, video, Some(content)))
                            .map_err(|e| Error::Negotiation(format!("content: {e}"))),
                        (Ok((audio, video)), None) => Ok((audio, video, None)),
                        (Err(e), _) => Err(e),
                    };
                    match result {
                        Ok((audio, video, content)) => {
                            self.dtmf_pt = sdp::telephone_event_pt(&answer);
                            let answer = audio;
                            self.start_media(&answer);
                            if let Some(video) = video {
                                self.start_video(video);
                            }
                            if let Some(content) = content {
                                self.start_content(content);
                            }
                            if let Some(tx) = self.established.take() {
                                let _ = tx.send(Ok(()));
                            }
                        }
                        Err(e) => {
                            if let Some(uac) = self.uac.as_mut() {
                                uac.hangup(now);
                            }
                            if let Some(tx) = self.established.take() {
                                let _ = tx.send(Err(e));
                            }
                        }
                    }
                }
                UacEvent::Rejected { code, reason } => {
                    if let Some(tx) = self.established.take() {
                        let _ = tx.send(Err(Error::Rejected { code, reason }));
                    }
                }
                UacEvent::TimedOut => {
                    if let Some(tx) = self.established.take() {
                        let _ = tx.send(Err(Error::Timeout {
                            what: "INVITE",
                            after: now - self.invite_sent,
                        }));
                    }
                }
                UacEvent::RemoteHangup => {
                    self.media = None;
                    self.video_ticker = None;
                    self.content_ticker = None;
                    self.info_ticker = None;
                    let reason = self
                        .uac
                        .as_ref()
                        .and_then(Uac::remote_bye_reason)
                        .map(str::to_owned);
                    let mut observed = self.shared.lock();
                    observed.stats.ended_by_remote = true;
                    observed.stats.bye_reason = reason;
                }
                UacEvent::HungUp { .. } => {
                    for tx in self.hangups.drain(..) {
                        let _ = tx.send(Ok(()));
                    }
                }
                UacEvent::ByeTimedOut => {
                    for tx in self.hangups.drain(..) {
                        let _ = tx.send(Err(Error::Timeout {
                            what: "BYE",
                            after: TRANSACTION_TIMEOUT,
                        }));
                    }
                }
                _ => {}
            }
        }
    }

    fn start_media(&mut self, answer: &sdp::Answer) {
        {
            let mut observed = self.shared.lock();
            observed.stats.codec = Some(answer.codec);
            observed.stats.payload_type = Some(answer.payload_type);
            observed.stats.remote_rtp = Some(answer.rtp);
        }
        self.answered_pt = Some(answer.payload_type);
        let start = tokio::time::Instant::now();
        self.media = Some(MediaOut {
            remote: answer.rtp,
            header: RtpHeader {
                payload_type: answer.payload_type,
                marker: true,
                sequence: rand::random(),
                timestamp: rand::random(),
                ssrc: rand::random(),
            },
            ts_step: self.codec.clock_rate() * self.ptime.as_millis() as u32 / 1000,
            ticker: tokio::time::interval_at(start, self.ptime),
        });
    }

    /// The next INFO key press, if any; the pacing clock stops when none is left.
    fn send_info_key(&mut self) {
        match self.info_queue.pop_front() {
            Some(key) => {
                let Some(uac) = self.uac.as_mut() else {
                    return;
                };
                uac.send_info(
                    "application/dtmf-relay",
                    &format!("Signal={key}\r\nDuration=160\r\n"),
                );
                self.shared.lock().stats.dtmf_sent += 1;
            }
            None => self.info_ticker = None,
        }
    }

    /// While a key is being pressed in band, the packet of this tick is a
    /// telephone-event (RFC 4733 §2.5): the event's start timestamp, its
    /// duration so far, the E bit on the last three. Returns false when
    /// the tick carries audio.
    fn dtmf_payload(&mut self, timestamp: u32, ts_step: u32, out: &mut Vec<u8>) -> Option<bool> {
        self.dtmf_pt?;
        if self.dtmf_tone.is_none() {
            let event = self.dtmf_queue.pop_front()?;
            self.dtmf_tone = Some(DtmfTone {
                event,
                timestamp,
                tick: 0,
            });
        }
        let tone = self.dtmf_tone.as_mut()?;
        let t = tone.tick;
        tone.tick += 1;
        if t >= DTMF_TICKS + DTMF_END_PACKETS {
            // The pause between keys carries audio.
            if t + 1 >= DTMF_TICKS + DTMF_END_PACKETS + DTMF_GAP_TICKS {
                self.dtmf_tone = None;
            }
            return None;
        }
        let end = t >= DTMF_TICKS;
        let duration = ts_step * (t.min(DTMF_TICKS - 1) + 1);
        out.clear();
        out.push(tone.event);
        out.push((u8::from(end) << 7) | 10); // volume -10 dBm0
        out.extend_from_slice(&(duration.min(u32::from(u16::MAX)) as u16).to_be_bytes());
        if t == DTMF_TICKS + DTMF_END_PACKETS - 1 {
            self.shared.lock().stats.dtmf_sent += 1;
        }
        Some(t == 0)
    }

    async fn send_frame(&mut self, payload: &mut Vec<u8>, packet: &mut Vec<u8>) {
        let (timestamp, ts_step) = match &self.media {
            Some(m) => (m.header.timestamp, m.ts_step),
            None => return,
        };
        if let (Some(pt), Some(first)) =
            (self.dtmf_pt, self.dtmf_payload(timestamp, ts_step, payload))
            && let Some(media) = self.media.as_mut()
            && let Some(tone) = &self.dtmf_tone
        {
            let header = RtpHeader {
                payload_type: pt,
                marker: first,
                timestamp: tone.timestamp,
                ..media.header
            };
            packet.clear();
            rtp::write_packet(&header, payload, packet);
            if self.rtp.send_to(packet, media.remote).await.is_ok() {
                self.shared.packets_sent.fetch_add(1, Ordering::Relaxed);
            }
            media.header.sequence = media.header.sequence.wrapping_add(1);
            media.header.timestamp = media.header.timestamp.wrapping_add(media.ts_step);
            return;
        }
        let Some(media) = self.media.as_mut() else {
            return;
        };
        if self.source.next_frame(payload).is_err() {
            // An encoder failure is ours, not the node's; skip the frame but
            // keep the clock (the timestamp still advances).
            media.header.timestamp = media.header.timestamp.wrapping_add(media.ts_step);
            return;
        }
        packet.clear();
        rtp::write_packet(&media.header, payload, packet);
        if self.rtp.send_to(packet, media.remote).await.is_ok() {
            self.shared.packets_sent.fetch_add(1, Ordering::Relaxed);
        }
        media.header.marker = false;
        media.header.sequence = media.header.sequence.wrapping_add(1);
        media.header.timestamp = media.header.timestamp.wrapping_add(media.ts_step);
    }

    fn handle_rtp(&mut self, datagram: &[u8]) {
        if rtp::is_rtcp(datagram) {
            return;
        }
        let now = Instant::now();
        let Ok(packet) = rtp::parse(datagram) else {
            self.shared.lock().stats.undecodable += 1;
            return;
        };
        let pt = packet.header.payload_type;
        let ours = pt == self.codec.payload_type() || Some(pt) == self.answered_pt;
        // Decode outside the lock: heard() must never wait on a decode.
        self.decoded.clear();
        let mut undecodable = false;
        if let Some(decoder) = self.decoder.as_mut()
            && ours
            && !packet.payload.is_empty()
        {
            undecodable = decoder.decode(packet.payload, &mut self.decoded).is_err();
        }
        let mut observed = self.shared.lock();
        let Observed {
            recording,
            stats,
            sequence,
            ..
        } = &mut *observed;
        stats.packets_received += 1;
        stats.bytes_received += datagram.len() as u64;
        stats
            .first_audio_latency
            .get_or_insert(now - self.invite_sent);
        sequence.record(packet.header.ssrc, packet.header.sequence);
        stats.packets_lost = sequence.lost();
        if undecodable || (!ours && pt != sdp::TELEPHONE_EVENT_PT) {
            stats.undecodable += 1;
        }
        if !self.decoded.is_empty() {
            recording.push(&self.decoded);
        }
    }

    fn handle_command(&mut self, cmd: Option<Command>) {
        let now = Instant::now();
        match cmd {
            Some(Command::SetTone { hz, amplitude }) => {
                self.source.hz = hz;
                self.source.amplitude = amplitude;
            }
            Some(Command::SetVideoPaused(paused)) => {
                if let Some(v) = self.video.as_mut() {
                    v.sender.set_paused(paused);
                }
            }
            Some(Command::SetVideoColour(colour)) => {
                if let Some(v) = self.video.as_mut() {
                    v.sender.set_colour(colour);
                }
            }
            Some(Command::RequestKeyframe(kind)) => {
                if let Some(v) = self.video.as_mut() {
                    v.receiver.request_keyframe(now, kind);
                    self.publish_video(None, false);
                }
            }
            Some(Command::SetContentColour(colour)) => {
                if let Some(c) = self.content.as_mut() {
                    c.sender.set_colour(colour);
                }
            }
            Some(Command::RequestContentKeyframe(kind)) => {
                if let Some(c) = self.content.as_mut() {
                    c.receiver.request_keyframe(now, kind);
                    self.publish_content(None, false);
                }
            }
            Some(Command::RequestFloor(tx)) => self.request_floor(tx),
            Some(Command::ReleaseFloor(tx)) => {
                let result = match &mut self.floor {
                    Floor::Usable(link) => {
                        link.client.release();
                        Ok(())
                    }
                    Floor::NotOffered => Err(Error::Config(
                        "content was not offered (CallOptions::content)".into(),
                    )),
                    Floor::Unanswered | Floor::Unusable(_) | Floor::External(_) => Ok(()),
                };
                let _ = tx.send(result);
                self.sync_floor();
            }
            Some(Command::Dtmf { digits, method }) => match method {
                DtmfMethod::Rfc4733 => {
                    self.dtmf_queue
                        .extend(digits.chars().filter_map(dtmf_event));
                }
                DtmfMethod::Info => {
                    self.info_queue.extend(digits.chars());
                    if self.info_ticker.is_none() {
                        let mut t = tokio::time::interval(Duration::from_millis(200));
                        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
                        self.info_ticker = Some(t);
                    }
                }
            },
            Some(Command::Hangup(tx)) => {
                self.media = None;
                self.video_ticker = None;
                self.content_ticker = None;
                self.hangups.push(tx);
                self.hangup(now);
            }
            None => {
                // The handle was dropped: hang up, and stop polling the channel.
                self.commands_open = false;
                self.media = None;
                self.video_ticker = None;
                self.content_ticker = None;
                self.hangup(now);
            }
            Some(Command::StartContent(answer)) => {
                if let Some(c) = self.content.as_mut() {
                    c.start(answer.clone());
                }
                self.shared.lock().content.stats.answer = Some(answer);
                self.sync_floor();
            }
            Some(Command::SendKeyframe { content }) => {
                let leg = if content {
                    self.content.as_mut()
                } else {
                    self.video.as_mut()
                };
                if let Some(leg) = leg {
                    leg.sender.request_keyframe();
                }
            }
            Some(Command::SetFloor(state)) => {
                if let Floor::External(s) = &mut self.floor {
                    *s = state;
                }
                self.sync_floor();
            }
        }
    }

    fn hangup(&mut self, now: Instant) {
        match self.uac.as_mut() {
            Some(uac) => uac.hangup(now),
            None => self.ended = true,
        }
    }

    fn start_video(&mut self, answer: sdp::VideoAnswer) {
        let Some(v) = self.video.as_mut() else {
            return;
        };
        v.start(answer.clone());
        if v.sending {
            self.video_ticker = Some(v.ticker());
        }
        self.shared.lock().video.stats.answer = Some(answer);
    }

    fn send_picture(&mut self) {
        if let Some(v) = self.video.as_mut() {
            v.sender.handle_tick(Instant::now());
        }
        self.publish_video(None, false);
    }

    fn handle_video(&mut self, datagram: &[u8]) {
        if let Some(v) = self.video.as_mut() {
            let (picture, malformed) = v.handle_datagram(datagram);
            self.publish_video(picture, malformed);
        }
    }

    fn publish_video(&self, picture: Option<(Arc<Picture>, Instant)>, malformed: bool) {
        if let Some(v) = self.video.as_ref() {
            v.publish(
                &mut self.shared.lock().video,
                self.invite_sent,
                picture,
                malformed,
            );
        }
    }

    /// The answer's presentation channel: the content leg takes its m-line
    /// (receiving starts now; sending waits for a grant), and floor control
    /// becomes usable if the BFCP line is one we can speak.
    fn start_content(&mut self, answer: ContentAnswer) {
        if let (Some(c), Some(video)) = (self.content.as_mut(), &answer.video) {
            c.start(video.clone());
        }
        self.floor = match self.floor_link(&answer) {
            Ok(link) => Floor::Usable(Box::new(link)),
            Err(why) => Floor::Unusable(why),
        };
        let mut observed = self.shared.lock();
        observed.content.stats.answer = answer.video.clone();
        observed.content_answer = Some(answer);
    }

    fn floor_link(&self, answer: &ContentAnswer) -> Result<FloorLink, String> {
        if answer.video.is_none() {
            return Err("the answer refused the content m-line".into());
        }
        let bfcp = answer
            .bfcp
            .as_ref()
            .ok_or("the answer refused the BFCP m-line")?;
        if bfcp.transport != BfcpTransport::Tcp {
            return Err(format!(
                "BFCP over {:?}: we speak TCP/BFCP only",
                bfcp.transport
            ));
        }
        if !bfcp.we_connect() {
            return Err(format!(
                "BFCP a=setup:{}: we offered active and only connect",
                bfcp.setup.as_deref().unwrap_or_default()
            ));
        }
        // The answer's mstrm names the answer's own a=label (RFC 8856);
        // ours stands in if the answer's content line has none.
        let label = answer.label.as_deref().or(self.content_label.as_deref());
        let floor = bfcp
            .floor_for(label)
            .ok_or("the BFCP answer names no floor (a=floorid)")?;
        Ok(FloorLink {
            client: FloorClient::new(bfcp.conference_id, bfcp.user_id, floor),
            addr: bfcp.addr,
            write: None,
            waiting: Vec::new(),
        })
    }

    fn send_content_picture(&mut self) {
        if let Some(c) = self.content.as_mut() {
            c.sender.handle_tick(Instant::now());
        }
        self.publish_content(None, false);
    }

    fn handle_content(&mut self, datagram: &[u8]) {
        if let Some(c) = self.content.as_mut() {
            let (picture, malformed) = c.handle_datagram(datagram);
            self.publish_content(picture, malformed);
        }
    }

    fn publish_content(&self, picture: Option<(Arc<Picture>, Instant)>, malformed: bool) {
        if let Some(c) = self.content.as_ref() {
            c.publish(
                &mut self.shared.lock().content,
                self.invite_sent,
                picture,
                malformed,
            );
        }
    }

    fn request_floor(&mut self, tx: oneshot::Sender<Result<()>>) {
        let link = match &mut self.floor {
            Floor::Usable(link) => link,
            Floor::NotOffered => {
                let _ = tx.send(Err(Error::Config(
                    "content was not offered (CallOptions::content)".into(),
                )));
                return;
            }
            Floor::Unanswered => {
                let _ = tx.send(Err(Error::Negotiation("no answer yet".into())));
                return;
            }
            Floor::Unusable(why) => {
                let _ = tx.send(Err(Error::Negotiation(why.clone())));
                return;
            }
            Floor::External(_) => {
                let _ = tx.send(Err(Error::Config(
                    "the floor is the call's signalling's (set_floor_state)".into(),
                )));
                return;
            }
        };
        if link.client.stats().closed {
            let reason = link
                .client
                .stats()
                .close_reason
                .clone()
                .unwrap_or_else(|| "closed by the node".into());
            let _ = tx.send(Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                format!("BFCP connection to {}: {reason}", link.addr),
            ))));
            return;
        }
        if !link.client.request() {
            // A request is in flight or held already.
            let _ = tx.send(Ok(()));
            return;
        }
        link.waiting.push(tx);
        if link.write.is_none() && self.floor_connecting.is_none() {
            let addr = link.addr;
            self.floor_connecting = Some(Box::pin(async move {
                match tokio::time::timeout(FLOOR_CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                    Ok(r) => r,
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no connection within {FLOOR_CONNECT_TIMEOUT:?}"),
                    )),
                }
            }));
        }
        self.sync_floor();
    }

    fn handle_floor_connected(&mut self, result: std::io::Result<TcpStream>) {
        self.floor_connecting = None;
        let Floor::Usable(link) = &mut self.floor else {
            return;
        };
        match result {
            Ok(stream) => {
                // Small messages that should not wait for Nagle.
                let _ = stream.set_nodelay(true);
                let (read, write) = stream.into_split();
                self.floor_read = Some(read);
                link.write = Some(write);
            }
            Err(e) => {
                let reason = format!("connecting to {}: {e}", link.addr);
                self.fail_floor(reason, e.kind());
                return;
            }
        }
        self.sync_floor();
    }

    /// The connection could not be made or written: the client closes,
    /// and callers waiting on `request_floor` hear why — after the handle's
    /// stats say so, so they read the same.
    fn fail_floor(&mut self, reason: String, kind: std::io::ErrorKind) {
        let Floor::Usable(link) = &mut self.floor else {
            return;
        };
        link.client.handle_closed(Some(reason.clone()));
        link.write = None;
        self.floor_read = None;
        let waiting = std::mem::take(&mut link.waiting);
        self.sync_floor();
        for tx in waiting {
            let _ = tx.send(Err(Error::Io(std::io::Error::new(kind, reason.clone()))));
        }
    }

    fn handle_floor_read(&mut self, result: std::io::Result<usize>, buf: &[u8]) {
        let Floor::Usable(link) = &mut self.floor else {
            return;
        };
        let open = match result {
            Ok(0) => {
                link.client.handle_closed(None);
                false
            }
            // A stream we can no longer follow closes the client.
            Ok(n) => link.client.handle_bytes(&buf[..n]).is_ok(),
            Err(e) => {
                link.client.handle_closed(Some(e.to_string()));
                false
            }
        };
        if !open {
            self.floor_read = None;
            link.write = None;
        }
        self.sync_floor();
    }

    /// Writes what the floor client has queued, once connected, and tells
    /// waiting `request_floor` callers their request is out.
    async fn flush_floor(&mut self) {
        let Floor::Usable(link) = &mut self.floor else {
            return;
        };
        let Some(write) = link.write.as_mut() else {
            return;
        };
        let mut failed = None;
        while let Some(bytes) = link.client.poll_transmit() {
            if let Err(e) = write.write_all(&bytes).await {
                failed = Some(e);
                break;
            }
        }
        match failed {
            None => {
                for tx in link.waiting.drain(..) {
                    let _ = tx.send(Ok(()));
                }
            }
            Some(e) => {
                let reason = format!("writing to {}: {e}", link.addr);
                self.fail_floor(reason, e.kind());
            }
        }
    }

    /// After anything that may change the floor: content runs exactly while
    /// we present (a new grant starts on a keyframe); the handle sees the
    /// stats, then the state (so a waiter woken by the state reads stats
    /// at least as new).
    fn sync_floor(&mut self) {
        let (presenting, state, stats) = match &self.floor {
            Floor::Usable(link) => (
                link.client.presenting(),
                link.client.state(),
                Some(link.client.stats().clone()),
            ),
            Floor::External(state) => (*state == FloorState::Granted, *state, None),
            _ => return,
        };
        match self.content.as_mut() {
            Some(c) if presenting && c.sending => {
                let established = self
                    .uac
                    .as_ref()
                    .is_none_or(|u| u.state() == CallState::Established);
                if self.content_ticker.is_none() && established {
                    c.sender.request_keyframe();
                    self.content_ticker = Some(c.ticker());
                }
            }
            _ => self.content_ticker = None,
        }
        if let Some(stats) = stats {
            self.shared.lock().floor = stats;
        }
        self.floor_state.send_if_modified(|s| {
            let changed = *s != state;
            *s = state;
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_keeps_the_newest_samples() {
        let mut r = Recording {
            samples: VecDeque::new(),
            cap: 5,
            sample_rate: 8_000,
        };
        r.push(&[1.0, 2.0, 3.0]);
        r.push(&[4.0, 5.0, 6.0]);
        assert_eq!(
            r.samples.iter().copied().collect::<Vec<_>>(),
            [2.0, 3.0, 4.0, 5.0, 6.0]
        );
        r.push(&[7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0]);
        assert_eq!(
            r.samples.iter().copied().collect::<Vec<_>>(),
            [9.0, 10.0, 11.0, 12.0, 13.0]
        );
    }

    // A presentation end to end on loopback, without the node: a tiny UAS
    // answers with content at an echo socket (the room sees its own
    // presentation) and BFCP at an in-test floor server that grants every
    // request and revokes on command. Waits poll with a generous deadline
    // (a liveness bound, not a timing assertion).

    use tokio::net::TcpListener;

    use crate::bfcp::{self, AttrType, Attribute, Message, Primitive, RequestStatus};
    use crate::sip::{self, header_param};
    use crate::video::picture::colour_distance;

    const RED: Rgb = (220, 30, 30);
    const BLUE: Rgb = (30, 60, 220);

    /// Polls `cond` every 20 ms; panics with `what` after 15 s.
    async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while !cond() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn start_echo() -> u16 {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let port = socket.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let _ = socket.send_to(&buf[..n], from).await;
            }
        });
        port
    }

    /// Answers INVITE with audio and video at `echo`, content at `echo`
    /// (`None`: refused) and BFCP at `bfcp` (`None`: refused); BYE with 200.
    async fn start_uas(echo: u16, content: Option<u16>, bfcp: Option<u16>) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = socket.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let Ok(req) = sip::Message::parse(&buf[..n]) else {
                    continue;
                };
                let method = req.method().unwrap_or_default().to_owned();
                if method == "ACK" || req.code().is_some() {
                    continue;
                }
                let mut resp = sip::Message::response(200, "OK");
                for name in ["Via", "From", "Call-ID", "CSeq"] {
                    resp = resp.with(name, req.header(name).unwrap_or_default());
                }
                let to = req.header("To").unwrap_or_default().to_owned();
                let to = if header_param(&to, "tag").is_some() {
                    to
                } else {
                    format!("{to};tag=uas")
                };
                resp = resp
                    .with("To", to)
                    .with("Contact", format!("<sip:uas@{addr}>"));
                if method == "INVITE" {
                    let offered = req
                        .body_str()
                        .unwrap_or_default()
                        .contains("a=content:slides\r\n");
                    let mut answer = sdp::offer_with_video(
                        "127.0.0.1".parse().expect("ip"),
                        echo,
                        Codec::Opus,
                        20,
                        1,
                        Some(VideoOffer {
                            port: echo,
                            bitrate_bps: 500_000,
                        }),
                    );
                    if offered {
                        answer.push_str(&format!(
                            "m=video {} RTP/AVP 97\r\n\
                         a=rtpmap:97 H264/90000\r\n\
                         a=fmtp:97 profile-level-id=42e01f;packetization-mode=1\r\n\
                         a=rtcp-fb:97 nack pli\r\n\
                         a=rtcp-mux\r\n\
                         a=content:slides\r\n\
                         a=label:3\r\n\
                         a=sendrecv\r\n\
                         m=application {} TCP/BFCP *\r\n\
                         a=floorctrl:s-only\r\n\
                         a=setup:passive\r\n\
                         a=connection:new\r\n\
                         a=confid:4711\r\n\
                         a=userid:2\r\n\
                         a=floorid:1 mstrm:3\r\n\
                         a=bfcpver:1\r\n",
                            content.unwrap_or(0),
                            bfcp.unwrap_or(0)
                        ));
                    }
                    resp = resp.with_body("application/sdp", answer);
                }
                let _ = socket.send_to(&resp.to_bytes(), from).await;
            }
        });
        addr
    }

    /// A floor server for one connection: HelloAck to Hello, Granted (a
    /// fresh request ID) to FloorRequest, Released to FloorRelease; a
    /// message on `revoke` sends a Revoked notification (transaction 0)
    /// for the current request. What it received is kept in `heard`.
    async fn start_floor_server(
        revoke: mpsc::UnboundedReceiver<()>,
        heard: Arc<Mutex<Vec<Message>>>,
    ) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let mut revoke = revoke;
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (mut read, mut write) = stream.into_split();
            let mut decoder = bfcp::StreamDecoder::default();
            let mut buf = vec![0u8; 4096];
            let mut next_id = 1u16;
            let mut current = 0u16;
            let status = |t: u16, id: u16, status: RequestStatus| {
                Message::new(Primitive::FloorRequestStatus, 4711, t, 2)
                    .with(Attribute::grouped(
                        AttrType::FLOOR_REQUEST_INFORMATION,
                        false,
                        id,
                        vec![
                            Attribute::grouped(
                                AttrType::OVERALL_REQUEST_STATUS,
                                false,
                                id,
                                vec![Attribute::request_status(status, 0)],
                            ),
                            Attribute::grouped(AttrType::FLOOR_REQUEST_STATUS, false, 1, vec![]),
                        ],
                    ))
                    .to_bytes()
                    .expect("encode")
            };
            loop {
                tokio::select! {
                    r = read.read(&mut buf) => {
                        let n = match r {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        decoder.push(&buf[..n]);
                        while let Some(frame) = decoder.next_frame().expect("framing") {
                            let msg = Message::parse(&frame).expect("client message parses");
                            let t = msg.transaction_id;
                            let reply = match msg.primitive {
                                Primitive::Hello => Message::new(Primitive::HelloAck, 4711, t, 2)
                                    .to_bytes()
                                    .expect("encode"),
                                Primitive::FloorRequest => {
                                    current = next_id;
                                    next_id += 1;
                                    status(t, current, RequestStatus::Granted)
                                }
                                Primitive::FloorRelease => status(t, current, RequestStatus::Released),
                                _ => Vec::new(),
                            };
                            heard.lock().expect("lock").push(msg);
                            write.write_all(&reply).await.expect("write");
                        }
                    }
                    Some(()) = revoke.recv() => {
                        write
                            .write_all(&status(0, current, RequestStatus::Revoked))
                            .await
                            .expect("write");
                    }
                }
            }
        });
        port
    }

    fn body_colour(room: &RoomSystem) -> Option<Rgb> {
        room.content_seen_colour(0.05, 0.05, 0.95, 0.85)
    }

    fn presenting_options() -> CallOptions {
        CallOptions::default().with_content(
            ContentConfig::new(RED).with_spec(
                VideoSpec::new(RED)
                    .with_size(320, 180)
                    .with_fps(10.0)
                    .with_bitrate(300_000),
            ),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_room_presents_only_while_granted_and_sees_its_own_slides() {
        let echo = start_echo().await;
        let heard = Arc::new(Mutex::new(Vec::new()));
        let (revoke, revoke_rx) = mpsc::unbounded_channel();
        let floor = start_floor_server(revoke_rx, heard.clone()).await;
        let server = start_uas(echo, Some(echo), Some(floor)).await;
        let cfg = RoomSystemConfig::new(server, "4711", "Presenter")
            .with_video(VideoSpec::new((40, 160, 60)));
        let room = RoomSystem::call_with(cfg, presenting_options())
            .await
            .expect("call");
        let answer = room.content_answer().expect("content answered");
        assert_eq!(answer.floor_id(), Some(1));
        assert_eq!(
            answer.bfcp.as_ref().map(|b| b.addr.port()),
            Some(floor),
            "{answer:?}"
        );
        assert!(room.local_content_addr().is_some());
        // Main video is the main video, not the content line.
        assert_eq!(room.video_stats().answer.map(|a| a.payload_type), Some(96));
        assert_eq!(room.floor_state(), FloorState::Idle);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            room.content_stats().sent.frames,
            0,
            "nothing before a grant"
        );

        room.request_floor().await.expect("request");
        room.wait_for_floor(FloorState::Granted, Duration::from_secs(10))
            .await
            .expect("granted");
        assert_eq!(room.floor_stats().floor_request_id, Some(1));
        assert!(room.floor_stats().hello_acked);
        wait_until("our own slides", || {
            room.content_stats().received.frames_decoded >= 3
                && body_colour(&room).is_some_and(|c| colour_distance(c, RED) <= 12)
        })
        .await;
        let stats = room.content_stats();
        assert_eq!(
            stats.sent.keyframes,
            stats.received.keyframes.min(stats.sent.keyframes)
        );
        assert!(
            stats.received.pli_sent >= 1,
            "a PLI when content starts: {stats:?}"
        );
        assert!(stats.last_picture_at.is_some());
        assert_eq!(stats.received.frame_size, Some((320, 180)));
        // Main video goes on beside it.
        wait_until("main video", || {
            room.video_stats().received.frames_decoded > 0
        })
        .await;

        room.set_content_colour(BLUE);
        wait_until("blue slides", || {
            body_colour(&room).is_some_and(|c| colour_distance(c, BLUE) <= 12)
        })
        .await;

        // Revoked: content stops (the stats are published before the state).
        revoke.send(()).expect("revoke");
        room.wait_for_floor(FloorState::Revoked, Duration::from_secs(10))
            .await
            .expect("revoked");
        let frames = room.content_stats().sent.frames;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            room.content_stats().sent.frames,
            frames,
            "no content after revoke"
        );

        // Asked again: granted again, and the presentation resumes on an IDR.
        let keyframes = room.content_stats().sent.keyframes;
        room.request_floor().await.expect("request again");
        room.wait_for_floor(FloorState::Granted, Duration::from_secs(10))
            .await
            .expect("granted again");
        wait_until("presenting again", || {
            room.content_stats().sent.frames > frames + 2
        })
        .await;
        assert!(room.content_stats().sent.keyframes > keyframes);
        assert_eq!(room.floor_stats().floor_request_id, Some(2));

        room.release_floor().await.expect("release");
        room.wait_for_floor(FloorState::Released, Duration::from_secs(10))
            .await
            .expect("released");
        let frames = room.content_stats().sent.frames;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            room.content_stats().sent.frames,
            frames,
            "no content after release"
        );
        // Waiting for a state that does not come says where the floor is.
        let err = room
            .wait_for_floor(FloorState::Granted, Duration::from_millis(50))
            .await
            .expect_err("not granted");
        assert!(err.to_string().contains("Released"), "{err}");

        // What the floor server heard: Hello, FloorRequest (M bit, floor 1),
        // FloorRequest, FloorRelease of request 2; one connection.
        let heard = heard.lock().expect("lock").clone();
        let primitives: Vec<Primitive> = heard.iter().map(|m| m.primitive).collect();
        assert_eq!(
            primitives,
            [
                Primitive::Hello,
                Primitive::FloorRequest,
                Primitive::FloorRequest,
                Primitive::FloorRelease
            ]
        );
        for m in &heard {
            assert_eq!((m.version, m.conference_id, m.user_id), (1, 4711, 2));
            assert_ne!(m.transaction_id, 0);
        }
        let floor_id = heard[1].attribute(AttrType::FLOOR_ID).expect("FLOOR-ID");
        assert!(floor_id.mandatory);
        assert_eq!(floor_id.as_u16(), Some(1));
        assert_eq!(
            heard[3]
                .attribute(AttrType::FLOOR_REQUEST_ID)
                .and_then(Attribute::as_u16),
            Some(2)
        );
        room.hangup().await.expect("hangup");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn floor_requests_without_content_or_bfcp_are_refused() {
        let echo = start_echo().await;
        // Content refused (port 0), and BFCP refused.
        let server = start_uas(echo, None, None).await;
        let cfg = RoomSystemConfig::new(server, "1", "Refused").with_video(VideoSpec::new(RED));
        let room = RoomSystem::call_with(cfg, presenting_options())
            .await
            .expect("call");
        let answer = room.content_answer().expect("answered");
        assert_eq!(
            (answer.video.is_none(), answer.bfcp.is_none()),
            (true, true)
        );
        assert!(matches!(
            room.request_floor().await,
            Err(Error::Negotiation(_))
        ));
        room.hangup().await.expect("hangup");

        // Content accepted, but nobody listens for BFCP.
        let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        let server = start_uas(echo, Some(echo), Some(port)).await;
        let cfg = RoomSystemConfig::new(server, "1", "Unheard").with_video(VideoSpec::new(RED));
        let room = RoomSystem::call_with(cfg, presenting_options())
            .await
            .expect("call");
        assert!(matches!(room.request_floor().await, Err(Error::Io(_))));
        assert!(room.floor_stats().closed);
        assert!(matches!(room.request_floor().await, Err(Error::Io(_))));
        room.hangup().await.expect("hangup");

        // No content offered at all; content without main video.
        let server = start_uas(echo, None, None).await;
        let room = RoomSystem::call(RoomSystemConfig::new(server, "1", "Plain"))
            .await
            .expect("call");
        assert!(matches!(room.request_floor().await, Err(Error::Config(_))));
        assert!(room.content_answer().is_none());
        room.hangup().await.expect("hangup");
        assert!(matches!(
            RoomSystem::call_with(
                RoomSystemConfig::new(server, "1", "x"),
                presenting_options()
            )
            .await,
            Err(Error::Config(_))
        ));
    }
}
