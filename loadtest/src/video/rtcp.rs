//! RTCP keyframe requests: PLI (RFC 4585 §6.3.1) and FIR (RFC 5104 §4.3.1),
//! written as compound packets and read out of whatever compound arrives;
//! bitrate limits: TMMBR read, TMMBN written (RFC 5104 §4.2).
//!
//! We do not offer `a=rtcp-rsize`, so what we send is a proper RFC 3550
//! compound packet: an empty receiver report and an SDES CNAME in front of
//! the feedback message. What we read may be compound or reduced-size; every
//! part that is not feedback (SR, RR, SDES, BYE, APP, XR) is skipped by its
//! length.

use crate::error::{Error, Result};

const PT_RR: u8 = 201;
const PT_SDES: u8 = 202;
/// Transport-layer feedback (generic NACK is FMT 1).
const PT_RTPFB: u8 = 205;
/// Payload-specific feedback (PLI is FMT 1, FIR is FMT 4).
const PT_PSFB: u8 = 206;
const FMT_NACK: u8 = 1;
const FMT_PLI: u8 = 1;
const FMT_FIR: u8 = 4;
const FMT_TMMBR: u8 = 3;
const FMT_TMMBN: u8 = 4;

/// A feedback message that concerns a video sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feedback {
    /// Picture Loss Indication: `media` should send a keyframe.
    Pli { sender: u32, media: u32 },
    /// Full Intra Request: each `(ssrc, sequence)` entry asks that SSRC for a
    /// keyframe; a repeated sequence number is a retransmission of the same
    /// request, not a new one.
    Fir {
        sender: u32,
        entries: Vec<(u32, u8)>,
    },
    /// Generic NACK: `media` lost packets (we do not retransmit; counted).
    Nack { sender: u32, media: u32 },
    /// TMMBR: each `(ssrc, bit/s)` entry asks that SSRC to send at most
    /// that much (RFC 5104 §4.2.1).
    Tmmbr {
        sender: u32,
        entries: Vec<(u32, u64)>,
    },
}

/// Which keyframe request to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyframeRequest {
    /// RFC 4585 Picture Loss Indication.
    Pli,
    /// RFC 5104 Full Intra Request.
    Fir,
}

