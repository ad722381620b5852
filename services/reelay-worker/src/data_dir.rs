//! The worker's data directory: its layout and the checks made before anything is written to it.
//!
//! `<data-dir>/state/` holds the sled database (attempt records and the event log),
//! `<data-dir>/outputs/<job-id>/` the outputs of each job until they are in the artifact store,
//! `<data-dir>/cache/` the input cache and `<data-dir>/inputs/<job-id>/` each attempt's input, a
//! hard link into the cache (same file system, so the link is cheap and marks the file in use). A path that is not a directory, or a
//! coordinator's data dir (a Reelay database right in it), is refused with a message that names it:
//! the worker would otherwise start with an empty state next to another server's files.

use std::path::{Path, PathBuf};

use reelay_store::StoreError;
use reelay_store::sled_store::database_in;

use crate::error::WorkerError;
use crate::event_log::EventLog;

/// The sled database, under the data dir.
pub const STATE_DIR: &str = "state";
/// Job outputs, under the data dir.
pub const OUTPUTS_DIR: &str = "outputs";
/// The input cache, under the data dir.
pub const CACHE_DIR: &str = "cache";
/// Each attempt's input, linked from the cache, under the data dir.
pub const INPUTS_DIR: &str = "inputs";

/// Checks `data_dir`, creates what is missing and opens the event log.
pub fn open(data_dir: &Path) -> Result<EventLog, WorkerError> {
    if data_dir.exists() && !data_dir.is_dir() {
        return Err(unusable(format!(
            "{} is not a directory: the worker's --data-dir must be a directory (it is created when \
             missing); move the file away or give another --data-dir",
            data_dir.display()
        )));
    }
    if let Some(tag) = database_in(data_dir) {
        return Err(unusable(format!(
            "{} holds a {tag} database (a coordinator's data directory?): give the worker its own \
             --data-dir",
            data_dir.display()
        )));
    }
    let outputs: PathBuf = data_dir.join(OUTPUTS_DIR);
    std::fs::create_dir_all(&outputs).map_err(|err| {
        unusable(format!(
            "cannot create {}: {err}; check the --data-dir and its permissions",
            outputs.display()
        ))
    })?;
    EventLog::open_dir(&data_dir.join(STATE_DIR))
}

fn unusable(message: String) -> WorkerError {
    WorkerError::Store(StoreError::Unusable(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_file_and_a_coordinator_dir_and_opens_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = open(&file).unwrap_err().to_string();
        assert!(
            err.contains("not a directory") && err.contains(&file.display().to_string()),
            "{err}"
        );

        let coordinator = dir.path().join("coordinator");
        std::fs::create_dir(&coordinator).unwrap();
        std::fs::write(
            coordinator.join(reelay_store::sled_store::MARKER_FILE),
            "reelay-coordinator:1\n",
        )
        .unwrap();
        let err = open(&coordinator).unwrap_err().to_string();
        assert!(err.contains("reelay-coordinator:1 database"), "{err}");
        assert!(
            !coordinator.join(OUTPUTS_DIR).exists(),
            "nothing written to it"
        );

        let fresh = dir.path().join("worker");
        drop(open(&fresh).unwrap());
        assert!(fresh.join(OUTPUTS_DIR).is_dir());
        assert!(database_in(&fresh.join(STATE_DIR)).is_some());
    }
}
