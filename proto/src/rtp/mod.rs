//! RTP/RTCP and the jitter buffer.
