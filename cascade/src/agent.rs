//! The agent's WebRTC sessions: one peer connection that publishes, one per
//! subscription that receives.
//!
//! Built on the `webrtc` crate (0.21), the async layer over the sans-IO
//! `rtc` crates: each peer connection has its own driver task that owns the
//! sockets, ICE (through TURN), DTLS-SRTP and RTCP. A session here is a
//! thin handle: the caller's task calls it with encoded media and gets
//! received RTP from a channel; nothing in here waits on signalling.
//!
//! Media goes in already encoded: H.264 access units per simulcast layer
//! (from `tandem_mixer::video::SimulcastEncoder`) and Opus packets. We
//! packetize H.264 ourselves (RFC 6184, `tandem_proto`) rather than use the
//! webrtc sample writer, so that each layer keeps its own sequence numbers
//! and counters and carries the mid and rid header extensions Janus needs
//! to tell the layers apart (our SDP announces rids, not SSRCs).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use tandem_mixer::video::SimulcastLayer;
use tandem_proto::rtp::MediaTime;
use tandem_proto::rtp::h264::{H264Packetizer, PacketizationMode};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCBundlePolicy, RTCConfigurationBuilder, RTCIceCandidateType, RTCIceGatheringState,
    RTCIceServer, RTCIceTransportPolicy, RTCPeerConnectionState, RTCRtcpMuxPolicy,
    RTCSessionDescription, RTCStatsReportEntry, Registry, SettingEngineBuilder, StatsSelector,
    register_default_interceptors,
};

use crate::IcePolicy;
use crate::connector::{MediaKind, SdpKind, SessionDescription};
use crate::error::Error;

/// Opus and H.264 payload types we offer (Janus keeps them in its answer).
const OPUS_PT: u8 = 111;
const H264_PT: u8 = 102;
/// RTP payload budget: 1200 bytes leaves room for SRTP, TURN and IPv6.
const RTP_PAYLOAD_MTU: usize = 1100;
const SDES_MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
const SDES_RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
/// How long ICE gathering (host + TURN allocation) may take.
const GATHER_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Configuration and TURN credentials.

/// How the agent authenticates to a TURN server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnCredential {
    /// STUN, or a TURN server without authentication.
    None,
    /// A static long-term user.
    Static { username: String, password: String },
    /// coturn's `--use-auth-secret`: the node mints its own time-limited
    /// credentials from the shared secret (see [`mint_turn_credential`]).
    SharedSecret {
        secret: String,
        name: String,
        ttl: Duration,
    },
}

/// One STUN or TURN server, e.g. `turn:10.99.0.1:3478?transport=udp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub credential: TurnCredential,
}

/// Mints TURN REST API credentials (draft-uberti-behave-turn-rest, as
/// coturn implements it): username `EXPIRY:name` with `EXPIRY` in Unix
/// seconds, password base64(HMAC-SHA1(secret, username)).
pub fn mint_turn_credential(secret: &str, name: &str, expiry_unix: u64) -> (String, String) {
    let username = format!("{expiry_unix}:{name}");
    // HMAC accepts keys of any length: new_from_slice cannot fail here.
    let password = match Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(username.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    (username, password)
}

/// What every session of an agent shares.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub ice_servers: Vec<IceServer>,
    pub ice_policy: IcePolicy,
    /// Local address to bind the media socket to (port chosen by the OS).
    pub bind: IpAddr,
}

