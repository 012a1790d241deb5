//! How fast the cluster's membership notices a member that failed, against
//! real `relais-node` processes and a real etcd.
//!
//! Measured in one run:
//! - the baseline: etcd's own path from `LeaseRevoke` to the key's DELETE
//!   seen by a watcher (what any lease-based removal costs at best);
//! - `kill -9` of a member: from the kill to the member gone from another
//!   member's `ListMembers` (a peer sees the broken health stream, finds the
//!   port closed, revokes the lease);
//! - `SIGSTOP` of a member (a silent failure, left to its lease): from the
//!   pause to the member gone, against its lease TTL;
//! - `kill -9` of the member hosting a queue with a call waiting: from the
//!   kill to that call offered to an informant on a survivor (another
//!   member claims the queue, reads its calls from etcd, the informants
//!   join it again).
//!
//! Bounded: a fixed number of rounds, each with a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use relais_node::cluster::placement::{ActorKind, actor_key, owner};
use relais_proto::v1 as pb;
use support::etcd::EtcdProcess;
use support::{Clients, NodeProcess, Session};

const KILLS: usize = 20;
const PAUSES: usize = 3;
const BASELINE_ROUNDS: usize = 50;
const TTL_S: u64 = 3;

fn member(etcd: &EtcdProcess, id: &str) -> NodeProcess {
    NodeProcess::start(&["--etcd", &etcd.client_url, "--node-id", id, "--lease-ttl-s", &TTL_S.to_string()], &[])
}

async fn listed(observer: &mut Clients, id: &str) -> bool {
    observer
        .admin
        .list_members(pb::ListRequest {})
        .await
        .is_ok_and(|r| r.into_inner().members.iter().any(|m| m.node_id == id))
}

/// Polls every 2 ms until `listed(id) == want`; the time it took.
async fn until_listed(observer: &mut Clients, id: &str, want: bool, within: Duration) -> Duration {
    let start = Instant::now();
    while start.elapsed() < within {
        if listed(observer, id).await == want {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("{id} listed={want} not within {within:?}");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn row(name: &str, mut samples: Vec<Duration>, note: &str) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "| {name} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {note} |",
        samples.len(),
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap()),
    );
}

/// etcd alone: grant, put under the lease, revoke, time to the DELETE event.
async fn baseline(etcd: &EtcdProcess) -> Vec<Duration> {
    let mut client = etcd_client::Client::connect([etcd.client_url.as_str()], None).await.unwrap();
    let mut samples = Vec::new();
    for i in 0..BASELINE_ROUNDS {
        let key = format!("/bench/{i}");
        let lease = client.lease_grant(10, None).await.unwrap().id();
        client.put(key.as_str(), "x", Some(etcd_client::PutOptions::new().with_lease(lease))).await.unwrap();
        let (_watcher, mut stream) = client.watch(key.as_str(), None).await.unwrap();
        let start = Instant::now();
        client.lease_revoke(lease).await.unwrap();
        loop {
            let response = stream.message().await.unwrap().unwrap();
            if response.events().iter().any(|e| e.event_type() == etcd_client::EventType::Delete) {
                break;
            }
        }
        samples.push(start.elapsed());
    }
    samples
}

/// An id, among `prefix-0`, `prefix-1`…, that placement over `members`
/// gives to `wanted`.
fn placed_on(kind: ActorKind, prefix: &str, members: [&str; 2], wanted: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|id| owner(members, &actor_key(kind, "cai", id)) == Some(wanted))
        .expect("some id lands on each member")
}

/// One round: a queue on `victim` with a call waiting, an informant on the
/// observer (paused until the kill); kill the victim and time until the
/// waiting call, taken over from etcd, is offered to the informant.
async fn reroute_once(etcd: &EtcdProcess, observer: &mut Clients, round: usize) -> Duration {
    let id = format!("host-{round}");
    let victim = member(etcd, &id);
    until_listed(observer, &id, true, Duration::from_secs(10)).await;
    let members = ["observer", id.as_str()];
    let skill = format!("s{round}");
    let queue = placed_on(ActorKind::Queue, &format!("q{round}"), members, &id);
    observer.admin.create_queue(support::queue(&queue, &skill, 1)).await.unwrap();
    let informant = placed_on(ActorKind::Informant, &format!("i{round}"), members, "observer");
    let mut session = Session::open(observer, &informant, vec![support::skill(&skill, 3)]).await;
    let pause = pb::PauseRequest { informant_id: informant.clone(), reason: "bench".into() };
    observer.desk.pause(pause).await.unwrap();
    let call = format!("c{round}");
    support::offer_retrying(observer, support::offer(&call, &queue)).await;
    // Let the members open their health streams and links to each other.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let start = Instant::now();
    drop(victim);
    observer.desk.resume(pb::InformantRequest { informant_id: informant.clone() }).await.unwrap();
    let (_, offered) = session.next_offer().await;
    let took = start.elapsed();
    assert_eq!(offered, call);
    observer.gateway.hang_up(pb::HangUpRequest { call_id: call }).await.unwrap();
    observer.desk.logout(pb::InformantRequest { informant_id: informant }).await.unwrap();
    took
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let etcd = EtcdProcess::start();
    let base = baseline(&etcd).await;
    let observer_node = member(&etcd, "observer");
    let mut observer = Clients::new(&observer_node, "cai").await;

    let mut kills = Vec::new();
    for round in 0..KILLS {
        let id = format!("victim-{round}");
        let victim = member(&etcd, &id);
        until_listed(&mut observer, &id, true, Duration::from_secs(10)).await;
        // Let the observer open its health stream to the victim.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let start = Instant::now();
        drop(victim);
        until_listed(&mut observer, &id, false, Duration::from_secs(2 * TTL_S + 5)).await;
        kills.push(start.elapsed());
    }

    let mut pauses = Vec::new();
    for round in 0..PAUSES {
        let id = format!("sleeper-{round}");
        let sleeper = member(&etcd, &id);
        until_listed(&mut observer, &id, true, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let pid = sleeper.pid().to_string();
        let start = Instant::now();
        std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap();
        until_listed(&mut observer, &id, false, Duration::from_secs(2 * TTL_S + 5)).await;
        pauses.push(start.elapsed());
        std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    }

    let mut reroutes = Vec::new();
    for round in 0..KILLS {
        reroutes.push(reroute_once(&etcd, &mut observer, round).await);
    }

    println!("## Membership failure detection (etcd 3.4, lease TTL {TTL_S} s)\n");
    println!("| measure | samples | p50 | p99 | max | note |");
    println!("|---|---:|---:|---:|---:|---|");
    row("baseline: etcd LeaseRevoke → DELETE seen by a watcher", base, "etcd alone");
    row("kill -9 → gone from another member's ListMembers", kills, "peer revokes the lease; target < 1 s");
    row(
        "SIGSTOP → gone from another member's ListMembers",
        pauses,
        &format!("left to the lease; target < TTL + 1 s = {} s", TTL_S + 1),
    );
    row(
        "kill -9 of a queue's member → its waiting call offered again",
        reroutes,
        "claimed again, calls read from etcd, informants join; target < 1 s",
    );
}
