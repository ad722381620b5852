//! CreateJobs: durable jobs per second in batches of 1, 10, 100 and 1,000 from 1 and 4 clients,
//! next to what sled itself does with the same writes (the group-commit limit of this machine).

use std::time::Instant;

use prost::Message;
use reelay_proto::v1;
use reelay_store::WriteBatch;
use reelay_tests::{TestCluster, spec};

use crate::limits;

/// Batch sizes measured.
pub const SIZES: [usize; 4] = [1, 10, 100, 1000];
/// Concurrent clients measured.
pub const CLIENTS: [usize; 2] = [1, 4];

fn item(n: usize) -> v1::CreateJobRequest {
    v1::CreateJobRequest {
        spec: Some(spec("noop", &[])),
        request_id: format!("batch-bench-{n}"),
    }
}

/// Durable jobs per second through CreateJobs in batches of `batch` from `clients` concurrent
/// clients (each on its own connection), `jobs` in all; every result must be a job.
pub async fn throughput(cluster: &TestCluster, jobs: usize, batch: usize, clients: usize) -> f64 {
    let batches = jobs.div_ceil(batch);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let mut jobs_client = cluster.jobs().await;
        tasks.push(tokio::spawn(async move {
            for b in (client..batches).step_by(clients) {
                let first = b * batch;
                let requests = (first..(first + batch).min(jobs)).map(item).collect();
                let results = jobs_client
                    .create_jobs(v1::CreateJobsRequest { requests })
                    .await
                    .expect("create jobs")
                    .into_inner()
                    .results;
                assert!(
                    results
                        .iter()
                        .all(|r| matches!(r.result, Some(v1::create_job_result::Result::Job(_)))),
                    "an item was refused: {results:?}"
                );
            }
        }));
    }
    for task in tasks {
        task.await.expect("client task");
    }
    jobs as f64 / started.elapsed().as_secs_f64()
}

/// The sled writes one created job costs the coordinator (as `txn.rs` and `store.rs` make them):
/// the job record, the queue entry and the request id. (Its creation event is stored later, with
/// its first change; a queued job has no state index entry: the queue lists it.)
fn job_writes(batch: &mut WriteBatch, n: u64) {
    let id = {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&n.to_be_bytes());
        id
    };
    let now = prost_types::Timestamp::from(std::time::SystemTime::now());
    let job = v1::Job {
        id: "0193a1b2-7c4e-7d10-9a0b-2f6c1e3d4a5b".into(),
        spec: Some(spec("noop", &[])),
        state: v1::JobState::Queued as i32,
        message: "queued".into(),
        node_reachable: true,
        created_at: Some(now),
        updated_at: Some(now),
        version: 1,
        request_id: format!("batch-bench-{n}"),
        ..Default::default()
    };
    batch.put("t", [&[1u8][..], &id].concat(), job.encode_to_vec());
    batch.put(
        "t",
        [&[4u8, 0x7f, 0xff, 0xff, 0xff][..], &id].concat(),
        v1::JobSpec::default().encode_to_vec(),
    );
    batch.put(
        "t",
        [&[5u8][..], job.request_id.as_bytes()].concat(),
        id.to_vec(),
    );
}

/// Jobs per second sled itself stores durably when each flush covers `batch` jobs' writes: the
/// ceiling of a durable CreateJobs here, without gRPC or the engine.
pub fn sled_jobs_per_second(batch: usize, jobs: usize) -> f64 {
    let (_dir, store) = limits::temp_store();
    let started = Instant::now();
    let mut n = 0u64;
    while (n as usize) < jobs {
        let mut writes = WriteBatch::default();
        for _ in 0..batch {
            job_writes(&mut writes, n);
            n += 1;
        }
        reelay_store::Store::commit(&store, &writes).expect("commit");
        reelay_store::Store::flush(&store).expect("flush");
    }
    n as f64 / started.elapsed().as_secs_f64()
}
