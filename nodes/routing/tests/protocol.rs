//! Property tests of the queue–informant protocol.
//!
//! A small switchboard wires several queues and informants of two tenants
//! through per-sender FIFO channels (as actor mailboxes are), and proptest
//! drives it with random client actions, timer firings and delivery orders.
//! After every step it checks the guarantees:
//! - no informant is proposed a call of another tenant, or of a queue
//!   that has not received its login (or has received its logout);
//! - a queue proposes a call only when no better call in its line suits
//!   that informant (priority, then arrival);
//! - no call is connected twice, and no informant is connected to two calls;
//! - once everything is delivered and every caller has hung up, every call
//!   offered has exactly one terminal event and nothing follows it;
//! - an announcement, a proposal, or the informant's answer to it, may be
//!   lost (a link between members broke with it in flight, or the member
//!   at one end could not prove its lease): once messages settle and
//!   timers have fired, no call is still held for an answer that cannot
//!   come, and no available informant is missing from a queue's pool;
//! - a desktop that takes its state from the replies to its own requests and
//!   from its session's events (a state event, or an offer meaning reserved)
//!   always knows the informant's state, although the session does not
//!   repeat what a reply already told.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use proptest::prelude::*;
use relais_routing::call::{CallEventKind, CallInfo};
use relais_routing::informant::{InformantCore, InformantEffect, InformantState, SessionEvent};
use relais_routing::queue::{QueueCore, QueueEffect};
use relais_routing::{QueueConfig, Requirement, SkillSet};

#[derive(Clone, Debug)]
enum ToQueue {
    Join(Arc<str>, SkillSet, bool),
    Leave(Arc<str>, bool),
    Announce(relais_routing::pool::PoolEntry),
    Unavailable(Arc<str>),
    Answer { informant: Arc<str>, call: Arc<str>, offer: Arc<str>, accepted: bool },
    OfferEnded { informant: Arc<str>, call: Arc<str>, offer: Arc<str>, declined: bool },
    Complete { informant: Arc<str>, call: Arc<str> },
}

#[derive(Clone, Debug)]
enum ToInformant {
    Propose(relais_routing::queue::Proposal),
    Nothing { queue: Arc<str>, generation: u64 },
    Withdraw { offer: Arc<str> },
    EndCall { call: Arc<str> },
}

#[derive(Clone, Debug)]
enum Timer {
    Offer(Arc<str>),
    WrapUp(u64),
    Collect(u64),
}

struct Switchboard {
    now: u64,
    queues: BTreeMap<Arc<str>, (u8, QueueCore)>,
    informants: BTreeMap<Arc<str>, (u8, InformantCore)>,
    /// FIFO channel per (sender, receiver).
    to_queue: BTreeMap<(Arc<str>, Arc<str>), VecDeque<ToQueue>>,
    to_informant: BTreeMap<(Arc<str>, Arc<str>), VecDeque<ToInformant>>,
    timers: BTreeMap<Arc<str>, Vec<Timer>>,
    /// Where each live call is.
    directory: HashMap<Arc<str>, Arc<str>>,
    /// Pending offer per informant, as its desktop sees it.
    desktop_offer: HashMap<Arc<str>, (Arc<str>, Arc<str>)>,
    /// Call held per informant, as its desktop sees it.
    desktop_call: HashMap<Arc<str>, Arc<str>>,
    /// State per informant, as its desktop sees it (offline until told).
    desktop_state: HashMap<Arc<str>, InformantState>,
    joined: HashSet<(Arc<str>, Arc<str>)>,
    terminal: HashMap<Arc<str>, u32>,
    connected: HashMap<Arc<str>, u32>,
    events_after_end: Vec<Arc<str>>,
    next_call: u32,
}

fn queue_name(tenant: u8, q: u8) -> Arc<str> {
    format!("t{tenant}/q{q}").into()
}

