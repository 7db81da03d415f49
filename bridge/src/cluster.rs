//! A node's membership in a fleet: its leased record in the cluster store
//! (through `tandem_control`; the node never talks to etcd itself), kept
//! current with its load: participants, conferences, CPU.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_control::store::SharedStore;
use tandem_control::{Load, Membership, NodeRecord, RoomDirectory, Vmr};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::registry::Registry;

pub struct ClusterMember {
    pub membership: Arc<Membership>,
    task: JoinHandle<()>,
}

impl ClusterMember {
    /// Registers the node (`[node] name, site, max_participants`) and
    /// publishes its load (checked every 100 ms) when it changed.
    pub async fn join(
        config: &Config,
        store: SharedStore,
        sip: std::net::SocketAddr,
        api: std::net::SocketAddr,
        span: Option<std::net::SocketAddr>,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
    ) -> ClusterMember {
        let record = NodeRecord {
            name: config.node.name.clone(),
            site: config.node.site.clone(),
            sip: sip.to_string(),
            api: api.to_string(),
            span: span.map(|s| s.to_string()),
            max_participants: config.node.max_participants,
            max_hd_participants: config.node.hd_ports(),
            version: env!("CARGO_PKG_VERSION").into(),
            ..NodeRecord::default()
        };
        let ttl = Duration::from_secs(config.control.lease_ttl);
        let membership = Arc::new(Membership::join(store, record, ttl).await);
        let task = tokio::spawn(publish_load(membership.clone(), registry, metrics));
        ClusterMember { membership, task }
    }

    /// Leaves the cluster at once (the control plane moves nothing: the
    /// node's conferences ended with its calls).
    pub async fn leave(self) {
        self.task.abort();
        if let Ok(m) = Arc::try_unwrap(self.membership) {
            m.leave().await;
        }
    }
}

async fn publish_load(membership: Arc<Membership>, registry: Arc<Registry>, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut cpu = CpuMeter::new();
    loop {
        tick.tick().await;
        // Counted by signalling as it answers and ends calls: exact, and at
        // the time it says.
        let participants = metrics.sip_calls.get().max(0) as usize;
        let hd_participants = metrics.sip_hd_calls.get().max(0) as usize;
        let conferences = registry.ids();
        membership.set_load(Load {
            participants,
            hd_participants,
            counted_ms: tandem_control::registry::now_ms(),
            conferences,
            // Rounded so that noise does not rewrite the record each tick.
            cpu: (cpu.cores() * 10.0).round() / 10.0,
            draining: false,
        });
    }
}

/// CPU this process used since the last reading, in cores (from
/// `/proc/self/stat`; 0 where there is none).
struct CpuMeter {
    last: Option<(f64, Instant)>,
    value: f64,
}

impl CpuMeter {
    fn new() -> Self {
        CpuMeter {
            last: None,
            value: 0.0,
        }
    }

    fn cores(&mut self) -> f64 {
        let Some(now) = process_cpu_seconds() else {
            return 0.0;
        };
        let at = Instant::now();
        if let Some((then, when)) = self.last {
            let wall = at.duration_since(when).as_secs_f64();
            if wall >= 1.0 {
                self.value = ((now - then) / wall).max(0.0);
                self.last = Some((now, at));
            }
        } else {
            self.last = Some((now, at));
        }
        self.value
    }
}

fn process_cpu_seconds() -> Option<f64> {
    crate::metrics::ProcStat::read()?.cpu_seconds()
}

/// Rooms from several directories, the first that knows a room winning: a
/// node's own `[[room]]` tables, then the control plane's.
pub struct Rooms(pub Vec<Arc<dyn RoomDirectory>>);

impl RoomDirectory for Rooms {
    fn room(&self, id: &str) -> Option<Vmr> {
        self.0.iter().find_map(|d| d.room(id))
    }
}
