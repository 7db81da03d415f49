//! # tandem-mixer
//!
//! Media for Tandem, sans-IO: it is called with frames and a media time and
//! returns frames. Audio runs at 48 kHz mono internally, 20 ms per tick.
//!
//! ## Layout
//! - [`audio::codec`]: Opus (libopus), G.722 and G.711 (our own), each wrapped
//!   so that decoders produce and encoders take 48 kHz mono; resampling and
//!   G.711/G.722 packet loss concealment live there too.
//! - [`audio::speaker`]: VAD and active-speaker detection with hysteresis.
//! - [`audio::mix`]: the conference mixer: mix-minus for the (≤ 3) mixed
//!   speakers, one shared encode per output format for everyone else.
//! - [`video`]: H.264 (OpenH264) decode and encode, continuous-presence
//!   layouts composed and encoded once per distinct view
//!   ([`video::VideoMixer`], its views spread over a few scoped threads per
//!   tick), and simulcast layers for an SFU ([`video::SimulcastEncoder`]).
//!
//! ## Data flow
//! Per 20 ms tick the bridge decodes each leg's packet (or conceals a lost
//! one), calls [`AudioMixer::push_frame`] for every leg that has audio, then
//! [`AudioMixer::tick`], and sends each [`audio::EncodedPayload`] to its
//! receivers. Nothing here reads a clock or touches a socket; time is the tick
//! count.
#![forbid(unsafe_code)]

pub mod audio;
mod error;
pub mod video;

pub use audio::ParticipantId;
pub use audio::mix::AudioMixer;
pub use error::{CodecError, Error};
