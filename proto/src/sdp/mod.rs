//! SDP (RFC 8866) and the offer/answer model (RFC 3264) for the bridge's audio.
//!
//! - [`session`]: parse and serialize session descriptions. Pure data, no policy.
//! - [`offer_answer`]: what the bridge accepts and offers ([`SdpSession`] keeps
//!   our `o=` line across a dialog), producing a [`NegotiatedAudio`] for the media path.

pub mod offer_answer;
pub mod session;
pub mod video;

pub use offer_answer::{
    AudioCodec, LocalMedia, NegotiatedAudio, OfferAnswerError, SdpSession, VideoStream,
};
pub use session::{
    Address, Attribute, Bandwidth, Connection, Direction, MediaDescription, MediaKind, Origin,
    RtpMap, SdpError, SessionDescription, Timing,
};
