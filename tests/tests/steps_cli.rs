//! Jobs made of jobs through the command-line client, against a real cluster: `reelay job watch`
//! of a parent shows each piece's state, node and progress from the parent's own events, `reelay
//! job get` lists its steps, `job list` leaves them out, `-o json` stays one object per event, and
//! a failed piece is named in the outcome.

use reelay_tests::artifacts::random_bytes;
use reelay_tests::config::CHUNKY_PIPELINES;
use reelay_tests::process::{stderr, stdout};
use reelay_tests::{TestCluster, WorkerSpec};
use serde_json::Value;

/// Two workers of one slot each: two pieces at once, on two nodes.
async fn cluster() -> TestCluster {
    TestCluster::builder()
        .extra_config(CHUNKY_PIPELINES)
        .worker(WorkerSpec {
            slots: 1,
            ..WorkerSpec::default()
        })
        .worker(WorkerSpec {
            slots: 1,
            ..WorkerSpec::default()
        })
        .start()
        .await
}

/// Whether `line` (after its time stamp) shows `piece` making progress: `piece 2/3 40% · 10.0 fps
/// on w1`.
fn is_piece_progress(line: &str, piece: &str) -> bool {
    let Some((_, rest)) = line.split_once(&format!("  {piece} ")) else {
        return false;
    };
    let Some((percent, rest)) = rest.split_once("% · 10.0 fps on w") else {
        return false;
    };
    percent.parse::<u32>().is_ok_and(|p| p > 0 && p < 100) && !rest.is_empty()
}

