//! # tandem-proto
//!
//! Wire formats and protocol state machines for Tandem. Nothing here does I/O,
//! spawns a task or reads the clock: every input carries `now`, and every output
//! (bytes to send, timers, events) is drained by the caller through `poll_*`.
//!
//! ## Layout
//! - [`sip`]: SIP messages (RFC 3261 §7 grammar), transactions (§17, timers A–K),
//!   dialogs (§12).
//! - [`sdp`]: SDP (RFC 4566) and the offer/answer model (RFC 3264) for audio,
//!   H.264 video and the content channel with its BFCP floor (RFC 4796, 8856).
//! - [`rtp`]: RTP/RTCP packets (RFC 3550), RTCP SR/RR, jitter buffer.
//! - [`bfcp`]: BFCP (RFC 8855) messages and the floor control server of a
//!   conference's content channel.
//! - [`h323`]: H.323-lite call signalling: TPKT, Q.931 as H.225.0 uses it,
//!   aligned PER, the H.225.0 UUIE and H.245 (with the H.239 token).
//! - [`span`]: the frames of a conference spanning nodes over QUIC (media
//!   datagrams by flow, the control stream's hello, roster and keyframe
//!   requests).
#![forbid(unsafe_code)]

pub mod bfcp;
pub mod h323;
pub mod rtp;
pub mod sdp;
pub mod sip;
pub mod span;
