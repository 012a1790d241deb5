//! The load generator's errors: what stops a run before it can produce a summary.
//!
//! Failures of single calls or informants are not errors: they are counted in the summary, because a
//! load generator must keep going when the system under test misbehaves.

/// Why a run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is inconsistent or out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The target is not a valid gRPC endpoint address.
    #[error("invalid target address `{target}`: {source}")]
    InvalidTarget {
        /// The address given.
        target: String,
        /// Why tonic refused it.
        source: tonic::transport::Error,
    },
    /// The node refused or could not be reached to apply the routing plan.
    #[error("applying the routing plan failed: {0}")]
    ApplyPlan(Box<tonic::Status>),
    /// Not a single informant could log in, so no call could ever be answered.
    #[error("no informant could log in (first failure: {0})")]
    NoInformant(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
