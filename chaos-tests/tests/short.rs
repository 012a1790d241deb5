//! The short chaos suite (part of `make test`): one fault of each of four
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
