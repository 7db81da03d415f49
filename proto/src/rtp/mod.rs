//! RTP/RTCP (RFC 3550) and the receive side of an audio leg.
//!
//! - [`packet`]: RTP parse/write, [`Ssrc`]/[`MediaTime`] newtypes, RTP/RTCP demux.
//! - [`rtcp`]: compound RTCP parse, SR/RR/SDES/BYE/PLI builders.
//! - [`stats`]: RFC 3550 receiver statistics → report blocks; RTT and NTP helpers.
//! - [`jitter`]: adaptive jitter buffer, pushed on arrival, popped per frame by the mixer.
//! - [`dtmf`]: RFC 4733 telephone-event → digits.
//!
//! A packet arriving on a leg goes: [`is_rtcp`] demux → [`RtpPacket::parse`] →
//! [`ReceiveStats::handle_rtp`] and either [`DtmfDetector`] (telephone-event
//! PT) or [`JitterBuffer::push`]; the mixer tick drains [`JitterBuffer::pop`].

pub mod dtmf;
pub mod h264;
pub mod jitter;
pub mod packet;
pub mod rtcp;
pub mod stats;

pub use dtmf::{Dtmf, DtmfDetector, TelephoneEvent};
pub use jitter::{JitterBuffer, JitterStats, Playout};
pub use packet::{MediaTime, RtpError, RtpHeader, RtpPacket, Ssrc, is_rtcp};
pub use rtcp::{ReportBlock, RtcpPacket, SenderInfo};
pub use stats::{NtpTime, ReceiveStats, SeqVerdict, ntp_timestamp, rtt_from_report};
