//! Live calls survive the member that held their queue: they are kept in
//! etcd before anyone hears of them, and the queue's next owner takes them
//! over — callers keep their place, a connected caller keeps their
//! informant, and a gateway's stream resumes with no event lost or
//! repeated.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use etcd_client::GetOptions;
use relais_node::cluster::placement::{ActorKind, actor_key, owner};
use relais_proto::v1 as pb;
use support::etcd::EtcdProcess;
use support::{Clients, NodeProcess, Session, Watch, member, retrying, stored_calls, until_members};

const NUMBER: &str = "+33612345678";

const IDS: [&str; 3] = ["node-a", "node-b", "node-c"];

/// Three members of a cluster in `etcd`, once each sees the three.
async fn three_members(etcd: &EtcdProcess) -> Vec<NodeProcess> {
    let nodes: Vec<NodeProcess> = IDS.iter().map(|id| member(etcd, id)).collect();
    for node in &nodes {
        until_members(node, 3).await;
    }
    nodes
}

/// Which of the three members placement gives the actor `key`.
fn placed(key: &str) -> usize {
    IDS.iter().position(|n| Some(*n) == owner(IDS, key)).unwrap()
}

/// Three members, the queue `justice` placed on one of them (the doomed
/// one), and clients on another: (members, doomed, clients).
async fn justice_on_a_doomed_member(etcd: &EtcdProcess) -> (Vec<Option<NodeProcess>>, usize, Clients) {
    let nodes: Vec<Option<NodeProcess>> = three_members(etcd).await.into_iter().map(Some).collect();
    let doomed = placed(&actor_key(ActorKind::Queue, "cai", "justice"));
    let survivor = (0..3).find(|i| *i != doomed).unwrap();
    let mut c = Clients::new(nodes[survivor].as_ref().unwrap(), "cai").await;
    support::apply(&mut c, vec![support::queue("justice", "justice", 1)]).await;
    (nodes, doomed, c)
}

/// Informant ids whose actors live off member `doomed`.
fn informants_off(doomed: usize) -> impl Iterator<Item = String> {
    (0..).map(|i| format!("inf-{i}")).filter(move |id| placed(&actor_key(ActorKind::Informant, "cai", id)) != doomed)
}

