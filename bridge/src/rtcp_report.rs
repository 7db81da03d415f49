//! The RTCP compound packet every leg sends every few seconds (RFC 3550
//! §6.4): a sender report about our stream with a reception report about
//! theirs, and our CNAME. Shared by the audio and video legs.

use std::time::{Instant, SystemTime};

use tandem_proto::rtp::packet::Ssrc;
use tandem_proto::rtp::rtcp;
use tandem_proto::rtp::stats::{ReceiveStats, ntp_timestamp};

/// What we sent on one stream, for the sender info.
pub struct Sent {
    pub ssrc: u32,
    /// RTP timestamp of "now" on our stream.
    pub rtp_ts: u32,
    pub packets: u64,
    pub octets: u64,
}

/// Writes SR (+ a report block when we have received anything) + SDES into
/// `buf`. `last_sr` is the middle 32 bits of the peer's last SR NTP time and
/// when it arrived, for LSR/DLSR. False if nothing could be written.
pub fn write_report(
    buf: &mut Vec<u8>,
    sent: &Sent,
    stats: &mut ReceiveStats,
    last_sr: Option<(u32, Instant)>,
    now: Instant,
    wall: SystemTime,
) -> bool {
    let reports = if stats.packets_received() > 0 {
        let (lsr, dlsr) = match last_sr {
            Some((lsr, at)) => {
                let d = now.saturating_duration_since(at);
                (lsr, (d.as_secs_f64() * 65536.0) as u32)
            }
            None => (0, 0),
        };
        vec![stats.report_block(lsr, dlsr)]
    } else {
        Vec::new()
    };
    let info = rtcp::SenderInfo {
        ssrc: Ssrc(sent.ssrc),
        ntp: ntp_timestamp(wall),
        rtp_ts: sent.rtp_ts,
        packet_count: sent.packets as u32,
        octet_count: sent.octets as u32,
    };
    rtcp::write_sender_report(buf, &info, &reports).is_ok()
        && rtcp::write_sdes_cname(buf, Ssrc(sent.ssrc), "tandem").is_ok()
}

/// The LSR value of an incoming SR's NTP timestamp, stamped with its arrival.
pub fn last_sr_of(packets: &[rtcp::RtcpPacket], at: Instant) -> Option<(u32, Instant)> {
    packets.iter().rev().find_map(|p| match p {
        rtcp::RtcpPacket::SenderReport { ntp, .. } => {
            Some((((ntp >> 16) & 0xFFFF_FFFF) as u32, at))
        }
        _ => None,
    })
}
