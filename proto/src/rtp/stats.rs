//! Receiver statistics (RFC 3550 Appendix A.1, A.3, A.8), RTT from report
//! blocks, and NTP time conversion. Wall-clock time is always passed in.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::packet::{MediaTime, RtpPacket, Ssrc};
use super::rtcp::ReportBlock;

const RTP_SEQ_MOD: u32 = 1 << 16;
const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;
const MIN_SEQUENTIAL: u8 = 2;

/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// A 64-bit NTP timestamp: 32.32 fixed-point seconds since 1900.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct NtpTime(pub u64);

impl NtpTime {
    /// Convert a wall-clock time the caller read. Times before 1970 map to 1970.
    pub fn from_system_time(t: SystemTime) -> NtpTime {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs().wrapping_add(NTP_UNIX_OFFSET);
        let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
        NtpTime((secs << 32) | frac)
    }

    /// The middle 32 bits, as used in LSR and for RTT (16.16 seconds).
    pub fn middle32(self) -> u32 {
        (self.0 >> 16) as u32
    }
}

/// The 64-bit NTP timestamp for an SR, from a wall-clock time the caller read.
pub fn ntp_timestamp(wall: SystemTime) -> u64 {
    NtpTime::from_system_time(wall).0
}

/// A duration in RTCP's 16.16 fixed-point seconds (for DLSR).
pub fn duration_to_ntp_short(d: Duration) -> u32 {
    let units = d.as_secs_f64() * 65536.0;
    units.clamp(0.0, f64::from(u32::MAX)) as u32
}

/// Round-trip time from a report block we received (RFC 3550 §6.4.1):
/// `now - lsr - dlsr`, all in 16.16 seconds. `None` when the peer has not
/// seen an SR from us yet (LSR 0) or the result would be negative.
pub fn rtt_from_report(now_ntp_middle32: u32, lsr: u32, dlsr: u32) -> Option<Duration> {
    if lsr == 0 {
        return None;
    }
    let since_sr = now_ntp_middle32.wrapping_sub(lsr);
    // A wrapped difference above 2^31 means LSR is in our future: bogus.
    if since_sr > u32::MAX / 2 || since_sr < dlsr {
        return None;
    }
    let units = since_sr - dlsr;
    Some(Duration::from_nanos(
        (u64::from(units) * 1_000_000_000) >> 16,
    ))
}

/// What [`ReceiveStats::handle_packet`] made of a packet's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// Counted; the source is valid.
    Valid,
    /// Still in probation (a new source needs MIN_SEQUENTIAL packets in a row).
    Probation,
    /// A large jump: dropped, unless the next packet confirms it (then the
    /// source is considered restarted).
    Jump,
}

/// Per-source reception statistics, from RFC 3550 Appendix A.
///
/// Created when a leg is set up, before the peer's SSRC is known: feed packets
/// through [`ReceiveStats::handle_rtp`], which learns the SSRC and starts
/// over when it changes (a new source, RFC 3550 §8.2).
#[derive(Debug, Clone)]
pub struct ReceiveStats {
    ssrc: Ssrc,
    clock_rate: u32,
    started: bool,
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u8,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// Relative transit time of the previous packet, in RTP units.
    transit: Option<i32>,
    /// Jitter estimate scaled by 16 (A.8's integer form).
    jitter_q4: u32,
    epoch: Option<Instant>,
}

impl ReceiveStats {
    pub fn new(clock_rate: u32) -> Self {
        ReceiveStats {
            ssrc: Ssrc(0),
            clock_rate: clock_rate.max(1),
            started: false,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: RTP_SEQ_MOD + 1,
            probation: MIN_SEQUENTIAL,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter_q4: 0,
            epoch: None,
        }
    }

    /// The source being reported on (the last one seen by [`Self::handle_rtp`]).
    pub fn ssrc(&self) -> Ssrc {
        self.ssrc
    }

