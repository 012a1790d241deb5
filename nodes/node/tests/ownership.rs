//! Ownership of actors against a real etcd: one owner at a time, epochs that
//! grow, and fenced writes that a member which lost its claim cannot make.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use etcd_client::TxnOp;
use relais_node::cluster::ownership::{Claim, Ownership};
use relais_node::cluster::{JoinOptions, Membership};
use support::etcd::EtcdProcess;
use tonic::Code;

async fn join(etcd: &EtcdProcess, id: &str) -> (Membership, Ownership) {
    let membership = Membership::join(JoinOptions {
        endpoints: vec![etcd.client_url.clone()],
        prefix: "/relais".into(),
        node_id: id.into(),
        // Never dialled here: the members' detectors find nothing to follow.
        address: format!("127.0.0.1:{}", if id == "node-a" { 9 } else { 10 }),
        lease_ttl: Duration::from_secs(5),
        metrics: Default::default(),
    })
    .await
    .unwrap();
    let ownership = Ownership::new(membership.client(), "/relais", id, membership.lease_id());
    (membership, ownership)
}

const QUEUE: &str = "queue:cai/justice";
const STATE: &str = "/relais/state/queue:cai/justice";

async fn state(client: &mut etcd_client::Client) -> Option<String> {
    let read = client.get(STATE, None).await.unwrap();
    read.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_owner_at_a_time_and_a_stale_epoch_changes_nothing() {
    let etcd = EtcdProcess::start();
    let mut client = etcd_client::Client::connect([etcd.client_url.as_str()], None).await.unwrap();
    let (a_membership, a) = join(&etcd, "node-a").await;
    let (_b_membership, b) = join(&etcd, "node-b").await;

    let Claim::Mine(first) = a.claim(QUEUE).await.unwrap() else { panic!("node-a claims a free actor") };
    assert_eq!(b.claim(QUEUE).await.unwrap(), Claim::Theirs { owner: "node-a".into(), epoch: first });
    assert_eq!(a.claim(QUEUE).await.unwrap(), Claim::Mine(first), "claiming again keeps the epoch");
    a.fenced(QUEUE, first, vec![TxnOp::put(STATE, "written by node-a", None)]).await.unwrap();
    let unfenced = a.fenced("queue:cai/nobody", 0, vec![TxnOp::put(STATE, "unfenced", None)]).await.unwrap_err();
    assert_eq!(tonic::Status::from(unfenced).code(), Code::InvalidArgument, "epoch 0 would match an absent key");

    // node-a's lease ends (a peer found it dead, or it expired while node-a
    // was paused): its claim goes with it, and node-b claims a newer epoch.
    let lease = *a_membership.lease_id().borrow();
    client.lease_revoke(lease).await.unwrap();
    let Claim::Mine(second) = b.claim(QUEUE).await.unwrap() else { panic!("node-b claims the freed actor") };
    assert!(second > first);

    // node-a wakes up believing it still owns the actor: it can change nothing.
    let stale = a.fenced(QUEUE, first, vec![TxnOp::put(STATE, "late write by node-a", None)]).await.unwrap_err();
    assert_eq!(tonic::Status::from(stale).code(), Code::FailedPrecondition);
    let stale = a.release(QUEUE, first, vec![TxnOp::delete(STATE, None)]).await.unwrap_err();
    assert_eq!(tonic::Status::from(stale).code(), Code::FailedPrecondition);
    assert_eq!(state(&mut client).await.as_deref(), Some("written by node-a"));
    assert_eq!(a.claim(QUEUE).await.unwrap(), Claim::Theirs { owner: "node-b".into(), epoch: second });

    b.fenced(QUEUE, second, vec![TxnOp::put(STATE, "written by node-b", None)]).await.unwrap();
    assert_eq!(state(&mut client).await.as_deref(), Some("written by node-b"));

    // A drain: node-b gives the actor up with its state; node-a (registered
    // again under a new lease) takes it under a third, newer epoch.
    b.release(QUEUE, second, vec![TxnOp::delete(STATE, None)]).await.unwrap();
    assert_eq!(state(&mut client).await, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let third = loop {
        // node-a's keep-alive registers again within a renewal step or two.
        if *a_membership.lease_id().borrow() != lease
            && let Ok(Claim::Mine(epoch)) = a.claim(QUEUE).await
        {
            break epoch;
        }
        assert!(tokio::time::Instant::now() < deadline, "node-a registered again and claimed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(third > second);
}
