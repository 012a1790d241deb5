//! Actors spread over the members of a cluster: each queue and each
//! logged-in informant lives on one member, requests reach it through any
//! member, and a queue and an informant on different members route calls
//! between them.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use etcd_client::GetOptions;
use relais_proto::v1 as pb;
use support::etcd::EtcdProcess;
use support::{Clients, NodeProcess, Session, Watch};

fn member(etcd: &EtcdProcess, id: &str) -> NodeProcess {
    NodeProcess::start(&["--etcd", &etcd.client_url, "--node-id", id, "--lease-ttl-s", "5"], &[])
}

/// Every claim in etcd: actor key → owner's node id.
async fn owners(etcd: &mut etcd_client::Client) -> std::collections::BTreeMap<String, String> {
    let read = etcd.get("/relais/owners/", Some(GetOptions::new().with_prefix())).await.unwrap();
    read.kvs()
        .iter()
        .map(|kv| {
            let key = kv.key_str().unwrap().trim_start_matches("/relais/owners/").to_string();
            (key, kv.value_str().unwrap().to_string())
        })
        .collect()
}

/// Waits until `actor` has an owner; returns it.
async fn owner_of(etcd: &mut etcd_client::Client, actor: &str) -> String {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if let Some(owner) = owners(etcd).await.get(actor) {
            return owner.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{actor} has no owner after 10 s: {:?}", owners(etcd).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_offered_through_one_member_reaches_a_queue_on_another_and_an_informant_on_a_third() {
    let etcd = EtcdProcess::start();
    let mut kv = etcd_client::Client::connect([etcd.client_url.as_str()], None).await.unwrap();
    let ids = ["node-a", "node-b", "node-c"];
    let nodes = ids.map(|id| member(&etcd, id));
    let by_id = |id: &str| ids.iter().position(|n| *n == id).unwrap();
    for node in &nodes {
        let mut c = Clients::new(node, "cai").await;
        let start = Instant::now();
        while c.admin.list_members(pb::ListRequest {}).await.map_or(0, |r| r.into_inner().members.len()) < 3 {
            assert!(start.elapsed() < Duration::from_secs(10), "every member sees the three members");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut first = Clients::new(&nodes[0], "cai").await;
    support::apply(&mut first, vec![support::queue("justice", "justice", 1)]).await;

    // Every member takes part in placement: the queue has one owner.
    let queue_owner = owner_of(&mut kv, "queue:cai/justice").await;
    let b = by_id(&queue_owner);

    // Informants log in through the queue's owner; each lands where
    // placement puts it. Keep one that lives elsewhere, pause the others.
    let mut through_b = Clients::new(&nodes[b], "cai").await;
    let mut elsewhere = None;
    for i in 0..12 {
        let id = format!("ana-{i}");
        through_b
            .desk
            .login(pb::LoginRequest { informant_id: id.clone(), skills: vec![support::skill("justice", 3)] })
            .await
            .unwrap();
        let owner = owner_of(&mut kv, &format!("informant:cai/{id}")).await;
        if owner != queue_owner && elsewhere.is_none() {
            elsewhere = Some((id, owner));
        } else {
            through_b.desk.pause(pb::PauseRequest { informant_id: id, reason: "test".into() }).await.unwrap();
        }
    }
    let (informant, informant_owner) = elsewhere.expect("some informant lives off the queue's member");
    let c = by_id(&informant_owner);
    let a = (0..3).find(|i| *i != b && *i != c).unwrap();
    println!("queue on {queue_owner}, informant {informant} on {informant_owner}, gateway on {}", ids[a]);

    // The desktop follows its session through A; the gateway offers
    // through A too: A owns neither actor.
    let mut through_a = Clients::new(&nodes[a], "cai").await;
    let mut session = Session::attach(&mut through_a, &informant).await;
    let offered = support::offer_retrying(&mut through_a, support::offer("c1", "justice")).await;
    assert_eq!(offered.call.as_ref().map(|s| s.queue_id.as_str()), Some("justice"));
    let mut watch = Watch::open(&mut through_a, "c1", 0).await;

    let (offer_id, call_id) = session.next_offer().await;
    assert_eq!(call_id, "c1");
    let accepted = through_a
        .desk
        .accept_offer(pb::OfferReply { informant_id: informant.clone(), offer_id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(accepted.state, pb::InformantState::OnCall as i32);
    through_a
        .desk
        .finish_call(pb::FinishCallRequest { informant_id: informant.clone(), call_id: "c1".into() })
        .await
        .unwrap();

    let events = watch.rest().await;
    assert_eq!(support::history(&events), ["queued", "offered", "connected", "completed"]);
    let status = through_a.gateway.get_call(pb::GetCallRequest { call_id: "c1".into() }).await.unwrap().into_inner();
    assert_eq!(support::state_of(&status), pb::CallState::Completed);
    assert_eq!(status.informant_id, informant);
}
