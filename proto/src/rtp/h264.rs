//! H.264 over RTP (RFC 6184): received payloads → Annex B access units for
//! the decoder, and our encoder's Annex B access units → RTP payloads.
//!
//! ## Receive: [`H264Depacketizer`]
//! Packets go in with their RTP sequence number, timestamp and marker bit
//! ([`H264Depacketizer::handle_packet`]); whole access units come out of
//! [`H264Depacketizer::poll_access_unit`] as an Annex B byte stream (every NAL
//! unit behind a `00 00 00 01` start code), which is what openh264 decodes.
//!
//! Input is expected roughly in order. A small reorder window (counted in
//! packets, not time: this is a sans-IO core) absorbs the reordering seen on
//! real networks; anything later than that is counted as late and dropped. If
//! the stream pauses while a packet is being waited for, the driver calls
//! [`H264Depacketizer::flush`] from its timer.
//!
//! An access unit with a hole in it is never emitted: a decoder fed half a
//! picture produces garbage that then propagates through every P-frame. It is
//! dropped, counted, and [`H264Depacketizer::needs_keyframe`] stays raised
//! until a keyframe gets through, so the bridge can send PLI/FIR. By default
//! the P-frames that follow are still emitted (the decoder conceals); with
//! [`H264Depacketizer::set_freeze_until_keyframe`] they are held back and the
//! participant's tile freezes instead.
//!
//! ## Send: [`H264Packetizer`]
//! Packetization mode 1 (non-interleaved) uses a single NAL unit packet when a
//! NAL fits the MTU, STAP-A to aggregate consecutive small NALs (typically SPS
//! and PPS, with the IDR too when it is small) and FU-A to fragment large NALs.
//! Mode 0 (single NAL unit) cannot fragment: the encoder must be configured
//! with a slice size limit (openh264: `SM_SIZELIMITED_SLICE` with
//! `uiSliceSizeConstraint` ≤ MTU) or [`H264Packetizer::packetize`] fails with
//! [`H264Error::NalTooLarge`].
//!
//! STAP-B, MTAP and FU-B (interleaved mode, RFC 6184 §5.4) are never
//! negotiated by us and are counted as unsupported when received.

use std::collections::VecDeque;

use super::packet::{MediaTime, RtpPacket};

/// An access unit larger than this is dropped (a 1080p IDR is rarely above 1 MiB).
pub const MAX_ACCESS_UNIT_BYTES: usize = 4 * 1024 * 1024;
/// An access unit with more NAL units than this is dropped.
pub const MAX_NALS_PER_ACCESS_UNIT: usize = 1024;
/// Completed access units waiting for [`H264Depacketizer::poll_access_unit`];
/// beyond this the oldest is discarded (the caller is not draining).
pub const MAX_PENDING_ACCESS_UNITS: usize = 8;
/// Default reorder window, in packets.
pub const DEFAULT_REORDER_WINDOW: usize = 8;
/// Largest reorder window accepted by [`H264Depacketizer::with_reorder_window`].
pub const MAX_REORDER_WINDOW: usize = 64;
/// A sequence number this far behind the expected one is a stream restart,
/// not a late packet (RFC 3550 §A.1 uses the same figure).
const MAX_MISORDER: i16 = 100;
/// A jump forward further than this is a restart too: don't wait for the gap.
const MAX_DROPOUT: i16 = 3000;

/// The smallest MTU [`H264Packetizer`] works with; smaller values are raised to it.
pub const MIN_MTU: usize = 16;

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// NAL unit types (H.264 Table 7-1) and RTP payload structure types (RFC 6184 §5.2).
pub mod nal_type {
    pub const SLICE: u8 = 1;
    pub const IDR: u8 = 5;
    pub const SEI: u8 = 6;
    pub const SPS: u8 = 7;
    pub const PPS: u8 = 8;
    pub const AUD: u8 = 9;
    pub const STAP_A: u8 = 24;
    pub const STAP_B: u8 = 25;
    pub const MTAP16: u8 = 26;
    pub const MTAP24: u8 = 27;
    pub const FU_A: u8 = 28;
    pub const FU_B: u8 = 29;
}

/// Misuse of the H.264 packetizer. (A peer sending bad payloads is not an
/// error: the depacketizer counts it in [`DepacketizerStats`] and moves on.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum H264Error {
    /// The access unit did not contain a `00 00 01` start code.
    #[error("access unit is not an Annex B byte stream")]
    NotAnnexB,
    /// Packetization mode 0 and a NAL unit that does not fit: the encoder
    /// needs a slice size limit.
    #[error("NAL unit of {size} bytes exceeds the {mtu}-byte MTU in single NAL unit mode")]
    NalTooLarge { size: usize, mtu: usize },
}

/// RFC 6184 packetization modes we implement (mode 2, interleaved, is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketizationMode {
    /// `packetization-mode=0`: one NAL unit per packet, nothing else.
    SingleNal,
    /// `packetization-mode=1`: single NAL, STAP-A and FU-A.
    NonInterleaved,
}

impl PacketizationMode {
    /// From the SDP `packetization-mode` value; `None` for 2 (interleaved) and up.
    pub fn from_sdp(value: u8) -> Option<Self> {
        match value {
            0 => Some(PacketizationMode::SingleNal),
            1 => Some(PacketizationMode::NonInterleaved),
            _ => None,
        }
    }

    pub fn sdp_value(self) -> u8 {
        match self {
            PacketizationMode::SingleNal => 0,
            PacketizationMode::NonInterleaved => 1,
        }
    }
}

/// One picture's worth of H.264, ready for the decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    pub timestamp: MediaTime,
    /// Annex B: each NAL unit preceded by `00 00 00 01`.
    pub data: Vec<u8>,
    /// Contains an IDR slice, or both an SPS and a PPS (a decoder can start here).
    pub keyframe: bool,
    /// Ended by the marker bit. `false` means the next timestamp (or
    /// [`H264Depacketizer::flush`]) ended it; no packet of it is known to be
    /// missing, but the sender did not mark its end.
    pub complete: bool,
}

