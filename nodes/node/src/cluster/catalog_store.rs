//! The tenants' configuration (queues and informants' profiles) kept in
//! etcd, so that a change made through any node reaches every node.
//!
//! etcd holds the desired configuration under
//! `<prefix>/catalog/<tenant>/queues/<id>` and `.../informants/<id>`
//! (protobuf-encoded). Each node mirrors it into its in-memory [`Catalog`]
//! (and its queue actors) through one follower task: read everything, then
//! watch from the read's revision; a failed or compacted watch reads again
//! and reconciles. Admin requests validate against the mirror, then commit
//! their changes to etcd guarded by the revisions the mirror was built from
//! (a concurrent change makes the commit fail with `ABORTED`), then wait
//! until the follower has applied their revision, so that a client reads
//! its own writes from the node it asked.
//!
//! [`Catalog`]: crate::catalog::Catalog

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, EventType, GetOptions, Txn, TxnOp, WatchOptions};
use prost::Message;
use relais_proto::v1 as pb;
use tokio::sync::watch;

use crate::error::{NodeError, Result};
use crate::node::Node;

/// Most operations in one etcd transaction (etcd's default limit is 128);
/// a larger plan commits in several.
pub const MAX_TXN_OPS: usize = 64;
/// How long a request waits for its change to come back through the watch.
const APPLY_WAIT: Duration = Duration::from_secs(5);
/// Deadline of one etcd exchange.
const STEP: Duration = Duration::from_secs(2);
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// One change to a tenant's configuration.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    PutQueue(pb::QueueConfig),
    DeleteQueue(String),
    PutProfile(pb::InformantProfile),
    DeleteProfile(String),
}

impl Change {
    fn id(&self) -> &str {
        match self {
            Self::PutQueue(q) => &q.id,
            Self::PutProfile(p) => &p.id,
            Self::DeleteQueue(id) | Self::DeleteProfile(id) => id,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::PutQueue(_) | Self::DeleteQueue(_) => "queues",
            Self::PutProfile(_) | Self::DeleteProfile(_) => "informants",
        }
    }
}

pub struct CatalogStore {
    client: Client,
    root: String,
    /// Revision up to which the mirror has applied etcd's changes.
    applied: watch::Sender<i64>,
    /// Modification revision of every key the mirror holds.
    revisions: Mutex<HashMap<String, i64>>,
}

impl CatalogStore {
    pub fn new(client: Client, prefix: &str) -> Arc<Self> {
        Arc::new(Self {
            client,
            root: format!("{}/catalog/", prefix.trim_end_matches('/')),
            applied: watch::channel(0).0,
            revisions: Mutex::new(HashMap::new()),
        })
    }

    fn key(&self, tenant: &str, change: &Change) -> String {
        format!("{}{tenant}/{}/{}", self.root, change.kind(), change.id())
    }

    /// Whether etcd holds the key `change` is about, as last seen.
    pub fn holds(&self, tenant: &str, change: &Change) -> bool {
        self.revision_of(&self.key(tenant, change)).is_some()
    }

    fn revision_of(&self, key: &str) -> Option<i64> {
        self.revisions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(key).copied()
    }

    /// Writes `changes`, each guarded by what the mirror holds: a put of a
    /// key the mirror lacks requires it absent; any other change requires
    /// the revision the mirror saw. Returns once this node applied them.
    pub async fn commit(&self, tenant: &str, changes: Vec<Change>) -> Result<()> {
        let mut last = 0;
        for batch in changes.chunks(MAX_TXN_OPS) {
            let mut compares = Vec::with_capacity(batch.len());
            let mut ops = Vec::with_capacity(batch.len());
            for change in batch {
                let key = self.key(tenant, change);
                compares.push(match self.revision_of(&key) {
                    Some(revision) => Compare::mod_revision(key.clone(), CompareOp::Equal, revision),
                    None => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
                });
                ops.push(match change {
                    Change::PutQueue(q) => TxnOp::put(key, q.encode_to_vec(), None),
                    Change::PutProfile(p) => TxnOp::put(key, p.encode_to_vec(), None),
                    Change::DeleteQueue(_) | Change::DeleteProfile(_) => TxnOp::delete(key, None),
                });
            }
            let mut client = self.client.clone();
            let response = tokio::time::timeout(STEP, client.txn(Txn::new().when(compares).and_then(ops)))
                .await
                .map_err(|_| NodeError::Unavailable("etcd did not answer in time; retry".into()))?
                .map_err(|e| NodeError::Unavailable(format!("etcd: {e}")))?;
            if !response.succeeded() {
                return Err(NodeError::Aborted(
                    "the configuration changed meanwhile (through another node); read it again and retry".into(),
                ));
            }
            last = response.header().map_or(0, |h| h.revision());
        }
        let mut applied = self.applied.subscribe();
        match tokio::time::timeout(APPLY_WAIT, applied.wait_for(|r| *r >= last)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(NodeError::Unavailable(
                "the change is stored but this node has not applied it yet; read it again shortly".into(),
            )),
        }
    }

