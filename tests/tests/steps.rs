//! Jobs made of jobs: a parent whose steps (split, a job per piece, join) are ordinary jobs across
//! the fleet. Small shell pipelines stand in for video here (tests/tests/chunked.rs runs the real
//! thing): the split cuts a file into pieces and writes the manifest, each piece is copied (slowly
//! when asked, failing when asked), the join puts the pieces back together.

use std::time::Duration;

use reelay_proto::v1;
use reelay_tests::artifacts::{download, input_spec, random_bytes, upload};
use reelay_tests::config::CHUNKY_PIPELINES;
use reelay_tests::{TestCluster, WorkerSpec, job_state, running_piece};

const TIMEOUT: Duration = Duration::from_secs(120);

async fn cluster(workers: usize) -> TestCluster {
    let mut builder = TestCluster::builder().extra_config(CHUNKY_PIPELINES);
    for _ in 0..workers {
        builder = builder.worker(WorkerSpec {
            slots: 1,
            ..WorkerSpec::default()
        });
    }
    builder.start().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parent_runs_its_pieces_across_the_fleet_and_gets_the_join_outputs() {
    let cluster = cluster(3).await;
    let data = random_bytes(3 << 20, 21);
    let uploaded = upload(&cluster, "movie.bin", &data).await;
    let parent = cluster
        .submit_spec(input_spec(
            "chunky",
            &[("pieces", "4"), ("seconds", "1")],
            &format!("upload:{}", uploaded.id),
        ))
        .await;
    assert_eq!(job_state(&parent), v1::JobState::Running, "{parent:#?}");
    assert!(parent.node_id.is_empty());
    let events = cluster.wait_terminal(&parent.id).await;
    let done = events
        .last()
        .and_then(|event| event.job.clone())
        .expect("the last event");
    assert_eq!(
        job_state(&done),
        v1::JobState::Succeeded,
        "{done:#?}\n{}",
        cluster.logs()
    );

    // The parent's outputs are the join's, and download as any job's.
    let names: Vec<&str> = done.outputs.iter().map(|file| file.name.as_str()).collect();
    assert_eq!(names, ["joined.bin"]);
    assert!(download(&cluster, &done.id, "joined.bin").await == data);

    // Its steps: the split, four pieces in order, the join, each an ordinary job of its parent.
    let steps = cluster.steps_of(&done.id).await;
    let kinds: Vec<(&str, u32)> = steps
        .iter()
        .map(|job| (job.step.as_str(), job.piece))
        .collect();
    assert_eq!(
        kinds,
        [
            ("split", 0),
            ("map", 0),
            ("map", 1),
            ("map", 2),
            ("map", 3),
            ("join", 0)
        ]
    );
    assert!(
        steps
            .iter()
            .all(|job| job.parent_id == done.id && job_state(job) == v1::JobState::Succeeded)
    );
    let nodes: std::collections::BTreeSet<&str> = steps
        .iter()
        .filter(|job| job.step == "map")
        .map(|job| job.node_id.as_str())
        .collect();
    assert!(nodes.len() >= 2, "pieces ran on {nodes:?}");
    let view = done.steps.clone().expect("the parent's steps");
    assert_eq!(view.pieces.len(), 4);
    assert_eq!(view.total_seconds, 1.0 + 2.0 + 3.0 + 4.0);

    // While it ran: progress grew (weighted by the pieces' seconds), pieces' fps added up.
    let running: Vec<&v1::Job> = events
        .iter()
        .filter_map(|event| event.job.as_ref())
        .filter(|job| job_state(job) == v1::JobState::Running)
        .collect();
    assert!(
        running.iter().any(|job| job.fps >= 20.0),
        "two or more pieces at once"
    );
    assert!(running.iter().any(|job| job.eta_seconds > 0.0));
    assert!(
        running
            .iter()
            .any(|job| job.progress > 5 && job.progress < 95)
    );

    // Top-level listings leave the steps out.
    let top = cluster
        .jobs()
        .await
        .list_jobs(v1::ListJobsRequest {
            top_level: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(top.len(), 1, "{top:#?}");
    // Steps go with their parent, not on their own.
    let err = cluster
        .jobs()
        .await
        .delete_job(v1::DeleteJobRequest {
            id: steps[1].id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    cluster
        .jobs()
        .await
        .delete_job(v1::DeleteJobRequest {
            id: done.id.clone(),
        })
        .await
        .unwrap();
    let gone = cluster
        .jobs()
        .await
        .get_job(v1::GetJobRequest {
            id: steps[2].id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_piece_fails_the_parent_by_name_and_a_retry_runs_only_it() {
    let cluster = cluster(2).await;
    let data = random_bytes(1 << 20, 22);
    let uploaded = upload(&cluster, "in.bin", &data).await;
    let parent = cluster
        .submit_spec(input_spec(
            "chunky",
            &[("pieces", "3"), ("fail", "0001")],
            &format!("upload:{}", uploaded.id),
        ))
        .await;
    let failed = cluster.wait_finished_within(&parent.id, TIMEOUT).await;
    assert_eq!(job_state(&failed), v1::JobState::Failed, "{failed:#?}");
    assert!(failed.error.contains("piece 2 of 3"), "{}", failed.error);
    assert!(failed.error.contains("refuses"), "{}", failed.error);
    let before = cluster.steps_of(&parent.id).await;
    assert!(
        before
            .iter()
            .all(|job| job_state(job) != v1::JobState::Running)
    );

    // The piece failed for good (its pipeline refuses it): retrying the parent runs it (and
    // only it) again; it fails again, and nothing else ran twice.
    let retried = cluster
        .jobs()
        .await
        .retry_job(v1::RetryJobRequest {
            id: parent.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job_state(&retried), v1::JobState::Running);
    let again = cluster.wait_finished_within(&parent.id, TIMEOUT).await;
    assert_eq!(job_state(&again), v1::JobState::Failed);
    let after = cluster.steps_of(&parent.id).await;
    assert_eq!(after.len(), before.len(), "no step was made anew");
    // What succeeded is kept; what failed or was stopped when the piece failed runs again.
    assert!(before.iter().any(|job| {
        job.step == "map" && job.piece == 1 && job_state(job) == v1::JobState::Failed
    }));
    for (old, new) in before.iter().zip(&after) {
        if job_state(old) == v1::JobState::Succeeded {
            assert_eq!(
                (new.attempt, job_state(new)),
                (old.attempt, v1::JobState::Succeeded),
                "{}",
                new.id
            );
        }
        if old.step == "map" && old.piece == 1 {
            assert_eq!(new.attempt, old.attempt + 1, "the failed piece ran again");
        }
    }
    // A step itself is retried through its parent.
    let err = cluster
        .jobs()
        .await
        .retry_job(v1::RetryJobRequest {
            id: after[2].id.clone(),
        })
        .await
        .unwrap_err();
    assert!(
        err.message().contains("retry that job"),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_the_parent_stops_every_step() {
    let cluster = cluster(2).await;
    let data = random_bytes(1 << 20, 23);
    let uploaded = upload(&cluster, "in.bin", &data).await;
    let parent = cluster
        .submit_spec(input_spec(
            "chunky",
            &[("pieces", "4"), ("seconds", "30")],
            &format!("upload:{}", uploaded.id),
        ))
        .await;
    cluster
        .wait_job(&parent.id, TIMEOUT, |job| {
            job.steps.as_ref().is_some_and(|steps| {
                steps
                    .pieces
                    .iter()
                    .filter(|p| p.state == v1::JobState::Running as i32)
                    .count()
                    >= 2
            })
        })
        .await;
    cluster
        .jobs()
        .await
        .cancel_job(v1::CancelJobRequest {
            id: parent.id.clone(),
        })
        .await
        .unwrap();
    let cancelled = cluster.wait_finished_within(&parent.id, TIMEOUT).await;
    assert_eq!(
        job_state(&cancelled),
        v1::JobState::Cancelled,
        "{cancelled:#?}"
    );
    let steps = cluster.steps_of(&parent.id).await;
    for step in &steps {
        assert!(
            matches!(
                job_state(step),
                v1::JobState::Succeeded | v1::JobState::Cancelled
            ),
            "{step:#?}"
        );
    }
    let ids: Vec<String> = steps.iter().map(|step| step.id.clone()).collect();
    let processes = reelay_tests::faults::job_processes(&ids);
    assert!(processes.is_empty(), "{processes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_of_a_worker_mid_piece_reruns_that_piece_only_and_a_coordinator_kill9_loses_nothing()
{
    let mut cluster = TestCluster::builder()
        .extra_config(CHUNKY_PIPELINES)
        .coordinator_arg("--node-lost-after")
        .coordinator_arg("2s")
        // One slot on w0: when it dies, exactly one piece runs there.
        .worker(WorkerSpec {
            slots: 1,
            ..WorkerSpec::default()
        })
        .worker(WorkerSpec {
            slots: 2,
            ..WorkerSpec::default()
        })
        .start()
        .await;
    let data = random_bytes(1 << 20, 24);
    let uploaded = upload(&cluster, "in.bin", &data).await;
    let spec = input_spec(
        "chunky",
        &[("pieces", "4"), ("seconds", "4")],
        &format!("upload:{}", uploaded.id),
    );
    let mut spec = spec;
    spec.max_attempts = 2;
    let parent = cluster.submit_spec(spec).await;
    let running = cluster
        .wait_job(&parent.id, TIMEOUT, |job| {
            running_piece(job, "w0", 20).is_some()
        })
        .await;
    let victim = running_piece(&running, "w0", 20).expect("a piece running on w0");
    cluster.workers[0].process.kill9();
    // The coordinator dies too, meanwhile: the parent and its steps resume from storage.
    cluster.coordinator.kill9();
    cluster.coordinator.restart();
    cluster.wait_serving().await;
    let done = cluster.wait_finished_within(&parent.id, TIMEOUT).await;
    assert_eq!(
        job_state(&done),
        v1::JobState::Succeeded,
        "{done:#?}\n{}",
        cluster.logs()
    );
    assert!(download(&cluster, &done.id, "joined.bin").await == data);
    for step in cluster.steps_of(&parent.id).await {
        let expected = if step.id == victim { 2 } else { 1 };
        assert_eq!(
            step.attempt, expected,
            "{} {}: {step:#?}",
            step.step, step.piece
        );
    }
}
