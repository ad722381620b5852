//! Jobs made of jobs: a parent job of a pipeline with steps, and how its step jobs move it.
//!
//! A parent runs nowhere itself. It is RUNNING from its creation: its split job cuts the input into
//! pieces; when it succeeds the coordinator reads its manifest and makes a map job per piece; when
//! every piece succeeded, a join job; when that succeeds, the parent does, with the join's outputs.
//! Step jobs are ordinary jobs (attempts, retries, nodes, logs); the parent hears each change of
//! theirs ([`on_step`]) and keeps a view of them in [`Steps`]: progress, weighted by the share of
//! the duration a piece covers, frames per second summed, time left from the media left and the
//! speed of the pieces running.
//!
//! Pure, like [`crate::machine`]: the coordinator's engine makes and changes the step jobs the
//! [`StepAction`]s ask for.

use std::time::SystemTime;

use crate::error::Error;
use crate::job::{Job, JobChange, JobId, JobState, Piece, Step, Steps};
use crate::machine::{Outcome, Policy, finish, finish_outcome};

/// Shares of a parent's progress: the split, the pieces (by duration), the join.
const SPLIT_SHARE: f64 = 5.0;
const PIECES_SHARE: f64 = 90.0;
const JOIN_SHARE: f64 = 5.0;

/// What the engine must do for a parent after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepAction {
    /// The split succeeded: read its manifest from the artifact store, then [`expand`].
    ReadManifest { split: JobId },
    /// Every piece succeeded: make the join job.
    CreateJoin,
    /// Stop every step job that still runs.
    CancelSteps { reason: String },
    /// Run these step jobs again (they failed or were cancelled).
    RetrySteps { jobs: Vec<JobId> },
    /// The split never got through to its manifest: make the pieces again from it.
    Expand { split: JobId },
}

/// A change of a parent, and what the engine does next.
#[derive(Debug, Clone, PartialEq)]
pub struct ParentOutcome {
    pub outcome: Outcome,
    pub actions: Vec<StepAction>,
}

/// Makes a new job a parent: running (on no node), with no step yet.
pub fn start(job: &mut Job, now: SystemTime) {
    job.state = JobState::Running;
    job.started_at = Some(now);
    job.steps = Some(Steps::default());
    job.message = "split: waiting for a node".to_owned();
}

/// Records a step job just made for `parent` (its split, its join).
pub fn made(parent: &Job, step: Step, job: JobId, now: SystemTime) -> Outcome {
    let mut next = parent.clone();
    let steps = next.steps.get_or_insert_with(Steps::default);
    match step {
        Step::Split => steps.split = Some(Piece::new(job, 0.0)),
        Step::Join => steps.join = Some(Piece::new(job, 0.0)),
        Step::Map => {}
    }
    recompute(&mut next);
    finish_outcome(parent, next, now, Vec::new())
}

/// Records the pieces the split's manifest gave (`(job, seconds)`, in order) and the input's
/// frame rate.
pub fn expand(parent: &Job, pieces: &[(JobId, f64)], frame_rate: f64, now: SystemTime) -> Outcome {
    let mut next = parent.clone();
    let steps = next.steps.get_or_insert_with(Steps::default);
    steps.pieces = pieces
        .iter()
        .map(|(job, seconds)| Piece::new(*job, *seconds))
        .collect();
    steps.total_seconds = pieces.iter().map(|(_, seconds)| seconds).sum();
    steps.frame_rate = frame_rate;
    // Pieces come from the split's manifest: the split succeeded.
    if let Some(split) = steps.split.as_mut() {
        split.state = JobState::Succeeded;
        split.progress = 100;
        split.fps = 0.0;
    }
    recompute(&mut next);
    finish_outcome(parent, next, now, Vec::new())
}

/// The parent could not go on (its split's manifest is unreadable): it fails with `error`.
pub fn fail(parent: &Job, error: &str, now: SystemTime, policy: &Policy) -> ParentOutcome {
    let mut next = parent.clone();
    let actions = fail_into(&mut next, error, now, policy);
    ParentOutcome {
        outcome: finish_outcome(parent, next, now, Vec::new()),
        actions,
    }
}

/// The parent fails with `error`: its other steps are stopped, and it is FAILED once none runs
/// (so nothing of it is still going when it ends).
fn fail_into(next: &mut Job, error: &str, now: SystemTime, policy: &Policy) -> Vec<StepAction> {
    next.error = error.to_owned();
    next.cancel_requested = true;
    settle(next, now, policy);
    vec![StepAction::CancelSteps {
        reason: format!("job {} failed: {error}", next.id),
    }]
}

