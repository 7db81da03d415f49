//! Placement: which node hosts each conference. One record per conference
//! under `/tandem/placements/<id>` (home node first, then the nodes it spans
//! onto), written only by compare-and-put, so two front doors placing the same
//! new conference at once agree on one home.
//!
//! The policy ([`choose`]): a node in the caller's site first; then the
//! sites of the room's pool in order; with no pool, the least loaded node
//! anywhere. Within a site, the least loaded node (participants over
//! capacity). A full or draining node gets nothing new.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::metrics::ControlMetrics;
use crate::registry::{NodeRecord, now_ms};
use crate::store::{Mirror, SharedStore, StoreError, keys};

/// Why a node was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementReason {
    /// The only node there is (`tandem up`).
    Local,
    /// In the caller's site.
    Site,
    /// The first site of the room's pool with room.
    Pool,
    /// Least loaded node, no site preferred.
    LeastLoaded,
    /// The preferred site(s) were full: the next site with room.
    Overflow,
    /// The conference's nodes were full: it spans onto another.
    SpanFull,
    /// A caller from a site the conference was not in yet.
    SpanSite,
    /// The home node's lease expired: a new home.
    Failover,
    /// A call reached the node without the front door placing it there
    /// (the node's lobby, or a caller dialling the node): the node joined
    /// the conference's placement itself.
    Joined,
}

impl PlacementReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PlacementReason::Local => "local",
            PlacementReason::Site => "site",
            PlacementReason::Pool => "pool",
            PlacementReason::LeastLoaded => "least_loaded",
            PlacementReason::Overflow => "overflow",
            PlacementReason::SpanFull => "span_full",
            PlacementReason::SpanSite => "span_site",
            PlacementReason::Failover => "failover",
            PlacementReason::Joined => "joined",
        }
    }
}

/// Where one conference lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub conference: String,
    /// Home first, then the nodes it spans onto.
    pub nodes: Vec<String>,
    /// Why the home was chosen.
    pub reason: PlacementReason,
    /// Why each node was added (same order as `nodes`).
    pub reasons: Vec<PlacementReason>,
    /// The caller's site when it was placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    pub placed_ms: u64,
}

impl Placement {
    /// A conference placed on one node, its home, for `reason`.
    pub fn new(
        conference: &str,
        home: &str,
        reason: PlacementReason,
        site: Option<&str>,
    ) -> Placement {
        Placement {
            conference: conference.to_owned(),
            nodes: vec![home.to_owned()],
            reason,
            reasons: vec![reason],
            site: site.map(str::to_owned),
            placed_ms: now_ms(),
        }
    }

    pub fn home(&self) -> Option<&str> {
        self.nodes.first().map(String::as_str)
    }

    /// Drops the nodes that are gone (`alive` says no), their reasons with
    /// them. Returns whether the home was among them; the home that remains
    /// (if any) is then there by failover.
    pub fn drop_gone(&mut self, alive: impl Fn(&str) -> bool) -> bool {
        let home_lost = self.nodes.first().is_some_and(|h| !alive(h));
        self.reasons.resize(self.nodes.len(), self.reason);
        (self.nodes, self.reasons) = self
            .nodes
            .iter()
            .zip(&self.reasons)
            .filter(|(n, _)| alive(n))
            .map(|(n, r)| (n.clone(), *r))
            .unzip();
        if home_lost {
            self.reason = PlacementReason::Failover;
            if let Some(r) = self.reasons.first_mut() {
                *r = PlacementReason::Failover;
            }
        }
        home_lost
    }
}

/// No node can take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoCapacity {
    /// No node is registered (in the pool).
    NoNodes,
    /// Every node is full or draining.
    Full,
}

/// A node as placement sees it: its record and the calls routed to it that
/// the record does not count yet.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub node: &'a NodeRecord,
    pub pending: usize,
}

impl Candidate<'_> {
    fn has_room(&self) -> bool {
        self.node.has_room(self.pending)
    }

    /// Fraction of capacity in use, ports or HD ports whichever is more
    /// used (then CPU, then name, for a stable order). Calls on their way
    /// count as HD: most room systems bring video.
    fn load_key(&self) -> (u64, u64, &str) {
        let ratio = |used: usize, of: usize| {
            (used.saturating_add(self.pending) as u64).saturating_mul(1_000_000) / of.max(1) as u64
        };
        let used = ratio(self.node.participants, self.node.max_participants)
            .max(ratio(self.node.hd_participants, self.node.hd_ports()));
        (used, (self.node.cpu * 1000.0) as u64, &self.node.name)
    }
}

