//! The node registry: each MCU node keeps a record under `/tandem/nodes/<name>`
//! on a lease of a few seconds ([`Membership`]); the record vanishes when the
//! node stops renewing it (crash, SIGKILL, partition), which is how the
//! control plane learns a node is gone.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::placement::{Placement, PlacementReason};
use crate::store::{Mirror, SharedStore, StoreError, keys};
use crate::vmr::{RoomDirectory, Vmr};

/// What a node publishes about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct NodeRecord {
    pub name: String,
    pub site: String,
    /// Where its SIP listener takes calls (`host:port`).
    pub sip: String,
    /// Its HTTP API (`host:port`).
    pub api: String,
    /// Where it takes node-to-node links (QUIC), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<String>,
    /// Participants it accepts before it is full.
    pub max_participants: usize,
    /// Participants on it now.
    pub participants: usize,
    /// Of `max_participants`, those that may have video (HD ports); 0 in
    /// records of nodes that did not say: as many as `max_participants`.
    #[serde(default)]
    pub max_hd_participants: usize,
    /// Participants with video on it now.
    #[serde(default)]
    pub hd_participants: usize,
    /// The conferences it hosts a part of.
    #[serde(default)]
    pub conferences: Vec<String>,
    /// CPU in use, in cores.
    #[serde(default)]
    pub cpu: f64,
    /// Takes no new conferences (operator asked, or shutting down).
    #[serde(default)]
    pub draining: bool,
    /// When its load was counted (Unix milliseconds).
    #[serde(default)]
    pub updated_ms: u64,
    #[serde(default)]
    pub version: String,
}

impl NodeRecord {
    /// Whether it takes one more participant (`pending`: calls routed to it
    /// that its record does not count yet).
    pub fn has_room(&self, pending: usize) -> bool {
        !self.draining && self.participants.saturating_add(pending) < self.max_participants
    }

