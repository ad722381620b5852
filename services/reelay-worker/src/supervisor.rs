//! The supervisor owns the attempts this worker runs: it accepts them (idempotently by job id and
//! attempt), enforces the node's slots, stops them on request, re-attaches to them after a restart,
//! and stops or detaches them at shutdown.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::{Duration, SystemTime};

use reelay_core::pipeline::Pipelines;
use reelay_proto::convert::timestamp;
use reelay_proto::v1;
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cache::InputCache;
use crate::error::WorkerError;
use crate::event_log::{Change, EventLog, is_terminal};
use crate::executor::Executor;
use crate::outputs;
use crate::runner;
use crate::store_access::StoreAccess;

/// What the supervisor needs to know about its node.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub node_id: String,
    pub data_dir: PathBuf,
    pub slots: u32,
    pub labels: BTreeMap<String, String>,
    /// Most bytes the input cache keeps.
    pub cache_bytes: u64,
    /// How long a transfer waits out an artifact store that does not answer before the job fails.
    pub transfer_deadline: Duration,
}

/// An attempt's inputs from the artifact store, each with where it is.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The input (`REELAY_INPUT`).
    pub first: Option<(v1::InputFile, v1::ObjectRef)>,
    /// More inputs (a join's pieces), beside it in `REELAY_INPUT_DIR`.
    pub more: Vec<(v1::InputFile, v1::ObjectRef)>,
}

/// Why a run was asked to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// The coordinator asked (a user's cancel, or the attempt was superseded): the message.
    Requested(String),
    /// The job ran longer than its timeout (seconds).
    Timeout(u32),
    /// The worker shuts down and this executor cannot leave runs behind.
    Shutdown,
}

/// Controls of one running attempt.
#[derive(Debug, Clone)]
pub(crate) struct RunControl {
    pub(crate) attempt: u32,
    /// Cancelled to stop the run (TERM, grace, KILL).
    pub(crate) stop: CancellationToken,
    /// Cancelled to stop following the run but leave it running (shutdown with Docker).
    pub(crate) detach: CancellationToken,
    reason: Arc<StdMutex<Option<StopReason>>>,
    /// Set just before the attempt's final state is recorded: from then on it holds no slot, so
    /// the coordinator, which frees the slot on that event, can start the next job at once.
    released: Arc<std::sync::atomic::AtomicBool>,
    /// Becomes true when the runner is done with the attempt.
    pub(crate) done: watch::Receiver<bool>,
    /// The attempt's `AttemptPhase`: at shutdown, a transfer is left to resume, a run is stopped
    /// or detached as its executor allows.
    phase: Arc<std::sync::atomic::AtomicI32>,
}

impl RunControl {
    /// Stops the run for `reason`; the first reason given wins.
    pub(crate) fn stop_for(&self, reason: StopReason) {
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(reason);
        self.stop.cancel();
    }

