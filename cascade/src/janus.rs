//! [`MeetingConnector`] for a Janus VideoRoom, over Janus' HTTP API.
//!
//! Janus' HTTP transport is request/acknowledge: a plugin request that takes
//! time (join, publish, subscribe, start, configure) is answered `ack` at
//! once and its real reply arrives later on the session's long poll
//! (`GET /janus/<session>`), matched by transaction. One small task does
//! the long poll and hands every message, raw, to the connector over a
//! channel; the connector (owned by the agent's task) matches replies to the
//! request it is waiting on and keeps everything else for
//! [`MeetingConnector::next_event`]. So no state is shared between the two
//! tasks, and the translation from Janus JSON to [`MeetingEvent`]s is plain
//! functions ([`parse_message`], [`translate`]) that the unit tests and the
//! fuzz target call directly.
//!
//! Everything from the server is parsed into typed values; anything that
//! does not parse is logged, counted in [`JanusCounters`] and skipped.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::{Value, json};
use tandem_mixer::video::SimulcastLayer;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::connector::{
    Joined, MediaKind, MeetingConnector, MeetingEvent, PublisherId, RemotePublisher, RemoteStream,
    RoomId, SdpKind, ServerView, SessionDescription, StreamRequest, SubscribedStream,
    SubscriptionId, SubscriptionOffer,
};
use crate::error::Error;

const PLUGIN: &str = "janus.plugin.videoroom";
/// Longest we wait for a reply to one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Janus answers a long poll after 30 s at the latest (with a keepalive).
const LONG_POLL_TIMEOUT: Duration = Duration::from_secs(45);
/// VideoRoom: the room already exists.
const ERROR_ROOM_EXISTS: i64 = 427;

/// How to reach Janus and what room to expect.
#[derive(Debug, Clone)]
pub struct JanusConfig {
    /// Base of the HTTP API, e.g. `http://127.0.0.1:8088/janus`.
    pub server_url: String,
    /// Create the room when it does not exist (with `admin_key` if the
    /// server wants one).
    pub create_room: bool,
    pub admin_key: Option<String>,
    /// Room settings used when creating.
    pub room_publishers: u32,
    pub room_bitrate_bps: u32,
    /// Janus' admin API (e.g. `http://127.0.0.1:7088/admin`) and its
    /// secret: with them the agent sees which of its simulcast layers
    /// Janus forwards to someone, and encodes only those.
    pub admin_url: Option<String>,
    pub admin_secret: Option<String>,
}

impl JanusConfig {
    pub fn new(server_url: impl Into<String>) -> Self {
        JanusConfig {
            server_url: server_url.into().trim_end_matches('/').to_owned(),
            create_room: false,
            admin_key: None,
            room_publishers: 16,
            room_bitrate_bps: 2_500_000,
            admin_url: None,
            admin_secret: None,
        }
    }
}

/// Counters for metrics. Monotonic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JanusCounters {
    pub requests: u64,
    pub events: u64,
    /// Messages from Janus that did not parse or made no sense.
    pub malformed: u64,
    pub long_polls: u64,
}

// ---------------------------------------------------------------------------
// Parsing: Janus JSON into typed messages (sans-IO).

/// One message from Janus, top level.
#[derive(Debug, Clone, PartialEq)]
pub struct JanusMessage {
    pub kind: JanusKind,
    pub transaction: Option<String>,
    /// The handle the message is about.
    pub sender: Option<u64>,
    pub jsep: Option<SessionDescription>,
}

/// What a [`JanusMessage`] says.
#[derive(Debug, Clone, PartialEq)]
pub enum JanusKind {
    /// `success` with an id (`create`, `attach`).
    Created(u64),
    /// `success` or `event` carrying plugin data (boxed: it is large and
    /// most messages are small).
    Plugin(Box<VideoRoomData>),
    /// `success` without anything in it.
    Success,
    Ack,
    Keepalive,
    Error {
        code: i64,
        reason: String,
    },
    WebrtcUp,
    Media {
        mid: Option<String>,
        kind: MediaKind,
        receiving: bool,
    },
    SlowLink {
        uplink: bool,
    },
    HangUp {
        reason: String,
    },
    Detached,
    Timeout,
    /// Anything else Janus sends (trickle, ...): ignored.
    Other(String),
}

/// The VideoRoom plugin's part of a message.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct VideoRoomData {
    #[serde(default)]
    pub videoroom: String,
    pub room: Option<u64>,
    pub id: Option<u64>,
    pub private_id: Option<u64>,
    pub exists: Option<bool>,
    pub publishers: Option<Vec<PublisherJson>>,
    /// A publisher id, or `"ok"` when it is us leaving.
    pub leaving: Option<Value>,
    pub unpublished: Option<Value>,
    pub error_code: Option<i64>,
    pub error: Option<String>,
    pub streams: Option<Vec<SubscriberStreamJson>>,
    pub substream: Option<i64>,
    pub mid: Option<String>,
    pub configured: Option<String>,
    pub started: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PublisherJson {
    pub id: u64,
    pub display: Option<String>,
    #[serde(default)]
    pub streams: Vec<PublisherStreamJson>,
    pub talking: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PublisherStreamJson {
    #[serde(rename = "type")]
    pub kind: String,
    pub mid: Option<String>,
    pub codec: Option<String>,
    #[serde(default)]
    pub simulcast: bool,
    #[serde(default)]
    pub disabled: bool,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SubscriberStreamJson {
    pub mid: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub feed_id: Option<u64>,
    pub feed_mid: Option<String>,
    pub feed_display: Option<String>,
    pub codec: Option<String>,
    #[serde(default)]
    pub active: Option<bool>,
}

#[derive(Deserialize)]
struct Envelope {
    janus: String,
    transaction: Option<String>,
    sender: Option<u64>,
    data: Option<Value>,
    plugindata: Option<PluginData>,
    jsep: Option<JsepJson>,
    error: Option<ErrorJson>,
    reason: Option<String>,
    receiving: Option<bool>,
    #[serde(rename = "type")]
    kind: Option<String>,
    mid: Option<String>,
    uplink: Option<bool>,
}

#[derive(Deserialize)]
struct PluginData {
    data: Value,
}

#[derive(Deserialize)]
struct JsepJson {
    #[serde(rename = "type")]
    kind: String,
    sdp: String,
}

#[derive(Deserialize)]
struct ErrorJson {
    code: i64,
    #[serde(default)]
    reason: String,
}

/// The mid of the first video m-section of an SDP.
fn video_mid(sdp: &str) -> Option<String> {
    let mut in_video = false;
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            in_video = m.starts_with("video ");
        } else if in_video && let Some(mid) = line.strip_prefix("a=mid:") {
            return Some(mid.trim().to_owned());
        }
    }
    None
}

