//! Audio: codecs, resampling, mixing, active speaker.
//!
//! Data flow per 20 ms tick: the bridge decodes each leg with a
//! [`codec::AudioDecoder`] to 48 kHz, pushes the frame into the
//! [`mix::AudioMixer`], calls `tick()`, and sends the encoded payloads it gets
//! back. The mixer asks the [`speaker::SpeakerDetector`] who is talking.

pub mod codec;
pub mod mix;
pub mod speaker;
#[cfg(test)]
pub(crate) mod testutil;

pub use codec::{AudioDecoder, AudioEncoder, CodecKind, decoder, encoder};
pub use mix::{AudioMixer, EncodedPayload, MixOutput, MixStats, MixerConfig, OutputFormat};
pub use speaker::{SpeakerConfig, SpeakerDetector};

/// A participant (one leg) of a conference, as the bridge numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(pub u64);

/// Samples per 20 ms tick at 48 kHz.
pub const TICK_SAMPLES: usize = 960;
