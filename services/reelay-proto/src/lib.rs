//! Reelay's wire contracts: the code generated from `proto/reelay/v1`, the descriptor set that
//! gRPC reflection serves, and the conversions between wire and domain (`reelay-core`) types.

pub mod auth;
pub mod codec;
pub mod convert;
pub mod limits;
pub mod net;
pub mod reflection;
pub mod tls;

/// Package `reelay.v1` (generated).
#[allow(
    unreachable_pub,
    missing_debug_implementations,
    clippy::unwrap_used,
    clippy::large_enum_variant
)]
pub mod v1 {
    tonic::include_proto!("reelay.v1");
}

/// Encoded `FileDescriptorSet` of `reelay.v1` (with its imports), for tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("reelay_descriptor");

pub use prost_types::Timestamp;

/// The most requests one `CreateJobs` call may carry; a larger batch is refused whole with
/// `INVALID_ARGUMENT`. Part of the contract: clients split longer lists into batches of this size.
pub const MAX_CREATE_JOBS: usize = 1000;
