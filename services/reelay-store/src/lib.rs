//! Reelay's storage interface and its sled engine.
//!
//! Both servers keep their state in named, ordered key-value trees. They need little of an
//! engine: point reads, ordered scans (both directions), an atomic batch of writes across trees,
//! and a flush that makes what was written durable. That is the whole [`Store`] trait, so the
//! engine can be replaced without touching the services.
//!
//! # Layout
//! - [`Store`]: the interface; [`WriteBatch`]: writes applied atomically across trees.
//! - [`sled_store`]: the sled 0.34 engine, with a schema check at open so a damaged or foreign
//!   database is an error, never a silent empty state.
//! - `intent`: how a small batch is stored as one value before its writes (cheaper than sled's
//!   atomic batch, just as atomic).
//! - [`keys`]: helpers for ordered keys (big-endian numbers, prefixes).

mod intent;
pub mod keys;
pub mod sled_store;

use std::fmt;
use std::ops::Bound;

pub use sled_store::SledStore;

/// A key or value as stored.
pub type Bytes = Vec<u8>;

/// An entry from a scan.
pub type Entry = (Bytes, Bytes);

/// Errors of the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The engine failed (I/O, corruption it detected).
    #[error("storage error: {0}")]
    Engine(String),
    /// The data directory cannot be used as it is; the message says why and what to do.
    #[error("{0}")]
    Unusable(String),
    /// A tree name that the store was not opened with (a programming error).
    #[error("unknown tree {0:?}")]
    UnknownTree(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Scan direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Reverse,
}

/// Writes to several trees, applied all together or not at all.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    ops: Vec<(&'static str, Bytes, Option<Bytes>)>,
}

impl WriteBatch {
    pub fn put(&mut self, tree: &'static str, key: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.ops.push((tree, key.into(), Some(value.into())));
    }

    pub fn delete(&mut self, tree: &'static str, key: impl Into<Bytes>) {
        self.ops.push((tree, key.into(), None));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Appends another batch's writes after this one's.
    pub fn extend(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
    }

    pub fn ops(&self) -> impl Iterator<Item = (&'static str, &[u8], Option<&[u8]>)> {
        self.ops
            .iter()
            .map(|(tree, key, value)| (*tree, key.as_slice(), value.as_deref()))
    }
}

/// The storage interface of Reelay's servers.
pub trait Store: Send + Sync + fmt::Debug + 'static {
    fn get(&self, tree: &'static str, key: &[u8]) -> Result<Option<Bytes>>;

    /// Entries with keys between `from` and `to`, in `direction` order.
    fn scan<'a>(
        &'a self,
        tree: &'static str,
        from: Bound<Bytes>,
        to: Bound<Bytes>,
        direction: Direction,
    ) -> Result<Box<dyn Iterator<Item = Result<Entry>> + Send + 'a>>;

    /// Applies every write of `batch` atomically. Not durable until [`Store::flush`].
    fn commit(&self, batch: &WriteBatch) -> Result<()>;

    /// Makes every committed write durable (blocking: call it from a blocking thread).
    fn flush(&self) -> Result<()>;

    /// Entries whose key starts with `prefix`.
    fn scan_prefix<'a>(
        &'a self,
        tree: &'static str,
        prefix: &[u8],
        direction: Direction,
    ) -> Result<Box<dyn Iterator<Item = Result<Entry>> + Send + 'a>> {
        let (from, to) = keys::prefix_range(prefix);
        self.scan(tree, from, to, direction)
    }

    /// The last entry whose key starts with `prefix`.
    fn last_with_prefix(&self, tree: &'static str, prefix: &[u8]) -> Result<Option<Entry>> {
        self.scan_prefix(tree, prefix, Direction::Reverse)?
            .next()
            .transpose()
    }
}
