//! H.264 over RTP (RFC 6184), packetization-mode 1 (non-interleaved): the
//! three packet kinds a mode-1 receiver must accept — single NAL unit,
//! STAP-A (aggregation) and FU-A (fragmentation) — in both directions.
//!
//! Written from the RFC, not shared with the bridge. The packetizer does what
//! a real VTC does: small NAL units that travel together (SPS + PPS in front
//! of an IDR) go in one STAP-A, big ones are cut into FU-As, and the RTP
//! marker is set on the last packet of each access unit. The depacketizer is
//! strict: a sequence gap or a malformed packet spoils the whole access unit
//! (it is reported as dropped, never handed to a decoder half-built).

use std::collections::VecDeque;

use crate::rtp::RtpHeader;

/// NAL unit types (H.264 Table 7-1) and RFC 6184 payload structures.
pub mod nal {
    pub const SLICE: u8 = 1;
    pub const IDR: u8 = 5;
    pub const SEI: u8 = 6;
    pub const SPS: u8 = 7;
    pub const PPS: u8 = 8;
    pub const STAP_A: u8 = 24;
    pub const FU_A: u8 = 28;
}

/// The default payload budget per packet: under a 1500-byte path MTU with
/// room for IP/UDP/RTP headers and a tunnel or two.
pub const DEFAULT_MTU: usize = 1_200;

/// Largest access unit the depacketizer assembles. A 4K IDR is far smaller;
/// beyond this a peer is misbehaving.
pub const MAX_ACCESS_UNIT_BYTES: usize = 8 << 20;

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// The `nal_unit_type` of a NAL unit (or of an RTP payload's first byte).
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1F)
}

/// Splits an Annex B byte stream into NAL units without their start codes.
/// Trailing zeros (the leading zero of a following 4-byte start code) are
/// trimmed and empty units skipped.
pub fn split_annexb(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut units = Vec::with_capacity(starts.len());
    for (k, &sc) in starts.iter().enumerate() {
        let begin = sc + 3;
        let mut end = starts.get(k + 1).copied().unwrap_or(data.len());
        while end > begin && data[end - 1] == 0 {
            end -= 1;
        }
        if end > begin {
            units.push(&data[begin..end]);
        }
    }
    units
}

/// One RTP payload of a packetized access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadUnit {
    pub payload: Vec<u8>,
    /// Set on the last packet of the access unit (RFC 6184 §5.1).
    pub marker: bool,
}

/// Cuts access units into RTP payloads of at most `mtu` bytes.
#[derive(Debug, Clone, Copy)]
pub struct Packetizer {
    mtu: usize,
}

impl Default for Packetizer {
    fn default() -> Self {
        Packetizer::new(DEFAULT_MTU)
    }
}

impl Packetizer {
    /// `mtu` is the payload budget (without the RTP header); at least 16.
    pub fn new(mtu: usize) -> Self {
        Packetizer { mtu: mtu.max(16) }
    }

    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Appends the payloads of one access unit (its NAL units, without start
    /// codes, in decoding order) to `out`. Empty NAL units are skipped.
    pub fn packetize(&self, nals: &[&[u8]], out: &mut Vec<PayloadUnit>) {
        let nals: Vec<&[u8]> = nals.iter().copied().filter(|n| !n.is_empty()).collect();
        let first = out.len();
        let mut i = 0;
        while i < nals.len() {
            let nal = nals[i];
            if nal.len() > self.mtu {
                self.fragment(nal, out);
                i += 1;
                continue;
            }
            // Aggregate as many following small units as fit in one STAP-A:
            // one header byte, then a 16-bit size before each unit.
            let mut total = 1;
            let mut j = i;
            while j < nals.len() && total + 2 + nals[j].len() <= self.mtu {
                total += 2 + nals[j].len();
                j += 1;
            }
            if j - i >= 2 {
                let group = &nals[i..j];
                // F is the OR of the units' F bits, NRI their maximum (§5.7.1).
                let f = group.iter().fold(0, |acc, n| acc | (n[0] & 0x80));
                let nri = group.iter().map(|n| n[0] & 0x60).max().unwrap_or(0);
                let mut payload = Vec::with_capacity(total);
                payload.push(f | nri | nal::STAP_A);
                for n in group {
                    // Fits in 16 bits: the whole STAP-A is within the MTU.
                    payload.extend_from_slice(&(n.len() as u16).to_be_bytes());
                    payload.extend_from_slice(n);
                }
                out.push(PayloadUnit {
                    payload,
                    marker: false,
                });
                i = j;
            } else {
                out.push(PayloadUnit {
                    payload: nal.to_vec(),
                    marker: false,
                });
                i += 1;
            }
        }
        if out.len() > first
            && let Some(last) = out.last_mut()
        {
            last.marker = true;
        }
    }

    /// FU-A (§5.8): the NAL header is split over the FU indicator (F, NRI)
    /// and the FU header (S, E, type); the header byte itself is not sent.
    fn fragment(&self, nal: &[u8], out: &mut Vec<PayloadUnit>) {
        let header = nal[0];
        let indicator = (header & 0xE0) | nal::FU_A;
        let chunk = self.mtu - 2;
        let body = &nal[1..];
        let count = body.len().div_ceil(chunk);
        for (k, piece) in body.chunks(chunk).enumerate() {
            let mut fu_header = header & 0x1F;
            if k == 0 {
                fu_header |= 0x80;
            }
            if k + 1 == count {
                fu_header |= 0x40;
            }
            let mut payload = Vec::with_capacity(2 + piece.len());
            payload.push(indicator);
            payload.push(fu_header);
            payload.extend_from_slice(piece);
            out.push(PayloadUnit {
                payload,
                marker: false,
            });
        }
    }
}

/// A whole access unit, reassembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    pub ssrc: u32,
    pub timestamp: u32,
    /// Annex B: each NAL unit behind a 4-byte start code, as decoders take it.
    pub annexb: Vec<u8>,
    /// It carries an IDR slice: a decoder can start here.
    pub keyframe: bool,
}

