#![no_main]
//! Compound RTCP parsing must never panic, and report blocks we parse must
//! survive being written back.

use libfuzzer_sys::fuzz_target;
use tandem_proto::rtp::rtcp::{self, RtcpPacket, SenderInfo};
use tandem_proto::rtp::{Ssrc, is_rtcp};

fuzz_target!(|data: &[u8]| {
    let _ = is_rtcp(data);
    let Ok(packets) = RtcpPacket::parse_compound(data) else {
        return;
    };
    for p in packets {
        match p {
            RtcpPacket::SenderReport {
                ssrc,
                ntp,
                rtp_ts,
                packet_count,
                octet_count,
                reports,
            } => {
                let info = SenderInfo {
                    ssrc,
                    ntp,
                    rtp_ts,
                    packet_count,
                    octet_count,
                };
                let mut out = Vec::new();
                rtcp::write_sender_report(&mut out, &info, &reports).expect("≤ 31 blocks");
                let again = RtcpPacket::parse_compound(&out).expect("our own SR parses");
                assert_eq!(
                    again,
                    vec![RtcpPacket::SenderReport {
                        ssrc,
                        ntp,
                        rtp_ts,
                        packet_count,
                        octet_count,
                        reports
                    }]
                );
            }
            RtcpPacket::ReceiverReport { ssrc, reports } => {
                let mut out = Vec::new();
                rtcp::write_receiver_report(&mut out, ssrc, &reports).expect("≤ 31 blocks");
                let again = RtcpPacket::parse_compound(&out).expect("our own RR parses");
                assert_eq!(again, vec![RtcpPacket::ReceiverReport { ssrc, reports }]);
            }
            RtcpPacket::Goodbye { ssrcs, .. } => {
                let mut out = Vec::new();
                let _ = rtcp::write_bye(&mut out, &ssrcs, Some("fuzz"));
                let _ = RtcpPacket::parse_compound(&out).expect("our own BYE parses");
            }
            other => {
                let _ = other.is_pli();
                let mut out = Vec::new();
                rtcp::write_pli(&mut out, Ssrc(1), Ssrc(2));
                // TMMBR/TMMBN entries: whatever a hostile FCI says, our own
                // encoding of a parsed limit parses back to at most it.
                for e in other.tmmbr().into_iter().chain(other.tmmbn()) {
                    let mut out = Vec::new();
                    rtcp::write_tmmbr(&mut out, Ssrc(1), e.ssrc, e.bitrate_bps, e.overhead);
                    let again = RtcpPacket::parse_compound(&out).expect("our own TMMBR parses");
                    let back = again[0].tmmbr();
                    assert!(back.len() == 1 && back[0].bitrate_bps <= e.bitrate_bps);
                }
            }
        }
    }
});
