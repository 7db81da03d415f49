//! Presentations across the cascade, both ways:
//! - **room system → meeting** ([`ContentOut`]): while a room system holds
//!   the floor, the agent publishes its slides into the meeting as a
//!   publisher of their own, `"<conference> content"`, whose video stream
//!   is described as `screen` (Janus' `descriptions`): native clients show
//!   it as a screen share. The slides come from the conference's content
//!   relay through an internal content channel (a loopback leg that is
//!   neither heard nor shown), and are transcoded: decoded once, scaled to
//!   fit 1920x1080, encoded as H.264 at 5–15 fps with a keyframe every
//!   2 s, so the meeting gets a sane stream whatever the room system sends.
//! - **meeting → room systems** ([`NativeShare`]): a native publisher whose
//!   video is described as `screen` is not brought in as a person: its
//!   video is subscribed, transcoded the same way and sent into the
//!   conference as the presentation of a participant that stands for the
//!   native sharer, which takes the floor with [`Bfcp::hold_for`]. A room
//!   system's later floor request takes it over as usual; the floor is
//!   given back when the share stops.
//!
//! The transcoding runs on a thread of its own per direction (media
//! threads never run on the async runtime); the async tasks here only move
//! packets and talk to the meeting server.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tandem_cascade::agent::{ReceivedCodec, ReceivedPacket, SubscribeSession};
use tandem_cascade::janus::JanusConnector;
use tandem_cascade::{MeetingConnector, MeetingEvent, RoomId};
use tandem_mixer::ParticipantId;
use tandem_mixer::video::codec::{EncoderSettings, VideoDecoder, VideoEncoder};
use tandem_mixer::video::{I420Frame, Scaler, SimulcastLayer};
use tandem_proto::rtp::MediaTime;
use tandem_proto::rtp::h264::{H264Depacketizer, H264Packetizer, PacketizationMode};
use tandem_proto::rtp::{RtpHeader, RtpPacket, Ssrc, is_rtcp, rtcp};
use tandem_proto::sdp::{AudioCodec, LocalMedia, SdpSession, SessionDescription, VideoStream};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::{AgentContext, H264_PT, KEEPALIVE, NEXT_INTERNAL, OPUS_PT, OwnPublishers, publish};
use crate::conference::{ConferenceCommand, LegSetup, LegSide};

/// The largest picture published or sent as content.
const MAX_WIDTH: u32 = 1920;
const MAX_HEIGHT: u32 = 1080;
/// Content frame rates: at most this many pictures a second...
const MAX_FPS: u32 = 15;
/// ...and at least this many (the last picture again while the source is
/// still): a subscriber that joins late gets a picture soon.
const MIN_FPS: u32 = 5;
/// A keyframe at least this often: keyframe requests from the meeting's
/// subscribers do not reach us.
const KEYFRAME_EVERY: Duration = Duration::from_secs(2);
/// How often the source is asked for a keyframe while nothing decodes.
const SOURCE_KEYFRAME_EVERY: Duration = Duration::from_secs(1);
const RTP_MTU: usize = 1100;
/// What the Janus stream description of a screen share says.
pub const SCREEN: &str = "screen";

/// The video bitrate for a content picture of `w`x`h`: 1.5 Mbit/s at
/// 1080p, in proportion to the area, at least 200 kbit/s (slides are
/// mostly still).
fn content_bitrate(w: u32, h: u32) -> u32 {
    let area = u64::from(w) * u64::from(h);
    let full = u64::from(MAX_WIDTH * MAX_HEIGHT);
    ((1_500_000 * area / full) as u32).max(200_000)
}

/// The size a `w`x`h` source is encoded at: within 1920x1080, aspect kept,
/// never scaled up, even sides.
pub fn content_size(w: u32, h: u32) -> (u32, u32) {
    let (w, h) = (w.max(2), h.max(2));
    let scale = f64::min(
        1.0,
        f64::min(
            f64::from(MAX_WIDTH) / f64::from(w),
            f64::from(MAX_HEIGHT) / f64::from(h),
        ),
    );
    let even = |x: f64| ((x.round() as u32) & !1).max(2);
    (even(f64::from(w) * scale), even(f64::from(h) * scale))
}

/// A transcoded content picture.
pub struct ContentPicture {
    /// 90 kHz, the transcoder's own clock.
    pub ts: MediaTime,
    pub annexb: Vec<u8>,
}

enum TranscodeInput {
    Picture(Vec<u8>),
    Keyframe,
}

