//! The queue actor: hosts one [`QueueCore`], its calls' watchers, and its
//! housekeeping tick.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use relais_routing::call::{CallEvent, CallInfo};
use relais_routing::pool::PoolEntry;
use relais_routing::queue::{CallSnapshot, MovedCall, QueueCore, QueueEffect, QueueError, QueueFigures};
use relais_routing::{QueueConfig, SkillSet};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::actors::informant::InformantMsg;
use crate::clock::now_ms;
use crate::directory::{Addr, Directory};
use crate::error::NodeError;

/// A gateway's stream of one call's events.
pub type Watcher = mpsc::Sender<CallEvent>;

/// Most watchers of one call at once.
pub const MAX_WATCHERS_PER_CALL: usize = 4;
/// Events buffered per watcher before a slow watcher is dropped (it
/// reconnects with its last sequence and loses nothing). Room for a whole
/// call's log, so a replay always fits.
pub const WATCHER_BUFFER: usize = relais_routing::EventLog::MAX_EVENTS + 16;

pub enum QueueMsg {
    Offer {
        info: CallInfo,
        reply: RpcReplyPort<Result<CallSnapshot, QueueError>>,
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
    },
    Leave {
        informant_id: Arc<str>,
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
    Complete {
        informant_id: Arc<str>,
        call_id: Arc<str>,
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
}

pub struct QueueArgs {
    pub tenant: Arc<str>,
    pub config: QueueConfig,
    pub listening_skill: Arc<str>,
    pub directory: Arc<Directory>,
    pub tick_ms: u64,
}

pub struct QueueState {
    tenant: Arc<str>,
    core: QueueCore,
    directory: Arc<Directory>,
    watchers: HashMap<Arc<str>, Vec<Watcher>>,
    ticker: JoinHandle<()>,
    /// To take back a call another member's queue did not adopt.
    myself: ActorRef<QueueMsg>,
}

pub struct QueueActor;

impl Actor for QueueActor {
    type Msg = QueueMsg;
    type State = QueueState;
    type Arguments = QueueArgs;

    async fn pre_start(&self, myself: ActorRef<QueueMsg>, args: QueueArgs) -> Result<QueueState, ActorProcessingErr> {
        let ticker = myself.send_interval(Duration::from_millis(args.tick_ms), || QueueMsg::Tick);
        Ok(QueueState {
            myself: myself.clone(),
            core: QueueCore::new(args.config, args.listening_skill, now_ms()),
            tenant: args.tenant,
            directory: args.directory,
            watchers: HashMap::new(),
            ticker,
        })
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
            QueueMsg::Offer { info, reply } => match state.core.offer_call(info, now) {
                Ok((snapshot, fx)) => {
                    state.apply(fx);
                    let _ = reply.send(Ok(snapshot));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            QueueMsg::Adopt { call, watchers } => {
                let call_id = call.info.call_id.clone();
                state.directory.move_call(&state.tenant, &call_id, state.core.id());
                if !watchers.is_empty() {
                    state.watchers.insert(call_id, watchers);
                }
                let fx = state.core.adopt(*call, now);
                state.apply(fx);
            }
            QueueMsg::GetCall { call_id, reply } => {
                let _ = reply.send(state.core.snapshot(&call_id));
            }
            QueueMsg::HangUp { call_id, reply } => {
                let result = state.core.hang_up(&call_id, now).map(|(snapshot, fx)| {
                    state.apply(fx);
                    snapshot
                });
                let _ = reply.send(result);
            }
            QueueMsg::MarkVulnerable { call_id, reply } => {
                let result = state.core.mark_vulnerable(&call_id, now).map(|(snapshot, fx)| {
                    state.apply(fx);
                    snapshot
                });
                let _ = reply.send(result);
            }
            QueueMsg::Transfer { call_id, to_queue_id, reply } => {
                let _ = reply.send(state.transfer(&call_id, to_queue_id, now));
            }
            QueueMsg::Watch { call_id, after, sink, reply } => {
                let _ = reply.send(state.watch(call_id, after, sink));
            }
            QueueMsg::Join { informant_id, skills } => state.core.join(informant_id, skills),
            QueueMsg::Leave { informant_id } => state.core.leave(&informant_id),
            QueueMsg::Announce(entry) => {
                let fx = state.core.available(entry, now);
                state.apply(fx);
            }
            QueueMsg::Unavailable { informant_id } => state.core.unavailable(&informant_id),
            QueueMsg::Answer { informant_id, call_id, offer_id, accepted } => {
                let fx = state.core.proposal_answered(&call_id, &offer_id, &informant_id, accepted, now);
                state.apply(fx);
            }
            QueueMsg::OfferEnded { informant_id, call_id, offer_id, declined } => {
                let fx = state.core.offer_ended(&call_id, &offer_id, &informant_id, declined, now);
                state.apply(fx);
            }
            QueueMsg::Complete { informant_id, call_id } => match state.core.complete(&call_id, &informant_id, now) {
                Ok(fx) => state.apply(fx),
                Err(e) => {
                    tracing::debug!(call_id = %call_id, informant_id = %informant_id, error = %e, "complete ignored")
                }
            },
            QueueMsg::Connect { informant_id, call_id, offer_id, reply } => {
                let result = state.core.connect(&call_id, &offer_id, &informant_id, now).map(|fx| state.apply(fx));
                let _ = reply.send(result);
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
            }
        }
        Ok(())
    }
}

impl QueueState {
    fn informant(&self, id: &Arc<str>) -> Option<Addr<InformantMsg>> {
        self.directory.informant_addr(&self.tenant, id)
    }

    /// Carries out the core's effects, and those their failures produce.
    fn apply(&mut self, fx: Vec<QueueEffect>) {
        let mut work: VecDeque<QueueEffect> = fx.into();
        let now = now_ms();
        while let Some(effect) = work.pop_front() {
            match effect {
                QueueEffect::Propose { informant_id, proposal } => {
                    let (call_id, offer_id) = (proposal.call.call_id.clone(), proposal.offer_id.clone());
                    let to = self.informant(&informant_id);
                    let sent = to.as_ref().is_some_and(|a| a.cast(InformantMsg::Propose(Box::new(proposal))));
                    if !sent {
                        // As good as a refusal. An informant gone since it
                        // announced itself leaves; one on another member
                        // whose link is full or broken for a moment stays
                        // (it announces itself again).
                        if !matches!(to, Some(Addr::Remote(_))) {
                            self.core.leave(&informant_id);
                        }
                        work.extend(self.core.proposal_answered(&call_id, &offer_id, &informant_id, false, now));
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
                }
                QueueEffect::Ended { snapshot, events } => {
                    // Dropping the watchers ends their streams after the
                    // terminal event they were just sent.
                    self.watchers.remove(&snapshot.info.call_id);
                    tracing::debug!(call_id = %snapshot.info.call_id, state = ?snapshot.state, "call ended");
                    self.directory.end_call(&self.tenant, *snapshot, events);
                }
                QueueEffect::MoveOut { to_queue_id, call } => {
                    let watchers = self.watchers.remove(&call.info.call_id).unwrap_or_default();
                    work.extend(self.send_to_queue(to_queue_id, call, watchers, now));
                }
            }
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
        if !watchers.is_empty() {
            self.watchers.insert(call_id, watchers);
        }
        self.core.adopt(call, now)
    }

    fn transfer(&mut self, call_id: &Arc<str>, to_queue_id: Arc<str>, now: u64) -> Result<CallSnapshot, NodeError> {
        if self.directory.queue_addr(&self.tenant, &to_queue_id).is_none() {
            return Err(NodeError::not_found("queue", to_queue_id.as_ref()));
        }
        if &to_queue_id == self.core.id() {
            return Err(NodeError::invalid("queue_id", "the call is already in this queue"));
        }
        let (moved, fx) = self.core.transfer_out(call_id, to_queue_id.clone(), now).map_err(queue_error)?;
        let mut snapshot = CallSnapshot {
            info: moved.info.clone(),
            queue_id: to_queue_id.clone(),
            state: relais_routing::queue::CallState::Queued,
            informant_id: None,
            last_sequence: moved.events.last_sequence(),
            position: 0,
            deflect_reason: None,
        };
        self.apply(fx);
        let watchers = self.watchers.remove(call_id).unwrap_or_default();
        let kept_here = self.send_to_queue(to_queue_id, Box::new(moved), watchers, now);
        if !kept_here.is_empty() {
            snapshot.queue_id = self.core.id().clone();
            self.apply(kept_here);
        }
        Ok(snapshot)
    }

    fn watch(&mut self, call_id: Arc<str>, after: u64, sink: Watcher) -> Result<(), NodeError> {
        let Some(record) = self.core.call(&call_id) else {
            return Err(NodeError::not_found("call", call_id.as_ref()));
        };
        let list = self.watchers.entry(call_id).or_default();
        list.retain(|w| !w.is_closed());
        if list.len() >= MAX_WATCHERS_PER_CALL {
            return Err(NodeError::ResourceExhausted(format!("at most {MAX_WATCHERS_PER_CALL} watchers per call")));
        }
        for event in record.events.after(after) {
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
