//! TPKT (RFC 1006 §6): how H.225.0 call signalling and H.245 frame their
//! messages on a TCP stream. `[3, 0, length: u16 BE]` then the payload;
//! the length counts the 4-byte header.

/// TPKT version.
pub const VERSION: u8 = 3;
/// The header's length.
pub const HEADER_LEN: usize = 4;
/// Largest packet we accept (header included): a Setup with fast-start
/// proposals for audio and video is a few kilobytes.
pub const MAX_PACKET: usize = 16_384;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TpktError {
    #[error("not a TPKT header (version {0})")]
    BadVersion(u8),
    #[error("TPKT length {0} out of bounds")]
    BadLength(usize),
}

impl TpktError {
    pub fn kind(&self) -> &'static str {
        match self {
            TpktError::BadVersion(_) => "bad_version",
            TpktError::BadLength(_) => "bad_length",
        }
    }
}

/// Wraps `payload` in a TPKT header.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() + HEADER_LEN).min(usize::from(u16::MAX)) as u16;
    let mut out = Vec::with_capacity(usize::from(len));
    out.extend_from_slice(&[VERSION, 0]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload[..usize::from(len) - HEADER_LEN]);
    out
}

/// Reassembles TPKT packets from stream chunks. A stream that is not TPKT
/// errs for good (the connection is to be closed).
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    broken: Option<TpktError>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.broken.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next whole packet's payload, `None` until one is there.
    pub fn poll(&mut self) -> Option<Result<Vec<u8>, TpktError>> {
        if let Some(e) = self.broken {
            return Some(Err(e));
        }
        if self.buf.len() < HEADER_LEN {
            return None;
        }
        if self.buf[0] != VERSION {
            return Some(Err(self.fail(TpktError::BadVersion(self.buf[0]))));
        }
        let len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
        if !(HEADER_LEN..=MAX_PACKET).contains(&len) {
            return Some(Err(self.fail(TpktError::BadLength(len))));
        }
        if self.buf.len() < len {
            return None;
        }
        let payload = self.buf[HEADER_LEN..len].to_vec();
        self.buf.drain(..len);
        Some(Ok(payload))
    }

    /// Bytes waiting for the rest of their packet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn fail(&mut self, e: TpktError) -> TpktError {
        self.broken = Some(e);
        self.buf.clear();
        e
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_reassembles_across_chunks() {
        let mut stream = frame(b"hello");
        stream.extend(frame(b""));
        stream.extend(frame(&[7; 300]));
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for chunk in stream.chunks(3) {
            d.push(chunk);
            while let Some(p) = d.poll() {
                got.push(p.unwrap());
            }
        }
        assert_eq!(got, vec![b"hello".to_vec(), vec![], vec![7; 300]]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn a_stream_that_is_not_tpkt_fails_for_good() {
        let mut d = Decoder::new();
        d.push(b"GET / HTTP/1.1\r\n");
        assert_eq!(d.poll(), Some(Err(TpktError::BadVersion(b'G'))));
        d.push(&frame(b"ok"));
        assert!(matches!(d.poll(), Some(Err(_))));
        assert_eq!(d.buffered(), 0);
        let mut d = Decoder::new();
        d.push(&[3, 0, 0, 2]);
        assert_eq!(d.poll(), Some(Err(TpktError::BadLength(2))));
        let mut d = Decoder::new();
        d.push(&[3, 0, 0xff, 0xff]);
        assert_eq!(d.poll(), Some(Err(TpktError::BadLength(65535))));
    }
}
