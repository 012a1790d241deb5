//! Live calls kept in etcd, so that a queue's next owner can take them over.
//!
//! Each live call of a clustered queue is one key,
//! `<prefix>/calls/<tenant>/<call_id>`, holding a protobuf
//! [`StoredCall`](relais_proto::peer::v1::StoredCall): the queue that holds
//! it, what the gateway said, its event log, its place in line and, once
//! connected, its informant. The key is per call, not per queue, so that a
//! call moving between queues is one overwrite, never two copies.
//!
//! The queue actor writes its changed calls in batches, each a transaction
//! fenced by its claim on the queue (see [`Ownership::fenced`]), and tells
//! the gateway and informants nothing about a change before the batch that
//! holds it is written. When a call ends its record is overwritten with its
//! last state (its log ends with its end) under a lease of its own that
//! expires [`ENDED_KEPT`] later: a gateway whose stream broke with the
//! member that ended the call reads the end at any other member. Readers of
//! live calls skip those records.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, GetOptions, PutOptions, TxnOp};
use prost::Message;
use relais_proto::peer::v1 as pb;
use relais_routing::queue::DurableCall;

use crate::cluster::catalog_store::MAX_TXN_OPS;
use crate::cluster::ownership::{Epoch, Ownership};
use crate::cluster::placement::{ActorKind, actor_key};
use crate::error::{NodeError, Result};
use crate::metrics::{EtcdOp, Metrics};
use crate::peer::wire;

/// Deadline of one read of a tenant's calls.
const READ_STEP: Duration = Duration::from_secs(5);
/// How long at least an ended call's last record stays in etcd: long
/// enough for a gateway to resume a stream the death of a member broke,
/// short enough that a busy cluster's ended calls stay a small part of
/// etcd (2,000 calls a second make 240,000 records of a few KiB).
pub const ENDED_KEPT: Duration = Duration::from_secs(120);
/// Ended records share a lease granted at most this long ago (each lives
/// `ENDED_KEPT` to `ENDED_KEPT + ENDED_LEASE_REUSE`).
const ENDED_LEASE_REUSE: Duration = Duration::from_secs(30);

/// One change to a call's record.
#[derive(Clone, Debug, PartialEq)]
pub enum CallWrite {
    Put(Box<DurableCall>),
    /// The call ended: its last record, kept [`ENDED_KEPT`].
    End(Box<DurableCall>),
}

/// `request`'s answer from etcd within [`READ_STEP`]; `UNAVAILABLE`
/// otherwise.
async fn answer<T>(
    request: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
) -> Result<T> {
    tokio::time::timeout(READ_STEP, request)
        .await
        .map_err(|_| NodeError::Unavailable("etcd did not answer in time; retry".into()))?
        .map_err(|e| NodeError::Unavailable(format!("etcd: {e}")))
}

/// A call record as etcd holds it.
fn decode(value: &[u8]) -> Result<DurableCall> {
    pb::StoredCall::decode(value).map_err(|e| NodeError::Internal(e.to_string())).and_then(wire::stored_call_in)
}

/// Reads and writes the tenants' live calls.
pub struct CallStore {
    client: Client,
    root: String,
    ownership: Ownership,
    metrics: Metrics,
    /// The lease ended records are written under, and when it was granted.
    ended_lease: tokio::sync::Mutex<Option<(i64, std::time::Instant)>>,
}

impl CallStore {
    pub fn new(client: Client, prefix: &str, ownership: Ownership, metrics: Metrics) -> Self {
        Self {
            client,
            root: format!("{}/calls/", prefix.trim_end_matches('/')),
            ownership,
            metrics,
            ended_lease: tokio::sync::Mutex::new(None),
        }
    }

    fn tenant_prefix(&self, tenant: &str) -> String {
        format!("{}{tenant}/", self.root)
    }

    fn key(&self, tenant: &str, call_id: &str) -> String {
        format!("{}{call_id}", self.tenant_prefix(tenant))
    }

    /// The live calls `queue_id` holds, or that are moving to it, and the
    /// last records of its calls that ended lately. A record that does not
    /// decode is skipped with an error in the log: it cannot be routed, and
    /// refusing the whole queue would strand the others.
    pub async fn load(&self, tenant: &str, queue_id: &str) -> Result<(Vec<DurableCall>, Vec<DurableCall>)> {
        let calls = self.read(tenant).await?;
        Ok(calls
            .into_iter()
            .filter(|call| call.queue_id.as_ref() == queue_id)
            .partition(|call| !call.call.events.is_ended()))
    }