    /// The HD ports it has.
    pub fn hd_ports(&self) -> usize {
        if self.max_hd_participants == 0 {
            self.max_participants
        } else {
            self.max_hd_participants
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Load a node reports; the membership publishes it when it changes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Load {
    pub participants: usize,
    /// Participants with video (HD ports in use).
    pub hd_participants: usize,
    /// When `participants` was counted (Unix ms): the record says so, and
    /// the front door knows which calls it routed are in the count.
    pub counted_ms: u64,
    pub conferences: Vec<String>,
    pub cpu: f64,
    pub draining: bool,
}

/// A node's place in the cluster: its leased record, kept current, and the
/// cluster state it reads (placements, other nodes).
pub struct Membership {
    store: SharedStore,
    load: watch::Sender<Load>,
    task: JoinHandle<()>,
    lease: Arc<std::sync::Mutex<Option<i64>>>,
    placements: Arc<Mirror>,
    nodes: Arc<Mirror>,
}

impl Membership {
    /// Registers `record` under a lease of `ttl` and keeps it alive (renewed
    /// every third of the TTL, written again when the load changes, and
    /// registered anew if the lease was lost, e.g. after etcd restarted
    /// without its data). Waits for the first registration up to `ttl`; a
    /// store that is down then is not fatal: it keeps trying.
    pub async fn join(store: SharedStore, record: NodeRecord, ttl: Duration) -> Membership {
        let (load_tx, load_rx) = watch::channel(Load {
            participants: record.participants,
            hd_participants: record.hd_participants,
            counted_ms: now_ms(),
            conferences: record.conferences.clone(),
            cpu: record.cpu,
            draining: record.draining,
        });
        let lease = Arc::new(std::sync::Mutex::new(None));
        let (registered_tx, mut registered_rx) = watch::channel(false);
        let task = tokio::spawn(keep_registered(
            store.clone(),
            record,
            ttl,
            load_rx,
            lease.clone(),
            registered_tx,
        ));
        let _ = tokio::time::timeout(ttl, registered_rx.wait_for(|r| *r)).await;
        Membership {
            placements: Arc::new(Mirror::start(store.clone(), keys::PLACEMENTS)),
            nodes: Arc::new(Mirror::start(store.clone(), keys::NODES)),
            store,
            load: load_tx,
            task,
            lease,
        }
    }

    /// Publishes the node's load (written only when it changed; the count's
    /// time alone is no change).
    pub fn set_load(&self, load: Load) {
        self.load.send_if_modified(|l| {
            // CPU moves a little all the time: a quarter of a core is news
            // now; less is written at the next renewal.
            let changed = l.participants != load.participants
                || l.hd_participants != load.hd_participants
                || l.conferences != load.conferences
                || l.draining != load.draining
                || (l.cpu - load.cpu).abs() >= 0.25;
            *l = load;
            changed
        });
    }

    /// Makes node `me` a member of `conference`'s placement when a call
    /// reached it by itself (its lobby; a caller dialling the node): added
    /// to the nodes of a conference placed elsewhere (it then links there
    /// as a satellite), or its home if the conference is placed nowhere
    /// (or only on nodes that are gone). A transaction, as placement is.
    pub async fn claim(&self, conference: &str, me: &str) -> Result<(), StoreError> {
        let key = keys::placement(conference);
        for _ in 0..8 {
            let current = self.store.get(&key).await?;
            let revision = current.as_ref().map_or(0, |e| e.mod_revision);
            let existing = current
                .as_ref()
                .and_then(|e| serde_json::from_slice::<Placement>(&e.value).ok());
            let placement = match existing {
                Some(p) if p.nodes.iter().any(|n| n == me) => return Ok(()),
                Some(mut p) => {
                    p.drop_gone(|n| self.node(n).is_some());
                    p.nodes.push(me.to_owned());
                    p.reasons.push(PlacementReason::Joined);
                    if p.nodes.len() == 1 {
                        p.reason = PlacementReason::Joined;
                        p.placed_ms = now_ms();
                    }
                    p
                }
                None => Placement::new(conference, me, PlacementReason::Joined, None),
            };
            let body = serde_json::to_vec(&placement).unwrap_or_default();
            if self
                .store
                .compare_and_put(&key, revision, body, None)
                .await?
            {
                info!(%conference, node = %me, home = ?placement.home(), "joined the conference's placement");
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(
            "placement kept changing under us".into(),
        ))
    }

    /// Where `conference` is placed, from a live copy.
    pub fn placement(&self, conference: &str) -> Option<Placement> {
        self.placements
            .get(&keys::placement(conference))
            .and_then(|e| serde_json::from_slice(&e.value).ok())
    }

    /// Every placement, from a live copy.
    pub fn placements(&self) -> Vec<Placement> {
        self.placements
            .entries()
            .iter()
            .filter_map(|e| serde_json::from_slice(&e.value).ok())
            .collect()
    }

    /// Bumped whenever a placement changes.
    pub fn placement_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.placements.subscribe()
    }

    /// A node's record, from a live copy.
    pub fn node(&self, name: &str) -> Option<NodeRecord> {
        self.nodes
            .get(&keys::node(name))
            .and_then(|e| serde_json::from_slice(&e.value).ok())
    }

    /// Leaves the cluster at once (revokes the lease) rather than letting
    /// the record expire.
    pub async fn leave(self) {
        self.task.abort();
        let lease = *self.lease.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = lease {
            let _ = self.store.revoke(l).await;
        }
    }
}

/// Rooms read from a mirror of `/tandem/vmrs/`.
pub struct MirroredRooms(pub Arc<Mirror>);

impl RoomDirectory for MirroredRooms {
    fn room(&self, id: &str) -> Option<Vmr> {
        self.0
            .get(&keys::vmr(id))
            .and_then(|e| serde_json::from_slice(&e.value).ok())
    }
}

async fn keep_registered(
    store: SharedStore,
    mut record: NodeRecord,
    ttl: Duration,
    mut load: watch::Receiver<Load>,
    lease_slot: Arc<std::sync::Mutex<Option<i64>>>,
    registered: watch::Sender<bool>,
) {
    let key = keys::node(&record.name);
    // One clock for renewals that load changes do not reset: a node whose
    // load changes faster than it renews must still renew (writing a key
    // under a lease does not extend the lease).
    let mut renew = tokio::time::interval(ttl / 3);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lease: Option<i64> = None;
    let mut dirty = true;
    let mut warned = false;
    loop {
        // Register (again) when there is no lease.
        let l = match lease {
            Some(l) => l,
            None => match store.grant(ttl).await {
                Ok(l) => {
                    dirty = true;
                    l
                }
                Err(e) => {
                    if !warned {
                        warn!(%e, "cannot register with the cluster store; retrying");
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        if dirty {
            {
                let current = load.borrow_and_update().clone();
                record.participants = current.participants;
                record.hd_participants = current.hd_participants;
                record.conferences = current.conferences;
                record.cpu = current.cpu;
                record.draining = current.draining;
                record.updated_ms = current.counted_ms;
            }
            let body = serde_json::to_vec(&record).unwrap_or_default();
            match store.put(&key, body, Some(l)).await {
                Ok(_) => {
                    if lease.is_none() {
                        info!(node = %record.name, site = %record.site, lease = l, "registered with the cluster");
                        warned = false;
                    }
                    lease = Some(l);
                    dirty = false;
                    *lease_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(l);
                    registered.send_replace(true);
                }
                Err(StoreError::LeaseExpired(_)) => {
                    warn!(node = %record.name, "lease expired; registering again");
                    lease = None;
                    continue;
                }
                Err(e) => {
                    if !warned {
                        warn!(%e, "cannot publish the node record; retrying");
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
        }
        // Renew on the clock; write again when the load changes.
        tokio::select! {
            _ = renew.tick() => match store.keep_alive(l).await {
                Ok(()) => dirty = load.borrow().cpu != record.cpu,
                Err(StoreError::LeaseExpired(_)) => {
                    warn!(node = %record.name, "lease expired; registering again");
                    lease = None;
                }
                Err(_) => {} // store away: try again next tick
            },
            changed = load.changed() => {
                if changed.is_err() {
                    return;
                }
                // Coalesce a burst of joins into one write.
                tokio::time::sleep(Duration::from_millis(100)).await;
                dirty = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn lease_of(m: &Membership) -> Option<i64> {
        *m.lease.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A node whose load changes faster than it renews keeps its lease:
    /// writes under a lease do not extend it, renewals must still happen.
    #[tokio::test(start_paused = true)]
    async fn a_busy_node_keeps_its_lease() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let record = NodeRecord {
            name: "a".into(),
            site: "east".into(),
            ..NodeRecord::default()
        };
        let m = Membership::join(store.clone(), record, Duration::from_secs(3)).await;
        let first = lease_of(&m).expect("registered");
        for i in 0..100 {
            m.set_load(Load {
                participants: i % 7,
                hd_participants: i % 5,
                counted_ms: now_ms(),
                conferences: vec![format!("c{}", i % 3)],
                cpu: (i % 10) as f64 / 10.0,
                draining: false,
            });
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The last change is written after its 100 ms of coalescing.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            lease_of(&m),
            Some(first),
            "the lease was lost and granted anew"
        );
        let e = store
            .get(&keys::node("a"))
            .await
            .expect("get")
            .expect("the node's record is there");
        let r: NodeRecord = serde_json::from_slice(&e.value).expect("record");
        assert_eq!(r.participants, 99 % 7);
    }
}
