//! Conferences that span nodes: QUIC links between MCU nodes.
//!
//! A spanned conference has one **home** node and any number of
//! **satellites**, linked in a star around the home (a tree: audio never
//! loops and nobody hears themselves). The control plane decides who is
//! home; a satellite is told with [`Spans::span`] (or `PUT
//! /api/conferences/{id}/span {"home":"host:port"}`) and links to it while
//! its conference has calls; the home accepts links for any conference it
//! hosts (or may create).
//!
//! Each link is a QUIC connection (quinn): one bidirectional control
//! stream ([`tandem_proto::span::ControlFrame`]: hello, roster, keyframe
//! requests) and datagrams for media ([`MediaDatagram`]: one RTP packet per
//! datagram, a flow ID each). Nodes present self-signed certificates; what
//! authenticates a link is the cluster secret's HMAC over the TLS session's
//! exported keying material, in the hello and in the answer.
//!
//! On each node a link is a set of internal legs of the conference, RTP
//! over loopback as the cascade's (see [`crate::cascade`]), so that jitter
//! buffers, mix-minus, speaker detection, layouts and keyframes work
//! unchanged:
//! - K **out legs** ([`LegSide::Link`], rank k, 1x1 view): leg 0's audio is
//!   the mix of this node's own people (never what came over a link: the
//!   mixer's link mix-minus), and leg k's video the k-th local speaker,
//!   each encoded once for the link. They go out as flow 0 and flows 1..=K.
//! - one **audio in leg** ([`LegSide::Remote`], not shown): the far node's
//!   mix, heard as one participant;
//! - K **video in legs** ([`LegSide::Remote`]): the far node's top
//!   speakers, shown in the layouts under the names its roster gives.
//!
//! The active speaker is decided once, by the home: its mixer hears each
//! satellite's mix as one participant, and when that wins, the speaker is
//! the satellite's own top speaker (the leg showing it stands in, see
//! [`SpeakerRule`]). The home's rosters carry the decision; satellites
//! follow it. If a link drops, its legs leave and the calls on each side go
//! on as a local conference; a satellite reconnects (1 s, doubling to 4 s).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry as Prom,
};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, RecvStream, SendStream, TransportConfig};
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use tandem_mixer::ParticipantId;
use tandem_mixer::video::{Layout, LayoutChoice};
use tandem_proto::rtp::h264::{H264Depacketizer, H264Packetizer, PacketizationMode};
use tandem_proto::rtp::{MediaTime, RtpHeader, RtpPacket, Ssrc, is_rtcp, rtcp};
use tandem_proto::sdp::{AudioCodec, LocalMedia, SdpSession, SessionDescription};
use tandem_proto::span::{
    self as wire, ActiveSpeaker, ControlFrame, FlowId, FrameDecoder, Hello, MAC_LEN, MediaDatagram,
    Roster, RosterEntry, Welcome,
};

use crate::conference::{
    ConferenceCommand, ConferenceEvent, ConferenceSnapshot, LegSetup, LegSide, ParticipantSnapshot,
    SpeakerRule,
};
use crate::config::Config;
use crate::driver::net::PortAllocator;
use crate::metrics::Metrics;
use crate::registry::{ConferenceHandle, Registry};

/// The `signalling` of a span link's internal legs (hidden in the API).
pub const SIGNALLING: &str = "span";
const OPUS_PT: u8 = 111;
const H264_PT: u8 = 96;
/// Span legs' participant IDs (far above SIP calls' and the cascade's).
const SPAN_IDS: u64 = 1 << 44;
/// RTP payload size of video on a link: a datagram must fit QUIC's
/// smallest path MTU (1200 bytes of UDP payload, less QUIC's overhead).
const SPAN_MTU: usize = 1000;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const ROSTER_EVERY: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(4);
/// A flow's keyframe requests over the link, at most this often.
const KEYFRAME_GAP: Duration = Duration::from_millis(300);
/// Close codes.
const CLOSE_BYE: u32 = 0;
const CLOSE_REFUSED: u32 = 1;

static NEXT_ID: AtomicU64 = AtomicU64::new(SPAN_IDS);

// ---------------------------------------------------------------- API shapes

/// One link as the conference snapshot shows it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct LinkSnapshot {
    /// This node's role on the link: home or satellite.
    pub role: &'static str,
    /// The far node's name (from its hello), once known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub addr: String,
    /// connecting, connected, retrying.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    pub reconnects: u64,
    /// The far node's people, as its roster lists them.
    pub remote_participants: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// This node's name.
    #[serde(skip)]
    pub local_node: String,
    /// The far node's people, for the conference's participant list.
    #[serde(skip)]
    pub remote: Vec<ParticipantSnapshot>,
    /// Legs of this link that stand for a far participant when they are
    /// the active speaker (leg ID, that person).
    #[serde(skip)]
    pub stands_for: Vec<(u64, SpeakerSnapshot)>,
    /// A satellite's link: the home's decision.
    #[serde(skip)]
    pub followed: Option<SpeakerSnapshot>,
}

/// The conference-wide active speaker.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SpeakerSnapshot {
    pub node: String,
    pub participant: String,
    pub name: String,
    /// As `active_speaker` says it on this node: the participant ID if
    /// here, `node/ID` if on another node.
    #[serde(skip)]
    pub api_id: String,
}

/// `span` in the conference snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct SpanSnapshot {
    /// home (links from satellites) or satellite (a link to its home).
    pub role: &'static str,
    /// connected when any link is.
    pub state: &'static str,
    pub node: String,
    pub peers: Vec<LinkSnapshot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_speaker: Option<SpeakerSnapshot>,
}

fn api_id(local: &str, node: &str, participant: &str) -> String {
    if node == local {
        participant.to_owned()
    } else {
        format!("{node}/{participant}")
    }
}

/// The conference's `span` object from its links, and the conference-wide
/// active speaker (`speaker`: the conference's own, after span rules).
pub fn summary(
    links: &BTreeMap<u64, LinkSnapshot>,
    speaker: Option<u64>,
    name_of: impl Fn(u64) -> Option<String>,
) -> Option<SpanSnapshot> {
    let first = links.values().next()?;
    let node = first.local_node.clone();
    let role = if links.values().any(|l| l.role == "satellite") {
        "satellite"
    } else {
        "home"
    };
    let state = if links.values().any(|l| l.state == "connected") {
        "connected"
    } else {
        first.state
    };
    let active = match links.values().find_map(|l| l.followed.clone()) {
        Some(f) => Some(f),
        None => speaker.map(|pid| {
            links
                .values()
                .flat_map(|l| l.stands_for.iter())
                .find(|(leg, _)| *leg == pid)
                .map(|(_, s)| s.clone())
                .unwrap_or_else(|| SpeakerSnapshot {
                    node: node.clone(),
                    participant: pid.to_string(),
                    name: name_of(pid).unwrap_or_default(),
                    api_id: String::new(),
                })
        }),
    }
    .map(|mut s| {
        s.api_id = api_id(&node, &s.node, &s.participant);
        s
    });
    Some(SpanSnapshot {
        role,
        state,
        node,
        peers: links.values().cloned().collect(),
        active_speaker: active,
    })
}

// ---------------------------------------------------------------- metrics

/// The span links' figures.
pub struct SpanMetrics {
    /// Links up, by this node's role (home, satellite).
    pub links: IntGaugeVec,
    /// QUIC's round-trip estimate of each link, sampled every 200 ms.
    pub rtt: Histogram,
    /// Packets lost: out (QUIC packets of ours the far node never
    /// acknowledged), in (gaps in the media flows we received).
    pub lost: IntCounterVec,
    /// Bytes across links by direction and kind (audio, video: RTP
    /// packets; control: stream bytes). rate() is the bitrate.
    pub bytes: IntCounterVec,
    pub packets: IntCounterVec,
    /// Links refused: bad secret (either side), unknown conference.
    pub auth_failures: IntCounter,
    pub refused: IntCounterVec,
    /// Satellites' reconnections after a lost link.
    pub reconnects: IntCounter,
    /// Keyframe requests across links, by direction.
    pub keyframe_requests: IntCounterVec,
    /// Media not sent or not used, by reason.
    pub dropped: IntCounterVec,
}

