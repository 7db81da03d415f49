//! H.264 in SDP (RFC 6184 §8): `a=fmtp` parameters, the level table, and
//! what the bridge sends to a participant that offered H.264.
//!
//! The bridge encodes each participant's view in **Constrained Baseline**.
//! Every H.264 profile a caller is likely to offer (Baseline 42xx, Main 4dxx,
//! High 64xx) can decode it, so we accept all of them; what the participant
//! sends *us* is in the offered profile, which openh264 decodes.
//!
//! RFC 6184 §8.2.2 makes the profile part of `profile-level-id` symmetric: an
//! answer must echo the offered `profile_idc`/`profile-iop` or drop the
//! payload type. Only the level may differ, so [`answer_fmtp`] echoes the
//! profile and states the level we can receive (or the lower of both when the
//! offer does not allow level asymmetry).
//!
//! What we can send a receiver is bounded by its level, its `max-fs`/`max-mbps`
//! /`max-br` (which may only raise the level's figures), and `b=TIAS`/`b=AS`.
//! [`H264Params::max_resolution`] turns that into one of our
//! [`RESOLUTION_CLASSES`] and a bitrate cap.

use super::session::{MediaDescription, MediaKind};

/// The level we announce for receiving: 3.1 (1280x720 at 30 fps).
pub const RECEIVE_LEVEL_IDC: u8 = 31;

/// `level_idc` we use for level 1b. (Baseline, Main and Extended signal it
/// as `level_idc = 11` with constraint_set3; [`ProfileLevelId::level`] maps that here.)
pub const LEVEL_1B: u8 = 9;

/// H.264 profiles we accept in an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum H264Profile {
    ConstrainedBaseline,
    Baseline,
    Main,
    High,
}

impl H264Profile {
    /// How much we like receiving it: cheaper to decode first (no CABAC,
    /// no B-frames), which matters with a dozen decoders per conference.
    fn decode_cost(self) -> u8 {
        match self {
            H264Profile::ConstrainedBaseline | H264Profile::Baseline => 0,
            H264Profile::Main => 1,
            H264Profile::High => 2,
        }
    }
}

/// The three bytes of `profile-level-id` (RFC 6184 §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProfileLevelId {
    pub profile_idc: u8,
    /// constraint_set0..5 flags and two reserved bits.
    pub profile_iop: u8,
    pub level_idc: u8,
}

impl ProfileLevelId {
    /// What an absent `profile-level-id` means: Baseline, level 1 (RFC 6184 §8.1).
    pub const DEFAULT: ProfileLevelId = ProfileLevelId {
        profile_idc: 0x42,
        profile_iop: 0x00,
        level_idc: 10,
    };

    /// Six hex digits, e.g. `42e01f`.
    pub fn parse(hex: &str) -> Option<Self> {
        let hex = hex.trim();
        if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let v = u32::from_str_radix(hex, 16).ok()?;
        Some(ProfileLevelId {
            profile_idc: (v >> 16) as u8,
            profile_iop: (v >> 8) as u8,
            level_idc: v as u8,
        })
    }

    pub fn to_hex(self) -> String {
        format!(
            "{:02x}{:02x}{:02x}",
            self.profile_idc, self.profile_iop, self.level_idc
        )
    }

    /// The profile, if it is one we accept (not Extended-only, High 10, 4:2:2 …).
    pub fn profile(self) -> Option<H264Profile> {
        let cs0 = self.profile_iop & 0x80 != 0;
        let cs1 = self.profile_iop & 0x40 != 0;
        match self.profile_idc {
            0x42 if cs1 => Some(H264Profile::ConstrainedBaseline),
            0x42 => Some(H264Profile::Baseline),
            0x4d if cs0 => Some(H264Profile::ConstrainedBaseline),
            0x4d => Some(H264Profile::Main),
            0x58 if cs0 && cs1 => Some(H264Profile::ConstrainedBaseline),
            0x58 if cs0 => Some(H264Profile::Baseline),
            0x64 => Some(H264Profile::High),
            _ => None,
        }
    }

