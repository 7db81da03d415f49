//! Native meeting participants in Rust: what a browser in the Janus
//! VideoRoom would be, built from tandem-cascade's [`JanusConnector`] and
//! WebRTC sessions.
//!
//! - [`Observer`]: joins the room without publishing, learns who publishes
//!   and subscribes ([`Subscription`]): the bench's view of the bridge's
//!   publication, decoded with the loadtest's own depacketizer and OpenH264.
//! - [`NativePublisher`]: publishes H.264 (the high simulcast layer only,
//!   as a camera that sends one size) and Opus. Pictures are made on a
//!   thread of their own (a clip replayed, or the clock pattern encoded
//!   live) and handed to the task that owns the WebRTC session.
//!
//! Natives connect to Janus directly (host candidates on the namespace's
//! address, no TURN): only the node's agent goes through the Edge.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, anyhow, bail};
use tandem_cascade::agent::{
    PublishSession, ReceivedCodec, ReceivedPacket, SessionConfig, SubscribeSession,
};
use tandem_cascade::connector::{MediaKind, StreamRequest};
use tandem_cascade::janus::{JanusConfig, JanusConnector};
use tandem_cascade::{
    IcePolicy, MeetingConnector, MeetingEvent, PublisherId, RoomId, SubscriptionId,
};
use tandem_loadtest::video::clock::{self, WallClock};
use tandem_loadtest::video::codec::{H264Decoder, H264Encoder};
use tandem_loadtest::video::h264::{Depacketized, Depacketizer};
use tandem_loadtest::{Codec, Picture, VideoClip, codec, rtp::RtpHeader};
use tandem_mixer::video::SimulcastLayer;
use tandem_proto::rtp::MediaTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Where the meeting is and how natives reach it.
#[derive(Debug, Clone)]
pub struct Meeting {
    pub janus_url: String,
    pub room: u64,
    pub admin_key: String,
    /// The address natives bind their WebRTC to.
    pub media_ip: IpAddr,
}

impl Meeting {
    fn connector(&self) -> JanusConnector {
        let mut config = JanusConfig::new(self.janus_url.clone());
        // Whoever comes first creates the room, with the same settings the
        // node's agent would use.
        config.create_room = true;
        config.admin_key = Some(self.admin_key.clone());
        JanusConnector::new(config)
    }

    fn session_config(&self) -> SessionConfig {
        SessionConfig {
            ice_servers: Vec::new(),
            ice_policy: IcePolicy::All,
            bind: self.media_ip,
        }
    }
}

/// A participant of the meeting who only watches.
pub struct Observer {
    meeting: Meeting,
    connector: JanusConnector,
}

/// One decoded picture and when it was decoded.
pub struct Decoded {
    pub picture: Picture,
    pub at: Instant,
}

/// What a subscription has received so far.
#[derive(Debug, Default, Clone, Copy)]
pub struct FirstMedia {
    pub video_packet: Option<Instant>,
    pub audio_packet: Option<Instant>,
    pub picture: Option<Instant>,
}

/// A subscription to one publisher, decoding its video.
pub struct Subscription {
    id: SubscriptionId,
    session: SubscribeSession,
    packets: mpsc::Receiver<ReceivedPacket>,
    video_mid: String,
    depacketizer: Depacketizer,
    decoder: H264Decoder,
    pub first: FirstMedia,
    pub pictures: u64,
    pub decode_errors: u64,
}

impl Observer {
    pub async fn join(meeting: &Meeting, display: &str) -> anyhow::Result<Observer> {
        let mut connector = meeting.connector();
        connector
            .join(RoomId(meeting.room), display)
            .await
            .with_context(|| format!("joining Janus room {} as {display}", meeting.room))?;
        Ok(Observer {
            meeting: meeting.clone(),
            connector,
        })
    }

