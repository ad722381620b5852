//! Sending a file to the coordinator: `GetUpload` says how much of it is stored (nothing, part, or
//! all), then `UploadInput` streams the rest in 1 MiB messages. A broken call is retried a few times
//! with backoff, each time from what `GetUpload` then says is stored (whole 8 MiB parts: the bytes
//! of an unfinished part are sent again).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use reelay_proto::v1;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use super::digest::{CHUNK, FileDigest};
use super::meter::Meter;
use crate::Ctx;
use crate::client::AuthChannel;
use crate::error::is_transient;

type Client = v1::job_service_client::JobServiceClient<AuthChannel>;

/// Broken calls in a row (without more bytes stored in between) that end the upload.
const MAX_FAILURES: u32 = 5;
/// The first pause after a broken call; it doubles each time.
const FIRST_PAUSE: Duration = Duration::from_millis(500);
/// Messages queued between the file and the call.
const QUEUE: usize = 4;

/// What sending did.
#[derive(Debug)]
pub(crate) struct Sent {
    pub(crate) upload: v1::Upload,
    /// The coordinator had it all already: nothing was sent.
    pub(crate) already: bool,
    /// Where the first call started (non-zero: a resume).
    pub(crate) resumed_from: u64,
}

/// Sends what the coordinator lacks of `file` (read from `path`) as upload `id`.
pub(crate) async fn send(
    ctx: &Ctx,
    path: &Path,
    file: &FileDigest,
    id: &str,
    meter: &Meter,
) -> anyhow::Result<Sent> {
    let mut client = ctx.conn.jobs();
    let mut failures = 0u32;
    // What the coordinator had stored at the last look; None before the first.
    let mut stored: Option<u64> = None;
    let mut resumed_from = None;
    loop {
        let found = match get(&mut client, id).await {
            Ok(found) => found,
            // Before the first answer a failure is reported at once (no server, wrong token).
            Err(status) if stored.is_some() && is_transient(&status) => {
                failures += 1;
                if failures >= MAX_FAILURES {
                    return Err(gave_up(status, file, stored.unwrap_or(0)));
                }
                pause(meter, failures, status.message()).await;
                continue;
            }
            Err(status) => {
                return Err(anyhow::Error::new(status)
                    .context(format!("asking the coordinator about upload {id}")));
            }
        };
        let offset = match found {
            None => 0,
            Some(upload) => {
                check_same(&upload, file)?;
                if upload.complete {
                    return Ok(Sent {
                        upload,
                        already: resumed_from.is_none(),
                        resumed_from: resumed_from.unwrap_or(0),
                    });
                }
                upload.received
            }
        };
        if stored.is_some_and(|before| offset > before) {
            failures = 0;
        }
        stored = Some(offset);
        if resumed_from.is_none() {
            resumed_from = Some(offset);
            if offset > 0 {
                meter.say(&format!(
                    "resuming the upload of {} at {} of {} (upload {id})",
                    file.name,
                    crate::format::size(offset),
                    crate::format::size(file.size)
                ));
            }
        }
        meter.restart_at(offset);
        match call(&mut client, path, file, id, offset, meter).await {
            Ok(upload) => {
                return Ok(Sent {
                    upload,
                    already: false,
                    resumed_from: resumed_from.unwrap_or(0),
                });
            }
            Err(CallError::Status(status)) if is_transient(&status) => {
                failures += 1;
                if failures >= MAX_FAILURES {
                    return Err(gave_up(status, file, offset));
                }
                pause(meter, failures, status.message()).await;
            }
            Err(CallError::Status(status)) => {
                return Err(
                    anyhow::Error::new(status).context(format!("uploading {}", path.display()))
                );
            }
            Err(CallError::Local(err)) => return Err(err),
        }
    }
}

/// The upload, or `None` when the coordinator has none by that id.
async fn get(client: &mut Client, id: &str) -> Result<Option<v1::Upload>, Status> {
    match client
        .get_upload(v1::GetUploadRequest { id: id.to_owned() })
        .await
    {
        Ok(response) => Ok(Some(response.into_inner())),
        Err(status) if status.code() == Code::NotFound => Ok(None),
        Err(status) => Err(status),
    }
}

