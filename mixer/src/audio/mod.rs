//! Audio: codecs, resampling, mixing, active speaker.
