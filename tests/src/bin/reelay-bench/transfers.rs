//! Reelay's own transfers, measured end to end on a real coordinator and worker: an upload through
//! UploadInput, the staging of that upload as a job's input, and the upload of the job's output —
//! on the default local store (the coordinator's directory, which the worker reaches through the
//! coordinator) and on an S3 store (SeaweedFS, which the worker reaches directly). MB are 10^6
//! bytes; each figure is read next to the limit of this machine that applies to it
//! ([`crate::transfer_limits`]).

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reelay_proto::v1;
use reelay_tests::artifacts::{input_spec, random_bytes};
use reelay_tests::process::{RssPeak, rss_peak_while};
use reelay_tests::s3::S3Server;
use reelay_tests::{TestCluster, WorkerSpec};
use sha2::{Digest, Sha256};

/// Bytes of one UploadInput message, as the CLI sends them.
const MESSAGE: usize = 1 << 20;
/// The job's pipeline: `copy` (tests/src/config.rs) copies its input to its one output, so one job
/// measures staging (its input) and uploading (its output) of the same size.
const PIPELINE: &str = "copy";
const TIMEOUT: Duration = Duration::from_secs(900);

/// Where the cluster keeps its artifacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// The coordinator's directory (the default).
    Local,
    /// `--artifacts s3://BUCKET/PREFIX` on a SeaweedFS server.
    S3,
}

/// MB/s of each transfer of one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    /// UploadInput, from the first message until the coordinator answered `complete`.
    pub upload: f64,
    /// The job's staging: ASSIGNED until RUNNING (the input fetched, verified, in the cache).
    pub staging: f64,
    /// The job's `uploading` stage: its first report until SUCCEEDED (the output stored).
    pub output: f64,
}

/// The bytes a run sends: pseudo-random, made on the fly from a 17 MiB block (each message a
/// different window of it), so a 2 GB file costs no memory on the client's side.
#[derive(Debug, Clone)]
pub struct Payload {
    block: Bytes,
    pub size: u64,
    pub sha256: String,
}

impl Payload {
    pub fn new(size: u64, seed: u64) -> Payload {
        let block = Bytes::from(random_bytes(17 << 20, seed));
        let mut payload = Payload {
            block,
            size,
            sha256: String::new(),
        };
        let mut hasher = Sha256::new();
        for chunk in payload.chunks() {
            hasher.update(&chunk);
        }
        payload.sha256 = hex::encode(hasher.finalize());
        payload
    }

    /// The bytes in messages of [`MESSAGE`] (the last one shorter).
    fn chunks(&self) -> impl Iterator<Item = Bytes> + Send + use<> {
        let block = self.block.clone();
        let size = self.size;
        (0..size.div_ceil(MESSAGE as u64)).map(move |index| {
            let start = ((index * 4099) % (16 << 20)) as usize;
            let len = (size - index * MESSAGE as u64).min(MESSAGE as u64) as usize;
            block.slice(start..start + len)
        })
    }

    fn messages(
        &self,
        name: &str,
    ) -> impl futures::Stream<Item = v1::UploadInputRequest> + Send + use<> {
        let header = v1::UploadHeader {
            name: name.to_owned(),
            size: self.size,
            sha256: self.sha256.clone(),
            id: String::new(),
            offset: 0,
        };
        let first = v1::UploadInputRequest {
            part: Some(v1::upload_input_request::Part::Header(header)),
        };
        let data = self.chunks().map(|chunk| v1::UploadInputRequest {
            part: Some(v1::upload_input_request::Part::Data(chunk)),
        });
        futures::stream::iter(std::iter::once(first).chain(data))
    }
}

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}

/// A cluster of one coordinator and one worker (one slot, process executor) on `store`; `s3` must
/// be given for [`Store::S3`] (the bucket `bench` is used, under a prefix of its own per cluster).
pub async fn cluster(store: Store, s3: Option<&S3Server>, run: usize) -> TestCluster {
    let mut builder = TestCluster::builder().worker(WorkerSpec {
        slots: 1,
        ..WorkerSpec::default()
    });
    if store == Store::S3 {
        let s3 = s3.expect("an S3 server for an S3 store");
        s3.create_bucket("bench").await;
        builder = builder
            .coordinator_arg("--artifacts")
            .coordinator_arg(&format!("s3://bench/run{run}"));
        for (key, value) in s3.env() {
            builder = builder.coordinator_env(&key, &value);
        }
    }
    builder.start().await
}

