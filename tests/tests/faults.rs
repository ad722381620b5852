//! The fault campaign: a coordinator, three Docker workers, a fault proxy between the coordinator
//! and each worker (the workers advertise the proxies' addresses) and one between the workers and
//! the coordinator for their registrations. While 64 jobs run, a seeded random schedule kills -9
//! and restarts the coordinator and the workers, freezes workers (SIGSTOP), drops, black-holes,
//! cuts and restores the links, and tears event streams in the middle of a message. Then
//! everything is restored and the test checks that nothing was lost and nothing counted twice:
//!
//! - every job is terminal, in the state its pipeline gave: exit 0 → SUCCEEDED (with progress
//!   100); exit ≠ 0 → FAILED with that exit code after its `max_attempts` attempts;
//! - every job's history (GetJobHistory) is versions 1, 2, 3… with one terminal state, at its end,
//!   and attempts that never go back; its log lines are numbered 1, 2, 3… and hold the progress
//!   lines of its last attempt exactly once each, in order;
//! - every output's sha256 and size (ListOutputs) are those of the file the pipeline writes (the
//!   test computes it from the job's parameters), and DownloadOutput gives those very bytes;
//! - exactly the planned jobs exist (idempotent creation by request id across coordinator kills);
//! - no job ran twice at once: `docker events` is recorded during the campaign, and the containers
//!   of one job (whatever their attempt) never overlap between their `start` and their `die`;
//! - nothing is left behind: once the jobs are finished no container of the cluster's nodes
//!   exists, and after the cluster stopped no process of any job is alive.
//!
//! Why Docker: the Docker executor re-attaches to its containers after a worker's kill -9, so a
//! worker kill costs no attempt and a job must end as its pipeline did. The coordinator runs with
//! the default `--node-lost-after` (10 min, longer than any outage here): the campaign never
//! retries a job because its node was lost, so two containers of one job at once would be a bug
//! (node loss and its retry elsewhere are proved in node_loss.rs).
//!
//! Transfers (faults/transfers.rs): while the faults run, the harness uploads files to the
//! coordinator's artifact store through a throttled proxy, resuming each after a coordinator kill,
//! and creates `relay` jobs on them, which stage their input and upload an output twice its size
//! through the (throttled) registration proxy. Eight planned transfer faults (each kind twice, in
//! a seeded order) fire as soon as their transfer is seen: kill -9 of the coordinator (the store)
//! in the middle of an upload or of a job's transfer, of a job's worker while it stages and while
//! it uploads. Those not fired during the fault phase (whose random faults keep the workers from
//! the store much of the time) watch for their transfer in a transfer phase after it, on an
//! otherwise healthy cluster. The store is the coordinator's local one (an S3 phase would not fit
//! the campaign's 3 minutes; S3 store restarts are in artifacts_s3.rs). The checker adds:
//!
//! - every relay job SUCCEEDED with its input shown as uploaded (size, SHA-256) and an output
//!   whose listed SHA-256, and downloaded bytes, are those of the input twice;
//! - the store holds exactly the uploads and the listed outputs of the succeeded jobs, each with
//!   its listed size and SHA-256 (read from the store's directory): no torn object, no duplicate;
//! - no worker found a staged input that did not verify;
//! - at least one planned transfer fault fired (those that did not are printed).
//!
//! The seed is printed first (`fault campaign seed: N`); `REELAY_FAULT_SEED=N` replays the same
//! schedule of faults and jobs (timings of real processes still vary). A failure prints every
//! problem found, the fault schedule as it ran, and the seed.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reelay_proto::v1;
use reelay_proto::v1::job_service_client::JobServiceClient;
use reelay_tests::docker::{self, JobContainers, LABEL_JOB_ID, LABEL_NODE_ID};
use reelay_tests::faults::{Frozen, job_processes};
use reelay_tests::proxy::FaultProxy;
use reelay_tests::{TestCluster, WorkerSpec};
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

#[path = "faults/transfers.rs"]
mod transfers;

use transfers::{PlannedRelay, PlannedUpload, TransferFault, Transfers};

const IMAGE: &str = "reelay/busybox:latest";
/// Jobs of the campaign.
const JOBS: usize = 64;
/// Every job may run this often: the failing ones use them all.
const MAX_ATTEMPTS: u32 = 3;
/// The exit code of the jobs that fail.
const FAIL_CODE: i32 = 3;
/// How long random faults are injected.
const FAULT_PHASE: Duration = Duration::from_secs(60);
/// How long, at most, the planned transfer faults not fired during the fault phase watch the
/// relay jobs afterwards, and how long their victims stay down then.
const TRANSFER_PHASE: Duration = Duration::from_secs(40);
const TRANSFER_OUTAGE: Duration = Duration::from_secs(2);
/// Longest a component stays broken before the schedule repairs it.
const MAX_OUTAGE: Duration = Duration::from_secs(10);
/// How long the jobs may take to finish once everything is repaired.
const SETTLE: Duration = Duration::from_secs(180);
const WORKERS: usize = 3;

/// A busybox pipeline: `lines` lines derived from `seed` into out.txt, one `::progress` line
/// and a pause per line (1–4 s in all), then exit with `exit_code`.
const CAMPAIGN_PIPELINE: &str = r#"
[[pipeline]]
name = "lines"
description = "writes lines derived from a seed, with progress; exits with exit_code"
image = "reelay/busybox:latest"
pull = "never"
input_required = false
grace_seconds = 2
resources = { cpus = 0.5, memory_mb = 64 }
command = ["sh", "-c", """
set -eu
seed=$REELAY_PARAM_SEED
lines=$REELAY_PARAM_LINES
out="$REELAY_OUTPUT_DIR/out.txt"
: > "$out"
echo "job seed $seed: $lines lines"
i=0
while [ "$i" -lt "$lines" ]; do
  i=$((i + 1))
  echo "seed $seed line $i value $(( (seed * 31 + i * 17) % 1000 ))" >> "$out"
  echo "::progress $((i * 100 / lines)) writing line=$i"
  sleep "$REELAY_PARAM_PAUSE"
done
echo "done"
exit "$REELAY_PARAM_EXIT_CODE"
"""]
params = [
  { name = "seed", pattern = "[0-9]{1,9}" },
  { name = "lines", pattern = "[0-9]{1,3}" },
  { name = "pause", default = "0.25", pattern = "[0-9]\\.[0-9]{1,3}" },
  { name = "exit_code", default = "0", pattern = "[0-9]{1,3}" },
]
"#;

