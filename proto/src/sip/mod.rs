//! SIP for a UAS conference bridge (RFC 3261), sans-IO.
//!
//! ## Layout
//! - [`message`]: the §7 grammar. `parse_datagram` / `parse_stream` turn bytes
//!   into [`Message`]s, `to_bytes` turns them back; malformed requests come
//!   back as a [`ParseError`] that can build its own `400` (§21.4.1).
//! - [`transaction`]: the four §17 state machines and the §13.3.1.4 2xx
//!   retransmission, owned by one [`TransactionLayer`]. Bytes in via
//!   `handle_message`, bytes out via `poll_transmit`, the TU (the bridge) is
//!   told what happened via `poll_event`, timers via `poll_timeout` /
//!   `handle_timeout`.
//! - [`dialog`]: §12 dialog state for building in-dialog requests and
//!   checking CSeq order of incoming ones.
//! - [`session_timer`]: RFC 4028 negotiation on the UAS side.
//!
//! Data flow in the bridge: socket → `parse_*` → `TransactionLayer::handle_message`
//! → `TransactionEvent::NewRequest` → dialog / conference logic →
//! `TransactionLayer::respond` → `poll_transmit` → socket.

pub mod dialog;
pub mod message;
pub mod session_timer;
pub mod transaction;

pub use dialog::{Dialog, DialogError, DialogId, dialog_id, new_branch, new_tag};
pub use message::{
    Headers, Message, Method, NameAddr, ParseError, ParseErrorKind, Request, Response, Via,
    parse_datagram, parse_name_addr, parse_stream, tag_param, uri_addr, uri_user,
};
pub use session_timer::{Refresher, SessionTimer, negotiate, reject_too_small};
pub use transaction::{
    Stats, Timers, TransactionError, TransactionEvent, TransactionKey, TransactionLayer, Transmit,
    Transport,
};
