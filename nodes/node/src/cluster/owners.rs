//! Every member's view of who owns which actor: a mirror of
//! `<prefix>/owners/`, read then watched.
//!
//! A record is the owner's node id, the claim's epoch (the owner key's
//! create revision) and the lease the claim lives under. The view may lag
//! etcd by a watch event; that is safe because every message to an actor
//! carries the epoch the sender read here, and the owner refuses any other.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use tokio::sync::watch;

use crate::cluster::ownership::Epoch;

const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// Deadline of the initial read.
const READ_DEADLINE: Duration = Duration::from_secs(2);

/// Who owns an actor, and since which revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerRecord {
    pub node_id: Arc<str>,
    pub epoch: Epoch,
    pub lease: i64,
}

/// The mirror of every claim in the cluster.
pub struct Owners {
    root: String,
    records: DashMap<String, OwnerRecord>,
    /// The etcd revision the mirror reflects; bumps on every change.
    revision: watch::Sender<i64>,
}

impl Owners {
    pub fn new(prefix: &str) -> Arc<Self> {
        Arc::new(Self {
            root: format!("{}/owners/", prefix.trim_end_matches('/')),
            records: DashMap::new(),
            revision: watch::channel(0).0,
        })
    }

    /// The owner of `actor_key` (see [`crate::cluster::placement::actor_key`]).
    pub fn get(&self, actor_key: &str) -> Option<OwnerRecord> {
        self.records.get(actor_key).map(|r| r.clone())
    }

    /// Records a claim this node just made, before the watch reports it.
    pub fn note(&self, actor_key: &str, record: OwnerRecord) {
        self.records.insert(actor_key.to_string(), record);
    }

    /// Learns a claim from a message its actor sent, when the mirror has
    /// not seen it yet: only a claim newer than every event the mirror
    /// applied (an older one absent from the mirror has since ended).
    pub fn learn(&self, actor_key: &str, node_id: &str, epoch: Epoch) {
        if epoch <= *self.revision.borrow() {
            return;
        }
        match self.records.entry(actor_key.to_string()) {
            dashmap::mapref::entry::Entry::Occupied(mut known) => {
                if known.get().epoch < epoch {
                    known.insert(OwnerRecord { node_id: node_id.into(), epoch, lease: 0 });
                }
            }
            dashmap::mapref::entry::Entry::Vacant(v) => {
                v.insert(OwnerRecord { node_id: node_id.into(), epoch, lease: 0 });
            }
        }
    }

    /// The actors `node_id` owns, as (actor key, record).
    pub fn owned_by(&self, node_id: &str) -> Vec<(String, OwnerRecord)> {
        self.records
            .iter()
            .filter(|r| r.value().node_id.as_ref() == node_id)
            .map(|r| (r.key().clone(), r.value().clone()))
            .collect()
    }

    /// Changes whenever the mirror does.
    /// The etcd revision the mirror reflects.
    pub fn revision(&self) -> i64 {
        *self.revision.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.revision.subscribe()
    }

    /// Follows etcd until the task is dropped: read, then watch from the
    /// read's revision; a compacted or broken watch reads again.
    pub async fn follow(self: Arc<Self>, client: Client) {
        let mut backoff = RETRY_FIRST;
        loop {
            match self.follow_once(&client).await {
                Ok(()) => backoff = RETRY_FIRST,
                Err(e) => {
                    tracing::debug!(error = %e, "owner watch interrupted");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
            }
        }
    }

    async fn follow_once(&self, client: &Client) -> Result<(), String> {
        let mut client = client.clone();
        let read =
            tokio::time::timeout(READ_DEADLINE, client.get(self.root.clone(), Some(GetOptions::new().with_prefix())))
                .await
                .map_err(|_| "owner read timed out".to_string())?
                .map_err(|e| e.to_string())?;
        let revision = read.header().map_or(0, |h| h.revision());
        let mut seen = std::collections::HashSet::new();
        for kv in read.kvs() {
            if let Some(actor) = self.actor_of(kv.key()) {
                self.records.insert(actor.clone(), record(kv));
                seen.insert(actor);
            }
        }
        // A claim newer than the read (noted, or learnt from a message) is
        // not the read's to remove.
        self.records.retain(|actor, record| seen.contains(actor) || record.epoch > revision);
        self.revision.send_replace(revision);

        let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
        let (_watcher, mut stream) = client.watch(self.root.clone(), Some(options)).await.map_err(|e| e.to_string())?;
        while let Some(response) = stream.message().await.map_err(|e| e.to_string())? {
            if response.compact_revision() > 0 {
                return Ok(());
            }
            if response.canceled() {
                return Err(format!("owner watch canceled: {}", response.cancel_reason()));
            }
            // The revision applied is the last event's: a response's header
            // may name a later revision whose events are still to come.
            let mut applied = *self.revision.borrow();
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                applied = applied.max(kv.mod_revision());
                let Some(actor) = self.actor_of(kv.key()) else { continue };
                match event.event_type() {
                    EventType::Put => {
                        self.records.insert(actor, record(kv));
                    }
                    EventType::Delete => {
                        // Only a claim older than the deletion: a newer one,
                        // noted or learnt, is not the one deleted.
                        self.records.remove_if(&actor, |_, r| r.epoch < kv.mod_revision());
                    }
                }
            }
            self.revision.send_replace(applied);
        }
        Err("owner watch stream closed".into())
    }

    fn actor_of(&self, key: &[u8]) -> Option<String> {
        std::str::from_utf8(key).ok()?.strip_prefix(&self.root).map(str::to_string)
    }
}

fn record(kv: &etcd_client::KeyValue) -> OwnerRecord {
    OwnerRecord {
        node_id: String::from_utf8_lossy(kv.value()).as_ref().into(),
        epoch: kv.create_revision(),
        lease: kv.lease(),
    }
}
