//! RFC 4733 telephone-event payloads, and turning a stream of them into digits.

use super::packet::{MediaTime, RtpError};

/// One telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    /// The E bit: this packet ends the event (typically sent three times).
    pub end: bool,
    /// Power level in -dBm0 (0–63).
    pub volume: u8,
    /// Duration so far, in RTP timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    pub const LEN: usize = 4;

    /// Parse the first event of a payload (RFC 4733 allows several
    /// concatenated; only redundant old ones follow the first).
    pub fn parse(payload: &[u8]) -> Result<Self, RtpError> {
        let b = payload
            .get(..Self::LEN)
            .ok_or(RtpError::TooShort(payload.len()))?;
        Ok(TelephoneEvent {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3f,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(self.event);
        out.push((u8::from(self.end) << 7) | (self.volume & 0x3f));
        out.extend_from_slice(&self.duration.to_be_bytes());
    }

    /// The DTMF key for events 0–15 (RFC 4733 §3.2), `None` for others.
    pub fn digit(&self) -> Option<char> {
        Some(match self.event {
            0..=9 => char::from(b'0' + self.event),
            10 => '*',
            11 => '#',
            12..=15 => char::from(b'A' + self.event - 12),
            _ => return None,
        })
    }
}

/// A DTMF key press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dtmf(pub char);

/// Turns telephone-event packets into one [`Dtmf`] per key press.
///
/// All packets of one event share its RTP timestamp (RFC 4733 §2.5.1.1), so
/// the (timestamp, event) pair identifies it: the first packet seen reports
/// the digit, and the start, update and retransmitted end packets that follow
/// are ignored. Reporting at the first packet rather than the end keeps IVR
/// latency low and still works when the start packets were lost.
#[derive(Debug, Clone, Default)]
pub struct DtmfDetector {
    last: Option<(MediaTime, u8)>,
}

impl DtmfDetector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one telephone-event RTP packet (`timestamp` from its RTP header).
    pub fn handle_packet(&mut self, timestamp: MediaTime, payload: &[u8]) -> Option<Dtmf> {
        let ev = TelephoneEvent::parse(payload).ok()?;
        let key = (timestamp, ev.event);
        if self.last == Some(key) {
            return None;
        }
        // A stale packet of the previous event arriving late must not re-fire.
        if let Some((ts, _)) = self.last
            && timestamp.delta(ts) < 0
        {
            return None;
        }
        self.last = Some(key);
        ev.digit().map(Dtmf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: u8, end: bool, duration: u16) -> Vec<u8> {
        let mut v = Vec::new();
        TelephoneEvent {
            event,
            end,
            volume: 10,
            duration,
        }
        .write(&mut v);
        v
    }

    #[test]
    fn rtp_dtmf_parse_roundtrip() -> Result<(), RtpError> {
        let e = TelephoneEvent::parse(&[11, 0x8a, 0x03, 0x20])?;
        assert_eq!(
            e,
            TelephoneEvent {
                event: 11,
                end: true,
                volume: 10,
                duration: 800
            }
        );
        assert_eq!(e.digit(), Some('#'));
        assert_eq!(TelephoneEvent::parse(&ev(11, true, 800))?, e);
        assert_eq!(
            TelephoneEvent::parse(&[1, 2, 3]),
            Err(RtpError::TooShort(3))
        );
        assert_eq!(
            TelephoneEvent {
                event: 13,
                end: false,
                volume: 0,
                duration: 0
            }
            .digit(),
            Some('B')
        );
        assert_eq!(
            TelephoneEvent {
                event: 16,
                end: false,
                volume: 0,
                duration: 0
            }
            .digit(),
            None
        );
        Ok(())
    }

    #[test]
    fn rtp_dtmf_one_digit_per_event() {
        let mut d = DtmfDetector::new();
        let mut got = Vec::new();
        // "1", "1" again (a new event, new timestamp), then "5" whose start was lost.
        let packets = [
            (1000, ev(1, false, 160)),
            (1000, ev(1, false, 320)),
            (1000, ev(1, true, 480)),
            (1000, ev(1, true, 480)),
            (1000, ev(1, true, 480)),
            (5000, ev(1, false, 160)),
            (5000, ev(1, true, 400)),
            (9000, ev(5, true, 800)),
            (9000, ev(5, true, 800)),
            (5000, ev(1, true, 400)), // late retransmission of the previous event
        ];
        for (ts, p) in packets {
            if let Some(Dtmf(c)) = d.handle_packet(MediaTime(ts), &p) {
                got.push(c);
            }
        }
        assert_eq!(got, ['1', '1', '5']);
    }
}