/// Decodes one H.264 source, scales and re-encodes it on its own thread
/// (see the module's documentation for the format). The thread ends when
/// this is dropped.
struct Transcoder {
    input: std::sync::mpsc::SyncSender<TranscodeInput>,
}

impl Transcoder {
    fn start(name: String, out: mpsc::Sender<ContentPicture>) -> Option<Transcoder> {
        let (input, rx) = std::sync::mpsc::sync_channel::<TranscodeInput>(16);
        let mut decoder = VideoDecoder::new().ok()?;
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let start = Instant::now();
                let mut scaler = Scaler::new();
                let mut encoder: Option<VideoEncoder> = None;
                let mut last: Option<I420Frame> = None;
                let mut last_out: Option<Instant> = None;
                let mut last_keyframe: Option<Instant> = None;
                let mut force = false;
                let min_gap = Duration::from_millis(1000 / u64::from(MAX_FPS));
                let max_gap = Duration::from_millis(1000 / u64::from(MIN_FPS));
                loop {
                    let fresh = match rx.recv_timeout(max_gap) {
                        Ok(TranscodeInput::Keyframe) => {
                            force = true;
                            continue;
                        }
                        Ok(TranscodeInput::Picture(au)) => {
                            let Ok(Some(picture)) = decoder.decode(&au) else {
                                continue;
                            };
                            let (w, h) = content_size(picture.width(), picture.height());
                            let scaled = if (w, h) == (picture.width(), picture.height()) {
                                Some(picture)
                            } else {
                                scaler.scale(&picture, w, h).ok()
                            };
                            if scaled.is_some() {
                                last = scaled;
                            }
                            true
                        }
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => false,
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                    };
                    let Some(picture) = &last else { continue };
                    let now = Instant::now();
                    // At most MAX_FPS; a still source is repeated at MIN_FPS.
                    let gap = last_out.map(|t| now.saturating_duration_since(t));
                    if gap.is_some_and(|g| g < if fresh { min_gap } else { max_gap }) {
                        continue;
                    }
                    let size = (picture.width(), picture.height());
                    if encoder
                        .as_ref()
                        .is_none_or(|e| (e.settings().width, e.settings().height) != size)
                    {
                        let settings = EncoderSettings::new(
                            size.0,
                            size.1,
                            MAX_FPS as f32,
                            content_bitrate(size.0, size.1),
                        );
                        encoder = VideoEncoder::new(settings).ok();
                        force = true;
                    }
                    let Some(enc) = encoder.as_mut() else {
                        continue;
                    };
                    let due = last_keyframe
                        .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_EVERY);
                    let Ok(encoded) = enc.encode(picture, force || due) else {
                        continue;
                    };
                    if encoded.annexb.is_empty() {
                        continue;
                    }
                    if encoded.keyframe {
                        force = false;
                        last_keyframe = Some(now);
                    }
                    last_out = Some(now);
                    let ts = MediaTime((now.duration_since(start).as_millis() as u64 * 90) as u32);
                    let picture = ContentPicture {
                        ts,
                        annexb: encoded.annexb,
                    };
                    if out.blocking_send(picture).is_err() {
                        return;
                    }
                }
            })
            .ok()?;
        Some(Transcoder { input })
    }

    /// One access unit of the source; false when the thread lags (dropped).
    fn push(&self, au: Vec<u8>) -> bool {
        self.input.try_send(TranscodeInput::Picture(au)).is_ok()
    }

    fn request_keyframe(&self) {
        let _ = self.input.try_send(TranscodeInput::Keyframe);
    }
}

/// An internal leg that only carries content: its audio is inactive, it
/// has no people video, and its content channel either receives the
/// conference's slides (`receive`) or sends a presentation.
struct ContentLeg {
    participant: ParticipantId,
    socket: Arc<UdpSocket>,
    /// The conference's content port for this leg.
    conf: SocketAddr,
}

