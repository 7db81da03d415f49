//! What the agent needs from a native meeting server, whoever makes it.
//!
//! A [`MeetingConnector`] is the signalling half of joining a meeting: it
//! joins a room as a publisher, carries our SDP offer and brings back the
//! answer, tells us who is publishing what (and who is talking), and opens
//! subscriptions to remote streams. Media never goes through it: the
//! WebRTC sessions in [`crate::agent`] carry that. Janus is one
//! implementation ([`crate::janus::JanusConnector`]); nothing Janus-specific
//! (handles, transactions, substream numbers) shows in this module.

use std::fmt;

use async_trait::async_trait;
use tandem_mixer::video::SimulcastLayer;

use crate::error::Error;

/// A room on the meeting server; by default the conference ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(pub u64);

/// A publisher in a room (Janus calls it a feed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublisherId(pub u64);

/// One subscription opened with [`MeetingConnector::subscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u64);

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "room {}", self.0)
    }
}

impl fmt::Display for PublisherId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "publisher {}", self.0)
    }
}

/// Which way an SDP goes in offer/answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpKind {
    Offer,
    Answer,
}

/// An SDP offer or answer as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub kind: SdpKind,
    pub sdp: String,
}

impl SessionDescription {
    pub fn offer(sdp: impl Into<String>) -> Self {
        SessionDescription {
            kind: SdpKind::Offer,
            sdp: sdp.into(),
        }
    }

    pub fn answer(sdp: impl Into<String>) -> Self {
        SessionDescription {
            kind: SdpKind::Answer,
            sdp: sdp.into(),
        }
    }
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
    /// Data channels and kinds we do not use; kept so that mids line up.
    Other,
}

/// One stream a remote publisher sends (one m-line of its offer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteStream {
    /// The stream's mid in the publisher's own session.
    pub mid: String,
    pub kind: MediaKind,
    /// Codec name as the server reports it ("h264", "opus"), lower case.
    pub codec: Option<String>,
    /// The publisher sends this stream as simulcast.
    pub simulcast: bool,
    /// The publisher stopped sending it.
    pub disabled: bool,
    /// The publisher's own description of the stream (Janus'
    /// `descriptions`); `"screen"` marks a screen share.
    pub description: Option<String>,
}

/// A publisher in the room, as last announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePublisher {
    pub id: PublisherId,
    pub display: Option<String>,
    pub streams: Vec<RemoteStream>,
    /// Known only if the room reports talking.
    pub talking: Option<bool>,
}

impl RemotePublisher {
    /// A screen share, by the convention Tandem documents for native
    /// clients: a video stream described as `screen` (Janus'
    /// `descriptions` in the publish request).
    pub fn is_screen_share(&self) -> bool {
        self.streams.iter().any(|s| {
            s.kind == MediaKind::Video
                && !s.disabled
                && s.description
                    .as_deref()
                    .is_some_and(|d| d.trim().eq_ignore_ascii_case("screen"))
        })
    }
}

/// What joining a room gave us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub room: RoomId,
    /// Our own publisher id in the room.
    pub id: PublisherId,
    /// Publishers already in the room.
    pub publishers: Vec<RemotePublisher>,
}

/// One remote stream to receive in a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRequest {
    pub publisher: PublisherId,
    /// One stream of the publisher, or all of them.
    pub mid: Option<String>,
}

/// A stream of a subscription: which remote stream a local mid carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribedStream {
    /// The mid in the subscription's own session (the one RTP arrives on).
    pub mid: String,
    pub kind: MediaKind,
    pub publisher: PublisherId,
    /// The mid in the publisher's session.
    pub publisher_mid: Option<String>,
    pub publisher_display: Option<String>,
    pub codec: Option<String>,
}

/// A subscription offered by the server: the remote SDP offer to answer
/// and the mapping of its mids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionOffer {
    pub id: SubscriptionId,
    pub offer: SessionDescription,
    pub streams: Vec<SubscribedStream>,
}