/// Counters for metrics. All monotonically increasing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DepacketizerStats {
    /// Packets passed to `handle_packet`.
    pub packets: u64,
    /// Access units emitted.
    pub access_units: u64,
    /// Of those, keyframes.
    pub keyframes: u64,
    /// Access units dropped because part of them was lost, malformed,
    /// unsupported or over the size limits.
    pub dropped_access_units: u64,
    /// Sequence numbers never received (gaps).
    pub lost_packets: u64,
    /// Duplicates and packets that arrived after their place was given up.
    pub late_packets: u64,
    /// Payloads that do not parse as RFC 6184.
    pub malformed_packets: u64,
    /// STAP-B, MTAP16/24, FU-B and reserved NAL types.
    pub unsupported_packets: u64,
    /// Access units over [`MAX_ACCESS_UNIT_BYTES`] or [`MAX_NALS_PER_ACCESS_UNIT`].
    pub oversize_access_units: u64,
    /// Emitted access units discarded because the caller did not poll them.
    pub overflowed_access_units: u64,
    /// Non-keyframes held back while waiting for a keyframe (freeze mode only).
    pub skipped_waiting_keyframe: u64,
    /// Times `needs_keyframe()` went from false to true.
    pub keyframe_requests: u64,
}

/// A packet held in the reorder window.
#[derive(Debug)]
struct Held {
    ext_seq: u64,
    timestamp: MediaTime,
    marker: bool,
    payload: Vec<u8>,
}

/// The access unit being reassembled.
#[derive(Debug)]
struct Assembly {
    timestamp: MediaTime,
    data: Vec<u8>,
    nals: usize,
    /// Something is missing or wrong: drop it when it ends.
    broken: bool,
    oversize: bool,
    /// We may have missed its first packets: its first NAL must look like
    /// the start of a picture.
    check_start: bool,
    /// NAL type of the FU-A in progress.
    fu: Option<u8>,
    has_idr: bool,
    has_sps: bool,
    has_pps: bool,
}

impl Assembly {
    fn new(timestamp: MediaTime, check_start: bool) -> Self {
        Assembly {
            timestamp,
            data: Vec::new(),
            nals: 0,
            broken: false,
            oversize: false,
            check_start,
            fu: None,
            has_idr: false,
            has_sps: false,
            has_pps: false,
        }
    }

    fn fits(&mut self, extra: usize) -> bool {
        if self.data.len().saturating_add(extra) > MAX_ACCESS_UNIT_BYTES {
            self.oversize = true;
            self.broken = true;
            return false;
        }
        true
    }

    /// Start a NAL unit with `header` followed by `body` (all of it, or an FU's first fragment).
    fn begin_nal(&mut self, header: u8, body: &[u8]) {
        if self.broken {
            return;
        }
        if self.nals >= MAX_NALS_PER_ACCESS_UNIT {
            self.oversize = true;
            self.broken = true;
            return;
        }
        if !self.fits(START_CODE.len() + 1 + body.len()) {
            return;
        }
        let t = header & 0x1f;
        if self.check_start {
            self.check_start = false;
            if !starts_picture(t, body.first().copied()) {
                self.broken = true;
                return;
            }
        }
        match t {
            nal_type::IDR => self.has_idr = true,
            nal_type::SPS => self.has_sps = true,
            nal_type::PPS => self.has_pps = true,
            _ => {}
        }
        self.data.extend_from_slice(&START_CODE);
        self.data.push(header);
        self.data.extend_from_slice(body);
        self.nals += 1;
    }

    fn extend(&mut self, bytes: &[u8]) {
        if !self.broken && self.fits(bytes.len()) {
            self.data.extend_from_slice(bytes);
        }
    }
}

/// Whether a NAL unit can be the first of an access unit we joined after a
/// gap: a parameter set, SEI or delimiter (which precede slices, H.264
/// §7.4.1.2.3), or a slice with `first_mb_in_slice == 0` (its first bit is the
/// Exp-Golomb code `1`). Heuristic: with arbitrary slice order (not allowed in
/// Constrained Baseline) the first slice sent need not start at MB 0.
fn starts_picture(nal_type: u8, first_body_byte: Option<u8>) -> bool {
    match nal_type {
        nal_type::SEI | nal_type::SPS | nal_type::PPS | nal_type::AUD => true,
        nal_type::SLICE | nal_type::IDR => first_body_byte.is_some_and(|b| b & 0x80 != 0),
        _ => false,
    }
}

/// Reassembles RFC 6184 payloads (single NAL, STAP-A, FU-A) into Annex B
/// access units. See the module docs for loss handling.
#[derive(Debug)]
pub struct H264Depacketizer {
    reorder_window: usize,
    freeze_until_keyframe: bool,
    /// Extended sequence number expected next.
    next_seq: Option<u64>,
    held: Vec<Held>,
    au: Option<Assembly>,
    /// The next access unit started may have lost its head.
    after_gap: bool,
    needs_keyframe: bool,
    pending: VecDeque<AccessUnit>,
    stats: DepacketizerStats,
}

impl Default for H264Depacketizer {
    fn default() -> Self {
        Self::new()
    }
}

impl H264Depacketizer {
    /// A depacketizer with a [`DEFAULT_REORDER_WINDOW`]-packet reorder window.
    /// It starts out needing a keyframe: a decoder cannot start mid-GOP.
    pub fn new() -> Self {
        Self::with_reorder_window(DEFAULT_REORDER_WINDOW)
    }

    /// `window` packets may be held while waiting for a missing one (capped at
    /// [`MAX_REORDER_WINDOW`]); 0 means input is in order and any gap is loss
    /// (e.g. behind a jitter buffer).
    pub fn with_reorder_window(window: usize) -> Self {
        H264Depacketizer {
            reorder_window: window.min(MAX_REORDER_WINDOW),
            freeze_until_keyframe: false,
            next_seq: None,
            held: Vec::new(),
            au: None,
            after_gap: true,
            needs_keyframe: true,
            pending: VecDeque::new(),
            stats: DepacketizerStats::default(),
        }
    }

    /// Hold back non-keyframes while [`Self::needs_keyframe`] is raised.
    pub fn set_freeze_until_keyframe(&mut self, freeze: bool) {
        self.freeze_until_keyframe = freeze;
    }

    /// True from the start, and from any loss, until a keyframe is emitted.
    /// The bridge sends PLI/FIR (rate-limited on its side) while this holds.
    pub fn needs_keyframe(&self) -> bool {
        self.needs_keyframe
    }

