//! The crate's one error type.
//!
//! Variants are grouped by whose fault they are: the caller misusing the API
//! (fix the caller), a peer sending something we cannot use (count it, drop
//! the packet, carry on), or the codec library failing internally.

use crate::audio::{CodecKind, ParticipantId};

/// Everything that can go wrong in `tandem-mixer`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- API misuse -------------------------------------------------------
    /// The codec cannot packetise at this ptime, or the mixer cannot tick at it.
    #[error("{codec:?} cannot use a ptime of {ptime_ms} ms")]
    UnsupportedPtime { codec: CodecKind, ptime_ms: u32 },
    /// An encoder was handed a frame that is not exactly one ptime long.
    #[error("expected {expected} samples at 48 kHz, got {got}")]
    FrameLength { expected: usize, got: usize },
    /// The participant is not in this mixer.
    #[error("unknown participant {0:?}")]
    UnknownParticipant(ParticipantId),
    /// The participant was already added.
    #[error("participant {0:?} already added")]
    DuplicateParticipant(ParticipantId),
    /// A video frame's planes do not match its stated size, or the size is
    /// one the video path cannot use (zero, or beyond H.264 level 5.2).
    #[error("invalid video frame: {0}")]
    InvalidFrame(String),
    /// A layout name that is not one of ours ("2x2", "1+5", "auto", ...).
    #[error("unknown video layout {0:?}")]
    UnknownLayout(String),

    // --- peer misbehaving ---------------------------------------------------
    /// The RTP payload could not be decoded (corrupt or truncated packet).
    #[error("malformed {codec:?} payload: {reason}")]
    MalformedPayload { codec: CodecKind, reason: String },
    /// An H.264 access unit could not be decoded (not Annex B, truncated,
    /// or refused by the decoder).
    #[error("malformed H.264: {0}")]
    MalformedVideo(String),

    // --- codec library ------------------------------------------------------
    /// libopus reported an error outside a payload's fault.
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
    /// The resampler could not be built or refused a buffer.
    #[error("resampler: {0}")]
    Resampler(String),
    /// OpenH264 failed outside a bitstream's fault (init, encode).
    #[error("openh264: {0}")]
    VideoCodec(String),
    /// The image scaler refused a buffer or size.
    #[error("scaler: {0}")]
    Scaler(String),
}

/// Codec functions return the crate error; the alias keeps their signatures
/// reading as the codec API they are.
pub type CodecError = Error;
