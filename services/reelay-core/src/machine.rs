//! The job state machine: `apply(job, input, now) -> Outcome`.
//!
//! Pure: no storage, no network, no clock. The coordinator feeds it what happened (a user asked
//! to cancel, the scheduler picked a node, a worker reported an attempt, a node went away) and
//! gets back the job after the change — with its version one higher — and what to tell workers.
//!
//! Attempts: every dispatch to a worker is an attempt with its own number. A worker's report counts
//! only when it is about the job's current attempt on the job's current node; a report about any
//! other attempt is ignored and, when that attempt still runs, the worker is told to stop it. So a
//! job never counts twice.

use std::time::{Duration, SystemTime};

use crate::error::Error;
use crate::job::{Job, JobChange, JobState, OutputFile};

/// What a worker says about one attempt of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptReport {
    pub attempt: u32,
    /// Assigned (accepted, not started), Running, or a terminal state.
    pub state: JobState,
    pub progress: u32,
    pub stage: String,
    pub message: String,
    pub error: String,
    pub exit_code: Option<i32>,
    pub outputs: Vec<OutputFile>,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    pub fps: f64,
    pub eta_seconds: f64,
    /// The transfer under way (staging, uploading), if any.
    pub transfer: Option<crate::job::Transfer>,
}

/// Something that happened to a job.
#[derive(Debug, Clone)]
pub enum Input<'a> {
    /// The scheduler gives the queued job to `node`.
    Assign { node: &'a str },
    /// The worker could not take `attempt`. With `requeue`, the job waits in the queue again and the
    /// attempt does not count; otherwise the attempt failed with `error`.
    StartFailed {
        attempt: u32,
        error: String,
        requeue: bool,
    },
    /// A worker reports on an attempt.
    Report {
        node: &'a str,
        report: &'a AttemptReport,
    },
    /// A user asks to cancel.
    Cancel,
    /// A user asks for a new attempt of a finished job.
    Retry,
    /// The job's node stopped or started answering.
    NodeReachable { node: &'a str, reachable: bool },
    /// The job's node is gone for good (lost for too long, or removed): its attempt failed.
    NodeLost { node: &'a str, reason: &'a str },
    /// A node that came back says it still runs `attempt` of the job. Nothing about the job
    /// changes; an attempt that is not the current one is told to stop (it was superseded while
    /// the node was away: retried elsewhere after "node lost", or the job was cancelled).
    AttemptActive { node: &'a str, attempt: u32 },
}

/// What the coordinator must tell a worker after a change is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    StartOnWorker {
        node: String,
        attempt: u32,
    },
    CancelOnWorker {
        node: String,
        attempt: u32,
        reason: String,
    },
}

/// The result of applying an input.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The job after the change, version + 1; `None` when nothing changed.
    pub job: Option<Job>,
    pub change: JobChange,
    pub previous_state: JobState,
    pub actions: Vec<Action>,
}

/// Settings the machine needs from the coordinator's config.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// How long finished jobs are kept.
    pub retain: Duration,
}

impl Outcome {
    fn unchanged(job: &Job, actions: Vec<Action>) -> Self {
        Outcome {
            job: None,
            change: JobChange::Info,
            previous_state: job.state,
            actions,
        }
    }
}

