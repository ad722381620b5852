//! An attempt's files through the artifact store: its input staged into the node's cache before
//! the pipeline starts, its outputs uploaded after the pipeline exited 0.
//!
//! Both report as the attempt's progress (stage `staging` or `uploading`, percent, bytes, rate,
//! time left), both wait out a store that does not answer — saying so in the job's message — until
//! `--transfer-deadline`, and both resume after the worker restarts: a fetch from the bytes already
//! in its partial file, an upload from the last part stored (recorded in the attempt).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reelay_artifacts::fetch::{Expected, fetch_to_file};
use reelay_artifacts::local_read::file_stream;
use reelay_artifacts::meter::{Meter, human_bytes};
use reelay_artifacts::retry::Backoff;
use reelay_artifacts::writer::{PartWriter, WriteState};
use reelay_artifacts::{ArtifactError, Blobs, ObjectRef, keys, part_size_for};
use reelay_proto::v1;

use crate::cache::{alias_of, link_inputs};
use crate::runner::record;
use crate::supervisor::{RunControl, Supervisor};

/// Progress is recorded at most this often.
const REPORT_EVERY: Duration = Duration::from_millis(250);

/// How a transfer ended when it did not succeed.
#[derive(Debug)]
pub(crate) enum TransferEnd {
    /// The attempt was asked to stop.
    Stopped,
    /// The worker shuts down: the transfer resumes when it starts again.
    Detached,
    /// It failed for good: the job's error.
    Failed(String),
}

/// Where the attempt is in a transfer: what it records as the job's progress.
struct Progress<'a> {
    supervisor: &'a Supervisor,
    stage: &'static str,
    what: String,
    meter: Meter,
    last: Option<Instant>,
    /// Bytes of the earlier files of a transfer of several (added to what `at` is told).
    base: u64,
}

impl<'a> Progress<'a> {
    fn new(supervisor: &'a Supervisor, stage: &'static str, what: String, total: u64) -> Self {
        Progress {
            supervisor,
            stage,
            what,
            meter: Meter::new(total, 0, Instant::now()),
            last: None,
            base: 0,
        }
    }

    /// Notes that `done` bytes are moved in all; records it now and then (always when `force`).
    async fn at(&mut self, job: &mut v1::WorkerJob, done: u64, force: bool) {
        let done = self.base + done;
        let now = Instant::now();
        let moved = done.saturating_sub(self.meter.done());
        self.meter.add(moved, now);
        if !force
            && self
                .last
                .is_some_and(|last| now.duration_since(last) < REPORT_EVERY)
        {
            return;
        }
        self.last = Some(now);
        // `progress` stays the pipeline's (0 before it runs, its last value after): the transfer
        // has its own bytes, rate and time left.
        job.stage = self.stage.to_owned();
        job.fps = 0.0;
        job.eta_seconds = self.meter.eta_seconds().unwrap_or(0.0);
        job.transfer = Some(v1::Transfer {
            done_bytes: self.meter.done(),
            total_bytes: self.meter.total(),
            bytes_per_second: self.meter.rate(),
        });
        job.message = format!(
            "{} {}: {}%, {} of {}{}",
            self.stage,
            self.what,
            self.meter.percent(),
            human_bytes(self.meter.done() as f64),
            human_bytes(self.meter.total() as f64),
            match self.meter.rate() {
                rate if rate > 0.0 => format!(" at {}/s", human_bytes(rate)),
                _ => String::new(),
            }
        );
        record(self.supervisor, job, true, None, false).await;
    }

    /// Records that the store does not answer, and when the next try is.
    async fn waiting(
        &self,
        job: &mut v1::WorkerJob,
        err: &ArtifactError,
        delay: Duration,
        deadline: Instant,
    ) {
        let left = deadline.saturating_duration_since(Instant::now());
        job.message = format!(
            "{} {}: the artifact store does not answer ({err}); trying again in {}s, giving up in {}s",
            self.stage,
            self.what,
            delay.as_secs().max(1),
            left.as_secs()
        );
        record(self.supervisor, job, true, None, false).await;
    }
}