    /// Waits until a publisher whose display name starts with `prefix`
    /// announces its streams (one not in `gone`: events about a publisher
    /// that already left may still be queued); returns it.
    pub async fn wait_publisher(
        &mut self,
        prefix: &str,
        timeout: Duration,
        gone: &[PublisherId],
    ) -> anyhow::Result<PublisherId> {
        let wait = async {
            loop {
                match self.connector.next_event().await {
                    Some(MeetingEvent::PublishersUpdated(list)) => {
                        if let Some(p) = list.into_iter().find(|p| {
                            p.display.as_deref().is_some_and(|d| d.starts_with(prefix))
                                && !p.streams.is_empty()
                                && !gone.contains(&p.id)
                        }) {
                            return Ok(p.id);
                        }
                    }
                    Some(MeetingEvent::SessionLost) | None => {
                        bail!("the observer's Janus session was lost")
                    }
                    Some(_) => {}
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| {
            anyhow!("no publisher named {prefix:?} appeared in Janus within {timeout:?}")
        })?
    }

    /// Waits until `id` leaves the room (or stops publishing).
    pub async fn wait_left(&mut self, id: PublisherId, timeout: Duration) -> anyhow::Result<()> {
        let wait = async {
            loop {
                match self.connector.next_event().await {
                    Some(MeetingEvent::PublisherLeft(p)) if p == id => return Ok(()),
                    Some(MeetingEvent::SessionLost) | None => {
                        bail!("the observer's Janus session was lost")
                    }
                    Some(_) => {}
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| anyhow!("publisher {} still in Janus after {timeout:?}", id.0))?
    }

    /// Subscribes to everything `publisher` sends (Janus forwards the
    /// highest simulcast layer until told otherwise).
    pub async fn subscribe(&mut self, publisher: PublisherId) -> anyhow::Result<Subscription> {
        let offer = self
            .connector
            .subscribe(&[StreamRequest {
                publisher,
                mid: None,
            }])
            .await
            .context("subscribing in Janus")?;
        let video_mid = offer
            .streams
            .iter()
            .find(|s| s.kind == MediaKind::Video)
            .map(|s| s.mid.clone())
            .ok_or_else(|| anyhow!("the publisher offers no video: {:?}", offer.streams))?;
        let (mut session, answer) = SubscribeSession::answer(
            &self.meeting.session_config(),
            SystemTime::now(),
            &offer.offer,
            4096,
        )
        .await
        .context("answering Janus' subscription offer")?;
        self.connector
            .start(offer.id, answer)
            .await
            .context("starting the subscription")?;
        let packets = session
            .take_packets()
            .ok_or_else(|| anyhow!("the subscription's packets were taken"))?;
        Ok(Subscription {
            id: offer.id,
            session,
            packets,
            video_mid,
            depacketizer: Depacketizer::new(),
            decoder: H264Decoder::new()?,
            first: FirstMedia::default(),
            pictures: 0,
            decode_errors: 0,
        })
    }

    /// Asks Janus for another simulcast layer of the subscription's video.
    pub async fn switch_layer(
        &mut self,
        sub: &Subscription,
        layer: SimulcastLayer,
    ) -> anyhow::Result<()> {
        self.connector
            .switch_layer(sub.id, &sub.video_mid, layer)
            .await
            .context("switching the simulcast layer")
    }

    pub async fn unsubscribe(&mut self, sub: Subscription) {
        let _ = self.connector.unsubscribe(sub.id).await;
        let _ = sub.session.close().await;
    }

    pub async fn leave(mut self) {
        let _ = self.connector.leave().await;
    }
}

impl Subscription {
    /// The next decoded picture, handling packets until one is complete;
    /// `None` if nothing arrives for `idle`.
    pub async fn next_picture(&mut self, idle: Duration) -> Option<Decoded> {
        loop {
            let packet = tokio::time::timeout(idle, self.packets.recv())
                .await
                .ok()??;
            let now = Instant::now();
            match packet.codec {
                ReceivedCodec::Opus => {
                    self.first.audio_packet.get_or_insert(now);
                }
                ReceivedCodec::H264 => {
                    self.first.video_packet.get_or_insert(now);
                    let header = RtpHeader {
                        payload_type: packet.payload_type,
                        marker: packet.marker,
                        sequence: packet.sequence,
                        timestamp: packet.timestamp.0,
                        ssrc: packet.ssrc,
                    };
                    self.depacketizer.handle_packet(&header, &packet.payload);
                    let mut newest = None;
                    while let Some(unit) = self.depacketizer.poll() {
                        let Depacketized::Complete(au) = unit else {
                            continue;
                        };
                        match self.decoder.decode(&au.annexb) {
                            Ok(Some(picture)) => newest = Some(picture),
                            Ok(None) => {}
                            Err(_) => self.decode_errors += 1,
                        }
                    }
                    if let Some(picture) = newest {
                        let at = Instant::now();
                        self.first.picture.get_or_insert(at);
                        self.pictures += 1;
                        return Some(Decoded { picture, at });
                    }
                }
                ReceivedCodec::Other(_) => {}
            }
        }
    }

    /// Handles packets until video, audio and a picture have all arrived.
    pub async fn wait_first_media(&mut self, timeout: Duration) -> FirstMedia {
        let deadline = Instant::now() + timeout;
        while self.first.audio_packet.is_none() || self.first.picture.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.next_picture(left).await.is_none() {
                break;
            }
        }
        self.first
    }
}

/// What a native publisher's camera shows.
#[derive(Clone)]
pub enum NativeVideo {
    /// A pre-encoded clip, looped (a keyframe each time round).
    Clip(Arc<VideoClip>),
    /// The clock pattern, encoded live (an IDR every second, since Janus'
    /// keyframe requests do not reach us through the WebRTC stack).
    Clock {
        clock: WallClock,
        width: u32,
        height: u32,
        fps: f32,
        bitrate_bps: u32,
    },
}

enum Media {
    Video(MediaTime, Vec<u8>),
    Audio(MediaTime, Vec<u8>),
}

/// A native participant publishing a camera and a microphone.
pub struct NativePublisher {
    connector: JanusConnector,
    stop: Arc<AtomicBool>,
    source: Option<std::thread::JoinHandle<()>>,
    sender: Option<JoinHandle<anyhow::Result<PublishSession>>>,
}

impl NativePublisher {
    /// Joins as `display`, publishes and starts sending once connected.
    /// `tone_hz`: a sine (the participant talks), or quiet-room noise.
    pub async fn start(
        meeting: &Meeting,
        display: &str,
        video: NativeVideo,
        tone_hz: Option<f32>,
    ) -> anyhow::Result<NativePublisher> {
        let mut connector = meeting.connector();
        connector
            .join(RoomId(meeting.room), display)
            .await
            .with_context(|| format!("{display}: joining Janus room {}", meeting.room))?;
        let mut session = PublishSession::new(&meeting.session_config(), SystemTime::now())
            .await
            .with_context(|| format!("{display}: publish session"))?;
        let offer = session.create_offer().await?;
        let answer = connector
            .publish(offer)
            .await
            .with_context(|| format!("{display}: publishing"))?;
        session.handle_answer(answer).await?;
        session
            .wait_connected(Duration::from_secs(15))
            .await
            .with_context(|| format!("{display}: WebRTC to Janus"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = mpsc::channel::<Media>(64);
        let quiet = codec::comfort_frames(Codec::Opus, 20)?;
        let tone = tone_hz.map(|hz| codec::Encoder::new(Codec::Opus).map(|e| (hz, e)));
        let tone = tone.transpose()?;
        let source = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("native-{display}"))
                .spawn(move || produce(video, tone, quiet, tx, &stop))?
        };
        let sender = tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                match m {
                    Media::Video(ts, au) => {
                        session.send_video(SimulcastLayer::Hd720, ts, &au).await?;
                    }
                    Media::Audio(ts, opus) => session.send_audio(ts, &opus).await?,
                }
            }
            Ok(session)
        });
        Ok(NativePublisher {
            connector,
            stop,
            source: Some(source),
            sender: Some(sender),
        })
    }

