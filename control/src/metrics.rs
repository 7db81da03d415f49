//! The control plane's figures, registered into whichever Prometheus registry
//! serves `/metrics` (the control process's own, or the node's in `tandem up`).

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

pub struct ControlMetrics {
    /// Store requests by operation, and how long they took.
    pub store_seconds: HistogramVec,
    pub store_errors: IntCounterVec,
    /// Conferences placed (or a node added to one) by reason.
    pub placements: IntCounterVec,
    pub placement_seconds: prometheus::Histogram,
    /// Placements refused: no node with room.
    pub placement_refused: IntCounterVec,
    /// Conferences moved off a node whose lease expired.
    pub failovers: IntCounter,
    /// Front-door calls by outcome: proxied, redirected, or refused by reason.
    pub front_door_calls: IntCounterVec,
    /// Load as the control plane sees it, per node.
    pub node_participants: IntGaugeVec,
    pub node_max_participants: IntGaugeVec,
    /// HD ports per node: `in_use` and `max`.
    pub node_hd_ports: IntGaugeVec,
    pub node_cpu: GaugeVec,
    pub nodes: IntGaugeVec,
    /// REST API requests refused (bad JSON, invalid field, unknown room).
    pub api_errors: IntCounterVec,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    // A second registration (two controls in one test process sharing a
    // registry) keeps the first.
    let _ = r.register(Box::new(c.clone()));
    c
}

impl ControlMetrics {
    pub fn new(r: &Registry) -> ControlMetrics {
        let buckets = vec![
            0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0,
        ];
        ControlMetrics {
            store_seconds: reg(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "tandem_control_store_request_seconds",
                        "Cluster store (etcd) requests by operation: get, list, put, delete, txn, lease",
                    )
                    .buckets(buckets.clone()),
                    &["op"],
                )
                .expect("static metric"),
            ),
            store_errors: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "tandem_control_store_errors_total",
                        "Cluster store requests that failed (store unreachable), by operation",
                    ),
                    &["op"],
                )
                .expect("static metric"),
            ),
            placements: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "tandem_placements_total",
                        "Conferences placed on a node (or spanned onto one), by reason: site, pool, least_loaded, overflow, span_full, span_site, failover, joined",
                    ),
                    &["reason"],
                )
                .expect("static metric"),
            ),
            placement_seconds: reg(
                r,
                prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "tandem_placement_seconds",
                        "Time to route one call: read the placement, choose, commit the transaction",
                    )
                    .buckets(buckets),
                )
                .expect("static metric"),
            ),
            placement_refused: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "tandem_placement_refused_total",
                        "Placements that found no node: no_nodes, full, store",
                    ),
                    &["reason"],
                )
                .expect("static metric"),
            ),
            failovers: reg(
                r,
                IntCounter::new(
                    "tandem_failovers_total",
                    "Conferences re-placed because a node's lease expired",
                )
                .expect("static metric"),
            ),
            front_door_calls: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "tandem_front_door_calls_total",
                        "INVITEs at the front door by outcome: proxied, redirected, not_found, no_capacity, loop, bad_request, store_unavailable",
                    ),
                    &["outcome"],
                )
                .expect("static metric"),
            ),
            node_participants: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "tandem_control_node_participants",
                        "Participants on each node, as the node last published",
                    ),
                    &["node", "site"],
                )
                .expect("static metric"),
            ),
            node_max_participants: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "tandem_control_node_max_participants",
                        "Participants each node accepts",
                    ),
                    &["node", "site"],
                )
                .expect("static metric"),
            ),
            node_hd_ports: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "tandem_control_node_hd_ports",
                        "HD ports (participants with video) of each node: in_use, max",
                    ),
                    &["node", "site", "state"],
                )
                .expect("static metric"),
            ),
            node_cpu: reg(
                r,
                GaugeVec::new(
                    Opts::new(
                        "tandem_control_node_cpu_cores",
                        "CPU each node uses (cores busy), as it last published",
                    ),
                    &["node", "site"],
                )
                .expect("static metric"),
            ),
            nodes: reg(
                r,
                IntGaugeVec::new(
                    Opts::new("tandem_control_nodes", "Nodes with a live lease, by site"),
                    &["site"],
                )
                .expect("static metric"),
            ),
            api_errors: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "tandem_control_api_errors_total",
                        "Control REST requests refused, by code: bad_request, invalid, not_found, conflict",
                    ),
                    &["code"],
                )
                .expect("static metric"),
            ),
        }
    }
}
