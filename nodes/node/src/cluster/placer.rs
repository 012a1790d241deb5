//! Puts this node's share of the actors on it: claims the queues that
//! placement gives it and nobody owns, hosts the actors it holds claims
//! for, stops those whose claim it lost, hands over the queues placement
//! now gives another member, and gives up claims it no longer uses.
//!
//! Placement decides who claims a queue nobody owns (a new queue, or the
//! queues of a member that died), and where a queue should live: when a
//! member joins, the queues whose rendezvous winner it is — and only those
//! — move to it, with their calls (the owner writes them, hands the queue
//! over, then releases its claim; the newcomer claims it and reads them).
//! A newcomer is given its share once it has been a member for
//! [`SETTLE`], so that a member that comes and goes does not pull queues
//! back and forth. Informants' claims are sticky: an informant stays on the
//! member that hosts its desktop's session until it logs out.
//!
//! A member stepping aside (cut off from most of its peers; see
//! [`super::isolation`]) hands every queue over and releases its claim, as
//! a drain does, and stops its informants' actors, which ends their
//! desktops' sessions so that they log in on another member; then it hosts
//! nothing until it is back.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::cluster::Members;
use crate::cluster::isolation::Aside;
use crate::cluster::owners::{OwnerRecord, Owners};
use crate::cluster::ownership::{Claim, Epoch, Ownership};
use crate::cluster::placement::{ActorKind, actor_key, owner};
use crate::error::{NodeError, Result};
use crate::node::{Node, PeerAddr, Place};

/// Longest pause between two passes when nothing changes.
const PERIOD: Duration = Duration::from_millis(500);
/// How long a member must have been in the member list before queues are
/// handed over to it.
pub const SETTLE: Duration = Duration::from_secs(1);

/// This node's hand in placement.
pub struct Placer {
    pub me: Arc<str>,
    pub owners: Arc<Owners>,
    pub members: watch::Receiver<Arc<Members>>,
    pub ownership: Ownership,
    pub lease_id: watch::Receiver<i64>,
    pub window: Arc<crate::cluster::LeaseWindow>,
    /// Whether this member stands aside; the placer says when it is out.
    pub aside: watch::Sender<Aside>,
    /// Poked when the configuration changed.
    pub poke: Notify,
    /// The epoch each queue was last seen at: a new one means the queue
    /// started afresh on its owner, and this node's informants join it
    /// again.
    pub seen: std::sync::Mutex<std::collections::HashMap<String, Epoch>>,
    /// When this node first saw each member (under its current lease).
    pub joined: std::sync::Mutex<std::collections::HashMap<(String, i64), tokio::time::Instant>>,
}

impl Placer {
    /// The member at `node_id`, if it is live.
    pub fn peer(&self, node_id: &str) -> Option<PeerAddr> {
        let members = self.members.borrow();
        members.nodes.get(node_id).map(|m| PeerAddr { node_id: node_id.into(), address: m.address.clone() })
    }

    /// Every live member but this node.
    pub fn others(&self) -> Vec<PeerAddr> {
        let members = self.members.borrow();
        members
            .nodes
            .values()
            .filter(|m| m.node_id != self.me.as_ref())
            .map(|m| PeerAddr { node_id: m.node_id.as_str().into(), address: m.address.clone() })
            .collect()
    }

    /// Where the actor's claim puts it; `None` when nobody owns it.
    pub fn owner_of(&self, kind: ActorKind, tenant: &str, id: &str) -> Result<Option<Place>> {
        let Some(record) = self.owners.get(&actor_key(kind, tenant, id)) else { return Ok(None) };
        self.place_of(&record).map(Some)
    }

    fn place_of(&self, record: &OwnerRecord) -> Result<Place> {
        if record.node_id == self.me {
            return Ok(Place::Here);
        }
        self.peer(&record.node_id)
            .map(Place::There)
            .ok_or_else(|| NodeError::Unavailable(format!("member {} is leaving; retry in a moment", record.node_id)))
    }

