//! The queue actor: hosts one [`QueueCore`], its calls' watchers, and its
//! housekeeping tick.
//!
//! In a cluster the actor is **durable**: it writes every call it changed
//! to etcd (see [`CallStore`]) before anyone hears of the change. What a
//! message makes the actor say — replies, call events to watchers,
//! proposals and ends to informants, calls handed to other queues — is
//! held, in order, until the batch of writes that covers it is in etcd;
//! changes made meanwhile gather into the next batch, one write at a time.
//! A failed write fails the actor: it starts again from etcd, and what it
//! held is never said. On a single node, nothing is held.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use relais_routing::call::{CallEvent, CallInfo};
use relais_routing::pool::PoolEntry;
use relais_routing::queue::{CallSnapshot, DurableCall, MovedCall, QueueCore, QueueEffect, QueueError, QueueFigures};
use relais_routing::{QueueConfig, SkillSet};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::actors::informant::InformantMsg;
use crate::clock::now_ms;
use crate::cluster::calls::{CallStore, CallWrite};
use crate::cluster::ownership::Epoch;
use crate::directory::{Addr, Directory};
use crate::error::NodeError;
use crate::metrics::{Metrics, Outcome, QUEUE_SNAPSHOT_PERIOD_MS, Trigger};
use crate::telemetry::Trace;

/// A gateway's stream of one call's events.
pub type Watcher = mpsc::Sender<CallEvent>;

/// Most watchers of one call at once.
pub const MAX_WATCHERS_PER_CALL: usize = 4;
/// Events buffered per watcher before a slow watcher is dropped (it
/// reconnects with its last sequence and loses nothing). Room for a whole
/// call's log, so a replay always fits.
pub const WATCHER_BUFFER: usize = relais_routing::EventLog::MAX_EVENTS + 16;
/// How long an informant of the queue may be nowhere (no actor here, no
/// claim on another member) before the queue counts it as logged out: its
/// member died and its desktop has not logged in again. Longer than a
/// claim takes to reach every member's mirror.
const GONE_AFTER_MS: u64 = 1_000;
/// Most live calls of one queue whose trace it keeps; calls beyond are
/// routed untraced.
const MAX_TRACED_CALLS: usize = 100_000;

pub enum QueueMsg {
    Offer {
        info: CallInfo,
        reply: RpcReplyPort<Result<CallSnapshot, QueueError>>,
        /// The gateway request's trace, which the call's routing continues.
        trace: Trace,
    },
    Adopt {
        call: Box<MovedCall>,
        watchers: Vec<Watcher>,
    },
    GetCall {
        call_id: Arc<str>,
        reply: RpcReplyPort<Option<CallSnapshot>>,
    },
    HangUp {
        call_id: Arc<str>,
        reply: RpcReplyPort<Result<CallSnapshot, QueueError>>,
    },
    MarkVulnerable {
        call_id: Arc<str>,
        reply: RpcReplyPort<Result<CallSnapshot, QueueError>>,
    },
    Transfer {
        call_id: Arc<str>,
        to_queue_id: Arc<str>,
        reply: RpcReplyPort<Result<CallSnapshot, NodeError>>,
    },
    /// Sends the call's events after `after` to `sink`, then live ones.
    Watch {
        call_id: Arc<str>,
        after: u64,
        sink: Watcher,
        reply: RpcReplyPort<Result<(), NodeError>>,
    },
    Join {
        informant_id: Arc<str>,
        skills: SkillSet,
        /// A new login (see `QueueCore::join`).
        login: bool,
    },
    Leave {
        informant_id: Arc<str>,
        /// It logged out (rather than left this queue to join it again).
        logged_out: bool,
    },
    Announce(PoolEntry),
    Unavailable {
        informant_id: Arc<str>,
    },
    Answer {
        informant_id: Arc<str>,
        call_id: Arc<str>,
        offer_id: Arc<str>,
        accepted: bool,
    },
    OfferEnded {
        informant_id: Arc<str>,
        call_id: Arc<str>,
        offer_id: Arc<str>,
        declined: bool,
    },
    /// The informant finished the call. Answered once the call's end is
    /// durable; refused when the call is not connected to that informant.
    Complete {
        informant_id: Arc<str>,
        call_id: Arc<str>,
        reply: RpcReplyPort<Result<(), QueueError>>,
    },
    Connect {
        informant_id: Arc<str>,
        call_id: Arc<str>,
        offer_id: Arc<str>,
        reply: RpcReplyPort<Result<(), QueueError>>,
    },
    Reconfigure(QueueConfig),
    Figures {
        reply: RpcReplyPort<QueueFigures>,
    },
    LiveCalls {
        reply: RpcReplyPort<usize>,
    },
    Tick,
    /// The batch of writes in flight is in etcd, or could not be written.
    Written(Result<(), NodeError>),
    /// Answered once everything before it is written (the queue is handed
    /// to another member).
    HandOver {
        reply: RpcReplyPort<()>,
    },
}

