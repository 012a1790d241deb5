//! Helpers shared by the queue's integration tests: one queue, its calls
//! and its informants.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use relais_routing::call::CallInfo;
use relais_routing::pool::PoolEntry;
use relais_routing::queue::{QueueCore, QueueEffect};
use relais_routing::{QueueConfig, Requirement, SkillSet};

pub fn queue(now: u64) -> QueueCore {
    QueueCore::new(QueueConfig::new("justice", Requirement::new([("justice", 1)])), "ecoute".into(), now)
}

pub fn call(id: &str, priority: u8, arrived_ms: u64) -> CallInfo {
    CallInfo {
        call_id: id.into(),
        priority,
        vulnerable: false,
        language: "".into(),
        topic: "".into(),
        caller_pseudonym: "p".into(),
        attributes: Arc::new(BTreeMap::new()),
        arrived_ms,
    }
}

pub fn skills() -> SkillSet {
    SkillSet::new([("justice", 3)])
}

pub fn entry(id: &str, generation: u64) -> PoolEntry {
    PoolEntry { informant_id: id.into(), skills: skills(), idle_since_ms: 0, occupancy_permille: 0, generation }
}

/// The call proposed by `fx`, if any.
pub fn proposed(fx: &[QueueEffect]) -> Option<(Arc<str>, Arc<str>)> {
    fx.iter().find_map(|e| match e {
        QueueEffect::Propose { proposal, .. } => Some((proposal.call.call_id.clone(), proposal.offer_id.clone())),
        _ => None,
    })
}

/// Connects the next call `informant` is proposed once available.
pub fn take_next(q: &mut QueueCore, informant: &str, generation: u64, now: u64) -> Arc<str> {
    let fx = q.available(entry(informant, generation), now);
    let (call_id, offer_id) = proposed(&fx).expect("a call is proposed");
    q.proposal_answered(&call_id, &offer_id, informant, true, now);
    q.connect(&call_id, &offer_id, informant, now).expect("connects");
    call_id
}
