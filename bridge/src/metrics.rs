//! Everything an operator would ask about, as Prometheus metrics. One
//! `Metrics` per node, shared by `Arc`; prometheus' counters are atomics, so
//! the media path never waits on a lock here.

use prometheus::{
    Counter, Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub conferences: IntGauge,
    pub participants: IntGaugeVec,
    /// SIP calls on this node (in a conference, at a PIN prompt or in the
    /// lobby): what `[node] max_participants` limits and the control plane
    /// sees as the node's load.
    pub sip_calls: IntGauge,
    /// Of them, calls with video (HD ports in use).
    pub sip_hd_calls: IntGauge,
    /// Calls answered audio-only because every HD port was in use.
    pub hd_full: IntCounter,
    pub sip_requests: IntCounterVec,
    pub sip_responses: IntCounterVec,
    pub malformed: IntCounterVec,
    pub calls: IntCounterVec,
    pub rtp_packets: IntCounterVec,
    pub rtp_bytes: IntCounterVec,
    pub rtp_lost: IntCounter,
    pub rtp_jitter: Histogram,
    pub jitter_buffer_events: IntCounterVec,
    pub concealed_frames: IntCounterVec,
    pub mixer_tick: Histogram,
    pub audio_encodes: IntCounter,
    pub audio_decodes: IntCounter,
    pub audio_decodes_skipped: IntCounter,
    pub active_speaker_changes: IntCounter,
    pub dtmf: IntCounter,
    pub sip_transaction_timeouts: IntCounterVec,
    pub call_duration: HistogramVec,
    pub active_speaker: IntGaugeVec,
    pub video: VideoMetrics,
    pub cascade: CascadeMetrics,
    pub turn: TurnMetrics,
    pub ivr: IvrMetrics,
    pub content: ContentMetrics,
    pub h323: H323Metrics,
    pub span: crate::span::SpanMetrics,
    process: ProcessMetrics,
}

/// The door: PIN entry and the lobby (`ivr.rs`).
pub struct IvrMetrics {
    /// PIN entries, by result: accepted, wrong.
    pub pin_attempts: IntCounterVec,
    /// Calls that left the door, by outcome: joined, wrong_pin, not_found,
    /// timeout, full, hangup (the caller left while asked).
    pub calls: IntCounterVec,
    /// Callers at the door now (entering a PIN or a conference ID, or
    /// hearing the joining or goodbye prompt).
    pub waiting: IntGauge,
}

impl IvrMetrics {
    fn new(r: &Registry) -> Self {
        let waiting = gauge(
            r,
            "tandem_ivr_participants",
            "Callers at the door now: entering a PIN or a conference ID, or hearing a prompt before joining or leaving",
        );
        Self {
            pin_attempts: counter_vec(
                r,
                "tandem_pin_attempts_total",
                "Conference PIN entries, by result (accepted, wrong)",
                &["result"],
            ),
            calls: counter_vec(
                r,
                "tandem_ivr_calls_total",
                "Calls that left the door (PIN entry or lobby), by outcome \
                 (joined, wrong_pin, not_found, timeout, full, hangup)",
                &["outcome"],
            ),
            waiting,
        }
    }
}

/// H.323-lite calls (`h323.rs`).
pub struct H323Metrics {
    /// Calls ended, by Q.931 release cause (normal_call_clearing,
    /// unallocated_number, user_busy, ...) and by who released (caller,
    /// node).
    pub calls: IntCounterVec,
    /// Q.931 messages received, by type (setup, facility, ...).
    pub messages: IntCounterVec,
    /// H.245 messages received (tunnelled), by message name.
    pub h245_messages: IntCounterVec,
    /// Call signalling connections open.
    pub connections: IntGauge,
    /// H.239 presentation token requests, by outcome (granted, refused).
    pub token_requests: IntCounterVec,
}