impl SessionConfig {
    /// ICE servers with credentials resolved; shared-secret ones minted
    /// against the wall-clock time the caller passes in.
    fn rtc_ice_servers(&self, now: SystemTime) -> Vec<RTCIceServer> {
        let unix = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.ice_servers
            .iter()
            .map(|s| {
                let (username, credential) = match &s.credential {
                    TurnCredential::None => (String::new(), String::new()),
                    TurnCredential::Static { username, password } => {
                        (username.clone(), password.clone())
                    }
                    TurnCredential::SharedSecret { secret, name, ttl } => {
                        mint_turn_credential(secret, name, unix + ttl.as_secs())
                    }
                };
                RTCIceServer {
                    urls: s.urls.clone(),
                    username,
                    credential,
                }
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Peer connection plumbing shared by both kinds of session.

/// A state change of a session's peer connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    Connecting,
    Connected,
    Disconnected,
    Failed,
    Closed,
}

/// The webrtc driver calls this; it only forwards into channels, so the
/// driver never waits on us.
struct Handler {
    gathered: watch::Sender<bool>,
    state: watch::Sender<ConnectionState>,
    /// Set for subscribe sessions: where received RTP goes.
    receive: Option<ReceiveRoute>,
}

#[derive(Clone)]
struct ReceiveRoute {
    tx: mpsc::Sender<ReceivedPacket>,
    /// SSRC -> (mid, kind) from the remote offer.
    ssrcs: Arc<HashMap<u32, (String, MediaKind)>>,
    counters: Arc<ReceiveCounters>,
    /// Remote video tracks by SSRC, for keyframe requests.
    video: VideoTracks,
}

type VideoTracks = Arc<std::sync::Mutex<HashMap<u32, Arc<dyn TrackRemote>>>>;

/// Packets dropped because the caller did not keep up (the channel was
/// full): the media path never waits for a slow consumer.
#[derive(Debug, Default)]
pub struct ReceiveCounters {
    pub dropped: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let s = match state {
            RTCPeerConnectionState::Connected => ConnectionState::Connected,
            RTCPeerConnectionState::Disconnected => ConnectionState::Disconnected,
            RTCPeerConnectionState::Failed => ConnectionState::Failed,
            RTCPeerConnectionState::Closed => ConnectionState::Closed,
            _ => ConnectionState::Connecting,
        };
        debug!(?s, "peer connection state");
        let _ = self.state.send(s);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let Some(route) = self.receive.clone() else {
            return;
        };
        tokio::spawn(forward_track(track, route));
    }
}

/// Reads one remote track until it ends and hands its RTP to the caller.
async fn forward_track(track: Arc<dyn TrackRemote>, route: ReceiveRoute) {
    let mut rids: HashMap<u32, Option<String>> = HashMap::new();
    // Looked up once per SSRC, not per packet.
    let mut codecs: HashMap<u32, ReceivedCodec> = HashMap::new();
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnOpen(init) => {
                rids.insert(init.ssrc, init.rid.map(|r| r.to_string()));
            }
            TrackRemoteEvent::OnRtpPacket(p) => {
                let ssrc = p.header.ssrc;
                let (mid, kind) = match route.ssrcs.get(&ssrc) {
                    Some((mid, kind)) => (Some(mid.clone()), *kind),
                    None => (None, MediaKind::Other),
                };
                let codec = match codecs.get(&ssrc) {
                    Some(c) => c.clone(),
                    None => match track.codec(ssrc).await {
                        Some(c) => {
                            let codec = ReceivedCodec::from_mime(&c.mime_type);
                            codecs.insert(ssrc, codec.clone());
                            codec
                        }
                        None => ReceivedCodec::Other(String::new()),
                    },
                };
                if codec == ReceivedCodec::H264
                    && let Ok(mut video) = route.video.lock()
                {
                    video.entry(ssrc).or_insert_with(|| Arc::clone(&track));
                }
                let packet = ReceivedPacket {
                    mid,
                    kind: match (&codec, kind) {
                        (ReceivedCodec::H264, _) => MediaKind::Video,
                        (ReceivedCodec::Opus, _) => MediaKind::Audio,
                        (_, k) => k,
                    },
                    ssrc,
                    rid: rids.get(&ssrc).cloned().flatten(),
                    codec,
                    payload_type: p.header.payload_type,
                    sequence: p.header.sequence_number,
                    timestamp: MediaTime(p.header.timestamp),
                    marker: p.header.marker,
                    payload: p.payload,
                };
                match route.tx.try_send(packet) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        route
                            .counters
                            .dropped
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            TrackRemoteEvent::OnEnded => return,
            _ => {}
        }
    }
}

fn media_engine() -> Result<(MediaEngine, Registry), Error> {
    let mut engine = MediaEngine::default();
    let video_feedback = vec![
        RTCPFeedback {
            typ: "nack".into(),
            parameter: String::new(),
        },
        RTCPFeedback {
            typ: "nack".into(),
            parameter: "pli".into(),
        },
        RTCPFeedback {
            typ: "ccm".into(),
            parameter: "fir".into(),
        },
    ];
    engine.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus_codec(),
            payload_type: OPUS_PT,
        },
        RtpCodecKind::Audio,
    )?;
    engine.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                rtcp_feedback: video_feedback,
                ..h264_codec()
            },
            payload_type: H264_PT,
        },
        RtpCodecKind::Video,
    )?;
    // mid, rid and repaired-rid for video: what simulcast needs.
    let registry = register_default_interceptors(Registry::new(), &mut engine)?;
    engine.register_header_extension(
        rtc::rtp_transceiver::rtp_sender::RTCRtpHeaderExtensionCapability {
            uri: SDES_MID_URI.to_owned(),
        },
        RtpCodecKind::Audio,
        None,
    )?;
    Ok((engine, registry))
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "audio/opus".into(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
        rtcp_feedback: vec![],
    }
}