    pub(crate) fn release_slot(&self) {
        self.released
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn holds_slot(&self) -> bool {
        !self.released.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn set_phase(&self, phase: v1::AttemptPhase) {
        self.phase
            .store(phase as i32, std::sync::atomic::Ordering::SeqCst);
    }

    fn in_transfer(&self) -> bool {
        let phase = self.phase.load(std::sync::atomic::Ordering::SeqCst);
        phase == v1::AttemptPhase::Staging as i32 || phase == v1::AttemptPhase::Uploading as i32
    }

    pub(crate) fn reason(&self) -> Option<StopReason> {
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    async fn wait_done(mut self) {
        let _ = self.done.wait_for(|done| *done).await;
    }
}

/// The attempts of this worker.
#[derive(Debug)]
pub struct Supervisor {
    pub(crate) node: NodeSettings,
    pub(crate) pipelines: Pipelines,
    pub(crate) executor: Arc<dyn Executor>,
    pub(crate) log: Arc<EventLog>,
    /// The artifact store; `None` for a worker without a coordinator.
    pub(crate) store: Option<Arc<StoreAccess>>,
    /// Inputs fetched from the artifact store.
    pub(crate) cache: Arc<InputCache>,
    pub(crate) transfer_deadline: Duration,
    runs: Mutex<HashMap<String, RunControl>>,
    /// `None` when the executor can start jobs, else why not.
    pub(crate) condition: watch::Sender<Option<String>>,
    tasks: TaskTracker,
}

impl Supervisor {
    pub fn new(
        node: NodeSettings,
        pipelines: Pipelines,
        executor: Arc<dyn Executor>,
        log: Arc<EventLog>,
        store: Option<Arc<StoreAccess>>,
        cache: Arc<InputCache>,
    ) -> Arc<Self> {
        let (condition, _) = watch::channel(None);
        Arc::new(Supervisor {
            transfer_deadline: node.transfer_deadline,
            node,
            pipelines,
            executor,
            log,
            store,
            cache,
            runs: Mutex::new(HashMap::new()),
            condition,
            tasks: TaskTracker::new(),
        })
    }

    pub fn log(&self) -> &Arc<EventLog> {
        &self.log
    }

    pub fn output_dir(&self, job_id: &str) -> PathBuf {
        outputs::output_dir(&self.node.data_dir, job_id)
    }

    /// Where an attempt's input from the artifact store is linked for its pipeline.
    pub fn input_dir(&self, job_id: &str) -> PathBuf {
        self.node
            .data_dir
            .join(crate::data_dir::INPUTS_DIR)
            .join(job_id)
    }

    /// Attempts currently holding a slot.
    pub async fn running(&self) -> u32 {
        self.runs
            .lock()
            .await
            .values()
            .filter(|run| run.holds_slot())
            .count() as u32
    }

    /// Accepts attempt `attempt` of a job. Idempotent: the same attempt again returns its record.
    pub async fn start(
        self: &Arc<Self>,
        job_id: &str,
        spec: v1::JobSpec,
        attempt: u32,
        inputs: Inputs,
    ) -> Result<v1::WorkerJob, WorkerError> {
        reelay_core::JobId::parse(job_id, "job_id")?;
        if attempt == 0 {
            return Err(
                reelay_core::Error::invalid("attempt", "attempts are numbered from 1").into(),
            );
        }
        let mut runs = self.runs.lock().await;
        if let Some(existing) = self.log.get_job(job_id)? {
            if existing.attempt == attempt {
                return Ok(existing);
            }
            if existing.attempt > attempt {
                return Err(reelay_core::Error::precondition(format!(
                    "job {job_id} already has attempt {} on this node; attempt {attempt} is older",
                    existing.attempt
                ))
                .into());
            }
        }
        self.check_runnable(&spec)?;
        let busy = runs
            .iter()
            .filter(|(id, run)| id.as_str() != job_id && run.holds_slot())
            .count() as u32;
        if busy >= self.node.slots {
            return Err(WorkerError::Full(format!(
                "node {} is full: {busy} of {} slots busy",
                self.node.node_id, self.node.slots
            )));
        }
        let previous = runs.remove(job_id);
        if let Some(previous) = &previous {
            previous.stop_for(StopReason::Requested(format!(
                "superseded by attempt {attempt}"
            )));
        }
        let timeout_seconds = self
            .pipelines
            .get(&spec.pipeline)
            .map(|pipeline| pipeline.effective_timeout(&spec.clone().into()))
            .unwrap_or(spec.timeout_seconds);
        let (input, input_object) = inputs.first.unzip();
        let (more_inputs, more_objects) = inputs.more.into_iter().unzip();
        let record = v1::WorkerJob {
            job_id: job_id.to_owned(),
            attempt,
            spec: Some(spec),
            input,
            input_object,
            more_inputs,
            more_objects,
            state: v1::JobState::Assigned as i32,
            message: format!("accepted by node {}", self.node.node_id),
            accepted_at: Some(timestamp(SystemTime::now())),
            timeout_seconds,
            ..Default::default()
        };
        self.log
            .append_durable(vec![Change {
                job: Some(record.clone()),
                job_event: true,
                log: None,
            }])
            .await?;
        let control = self.spawn_runner(record.clone(), previous, false);
        runs.insert(job_id.to_owned(), control);
        Ok(record)
    }

    fn spawn_runner(
        self: &Arc<Self>,
        record: v1::WorkerJob,
        previous: Option<RunControl>,
        reattach: bool,
    ) -> RunControl {
        let (done_tx, done) = watch::channel(false);
        let control = RunControl {
            attempt: record.attempt,
            stop: CancellationToken::new(),
            detach: CancellationToken::new(),
            reason: Arc::new(StdMutex::new(None)),
            released: Arc::default(),
            done,
            phase: Arc::new(std::sync::atomic::AtomicI32::new(record.phase)),
        };
        let supervisor = Arc::clone(self);
        let run_control = control.clone();
        self.tasks.spawn(async move {
            if let Some(previous) = previous {
                previous.wait_done().await;
            }
            let job_id = record.job_id.clone();
            let attempt = record.attempt;
            runner::run_attempt(&supervisor, record, &run_control, reattach).await;
            supervisor.run_finished(&job_id, attempt).await;
            done_tx.send_replace(true);
        });
        control
    }

    async fn run_finished(&self, job_id: &str, attempt: u32) {
        let mut runs = self.runs.lock().await;
        if runs.get(job_id).is_some_and(|run| run.attempt == attempt) {
            runs.remove(job_id);
        }
    }

    /// Refuses a spec this node cannot run: a pipeline or parameters its config does not have
    /// (a config that differs from the coordinator's).
    fn check_runnable(&self, spec: &v1::JobSpec) -> Result<(), WorkerError> {
        let node = &self.node.node_id;
        let Some(pipeline) = self.pipelines.get(&spec.pipeline) else {
            return Err(reelay_core::Error::precondition(format!(
                "spec.pipeline: pipeline {} is not configured on node {node} (its --config differs \
                 from the coordinator's)",
                reelay_core::error::quote(&spec.pipeline)
            ))
            .into());
        };
        let params = spec.params.clone().into_iter().collect();
        pipeline.validate_params(&params).map_err(|err| {
            reelay_core::Error::precondition(format!("node {node} refuses the parameters: {err}"))
        })?;
        Ok(())
    }

    /// Stops an attempt (`attempt` 0: whichever runs). Returns the attempt's record.
    pub async fn cancel(
        &self,
        job_id: &str,
        attempt: u32,
        reason: &str,
    ) -> Result<v1::WorkerJob, WorkerError> {
        reelay_core::JobId::parse(job_id, "job_id")?;
        let record = self
            .log
            .get_job(job_id)?
            .ok_or_else(|| reelay_core::Error::not_found("job", job_id))?;
        let runs = self.runs.lock().await;
        if let Some(run) = runs
            .get(job_id)
            .filter(|run| attempt == 0 || run.attempt == attempt)
        {
            let reason = if reason.is_empty() {
                "cancelled"
            } else {
                reason
            };
            run.stop_for(StopReason::Requested(reason.to_owned()));
        }
        Ok(record)
    }

    /// Forgets a finished attempt and removes its outputs.
    pub async fn delete(&self, job_id: &str) -> Result<(), WorkerError> {
        // The id names the directory removed below: `..` or an empty id would remove far more.
        reelay_core::JobId::parse(job_id, "job_id")?;
        let runs = self.runs.lock().await;
        if runs.contains_key(job_id) {
            return Err(reelay_core::Error::precondition(format!(
                "job {job_id} is running here; cancel it first"
            ))
            .into());
        }
        if let Some(record) = self.log.get_job(job_id)?
            && !is_terminal(record.state)
        {
            return Err(reelay_core::Error::precondition(format!(
                "job {job_id} has not finished here"
            ))
            .into());
        }
        self.log.delete_job(job_id)?;
        for dir in [self.output_dir(job_id), self.input_dir(job_id)] {
            tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir))
                .await
                .map_err(|err| WorkerError::Internal(err.to_string()))?
                .or_else(|err| {
                    if err.kind() == std::io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(err)
                    }
                })?;
        }
        Ok(())
    }

