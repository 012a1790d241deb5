//! The short chaos suite (part of `make test`): one fault of each of five
//! kinds against a three-node cluster under the CAI-like peak, each run
//! checked from its history alone. Each must lose no call, book no
//! informant twice, keep the order and resume every stream with no gap,
//! and the fault must really have hit a queue's owner.

#![allow(clippy::unwrap_used)]

use chaos_tests::checker::Verdict;
use chaos_tests::scenario::{FaultKind, RunResult, Scenario, run};

/// One cluster at a time: the machine is small, and timings matter.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SEED: u64 = 4;

async fn play(kind: FaultKind) -> RunResult {
    let _turn = ONE_AT_A_TIME.lock().await;
    let out = std::env::temp_dir().join(format!("relais-chaos-short-{}", std::process::id()));
    let scenario = Scenario::of(kind, 1, 1.0);
    let result = run(&scenario, SEED, &out).await.unwrap();
    println!(
        "{}: {:?}, {} calls arrived, history {}",
        scenario.name,
        result.elapsed,
        result.calls_arrived,
        result.history.display()
    );
    result
}

/// The guarantees every scenario must keep.
fn assert_safe(verdict: &Verdict) {
    let summary = format!(
        "offered {} answered {} lost {} double {} order {} gaps {}; findings: {:#?}",
        verdict.offered,
        verdict.answered,
        verdict.lost,
        verdict.double_assignments + verdict.double_connects + verdict.double_ends,
        verdict.order_violations,
        verdict.stream_gaps,
        verdict.findings.iter().take(20).collect::<Vec<_>>()
    );
    println!("{summary}");
    assert!(verdict.offered > 20, "the workload ran: {summary}");
    assert!(verdict.answered > 10, "calls were answered: {summary}");
    assert_eq!(verdict.lost, 0, "{summary}");
    assert_eq!(verdict.double_assignments + verdict.double_connects + verdict.double_ends, 0, "{summary}");
    assert_eq!(verdict.order_violations, 0, "{summary}");
    assert_eq!(verdict.stream_gaps, 0, "{summary}");
    assert!(verdict.clean(), "{summary}");
}

/// The fault hit a node that owned a queue with calls waiting, and the
/// queues it hit routed again.
fn assert_hit_an_owner_with_waiting_calls(verdict: &Verdict, kind: &str) {
    let faults: Vec<_> = verdict.faults.iter().filter(|f| f.kind == kind).collect();
    assert!(!faults.is_empty(), "no {kind} fault happened: {:?}", verdict.faults);
    for fault in faults {
        assert!(fault.node.is_some() && !fault.queues.is_empty(), "{kind} hit no queue owner: {fault:?}");
        assert!(fault.waiting > 0, "{kind} hit an owner with no waiting call: {fault:?}");
        assert!(fault.recovery_ms.is_some(), "the queues {kind} hit never routed again: {fault:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_queue_owner() {
    let result = play(FaultKind::Kill).await;
    assert_safe(&result.verdict);
    assert_hit_an_owner_with_waiting_calls(&result.verdict, "kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_owner_paused_past_its_lease() {
    let result = play(FaultKind::Pause).await;
    assert_safe(&result.verdict);
    assert_hit_an_owner_with_waiting_calls(&result.verdict, "pause");
}

/// Plays a partition of `kind`: the run must keep the guarantees; returns
/// whether the partition could happen (it needs network namespaces, and is
/// reported unsupported, not faked, without them).
async fn play_partition(kind: FaultKind) -> Option<RunResult> {
    let result = play(kind).await;
    assert_safe(&result.verdict);
    if !result.backend.isolates_nodes() {
        assert!(!result.verdict.unsupported.is_empty(), "the partition is reported unsupported");
        return None;
    }
    assert_hit_an_owner_with_waiting_calls(&result.verdict, kind.name());
    Some(result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_owner_cut_from_etcd_past_its_lease() {
    play_partition(FaultKind::PartitionEtcd).await;
}

/// A member cut off from its peers (not from etcd) steps aside: its queues
/// are taken over by the members that reach each other while the cut
/// lasts. (Without that, they stayed on it until the link healed, served by
/// its own informants only.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_owner_cut_from_its_peers_steps_aside() {
    let Some(result) = play_partition(FaultKind::PartitionPeers).await else { return };
    for fault in result.verdict.faults.iter().filter(|f| f.kind == "partition-peers") {
        assert!(fault.ended_ms.is_some(), "the cut healed: {fault:?}");
        assert_eq!(
            fault.moved, fault.queues,
            "the others took over every queue it hit before the cut healed: {fault:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_drains_stops_and_starts_every_node() {
    let result = play(FaultKind::RollingRestart).await;
    assert_safe(&result.verdict);
    let steps: Vec<_> = result.verdict.faults.iter().filter(|f| f.kind == "rolling-restart").collect();
    let mut nodes: Vec<_> = steps.iter().filter_map(|f| f.node.clone()).collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "every node was restarted: {steps:?}");
    // A drain hands queues over whether or not calls wait in them at that
    // moment (with informants free, often none do): the steps must have
    // moved queues, and the safety checks above cover the calls in them.
    assert!(steps.iter().any(|f| !f.queues.is_empty()), "some restarted node owned queues: {steps:?}");
    assert!(steps.iter().all(|f| f.recovery_ms.is_some()), "every queue routed again: {steps:?}");
}