/// Reads every feedback message out of a (compound) RTCP datagram. Parts
/// that are not feedback are skipped; a datagram whose framing is broken is
/// an error (the parts before the break are not returned: a sender that gets
/// the lengths wrong cannot be trusted with the rest).
pub fn parse_feedback(buf: &[u8]) -> Result<Vec<Feedback>> {
    let bad = |detail: &str| Error::parse("RTCP packet", detail.to_owned());
    let mut found = Vec::new();
    let mut rest = buf;
    if rest.is_empty() {
        return Err(bad("empty"));
    }
    while !rest.is_empty() {
        let [first, pt, len_hi, len_lo, ..] = *rest else {
            return Err(bad("truncated header"));
        };
        if first >> 6 != 2 {
            return Err(bad("version is not 2"));
        }
        let len = 4 * (usize::from(u16::from_be_bytes([len_hi, len_lo])) + 1);
        let part = rest.get(..len).ok_or_else(|| bad("length past the end"))?;
        rest = &rest[len..];
        let fmt = first & 0x1F;
        let word = |at: usize| {
            part.get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        match (pt, fmt) {
            (PT_PSFB, FMT_PLI) => {
                let (Some(sender), Some(media)) = (word(4), word(8)) else {
                    return Err(bad("short PLI"));
                };
                found.push(Feedback::Pli { sender, media });
            }
            (PT_PSFB, FMT_FIR) => {
                let Some(sender) = word(4) else {
                    return Err(bad("short FIR"));
                };
                let fci = part.get(12..).unwrap_or_default();
                if fci.is_empty() || fci.len() % 8 != 0 {
                    return Err(bad("FIR without whole FCI entries"));
                }
                let entries = fci
                    .chunks_exact(8)
                    .map(|e| (u32::from_be_bytes([e[0], e[1], e[2], e[3]]), e[4]))
                    .collect();
                found.push(Feedback::Fir { sender, entries });
            }
            (PT_RTPFB, FMT_TMMBR) => {
                let Some(sender) = word(4) else {
                    return Err(bad("short TMMBR"));
                };
                let fci = part.get(12..).unwrap_or_default();
                if fci.is_empty() || fci.len() % 8 != 0 {
                    return Err(bad("TMMBR without whole FCI entries"));
                }
                let entries = fci
                    .chunks_exact(8)
                    .map(|e| {
                        let ssrc = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
                        let w = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
                        let (exp, mantissa) = (w >> 26, u64::from((w >> 9) & 0x1_ffff));
                        let bps = mantissa
                            .checked_shl(exp)
                            .filter(|v| v >> exp == mantissa)
                            .unwrap_or(u64::MAX);
                        (ssrc, bps)
                    })
                    .collect();
                found.push(Feedback::Tmmbr { sender, entries });
            }
            (PT_RTPFB, FMT_NACK) => {
                let (Some(sender), Some(media)) = (word(4), word(8)) else {
                    return Err(bad("short NACK"));
                };
                found.push(Feedback::Nack { sender, media });
            }
            _ => {}
        }
    }
    Ok(found)
}

/// Receiver report without report blocks, then SDES with our CNAME: the
/// mandatory head of a compound packet (RFC 3550 §6.1).
fn write_head(sender: u32, cname: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&[0x80, PT_RR, 0, 1]);
    out.extend_from_slice(&sender.to_be_bytes());

    let cname = &cname.as_bytes()[..cname.len().min(255)];
    // SSRC, CNAME item (type, length, text), at least one null octet ending
    // the item list, padded to a 32-bit boundary.
    let chunk = 4 + 2 + cname.len() + 1;
    let padded = chunk.div_ceil(4) * 4;
    let words = (padded / 4) as u16;
    out.extend_from_slice(&[0x81, PT_SDES]);
    out.extend_from_slice(&words.to_be_bytes());
    out.extend_from_slice(&sender.to_be_bytes());
    out.push(1);
    out.push(cname.len() as u8);
    out.extend_from_slice(cname);
    out.resize(out.len() + (padded - chunk + 1), 0);
}

/// A compound RR + SDES + PLI asking `media` for a keyframe.
pub fn write_pli(sender: u32, media: u32, cname: &str, out: &mut Vec<u8>) {
    write_head(sender, cname, out);
    out.extend_from_slice(&[0x80 | FMT_PLI, PT_PSFB, 0, 2]);
    out.extend_from_slice(&sender.to_be_bytes());
    out.extend_from_slice(&media.to_be_bytes());
}

/// A compound RR + SDES + FIR asking `media` for a keyframe; `sequence`
/// must change for each new request (RFC 5104 §4.3.1.1).
pub fn write_fir(sender: u32, media: u32, sequence: u8, cname: &str, out: &mut Vec<u8>) {
    write_head(sender, cname, out);
    out.extend_from_slice(&[0x80 | FMT_FIR, PT_PSFB, 0, 4]);
    out.extend_from_slice(&sender.to_be_bytes());
    // The media source field is unused in FIR; the FCI names the SSRC.
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&media.to_be_bytes());
    out.extend_from_slice(&[sequence, 0, 0, 0]);
}

