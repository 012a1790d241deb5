//! The informant actor: hosts one [`InformantCore`] and its desktop's
//! session stream.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use relais_routing::SkillSet;
use relais_routing::informant::{
    InformantCore, InformantEffect, InformantError, InformantSnapshot, InformantState as Held, OngoingCall,
    SessionEvent, Standing,
};
use relais_routing::queue::Proposal;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::actors::queue::QueueMsg;
use crate::clock::now_ms;
use crate::cluster::ownership::Epoch;
use crate::cluster::standing::StandingStore;
use crate::directory::{Addr, AskOutcome, CallLocation, Directory};
use crate::error::NodeError;
use crate::telemetry::Trace;

/// One numbered event for the desktop.
#[derive(Clone, Debug)]
pub struct SessionOut {
    pub sequence: u64,
    pub at_ms: u64,
    pub event: SessionEvent,
}

/// An informant's state as a request's reply tells it.
#[derive(Clone, Debug)]
pub struct StatusReply {
    pub snapshot: InformantSnapshot,
    /// The sequence of the last event sent on the session before the
    /// snapshot was taken (0 if none): the snapshot is newer than that event
    /// and older than the next one.
    pub last_sequence: u64,
}

/// Events buffered for a desktop before a slow session is closed (the
/// desktop reopens it and gets a fresh snapshot).
pub const SESSION_BUFFER: usize = 64;
/// How long an accept or a finish keeps asking a queue whose answer is
/// unknown (its member failing over), and how often.
const ASK_PATIENCE: Duration = Duration::from_secs(4);
const ASK_RETRY: Duration = Duration::from_millis(100);
/// How long one ask waits for its answer before asking again, at whoever
/// owns the queue then: a member that froze or was cut off answers nothing,
/// and its queue's next owner (after its lease, seconds later) must be
/// asked within [`ASK_PATIENCE`]. Asking again is safe: a queue answers a
/// connect or a complete it already carried out the same way.
const ASK_ATTEMPT: Duration = Duration::from_millis(500);

type Reply = RpcReplyPort<Result<StatusReply, NodeError>>;

pub enum InformantMsg {
    /// A queue proposes a call, in the call's trace.
    Propose(Box<Proposal>, Trace),
    Nothing {
        queue_id: Arc<str>,
        generation: u64,
    },
    Withdraw {
        offer_id: Arc<str>,
        reason: Arc<str>,
    },
    EndCall {
        call_id: Arc<str>,
        reason: Arc<str>,
    },
    OfferTimer {
        offer_id: Arc<str>,
    },
    WrapUpTimer {
        token: u64,
    },
    CollectTimer {
        generation: u64,
    },
    Accept {
        offer_id: Arc<str>,
        reply: Reply,
    },
    Decline {
        offer_id: Arc<str>,
        reply: Reply,
    },
    Finish {
        call_id: Arc<str>,
        reply: Reply,
    },
    EndWrapUp {
        reply: Reply,
    },
    Pause {
        reason: Arc<str>,
        reply: Reply,
    },
    Resume {
        reply: Reply,
    },
    Logout {
        reply: Reply,
    },
    Get {
        reply: RpcReplyPort<StatusReply>,
    },
    /// Opens the desktop's session, closing any previous one.
    Attach {
        sink: mpsc::Sender<SessionOut>,
        reply: RpcReplyPort<()>,
    },
    /// The tenant's queues this informant belongs to changed.
    SetQueues(Vec<Arc<str>>),
}

pub struct InformantArgs {
    pub tenant: Arc<str>,
    pub informant_id: Arc<str>,
    pub skills: SkillSet,
    pub queues: Vec<Arc<str>>,
    pub directory: Arc<Directory>,
    /// The call it is still connected to, when it logs in again after its
    /// member failed.
    pub on_call: Option<OngoingCall>,
    /// In a cluster: where its standing is kept, under its claim, and the
    /// standing it logs in with (as its earlier login left it).
    pub durability: Option<(Arc<StandingStore>, Epoch)>,
    pub standing: Standing,
}

