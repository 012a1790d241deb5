//! Where actors live, and where each call is.
//!
//! This is the one seam between "which actor handles this" and "how to
//! reach it". On a single node every actor is local and the answer is an
//! `ActorRef`; in a cluster an actor another member owns is answered as a
//! [`Addr::Remote`], reached through the link to its owner with the epoch
//! of its owner's claim.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use ractor::{ActorId, ActorRef, RpcReplyPort};
use relais_routing::EventLog;
use relais_routing::queue::{CallSnapshot, QueueError};

use crate::actors::informant::InformantMsg;
use crate::actors::queue::{QueueMsg, Watcher};
use crate::clock::now_ms;
use crate::cluster::ownership::Epoch;
use crate::cluster::placement::ActorKind;
use crate::metrics::Metrics;
use crate::peer::link::RequestFailed;
use crate::peer::{Peers, Remote, wire};

/// (tenant, id): queues, informants and calls are named within a tenant.
pub type Key = (Arc<str>, Arc<str>);

pub fn key(tenant: &Arc<str>, id: &Arc<str>) -> Key {
    (tenant.clone(), id.clone())
}

/// A call that has ended, kept for idempotent retries and late watchers.
#[derive(Debug)]
pub struct EndedCall {
    pub snapshot: CallSnapshot,
    pub events: EventLog,
}

#[derive(Clone, Debug)]
pub enum CallLocation {
    /// Live in this queue.
    Live(Arc<str>),
    Ended(Arc<EndedCall>),
}

#[derive(Clone, Debug)]
pub enum InformantSlot {
    /// Logging in: the actor is being started.
    Starting,
    Running(ActorRef<InformantMsg>),
}

/// How to reach an actor: in this process, or on the member that owns it.
#[derive(Clone)]
pub enum Addr<M: ractor::Message> {
    Local(ActorRef<M>),
    Remote(Remote),
}

impl Addr<QueueMsg> {
    /// Sends an actor message; false when it cannot be delivered (the
    /// actor stopped, the link is full, or the message never crosses
    /// nodes).
    pub fn cast(&self, msg: QueueMsg) -> bool {
        match self {
            Self::Local(actor) => actor.cast(msg).is_ok(),
            Self::Remote(remote) => match wire::queue_msg_out(msg) {
                Ok(wire::Outgoing::Cast(body)) => remote.send(body),
                Ok(wire::Outgoing::Ask { .. }) | Err(_) => false,
            },
        }
    }

    /// Hands a moving call to this queue; gives the call back when it
    /// cannot. Watchers are local streams: they follow a local queue only
    /// (the gateway of a call moved to another member watches it again).
    /// A queue on another member confirms the adoption; without it, the
    /// call goes back to `from`, which keeps it.
    pub fn adopt(
        &self,
        call: Box<relais_routing::queue::MovedCall>,
        watchers: Vec<Watcher>,
        from: &ActorRef<QueueMsg>,
    ) -> Result<(), (Box<relais_routing::queue::MovedCall>, Vec<Watcher>)> {
        match self {
            Self::Local(actor) => match actor.cast(QueueMsg::Adopt { call, watchers }) {
                Ok(()) => Ok(()),
                Err(ractor::MessagingErr::SendErr(QueueMsg::Adopt { call, watchers })) => Err((call, watchers)),
                Err(_) => {
                    tracing::error!("a moving call was lost with its queue actor");
                    Ok(())
                }
            },
            Self::Remote(remote) => {
                let kept = call.clone();
                let Ok(wire::Outgoing::Cast(body)) =
                    wire::queue_msg_out(QueueMsg::Adopt { call, watchers: Vec::new() })
                else {
                    return Err((kept, watchers));
                };
                let (remote, from) = (remote.clone(), from.clone());
                tokio::spawn(async move {
                    match remote.request(body).await {
                        Ok(()) => {}
                        Err(RequestFailed::NotSent | RequestFailed::Refused) => {
                            tracing::warn!(call_id = %kept.info.call_id, "another member did not adopt a call: kept here");
                            let _ = from.cast(QueueMsg::Adopt { call: kept, watchers: Vec::new() });
                        }
                        // Taking it back could put it in two queues.
                        Err(RequestFailed::Unknown) => tracing::error!(
                            call_id = %kept.info.call_id,
                            "a call handed to another member is unconfirmed (link broken): it may be lost"
                        ),
                    }
                });
                // The call's watchers here end; its gateway watches it again.
                drop(watchers);
                Ok(())
            }
        }
    }

