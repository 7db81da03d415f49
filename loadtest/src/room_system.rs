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
//! Dropping the handle hangs up (the driver sees its command channel close).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Interval, MissedTickBehavior};

use crate::codec::{self, Codec, Decoder, Encoder};
use crate::error::{Error, Result};
use crate::perceive::Heard;
use crate::rtp::{self, RtpHeader, SequenceTracker};
use crate::sdp::{self, VideoOffer};
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
    pub decode_video: bool,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            listen: true,
            keep: Duration::from_secs(10),
            invite_timeout: TRANSACTION_TIMEOUT,
            decode_video: true,
        }
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
    SetTone { hz: Option<f32>, amplitude: f32 },
    SetVideoPaused(bool),
    SetVideoColour(Rgb),
    RequestKeyframe(KeyframeRequest),
    Dtmf { digits: String, method: DtmfMethod },
    Hangup(oneshot::Sender<Result<()>>),
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

#[derive(Debug)]
struct Observed {
    recording: Recording,
    stats: MediaStats,
    sequence: SequenceTracker,
    video: VideoStats,
    /// The newest decoded picture; an `Arc` so readers take it without
    /// copying under the lock.
    seen: Option<Arc<Picture>>,
    /// When it was decoded.
    seen_at: Option<Instant>,
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
pub struct RoomSystem {
    call_id: String,
    local_sip: SocketAddr,
    local_rtp: SocketAddr,
    local_video: Option<SocketAddr>,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
}

impl RoomSystem {
    /// Places the call; returns once the 200 OK is ACKed and media flows.
    pub async fn call(cfg: RoomSystemConfig) -> Result<RoomSystem> {
        Self::call_with(cfg, CallOptions::default()).await
    }

    pub async fn call_with(cfg: RoomSystemConfig, options: CallOptions) -> Result<RoomSystem> {
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
        let sip = UdpSocket::bind((cfg.local_ip, 0)).await?;
        let rtp = UdpSocket::bind((cfg.local_ip, 0)).await?;
        let local_sip = sip.local_addr()?;
        let local_rtp = rtp.local_addr()?;

        // Video: its own socket, and both cores built before the INVITE so a
        // bad setting fails the call before the node sees it.
        let video = match &cfg.video {
            Some(source) => {
                let socket = UdpSocket::bind((cfg.local_ip, 0)).await?;
                // A 720p keyframe is a burst of ~100 packets; the default
                // receive buffer (208 KiB) overflows when a few arrive at once.
                let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(1 << 20);
                let local = socket.local_addr()?;
                let ssrc: u32 = rand::random();
                let sender =
                    VideoSender::new(source, sdp::H264_PT, ssrc, rand::random(), rand::random())?;
                let mut receiver = VideoReceiver::new(
                    ssrc,
                    format!("{ssrc:08x}@tandem-loadtest"),
                    options.decode_video,
                )?;
                receiver.set_payload_type(sdp::H264_PT);
                Some(VideoLeg {
                    socket,
                    local,
                    sender,
                    receiver,
                    remote: None,
                    sending: false,
                    interval: source.spec().frame_interval(),
                })
            }
            None => None,
        };
        let local_video = video.as_ref().map(|v| v.local);

        let call_id = format!("{:016x}@tandem-loadtest", rand::random::<u64>());
        let offer = sdp::offer_with_video(
            cfg.local_ip,
            local_rtp.port(),
            cfg.codec,
            cfg.ptime_ms,
            rand::random::<u32>().into(),
            cfg.video
                .as_ref()
                .zip(local_video)
                .map(|(source, local)| VideoOffer {
                    port: local.port(),
                    bitrate_bps: source.spec().bitrate_bps,
                }),
        );
        let invite_sent = Instant::now();
        let uac = Uac::new(
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
        );

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
                video: VideoStats::default(),
                seen: None,
                seen_at: None,
            }),
        });
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (established_tx, established_rx) = oneshot::channel();
        let driver = Driver {
            uac,
            sip,
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
            dtmf_pt: None,
            dtmf_queue: VecDeque::new(),
            dtmf_tone: None,
            info_queue: VecDeque::new(),
            info_ticker: None,
        };
        tokio::spawn(driver.run());
        match established_rx.await {
            Ok(Ok(())) => Ok(RoomSystem {
                call_id,
                local_sip,
                local_rtp,
                local_video,
                shared,
                commands,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Ended),
        }
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
        self.shared.lock().video.clone()
    }

    /// The last picture decoded, if any.
    pub fn seen(&self) -> Option<Arc<Picture>> {
        self.shared.lock().seen.clone()
    }

    /// The last picture decoded and when it was (the moment its access
    /// unit was complete and decoded, on the call's task).
    pub fn seen_at(&self) -> Option<(Arc<Picture>, Instant)> {
        let observed = self.shared.lock();
        observed.seen.clone().zip(observed.seen_at)
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

/// The video side of the leg: its socket and the two cores.
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
}

