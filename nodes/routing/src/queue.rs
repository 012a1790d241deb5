//! One queue's state machine: its waiting line, its calls' lives, its pool
//! of available informants, and its service history.
//!
//! Invariants this machine keeps (checked by `check_invariants` in tests and
//! by the property tests):
//! - a call is in the line exactly while it is waiting, proposed or offered;
//! - a call is proposed or offered to at most one informant, and an
//!   informant in the pool has no proposal from this queue;
//! - every call that leaves the queue leaves through exactly one terminal
//!   event (completed, abandoned, deflected) or a move to another queue.

use std::collections::HashMap;
use std::sync::Arc;

use crate::Millis;
use crate::call::{CallEvent, CallEventKind, CallInfo, CallKey, EventLog};
use crate::config::QueueConfig;
use crate::line::{LineEntry, WaitingLine};
use crate::pool::{AvailablePool, PoolEntry};
use crate::skills::{Requirement, SkillSet};
use crate::stats::{RecentFigures, ServiceHistory};

/// Reasons given to the gateway and informants.
pub mod reason {
    pub const QUEUE_FULL: &str = "queue_full";
    pub const MAX_WAIT: &str = "max_wait";
    pub const CALLER_HUNG_UP: &str = "caller_hung_up";
    pub const TRANSFERRED: &str = "transferred";
    pub const TRANSFER: &str = "transfer";
    pub const OVERFLOW: &str = "overflow";
    /// The informant did not answer a proposal in time (see
    /// [`super::PROPOSAL_TIMEOUT_MS`]), or answered after it.
    pub const NO_ANSWER: &str = "no_answer";
    /// The informant held the offer past its expiry and the queue heard
    /// nothing (see [`super::OFFER_GRACE_MS`]).
    pub const EXPIRED: &str = "expired";
    /// The queue moved to another member, which does not know the offer.
    pub const HANDED_OVER: &str = "handed_over";
}

/// How long a queue holds a call for an informant's answer to a proposal.
/// An informant answers within its collect window
/// ([`crate::informant::COLLECT_TIMEOUT_MS`]); an informant that does not
/// answer by then is out of reach (its member cut off from this one while
/// it still holds its lease): the call goes back to its place and is
/// proposed to someone else, so that one unreachable informant does not
/// hold the head of the line.
pub const PROPOSAL_TIMEOUT_MS: Millis = crate::informant::COLLECT_TIMEOUT_MS + 1_000;
/// How long past an offer's expiry the queue waits for the informant's
/// word (accepted, missed, declined) before taking the call back itself.
pub const OFFER_GRACE_MS: Millis = 2_000;

/// Position updates are sent at most this often per call...
pub const POSITION_UPDATE_MS: Millis = 1_000;
/// ...and at most this many times, which bounds a waiting call's event log
/// (and memory) however long it waits.
pub const MAX_POSITION_UPDATES: u32 = 16;

/// The id of a call's `n`-th proposal: `<call_id>/<n>`.
fn offer_id(call_id: &str, n: u32) -> Arc<str> {
    format!("{call_id}/{n}").into()
}

