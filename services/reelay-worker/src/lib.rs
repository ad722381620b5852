//! Reelay's worker.

pub mod executor;
