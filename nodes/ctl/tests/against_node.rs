//! relaisctl against a real node (its own code, in-process, over real gRPC)
//! and, for failures, the real binary.

#![allow(clippy::unwrap_used)]

use clap::Parser;
use relais_ctl::{Args, run};
use relais_node::NodeConfig;
use relais_proto::v1 as pb;

/// A node on a free loopback port with queue `justice` and one informant.
async fn node() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = NodeConfig { listen: addr, node_id: "ctl-test".into(), ..NodeConfig::default() };
    tokio::spawn(relais_node::server::serve(config, listener, std::future::pending()));
    let target = format!("http://{addr}");
    let channel = tonic::transport::Channel::from_shared(target.clone()).unwrap().connect().await.unwrap();
    let mut admin = pb::admin_client::AdminClient::new(channel.clone());
    let queue = pb::QueueConfig {
        id: "justice".into(),
        required_skills: vec![pb::Skill { name: "justice".into(), proficiency: 1 }],
        ..Default::default()
    };
    admin.apply_plan(pb::RoutingPlan { queues: vec![queue], informants: vec![], prune: false }).await.unwrap();
    let mut desk = pb::informant_client::InformantClient::new(channel);
    let skills = vec![pb::Skill { name: "justice".into(), proficiency: 3 }];
    desk.login(pb::LoginRequest { informant_id: "ana".into(), skills }).await.unwrap();
    target
}

fn args(target: &str, rest: &[&str]) -> Args {
    Args::parse_from(["relaisctl", "--target", target].iter().chain(rest))
}

#[tokio::test]
async fn members_and_stats_as_tables_and_json() {
    let target = node().await;

    let table = run(&args(&target, &["members"])).await.unwrap();
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("NODE"));
    let row = lines.next().unwrap();
    assert!(row.starts_with("ctl-test *"), "{table}");
    assert!(row.contains(target.trim_start_matches("http://")), "{table}");
    assert!(row.contains("serving"), "the member answers its health check: {table}");
    assert!(row.contains("serving  2 "), "it hosts one queue and one informant: {table}");
    assert!(table.contains("a single node without etcd"), "{table}");

    let json: serde_json::Value =
        serde_json::from_str(&run(&args(&target, &["--output", "json", "members"])).await.unwrap()).unwrap();
    assert_eq!(json["clustered"], false);
    assert_eq!(json["members"][0]["node_id"], "ctl-test");
    assert_eq!(json["members"][0]["health"], "serving");
    assert_eq!(json["members"][0]["actors"], serde_json::json!({"queues": 1, "informants": 1}));

    let table = run(&args(&target, &["stats"])).await.unwrap();
    let queue_row = table.lines().find(|l| l.starts_with("justice")).unwrap_or_else(|| panic!("{table}"));
    assert!(queue_row.ends_with("1/1"), "one of one informant available: {queue_row}");
    assert!(queue_row.contains("ctl-test"), "the row names its node: {queue_row}");
    let informant_row = table.lines().find(|l| l.starts_with("ana")).unwrap_or_else(|| panic!("{table}"));
    assert!(informant_row.contains("available"), "{informant_row}");

    let json: serde_json::Value =
        serde_json::from_str(&run(&args(&target, &["--output", "json", "stats"])).await.unwrap()).unwrap();
    assert_eq!(json["queues"][0]["queue_id"], "justice");
    assert_eq!(json["informants"][0]["state"], "available");
    assert_eq!(json["queues"][0]["node_id"], "ctl-test");
}

#[tokio::test]
async fn actors_of_a_single_node_all_live_on_it() {
    let target = node().await;

    let table = run(&args(&target, &["actors"])).await.unwrap();
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("TENANT  KIND"), "{table}");
    let queue = lines.next().unwrap();
    let words: Vec<&str> = queue.split_whitespace().collect();
    assert_eq!(words, ["cai", "queue", "justice", "ctl-test", "-", "0/0/0"], "{table}");
    let informant: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(informant, ["cai", "informant", "ana", "ctl-test", "-", "available"], "{table}");
    assert!(table.contains("1 queue(s) and 1 informant(s) hosted by 1 member(s)"), "{table}");

    let out = run(&args(&target, &["--output", "json", "actors", "--kind", "informant"])).await.unwrap();
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let actors = json["actors"].as_array().unwrap();
    assert_eq!(actors.len(), 1, "{json}");
    assert_eq!(actors[0]["kind"], "informant");
    assert_eq!(actors[0]["id"], "ana");
    assert_eq!(actors[0]["node_id"], "ctl-test");
    assert_eq!(actors[0]["address"], target.trim_start_matches("http://"));
    assert_eq!(actors[0]["epoch"], 0);
    assert_eq!(actors[0]["state"], "available");
    assert_eq!(actors[0]["waiting"], serde_json::Value::Null);

    let other = run(&args(&target, &["--tenant", "nope", "actors"])).await.unwrap_err();
    assert!(other.to_string().contains("tenant \"nope\" not found"), "{other}");
    assert!(Args::try_parse_from(["relaisctl", "actors", "--kind", "call"]).is_err());
}

