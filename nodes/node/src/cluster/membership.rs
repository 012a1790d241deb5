//! Cluster membership in etcd: this node's registration under a lease, the
//! renewals that keep it (and the node's right to serve) alive, and a
//! watched view of every live member.
//!
//! etcd-client neither renews leases nor reconnects streams by itself: the
//! two tasks here do, each with a deadline per step and a bounded backoff.
//! A watch whose revision was compacted re-reads the members, then watches
//! again from the read's revision.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster::detector::detect_crashes;
use crate::cluster::isolation::{Aside, LEAVE_LIMIT, Reach, watch_isolation};
use crate::cluster::lease::LeaseWindow;
use crate::error::{NodeError, Result};
use crate::metrics::{EtcdOp, Metrics};

/// What a node publishes about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub node_id: String,
    /// Address clients and peers use to reach the node's gRPC server.
    pub address: String,
    pub started_unix_ms: u64,
    /// The etcd lease the registration lives under (0 when there is none).
    #[serde(default)]
    pub lease_id: i64,
    /// Draining before a restart: placement gives it nothing, and it hands
    /// its queues to the others.
    #[serde(default)]
    pub draining: bool,
}

/// The live members, as of an etcd revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Members {
    pub revision: i64,
    pub nodes: BTreeMap<String, MemberInfo>,
}

/// How this node joins.
#[derive(Clone, Debug)]
pub struct JoinOptions {
    pub endpoints: Vec<String>,
    /// Every key of the cluster lives under this prefix.
    pub prefix: String,
    pub node_id: String,
    pub address: String,
    /// TTL asked for the lease; etcd grants at least 2 s.
    pub lease_ttl: Duration,
    /// Where renewals are counted and timed.
    pub metrics: Metrics,
}

/// Backoff bounds when etcd cannot be reached.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// This node's membership: drop it (or call [`Membership::leave`]) to stop
/// its tasks.
pub struct Membership {
    options: JoinOptions,
    client: Client,
    window: Arc<LeaseWindow>,
    lease_id: watch::Receiver<i64>,
    members: watch::Receiver<Arc<Members>>,
    /// Set once by a drain; registrations after it say so too.
    draining: Arc<AtomicBool>,
    /// Whether this member stands aside, cut off from most of its peers.
    aside: watch::Sender<Aside>,
    tasks: Vec<JoinHandle<()>>,
}

impl Membership {
    /// Connects, takes a lease, registers this node and starts renewing.
    /// Fails when etcd cannot be reached, or when another live process
    /// holds this node id for longer than two lease TTLs.
    pub async fn join(options: JoinOptions) -> Result<Self> {
        let client = Self::connect(&options).await?;
        Self::join_with(client, options).await
    }

    /// A client for the cluster's etcd, set up as membership needs it.
    pub async fn connect(options: &JoinOptions) -> Result<Client> {
        let step = step_deadline(options.lease_ttl);
        let connect = ConnectOptions::new()
            .with_connect_timeout(step)
            .with_keep_alive(Duration::from_secs(1), step)
            .with_keep_alive_while_idle(true)
            // A member cut off from its cluster's leader refuses rather
            // than answering with what may be stale.
            .with_require_leader(true);
        let client = tokio::time::timeout(step * 2, Client::connect(&options.endpoints, Some(connect)))
            .await
            .map_err(|_| unreachable_etcd(&options.endpoints, "connect timed out"))?
            .map_err(|e| unreachable_etcd(&options.endpoints, &e.to_string()))?;
        Ok(client)
    }

