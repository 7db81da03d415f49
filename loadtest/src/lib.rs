//! # tandem-loadtest
//!
//! Synthetic room systems: a SIP UA with RTP carrying real encoded media (a
//! chosen tone, and optionally H.264 video of a chosen colour), which records
//! what it hears and keeps the last picture it sees. It is written
//! independently of the bridge's own SIP and media code so that it cannot
//! share (and hide) a bug: nothing here depends on `tandem-proto` or
//! `tandem-mixer`.
//!
//! ## Layout
//! - [`room_system`]: [`RoomSystem`], one call = one tokio task owning a SIP
//!   socket, an RTP socket and (with video) a video RTP socket.
//!   `RoomSystem::call` returns after 200 OK + ACK; the task then sends a
//!   packet every ptime (and a picture every frame interval) and records what
//!   arrives.
//! - [`sip`]: text SIP parsing/building and [`sip::Uac`], the call's
//!   signalling as a sans-IO state machine (datagrams and time in; datagrams,
//!   events and a timer out).
//! - [`sdp`], [`rtp`], [`codec`] (Opus via libopus, hand-written G.711).
//! - [`bfcp`]: BFCP (RFC 8855) over TCP, our own codec and a sans-IO
//!   floor participant ([`bfcp::FloorClient`]). With
//!   [`CallOptions::content`] a room system offers a presentation channel
//!   (content video `a=content:slides` and BFCP, RFC 4796 / 8856), asks for
//!   the floor ([`RoomSystem::request_floor`]), presents a colour while it
//!   is granted, and sees whatever content the node sends
//!   ([`RoomSystem::content_seen_colour`]).
//! - [`perceive`]: what a person would hear — Goertzel tone levels over
//!   decoded audio or a WAV file ([`Heard`], [`perceive::wav_tones`]).
//! - [`video`]: H.264 video — OpenH264, our own RFC 6184 packetizer and
//!   depacketizer, PLI/FIR, sans-IO sender and receiver cores, replayable
//!   clips for load runs, and what a person would see
//!   ([`Picture::average_colour`], [`RoomSystem::seen_colour`]).
//! - [`node`]: the node seen from outside (HTTP GET, Prometheus text, `/proc`
//!   CPU time), for load reports.
//!
//! A packet's path: `Source` (tone or canned noise) → `codec::Encoder` →
//! `rtp::write_packet` → the node; back: `rtp::parse` → `codec::Decoder` →
//! the leg's bounded recording → `RoomSystem::heard()` → [`Heard`]. A
//! picture's path is in [`video`]'s docs; content takes the same path on
//! its own m-line, sent only while the floor is granted.

pub mod bfcp;
pub mod codec;
pub mod error;
pub mod node;
pub mod perceive;
pub mod room_system;
pub mod rtp;
pub mod sdp;
pub mod sip;
pub mod video;

pub use bfcp::{FloorState, FloorStats};
pub use codec::Codec;
pub use error::{Error, Result};
pub use perceive::Heard;
pub use room_system::{
    CallOptions, ContentConfig, DtmfMethod, MediaStats, PreparedRoomSystem, RoomSystem,
    RoomSystemConfig,
};
pub use sdp::{BfcpAnswer, ContentAnswer};
pub use video::{
    KeyframeRequest, Picture, ReceiverStats, Rgb, SenderStats, VideoClip, VideoSource, VideoSpec,
    VideoStats,
};
