//! The node-to-node span link's wire format (a conference spanning MCU
//! nodes over QUIC). Pure parsing and writing: the QUIC transport and the
//! link's logic live in `tandem-bridge`'s `span` module.
//!
//! Two channels per link:
//! - **datagrams** carry media: one RTP packet each, behind a two-byte
//!   header `[DATAGRAM_MEDIA, flow]`. Flow 0 is the sending node's audio
//!   mix-minus (Opus); flow `k >= 1` is the video (H.264) of the sending
//!   node's `k`-th speaker. See [`MediaDatagram`].
//! - one bidirectional **control stream** carries [`ControlFrame`]s, each
//!   as `[length: u16 BE][type: u8][body]` (the length counts type and
//!   body). [`FrameDecoder`] reassembles them from stream chunks.
//!
//! Everything that comes from the network is parsed into typed values;
//! a malformed frame is an [`SpanError`] (with a stable [`SpanError::kind`]
//! for metrics), never a panic.

use crate::rtp::RtpPacket;

/// The QUIC ALPN of a span link.
pub const ALPN: &[u8] = b"tandem-span/1";
/// The control stream's protocol version, in [`Hello`].
pub const VERSION: u8 = 1;
/// The first byte of a media datagram.
pub const DATAGRAM_MEDIA: u8 = 0x4d;
/// Length of an HMAC-SHA256 tag.
pub const MAC_LEN: usize = 32;
/// Largest control frame (type and body), bytes.
pub const MAX_FRAME: usize = 60_000;
/// Longest name or reason, bytes (UTF-8).
pub const MAX_NAME: usize = 256;
/// Most participants one roster frame lists.
pub const MAX_ROSTER: usize = 1000;
/// Most video flows of a link (flows 1..=MAX_VIDEO_FLOWS).
pub const MAX_VIDEO_FLOWS: u8 = 16;

/// Why a span frame was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpanError {
    #[error("frame ends early")]
    Truncated,
    #[error("unknown frame or datagram type {0}")]
    UnknownType(u8),
    #[error("frame length {0} out of bounds")]
    BadLength(usize),
    #[error("string is not UTF-8 or too long")]
    BadString,
    #[error("too many roster entries")]
    TooMany,
    #[error("flow {0} out of range")]
    BadFlow(u8),
    #[error("bytes left over after the frame body")]
    Trailing,
    #[error("media datagram does not hold an RTP packet")]
    BadRtp,
    #[error("unsupported span protocol version {0}")]
    BadVersion(u8),
}

impl SpanError {
    /// A short stable label for metrics (`malformed{kind=...}`).
    pub fn kind(&self) -> &'static str {
        match self {
            SpanError::Truncated => "truncated",
            SpanError::UnknownType(_) => "unknown_type",
            SpanError::BadLength(_) => "bad_length",
            SpanError::BadString => "bad_string",
            SpanError::TooMany => "too_many",
            SpanError::BadFlow(_) => "bad_flow",
            SpanError::Trailing => "trailing",
            SpanError::BadRtp => "bad_rtp",
            SpanError::BadVersion(_) => "bad_version",
        }
    }
}

/// A media stream of a link: 0 the audio mix, `k` the `k`-th speaker's video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u8);

impl FlowId {
    pub const AUDIO: FlowId = FlowId(0);

    /// The flow of the speaker of `rank` (0: the first).
    pub fn video(rank: usize) -> FlowId {
        FlowId(u8::try_from(rank + 1).unwrap_or(u8::MAX))
    }

    /// The speaker rank of a video flow.
    pub fn rank(self) -> Option<usize> {
        (self.0 >= 1 && self.0 <= MAX_VIDEO_FLOWS).then(|| usize::from(self.0 - 1))
    }
}

/// One RTP packet of a flow, as a QUIC datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaDatagram<'a> {
    pub flow: FlowId,
    /// A whole RTP packet (checked to parse as one).
    pub rtp: &'a [u8],
}

