//! One long video across the fleet: wall time of `transcode` against `transcode-chunked` on the
//! same input with 1, 2 and 3 workers, and what split and join cost.
//!
//! Two fleets are measured. "Shared cores": the workers are processes on this machine and every
//! ffmpeg may use every core, so N workers share the same 2 cores — the chunked job can only win
//! what the single encoder leaves idle. "One core per node": each worker (and every pipeline it
//! starts) is pinned to a core of its own with `taskset`, which is what N one-core machines look
//! like; it shows the speed-up a real fleet gets, up to the cores this machine has.

use std::path::Path;
use std::time::{Duration, Instant};

use reelay_proto::v1;
use reelay_tests::artifacts::{input_spec, upload};
use reelay_tests::{TestCluster, WorkerSpec};

use crate::stats::median;

const TIMEOUT: Duration = Duration::from_secs(1800);

/// The encode both pipelines do, so that the comparison is of the same work.
const PARAMS: &[(&str, &str)] = &[("height", "720"), ("preset", "veryfast"), ("crf", "23")];

/// One fleet's figures (medians over the runs).
pub struct Figures {
    pub workers: usize,
    pub pinned: bool,
    pub transcode: f64,
    pub chunked: f64,
    pub split: f64,
    pub join: f64,
    /// Nodes that ran at least one piece, in the last run.
    pub nodes: usize,
    pub pieces: usize,
}

/// Measures both pipelines on a fleet of `workers` one-slot workers, `runs` times each.
pub async fn measure(
    input: &Path,
    segment_seconds: u32,
    workers: usize,
    pinned: bool,
    runs: usize,
) -> Figures {
    let data = std::fs::read(input).expect("read the bench input");
    let mut transcode = Vec::new();
    let mut chunked = Vec::new();
    let mut split = Vec::new();
    let mut join = Vec::new();
    let (mut nodes, mut pieces) = (0, 0);
    for _ in 0..runs {
        let mut builder = TestCluster::builder()
            .extra_config(&reelay_tests::chunk::pipelines_config())
            .node_prefix("bench-chunked-");
        for _ in 0..workers {
            builder = builder.worker(WorkerSpec {
                slots: 1,
                ..WorkerSpec::default()
            });
        }
        let cluster = builder.start().await;
        if pinned {
            let cores = cores();
            for (i, worker) in cluster.workers.iter().enumerate() {
                pin(worker.process.pid().expect("worker pid"), i % cores);
            }
        }
        let uploaded = upload(&cluster, "bench.mp4", &data).await;
        let uri = format!("upload:{}", uploaded.id);

        let (single, _) = run(&cluster, input_spec("transcode", PARAMS, &uri)).await;
        transcode.push(single);

        let mut params = PARAMS.to_vec();
        let segment = segment_seconds.to_string();
        params.push(("segment_seconds", &segment));
        let (whole, parent) = run(&cluster, input_spec("transcode-chunked", &params, &uri)).await;
        chunked.push(whole);
        let steps = parent.steps.unwrap_or_default();
        for (step, into) in [(&steps.split, &mut split), (&steps.join, &mut join)] {
            let seconds = match step {
                Some(piece) => run_seconds(&cluster.get(&piece.job_id).await),
                None => 0.0,
            };
            into.push(seconds);
        }
        let mut used: Vec<&str> = steps.pieces.iter().map(|p| p.node_id.as_str()).collect();
        used.sort();
        used.dedup();
        nodes = used.len();
        pieces = steps.pieces.len();
    }
    Figures {
        workers,
        pinned,
        transcode: median(&mut transcode),
        chunked: median(&mut chunked),
        split: median(&mut split),
        join: median(&mut join),
        nodes,
        pieces,
    }
}

/// Submits `spec` and waits for it to succeed: wall seconds from submit to the final record.
async fn run(cluster: &TestCluster, spec: v1::JobSpec) -> (f64, v1::Job) {
    let started = Instant::now();
    let job = cluster.submit_spec(spec).await;
    let done = cluster.wait_finished_within(&job.id, TIMEOUT).await;
    let took = started.elapsed().as_secs_f64();
    assert_eq!(
        done.state,
        v1::JobState::Succeeded as i32,
        "bench job failed: {done:#?}"
    );
    (took, done)
}

/// Seconds between a job's start and its end, as its record says.
fn run_seconds(job: &v1::Job) -> f64 {
    let seconds = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .map(|t| t.seconds as f64 + t.nanos as f64 / 1e9)
            .unwrap_or(0.0)
    };
    (seconds(&job.finished_at) - seconds(&job.started_at)).max(0.0)
}

/// Cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
}

/// Pins every thread of `pid` to `core`; the processes it starts afterwards inherit it.
fn pin(pid: u32, core: usize) {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &core.to_string(), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("taskset (util-linux)");
    assert!(status.success(), "taskset failed for pid {pid}");
}

/// Prints the section's table.
pub fn print(figures: &[Figures], seconds: u32, segment_seconds: u32, runs: usize) {
    println!(
        "\n## transcode vs transcode-chunked ({seconds} s of 1280x720 at 30 fps with audio, to 720p \
         H.264 veryfast; pieces of ~{segment_seconds} s; one-slot workers; medians of {runs})\n"
    );
    println!(
        "| fleet | workers | transcode | transcode-chunked | speed-up | per worker | split | join | pieces on nodes |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let base = |pinned: bool| {
        figures
            .iter()
            .find(|f| f.pinned == pinned && f.workers == 1)
            .map(|f| f.transcode)
    };
    for f in figures {
        let single = base(f.pinned).unwrap_or(f.transcode);
        let speedup = single / f.chunked;
        println!(
            "| {} | {} | {:.1} s | {:.1} s | {:.2}x | {:.2} | {:.1} s | {:.1} s | {} on {} |",
            if f.pinned {
                "one core per node"
            } else {
                "shared cores"
            },
            f.workers,
            f.transcode,
            f.chunked,
            speedup,
            speedup / f.workers as f64,
            f.split,
            f.join,
            f.pieces,
            f.nodes,
        );
    }
    println!(
        "\nspeed-up: the single-job transcode on one worker of the same fleet divided by the chunked \
         job's wall time (submit to final record, staging and output upload included); per worker: \
         speed-up / workers (the goal on real hardware is ≥ 0.8)."
    );
}