/// Applies `input` to `job` at `now`.
pub fn apply(
    job: &Job,
    input: Input<'_>,
    now: SystemTime,
    policy: &Policy,
) -> Result<Outcome, Error> {
    let mut next = job.clone();
    let mut actions = Vec::new();
    match input {
        Input::Assign { node } => {
            if job.state != JobState::Queued {
                return Err(Error::precondition(format!(
                    "job {} is {}, only queued jobs are assigned",
                    job.id, job.state
                )));
            }
            reset_attempt(&mut next);
            next.error.clear();
            next.exit_code = None;
            next.state = JobState::Assigned;
            next.attempt = job.attempt + 1;
            next.node_id = Some(node.to_owned());
            next.node_reachable = true;
            next.message = format!("assigned to node {node}");
            actions.push(Action::StartOnWorker {
                node: node.to_owned(),
                attempt: next.attempt,
            });
        }
        Input::StartFailed {
            attempt,
            error,
            requeue,
        } => {
            if job.state != JobState::Assigned || job.attempt != attempt {
                return Ok(Outcome::unchanged(job, actions));
            }
            let node = job.node_id.clone().unwrap_or_default();
            if requeue {
                requeue_job(&mut next);
                // The attempt never ran: it does not use up the job's attempts.
                next.attempt = job.attempt - 1;
                next.message = format!("node {node} could not start it ({error}); queued again");
            } else {
                fail_attempt(
                    &mut next,
                    &format!("could not start on node {node}: {error}"),
                    now,
                    policy,
                );
            }
        }
        Input::Report { node, report } => {
            if !job.is_current_attempt(node, report.attempt) {
                if !report.state.is_terminal() {
                    actions.push(stop_superseded(job, node, report.attempt));
                }
                return Ok(Outcome::unchanged(job, actions));
            }
            merge_report(&mut next, node, report, now, policy);
        }
        Input::Cancel => match job.state {
            JobState::Queued => finish(
                &mut next,
                JobState::Cancelled,
                "cancelled before it started",
                now,
                policy,
            ),
            JobState::Assigned | JobState::Running => {
                let node = job.node_id.clone().unwrap_or_default();
                actions.push(Action::CancelOnWorker {
                    node: node.clone(),
                    attempt: job.attempt,
                    reason: "cancelled by user".to_owned(),
                });
                if job.cancel_requested {
                    return Ok(Outcome::unchanged(job, actions));
                }
                if job.node_reachable {
                    next.cancel_requested = true;
                    next.message = format!("cancelling on node {node}");
                } else {
                    let message = format!(
                        "cancelled while node {node} was unreachable; it stops the job when it is back"
                    );
                    finish(&mut next, JobState::Cancelled, &message, now, policy);
                }
            }
            state => {
                return Err(Error::precondition(format!(
                    "job {} is already {state}; there is nothing to cancel",
                    job.id
                )));
            }
        },
        Input::Retry => {
            if !job.state.is_terminal() {
                return Err(Error::precondition(format!(
                    "job {} is {}; only a finished job can be retried (cancel it first)",
                    job.id, job.state
                )));
            }
            requeue_job(&mut next);
            next.error.clear();
            next.exit_code = None;
            // A retry grants one attempt more than the job has used.
            next.spec.max_attempts = next.spec.max_attempts.max(job.attempt + 1);
            next.message = "queued again by retry".to_owned();
        }
        Input::NodeReachable { node, reachable } => {
            if job.slot_node() != Some(node) || job.node_reachable == reachable {
                return Ok(Outcome::unchanged(job, actions));
            }
            next.node_reachable = reachable;
            next.message = if reachable {
                format!("node {node} is back")
            } else {
                format!(
                    "node {node} does not answer; the job keeps its state until it is back or lost"
                )
            };
        }
        Input::NodeLost { node, reason } => {
            if job.slot_node() != Some(node) {
                return Ok(Outcome::unchanged(job, actions));
            }
            fail_attempt(&mut next, reason, now, policy);
            next.node_reachable = false;
        }
        Input::AttemptActive { node, attempt } => {
            if !job.is_current_attempt(node, attempt) {
                actions.push(stop_superseded(job, node, attempt));
            }
            return Ok(Outcome::unchanged(job, actions));
        }
    }
    Ok(finish_outcome(job, next, now, actions))
}

/// Tells `node` to stop `attempt` of `job`, which is not the job's current attempt there.
fn stop_superseded(job: &Job, node: &str, attempt: u32) -> Action {
    Action::CancelOnWorker {
        node: node.to_owned(),
        attempt,
        reason: format!("attempt {attempt} of job {} is superseded", job.id),
    }
}

pub(crate) fn finish_outcome(
    job: &Job,
    mut next: Job,
    now: SystemTime,
    actions: Vec<Action>,
) -> Outcome {
    let change = classify(job, &next);
    let Some(change) = change else {
        return Outcome::unchanged(job, actions);
    };
    next.version = job.version + 1;
    next.updated_at = now;
    Outcome {
        job: Some(next),
        change,
        previous_state: job.state,
        actions,
    }
}