pub struct QueueArgs {
    pub tenant: Arc<str>,
    pub config: QueueConfig,
    pub listening_skill: Arc<str>,
    pub directory: Arc<Directory>,
    pub tick_ms: u64,
    /// Where its calls are kept, in a cluster.
    pub durability: Option<Durability>,
    /// The live calls its previous owner kept there, to take over.
    pub restored: Vec<DurableCall>,
}

/// A durable queue's store and its claim's epoch.
#[derive(Clone)]
pub struct Durability {
    pub store: Arc<CallStore>,
    pub epoch: Epoch,
}

/// Something the actor says once the writes before it are in etcd.
type Held = Box<dyn FnOnce(&mut QueueState) + Send>;

/// A durable queue's writes and what waits for them.
struct Journal {
    durability: Durability,
    /// Calls changed since the last batch.
    dirty: HashSet<Arc<str>>,
    /// Of those, the ones that ended, as their last record (kept a while,
    /// see [`CallWrite::End`])...
    ended: HashMap<Arc<str>, DurableCall>,
    /// ...and the ones that left for another queue (their record names it).
    leaving: HashMap<Arc<str>, DurableCall>,
    /// Waiting for the next batch.
    held: Vec<Held>,
    /// Waiting for the batch in flight, if one is.
    writing: Option<Vec<Held>>,
    /// Per live call, the last event its watchers were sent: events wait
    /// for their write, and a watcher joining meanwhile is replayed no
    /// further; the rest comes as live events. (A single node tells each
    /// event in the step that records it, so needs no such record.)
    published: HashMap<Arc<str>, u64>,
}

pub struct QueueState {
    tenant: Arc<str>,
    core: QueueCore,
    directory: Arc<Directory>,
    watchers: HashMap<Arc<str>, Vec<Watcher>>,
    ticker: JoinHandle<()>,
    /// To take back a call another member's queue did not adopt.
    myself: ActorRef<QueueMsg>,
    journal: Option<Journal>,
    /// Informants of the queue found nowhere, since when.
    missing: HashMap<Arc<str>, u64>,
    /// What the metrics were last told.
    reported: Reported,
    /// Per live call offered here, the trace its routing continues (empty
    /// when traces are off); at most [`MAX_TRACED_CALLS`].
    traces: HashMap<Arc<str>, Trace>,
}

/// However the actor ends (stopped, or failed without `post_stop`), its
/// figures leave the metrics.
impl Drop for QueueState {
    fn drop(&mut self) {
        self.directory.metrics().forget_queue(&self.tenant, self.core.id(), self.reported.actor);
    }
}

/// The queue's share of the node's metrics.
struct Reported {
    /// This actor's id: a queue's next actor replaces its figures.
    actor: u64,
    attributes: [opentelemetry::KeyValue; 2],
    /// The core's totals already counted.
    offered: u64,
    answered: u64,
    /// When the figures were last published.
    published_ms: u64,
}

pub struct QueueActor;

impl Actor for QueueActor {
    type Msg = QueueMsg;
    type State = QueueState;
    type Arguments = QueueArgs;

