//! The relais node: one process that hosts queue and informant actors and
//! serves the public gRPC API (Gateway, Informant, Admin, health,
//! reflection).
//!
//! Layers, outside in:
//! - `server` builds the tonic server, its limits and its shutdown;
//! - `telemetry` sets up logs and traces (and carries trace context between
//!   members), `metrics` the metrics;
//! - `identity` is the one interceptor that decides a request's tenant and
//!   role;
//! - `services` validate requests and translate them into actor messages,
//!   or, for an actor another member owns, hand them to `forward`;
//! - `cluster` is the node's membership in etcd (when it has one) and the
//!   placement of actors over the members;
//! - `directory` is the one seam that says where an actor lives (today: in
//!   this process) and keeps the tenants' configuration;
//! - `peer` carries actor messages between nodes;
//! - `actors` host the routing state machines of `relais-routing` and carry
//!   out their effects.

#![forbid(unsafe_code)]

pub mod actors;
pub mod catalog;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod directory;
pub mod error;
pub mod forward;
pub mod identity;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod pseudonym;
pub mod server;
pub mod services;
pub mod telemetry;
pub mod validate;

pub use config::NodeConfig;
pub use error::{NodeError, Result};
pub use server::run;