fn h264_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "video/H264".into(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
            .into(),
        rtcp_feedback: vec![],
    }
}

struct Connection {
    pc: Arc<dyn PeerConnection>,
    gathered: watch::Receiver<bool>,
    state: watch::Receiver<ConnectionState>,
}

async fn connect(
    config: &SessionConfig,
    now: SystemTime,
    receive: Option<ReceiveRoute>,
) -> Result<Connection, Error> {
    let (engine, registry) = media_engine()?;
    let rtc_config = RTCConfigurationBuilder::new()
        .with_ice_servers(config.rtc_ice_servers(now))
        .with_ice_transport_policy(match config.ice_policy {
            IcePolicy::All => RTCIceTransportPolicy::All,
            IcePolicy::Relay => RTCIceTransportPolicy::Relay,
        })
        .with_bundle_policy(RTCBundlePolicy::MaxBundle)
        .with_rtcp_mux_policy(RTCRtcpMuxPolicy::Require)
        .build();
    let (gathered_tx, gathered) = watch::channel(false);
    let (state_tx, state) = watch::channel(ConnectionState::Connecting);
    let handler = Arc::new(Handler {
        gathered: gathered_tx,
        state: state_tx,
        receive,
    });
    let pc = PeerConnectionBuilder::new()
        .with_configuration(rtc_config)
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        // No mDNS: the agent's candidates are real addresses (or relays),
        // and joining the mDNS multicast group fails on hosts without a
        // multicast route.
        .with_setting_engine(
            SettingEngineBuilder::new()
                .with_multicast_dns_mode(MulticastDnsMode::Disabled)
                .build(),
        )
        .with_handler(handler)
        .with_udp_addrs(vec![SocketAddr::new(config.bind, 0)])
        .build()
        .await?;
    Ok(Connection {
        pc: Arc::new(pc),
        gathered,
        state,
    })
}

impl Connection {
    /// Waits for ICE gathering so that the SDP carries every candidate:
    /// Janus' HTTP API makes trickling a round trip per candidate.
    async fn local_description_gathered(&mut self) -> Result<String, Error> {
        tokio::time::timeout(GATHER_TIMEOUT, self.gathered.wait_for(|g| *g))
            .await
            .map_err(|_| Error::Timeout("ICE gathering"))?
            .map_err(|_| Error::WebRtc("peer connection gone".into()))?;
        self.pc
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or(Error::WebRtc("no local description".into()))
    }

    async fn wait_connected(&mut self, timeout: Duration) -> Result<(), Error> {
        let state = tokio::time::timeout(
            timeout,
            self.state.wait_for(|s| {
                matches!(
                    s,
                    ConnectionState::Connected | ConnectionState::Failed | ConnectionState::Closed
                )
            }),
        )
        .await
        .map_err(|_| Error::Timeout("ICE/DTLS connection"))?
        .map_err(|_| Error::WebRtc("peer connection gone".into()))?;
        match *state {
            ConnectionState::Connected => Ok(()),
            s => Err(Error::WebRtc(format!("connection {s:?}"))),
        }
    }

