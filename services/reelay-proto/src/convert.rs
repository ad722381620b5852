//! Conversions between the wire types of `reelay.v1` and the domain types of `reelay-core`.
//!
//! Wire -> domain conversions reject what the domain cannot hold (a missing spec, an unknown
//! state) with an `INVALID_ARGUMENT`-style error naming the field.

use std::time::{Duration, SystemTime};

use reelay_core::machine::AttemptReport;
use reelay_core::{
    Error, InputFile, Job, JobChange, JobId, JobSpec, JobState, Node, NodeState, OutputFile, Piece,
    Step, Steps, Transfer,
};

use crate::v1;

// === time ===

pub fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: since_epoch.as_secs() as i64,
        nanos: since_epoch.subsec_nanos() as i32,
    }
}

pub fn opt_timestamp(time: Option<SystemTime>) -> Option<prost_types::Timestamp> {
    time.map(timestamp)
}

pub fn system_time(ts: &prost_types::Timestamp) -> SystemTime {
    let seconds = ts.seconds.max(0) as u64;
    let nanos = ts.nanos.clamp(0, 999_999_999) as u32;
    SystemTime::UNIX_EPOCH + Duration::new(seconds, nanos)
}

pub fn opt_system_time(ts: Option<&prost_types::Timestamp>) -> Option<SystemTime> {
    ts.map(system_time)
}

// === job state and change ===

impl From<JobState> for v1::JobState {
    fn from(state: JobState) -> Self {
        match state {
            JobState::Queued => v1::JobState::Queued,
            JobState::Assigned => v1::JobState::Assigned,
            JobState::Running => v1::JobState::Running,
            JobState::Succeeded => v1::JobState::Succeeded,
            JobState::Failed => v1::JobState::Failed,
            JobState::Cancelled => v1::JobState::Cancelled,
        }
    }
}

/// Reads a wire job state (an `i32` in messages); `field` names it in the error.
pub fn job_state(value: i32, field: &str) -> Result<JobState, Error> {
    match v1::JobState::try_from(value) {
        Ok(v1::JobState::Queued) => Ok(JobState::Queued),
        Ok(v1::JobState::Assigned) => Ok(JobState::Assigned),
        Ok(v1::JobState::Running) => Ok(JobState::Running),
        Ok(v1::JobState::Succeeded) => Ok(JobState::Succeeded),
        Ok(v1::JobState::Failed) => Ok(JobState::Failed),
        Ok(v1::JobState::Cancelled) => Ok(JobState::Cancelled),
        Ok(v1::JobState::Unspecified) | Err(_) => Err(Error::invalid(
            field,
            format!("{value} is not a job state (JOB_STATE_QUEUED .. JOB_STATE_CANCELLED)"),
        )),
    }
}

impl From<JobChange> for v1::JobChange {
    fn from(change: JobChange) -> Self {
        match change {
            JobChange::Snapshot => v1::JobChange::Snapshot,
            JobChange::Created => v1::JobChange::Created,
            JobChange::State => v1::JobChange::State,
            JobChange::Progress => v1::JobChange::Progress,
            JobChange::Output => v1::JobChange::Output,
            JobChange::Node => v1::JobChange::Node,
            JobChange::Deleted => v1::JobChange::Deleted,
            JobChange::Info => v1::JobChange::Info,
        }
    }
}

// === spec, outputs, job ===

impl From<&JobSpec> for v1::JobSpec {
    fn from(spec: &JobSpec) -> Self {
        v1::JobSpec {
            pipeline: spec.pipeline.clone(),
            params: spec.params.clone().into_iter().collect(),
            input_path: spec.input_path.clone(),
            input_uri: spec.input_uri.clone(),
            node_id: spec.node_id.clone().unwrap_or_default(),
            priority: spec.priority,
            max_attempts: spec.max_attempts,
            timeout_seconds: spec.timeout_seconds,
            labels: spec.labels.clone().into_iter().collect(),
        }
    }
}

impl From<v1::JobSpec> for JobSpec {
    fn from(spec: v1::JobSpec) -> Self {
        JobSpec {
            pipeline: spec.pipeline,
            params: spec.params.into_iter().collect(),
            input_path: spec.input_path,
            input_uri: spec.input_uri,
            node_id: Some(spec.node_id).filter(|id| !id.is_empty()),
            priority: spec.priority,
            max_attempts: spec.max_attempts,
            timeout_seconds: spec.timeout_seconds,
            labels: spec.labels.into_iter().collect(),
        }
    }
}

impl From<&OutputFile> for v1::OutputFile {
    fn from(file: &OutputFile) -> Self {
        v1::OutputFile {
            name: file.name.clone(),
            size: file.size,
            sha256: file.sha256.clone(),
        }
    }
}

impl From<v1::OutputFile> for OutputFile {
    fn from(file: v1::OutputFile) -> Self {
        OutputFile {
            name: file.name,
            size: file.size,
            sha256: file.sha256,
        }
    }
}

impl From<&InputFile> for v1::InputFile {
    fn from(input: &InputFile) -> Self {
        v1::InputFile {
            uri: input.uri.clone(),
            name: input.name.clone(),
            size: input.size,
            sha256: input.sha256.clone(),
        }
    }
}