impl SpanMetrics {
    pub fn new(r: &Prom) -> Self {
        let links = IntGaugeVec::new(
            Opts::new("tandem_span_links", "Span links up, by this node's role"),
            &["role"],
        )
        .expect("static metric definition");
        r.register(Box::new(links.clone()))
            .expect("unique metric name");
        for role in ["home", "satellite"] {
            links.with_label_values(&[role]);
        }
        let rtt = Histogram::with_opts(
            HistogramOpts::new(
                "tandem_span_rtt_seconds",
                "Round-trip time of span links (QUIC's estimate), sampled every 200 ms",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 1.0,
            ]),
        )
        .expect("static metric definition");
        r.register(Box::new(rtt.clone()))
            .expect("unique metric name");
        let m = SpanMetrics {
            links,
            rtt,
            lost: counter_vec(
                r,
                "tandem_span_lost_packets_total",
                "Packets lost on span links: out (QUIC packets never acknowledged), \
                 in (sequence gaps in received media flows)",
                &["direction"],
            ),
            bytes: counter_vec(
                r,
                "tandem_span_bytes_total",
                "Bytes across span links by direction (in, out) and kind (audio, video, control)",
                &["direction", "kind"],
            ),
            packets: counter_vec(
                r,
                "tandem_span_packets_total",
                "Media datagrams across span links by direction and kind",
                &["direction", "kind"],
            ),
            auth_failures: {
                let c = IntCounter::new(
                    "tandem_span_auth_failures_total",
                    "Span links refused because a side did not prove the cluster secret",
                )
                .expect("static metric definition");
                r.register(Box::new(c.clone())).expect("unique metric name");
                c
            },
            refused: counter_vec(
                r,
                "tandem_span_refused_total",
                "Span links refused by this node, by reason (auth, conference, protocol)",
                &["reason"],
            ),
            reconnects: {
                let c = IntCounter::new(
                    "tandem_span_reconnects_total",
                    "Satellites' reconnections to their home after a lost link",
                )
                .expect("static metric definition");
                r.register(Box::new(c.clone())).expect("unique metric name");
                c
            },
            keyframe_requests: counter_vec(
                r,
                "tandem_span_keyframe_requests_total",
                "Keyframe requests across span links, by direction",
                &["direction"],
            ),
            dropped: counter_vec(
                r,
                "tandem_span_dropped_total",
                "Span media not sent or not used, by reason",
                &["reason"],
            ),
        };
        for d in ["in", "out"] {
            m.lost.with_label_values(&[d]);
            for k in ["audio", "video", "control"] {
                m.bytes.with_label_values(&[d, k]);
            }
        }
        for reason in ["auth", "conference", "protocol"] {
            m.refused.with_label_values(&[reason]);
        }
        m
    }
}

fn counter_vec(r: &Prom, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    r.register(Box::new(c.clone())).expect("unique metric name");
    c
}

// ---------------------------------------------------------------- settings

/// What every link of the node shares.
pub struct SpanSettings {
    pub name: String,
    secret: ring::hmac::Key,
    pub video_flows: usize,
    pub video_kbps: u32,
    pub audio_dscp: u8,
    pub video_dscp: u8,
}

impl SpanSettings {
    fn mac(&self, exporter: &[u8], role: &str, conference: &str, node: &str) -> [u8; MAC_LEN] {
        let mut ctx = ring::hmac::Context::with_key(&self.secret);
        ctx.update(exporter);
        ctx.update(&wire::mac_input(role, conference, node));
        let tag = ctx.sign();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    fn verify(
        &self,
        exporter: &[u8],
        role: &str,
        conference: &str,
        node: &str,
        mac: &[u8; MAC_LEN],
    ) -> bool {
        let mut input = exporter.to_vec();
        input.extend_from_slice(&wire::mac_input(role, conference, node));
        ring::hmac::verify(&self.secret, &input, mac).is_ok()
    }
}

/// Keying material of the link's TLS session: both MACs cover it, so a
/// hello recorded on one connection is worthless on another.
fn exporter(conn: &Connection) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    conn.export_keying_material(&mut out, b"EXPORTER-tandem-span", b"")
        .map_err(|_| "no keying material".to_string())?;
    Ok(out)
}

// ---------------------------------------------------------------- the node's links

/// The node's span links: its QUIC endpoint, which conferences are
/// satellites of which home, and the links running.
pub struct Spans {
    settings: Arc<SpanSettings>,
    endpoint: Endpoint,
    listening: bool,
    bindings: Mutex<HashMap<String, SocketAddr>>,
    satellites: Mutex<HashMap<String, Satellite>>,
    registry: Arc<Registry>,
    ports: Arc<PortAllocator>,
    video_ports: Arc<PortAllocator>,
    metrics: Arc<Metrics>,
    /// Asks signalling to hold a conference open for a home link.
    holds: mpsc::Sender<ConferenceEvent>,
}

struct Satellite {
    home: SocketAddr,
    stop: watch::Sender<bool>,
}

