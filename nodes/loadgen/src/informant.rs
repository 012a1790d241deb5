//! The simulated informants: log in, follow the desktop session, accept offers, hold each call for its
//! handle time, finish it, and log out at the end.
//!
//! Each informant is one task reading its `Session` stream. Offers are accepted at once (the model has
//! no ringing time); the call is then held for the handle time the gateway drew for it, found in the
//! [`HandleBook`], so the whole workload follows from the seed whichever informant takes which call.
//! Wrap-up is left to the node. An informant paused for missed offers resumes at once, since missing
//! offers is a sign of a slow simulator rather than part of the model.
//!
//! The informant's state, shown on the [`Board`], comes from two sources: the replies to its own
//! requests (accept, finish, resume), and the session's events, which carry only what the informant did
//! not cause (offers, the end of wrap-up, a pause for missed offers...). A reply and the events sent
//! around it may be read in either order; the reply's `last_sequence` tells which is newer.
//!
//! During the shutdown ("hurry"), held calls are finished at once and new offers are accepted and
//! finished at once, so that connected calls end and every informant can log out.
//!
//! When the session breaks, the informant opens it again, through the next target when its member
//! seems gone. A session refused with `NOT_FOUND` means the informant is no longer logged in: its
//! member died with its actor. The desktop then logs in again, as a person would, and placement puts
//! it on a live member. Getting a session back is bounded by the run's failover policy (attempts in a
//! row without an event, with a growing backoff); an informant that cannot get one stops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use relais_proto::v1::informant_event::Kind;
use relais_proto::v1::{
    FinishCallRequest, InformantEvent, InformantRequest, InformantState, InformantStatus, LoginRequest, OfferReply,
    SessionRequest, Skill,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tonic::{Code, Status, Streaming};
use tracing::{debug, warn};

use crate::board::Board;
use crate::client::{Informant, Retry, Targets, member_gone};
use crate::live::Counters;
use crate::profile::{HandleTime, InformantSpec};
use crate::sim::{Phase, sleep_until_opt};
use crate::summary::InformantTotals;
use crate::units::TimeScale;

/// Handle times drawn by the gateway for the calls in flight, by call id, in real time.
///
/// **Invariant:** an entry lives from just before `OfferCall` until the call task ends, so the map holds
/// at most `max_concurrent_calls` entries.
#[derive(Default)]
pub(crate) struct HandleBook {
    times: Mutex<HashMap<String, Duration>>,
}

impl HandleBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Duration>> {
        self.times.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn insert(&self, call_id: &str, handle: Duration) {
        self.lock().insert(call_id.to_owned(), handle);
    }

    pub(crate) fn get(&self, call_id: &str) -> Option<Duration> {
        self.lock().get(call_id).copied()
    }

    pub(crate) fn remove(&self, call_id: &str) {
        self.lock().remove(call_id);
    }
}

/// Everything informant tasks share.
pub(crate) struct InformantContext {
    pub scale: TimeScale,
    pub retry: Retry,
    pub board: Arc<Board>,
    pub book: Arc<HandleBook>,
    pub phase: watch::Receiver<Phase>,
    /// Handle-time distributions by queue id, for calls the book does not know (e.g. left over from an
    /// earlier run).
    pub handle_by_queue: HashMap<String, HandleTime>,
    /// Used when the queue is unknown too.
    pub default_handle: HandleTime,
    /// Bounds on getting a session back (reopening it, logging in again) without receiving an event.
    pub failover: Retry,
    /// Running counts for the live view.
    pub counters: Arc<Counters>,
    /// Log out at the end.
    pub logout: bool,
    /// Told the informant's index once its first session snapshot arrived.
    pub ready: mpsc::Sender<usize>,
}

/// Logs `informant` in through `targets` (moving to the next one while members are unavailable). A
/// stored profile provides the skills; when the node has none (the plan was not applied), the login is
/// retried with the informant's own skills. Being logged in already (a previous run that did not log
/// out) is fine: the session snapshot tells what state was left behind.
pub(crate) async fn log_in(
    targets: &mut Targets<Informant>,
    retry: Retry,
    informant: &InformantSpec,
) -> Result<(), Status> {
    match log_in_with(targets, retry, &informant.id, Vec::new()).await {
        Ok(()) => Ok(()),
        Err(status) if status.code() == Code::AlreadyExists => Ok(()),
        Err(status) if matches!(status.code(), Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition) => {
            debug!(informant_id = %informant.id, code = ?status.code(), "login without skills refused; sending skills");
            let skills = informant
                .skills
                .iter()
                .map(|skill| Skill { name: skill.name.clone(), proficiency: skill.proficiency })
                .collect();
            match log_in_with(targets, retry, &informant.id, skills).await {
                Ok(()) => Ok(()),
                Err(status) if status.code() == Code::AlreadyExists => Ok(()),
                Err(status) => Err(status),
            }
        }
        Err(status) => Err(status),
    }
}

async fn log_in_with(
    targets: &mut Targets<Informant>,
    retry: Retry,
    informant_id: &str,
    skills: Vec<Skill>,
) -> Result<(), Status> {
    let request = LoginRequest { informant_id: informant_id.to_owned(), skills };
    let (result, _) = retry
        .call_across(targets, |mut client| {
            let request = retry.request(request.clone());
            async move { client.login(request).await }
        })
        .await;
    result.map(drop)
}

struct Held {
    call_id: String,
    until: Instant,
}

/// One informant's task state.
pub(crate) struct SimulatedInformant {
    context: Arc<InformantContext>,
    /// The informant's desktop on every target, the one in use first.
    targets: Targets<Informant>,
    index: usize,
    id: String,
    spec: InformantSpec,
    rng: StdRng,
    phase: watch::Receiver<Phase>,
    held: Option<Held>,
    last_offer_id: Option<String>,
    /// The sequence of the newest session event known, read or covered by a reply: the board shows
    /// the state as of then, and anything older is stale.
    seen_sequence: u64,
    hurry: bool,
    ready_sent: bool,
    report: InformantTotals,
}

/// The next event of an open session; never resolves while none is open.
async fn next_event(stream: &mut Option<Streaming<InformantEvent>>) -> Result<Option<InformantEvent>, Status> {
    match stream {
        Some(stream) => stream.message().await,
        None => std::future::pending().await,
    }
}

impl SimulatedInformant {
    /// An informant task for informant `index` (already logged in, through the target in use).
    pub(crate) fn new(
        context: Arc<InformantContext>,
        targets: Targets<Informant>,
        index: usize,
        spec: InformantSpec,
        seed: u64,
    ) -> Self {
        let phase = context.phase.clone();
        Self {
            context,
            targets,
            index,
            id: spec.id.clone(),
            spec,
            rng: StdRng::seed_from_u64(seed),
            phase,
            held: None,
            last_offer_id: None,
            seen_sequence: 0,
            hurry: false,
            ready_sent: false,
            report: InformantTotals { logged_in: 1, ..InformantTotals::default() },
        }
    }

    /// Works until the run asks informants to log out, then logs out; returns what it did.
    pub(crate) async fn run(mut self) -> InformantTotals {
        let mut stream: Option<Streaming<InformantEvent>> = None;
        let mut reopen_at = Some(Instant::now());
        // Attempts in a row to get a session back without receiving an event.
        let mut recoveries = 0u32;
        loop {
            let phase = *self.phase.borrow();
            if phase >= Phase::Hurry {
                self.start_hurrying();
            }
            if phase >= Phase::LogOut && self.held.is_none() {
                break;
            }
            let finish_at = self.held.as_ref().map(|held| held.until);
            tokio::select! {
                message = next_event(&mut stream) => match message {
                    Ok(Some(event)) => {
                        recoveries = 0;
                        self.on_event(event).await;
                    }
                    Ok(None) | Err(_) => {
                        if let Err(status) = &message {
                            debug!(informant_id = %self.id, code = ?status.code(), "session broke");
                            if member_gone(status) {
                                self.targets.next();
                            }
                        }
                        stream = None;
                        match self.recover_later(&mut recoveries, "session kept breaking") {
                            Some(at) => reopen_at = Some(at),
                            None => break,
                        }
                    }
                },
                () = sleep_until_opt(reopen_at) => {
                    reopen_at = None;
                    let request = SessionRequest { informant_id: self.id.clone() };
                    match self.targets.client().session(request).await {
                        Ok(response) => stream = Some(response.into_inner()),
                        Err(status) if status.code() == Code::NotFound => {
                            // Logged out behind the desktop's back: its member died with its actor.
                            recoveries += 1;
                            if recoveries > self.context.failover.attempts {
                                self.give_up("cannot log in again");
                                break;
                            }
                            reopen_at = Some(match self.log_in_again().await {
                                Ok(()) => Instant::now(),
                                Err(status) => {
                                    debug!(informant_id = %self.id, code = ?status.code(), "login again failed");
                                    Instant::now() + self.context.failover.backoff(recoveries)
                                }
                            });
                        }
                        Err(status) => {
                            debug!(informant_id = %self.id, code = ?status.code(), "cannot open a session");
                            if member_gone(&status) {
                                self.targets.next();
                            }
                            match self.recover_later(&mut recoveries, "cannot open a session") {
                                Some(at) => reopen_at = Some(at),
                                None => break,
                            }
                        }
                    }
                },
                () = sleep_until_opt(finish_at) => self.finish().await,
                changed = self.phase.changed() => {
                    if changed.is_err() {
                        // The run is gone: nobody will ask for a logout any more.
                        self.start_hurrying();
                        self.finish().await;
                        break;
                    }
                },
            }
        }
        if self.held.is_some() {
            self.finish().await;
        }
        if self.context.logout {
            self.log_out().await;
        }
        drop(stream);
        self.context.board.set_state(self.index, InformantState::Offline);
        self.report
    }

    /// When to try again to get a session back, or `None` once the attempts are spent.
    fn recover_later(&mut self, recoveries: &mut u32, why: &str) -> Option<Instant> {
        *recoveries += 1;
        if *recoveries > self.context.failover.attempts {
            self.give_up(why);
            return None;
        }
        Some(Instant::now() + self.context.failover.backoff(*recoveries))
    }

    fn give_up(&mut self, why: &str) {
        warn!(informant_id = %self.id, why, "informant stops");
        self.report.errors += 1;
    }

    /// Logs in again after the node forgot the informant (its member died): a new login starts from a
    /// fresh state (but for a call still connected to it, which it keeps), and its session numbers its
    /// events from the start again.
    async fn log_in_again(&mut self) -> Result<(), Status> {
        log_in(&mut self.targets, self.context.retry, &self.spec).await?;
        warn!(informant_id = %self.id, "logged in again: the node had lost the informant (its member failed?)");
        self.report.relogins += 1;
        self.context.counters.relogged_in();
        // A cluster logs an informant in again on the call it was connected
        // to: the conversation goes on, and is finished as planned.
        let request = InformantRequest { informant_id: self.id.clone() };
        let still_on = match self.targets.client().get_informant(request).await {
            Ok(status) => {
                let status = status.into_inner();
                status.state == InformantState::OnCall as i32
                    && self.held.as_ref().is_some_and(|held| held.call_id == status.call_id)
            }
            Err(_) => false,
        };
        if !still_on {
            self.held = None;
        }
        self.last_offer_id = None;
        self.seen_sequence = 0;
        Ok(())
    }

    fn start_hurrying(&mut self) {
        if !self.hurry {
            self.hurry = true;
            if let Some(held) = &mut self.held {
                held.until = Instant::now();
            }
        }
    }

    /// Shows the state a reply to one of this informant's requests told, unless a newer event was read.
    fn on_reply(&mut self, status: &InformantStatus) {
        if status.last_sequence >= self.seen_sequence {
            self.seen_sequence = status.last_sequence;
            self.context.board.set_state(self.index, status.state());
        }
    }

    async fn on_event(&mut self, event: InformantEvent) {
        // A reply already read is newer than the events sent before it.
        let stale = event.sequence <= self.seen_sequence;
        self.seen_sequence = self.seen_sequence.max(event.sequence);
        match event.kind {
            Some(Kind::State(status)) => {
                if !self.ready_sent {
                    self.ready_sent = true;
                    // The receiver has room for every informant; a full or closed channel only means
                    // nobody waits for readiness any more.
                    let _ = self.context.ready.try_send(self.index);
                }
                if stale {
                    return;
                }
                let state = status.state();
                self.context.board.set_state(self.index, state);
                match state {
                    InformantState::OnCall => {
                        if self.held.is_none() && !status.call_id.is_empty() {
                            // A call we did not accept in this session (reopened session, or left over
                            // from an earlier run): hold it like any other.
                            let until = Instant::now() + self.handle_time(&status.call_id, None);
                            self.held = Some(Held { call_id: status.call_id, until });
                        }
                    }
                    InformantState::Reserved => {
                        // Only a session's opening snapshot says "reserved" (an offer event says it
                        // otherwise); the pending offer's event follows it: accept whichever comes
                        // first, once.
                        if !status.offer_id.is_empty()
                            && !status.call_id.is_empty()
                            && self.last_offer_id.as_deref() != Some(&status.offer_id)
                        {
                            self.accept(status.offer_id, status.call_id, None).await;
                        }
                    }
                    InformantState::Paused => {
                        self.held = None;
                        if status.reason == "missed" && !self.hurry {
                            self.resume().await;
                        }
                    }
                    InformantState::Available
                    | InformantState::WrapUp
                    | InformantState::Offline
                    | InformantState::Unspecified => self.held = None,
                }
            }
            Some(Kind::Offer(offer)) => {
                if self.last_offer_id.as_deref() == Some(&offer.offer_id) {
                    // Already accepted from the snapshot that showed it.
                    return;
                }
                // The offer itself means "reserved"; no state event comes with it.
                if !stale {
                    self.context.board.set_state(self.index, InformantState::Reserved);
                }
                self.accept(offer.offer_id, offer.call_id, Some(offer.queue_id)).await;
            }
            Some(Kind::CallEnded(ended)) => {
                if self.held.as_ref().is_some_and(|held| held.call_id == ended.call_id) {
                    self.held = None;
                }
            }
            Some(Kind::OfferWithdrawn(_)) | None => {}
        }
    }

    /// The real time to hold `call_id`: as drawn by the gateway, or drawn here if the call is unknown.
    fn handle_time(&mut self, call_id: &str, queue_id: Option<&str>) -> Duration {
        if self.hurry {
            return Duration::ZERO;
        }
        if let Some(handle) = self.context.book.get(call_id) {
            return handle;
        }
        let distribution = queue_id
            .and_then(|queue_id| self.context.handle_by_queue.get(queue_id))
            .unwrap_or(&self.context.default_handle);
        self.context.scale.to_real(distribution.sample(&mut self.rng))
    }

    async fn accept(&mut self, offer_id: String, call_id: String, queue_id: Option<String>) {
        self.report.offers += 1;
        self.last_offer_id = Some(offer_id.clone());
        let retry = self.context.retry;
        let request = OfferReply { informant_id: self.id.clone(), offer_id };
        let (result, _) = retry
            .call_across(&mut self.targets, |mut client| {
                let request = retry.request(request.clone());
                async move { client.accept_offer(request).await }
            })
            .await;
        match result {
            Ok(reply) => {
                self.on_reply(&reply);
                self.report.accepted += 1;
                let until = Instant::now() + self.handle_time(&call_id, queue_id.as_deref());
                self.held = Some(Held { call_id, until });
            }
            // The offer was withdrawn or expired meanwhile: the caller hung up or another try follows.
            Err(status) if matches!(status.code(), Code::FailedPrecondition | Code::NotFound | Code::Aborted) => {
                debug!(informant_id = %self.id, code = ?status.code(), "offer gone before accept");
            }
            Err(status) => {
                self.report.errors += 1;
                warn!(informant_id = %self.id, code = ?status.code(), message = status.message(), "accept failed");
            }
        }
    }

    async fn finish(&mut self) {
        let Some(held) = self.held.take() else { return };
        let retry = self.context.retry;
        let request = FinishCallRequest { informant_id: self.id.clone(), call_id: held.call_id };
        let (result, _) = retry
            .call_across(&mut self.targets, |mut client| {
                let request = retry.request(request.clone());
                async move { client.finish_call(request).await }
            })
            .await;
        match result {
            Ok(reply) => {
                self.on_reply(&reply);
                self.report.finished += 1;
            }
            // A call she no longer holds (a failover restored her without
            // it), or an informant no member knows (her member died with her
            // actor; her session's end logs her in again): nothing to finish.
            Err(status) if matches!(status.code(), Code::FailedPrecondition | Code::NotFound) => {}
            Err(status) => {
                self.report.errors += 1;
                warn!(informant_id = %self.id, code = ?status.code(), message = status.message(), "finish failed");
            }
        }
    }

    async fn resume(&mut self) {
        let retry = self.context.retry;
        let request = InformantRequest { informant_id: self.id.clone() };
        let (result, _) = retry
            .call_across(&mut self.targets, |mut client| {
                let request = retry.request(request.clone());
                async move { client.resume(request).await }
            })
            .await;
        match result {
            Ok(reply) => self.on_reply(&reply),
            Err(status) => {
                self.report.errors += 1;
                warn!(informant_id = %self.id, code = ?status.code(), "resume after missed offers failed");
            }
        }
    }

    async fn log_out(&mut self) {
        let retry = self.context.retry;
        let request = InformantRequest { informant_id: self.id.clone() };
        let (result, _) = retry
            .call_across(&mut self.targets, |mut client| {
                let request = retry.request(request.clone());
                async move { client.logout(request).await }
            })
            .await;
        if let Err(status) = result
            && status.code() != Code::NotFound
        {
            self.report.errors += 1;
            warn!(informant_id = %self.id, code = ?status.code(), message = status.message(), "logout failed");
        }
    }
}
