//! The command-line client against a real cluster: what it prints, its exit codes, downloads
//! verified by SHA-256, bad input explained.

use std::process::{Command, Output};

use reelay_tests::process::{reelay_bin, stderr, stdout};
use reelay_tests::{TestCluster, spec};
use serde_json::Value;

fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_watch_prints_json_events_and_exits_with_the_outcome() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let dir = tempfile::tempdir().unwrap();

    let ok = cluster.cli(
        dir.path(),
        &[
            "job",
            "submit",
            "count",
            "-p",
            "steps=5",
            "-p",
            "interval_ms=20",
            "--watch",
            "-o",
            "json",
        ],
    );
    assert!(ok.status.success(), "{}{}", stdout(&ok), stderr(&ok));
    let events = json_lines(&ok);
    assert_eq!(events[0]["change"], "JOB_CHANGE_SNAPSHOT");
    assert_eq!(events.last().unwrap()["state"], "JOB_STATE_SUCCEEDED");
    let versions: Vec<u64> = events
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    assert!(events.iter().any(|e| e["change"] == "JOB_CHANGE_PROGRESS"));

    let failed = cluster.cli(
        dir.path(),
        &[
            "job",
            "submit",
            "count",
            "-p",
            "steps=1",
            "-p",
            "exit_code=3",
            "--watch",
            "-o",
            "json",
        ],
    );
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    let last = json_lines(&failed).pop().unwrap();
    assert_eq!(last["state"], "JOB_STATE_FAILED");
    assert_eq!(last["error"], "exit code 3");
    assert!(stderr(&failed).contains("failed"), "{}", stderr(&failed));

    let quiet = cluster.cli(dir.path(), &["job", "submit", "count", "-q"]);
    let id = stdout(&quiet).trim().to_owned();
    assert_eq!(id.len(), 36, "only the id: {id:?}");
    cluster.wait_terminal(&id).await;
    let listed = cluster.cli(dir.path(), &["job", "list", "-o", "json", "-n", "2"]);
    let jobs = json_lines(&listed);
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0]["id"], id.as_str(), "newest first");
}

#[tokio::test(flavor = "multi_thread")]
async fn download_verifies_and_resumes() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let job = cluster
        .submit("count", &[("steps", "40"), ("interval_ms", "1")])
        .await;
    cluster.wait_terminal(&job.id).await;
    let dir = tempfile::tempdir().unwrap();
    let target = format!("{}/", dir.path().display());

    let saved = cluster.cli(
        dir.path(),
        &["job", "download", &job.id, "count.txt", "-O", &target],
    );
    assert!(saved.status.success(), "{}", stderr(&saved));
    assert!(stdout(&saved).contains("sha256 ok"), "{}", stdout(&saved));
    let path = dir.path().join("count.txt");
    let original = std::fs::read(&path).unwrap();
    let expected: String = (1..=40).map(|i| format!("step {i}\n")).collect();
    assert_eq!(original, expected.as_bytes());

    let again = cluster.cli(
        dir.path(),
        &["job", "download", &job.id, "count.txt", "-O", &target],
    );
    assert_eq!(again.status.code(), Some(1), "no silent overwrite");
    assert!(stderr(&again).contains("exists"), "{}", stderr(&again));

    // A cut-off download resumes from the file's size and ends identical.
    std::fs::write(&path, &original[..100]).unwrap();
    let resumed = cluster.cli(
        dir.path(),
        &[
            "job",
            "download",
            &job.id,
            "count.txt",
            "-O",
            &target,
            "--resume",
        ],
    );
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(std::fs::read(&path).unwrap(), original);

    // A damaged prefix is caught by the checksum.
    let mut damaged = original[..100].to_vec();
    damaged[0] = b'X';
    std::fs::write(&path, &damaged).unwrap();
    let mismatch = cluster.cli(
        dir.path(),
        &[
            "job",
            "download",
            &job.id,
            "count.txt",
            "-O",
            &target,
            "--resume",
        ],
    );
    assert_eq!(mismatch.status.code(), Some(1));
    assert!(
        stderr(&mismatch).contains("sha256 mismatch"),
        "{}",
        stderr(&mismatch)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_and_an_unreachable_server_are_explained() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let dir = tempfile::tempdir().unwrap();
    let bad_param = cluster.cli(dir.path(), &["job", "submit", "count", "-p", "steps=x"]);
    assert_eq!(bad_param.status.code(), Some(1));
    assert!(
        stderr(&bad_param).contains("spec.params.steps"),
        "{}",
        stderr(&bad_param)
    );
    let unknown = cluster.cli(dir.path(), &["job", "submit", "nope"]);
    assert!(
        stderr(&unknown).contains("spec.pipeline"),
        "{}",
        stderr(&unknown)
    );
    let missing = cluster.cli(
        dir.path(),
        &["job", "get", "01a22300-0000-7000-8000-000000000000"],
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("not found"),
        "{}",
        stderr(&missing)
    );
    let usage = cluster.cli(dir.path(), &["job", "submit", "count", "-p", "steps"]);
    assert_eq!(
        usage.status.code(),
        Some(2),
        "a wrong command line: {}",
        stderr(&usage)
    );

    // A relative --input is made absolute against the current directory.
    let relative = cluster.cli(
        dir.path(),
        &["job", "submit", "copy", "--input", "clip.mov", "-o", "json"],
    );
    let job = json_lines(&relative).pop().unwrap();
    assert_eq!(
        job["spec"]["input_path"],
        dir.path().join("clip.mov").display().to_string()
    );

    let down = Command::new(reelay_bin())
        .args(["--help"])
        .output()
        .unwrap();
    assert!(
        stdout(&down).contains("reelay dev"),
        "the top-level help starts a newcomer off"
    );
    let unreachable = Command::new(reelay_bin())
        .args(["job", "list", "--server", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(
        stderr(&unreachable).contains("cannot reach the coordinator"),
        "{}",
        stderr(&unreachable)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_and_pipelines() {
    let cluster = TestCluster::builder().workers(2).start().await;
    let dir = tempfile::tempdir().unwrap();
    let drained = cluster.cli(dir.path(), &["node", "drain", "w1", "-o", "json"]);
    let node = json_lines(&drained).pop().unwrap();
    assert_eq!(node["state"], "NODE_STATE_DRAINING");
    let mut pinned = spec("count", &[("steps", "1")]);
    pinned.node_id = "w1".into();
    let waiting = cluster.submit_spec(pinned).await;
    let listed = cluster.cli(dir.path(), &["job", "get", &waiting.id]);
    assert!(
        stdout(&listed).contains("draining"),
        "the pending reason is shown: {}",
        stdout(&listed)
    );
    let undrained = cluster.cli(dir.path(), &["node", "undrain", "w1"]);
    assert!(undrained.status.success());
    cluster.wait_terminal(&waiting.id).await;
    let nodes = cluster.cli(dir.path(), &["node", "list"]);
    assert!(
        stdout(&nodes).contains("w0") && stdout(&nodes).contains("w1"),
        "{}",
        stdout(&nodes)
    );
    let pipelines = cluster.cli(dir.path(), &["pipeline", "list", "-o", "json"]);
    let names: Vec<String> = json_lines(&pipelines)
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        names.contains(&"count".to_owned()) && names.contains(&"sleep".to_owned()),
        "{names:?}"
    );
}
