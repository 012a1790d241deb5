//! One informant's state machine: what it holds, and the answers it gives
//! to the queues' proposals.
//!
//! Invariant: an informant holds at most one offer or call. It is
//! structural — the phase holds at most one — and every proposal gets
//! exactly one answer (accepted or refused), unless its queue withdrew it
//! first.
//!
//! Invariant: the desktop's session hears only of what the desktop did not
//! cause itself. A change of state that a desktop request caused is told by
//! that request's reply and produces no [`SessionEvent::State`]; an offer
//! implies the reserved state and produces no state event either. Every
//! other change of state (a timer, a queue, the caller) produces one. Each
//! entry point names the `Cause` of the changes it makes, and one function
//! (`InformantCore::enter`) applies the rule.

use std::sync::Arc;

use crate::Millis;
use crate::pool::PoolEntry;
use crate::queue::Proposal;
use crate::skills::SkillSet;

/// How long an informant waits for every queue to answer its availability
/// before choosing among the proposals it has.
pub const COLLECT_TIMEOUT_MS: Millis = 1_000;

/// Pause reason set after too many missed offers.
pub const MISSED: &str = "missed";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InformantState {
    Offline,
    Available,
    Reserved,
    OnCall,
    WrapUp,
    Paused,
}

/// Answers to an announcement, boxed in the phase: an informant collects
/// for at most `COLLECT_TIMEOUT_MS` after each announcement and is idle
/// much longer, and its actor holds the phase inline.
#[derive(Clone, Debug, PartialEq)]
struct Collecting {
    generation: u64,
    /// Queues that have not answered this generation yet.
    awaiting: Vec<Arc<str>>,
    proposals: Vec<Proposal>,
    /// A proposal was withdrawn meanwhile: if nothing is taken, announce
    /// again.
    ask_again: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Phase {
    Offline,
    Available { collecting: Option<Box<Collecting>> },
    Reserved { offer: Box<Proposal> },
    OnCall { call_id: Arc<str>, queue_id: Arc<str>, wrap_up_ms: Millis },
    WrapUp { token: u64, until_ms: Millis },
    Paused { reason: Arc<str> },
}

/// What of an informant's state outlives its member (in a cluster it is
/// kept in etcd, and a login after the member died starts from it): a
/// pause and its reason, or a wrap-up and when it ends. A call it is on is
/// kept by the call's queue (see [`OngoingCall`]); an offer is not kept
/// (the queue offers the call again).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Standing {
    #[default]
    Free,
    Paused {
        reason: Arc<str>,
    },
    WrapUp {
        until_ms: Millis,
    },
}

/// A call an informant is connected to, as its queue holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OngoingCall {
    pub call_id: Arc<str>,
    pub queue_id: Arc<str>,
    pub since_ms: Millis,
    /// The queue's wrap-up time, for after the call.
    pub wrap_up_ms: Millis,
}

/// The informant as shown to clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InformantSnapshot {
    pub informant_id: Arc<str>,
    pub state: InformantState,
    pub reason: Option<Arc<str>>,
    pub in_state_ms: Millis,
    pub call_id: Option<Arc<str>>,
    pub offer_id: Option<Arc<str>>,
    pub calls_handled: u64,
    pub missed_in_row: u32,
    pub skills: SkillSet,
}

/// What the informant's desktop is told on its session.
#[derive(Clone, Debug, PartialEq)]
pub enum SessionEvent {
    /// A change of state the desktop did not cause (see the module's
    /// invariant), or the snapshot that opens a session.
    State(InformantSnapshot),
    Offer {
        proposal: Box<Proposal>,
        expires_in_ms: Millis,
    },
    OfferWithdrawn {
        offer_id: Arc<str>,
        reason: Arc<str>,
    },
    CallEnded {
        call_id: Arc<str>,
        reason: Arc<str>,
    },
}

/// What the informant asks its surroundings to do.
#[derive(Clone, Debug, PartialEq)]
pub enum InformantEffect {
    Join {
        queue_id: Arc<str>,
        skills: SkillSet,
        /// A new login: whatever the queue held for an earlier login of
        /// this informant is void.
        login: bool,
    },
    Leave {
        queue_id: Arc<str>,
        /// The informant logs out: it will answer nothing any more.
        logged_out: bool,
    },
    Announce {
        queue_id: Arc<str>,
        entry: PoolEntry,
    },
    Unavailable {
        queue_id: Arc<str>,
    },
    Answer {
        queue_id: Arc<str>,
        call_id: Arc<str>,
        offer_id: Arc<str>,
        accepted: bool,
    },
    /// The offer was declined (`declined`) or missed.
    OfferEnded {
        queue_id: Arc<str>,
        call_id: Arc<str>,
        offer_id: Arc<str>,
        declined: bool,
    },
    /// The informant finished its call. `queue_id` connected it; a call
    /// transferred since lives elsewhere, so the call's queue is looked up
    /// by id first where that is known.
    Complete {
        call_id: Arc<str>,
        queue_id: Arc<str>,
    },
    Session(SessionEvent),
    OfferTimer {
        offer_id: Arc<str>,
        after_ms: Millis,
    },
    WrapUpTimer {
        token: u64,
        after_ms: Millis,
    },
    CollectTimer {
        generation: u64,
        after_ms: Millis,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InformantError {
    #[error("no pending offer {0:?}")]
    NoSuchOffer(Arc<str>),
    #[error("the informant does not hold call {0:?}")]
    NotHolder(Arc<str>),
    #[error("not allowed while {0:?}")]
    WrongState(InformantState),
}

/// What caused a change of state; it decides how the desktop hears of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    /// The desktop's own request: the request's reply carries the new
    /// state, so the session is not told.
    Request,
    /// An offer: the offer event itself tells the desktop it is reserved.
    Offer,
    /// Anything else (a queue, a timer, the caller, the node): the session
    /// is told with a state event.
    Elsewhere,
}

/// Where an accepted offer must be connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectTicket {
    pub queue_id: Arc<str>,
    pub call_id: Arc<str>,
    pub offer_id: Arc<str>,
}