    async fn pre_start(&self, myself: ActorRef<QueueMsg>, args: QueueArgs) -> Result<QueueState, ActorProcessingErr> {
        let now = now_ms();
        let mut core = QueueCore::new(args.config, args.listening_skill, now);
        let mut published = HashMap::new();
        for call in &args.restored {
            let call_id = &call.call.info.call_id;
            args.directory.move_call(&args.tenant, call_id, core.id());
            published.insert(call_id.clone(), call.call.events.last_sequence());
        }
        if !args.restored.is_empty() {
            tracing::info!(tenant = %args.tenant, queue_id = %core.id(), calls = args.restored.len(), "live calls taken over");
        }
        let told = core.restore(args.restored, now);
        let ticker = myself.send_interval(Duration::from_millis(args.tick_ms), || QueueMsg::Tick);
        let reported = Reported {
            actor: myself.get_id().pid(),
            attributes: Metrics::queue_attributes(&args.tenant, core.id()),
            offered: core.history().offered_total,
            answered: core.history().answered_total,
            published_ms: now,
        };
        args.directory.metrics().publish_queue(&args.tenant, core.id(), reported.actor, core.figures(now));
        let mut state = QueueState {
            myself: myself.clone(),
            core,
            tenant: args.tenant,
            directory: args.directory,
            watchers: HashMap::new(),
            ticker,
            missing: HashMap::new(),
            traces: HashMap::new(),
            journal: args.durability.map(|durability| Journal {
                durability,
                dirty: HashSet::new(),
                ended: HashMap::new(),
                leaving: HashMap::new(),
                held: Vec::new(),
                writing: None,
                published,
            }),
            reported,
        };
        // What the takeover tells (proposals the last owner made) is
        // written before anyone hears it, like the rest.
        state.apply(told);
        state.write();
        Ok(state)
    }