async fn add_content_leg(
    ctx: &AgentContext,
    name: &str,
    side: LegSide,
    receive: bool,
) -> Result<ContentLeg, String> {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let audio_socket = UdpSocket::bind((lo, 0)).await.map_err(|e| e.to_string())?;
    let socket = UdpSocket::bind((lo, 0)).await.map_err(|e| e.to_string())?;
    let (ap, cp) = (
        audio_socket.local_addr().map_err(|e| e.to_string())?.port(),
        socket.local_addr().map_err(|e| e.to_string())?.port(),
    );
    let conf_audio = ctx
        .ports
        .allocate(ctx.settings.audio_dscp)
        .ok_or("audio port range exhausted")?;
    let Some(conf_content) = ctx.video_ports.allocate(ctx.settings.video_dscp) else {
        ctx.ports.release(conf_audio.port);
        return Err("video port range exhausted".into());
    };
    let conf_audio_addr = conf_audio.rtp.local_addr().map_err(|e| e.to_string())?;
    let conf = conf_content.rtp.local_addr().map_err(|e| e.to_string())?;
    let direction = if receive { "recvonly" } else { "sendonly" };
    // The content channel is negotiated as a video m-line and handed to
    // the relay; the leg itself gets no people video.
    let offer = format!(
        "v=0\r\no=tandem-cascade 1 1 IN IP4 127.0.0.1\r\ns=cascade content\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {ap} RTP/AVP {OPUS_PT}\r\na=rtpmap:{OPUS_PT} opus/48000/2\r\na=rtcp-mux\r\na=inactive\r\n\
         m=video {cp} RTP/AVP {H264_PT}\r\nb=AS:4000\r\na=rtpmap:{H264_PT} H264/90000\r\n\
         a=fmtp:{H264_PT} profile-level-id=42e028;packetization-mode=1;level-asymmetry-allowed=1\r\n\
         a=rtcp-fb:{H264_PT} nack pli\r\na=rtcp-fb:{H264_PT} ccm fir\r\na=rtcp-mux\r\na={direction}\r\n"
    );
    let release = |why: String| {
        ctx.ports.release(conf_audio.port);
        ctx.video_ports.release(conf_content.port);
        why
    };
    let parsed = SessionDescription::parse(&offer).map_err(|e| release(format!("offer: {e}")))?;
    let local = LocalMedia {
        addr: conf_audio_addr.ip(),
        audio_port: conf_audio.port,
        codecs: vec![AudioCodec::Opus],
        ptime: 20,
        video_port: Some(conf_content.port),
        content: None,
    };
    let mut sdp = SdpSession::new(0);
    let (_, negotiated) = sdp
        .answer(&parsed, &local)
        .map_err(|e| release(format!("answer: {e}")))?;
    let media = negotiated.ok_or_else(|| release("no audio in the internal offer".into()))?;
    let stream: VideoStream = sdp
        .video()
        .cloned()
        .ok_or_else(|| release("content line not answered".into()))?;
    let participant = ParticipantId(NEXT_INTERNAL.fetch_add(1, Ordering::Relaxed));
    let setup = LegSetup {
        participant,
        name: name.to_owned(),
        call_id: format!("cascade-content-{}-{}", ctx.conference, participant.0),
        signalling: "cascade",
        media,
        sockets: conf_audio,
        video: None,
        side,
        shown: false,
        link_rank: 0,
        door: None,
    };
    ctx.commands
        .send(ConferenceCommand::AddLeg(Box::new(setup)))
        .await
        .map_err(|_| "conference ended".to_string())?;
    ctx.commands
        .send(ConferenceCommand::AddContent {
            participant,
            stream,
            sockets: conf_content,
        })
        .await
        .map_err(|_| "conference ended".to_string())?;
    Ok(ContentLeg {
        participant,
        socket: Arc::new(socket),
        conf,
    })
}

async fn remove_content_leg(ctx: &AgentContext, leg: &ContentLeg) {
    let _ = ctx
        .commands
        .send(ConferenceCommand::RemoveLeg {
            participant: leg.participant,
        })
        .await;
}

fn pli() -> Vec<u8> {
    let mut buf = Vec::with_capacity(12);
    rtcp::write_pli(&mut buf, Ssrc(0), Ssrc(0));
    buf
}

/// A room system's presentation, published into the meeting while it
/// holds the floor. Dropping it does not stop it: call [`ContentOut::stop`].
pub struct ContentOut {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ContentOut {
    pub fn start(ctx: AgentContext, own: OwnPublishers) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            ctx.metrics
                .cascade
                .content
                .with_label_values(&["out"])
                .inc();
            if let Err(e) = content_out(&ctx, stopped, own).await {
                warn!(conference = %ctx.conference, error = %e, "content publication ended");
            }
        });
        ContentOut { stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(3), self.task).await;
    }

    pub fn finished(&self) -> bool {
        self.task.is_finished()
    }
}

