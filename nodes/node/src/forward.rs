//! Forwarding of public requests to the member that serves their actor.
//!
//! Every request of the Gateway and Informant services is about one actor
//! (a queue, a call, a logged-in informant), which exactly one member owns.
//! A client may reach any member: the member it reached asks
//! [`Node`](crate::node::Node) where the actor is, and when another member
//! owns it, sends the same request on to that member with the caller's
//! identity, then gives back the reply or the error as the owner gave it.
//! Streams (call watchers, informant sessions) are proxied for as long as
//! they last, or until the owner leaves the membership: a member that
//! froze or was cut off keeps its TCP connections open, and what was
//! forwarded to it would otherwise hang until a keepalive noticed.
//!
//! This module carries requests between members and knows nothing of
//! actors or routing.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::{Stream, StreamExt};
use relais_proto::peer::v1 as peer_pb;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};
use tonic::{Extensions, Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::cluster::membership::Members;
use crate::error::{NodeError, Result};
use crate::identity::{ROLE_HEADER, TENANT_HEADER, identity_of};
use crate::metrics::Metrics;
use crate::node::{ASK_TIMEOUT, PeerAddr, Place};

/// Names the member that forwarded a request. A request that carries it is
/// never forwarded again.
pub const FORWARDED_BY_HEADER: &str = "x-relais-forwarded-by";

/// Most members this node keeps a channel to at once.
pub const MAX_PEERS: usize = 64;

/// How long opening a connection to a member may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a forwarded unary request (or the opening of a forwarded
/// stream) may take: a little longer than the owner waits for its actor,
/// so that the owner's own, more precise answer comes first.
pub const FORWARD_TIMEOUT: Duration = ASK_TIMEOUT.saturating_add(Duration::from_secs(1));

/// Headers that describe one hop, not the request: the forwarded request
/// gets its own.
const HOP_HEADERS: [&str; 3] = ["grpc-timeout", "grpc-encoding", "grpc-accept-encoding"];

/// A stream of a service's replies, as the generated servers want it.
pub type ReplyStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Where a request is served: here (`None`), or at the member it must be
/// forwarded to.
///
/// A request another member already forwarded is served here or not at
/// all: membership views of two members can differ for a moment, and two
/// members that each think the other owns an actor would otherwise pass
/// the request back and forth. The client retries once the views agree.
pub fn route(place: Place, metadata: &MetadataMap) -> Result<Option<PeerAddr>> {
    match place {
        Place::Here => Ok(None),
        Place::There(_) if metadata.contains_key(FORWARDED_BY_HEADER) => {
            Err(NodeError::Unavailable("actor moved while forwarding; retry".into()))
        }
        Place::There(peer) => Ok(Some(peer)),
    }
}

/// The client span of one forwarded request (for a stream, its opening).
fn forward_span(peer: &PeerAddr, stream: bool) -> tracing::Span {
    tracing::info_span!(
        target: crate::telemetry::TARGET,
        "relais.forward",
        otel.kind = "client",
        relais.peer = %peer.node_id,
        relais.forward.kind = if stream { "stream" } else { "unary" },
    )
}

/// Resolves once `stopping` says the node stops.
pub async fn until_stopped(mut stopping: tokio::sync::watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stopped| *stopped).await;
}

/// Sends requests on to other members, over one lazily connected channel
/// per member (at most [`MAX_PEERS`]).
pub struct Forwarder {
    /// This node's id, sent in [`FORWARDED_BY_HEADER`].
    node_id: AsciiMetadataValue,
    peers: Mutex<Peers>,
    /// Set when the node stops: the streams it proxies end then, so that
    /// the server's graceful shutdown does not wait for their clients.
    stopping: tokio::sync::watch::Sender<bool>,
    /// The cluster's live members, once the node is in a cluster.
    members: OnceLock<watch::Receiver<Arc<Members>>>,
    metrics: Metrics,
}

#[derive(Default)]
struct Peers {
    /// Channel and last use (a tick of `clock`) by address.
    by_address: HashMap<String, (Channel, u64)>,
    clock: u64,
}

impl Forwarder {
    pub fn new(node_id: &str, metrics: Metrics) -> Result<Self> {
        let node_id =
            node_id.parse().map_err(|_| NodeError::invalid("node_id", "must be ASCII to be sent between members"))?;
        Ok(Self {
            node_id,
            peers: Mutex::new(Peers::default()),
            stopping: tokio::sync::watch::Sender::new(false),
            members: OnceLock::new(),
            metrics,
        })
    }

