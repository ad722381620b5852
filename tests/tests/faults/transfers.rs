//! The campaign's transfers: files uploaded to the coordinator's artifact store while it is being
//! killed, jobs that stage them and upload outputs twice their size while workers are killed, and
//! the check that the store holds exactly what the jobs list — no torn object, no duplicate.
//!
//! - The harness uploads [`UPLOADS`] files, overlapping, spread over the fault phase, through a
//!   proxy of its own throttled to [`UPLOAD_RATE`] (so a coordinator kill lands in the middle of
//!   one), resuming each from `GetUpload` after every cut, as the CLI does; then it creates
//!   [`RELAYS_PER_UPLOAD`] `relay` jobs on each.
//! - The workers reach the store through the registration proxy, throttled too
//!   ([`TRANSFER_RATE`]): staging and output uploads take seconds, and the campaign's
//!   planned [`TransferFault`]s (each kind twice, [`plan_faults`]) kill -9 the worker, or the
//!   coordinator (which is the store), of a job whose transfer is under way, or the coordinator
//!   while the harness uploads ([`under_way`]), each as soon as such a transfer is seen.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reelay_proto::v1;
use reelay_tests::TestCluster;
use reelay_tests::artifacts::{local_objects, random_bytes, unfinished_writes, upload_messages};

use super::{Journal, Rng, client, sha256};

/// Files uploaded during the campaign.
pub const UPLOADS: usize = 4;
/// `relay` jobs on each upload (the second on a node may find the input in its cache).
pub const RELAYS_PER_UPLOAD: usize = 2;
/// Bytes a second per connection and direction through the registration proxy (the workers'
/// staging and output uploads).
pub const TRANSFER_RATE: u64 = 12 << 20;
/// Bytes a second through the harness's upload proxy: an upload takes 1.5–5 s.
pub const UPLOAD_RATE: u64 = 8 << 20;
/// How long an upload call runs before a coordinator kill may cut it: long enough for its first
/// 8 MiB part to be stored, so that it resumes past the start.
const UPLOAD_UNDER_WAY: Duration = Duration::from_millis(1200);

/// A busybox pipeline: its input, twice, into relay.bin.
pub const RELAY_PIPELINE: &str = r#"
[[pipeline]]
name = "relay"
description = "writes its input twice to relay.bin"
image = "reelay/busybox:latest"
pull = "never"
input_required = true
grace_seconds = 2
resources = { cpus = 0.5, memory_mb = 64 }
command = ["sh", "-c", """
set -eu
cat "$REELAY_INPUT" "$REELAY_INPUT" > "$REELAY_OUTPUT_DIR/relay.bin"
echo "::progress 100 relayed"
"""]
"#;

/// A file the campaign uploads.
#[derive(Debug, Clone)]
pub struct PlannedUpload {
    pub index: usize,
    /// The upload id, chosen by the harness (a UUID) so that a cut upload resumes.
    pub id: String,
    pub name: String,
    pub data: Arc<Vec<u8>>,
}

/// A `relay` job of the campaign.
#[derive(Debug, Clone)]
pub struct PlannedRelay {
    pub index: usize,
    pub request_id: String,
    pub upload: usize,
}

impl PlannedRelay {
    pub fn spec(&self, upload: &PlannedUpload, max_attempts: u32) -> v1::JobSpec {
        v1::JobSpec {
            pipeline: "relay".into(),
            input_uri: format!("upload:{}", upload.id),
            max_attempts,
            ..Default::default()
        }
    }

    /// The bytes of relay.bin.
    pub fn output(upload: &PlannedUpload) -> Vec<u8> {
        [upload.data.as_slice(), upload.data.as_slice()].concat()
    }
}

/// The uploads (12–40 MiB each) and relay jobs of the campaign seeded `seed`.
pub fn plan(seed: u64) -> (Vec<PlannedUpload>, Vec<PlannedRelay>) {
    let mut rng = Rng(seed ^ 0x7A45_F3E5);
    let uploads: Vec<PlannedUpload> = (0..UPLOADS)
        .map(|index| {
            let size = (12 << 20) + rng.below(28 << 20) as usize;
            let id = format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                rng.next() as u32,
                rng.next() as u16,
                rng.below(0x1000),
                rng.below(0x1000),
                rng.next() & 0xFFFF_FFFF_FFFF
            );
            PlannedUpload {
                index,
                id,
                name: format!("take-{index}.bin"),
                data: Arc::new(random_bytes(size, seed ^ index as u64)),
            }
        })
        .collect();
    let relays = (0..UPLOADS * RELAYS_PER_UPLOAD)
        .map(|index| PlannedRelay {
            index,
            request_id: format!("fault-campaign-{seed}-relay-{index}"),
            upload: index / RELAYS_PER_UPLOAD,
        })
        .collect();
    (uploads, relays)
}

