//! The synthetic room system: one SIP call carrying real encoded audio (a
//! chosen tone, or quiet background noise), which records what it hears.
//!
//! Each [`RoomSystem`] is a handle to one tokio task (the driver) that owns
//! the leg's two UDP sockets (SIP, RTP), the [`Uac`] signalling core, the
//! encoder and the decoder, and runs a `select!` over the sockets, the UAC's
//! timer, the packet clock and a command channel. The handle talks to it with
//! [`Command`]s. What the handle reads synchronously — the recording and the
//! counters — sits behind a std `Mutex`: it is held for a memcpy at most, never
//! across an `.await`, and `heard()`/`stats()` must not need a runtime.
//!
//! Dropping the handle hangs up (the driver sees its command channel close).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Interval;

use crate::codec::{self, Codec, Decoder, Encoder};
use crate::error::{Error, Result};
use crate::perceive::Heard;
use crate::rtp::{self, RtpHeader, SequenceTracker};
use crate::sdp;
use crate::sip::{CallState, TRANSACTION_TIMEOUT, Uac, UacConfig, UacEvent};

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
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            listen: true,
            keep: Duration::from_secs(10),
            invite_timeout: TRANSACTION_TIMEOUT,
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
}

enum Command {
    SetTone { hz: Option<f32>, amplitude: f32 },
    Hangup(oneshot::Sender<Result<()>>),
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
        let sip = UdpSocket::bind((cfg.local_ip, 0)).await?;
        let rtp = UdpSocket::bind((cfg.local_ip, 0)).await?;
        let local_sip = sip.local_addr()?;
        let local_rtp = rtp.local_addr()?;

        let call_id = format!("{:016x}@tandem-loadtest", rand::random::<u64>());
        let offer = sdp::offer(
            cfg.local_ip,
            local_rtp.port(),
            cfg.codec,
            cfg.ptime_ms,
            rand::random::<u32>().into(),
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
        };
        tokio::spawn(driver.run());
        match established_rx.await {
            Ok(Ok(())) => Ok(RoomSystem {
                call_id,
                local_sip,
                local_rtp,
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

impl Driver {
    async fn run(mut self) {
        let mut sip_buf = vec![0u8; 65_536];
        let mut rtp_buf = vec![0u8; 2_048];
        let mut packet = Vec::with_capacity(1_500);
        let mut payload = Vec::with_capacity(1_500);
        loop {
            self.flush_sip().await;
            self.drain_events();
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
                    match result {
                        Ok(answer) => {
                            self.start_media(&answer);
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
                    self.shared.lock().stats.ended_by_remote = true;
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

    async fn send_frame(&mut self, payload: &mut Vec<u8>, packet: &mut Vec<u8>) {
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
            Some(Command::Hangup(tx)) => {
                self.media = None;
                self.hangups.push(tx);
                self.uac.hangup(now);
            }
            None => {
                // The handle was dropped: hang up, and stop polling the channel.
                self.commands_open = false;
                self.media = None;
                self.uac.hangup(now);
            }
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