pub struct InformantCore {
    id: Arc<str>,
    skills: SkillSet,
    queues: Box<[Arc<str>]>,
    phase: Phase,
    since_ms: Millis,
    generation: u64,
    missed_in_row: u32,
    calls_handled: u64,
    logged_in_ms: Millis,
    /// Time spent on calls since login, up to the last call's end.
    busy_ms: Millis,
    call_started_ms: Millis,
    next_token: u64,
    /// The last call she was on, once it ended (by her desktop, by the
    /// caller, or handed over): a finish of it asked again is answered, not
    /// refused. Boxed, as one pointer: every informant's actor holds this
    /// state inline (see the node's state budget).
    ended_call: Option<Box<Arc<str>>>,
}

impl InformantCore {
    pub fn new(id: Arc<str>, skills: SkillSet, now: Millis) -> Self {
        Self {
            id,
            skills,
            queues: Box::default(),
            phase: Phase::Offline,
            since_ms: now,
            generation: 0,
            missed_in_row: 0,
            calls_handled: 0,
            logged_in_ms: now,
            busy_ms: 0,
            call_started_ms: now,
            next_token: 0,
            ended_call: None,
        }
    }

    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    pub fn skills(&self) -> &SkillSet {
        &self.skills
    }

    pub fn queues(&self) -> &[Arc<str>] {
        &self.queues
    }

    pub fn state(&self) -> InformantState {
        match &self.phase {
            Phase::Offline => InformantState::Offline,
            Phase::Available { .. } => InformantState::Available,
            Phase::Reserved { .. } => InformantState::Reserved,
            Phase::OnCall { .. } => InformantState::OnCall,
            Phase::WrapUp { .. } => InformantState::WrapUp,
            Phase::Paused { .. } => InformantState::Paused,
        }
    }

    /// Whether the informant is waiting for queues to answer its
    /// availability.
    pub fn collecting(&self) -> bool {
        matches!(self.phase, Phase::Available { collecting: Some(_) })
    }

    /// The call offered or held, if any.
    pub fn current_call(&self) -> Option<&Arc<str>> {
        match &self.phase {
            Phase::Reserved { offer } => Some(&offer.call.call_id),
            Phase::OnCall { call_id, .. } => Some(call_id),
            _ => None,
        }
    }

    pub fn snapshot(&self, now: Millis) -> InformantSnapshot {
        let (reason, call_id, offer_id) = match &self.phase {
            Phase::Paused { reason } => (Some(reason.clone()), None, None),
            Phase::Reserved { offer } => (None, Some(offer.call.call_id.clone()), Some(offer.offer_id.clone())),
            Phase::OnCall { call_id, .. } => (None, Some(call_id.clone()), None),
            _ => (None, None, None),
        };
        InformantSnapshot {
            informant_id: self.id.clone(),
            state: self.state(),
            reason,
            in_state_ms: now.saturating_sub(self.since_ms),
            call_id,
            offer_id,
            calls_handled: self.calls_handled,
            missed_in_row: self.missed_in_row,
            skills: self.skills.clone(),
        }
    }

    /// The pending offer, to show a desktop that reconnects.
    pub fn pending_offer(&self, now: Millis) -> Option<SessionEvent> {
        match &self.phase {
            Phase::Reserved { offer } => Some(SessionEvent::Offer {
                proposal: offer.clone(),
                expires_in_ms: offer.offer_timeout_ms.saturating_sub(now.saturating_sub(self.since_ms)),
            }),
            _ => None,
        }
    }

    fn occupancy_permille(&self, now: Millis) -> u16 {
        let logged = now.saturating_sub(self.logged_in_ms).max(1);
        u16::try_from((self.busy_ms.min(logged) * 1000) / logged).unwrap_or(1000)
    }

    /// Enters `phase`; the session is told only when `cause` is neither the
    /// desktop's request nor an offer.
    fn enter(&mut self, phase: Phase, now: Millis, cause: Cause, fx: &mut Vec<InformantEffect>) {
        self.phase = phase;
        self.since_ms = now;
        if cause == Cause::Elsewhere {
            fx.push(InformantEffect::Session(SessionEvent::State(self.snapshot(now))));
        }
    }

