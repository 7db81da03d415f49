//! SDP (RFC 8866) and the offer/answer model (RFC 3264) for the bridge's audio.
//!
//! - [`session`]: parse and serialize session descriptions. Pure data, no policy.
//! - [`bfcp`]: BFCP m-lines (RFC 8856) and content streams (RFC 4796).
//! - [`offer_answer`]: what the bridge accepts and offers ([`SdpSession`] keeps
//!   our `o=` line across a dialog), producing a [`NegotiatedAudio`] for the media path.

pub mod bfcp;
pub mod offer_answer;
pub mod session;
pub mod video;

pub use offer_answer::{
    AudioCodec, CONTENT_LABEL, LocalContent, LocalMedia, NegotiatedAudio, NegotiatedBfcp,
    OfferAnswerError, SdpSession, VideoStream,
};
pub use session::{
    Address, Attribute, Bandwidth, Connection, Direction, MediaDescription, MediaKind, Origin,
    RtpMap, SdpError, SessionDescription, Timing,
};
