//! The node's shared state, and the operations that span several actors:
//! creating and deleting queues, logging informants in, applying a plan.
//! Services call these; actors never do.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorRef, RpcReplyPort};
use relais_proto::v1 as pb;
use relais_routing::SkillSet;
use relais_routing::informant::{OngoingCall, Standing};
use relais_routing::queue::{CallSnapshot, DurableCall};
use tokio::sync::Semaphore;

use crate::actors::informant::{InformantActor, InformantArgs, InformantMsg, StatusReply};
use crate::actors::queue::{Durability, QueueActor, QueueArgs, QueueMsg};
use crate::actors::supervisor::{Supervisor, SupervisorArgs, SupervisorMsg};
use crate::catalog::{Catalog, QueueEntry};
use crate::cluster::calls::CallStore;
use crate::cluster::catalog_store::{CatalogStore, Change};
use crate::cluster::ownership::{Claim, Epoch};
use crate::cluster::placement::ActorKind;
use crate::cluster::placer::Placer;
use crate::cluster::standing::StandingStore;
use crate::config::NodeConfig;
use crate::directory::{CallLocation, Directory};
use crate::error::{NodeError, Result};
use crate::forward::Forwarder;
use crate::metrics::Metrics;
use crate::pseudonym::Pseudonymizer;
use crate::validate;

/// How often a queue deleted elsewhere checks whether its live calls here
/// have ended.
const RETIRE_CHECK: Duration = Duration::from_millis(500);

/// Longest wait, in a cluster, for a new queue's member to host it before
/// its creation is answered.
const HOSTING_WAIT: Duration = Duration::from_secs(3);

/// How long a request waits for an actor's answer.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends `build(reply)` to `actor` and waits for the answer.
pub async fn ask<M, T>(actor: &ActorRef<M>, build: impl FnOnce(RpcReplyPort<T>) -> M) -> Result<T>
where
    M: ractor::Message,
    T: Send + 'static,
{
    match actor.call(build, Some(ASK_TIMEOUT)).await {
        Ok(ractor::rpc::CallResult::Success(value)) => Ok(value),
        Ok(ractor::rpc::CallResult::Timeout) => {
            Err(NodeError::Unavailable("the actor did not answer in time; retry".into()))
        }
        Ok(ractor::rpc::CallResult::SenderError) | Err(_) => {
            Err(NodeError::Unavailable("the actor stopped; retry".into()))
        }
    }
}

/// Everything needed to start a queue actor, shared with the supervisor so
/// that it can start one again.
#[derive(Clone)]
struct QueueStarter {
    directory: Arc<Directory>,
    catalog: Arc<Catalog>,
    listening_skill: Arc<str>,
    tick_ms: u64,
    /// Where queues keep their calls, once this node is in a cluster.
    calls: Arc<std::sync::OnceLock<Arc<CallStore>>>,
}

impl QueueStarter {
    /// Starts a queue's actor. In a cluster, its live calls are read from
    /// etcd first, and only then is the claim's `epoch` (or, when it starts
    /// again after a failure, the one it had) recorded, so that messages
    /// from other members wait for the actor rather than reach a queue
    /// about to be replaced.
    async fn start(
        &self,
        tenant: Arc<str>,
        config: relais_routing::QueueConfig,
        supervisor: ActorCell,
        epoch: Option<Epoch>,
    ) -> Result<ActorRef<QueueMsg>> {
        let queue_id = config.id.clone();
        if epoch.is_some() {
            self.directory.queue_starting(&tenant, &queue_id, epoch);
        }
        let started = self.spawn(tenant.clone(), config, supervisor, epoch).await;
        if epoch.is_some() {
            self.directory.queue_starting(&tenant, &queue_id, None);
        }
        started
    }

    async fn spawn(
        &self,
        tenant: Arc<str>,
        config: relais_routing::QueueConfig,
        supervisor: ActorCell,
        epoch: Option<Epoch>,
    ) -> Result<ActorRef<QueueMsg>> {
        let queue_id = config.id.clone();
        let (durability, restored, ended) = match self.calls.get() {
            Some(store) => {
                let epoch =
                    epoch.or_else(|| self.directory.epoch(ActorKind::Queue, &tenant, &queue_id)).ok_or_else(|| {
                        NodeError::Unavailable(format!("queue {queue_id:?} is not claimed by this member"))
                    })?;
                let (restored, ended) = store.load(&tenant, &queue_id).await?;
                self.directory.metrics().queue_started(restored.len());
                (Some(Durability { store: store.clone(), epoch }), restored, ended)
            }
            None => (None, Vec::new(), Vec::new()),
        };
        if let Some(epoch) = epoch {
            self.directory.set_epoch(ActorKind::Queue, &tenant, &queue_id, epoch);
        }
        // Its previous actor's calls are in etcd (or, on a single node,
        // were lost with it). Those that ended lately are remembered here,
        // so that a gateway retrying one gets its end, not a new call.
        self.directory.forget_queue_calls(&tenant, &queue_id);
        for last in ended {
            remember_ended(&self.directory, &tenant, last);
        }
        let args = QueueArgs {
            tenant: tenant.clone(),
            config,
            listening_skill: self.listening_skill.clone(),
            directory: self.directory.clone(),
            tick_ms: self.tick_ms,
            durability,
            restored,
        };
        let (actor, _) = Actor::spawn_linked(None, QueueActor, args, supervisor.clone())
            .await
            .map_err(|e| NodeError::Internal(format!("spawn queue actor: {e}")))?;
        self.directory.register_queue(&tenant, &queue_id, actor.clone());
        let _ = ActorRef::<SupervisorMsg>::from(supervisor).cast(SupervisorMsg::WatchQueue {
            actor: actor.get_id(),
            tenant,
            queue_id,
        });
        Ok(actor)
    }

    /// Tells every logged-in informant of the tenant which queues it now
    /// belongs to.
    fn refresh_informants(&self, tenant: &Arc<str>, restarted: Option<&Arc<str>>) {
        let queues = self.catalog.queues(tenant);
        for (_, actor) in self.directory.informants_of(tenant) {
            let informant = actor.clone();
            let queues = queues.clone();
            let restarted = restarted.cloned();
            tokio::spawn(async move {
                let Ok(status) = ask(&informant, |reply| InformantMsg::Get { reply }).await else { return };
                let mine = queues_for(&queues, &status.snapshot.skills);
                if let Some(restarted) = restarted {
                    // A restarted queue forgot its members: leave and join again.
                    let without: Vec<Arc<str>> = mine.iter().filter(|q| **q != restarted).cloned().collect();
                    let _ = informant.cast(InformantMsg::SetQueues(without));
                }
                let _ = informant.cast(InformantMsg::SetQueues(mine));
            });
        }
    }
}