impl H323Metrics {
    fn new(r: &Registry) -> Self {
        let calls = counter_vec(
            r,
            "tandem_h323_calls_total",
            "H.323 calls ended, by Q.931 release cause and by who released (caller, node)",
            &["cause", "by"],
        );
        calls.with_label_values(&["normal_call_clearing", "caller"]);
        calls.with_label_values(&["normal_call_clearing", "node"]);
        let token_requests = counter_vec(
            r,
            "tandem_h239_token_requests_total",
            "H.239 presentation token requests from H.323 room systems, by outcome (granted, refused)",
            &["outcome"],
        );
        for o in ["granted", "refused"] {
            token_requests.with_label_values(&[o]);
        }
        H323Metrics {
            calls,
            messages: counter_vec(
                r,
                "tandem_h323_messages_total",
                "Q.931 call signalling messages received over H.323, by type",
                &["type"],
            ),
            h245_messages: counter_vec(
                r,
                "tandem_h245_messages_total",
                "H.245 messages received (tunnelled in H.225.0), by message",
                &["message"],
            ),
            connections: gauge(
                r,
                "tandem_h323_connections",
                "H.323 call signalling (H.225.0) TCP connections open",
            ),
            token_requests,
        }
    }
}

/// Presentations (issue 6): the floor (BFCP) and the content channel.
pub struct ContentMetrics {
    /// Floor requests, by outcome: granted, took_over (granted, revoking
    /// the presenter), queued, error (refused with a BFCP Error).
    pub floor_requests: IntCounterVec,
    /// Floor changes, by event: granted, released, revoked (taken over),
    /// gone (the holder's call ended).
    pub floor_events: IntCounterVec,
    /// 1 while somebody presents in the conference (the series is removed
    /// with the conference).
    pub floor_held: IntGaugeVec,
    /// BFCP messages received, by primitive.
    pub bfcp_messages: IntCounterVec,
    /// BFCP connections (TCP) open.
    pub bfcp_connections: IntGauge,
    /// Content RTP, by direction: in (from the presenter), out (to every
    /// content channel); `rate()` of it is the content bitrate.
    pub bytes: IntCounterVec,
    pub packets: IntCounterVec,
    /// Content channels open (room systems that negotiated one).
    pub channels: IntGauge,
}

impl ContentMetrics {
    fn new(r: &Registry) -> Self {
        let floor_requests = counter_vec(
            r,
            "tandem_floor_requests_total",
            "Floor requests (BFCP FloorRequest, or on behalf of a presenter without BFCP), \
             by outcome (granted, took_over, queued, error)",
            &["outcome"],
        );
        for outcome in ["granted", "took_over", "queued", "error"] {
            floor_requests.with_label_values(&[outcome]);
        }
        let floor_events = counter_vec(
            r,
            "tandem_floor_events_total",
            "Changes of a content floor's holder, by event (granted, released, revoked, gone)",
            &["event"],
        );
        for event in ["granted", "released", "revoked", "gone"] {
            floor_events.with_label_values(&[event]);
        }
        let floor_held = IntGaugeVec::new(
            Opts::new(
                "tandem_floor_held",
                "1 while somebody presents content in the conference",
            ),
            &["conference"],
        )
        .expect("static metric definition");
        r.register(Box::new(floor_held.clone()))
            .expect("unique metric name");
        let bytes = counter_vec(
            r,
            "tandem_content_bytes_total",
            "Content (presentation) RTP bytes, by direction (in: from the presenter; out: to content channels)",
            &["direction"],
        );
        let packets = counter_vec(
            r,
            "tandem_content_packets_total",
            "Content (presentation) RTP packets, by direction (in, out)",
            &["direction"],
        );
        for d in ["in", "out"] {
            bytes.with_label_values(&[d]);
            packets.with_label_values(&[d]);
        }
        ContentMetrics {
            floor_requests,
            floor_events,
            floor_held,
            bfcp_messages: counter_vec(
                r,
                "tandem_bfcp_messages_total",
                "BFCP messages received, by primitive",
                &["primitive"],
            ),
            bfcp_connections: gauge(r, "tandem_bfcp_connections", "BFCP TCP connections open"),
            bytes,
            packets,
            channels: gauge(
                r,
                "tandem_content_channels",
                "Content channels open (room systems that negotiated a=content:slides with BFCP)",
            ),
        }
    }
}

