//! Cluster state: a small key-value interface with etcd's semantics (revisions,
//! leases, compare-and-put, prefix watches), over a real etcd (`etcd.rs`) or,
//! for `tandem up`, in memory (`memory.rs`). Everything above it (registry,
//! placement, rooms) is written once against [`Store`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub mod etcd;
pub mod memory;
pub mod mirror;

pub use etcd::EtcdStore;
pub use memory::MemoryStore;
pub use mirror::Mirror;

/// A lease ID: keys put with it vanish when it expires.
pub type LeaseId = i64;

/// A value and the revision that last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// A change under a watched prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    Put(Entry),
    Delete { key: String, revision: i64 },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or refused the request.
    #[error("cluster store unavailable: {0}")]
    Unavailable(String),
    /// The lease is gone (expired or revoked).
    #[error("lease {0} expired")]
    LeaseExpired(LeaseId),
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<Entry>>;
    /// Every key under `prefix`, and the store revision they were read at.
    async fn list(&self, prefix: &str) -> Result<(Vec<Entry>, i64)>;
    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<i64>;
    /// Whether there was a key to delete.
    async fn delete(&self, key: &str) -> Result<bool>;
    /// Writes `value` only if the key was last written at `expected`
    /// (0: only if it does not exist); one transaction. Returns whether it
    /// wrote.
    async fn compare_and_put(
        &self,
        key: &str,
        expected: i64,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<bool>;
    /// Deletes only if the key was last written at `expected`.
    async fn compare_and_delete(&self, key: &str, expected: i64) -> Result<bool>;
    async fn grant(&self, ttl: Duration) -> Result<LeaseId>;
    /// Renews the lease; [`StoreError::LeaseExpired`] when it is gone.
    async fn keep_alive(&self, lease: LeaseId) -> Result<()>;
    async fn revoke(&self, lease: LeaseId) -> Result<()>;
    /// Changes under `prefix` after revision `after`. The channel closes when
    /// the watch breaks (the store went away): list again and re-watch.
    async fn watch(&self, prefix: &str, after: i64) -> Result<mpsc::Receiver<WatchEvent>>;
    /// `etcd` or `memory`, for logs and the API.
    fn kind(&self) -> &'static str;
}

pub type SharedStore = Arc<dyn Store>;

/// Connects to etcd when endpoints are given, else keeps state in memory.
pub async fn open(etcd: &[String], timeout: Duration) -> anyhow::Result<SharedStore> {
    if etcd.is_empty() {
        Ok(Arc::new(MemoryStore::new()))
    } else {
        Ok(Arc::new(EtcdStore::connect(etcd, timeout).await?))
    }
}

/// The keys the cluster uses.
pub mod keys {
    pub const NODES: &str = "/tandem/nodes/";
    pub const PLACEMENTS: &str = "/tandem/placements/";
    pub const VMRS: &str = "/tandem/vmrs/";

    pub fn node(name: &str) -> String {
        format!("{NODES}{name}")
    }
    pub fn placement(conference: &str) -> String {
        format!("{PLACEMENTS}{conference}")
    }
    pub fn vmr(id: &str) -> String {
        format!("{VMRS}{id}")
    }
}

/// Times every request and counts failures ([`crate::metrics::ControlMetrics`]).
pub struct Measured {
    inner: SharedStore,
    metrics: Arc<crate::metrics::ControlMetrics>,
}

impl Measured {
    pub fn wrap(inner: SharedStore, metrics: Arc<crate::metrics::ControlMetrics>) -> SharedStore {
        Arc::new(Measured { inner, metrics })
    }

    async fn time<T>(
        &self,
        op: &str,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let timer = self
            .metrics
            .store_seconds
            .with_label_values(&[op])
            .start_timer();
        let r = f.await;
        timer.observe_duration();
        if matches!(r, Err(StoreError::Unavailable(_))) {
            self.metrics.store_errors.with_label_values(&[op]).inc();
        }
        r
    }
}

#[async_trait]
impl Store for Measured {
    async fn get(&self, key: &str) -> Result<Option<Entry>> {
        self.time("get", self.inner.get(key)).await
    }
    async fn list(&self, prefix: &str) -> Result<(Vec<Entry>, i64)> {
        self.time("list", self.inner.list(prefix)).await
    }
    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<i64> {
        self.time("put", self.inner.put(key, value, lease)).await
    }
    async fn delete(&self, key: &str) -> Result<bool> {
        self.time("delete", self.inner.delete(key)).await
    }
    async fn compare_and_put(
        &self,
        key: &str,
        expected: i64,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<bool> {
        self.time(
            "txn",
            self.inner.compare_and_put(key, expected, value, lease),
        )
        .await
    }
    async fn compare_and_delete(&self, key: &str, expected: i64) -> Result<bool> {
        self.time("txn", self.inner.compare_and_delete(key, expected))
            .await
    }
    async fn grant(&self, ttl: Duration) -> Result<LeaseId> {
        self.time("lease", self.inner.grant(ttl)).await
    }
    async fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        self.time("lease", self.inner.keep_alive(lease)).await
    }
    async fn revoke(&self, lease: LeaseId) -> Result<()> {
        self.time("lease", self.inner.revoke(lease)).await
    }
    async fn watch(&self, prefix: &str, after: i64) -> Result<mpsc::Receiver<WatchEvent>> {
        self.time("watch", self.inner.watch(prefix, after)).await
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}