/// A parent that is stopping (cancelled, or failing) ends once none of its steps runs.
fn settle(next: &mut Job, now: SystemTime, policy: &Policy) {
    if has_active(next) {
        next.message = if next.error.is_empty() {
            "cancelling its steps".to_owned()
        } else {
            format!("failing: {}; stopping its other steps", next.error)
        };
        return;
    }
    if next.error.is_empty() {
        finish(
            next,
            JobState::Cancelled,
            "cancelled, with its steps",
            now,
            policy,
        );
    } else {
        let message = format!("failed: {}", next.error);
        finish(next, JobState::Failed, &message, now, policy);
    }
}

/// A step job of `parent` changed; `step` is it after the change.
pub fn on_step(parent: &Job, step: &Job, now: SystemTime, policy: &Policy) -> ParentOutcome {
    let mut next = parent.clone();
    let mut actions = Vec::new();
    let Some(steps) = next.steps.as_mut() else {
        return unchanged(parent);
    };
    let Some(piece) = steps.jobs_mut().find(|piece| piece.job == step.id) else {
        return unchanged(parent);
    };
    piece.state = step.state;
    piece.progress = if step.state == JobState::Succeeded {
        100
    } else {
        step.progress
    };
    piece.fps = if step.state == JobState::Running {
        step.fps
    } else {
        0.0
    };
    piece.node.clone_from(&step.node_id);
    if !parent.state.is_terminal() {
        actions = transition(&mut next, step, now, policy);
    }
    recompute(&mut next);
    ParentOutcome {
        outcome: finish_outcome(parent, next, now, Vec::new()),
        actions,
    }
}