#[test]
fn an_unreachable_node_is_a_clear_error_and_exit_status() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relaisctl"))
        .args(["--target", &format!("http://127.0.0.1:{port}"), "members"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("relaisctl: cannot reach http://127.0.0.1:"), "{stderr}");
}

#[path = "../../node/tests/support/etcd.rs"]
#[allow(dead_code)]
mod etcd;

/// A cluster member on a free loopback port, in this process.
async fn member(etcd_url: &str, id: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = NodeConfig {
        listen: addr,
        node_id: id.into(),
        etcd_endpoints: vec![etcd_url.into()],
        lease_ttl_s: 5,
        ..NodeConfig::default()
    };
    tokio::spawn(relais_node::server::serve(config, listener, std::future::pending()));
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_cover_every_member_of_a_cluster() {
    let etcd = etcd::EtcdProcess::start();
    let a = member(&etcd.client_url, "node-a").await;
    let b = member(&etcd.client_url, "node-b").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Ok(members) = run(&args(&a, &["members"])).await
            && members.contains("node-b")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "both members listed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The queue is created through node-a; ana logs in at node-b.
    let mut admin = pb::admin_client::AdminClient::new(
        tonic::transport::Channel::from_shared(a.clone()).unwrap().connect().await.unwrap(),
    );
    let queue = pb::QueueConfig {
        id: "justice".into(),
        required_skills: vec![pb::Skill { name: "justice".into(), proficiency: 1 }],
        ..Default::default()
    };
    admin.create_queue(queue).await.unwrap();
    let channel = tonic::transport::Channel::from_shared(b.clone()).unwrap().connect().await.unwrap();
    let mut desk = pb::informant_client::InformantClient::new(channel);
    let skills = vec![pb::Skill { name: "justice".into(), proficiency: 3 }];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while desk.login(pb::LoginRequest { informant_id: "ana".into(), skills: skills.clone() }).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "node-b serves");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Asked through node-a, relaisctl shows the queue once, on the member
    // that hosts it, and ana once, on hers; `locate` names the same members.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let json = loop {
        let out = run(&args(&a, &["--output", "json", "stats"])).await.unwrap();
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        if json["queues"].as_array().is_some_and(|q| q.len() == 1) || std::time::Instant::now() >= deadline {
            break json;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let queues = json["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 1, "{json}");
    assert_eq!(json["informants"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json["informants"][0]["informant_id"], "ana");
    assert_eq!(json["silent"].as_array().unwrap().len(), 0);
    let located = |target: &'static str, id: &'static str| {
        let a = a.clone();
        async move {
            let out = run(&args(&a, &["--output", "json", "locate", target, id])).await.unwrap();
            serde_json::from_str::<serde_json::Value>(&out).unwrap()["node_id"].as_str().unwrap().to_string()
        }
    };
    assert_eq!(located("--queue", "justice").await, queues[0]["node_id"].as_str().unwrap());
    assert_eq!(located("--informant", "ana").await, json["informants"][0]["node_id"].as_str().unwrap());
}

/// Waits until `target` lists `n` members.
async fn until_members(target: &str, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Ok(out) = run(&args(target, &["--output", "json", "members"])).await
            && serde_json::from_str::<serde_json::Value>(&out).unwrap()["members"].as_array().map(Vec::len) == Some(n)
        {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{n} members listed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actors_name_the_member_each_queue_and_informant_lives_on() {
    let etcd = etcd::EtcdProcess::start();
    let a = member(&etcd.client_url, "node-a").await;
    let b = member(&etcd.client_url, "node-b").await;
    until_members(&a, 2).await;
    until_members(&b, 2).await;
    // Queues created through node-a, informants logged in through node-b:
    // placement spreads both over the two members.
    let channel = |url: &str| tonic::transport::Channel::from_shared(url.to_string()).unwrap().connect_lazy();
    let mut admin = pb::admin_client::AdminClient::new(channel(&a));
    let queues = ["justice", "logement", "travail", "interieur", "ecoute", "famille"];
    let plan = queues
        .iter()
        .map(|id| pb::QueueConfig {
            id: (*id).into(),
            required_skills: vec![pb::Skill { name: (*id).into(), proficiency: 1 }],
            ..Default::default()
        })
        .collect();
    admin.apply_plan(pb::RoutingPlan { queues: plan, informants: vec![], prune: false }).await.unwrap();
    let mut desk = pb::informant_client::InformantClient::new(channel(&b));
    let informants: Vec<String> = (0..6).map(|i| format!("ana-{i}")).collect();
    for id in &informants {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let skills = vec![pb::Skill { name: "justice".into(), proficiency: 3 }];
        while let Err(e) = desk.login(pb::LoginRequest { informant_id: id.clone(), skills: skills.clone() }).await {
            assert!(std::time::Instant::now() < deadline, "{id} logs in: {e:?}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    // Every queue and informant is listed once, on the member that hosts
    // it (the one `locate` names), under a claim's epoch; the members
    // table counts what each hosts.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let json = loop {
        let out = run(&args(&a, &["--output", "json", "actors"])).await.unwrap();
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        if json["actors"].as_array().unwrap().len() == queues.len() + informants.len()
            || std::time::Instant::now() >= deadline
        {
            break json;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let actors = json["actors"].as_array().unwrap();
    assert_eq!(actors.len(), queues.len() + informants.len(), "{json}");
    assert_eq!(json["silent"].as_array().unwrap().len(), 0, "{json}");
    let mut hosted = std::collections::BTreeMap::<String, u64>::new();
    for (i, actor) in actors.iter().enumerate() {
        let (kind, id) = (actor["kind"].as_str().unwrap(), actor["id"].as_str().unwrap());
        assert_eq!(kind, if i < queues.len() { "queue" } else { "informant" }, "queues first: {json}");
        assert!(actor["epoch"].as_i64().unwrap() > 0, "a claim's epoch: {actor}");
        let node = actor["node_id"].as_str().unwrap();
        let located = run(&args(&b, &["--output", "json", "locate", &format!("--{kind}"), id])).await.unwrap();
        let located: serde_json::Value = serde_json::from_str(&located).unwrap();
        assert_eq!(located["node_id"], node, "{kind} {id}");
        *hosted.entry(node.to_string()).or_default() += 1;
    }
    let mut ids: Vec<&str> = actors[..queues.len()].iter().map(|q| q["id"].as_str().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), queues.len(), "each queue once: {json}");
    assert_eq!(hosted.len(), 2, "both members host actors: {json}");

    let members = run(&args(&b, &["--output", "json", "members"])).await.unwrap();
    let members: serde_json::Value = serde_json::from_str(&members).unwrap();
    for m in members["members"].as_array().unwrap() {
        let counts = &m["actors"];
        let total = counts["queues"].as_u64().unwrap() + counts["informants"].as_u64().unwrap();
        assert_eq!(Some(&total), hosted.get(m["node_id"].as_str().unwrap()), "{members}");
    }
    let table = run(&args(&a, &["actors", "--kind", "queue"])).await.unwrap();
    let kinds: Vec<&str> = table.lines().skip(1).filter_map(|l| l.split_whitespace().nth(1)).collect();
    assert_eq!(kinds[..queues.len()], ["queue"; 6], "{table}");
    assert!(!kinds.contains(&"informant"), "{table}");
}

#[tokio::test]
async fn drain_waits_for_the_calls_a_node_holds() {
    let target = node().await;
    let channel = tonic::transport::Channel::from_shared(target.clone()).unwrap().connect().await.unwrap();
    let mut gateway = pb::gateway_client::GatewayClient::new(channel);
    let offer =
        pb::OfferCallRequest { call_id: "c1".into(), queue_id: "justice".into(), priority: 1, ..Default::default() };
    gateway.offer_call(offer).await.unwrap();

    let unknown = run(&args(&target, &["drain", "no-such-node"])).await.unwrap_err();
    assert!(unknown.to_string().contains("no member"), "{unknown}");
    // The call is offered to ana and stays live: the drain gives up.
    let waited = run(&args(&target, &["drain", "ctl-test", "--timeout-s", "1"])).await.unwrap_err();
    assert!(waited.to_string().contains("still holds 1 live calls"), "{waited}");
    // Once the caller hangs up, nothing is left.
    gateway.hang_up(pb::HangUpRequest { call_id: "c1".into() }).await.unwrap();
    let done = run(&args(&target, &["drain", "ctl-test", "--timeout-s", "10"])).await.unwrap();
    assert!(done.starts_with("ctl-test drained: no live calls (1 informants still logged in)"), "{done}");
}

#[tokio::test]
async fn locate_names_the_member_that_serves_an_actor() {
    let target = node().await;
    let address = target.trim_start_matches("http://");

    let table = run(&args(&target, &["locate", "--queue", "justice"])).await.unwrap();
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("KIND"), "{table}");
    let row = lines.next().unwrap();
    assert!(row.starts_with("queue"), "{table}");
    assert!(row.contains("justice") && row.contains("ctl-test") && row.contains(address), "{table}");
    assert!(row.ends_with("yes"), "{table}");

    let out = run(&args(&target, &["--output", "json", "locate", "--informant", "ana"])).await.unwrap();
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["kind"], "informant");
    assert_eq!(json["id"], "ana");
    assert_eq!(json["node_id"], "ctl-test");
    assert_eq!(json["address"], address);
    assert_eq!(json["here"], true);

    let unknown = run(&args(&target, &["locate", "--call", "nope"])).await.unwrap_err();
    assert!(unknown.to_string().contains("call \"nope\" not found"), "{unknown}");
    // Exactly one target.
    assert!(Args::try_parse_from(["relaisctl", "locate"]).is_err());
    assert!(Args::try_parse_from(["relaisctl", "locate", "--queue", "a", "--call", "b"]).is_err());
}
