//! SDP and offer/answer.
