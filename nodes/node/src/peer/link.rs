//! Links between members: one ordered stream from this node to each peer,
//! carrying every actor message addressed to actors that peer owns.
//!
//! The routing protocol relies on per-sender FIFO between a queue and an
//! informant; one stream per ordered pair of nodes keeps it, since every
//! message from this node to that node goes down the same stream in the
//! order it was sent. A link that breaks loses what was in flight, exactly
//! as a crashed peer would: the protocol's timers (offer expiry, the
//! availability collect) recover from it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use relais_proto::peer::v1 as wire_pb;
use relais_routing::queue::QueueError;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::cluster::Members;
use crate::peer::wire;

/// Messages queued for one peer before senders see the link as full.
pub const LINK_BUFFER: usize = 8192;
/// Requests (connects, completes, adoptions) awaiting their answer on one
/// link.
const MAX_PENDING: usize = 4096;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// How long a link waits for its peer to appear in the member list.
const MEMBER_WAIT: Duration = Duration::from_secs(2);

type Pending = Arc<DashMap<u64, oneshot::Sender<Result<(), QueueError>>>>;

/// The sending half of this node's stream to one peer.
pub struct Link {
    tx: mpsc::Sender<wire_pb::Envelope>,
    pending: Pending,
    seq: AtomicU64,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Link {
    /// Opens (lazily, and again after every failure) the stream to
    /// `node_id`, found at its address in `members`. The link ends when the
    /// peer leaves the member list.
    pub fn open(node_id: Arc<str>, members: watch::Receiver<Arc<Members>>) -> Self {
        let (tx, rx) = mpsc::channel(LINK_BUFFER);
        let pending: Pending = Arc::new(DashMap::new());
        let task = tokio::spawn(run(node_id, members, rx, pending.clone()));
        Self { tx, pending, seq: AtomicU64::new(1), task }
    }

    pub fn is_closed(&self) -> bool {
        self.task.is_finished() || self.tx.is_closed()
    }

    /// Queues `envelope` (numbered here); false if the link is full or
    /// closed.
    pub fn send(&self, envelope: wire_pb::Envelope) -> bool {
        self.tx.try_send(self.numbered(envelope)).is_ok()
    }

    /// Sends a message that expects an answer (a connect, a complete, an adoption) and
    /// waits for it; an error when the link breaks first.
    pub async fn request(&self, envelope: wire_pb::Envelope) -> Result<(), RequestFailed> {
        if self.pending.len() >= MAX_PENDING {
            return Err(RequestFailed::NotSent);
        }
        let envelope = self.numbered(envelope);
        let (answer, answered) = oneshot::channel();
        self.pending.insert(envelope.seq, answer);
        // However this ends, the request is no longer pending: a request
        // still queued when it is given up is not sent at all.
        let _forget = Forget(&self.pending, envelope.seq);
        if self.tx.try_send(envelope).is_err() {
            return Err(RequestFailed::NotSent);
        }
        match tokio::time::timeout(crate::node::ASK_TIMEOUT, answered).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(_))) => Err(RequestFailed::Refused),
            // The link broke or the answer is late: the message may or may
            // not have been acted on.
            Ok(Err(_)) | Err(_) => Err(RequestFailed::Unknown),
        }
    }

    fn numbered(&self, envelope: wire_pb::Envelope) -> wire_pb::Envelope {
        wire_pb::Envelope { seq: self.seq.fetch_add(1, Ordering::Relaxed), ..envelope }
    }
}

/// Removes a request from the pending ones when dropped.
struct Forget<'a>(&'a Pending, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.remove(&self.1);
    }
}

/// A request that got no positive answer.
#[derive(Debug, PartialEq, Eq)]
pub enum RequestFailed {
    /// It never left this member.
    NotSent,
    /// The receiving member refused it: nothing was done.
    Refused,
    /// No answer: it may or may not have been acted on.
    Unknown,
}

async fn run(
    node_id: Arc<str>,
    members: watch::Receiver<Arc<Members>>,
    mut rx: mpsc::Receiver<wire_pb::Envelope>,
    pending: Pending,
) {
    let mut backoff = RETRY_FIRST;
    let mut members = members;
    loop {
        // A claim names a member before this node's member list may: wait
        // a little for the list to catch up before giving the peer up.
        let address = tokio::time::timeout(MEMBER_WAIT, async {
            loop {
                if let Some(m) = members.borrow_and_update().nodes.get(node_id.as_ref()) {
                    return Some(m.address.clone());
                }
                if members.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await
        .ok()
        .flatten();
        let Some(address) = address else {
            tracing::debug!(peer = %node_id, "peer is not a member: its link closes");
            pending.clear();
            return;
        };
        match stream_to(&address, &mut rx, &pending).await {
            Ok(()) => return,
            Err(e) => {
                tracing::debug!(peer = %node_id, error = %e, "peer link broken; reopening");
                // Requests in flight are lost with the stream.
                pending.clear();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Pumps `rx` into one stream until it breaks (`Err`) or every sender is
/// gone (`Ok`).
async fn stream_to(address: &str, rx: &mut mpsc::Receiver<wire_pb::Envelope>, pending: &Pending) -> Result<(), String> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
    let mut client = wire_pb::peer_client::PeerClient::new(channel);
    let (out, out_rx) = mpsc::channel(64);
    let mut replies = client
        .link(crate::identity::as_node(tonic::Request::new(ReceiverStream::new(out_rx))))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    loop {
        tokio::select! {
            envelope = rx.recv() => {
                let Some(envelope) = envelope else { return Ok(()) };
                let given_up = matches!(
                    envelope.body,
                    Some(
                        wire_pb::envelope::Body::Connect(_)
                            | wire_pb::envelope::Body::Complete(_)
                            | wire_pb::envelope::Body::Adopt(_)
                    )
                ) && !pending.contains_key(&envelope.seq);
                if !given_up {
                    out.send(envelope).await.map_err(|_| "peer closed the link".to_string())?;
                }
            }
            reply = replies.message() => {
                let reply = reply.map_err(|e| e.to_string())?.ok_or("peer ended the link")?;
                if let Some(wire_pb::link_reply::Result::Connected(result)) = reply.result
                    && let Some((_, answer)) = pending.remove(&reply.seq)
                {
                    let _ = answer.send(wire::connect_result_in(result));
                }
            }
        }
    }
}
