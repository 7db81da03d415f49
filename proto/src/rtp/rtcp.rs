//! RTCP (RFC 3550 §6, RFC 4585 feedback): compound packet parsing and the
//! builders the bridge needs for SR/RR + SDES compounds, BYE and PLI.
//!
//! Every length field is checked against the datagram before use; a
//! malformed packet fails the whole compound, as RFC 3550 §A.2 suggests.

use super::packet::{RtpError, Ssrc, be32};

pub const RTCP_SR: u8 = 200;
pub const RTCP_RR: u8 = 201;
pub const RTCP_SDES: u8 = 202;
pub const RTCP_BYE: u8 = 203;
pub const RTCP_APP: u8 = 204;
pub const RTCP_RTPFB: u8 = 205;
pub const RTCP_PSFB: u8 = 206;

/// SDES item type for CNAME.
pub const SDES_CNAME: u8 = 1;
/// PSFB format: Picture Loss Indication (RFC 4585 §6.3.1).
pub const PSFB_PLI: u8 = 1;
/// PSFB format: Full Intra Request (RFC 5104 §4.3.1).
pub const PSFB_FIR: u8 = 4;
/// RTPFB format: Temporary Maximum Media Stream Bit Rate Request (RFC 5104 §4.2.1).
pub const RTPFB_TMMBR: u8 = 3;
/// RTPFB format: Temporary Maximum Media Stream Bit Rate Notification (RFC 5104 §4.2.2).
pub const RTPFB_TMMBN: u8 = 4;

/// One TMMBR/TMMBN FCI entry (RFC 5104 §4.2.1.1): a bitrate limit for the
/// media sender `ssrc`, in bits per second, and the per-packet overhead the
/// limit was computed with, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tmmb {
    pub ssrc: Ssrc,
    pub bitrate_bps: u64,
    pub overhead: u16,
}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: Ssrc,
    pub fraction_lost: u8,
    /// 24-bit signed on the wire; clamped when written.
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received, 0 if none.
    pub lsr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub dlsr: u32,
}

impl ReportBlock {
    const LEN: usize = 24;

