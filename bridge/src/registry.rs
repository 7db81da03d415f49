//! The conferences this node hosts, by conference ID. Signalling creates and
//! ends them; the HTTP API reads their published snapshots. The lock guards
//! only the map (taken on create/end/lookup), never a conference's media state.

use std::collections::HashMap;
use std::sync::RwLock;

use tokio::sync::{mpsc, watch};

use crate::conference::{ConferenceCommand, ConferenceSnapshot};

#[derive(Clone, Debug)]
pub struct ConferenceHandle {
    pub id: String,
    pub commands: mpsc::Sender<ConferenceCommand>,
    pub snapshot: watch::Receiver<ConferenceSnapshot>,
}

impl ConferenceHandle {
    pub fn snapshot(&self) -> ConferenceSnapshot {
        self.snapshot.borrow().clone()
    }
}

#[derive(Default)]
pub struct Registry {
    conferences: RwLock<HashMap<String, ConferenceHandle>>,
}

impl Registry {
    pub fn insert(&self, handle: ConferenceHandle) {
        if let Ok(mut m) = self.conferences.write() {
            m.insert(handle.id.clone(), handle);
        }
    }

    pub fn remove(&self, id: &str) -> Option<ConferenceHandle> {
        self.conferences.write().ok()?.remove(id)
    }

    pub fn handle(&self, id: &str) -> Option<ConferenceHandle> {
        self.conferences.read().ok()?.get(id).cloned()
    }

    pub fn len(&self) -> usize {
        self.conferences.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The running conferences' IDs, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = match self.conferences.read() {
            Ok(m) => m.keys().cloned().collect(),
            Err(_) => Vec::new(),
        };
        ids.sort();
        ids
    }

    pub fn snapshot(&self, id: &str) -> Option<ConferenceSnapshot> {
        self.handle(id).map(|h| h.snapshot())
    }

    pub fn snapshots(&self) -> Vec<ConferenceSnapshot> {
        let handles: Vec<ConferenceHandle> = match self.conferences.read() {
            Ok(m) => m.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        handles.iter().map(|h| h.snapshot()).collect()
    }
}