    async fn post_stop(&self, _myself: ActorRef<QueueMsg>, state: &mut QueueState) -> Result<(), ActorProcessingErr> {
        state.ticker.abort();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<QueueMsg>,
        msg: QueueMsg,
        state: &mut QueueState,
    ) -> Result<(), ActorProcessingErr> {
        let now = now_ms();
        match msg {
            QueueMsg::Offer { mut info, reply, trace } => {
                // A call arrives when its queue takes it: offers reach the
                // queue in one line through its mailbox, whichever member
                // or request task they came by, so arrival order is the
                // order the queue saw them in.
                info.arrived_ms = now;
                let span = trace.adopt(tracing::info_span!(target: crate::telemetry::TARGET, "relais.queue.offer", relais.queue = %state.core.id()));
                let _entered = span.enter();
                let traced = (trace.is_some() && state.traces.len() < MAX_TRACED_CALLS).then(|| info.call_id.clone());
                let started = Instant::now();
                state.touch(&info.call_id);
                match state.core.offer_call(info, now) {
                    Ok((snapshot, fx)) => {
                        // Kept until the call ends or moves out; before
                        // its first proposal, which may go out at once.
                        if let Some(call_id) = traced {
                            state.traces.insert(call_id, Trace::current());
                        }
                        state.apply(fx);
                        state.routed(Trigger::Call, started);
                        state.reply(reply, Ok(snapshot));
                    }
                    Err(e) => state.reply(reply, Err(e)),
                }
            }
            QueueMsg::Adopt { call, watchers } => {
                let call_id = call.info.call_id.clone();
                state.directory.move_call(&state.tenant, &call_id, state.core.id());
                state.mark_published(&call_id, call.events.last_sequence());
                if !watchers.is_empty() {
                    state.watchers.insert(call_id.clone(), watchers);
                }
                state.touch(&call_id);
                let started = Instant::now();
                let fx = state.core.adopt(*call, now);
                state.apply(fx);
                state.routed(Trigger::Call, started);
            }
            QueueMsg::GetCall { call_id, reply } => {
                if state.journal.is_some() {
                    // A gateway's retry of an offer is answered with this:
                    // not before the call is written.
                    state.hold(move |s| {
                        let _ = reply.send(s.core.snapshot(&call_id));
                    });
                } else {
                    let _ = reply.send(state.core.snapshot(&call_id));
                }
            }
            QueueMsg::HangUp { call_id, reply } => {
                let result = state.core.hang_up(&call_id, now).map(|(snapshot, fx)| {
                    state.apply(fx);
                    snapshot
                });
                state.reply(reply, result);
            }
            QueueMsg::MarkVulnerable { call_id, reply } => {
                state.touch(&call_id);
                let result = state.core.mark_vulnerable(&call_id, now).map(|(snapshot, fx)| {
                    state.apply(fx);
                    snapshot
                });
                state.reply(reply, result);
            }
            QueueMsg::Transfer { call_id, to_queue_id, reply } => {
                let result = state.transfer(&call_id, to_queue_id, now);
                state.reply(reply, result);
            }
            QueueMsg::Watch { call_id, after, sink, reply } => {
                // Replays only what was published, so after the writes.
                state.hold(move |s| {
                    let _ = reply.send(s.watch(call_id, after, sink));
                });
            }
            QueueMsg::Join { informant_id, skills, login } => {
                let fx = state.core.join(informant_id, skills, login, now);
                state.apply(fx);
            }
            QueueMsg::Leave { informant_id, logged_out } => {
                let fx = state.core.leave(&informant_id, logged_out, now);
                state.apply(fx);
            }
            QueueMsg::Announce(entry) => {
                let started = Instant::now();
                let fx = state.core.available(entry, now);
                state.apply(fx);
                state.routed(Trigger::Informant, started);
            }
            QueueMsg::Unavailable { informant_id } => state.core.unavailable(&informant_id),
            QueueMsg::Answer { informant_id, call_id, offer_id, accepted } => {
                let started = Instant::now();
                let fx = state.proposal_answered(&call_id, &offer_id, &informant_id, accepted, now);
                state.apply(fx);
                state.routed(Trigger::Answer, started);
            }
            QueueMsg::OfferEnded { informant_id, call_id, offer_id, declined } => {
                let started = Instant::now();
                let fx = state.core.offer_ended(&call_id, &offer_id, &informant_id, declined, now);
                state.apply(fx);
                state.routed(Trigger::Answer, started);
            }
            QueueMsg::Complete { informant_id, call_id, reply } => {
                // A transfer's first informant leaving changes the call
                // without an event.
                state.touch(&call_id);
                let result = state.core.complete(&call_id, &informant_id, now).map(|fx| state.apply(fx));
                if let Err(e) = &result {
                    tracing::debug!(call_id = %call_id, informant_id = %informant_id, error = %e, "complete refused");
                }
                state.reply(reply, result);
            }
            QueueMsg::Connect { informant_id, call_id, offer_id, reply } => {
                let result = state.core.connect(&call_id, &offer_id, &informant_id, now).map(|fx| state.apply(fx));
                state.reply(reply, result);
            }
            QueueMsg::Reconfigure(config) => {
                let fx = state.core.reconfigure(config, now);
                state.apply(fx);
            }
            QueueMsg::Figures { reply } => {
                let _ = reply.send(state.core.figures(now));
            }
            QueueMsg::LiveCalls { reply } => {
                let _ = reply.send(state.core.live_calls());
            }
            QueueMsg::Tick => {
                let overflow_ready = state
                    .core
                    .config()
                    .overflow
                    .as_ref()
                    .is_some_and(|o| state.directory.queue_addr(&state.tenant, &o.queue_id).is_some());
                let fx = state.core.tick(now, overflow_ready);
                state.apply(fx);
                state.sweep_gone(now);
                if now.saturating_sub(state.reported.published_ms) >= QUEUE_SNAPSHOT_PERIOD_MS {
                    state.reported.published_ms = now;
                    let figures = state.core.figures(now);
                    state.directory.metrics().publish_queue(
                        &state.tenant,
                        state.core.id(),
                        state.reported.actor,
                        figures,
                    );
                }
            }
            QueueMsg::HandOver { reply } => {
                // Its proposals and offers are taken back and told (with
                // the last batch), not dropped untold.
                let fx = state.core.take_back_held(now);
                state.apply(fx);
                state.reply(reply, ());
            }
            QueueMsg::Written(result) => {
                if let Err(e) = result {
                    // What was held is never said; the queue starts again
                    // from what etcd holds.
                    tracing::error!(tenant = %state.tenant, queue_id = %state.core.id(), error = %e, "writing calls failed");
                    return Err(Box::new(e));
                }
                let released = state.journal.as_mut().and_then(|j| j.writing.take()).unwrap_or_default();
                for said in released {
                    said(state);
                }
            }
        }
        state.write();
        state.count();
        Ok(())
    }
}

impl QueueState {
    /// Records how long a routing decision took, from `started`.
    fn routed(&self, trigger: Trigger, started: Instant) {
        self.directory.metrics().routed(trigger, started.elapsed());
    }

    /// Counts the calls offered and answered since the last message.
    fn count(&mut self) {
        let history = self.core.history();
        let (offered, answered) = (history.offered_total, history.answered_total);
        let metrics = self.directory.metrics();
        if offered > self.reported.offered {
            metrics.calls_offered(&self.reported.attributes, offered - self.reported.offered);
            self.reported.offered = offered;
        }
        if answered > self.reported.answered {
            metrics.calls_answered(&self.reported.attributes, answered - self.reported.answered);
            self.reported.answered = answered;
        }
    }

