//! `reelay job upload FILE`, and the upload behind `reelay job submit PIPELINE --upload FILE`: a
//! local file sent to the coordinator's artifact store, to be named by a job as
//! `input_uri = "upload:<id>"`.
//!
//! - `digest`: the file's name, size and SHA-256 (read once, streaming), and the upload id derived
//!   from them — so the same command run again after a cut or Ctrl-C resumes instead of starting
//!   over.
//! - `send`: `GetUpload`, then `UploadInput` from what is stored, retried with backoff.
//! - `meter`: progress on stderr (a bar on a terminal, a line per 10% elsewhere).
//!
//! [`upload_file`] is the one entry point for commands that upload.

mod digest;
mod meter;
mod send;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use reelay_proto::v1;

use crate::error::Interrupted;
use crate::{Ctx, format, json};

pub(crate) use self::digest::FileDigest;
use self::meter::Meter;
pub(crate) use self::meter::Show;

/// Files sent at once by an upload of several.
const FILES_AT_ONCE: usize = 3;

/// Hashing shows a line per 10% without a terminal only for files this big (smaller ones take a
/// moment).
const HASH_LINES_FROM: u64 = 256 << 20;

/// Flags of `reelay job upload`.
#[derive(Debug, Args)]
#[command(after_help = "\
Prints upload:<id>, the input a job names (JobSpec.input_uri); `reelay job submit PIPELINE --upload
FILE` uploads and submits in one go. The id comes from the file's name, size and SHA-256: the same
command run again resumes an upload that was cut, and sends nothing for a file already uploaded.

Examples:
  reelay job upload clip.mov
  uri=$(reelay job upload clip.mov -q)
  reelay job upload clip.mov -o json | jq -r .id")]
pub struct UploadArgs {
    /// The file to upload.
    pub(crate) file: PathBuf,
    /// Print only `upload:<id>`, and no progress.
    #[arg(long, short = 'q')]
    pub(crate) quiet: bool,
}

pub(crate) async fn run(ctx: &Ctx, args: UploadArgs) -> anyhow::Result<ExitCode> {
    let show = if args.quiet {
        Show::Nothing
    } else {
        Show::Auto
    };
    let upload = upload_file(ctx, &args.file, show).await?;
    if ctx.json() {
        json::print_line(&json::upload(&upload))?;
    } else if args.quiet {
        crate::out::line(format_args!("upload:{}", upload.id))?;
    } else {
        crate::out::line(format_args!(
            "upload:{} {} ({}, sha256 {})",
            upload.id,
            upload.name,
            format::size(upload.size),
            upload.sha256
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Uploads the file at `path` (or finds it already uploaded, or resumes it) and returns the
/// complete upload. Progress and a closing line go to stderr as `show` says; Ctrl-C stops it with
/// exit code 130 and a note that the same command resumes.
pub(crate) async fn upload_file(ctx: &Ctx, path: &Path, show: Show) -> anyhow::Result<v1::Upload> {
    tokio::select! {
        sent = hash_and_send(ctx, path, show, None) => sent.map(|sent| sent.upload),
        Ok(()) = tokio::signal::ctrl_c() => Err(Interrupted(format!(
            "interrupted; the coordinator keeps what it stored of {}: run the same command again \
             to resume",
            path.display()
        ))
        .into()),
    }
}

/// Uploads several files, a few at once, with one overall progress; the uploads in the order of
/// `paths`. The first failure ends the command (what the others stored stays: running it again
/// resumes them).
pub(crate) async fn upload_files(
    ctx: &Ctx,
    paths: &[PathBuf],
    show: Show,
) -> anyhow::Result<Vec<v1::Upload>> {
    use futures::{StreamExt, TryStreamExt};
    let total: u64 = paths
        .iter()
        .map(|path| std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0))
        .sum();
    let overall = Meter::new(
        show,
        format!("uploading {} files", paths.len()),
        total,
        true,
    );
    let sending = futures::stream::iter(paths)
        .map(|path| {
            let overall = &overall;
            async move {
                hash_and_send(ctx, path, Show::Nothing, Some(overall))
                    .await
                    .map_err(|err| err.context(format!("uploading {}", path.display())))
            }
        })
        .buffered(FILES_AT_ONCE)
        .try_collect::<Vec<_>>();
    let uploads = tokio::select! {
        uploads = sending => uploads,
        Ok(()) = tokio::signal::ctrl_c() => Err(Interrupted(
            "interrupted; the coordinator keeps what it stored: run the same command again to \
             resume".to_owned(),
        )
        .into()),
    };
    overall.finish();
    let sent = uploads?;
    if show == Show::Auto {
        eprintln!("{}", summary(&sent, total, &overall));
    }
    Ok(sent.into_iter().map(|sent| sent.upload).collect())
}

/// The line after several uploads: what was sent, and what the coordinator had already.
fn summary(sent: &[send::Sent], total: u64, overall: &Meter) -> String {
    let before = sent.iter().filter(|sent| sent.already).count();
    let count = sent.len();
    if before == count {
        return format!(
            "all {count} files were uploaded before ({}): nothing sent",
            format::size(total)
        );
    }
    let sent_bytes: u64 = sent
        .iter()
        .filter(|sent| !sent.already)
        .map(|sent| sent.upload.size.saturating_sub(sent.resumed_from))
        .sum();
    let mut line = format!(
        "uploaded {} file{} ({} sent) in {} at {}/s",
        count - before,
        if count - before == 1 { "" } else { "s" },
        format::size(sent_bytes),
        format::duration(overall.elapsed()),
        format::size(overall.rate() as u64)
    );
    if before > 0 {
        line.push_str(&format!(
            "; {before} {} uploaded before (not sent again)",
            if before == 1 { "was" } else { "were" }
        ));
    }
    line
}

async fn hash_and_send(
    ctx: &Ctx,
    path: &Path,
    show: Show,
    overall: Option<&Meter>,
) -> anyhow::Result<send::Sent> {
    let file = hash(path, show).await?;
    let id = file.upload_id();
    let label = format!("uploading {}", file.name);
    let meter = match overall {
        Some(overall) => overall.child(label, file.size),
        None => Meter::new(show, label, file.size, true),
    };
    let sent = send::send(ctx, path, &file, &id, &meter).await;
    meter.finish();
    let sent = sent?;
    if show == Show::Auto {
        if sent.already {
            eprintln!(
                "{} ({}) is already uploaded: upload:{id}",
                file.name,
                format::size(file.size)
            );
        } else {
            let resumed = match sent.resumed_from {
                0 => String::new(),
                from => format!(", resumed at {}", format::size(from)),
            };
            eprintln!(
                "uploaded {} ({}) in {} at {}/s{resumed}: upload:{id}",
                file.name,
                format::size(file.size),
                format::duration(meter.elapsed()),
                format::size(meter.rate() as u64)
            );
        }
    }
    Ok(sent)
}

/// The file's digest, read on a blocking thread, with its own progress.
async fn hash(path: &Path, show: Show) -> anyhow::Result<FileDigest> {
    let name = digest::file_name(path)?;
    let size = std::fs::metadata(path)
        .map(|metadata| metadata.len())
        .unwrap_or(0);
    let meter = Meter::new(
        show,
        format!("hashing {name}"),
        size,
        size >= HASH_LINES_FROM,
    );
    let reading = {
        let path = path.to_owned();
        let meter = meter.clone();
        tokio::task::spawn_blocking(move || digest::hash_file(&path, |done| meter.set(done)))
    };
    let digest = reading.await;
    meter.finish();
    digest.map_err(|err| anyhow::anyhow!("hashing {}: {err}", path.display()))?
}