    /// Asks the queue to connect its offered call to the informant.
    pub async fn connect(&self, informant_id: Arc<str>, call_id: Arc<str>, offer_id: Arc<str>) -> AskOutcome {
        self.ask(|reply| QueueMsg::Connect { informant_id, call_id, offer_id, reply }).await
    }

    /// Asks the queue to end the call the informant finished; answered
    /// once the end is durable.
    pub async fn complete(&self, informant_id: Arc<str>, call_id: Arc<str>) -> AskOutcome {
        self.ask(|reply| QueueMsg::Complete { informant_id, call_id, reply }).await
    }

    /// Sends a message that carries its reply port and waits for the
    /// queue's yes or no.
    async fn ask(&self, msg: impl FnOnce(RpcReplyPort<Result<(), QueueError>>) -> QueueMsg) -> AskOutcome {
        match self {
            Self::Local(actor) => match actor.call(msg, Some(crate::node::ASK_TIMEOUT)).await {
                Ok(ractor::rpc::CallResult::Success(Ok(()))) => AskOutcome::Yes,
                Ok(ractor::rpc::CallResult::Success(Err(_))) => AskOutcome::Refused,
                // The actor stopped (it starts again from etcd) or is
                // slow: it may or may not have done it.
                _ => AskOutcome::Unknown,
            },
            Self::Remote(remote) => {
                let (reply, _) = ractor::concurrency::oneshot();
                match wire::queue_msg_out(msg(reply.into())) {
                    Ok(wire::Outgoing::Ask { body, .. }) => match remote.request(body).await {
                        Ok(()) => AskOutcome::Yes,
                        Err(RequestFailed::Refused) => AskOutcome::Refused,
                        Err(RequestFailed::NotSent | RequestFailed::Unknown) => AskOutcome::Unknown,
                    },
                    _ => AskOutcome::Refused,
                }
            }
        }
    }
}

/// How a connect or a complete ended. A queue connects the same call to
/// the same informant again without change, and refuses to end a call it
/// no longer holds, so an unknown outcome is asked again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AskOutcome {
    Yes,
    /// The queue said no: the offer is gone, or the call is not (or no
    /// longer) connected to that informant.
    Refused,
    /// No answer (the queue's member died, its actor restarted, a link
    /// broke): it may have done it.
    Unknown,
}

impl Addr<InformantMsg> {
    /// Sends an actor message; false when it cannot be delivered.
    pub fn cast(&self, msg: InformantMsg) -> bool {
        match self {
            Self::Local(actor) => actor.cast(msg).is_ok(),
            Self::Remote(remote) => wire::informant_msg_out(msg).is_ok_and(|body| remote.send(body)),
        }
    }
}

#[derive(Debug)]
pub struct Directory {
    queues: DashMap<Key, ActorRef<QueueMsg>>,
    /// Epochs of the claims this node holds on the actors it hosts (in a
    /// cluster; absent on a single node).
    queue_epochs: DashMap<Key, Epoch>,
    informant_epochs: DashMap<Key, Epoch>,
    /// Queues this node claimed and is starting (reading their calls), with
    /// the claim's epoch: messages for them wait rather than get dropped.
    queues_starting: DashMap<Key, Epoch>,
    /// The other members' actors (in a cluster).
    peers: std::sync::OnceLock<Arc<Peers>>,
    informants: DashMap<Key, InformantSlot>,
    /// Logged-in (or logging-in) informants per tenant.
    informants_per_tenant: DashMap<Arc<str>, usize>,
    calls: DashMap<Key, CallLocation>,
    /// Ended calls, oldest first, for eviction by count and age.
    ended: Mutex<VecDeque<(Key, u64)>>,
    ended_calls_kept: usize,
    ended_call_ttl_ms: u64,
    /// What the actors hosted here record into.
    metrics: Metrics,
}

impl Directory {
    /// A directory whose actors' metrics only [`Metrics::render`] reads.
    pub fn new(ended_calls_kept: usize, ended_call_ttl_ms: u64) -> Self {
        Self::with_metrics(ended_calls_kept, ended_call_ttl_ms, Metrics::default())
    }

    pub fn with_metrics(ended_calls_kept: usize, ended_call_ttl_ms: u64, metrics: Metrics) -> Self {
        Self {
            queues: DashMap::new(),
            queue_epochs: DashMap::new(),
            informant_epochs: DashMap::new(),
            queues_starting: DashMap::new(),
            peers: std::sync::OnceLock::new(),
            informants: DashMap::new(),
            informants_per_tenant: DashMap::new(),
            calls: DashMap::new(),
            ended: Mutex::new(VecDeque::new()),
            ended_calls_kept,
            ended_call_ttl_ms,
            metrics,
        }
    }