/// An informant's standing in etcd, in a cluster.
struct Durability {
    store: Arc<StandingStore>,
    epoch: Epoch,
    /// The standing last written.
    written: Standing,
    /// A request's answer, sent once the standing it changed is written.
    unsent: Option<(Reply, Result<StatusReply, NodeError>)>,
}

/// A pending `send_after`.
type Timer = JoinHandle<Result<(), ractor::MessagingErr<InformantMsg>>>;

pub struct InformantState {
    tenant: Arc<str>,
    core: InformantCore,
    directory: Arc<Directory>,
    session: Option<mpsc::Sender<SessionOut>>,
    sequence: u64,
    /// Pending timers, cancelled as soon as they cannot matter any more, so
    /// that a busy node does not carry thousands of sleeping timer tasks.
    offer_timer: Option<Timer>,
    collect_timer: Option<Timer>,
    durability: Option<Box<Durability>>,
    /// The state the metrics count this informant in.
    counted: Held,
}

/// However the actor ends (stopped, or failed without `post_stop`), the
/// metrics stop counting it.
impl Drop for InformantState {
    fn drop(&mut self) {
        self.directory.metrics().informants().moved(&self.tenant, Some(self.counted), None);
    }
}

pub struct InformantActor;

impl Actor for InformantActor {
    type Msg = InformantMsg;
    type State = InformantState;
    type Arguments = InformantArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<InformantMsg>,
        args: InformantArgs,
    ) -> Result<InformantState, ActorProcessingErr> {
        let now = now_ms();
        let core = InformantCore::new(args.informant_id, args.skills, now);
        args.directory.metrics().informants().moved(&args.tenant, None, Some(core.state()));
        let mut state = InformantState {
            tenant: args.tenant,
            counted: core.state(),
            core,
            directory: args.directory,
            session: None,
            sequence: 0,
            offer_timer: None,
            collect_timer: None,
            durability: args.durability.map(|(store, epoch)| {
                Box::new(Durability { store, epoch, written: args.standing.clone(), unsent: None })
            }),
        };
        // Registered before announcing, so queues can reach it at once.
        state.directory.register_informant(&state.tenant, state.core.id(), myself.clone());
        let fx = match args.on_call {
            Some(call) => state.core.login_on_call(args.queues, call, now),
            None => state.core.login_standing(args.queues, args.standing, now),
        };
        state.apply(&myself, fx);
        state.recount();
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<InformantMsg>,
        state: &mut InformantState,
    ) -> Result<(), ActorProcessingErr> {
        state.directory.unregister_informant(&state.tenant, state.core.id());
        Ok(())
    }

    /// Every message but `Accept` and `Finish` is handled here,
    /// synchronously, when ractor asks for the handler's future (it awaits
    /// it at once). The future returned only carries a pending accept or
    /// finish, the handlers that await a queue: ractor keeps this future
    /// inside the boxed message loop of every informant's task, so a future
    /// holding the message and the handler's locals would make every idle
    /// informant bigger.
    fn handle(
        &self,
        myself: ActorRef<InformantMsg>,
        msg: InformantMsg,
        state: &mut InformantState,
    ) -> impl Future<Output = Result<(), ActorProcessingErr>> + Send {
        let asking: Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>>> = match msg {
            // Boxed: the request's state lives on the heap while it waits.
            InformantMsg::Accept { offer_id, reply } => Some(Box::pin(async move {
                let result = state.accept(&myself, &offer_id).await;
                state.recount();
                state.deliver_saved(reply, result).await;
            })),
            InformantMsg::Finish { call_id, reply } => Some(Box::pin(async move {
                let result = state.finish(&myself, &call_id).await;
                state.recount();
                state.deliver_saved(reply, result).await;
            })),
            msg => {
                state.handle_now(&myself, msg);
                // A changed standing is written before what waits for it.
                state.unsaved().is_some().then(|| Box::pin(state.save()) as _)
            }
        };
        async move {
            if let Some(asking) = asking {
                asking.await;
            }
            Ok(())
        }
    }
}

