//! relais' load generator and simulator.
//!
//! It plays both sides of a relais node over the real gRPC API: a telephony gateway that offers calls
//! and hangs up when callers lose patience, and informants who log in, accept offers, talk for a drawn
//! handle time and finish their calls. Workloads ([`profile`]) run in simulated time, faster than the
//! wall clock ([`units`]); the [`Summary`] reports what callers experienced, converted back to
//! simulated time, beside queueing theory's prediction ([`erlang`]) when the workload allows one.
//!
//! Used by the live demo (`relais-loadgen --live`), by benchmarks and by chaos tests, in-process through
//! [`run`] / [`run_until`].
//!
//! Code map:
//! * `config`: [`Config`] and the command line [`Args`].
//! * `profile`: the workloads and the seeded arrival generator; `erlang`: Erlang C and Erlang A.
//! * `sim`: the run's phases; `gateway`: one call's life; `informant`: one informant's life;
//!   `board`: the simulator's view of its informants; `client`: connections, identity, targets and
//!   retries (failing over to the next target).
//! * `summary`: records and figures; `live`: progress bar and live view; `units`: time conversions.
//!
//! **Invariant:** the crate never reads the node's internals, only its public API, so it measures what
//! a real gateway and real informants would see.

#![forbid(unsafe_code)]

mod board;
mod client;
pub mod config;
pub mod erlang;
pub mod error;
mod gateway;
mod informant;
mod live;
pub mod profile;
mod sim;
pub mod summary;
pub mod units;

pub use board::StateTimes;
pub use client::Retry;
pub use config::{Args, Config};
pub use error::{Error, Result};
pub use live::ViewMode;
pub use profile::{Profile, ProfileKind, ProfileOverrides};
pub use sim::{run, run_profile, run_until};
pub use summary::Summary;