    fn parse(b: &[u8]) -> Option<ReportBlock> {
        let lost_raw = be32(b, 4)?;
        // Sign-extend the low 24 bits.
        let cumulative_lost = ((lost_raw << 8) as i32) >> 8;
        Some(ReportBlock {
            ssrc: Ssrc(be32(b, 0)?),
            fraction_lost: (lost_raw >> 24) as u8,
            cumulative_lost,
            highest_seq: be32(b, 8)?,
            jitter: be32(b, 12)?,
            lsr: be32(b, 16)?,
            dlsr: be32(b, 20)?,
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32 & 0x00ff_ffff;
        out.extend_from_slice(&self.ssrc.0.to_be_bytes());
        out.extend_from_slice(&((u32::from(self.fraction_lost) << 24) | lost).to_be_bytes());
        out.extend_from_slice(&self.highest_seq.to_be_bytes());
        out.extend_from_slice(&self.jitter.to_be_bytes());
        out.extend_from_slice(&self.lsr.to_be_bytes());
        out.extend_from_slice(&self.dlsr.to_be_bytes());
    }
}

/// The sender-info part of an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    pub ssrc: Ssrc,
    /// 64-bit NTP timestamp (see [`super::stats::NtpTime`]).
    pub ntp: u64,
    pub rtp_ts: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesItem {
    pub kind: u8,
    pub text: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesChunk {
    pub ssrc: Ssrc,
    pub items: Vec<SdesItem>,
}

impl SdesChunk {
    pub fn cname(&self) -> Option<&[u8]> {
        self.items
            .iter()
            .find(|i| i.kind == SDES_CNAME)
            .map(|i| i.text.as_slice())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    SenderReport {
        ssrc: Ssrc,
        ntp: u64,
        rtp_ts: u32,
        packet_count: u32,
        octet_count: u32,
        reports: Vec<ReportBlock>,
    },
    ReceiverReport {
        ssrc: Ssrc,
        reports: Vec<ReportBlock>,
    },
    SourceDescription(Vec<SdesChunk>),
    Goodbye {
        ssrcs: Vec<Ssrc>,
        reason: Option<Vec<u8>>,
    },
    App {
        subtype: u8,
        ssrc: Ssrc,
        name: [u8; 4],
        data: Vec<u8>,
    },
    /// RTPFB (RFC 4585): NACK (fmt 1), TWCC (fmt 15), ...; FCI left raw.
    TransportFeedback {
        fmt: u8,
        sender_ssrc: Ssrc,
        media_ssrc: Ssrc,
        fci: Vec<u8>,
    },
    /// PSFB (RFC 4585): PLI (fmt 1), FIR (fmt 4), REMB (fmt 15); FCI left raw.
    PayloadFeedback {
        fmt: u8,
        sender_ssrc: Ssrc,
        media_ssrc: Ssrc,
        fci: Vec<u8>,
    },
    Unknown {
        pt: u8,
        count: u8,
        body: Vec<u8>,
    },
}

impl RtcpPacket {
    pub fn is_pli(&self) -> bool {
        matches!(self, RtcpPacket::PayloadFeedback { fmt: PSFB_PLI, .. })
    }

    pub fn is_fir(&self) -> bool {
        matches!(self, RtcpPacket::PayloadFeedback { fmt: PSFB_FIR, .. })
    }

    /// The entries of a TMMBR (a receiver asking the named senders to stay
    /// under a bitrate); empty for any other packet, or a malformed FCI.
    pub fn tmmbr(&self) -> Vec<Tmmb> {
        match self {
            RtcpPacket::TransportFeedback {
                fmt: RTPFB_TMMBR,
                fci,
                ..
            } => parse_tmmb_fci(fci),
            _ => Vec::new(),
        }
    }

    /// The entries of a TMMBN (a sender's notice of the limits it applies).
    pub fn tmmbn(&self) -> Vec<Tmmb> {
        match self {
            RtcpPacket::TransportFeedback {
                fmt: RTPFB_TMMBN,
                fci,
                ..
            } => parse_tmmb_fci(fci),
            _ => Vec::new(),
        }
    }

    /// Parse a compound RTCP datagram into its packets.
    pub fn parse_compound(buf: &[u8]) -> Result<Vec<RtcpPacket>, RtpError> {
        if buf.len() < 4 {
            return Err(RtpError::TooShort(buf.len()));
        }
        let mut out = Vec::new();
        let mut rest = buf;
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err(RtpError::BadLength);
            }
            let b0 = rest[0];
            if b0 >> 6 != 2 {
                return Err(RtpError::BadVersion(b0 >> 6));
            }
            let padding = b0 & 0x20 != 0;
            let count = b0 & 0x1f;
            let pt = rest[1];
            let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
            let pkt = rest.get(..len).ok_or(RtpError::BadLength)?;
            rest = &rest[len..];
            let mut body = &pkt[4..];
            if padding {
                // Only the last packet of a compound may be padded (§6.4.1).
                if !rest.is_empty() {
                    return Err(RtpError::BadPadding);
                }
                let pad = usize::from(*body.last().ok_or(RtpError::BadPadding)?);
                if pad == 0 || pad > body.len() {
                    return Err(RtpError::BadPadding);
                }
                body = &body[..body.len() - pad];
            }
            out.push(Self::parse_one(pt, count, body).ok_or(RtpError::Malformed)?);
        }
        Ok(out)
    }

    fn parse_one(pt: u8, count: u8, body: &[u8]) -> Option<RtcpPacket> {
        let blocks = |b: &[u8]| -> Option<Vec<ReportBlock>> {
            let n = usize::from(count);
            if b.len() < n * ReportBlock::LEN {
                return None;
            }
            // Anything after the blocks is a profile-specific extension: ignored.
            b.chunks_exact(ReportBlock::LEN)
                .take(n)
                .map(ReportBlock::parse)
                .collect()
        };
        Some(match pt {
            RTCP_SR => {
                let ssrc = Ssrc(be32(body, 0)?);
                let ntp = (u64::from(be32(body, 4)?) << 32) | u64::from(be32(body, 8)?);
                RtcpPacket::SenderReport {
                    ssrc,
                    ntp,
                    rtp_ts: be32(body, 12)?,
                    packet_count: be32(body, 16)?,
                    octet_count: be32(body, 20)?,
                    reports: blocks(body.get(24..)?)?,
                }
            }
            RTCP_RR => RtcpPacket::ReceiverReport {
                ssrc: Ssrc(be32(body, 0)?),
                reports: blocks(body.get(4..)?)?,
            },
            RTCP_SDES => RtcpPacket::SourceDescription(parse_sdes(count, body)?),
            RTCP_BYE => {
                let n = usize::from(count);
                let ssrcs = (0..n)
                    .map(|i| be32(body, 4 * i).map(Ssrc))
                    .collect::<Option<Vec<_>>>()?;
                let reason = match body.get(4 * n) {
                    Some(&len) => {
                        let start = 4 * n + 1;
                        Some(body.get(start..start + usize::from(len))?.to_vec())
                    }
                    None => None,
                };
                RtcpPacket::Goodbye { ssrcs, reason }
            }
            RTCP_APP => RtcpPacket::App {
                subtype: count,
                ssrc: Ssrc(be32(body, 0)?),
                name: body.get(4..8)?.try_into().ok()?,
                data: body.get(8..)?.to_vec(),
            },
            RTCP_RTPFB | RTCP_PSFB => {
                let sender_ssrc = Ssrc(be32(body, 0)?);
                let media_ssrc = Ssrc(be32(body, 4)?);
                let fci = body.get(8..)?.to_vec();
                if pt == RTCP_RTPFB {
                    RtcpPacket::TransportFeedback {
                        fmt: count,
                        sender_ssrc,
                        media_ssrc,
                        fci,
                    }
                } else {
                    RtcpPacket::PayloadFeedback {
                        fmt: count,
                        sender_ssrc,
                        media_ssrc,
                        fci,
                    }
                }
            }
            _ => RtcpPacket::Unknown {
                pt,
                count,
                body: body.to_vec(),
            },
        })
    }
}

/// Parse a compound RTCP datagram; see [`RtcpPacket::parse_compound`].
pub fn parse_compound(buf: &[u8]) -> Result<Vec<RtcpPacket>, RtpError> {
    RtcpPacket::parse_compound(buf)
}

fn parse_sdes(count: u8, body: &[u8]) -> Option<Vec<SdesChunk>> {
    let mut chunks = Vec::with_capacity(usize::from(count));
    let mut at = 0usize;
    for _ in 0..count {
        let ssrc = Ssrc(be32(body, at)?);
        at += 4;
        let mut items = Vec::new();
        loop {
            let kind = *body.get(at)?;
            if kind == 0 {
                // End of list, then pad to the next 32-bit boundary.
                at = (at + 4) & !3;
                break;
            }
            let len = usize::from(*body.get(at + 1)?);
            let text = body.get(at + 2..at + 2 + len)?.to_vec();
            items.push(SdesItem { kind, text });
            at += 2 + len;
        }
        chunks.push(SdesChunk { ssrc, items });
    }
    Some(chunks)
}

/// Write the 4-byte common header with a placeholder length, returning where
/// it starts so [`finish`] can fill the length in.
fn begin(out: &mut Vec<u8>, count: u8, pt: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0x80 | (count & 0x1f), pt, 0, 0]);
    start
}