/// Why an access unit was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Packets of it (or before it) are missing: a sequence-number gap, or a
    /// change of SSRC mid-unit.
    Loss,
    /// A packet that mode 1 does not allow, or that does not parse (a
    /// truncated STAP-A, an FU-A continuation without its start, …).
    Malformed,
}

/// What the depacketizer hands out, one per access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Depacketized {
    Complete(AccessUnit),
    Dropped { timestamp: u32, reason: DropReason },
}

#[derive(Debug)]
struct Partial {
    timestamp: u32,
    annexb: Vec<u8>,
    keyframe: bool,
    broken: Option<DropReason>,
    /// Inside an FU-A: the type of the fragmented unit.
    fu_type: Option<u8>,
}

/// Reassembles access units from RTP packets of one stream. Packets are taken
/// in arrival order; a late or duplicate packet (sequence number behind the
/// expected one) is counted and ignored — the gap it left already spoiled its
/// access unit.
#[derive(Debug, Default)]
pub struct Depacketizer {
    ssrc: Option<u32>,
    next_sequence: Option<u16>,
    current: Option<Partial>,
    out: VecDeque<Depacketized>,
    late: u64,
    malformed: u64,
}

impl Depacketizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Packets that arrived behind the expected sequence number.
    pub fn late_packets(&self) -> u64 {
        self.late
    }

    /// Packets whose payload was not valid mode-1 H.264.
    pub fn malformed_packets(&self) -> u64 {
        self.malformed
    }

    pub fn handle_packet(&mut self, header: &RtpHeader, payload: &[u8]) {
        if self.ssrc != Some(header.ssrc) {
            if let Some(p) = self.current.take() {
                self.out.push_back(Depacketized::Dropped {
                    timestamp: p.timestamp,
                    reason: DropReason::Loss,
                });
            }
            self.ssrc = Some(header.ssrc);
            self.next_sequence = None;
        }
        let gap = match self.next_sequence {
            Some(expected) => {
                let ahead = header.sequence.wrapping_sub(expected);
                if ahead >= 0x8000 {
                    self.late += 1;
                    return;
                }
                ahead != 0
            }
            None => false,
        };
        self.next_sequence = Some(header.sequence.wrapping_add(1));

        if let Some(p) = self.current.as_mut() {
            if p.timestamp != header.timestamp {
                // The previous unit ended without its marker packet: either the
                // sender does not set markers, or the gap ate its last packet.
                if gap {
                    p.broken.get_or_insert(DropReason::Loss);
                }
                self.finish();
            } else if gap {
                p.broken.get_or_insert(DropReason::Loss);
            }
        }
        let partial = self.current.get_or_insert_with(|| Partial {
            timestamp: header.timestamp,
            annexb: Vec::new(),
            keyframe: false,
            // What went missing may have been this unit's first packets.
            broken: gap.then_some(DropReason::Loss),
            fu_type: None,
        });
        if partial.broken.is_none() && append(partial, payload).is_err() {
            partial.broken = Some(DropReason::Malformed);
            self.malformed += 1;
        }
        if header.marker {
            self.finish();
        }
    }

    /// The next reassembled (or dropped) access unit.
    pub fn poll(&mut self) -> Option<Depacketized> {
        self.out.pop_front()
    }

    fn finish(&mut self) {
        let Some(p) = self.current.take() else {
            return;
        };
        let broken = p.broken.or_else(|| {
            // An FU-A without its end, or a unit of nothing.
            (p.fu_type.is_some() || p.annexb.is_empty()).then_some(DropReason::Malformed)
        });
        self.out.push_back(match broken {
            Some(reason) => Depacketized::Dropped {
                timestamp: p.timestamp,
                reason,
            },
            None => Depacketized::Complete(AccessUnit {
                ssrc: self.ssrc.unwrap_or_default(),
                timestamp: p.timestamp,
                annexb: p.annexb,
                keyframe: p.keyframe,
            }),
        });
    }
}