impl InformantState {
    /// Handles a message that awaits nothing.
    fn handle_now(&mut self, myself: &ActorRef<InformantMsg>, msg: InformantMsg) {
        let now = now_ms();
        match msg {
            InformantMsg::Propose(proposal, trace) => {
                let span =
                    trace.adopt(tracing::info_span!(target: crate::telemetry::TARGET, "relais.informant.propose"));
                let _entered = span.enter();
                let fx = self.core.proposed(*proposal, now);
                self.apply(myself, fx);
            }
            InformantMsg::Nothing { queue_id, generation } => {
                let fx = self.core.nothing_from(&queue_id, generation, now);
                self.apply(myself, fx);
            }
            InformantMsg::Withdraw { offer_id, reason } => {
                let fx = self.core.withdrawn(&offer_id, &reason, now);
                self.apply(myself, fx);
            }
            InformantMsg::EndCall { call_id, reason } => {
                let fx = self.core.call_ended(&call_id, &reason, now);
                self.apply(myself, fx);
            }
            InformantMsg::OfferTimer { offer_id } => {
                let fx = self.core.offer_expired(&offer_id, now);
                self.apply(myself, fx);
            }
            InformantMsg::WrapUpTimer { token } => {
                let fx = self.core.wrap_up_done(token, now);
                self.apply(myself, fx);
            }
            InformantMsg::CollectTimer { generation } => {
                let fx = self.core.collect_timed_out(generation, now);
                self.apply(myself, fx);
            }
            InformantMsg::Decline { offer_id, reply } => {
                let result = self.core.decline(&offer_id, now);
                self.answer(myself, result, reply);
            }
            InformantMsg::EndWrapUp { reply } => {
                let result = self.core.end_wrap_up(now);
                self.answer(myself, result, reply);
            }
            InformantMsg::Pause { reason, reply } => {
                let result = self.core.pause(reason, now);
                self.answer(myself, result, reply);
            }
            InformantMsg::Resume { reply } => {
                let result = self.core.resume(now);
                self.answer(myself, result, reply);
            }
            InformantMsg::Logout { reply } => {
                let result = self.core.logout(now);
                let ok = result.is_ok();
                self.answer(myself, result, reply);
                if ok {
                    self.session = None;
                    myself.stop(Some("logged out".into()));
                }
            }
            InformantMsg::Get { reply } => {
                let _ = reply.send(self.status(now));
            }
            InformantMsg::Attach { sink, reply } => {
                self.session = Some(sink);
                self.emit(SessionEvent::State(self.core.snapshot(now)));
                if let Some(offer) = self.core.pending_offer(now) {
                    self.emit(offer);
                }
                let _ = reply.send(());
            }
            InformantMsg::SetQueues(queues) => {
                let fx = self.core.set_queues(queues, now);
                self.apply(myself, fx);
            }
            InformantMsg::Accept { .. } | InformantMsg::Finish { .. } => {
                unreachable!("accept and finish await their queue in `handle`")
            }
        }
        self.recount();
    }

    fn queue(&self, id: &Arc<str>) -> Option<Addr<QueueMsg>> {
        self.directory.queue_addr(&self.tenant, id)
    }

    /// The queue a call is in now: where the directory sees it live (a
    /// transferred call moved), else `queue_id`.
    fn call_queue(&self, call_id: &Arc<str>, queue_id: Arc<str>) -> Arc<str> {
        match self.directory.call(&self.tenant, call_id) {
            Some(CallLocation::Live(now_in)) => now_in,
            _ => queue_id,
        }
    }

    fn cast_queue(&self, queue_id: &Arc<str>, msg: QueueMsg) -> bool {
        self.queue(queue_id).is_some_and(|q| q.cast(msg))
    }

    fn status(&self, now: u64) -> StatusReply {
        StatusReply { snapshot: self.core.snapshot(now), last_sequence: self.sequence }
    }