    fn informant(&self, id: &Arc<str>) -> Option<Addr<InformantMsg>> {
        self.directory.informant_addr(&self.tenant, id)
    }

    /// Counts as logged out the informants found nowhere for
    /// [`GONE_AFTER_MS`]: their member died, and with it their claim. A
    /// call held for one goes back to its place, so no caller waits on an
    /// informant that is gone. (One that logs in again sooner gives it
    /// back by joining: see `QueueCore::join`.)
    fn sweep_gone(&mut self, now: u64) {
        let nowhere: Vec<Arc<str>> =
            self.core.informants().filter(|id| self.informant(id).is_none()).cloned().collect();
        self.missing.retain(|id, _| nowhere.contains(id));
        for id in nowhere {
            let since = *self.missing.entry(id.clone()).or_insert(now);
            if now.saturating_sub(since) >= GONE_AFTER_MS {
                self.missing.remove(&id);
                tracing::info!(tenant = %self.tenant, queue_id = %self.core.id(), informant_id = %id, "informant gone without logging out");
                let fx = self.core.leave(&id, true, now);
                self.apply(fx);
            }
        }
    }

    /// Sends `value` to `reply` once the writes before it are in etcd.
    fn reply<T: Send + 'static>(&mut self, reply: RpcReplyPort<T>, value: T) {
        self.hold(move |_| {
            let _ = reply.send(value);
        });
    }

    /// Runs `say` once the writes before it are in etcd (at once on a
    /// single node).
    fn hold(&mut self, say: impl FnOnce(&mut QueueState) + Send + 'static) {
        match &mut self.journal {
            Some(journal) => journal.held.push(Box::new(say)),
            None => say(self),
        }
    }

    /// Notes the last event a call's watchers were sent; only a journal
    /// keeps it (see [`Journal::published`]).
    fn mark_published(&mut self, call_id: &Arc<str>, sequence: u64) {
        if let Some(journal) = &mut self.journal {
            journal.published.insert(call_id.clone(), sequence);
        }
    }

    /// Forgets what a call's watchers were sent (the call ended).
    fn forget_published(&mut self, call_id: &Arc<str>) {
        if let Some(journal) = &mut self.journal {
            journal.published.remove(call_id);
        }
    }

    /// Marks a call as changed, to be written.
    fn touch(&mut self, call_id: &Arc<str>) {
        if let Some(journal) = &mut self.journal {
            journal.dirty.insert(call_id.clone());
        }
    }

    /// The core's answer to a proposal, the call marked to be written even
    /// when nothing is told (a refusal that overtook no one), so that etcd
    /// no longer says it is proposed.
    fn proposal_answered(
        &mut self,
        call_id: &Arc<str>,
        offer_id: &str,
        informant_id: &str,
        accepted: bool,
        now: u64,
    ) -> Vec<QueueEffect> {
        self.touch(call_id);
        self.core.proposal_answered(call_id, offer_id, informant_id, accepted, now)
    }

    /// Carries out the core's effects once the calls they concern are
    /// written.
    fn apply(&mut self, fx: Vec<QueueEffect>) {
        let Some(journal) = &mut self.journal else {
            self.execute(fx);
            return;
        };
        let now = now_ms();
        for effect in &fx {
            match effect {
                QueueEffect::Event { call_id, .. } => {
                    journal.dirty.insert(call_id.clone());
                }
                QueueEffect::Ended { snapshot, events } => {
                    let call_id = snapshot.info.call_id.clone();
                    let last = DurableCall {
                        queue_id: snapshot.queue_id.clone(),
                        call: MovedCall {
                            info: snapshot.info.clone(),
                            events: events.clone(),
                            transfer_from: None,
                            proposals: 0,
                        },
                        seq: 0,
                        entered_ms: now,
                        connected: None,
                        proposed: None,
                    };
                    journal.ended.insert(call_id.clone(), last);
                    journal.dirty.insert(call_id);
                }
                QueueEffect::MoveOut { to_queue_id, call } => {
                    let call_id = call.info.call_id.clone();
                    let moving = DurableCall {
                        queue_id: to_queue_id.clone(),
                        call: call.as_ref().clone(),
                        seq: 0,
                        entered_ms: now,
                        connected: None,
                        proposed: None,
                    };
                    journal.leaving.insert(call_id.clone(), moving);
                    journal.dirty.insert(call_id);
                }
                // A proposal is written before the informant hears it, so
                // that the next owner knows the call was served.
                QueueEffect::Propose { proposal, .. } => {
                    journal.dirty.insert(proposal.call.call_id.clone());
                }
                QueueEffect::NothingFor { .. } | QueueEffect::WithdrawOffer { .. } | QueueEffect::EndCall { .. } => {}
            }
        }
        journal.held.push(Box::new(move |s: &mut QueueState| s.execute(fx)));
    }

    /// Starts writing the calls changed since the last batch, unless a
    /// batch is in flight; with nothing to write, says what was held.
    fn write(&mut self) {
        loop {
            let Some(journal) = &mut self.journal else { return };
            if journal.writing.is_some() || (journal.dirty.is_empty() && journal.held.is_empty()) {
                return;
            }
            let mut writes = Vec::with_capacity(journal.dirty.len());
            for call_id in journal.dirty.drain() {
                if let Some(call) = self.core.durable(&call_id) {
                    writes.push(CallWrite::Put(Box::new(call)));
                } else if let Some(moving) = journal.leaving.remove(&call_id) {
                    writes.push(CallWrite::Put(Box::new(moving)));
                } else if let Some(last) = journal.ended.remove(&call_id) {
                    writes.push(CallWrite::End(Box::new(last)));
                }
            }
            journal.ended.clear();
            journal.leaving.clear();
            let held = std::mem::take(&mut journal.held);
            if writes.is_empty() {
                for said in held {
                    said(self);
                }
                continue;
            }
            journal.writing = Some(held);
            let (durability, tenant, queue_id) =
                (journal.durability.clone(), self.tenant.clone(), self.core.id().clone());
            let myself = self.myself.clone();
            tokio::spawn(async move {
                let result = durability.store.write(&tenant, &queue_id, durability.epoch, writes).await;
                let _ = myself.cast(QueueMsg::Written(result));
            });
            return;
        }
    }

    /// Carries out the core's effects, and those their failures produce.
    fn execute(&mut self, fx: Vec<QueueEffect>) {
        let mut work: VecDeque<QueueEffect> = fx.into();
        let now = now_ms();
        while let Some(effect) = work.pop_front() {
            match effect {
                QueueEffect::Propose { informant_id, proposal } => {
                    let (call_id, offer_id) = (proposal.call.call_id.clone(), proposal.offer_id.clone());
                    // In the call's trace: a proposal to an informant on
                    // another member carries it in its envelope.
                    let span = self.traces.get(&call_id).cloned().unwrap_or_default().adopt(tracing::info_span!(
                        target: crate::telemetry::TARGET,
                        "relais.queue.propose",
                        relais.queue = %self.core.id()
                    ));
                    let _entered = span.enter();
                    let to = self.informant(&informant_id);
                    let sent = to
                        .as_ref()
                        .is_some_and(|a| a.cast(InformantMsg::Propose(Box::new(proposal), Trace::current())));
                    if !sent {
                        // As good as a refusal. An informant gone since it
                        // announced itself leaves; one on another member
                        // whose link is full or broken for a moment stays
                        // (it announces itself again).
                        if !matches!(to, Some(Addr::Remote(_))) {
                            let more = self.core.leave(&informant_id, false, now);
                            self.follow(more, &mut work);
                        }
                        let more = self.proposal_answered(&call_id, &offer_id, &informant_id, false, now);
                        self.follow(more, &mut work);
                    }
                }
                QueueEffect::NothingFor { informant_id, generation } => {
                    if let Some(a) = self.informant(&informant_id) {
                        a.cast(InformantMsg::Nothing { queue_id: self.core.id().clone(), generation });
                    }
                }
                QueueEffect::WithdrawOffer { informant_id, offer_id, reason, .. } => {
                    if let Some(a) = self.informant(&informant_id) {
                        a.cast(InformantMsg::Withdraw { offer_id, reason: reason.into() });
                    }
                }
                QueueEffect::EndCall { informant_id, call_id, reason } => {
                    if let Some(a) = self.informant(&informant_id) {
                        a.cast(InformantMsg::EndCall { call_id, reason: reason.into() });
                    }
                }
                QueueEffect::Event { call_id, event } => {
                    if let Some(list) = self.watchers.get_mut(&call_id) {
                        list.retain(|w| w.try_send(event.clone()).is_ok());
                    }
                    self.mark_published(&call_id, event.sequence);
                }
                QueueEffect::Ended { snapshot, events } => {
                    // Dropping the watchers ends their streams after the
                    // terminal event they were just sent.
                    self.watchers.remove(&snapshot.info.call_id);
                    self.forget_published(&snapshot.info.call_id);
                    self.traces.remove(&snapshot.info.call_id);
                    tracing::debug!(call_id = %snapshot.info.call_id, state = ?snapshot.state, "call ended");
                    let outcome = match snapshot.state {
                        relais_routing::queue::CallState::Completed => Some(Outcome::Completed),
                        relais_routing::queue::CallState::Abandoned => Some(Outcome::Abandoned),
                        relais_routing::queue::CallState::Deflected => Some(Outcome::Deflected),
                        _ => None,
                    };
                    if let Some(outcome) = outcome {
                        self.directory.metrics().call_ended(&self.tenant, self.core.id(), outcome);
                    }
                    self.directory.end_call(&self.tenant, *snapshot, events);
                }
                QueueEffect::MoveOut { to_queue_id, call } => {
                    let watchers = self.watchers.remove(&call.info.call_id).unwrap_or_default();
                    self.forget_published(&call.info.call_id);
                    self.traces.remove(&call.info.call_id);
                    let more = self.send_to_queue(to_queue_id, call, watchers, now);
                    self.follow(more, &mut work);
                }
            }
        }
    }

    /// Effects that carrying out others produced: next in line on a single
    /// node, after the next batch of writes in a cluster.
    fn follow(&mut self, more: Vec<QueueEffect>, work: &mut VecDeque<QueueEffect>) {
        if self.journal.is_some() {
            self.apply(more);
        } else {
            work.extend(more);
        }
    }

    /// Hands a call to another queue; if that queue is gone, keeps it here
    /// so that it is never lost.
    fn send_to_queue(
        &mut self,
        to_queue_id: Arc<str>,
        call: Box<MovedCall>,
        watchers: Vec<Watcher>,
        now: u64,
    ) -> Vec<QueueEffect> {
        let call_id = call.info.call_id.clone();
        if let Some(target) = self.directory.queue_addr(&self.tenant, &to_queue_id) {
            match target {
                Addr::Local(_) => self.directory.move_call(&self.tenant, &call_id, &to_queue_id),
                Addr::Remote(_) => self.directory.moved_away(&self.tenant, &call_id, &to_queue_id),
            }
            return match target.adopt(call, watchers, &self.myself) {
                Ok(()) => Vec::new(),
                Err((call, watchers)) => self.keep(*call, watchers, now),
            };
        }
        self.keep(*call, watchers, now)
    }

    fn keep(&mut self, call: MovedCall, watchers: Vec<Watcher>, now: u64) -> Vec<QueueEffect> {
        let call_id = call.info.call_id.clone();
        tracing::warn!(call_id = %call_id, queue_id = %self.core.id(), "target queue gone; call kept here");
        self.directory.move_call(&self.tenant, &call_id, self.core.id());
        self.mark_published(&call_id, call.events.last_sequence());
        if !watchers.is_empty() {
            self.watchers.insert(call_id.clone(), watchers);
        }
        self.touch(&call_id);
        self.core.adopt(call, now)
    }

    fn transfer(&mut self, call_id: &Arc<str>, to_queue_id: Arc<str>, now: u64) -> Result<CallSnapshot, NodeError> {
        if self.directory.queue_addr(&self.tenant, &to_queue_id).is_none() {
            return Err(NodeError::not_found("queue", to_queue_id.as_ref()));
        }
        if &to_queue_id == self.core.id() {
            return Err(NodeError::invalid("queue_id", "the call is already in this queue"));
        }
        let (moved, mut fx) = self.core.transfer_out(call_id, to_queue_id.clone(), now).map_err(queue_error)?;
        let snapshot = CallSnapshot {
            info: moved.info.clone(),
            queue_id: to_queue_id.clone(),
            state: relais_routing::queue::CallState::Queued,
            informant_id: None,
            last_sequence: moved.events.last_sequence(),
            position: 0,
            deflect_reason: None,
        };
        // Should the target queue be gone by then, the call stays here and
        // its gateway hears so through the call's events.
        fx.push(QueueEffect::MoveOut { to_queue_id, call: Box::new(moved) });
        self.apply(fx);
        Ok(snapshot)
    }

    fn watch(&mut self, call_id: Arc<str>, after: u64, sink: Watcher) -> Result<(), NodeError> {
        let Some(record) = self.core.call(&call_id) else {
            return Err(NodeError::not_found("call", call_id.as_ref()));
        };
        let published = match &self.journal {
            Some(journal) => journal.published.get(&call_id).copied().unwrap_or(0),
            None => record.events.last_sequence(),
        };
        let list = self.watchers.entry(call_id).or_default();
        list.retain(|w| !w.is_closed());
        if list.len() >= MAX_WATCHERS_PER_CALL {
            return Err(NodeError::ResourceExhausted(format!("at most {MAX_WATCHERS_PER_CALL} watchers per call")));
        }
        let replay = record.events.after(after).iter().take_while(|e| e.sequence <= published);
        for event in replay {
            if sink.try_send(event.clone()).is_err() {
                return Err(NodeError::ResourceExhausted("watcher buffer full".into()));
            }
        }
        list.push(sink);
        Ok(())
    }
}