/// Reads a call's stream until it ends or breaks (its member died).
async fn read_until_broken(stream: &mut tonic::Streaming<pb::CallEvent>, at_least: usize) -> Vec<pb::CallEvent> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
            Ok(Ok(Some(event))) => out.push(event),
            Ok(Ok(None) | Err(_)) => return out,
            Err(_) if out.len() >= at_least => return out,
            Err(_) => panic!("no call event in 10 s; got {out:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_of_a_killed_queue_member_are_taken_over_in_order_with_their_informant_and_their_events() {
    let etcd = EtcdProcess::start();
    let mut kv = etcd_client::Client::connect([etcd.client_url.as_str()], None).await.unwrap();
    let (mut nodes, doomed, mut c) = justice_on_a_doomed_member(&etcd).await;

    // Two informants that live off the doomed member.
    let mut names = informants_off(doomed);
    let (ana_id, bob_id) = (names.next().unwrap(), names.next().unwrap());
    let mut ana = Session::open(&mut c, &ana_id, vec![support::skill("justice", 3)]).await;
    let mut bob = Session::open(&mut c, &bob_id, vec![support::skill("justice", 3)]).await;
    c.desk.pause(pb::PauseRequest { informant_id: bob_id.clone(), reason: "test".into() }).await.unwrap();

    // c1 is connected to ana; c2..c5 wait behind it, in this order.
    let offer = |id: &str| pb::OfferCallRequest { caller_number: NUMBER.into(), ..support::offer(id, "justice") };
    support::offer_retrying(&mut c, offer("c1")).await;
    let (offer_id, call_id) = ana.next_offer().await;
    assert_eq!(call_id, "c1");
    c.desk.accept_offer(pb::OfferReply { informant_id: ana_id.clone(), offer_id }).await.unwrap();
    let waiting = ["c2", "c3", "c4", "c5"];
    for id in waiting {
        support::offer_retrying(&mut c, offer(id)).await;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let mut stream = c
        .gateway
        .watch_call(pb::WatchCallRequest { call_id: "c2".into(), after_sequence: 0 })
        .await
        .unwrap()
        .into_inner();

    // Every acknowledged call is in etcd, its caller's number in no form
    // but its keyed hash.
    let stored = stored_calls(&mut kv).await;
    assert_eq!(stored.len(), 5, "{:?}", stored.iter().map(|(k, _)| k).collect::<Vec<_>>());
    let digits = NUMBER.trim_start_matches('+');
    assert!(stored.iter().all(|(_, v)| !String::from_utf8_lossy(v).contains(digits)), "a number in clear in etcd");

    // kill -9 the queue's member.
    let killed_at = Instant::now();
    drop(nodes[doomed].take());
    let mut seen = read_until_broken(&mut stream, 1).await;

    // bob, back, is offered the waiting calls in their order.
    retrying!("resume", c.desk.resume(pb::InformantRequest { informant_id: bob_id.clone() }));
    for (n, expected) in waiting.iter().enumerate() {
        let (offer_id, call_id) =
            tokio::time::timeout(Duration::from_secs(20), bob.next_offer_forever()).await.expect("an offer in time");
        if n == 0 {
            println!("first call routed again {:?} after the kill", killed_at.elapsed());
        }
        assert_eq!(call_id, *expected, "order kept through the takeover");
        let accept = pb::OfferReply { informant_id: bob_id.clone(), offer_id };
        retrying!("accept", c.desk.accept_offer(accept.clone()));
        let finish = pb::FinishCallRequest { informant_id: bob_id.clone(), call_id };
        retrying!("finish", c.desk.finish_call(finish.clone()));
    }

    // ana was still on c1: she ends it, and it ends once.
    let finish = pb::FinishCallRequest { informant_id: ana_id.clone(), call_id: "c1".into() };
    retrying!("finish c1", c.desk.finish_call(finish.clone()));
    let start = Instant::now();
    loop {
        let status = retrying!("get c1", c.gateway.get_call(pb::GetCallRequest { call_id: "c1".into() }));
        if support::state_of(&status) == pb::CallState::Completed {
            assert_eq!(status.informant_id, ana_id);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "c1 completed: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The gateway resumes c2's stream from the last event it saw: nothing
    // lost, nothing repeated.
    let last = seen.last().map_or(0, |e| e.sequence);
    let mut resumed = Watch::open(&mut c, "c2", last).await;
    seen.extend(resumed.rest().await);
    let sequences: Vec<u64> = seen.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=sequences.len() as u64).collect::<Vec<_>>(), "no event lost or repeated");
    assert_eq!(support::history(&seen), ["queued", "offered", "connected", "completed"]);

    // Ended calls leave etcd.
    let start = Instant::now();
    while !stored_calls(&mut kv).await.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(5), "ended calls still in etcd");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the informant's desk did with one offer.
#[derive(Debug)]
enum Took {
    Connected(String),
    Refused(String, tonic::Code),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_busy_queues_member_mid_burst_loses_no_acknowledged_call_and_keeps_their_order() {
    const CALLS: usize = 60;
    const KILL_AFTER: usize = 20;
    let etcd = EtcdProcess::start();
    let mut kv = etcd_client::Client::connect([etcd.client_url.as_str()], None).await.unwrap();
    let (mut nodes, doomed, mut c) = justice_on_a_doomed_member(&etcd).await;

    // One informant, off the doomed member, takes every call as it comes:
    // the order it is connected in is the queue's order.
    let ana_id = informants_off(doomed).next().unwrap();
    let mut session = Session::open(&mut c, &ana_id, vec![support::skill("justice", 3)]).await;
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(None::<usize>);
    let mut desk = c.desk.clone();
    let informant = ana_id.clone();
    let desk_task = tokio::spawn(async move {
        let mut took = Vec::new();
        let mut connected = 0;
        loop {
            if done_rx.borrow_and_update().is_some_and(|n| connected >= n) {
                return took;
            }
            let offer = tokio::select! {
                offer = session.next_offer_forever() => offer,
                _ = done_rx.changed() => continue,
            };
            let (offer_id, call_id) = offer;
            match desk.accept_offer(pb::OfferReply { informant_id: informant.clone(), offer_id }).await {
                Ok(_) => {
                    connected += 1;
                    took.push(Took::Connected(call_id.clone()));
                    let finish = pb::FinishCallRequest { informant_id: informant.clone(), call_id };
                    retrying!("finish", desk.finish_call(finish.clone()));
                    desk.end_wrap_up(pb::InformantRequest { informant_id: informant.clone() }).await.ok();
                }
                // The offer's queue failed over meanwhile: the call is
                // proposed again by its new owner.
                Err(e) => took.push(Took::Refused(call_id, e.code())),
            }
        }
    });

    // The gateway offers a burst, retrying UNAVAILABLE with the same call
    // id as a gateway does; the queue's member is killed in the middle.
    let mut acknowledged = Vec::new();
    let mut killed_at = None;
    for n in 0..CALLS {
        let id = format!("b{n:03}");
        let offered = retrying!("offer", c.gateway.offer_call(support::offer(&id, "justice")));
        assert_eq!(offered.call.as_ref().map(|s| s.call_id.as_str()), Some(id.as_str()));
        acknowledged.push(id);
        if n + 1 == KILL_AFTER {
            drop(nodes[doomed].take());
            killed_at = Some(Instant::now());
        }
    }
    println!("burst offered; {:?} since the kill", killed_at.unwrap().elapsed());
    done_tx.send(Some(CALLS)).unwrap();
    let took = tokio::time::timeout(Duration::from_secs(60), desk_task).await.expect("every call taken").unwrap();

    // Every acknowledged call was connected exactly once, in the order the
    // gateway's acknowledgements give, and ended once.
    let connected: Vec<&str> = took
        .iter()
        .filter_map(|t| match t {
            Took::Connected(id) => Some(id.as_str()),
            Took::Refused(..) => None,
        })
        .collect();
    let refused: Vec<String> = took
        .iter()
        .filter_map(|t| match t {
            Took::Refused(id, code) => Some(format!("{id}: {code:?}")),
            Took::Connected(_) => None,
        })
        .collect();
    println!("{} connected, refused offers (failover): {refused:?}", connected.len());
    assert_eq!(connected, acknowledged.iter().map(String::as_str).collect::<Vec<_>>(), "each call once, in order");
    // Each was finished (a finish refused would have failed the desk), and
    // each ended once: etcd, which holds live calls only, ends up empty.
    let start = Instant::now();
    while !stored_calls(&mut kv).await.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(5), "ended calls still in etcd");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_member_hands_its_queues_over_with_their_calls_and_moves_its_informants_once_idle() {
    let etcd = EtcdProcess::start();
    let mut kv = etcd_client::Client::connect([etcd.client_url.as_str()], None).await.unwrap();
    let nodes = three_members(&etcd).await;
    let drained = placed(&actor_key(ActorKind::Queue, "cai", "justice"));
    let stays = (0..3).find(|i| *i != drained).unwrap();
    let mut c = Clients::new(&nodes[stays], "cai").await;
    // A long wrap-up: an informant who finished a call takes no other
    // until it says so.
    let justice = pb::QueueConfig { wrap_up_ms: 60_000, ..support::queue("justice", "justice", 1) };
    support::apply(&mut c, vec![justice.clone()]).await;
    let ana_id = (0..)
        .map(|i| format!("inf-{i}"))
        .find(|id| placed(&actor_key(ActorKind::Informant, "cai", id)) != drained)
        .unwrap();
    // Two informants on the member to drain: eve on a call, dan idle.
    let mut d = Clients::new(&nodes[drained], "cai").await;
    let mut on_drained =
        (0..).map(|i| format!("dr-{i}")).filter(|id| placed(&actor_key(ActorKind::Informant, "cai", id)) == drained);
    let (eve_id, dan_id) = (on_drained.next().unwrap(), on_drained.next().unwrap());
    let mut eve = Session::open(&mut d, &eve_id, vec![support::skill("justice", 3)]).await;
    support::offer_retrying(&mut c, support::offer("c0", "justice")).await;
    let (offer_id, call_id) = eve.next_offer().await;
    assert_eq!(call_id, "c0");
    d.desk.accept_offer(pb::OfferReply { informant_id: eve_id.clone(), offer_id }).await.unwrap();
    let mut dan = Session::open(&mut d, &dan_id, vec![support::skill("justice", 3)]).await;
    d.desk.pause(pb::PauseRequest { informant_id: dan_id.clone(), reason: "test".into() }).await.unwrap();

    let mut ana = Session::open(&mut c, &ana_id, vec![support::skill("justice", 3)]).await;
    c.desk.pause(pb::PauseRequest { informant_id: ana_id.clone(), reason: "test".into() }).await.unwrap();
    let waiting = ["c1", "c2", "c3"];
    for id in waiting {
        support::offer_retrying(&mut c, support::offer(id, "justice")).await;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let epoch_before = kv.get("/relais/owners/queue:cai/justice", None).await.unwrap().kvs()[0].create_revision();

    // The drain: the queue moves to a member that stays; dan, idle, is
    // logged out and told to log in again; eve's call holds the drain.
    d.admin.drain(pb::DrainRequest {}).await.unwrap();
    let start = Instant::now();
    let taker = loop {
        let read = kv.get("/relais/owners/queue:cai/justice", None).await.unwrap();
        if let Some(kv) = read.kvs().first()
            && kv.value_str().unwrap() != IDS[drained]
        {
            assert!(kv.create_revision() > epoch_before);
            break kv.value_str().unwrap().to_string();
        }
        assert!(start.elapsed() < Duration::from_secs(10), "nobody took the drained member's queue");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("queue handed from {} to {taker} in {:?}", IDS[drained], start.elapsed());
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(5), dan.stream.message()).await.expect("dan's session ends") {
            Ok(Some(_)) => {}
            Ok(None) => panic!("dan's session ended without telling him to log in again"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), tonic::Code::Unavailable, "{ended:?}");
    // (With another skill this time, so that he takes none of the calls
    // checked below.)
    let login = pb::LoginRequest { informant_id: dan_id.clone(), skills: vec![support::skill("logement", 3)] };
    retrying!("dan logs in again", d.desk.login(login.clone()));
    let read = kv.get(format!("/relais/owners/informant:cai/{dan_id}"), None).await.unwrap();
    assert_ne!(read.kvs()[0].value_str().unwrap(), IDS[drained], "dan landed on a member that stays");
    let left = d.admin.drain(pb::DrainRequest {}).await.unwrap().into_inner();
    assert_eq!(left.live_calls, 1, "eve's call holds the drain: {left:?}");
    d.desk.finish_call(pb::FinishCallRequest { informant_id: eve_id.clone(), call_id: "c0".into() }).await.unwrap();
    let start = Instant::now();
    loop {
        let left = d.admin.drain(pb::DrainRequest {}).await.unwrap().into_inner();
        if left.live_calls == 0 && left.informants_logged_in == 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the drained member still holds {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Its calls went with it, in their order.
    c.desk.resume(pb::InformantRequest { informant_id: ana_id.clone() }).await.unwrap();
    for expected in waiting {
        let (offer_id, call_id) = ana.next_offer().await;
        assert_eq!(call_id, expected);
        let accept = pb::OfferReply { informant_id: ana_id.clone(), offer_id };
        retrying!("accept", c.desk.accept_offer(accept.clone()));
        let finish = pb::FinishCallRequest { informant_id: ana_id.clone(), call_id };
        retrying!("finish", c.desk.finish_call(finish.clone()));
        c.desk.end_wrap_up(pb::InformantRequest { informant_id: ana_id.clone() }).await.ok();
    }
    // A new queue goes to a member that stays.
    support::apply(&mut c, vec![justice, support::queue("logement", "logement", 1)]).await;
    let start = Instant::now();
    loop {
        let read = kv.get("/relais/owners/queue:cai/logement", None).await.unwrap();
        if let Some(kv) = read.kvs().first() {
            assert_ne!(kv.value_str().unwrap(), IDS[drained], "a draining member took a new queue");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "nobody took the new queue");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let start = Instant::now();
    while !stored_calls(&mut kv).await.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(5), "ended calls still in etcd");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_informant_whose_member_dies_mid_call_logs_in_again_on_that_call() {
    let etcd = EtcdProcess::start();
    let mut nodes: Vec<Option<NodeProcess>> = three_members(&etcd).await.into_iter().map(Some).collect();
    let queue_home = placed(&actor_key(ActorKind::Queue, "cai", "justice"));
    // The informant lives on another member, which dies during her call.
    let ivy = (0..)
        .map(|i| format!("ivy-{i}"))
        .find(|id| placed(&actor_key(ActorKind::Informant, "cai", id)) != queue_home)
        .unwrap();
    let doomed = placed(&actor_key(ActorKind::Informant, "cai", &ivy));
    let mut c = Clients::new(nodes[queue_home].as_ref().unwrap(), "cai").await;
    support::apply(&mut c, vec![support::queue("justice", "justice", 1)]).await;
    let mut session = Session::open(&mut c, &ivy, vec![support::skill("justice", 3)]).await;
    support::offer_retrying(&mut c, support::offer("k1", "justice")).await;
    let mut watch = Watch::open(&mut c, "k1", 0).await;
    let (offer_id, _) = session.next_offer().await;
    c.desk.accept_offer(pb::OfferReply { informant_id: ivy.clone(), offer_id }).await.unwrap();

    drop(nodes[doomed].take());
    // Her desktop logs in again (through the queue's member): she is on
    // her call still, and the caller with her.
    let login = pb::LoginRequest { informant_id: ivy.clone(), skills: vec![support::skill("justice", 3)] };
    let status = retrying!("login again", c.desk.login(login.clone()));
    assert_eq!(status.state, pb::InformantState::OnCall as i32, "{status:?}");
    assert_eq!(status.call_id, "k1");
    let call = c.gateway.get_call(pb::GetCallRequest { call_id: "k1".into() }).await.unwrap().into_inner();
    assert_eq!(support::state_of(&call), pb::CallState::Connected);

    // She finishes it when the conversation ends: it ends once.
    c.desk.finish_call(pb::FinishCallRequest { informant_id: ivy.clone(), call_id: "k1".into() }).await.unwrap();
    let events = watch.rest().await;
    assert_eq!(support::history(&events), ["queued", "offered", "connected", "completed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_etcd_loses_no_waiting_call() {
    let mut etcd = EtcdProcess::start();
    let nodes = three_members(&etcd).await;
    let mut c = Clients::new(&nodes[0], "cai").await;
    support::apply(&mut c, vec![support::queue("justice", "justice", 1)]).await;
    let mut ana = Session::open(&mut c, "ana", vec![support::skill("justice", 3)]).await;
    c.desk.pause(pb::PauseRequest { informant_id: "ana".into(), reason: "test".into() }).await.unwrap();
    for id in ["w1", "w2", "w3"] {
        support::offer_retrying(&mut c, support::offer(id, "justice")).await;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }

    // etcd is down for a second and a half, then back on the same data.
    etcd.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    etcd.restart();

    // Routing goes on with every call: the waiting ones in their order,
    // then one offered after the restart (retried while refused).
    retrying!("offer after", c.gateway.offer_call(support::offer("w4", "justice")));
    retrying!("resume", c.desk.resume(pb::InformantRequest { informant_id: "ana".into() }));
    for expected in ["w1", "w2", "w3", "w4"] {
        let (offer_id, call_id) =
            tokio::time::timeout(Duration::from_secs(20), ana.next_offer_forever()).await.expect("an offer in time");
        assert_eq!(call_id, expected);
        let accept = pb::OfferReply { informant_id: "ana".into(), offer_id };
        retrying!("accept", c.desk.accept_offer(accept.clone()));
        let finish = pb::FinishCallRequest { informant_id: "ana".into(), call_id };
        retrying!("finish", c.desk.finish_call(finish.clone()));
        c.desk.end_wrap_up(pb::InformantRequest { informant_id: "ana".into() }).await.ok();
    }
    let mut kv = etcd_client::Client::connect([etcd.client_url.as_str()], None).await.unwrap();
    let start = Instant::now();
    while !stored_calls(&mut kv).await.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(5), "ended calls still in etcd");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finish_is_answered_once_the_call_is_ended_in_etcd_so_a_failover_never_brings_it_back() {
    let etcd = EtcdProcess::start();
    let mut nodes: Vec<Option<NodeProcess>> = three_members(&etcd).await.into_iter().map(Some).collect();
    let queue_home = placed(&actor_key(ActorKind::Queue, "cai", "justice"));
    // The informant lives on another member: her finish crosses a link.
    let ivy = (0..)
        .map(|i| format!("ivy-{i}"))
        .find(|id| placed(&actor_key(ActorKind::Informant, "cai", id)) != queue_home)
        .unwrap();
    let her_home = placed(&actor_key(ActorKind::Informant, "cai", &ivy));
    // Through her member: the finish's answer takes the shortest way back.
    let mut c = Clients::new(nodes[her_home].as_ref().unwrap(), "cai").await;
    let mut kv = etcd_client::Client::connect([etcd.client_url.as_str()], None).await.unwrap();
    support::apply(&mut c, vec![support::queue("justice", "justice", 1)]).await;
    let mut session = Session::open(&mut c, &ivy, vec![support::skill("justice", 3)]).await;
    for round in 0..5 {
        let call_id = format!("k{round}");
        support::offer_retrying(&mut c, support::offer(&call_id, "justice")).await;
        let (offer_id, _) = session.next_offer().await;
        c.desk.accept_offer(pb::OfferReply { informant_id: ivy.clone(), offer_id }).await.unwrap();
        assert_eq!(stored_calls(&mut kv).await.len(), 1, "the connected call is in etcd");
        let finish = pb::FinishCallRequest { informant_id: ivy.clone(), call_id: call_id.clone() };
        c.desk.finish_call(finish).await.unwrap();
        // Read at once: the answer came after the call's end was written.
        assert_eq!(stored_calls(&mut kv).await, Vec::new(), "call {call_id} still stored after its finish");
    }

    // Her member dies right after a finish: she logs in again free, not
    // on the call she finished.
    support::offer_retrying(&mut c, support::offer("last", "justice")).await;
    let (offer_id, _) = session.next_offer().await;
    c.desk.accept_offer(pb::OfferReply { informant_id: ivy.clone(), offer_id }).await.unwrap();
    c.desk.finish_call(pb::FinishCallRequest { informant_id: ivy.clone(), call_id: "last".into() }).await.unwrap();
    drop(nodes[her_home].take());
    let mut c = Clients::new(nodes[queue_home].as_ref().unwrap(), "cai").await;
    let login = pb::LoginRequest { informant_id: ivy.clone(), skills: vec![support::skill("justice", 3)] };
    let status = retrying!("login again", c.desk.login(login.clone()));
    assert_ne!(status.state, pb::InformantState::OnCall as i32, "{status:?}");
    assert_eq!(status.call_id, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_that_join_take_their_share_of_the_queues_with_their_calls_in_their_order() {
    let etcd = EtcdProcess::start();
    let mut kv = etcd_client::Client::connect([etcd.client_url.as_str()], None).await.unwrap();
    let first = member(&etcd, IDS[0]);
    until_members(&first, 1).await;
    let mut c = Clients::new(&first, "cai").await;
    let queues: Vec<String> = (0..6).map(|i| format!("q{i}")).collect();
    let placed_name = |q: &str| IDS[placed(&actor_key(ActorKind::Queue, "cai", q))];
    assert!(queues.iter().any(|q| placed_name(q) != IDS[0]), "some queue should move");
    support::apply(&mut c, queues.iter().map(|q| support::queue(q, "justice", 1)).collect()).await;
    let mut ana = Session::open(&mut c, "ana", vec![support::skill("justice", 3)]).await;
    c.desk.pause(pb::PauseRequest { informant_id: "ana".into(), reason: "test".into() }).await.unwrap();
    // Calls wait in every queue; across queues of one priority an
    // informant takes them by arrival.
    let mut offered = Vec::new();
    for round in 0..2 {
        for q in &queues {
            let call_id = format!("{q}-{round}");
            support::offer_retrying(&mut c, support::offer(&call_id, q)).await;
            offered.push(call_id);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    // Two members join: each queue placement now gives them moves there,
    // and only those.
    let joined = Instant::now();
    let _others: Vec<NodeProcess> = IDS[1..].iter().map(|id| member(&etcd, id)).collect();
    loop {
        let owners: Vec<String> = {
            let mut out = Vec::new();
            for q in &queues {
                let read = kv.get(format!("/relais/owners/queue:cai/{q}"), None).await.unwrap();
                out.push(read.kvs().first().map(|kv| kv.value_str().unwrap().to_string()).unwrap_or_default());
            }
            out
        };
        if queues.iter().zip(&owners).all(|(q, o)| o == placed_name(q)) {
            break;
        }
        assert!(joined.elapsed() < Duration::from_secs(20), "queues not placed on the members that joined: {owners:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("queues rebalanced {:?} after two members joined", joined.elapsed());

    // Every call is still there, each queue's in arrival order. (Across
    // queues, an informant takes the best call among the queues that
    // answer her in time; a queue still starting on its new member may
    // not.)
    retrying!("resume", c.desk.resume(pb::InformantRequest { informant_id: "ana".into() }));
    let mut served = Vec::new();
    for _ in &offered {
        let (offer_id, call_id) =
            tokio::time::timeout(Duration::from_secs(20), ana.next_offer_forever()).await.expect("an offer in time");
        let accept = pb::OfferReply { informant_id: "ana".into(), offer_id };
        retrying!("accept", c.desk.accept_offer(accept.clone()));
        let finish = pb::FinishCallRequest { informant_id: "ana".into(), call_id: call_id.clone() };
        retrying!("finish", c.desk.finish_call(finish.clone()));
        served.push(call_id);
    }
    for q in &queues {
        let in_queue: Vec<&String> = served.iter().filter(|id| id.starts_with(&format!("{q}-"))).collect();
        assert_eq!(in_queue, [&format!("{q}-0"), &format!("{q}-1")], "queue {q}'s calls out of order: {served:?}");
    }
    assert_eq!(stored_calls(&mut kv).await, Vec::new(), "ended calls still in etcd");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_offered_to_an_informant_whose_member_dies_goes_to_someone_else() {
    let etcd = EtcdProcess::start();
    let mut nodes: Vec<Option<NodeProcess>> = three_members(&etcd).await.into_iter().map(Some).collect();
    let queue_home = placed(&actor_key(ActorKind::Queue, "cai", "justice"));
    // Ivy and Zoe each on one of the two other members.
    let (ivy_home, zoe_home) = {
        let others: Vec<usize> = (0..3).filter(|i| *i != queue_home).collect();
        (others[0], others[1])
    };
    let on = |home: usize| {
        (0..)
            .map(|i| format!("inf-{i}"))
            .find(|id| placed(&actor_key(ActorKind::Informant, "cai", id)) == home)
            .unwrap()
    };
    let (ivy, zoe) = (&on(ivy_home), &on(zoe_home));
    let bob = (0..)
        .map(|i| format!("bob-{i}"))
        .find(|id| placed(&actor_key(ActorKind::Informant, "cai", id)) == queue_home)
        .unwrap();
    // Offers that do not expire on their own during the test.
    let justice = pb::QueueConfig { offer_timeout_ms: 60_000, ..support::queue("justice", "justice", 1) };
    let mut c = Clients::new(nodes[queue_home].as_ref().unwrap(), "cai").await;
    support::apply(&mut c, vec![justice]).await;
    let mut b = Session::open(&mut c, &bob, vec![support::skill("justice", 3)]).await;
    c.desk.pause(pb::PauseRequest { informant_id: bob.clone(), reason: "test".into() }).await.unwrap();

    // Ivy is offered a call, then her member dies; she never comes back.
    let doomed = ivy_home;
    let mut d = Clients::new(nodes[doomed].as_ref().unwrap(), "cai").await;
    let mut i = Session::open(&mut d, ivy, vec![support::skill("justice", 3)]).await;
    support::offer_retrying(&mut c, support::offer("k1", "justice")).await;
    let (_, call_id) = i.next_offer().await;
    assert_eq!(call_id, "k1");
    drop(nodes[doomed].take());
    // The call does not wait for her: Bob is offered it.
    c.desk.resume(pb::InformantRequest { informant_id: bob.clone() }).await.unwrap();
    let (offer_id, call_id) =
        tokio::time::timeout(Duration::from_secs(10), b.next_offer_forever()).await.expect("k1 offered again");
    assert_eq!(call_id, "k1");
    c.desk.accept_offer(pb::OfferReply { informant_id: bob.clone(), offer_id }).await.unwrap();

    // Zoe is offered a call, her member dies, and she logs in again at
    // once elsewhere: she is offered it again.
    let mut z = Clients::new(nodes[zoe_home].as_ref().unwrap(), "cai").await;
    let mut first = Session::open(&mut z, zoe, vec![support::skill("justice", 3)]).await;
    support::offer_retrying(&mut c, support::offer("k2", "justice")).await;
    let (_, call_id) = first.next_offer().await;
    assert_eq!(call_id, "k2");
    drop(nodes[zoe_home].take());
    let login = pb::LoginRequest { informant_id: zoe.clone(), skills: vec![support::skill("justice", 3)] };
    retrying!("zoe logs in again", c.desk.login(login.clone()));
    let mut again = Session::attach(&mut c, zoe).await;
    let (offer_id, call_id) =
        tokio::time::timeout(Duration::from_secs(10), again.next_offer_forever()).await.expect("k2 offered again");
    assert_eq!(call_id, "k2");
    c.desk.accept_offer(pb::OfferReply { informant_id: zoe.clone(), offer_id }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn informants_whose_member_dies_log_in_again_in_their_pause_or_their_wrap_up() {
    let etcd = EtcdProcess::start();
    let mut nodes: Vec<Option<NodeProcess>> = three_members(&etcd).await.into_iter().map(Some).collect();
    let queue_home = placed(&actor_key(ActorKind::Queue, "cai", "justice"));
    let doomed = (0..3).find(|i| *i != queue_home).unwrap();
    let mut on_doomed =
        (0..).map(|i| format!("inf-{i}")).filter(|id| placed(&actor_key(ActorKind::Informant, "cai", id)) == doomed);
    let (ivy, zoe) = (on_doomed.next().unwrap(), on_doomed.next().unwrap());
    let justice = pb::QueueConfig { wrap_up_ms: 60_000, ..support::queue("justice", "justice", 1) };
    let mut c = Clients::new(nodes[queue_home].as_ref().unwrap(), "cai").await;
    support::apply(&mut c, vec![justice]).await;
    let mut d = Clients::new(nodes[doomed].as_ref().unwrap(), "cai").await;
    // Ivy goes to lunch; Zoe takes a call and is in her wrap-up.
    let _ivy_session = Session::open(&mut d, &ivy, vec![support::skill("justice", 3)]).await;
    d.desk.pause(pb::PauseRequest { informant_id: ivy.clone(), reason: "lunch".into() }).await.unwrap();
    let mut zoe_session = Session::open(&mut d, &zoe, vec![support::skill("justice", 3)]).await;
    support::offer_retrying(&mut c, support::offer("k1", "justice")).await;
    let (offer_id, _) = zoe_session.next_offer().await;
    d.desk.accept_offer(pb::OfferReply { informant_id: zoe.clone(), offer_id }).await.unwrap();
    let status =
        d.desk.finish_call(pb::FinishCallRequest { informant_id: zoe.clone(), call_id: "k1".into() }).await.unwrap();
    assert_eq!(status.into_inner().state, pb::InformantState::WrapUp as i32);

    drop(nodes[doomed].take());
    // Both log in again through the queue's member, where they were.
    let login =
        |id: &str| pb::LoginRequest { informant_id: id.to_string(), skills: vec![support::skill("justice", 3)] };
    let status = retrying!("ivy logs in again", c.desk.login(login(&ivy)));
    assert_eq!(status.state, pb::InformantState::Paused as i32, "{status:?}");
    assert_eq!(status.reason, "lunch");
    let status = retrying!("zoe logs in again", c.desk.login(login(&zoe)));
    assert_eq!(status.state, pb::InformantState::WrapUp as i32, "{status:?}");
    // Neither is offered a call meanwhile; Ivy is once back from lunch.
    let mut ivy_session = Session::attach(&mut c, &ivy).await;
    support::offer_retrying(&mut c, support::offer("k2", "justice")).await;
    let quiet = ivy_session.drain(Duration::from_millis(1500)).await;
    assert!(!quiet.iter().any(|e| matches!(e, pb::informant_event::Kind::Offer(_))), "{quiet:?}");
    c.desk.resume(pb::InformantRequest { informant_id: ivy.clone() }).await.unwrap();
    let (_, call_id) = ivy_session.next_offer().await;
    assert_eq!(call_id, "k2");
    // Zoe ends her wrap-up; logged out, she leaves no standing behind.
    c.desk.end_wrap_up(pb::InformantRequest { informant_id: zoe.clone() }).await.unwrap();
    c.desk.logout(pb::InformantRequest { informant_id: zoe.clone() }).await.unwrap();
    let mut kv = etcd_client::Client::connect([etcd.client_url.as_str()], None).await.unwrap();
    let left = kv.get("/relais/informants/", Some(GetOptions::new().with_prefix())).await.unwrap();
    let keys: Vec<&str> = left.kvs().iter().map(|kv| kv.key_str().unwrap()).collect();
    assert_eq!(keys, Vec::<&str>::new(), "standing left in etcd");
}

/// A call that ended on a member that died right after is still told, by
/// any member, with its whole log: its last record stays in etcd a while,
/// although the member that kept its end in memory is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_a_call_is_told_after_the_member_that_ended_it_died() {
    let etcd = EtcdProcess::start();
    let mut kv = etcd_client::Client::connect([etcd.client_url.as_str()], None).await.unwrap();
    let (mut nodes, doomed, mut c) = justice_on_a_doomed_member(&etcd).await;
    let ana_id = informants_off(doomed).next().unwrap();
    let mut ana = Session::open(&mut c, &ana_id, vec![support::skill("justice", 3)]).await;
    support::offer_retrying(&mut c, support::offer("c1", "justice")).await;
    let (offer_id, _) = ana.next_offer().await;
    c.desk.accept_offer(pb::OfferReply { informant_id: ana_id.clone(), offer_id }).await.unwrap();
    // Answered once the call's end is in etcd.
    c.desk.finish_call(pb::FinishCallRequest { informant_id: ana_id.clone(), call_id: "c1".into() }).await.unwrap();
    assert_eq!(stored_calls(&mut kv).await, Vec::new(), "no live call left");

    drop(nodes[doomed].take());
    // A gateway that never heard the first answer offers c1 again: the
    // queue's next owner, which read the call's last record with the
    // queue's calls, answers with its end, not a second call.
    let again = support::offer_retrying(&mut c, support::offer("c1", "justice")).await;
    assert!(!again.created, "c1 offered twice: {again:?}");
    assert_eq!(support::state_of(again.call.as_ref().unwrap()), pb::CallState::Completed);
    let status = retrying!("get c1", c.gateway.get_call(pb::GetCallRequest { call_id: "c1".into() }));
    assert_eq!(support::state_of(&status), pb::CallState::Completed);
    assert_eq!(status.informant_id, ana_id);
    let events = Watch::open(&mut c, "c1", 0).await.rest().await;
    assert_eq!(support::history(&events), ["queued", "offered", "connected", "completed"]);
    let resumed = Watch::open(&mut c, "c1", 3).await.rest().await;
    assert_eq!(support::history(&resumed), ["completed"], "resumed after the last event seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_actor_that_fails_in_place_is_joined_again_by_informants_on_other_members() {
    let etcd = EtcdProcess::start();
    // A lease longer than etcd's freeze below: every member keeps its
    // lease and its claims, so the queue's actor fails and starts again on
    // the same member.
    let nodes: Vec<NodeProcess> = IDS
        .iter()
        .map(|id| {
            NodeProcess::start(
                &["--etcd", &etcd.client_url, "--node-id", id, "--lease-ttl-s", "15"],
                &[("RUST_LOG", "info,ractor=warn,relais_node=debug")],
            )
        })
        .collect();
    for node in &nodes {
        until_members(node, 3).await;
    }
    let home = placed(&actor_key(ActorKind::Queue, "cai", "justice"));
    let mut c = Clients::new(&nodes[(home + 1) % 3], "cai").await;
    support::apply(&mut c, vec![support::queue("justice", "justice", 1)]).await;
    let ana_id = informants_off(home).next().unwrap();
    let mut ana = Session::open(&mut c, &ana_id, vec![support::skill("justice", 3)]).await;
    // She serves the queue: a first call reaches her.
    support::offer_retrying(&mut c, support::offer("c0", "justice")).await;
    let (offer_id, call_id) = ana.next_offer().await;
    assert_eq!(call_id, "c0");
    c.desk.accept_offer(pb::OfferReply { informant_id: ana_id.clone(), offer_id }).await.unwrap();
    c.desk.finish_call(pb::FinishCallRequest { informant_id: ana_id.clone(), call_id }).await.unwrap();
    let available = Instant::now();
    let request = pb::InformantRequest { informant_id: ana_id.clone() };
    while c.desk.get_informant(request.clone()).await.unwrap().into_inner().state
        != pb::InformantState::Available as i32
    {
        assert!(available.elapsed() < Duration::from_secs(10), "ana is available again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // etcd freezes while the queue writes a new call: the write is not
    // taken in time (3 s, and the attempt under way), and the queue's
    // actor fails.
    etcd.pause();
    let mut gateway = Clients::new(&nodes[(home + 1) % 3], "cai").await;
    let first_try = tokio::spawn(async move { gateway.gateway.offer_call(support::offer("c1", "justice")).await });
    tokio::time::sleep(Duration::from_secs(6)).await;
    etcd.resume();
    let _ = first_try.await;
    support::offer_retrying(&mut c, support::offer("c1", "justice")).await;

    // The queue's new actor knows none of the old one's members: ana, on
    // another member, joins it again and is offered the call.
    let (_, call_id) = tokio::time::timeout(Duration::from_secs(20), ana.next_offer_forever())
        .await
        .expect("ana is offered c1 by the queue's new actor");
    assert_eq!(call_id, "c1");
    // Claimed again under a new epoch: by the placer's release and claim
    // ("claimed again to start afresh"), or, when etcd's answer to the
    // release was lost with its connection after the freeze, by the next
    // placement pass once the released claim is gone.
    let logs = nodes[home].logs();
    let claims = logs.lines().filter(|l| l.contains("queue claimed") && l.contains("justice")).count();
    assert!(claims >= 2, "justice claimed again on its member: {logs}");
}

/// A call proposed to an informant who had not answered when the queue's
/// member died: the proposal was written before she heard it, so the next
/// owner tells the gateway the call was served then (an unanswered offer to
/// her, stamped when the dead owner chose her), then queued, withdraws the
/// proposal from her, and offers the call again. Without it, a younger call
/// offered meanwhile would look served first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_unanswered_when_its_queues_member_dies_is_told_by_the_next_owner() {
    use prost::Message;
    let etcd = EtcdProcess::start();
    let mut kv = etcd_client::Client::connect([etcd.client_url.as_str()], None).await.unwrap();
    let mut nodes: Vec<Option<NodeProcess>> = three_members(&etcd).await.into_iter().map(Some).collect();
    // justice on one member, another queue of hers on a second, Ivy on the
    // third, which the gateway and her desktop use.
    let justice_home = placed(&actor_key(ActorKind::Queue, "cai", "justice"));
    let (other, other_home) = (0..)
        .map(|i| format!("q-{i}"))
        .map(|q| {
            let home = placed(&actor_key(ActorKind::Queue, "cai", &q));
            (q, home)
        })
        .find(|(_, home)| *home != justice_home)
        .unwrap();
    let ivy_home = (0..3).find(|i| *i != justice_home && *i != other_home).unwrap();
    let ivy = (0..)
        .map(|i| format!("inf-{i}"))
        .find(|id| placed(&actor_key(ActorKind::Informant, "cai", id)) == ivy_home)
        .unwrap();
    let mut g = Clients::new(nodes[ivy_home].as_ref().unwrap(), "cai").await;
    let justice = pb::QueueConfig { offer_timeout_ms: 60_000, ..support::queue("justice", "justice", 1) };
    support::apply(&mut g, vec![justice, support::queue(&other, "travail", 1)]).await;
    let skills = vec![support::skill("justice", 3), support::skill("travail", 3)];
    let _session = Session::open(&mut g, &ivy, skills).await;
    g.desk.pause(pb::PauseRequest { informant_id: ivy.clone(), reason: "test".into() }).await.unwrap();
    support::offer_retrying(&mut g, support::offer("k1", "justice")).await;

    // Her other queue's member freezes; she comes back: justice proposes k1
    // while she waits for the other queue's answer (up to a second).
    let other_pid = nodes[other_home].as_ref().unwrap().pid().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &other_pid]).status().unwrap().success());
    let now_ms = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let resumed_at = now_ms();
    g.desk.resume(pb::InformantRequest { informant_id: ivy.clone() }).await.unwrap();
    // The proposal is in etcd before she hears it.
    let deadline = Instant::now() + Duration::from_millis(900);
    loop {
        let stored = stored_calls(&mut kv).await;
        let (_, value) = stored.iter().find(|(key, _)| key.ends_with("/k1")).expect("k1 in etcd");
        let record = relais_proto::peer::v1::StoredCall::decode(value.as_slice()).unwrap();
        if let Some(proposed) = record.proposed {
            assert_eq!(proposed.informant_id, ivy);
            break;
        }
        assert!(Instant::now() < deadline, "k1 written as proposed to Ivy while she collects answers");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // justice's member dies before her answer; the frozen one wakes up.
    let killed_at = now_ms();
    drop(nodes[justice_home].take());
    assert!(std::process::Command::new("kill").args(["-CONT", &other_pid]).status().unwrap().success());

    // The next owner tells the proposal, then offers k1 again (to her, the
    // only informant, freed from the proposal it withdrew).
    // Until a member owns the queue again, k1 is unavailable or not found.
    let deadline = Instant::now() + Duration::from_secs(15);
    let watch = pb::WatchCallRequest { call_id: "k1".into(), after_sequence: 0 };
    let mut stream = retrying!(
        "watch k1 at the next owner",
        g.gateway.watch_call(watch.clone()),
        tonic::Code::Unavailable,
        tonic::Code::NotFound
    );
    let mut events = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, stream.message())
            .await
            .unwrap_or_else(|_| panic!("k1 offered again within 15 s; got {events:?}"))
            .expect("stream ok")
            .unwrap_or_else(|| panic!("k1's stream ended; got {events:?}"));
        let answered_offer = matches!(&event.kind, Some(pb::call_event::Kind::Offered(o)) if !o.unanswered);
        events.push(event);
        if answered_offer {
            break;
        }
    }
    assert_eq!(support::history(&events), ["queued", "offered", "queued", "offered"], "{events:?}");
    let Some(pb::call_event::Kind::Offered(first)) = &events[1].kind else { unreachable!() };
    assert!(first.unanswered && first.informant_id == ivy, "served to Ivy, unanswered: {events:?}");
    assert!(
        (resumed_at..=killed_at).contains(&events[1].at_unix_ms),
        "stamped when the dead owner chose her ({resumed_at}..={killed_at}): {events:?}"
    );
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert!(sequences.windows(2).all(|w| w[1] == w[0] + 1), "no gap: {sequences:?}");
}
