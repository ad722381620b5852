//! `reelay job download`: DownloadOutput to a file (or stdout), resumable, verified against the
//! SHA-256 that ListOutputs reports.
//!
//! A fresh download goes to a temporary file in the destination's directory, renamed into place
//! at the end, so a half-written file never carries the final name. `--resume` appends to the
//! destination itself from its current size (so it can be resumed again). A dropped stream is
//! resumed from the byte it stopped at.

mod local;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use reelay_proto::v1;
use sha2::{Digest, Sha256};

use self::local::{
    Destination, Sink, Start, append_to, destination, existing_size, hash_prefix, plan,
    temp_file_for, verify,
};
use crate::error::{AlreadyReported, Interrupted, is_transient};
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
        let kept = match (&sink, &destination) {
            (Sink::File(_), Destination::File(path)) => format!(
                "the bytes received so far are in {}: continue with --resume",
                path.display()
            ),
            _ => "nothing was kept".to_owned(),
        };
        tokio::select! {
            fetched = fetch(ctx, &args.id, &file, offset, &mut sink, &mut hasher) => fetched?,
            // Returning drops the sink, which removes a temporary file.
            Ok(()) = tokio::signal::ctrl_c() => {
                return Err(Interrupted(format!("interrupted; {kept}")).into());
            }
        }
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
    let files = super::show::list_outputs(ctx, id).await?;
    if let Some(file) = files.iter().find(|file| file.name == name) {
        return Ok(file.clone());
    }
    if files.is_empty() {
        bail!("{}", super::show::no_outputs_note(ctx, id).await);
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
        // Chunks can arrive faster than they are written: let Ctrl-C (a select! around the
        // download) be seen now and then.
        tokio::task::consume_budget().await;
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