impl Switchboard {
    fn new(skill_draws: &[(u8, u8, bool)]) -> Self {
        let mut queues = BTreeMap::new();
        for tenant in 0..2u8 {
            for q in 0..2u8 {
                let id = queue_name(tenant, q);
                let mut config = QueueConfig::new(id.clone(), Requirement::new([(format!("s{q}"), 2)]));
                config.max_waiting = 6;
                config.offer_timeout_ms = 50;
                config.wrap_up_ms = if q == 0 { 0 } else { 20 };
                config.max_missed_offers = 2;
                config.relaxations = vec![relaxation(q)];
                queues.insert(id.clone(), (tenant, QueueCore::new(config, "ecoute".into(), 0)));
            }
        }
        let mut informants = BTreeMap::new();
        for (n, (tenant, prof, listens)) in skill_draws.iter().enumerate() {
            let id: Arc<str> = format!("t{tenant}/i{n}").into();
            let mut skills = vec![("s0".to_string(), *prof), ("s1".to_string(), 6 - prof)];
            if *listens {
                skills.push(("ecoute".into(), 3));
            }
            informants.insert(id.clone(), (*tenant, InformantCore::new(id, SkillSet::new(skills), 0)));
        }
        Self {
            now: 1,
            queues,
            informants,
            to_queue: BTreeMap::new(),
            to_informant: BTreeMap::new(),
            timers: BTreeMap::new(),
            directory: HashMap::new(),
            desktop_offer: HashMap::new(),
            desktop_call: HashMap::new(),
            desktop_state: HashMap::new(),
            joined: HashSet::new(),
            terminal: HashMap::new(),
            connected: HashMap::new(),
            events_after_end: Vec::new(),
            next_call: 0,
        }
    }

    fn tenant_queues(&self, tenant: u8, skills: &SkillSet) -> Vec<Arc<str>> {
        self.queues.iter().filter(|(_, (t, q))| *t == tenant && q.admits(skills)).map(|(id, _)| id.clone()).collect()
    }

    fn apply_queue(&mut self, queue: &Arc<str>, fx: Vec<QueueEffect>) {
        let tenant = self.queues[queue].0;
        for effect in fx {
            match effect {
                QueueEffect::Propose { informant_id, proposal } => {
                    let (informant_tenant, _) = &self.informants[&informant_id];
                    assert_eq!(*informant_tenant, tenant, "proposal crossed tenants");
                    assert!(self.joined.contains(&(queue.clone(), informant_id.clone())), "proposal to a non-member");
                    self.check_best(queue, &informant_id, &proposal);
                    self.send_informant(queue, &informant_id, ToInformant::Propose(proposal));
                }
                QueueEffect::NothingFor { informant_id, generation } => {
                    self.send_informant(queue, &informant_id, ToInformant::Nothing { queue: queue.clone(), generation })
                }
                QueueEffect::WithdrawOffer { informant_id, offer_id, .. } => {
                    self.send_informant(queue, &informant_id, ToInformant::Withdraw { offer: offer_id })
                }
                QueueEffect::EndCall { informant_id, call_id, .. } => {
                    self.send_informant(queue, &informant_id, ToInformant::EndCall { call: call_id })
                }
                QueueEffect::Event { call_id, event } => {
                    if self.terminal.contains_key(&call_id) {
                        self.events_after_end.push(call_id.clone());
                    }
                    match event.kind {
                        CallEventKind::Connected { .. } => *self.connected.entry(call_id).or_default() += 1,
                        kind if kind.is_terminal() => *self.terminal.entry(call_id).or_default() += 1,
                        _ => {}
                    }
                }
                QueueEffect::Ended { snapshot, .. } => {
                    self.directory.remove(&snapshot.info.call_id);
                }
                QueueEffect::MoveOut { to_queue_id, call } => {
                    self.directory.insert(call.info.call_id.clone(), to_queue_id.clone());
                    let fx = self.queues.get_mut(&to_queue_id).expect("overflow target").1.adopt(*call, self.now);
                    self.apply_queue(&to_queue_id, fx);
                }
            }
        }
        self.queues[queue].1.check_invariants().expect("queue invariants");
    }

    /// A queue proposes the best call in line that the informant suits.
    fn check_best(&self, queue: &Arc<str>, informant: &Arc<str>, proposal: &relais_routing::queue::Proposal) {
        let (_, core) = &self.queues[queue];
        let skills = self.informants[informant].1.skills();
        for (key, entry) in core.line().iter() {
            if *key >= proposal.key {
                break;
            }
            assert!(
                !entry.suits(informant, skills, self.now),
                "{queue} proposed {:?} while better call {} suits {informant}",
                proposal.key,
                entry.call_id
            );
        }
    }