    /// Whether a member is draining.
    pub fn is_draining(&self, node_id: &str) -> bool {
        self.members.borrow().nodes.get(node_id).is_some_and(|m| m.draining)
    }

    /// Where placement would put an actor nobody owns yet.
    pub fn placed(&self, kind: ActorKind, tenant: &str, id: &str) -> Result<Place> {
        let chosen = {
            let members = self.members.borrow();
            // Draining members take nothing new, unless all of them drain.
            let staying: Vec<&str> =
                members.nodes.values().filter(|m| !m.draining).map(|m| m.node_id.as_str()).collect();
            let candidates =
                if staying.is_empty() { members.nodes.keys().map(String::as_str).collect() } else { staying };
            owner(candidates, &actor_key(kind, tenant, id)).map(str::to_string)
        };
        match chosen {
            Some(node) if node == self.me.as_ref() => Ok(Place::Here),
            Some(node) => {
                self.peer(&node).map(Place::There).ok_or_else(|| NodeError::Unavailable("member left; retry".into()))
            }
            None => Err(NodeError::Unavailable("no live member; retry".into())),
        }
    }

    /// Notes the members that joined since the last look, forgets those
    /// that left.
    fn note_members(&self) {
        let members = self.members.borrow();
        let mut joined = self.joined.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        joined.retain(|(id, lease), _| members.nodes.get(id).is_some_and(|m| m.lease_id == *lease));
        let now = tokio::time::Instant::now();
        for m in members.nodes.values() {
            joined.entry((m.node_id.clone(), m.lease_id)).or_insert(now);
        }
    }

    /// Whether this node, owning the queue, hands it over to the member
    /// placement now chooses: always when this node drains, else once
    /// that member has settled.
    fn moves_away(&self, node: &Node, tenant: &str, id: &str) -> bool {
        let Ok(Place::There(to)) = self.placed(ActorKind::Queue, tenant, id) else { return false };
        if node.is_draining() {
            return true;
        }
        let lease = self.members.borrow().nodes.get(to.node_id.as_ref()).map(|m| m.lease_id);
        let joined = self.joined.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        lease
            .and_then(|lease| joined.get(&(to.node_id.to_string(), lease)))
            .is_some_and(|since| since.elapsed() >= SETTLE)
    }

    /// Claims an actor for this node; the epoch, or who holds it.
    pub async fn claim(&self, kind: ActorKind, tenant: &str, id: &str) -> Result<Claim> {
        let key = actor_key(kind, tenant, id);
        let claim = self.ownership.claim(&key).await?;
        if let Claim::Mine(epoch) = claim {
            // Seen at once, before the watch confirms it.
            self.owners.note(&key, OwnerRecord { node_id: self.me.clone(), epoch, lease: *self.lease_id.borrow() });
        }
        Ok(claim)
    }

    /// Gives a claim up.
    pub async fn release(&self, kind: ActorKind, tenant: &str, id: &str, epoch: Epoch) -> Result<()> {
        self.ownership.release(&actor_key(kind, tenant, id), epoch, Vec::new()).await
    }

    fn is_mine(&self, record: &OwnerRecord) -> bool {
        record.node_id == self.me && record.lease == *self.lease_id.borrow()
    }

    /// Runs passes until the node goes.
    pub async fn run(self: Arc<Self>, node: std::sync::Weak<Node>) {
        let mut owners = self.owners.subscribe();
        let mut members = self.members.clone();
        let mut aside = self.aside.subscribe();
        loop {
            {
                let Some(node) = node.upgrade() else { return };
                let standing = *aside.borrow_and_update();
                match standing {
                    Aside::No if self.window.is_open() => self.pass(&node).await,
                    Aside::No => {}
                    Aside::Leaving => {
                        self.step_aside(&node).await;
                        self.aside.send_if_modified(|a| {
                            let out = *a == Aside::Leaving;
                            if out {
                                *a = Aside::Out;
                            }
                            out
                        });
                    }
                    Aside::Out => unhost_all(&node),
                }
            }
            tokio::select! {
                changed = aside.changed() => if changed.is_err() { return },
                changed = owners.changed() => if changed.is_err() { return },
                // The member list ends when the node leaves the cluster.
                changed = members.changed() => if changed.is_err() { return },
                () = self.poke.notified() => {}
                () = tokio::time::sleep(PERIOD) => {}
            }
        }
    }