/// Something that happened in the meeting, unasked.
/// See [`MeetingConnector::server_view`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerView {
    /// Our simulcast layers someone receives (or is switching to).
    pub forwarded: Vec<SimulcastLayer>,
    /// Packets of ours the server found missing, all streams, so far.
    pub lost: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MeetingEvent {
    /// Publishers joined, or changed what they send (full description).
    PublishersUpdated(Vec<RemotePublisher>),
    /// A publisher stopped publishing or left.
    PublisherLeft(PublisherId),
    /// A publisher started or stopped talking.
    Talking {
        publisher: PublisherId,
        talking: bool,
    },
    /// The server's WebRTC session for our publication (`subscription:
    /// None`) or a subscription came up.
    MediaUp {
        subscription: Option<SubscriptionId>,
    },
    /// The server reports it receives (or stopped receiving) a kind of
    /// media from us on a mid.
    MediaReceiving {
        mid: Option<String>,
        kind: MediaKind,
        receiving: bool,
    },
    /// A subscription now forwards a different simulcast layer on `mid`.
    LayerSwitched {
        subscription: SubscriptionId,
        mid: Option<String>,
        layer: SimulcastLayer,
    },
    /// The server reports loss on a peer connection.
    SlowLink {
        subscription: Option<SubscriptionId>,
        uplink: bool,
    },
    /// A peer connection was hung up by the server.
    HungUp {
        subscription: Option<SubscriptionId>,
        reason: String,
    },
    /// The room is gone.
    RoomDestroyed,
    /// The signalling session is gone (timed out or destroyed): rejoin.
    SessionLost,
}

/// The signalling half of joining a native meeting.
///
/// Calls are made by the one task that owns the agent; events come out of
/// [`MeetingConnector::next_event`], which the same task polls in its
/// `select!`.
#[async_trait]
pub trait MeetingConnector: Send {
    /// Joins `room` as a publisher named `display` (not yet sending).
    async fn join(&mut self, room: RoomId, display: &str) -> Result<Joined, Error>;

    /// Publishes: sends our offer, returns the server's answer.
    async fn publish(&mut self, offer: SessionDescription) -> Result<SessionDescription, Error>;

    /// Opens a subscription to `streams`; the server offers.
    async fn subscribe(&mut self, streams: &[StreamRequest]) -> Result<SubscriptionOffer, Error>;

    /// Answers a subscription's offer, which starts its media.
    async fn start(
        &mut self,
        subscription: SubscriptionId,
        answer: SessionDescription,
    ) -> Result<(), Error>;

    /// Asks for another simulcast layer on one stream (`mid` in the
    /// subscription's session) of a subscription.
    async fn switch_layer(
        &mut self,
        subscription: SubscriptionId,
        mid: &str,
        layer: SimulcastLayer,
    ) -> Result<(), Error>;

    /// Stops (`send = false`) or resumes one stream of a subscription: a
    /// native participant's video that no pane shows is not sent at all.
    async fn set_stream_sending(
        &mut self,
        subscription: SubscriptionId,
        mid: &str,
        send: bool,
    ) -> Result<(), Error>;

    /// What the meeting server sees of our publication: which of our
    /// simulcast layers it forwards to someone, what it lost of ours;
    /// `None` when it cannot tell (then every layer is sent).
    async fn server_view(&mut self) -> Result<Option<ServerView>, Error> {
        Ok(None)
    }

    /// Changes the name our publication shows in the meeting.
    async fn rename(&mut self, display: &str) -> Result<(), Error>;

    /// Closes one subscription.
    async fn unsubscribe(&mut self, subscription: SubscriptionId) -> Result<(), Error>;

    /// Keeps the signalling session alive; call every ~25 s.
    async fn keepalive(&mut self) -> Result<(), Error>;

    /// The next unasked event; `None` once the connector is closed.
    async fn next_event(&mut self) -> Option<MeetingEvent>;

    /// Leaves the room and closes the session.
    async fn leave(&mut self) -> Result<(), Error>;
}
