//! BFCP, the Binary Floor Control Protocol (RFC 8855): how room systems ask
//! for and are given the floor of a conference's content channel (a laptop
//! shared as a second video stream, `a=content:slides`).
//!
//! - [`message`]: the wire format (common header, TLV attributes, grouped
//!   attributes), strict parsing and writing, TCP framing.
//! - [`floor`]: the floor control server of one conference, sans-IO.
//!
//! Not here: fragmentation of messages over UDP (ours are small; a
//! fragmented message is refused and counted), DTLS/TLS, chairs.

pub mod floor;
pub mod message;

pub use floor::{Contention, Effects, FloorEvent, FloorServer, Send};
pub use message::{
    AttrType, Attribute, BfcpError, ErrorCode, Message, Primitive, Status, Value, message_len,
};
