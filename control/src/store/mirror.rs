//! A live copy of one prefix of the store: listed, then kept current by a
//! watch; listed again whenever the watch breaks (etcd restarted, compacted).
//! Readers never wait on the store: the node's signalling and the front door
//! read rooms, nodes and placements from mirrors.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::{Entry, SharedStore, WatchEvent};

pub struct Mirror {
    map: Arc<RwLock<BTreeMap<String, Entry>>>,
    generation: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mirror {
    /// Starts mirroring `prefix` (needs a Tokio runtime).
    pub fn start(store: SharedStore, prefix: &str) -> Mirror {
        let map = Arc::new(RwLock::new(BTreeMap::new()));
        let (gen_tx, generation) = watch::channel(0u64);
        let task = tokio::spawn(run(store, prefix.to_owned(), map.clone(), gen_tx));
        Mirror {
            map,
            generation,
            task,
        }
    }

    pub fn get(&self, key: &str) -> Option<Entry> {
        read(&self.map).get(key).cloned()
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> Vec<Entry> {
        read(&self.map).values().cloned().collect()
    }

    /// Bumped on every change (0 until the first listing).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.clone()
    }

    /// Waits for the first listing, up to `timeout`; whether it came.
    pub async fn ready(&self, timeout: Duration) -> bool {
        let mut rx = self.generation.clone();
        tokio::time::timeout(timeout, rx.wait_for(|g| *g > 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

fn read(
    map: &RwLock<BTreeMap<String, Entry>>,
) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
    map.read().unwrap_or_else(|p| p.into_inner())
}

fn write(
    map: &RwLock<BTreeMap<String, Entry>>,
) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Entry>> {
    map.write().unwrap_or_else(|p| p.into_inner())
}

async fn run(
    store: SharedStore,
    prefix: String,
    map: Arc<RwLock<BTreeMap<String, Entry>>>,
    generation: watch::Sender<u64>,
) {
    let bump = || generation.send_modify(|g| *g += 1);
    let mut failures = 0u32;
    loop {
        let listed = store.list(&prefix).await;
        let (entries, revision) = match listed {
            Ok(l) => l,
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(30) {
                    warn!(%prefix, %e, "cannot list cluster state; keeping the last copy");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        *write(&map) = entries.into_iter().map(|e| (e.key.clone(), e)).collect();
        bump();
        let mut events = match store.watch(&prefix, revision).await {
            Ok(rx) => rx,
            Err(e) => {
                debug!(%prefix, %e, "watch failed; listing again");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        failures = 0;
        while let Some(ev) = events.recv().await {
            {
                let mut m = write(&map);
                match ev {
                    WatchEvent::Put(e) => {
                        m.insert(e.key.clone(), e);
                    }
                    WatchEvent::Delete { key, .. } => {
                        m.remove(&key);
                    }
                }
            }
            bump();
        }
        debug!(%prefix, "watch ended; listing again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
