//! The workload: a telephony gateway and informants' desktops over real
//! gRPC, spread over the cluster's nodes, recording every request, answer,
//! error, timeout and stream event in the history.
//!
//! They retry as real clients do: a gateway offers a call again under the
//! same `call_id` on the next node when a node is gone or silent, and
//! resumes a call's stream with `after_sequence` = the last sequence seen;
//! an informant whose session breaks reopens it (on the next node when hers
//! is gone) and logs in again when the node forgot her. Every wait is
//! bounded by a timeout, every retry loop by a count or a deadline, and the
//! number of live calls by `max_live_calls`.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use relais_proto::v1 as pb;
use relais_proto::v1::admin_client::AdminClient;
use relais_proto::v1::call_event::Kind as CallEventKind;
use relais_proto::v1::gateway_client::GatewayClient;
use relais_proto::v1::informant_client::InformantClient;
use relais_proto::v1::informant_event::Kind as SessionEventKind;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::history::{CallKind, Event, Outcome, Recorder, SessionKind};

/// The tenant every request speaks for.
pub const TENANT: &str = "cai";
/// How long a unary request may take before its outcome is unknown.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts of one OfferCall, HangUp, accept or finish at most.
const MAX_ATTEMPTS: u32 = 12;
/// Pause between two attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// The CAI's peak, played 60 times faster: ~250 calls an hour of ~5
/// minutes with ~50 informants becomes ~4.2 calls a second of ~5 s.
pub const CAI_PEAK_CALLS_PER_S: f64 = 250.0 * 60.0 / 3600.0;
pub const CAI_HOLD_MS: u64 = 5_000;

/// The shape of the load.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Queues, `q0`…; informants of queue k hold skill `s<k>` only.
    pub queues: usize,
    pub informants_per_queue: usize,
    /// Multiple of the CAI-like peak.
    pub multiple: f64,
    /// Mean time a caller waits before hanging up, when not connected.
    pub patience_ms: u64,
    /// Share of calls with priority 5 (the others have priority 1).
    pub high_priority_share: f64,
    /// Live calls at most; an arrival beyond it is not offered.
    pub max_live_calls: usize,
}

impl Load {
    /// Calls per second.
    pub fn rate(&self) -> f64 {
        CAI_PEAK_CALLS_PER_S * self.multiple
    }

    /// The CAI-like peak times `multiple` over five queues (spread over the
    /// nodes), each staffed with the queue's offered load in Erlangs
    /// rounded up: calls often wait (a busy hour), yet informants free up
    /// often enough that the time a queue takes to route again after a
    /// fault is the cluster's, not the staffing's.
    pub fn cai(multiple: f64) -> Self {
        let queues = 5;
        let erlangs = CAI_PEAK_CALLS_PER_S * multiple * CAI_HOLD_MS as f64 / 1000.0;
        Self {
            queues,
            informants_per_queue: ((erlangs / queues as f64).ceil() as usize).max(2),
            multiple,
            patience_ms: 8_000,
            high_priority_share: 0.2,
            max_live_calls: 5_000,
        }
    }
}

/// Adds the tenant and role to every request.
#[derive(Clone)]
pub struct Identity(&'static str);

impl Interceptor for Identity {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert("x-relais-tenant", AsciiMetadataValue::from_static(TENANT));
        request.metadata_mut().insert("x-relais-role", AsciiMetadataValue::from_static(self.0));
        Ok(request)
    }
}

pub type Gateway = GatewayClient<InterceptedService<Channel, Identity>>;
pub type Desk = InformantClient<InterceptedService<Channel, Identity>>;
pub type Admin = AdminClient<InterceptedService<Channel, Identity>>;

/// Lazily connected channels to every node.
#[derive(Clone)]
pub struct Targets {
    /// (node id, channels)
    nodes: Arc<Vec<(String, Vec<Channel>)>>,
}

/// Channels per node: each carries at most ~100 streams.
const CHANNELS_PER_NODE: usize = 8;