impl<'a> MediaDatagram<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, SpanError> {
        let (&kind, rest) = data.split_first().ok_or(SpanError::Truncated)?;
        if kind != DATAGRAM_MEDIA {
            return Err(SpanError::UnknownType(kind));
        }
        let (&flow, rtp) = rest.split_first().ok_or(SpanError::Truncated)?;
        let flow = FlowId(flow);
        if flow != FlowId::AUDIO && flow.rank().is_none() {
            return Err(SpanError::BadFlow(flow.0));
        }
        RtpPacket::parse(rtp).map_err(|_| SpanError::BadRtp)?;
        Ok(MediaDatagram { flow, rtp })
    }

    /// Writes the datagram for `rtp` on `flow` into `out` (cleared first).
    pub fn write(flow: FlowId, rtp: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(rtp.len() + 2);
        out.push(DATAGRAM_MEDIA);
        out.push(flow.0);
        out.extend_from_slice(rtp);
    }
}

/// The satellite's first frame: who it is, which conference, and proof
/// that it holds the cluster secret (an HMAC over the TLS session's
/// exported keying material, so it cannot be replayed on another session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: u8,
    pub conference: String,
    pub node: String,
    pub mac: [u8; MAC_LEN],
}

/// The home's answer to a good [`Hello`]: its proof of the secret, and how
/// many video flows each side sends at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    pub node: String,
    pub video_flows: u8,
    pub mac: [u8; MAC_LEN],
}

/// A participant on the sending node (its own people only: never those it
/// learnt from the link it sends on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterEntry {
    /// The participant's ID on its node.
    pub id: u64,
    pub name: String,
    pub speaking: bool,
}

/// The conference-wide active speaker, as decided by the home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSpeaker {
    /// The node the speaker is on.
    pub node: String,
    pub id: u64,
    pub name: String,
}

/// Who is on the sending node, who its video flows show, and (from the
/// home) the conference's active speaker.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Roster {
    pub participants: Vec<RosterEntry>,
    /// The participant each video flow shows: `flows[k]` is on flow `k+1`.
    pub flows: Vec<u64>,
    /// The sender's own most recent speaker (a satellite's candidate for
    /// the conference's active speaker).
    pub local_speaker: Option<u64>,
    /// Decided by the home; satellites send `None`.
    pub active: Option<ActiveSpeaker>,
}

/// A frame of the control stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlFrame {
    Hello(Hello),
    Welcome(Welcome),
    /// The home refuses the link (bad secret, unknown conference).
    Refuse {
        reason: String,
    },
    Roster(Roster),
    /// The receiver of `flow` lost pictures: send it a keyframe.
    KeyframeRequest {
        flow: FlowId,
    },
    /// The sender ends the link on purpose (it does not reconnect).
    Bye {
        reason: String,
    },
}

const T_HELLO: u8 = 1;
const T_WELCOME: u8 = 2;
const T_REFUSE: u8 = 3;
const T_ROSTER: u8 = 4;
const T_KEYFRAME: u8 = 5;
const T_BYE: u8 = 6;