/// The tenant's queues whose skill names `skills` covers.
fn queues_for(queues: &[QueueEntry], skills: &SkillSet) -> Vec<Arc<str>> {
    queues.iter().filter(|q| skills.covers_names(&q.parsed.required)).map(|q| q.parsed.id.clone()).collect()
}

/// Where a request about an actor is served.
#[derive(Clone, Debug)]
pub enum Place {
    /// On this node.
    Here,
    /// On another member, to which the request is forwarded.
    There(PeerAddr),
}

/// A member, as another member reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAddr {
    pub node_id: Arc<str>,
    /// `host:port` of the member's gRPC server.
    pub address: String,
}

pub struct Node {
    pub config: NodeConfig,
    /// This node's name and advertised address.
    me: PeerAddr,
    /// Sends requests about actors other members own on to them.
    pub forwarder: Forwarder,
    pub directory: Arc<Directory>,
    pub catalog: Arc<Catalog>,
    pub pseudonymizer: Pseudonymizer,
    /// Permits for open event streams.
    streams: Arc<Semaphore>,
    supervisor: ActorRef<SupervisorMsg>,
    starter: QueueStarter,
    /// Serializes configuration changes (rare) so that a plan applies whole.
    admin: tokio::sync::Mutex<()>,
    /// In a cluster: the configuration's home in etcd, which this node
    /// mirrors. Without one, the catalogue lives in this node alone.
    store: std::sync::OnceLock<Arc<CatalogStore>>,
    /// Queues deleted through another node that still hold live calls
    /// here: they finish them, then go.
    retiring: std::sync::Mutex<HashSet<(Arc<str>, Arc<str>)>>,
    /// Set by a drain: no new call, no new login.
    draining: std::sync::atomic::AtomicBool,
    /// New calls between their draining check and the queue's answer: a
    /// drain counts them, so it never reports zero while one is landing.
    offers_in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// In a cluster: which member hosts which actor.
    /// Shared with the supervisor's restart of a failed queue actor.
    placer: Arc<std::sync::OnceLock<Arc<Placer>>>,
    /// Where informants' standing is kept, once this node is in a cluster.
    standing: std::sync::OnceLock<Arc<StandingStore>>,
}

impl Node {
    /// Starts a node whose server is bound to `bound`; its parts record
    /// into `metrics`.
    pub async fn start(config: NodeConfig, bound: SocketAddr, metrics: Metrics) -> Result<Arc<Self>> {
        let me = PeerAddr { node_id: config.node_name(bound.port()).into(), address: config.advertised_address(bound) };
        let forwarder = Forwarder::new(&me.node_id, metrics.clone())?;
        let directory = Arc::new(Directory::with_metrics(config.ended_calls_kept, config.ended_call_ttl_ms, metrics));
        let catalog = Arc::new(Catalog::default());
        let starter = QueueStarter {
            directory: directory.clone(),
            catalog: catalog.clone(),
            listening_skill: config.listening_skill.as_str().into(),
            tick_ms: config.tick_ms,
            calls: Arc::new(std::sync::OnceLock::new()),
        };
        let restarter = starter.clone();
        let placer: Arc<std::sync::OnceLock<Arc<Placer>>> = Arc::default();
        let placer_of_restarts = placer.clone();
        let restart_queue = Arc::new(move |tenant: Arc<str>, queue_id: Arc<str>, supervisor: ActorCell| {
            let starter = restarter.clone();
            if let Some(placer) = placer_of_restarts.get() {
                // In a cluster a queue failed because etcd did not take its
                // writes, or refused them (its claim is gone): only the
                // placer knows whether this member still owns it, and if so
                // claims it again under a new epoch on its next pass (at
                // once), so that every member's informants join the new
                // actor — never while the member cannot prove its lease.
                // Restarting it here would read its calls and fail again, in
                // a loop, until the placer took it away.
                starter.directory.clear_epoch(ActorKind::Queue, &tenant, &queue_id);
                placer.poke.notify_one();
                return;
            }
            tokio::spawn(async move {
                let Some(entry) = starter.catalog.queue(&tenant, &queue_id) else { return };
                match starter.start(tenant.clone(), entry.parsed, supervisor, None).await {
                    Ok(_) => starter.refresh_informants(&tenant, Some(&queue_id)),
                    Err(e) => {
                        tracing::error!(tenant = %tenant, queue_id = %queue_id, error = %e, "queue restart failed")
                    }
                }
            });
        });
        let (supervisor, _) =
            Actor::spawn(None, Supervisor, SupervisorArgs { directory: directory.clone(), restart_queue })
                .await
                .map_err(|e| NodeError::Internal(format!("spawn supervisor: {e}")))?;
        Ok(Arc::new(Self {
            pseudonymizer: config.pseudonymizer()?,
            streams: Arc::new(Semaphore::new(config.max_streams)),
            config,
            me,
            forwarder,
            directory,
            catalog,
            supervisor,
            starter,
            admin: tokio::sync::Mutex::new(()),
            store: std::sync::OnceLock::new(),
            retiring: std::sync::Mutex::new(HashSet::new()),
            draining: std::sync::atomic::AtomicBool::new(false),
            offers_in_flight: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            placer,
            standing: std::sync::OnceLock::new(),
        }))
    }

    /// This node's name in the cluster.
    pub fn node_id(&self) -> &str {
        &self.me.node_id
    }

    /// This node's name and the address members and clients reach it at.
    pub fn me(&self) -> &PeerAddr {
        &self.me
    }

