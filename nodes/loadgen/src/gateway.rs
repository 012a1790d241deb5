//! The simulated telephony gateway: places one call and follows it to its end.
//!
//! For each arrival, [`place_call`] sends `OfferCall`, then watches the call's events. The caller hangs
//! up (`HangUp`) when their patience runs out before they are connected, or when the run shuts down.
//! A broken event stream is reopened from the last sequence seen, a bounded number of times. The task
//! always ends: at the latest a grace period after the shutdown starts, with the call left unresolved.
//!
//! Like a real gateway, it gets through a member's failure: an `OfferCall` that finds its member
//! unavailable or gone is sent again with the same call id (the idempotency key), through the next
//! target when there are several, and so is the reopening of a broken event stream, within the run's
//! failover bounds. A call that lived on a member that died is lost today (`watch_call: not_found`).
//!
//! Connected calls are ended by the informant side (see `informant.rs`); the gateway only waits for the
//! `Completed` event.

use std::sync::Arc;
use std::time::Duration;

use relais_proto::v1::call_event::Kind;
use relais_proto::v1::{CallEvent, CallState, HangUpRequest, OfferCallRequest, WatchCallRequest};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::{Code, Status, Streaming};
use tracing::{debug, warn};

use crate::board::Board;
use crate::client::{Gateway, Retry, Targets, member_gone};
use crate::informant::HandleBook;
use crate::live::Counters;
use crate::profile::Arrival;
use crate::sim::{Phase, sleep_until_opt};
use crate::summary::{CallRecord, Outcome};
use crate::units::TimeScale;

/// Everything call tasks share.
pub(crate) struct CallContext {
    pub scale: TimeScale,
    pub retry: Retry,
    /// Bounds on offering a call again and on reopening its event stream (in a row without an event).
    pub failover: Retry,
    pub board: Arc<Board>,
    pub book: Arc<HandleBook>,
    pub counters: Arc<Counters>,
    pub phase: watch::Receiver<Phase>,
    /// How long a call may take to end once the shutdown has begun.
    pub grace: Duration,
}

/// One call to place.
pub(crate) struct CallJob {
    pub arrival: Arrival,
    pub call_id: String,
    pub queue_id: String,
    pub sl_threshold_s: f64,
}

/// Places the call and follows it to its end; never fails, the outcome says what happened.
pub(crate) async fn place_call(context: Arc<CallContext>, targets: Targets<Gateway>, job: CallJob) -> CallRecord {
    let seq = job.arrival.seq;
    let claim = context.board.claim(job.arrival.queue, job.arrival.language.as_deref(), seq);
    context.book.insert(&job.call_id, context.scale.to_real(job.arrival.handle_s));
    context.counters.call_started();
    let mut call = FollowedCall {
        record: CallRecord::new(job.queue_id.clone(), job.sl_threshold_s),
        context: Arc::clone(&context),
        targets,
        phase: context.phase.clone(),
        started: Instant::now(),
        last_sequence: 0,
        connected: false,
        hung_up: false,
        claim,
        seq,
    };
    call.record.idle_at_offer = claim.is_some();
    let outcome = call.follow(&job).await;
    call.release_claim();
    context.book.remove(&job.call_id);
    context.counters.call_ended(&outcome);
    call.record.outcome = outcome;
    call.record
}

struct FollowedCall {
    record: CallRecord,
    context: Arc<CallContext>,
    /// The gateway's clients on every target, the one in use first.
    targets: Targets<Gateway>,
    phase: watch::Receiver<Phase>,
    started: Instant,
    last_sequence: u64,
    connected: bool,
    hung_up: bool,
    /// The informant this call counted on when it was offered, until the call is offered or ends.
    claim: Option<usize>,
    seq: u64,
}

/// The next event of an open stream; never resolves while no stream is open.
async fn next_event(stream: &mut Option<Streaming<CallEvent>>) -> Result<Option<CallEvent>, Status> {
    match stream {
        Some(stream) => stream.message().await,
        None => std::future::pending().await,
    }
}