    async fn stats(&self) -> SessionStats {
        let report = self.pc.get_stats(Instant::now(), StatsSelector::None).await;
        let mut stats = SessionStats::default();
        let mut candidate_types: HashMap<String, CandidateKind> = HashMap::new();
        for entry in report.iter() {
            if let RTCStatsReportEntry::LocalCandidate(c)
            | RTCStatsReportEntry::RemoteCandidate(c) = entry
            {
                // Entry ids are "RTCLocalIceCandidate_<id>"; pairs name the bare id.
                let id = c
                    .stats
                    .id
                    .split_once('_')
                    .map_or(c.stats.id.as_str(), |(_, id)| id);
                candidate_types.insert(id.to_owned(), CandidateKind::from(c.candidate_type));
            }
        }
        let selected = report
            .transport()
            .map(|t| t.selected_candidate_pair_id.clone())
            .unwrap_or_default();
        for pair in report.candidate_pairs() {
            let is_selected = if selected.is_empty() {
                pair.nominated
            } else {
                pair.stats.id == selected
            };
            if is_selected {
                stats.selected_pair = Some(CandidatePair {
                    local: candidate_types
                        .get(&pair.local_candidate_id)
                        .copied()
                        .unwrap_or(CandidateKind::Unknown),
                    remote: candidate_types
                        .get(&pair.remote_candidate_id)
                        .copied()
                        .unwrap_or(CandidateKind::Unknown),
                    rtt: (pair.current_round_trip_time > 0.0)
                        .then(|| Duration::from_secs_f64(pair.current_round_trip_time)),
                    bytes_sent: pair.bytes_sent,
                    bytes_received: pair.bytes_received,
                    packets_sent: pair.packets_sent,
                    packets_received: pair.packets_received,
                });
            }
        }
        for o in report.outbound_rtp_streams() {
            stats.outbound.push(StreamStats {
                mid: o.mid.clone(),
                rid: (!o.rid.is_empty()).then(|| o.rid.clone()),
                ssrc: o.sent_rtp_stream_stats.rtp_stream_stats.ssrc,
                packets: o.sent_rtp_stream_stats.packets_sent,
                bytes: o.sent_rtp_stream_stats.bytes_sent,
            });
        }
        for i in report.inbound_rtp_streams() {
            stats.inbound.push(StreamStats {
                mid: i.mid.clone(),
                rid: None,
                ssrc: i.received_rtp_stream_stats.rtp_stream_stats.ssrc,
                packets: i.received_rtp_stream_stats.packets_received,
                bytes: i.bytes_received,
            });
        }
        stats
    }
}

// ---------------------------------------------------------------------------
// Stats.

/// ICE candidate type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateKind {
    Host,
    ServerReflexive,
    PeerReflexive,
    Relay,
    Unknown,
}

impl From<RTCIceCandidateType> for CandidateKind {
    fn from(t: RTCIceCandidateType) -> Self {
        match t {
            RTCIceCandidateType::Host => CandidateKind::Host,
            RTCIceCandidateType::Srflx => CandidateKind::ServerReflexive,
            RTCIceCandidateType::Prflx => CandidateKind::PeerReflexive,
            RTCIceCandidateType::Relay => CandidateKind::Relay,
            _ => CandidateKind::Unknown,
        }
    }
}

/// The ICE candidate pair media flows on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CandidatePair {
    pub local: CandidateKind,
    pub remote: CandidateKind,
    pub rtt: Option<Duration>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
}

/// One RTP stream's counters as the webrtc stack sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStats {
    pub mid: String,
    pub rid: Option<String>,
    pub ssrc: u32,
    pub packets: u64,
    pub bytes: u64,
}

/// A session's stats, for metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionStats {
    pub selected_pair: Option<CandidatePair>,
    pub outbound: Vec<StreamStats>,
    pub inbound: Vec<StreamStats>,
}

/// What we sent on one simulcast layer (counted by us, payload bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerCounters {
    pub frames: u64,
    pub packets: u64,
    pub bytes: u64,
    pub send_errors: u64,
}

// ---------------------------------------------------------------------------
// Publishing.

struct OutStream {
    ssrc: u32,
    sequence: u16,
    counters: LayerCounters,
}

impl OutStream {
    fn new() -> Self {
        OutStream {
            ssrc: rand::random(),
            sequence: rand::random(),
            counters: LayerCounters::default(),
        }
    }
}