impl Targets {
    pub fn new(nodes: &[(String, String)]) -> anyhow::Result<Self> {
        let nodes = nodes
            .iter()
            .map(|(id, url)| {
                let endpoint = Endpoint::from_shared(url.clone())?
                    .connect_timeout(Duration::from_secs(1))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(1))
                    .keep_alive_timeout(Duration::from_secs(1))
                    .keep_alive_while_idle(true);
                Ok((id.clone(), (0..CHANNELS_PER_NODE).map(|_| endpoint.connect_lazy()).collect()))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { nodes: Arc::new(nodes) })
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn channel(&self, node: usize, n: u64) -> Channel {
        let channels = &self.nodes[node % self.len()].1;
        channels[(n % channels.len() as u64) as usize].clone()
    }

    pub fn node_id(&self, node: usize) -> &str {
        &self.nodes[node % self.len()].0
    }

    pub fn gateway(&self, node: usize, n: u64) -> Gateway {
        GatewayClient::with_interceptor(self.channel(node, n), Identity("gateway"))
    }

    pub fn desk(&self, node: usize, n: u64) -> Desk {
        InformantClient::with_interceptor(self.channel(node, n), Identity("informant"))
    }

    pub fn admin(&self, node: usize) -> Admin {
        AdminClient::with_interceptor(self.channel(node, 0), Identity("admin"))
    }
}

/// Whether a request that got `status` may have taken effect.
pub fn outcome(status: &Status) -> Outcome {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled | Code::Internal => {
            Outcome::Unknown
        }
        _ => Outcome::Failed,
    }
}

/// Whether another node may serve what failed with `status`.
fn node_gone(status: &Status) -> bool {
    outcome(status) == Outcome::Unknown
}

/// Runs a unary request with the request timeout; a timeout is a
/// `DEADLINE_EXCEEDED` of our own (outcome unknown).
async fn bounded<T>(request: impl Future<Output = Result<tonic::Response<T>, Status>>) -> Result<T, Status> {
    match timeout(REQUEST_TIMEOUT, request).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(status),
        Err(_) => Err(Status::deadline_exceeded("no answer in time (client timeout)")),
    }
}

fn code(status: &Status) -> String {
    format!("{:?}", status.code())
}

/// What a request's result records: answered or not, its code, and for a
/// failure whether its outcome is unknown or failed.
fn answer_of<T>(result: &Result<T, Status>) -> (bool, String, Option<Outcome>) {
    match result {
        Ok(_) => (true, "Ok".to_string(), None),
        Err(status) => (false, code(status), Some(outcome(status))),
    }
}

/// The phases of a run, told to every client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Calls arrive.
    Arrivals,
    /// No more arrivals; callers still waiting hang up.
    HangUp,
    /// Every call is over or given up on: informants log out.
    LogOut,
}

/// Sets up the queues: `q<k>` needing skill `s<k>`.
pub async fn apply_plan(targets: &Targets, load: &Load) -> anyhow::Result<()> {
    let queues = (0..load.queues)
        .map(|k| pb::QueueConfig {
            id: format!("q{k}"),
            required_skills: vec![pb::Skill { name: format!("s{k}"), proficiency: 1 }],
            offer_timeout_ms: 3_000,
            ..Default::default()
        })
        .collect();
    let plan = pb::RoutingPlan { queues, informants: vec![], prune: false };
    let mut last = None;
    for attempt in 0..50 {
        match bounded(targets.admin(attempt).apply_plan(plan.clone())).await {
            Ok(_) => return Ok(()),
            Err(status) => last = Some(status),
        }
        sleep(RETRY_PAUSE).await;
    }
    anyhow::bail!("the routing plan was not applied: {last:?}")
}

/// A caller: offers the call, follows its stream to its end, hangs up when
/// out of patience.
pub struct Caller {
    pub recorder: Arc<Recorder>,
    pub targets: Targets,
    pub call_id: String,
    pub queue_id: String,
    pub priority: u32,
    /// Which node to try first, and the call's channel.
    pub n: u64,
    pub patience: Duration,
    pub phase: watch::Receiver<Phase>,
    /// The caller stops waiting at this instant whatever happens.
    pub give_up_at: Instant,
}

impl Caller {
    fn node(&self, shift: usize) -> usize {
        (self.n as usize + shift) % self.targets.len()
    }

    pub async fn run(mut self) {
        let mut shift = 0;
        if !self.offer(&mut shift).await {
            return;
        }
        self.follow(shift).await;
    }

