//! gRPC plumbing shared by the simulated gateway, informants and operator: connections, identity
//! metadata, targets and retries.
//!
//! Every request carries the caller's identity in `x-relais-tenant` and `x-relais-role`, added by the
//! [`Identity`] interceptor, so no other module deals with metadata. Requests are spread over several
//! HTTP/2 connections because a server accepts a bounded number of concurrent streams per connection
//! (hyper's default is 200) and every waiting call and every informant holds one stream open.
//!
//! With several targets (the members of a cluster), each informant and each call starts at one of
//! them, in turn, and moves to the next when a request finds its member gone ([`Targets`],
//! [`Retry::call_across`]), as a real desktop or gateway configured with every member's address would.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use relais_proto::v1::admin_client::AdminClient;
use relais_proto::v1::gateway_client::GatewayClient;
use relais_proto::v1::informant_client::InformantClient;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

use crate::error::{Error, Result};

/// Streams we open per connection at most, comfortably below the server's usual limit of 200.
pub(crate) const STREAMS_PER_CONNECTION: usize = 100;

/// Adds the tenant and role to every request.
#[derive(Clone)]
pub struct Identity {
    tenant: AsciiMetadataValue,
    role: AsciiMetadataValue,
}

impl Interceptor for Identity {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let metadata = request.metadata_mut();
        metadata.insert("x-relais-tenant", self.tenant.clone());
        metadata.insert("x-relais-role", self.role.clone());
        Ok(request)
    }
}

/// A client of the Gateway service, speaking as a gateway.
pub type Gateway = GatewayClient<InterceptedService<Channel, Identity>>;
/// A client of the Informant service, speaking as an informant's desktop.
pub type Informant = InformantClient<InterceptedService<Channel, Identity>>;
/// A client of the Admin service, speaking as an operator.
pub type Admin = AdminClient<InterceptedService<Channel, Identity>>;

/// Lazily connected channels to each target.
///
/// **Invariant:** every target has `informant_channels + call_channels` channels, both at least 1, and
/// there is at least one target.
pub struct Connections {
    /// Each target's channels: informants' first, then calls'.
    targets: Vec<Vec<Channel>>,
    informant_channels: usize,
    tenant: AsciiMetadataValue,
}

impl Connections {
    /// Prepares channels to each of `targets` for `informants` informants and up to `max_calls` calls in
    /// flight, or exactly `connections` channels per target when given: each target can take the whole
    /// load when the others are gone. Nothing connects until the first request.
    pub fn new(
        targets: &[String],
        tenant: &str,
        informants: usize,
        max_calls: usize,
        connections: Option<usize>,
    ) -> Result<Self> {
        let tenant: AsciiMetadataValue = MetadataValue::try_from(tenant)
            .map_err(|_| Error::InvalidConfig(format!("tenant `{tenant}` is not valid ASCII metadata")))?;
        if targets.is_empty() {
            return Err(Error::InvalidConfig("at least one target is needed".to_owned()));
        }
        let informant_channels = informants.div_ceil(STREAMS_PER_CONNECTION).max(1);
        let call_channels = match connections {
            Some(total) => total.saturating_sub(informant_channels).max(1),
            None => max_calls.div_ceil(STREAMS_PER_CONNECTION).clamp(1, 64),
        };
        let targets = targets
            .iter()
            .map(|target| {
                let endpoint = Endpoint::from_shared(target.clone())
                    .map_err(|source| Error::InvalidTarget { target: target.clone(), source })?
                    .connect_timeout(Duration::from_secs(3))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(10))
                    .keep_alive_timeout(Duration::from_secs(5));
                Ok((0..informant_channels + call_channels).map(|_| endpoint.connect_lazy()).collect())
            })
            .collect::<Result<_>>()?;
        Ok(Self { targets, informant_channels, tenant })
    }

    fn identity(&self, role: &'static str) -> Identity {
        Identity { tenant: self.tenant.clone(), role: AsciiMetadataValue::from_static(role) }
    }

    /// The first target of number `n` (an informant's index, a call's sequence): in turn.
    fn first_target(&self, n: u64) -> usize {
        (n % self.targets.len() as u64) as usize
    }

    /// Gateway clients for call number `seq`, one per target, starting at the call's turn; calls are
    /// spread over each target's call channels.
    pub fn gateway(&self, seq: u64) -> Targets<Gateway> {
        let call_channels = self.targets[0].len() - self.informant_channels;
        let index = self.informant_channels + (seq / self.targets.len() as u64 % call_channels as u64) as usize;
        let clients = self
            .targets
            .iter()
            .map(|channels| GatewayClient::with_interceptor(channels[index].clone(), self.identity("gateway")))
            .collect();
        Targets::new(clients, self.first_target(seq))
    }

    /// Informant clients for informant number `index`, one per target, starting at its turn.
    pub fn informant(&self, index: usize) -> Targets<Informant> {
        let channel = index / self.targets.len() % self.informant_channels;
        let clients = self
            .targets
            .iter()
            .map(|channels| InformantClient::with_interceptor(channels[channel].clone(), self.identity("informant")))
            .collect();
        Targets::new(clients, self.first_target(index as u64))
    }

    /// Admin clients, one per target, starting at the first.
    pub fn admin(&self) -> Targets<Admin> {
        let clients = self
            .targets
            .iter()
            .map(|channels| AdminClient::with_interceptor(channels[0].clone(), self.identity("admin")))
            .collect();
        Targets::new(clients, 0)
    }

    /// How many connections are used.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.targets.iter().map(Vec::len).sum()
    }
}