    /// Resumes the attempts that were unfinished when the worker stopped, then removes leftover
    /// runs that belong to none of them.
    pub async fn recover(self: &Arc<Self>) -> Result<usize, WorkerError> {
        let active = self.log.active_jobs()?;
        let mut runs = self.runs.lock().await;
        let mut known = Vec::new();
        for record in active {
            known.push((record.job_id.clone(), record.attempt));
            // A pipeline that was running is followed again; an attempt staging or uploading
            // resumes its transfer.
            let reattach = record.state == v1::JobState::Running as i32
                && record.phase != v1::AttemptPhase::Uploading as i32;
            tracing::info!(job_id = %record.job_id, attempt = record.attempt, reattach, "resuming attempt");
            let control = self.spawn_runner(record.clone(), None, reattach);
            runs.insert(record.job_id, control);
        }
        drop(runs);
        for removed in self
            .executor
            .remove_orphans(&self.node.node_id, &known)
            .await
        {
            tracing::warn!(run = %removed, "removed a leftover run that belongs to no known attempt");
        }
        Ok(known.len())
    }

    /// Stops following runs. Runs that survive the worker (containers) are left running for the next
    /// start to re-attach; local processes are stopped and their attempts fail.
    pub async fn shutdown(&self, grace: Duration) {
        let detach = self.executor.name() != "process";
        for run in self.runs.lock().await.values() {
            // A transfer resumes at the next start, whatever the executor.
            if detach || run.in_transfer() {
                run.detach.cancel();
            } else {
                run.stop_for(StopReason::Shutdown);
            }
        }
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some attempts did not finish within the shutdown grace period");
        }
        if let Err(err) = self.log.flush().await {
            tracing::error!(error = %err, "final flush failed");
        }
    }

    /// What GetInfo reports.
    pub async fn info(&self) -> v1::WorkerInfo {
        let condition = self.condition.borrow().clone();
        v1::WorkerInfo {
            node_id: self.node.node_id.clone(),
            slots: self.node.slots,
            running: self.running().await,
            version: reelay_core::VERSION.to_owned(),
            executor: self.executor.name().to_owned(),
            labels: self.node.labels.clone().into_iter().collect(),
            executor_ready: condition.is_none(),
            condition: condition.unwrap_or_default(),
            last_seq: self.log.last_seq(),
            log_id: self.log.log_id().to_owned(),
        }
    }
}
