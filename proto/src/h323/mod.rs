//! H.323-lite call signalling: direct calls without a gatekeeper.
//!
//! - [`tpkt`]: RFC 1006 framing on the TCP connections.
//! - [`q931`]: Q.931 messages as H.225.0 uses them (Setup, Call
//!   Proceeding, Alerting, Connect, Release Complete, Facility), the
//!   User-user element that carries the PER-encoded H.225.0 body.
//!
//! To come: the H.225.0 UUIE in ASN.1 PER (Fast Connect, tunnelled H.245)
//! and the H.239 presentation token.

pub mod q931;
pub mod tpkt;
