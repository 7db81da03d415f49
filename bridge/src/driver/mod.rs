//! Thin async drivers: sockets, timers and channels around the cores.
pub mod net;
pub mod sip;