    fn apply_informant(&mut self, informant: &Arc<str>, fx: Vec<InformantEffect>) {
        for effect in fx {
            match effect {
                InformantEffect::Join { queue_id, skills, login } => {
                    self.send_queue(informant, &queue_id, ToQueue::Join(informant.clone(), skills, login));
                }
                InformantEffect::Leave { queue_id, logged_out } => {
                    self.send_queue(informant, &queue_id, ToQueue::Leave(informant.clone(), logged_out));
                }
                InformantEffect::Announce { queue_id, entry } => {
                    self.send_queue(informant, &queue_id, ToQueue::Announce(entry))
                }
                InformantEffect::Unavailable { queue_id } => {
                    self.send_queue(informant, &queue_id, ToQueue::Unavailable(informant.clone()))
                }
                InformantEffect::Answer { queue_id, call_id, offer_id, accepted } => self.send_queue(
                    informant,
                    &queue_id,
                    ToQueue::Answer { informant: informant.clone(), call: call_id, offer: offer_id, accepted },
                ),
                InformantEffect::OfferEnded { queue_id, call_id, offer_id, declined } => self.send_queue(
                    informant,
                    &queue_id,
                    ToQueue::OfferEnded { informant: informant.clone(), call: call_id, offer: offer_id, declined },
                ),
                InformantEffect::Complete { call_id, .. } => {
                    if let Some(queue_id) = self.directory.get(&call_id).cloned() {
                        self.send_queue(
                            informant,
                            &queue_id,
                            ToQueue::Complete { informant: informant.clone(), call: call_id },
                        );
                    }
                }
                InformantEffect::Session(SessionEvent::Offer { proposal, .. }) => {
                    self.desktop_offer
                        .insert(informant.clone(), (proposal.offer_id.clone(), proposal.call.call_id.clone()));
                    self.desktop_state.insert(informant.clone(), InformantState::Reserved);
                }
                InformantEffect::Session(SessionEvent::OfferWithdrawn { .. }) => {
                    self.desktop_offer.remove(informant);
                }
                InformantEffect::Session(SessionEvent::CallEnded { .. }) => {
                    self.desktop_call.remove(informant);
                }
                InformantEffect::Session(SessionEvent::State(snapshot)) => {
                    self.desktop_state.insert(informant.clone(), snapshot.state);
                }
                InformantEffect::OfferTimer { offer_id, .. } => {
                    self.timers.entry(informant.clone()).or_default().push(Timer::Offer(offer_id))
                }
                InformantEffect::WrapUpTimer { token, .. } => {
                    self.timers.entry(informant.clone()).or_default().push(Timer::WrapUp(token))
                }
                InformantEffect::CollectTimer { generation, .. } => {
                    self.timers.entry(informant.clone()).or_default().push(Timer::Collect(generation))
                }
            }
        }
    }

    fn send_queue(&mut self, from: &Arc<str>, to: &Arc<str>, msg: ToQueue) {
        self.to_queue.entry((from.clone(), to.clone())).or_default().push_back(msg);
    }

    fn send_informant(&mut self, from: &Arc<str>, to: &Arc<str>, msg: ToInformant) {
        self.to_informant.entry((from.clone(), to.clone())).or_default().push_back(msg);
    }

    fn deliver_queue(&mut self, to: Arc<str>, msg: ToQueue) {
        let now = self.now;
        let core = &mut self.queues.get_mut(&to).expect("queue").1;
        let fx = match msg {
            ToQueue::Join(id, skills, login) => {
                self.joined.insert((to.clone(), id.clone()));
                core.join(id, skills, login, now)
            }
            ToQueue::Leave(id, logged_out) => {
                self.joined.remove(&(to.clone(), id.clone()));
                core.leave(&id, logged_out, now)
            }
            ToQueue::Announce(entry) => core.available(entry, now),
            ToQueue::Unavailable(id) => {
                core.unavailable(&id);
                Vec::new()
            }
            ToQueue::Answer { informant, call, offer, accepted } => {
                core.proposal_answered(&call, &offer, &informant, accepted, now)
            }
            ToQueue::OfferEnded { informant, call, offer, declined } => {
                core.offer_ended(&call, &offer, &informant, declined, now)
            }
            ToQueue::Complete { informant, call } => core.complete(&call, &informant, now).unwrap_or_default(),
        };
        self.apply_queue(&to, fx);
    }

