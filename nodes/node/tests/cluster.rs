//! Cluster membership against a real etcd: nodes register under a lease,
//! see each other, leave at once when stopped or killed (a peer revokes a
//! dead member's lease), are left to their lease when merely silent, and
//! stop serving while they cannot prove their membership.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use relais_proto::v1 as pb;
use support::etcd::EtcdProcess;
use support::{Clients, NodeProcess};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

fn member(etcd: &EtcdProcess, id: &str, ttl_s: u64) -> NodeProcess {
    NodeProcess::start(
        &["--etcd", &etcd.client_url, "--node-id", id, "--lease-ttl-s", &ttl_s.to_string()],
        &[("RUST_LOG", "info,ractor=warn,relais_node=debug")],
    )
}

async fn members(c: &mut Clients) -> Result<pb::ListMembersResponse, tonic::Status> {
    c.admin.list_members(pb::ListRequest {}).await.map(tonic::Response::into_inner)
}

fn ids(r: &pb::ListMembersResponse) -> Vec<String> {
    r.members.iter().map(|m| m.node_id.clone()).collect()
}

/// Polls `check` every 50 ms until it holds or `within` passes; returns
/// how long it took.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < within {
        if check().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within {within:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_see_each_other_and_a_stopped_or_killed_member_leaves() {
    let etcd = EtcdProcess::start();
    let a = member(&etcd, "node-a", 5);
    // A long lease: seeing this node go quickly proves it revoked its lease.
    let mut b = member(&etcd, "node-b", 30);
    let c = member(&etcd, "node-c", 30);
    let mut admin = Clients::new(&a, "cai").await;

    eventually(Duration::from_secs(10), "three members", || {
        let mut admin = admin_clone(&admin);
        async move { members(&mut admin).await.is_ok_and(|r| r.members.len() == 3) }
    })
    .await;
    let view = members(&mut admin).await.unwrap();
    assert!(view.clustered);
    assert!(view.revision > 0);
    assert_eq!(ids(&view), ["node-a", "node-b", "node-c"]);
    let addresses: Vec<&str> = view.members.iter().map(|m| m.address.as_str()).collect();
    assert_eq!(addresses, [a.addr.as_str(), b.addr.as_str(), c.addr.as_str()]);
    assert!(view.members.iter().all(|m| !m.lease.is_empty()), "each member shows its lease: {view:?}");
    assert_eq!(view.members.iter().filter(|m| m.answering).map(|m| m.node_id.as_str()).collect::<Vec<_>>(), ["node-a"]);
    let serving_for = view.serving_for_ms.expect("a member says how long it may serve");
    assert!(serving_for > 0 && serving_for <= 4_500, "90 % of a 5 s lease at most: {serving_for}");

    // SIGTERM: the node revokes its 30 s lease on the way out.
    assert_eq!(b.terminate(Duration::from_secs(10)), Some(true), "{}", b.logs());
    assert!(b.logs().contains("left the cluster"), "{}", b.logs());
    let took = until_members(&admin, &["node-a", "node-c"], "the stopped member leaves").await;
    println!("stopped member gone after {took:?}");

    // A member that stops answering (SIGSTOP) but whose port is still open
    // is not evicted by its peers: only its lease's TTL can end it.
    let pid = c.pid().to_string();
    std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = members(&mut admin).await.unwrap();
    std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    assert_eq!(ids(&still), ["node-a", "node-c"], "a paused member is left to its lease");

    // kill -9: a peer sees its health stream break, finds the port closed,
    // and revokes the 30 s lease at once.
    drop(c);
    let took = until_members(&admin, &["node-a"], "the killed member leaves").await;
    println!("killed member gone after {took:?}");
    let logs = a.logs();
    assert!(
        logs.lines().any(|l| l.contains("member's process is gone: revoking its lease") && l.contains("node-c")),
        "node-a revoked node-c's lease: {logs}"
    );
}

/// Waits up to ten seconds until `c`'s node lists exactly `expected`;
/// returns how long it took.
async fn until_members(c: &Clients, expected: &[&str], what: &str) -> Duration {
    eventually(Duration::from_secs(10), what, || {
        let mut c = admin_clone(c);
        async move { members(&mut c).await.is_ok_and(|r| ids(&r) == expected) }
    })
    .await
}

fn admin_clone(c: &Clients) -> Clients {
    Clients { gateway: c.gateway.clone(), desk: c.desk.clone(), admin: c.admin.clone() }
}

async fn health(node: &NodeProcess) -> Option<ServingStatus> {
    let mut client = HealthClient::new(node.channel().await);
    let request = tonic_health::pb::HealthCheckRequest { service: "relais.v1.Gateway".into() };
    client.check(request).await.ok().map(|r| r.into_inner().status())
}

async fn serves(c: &mut Clients) -> Result<(), tonic::Status> {
    c.admin.list_queues(pb::ListRequest {}).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cut_off_from_etcd_stops_serving_and_comes_back() {
    let mut etcd = EtcdProcess::start();
    let node = member(&etcd, "node-a", 2);
    let mut c = Clients::new(&node, "cai").await;
    eventually(Duration::from_secs(10), "serves", || {
        let mut c = admin_clone(&c);
        async move { serves(&mut c).await.is_ok() }
    })
    .await;
    assert_eq!(health(&node).await, Some(ServingStatus::Serving));

    // etcd frozen: renewals go unanswered and the window closes.
    etcd.pause();
    let took = eventually(Duration::from_secs(10), "refuses work", || {
        let mut c = admin_clone(&c);
        async move { serves(&mut c).await.is_err_and(|s| s.code() == Code::Unavailable) }
    })
    .await;
    println!("stopped serving {took:?} after etcd froze");
    let refusal = serves(&mut c).await.unwrap_err();
    assert!(refusal.message().contains("membership"), "{}", refusal.message());
    let offer = c.gateway.offer_call(support::offer("c1", "justice")).await.unwrap_err();
    assert_eq!(offer.code(), Code::Unavailable, "every service refuses, not only Admin");
    eventually(Duration::from_secs(5), "health says NOT_SERVING", || async {
        health(&node).await == Some(ServingStatus::NotServing)
    })
    .await;

    etcd.resume();
    eventually(Duration::from_secs(15), "serves again after etcd thaws", || {
        let mut c = admin_clone(&c);
        async move { serves(&mut c).await.is_ok() }
    })
    .await;

    // etcd killed and restarted from its data: the node comes back by itself.
    etcd.kill();
    eventually(Duration::from_secs(10), "refuses work while etcd is down", || {
        let mut c = admin_clone(&c);
        async move { serves(&mut c).await.is_err_and(|s| s.code() == Code::Unavailable) }
    })
    .await;
    etcd.restart();
    eventually(Duration::from_secs(20), "serves again after etcd restarts", || {
        let mut c = admin_clone(&c);
        async move { serves(&mut c).await.is_ok() && members(&mut c).await.is_ok_and(|r| ids(&r) == ["node-a"]) }
    })
    .await;
    eventually(Duration::from_secs(5), "health says SERVING again", || async {
        health(&node).await == Some(ServingStatus::Serving)
    })
    .await;
}

/// Runs `relais-node` with `args` expecting it to exit; returns its stderr.
fn run_to_exit(args: &[&str]) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_relais-node"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("relais-node {args:?} did not exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_id_held_by_a_live_member_is_refused() {
    let etcd = EtcdProcess::start();
    // A long lease: a starved machine cannot let it lapse during the test.
    let first = member(&etcd, "node-a", 10);
    until_members(&Clients::new(&first, "cai").await, &["node-a"], "the first node-a registered").await;
    let (ok, stderr) = run_to_exit(&["--etcd", &etcd.client_url, "--node-id", "node-a", "--lease-ttl-s", "2"]);
    assert!(!ok);
    assert!(stderr.contains("cluster member \"node-a\" already exists"), "{stderr}");
}

#[test]
fn unreachable_etcd_and_bad_cluster_settings_stop_the_node_at_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (ok, stderr) = run_to_exit(&["--etcd", &format!("http://127.0.0.1:{port}")]);
    assert!(!ok);
    assert!(stderr.contains("unreachable"), "{stderr}");

    let (ok, stderr) = run_to_exit(&["--etcd", "http://127.0.0.1:2379", "--lease-ttl-s", "1"]);
    assert!(!ok);
    assert!(stderr.contains("lease_ttl_s"), "{stderr}");

    let (ok, stderr) = run_to_exit(&["--node-id", "no/slash"]);
    assert!(!ok);
    assert!(stderr.contains("node_id"), "{stderr}");
}

#[tokio::test]
async fn a_node_without_etcd_lists_itself_alone() {
    let node = NodeProcess::start(&["--node-id", "solo"], &[]);
    let mut c = Clients::new(&node, "cai").await;
    let view = members(&mut c).await.unwrap();
    assert!(!view.clustered);
    assert_eq!(view.serving_for_ms, None);
    assert_eq!(ids(&view), ["solo"]);
    assert_eq!(view.members[0].address, node.addr);
    assert!(view.members[0].answering);
    assert_eq!(view.members[0].lease, "");
}

async fn queue_ids(c: &mut Clients) -> Vec<String> {
    c.admin.list_queues(pb::ListRequest {}).await.unwrap().into_inner().queues.into_iter().map(|q| q.id).collect()
}

async fn profile_ids(c: &mut Clients) -> Vec<String> {
    c.admin
        .list_informants(pb::ListRequest {})
        .await
        .unwrap()
        .into_inner()
        .informants
        .into_iter()
        .map(|p| p.id)
        .collect()
}

fn profile(id: &str, skill: &str) -> pb::InformantProfile {
    pb::InformantProfile { id: id.into(), display_name: String::new(), skills: vec![support::skill(skill, 3)] }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_changed_through_one_member_reaches_every_member() {
    let etcd = EtcdProcess::start();
    let a = member(&etcd, "node-a", 5);
    let b = member(&etcd, "node-b", 5);
    let mut ca = Clients::new(&a, "cai").await;
    let mut cb = Clients::new(&b, "cai").await;

    let plan = pb::RoutingPlan {
        queues: vec![support::queue("justice", "justice", 1), support::queue("travail", "travail", 1)],
        informants: vec![profile("ana", "justice")],
        prune: false,
    };
    let applied = match ca.admin.apply_plan(plan.clone()).await {
        Ok(r) => r.into_inner(),
        Err(e) => panic!("{e:?}\n{}", a.logs()),
    };
    assert_eq!((applied.created, applied.updated, applied.deleted), (3, 0, 0));
    // The answer comes once the answering member applied it: it reads its own writes.
    assert_eq!(queue_ids(&mut ca).await, ["justice", "travail"]);
    eventually(Duration::from_secs(5), "the other member has the queues and the profile", || {
        let mut cb = admin_clone(&cb);
        async move { queue_ids(&mut cb).await == ["justice", "travail"] && profile_ids(&mut cb).await == ["ana"] }
    })
    .await;
    let again = cb.admin.apply_plan(plan).await.unwrap().into_inner();
    assert_eq!((again.created, again.updated, again.unchanged), (0, 0, 3), "plans are idempotent cluster-wide");

    // The other member routes with it: its stored profile logs ana in with
    // the justice skill, and a call offered there reaches her.
    let mut session = support::Session::open(&mut cb, "ana", vec![]).await;
    support::offer_retrying(&mut cb, support::offer("c1", "justice")).await;
    let (_, call_id) = session.next_offer().await;
    assert_eq!(call_id, "c1");

    // An update through B reaches A; the same create through both gives
    // exactly one queue.
    let mut changed = support::queue("travail", "travail", 2);
    changed.display_name = "Travail et emploi".into();
    cb.admin.update_queue(changed).await.unwrap();
    eventually(Duration::from_secs(5), "the update reaches A", || {
        let mut ca = admin_clone(&ca);
        async move {
            ca.admin
                .list_queues(pb::ListRequest {})
                .await
                .unwrap()
                .into_inner()
                .queues
                .iter()
                .any(|q| q.display_name == "Travail et emploi")
        }
    })
    .await;
    let (first, second) = tokio::join!(
        ca.admin.create_queue(support::queue("logement", "logement", 1)),
        cb.admin.create_queue(support::queue("logement", "logement", 1)),
    );
    let outcomes = [first.map(|_| ()), second.map(|_| ())];
    assert_eq!(outcomes.iter().filter(|r| r.is_ok()).count(), 1, "{outcomes:?}");
    let loser = outcomes.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert!(matches!(loser.code(), Code::AlreadyExists | Code::Aborted), "{loser:?}");

    // A member started later loads the configuration before it serves.
    let c = member(&etcd, "node-c", 5);
    let mut cc = Clients::new(&c, "cai").await;
    assert_eq!(queue_ids(&mut cc).await, ["justice", "logement", "travail"]);

    // A queue is hosted by one member: deleting it through another member
    // while a call waits in it is refused, wherever the call lives; once
    // the call ended, the deletion goes through and reaches every member.
    cb.admin.create_queue(support::queue("ecoute", "ecoute", 1)).await.unwrap();
    support::offer_retrying(&mut cb, support::offer("w1", "ecoute")).await;
    eventually(Duration::from_secs(5), "C has the queue", || {
        let mut cc = admin_clone(&cc);
        async move { queue_ids(&mut cc).await.contains(&"ecoute".to_string()) }
    })
    .await;
    // (UNAVAILABLE while C has not yet heard which member hosts it: retried.)
    let refused = loop {
        let refused = cc.admin.delete_queue(pb::DeleteRequest { id: "ecoute".into() }).await.unwrap_err();
        if refused.code() != Code::Unavailable {
            break refused;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("1 live calls"), "{refused:?}");
    let mut listener = support::Session::open(&mut cc, "lea", vec![support::skill("ecoute", 3)]).await;
    let (offer_id, call_id) = listener.next_offer().await;
    assert_eq!(call_id, "w1", "the waiting caller is served");
    cc.desk.accept_offer(pb::OfferReply { informant_id: "lea".into(), offer_id }).await.unwrap();
    cc.desk.finish_call(pb::FinishCallRequest { informant_id: "lea".into(), call_id }).await.unwrap();
    cc.admin.delete_queue(pb::DeleteRequest { id: "ecoute".into() }).await.unwrap();
    eventually(Duration::from_secs(5), "every member drops the queue", || {
        let (mut ca, mut cb) = (admin_clone(&ca), admin_clone(&cb));
        async move {
            !queue_ids(&mut ca).await.contains(&"ecoute".to_string())
                && !queue_ids(&mut cb).await.contains(&"ecoute".to_string())
        }
    })
    .await;
}

/// The lease id under which `node_id` is registered, read from etcd.
async fn registered_lease(etcd: &mut etcd_client::Client, node_id: &str) -> Option<i64> {
    let read = etcd.get(format!("/relais/members/{node_id}"), None).await.ok()?;
    let value: serde_json::Value = serde_json::from_slice(read.kvs().first()?.value()).ok()?;
    value["lease_id"].as_i64()
}

/// Waits up to ten seconds for `node_id` to be registered under a lease
/// other than `not`; returns that lease.
async fn registered_again(etcd: &mut etcd_client::Client, node_id: &str, not: Option<i64>) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(lease) = registered_lease(etcd, node_id).await
            && Some(lease) != not
        {
            return lease;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{node_id} not registered under a new lease within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_lease_or_key_is_removed_registers_again() {
    let etcd = EtcdProcess::start();
    let node = member(&etcd, "node-a", 5);
    let mut client = etcd_client::Client::connect([etcd.client_url.as_str()], None).await.unwrap();
    let first = registered_again(&mut client, "node-a", None).await;

    // Its lease revoked behind its back (as a peer does when it believes
    // the node dead): it registers again under a new lease.
    client.lease_revoke(first).await.unwrap();
    let second = registered_again(&mut client, "node-a", Some(first)).await;

    // Its key deleted while its lease lives: likewise.
    client.delete("/relais/members/node-a", None).await.unwrap();
    registered_again(&mut client, "node-a", Some(second)).await;

    let c = Clients::new(&node, "cai").await;
    eventually(Duration::from_secs(10), "serves again", || {
        let mut c = admin_clone(&c);
        async move { serves(&mut c).await.is_ok() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_the_desktop_stops_waiting_for_is_carried_to_its_end() {
    let etcd = EtcdProcess::start();
    // A long lease: the member keeps serving while etcd is frozen a moment.
    let node = member(&etcd, "node-a", 30);
    let mut c = Clients::new(&node, "cai").await;
    until_members(&c, &["node-a"], "node-a registered").await;
    let login = || pb::LoginRequest { informant_id: "ana".into(), skills: vec![support::skill("justice", 3)] };

    // etcd frozen: the login waits for its claim, and the desktop gives up.
    etcd.pause();
    let mut impatient = tonic::Request::new(login());
    impatient.set_timeout(Duration::from_millis(300));
    let gave_up = c.desk.login(impatient).await.unwrap_err();
    assert!(matches!(gave_up.code(), Code::DeadlineExceeded | Code::Cancelled), "{gave_up:?}");
    etcd.resume();

    // The informant ends up logged in, with an actor that answers: not an
    // id reserved for ever with nothing behind it (every login "already
    // exists", every request "not found").
    let request = pb::InformantRequest { informant_id: "ana".into() };
    eventually(Duration::from_secs(10), "ana is logged in and answers", || {
        let (mut c, request) = (admin_clone(&c), request.clone());
        async move {
            match c.desk.login(login()).await {
                Ok(_) => true,
                Err(s) if s.code() == Code::AlreadyExists => c.desk.get_informant(request).await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_joining_ends_the_start_at_once() {
    let etcd = EtcdProcess::start();
    let first = member(&etcd, "node-a", 10);
    until_members(&Clients::new(&first, "cai").await, &["node-a"], "the first node-a registered").await;
    // A second node-a waits for the first one's key (up to two TTLs, 21 s);
    // SIGTERM ends that wait.
    let mut second =
        NodeProcess::start(&["--etcd", &etcd.client_url, "--node-id", "node-a", "--lease-ttl-s", "10"], &[]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(second.terminate(Duration::from_secs(5)), Some(true), "{}", second.logs());
    assert!(second.logs().contains("stopped while starting"), "{}", second.logs());
}

/// (this member's id, the leader's id) as the etcd member at `url` says.
async fn etcd_status(url: &str) -> (u64, u64) {
    let mut client = etcd_client::Client::connect([url], None).await.unwrap();
    let status = client.status().await.unwrap();
    (status.header().unwrap().member_id(), status.leader())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_of_a_three_member_etcd_moves_no_member_loses_no_call_and_stops_no_routing() {
    let mut etcd = EtcdProcess::start_three();
    let endpoints = etcd.iter().map(|e| e.client_url.clone()).collect::<Vec<_>>().join(",");
    let start = |id: &str| {
        NodeProcess::start(
            &["--etcd", &endpoints, "--node-id", id, "--lease-ttl-s", "3"],
            &[("RUST_LOG", "info,ractor=warn,relais_node=debug")],
        )
    };
    let (a, b) = (start("node-a"), start("node-b"));
    let mut ca = Clients::new(&a, "cai").await;
    until_members(&ca, &["node-a", "node-b"], "both members").await;
    support::apply(&mut ca, vec![support::queue("justice", "justice", 1)]).await;
    let mut cb = Clients::new(&b, "cai").await;
    let leases = |r: &pb::ListMembersResponse| r.members.iter().map(|m| m.lease.clone()).collect::<Vec<_>>();
    let before = leases(&members(&mut ca).await.unwrap());

    let mut session = support::Session::open(&mut cb, "ana", vec![support::skill("justice", 3)]).await;
    support::offer_retrying(&mut ca, support::offer("before", "justice")).await;
    let (offer_id, _) = session.next_offer().await;
    cb.desk.accept_offer(pb::OfferReply { informant_id: "ana".into(), offer_id }).await.unwrap();
    cb.desk.finish_call(pb::FinishCallRequest { informant_id: "ana".into(), call_id: "before".into() }).await.unwrap();
    cb.desk.end_wrap_up(pb::InformantRequest { informant_id: "ana".into() }).await.ok();
    // Calls wait while the leader dies.
    cb.desk.pause(pb::PauseRequest { informant_id: "ana".into(), reason: "test".into() }).await.unwrap();
    let waiting = ["w1", "w2", "w3"];
    for id in waiting {
        support::offer_retrying(&mut ca, support::offer(id, "justice")).await;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }

    // Kill the leader (pre-vote on: one election round).
    let (_, leader) = etcd_status(&etcd[0].client_url).await;
    let mut leader_index = None;
    for (i, member) in etcd.iter().enumerate() {
        if etcd_status(&member.client_url).await.0 == leader {
            leader_index = Some(i);
        }
    }
    let killed_at = Instant::now();
    etcd[leader_index.expect("a leader")].kill();

    // Routing goes on through both members; gateways retry UNAVAILABLE
    // (for as long as desktops do below: on a loaded machine the election
    // and the queue's new claim have taken more than 5 s).
    // The waiting calls are all there, in their order, then the new one.
    loop {
        match cb.gateway.offer_call(support::offer("after", "justice")).await {
            Ok(_) => break,
            Err(e) if e.code() == tonic::Code::Unavailable && killed_at.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("offer after: {e:?}\nnode-a:\n{}\nnode-b:\n{}", a.logs(), b.logs()),
        }
    }
    let mut resumed = false;
    while !resumed {
        match cb.desk.resume(pb::InformantRequest { informant_id: "ana".into() }).await {
            Ok(_) => resumed = true,
            Err(e) if e.code() == tonic::Code::Unavailable && killed_at.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("resume: {e:?}"),
        }
    }
    for (n, expected) in waiting.iter().chain(&["after"]).enumerate() {
        let (offer_id, call_id) = session.next_offer().await;
        assert_eq!(&call_id, expected);
        if n == 0 {
            println!("first call after the leader's death routed after {:?}", killed_at.elapsed());
        }
        // A member whose lease renewal is late while etcd elects answers
        // UNAVAILABLE for a moment: a desktop asks again.
        let accept = pb::OfferReply { informant_id: "ana".into(), offer_id };
        support::retrying!("accept", cb.desk.accept_offer(accept.clone()));
        let finish = pb::FinishCallRequest { informant_id: "ana".into(), call_id };
        support::retrying!("finish", cb.desk.finish_call(finish.clone()));
        cb.desk.end_wrap_up(pb::InformantRequest { informant_id: "ana".into() }).await.ok();
    }

    // Nobody lost its lease: the same members under the same leases.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = members(&mut ca).await.unwrap();
    assert_eq!(ids(&after), ["node-a", "node-b"]);
    assert_eq!(leases(&after), before, "no member registered again");
}
