//! Reelay's wire contracts: the code generated from `proto/reelay/v1` and the descriptor set that
//! gRPC reflection serves. Nothing else lives here; domain types and conversions are in
//! `reelay-core`.

#![allow(unreachable_pub, missing_debug_implementations, clippy::unwrap_used)]

/// Package `reelay.v1`.
pub mod v1 {
    tonic::include_proto!("reelay.v1");
}

/// Encoded `FileDescriptorSet` of `reelay.v1` (with its imports), for tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("reelay_descriptor");

pub use prost_types::Timestamp;
