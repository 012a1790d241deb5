//! The public gRPC services. Each one validates its requests, reads the
//! caller's identity from the request's extensions (set by the identity
//! interceptor), and turns the request into actor messages, or, when
//! another member serves the request's actor, forwards the request to it
//! (`crate::forward`). No routing decision is taken here.

pub mod admin;
pub mod convert;
pub mod gateway;
pub mod informant;
pub mod locator;

use tonic::Status;

use crate::error::NodeError;

/// Converts a node result into a gRPC one.
pub(crate) fn grpc<T>(result: Result<T, NodeError>) -> Result<tonic::Response<T>, Status> {
    result.map(tonic::Response::new).map_err(Status::from)
}
