//! Jobs as the domain sees them: one id made by the coordinator, a validated spec, a state and
//! a version that grows by one on every change.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use crate::error::{Error, quote};

/// The one id of a job: a UUIDv7 made by the coordinator, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(uuid::Uuid);

impl JobId {
    /// A new id for a job created at `now` (UUIDv7: time-ordered, random below the millisecond).
    pub fn new(now: SystemTime) -> Self {
        let since_epoch = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            since_epoch.as_secs(),
            since_epoch.subsec_nanos(),
        );
        Self(uuid::Uuid::new_v7(ts))
    }

    /// The 16 bytes of the id; they sort like the ids (used as storage keys).
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(uuid::Uuid::from_bytes(bytes))
    }

    /// Parses a job id given by a client; `field` names the request field in the error.
    pub fn parse(text: &str, field: &str) -> Result<Self, Error> {
        if text.is_empty() {
            return Err(Error::invalid(field, "a job id is required"));
        }
        uuid::Uuid::parse_str(text).map(Self).map_err(|_| {
            Error::invalid(
                field,
                format!(
                    "{} is not a job id (a UUID such as 0193a1b2-...)",
                    quote(text)
                ),
            )
        })
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for JobId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s, "id")
    }
}

/// Where a job is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobState {
    Queued,
    Assigned,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Assigned,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// Succeeded, failed and cancelled jobs do not change any more (unless retried).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    /// Assigned and running jobs hold a slot on their node.
    pub fn holds_slot(self) -> bool {
        matches!(self, JobState::Assigned | JobState::Running)
    }

    /// A stable one-byte code, used in storage keys.
    pub fn code(self) -> u8 {
        match self {
            JobState::Queued => 1,
            JobState::Assigned => 2,
            JobState::Running => 3,
            JobState::Succeeded => 4,
            JobState::Failed => 5,
            JobState::Cancelled => 6,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Assigned => "assigned",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What changed in a job, as reported to watchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobChange {
    Snapshot,
    Created,
    State,
    Progress,
    Output,
    Node,
    Deleted,
    Info,
}

/// What to run; validated against its pipeline before a job is created.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobSpec {
    pub pipeline: String,
    pub params: BTreeMap<String, String>,
    /// A file already on the worker (absolute), or empty.
    pub input_path: String,
    /// The input in the artifact store (`upload:<id>`, `s3://BUCKET/KEY`), or empty.
    pub input_uri: String,
    /// Pin: run only on this node.
    pub node_id: Option<String>,
    pub priority: i32,
    /// At least 1.
    pub max_attempts: u32,
    /// 0: the pipeline's timeout.
    pub timeout_seconds: u32,
    /// Node selector: every label must be on the node.
    pub labels: BTreeMap<String, String>,
}

/// A job's input in the artifact store, resolved when the job was created.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InputFile {
    /// As the job named it: `upload:<id>` or `s3://BUCKET/KEY`.
    pub uri: String,
    /// The file name the pipeline sees.
    pub name: String,
    pub size: u64,
    /// Lowercase hex SHA-256; empty when not known before the worker fetches it.
    pub sha256: String,
}

/// What a job is to the job made of it: one of its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Cuts the input into pieces (and encodes its audio).
    Split,
    /// Encodes one piece.
    Map,
    /// Joins the encoded pieces into the output.
    Join,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Split => "split",
            Step::Map => "map",
            Step::Join => "join",
        }
    }

    pub fn parse(text: &str) -> Option<Step> {
        match text {
            "split" => Some(Step::Split),
            "map" => Some(Step::Map),
            "join" => Some(Step::Join),
            _ => None,
        }
    }
}

/// A parent job's steps as they go: the split job, a job per piece, the join job.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Steps {
    pub split: Option<Piece>,
    /// Empty until the split said how many pieces there are.
    pub pieces: Vec<Piece>,
    pub join: Option<Piece>,
    /// Frames per second of the input (from the split).
    pub frame_rate: f64,
    /// Seconds of media in all pieces.
    pub total_seconds: f64,
}

/// A step job, as its parent last heard of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub job: JobId,
    /// Seconds of the input it covers (its weight in the parent's progress); 0 for split and join.
    pub seconds: f64,
    pub state: JobState,
    pub progress: u32,
    pub fps: f64,
    pub node: Option<String>,
}

impl Piece {
    /// A step job just made.
    pub fn new(job: JobId, seconds: f64) -> Self {
        Piece {
            job,
            seconds,
            state: JobState::Queued,
            progress: 0,
            fps: 0.0,
            node: None,
        }
    }
}

