//! Fast failover of membership: a member whose process died is removed at
//! once instead of after its lease's TTL.
//!
//! Every member follows every other member's health stream. When a stream
//! breaks, a confirming probe connects to the peer's address: if nothing
//! listens there any more (connection refused, twice), the process is gone
//! and this member revokes its lease, which deletes its key at once (etcd
//! takes a few milliseconds). A probe that times out proves nothing — the
//! peer may be paused or cut off from us but not from etcd — so silent
//! failures are left to the lease's TTL, and a partition between members
//! cannot make them evict each other. (A firewall that rejects connections
//! between members but not to etcd would look like a crash: members must be
//! able to reach each other's advertised address.)
//!
//! The same streams tell which peers this member reaches now ([`Reach`]),
//! which decides whether it is cut off from most of them
//! ([`super::isolation`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::cluster::isolation::Reach;
use crate::cluster::membership::{MemberInfo, Members};

/// Most peers one member follows.
pub const MAX_PEERS: usize = 64;
/// Deadline of one probe connection.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// Pause between the two probes that must both be refused.
const PROBE_GAP: Duration = Duration::from_millis(100);
/// Backoff bounds before following a live peer's health stream again.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// HTTP/2 keep-alive of a followed health stream: a ping every interval,
/// the connection closed when one is not answered within the timeout. A
/// link gone silent is noticed within 1 to 1.5 s.
const PING_INTERVAL: Duration = Duration::from_millis(500);
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// Follows the members in `members` other than `me` until the sender goes,
/// telling `reach` whether each one's stream is up.
pub async fn detect_crashes(client: Client, me: String, mut members: watch::Receiver<Arc<Members>>, reach: Arc<Reach>) {
    let mut followed = Followers { peers: HashMap::new(), reach: reach.clone() };
    loop {
        let view = members.borrow_and_update().clone();
        followed.peers.retain(|id, (info, task)| {
            let keep = view.nodes.get(id) == Some(info);
            if !keep {
                task.abort();
                reach.forget(id);
            }
            keep
        });
        for (id, info) in &view.nodes {
            if id == &me || followed.peers.contains_key(id) || followed.peers.len() >= MAX_PEERS || info.lease_id == 0 {
                continue;
            }
            reach.set(id, false);
            let task = tokio::spawn(follow_peer(client.clone(), info.clone(), reach.clone()));
            followed.peers.insert(id.clone(), (info.clone(), task));
        }
        if members.changed().await.is_err() {
            break;
        }
    }
}

/// The followed peers and their tasks, aborted with it (also when the
/// detector itself is aborted).
struct Followers {
    peers: HashMap<String, (MemberInfo, JoinHandle<()>)>,
    reach: Arc<Reach>,
}

impl Drop for Followers {
    fn drop(&mut self) {
        for (id, (_, task)) in &self.peers {
            task.abort();
            self.reach.forget(id);
        }
    }
}

async fn follow_peer(client: Client, peer: MemberInfo, reach: Arc<Reach>) {
    let mut backoff = RETRY_FIRST;
    loop {
        let followed_for = follow_health(&peer.address, || reach.set(&peer.node_id, true)).await;
        reach.set(&peer.node_id, false);
        if confirmed_gone(&peer.address).await {
            revoke(client, &peer).await;
            return;
        }
        if followed_for > RETRY_MAX {
            backoff = RETRY_FIRST;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RETRY_MAX);
    }
}

/// Follows the peer's health stream until it breaks (calling `up` once it
/// is open); returns how long it lasted.
async fn follow_health(address: &str, up: impl FnOnce()) -> Duration {
    let started = tokio::time::Instant::now();
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{address}")) else {
        return started.elapsed();
    };
    let endpoint = endpoint
        .connect_timeout(Duration::from_secs(1))
        .http2_keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(PING_TIMEOUT)
        .keep_alive_while_idle(true);
    let Ok(channel) = endpoint.connect().await else { return started.elapsed() };
    let mut health = HealthClient::new(channel);
    if let Ok(response) = health.watch(HealthCheckRequest { service: String::new() }).await {
        up();
        let mut stream = response.into_inner();
        while let Ok(Some(_)) = stream.message().await {}
    }
    started.elapsed()
}

/// Whether two connections to `address`, `PROBE_GAP` apart, are both
/// refused: nothing listens there any more.
async fn confirmed_gone(address: &str) -> bool {
    for attempt in 0..2 {
        if attempt > 0 {
            tokio::time::sleep(PROBE_GAP).await;
        }
        match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(address)).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            _ => return false,
        }
    }
    true
}

/// Revokes the peer's lease. Logged before the request: the deletion it
/// causes comes back through the member watch, which stops this peer's
/// follower, possibly before etcd's answer arrives.
async fn revoke(mut client: Client, peer: &MemberInfo) {
    tracing::warn!(node_id = %peer.node_id, "member's process is gone: revoking its lease");
    match tokio::time::timeout(Duration::from_secs(1), client.lease_revoke(peer.lease_id)).await {
        Ok(Ok(_)) => {}
        // Already revoked by another member, or expired.
        Ok(Err(e)) => tracing::debug!(node_id = %peer.node_id, error = %e, "member's lease not revoked"),
        Err(_) => tracing::debug!(node_id = %peer.node_id, "revoking a member's lease timed out"),
    }
}