    pub fn stats(&self) -> DepacketizerStats {
        self.stats
    }

    /// Convenience for a parsed packet.
    pub fn handle_rtp(&mut self, packet: &RtpPacket<'_>) {
        self.handle_packet(
            packet.sequence,
            packet.timestamp,
            packet.marker,
            packet.payload,
        );
    }

    /// One RTP payload of this stream, in arrival order.
    pub fn handle_packet(
        &mut self,
        sequence: u16,
        timestamp: MediaTime,
        marker: bool,
        payload: &[u8],
    ) {
        self.stats.packets += 1;
        let Some(next) = self.next_seq else {
            // Far from zero so that going backwards never underflows.
            let ext = (1u64 << 40) + u64::from(sequence);
            self.next_seq = Some(ext);
            self.deliver(ext, timestamp, marker, payload);
            return;
        };
        let diff = sequence.wrapping_sub(next as u16) as i16;
        if diff == 0 {
            self.deliver(next, timestamp, marker, payload);
            self.drain_held();
            return;
        }
        if (-MAX_MISORDER..0).contains(&diff) {
            self.stats.late_packets += 1;
            return;
        }
        let ext = next.wrapping_add_signed(i64::from(diff));
        if !(0..=MAX_DROPOUT).contains(&diff) || self.reorder_window == 0 {
            // Restart, huge jump, or no reordering allowed: stop waiting.
            self.release_held();
            self.deliver(ext, timestamp, marker, payload);
            return;
        }
        if self.held.iter().any(|h| h.ext_seq == ext) {
            self.stats.late_packets += 1;
            return;
        }
        let at = self.held.partition_point(|h| h.ext_seq < ext);
        self.held.insert(
            at,
            Held {
                ext_seq: ext,
                timestamp,
                marker,
                payload: payload.to_vec(),
            },
        );
        while self.held.len() > self.reorder_window {
            let h = self.held.remove(0);
            self.deliver(h.ext_seq, h.timestamp, h.marker, &h.payload);
            self.drain_held();
        }
    }

    /// Give up waiting: packets held for reordering are processed (the
    /// missing ones counted lost) and the access unit in progress, if whole
    /// so far, is emitted as incomplete. For the driver's timer when the
    /// stream goes quiet, and at the end of a stream.
    pub fn flush(&mut self) {
        self.release_held();
        self.finish(false);
    }

    /// The next reassembled access unit, oldest first.
    pub fn poll_access_unit(&mut self) -> Option<AccessUnit> {
        self.pending.pop_front()
    }

    fn drain_held(&mut self) {
        while let Some(next) = self.next_seq {
            if self.held.first().is_none_or(|h| h.ext_seq != next) {
                break;
            }
            let h = self.held.remove(0);
            self.deliver(h.ext_seq, h.timestamp, h.marker, &h.payload);
        }
    }

    fn release_held(&mut self) {
        for h in std::mem::take(&mut self.held) {
            self.deliver(h.ext_seq, h.timestamp, h.marker, &h.payload);
        }
    }

    fn deliver(&mut self, ext: u64, timestamp: MediaTime, marker: bool, payload: &[u8]) {
        let expected = self.next_seq.unwrap_or(ext);
        let gap = ext != expected;
        if ext > expected {
            self.stats.lost_packets += ext - expected;
        }
        self.next_seq = Some(ext.wrapping_add(1));
        self.assemble(timestamp, marker, payload, gap);
    }

    fn raise_keyframe_request(&mut self) {
        if !self.needs_keyframe {
            self.needs_keyframe = true;
            self.stats.keyframe_requests += 1;
        }
    }

    fn assemble(&mut self, timestamp: MediaTime, marker: bool, payload: &[u8], gap: bool) {
        if gap {
            // Whatever was lost, some picture lost data: references are broken.
            self.raise_keyframe_request();
            if let Some(au) = &mut self.au {
                // Either a hole in it or (new timestamp) its tail went missing.
                au.broken = true;
            }
            self.after_gap = true;
        }
        if self.au.as_ref().is_some_and(|au| au.timestamp != timestamp) {
            self.finish(false);
        }
        let check_start = std::mem::take(&mut self.after_gap);
        let au = self
            .au
            .get_or_insert_with(|| Assembly::new(timestamp, check_start));

        match parse_payload(au, payload) {
            Ok(()) => {}
            Err(Reject::Malformed) => {
                self.stats.malformed_packets += 1;
                au.broken = true;
            }
            Err(Reject::Unsupported { breaks }) => {
                self.stats.unsupported_packets += 1;
                au.broken |= breaks;
            }
        }

        if marker {
            self.finish(true);
        }
    }

    fn finish(&mut self, complete: bool) {
        let Some(mut au) = self.au.take() else {
            return;
        };
        if au.fu.is_some() {
            // The FU-A end never came.
            au.broken = true;
        }
        if au.oversize {
            self.stats.oversize_access_units += 1;
        }
        if au.broken {
            self.stats.dropped_access_units += 1;
            self.raise_keyframe_request();
            return;
        }
        if au.nals == 0 {
            return;
        }
        let keyframe = au.has_idr || (au.has_sps && au.has_pps);
        if keyframe {
            self.needs_keyframe = false;
            self.stats.keyframes += 1;
        } else if self.needs_keyframe && self.freeze_until_keyframe {
            self.stats.skipped_waiting_keyframe += 1;
            return;
        }
        if self.pending.len() >= MAX_PENDING_ACCESS_UNITS {
            self.pending.pop_front();
            self.stats.overflowed_access_units += 1;
            self.raise_keyframe_request();
        }
        self.stats.access_units += 1;
        self.pending.push_back(AccessUnit {
            timestamp: au.timestamp,
            data: au.data,
            keyframe,
            complete,
        });
    }
}

enum Reject {
    Malformed,
    /// `breaks`: the packet carried picture data we cannot use.
    Unsupported {
        breaks: bool,
    },
}