    fn deliver_informant(&mut self, to: Arc<str>, msg: ToInformant) {
        let now = self.now;
        let core = &mut self.informants.get_mut(&to).expect("informant").1;
        let fx = match msg {
            ToInformant::Propose(p) => core.proposed(p, now),
            ToInformant::Nothing { queue, generation } => core.nothing_from(&queue, generation, now),
            ToInformant::Withdraw { offer } => core.withdrawn(&offer, "caller_hung_up", now),
            ToInformant::EndCall { call } => core.call_ended(&call, "caller_hung_up", now),
        };
        self.apply_informant(&to, fx);
    }

    /// Delivers the head of the `pick`-th non-empty channel.
    fn deliver_one(&mut self, pick: usize) -> bool {
        let queue_heads: Vec<_> = self.to_queue.iter().filter(|(_, q)| !q.is_empty()).map(|(k, _)| k.clone()).collect();
        let informant_heads: Vec<_> =
            self.to_informant.iter().filter(|(_, q)| !q.is_empty()).map(|(k, _)| k.clone()).collect();
        let total = queue_heads.len() + informant_heads.len();
        if total == 0 {
            return false;
        }
        let pick = pick % total;
        if pick < queue_heads.len() {
            let key = &queue_heads[pick];
            let msg = self.to_queue.get_mut(key).and_then(VecDeque::pop_front).expect("head");
            self.deliver_queue(key.1.clone(), msg);
        } else {
            let key = &informant_heads[pick - queue_heads.len()];
            let msg = self.to_informant.get_mut(key).and_then(VecDeque::pop_front).expect("head");
            self.deliver_informant(key.1.clone(), msg);
        }
        true
    }

    /// Loses the head of the `pick`-th non-empty channel if it is an
    /// announcement, a proposal or an answer to one (what a broken link
    /// loses in flight).
    fn lose_one(&mut self, pick: usize) {
        let queue_heads: Vec<_> = self
            .to_queue
            .iter()
            .filter(|(_, q)| matches!(q.front(), Some(ToQueue::Answer { .. } | ToQueue::Announce(_))))
            .map(|(k, _)| k.clone())
            .collect();
        let informant_heads: Vec<_> = self
            .to_informant
            .iter()
            .filter(|(_, q)| matches!(q.front(), Some(ToInformant::Propose(_))))
            .map(|(k, _)| k.clone())
            .collect();
        let total = queue_heads.len() + informant_heads.len();
        if total == 0 {
            return;
        }
        let pick = pick % total;
        if pick < queue_heads.len() {
            self.to_queue.get_mut(&queue_heads[pick]).and_then(VecDeque::pop_front);
        } else {
            self.to_informant.get_mut(&informant_heads[pick - queue_heads.len()]).and_then(VecDeque::pop_front);
        }
    }

    /// Delivers everything, lets every availability collection end and
    /// every queue tick well past its proposals' deadline, a few times
    /// over (each round's withdrawals lead to new announcements).
    fn settle(&mut self) {
        for _ in 0..4 {
            self.drain();
            let collects: Vec<(Arc<str>, u64)> = self
                .timers
                .iter()
                .flat_map(|(id, timers)| {
                    timers.iter().filter_map(move |t| match t {
                        Timer::Collect(generation) => Some((id.clone(), *generation)),
                        _ => None,
                    })
                })
                .collect();
            for (id, generation) in collects {
                let now = self.now;
                let fx = self.informants.get_mut(&id).expect("informant").1.collect_timed_out(generation, now);
                self.apply_informant(&id, fx);
            }
            self.drain();
            self.now += relais_routing::queue::PROPOSAL_TIMEOUT_MS + 10_000;
            let queues: Vec<Arc<str>> = self.queues.keys().cloned().collect();
            for queue in queues {
                let fx = self.queues.get_mut(&queue).expect("queue").1.tick(self.now, true);
                self.apply_queue(&queue, fx);
            }
        }
        self.drain();
    }