/// The store, once the coordinator said where it is.
async fn blobs(
    supervisor: &Supervisor,
    job: &mut v1::WorkerJob,
    control: &RunControl,
) -> Result<Arc<dyn Blobs>, TransferEnd> {
    if let Some(blobs) = supervisor.store.as_ref().and_then(|store| store.now()) {
        return Ok(blobs);
    }
    job.message = "waiting for the coordinator to say where the artifact store is".to_owned();
    record(supervisor, job, true, None, false).await;
    let Some(store) = &supervisor.store else {
        return Err(TransferEnd::Failed(
            "this worker runs without a coordinator, so it has no artifact store".to_owned(),
        ));
    };
    tokio::select! {
        blobs = store.get(&control.stop) => blobs.ok_or(TransferEnd::Stopped),
        () = control.detach.cancelled() => Err(TransferEnd::Detached),
    }
}

/// Waits `delay`; how the attempt was interrupted meanwhile, if it was.
async fn pause(control: &RunControl, delay: Duration) -> Result<(), TransferEnd> {
    tokio::select! {
        () = tokio::time::sleep(delay) => Ok(()),
        end = interrupted(control) => Err(end),
    }
}

/// Resolves when the attempt is stopped or the worker detaches from it.
async fn interrupted(control: &RunControl) -> TransferEnd {
    tokio::select! {
        () = control.stop.cancelled() => TransferEnd::Stopped,
        () = control.detach.cancelled() => TransferEnd::Detached,
    }
}

// === staging ===

/// Puts the attempt's inputs in the cache (fetching what is not there) and links them, side by
/// side, for the pipeline; the path of the first (`REELAY_INPUT`; its directory is
/// `REELAY_INPUT_DIR`), `None` for an attempt without inputs in the store.
pub(crate) async fn stage_input(
    supervisor: &Supervisor,
    job: &mut v1::WorkerJob,
    control: &RunControl,
) -> Result<Option<PathBuf>, TransferEnd> {
    let (Some(first), Some(object)) = (job.input.clone(), job.input_object.clone()) else {
        return Ok(None);
    };
    let inputs: Vec<(v1::InputFile, ObjectRef)> = std::iter::once((first.clone(), object))
        .chain(
            job.more_inputs
                .clone()
                .into_iter()
                .zip(job.more_objects.clone()),
        )
        .map(|(input, object)| (input, ObjectRef::from(object)))
        .collect();
    job.phase = v1::AttemptPhase::Staging as i32;
    let blobs = blobs(supervisor, job, control).await?;
    let total = inputs.iter().map(|(input, _)| input.size).sum();
    let what = match inputs.len() {
        1 => first.name.clone(),
        n => format!("{n} inputs"),
    };
    let mut progress = Progress::new(supervisor, "staging", what, total);
    let mut backoff = Backoff::new(supervisor.transfer_deadline, Instant::now());
    let mut cached = Vec::with_capacity(inputs.len());
    for (input, object) in &inputs {
        let path = stage_one(
            supervisor,
            job,
            control,
            &blobs,
            (input, object),
            &mut progress,
            &mut backoff,
        )
        .await?;
        progress.base += input.size;
        cached.push((path, input.name.clone()));
    }
    let dir = supervisor.input_dir(&job.job_id);
    let linked = tokio::task::spawn_blocking(move || link_inputs(&dir, &cached))
        .await
        .map_err(|err| TransferEnd::Failed(format!("staging: {err}")))?
        .map_err(|err| TransferEnd::Failed(format!("staging {}: {err}", first.uri)))?;
    progress.base = 0;
    progress.at(job, total, true).await;
    Ok(linked.into_iter().next())
}

