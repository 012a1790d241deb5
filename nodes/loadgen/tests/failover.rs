//! The load generator against a cluster of two real members (the node's
//! own code, in-process, each on its own runtime, in a real etcd): when a
//! member crashes, the simulated informants it hosted log in again through
//! the other one, and the run goes on to a clean end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[path = "../../node/tests/support/etcd.rs"]
#[allow(dead_code)]
mod etcd;

use std::time::{Duration, Instant};

use relais_loadgen::{Config, ProfileKind, ProfileOverrides, run_until};
use support::RealNode;

const INFORMANTS: u32 = 8;

/// Waits until `check` holds, for ten seconds at most.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < Duration::from_secs(10), "{what} after 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_informants_of_a_member_that_crashes_log_in_again_through_the_other() {
    let etcd = etcd::EtcdProcess::start();
    let mut nodes = [RealNode::member(&etcd.client_url, "node-a"), RealNode::member(&etcd.client_url, "node-b")];
    for node in &nodes {
        until("both members listed", || async { node.members().await == 2 }).await;
    }
    // Short calls, one a simulated second, ten times faster than real time, with every member as a
    // target, until the test stops the run.
    let config = Config {
        targets: nodes.iter().map(|node| node.target.clone()).collect(),
        profile: ProfileKind::Poisson,
        overrides: ProfileOverrides {
            informants: Some(INFORMANTS),
            rate_per_hour: Some(3600.0),
            aht: Some(Duration::from_secs(3)),
            ..Default::default()
        },
        time_scale: 10.0,
        duration: Some(Duration::from_secs(3600)),
        call_id_prefix: Some("failover".to_owned()),
        ..Config::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(run_until(config, async {
        let _ = stopped.await;
    }));

    // Placement spreads the informants over both members.
    let start = Instant::now();
    let hosted = loop {
        let hosted = [nodes[0].hosted("cai").await.1, nodes[1].hosted("cai").await.1];
        if hosted.iter().sum::<u32>() == INFORMANTS {
            break hosted;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "every informant logged in after 10 s: {hosted:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The member hosting the most informants crashes.
    let victim = usize::from(hosted[1] > hosted[0]);
    let survivor = 1 - victim;
    println!("informants per member {hosted:?}: crashing node {victim}");
    let crashed_at = Instant::now();
    nodes[victim].crash();

    // Its informants log in again: the survivor ends up hosting them all.
    let survivor_node = &nodes[survivor];
    until("the survivor hosts every informant", || async { survivor_node.hosted("cai").await.1 == INFORMANTS }).await;
    println!("every informant on the survivor {:?} after the crash", crashed_at.elapsed());
    // Calls go on being answered.
    let (_, answered_before, _, _) = survivor_node.totals("cai").await;
    until("calls answered on the survivor", || async { survivor_node.totals("cai").await.1 > answered_before }).await;

    stop.send(()).unwrap();
    let summary = run.await.unwrap().unwrap();
    println!("{summary}");
    let informants = &summary.informants;
    assert_eq!(informants.logged_in, u64::from(INFORMANTS));
    assert!(informants.relogins >= u64::from(hosted[victim]), "{summary}");
    assert!(informants.relogins <= u64::from(INFORMANTS), "{summary}");
    assert!(summary.all.calls.answered > 0, "{summary}");
    // Everyone logged out at the end, through the member that is left.
    assert_eq!(survivor_node.logged_in("cai").await, 0);
}
