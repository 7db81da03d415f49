//! Node configuration: embedded defaults, then a TOML file, then environment
//! variables `TANDEM_<SECTION>_<KEY>`. Unknown keys and bad values are errors
//! that name the key (`sip.port: invalid value ...`), never silently ignored.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::Path;

use serde::{Deserialize, Deserializer};

/// The whole node configuration. Every field has a default that serves a laptop.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub sip: SipConfig,
    pub http: HttpConfig,
    pub media: MediaConfig,
    pub qos: QosConfig,
    pub conference: ConferenceConfig,
    pub video: VideoConfig,
    pub content: ContentConfig,
    pub h323: H323Config,
    pub cascade: CascadeConfig,
    pub turn: TurnRelayConfig,
    pub span: SpanConfig,
    pub log: LogConfig,
    /// This node's place in a fleet (`tandem node`).
    pub node: tandem_control::config::NodeConfig,
    /// The control plane (`tandem control`, and `tandem up` in memory).
    pub control: tandem_control::config::ControlConfig,
    /// The SIP front door (`tandem control`).
    pub front_door: tandem_control::config::FrontDoorConfig,
    pub lobby: LobbyConfig,
    /// Meeting rooms (PIN, layout, size) for a node without a control
    /// plane: `[[room]]` tables with a VMR's fields (`id`, `name`, `pin`,
    /// `layout`, `max_participants`, ...).
    pub room: Vec<tandem_control::Vmr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// Address the SIP UDP and TCP listeners bind to.
    pub listen: IpAddr,
    pub port: u16,
    /// Contact URI advertised in our responses and requests. Deployments behind
    /// a proxy or NAT set it; default `sip:tandem@<listen>:<port>`.
    pub contact: Option<String>,
    /// Smallest session-timer interval we accept (RFC 4028 Min-SE), seconds.
    pub min_se: u32,
    /// Largest number of live SIP transactions before new requests get 503.
    pub max_transactions: usize,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 5060,
            contact: None,
            min_se: 90,
            max_transactions: 10_000,
        }
    }
}

impl SipConfig {
    pub fn contact_uri(&self) -> String {
        self.contact
            .clone()
            .unwrap_or_else(|| format!("sip:tandem@{}", SocketAddr::new(self.listen, self.port)))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `/metrics`, `/api/...`, `/healthz`.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
        }
    }
}

/// An inclusive UDP port range written as `"40000-40999"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRange(pub RangeInclusive<u16>);

impl PortRange {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("expected \"FIRST-LAST\", got {s:?}"))?;
        let a: u16 = a
            .trim()
            .parse()
            .map_err(|_| format!("bad first port in {s:?}"))?;
        let b: u16 = b
            .trim()
            .parse()
            .map_err(|_| format!("bad last port in {s:?}"))?;
        if a == 0 || a > b {
            return Err(format!("empty or invalid port range {s:?}"));
        }
        Ok(Self(a..=b))
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PortRange::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Address RTP sockets bind to; default: the SIP listen address.
    pub listen: Option<IpAddr>,
    /// Address written in our SDP (`c=`); default: the RTP listen address.
    pub advertise: Option<IpAddr>,
    pub audio_ports: PortRange,
    pub video_ports: PortRange,
    /// Adaptive jitter buffer bounds, milliseconds.
    pub jitter_min_ms: u32,
    pub jitter_max_ms: u32,
    /// Seconds without RTP from a leg (not on hold) before the call is ended.
    pub rtp_timeout_s: u32,
    /// Leave undecoded the Opus packets whose sender flagged no voice, from
    /// legs that are not in the mix (their audio would be heard by nobody).
    pub skip_silent_decode: bool,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            listen: None,
            advertise: None,
            audio_ports: PortRange(40000..=40999),
            video_ports: PortRange(41000..=41999),
            jitter_min_ms: 20,
            jitter_max_ms: 200,
            rtp_timeout_s: 60,
            skip_silent_decode: true,
        }
    }
}