    /// The metrics the actors hosted here record into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn queue(&self, tenant: &Arc<str>, id: &Arc<str>) -> Option<ActorRef<QueueMsg>> {
        self.queues.get(&key(tenant, id)).map(|r| r.clone())
    }

    /// Lets actors reach the other members' actors.
    pub fn set_peers(&self, peers: Arc<Peers>) {
        let _ = self.peers.set(peers);
    }

    pub fn peers(&self) -> Option<&Arc<Peers>> {
        self.peers.get()
    }

    /// The queue, here or on the member that owns it.
    pub fn queue_addr(&self, tenant: &Arc<str>, id: &Arc<str>) -> Option<Addr<QueueMsg>> {
        if let Some(actor) = self.queue(tenant, id) {
            return Some(Addr::Local(actor));
        }
        self.peers.get()?.remote(ActorKind::Queue, tenant, id).map(Addr::Remote)
    }

    /// The informant, here or on the member that owns it.
    pub fn informant_addr(&self, tenant: &Arc<str>, id: &Arc<str>) -> Option<Addr<InformantMsg>> {
        if let Some(actor) = self.informant(tenant, id) {
            return Some(Addr::Local(actor));
        }
        self.peers.get()?.remote(ActorKind::Informant, tenant, id).map(Addr::Remote)
    }

    /// Records the epoch of this node's claim on an actor it hosts.
    pub fn set_epoch(&self, kind: ActorKind, tenant: &Arc<str>, id: &Arc<str>, epoch: Epoch) {
        self.epochs(kind).insert(key(tenant, id), epoch);
    }

    pub fn clear_epoch(&self, kind: ActorKind, tenant: &Arc<str>, id: &Arc<str>) -> Option<Epoch> {
        self.epochs(kind).remove(&key(tenant, id)).map(|(_, e)| e)
    }

    pub fn epoch(&self, kind: ActorKind, tenant: &Arc<str>, id: &Arc<str>) -> Option<Epoch> {
        self.epochs(kind).get(&key(tenant, id)).map(|e| *e)
    }

    fn epochs(&self, kind: ActorKind) -> &DashMap<Key, Epoch> {
        match kind {
            ActorKind::Queue => &self.queue_epochs,
            ActorKind::Informant => &self.informant_epochs,
        }
    }

    /// A local queue, only if this node hosts it under `epoch`: a message
    /// meant for an earlier or later owner is refused.
    pub fn queue_at(&self, tenant: &Arc<str>, id: &Arc<str>, epoch: Epoch) -> Option<ActorRef<QueueMsg>> {
        (self.epoch(ActorKind::Queue, tenant, id) == Some(epoch)).then(|| self.queue(tenant, id)).flatten()
    }

    /// Notes that the queue's actor is starting under `epoch` (or, with
    /// `None`, that it started or failed to).
    pub fn queue_starting(&self, tenant: &Arc<str>, id: &Arc<str>, epoch: Option<Epoch>) {
        match epoch {
            Some(epoch) => {
                self.queues_starting.insert(key(tenant, id), epoch);
            }
            None => {
                self.queues_starting.remove(&key(tenant, id));
            }
        }
    }

    /// Like [`Self::queue_at`], but when the queue is starting under `epoch`
    /// (or this node's claim at `epoch` may not have reached its own mirror
    /// yet: another member learnt of it first) waits for it, up to
    /// `patience`.
    pub async fn queue_at_soon(
        &self,
        tenant: &Arc<str>,
        id: &Arc<str>,
        epoch: Epoch,
        patience: std::time::Duration,
    ) -> Option<ActorRef<QueueMsg>> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if let Some(queue) = self.queue_at(tenant, id, epoch) {
                return Some(queue);
            }
            let starting = self.queues_starting.get(&key(tenant, id)).map(|e| *e) == Some(epoch)
                || self.peers.get().is_some_and(|peers| peers.claim_on_its_way(tenant, id, epoch));
            if !starting || tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// A local informant, only if this node hosts it under `epoch`.
    pub fn informant_at(&self, tenant: &Arc<str>, id: &Arc<str>, epoch: Epoch) -> Option<ActorRef<InformantMsg>> {
        (self.epoch(ActorKind::Informant, tenant, id) == Some(epoch)).then(|| self.informant(tenant, id)).flatten()
    }

    pub fn register_queue(&self, tenant: &Arc<str>, id: &Arc<str>, actor: ActorRef<QueueMsg>) {
        self.queues.insert(key(tenant, id), actor);
    }

    pub fn unregister_queue(&self, tenant: &Arc<str>, id: &Arc<str>) -> Option<ActorRef<QueueMsg>> {
        self.queues.remove(&key(tenant, id)).map(|(_, a)| a)
    }

    pub fn informant(&self, tenant: &Arc<str>, id: &Arc<str>) -> Option<ActorRef<InformantMsg>> {
        match self.informants.get(&key(tenant, id)).map(|r| r.clone()) {
            Some(InformantSlot::Running(actor)) => Some(actor),
            _ => None,
        }
    }

    /// Reserves an informant's slot for a login; false if already taken.
    pub fn reserve_informant(&self, tenant: &Arc<str>, id: &Arc<str>) -> bool {
        match self.informants.entry(key(tenant, id)) {
            Entry::Occupied(_) => false,
            Entry::Vacant(v) => {
                v.insert(InformantSlot::Starting);
                self.count_informant(tenant);
                true
            }
        }
    }

    pub fn register_informant(&self, tenant: &Arc<str>, id: &Arc<str>, actor: ActorRef<InformantMsg>) {
        if self.informants.insert(key(tenant, id), InformantSlot::Running(actor)).is_none() {
            self.count_informant(tenant);
        }
    }

    fn count_informant(&self, tenant: &Arc<str>) {
        *self.informants_per_tenant.entry(tenant.clone()).or_default() += 1;
    }

    fn uncount_informant(&self, tenant: &Arc<str>) {
        if let Some(mut count) = self.informants_per_tenant.get_mut(tenant) {
            *count = count.saturating_sub(1);
        }
    }

    pub fn unregister_informant(&self, tenant: &Arc<str>, id: &Arc<str>) {
        if self.informants.remove(&key(tenant, id)).is_some() {
            self.uncount_informant(tenant);
        }
        self.informant_epochs.remove(&key(tenant, id));
    }

    /// The informants this node hosts under a claim, with its epoch.
    pub fn claimed_informants(&self, tenant: &str) -> Vec<(Arc<str>, Epoch)> {
        Self::claimed(&self.informant_epochs, tenant)
    }

    /// The queues this node hosts under a claim, with its epoch.
    pub fn claimed_queues(&self, tenant: &str) -> Vec<(Arc<str>, Epoch)> {
        Self::claimed(&self.queue_epochs, tenant)
    }

    fn claimed(epochs: &DashMap<Key, Epoch>, tenant: &str) -> Vec<(Arc<str>, Epoch)> {
        epochs.iter().filter(|e| e.key().0.as_ref() == tenant).map(|e| (e.key().1.clone(), *e.value())).collect()
    }

    /// Whether the informant is logged in here or logging in.
    pub fn holds_informant(&self, tenant: &Arc<str>, id: &Arc<str>) -> bool {
        self.informants.contains_key(&key(tenant, id))
    }

    /// Forgets the informant whose actor is `actor` (it failed) and returns
    /// its key. This scans the informants: an actor fails rarely, and the
    /// scan spares the node a record per informant to find it by id.
    pub fn forget_informant_actor(&self, actor: ActorId) -> Option<Key> {
        let runs = |slot: &InformantSlot| matches!(slot, InformantSlot::Running(a) if a.get_id() == actor);
        let found = self.informants.iter().find(|e| runs(e.value())).map(|e| e.key().clone())?;
        let (key, _) = self.informants.remove_if(&found, |_, slot| runs(slot))?;
        self.uncount_informant(&key.0);
        self.informant_epochs.remove(&key);
        Some(key)
    }

    /// Running informants of a tenant.
    pub fn informants_of(&self, tenant: &str) -> Vec<(Arc<str>, ActorRef<InformantMsg>)> {
        self.informants
            .iter()
            .filter(|e| e.key().0.as_ref() == tenant)
            .filter_map(|e| match e.value() {
                InformantSlot::Running(actor) => Some((e.key().1.clone(), actor.clone())),
                InformantSlot::Starting => None,
            })
            .collect()
    }

    pub fn informant_count(&self, tenant: &str) -> usize {
        self.informants_per_tenant.get(tenant).map_or(0, |c| *c)
    }

    pub fn call(&self, tenant: &Arc<str>, call_id: &Arc<str>) -> Option<CallLocation> {
        self.calls.get(&key(tenant, call_id)).map(|r| r.clone())
    }

    /// Records a new call in `queue_id` unless the id is known; `send` runs
    /// while the entry is held, so that any later request for this call
    /// reaches the queue after the message `send` posted. Returns the known
    /// location when the call already exists.
    pub fn claim_call<F>(
        &self,
        tenant: &Arc<str>,
        call_id: &Arc<str>,
        queue_id: &Arc<str>,
        send: F,
    ) -> Result<(), CallLocation>
    where
        F: FnOnce(),
    {
        self.evict_ended();
        match self.calls.entry(key(tenant, call_id)) {
            Entry::Occupied(existing) => Err(existing.get().clone()),
            Entry::Vacant(v) => {
                v.insert(CallLocation::Live(queue_id.clone()));
                send();
                Ok(())
            }
        }
    }

    /// Drops a claim whose queue never received the call.
    pub fn forget_call(&self, tenant: &Arc<str>, call_id: &Arc<str>, queue_id: &Arc<str>) {
        self.calls.remove_if(&key(tenant, call_id), |_, loc| matches!(loc, CallLocation::Live(q) if q == queue_id));
    }

    /// Forgets the live calls of a queue whose actor stopped: its next actor
    /// (here or on another member) takes over those it kept in etcd.
    pub fn forget_queue_calls(&self, tenant: &Arc<str>, queue_id: &Arc<str>) {
        self.calls.retain(|k, loc| !(k.0 == *tenant && matches!(loc, CallLocation::Live(q) if q == queue_id)));
    }

    /// The call moved to another queue.
    pub fn move_call(&self, tenant: &Arc<str>, call_id: &Arc<str>, queue_id: &Arc<str>) {
        self.calls.insert(key(tenant, call_id), CallLocation::Live(queue_id.clone()));
    }

    /// The call moved to a queue on another member: remember where, for a
    /// while (like an ended call), so that requests about it here find it.
    pub fn moved_away(&self, tenant: &Arc<str>, call_id: &Arc<str>, queue_id: &Arc<str>) {
        let k = key(tenant, call_id);
        self.calls.insert(k.clone(), CallLocation::Live(queue_id.clone()));
        let mut ended = self.ended.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        ended.push_back((k, now_ms()));
    }

    /// The call ended: keep its last state and events for a while.
    pub fn end_call(&self, tenant: &Arc<str>, snapshot: CallSnapshot, events: EventLog) {
        let k = key(tenant, &snapshot.info.call_id);
        self.calls.insert(k.clone(), CallLocation::Ended(Arc::new(EndedCall { snapshot, events })));
        let mut ended = self.ended.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        ended.push_back((k, now_ms()));
    }

    fn evict_ended(&self) {
        let now = now_ms();
        let mut ended = self.ended.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some((k, at)) = ended.front() {
            if ended.len() <= self.ended_calls_kept && now.saturating_sub(*at) < self.ended_call_ttl_ms {
                break;
            }
            // An ended call, or one that moved to another member (and
            // not back since).
            self.calls.remove_if(k, |_, loc| match loc {
                CallLocation::Ended(_) => true,
                CallLocation::Live(queue_id) => !self.queues.contains_key(&key(&k.0, queue_id)),
            });
            ended.pop_front();
        }
    }

    /// Calls known (live and remembered), for tests and statistics.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }
}

