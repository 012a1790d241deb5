//! The `Peer` service: what other members send this node's actors.
//!
//! Only members call it (role `node`; with mTLS, a member's certificate).
//! A member acts for every tenant, so the tenant an envelope names is taken
//! from the envelope: the caller is trusted as a node, not as a tenant.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use relais_proto::peer::v1 as wire_pb;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use relais_proto::peer::v1::envelope::Body;
use relais_routing::queue::QueueError;

use crate::actors::informant::InformantMsg;
use crate::actors::queue::QueueMsg;
use crate::directory::{CallLocation, Directory};
use crate::forward::until_stopped;
use crate::peer::wire::{self, Incoming};

/// Connect answers buffered per link before the link is closed.
const REPLY_BUFFER: usize = 1024;
/// How long a message for a queue this node is starting waits for it (it
/// reads its calls from etcd first); the link's later messages wait too,
/// which keeps their order.
const STARTING_WAIT: Duration = Duration::from_secs(3);

pub struct PeerService {
    directory: Arc<Directory>,
    /// Set when the node stops: the links other members opened to it end
    /// then, so that the server's graceful shutdown completes.
    stopping: watch::Receiver<bool>,
}

impl PeerService {
    pub fn new(directory: Arc<Directory>, stopping: watch::Receiver<bool>) -> Self {
        Self { directory, stopping }
    }
}

type Replies = Pin<Box<dyn Stream<Item = Result<wire_pb::LinkReply, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl wire_pb::peer_server::Peer for PeerService {
    type LinkStream = Replies;

    async fn link(&self, request: Request<Streaming<wire_pb::Envelope>>) -> Result<Response<Replies>, Status> {
        let mut incoming = request.into_inner();
        let (replies, out) = mpsc::channel(REPLY_BUFFER);
        let directory = self.directory.clone();
        let stopped = until_stopped(self.stopping.clone());
        tokio::spawn(async move {
            tokio::pin!(stopped);
            loop {
                let envelope = tokio::select! {
                    envelope = incoming.next() => envelope,
                    () = &mut stopped => break,
                };
                let Some(Ok(envelope)) = envelope else { break };
                // A message in a trace (a call's routing) is delivered in a
                // span of that trace; the others in none.
                let trace = crate::telemetry::context_from_entries(&envelope.trace_context);
                let delivered = if trace.is_some() {
                    let span = trace.adopt(tracing::info_span!(
                        target: crate::telemetry::TARGET,
                        "relais.peer.deliver",
                        otel.kind = "consumer",
                        relais.peer = %envelope.from_node,
                    ));
                    deliver(&directory, envelope, &replies).instrument(span).await
                } else {
                    deliver(&directory, envelope, &replies).await
                };
                if !delivered {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out).map(Ok))))
    }

    async fn queue_load(
        &self,
        request: Request<wire_pb::QueueLoadRequest>,
    ) -> Result<Response<wire_pb::QueueLoadResponse>, Status> {
        let r = request.into_inner();
        let (tenant, queue_id): (Arc<str>, Arc<str>) = (r.tenant.into(), r.queue_id.into());
        let Some(queue) = self.directory.queue(&tenant, &queue_id) else {
            return Ok(Response::new(wire_pb::QueueLoadResponse::default()));
        };
        let live = crate::node::ask(&queue, |reply| crate::actors::queue::QueueMsg::LiveCalls { reply }).await?;
        Ok(Response::new(wire_pb::QueueLoadResponse {
            hosted: true,
            live_calls: u32::try_from(live).unwrap_or(u32::MAX),
        }))
    }

    async fn find_call(
        &self,
        request: Request<wire_pb::FindCallRequest>,
    ) -> Result<Response<wire_pb::FindCallResponse>, Status> {
        let r = request.into_inner();
        let (tenant, call_id): (Arc<str>, Arc<str>) = (r.tenant.into(), r.call_id.into());
        let response = match self.directory.call(&tenant, &call_id) {
            Some(CallLocation::Live(queue_id)) => {
                wire_pb::FindCallResponse { found: true, queue_id: queue_id.to_string(), ended: false }
            }
            Some(CallLocation::Ended(ended)) => {
                wire_pb::FindCallResponse { found: true, queue_id: ended.snapshot.queue_id.to_string(), ended: true }
            }
            None => wire_pb::FindCallResponse::default(),
        };
        Ok(Response::new(response))
    }
}

/// The answer to the request (connect, complete or adopt) numbered `seq`.
fn ask_answer(seq: u64, result: Result<(), QueueError>) -> wire_pb::LinkReply {
    wire_pb::LinkReply { seq, result: Some(wire_pb::link_reply::Result::Connected(wire::connect_result_out(&result))) }
}