    /// Tells the metrics the informant's state, if it changed.
    fn recount(&mut self) {
        let now = self.core.state();
        if now != self.counted {
            self.directory.metrics().informants().moved(&self.tenant, Some(self.counted), Some(now));
            self.counted = now;
        }
    }

    fn emit(&mut self, event: SessionEvent) {
        if let Some(session) = &self.session {
            self.sequence += 1;
            let out = SessionOut { sequence: self.sequence, at_ms: now_ms(), event };
            if session.try_send(out).is_err() {
                // Closed or too slow: the desktop reopens its session and
                // starts again from a snapshot.
                self.session = None;
            }
        }
    }

    fn answer(
        &mut self,
        myself: &ActorRef<InformantMsg>,
        result: Result<Vec<InformantEffect>, InformantError>,
        reply: Reply,
    ) {
        let out = match result {
            Ok(fx) => {
                self.apply(myself, fx);
                Ok(self.status(now_ms()))
            }
            Err(e) => Err(informant_error(e)),
        };
        if out.is_ok()
            && self.unsaved().is_some()
            && let Some(durability) = &mut self.durability
        {
            // Answered by `save`, once the change is written.
            durability.unsent = Some((reply, out));
        } else {
            self.deliver(reply, out);
        }
    }

    /// The standing to write, if it changed since it was last written. A
    /// wrap-up that ended on time needs no write: read after its end, it
    /// counts as free.
    fn unsaved(&self) -> Option<Standing> {
        let durability = self.durability.as_ref()?;
        let now = self.core.standing();
        match (&durability.written, &now) {
            (written, now) if written == now => None,
            (Standing::WrapUp { until_ms }, Standing::Free) if *until_ms <= now_ms() => None,
            _ => Some(now),
        }
    }

    /// Writes the standing if it changed, then sends the answer that waited
    /// for it. A write that fails (etcd away longer than a write's
    /// patience, or the claim lost) answers `UNAVAILABLE`: the desktop asks
    /// again.
    async fn save(&mut self) {
        if let Some(standing) = self.unsaved()
            && let Some(durability) = &self.durability
        {
            let (store, epoch) = (durability.store.clone(), durability.epoch);
            let written = store.write(&self.tenant, self.core.id(), epoch, &standing).await;
            let Some(durability) = &mut self.durability else { return };
            match written {
                Ok(()) => durability.written = standing,
                Err(e) => {
                    tracing::warn!(tenant = %self.tenant, informant_id = %self.core.id(), error = %e, "informant's standing not saved");
                    if let Some((reply, _)) = durability.unsent.take() {
                        let _ = reply.send(Err(NodeError::Unavailable(
                            "the informant's new state could not be saved; ask again".into(),
                        )));
                    }
                }
            }
        }
        if let Some((reply, out)) = self.durability.as_mut().and_then(|d| d.unsent.take()) {
            self.deliver(reply, out);
        }
    }

    /// Sends a request's answer once the standing it changed is written.
    async fn deliver_saved(&mut self, reply: Reply, out: Result<StatusReply, NodeError>) {
        if out.is_ok()
            && self.unsaved().is_some()
            && let Some(durability) = &mut self.durability
        {
            durability.unsent = Some((reply, out));
            self.save().await;
        } else {
            self.deliver(reply, out);
        }
    }

    /// Sends a request's reply. A reply that changed the state but that
    /// nobody waits for any more (the request timed out or was cancelled)
    /// is told on the session instead, so the desktop never misses a change.
    fn deliver(&mut self, reply: Reply, out: Result<StatusReply, NodeError>) {
        let changed = out.is_ok();
        if reply.send(out).is_err() && changed {
            self.emit(SessionEvent::State(self.core.snapshot(now_ms())));
        }
    }

