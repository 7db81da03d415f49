//! The crate's one error type.
//!
//! Kept apart, as elsewhere in Tandem: the peer misbehaving or refusing
//! ([`Error::Rejected`], [`Error::Parse`], [`Error::Timeout`],
//! [`Error::FloorTimeout`]), our own misuse
//! ([`Error::Config`]), and I/O.

use std::time::Duration;

use crate::bfcp::FloorState;

/// Everything that can go wrong in a synthetic room system or in perception.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bytes from the network (or a file) that do not parse.
    #[error("malformed {what}: {detail}")]
    Parse { what: &'static str, detail: String },
    /// The far end answered the INVITE with a final non-2xx response.
    #[error("call rejected: {code} {reason}")]
    Rejected { code: u16, reason: String },
    /// No final response within the transaction timeout.
    #[error("{what} timed out after {after:?}")]
    Timeout { what: &'static str, after: Duration },
    /// The answer chose nothing we offered, or something we cannot use.
    #[error("unusable SDP answer: {0}")]
    Negotiation(String),
    /// libopus refused something.
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
    /// OpenH264 refused something (an encoder setting, or a picture it could
    /// not decode: count that as the peer's, ask for a keyframe, carry on).
    #[error("openh264: {0}")]
    Video(String),
    /// A configuration the caller got wrong.
    #[error("bad configuration: {0}")]
    Config(String),
    /// The call's task is gone (it ended or panicked).
    #[error("call has ended")]
    Ended,
    /// The floor did not reach the state waited for; `detail` is what the
    /// server said (last status, errors) and whether the connection closed.
    #[error("floor is {state:?} after waiting {after:?} for {wanted:?}{detail}")]
    FloorTimeout {
        wanted: FloorState,
        state: FloorState,
        after: Duration,
        detail: String,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    pub(crate) fn parse(what: &'static str, detail: impl Into<String>) -> Self {
        Error::Parse {
            what,
            detail: detail.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