    /// The last record of `tenant`'s call `call_id`, if it ended less than
    /// [`ENDED_KEPT`] ago.
    pub async fn ended(&self, tenant: &str, call_id: &str) -> Result<Option<DurableCall>> {
        let mut client = self.client.clone();
        let sent = std::time::Instant::now();
        let response = answer(client.get(self.key(tenant, call_id), None)).await;
        self.metrics.etcd(EtcdOp::CallsRead, sent.elapsed());
        let response = response?;
        let Some(kv) = response.kvs().first() else { return Ok(None) };
        let call = decode(kv.value())?;
        Ok(call.call.events.is_ended().then_some(call))
    }

    /// A lease for ended records: the one granted less than
    /// [`ENDED_LEASE_REUSE`] ago, or a new one.
    async fn ended_lease(&self) -> Result<i64> {
        let mut cached = self.ended_lease.lock().await;
        if let Some((id, granted)) = *cached
            && granted.elapsed() < ENDED_LEASE_REUSE
        {
            return Ok(id);
        }
        let ttl = i64::try_from((ENDED_KEPT + ENDED_LEASE_REUSE).as_secs()).unwrap_or(i64::MAX);
        let mut client = self.client.clone();
        let granted = answer(client.lease_grant(ttl, None)).await?;
        *cached = Some((granted.id(), std::time::Instant::now()));
        Ok(granted.id())
    }

    /// Every call record of `tenant`, live or ended (see [`Self::load`] for
    /// unreadable ones).
    async fn read(&self, tenant: &str) -> Result<Vec<DurableCall>> {
        let mut client = self.client.clone();
        let sent = std::time::Instant::now();
        let response = answer(client.get(self.tenant_prefix(tenant), Some(GetOptions::new().with_prefix()))).await;
        self.metrics.etcd(EtcdOp::CallsRead, sent.elapsed());
        let response = response?;
        let mut calls = Vec::new();
        for kv in response.kvs() {
            match decode(kv.value()) {
                Ok(call) => calls.push(call),
                Err(e) => {
                    tracing::error!(key = %String::from_utf8_lossy(kv.key()), error = %e, "unreadable call record skipped")
                }
            }
        }
        Ok(calls)
    }

    /// The live call connected to `informant_id`, if a queue holds one:
    /// (call id, queue id, connected since).
    pub async fn connected_to(&self, tenant: &str, informant_id: &str) -> Result<Option<(Arc<str>, Arc<str>, u64)>> {
        let calls = self.read(tenant).await?;
        Ok(calls.into_iter().filter(|call| !call.call.events.is_ended()).find_map(|call| match call.connected {
            Some((informant, since_ms)) if informant.as_ref() == informant_id => {
                Some((call.call.info.call_id, call.queue_id, since_ms))
            }
            _ => None,
        }))
    }

    /// Writes `writes` for `tenant`'s queue `queue_id`, only while this
    /// member owns it at `epoch`, in transactions of at most
    /// [`MAX_TXN_OPS`] in order (a call's record is at most a few KiB, so
    /// a transaction stays well under etcd's 1.5 MiB). `FAILED_PRECONDITION` when the
    /// epoch is stale, `UNAVAILABLE` when etcd does not answer.
    pub async fn write(&self, tenant: &str, queue_id: &str, epoch: Epoch, writes: Vec<CallWrite>) -> Result<()> {
        let claim = actor_key(ActorKind::Queue, tenant, queue_id);
        let lease =
            if writes.iter().any(|w| matches!(w, CallWrite::End(_))) { Some(self.ended_lease().await?) } else { None };
        let mut ops: Vec<TxnOp> = writes
            .into_iter()
            .map(|w| match w {
                CallWrite::Put(call) => TxnOp::put(
                    self.key(tenant, &call.call.info.call_id),
                    wire::stored_call_out(&call).encode_to_vec(),
                    None,
                ),
                CallWrite::End(call) => TxnOp::put(
                    self.key(tenant, &call.call.info.call_id),
                    wire::stored_call_out(&call).encode_to_vec(),
                    lease.map(|id| PutOptions::new().with_lease(id)),
                ),
            })
            .collect();
        while !ops.is_empty() {
            let rest = ops.split_off(ops.len().min(MAX_TXN_OPS));
            let sent = std::time::Instant::now();
            let written = self.ownership.fenced_patiently(&claim, epoch, ops).await;
            self.metrics.etcd(EtcdOp::CallsWrite, sent.elapsed());
            if written.is_err() && lease.is_some() {
                // The lease may be what failed (etcd lost it): grant anew.
                *self.ended_lease.lock().await = None;
            }
            written?;
            ops = rest;
        }
        Ok(())
    }
}