/// DSCP code points by traffic class (RFC 4594 / common UC defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QosConfig {
    pub audio: u8,
    pub video: u8,
    pub signalling: u8,
}

impl Default for QosConfig {
    fn default() -> Self {
        Self {
            audio: 46,
            video: 34,
            signalling: 24,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConferenceConfig {
    /// Create unknown conference IDs on first call; if false they get 404.
    pub auto_create: bool,
    /// Participants one conference accepts before new calls get 486.
    pub max_participants: usize,
    /// Loudest talkers mixed at once.
    pub mixed_speakers: usize,
}

impl Default for ConferenceConfig {
    fn default() -> Self {
        Self {
            auto_create: true,
            max_participants: 1000,
            mixed_speakers: 3,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VideoConfig {
    /// Answer H.264 video m-lines (continuous presence); false declines video.
    pub enabled: bool,
    /// Output frame rate of every view.
    pub fps: u32,
    /// Conference default layout: auto, 1x1, 2x2, 3x3, 4x4, 5x5, 1+5, 1+7, 2+8, 1+21.
    pub layout: String,
    /// A source with no new picture for this long shows its name tile.
    pub freeze_timeout_ms: u32,
    /// Largest view sent: 720p, 360p or 180p (the receiver's level and
    /// bandwidth may lower it).
    pub max_resolution: String,
    /// Threads that encode a conference's views in parallel (0: one per core).
    pub encode_threads: usize,
    /// Threads that decode a conference's sources (0: one per core).
    pub decode_threads: usize,
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            fps: 30,
            layout: "auto".into(),
            freeze_timeout_ms: 2000,
            max_resolution: "720p".into(),
            encode_threads: 0,
            decode_threads: 0,
        }
    }
}

impl VideoConfig {
    /// The conference default layout; `None` if the name is unknown.
    pub fn layout(&self) -> Option<tandem_mixer::video::LayoutChoice> {
        self.layout.parse().ok()
    }

    /// A thread count setting: 0 means one per core (at most 8).
    pub fn threads(&self, setting: usize) -> usize {
        match setting {
            0 => std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .min(8),
            n => n,
        }
    }

    pub fn max_class(&self) -> Option<tandem_mixer::video::ResolutionClass> {
        use tandem_mixer::video::ResolutionClass as C;
        match self.max_resolution.trim().to_ascii_lowercase().as_str() {
            "720p" | "hd" => Some(C::Hd720),
            "360p" | "sd" => Some(C::Sd360),
            "180p" => Some(C::Low180),
            _ => None,
        }
    }
}

/// Presentations: the content channel (`a=content:slides`) and its floor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContentConfig {
    /// Answer content m-lines with BFCP; false declines them.
    pub enabled: bool,
    /// TCP and UDP port of the BFCP floor control server, on the media
    /// listen address; 0: the OS picks one (the SDP names it).
    pub bfcp_port: u16,
    /// A floor request while somebody presents: `takeover` (the newer
    /// presenter wins, as room systems expect) or `queue` (it waits).
    pub contention: String,
    /// Room systems without a content channel see the presentation in the
    /// large pane of their layout; false: they see people only.
    pub show_in_layout: bool,
}

impl Default for ContentConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bfcp_port: 0,
            contention: "takeover".into(),
            show_in_layout: true,
        }
    }
}

impl ContentConfig {
    pub fn contention(&self) -> Option<tandem_proto::bfcp::Contention> {
        use tandem_proto::bfcp::Contention;
        match self.contention.trim().to_ascii_lowercase().as_str() {
            "takeover" | "take_over" => Some(Contention::TakeOver),
            "queue" => Some(Contention::Queue),
            _ => None,
        }
    }
}