impl FollowedCall {
    async fn follow(&mut self, job: &CallJob) -> Outcome {
        let arrival = &job.arrival;
        let request = OfferCallRequest {
            call_id: job.call_id.clone(),
            queue_id: job.queue_id.clone(),
            priority: arrival.priority,
            language: arrival.language.clone().unwrap_or_default(),
            topic: arrival.topic.clone(),
            vulnerable: arrival.vulnerable,
            caller_number: arrival.caller_number.clone(),
            attributes: [("source".to_owned(), "relais-loadgen".to_owned())].into(),
        };
        let failover = self.context.failover;
        let (response, retries) = failover
            .call_across(&mut self.targets, |mut client| {
                let request = failover.request(request.clone());
                async move { client.offer_call(request).await }
            })
            .await;
        self.record.offer_retries = retries;
        self.context.counters.offers_retried(retries);
        let status = match response {
            Ok(response) => response.call,
            Err(status) => return failed("offer_call", &status),
        };
        let Some(status) = status else {
            return Outcome::Failed { reason: "offer_call: empty response".to_owned() };
        };
        if status.state() == CallState::Deflected {
            return Outcome::Deflected { reason: status.deflect_reason };
        }

        let patience_deadline =
            arrival.patience_s.map(|patience_s| self.started + self.context.scale.to_real(patience_s));
        let mut stream: Option<Streaming<CallEvent>> = None;
        let mut reopen_at = Some(Instant::now());
        let mut reopens = 0u32;
        let mut shutdown_deadline = None;
        if *self.phase.borrow() >= Phase::Hurry {
            shutdown_deadline = Some(Instant::now() + self.context.grace);
            self.hang_up(&job.call_id).await;
        }
        loop {
            tokio::select! {
                message = next_event(&mut stream) => match message {
                    Ok(Some(event)) => {
                        reopens = 0;
                        if let Some(outcome) = self.on_event(event) {
                            return outcome;
                        }
                    }
                    Ok(None) | Err(_) => {
                        // The stream broke or ended before a terminal event: reopen it from the last
                        // event seen, after a backoff, a bounded number of times.
                        if let Err(status) = &message {
                            if status.code() == Code::NotFound {
                                return failed("watch_call", status);
                            }
                            debug!(call_id = %job.call_id, code = ?status.code(), "call event stream broke");
                            if member_gone(status) {
                                self.targets.next();
                            }
                        }
                        stream = None;
                        reopens += 1;
                        if reopens > failover.attempts {
                            return Outcome::Failed { reason: "watch_call: stream kept breaking".to_owned() };
                        }
                        reopen_at = Some(Instant::now() + failover.backoff(reopens));
                    }
                },
                () = sleep_until_opt(reopen_at) => {
                    reopen_at = None;
                    match self.open_watch(&job.call_id).await {
                        Ok(opened) => stream = Some(opened),
                        Err(status) if status.code() == Code::NotFound => return failed("watch_call", &status),
                        Err(status) => {
                            if member_gone(&status) {
                                self.targets.next();
                            }
                            reopens += 1;
                            if reopens > failover.attempts {
                                return failed("watch_call", &status);
                            }
                            reopen_at = Some(Instant::now() + failover.backoff(reopens));
                        }
                    }
                },
                () = sleep_until_opt(patience_deadline), if !self.connected && !self.hung_up => {
                    self.hang_up(&job.call_id).await;
                },
                changed = self.phase.changed(), if shutdown_deadline.is_none() => {
                    if changed.is_err() || *self.phase.borrow() >= Phase::Hurry {
                        shutdown_deadline = Some(Instant::now() + self.context.grace);
                        if !self.connected && !self.hung_up {
                            self.hang_up(&job.call_id).await;
                        }
                    }
                },
                () = sleep_until_opt(shutdown_deadline) => {
                    warn!(call_id = %job.call_id, "no end seen for the call before the shutdown grace ran out");
                    return Outcome::Unresolved;
                },
            }
        }
    }

    async fn open_watch(&mut self, call_id: &str) -> Result<Streaming<CallEvent>, Status> {
        let request = WatchCallRequest { call_id: call_id.to_owned(), after_sequence: self.last_sequence };
        let mut client = self.targets.client();
        // No deadline on the stream itself: it lives as long as the call.
        Ok(client.watch_call(request).await?.into_inner())
    }

    /// Applies one event; returns the outcome when the event ends the call.
    fn on_event(&mut self, event: CallEvent) -> Option<Outcome> {
        if event.sequence <= self.last_sequence {
            // Replayed after a reopening: already applied.
            return None;
        }
        self.last_sequence = event.sequence;
        match event.kind? {
            Kind::Queued(_) => None,
            // A proposal the informant never answered routed nothing.
            Kind::Offered(offered) if offered.unanswered => None,
            Kind::Offered(_) => {
                if self.record.offered_latency.is_none() {
                    self.record.offered_latency = Some(self.started.elapsed());
                }
                self.release_claim();
                None
            }
            Kind::Connected(connected) => {
                if !self.connected {
                    self.connected = true;
                    self.record.connected_latency = Some(self.started.elapsed());
                    self.record.waited_real_ms = Some(connected.waited_ms);
                    self.context.counters.call_connected();
                }
                self.release_claim();
                None
            }
            Kind::Completed(_) => Some(if self.connected {
                Outcome::Answered
            } else {
                Outcome::Failed { reason: "completed without being connected".to_owned() }
            }),
            Kind::Abandoned(abandoned) => {
                self.record.waited_real_ms = Some(abandoned.waited_ms);
                Some(Outcome::Abandoned)
            }
            Kind::Deflected(deflected) => Some(Outcome::Deflected { reason: deflected.reason }),
            Kind::Transferred(_) => {
                self.record.transferred = true;
                None
            }
        }
    }

    /// The caller hangs up. Errors are not fatal: the call may have ended meanwhile, and the event
    /// stream tells how it ended in any case.
    async fn hang_up(&mut self, call_id: &str) {
        self.hung_up = true;
        let retry = self.context.retry;
        let (result, _) = retry
            .call_across(&mut self.targets, |mut client| {
                let request = retry.request(HangUpRequest { call_id: call_id.to_owned() });
                async move { client.hang_up(request).await }
            })
            .await;
        if let Err(status) = result
            && !matches!(status.code(), Code::NotFound | Code::FailedPrecondition)
        {
            debug!(call_id, code = ?status.code(), "hang-up failed");
        }
    }

    fn release_claim(&mut self) {
        if let Some(index) = self.claim.take() {
            self.context.board.release(index, self.seq);
        }
    }
}

fn failed(request: &str, status: &Status) -> Outcome {
    Outcome::Failed { reason: format!("{request}: {}", code_name(status.code())) }
}

/// The gRPC name of a status code, e.g. `unavailable`, for grouping failures in the summary.
pub(crate) fn code_name(code: Code) -> String {
    format!("{code:?}").chars().fold(String::new(), |mut name, c| {
        if c.is_uppercase() && !name.is_empty() {
            name.push('_');
        }
        name.push(c.to_ascii_lowercase());
        name
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_status_codes_like_grpc() {
        assert_eq!(code_name(Code::Unavailable), "unavailable");
        assert_eq!(code_name(Code::FailedPrecondition), "failed_precondition");
        assert_eq!(code_name(Code::DeadlineExceeded), "deadline_exceeded");
    }
}