    /// Takes a lease with `client`, registers this node and starts renewing.
    pub async fn join_with(client: Client, options: JoinOptions) -> Result<Self> {
        let step = step_deadline(options.lease_ttl);
        let window = Arc::new(LeaseWindow::closed());
        let give_up = Instant::now() + options.lease_ttl * 2 + Duration::from_secs(1);
        let draining = Arc::new(AtomicBool::new(false));
        let lease_id = loop {
            match register(&client, &options, &window, false).await {
                Ok(id) => break id,
                Err(Registration::Taken) if Instant::now() < give_up => {
                    // A previous incarnation's key may still be waiting for
                    // its lease to expire. If it registered this very
                    // address, which this process now holds, it is dead:
                    // end its lease at once.
                    if !revoke_previous_incarnation(&client, &options).await {
                        tokio::time::sleep(options.lease_ttl / 4).await;
                    }
                }
                Err(Registration::Taken) => {
                    return Err(NodeError::exists("cluster member", options.node_id.clone()));
                }
                Err(Registration::Failed(e)) => return Err(unreachable_etcd(&options.endpoints, &e)),
            }
        };
        tracing::info!(node_id = %options.node_id, lease = lease_id, "joined the cluster");

        let (lease_tx, lease_rx) = watch::channel(lease_id);
        let (members_tx, members_rx) = watch::channel(Arc::new(Members::default()));
        let (aside_tx, aside_rx) = watch::channel(Aside::No);
        let reach = Arc::new(Reach::default());
        let tasks = vec![
            tokio::spawn(keep_alive(
                client.clone(),
                options.clone(),
                window.clone(),
                lease_tx,
                members_rx.clone(),
                draining.clone(),
                aside_rx.clone(),
            )),
            tokio::spawn(watch_members(client.clone(), options.prefix.clone(), members_tx)),
            tokio::spawn(detect_crashes(client.clone(), options.node_id.clone(), members_rx.clone(), reach.clone())),
            tokio::spawn(watch_isolation(
                options.node_id.clone(),
                members_rx.clone(),
                reach,
                window.clone(),
                aside_tx.clone(),
            )),
        ];
        let membership =
            Self { options, client, window, lease_id: lease_rx, members: members_rx, draining, aside: aside_tx, tasks };
        membership.wait_for_first_view(step * 2).await;
        Ok(membership)
    }

    async fn wait_for_first_view(&self, within: Duration) {
        let mut members = self.members.clone();
        let _ = tokio::time::timeout(within, members.wait_for(|m| m.revision > 0)).await;
    }

    /// The etcd client, for the node's other uses of etcd.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The lease this node is registered under (it changes when the node
    /// registers again).
    pub fn lease_id(&self) -> watch::Receiver<i64> {
        self.lease_id.clone()
    }

    /// The window in which this node may serve.
    pub fn window(&self) -> Arc<LeaseWindow> {
        self.window.clone()
    }