/// One input into the cache: found there, or fetched; the cached file.
async fn stage_one(
    supervisor: &Supervisor,
    job: &mut v1::WorkerJob,
    control: &RunControl,
    blobs: &Arc<dyn Blobs>,
    (input, object): (&v1::InputFile, &ObjectRef),
    progress: &mut Progress<'_>,
    backoff: &mut Backoff,
) -> Result<PathBuf, TransferEnd> {
    let cache = &supervisor.cache;
    let deadline = supervisor.transfer_deadline;
    // Without a SHA-256 (an s3:// object), the key is the object's URI, size and entity tag.
    let (key, alias, known_sha) = if input.sha256.is_empty() {
        let info = loop {
            match blobs.head(object).await {
                Ok(info) => break info,
                Err(ArtifactError::NotFound(_)) => {
                    return Err(TransferEnd::Failed(format!(
                        "input not found: {}",
                        input.uri
                    )));
                }
                Err(err) if err.is_retryable() => {
                    let Some(delay) = backoff.next_delay(Instant::now()) else {
                        return Err(gave_up("staging", &input.uri, deadline, &err));
                    };
                    progress.waiting(job, &err, delay, backoff.deadline()).await;
                    pause(control, delay).await?;
                }
                Err(err) => {
                    return Err(TransferEnd::Failed(format!("staging {}: {err}", input.uri)));
                }
            }
        };
        let alias = alias_of(&input.uri, info.size, &info.etag);
        let sha = cache.alias(&alias);
        (
            sha.clone().unwrap_or_else(|| alias.clone()),
            Some(alias),
            sha,
        )
    } else {
        (
            input.sha256.to_ascii_lowercase(),
            None,
            Some(input.sha256.to_ascii_lowercase()),
        )
    };

    let lock = cache.fetch_lock(&key);
    let _fetching = tokio::select! {
        guard = lock.lock() => guard,
        end = interrupted(control) => return Err(end),
    };
    match known_sha.as_deref().and_then(|sha| cache.lookup(sha)) {
        Some(path) => {
            tracing::info!(job_id = %job.job_id, input = %input.uri, "input found in the node's cache");
            Ok(path)
        }
        None => {
            fetch(
                supervisor,
                job,
                control,
                blobs,
                object,
                input,
                &key,
                alias.as_deref(),
                progress,
                backoff,
            )
            .await
        }
    }
}

/// Fetches the input into the cache: resumed, verified, once more after a SHA-256 mismatch.
#[allow(clippy::too_many_arguments)]
async fn fetch(
    supervisor: &Supervisor,
    job: &mut v1::WorkerJob,
    control: &RunControl,
    blobs: &Arc<dyn Blobs>,
    object: &ObjectRef,
    input: &v1::InputFile,
    key: &str,
    alias: Option<&str>,
    progress: &mut Progress<'_>,
    backoff: &mut Backoff,
) -> Result<PathBuf, TransferEnd> {
    let cache = Arc::clone(&supervisor.cache);
    let size = input.size;
    tokio::task::spawn_blocking(move || cache.make_room(size))
        .await
        .map_err(|err| TransferEnd::Failed(format!("staging: {err}")))?
        .map_err(|err| TransferEnd::Failed(format!("staging {}: {err}", input.uri)))?;
    let partial = supervisor.cache.partial(key);
    let expected_sha = (!input.sha256.is_empty()).then(|| input.sha256.to_ascii_lowercase());
    let mut mismatches = 0;
    loop {
        let (done_tx, mut done_rx) = tokio::sync::watch::channel(0u64);
        let fetched = {
            let expected = Expected {
                size: input.size,
                sha256: expected_sha.as_deref(),
            };
            let mut report = |done| {
                done_tx.send_replace(done);
            };
            let fetching = fetch_to_file(blobs.as_ref(), object, &expected, &partial, &mut report);
            tokio::pin!(fetching);
            loop {
                tokio::select! {
                    result = &mut fetching => break result,
                    changed = done_rx.changed() => {
                        if changed.is_ok() {
                            let done = *done_rx.borrow_and_update();
                            progress.at(job, done, false).await;
                        }
                    }
                    end = interrupted(control) => return Err(end),
                }
            }
        };
        match fetched {
            Ok(sha256) => {
                let cache = Arc::clone(&supervisor.cache);
                let partial = partial.clone();
                let alias = alias.map(str::to_owned);
                return tokio::task::spawn_blocking(move || {
                    cache.admit(&partial, &sha256, alias.as_deref())
                })
                .await
                .map_err(|err| TransferEnd::Failed(format!("staging: {err}")))?
                .map_err(|err| TransferEnd::Failed(format!("staging {}: {err}", input.uri)));
            }
            Err(ArtifactError::Integrity(reason)) => {
                let _ = tokio::fs::remove_file(&partial).await;
                mismatches += 1;
                if mismatches >= 2 {
                    return Err(TransferEnd::Failed(format!(
                        "staging {}: the fetched input is not what was uploaded, twice ({reason})",
                        input.uri
                    )));
                }
                tracing::warn!(job_id = %job.job_id, input = %input.uri, %reason, "fetched input does not verify; fetching it again");
            }
            Err(ArtifactError::NotFound(_)) => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(TransferEnd::Failed(format!(
                    "input not found: {}",
                    input.uri
                )));
            }
            Err(err) if err.is_retryable() => {
                let Some(delay) = backoff.next_delay(Instant::now()) else {
                    return Err(gave_up(
                        "staging",
                        &input.uri,
                        supervisor.transfer_deadline,
                        &err,
                    ));
                };
                progress.waiting(job, &err, delay, backoff.deadline()).await;
                pause(control, delay).await?;
            }
            Err(err) => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(TransferEnd::Failed(format!("staging {}: {err}", input.uri)));
            }
        }
    }
}