    /// Becomes available and asks every queue for its best call.
    fn announce(&mut self, now: Millis, cause: Cause, fx: &mut Vec<InformantEffect>) {
        let collecting = self.next_collection();
        self.enter(Phase::Available { collecting }, now, cause, fx);
        self.ask_queues(now, fx);
    }

    /// Announces again while available, keeping the time it became idle
    /// (its rank for longest-idle) and telling the desktop nothing: its
    /// state does not change.
    fn announce_again(&mut self, now: Millis, fx: &mut Vec<InformantEffect>) {
        self.phase = Phase::Available { collecting: self.next_collection() };
        self.ask_queues(now, fx);
    }

    /// A new availability generation, and the collection of its answers.
    fn next_collection(&mut self) -> Option<Box<Collecting>> {
        self.generation += 1;
        (!self.queues.is_empty()).then(|| {
            Box::new(Collecting {
                generation: self.generation,
                awaiting: self.queues.to_vec(),
                proposals: Vec::new(),
                ask_again: false,
            })
        })
    }

    /// Tells every queue this informant is available, for the current
    /// generation, and bounds the wait for their answers.
    fn ask_queues(&self, now: Millis, fx: &mut Vec<InformantEffect>) {
        let entry = self.pool_entry(now);
        for queue_id in &self.queues {
            fx.push(InformantEffect::Announce { queue_id: queue_id.clone(), entry: entry.clone() });
        }
        if !self.queues.is_empty() {
            fx.push(InformantEffect::CollectTimer { generation: self.generation, after_ms: COLLECT_TIMEOUT_MS });
        }
    }

    /// This informant as a queue's pool holds it, for the current generation.
    fn pool_entry(&self, now: Millis) -> PoolEntry {
        PoolEntry {
            informant_id: self.id.clone(),
            skills: self.skills.clone(),
            idle_since_ms: self.since_ms.min(now),
            occupancy_permille: self.occupancy_permille(now),
            generation: self.generation,
        }
    }

    /// Leaves every queue's pool (the informant is no longer available).
    fn withdraw_from_pools(&self, fx: &mut Vec<InformantEffect>) {
        for queue_id in &self.queues {
            fx.push(InformantEffect::Unavailable { queue_id: queue_id.clone() });
        }
    }

    fn refuse(proposal: &Proposal, fx: &mut Vec<InformantEffect>) {
        fx.push(InformantEffect::Answer {
            queue_id: proposal.queue_id.clone(),
            call_id: proposal.call.call_id.clone(),
            offer_id: proposal.offer_id.clone(),
            accepted: false,
        });
    }

    fn take(&mut self, proposal: Proposal, now: Millis, fx: &mut Vec<InformantEffect>) {
        fx.push(InformantEffect::Answer {
            queue_id: proposal.queue_id.clone(),
            call_id: proposal.call.call_id.clone(),
            offer_id: proposal.offer_id.clone(),
            accepted: true,
        });
        self.withdraw_from_pools(fx);
        fx.push(InformantEffect::OfferTimer {
            offer_id: proposal.offer_id.clone(),
            after_ms: proposal.offer_timeout_ms,
        });
        let expires_in_ms = proposal.offer_timeout_ms;
        let offer = Box::new(proposal);
        self.enter(Phase::Reserved { offer: offer.clone() }, now, Cause::Offer, fx);
        fx.push(InformantEffect::Session(SessionEvent::Offer { proposal: offer, expires_in_ms }));
    }

    /// Logs in to `queues` (the tenant's queues whose skill names it holds).
    pub fn login(&mut self, queues: Vec<Arc<str>>, now: Millis) -> Vec<InformantEffect> {
        let mut fx = self.join_all(queues, now);
        self.announce(now, Cause::Request, &mut fx);
        fx
    }

    /// Logs in an informant whose earlier login ended with its member: it
    /// starts where its `standing` says (paused, or in its wrap-up until
    /// it ends), or available.
    pub fn login_standing(&mut self, queues: Vec<Arc<str>>, standing: Standing, now: Millis) -> Vec<InformantEffect> {
        match standing {
            Standing::Paused { reason } => {
                let mut fx = self.join_all(queues, now);
                self.enter(Phase::Paused { reason }, now, Cause::Request, &mut fx);
                fx
            }
            Standing::WrapUp { until_ms } if until_ms > now => {
                let mut fx = self.join_all(queues, now);
                self.wrap_up(until_ms, now, Cause::Request, &mut fx);
                fx
            }
            Standing::WrapUp { .. } | Standing::Free => self.login(queues, now),
        }
    }

    /// What of its state outlives its member.
    pub fn standing(&self) -> Standing {
        match &self.phase {
            Phase::Paused { reason } => Standing::Paused { reason: reason.clone() },
            Phase::WrapUp { until_ms, .. } => Standing::WrapUp { until_ms: *until_ms },
            _ => Standing::Free,
        }
    }

