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
    /// Modification revision of every key the mirror holds, and of each
    /// tenant's version key; updated under the node's configuration lock,
    /// together with the mirror.
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

    /// The key every commit of a tenant compares and bumps: commits of one
    /// tenant are serialized, so each was validated against the latest
    /// configuration.
    fn version_key(&self, tenant: &str) -> String {
        format!("{}{tenant}/version", self.root)
    }

    /// The tenant's configuration version the mirror holds (`None`: never
    /// written). Read it under the node's configuration lock, with the
    /// mirror the change was validated against.
    pub fn version(&self, tenant: &str) -> Option<i64> {
        self.revision_of(&self.version_key(tenant))
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

    /// Writes `changes` if the tenant's configuration is still at
    /// `version` (what they were validated against), bumping the version.
    /// Returns once this node applied them. More than [`MAX_TXN_OPS`]
    /// changes commit in several transactions, each guarded by the
    /// previous one's version: another change can come between them.
    pub async fn commit(&self, tenant: &str, version: Option<i64>, changes: Vec<Change>) -> Result<()> {
        let version_key = self.version_key(tenant);
        let mut expected = version;
        for batch in changes.chunks(MAX_TXN_OPS) {
            let guard = match expected {
                Some(revision) => Compare::mod_revision(version_key.clone(), CompareOp::Equal, revision),
                None => Compare::create_revision(version_key.clone(), CompareOp::Equal, 0),
            };
            let mut ops = Vec::with_capacity(batch.len() + 1);
            for change in batch {
                let key = self.key(tenant, change);
                ops.push(match change {
                    Change::PutQueue(q) => TxnOp::put(key, q.encode_to_vec(), None),
                    Change::PutProfile(p) => TxnOp::put(key, p.encode_to_vec(), None),
                    Change::DeleteQueue(_) | Change::DeleteProfile(_) => TxnOp::delete(key, None),
                });
            }
            ops.push(TxnOp::put(version_key.clone(), Vec::new(), None));
            let mut client = self.client.clone();
            let response = tokio::time::timeout(STEP, client.txn(Txn::new().when([guard]).and_then(ops)))
                .await
                .map_err(|_| NodeError::Unavailable("etcd did not answer in time; retry".into()))?
                .map_err(|e| NodeError::Unavailable(format!("etcd: {e}")))?;
            if !response.succeeded() {
                return Err(NodeError::Aborted(
                    "the configuration changed meanwhile (through another node); read it again and retry".into(),
                ));
            }
            expected = response.header().map(|h| h.revision());
        }
        let Some(last) = expected.filter(|_| !changes.is_empty()) else { return Ok(()) };
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
            .map_err(|_| "etcd unreachable: the read timed out".to_string())?
            .map_err(|e| format!("etcd unreachable: {e}"))?;
        let revision = read.header().map_or(0, |h| h.revision());
        let mut wanted: BTreeMap<String, Vec<Change>> = BTreeMap::new();
        let mut revisions = HashMap::new();
        for kv in read.kvs() {
            let key = kv.key_str().map_err(|e| e.to_string())?;
            revisions.insert(key.to_string(), kv.mod_revision());
            if let Some((tenant, change)) = self.decode(key, Some(kv.value())) {
                wanted.entry(tenant).or_default().push(change);
            }
        }
        let _config = node.lock_config().await;
        *self.revisions.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = revisions;
        let mut failed = 0;
        for tenant in node.config.tenants.clone() {
            failed += node.reconcile_mirrored(&tenant, wanted.remove(&tenant).unwrap_or_default()).await;
        }
        if failed > 0 {
            return Err(format!("{failed} configuration changes could not be applied"));
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
            if response.compact_revision() > 0 {
                return Ok(true);
            }
            if response.canceled() {
                return Err(format!("catalog watch canceled: {}", response.cancel_reason()));
            }
            let Some(node) = node.upgrade() else { return Ok(false) };
            let mut by_tenant: BTreeMap<String, Vec<Change>> = BTreeMap::new();
            let mut updates = Vec::new();
            // Up to the last event here; a response that catches up on many
            // revisions carries the store's current revision in its header.
            let mut reached =
                if response.events().is_empty() { response.header().map_or(0, |h| h.revision()) } else { 0 };
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let key = kv.key_str().map_err(|e| e.to_string())?;
                let value = (event.event_type() == EventType::Put).then(|| kv.value());
                reached = reached.max(kv.mod_revision());
                updates.push((key.to_string(), value.map(|_| kv.mod_revision())));
                if let Some((tenant, change)) = self.decode(key, value) {
                    by_tenant.entry(tenant).or_default().push(change);
                }
            }
            let config = node.lock_config().await;
            {
                let mut revisions = self.revisions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                for (key, revision) in updates {
                    match revision {
                        Some(r) => revisions.insert(key, r),
                        None => revisions.remove(&key),
                    };
                }
            }
            let mut failed = 0;
            for (tenant, changes) in by_tenant {
                failed += node.apply_mirrored(&tenant, changes).await;
            }
            drop(config);
            if failed > 0 {
                // Read everything again (after a backoff) rather than
                // claim a revision this node did not fully apply.
                return Err(format!("{failed} configuration changes could not be applied"));
            }
            self.applied.send_if_modified(|applied| {
                let moved = reached > *applied;
                *applied = (*applied).max(reached);
                moved
            });
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
