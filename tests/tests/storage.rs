//! A damaged, missing or foreign data directory stops the server at start with a message that
//! names the directory and says what to do; it is never taken for an empty database.
//!
//! Each test makes real data once (a coordinator and a worker that ran jobs, stopped gracefully),
//! then for every case copies it, damages the copy, and starts a server on it. sled alone opens
//! most of these damages as an empty or shorter database; the checks are reelay-store's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reelay_proto::v1;
use reelay_proto::v1::job_service_client::JobServiceClient;
use reelay_proto::v1::worker_service_client::WorkerServiceClient;
use reelay_tests::TestCluster;
use reelay_tests::process::{ReelayProcess, copy_dir, free_port};
use tonic::transport::Channel;

/// Data dirs of a coordinator and a worker that ran jobs, stopped.
struct UsedDirs {
    dir: tempfile::TempDir,
    config: PathBuf,
    jobs: Vec<String>,
}

impl UsedDirs {
    fn coordinator(&self) -> PathBuf {
        self.dir.path().join("coordinator")
    }

    fn worker(&self) -> PathBuf {
        self.dir.path().join("worker")
    }

    /// A fresh copy of both data dirs for one case.
    fn copy(&self, case: &str) -> Copy {
        let root = self.dir.path().join(format!("case-{case}"));
        copy_dir(&self.coordinator(), &root.join("coordinator"));
        copy_dir(&self.worker(), &root.join("worker"));
        Copy { root }
    }
}

struct Copy {
    root: PathBuf,
}

impl Copy {
    fn coordinator(&self) -> PathBuf {
        self.root.join("coordinator")
    }

    fn worker(&self) -> PathBuf {
        self.root.join("worker")
    }

    /// The worker's sled directory.
    fn worker_state(&self) -> PathBuf {
        self.worker().join("state")
    }
}

async fn used_dirs() -> UsedDirs {
    let mut cluster = TestCluster::builder().workers(1).start().await;
    let mut jobs = Vec::new();
    for steps in ["1", "2", "3"] {
        let job = cluster
            .submit("count", &[("steps", steps), ("interval_ms", "1")])
            .await;
        cluster.wait_terminal(&job.id).await;
        jobs.push(job.id);
    }
    assert!(
        cluster.workers[0]
            .process
            .terminate(Duration::from_secs(20))
            .is_some_and(|status| status.success()),
        "the worker stops cleanly"
    );
    assert!(
        cluster
            .coordinator
            .terminate(Duration::from_secs(20))
            .is_some_and(|status| status.success()),
        "the coordinator stops cleanly"
    );
    let dir = tempfile::Builder::new()
        .prefix("reelay-storage-")
        .tempdir()
        .unwrap();
    copy_dir(
        &cluster.path().join("coordinator"),
        &dir.path().join("coordinator"),
    );
    copy_dir(&cluster.workers[0].data_dir, &dir.path().join("worker"));
    let config = dir.path().join("pipelines.toml");
    std::fs::copy(&cluster.config, &config).unwrap();
    UsedDirs { dir, config, jobs }
}

// === damages ===

fn truncate(file: &Path) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .unwrap()
        .set_len(0)
        .unwrap();
}

/// Cuts the data file of the sled database in `dir` to half its length (sled alone would recover
/// the first half as if after a crash).
fn cut_in_half(dir: &Path) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("db"))
        .unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len / 2).unwrap();
}

/// Overwrites the whole file with garbage of the same length.
fn garble(file: &Path) {
    let len = std::fs::metadata(file).unwrap().len().max(64) as usize;
    let garbage: Vec<u8> = (0..len).map(|i| (i * 7 + 13) as u8 ^ 0xa5).collect();
    std::fs::write(file, garbage).unwrap();
}

fn replace_with_file(dir: &Path) {
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::write(dir, b"not a directory").unwrap();
}

/// Overwrites sled's snapshot files in `dir` with garbage; plants one when there is none yet
/// (sled writes a snapshot when it opens a database; the coordinator's clean stop opens it once
/// more for that, the worker's does not).
fn garble_snapshots(dir: &Path) {
    let snapshots: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("snap."))
        })
        .collect();
    if snapshots.is_empty() {
        std::fs::write(dir.join("snap.0000000000100000"), b"").unwrap();
        garble(&dir.join("snap.0000000000100000"));
    }
    snapshots.iter().for_each(|snapshot| garble(snapshot));
}