/// Negotiated after the answer: what our packets must carry.
#[derive(Debug, Clone, Default)]
struct Negotiated {
    video_pt: u8,
    audio_pt: u8,
    video_mid: Option<String>,
    audio_mid: Option<String>,
    video_mid_ext: Option<u8>,
    video_rid_ext: Option<u8>,
    audio_mid_ext: Option<u8>,
}

/// The agent's publication: one Opus track and one H.264 track sent as
/// three simulcast layers with rids from [`SimulcastLayer::rid`].
pub struct PublishSession {
    conn: Connection,
    audio: Arc<TrackLocalStaticRTP>,
    video: Arc<TrackLocalStaticRTP>,
    audio_out: OutStream,
    layers: HashMap<SimulcastLayer, OutStream>,
    negotiated: Option<Negotiated>,
    packetizer: H264Packetizer,
}

impl PublishSession {
    /// Sets up the peer connection and its tracks; nothing is sent yet.
    /// `now` is used only to mint TURN credentials.
    pub async fn new(config: &SessionConfig, now: SystemTime) -> Result<Self, Error> {
        let conn = connect(config, now, None).await?;
        let audio_out = OutStream::new();
        let audio = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            "tandem".into(),
            "tandem-audio".into(),
            "tandem-audio".into(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(audio_out.ssrc),
                    ..Default::default()
                },
                active: true,
                codec: opus_codec(),
                ..Default::default()
            }],
        )));
        let mut layers = HashMap::new();
        let mut encodings = Vec::new();
        for layer in SimulcastLayer::ALL {
            let out = OutStream::new();
            encodings.push(RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    rid: layer.rid().into(),
                    ssrc: Some(out.ssrc),
                    ..Default::default()
                },
                active: true,
                codec: h264_codec(),
                max_bitrate: layer.default_bitrate_bps(),
                ..Default::default()
            });
            layers.insert(layer, out);
        }
        let video = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            "tandem".into(),
            "tandem-video".into(),
            "tandem-video".into(),
            RtpCodecKind::Video,
            encodings,
        )));
        conn.pc
            .add_track(Arc::clone(&audio) as Arc<dyn TrackLocal>)
            .await?;
        conn.pc
            .add_track(Arc::clone(&video) as Arc<dyn TrackLocal>)
            .await?;
        Ok(PublishSession {
            conn,
            audio,
            video,
            audio_out,
            layers,
            negotiated: None,
            packetizer: H264Packetizer::new(RTP_PAYLOAD_MTU, PacketizationMode::NonInterleaved),
        })
    }

    /// Our offer, with all ICE candidates (relay ones included).
    pub async fn create_offer(&mut self) -> Result<SessionDescription, Error> {
        let offer = self.conn.pc.create_offer(None).await?;
        self.conn.pc.set_local_description(offer).await?;
        Ok(SessionDescription::offer(
            self.conn.local_description_gathered().await?,
        ))
    }

    /// Applies the server's answer and learns what our packets must carry.
    pub async fn handle_answer(&mut self, answer: SessionDescription) -> Result<(), Error> {
        if answer.kind != SdpKind::Answer {
            return Err(Error::Misuse("handle_answer takes an answer"));
        }
        self.conn
            .pc
            .set_remote_description(RTCSessionDescription::answer(answer.sdp)?)
            .await?;
        let mut n = Negotiated {
            video_pt: H264_PT,
            audio_pt: OPUS_PT,
            ..Default::default()
        };
        for t in self.conn.pc.get_transceivers().await {
            let mid = t.mid().await.ok().flatten();
            let Some(sender) = t.sender().await.ok().flatten() else {
                continue;
            };
            let Ok(params) = sender.get_parameters().await else {
                continue;
            };
            let kind = sender.track().kind().await;
            let ext = |uri: &str| {
                params
                    .rtp_parameters
                    .header_extensions
                    .iter()
                    .find(|e| e.uri == uri)
                    .and_then(|e| u8::try_from(e.id).ok())
            };
            let pt = params.rtp_parameters.codecs.first().map(|c| c.payload_type);
            match kind {
                RtpCodecKind::Video => {
                    n.video_pt = pt.unwrap_or(H264_PT);
                    n.video_mid = mid;
                    n.video_mid_ext = ext(SDES_MID_URI);
                    n.video_rid_ext = ext(SDES_RID_URI);
                }
                RtpCodecKind::Audio => {
                    n.audio_pt = pt.unwrap_or(OPUS_PT);
                    n.audio_mid = mid;
                    n.audio_mid_ext = ext(SDES_MID_URI);
                }
                _ => {}
            }
        }
        debug!(?n, "publish negotiated");
        self.negotiated = Some(n);
        Ok(())
    }

    /// Waits until ICE and DTLS are up.
    pub async fn wait_connected(&mut self, timeout: Duration) -> Result<(), Error> {
        self.conn.wait_connected(timeout).await
    }

    pub fn connection_state(&self) -> ConnectionState {
        *self.conn.state.borrow()
    }

    /// Sends one H.264 access unit (Annex B) of one layer. `timestamp` is
    /// the 90 kHz media time of the picture, shared by all layers.
    pub async fn send_video(
        &mut self,
        layer: SimulcastLayer,
        timestamp: MediaTime,
        access_unit: &[u8],
    ) -> Result<(), Error> {
        let n = self
            .negotiated
            .as_ref()
            .ok_or(Error::Misuse("send before answer"))?;
        let payloads = self
            .packetizer
            .packetize(access_unit)
            .map_err(|e| Error::Media(e.to_string()))?;
        let Some(out) = self.layers.get_mut(&layer) else {
            return Err(Error::Misuse("unknown layer"));
        };
        let count = payloads.len();
        out.counters.frames += 1;
        for (i, payload) in payloads.into_iter().enumerate() {
            let mut header = rtp::header::Header {
                version: 2,
                marker: i + 1 == count,
                payload_type: n.video_pt,
                sequence_number: out.sequence,
                timestamp: timestamp.0,
                ssrc: out.ssrc,
                ..Default::default()
            };
            out.sequence = out.sequence.wrapping_add(1);
            set_sdes(&mut header, n.video_mid_ext, n.video_mid.as_deref());
            set_sdes(&mut header, n.video_rid_ext, Some(layer.rid()));
            let len = payload.len() as u64;
            let packet = rtp::Packet {
                header,
                payload: Bytes::from(payload),
            };
            match self.video.write_rtp(packet).await {
                Ok(()) => {
                    out.counters.packets += 1;
                    out.counters.bytes += len;
                }
                Err(e) => {
                    out.counters.send_errors += 1;
                    warn!(error = %e, rid = layer.rid(), "video RTP not sent");
                }
            }
        }
        Ok(())
    }

    /// Sends one Opus packet; `timestamp` is 48 kHz media time.
    pub async fn send_audio(&mut self, timestamp: MediaTime, opus: &[u8]) -> Result<(), Error> {
        let n = self
            .negotiated
            .as_ref()
            .ok_or(Error::Misuse("send before answer"))?;
        let mut header = rtp::header::Header {
            version: 2,
            payload_type: n.audio_pt,
            sequence_number: self.audio_out.sequence,
            timestamp: timestamp.0,
            ssrc: self.audio_out.ssrc,
            ..Default::default()
        };
        self.audio_out.sequence = self.audio_out.sequence.wrapping_add(1);
        set_sdes(&mut header, n.audio_mid_ext, n.audio_mid.as_deref());
        let packet = rtp::Packet {
            header,
            payload: Bytes::copy_from_slice(opus),
        };
        match self.audio.write_rtp(packet).await {
            Ok(()) => {
                self.audio_out.counters.frames += 1;
                self.audio_out.counters.packets += 1;
                self.audio_out.counters.bytes += opus.len() as u64;
            }
            Err(e) => {
                self.audio_out.counters.send_errors += 1;
                warn!(error = %e, "audio RTP not sent");
            }
        }
        Ok(())
    }

    /// What we handed to the stack per layer.
    pub fn layer_counters(&self, layer: SimulcastLayer) -> LayerCounters {
        self.layers
            .get(&layer)
            .map(|o| o.counters)
            .unwrap_or_default()
    }

    pub fn audio_counters(&self) -> LayerCounters {
        self.audio_out.counters
    }

    /// The SSRC each layer is sent with (to match server-side stats).
    pub fn layer_ssrc(&self, layer: SimulcastLayer) -> Option<u32> {
        self.layers.get(&layer).map(|o| o.ssrc)
    }

    pub async fn stats(&self) -> SessionStats {
        self.conn.stats().await
    }

    pub async fn close(self) -> Result<(), Error> {
        self.conn.pc.close().await?;
        Ok(())
    }
}

