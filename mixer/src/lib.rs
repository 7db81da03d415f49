//! # tandem-mixer
//!
//! Media for Tandem, sans-IO: it is called with frames and a media time and
//! returns frames. Audio runs at 48 kHz mono internally, 20 ms per tick.
#![forbid(unsafe_code)]

pub mod audio;