    /// Offers the call until acknowledged; false when it never was.
    async fn offer(&mut self, shift: &mut usize) -> bool {
        let request = pb::OfferCallRequest {
            call_id: self.call_id.clone(),
            queue_id: self.queue_id.clone(),
            priority: self.priority,
            ..Default::default()
        };
        let mut last = Outcome::Failed;
        for attempt in 1..=MAX_ATTEMPTS {
            let node = self.node(*shift);
            self.recorder.record(Event::OfferSent {
                call_id: self.call_id.clone(),
                queue_id: self.queue_id.clone(),
                priority: self.priority,
                attempt,
                node: self.targets.node_id(node).to_string(),
            });
            match bounded(self.targets.gateway(node, self.n).offer_call(request.clone())).await {
                Ok(response) => {
                    self.recorder.record(Event::OfferAcked {
                        call_id: self.call_id.clone(),
                        created: response.created,
                        arrived_at_ms: response.call.map_or(0, |c| c.arrived_at_unix_ms),
                    });
                    return true;
                }
                Err(status) => {
                    last = outcome(&status);
                    self.recorder.record(Event::OfferFailed {
                        call_id: self.call_id.clone(),
                        attempt,
                        node: self.targets.node_id(node).to_string(),
                        code: code(&status),
                        outcome: last,
                    });
                    if last == Outcome::Failed && status.code() != Code::NotFound {
                        break;
                    }
                    *shift += 1;
                    sleep(RETRY_PAUSE).await;
                }
            }
        }
        self.recorder.record(Event::OfferAbandoned { call_id: self.call_id.clone(), outcome: last });
        false
    }