// === servers on a data dir ===

fn coordinator(used: &UsedDirs, data_dir: &Path, log: &Path) -> (ReelayProcess, u16) {
    let port = free_port();
    let args = vec![
        "coordinator".to_owned(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--config".into(),
        used.config.display().to_string(),
    ];
    (
        ReelayProcess::start("coordinator", args, vec![], log.to_owned()),
        port,
    )
}

fn worker(used: &UsedDirs, data_dir: &Path, log: &Path) -> (ReelayProcess, u16) {
    let port = free_port();
    let args = vec![
        "worker".to_owned(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--config".into(),
        used.config.display().to_string(),
        // Nobody listens there: the worker serves on its own and keeps trying to register.
        "--coordinator".into(),
        format!("http://127.0.0.1:{}", free_port()),
        "--node-id".into(),
        "w0".into(),
        "--executor".into(),
        "process".into(),
    ];
    (
        ReelayProcess::start("worker", args, vec![], log.to_owned()),
        port,
    )
}

/// The process stops by itself, unsuccessfully, saying where and what.
fn assert_refused(process: &mut ReelayProcess, case: &str, named: &Path, says: &[&str]) {
    let Some(status) = process.wait_exit(Duration::from_secs(30)) else {
        process.terminate(Duration::from_secs(5));
        panic!(
            "{case}: the server started on a damaged data dir:\n{}",
            process.log_text()
        );
    };
    assert!(!status.success(), "{case}: exit status {status}");
    let log = process.log_text();
    assert!(
        log.contains(&named.display().to_string()),
        "{case}: the message names {}:\n{log}",
        named.display()
    );
    for words in says {
        assert!(
            log.contains(words),
            "{case}: the message says {words:?}:\n{log}"
        );
    }
    assert!(!log.contains("panicked"), "{case}: no panic:\n{log}");
}

async fn channel(port: u16, process: &mut ReelayProcess, case: &str) -> Channel {
    for _ in 0..300 {
        if let Ok(channel) = Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
        {
            return channel;
        }
        if let Some(status) = process.wait_exit(Duration::from_millis(50)) {
            panic!(
                "{case}: the server exited with {status}:\n{}",
                process.log_text()
            );
        }
    }
    panic!(
        "{case}: the server does not answer:\n{}",
        process.log_text()
    );
}

/// The coordinator serves every job of the data dir, finished.
async fn assert_coordinator_has_jobs(
    used: &UsedDirs,
    process: &mut ReelayProcess,
    port: u16,
    case: &str,
) {
    let mut jobs = JobServiceClient::new(channel(port, process, case).await);
    for id in &used.jobs {
        let mut found = None;
        for _ in 0..100 {
            match jobs.get_job(v1::GetJobRequest { id: id.clone() }).await {
                Ok(job) => {
                    found = Some(job.into_inner());
                    break;
                }
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(status) => panic!("{case}: job {id}: {status:?}\n{}", process.log_text()),
            }
        }
        let job = found.unwrap_or_else(|| panic!("{case}: job {id} not served"));
        assert_eq!(
            job.state,
            v1::JobState::Succeeded as i32,
            "{case}: {job:#?}"
        );
    }
    process.terminate(Duration::from_secs(10));
}

/// The worker still knows every attempt of the data dir.
async fn assert_worker_has_jobs(
    used: &UsedDirs,
    process: &mut ReelayProcess,
    port: u16,
    case: &str,
) {
    let mut worker = WorkerServiceClient::new(channel(port, process, case).await);
    for id in &used.jobs {
        let job = worker
            .get_job(v1::WorkerGetJobRequest { job_id: id.clone() })
            .await
            .unwrap_or_else(|status| panic!("{case}: job {id}: {status:?}\n{}", process.log_text()))
            .into_inner();
        assert_eq!(
            job.state,
            v1::JobState::Succeeded as i32,
            "{case}: {job:#?}"
        );
    }
    process.terminate(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_coordinator_data_dir_is_refused() {
    let used = used_dirs().await;
    let logs = used.dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    type Damage = fn(&Path);
    let refused: [(&str, Damage, &[&str]); 8] = [
        (
            "db truncated",
            |dir| truncate(&dir.join("db")),
            &["db is empty", "restore"],
        ),
        (
            "db cut short",
            |dir| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(dir.join("db"))
                    .unwrap()
                    .set_len(100)
                    .unwrap();
            },
            &["it was cut", "restore"],
        ),
        ("db cut in half", cut_in_half, &["it was cut", "restore"]),
        (
            // The clean stop's checkpoint left a snapshot that points into `db`: its garbage is
            // read as damaged data. (Without a snapshot sled reads it as an empty log, and the
            // missing schema record is what refuses it: the worker's case below.)
            "db overwritten",
            |dir| garble(&dir.join("db")),
            &["damaged", "restore"],
        ),
        (
            "db deleted, conf kept",
            |dir| std::fs::remove_file(dir.join("db")).unwrap(),
            &["db is missing", "restore"],
        ),
        (
            "conf overwritten",
            |dir| garble(&dir.join("conf")),
            &["damaged", "restore"],
        ),
        (
            "snapshot overwritten",
            garble_snapshots,
            &["damaged", "restore"],
        ),
        (
            "a file instead of the directory",
            replace_with_file,
            &["not a directory", "--data-dir"],
        ),
    ];
    for (case, damage, says) in refused {
        let copy = used.copy(&case.replace(' ', "-"));
        damage(&copy.coordinator());
        let log = logs.join(format!("{case}.log"));
        let (mut process, _) = coordinator(&used, &copy.coordinator(), &log);
        assert_refused(&mut process, case, &copy.coordinator(), says);
    }

    // Undamaged, or damaged where sled rebuilds what is lost (its conf is derived from the
    // settings): every job is still there.
    let intact: [(&str, Damage); 3] = [
        ("undamaged", |_| {}),
        ("conf emptied", |dir| truncate(&dir.join("conf"))),
        ("conf deleted", |dir| {
            std::fs::remove_file(dir.join("conf")).unwrap()
        }),
    ];
    for (case, damage) in intact {
        let copy = used.copy(&case.replace(' ', "-"));
        damage(&copy.coordinator());
        let log = logs.join(format!("{case}.log"));
        let (mut process, port) = coordinator(&used, &copy.coordinator(), &log);
        assert_coordinator_has_jobs(&used, &mut process, port, case).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_worker_data_dir_is_refused() {
    let used = used_dirs().await;
    let logs = used.dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    type Damage = fn(&Copy);
    type Named = fn(&Copy) -> PathBuf;
    let refused: [(&str, Damage, Named, &[&str]); 7] = [
        (
            "state/db truncated",
            |copy| truncate(&copy.worker_state().join("db")),
            Copy::worker_state,
            &["db is empty", "restore"],
        ),
        (
            "state/db cut in half",
            |copy| cut_in_half(&copy.worker_state()),
            Copy::worker_state,
            &["it was cut", "restore"],
        ),
        (
            "state/db overwritten",
            |copy| garble(&copy.worker_state().join("db")),
            Copy::worker_state,
            &["no schema record", "restore"],
        ),
        (
            "state/db deleted, conf kept",
            |copy| std::fs::remove_file(copy.worker_state().join("db")).unwrap(),
            Copy::worker_state,
            &["db is missing", "restore"],
        ),
        (
            "state/conf overwritten",
            |copy| garble(&copy.worker_state().join("conf")),
            Copy::worker_state,
            &["damaged", "restore"],
        ),
        (
            "state/snap.* overwritten",
            |copy| garble_snapshots(&copy.worker_state()),
            Copy::worker_state,
            &["damaged", "restore"],
        ),
        (
            "a file instead of the directory",
            |copy| replace_with_file(&copy.worker()),
            Copy::worker,
            &["not a directory", "--data-dir"],
        ),
    ];
    for (case, damage, named, says) in refused {
        let copy = used.copy(&case.replace([' ', '/', ','], "-"));
        damage(&copy);
        let log = logs.join(format!("{}.log", case.replace('/', "-")));
        let (mut process, _) = worker(&used, &copy.worker(), &log);
        assert_refused(&mut process, case, &named(&copy), says);
    }

    let copy = used.copy("undamaged");
    let (mut process, port) = worker(&used, &copy.worker(), &logs.join("undamaged.log"));
    assert_worker_has_jobs(&used, &mut process, port, "undamaged").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_dir_of_the_other_kind_is_refused() {
    let used = used_dirs().await;
    let logs = used.dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();

    let copy = used.copy("swapped");
    let (mut process, _) = coordinator(
        &used,
        &copy.worker(),
        &logs.join("coordinator-on-worker.log"),
    );
    assert_refused(
        &mut process,
        "a worker's data dir given to a coordinator",
        &copy.worker(),
        &["worker's data directory", "reelay-worker:2", "--data-dir"],
    );
    let (mut process, _) = worker(
        &used,
        &copy.coordinator(),
        &logs.join("worker-on-coordinator.log"),
    );
    assert_refused(
        &mut process,
        "a coordinator's data dir given to a worker",
        &copy.coordinator(),
        &["reelay-coordinator:3 database", "--data-dir"],
    );
    // Neither refusal wrote into the other's directory.
    assert!(!copy.coordinator().join("outputs").exists());
    assert!(!copy.worker().join("db").exists());
    assert!(!copy.worker().join("reelay.store").exists());
}

/// A data dir of the previous coordinator schema (2) is upgraded in place at start: its queued
/// jobs are listed (newest first, across priorities), kept in queue order and run; the next
/// start opens it as schema 3 without upgrading again.
#[tokio::test(flavor = "multi_thread")]
async fn a_schema_2_data_dir_is_upgraded_and_its_queue_runs() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/coordinator-schema-2");
    let queued_newest_first = [
        "01a2451b-2973-7836-b99c-8dc021a4ec2d",
        "01a2451b-28fe-7731-98e6-526df44cd713",
        "01a2451b-28bd-7fb1-970b-788e378ec752",
        "01a2451b-287d-7e67-a2ee-d727209c4715",
    ];
    let cancelled = "01a2451b-2939-77c7-93f7-5b7d39430f82";
    let mut cluster = TestCluster::builder()
        .coordinator_data(&fixture)
        .start()
        .await;
    assert!(
        cluster
            .coordinator
            .log_text()
            .contains("from schema 2 to 3"),
        "the upgrade is logged:\n{}",
        cluster.coordinator.log_text()
    );
    let list = |states: Vec<v1::JobState>| v1::ListJobsRequest {
        page_size: 2,
        states: states.into_iter().map(|state| state as i32).collect(),
        ..Default::default()
    };
    let mut jobs = cluster.jobs().await;
    let mut listed = Vec::new();
    let mut request = list(vec![v1::JobState::Queued]);
    loop {
        let page = jobs.list_jobs(request.clone()).await.unwrap().into_inner();
        listed.extend(page.jobs.into_iter().map(|job| job.id));
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert_eq!(
        listed, queued_newest_first,
        "queued jobs, newest first, in pages of 2"
    );
    let active = jobs
        .list_jobs(list(vec![v1::JobState::Queued, v1::JobState::Cancelled]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(active.jobs.len(), 2);
    assert_eq!(active.jobs[0].id, queued_newest_first[0]);
    assert_eq!(
        jobs.list_jobs(list(vec![v1::JobState::Cancelled]))
            .await
            .unwrap()
            .into_inner()
            .jobs
            .iter()
            .map(|job| job.id.as_str())
            .collect::<Vec<_>>(),
        [cancelled]
    );

    cluster.add_worker(reelay_tests::WorkerSpec::default());
    cluster.wait_ready_nodes(1).await;
    for id in queued_newest_first {
        let events = cluster.wait_terminal(id).await;
        let last = events.last().and_then(|event| event.job.as_ref()).unwrap();
        assert_eq!(last.state, v1::JobState::Succeeded as i32, "{last:#?}");
    }
    assert_eq!(
        reelay_store::sled_store::database_in(&cluster.path().join("coordinator")).as_deref(),
        Some("reelay-coordinator:3")
    );

    cluster.coordinator.restart();
    cluster.wait_serving().await;
    let log = cluster.coordinator.log_text();
    assert_eq!(
        log.matches("from schema 2 to 3").count(),
        1,
        "upgraded once:\n{log}"
    );
    let all = cluster.all_jobs().await;
    assert_eq!(all.len(), 5);
    assert!(
        all.iter()
            .all(|job| job.state == v1::JobState::Succeeded as i32 || job.id == cancelled),
        "{all:#?}"
    );
}
