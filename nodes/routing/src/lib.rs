//! relais' routing rules, as plain types and state machines with no I/O.
//!
//! Nothing here knows about tokio, gRPC, actors or etcd. Time comes in as
//! `now_ms` arguments (milliseconds since the Unix epoch) and side effects go
//! out as values ([`queue::QueueEffect`], [`informant::InformantEffect`]) that
//! the node's actors carry out. That keeps every rule unit- and
//! property-testable, and lets the same machines run wherever an actor lives.
//!
//! The two machines talk through a small protocol (see ARCHITECTURE.md):
//! a queue *proposes* one of its calls to an available informant and holds
//! it; the informant accepts at most one proposal (it becomes an offer) and
//! refuses the rest. The informant alone decides what it holds, so it can never
//! hold two offers or calls; the queue alone decides a call's state, so a
//! call can never be connected twice.

#![forbid(unsafe_code)]

pub mod call;
pub mod config;
pub mod informant;
pub mod line;
pub mod pool;
pub mod queue;
pub mod skills;
pub mod stats;

pub use call::{CallEvent, CallEventKind, CallInfo, CallKey, EventLog};
pub use config::{ConfigError, QueueConfig, Selection};
pub use skills::{Requirement, SkillSet};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// Priorities run from 0 to this value; vulnerable calls rank above all.
pub const MAX_PRIORITY: u8 = 9;

/// Proficiencies run from 1 to this value.
pub const MAX_PROFICIENCY: u8 = 5;