/// What a step's change does to its running parent.
fn transition(next: &mut Job, step: &Job, now: SystemTime, policy: &Policy) -> Vec<StepAction> {
    let which = describe(next, step);
    if next.cancel_requested {
        settle(next, now, policy);
        return Vec::new();
    }
    match step.state {
        JobState::Failed => {
            let error = format!("{which} failed: {}", step.error);
            fail_into(next, &error, now, policy)
        }
        JobState::Cancelled => {
            let error = format!("{which} was cancelled");
            fail_into(next, &error, now, policy)
        }
        JobState::Succeeded => match step.step {
            Some(Step::Split) => vec![StepAction::ReadManifest { split: step.id }],
            Some(Step::Map) => {
                let all = next.steps.as_ref().is_some_and(|steps| {
                    steps.pieces.iter().all(|p| p.state == JobState::Succeeded)
                });
                let joined = next
                    .steps
                    .as_ref()
                    .is_some_and(|steps| steps.join.is_some());
                if all && !joined {
                    vec![StepAction::CreateJoin]
                } else {
                    Vec::new()
                }
            }
            Some(Step::Join) => {
                next.outputs.clone_from(&step.outputs);
                next.progress = 100;
                finish(next, JobState::Succeeded, "succeeded", now, policy);
                Vec::new()
            }
            None => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// `piece 3 (job …)`, `the split (job …)`.
fn describe(parent: &Job, step: &Job) -> String {
    match step.step {
        Some(Step::Map) => {
            let count = parent.steps.as_ref().map_or(0, |steps| steps.pieces.len());
            format!("piece {} of {count} (job {})", step.piece + 1, step.id)
        }
        Some(other) => format!("the {} step (job {})", other.name(), step.id),
        None => format!("job {}", step.id),
    }
}

fn has_active(parent: &Job) -> bool {
    parent.step_jobs().any(|piece| !piece.state.is_terminal())
}

/// A user cancels the parent: its steps are stopped; it is cancelled once none runs.
pub fn cancel(parent: &Job, now: SystemTime, policy: &Policy) -> Result<ParentOutcome, Error> {
    if parent.state.is_terminal() {
        return Err(Error::precondition(format!(
            "job {} is already {}; there is nothing to cancel",
            parent.id, parent.state
        )));
    }
    let mut next = parent.clone();
    next.cancel_requested = true;
    let actions = vec![StepAction::CancelSteps {
        reason: format!("job {} was cancelled", parent.id),
    }];
    settle(&mut next, now, policy);
    Ok(ParentOutcome {
        outcome: finish_outcome(parent, next, now, Vec::new()),
        actions,
    })
}

/// A user retries a finished parent: what did not succeed runs again, what did is kept.
pub fn retry(parent: &Job, now: SystemTime) -> Result<ParentOutcome, Error> {
    if !parent.state.is_terminal() {
        return Err(Error::precondition(format!(
            "job {} is {}; only a finished job can be retried (cancel it first)",
            parent.id, parent.state
        )));
    }
    let steps = parent.steps.clone().unwrap_or_default();
    let failed = |piece: &Piece| piece.state != JobState::Succeeded;
    let action = match (&steps.split, steps.pieces.is_empty(), &steps.join) {
        (Some(split), _, _) if failed(split) => StepAction::RetrySteps {
            jobs: vec![split.job],
        },
        (Some(split), true, _) => StepAction::Expand { split: split.job },
        (_, false, None) if steps.pieces.iter().any(failed) => StepAction::RetrySteps {
            jobs: steps
                .pieces
                .iter()
                .filter(|p| failed(p))
                .map(|p| p.job)
                .collect(),
        },
        (_, false, None) => StepAction::CreateJoin,
        (_, _, Some(join)) if failed(join) => StepAction::RetrySteps {
            jobs: vec![join.job],
        },
        _ => {
            return Err(Error::precondition(format!(
                "job {} has nothing left to run: every step succeeded",
                parent.id
            )));
        }
    };
    let mut next = parent.clone();
    next.state = JobState::Running;
    next.error.clear();
    next.finished_at = None;
    next.expires_at = None;
    next.cancel_requested = false;
    next.outputs.clear();
    next.message = "queued again by retry: the steps that did not succeed run again".to_owned();
    recompute(&mut next);
    Ok(ParentOutcome {
        outcome: finish_outcome(parent, next, now, Vec::new()),
        actions: vec![action],
    })
}

/// Progress, frames per second, time left and message of a running parent, from its steps.
fn recompute(job: &mut Job) {
    let Some(steps) = &job.steps else { return };
    if job.state.is_terminal() {
        job.fps = 0.0;
        job.eta_seconds = 0.0;
        return;
    }
    let share = |piece: Option<&Piece>, share: f64| {
        piece.map_or(0.0, |piece| {
            share * f64::from(piece.progress.min(100)) / 100.0
        })
    };
    let mut progress =
        share(steps.split.as_ref(), SPLIT_SHARE) + share(steps.join.as_ref(), JOIN_SHARE);
    // Media seconds the pieces have encoded.
    let done: f64 = steps
        .pieces
        .iter()
        .map(|piece| piece.seconds * f64::from(piece.progress.min(100)) / 100.0)
        .sum();
    if steps.total_seconds > 0.0 {
        progress += PIECES_SHARE * done / steps.total_seconds;
    }
    let fps: f64 = steps
        .jobs()
        .filter(|piece| piece.state == JobState::Running)
        .map(|piece| piece.fps)
        .sum();
    let eta = if fps > 0.0 && steps.frame_rate > 0.0 && !steps.pieces.is_empty() {
        // Media seconds left, at the speed the pieces run now (media seconds a second).
        (steps.total_seconds - done) / (fps / steps.frame_rate)
    } else {
        0.0
    };
    job.progress = (progress.floor() as u32).min(100);
    job.fps = fps;
    job.eta_seconds = eta;
    if !job.cancel_requested {
        job.message = message(steps);
    }
}

fn message(steps: &Steps) -> String {
    let where_ = |piece: &Piece| match (&piece.node, piece.state) {
        (Some(node), JobState::Running | JobState::Assigned) => format!("running on {node}"),
        (_, JobState::Queued) => "waiting for a node".to_owned(),
        (_, state) => state.name().to_owned(),
    };
    if let Some(join) = &steps.join {
        return format!("join: {}", where_(join));
    }
    if !steps.pieces.is_empty() {
        let done = steps
            .pieces
            .iter()
            .filter(|piece| piece.state == JobState::Succeeded)
            .count();
        let running = steps
            .pieces
            .iter()
            .filter(|piece| matches!(piece.state, JobState::Running | JobState::Assigned))
            .count();
        return format!(
            "pieces: {done} of {} done, {running} running",
            steps.pieces.len()
        );
    }
    match &steps.split {
        Some(split) if split.state == JobState::Succeeded => {
            "split done: reading its manifest".to_owned()
        }
        Some(split) => format!("split: {}", where_(split)),
        None => "split: waiting for a node".to_owned(),
    }
}

fn unchanged(job: &Job) -> ParentOutcome {
    ParentOutcome {
        outcome: Outcome {
            job: None,
            change: JobChange::Info,
            previous_state: job.state,
            actions: Vec::new(),
        },
        actions: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::job::JobSpec;

    const POLICY: Policy = Policy {
        retain: Duration::from_secs(3600),
    };

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    fn new_job(n: u64) -> Job {
        Job::new(JobId::new(at(n)), JobSpec::default(), String::new(), at(n))
    }

    /// A parent with a split and, when `pieces` is given, pieces of those seconds.
    fn parent_with(pieces: &[f64]) -> (Job, Job, Vec<Job>) {
        let mut parent = new_job(0);
        start(&mut parent, at(0));
        let mut split = new_job(1);
        split.parent_id = Some(parent.id);
        split.step = Some(Step::Split);
        let parent = made(&parent, Step::Split, split.id, at(1)).job.unwrap();
        let mut jobs = Vec::new();
        let mut ids = Vec::new();
        for (index, _) in pieces.iter().enumerate() {
            let mut piece = new_job(10 + index as u64);
            piece.parent_id = Some(parent.id);
            piece.step = Some(Step::Map);
            piece.piece = index as u32;
            ids.push(piece.id);
            jobs.push(piece);
        }
        let parent = if pieces.is_empty() {
            parent
        } else {
            let with: Vec<(JobId, f64)> = ids.iter().copied().zip(pieces.iter().copied()).collect();
            expand(&parent, &with, 30.0, at(2)).job.unwrap()
        };
        (parent, split, jobs)
    }

    fn with_state(job: &Job, state: JobState, progress: u32, fps: f64) -> Job {
        let mut job = job.clone();
        job.state = state;
        job.progress = progress;
        job.fps = fps;
        job.node_id = Some("w0".into());
        job
    }

    #[test]
    fn the_split_then_the_pieces_then_the_join_make_the_parent_succeed() {
        let (parent, split, _) = parent_with(&[]);
        assert_eq!(parent.state, JobState::Running);
        let done = with_state(&split, JobState::Succeeded, 100, 0.0);
        let step = on_step(&parent, &done, at(3), &POLICY);
        assert_eq!(step.actions, [StepAction::ReadManifest { split: split.id }]);
        let parent = step.outcome.job.unwrap();
        assert_eq!(parent.progress, 5);
        assert!(parent.message.contains("manifest"), "{}", parent.message);

        let (parent, _, pieces) = parent_with(&[10.0, 10.0, 5.0]);
        let mut parent = parent;
        for (index, piece) in pieces.iter().enumerate() {
            let done = with_state(piece, JobState::Succeeded, 100, 0.0);
            let step = on_step(&parent, &done, at(20 + index as u64), &POLICY);
            parent = step.outcome.job.unwrap();
            let last = index == pieces.len() - 1;
            assert_eq!(
                step.actions.contains(&StepAction::CreateJoin),
                last,
                "{index}"
            );
        }
        let mut join = new_job(50);
        join.parent_id = Some(parent.id);
        join.step = Some(Step::Join);
        let parent = made(&parent, Step::Join, join.id, at(51)).job.unwrap();
        let mut joined = with_state(&join, JobState::Succeeded, 100, 0.0);
        joined.outputs = vec![crate::job::OutputFile {
            name: "final.mp4".into(),
            size: 3,
            sha256: "ab".into(),
        }];
        let step = on_step(&parent, &joined, at(52), &POLICY);
        let parent = step.outcome.job.unwrap();
        assert_eq!(parent.state, JobState::Succeeded);
        assert_eq!(parent.outputs, joined.outputs);
        assert_eq!(parent.progress, 100);
        assert!(parent.expires_at.is_some());
    }

    #[test]
    fn progress_is_weighted_by_duration_and_fps_add_up() {
        let (parent, _, pieces) = parent_with(&[20.0, 10.0]);
        let first = with_state(&pieces[0], JobState::Running, 50, 40.0);
        let parent = on_step(&parent, &first, at(20), &POLICY)
            .outcome
            .job
            .unwrap();
        let second = with_state(&pieces[1], JobState::Running, 100, 20.0);
        let parent = on_step(&parent, &second, at(21), &POLICY)
            .outcome
            .job
            .unwrap();
        // The split's 5, then 90 × (20×0.5 + 10×1.0) / 30 = 60.
        assert_eq!(parent.progress, 65);
        assert_eq!(parent.fps, 60.0);
        // 10 media seconds left at 60 fps of a 30 fps input (2 media seconds a second): 5 s.
        assert!(
            (parent.eta_seconds - 5.0).abs() < 1e-9,
            "{}",
            parent.eta_seconds
        );
        assert!(
            parent.message.contains("0 of 2 done, 2 running"),
            "{}",
            parent.message
        );
    }

    #[test]
    fn a_failed_piece_fails_the_parent_naming_it_and_stops_the_others() {
        let (parent, _, pieces) = parent_with(&[10.0, 10.0, 10.0]);
        let mut failed = with_state(&pieces[1], JobState::Failed, 40, 0.0);
        failed.error = "exit code 4: boom".into();
        let step = on_step(&parent, &failed, at(30), &POLICY);
        let parent = step.outcome.job.unwrap();
        assert!(
            parent.error.contains("piece 2 of 3") && parent.error.contains("boom"),
            "{}",
            parent.error
        );
        assert!(matches!(step.actions[..], [StepAction::CancelSteps { .. }]));
        // It ends once its other pieces stopped: nothing of it goes on after it.
        assert_eq!(parent.state, JobState::Running);
        assert!(
            parent.message.starts_with("failing: "),
            "{}",
            parent.message
        );
        let first = with_state(&pieces[0], JobState::Cancelled, 10, 0.0);
        let parent = on_step(&parent, &first, at(31), &POLICY)
            .outcome
            .job
            .unwrap();
        assert_eq!(parent.state, JobState::Running);
        let third = with_state(&pieces[2], JobState::Succeeded, 100, 0.0);
        let step = on_step(&parent, &third, at(32), &POLICY);
        assert!(step.actions.is_empty(), "no join for a failing job");
        let parent = step.outcome.job.unwrap();
        assert_eq!(parent.state, JobState::Failed);
        assert!(
            parent.message.contains("piece 2 of 3"),
            "{}",
            parent.message
        );
    }

    #[test]
    fn cancel_waits_for_the_steps_then_retry_runs_only_what_failed() {
        let (parent, _, pieces) = parent_with(&[10.0, 10.0]);
        let running = with_state(&pieces[0], JobState::Running, 30, 10.0);
        let parent = on_step(&parent, &running, at(20), &POLICY)
            .outcome
            .job
            .unwrap();
        let done = with_state(&pieces[1], JobState::Succeeded, 100, 0.0);
        let parent = on_step(&parent, &done, at(21), &POLICY)
            .outcome
            .job
            .unwrap();
        let cancelled = cancel(&parent, at(22), &POLICY).unwrap();
        assert!(matches!(
            cancelled.actions[..],
            [StepAction::CancelSteps { .. }]
        ));
        let parent = cancelled.outcome.job.unwrap();
        assert_eq!(parent.state, JobState::Running);
        assert!(parent.cancel_requested);
        let stopped = with_state(&pieces[0], JobState::Cancelled, 30, 0.0);
        let parent = on_step(&parent, &stopped, at(23), &POLICY)
            .outcome
            .job
            .unwrap();
        assert_eq!(parent.state, JobState::Cancelled);
        assert!(cancel(&parent, at(24), &POLICY).is_err());

        let retried = retry(&parent, at(25)).unwrap();
        assert_eq!(
            retried.actions,
            [StepAction::RetrySteps {
                jobs: vec![pieces[0].id]
            }]
        );
        let parent = retried.outcome.job.unwrap();
        assert_eq!(parent.state, JobState::Running);
        assert!(!parent.cancel_requested && parent.error.is_empty());
        assert!(
            retry(&parent, at(26)).is_err(),
            "only finished jobs are retried"
        );
    }

    #[test]
    fn retry_after_a_failed_split_or_join_runs_that_step() {
        let (parent, split, _) = parent_with(&[]);
        let failed = with_state(&split, JobState::Failed, 0, 0.0);
        let parent = on_step(&parent, &failed, at(3), &POLICY)
            .outcome
            .job
            .unwrap();
        assert_eq!(parent.state, JobState::Failed);
        let retried = retry(&parent, at(4)).unwrap();
        assert_eq!(
            retried.actions,
            [StepAction::RetrySteps {
                jobs: vec![split.id]
            }]
        );
        // A split that succeeded but whose manifest was unreadable: read it again.
        let (parent, split, _) = parent_with(&[]);
        let done = with_state(&split, JobState::Succeeded, 100, 0.0);
        let parent = on_step(&parent, &done, at(3), &POLICY).outcome.job.unwrap();
        let parent = fail(&parent, "no manifest", at(4), &POLICY)
            .outcome
            .job
            .unwrap();
        assert_eq!(
            retry(&parent, at(5)).unwrap().actions,
            [StepAction::Expand { split: split.id }]
        );
    }
}