    /// After `settle`: no call is held for a proposal's answer, and every
    /// available informant done collecting is in the pool of each queue it
    /// joined.
    fn check_settled(&self) {
        for (queue, (_, core)) in &self.queues {
            for record in core.calls() {
                assert!(
                    !matches!(record.phase, relais_routing::queue::Phase::Proposed { .. }),
                    "{queue} still holds {} for an answer: {:?}",
                    record.info.call_id,
                    record.phase
                );
            }
        }
        for (id, (_, core)) in &self.informants {
            if core.state() != InformantState::Available || core.collecting() {
                continue;
            }
            for (queue, (_, q)) in &self.queues {
                if self.joined.contains(&(queue.clone(), id.clone())) {
                    assert!(q.pool().get(id).is_some(), "{id} is available but missing from the pool of {queue}");
                }
            }
        }
    }

    fn drain(&mut self) {
        let mut budget = 100_000;
        while self.deliver_one(0) {
            budget -= 1;
            assert!(budget > 0, "messages never settle");
        }
    }

    /// Carries out the effects of a desktop's request that succeeded, then
    /// replies with the informant's state, as the informant actor does.
    fn apply_request(&mut self, informant: &Arc<str>, fx: Vec<InformantEffect>) {
        self.apply_informant(informant, fx);
        let state = self.informants[informant].1.state();
        self.desktop_state.insert(informant.clone(), state);
    }

    fn informant_at(&self, pick: usize) -> Arc<str> {
        self.informants.keys().nth(pick % self.informants.len()).expect("informant").clone()
    }