/// Chooses a node for a conference (or one more node for it): see the
/// module's doc. `exclude`: nodes it is on already.
pub fn choose<'a>(
    nodes: &[Candidate<'a>],
    caller_site: Option<&str>,
    pool: &[String],
    exclude: &[String],
) -> Result<(&'a NodeRecord, PlacementReason), NoCapacity> {
    let eligible: Vec<&Candidate<'a>> = nodes
        .iter()
        .filter(|c| !exclude.contains(&c.node.name))
        .filter(|c| pool.is_empty() || pool.contains(&c.node.site))
        .collect();
    if eligible.is_empty() {
        return Err(NoCapacity::NoNodes);
    }
    let least = |site: Option<&str>| {
        eligible
            .iter()
            .filter(|c| site.is_none_or(|s| c.node.site == s))
            .filter(|c| c.has_room())
            .min_by(|a, b| a.load_key().cmp(&b.load_key()))
            .map(|c| c.node)
    };
    let mut order: Vec<&str> = Vec::new();
    if let Some(s) = caller_site
        && (pool.is_empty() || pool.iter().any(|p| p == s))
    {
        order.push(s);
    }
    for s in pool {
        if !order.contains(&s.as_str()) {
            order.push(s);
        }
    }
    let mut passed_full = false;
    for site in order {
        if !eligible.iter().any(|c| c.node.site == site) {
            continue;
        }
        if let Some(n) = least(Some(site)) {
            let reason = if passed_full {
                PlacementReason::Overflow
            } else if Some(site) == caller_site {
                PlacementReason::Site
            } else {
                PlacementReason::Pool
            };
            return Ok((n, reason));
        }
        passed_full = true;
    }
    match least(None) {
        Some(n) if passed_full => Ok((n, PlacementReason::Overflow)),
        Some(n) => Ok((n, PlacementReason::LeastLoaded)),
        None => Err(NoCapacity::Full),
    }
}

/// Where one call goes.
#[derive(Debug, Clone)]
pub struct Route {
    pub node: NodeRecord,
    pub placement: Placement,
    /// Set when this call placed the conference or added this node to it.
    pub placed: Option<PlacementReason>,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("no node can take the call ({0:?})")]
    NoCapacity(NoCapacity),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Routes calls: reads and writes placements, tallies calls routed to each
/// node until the node's own record counts them.
pub struct Placer {
    store: SharedStore,
    nodes: Arc<Mirror>,
    /// A live copy of the placements: a call to a placed conference is
    /// routed without a store round trip (writes still compare-and-put
    /// against the store, and a lost race reads the store itself).
    placements: Mirror,
    metrics: Arc<ControlMetrics>,
    /// Calls routed per node, by when (Unix ms), not yet in its record.
    pending: Mutex<HashMap<String, Vec<u64>>>,
    /// Add a node in the caller's site to a conference homed elsewhere.
    span_sites: bool,
}

/// Calls routed this long before a node counted its load are in the count
/// (the INVITE's way from front door to node).
const PENDING_MARGIN_MS: u64 = 50;
/// A routed call not in the node's count after this long never arrived.
const PENDING_LIFE_MS: u64 = 4000;

impl Placer {
    pub fn new(
        store: SharedStore,
        nodes: Arc<Mirror>,
        metrics: Arc<ControlMetrics>,
        span_sites: bool,
    ) -> Placer {
        Placer {
            placements: Mirror::start(store.clone(), keys::PLACEMENTS),
            store,
            nodes,
            metrics,
            pending: Mutex::new(HashMap::new()),
            span_sites,
        }
    }

    /// Live node records.
    pub fn nodes(&self) -> Vec<NodeRecord> {
        self.nodes
            .entries()
            .iter()
            .filter_map(|e| serde_json::from_slice(&e.value).ok())
            .collect()
    }

    fn pending_for(&self, node: &NodeRecord) -> usize {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some(list) = p.get_mut(&node.name) else {
            return 0;
        };
        // Counted by the node's record, or never arrived (a failed call).
        let now = now_ms();
        list.retain(|t| *t + PENDING_MARGIN_MS > node.updated_ms && now < *t + PENDING_LIFE_MS);
        list.len()
    }

    fn note_routed(&self, node: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(node.to_owned())
            .or_default()
            .push(now_ms());
    }

