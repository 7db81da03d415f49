//! The crate's one error type.

use crate::connector::SubscriptionId;

/// Everything that can go wrong in the cascade agent, kept apart by whose
/// fault it is: our caller's (misuse), the meeting server's or the remote
/// peer's (they misbehaved: the agent counts it and moves on or rejoins),
/// or the network's (I/O, timeouts).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller asked for something the current state does not allow.
    #[error("misuse: {0}")]
    Misuse(&'static str),
    #[error("unknown subscription {0:?}")]
    UnknownSubscription(SubscriptionId),
    /// Could not reach the meeting server, or the connection broke.
    #[error("http: {0}")]
    Http(String),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The server sent something we could not parse or did not expect.
    #[error("malformed reply from meeting server: {0}")]
    Malformed(String),
    /// The server's core refused a request (Janus `"janus":"error"`).
    #[error("server error {code}: {reason}")]
    Server { code: i64, reason: String },
    /// The meeting plugin refused a request (VideoRoom `error_code`).
    #[error("meeting error {code}: {reason}")]
    Meeting { code: i64, reason: String },
    /// The signalling session is gone: rejoin.
    #[error("signalling session lost")]
    SessionLost,
    /// The WebRTC stack failed (SDP, ICE, DTLS, RTP writes).
    #[error("webrtc: {0}")]
    WebRtc(String),
    /// Media handed in by the caller could not be sent (e.g. not Annex B).
    #[error("media: {0}")]
    Media(String),
}

impl From<webrtc::error::Error> for Error {
    fn from(e: webrtc::error::Error) -> Self {
        Error::WebRtc(e.to_string())
    }
}