    /// Follows the call's stream until its end, resuming after breaks.
    async fn follow(&mut self, mut shift: usize) {
        let mut last_sequence = 0u64;
        let mut connected = false;
        let mut hung_up = false;
        let hang_up_at = Instant::now() + self.patience;
        let mut failures = 0u32;
        loop {
            if Instant::now() >= self.give_up_at {
                self.read_final(shift).await;
                return;
            }
            let node = self.node(shift);
            self.recorder.record(Event::WatchOpened {
                call_id: self.call_id.clone(),
                after_sequence: last_sequence,
                node: self.targets.node_id(node).to_string(),
            });
            let request = pb::WatchCallRequest { call_id: self.call_id.clone(), after_sequence: last_sequence };
            let mut stream = match bounded(self.targets.gateway(node, self.n).watch_call(request)).await {
                Ok(stream) => stream,
                Err(status) => {
                    self.recorder
                        .record(Event::WatchEnded { call_id: self.call_id.clone(), error: Some(code(&status)) });
                    failures += 1;
                    shift += 1;
                    sleep(RETRY_PAUSE * failures.min(5)).await;
                    continue;
                }
            };
            let error = loop {
                let hang_up = (!connected && !hung_up).then_some(hang_up_at);
                let hang_up_now = async {
                    match hang_up {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                let mut phase = self.phase.clone();
                let told_to_hang_up = async {
                    if !connected && !hung_up {
                        let _ = phase.wait_for(|p| *p >= Phase::HangUp).await;
                    } else {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    message = stream.message() => match message {
                        Ok(Some(event)) => {
                            failures = 0;
                            last_sequence = last_sequence.max(event.sequence);
                            let kind = self.record_event(event);
                            if kind == Some(CallKind::Connected) {
                                connected = true;
                            }
                            if kind.is_some_and(CallKind::is_end) {
                                self.recorder.record(Event::WatchEnded { call_id: self.call_id.clone(), error: None });
                                return;
                            }
                        }
                        Ok(None) => break Some("stream closed before the end".to_string()),
                        Err(status) => break Some(code(&status)),
                    },
                    () = hang_up_now => {
                        hung_up = true;
                        self.hang_up(&mut shift).await;
                    }
                    () = told_to_hang_up => {
                        hung_up = true;
                        self.hang_up(&mut shift).await;
                    }
                    () = tokio::time::sleep_until(self.give_up_at) => break Some("run over".to_string()),
                }
            };
            self.recorder.record(Event::WatchEnded { call_id: self.call_id.clone(), error });
            failures += 1;
            shift += 1;
            sleep(RETRY_PAUSE * failures.min(5)).await;
        }
    }

    /// Records a stream event; returns its kind.
    fn record_event(&self, event: pb::CallEvent) -> Option<CallKind> {
        let (kind, queue_id, informant_id, reason) = match event.kind? {
            CallEventKind::Queued(q) => (CallKind::Queued, q.queue_id, String::new(), String::new()),
            CallEventKind::Offered(o) if o.unanswered => {
                (CallKind::Unanswered, String::new(), o.informant_id, String::new())
            }
            CallEventKind::Offered(o) => (CallKind::Offered, String::new(), o.informant_id, String::new()),
            CallEventKind::Connected(c) => (CallKind::Connected, String::new(), c.informant_id, String::new()),
            CallEventKind::Completed(_) => (CallKind::Completed, String::new(), String::new(), String::new()),
            CallEventKind::Abandoned(_) => (CallKind::Abandoned, String::new(), String::new(), String::new()),
            CallEventKind::Deflected(d) => (CallKind::Deflected, String::new(), String::new(), d.reason),
            CallEventKind::Transferred(t) => (CallKind::Transferred, t.to_queue_id, String::new(), t.reason),
        };
        self.recorder.record(Event::CallEvent {
            call_id: self.call_id.clone(),
            sequence: event.sequence,
            at_ms: event.at_unix_ms,
            kind,
            queue_id,
            informant_id,
            reason,
        });
        Some(kind)
    }

    /// The caller hangs up (retried on the next node while the outcome is unknown).
    async fn hang_up(&mut self, shift: &mut usize) {
        for _ in 0..MAX_ATTEMPTS {
            let node = self.node(*shift);
            self.recorder.record(Event::HangUpSent {
                call_id: self.call_id.clone(),
                node: self.targets.node_id(node).to_string(),
            });
            let request = pb::HangUpRequest { call_id: self.call_id.clone() };
            match bounded(self.targets.gateway(node, self.n).hang_up(request)).await {
                Ok(response) => {
                    let state = response.call.map_or(0, |c| c.state);
                    self.recorder.record(Event::HangUpDone { call_id: self.call_id.clone(), state: state_name(state) });
                    return;
                }
                Err(status) => {
                    let outcome = outcome(&status);
                    self.recorder.record(Event::HangUpFailed {
                        call_id: self.call_id.clone(),
                        code: code(&status),
                        outcome,
                    });
                    if outcome == Outcome::Failed {
                        return;
                    }
                    *shift += 1;
                    sleep(RETRY_PAUSE).await;
                }
            }
        }
    }

    /// Reads the call's state at the end of the run, for the record.
    async fn read_final(&self, shift: usize) {
        let mut state = "unknown".to_string();
        for k in 0..self.targets.len() {
            let request = pb::GetCallRequest { call_id: self.call_id.clone() };
            match bounded(self.targets.gateway(self.node(shift + k), self.n).get_call(request)).await {
                Ok(call) => {
                    state = state_name(call.state);
                    break;
                }
                Err(status) => state = format!("error {}", code(&status)),
            }
        }
        self.recorder.record(Event::Final { call_id: self.call_id.clone(), state });
    }
}

fn state_name(state: i32) -> String {
    pb::CallState::try_from(state).map_or_else(|_| format!("{state}"), |s| s.as_str_name().to_lowercase())
}

/// An informant's desktop: logs in, accepts every offer, holds the call for
/// a drawn time, finishes it.
pub struct Desktop {
    pub recorder: Arc<Recorder>,
    pub targets: Targets,
    pub id: String,
    pub skill: String,
    /// Which node to try first.
    pub n: u64,
    pub hold_ms_mean: u64,
    pub rng: StdRng,
    pub phase: watch::Receiver<Phase>,
    /// The desktop stops at this instant whatever happens.
    pub give_up_at: Instant,
}

/// How a desktop's finish ended.
#[derive(Debug, PartialEq, Eq)]
enum Finished {
    /// Answered, refused, or given up after its attempts.
    Done,
    /// The informant is not logged in (NOT_FOUND).
    LoggedOut,
}

/// A call the desktop holds and when it finishes it.
struct Held {
    call_id: String,
    until: Instant,
}

impl Desktop {
    fn node(&self, shift: usize) -> usize {
        (self.n as usize + shift) % self.targets.len()
    }

    fn client(&self, shift: usize) -> Desk {
        self.targets.desk(self.node(shift), self.n)
    }

    fn hold_time(&mut self) -> Duration {
        let u: f64 = self.rng.random_range(0.0001..1.0);
        let ms = (-u.ln() * self.hold_ms_mean as f64).min(3.0 * self.hold_ms_mean as f64);
        Duration::from_millis(ms as u64)
    }

    pub async fn run(mut self) {
        let mut shift = 0usize;
        let mut held: Option<Held> = None;
        let mut logged_in = false;
        let mut failures = 0u32;
        // A call whose finish found her logged out: finished again at once
        // if her new session says she is still on it.
        let mut ending: Option<String> = None;
        while Instant::now() < self.give_up_at {
            if *self.phase.borrow() >= Phase::LogOut && held.is_none() && ending.is_none() {
                break;
            }
            if !logged_in {
                match self.log_in(shift).await {
                    Ok(()) => logged_in = true,
                    Err(_) => {
                        failures += 1;
                        shift += 1;
                        sleep(RETRY_PAUSE * failures.min(5)).await;
                        continue;
                    }
                }
            }
            let request = pb::SessionRequest { informant_id: self.id.clone() };
            let mut stream = match bounded(self.client(shift).session(request)).await {
                Ok(stream) => stream,
                Err(status) => {
                    if status.code() == Code::NotFound {
                        // Her node died with her actor, or a drain logged her out: log in again.
                        logged_in = false;
                    } else {
                        shift += 1;
                    }
                    failures += 1;
                    sleep(RETRY_PAUSE * failures.min(5)).await;
                    continue;
                }
            };
            let mut relogin = false;
            let broke = loop {
                let finish_at = held.as_ref().map(|h| h.until);
                let finish = async {
                    match finish_at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                let mut phase = self.phase.clone();
                let idle = held.is_none() && ending.is_none();
                let log_out = async {
                    if idle {
                        let _ = phase.wait_for(|p| *p >= Phase::LogOut).await;
                    } else {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    message = stream.message() => match message {
                        Ok(Some(event)) => {
                            failures = 0;
                            if let Some(accept) = self.on_event(event, &mut held) {
                                self.accept(&mut shift, accept, &mut held).await;
                            }
                            // The new session's first event tells whether
                            // she is still on the call she was ending.
                            if let Some(call_id) = ending.take()
                                && let Some(h) = held.as_mut()
                                && h.call_id == call_id
                            {
                                h.until = Instant::now();
                            }
                        }
                        Ok(None) => break None,
                        Err(status) => break Some(status),
                    },
                    () = finish => {
                        if let Some(h) = held.take()
                            && self.finish(&mut shift, h.call_id.clone()).await == Finished::LoggedOut
                        {
                            // Her member died with her actor: she logs in
                            // again at once, and finishes the call then.
                            ending = Some(h.call_id);
                            relogin = true;
                            break None;
                        }
                    }
                    () = log_out => break None,
                    () = tokio::time::sleep_until(self.give_up_at) => break None,
                }
            };
            if relogin {
                logged_in = false;
                continue;
            }
            if *self.phase.borrow() >= Phase::LogOut && held.is_none() && ending.is_none() {
                break;
            }
            if broke.as_ref().is_some_and(node_gone) {
                shift += 1;
            }
            failures += 1;
            sleep(RETRY_PAUSE * failures.min(5)).await;
        }
        self.log_out(shift).await;
    }

    async fn log_in(&mut self, shift: usize) -> Result<(), Status> {
        let node = self.node(shift);
        self.recorder
            .record(Event::LoginSent { informant_id: self.id.clone(), node: self.targets.node_id(node).to_string() });
        let request = pb::LoginRequest {
            informant_id: self.id.clone(),
            skills: vec![pb::Skill { name: self.skill.clone(), proficiency: 3 }],
        };
        let result = bounded(self.client(shift).login(request)).await;
        let (ok, code) = match &result {
            Ok(_) => (true, "Ok".to_string()),
            // Logged in already (an earlier attempt's answer was lost).
            Err(status) if status.code() == Code::AlreadyExists => (true, code(status)),
            Err(status) => (false, code(status)),
        };
        self.recorder.record(Event::LoginDone { informant_id: self.id.clone(), ok, code });
        if ok { Ok(()) } else { Err(result.err().unwrap_or_else(|| Status::unknown("login"))) }
    }

    /// Records a session event; returns an offer to accept.
    fn on_event(&mut self, event: pb::InformantEvent, held: &mut Option<Held>) -> Option<(String, String)> {
        let (kind, call_id, offer_id, state, accept) = match event.kind? {
            SessionEventKind::State(status) => {
                let state = pb::InformantState::try_from(status.state).unwrap_or(pb::InformantState::Unspecified);
                let mut accept = None;
                match state {
                    pb::InformantState::OnCall if !status.call_id.is_empty() => {
                        if held.as_ref().is_none_or(|h| h.call_id != status.call_id) {
                            let until = Instant::now() + self.hold_time();
                            *held = Some(Held { call_id: status.call_id.clone(), until });
                        }
                    }
                    pb::InformantState::Reserved if !status.offer_id.is_empty() => {
                        accept = Some((status.offer_id.clone(), status.call_id.clone()));
                    }
                    pb::InformantState::OnCall | pb::InformantState::Reserved => {}
                    _ => *held = None,
                }
                let name = state.as_str_name().to_lowercase();
                (SessionKind::State, status.call_id, status.offer_id, name, accept)
            }
            SessionEventKind::Offer(offer) => {
                let accept = Some((offer.offer_id.clone(), offer.call_id.clone()));
                (SessionKind::Offer, offer.call_id, offer.offer_id, String::new(), accept)
            }
            SessionEventKind::OfferWithdrawn(w) => {
                (SessionKind::OfferWithdrawn, String::new(), w.offer_id, w.reason, None)
            }
            SessionEventKind::CallEnded(ended) => {
                if held.as_ref().is_some_and(|h| h.call_id == ended.call_id) {
                    *held = None;
                }
                (SessionKind::CallEnded, ended.call_id, String::new(), ended.reason, None)
            }
        };
        self.recorder.record(Event::SessionEvent {
            informant_id: self.id.clone(),
            sequence: event.sequence,
            at_ms: event.at_unix_ms,
            kind,
            call_id,
            offer_id,
            state,
        });
        accept
    }

    async fn accept(&mut self, shift: &mut usize, (offer_id, call_id): (String, String), held: &mut Option<Held>) {
        for _ in 0..MAX_ATTEMPTS {
            self.recorder.record(Event::AcceptSent {
                informant_id: self.id.clone(),
                call_id: call_id.clone(),
                offer_id: offer_id.clone(),
            });
            let request = pb::OfferReply { informant_id: self.id.clone(), offer_id: offer_id.clone() };
            let result = bounded(self.client(*shift).accept_offer(request)).await;
            let (ok, code, outcome) = answer_of(&result);
            self.recorder.record(Event::AcceptDone {
                informant_id: self.id.clone(),
                call_id: call_id.clone(),
                ok,
                code,
                outcome,
            });
            match result {
                Ok(_) => {
                    let until = Instant::now() + self.hold_time();
                    *held = Some(Held { call_id, until });
                    return;
                }
                Err(status) if node_gone(&status) => {
                    *shift += 1;
                    sleep(RETRY_PAUSE).await;
                }
                // The offer is gone (expired, withdrawn): nothing to hold.
                Err(_) => return,
            }
        }
    }

    async fn finish(&mut self, shift: &mut usize, call_id: String) -> Finished {
        for _ in 0..MAX_ATTEMPTS {
            self.recorder.record(Event::FinishSent { informant_id: self.id.clone(), call_id: call_id.clone() });
            let request = pb::FinishCallRequest { informant_id: self.id.clone(), call_id: call_id.clone() };
            let result = bounded(self.client(*shift).finish_call(request)).await;
            let (ok, code, outcome) = answer_of(&result);
            self.recorder.record(Event::FinishDone {
                informant_id: self.id.clone(),
                call_id: call_id.clone(),
                ok,
                code,
                outcome,
            });
            match result {
                Ok(_) => return Finished::Done,
                Err(status) if node_gone(&status) => {
                    *shift += 1;
                    sleep(RETRY_PAUSE).await;
                }
                // No member knows her: her actor died with its member.
                Err(status) if status.code() == Code::NotFound => return Finished::LoggedOut,
                Err(_) => return Finished::Done,
            }
        }
        Finished::Done
    }

    async fn log_out(&self, shift: usize) {
        for k in 0..self.targets.len() {
            let request = pb::InformantRequest { informant_id: self.id.clone() };
            match bounded(self.client(shift + k).logout(request)).await {
                Ok(_) => return,
                Err(status) if status.code() == Code::NotFound => return,
                Err(_) => {}
            }
        }
    }
}

/// A running workload: its clients' tasks and the phase they follow.
pub struct Workload {
    phase: watch::Sender<Phase>,
    desktops: JoinSet<()>,
    arrivals: tokio::task::JoinHandle<(u64, JoinSet<()>)>,
    stop: watch::Sender<bool>,
    give_up_at: Instant,
}

impl Workload {
    /// Applies the plan, logs the informants in and starts the arrivals,
    /// for at most `arrivals` (or until [`Workload::stop_arrivals`]);
    /// clients give up at `give_up_at` whatever happens.
    pub async fn start(
        recorder: Arc<Recorder>,
        targets: Targets,
        load: Load,
        seed: u64,
        arrivals: Duration,
        give_up_at: Instant,
    ) -> anyhow::Result<Self> {
        apply_plan(&targets, &load).await?;
        let (phase, phase_rx) = watch::channel(Phase::Arrivals);
        let mut desktops = JoinSet::new();
        let mut n = 0u64;
        for k in 0..load.queues {
            for j in 0..load.informants_per_queue {
                let desktop = Desktop {
                    recorder: recorder.clone(),
                    targets: targets.clone(),
                    id: format!("i{k}-{j}"),
                    skill: format!("s{k}"),
                    n,
                    hold_ms_mean: CAI_HOLD_MS,
                    rng: StdRng::seed_from_u64(seed ^ (n + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                    phase: phase_rx.clone(),
                    give_up_at,
                };
                desktops.spawn(desktop.run());
                n += 1;
            }
        }
        // Informants log in before the first call.
        sleep(Duration::from_millis(1_000)).await;
        let (stop, mut stopped) = watch::channel(false);
        let arrivals = tokio::spawn(async move {
            let mut callers = JoinSet::new();
            let mut rng = StdRng::seed_from_u64(seed);
            let live = Arc::new(Semaphore::new(load.max_live_calls));
            let start = Instant::now();
            let mut next = start;
            let mut count = 0u64;
            loop {
                let u: f64 = rng.random_range(0.0001..1.0);
                next += Duration::from_secs_f64(-u.ln() / load.rate());
                if next > start + arrivals {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep_until(next) => {}
                    _ = stopped.wait_for(|s| *s) => break,
                }
                while callers.try_join_next().is_some() {}
                let queue = rng.random_range(0..load.queues);
                let priority = if rng.random_bool(load.high_priority_share) { 5 } else { 1 };
                let u: f64 = rng.random_range(0.0001..1.0);
                let patience = Duration::from_millis((-u.ln() * load.patience_ms as f64) as u64);
                let Ok(permit) = live.clone().try_acquire_owned() else { continue };
                let caller = Caller {
                    recorder: recorder.clone(),
                    targets: targets.clone(),
                    call_id: format!("c{seed}-{count}"),
                    queue_id: format!("q{queue}"),
                    priority,
                    n: count,
                    patience,
                    phase: phase_rx.clone(),
                    give_up_at,
                };
                count += 1;
                callers.spawn(async move {
                    caller.run().await;
                    drop(permit);
                });
            }
            (count, callers)
        });
        Ok(Self { phase, desktops, arrivals, stop, give_up_at })
    }

    /// Ends the arrivals now.
    pub fn stop_arrivals(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits for the arrivals to end, lets callers wait `grace` more, then
    /// has those still waiting hang up, waits for every call to end, and
    /// logs the informants out. Returns the number of calls that arrived.
    pub async fn finish(mut self, grace: Duration) -> u64 {
        let (count, mut callers) = self.arrivals.await.unwrap_or_else(|_| (0, JoinSet::new()));
        let _ = timeout(grace, async { while callers.join_next().await.is_some() {} }).await;
        let _ = self.phase.send(Phase::HangUp);
        let _ = tokio::time::timeout_at(self.give_up_at + Duration::from_secs(5), async {
            while callers.join_next().await.is_some() {}
        })
        .await;
        callers.abort_all();
        let _ = self.phase.send(Phase::LogOut);
        let _ = tokio::time::timeout_at(self.give_up_at + Duration::from_secs(10), async {
            while self.desktops.join_next().await.is_some() {}
        })
        .await;
        self.desktops.abort_all();
        count
    }
}