/// Clients of one service, one per target, and the one in use.
///
/// **Invariant:** `clients` is not empty and `current < clients.len()`.
#[derive(Clone)]
pub struct Targets<C> {
    clients: Vec<C>,
    current: usize,
}

impl<C: Clone> Targets<C> {
    /// Clients of every target, using `first` first.
    fn new(clients: Vec<C>, first: usize) -> Self {
        assert!(!clients.is_empty(), "at least one target");
        let current = first % clients.len();
        Self { clients, current }
    }

    /// The client in use.
    pub fn client(&self) -> C {
        self.clients[self.current].clone()
    }

    /// Every target's client, the one in use first.
    pub fn all(&self) -> impl Iterator<Item = &C> {
        self.clients[self.current..].iter().chain(&self.clients[..self.current])
    }

    /// Moves to the next target (the same one when there is only one).
    pub fn next(&mut self) {
        self.current = (self.current + 1) % self.clients.len();
    }

    /// How many targets there are.
    pub fn len(&self) -> usize {
        self.clients.len()
    }
}

/// Whether a failed request found its member unreachable or gone, so that another member may serve it:
/// the node said `UNAVAILABLE` (a member failing over, an actor being placed, a member cut off), the
/// client library reported a transport failure (the connection broke: a status of its own carries the
/// error as its source), or the request's deadline passed ([`timed_out`]).
pub fn member_gone(status: &Status) -> bool {
    status.code() == Code::Unavailable
        || (status.code() == Code::Unknown && std::error::Error::source(status).is_some())
        || timed_out(status)
}

/// Whether a request's deadline passed before its answer came: its outcome is unknown (the node may
/// have done it), so it is sent again, never counted as failed. The client library says
/// `DEADLINE_EXCEEDED`; a tonic server whose handler outlives the deadline the request carried answers
/// `CANCELLED` (for instance a node still waiting for a member that hangs). This client never cancels
/// its own requests, so a `CANCELLED` it reads is always that.
pub fn timed_out(status: &Status) -> bool {
    matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled)
}

/// How unary requests are bounded and retried.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Backoff before the second attempt; it doubles each time.
    pub base: Duration,
    /// Longest backoff.
    pub cap: Duration,
    /// Deadline of each attempt.
    pub rpc_timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 5,
            base: Duration::from_millis(50),
            cap: Duration::from_secs(2),
            rpc_timeout: Duration::from_secs(5),
        }
    }
}

