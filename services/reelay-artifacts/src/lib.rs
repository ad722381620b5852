//! Reelay's data path: files that travel with jobs through one artifact store.
//!
//! The store is the `object_store` crate's: a local directory (the embedded default, on the
//! coordinator) or S3 (any S3-compatible server). Reelay's own metadata stays in sled; the store
//! holds raw bytes under keys of [`keys`].
//!
//! # Layout
//! - [`blobs`]: the [`Blobs`] trait every part of Reelay reads and writes the store through — a
//!   ranged read and a resumable multipart write — and [`ObjectRef`].
//! - [`object`]: [`ObjectBlobs`], the store itself on `object_store` (S3, or a local directory with
//!   [`local_parts`] for its multipart writes and [`local_read`] for its reads, which workers use
//!   for their outputs too).
//! - [`remote`]: [`remote::CoordinatorBlobs`], a worker's way to the coordinator's store over the
//!   internal ArtifactService, and the server side of that service.
//! - [`location`]: the `--artifacts` URL and the S3 options (`AWS_*`).
//! - [`writer`]: [`writer::PartWriter`], a multipart write that checkpoints after each part (with the
//!   SHA-256 state), so an upload cut anywhere resumes from its last part.
//! - [`fetch`]: an object into a local file, resumed and verified.
//! - [`hash_lane`]: SHA-256 beside the bytes, in order (writes and fetches hash there).
//! - [`meter`]: bytes, rate and time left of a transfer. [`retry`]: waiting out an unreachable store.
//! - [`error`]: [`ArtifactError`] and its gRPC status.

pub mod blobs;
pub mod error;
pub mod fetch;
pub(crate) mod hash_lane;
pub mod keys;
pub(crate) mod local_parts;
pub mod local_read;
pub mod location;
pub mod meter;
pub mod object;
pub mod remote;
pub mod retry;
pub mod writer;

pub use blobs::{Blobs, ByteStream, ObjectInfo, ObjectRef};
pub use error::ArtifactError;
pub use location::{S3Options, StoreLocation};
pub use object::ObjectBlobs;

/// The size of a multipart part for an object of `size` bytes: 8 MiB, or more for objects over
/// 70 GiB, so no object needs more than 9,000 parts (S3 allows 10,000).
pub fn part_size_for(size: u64) -> u64 {
    const MIB: u64 = 1024 * 1024;
    const MIN: u64 = 8 * MIB;
    let needed = size.div_ceil(9_000);
    needed.div_ceil(MIB).max(1).saturating_mul(MIB).max(MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_8_mib_until_objects_get_huge() {
        assert_eq!(part_size_for(0), 8 << 20);
        assert_eq!(part_size_for(2 << 30), 8 << 20);
        let huge = 200u64 << 30;
        let part = part_size_for(huge);
        assert!(huge.div_ceil(part) <= 9_000, "{part}");
        assert_eq!(part % (1 << 20), 0);
    }
}