    /// The level as a `level_idc`, with 1b as [`LEVEL_1B`] whichever way it was signalled.
    pub fn level(self) -> u8 {
        if self.level_idc == 11 && self.profile_iop & 0x10 != 0 && self.has_cs3_level_1b() {
            LEVEL_1B
        } else {
            self.level_idc
        }
    }

    /// The same profile at `level` (a `level_idc`, 1b as [`LEVEL_1B`]).
    pub fn with_level(self, level: u8) -> Self {
        let mut out = self;
        if self.has_cs3_level_1b() {
            // constraint_set3 means "1b" here and is reserved otherwise.
            out.profile_iop &= !0x10;
            if level == LEVEL_1B {
                out.profile_iop |= 0x10;
                out.level_idc = 11;
                return out;
            }
        }
        out.level_idc = level;
        out
    }

    /// Baseline, Main and Extended encode level 1b as 11 + constraint_set3.
    fn has_cs3_level_1b(self) -> bool {
        matches!(self.profile_idc, 0x42 | 0x4d | 0x58)
    }
}

/// Order levels: 1 < 1b < 1.1 < … (1b's `level_idc` 9 sorts below 1's 10 otherwise).
fn level_rank(level_idc: u8) -> u16 {
    if level_idc == LEVEL_1B {
        21
    } else {
        u16::from(level_idc) * 2
    }
}

/// H.264 Table A-1 figures for one level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelLimits {
    /// MaxFS: frame size in macroblocks.
    pub max_fs: u32,
    /// MaxMBPS: macroblocks per second.
    pub max_mbps: u32,
    /// MaxBR for the VCL in kbit/s (cpbBrVclFactor 1000: Baseline/Main; we send CB).
    pub max_br_kbps: u32,
}

/// Table A-1 for `level_idc` (1b as [`LEVEL_1B`]); `None` for unknown levels.
pub fn level_limits(level_idc: u8) -> Option<LevelLimits> {
    let (max_mbps, max_fs, max_br_kbps) = match level_idc {
        10 => (1_485, 99, 64),
        LEVEL_1B => (1_485, 99, 128),
        11 => (3_000, 396, 192),
        12 => (6_000, 396, 384),
        13 => (11_880, 396, 768),
        20 => (11_880, 396, 2_000),
        21 => (19_800, 792, 4_000),
        22 => (20_250, 1_620, 4_000),
        30 => (40_500, 1_620, 10_000),
        31 => (108_000, 3_600, 14_000),
        32 => (216_000, 5_120, 20_000),
        40 => (245_760, 8_192, 20_000),
        41 => (245_760, 8_192, 50_000),
        42 => (522_240, 8_704, 50_000),
        50 => (589_824, 22_080, 135_000),
        51 => (983_040, 36_864, 240_000),
        52 => (2_073_600, 36_864, 240_000),
        60 => (4_177_920, 139_264, 240_000),
        61 => (8_355_840, 139_264, 480_000),
        62 => (16_711_680, 139_264, 800_000),
        _ => return None,
    };
    Some(LevelLimits {
        max_fs,
        max_mbps,
        max_br_kbps,
    })
}

/// A picture size and rate the bridge encodes views at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolutionClass {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// The bitrate we aim for at this size.
    pub max_kbps: u32,
    /// Below this much bandwidth the next smaller class looks better.
    pub min_kbps: u32,
}

impl ResolutionClass {
    fn width_mbs(&self) -> u32 {
        self.width.div_ceil(16)
    }

    fn height_mbs(&self) -> u32 {
        self.height.div_ceil(16)
    }

    /// Frame size in macroblocks.
    pub fn frame_size_mbs(&self) -> u32 {
        self.width_mbs() * self.height_mbs()
    }

    /// Macroblocks per second.
    pub fn mbps(&self) -> u32 {
        self.frame_size_mbs() * self.fps
    }

