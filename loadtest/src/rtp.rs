//! RTP (RFC 3550) packets: just the fixed header, CSRCs, the extension and
//! padding, and loss counting from sequence numbers. RTCP is recognised (it
//! may arrive on the same port under rtcp-mux) and ignored.

use crate::error::{Error, Result};

/// The fixed RTP header fields we write and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// A parsed packet borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub header: RtpHeader,
    pub payload: &'a [u8],
}

/// Appends a packet (12-byte header, no CSRC, no extension) to `out`.
pub fn write_packet(header: &RtpHeader, payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x80);
    out.push((u8::from(header.marker) << 7) | (header.payload_type & 0x7F));
    out.extend_from_slice(&header.sequence.to_be_bytes());
    out.extend_from_slice(&header.timestamp.to_be_bytes());
    out.extend_from_slice(&header.ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Whether a datagram on the RTP port is RTCP (RFC 5761 demultiplexing:
/// RTCP packet types 192..=223 sit where RTP's marker + PT 64..=95 would).
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 2 && (192..=223).contains(&buf[1])
}

pub fn parse(buf: &[u8]) -> Result<RtpPacket<'_>> {
    if buf.len() < 12 {
        return Err(Error::parse("RTP packet", format!("{} bytes", buf.len())));
    }
    if buf[0] >> 6 != 2 {
        return Err(Error::parse(
            "RTP packet",
            format!("version {}", buf[0] >> 6),
        ));
    }
    let padding = buf[0] & 0x20 != 0;
    let extension = buf[0] & 0x10 != 0;
    let csrc_count = usize::from(buf[0] & 0x0F);
    let mut start = 12 + 4 * csrc_count;
    if extension {
        let len_at = start + 2;
        let words = buf
            .get(len_at..len_at + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or_else(|| Error::parse("RTP packet", "truncated extension header"))?;
        start += 4 + 4 * words;
    }
    let mut end = buf.len();
    if padding {
        let pad = usize::from(buf[end - 1]);
        if pad == 0 || pad > end {
            return Err(Error::parse("RTP packet", "bad padding"));
        }
        end -= pad;
    }
    if start > end {
        return Err(Error::parse("RTP packet", "header longer than packet"));
    }
    Ok(RtpPacket {
        header: RtpHeader {
            payload_type: buf[1] & 0x7F,
            marker: buf[1] & 0x80 != 0,
            sequence: u16::from_be_bytes([buf[2], buf[3]]),
            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        },
        payload: &buf[start..end],
    })
}

/// Counts received and expected packets from sequence numbers, as RFC 3550
/// A.3 does (extended highest sequence number minus the first one, plus one).
/// Reordering within a wrap is handled; an SSRC change restarts the count.
#[derive(Debug, Clone, Default)]
pub struct SequenceTracker {
    ssrc: Option<u32>,
    first: u64,
    highest: u64,
    received: u64,
    /// Totals carried over from earlier SSRCs.
    earlier_expected: u64,
    earlier_received: u64,
}

impl SequenceTracker {
    pub fn record(&mut self, ssrc: u32, sequence: u16) {
        if self.ssrc != Some(ssrc) {
            if self.ssrc.is_some() {
                self.earlier_expected += self.highest - self.first + 1;
                self.earlier_received += self.received;
            }
            self.ssrc = Some(ssrc);
            // Start mid-range so extended numbers never underflow.
            self.first = (1 << 32) + u64::from(sequence);
            self.highest = self.first;
            self.received = 1;
            return;
        }
        self.received += 1;
        // Place `sequence` on the extended number line nearest to `highest`.
        let cycle = self.highest & !0xFFFF;
        let candidates = [cycle.wrapping_sub(0x1_0000), cycle, cycle + 0x1_0000];
        let ext = candidates
            .iter()
            .map(|c| c + u64::from(sequence))
            .min_by_key(|e| e.abs_diff(self.highest))
            .unwrap_or(self.highest);
        if ext > self.highest {
            self.highest = ext;
        }
        if ext < self.first {
            self.first = ext;
        }
    }

    pub fn received(&self) -> u64 {
        self.earlier_received + self.received
    }

    pub fn expected(&self) -> u64 {
        let current = if self.ssrc.is_some() {
            self.highest - self.first + 1
        } else {
            0
        };
        self.earlier_expected + current
    }

    /// Packets never received (duplicates can make received exceed expected;
    /// that counts as zero loss).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_parse_round_trips() {
        let h = RtpHeader {
            payload_type: 111,
            marker: true,
            sequence: 65_535,
            timestamp: 0xDEAD_BEEF,
            ssrc: 42,
        };
        let mut buf = Vec::new();
        write_packet(&h, b"hello", &mut buf);
        assert_eq!(buf.len(), 17);
        let p = parse(&buf).expect("parse");
        assert_eq!(p.header, h);
        assert_eq!(p.payload, b"hello");
        assert!(!is_rtcp(&buf));
    }

    #[test]
    fn parse_skips_csrcs_extension_and_padding() {
        let mut buf = vec![0xB1, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        buf.extend_from_slice(&[9, 9, 9, 9]); // one CSRC
        buf.extend_from_slice(&[0xBE, 0xDE, 0, 1, 1, 2, 3, 4]); // extension, 1 word
        buf.extend_from_slice(b"pay");
        buf.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        let p = parse(&buf).expect("parse");
        assert_eq!(p.payload, b"pay");
        assert_eq!(p.header.sequence, 1);
        assert_eq!(p.header.payload_type, 0);
    }

    #[test]
    fn parse_rejects_garbage() {
        assert!(parse(&[0x80; 5]).is_err());
        assert!(parse(&[0x40; 12]).is_err());
        let mut bad_pad = vec![0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200];
        assert!(parse(&bad_pad).is_err());
        bad_pad[12] = 0;
        assert!(parse(&bad_pad).is_err());
        // An extension header that runs past the end.
        assert!(parse(&[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xBE, 0xDE, 0, 9]).is_err());
    }

    #[test]
    fn rtcp_is_recognised() {
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        assert!(is_rtcp(&[0x81, 201, 0, 6]));
    }

    #[test]
    fn sequence_tracker_counts_gaps_across_wrap_and_reordering() {
        let mut t = SequenceTracker::default();
        for s in [65_530u16, 65_531, 65_533, 65_532, 65_535, 0, 1, 3] {
            t.record(7, s);
        }
        // 65530..=3 is 10 numbers; 65534 and 2 are missing.
        assert_eq!(t.expected(), 10);
        assert_eq!(t.received(), 8);
        assert_eq!(t.lost(), 2);
        // A new SSRC keeps the old totals and starts afresh.
        t.record(8, 100);
        t.record(8, 102);
        assert_eq!(t.expected(), 13);
        assert_eq!(t.lost(), 3);
    }
}
