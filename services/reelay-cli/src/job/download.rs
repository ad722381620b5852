//! `reelay job download`: DownloadOutput to a file (or stdout), resumable, verified against the
//! SHA-256 that ListOutputs reports.
//!
//! A fresh download goes to a temporary file in the destination's directory, renamed into place
//! at the end, so a half-written file never carries the final name. `--resume` appends to the
//! destination itself from its current size (so it can be resumed again). A dropped stream is
//! resumed from the byte it stopped at.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use reelay_proto::v1;
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use crate::error::{AlreadyReported, is_transient};
use crate::reconnect::{self, Backoff};
use crate::{Ctx, json};

/// Flags of `reelay job download`.
#[derive(Debug, Args)]
#[command(after_help = "\
The file is saved as ./NAME unless -O says otherwise, and its SHA-256 is checked against the one
the server recorded; on a mismatch the file is kept, an error is printed and the exit code is 1.

Examples:
  reelay job download 0193a1b2-7c4e-7d10-9a0b-2f6c1e3d4a5b count.txt
  reelay job download 0193a1b2-7c4e-7d10-9a0b-2f6c1e3d4a5b movie.mp4 -O /srv/out/ --resume
  reelay job download 0193a1b2-7c4e-7d10-9a0b-2f6c1e3d4a5b count.txt -O - | wc -l")]
pub struct DownloadArgs {
    /// The job's id.
    pub(crate) id: String,
    /// The output's name, as `reelay job outputs ID` lists it.
    pub(crate) name: String,
    /// Where to save it: a file, a directory (the file keeps its name) or `-` for stdout.
    /// (`-o` is taken by --output, the format.)
    #[arg(long = "output-file", short = 'O', value_name = "PATH|-")]
    pub(crate) output_file: Option<String>,
    /// Replace the destination if it exists.
    #[arg(long, short = 'f', conflicts_with = "resume")]
    pub(crate) force: bool,
    /// Continue a partial download: keep the bytes of the existing destination and fetch the rest.
    #[arg(long, short = 'c')]
    pub(crate) resume: bool,
}

/// Where the bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Destination {
    Stdout,
    File(PathBuf),
}

/// Where a download to a file starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Into a temporary file, renamed over the destination at the end.
    Fresh,
    /// Appending to the destination, which already holds this many bytes.
    Append(u64),
    /// The destination already holds every byte: only verify.
    Complete,
}

pub(crate) async fn run(ctx: &Ctx, args: DownloadArgs) -> anyhow::Result<ExitCode> {
    let file = find_output(ctx, &args.id, &args.name).await?;
    let destination = destination(args.output_file.as_deref(), &file.name);
    let mut hasher = Sha256::new();
    let (mut sink, offset) = match &destination {
        Destination::Stdout => {
            if args.resume {
                bail!("--resume needs a file to continue; it cannot be used with -O -");
            }
            (Sink::Stdout(std::io::stdout()), 0)
        }
        Destination::File(path) => {
            let existing = existing_size(path)?;
            let start = plan(existing, file.size, args.resume, args.force)
                .map_err(|reason| anyhow::anyhow!("{}: {reason}", path.display()))?;
            let offset = match start {
                Start::Fresh => 0,
                Start::Append(size) => size,
                Start::Complete => file.size,
            };
            let sink = match start {
                Start::Fresh => Sink::Temp(temp_file_for(path)?),
                Start::Append(_) | Start::Complete => {
                    hash_prefix(path, offset, &mut hasher)?;
                    Sink::File(append_to(path)?)
                }
            };
            (sink, offset)
        }
    };
    if offset < file.size {
        fetch(ctx, &args.id, &file, offset, &mut sink, &mut hasher).await?;
    }
    let actual = hex::encode(hasher.finalize());
    let verified = verify(&file.sha256, &actual);
    let saved = sink.finish(&destination, args.force)?;
    if verified == Some(false) {
        eprintln!(
            "error: sha256 mismatch for {}: the server recorded {}, the saved bytes hash to \
             {actual}",
            file.name, file.sha256
        );
        if let Some(path) = &saved {
            eprintln!(
                "hint: the file is kept at {} for inspection; do not use it. Download it again \
                 with --force",
                path.display()
            );
        }
        return Err(AlreadyReported.into());
    }
    let check = match verified {
        Some(_) => "sha256 ok",
        None => "sha256 not checked: the server recorded none",
    };
    match &saved {
        Some(path) if ctx.json() => json::print_line(&serde_json::json!({
            "name": file.name,
            "path": path.display().to_string(),
            "size": file.size,
            "sha256": actual,
            "verified": verified == Some(true),
        }))?,
        Some(path) => crate::out::line(format_args!(
            "saved {} ({} bytes, {check})",
            path.display(),
            file.size
        ))?,
        None => eprintln!(
            "sent {} to stdout ({} bytes, {check})",
            file.name, file.size
        ),
    }
    Ok(ExitCode::SUCCESS)
}

async fn find_output(ctx: &Ctx, id: &str, name: &str) -> anyhow::Result<v1::OutputFile> {
    let files = ctx
        .conn
        .jobs()
        .list_outputs(v1::ListOutputsRequest { id: id.to_owned() })
        .await
        .context(format!("listing the outputs of job {id}"))?
        .into_inner()
        .files;
    if let Some(file) = files.iter().find(|file| file.name == name) {
        return Ok(file.clone());
    }
    if files.is_empty() {
        bail!("job {id} has no outputs (yet)");
    }
    let names: Vec<&str> = files.iter().map(|file| file.name.as_str()).collect();
    bail!(
        "job {id} has no output named {name:?}; it has: {}",
        names.join(", ")
    )
}