async fn content_out(
    ctx: &AgentContext,
    mut stopped: watch::Receiver<bool>,
    own: OwnPublishers,
) -> Result<(), String> {
    let name = format!("{} content", ctx.conference);
    let mut connector = JanusConnector::new(ctx.settings.janus.clone());
    connector.set_video_description(Some(SCREEN.into()));
    let mut leg: Option<ContentLeg> = None;
    let frames = ctx
        .metrics
        .cascade
        .content_frames
        .with_label_values(&["out"]);
    let bytes = ctx
        .metrics
        .cascade
        .content_bytes
        .with_label_values(&["out"]);
    let result = async {
        let joined = connector
            .join(RoomId(ctx.room), &name)
            .await
            .map_err(|e| format!("join: {e}"))?;
        if let Ok(mut own) = own.lock() {
            own.insert(joined.id);
        }
        let mut publisher = publish(&mut connector, ctx).await?;
        let (out_tx, mut out_rx) = mpsc::channel(8);
        let transcoder = Transcoder::start(format!("content-out-{}", ctx.conference), out_tx)
            .ok_or("content transcoder")?;
        // Only now: the relay asks the presenter for a keyframe for a new
        // channel, and we can use it at once.
        let l = add_content_leg(ctx, &name, LegSide::Link, true).await?;
        let (socket, conf) = (l.socket.clone(), l.conf);
        leg = Some(l);
        info!(conference = %ctx.conference, %name, "room-system content published into the meeting");
        let mut depacketizer = H264Depacketizer::new();
        depacketizer.set_freeze_until_keyframe(true);
        let mut buf = vec![0u8; 2048];
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        let mut ask = tokio::time::interval(SOURCE_KEYFRAME_EVERY);
        let mut decoding = false;
        loop {
            tokio::select! {
                _ = stopped.changed() => return Ok(()),
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
                        decoding |= au.keyframe;
                        if !transcoder.push(au.data) {
                            ctx.metrics.cascade.dropped.with_label_values(&["content_busy"]).inc();
                        }
                    }
                }
                Some(picture) = out_rx.recv() => {
                    publisher
                        .send_video(SimulcastLayer::Hd720, picture.ts, &picture.annexb)
                        .await
                        .map_err(|e| format!("send content: {e}"))?;
                    frames.inc();
                    bytes.inc_by(picture.annexb.len() as u64);
                }
                _ = ask.tick() => {
                    // Until the presenter's keyframe arrives (and after loss).
                    if !decoding || depacketizer.needs_keyframe() {
                        let _ = socket.send_to(&pli(), conf).await;
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
        remove_content_leg(ctx, &l).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), connector.leave()).await;
    info!(conference = %ctx.conference, "room-system content no longer published");
    result
}

/// A native screen share, presented to the room systems on behalf of the
/// native sharer. Dropping it does not stop it: call [`NativeShare::stop`].
pub struct NativeShare {
    /// The participant that stands for the sharer (it holds the floor).
    pub participant: ParticipantId,
    pub name: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl NativeShare {
    /// Adds the sharer's content leg, takes the floor for it and starts
    /// moving the share's video (subscribed already: `session`).
    pub async fn start(
        ctx: AgentContext,
        name: String,
        mut session: SubscribeSession,
    ) -> Result<Self, String> {
        let leg = add_content_leg(&ctx, &name, LegSide::Remote, false).await?;
        let participant = leg.participant;
        let packets = session.take_packets().ok_or("no packets from the share")?;
        if let Some(bfcp) = &ctx.bfcp {
            bfcp.add_user(&ctx.conference, participant);
            bfcp.hold_for(&ctx.conference, participant, true);
        }
        ctx.metrics.cascade.content.with_label_values(&["in"]).inc();
        info!(conference = %ctx.conference, %name, participant = participant.0, "native screen share presented to room systems");
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            if let Err(e) = native_share(&ctx, &leg, &session, packets, stopped).await {
                warn!(conference = %ctx.conference, error = %e, "native screen share ended");
            }
            if let Some(bfcp) = &ctx.bfcp {
                bfcp.hold_for(&ctx.conference, leg.participant, false);
                bfcp.remove_user(&ctx.conference, leg.participant);
            }
            remove_content_leg(&ctx, &leg).await;
            let _ = session.close().await;
        });
        Ok(NativeShare {
            participant,
            name,
            stop,
            task,
        })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(3), self.task).await;
    }
}