/// What kind of change `after` is to `before`; `None` when nothing a client sees changed.
fn classify(before: &Job, after: &Job) -> Option<JobChange> {
    if before.state != after.state || before.attempt != after.attempt {
        return Some(JobChange::State);
    }
    if before.outputs != after.outputs {
        return Some(JobChange::Output);
    }
    if before.node_reachable != after.node_reachable {
        return Some(JobChange::Node);
    }
    if before.progress != after.progress
        || before.stage != after.stage
        || before.fps != after.fps
        || before.eta_seconds != after.eta_seconds
        || before.transfer != after.transfer
        || before.steps != after.steps
    {
        return Some(JobChange::Progress);
    }
    let unchanged_info = before.message == after.message
        && before.error == after.error
        && before.exit_code == after.exit_code
        && before.cancel_requested == after.cancel_requested
        && before.started_at == after.started_at
        && before.spec == after.spec;
    if unchanged_info {
        None
    } else {
        Some(JobChange::Info)
    }
}

fn merge_report(
    job: &mut Job,
    node: &str,
    report: &AttemptReport,
    now: SystemTime,
    policy: &Policy,
) {
    job.progress = report.progress.min(100);
    job.stage.clone_from(&report.stage);
    job.fps = report.fps;
    job.eta_seconds = report.eta_seconds;
    job.transfer = report.transfer;
    job.outputs.clone_from(&report.outputs);
    job.exit_code = report.exit_code;
    if !report.message.is_empty() {
        job.message.clone_from(&report.message);
    }
    match report.state {
        JobState::Queued | JobState::Assigned => {}
        JobState::Running => {
            if job.state == JobState::Assigned {
                job.state = JobState::Running;
                job.started_at = Some(report.started_at.unwrap_or(now));
                if report.message.is_empty() {
                    job.message = format!("running on node {node}");
                }
            }
        }
        JobState::Succeeded => {
            job.progress = 100;
            job.error.clear();
            job.started_at = job.started_at.or(report.started_at);
            finish(
                job,
                JobState::Succeeded,
                "succeeded",
                report.finished_at.unwrap_or(now),
                policy,
            );
        }
        JobState::Cancelled => {
            job.started_at = job.started_at.or(report.started_at);
            let message = if report.message.is_empty() {
                "cancelled"
            } else {
                report.message.as_str()
            };
            let message = message.to_owned();
            finish(
                job,
                JobState::Cancelled,
                &message,
                report.finished_at.unwrap_or(now),
                policy,
            );
        }
        JobState::Failed => {
            job.started_at = job.started_at.or(report.started_at);
            let error = if report.error.is_empty() {
                "the pipeline failed"
            } else {
                report.error.as_str()
            };
            let error = error.to_owned();
            if job.cancel_requested {
                // The user's cancel won the race against the failure: report what was asked.
                job.error = error;
                finish(
                    job,
                    JobState::Cancelled,
                    "cancelled by user",
                    report.finished_at.unwrap_or(now),
                    policy,
                );
            } else {
                fail_attempt(job, &error, report.finished_at.unwrap_or(now), policy);
            }
        }
    }
}

/// The current attempt failed: queue the job again when attempts remain, else fail it.
fn fail_attempt(job: &mut Job, error: &str, now: SystemTime, policy: &Policy) {
    job.error = error.to_owned();
    let max_attempts = job.spec.max_attempts.max(1);
    if job.attempt < max_attempts && !job.cancel_requested {
        let node = job.node_id.clone().unwrap_or_default();
        requeue_job(job);
        job.message = format!(
            "attempt {} failed on node {node}: {error}; retrying ({} of {max_attempts} attempts left)",
            job.attempt,
            max_attempts - job.attempt
        );
    } else {
        let message = format!("failed: {error}");
        finish(job, JobState::Failed, &message, now, policy);
    }
}