impl ControlFrame {
    /// Appends the frame, with its length prefix, to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0, 0]);
        match self {
            ControlFrame::Hello(h) => {
                out.push(T_HELLO);
                out.push(h.version);
                put_str(out, &h.conference);
                put_str(out, &h.node);
                out.extend_from_slice(&h.mac);
            }
            ControlFrame::Welcome(w) => {
                out.push(T_WELCOME);
                put_str(out, &w.node);
                out.push(w.video_flows);
                out.extend_from_slice(&w.mac);
            }
            ControlFrame::Refuse { reason } => {
                out.push(T_REFUSE);
                put_str(out, reason);
            }
            ControlFrame::Roster(r) => {
                out.push(T_ROSTER);
                let n = r.participants.len().min(MAX_ROSTER);
                out.extend_from_slice(&(n as u16).to_be_bytes());
                for p in &r.participants[..n] {
                    out.extend_from_slice(&p.id.to_be_bytes());
                    put_str(out, &p.name);
                    out.push(u8::from(p.speaking));
                }
                let f = r.flows.len().min(usize::from(MAX_VIDEO_FLOWS));
                out.push(f as u8);
                for id in &r.flows[..f] {
                    out.extend_from_slice(&id.to_be_bytes());
                }
                put_opt_id(out, r.local_speaker);
                match &r.active {
                    Some(a) => {
                        out.push(1);
                        put_str(out, &a.node);
                        out.extend_from_slice(&a.id.to_be_bytes());
                        put_str(out, &a.name);
                    }
                    None => out.push(0),
                }
            }
            ControlFrame::KeyframeRequest { flow } => {
                out.push(T_KEYFRAME);
                out.push(flow.0);
            }
            ControlFrame::Bye { reason } => {
                out.push(T_BYE);
                put_str(out, reason);
            }
        }
        // Writers never exceed the bound: names are truncated to
        // MAX_NAME and the roster to MAX_ROSTER entries.
        let len = (out.len() - start - 2).min(usize::from(u16::MAX)) as u16;
        out[start..start + 2].copy_from_slice(&len.to_be_bytes());
    }

    /// Parses one frame's type and body (without the length prefix).
    pub fn parse(body: &[u8]) -> Result<ControlFrame, SpanError> {
        let mut r = Reader(body);
        let frame = match r.u8()? {
            T_HELLO => {
                let version = r.u8()?;
                if version != VERSION {
                    return Err(SpanError::BadVersion(version));
                }
                ControlFrame::Hello(Hello {
                    version,
                    conference: r.string()?,
                    node: r.string()?,
                    mac: r.mac()?,
                })
            }
            T_WELCOME => ControlFrame::Welcome(Welcome {
                node: r.string()?,
                video_flows: r.u8()?.min(MAX_VIDEO_FLOWS),
                mac: r.mac()?,
            }),
            T_REFUSE => ControlFrame::Refuse {
                reason: r.string()?,
            },
            T_ROSTER => {
                let n = usize::from(r.u16()?);
                if n > MAX_ROSTER {
                    return Err(SpanError::TooMany);
                }
                let mut participants = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    participants.push(RosterEntry {
                        id: r.u64()?,
                        name: r.string()?,
                        speaking: r.u8()? != 0,
                    });
                }
                let f = r.u8()?;
                if f > MAX_VIDEO_FLOWS {
                    return Err(SpanError::TooMany);
                }
                let mut flows = Vec::with_capacity(usize::from(f));
                for _ in 0..f {
                    flows.push(r.u64()?);
                }
                let local_speaker = r.opt_id()?;
                let active = match r.u8()? {
                    0 => None,
                    _ => Some(ActiveSpeaker {
                        node: r.string()?,
                        id: r.u64()?,
                        name: r.string()?,
                    }),
                };
                ControlFrame::Roster(Roster {
                    participants,
                    flows,
                    local_speaker,
                    active,
                })
            }
            T_KEYFRAME => {
                let flow = FlowId(r.u8()?);
                if flow.rank().is_none() {
                    return Err(SpanError::BadFlow(flow.0));
                }
                ControlFrame::KeyframeRequest { flow }
            }
            T_BYE => ControlFrame::Bye {
                reason: r.string()?,
            },
            t => return Err(SpanError::UnknownType(t)),
        };
        if !r.0.is_empty() {
            return Err(SpanError::Trailing);
        }
        Ok(frame)
    }

    /// The frame with its length prefix, as one buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }
}

/// Reassembles control frames from the stream's chunks (sans-IO: push what
/// was read, poll frames out). A frame with a bad length poisons the
/// stream (framing is lost): the link must end.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    broken: bool,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, data: &[u8]) {
        if !self.broken {
            self.buf.extend_from_slice(data);
        }
    }

    /// The next whole frame: `None` until one is complete. A malformed
    /// body is an error for that frame only; a bad length prefix is an
    /// error every time after (the stream cannot be resynchronized).
    pub fn poll_frame(&mut self) -> Option<Result<ControlFrame, SpanError>> {
        if self.broken {
            return Some(Err(SpanError::BadLength(0)));
        }
        if self.buf.len() < 2 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
        if len == 0 || len > MAX_FRAME {
            self.broken = true;
            self.buf = Vec::new();
            return Some(Err(SpanError::BadLength(len)));
        }
        if self.buf.len() < 2 + len {
            return None;
        }
        let frame = ControlFrame::parse(&self.buf[2..2 + len]);
        self.buf.drain(..2 + len);
        Some(frame)
    }

    /// Bytes held for a frame not yet complete.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// What both sides' MACs are computed over, so that one side's tag is
