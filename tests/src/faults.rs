//! Helpers of the fault tests (node loss, the fault campaign): clusters whose workers sit behind
//! fault proxies, frozen processes, a job's history and logs, processes found by job.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reelay_proto::v1;

use crate::proxy::{FaultProxy, add_proxied_worker};
use crate::{TestCluster, WorkerSpec};

/// A cluster whose workers (as described) are each behind a fault proxy: the coordinator's link
/// to worker `i` goes through `proxies[i]`. Waits until every node is READY at its proxy's address.
pub async fn proxied_cluster(
    builder: crate::cluster::ClusterBuilder,
    workers: Vec<WorkerSpec>,
) -> (TestCluster, Vec<FaultProxy>) {
    let mut cluster = builder.start().await;
    let mut proxies = Vec::new();
    for spec in workers {
        let (_, proxy) = add_proxied_worker(&mut cluster, spec).await;
        proxies.push(proxy);
    }
    let nodes = cluster.wait_ready_nodes(proxies.len()).await;
    for (worker, proxy) in cluster.workers.iter().zip(&proxies) {
        let node = nodes
            .iter()
            .find(|node| node.id == worker.node_id)
            .expect("the worker's node");
        assert_eq!(
            node.address,
            proxy.url(),
            "node {} is reached through its proxy",
            node.id
        );
    }
    (cluster, proxies)
}

/// A process stopped with SIGSTOP; SIGCONT when dropped (also when a test fails).
#[derive(Debug)]
pub struct Frozen {
    pid: i32,
    thawed: bool,
}

impl Frozen {
    pub fn freeze(pid: u32) -> Frozen {
        let pid = pid as i32;
        kill(Pid::from_raw(pid), Signal::SIGSTOP).expect("SIGSTOP");
        Frozen { pid, thawed: false }
    }

    pub fn thaw(mut self) {
        self.cont();
    }

    fn cont(&mut self) {
        if !self.thawed {
            self.thawed = true;
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGCONT);
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.cont();
    }
}

/// What worker `index` itself records about a job (its GetJob, not through the coordinator).
pub async fn worker_job(cluster: &TestCluster, index: usize, id: &str) -> Option<v1::WorkerJob> {
    let request = v1::WorkerGetJobRequest {
        job_id: id.to_owned(),
    };
    match cluster.worker_client(index).await.get_job(request).await {
        Ok(job) => Some(job.into_inner()),
        Err(status) if status.code() == tonic::Code::NotFound => None,
        Err(status) => panic!("GetJob on worker {index}: {status}"),
    }
}

/// The run of job `id` on worker `index` (process group id or container id), once the worker
/// recorded it: a job is RUNNING a moment before its process or container exists.
pub async fn run_ref_of(cluster: &TestCluster, index: usize, id: &str) -> String {
    let found = poll(Duration::from_secs(10), async || {
        let record = worker_job(cluster, index, id).await?;
        (!record.run_ref.is_empty()).then_some(record.run_ref)
    })
    .await;
    found.unwrap_or_else(|| panic!("worker {index} records no run of job {id}"))
}

/// PIDs of the live processes (zombies excluded) whose process group is `pgid`.
pub fn process_group(pgid: i32) -> Vec<i32> {
    live_processes()
        .filter(|(_, stat)| stat_field(stat, 2) == Some(pgid.to_string()))
        .map(|(pid, _)| pid)
        .collect()
}

/// PIDs of the live processes whose environment has `REELAY_JOB_ID=<one of ids>` (pipeline
/// processes, in containers too: the host sees them), with the job id.
pub fn job_processes(ids: &[String]) -> Vec<(i32, String)> {
    live_processes()
        .filter_map(|(pid, _)| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let job = environ
                .split(|byte| *byte == 0)
                .filter_map(|entry| entry.strip_prefix(b"REELAY_JOB_ID="))
                .map(|id| String::from_utf8_lossy(id).into_owned())
                .find(|id| ids.contains(id))?;
            Some((pid, job))
        })
        .collect()
}

/// Live processes with their `/proc/PID/stat` text.
fn live_processes() -> impl Iterator<Item = (i32, String)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            (stat_field(&stat, 0).as_deref() != Some("Z")).then_some((pid, stat))
        })
}

/// Field `index` of a stat line after the command (0: state, 1: ppid, 2: pgrp).
fn stat_field(stat: &str, index: usize) -> Option<String> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(index).map(str::to_owned)
}

/// Polls `check` every 100 ms until it gives a value or `timeout` passes.
pub async fn poll<T>(timeout: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_the_command() {
        let stat = "1234 (sh -c (x)) S 1 1234 1234 0 -1";
        assert_eq!(stat_field(stat, 0).as_deref(), Some("S"));
        assert_eq!(stat_field(stat, 1).as_deref(), Some("1"));
        assert_eq!(stat_field(stat, 2).as_deref(), Some("1234"));
    }

    #[test]
    fn this_process_is_found_in_its_group() {
        let pid = std::process::id() as i32;
        let pgid = nix::unistd::getpgrp().as_raw();
        assert!(process_group(pgid).contains(&pid));
    }
}