    /// Stops sending, closes the peer connection and leaves the room.
    pub async fn leave(mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.source.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        let session = match self.sender.take() {
            Some(s) => s.await.map_err(|e| anyhow!("sender task: {e}"))??,
            None => return Ok(()),
        };
        let _ = session.close().await;
        let _ = self.connector.leave().await;
        Ok(())
    }
}

impl Drop for NativePublisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The publisher's camera and microphone, paced by wall time: pictures at
/// the source's rate, Opus every 20 ms.
fn produce(
    video: NativeVideo,
    mut tone: Option<(f32, codec::Encoder)>,
    quiet: Arc<[Vec<u8>]>,
    tx: mpsc::Sender<Media>,
    stop: &AtomicBool,
) {
    let fps = match &video {
        NativeVideo::Clip(clip) => clip.spec().fps,
        NativeVideo::Clock { fps, .. } => *fps,
    };
    let mut live = match &video {
        NativeVideo::Clock {
            width,
            height,
            fps,
            bitrate_bps,
            ..
        } => match (
            H264Encoder::new(*width, *height, *fps, *bitrate_bps),
            Picture::solid(*width, *height, (0, 0, 0)),
        ) {
            (Ok(e), Ok(p)) => Some((e, p)),
            _ => return,
        },
        NativeVideo::Clip(_) => None,
    };
    let interval = Duration::from_secs_f64(1.0 / f64::from(fps));
    let start = Instant::now();
    let samples = codec::frame_samples(Codec::Opus, 20);
    let step = std::f64::consts::TAU / f64::from(Codec::Opus.encode_rate());
    let mut pcm = vec![0i16; samples];
    let (mut phase, mut audio_frames) = (0f64, 0u64);
    let mut annexb = Vec::new();
    let mut frame = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let timestamp = MediaTime((now.duration_since(start).as_micros() * 9 / 100) as u32);
        let au: Option<Vec<u8>> = match (&video, live.as_mut()) {
            (NativeVideo::Clip(clip), _) => {
                let (au, _) = clip.access_unit(frame as usize);
                (!au.is_empty()).then(|| au.to_vec())
            }
            (NativeVideo::Clock { clock, .. }, Some((encoder, picture))) => {
                clock::paint_clock(picture, clock.unix_ms(now));
                let keyframe = frame.is_multiple_of(fps.round().max(1.0) as u64);
                match encoder.encode(picture, keyframe, &mut annexb) {
                    Ok(_) if !annexb.is_empty() => Some(annexb.clone()),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(au) = au
            && tx.blocking_send(Media::Video(timestamp, au)).is_err()
        {
            return;
        }
        // Opus, kept up with wall time.
        while Duration::from_millis(audio_frames * 20) <= start.elapsed() {
            let opus = match tone.as_mut() {
                Some((hz, encoder)) => {
                    for s in pcm.iter_mut() {
                        *s = (phase.sin() * 0.25 * 32_767.0) as i16;
                        phase = (phase + step * f64::from(*hz)) % std::f64::consts::TAU;
                    }
                    let mut out = Vec::new();
                    if encoder.encode(&pcm, &mut out).is_err() {
                        return;
                    }
                    out
                }
                None => quiet[audio_frames as usize % quiet.len()].clone(),
            };
            let ts = MediaTime((audio_frames * samples as u64) as u32);
            if tx.blocking_send(Media::Audio(ts, opus)).is_err() {
                return;
            }
            audio_frames += 1;
        }
        frame += 1;
        let next = start + interval.mul_f64(frame as f64);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}
