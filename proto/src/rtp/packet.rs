//! RTP packets (RFC 3550 §5.1): zero-copy parsing and header writing.

use std::fmt;

/// Why an RTP or RTCP datagram was rejected. Peers sending these are counted
/// and ignored; nothing here is fatal to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    #[error("packet too short ({0} bytes)")]
    TooShort(usize),
    #[error("unsupported RTP version {0}")]
    BadVersion(u8),
    #[error("CSRC list runs past the end of the packet")]
    BadCsrcCount,
    #[error("header extension runs past the end of the packet")]
    BadExtension,
    #[error("invalid padding length")]
    BadPadding,
    #[error("RTCP length field does not match the datagram")]
    BadLength,
    #[error("RTCP packet body is malformed")]
    Malformed,
    /// API misuse: more than 31 report blocks or an over-long SDES item.
    #[error("too many items for one RTCP packet")]
    TooMany,
}

impl RtpError {
    /// A short stable label for metrics (`malformed{kind=...}`).
    pub fn kind(&self) -> &'static str {
        match self {
            RtpError::TooShort(_) => "too_short",
            RtpError::BadVersion(_) => "bad_version",
            RtpError::BadCsrcCount => "bad_csrc_count",
            RtpError::BadExtension => "bad_extension",
            RtpError::BadPadding => "bad_padding",
            RtpError::BadLength => "bad_length",
            RtpError::Malformed => "malformed",
            RtpError::TooMany => "too_many",
        }
    }
}

/// Synchronization source identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Ssrc(pub u32);

impl fmt::Display for Ssrc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// A point in media time: an RTP timestamp, in units of the stream's clock
/// rate. Wraps at 2^32; compare with [`MediaTime::delta`], never with `<`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MediaTime(pub u32);

impl MediaTime {
    /// `self - earlier` as a signed distance, correct across wraparound for
    /// distances under 2^31.
    pub fn delta(self, earlier: MediaTime) -> i32 {
        self.0.wrapping_sub(earlier.0) as i32
    }

    pub fn wrapping_add(self, units: u32) -> MediaTime {
        MediaTime(self.0.wrapping_add(units))
    }
}

/// The CSRC list of a parsed packet, read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Csrcs<'a>(&'a [u8]);

impl<'a> Csrcs<'a> {
    pub fn len(&self) -> usize {
        self.0.len() / 4
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Ssrc> + 'a {
        self.0
            .chunks_exact(4)
            .map(|c| Ssrc(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
    }
}

/// A parsed RTP packet borrowing from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub version: u8,
    pub padding: bool,
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: MediaTime,
    pub ssrc: Ssrc,
    pub csrcs: Csrcs<'a>,
    /// Header extension: (profile-defined id, data), RFC 3550 §5.3.1.
    pub extension: Option<(u16, &'a [u8])>,
    /// Payload with any padding removed.
    pub payload: &'a [u8],
}

pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

pub(crate) fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

impl<'a> RtpPacket<'a> {
    pub const FIXED_HEADER_LEN: usize = 12;

    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        if buf.len() < Self::FIXED_HEADER_LEN {
            return Err(RtpError::TooShort(buf.len()));
        }
        let b0 = buf[0];
        let version = b0 >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let padding = b0 & 0x20 != 0;
        let has_ext = b0 & 0x10 != 0;
        let cc = usize::from(b0 & 0x0f);
        let marker = buf[1] & 0x80 != 0;
        let payload_type = buf[1] & 0x7f;
        let sequence = u16::from_be_bytes([buf[2], buf[3]]);
        let timestamp = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);

        let csrc_end = Self::FIXED_HEADER_LEN + 4 * cc;
        let csrcs = buf
            .get(Self::FIXED_HEADER_LEN..csrc_end)
            .ok_or(RtpError::BadCsrcCount)?;

        let mut end = buf.len();
        if padding {
            let pad = usize::from(buf[end - 1]);
            if pad == 0 || pad > end - csrc_end {
                return Err(RtpError::BadPadding);
            }
            end -= pad;
        }

        let mut offset = csrc_end;
        let extension = if has_ext {
            let id = be16(buf, offset).ok_or(RtpError::BadExtension)?;
            let words = usize::from(be16(buf, offset + 2).ok_or(RtpError::BadExtension)?);
            let start = offset + 4;
            let ext_end = start + 4 * words;
            if ext_end > end {
                return Err(RtpError::BadExtension);
            }
            offset = ext_end;
            Some((id, &buf[start..ext_end]))
        } else {
            None
        };
        if offset > end {
            return Err(RtpError::BadPadding);
        }

        Ok(RtpPacket {
            version,
            padding,
            marker,
            payload_type,
            sequence,
            timestamp: MediaTime(timestamp),
            ssrc: Ssrc(ssrc),
            csrcs: Csrcs(csrcs),
            extension,
            payload: &buf[offset..end],
        })
    }