/// How a queue's refusal reads to a client.
pub fn queue_error(err: QueueError) -> NodeError {
    match err {
        QueueError::UnknownCall(id) => NodeError::not_found("call", id.as_ref()),
        QueueError::Duplicate(id) => NodeError::exists("call", id.as_ref()),
        other => NodeError::precondition(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use relais_routing::Requirement;

    use super::*;

    fn args(directory: &Arc<Directory>) -> QueueArgs {
        QueueArgs {
            tenant: "cai".into(),
            config: QueueConfig::new("logement", Requirement::new([("logement", 2)])),
            listening_skill: "ecoute".into(),
            directory: directory.clone(),
            tick_ms: 1_000,
            durability: None,
            restored: Vec::new(),
        }
    }

    #[tokio::test]
    async fn calls_arrive_in_the_order_the_queue_takes_them() {
        let directory = Arc::new(Directory::new(10, 60_000));
        let (queue, _) = Actor::spawn(None, QueueActor, args(&directory)).await.expect("spawn");
        // Two request tasks read the clock in one order and reached the
        // mailbox in the other: the queue's order is the one that counts.
        let offer = |call_id: &str, arrived_ms| {
            let info = CallInfo {
                call_id: call_id.into(),
                priority: 5,
                vulnerable: false,
                language: "fr".into(),
                topic: "".into(),
                caller_pseudonym: "p".into(),
                attributes: Arc::default(),
                arrived_ms,
            };
            let (tx, rx) = ractor::concurrency::oneshot();
            queue.cast(QueueMsg::Offer { info, reply: tx.into(), trace: Trace::default() }).expect("cast");
            rx
        };
        let first = offer("c1", now_ms() + 60_000);
        let second = offer("c2", now_ms() - 60_000);
        let first = first.await.expect("answer").expect("taken");
        let second = second.await.expect("answer").expect("taken");
        assert_eq!((first.position, second.position), (1, 2), "in line in the order taken");
        assert!(first.info.arrived_ms <= second.info.arrived_ms, "{first:?} {second:?}");
        assert!(second.info.arrived_ms <= now_ms(), "stamped by the queue, not the request");
    }

    #[tokio::test]
    async fn a_queue_actor_that_fails_leaves_the_metrics() {
        let directory = Arc::new(Directory::new(10, 60_000));
        let (queue, ended) = Actor::spawn(None, QueueActor, args(&directory)).await.expect("spawn");
        let shown = "relais_queue_waiting{relais_queue=\"logement\",relais_tenant=\"cai\"} 0\n";
        assert!(directory.metrics().render().contains(shown));
        // A failed write fails the actor: no post_stop runs.
        queue.cast(QueueMsg::Written(Err(NodeError::Unavailable("etcd is away".into())))).expect("cast");
        ended.await.expect("the actor ends");
        let text = directory.metrics().render();
        assert!(!text.contains("relais_queue_waiting{"), "{text}");
    }
}