/// Pad to 32 bits and fill in the length (in words, minus one).
fn finish(out: &mut Vec<u8>, start: usize) {
    while !(out.len() - start).is_multiple_of(4) {
        out.push(0);
    }
    let words = ((out.len() - start) / 4 - 1) as u16;
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
}

/// Append an SR. At most 31 report blocks fit (RFC 3550 §6.4.1).
pub fn write_sender_report(
    out: &mut Vec<u8>,
    info: &SenderInfo,
    reports: &[ReportBlock],
) -> Result<(), RtpError> {
    let count = u8::try_from(reports.len())
        .ok()
        .filter(|n| *n <= 31)
        .ok_or(RtpError::TooMany)?;
    let start = begin(out, count, RTCP_SR);
    out.extend_from_slice(&info.ssrc.0.to_be_bytes());
    out.extend_from_slice(&info.ntp.to_be_bytes());
    out.extend_from_slice(&info.rtp_ts.to_be_bytes());
    out.extend_from_slice(&info.packet_count.to_be_bytes());
    out.extend_from_slice(&info.octet_count.to_be_bytes());
    for r in reports {
        r.write(out);
    }
    finish(out, start);
    Ok(())
}

/// Append an RR. At most 31 report blocks fit.
pub fn write_receiver_report(
    out: &mut Vec<u8>,
    ssrc: Ssrc,
    reports: &[ReportBlock],
) -> Result<(), RtpError> {
    let count = u8::try_from(reports.len())
        .ok()
        .filter(|n| *n <= 31)
        .ok_or(RtpError::TooMany)?;
    let start = begin(out, count, RTCP_RR);
    out.extend_from_slice(&ssrc.0.to_be_bytes());
    for r in reports {
        r.write(out);
    }
    finish(out, start);
    Ok(())
}

