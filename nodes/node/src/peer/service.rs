//! The `Peer` service: what other members send this node's actors.
//!
//! Only members call it (role `node`; with mTLS, a member's certificate).
//! A member acts for every tenant, so the tenant an envelope names is taken
//! from the envelope: the caller is trusted as a node, not as a tenant.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use relais_proto::peer::v1 as wire_pb;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::directory::{CallLocation, Directory};
use crate::peer::wire::{self, Incoming};

/// Connect answers buffered per link before the link is closed.
const REPLY_BUFFER: usize = 1024;

pub struct PeerService {
    directory: Arc<Directory>,
}

impl PeerService {
    pub fn new(directory: Arc<Directory>) -> Self {
        Self { directory }
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
        tokio::spawn(async move {
            while let Some(Ok(envelope)) = incoming.next().await {
                if !deliver(&directory, envelope, &replies) {
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

/// Hands one envelope to its local actor, if this node hosts it at the
/// envelope's epoch; anything else is dropped (the sender's view was
/// stale: its timers recover). False when the reply stream is gone.
fn deliver(
    directory: &Arc<Directory>,
    envelope: wire_pb::Envelope,
    replies: &mpsc::Sender<wire_pb::LinkReply>,
) -> bool {
    if let Some(peers) = directory.peers() {
        if peers.stale_sender(&envelope) {
            // Its actor was claimed again since: it may still believe it
            // owns it (paused, cut off), but it speaks for nobody.
            tracing::debug!(from = %envelope.from_node, epoch = envelope.from_epoch, "message from a stale actor dropped");
            return true;
        }
        peers.learn_sender(&envelope);
    }
    let Some(body) = envelope.body else { return true };
    let (tenant, to_id): (Arc<str>, Arc<str>) = (envelope.tenant.into(), envelope.to_id.into());
    let epoch = envelope.to_epoch;
    let incoming = match wire::incoming(body) {
        Ok(incoming) => incoming,
        Err(e) => {
            tracing::warn!(error = %e, "malformed peer message dropped");
            return true;
        }
    };
    match incoming {
        Incoming::Queue(msg) => {
            if let Some(queue) = directory.queue_at(&tenant, &to_id, epoch) {
                let _ = queue.cast(msg);
            } else {
                tracing::debug!(tenant = %tenant, queue_id = %to_id, epoch, "message for a queue not hosted at that epoch dropped");
            }
        }
        Incoming::Informant(msg) => {
            if let Some(informant) = directory.informant_at(&tenant, &to_id, epoch) {
                let _ = informant.cast(msg);
            } else {
                tracing::debug!(tenant = %tenant, informant_id = %to_id, epoch, "message for an informant not hosted at that epoch dropped");
            }
        }
        Incoming::Connect(connect) => {
            let seq = envelope.seq;
            let answer = move |result| wire_pb::LinkReply {
                seq,
                result: Some(wire_pb::link_reply::Result::Connected(wire::connect_result_out(&result))),
            };
            let Some(queue) = directory.queue_at(&tenant, &to_id, epoch) else {
                let gone = Err(relais_routing::queue::QueueError::UnknownCall(connect.call_id.clone()));
                return replies.try_send(answer(gone)).is_ok();
            };
            // Cast now, so that the connect keeps its place among the
            // link's messages; only the answer is awaited apart.
            let (port, answered) = ractor::concurrency::oneshot();
            if queue.cast(connect.into_queue_msg(port.into())).is_err() {
                return true;
            }
            let replies = replies.clone();
            tokio::spawn(async move {
                let result = match tokio::time::timeout(crate::node::ASK_TIMEOUT, answered).await {
                    Ok(Ok(result)) => result,
                    _ => return,
                };
                let _ = replies.send(answer(result)).await;
            });
        }
    }
    true
}
