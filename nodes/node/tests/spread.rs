//! Actors spread over the members of a cluster: each queue and each
//! logged-in informant lives on one member, requests reach it through any
//! member, and a queue and an informant on different members route calls
//! between them.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use etcd_client::GetOptions;
use relais_node::cluster::placement::{ActorKind, actor_key, owner};
use relais_proto::v1 as pb;
use support::etcd::EtcdProcess;
use support::{Clients, NodeProcess, Session, Watch, member, until_members};

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
        until_members(node, 3).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_queues_member_is_killed_another_member_takes_the_queue_and_routes_again() {
    let etcd = EtcdProcess::start();
    let mut kv = etcd_client::Client::connect([etcd.client_url.as_str()], None).await.unwrap();
    let ids = ["node-a", "node-b", "node-c"];
    let mut nodes: Vec<Option<NodeProcess>> = ids.iter().map(|id| Some(member(&etcd, id))).collect();
    for node in nodes.iter().flatten() {
        until_members(node, 3).await;
    }
    let by_id = |id: &str| ids.iter().position(|n| *n == id).unwrap();
    let mut any = Clients::new(nodes[0].as_ref().unwrap(), "cai").await;
    support::apply(&mut any, vec![support::queue("justice", "justice", 1)]).await;
    let doomed = by_id(&owner_of(&mut kv, "queue:cai/justice").await);
    let epoch_before = epoch_of(&mut kv, "queue:cai/justice").await;

    // An informant whose member survives, followed through that member.
    let survivor = (0..3).find(|i| *i != doomed).unwrap();
    let mut through = Clients::new(nodes[survivor].as_ref().unwrap(), "cai").await;
    let mut kept = None;
    for i in 0..12 {
        let id = format!("bea-{i}");
        let skills = vec![support::skill("justice", 3)];
        through.desk.login(pb::LoginRequest { informant_id: id.clone(), skills }).await.unwrap();
        let owner = by_id(&owner_of(&mut kv, &format!("informant:cai/{id}")).await);
        if owner != doomed && kept.is_none() {
            kept = Some((id, owner));
        } else {
            through.desk.pause(pb::PauseRequest { informant_id: id, reason: "test".into() }).await.unwrap();
        }
    }
    let (informant, home) = kept.expect("some informant lives off the queue's member");
    let mut desk = Clients::new(nodes[home].as_ref().unwrap(), "cai").await;
    let mut session = Session::attach(&mut desk, &informant).await;
    // And one that placement puts on the doomed member.
    let lost = (0..)
        .map(|i| format!("dan-{i}"))
        .find(|id| owner(ids, &actor_key(ActorKind::Informant, "cai", id)) == Some(ids[doomed]))
        .unwrap();
    let skills = vec![support::skill("justice", 3)];
    through.desk.login(pb::LoginRequest { informant_id: lost.clone(), skills }).await.unwrap();
    assert_eq!(owner_of(&mut kv, &format!("informant:cai/{lost}")).await, ids[doomed]);
    through.desk.pause(pb::PauseRequest { informant_id: lost.clone(), reason: "test".into() }).await.unwrap();

    // kill -9 the queue's member.
    let killed_at = Instant::now();
    drop(nodes[doomed].take());
    let new_owner = loop {
        let owner = owners(&mut kv).await.get("queue:cai/justice").cloned();
        if let Some(owner) = owner.filter(|o| o != ids[doomed]) {
            break owner;
        }
        assert!(killed_at.elapsed() < Duration::from_secs(10), "nobody took the queue");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(epoch_of(&mut kv, "queue:cai/justice").await > epoch_before, "a new claim has a greater epoch");

    // Routing goes on: a call offered through a survivor reaches the informant.
    let offered = support::offer_retrying(&mut desk, support::offer("after", "justice")).await;
    assert!(offered.created);
    let (offer_id, call_id) = session.next_offer().await;
    let routed_after = killed_at.elapsed();
    assert_eq!(call_id, "after");
    desk.desk.accept_offer(pb::OfferReply { informant_id: informant.clone(), offer_id }).await.unwrap();
    println!("queue taken by {new_owner}; first call routed {routed_after:?} after the kill");

    // An informant who was logged in on the dead member logs in again
    // through a survivor: asked to retry while the dead member's claim
    // lasts, never told it is logged in already.
    let start = Instant::now();
    loop {
        let skills = vec![support::skill("justice", 3)];
        match desk.desk.login(pb::LoginRequest { informant_id: lost.clone(), skills }).await {
            Ok(_) => break,
            Err(e) if e.code() == tonic::Code::Unavailable && start.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{lost} logging in again: {e:?}"),
        }
    }
    assert_ne!(owner_of(&mut kv, &format!("informant:cai/{lost}")).await, ids[doomed]);
}

/// The epoch of `actor`'s claim (its owner key's create revision).
async fn epoch_of(etcd: &mut etcd_client::Client, actor: &str) -> i64 {
    let read = etcd.get(format!("/relais/owners/{actor}"), None).await.unwrap();
    read.kvs().first().map_or(0, etcd_client::KeyValue::create_revision)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_paused_past_its_lease_loses_its_queue_and_changes_nothing_when_it_wakes() {
    let etcd = EtcdProcess::start();
    let mut kv = etcd_client::Client::connect([etcd.client_url.as_str()], None).await.unwrap();
    let ids = ["node-a", "node-b", "node-c"];
    let nodes: Vec<NodeProcess> = ids
        .iter()
        .map(|id| {
            let args = ["--etcd", &etcd.client_url, "--node-id", id, "--lease-ttl-s", "2"];
            NodeProcess::start(&args, &[("RUST_LOG", "info,ractor=warn,relais_node=debug")])
        })
        .collect();
    for node in &nodes {
        until_members(node, 3).await;
    }
    let by_id = |id: &str| ids.iter().position(|n| *n == id).unwrap();
    let mut any = Clients::new(&nodes[0], "cai").await;
    support::apply(&mut any, vec![support::queue("justice", "justice", 1)]).await;
    let sleeper = by_id(&owner_of(&mut kv, "queue:cai/justice").await);

    // One informant, on a member that stays awake; paused for now.
    let home = (0..3).find(|i| *i != sleeper).unwrap();
    let mut c = Clients::new(&nodes[home], "cai").await;
    let mut informant = None;
    for i in 0..12 {
        let id = format!("cyd-{i}");
        c.desk
            .login(pb::LoginRequest { informant_id: id.clone(), skills: vec![support::skill("justice", 3)] })
            .await
            .unwrap();
        c.desk.pause(pb::PauseRequest { informant_id: id.clone(), reason: "test".into() }).await.unwrap();
        if by_id(&owner_of(&mut kv, &format!("informant:cai/{id}")).await) != sleeper {
            informant = Some(id);
            break;
        }
    }
    let informant = informant.expect("an informant off the sleeping member");
    let mut session = Session::attach(&mut c, &informant).await;
    // A call waits in the queue on the member about to sleep.
    support::offer_retrying(&mut c, support::offer("old", "justice")).await;

    let pid = nodes[sleeper].pid().to_string();
    std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    let paused_at = Instant::now();
    let taker = loop {
        if let Some(owner) = owners(&mut kv).await.get("queue:cai/justice").filter(|o| *o != ids[sleeper]) {
            break owner.clone();
        }
        assert!(paused_at.elapsed() < Duration::from_secs(10), "nobody took the queue from the paused member");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("queue taken by {taker} {:?} after the pause", paused_at.elapsed());
    let claim_revision = |kv: &etcd_client::GetResponse| kv.kvs().first().map(|kv| kv.create_revision());
    let taken_at = claim_revision(&kv.get("/relais/owners/queue:cai/justice", None).await.unwrap()).unwrap();

    // The new member took the waiting call over and routes: the informant
    // is offered it, then a new call behind it.
    c.desk.resume(pb::InformantRequest { informant_id: informant.clone() }).await.unwrap();
    support::offer_retrying(&mut c, support::offer("new", "justice")).await;
    for expected in ["old", "new"] {
        let (offer_id, call_id) = session.next_offer().await;
        assert_eq!(call_id, expected);
        c.desk.accept_offer(pb::OfferReply { informant_id: informant.clone(), offer_id }).await.unwrap();
        c.desk.finish_call(pb::FinishCallRequest { informant_id: informant.clone(), call_id }).await.unwrap();
        c.desk.end_wrap_up(pb::InformantRequest { informant_id: informant.clone() }).await.ok();
    }

    // The sleeper wakes believing it hosts the queue and its call: it finds
    // its claim gone and stops the actor; nothing it held reaches anyone.
    std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    let woke = Instant::now();
    while !nodes[sleeper].logs().contains("queue no longer hosted here") {
        assert!(woke.elapsed() < Duration::from_secs(10), "the woken member still hosts the queue");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let later = session.drain(Duration::from_millis(1500)).await;
    assert!(
        !later.iter().any(|e| matches!(e, pb::informant_event::Kind::Offer(o) if o.call_id == "old")),
        "the stale queue's call was offered: {later:?}"
    );
    // The woken member joins again under a new lease, and placement may
    // hand it the queue back; only ever under a newer claim.
    let now = kv.get("/relais/owners/queue:cai/justice", None).await.unwrap();
    let owner_now = now.kvs().first().map(|kv| kv.value_str().unwrap().to_string());
    if owner_now.as_deref() != Some(taker.as_str()) {
        assert!(claim_revision(&now) > Some(taken_at), "the woken member holds the queue under an old claim");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_transfer_to_a_queue_on_another_member_hands_the_caller_over_and_the_gateway_resumes_its_stream() {
    let etcd = EtcdProcess::start();
    let ids = ["node-a", "node-b", "node-c"];
    let nodes = ids.map(|id| member(&etcd, id));
    for node in &nodes {
        until_members(node, 3).await;
    }
    // Two queues that placement puts on different members.
    let placed = |q: &str| owner(ids, &actor_key(ActorKind::Queue, "cai", q)).unwrap();
    let from = "logement";
    let to = (0..).map(|i| format!("ecoute-{i}")).find(|q| placed(q) != placed(from)).unwrap();
    let mut c = Clients::new(&nodes[0], "cai").await;
    support::apply(&mut c, vec![support::queue(from, "logement", 1), support::queue(&to, "ecoute", 1)]).await;

    let mut ana = Session::open(&mut c, "ana", vec![support::skill("logement", 3)]).await;
    support::offer_retrying(&mut c, support::offer("c1", from)).await;
    let (offer_id, _) = ana.next_offer().await;
    c.desk.accept_offer(pb::OfferReply { informant_id: "ana".into(), offer_id }).await.unwrap();
    let mut watch = Watch::open(&mut c, "c1", 0).await;

    let moved = c
        .gateway
        .transfer_call(pb::TransferCallRequest { call_id: "c1".into(), queue_id: to.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.call.unwrap().queue_id, to);
    // The stream of the call's first queue ends when the call leaves its
    // member; the gateway watches again from the last event it saw.
    let mut events = watch.rest().await;
    let last = events.last().map_or(0, |e| e.sequence);
    let mut bob = Session::open(&mut c, "bob", vec![support::skill("ecoute", 4)]).await;
    let (offer_id, call_id) = bob.next_offer().await;
    assert_eq!(call_id, "c1");
    let mut resumed = Watch::open(&mut c, "c1", last).await;
    c.desk.accept_offer(pb::OfferReply { informant_id: "bob".into(), offer_id }).await.unwrap();
    loop {
        if let pb::informant_event::Kind::CallEnded(e) = ana.next().await {
            assert_eq!((e.call_id.as_str(), e.reason.as_str()), ("c1", "transferred"));
            break;
        }
    }
    c.desk.finish_call(pb::FinishCallRequest { informant_id: "bob".into(), call_id: "c1".into() }).await.unwrap();
    events.extend(resumed.rest().await);
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=sequences.len() as u64).collect::<Vec<_>>(), "no event lost or repeated");
    assert_eq!(
        support::history(&events),
        ["queued", "offered", "connected", "transferred", "queued", "offered", "connected", "completed"]
    );
}