    /// The header fields needed to forward or re-emit this packet.
    pub fn header(&self) -> RtpHeader {
        RtpHeader {
            marker: self.marker,
            payload_type: self.payload_type,
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
        }
    }
}

/// The header of a packet we send: no padding, CSRCs or extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: MediaTime,
    pub ssrc: Ssrc,
}

impl RtpHeader {
    /// Append header and payload to `out`. `payload_type` is masked to 7 bits.
    pub fn write(&self, payload: &[u8], out: &mut Vec<u8>) {
        out.reserve(RtpPacket::FIXED_HEADER_LEN + payload.len());
        out.push(0x80);
        out.push((u8::from(self.marker) << 7) | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.0.to_be_bytes());
        out.extend_from_slice(&self.ssrc.0.to_be_bytes());
        out.extend_from_slice(payload);
    }
}

/// RTP/RTCP demultiplexing on one port (RFC 5761 §4): the second byte of
/// RTCP is its packet type, 192–223; RTP payload types 64–95 (which would
/// collide with the marker bit set) must not be used under rtcp-mux.
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 8 && buf[0] >> 6 == 2 && (192..=223).contains(&buf[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_roundtrip() -> Result<(), RtpError> {
        let h = RtpHeader {
            marker: true,
            payload_type: 111,
            sequence: 65535,
            timestamp: MediaTime(0xdead_beef),
            ssrc: Ssrc(0x1234_5678),
        };
        let mut out = Vec::new();
        h.write(b"hello", &mut out);
        let p = RtpPacket::parse(&out)?;
        assert_eq!(p.header(), h);
        assert_eq!(p.payload, b"hello");
        assert!(p.csrcs.is_empty());
        assert_eq!(p.extension, None);
        assert!(!is_rtcp(&out));
        Ok(())
    }

    #[test]
    fn rtp_csrc_extension_padding() -> Result<(), RtpError> {
        let mut b = vec![0xb2, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        b.extend_from_slice(&[0, 0, 0, 10, 0, 0, 0, 11]); // 2 CSRCs
        b.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // one-word extension
        b.extend_from_slice(b"pay");
        b.extend_from_slice(&[0, 0, 3]); // 3 bytes padding
        let p = RtpPacket::parse(&b)?;
        assert_eq!(p.csrcs.iter().collect::<Vec<_>>(), [Ssrc(10), Ssrc(11)]);
        assert_eq!(p.extension, Some((0xbede, &[1u8, 2, 3, 4][..])));
        assert_eq!(p.payload, b"pay");
        assert!(p.padding);
        Ok(())
    }

    #[test]
    fn rtp_rejects_malformed() {
        assert_eq!(RtpPacket::parse(&[0x80; 11]), Err(RtpError::TooShort(11)));
        let mut b = vec![0x40, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::BadVersion(1)));
        b[0] = 0x81; // one CSRC, absent
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::BadCsrcCount));
        b[0] = 0x90; // extension, absent
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::BadExtension));
        b[0] = 0xa0; // padding with count 3 > 0 payload bytes... header byte 3 is the count
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::BadPadding));
        let mut e = vec![0x90, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 5, 1, 2];
        assert_eq!(RtpPacket::parse(&e), Err(RtpError::BadExtension));
        e[0] = 0xb0; // extension + padding overlapping the extension header
        e[15] = 0;
        e.extend_from_slice(&[0, 5]);
        assert!(RtpPacket::parse(&e).is_err());
    }

    #[test]
    fn rtp_never_panics_on_short_prefixes() {
        let mut b = vec![0xbf, 0xc8, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        b.extend(std::iter::repeat_n(0xffu8, 80));
        for n in 0..b.len() {
            let _ = RtpPacket::parse(&b[..n]);
            let _ = is_rtcp(&b[..n]);
        }
    }

    #[test]
    fn rtp_rtcp_demux() {
        let sr = [0x80, 200, 0, 6, 0, 0, 0, 1];
        assert!(is_rtcp(&sr));
        let rtp_pt0 = [0x80, 0, 0, 6, 0, 0, 0, 1];
        assert!(!is_rtcp(&rtp_pt0));
        let rtp_marker_pt96 = [0x80, 0x80 | 96, 0, 6, 0, 0, 0, 1];
        assert!(!is_rtcp(&rtp_marker_pt96));
    }

    #[test]
    fn rtp_media_time_delta_wraps() {
        assert_eq!(MediaTime(5).delta(MediaTime(u32::MAX - 4)), 10);
        assert_eq!(MediaTime(u32::MAX - 4).delta(MediaTime(5)), -10);
    }
}