    /// Account one parsed RTP packet, restarting on a new SSRC.
    pub fn handle_rtp(&mut self, now: Instant, packet: &RtpPacket<'_>) -> SeqVerdict {
        if packet.ssrc != self.ssrc {
            *self = ReceiveStats {
                ssrc: packet.ssrc,
                ..ReceiveStats::new(self.clock_rate)
            };
        }
        self.handle_packet(now, packet.sequence, packet.timestamp)
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// RFC 3550 A.1 `update_seq`.
    fn update_seq(&mut self, seq: u16) -> SeqVerdict {
        if !self.started {
            self.started = true;
            self.init_seq(seq);
            self.max_seq = seq.wrapping_sub(1);
            self.probation = MIN_SEQUENTIAL;
        }
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received += 1;
                    return SeqVerdict::Valid;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return SeqVerdict::Probation;
        } else if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
        } else if u32::from(udelta) <= RTP_SEQ_MOD - u32::from(MAX_MISORDER) {
            if u32::from(seq) == self.bad_seq {
                // Two sequential packets after a jump: the source restarted.
                self.init_seq(seq);
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
                return SeqVerdict::Jump;
            }
        }
        // else: duplicate or reordered, counted.
        self.received = self.received.wrapping_add(1);
        SeqVerdict::Valid
    }

    /// Account one received RTP packet of the current source. `now` is its
    /// arrival time. Prefer [`Self::handle_rtp`], which also tracks the SSRC.
    pub fn handle_packet(&mut self, now: Instant, seq: u16, timestamp: MediaTime) -> SeqVerdict {
        let verdict = self.update_seq(seq);
        if verdict == SeqVerdict::Valid {
            // A.8: arrival time in RTP units, relative to an arbitrary epoch.
            let epoch = *self.epoch.get_or_insert(now);
            let since = now.saturating_duration_since(epoch);
            let arrival = (since.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as u32;
            let transit = arrival.wrapping_sub(timestamp.0) as i32;
            if let Some(prev) = self.transit {
                let d = transit.wrapping_sub(prev).unsigned_abs();
                // J += (|D| - J) / 16, kept scaled by 16.
                self.jitter_q4 = self
                    .jitter_q4
                    .wrapping_add(d)
                    .wrapping_sub((self.jitter_q4 + 8) >> 4);
            }
            self.transit = Some(transit);
        }
        verdict
    }

    pub fn extended_max_seq(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    fn expected(&self) -> u32 {
        self.extended_max_seq()
            .wrapping_sub(self.base_seq)
            .wrapping_add(1)
    }

    pub fn packets_received(&self) -> u32 {
        self.received
    }

    /// A.3: expected minus received, clamped to RTCP's 24-bit signed range.
    /// Negative when duplicates outnumber losses.
    pub fn cumulative_lost(&self) -> i32 {
        if self.received == 0 && self.probation > 0 {
            return 0;
        }
        let lost = i64::from(self.expected()) - i64::from(self.received);
        lost.clamp(-0x80_0000, 0x7f_ffff) as i32
    }

    /// Interarrival jitter in RTP timestamp units (the report block value).
    pub fn jitter(&self) -> u32 {
        self.jitter_q4 >> 4
    }

    pub fn jitter_seconds(&self) -> f64 {
        f64::from(self.jitter()) / f64::from(self.clock_rate)
    }

    /// Build a report block and start a new reporting interval (A.3).
    /// `lsr`/`dlsr` describe the last SR we got from this source.
    pub fn report_block(&mut self, lsr: u32, dlsr: u32) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: self.cumulative_lost(),
            highest_seq: self.extended_max_seq(),
            jitter: self.jitter(),
            lsr,
            dlsr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // tests need one real Instant as an epoch
    fn epoch() -> Instant {
        Instant::now()
    }

    #[test]
    fn rtp_stats_probation_loss_and_wrap() {
        let t0 = epoch();
        let mut s = ReceiveStats::new(8000);
        let mut seq: u16 = 65000;
        let mut ts = MediaTime(0);
        let mut now = t0;
        assert_eq!(s.handle_packet(now, seq, ts), SeqVerdict::Probation);
        // 1000 packets across the wrap, every 10th lost.
        for i in 1..=1000u32 {
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(160);
            now += Duration::from_millis(20);
            if i % 10 == 0 && i > 1 {
                continue;
            }
            let v = s.handle_packet(now, seq, ts);
            assert_eq!(v, SeqVerdict::Valid, "packet {i}");
        }
        // base = 65001; the last received is i=999: 65999 mod 2^16 = 463,
        // on the second cycle. Expected 999, received 900.
        assert_eq!(s.extended_max_seq(), 65536 + 463);
        let rb = s.report_block(0, 0);
        assert_eq!(rb.highest_seq, 65536 + 463);
        assert_eq!(s.cumulative_lost(), 99);
        assert_eq!(rb.cumulative_lost, 99);
        assert!(
            (20..=30).contains(&rb.fraction_lost),
            "{}",
            rb.fraction_lost
        );
        assert_eq!(s.jitter(), 0, "perfectly paced stream has no jitter");
        // The next interval: the lost i=1000 shows up once the stream moves
        // past it, 1 of 11 expected.
        for _ in 0..10 {
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(160);
            now += Duration::from_millis(20);
            s.handle_packet(now, seq, ts);
        }
        assert_eq!(s.report_block(0, 0).fraction_lost, (256 / 11) as u8);
    }

    #[test]
    fn rtp_stats_restart_needs_two_packets() {
        let t0 = epoch();
        let mut s = ReceiveStats::new(8000);
        for i in 0..10u16 {
            s.handle_packet(t0, 100 + i, MediaTime(u32::from(i) * 160));
        }
        assert_eq!(s.packets_received(), 9);
        assert_eq!(s.handle_packet(t0, 30000, MediaTime(0)), SeqVerdict::Jump);
        assert_eq!(
            s.handle_packet(t0, 30001, MediaTime(160)),
            SeqVerdict::Valid
        );
        assert_eq!(s.packets_received(), 1);
        assert_eq!(s.cumulative_lost(), 0);
    }

    #[test]
    fn rtp_stats_jitter_converges() {
        let t0 = epoch();
        let mut s = ReceiveStats::new(8000);
        // Alternate arrivals 10 ms early/late: |D| = 20 ms = 160 units.
        for i in 0..2000u32 {
            let offset = if i % 2 == 0 { 0 } else { 20 };
            let now = t0 + Duration::from_millis(u64::from(i) * 20 + offset);
            s.handle_packet(now, i as u16, MediaTime(i * 160));
        }
        assert!((150..=160).contains(&s.jitter()), "{}", s.jitter());
        assert!((s.jitter_seconds() - 0.02).abs() < 0.002);
    }

    #[test]
    fn rtp_stats_learn_and_restart_on_ssrc() -> Result<(), crate::rtp::RtpError> {
        use crate::rtp::packet::RtpHeader;
        let t0 = epoch();
        let mut s = ReceiveStats::new(8000);
        let mut buf = Vec::new();
        for (ssrc, seqs) in [(7u32, 0..20u16), (9, 500..505)] {
            for seq in seqs {
                buf.clear();
                RtpHeader {
                    marker: false,
                    payload_type: 0,
                    sequence: seq,
                    timestamp: MediaTime(u32::from(seq) * 160),
                    ssrc: Ssrc(ssrc),
                }
                .write(&[0; 160], &mut buf);
                s.handle_rtp(t0, &RtpPacket::parse(&buf)?);
            }
        }
        assert_eq!(s.ssrc(), Ssrc(9));
        assert_eq!(s.packets_received(), 4); // the first of the new source is probation
        assert_eq!(s.report_block(0, 0).ssrc, Ssrc(9));
        Ok(())
    }

    #[test]
    fn rtp_rtt_and_ntp() {
        // 1970-01-01 + 1.5 s
        let t = UNIX_EPOCH + Duration::from_millis(1500);
        let ntp = NtpTime::from_system_time(t);
        assert_eq!(ntp.0 >> 32, NTP_UNIX_OFFSET + 1);
        assert_eq!(ntp.0 as u32, 1 << 31);
        assert_eq!(ntp_timestamp(t), ntp.0);
        let lsr = ntp.middle32();
        let dlsr = duration_to_ntp_short(Duration::from_millis(250));
        let now = NtpTime::from_system_time(t + Duration::from_millis(400)).middle32();
        let rtt = rtt_from_report(now, lsr, dlsr).expect("rtt");
        let ms = rtt.as_secs_f64() * 1000.0;
        assert!((149.0..=151.0).contains(&ms), "{ms}");
        assert_eq!(rtt_from_report(now, 0, dlsr), None);
        assert_eq!(rtt_from_report(lsr, now, 0), None);
        assert_eq!(rtt_from_report(now, lsr, u32::MAX), None);
    }
}