    /// Joins `queues` as a new login, announcing nothing yet.
    fn join_all(&mut self, queues: Vec<Arc<str>>, now: Millis) -> Vec<InformantEffect> {
        self.queues = queues.into_boxed_slice();
        self.logged_in_ms = now;
        self.queues
            .iter()
            .map(|queue_id| InformantEffect::Join {
                queue_id: queue_id.clone(),
                skills: self.skills.clone(),
                login: true,
            })
            .collect()
    }

    /// Enters a wrap-up that ends at `until_ms`.
    fn wrap_up(&mut self, until_ms: Millis, now: Millis, cause: Cause, fx: &mut Vec<InformantEffect>) {
        self.next_token += 1;
        let token = self.next_token;
        self.enter(Phase::WrapUp { token, until_ms }, now, cause, fx);
        fx.push(InformantEffect::WrapUpTimer { token, after_ms: until_ms.saturating_sub(now) });
    }

    /// Logs in an informant whose call goes on: its previous session ended
    /// with its member while it talked, and the call's queue still holds
    /// the call as connected to it. It is on that call again, as if it had
    /// never left, and announces itself when it finishes.
    pub fn login_on_call(&mut self, queues: Vec<Arc<str>>, call: OngoingCall, now: Millis) -> Vec<InformantEffect> {
        let mut fx = self.join_all(queues, now);
        self.call_started_ms = call.since_ms.min(now);
        let phase = Phase::OnCall { call_id: call.call_id, queue_id: call.queue_id, wrap_up_ms: call.wrap_up_ms };
        self.enter(phase, now, Cause::Request, &mut fx);
        fx
    }

    /// The tenant's queues changed: join the new ones, leave the gone ones.
    pub fn set_queues(&mut self, queues: Vec<Arc<str>>, now: Millis) -> Vec<InformantEffect> {
        let mut fx = Vec::new();
        if self.state() == InformantState::Offline {
            return fx;
        }
        for gone in self.queues.iter().filter(|q| !queues.contains(q)) {
            fx.push(InformantEffect::Leave { queue_id: gone.clone(), logged_out: false });
        }
        let added: Vec<Arc<str>> = queues.iter().filter(|q| !self.queues.contains(q)).cloned().collect();
        for queue_id in &added {
            fx.push(InformantEffect::Join { queue_id: queue_id.clone(), skills: self.skills.clone(), login: false });
        }
        self.queues = queues.into_boxed_slice();
        match &mut self.phase {
            Phase::Available { collecting: None } if !added.is_empty() => self.announce(now, Cause::Elsewhere, &mut fx),
            Phase::Available { collecting: Some(collecting) } => {
                // Mid-announcement: a queue left is no longer waited for, and
                // a queue joined hears the same announcement (it would
                // otherwise not know the informant is available).
                collecting.awaiting.retain(|q| self.queues.contains(q));
                collecting.awaiting.extend(added.iter().cloned());
                let entry = self.pool_entry(now);
                for queue_id in added {
                    fx.push(InformantEffect::Announce { queue_id, entry: entry.clone() });
                }
                if let Phase::Available { collecting: Some(c) } = &self.phase
                    && c.awaiting.is_empty()
                {
                    self.choose(now, &mut fx);
                }
            }
            _ => {}
        }
        fx
    }

    /// A queue proposes a call.
    pub fn proposed(&mut self, proposal: Proposal, now: Millis) -> Vec<InformantEffect> {
        let mut fx = Vec::new();
        match &mut self.phase {
            Phase::Available { collecting: None } => self.take(proposal, now, &mut fx),
            Phase::Available { collecting: Some(collecting) } => {
                if proposal.generation == collecting.generation {
                    collecting.awaiting.retain(|q| *q != proposal.queue_id);
                }
                collecting.proposals.push(proposal);
                if collecting.awaiting.is_empty() {
                    self.choose(now, &mut fx);
                }
            }
            _ => Self::refuse(&proposal, &mut fx),
        }
        fx
    }

    /// A queue has nothing for this generation.
    pub fn nothing_from(&mut self, queue_id: &str, generation: u64, now: Millis) -> Vec<InformantEffect> {
        let mut fx = Vec::new();
        if let Phase::Available { collecting: Some(collecting) } = &mut self.phase
            && collecting.generation == generation
        {
            collecting.awaiting.retain(|q| q.as_ref() != queue_id);
            if collecting.awaiting.is_empty() {
                self.choose(now, &mut fx);
            }
        }
        fx
    }

    /// Not every queue answered in time: choose among what came.
    pub fn collect_timed_out(&mut self, generation: u64, now: Millis) -> Vec<InformantEffect> {
        let mut fx = Vec::new();
        if matches!(&self.phase, Phase::Available { collecting: Some(c) } if c.generation == generation) {
            self.choose(now, &mut fx);
        }
        fx
    }