/// Uploads `upload` through `url` as a resuming client does: asks `GetUpload` where it stands,
/// sends the rest, and starts over from the answer after any failure. The upload, and how often
/// it resumed after a cut.
async fn upload_resumably(
    url: &str,
    upload: &PlannedUpload,
    transfers: &Mutex<Transfers>,
    journal: &Journal,
) -> (v1::Upload, u32) {
    let started = Instant::now();
    let mut calls: u32 = 0;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "upload {} could not be finished in 150 s",
            upload.index
        );
        if let Some(mut client) = client(url).await {
            let request = v1::GetUploadRequest {
                id: upload.id.clone(),
            };
            let offset = match client.get_upload(request).await {
                Ok(found) if found.get_ref().complete => {
                    return (found.into_inner(), calls.saturating_sub(1));
                }
                Ok(found) => Some(found.into_inner().received),
                Err(status) if status.code() == tonic::Code::NotFound => Some(0),
                Err(_) => None,
            };
            if let Some(offset) = offset {
                calls += 1;
                if calls > 1 {
                    journal.say(format!(
                        "upload {} resumed at {offset} of {} bytes (call {calls})",
                        upload.index,
                        upload.data.len()
                    ));
                }
                let messages = upload_messages(&upload.name, &upload.data, &upload.id, offset);
                (transfers.lock().unwrap().uploading).insert(upload.index, Instant::now());
                match client.upload_input(futures::stream::iter(messages)).await {
                    Ok(done) if done.get_ref().complete => {
                        return (done.into_inner(), calls - 1);
                    }
                    Ok(partial) => panic!("an upload answered incomplete: {partial:?}"),
                    Err(status)
                        if status.code() == tonic::Code::InvalidArgument
                            && !status.message().contains("resume with") =>
                    {
                        panic!("upload {} refused: {status}", upload.index)
                    }
                    Err(_) => {}
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Creates a job, retrying with its request id until the coordinator answers; its id.
async fn create(url: &str, spec: v1::JobSpec, request_id: &str) -> String {
    let started = Instant::now();
    loop {
        if let Some(mut client) = client(url).await {
            let request = v1::CreateJobRequest {
                spec: Some(spec.clone()),
                request_id: request_id.to_owned(),
            };
            match client.create_job(request).await {
                Ok(created) => return created.into_inner().id,
                Err(status) if status.code() == tonic::Code::InvalidArgument => {
                    panic!("job {request_id} refused: {status}")
                }
                Err(_) => {}
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "job {request_id} could not be created for 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the campaign's transfers are doing now, shared between the uploader and the schedule.
#[derive(Debug, Default)]
pub struct Transfers {
    /// The relay jobs created so far.
    pub relays: Vec<String>,
    /// The harness's uploads under way (by index) and when their current call began.
    pub uploading: BTreeMap<usize, Instant>,
    /// How often an upload resumed after a cut.
    pub resumed: u32,
}

/// Uploads every file through `upload_url`, each after a seeded delay (so that they overlap and
/// spread over the fault phase), then creates its relay jobs at `url`; each relay job's id is
/// added to `transfers` as soon as it exists. The ids by relay index.
#[allow(clippy::too_many_arguments)]
pub async fn upload_and_submit(
    url: String,
    upload_url: String,
    uploads: Vec<PlannedUpload>,
    relays: Vec<PlannedRelay>,
    max_attempts: u32,
    seed: u64,
    transfers: Arc<Mutex<Transfers>>,
    journal: Journal,
) -> Vec<String> {
    let mut rng = Rng(seed ^ 0x0B10_AD5E);
    let delays: Vec<Duration> = uploads.iter().map(|_| rng.millis(500, 25_000)).collect();
    let each = uploads.iter().zip(delays).map(|(upload, delay)| {
        let (url, upload_url, relays, transfers, journal) =
            (&url, &upload_url, &relays, &transfers, &journal);
        async move {
            tokio::time::sleep(delay).await;
            let (stored, resumed) = upload_resumably(upload_url, upload, transfers, journal).await;
            {
                let mut transfers = transfers.lock().unwrap();
                transfers.uploading.remove(&upload.index);
                transfers.resumed += resumed;
            }
            assert_eq!(
                (stored.size, stored.sha256.as_str()),
                (upload.data.len() as u64, sha256(&upload.data).as_str()),
                "upload {} is stored as another file",
                upload.index
            );
            journal.say(format!(
                "upload {} complete: {} bytes",
                upload.index,
                upload.data.len()
            ));
            let mut ids = Vec::new();
            for relay in relays.iter().filter(|relay| relay.upload == upload.index) {
                let id = create(url, relay.spec(upload, max_attempts), &relay.request_id).await;
                transfers.lock().unwrap().relays.push(id.clone());
                ids.push(id);
            }
            ids
        }
    });
    // In upload order, which is relay order.
    let ids: Vec<String> = futures::future::join_all(each)
        .await
        .into_iter()
        .flatten()
        .collect();
    journal.say(format!("all {} relay jobs created", ids.len()));
    ids
}

/// A kill -9 the campaign plans to make during a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferFault {
    /// The coordinator (the store) while the harness uploads a file.
    CoordinatorMidUpload,
    /// The coordinator while a relay job stages its input or uploads its output.
    CoordinatorMidJobTransfer,
    /// The worker of a relay job while it stages its input.
    WorkerWhileStaging,
    /// The worker of a relay job while it uploads its output.
    WorkerWhileUploading,
}

/// The transfer faults of the campaign seeded `seed`: each kind twice, in a seeded order (the
/// order in which they are tried when several could fire at once).
pub fn plan_faults(seed: u64) -> Vec<TransferFault> {
    let mut faults = [
        TransferFault::CoordinatorMidUpload,
        TransferFault::CoordinatorMidJobTransfer,
        TransferFault::WorkerWhileStaging,
        TransferFault::WorkerWhileUploading,
    ]
    .repeat(2);
    let mut rng = Rng(seed ^ 0xFA17_7AA5);
    for i in (1..faults.len()).rev() {
        faults.swap(i, rng.below(i as u64 + 1) as usize);
    }
    faults
}

/// A relay job's transfer under way now.
#[derive(Debug, Clone)]
pub struct JobTransfer {
    pub job: String,
    pub node: String,
    /// `staging` or `uploading`.
    pub stage: String,
}

/// A harness's upload under way for [`UPLOAD_UNDER_WAY`] at least (its index), and the relay
/// jobs whose input or output is being transferred now.
pub async fn under_way(
    url: &str,
    transfers: &Mutex<Transfers>,
) -> (Option<usize>, Vec<JobTransfer>) {
    let (ids, uploading) = {
        let transfers = transfers.lock().unwrap();
        let uploading = transfers
            .uploading
            .iter()
            .find(|(_, since)| since.elapsed() >= UPLOAD_UNDER_WAY)
            .map(|(index, _)| *index);
        (transfers.relays.clone(), uploading)
    };
    let mut found = Vec::new();
    let Some(mut client) = client(url).await else {
        return (uploading, found);
    };
    for id in ids {
        let Ok(job) = client.get_job(v1::GetJobRequest { id: id.clone() }).await else {
            continue;
        };
        let job = job.into_inner();
        let moving = job
            .transfer
            .as_ref()
            .is_some_and(|t| t.done_bytes > 0 && t.done_bytes < t.total_bytes);
        let active =
            job.state == v1::JobState::Assigned as i32 || job.state == v1::JobState::Running as i32;
        if active && moving && (job.stage == "staging" || job.stage == "uploading") {
            found.push(JobTransfer {
                job: id,
                node: job.node_id,
                stage: job.stage,
            });
        }
    }
    (uploading, found)
}

/// What the coordinator's local store holds that it should not: objects no upload or listed
/// output accounts for (a duplicate, a superseded attempt's leftovers), and objects whose size or
/// SHA-256 is not the one listed (a torn write). Also notes the multipart writes left unfinished.
pub fn check_store(
    cluster: &TestCluster,
    uploads: &[PlannedUpload],
    outputs: &[(String, u32, v1::OutputFile)],
    notes: &mut Vec<String>,
) -> Vec<String> {
    let root = reelay_tests::artifacts::local_store(cluster);
    let mut expected: Vec<(String, u64, String)> = uploads
        .iter()
        .map(|upload| {
            (
                format!("uploads/{}", upload.id),
                upload.data.len() as u64,
                sha256(&upload.data),
            )
        })
        .collect();
    expected.extend(outputs.iter().map(|(job, attempt, file)| {
        (
            format!("outputs/{job}/{attempt}/{}", file.name),
            file.size,
            file.sha256.clone(),
        )
    }));
    let mut problems = Vec::new();
    let objects = local_objects(&root);
    for (key, size) in &objects {
        let Some((_, want_size, want_sha)) = expected.iter().find(|(k, _, _)| k == key) else {
            problems.push(format!(
                "the store holds {key} ({size} bytes), which no upload or listed output accounts for (a duplicate?)"
            ));
            continue;
        };
        let data = std::fs::read(root.join(key)).unwrap_or_default();
        if *size != *want_size || sha256(&data) != *want_sha {
            problems.push(format!(
                "the store holds {key} with {size} bytes and SHA-256 {}, listed as {want_size} bytes and {want_sha} (torn?)",
                sha256(&data)
            ));
        }
    }
    for (key, _, _) in &expected {
        if !objects.iter().any(|(k, _)| k == key) {
            problems.push(format!("{key} is listed but not in the store"));
        }
    }
    let unfinished = unfinished_writes(&root);
    if unfinished > 0 {
        notes.push(format!(
            "{unfinished} multipart writes left unfinished in the store (begun by a process killed before it recorded them)"
        ));
    }
    problems
}