    fn act(&mut self, action: &Action) {
        self.now += 7;
        let now = self.now;
        match *action {
            Action::Deliver(pick) => {
                self.deliver_one(pick);
            }
            Action::Lose(pick) => self.lose_one(pick),
            Action::OfferCall { tenant, queue, priority, vulnerable, language } => {
                self.next_call += 1;
                let queue_id = queue_name(tenant % 2, queue % 2);
                let info = CallInfo {
                    call_id: format!("c{}", self.next_call).into(),
                    priority,
                    vulnerable,
                    language: if language { "fr".into() } else { "".into() },
                    topic: "".into(),
                    caller_pseudonym: "".into(),
                    attributes: Arc::default(),
                    arrived_ms: now,
                };
                self.directory.insert(info.call_id.clone(), queue_id.clone());
                let (_, fx) = self.queues.get_mut(&queue_id).expect("queue").1.offer_call(info, now).expect("new call");
                self.apply_queue(&queue_id, fx);
            }
            Action::HangUp(pick) => {
                let mut live: Vec<_> = self.directory.iter().map(|(c, q)| (c.clone(), q.clone())).collect();
                live.sort();
                if let Some((call, queue)) = live.get(pick % live.len().max(1)).cloned() {
                    let (_, fx) = self.queues.get_mut(&queue).expect("queue").1.hang_up(&call, now).expect("live call");
                    self.apply_queue(&queue, fx);
                }
            }
            Action::Login(pick) => {
                let id = self.informant_at(pick);
                let (tenant, core) = &self.informants[&id];
                if core.state() == relais_routing::informant::InformantState::Offline {
                    let queues = self.tenant_queues(*tenant, core.skills());
                    let fx = self.informants.get_mut(&id).expect("informant").1.login(queues, now);
                    self.apply_request(&id, fx);
                }
            }
            Action::Accept(pick) => {
                let id = self.informant_at(pick);
                if let Some((offer, _)) = self.desktop_offer.get(&id).cloned() {
                    let core = &self.informants[&id].1;
                    let Ok(ticket) = core.accept(&offer) else { return };
                    // The informant actor connects at the queue synchronously.
                    let ok = match self.directory.get(&ticket.call_id).cloned() {
                        Some(queue) if queue == ticket.queue_id => {
                            // Messages the informant already sent reach the queue first.
                            let key = (id.clone(), queue.clone());
                            while let Some(msg) = self.to_queue.get_mut(&key).and_then(VecDeque::pop_front) {
                                self.deliver_queue(queue.clone(), msg);
                            }
                            let result = self.queues.get_mut(&queue).expect("queue").1.connect(
                                &ticket.call_id,
                                &ticket.offer_id,
                                &id,
                                now,
                            );
                            match result {
                                Ok(fx) => {
                                    self.apply_queue(&queue, fx);
                                    true
                                }
                                Err(_) => false,
                            }
                        }
                        _ => false,
                    };
                    self.desktop_offer.remove(&id);
                    if ok {
                        self.desktop_call.insert(id.clone(), ticket.call_id.clone());
                    }
                    let fx = self.informants.get_mut(&id).expect("informant").1.connected(&ticket, ok, now);
                    // An accept whose call is gone fails: its reply tells no state.
                    if ok {
                        self.apply_request(&id, fx);
                    } else {
                        self.apply_informant(&id, fx);
                    }
                }
            }
            Action::Decline(pick) => {
                let id = self.informant_at(pick);
                if let Some((offer, _)) = self.desktop_offer.remove(&id)
                    && let Ok(fx) = self.informants.get_mut(&id).expect("informant").1.decline(&offer, now)
                {
                    self.apply_request(&id, fx);
                }
            }
            Action::Finish(pick) => {
                let id = self.informant_at(pick);
                if let Some(call) = self.desktop_call.remove(&id)
                    && let Ok(fx) = self.informants.get_mut(&id).expect("informant").1.finish(&call, now)
                {
                    self.apply_request(&id, fx);
                }
            }
            Action::FireTimer(pick) => {
                let id = self.informant_at(pick);
                if let Some(timer) = self.timers.get_mut(&id).and_then(|t| (!t.is_empty()).then(|| t.remove(0))) {
                    let core = &mut self.informants.get_mut(&id).expect("informant").1;
                    let fx = match timer {
                        Timer::Offer(offer) => core.offer_expired(&offer, now),
                        Timer::WrapUp(token) => core.wrap_up_done(token, now),
                        Timer::Collect(generation) => core.collect_timed_out(generation, now),
                    };
                    self.apply_informant(&id, fx);
                }
            }
            Action::Pause(pick) => {
                let id = self.informant_at(pick);
                if let Ok(fx) = self.informants.get_mut(&id).expect("informant").1.pause("break".into(), now) {
                    self.apply_request(&id, fx);
                }
            }
            Action::Resume(pick) => {
                let id = self.informant_at(pick);
                if let Ok(fx) = self.informants.get_mut(&id).expect("informant").1.resume(now) {
                    self.apply_request(&id, fx);
                }
            }
            Action::Logout(pick) => {
                let id = self.informant_at(pick);
                if let Ok(fx) = self.informants.get_mut(&id).expect("informant").1.logout(now) {
                    self.desktop_offer.remove(&id);
                    self.apply_request(&id, fx);
                }
            }
            Action::Tick(queue) => {
                let queue_id = queue_name(queue % 2, (queue / 2) % 2);
                let fx = self.queues.get_mut(&queue_id).expect("queue").1.tick(now + 10_000, true);
                self.apply_queue(&queue_id, fx);
            }
        }
        self.check_running();
    }

    /// Checks what must hold at every step.
    fn check_running(&self) {
        for (call, n) in &self.connected {
            assert!(*n <= 1, "call {call} connected {n} times");
        }
        for (call, n) in &self.terminal {
            assert!(*n <= 1, "call {call} ended {n} times");
        }
        assert!(self.events_after_end.is_empty(), "events after the end: {:?}", self.events_after_end);
        // No informant is connected to two calls: count connected phases
        // whose informant still holds that call.
        let mut on_call: HashMap<Arc<str>, usize> = HashMap::new();
        for (_, core) in self.queues.values() {
            for record in core.calls() {
                if let relais_routing::queue::Phase::Connected { informant_id, .. } = &record.phase {
                    let holder = &self.informants[informant_id].1;
                    if holder.current_call() == Some(&record.info.call_id) {
                        *on_call.entry(informant_id.clone()).or_default() += 1;
                    }
                }
            }
        }
        for (informant, n) in on_call {
            assert!(n <= 1, "informant {informant} connected to {n} calls");
        }
        for (id, (_, core)) in &self.informants {
            let seen = self.desktop_state.get(id).copied().unwrap_or(InformantState::Offline);
            assert_eq!(seen, core.state(), "the desktop of {id} does not know its state");
        }
    }
}

