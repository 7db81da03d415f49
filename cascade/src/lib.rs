//! # tandem-cascade
//!
//! The cascade agent: for a conference bound to a native meeting (a Janus
//! VideoRoom with the same room ID by default), it joins that meeting over
//! WebRTC with ICE through an Edge TURN relay and maps remote speakers and
//! content to virtual participants of the conference. Not built yet (issue 4):
//! this crate holds the binding model the node already understands.
#![forbid(unsafe_code)]

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