impl Steps {
    /// Every step job made so far.
    pub fn jobs(&self) -> impl Iterator<Item = &Piece> {
        self.split.iter().chain(&self.pieces).chain(&self.join)
    }

    pub fn jobs_mut(&mut self) -> impl Iterator<Item = &mut Piece> {
        self.split
            .iter_mut()
            .chain(self.pieces.iter_mut())
            .chain(self.join.iter_mut())
    }
}

/// Bytes moved by the transfer under way (staging the input, uploading the outputs).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Transfer {
    pub done_bytes: u64,
    pub total_bytes: u64,
    pub bytes_per_second: f64,
}

/// A file a pipeline left in its output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    pub name: String,
    pub size: u64,
    /// Lowercase hex SHA-256.
    pub sha256: String,
}

/// A job and everything known about its current (or last) attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub spec: JobSpec,
    pub state: JobState,
    /// 0 to 100.
    pub progress: u32,
    pub stage: String,
    pub message: String,
    pub error: String,
    pub exit_code: Option<i32>,
    /// Node of the current or last attempt.
    pub node_id: Option<String>,
    /// Number of the current or last attempt, from 1; 0 before the first.
    pub attempt: u32,
    pub node_reachable: bool,
    pub outputs: Vec<OutputFile>,
    pub created_at: SystemTime,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    pub updated_at: SystemTime,
    /// +1 on every change.
    pub version: u64,
    pub fps: f64,
    pub eta_seconds: f64,
    /// When the finished job is removed by retention.
    pub expires_at: Option<SystemTime>,
    pub request_id: String,
    /// The user asked to cancel; the worker has not confirmed yet.
    pub cancel_requested: bool,
    /// The input from the artifact store (jobs created with an `input_uri`).
    pub input: Option<InputFile>,
    /// The transfer under way while the attempt stages its input or uploads its outputs.
    pub transfer: Option<Transfer>,
    /// The job this one is a step of.
    pub parent_id: Option<JobId>,
    /// Which step of its parent this job is.
    pub step: Option<Step>,
    /// For a map step: which piece, from 0.
    pub piece: u32,
    /// Inputs beside `input` (a join's pieces).
    pub more_inputs: Vec<InputFile>,
    /// For a job of a pipeline made of steps: its steps.
    pub steps: Option<Steps>,
}

impl Job {
    /// Every step job made so far, for a parent (none for any other job).
    pub fn step_jobs(&self) -> impl Iterator<Item = &Piece> {
        self.steps.iter().flat_map(Steps::jobs)
    }

    /// A freshly queued job, version 1.
    pub fn new(id: JobId, spec: JobSpec, request_id: String, now: SystemTime) -> Self {
        Job {
            id,
            spec,
            state: JobState::Queued,
            progress: 0,
            stage: String::new(),
            message: "queued".to_owned(),
            error: String::new(),
            exit_code: None,
            node_id: None,
            attempt: 0,
            node_reachable: true,
            outputs: Vec::new(),
            created_at: now,
            started_at: None,
            finished_at: None,
            updated_at: now,
            version: 1,
            fps: 0.0,
            eta_seconds: 0.0,
            expires_at: None,
            request_id,
            cancel_requested: false,
            input: None,
            transfer: None,
            parent_id: None,
            step: None,
            piece: 0,
            more_inputs: Vec::new(),
            steps: None,
        }
    }

    /// The node whose slot this job holds, if it holds one.
    pub fn slot_node(&self) -> Option<&str> {
        if self.state.holds_slot() {
            self.node_id.as_deref()
        } else {
            None
        }
    }

    /// A job made of steps (it runs nowhere itself: its steps do).
    pub fn is_parent(&self) -> bool {
        self.steps.is_some()
    }

    /// Whether `attempt` on `node` is the attempt this job currently runs.
    pub fn is_current_attempt(&self, node: &str, attempt: u32) -> bool {
        self.attempt == attempt && self.node_id.as_deref() == Some(node) && self.state.holds_slot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn job_ids_sort_by_creation_time() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let a = JobId::new(t0);
        let b = JobId::new(t0 + Duration::from_millis(1));
        assert!(a < b);
        assert!(a.as_bytes() < b.as_bytes());
    }

    #[test]
    fn job_id_round_trips_through_text_and_rejects_garbage() {
        let id = JobId::new(SystemTime::now());
        assert_eq!(JobId::parse(&id.to_string(), "id").unwrap(), id);
        let err = JobId::parse("job_123", "id").unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument { ref field, .. } if field == "id"),
            "{err}"
        );
        assert!(JobId::parse("", "id").is_err());
    }
}