#[cfg(test)]
mod tests {
    use ractor::{Actor, ActorProcessingErr};

    use super::*;

    /// Stands in for an informant actor: only its reference matters here.
    struct Stub;

    impl Actor for Stub {
        type Msg = InformantMsg;
        type State = ();
        type Arguments = ();

        async fn pre_start(&self, _: ActorRef<InformantMsg>, _: ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
    }

    async fn stub() -> ActorRef<InformantMsg> {
        Actor::spawn(None, Stub, ()).await.expect("spawn a stub actor").0
    }

    #[tokio::test]
    async fn a_failed_informant_is_forgotten_by_its_actor_id_alone() {
        let directory = Directory::new(10, 60_000);
        let tenant: Arc<str> = "tenant-a".into();
        let (ana, bea): (Arc<str>, Arc<str>) = ("ana".into(), "bea".into());
        let (failed, other) = (stub().await, stub().await);
        directory.register_informant(&tenant, &ana, failed.clone());
        directory.register_informant(&tenant, &bea, other.clone());

        assert_eq!(directory.forget_informant_actor(failed.get_id()), Some(key(&tenant, &ana)));
        assert!(directory.informant(&tenant, &ana).is_none());
        assert_eq!(directory.informant(&tenant, &bea).map(|a| a.get_id()), Some(other.get_id()));
        assert_eq!(directory.informant_count(&tenant), 1);

        // Ana logs in again with a new actor: the old actor's id no longer
        // names her entry.
        let again = stub().await;
        directory.register_informant(&tenant, &ana, again.clone());
        assert_eq!(directory.forget_informant_actor(failed.get_id()), None);
        assert_eq!(directory.informant(&tenant, &ana).map(|a| a.get_id()), Some(again.get_id()));
        assert_eq!(directory.informant_count(&tenant), 2);
    }
}