    /// A receiver that sees every change of the member set.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Members>> {
        self.members.clone()
    }

    /// Whether this member stands aside (see [`crate::cluster::isolation`]);
    /// the placer says when its queues are handed over.
    pub fn aside(&self) -> watch::Sender<Aside> {
        self.aside.clone()
    }

    /// Marks this member draining in its registration, for every member's
    /// placement to see.
    pub async fn drain(&self) -> Result<()> {
        self.draining.store(true, Ordering::SeqCst);
        let lease = *self.lease_id.borrow();
        let info = MemberInfo {
            node_id: self.options.node_id.clone(),
            address: self.options.address.clone(),
            started_unix_ms: self
                .members
                .borrow()
                .nodes
                .get(&self.options.node_id)
                .map_or_else(crate::clock::now_ms, |m| m.started_unix_ms),
            lease_id: lease,
            draining: true,
        };
        let value = serde_json::to_vec(&info).map_err(|e| NodeError::Internal(e.to_string()))?;
        let key = member_key(&self.options.prefix, &self.options.node_id);
        let mut client = self.client.clone();
        // Only while the registration is this lease's: a member registered
        // again writes its flag itself.
        let txn = Txn::new().when([Compare::lease(key.clone(), CompareOp::Equal, lease)]).and_then([TxnOp::put(
            key,
            value,
            Some(PutOptions::new().with_lease(lease)),
        )]);
        tokio::time::timeout(step_deadline(self.options.lease_ttl), client.txn(txn))
            .await
            .map_err(|_| NodeError::Unavailable("etcd did not answer in time; retry the drain".into()))?
            .map_err(|e| NodeError::Unavailable(format!("etcd: {e}")))?;
        Ok(())
    }

    /// Leaves at once: revokes the lease, so that other members see this
    /// node gone without waiting for its TTL, and stops the tasks.
    pub async fn leave(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        self.window.lost();
        let id = *self.lease_id.borrow();
        let mut client = self.client.clone();
        match tokio::time::timeout(step_deadline(self.options.lease_ttl), client.lease_revoke(id)).await {
            Ok(Ok(_)) => tracing::info!(node_id = %self.options.node_id, "left the cluster"),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not revoke the lease; it expires by itself"),
            Err(_) => tracing::warn!("revoking the lease timed out; it expires by itself"),
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Deadline of one etcd exchange (a renewal, a read, a registration): a
/// third of the TTL. The window lasts 90 % of the TTL after a renewal is
/// sent, 2.7 steps: a renewal that times out leaves one more attempt.
fn step_deadline(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_millis(200))
}

fn unreachable_etcd(endpoints: &[String], detail: &str) -> NodeError {
    NodeError::Unavailable(format!("etcd at {} unreachable: {detail}", endpoints.join(",")))
}

fn member_key(prefix: &str, node_id: &str) -> String {
    format!("{}{node_id}", members_prefix(prefix))
}

fn members_prefix(prefix: &str) -> String {
    format!("{}/members/", prefix.trim_end_matches('/'))
}

/// Revokes the lease of the key registered under this node's id if it
/// names this node's own address; returns whether it did.
async fn revoke_previous_incarnation(client: &Client, options: &JoinOptions) -> bool {
    let step = step_deadline(options.lease_ttl);
    let mut client = client.clone();
    let key = member_key(&options.prefix, &options.node_id);
    let Ok(Ok(read)) = tokio::time::timeout(step, client.get(key, None)).await else { return false };
    let Some(previous) = read.kvs().first().and_then(|kv| serde_json::from_slice::<MemberInfo>(kv.value()).ok()) else {
        return false;
    };
    if previous.address != options.address || previous.lease_id == 0 {
        return false;
    }
    tracing::info!(lease = previous.lease_id, "revoking the lease of this node's previous incarnation");
    matches!(tokio::time::timeout(step, client.lease_revoke(previous.lease_id)).await, Ok(Ok(_)))
}

enum Registration {
    Taken,
    Failed(String),
}

/// Grants a lease and creates this node's key under it, only if no live
/// process holds the key. Opens the window from the grant.
async fn register(
    client: &Client,
    options: &JoinOptions,
    window: &LeaseWindow,
    draining: bool,
) -> Result<i64, Registration> {
    let step = step_deadline(options.lease_ttl);
    let mut client = client.clone();
    let ttl_s = i64::try_from(options.lease_ttl.as_secs().max(2)).unwrap_or(i64::MAX);
    let sent = Instant::now();
    let grant = tokio::time::timeout(step, client.lease_grant(ttl_s, None))
        .await
        .map_err(|_| Registration::Failed("lease grant timed out".into()))?
        .map_err(|e| Registration::Failed(e.to_string()))?;
    let info = MemberInfo {
        node_id: options.node_id.clone(),
        address: options.address.clone(),
        started_unix_ms: crate::clock::now_ms(),
        lease_id: grant.id(),
        draining,
    };
    let value = serde_json::to_vec(&info).map_err(|e| Registration::Failed(e.to_string()))?;
    let key = member_key(&options.prefix, &options.node_id);
    let txn = Txn::new().when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)]).and_then([TxnOp::put(
        key,
        value,
        Some(PutOptions::new().with_lease(grant.id())),
    )]);
    let outcome = tokio::time::timeout(step, client.txn(txn)).await;
    let created = matches!(&outcome, Ok(Ok(r)) if r.succeeded());
    if !created {
        // Give the unused lease back; it would expire by itself anyway.
        let _ = tokio::time::timeout(step, client.lease_revoke(grant.id())).await;
        return Err(match outcome {
            Ok(Ok(_)) => Registration::Taken,
            Ok(Err(e)) => Registration::Failed(e.to_string()),
            Err(_) => Registration::Failed("registration timed out".into()),
        });
    }
    window.renewed(sent, Duration::from_secs(u64::try_from(grant.ttl()).unwrap_or(0)));
    Ok(grant.id())
}