    /// Whether a receiver with these limits can decode it (A.3.1: frame size,
    /// MB rate, and neither side longer than sqrt(8 * MaxFS)).
    pub fn fits(&self, limits: &LevelLimits) -> bool {
        let side = u64::from(limits.max_fs) * 8;
        self.frame_size_mbs() <= limits.max_fs
            && self.mbps() <= limits.max_mbps
            && u64::from(self.width_mbs()).pow(2) <= side
            && u64::from(self.height_mbs()).pow(2) <= side
    }
}

/// Our encodings, largest first.
pub const RESOLUTION_CLASSES: [ResolutionClass; 3] = [
    ResolutionClass {
        width: 1280,
        height: 720,
        fps: 30,
        max_kbps: 1_500,
        min_kbps: 600,
    },
    ResolutionClass {
        width: 640,
        height: 360,
        fps: 30,
        max_kbps: 600,
        min_kbps: 250,
    },
    ResolutionClass {
        width: 320,
        height: 180,
        fps: 15,
        max_kbps: 200,
        min_kbps: 0,
    },
];

/// What to encode for one receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendFormat {
    pub class: ResolutionClass,
    /// Cap for the encoder's target bitrate (payload, kbit/s).
    pub max_bitrate_kbps: u32,
}

/// H.264 `a=fmtp` parameters (RFC 6184 §8.1) we act on; others are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct H264Params {
    /// `None` when absent; see [`H264Params::profile_level_id_or_default`].
    pub profile_level_id: Option<ProfileLevelId>,
    /// 0 (single NAL), 1 (non-interleaved) or 2 (interleaved, unsupported). Default 0.
    pub packetization_mode: u8,
    /// Macroblocks per frame the receiver supports beyond its level.
    pub max_fs: Option<u32>,
    /// Macroblocks per second the receiver supports beyond its level.
    pub max_mbps: Option<u32>,
    /// Bitrate in units of 1000 bit/s (for Baseline/Main/CB) beyond its level.
    pub max_br: Option<u32>,
    /// `max-fps`: not in RFC 6184; some endpoints send it (units vary by
    /// vendor, so it is parsed but not acted on).
    pub max_fps: Option<u32>,
    pub level_asymmetry_allowed: bool,
}

impl H264Params {
    /// Parse the part after `a=fmtp:<pt> `. Tolerant: spaces around `;` and
    /// `=`, any key case, unknown keys and unparseable values are ignored.
    pub fn parse(fmtp: &str) -> Self {
        let mut p = H264Params::default();
        for kv in fmtp.split(';') {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let v = v.trim();
            let num = || v.parse::<u32>().ok();
            match k.trim().to_ascii_lowercase().as_str() {
                "profile-level-id" => p.profile_level_id = ProfileLevelId::parse(v),
                "packetization-mode" => p.packetization_mode = v.parse().unwrap_or(0),
                "max-fs" => p.max_fs = num(),
                "max-mbps" => p.max_mbps = num(),
                "max-br" => p.max_br = num(),
                "max-fps" => p.max_fps = num(),
                "level-asymmetry-allowed" => p.level_asymmetry_allowed = v == "1",
                _ => {}
            }
        }
        p
    }

    pub fn profile_level_id_or_default(&self) -> ProfileLevelId {
        self.profile_level_id.unwrap_or(ProfileLevelId::DEFAULT)
    }

    /// What this receiver can decode: its level's Table A-1 figures, raised
    /// (never lowered, RFC 6184 §8.1) by `max-fs`, `max-mbps` and `max-br`.
    /// An unknown level counts as level 1.
    pub fn receive_limits(&self) -> LevelLimits {
        let level = self.profile_level_id_or_default().level();
        let base = level_limits(level)
            .or_else(|| level_limits(10))
            .unwrap_or(LevelLimits {
                max_fs: 99,
                max_mbps: 1_485,
                max_br_kbps: 64,
            });
        LevelLimits {
            max_fs: base.max_fs.max(self.max_fs.unwrap_or(0)),
            max_mbps: base.max_mbps.max(self.max_mbps.unwrap_or(0)),
            max_br_kbps: base.max_br_kbps.max(self.max_br.unwrap_or(0)),
        }
    }