/// never valid as the other's: `role || 0 || conference || 0 || node`.
pub fn mac_input(role: &str, conference: &str, node: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(role.len() + conference.len() + node.len() + 2);
    v.extend_from_slice(role.as_bytes());
    v.push(0);
    v.extend_from_slice(conference.as_bytes());
    v.push(0);
    v.extend_from_slice(node.as_bytes());
    v
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(MAX_NAME);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

fn put_opt_id(out: &mut Vec<u8>, id: Option<u64>) {
    match id {
        Some(id) => {
            out.push(1);
            out.extend_from_slice(&id.to_be_bytes());
        }
        None => out.push(0),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SpanError> {
        if self.0.len() < n {
            return Err(SpanError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, SpanError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, SpanError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u64(&mut self) -> Result<u64, SpanError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn mac(&mut self) -> Result<[u8; MAC_LEN], SpanError> {
        let mut a = [0u8; MAC_LEN];
        a.copy_from_slice(self.take(MAC_LEN)?);
        Ok(a)
    }
    fn string(&mut self) -> Result<String, SpanError> {
        let n = usize::from(self.u16()?);
        if n > MAX_NAME {
            return Err(SpanError::BadString);
        }
        let b = self.take(n)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| SpanError::BadString)
    }
    fn opt_id(&mut self) -> Result<Option<u64>, SpanError> {
        Ok(match self.u8()? {
            0 => None,
            _ => Some(self.u64()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{MediaTime, RtpHeader, Ssrc};

    fn rtp(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        RtpHeader {
            marker: true,
            payload_type: 111,
            sequence: 7,
            timestamp: MediaTime(960),
            ssrc: Ssrc(0xabcd),
        }
        .write(payload, &mut out);
        out
    }

    fn roundtrip(f: ControlFrame) {
        let bytes = f.to_bytes();
        let mut d = FrameDecoder::new();
        // Byte by byte: a stream may split a frame anywhere.
        for b in &bytes {
            assert!(d.buffered() < bytes.len());
            if let Some(got) = d.poll_frame() {
                panic!("frame before its end: {got:?}");
            }
            d.push(std::slice::from_ref(b));
        }
        assert_eq!(d.poll_frame(), Some(Ok(f)));
        assert_eq!(d.poll_frame(), None);
    }

    #[test]
    fn every_frame_roundtrips_through_a_split_stream() {
        roundtrip(ControlFrame::Hello(Hello {
            version: VERSION,
            conference: "4711".into(),
            node: "node-b".into(),
            mac: [7; MAC_LEN],
        }));
        roundtrip(ControlFrame::Welcome(Welcome {
            node: "node-a".into(),
            video_flows: 4,
            mac: [9; MAC_LEN],
        }));
        roundtrip(ControlFrame::Refuse {
            reason: "bad secret".into(),
        });
        roundtrip(ControlFrame::Roster(Roster {
            participants: vec![
                RosterEntry {
                    id: 3,
                    name: "Oslo Room".into(),
                    speaking: true,
                },
                RosterEntry {
                    id: 1 << 41,
                    name: "Zürich".into(),
                    speaking: false,
                },
            ],
            flows: vec![3, 1 << 41],
            local_speaker: Some(3),
            active: Some(ActiveSpeaker {
                node: "node-a".into(),
                id: 3,
                name: "Oslo Room".into(),
            }),
        }));
        roundtrip(ControlFrame::Roster(Roster::default()));
        roundtrip(ControlFrame::KeyframeRequest {
            flow: FlowId::video(2),
        });
        roundtrip(ControlFrame::Bye {
            reason: "unbound".into(),
        });
    }

    #[test]
    fn two_frames_in_one_chunk_come_out_in_order() {
        let mut bytes = ControlFrame::KeyframeRequest { flow: FlowId(1) }.to_bytes();
        ControlFrame::Bye { reason: "x".into() }.write(&mut bytes);
        let mut d = FrameDecoder::new();
        d.push(&bytes);
        assert_eq!(
            d.poll_frame(),
            Some(Ok(ControlFrame::KeyframeRequest { flow: FlowId(1) }))
        );
        assert_eq!(
            d.poll_frame(),
            Some(Ok(ControlFrame::Bye { reason: "x".into() }))
        );
        assert_eq!(d.poll_frame(), None);
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary() {
        let name = "é".repeat(200); // 400 bytes
        let f = ControlFrame::Refuse {
            reason: name.clone(),
        };
        let mut d = FrameDecoder::new();
        d.push(&f.to_bytes());
        let Some(Ok(ControlFrame::Refuse { reason })) = d.poll_frame() else {
            panic!("frame did not parse");
        };
        assert_eq!(reason.len(), 256);
        assert!(name.starts_with(&reason));
    }

    #[test]
    fn malformed_bodies_are_errors_and_the_stream_goes_on() {
        let bad = [
            (vec![99u8], SpanError::UnknownType(99)),
            (vec![T_HELLO, 2], SpanError::BadVersion(2)),
            (vec![T_HELLO, VERSION, 0, 5, b'a'], SpanError::Truncated),
            (vec![T_REFUSE, 0, 2, 0xff, 0xfe], SpanError::BadString),
            (vec![T_REFUSE, 0xff, 0xff], SpanError::BadString),
            (vec![T_KEYFRAME, 0], SpanError::BadFlow(0)),
            (vec![T_KEYFRAME, 1, 0], SpanError::Trailing),
            (vec![T_ROSTER, 0xff, 0xff], SpanError::TooMany),
            (vec![T_ROSTER, 0, 0, 17], SpanError::TooMany),
        ];
        let mut d = FrameDecoder::new();
        for (body, want) in bad {
            let mut bytes = (body.len() as u16).to_be_bytes().to_vec();
            bytes.extend_from_slice(&body);
            d.push(&bytes);
            assert_eq!(d.poll_frame(), Some(Err(want)), "{body:?}");
        }
        d.push(&ControlFrame::KeyframeRequest { flow: FlowId(2) }.to_bytes());
        assert_eq!(
            d.poll_frame(),
            Some(Ok(ControlFrame::KeyframeRequest { flow: FlowId(2) }))
        );
    }

    #[test]
    fn a_bad_length_breaks_the_stream_for_good() {
        let mut d = FrameDecoder::new();
        d.push(&[0, 0, 1]);
        assert_eq!(d.poll_frame(), Some(Err(SpanError::BadLength(0))));
        d.push(&ControlFrame::Bye { reason: "x".into() }.to_bytes());
        assert!(matches!(d.poll_frame(), Some(Err(_))));
        let mut d = FrameDecoder::new();
        d.push(&[0xff, 0xff]);
        assert_eq!(d.poll_frame(), Some(Err(SpanError::BadLength(0xffff))));
    }

    #[test]
    fn media_datagrams_carry_one_rtp_packet_on_a_flow() {
        let packet = rtp(&[1, 2, 3]);
        let mut out = Vec::new();
        MediaDatagram::write(FlowId::video(0), &packet, &mut out);
        let d = MediaDatagram::parse(&out).expect("parses");
        assert_eq!(d.flow, FlowId(1));
        assert_eq!(d.flow.rank(), Some(0));
        assert_eq!(d.rtp, &packet[..]);
        MediaDatagram::write(FlowId::AUDIO, &packet, &mut out);
        assert_eq!(MediaDatagram::parse(&out).expect("audio").flow, FlowId(0));

        assert_eq!(MediaDatagram::parse(&[]), Err(SpanError::Truncated));
        assert_eq!(
            MediaDatagram::parse(&[0, 0]),
            Err(SpanError::UnknownType(0))
        );
        assert_eq!(
            MediaDatagram::parse(&[DATAGRAM_MEDIA]),
            Err(SpanError::Truncated)
        );
        assert_eq!(
            MediaDatagram::parse(&[DATAGRAM_MEDIA, 17]),
            Err(SpanError::BadFlow(17))
        );
        assert_eq!(
            MediaDatagram::parse(&[DATAGRAM_MEDIA, 0, 0x80, 1]),
            Err(SpanError::BadRtp)
        );
    }

    #[test]
    fn mac_inputs_differ_by_role() {
        assert_ne!(
            mac_input("satellite", "4711", "b"),
            mac_input("home", "4711", "b")
        );
        // The separators keep fields from sliding into each other.
        assert_ne!(mac_input("h", "ab", "c"), mac_input("h", "a", "bc"));
    }
}