/// The embedded TURN relay's figures (`[turn]`, issue 4). Counted from what
/// crosses its listening socket, the only place webrtc-rs' TURN server lets
/// us look: requests in, responses out.
pub struct TurnMetrics {
    /// Authenticated requests (Allocate, Refresh, CreatePermission,
    /// ChannelBind) by how their credentials checked out: ok, bad (wrong
    /// password, realm or username form), expired.
    pub auth: IntCounterVec,
    /// Allocations granted (Allocate success responses sent).
    pub allocations: IntCounter,
    /// Allocations open: granted and not yet expired, refreshed to zero or
    /// closed with the relay.
    pub allocations_open: IntGauge,
}

impl TurnMetrics {
    fn new(r: &Registry) -> Self {
        let auth = counter_vec(
            r,
            "tandem_turn_auth_total",
            "Authenticated requests to the embedded TURN relay, by result \
             (ok, bad: wrong password, realm or username; expired: TURN REST username past its time)",
            &["result"],
        );
        // All three exist from the start: an operator's `rate()` over a
        // series that appears only at the first failure misses it.
        for result in ["ok", "bad", "expired"] {
            auth.with_label_values(&[result]);
        }
        let allocations_open = gauge(
            r,
            "tandem_turn_allocations",
            "Allocations open on the embedded TURN relay",
        );
        TurnMetrics {
            auth,
            allocations: counter(
                r,
                "tandem_turn_allocations_total",
                "Allocations granted by the embedded TURN relay",
            ),
            allocations_open,
        }
    }
}

/// The cascade agents' figures (issue 4).
pub struct CascadeMetrics {
    /// Agents running (one per conference with a native meeting).
    pub agents: IntGauge,
    /// Rejoins after a lost meeting session or failed connection.
    pub rejoins: IntCounter,
    /// Media across the link, by direction and kind: RTP packets from the
    /// meeting (in); Opus packets and H.264 pictures into it (out).
    pub packets: IntCounterVec,
    /// Packets from the meeting we could not use, by reason (codec).
    pub dropped: IntCounterVec,
    /// Keyframe requests passed to native publishers (PLI).
    pub keyframe_requests: IntCounter,
    /// Links that came up, by the local candidate type their media took.
    pub connections: IntCounterVec,
    /// ICE round-trip time of the links, sampled every few seconds.
    pub rtt: Histogram,
    /// Payload bytes across the links, by direction and kind (rate() is
    /// the bitrate).
    pub bytes: IntCounterVec,
    /// Packets lost: in (gaps in what the meeting sent us), out (what the
    /// meeting server lost of ours, when its admin API tells).
    pub lost: IntCounterVec,
    /// Pictures and payload bytes published per simulcast layer.
    pub layer_frames: IntCounterVec,
    pub layer_bytes: IntCounterVec,
    /// Native participants' video switched to another simulcast layer, by
    /// the layer (their pane got bigger or smaller).
    pub layer_switches: IntCounterVec,
    /// Changes of which native participants are shown (speaker ranking).
    pub native_switches: IntCounter,
    /// Presentations carried across the cascade, by direction: out (a room
    /// system's, published into the meeting), in (a native screen share,
    /// presented to the room systems).
    pub content: IntCounterVec,
    /// Pictures the content transcoders encoded, and their bytes (rate()
    /// is the bitrate), by direction.
    pub content_frames: IntCounterVec,
    pub content_bytes: IntCounterVec,
}