impl Spans {
    /// Binds the QUIC endpoint (`[span] listen`; a client-only one on an
    /// ephemeral port when `enabled = false`).
    pub fn new(
        config: &Config,
        ports: Arc<PortAllocator>,
        video_ports: Arc<PortAllocator>,
        metrics: Arc<Metrics>,
        registry: Arc<Registry>,
        holds: mpsc::Sender<ConferenceEvent>,
    ) -> anyhow::Result<Spans> {
        let c = &config.span;
        let secret = match &c.secret {
            Some(s) => s.as_bytes().to_vec(),
            None => rand::random::<[u8; 32]>().to_vec(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let transport = Arc::new(transport_config());
        let mut client_tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SecretVerifies(provider.clone())))
            .with_no_client_auth();
        client_tls.alpn_protocols = vec![wire::ALPN.to_vec()];
        let mut client =
            quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(client_tls)?));
        client.transport_config(transport.clone());
        let mut endpoint = if c.enabled {
            let cert = rcgen::generate_simple_self_signed(vec!["tandem-span".to_string()])?;
            let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der());
            let mut tls = rustls::ServerConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])?
                .with_no_client_auth()
                .with_single_cert(vec![cert.cert.der().clone()], key.into())?;
            tls.alpn_protocols = vec![wire::ALPN.to_vec()];
            let mut server =
                quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
            server.transport_config(transport);
            Endpoint::server(server, c.listen)
                .with_context(|| format!("binding span QUIC {} (span.listen)", c.listen))?
        } else {
            Endpoint::client(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))
                .context("binding span QUIC client socket")?
        };
        endpoint.set_default_client_config(client);
        let local = endpoint.local_addr()?;
        let name = c.name.clone().unwrap_or_else(|| local.to_string());
        Ok(Spans {
            settings: Arc::new(SpanSettings {
                name,
                secret: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret),
                video_flows: c.video_flows,
                video_kbps: c.video_kbps,
                audio_dscp: config.qos.audio,
                video_dscp: config.qos.video,
            }),
            endpoint,
            listening: c.enabled,
            bindings: Mutex::new(HashMap::new()),
            satellites: Mutex::new(HashMap::new()),
            registry,
            ports,
            video_ports,
            metrics,
            holds,
        })
    }

    /// Where links reach this node (`None`: not listening).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listening
            .then(|| self.endpoint.local_addr().ok())
            .flatten()
    }

    pub fn node_name(&self) -> &str {
        &self.settings.name
    }

    /// Accepts links from satellites until the endpoint closes.
    pub fn spawn_listener(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        if !self.listening {
            return None;
        }
        let spans = self.clone();
        Some(tokio::spawn(async move {
            while let Some(incoming) = spans.endpoint.accept().await {
                let spans = spans.clone();
                tokio::spawn(async move {
                    let remote = incoming.remote_address();
                    match incoming.accept() {
                        Ok(connecting) => match connecting.await {
                            Ok(conn) => spans.serve_home(conn).await,
                            Err(e) => warn!(%remote, error = %e, "span link handshake failed"),
                        },
                        Err(e) => warn!(%remote, error = %e, "span link not accepted"),
                    }
                });
            }
        }))
    }

    /// Makes `conference` a satellite of `home` (`None`: no longer). A
    /// running conference links (or unlinks) at once; otherwise it links
    /// when its first call arrives.
    pub fn span(&self, conference: &str, home: Option<SocketAddr>) {
        if let Ok(mut b) = self.bindings.lock() {
            match home {
                Some(h) => b.insert(conference.to_owned(), h),
                None => b.remove(conference),
            };
        }
        info!(conference, ?home, "span binding");
        self.stop_satellite(conference);
        if let Some(handle) = self.registry.handle(conference) {
            self.conference_started(&handle);
        }
    }

    /// The home `conference` links to, if it is a satellite.
    pub fn home_of(&self, conference: &str) -> Option<SocketAddr> {
        self.bindings.lock().ok()?.get(conference).copied()
    }

    /// Every satellite binding: (conference, home).
    pub fn bindings(&self) -> Vec<(String, SocketAddr)> {
        let mut v: Vec<(String, SocketAddr)> = self
            .bindings
            .lock()
            .map(|b| b.iter().map(|(c, h)| (c.clone(), *h)).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// A conference got its first call: a satellite links to its home.
    pub fn conference_started(&self, handle: &ConferenceHandle) {
        let Some(home) = self.home_of(&handle.id) else {
            return;
        };
        let (stop, stopped) = watch::channel(false);
        let ctx = self.link_context(handle.clone(), "satellite", home.to_string());
        tokio::spawn(run_satellite(ctx, self.endpoint.clone(), home, stopped));
        if let Ok(mut s) = self.satellites.lock()
            && let Some(old) = s.insert(handle.id.clone(), Satellite { home, stop })
        {
            let _ = old.stop.send(true);
        }
    }

    /// A conference's last call left: its link to the home ends.
    pub fn conference_ended(&self, conference: &str) {
        self.stop_satellite(conference);
    }

    fn stop_satellite(&self, conference: &str) {
        let old = self
            .satellites
            .lock()
            .ok()
            .and_then(|mut s| s.remove(conference));
        if let Some(old) = old {
            info!(conference, home = %old.home, "span link to home stopping");
            let _ = old.stop.send(true);
        }
    }

    fn link_context(
        &self,
        handle: ConferenceHandle,
        role: &'static str,
        addr: String,
    ) -> LinkContext {
        LinkContext {
            link: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            role,
            addr,
            handle,
            settings: self.settings.clone(),
            metrics: self.metrics.clone(),
            ports: self.ports.clone(),
            video_ports: self.video_ports.clone(),
        }
    }

    /// A satellite's link: hello, the conference held open, the link run.
    async fn serve_home(&self, conn: Connection) {
        let remote = conn.remote_address();
        let m = &self.metrics.span;
        let hello = match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept_hello(&conn)).await {
            Ok(Ok(h)) => h,
            Ok(Err(why)) => {
                m.refused.with_label_values(&["protocol"]).inc();
                warn!(%remote, %why, "span link refused");
                conn.close(CLOSE_REFUSED.into(), why.as_bytes());
                return;
            }
            Err(_) => {
                m.refused.with_label_values(&["protocol"]).inc();
                conn.close(CLOSE_REFUSED.into(), b"no hello");
                return;
            }
        };
        let (hello, mut send, recv, mut decoder) = hello;
        let Ok(keys) = exporter(&conn) else {
            conn.close(CLOSE_REFUSED.into(), b"tls");
            return;
        };
        if !self.settings.verify(
            &keys,
            "satellite",
            &hello.conference,
            &hello.node,
            &hello.mac,
        ) {
            m.auth_failures.inc();
            m.refused.with_label_values(&["auth"]).inc();
            warn!(%remote, node = %hello.node, conference = %hello.conference,
                  "span link refused: it does not hold the cluster secret");
            refuse(&mut send, "authentication failed").await;
            // The satellite closes once it has read why.
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.closed()).await;
            conn.close(CLOSE_REFUSED.into(), b"authentication failed");
            return;
        }
        let (tx, rx) = oneshot::channel();
        let held = self
            .holds
            .send(ConferenceEvent::SpanHold {
                conference: hello.conference.clone(),
                reply: tx,
            })
            .await
            .is_ok();
        let handle = match rx.await {
            Ok(Some(h)) if held => h,
            _ => {
                m.refused.with_label_values(&["conference"]).inc();
                warn!(%remote, conference = %hello.conference, "span link refused: no such conference");
                refuse(&mut send, "no such conference").await;
                // The satellite closes once it has read why.
                let _ = tokio::time::timeout(Duration::from_secs(1), conn.closed()).await;
                conn.close(CLOSE_REFUSED.into(), b"no such conference");
                return;
            }
        };
        let welcome = ControlFrame::Welcome(Welcome {
            node: self.settings.name.clone(),
            video_flows: self.settings.video_flows as u8,
            mac: self
                .settings
                .mac(&keys, "home", &hello.conference, &self.settings.name),
        });
        if send.write_all(&welcome.to_bytes()).await.is_err() {
            let _ = self
                .holds
                .send(ConferenceEvent::SpanRelease {
                    conference: hello.conference.clone(),
                })
                .await;
            return;
        }
        info!(conference = %hello.conference, node = %hello.node, %remote, "span link from a satellite");
        let ctx = self.link_context(handle, "home", remote.to_string());
        let (_never, mut stopped) = watch::channel(false);
        let mut state = LinkSnapshot {
            role: "home",
            addr: remote.to_string(),
            state: "connected",
            local_node: self.settings.name.clone(),
            ..Default::default()
        };
        let control = Control {
            send,
            recv,
            decoder: std::mem::take(&mut decoder),
        };
        let result = run_link(
            &ctx,
            conn.clone(),
            control,
            hello.node,
            &mut stopped,
            &mut state,
        )
        .await;
        if let Err(e) = &result {
            info!(conference = %hello.conference, error = %e, "span link from a satellite ended");
        }
        conn.close(CLOSE_BYE.into(), b"bye");
        let _ = ctx
            .handle
            .commands
            .send(ConferenceCommand::SpanLink {
                link: ctx.link,
                state: None,
            })
            .await;
        let _ = self
            .holds
            .send(ConferenceEvent::SpanRelease {
                conference: hello.conference,
            })
            .await;
    }

    /// Closes every link (shutdown).
    pub fn close(&self) {
        if let Ok(mut s) = self.satellites.lock() {
            for (_, sat) in s.drain() {
                let _ = sat.stop.send(true);
            }
        }
        self.endpoint.close(CLOSE_BYE.into(), b"shutdown");
    }
}

/// Tells a satellite why its link is refused (it reads this before the
/// connection closes).
async fn refuse(send: &mut SendStream, reason: &str) {
    let frame = ControlFrame::Refuse {
        reason: reason.to_owned(),
    };
    let _ = send.write_all(&frame.to_bytes()).await;
    let _ = send.finish();
}

/// The control stream, with what was read of it past the hello.
struct Control {
    send: SendStream,
    recv: RecvStream,
    decoder: FrameDecoder,
}

type HelloParts = (Hello, SendStream, RecvStream, FrameDecoder);

