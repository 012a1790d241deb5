//! The Gateway service: telephony gateways offer calls, follow them and
//! end them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use ractor::ActorRef;
use relais_proto::v1 as pb;
use relais_proto::v1::gateway_client::GatewayClient;
use relais_routing::call::CallInfo;
use relais_routing::queue::{CallSnapshot, QueueError};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::actors::queue::{QueueMsg, WATCHER_BUFFER};
use crate::directory::{CallLocation, EndedCall};
use crate::error::{NodeError, Result};
use crate::forward;
use crate::identity::identity_of;
use crate::node::{Node, PeerAddr, ask};
use crate::services::{convert, grpc};
use crate::telemetry::Trace;
use crate::validate;

/// How many times a request follows a call that is moving between queues.
const MAX_RESOLVE: u32 = 5;

pub struct GatewayService {
    node: Arc<Node>,
}

impl GatewayService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

/// Where a request about a call ended up.
enum Reached<T> {
    Live(T),
    Ended(Arc<EndedCall>),
}

impl<T> Reached<T> {
    /// The live result, for requests that make no sense on an ended call.
    fn live(self, call_id: &str) -> Result<T> {
        match self {
            Self::Live(value) => Ok(value),
            Self::Ended(_) => Err(NodeError::precondition(format!("call {call_id:?} has ended"))),
        }
    }
}