async fn native_share(
    ctx: &AgentContext,
    leg: &ContentLeg,
    session: &SubscribeSession,
    mut packets: mpsc::Receiver<ReceivedPacket>,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), String> {
    let (out_tx, mut out_rx) = mpsc::channel(8);
    let transcoder = Transcoder::start(format!("content-in-{}", ctx.conference), out_tx)
        .ok_or("content transcoder")?;
    let frames = ctx
        .metrics
        .cascade
        .content_frames
        .with_label_values(&["in"]);
    let bytes = ctx.metrics.cascade.content_bytes.with_label_values(&["in"]);
    let packetizer = H264Packetizer::new(RTP_MTU, PacketizationMode::NonInterleaved);
    let mut depacketizer = H264Depacketizer::new();
    depacketizer.set_freeze_until_keyframe(true);
    let ssrc: u32 = rand::random();
    let mut seq: u16 = rand::random();
    let mut rtp = Vec::with_capacity(1500);
    let mut buf = vec![0u8; 1500];
    let mut ask = tokio::time::interval(SOURCE_KEYFRAME_EVERY);
    let mut decoding = false;
    loop {
        tokio::select! {
            _ = stopped.changed() => return Ok(()),
            p = packets.recv() => {
                let Some(p) = p else { return Err("share's media ended".into()) };
                if p.codec != ReceivedCodec::H264 {
                    ctx.metrics.cascade.dropped.with_label_values(&["codec"]).inc();
                    continue;
                }
                rtp.clear();
                RtpHeader {
                    marker: p.marker,
                    payload_type: H264_PT,
                    sequence: p.sequence,
                    timestamp: p.timestamp,
                    ssrc: Ssrc(p.ssrc),
                }
                .write(&p.payload, &mut rtp);
                let Ok(packet) = RtpPacket::parse(&rtp) else { continue };
                depacketizer.handle_rtp(&packet);
                while let Some(au) = depacketizer.poll_access_unit() {
                    decoding |= au.keyframe;
                    if !transcoder.push(au.data) {
                        ctx.metrics.cascade.dropped.with_label_values(&["content_busy"]).inc();
                    }
                }
            }
            Some(picture) = out_rx.recv() => {
                let Ok(payloads) = packetizer.packetize(&picture.annexb) else { continue };
                let count = payloads.len();
                for (i, payload) in payloads.into_iter().enumerate() {
                    rtp.clear();
                    RtpHeader {
                        marker: i + 1 == count,
                        payload_type: H264_PT,
                        sequence: seq,
                        timestamp: picture.ts,
                        ssrc: Ssrc(ssrc),
                    }
                    .write(&payload, &mut rtp);
                    seq = seq.wrapping_add(1);
                    let _ = leg.socket.send_to(&rtp, leg.conf).await;
                }
                frames.inc();
                bytes.inc_by(picture.annexb.len() as u64);
            }
            r = leg.socket.recv_from(&mut buf) => {
                // The relay's keyframe requests (a new receiver, loss).
                let Ok((n, _)) = r else { continue };
                if let Ok(packets) = rtcp::parse_compound(&buf[..n])
                    && packets.iter().any(|p| p.is_pli() || p.is_fir())
                {
                    transcoder.request_keyframe();
                }
            }
            _ = ask.tick() => {
                if !decoding || depacketizer.needs_keyframe() {
                    session.request_keyframe().await;
                }
            }
        }
    }
}

/// The native publisher to present, if any: the most recent screen share
/// that is not ours.
pub fn screen_share<'a>(
    known: &'a [tandem_cascade::connector::RemotePublisher],
    own: &OwnPublishers,
    own_id: Option<tandem_cascade::connector::PublisherId>,
) -> Option<&'a tandem_cascade::connector::RemotePublisher> {
    known.iter().rev().find(|p| {
        p.is_screen_share() && Some(p.id) != own_id && !own.lock().is_ok_and(|o| o.contains(&p.id))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_scaled_to_fit_1080p_and_never_up() {
        assert_eq!(content_size(1920, 1080), (1920, 1080));
        assert_eq!(content_size(3840, 2160), (1920, 1080));
        assert_eq!(content_size(2560, 1600), (1728, 1080));
        assert_eq!(content_size(1280, 720), (1280, 720));
        assert_eq!(content_size(1025, 769), (1024, 768));
        assert_eq!(content_size(4000, 1000), (1920, 480));
    }

    #[test]
    fn content_bitrate_follows_the_area() {
        assert_eq!(content_bitrate(1920, 1080), 1_500_000);
        assert_eq!(content_bitrate(320, 180), 200_000);
    }
}