/// Whether `offer_id` names a proposal of `call_id`.
pub fn offers_call(offer_id: &str, call_id: &str) -> bool {
    offer_id
        .strip_prefix(call_id)
        .and_then(|n| n.strip_prefix('/'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Where a call of this queue stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    Waiting,
    /// Held for one informant, who has not said yes or no.
    Proposed {
        informant_id: Arc<str>,
        offer_id: Arc<str>,
        /// When the queue chose the informant: the offered event, if the
        /// informant takes the proposal, is stamped with it, so that calls
        /// are offered in the order the queue served them.
        since_ms: Millis,
    },
    /// The informant took the proposal: it is their pending offer.
    Offered {
        informant_id: Arc<str>,
        offer_id: Arc<str>,
        since_ms: Millis,
    },
    Connected {
        informant_id: Arc<str>,
        since_ms: Millis,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallState {
    Queued,
    Offered,
    Connected,
    Completed,
    Abandoned,
    Deflected,
}

/// A live call of this queue.
#[derive(Clone, Debug)]
pub struct CallRecord {
    pub info: CallInfo,
    pub key: CallKey,
    /// When the call entered this queue (overflow and relaxation count from
    /// here; service level and max wait count from `info.arrived_ms`).
    pub entered_ms: Millis,
    pub phase: Phase,
    pub events: EventLog,
    /// Informant still on the line during a warm transfer.
    pub transfer_from: Option<Arc<str>>,
    pub relax_steps: usize,
    /// Proposals made for this call so far, across queues (offer ids).
    pub proposals: u32,
    pub last_position: u32,
    /// Position updates recorded so far, and when the last one was.
    pub position_updates: u32,
    pub last_position_update_ms: Millis,
}

/// A call as shown to clients.
#[derive(Clone, Debug, PartialEq)]
pub struct CallSnapshot {
    pub info: CallInfo,
    pub queue_id: Arc<str>,
    pub state: CallState,
    pub informant_id: Option<Arc<str>>,
    pub last_sequence: u64,
    pub position: u32,
    pub deflect_reason: Option<Arc<str>>,
}

/// What a queue proposes to an informant.
#[derive(Clone, Debug, PartialEq)]
pub struct Proposal {
    pub offer_id: Arc<str>,
    pub queue_id: Arc<str>,
    pub key: CallKey,
    /// Availability generation of the informant this answers to.
    pub generation: u64,
    pub call: CallInfo,
    pub waited_ms: Millis,
    pub offer_timeout_ms: Millis,
    pub wrap_up_ms: Millis,
    pub max_missed_offers: u32,
}

/// A call leaving for another queue, with everything it keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovedCall {
    pub info: CallInfo,
    pub events: EventLog,
    pub transfer_from: Option<Arc<str>>,
    pub proposals: u32,
}

/// What a queue's next owner needs to take a live call over after a
/// failure: everything the gateway and the informants were told about it.
/// An offer in progress is not kept: the call is proposed again. A proposal
/// in progress is kept as the informant and the time the queue chose her,
/// so that the next owner tells that the call was served then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurableCall {
    /// The queue that holds the call (or that it is moving to).
    pub queue_id: Arc<str>,
    pub call: MovedCall,
    /// Arrival sequence in the queue: breaks ties between calls that arrived
    /// in the same millisecond. 0 for a call still moving to the queue.
    pub seq: u64,
    /// When the call entered the queue.
    pub entered_ms: Millis,
    /// The informant the call is connected to, and since when.
    pub connected: Option<(Arc<str>, Millis)>,
    /// The informant the call is proposed to, unanswered, and since when.
    pub proposed: Option<(Arc<str>, Millis)>,
}

/// What the queue asks its surroundings to do.
#[derive(Clone, Debug)]
pub enum QueueEffect {
    Propose {
        informant_id: Arc<str>,
        proposal: Proposal,
    },
    /// Answer to an availability announcement: nothing to propose.
    NothingFor {
        informant_id: Arc<str>,
        generation: u64,
    },
    WithdrawOffer {
        informant_id: Arc<str>,
        call_id: Arc<str>,
        offer_id: Arc<str>,
        reason: &'static str,
    },
    /// The call the informant holds has ended or was handed over.
    EndCall {
        informant_id: Arc<str>,
        call_id: Arc<str>,
        reason: &'static str,
    },
    /// A recorded call event, for watchers.
    Event {
        call_id: Arc<str>,
        event: CallEvent,
    },
    /// The call ended (its last event is terminal); forget it.
    Ended {
        snapshot: Box<CallSnapshot>,
        events: EventLog,
    },
    /// The call moves to another queue (overflow).
    MoveOut {
        to_queue_id: Arc<str>,
        call: Box<MovedCall>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("no live call {0:?} in this queue")]
    UnknownCall(Arc<str>),
    #[error("call {0:?} is not offered to this informant with this offer")]
    NotYourOffer(Arc<str>),
    #[error("call {0:?} is not held by this informant")]
    NotHolder(Arc<str>),
    #[error("call {0:?} is not connected")]
    NotConnected(Arc<str>),
    #[error("call {0:?} already exists")]
    Duplicate(Arc<str>),
}

/// Live statistics of a queue.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueFigures {
    pub waiting: u32,
    pub offered: u32,
    pub connected: u32,
    pub longest_wait_ms: Millis,
    pub offered_total: u64,
    pub answered_total: u64,
    pub abandoned_total: u64,
    pub deflected_total: u64,
    pub recent: RecentFigures,
    pub occupancy: f64,
    pub informants_logged_in: u32,
    pub informants_available: u32,
    pub estimated_wait_ms: Millis,
}

pub struct QueueCore {
    config: QueueConfig,
    listening_skill: Arc<str>,
    line: WaitingLine,
    calls: HashMap<Arc<str>, CallRecord>,
    pool: AvailablePool,
    /// Logged-in informants who hold the queue's skill names.
    members: HashMap<Arc<str>, SkillSet>,
    /// Informant -> the call proposed or offered to it by this queue. A
    /// queue holds at most one call for an informant at a time.
    holders: HashMap<Arc<str>, Arc<str>>,
    /// Informant -> the call of this queue it is connected to.
    talking: HashMap<Arc<str>, Arc<str>>,
    history: ServiceHistory,
    next_seq: u64,
    started_ms: Millis,
    /// The call of this queue's latest proposal: a proposal refused while
    /// it is still the latest overtook no one.
    last_proposed: Option<Arc<str>>,
}

impl QueueCore {
    pub fn new(config: QueueConfig, listening_skill: Arc<str>, now: Millis) -> Self {
        let pool = AvailablePool::new(config.selection, config.required.clone(), listening_skill.clone());
        Self {
            config,
            listening_skill,
            line: WaitingLine::default(),
            calls: HashMap::new(),
            pool,
            members: HashMap::new(),
            holders: HashMap::new(),
            talking: HashMap::new(),
            history: ServiceHistory::default(),
            next_seq: 0,
            started_ms: now,
            last_proposed: None,
        }
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    pub fn id(&self) -> &Arc<str> {
        &self.config.id
    }

    /// Totals since this core started (calls offered, answered...): cheap,
    /// unlike [`Self::figures`].
    pub fn history(&self) -> &ServiceHistory {
        &self.history
    }

    pub fn live_calls(&self) -> usize {
        self.calls.len()
    }

    pub fn call(&self, call_id: &str) -> Option<&CallRecord> {
        self.calls.get(call_id)
    }

    pub fn calls(&self) -> impl Iterator<Item = &CallRecord> {
        self.calls.values()
    }

    pub fn line(&self) -> &WaitingLine {
        &self.line
    }

    pub fn pool(&self) -> &AvailablePool {
        &self.pool
    }

    /// Whether an informant with these skills belongs to this queue.
    pub fn admits(&self, skills: &SkillSet) -> bool {
        skills.covers_names(&self.config.required)
    }

    /// What an informant needs for `info` after waiting `waited_ms` here.
    fn requirement_for(&self, info: &CallInfo, waited_ms: Millis) -> Requirement {
        let mut req = self.config.requirement_after(waited_ms);
        if !info.language.is_empty() {
            req = req.with(format!("lang:{}", info.language), 1);
        }
        if info.vulnerable {
            req = req.with(self.listening_skill.clone(), 1);
        }
        req
    }

    fn record_event(&mut self, call_id: &Arc<str>, now: Millis, kind: CallEventKind, fx: &mut Vec<QueueEffect>) {
        if let Some(record) = self.calls.get_mut(call_id)
            && let Some(event) = record.events.record(now, kind)
        {
            fx.push(QueueEffect::Event { call_id: call_id.clone(), event });
        }
    }

    fn snapshot_of(&self, record: &CallRecord, state: CallState, deflect_reason: Option<Arc<str>>) -> CallSnapshot {
        let informant_id = match &record.phase {
            Phase::Offered { informant_id, .. } | Phase::Connected { informant_id, .. } => Some(informant_id.clone()),
            Phase::Waiting | Phase::Proposed { .. } => None,
        };
        let position = if self.line.get(&record.key).is_some() { self.line.position(&record.key) } else { 0 };
        CallSnapshot {
            info: record.info.clone(),
            queue_id: self.config.id.clone(),
            state,
            informant_id,
            last_sequence: record.events.last_sequence(),
            position,
            deflect_reason,
        }
    }

    /// The call as it stands, if it lives here.
    pub fn snapshot(&self, call_id: &str) -> Option<CallSnapshot> {
        let record = self.calls.get(call_id)?;
        let state = match record.phase {
            Phase::Waiting | Phase::Proposed { .. } => CallState::Queued,
            Phase::Offered { .. } => CallState::Offered,
            Phase::Connected { .. } => CallState::Connected,
        };
        Some(self.snapshot_of(record, state, None))
    }

    /// Removes a call that has just recorded its terminal event.
    fn finish(&mut self, call_id: &Arc<str>, state: CallState, reason: Option<Arc<str>>, fx: &mut Vec<QueueEffect>) {
        if let Some(record) = self.calls.get(call_id) {
            let snapshot = self.snapshot_of(record, state, reason);
            self.line.remove(&record.key);
            if let Some(record) = self.calls.remove(call_id) {
                if let Phase::Connected { informant_id, .. } = &record.phase {
                    self.talking.remove(informant_id);
                }
                fx.push(QueueEffect::Ended { snapshot: Box::new(snapshot), events: record.events });
            }
        }
    }

    fn queued_event(&self, key: &CallKey, queue_id: Arc<str>, now: Millis) -> (u32, CallEventKind) {
        let position = self.line.position(key);
        let estimated_wait_ms = self.history.estimated_wait_ms(now, position, self.members.len(), self.pool.len());
        (position, CallEventKind::Queued { queue_id, position, estimated_wait_ms })
    }

    /// A new call from a gateway. Deflects it when the queue is full, unless
    /// the caller is vulnerable. The caller checks `call_id` is new.
    pub fn offer_call(&mut self, info: CallInfo, now: Millis) -> Result<(CallSnapshot, Vec<QueueEffect>), QueueError> {
        if self.calls.contains_key(&info.call_id) {
            return Err(QueueError::Duplicate(info.call_id));
        }
        let mut fx = Vec::new();
        self.history.offered();
        let call_id = info.call_id.clone();
        if !info.vulnerable && self.line.len() >= self.config.max_waiting as usize {
            self.history.deflected();
            let mut events = EventLog::default();
            let reason: Arc<str> = reason::QUEUE_FULL.into();
            if let Some(event) = events.record(now, CallEventKind::Deflected { reason: reason.clone() }) {
                fx.push(QueueEffect::Event { call_id: call_id.clone(), event });
            }
            let snapshot = CallSnapshot {
                info,
                queue_id: self.config.id.clone(),
                state: CallState::Deflected,
                informant_id: None,
                last_sequence: events.last_sequence(),
                position: 0,
                deflect_reason: Some(reason),
            };
            fx.push(QueueEffect::Ended { snapshot: Box::new(snapshot.clone()), events });
            return Ok((snapshot, fx));
        }
        self.enter(info, EventLog::default(), None, 0, now, &mut fx);
        let snapshot = self.snapshot(&call_id).ok_or(QueueError::UnknownCall(call_id))?;
        Ok((snapshot, fx))
    }

    /// The call as its queue's next owner would need it.
    pub fn durable(&self, call_id: &str) -> Option<DurableCall> {
        let record = self.calls.get(call_id)?;
        Some(DurableCall {
            queue_id: self.config.id.clone(),
            call: MovedCall {
                info: record.info.clone(),
                events: record.events.clone(),
                transfer_from: record.transfer_from.clone(),
                proposals: record.proposals,
            },
            seq: record.key.seq,
            entered_ms: record.entered_ms,
            connected: match &record.phase {
                Phase::Connected { informant_id, since_ms } => Some((informant_id.clone(), *since_ms)),
                _ => None,
            },
            proposed: match &record.phase {
                Phase::Proposed { informant_id, since_ms, .. } => Some((informant_id.clone(), *since_ms)),
                _ => None,
            },
        })
    }

    /// Takes over calls another owner of this queue held, as it last wrote
    /// them: each keeps its place in line (rank, arrival, sequence), its
    /// events and, when connected, its informant. Calls waiting are proposed
    /// as informants announce themselves. The only events recorded are for
    /// a call that was proposed, unanswered: the previous owner served it
    /// then, which its log must say before any younger call is offered (an
    /// unanswered offer to her at that time, then queued, as when a proposal
    /// is taken back). She is sent a withdrawal of that proposal (reason
    /// `handed_over`): her yes may have gone to the previous owner, and she
    /// would otherwise hold the offer until it expires.
    pub fn restore(&mut self, calls: Vec<DurableCall>, now: Millis) -> Vec<QueueEffect> {
        let mut fx = Vec::new();
        let mut served = Vec::new();
        for durable in calls {
            let call_id = durable.call.info.call_id.clone();
            if self.calls.contains_key(&call_id) || durable.call.events.is_ended() {
                continue;
            }
            let info = durable.call.info;
            let seq = if durable.seq == 0 {
                self.next_seq += 1;
                self.next_seq
            } else {
                self.next_seq = self.next_seq.max(durable.seq);
                durable.seq
            };
            let key =
                CallKey { rank: CallKey::rank_of(info.priority, info.vulnerable), arrived_ms: info.arrived_ms, seq };
            let waited_here = now.saturating_sub(durable.entered_ms);
            let phase = match durable.connected {
                Some((informant_id, since_ms)) => {
                    self.talking.insert(informant_id.clone(), call_id.clone());
                    Phase::Connected { informant_id, since_ms }
                }
                None => {
                    self.line.insert(key, LineEntry::new(call_id.clone(), self.requirement_for(&info, waited_here)));
                    if let Some((informant_id, since_ms)) = durable.proposed {
                        let offer = offer_id(&call_id, durable.call.proposals);
                        served.push((call_id.clone(), key, informant_id, offer, since_ms));
                    }
                    Phase::Waiting
                }
            };
            let position_updates =
                durable.call.events.after(0).iter().filter(|e| matches!(e.kind, CallEventKind::Queued { .. })).count();
            self.calls.insert(
                call_id,
                CallRecord {
                    info,
                    key,
                    entered_ms: durable.entered_ms,
                    phase,
                    events: durable.call.events,
                    transfer_from: durable.call.transfer_from,
                    relax_steps: self.config.relaxation_steps_passed(waited_here),
                    proposals: durable.call.proposals,
                    last_position: 0,
                    position_updates: u32::try_from(position_updates).unwrap_or(u32::MAX),
                    last_position_update_ms: now,
                },
            );
        }
        // Once every call is in line, so that positions count them all.
        for (call_id, key, informant_id, offer_id, proposed_at) in served {
            fx.push(QueueEffect::WithdrawOffer {
                informant_id: informant_id.clone(),
                call_id: call_id.clone(),
                offer_id,
                reason: reason::HANDED_OVER,
            });
            self.tell_unanswered(&call_id, &key, informant_id, proposed_at, now, &mut fx);
        }
        fx
    }

    /// A call moved here from another queue (overflow or transfer). Never
    /// deflected for a full queue: the caller was already accepted.
    pub fn adopt(&mut self, call: MovedCall, now: Millis) -> Vec<QueueEffect> {
        let mut fx = Vec::new();
        if self.calls.contains_key(&call.info.call_id) {
            return fx;
        }
        self.enter(call.info, call.events, call.transfer_from, call.proposals, now, &mut fx);
        fx
    }

    fn enter(
        &mut self,
        info: CallInfo,
        events: EventLog,
        transfer_from: Option<Arc<str>>,
        proposals: u32,
        now: Millis,
        fx: &mut Vec<QueueEffect>,
    ) {
        self.next_seq += 1;
        let key = CallKey {
            rank: CallKey::rank_of(info.priority, info.vulnerable),
            arrived_ms: info.arrived_ms,
            seq: self.next_seq,
        };
        let requirement = self.requirement_for(&info, 0);
        let call_id = info.call_id.clone();
        self.line.insert(key, LineEntry::new(call_id.clone(), requirement));
        self.calls.insert(
            call_id.clone(),
            CallRecord {
                info,
                key,
                entered_ms: now,
                phase: Phase::Waiting,
                events,
                transfer_from,
                relax_steps: 0,
                proposals,
                last_position: 0,
                position_updates: 0,
                last_position_update_ms: now,
            },
        );
        let (position, event) = self.queued_event(&key, self.config.id.clone(), now);
        if let Some(record) = self.calls.get_mut(&call_id) {
            record.last_position = position;
        }
        self.record_event(&call_id, now, event, fx);
        self.dispatch_call(&call_id, now, fx);
    }

    /// Proposes the call to the best pooled informant, if any suits it.
    /// The informant found may suit a better call than this one (a call
    /// ahead whose requirement relaxed, or whose decline cooled off, since
    /// it was last dispatched): it is proposed its best call, so that no
    /// informant ever gets a call while a better one it suits waits.
    fn dispatch_call(&mut self, call_id: &Arc<str>, now: Millis, fx: &mut Vec<QueueEffect>) {
        // Each round takes one informant out of the pool, so this ends.
        loop {
            let Some(record) = self.calls.get(call_id) else { return };
            let Some(entry) = self.line.get(&record.key) else { return };
            if entry.busy {
                return;
            }
            let Some(informant) = self.pool.best_for(&entry.requirement, &entry.passed_over(now)) else { return };
            let (informant_id, generation) = (informant.informant_id.clone(), informant.generation);
            let best = self
                .line
                .best_for(&informant_id, &informant.skills, now)
                .and_then(|key| self.line.get(&key))
                .map_or_else(|| call_id.clone(), |e| e.call_id.clone());
            self.propose(&best, informant_id, generation, now, fx);
            if &best == call_id {
                return;
            }
            // This call still waits: look for the next informant for it.
        }
    }

    fn propose(
        &mut self,
        call_id: &Arc<str>,
        informant_id: Arc<str>,
        generation: u64,
        now: Millis,
        fx: &mut Vec<QueueEffect>,
    ) {
        self.pool.remove(&informant_id);
        let Some(record) = self.calls.get_mut(call_id) else { return };
        self.holders.insert(informant_id.clone(), call_id.clone());
        record.proposals += 1;
        let offer_id = offer_id(call_id, record.proposals);
        record.phase =
            Phase::Proposed { informant_id: informant_id.clone(), offer_id: offer_id.clone(), since_ms: now };
        self.last_proposed = Some(call_id.clone());
        if let Some(entry) = self.line.get_mut(&record.key) {
            entry.busy = true;
        }
        let proposal = Proposal {
            offer_id,
            queue_id: self.config.id.clone(),
            key: record.key,
            generation,
            call: record.info.clone(),
            waited_ms: now.saturating_sub(record.info.arrived_ms),
            offer_timeout_ms: self.config.offer_timeout_ms,
            wrap_up_ms: self.config.wrap_up_ms,
            max_missed_offers: self.config.max_missed_offers,
        };
        fx.push(QueueEffect::Propose { informant_id, proposal });
    }

    /// An informant logged in and holds the queue's skill names.
    /// An informant joins the queue. On a new `login`, a call still held
    /// for it was held for its earlier login, which ended without a logout
    /// (its member died): the call goes back to its place. (An informant
    /// that leaves and joins again within one login — the queue restarted,
    /// its queues changed — will still answer what it was proposed.)
    pub fn join(&mut self, informant_id: Arc<str>, skills: SkillSet, login: bool, now: Millis) -> Vec<QueueEffect> {
        let fx = if login { self.release_held(&informant_id, now) } else { Vec::new() };
        self.members.insert(informant_id, skills);
        fx
    }

    /// An informant no longer belongs to the queue. When it logged out, a
    /// call held for it goes back to its place: its answer can no longer
    /// come (an informant's messages arrive in order, and this is its last;
    /// a proposal on its way to it is lost with it).
    pub fn leave(&mut self, informant_id: &str, logged_out: bool, now: Millis) -> Vec<QueueEffect> {
        self.members.remove(informant_id);
        self.pool.remove(informant_id);
        if logged_out { self.release_held(informant_id, now) } else { Vec::new() }
    }

    /// Every informant this queue knows of: those that joined, and those
    /// it holds a call for.
    pub fn informants(&self) -> impl Iterator<Item = &Arc<str>> {
        self.members.keys().chain(self.holders.keys().filter(|id| !self.members.contains_key(*id)))
    }

    /// Puts a call held for `informant_id` back at its place: a proposal
    /// is taken back (and told as an unanswered offer, so the gateway
    /// learns the call was served to her), an offer ends as if unanswered.
    fn release_held(&mut self, informant_id: &str, now: Millis) -> Vec<QueueEffect> {
        let Some(call_id) = self.holders.get(informant_id).cloned() else { return Vec::new() };
        match self.calls.get(&call_id).map(|r| &r.phase) {
            Some(Phase::Proposed { .. }) => {
                let mut fx = Vec::new();
                self.take_back(&call_id, now, None, &mut fx);
                self.dispatch_call(&call_id, now, &mut fx);
                fx
            }
            Some(Phase::Offered { offer_id, .. }) => {
                let offer_id = offer_id.clone();
                self.offer_ended(&call_id, &offer_id, informant_id, false, now)
            }
            _ => Vec::new(),
        }
    }

    /// An informant says it is available: propose the best call it suits,
    /// or keep it in the pool and say there is nothing.
    pub fn available(&mut self, entry: PoolEntry, now: Millis) -> Vec<QueueEffect> {
        let mut fx = Vec::new();
        let informant_id = entry.informant_id.clone();
        let generation = entry.generation;
        if !self.members.contains_key(&informant_id) {
            // Only informants who joined are served; an announcement that
            // overtook nothing but a logout still gets its answer.
            fx.push(QueueEffect::NothingFor { informant_id, generation });
            return fx;
        }
        if self.holders.contains_key(&informant_id) {
            // A proposal to it is still unanswered; it will answer that one.
            fx.push(QueueEffect::NothingFor { informant_id, generation });
            return fx;
        }
        if let Some(call_id) = self.talking.get(&informant_id).cloned() {
            // An informant announces itself only once it has finished its
            // calls, and its finish reaches this queue before its
            // announcement: a call still connected to it lost its finish
            // (this queue was taken over from a member that died after the
            // informant finished). It ends now, as completed.
            self.end_talk(&call_id, &informant_id, now, &mut fx);
        }
        match self.line.best_for(&informant_id, &entry.skills, now) {
            Some(key) => {
                let call_id = self.line.get(&key).map(|e| e.call_id.clone());
                if let Some(call_id) = call_id {
                    self.propose(&call_id, informant_id, generation, now, &mut fx);
                }
            }
            None => {
                self.pool.insert(entry);
                fx.push(QueueEffect::NothingFor { informant_id, generation });
            }
        }
        fx
    }

    /// The informant is no longer available (took another offer, paused).
    pub fn unavailable(&mut self, informant_id: &str) {
        self.pool.remove(informant_id);
    }

    /// The informant's answer to a proposal.
    pub fn proposal_answered(
        &mut self,
        call_id: &Arc<str>,
        offer_id: &str,
        informant_id: &str,
        accepted: bool,
        now: Millis,
    ) -> Vec<QueueEffect> {
        let mut fx = Vec::new();
        let phase = self.calls.get(call_id).map(|r| &r.phase);
        let matches = matches!(phase, Some(Phase::Proposed { informant_id: i, offer_id: o, .. }) if i.as_ref() == informant_id && o.as_ref() == offer_id);
        if !matches {
            // A yes to a proposal this queue no longer holds for the
            // informant (it gave up waiting, or the call ended or left):
            // the informant now holds an offer no one will connect. Tell
            // it, so that it is free again at once rather than when the
            // offer expires.
            let connected_to_it =
                matches!(phase, Some(Phase::Connected { informant_id: i, .. }) if i.as_ref() == informant_id);
            if accepted && !connected_to_it {
                fx.push(QueueEffect::WithdrawOffer {
                    informant_id: informant_id.into(),
                    call_id: call_id.clone(),
                    offer_id: offer_id.into(),
                    reason: reason::NO_ANSWER,
                });
            }
            return fx;
        }
        let Some(record) = self.calls.get_mut(call_id) else { return fx };
        let Phase::Proposed { informant_id, offer_id, since_ms } = std::mem::replace(&mut record.phase, Phase::Waiting)
        else {
            return fx;
        };
        if accepted {
            record.phase = Phase::Offered { informant_id: informant_id.clone(), offer_id, since_ms: now };
            let kind = CallEventKind::Offered { informant_id, unanswered: false };
            self.record_event(call_id, since_ms, kind, &mut fx);
        } else {
            let key = record.key;
            self.unhold(&key, &informant_id);
            if self.last_proposed.as_ref() != Some(call_id) {
                // Another call was proposed while this one waited for her
                // answer: the gateway hears that this one was served first
                // (to her, who did not take it), as for a proposal taken
                // back unanswered, and that it is back in line.
                self.tell_unanswered(call_id, &key, informant_id, since_ms, now, &mut fx);
            }
            self.dispatch_call(call_id, now, &mut fx);
        }
        fx
    }

    /// The informant accepted its offer: connect the call. Returns the
    /// queue's wrap-up time.
    pub fn connect(
        &mut self,
        call_id: &Arc<str>,
        offer_id: &str,
        informant_id: &str,
        now: Millis,
    ) -> Result<Vec<QueueEffect>, QueueError> {
        let record = self.calls.get_mut(call_id).ok_or_else(|| QueueError::UnknownCall(call_id.clone()))?;
        let informant = match &record.phase {
            Phase::Offered { informant_id: i, offer_id: o, .. }
                if i.as_ref() == informant_id && o.as_ref() == offer_id =>
            {
                i.clone()
            }
            // Asked again (the first answer was lost, or the queue was
            // taken over since): nothing changes.
            Phase::Connected { informant_id: i, .. } if i.as_ref() == informant_id => return Ok(Vec::new()),
            // The informant's yes to the proposal was lost (its queue failed
            // over meanwhile): connecting says yes too.
            Phase::Proposed { informant_id: i, offer_id: o, .. }
                if i.as_ref() == informant_id && o.as_ref() == offer_id =>
            {
                let offered = self.proposal_answered(call_id, offer_id, informant_id, true, now);
                let mut fx = self.connect(call_id, offer_id, informant_id, now)?;
                fx.splice(0..0, offered);
                return Ok(fx);
            }
            _ => return Err(QueueError::NotYourOffer(call_id.clone())),
        };
        let mut fx = Vec::new();
        record.phase = Phase::Connected { informant_id: informant.clone(), since_ms: now };
        self.talking.insert(informant.clone(), call_id.clone());
        let waited_ms = now.saturating_sub(record.info.arrived_ms);
        let key = record.key;
        let handed_over = record.transfer_from.take();
        self.holders.remove(&informant);
        self.line.remove(&key);
        self.history.answered(now, waited_ms);
        self.record_event(call_id, now, CallEventKind::Connected { informant_id: informant, waited_ms }, &mut fx);
        if let Some(first) = handed_over {
            fx.push(QueueEffect::EndCall {
                informant_id: first,
                call_id: call_id.clone(),
                reason: reason::TRANSFERRED,
            });
        }
        Ok(fx)
    }

    /// The informant declined or missed its offer: the call goes back to its
    /// place in line and is proposed again. An informant who declined is
    /// passed over for the call during the cool-off; one who missed it is
    /// not (missing offers in a row pauses them instead).
    pub fn offer_ended(
        &mut self,
        call_id: &Arc<str>,
        offer_id: &str,
        informant_id: &str,
        declined: bool,
        now: Millis,
    ) -> Vec<QueueEffect> {
        let mut fx = Vec::new();
        let Some(record) = self.calls.get_mut(call_id) else { return fx };
        // Still proposed, when the informant's yes was lost.
        let matches = matches!(&record.phase,
            Phase::Offered { informant_id: i, offer_id: o, .. } | Phase::Proposed { informant_id: i, offer_id: o, .. }
                if i.as_ref() == informant_id && o.as_ref() == offer_id);
        if !matches {
            return fx;
        }
        record.phase = Phase::Waiting;
        let key = record.key;
        self.unhold(&key, informant_id);
        if declined && let Some(entry) = self.line.get_mut(&key) {
            entry.remember_decline(informant_id.into(), now);
        }
        // The gateway heard the call offered to her: it hears it is back
        // in line, before it is offered to anyone else.
        self.tell_back_in_line(call_id, &key, now, &mut fx);
        self.dispatch_call(call_id, now, &mut fx);
        fx
    }

    /// Undoes what [`Self::propose`] marked: the informant holds nothing of
    /// this queue's, and the call at `key` may be proposed again.
    fn unhold(&mut self, key: &CallKey, informant_id: &str) {
        self.holders.remove(informant_id);
        if let Some(entry) = self.line.get_mut(key) {
            entry.busy = false;
        }
    }

    /// Tells a proposal that ended unanswered: the call was offered to
    /// `informant_id` at `proposed_at` (the queue served it then) and is
    /// back in line.
    fn tell_unanswered(
        &mut self,
        call_id: &Arc<str>,
        key: &CallKey,
        informant_id: Arc<str>,
        proposed_at: Millis,
        now: Millis,
        fx: &mut Vec<QueueEffect>,
    ) {
        self.record_event(call_id, proposed_at, CallEventKind::Offered { informant_id, unanswered: true }, fx);
        self.tell_back_in_line(call_id, key, now, fx);
    }

    /// Tells the gateway a call held for an informant is back in line, at
    /// its position.
    fn tell_back_in_line(&mut self, call_id: &Arc<str>, key: &CallKey, now: Millis, fx: &mut Vec<QueueEffect>) {
        let (position, event) = self.queued_event(key, self.config.id.clone(), now);
        if let Some(record) = self.calls.get_mut(call_id) {
            record.last_position = position;
        }
        self.record_event(call_id, now, event, fx);
    }

    /// The caller hung up: a call not yet connected is abandoned, a
    /// connected one is completed.
    pub fn hang_up(&mut self, call_id: &Arc<str>, now: Millis) -> Result<(CallSnapshot, Vec<QueueEffect>), QueueError> {
        let record = self.calls.get(call_id).ok_or_else(|| QueueError::UnknownCall(call_id.clone()))?;
        let mut fx = Vec::new();
        let phase = record.phase.clone();
        let waited_ms = now.saturating_sub(record.info.arrived_ms);
        if let Some(first) = record.transfer_from.clone() {
            fx.push(QueueEffect::EndCall {
                informant_id: first,
                call_id: call_id.clone(),
                reason: reason::CALLER_HUNG_UP,
            });
        }
        let proposed_at = match &phase {
            Phase::Proposed { since_ms, .. } => Some(*since_ms),
            _ => None,
        };
        let state = match phase {
            Phase::Connected { informant_id, since_ms } => {
                self.history.talked(now, now.saturating_sub(since_ms));
                fx.push(QueueEffect::EndCall {
                    informant_id,
                    call_id: call_id.clone(),
                    reason: reason::CALLER_HUNG_UP,
                });
                self.record_event(call_id, now, CallEventKind::Completed, &mut fx);
                CallState::Completed
            }
            Phase::Proposed { informant_id, offer_id, .. } | Phase::Offered { informant_id, offer_id, .. } => {
                self.holders.remove(&informant_id);
                if let Some(at) = proposed_at {
                    // Served to her, who had not answered yet.
                    let kind = CallEventKind::Offered { informant_id: informant_id.clone(), unanswered: true };
                    self.record_event(call_id, at, kind, &mut fx);
                }
                fx.push(QueueEffect::WithdrawOffer {
                    informant_id,
                    call_id: call_id.clone(),
                    offer_id,
                    reason: reason::CALLER_HUNG_UP,
                });
                self.history.abandoned(now, waited_ms);
                self.record_event(call_id, now, CallEventKind::Abandoned { waited_ms }, &mut fx);
                CallState::Abandoned
            }
            Phase::Waiting => {
                self.history.abandoned(now, waited_ms);
                self.record_event(call_id, now, CallEventKind::Abandoned { waited_ms }, &mut fx);
                CallState::Abandoned
            }
        };
        self.finish(call_id, state, None, &mut fx);
        let snapshot = match fx.iter().find_map(|e| match e {
            QueueEffect::Ended { snapshot, .. } => Some(snapshot.as_ref().clone()),
            _ => None,
        }) {
            Some(s) => s,
            None => return Err(QueueError::UnknownCall(call_id.clone())),
        };
        Ok((snapshot, fx))
    }

    /// The informant finished the call. During a warm transfer the first
    /// informant may also leave: the caller goes on waiting for the second.
    pub fn complete(
        &mut self,
        call_id: &Arc<str>,
        informant_id: &str,
        now: Millis,
    ) -> Result<Vec<QueueEffect>, QueueError> {
        let record = self.calls.get_mut(call_id).ok_or_else(|| QueueError::UnknownCall(call_id.clone()))?;
        if record.transfer_from.as_deref() == Some(informant_id) {
            record.transfer_from = None;
            return Ok(Vec::new());
        }
        if !matches!(&record.phase, Phase::Connected { informant_id: i, .. } if i.as_ref() == informant_id) {
            return Err(QueueError::NotHolder(call_id.clone()));
        }
        let mut fx = Vec::new();
        self.end_talk(call_id, informant_id, now, &mut fx);
        Ok(fx)
    }

    /// Completes a call connected to `informant_id`.
    fn end_talk(&mut self, call_id: &Arc<str>, informant_id: &str, now: Millis, fx: &mut Vec<QueueEffect>) {
        let since_ms = match self.calls.get(call_id).map(|r| &r.phase) {
            Some(Phase::Connected { informant_id: i, since_ms }) if i.as_ref() == informant_id => *since_ms,
            _ => return,
        };
        self.history.talked(now, now.saturating_sub(since_ms));
        self.record_event(call_id, now, CallEventKind::Completed, fx);
        self.finish(call_id, CallState::Completed, None, fx);
    }

    /// Flags the caller as vulnerable: top rank, listening skill required.
    pub fn mark_vulnerable(
        &mut self,
        call_id: &Arc<str>,
        now: Millis,
    ) -> Result<(CallSnapshot, Vec<QueueEffect>), QueueError> {
        let record = self.calls.get_mut(call_id).ok_or_else(|| QueueError::UnknownCall(call_id.clone()))?;
        let mut fx = Vec::new();
        if !record.info.vulnerable {
            record.info.vulnerable = true;
            let old_key = record.key;
            let waited_here = now.saturating_sub(record.entered_ms);
            if let Some(mut entry) = self.line.remove(&old_key) {
                let info = record.info.clone();
                let new_key = CallKey { rank: CallKey::rank_of(info.priority, true), ..old_key };
                entry.requirement = self.requirement_for(&info, waited_here);
                self.line.insert(new_key, entry);
                if let Some(record) = self.calls.get_mut(call_id) {
                    record.key = new_key;
                }
                self.dispatch_call(call_id, now, &mut fx);
            }
        }
        let snapshot = self.snapshot(call_id).ok_or_else(|| QueueError::UnknownCall(call_id.clone()))?;
        Ok((snapshot, fx))
    }

    /// Warm transfer of a connected call to `to_queue_id`: the call leaves
    /// this queue, its informant stays on the line until the target
    /// connects it.
    pub fn transfer_out(
        &mut self,
        call_id: &Arc<str>,
        to_queue_id: Arc<str>,
        now: Millis,
    ) -> Result<(MovedCall, Vec<QueueEffect>), QueueError> {
        let record = self.calls.get(call_id).ok_or_else(|| QueueError::UnknownCall(call_id.clone()))?;
        let Phase::Connected { informant_id, since_ms } = record.phase.clone() else {
            return Err(QueueError::NotConnected(call_id.clone()));
        };
        self.talking.remove(&informant_id);
        let mut fx = Vec::new();
        self.history.talked(now, now.saturating_sub(since_ms));
        let kind = CallEventKind::Transferred {
            from_queue_id: self.config.id.clone(),
            to_queue_id,
            reason: reason::TRANSFER.into(),
        };
        self.record_event(call_id, now, kind, &mut fx);
        let record = self.calls.remove(call_id).ok_or_else(|| QueueError::UnknownCall(call_id.clone()))?;
        let moved = MovedCall {
            info: record.info,
            events: record.events,
            transfer_from: Some(informant_id),
            proposals: record.proposals,
        };
        Ok((moved, fx))
    }

    /// Periodic work: overflow, maximum wait, relaxation, position updates.
    /// `overflow_ready` says whether the overflow target can take calls now;
    /// when it cannot, calls stay here.
    pub fn tick(&mut self, now: Millis, overflow_ready: bool) -> Vec<QueueEffect> {
        let mut fx = Vec::new();
        let mut overflow = Vec::new();
        let mut deflect = Vec::new();
        let mut relaxed = Vec::new();
        let mut moved_up = Vec::new();
        let mut unanswered = Vec::new();
        let mut cooled: Vec<Arc<str>> = Vec::new();
        let declined: Vec<CallKey> =
            self.line.iter().filter(|(_, e)| !e.declined_by.is_empty()).map(|(k, _)| *k).collect();
        for key in declined {
            if let Some(entry) = self.line.get_mut(&key)
                && entry.forget_old_declines(now)
                && !entry.busy
            {
                cooled.push(entry.call_id.clone());
            }
        }
        for (index, (key, entry)) in self.line.iter().enumerate() {
            let position = u32::try_from(index + 1).unwrap_or(u32::MAX);
            let Some(record) = self.calls.get(&entry.call_id) else { continue };
            if entry.busy {
                if self.held_too_long(&record.phase, now) {
                    unanswered.push(entry.call_id.clone());
                }
                continue;
            }
            let waited_here = now.saturating_sub(record.entered_ms);
            let waited = now.saturating_sub(record.info.arrived_ms);
            if let Some(rule) = &self.config.overflow
                && overflow_ready
                && waited_here >= rule.after_ms
            {
                overflow.push((entry.call_id.clone(), rule.queue_id.clone()));
            } else if !record.info.vulnerable && self.config.max_wait_ms > 0 && waited >= self.config.max_wait_ms {
                deflect.push(entry.call_id.clone());
            } else {
                if self.config.relaxation_steps_passed(waited_here) > record.relax_steps {
                    relaxed.push((*key, entry.call_id.clone(), waited_here));
                }
                if position != record.last_position
                    && record.position_updates < MAX_POSITION_UPDATES
                    && now.saturating_sub(record.last_position_update_ms) >= POSITION_UPDATE_MS
                {
                    moved_up.push((*key, entry.call_id.clone(), position));
                }
            }
        }
        // Every call taken back is in line again before any is proposed
        // (below, once requirements have relaxed), so that each informant
        // is proposed the best of them.
        for call_id in &unanswered {
            self.take_back(call_id, now, None, &mut fx);
        }
        for (call_id, to_queue_id) in overflow {
            let kind = CallEventKind::Transferred {
                from_queue_id: self.config.id.clone(),
                to_queue_id: to_queue_id.clone(),
                reason: reason::OVERFLOW.into(),
            };
            self.record_event(&call_id, now, kind, &mut fx);
            if let Some(record) = self.calls.remove(&call_id) {
                self.line.remove(&record.key);
                let call = MovedCall {
                    info: record.info,
                    events: record.events,
                    transfer_from: record.transfer_from,
                    proposals: record.proposals,
                };
                fx.push(QueueEffect::MoveOut { to_queue_id, call: Box::new(call) });
            }
        }
        for call_id in deflect {
            self.history.deflected();
            let reason: Arc<str> = reason::MAX_WAIT.into();
            self.record_event(&call_id, now, CallEventKind::Deflected { reason: reason.clone() }, &mut fx);
            if let Some(first) = self.calls.get(&call_id).and_then(|r| r.transfer_from.clone()) {
                fx.push(QueueEffect::EndCall {
                    informant_id: first,
                    call_id: call_id.clone(),
                    reason: reason::CALLER_HUNG_UP,
                });
            }
            self.finish(&call_id, CallState::Deflected, Some(reason), &mut fx);
        }
        for (key, call_id, waited_here) in relaxed {
            let Some(record) = self.calls.get(&call_id) else { continue };
            let requirement = self.requirement_for(&record.info, waited_here);
            let steps = self.config.relaxation_steps_passed(waited_here);
            if let Some(entry) = self.line.get_mut(&key) {
                entry.requirement = requirement;
            }
            if let Some(record) = self.calls.get_mut(&call_id) {
                record.relax_steps = steps;
            }
            self.dispatch_call(&call_id, now, &mut fx);
        }
        for call_id in cooled.iter().chain(&unanswered) {
            self.dispatch_call(call_id, now, &mut fx);
        }
        for (key, call_id, position) in moved_up {
            if self.line.get(&key).is_none_or(|e| e.busy) {
                continue;
            }
            let estimated_wait_ms = self.history.estimated_wait_ms(now, position, self.members.len(), self.pool.len());
            if let Some(record) = self.calls.get_mut(&call_id) {
                record.last_position = position;
                record.position_updates += 1;
                record.last_position_update_ms = now;
            }
            self.record_event(
                &call_id,
                now,
                CallEventKind::Queued { queue_id: self.config.id.clone(), position, estimated_wait_ms },
                &mut fx,
            );
        }
        fx
    }

    /// The queue hands its calls over to another owner, which knows
    /// neither its proposals nor its offers (it proposes those calls again,
    /// and refuses an accept of this owner's offer). So each call held for
    /// an informant is taken back now and withdrawn from her (reason
    /// `handed_over`): a proposal still unanswered is told as an unanswered
    /// offer, and every one is told queued again before the hand-over's
    /// last batch — otherwise the gateway would hear that the call left
    /// its informant only once the next owner wrote it, after that owner
    /// may have offered her another call. The calls are not proposed again
    /// here.
    pub fn take_back_held(&mut self, now: Millis) -> Vec<QueueEffect> {
        let mut fx = Vec::new();
        let held: Vec<Arc<str>> = self
            .calls
            .values()
            .filter(|r| matches!(r.phase, Phase::Proposed { .. } | Phase::Offered { .. }))
            .map(|r| r.info.call_id.clone())
            .collect();
        for call_id in held {
            self.take_back(&call_id, now, Some(reason::HANDED_OVER), &mut fx);
        }
        fx
    }

    /// Whether a call held for an informant has waited past the time its
    /// answer could come in: a proposal past [`PROPOSAL_TIMEOUT_MS`], an
    /// offer past its expiry and [`OFFER_GRACE_MS`].
    fn held_too_long(&self, phase: &Phase, now: Millis) -> bool {
        match phase {
            Phase::Proposed { since_ms, .. } => now.saturating_sub(*since_ms) >= PROPOSAL_TIMEOUT_MS,
            Phase::Offered { since_ms, .. } => {
                now.saturating_sub(*since_ms) >= self.config.offer_timeout_ms.saturating_add(OFFER_GRACE_MS)
            }
            Phase::Waiting | Phase::Connected { .. } => false,
        }
    }

    /// Takes back a call held for an informant that does not answer: the
    /// call goes back to its place (to be proposed again), the informant is
    /// told its proposal or offer is withdrawn (if it can hear it) and is
    /// not pooled again until it announces itself. The queue stays the only
    /// one to connect the call: a late yes or accept from the informant no
    /// longer matches and is refused.
    ///
    /// The gateway is told what happened: a proposal left unanswered is
    /// recorded as an unanswered offer to that informant, at the time the
    /// queue chose her (the queue served the call then), and the call is
    /// queued again. `why` overrides the withdrawal's reason.
    fn take_back(&mut self, call_id: &Arc<str>, now: Millis, why: Option<&'static str>, fx: &mut Vec<QueueEffect>) {
        let Some(record) = self.calls.get_mut(call_id) else { return };
        let key = record.key;
        let (informant_id, offer_id, default_why, proposed_at) =
            match std::mem::replace(&mut record.phase, Phase::Waiting) {
                Phase::Proposed { informant_id, offer_id, since_ms } => {
                    (informant_id, offer_id, reason::NO_ANSWER, Some(since_ms))
                }
                Phase::Offered { informant_id, offer_id, .. } => (informant_id, offer_id, reason::EXPIRED, None),
                other => {
                    record.phase = other;
                    return;
                }
            };
        self.unhold(&key, &informant_id);
        fx.push(QueueEffect::WithdrawOffer {
            informant_id: informant_id.clone(),
            call_id: call_id.clone(),
            offer_id,
            reason: why.unwrap_or(default_why),
        });
        match proposed_at {
            Some(at) => self.tell_unanswered(call_id, &key, informant_id, at, now, fx),
            None => self.tell_back_in_line(call_id, &key, now, fx),
        }
    }

    /// Replaces the configuration; waiting calls keep their place and get
    /// their requirement recomputed.
    pub fn reconfigure(&mut self, config: QueueConfig, now: Millis) -> Vec<QueueEffect> {
        let mut fx = Vec::new();
        self.pool.reconfigure(config.selection, config.required.clone());
        self.config = config;
        let waiting: Vec<(CallKey, Arc<str>)> = self.line.iter().map(|(k, e)| (*k, e.call_id.clone())).collect();
        for (key, call_id) in &waiting {
            let Some(record) = self.calls.get(call_id) else { continue };
            let requirement = self.requirement_for(&record.info, now.saturating_sub(record.entered_ms));
            if let Some(entry) = self.line.get_mut(key) {
                entry.requirement = requirement;
            }
        }
        for (_, call_id) in waiting {
            self.dispatch_call(&call_id, now, &mut fx);
        }
        fx
    }

    pub fn figures(&self, now: Millis) -> QueueFigures {
        let (mut waiting, mut offered, mut connected) = (0u32, 0u32, 0u32);
        let mut longest_wait_ms = 0;
        let mut talking_ms = 0;
        for record in self.calls.values() {
            match &record.phase {
                Phase::Waiting | Phase::Proposed { .. } => waiting += 1,
                Phase::Offered { .. } => offered += 1,
                Phase::Connected { since_ms, .. } => {
                    connected += 1;
                    talking_ms += now.saturating_sub(*since_ms).min(crate::stats::WINDOW_MS);
                }
            }
            if !matches!(record.phase, Phase::Connected { .. }) {
                longest_wait_ms = longest_wait_ms.max(now.saturating_sub(record.info.arrived_ms));
            }
        }
        let window = now.saturating_sub(self.started_ms).clamp(1, crate::stats::WINDOW_MS);
        let staffed = window * self.members.len() as u64;
        let busy = self.history.recent_talk_ms(now) + talking_ms;
        QueueFigures {
            waiting,
            offered,
            connected,
            longest_wait_ms,
            offered_total: self.history.offered_total,
            answered_total: self.history.answered_total,
            abandoned_total: self.history.abandoned_total,
            deflected_total: self.history.deflected_total,
            recent: self.history.recent(now, self.config.service_level_threshold_ms),
            occupancy: if staffed == 0 { 0.0 } else { (busy as f64 / staffed as f64).min(1.0) },
            informants_logged_in: u32::try_from(self.members.len()).unwrap_or(u32::MAX),
            informants_available: u32::try_from(self.pool.len()).unwrap_or(u32::MAX),
            estimated_wait_ms: self.history.estimated_wait_ms(
                now,
                u32::try_from(self.line.len() + 1).unwrap_or(u32::MAX),
                self.members.len(),
                self.pool.len(),
            ),
        }
    }

    /// Checks the machine's invariants; used by tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.line.len() != self.calls.values().filter(|r| !matches!(r.phase, Phase::Connected { .. })).count() {
            return Err("line and non-connected calls differ".into());
        }
        let mut holders = std::collections::HashSet::new();
        for record in self.calls.values() {
            let in_line = self.line.get(&record.key);
            match &record.phase {
                Phase::Connected { informant_id, .. } => {
                    if in_line.is_some() {
                        return Err(format!("connected call {} still in line", record.info.call_id));
                    }
                    if self.talking.get(informant_id) != Some(&record.info.call_id) {
                        return Err(format!("talking index misses {informant_id}"));
                    }
                }
                Phase::Waiting => {
                    if in_line.is_none_or(|e| e.busy) {
                        return Err(format!("waiting call {} missing from line or busy", record.info.call_id));
                    }
                }
                Phase::Proposed { informant_id, .. } | Phase::Offered { informant_id, .. } => {
                    if in_line.is_none_or(|e| !e.busy) {
                        return Err(format!("held call {} missing from line or not busy", record.info.call_id));
                    }
                    if !holders.insert(informant_id.clone()) {
                        return Err(format!("informant {informant_id} holds two calls of this queue"));
                    }
                    if self.holders.get(informant_id) != Some(&record.info.call_id) {
                        return Err(format!("holder index misses {informant_id}"));
                    }
                    if self.pool.get(informant_id).is_some() {
                        return Err(format!("informant {informant_id} pooled while proposed a call"));
                    }
                }
            }
        }
        if holders.len() != self.holders.len() {
            return Err("holder index has stale entries".into());
        }
        let connected = self.calls.values().filter(|r| matches!(r.phase, Phase::Connected { .. })).count();
        if connected != self.talking.len() {
            return Err("talking index has stale entries".into());
        }
        Ok(())
    }
}