/// Append an SDES with one chunk holding a CNAME (at most 255 bytes).
pub fn write_sdes_cname(out: &mut Vec<u8>, ssrc: Ssrc, cname: &str) -> Result<(), RtpError> {
    let len = u8::try_from(cname.len()).map_err(|_| RtpError::TooMany)?;
    let start = begin(out, 1, RTCP_SDES);
    out.extend_from_slice(&ssrc.0.to_be_bytes());
    out.push(SDES_CNAME);
    out.push(len);
    out.extend_from_slice(cname.as_bytes());
    // The item list ends with at least one null octet, then pads to 32 bits.
    out.push(0);
    finish(out, start);
    Ok(())
}

/// Append a BYE for up to 31 sources, with an optional reason (≤ 255 bytes).
pub fn write_bye(out: &mut Vec<u8>, ssrcs: &[Ssrc], reason: Option<&str>) -> Result<(), RtpError> {
    let count = u8::try_from(ssrcs.len())
        .ok()
        .filter(|n| *n <= 31)
        .ok_or(RtpError::TooMany)?;
    let reason_len = match reason {
        Some(r) => Some(u8::try_from(r.len()).map_err(|_| RtpError::TooMany)?),
        None => None,
    };
    let start = begin(out, count, RTCP_BYE);
    for s in ssrcs {
        out.extend_from_slice(&s.0.to_be_bytes());
    }
    if let (Some(r), Some(len)) = (reason, reason_len) {
        out.push(len);
        out.extend_from_slice(r.as_bytes());
    }
    finish(out, start);
    Ok(())
}

/// Append a Picture Loss Indication (RFC 4585 §6.3.1), used to ask a video
/// sender for a key frame.
pub fn write_pli(out: &mut Vec<u8>, sender: Ssrc, media: Ssrc) {
    let start = begin(out, PSFB_PLI, RTCP_PSFB);
    out.extend_from_slice(&sender.0.to_be_bytes());
    out.extend_from_slice(&media.0.to_be_bytes());
    finish(out, start);
}

