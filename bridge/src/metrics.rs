//! Everything an operator would ask about, as Prometheus metrics. One
//! `Metrics` per node, shared by `Arc`; prometheus' counters are atomics, so
//! the media path never waits on a lock here.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub conferences: IntGauge,
    pub participants: IntGaugeVec,
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
    pub active_speaker_changes: IntCounter,
    pub dtmf: IntCounter,
    pub sip_transaction_timeouts: IntCounterVec,
    pub call_duration: HistogramVec,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    r.register(Box::new(c.clone())).expect("unique metric name");
    c
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
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            r.register(Box::new(pc)).expect("process collector");
        }
        let conferences = IntGauge::new("tandem_conferences", "Conferences with at least one participant")
            .expect("static metric definition");
        r.register(Box::new(conferences.clone())).expect("unique metric name");
        let participants = IntGaugeVec::new(
            Opts::new("tandem_participants", "Participants connected, by signalling and audio codec"),
            &["signalling", "codec"],
        )
        .expect("static metric definition");
        r.register(Box::new(participants.clone())).expect("unique metric name");
        Self {
            conferences,
            participants,
            sip_requests: counter_vec(&r, "tandem_sip_requests_total", "SIP requests received, by method", &["method"]),
            sip_responses: counter_vec(&r, "tandem_sip_responses_total", "SIP responses sent, by status code", &["code"]),
            malformed: counter_vec(
                &r,
                "tandem_malformed_total",
                "Malformed input received and dropped or refused, by protocol and kind",
                &["protocol", "kind"],
            ),
            calls: counter_vec(&r, "tandem_calls_total", "Calls by outcome", &["outcome"]),
            rtp_packets: counter_vec(&r, "tandem_rtp_packets_total", "RTP packets, by direction", &["direction"]),
            rtp_bytes: counter_vec(&r, "tandem_rtp_bytes_total", "RTP payload bytes, by direction", &["direction"]),
            rtp_lost: counter(&r, "tandem_rtp_lost_packets_total", "RTP packets lost on the way in (sequence gaps)"),
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
                vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04],
            ),
            audio_encodes: counter(&r, "tandem_audio_encodes_total", "Audio frames encoded (one per distinct output)"),
            audio_decodes: counter(&r, "tandem_audio_decodes_total", "Audio frames decoded"),
            active_speaker_changes: counter(&r, "tandem_active_speaker_changes_total", "Active speaker changes"),
            dtmf: counter(&r, "tandem_dtmf_events_total", "DTMF digits received (RFC 4733 or SIP INFO)"),
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
            registry: r,
        }
    }

    /// Counts one malformed input.
    pub fn malformed(&self, protocol: &str, kind: &str) {
        self.malformed.with_label_values(&[protocol, kind]).inc();
    }

    /// The text exposition for `/metrics`.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if encoder.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