fn gave_up(stage: &str, what: &str, deadline: Duration, err: &ArtifactError) -> TransferEnd {
    TransferEnd::Failed(format!(
        "{stage} {what}: the artifact store did not answer for {}s ({err}); gave up",
        deadline.as_secs()
    ))
}

// === uploading ===

/// Uploads the attempt's outputs (`files`) under `outputs/<job>/<attempt>/`,
/// resuming each from its last stored part; every one is complete in the store, with its size and
/// SHA-256, when this returns `Ok`.
pub(crate) async fn upload_outputs(
    supervisor: &Supervisor,
    job: &mut v1::WorkerJob,
    control: &RunControl,
    files: &[v1::OutputFile],
) -> Result<(), TransferEnd> {
    job.phase = v1::AttemptPhase::Uploading as i32;
    let blobs = blobs(supervisor, job, control).await?;
    // The plan: one upload per output, kept across restarts in the record.
    for file in files {
        if !job.uploads.iter().any(|upload| upload.name == file.name) {
            job.uploads.push(v1::OutputUpload {
                name: file.name.clone(),
                size: file.size,
                sha256: file.sha256.clone(),
                part_size: part_size_for(file.size),
                ..Default::default()
            });
        }
    }
    record(supervisor, job, true, None, true).await;
    let total: u64 = job.uploads.iter().map(|upload| upload.size).sum();
    let names = match job.uploads.len() {
        1 => job.uploads[0].name.clone(),
        n => format!("{n} outputs"),
    };
    let mut progress = Progress::new(supervisor, "uploading", names, total);
    let mut backoff = Backoff::new(supervisor.transfer_deadline, Instant::now());
    let dir = supervisor.output_dir(&job.job_id);
    for index in 0..job.uploads.len() {
        let mut restarted = false;
        loop {
            match upload_one(supervisor, job, control, &blobs, index, &dir, &mut progress).await {
                Ok(()) => break,
                Err(UploadError::Interrupted(end)) => return Err(end),
                // The store no longer knows the multipart write (it expired): start the file again.
                Err(UploadError::Store(ArtifactError::NotFound(reason)))
                    if !restarted && !job.uploads[index].upload_id.is_empty() =>
                {
                    tracing::warn!(job_id = %job.job_id, output = %job.uploads[index].name, %reason, "the store lost a multipart upload; starting the file again");
                    restarted = true;
                    let upload = &mut job.uploads[index];
                    upload.upload_id.clear();
                    upload.part_ids.clear();
                    upload.hasher.clear();
                }
                Err(UploadError::Store(err)) if err.is_retryable() => {
                    let Some(delay) = backoff.next_delay(Instant::now()) else {
                        let name = job.uploads[index].name.clone();
                        return Err(gave_up(
                            "uploading",
                            &name,
                            supervisor.transfer_deadline,
                            &err,
                        ));
                    };
                    progress.waiting(job, &err, delay, backoff.deadline()).await;
                    pause(control, delay).await?;
                }
                Err(UploadError::Store(err)) => {
                    let name = job.uploads[index].name.clone();
                    return Err(TransferEnd::Failed(format!("uploading {name}: {err}")));
                }
            }
        }
    }
    let done: u64 = job.uploads.iter().map(|upload| upload.size).sum();
    progress.at(job, done, true).await;
    Ok(())
}

