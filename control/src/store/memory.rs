//! The store in memory: one process (`tandem up`, unit tests). Same semantics
//! as etcd for what [`Store`] offers: a global revision, leases that expire
//! and take their keys with them, compare-and-put, ordered prefix watches.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Entry, LeaseId, Result, Store, StoreError, WatchEvent};

#[derive(Default)]
struct State {
    revision: i64,
    kv: BTreeMap<String, (Vec<u8>, i64, Option<LeaseId>)>,
    leases: HashMap<LeaseId, (Duration, Instant)>,
    next_lease: LeaseId,
    watchers: Vec<(String, mpsc::Sender<WatchEvent>)>,
}

impl State {
    fn notify(&mut self, key: &str, event: WatchEvent) {
        self.watchers.retain(|(prefix, tx)| {
            if !key.starts_with(prefix.as_str()) {
                return !tx.is_closed();
            }
            // A watcher too slow to keep up loses its watch (it re-lists),
            // as etcd cancels a slow watcher.
            tx.try_send(event.clone()).is_ok()
        });
    }

    fn put(&mut self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<i64> {
        if let Some(l) = lease
            && !self.leases.contains_key(&l)
        {
            return Err(StoreError::LeaseExpired(l));
        }
        self.revision += 1;
        let rev = self.revision;
        self.kv.insert(key.to_owned(), (value.clone(), rev, lease));
        self.notify(
            key,
            WatchEvent::Put(Entry {
                key: key.to_owned(),
                value,
                mod_revision: rev,
            }),
        );
        Ok(rev)
    }

    fn delete(&mut self, key: &str) -> bool {
        if self.kv.remove(key).is_none() {
            return false;
        }
        self.revision += 1;
        let revision = self.revision;
        self.notify(
            key,
            WatchEvent::Delete {
                key: key.to_owned(),
                revision,
            },
        );
        true
    }

    fn expire(&mut self, now: Instant) {
        let expired: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.revoke(id);
        }
    }

    fn revoke(&mut self, id: LeaseId) {
        self.leases.remove(&id);
        let keys: Vec<String> = self
            .kv
            .iter()
            .filter(|(_, (_, _, l))| *l == Some(id))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.delete(&k);
        }
    }
}

/// Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// Needs a Tokio runtime: a task expires leases (every 100 ms) while the
    /// store lives.
    pub fn new() -> Self {
        let state = Arc::new(Mutex::new(State {
            next_lease: 1,
            ..State::default()
        }));
        let weak: Weak<Mutex<State>> = Arc::downgrade(&state);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                let Some(state) = weak.upgrade() else { break };
                lock(&state).expire(Instant::now());
            }
        });
        MemoryStore { state }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut s = lock(&self.state);
        s.expire(Instant::now());
        f(&mut s)
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>> {
        Ok(self.with(|s| {
            s.kv.get(key).map(|(v, rev, _)| Entry {
                key: key.to_owned(),
                value: v.clone(),
                mod_revision: *rev,
            })
        }))
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<Entry>, i64)> {
        Ok(self.with(|s| {
            let entries =
                s.kv.range(prefix.to_owned()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(k, (v, rev, _))| Entry {
                        key: k.clone(),
                        value: v.clone(),
                        mod_revision: *rev,
                    })
                    .collect();
            (entries, s.revision)
        }))
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<i64> {
        self.with(|s| s.put(key, value, lease))
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        Ok(self.with(|s| s.delete(key)))
    }

    async fn compare_and_put(
        &self,
        key: &str,
        expected: i64,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<bool> {
        self.with(|s| {
            let current = s.kv.get(key).map_or(0, |(_, rev, _)| *rev);
            if current != expected {
                return Ok(false);
            }
            s.put(key, value, lease).map(|_| true)
        })
    }

    async fn compare_and_delete(&self, key: &str, expected: i64) -> Result<bool> {
        Ok(self.with(|s| {
            let current = s.kv.get(key).map_or(0, |(_, rev, _)| *rev);
            current == expected && s.delete(key)
        }))
    }

    async fn grant(&self, ttl: Duration) -> Result<LeaseId> {
        Ok(self.with(|s| {
            let id = s.next_lease;
            s.next_lease += 1;
            s.leases.insert(id, (ttl, Instant::now() + ttl));
            id
        }))
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        self.with(|s| match s.leases.get_mut(&lease) {
            Some((ttl, deadline)) => {
                *deadline = Instant::now() + *ttl;
                Ok(())
            }
            None => Err(StoreError::LeaseExpired(lease)),
        })
    }

    async fn revoke(&self, lease: LeaseId) -> Result<()> {
        self.with(|s| s.revoke(lease));
        Ok(())
    }

    async fn watch(&self, prefix: &str, after: i64) -> Result<mpsc::Receiver<WatchEvent>> {
        let (tx, rx) = mpsc::channel(1024);
        self.with(|s| {
            // No history is kept: a watch from an older revision than now is
            // told to re-list by closing at once.
            if after >= s.revision {
                s.watchers.push((prefix.to_owned(), tx));
            }
        });
        Ok(rx)
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn leases_expire_and_take_their_keys_and_watchers_see_it() {
        let store = MemoryStore::new();
        let lease = store.grant(Duration::from_secs(3)).await.expect("grant");
        store
            .put("/tandem/nodes/a", b"a".to_vec(), Some(lease))
            .await
            .expect("put");
        let (_, rev) = store.list("/tandem/nodes/").await.expect("list");
        let mut watch = store.watch("/tandem/nodes/", rev).await.expect("watch");
        tokio::time::sleep(Duration::from_secs(2)).await;
        store.keep_alive(lease).await.expect("alive");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(store.get("/tandem/nodes/a").await.expect("get").is_some());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(store.get("/tandem/nodes/a").await.expect("get").is_none());
        assert!(matches!(
            watch.recv().await,
            Some(WatchEvent::Delete { key, .. }) if key == "/tandem/nodes/a"
        ));
        assert!(matches!(
            store.keep_alive(lease).await,
            Err(StoreError::LeaseExpired(_))
        ));
    }

    #[tokio::test]
    async fn compare_and_put_lets_one_writer_win() {
        let store = MemoryStore::new();
        assert!(
            store
                .compare_and_put("/k", 0, b"1".to_vec(), None)
                .await
                .expect("cas")
        );
        assert!(
            !store
                .compare_and_put("/k", 0, b"2".to_vec(), None)
                .await
                .expect("cas")
        );
        let e = store.get("/k").await.expect("get").expect("there");
        assert_eq!(e.value, b"1");
        assert!(
            store
                .compare_and_put("/k", e.mod_revision, b"3".to_vec(), None)
                .await
                .expect("cas")
        );
        assert!(
            !store
                .compare_and_delete("/k", e.mod_revision)
                .await
                .expect("cad")
        );
    }
}