    /// Follows the cluster's live members: from then on, what is forwarded
    /// to a member ends as soon as it leaves.
    pub fn follow_members(&self, members: watch::Receiver<Arc<Members>>) {
        let _ = self.members.set(members);
    }

    /// Resolves once `peer` is no longer the member it is now: its lease
    /// ended (it crashed, froze or was cut off from etcd, and its actors
    /// are claimed elsewhere) or it came back under a new lease (its actors
    /// started afresh). Whatever was forwarded to it will not be answered
    /// by the actor it was meant for. Never resolves outside a cluster.
    fn departure(&self, peer: &PeerAddr) -> impl Future<Output = ()> + Send + 'static {
        let members = self.members.get().cloned();
        let node_id = peer.node_id.clone();
        async move {
            let Some(mut members) = members else { return std::future::pending().await };
            let lease = members.borrow().nodes.get(node_id.as_ref()).map(|m| m.lease_id);
            let Some(lease) = lease else { return };
            let gone = |m: &Arc<Members>| m.nodes.get(node_id.as_ref()).is_none_or(|m| m.lease_id != lease);
            if members.wait_for(gone).await.is_err() {
                // The membership stopped with the node, which ends its
                // streams itself.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Ends every stream this node proxies (the node stops).
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Resolves once the node stops.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        until_stopped(self.stopping.subscribe())
    }

    /// Whether the node stops, to follow (see [`until_stopped`]).
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Sends a unary request on to `peer` through `call` (a method of a
    /// generated client), within [`FORWARD_TIMEOUT`]. The owner's reply or
    /// status comes back unchanged; a member that cannot be reached, or
    /// does not answer in time, is `UNAVAILABLE` naming it.
    pub async fn unary<Req, Res, F, Fut>(
        &self,
        peer: &PeerAddr,
        request: Request<Req>,
        call: F,
    ) -> Result<Response<Res>, Status>
    where
        F: FnOnce(Channel, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Res>, Status>>,
    {
        let channel = self.channel(peer)?;
        let span = forward_span(peer, false);
        let mut request = span.in_scope(|| self.relay(request))?;
        request.set_timeout(FORWARD_TIMEOUT);
        let answer = tokio::time::timeout(FORWARD_TIMEOUT, call(channel, request)).instrument(span);
        let response = tokio::select! {
            answer = answer => answer
                .map_err(|_| Status::from(late(peer)))
                .and_then(|answer| answer.map_err(|status| unreached(peer, status))),
            () = self.departure(peer) => Err(left(peer).into()),
        };
        self.metrics.forwarded(false, response.is_ok());
        Ok(fresh(response?))
    }

    /// Opens a stream at `peer` through `call` and proxies it: the owner's
    /// items and final status pass through as they come. `permit` (one of
    /// this node's open streams) is held until the proxied stream ends.
    /// When `peer` leaves the membership, the stream ends with
    /// `UNAVAILABLE`, so that its client opens it again (and finds where
    /// the actor went); when this node stops, it just ends.
    pub async fn stream<Req, Res, F, Fut>(
        &self,
        peer: &PeerAddr,
        request: Request<Req>,
        permit: OwnedSemaphorePermit,
        call: F,
    ) -> Result<Response<ReplyStream<Res>>, Status>
    where
        F: FnOnce(Channel, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Streaming<Res>>, Status>>,
        Res: Send + 'static,
    {
        let channel = self.channel(peer)?;
        let span = forward_span(peer, true);
        let request = span.in_scope(|| self.relay(request))?;
        let mut departure = Box::pin(self.departure(peer));
        // The deadline covers the opening only: the stream itself lasts
        // as long as the caller keeps it.
        let opening = tokio::time::timeout(FORWARD_TIMEOUT, call(channel, request)).instrument(span);
        let response = tokio::select! {
            opened = opening => opened
                .map_err(|_| Status::from(late(peer)))
                .and_then(|opened| opened.map_err(|status| unreached(peer, status))),
            () = &mut departure => Err(left(peer).into()),
        };
        self.metrics.forwarded(true, response.is_ok());
        let (metadata, items, _) = response?.into_parts();
        let peer = peer.clone();
        let stopped = Box::pin(self.stopped());
        let proxied = futures::stream::unfold(Some((items, departure, stopped)), move |open| {
            let peer = peer.clone();
            async move {
                let (mut items, mut departure, mut stopped) = open?;
                tokio::select! {
                    item = items.next() => {
                        let item = item?.map_err(|status| unreached(&peer, status));
                        Some((item, Some((items, departure, stopped))))
                    }
                    () = &mut departure => Some((Err(left(&peer).into()), None)),
                    () = &mut stopped => None,
                }
            }
        });
        let proxied = proxied.map(move |item| {
            let _held = &permit;
            item
        });
        Ok(Response::from_parts(metadata, Box::pin(proxied) as ReplyStream<Res>, Extensions::default()))
    }

    /// The request as the owner gets it: the caller's metadata, minus what
    /// belongs to the hop, plus the identity this node's interceptor
    /// decided, this node's name and the trace context of this node's span.
    ///
    /// The identity travels in the same headers a client sends, so the
    /// owner's interceptor reads it as usual. When mTLS arrives, the owner
    /// authenticates the forwarding member as a node by its certificate,
    /// and only a node may relay a caller's identity this way (and send
    /// [`FORWARDED_BY_HEADER`]); a client's certificate gets only its own.
    fn relay<T>(&self, request: Request<T>) -> Result<Request<T>, Status> {
        let identity = identity_of(&request)?;
        let (mut metadata, _, message) = request.into_parts();
        for name in HOP_HEADERS {
            metadata.remove(name);
        }
        let tenant = identity
            .tenant
            .parse()
            .map_err(|_| NodeError::Internal(format!("tenant {:?} is not ASCII", identity.tenant)))?;
        metadata.insert(TENANT_HEADER, tenant);
        metadata.insert(ROLE_HEADER, AsciiMetadataValue::from_static(identity.role.as_str()));
        metadata.insert(FORWARDED_BY_HEADER, self.node_id.clone());
        // The owner's spans continue this node's trace, not the caller's.
        crate::telemetry::inject_metadata(&mut metadata);
        Ok(Request::from_parts(metadata, Extensions::default(), message))
    }

    /// Asks `peer` whether it holds the call: `None` when it does not.
    pub async fn find_call(
        &self,
        peer: &PeerAddr,
        tenant: &str,
        call_id: &str,
    ) -> Result<Option<peer_pb::FindCallResponse>> {
        let request = peer_pb::FindCallRequest { tenant: tenant.to_string(), call_id: call_id.to_string() };
        let found = self.ask_member(peer, request, |mut c, r| async move { c.find_call(r).await }).await?;
        Ok(found.found.then_some(found))
    }

    /// The live calls `peer` holds in a queue; `None` when it does not
    /// host the queue.
    pub async fn queue_load(&self, peer: &PeerAddr, tenant: &str, queue_id: &str) -> Result<Option<usize>> {
        let request = peer_pb::QueueLoadRequest { tenant: tenant.to_string(), queue_id: queue_id.to_string() };
        let load = self.ask_member(peer, request, |mut c, r| async move { c.queue_load(r).await }).await?;
        Ok(load.hosted.then_some(load.live_calls as usize))
    }

    /// One request of this member's own to `peer`'s `Peer` service, within
    /// [`FORWARD_TIMEOUT`]; any failure is `UNAVAILABLE` naming the member.
    async fn ask_member<Req, Res, F, Fut>(&self, peer: &PeerAddr, request: Req, call: F) -> Result<Res>
    where
        F: FnOnce(peer_pb::peer_client::PeerClient<Channel>, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Res>, Status>>,
    {
        let client = peer_pb::peer_client::PeerClient::new(self.channel(peer)?);
        let answer =
            tokio::time::timeout(FORWARD_TIMEOUT, call(client, crate::identity::as_node(Request::new(request))))
                .await
                .map_err(|_| NodeError::Unavailable(format!("member {} did not answer in time", peer.node_id)))?
                .map_err(|e| NodeError::Unavailable(format!("member {}: {}", peer.node_id, e.message())))?;
        Ok(answer.into_inner())
    }

    /// The channel to `peer`, created (not connected) on first use. When
    /// [`MAX_PEERS`] are kept, the one unused the longest is dropped;
    /// requests still on it finish.
    fn channel(&self, peer: &PeerAddr) -> Result<Channel> {
        let mut peers = self.peers.lock().map_err(|_| NodeError::Internal("forwarder lock poisoned".into()))?;
        peers.clock += 1;
        let now = peers.clock;
        if let Some((channel, used)) = peers.by_address.get_mut(&peer.address) {
            *used = now;
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{}", peer.address))
            .map_err(|_| NodeError::Internal(format!("member {} has a bad address {:?}", peer.node_id, peer.address)))?
            .connect_timeout(CONNECT_TIMEOUT)
            // Without TCP_NODELAY, Nagle's algorithm and delayed
            // acknowledgements add tens of milliseconds to each hop.
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .connect_lazy();
        if peers.by_address.len() >= MAX_PEERS
            && let Some(oldest) = peers.by_address.iter().min_by_key(|(_, (_, used))| *used).map(|(a, _)| a.clone())
        {
            peers.by_address.remove(&oldest);
        }
        peers.by_address.insert(peer.address.clone(), (channel.clone(), now));
        Ok(channel)
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.peers.lock().map(|p| p.by_address.len()).unwrap_or(0)
    }
}

/// The owner's response, without what the client library attached to it
/// on the way in.
fn fresh<T>(response: Response<T>) -> Response<T> {
    let (metadata, message, _) = response.into_parts();
    Response::from_parts(metadata, message, Extensions::default())
}

/// A status the owner sent passes through unchanged. A status the client
/// library made up (it carries the transport error as its source) means
/// the member could not be reached, or the connection broke.
fn unreached(peer: &PeerAddr, status: Status) -> Status {
    if std::error::Error::source(&status).is_none() {
        return status;
    }
    tracing::warn!(node_id = %peer.node_id, address = %peer.address, error = %status.message(), "member unreachable");
    NodeError::Unavailable(format!("member {} at {} cannot be reached; retry", peer.node_id, peer.address)).into()
}

fn left(peer: &PeerAddr) -> NodeError {
    NodeError::Unavailable(format!("member {} left the cluster; retry", peer.node_id))
}

fn late(peer: &PeerAddr) -> NodeError {
    NodeError::Unavailable(format!("member {} did not answer in time; retry", peer.node_id))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::identity::{Identity, Role};

    fn peer(id: &str, address: &str) -> PeerAddr {
        PeerAddr { node_id: id.into(), address: address.into() }
    }

    #[test]
    fn a_forwarded_request_is_never_forwarded_again() {
        let fresh = MetadataMap::new();
        let mut forwarded = MetadataMap::new();
        forwarded.insert(FORWARDED_BY_HEADER, AsciiMetadataValue::from_static("node-a"));
        let b = peer("node-b", "127.0.0.1:1");

        assert_eq!(route(Place::Here, &fresh).expect("here"), None);
        assert_eq!(route(Place::Here, &forwarded).expect("here"), None, "served here when the actor is here");
        assert_eq!(route(Place::There(b.clone()), &fresh).expect("forwarded"), Some(b.clone()));
        let refused = route(Place::There(b), &forwarded).expect_err("not forwarded twice");
        let status = Status::from(refused);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.message().contains("moved while forwarding"), "{status:?}");
    }

    #[test]
    fn the_relayed_request_carries_the_callers_identity_and_this_node() {
        let forwarder = Forwarder::new("node-a", Metrics::default()).expect("forwarder");
        let mut request = Request::new(());
        request.metadata_mut().insert("traceparent", AsciiMetadataValue::from_static("00-abc-def-01"));
        request.metadata_mut().insert("grpc-timeout", AsciiMetadataValue::from_static("60S"));
        // No role header: the interceptor filled in the service's role.
        request.extensions_mut().insert(Identity { tenant: "sos".into(), role: Role::Informant });

        let relayed = forwarder.relay(request).expect("relayed");
        let header = |name: &str| relayed.metadata().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        assert_eq!(header(TENANT_HEADER).as_deref(), Some("sos"));
        assert_eq!(header(ROLE_HEADER).as_deref(), Some("informant"));
        assert_eq!(header(FORWARDED_BY_HEADER).as_deref(), Some("node-a"));
        assert_eq!(header("traceparent").as_deref(), Some("00-abc-def-01"));
        assert_eq!(header("grpc-timeout"), None, "each hop has its own deadline");
    }

    #[tokio::test]
    async fn channels_are_kept_per_member_and_bounded() {
        let forwarder = Forwarder::new("node-a", Metrics::default()).expect("forwarder");
        for i in 0..MAX_PEERS + 10 {
            forwarder.channel(&peer(&format!("node-{i}"), &format!("127.0.0.1:{}", 20_000 + i))).expect("channel");
        }
        assert_eq!(forwarder.kept(), MAX_PEERS);
        forwarder.channel(&peer("again", "127.0.0.1:20070")).expect("kept channel");
        assert_eq!(forwarder.kept(), MAX_PEERS);
    }

    fn as_gateway<T>(message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.extensions_mut().insert(Identity { tenant: "cai".into(), role: Role::Gateway });
        request
    }

    /// The owner: a node of its own, in this process, with the queue
    /// `logement`; its address and a channel to it.
    async fn owner_with_queue() -> (std::net::SocketAddr, Channel) {
        use relais_proto::v1 as pb;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = crate::NodeConfig { listen: addr, node_id: "owner".into(), ..Default::default() };
        tokio::spawn(crate::server::serve(config, listener, std::future::pending()));
        let channel = Endpoint::from_shared(format!("http://{addr}")).expect("url").connect().await.expect("connect");
        let queue = pb::QueueConfig {
            id: "logement".into(),
            required_skills: vec![pb::Skill { name: "logement".into(), proficiency: 1 }],
            ..Default::default()
        };
        pb::admin_client::AdminClient::new(channel.clone()).create_queue(queue).await.expect("queue");
        (addr, channel)
    }

    #[tokio::test]
    async fn the_owners_replies_statuses_and_streams_pass_through() {
        use relais_proto::v1 as pb;
        use relais_proto::v1::gateway_client::GatewayClient;

        let (addr, _) = owner_with_queue().await;
        let forwarder = Forwarder::new("node-a", Metrics::default()).expect("forwarder");
        let owner = peer("owner", &addr.to_string());

        let unknown = forwarder
            .unary(&owner, as_gateway(pb::GetCallRequest { call_id: "c0".into() }), |c, r| async move {
                GatewayClient::new(c).get_call(r).await
            })
            .await
            .expect_err("unknown call");
        assert_eq!((unknown.code(), unknown.message()), (tonic::Code::NotFound, "call \"c0\" not found"));

        let offer = pb::OfferCallRequest { call_id: "c1".into(), queue_id: "logement".into(), ..Default::default() };
        let offered = forwarder
            .unary(&owner, as_gateway(offer), |c, r| async move { GatewayClient::new(c).offer_call(r).await })
            .await
            .expect("offered")
            .into_inner();
        assert!(offered.created);

        let streams = Arc::new(tokio::sync::Semaphore::new(1));
        let permit = streams.clone().try_acquire_owned().expect("permit");
        let watch = pb::WatchCallRequest { call_id: "c1".into(), after_sequence: 0 };
        let mut events = forwarder
            .stream(&owner, as_gateway(watch), permit, |c, r| async move { GatewayClient::new(c).watch_call(r).await })
            .await
            .expect("watching")
            .into_inner();
        let first = events.next().await.expect("an event").expect("not an error");
        assert!(matches!(first.kind, Some(pb::call_event::Kind::Queued(_))), "{first:?}");
        assert_eq!(streams.available_permits(), 0, "the proxied stream holds its permit");
        drop(events);
        assert_eq!(streams.available_permits(), 1);
    }

    /// A membership of one peer, `id` at `address` under `lease_id`.
    fn members_of(id: &str, address: &str, lease_id: i64) -> Arc<Members> {
        let info = crate::cluster::membership::MemberInfo {
            node_id: id.into(),
            address: address.into(),
            started_unix_ms: 0,
            lease_id,
            draining: false,
        };
        Arc::new(Members { revision: lease_id, nodes: [(id.to_string(), info)].into() })
    }

    #[tokio::test]
    async fn a_request_to_a_frozen_member_ends_when_it_leaves() {
        // A member frozen by SIGSTOP: its kernel takes connections, it never answers.
        let frozen = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = frozen.local_addr().expect("addr").to_string();
        let forwarder = Forwarder::new("node-a", Metrics::default()).expect("forwarder");
        let (members, view) = watch::channel(members_of("node-frozen", &address, 7));
        forwarder.follow_members(view);
        let owner = peer("node-frozen", &address);

        let asked = tokio::time::Instant::now();
        let request = as_gateway(relais_proto::v1::GetCallRequest { call_id: "c1".into() });
        let forwarded = forwarder.unary(&owner, request, |channel, r| async move {
            relais_proto::v1::gateway_client::GatewayClient::new(channel).get_call(r).await
        });
        let leaves = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            members.send_replace(Arc::new(Members { revision: 8, ..Members::default() }));
        };
        let (status, ()) = tokio::join!(forwarded, leaves);
        let status = status.expect_err("never answered");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(status.message().contains("node-frozen left the cluster"), "{status:?}");
        assert!(asked.elapsed() < FORWARD_TIMEOUT, "ended by the departure, not the deadline");
    }

    #[tokio::test]
    async fn a_proxied_stream_ends_unavailable_when_its_owner_leaves_or_comes_back() {
        use relais_proto::v1 as pb;

        let (addr, channel) = owner_with_queue().await;
        let offer = pb::OfferCallRequest { call_id: "c1".into(), queue_id: "logement".into(), ..Default::default() };
        pb::gateway_client::GatewayClient::new(channel).offer_call(offer).await.expect("offered");

        let forwarder = Forwarder::new("node-a", Metrics::default()).expect("forwarder");
        let (members, view) = watch::channel(members_of("owner", &addr.to_string(), 7));
        forwarder.follow_members(view);
        let owner = peer("owner", &addr.to_string());
        let streams = Arc::new(tokio::sync::Semaphore::new(1));
        let watch = |after_sequence| {
            let permit = streams.clone().try_acquire_owned().expect("permit");
            let request = as_gateway(pb::WatchCallRequest { call_id: "c1".into(), after_sequence });
            forwarder.stream(&owner, request, permit, |c, r| async move {
                pb::gateway_client::GatewayClient::new(c).watch_call(r).await
            })
        };

        // The next item within 5 s (a stream left open would hang the test).
        async fn end<S: Stream + Unpin>(events: &mut S) -> Option<S::Item> {
            tokio::time::timeout(Duration::from_secs(5), events.next()).await.expect("the stream ended in time")
        }

        // The member leaves: the stream ends with UNAVAILABLE, not silence.
        let mut events = watch(0).await.expect("watching").into_inner();
        events.next().await.expect("queued").expect("not an error");
        members.send_replace(Arc::new(Members { revision: 8, ..Members::default() }));
        let status = end(&mut events).await.expect("an end").expect_err("unavailable");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(status.message().contains("owner left the cluster"), "{status:?}");
        assert!(events.next().await.is_none(), "nothing after the status");
        drop(events);

        // The member is back under a new lease: what was forwarded to its
        // former life ends the same way; what is forwarded now goes on.
        members.send_replace(members_of("owner", &addr.to_string(), 9));
        let mut events = watch(0).await.expect("watching").into_inner();
        events.next().await.expect("queued").expect("not an error");
        members.send_replace(members_of("owner", &addr.to_string(), 10));
        let status = end(&mut events).await.expect("an end").expect_err("unavailable");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        drop(events);
        assert_eq!(streams.available_permits(), 1, "the permit is given back");

        // A renewal or another member's change leaves the stream alone.
        let mut events = watch(0).await.expect("watching").into_inner();
        events.next().await.expect("queued").expect("not an error");
        let mut same = (*members_of("owner", &addr.to_string(), 10)).clone();
        same.revision = 11;
        members.send_replace(Arc::new(same));
        let quiet = tokio::time::timeout(Duration::from_millis(200), events.next()).await;
        assert!(quiet.is_err(), "the stream stays open: {quiet:?}");
    }

    #[tokio::test]
    async fn an_unreachable_member_is_unavailable_and_named() {
        let forwarder = Forwarder::new("node-a", Metrics::default()).expect("forwarder");
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let gone = peer("node-gone", &format!("127.0.0.1:{port}"));
        let request = as_gateway(relais_proto::v1::GetCallRequest { call_id: "c1".into() });
        let status = forwarder
            .unary(&gone, request, |channel, r| async move {
                relais_proto::v1::gateway_client::GatewayClient::new(channel).get_call(r).await
            })
            .await
            .expect_err("nobody answers");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(status.message().contains("node-gone"), "{status:?}");
    }
}
