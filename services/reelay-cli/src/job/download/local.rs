//! The local side of a download: where the bytes go (`-O`), where to start (`--force`,
//! `--resume`), writing them, and checking the result.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

/// Where the bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Destination {
    Stdout,
    File(PathBuf),
}

/// Where a download to a file starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Start {
    /// Into a temporary file, renamed over the destination at the end.
    Fresh,
    /// Appending to the destination, which already holds this many bytes.
    Append(u64),
    /// The destination already holds every byte: only verify.
    Complete,
}

/// The bytes' destination while they arrive.
#[derive(Debug)]
pub(super) enum Sink {
    Stdout(std::io::Stdout),
    Temp(NamedTempFile),
    File(File),
}

impl Sink {
    pub(super) fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout(stdout) => stdout.write_all(data),
            Sink::Temp(temp) => temp.write_all(data),
            Sink::File(file) => file.write_all(data),
        }
    }

    /// Flushes the bytes to disk and gives the file's final path (`None` for stdout). A
    /// temporary file is renamed to the destination; without `force` an existing file there is
    /// not replaced.
    pub(super) fn finish(
        self,
        destination: &Destination,
        force: bool,
    ) -> anyhow::Result<Option<PathBuf>> {
        let path = match destination {
            Destination::Stdout => None,
            Destination::File(path) => Some(path.clone()),
        };
        match (self, &path) {
            (Sink::Stdout(mut stdout), _) => {
                stdout.flush()?;
            }
            (Sink::File(file), Some(path)) => {
                file.sync_all()
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            (Sink::Temp(temp), Some(path)) => {
                temp.as_file()
                    .sync_all()
                    .with_context(|| format!("writing {}", path.display()))?;
                let persisted = if force {
                    temp.persist(path)
                } else {
                    temp.persist_noclobber(path)
                };
                persisted.map_err(|err| {
                    anyhow::Error::new(err.error).context(format!(
                        "moving the download to {} (use --force to replace a file there)",
                        path.display()
                    ))
                })?;
            }
            (Sink::File(_) | Sink::Temp(_), None) => {
                debug_assert!(false, "a file sink has a file destination");
            }
        }
        Ok(path)
    }
}

/// `-O` as given: nothing means `./NAME`, `-` stdout, a directory (existing, or written with a
/// trailing `/`) means `DIR/NAME`.
pub(super) fn destination(arg: Option<&str>, name: &str) -> Destination {
    match arg {
        None => Destination::File(PathBuf::from(name)),
        Some("-") => Destination::Stdout,
        Some(path) if path.ends_with('/') || Path::new(path).is_dir() => {
            Destination::File(Path::new(path).join(name))
        }
        Some(path) => Destination::File(PathBuf::from(path)),
    }
}

pub(super) fn existing_size(path: &Path) -> anyhow::Result<Option<u64>> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
        Ok(_) => bail!("{} exists and is not a regular file", path.display()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
    }
}

/// Where to start, given the destination's size (if it exists) and the output's size.
pub(super) fn plan(
    existing: Option<u64>,
    remote: u64,
    resume: bool,
    force: bool,
) -> Result<Start, String> {
    match existing {
        // --resume writes into the destination itself, so that a cut can be resumed again.
        None if resume => Ok(Start::Append(0)),
        None => Ok(Start::Fresh),
        Some(_) if force => Ok(Start::Fresh),
        Some(local) if resume && local < remote => Ok(Start::Append(local)),
        Some(local) if resume && local == remote => Ok(Start::Complete),
        Some(local) if resume => Err(format!(
            "it has {local} bytes, more than the {remote} of the output: it is not a partial \
             download of it; use --force to replace it"
        )),
        Some(_) => Err(
            "the file exists; use --force to replace it, or --resume to continue a partial \
             download"
                .to_owned(),
        ),
    }
}

/// A temporary file next to `path`, so that the final rename stays on one file system.
pub(super) fn temp_file_for(path: &Path) -> anyhow::Result<NamedTempFile> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".part");
    // The usual permissions of a new file (less the umask), not the 0600 of temporary files.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    builder
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))
}

