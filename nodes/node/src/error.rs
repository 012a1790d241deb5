//! The node's errors, and their one mapping to gRPC statuses.

use tonic::Status;

pub type Result<T, E = NodeError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    #[error("{what} {id:?} already exists")]
    AlreadyExists { what: &'static str, id: String },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unavailable(String),
    /// A concurrent change won; the client reads again and retries.
    #[error("{0}")]
    Aborted(String),
    /// Something that should not happen; the details stay in the log.
    #[error("internal: {0}")]
    Internal(String),
}

impl NodeError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument { field: field.into(), reason: reason.into() }
    }

    pub fn not_found(what: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound { what, id: id.into() }
    }

    pub fn exists(what: &'static str, id: impl Into<String>) -> Self {
        Self::AlreadyExists { what, id: id.into() }
    }

    pub fn precondition(message: impl Into<String>) -> Self {
        Self::FailedPrecondition(message.into())
    }
}

impl From<NodeError> for Status {
    fn from(err: NodeError) -> Self {
        match err {
            NodeError::InvalidArgument { .. } => Status::invalid_argument(err.to_string()),
            NodeError::NotFound { .. } => Status::not_found(err.to_string()),
            NodeError::AlreadyExists { .. } => Status::already_exists(err.to_string()),
            NodeError::FailedPrecondition(m) => Status::failed_precondition(m),
            NodeError::ResourceExhausted(m) => Status::resource_exhausted(m),
            NodeError::PermissionDenied(m) => Status::permission_denied(m),
            NodeError::Unavailable(m) => Status::unavailable(m),
            NodeError::Aborted(m) => Status::aborted(m),
            NodeError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

impl From<ractor::RactorErr<()>> for NodeError {
    fn from(err: ractor::RactorErr<()>) -> Self {
        Self::Unavailable(format!("actor unreachable: {err}"))
    }
}