/// Append one RTP payload's NAL units to `au`.
fn parse_payload(au: &mut Assembly, payload: &[u8]) -> Result<(), Reject> {
    let (&indicator, rest) = payload.split_first().ok_or(Reject::Malformed)?;
    let t = indicator & 0x1f;
    match t {
        1..=23 => {
            if au.fu.take().is_some() {
                au.broken = true;
            }
            au.begin_nal(indicator, rest);
            Ok(())
        }
        nal_type::STAP_A => {
            if au.fu.take().is_some() {
                au.broken = true;
            }
            if rest.is_empty() {
                return Err(Reject::Malformed);
            }
            let mut rest = rest;
            while !rest.is_empty() {
                let [hi, lo, tail @ ..] = rest else {
                    return Err(Reject::Malformed);
                };
                let size = usize::from(u16::from_be_bytes([*hi, *lo]));
                if size == 0 || size > tail.len() {
                    return Err(Reject::Malformed);
                }
                let (nal, after) = tail.split_at(size);
                if let Some((&header, body)) = nal.split_first() {
                    au.begin_nal(header, body);
                }
                rest = after;
            }
            Ok(())
        }
        nal_type::FU_A => {
            let (&fu_header, data) = rest.split_first().ok_or(Reject::Malformed)?;
            let start = fu_header & 0x80 != 0;
            let end = fu_header & 0x40 != 0;
            let fu_type = fu_header & 0x1f;
            if !(1..=23).contains(&fu_type) {
                return Err(Reject::Malformed);
            }
            if start {
                if au.fu.is_some() {
                    au.broken = true;
                }
                au.begin_nal((indicator & 0xe0) | fu_type, data);
                au.fu = Some(fu_type);
            } else {
                match au.fu {
                    // Its start was lost (or we joined mid-NAL).
                    None => au.broken = true,
                    Some(open) if open != fu_type => return Err(Reject::Malformed),
                    Some(_) => au.extend(data),
                }
            }
            if end {
                au.fu = None;
            }
            Ok(())
        }
        nal_type::STAP_B | nal_type::MTAP16 | nal_type::MTAP24 | nal_type::FU_B => {
            Err(Reject::Unsupported { breaks: true })
        }
        // 0, 30, 31: reserved; RFC 6184 §5.2 says to ignore them.
        _ => Err(Reject::Unsupported { breaks: false }),
    }
}

/// Whether an RTP payload (RFC 6184) starts a keyframe: it is, or its
/// aggregate holds, or its fragment starts, an IDR slice or a sequence
/// parameter set (room systems send SPS, PPS, IDR in that order). What a
/// relay that does not depacketize needs to know where a receiver can start.
pub fn starts_keyframe(payload: &[u8]) -> bool {
    let is_key = |t: u8| t == nal_type::IDR || t == nal_type::SPS;
    let Some((&header, rest)) = payload.split_first() else {
        return false;
    };
    match header & 0x1f {
        nal_type::STAP_A => {
            let mut rest = rest;
            while rest.len() >= 3 {
                let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                if is_key(rest[2] & 0x1f) {
                    return true;
                }
                rest = rest.get(2 + len..).unwrap_or_default();
            }
            false
        }
        nal_type::FU_A => rest
            .first()
            .is_some_and(|&fu| fu & 0x80 != 0 && is_key(fu & 0x1f)),
        t => is_key(t),
    }
}

/// The NAL units of an Annex B byte stream, without start codes or the
/// trailing zero bytes before the next start code. Bytes before the first
/// start code are skipped.
pub fn annex_b_nals(data: &[u8]) -> AnnexBNals<'_> {
    let rest = match find_start_code(data) {
        Some(i) => &data[i + 3..],
        None => &[],
    };
    AnnexBNals { rest }
}

/// Iterator returned by [`annex_b_nals`].
#[derive(Debug, Clone)]
pub struct AnnexBNals<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for AnnexBNals<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while !self.rest.is_empty() {
            let (nal, next) = match find_start_code(self.rest) {
                Some(i) => (&self.rest[..i], &self.rest[i + 3..]),
                None => (self.rest, &[][..]),
            };
            self.rest = next;
            let len = nal.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            if len > 0 {
                return Some(&nal[..len]);
            }
        }
        None
    }
}

fn find_start_code(data: &[u8]) -> Option<usize> {
    data.windows(3).position(|w| w == [0, 0, 1])
}

/// Splits Annex B access units into RFC 6184 payloads.
#[derive(Debug, Clone)]
pub struct H264Packetizer {
    mtu: usize,
    mode: PacketizationMode,
}

impl H264Packetizer {
    /// `mtu` is the largest RTP *payload* (the caller subtracts IP/UDP/RTP/SRTP
    /// overhead); it is raised to [`MIN_MTU`] and capped at 65535.
    pub fn new(mtu: usize, mode: PacketizationMode) -> Self {
        H264Packetizer {
            mtu: mtu.clamp(MIN_MTU, usize::from(u16::MAX)),
            mode,
        }
    }

    pub fn mtu(&self) -> usize {
        self.mtu
    }

    pub fn mode(&self) -> PacketizationMode {
        self.mode
    }

    /// The RTP payloads for one access unit, in order. All share the access
    /// unit's timestamp; the marker bit goes on the last one. An access unit
    /// without NAL units gives no payloads.
    pub fn packetize(&self, access_unit: &[u8]) -> Result<Vec<Vec<u8>>, H264Error> {
        if find_start_code(access_unit).is_none() {
            return Err(H264Error::NotAnnexB);
        }
        let nals: Vec<&[u8]> = annex_b_nals(access_unit).collect();
        let mut out = Vec::new();
        match self.mode {
            PacketizationMode::SingleNal => {
                if let Some(big) = nals.iter().find(|n| n.len() > self.mtu) {
                    return Err(H264Error::NalTooLarge {
                        size: big.len(),
                        mtu: self.mtu,
                    });
                }
                out.extend(nals.iter().map(|n| n.to_vec()));
            }
            PacketizationMode::NonInterleaved => {
                let mut i = 0;
                while i < nals.len() {
                    let nal = nals[i];
                    if nal.len() > self.mtu {
                        self.fragment(nal, &mut out);
                        i += 1;
                        continue;
                    }
                    // How many of the following NALs fit in one STAP-A with this one.
                    let mut size = 1 + 2 + nal.len();
                    let mut j = i + 1;
                    while let Some(n) = nals.get(j) {
                        if size + 2 + n.len() > self.mtu {
                            break;
                        }
                        size += 2 + n.len();
                        j += 1;
                    }
                    if j - i >= 2 {
                        out.push(stap_a(&nals[i..j], size));
                    } else {
                        out.push(nal.to_vec());
                    }
                    i = j;
                }
            }
        }
        Ok(out)
    }

