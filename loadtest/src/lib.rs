//! # tandem-loadtest
//!
//! Synthetic room systems: a SIP UA with RTP carrying real encoded media (a
//! chosen tone), which records what it hears. It is written independently of
//! the bridge's own SIP and media code so that it cannot share (and hide) a bug.