/// Renews the lease every third of its TTL, each renewal with its own
/// deadline, over a keep-alive stream reopened whenever it fails. When etcd
/// says the lease is gone (expired, or revoked by a peer), or this node's
/// key is gone from the member list while its lease lives, the node
/// registers again, on every step until it succeeds (it stopped serving the
/// moment its window closed). A member stepping aside (`aside`) revokes
/// its lease once its queues are handed over (or after [`LEAVE_LIMIT`]),
/// and registers again only once `aside` is back to [`Aside::No`].
#[allow(clippy::too_many_arguments)]
async fn keep_alive(
    client: Client,
    options: JoinOptions,
    window: Arc<LeaseWindow>,
    lease_id: watch::Sender<i64>,
    members: watch::Receiver<Arc<Members>>,
    draining: Arc<AtomicBool>,
    mut aside: watch::Receiver<Aside>,
) {
    let step = step_deadline(options.lease_ttl);
    let mut stream = None;
    let mut ticker = tokio::time::interval(step);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut serving = true;
    let mut gone = false;
    let mut leaving_since = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            changed = aside.changed() => if changed.is_err() { return },
        }
        let standing = *aside.borrow_and_update();
        if standing == Aside::No {
            leaving_since = None;
        } else {
            window.lost();
            serving = false;
            let since = *leaving_since.get_or_insert_with(Instant::now);
            if gone {
                continue;
            }
            if standing == Aside::Out || since.elapsed() >= LEAVE_LIMIT {
                let id = *lease_id.borrow();
                revoke_quietly(&client, id, step).await;
                tracing::info!(lease = id, "stood aside: lease revoked");
                stream = None;
                gone = true;
                continue;
            }
            // Leaving: the lease lives on while the queues are handed over,
            // since their last writes are fenced by it.
        }
        if !gone && key_missing(&members, &options.node_id) {
            tracing::warn!("this node's member key is gone while its lease lives; registering again");
            let id = *lease_id.borrow();
            revoke_quietly(&client, id, step).await;
            gone = true;
        }
        if gone {
            window.lost();
            stream = None;
            match register(&client, &options, &window, draining.load(Ordering::SeqCst)).await {
                Ok(new_id) => {
                    tracing::info!(lease = new_id, "registered again");
                    lease_id.send_replace(new_id);
                    gone = false;
                }
                Err(Registration::Taken) => tracing::warn!("registering again: the node id is held by another process"),
                Err(Registration::Failed(e)) => tracing::debug!(error = %e, "registering again failed"),
            }
        } else {
            let id = *lease_id.borrow();
            let sent = Instant::now();
            let renewed = renew(&client, id, &mut stream, step).await;
            options.metrics.etcd(EtcdOp::LeaseRenew, sent.elapsed());
            options.metrics.lease_renewal(renewed.as_ref().ok().map(Option::is_some));
            match renewed {
                // A renewal that ends after the member began to step aside
                // must not open the window again.
                Ok(Some(_)) if *aside.borrow() != Aside::No => {}
                Ok(Some(ttl)) => window.renewed(sent, ttl),
                Ok(None) => {
                    tracing::warn!(lease = id, "the membership lease is gone; registering again");
                    window.lost();
                    gone = true;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "lease renewal failed");
                    stream = None;
                }
            }
        }
        let open = window.is_open();
        if open != serving {
            serving = open;
            if open {
                tracing::info!("membership proven again: serving");
            } else {
                tracing::warn!("membership cannot be proven: not serving until etcd answers again");
            }
        }
    }
}

/// Whether a member list read from etcd lacks this node.
fn key_missing(members: &watch::Receiver<Arc<Members>>, node_id: &str) -> bool {
    let view = members.borrow();
    view.revision > 0 && !view.nodes.contains_key(node_id)
}

async fn revoke_quietly(client: &Client, id: i64, step: Duration) {
    let mut client = client.clone();
    let _ = tokio::time::timeout(step, client.lease_revoke(id)).await;
}

type KeepAlive = (etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream);

