//! relais' public gRPC API, generated from `proto/relais/v1`, and the
//! nodes' internal one, generated from `proto/relais/peer/v1`.
//!
//! This crate holds generated code only; validation and mapping to domain
//! types live in the node.

#![forbid(unsafe_code)]

/// Version 1 of the API.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("relais.v1");

    /// Encoded `FileDescriptorSet` of the whole package, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("relais_v1_descriptor");
}

/// The service nodes use among themselves; not part of the public API.
pub mod peer {
    /// Version 1 of the internal service.
    pub mod v1 {
        #![allow(missing_docs, clippy::all, clippy::pedantic)]
        tonic::include_proto!("relais.peer.v1");
    }
}