/// The id is derived from name, size and hash, so a different upload under it is not ours.
fn check_same(upload: &v1::Upload, file: &FileDigest) -> anyhow::Result<()> {
    if upload.name == file.name && upload.size == file.size && upload.sha256 == file.sha256 {
        return Ok(());
    }
    anyhow::bail!(
        "the coordinator's upload {} is {:?} ({} bytes, SHA-256 {}), not this file ({:?}, {} \
         bytes, SHA-256 {})",
        upload.id,
        upload.name,
        upload.size,
        upload.sha256,
        file.name,
        file.size,
        file.sha256
    )
}

async fn pause(meter: &Meter, failures: u32, cause: &str) {
    let delay = FIRST_PAUSE.saturating_mul(1 << (failures - 1).min(5));
    meter.say(&format!(
        "the upload broke ({cause}); resuming in {} (try {} of {MAX_FAILURES})",
        crate::format::duration(delay),
        failures + 1
    ));
    tokio::time::sleep(delay).await;
}

fn gave_up(status: Status, file: &FileDigest, stored: u64) -> anyhow::Error {
    anyhow::Error::new(status).context(format!(
        "the upload of {} broke {MAX_FAILURES} times in a row; the coordinator keeps the {} it \
         stored: run the same command again to resume",
        file.name,
        crate::format::size(stored)
    ))
}

/// How one UploadInput call failed.
enum CallError {
    /// The coordinator (or the connection) said no.
    Status(Status),
    /// The file could not be read, or changed since it was hashed.
    Local(anyhow::Error),
}

/// One UploadInput call: the header, then the file from `offset`, read on a blocking thread.
async fn call(
    client: &mut Client,
    path: &Path,
    file: &FileDigest,
    id: &str,
    offset: u64,
    meter: &Meter,
) -> Result<v1::Upload, CallError> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let header = v1::UploadInputRequest {
        part: Some(v1::upload_input_request::Part::Header(v1::UploadHeader {
            name: file.name.clone(),
            size: file.size,
            sha256: file.sha256.clone(),
            id: id.to_owned(),
            offset,
        })),
    };
    // The queue is empty: the header always fits.
    if tx.try_send(header).is_err() {
        return Err(CallError::Local(anyhow::anyhow!(
            "the upload queue is full"
        )));
    }
    let reader = {
        let path = path.to_owned();
        let meter = meter.clone();
        let size = file.size;
        tokio::task::spawn_blocking(move || read_into(&path, offset, size, &tx, &meter))
    };
    match client.upload_input(ReceiverStream::new(rx)).await {
        Ok(response) => Ok(response.into_inner()),
        Err(status) => {
            // A file that could not be read explains the failure better than the server's answer
            // to a short stream. The reader ends as soon as the call drops the queue.
            if let Ok(Ok(Err(err))) = tokio::time::timeout(Duration::from_secs(2), reader).await {
                return Err(CallError::Local(err));
            }
            Err(CallError::Status(status))
        }
    }
}

/// Reads `path` from `offset` to `size` into the call's queue; stops quietly when the call ended.
fn read_into(
    path: &PathBuf,
    offset: u64,
    size: u64,
    tx: &mpsc::Sender<v1::UploadInputRequest>,
    meter: &Meter,
) -> anyhow::Result<()> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    file.seek(SeekFrom::Start(offset))
        .with_context(|| format!("reading {}", path.display()))?;
    let mut position = offset;
    while position < size {
        let want = usize::try_from(size - position).map_or(CHUNK, |left| left.min(CHUNK));
        let mut buffer = vec![0u8; want];
        let mut filled = 0;
        while filled < want {
            match file.read(&mut buffer[filled..]) {
                Ok(0) => anyhow::bail!(
                    "{} changed while it was uploaded: it ends at byte {} but had {size} bytes \
                     when it was hashed; upload it again",
                    path.display(),
                    position + filled as u64
                ),
                Ok(read) => filled += read,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => {
                    return Err(err).with_context(|| format!("reading {}", path.display()));
                }
            }
        }
        let message = v1::UploadInputRequest {
            part: Some(v1::upload_input_request::Part::Data(buffer.into())),
        };
        if tx.blocking_send(message).is_err() {
            // The call ended (answered or broke): what it says is what counts.
            return Ok(());
        }
        position += want as u64;
        meter.set(position);
    }
    Ok(())
}
