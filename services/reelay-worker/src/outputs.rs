//! A job's output directory: listing its files with size and SHA-256, and opening one safely.
//!
//! Outputs are the regular files at the top of `<data-dir>/outputs/<job-id>/`. Names are checked
//! ([`reelay_core::names::validate_output_name`]) and files are opened with `O_NOFOLLOW`, so no
//! request can read a file outside the job's directory, through `..` or a symlink.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use reelay_core::OutputFile;
use reelay_core::names::validate_output_name;
use sha2::{Digest, Sha256};

use crate::error::WorkerError;

/// The output directory of a job under the worker's data dir.
pub fn output_dir(data_dir: &Path, job_id: &str) -> PathBuf {
    data_dir.join(crate::data_dir::OUTPUTS_DIR).join(job_id)
}

/// Lists the regular files of `dir` with their size and SHA-256, sorted by name. Blocking.
pub fn scan(dir: &Path) -> Result<Vec<OutputFile>, WorkerError> {
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(err) => return Err(err.into()),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type()?.is_file() || validate_output_name(&name, "name").is_err() {
            continue;
        }
        let mut file = open_file(dir, &name)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            size += read as u64;
            hasher.update(&buffer[..read]);
        }
        files.push(OutputFile {
            name,
            size,
            sha256: hex::encode(hasher.finalize()),
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Opens output `name` of `dir` for reading, refusing names and links that leave the directory.
pub fn open_file(dir: &Path, name: &str) -> Result<File, WorkerError> {
    validate_output_name(name, "name")?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(dir.join(name))
        .map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => {
                WorkerError::Domain(reelay_core::Error::not_found("output", name.to_owned()))
            }
            _ => WorkerError::Domain(reelay_core::Error::invalid(
                "name",
                format!("{name:?} cannot be read: {err}"),
            )),
        })?;
    if !file.metadata()?.is_file() {
        return Err(WorkerError::Domain(reelay_core::Error::invalid(
            "name",
            format!("{name:?} is not a regular file"),
        )));
    }
    Ok(file)
}

/// Empties (creates) an attempt's output directory.
pub fn reset_dir(dir: &Path) -> Result<(), WorkerError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err.into()),
    }
    std::fs::create_dir_all(dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_regular_files_with_their_hash() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.txt"), b"hello").unwrap();
        std::fs::write(dir.path().join("a.txt"), b"").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        let files = scan(dir.path()).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a.txt", "b.txt"]);
        assert_eq!(files[1].size, 5);
        assert_eq!(
            files[1].sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }

    #[test]
    fn refuses_to_leave_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        for name in ["../x", "..", "/etc/passwd", "link", "a\0b"] {
            assert!(open_file(dir.path(), name).is_err(), "{name:?}");
        }
        assert!(matches!(
            open_file(dir.path(), "missing"),
            Err(WorkerError::Domain(reelay_core::Error::NotFound { .. }))
        ));
    }
}