/// H.323-lite: direct calls from room systems (no gatekeeper), Fast
/// Connect, tunnelled H.245, the H.239 presentation token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct H323Config {
    /// Accept H.323 calls; false: no call signalling port is opened.
    pub enabled: bool,
    /// TCP port of H.225.0 call signalling, on the SIP listen address
    /// (1720, the registered port; 0: the OS picks one).
    pub port: u16,
    /// A caller that sends no Setup within this many seconds of connecting
    /// is disconnected.
    pub setup_timeout_s: u32,
}

impl Default for H323Config {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 1720,
            setup_timeout_s: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CascadeConfig {
    /// Janus HTTP API URL of the native meeting server; cascade is off when
    /// unset. When set, every conference joins the VideoRoom with its own
    /// number while it has participants.
    pub janus_url: Option<String>,
    pub ice_policy: IcePolicyConfig,
    /// TURN servers (the Edge) for the agent's ICE.
    pub turn: Vec<TurnConfig>,
    /// Address the agent's WebRTC media binds to (port chosen by the OS).
    pub media_ip: IpAddr,
    /// Create the room when the meeting server has none with that number.
    pub create_room: bool,
    /// The meeting server's room admin key, for `create_room`.
    pub admin_key: Option<String>,
    /// Native publishers shown in the layouts: the most recent talkers
    /// (RealConnect shows 5). The others are heard, not shown.
    pub native_speakers: usize,
    /// Native publishers heard at most (each is a subscription).
    pub native_audio: usize,
    /// Room-system speakers the native meeting sees as people of their
    /// own: 1 (default) publishes the active speaker with the mix; K > 1
    /// also publishes the next K-1 speakers, video only, by name.
    pub publish_speakers: usize,
    /// How the bridge appears in the native meeting.
    pub display_name: String,
    /// The meeting server's admin API and secret (Janus:
    /// `http://127.0.0.1:7088/admin`): with them a simulcast layer is
    /// encoded only while someone receives it, and the link's outbound
    /// loss is known.
    pub janus_admin_url: Option<String>,
    pub janus_admin_secret: Option<String>,
    /// A numeric conference joins the room with the same number on
    /// `janus_url` unless bound otherwise.
    pub bind_numeric: bool,
    /// Conferences bound to a room (any conference ID; another server).
    pub binding: Vec<BindingConfig>,
}

/// `[[cascade.binding]]`: conference `conference` joins `room` on
/// `janus_url` (default: `[cascade] janus_url`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingConfig {
    pub conference: String,
    pub room: u64,
    pub janus_url: Option<String>,
}

impl Default for CascadeConfig {
    fn default() -> Self {
        Self {
            janus_url: None,
            ice_policy: IcePolicyConfig::All,
            turn: Vec::new(),
            media_ip: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            create_room: false,
            admin_key: None,
            native_speakers: 5,
            native_audio: 24,
            publish_speakers: 1,
            display_name: "Tandem room systems".into(),
            janus_admin_url: None,
            janus_admin_secret: None,
            bind_numeric: true,
            binding: Vec::new(),
        }
    }
}

/// One TURN server: a static long-term `username`/`credential`, or a
/// shared `secret` from which the node mints time-limited credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnConfig {
    /// e.g. `turn:10.99.0.1:3478?transport=udp`.
    pub url: String,
    pub username: Option<String>,
    pub credential: Option<String>,
    pub secret: Option<String>,
}

/// The embedded TURN relay `tandem up` runs for sites without an Edge of
/// their own (see [`crate::turn_relay`]). UDP only: webrtc-rs' TURN server
/// has no TCP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TurnRelayConfig {
    pub enabled: bool,
    /// Where clients reach the relay (UDP). Port 0: chosen by the OS.
    pub listen: SocketAddr,
    /// Address written in relayed candidates (XOR-RELAYED-ADDRESS); default
    /// the listen address. Relay sockets bind to the listen address.
    pub relay_ip: Option<IpAddr>,
    /// UDP ports of the relayed addresses.
    pub relay_ports: PortRange,
    pub realm: String,
    /// TURN REST shared secret (coturn's `static-auth-secret`): usernames
    /// are `EXPIRY:name`, passwords base64(HMAC-SHA1(secret, username)).
    /// Unset: a random one, made at start and kept in memory, known only to
    /// this process (its cascade agents).
    pub secret: Option<String>,
}

