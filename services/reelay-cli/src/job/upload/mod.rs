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
        upload = hash_and_send(ctx, path, show) => upload,
        Ok(()) = tokio::signal::ctrl_c() => Err(Interrupted(format!(
            "interrupted; the coordinator keeps what it stored of {}: run the same command again \
             to resume",
            path.display()
        ))
        .into()),
    }
}

async fn hash_and_send(ctx: &Ctx, path: &Path, show: Show) -> anyhow::Result<v1::Upload> {
    let file = hash(path, show).await?;
    let id = file.upload_id();
    let meter = Meter::new(show, format!("uploading {}", file.name), file.size, true);
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
    Ok(sent.upload)
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