fn media_kind(s: &str) -> MediaKind {
    match s {
        "audio" => MediaKind::Audio,
        "video" => MediaKind::Video,
        _ => MediaKind::Other,
    }
}

/// Parses one Janus message (one element of a long poll's array, or the
/// body of a reply).
pub fn parse_message(value: Value) -> Result<JanusMessage, Error> {
    let env: Envelope =
        serde_json::from_value(value).map_err(|e| Error::Malformed(format!("envelope: {e}")))?;
    let jsep = match env.jsep {
        Some(j) => Some(SessionDescription {
            kind: match j.kind.as_str() {
                "offer" => SdpKind::Offer,
                "answer" => SdpKind::Answer,
                other => return Err(Error::Malformed(format!("jsep type {other:?}"))),
            },
            sdp: j.sdp,
        }),
        None => None,
    };
    let kind = match env.janus.as_str() {
        "success" | "event" => match (env.plugindata, env.data) {
            (Some(p), _) => JanusKind::Plugin(Box::new(
                serde_json::from_value(p.data)
                    .map_err(|e| Error::Malformed(format!("videoroom data: {e}")))?,
            )),
            (None, Some(d)) => match d.get("id").and_then(Value::as_u64) {
                Some(id) => JanusKind::Created(id),
                None => JanusKind::Success,
            },
            (None, None) => JanusKind::Success,
        },
        "ack" => JanusKind::Ack,
        "keepalive" => JanusKind::Keepalive,
        "error" => {
            let e = env
                .error
                .ok_or_else(|| Error::Malformed("error without body".into()))?;
            JanusKind::Error {
                code: e.code,
                reason: e.reason,
            }
        }
        "webrtcup" => JanusKind::WebrtcUp,
        "media" => JanusKind::Media {
            mid: env.mid,
            kind: media_kind(env.kind.as_deref().unwrap_or("")),
            receiving: env.receiving.unwrap_or(false),
        },
        "slowlink" => JanusKind::SlowLink {
            uplink: env.uplink.unwrap_or(false),
        },
        "hangup" => JanusKind::HangUp {
            reason: env.reason.unwrap_or_default(),
        },
        "detached" => JanusKind::Detached,
        "timeout" => JanusKind::Timeout,
        other => JanusKind::Other(other.to_owned()),
    };
    Ok(JanusMessage {
        kind,
        transaction: env.transaction,
        sender: env.sender,
        jsep,
    })
}

/// Parses a long poll's body: one message or an array of them. Elements that
/// do not parse are returned as errors in place, so one bad message does not
/// hide the others.
pub fn parse_poll_body(body: &[u8]) -> Result<Vec<Result<JanusMessage, Error>>, Error> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| Error::Malformed(format!("json: {e}")))?;
    Ok(match value {
        Value::Array(items) => items.into_iter().map(parse_message).collect(),
        other => vec![parse_message(other)],
    })
}

impl From<PublisherJson> for RemotePublisher {
    fn from(p: PublisherJson) -> Self {
        RemotePublisher {
            id: PublisherId(p.id),
            display: p.display,
            streams: p
                .streams
                .into_iter()
                .map(|s| RemoteStream {
                    mid: s.mid.unwrap_or_default(),
                    kind: media_kind(&s.kind),
                    codec: s.codec.map(|c| c.to_ascii_lowercase()),
                    simulcast: s.simulcast,
                    disabled: s.disabled,
                    description: s.description,
                })
                .collect(),
            talking: p.talking,
        }
    }
}