struct Driver {
    uac: Uac,
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

impl Driver {
    async fn run(mut self) {
        let mut sip_buf = vec![0u8; 65_536];
        let mut rtp_buf = vec![0u8; 2_048];
        let mut video_buf = vec![0u8; 65_536];
        let mut packet = Vec::with_capacity(1_500);
        let mut payload = Vec::with_capacity(1_500);
        loop {
            self.flush_sip().await;
            self.drain_events();
            self.flush_video().await;
            if self.uac.state() == CallState::Terminated {
                // An ACK or a 200 to the node's BYE may still be queued.
                self.flush_sip().await;
                break;
            }
            let deadline = self.uac.poll_timeout();
            tokio::select! {
                r = self.sip.recv_from(&mut sip_buf) => {
                    // Receive errors on an unconnected UDP socket are transient
                    // (e.g. a reported ICMP error); the next read is fine.
                    if let Ok((n, from)) = r {
                        self.uac.handle_datagram(Instant::now(), from, &sip_buf[..n]);
                    }
                }
                () = sleep_until(deadline) => self.uac.handle_timeout(Instant::now()),
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
        while let Some(t) = self.uac.poll_transmit() {
            // A lost datagram is what retransmission is for.
            let _ = self.sip.send_to(&t.payload, t.to).await;
        }
    }

    fn drain_events(&mut self) {
        while let Some(event) = self.uac.poll_event() {
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
                    match result {
                        Ok((audio, video)) => {
                            self.dtmf_pt = sdp::telephone_event_pt(&answer);
                            let answer = audio;
                            self.start_media(&answer);
                            if let Some(video) = video {
                                self.start_video(video);
                            }
                            if let Some(tx) = self.established.take() {
                                let _ = tx.send(Ok(()));
                            }
                        }
                        Err(e) => {
                            self.uac.hangup(now);
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
                    self.info_ticker = None;
                    let reason = self.uac.remote_bye_reason().map(str::to_owned);
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
                self.uac.send_info(
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
                    self.publish_video(None);
                }
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
                self.hangups.push(tx);
                self.uac.hangup(now);
            }
            None => {
                // The handle was dropped: hang up, and stop polling the channel.
                self.commands_open = false;
                self.media = None;
                self.video_ticker = None;
                self.uac.hangup(now);
            }
        }
    }

    fn start_video(&mut self, answer: sdp::VideoAnswer) {
        let Some(v) = self.video.as_mut() else {
            return;
        };
        v.sender.set_payload_type(answer.payload_type);
        v.receiver.set_payload_type(answer.payload_type);
        v.sending = answer.we_send();
        if v.sending {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now(), v.interval);
            // A picture that is late is not made up for: a camera drops it.
            ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
            self.video_ticker = Some(ticker);
        }
        v.remote = Some(answer.clone());
        self.shared.lock().video.answer = Some(answer);
    }

    fn send_picture(&mut self) {
        if let Some(v) = self.video.as_mut() {
            v.sender.handle_tick(Instant::now());
        }
        self.publish_video(None);
    }

    fn handle_video(&mut self, datagram: &[u8]) {
        let now = Instant::now();
        let Some(v) = self.video.as_mut() else {
            return;
        };
        if rtp::is_rtcp(datagram) {
            match rtcp::parse_feedback(datagram) {
                Ok(feedback) => {
                    for fb in &feedback {
                        v.sender.handle_feedback(fb);
                    }
                }
                Err(_) => self.shared.lock().video.malformed_datagrams += 1,
            }
            self.publish_video(None);
            return;
        }
        let Ok(packet) = rtp::parse(datagram) else {
            self.shared.lock().video.malformed_datagrams += 1;
            return;
        };
        v.receiver
            .handle_rtp(now, &packet.header, packet.payload, datagram.len());
        // Built outside the lock: the lock only swaps an Arc.
        let picture = v.receiver.poll_picture().map(Arc::new);
        // Stamped after decoding (handle_rtp decodes): what a glass-to-glass
        // reading compares with.
        let decoded_at = Instant::now();
        self.publish_video(picture.map(|p| (p, decoded_at)));
    }

    /// Copies the cores' counters (and a new picture) where the handle reads.
    fn publish_video(&self, picture: Option<(Arc<Picture>, Instant)>) {
        let Some(v) = self.video.as_ref() else {
            return;
        };
        let mut observed = self.shared.lock();
        let stats = &mut observed.video;
        stats.sent = v.sender.stats();
        stats.received = v.receiver.stats();
        if stats.received.packets > 0 && stats.first_packet_latency.is_none() {
            stats.first_packet_latency = Some(Instant::now() - self.invite_sent);
        }
        if let Some((picture, at)) = picture {
            stats
                .first_picture_latency
                .get_or_insert(at - self.invite_sent);
            observed.seen = Some(picture);
            observed.seen_at = Some(at);
        }
    }

    /// Sends what the video cores have queued: RTP to the answer's RTP
    /// address, RTCP to its RTCP address. Nothing goes out before the answer.
    async fn flush_video(&mut self) {
        let Some(v) = self.video.as_mut() else {
            return;
        };
        let Some(remote) = v.remote.as_ref() else {
            return;
        };
        while let Some(packet) = v.sender.poll_transmit() {
            if v.sending {
                // A lost datagram is a lost packet; the receiver will PLI.
                let _ = v.socket.send_to(&packet, remote.rtp).await;
            }
        }
        while let Some(packet) = v.receiver.poll_transmit() {
            let _ = v.socket.send_to(&packet, remote.rtcp).await;
        }
        while let Some(packet) = v.sender.poll_rtcp() {
            let _ = v.socket.send_to(&packet, remote.rtcp).await;
        }
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
}
