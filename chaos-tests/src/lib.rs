//! relais' chaos-test harness: a cluster of real `relais-node` and `etcd`
//! processes, a workload of gateways and informants over real gRPC that
//! records every request and event in a history, a seeded schedule of
//! faults, and a checker that judges the history alone.
//!
//! The harness only ever uses the public API (`relais-proto`) and the
//! processes' command lines; it is never linked by the nodes.

pub mod checker;
pub mod cluster;
pub mod history;
pub mod net;
pub mod report;
pub mod scenario;
pub mod workload;