/// Adds an RFC 8852 SDES item (mid or rid) as a one-byte header extension.
fn set_sdes(header: &mut rtp::header::Header, id: Option<u8>, value: Option<&str>) {
    let (Some(id), Some(value)) = (id, value) else {
        return;
    };
    if !header.extension {
        header.extension = true;
        header.extension_profile = 0xBEDE;
    }
    if let Err(e) = header.set_extension(id, Bytes::copy_from_slice(value.as_bytes())) {
        warn!(error = %e, id, "header extension not set");
    }
}

// ---------------------------------------------------------------------------
// Subscribing.

/// Codec of a received packet, from the negotiated payload type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceivedCodec {
    H264,
    Opus,
    Other(String),
}

impl ReceivedCodec {
    fn from_mime(mime: &str) -> Self {
        if mime.eq_ignore_ascii_case("video/h264") {
            ReceivedCodec::H264
        } else if mime.eq_ignore_ascii_case("audio/opus") {
            ReceivedCodec::Opus
        } else {
            ReceivedCodec::Other(mime.to_owned())
        }
    }
}

/// One RTP packet received on a subscription, decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedPacket {
    /// The subscription's mid it arrived on (see
    /// [`crate::connector::SubscriptionOffer::streams`] for the publisher).
    pub mid: Option<String>,
    pub kind: MediaKind,
    pub ssrc: u32,
    pub rid: Option<String>,
    pub codec: ReceivedCodec,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: MediaTime,
    pub marker: bool,
    pub payload: Bytes,
}