    /// The largest of our [`RESOLUTION_CLASSES`] this receiver can decode
    /// and (given `bandwidth_kbps`, see [`remote_bandwidth_kbps`]) has the
    /// bandwidth for, with a bitrate cap. Too little bandwidth still gets
    /// the smallest class the level allows; `None` if the level allows none
    /// (e.g. level 1, implied by an fmtp without `profile-level-id`).
    pub fn max_resolution(&self, bandwidth_kbps: Option<u32>) -> Option<SendFormat> {
        let limits = self.receive_limits();
        let mut decodable = RESOLUTION_CLASSES.iter().filter(|c| c.fits(&limits));
        let class = decodable
            .clone()
            .find(|c| bandwidth_kbps.is_none_or(|bw| bw >= c.min_kbps))
            .or_else(|| decodable.next_back())?;
        let mut cap = class.max_kbps.min(limits.max_br_kbps);
        if let Some(bw) = bandwidth_kbps {
            cap = cap.min(bw);
        }
        Some(SendFormat {
            class: *class,
            max_bitrate_kbps: cap,
        })
    }
}

/// The media-level bandwidth the remote allows us, in kbit/s of payload:
/// `b=TIAS` (bit/s, RFC 3890, excludes headers) if present, else `b=AS`
/// (kbit/s including headers) less 5% for IP/UDP/RTP overhead at ~1200-byte
/// packets. Session-level `b=` lines are the caller's to apply.
pub fn remote_bandwidth_kbps(media: &MediaDescription) -> Option<u32> {
    let find = |kind: &str| {
        media
            .bandwidth
            .iter()
            .find(|b| b.kind.eq_ignore_ascii_case(kind))
            .map(|b| b.value)
    };
    let kbps = match (find("TIAS"), find("AS")) {
        (Some(tias), _) => tias / 1000,
        (None, Some(asv)) => asv.saturating_mul(95) / 100,
        (None, None) => return None,
    };
    Some(u32::try_from(kbps).unwrap_or(u32::MAX))
}

/// The H.264 payload type chosen from an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedVideo {
    pub pt: u8,
    /// The offerer's parameters for that payload type (what it can receive).
    pub params: H264Params,
    /// The offered profile (what it will send us).
    pub profile: H264Profile,
    /// See [`remote_bandwidth_kbps`].
    pub remote_bandwidth_kbps: Option<u32>,
}

impl NegotiatedVideo {
    /// What to encode for this participant.
    pub fn send_format(&self) -> Option<SendFormat> {
        self.params.max_resolution(self.remote_bandwidth_kbps)
    }
}

/// Choose an H.264 payload type from an offered video m-line: an `H264/90000`
/// rtpmap with packetization mode 0 or 1 and a profile we accept. Preferred:
/// packetization mode 1, then the cheapest profile to decode, then the
/// offerer's order. `None` for a rejected (port 0) or non-video m-line or
/// when nothing fits. The transport profile (`RTP/AVP`, SRTP…) is the caller's check.
pub fn negotiate_h264(offer_media: &MediaDescription) -> Option<NegotiatedVideo> {
    if offer_media.kind != MediaKind::Video || offer_media.port == 0 {
        return None;
    }
    let mut best: Option<((u8, u8), NegotiatedVideo)> = None;
    for map in offer_media.rtpmaps() {
        if !map.encoding.eq_ignore_ascii_case("H264") || map.clock_rate != 90_000 {
            continue;
        }
        let params = H264Params::parse(offer_media.fmtp(map.pt).unwrap_or(""));
        if params.packetization_mode > 1 {
            continue;
        }
        let Some(profile) = params.profile_level_id_or_default().profile() else {
            continue;
        };
        let rank = (1 - params.packetization_mode, profile.decode_cost());
        if best.as_ref().is_some_and(|(r, _)| *r <= rank) {
            continue;
        }
        best = Some((
            rank,
            NegotiatedVideo {
                pt: map.pt,
                params,
                profile,
                remote_bandwidth_kbps: remote_bandwidth_kbps(offer_media),
            },
        ));
    }
    best.map(|(_, v)| v)
}