#[tokio::test(flavor = "multi_thread")]
async fn job_watch_of_a_parent_shows_its_pieces_and_job_get_lists_its_steps() {
    let cluster = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("movie.bin"), random_bytes(96 << 10, 31)).unwrap();

    let submitted = cluster.cli(
        dir.path(),
        &[
            "job",
            "submit",
            "chunky",
            "--upload",
            "movie.bin",
            "-p",
            "pieces=3",
            "-p",
            "seconds=2",
            "-q",
        ],
    );
    assert!(submitted.status.success(), "{}", stderr(&submitted));
    let id = stdout(&submitted).trim().to_owned();

    // In a pipe: a line per change, the parent's and, indented under it, its steps'.
    let watched = cluster.cli(dir.path(), &["job", "watch", &id]);
    let out = stdout(&watched);
    assert!(
        watched.status.success(),
        "{out}{}\n{}",
        stderr(&watched),
        cluster.logs()
    );
    let lines: Vec<&str> = out.lines().collect();
    for piece in ["piece 1/3", "piece 2/3", "piece 3/3"] {
        assert!(
            lines
                .iter()
                .any(|line| line.contains(&format!("  {piece} RUNNING on w"))
                    && line.contains("(job ")),
            "no line says {piece} runs, on which node:\n{out}"
        );
        assert!(
            lines.iter().any(|line| is_piece_progress(line, piece)),
            "no progress line of {piece}:\n{out}"
        );
        assert!(
            lines
                .iter()
                .any(|line| line.ends_with(&format!("  {piece} SUCCEEDED"))),
            "{piece} never succeeded:\n{out}"
        );
    }
    assert!(
        lines.iter().any(|line| line.contains("  join ")),
        "no line of the join:\n{out}"
    );
    // The parent's own lines: how far its pieces are, and its outcome.
    assert!(
        lines.iter().any(|line| line.contains("pieces: ")
            && line.contains(" of 3 done")
            && !line.starts_with("  ")),
        "{out}"
    );
    assert!(
        out.contains(&format!("job {id} succeeded")),
        "no outcome:\n{out}"
    );
    assert!(out.contains("outputs: joined.bin"), "{out}");

    // `job get` lists the steps: step, piece, state, node, progress, job id.
    let got = cluster.cli(dir.path(), &["job", "get", &id]);
    assert!(got.status.success(), "{}", stderr(&got));
    let text = stdout(&got);
    let (_, table) = text
        .split_once("\nsteps:\n")
        .unwrap_or_else(|| panic!("no steps listed:\n{text}"));
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect())
        .collect();
    let steps = cluster.steps_of(&id).await;
    assert_eq!(rows.len(), steps.len(), "{table}");
    assert_eq!(steps.len(), 5, "{steps:#?}");
    let expected_pieces = ["-", "1/3", "2/3", "3/3", "-"];
    for ((row, step), piece) in rows.iter().zip(&steps).zip(expected_pieces) {
        assert_eq!(
            row[..6],
            [
                step.step.as_str(),
                piece,
                "SUCCEEDED",
                step.node_id.as_str(),
                "100%",
                step.id.as_str()
            ],
            "{table}"
        );
        assert!(step.node_id.starts_with('w'), "{step:#?}");
    }
    let nodes: std::collections::BTreeSet<&str> = rows.iter().map(|row| row[3]).collect();
    assert_eq!(nodes.len(), 2, "the pieces ran on both nodes: {table}");

    // A step's own `get` names its parent.
    let piece = stdout(&cluster.cli(dir.path(), &["job", "get", &steps[2].id]));
    let step_of = format!("job {id} (piece 2)");
    assert!(
        piece
            .lines()
            .any(|line| line.starts_with("step of:") && line.trim_end().ends_with(&step_of)),
        "{piece}"
    );

    // `job list` shows the parent alone; `--steps` adds them.
    let listed = stdout(&cluster.cli(dir.path(), &["job", "list"]));
    assert!(listed.contains(&id), "{listed}");
    assert!(
        steps.iter().all(|step| !listed.contains(&step.id)),
        "{listed}"
    );
    let all = stdout(&cluster.cli(dir.path(), &["job", "list", "--steps", "-o", "json"]));
    assert_eq!(all.lines().count(), 6, "{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_watch_of_a_parent_in_json_and_a_failed_piece_named() {
    let cluster = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.bin"), random_bytes(64 << 10, 32)).unwrap();

    // -o json: one object per event of the parent (no line of its own per step); the parent's
    // record carries every step.
    let json = cluster.cli(
        dir.path(),
        &[
            "job",
            "submit",
            "chunky",
            "--upload",
            "in.bin",
            "-p",
            "pieces=2",
            "-p",
            "seconds=1",
            "--watch",
            "-o",
            "json",
        ],
    );
    let out = stdout(&json);
    assert!(json.status.success(), "{out}{}", stderr(&json));
    let events: Vec<Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect();
    let parent = events[0]["job_id"].as_str().unwrap().to_owned();
    assert!(
        events
            .iter()
            .all(|event| event["job_id"] == parent.as_str())
    );
    let versions: Vec<u64> = events
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    assert_eq!(events.last().unwrap()["state"], "JOB_STATE_SUCCEEDED");
    assert!(
        events.iter().any(|event| {
            event["job"]["steps"]["pieces"]
                .as_array()
                .is_some_and(|pieces| {
                    pieces.iter().any(|piece| {
                        piece["state"] == "JOB_STATE_RUNNING"
                            && piece["node_id"]
                                .as_str()
                                .is_some_and(|n| n.starts_with('w'))
                    })
                })
        }),
        "no event shows a running piece and its node:\n{out}"
    );

    // A piece that fails: its line says so with its job id, and the outcome names it.
    let failed = cluster.cli(
        dir.path(),
        &[
            "job",
            "submit",
            "chunky",
            "--upload",
            "in.bin",
            "-p",
            "pieces=3",
            "-p",
            "fail=0001",
            "--watch",
        ],
    );
    assert_eq!(
        failed.status.code(),
        Some(1),
        "{}{}",
        stdout(&failed),
        stderr(&failed)
    );
    assert!(
        stdout(&failed).contains("  piece 2/3 FAILED (job "),
        "{}",
        stdout(&failed)
    );
    assert!(
        stderr(&failed).contains("piece 2 of 3"),
        "{}",
        stderr(&failed)
    );
}