/// Reads `a=mid` and `a=ssrc` of each m-section: which SSRC a mid carries.
pub fn ssrcs_by_mid(sdp: &str) -> HashMap<u32, (String, MediaKind)> {
    let mut out = HashMap::new();
    let mut kind = MediaKind::Other;
    let mut mid: Option<String> = None;
    let mut pending: Vec<u32> = Vec::new();
    let mut flush = |mid: &Option<String>, kind, pending: &mut Vec<u32>| {
        if let Some(m) = mid {
            for s in pending.drain(..) {
                out.insert(s, (m.clone(), kind));
            }
        }
        pending.clear();
    };
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("m=") {
            flush(&mid, kind, &mut pending);
            mid = None;
            kind = match rest.split(' ').next() {
                Some("audio") => MediaKind::Audio,
                Some("video") => MediaKind::Video,
                _ => MediaKind::Other,
            };
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            mid = Some(m.to_owned());
        } else if let Some(rest) = line.strip_prefix("a=ssrc:")
            && let Some(Ok(ssrc)) = rest.split(' ').next().map(str::parse::<u32>)
            && !pending.contains(&ssrc)
        {
            pending.push(ssrc);
        }
    }
    flush(&mid, kind, &mut pending);
    out
}

/// One subscription's peer connection: answers the server's offer and
/// delivers received RTP.
pub struct SubscribeSession {
    conn: Connection,
    packets: Option<mpsc::Receiver<ReceivedPacket>>,
    counters: Arc<ReceiveCounters>,
    video: VideoTracks,
}