    /// Where requests about a call are served: at its queue's owner while
    /// it lives, where it ended afterwards. A call this node does not know
    /// is looked for on every other member (a call's id names no actor).
    pub async fn place_of_call(&self, tenant: &Arc<str>, call_id: &Arc<str>) -> Result<Place> {
        if let Some(place) = self.known_place_of_call(tenant, call_id)? {
            return Ok(place);
        }
        let mut asks: futures::stream::FuturesUnordered<_> = self
            .peers()
            .into_iter()
            .map(|peer| {
                let (tenant, call_id) = (tenant.clone(), call_id.clone());
                async move { (self.forwarder.find_call(&peer, &tenant, &call_id).await, peer) }
            })
            .collect();
        let mut silent = None;
        while let Some((found, peer)) = futures::StreamExt::next(&mut asks).await {
            match found {
                Ok(Some(found)) if found.ended => return Ok(Place::There(peer)),
                Ok(Some(found)) => return self.place_of_queue(tenant, &found.queue_id.as_str().into()),
                Ok(None) => {}
                Err(e) => silent = Some((peer, e)),
            }
        }
        // Nobody holds it: this node answers (NOT_FOUND); unless a member
        // could not say, and then nobody knows.
        if let Some((peer, e)) = silent {
            return Err(NodeError::Unavailable(format!(
                "member {} could not say whether it holds call {call_id:?} ({e}); retry",
                peer.node_id
            )));
        }
        // It may have ended on a member that is gone since: etcd keeps its
        // last record a while, and this node answers from it.
        if let Some(store) = self.starter.calls.get()
            && let Some(last) = store.ended(tenant, call_id).await?
        {
            remember_ended(&self.directory, tenant, last);
        }
        Ok(Place::Here)
    }