    /// Takes the best proposal (priority, then arrival, across queues) and
    /// refuses the rest. With nothing to take, it announces again when a
    /// proposal was withdrawn meanwhile, or when a queue never answered:
    /// its announcement or its answer was lost (a link broke, or a member
    /// could not prove its lease and dropped it), and that queue may not
    /// hold this informant in its pool — it would never be offered a call
    /// there again. (At most once per collect window while a queue stays
    /// out of reach.)
    fn choose(&mut self, now: Millis, fx: &mut Vec<InformantEffect>) {
        let Phase::Available { collecting } = &mut self.phase else { return };
        let Some(collecting) = collecting.take() else { return };
        let mut proposals = collecting.proposals;
        proposals.sort_by_key(|p| p.key);
        let mut proposals = proposals.into_iter();
        if let Some(best) = proposals.next() {
            for other in proposals {
                Self::refuse(&other, fx);
            }
            self.take(best, now, fx);
        } else if collecting.ask_again || !collecting.awaiting.is_empty() {
            self.announce_again(now, fx);
        }
    }

    /// The queue withdrew a proposal or offer (the caller hung up, or the
    /// queue gave up waiting for this informant's answer). A queue that
    /// proposed a call took the informant out of its pool: an informant
    /// still available when the withdrawal comes asks its queues again
    /// (at once, or when its collection ends without an offer), so that it
    /// is not left out of a queue's pool.
    pub fn withdrawn(&mut self, offer_id: &str, reason: &str, now: Millis) -> Vec<InformantEffect> {
        let mut fx = Vec::new();
        match &mut self.phase {
            Phase::Available { collecting: Some(collecting) } => {
                collecting.proposals.retain(|p| p.offer_id.as_ref() != offer_id);
                collecting.ask_again = true;
            }
            Phase::Available { collecting: None } => self.announce_again(now, &mut fx),
            Phase::Reserved { offer } if offer.offer_id.as_ref() == offer_id => {
                let offer_id = offer.offer_id.clone();
                fx.push(InformantEffect::Session(SessionEvent::OfferWithdrawn { offer_id, reason: reason.into() }));
                self.announce(now, Cause::Elsewhere, &mut fx);
            }
            _ => {}
        }
        fx
    }

    /// Whether the informant is on the call `offer_id` offered: an accept
    /// asked again (its first answer was lost) gets the same answer.
    pub fn accepted(&self, offer_id: &str) -> bool {
        matches!(&self.phase, Phase::OnCall { call_id, .. } if crate::queue::offers_call(offer_id, call_id))
    }

    /// Checks the desktop may accept `offer_id`; the caller then connects
    /// the call at its queue and reports with [`Self::connected`].
    pub fn accept(&self, offer_id: &str) -> Result<ConnectTicket, InformantError> {
        match &self.phase {
            Phase::Reserved { offer } if offer.offer_id.as_ref() == offer_id => Ok(ConnectTicket {
                queue_id: offer.queue_id.clone(),
                call_id: offer.call.call_id.clone(),
                offer_id: offer.offer_id.clone(),
            }),
            _ => Err(InformantError::NoSuchOffer(offer_id.into())),
        }
    }

    /// The outcome of connecting an accepted offer. When connected, the
    /// accept's reply tells the new state; when the call is gone, the
    /// accept fails and the session tells the withdrawal and the new state.
    pub fn connected(&mut self, ticket: &ConnectTicket, ok: bool, now: Millis) -> Vec<InformantEffect> {
        let mut fx = Vec::new();
        let Phase::Reserved { offer } = &self.phase else { return fx };
        if offer.offer_id != ticket.offer_id {
            return fx;
        }
        let wrap_up_ms = offer.wrap_up_ms;
        if ok {
            self.missed_in_row = 0;
            self.call_started_ms = now;
            self.enter(
                Phase::OnCall { call_id: ticket.call_id.clone(), queue_id: ticket.queue_id.clone(), wrap_up_ms },
                now,
                Cause::Request,
                &mut fx,
            );
        } else {
            // The queue may still hold the call for this offer (its answer
            // to the connect was lost): give it back before announcing.
            fx.push(InformantEffect::OfferEnded {
                queue_id: ticket.queue_id.clone(),
                call_id: ticket.call_id.clone(),
                offer_id: ticket.offer_id.clone(),
                declined: false,
            });
            fx.push(InformantEffect::Session(SessionEvent::OfferWithdrawn {
                offer_id: ticket.offer_id.clone(),
                reason: "call_gone".into(),
            }));
            self.announce(now, Cause::Elsewhere, &mut fx);
        }
        fx
    }

    /// The desktop declines the pending offer.
    pub fn decline(&mut self, offer_id: &str, now: Millis) -> Result<Vec<InformantEffect>, InformantError> {
        let ticket = self.accept(offer_id)?;
        let mut fx = vec![InformantEffect::OfferEnded {
            queue_id: ticket.queue_id,
            call_id: ticket.call_id,
            offer_id: ticket.offer_id,
            declined: true,
        }];
        self.announce(now, Cause::Request, &mut fx);
        Ok(fx)
    }