impl From<v1::InputFile> for InputFile {
    fn from(input: v1::InputFile) -> Self {
        InputFile {
            uri: input.uri,
            name: input.name,
            size: input.size,
            sha256: input.sha256,
        }
    }
}

impl From<Transfer> for v1::Transfer {
    fn from(transfer: Transfer) -> Self {
        v1::Transfer {
            done_bytes: transfer.done_bytes,
            total_bytes: transfer.total_bytes,
            bytes_per_second: transfer.bytes_per_second,
        }
    }
}

impl From<v1::Transfer> for Transfer {
    fn from(transfer: v1::Transfer) -> Self {
        Transfer {
            done_bytes: transfer.done_bytes,
            total_bytes: transfer.total_bytes,
            bytes_per_second: transfer.bytes_per_second,
        }
    }
}

impl From<&Piece> for v1::Piece {
    fn from(piece: &Piece) -> Self {
        v1::Piece {
            job_id: piece.job.to_string(),
            seconds: piece.seconds,
            state: v1::JobState::from(piece.state) as i32,
            progress: piece.progress,
            fps: piece.fps,
            node_id: piece.node.clone().unwrap_or_default(),
        }
    }
}

impl TryFrom<v1::Piece> for Piece {
    type Error = Error;

    fn try_from(piece: v1::Piece) -> Result<Self, Error> {
        Ok(Piece {
            job: JobId::parse(&piece.job_id, "piece.job_id")?,
            seconds: piece.seconds,
            state: job_state(piece.state, "piece.state")?,
            progress: piece.progress,
            fps: piece.fps,
            node: Some(piece.node_id).filter(|node| !node.is_empty()),
        })
    }
}

impl From<&Steps> for v1::Steps {
    fn from(steps: &Steps) -> Self {
        v1::Steps {
            split: steps.split.as_ref().map(Into::into),
            pieces: steps.pieces.iter().map(Into::into).collect(),
            join: steps.join.as_ref().map(Into::into),
            frame_rate: steps.frame_rate,
            total_seconds: steps.total_seconds,
        }
    }
}

impl TryFrom<v1::Steps> for Steps {
    type Error = Error;

    fn try_from(steps: v1::Steps) -> Result<Self, Error> {
        Ok(Steps {
            split: steps.split.map(Piece::try_from).transpose()?,
            pieces: steps
                .pieces
                .into_iter()
                .map(Piece::try_from)
                .collect::<Result<_, _>>()?,
            join: steps.join.map(Piece::try_from).transpose()?,
            frame_rate: steps.frame_rate,
            total_seconds: steps.total_seconds,
        })
    }
}

impl From<&Job> for v1::Job {
    fn from(job: &Job) -> Self {
        v1::Job {
            id: job.id.to_string(),
            spec: Some((&job.spec).into()),
            state: v1::JobState::from(job.state) as i32,
            progress: job.progress,
            stage: job.stage.clone(),
            message: job.message.clone(),
            error: job.error.clone(),
            exit_code: job.exit_code,
            node_id: job.node_id.clone().unwrap_or_default(),
            attempt: job.attempt,
            node_reachable: job.node_reachable,
            outputs: job.outputs.iter().map(Into::into).collect(),
            created_at: Some(timestamp(job.created_at)),
            started_at: opt_timestamp(job.started_at),
            finished_at: opt_timestamp(job.finished_at),
            updated_at: Some(timestamp(job.updated_at)),
            version: job.version,
            pending_reason: String::new(),
            queue_position: 0,
            fps: job.fps,
            eta_seconds: job.eta_seconds,
            expires_at: opt_timestamp(job.expires_at),
            request_id: job.request_id.clone(),
            cancel_requested: job.cancel_requested,
            input: job.input.as_ref().map(Into::into),
            transfer: job.transfer.map(Into::into),
            parent_id: job.parent_id.map(|id| id.to_string()).unwrap_or_default(),
            step: job
                .step
                .map(|step| step.name().to_owned())
                .unwrap_or_default(),
            piece: job.piece,
            more_inputs: job.more_inputs.iter().map(Into::into).collect(),
            steps: job.steps.as_ref().map(Into::into),
        }
    }
}

impl TryFrom<v1::Job> for Job {
    type Error = Error;

