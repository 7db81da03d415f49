//! The store in etcd (v3 API over gRPC, the `etcd-client` crate). Each call
//! is one request with a timeout; a broken connection is retried by the
//! client on the next call, so a restarting etcd costs requests, not state.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, LeaseKeepAliveStream,
    LeaseKeeper, PutOptions, Txn, TxnOp, WatchOptions,
};
use tokio::sync::{Mutex, mpsc};

use super::{Entry, LeaseId, Result, Store, StoreError, WatchEvent};

pub struct EtcdStore {
    client: Client,
    keepers: Mutex<HashMap<LeaseId, (LeaseKeeper, LeaseKeepAliveStream)>>,
}

fn unavailable(e: etcd_client::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn entry(kv: &etcd_client::KeyValue) -> Option<Entry> {
    Some(Entry {
        key: kv.key_str().ok()?.to_owned(),
        value: kv.value().to_vec(),
        mod_revision: kv.mod_revision(),
    })
}

fn put_options(lease: Option<LeaseId>) -> Option<PutOptions> {
    lease.map(|l| PutOptions::new().with_lease(l))
}

impl EtcdStore {
    /// Connects to `endpoints` (e.g. `http://127.0.0.1:2379`); every request
    /// then has `timeout`.
    pub async fn connect(endpoints: &[String], timeout: Duration) -> anyhow::Result<EtcdStore> {
        let options = ConnectOptions::new()
            .with_timeout(timeout)
            .with_connect_timeout(timeout)
            .with_keep_alive(Duration::from_secs(2), timeout);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| anyhow::anyhow!("etcd {endpoints:?}: {e}"))?;
        Ok(EtcdStore {
            client,
            keepers: Mutex::new(HashMap::new()),
        })
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>> {
        let resp = self
            .client
            .clone()
            .get(key, None)
            .await
            .map_err(unavailable)?;
        Ok(resp.kvs().first().and_then(entry))
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<Entry>, i64)> {
        let resp = self
            .client
            .clone()
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(unavailable)?;
        let revision = resp.header().map_or(0, |h| h.revision());
        Ok((resp.kvs().iter().filter_map(entry).collect(), revision))
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<i64> {
        let resp = self
            .client
            .clone()
            .put(key, value, put_options(lease))
            .await
            .map_err(|e| match (&e, lease) {
                (etcd_client::Error::GRpcStatus(s), Some(l))
                    if s.message().contains("lease not found") =>
                {
                    StoreError::LeaseExpired(l)
                }
                _ => unavailable(e),
            })?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let resp = self
            .client
            .clone()
            .delete(key, None)
            .await
            .map_err(unavailable)?;
        Ok(resp.deleted() > 0)
    }

    async fn compare_and_put(
        &self,
        key: &str,
        expected: i64,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<bool> {
        // A key that does not exist has mod_revision 0 in a comparison.
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::put(key, value, put_options(lease))]);
        let resp = self.client.clone().txn(txn).await.map_err(unavailable)?;
        Ok(resp.succeeded())
    }

    async fn compare_and_delete(&self, key: &str, expected: i64) -> Result<bool> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::delete(key, None)]);
        let resp = self.client.clone().txn(txn).await.map_err(unavailable)?;
        Ok(resp.succeeded())
    }

    async fn grant(&self, ttl: Duration) -> Result<LeaseId> {
        let resp = self
            .client
            .clone()
            .lease_grant(ttl.as_secs().max(1) as i64, None)
            .await
            .map_err(unavailable)?;
        Ok(resp.id())
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        let mut keepers = self.keepers.lock().await;
        let (keeper, stream) = match keepers.entry(lease) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(
                self.client
                    .clone()
                    .lease_keep_alive(lease)
                    .await
                    .map_err(unavailable)?,
            ),
        };
        let result = async {
            keeper.keep_alive().await.map_err(unavailable)?;
            match stream.message().await.map_err(unavailable)? {
                Some(r) if r.ttl() > 0 => Ok(()),
                Some(_) => Err(StoreError::LeaseExpired(lease)),
                None => Err(StoreError::Unavailable("keep-alive stream closed".into())),
            }
        }
        .await;
        if result.is_err() {
            // A new stream next time (etcd restarted, or the lease is gone).
            keepers.remove(&lease);
        }
        result
    }

    async fn revoke(&self, lease: LeaseId) -> Result<()> {
        self.keepers.lock().await.remove(&lease);
        self.client
            .clone()
            .lease_revoke(lease)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn watch(&self, prefix: &str, after: i64) -> Result<mpsc::Receiver<WatchEvent>> {
        let (mut watcher, mut stream) = self
            .client
            .clone()
            .watch(
                prefix,
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(after + 1),
                ),
            )
            .await
            .map_err(unavailable)?;
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    m = stream.message() => m,
                    _ = tx.closed() => break,
                };
                let Ok(Some(resp)) = msg else { break };
                if resp.canceled() {
                    // Compacted past `after`, or etcd said no: re-list.
                    break;
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let event = match ev.event_type() {
                        EventType::Put => match entry(kv) {
                            Some(e) => WatchEvent::Put(e),
                            None => continue,
                        },
                        EventType::Delete => WatchEvent::Delete {
                            key: String::from_utf8_lossy(kv.key()).into_owned(),
                            revision: kv.mod_revision(),
                        },
                    };
                    if tx.send(event).await.is_err() {
                        break;
                    }
                }
            }
            let _ = watcher.cancel().await;
        });
        Ok(rx)
    }

    fn kind(&self) -> &'static str {
        "etcd"
    }
}