struct Malformed;

fn push_nal(p: &mut Partial, nal: &[u8]) -> Result<(), Malformed> {
    if nal.is_empty() || nal[0] & 0x80 != 0 {
        return Err(Malformed);
    }
    grow(p, START_CODE.len() + nal.len())?;
    p.keyframe |= nal_type(nal) == Some(nal::IDR);
    p.annexb.extend_from_slice(&START_CODE);
    p.annexb.extend_from_slice(nal);
    Ok(())
}

fn grow(p: &Partial, by: usize) -> Result<(), Malformed> {
    if p.annexb.len() + by > MAX_ACCESS_UNIT_BYTES {
        Err(Malformed)
    } else {
        Ok(())
    }
}

fn append(p: &mut Partial, payload: &[u8]) -> Result<(), Malformed> {
    let Some(&indicator) = payload.first() else {
        return Err(Malformed);
    };
    if indicator & 0x80 != 0 {
        // forbidden_zero_bit: the unit is known to be corrupt (§5.3).
        return Err(Malformed);
    }
    match indicator & 0x1F {
        1..=23 => {
            if p.fu_type.is_some() {
                return Err(Malformed);
            }
            push_nal(p, payload)
        }
        nal::STAP_A => {
            if p.fu_type.is_some() {
                return Err(Malformed);
            }
            let mut rest = &payload[1..];
            if rest.is_empty() {
                return Err(Malformed);
            }
            while !rest.is_empty() {
                let [hi, lo, ..] = *rest else {
                    return Err(Malformed);
                };
                let size = usize::from(u16::from_be_bytes([hi, lo]));
                let unit = rest.get(2..2 + size).ok_or(Malformed)?;
                push_nal(p, unit)?;
                rest = &rest[2 + size..];
            }
            Ok(())
        }
        nal::FU_A => {
            let [_, fu_header, ref data @ ..] = *payload else {
                return Err(Malformed);
            };
            let (start, end, kind) = (
                fu_header & 0x80 != 0,
                fu_header & 0x40 != 0,
                fu_header & 0x1F,
            );
            if start {
                if p.fu_type.is_some() || end {
                    // A new start inside a fragment, or S and E together (§5.8).
                    return Err(Malformed);
                }
                let header = (indicator & 0xE0) | kind;
                if kind == 0 || kind >= nal::STAP_A {
                    return Err(Malformed);
                }
                grow(p, START_CODE.len() + 1 + data.len())?;
                p.keyframe |= kind == nal::IDR;
                p.annexb.extend_from_slice(&START_CODE);
                p.annexb.push(header);
                p.annexb.extend_from_slice(data);
                p.fu_type = Some(kind);
            } else {
                if p.fu_type != Some(kind) {
                    return Err(Malformed);
                }
                grow(p, data.len())?;
                p.annexb.extend_from_slice(data);
                if end {
                    p.fu_type = None;
                }
            }
            Ok(())
        }
        // STAP-B, MTAP16/24, FU-B need the interleaved mode; 0 and 30–31 are
        // undefined.
        _ => Err(Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(sequence: u16, timestamp: u32, marker: bool) -> RtpHeader {
        RtpHeader {
            payload_type: 96,
            marker,
            sequence,
            timestamp,
            ssrc: 0x1234,
        }
    }

    fn annexb(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for n in nals {
            v.extend_from_slice(&START_CODE);
            v.extend_from_slice(n);
        }
        v
    }

    /// Feeds payload units as consecutive packets of one timestamp.
    fn feed(d: &mut Depacketizer, units: &[PayloadUnit], seq: &mut u16, ts: u32) {
        for u in units {
            d.handle_packet(&header(*seq, ts, u.marker), &u.payload);
            *seq = seq.wrapping_add(1);
        }
    }

    fn filler(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn split_annexb_takes_both_start_code_lengths() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4,
        ];
        assert_eq!(
            split_annexb(&data),
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4][..]]
        );
        assert!(split_annexb(&[0, 0, 0]).is_empty());
        assert!(split_annexb(&[]).is_empty());
    }

    #[test]
    fn packetize_aggregates_small_units_and_fragments_big_ones() {
        let sps = [0x67, 0x42, 0xE0, 0x1F, 0xAA];
        let pps = [0x68, 0xCE, 0x3C, 0x80];
        let mut idr = vec![0x65];
        idr.extend(filler(3_000, 7));
        let p = Packetizer::new(1_200);
        let mut out = Vec::new();
        p.packetize(&[&sps, &pps, &idr], &mut out);
        // STAP-A(SPS, PPS), then 3 FU-As for 3000 body bytes in 1198-byte pieces.
        assert_eq!(out.len(), 4, "{out:?}");
        assert_eq!(nal_type(&out[0].payload), Some(nal::STAP_A));
        assert_eq!(out[0].payload[0] & 0x60, 0x60, "NRI is the maximum");
        for (k, u) in out[1..].iter().enumerate() {
            assert!(u.payload.len() <= 1_200);
            assert_eq!(u.payload[0], 0x60 | nal::FU_A);
            assert_eq!(u.payload[1] & 0x1F, nal::IDR);
            assert_eq!(u.payload[1] & 0x80 != 0, k == 0, "S bit");
            assert_eq!(u.payload[1] & 0x40 != 0, k == 2, "E bit");
        }
        let markers: Vec<bool> = out.iter().map(|u| u.marker).collect();
        assert_eq!(markers, [false, false, false, true]);

        let mut d = Depacketizer::new();
        let mut seq = 65_534; // across the wrap
        feed(&mut d, &out, &mut seq, 90_000);
        let Some(Depacketized::Complete(au)) = d.poll() else {
            panic!("no access unit");
        };
        assert!(au.keyframe);
        assert_eq!(au.annexb, annexb(&[&sps, &pps, &idr]));
        assert_eq!(au.timestamp, 90_000);
        assert_eq!(d.poll(), None);
    }

    #[test]
    fn round_trip_of_many_units_of_every_size() {
        let p = Packetizer::new(100);
        let mut d = Depacketizer::new();
        let mut seq = 10;
        for (frame, sizes) in [
            vec![1usize],
            vec![2, 3, 4],
            vec![99, 100, 101],
            vec![98, 1, 250, 40, 40, 40],
            vec![1_000],
        ]
        .into_iter()
        .enumerate()
        {
            let units: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(k, &n)| {
                    let mut u = filler(n, (frame * 16 + k) as u8);
                    u[0] = 0x41; // non-IDR slice, NRI 2
                    u
                })
                .collect();
            let refs: Vec<&[u8]> = units.iter().map(Vec::as_slice).collect();
            let mut out = Vec::new();
            p.packetize(&refs, &mut out);
            assert!(out.iter().all(|u| u.payload.len() <= 100));
            feed(&mut d, &out, &mut seq, frame as u32 * 3_000);
            assert_eq!(
                d.poll(),
                Some(Depacketized::Complete(AccessUnit {
                    ssrc: 0x1234,
                    timestamp: frame as u32 * 3_000,
                    annexb: annexb(&refs),
                    keyframe: false,
                })),
                "frame {frame} of sizes {sizes:?}"
            );
        }
    }

    #[test]
    fn hand_built_stap_a_and_fu_a_depacketize() {
        // A STAP-A as another implementation might send it: SPS, PPS, SEI.
        let stap = [
            0x78, // F=0, NRI=3, type 24
            0, 3, 0x67, 0x42, 0x1F, // SPS
            0, 2, 0x68, 0xCE, // PPS
            0, 2, 0x06, 0x05, // SEI
        ];
        // An IDR (header 0x65) cut into three FU-As.
        let fu = [
            vec![0x7C, 0x85, 1, 2, 3],
            vec![0x7C, 0x05, 4, 5],
            vec![0x7C, 0x45, 6],
        ];
        let mut d = Depacketizer::new();
        d.handle_packet(&header(1, 3_000, false), &stap);
        for (k, f) in fu.iter().enumerate() {
            d.handle_packet(&header(2 + k as u16, 3_000, k == 2), f);
        }
        let expected = annexb(&[
            &[0x67, 0x42, 0x1F],
            &[0x68, 0xCE],
            &[0x06, 0x05],
            &[0x65, 1, 2, 3, 4, 5, 6],
        ]);
        match d.poll() {
            Some(Depacketized::Complete(au)) => {
                assert!(au.keyframe);
                assert_eq!(au.annexb, expected);
            }
            other => panic!("{other:?}"),
        }
        // A single NAL unit packet: a P slice, no marker; the next timestamp
        // closes it.
        d.handle_packet(&header(5, 6_000, false), &[0x41, 9, 9]);
        d.handle_packet(&header(6, 9_000, true), &[0x41, 8]);
        assert_eq!(
            d.poll(),
            Some(Depacketized::Complete(AccessUnit {
                ssrc: 0x1234,
                timestamp: 6_000,
                annexb: annexb(&[&[0x41, 9, 9]]),
                keyframe: false
            }))
        );
        assert!(matches!(d.poll(), Some(Depacketized::Complete(_))));
        assert_eq!(d.malformed_packets(), 0);
    }

    #[test]
    fn a_gap_drops_the_access_unit_and_the_next_one_survives() {
        let mut d = Depacketizer::new();
        // Frame 1: FU-A start, (lost middle), end.
        d.handle_packet(&header(1, 3_000, false), &[0x7C, 0x85, 1]);
        d.handle_packet(&header(3, 3_000, true), &[0x7C, 0x45, 3]);
        assert_eq!(
            d.poll(),
            Some(Depacketized::Dropped {
                timestamp: 3_000,
                reason: DropReason::Loss
            })
        );
        // Frame 2 complete.
        d.handle_packet(&header(4, 6_000, true), &[0x41, 1]);
        assert!(matches!(d.poll(), Some(Depacketized::Complete(_))));
        // Frame 3's marker packet lost; frame 4's first packet reveals it,
        // and frame 4 itself is suspect too (the gap may have been its head).
        d.handle_packet(&header(5, 9_000, false), &[0x41, 1]);
        d.handle_packet(&header(7, 12_000, true), &[0x41, 2]);
        assert_eq!(
            d.poll(),
            Some(Depacketized::Dropped {
                timestamp: 9_000,
                reason: DropReason::Loss
            })
        );
        assert_eq!(
            d.poll(),
            Some(Depacketized::Dropped {
                timestamp: 12_000,
                reason: DropReason::Loss
            })
        );
        // A late packet is ignored.
        d.handle_packet(&header(6, 9_000, false), &[0x41, 1]);
        assert_eq!(d.poll(), None);
        assert_eq!(d.late_packets(), 1);
    }

    #[test]
    fn malformed_payloads_drop_the_unit_and_never_panic() {
        let bad: [&[u8]; 9] = [
            &[],
            &[0x80 | 0x41, 1],   // forbidden bit
            &[0x78],             // empty STAP-A
            &[0x78, 0, 5, 0x67], // STAP-A unit runs past the end
            &[0x78, 0, 0],       // zero-size unit
            &[0x7C],             // FU-A without header
            &[0x7C, 0x05, 1],    // FU-A continuation without start
            &[0x7C, 0xC5, 1],    // S and E together
            &[0x79, 0, 1, 0x41], // STAP-B in mode 1
        ];
        let mut d = Depacketizer::new();
        for (k, payload) in bad.iter().enumerate() {
            d.handle_packet(&header(k as u16, k as u32 * 10, true), payload);
            assert_eq!(
                d.poll(),
                Some(Depacketized::Dropped {
                    timestamp: k as u32 * 10,
                    reason: DropReason::Malformed
                }),
                "payload {payload:?}"
            );
        }
        // An FU-A that never ends (sequence numbers go on from the loop's).
        d.handle_packet(&header(9, 500, false), &[0x7C, 0x85, 1]);
        d.handle_packet(&header(10, 500, true), &[0x41, 1]);
        assert!(matches!(
            d.poll(),
            Some(Depacketized::Dropped {
                reason: DropReason::Malformed,
                ..
            })
        ));
    }

    #[test]
    fn a_new_ssrc_restarts_the_stream() {
        let mut d = Depacketizer::new();
        d.handle_packet(&header(100, 3_000, false), &[0x7C, 0x85, 1]);
        let mut other = header(7, 50, true);
        other.ssrc = 99;
        d.handle_packet(&other, &[0x65, 1]);
        assert!(matches!(
            d.poll(),
            Some(Depacketized::Dropped {
                reason: DropReason::Loss,
                ..
            })
        ));
        match d.poll() {
            Some(Depacketized::Complete(au)) => assert_eq!((au.ssrc, au.keyframe), (99, true)),
            other => panic!("{other:?}"),
        }
    }
}