fn id_list(reply: &Value, key: &str) -> Vec<u64> {
    reply
        .get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// What the server lost of a handle's incoming media (RTCP contexts of
/// every stream and simulcast layer), from an admin API `handle_info`.
pub fn lost_by_server(handle_info: &Value) -> u64 {
    let Some(media) = handle_info
        .pointer("/info/webrtc/media")
        .and_then(Value::as_object)
    else {
        return 0;
    };
    media
        .values()
        .filter_map(|m| m.get("rtcp").and_then(Value::as_object))
        .flat_map(|r| r.values())
        .filter_map(|c| c.get("lost").and_then(Value::as_u64))
        .sum()
}

/// The simulcast layers of `publisher`'s video that one admin API
/// `handle_info` reply shows forwarded to its subscriber: the substream it
/// gets and the one it asked for (a layer switch waits for that layer's
/// packets). Anything unexpected counts as nothing forwarded.
pub fn layers_forwarded(handle_info: &Value, publisher: u64) -> Vec<SimulcastLayer> {
    let mut out = Vec::new();
    let Some(ps) = handle_info.pointer("/info/plugin_specific") else {
        return out;
    };
    if ps.get("type").and_then(Value::as_str) != Some("subscriber")
        || ps.get("paused").and_then(Value::as_bool) == Some(true)
    {
        return out;
    }
    let streams = ps.get("streams").and_then(Value::as_array);
    for s in streams.into_iter().flatten() {
        if s.get("type").and_then(Value::as_str) != Some("video")
            || s.get("feed_id").and_then(Value::as_u64) != Some(publisher)
            || s.get("send").and_then(Value::as_bool) == Some(false)
        {
            continue;
        }
        let Some(sim) = s.get("simulcast") else {
            continue;
        };
        for key in ["substream", "substream-target"] {
            if let Some(l) = sim
                .get(key)
                .and_then(Value::as_i64)
                .and_then(layer_of_substream)
                && !out.contains(&l)
            {
                out.push(l);
            }
        }
    }
    out
}

/// Janus numbers substreams from the lowest quality (0) up.
pub fn substream_of(layer: SimulcastLayer) -> i64 {
    match layer {
        SimulcastLayer::Low180 => 0,
        SimulcastLayer::Sd360 => 1,
        SimulcastLayer::Hd720 => 2,
    }
}

pub fn layer_of_substream(substream: i64) -> Option<SimulcastLayer> {
    match substream {
        0 => Some(SimulcastLayer::Low180),
        1 => Some(SimulcastLayer::Sd360),
        2 => Some(SimulcastLayer::Hd720),
        _ => None,
    }
}

/// Which of our handles a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleRole {
    Publisher,
    Subscription(SubscriptionId),
}

/// Turns an unasked message into meeting events. `role` is what the
/// message's `sender` handle is to us (None: not ours, or no sender).
pub fn translate(msg: &JanusMessage, role: Option<HandleRole>) -> Vec<MeetingEvent> {
    let subscription = match role {
        Some(HandleRole::Subscription(s)) => Some(s),
        _ => None,
    };
    match &msg.kind {
        JanusKind::Plugin(d) => translate_videoroom(d, subscription),
        JanusKind::WebrtcUp => vec![MeetingEvent::MediaUp { subscription }],
        JanusKind::Media {
            mid,
            kind,
            receiving,
        } if role == Some(HandleRole::Publisher) => vec![MeetingEvent::MediaReceiving {
            mid: mid.clone(),
            kind: *kind,
            receiving: *receiving,
        }],
        JanusKind::SlowLink { uplink } => vec![MeetingEvent::SlowLink {
            subscription,
            uplink: *uplink,
        }],
        JanusKind::HangUp { reason } => vec![MeetingEvent::HungUp {
            subscription,
            reason: reason.clone(),
        }],
        JanusKind::Timeout => vec![MeetingEvent::SessionLost],
        _ => vec![],
    }
}

fn translate_videoroom(
    d: &VideoRoomData,
    subscription: Option<SubscriptionId>,
) -> Vec<MeetingEvent> {
    let mut out = Vec::new();
    match d.videoroom.as_str() {
        "talking" | "stopped-talking" => {
            if let Some(id) = d.id {
                out.push(MeetingEvent::Talking {
                    publisher: PublisherId(id),
                    talking: d.videoroom == "talking",
                });
            }
        }
        "destroyed" => out.push(MeetingEvent::RoomDestroyed),
        "event" => {
            if let Some(p) = &d.publishers
                && !p.is_empty()
            {
                out.push(MeetingEvent::PublishersUpdated(
                    p.iter().cloned().map(RemotePublisher::from).collect(),
                ));
            }
            for gone in [&d.leaving, &d.unpublished].into_iter().flatten() {
                if let Some(id) = gone.as_u64() {
                    out.push(MeetingEvent::PublisherLeft(PublisherId(id)));
                }
            }
            if let (Some(sub), Some(n)) = (subscription, d.substream)
                && let Some(layer) = layer_of_substream(n)
            {
                out.push(MeetingEvent::LayerSwitched {
                    subscription: sub,
                    mid: d.mid.clone(),
                    layer,
                });
            }
        }
        _ => {}
    }
    out
}

// ---------------------------------------------------------------------------
// The driver: HTTP requests and the long poll.

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn http_request(
    client: &HttpClient,
    method: hyper::Method,
    url: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Value, Error> {
    let body = match body {
        Some(v) => Full::new(Bytes::from(v.to_string())),
        None => Full::new(Bytes::new()),
    };
    let request = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(body)
        .map_err(|e| Error::Http(format!("request: {e}")))?;
    let fut = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| Error::Http(e.to_string()))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| Error::Http(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(Error::Http(format!("status {status}")));
        }
        serde_json::from_slice::<Value>(&bytes).map_err(|e| Error::Malformed(format!("json: {e}")))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| Error::Timeout("meeting server reply"))?
}

