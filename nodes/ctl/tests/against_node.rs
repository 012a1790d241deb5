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
    assert!(table.contains("a single node without etcd"), "{table}");

    let json: serde_json::Value =
        serde_json::from_str(&run(&args(&target, &["--output", "json", "members"])).await.unwrap()).unwrap();
    assert_eq!(json["clustered"], false);
    assert_eq!(json["members"][0]["node_id"], "ctl-test");
    assert_eq!(json["members"][0]["health"], "serving");

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