/// Append a Full Intra Request (RFC 5104 §4.3.1) for `media`. `seq` is the
/// request's sequence number: the same number for a retransmitted request,
/// one more for a new one.
pub fn write_fir(out: &mut Vec<u8>, sender: Ssrc, media: Ssrc, seq: u8) {
    let start = begin(out, PSFB_FIR, RTCP_PSFB);
    out.extend_from_slice(&sender.0.to_be_bytes());
    // Media source SSRC is unused in FIR (§4.3.1.2); the FCI names it.
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&media.0.to_be_bytes());
    out.extend_from_slice(&[seq, 0, 0, 0]);
    finish(out, start);
}

/// TMMBR/TMMBN FCI entries: 8 bytes each; a trailing partial entry is
/// ignored.
fn parse_tmmb_fci(fci: &[u8]) -> Vec<Tmmb> {
    fci.chunks_exact(8)
        .map(|e| {
            let ssrc = Ssrc(u32::from_be_bytes([e[0], e[1], e[2], e[3]]));
            let word = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
            let exp = word >> 26;
            let mantissa = u64::from((word >> 9) & 0x1_ffff);
            // A mantissa of 17 bits shifted by up to 63 would overflow: saturate.
            let bitrate_bps = mantissa.checked_shl(exp).filter(|v| v >> exp == mantissa);
            Tmmb {
                ssrc,
                bitrate_bps: bitrate_bps.unwrap_or(u64::MAX),
                overhead: (word & 0x1ff) as u16,
            }
        })
        .collect()
}

/// Encodes a bitrate as RFC 5104's 6-bit exponent and 17-bit mantissa,
/// rounding down (a limit must never be raised by its encoding).
fn tmmb_word(bitrate_bps: u64, overhead: u16) -> u32 {
    let mut exp = 0u32;
    let mut mantissa = bitrate_bps;
    while mantissa > 0x1_ffff {
        mantissa >>= 1;
        exp += 1;
    }
    (exp << 26) | ((mantissa as u32) << 9) | u32::from(overhead.min(0x1ff))
}

/// Append a TMMBR (RFC 5104 §4.2.1) asking `media` to send at most
/// `bitrate_bps`, with `overhead` bytes of per-packet overhead (IP, UDP and
/// RTP headers) counted in that limit.
pub fn write_tmmbr(out: &mut Vec<u8>, sender: Ssrc, media: Ssrc, bitrate_bps: u64, overhead: u16) {
    write_tmmb(out, RTPFB_TMMBR, sender, &[(media, bitrate_bps, overhead)]);
}

/// Append a TMMBN (RFC 5104 §4.2.2): the limits the sender now applies
/// (empty: none).
pub fn write_tmmbn(out: &mut Vec<u8>, sender: Ssrc, entries: &[(Ssrc, u64, u16)]) {
    write_tmmb(out, RTPFB_TMMBN, sender, entries);
}