impl Default for TurnRelayConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3478),
            relay_ip: None,
            relay_ports: PortRange(49160..=49300),
            realm: "tandem".into(),
            secret: None,
        }
    }
}

impl TurnRelayConfig {
    /// The address relayed candidates carry.
    pub fn relay_ip(&self) -> IpAddr {
        self.relay_ip.unwrap_or(self.listen.ip())
    }
}

/// Conferences across nodes (see [`crate::span`]): where this node listens
/// for links (QUIC), the cluster secret that authenticates them, and what
/// crosses a link.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpanConfig {
    /// false: no listener (this node can still join a home as a satellite).
    pub enabled: bool,
    /// UDP address of the QUIC listener; port 0 lets the OS choose (the
    /// node logs it and `GET /api/span` shows it).
    pub listen: SocketAddr,
    /// The cluster secret: each link proves it holds it (HMAC over the TLS
    /// session). Unset: a random one, so that no other node can link.
    pub secret: Option<String>,
    /// This node's name on links and in rosters; default the listen address.
    pub name: Option<String>,
    /// The top K speakers whose video crosses each link, each way.
    pub video_flows: usize,
    /// Bitrate of each video flow, kbit/s (picks the resolution, as a
    /// room system's `b=AS` does: 1000+ → 720p, 400+ → 360p, else 180p).
    pub video_kbps: u32,
}

impl Default for SpanConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5090),
            secret: None,
            name: None,
            video_flows: 4,
            video_kbps: 800,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IcePolicyConfig {
    #[default]
    All,
    Relay,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing-subscriber filter, e.g. `info,tandem_bridge=debug`.
    pub level: String,
}

/// The lobby (an IVR number that asks for the conference ID) and the door's
/// attempts and timers, which PIN entry uses too.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LobbyConfig {
    /// What callers dial for the lobby (`sip:<number>@node`): a name or
    /// digits (`"lobby"`, `8000`). Empty: no lobby.
    #[serde(deserialize_with = "string_or_number")]
    pub number: String,
    /// Wrong PINs, or unknown conference IDs, before the goodbye.
    pub attempts: u32,
    /// No digit for this long after a prompt repeats it, seconds.
    pub digit_timeout_s: u32,
    /// Longest a caller may stay at the door (lobby or PIN), seconds.
    pub max_wait_s: u32,
}

impl Default for LobbyConfig {
    fn default() -> Self {
        Self {
            number: "lobby".into(),
            attempts: 3,
            digit_timeout_s: 5,
            max_wait_s: 60,
        }
    }
}

impl LobbyConfig {
    pub fn door_settings(&self) -> crate::ivr::DoorSettings {
        crate::ivr::DoorSettings {
            attempts: self.attempts,
            digit_timeout: std::time::Duration::from_secs(u64::from(self.digit_timeout_s)),
            max_wait: std::time::Duration::from_secs(u64::from(self.max_wait_s)),
        }
    }

