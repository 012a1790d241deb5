//! Actors on other members: how this node reaches them (links) and how it
//! takes messages for its own (the `Peer` service).

pub mod link;
pub mod service;
pub mod wire;

use std::sync::Arc;

use dashmap::DashMap;
use relais_proto::peer::v1 as wire_pb;
use tokio::sync::watch;

use crate::cluster::owners::Owners;
use crate::cluster::ownership::Epoch;
use crate::cluster::placement::{ActorKind, actor_key};
use crate::cluster::{LeaseWindow, Members};
use link::Link;

/// The links to every peer this node has talked to, and the view of who
/// owns what.
pub struct Peers {
    me: Arc<str>,
    /// While it is closed this member cannot prove its claims: its actors
    /// send nothing to other members.
    window: Arc<LeaseWindow>,
    owners: Arc<Owners>,
    members: watch::Receiver<Arc<Members>>,
    links: DashMap<Arc<str>, Arc<Link>>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers").field("me", &self.me).field("links", &self.links.len()).finish()
    }
}

impl Peers {
    pub fn new(
        me: &str,
        window: Arc<LeaseWindow>,
        owners: Arc<Owners>,
        members: watch::Receiver<Arc<Members>>,
    ) -> Arc<Self> {
        Arc::new(Self { me: me.into(), window, owners, members, links: DashMap::new() })
    }

    /// Whether an actor of this member may send `body` to another member:
    /// only while this member can prove its claims, and only if the actor
    /// the body names as its sender is still claimed by this member.
    fn may_send(&self, tenant: &str, body: &wire_pb::envelope::Body) -> bool {
        self.window.is_open()
            && wire::sender(body).is_none_or(|(kind, id)| {
                self.owners.get(&actor_key(kind, tenant, id)).is_some_and(|r| r.node_id == self.me)
            })
    }

    /// The actor, if another member owns it.
    /// Whether a queue claim at `epoch` may be this member's, on its way
    /// to being hosted: the mirror says so, or has not reached that
    /// revision yet (the sender learnt of the claim from etcd first).
    pub fn claim_on_its_way(&self, tenant: &Arc<str>, id: &Arc<str>, epoch: Epoch) -> bool {
        let mine = self
            .owners
            .get(&actor_key(ActorKind::Queue, tenant, id))
            .is_some_and(|record| record.epoch == epoch && record.node_id == self.me);
        mine || epoch > self.owners.revision()
    }

    pub fn remote(self: &Arc<Self>, kind: ActorKind, tenant: &Arc<str>, id: &Arc<str>) -> Option<Remote> {
        let owner = self.owners.get(&actor_key(kind, tenant, id))?;
        if owner.node_id == self.me {
            return None;
        }
        Some(Remote {
            link: self.link(&owner.node_id),
            peers: self.clone(),
            tenant: tenant.clone(),
            id: id.clone(),
            epoch: owner.epoch,
        })
    }

    /// An envelope for the actor `to` at `to_epoch`, signed with the
    /// sending actor's claim where the body names it.
    fn envelope(&self, tenant: &str, to_id: &str, to_epoch: Epoch, body: wire_pb::envelope::Body) -> wire_pb::Envelope {
        let from_epoch = wire::sender(&body)
            .and_then(|(kind, id)| self.owners.get(&actor_key(kind, tenant, id)))
            .filter(|record| record.node_id == self.me)
            .map_or(0, |record| record.epoch);
        wire_pb::Envelope {
            seq: 0,
            tenant: tenant.to_string(),
            to_id: to_id.to_string(),
            to_epoch,
            from_node: self.me.to_string(),
            from_epoch,
            body: Some(body),
            // Empty unless traces are exported and the sender is in a
            // trace (a call's routing).
            trace_context: crate::telemetry::context_entries(),
        }
    }

    /// Whether the envelope's sending actor has been claimed again since
    /// the epoch it signs with.
    pub fn stale_sender(&self, envelope: &wire_pb::Envelope) -> bool {
        if envelope.from_epoch <= 0 {
            return false;
        }
        envelope.body.as_ref().and_then(wire::sender).is_some_and(|(kind, id)| {
            self.owners.get(&actor_key(kind, &envelope.tenant, id)).is_some_and(|r| r.epoch > envelope.from_epoch)
        })
    }

    /// Learns the sender's claim from a received envelope (see
    /// [`Owners::learn`]).
    pub fn learn_sender(&self, envelope: &wire_pb::Envelope) {
        if envelope.from_epoch <= 0 || !self.members.borrow().nodes.contains_key(&envelope.from_node) {
            return;
        }
        if let Some((kind, id)) = envelope.body.as_ref().and_then(wire::sender) {
            self.owners.learn(&actor_key(kind, &envelope.tenant, id), &envelope.from_node, envelope.from_epoch);
        }
    }

    fn link(&self, node_id: &Arc<str>) -> Arc<Link> {
        let mut entry = self
            .links
            .entry(node_id.clone())
            .or_insert_with(|| Arc::new(Link::open(node_id.clone(), self.members.clone())));
        if entry.is_closed() {
            *entry = Arc::new(Link::open(node_id.clone(), self.members.clone()));
        }
        entry.clone()
    }
}

/// An actor on another member, at the epoch this node last saw.
#[derive(Clone)]
pub struct Remote {
    link: Arc<Link>,
    peers: Arc<Peers>,
    tenant: Arc<str>,
    id: Arc<str>,
    epoch: Epoch,
}

impl Remote {
    pub fn send(&self, body: wire_pb::envelope::Body) -> bool {
        self.peers.may_send(&self.tenant, &body)
            && self.link.send(self.peers.envelope(&self.tenant, &self.id, self.epoch, body))
    }

    /// Sends a message that the receiving member answers (a connect, an
    /// adoption).
    pub async fn request(&self, body: wire_pb::envelope::Body) -> Result<(), link::RequestFailed> {
        if !self.peers.may_send(&self.tenant, &body) {
            return Err(link::RequestFailed::NotSent);
        }
        self.link.request(self.peers.envelope(&self.tenant, &self.id, self.epoch, body)).await
    }
}