    /// The offer's timer fired. Counts a miss; pauses "missed" after the
    /// queue's limit of misses in a row.
    pub fn offer_expired(&mut self, offer_id: &str, now: Millis) -> Vec<InformantEffect> {
        let mut fx = Vec::new();
        let Phase::Reserved { offer } = &self.phase else { return fx };
        if offer.offer_id.as_ref() != offer_id {
            return fx;
        }
        let limit = offer.max_missed_offers;
        fx.push(InformantEffect::OfferEnded {
            queue_id: offer.queue_id.clone(),
            call_id: offer.call.call_id.clone(),
            offer_id: offer.offer_id.clone(),
            declined: false,
        });
        fx.push(InformantEffect::Session(SessionEvent::OfferWithdrawn {
            offer_id: offer.offer_id.clone(),
            reason: "expired".into(),
        }));
        self.missed_in_row += 1;
        if self.missed_in_row >= limit {
            self.enter(Phase::Paused { reason: MISSED.into() }, now, Cause::Elsewhere, &mut fx);
        } else {
            self.announce(now, Cause::Elsewhere, &mut fx);
        }
        fx
    }

    fn end_call(&mut self, now: Millis, cause: Cause, fx: &mut Vec<InformantEffect>) {
        let Phase::OnCall { wrap_up_ms, ref call_id, .. } = self.phase else { return };
        self.ended_call = Some(Box::new(call_id.clone()));
        self.calls_handled += 1;
        self.busy_ms += now.saturating_sub(self.call_started_ms);
        if wrap_up_ms == 0 {
            self.announce(now, cause, fx);
        } else {
            self.wrap_up(now + wrap_up_ms, now, cause, fx);
        }
    }

    /// The desktop finished its call. Finishing the call that ended last
    /// (the first answer was lost, or the caller hung up first) changes
    /// nothing and is not refused.
    pub fn finish(&mut self, call_id: &str, now: Millis) -> Result<Vec<InformantEffect>, InformantError> {
        match &self.phase {
            Phase::OnCall { call_id: held, queue_id, .. } if held.as_ref() == call_id => {
                let mut fx = vec![InformantEffect::Complete { call_id: held.clone(), queue_id: queue_id.clone() }];
                self.end_call(now, Cause::Request, &mut fx);
                Ok(fx)
            }
            _ if self.ended_call.as_deref().is_some_and(|ended| ended.as_ref() == call_id) => Ok(Vec::new()),
            _ => Err(InformantError::NotHolder(call_id.into())),
        }
    }

    /// The call ended on the caller's side, or was handed over.
    pub fn call_ended(&mut self, call_id: &str, reason: &str, now: Millis) -> Vec<InformantEffect> {
        let mut fx = Vec::new();
        if let Phase::OnCall { call_id: held, .. } = &self.phase
            && held.as_ref() == call_id
        {
            fx.push(InformantEffect::Session(SessionEvent::CallEnded { call_id: held.clone(), reason: reason.into() }));
            self.end_call(now, Cause::Elsewhere, &mut fx);
        }
        fx
    }

    /// The wrap-up timer fired.
    pub fn wrap_up_done(&mut self, token: u64, now: Millis) -> Vec<InformantEffect> {
        let mut fx = Vec::new();
        if matches!(self.phase, Phase::WrapUp { token: t, .. } if t == token) {
            self.announce(now, Cause::Elsewhere, &mut fx);
        }
        fx
    }

    /// The desktop ends wrap-up early.
    pub fn end_wrap_up(&mut self, now: Millis) -> Result<Vec<InformantEffect>, InformantError> {
        if !matches!(self.phase, Phase::WrapUp { .. }) {
            return Err(InformantError::WrongState(self.state()));
        }
        let mut fx = Vec::new();
        self.announce(now, Cause::Request, &mut fx);
        Ok(fx)
    }

    /// Refuses every proposal gathered so far (leaving availability).
    fn drop_collection(&mut self, fx: &mut Vec<InformantEffect>) {
        if let Phase::Available { collecting: Some(collecting) } = &mut self.phase {
            for proposal in collecting.proposals.drain(..) {
                Self::refuse(&proposal, fx);
            }
        }
    }

    /// Pauses; allowed when available, in wrap-up, or already paused (the
    /// reason changes).
    pub fn pause(&mut self, reason: Arc<str>, now: Millis) -> Result<Vec<InformantEffect>, InformantError> {
        let mut fx = Vec::new();
        match self.phase {
            Phase::Available { .. } => {
                self.drop_collection(&mut fx);
                self.withdraw_from_pools(&mut fx);
            }
            Phase::WrapUp { .. } | Phase::Paused { .. } => {}
            _ => return Err(InformantError::WrongState(self.state())),
        }
        self.enter(Phase::Paused { reason }, now, Cause::Request, &mut fx);
        Ok(fx)
    }

    pub fn resume(&mut self, now: Millis) -> Result<Vec<InformantEffect>, InformantError> {
        if !matches!(self.phase, Phase::Paused { .. }) {
            return Err(InformantError::WrongState(self.state()));
        }
        self.missed_in_row = 0;
        let mut fx = Vec::new();
        self.announce(now, Cause::Request, &mut fx);
        Ok(fx)
    }

