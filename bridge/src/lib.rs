//! # tandem-bridge
//!
//! The MCU node. Room systems call a conference ID over SIP; the node answers,
//! decodes every participant, mixes audio (mix-minus) and sends each one the
//! conference, encoded once per distinct output.
//!
//! ## Layout — follow one packet
//! - [`driver::sip`] reads SIP from UDP/TCP, parses it (malformed → 400 and a
//!   metric) and hands messages to [`signalling`].
//! - [`signalling`] owns the transaction layer (`tandem_proto::sip`) and the
//!   dialogs; an INVITE gets an SDP answer, RTP sockets from
//!   [`driver::net::PortAllocator`], and a leg in its [`conference`].
//! - [`conference`] is one task per conference: RTP in from each leg's socket →
//!   jitter buffer → decoder → `tandem_mixer` → one encode per distinct output →
//!   RTP out to each receiver. It publishes a snapshot for [`http`].
//! - [`video`] is one thread per conference with video: H.264 RTP in →
//!   depacketizer → decoder (only for sources somebody sees) →
//!   `tandem_mixer::video` composes and encodes each distinct view once →
//!   packetized once → RTP out to each receiver of the view, paced at the
//!   view frame rate. The conference task feeds it speaker order and layouts.
//! - [`ivr`]: the door a leg waits at before it is mixed (a room's PIN, the
//!   lobby that asks for a conference ID): prompts out, digits in; signalling
//!   reads rooms from a `tandem_control::RoomDirectory`.
//! - [`http`] serves `/metrics` ([`metrics`]), `/healthz` and `/api`.
//! - [`cascade`]: a conference's agent in its native meeting (Janus), with
//!   internal legs for the meeting's people and the link; [`bindings`] says
//!   which meeting each conference joins and runs the agents.
//! - [`span`]: conferences across nodes: QUIC links (quinn) between a
//!   conference's home and its satellites, as internal legs of each side.
//! - [`turn_relay`] is the embedded TURN relay `tandem up` runs for the
//!   cascade when the site has no Edge of its own.
//! - [`config`]: defaults, TOML file, `TANDEM_<SECTION>_<KEY>` variables.
#![forbid(unsafe_code)]

pub mod bfcp;
pub mod bindings;
pub mod cascade;
pub mod cluster;
pub mod conference;
pub mod config;
pub mod content;
pub mod demo;
pub mod driver;
pub mod h323;
pub mod http;
pub mod ivr;
pub mod metrics;
pub mod node;
pub mod registry;
pub mod rtcp_report;
pub mod signalling;
pub mod span;
pub mod turn_relay;
pub mod video;
pub mod video_decode;