/// One renewal: `Some(ttl)` when the lease lives on, `None` when etcd says
/// it is gone.
async fn renew(
    client: &Client,
    id: i64,
    stream: &mut Option<KeepAlive>,
    step: Duration,
) -> Result<Option<Duration>, String> {
    let exchange = async {
        if stream.is_none() {
            let mut client = client.clone();
            match client.lease_keep_alive(id).await {
                Ok(opened) => *stream = Some(opened),
                // etcd-client reads the first answer itself when it opens the
                // stream, and reports a gone lease this way.
                Err(etcd_client::Error::LeaseKeepAliveError(e)) if e.contains("lease not found") => return Ok(None),
                Err(e) => return Err(e.to_string()),
            }
        }
        let Some((keeper, responses)) = stream.as_mut() else { return Err("no stream".to_string()) };
        keeper.keep_alive().await.map_err(|e| e.to_string())?;
        match responses.message().await.map_err(|e| e.to_string())? {
            Some(r) if r.ttl() > 0 => Ok(Some(Duration::from_secs(u64::try_from(r.ttl()).unwrap_or(0)))),
            Some(_) => Ok(None),
            None => Err("keep-alive stream closed".to_string()),
        }
    };
    tokio::time::timeout(step, exchange).await.map_err(|_| "renewal timed out".to_string())?
}

/// Keeps `members` equal to the registered nodes: read, then watch from the
/// read's revision; on any failure, back off and read again.
async fn watch_members(client: Client, prefix: String, members: watch::Sender<Arc<Members>>) {
    let mut backoff = RETRY_FIRST;
    loop {
        match follow_members(&client, &prefix, &members).await {
            Ok(()) => backoff = RETRY_FIRST,
            Err(e) => {
                tracing::debug!(error = %e, "member watch interrupted");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }
}

async fn follow_members(client: &Client, prefix: &str, members: &watch::Sender<Arc<Members>>) -> Result<(), String> {
    let mut client = client.clone();
    let range = members_prefix(prefix);
    let read = tokio::time::timeout(RETRY_MAX * 2, client.get(range.clone(), Some(GetOptions::new().with_prefix())))
        .await
        .map_err(|_| "member read timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let mut view = Members { revision: read.header().map_or(0, |h| h.revision()), nodes: BTreeMap::new() };
    for kv in read.kvs() {
        if let Ok(info) = serde_json::from_slice::<MemberInfo>(kv.value()) {
            view.nodes.insert(info.node_id.clone(), info);
        }
    }
    members.send_replace(Arc::new(view.clone()));

    let options = WatchOptions::new().with_prefix().with_start_revision(view.revision + 1);
    let (_watcher, mut stream) = client.watch(range.clone(), Some(options)).await.map_err(|e| e.to_string())?;
    while let Some(response) = stream.message().await.map_err(|e| e.to_string())? {
        if response.compact_revision() > 0 {
            // Compacted past our revision: read everything again.
            return Ok(());
        }
        if response.canceled() {
            return Err(format!("member watch canceled: {}", response.cancel_reason()));
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let id = kv.key_str().map_err(|e| e.to_string())?.trim_start_matches(&range).to_string();
            match event.event_type() {
                EventType::Put => {
                    if let Ok(info) = serde_json::from_slice::<MemberInfo>(kv.value()) {
                        view.nodes.insert(id, info);
                    }
                }
                EventType::Delete => {
                    view.nodes.remove(&id);
                }
            }
        }
        if let Some(header) = response.header() {
            view.revision = header.revision();
        }
        members.send_replace(Arc::new(view.clone()));
    }
    Err("member watch stream closed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_under_the_prefix() {
        assert_eq!(member_key("/relais", "n1"), "/relais/members/n1");
        assert_eq!(member_key("/relais/", "n1"), "/relais/members/n1");
    }

    #[test]
    fn each_exchange_gets_a_third_of_the_ttl() {
        assert_eq!(step_deadline(Duration::from_secs(3)), Duration::from_secs(1));
        assert_eq!(step_deadline(Duration::from_millis(300)), Duration::from_millis(200));
    }
}