    /// Hands every queue hosted here over (its proposals taken back and
    /// told, its last batch written, its claim released) and stops the
    /// informants' actors.
    async fn step_aside(&self, node: &Arc<Node>) {
        let mut handing = Vec::new();
        for tenant in &node.config.tenants {
            let tenant: Arc<str> = tenant.as_str().into();
            for (id, epoch) in node.directory.claimed_queues(&tenant) {
                let tenant = tenant.clone();
                handing.push(async move { self.hand_over(node, &tenant, &id, epoch, "stepping aside").await });
            }
        }
        futures::future::join_all(handing).await;
        unhost_all(node);
    }

    /// Hands a queue this member owns over (its held calls taken back and
    /// told, its last batch written), then releases its claim for the
    /// member placement chooses.
    async fn hand_over(&self, node: &Node, tenant: &Arc<str>, id: &Arc<str>, epoch: Epoch, why: &str) {
        node.hand_over_queue(tenant, id).await;
        match self.release(ActorKind::Queue, tenant, id, epoch).await {
            Ok(()) => tracing::info!(tenant = %tenant, queue_id = %id, why, "queue handed over"),
            Err(e) => {
                tracing::warn!(tenant = %tenant, queue_id = %id, why, error = %e, "releasing a handed-over queue failed")
            }
        }
    }

