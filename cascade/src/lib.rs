//! # tandem-cascade
//!
//! The cascade agent: for a conference bound to a native meeting (a Janus
//! VideoRoom with the same room ID by default), it joins that meeting over
//! WebRTC with ICE through an Edge TURN relay, publishes the conference's
//! active speaker as simulcast H.264 plus an Opus mix, and receives the
//! native publishers' audio and video for the bridge to map to virtual
//! participants.
//!
//! ## Layout
//! - [`connector`]: the [`MeetingConnector`] trait (signalling only: join,
//!   publish, learn publishers, subscribe, switch layer, leave) and its
//!   typed events. No server specifics.
//! - [`janus`]: the Janus VideoRoom connector over Janus' HTTP API (a
//!   long-poll task feeding the connector; parsing is plain functions).
//! - [`agent`]: the WebRTC sessions (the `webrtc` crate, the async layer
//!   over the sans-IO `rtc` crates): [`agent::PublishSession`] sends
//!   already-encoded H.264 per simulcast layer and Opus, and
//!   [`agent::SubscribeSession`] hands received RTP to the caller over a
//!   channel. ICE servers, TURN REST credentials and stats live there too.
//!
//! ## Data flow
//! The bridge's conference task encodes once per layer
//! (`tandem_mixer::video::SimulcastEncoder`) and hands each
//! [`tandem_mixer::video::LayerOutput`] to [`agent::PublishSession::send_video`];
//! the session packetizes (RFC 6184, `tandem_proto`) and the webrtc driver
//! task protects and sends it through the TURN relay. Received RTP comes
//! back as [`agent::ReceivedPacket`]s tagged with the subscription's mid,
//! which the [`connector::SubscriptionOffer`] maps to a remote publisher.
#![forbid(unsafe_code)]

pub mod agent;
pub mod connector;
mod error;
pub mod janus;

pub use connector::{MeetingConnector, MeetingEvent, PublisherId, RoomId, SubscriptionId};
pub use error::Error;

/// Where a conference's native meeting lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingBinding {
    /// Base URL of the meeting server's API (Janus HTTP transport).
    pub server_url: String,
    /// Room on that server; by default the conference ID itself.
    pub room: u64,
}

/// ICE candidate policy for the agent's peer connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IcePolicy {
    /// Host, server-reflexive and relay candidates.
    #[default]
    All,
    /// Relay only: as when only the Edge can reach the meeting.
    Relay,
}