/// The `a=fmtp` value (without `<pt> `) for our answer: the offered profile
/// echoed (RFC 6184 §8.2.2), our receive level ([`RECEIVE_LEVEL_IDC`]) when
/// the offer allows level asymmetry and the lower of both otherwise, the
/// packetization mode echoed, and `level-asymmetry-allowed=1`.
pub fn answer_fmtp(video: &NegotiatedVideo) -> String {
    let offered = video.params.profile_level_id_or_default();
    let level = if video.params.level_asymmetry_allowed
        || level_rank(RECEIVE_LEVEL_IDC) <= level_rank(offered.level())
    {
        RECEIVE_LEVEL_IDC
    } else {
        offered.level()
    };
    format!(
        "profile-level-id={};packetization-mode={};level-asymmetry-allowed=1",
        offered.with_level(level).to_hex(),
        video.params.packetization_mode
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::session::{SdpError, SessionDescription};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn video(body: &str) -> Result<MediaDescription, SdpError> {
        let text = format!("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\n{body}");
        let sd = SessionDescription::parse(&text)?;
        sd.media
            .into_iter()
            .find(|m| m.kind == MediaKind::Video)
            .ok_or(SdpError::Missing('m'))
    }

    #[test]
    fn h264_sdp_baresip() -> TestResult {
        let m = video(
            "m=video 10002 RTP/AVP 96\r\n\
             a=rtpmap:96 H264/90000\r\n\
             a=fmtp:96 packetization-mode=0;profile-level-id=42e01f\r\n",
        )?;
        let v = negotiate_h264(&m).ok_or("no h264")?;
        assert_eq!(v.pt, 96);
        assert_eq!(v.profile, H264Profile::ConstrainedBaseline);
        assert_eq!(v.params.packetization_mode, 0);
        assert_eq!(v.remote_bandwidth_kbps, None);
        let f = v.send_format().ok_or("no format")?;
        assert_eq!(
            (f.class.width, f.class.height, f.class.fps),
            (1280, 720, 30)
        );
        assert_eq!(f.max_bitrate_kbps, 1_500);
        assert_eq!(
            answer_fmtp(&v),
            "profile-level-id=42e01f;packetization-mode=0;level-asymmetry-allowed=1"
        );
        Ok(())
    }

    #[test]
    fn h264_sdp_polycom() -> TestResult {
        let m = video(
            "m=video 49172 RTP/AVP 109 34\r\n\
             b=AS:768\r\n\
             a=rtpmap:109 H264/90000\r\n\
             a=fmtp:109 profile-level-id=428016; max-mbps=245000; max-fs=8160; max-br=5120; packetization-mode=1\r\n\
             a=rtpmap:34 H263/90000\r\n",
        )?;
        let v = negotiate_h264(&m).ok_or("no h264")?;
        assert_eq!(v.pt, 109);
        assert_eq!(v.profile, H264Profile::Baseline);
        assert_eq!(
            v.params,
            H264Params {
                profile_level_id: Some(ProfileLevelId {
                    profile_idc: 0x42,
                    profile_iop: 0x80,
                    level_idc: 22,
                }),
                packetization_mode: 1,
                max_fs: Some(8160),
                max_mbps: Some(245_000),
                max_br: Some(5120),
                max_fps: None,
                level_asymmetry_allowed: false,
            }
        );
        // Level 2.2 alone is below 360p30, but max-fs/max-mbps raise it to 720p.
        assert_eq!(
            v.params.receive_limits(),
            LevelLimits {
                max_fs: 8160,
                max_mbps: 245_000,
                max_br_kbps: 5120
            }
        );
        let f = v.send_format().ok_or("no format")?;
        assert_eq!(f.class.width, 1280);
        assert_eq!(f.max_bitrate_kbps, 729); // b=AS:768 less 5%
        // No asymmetry: answer at the lower level, 2.2.
        assert_eq!(
            answer_fmtp(&v),
            "profile-level-id=428016;packetization-mode=1;level-asymmetry-allowed=1"
        );
        Ok(())
    }

    const CHROME: &str = "m=video 9 UDP/TLS/RTP/SAVPF 96 97 104 102 108 106 127 39 112\r\n\
        a=rtpmap:96 VP8/90000\r\n\
        a=rtpmap:97 rtx/90000\r\n\
        a=fmtp:97 apt=96\r\n\
        a=rtpmap:104 H264/90000\r\n\
        a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f\r\n\
        a=rtpmap:102 H264/90000\r\n\
        a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
        a=rtpmap:108 H264/90000\r\n\
        a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f\r\n\
        a=rtpmap:106 H264/90000\r\n\
        a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
        a=rtpmap:127 H264/90000\r\n\
        a=fmtp:127 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f\r\n\
        a=rtpmap:39 H264/90000\r\n\
        a=fmtp:39 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f\r\n\
        a=rtpmap:112 H264/90000\r\n\
        a=fmtp:112 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=f4001f\r\n";

    #[test]
    fn h264_sdp_chrome_many_payload_types() -> TestResult {
        let m = video(CHROME)?;
        let v = negotiate_h264(&m).ok_or("no h264")?;
        // First mode-1 Baseline-family PT, although a mode-0 one is listed first.
        assert_eq!(v.pt, 102);
        assert_eq!(v.profile, H264Profile::Baseline);
        assert!(v.params.level_asymmetry_allowed);
        assert_eq!(
            answer_fmtp(&v),
            "profile-level-id=42001f;packetization-mode=1;level-asymmetry-allowed=1"
        );

        // Only High and Main in mode 1, CB in mode 0: mode 1 wins, then Main over High.
        let m = video(&CHROME.replace(
            "packetization-mode=1;profile-level-id=42",
            "packetization-mode=2;profile-level-id=42",
        ))?;
        let v = negotiate_h264(&m).ok_or("no h264")?;
        assert_eq!((v.pt, v.profile), (127, H264Profile::Main));
        // Asymmetry allowed: we state our own receive level even above theirs.
        let mut low = v.clone();
        low.params.profile_level_id = ProfileLevelId::parse("64000d");
        assert_eq!(
            answer_fmtp(&low),
            "profile-level-id=64001f;packetization-mode=1;level-asymmetry-allowed=1"
        );
        Ok(())
    }

    #[test]
    fn h264_sdp_bandwidth_limits() -> TestResult {
        let base = "m=video 5000 RTP/AVP 96\r\n{B}a=rtpmap:96 H264/90000\r\n\
                    a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n";
        let fmt = |b: &str| -> Result<SendFormat, Box<dyn std::error::Error>> {
            let m = video(&base.replace("{B}", b))?;
            let v = negotiate_h264(&m).ok_or("no h264")?;
            Ok(v.send_format().ok_or("no format")?)
        };
        // TIAS wins over AS.
        let f = fmt("b=AS:2000\r\nb=TIAS:500000\r\n")?;
        assert_eq!((f.class.width, f.max_bitrate_kbps), (640, 500));
        let f = fmt("b=AS:2000\r\n")?;
        assert_eq!((f.class.width, f.max_bitrate_kbps), (1280, 1500));
        let f = fmt("b=AS:100\r\n")?;
        assert_eq!(
            (f.class.width, f.class.fps, f.max_bitrate_kbps),
            (320, 15, 95)
        );
        let f = fmt("b=TIAS:20000\r\n")?;
        assert_eq!((f.class.width, f.max_bitrate_kbps), (320, 20));
        Ok(())
    }

    #[test]
    fn h264_sdp_levels() {
        assert_eq!(
            level_limits(31),
            Some(LevelLimits {
                max_fs: 3600,
                max_mbps: 108_000,
                max_br_kbps: 14_000
            })
        );
        assert_eq!(level_limits(LEVEL_1B).map(|l| l.max_br_kbps), Some(128));
        assert_eq!(level_limits(51).map(|l| l.max_fs), Some(36_864));
        assert_eq!(level_limits(0), None);
        assert_eq!(level_limits(33), None);

        // Level 3.0: 360p30 fits, 720p does not.
        let p = H264Params::parse("profile-level-id=42e01e");
        assert_eq!(p.max_resolution(None).map(|f| f.class.width), Some(640));
        // Level 1.2: only 180p15.
        let p = H264Params::parse("profile-level-id=42e00c");
        assert_eq!(p.max_resolution(None).map(|f| f.class.fps), Some(15));
        assert_eq!(
            p.max_resolution(None).map(|f| f.max_bitrate_kbps),
            Some(200)
        );
        // No profile-level-id: Baseline level 1, nothing of ours fits.
        let p = H264Params::parse("packetization-mode=1");
        assert_eq!(p.profile_level_id_or_default().to_hex(), "42000a");
        assert_eq!(p.max_resolution(None), None);

        // Level 1b, both encodings.
        let b = ProfileLevelId::parse("42f00b").expect("valid");
        assert_eq!(b.level(), LEVEL_1B);
        assert_eq!(ProfileLevelId::parse("42e00b").map(|p| p.level()), Some(11));
        assert_eq!(
            ProfileLevelId::parse("640009").map(|p| p.level()),
            Some(LEVEL_1B)
        );
        assert_eq!(b.with_level(31).to_hex(), "42e01f");
        assert_eq!(
            ProfileLevelId::parse("42e01f").map(|p| p.with_level(LEVEL_1B).to_hex()),
            Some("42f00b".to_owned())
        );
        // Answering a 1b offer without asymmetry keeps 1b.
        let v = NegotiatedVideo {
            pt: 97,
            params: H264Params::parse("profile-level-id=42f00b"),
            profile: H264Profile::ConstrainedBaseline,
            remote_bandwidth_kbps: None,
        };
        assert_eq!(
            answer_fmtp(&v),
            "profile-level-id=42f00b;packetization-mode=0;level-asymmetry-allowed=1"
        );
        assert!(level_rank(10) < level_rank(LEVEL_1B) && level_rank(LEVEL_1B) < level_rank(11));
    }

    #[test]
    fn h264_sdp_rejects() -> TestResult {
        // Interleaved only, unsupported profile, wrong clock, port 0, audio.
        for body in [
            "m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=2\r\n",
            "m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 profile-level-id=6e001f\r\n",
            "m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/8000\r\n",
            "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n",
            "m=video 5000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n",
        ] {
            assert_eq!(negotiate_h264(&video(body)?), None, "{body}");
        }
        // Garbage values are ignored rather than fatal.
        let p = H264Params::parse(
            "profile-level-id=zz;packetization-mode=x;max-fs=-1;;=;max-fps=3000;foo",
        );
        assert_eq!(p.profile_level_id, None);
        assert_eq!(p.packetization_mode, 0);
        assert_eq!(p.max_fs, None);
        assert_eq!(p.max_fps, Some(3000));
        // Case-insensitive keys and encoding name.
        let m = video(
            "m=video 5000 RTP/AVPF 100\r\na=rtpmap:100 h264/90000\r\n\
             a=fmtp:100 Profile-Level-Id=4D401F;Packetization-Mode=1\r\n",
        )?;
        let v = negotiate_h264(&m).ok_or("no h264")?;
        // constraint_set1 on Main is still Main; constraint_set0 makes it CB.
        assert_eq!(v.profile, H264Profile::Main);
        assert_eq!(v.params.packetization_mode, 1);
        assert_eq!(
            ProfileLevelId::parse("4de01f").and_then(ProfileLevelId::profile),
            Some(H264Profile::ConstrainedBaseline)
        );
        Ok(())
    }
}