/// Hands one envelope to its local actor, if this node hosts it at the
/// envelope's epoch; anything else is dropped (the sender's view was
/// stale: its timers recover), except a request, which is always answered,
/// with a refusal when it cannot be delivered. False when the reply stream
/// is gone.
async fn deliver(
    directory: &Arc<Directory>,
    envelope: wire_pb::Envelope,
    replies: &mpsc::Sender<wire_pb::LinkReply>,
) -> bool {
    let seq = envelope.seq;
    // Connects, completes and adoptions are answered; the rest are not.
    let refusal = match &envelope.body {
        Some(Body::Connect(c)) => Some(ask_answer(seq, Err(QueueError::UnknownCall(c.call_id.as_str().into())))),
        Some(Body::Complete(c)) => Some(ask_answer(seq, Err(QueueError::UnknownCall(c.call_id.as_str().into())))),
        Some(Body::Adopt(a)) => {
            let call_id = a.call.as_ref().and_then(|c| c.info.as_ref()).map_or("", |i| i.call_id.as_str());
            Some(ask_answer(seq, Err(QueueError::UnknownCall(call_id.into()))))
        }
        _ => None,
    };
    let drop_it = |why: &str| {
        tracing::debug!(from = %envelope.from_node, tenant = %envelope.tenant, to = %envelope.to_id, why, "peer message dropped");
        refusal.clone().is_none_or(|r| replies.try_send(r).is_ok())
    };
    if let Some(peers) = directory.peers() {
        if peers.stale_sender(&envelope) {
            // Its actor was claimed again since: it may still believe it
            // owns it (paused, cut off), but it speaks for nobody.
            return drop_it("from an actor claimed again since");
        }
        peers.learn_sender(&envelope);
    }
    let Some(body) = envelope.body.clone() else { return true };
    let (tenant, to_id): (Arc<str>, Arc<str>) = (envelope.tenant.as_str().into(), envelope.to_id.as_str().into());
    let epoch = envelope.to_epoch;
    let incoming = match wire::incoming(body) {
        Ok(incoming) => incoming,
        Err(e) => {
            tracing::warn!(error = %e, "malformed peer message");
            return drop_it("malformed");
        }
    };
    match incoming {
        Incoming::Queue(msg) => {
            let Some(queue) = directory.queue_at_soon(&tenant, &to_id, epoch, STARTING_WAIT).await else {
                return drop_it("for a queue not hosted at that epoch");
            };
            if queue.cast(msg).is_err() {
                return drop_it("for a queue that stopped");
            }
            if refusal.is_some() {
                // An adoption, now in the queue's mailbox.
                return replies.try_send(ask_answer(seq, Ok(()))).is_ok();
            }
        }
        Incoming::Informant(msg) => {
            let Some(informant) = directory.informant_at(&tenant, &to_id, epoch) else {
                if let InformantMsg::Propose(proposal, _) = &msg {
                    // Nobody here will answer it (the informant logged out
                    // or moved): say no for it, or its call would stay held.
                    let no = QueueMsg::Answer {
                        informant_id: to_id.clone(),
                        call_id: proposal.call.call_id.clone(),
                        offer_id: proposal.offer_id.clone(),
                        accepted: false,
                    };
                    if let Some(queue) = directory.queue_addr(&tenant, &proposal.queue_id) {
                        queue.cast(no);
                    }
                }
                return drop_it("for an informant not hosted at that epoch");
            };
            let _ = informant.cast(msg);
        }
        Incoming::Ask(ask) => {
            let Some(queue) = directory.queue_at_soon(&tenant, &to_id, epoch, STARTING_WAIT).await else {
                return drop_it("for a queue not hosted at that epoch");
            };
            // Cast now, so that the request keeps its place among the
            // link's messages; only the answer is awaited apart. (An
            // answer later than the sender's wait is a known gap: the
            // queue may connect a call its informant gave up.)
            let (port, answered) = ractor::concurrency::oneshot();
            let call_id = ask.call_id().clone();
            if queue.cast(ask.into_queue_msg(port.into())).is_err() {
                return drop_it("for a queue that stopped");
            }
            let replies = replies.clone();
            tokio::spawn(async move {
                let result = match tokio::time::timeout(crate::node::ASK_TIMEOUT, answered).await {
                    Ok(Ok(result)) => result,
                    _ => Err(QueueError::UnknownCall(call_id)),
                };
                let _ = replies.send(ask_answer(seq, result)).await;
            });
        }
    }
    true
}