fn relaxation(q: u8) -> relais_routing::config::Relaxation {
    relais_routing::config::Relaxation { after_ms: 5_000, skill: format!("s{q}").into(), min_proficiency: 1 }
}

#[derive(Clone, Debug)]
enum Action {
    Deliver(usize),
    Lose(usize),
    OfferCall { tenant: u8, queue: u8, priority: u8, vulnerable: bool, language: bool },
    HangUp(usize),
    Login(usize),
    Accept(usize),
    Decline(usize),
    Finish(usize),
    FireTimer(usize),
    Pause(usize),
    Resume(usize),
    Logout(usize),
    Tick(u8),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        8 => any::<usize>().prop_map(Action::Deliver),
        1 => any::<usize>().prop_map(Action::Lose),
        3 => (0..2u8, 0..2u8, 0..4u8, prop::bool::weighted(0.1), prop::bool::weighted(0.2))
            .prop_map(|(tenant, queue, priority, vulnerable, language)| Action::OfferCall { tenant, queue, priority, vulnerable, language }),
        1 => any::<usize>().prop_map(Action::HangUp),
        2 => any::<usize>().prop_map(Action::Login),
        3 => any::<usize>().prop_map(Action::Accept),
        1 => any::<usize>().prop_map(Action::Decline),
        2 => any::<usize>().prop_map(Action::Finish),
        2 => any::<usize>().prop_map(Action::FireTimer),
        1 => any::<usize>().prop_map(Action::Pause),
        1 => any::<usize>().prop_map(Action::Resume),
        1 => any::<usize>().prop_map(Action::Logout),
        1 => (0..4u8).prop_map(Action::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn protocol_keeps_its_guarantees(
        staff in prop::collection::vec((0..2u8, 1..6u8, any::<bool>()), 1..7),
        actions in prop::collection::vec(action(), 1..250),
    ) {
        let mut board = Switchboard::new(&staff);
        for action in &actions {
            board.act(action);
        }
        // Quiesce: deliver everything, then every caller hangs up and every
        // informant finishes and logs out.
        board.settle();
        board.check_settled();
        let mut live: Vec<_> = board.directory.iter().map(|(c, q)| (c.clone(), q.clone())).collect();
        live.sort();
        for (call, queue) in live {
            let now = board.now;
            let (_, fx) = board.queues.get_mut(&queue).expect("queue").1.hang_up(&call, now).expect("live call");
            board.apply_queue(&queue, fx);
        }
        board.drain();
        for (_, core) in board.queues.values() {
            prop_assert_eq!(core.live_calls(), 0);
        }
        for n in 1..=board.next_call {
            let call: Arc<str> = format!("c{n}").into();
            prop_assert_eq!(board.terminal.get(&call).copied(), Some(1), "call {} must end exactly once", call);
        }
        board.check_running();
    }

    /// Informants serving several queues take the best call across them.
    /// (At most six calls: a queue of this switchboard holds six, and a
    /// seventh would be deflected.)
    #[test]
    fn informant_takes_the_best_call_across_queues(priorities in prop::collection::vec((0..2u8, 0..4u8), 1..7)) {
        let mut board = Switchboard::new(&[(0, 3, false)]);
        for (queue, priority) in &priorities {
            board.act(&Action::OfferCall { tenant: 0, queue: *queue, priority: *priority, vulnerable: false, language: false });
        }
        board.act(&Action::Login(0));
        board.drain();
        let (offer, call) = board.desktop_offer.values().next().cloned().expect("an offer");
        prop_assert!(!offer.is_empty());
        let best = priorities.iter().enumerate().max_by_key(|(n, (_, p))| (*p, std::cmp::Reverse(*n))).map(|(n, _)| n + 1);
        prop_assert_eq!(call.as_ref(), format!("c{}", best.expect("a call")));
    }
}