impl CascadeMetrics {
    fn new(r: &Registry) -> Self {
        let agents = gauge(
            r,
            "tandem_cascade_agents",
            "Cascade agents running (conferences joined to a native meeting)",
        );
        CascadeMetrics {
            agents,
            rejoins: counter(
                r,
                "tandem_cascade_rejoins_total",
                "Times an agent rejoined its meeting after losing it",
            ),
            packets: counter_vec(
                r,
                "tandem_cascade_packets_total",
                "Media across cascade links, by direction and kind: RTP packets from the \
                 meeting (in), Opus packets and H.264 pictures published into it (out)",
                &["direction", "kind"],
            ),
            connections: counter_vec(
                r,
                "tandem_cascade_connections_total",
                "Cascade links that came up, by local candidate type (host, srflx, prflx, relay)",
                &["candidate"],
            ),
            rtt: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "tandem_cascade_rtt_seconds",
                        "ICE round-trip time to the meeting server's media, sampled every 2 s",
                    )
                    .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 1.0]),
                )
                .expect("static metric definition");
                r.register(Box::new(h.clone())).expect("unique metric name");
                h
            },
            keyframe_requests: counter(
                r,
                "tandem_cascade_keyframe_requests_total",
                "Keyframe requests passed on to native publishers (PLI)",
            ),
            dropped: counter_vec(
                r,
                "tandem_cascade_dropped_total",
                "Packets from native meetings not used, by reason",
                &["reason"],
            ),
            bytes: counter_vec(
                r,
                "tandem_cascade_bytes_total",
                "Payload bytes across cascade links, by direction (in, out) and kind",
                &["direction", "kind"],
            ),
            lost: counter_vec(
                r,
                "tandem_cascade_lost_packets_total",
                "Packets lost across cascade links: in (sequence gaps from the meeting), \
                 out (lost by the meeting server, from its admin API)",
                &["direction"],
            ),
            layer_frames: counter_vec(
                r,
                "tandem_cascade_layer_frames_total",
                "Pictures published into native meetings, by simulcast layer",
                &["layer"],
            ),
            layer_bytes: counter_vec(
                r,
                "tandem_cascade_layer_bytes_total",
                "Video payload bytes published into native meetings, by simulcast layer",
                &["layer"],
            ),
            layer_switches: counter_vec(
                r,
                "tandem_cascade_layer_switches_total",
                "Native participants' video switched to the simulcast layer that fits its pane",
                &["layer"],
            ),
            native_switches: counter(
                r,
                "tandem_cascade_native_switches_total",
                "Changes of which native participants are shown (the most recent talkers)",
            ),
            content: counter_vec(
                r,
                "tandem_cascade_content_total",
                "Presentations carried across cascades: out (a room system's, published into \
                 the meeting as a screen share), in (a native screen share, to room systems)",
                &["direction"],
            ),
            content_frames: counter_vec(
                r,
                "tandem_cascade_content_frames_total",
                "Pictures encoded by the cascade's content transcoders, by direction (out, in)",
                &["direction"],
            ),
            content_bytes: counter_vec(
                r,
                "tandem_cascade_content_bytes_total",
                "H.264 bytes encoded by the cascade's content transcoders, by direction (out, in)",
                &["direction"],
            ),
        }
    }
}

/// The video MCU's figures (issue 3). Gauges are node totals; each
/// conference's video thread adds and removes its own share.
pub struct VideoMetrics {
    pub legs: IntGauge,
    pub decoders: IntGauge,
    pub encoders: IntGauge,
    pub views: IntGauge,
    pub frames_decoded: IntCounter,
    pub frames_composed: IntCounter,
    pub frames_sent: IntCounter,
    /// By reason: late (tick overran), skipped (rate control),
    /// not_visible (nobody sees the source), waiting_keyframe, decode_error,
    /// encode_error, send_error.
    pub frames_dropped: IntCounterVec,
    pub decode_seconds: Histogram,
    pub encode_seconds: Histogram,
    pub tick_seconds: Histogram,
    /// Keyframes we asked senders for, by how: pli, fir, info.
    pub keyframes_requested: IntCounterVec,
    /// Keyframe requests received from our receivers, by how: pli, fir, info.
    pub keyframe_requests_received: IntCounterVec,
    pub keyframes_sent: IntCounter,
    pub layout_changes: IntCounterVec,
    /// Resolution limits (TMMBR) asked of senders, by the class their
    /// largest pane needs: 720p, 360p, 180p.
    pub source_limits_sent: IntCounterVec,
}