/// How one stream of chunks ended.
enum StreamEnd {
    /// Every byte arrived.
    Done,
    /// The connection dropped: resume from the current position.
    Dropped(String),
}

/// Reads the stream from `offset` into `sink`, resuming from the last byte after a drop.
async fn fetch(
    ctx: &Ctx,
    id: &str,
    file: &v1::OutputFile,
    offset: u64,
    sink: &mut Sink,
    hasher: &mut Sha256,
) -> anyhow::Result<()> {
    let bar = (!ctx.json() && std::io::stderr().is_terminal()).then(|| progress_bar(file, offset));
    let say = |text: &str| match &bar {
        Some(bar) => bar.suspend(|| eprintln!("{text}")),
        None => eprintln!("{text}"),
    };
    let mut client = ctx.conn.jobs();
    let mut position = offset;
    let mut backoff = Backoff::new();
    let result = loop {
        let request = v1::DownloadOutputRequest {
            id: id.to_owned(),
            name: file.name.clone(),
            offset: position,
        };
        let end = match client.download_output(request).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                read_chunks(
                    &mut stream,
                    file,
                    &mut position,
                    sink,
                    hasher,
                    bar.as_ref(),
                    &mut backoff,
                )
                .await
            }
            // Only once bytes have arrived is a failure worth retrying; before, it is reported.
            Err(status) if position > offset && is_transient(&status) => {
                Ok(StreamEnd::Dropped(status.message().to_owned()))
            }
            Err(status) => Err(anyhow::Error::new(status)),
        };
        match end {
            Ok(StreamEnd::Done) => break Ok(()),
            Err(err) => break Err(err.context(format!("downloading {}", file.name))),
            Ok(StreamEnd::Dropped(cause)) => {
                if !reconnect::wait(&mut backoff, &cause, say).await {
                    let next = if matches!(sink, Sink::File(_)) {
                        "continue it with --resume"
                    } else {
                        "nothing was kept; try again, with --resume to keep what arrives"
                    };
                    break Err(anyhow::anyhow!(
                        "the download of {} stopped at byte {position} of {} ({cause}); {next}",
                        file.name,
                        file.size
                    ));
                }
            }
        }
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    result
}

async fn read_chunks(
    stream: &mut tonic::Streaming<v1::DataChunk>,
    file: &v1::OutputFile,
    position: &mut u64,
    sink: &mut Sink,
    hasher: &mut Sha256,
    bar: Option<&ProgressBar>,
    backoff: &mut Backoff,
) -> anyhow::Result<StreamEnd> {
    loop {
        let chunk = match stream.message().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) if *position == file.size => return Ok(StreamEnd::Done),
            Ok(None) => {
                return Ok(StreamEnd::Dropped(format!(
                    "the stream ended at byte {position} of {}",
                    file.size
                )));
            }
            Err(status) if is_transient(&status) => {
                return Ok(StreamEnd::Dropped(status.message().to_owned()));
            }
            Err(status) => return Err(status.into()),
        };
        backoff.reset();
        if chunk.offset != *position {
            bail!(
                "the server sent bytes at offset {}, expected {position}",
                chunk.offset
            );
        }
        let end = *position + chunk.data.len() as u64;
        if end > file.size {
            bail!(
                "the server sent {end} bytes or more of a file of {} bytes: the output changed \
                 since it was listed",
                file.size
            );
        }
        sink.write(&chunk.data)
            .with_context(|| format!("writing {}", file.name))?;
        hasher.update(&chunk.data);
        *position = end;
        if let Some(bar) = bar {
            bar.set_position(end);
        }
    }
}

fn progress_bar(file: &v1::OutputFile, offset: u64) -> ProgressBar {
    let bar = ProgressBar::new(file.size);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(file.name.clone());
    bar.set_position(offset);
    bar
}

/// The bytes' destination while they arrive.
#[derive(Debug)]
enum Sink {
    Stdout(std::io::Stdout),
    Temp(NamedTempFile),
    File(File),
}

impl Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout(stdout) => stdout.write_all(data),
            Sink::Temp(temp) => temp.write_all(data),
            Sink::File(file) => file.write_all(data),
        }
    }

    /// Flushes the bytes to disk and gives the file's final path (`None` for stdout). A
    /// temporary file is renamed to the destination; without `force` an existing file there is
    /// not replaced.
    fn finish(self, destination: &Destination, force: bool) -> anyhow::Result<Option<PathBuf>> {
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
fn destination(arg: Option<&str>, name: &str) -> Destination {
    match arg {
        None => Destination::File(PathBuf::from(name)),
        Some("-") => Destination::Stdout,
        Some(path) if path.ends_with('/') || Path::new(path).is_dir() => {
            Destination::File(Path::new(path).join(name))
        }
        Some(path) => Destination::File(PathBuf::from(path)),
    }
}

fn existing_size(path: &Path) -> anyhow::Result<Option<u64>> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
        Ok(_) => bail!("{} exists and is not a regular file", path.display()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
    }
}

/// Where to start, given the destination's size (if it exists) and the output's size.
fn plan(existing: Option<u64>, remote: u64, resume: bool, force: bool) -> Result<Start, String> {
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
fn temp_file_for(path: &Path) -> anyhow::Result<NamedTempFile> {
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

fn append_to(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Feeds the first `size` bytes of `path` to `hasher`.
fn hash_prefix(path: &Path, size: u64, hasher: &mut Sha256) -> anyhow::Result<()> {
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
fn verify(expected: &str, actual: &str) -> Option<bool> {
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