    /// Accepts the pending offer: the call's queue connects it, then the
    /// informant is on the call. The queue answers without waiting for any
    /// informant, so this wait cannot deadlock.
    async fn accept(&mut self, myself: &ActorRef<InformantMsg>, offer_id: &str) -> Result<StatusReply, NodeError> {
        if self.core.accepted(offer_id) {
            // Asked again after the first answer was lost: the same answer.
            return Ok(self.status(now_ms()));
        }
        let ticket = self.core.accept(offer_id).map_err(informant_error)?;
        let (me, call_id, offer) = (self.core.id().clone(), ticket.call_id.clone(), ticket.offer_id.clone());
        let outcome = self
            .ask_queue(&ticket.call_id, &ticket.queue_id, AskOutcome::Refused, move |queue| {
                let (me, call_id, offer) = (me.clone(), call_id.clone(), offer.clone());
                async move { queue.connect(me, call_id, offer).await }
            })
            .await;
        let connected = outcome == AskOutcome::Yes;
        let fx = self.core.connected(&ticket, connected, now_ms());
        self.apply(myself, fx);
        self.recount();
        if connected {
            Ok(self.status(now_ms()))
        } else {
            Err(NodeError::precondition(format!(
                "offer {offer_id:?} can no longer be accepted: its call is gone (the caller hung up, or the call is offered again after a failover)"
            )))
        }
    }

    /// Finishes the call: the informant moves on (wrap-up or available)
    /// once the call's queue has ended the call durably, so that an
    /// informant whose member then fails never logs in again on a call
    /// she finished. A queue that does not answer in time (it is failing
    /// over) ends the call when she next announces herself.
    async fn finish(&mut self, myself: &ActorRef<InformantMsg>, call_id: &str) -> Result<StatusReply, NodeError> {
        let fx = self.core.finish(call_id, now_ms()).map_err(informant_error)?;
        let (completes, rest): (Vec<_>, Vec<_>) =
            fx.into_iter().partition(|effect| matches!(effect, InformantEffect::Complete { .. }));
        for complete in completes {
            let InformantEffect::Complete { call_id, queue_id } = complete else { continue };
            let me = self.core.id().clone();
            let asked = call_id.clone();
            let outcome = self
                .ask_queue(&call_id, &queue_id, AskOutcome::Unknown, move |queue| {
                    let (me, call_id) = (me.clone(), asked.clone());
                    async move { queue.complete(me, call_id).await }
                })
                .await;
            if outcome != AskOutcome::Yes {
                tracing::debug!(call_id = %call_id, ?outcome, "finish not confirmed by the call's queue");
            }
        }
        self.apply(myself, rest);
        Ok(self.status(now_ms()))
    }

    /// Asks the queue the call is in now (see [`Self::call_queue`]) until
    /// it answers, each time for up to [`ASK_ATTEMPT`], for up to
    /// [`ASK_PATIENCE`] in all: the queue may be failing
    /// over to another member, which knows from etcd whether it already did
    /// it. `missing` is the outcome while the queue cannot be reached at
    /// all.
    async fn ask_queue<F, Fut>(
        &self,
        call_id: &Arc<str>,
        queue_id: &Arc<str>,
        missing: AskOutcome,
        ask: F,
    ) -> AskOutcome
    where
        F: Fn(Addr<QueueMsg>) -> Fut,
        Fut: Future<Output = AskOutcome>,
    {
        let deadline = tokio::time::Instant::now() + ASK_PATIENCE;
        loop {
            let outcome = match self.queue(&self.call_queue(call_id, queue_id.clone())) {
                Some(queue) => tokio::time::timeout(ASK_ATTEMPT, ask(queue)).await.unwrap_or(AskOutcome::Unknown),
                None => missing,
            };
            match outcome {
                AskOutcome::Unknown if tokio::time::Instant::now() + ASK_RETRY < deadline => {
                    tokio::time::sleep(ASK_RETRY).await;
                }
                outcome => return outcome,
            }
        }
    }