    /// Whether `user` (a Request-URI user part) is the lobby.
    pub fn is_lobby(&self, user: &str) -> bool {
        !self.number.is_empty() && self.number == user
    }
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum StringOrNumber {
        S(String),
        N(u64),
    }
    Ok(match StringOrNumber::deserialize(d)? {
        StringOrNumber::S(s) => s,
        StringOrNumber::N(n) => n.to_string(),
    })
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

const SECTIONS: &[&str] = &[
    "node",
    "control",
    "front_door",
    "sip",
    "http",
    "media",
    "qos",
    "conference",
    "video",
    "content",
    "h323",
    "cascade",
    "turn",
    "span",
    "log",
    "lobby",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    File { path: String, message: String },
    #[error("environment variable {var}: unknown section (known: {known})")]
    EnvSection { var: String, known: String },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Defaults, then `file` (if any), then `TANDEM_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                text.parse::<toml::Table>().map_err(|e| ConfigError::File {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?
            }
            None => toml::Table::new(),
        };
        for (var, value) in env {
            let Some(rest) = var.strip_prefix("TANDEM_") else {
                continue;
            };
            let rest = rest.to_ascii_lowercase();
            let Some((section, key)) = SECTIONS.iter().find_map(|s| {
                rest.strip_prefix(s)
                    .and_then(|k| k.strip_prefix('_'))
                    .map(|k| (*s, k.to_string()))
            }) else {
                return Err(ConfigError::EnvSection {
                    var,
                    known: SECTIONS.join(", "),
                });
            };
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(section_table) = entry else {
                return Err(ConfigError::Invalid(format!("{section} must be a table")));
            };
            section_table.insert(key, env_value(&value));
        }
        let config: Config = serde_path_to_error(table)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.control.validate().map_err(ConfigError::Invalid)?;
        self.front_door.validate().map_err(ConfigError::Invalid)?;
        if self.node.max_participants == 0 {
            return Err(ConfigError::Invalid(
                "node.max_participants: at least 1".into(),
            ));
        }
        let (a, v) = (&self.media.audio_ports.0, &self.media.video_ports.0);
        if a.start() <= v.end() && v.start() <= a.end() {
            return Err(ConfigError::Invalid(
                "media.audio_ports and media.video_ports overlap".into(),
            ));
        }
        if a.contains(&self.sip.port) || v.contains(&self.sip.port) {
            return Err(ConfigError::Invalid(
                "sip.port lies inside a media port range".into(),
            ));
        }
        for (k, d) in [
            ("qos.audio", self.qos.audio),
            ("qos.video", self.qos.video),
            ("qos.signalling", self.qos.signalling),
        ] {
            if d > 63 {
                return Err(ConfigError::Invalid(format!(
                    "{k}: DSCP must be 0..=63, got {d}"
                )));
            }
        }
        if !(1..=60).contains(&self.video.fps) {
            return Err(ConfigError::Invalid(format!(
                "video.fps must be 1..=60, got {}",
                self.video.fps
            )));
        }
        if self.video.layout().is_none() {
            return Err(ConfigError::Invalid(format!(
                "video.layout: unknown layout {:?} (auto, 1x1, 2x2, 3x3, 4x4, 5x5, 1+5, 1+7, 2+8, 1+21)",
                self.video.layout
            )));
        }
        if self.content.contention().is_none() {
            return Err(ConfigError::Invalid(format!(
                "content.contention: {:?} is not takeover or queue",
                self.content.contention
            )));
        }
        if self.video.max_class().is_none() {
            return Err(ConfigError::Invalid(format!(
                "video.max_resolution: {:?} is not 720p, 360p or 180p",
                self.video.max_resolution
            )));
        }
        if self.media.jitter_min_ms > self.media.jitter_max_ms {
            return Err(ConfigError::Invalid(
                "media.jitter_min_ms exceeds media.jitter_max_ms".into(),
            ));
        }
        if self.conference.mixed_speakers == 0 {
            return Err(ConfigError::Invalid(
                "conference.mixed_speakers must be at least 1".into(),
            ));
        }
        self.validate_lobby()?;
        if self.span.video_flows > usize::from(tandem_proto::span::MAX_VIDEO_FLOWS) {
            return Err(ConfigError::Invalid(format!(
                "span.video_flows: at most {}",
                tandem_proto::span::MAX_VIDEO_FLOWS
            )));
        }
        if self.span.secret.as_deref() == Some("") {
            return Err(ConfigError::Invalid(
                "span.secret must not be empty (leave it unset for a random one)".into(),
            ));
        }
        self.validate_turn()
    }

    fn validate_lobby(&self) -> Result<(), ConfigError> {
        let l = &self.lobby;
        if !l.number.is_empty() && !tandem_control::vmr::valid_conference_id(&l.number) {
            return Err(ConfigError::Invalid(format!(
                "lobby.number: {:?} is not a conference ID (letters, digits, '-', '_', '.')",
                l.number
            )));
        }
        for (k, v) in [
            ("lobby.attempts", l.attempts),
            ("lobby.digit_timeout_s", l.digit_timeout_s),
            ("lobby.max_wait_s", l.max_wait_s),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid(format!("{k} must be at least 1")));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, room) in self.room.iter().enumerate() {
            room.validate()
                .map_err(|e| ConfigError::Invalid(format!("room[{i}].{e}")))?;
            if !seen.insert(room.id.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "room[{i}].id: {:?} is listed twice",
                    room.id
                )));
            }
        }
        Ok(())
    }

    fn validate_turn(&self) -> Result<(), ConfigError> {
        let t = &self.turn;
        if !t.enabled {
            return Ok(());
        }
        if t.listen.ip().is_unspecified() && t.relay_ip.is_none_or(|ip| ip.is_unspecified()) {
            return Err(ConfigError::Invalid(format!(
                "turn.relay_ip: must name the address peers send to when turn.listen is {}",
                t.listen.ip()
            )));
        }
        if t.relay_ip.is_some_and(|ip| ip.is_unspecified()) {
            return Err(ConfigError::Invalid(
                "turn.relay_ip: must be an address peers can send to, not unspecified".into(),
            ));
        }
        if t.realm.trim().is_empty() {
            return Err(ConfigError::Invalid("turn.realm must not be empty".into()));
        }
        if t.secret.as_ref().is_some_and(|s| s.is_empty()) {
            return Err(ConfigError::Invalid(
                "turn.secret must not be empty (leave it unset for a random one)".into(),
            ));
        }
        let r = &t.relay_ports.0;
        let media_ip = self.media_listen();
        let shares_ip =
            |ip: IpAddr| ip == media_ip || ip.is_unspecified() || media_ip.is_unspecified();
        if shares_ip(t.listen.ip()) {
            for (k, m) in [
                ("media.audio_ports", &self.media.audio_ports.0),
                ("media.video_ports", &self.media.video_ports.0),
            ] {
                if r.start() <= m.end() && m.start() <= r.end() {
                    return Err(ConfigError::Invalid(format!(
                        "turn.relay_ports and {k} overlap"
                    )));
                }
            }
            if r.contains(&t.listen.port()) {
                return Err(ConfigError::Invalid(
                    "turn.listen's port lies inside turn.relay_ports".into(),
                ));
            }
        }
        Ok(())
    }

    pub fn media_listen(&self) -> IpAddr {
        self.media.listen.unwrap_or(self.sip.listen)
    }

    pub fn media_advertise(&self) -> IpAddr {
        self.media.advertise.unwrap_or_else(|| self.media_listen())
    }
}

/// An environment value is read as a TOML value when it is one (`5070`,
/// `false`), else as a string (`127.0.0.1:8081`, `40000-40999`).
fn env_value(raw: &str) -> toml::Value {
    let probe = format!("v = {raw}");
    match probe.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    }
}

/// Deserializes and names the failing key: serde alone would say only
/// "invalid type"; operators need `sip.port`. Each key is first tried on its
/// own, so the first bad one is named exactly.
fn serde_path_to_error(table: toml::Table) -> Result<Config, ConfigError> {
    for (section, value) in &table {
        if section == "room" {
            let toml::Value::Array(rooms) = value else {
                return Err(ConfigError::Invalid(
                    "room must be an array of tables ([[room]])".into(),
                ));
            };
            for (i, room) in rooms.iter().enumerate() {
                if let Err(e) = tandem_control::Vmr::deserialize(room.clone()) {
                    return Err(ConfigError::Invalid(format!("room[{i}]: {}", e.message())));
                }
            }
            continue;
        }
        if !SECTIONS.contains(&section.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "unknown section [{section}] (known: {})",
                SECTIONS.join(", ")
            )));
        }
        let toml::Value::Table(keys) = value else {
            return Err(ConfigError::Invalid(format!("[{section}] must be a table")));
        };
        for (key, v) in keys {
            let one = toml::Table::from_iter([(
                section.clone(),
                toml::Value::Table(toml::Table::from_iter([(key.clone(), v.clone())])),
            )]);
            if let Err(e) = Config::deserialize(one) {
                return Err(ConfigError::Invalid(format!(
                    "{section}.{key}: {}",
                    e.message()
                )));
            }
        }
    }
    Config::deserialize(table).map_err(|e| ConfigError::Invalid(e.message().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn defaults_serve_a_laptop() {
        let c = Config::load(None, env(&[])).expect("defaults");
        assert_eq!(c.sip.port, 5060);
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.media.audio_ports, PortRange(40000..=40999));
        assert_eq!(c.qos.audio, 46);
        assert!(c.conference.auto_create);
        assert_eq!(c.sip.contact_uri(), "sip:tandem@127.0.0.1:5060");
    }

    #[test]
    fn env_overrides_file_and_defaults() {
        let c = Config::load(
            None,
            env(&[
                ("TANDEM_SIP_PORT", "5070"),
                ("TANDEM_HTTP_LISTEN", "127.0.0.1:8081"),
                ("TANDEM_MEDIA_AUDIO_PORTS", "42000-42999"),
                ("TANDEM_CONFERENCE_AUTO_CREATE", "false"),
                ("PATH", "/bin"),
            ]),
        )
        .expect("config");
        assert_eq!(c.sip.port, 5070);
        assert_eq!(c.http.listen.port(), 8081);
        assert_eq!(c.media.audio_ports, PortRange(42000..=42999));
        assert!(!c.conference.auto_create);
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = Config::load(None, env(&[("TANDEM_SIP_PORT", "seventy")]))
            .expect_err("bad port")
            .to_string();
        assert!(err.contains("sip") && err.contains("port"), "{err}");
        let err = Config::load(None, env(&[("TANDEM_SIP_PROT", "5070")]))
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("prot"), "{err}");
        let err = Config::load(None, env(&[("TANDEM_BOGUS_X", "1")]))
            .expect_err("unknown section")
            .to_string();
        assert!(err.contains("TANDEM_BOGUS_X"), "{err}");
        let err = Config::load(None, env(&[("TANDEM_MEDIA_AUDIO_PORTS", "41500-42000")]))
            .expect_err("overlap")
            .to_string();
        assert!(err.contains("overlap"), "{err}");
    }

    #[test]
    fn turn_relay_section() {
        let c = Config::load(None, env(&[])).expect("defaults");
        assert!(c.turn.enabled);
        assert_eq!(c.turn.listen.to_string(), "127.0.0.1:3478");
        assert_eq!(c.turn.relay_ip().to_string(), "127.0.0.1");
        assert_eq!(c.turn.realm, "tandem");
        assert!(c.turn.secret.is_none());
        let c = Config::load(
            None,
            env(&[
                ("TANDEM_TURN_LISTEN", "10.99.0.1:3479"),
                ("TANDEM_TURN_RELAY_PORTS", "50000-50010"),
                ("TANDEM_TURN_SECRET", "north"),
                ("TANDEM_TURN_REALM", "edge.example"),
            ]),
        )
        .expect("env");
        assert_eq!(c.turn.relay_ip().to_string(), "10.99.0.1");
        assert_eq!(c.turn.relay_ports, PortRange(50000..=50010));
        assert_eq!(c.turn.secret.as_deref(), Some("north"));
        let err = Config::load(None, env(&[("TANDEM_TURN_LISTEN", "0.0.0.0:3478")]))
            .expect_err("unspecified listen, no relay_ip")
            .to_string();
        assert!(err.contains("turn.relay_ip"), "{err}");
        let c = Config::load(
            None,
            env(&[
                ("TANDEM_TURN_LISTEN", "0.0.0.0:3478"),
                ("TANDEM_TURN_RELAY_IP", "192.0.2.10"),
            ]),
        )
        .expect("public relay ip");
        assert_eq!(c.turn.relay_ip().to_string(), "192.0.2.10");
        let err = Config::load(None, env(&[("TANDEM_TURN_RELAY_PORTS", "40900-41100")]))
            .expect_err("overlap")
            .to_string();
        assert!(err.contains("turn.relay_ports"), "{err}");
        let err = Config::load(None, env(&[("TANDEM_TURN_LISTEN", "127.0.0.1")]))
            .expect_err("no port")
            .to_string();
        assert!(err.contains("turn.listen"), "{err}");
        let err = Config::load(None, env(&[("TANDEM_TURN_SECRET", "")]))
            .expect_err("empty secret")
            .to_string();
        assert!(err.contains("turn.secret"), "{err}");
        // Off: nothing else about it is checked.
        Config::load(
            None,
            env(&[
                ("TANDEM_TURN_ENABLED", "false"),
                ("TANDEM_TURN_RELAY_PORTS", "40900-41100"),
            ]),
        )
        .expect("disabled relay");
    }

    #[test]
    fn example_config_lists_valid_keys() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/tandem.example.toml");
        let c = Config::load(Some(&path), env(&[])).expect("example config parses");
        assert_eq!(c.sip.port, Config::default().sip.port);
        assert_eq!(c.media.video_ports, Config::default().media.video_ports);
    }

    #[test]
    fn lobby_and_rooms() {
        let c = Config::load(None, env(&[])).expect("defaults");
        assert!(c.lobby.is_lobby("lobby"));
        let c = Config::load(None, env(&[("TANDEM_LOBBY_NUMBER", "8000")])).expect("numeric");
        assert!(c.lobby.is_lobby("8000"));
        let c = Config::load(None, env(&[("TANDEM_LOBBY_NUMBER", "")])).expect("off");
        assert!(!c.lobby.is_lobby(""));
        let err = Config::load(None, env(&[("TANDEM_LOBBY_ATTEMPTS", "0")]))
            .expect_err("zero attempts")
            .to_string();
        assert!(err.contains("lobby.attempts"), "{err}");
        let dir = std::env::temp_dir().join(format!("tandem-config-rooms-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("node.toml");
        std::fs::write(
            &path,
            "[[room]]\nid = \"4711\"\npin = \"1234\"\nlayout = \"1x1\"\n[[room]]\nid = \"sales\"\nmax_participants = 2\n",
        )
        .expect("write");
        let c = Config::load(Some(&path), env(&[])).expect("rooms");
        assert_eq!(c.room.len(), 2);
        assert_eq!(c.room[0].pin.as_deref(), Some("1234"));
        std::fs::write(&path, "[[room]]\nid = \"4711\"\npin = \"12a\"\n").expect("write");
        let err = Config::load(Some(&path), env(&[]))
            .expect_err("bad pin")
            .to_string();
        assert!(err.contains("room[0].pin"), "{err}");
        std::fs::write(&path, "[[room]]\nid = \"4711\"\ncolour = 1\n").expect("write");
        let err = Config::load(Some(&path), env(&[]))
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("room[0]") && err.contains("colour"), "{err}");
    }

    #[test]
    fn file_is_read_and_unknown_keys_rejected() {
        let dir = std::env::temp_dir().join(format!("tandem-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("node.toml");
        std::fs::write(&path, "[sip]\nport = 5080\n[qos]\naudio = 40\n").expect("write");
        let c = Config::load(Some(&path), env(&[])).expect("file");
        assert_eq!(c.sip.port, 5080);
        assert_eq!(c.qos.audio, 40);
        std::fs::write(&path, "[sip]\nportt = 5080\n").expect("write");
        let err = Config::load(Some(&path), env(&[]))
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("portt"), "{err}");
    }
}