impl VideoMetrics {
    fn new(r: &Registry) -> Self {
        let gauge = |name: &str, help: &str| gauge(r, name, help);
        let timing = vec![
            0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.033, 0.066, 0.132,
        ];
        VideoMetrics {
            legs: gauge("tandem_video_legs", "Participants with a video stream"),
            decoders: gauge(
                "tandem_video_decoders",
                "H.264 decoders running (sources somebody sees)",
            ),
            encoders: gauge(
                "tandem_video_encoders",
                "H.264 encoders running (one per distinct view)",
            ),
            views: gauge(
                "tandem_video_views",
                "Distinct views composed in the last tick, summed over conferences",
            ),
            frames_decoded: counter(
                r,
                "tandem_video_frames_decoded_total",
                "Source pictures decoded",
            ),
            frames_composed: counter(
                r,
                "tandem_video_frames_composed_total",
                "View pictures composed and encoded (one per view per tick)",
            ),
            frames_sent: counter(
                r,
                "tandem_video_frames_sent_total",
                "View pictures sent, counted per receiving leg",
            ),
            frames_dropped: counter_vec(
                r,
                "tandem_video_frames_dropped_total",
                "Pictures not decoded, composed or sent, by reason",
                &["reason"],
            ),
            decode_seconds: histogram(
                r,
                "tandem_video_decode_seconds",
                "Time to decode one source picture",
                timing.clone(),
            ),
            encode_seconds: histogram(
                r,
                "tandem_video_encode_seconds",
                "Time to compose and encode one view picture (a tick's work divided by its views)",
                timing.clone(),
            ),
            tick_seconds: histogram(
                r,
                "tandem_video_tick_seconds",
                "Time one conference's video tick takes (compose, encode, packetize, send)",
                timing,
            ),
            keyframes_requested: counter_vec(
                r,
                "tandem_video_keyframes_requested_total",
                "Keyframes requested from video senders, by method (pli, fir, info)",
                &["method"],
            ),
            keyframe_requests_received: counter_vec(
                r,
                "tandem_video_keyframe_requests_received_total",
                "Keyframe requests from receivers, by method (pli, fir, info)",
                &["method"],
            ),
            source_limits_sent: counter_vec(
                r,
                "tandem_video_source_limits_sent_total",
                "Bitrate limits (TMMBR) sent to video senders so that they send what their \
                 largest pane needs, by that pane's class (720p, 360p, 180p)",
                &["class"],
            ),
            keyframes_sent: counter(
                r,
                "tandem_video_keyframes_sent_total",
                "Keyframes encoded for views (one serves every receiver of the view)",
            ),
            layout_changes: counter_vec(
                r,
                "tandem_video_layout_changes_total",
                "Layout choices made, by source (api, dtmf)",
                &["source"],
            ),
        }
    }
}

/// The process' own figures, read from /proc at scrape time. prometheus'
/// ProcessCollector reports CPU in whole seconds, too coarse to compute
/// participants per core over a short load run; this keeps the clock ticks.
struct ProcessMetrics {
    cpu: Counter,
    resident: Gauge,
    open_fds: Gauge,
    threads: Gauge,
    last_cpu: std::sync::Mutex<f64>,
}

