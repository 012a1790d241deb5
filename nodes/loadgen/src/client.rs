//! gRPC plumbing shared by the simulated gateway, informants and operator: connections, identity
//! metadata and retries.
//!
//! Every request carries the caller's identity in `x-relais-tenant` and `x-relais-role`, added by the
//! [`Identity`] interceptor, so no other module deals with metadata. Requests are spread over several
//! HTTP/2 connections because a server accepts a bounded number of concurrent streams per connection
//! (hyper's default is 200) and every waiting call and every informant holds one stream open.

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

/// A fixed set of lazily connected channels to one node.
///
/// **Invariant:** `informant_channels + call_channels == channels.len()`, both at least 1.
pub struct Connections {
    channels: Vec<Channel>,
    informant_channels: usize,
    tenant: AsciiMetadataValue,
}

impl Connections {
    /// Prepares channels to `target` for `informants` informants and up to `max_calls` calls in flight,
    /// or exactly `connections` channels when given. Nothing connects until the first request.
    pub fn new(
        target: &str,
        tenant: &str,
        informants: usize,
        max_calls: usize,
        connections: Option<usize>,
    ) -> Result<Self> {
        let tenant: AsciiMetadataValue = MetadataValue::try_from(tenant)
            .map_err(|_| Error::InvalidConfig(format!("tenant `{tenant}` is not valid ASCII metadata")))?;
        let endpoint = Endpoint::from_shared(target.to_owned())
            .map_err(|source| Error::InvalidTarget { target: target.to_owned(), source })?
            .connect_timeout(Duration::from_secs(3))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let informant_channels = informants.div_ceil(STREAMS_PER_CONNECTION).max(1);
        let call_channels = match connections {
            Some(total) => total.saturating_sub(informant_channels).max(1),
            None => max_calls.div_ceil(STREAMS_PER_CONNECTION).clamp(1, 64),
        };
        let channels = (0..informant_channels + call_channels).map(|_| endpoint.connect_lazy()).collect();
        Ok(Self { channels, informant_channels, tenant })
    }

    fn identity(&self, role: &'static str) -> Identity {
        Identity { tenant: self.tenant.clone(), role: AsciiMetadataValue::from_static(role) }
    }

    /// A gateway client for call number `seq`, spreading calls over the call channels.
    pub fn gateway(&self, seq: u64) -> Gateway {
        let call_channels = self.channels.len() - self.informant_channels;
        let index = self.informant_channels + (seq % call_channels as u64) as usize;
        GatewayClient::with_interceptor(self.channels[index].clone(), self.identity("gateway"))
    }

    /// An informant client for informant number `index`.
    pub fn informant(&self, index: usize) -> Informant {
        let channel = self.channels[index % self.informant_channels].clone();
        InformantClient::with_interceptor(channel, self.identity("informant"))
    }

    /// An admin client.
    pub fn admin(&self) -> Admin {
        AdminClient::with_interceptor(self.channels[0].clone(), self.identity("admin"))
    }

    /// How many connections are used.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.channels.len()
    }
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
    /// are spent. Only `UNAVAILABLE` is retried: the node was not reached or is restarting, so the request
    /// was not processed, or was processed idempotently (every request we retry is idempotent or reports
    /// a harmless `FAILED_PRECONDITION` on replay).
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
                Err(status) if status.code() == Code::Unavailable && tries < self.attempts.max(1) => {
                    tokio::time::sleep(self.backoff(tries)).await;
                }
                Err(status) => return Err(status),
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

    #[tokio::test]
    async fn spreads_streams_over_connections() {
        let connections = Connections::new("http://127.0.0.1:1", "cai", 250, 1000, None).unwrap();
        assert_eq!(connections.len(), 3 + 10);
        let fixed = Connections::new("http://127.0.0.1:1", "cai", 10, 1000, Some(4)).unwrap();
        assert_eq!(fixed.len(), 4);
        assert!(matches!(Connections::new("not a uri", "cai", 1, 1, None), Err(Error::InvalidTarget { .. })));
    }
}