    /// The node for one call to `conference` from `caller_site`, placing the
    /// conference (or spanning it onto one more node) if need be.
    pub async fn route(
        &self,
        conference: &str,
        caller_site: Option<&str>,
        pool: &[String],
    ) -> Result<Route, RouteError> {
        let started = Instant::now();
        let result = self.route_inner(conference, caller_site, pool).await;
        self.metrics
            .placement_seconds
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(r) => {
                if let Some(reason) = r.placed {
                    self.metrics
                        .placements
                        .with_label_values(&[reason.as_str()])
                        .inc();
                }
                self.note_routed(&r.node.name);
            }
            Err(RouteError::NoCapacity(NoCapacity::NoNodes)) => self
                .metrics
                .placement_refused
                .with_label_values(&["no_nodes"])
                .inc(),
            Err(RouteError::NoCapacity(NoCapacity::Full)) => self
                .metrics
                .placement_refused
                .with_label_values(&["full"])
                .inc(),
            Err(RouteError::Store(_)) => self
                .metrics
                .placement_refused
                .with_label_values(&["store"])
                .inc(),
        }
        result
    }

    async fn route_inner(
        &self,
        conference: &str,
        caller_site: Option<&str>,
        pool: &[String],
    ) -> Result<Route, RouteError> {
        let key = keys::placement(conference);
        // A lost compare-and-put means another front door placed it first:
        // read theirs and go on from there.
        for attempt in 0..8 {
            let records = self.nodes();
            let pending: Vec<usize> = records.iter().map(|n| self.pending_for(n)).collect();
            let candidates: Vec<Candidate<'_>> = records
                .iter()
                .zip(&pending)
                .map(|(node, p)| Candidate { node, pending: *p })
                .collect();
            let by_name = |name: &str| candidates.iter().find(|c| c.node.name == name);
            let current = match self.placements.get(&key) {
                Some(e) if attempt == 0 => Some(e),
                _ => self.store.get(&key).await?,
            };
            let (revision, existing) = match &current {
                Some(e) => (
                    e.mod_revision,
                    serde_json::from_slice::<Placement>(&e.value).ok(),
                ),
                None => (0, None),
            };
            let Some(mut placement) = existing else {
                let (node, reason) =
                    choose(&candidates, caller_site, pool, &[]).map_err(RouteError::NoCapacity)?;
                let placement = Placement::new(conference, &node.name, reason, caller_site);
                if self.write(&key, revision, &placement).await? {
                    info!(%conference, node = %node.name, reason = reason.as_str(), "placed");
                    return Ok(Route {
                        node: node.clone(),
                        placement,
                        placed: Some(reason),
                    });
                }
                continue;
            };
            // Nodes that are gone leave the placement (failover also does
            // this; a call may come first).
            let before = placement.nodes.len();
            let home_lost = placement.drop_gone(|n| by_name(n).is_some());
            if placement.nodes.is_empty() {
                let (node, _) =
                    choose(&candidates, caller_site, pool, &[]).map_err(RouteError::NoCapacity)?;
                placement.nodes = vec![node.name.clone()];
                placement.reasons = vec![PlacementReason::Failover];
                placement.reason = PlacementReason::Failover;
                placement.placed_ms = now_ms();
                if self.write(&key, revision, &placement).await? {
                    return Ok(Route {
                        node: node.clone(),
                        placement,
                        placed: Some(PlacementReason::Failover),
                    });
                }
                continue;
            }
            let members: Vec<&Candidate<'_>> =
                placement.nodes.iter().filter_map(|n| by_name(n)).collect();
            let in_caller_site =
                |c: &&&Candidate<'_>| caller_site.is_some_and(|s| c.node.site == s);
            // A member in the caller's site with room; else the home; else
            // any member with room.
            let target = members
                .iter()
                .filter(in_caller_site)
                .find(|c| c.has_room())
                .or_else(|| members.first().filter(|c| c.has_room()))
                .or_else(|| members.iter().find(|c| c.has_room()));
            // A room pooled to other sites is not spread to the caller's.
            let want_site_node = self.span_sites
                && caller_site.is_some_and(|s| pool.is_empty() || pool.iter().any(|p| p == s))
                && !members.iter().any(|c| in_caller_site(&c));
            let span_reason = match target {
                None => Some(PlacementReason::SpanFull),
                Some(_) if want_site_node => Some(PlacementReason::SpanSite),
                Some(_) => None,
            };
            if let Some(span_reason) = span_reason {
                let site_only: Vec<String>;
                let pool_for_span = if span_reason == PlacementReason::SpanSite {
                    site_only = vec![caller_site.unwrap_or_default().to_owned()];
                    &site_only[..]
                } else {
                    pool
                };
                match choose(&candidates, caller_site, pool_for_span, &placement.nodes) {
                    Ok((node, _)) => {
                        placement.nodes.push(node.name.clone());
                        placement.reasons.push(span_reason);
                        if self.write(&key, revision, &placement).await? {
                            info!(%conference, node = %node.name, reason = span_reason.as_str(), "spanned");
                            return Ok(Route {
                                node: node.clone(),
                                placement,
                                placed: Some(span_reason),
                            });
                        }
                        continue;
                    }
                    Err(e) => {
                        if span_reason == PlacementReason::SpanFull {
                            return Err(RouteError::NoCapacity(e));
                        }
                        // No node with room in the caller's site: use the
                        // conference's own.
                    }
                }
            }
            let Some(target) = target else {
                return Err(RouteError::NoCapacity(NoCapacity::Full));
            };
            let node = target.node.clone();
            if placement.nodes.len() != before || home_lost {
                if !self.write(&key, revision, &placement).await? {
                    continue;
                }
                if home_lost {
                    return Ok(Route {
                        node,
                        placement,
                        placed: Some(PlacementReason::Failover),
                    });
                }
            }
            return Ok(Route {
                node,
                placement,
                placed: None,
            });
        }
        Err(RouteError::Store(StoreError::Unavailable(
            "placement kept changing under us".into(),
        )))
    }

    async fn write(
        &self,
        key: &str,
        revision: i64,
        placement: &Placement,
    ) -> Result<bool, StoreError> {
        let body = serde_json::to_vec(placement).unwrap_or_default();
        self.store.compare_and_put(key, revision, body, None).await
    }

    /// Every placement.
    pub async fn placements(&self) -> Result<Vec<Placement>, StoreError> {
        let (entries, _) = self.store.list(keys::PLACEMENTS).await?;
        Ok(entries
            .iter()
            .filter_map(|e| serde_json::from_slice(&e.value).ok())
            .collect())
    }

    /// Re-places conferences whose nodes are gone: run by the control plane
    /// whenever the node list changes. A conference whose home is gone gets a
    /// new home (in the old home's site if one has room, by the same policy);
    /// nodes gone from its span are dropped. Returns how many moved.
    pub async fn fail_over(&self, last_sites: &HashMap<String, String>) -> usize {
        let Ok((entries, _)) = self.store.list(keys::PLACEMENTS).await else {
            return 0;
        };
        let records = self.nodes();
        let candidates: Vec<Candidate<'_>> = records
            .iter()
            .map(|node| Candidate {
                node,
                pending: self.pending_for(node),
            })
            .collect();
        let alive = |n: &str| records.iter().any(|r| r.name == n);
        let mut moved = 0;
        for e in entries {
            let Ok(mut p) = serde_json::from_slice::<Placement>(&e.value) else {
                continue;
            };
            if p.nodes.iter().all(|n| alive(n)) {
                continue;
            }
            let old_home = p.nodes.first().cloned().unwrap_or_default();
            let home_lost = p.drop_gone(alive);
            if p.nodes.is_empty() {
                let site = last_sites.get(&old_home).map(String::as_str);
                match choose(&candidates, site, &[], &[]) {
                    Ok((node, _)) => {
                        p.nodes.push(node.name.clone());
                        p.reasons.push(PlacementReason::Failover);
                    }
                    Err(_) => {
                        // Nowhere to go: forget it; the next call places it.
                        let _ = self.store.compare_and_delete(&e.key, e.mod_revision).await;
                        warn!(conference = %p.conference, "no node to fail over to");
                        continue;
                    }
                }
            }
            if home_lost {
                p.placed_ms = now_ms();
            }
            if let Ok(true) = self.write(&e.key, e.mod_revision, &p).await {
                if home_lost {
                    moved += 1;
                    self.metrics.failovers.inc();
                    self.metrics
                        .placements
                        .with_label_values(&[PlacementReason::Failover.as_str()])
                        .inc();
                }
                info!(conference = %p.conference, from = %old_home, nodes = ?p.nodes, "failed over");
            }
        }
        moved
    }

    /// Forgets placements of conferences none of their nodes hosts any more
    /// (after `grace`, so a placement is not dropped before its first call
    /// arrives).
    pub async fn collect_ended(&self, grace: Duration) -> usize {
        let Ok((entries, _)) = self.store.list(keys::PLACEMENTS).await else {
            return 0;
        };
        let records = self.nodes();
        let now = now_ms();
        let mut removed = 0;
        for e in entries {
            let Ok(p) = serde_json::from_slice::<Placement>(&e.value) else {
                continue;
            };
            if now.saturating_sub(p.placed_ms) < grace.as_millis() as u64 {
                continue;
            }
            let hosted = p.nodes.iter().any(|n| {
                records.iter().any(|r| {
                    r.name == *n
                        && (r.conferences.contains(&p.conference) || r.updated_ms < p.placed_ms)
                })
            });
            if !hosted
                && self
                    .store
                    .compare_and_delete(&e.key, e.mod_revision)
                    .await
                    .unwrap_or(false)
            {
                removed += 1;
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, site: &str, participants: usize, max: usize) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            site: site.into(),
            participants,
            max_participants: max,
            ..NodeRecord::default()
        }
    }

    fn pick(
        nodes: &[NodeRecord],
        site: Option<&str>,
        pool: &[&str],
        exclude: &[&str],
    ) -> Result<(String, PlacementReason), NoCapacity> {
        let c: Vec<Candidate<'_>> = nodes
            .iter()
            .map(|node| Candidate { node, pending: 0 })
            .collect();
        let pool: Vec<String> = pool.iter().map(|s| s.to_string()).collect();
        let exclude: Vec<String> = exclude.iter().map(|s| s.to_string()).collect();
        choose(&c, site, &pool, &exclude).map(|(n, r)| (n.name.clone(), r))
    }

    #[test]
    fn the_callers_site_then_least_loaded_then_the_pool_in_order() {
        let nodes = [
            node("a", "east", 5, 20),
            node("b", "east", 2, 20),
            node("c", "west", 0, 20),
        ];
        assert_eq!(
            pick(&nodes, Some("east"), &[], &[]),
            Ok(("b".into(), PlacementReason::Site))
        );
        assert_eq!(
            pick(&nodes, Some("west"), &[], &[]),
            Ok(("c".into(), PlacementReason::Site))
        );
        assert_eq!(
            pick(&nodes, None, &[], &[]),
            Ok(("c".into(), PlacementReason::LeastLoaded))
        );
        assert_eq!(
            pick(&nodes, None, &["east", "west"], &[]),
            Ok(("b".into(), PlacementReason::Pool))
        );
        // A caller outside the pool's sites goes to the pool.
        assert_eq!(
            pick(&nodes, Some("west"), &["east"], &[]),
            Ok(("b".into(), PlacementReason::Pool))
        );
    }

    #[test]
    fn hd_ports_in_use_count_as_load() {
        // Same participants; a has spent 9 of its 10 HD ports, b 1 of 10.
        let mut a = node("a", "east", 10, 40);
        a.max_hd_participants = 10;
        a.hd_participants = 9;
        let mut b = node("b", "east", 10, 40);
        b.max_hd_participants = 10;
        b.hd_participants = 1;
        assert_eq!(
            pick(&[a.clone(), b.clone()], Some("east"), &[], &[]),
            Ok(("b".into(), PlacementReason::Site))
        );
        // A record without HD ports (an older node) has as many as ports.
        let mut c = node("c", "east", 10, 40);
        c.hd_participants = 10;
        assert_eq!(c.hd_ports(), 40);
        assert_eq!(
            pick(&[a, c], Some("east"), &[], &[]),
            Ok(("c".into(), PlacementReason::Site))
        );
    }

    #[test]
    fn a_full_site_overflows_to_the_next_in_the_pool_and_full_nodes_get_nothing() {
        let nodes = [
            node("a", "east", 20, 20),
            node("b", "east", 20, 20),
            node("c", "west", 19, 20),
            node("d", "north", 0, 20),
        ];
        assert_eq!(
            pick(&nodes, Some("east"), &["east", "west", "north"], &[]),
            Ok(("c".into(), PlacementReason::Overflow))
        );
        assert_eq!(
            pick(&nodes, Some("east"), &[], &[]),
            Ok(("d".into(), PlacementReason::Overflow))
        );
        assert_eq!(
            pick(&nodes, Some("east"), &["east"], &[]),
            Err(NoCapacity::Full)
        );
        assert_eq!(
            pick(&nodes, Some("west"), &["west"], &["c"]),
            Err(NoCapacity::NoNodes)
        );
        let mut draining = node("e", "south", 0, 20);
        draining.draining = true;
        assert_eq!(
            pick(&[draining], Some("south"), &[], &[]),
            Err(NoCapacity::Full)
        );
    }
}
