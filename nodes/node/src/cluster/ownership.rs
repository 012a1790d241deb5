//! Ownership of actors, fenced by epochs.
//!
//! A member claims an actor by creating `<prefix>/owners/<actor key>` (its
//! node id) under its own lease, in a transaction that succeeds only if the
//! key does not exist. The key's create revision is the claim's **epoch**,
//! the fencing token: every write about the actor's state is a transaction
//! that compares the owner key's create revision with the writer's epoch,
//! and its lease with the writer's current lease, so a member
//! that lost the actor — its lease expired while it was paused, or a peer
//! revoked it — can change nothing when it wakes up, whatever it still
//! believes. When the owner's lease ends, its keys go with it and another
//! member may claim the actor under a new, greater epoch.
//!
//! etcd's lock API is not used: revisions as fencing tokens are the remedy
//! etcd documents for the unsafety Jepsen found in its locks.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use tokio::sync::watch;

use crate::error::{NodeError, Result};

/// Deadline of one etcd exchange.
const STEP: Duration = Duration::from_secs(2);
/// How long a fenced write is tried before its writer gives up (and its
/// actor starts again from etcd): about a leader election with pre-vote.
const WRITE_PATIENCE: Duration = Duration::from_secs(3);
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_millis(500);

/// A claim's fencing token: the revision at which the owner key was created
/// (always positive).
pub type Epoch = i64;

/// One member's claims.
#[derive(Clone)]
pub struct Ownership {
    client: Client,
    root: String,
    node_id: String,
    lease_id: watch::Receiver<i64>,
}

/// Why a claim did not succeed.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    Mine(Epoch),
    /// Another member owns the actor, at this epoch.
    Theirs {
        owner: String,
        epoch: Epoch,
    },
}

impl Ownership {
    pub fn new(client: Client, prefix: &str, node_id: &str, lease_id: watch::Receiver<i64>) -> Self {
        Self { client, root: format!("{}/owners/", prefix.trim_end_matches('/')), node_id: node_id.into(), lease_id }
    }

    fn key(&self, actor_key: &str) -> String {
        format!("{}{actor_key}", self.root)
    }

    fn unavailable(e: impl std::fmt::Display) -> NodeError {
        NodeError::Unavailable(format!("etcd: {e}"))
    }

    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse> {
        let mut client = self.client.clone();
        tokio::time::timeout(STEP, client.txn(txn))
            .await
            .map_err(|_| NodeError::Unavailable("etcd did not answer in time; retry".into()))?
            .map_err(Self::unavailable)
    }

    /// Claims `actor_key` for this member, or says who owns it. Claiming an
    /// actor this member already owns returns its current epoch.
    pub async fn claim(&self, actor_key: &str) -> Result<Claim> {
        let key = self.key(actor_key);
        let lease = *self.lease_id.borrow();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), self.node_id.clone(), Some(PutOptions::new().with_lease(lease)))])
            .or_else([TxnOp::get(key, None)]);
        let response = self.txn(txn).await?;
        if response.succeeded() {
            return revision_of(&response).map(Claim::Mine);
        }
        let held = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => {
                get.kvs().first().map(|kv| (kv.value().to_vec(), kv.create_revision(), kv.lease()))
            }
            _ => None,
        });
        match held {
            // Ours only under our current lease: a key left by this node's
            // previous lease (or another process with the same id) is not.
            Some((owner, epoch, held_under)) if owner == self.node_id.as_bytes() && held_under == lease => {
                Ok(Claim::Mine(epoch))
            }
            Some((owner, _, _)) if owner == self.node_id.as_bytes() => Err(NodeError::Aborted(format!(
                "{actor_key} is held under this node's previous lease; retry once it is gone"
            ))),
            Some((owner, epoch, _)) => Ok(Claim::Theirs { owner: String::from_utf8_lossy(&owner).into_owned(), epoch }),
            // Released between the compare and the read: try again.
            None => Err(NodeError::Aborted(format!("the claim of {actor_key} raced with its release; retry"))),
        }
    }

    /// Writes `ops` only if this member still owns `actor_key` at `epoch`;
    /// `FAILED_PRECONDITION` when the epoch is stale. Returns the revision
    /// of the write.
    pub async fn fenced(&self, actor_key: &str, epoch: Epoch, ops: Vec<TxnOp>) -> Result<i64> {
        if epoch <= 0 {
            // A create revision of 0 would match an absent key.
            return Err(NodeError::invalid("epoch", "must be positive"));
        }
        let key = self.key(actor_key);
        let lease = *self.lease_id.borrow();
        let txn = Txn::new()
            .when([
                Compare::create_revision(key.clone(), CompareOp::Equal, epoch),
                Compare::lease(key, CompareOp::Equal, lease),
            ])
            .and_then(ops);
        let response = self.txn(txn).await?;
        if !response.succeeded() {
            return Err(NodeError::precondition(format!(
                "stale epoch {epoch} for {actor_key}: this member no longer owns it"
            )));
        }
        revision_of(&response)
    }

    /// [`Self::fenced`], tried again while etcd does not answer (an
    /// endpoint down, a leader election), for at most [`WRITE_PATIENCE`].
    /// Callers write whole records, so a repeat is harmless.
    pub async fn fenced_patiently(&self, actor_key: &str, epoch: Epoch, ops: Vec<TxnOp>) -> Result<()> {
        let start = tokio::time::Instant::now();
        let mut pause = RETRY_FIRST;
        loop {
            match self.fenced(actor_key, epoch, ops.clone()).await {
                Ok(_) => return Ok(()),
                Err(NodeError::Unavailable(why)) if start.elapsed() + pause < WRITE_PATIENCE => {
                    tracing::debug!(actor = actor_key, error = %why, "writing again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Gives `actor_key` up (a drain), deleting `also` with it in the same
    /// fenced transaction. A stale epoch changes nothing.
    pub async fn release(&self, actor_key: &str, epoch: Epoch, also: Vec<TxnOp>) -> Result<()> {
        let mut ops = also;
        ops.push(TxnOp::delete(self.key(actor_key), None));
        self.fenced(actor_key, epoch, ops).await.map(|_| ())
    }
}

fn revision_of(response: &etcd_client::TxnResponse) -> Result<i64> {
    response
        .header()
        .map(etcd_client::ResponseHeader::revision)
        .filter(|r| *r > 0)
        .ok_or_else(|| NodeError::Internal("etcd answered without a revision".into()))
}