async fn accept_hello(conn: &Connection) -> Result<HelloParts, String> {
    let (send, mut recv) = conn
        .accept_bi()
        .await
        .map_err(|e| format!("no control stream: {e}"))?;
    let mut decoder = FrameDecoder::new();
    loop {
        match decoder.poll_frame() {
            Some(Ok(ControlFrame::Hello(h))) => return Ok((h, send, recv, decoder)),
            Some(Ok(_)) => return Err("first frame is not a hello".into()),
            Some(Err(e)) => return Err(format!("malformed hello: {e}")),
            None => {}
        }
        match recv.read_chunk(4096, true).await {
            Ok(Some(chunk)) => decoder.push(&chunk.bytes),
            _ => return Err("control stream ended before the hello".into()),
        }
    }
}

fn transport_config() -> TransportConfig {
    let mut t = TransportConfig::default();
    t.keep_alive_interval(Some(Duration::from_millis(500)));
    if let Ok(idle) = Duration::from_secs(3).try_into() {
        t.max_idle_timeout(Some(idle));
    }
    t.datagram_receive_buffer_size(Some(4 << 20));
    t.datagram_send_buffer_size(4 << 20);
    t
}

/// Nodes present self-signed certificates: the TLS layer gives the link
/// its encryption and keying material, and the cluster secret's HMAC over
/// that material (checked right after, both ways) is what authenticates.
/// So this verifier accepts any certificate but still checks the
/// handshake's signatures (the peer holds the key it presented).
#[derive(Debug)]
struct SecretVerifies(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for SecretVerifies {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

// ---------------------------------------------------------------- satellite

/// A satellite's link to its home, reconnecting until stopped.
async fn run_satellite(
    ctx: LinkContext,
    endpoint: Endpoint,
    home: SocketAddr,
    mut stopped: watch::Receiver<bool>,
) {
    let conference = ctx.handle.id.clone();
    let mut state = LinkSnapshot {
        role: "satellite",
        addr: home.to_string(),
        state: "connecting",
        local_node: ctx.settings.name.clone(),
        ..Default::default()
    };
    let mut backoff = Duration::from_secs(1);
    loop {
        publish(&ctx, &state).await;
        let attempt = async {
            let conn = endpoint
                .connect(home, "tandem-span")
                .map_err(|e| format!("connect: {e}"))?
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let (node, control) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, say_hello(&ctx, &conn, &conference))
                    .await
                    .map_err(|_| "no answer to the hello".to_string())??;
            Ok::<_, String>((conn, node, control))
        };
        let result = tokio::select! {
            _ = stopped.changed() => break,
            r = attempt => r,
        };
        match result {
            Ok((conn, node, control)) => {
                info!(%conference, %home, %node, "span link to home up");
                backoff = Duration::from_secs(1);
                state.state = "connected";
                state.last_error = None;
                let r = run_link(&ctx, conn.clone(), control, node, &mut stopped, &mut state).await;
                conn.close(CLOSE_BYE.into(), b"bye");
                if *stopped.borrow() {
                    break;
                }
                let e = r.err().unwrap_or_else(|| "link ended".into());
                warn!(%conference, %home, error = %e, "span link to home lost; calls go on here");
                state.last_error = Some(e);
            }
            Err(e) => {
                warn!(%conference, %home, error = %e, "span link to home failed");
                state.last_error = Some(e);
            }
        }
        state.state = "retrying";
        state.reconnects += 1;
        state.remote.clear();
        state.stands_for.clear();
        state.followed = None;
        state.rtt_ms = None;
        ctx.metrics.span.reconnects.inc();
        publish(&ctx, &state).await;
        tokio::select! {
            _ = stopped.changed() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    let _ = ctx
        .handle
        .commands
        .send(ConferenceCommand::SpanLink {
            link: ctx.link,
            state: None,
        })
        .await;
}

/// The satellite's side of the handshake: hello out, welcome checked.
async fn say_hello(
    ctx: &LinkContext,
    conn: &Connection,
    conference: &str,
) -> Result<(String, Control), String> {
    let keys = exporter(conn)?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let hello = ControlFrame::Hello(Hello {
        version: wire::VERSION,
        conference: conference.to_owned(),
        node: ctx.settings.name.clone(),
        mac: ctx
            .settings
            .mac(&keys, "satellite", conference, &ctx.settings.name),
    });
    send.write_all(&hello.to_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut decoder = FrameDecoder::new();
    loop {
        match decoder.poll_frame() {
            Some(Ok(ControlFrame::Welcome(w))) => {
                if !ctx
                    .settings
                    .verify(&keys, "home", conference, &w.node, &w.mac)
                {
                    ctx.metrics.span.auth_failures.inc();
                    return Err("the home does not hold the cluster secret".into());
                }
                return Ok((
                    w.node,
                    Control {
                        send,
                        recv,
                        decoder,
                    },
                ));
            }
            Some(Ok(ControlFrame::Refuse { reason })) => {
                if reason.contains("authentication") {
                    ctx.metrics.span.auth_failures.inc();
                }
                return Err(format!("refused by the home: {reason}"));
            }
            Some(Ok(_)) => return Err("unexpected frame before the welcome".into()),
            Some(Err(e)) => {
                ctx.metrics.malformed("span", e.kind());
                return Err(format!("malformed welcome: {e}"));
            }
            None => {}
        }
        match recv.read_chunk(4096, true).await {
            Ok(Some(chunk)) => decoder.push(&chunk.bytes),
            Ok(None) => return Err("the home closed the control stream".into()),
            Err(e) => return Err(format!("control stream: {e}")),
        }
    }
}

// ---------------------------------------------------------------- one link

#[derive(Clone)]
struct LinkContext {
    link: u64,
    role: &'static str,
    addr: String,
    handle: ConferenceHandle,
    settings: Arc<SpanSettings>,
    metrics: Arc<Metrics>,
    ports: Arc<PortAllocator>,
    video_ports: Arc<PortAllocator>,
}

async fn publish(ctx: &LinkContext, state: &LinkSnapshot) {
    let _ = ctx
        .handle
        .commands
        .send(ConferenceCommand::SpanLink {
            link: ctx.link,
            state: Some(Box::new(state.clone())),
        })
        .await;
}

/// An internal leg: our loopback sockets and where the conference listens.
struct SpanLeg {
    participant: ParticipantId,
    audio: Arc<UdpSocket>,
    video: Arc<UdpSocket>,
    conf_audio: SocketAddr,
    conf_video: Option<SocketAddr>,
}

/// Adds an internal leg with the same offer/answer a room system's INVITE
/// goes through (as the cascade's internal legs).
async fn add_leg(
    ctx: &LinkContext,
    name: &str,
    side: LegSide,
    shown: bool,
    rank: usize,
    video: bool,
) -> Result<SpanLeg, String> {
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
    let conf_video = if video {
        match ctx.video_ports.allocate(ctx.settings.video_dscp) {
            Some(v) => Some(v),
            None => {
                ctx.ports.release(conf_audio.port);
                return Err("video port range exhausted".into());
            }
        }
    } else {
        None
    };
    let conf_audio_addr = conf_audio.rtp.local_addr().map_err(|e| e.to_string())?;
    let conf_video_addr = match &conf_video {
        Some(v) => Some(v.rtp.local_addr().map_err(|e| e.to_string())?),
        None => None,
    };
    let direction = match side {
        LegSide::Link => "recvonly",
        LegSide::Remote => "sendonly",
        LegSide::Local => "sendrecv",
    };
    // A video in leg carries no audio (the far node's mix has its own
    // leg): inactive, so the conference neither sends it audio nor waits
    // for any (no media timeout).
    let audio_direction = if side == LegSide::Remote && video {
        "inactive"
    } else {
        direction
    };
    let mut offer = format!(
        "v=0\r\no=tandem-span 1 1 IN IP4 127.0.0.1\r\ns=span\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {ap} RTP/AVP {OPUS_PT}\r\na=rtpmap:{OPUS_PT} opus/48000/2\r\n\
         a=fmtp:{OPUS_PT} useinbandfec=1\r\na=rtcp-mux\r\na={audio_direction}\r\n"
    );
    if video {
        let kbps = ctx.settings.video_kbps;
        offer.push_str(&format!(
            "m=video {vp} RTP/AVP {H264_PT}\r\nb=AS:{kbps}\r\na=rtpmap:{H264_PT} H264/90000\r\n\
             a=fmtp:{H264_PT} profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1\r\n\
             a=rtcp-fb:{H264_PT} nack pli\r\na=rtcp-fb:{H264_PT} ccm fir\r\na=rtcp-mux\r\na={direction}\r\n"
        ));
    }
    let release = |why: String| {
        ctx.ports.release(conf_audio.port);
        if let Some(v) = &conf_video {
            ctx.video_ports.release(v.port);
        }
        why
    };
    let parsed = SessionDescription::parse(&offer).map_err(|e| release(format!("offer: {e}")))?;
    let local = LocalMedia {
        addr: conf_audio_addr.ip(),
        audio_port: conf_audio.port,
        codecs: vec![AudioCodec::Opus],
        ptime: 20,
        video_port: conf_video.as_ref().map(|v| v.port),
        content: None,
    };
    let mut sdp = SdpSession::new(0);
    let (_, negotiated) = sdp
        .answer(&parsed, &local)
        .map_err(|e| release(format!("answer: {e}")))?;
    let media = negotiated.ok_or_else(|| release("no audio in the internal offer".into()))?;
    let participant = ParticipantId(NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let video = match (sdp.video().cloned(), conf_video) {
        (Some(s), Some(v)) => Some((s, v)),
        (None, Some(v)) => {
            ctx.video_ports.release(v.port);
            None
        }
        _ => None,
    };
    let has_video = video.is_some();
    let setup = LegSetup {
        participant,
        name: name.to_owned(),
        call_id: format!("span-{}-{}", ctx.handle.id, participant.0),
        signalling: SIGNALLING,
        media,
        sockets: conf_audio,
        video,
        side,
        shown,
        link_rank: rank,
        door: None,
    };
    ctx.handle
        .commands
        .send(ConferenceCommand::AddLeg(Box::new(setup)))
        .await
        .map_err(|_| "conference ended".to_string())?;
    if side == LegSide::Link {
        let _ = ctx
            .handle
            .commands
            .send(ConferenceCommand::SetLayout {
                participant: Some(participant),
                layout: LayoutChoice::Fixed(Layout::Grid1x1),
            })
            .await;
    }
    Ok(SpanLeg {
        participant,
        audio: Arc::new(audio_socket),
        video: Arc::new(video_socket),
        conf_audio: conf_audio_addr,
        conf_video: conf_video_addr.filter(|_| has_video),
    })
}

/// The legs of one link on this node.
struct Legs {
    /// Out: what this node sends (leg k: flow k+1's video; leg 0 also
    /// the audio mix).
    out: Vec<SpanLeg>,
    /// In: the far node's mix.
    audio_in: SpanLeg,
    /// In: the far node's k-th speaker.
    video_in: Vec<SpanLeg>,
}

impl Legs {
    async fn add(ctx: &LinkContext, peer: &str) -> Result<Legs, String> {
        let k = ctx.settings.video_flows;
        let mut legs = Legs {
            out: Vec::with_capacity(k.max(1)),
            audio_in: add_leg(
                ctx,
                &format!("{peer} (audio)"),
                LegSide::Remote,
                false,
                0,
                false,
            )
            .await?,
            video_in: Vec::with_capacity(k),
        };
        // Leg 0 always: it carries the audio mix even with no video flows.
        for rank in 0..k.max(1) {
            let name = format!("link to {peer}");
            let leg = add_leg(ctx, &name, LegSide::Link, true, rank, k > 0).await?;
            legs.out.push(leg);
        }
        for rank in 0..k {
            let name = format!("{peer} {}", rank + 1);
            let leg = add_leg(ctx, &name, LegSide::Remote, false, 0, true).await?;
            legs.video_in.push(leg);
        }
        // The link's own mixer group: its out legs hear everyone here but
        // the far node's mix (a home with several satellites sends each the
        // others; the cascade's natives too).
        let group = u32::try_from(ctx.link - SPAN_IDS + 1).unwrap_or(u32::MAX);
        for leg in legs.out.iter().chain([&legs.audio_in]) {
            let _ = ctx
                .handle
                .commands
                .send(ConferenceCommand::LinkGroup {
                    participant: leg.participant,
                    group,
                })
                .await;
        }
        Ok(legs)
    }

    async fn remove(&self, ctx: &LinkContext) {
        for leg in self
            .out
            .iter()
            .chain(self.video_in.iter())
            .chain([&self.audio_in])
        {
            let _ = ctx
                .handle
                .commands
                .send(ConferenceCommand::RemoveLeg {
                    participant: leg.participant,
                })
                .await;
        }
    }
}

/// Runs a link (either role) until it fails or `stopped` fires; adds the
/// link's legs first and takes them out after.
async fn run_link(
    ctx: &LinkContext,
    conn: Connection,
    control: Control,
    peer: String,
    stopped: &mut watch::Receiver<bool>,
    state: &mut LinkSnapshot,
) -> Result<(), String> {
    let m = &ctx.metrics.span;
    m.links.with_label_values(&[ctx.role]).inc();
    state.node = Some(peer.clone());
    state.state = "connected";
    publish(ctx, state).await;
    let legs = match Legs::add(ctx, &peer).await {
        Ok(l) => l,
        Err(e) => {
            m.links.with_label_values(&[ctx.role]).dec();
            return Err(e);
        }
    };
    let mut link = Link::new(ctx, conn, peer, legs, control);
    let result = link.run(stopped, state).await;
    link.teardown().await;
    m.links.with_label_values(&[ctx.role]).dec();
    result
}

struct Link<'a> {
    ctx: &'a LinkContext,
    conn: Connection,
    peer: String,
    legs: Legs,
    control: Control,
    tasks: Vec<JoinHandle<()>>,
    feedback_rx: mpsc::Receiver<usize>,
    last_keyframe_request: Vec<Option<Instant>>,
    /// The far node's last roster.
    roster: Roster,
    /// What each video-in leg shows now (far participant ID).
    shown: Vec<Option<(u64, String)>>,
    rule: Option<SpeakerRule>,
    last_roster_sent: Option<Roster>,
    last_roster_at: Option<Instant>,
    in_seq: HashMap<u8, u16>,
    lost_out: u64,
    send_buf: Vec<u8>,
    counters: Counters,
}

#[derive(Clone)]
struct Counters {
    in_audio: IntCounter,
    in_video: IntCounter,
    in_audio_bytes: IntCounter,
    in_video_bytes: IntCounter,
    out_audio: IntCounter,
    out_video: IntCounter,
    out_audio_bytes: IntCounter,
    out_video_bytes: IntCounter,
    lost_in: IntCounter,
    too_large: IntCounter,
}

impl Counters {
    fn new(m: &SpanMetrics) -> Self {
        Counters {
            in_audio: m.packets.with_label_values(&["in", "audio"]),
            in_video: m.packets.with_label_values(&["in", "video"]),
            in_audio_bytes: m.bytes.with_label_values(&["in", "audio"]),
            in_video_bytes: m.bytes.with_label_values(&["in", "video"]),
            out_audio: m.packets.with_label_values(&["out", "audio"]),
            out_video: m.packets.with_label_values(&["out", "video"]),
            out_audio_bytes: m.bytes.with_label_values(&["out", "audio"]),
            out_video_bytes: m.bytes.with_label_values(&["out", "video"]),
            lost_in: m.lost.with_label_values(&["in"]),
            too_large: m.dropped.with_label_values(&["too_large"]),
        }
    }
}

impl<'a> Link<'a> {
    fn new(
        ctx: &'a LinkContext,
        conn: Connection,
        peer: String,
        legs: Legs,
        control: Control,
    ) -> Self {
        let counters = Counters::new(&ctx.metrics.span);
        let (feedback_tx, feedback_rx) = mpsc::channel(64);
        let mut tasks = Vec::new();
        // Out: the conference's RTP for the out legs, onto datagrams.
        if let Some(leg) = legs.out.first() {
            tasks.push(tokio::spawn(forward_audio(
                leg.audio.clone(),
                conn.clone(),
                counters.clone(),
            )));
        }
        if ctx.settings.video_flows > 0 {
            for (rank, leg) in legs.out.iter().enumerate() {
                tasks.push(tokio::spawn(forward_video(
                    leg.video.clone(),
                    FlowId::video(rank),
                    conn.clone(),
                    counters.clone(),
                )));
            }
        }
        // The conference's keyframe requests for what the far node shows.
        for (rank, leg) in legs.video_in.iter().enumerate() {
            tasks.push(tokio::spawn(read_feedback(
                leg.video.clone(),
                rank,
                feedback_tx.clone(),
            )));
        }
        // Drain what the conference sends the in legs (their audio: the
        // conference mixes for every leg) so the sockets never fill.
        for leg in legs.video_in.iter().chain([&legs.audio_in]) {
            tasks.push(tokio::spawn(drain(leg.audio.clone())));
        }
        for leg in legs.out.iter().skip(1) {
            tasks.push(tokio::spawn(drain(leg.audio.clone())));
        }
        let k = legs.video_in.len();
        Link {
            ctx,
            conn,
            peer,
            legs,
            control,
            tasks,
            feedback_rx,
            last_keyframe_request: vec![None; k],
            roster: Roster::default(),
            shown: vec![None; k],
            rule: None,
            last_roster_sent: None,
            last_roster_at: None,
            in_seq: HashMap::new(),
            lost_out: 0,
            send_buf: Vec::with_capacity(1500),
            counters,
        }
    }

    async fn run(
        &mut self,
        stopped: &mut watch::Receiver<bool>,
        state: &mut LinkSnapshot,
    ) -> Result<(), String> {
        let mut tick = tokio::time::interval(ROSTER_EVERY);
        let mut snapshot = self.ctx.handle.snapshot.clone();
        let control_bytes_in = self
            .ctx
            .metrics
            .span
            .bytes
            .with_label_values(&["in", "control"]);
        loop {
            tokio::select! {
                _ = stopped.changed() => {
                    let bye = ControlFrame::Bye { reason: "unlinked".into() };
                    let _ = self.control.send.write_all(&bye.to_bytes()).await;
                    let _ = self.control.send.finish();
                    return Ok(());
                }
                d = self.conn.read_datagram() => {
                    let d = d.map_err(|e| format!("link: {e}"))?;
                    self.handle_datagram(&d).await;
                }
                chunk = self.control.recv.read_chunk(16 * 1024, true) => {
                    match chunk {
                        Ok(Some(c)) => {
                            control_bytes_in.inc_by(c.bytes.len() as u64);
                            self.control.decoder.push(&c.bytes);
                        }
                        Ok(None) => return Err("control stream closed".into()),
                        Err(e) => return Err(format!("control stream: {e}")),
                    }
                    while let Some(frame) = self.control.decoder.poll_frame() {
                        match frame {
                            Ok(f) => {
                                if !self.handle_frame(f, state).await {
                                    return Ok(());
                                }
                            }
                            Err(e) => {
                                self.ctx.metrics.malformed("span", e.kind());
                                if self.control.decoder.buffered() == 0
                                    && matches!(e, wire::SpanError::BadLength(_))
                                {
                                    return Err(format!("control stream framing lost: {e}"));
                                }
                            }
                        }
                    }
                }
                Some(rank) = self.feedback_rx.recv() => self.request_keyframe(rank).await?,
                _ = tick.tick() => {
                    let snap = snapshot.borrow_and_update().clone();
                    self.send_roster(&snap).await?;
                    self.sample(state).await;
                }
            }
        }
    }

    /// Media from the far node, into the in legs.
    async fn handle_datagram(&mut self, d: &[u8]) {
        let datagram = match MediaDatagram::parse(d) {
            Ok(dg) => dg,
            Err(e) => {
                self.ctx.metrics.malformed("span", e.kind());
                return;
            }
        };
        let Ok(packet) = RtpPacket::parse(datagram.rtp) else {
            return;
        };
        if let Some(last) = self.in_seq.insert(datagram.flow.0, packet.sequence) {
            let gap = packet.sequence.wrapping_sub(last.wrapping_add(1));
            if gap > 0 && gap < 1000 {
                self.counters.lost_in.inc_by(u64::from(gap));
            }
        }
        let (socket, dest) = match datagram.flow.rank() {
            None => {
                self.counters.in_audio.inc();
                self.counters
                    .in_audio_bytes
                    .inc_by(datagram.rtp.len() as u64);
                (
                    &self.legs.audio_in.audio,
                    Some(self.legs.audio_in.conf_audio),
                )
            }
            Some(rank) => {
                let Some(leg) = self.legs.video_in.get(rank) else {
                    self.ctx
                        .metrics
                        .span
                        .dropped
                        .with_label_values(&["flow"])
                        .inc();
                    return;
                };
                self.counters.in_video.inc();
                self.counters
                    .in_video_bytes
                    .inc_by(datagram.rtp.len() as u64);
                (&leg.video, leg.conf_video)
            }
        };
        if let Some(dest) = dest {
            let _ = socket.try_send_to(datagram.rtp, dest);
        }
    }

    /// False when the far node said goodbye.
    async fn handle_frame(&mut self, frame: ControlFrame, state: &mut LinkSnapshot) -> bool {
        match frame {
            ControlFrame::Roster(r) => {
                self.roster = r;
                self.apply_roster(state).await;
            }
            ControlFrame::KeyframeRequest { flow } => {
                self.ctx
                    .metrics
                    .span
                    .keyframe_requests
                    .with_label_values(&["in"])
                    .inc();
                if let Some(leg) = flow.rank().and_then(|r| self.legs.out.get(r))
                    && let Some(dest) = leg.conf_video
                {
                    self.send_buf.clear();
                    rtcp::write_pli(&mut self.send_buf, Ssrc(0), Ssrc(0));
                    let _ = leg.video.send_to(&self.send_buf, dest).await;
                }
            }
            ControlFrame::Bye { reason } => {
                info!(conference = %self.ctx.handle.id, peer = %self.peer, %reason, "span link: the far node said goodbye");
                return false;
            }
            // Handshake frames after the handshake: ignored.
            ControlFrame::Hello(_) | ControlFrame::Welcome(_) | ControlFrame::Refuse { .. } => {
                self.ctx.metrics.malformed("span", "unexpected_frame");
            }
        }
        true
    }

    /// The far node's roster: its people in our API, its speakers on the
    /// video in legs (named, shown while they carry someone), and the
    /// speaker rule.
    async fn apply_roster(&mut self, state: &mut LinkSnapshot) {
        let peer = self.peer.clone();
        let names: HashMap<u64, &RosterEntry> =
            self.roster.participants.iter().map(|p| (p.id, p)).collect();
        state.remote = self
            .roster
            .participants
            .iter()
            .map(|p| ParticipantSnapshot {
                id: format!("{peer}/{}", p.id),
                name: p.name.clone(),
                signalling: SIGNALLING,
                audio_codec: "opus",
                video: self.roster.flows.contains(&p.id),
                video_stream: None,
                speaking: p.speaking,
                muted: false,
                on_hold: false,
                rtp_port: 0,
                remote: Some(self.ctx.addr.clone()),
                packets_in: 0,
                packets_out: 0,
                packets_lost: 0,
                jitter_ms: 0.0,
                node: Some(peer.clone()),
                state: "joined",
            })
            .collect();
        state.remote_participants = state.remote.len();
        let commands = &self.ctx.handle.commands;
        for (rank, leg) in self.legs.video_in.iter().enumerate() {
            let now = self.roster.flows.get(rank).map(|id| {
                let name = names
                    .get(id)
                    .map_or_else(|| format!("{peer} {}", rank + 1), |p| p.name.clone());
                (*id, name)
            });
            if now == self.shown[rank] {
                continue;
            }
            if let Some((_, name)) = &now
                && self.shown[rank].as_ref().map(|(_, n)| n) != Some(name)
            {
                let _ = commands
                    .send(ConferenceCommand::Rename {
                        participant: leg.participant,
                        name: name.clone(),
                    })
                    .await;
            }
            if now.is_some() != self.shown[rank].is_some() {
                let _ = commands
                    .send(ConferenceCommand::ShowVideo {
                        participant: leg.participant,
                        shown: now.is_some(),
                    })
                    .await;
            }
            self.shown[rank] = now;
        }
        let speaker_of = |rank: usize| {
            let (id, name) = self.shown.get(rank)?.clone()?;
            Some(SpeakerSnapshot {
                node: peer.clone(),
                participant: id.to_string(),
                name,
                api_id: String::new(),
            })
        };
        state.stands_for = (0..self.legs.video_in.len())
            .filter_map(|rank| Some((self.legs.video_in[rank].participant.0, speaker_of(rank)?)))
            .collect();
        // The far node's mix, when its video does not stand in (no video
        // flows): its own most recent speaker.
        if let Some(id) = self.roster.local_speaker {
            let name = names.get(&id).map(|p| p.name.clone()).unwrap_or_default();
            state.stands_for.push((
                self.legs.audio_in.participant.0,
                SpeakerSnapshot {
                    node: peer.clone(),
                    participant: id.to_string(),
                    name,
                    api_id: String::new(),
                },
            ));
        }
        let rule = if self.ctx.role == "home" {
            // The satellite's mix wins → its top speaker is the speaker.
            let mut stand_in = Vec::new();
            if let Some(first) = self.legs.video_in.first()
                && self.shown.first().is_some_and(Option::is_some)
            {
                stand_in.push((self.legs.audio_in.participant, first.participant));
            }
            state.followed = None;
            SpeakerRule {
                follow: None,
                stand_in,
            }
        } else {
            // A satellite follows the home's decision.
            let active = self.roster.active.clone();
            state.followed = active.as_ref().map(|a| SpeakerSnapshot {
                node: a.node.clone(),
                participant: a.id.to_string(),
                name: a.name.clone(),
                api_id: String::new(),
            });
            let follow = match &active {
                None => Some(None),
                Some(a) if a.node == self.ctx.settings.name => Some(Some(ParticipantId(a.id))),
                Some(a) => self
                    .shown
                    .iter()
                    .position(|s| a.node == peer && s.as_ref().is_some_and(|(id, _)| *id == a.id))
                    .map(|rank| Some(self.legs.video_in[rank].participant)),
            };
            SpeakerRule {
                follow,
                stand_in: Vec::new(),
            }
        };
        if self.rule.as_ref() != Some(&rule) {
            let _ = commands
                .send(ConferenceCommand::SpanSpeaker {
                    link: self.ctx.link,
                    rule: Some(rule.clone()),
                })
                .await;
            self.rule = Some(rule);
        }
        publish(self.ctx, state).await;
    }

    /// Our roster for the far node: our own people (never those learnt
    /// from a link), who our flows show, and (home) the active speaker.
    async fn send_roster(&mut self, snap: &ConferenceSnapshot) -> Result<(), String> {
        let participants: Vec<RosterEntry> = snap
            .participants
            .iter()
            .filter(|p| p.node.is_none())
            .filter_map(|p| {
                Some(RosterEntry {
                    id: p.id.parse().ok()?,
                    name: p.name.clone(),
                    speaking: p.speaking,
                })
            })
            .collect();
        let flows: Vec<u64> = snap
            .local_speaker_ids
            .iter()
            .copied()
            .take(self.legs.out.len().min(self.ctx.settings.video_flows))
            .collect();
        let active = if self.ctx.role == "home" {
            snap.span
                .as_ref()
                .and_then(|s| s.active_speaker.as_ref())
                .and_then(|a| {
                    Some(ActiveSpeaker {
                        node: a.node.clone(),
                        id: a.participant.parse().ok()?,
                        name: a.name.clone(),
                    })
                })
        } else {
            None
        };
        let roster = Roster {
            participants,
            flows,
            local_speaker: snap.local_speaker_ids.first().copied(),
            active,
        };
        let stale = self
            .last_roster_at
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(2));
        if self.last_roster_sent.as_ref() == Some(&roster) && !stale {
            return Ok(());
        }
        let bytes = ControlFrame::Roster(roster.clone()).to_bytes();
        self.ctx
            .metrics
            .span
            .bytes
            .with_label_values(&["out", "control"])
            .inc_by(bytes.len() as u64);
        self.control
            .send
            .write_all(&bytes)
            .await
            .map_err(|e| format!("control stream: {e}"))?;
        self.last_roster_sent = Some(roster);
        self.last_roster_at = Some(Instant::now());
        Ok(())
    }

    async fn request_keyframe(&mut self, rank: usize) -> Result<(), String> {
        let Some(last) = self.last_keyframe_request.get_mut(rank) else {
            return Ok(());
        };
        if last.is_some_and(|t| t.elapsed() < KEYFRAME_GAP) {
            return Ok(());
        }
        *last = Some(Instant::now());
        self.ctx
            .metrics
            .span
            .keyframe_requests
            .with_label_values(&["out"])
            .inc();
        let frame = ControlFrame::KeyframeRequest {
            flow: FlowId::video(rank),
        };
        self.control
            .send
            .write_all(&frame.to_bytes())
            .await
            .map_err(|e| format!("control stream: {e}"))
    }

    /// RTT and loss from QUIC, into the metrics and the API.
    async fn sample(&mut self, state: &mut LinkSnapshot) {
        let rtt = self.conn.rtt();
        self.ctx.metrics.span.rtt.observe(rtt.as_secs_f64());
        let lost = self.conn.stats().path.lost_packets;
        if lost > self.lost_out {
            self.ctx
                .metrics
                .span
                .lost
                .with_label_values(&["out"])
                .inc_by(lost - self.lost_out);
        }
        self.lost_out = lost;
        let ms = (rtt.as_secs_f64() * 10_000.0).round() / 10.0;
        let changed = state.rtt_ms.is_none_or(|old| (old - ms).abs() >= 1.0);
        state.rtt_ms = Some(ms);
        if changed {
            publish(self.ctx, state).await;
        }
    }

    async fn teardown(self) {
        for t in &self.tasks {
            t.abort();
        }
        let ctx = self.ctx;
        let _ = ctx
            .handle
            .commands
            .send(ConferenceCommand::SpanSpeaker {
                link: ctx.link,
                rule: None,
            })
            .await;
        self.legs.remove(ctx).await;
    }
}

/// The out leg's audio (the mix for the far node) onto flow 0.
async fn forward_audio(socket: Arc<UdpSocket>, conn: Connection, c: Counters) {
    let mut buf = vec![0u8; 2048];
    let mut out = Vec::with_capacity(2048);
    while let Ok((n, _)) = socket.recv_from(&mut buf).await {
        let packet = &buf[..n];
        if is_rtcp(packet) || RtpPacket::parse(packet).is_err() {
            continue;
        }
        MediaDatagram::write(FlowId::AUDIO, packet, &mut out);
        if conn.send_datagram(Bytes::copy_from_slice(&out)).is_ok() {
            c.out_audio.inc();
            c.out_audio_bytes.inc_by(n as u64);
        }
    }
}

/// An out leg's video onto its flow, repacketized to fit a datagram (the
/// node packetizes for a 1500-byte path; a QUIC datagram holds less).
async fn forward_video(socket: Arc<UdpSocket>, flow: FlowId, conn: Connection, c: Counters) {
    let mut buf = vec![0u8; 2048];
    let mut out = Vec::with_capacity(2048);
    let mut rtp = Vec::with_capacity(2048);
    let mut depacketizer = H264Depacketizer::new();
    let packetizer = H264Packetizer::new(SPAN_MTU, PacketizationMode::NonInterleaved);
    let ssrc = Ssrc(0x5ba0_0000 | u32::from(flow.0));
    let mut seq: u16 = 0;
    while let Ok((n, _)) = socket.recv_from(&mut buf).await {
        let data = &buf[..n];
        if is_rtcp(data) {
            continue;
        }
        let Ok(packet) = RtpPacket::parse(data) else {
            continue;
        };
        depacketizer.handle_rtp(&packet);
        while let Some(au) = depacketizer.poll_access_unit() {
            let Ok(payloads) = packetizer.packetize(&au.data) else {
                c.too_large.inc();
                continue;
            };
            let last = payloads.len().saturating_sub(1);
            for (i, p) in payloads.iter().enumerate() {
                rtp.clear();
                RtpHeader {
                    marker: i == last,
                    payload_type: H264_PT,
                    sequence: seq,
                    timestamp: MediaTime(au.timestamp.0),
                    ssrc,
                }
                .write(p, &mut rtp);
                seq = seq.wrapping_add(1);
                MediaDatagram::write(flow, &rtp, &mut out);
                match conn.send_datagram(Bytes::copy_from_slice(&out)) {
                    Ok(()) => {
                        c.out_video.inc();
                        c.out_video_bytes.inc_by(rtp.len() as u64);
                    }
                    Err(quinn::SendDatagramError::TooLarge) => c.too_large.inc(),
                    Err(_) => return,
                }
            }
        }
    }
}

/// What the conference sends a video in leg is RTCP: its keyframe
/// requests (PLI, FIR) go to the far node.
async fn read_feedback(socket: Arc<UdpSocket>, rank: usize, tx: mpsc::Sender<usize>) {
    let mut buf = vec![0u8; 1500];
    while let Ok((n, _)) = socket.recv_from(&mut buf).await {
        let Ok(packets) = rtcp::parse_compound(&buf[..n]) else {
            continue;
        };
        if packets.iter().any(|p| p.is_pli() || p.is_fir()) && tx.try_send(rank).is_err() {
            // The link is busy or gone: a later request will do.
        }
    }
}

async fn drain(socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 2048];
    while socket.recv_from(&mut buf).await.is_ok() {}
}

/// The node API for spans: `PUT|GET|DELETE /api/conferences/{id}/span`,
/// `GET /api/span`.
pub mod api {
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use axum::{Json, Router};
    use serde::Deserialize;
    use serde_json::json;

    use crate::http::{ApiState, api_error};

    pub fn routes() -> Router<ApiState> {
        Router::new()
            .route(
                "/api/conferences/{id}/span",
                get(get_span).put(put_span).delete(delete_span),
            )
            .route("/api/span", get(node_span))
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SpanBody {
        /// The home node's span listener, `host:port`.
        home: String,
    }

    /// `PUT /api/conferences/{id}/span {"home":"host:port"}`: this node's
    /// conference becomes a satellite of that home (links now if running).
    async fn put_span(
        State(s): State<ApiState>,
        Path(id): Path<String>,
        body: Result<Json<SpanBody>, axum::extract::rejection::JsonRejection>,
    ) -> Response {
        let Ok(Json(body)) = body else {
            return api_error(
                StatusCode::BAD_REQUEST,
                "bad_body",
                r#"expected {"home": "<host:port>"}"#,
            );
        };
        let home = match tokio::net::lookup_host(body.home.as_str()).await {
            Ok(mut addrs) => addrs.next(),
            Err(_) => None,
        };
        let Some(home) = home else {
            return api_error(
                StatusCode::BAD_REQUEST,
                "bad_home",
                "home must be host:port of a node's span listener",
            );
        };
        if Some(home) == s.spans.listen_addr() {
            return api_error(
                StatusCode::BAD_REQUEST,
                "bad_home",
                "a node cannot be its own home",
            );
        }
        s.spans.span(&id, Some(home));
        Json(json!({"conference": id, "home": home.to_string()})).into_response()
    }

    /// `DELETE /api/conferences/{id}/span`: no longer a satellite; its
    /// calls go on as a local conference.
    async fn delete_span(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
        if s.spans.home_of(&id).is_none() {
            return api_error(
                StatusCode::NOT_FOUND,
                "not_spanned",
                "this conference is no satellite here",
            );
        }
        s.spans.span(&id, None);
        Json(json!({"conference": id, "home": null})).into_response()
    }

    /// `GET /api/conferences/{id}/span`: its home (if a satellite) and the
    /// links' state.
    async fn get_span(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
        let home = s.spans.home_of(&id).map(|h| h.to_string());
        let span = s.registry.snapshot(&id).and_then(|c| c.span);
        if home.is_none() && span.is_none() {
            return api_error(
                StatusCode::NOT_FOUND,
                "not_spanned",
                "this conference spans no nodes here",
            );
        }
        Json(json!({"conference": id, "home": home, "span": span})).into_response()
    }

    /// `GET /api/span`: this node's name, where links reach it, and its
    /// satellite bindings.
    async fn node_span(State(s): State<ApiState>) -> impl IntoResponse {
        let bindings: Vec<_> = s
            .spans
            .bindings()
            .into_iter()
            .map(|(c, h)| json!({"conference": c, "home": h.to_string()}))
            .collect();
        Json(json!({
            "node": s.spans.node_name(),
            "listen": s.spans.listen_addr().map(|a| a.to_string()),
            "bindings": bindings,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(role: &'static str, stands_for: Vec<(u64, SpeakerSnapshot)>) -> LinkSnapshot {
        LinkSnapshot {
            role,
            state: "connected",
            local_node: "a".into(),
            stands_for,
            ..Default::default()
        }
    }

    fn speaker(node: &str, id: &str, name: &str) -> SpeakerSnapshot {
        SpeakerSnapshot {
            node: node.into(),
            participant: id.into(),
            name: name.into(),
            api_id: String::new(),
        }
    }

    #[test]
    fn the_home_names_a_far_speaker_by_the_leg_that_stands_in() {
        let mut links = BTreeMap::new();
        links.insert(1, link("home", vec![(900, speaker("b", "3", "Oslo"))]));
        let s = summary(&links, Some(900), |_| None).expect("span");
        let a = s.active_speaker.expect("speaker");
        assert_eq!(
            (a.node.as_str(), a.api_id.as_str(), a.name.as_str()),
            ("b", "b/3", "Oslo")
        );
        let s = summary(&links, Some(7), |id| Some(format!("local {id}"))).expect("span");
        let a = s.active_speaker.expect("speaker");
        assert_eq!((a.api_id.as_str(), a.name.as_str()), ("7", "local 7"));
        assert_eq!(s.role, "home");
        assert!(summary(&BTreeMap::new(), Some(7), |_| None).is_none());
    }

    #[test]
    fn a_satellite_reports_what_the_home_decided() {
        let mut links = BTreeMap::new();
        let mut l = link("satellite", vec![]);
        l.followed = Some(speaker("a", "5", "Bergen"));
        links.insert(1, l);
        let s = summary(&links, Some(42), |_| None).expect("span");
        assert_eq!(s.role, "satellite");
        assert_eq!(s.active_speaker.expect("speaker").api_id, "5");
        links.get_mut(&1).expect("link").followed = Some(speaker("c", "5", "Bergen"));
        let s = summary(&links, None, |_| None).expect("span");
        assert_eq!(s.active_speaker.expect("speaker").api_id, "c/5");
    }
}