/// splitmix64: small, seedable, good enough for a schedule.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.below(high - low + 1))
    }
}

/// A job the campaign creates, and what its pipeline will do.
#[derive(Debug, Clone)]
struct Planned {
    index: usize,
    request_id: String,
    seed: u64,
    lines: u32,
    exit_code: i32,
}

impl Planned {
    fn spec(&self) -> v1::JobSpec {
        let params = [
            ("seed", self.seed.to_string()),
            ("lines", self.lines.to_string()),
            ("pause", "0.25".to_owned()),
            ("exit_code", self.exit_code.to_string()),
        ];
        v1::JobSpec {
            pipeline: "lines".into(),
            params: params
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
            max_attempts: MAX_ATTEMPTS,
            ..Default::default()
        }
    }

    /// The bytes of out.txt.
    fn output(&self) -> Vec<u8> {
        (1..=u64::from(self.lines))
            .map(|i| {
                format!(
                    "seed {} line {i} value {}\n",
                    self.seed,
                    (self.seed * 31 + i * 17) % 1000
                )
            })
            .collect::<String>()
            .into_bytes()
    }

    /// The progress lines of one attempt, in order.
    fn progress_lines(&self) -> Vec<String> {
        (1..=self.lines)
            .map(|i| format!("::progress {} writing line={i}", i * 100 / self.lines))
            .collect()
    }
}

fn plan_jobs(seed: u64) -> Vec<Planned> {
    let mut rng = Rng(seed ^ 0x5EED_F10B);
    (0..JOBS)
        .map(|index| Planned {
            index,
            request_id: format!("fault-campaign-{seed}-{index}"),
            seed: rng.below(1_000_000_000),
            lines: 4 + rng.below(13) as u32,
            // About one job in eight fails.
            exit_code: if rng.below(8) == 0 { FAIL_CODE } else { 0 },
        })
        .collect()
}