    fn apply(&mut self, myself: &ActorRef<InformantMsg>, fx: Vec<InformantEffect>) {
        let now = now_ms();
        let mut work: std::collections::VecDeque<InformantEffect> = fx.into();
        let id = self.core.id().clone();
        while let Some(effect) = work.pop_front() {
            match effect {
                InformantEffect::Join { queue_id, skills, login } => {
                    self.cast_queue(&queue_id, QueueMsg::Join { informant_id: id.clone(), skills, login });
                }
                InformantEffect::Leave { queue_id, logged_out } => {
                    self.cast_queue(&queue_id, QueueMsg::Leave { informant_id: id.clone(), logged_out });
                }
                InformantEffect::Announce { queue_id, entry } => {
                    let generation = entry.generation;
                    if !self.cast_queue(&queue_id, QueueMsg::Announce(entry)) {
                        // A queue that is gone has nothing to propose.
                        work.extend(self.core.nothing_from(&queue_id, generation, now));
                    }
                }
                InformantEffect::Unavailable { queue_id } => {
                    self.cast_queue(&queue_id, QueueMsg::Unavailable { informant_id: id.clone() });
                }
                InformantEffect::Answer { queue_id, call_id, offer_id, accepted } => {
                    self.cast_queue(
                        &queue_id,
                        QueueMsg::Answer { informant_id: id.clone(), call_id, offer_id, accepted },
                    );
                }
                InformantEffect::OfferEnded { queue_id, call_id, offer_id, declined } => {
                    self.cast_queue(
                        &queue_id,
                        QueueMsg::OfferEnded { informant_id: id.clone(), call_id, offer_id, declined },
                    );
                }
                // A finish asks and awaits its queue (see `finish`); any
                // other end of a call is told without waiting.
                InformantEffect::Complete { call_id, queue_id } => {
                    let queue = self.call_queue(&call_id, queue_id);
                    if let Some(queue) = self.queue(&queue) {
                        let me = id.clone();
                        tokio::spawn(async move { queue.complete(me, call_id).await });
                    }
                }
                InformantEffect::Session(event) => self.emit(event),
                InformantEffect::OfferTimer { offer_id, after_ms } => {
                    let timer = myself
                        .send_after(Duration::from_millis(after_ms), move || InformantMsg::OfferTimer { offer_id });
                    replace_timer(&mut self.offer_timer, timer);
                }
                InformantEffect::WrapUpTimer { token, after_ms } => {
                    myself.send_after(Duration::from_millis(after_ms), move || InformantMsg::WrapUpTimer { token });
                }
                InformantEffect::CollectTimer { generation, after_ms } => {
                    let timer = myself
                        .send_after(Duration::from_millis(after_ms), move || InformantMsg::CollectTimer { generation });
                    replace_timer(&mut self.collect_timer, timer);
                }
            }
        }
        if self.core.state() != Held::Reserved
            && let Some(timer) = self.offer_timer.take()
        {
            timer.abort();
        }
        if !self.core.collecting()
            && let Some(timer) = self.collect_timer.take()
        {
            timer.abort();
        }
    }
}

/// Keeps the new timer, cancelling the one it replaces.
fn replace_timer(slot: &mut Option<Timer>, timer: Timer) {
    if let Some(old) = slot.replace(timer) {
        old.abort();
    }
}

/// How an informant's refusal reads to a client.
pub fn informant_error(err: InformantError) -> NodeError {
    match err {
        InformantError::NoSuchOffer(id) => {
            NodeError::precondition(format!("no pending offer {id:?} (expired, withdrawn, or not yours)"))
        }
        InformantError::NotHolder(id) => NodeError::precondition(format!("the informant does not hold call {id:?}")),
        InformantError::WrongState(state) => NodeError::precondition(format!("not allowed while {state:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ractor keeps an actor's state inline in the actor's tokio task, which
    /// tokio allocates in steps of 128 bytes. With ractor 0.16 and tokio 1.54
    /// a state of up to 248 bytes keeps every informant's task at 896 bytes;
    /// a bigger one makes it 1,024 (see the Memory section of
    /// `docs/benchmarks.md`). Rarely used parts go behind a `Box`.
    #[test]
    fn the_state_stays_within_its_budget() {
        const STATE_BUDGET_BYTES: usize = 248;
        let size = std::mem::size_of::<InformantState>();
        assert!(size <= STATE_BUDGET_BYTES, "InformantState is {size} bytes: every informant's task would grow");
    }
}