    fn try_from(job: v1::Job) -> Result<Self, Error> {
        let created_at = job
            .created_at
            .as_ref()
            .ok_or_else(|| Error::invalid("job.created_at", "missing"))?;
        Ok(Job {
            id: JobId::parse(&job.id, "job.id")?,
            spec: job
                .spec
                .ok_or_else(|| Error::invalid("job.spec", "missing"))?
                .into(),
            state: job_state(job.state, "job.state")?,
            progress: job.progress,
            stage: job.stage,
            message: job.message,
            error: job.error,
            exit_code: job.exit_code,
            node_id: Some(job.node_id).filter(|id| !id.is_empty()),
            attempt: job.attempt,
            node_reachable: job.node_reachable,
            outputs: job.outputs.into_iter().map(Into::into).collect(),
            created_at: system_time(created_at),
            started_at: opt_system_time(job.started_at.as_ref()),
            finished_at: opt_system_time(job.finished_at.as_ref()),
            updated_at: job
                .updated_at
                .as_ref()
                .map_or_else(|| system_time(created_at), system_time),
            version: job.version,
            fps: job.fps,
            eta_seconds: job.eta_seconds,
            expires_at: opt_system_time(job.expires_at.as_ref()),
            request_id: job.request_id,
            cancel_requested: job.cancel_requested,
            input: job.input.map(Into::into),
            transfer: job.transfer.map(Into::into),
            parent_id: match job.parent_id.as_str() {
                "" => None,
                id => Some(JobId::parse(id, "job.parent_id")?),
            },
            step: Step::parse(&job.step),
            piece: job.piece,
            more_inputs: job.more_inputs.into_iter().map(Into::into).collect(),
            steps: job.steps.map(Steps::try_from).transpose()?,
        })
    }
}

// === nodes ===

impl From<NodeState> for v1::NodeState {
    fn from(state: NodeState) -> Self {
        match state {
            NodeState::Ready => v1::NodeState::Ready,
            NodeState::Draining => v1::NodeState::Draining,
            NodeState::Offline => v1::NodeState::Offline,
        }
    }
}

impl From<&Node> for v1::Node {
    fn from(node: &Node) -> Self {
        v1::Node {
            id: node.id.clone(),
            address: node.address.clone(),
            labels: node.labels.clone().into_iter().collect(),
            slots: node.slots,
            running: node.running,
            state: v1::NodeState::from(node.state) as i32,
            last_seen: opt_timestamp(node.last_seen),
            version: node.version.clone(),
            executor: node.executor.clone(),
            drained: node.drained,
            condition: node.condition.clone(),
            registered_at: opt_timestamp(node.registered_at),
        }
    }
}

impl From<v1::Node> for Node {
    fn from(node: v1::Node) -> Self {
        let state = match v1::NodeState::try_from(node.state) {
            Ok(v1::NodeState::Ready) => NodeState::Ready,
            Ok(v1::NodeState::Draining) => NodeState::Draining,
            _ => NodeState::Offline,
        };
        Node {
            id: node.id,
            address: node.address,
            labels: node.labels.into_iter().collect(),
            slots: node.slots,
            running: node.running,
            state,
            last_seen: opt_system_time(node.last_seen.as_ref()),
            version: node.version,
            executor: node.executor,
            drained: node.drained,
            condition: node.condition,
            registered_at: opt_system_time(node.registered_at.as_ref()),
        }
    }
}

// === worker reports ===

impl TryFrom<&v1::WorkerJob> for AttemptReport {
    type Error = Error;

    fn try_from(job: &v1::WorkerJob) -> Result<Self, Error> {
        Ok(AttemptReport {
            attempt: job.attempt,
            state: job_state(job.state, "worker_job.state")?,
            progress: job.progress,
            stage: job.stage.clone(),
            message: job.message.clone(),
            error: job.error.clone(),
            exit_code: job.exit_code,
            outputs: job.outputs.iter().cloned().map(Into::into).collect(),
            started_at: opt_system_time(job.started_at.as_ref()),
            finished_at: opt_system_time(job.finished_at.as_ref()),
            fps: job.fps,
            eta_seconds: job.eta_seconds,
            transfer: job.transfer.map(Into::into),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_round_trips_through_the_wire_type() {
        let now = SystemTime::now();
        let spec = JobSpec {
            pipeline: "p".into(),
            node_id: Some("n1".into()),
            max_attempts: 2,
            ..JobSpec::default()
        };
        let mut job = Job::new(JobId::new(now), spec, "req".into(), now);
        job.exit_code = Some(3);
        job.outputs.push(OutputFile {
            name: "a.mp4".into(),
            size: 9,
            sha256: "ab".into(),
        });
        job.started_at = Some(now);
        job.input = Some(InputFile {
            uri: "upload:x".into(),
            name: "in.mp4".into(),
            size: 7,
            sha256: "cd".into(),
        });
        job.transfer = Some(Transfer {
            done_bytes: 3,
            total_bytes: 7,
            bytes_per_second: 1.5,
        });
        job.parent_id = Some(JobId::new(now));
        job.step = Some(Step::Map);
        job.piece = 4;
        job.steps = Some(Steps {
            split: Some(Piece::new(JobId::new(now), 0.0)),
            pieces: vec![Piece::new(JobId::new(now), 2.5)],
            join: None,
            frame_rate: 30.0,
            total_seconds: 2.5,
        });
        let wire = v1::Job::from(&job);
        assert_eq!(Job::try_from(wire).unwrap(), job);
    }

    #[test]
    fn rejects_unknown_states_and_missing_fields() {
        assert!(job_state(0, "states").is_err());
        assert!(job_state(42, "states").is_err());
        assert_eq!(job_state(3, "s").unwrap(), JobState::Running);
        let err = Job::try_from(v1::Job::default()).unwrap_err();
        assert!(err.to_string().contains("job.created_at"), "{err}");
    }
}