impl GatewayService {
    /// Runs `op` on the queue actor that holds the call, following the call
    /// if it moves meanwhile. `op` answers `None` when the queue no longer
    /// holds the call.
    async fn on_call<T, F, Fut>(&self, tenant: &Arc<str>, call_id: &Arc<str>, mut op: F) -> Result<Reached<T>>
    where
        F: FnMut(ActorRef<QueueMsg>) -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        for attempt in 0..MAX_RESOLVE {
            match self.node.directory.call(tenant, call_id) {
                None => return Err(NodeError::not_found("call", call_id.as_ref())),
                Some(CallLocation::Ended(ended)) => return Ok(Reached::Ended(ended)),
                Some(CallLocation::Live(queue_id)) => {
                    if let Some(actor) = self.node.directory.queue(tenant, &queue_id)
                        && let Some(value) = op(actor).await?
                    {
                        return Ok(Reached::Live(value));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt + 1))).await;
        }
        Err(NodeError::Unavailable(format!("call {call_id:?} is moving between queues; retry")))
    }

    /// The answer to an offer of a call this node already holds: the call
    /// as it stands, not a second one.
    async fn existing(&self, tenant: &Arc<str>, call_id: &Arc<str>) -> Result<pb::OfferCallResponse> {
        let call = self.status(tenant, call_id).await?;
        Ok(pb::OfferCallResponse { call: Some(convert::call_status(&call)), created: false })
    }

    async fn status(&self, tenant: &Arc<str>, call_id: &Arc<str>) -> Result<CallSnapshot> {
        let reached = self
            .on_call(tenant, call_id, |actor| {
                let call_id = call_id.clone();
                async move { ask(&actor, |reply| QueueMsg::GetCall { call_id, reply }).await }
            })
            .await?;
        Ok(match reached {
            Reached::Live(s) => s,
            Reached::Ended(e) => e.snapshot.clone(),
        })
    }

    /// The member that serves the call, when it is not this node.
    async fn call_owner<T>(
        &self,
        request: &Request<T>,
        tenant: &Arc<str>,
        call_id: &Arc<str>,
    ) -> Result<Option<PeerAddr>> {
        forward::route(self.node.place_of_call(tenant, call_id).await?, request.metadata())
    }

    /// Offers a new call to a queue this node serves (`call_id` and
    /// `queue_id` are `r`'s, validated).
    async fn offer(
        &self,
        tenant: Arc<str>,
        call_id: Arc<str>,
        queue_id: Arc<str>,
        r: pb::OfferCallRequest,
    ) -> Result<pb::OfferCallResponse> {
        let priority = validate::priority("priority", r.priority)?;
        let language = validate::language("language", &r.language)?;
        if r.topic.chars().count() > validate::MAX_ID || r.topic.chars().any(char::is_control) {
            return Err(NodeError::invalid("topic", format!("at most {} printable characters", validate::MAX_ID)));
        }
        validate::caller_number("caller_number", &r.caller_number)?;
        let attributes = validate::attributes("attributes", &r.attributes)?;
        let Ok(_landing) = self.node.admit_offer() else {
            // Draining: a retry of a call this node holds is still
            // answered; a new call goes to another member.
            return match self.existing(&tenant, &call_id).await {
                Err(NodeError::NotFound { .. }) => Err(crate::node::draining_error()),
                other => other,
            };
        };
        let queue = self.node.queue_actor(&tenant, &queue_id)?;
        let info = CallInfo {
            call_id: call_id.clone(),
            priority,
            vulnerable: r.vulnerable,
            language,
            topic: r.topic.as_str().into(),
            caller_pseudonym: self.node.pseudonymizer.pseudonym(&r.caller_number).into(),
            attributes: Arc::new(attributes),
            // Set by the queue when it takes the call.
            arrived_ms: 0,
        };
        let (tx, rx) = ractor::concurrency::oneshot();
        let mut sent = false;
        let claimed = self.node.directory.claim_call(&tenant, &call_id, &queue_id, || {
            sent = queue.cast(QueueMsg::Offer { info, reply: tx.into(), trace: Trace::current() }).is_ok();
        });
        if claimed.is_err() {
            // The same call_id again: a gateway's retry. Answer with the call.
            return self.existing(&tenant, &call_id).await;
        }
        let answer = if sent {
            tokio::time::timeout(crate::node::ASK_TIMEOUT, rx).await.ok().and_then(|r| r.ok())
        } else {
            None
        };
        match answer {
            Some(Ok(snapshot)) => {
                tracing::info!(call_id = %call_id, queue_id = %queue_id, state = ?snapshot.state, vulnerable = r.vulnerable, "call offered");
                Ok(pb::OfferCallResponse { call: Some(convert::call_status(&snapshot)), created: true })
            }
            Some(Err(QueueError::Duplicate(_))) => self.existing(&tenant, &call_id).await,
            Some(Err(e)) => Err(crate::actors::queue::queue_error(e)),
            None => {
                if !sent {
                    self.node.directory.forget_call(&tenant, &call_id, &queue_id);
                }
                Err(NodeError::Unavailable(
                    "the queue did not acknowledge the call; retry with the same call_id".into(),
                ))
            }
        }
    }

    async fn call_op<F>(&self, tenant: &Arc<str>, call_id: &Arc<str>, build: F) -> Result<Reached<CallSnapshot>>
    where
        F: Fn(Arc<str>, ractor::RpcReplyPort<std::result::Result<CallSnapshot, QueueError>>) -> QueueMsg + Clone,
    {
        self.on_call(tenant, call_id, |actor| {
            let (call_id, build) = (call_id.clone(), build.clone());
            async move {
                match ask(&actor, |reply| build(call_id, reply)).await? {
                    Ok(snapshot) => Ok(Some(snapshot)),
                    Err(QueueError::UnknownCall(_)) => Ok(None),
                    Err(e) => Err(crate::actors::queue::queue_error(e)),
                }
            }
        })
        .await
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::CallEvent, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::gateway_server::Gateway for GatewayService {
    async fn offer_call(
        &self,
        request: Request<pb::OfferCallRequest>,
    ) -> Result<Response<pb::OfferCallResponse>, Status> {
        let tenant = identity_of(&request)?.tenant;
        let call_id = validate::call_id("call_id", &request.get_ref().call_id)?;
        let queue_id = validate::queue_id("queue_id", &request.get_ref().queue_id)?;
        if let Some(owner) = forward::route(self.node.place_of_queue(&tenant, &queue_id)?, request.metadata())? {
            return self
                .node
                .forwarder
                .unary(&owner, request, |c, r| async move { GatewayClient::new(c).offer_call(r).await })
                .await;
        }
        grpc(self.offer(tenant, call_id, queue_id, request.into_inner()).await)
    }

    type WatchCallStream = EventStream;

    async fn watch_call(&self, request: Request<pb::WatchCallRequest>) -> Result<Response<EventStream>, Status> {
        let tenant = identity_of(&request)?.tenant;
        let call_id = validate::call_id("call_id", &request.get_ref().call_id)?;
        let permit = self.node.stream_permit()?;
        if let Some(owner) = self.call_owner(&request, &tenant, &call_id).await? {
            return self
                .node
                .forwarder
                .stream(&owner, request, permit, |c, r| async move { GatewayClient::new(c).watch_call(r).await })
                .await;
        }
        let r = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(WATCHER_BUFFER);
        let reached = self
            .on_call(&tenant, &call_id, |actor| {
                let (call_id, sink) = (call_id.clone(), tx.clone());
                async move {
                    match ask(&actor, |reply| QueueMsg::Watch { call_id, after: r.after_sequence, sink, reply }).await?
                    {
                        Ok(()) => Ok(Some(())),
                        Err(NodeError::NotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                }
            })
            .await?;
        if let Reached::Ended(ended) = reached {
            for event in ended.events.after(r.after_sequence) {
                // The buffer holds a whole log, so this cannot fail.
                let _ = tx.try_send(event.clone());
            }
        }
        drop(tx);
        let id = call_id.to_string();
        let stream = ReceiverStream::new(rx).map(move |event| {
            let _held = &permit;
            Ok(convert::call_event(&id, &event))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn hang_up(&self, request: Request<pb::HangUpRequest>) -> Result<Response<pb::HangUpResponse>, Status> {
        let tenant = identity_of(&request)?.tenant;
        let call_id = validate::call_id("call_id", &request.get_ref().call_id)?;
        if let Some(owner) = self.call_owner(&request, &tenant, &call_id).await? {
            return self
                .node
                .forwarder
                .unary(&owner, request, |c, r| async move { GatewayClient::new(c).hang_up(r).await })
                .await;
        }
        let reached = self.call_op(&tenant, &call_id, |call_id, reply| QueueMsg::HangUp { call_id, reply }).await?;
        let snapshot = match reached {
            Reached::Live(s) => {
                tracing::info!(call_id = %call_id, state = ?s.state, "caller hung up");
                s
            }
            // A retried hang-up: the call already ended.
            Reached::Ended(e) => e.snapshot.clone(),
        };
        Ok(Response::new(pb::HangUpResponse { call: Some(convert::call_status(&snapshot)) }))
    }

    async fn mark_vulnerable(
        &self,
        request: Request<pb::MarkVulnerableRequest>,
    ) -> Result<Response<pb::MarkVulnerableResponse>, Status> {
        let tenant = identity_of(&request)?.tenant;
        let call_id = validate::call_id("call_id", &request.get_ref().call_id)?;
        if let Some(owner) = self.call_owner(&request, &tenant, &call_id).await? {
            return self
                .node
                .forwarder
                .unary(&owner, request, |c, r| async move { GatewayClient::new(c).mark_vulnerable(r).await })
                .await;
        }
        let reached =
            self.call_op(&tenant, &call_id, |call_id, reply| QueueMsg::MarkVulnerable { call_id, reply }).await?;
        let s = reached.live(&call_id)?;
        Ok(Response::new(pb::MarkVulnerableResponse { call: Some(convert::call_status(&s)) }))
    }

    async fn transfer_call(
        &self,
        request: Request<pb::TransferCallRequest>,
    ) -> Result<Response<pb::TransferCallResponse>, Status> {
        let tenant = identity_of(&request)?.tenant;
        let call_id = validate::call_id("call_id", &request.get_ref().call_id)?;
        let to_queue_id = validate::queue_id("queue_id", &request.get_ref().queue_id)?;
        if let Some(owner) = self.call_owner(&request, &tenant, &call_id).await? {
            return self
                .node
                .forwarder
                .unary(&owner, request, |c, r| async move { GatewayClient::new(c).transfer_call(r).await })
                .await;
        }
        // The target may live on another member: the call's queue checks it
        // can reach it.
        if self.node.catalog.queue(&tenant, &to_queue_id).is_none() {
            return Err(NodeError::not_found("queue", to_queue_id.as_ref()).into());
        }
        let reached = self
            .on_call(&tenant, &call_id, |actor| {
                let (call_id, to_queue_id) = (call_id.clone(), to_queue_id.clone());
                async move {
                    let probe = call_id.clone();
                    match ask(&actor, |reply| QueueMsg::Transfer { call_id, to_queue_id, reply }).await? {
                        Ok(snapshot) => Ok(Some(snapshot)),
                        Err(NodeError::NotFound { what: "call", id }) if id == probe.as_ref() => Ok(None),
                        Err(e) => Err(e),
                    }
                }
            })
            .await?;
        let s = reached.live(&call_id)?;
        tracing::info!(call_id = %call_id, to_queue_id = %to_queue_id, "call transferred");
        Ok(Response::new(pb::TransferCallResponse { call: Some(convert::call_status(&s)) }))
    }

    async fn get_call(&self, request: Request<pb::GetCallRequest>) -> Result<Response<pb::CallStatus>, Status> {
        let tenant = identity_of(&request)?.tenant;
        let call_id = validate::call_id("call_id", &request.get_ref().call_id)?;
        if let Some(owner) = self.call_owner(&request, &tenant, &call_id).await? {
            return self
                .node
                .forwarder
                .unary(&owner, request, |c, r| async move { GatewayClient::new(c).get_call(r).await })
                .await;
        }
        grpc(self.status(&tenant, &call_id).await.map(|s| convert::call_status(&s)))
    }
}