enum UploadError {
    Interrupted(TransferEnd),
    Store(ArtifactError),
}

impl From<ArtifactError> for UploadError {
    fn from(err: ArtifactError) -> Self {
        UploadError::Store(err)
    }
}

/// Uploads output `index` from where its record says, recording each part stored.
async fn upload_one(
    supervisor: &Supervisor,
    job: &mut v1::WorkerJob,
    control: &RunControl,
    blobs: &Arc<dyn Blobs>,
    index: usize,
    dir: &std::path::Path,
    progress: &mut Progress<'_>,
) -> Result<(), UploadError> {
    let upload = job.uploads[index].clone();
    if upload.done {
        return Ok(());
    }
    let before: u64 = job.uploads[..index].iter().map(|u| u.size).sum();
    let key = keys::output(&job.job_id, job.attempt, &upload.name);
    let mut writer = if upload.upload_id.is_empty() {
        let writer = PartWriter::begin(Arc::clone(blobs), &key, upload.part_size).await?;
        save(&mut job.uploads[index], writer.state());
        record(supervisor, job, false, None, true).await;
        writer
    } else {
        PartWriter::resume(Arc::clone(blobs), write_state(&key, &upload))?
    };
    let path = dir.join(&upload.name);
    let disk = |err: std::io::Error| {
        ArtifactError::disk(&format!("reading the output {}", path.display()), &err)
    };
    let file = tokio::fs::File::open(&path).await.map_err(disk)?;
    let length = file.metadata().await.map_err(disk)?.len();
    if length != upload.size {
        return Err(UploadError::Store(ArtifactError::Integrity(format!(
            "output {} has {length} bytes now, {} when the pipeline ended: it changed",
            upload.name, upload.size
        ))));
    }
    let start = writer.state().stored();
    let mut chunks = file_stream(
        file.into_std().await,
        start..upload.size,
        format!("the output {}", path.display()),
    );
    loop {
        if control.stop.is_cancelled() {
            return Err(UploadError::Interrupted(TransferEnd::Stopped));
        }
        let Some(chunk) = chunks.next().await else {
            break;
        };
        let chunk = chunk?;
        let stored = tokio::select! {
            stored = writer.write(&chunk) => stored?,
            end = interrupted(control) => return Err(UploadError::Interrupted(end)),
        };
        if stored > 0 {
            save(&mut job.uploads[index], writer.state());
        }
        progress.at(job, before + writer.written(), false).await;
    }
    let sha256 = writer.seal().await?;
    save(&mut job.uploads[index], writer.state());
    if sha256 != upload.sha256 {
        let _ = writer.abort().await;
        job.uploads[index] = v1::OutputUpload {
            name: upload.name.clone(),
            size: upload.size,
            sha256: upload.sha256.clone(),
            part_size: upload.part_size,
            ..Default::default()
        };
        return Err(UploadError::Store(ArtifactError::Integrity(format!(
            "output {}: the bytes sent hash to {sha256}, the listing said {}: it changed",
            upload.name, upload.sha256
        ))));
    }
    let info = writer.complete().await?;
    if info.size != upload.size {
        return Err(UploadError::Store(ArtifactError::Integrity(format!(
            "output {}: the store holds {} bytes, not {}",
            upload.name, info.size, upload.size
        ))));
    }
    job.uploads[index].done = true;
    record(supervisor, job, false, None, true).await;
    Ok(())
}

fn save(upload: &mut v1::OutputUpload, state: &WriteState) {
    upload.upload_id.clone_from(&state.upload_id);
    upload.part_size = state.part_size;
    upload.part_ids.clone_from(&state.part_ids);
    upload.hasher.clone_from(&state.hasher);
}

fn write_state(key: &str, upload: &v1::OutputUpload) -> WriteState {
    WriteState {
        key: key.to_owned(),
        upload_id: upload.upload_id.clone(),
        part_size: upload.part_size,
        part_ids: upload.part_ids.clone(),
        hasher: upload.hasher.clone(),
    }
}