/// The campaign's log of what it did, printed on failure.
#[derive(Debug, Clone)]
struct Journal {
    started: Instant,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Journal {
    fn new() -> Self {
        Journal {
            started: Instant::now(),
            lines: Arc::default(),
        }
    }

    fn say(&self, what: impl std::fmt::Display) {
        let line = format!("[{:>6.1}s] {what}", self.started.elapsed().as_secs_f64());
        println!("{line}");
        self.lines.lock().unwrap().push(line);
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

async fn client(url: &str) -> Option<JobServiceClient<Channel>> {
    let endpoint = Channel::from_shared(url.to_owned())
        .ok()?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10));
    let channel = endpoint.connect().await.ok()?;
    Some(JobServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
}

/// Creates the planned jobs at random moments, retrying each (same request id) until the
/// coordinator answers; the job id of each, by index.
async fn submit_all(url: String, jobs: Vec<Planned>, seed: u64, journal: Journal) -> Vec<String> {
    let mut rng = Rng(seed ^ 0x5AB3_1700);
    let mut ids = Vec::new();
    for job in jobs {
        tokio::time::sleep(rng.millis(0, 1000)).await;
        let started = Instant::now();
        let id = loop {
            if let Some(mut client) = client(&url).await {
                let request = v1::CreateJobRequest {
                    spec: Some(job.spec()),
                    request_id: job.request_id.clone(),
                };
                match client.create_job(request).await {
                    Ok(created) => break created.into_inner().id,
                    Err(status) if status.code() == tonic::Code::InvalidArgument => {
                        panic!("job {} refused: {status}", job.index)
                    }
                    Err(_) => {}
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "job {} could not be created for 2 minutes",
                job.index
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if started.elapsed() > Duration::from_secs(1) {
            journal.say(format!(
                "job {} created after retrying for {:.1}s",
                job.index,
                started.elapsed().as_secs_f64()
            ));
        }
        ids.push(id);
    }
    journal.say(format!("all {} jobs created", ids.len()));
    ids
}

/// `docker events` for the containers Reelay makes, recorded to a file while the campaign runs.
#[derive(Debug)]
struct DockerEvents {
    child: Child,
    path: std::path::PathBuf,
}

impl DockerEvents {
    fn start(path: std::path::PathBuf) -> Self {
        let file = std::fs::File::create(&path).expect("events file");
        let child = Command::new("docker")
            .args([
                "events",
                "--filter",
                "type=container",
                "--filter",
                "label=reelay.managed=true",
                "--format",
                "{{json .}}",
            ])
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("docker events");
        DockerEvents { child, path }
    }

    /// Stops recording (kills the `docker events` it started, by PID); the events recorded.
    fn finish(mut self) -> Vec<serde_json::Value> {
        // Events reach `docker events` a moment after they happen.
        std::thread::sleep(Duration::from_millis(500));
        let _ = self.child.kill();
        let _ = self.child.wait();
        let file = std::fs::File::open(&self.path).expect("events file");
        BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str(&line).ok())
            .collect()
    }
}

impl Drop for DockerEvents {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One container's life, from `docker events`.
#[derive(Debug, Clone)]
struct Life {
    container: String,
    attempt: String,
    node: String,
    start: Option<u64>,
    die: Option<u64>,
}

/// Containers by job, from the recorded events of the nodes whose ids start with `prefix`.
fn lives(events: &[serde_json::Value], prefix: &str) -> BTreeMap<String, Vec<Life>> {
    let mut by_container: HashMap<String, (String, Life)> = HashMap::new();
    for event in events {
        let action = event["Action"].as_str().unwrap_or_default();
        if action != "start" && action != "die" {
            continue;
        }
        let attributes = &event["Actor"]["Attributes"];
        let node = attributes[LABEL_NODE_ID].as_str().unwrap_or_default();
        if !node.starts_with(prefix) {
            continue;
        }
        let job = attributes[LABEL_JOB_ID]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let container = event["Actor"]["ID"].as_str().unwrap_or_default().to_owned();
        let time = event["timeNano"].as_u64().unwrap_or_default();
        let entry = by_container.entry(container.clone()).or_insert_with(|| {
            (
                job,
                Life {
                    container,
                    attempt: attributes["reelay.attempt"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    node: node.to_owned(),
                    start: None,
                    die: None,
                },
            )
        });
        match action {
            "start" => entry.1.start = Some(time),
            _ => entry.1.die = Some(time),
        }
    }
    let mut jobs: BTreeMap<String, Vec<Life>> = BTreeMap::new();
    for (job, life) in by_container.into_values() {
        jobs.entry(job).or_default().push(life);
    }
    for lives in jobs.values_mut() {
        lives.sort_by_key(|life| life.start.unwrap_or(u64::MAX));
    }
    jobs
}

/// Two containers of one job alive at once: the pairs, described.
fn overlaps(jobs: &BTreeMap<String, Vec<Life>>) -> Vec<String> {
    let mut found = Vec::new();
    for (job, lives) in jobs {
        for (index, a) in lives.iter().enumerate() {
            for b in &lives[index + 1..] {
                let (Some(a_start), Some(b_start)) = (a.start, b.start) else {
                    continue;
                };
                let a_end = a.die.unwrap_or(u64::MAX);
                let b_end = b.die.unwrap_or(u64::MAX);
                if a_start < b_end && b_start < a_end {
                    found.push(format!(
                        "job {job} ran twice at once: container {} (attempt {} on {}) and {} (attempt {} on {}) overlap",
                        &a.container[..12.min(a.container.len())],
                        a.attempt,
                        a.node,
                        &b.container[..12.min(b.container.len())],
                        b.attempt,
                        b.node
                    ));
                }
            }
        }
    }
    found
}

/// What can be broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Part {
    Coordinator,
    Worker(usize),
    Link(usize),
    Registration,
}

#[derive(Debug)]
enum Broken {
    Killed,
    Frozen(Frozen),
    Proxy,
}

/// The cluster under attack.
struct Campaign {
    /// First, so that a frozen worker is thawed before the cluster stops when a test fails.
    broken: HashMap<Part, (Broken, Instant)>,
    cluster: TestCluster,
    links: Vec<FaultProxy>,
    registration: FaultProxy,
    rng: Rng,
    journal: Journal,
    /// The transfers under way.
    transfers: Arc<Mutex<Transfers>>,
    /// The planned transfer faults not fired yet, and those fired.
    pending: Vec<TransferFault>,
    fired: Vec<TransferFault>,
    /// Counts of what was done.
    done: BTreeMap<&'static str, u32>,
}

impl Campaign {
    fn parts() -> Vec<Part> {
        let mut parts = vec![Part::Coordinator, Part::Registration];
        parts.extend((0..WORKERS).map(Part::Worker));
        parts.extend((0..WORKERS).map(Part::Link));
        parts
    }

    fn count(&mut self, what: &'static str) {
        *self.done.entry(what).or_default() += 1;
    }

    fn node(&self, index: usize) -> String {
        self.cluster.workers[index].node_id.clone()
    }

    /// One step: repair the part picked if it is broken, else break it.
    async fn step(&mut self) {
        let parts = Campaign::parts();
        let part = parts[self.rng.below(parts.len() as u64) as usize];
        if self.broken.contains_key(&part) {
            self.repair(part).await;
        } else {
            self.break_part(part).await;
        }
        let overdue: Vec<Part> = self
            .broken
            .iter()
            .filter(|(_, (_, since))| since.elapsed() > MAX_OUTAGE)
            .map(|(part, _)| *part)
            .collect();
        for part in overdue {
            self.repair(part).await;
        }
    }

    async fn break_part(&mut self, part: Part) {
        let now = Instant::now();
        match part {
            Part::Coordinator => {
                self.journal.say("kill -9 coordinator");
                self.cluster.coordinator.kill9();
                self.count("coordinator kill -9");
                self.broken.insert(part, (Broken::Killed, now));
            }
            Part::Worker(index) => {
                let node = self.node(index);
                if self.rng.below(3) == 0 {
                    self.journal.say(format!("freeze (SIGSTOP) worker {node}"));
                    let pid = self.cluster.workers[index].process.pid().expect("pid");
                    self.count("worker freeze");
                    self.broken
                        .insert(part, (Broken::Frozen(Frozen::freeze(pid)), now));
                } else {
                    self.journal.say(format!("kill -9 worker {node}"));
                    self.cluster.workers[index].process.kill9();
                    self.count("worker kill -9");
                    self.broken.insert(part, (Broken::Killed, now));
                }
            }
            Part::Link(index) => {
                let node = self.node(index);
                let proxy = &self.links[index];
                match self.rng.below(4) {
                    0 => {
                        self.journal.say(format!("drop link to {node}"));
                        proxy.drop_all();
                        self.count("link drop");
                        self.broken.insert(part, (Broken::Proxy, now));
                    }
                    1 => {
                        self.journal.say(format!("black-hole link to {node}"));
                        proxy.black_hole();
                        self.count("link black-hole");
                        self.broken.insert(part, (Broken::Proxy, now));
                    }
                    2 => {
                        self.journal.say(format!("cut link to {node}"));
                        proxy.cut();
                        self.count("link cut");
                    }
                    _ => {
                        let torn = proxy.tear(Duration::from_secs(2)).await;
                        self.journal.say(format!(
                            "tear the event stream from {node} mid-message: {}",
                            if torn { "torn" } else { "no bytes flowing" }
                        ));
                        if torn {
                            self.count("event stream torn mid-message");
                        }
                    }
                }
            }
            Part::Registration => {
                if self.rng.below(2) == 0 {
                    self.journal.say("drop registrations");
                    self.registration.drop_all();
                    self.count("registration drop");
                } else {
                    self.journal.say("black-hole registrations");
                    self.registration.black_hole();
                    self.count("registration black-hole");
                }
                self.broken.insert(part, (Broken::Proxy, now));
            }
        }
    }

    /// Fires the first planned transfer fault whose transfer is under way now (and whose victim
    /// is not already broken): a kill -9 of the coordinator mid-upload or mid-transfer of a job,
    /// or of the worker of a job while it stages or uploads.
    async fn break_transfer(&mut self) {
        if self.pending.is_empty() || self.broken.contains_key(&Part::Coordinator) {
            return;
        }
        let (upload, jobs) = transfers::under_way(&self.cluster.url(), &self.transfers).await;
        let now = Instant::now();
        for (position, fault) in self.pending.clone().into_iter().enumerate() {
            let (what, victim) = match fault {
                TransferFault::CoordinatorMidUpload => {
                    let Some(index) = upload else { continue };
                    (
                        format!("while upload {index} is under way"),
                        Part::Coordinator,
                    )
                }
                TransferFault::CoordinatorMidJobTransfer => {
                    let Some(job) = jobs.first() else { continue };
                    (
                        format!("while job {} is {} on {}", job.job, job.stage, job.node),
                        Part::Coordinator,
                    )
                }
                TransferFault::WorkerWhileStaging | TransferFault::WorkerWhileUploading => {
                    let stage = if fault == TransferFault::WorkerWhileStaging {
                        "staging"
                    } else {
                        "uploading"
                    };
                    let victim = jobs
                        .iter()
                        .filter(|job| job.stage == stage)
                        .find_map(|job| {
                            let index = self
                                .cluster
                                .workers
                                .iter()
                                .position(|worker| worker.node_id == job.node)?;
                            (!self.broken.contains_key(&Part::Worker(index)))
                                .then(|| (job.job.clone(), index))
                        });
                    let Some((job, index)) = victim else { continue };
                    (format!("while job {job} is {stage}"), Part::Worker(index))
                }
            };
            self.pending.remove(position);
            match victim {
                Part::Worker(index) => {
                    self.journal
                        .say(format!("kill -9 worker {} {what}", self.node(index)));
                    self.cluster.workers[index].process.kill9();
                }
                _ => {
                    self.journal.say(format!("kill -9 coordinator {what}"));
                    self.cluster.coordinator.kill9();
                }
            }
            self.count(match fault {
                TransferFault::CoordinatorMidUpload => "coordinator kill -9 mid-upload",
                TransferFault::CoordinatorMidJobTransfer => "coordinator kill -9 mid-job-transfer",
                TransferFault::WorkerWhileStaging => "worker kill -9 while staging",
                TransferFault::WorkerWhileUploading => "worker kill -9 while uploading",
            });
            self.fired.push(fault);
            self.broken.insert(victim, (Broken::Killed, now));
            return;
        }
    }

    async fn repair(&mut self, part: Part) {
        let Some((broken, since)) = self.broken.remove(&part) else {
            return;
        };
        let after = since.elapsed().as_secs_f64();
        match (part, broken) {
            (Part::Coordinator, _) => {
                self.journal
                    .say(format!("restart coordinator (down {after:.1}s)"));
                self.cluster.coordinator.restart();
                self.cluster.wait_serving().await;
            }
            (Part::Worker(index), Broken::Frozen(frozen)) => {
                self.journal.say(format!(
                    "thaw (SIGCONT) worker {} (frozen {after:.1}s)",
                    self.node(index)
                ));
                frozen.thaw();
            }
            (Part::Worker(index), _) => {
                self.journal.say(format!(
                    "restart worker {} (down {after:.1}s)",
                    self.node(index)
                ));
                self.cluster.workers[index].process.restart();
            }
            (Part::Link(index), _) => {
                self.journal.say(format!(
                    "restore link to {} (broken {after:.1}s)",
                    self.node(index)
                ));
                self.links[index].restore();
            }
            (Part::Registration, _) => {
                self.journal
                    .say(format!("restore registrations (broken {after:.1}s)"));
                self.registration.restore();
            }
        }
    }

    async fn repair_all(&mut self) {
        for part in Campaign::parts() {
            self.repair(part).await;
        }
    }
}

fn state_name(state: i32) -> &'static str {
    v1::JobState::try_from(state)
        .map(|state| state.as_str_name())
        .unwrap_or("?")
}

fn is_terminal(state: i32) -> bool {
    reelay_tests::watch::is_terminal(state)
}

/// Whether every job of `ids` is terminal (false when the coordinator does not answer).
async fn all_terminal(url: &str, ids: &[String]) -> bool {
    let Some(mut client) = client(url).await else {
        return false;
    };
    for id in ids {
        match client.get_job(v1::GetJobRequest { id: id.clone() }).await {
            Ok(job) if is_terminal(job.get_ref().state) => {}
            _ => return false,
        }
    }
    true
}

/// Waits until every job is terminal; the jobs as last seen.
async fn settle(url: &str, ids: &[String], journal: &Journal) -> Vec<Option<v1::Job>> {
    let deadline = Instant::now() + SETTLE;
    let mut last: Vec<Option<v1::Job>> = vec![None; ids.len()];
    loop {
        if let Some(mut client) = client(url).await {
            for (index, id) in ids.iter().enumerate() {
                if last[index]
                    .as_ref()
                    .is_some_and(|job| is_terminal(job.state))
                {
                    continue;
                }
                if let Ok(job) = client.get_job(v1::GetJobRequest { id: id.clone() }).await {
                    last[index] = Some(job.into_inner());
                }
            }
        }
        let open = last
            .iter()
            .filter(|job| !job.as_ref().is_some_and(|job| is_terminal(job.state)))
            .count();
        if open == 0 {
            journal.say("every job is terminal");
            return last;
        }
        if Instant::now() >= deadline {
            journal.say(format!("{open} jobs are still not terminal"));
            return last;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn download(url: &str, id: &str, name: &str) -> Result<Vec<u8>, String> {
    let mut client = client(url).await.ok_or("cannot connect")?;
    let request = v1::DownloadOutputRequest {
        id: id.to_owned(),
        name: name.to_owned(),
        offset: 0,
    };
    let mut stream = client
        .download_output(request)
        .await
        .map_err(|status| status.to_string())?
        .into_inner();
    let mut data = Vec::new();
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|status| status.to_string())?
    {
        if chunk.offset != data.len() as u64 {
            return Err(format!(
                "chunk at offset {} after {} bytes",
                chunk.offset,
                data.len()
            ));
        }
        data.extend_from_slice(&chunk.data);
    }
    Ok(data)
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// What one job of the campaign must end as.
#[derive(Debug, Clone)]
struct Expect {
    /// How problems name the job.
    name: String,
    /// Its pipeline's exit code, every attempt.
    exit_code: i32,
    /// The progress lines of one attempt, in order.
    progress: Vec<String>,
    /// Its one output (name and bytes) when it succeeds.
    output: (String, Vec<u8>),
    /// Its input from the store (size, SHA-256), when it has one.
    input: Option<(u64, String)>,
}

impl Planned {
    fn expect(&self, id: &str) -> Expect {
        Expect {
            name: format!("job {} ({id}, exit {})", self.index, self.exit_code),
            exit_code: self.exit_code,
            progress: self.progress_lines(),
            output: ("out.txt".to_owned(), self.output()),
            input: None,
        }
    }
}

fn relay_expect(relay: &PlannedRelay, upload: &PlannedUpload, id: &str) -> Expect {
    Expect {
        name: format!("relay job {} ({id}, upload {})", relay.index, upload.index),
        exit_code: 0,
        progress: vec!["::progress 100 relayed".to_owned()],
        output: ("relay.bin".to_owned(), PlannedRelay::output(upload)),
        input: Some((upload.data.len() as u64, sha256(&upload.data))),
    }
}

/// Everything wrong with one job, as sentences.
async fn check_job(
    cluster: &TestCluster,
    planned: &Expect,
    id: &str,
    job: Option<&v1::Job>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let name = planned.name.clone();
    let Some(job) = job else {
        return vec![format!("{name}: never read back (lost)")];
    };
    let summary = format!(
        "{} attempt {} on {:?}, exit {:?}, error {:?}",
        state_name(job.state),
        job.attempt,
        job.node_id,
        job.exit_code,
        job.error
    );
    if !is_terminal(job.state) {
        problems.push(format!("{name}: not terminal: {summary}"));
    } else if planned.exit_code == 0 {
        if job.state != v1::JobState::Succeeded as i32 || job.progress != 100 {
            problems.push(format!(
                "{name}: its pipeline exits 0 but the job is {summary}"
            ));
        }
    } else if job.state != v1::JobState::Failed as i32
        || job.exit_code != Some(planned.exit_code)
        || job.attempt != MAX_ATTEMPTS
        || !job
            .error
            .contains(&format!("exit code {}", planned.exit_code))
    {
        problems.push(format!(
            "{name}: its pipeline exits {} every time: expected FAILED with that code after {MAX_ATTEMPTS} attempts, got {summary}",
            planned.exit_code
        ));
    }
    if let Some((size, sha)) = &planned.input {
        let shown = job
            .input
            .as_ref()
            .map(|input| (input.size, input.sha256.clone()));
        if shown != Some((*size, sha.clone())) {
            problems.push(format!(
                "{name}: its input shows as {shown:?}, uploaded as {size} bytes with SHA-256 {sha}"
            ));
        }
    }

    // History: versions 1, 2, 3…, one terminal state at the end, attempts never going back.
    let history = cluster.history(id).await;
    let versions: Vec<u64> = history.iter().map(|event| event.version).collect();
    if versions != (1..=versions.len() as u64).collect::<Vec<_>>() {
        problems.push(format!(
            "{name}: history versions have a gap or a repeat: {versions:?}"
        ));
    }
    let jobs: Vec<&v1::Job> = history.iter().filter_map(|e| e.job.as_ref()).collect();
    let terminals: Vec<u64> = jobs
        .iter()
        .filter(|job| is_terminal(job.state))
        .map(|job| job.version)
        .collect();
    if terminals.len() != 1 || jobs.last().is_none_or(|job| !is_terminal(job.state)) {
        problems.push(format!(
            "{name}: reported terminal {} times (versions {terminals:?}); states: {:?}",
            terminals.len(),
            jobs.iter()
                .map(|job| format!(
                    "v{} {} a{}",
                    job.version,
                    state_name(job.state),
                    job.attempt
                ))
                .collect::<Vec<_>>()
        ));
    }
    if jobs
        .windows(2)
        .any(|pair| pair[1].attempt < pair[0].attempt)
    {
        problems.push(format!(
            "{name}: an event of an older attempt came after a newer one"
        ));
    }
    // Each attempt that failed and was retried: no fault here may fail an attempt (containers are
    // re-attached, nodes are never lost), so only the pipeline's own exit code may.
    let expected_error = format!("exit code {}", planned.exit_code);
    let failures: Vec<String> = jobs
        .iter()
        .filter(|job| job.state == v1::JobState::Queued as i32 && !job.error.is_empty())
        .map(|job| format!("attempt {}: {}", job.attempt, job.error))
        .collect();
    if failures
        .iter()
        .any(|failure| planned.exit_code == 0 || !failure.contains(&expected_error))
    {
        problems.push(format!(
            "{name}: an attempt failed for another reason than its pipeline's exit code: {failures:?}"
        ));
    }

    // Logs: numbered 1, 2, 3…; the last attempt's progress lines once each, in order.
    let lines = cluster.job_logs(id).await;
    let numbers: Vec<u64> = lines.iter().map(|line| line.number).collect();
    if numbers != (1..=numbers.len() as u64).collect::<Vec<_>>() {
        problems.push(format!(
            "{name}: log lines have a gap or a repeat: {numbers:?}"
        ));
    }
    if is_terminal(job.state) {
        let progress: Vec<&str> = lines
            .iter()
            .filter(|line| line.attempt == job.attempt && line.text.starts_with("::progress"))
            .map(|line| line.text.as_str())
            .collect();
        if progress != planned.progress {
            problems.push(format!(
                "{name}: the progress lines of attempt {} are not each printed line once: got {progress:?}",
                job.attempt
            ));
        }
    }

    // Outputs: the file the pipeline wrote, listed and downloaded.
    if job.state == v1::JobState::Succeeded as i32 {
        let (output, expected) = &planned.output;
        let listed = match client(&cluster.url()).await {
            Some(mut client) => client
                .list_outputs(v1::ListOutputsRequest { id: id.to_owned() })
                .await
                .map(|files| files.into_inner().files)
                .map_err(|status| status.to_string()),
            None => Err("cannot connect".to_owned()),
        };
        match listed.as_deref() {
            Ok([file]) if file.name == *output => {
                if file.sha256 != sha256(expected) || file.size != expected.len() as u64 {
                    problems.push(format!(
                        "{name}: {output} listed with sha256 {} and {} bytes, expected {} and {} bytes",
                        file.sha256,
                        file.size,
                        sha256(expected),
                        expected.len()
                    ));
                }
                match download(&cluster.url(), id, output).await {
                    Ok(data) if data == *expected => {}
                    Ok(data) => problems.push(format!(
                        "{name}: downloaded {output} differs ({} bytes, sha256 {}): {:?}",
                        data.len(),
                        sha256(&data),
                        String::from_utf8_lossy(&data[..data.len().min(200)])
                    )),
                    Err(err) => {
                        problems.push(format!("{name}: download of {output} failed: {err}"))
                    }
                }
            }
            other => problems.push(format!("{name}: outputs are not [{output}]: {other:?}")),
        }
    }
    problems
}

/// Jobs that exist beyond the planned ones (a create applied twice), or planned ones missing.
async fn check_job_count(url: &str, ids: &[String]) -> Vec<String> {
    let Some(mut client) = client(url).await else {
        return vec!["cannot list jobs".to_owned()];
    };
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = v1::ListJobsRequest {
            page_size: 100,
            page_token: page_token.clone(),
            ..Default::default()
        };
        let page = match client.list_jobs(request).await {
            Ok(page) => page.into_inner(),
            Err(status) => return vec![format!("ListJobs failed: {status}")],
        };
        all.extend(page.jobs.into_iter().map(|job| job.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let mut problems = Vec::new();
    let extra: Vec<&String> = all.iter().filter(|id| !ids.contains(id)).collect();
    if !extra.is_empty() {
        problems.push(format!(
            "{} jobs exist that were not planned (a create applied twice?): {extra:?}",
            extra.len()
        ));
    }
    let missing: Vec<&String> = ids.iter().filter(|id| !all.contains(id)).collect();
    if !missing.is_empty() {
        problems.push(format!("planned jobs are missing: {missing:?}"));
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_campaign() {
    let seed = std::env::var("REELAY_FAULT_SEED")
        .ok()
        .and_then(|seed| seed.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                % 1_000_000_000
        });
    println!("fault campaign seed: {seed} (replay with REELAY_FAULT_SEED={seed})");
    docker::require_engine(&[IMAGE]);
    let journal = Journal::new();

    static RUNS: AtomicU32 = AtomicU32::new(0);
    let prefix = format!(
        "fc{}-{}-",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    );
    // Dropped after the cluster: on a panic, it removes the containers the cluster left.
    let mut containers = JobContainers::new();
    let events_dir = tempfile::tempdir().expect("temp dir");
    let events = DockerEvents::start(events_dir.path().join("docker-events.jsonl"));

    let mut cluster = TestCluster::builder()
        .node_prefix(&prefix)
        .extra_config(CAMPAIGN_PIPELINE)
        .extra_config(transfers::RELAY_PIPELINE)
        .coordinator_arg("--node-lost-after")
        .coordinator_arg("10m")
        .start()
        .await;
    let registration = FaultProxy::start(([127, 0, 0, 1], cluster.coordinator_port).into()).await;
    // The workers' way to the artifact store: slow enough that their transfers take seconds.
    registration.throttle(transfers::TRANSFER_RATE);
    // The harness's uploads, likewise.
    let uploads_link = FaultProxy::start(([127, 0, 0, 1], cluster.coordinator_port).into()).await;
    uploads_link.throttle(transfers::UPLOAD_RATE);
    let mut links = Vec::new();
    for _ in 0..WORKERS {
        let link = FaultProxy::unconnected().await;
        let spec = WorkerSpec {
            slots: 2,
            executor: "docker".into(),
            extra_args: vec!["--advertise".into(), link.url()],
            coordinator: Some(registration.url()),
            ..Default::default()
        };
        let index = cluster.add_worker(spec);
        link.set_target(([127, 0, 0, 1], cluster.workers[index].port).into());
        containers.track_node(&cluster.workers[index].node_id);
        links.push(link);
    }
    cluster.wait_ready_nodes(WORKERS).await;
    journal.say(format!(
        "cluster ready: coordinator {}, workers {:?} behind link proxies {:?}, registrations through {}",
        cluster.url(),
        cluster
            .workers
            .iter()
            .map(|worker| worker.node_id.as_str())
            .collect::<Vec<_>>(),
        links.iter().map(FaultProxy::url).collect::<Vec<_>>(),
        registration.url()
    ));

    let planned = plan_jobs(seed);
    let submitter = tokio::spawn(submit_all(
        cluster.url(),
        planned.clone(),
        seed,
        journal.clone(),
    ));
    let (uploads, relays) = transfers::plan(seed);
    let transfers_state = Arc::new(Mutex::new(Transfers::default()));
    let uploader = tokio::spawn(transfers::upload_and_submit(
        cluster.url(),
        uploads_link.url(),
        uploads.clone(),
        relays.clone(),
        MAX_ATTEMPTS,
        seed,
        Arc::clone(&transfers_state),
        journal.clone(),
    ));

    let mut campaign = Campaign {
        broken: HashMap::new(),
        cluster,
        links,
        registration,
        rng: Rng(seed),
        journal: journal.clone(),
        transfers: Arc::clone(&transfers_state),
        pending: transfers::plan_faults(seed),
        fired: Vec::new(),
        done: BTreeMap::new(),
    };
    let faults_end = Instant::now() + FAULT_PHASE;
    while Instant::now() < faults_end {
        campaign.step().await;
        // Between steps, the planned transfer faults watch for their transfers (seconds long).
        let pause_end = Instant::now() + campaign.rng.millis(200, 2500);
        while Instant::now() < pause_end {
            campaign.break_transfer().await;
            let left = pause_end.saturating_duration_since(Instant::now());
            tokio::time::sleep(left.min(Duration::from_millis(250))).await;
        }
    }
    journal.say("fault phase over: repairing everything");
    campaign.repair_all().await;
    let ids = submitter.await.expect("the submitter");
    let relay_ids = uploader.await.expect("the uploader");
    // The transfer phase: the random faults stop (they keep the workers from the store most of
    // the time); the planned transfer faults not fired yet watch the relay jobs' transfers, each
    // victim restarted after TRANSFER_OUTAGE.
    journal.say("transfer phase: the planned transfer faults left watch the relay jobs");
    let transfer_end = Instant::now() + TRANSFER_PHASE;
    while !campaign.pending.is_empty() && Instant::now() < transfer_end {
        campaign.break_transfer().await;
        let over: Vec<Part> = campaign
            .broken
            .iter()
            .filter(|(_, (_, since))| since.elapsed() > TRANSFER_OUTAGE)
            .map(|(part, _)| *part)
            .collect();
        for part in over {
            campaign.repair(part).await;
        }
        if all_terminal(&campaign.cluster.url(), &relay_ids).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    campaign.repair_all().await;
    for id in ids.iter().chain(&relay_ids) {
        containers.track(id);
    }
    let Campaign {
        cluster,
        links,
        registration,
        done,
        pending,
        fired,
        ..
    } = campaign;
    journal.say(format!("faults injected: {done:?}"));
    cluster.wait_ready_nodes(WORKERS).await;
    journal.say("every node is READY");

    let mut problems = Vec::new();
    let mut notes = Vec::new();
    journal.say(format!(
        "transfer faults fired: {fired:?}; not fired (no such transfer seen in time): {pending:?}"
    ));
    if fired.is_empty() {
        problems.push(
            "no planned transfer fault fired: the campaign proved nothing about transfers"
                .to_owned(),
        );
    }
    let url = cluster.url();
    let all_ids: Vec<String> = ids.iter().chain(&relay_ids).cloned().collect();
    let last = settle(&url, &all_ids, &journal).await;
    let expected: Vec<Expect> = planned
        .iter()
        .zip(&ids)
        .map(|(planned, id)| planned.expect(id))
        .chain(
            relays
                .iter()
                .zip(&relay_ids)
                .map(|(relay, id)| relay_expect(relay, &uploads[relay.upload], id)),
        )
        .collect();
    for ((expect, id), job) in expected.iter().zip(&all_ids).zip(&last) {
        problems.extend(check_job(&cluster, expect, id, job.as_ref()).await);
    }
    // The store: the uploads and the outputs of the succeeded jobs, nothing else, none torn.
    let outputs: Vec<(String, u32, v1::OutputFile)> = last
        .iter()
        .flatten()
        .filter(|job| job.state == v1::JobState::Succeeded as i32)
        .flat_map(|job| {
            job.outputs
                .iter()
                .map(|file| (job.id.clone(), job.attempt, file.clone()))
        })
        .collect();
    problems.extend(transfers::check_store(
        &cluster, &uploads, &outputs, &mut notes,
    ));
    let count = |state: v1::JobState| {
        last.iter()
            .flatten()
            .filter(|job| job.state == state as i32)
            .count()
    };
    let attempts: u32 = last.iter().flatten().map(|job| job.attempt).sum();
    journal.say(format!(
        "{} jobs SUCCEEDED, {} FAILED ({} planned to fail), {attempts} attempts in all",
        count(v1::JobState::Succeeded),
        count(v1::JobState::Failed),
        planned.iter().filter(|job| job.exit_code != 0).count()
    ));
    problems.extend(check_job_count(&url, &all_ids).await);

    // Nothing left while the cluster runs: every finished attempt's container is removed.
    let nodes: Vec<String> = cluster
        .workers
        .iter()
        .map(|worker| worker.node_id.clone())
        .collect();
    for node in &nodes {
        if let Err(left) = docker::wait_none_labelled(LABEL_NODE_ID, node, Duration::from_secs(30))
        {
            problems.push(left);
        }
    }
    // What the processes say they did: evidence that the faults hit running work.
    let worker_logs: String = cluster
        .workers
        .iter()
        .map(|worker| worker.process.log_text())
        .collect();
    let coordinator_log = cluster.coordinator.log_text();
    if worker_logs.contains("does not verify") {
        problems.push(
            "a worker fetched an input that did not verify (a resumed fetch wrote wrong bytes?)"
                .to_owned(),
        );
    }
    journal.say(format!(
        "transfers: {} uploads resumed after a cut; {} relay inputs found in a node's cache (the others were fetched)",
        transfers_state.lock().unwrap().resumed,
        worker_logs.matches("input found in the node's cache").count(),
    ));
    journal.say(format!(
        "workers re-attached to {} containers and resumed {} attempts; the coordinator resumed event streams {} times",
        worker_logs.matches("re-attached").count(),
        worker_logs.matches("resuming attempt").count(),
        coordinator_log.matches("following the node's events").count()
    ));
    let proxies_bytes: Vec<u64> = links.iter().map(FaultProxy::bytes).collect();
    journal.say(format!(
        "bytes through the link proxies: {proxies_bytes:?}; registrations: {}",
        registration.bytes()
    ));
    drop(cluster);
    drop(links);
    drop(registration);
    drop(uploads_link);
    for node in &nodes {
        let left = docker::containers_labelled(LABEL_NODE_ID, node);
        if !left.is_empty() {
            problems.push(format!(
                "after the cluster stopped, node {node} left containers: {left:?}"
            ));
        }
    }
    let processes = job_processes(&all_ids);
    if !processes.is_empty() {
        problems.push(format!(
            "after the cluster stopped, processes of jobs are alive: {processes:?}"
        ));
    }

    // No job ran twice at once.
    let recorded = events.finish();
    let lives = lives(&recorded, &prefix);
    let starts: usize = lives.values().map(Vec::len).sum();
    journal.say(format!(
        "docker events: {} recorded, {starts} containers of {} jobs",
        recorded.len(),
        lives.len()
    ));
    problems.extend(overlaps(&lives));
    for (job, lives) in &lives {
        if !all_ids.contains(job) {
            problems.push(format!("containers of an unknown job {job}: {lives:?}"));
        }
    }
    let mut per_attempt: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (job, lives) in &lives {
        for life in lives {
            *per_attempt
                .entry((job.clone(), life.attempt.clone()))
                .or_default() += 1;
        }
    }
    for ((job, attempt), count) in per_attempt {
        if count > 1 {
            notes.push(format!(
                "job {job} attempt {attempt} had {count} containers, one after the other"
            ));
        }
    }

    for note in &notes {
        journal.say(format!("note: {note}"));
    }
    assert!(
        problems.is_empty(),
        "fault campaign seed {seed} (replay with REELAY_FAULT_SEED={seed}) found {} problems:\n{}\n\nschedule:\n{}",
        problems.len(),
        problems.join("\n"),
        journal.text()
    );
    println!(
        "fault campaign seed {seed}: {JOBS} jobs and {} relay jobs on {} uploads, nothing lost, nothing duplicated",
        relay_ids.len(),
        uploads.len()
    );
    drop(containers);
}

#[cfg(test)]
mod checker {
    use super::*;

    fn event(
        action: &str,
        container: &str,
        job: &str,
        attempt: u32,
        node: &str,
        time: u64,
    ) -> serde_json::Value {
        serde_json::json!({
            "Type": "container",
            "Action": action,
            "Actor": {
                "ID": container,
                "Attributes": {
                    "reelay.job-id": job,
                    "reelay.attempt": attempt.to_string(),
                    "reelay.node-id": node,
                }
            },
            "timeNano": time,
        })
    }

    #[test]
    fn containers_of_one_job_one_after_the_other_do_not_overlap() {
        let events = [
            event("create", "c1", "j1", 1, "p-w0", 5),
            event("start", "c1", "j1", 1, "p-w0", 10),
            event("die", "c1", "j1", 1, "p-w0", 20),
            event("start", "c2", "j1", 2, "p-w1", 25),
            event("die", "c2", "j1", 2, "p-w1", 30),
            // Another job at the same time, and another cluster's node: not compared.
            event("start", "c3", "j2", 1, "p-w1", 12),
            event("die", "c3", "j2", 1, "p-w1", 40),
            event("start", "c4", "j1", 3, "other-w0", 11),
        ];
        let lives = lives(&events, "p-");
        assert_eq!(lives.len(), 2);
        assert_eq!(lives["j1"].len(), 2);
        assert!(overlaps(&lives).is_empty(), "{:?}", overlaps(&lives));
    }

    #[test]
    fn two_containers_of_one_job_alive_at_once_are_found() {
        let events = [
            event("start", "c1", "j1", 1, "p-w0", 10),
            event("start", "c2", "j1", 2, "p-w1", 15),
            event("die", "c1", "j1", 1, "p-w0", 20),
            event("die", "c2", "j1", 2, "p-w1", 30),
            // Never died: it overlaps whatever started after it.
            event("start", "c3", "j2", 1, "p-w0", 10),
            event("start", "c4", "j2", 2, "p-w0", 50),
            event("die", "c4", "j2", 2, "p-w0", 60),
        ];
        let found = overlaps(&lives(&events, "p-"));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("job j1 ran twice at once"), "{found:?}");
        assert!(found[1].contains("job j2"), "{found:?}");
    }

    #[test]
    fn the_expected_output_is_what_the_pipeline_writes() {
        let job = Planned {
            index: 0,
            request_id: String::new(),
            seed: 12,
            lines: 2,
            exit_code: 0,
        };
        assert_eq!(
            String::from_utf8(job.output()).unwrap(),
            "seed 12 line 1 value 389\nseed 12 line 2 value 406\n"
        );
        assert_eq!(
            job.progress_lines(),
            [
                "::progress 50 writing line=1",
                "::progress 100 writing line=2"
            ]
        );
        // Same seed, same plan.
        let a = plan_jobs(7);
        let b = plan_jobs(7);
        assert!(
            a.iter()
                .zip(&b)
                .all(|(a, b)| (a.seed, a.lines, a.exit_code) == (b.seed, b.lines, b.exit_code))
        );
        assert!(a.iter().any(|job| job.exit_code != 0), "some jobs fail");
    }
}