/// Uploads `payload` through UploadInput; the upload and its MB/s.
pub async fn upload(cluster: &TestCluster, payload: &Payload) -> (v1::Upload, f64) {
    let mut client = cluster.jobs().await;
    let started = Instant::now();
    let upload = client
        .upload_input(payload.messages("bench.bin"))
        .await
        .expect("UploadInput")
        .into_inner();
    let elapsed = started.elapsed();
    assert!(upload.complete, "{upload:?}");
    assert_eq!(upload.sha256, payload.sha256);
    (upload, mb_per_s(payload.size, elapsed))
}

/// Runs a `copy` job on the upload; the MB/s of its staging and of its output's upload, read from
/// the job's history.
pub async fn copy_job(cluster: &TestCluster, upload: &v1::Upload) -> (f64, f64) {
    let spec = input_spec(PIPELINE, &[], &format!("upload:{}", upload.id));
    let job = cluster.submit_spec(spec).await;
    let job = cluster.wait_finished_within(&job.id, TIMEOUT).await;
    assert_eq!(
        job.state,
        v1::JobState::Succeeded as i32,
        "{job:#?}\n{}",
        cluster.logs()
    );
    assert_eq!(job.outputs.first().map(|f| &f.sha256), Some(&upload.sha256));
    let history = cluster.history(&job.id).await;
    let time = |event: &v1::JobEvent| -> SystemTime {
        event
            .time
            .and_then(|t| SystemTime::try_from(t).ok())
            .expect("an event time")
    };
    let first = |what: &dyn Fn(&v1::Job) -> bool| {
        history
            .iter()
            .find(|event| event.job.as_ref().is_some_and(what))
            .map(time)
            .unwrap_or_else(|| panic!("no such event in {history:#?}"))
    };
    if std::env::var_os("REELAY_BENCH_TRACE").is_some() {
        let start = time(&history[0]);
        for event in &history {
            let job = event.job.as_ref().expect("job");
            eprintln!(
                "{:>8.3}s {:?} {} {:?}",
                time(event)
                    .duration_since(start)
                    .unwrap_or_default()
                    .as_secs_f64(),
                v1::JobState::try_from(job.state),
                job.stage,
                job.transfer.as_ref().map(|t| t.done_bytes >> 20)
            );
        }
    }
    let assigned = first(&|job| job.state == v1::JobState::Assigned as i32);
    let running = first(&|job| job.state == v1::JobState::Running as i32);
    let uploading = first(&|job| job.stage == "uploading");
    let succeeded = first(&|job| job.state == v1::JobState::Succeeded as i32);
    let span = |from: SystemTime, to: SystemTime| to.duration_since(from).unwrap_or_default();
    (
        mb_per_s(upload.size, span(assigned, running)),
        mb_per_s(upload.size, span(uploading, succeeded)),
    )
}

/// One run: an upload of `bytes`, then a job on it, on a fresh cluster.
pub async fn run(store: Store, s3: Option<&S3Server>, bytes: u64, run: usize) -> Figures {
    let cluster = cluster(store, s3, run).await;
    let payload = Payload::new(bytes, run as u64 + 1);
    let (upload, upload_rate) = upload(&cluster, &payload).await;
    let (staging, output) = copy_job(&cluster, &upload).await;
    Figures {
        upload: upload_rate,
        staging,
        output,
    }
}

/// RSS of the coordinator and the worker while `bytes` are uploaded and a job copies them (staged,
/// then uploaded as its output), on the local store: every byte passes through both processes.
pub async fn rss(bytes: u64) -> (RssPeak, RssPeak, Figures) {
    let cluster = cluster(Store::Local, None, 0).await;
    let payload = Payload::new(bytes, 99);
    let pids = [
        cluster.coordinator.pid().expect("coordinator pid"),
        cluster.workers[0].process.pid().expect("worker pid"),
    ];
    let (figures, peaks) = rss_peak_while(&pids, Duration::from_millis(10), async {
        let (upload, upload_rate) = upload(&cluster, &payload).await;
        let (staging, output) = copy_job(&cluster, &upload).await;
        Figures {
            upload: upload_rate,
            staging,
            output,
        }
    })
    .await;
    (peaks[0], peaks[1], figures)
}