pub(crate) fn finish(
    job: &mut Job,
    state: JobState,
    message: &str,
    now: SystemTime,
    policy: &Policy,
) {
    job.state = state;
    job.message = message.to_owned();
    job.finished_at = Some(now);
    job.expires_at = Some(now + policy.retain);
    job.cancel_requested = false;
    job.fps = 0.0;
    job.eta_seconds = 0.0;
    job.transfer = None;
}

fn requeue_job(job: &mut Job) {
    reset_attempt(job);
    job.state = JobState::Queued;
    job.node_id = None;
    job.node_reachable = true;
}

/// Clears what belongs to one attempt.
fn reset_attempt(job: &mut Job) {
    job.progress = 0;
    job.stage.clear();
    job.outputs.clear();
    job.started_at = None;
    job.finished_at = None;
    job.expires_at = None;
    job.fps = 0.0;
    job.eta_seconds = 0.0;
    job.transfer = None;
    job.cancel_requested = false;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobId, JobSpec};

    const POLICY: Policy = Policy {
        retain: Duration::from_secs(3600),
    };

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn queued(max_attempts: u32) -> Job {
        let spec = JobSpec {
            pipeline: "p".into(),
            max_attempts,
            ..JobSpec::default()
        };
        Job::new(JobId::new(t(0)), spec, String::new(), t(0))
    }

    fn step(job: &Job, input: Input<'_>) -> Outcome {
        apply(job, input, t(10), &POLICY).unwrap()
    }

    fn report(attempt: u32, state: JobState) -> AttemptReport {
        AttemptReport {
            attempt,
            state,
            progress: 0,
            stage: String::new(),
            message: String::new(),
            error: String::new(),
            exit_code: None,
            outputs: vec![],
            started_at: None,
            finished_at: None,
            fps: 0.0,
            eta_seconds: 0.0,
            transfer: None,
        }
    }

    fn assigned(max_attempts: u32) -> Job {
        step(&queued(max_attempts), Input::Assign { node: "n1" })
            .job
            .unwrap()
    }

    #[test]
    fn happy_path_bumps_the_version_once_per_change() {
        let job = queued(1);
        let out = step(&job, Input::Assign { node: "n1" });
        assert_eq!(
            out.actions,
            [Action::StartOnWorker {
                node: "n1".into(),
                attempt: 1
            }]
        );
        let job = out.job.unwrap();
        assert_eq!(
            (job.state, job.attempt, job.version),
            (JobState::Assigned, 1, 2)
        );

        let job = step(
            &job,
            Input::Report {
                node: "n1",
                report: &report(1, JobState::Running),
            },
        )
        .job
        .unwrap();
        assert_eq!((job.state, job.version), (JobState::Running, 3));
        assert_eq!(job.started_at, Some(t(10)));

        let mut progress = report(1, JobState::Running);
        progress.progress = 40;
        progress.stage = "encoding".into();
        let out = step(
            &job,
            Input::Report {
                node: "n1",
                report: &progress,
            },
        );
        assert_eq!(out.change, JobChange::Progress);
        let job = out.job.unwrap();
        assert_eq!((job.progress, job.version), (40, 4));

        // The same report again changes nothing and keeps the version.
        assert!(
            step(
                &job,
                Input::Report {
                    node: "n1",
                    report: &progress
                }
            )
            .job
            .is_none()
        );

        let mut done = report(1, JobState::Succeeded);
        done.exit_code = Some(0);
        done.outputs = vec![OutputFile {
            name: "a".into(),
            size: 1,
            sha256: "x".into(),
        }];
        let job = step(
            &job,
            Input::Report {
                node: "n1",
                report: &done,
            },
        )
        .job
        .unwrap();
        assert_eq!(
            (job.state, job.progress, job.version),
            (JobState::Succeeded, 100, 5)
        );
        assert_eq!(job.expires_at, Some(t(10) + POLICY.retain));
        assert_eq!(job.outputs.len(), 1);
    }

    #[test]
    fn failure_is_retried_while_attempts_remain() {
        let job = assigned(2);
        let mut failed = report(1, JobState::Failed);
        failed.error = "exit code 3".into();
        failed.exit_code = Some(3);
        let job = step(
            &job,
            Input::Report {
                node: "n1",
                report: &failed,
            },
        )
        .job
        .unwrap();
        assert_eq!(job.state, JobState::Queued);
        assert_eq!(job.node_id, None);
        assert!(job.message.contains("retrying"), "{}", job.message);

        let job = step(&job, Input::Assign { node: "n2" }).job.unwrap();
        assert_eq!(job.attempt, 2);
        let mut failed = report(2, JobState::Failed);
        failed.error = "exit code 3".into();
        let job = step(
            &job,
            Input::Report {
                node: "n2",
                report: &failed,
            },
        )
        .job
        .unwrap();
        assert_eq!(job.state, JobState::Failed);
        assert_eq!(job.error, "exit code 3");
    }

    #[test]
    fn reports_of_other_attempts_or_nodes_are_ignored_and_stopped() {
        let job = assigned(3);
        for (node, attempt) in [("n2", 1), ("n1", 2), ("n1", 0)] {
            let out = step(
                &job,
                Input::Report {
                    node,
                    report: &report(attempt, JobState::Running),
                },
            );
            assert!(out.job.is_none());
            assert!(
                matches!(&out.actions[..], [Action::CancelOnWorker { node: n, attempt: a, .. }] if n == node && *a == attempt)
            );
        }
        // A superseded attempt that already finished is just ignored.
        let out = step(
            &job,
            Input::Report {
                node: "n2",
                report: &report(1, JobState::Succeeded),
            },
        );
        assert!(out.job.is_none() && out.actions.is_empty());
    }

    #[test]
    fn reports_after_a_terminal_state_do_not_count() {
        let job = assigned(1);
        let job = step(
            &job,
            Input::Report {
                node: "n1",
                report: &report(1, JobState::Succeeded),
            },
        )
        .job
        .unwrap();
        let out = step(
            &job,
            Input::Report {
                node: "n1",
                report: &report(1, JobState::Failed),
            },
        );
        assert!(out.job.is_none());
    }

    #[test]
    fn cancel_of_a_queued_job_is_immediate() {
        let out = step(&queued(1), Input::Cancel);
        let job = out.job.unwrap();
        assert_eq!(job.state, JobState::Cancelled);
        assert!(out.actions.is_empty());
    }

    #[test]
    fn cancel_of_a_running_job_waits_for_the_worker() {
        let job = assigned(3);
        let out = step(&job, Input::Cancel);
        assert!(matches!(
            &out.actions[..],
            [Action::CancelOnWorker { attempt: 1, .. }]
        ));
        let job = out.job.unwrap();
        assert!(job.cancel_requested);
        assert_eq!(job.state, JobState::Assigned);
        // The worker's failure report after a cancel ends the job as cancelled, without a retry.
        let job = step(
            &job,
            Input::Report {
                node: "n1",
                report: &report(1, JobState::Failed),
            },
        )
        .job
        .unwrap();
        assert_eq!(job.state, JobState::Cancelled);
    }

    #[test]
    fn cancel_while_the_node_is_unreachable_finishes_now() {
        let job = assigned(1);
        let job = step(
            &job,
            Input::NodeReachable {
                node: "n1",
                reachable: false,
            },
        )
        .job
        .unwrap();
        assert!(!job.node_reachable);
        let out = step(&job, Input::Cancel);
        assert_eq!(out.job.unwrap().state, JobState::Cancelled);
        assert_eq!(out.actions.len(), 1);
    }

    #[test]
    fn cancel_and_retry_check_the_state() {
        let job = step(&queued(1), Input::Cancel).job.unwrap();
        assert!(matches!(
            apply(&job, Input::Cancel, t(11), &POLICY),
            Err(Error::FailedPrecondition(_))
        ));
        assert!(matches!(
            apply(&assigned(1), Input::Retry, t(11), &POLICY),
            Err(Error::FailedPrecondition(_))
        ));
        let retried = step(&job, Input::Retry).job.unwrap();
        assert_eq!(retried.state, JobState::Queued);
        assert_eq!(retried.finished_at, None);
    }

    #[test]
    fn retry_grants_a_new_attempt() {
        let job = assigned(1);
        let job = step(
            &job,
            Input::Report {
                node: "n1",
                report: &report(1, JobState::Failed),
            },
        )
        .job
        .unwrap();
        assert_eq!(job.state, JobState::Failed);
        let job = step(&job, Input::Retry).job.unwrap();
        let job = step(&job, Input::Assign { node: "n1" }).job.unwrap();
        assert_eq!(job.attempt, 2);
        let job = step(
            &job,
            Input::Report {
                node: "n1",
                report: &report(2, JobState::Failed),
            },
        )
        .job
        .unwrap();
        assert_eq!(
            job.state,
            JobState::Failed,
            "one more attempt, not an endless loop"
        );
    }

    #[test]
    fn node_loss_fails_the_attempt_and_requeues() {
        let job = assigned(2);
        let job = step(
            &job,
            Input::NodeReachable {
                node: "n1",
                reachable: false,
            },
        )
        .job
        .unwrap();
        assert_eq!(
            job.state,
            JobState::Assigned,
            "an unreachable node is not a job failure"
        );
        let job = step(
            &job,
            Input::NodeLost {
                node: "n1",
                reason: "node lost",
            },
        )
        .job
        .unwrap();
        assert_eq!(job.state, JobState::Queued);
        assert_eq!(job.error, "node lost");
        // Other nodes' losses do not touch it.
        assert!(
            step(
                &job,
                Input::NodeLost {
                    node: "n9",
                    reason: "x"
                }
            )
            .job
            .is_none()
        );
    }

    #[test]
    fn an_attempt_found_on_a_returning_node_is_stopped_unless_it_is_current() {
        // Attempt 1 on n1; n1 is lost, the job is retried: attempt 2 on n2.
        let job = assigned(2);
        let job = step(
            &job,
            Input::NodeLost {
                node: "n1",
                reason: "node lost",
            },
        )
        .job
        .unwrap();
        let job = step(&job, Input::Assign { node: "n2" }).job.unwrap();
        // n1 comes back still running attempt 1: it is told to stop, the job does not change.
        let out = step(
            &job,
            Input::AttemptActive {
                node: "n1",
                attempt: 1,
            },
        );
        assert!(out.job.is_none());
        assert!(
            matches!(&out.actions[..], [Action::CancelOnWorker { node, attempt: 1, reason }]
                if node == "n1" && reason.contains("superseded")),
            "{:?}",
            out.actions
        );
        // The current attempt on its node is left alone.
        let out = step(
            &job,
            Input::AttemptActive {
                node: "n2",
                attempt: 2,
            },
        );
        assert!(out.job.is_none() && out.actions.is_empty());
        // A job cancelled while its node was unreachable: the node stops it when it is back.
        let job = step(
            &assigned(1),
            Input::NodeReachable {
                node: "n1",
                reachable: false,
            },
        )
        .job
        .unwrap();
        let job = step(&job, Input::Cancel).job.unwrap();
        assert_eq!(job.state, JobState::Cancelled);
        let out = step(
            &job,
            Input::AttemptActive {
                node: "n1",
                attempt: 1,
            },
        );
        assert!(out.job.is_none());
        assert!(matches!(
            &out.actions[..],
            [Action::CancelOnWorker { attempt: 1, .. }]
        ));
    }

    #[test]
    fn start_failure_can_requeue_without_using_an_attempt() {
        let job = assigned(1);
        let job = step(
            &job,
            Input::StartFailed {
                attempt: 1,
                error: "busy".into(),
                requeue: true,
            },
        )
        .job
        .unwrap();
        assert_eq!((job.state, job.attempt), (JobState::Queued, 0));
        let job = step(&job, Input::Assign { node: "n2" }).job.unwrap();
        let job = step(
            &job,
            Input::StartFailed {
                attempt: 1,
                error: "bad".into(),
                requeue: false,
            },
        )
        .job
        .unwrap();
        assert_eq!(job.state, JobState::Failed);
        assert!(
            job.error.contains("could not start on node n2"),
            "{}",
            job.error
        );
    }
}