pub(super) fn append_to(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Feeds the first `size` bytes of `path` to `hasher`.
pub(super) fn hash_prefix(path: &Path, size: u64, hasher: &mut Sha256) -> anyhow::Result<()> {
    if size == 0 {
        return Ok(());
    }
    let file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut limited = file.take(size);
    let mut buffer = vec![0; 64 * 1024];
    let mut read = 0;
    loop {
        let n = limited
            .read(&mut buffer)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        read += n as u64;
    }
    if read != size {
        bail!("{} shrank while being read", path.display());
    }
    Ok(())
}

/// Whether the hash matches the recorded one; `None` when none was recorded.
pub(super) fn verify(expected: &str, actual: &str) -> Option<bool> {
    if expected.is_empty() {
        return None;
    }
    Some(expected.trim().eq_ignore_ascii_case(actual))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_refuses_to_overwrite_and_resumes_from_the_size() {
        assert_eq!(plan(None, 100, false, false), Ok(Start::Fresh));
        assert_eq!(plan(None, 100, true, false), Ok(Start::Append(0)));
        assert!(
            plan(Some(10), 100, false, false)
                .unwrap_err()
                .contains("--force")
        );
        assert_eq!(plan(Some(10), 100, false, true), Ok(Start::Fresh));
        assert_eq!(plan(Some(40), 100, true, false), Ok(Start::Append(40)));
        assert_eq!(plan(Some(100), 100, true, false), Ok(Start::Complete));
        assert!(
            plan(Some(101), 100, true, false)
                .unwrap_err()
                .contains("not a partial")
        );
    }

    #[test]
    fn destinations() {
        assert_eq!(
            destination(None, "a.mp4"),
            Destination::File("a.mp4".into())
        );
        assert_eq!(destination(Some("-"), "a.mp4"), Destination::Stdout);
        assert_eq!(
            destination(Some("out/"), "a.mp4"),
            Destination::File("out/a.mp4".into())
        );
        assert_eq!(
            destination(Some("b.mp4"), "a.mp4"),
            Destination::File("b.mp4".into())
        );
        let dir = tempfile::tempdir().unwrap();
        let dir_str = dir.path().to_str().unwrap();
        assert_eq!(
            destination(Some(dir_str), "a.mp4"),
            Destination::File(dir.path().join("a.mp4"))
        );
    }

    #[test]
    fn verification_ignores_case_and_skips_unknown_hashes() {
        let hash = hex::encode(Sha256::digest(b"step 1\n"));
        assert_eq!(verify(&hash.to_uppercase(), &hash), Some(true));
        assert_eq!(
            verify(&hash, &hex::encode(Sha256::digest(b"step 2\n"))),
            Some(false)
        );
        assert_eq!(verify("", &hash), None);
    }

    #[test]
    fn a_resumed_hash_covers_the_bytes_already_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part");
        std::fs::write(&path, b"hello ").unwrap();
        let mut hasher = Sha256::new();
        hash_prefix(&path, 6, &mut hasher).unwrap();
        hasher.update(b"world");
        assert_eq!(
            hex::encode(hasher.finalize()),
            hex::encode(Sha256::digest(b"hello world"))
        );
        let mut short = Sha256::new();
        assert!(hash_prefix(&path, 7, &mut short).is_err());
    }

    #[test]
    fn fresh_downloads_land_by_rename_and_do_not_clobber() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        let mut sink = Sink::Temp(temp_file_for(&path).unwrap());
        sink.write(b"data").unwrap();
        let saved = sink
            .finish(&Destination::File(path.clone()), false)
            .unwrap();
        assert_eq!(saved.as_deref(), Some(path.as_path()));
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
        let mut again = Sink::Temp(temp_file_for(&path).unwrap());
        again.write(b"other").unwrap();
        assert!(
            again
                .finish(&Destination::File(path.clone()), false)
                .is_err()
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
