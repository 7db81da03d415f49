//! The control plane assembled: the store, live copies of nodes and rooms,
//! the placer with its failover and clean-up loops, load gauges, the REST API
//! and (for `tandem control`) the SIP front door.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::info;

use crate::api::{self, ControlApi};
use crate::config::{ControlConfig, FrontDoorConfig};
use crate::front_door::{FrontDoor, FrontDoorSettings};
use crate::metrics::ControlMetrics;
use crate::placement::Placer;
use crate::registry::{MirroredRooms, NodeRecord};
use crate::store::{self, Measured, Mirror, SharedStore, keys};
use crate::vmr::RoomDirectory;

pub struct Control {
    pub store: SharedStore,
    pub placer: Arc<Placer>,
    pub metrics: Arc<ControlMetrics>,
    pub rooms: Arc<dyn RoomDirectory>,
    pub front_door: Option<FrontDoor>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Control {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Control {
    /// Opens the store (`[control] etcd`, else memory) and starts the
    /// control loops, counting into `registry`.
    pub async fn start(
        config: &ControlConfig,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<Control> {
        let metrics = Arc::new(ControlMetrics::new(registry));
        let raw = store::open(
            &config.etcd,
            Duration::from_millis(config.request_timeout_ms),
        )
        .await?;
        Control::with_store(config, raw, metrics).await
    }

    /// As [`Control::start`] over a store already open (`tandem up` shares
    /// its memory store with the node).
    pub async fn with_store(
        config: &ControlConfig,
        raw: SharedStore,
        metrics: Arc<ControlMetrics>,
    ) -> anyhow::Result<Control> {
        let store = Measured::wrap(raw, metrics.clone());
        let nodes = Arc::new(Mirror::start(store.clone(), keys::NODES));
        let vmrs = Arc::new(Mirror::start(store.clone(), keys::VMRS));
        let timeout = Duration::from_millis(config.request_timeout_ms) * 3;
        if !nodes.ready(timeout).await {
            tracing::warn!(
                kind = store.kind(),
                "cluster store not answering yet; going on"
            );
        }
        let placer = Arc::new(Placer::new(
            store.clone(),
            nodes.clone(),
            metrics.clone(),
            config.span_sites,
        ));
        let tasks = vec![
            tokio::spawn(watch_nodes(nodes.clone(), placer.clone(), metrics.clone())),
            tokio::spawn(collect_ended(placer.clone())),
        ];
        info!(store = store.kind(), "control plane up");
        Ok(Control {
            store,
            placer,
            metrics,
            rooms: Arc::new(MirroredRooms(vmrs)),
            front_door: None,
            tasks,
        })
    }

    /// Starts the SIP front door on `listen`.
    pub async fn open_front_door(
        &mut self,
        listen: SocketAddr,
        front_door: &FrontDoorConfig,
        control: &ControlConfig,
        auto_create: bool,
    ) -> anyhow::Result<SocketAddr> {
        let fd = FrontDoor::start(
            FrontDoorSettings {
                listen,
                front_door: front_door.clone(),
                control: control.clone(),
                auto_create,
            },
            self.placer.clone(),
            self.rooms.clone(),
            self.metrics.clone(),
        )
        .await?;
        let addr = fd.addr;
        self.front_door = Some(fd);
        Ok(addr)
    }

    /// The REST routes (`/api/nodes`, `/api/placements`, `/api/vmrs`,
    /// `/api/openapi.json`).
    pub fn router(&self) -> axum::Router {
        api::router(ControlApi {
            store: self.store.clone(),
            placer: self.placer.clone(),
            metrics: self.metrics.clone(),
        })
    }
}

/// On every change of the node list: refresh the load gauges and move the
/// conferences of nodes that are gone.
async fn watch_nodes(nodes: Arc<Mirror>, placer: Arc<Placer>, metrics: Arc<ControlMetrics>) {
    let mut changes = nodes.subscribe();
    // Last known site of every node, to re-place a lost node's conferences
    // near where they were.
    let mut sites: HashMap<String, String> = HashMap::new();
    let mut known: Vec<(String, String)> = Vec::new();
    loop {
        if changes.changed().await.is_err() {
            return;
        }
        let records: Vec<NodeRecord> = placer.nodes();
        for (name, site) in &known {
            if !records.iter().any(|r| &r.name == name) {
                let _ = metrics.node_participants.remove_label_values(&[name, site]);
                let _ = metrics
                    .node_max_participants
                    .remove_label_values(&[name, site]);
                let _ = metrics.node_cpu.remove_label_values(&[name, site]);
                for state in ["in_use", "max"] {
                    let _ = metrics
                        .node_hd_ports
                        .remove_label_values(&[name, site, state]);
                }
            }
        }
        metrics.nodes.reset();
        known.clear();
        for r in &records {
            sites.insert(r.name.clone(), r.site.clone());
            known.push((r.name.clone(), r.site.clone()));
            let labels = [r.name.as_str(), r.site.as_str()];
            metrics
                .node_participants
                .with_label_values(&labels)
                .set(r.participants as i64);
            metrics
                .node_max_participants
                .with_label_values(&labels)
                .set(r.max_participants as i64);
            metrics.node_cpu.with_label_values(&labels).set(r.cpu);
            for (state, v) in [("in_use", r.hd_participants), ("max", r.hd_ports())] {
                metrics
                    .node_hd_ports
                    .with_label_values(&[&r.name, &r.site, state])
                    .set(v as i64);
            }
            metrics.nodes.with_label_values(&[&r.site]).inc();
        }
        // Only a first listing (generation 1) cannot tell a lost node from
        // one not yet seen; placements name nodes, so check them all.
        placer.fail_over(&sites).await;
    }
}

async fn collect_ended(placer: Arc<Placer>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        placer.collect_ended(Duration::from_secs(30)).await;
    }
}