    /// One look at every actor this node could host.
    async fn pass(&self, node: &Arc<Node>) {
        self.note_members();
        for tenant in &node.config.tenants {
            let tenant: Arc<str> = tenant.as_str().into();
            let configured = node.catalog.queues(&tenant);
            for entry in &configured {
                let id = &entry.parsed.id;
                let hosted = node.directory.epoch(ActorKind::Queue, &tenant, id);
                let key = actor_key(ActorKind::Queue, &tenant, id);
                let current = self.owners.get(&key);
                if let Some(record) = &current {
                    let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if seen.insert(key.clone(), record.epoch) != Some(record.epoch) {
                        node.rejoin_queue(&tenant, id);
                    }
                }
                match current {
                    // Draining, or a member joined that placement prefers:
                    // the queue goes to the member placement chooses now,
                    // with its calls (in etcd).
                    Some(record) if self.is_mine(&record) && self.moves_away(node, &tenant, id) => {
                        let why = if node.is_draining() { "draining" } else { "a member joined" };
                        self.hand_over(node, &tenant, id, record.epoch, why).await;
                    }
                    Some(record) if self.is_mine(&record) => {
                        if hosted != Some(record.epoch) {
                            // Claimed here but not hosted under that claim:
                            // its actor failed (a write etcd did not take)
                            // or did not start. It starts again under a new
                            // claim, so that every member sees a new epoch
                            // and its informants join it again: the failed
                            // actor's members are forgotten, and a restart
                            // under the same epoch would tell only this
                            // member's informants.
                            match self.release(ActorKind::Queue, &tenant, id, record.epoch).await {
                                Ok(()) => {
                                    tracing::info!(tenant = %tenant, queue_id = %id, "queue claimed again to start afresh");
                                    self.poke.notify_one();
                                }
                                Err(e) => {
                                    tracing::debug!(tenant = %tenant, queue_id = %id, error = %e, "releasing a queue to claim it again failed");
                                }
                            }
                        }
                    }
                    // Only a claim etcd reported (a claim learnt from a
                    // message has no lease here) takes a queue away.
                    Some(record) if record.lease != 0 => {
                        if hosted.is_some() {
                            node.unhost_queue(&tenant, id, "another member owns it now");
                        }
                    }
                    Some(_) => {}
                    None => {
                        if hosted.is_some() {
                            node.unhost_queue(&tenant, id, "its claim is gone");
                        }
                        if matches!(self.placed(ActorKind::Queue, &tenant, id), Ok(Place::Here)) {
                            match self.claim(ActorKind::Queue, &tenant, id).await {
                                Ok(Claim::Mine(epoch)) => {
                                    tracing::info!(tenant = %tenant, queue_id = %id, epoch, "queue claimed");
                                    node.host_queue(&tenant, id, epoch).await;
                                }
                                Ok(Claim::Theirs { .. }) => {}
                                Err(e) => tracing::debug!(tenant = %tenant, queue_id = %id, error = %e, "claim failed"),
                            }
                        }
                    }
                }
            }
            if node.is_draining() {
                node.drain_informants(&tenant).await;
            }
            // Queues hosted here but deleted from the configuration.
            for (id, _) in node.directory.claimed_queues(&tenant) {
                if !configured.iter().any(|q| q.parsed.id == id) {
                    node.unhost_queue(&tenant, &id, "it was deleted");
                }
            }
            // Informants whose claim this node lost (its lease ended while
            // it could not renew it): their desktops log in again.
            for (id, epoch) in node.directory.claimed_informants(&tenant) {
                let current = self.owners.get(&actor_key(ActorKind::Informant, &tenant, &id));
                let lost = match current {
                    None => true,
                    Some(r) => r.lease != 0 && !(self.is_mine(&r) && r.epoch == epoch),
                };
                if lost {
                    node.unhost_informant(&tenant, &id);
                }
            }
            // Claims this node holds but no longer uses: deleted queues,
            // informants logged out.
            for (key, record) in self.owners.owned_by(&self.me) {
                if !self.is_mine(&record) {
                    continue;
                }
                let Some((kind, id)) = parse_key(&key, &tenant) else { continue };
                let id: Arc<str> = id.into();
                let released = match kind {
                    ActorKind::Queue if configured.iter().any(|q| q.parsed.id == id) => continue,
                    ActorKind::Queue => self.release(kind, &tenant, &id, record.epoch).await,
                    // The informant's slot is held while its claim is
                    // released: a login meanwhile is refused for that
                    // moment rather than handed a claim about to go.
                    ActorKind::Informant if node.directory.reserve_informant(&tenant, &id) => {
                        let released = self.release(kind, &tenant, &id, record.epoch).await;
                        node.directory.unregister_informant(&tenant, &id);
                        released
                    }
                    ActorKind::Informant => continue,
                };
                if let Err(e) = released {
                    tracing::debug!(actor = %key, error = %e, "release failed");
                }
            }
        }
    }
}

/// Stops every actor this member hosts: it stands aside.
fn unhost_all(node: &Node) {
    for tenant in &node.config.tenants {
        let tenant: Arc<str> = tenant.as_str().into();
        for (id, _) in node.directory.claimed_queues(&tenant) {
            node.unhost_queue(&tenant, &id, "this member stands aside");
        }
        for (id, _) in node.directory.claimed_informants(&tenant) {
            node.unhost_informant(&tenant, &id);
        }
    }
}

/// (kind, id) of an actor key of `tenant`.
fn parse_key<'a>(key: &'a str, tenant: &str) -> Option<(ActorKind, &'a str)> {
    let (kind, rest) = key.split_once(':')?;
    let id = rest.strip_prefix(tenant)?.strip_prefix('/')?;
    match kind {
        "queue" => Some((ActorKind::Queue, id)),
        "informant" => Some((ActorKind::Informant, id)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_keys_parse_back_for_their_tenant_only() {
        let key = actor_key(ActorKind::Queue, "cai", "justice");
        assert_eq!(parse_key(&key, "cai"), Some((ActorKind::Queue, "justice")));
        assert_eq!(parse_key(&key, "ca"), None);
        let key = actor_key(ActorKind::Informant, "sos", "ana");
        assert_eq!(parse_key(&key, "sos"), Some((ActorKind::Informant, "ana")));
    }
}