impl SubscribeSession {
    /// Answers `offer`; returns the session and our answer (with all
    /// candidates) for [`crate::MeetingConnector::start`]. Received packets
    /// queue up to `queue` deep, then newer ones are dropped and counted.
    pub async fn answer(
        config: &SessionConfig,
        now: SystemTime,
        offer: &SessionDescription,
        queue: usize,
    ) -> Result<(Self, SessionDescription), Error> {
        if offer.kind != SdpKind::Offer {
            return Err(Error::Misuse("answer takes an offer"));
        }
        let (tx, rx) = mpsc::channel(queue.max(1));
        let counters = Arc::new(ReceiveCounters::default());
        let video: VideoTracks = Arc::default();
        let route = ReceiveRoute {
            tx,
            ssrcs: Arc::new(ssrcs_by_mid(&offer.sdp)),
            counters: Arc::clone(&counters),
            video: Arc::clone(&video),
        };
        let mut conn = connect(config, now, Some(route)).await?;
        conn.pc
            .set_remote_description(RTCSessionDescription::offer(offer.sdp.clone())?)
            .await?;
        let answer = conn.pc.create_answer(None).await?;
        conn.pc.set_local_description(answer).await?;
        let sdp = conn.local_description_gathered().await?;
        Ok((
            SubscribeSession {
                conn,
                packets: Some(rx),
                counters,
                video,
            },
            SessionDescription::answer(sdp),
        ))
    }

    /// Asks every remote video sender for a keyframe (RTCP PLI, RFC 4585),
    /// as a receiver that lost its pictures does. Returns how many were
    /// asked: none before the first video packet arrived.
    pub async fn request_keyframe(&self) -> usize {
        let tracks: Vec<(u32, Arc<dyn TrackRemote>)> = match self.video.lock() {
            Ok(v) => v.iter().map(|(s, t)| (*s, Arc::clone(t))).collect(),
            Err(_) => Vec::new(),
        };
        let mut asked = 0;
        for (ssrc, track) in tracks {
            let pli =
                rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc: ssrc,
                };
            if track.write_rtcp(vec![Box::new(pli)]).await.is_ok() {
                asked += 1;
            }
        }
        asked
    }

    /// The received packets; can be taken once.
    pub fn take_packets(&mut self) -> Option<mpsc::Receiver<ReceivedPacket>> {
        self.packets.take()
    }

    /// Packets dropped because the receiver did not keep up.
    pub fn dropped(&self) -> u64 {
        self.counters
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn wait_connected(&mut self, timeout: Duration) -> Result<(), Error> {
        self.conn.wait_connected(timeout).await
    }

    pub fn connection_state(&self) -> ConnectionState {
        *self.conn.state.borrow()
    }

    pub async fn stats(&self) -> SessionStats {
        self.conn.stats().await
    }

    pub async fn close(self) -> Result<(), Error> {
        self.conn.pc.close().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mints_turn_rest_credentials() {
        // Known vector, computed independently:
        //   printf '%s' '1700000000:tandem' | openssl dgst -sha1 -hmac 'north' -binary | base64
        let (user, pass) = mint_turn_credential("north", "tandem", 1_700_000_000);
        assert_eq!(user, "1700000000:tandem");
        assert_eq!(pass, "DzWKleh+gcqNrYzt1myBNEDvooM=");
    }

    #[test]
    fn shared_secret_servers_get_expiring_usernames() {
        let config = SessionConfig {
            ice_servers: vec![IceServer {
                urls: vec!["turn:10.99.0.1:3478".into()],
                credential: TurnCredential::SharedSecret {
                    secret: "north".into(),
                    name: "tandem".into(),
                    ttl: Duration::from_secs(3600),
                },
            }],
            ice_policy: IcePolicy::Relay,
            bind: IpAddr::from([127, 0, 0, 1]),
        };
        let servers = config.rtc_ice_servers(UNIX_EPOCH + Duration::from_secs(1_699_996_400));
        assert_eq!(servers[0].username, "1700000000:tandem");
        assert_eq!(servers[0].credential, "DzWKleh+gcqNrYzt1myBNEDvooM=");
    }

    #[test]
    fn maps_ssrcs_to_mids() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ssrc:11 cname:x\r\na=ssrc:11 msid:a b\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:1\r\na=ssrc-group:FID 22 23\r\na=ssrc:22 cname:x\r\na=ssrc:23 cname:x\r\n\
                   m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\na=ssrc:bogus\r\n";
        let m = ssrcs_by_mid(sdp);
        assert_eq!(m.get(&11), Some(&("0".to_owned(), MediaKind::Audio)));
        assert_eq!(m.get(&22), Some(&("1".to_owned(), MediaKind::Video)));
        assert_eq!(m.get(&23), Some(&("1".to_owned(), MediaKind::Video)));
        assert_eq!(m.len(), 3);
    }
}