    fn fragment(&self, nal: &[u8], out: &mut Vec<Vec<u8>>) {
        let Some((&header, body)) = nal.split_first() else {
            return;
        };
        let indicator = (header & 0xe0) | nal_type::FU_A;
        let chunks = body.chunks(self.mtu - 2);
        let last = chunks.len().saturating_sub(1);
        for (k, chunk) in chunks.enumerate() {
            let mut fu_header = header & 0x1f;
            if k == 0 {
                fu_header |= 0x80;
            }
            if k == last {
                fu_header |= 0x40;
            }
            let mut p = Vec::with_capacity(2 + chunk.len());
            p.push(indicator);
            p.push(fu_header);
            p.extend_from_slice(chunk);
            out.push(p);
        }
    }
}

/// A STAP-A of `nals` (each ≤ 65535 bytes, checked by the caller through the MTU).
fn stap_a(nals: &[&[u8]], size: usize) -> Vec<u8> {
    // F is the OR of the aggregated F bits, NRI their maximum (RFC 6184 §5.7).
    let f = nals.iter().fold(0, |acc, n| acc | (n[0] & 0x80));
    let nri = nals.iter().map(|n| n[0] & 0x60).max().unwrap_or(0);
    let mut p = Vec::with_capacity(size);
    p.push(f | nri | nal_type::STAP_A);
    for n in nals {
        p.extend_from_slice(&(n.len() as u16).to_be_bytes());
        p.extend_from_slice(n);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// A NAL with `header`, a first-MB-zero slice header bit and `len` bytes
    /// in total, with no zero bytes (so no accidental start codes).
    fn nal(rng: &mut XorShift, header: u8, len: usize) -> Vec<u8> {
        let mut v = vec![header];
        for k in 1..len {
            let b = (rng.next() as u8).max(1);
            v.push(if k == 1 { b | 0x80 } else { b });
        }
        v
    }

    fn annex_b(nals: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for n in nals {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(n);
        }
        out
    }

    fn drain(d: &mut H264Depacketizer) -> Vec<AccessUnit> {
        std::iter::from_fn(|| d.poll_access_unit()).collect()
    }

    /// Feed payloads as one access unit: consecutive sequence numbers from
    /// `seq`, marker on the last.
    fn feed(d: &mut H264Depacketizer, seq: &mut u16, ts: u32, payloads: &[Vec<u8>]) {
        for (k, p) in payloads.iter().enumerate() {
            d.handle_packet(*seq, MediaTime(ts), k + 1 == payloads.len(), p);
            *seq = seq.wrapping_add(1);
        }
    }

    fn random_access_units(rng: &mut XorShift, count: usize) -> Vec<Vec<Vec<u8>>> {
        (0..count)
            .map(|i| {
                let big = |rng: &mut XorShift| match rng.below(4) {
                    0 => 2 + rng.below(30) as usize,
                    1 => 2 + rng.below(300) as usize,
                    2 => 2 + rng.below(3000) as usize,
                    _ => 2 + rng.below(20_000) as usize,
                };
                if i % 10 == 0 {
                    let sps_len = 8 + rng.below(10) as usize;
                    let sps = nal(rng, 0x67, sps_len);
                    let pps = nal(rng, 0x68, 4);
                    let idr_len = big(rng);
                    let idr = nal(rng, 0x65, idr_len);
                    vec![sps, pps, idr]
                } else {
                    (0..1 + rng.below(4))
                        .map(|_| {
                            let len = big(rng);
                            nal(rng, 0x41, len)
                        })
                        .collect()
                }
            })
            .collect()
    }

    #[test]
    fn h264_roundtrip_random_sizes() -> Result<(), H264Error> {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for (mtu, mode) in [
            (1200, PacketizationMode::NonInterleaved),
            (100, PacketizationMode::NonInterleaved),
            (16, PacketizationMode::NonInterleaved),
            (u16::MAX as usize, PacketizationMode::SingleNal),
        ] {
            let p = H264Packetizer::new(mtu, mode);
            let mut d = H264Depacketizer::new();
            let mut seq = 65_500u16; // wraps
            let aus = random_access_units(&mut rng, 40);
            for (i, au) in aus.iter().enumerate() {
                let ts = 3000 * i as u32;
                let payloads = p.packetize(&annex_b(au))?;
                assert!(payloads.iter().all(|pl| pl.len() <= p.mtu()));
                feed(&mut d, &mut seq, ts, &payloads);
                let out = drain(&mut d);
                assert_eq!(out.len(), 1, "mtu {mtu} au {i}");
                assert!(out[0].data == annex_b(au), "mtu {mtu} au {i} differs");
                assert_eq!(out[0].timestamp, MediaTime(ts));
                assert_eq!(out[0].keyframe, i % 10 == 0);
                assert!(out[0].complete);
                assert!(!d.needs_keyframe());
            }
            let s = d.stats();
            assert_eq!(s.access_units, 40);
            assert_eq!(s.keyframes, 4);
            assert_eq!(
                s.lost_packets + s.dropped_access_units + s.malformed_packets,
                0
            );
        }
        Ok(())
    }

    #[test]
    fn h264_packetizer_shapes() -> Result<(), H264Error> {
        let mut rng = XorShift(7);
        let sps = nal(&mut rng, 0x67, 12);
        let pps = nal(&mut rng, 0x68, 4);
        let idr = nal(&mut rng, 0x65, 3000);
        let au = annex_b(&[sps.clone(), pps.clone(), idr.clone()]);

        let p = H264Packetizer::new(1200, PacketizationMode::NonInterleaved);
        let out = p.packetize(&au)?;
        // STAP-A(SPS, PPS), then the IDR in three FU-As.
        assert_eq!(out.len(), 4);
        assert_eq!(out[0][0] & 0x1f, nal_type::STAP_A);
        assert_eq!(out[0][0] & 0x60, 0x60); // max NRI
        assert_eq!(out[0].len(), 1 + 2 + 12 + 2 + 4);
        assert_eq!(&out[0][3..15], &sps[..]);
        assert_eq!(out[1][..2], [0x7c, 0x85]);
        assert_eq!(out[2][..2], [0x7c, 0x05]);
        assert_eq!(out[3][..2], [0x7c, 0x45]);
        assert!(out.iter().all(|p| p.len() <= 1200));

        // A small IDR goes into the same STAP-A.
        let small = nal(&mut rng, 0x65, 500);
        let out = p.packetize(&annex_b(&[sps.clone(), pps.clone(), small]))?;
        assert_eq!(out.len(), 1);

        // One NAL: no aggregation.
        let out = p.packetize(&annex_b(std::slice::from_ref(&pps)))?;
        assert_eq!(out, vec![pps.clone()]);

        // 3-byte start codes, leading junk and trailing zeros are tolerated.
        let mut loose = vec![9, 9, 0, 0, 1];
        loose.extend_from_slice(&sps);
        loose.extend_from_slice(&[0, 0, 0, 0, 1]);
        loose.extend_from_slice(&pps);
        loose.extend_from_slice(&[0, 0]);
        let nals: Vec<&[u8]> = annex_b_nals(&loose).collect();
        assert_eq!(nals, vec![&sps[..], &pps[..]]);

        // Mode 0 never aggregates nor fragments.
        let p0 = H264Packetizer::new(1200, PacketizationMode::SingleNal);
        assert_eq!(
            p0.packetize(&au),
            Err(H264Error::NalTooLarge {
                size: 3000,
                mtu: 1200
            })
        );
        assert_eq!(
            p0.packetize(&annex_b(&[sps.clone(), pps.clone()]))?,
            vec![sps, pps]
        );
        assert_eq!(p0.packetize(&[1, 2, 3]), Err(H264Error::NotAnnexB));
        assert_eq!(p0.packetize(&[0, 0, 1])?, Vec::<Vec<u8>>::new());
        assert_eq!(
            H264Packetizer::new(1, PacketizationMode::SingleNal).mtu(),
            MIN_MTU
        );
        Ok(())
    }

    #[test]
    fn h264_parses_hand_built_stap_a_and_fu_a() {
        let mut d = H264Depacketizer::new();
        // STAP-A: SPS, PPS, small IDR.
        let stap = [
            0x78, 0, 3, 0x67, 0x42, 0xe0, 0, 2, 0x68, 0xce, 0, 3, 0x65, 0x88, 0x84,
        ];
        d.handle_packet(1, MediaTime(90_000), true, &stap);
        let au = d.poll_access_unit().expect("one access unit");
        assert_eq!(
            au.data,
            [
                0, 0, 0, 1, 0x67, 0x42, 0xe0, 0, 0, 0, 1, 0x68, 0xce, 0, 0, 0, 1, 0x65, 0x88, 0x84
            ]
        );
        assert!(au.keyframe && au.complete);
        assert!(!d.needs_keyframe());

        // FU-A: a non-IDR slice (NRI 2) in three fragments.
        d.handle_packet(2, MediaTime(93_000), false, &[0x5c, 0x81, 0x9a, 0x01]);
        d.handle_packet(3, MediaTime(93_000), false, &[0x5c, 0x01, 0x02, 0x03]);
        assert!(d.poll_access_unit().is_none());
        d.handle_packet(4, MediaTime(93_000), true, &[0x5c, 0x41, 0x04]);
        let au = d.poll_access_unit().expect("one access unit");
        assert_eq!(au.data, [0, 0, 0, 1, 0x41, 0x9a, 0x01, 0x02, 0x03, 0x04]);
        assert!(!au.keyframe);

        // No marker: the next timestamp ends the access unit.
        d.handle_packet(5, MediaTime(96_000), false, &[0x41, 0x9a]);
        d.handle_packet(6, MediaTime(99_000), false, &[0x41, 0x9b]);
        let au = d.poll_access_unit().expect("ended by the timestamp");
        assert_eq!(au.timestamp, MediaTime(96_000));
        assert!(!au.complete);
        d.flush();
        let au = d.poll_access_unit().expect("ended by flush");
        assert_eq!(au.timestamp, MediaTime(99_000));
        assert!(d.poll_access_unit().is_none());
    }

    fn keyframe_payload() -> Vec<u8> {
        vec![
            0x78, 0, 3, 0x67, 0x42, 0xe0, 0, 2, 0x68, 0xce, 0, 3, 0x65, 0x88, 0x84,
        ]
    }

    #[test]
    fn h264_loss_inside_fu_drops_access_unit_and_requests_keyframe() {
        let mut d = H264Depacketizer::with_reorder_window(0);
        assert!(d.needs_keyframe(), "starts needing one");
        d.handle_packet(10, MediaTime(0), true, &keyframe_payload());
        assert!(d.poll_access_unit().is_some_and(|a| a.keyframe));
        assert!(!d.needs_keyframe());

        d.handle_packet(11, MediaTime(3000), false, &[0x5c, 0x81, 0x9a]);
        d.handle_packet(12, MediaTime(3000), false, &[0x5c, 0x01, 0x02]);
        // 13 lost
        d.handle_packet(14, MediaTime(3000), true, &[0x5c, 0x41, 0x04]);
        assert!(d.poll_access_unit().is_none());
        assert!(d.needs_keyframe());
        let s = d.stats();
        assert_eq!((s.lost_packets, s.dropped_access_units), (1, 1));
        assert_eq!(s.keyframe_requests, 1);

        // The next P-frame is whole: emitted (the decoder conceals), still asking.
        d.handle_packet(15, MediaTime(6000), true, &[0x41, 0x9a]);
        assert!(d.poll_access_unit().is_some_and(|a| !a.keyframe));
        assert!(d.needs_keyframe());
        // A keyframe clears it.
        d.handle_packet(16, MediaTime(9000), true, &keyframe_payload());
        assert!(d.poll_access_unit().is_some_and(|a| a.keyframe));
        assert!(!d.needs_keyframe());
        assert_eq!(d.stats().keyframe_requests, 1);
    }

    #[test]
    fn h264_freeze_until_keyframe() {
        let mut d = H264Depacketizer::new();
        d.set_freeze_until_keyframe(true);
        d.handle_packet(1, MediaTime(0), true, &[0x41, 0x9a]);
        assert!(d.poll_access_unit().is_none());
        assert_eq!(d.stats().skipped_waiting_keyframe, 1);
        d.handle_packet(2, MediaTime(3000), true, &keyframe_payload());
        d.handle_packet(3, MediaTime(6000), true, &[0x41, 0x9a]);
        assert_eq!(drain(&mut d).len(), 2);
    }

    #[test]
    fn h264_missing_fu_start_or_end() {
        let mut d = H264Depacketizer::with_reorder_window(0);
        d.handle_packet(1, MediaTime(0), true, &keyframe_payload());
        drain(&mut d);
        // FU end never comes, the next packet is a single NAL of the same picture.
        d.handle_packet(2, MediaTime(3000), false, &[0x5c, 0x81, 0x9a]);
        d.handle_packet(3, MediaTime(3000), true, &[0x41, 0x1a]);
        assert!(d.poll_access_unit().is_none());
        // FU middle without a start.
        d.handle_packet(4, MediaTime(6000), true, &[0x5c, 0x41, 0x9a]);
        assert!(d.poll_access_unit().is_none());
        // FU start at the end of a picture, no end before the next timestamp.
        d.handle_packet(5, MediaTime(9000), false, &[0x5c, 0x81, 0x9a]);
        d.handle_packet(6, MediaTime(12000), true, &[0x41, 0x9a]);
        assert_eq!(drain(&mut d).len(), 1);
        assert_eq!(d.stats().dropped_access_units, 3);
        assert_eq!(d.stats().lost_packets, 0);
        assert!(d.needs_keyframe());
    }

    #[test]
    fn h264_gap_before_a_picture_start_is_not_fatal_to_it() {
        let mut d = H264Depacketizer::with_reorder_window(0);
        d.handle_packet(1, MediaTime(0), true, &keyframe_payload());
        // 2, 3 lost (a whole picture); 4 starts a new IDR at MB 0.
        d.handle_packet(4, MediaTime(6000), true, &[0x65, 0x88]);
        let out = drain(&mut d);
        assert_eq!(out.len(), 2);
        assert!(!d.needs_keyframe());
        // 5 lost; 6 is a slice that does not start at MB 0: dropped.
        d.handle_packet(6, MediaTime(9000), true, &[0x41, 0x40]);
        assert_eq!(drain(&mut d).len(), 0);
        assert!(d.needs_keyframe());
        assert_eq!(d.stats().lost_packets, 3);
    }

    #[test]
    fn h264_reorder_window() -> Result<(), H264Error> {
        let mut rng = XorShift(42);
        let p = H264Packetizer::new(200, PacketizationMode::NonInterleaved);
        let aus = random_access_units(&mut rng, 20);
        let mut packets = Vec::new();
        let mut seq = 65_530u16;
        for (i, au) in aus.iter().enumerate() {
            let payloads = p.packetize(&annex_b(au))?;
            let n = payloads.len();
            for (k, pl) in payloads.into_iter().enumerate() {
                packets.push((seq, MediaTime(3000 * i as u32), k + 1 == n, pl));
                seq = seq.wrapping_add(1);
            }
        }
        // Swap neighbours and move some packets up to 5 places later. (Not
        // the first: it sets where the stream starts, anything before is late.)
        let mut shuffled = packets.clone();
        let mut k = 1;
        while k + 6 < shuffled.len() {
            match rng.below(3) {
                0 => shuffled.swap(k, k + 1),
                1 => {
                    let pkt = shuffled.remove(k);
                    shuffled.insert(k + 5, pkt);
                }
                _ => {}
            }
            k += 6;
        }
        // And a duplicate.
        shuffled.insert(10, shuffled[3].clone());
        let mut d = H264Depacketizer::new();
        let mut out = Vec::new();
        for (seq, ts, m, pl) in &shuffled {
            d.handle_packet(*seq, *ts, *m, pl);
            out.extend(drain(&mut d));
        }
        d.flush();
        out.extend(drain(&mut d));
        assert_eq!(out.len(), aus.len());
        for (i, (a, b)) in out.iter().zip(&aus).enumerate() {
            assert!(a.data == annex_b(b), "au {i} differs");
        }
        let s = d.stats();
        assert_eq!(
            (s.lost_packets, s.dropped_access_units, s.late_packets),
            (0, 0, 1)
        );

        // Window 0: the same input loses pictures, and the late packets are counted.
        let mut d = H264Depacketizer::with_reorder_window(0);
        for (seq, ts, m, pl) in &shuffled {
            d.handle_packet(*seq, *ts, *m, pl);
            drain(&mut d);
        }
        assert!(d.stats().dropped_access_units > 0);
        assert!(d.stats().late_packets > 1);
        Ok(())
    }

    #[test]
    fn h264_unsupported_and_reserved_types() {
        let mut d = H264Depacketizer::with_reorder_window(0);
        d.handle_packet(1, MediaTime(0), true, &keyframe_payload());
        drain(&mut d);
        for (k, t) in [25u8, 26, 27, 29].into_iter().enumerate() {
            let seq = 2 + 2 * k as u16;
            let ts = MediaTime(3000 * (k as u32 + 1));
            d.handle_packet(seq, ts, false, &[0x41, 0x9a]);
            d.handle_packet(seq + 1, ts, true, &[0x60 | t, 0x80, 1, 2, 3]);
        }
        assert!(drain(&mut d).is_empty());
        assert_eq!(d.stats().unsupported_packets, 4);
        assert_eq!(d.stats().dropped_access_units, 4);
        // Reserved types are ignored without harming the picture.
        d.handle_packet(10, MediaTime(90_000), false, &[0x00, 1]);
        d.handle_packet(11, MediaTime(90_000), false, &[0x1e, 1]);
        d.handle_packet(12, MediaTime(90_000), true, &keyframe_payload());
        assert_eq!(drain(&mut d).len(), 1);
        assert_eq!(d.stats().unsupported_packets, 6);
    }

    #[test]
    fn h264_malformed_payloads() {
        let bad: [&[u8]; 7] = [
            &[],
            &[0x78],
            &[0x78, 0],
            &[0x78, 0, 5, 0x67, 1],
            &[0x78, 0, 0],
            &[0x7c],
            &[0x7c, 0x9c, 1], // FU-A of a FU-A
        ];
        for (k, p) in bad.iter().enumerate() {
            let mut d = H264Depacketizer::new();
            d.handle_packet(1, MediaTime(0), true, p);
            assert!(d.poll_access_unit().is_none(), "case {k}");
            assert_eq!(d.stats().malformed_packets, 1, "case {k}");
        }
    }

    #[test]
    fn h264_bounded_memory() {
        let mut d = H264Depacketizer::new();
        let mut frag = vec![0x7c, 0x85];
        frag.extend(std::iter::repeat_n(0xd5, 60_000));
        let n = MAX_ACCESS_UNIT_BYTES / 60_000 + 2;
        for k in 0..n {
            frag[1] = match k {
                0 => 0x85,
                _ if k + 1 == n => 0x45,
                _ => 0x05,
            };
            d.handle_packet(k as u16, MediaTime(0), k + 1 == n, &frag);
        }
        assert!(d.poll_access_unit().is_none());
        assert_eq!(d.stats().oversize_access_units, 1);

        // Too many NAL units.
        let mut d = H264Depacketizer::new();
        for k in 0..=MAX_NALS_PER_ACCESS_UNIT {
            d.handle_packet(k as u16, MediaTime(0), false, &[0x06, 0x01]);
        }
        d.flush();
        assert!(d.poll_access_unit().is_none());
        assert_eq!(d.stats().oversize_access_units, 1);

        // An undrained queue keeps the newest.
        let mut d = H264Depacketizer::new();
        for k in 0..20u16 {
            d.handle_packet(k, MediaTime(u32::from(k) * 3000), true, &keyframe_payload());
        }
        let out = drain(&mut d);
        assert_eq!(out.len(), MAX_PENDING_ACCESS_UNITS);
        assert_eq!(out[0].timestamp, MediaTime(12 * 3000));
        assert_eq!(d.stats().overflowed_access_units, 12);
    }

    #[test]
    fn h264_sequence_restart_and_big_jump() {
        let mut d = H264Depacketizer::new();
        d.handle_packet(30_000, MediaTime(0), true, &keyframe_payload());
        // A restart far behind is not "late": it is taken as a gap.
        d.handle_packet(5, MediaTime(3000), true, &keyframe_payload());
        d.handle_packet(6, MediaTime(6000), true, &[0x41, 0x9a]);
        // A jump far ahead is not waited for.
        d.handle_packet(20_000, MediaTime(9000), true, &keyframe_payload());
        assert_eq!(drain(&mut d).len(), 4);
        assert_eq!(d.stats().late_packets, 0);
    }

    #[test]
    fn h264_no_panic_on_random_input() {
        let mut rng = XorShift(0xdead_beef);
        let mut d = H264Depacketizer::new();
        for _ in 0..20_000 {
            let len = rng.below(40) as usize;
            let mut p = rng.bytes(len);
            if let Some(first) = p.first_mut() {
                // Bias towards the interesting payload types.
                if rng.below(2) == 0 {
                    *first = (*first & 0xe0) | [24, 28, 28, 1, 5, 7][rng.below(6) as usize];
                }
            }
            let seq = if rng.below(8) == 0 {
                rng.next() as u16
            } else {
                d.stats().packets as u16
            };
            let ts = MediaTime((rng.below(4) * 3000) as u32);
            d.handle_packet(seq, ts, rng.below(3) == 0, &p);
            if rng.below(50) == 0 {
                d.flush();
            }
            while let Some(au) = d.poll_access_unit() {
                assert!(au.data.len() <= MAX_ACCESS_UNIT_BYTES);
                assert!(au.data.starts_with(&START_CODE));
            }
        }
    }

    #[test]
    fn h264_every_prefix_no_panic() -> Result<(), H264Error> {
        let mut rng = XorShift(5);
        let p = H264Packetizer::new(300, PacketizationMode::NonInterleaved);
        let aus = random_access_units(&mut rng, 3);
        let mut seq = 0u16;
        for au in &aus {
            for pl in p.packetize(&annex_b(au))? {
                for cut in 0..=pl.len() {
                    let mut d = H264Depacketizer::new();
                    d.handle_packet(seq, MediaTime(0), true, &pl[..cut]);
                    d.handle_packet(seq.wrapping_add(1), MediaTime(0), true, &pl[..cut]);
                    d.flush();
                    drain(&mut d);
                    // The packetizer must not panic on truncated Annex B either.
                    let _ = p.packetize(&pl[..cut]);
                }
                seq = seq.wrapping_add(1);
            }
        }
        Ok(())
    }

    #[test]
    fn keyframe_starts_are_found_in_every_payload_structure() -> Result<(), H264Error> {
        let mut au = vec![
            0, 0, 0, 1, 0x67, 0x42, 0, 0x1f, 0, 0, 0, 1, 0x68, 0xce, 0, 0, 0, 1, 0x65,
        ];
        au.extend(std::iter::repeat_n(0xAB, 3000));
        let p = H264Packetizer::new(1200, PacketizationMode::NonInterleaved);
        let packets = p.packetize(&au)?;
        // SPS+PPS aggregated (STAP-A) or alone, then the IDR in fragments.
        assert!(starts_keyframe(&packets[0]));
        let idr_start = packets
            .iter()
            .position(|pk| pk[0] & 0x1f == nal_type::FU_A)
            .expect("IDR fragmented");
        assert!(starts_keyframe(&packets[idr_start]));
        assert!(
            !starts_keyframe(&packets[idr_start + 1]),
            "a middle fragment"
        );
        // A P slice, alone or its first fragment.
        assert!(!starts_keyframe(&[0x41, 0x9a]));
        assert!(!starts_keyframe(&[0x5c, 0x81, 0x9a]));
        assert!(starts_keyframe(&[0x65, 0x88]));
        assert!(starts_keyframe(&[0x5c, 0x85, 0x88]));
        // STAP-A with SPS second; truncated aggregates do not panic.
        assert!(starts_keyframe(&[0x18, 0, 1, 0x09, 0, 2, 0x67, 0x42]));
        assert!(!starts_keyframe(&[0x18, 0, 9, 0x09]));
        assert!(!starts_keyframe(&[]));
        Ok(())
    }
}
