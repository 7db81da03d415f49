//! H.323-lite call signalling: direct calls without a gatekeeper.
//!
//! - [`tpkt`]: RFC 1006 framing on the TCP connections.
//! - [`q931`]: Q.931 messages as H.225.0 uses them (Setup, Call
//!   Proceeding, Alerting, Connect, Release Complete, Facility), the
//!   User-user element that carries the PER-encoded H.225.0 body.
//! - [`h225`]: that body, `H323-UserInformation`: the Setup, Call
//!   Proceeding, Alerting, Connect, Information, Release Complete and
//!   Facility UUIEs, Fast Connect proposals (`fastStart`) and tunnelled
//!   H.245 (`h245Tunnelling`, `h245Control`).
//! - [`h245`]: H.245 messages: capability exchange, master/slave
//!   determination, logical channels, commands and indications, and the
//!   H.239 presentation token ([`h245::H239Message`]) and H.241 H.264
//!   capability ([`h245::H264Capability`]) built on its generic messages
//!   and capabilities.
//! - [`per`]: the ASN.1 aligned PER (X.691) reader and writer both are
//!   written with; [`opaque`]: values of types we carry without modelling,
//!   stepped over and re-encoded by the shapes in `schema` (generated from
//!   the ITU-T ASN.1 modules by `proto/tests/h323/gen_schema.py`).
//!
//! How bytes move: TPKT → [`q931::Message::parse`] →
//! [`h225::UserInformation::from_q931`] → each `fastStart` entry through
//! [`h245::OpenLogicalChannel::decode`], each `h245Control` entry through
//! [`h245::Message::decode`]; back out with the `encode` of each and
//! [`h225::UserInformation::to_q931`].
//!
//! Every decoder takes hostile input: it returns a value or a
//! [`per::PerError`] (with a `kind()` for metrics), never panics, and is
//! bounded in what it allocates. What a decoder returns, its encoder writes
//! back to bytes that decode to the same value. The bytes our builders
//! write were checked with Wireshark's dissectors and re-encoded by pycrate
//! (`proto/tests/h323/README.md` says how), and a Setup with Fast Connect
//! from another implementation (Ekiga) decodes and re-encodes byte for
//! byte where PER leaves no choice.
//!
//! Why a hand-written codec rather than an ASN.1 compiler's: PER puts no
//! length around root components, so stepping over what we do not model
//! (a peer's H.261 capability, a gateway's protocol list) needs its exact
//! shape, while the typed side needs only the subset. Generated shapes for
//! the former, hand-written types for the latter, keep both small.
//!
//! What H.323-lite leaves out: gatekeepers (RAS), H.235 security (tokens
//! and crypto tokens are skipped), H.450 supplementary services, H.460
//! features, the separate H.245 connection's procedures beyond what is
//! tunnelled (the messages are the same), and H.245 messages for H.223/
//! H.222 multiplexes, mode requests and conference control (they decode as
//! `Unsupported`, for a FunctionNotSupported answer).

pub mod h225;
pub mod h245;
pub mod opaque;
pub mod per;
pub mod q931;
mod schema;
#[cfg(test)]
mod test_vectors;
pub mod tpkt;