fn write_tmmb(out: &mut Vec<u8>, fmt: u8, sender: Ssrc, entries: &[(Ssrc, u64, u16)]) {
    let start = begin(out, fmt, RTCP_RTPFB);
    out.extend_from_slice(&sender.0.to_be_bytes());
    // Media source SSRC is unused in TMMBR/TMMBN (§4.2.1.2); the FCI names it.
    out.extend_from_slice(&0u32.to_be_bytes());
    for &(media, bitrate, overhead) in entries {
        out.extend_from_slice(&media.0.to_be_bytes());
        out.extend_from_slice(&tmmb_word(bitrate, overhead).to_be_bytes());
    }
    finish(out, start);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::packet::is_rtcp;

    #[test]
    fn rtcp_tmmbr_round_trip() -> Result<(), RtpError> {
        let mut buf = Vec::new();
        write_tmmbr(&mut buf, Ssrc(7), Ssrc(0xABCD), 200_000, 40);
        write_tmmbn(&mut buf, Ssrc(0xABCD), &[(Ssrc(7), 1_500_000, 40)]);
        let packets = parse_compound(&buf)?;
        assert_eq!(packets.len(), 2);
        assert_eq!(
            packets[0].tmmbr(),
            vec![Tmmb {
                ssrc: Ssrc(0xABCD),
                bitrate_bps: 200_000,
                overhead: 40
            }]
        );
        assert!(packets[0].tmmbn().is_empty());
        let n = packets[1].tmmbn();
        assert_eq!(n.len(), 1);
        // 1.5 Mbit/s needs an exponent: the encoding rounds down, by < 1/2^16.
        assert!(n[0].bitrate_bps <= 1_500_000 && n[0].bitrate_bps > 1_499_900);
        assert!(packets[1].tmmbr().is_empty());
        Ok(())
    }

    #[test]
    fn rtcp_tmmbr_hostile_exponent_saturates() {
        let fci = [0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 9];
        let e = parse_tmmb_fci(&fci);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].bitrate_bps, u64::MAX);
    }

    #[test]
    fn rtcp_fir_round_trip() -> Result<(), RtpError> {
        let mut buf = Vec::new();
        write_fir(&mut buf, Ssrc(7), Ssrc(0xABCD), 3);
        let packets = parse_compound(&buf)?;
        assert_eq!(packets.len(), 1);
        assert!(packets[0].is_fir());
        match &packets[0] {
            RtcpPacket::PayloadFeedback {
                sender_ssrc, fci, ..
            } => {
                assert_eq!(*sender_ssrc, Ssrc(7));
                assert_eq!(fci.as_slice(), &[0, 0, 0xAB, 0xCD, 3, 0, 0, 0]);
            }
            other => panic!("not a FIR: {other:?}"),
        }
        Ok(())
    }

    fn block(n: u32) -> ReportBlock {
        ReportBlock {
            ssrc: Ssrc(n),
            fraction_lost: 25,
            cumulative_lost: -3,
            highest_seq: 70_000,
            jitter: 123,
            lsr: 0xaabb_ccdd,
            dlsr: 65536,
        }
    }

    #[test]
    fn rtcp_sr_sdes_compound_roundtrip() -> Result<(), RtpError> {
        let info = SenderInfo {
            ssrc: Ssrc(1),
            ntp: 0x0102_0304_0506_0708,
            rtp_ts: 160,
            packet_count: 10,
            octet_count: 1600,
        };
        let mut out = Vec::new();
        write_sender_report(&mut out, &info, &[block(7), block(8)])?;
        write_sdes_cname(&mut out, Ssrc(1), "tandem@bridge")?;
        assert!(is_rtcp(&out));
        assert_eq!(out.len() % 4, 0);
        let pkts = RtcpPacket::parse_compound(&out)?;
        assert_eq!(pkts.len(), 2);
        assert_eq!(
            pkts[0],
            RtcpPacket::SenderReport {
                ssrc: Ssrc(1),
                ntp: info.ntp,
                rtp_ts: 160,
                packet_count: 10,
                octet_count: 1600,
                reports: vec![block(7), block(8)],
            }
        );
        let RtcpPacket::SourceDescription(chunks) = &pkts[1] else {
            panic!("expected SDES, got {:?}", pkts[1]);
        };
        assert_eq!(chunks[0].ssrc, Ssrc(1));
        assert_eq!(chunks[0].cname(), Some(&b"tandem@bridge"[..]));
        Ok(())
    }

    #[test]
    fn rtcp_rr_bye_pli() -> Result<(), RtpError> {
        let mut out = Vec::new();
        write_receiver_report(&mut out, Ssrc(9), &[block(3)])?;
        write_bye(&mut out, &[Ssrc(9)], Some("bye now"))?;
        write_pli(&mut out, Ssrc(9), Ssrc(4));
        let pkts = RtcpPacket::parse_compound(&out)?;
        assert_eq!(
            pkts[0],
            RtcpPacket::ReceiverReport {
                ssrc: Ssrc(9),
                reports: vec![block(3)]
            }
        );
        assert_eq!(
            pkts[1],
            RtcpPacket::Goodbye {
                ssrcs: vec![Ssrc(9)],
                reason: Some(b"bye now".to_vec())
            }
        );
        assert!(pkts[2].is_pli());
        assert_eq!(
            pkts[2],
            RtcpPacket::PayloadFeedback {
                fmt: 1,
                sender_ssrc: Ssrc(9),
                media_ssrc: Ssrc(4),
                fci: vec![]
            }
        );
        // An empty RR is 8 bytes.
        let mut rr = Vec::new();
        write_receiver_report(&mut rr, Ssrc(9), &[])?;
        assert_eq!(rr.len(), 8);
        Ok(())
    }

    #[test]
    fn rtcp_cumulative_lost_is_24_bit_signed() -> Result<(), RtpError> {
        let mut out = Vec::new();
        let big = ReportBlock {
            cumulative_lost: 10_000_000,
            ..block(1)
        };
        let neg = ReportBlock {
            cumulative_lost: -10_000_000,
            ..block(2)
        };
        write_receiver_report(&mut out, Ssrc(9), &[big, neg])?;
        let pkts = RtcpPacket::parse_compound(&out)?;
        let RtcpPacket::ReceiverReport { reports, .. } = &pkts[0] else {
            panic!("expected RR");
        };
        assert_eq!(reports[0].cumulative_lost, 0x7f_ffff);
        assert_eq!(reports[1].cumulative_lost, -0x80_0000);
        assert_eq!(reports[0].fraction_lost, 25);
        Ok(())
    }

    #[test]
    fn rtcp_rejects_bad_lengths() -> Result<(), RtpError> {
        let mut out = Vec::new();
        write_receiver_report(&mut out, Ssrc(9), &[block(3)])?;
        // Truncated datagram.
        assert_eq!(
            RtcpPacket::parse_compound(&out[..out.len() - 4]),
            Err(RtpError::BadLength)
        );
        // Count claims more blocks than the length holds.
        let mut more = out.clone();
        more[0] = 0x82;
        assert_eq!(RtcpPacket::parse_compound(&more), Err(RtpError::Malformed));
        // Trailing garbage shorter than a header.
        let mut trail = out.clone();
        trail.extend_from_slice(&[0x80, 201]);
        assert_eq!(RtcpPacket::parse_compound(&trail), Err(RtpError::BadLength));
        // Padding on a non-final packet.
        let mut pad = out.clone();
        pad[0] |= 0x20;
        pad.extend_from_slice(&out);
        assert_eq!(RtcpPacket::parse_compound(&pad), Err(RtpError::BadPadding));
        // Too many report blocks is API misuse.
        assert_eq!(
            write_receiver_report(&mut Vec::new(), Ssrc(1), &[block(1); 32]),
            Err(RtpError::TooMany)
        );
        // Unknown types are kept, not rejected.
        let xr = [0x80, 207, 0, 1, 0, 0, 0, 5];
        assert!(matches!(
            RtcpPacket::parse_compound(&xr)?.as_slice(),
            [RtcpPacket::Unknown { pt: 207, .. }]
        ));
        Ok(())
    }

    #[test]
    fn rtcp_never_panics_on_prefixes() {
        let mut out = Vec::new();
        let _ = write_sender_report(&mut out, &SenderInfo::default(), &[block(1)]);
        let _ = write_sdes_cname(&mut out, Ssrc(1), "x");
        let _ = write_bye(&mut out, &[Ssrc(1), Ssrc(2)], Some("r"));
        for n in 0..out.len() {
            let _ = RtcpPacket::parse_compound(&out[..n]);
            let mut flipped = out[..n].to_vec();
            for i in 0..flipped.len() {
                flipped[i] ^= 0x5a;
                let _ = RtcpPacket::parse_compound(&flipped);
                flipped[i] ^= 0x5a;
            }
        }
    }
}