    /// Logs out; refused while on a call. A pending offer is declined.
    pub fn logout(&mut self, now: Millis) -> Result<Vec<InformantEffect>, InformantError> {
        let mut fx = Vec::new();
        match &self.phase {
            Phase::OnCall { .. } | Phase::Offline => return Err(InformantError::WrongState(self.state())),
            Phase::Reserved { offer } => fx.push(InformantEffect::OfferEnded {
                queue_id: offer.queue_id.clone(),
                call_id: offer.call.call_id.clone(),
                offer_id: offer.offer_id.clone(),
                declined: false,
            }),
            Phase::Available { .. } => self.drop_collection(&mut fx),
            Phase::WrapUp { .. } | Phase::Paused { .. } => {}
        }
        for queue_id in &self.queues {
            fx.push(InformantEffect::Leave { queue_id: queue_id.clone(), logged_out: true });
        }
        self.enter(Phase::Offline, now, Cause::Request, &mut fx);
        Ok(fx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::{CallInfo, CallKey};

    fn proposal(call: &str, generation: u64, wrap_up_ms: Millis) -> Proposal {
        Proposal {
            offer_id: format!("{call}/1").into(),
            queue_id: "q".into(),
            key: CallKey { rank: 1, arrived_ms: 0, seq: 0 },
            generation,
            call: CallInfo {
                call_id: call.into(),
                priority: 1,
                vulnerable: false,
                language: "".into(),
                topic: "".into(),
                caller_pseudonym: "".into(),
                attributes: Arc::default(),
                arrived_ms: 0,
            },
            waited_ms: 0,
            offer_timeout_ms: 100,
            wrap_up_ms,
            max_missed_offers: 1,
        }
    }

    /// The session events among `fx`.
    fn told(fx: &[InformantEffect]) -> Vec<&SessionEvent> {
        fx.iter()
            .filter_map(|e| match e {
                InformantEffect::Session(event) => Some(event),
                _ => None,
            })
            .collect()
    }

    fn told_states(fx: &[InformantEffect]) -> Vec<(InformantState, Option<Arc<str>>)> {
        told(fx)
            .into_iter()
            .filter_map(|e| match e {
                SessionEvent::State(s) => Some((s.state, s.reason.clone())),
                _ => None,
            })
            .collect()
    }

    /// An informant of queue "q" who has taken a first proposal.
    fn offered(wrap_up_ms: Millis) -> InformantCore {
        let mut core = InformantCore::new("ana".into(), SkillSet::new([("s", 1)]), 0);
        assert!(told(&core.login(vec!["q".into()], 0)).is_empty(), "the login reply tells the state");
        let fx = core.proposed(proposal("c1", 1, wrap_up_ms), 1);
        assert_eq!(core.state(), InformantState::Reserved);
        let events = told(&fx);
        assert_eq!(events.len(), 1, "an offer and nothing else: it means reserved");
        assert!(matches!(events[0], SessionEvent::Offer { .. }));
        core
    }

    /// The queues `fx` announces to.
    fn announced(fx: &[InformantEffect]) -> Vec<&str> {
        fx.iter()
            .filter_map(|e| match e {
                InformantEffect::Announce { queue_id, .. } => Some(queue_id.as_ref()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_queue_joined_or_restarted_mid_announcement_hears_the_announcement() {
        let mut core = InformantCore::new("ana".into(), SkillSet::new([("s", 1)]), 0);
        let fx = core.login(vec!["q".into()], 0);
        assert_eq!(announced(&fx), ["q"]);
        // A second queue joins before "q" answered: it hears the same
        // announcement, and both are waited for.
        let generation = core.generation;
        let fx = core.set_queues(vec!["q".into(), "r".into()], 1);
        assert_eq!(announced(&fx), ["r"], "the joined queue hears the announcement");
        assert_eq!(core.generation, generation, "the same announcement, still collected");
        // "q" started again elsewhere before it answered: the informant
        // leaves it (no longer waited for), then joins the new one.
        assert!(announced(&core.set_queues(vec!["r".into()], 2)).is_empty());
        let fx = core.set_queues(vec!["r".into(), "q".into()], 3);
        assert_eq!(announced(&fx), ["q"], "the restarted queue hears the announcement");
        assert_eq!(core.generation, generation);
        // A proposal of that announcement is taken once both answered.
        assert!(core.nothing_from("r", generation, 4).is_empty());
        let fx = core.proposed(proposal("c1", generation, 0), 5);
        assert!(told(&fx).iter().any(|e| matches!(e, SessionEvent::Offer { .. })));
        assert_eq!(core.state(), InformantState::Reserved);
    }

    #[test]
    fn the_desktops_own_requests_are_told_by_their_replies_not_the_session() {
        let mut core = offered(50);
        let ticket = core.accept("c1/1").unwrap();
        assert!(told(&core.connected(&ticket, true, 2)).is_empty());
        assert_eq!(core.state(), InformantState::OnCall);
        assert!(told(&core.finish("c1", 3).unwrap()).is_empty());
        assert_eq!(core.state(), InformantState::WrapUp);
        let again = core.finish("c1", 3).expect("a finish asked again is answered");
        assert!(again.is_empty(), "and changes nothing: {again:?}");
        assert_eq!(core.state(), InformantState::WrapUp);
        assert!(core.finish("c9", 3).is_err(), "a call she never held is refused");
        assert!(told(&core.pause("break".into(), 4).unwrap()).is_empty());
        assert!(told(&core.resume(5).unwrap()).is_empty());
        assert_eq!(core.state(), InformantState::Available);
        assert!(told(&core.nothing_from("q", core.generation, 6)).is_empty());
        assert!(told(&core.proposed(proposal("c2", core.generation, 0), 7)).len() == 1);
        assert!(told(&core.decline("c2/1", 8).unwrap()).is_empty());
        assert!(told(&core.logout(9).unwrap()).is_empty());
        assert_eq!(core.state(), InformantState::Offline);
    }

    #[test]
    fn the_standing_says_what_outlives_a_member_and_a_login_starts_from_it() {
        // Wrap-up after a call ends at a known time.
        let mut core = offered(50);
        assert_eq!(core.standing(), Standing::Free, "an offer is not kept");
        let ticket = core.accept("c1/1").unwrap();
        core.connected(&ticket, true, 2);
        assert_eq!(core.standing(), Standing::Free, "a call is kept by its queue");
        core.finish("c1", 10).unwrap();
        assert_eq!(core.standing(), Standing::WrapUp { until_ms: 60 });
        core.pause("lunch".into(), 20).unwrap();
        assert_eq!(core.standing(), Standing::Paused { reason: "lunch".into() });
        core.resume(30).unwrap();
        assert_eq!(core.standing(), Standing::Free);

        // A login in a pause joins its queues and announces nothing.
        let mut again = InformantCore::new("ana".into(), SkillSet::new([("s", 1)]), 100);
        let fx = again.login_standing(vec!["q".into()], Standing::Paused { reason: "lunch".into() }, 100);
        assert_eq!(again.state(), InformantState::Paused);
        assert!(fx.iter().any(|e| matches!(e, InformantEffect::Join { login: true, .. })));
        assert!(announced(&fx).is_empty(), "{fx:?}");
        assert_eq!(again.snapshot(100).reason.as_deref(), Some("lunch"));

        // A login in a wrap-up that is not over finishes it, for the time
        // left; one that is over is available at once.
        let mut again = InformantCore::new("ana".into(), SkillSet::new([("s", 1)]), 100);
        let fx = again.login_standing(vec!["q".into()], Standing::WrapUp { until_ms: 130 }, 100);
        assert_eq!(again.state(), InformantState::WrapUp);
        assert!(fx.iter().any(|e| matches!(e, InformantEffect::WrapUpTimer { after_ms: 30, .. })), "{fx:?}");
        assert_eq!(again.standing(), Standing::WrapUp { until_ms: 130 });
        let mut late = InformantCore::new("ana".into(), SkillSet::new([("s", 1)]), 200);
        let fx = late.login_standing(vec!["q".into()], Standing::WrapUp { until_ms: 130 }, 200);
        assert_eq!(late.state(), InformantState::Available);
        assert_eq!(announced(&fx), ["q"]);
    }

    #[test]
    fn changes_the_desktop_did_not_cause_are_told_by_the_session() {
        // The wrap-up timer ends wrap-up.
        let mut core = offered(50);
        let ticket = core.accept("c1/1").unwrap();
        core.connected(&ticket, true, 2);
        core.finish("c1", 3).unwrap();
        let Phase::WrapUp { token, .. } = core.phase else { panic!("in wrap-up") };
        assert_eq!(told_states(&core.wrap_up_done(token, 60)), vec![(InformantState::Available, None)]);

        // A missed offer pauses (the limit here is one miss).
        let mut core = offered(0);
        let fx = core.offer_expired("c1/1", 200);
        assert!(matches!(told(&fx)[0], SessionEvent::OfferWithdrawn { .. }));
        assert_eq!(told_states(&fx), vec![(InformantState::Paused, Some(MISSED.into()))]);

        // The caller hangs up during the call.
        let mut core = offered(50);
        let ticket = core.accept("c1/1").unwrap();
        core.connected(&ticket, true, 2);
        let fx = core.call_ended("c1", "caller_hung_up", 3);
        assert!(matches!(told(&fx)[0], SessionEvent::CallEnded { .. }));
        assert_eq!(told_states(&fx), vec![(InformantState::WrapUp, None)]);
        // Her desktop's finish, sent as the caller hung up, is not refused.
        assert!(core.finish("c1", 4).expect("the call is over already").is_empty());
        assert_eq!(core.calls_handled, 1);

        // An accept whose call has gone fails, so the session tells what follows.
        let mut core = offered(0);
        let ticket = core.accept("c1/1").unwrap();
        let fx = core.connected(&ticket, false, 2);
        assert!(matches!(told(&fx)[0], SessionEvent::OfferWithdrawn { .. }));
        assert_eq!(told_states(&fx), vec![(InformantState::Available, None)]);
    }
}