    /// Mirrors etcd into `node` until the node is gone: read, reconcile,
    /// watch; after any failure, back off and read again.
    pub async fn follow(self: Arc<Self>, node: Weak<Node>) {
        let mut backoff = RETRY_FIRST;
        loop {
            match self.follow_once(&node).await {
                Ok(true) => backoff = RETRY_FIRST,
                Ok(false) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "catalog watch interrupted");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Reads the whole catalogue and applies it. Returns the revision read.
    pub async fn load(&self, node: &Arc<Node>) -> Result<i64, String> {
        let mut client = self.client.clone();
        let read = tokio::time::timeout(STEP, client.get(self.root.clone(), Some(GetOptions::new().with_prefix())))
            .await
            .map_err(|_| "catalog read timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let revision = read.header().map_or(0, |h| h.revision());
        let mut wanted: BTreeMap<String, Vec<Change>> = BTreeMap::new();
        let mut revisions = HashMap::new();
        for kv in read.kvs() {
            let key = kv.key_str().map_err(|e| e.to_string())?;
            if let Some((tenant, change)) = self.decode(key, Some(kv.value())) {
                wanted.entry(tenant).or_default().push(change);
                revisions.insert(key.to_string(), kv.mod_revision());
            }
        }
        *self.revisions.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = revisions;
        for tenant in node.config.tenants.clone() {
            let changes = wanted.remove(&tenant).unwrap_or_default();
            node.reconcile(&tenant, changes).await;
        }
        self.applied.send_replace(revision);
        Ok(revision)
    }

    /// `Ok(false)` when the node is gone.
    async fn follow_once(&self, node: &Weak<Node>) -> Result<bool, String> {
        let revision = {
            let Some(node) = node.upgrade() else { return Ok(false) };
            self.load(&node).await?
        };
        let mut client = self.client.clone();
        let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
        let (_watcher, mut stream) = client.watch(self.root.clone(), Some(options)).await.map_err(|e| e.to_string())?;
        while let Some(response) = stream.message().await.map_err(|e| e.to_string())? {
            if response.canceled() || response.compact_revision() > 0 {
                return Ok(true);
            }
            let Some(node) = node.upgrade() else { return Ok(false) };
            let mut by_tenant: BTreeMap<String, Vec<Change>> = BTreeMap::new();
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let key = kv.key_str().map_err(|e| e.to_string())?;
                let value = (event.event_type() == EventType::Put).then(|| kv.value());
                if let Some((tenant, change)) = self.decode(key, value) {
                    let mut revisions = self.revisions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    match value {
                        Some(_) => revisions.insert(key.to_string(), kv.mod_revision()),
                        None => revisions.remove(key),
                    };
                    by_tenant.entry(tenant).or_default().push(change);
                }
            }
            for (tenant, changes) in by_tenant {
                node.apply_remote(&tenant, changes).await;
            }
            if let Some(header) = response.header() {
                self.applied.send_replace(header.revision());
            }
        }
        Err("catalog watch stream closed".into())
    }

    /// The change a key (and its value, `None` for a deletion) stands for;
    /// `None` for keys this node does not understand.
    fn decode(&self, key: &str, value: Option<&[u8]>) -> Option<(String, Change)> {
        let rest = key.strip_prefix(&self.root)?;
        let mut parts = rest.splitn(3, '/');
        let (tenant, kind, id) = (parts.next()?, parts.next()?, parts.next()?);
        let change = match (kind, value) {
            ("queues", Some(bytes)) => Change::PutQueue(pb::QueueConfig::decode(bytes).ok()?),
            ("queues", None) => Change::DeleteQueue(id.to_string()),
            ("informants", Some(bytes)) => Change::PutProfile(pb::InformantProfile::decode(bytes).ok()?),
            ("informants", None) => Change::DeleteProfile(id.to_string()),
            _ => return None,
        };
        Some((tenant.to_string(), change))
    }
}