impl ProcessMetrics {
    fn new(r: &Registry) -> Self {
        let gauge = |name: &str, help: &str| {
            let g = Gauge::new(name, help).expect("static metric definition");
            r.register(Box::new(g.clone())).expect("unique metric name");
            g
        };
        let cpu = Counter::new(
            "process_cpu_seconds_total",
            "User and system CPU time spent, seconds",
        )
        .expect("static metric definition");
        r.register(Box::new(cpu.clone()))
            .expect("unique metric name");
        // Registered for scrapers; set once here and never read back.
        let start_time = gauge(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, seconds",
        );
        if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            start_time.set(d.as_secs_f64());
        }
        Self {
            cpu,
            resident: gauge(
                "process_resident_memory_bytes",
                "Resident memory size, bytes",
            ),
            open_fds: gauge("process_open_fds", "Open file descriptors"),
            threads: gauge("process_threads", "OS threads"),
            last_cpu: std::sync::Mutex::new(0.0),
        }
    }

    fn refresh(&self) {
        if let Some(stat) = ProcStat::read() {
            if let Some(total) = stat.cpu_seconds()
                && let Ok(mut last) = self.last_cpu.lock()
                && total > *last
            {
                self.cpu.inc_by(total - *last);
                *last = total;
            }
            if let Some(t) = stat.field(20) {
                self.threads.set(t);
            }
            if let Some(rss_pages) = stat.field(24) {
                self.resident.set(rss_pages * 4096.0);
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(dir.count() as f64);
        }
    }
}

/// `/proc/self/stat`: the fields after the parenthesised command name.
pub struct ProcStat(String);