impl Retry {
    /// How a simulated informant or gateway gets through a member's failure: ten attempts, backing off
    /// from 200 ms to 2 s, about 12 s in all at most.
    pub fn failover() -> Self {
        Self { attempts: 10, base: Duration::from_millis(200), ..Self::default() }
    }

    /// A request carrying `message` with the per-attempt deadline.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.rpc_timeout);
        request
    }

    /// The pause before attempt `attempt + 1` (`attempt` ≥ 1): exponential with jitter, so that many
    /// calls failing together do not retry together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponential = self.base.saturating_mul(1 << attempt.saturating_sub(1).min(16));
        exponential.min(self.cap).mul_f64(rand::rng().random_range(0.5..1.0))
    }

    /// Runs `attempt` until it succeeds, fails with a status that retrying cannot fix, or the attempts
    /// are spent. Only `UNAVAILABLE` and a passed deadline ([`timed_out`]) are retried: the node was not
    /// reached, is restarting or did not answer in time, so the request was not processed, or was
    /// processed idempotently (every request we retry is idempotent or reports a harmless
    /// `FAILED_PRECONDITION` on replay).
    pub async fn call<T, F, Fut>(&self, mut attempt: F) -> Result<T, Status>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt().await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status)
                    if (status.code() == Code::Unavailable || timed_out(&status)) && tries < self.attempts.max(1) =>
                {
                    tokio::time::sleep(self.backoff(tries)).await;
                }
                Err(status) => return Err(status),
            }
        }
    }

    /// Runs `attempt` with the client in use until it succeeds, fails in a way that retrying cannot fix,
    /// or the attempts are spent; returns the result and how many retries it took. A failure that may
    /// mean the member is gone ([`member_gone`]) moves to the next target: at once while some target has
    /// not been tried for this request, after a backoff once every one has. Every request sent through
    /// here is idempotent, or reports a harmless `FAILED_PRECONDITION` or `NOT_FOUND` on replay.
    pub async fn call_across<C, T, F, Fut>(&self, targets: &mut Targets<C>, mut attempt: F) -> (Result<T, Status>, u32)
    where
        C: Clone,
        F: FnMut(C) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let mut tries = 0;
        let mut untried = targets.len() - 1;
        let mut backoffs = 0;
        loop {
            tries += 1;
            match attempt(targets.client()).await {
                Ok(response) => return (Ok(response.into_inner()), tries - 1),
                Err(status) if member_gone(&status) && tries < self.attempts.max(1) => {
                    targets.next();
                    if untried > 0 {
                        untried -= 1;
                    } else {
                        backoffs += 1;
                        tokio::time::sleep(self.backoff(backoffs)).await;
                    }
                }
                Err(status) => return (Err(status), tries - 1),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_adds_tenant_and_role() {
        let mut identity = Identity {
            tenant: AsciiMetadataValue::from_static("cai"),
            role: AsciiMetadataValue::from_static("gateway"),
        };
        let request = identity.call(Request::new(())).unwrap();
        assert_eq!(request.metadata().get("x-relais-tenant").unwrap(), "cai");
        assert_eq!(request.metadata().get("x-relais-role").unwrap(), "gateway");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let retry = Retry::default();
        assert!(retry.backoff(1) <= Duration::from_millis(50));
        assert!(retry.backoff(3) >= Duration::from_millis(100));
        assert!(retry.backoff(30) <= Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_only_unavailable_and_a_bounded_number_of_times() {
        let retry = Retry::default();
        let mut calls = 0;
        let result: Result<(), Status> = retry
            .call(|| {
                calls += 1;
                async { Err(Status::unavailable("down")) }
            })
            .await;
        assert_eq!(result.unwrap_err().code(), Code::Unavailable);
        assert_eq!(calls, 5);
        let mut calls = 0;
        let result: Result<(), Status> = retry
            .call(|| {
                calls += 1;
                async { Err(Status::failed_precondition("withdrawn")) }
            })
            .await;
        assert_eq!(result.unwrap_err().code(), Code::FailedPrecondition);
        assert_eq!(calls, 1);
        let mut calls = 0;
        let result = retry
            .call(|| {
                calls += 1;
                let fail = calls < 3;
                async move { if fail { Err(Status::unavailable("down")) } else { Ok(Response::new(7)) } }
            })
            .await;
        assert_eq!(result.unwrap(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn moves_to_the_next_target_when_a_member_is_gone_and_backs_off_once_all_were_tried() {
        let retry = Retry::failover();
        let mut targets = Targets::new(vec!["a", "b", "c"], 1);
        let started = tokio::time::Instant::now();
        let mut asked = Vec::new();
        let (result, retries) = retry
            .call_across(&mut targets, |target| {
                asked.push(target);
                let gone = target != "a";
                async move { if gone { Err(Status::unavailable("gone")) } else { Ok(Response::new(target)) } }
            })
            .await;
        assert_eq!((result.unwrap(), retries), ("a", 2));
        assert_eq!(asked, ["b", "c", "a"]);
        assert_eq!(started.elapsed(), Duration::ZERO, "another member is tried at once");
        assert_eq!(targets.client(), "a", "the target that answered stays in use");

        // Every member gone: the attempts are bounded, with backoffs once each was tried.
        let mut tries = 0;
        let (result, retries) = retry
            .call_across(&mut targets, |_| {
                tries += 1;
                async { Err::<Response<()>, _>(Status::unavailable("gone")) }
            })
            .await;
        assert_eq!((result.unwrap_err().code(), retries, tries), (Code::Unavailable, 9, 10));
        assert!(started.elapsed() >= Duration::from_secs(4), "{:?}", started.elapsed());
        // Other failures are answers.
        let (result, retries) =
            retry.call_across(&mut targets, |_| async { Err::<Response<()>, _>(Status::not_found("call")) }).await;
        assert_eq!((result.unwrap_err().code(), retries), (Code::NotFound, 0));
    }

    #[test]
    fn transport_failures_unavailable_and_timeouts_mean_the_member_may_be_gone() {
        assert!(member_gone(&Status::unavailable("failing over")));
        let broken = Status::from_error(Box::new(std::io::Error::other("connection reset")));
        assert_eq!(broken.code(), Code::Unknown);
        assert!(member_gone(&broken));
        assert!(!member_gone(&Status::unknown("the node's own unknown error")));
        assert!(!member_gone(&Status::not_found("call")));
        assert!(member_gone(&Status::deadline_exceeded("no answer in time")));
        assert!(member_gone(&Status::cancelled("Timeout expired")), "a deadline the server saw pass");
    }

    #[tokio::test]
    async fn spreads_streams_over_connections_and_targets() {
        let one = ["http://127.0.0.1:1".to_owned()];
        let connections = Connections::new(&one, "cai", 250, 1000, None).unwrap();
        assert_eq!(connections.len(), 3 + 10);
        let fixed = Connections::new(&one, "cai", 10, 1000, Some(4)).unwrap();
        assert_eq!(fixed.len(), 4);
        assert!(matches!(
            Connections::new(&["not a uri".to_owned()], "cai", 1, 1, None),
            Err(Error::InvalidTarget { .. })
        ));
        assert!(matches!(Connections::new(&[], "cai", 1, 1, None), Err(Error::InvalidConfig(_))));
        let three: Vec<String> = (1..=3).map(|port| format!("http://127.0.0.1:{port}")).collect();
        let cluster = Connections::new(&three, "cai", 10, 100, Some(2)).unwrap();
        assert_eq!(cluster.len(), 6, "each target gets the connections asked for");
        // Informants and calls start at each target in turn.
        assert_eq!((0..6).map(|i| cluster.informant(i).current).collect::<Vec<_>>(), [0, 1, 2, 0, 1, 2]);
        assert_eq!((0..4).map(|seq| cluster.gateway(seq).current).collect::<Vec<_>>(), [0, 1, 2, 0]);
        assert_eq!(cluster.admin().current, 0);
    }
}