/// A compound RR + SDES + TMMBN: `sender` applies `bitrate_bps`, owned by
/// the requester `owner` (RFC 5104 §4.2.2).
pub fn write_tmmbn(sender: u32, owner: u32, bitrate_bps: u64, cname: &str, out: &mut Vec<u8>) {
    write_head(sender, cname, out);
    let (mut exp, mut mantissa) = (0u32, bitrate_bps);
    while mantissa > 0x1_ffff {
        mantissa >>= 1;
        exp += 1;
    }
    out.extend_from_slice(&[0x80 | FMT_TMMBN, PT_RTPFB, 0, 4]);
    out.extend_from_slice(&sender.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&owner.to_be_bytes());
    // Measured overhead 40: IPv4 + UDP + RTP headers.
    out.extend_from_slice(&((exp << 26) | ((mantissa as u32) << 9) | 40).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp;

    #[test]
    fn pli_and_fir_round_trip_through_compound_packets() {
        for cname in ["", "a", "abc", "room@127.0.0.1"] {
            let mut buf = Vec::new();
            write_pli(1, 2, cname, &mut buf);
            assert_eq!(buf.len() % 4, 0);
            assert!(rtp::is_rtcp(&buf), "demultiplexes as RTCP");
            assert_eq!(
                parse_feedback(&buf).expect("parse"),
                [Feedback::Pli {
                    sender: 1,
                    media: 2
                }]
            );
            buf.clear();
            write_fir(3, 4, 9, cname, &mut buf);
            assert_eq!(
                parse_feedback(&buf).expect("parse"),
                [Feedback::Fir {
                    sender: 3,
                    entries: vec![(4, 9)]
                }]
            );
        }
    }

    #[test]
    fn hand_built_reduced_size_feedback_parses() {
        // A lone PLI (RFC 5506), then a NACK and a FIR with two entries in
        // one compound after a sender report.
        let pli = [0x81, 206, 0, 2, 0, 0, 0, 7, 0, 0, 0, 8];
        assert_eq!(
            parse_feedback(&pli).expect("parse"),
            [Feedback::Pli {
                sender: 7,
                media: 8
            }]
        );
        let mut compound = vec![0x80, 200, 0, 6];
        compound.extend_from_slice(&[0; 24]); // SR body
        compound.extend_from_slice(&[0x81, 205, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 5, 0, 0]);
        compound.extend_from_slice(&[0x84, 206, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0]);
        compound.extend_from_slice(&[0, 0, 0, 2, 3, 0, 0, 0, 0, 0, 0, 9, 4, 0, 0, 0]);
        assert_eq!(
            parse_feedback(&compound).expect("parse"),
            [
                Feedback::Nack {
                    sender: 1,
                    media: 2
                },
                Feedback::Fir {
                    sender: 1,
                    entries: vec![(2, 3), (9, 4)]
                }
            ]
        );
    }

    #[test]
    fn tmmbr_is_read_and_tmmbn_written() {
        // TMMBR from SSRC 7 asking SSRC 9 for 200 kbit/s: mantissa 200000
        // needs exponent 1 (100000 << 1).
        let word: u32 = (1 << 26) | (100_000 << 9) | 40;
        let mut tmmbr = vec![0x83, 205, 0, 4, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 9];
        tmmbr.extend_from_slice(&word.to_be_bytes());
        assert_eq!(
            parse_feedback(&tmmbr).expect("parse"),
            [Feedback::Tmmbr {
                sender: 7,
                entries: vec![(9, 200_000)]
            }]
        );
        let mut tmmbn = Vec::new();
        write_tmmbn(9, 7, 200_000, "room", &mut tmmbn);
        assert!(crate::rtp::is_rtcp(&tmmbn));
        // A TMMBN is no request: it parses to nothing we act on.
        assert_eq!(parse_feedback(&tmmbn).expect("parse"), []);
    }

    #[test]
    fn broken_framing_is_an_error() {
        assert!(parse_feedback(&[]).is_err());
        assert!(parse_feedback(&[0x81, 206, 0]).is_err());
        assert!(parse_feedback(&[0x41, 206, 0, 2, 0, 0, 0, 7, 0, 0, 0, 8]).is_err());
        assert!(parse_feedback(&[0x81, 206, 0, 9, 0, 0, 0, 7, 0, 0, 0, 8]).is_err());
        assert!(parse_feedback(&[0x81, 206, 0, 1, 0, 0, 0, 7]).is_err());
        assert!(parse_feedback(&[0x84, 206, 0, 3, 0, 0, 0, 7, 0, 0, 0, 0, 1, 2, 3, 4]).is_err());
    }
}