impl ProcStat {
    pub fn read() -> Option<ProcStat> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let rest = stat.rsplit_once(')')?.1.to_owned();
        Some(ProcStat(rest))
    }

    /// Field `n` as proc(5) numbers them (1: pid).
    fn field(&self, n: usize) -> Option<f64> {
        self.0
            .split_whitespace()
            .nth(n.checked_sub(3)?)?
            .parse()
            .ok()
    }

    /// User and system CPU time (utime + stime, fields 14 and 15, in clock
    /// ticks: USER_HZ, 100 on Linux), seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        const TICKS_PER_SECOND: f64 = 100.0;
        Some((self.field(14)? + self.field(15)?) / TICKS_PER_SECOND)
    }
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    r.register(Box::new(c.clone())).expect("unique metric name");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("static metric definition");
    r.register(Box::new(g.clone())).expect("unique metric name");
    g
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("static metric definition");
    r.register(Box::new(c.clone())).expect("unique metric name");
    c
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("static metric definition");
    r.register(Box::new(h.clone())).expect("unique metric name");
    h
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let conferences = gauge(
            &r,
            "tandem_conferences",
            "Conferences with at least one participant",
        );
        let participants = IntGaugeVec::new(
            Opts::new(
                "tandem_participants",
                "Participants connected, by signalling and audio codec",
            ),
            &["signalling", "codec"],
        )
        .expect("static metric definition");
        r.register(Box::new(participants.clone()))
            .expect("unique metric name");
        let sip_calls = gauge(
            &r,
            "tandem_sip_calls",
            "SIP calls on this node: in a conference, at a PIN prompt or in the lobby",
        );
        let sip_hd_calls = gauge(
            &r,
            "tandem_sip_hd_calls",
            "SIP calls with video on this node (HD ports in use of [node] max_hd_participants)",
        );
        let hd_full = counter(
            &r,
            "tandem_hd_full_total",
            "Calls that offered video and were answered audio-only: every HD port was in use",
        );
        Self {
            conferences,
            participants,
            sip_calls,
            sip_hd_calls,
            hd_full,
            sip_requests: counter_vec(
                &r,
                "tandem_sip_requests_total",
                "SIP requests received, by method",
                &["method"],
            ),
            sip_responses: counter_vec(
                &r,
                "tandem_sip_responses_total",
                "SIP responses sent, by status code",
                &["code"],
            ),
            malformed: counter_vec(
                &r,
                "tandem_malformed_total",
                "Malformed input received and dropped or refused, by protocol and kind",
                &["protocol", "kind"],
            ),
            calls: counter_vec(&r, "tandem_calls_total", "Calls by outcome", &["outcome"]),
            rtp_packets: counter_vec(
                &r,
                "tandem_rtp_packets_total",
                "RTP packets, by direction",
                &["direction"],
            ),
            rtp_bytes: counter_vec(
                &r,
                "tandem_rtp_bytes_total",
                "RTP payload bytes, by direction",
                &["direction"],
            ),
            rtp_lost: counter(
                &r,
                "tandem_rtp_lost_packets_total",
                "RTP packets lost on the way in (sequence gaps)",
            ),
            rtp_jitter: histogram(
                &r,
                "tandem_rtp_jitter_seconds",
                "Interarrival jitter of incoming RTP (RFC 3550 A.8), sampled per leg each second",
                vec![0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32],
            ),
            jitter_buffer_events: counter_vec(
                &r,
                "tandem_jitter_buffer_events_total",
                "Jitter buffer events: late, duplicate, overflow, underrun",
                &["event"],
            ),
            concealed_frames: counter_vec(
                &r,
                "tandem_concealed_frames_total",
                "Audio frames concealed after loss, by method (fec, plc)",
                &["method"],
            ),
            mixer_tick: histogram(
                &r,
                "tandem_mixer_tick_seconds",
                "Time one conference's 20 ms audio tick takes (decode, mix, encode, send)",
                vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04,
                ],
            ),
            audio_encodes: counter(
                &r,
                "tandem_audio_encodes_total",
                "Audio frames encoded (one per distinct output)",
            ),
            audio_decodes: counter(&r, "tandem_audio_decodes_total", "Audio frames decoded"),
            audio_decodes_skipped: counter(
                &r,
                "tandem_audio_decodes_skipped_total",
                "Opus frames not decoded: the sender flagged no voice and the leg was not in the mix",
            ),
            active_speaker_changes: counter(
                &r,
                "tandem_active_speaker_changes_total",
                "Active speaker changes",
            ),
            dtmf: counter(
                &r,
                "tandem_dtmf_events_total",
                "DTMF digits received (RFC 4733 or SIP INFO)",
            ),
            sip_transaction_timeouts: counter_vec(
                &r,
                "tandem_sip_timeouts_total",
                "SIP transactions or dialogs that timed out, by kind",
                &["kind"],
            ),
            call_duration: {
                let h = HistogramVec::new(
                    HistogramOpts::new("tandem_call_duration_seconds", "Duration of ended calls")
                        .buckets(vec![1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0]),
                    &["signalling"],
                )
                .expect("static metric definition");
                r.register(Box::new(h.clone())).expect("unique metric name");
                h
            },
            active_speaker: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "tandem_active_speaker",
                        "Participant ID of each conference's active speaker (absent when none)",
                    ),
                    &["conference"],
                )
                .expect("static metric definition");
                r.register(Box::new(g.clone())).expect("unique metric name");
                g
            },
            video: VideoMetrics::new(&r),
            cascade: CascadeMetrics::new(&r),
            turn: TurnMetrics::new(&r),
            ivr: IvrMetrics::new(&r),
            content: ContentMetrics::new(&r),
            h323: H323Metrics::new(&r),
            span: crate::span::SpanMetrics::new(&r),
            process: ProcessMetrics::new(&r),
            registry: r,
        }
    }

    /// Label lookups hash and lock; the media path resolves its counters once.
    pub fn media_counters(&self) -> MediaCounters {
        MediaCounters {
            rtp_in: self.rtp_packets.with_label_values(&["in"]),
            rtp_out: self.rtp_packets.with_label_values(&["out"]),
            rtcp_in: self.rtp_packets.with_label_values(&["rtcp_in"]),
            bytes_in: self.rtp_bytes.with_label_values(&["in"]),
            bytes_out: self.rtp_bytes.with_label_values(&["out"]),
        }
    }

    /// Counts one malformed input.
    pub fn malformed(&self, protocol: &str, kind: &str) {
        self.malformed.with_label_values(&[protocol, kind]).inc();
    }

    /// The registry behind `/metrics` (the control plane's figures join it
    /// in `tandem up`).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition for `/metrics`.
    pub fn render(&self) -> String {
        self.process.refresh();
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if encoder.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Pre-resolved per-packet counters (see [`Metrics::media_counters`]).
#[derive(Clone)]
pub struct MediaCounters {
    pub rtp_in: IntCounter,
    pub rtp_out: IntCounter,
    pub rtcp_in: IntCounter,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