    /// Starts draining: from now on the node takes no new call and no new
    /// login, and serves what it holds.
    pub fn drain(&self) {
        if !self.draining.swap(true, std::sync::atomic::Ordering::SeqCst) {
            tracing::warn!("draining: no new calls or logins; serving the calls held here");
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Admits a new call unless the node drains; hold the permit until the
    /// queue has answered. (The count goes up before the draining flag is
    /// read, and a drain sets the flag before it reads the count: one of
    /// the two always sees the other.)
    pub fn admit_offer(&self) -> Result<OfferPermit> {
        self.offers_in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let permit = OfferPermit(self.offers_in_flight.clone());
        self.check_not_draining()?;
        Ok(permit)
    }

    /// `UNAVAILABLE` while draining a single node: new work goes to another
    /// node. In a cluster a draining member hands its queues over and logs
    /// its idle informants out (see the placer); until then it serves the
    /// actors it hosts, since refusing would turn callers away.
    pub fn check_not_draining(&self) -> Result<()> {
        if self.is_draining() && !self.config.clustered() { Err(draining_error()) } else { Ok(()) }
    }

    /// Calls waiting, offered or connected here, and informants logged in
    /// here, over every tenant.
    pub async fn live_work(&self) -> Result<(usize, usize)> {
        let in_flight = self.offers_in_flight.load(std::sync::atomic::Ordering::SeqCst);
        let mut asks = Vec::new();
        let mut informants = 0;
        let mut talking = Vec::new();
        for tenant in &self.config.tenants {
            let tenant: Arc<str> = tenant.as_str().into();
            for queue in self.catalog.queues(&tenant) {
                let tenant = tenant.clone();
                asks.push(async move { self.live_calls_held(&tenant, &queue.parsed.id).await });
            }
            informants += self.directory.informant_count(&tenant);
            if self.config.clustered() {
                // A call's queue may live elsewhere, but its informant's
                // session is here: the drain waits for it too.
                for (_, actor) in self.directory.informants_of(&tenant) {
                    talking.push(async move {
                        let status = ask(&actor, |reply| InformantMsg::Get { reply }).await;
                        status.is_ok_and(|s| s.snapshot.state == relais_routing::informant::InformantState::OnCall)
                    });
                }
            }
        }
        // Every queue at once: a slow one costs its timeout once.
        let mut calls = in_flight;
        for count in futures::future::join_all(asks).await {
            calls += count?;
        }
        calls += futures::future::join_all(talking).await.into_iter().filter(|on_call| *on_call).count();
        Ok((calls, informants))
    }

    /// Logs out this draining member's informants that hold no call (an
    /// offer goes back to its queue): their sessions end with `UNAVAILABLE`
    /// and their desktops log in again through another member.
    pub(crate) async fn drain_informants(&self, tenant: &Arc<str>) {
        for (id, actor) in self.directory.informants_of(tenant) {
            if let Ok(Ok(_)) = ask(&actor, |reply| InformantMsg::Logout { reply }).await {
                tracing::info!(tenant = %tenant, informant_id = %id, "informant logged out by the drain");
                // Its claim is given up on the placer's next pass, at once.
                self.poke_placer();
            }
        }
    }

    /// Makes this node host the actors placement gives it, and reach the
    /// others through their owners.
    pub fn place_with(
        self: &Arc<Self>,
        placer: Arc<Placer>,
        peers: Arc<crate::peer::Peers>,
        calls: Arc<CallStore>,
        standing: Arc<StandingStore>,
    ) {
        self.directory.set_peers(peers);
        self.forwarder.follow_members(placer.members.clone());
        let _ = self.starter.calls.set(calls);
        let _ = self.standing.set(standing);
        if self.placer.set(placer.clone()).is_ok() {
            tokio::spawn(placer.run(Arc::downgrade(self)));
        }
    }

    /// Where a queue's requests are served.
    pub fn place_of_queue(&self, tenant: &Arc<str>, queue_id: &Arc<str>) -> Result<Place> {
        let Some(placer) = self.placer.get() else { return Ok(Place::Here) };
        match placer.owner_of(ActorKind::Queue, tenant, queue_id)? {
            Some(place) => Ok(place),
            // Claimed a moment ago, and this node has not heard yet: the
            // member placement chooses is the one claiming it.
            None if self.catalog.queue(tenant, queue_id).is_some() => placer.placed(ActorKind::Queue, tenant, queue_id),
            None => Err(NodeError::not_found("queue", queue_id.as_ref())),
        }
    }

    /// Where an informant's requests (its login included) are served: where
    /// it is logged in, or where placement puts it. A claim this node has
    /// not heard of yet (it was made a moment ago through another member)
    /// is where placement put it, so the request still reaches the owner,
    /// which answers NOT_FOUND when the informant is not logged in.
    pub fn place_of_informant(&self, tenant: &Arc<str>, informant_id: &Arc<str>) -> Result<Place> {
        let Some(placer) = self.placer.get() else { return Ok(Place::Here) };
        match placer.owner_of(ActorKind::Informant, tenant, informant_id)? {
            Some(place) => Ok(place),
            None => placer.placed(ActorKind::Informant, tenant, informant_id),
        }
    }

    /// The member a call was last seen on by this node, when this node
    /// knows the call: `None` when it does not.
    pub fn known_place_of_call(&self, tenant: &Arc<str>, call_id: &Arc<str>) -> Result<Option<Place>> {
        match self.directory.call(tenant, call_id) {
            Some(CallLocation::Live(queue_id)) => self.place_of_queue(tenant, &queue_id).map(Some),
            Some(CallLocation::Ended(_)) => Ok(Some(Place::Here)),
            None if self.placer.get().is_none() => Ok(Some(Place::Here)),
            None => Ok(None),
        }
    }

    /// The live members other than this node.
    pub fn peers(&self) -> Vec<PeerAddr> {
        self.placer.get().map(|p| p.others()).unwrap_or_default()
    }

    /// Starts hosting a queue this node holds the claim for at `epoch`.
    /// It does not wait for configuration changes (they may wait on other
    /// members): a queue deleted meanwhile is left to the placer's next
    /// pass, which stops an actor whose queue is gone.
    pub(crate) async fn host_queue(&self, tenant: &Arc<str>, id: &Arc<str>, epoch: Epoch) {
        // Its configuration as of now, not as of the claim.
        let Some(entry) = self.catalog.queue(tenant, id) else { return };
        if let Some(old) = self.directory.unregister_queue(tenant, id) {
            old.stop(Some("hosted again under a new claim".into()));
        }
        let (id, config) = (id.clone(), entry.parsed);
        match self.starter.start(tenant.clone(), config, self.supervisor.get_cell(), Some(epoch)).await {
            Ok(_) => self.starter.refresh_informants(tenant, Some(&id)),
            Err(e) => {
                self.directory.clear_epoch(ActorKind::Queue, tenant, &id);
                tracing::error!(tenant = %tenant, queue_id = %id, error = %e, "could not host a claimed queue");
            }
        }
    }

    /// Has placement look at every actor now (in a cluster).
    pub fn poke_placer(&self) {
        if let Some(placer) = self.placer.get() {
            placer.poke.notify_one();
        }
    }

    /// Stops hosting a queue this draining member gives up: new requests
    /// for it are refused (`UNAVAILABLE`, their clients retry) while the
    /// actor says what it held once its last writes are in etcd, then
    /// stops. Its claim is released after, by the caller.
    pub(crate) async fn hand_over_queue(&self, tenant: &Arc<str>, queue_id: &Arc<str>) {
        if let Some(actor) = self.directory.unregister_queue(tenant, queue_id) {
            let written = ask(&actor, |reply| QueueMsg::HandOver { reply }).await;
            if let Err(e) = &written {
                tracing::warn!(tenant = %tenant, queue_id = %queue_id, error = %e, "queue did not finish writing before its hand-over");
            }
            let _ = actor.stop_and_wait(Some("handed over".into()), Some(ASK_TIMEOUT)).await;
        }
        self.directory.clear_epoch(ActorKind::Queue, tenant, queue_id);
        self.directory.forget_queue_calls(tenant, queue_id);
    }

    /// Stops hosting a queue whose claim this node lost.
    pub(crate) fn unhost_queue(&self, tenant: &Arc<str>, queue_id: &Arc<str>, why: &str) {
        self.directory.clear_epoch(ActorKind::Queue, tenant, queue_id);
        if let Some(actor) = self.directory.unregister_queue(tenant, queue_id) {
            tracing::warn!(tenant = %tenant, queue_id = %queue_id, why, "queue no longer hosted here");
            actor.stop(Some(why.to_string()));
        }
        self.directory.forget_queue_calls(tenant, queue_id);
    }

    /// Stops hosting an informant whose claim this node lost.
    pub(crate) fn unhost_informant(&self, tenant: &Arc<str>, informant_id: &Arc<str>) {
        self.directory.clear_epoch(ActorKind::Informant, tenant, informant_id);
        if let Some(actor) = self.directory.informant(tenant, informant_id) {
            tracing::warn!(tenant = %tenant, informant_id = %informant_id, "informant's claim lost: its actor stops");
            actor.stop(Some("claim lost".into()));
        }
    }

    /// A queue started afresh on its owner: this node's informants join it
    /// again.
    pub(crate) fn rejoin_queue(&self, tenant: &Arc<str>, queue_id: &Arc<str>) {
        self.starter.refresh_informants(tenant, Some(queue_id));
    }

    /// Makes this node mirror the configuration kept in etcd: loads it now,
    /// then follows it in the background.
    pub async fn mirror(self: &Arc<Self>, store: Arc<CatalogStore>) -> Result<()> {
        store
            .load(self)
            .await
            .map_err(|e| NodeError::Unavailable(format!("reading the configuration from etcd failed: {e}")))?;
        let _ = self.store.set(store.clone());
        tokio::spawn(store.follow(Arc::downgrade(self)));
        Ok(())
    }

    /// Carries out `changes`, already validated under `guard`: here alone,
    /// or, in a cluster, through etcd (then every node applies them). In a
    /// cluster the commit is guarded by the tenant's configuration version
    /// read under `guard`, so that it fails if anything changed since the
    /// validation.
    async fn commit(
        self: &Arc<Self>,
        tenant: &Arc<str>,
        changes: Vec<Change>,
        guard: tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<()> {
        if let Some(store) = self.store.get() {
            let version = store.version(tenant);
            drop(guard);
            let queues: Vec<Arc<str>> = changes
                .iter()
                .filter_map(|c| if let Change::PutQueue(q) = c { Some(q.id.as_str().into()) } else { None })
                .collect();
            store.commit(tenant, version, changes).await?;
            self.until_hosted(tenant, &queues).await;
            return Ok(());
        }
        let mut errors = self.apply_locked(tenant, changes, false).await;
        self.starter.refresh_informants(tenant, None);
        if errors.is_empty() { Ok(()) } else { Err(errors.swap_remove(0)) }
    }

    /// Applies changes to this node's catalogue and actors, deletions
    /// first, carrying on past a change that fails; returns the failures.
    /// `lenient` (changes coming from etcd): a deletion of a queue that
    /// still holds live calls here waits for them instead of failing.
    async fn apply_locked(
        self: &Arc<Self>,
        tenant: &Arc<str>,
        mut changes: Vec<Change>,
        lenient: bool,
    ) -> Vec<NodeError> {
        changes.sort_by_key(|c| !matches!(c, Change::DeleteQueue(_) | Change::DeleteProfile(_)));
        let mut errors = Vec::new();
        for change in changes {
            if let Err(e) = self.apply_one_locked(tenant, change, lenient).await {
                errors.push(e);
            }
        }
        errors
    }

    async fn apply_one_locked(self: &Arc<Self>, tenant: &Arc<str>, change: Change, lenient: bool) -> Result<()> {
        match change {
            Change::PutQueue(wire) => {
                let parsed = validate::queue_config(&wire)?;
                let entry = QueueEntry { parsed, wire };
                match self.catalog.queue(tenant, &entry.parsed.id) {
                    None => self.create_queue_locked(tenant, entry).await,
                    Some(existing) if existing.wire != entry.wire => self.update_queue_locked(tenant, entry).await,
                    Some(_) => Ok(()),
                }
            }
            Change::DeleteQueue(id) => {
                let id: Arc<str> = id.into();
                if self.catalog.queue(tenant, &id).is_none() {
                    return Ok(());
                }
                match self.delete_queue_locked(tenant, &id).await {
                    Err(NodeError::FailedPrecondition(_)) if lenient => {
                        self.retire_later(tenant, &id);
                        Ok(())
                    }
                    other => other,
                }
            }
            Change::PutProfile(profile) => {
                self.catalog.put_profile(tenant, profile);
                Ok(())
            }
            Change::DeleteProfile(id) => {
                self.catalog.remove_profile(tenant, &id);
                Ok(())
            }
        }
    }

    /// Holds the lock that serializes configuration changes on this node.
    pub(crate) async fn lock_config(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.admin.lock().await
    }

    /// Applies changes read from etcd; the caller holds [`Node::lock_config`].
    /// Returns how many failed.
    pub(crate) async fn apply_mirrored(self: &Arc<Self>, tenant: &str, changes: Vec<Change>) -> usize {
        let Some(tenant) = self.config.tenants.iter().find(|t| t.as_str() == tenant).map(|t| Arc::from(t.as_str()))
        else {
            return 0;
        };
        let errors = self.apply_locked(&tenant, changes, true).await;
        for e in &errors {
            tracing::error!(tenant = %tenant, error = %e, "could not apply a configuration change from etcd");
        }
        if let Some(placer) = self.placer.get() {
            placer.poke.notify_one();
        }
        self.starter.refresh_informants(&tenant, None);
        errors.len()
    }

    /// Makes the tenant's catalogue equal to `desired` (the whole of what
    /// etcd holds for it); the caller holds [`Node::lock_config`]. Returns
    /// how many changes failed.
    pub(crate) async fn reconcile_mirrored(self: &Arc<Self>, tenant: &str, desired: Vec<Change>) -> usize {
        let mut changes = desired;
        let queues: HashSet<String> = changes
            .iter()
            .filter_map(|c| if let Change::PutQueue(q) = c { Some(q.id.clone()) } else { None })
            .collect();
        let profiles: HashSet<String> = changes
            .iter()
            .filter_map(|c| if let Change::PutProfile(p) = c { Some(p.id.clone()) } else { None })
            .collect();
        for q in self.catalog.queues(tenant) {
            if !queues.contains(q.parsed.id.as_ref()) {
                changes.push(Change::DeleteQueue(q.parsed.id.to_string()));
            }
        }
        for p in self.catalog.profiles(tenant) {
            if !profiles.contains(&p.id) {
                changes.push(Change::DeleteProfile(p.id));
            }
        }
        self.apply_mirrored(tenant, changes).await
    }

    /// Deletes a queue once its live calls here have ended, unless it is
    /// created again meanwhile or the node stops.
    fn retire_later(self: &Arc<Self>, tenant: &Arc<str>, queue_id: &Arc<str>) {
        let key = (tenant.clone(), queue_id.clone());
        if !self.retiring.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key.clone()) {
            return;
        }
        tracing::info!(tenant = %tenant, queue_id = %queue_id, "queue deleted: it finishes its live calls here first");
        let node = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RETIRE_CHECK).await;
                let Some(node) = node.upgrade() else { return };
                let guard = node.admin.lock().await;
                let (tenant, queue_id) = &key;
                let recreated =
                    node.store.get().is_some_and(|s| s.holds(tenant, &Change::DeleteQueue(queue_id.to_string())));
                let done = recreated
                    || node.catalog.queue(tenant, queue_id).is_none()
                    || !matches!(
                        node.delete_queue_locked(tenant, queue_id).await,
                        Err(NodeError::FailedPrecondition(_) | NodeError::Unavailable(_))
                    );
                drop(guard);
                if done {
                    node.retiring.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&key);
                    node.starter.refresh_informants(tenant, None);
                    return;
                }
            }
        });
    }

    /// Stops every actor. Their session and watcher channels close with
    /// them, which ends the open streams so the server can finish.
    pub fn stop(&self) {
        self.forwarder.stop();
        self.supervisor.stop_children(Some("node stopping".into()));
        self.supervisor.stop(Some("node stopping".into()));
    }

    /// A permit for one more open event stream, held as long as the stream.
    pub fn stream_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        self.streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| NodeError::ResourceExhausted(format!("at most {} open streams", self.config.max_streams)))
    }

    pub fn queue_actor(&self, tenant: &Arc<str>, queue_id: &Arc<str>) -> Result<ActorRef<QueueMsg>> {
        self.directory.queue(tenant, queue_id).ok_or_else(|| {
            if self.config.clustered() && self.catalog.queue(tenant, queue_id).is_some() {
                NodeError::Unavailable(format!(
                    "queue {queue_id:?} is not hosted here at the moment (being placed, or its member failed); retry"
                ))
            } else {
                NodeError::not_found("queue", queue_id.as_ref())
            }
        })
    }

    pub fn informant_actor(&self, tenant: &Arc<str>, informant_id: &Arc<str>) -> Result<ActorRef<InformantMsg>> {
        self.directory
            .informant(tenant, informant_id)
            .ok_or_else(|| NodeError::not_found("logged-in informant", informant_id.as_ref()))
    }

    async fn create_queue_locked(&self, tenant: &Arc<str>, entry: QueueEntry) -> Result<()> {
        if self.catalog.queue_count(tenant) >= self.config.max_queues_per_tenant {
            return Err(NodeError::ResourceExhausted(format!(
                "at most {} queues per tenant",
                self.config.max_queues_per_tenant
            )));
        }
        self.catalog.put_queue(tenant, entry.clone());
        if self.config.clustered() {
            // The member placement chooses claims and hosts it.
            self.poke_placer();
            return Ok(());
        }
        if let Err(e) = self.starter.start(tenant.clone(), entry.parsed.clone(), self.supervisor.get_cell(), None).await
        {
            self.catalog.remove_queue(tenant, &entry.parsed.id);
            return Err(e);
        }
        Ok(())
    }

    async fn update_queue_locked(&self, tenant: &Arc<str>, entry: QueueEntry) -> Result<()> {
        // In a cluster, only the member hosting the queue has an actor.
        match self.queue_actor(tenant, &entry.parsed.id) {
            Ok(actor) => actor
                .cast(QueueMsg::Reconfigure(entry.parsed.clone()))
                .map_err(|_| NodeError::Unavailable("queue actor stopped; retry".into()))?,
            Err(e) if !self.config.clustered() => return Err(e),
            Err(_) => {}
        }
        self.catalog.put_queue(tenant, entry);
        Ok(())
    }

    /// The live calls this node's actor of a queue holds; none when there
    /// is no actor here (a failed queue not started again, or a queue
    /// another member hosts).
    async fn live_calls_held(&self, tenant: &Arc<str>, queue_id: &Arc<str>) -> Result<usize> {
        match self.directory.queue(tenant, queue_id) {
            Some(actor) => ask(&actor, |reply| QueueMsg::LiveCalls { reply }).await,
            None => Ok(0),
        }
    }

    /// The live calls a queue holds wherever it is hosted. While no member
    /// hosts it (it is being placed) the answer is `UNAVAILABLE`: unknown
    /// is not zero.
    async fn live_calls_anywhere(&self, tenant: &Arc<str>, queue_id: &Arc<str>) -> Result<usize> {
        if self.directory.queue(tenant, queue_id).is_some() || self.placer.get().is_none() {
            return self.live_calls_held(tenant, queue_id).await;
        }
        match self.place_of_queue(tenant, queue_id)? {
            Place::There(peer) => match self.forwarder.queue_load(&peer, tenant, queue_id).await? {
                Some(live) => Ok(live),
                None => Err(NodeError::Unavailable(format!("queue {queue_id:?} is being placed; retry"))),
            },
            Place::Here => Err(NodeError::Unavailable(format!("queue {queue_id:?} is being placed; retry"))),
        }
    }

    /// In a cluster, waits (a few seconds at most) until each of these
    /// queues has a member hosting it, so that a queue just created takes
    /// calls as soon as its creation is answered.
    async fn until_hosted(&self, tenant: &Arc<str>, queue_ids: &[Arc<str>]) {
        let Some(placer) = self.placer.get() else { return };
        let deadline = tokio::time::Instant::now() + HOSTING_WAIT;
        for id in queue_ids {
            while matches!(placer.owner_of(ActorKind::Queue, tenant, id), Ok(None))
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    async fn delete_queue_locked(&self, tenant: &Arc<str>, queue_id: &Arc<str>) -> Result<()> {
        let live = self.live_calls_held(tenant, queue_id).await?;
        if live > 0 {
            return Err(NodeError::precondition(format!("queue {queue_id:?} holds {live} live calls")));
        }
        if let Some(actor) = self.directory.unregister_queue(tenant, queue_id) {
            actor.stop(Some("queue deleted".into()));
        }
        self.directory.clear_epoch(ActorKind::Queue, tenant, queue_id);
        self.catalog.remove_queue(tenant, queue_id);
        Ok(())
    }

    pub async fn create_queue(self: &Arc<Self>, tenant: &Arc<str>, wire: pb::QueueConfig) -> Result<pb::QueueConfig> {
        let parsed = validate::queue_config(&wire)?;
        let guard = self.admin.lock().await;
        if self.catalog.queue(tenant, &parsed.id).is_some() {
            return Err(NodeError::exists("queue", parsed.id.as_ref()));
        }
        if self.catalog.queue_count(tenant) >= self.config.max_queues_per_tenant {
            return Err(NodeError::ResourceExhausted(format!(
                "at most {} queues per tenant",
                self.config.max_queues_per_tenant
            )));
        }
        self.check_overflow_target(tenant, &parsed, &[])?;
        self.commit(tenant, vec![Change::PutQueue(wire.clone())], guard).await?;
        Ok(wire)
    }

    pub async fn update_queue(self: &Arc<Self>, tenant: &Arc<str>, wire: pb::QueueConfig) -> Result<pb::QueueConfig> {
        let parsed = validate::queue_config(&wire)?;
        let guard = self.admin.lock().await;
        if self.catalog.queue(tenant, &parsed.id).is_none() {
            return Err(NodeError::not_found("queue", parsed.id.as_ref()));
        }
        self.check_overflow_target(tenant, &parsed, &[])?;
        self.commit(tenant, vec![Change::PutQueue(wire.clone())], guard).await?;
        Ok(wire)
    }

    pub async fn delete_queue(self: &Arc<Self>, tenant: &Arc<str>, queue_id: &Arc<str>) -> Result<()> {
        let guard = self.admin.lock().await;
        if self.catalog.queue(tenant, queue_id).is_none() {
            return Err(NodeError::not_found("queue", queue_id.as_ref()));
        }
        if let Some(other) = self
            .catalog
            .queues(tenant)
            .iter()
            .find(|q| q.parsed.overflow.as_ref().is_some_and(|o| &o.queue_id == queue_id))
        {
            return Err(NodeError::precondition(format!("queue {:?} overflows to it", other.parsed.id)));
        }
        let live = self.live_calls_anywhere(tenant, queue_id).await?;
        if live > 0 {
            return Err(NodeError::precondition(format!("queue {queue_id:?} holds {live} live calls")));
        }
        self.commit(tenant, vec![Change::DeleteQueue(queue_id.to_string())], guard).await
    }

    /// An overflow must name a queue of the tenant (existing, or in `plan`).
    fn check_overflow_target(
        &self,
        tenant: &Arc<str>,
        parsed: &relais_routing::QueueConfig,
        plan: &[Arc<str>],
    ) -> Result<()> {
        if let Some(o) = &parsed.overflow
            && self.catalog.queue(tenant, &o.queue_id).is_none()
            && !plan.contains(&o.queue_id)
        {
            return Err(NodeError::invalid("overflow.queue_id", format!("no queue {:?}", o.queue_id)));
        }
        Ok(())
    }

    pub async fn put_profile(
        self: &Arc<Self>,
        tenant: &Arc<str>,
        profile: pb::InformantProfile,
        create: bool,
    ) -> Result<pb::InformantProfile> {
        let profile = validate::informant_profile(&profile)?;
        let guard = self.admin.lock().await;
        let exists = self.catalog.profile(tenant, &profile.id).is_some();
        match (create, exists) {
            (true, true) => return Err(NodeError::exists("informant", profile.id)),
            (false, false) => return Err(NodeError::not_found("informant", profile.id)),
            _ => {}
        }
        if create && self.catalog.profiles(tenant).len() >= self.config.max_informants_per_tenant {
            return Err(NodeError::ResourceExhausted("too many informant profiles".into()));
        }
        self.commit(tenant, vec![Change::PutProfile(profile.clone())], guard).await?;
        Ok(profile)
    }

    pub async fn delete_profile(self: &Arc<Self>, tenant: &Arc<str>, id: &str) -> Result<()> {
        let guard = self.admin.lock().await;
        if self.catalog.profile(tenant, id).is_none() {
            return Err(NodeError::not_found("informant", id));
        }
        self.commit(tenant, vec![Change::DeleteProfile(id.to_string())], guard).await
    }

    /// Makes the tenant's configuration equal to `plan`, all or nothing as
    /// far as validation goes.
    pub async fn apply_plan(
        self: &Arc<Self>,
        tenant: &Arc<str>,
        plan: pb::RoutingPlan,
    ) -> Result<pb::ApplyPlanResponse> {
        if plan.queues.len() > validate::MAX_PLAN_QUEUES.min(self.config.max_queues_per_tenant) {
            return Err(NodeError::invalid("queues", "too many queues"));
        }
        if plan.informants.len() > validate::MAX_PLAN_INFORMANTS {
            return Err(NodeError::invalid("informants", format!("at most {}", validate::MAX_PLAN_INFORMANTS)));
        }
        let mut queues = Vec::with_capacity(plan.queues.len());
        for (i, wire) in plan.queues.iter().enumerate() {
            let parsed = validate::queue_config(wire).map_err(|e| prefix(e, &format!("queues[{i}].")))?;
            queues.push(QueueEntry { parsed, wire: wire.clone() });
        }
        let names: Vec<Arc<str>> = queues.iter().map(|q| q.parsed.id.clone()).collect();
        if names.iter().collect::<HashSet<_>>().len() != names.len() {
            return Err(NodeError::invalid("queues", "a queue id is named twice"));
        }
        let mut profiles = Vec::with_capacity(plan.informants.len());
        for (i, p) in plan.informants.iter().enumerate() {
            profiles.push(validate::informant_profile(p).map_err(|e| prefix(e, &format!("informants[{i}].")))?);
        }
        if profiles.iter().map(|p| p.id.as_str()).collect::<HashSet<_>>().len() != profiles.len() {
            return Err(NodeError::invalid("informants", "an informant id is named twice"));
        }
        let guard = self.admin.lock().await;
        for (i, q) in queues.iter().enumerate() {
            let kept: Vec<Arc<str>> = if plan.prune {
                Vec::new()
            } else {
                self.catalog.queues(tenant).into_iter().map(|q| q.parsed.id).collect()
            };
            if let Some(o) = &q.parsed.overflow
                && !names.contains(&o.queue_id)
                && !kept.contains(&o.queue_id)
            {
                return Err(NodeError::invalid(
                    format!("queues[{i}].overflow.queue_id"),
                    format!("no queue {:?}", o.queue_id),
                ));
            }
        }
        let to_delete: Vec<Arc<str>> = if plan.prune {
            self.catalog.queues(tenant).into_iter().map(|q| q.parsed.id).filter(|id| !names.contains(id)).collect()
        } else {
            Vec::new()
        };
        for id in &to_delete {
            let live = self.live_calls_anywhere(tenant, id).await?;
            if live > 0 {
                return Err(NodeError::precondition(format!(
                    "queue {id:?} holds {live} live calls; it cannot be pruned"
                )));
            }
        }
        let kept = self.catalog.queues(tenant).iter().filter(|q| !to_delete.contains(&q.parsed.id)).count();
        let added = queues.iter().filter(|q| self.catalog.queue(tenant, &q.parsed.id).is_none()).count();
        if kept + added > self.config.max_queues_per_tenant {
            return Err(NodeError::ResourceExhausted(format!(
                "the plan would leave {} queues; at most {} per tenant",
                kept + added,
                self.config.max_queues_per_tenant
            )));
        }
        let mut out = pb::ApplyPlanResponse::default();
        let mut changes = Vec::new();
        for entry in queues {
            match self.catalog.queue(tenant, &entry.parsed.id) {
                None => out.created += 1,
                Some(existing) if existing.wire != entry.wire => out.updated += 1,
                Some(_) => {
                    out.unchanged += 1;
                    continue;
                }
            }
            changes.push(Change::PutQueue(entry.wire));
        }
        for id in &to_delete {
            changes.push(Change::DeleteQueue(id.to_string()));
            out.deleted += 1;
        }
        let planned: HashSet<String> = profiles.iter().map(|p| p.id.clone()).collect();
        for profile in profiles {
            match self.catalog.profile(tenant, &profile.id) {
                None => out.created += 1,
                Some(existing) if existing != profile => out.updated += 1,
                Some(_) => {
                    out.unchanged += 1;
                    continue;
                }
            }
            changes.push(Change::PutProfile(profile));
        }
        if plan.prune {
            for existing in self.catalog.profiles(tenant) {
                if !planned.contains(&existing.id) {
                    changes.push(Change::DeleteProfile(existing.id));
                    out.deleted += 1;
                }
            }
        }
        self.commit(tenant, changes, guard).await?;
        Ok(out)
    }

    /// Logs an informant in: one actor per logged-in informant.
    pub async fn login(&self, tenant: &Arc<str>, informant_id: Arc<str>, skills: &[pb::Skill]) -> Result<StatusReply> {
        // A draining member takes no login, even in a cluster: placement
        // sends new ones elsewhere, and one that still finds its claim here
        // (being given up) is asked to retry.
        if self.is_draining() {
            return Err(draining_error());
        }
        let skills = match self.catalog.profile(tenant, &informant_id) {
            Some(profile) => {
                if !skills.is_empty() {
                    return Err(NodeError::invalid("skills", "set by the informant's stored profile; send none"));
                }
                validate::skill_set("profile.skills", &profile.skills)?
            }
            None => validate::skill_set("skills", skills)?,
        };
        if self.directory.informant_count(tenant) >= self.config.max_informants_per_tenant {
            return Err(NodeError::ResourceExhausted("too many informants logged in".into()));
        }
        if !self.directory.reserve_informant(tenant, &informant_id) {
            return Err(NodeError::exists("logged-in informant", informant_id.as_ref()));
        }
        if let Some(placer) = self.placer.get() {
            match placer.claim(ActorKind::Informant, tenant, &informant_id).await {
                Ok(Claim::Mine(epoch)) => self.directory.set_epoch(ActorKind::Informant, tenant, &informant_id, epoch),
                Ok(Claim::Theirs { owner, .. }) => {
                    self.directory.unregister_informant(tenant, &informant_id);
                    if placer.peer(&owner).is_none() {
                        // Its member is gone; the claim goes with its lease.
                        return Err(NodeError::Unavailable(format!(
                            "{informant_id} was logged in on member {owner}, which left; retry in a moment"
                        )));
                    }
                    if placer.is_draining(&owner) {
                        // Its member logs it out and gives the claim up.
                        return Err(NodeError::Unavailable(format!(
                            "{informant_id} was logged in on member {owner}, which is draining; retry in a moment"
                        )));
                    }
                    return Err(NodeError::exists(
                        "logged-in informant",
                        format!("{informant_id} (on member {owner})"),
                    ));
                }
                Err(e) => {
                    self.directory.unregister_informant(tenant, &informant_id);
                    return Err(e);
                }
            }
        }
        let queues = queues_for(&self.catalog.queues(tenant), &skills);
        let on_call = match self.ongoing_call(tenant, &informant_id).await {
            Ok(call) => call,
            Err(e) => {
                self.directory.unregister_informant(tenant, &informant_id);
                return Err(e);
            }
        };
        let (durability, standing) = match self.standing_of(tenant, &informant_id, on_call.is_some()).await {
            Ok(found) => found,
            Err(e) => {
                self.directory.unregister_informant(tenant, &informant_id);
                return Err(e);
            }
        };
        let args = InformantArgs {
            tenant: tenant.clone(),
            informant_id: informant_id.clone(),
            skills,
            queues,
            directory: self.directory.clone(),
            on_call,
            durability,
            standing,
        };
        let actor = match Actor::spawn_linked(None, InformantActor, args, self.supervisor.get_cell()).await {
            Ok((actor, _)) => actor,
            Err(e) => {
                self.directory.unregister_informant(tenant, &informant_id);
                return Err(NodeError::Internal(format!("spawn informant actor: {e}")));
            }
        };
        // Linked, not recorded: the supervisor finds a failed informant in
        // the directory by its actor id.
        ask(&actor, |reply| InformantMsg::Get { reply }).await
    }

    /// In a cluster, where the informant's standing is kept (under the
    /// claim this login holds) and the standing its earlier login left,
    /// which it starts from unless it is on a call.
    async fn standing_of(
        &self,
        tenant: &Arc<str>,
        informant_id: &Arc<str>,
        on_call: bool,
    ) -> Result<(Option<(Arc<StandingStore>, Epoch)>, Standing)> {
        let (Some(store), Some(epoch)) =
            (self.standing.get(), self.directory.epoch(ActorKind::Informant, tenant, informant_id))
        else {
            return Ok((None, Standing::Free));
        };
        let standing = store.read(tenant, informant_id).await?;
        if standing != Standing::Free {
            tracing::info!(tenant = %tenant, informant_id = %informant_id, ?standing, on_call, "informant logs in where it was");
        }
        let standing = if on_call { Standing::Free } else { standing };
        Ok((Some((store.clone(), epoch)), standing))
    }

    /// In a cluster, the call a queue still holds as connected to this
    /// informant: its previous session ended with its member while it
    /// talked, and it logs in on that call again.
    async fn ongoing_call(&self, tenant: &Arc<str>, informant_id: &str) -> Result<Option<OngoingCall>> {
        let Some(store) = self.starter.calls.get() else { return Ok(None) };
        let Some((call_id, queue_id, since_ms)) = store.connected_to(tenant, informant_id).await? else {
            return Ok(None);
        };
        let wrap_up_ms = self.catalog.queue(tenant, &queue_id).map_or(0, |q| q.parsed.wrap_up_ms);
        tracing::info!(tenant = %tenant, informant_id, call_id = %call_id, "informant logs in on its ongoing call");
        Ok(Some(OngoingCall { call_id, queue_id, since_ms, wrap_up_ms }))
    }
}

/// A new call on its way to its queue (see [`Node::admit_offer`]).
pub struct OfferPermit(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for OfferPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// What new work gets on a draining node.
pub fn draining_error() -> NodeError {
    NodeError::Unavailable("this node is draining before a restart; use another member".into())
}

fn prefix(err: NodeError, with: &str) -> NodeError {
    match err {
        NodeError::InvalidArgument { field, reason } => {
            NodeError::InvalidArgument { field: format!("{with}{field}"), reason }
        }
        other => other,
    }
}

/// Remembers a call that ended, from its last record: its state and
/// informant are its log's.
fn remember_ended(directory: &Directory, tenant: &Arc<str>, last: DurableCall) {
    use relais_routing::call::CallEventKind;
    use relais_routing::queue::CallState;
    let events = last.call.events.after(0);
    let informant_id = events.iter().rev().find_map(|e| match &e.kind {
        CallEventKind::Connected { informant_id, .. } => Some(informant_id.clone()),
        _ => None,
    });
    let (state, deflect_reason) = match events.last().map(|e| &e.kind) {
        Some(CallEventKind::Completed) => (CallState::Completed, None),
        Some(CallEventKind::Deflected { reason }) => (CallState::Deflected, Some(reason.clone())),
        _ => (CallState::Abandoned, None),
    };
    let snapshot = CallSnapshot {
        info: last.call.info,
        queue_id: last.queue_id,
        state,
        informant_id,
        last_sequence: last.call.events.last_sequence(),
        position: 0,
        deflect_reason,
    };
    directory.end_call(tenant, snapshot, last.call.events);
}