/// The long poll: runs until the session is gone or the connector dropped.
async fn long_poll(
    client: HttpClient,
    url: String,
    tx: mpsc::UnboundedSender<Result<JanusMessage, Error>>,
) {
    let mut failures = 0u32;
    loop {
        let result = http_request(
            &client,
            hyper::Method::GET,
            &format!("{url}?maxev=10"),
            None,
            LONG_POLL_TIMEOUT,
        )
        .await;
        let value = match result {
            Ok(v) => {
                failures = 0;
                v
            }
            Err(e) => {
                failures += 1;
                warn!(error = %e, failures, "janus long poll failed");
                if failures >= 5 {
                    let _ = tx.send(Err(Error::SessionLost));
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let items = match value {
            Value::Array(items) => items,
            other => vec![other],
        };
        for item in items {
            let msg = parse_message(item);
            // A session Janus no longer knows: stop polling.
            let lost = matches!(
                &msg,
                Ok(JanusMessage {
                    kind: JanusKind::Error { code: 458, .. },
                    ..
                })
            );
            if tx.send(msg).is_err() {
                return;
            }
            if lost {
                let _ = tx.send(Err(Error::SessionLost));
                return;
            }
        }
    }
}

struct Subscription {
    handle: u64,
}

/// A Janus VideoRoom participant: one session, one publisher handle, one
/// handle per subscription.
pub struct JanusConnector {
    config: JanusConfig,
    http: HttpClient,
    session: Option<u64>,
    publisher_handle: Option<u64>,
    room: Option<RoomId>,
    private_id: Option<u64>,
    /// Our publisher id in the room, once joined.
    own_id: Option<u64>,
    subscriptions: HashMap<SubscriptionId, Subscription>,
    next_subscription: u64,
    next_transaction: u64,
    /// Messages from the long poll not yet handed out.
    backlog: VecDeque<JanusMessage>,
    /// Events translated but not yet returned by `next_event`.
    pending_events: VecDeque<MeetingEvent>,
    poll_rx: Option<mpsc::UnboundedReceiver<Result<JanusMessage, Error>>>,
    poller: Option<JoinHandle<()>>,
    counters: JanusCounters,
    /// Sent with our publication as its video stream's description.
    video_description: Option<String>,
}

impl JanusConnector {
    pub fn new(config: JanusConfig) -> Self {
        let http = Client::builder(TokioExecutor::new()).build_http();
        JanusConnector {
            config,
            http,
            session: None,
            publisher_handle: None,
            room: None,
            private_id: None,
            own_id: None,
            subscriptions: HashMap::new(),
            next_subscription: 1,
            next_transaction: 1,
            backlog: VecDeque::new(),
            pending_events: VecDeque::new(),
            poll_rx: None,
            poller: None,
            counters: JanusCounters::default(),
            video_description: None,
        }
    }

    /// Describes the video of our next publication to the room (Janus'
    /// `descriptions`), e.g. `"screen"` for a presentation: clients tell a
    /// screen share from a camera by it.
    pub fn set_video_description(&mut self, description: Option<String>) {
        self.video_description = description;
    }

    pub fn counters(&self) -> JanusCounters {
        self.counters
    }

    /// Our Janus session id, once connected (for the admin API in tests
    /// and for logs).
    pub fn session_id(&self) -> Option<u64> {
        self.session
    }

    pub fn publisher_handle_id(&self) -> Option<u64> {
        self.publisher_handle
    }

    fn transaction(&mut self) -> String {
        self.next_transaction += 1;
        format!("t{}", self.next_transaction)
    }

    async fn post(&mut self, path: &str, mut body: Value) -> Result<(String, JanusMessage), Error> {
        let transaction = self.transaction();
        body["transaction"] = Value::String(transaction.clone());
        self.counters.requests += 1;
        let url = format!("{}{}", self.config.server_url, path);
        let reply = http_request(
            &self.http,
            hyper::Method::POST,
            &url,
            Some(&body),
            REQUEST_TIMEOUT,
        )
        .await?;
        let msg = parse_message(reply).inspect_err(|_| self.counters.malformed += 1)?;
        if let JanusKind::Error { code, reason } = &msg.kind {
            if *code == 458 {
                return Err(Error::SessionLost);
            }
            return Err(Error::Server {
                code: *code,
                reason: reason.clone(),
            });
        }
        Ok((transaction, msg))
    }

    /// A request to the admin API: `path` under its base.
    async fn admin_post(&mut self, path: &str, janus: &str) -> Result<Value, Error> {
        let transaction = self.transaction();
        let (Some(base), Some(secret)) = (&self.config.admin_url, &self.config.admin_secret) else {
            return Err(Error::Misuse("no admin API configured"));
        };
        let url = format!("{}{}", base.trim_end_matches('/'), path);
        let body = json!({"janus": janus, "transaction": transaction, "admin_secret": secret});
        self.counters.requests += 1;
        let reply = http_request(
            &self.http,
            hyper::Method::POST,
            &url,
            Some(&body),
            REQUEST_TIMEOUT,
        )
        .await?;
        if reply.get("janus").and_then(Value::as_str) == Some("error") {
            let reason = reply
                .pointer("/error/reason")
                .and_then(Value::as_str)
                .unwrap_or("admin API error");
            return Err(Error::Server {
                code: reply
                    .pointer("/error/code")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
                reason: reason.to_owned(),
            });
        }
        Ok(reply)
    }

    async fn connect(&mut self) -> Result<u64, Error> {
        if let Some(s) = self.session {
            return Ok(s);
        }
        let (_, msg) = self.post("", json!({"janus": "create"})).await?;
        let JanusKind::Created(session) = msg.kind else {
            return Err(Error::Malformed("create: no session id".into()));
        };
        self.session = Some(session);
        let (tx, rx) = mpsc::unbounded_channel();
        self.poll_rx = Some(rx);
        self.poller = Some(tokio::spawn(long_poll(
            self.http.clone(),
            format!("{}/{}", self.config.server_url, session),
            tx,
        )));
        debug!(session, "janus session created");
        Ok(session)
    }

    async fn attach(&mut self) -> Result<u64, Error> {
        let session = self.connect().await?;
        let (_, msg) = self
            .post(
                &format!("/{session}"),
                json!({"janus": "attach", "plugin": PLUGIN}),
            )
            .await?;
        match msg.kind {
            JanusKind::Created(handle) => Ok(handle),
            _ => Err(Error::Malformed("attach: no handle id".into())),
        }
    }

    /// A synchronous plugin request: the reply is in the HTTP response.
    async fn request_sync(&mut self, handle: u64, body: Value) -> Result<VideoRoomData, Error> {
        let session = self.session.ok_or(Error::Misuse("no session"))?;
        let (_, msg) = self
            .post(
                &format!("/{session}/{handle}"),
                json!({"janus": "message", "body": body}),
            )
            .await?;
        match msg.kind {
            JanusKind::Plugin(d) => check_plugin(*d),
            _ => Err(Error::Malformed("expected plugin data".into())),
        }
    }

    /// An asynchronous plugin request: `ack` now, the reply on the poll.
    async fn request_async(
        &mut self,
        handle: u64,
        body: Value,
        jsep: Option<&SessionDescription>,
    ) -> Result<(VideoRoomData, Option<SessionDescription>), Error> {
        let session = self.session.ok_or(Error::Misuse("no session"))?;
        let mut request = json!({"janus": "message", "body": body});
        if let Some(j) = jsep {
            request["jsep"] = json!({
                "type": match j.kind { SdpKind::Offer => "offer", SdpKind::Answer => "answer" },
                "sdp": j.sdp,
            });
        }
        let (transaction, msg) = self.post(&format!("/{session}/{handle}"), request).await?;
        match msg.kind {
            JanusKind::Plugin(d) => return Ok((check_plugin(*d)?, msg.jsep)),
            JanusKind::Ack => {}
            _ => return Err(Error::Malformed("expected ack".into())),
        }
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        loop {
            let rx = self.poll_rx.as_mut().ok_or(Error::SessionLost)?;
            let next = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .map_err(|_| Error::Timeout("meeting server event"))?;
            match next {
                None | Some(Err(Error::SessionLost)) => return Err(Error::SessionLost),
                Some(Err(e)) => {
                    self.counters.malformed += 1;
                    warn!(error = %e, "janus: dropped malformed message");
                }
                Some(Ok(m)) if m.transaction.as_deref() == Some(transaction.as_str()) => {
                    match m.kind {
                        JanusKind::Plugin(d) => return Ok((check_plugin(*d)?, m.jsep)),
                        JanusKind::Error { code, reason } => {
                            return Err(Error::Server { code, reason });
                        }
                        _ => self.backlog.push_back(m),
                    }
                }
                Some(Ok(m)) => self.backlog.push_back(m),
            }
        }
    }

    fn role_of(&self, sender: Option<u64>) -> Option<HandleRole> {
        let sender = sender?;
        if Some(sender) == self.publisher_handle {
            return Some(HandleRole::Publisher);
        }
        self.subscriptions
            .iter()
            .find(|(_, s)| s.handle == sender)
            .map(|(id, _)| HandleRole::Subscription(*id))
    }

    fn subscription_handle(&self, id: SubscriptionId) -> Result<u64, Error> {
        self.subscriptions
            .get(&id)
            .map(|s| s.handle)
            .ok_or(Error::UnknownSubscription(id))
    }

    async fn ensure_room(&mut self, handle: u64, room: RoomId) -> Result<(), Error> {
        let exists = self
            .request_sync(handle, json!({"request": "exists", "room": room.0}))
            .await?
            .exists
            .unwrap_or(false);
        if exists || !self.config.create_room {
            return Ok(());
        }
        let mut create = json!({
            "request": "create",
            "room": room.0,
            "publishers": self.config.room_publishers,
            // The bridge decodes only H.264.
            "videocodec": "h264",
            "audiocodec": "opus",
            "bitrate": self.config.room_bitrate_bps,
            "audiolevel_event": true,
            // Janus asks every publisher for a keyframe this often (s): a
            // decoder that lost its references (or joined late) recovers
            // even if a PLI gets lost on the way.
            "fir_freq": 2,
        });
        if let Some(key) = &self.config.admin_key {
            create["admin_key"] = Value::String(key.clone());
        }
        match self.request_sync(handle, create).await {
            Ok(_) => Ok(()),
            // Someone else created it meanwhile.
            Err(Error::Meeting {
                code: ERROR_ROOM_EXISTS,
                ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn check_plugin(d: VideoRoomData) -> Result<VideoRoomData, Error> {
    match d.error_code {
        Some(code) => Err(Error::Meeting {
            code,
            reason: d.error.unwrap_or_default(),
        }),
        None => Ok(d),
    }
}

#[async_trait]
impl MeetingConnector for JanusConnector {
    async fn join(&mut self, room: RoomId, display: &str) -> Result<Joined, Error> {
        if self.publisher_handle.is_some() {
            return Err(Error::Misuse("already joined"));
        }
        let handle = self.attach().await?;
        self.publisher_handle = Some(handle);
        self.ensure_room(handle, room).await?;
        let (d, _) = self
            .request_async(
                handle,
                json!({"request": "join", "ptype": "publisher", "room": room.0, "display": display}),
                None,
            )
            .await?;
        if d.videoroom != "joined" {
            return Err(Error::Malformed(format!("join: got {:?}", d.videoroom)));
        }
        let id =
            d.id.ok_or_else(|| Error::Malformed("joined without id".into()))?;
        self.room = Some(room);
        self.private_id = d.private_id;
        self.own_id = Some(id);
        Ok(Joined {
            room,
            id: PublisherId(id),
            publishers: d
                .publishers
                .unwrap_or_default()
                .into_iter()
                .map(RemotePublisher::from)
                .collect(),
        })
    }

    async fn publish(&mut self, offer: SessionDescription) -> Result<SessionDescription, Error> {
        let handle = self
            .publisher_handle
            .ok_or(Error::Misuse("publish before join"))?;
        if offer.kind != SdpKind::Offer {
            return Err(Error::Misuse("publish takes an offer"));
        }
        let mut body = json!({"request": "publish"});
        if let (Some(d), Some(mid)) = (&self.video_description, video_mid(&offer.sdp)) {
            body["descriptions"] = json!([{"mid": mid, "description": d}]);
        }
        let (_, jsep) = self.request_async(handle, body, Some(&offer)).await?;
        match jsep {
            Some(answer) if answer.kind == SdpKind::Answer => Ok(answer),
            _ => Err(Error::Malformed("publish: no SDP answer".into())),
        }
    }

    async fn subscribe(&mut self, streams: &[StreamRequest]) -> Result<SubscriptionOffer, Error> {
        let room = self.room.ok_or(Error::Misuse("subscribe before join"))?;
        if streams.is_empty() {
            return Err(Error::Misuse("subscribe to nothing"));
        }
        let handle = self.attach().await?;
        let id = SubscriptionId(self.next_subscription);
        self.next_subscription += 1;
        self.subscriptions.insert(id, Subscription { handle });
        let list: Vec<Value> = streams
            .iter()
            .map(|s| match &s.mid {
                Some(mid) => json!({"feed": s.publisher.0, "mid": mid}),
                None => json!({"feed": s.publisher.0}),
            })
            .collect();
        let mut body =
            json!({"request": "join", "ptype": "subscriber", "room": room.0, "streams": list});
        if let Some(p) = self.private_id {
            body["private_id"] = json!(p);
        }
        let result = self.request_async(handle, body, None).await;
        let (d, jsep) = match result {
            Ok(r) => r,
            Err(e) => {
                self.subscriptions.remove(&id);
                return Err(e);
            }
        };
        let offer = match jsep {
            Some(o) if o.kind == SdpKind::Offer => o,
            _ => return Err(Error::Malformed("subscribe: no SDP offer".into())),
        };
        let streams = d
            .streams
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| {
                Some(SubscribedStream {
                    mid: s.mid?,
                    kind: media_kind(&s.kind),
                    publisher: PublisherId(s.feed_id?),
                    publisher_mid: s.feed_mid,
                    publisher_display: s.feed_display,
                    codec: s.codec.map(|c| c.to_ascii_lowercase()),
                })
            })
            .collect();
        Ok(SubscriptionOffer { id, offer, streams })
    }

    async fn start(
        &mut self,
        subscription: SubscriptionId,
        answer: SessionDescription,
    ) -> Result<(), Error> {
        let handle = self.subscription_handle(subscription)?;
        if answer.kind != SdpKind::Answer {
            return Err(Error::Misuse("start takes an answer"));
        }
        self.request_async(handle, json!({"request": "start"}), Some(&answer))
            .await?;
        Ok(())
    }

    async fn switch_layer(
        &mut self,
        subscription: SubscriptionId,
        mid: &str,
        layer: SimulcastLayer,
    ) -> Result<(), Error> {
        let handle = self.subscription_handle(subscription)?;
        self.request_async(
            handle,
            json!({"request": "configure", "streams": [{"mid": mid, "substream": substream_of(layer)}]}),
            None,
        )
        .await?;
        Ok(())
    }

    async fn rename(&mut self, display: &str) -> Result<(), Error> {
        let handle = self
            .publisher_handle
            .ok_or(Error::Misuse("rename before join"))?;
        self.request_async(
            handle,
            json!({"request": "configure", "display": display}),
            None,
        )
        .await?;
        Ok(())
    }

    async fn set_stream_sending(
        &mut self,
        subscription: SubscriptionId,
        mid: &str,
        send: bool,
    ) -> Result<(), Error> {
        let handle = self.subscription_handle(subscription)?;
        self.request_async(
            handle,
            json!({"request": "configure", "streams": [{"mid": mid, "send": send}]}),
            None,
        )
        .await?;
        Ok(())
    }

    /// Walks the admin API's sessions and handles for subscribers of our
    /// video: their current and target substreams are the layers in use.
    async fn server_view(&mut self) -> Result<Option<ServerView>, Error> {
        let (Some(own), Some(own_session), Some(own_handle), true) = (
            self.own_id,
            self.session,
            self.publisher_handle,
            self.config.admin_url.is_some(),
        ) else {
            return Ok(None);
        };
        let ours = self
            .admin_post(&format!("/{own_session}/{own_handle}"), "handle_info")
            .await?;
        let lost = lost_by_server(&ours);
        let sessions = self.admin_post("", "list_sessions").await?;
        let ids: Vec<u64> = id_list(&sessions, "sessions");
        let mut layers = Vec::new();
        for session in ids {
            if Some(session) == self.session {
                continue;
            }
            // A session may end between the two requests.
            let Ok(handles) = self
                .admin_post(&format!("/{session}"), "list_handles")
                .await
            else {
                continue;
            };
            for handle in id_list(&handles, "handles") {
                let Ok(info) = self
                    .admin_post(&format!("/{session}/{handle}"), "handle_info")
                    .await
                else {
                    continue;
                };
                for l in layers_forwarded(&info, own) {
                    if !layers.contains(&l) {
                        layers.push(l);
                    }
                }
            }
        }
        Ok(Some(ServerView {
            forwarded: layers,
            lost,
        }))
    }

    async fn unsubscribe(&mut self, subscription: SubscriptionId) -> Result<(), Error> {
        let handle = self.subscription_handle(subscription)?;
        let session = self.session.ok_or(Error::Misuse("no session"))?;
        self.subscriptions.remove(&subscription);
        self.post(&format!("/{session}/{handle}"), json!({"janus": "detach"}))
            .await?;
        Ok(())
    }

    async fn keepalive(&mut self) -> Result<(), Error> {
        let session = self.session.ok_or(Error::Misuse("no session"))?;
        self.post(&format!("/{session}"), json!({"janus": "keepalive"}))
            .await?;
        Ok(())
    }

    async fn next_event(&mut self) -> Option<MeetingEvent> {
        loop {
            if let Some(e) = self.pending_events.pop_front() {
                return Some(e);
            }
            let msg = match self.backlog.pop_front() {
                Some(m) => m,
                None => match self.poll_rx.as_mut()?.recv().await {
                    None | Some(Err(Error::SessionLost)) => {
                        self.poll_rx = None;
                        return Some(MeetingEvent::SessionLost);
                    }
                    Some(Err(e)) => {
                        self.counters.malformed += 1;
                        warn!(error = %e, "janus: dropped malformed message");
                        continue;
                    }
                    Some(Ok(m)) => m,
                },
            };
            self.counters.events += 1;
            let role = self.role_of(msg.sender);
            self.pending_events.extend(translate(&msg, role));
        }
    }

    async fn leave(&mut self) -> Result<(), Error> {
        let Some(session) = self.session else {
            return Ok(());
        };
        if let Some(handle) = self.publisher_handle.take() {
            // Best effort: the session destroy below cleans up anyway.
            let _ = self
                .post(
                    &format!("/{session}/{handle}"),
                    json!({"janus": "message", "body": {"request": "leave"}}),
                )
                .await;
        }
        let result = self
            .post(&format!("/{session}"), json!({"janus": "destroy"}))
            .await;
        self.session = None;
        self.subscriptions.clear();
        if let Some(p) = self.poller.take() {
            p.abort();
        }
        self.poll_rx = None;
        result.map(|_| ())
    }
}

impl Drop for JanusConnector {
    fn drop(&mut self) {
        if let Some(p) = self.poller.take() {
            p.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> JanusMessage {
        parse_message(serde_json::from_str(s).expect("test json")).expect("parses")
    }

    #[test]
    fn parses_create_success() {
        let m = parse(r#"{"janus":"success","transaction":"t1","data":{"id":8412345}}"#);
        assert_eq!(m.kind, JanusKind::Created(8412345));
        assert_eq!(m.transaction.as_deref(), Some("t1"));
    }

    #[test]
    fn parses_joined_with_publishers() {
        let m = parse(
            r#"{"janus":"event","session_id":1,"sender":2,"transaction":"t3",
            "plugindata":{"plugin":"janus.plugin.videoroom","data":{
              "videoroom":"joined","room":4711,"description":"x","id":77,"private_id":99,
              "publishers":[{"id":5,"display":"Alice","talking":false,
                 "streams":[{"type":"audio","mindex":0,"mid":"0","codec":"opus"},
                            {"type":"video","mindex":1,"mid":"1","codec":"h264","simulcast":true}]}]}}}"#,
        );
        let JanusKind::Plugin(d) = &m.kind else {
            panic!("not plugin: {m:?}")
        };
        assert_eq!(d.videoroom, "joined");
        assert_eq!(d.id, Some(77));
        assert_eq!(d.private_id, Some(99));
        let p: RemotePublisher = d.publishers.clone().expect("publishers")[0].clone().into();
        assert_eq!(p.id, PublisherId(5));
        assert_eq!(p.display.as_deref(), Some("Alice"));
        assert_eq!(p.streams[1].kind, MediaKind::Video);
        assert!(p.streams[1].simulcast);
        assert_eq!(p.streams[1].codec.as_deref(), Some("h264"));
    }

    #[test]
    fn a_video_stream_described_as_screen_is_a_screen_share() {
        let m = parse(
            r#"{"janus":"event","sender":2,"plugindata":{"plugin":"janus.plugin.videoroom","data":{
              "videoroom":"event","room":4711,"publishers":[
                {"id":6,"display":"Bob-screen","streams":[{"type":"video","mid":"0","codec":"h264","description":"screen"}]},
                {"id":7,"display":"Carol","streams":[{"type":"video","mid":"1","codec":"h264","description":"camera"}]},
                {"id":8,"display":"Dave","streams":[{"type":"video","mid":"1","codec":"h264","description":"screen","disabled":true}]}]}}}"#,
        );
        let JanusKind::Plugin(d) = &m.kind else {
            panic!("not plugin: {m:?}")
        };
        let ps: Vec<RemotePublisher> = d
            .publishers
            .clone()
            .expect("publishers")
            .into_iter()
            .map(RemotePublisher::from)
            .collect();
        assert_eq!(ps[0].streams[0].description.as_deref(), Some("screen"));
        assert!(ps[0].is_screen_share());
        assert!(!ps[1].is_screen_share(), "a camera");
        assert!(!ps[2].is_screen_share(), "a share that stopped");
    }

    #[test]
    fn the_video_mid_of_an_offer() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n";
        assert_eq!(video_mid(sdp).as_deref(), Some("1"));
        assert_eq!(video_mid("v=0\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n"), None);
    }

    #[test]
    fn parses_publish_answer_jsep() {
        let m = parse(
            r#"{"janus":"event","sender":2,"transaction":"t4",
            "plugindata":{"plugin":"janus.plugin.videoroom","data":{"videoroom":"event","room":4711,"configured":"ok"}},
            "jsep":{"type":"answer","sdp":"v=0\r\n"}}"#,
        );
        assert_eq!(m.jsep, Some(SessionDescription::answer("v=0\r\n")));
    }

    #[test]
    fn translates_unsolicited_events() {
        let role = Some(HandleRole::Publisher);
        let joined = parse(
            r#"{"janus":"event","sender":2,"plugindata":{"plugin":"p","data":{"videoroom":"event","room":4711,
              "publishers":[{"id":6,"display":"Bob","streams":[]}]}}}"#,
        );
        assert_eq!(
            translate(&joined, role),
            vec![MeetingEvent::PublishersUpdated(vec![RemotePublisher {
                id: PublisherId(6),
                display: Some("Bob".into()),
                streams: vec![],
                talking: None
            }])]
        );
        let left = parse(
            r#"{"janus":"event","sender":2,"plugindata":{"plugin":"p","data":{"videoroom":"event","room":4711,"leaving":6}}}"#,
        );
        assert_eq!(
            translate(&left, role),
            vec![MeetingEvent::PublisherLeft(PublisherId(6))]
        );
        let us_leaving = parse(
            r#"{"janus":"event","sender":2,"plugindata":{"plugin":"p","data":{"videoroom":"event","leaving":"ok"}}}"#,
        );
        assert_eq!(translate(&us_leaving, role), vec![]);
        let talking = parse(
            r#"{"janus":"event","sender":2,"plugindata":{"plugin":"p","data":{"videoroom":"talking","room":4711,"id":6,"audio-level-dBov-avg":-40.5}}}"#,
        );
        assert_eq!(
            translate(&talking, role),
            vec![MeetingEvent::Talking {
                publisher: PublisherId(6),
                talking: true
            }]
        );
        let media = parse(
            r#"{"janus":"media","session_id":1,"sender":2,"mid":"1","type":"video","receiving":true}"#,
        );
        assert_eq!(
            translate(&media, role),
            vec![MeetingEvent::MediaReceiving {
                mid: Some("1".into()),
                kind: MediaKind::Video,
                receiving: true
            }]
        );
        let sub = Some(HandleRole::Subscription(SubscriptionId(3)));
        let switched = parse(
            r#"{"janus":"event","sender":9,"plugindata":{"plugin":"p","data":{"videoroom":"event","room":4711,"mid":"1","substream":0}}}"#,
        );
        assert_eq!(
            translate(&switched, sub),
            vec![MeetingEvent::LayerSwitched {
                subscription: SubscriptionId(3),
                mid: Some("1".into()),
                layer: SimulcastLayer::Low180
            }]
        );
        let hangup = parse(r#"{"janus":"hangup","sender":9,"reason":"DTLS alert"}"#);
        assert_eq!(
            translate(&hangup, sub),
            vec![MeetingEvent::HungUp {
                subscription: Some(SubscriptionId(3)),
                reason: "DTLS alert".into()
            }]
        );
    }

    #[test]
    fn plugin_errors_are_typed() {
        let m = parse(
            r#"{"janus":"success","sender":2,"plugindata":{"plugin":"p","data":{"videoroom":"event","error_code":426,"error":"No such room (4711)"}}}"#,
        );
        let JanusKind::Plugin(d) = m.kind else {
            panic!("not plugin")
        };
        assert!(matches!(
            check_plugin(*d),
            Err(Error::Meeting { code: 426, .. })
        ));
        let m = parse(
            r#"{"janus":"error","transaction":"t","error":{"code":458,"reason":"No such session 1"}}"#,
        );
        assert_eq!(
            m.kind,
            JanusKind::Error {
                code: 458,
                reason: "No such session 1".into()
            }
        );
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        for s in [
            "",
            "[",
            "null",
            "42",
            r#"{"janus":5}"#,
            r#"{"janus":"event","plugindata":{"data":{"id":"x"}}}"#,
            r#"{"janus":"event","jsep":{"type":"pranswer","sdp":""}}"#,
            r#"{"janus":"error"}"#,
            r#"[{"janus":"keepalive"},{"nope":1}]"#,
        ] {
            match parse_poll_body(s.as_bytes()) {
                Ok(items) => assert!(items.iter().any(|i| i.is_err()) || s.contains("keepalive")),
                Err(Error::Malformed(_)) => {}
                Err(e) => panic!("unexpected {e}"),
            }
        }
    }

    #[test]
    fn forwarded_layers_come_from_subscribers_of_our_video() {
        let info: Value = serde_json::from_str(
            r#"{"janus":"success","info":{"plugin":"janus.plugin.videoroom","plugin_specific":{
                "type":"subscriber","room":4711,"paused":false,"streams":[
                {"type":"audio","mid":"0","feed_id":7,"send":true},
                {"type":"video","mid":"1","feed_id":7,"send":true,
                 "simulcast":{"substream":2,"substream-target":0,"temporal-layer":2}},
                {"type":"video","mid":"2","feed_id":8,"send":true,
                 "simulcast":{"substream":1,"substream-target":1}}]}}}"#,
        )
        .expect("test JSON");
        let mut got = layers_forwarded(&info, 7);
        got.sort_by_key(|l| substream_of(*l));
        assert_eq!(got, vec![SimulcastLayer::Low180, SimulcastLayer::Hd720]);
        assert!(layers_forwarded(&info, 9).is_empty());
        let mut paused = info.clone();
        paused["info"]["plugin_specific"]["paused"] = Value::Bool(true);
        assert!(layers_forwarded(&paused, 7).is_empty());
        let ours = json!({"info": {"webrtc": {"media": {
            "0": {"type": "audio", "rtcp": {"main": {"lost": 2}}},
            "1": {"type": "video", "rtcp": {"main": {"lost": 1}, "sim1": {"lost": 4}, "sim2": {"lost": "x"}}}}}}});
        assert_eq!(lost_by_server(&ours), 7);
        assert_eq!(
            lost_by_server(&json!({"info": {"webrtc": {"media": [1]}}})),
            0
        );
        for junk in [
            json!(null),
            json!({"info": 3}),
            json!({"info": {"plugin_specific": {"type": "subscriber", "streams": [1, "x", {"simulcast": 5}]}}}),
        ] {
            assert!(layers_forwarded(&junk, 7).is_empty());
        }
    }

    #[test]
    fn substreams_round_trip() {
        for layer in SimulcastLayer::ALL {
            assert_eq!(layer_of_substream(substream_of(layer)), Some(layer));
        }
    }
}
