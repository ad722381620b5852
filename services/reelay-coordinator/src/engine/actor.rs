//! The engine's task: cycles of commands, one handler per command.

use std::sync::{Arc, RwLock, RwLockWriteGuard};
use std::time::SystemTime;

use prost::Message;
use reelay_core::error::quote;
use reelay_core::machine::{Action, AttemptReport, Input, Outcome, apply};
use reelay_core::names::{validate_labels, validate_node_id};
use reelay_core::scheduler::plan;
use reelay_core::{Error, InputFile, Job, JobId, JobSpec, JobState, Node, NodeState};
use reelay_proto::v1;
use reelay_store::Direction;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::cluster::{Cluster, NodeEntry};
use super::txn::{AfterCommit, Txn, WorkerAction};
use super::{
    Command, Created, Engine, EngineParts, EngineSettings, LinkUp, Registration, StartFailure,
};
use crate::error::{CoordinatorError, Result};
use crate::hub::Hub;
use crate::links::{LinkCall, Links};
use crate::metrics::Metrics;
use crate::store::{
    CURSORS, Cursor, GC, JOB_EVENTS, JOB_LOGS, JobStore, LOG_MARKS, LogMark, NODES, REQUESTS,
    encode_cursor, log_key,
};

/// Commands taken per cycle at most.
const MAX_CYCLE: usize = 1024;
/// Expired jobs removed per cycle at most.
const EXPIRE_BATCH: usize = 500;
/// Longest request id accepted.
const MAX_REQUEST_ID: usize = 256;
/// Most slots a node may declare.
const MAX_SLOTS: u32 = 4096;
/// Longest node address, version and executor name accepted at registration.
const MAX_ADDRESS: usize = 1024;
const MAX_NODE_WORD: usize = 64;

mod steps;

pub(super) struct Actor {
    store: JobStore,
    hub: Arc<Hub>,
    settings: EngineSettings,
    cluster: Arc<RwLock<Cluster>>,
    links: Links,
    metrics: Metrics,
    /// Woken when objects of deleted jobs are due for removal from the artifact store.
    janitor: Arc<tokio::sync::Notify>,
    /// The artifact store: split manifests are read from it.
    blobs: Arc<dyn reelay_artifacts::Blobs>,
    /// For timers that report back (node lost).
    commands: mpsc::WeakSender<Command>,
    /// Given to links so they can report.
    engine: Engine,
    /// Something happened that may let a queued job run.
    schedule_needed: bool,
}

impl Actor {
    /// Loads what the engine keeps in memory: nodes and the jobs holding their slots. Reads the
    /// `nodes` tree and the assigned/running index, never the whole `jobs` tree.
    pub(super) fn load(
        parts: EngineParts,
        settings: EngineSettings,
        cluster: Arc<RwLock<Cluster>>,
        commands: mpsc::WeakSender<Command>,
        engine: Engine,
    ) -> Result<Self> {
        let EngineParts {
            store,
            hub,
            links,
            metrics,
            janitor,
            blobs,
        } = parts;
        {
            let mut view = cluster
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for mut node in store.nodes()? {
                // Unknown until its link is up.
                node.state = NodeState::Offline;
                view.nodes.insert(node.id.clone(), NodeEntry::new(node));
            }
            for state in [JobState::Assigned, JobState::Running] {
                for id in store.ids_in_state(state, None, usize::MAX)? {
                    if let Some(job) = store.job(id)? {
                        view.track(None, Some(&job));
                    }
                }
            }
            // WatchNodes watchers that connect before the first cycle see the nodes, not nothing.
            hub.publish_nodes(view.nodes().iter().map(v1::Node::from).collect());
        }
        Ok(Actor {
            store,
            hub,
            settings,
            cluster,
            links,
            metrics,
            janitor,
            blobs,
            commands,
            engine,
            schedule_needed: true,
        })
    }

    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let nodes: Vec<(String, String)> = self
            .cluster()
            .nodes
            .values()
            .map(|entry| (entry.node.id.clone(), entry.node.address.clone()))
            .collect();
        for (id, address) in nodes {
            self.links.ensure(&id, &address, &self.engine);
            // Offline until the link says otherwise; lost if it never comes back.
            let generation = self.mark_offline(
                &id,
                "not connected since the coordinator started".to_owned(),
            );
            self.start_lost_timer(id, generation);
        }
        match self.resume_parents() {
            Ok(reads) => reads.into_iter().for_each(|read| self.read_manifest(read)),
            Err(err) => tracing::error!(error = %err, "cannot resume the jobs made of steps"),
        }
        loop {
            let first = tokio::select! {
                command = commands.recv() => command,
                () = shutdown.cancelled() => None,
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            while batch.len() < MAX_CYCLE {
                match commands.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            self.cycle(batch).await?;
        }
        tracing::info!("engine stopped");
        Ok(())
    }

    fn cluster(&self) -> RwLockWriteGuard<'_, Cluster> {
        self.cluster
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies the commands, stores the result, schedules, flushes once, then replies and acts.
    async fn cycle(&mut self, commands: Vec<Command>) -> Result<()> {
        let now = SystemTime::now();
        self.metrics.cycle_commands.observe(commands.len() as f64);
        let mut first = Txn::default();
        for command in commands {
            self.handle(command, &mut first, now);
        }
        let mut second = Txn::default();
        let stored = self.store_cycle(&mut first, &mut second, now).await;
        if let Err(err) = stored {
            // Storage failed: every caller of the cycle hears it, and the engine stops.
            tracing::error!(error = %err, "storage failed; the coordinator stops");
            for reply in first.replies.drain(..).chain(second.replies.drain(..)) {
                reply(Err(&err));
            }
            return Err(err);
        }
        self.finish(first);
        self.finish(second);
        self.publish_nodes();
        Ok(())
    }

    /// Tells `WatchNodes` watchers about every node that changed in this cycle (or went away).
    fn publish_nodes(&self) {
        let nodes = self.cluster().nodes().iter().map(v1::Node::from).collect();
        self.hub.publish_nodes(nodes);
    }

    /// Commits the commands' writes, schedules (a second batch), flushes once when needed.
    async fn store_cycle(
        &mut self,
        first: &mut Txn,
        second: &mut Txn,
        now: SystemTime,
    ) -> Result<()> {
        self.commit(first)?;
        if std::mem::take(&mut self.schedule_needed)
            && let Err(err) = self.schedule(second, now)
        {
            tracing::error!(error = %err, "scheduling pass failed");
        }
        self.commit(second)?;
        if first.durable || second.durable {
            // On this thread, telling the runtime to move its other tasks away meanwhile: a
            // hand-off to the blocking pool and back cost more than the flush's own ~0.2 ms. A
            // current-thread runtime (some tests) cannot hand its tasks away; it flushes inline.
            let store = self.store.raw();
            match tokio::runtime::Handle::current().runtime_flavor() {
                tokio::runtime::RuntimeFlavor::CurrentThread => store.flush()?,
                _ => tokio::task::block_in_place(|| store.flush())?,
            }
        }
        Ok(())
    }

    fn commit(&self, txn: &mut Txn) -> Result<()> {
        let batch = txn.take_writes();
        if batch.is_empty() {
            return Ok(());
        }
        Ok(self.store.raw().commit(&batch)?)
    }

    /// After storage: replies, watchers, workers.
    fn finish(&self, txn: Txn) {
        for reply in txn.replies {
            reply(Ok(()));
        }
        for event in txn.events {
            self.count(&event);
            if let Ok(id) = JobId::parse(&event.job_id, "job_id") {
                self.hub.publish_job(id, event);
            }
        }
        for (id, line) in txn.logs {
            self.hub.publish_log(id, line);
        }
        for WorkerAction {
            job_id,
            action,
            job,
        } in txn.actions
        {
            match action {
                Action::StartOnWorker { node, attempt } => {
                    let request = Box::new(crate::links::start_request(&job, attempt));
                    if !self.links.call(
                        &node,
                        LinkCall::Start {
                            job_id,
                            attempt,
                            request,
                        },
                    ) {
                        tracing::warn!(%node, %job_id, "node not connected; the start is sent when it is back");
                    }
                }
                Action::CancelOnWorker {
                    node,
                    attempt,
                    reason,
                } => {
                    self.links.call(
                        &node,
                        LinkCall::Cancel {
                            job_id,
                            attempt,
                            reason,
                        },
                    );
                }
            }
        }
        for after in txn.after {
            match after {
                AfterCommit::DeleteOnWorker { node, job_id } => {
                    self.links.call(&node, LinkCall::Delete { job_id });
                }
                AfterCommit::CollectGarbage => self.janitor.notify_one(),
                read @ AfterCommit::ReadManifest { .. } => self.read_manifest(read),
            }
        }
    }

    fn count(&self, event: &v1::JobEvent) {
        let state = event.job.as_ref().map(|job| job.state).unwrap_or_default();
        if event.change == v1::JobChange::Created as i32 {
            self.metrics.jobs_created.inc();
        } else if event.change == v1::JobChange::State as i32
            && let Ok(state) = reelay_proto::convert::job_state(state, "state")
            && state.is_terminal()
        {
            self.metrics
                .jobs_finished
                .get_or_create(&vec![("state", state.to_string())])
                .inc();
        }
    }

    fn handle(&mut self, command: Command, txn: &mut Txn, now: SystemTime) {
        match command {
            Command::Create {
                spec,
                request_id,
                input,
                reply,
            } => {
                let result = self.create(txn, spec, request_id, input, JobId::new(now), now);
                respond(txn, reply, result.map(|created| created.job), true);
            }
            Command::CreateMany { items, reply } => {
                // Ids of one cycle share their millisecond and are random below it: handed out
                // sorted, they queue a batch's jobs in the order of its requests.
                let mut ids: Vec<JobId> = items.iter().map(|_| JobId::new(now)).collect();
                ids.sort_unstable();
                let results: Vec<Result<Created>> = items
                    .into_iter()
                    .zip(ids)
                    .map(|(item, id)| {
                        self.create(txn, item.spec, item.request_id, item.input, id, now)
                    })
                    .collect();
                // Durable when something was created or found; all refused: nothing to flush.
                let durable = results.iter().any(Result::is_ok);
                respond(txn, reply, Ok(results), durable);
            }
            Command::Cancel { id, reply } => {
                let result = self.user_input(txn, id, Input::Cancel, now);
                respond(txn, reply, result, true);
            }
            Command::Retry { id, reply } => {
                let result = self.user_input(txn, id, Input::Retry, now);
                respond(txn, reply, result, true);
            }
            Command::Expand {
                parent,
                split,
                manifest,
            } => {
                if let Err(err) = self.expand(txn, (parent, split), manifest, now) {
                    tracing::error!(job_id = %parent, error = %err, "cannot make the pieces of a job");
                }
            }
            Command::Delete { id, reply } => {
                let result = self.delete(txn, id, now, false);
                respond(txn, reply, result, true);
            }
            Command::Register {
                registration,
                reply,
            } => {
                let result = self.register(txn, registration, now);
                respond(txn, reply, result, true);
            }
            Command::SetDrained { id, drained, reply } => {
                let result = self.set_drained(txn, &id, drained);
                respond(txn, reply, result, true);
            }
            Command::RemoveNode { id, reply } => {
                let result = self.remove_node(txn, &id, now);
                respond(txn, reply, result, true);
            }
            Command::WorkerEvents {
                node,
                log_id,
                events,
                reply,
            } => {
                let result = self.worker_events(txn, &node, &log_id, events, now);
                respond(txn, reply, result, false);
            }
            Command::LinkUp { up, reply } => {
                let holders = self.link_up(txn, up, now).unwrap_or_else(|err| {
                    tracing::error!(error = %err, "link up failed");
                    Vec::new()
                });
                txn.reply(move |_| {
                    let _ = reply.send(holders);
                });
            }
            Command::LinkDown { node, error } => {
                if let Err(err) = self.link_down(txn, &node, error, now) {
                    tracing::error!(%node, error = %err, "link down failed");
                }
            }
            Command::NodeLost { node, generation } => {
                if let Err(err) = self.node_lost(txn, &node, generation, now) {
                    tracing::error!(%node, error = %err, "node lost failed");
                }
            }
            Command::StartResult {
                job_id,
                attempt,
                node,
                failure,
            } => {
                if let Err(err) = self.start_result(txn, job_id, attempt, &node, failure, now) {
                    tracing::error!(%job_id, error = %err, "start result failed");
                }
            }
            Command::AttemptUnknown {
                job_id,
                attempt,
                node,
            } => {
                let reason =
                    format!("node {node} does not know attempt {attempt} (its data was lost)");
                let input = Input::NodeLost {
                    node: &node,
                    reason: &reason,
                };
                if let Err(err) = self.apply_to(txn, job_id, input, now) {
                    tracing::error!(%job_id, error = %err, "attempt unknown failed");
                }
            }
            Command::AttemptsActive { node, attempts } => {
                for (job_id, attempt) in attempts {
                    if let Err(err) = self.attempt_active(txn, job_id, attempt, &node, now) {
                        tracing::error!(%job_id, error = %err, "active attempt check failed");
                    }
                }
            }
            Command::Expire => {
                if let Err(err) = self.expire(txn, now) {
                    tracing::error!(error = %err, "expiry failed");
                }
            }
        }
    }

    // === jobs ===

    fn create(
        &mut self,
        txn: &mut Txn,
        spec: JobSpec,
        request_id: String,
        input: Option<InputFile>,
        id: JobId,
        now: SystemTime,
    ) -> Result<Created> {
        if request_id.len() > MAX_REQUEST_ID {
            return Err(Error::invalid("request_id", "request ids are at most 256 bytes").into());
        }
        if !request_id.is_empty() {
            let existing = match txn.requests.get(&request_id) {
                Some(id) => Some(*id),
                None => self.store.job_for_request(&request_id)?,
            };
            if let Some(id) = existing
                && let Some(job) = txn.job(&self.store, id)?
            {
                return Ok(Created { job, new: false });
            }
        }
        let spec = self.settings.pipelines.validate(&spec)?;
        let mut job = Job::new(id, spec, request_id.clone(), now);
        job.input = input;
        if self
            .settings
            .pipelines
            .get(&job.spec.pipeline)
            .is_some_and(|pipeline| pipeline.steps.is_some())
        {
            self.start_parent(txn, &mut job, now)?;
        }
        txn.put_new(job.clone());
        if !request_id.is_empty() {
            txn.batch.put(
                REQUESTS,
                request_id.as_bytes().to_vec(),
                job.id.as_bytes().to_vec(),
            );
            txn.requests.insert(request_id, job.id);
        }
        self.schedule_needed = true;
        Ok(Created { job, new: true })
    }

    /// Applies a user's input to a job; returns the job after it.
    fn user_input(
        &mut self,
        txn: &mut Txn,
        id: JobId,
        input: Input<'_>,
        now: SystemTime,
    ) -> Result<Job> {
        let job = txn
            .job(&self.store, id)?
            .ok_or_else(|| Error::not_found("job", id.to_string()))?;
        if job.is_parent() {
            return match input {
                Input::Cancel => self.parent_input(txn, &job, true, now),
                Input::Retry => self.parent_input(txn, &job, false, now),
                _ => Ok(job),
            };
        }
        if let (Some(parent), Input::Retry) = (job.parent_id, &input) {
            return Err(Error::precondition(format!(
                "job {id} is a step of job {parent}: retry that job (it runs again what did not succeed)"
            ))
            .into());
        }
        let outcome = apply(&job, input, now, &self.settings.policy)?;
        Ok(self.save(txn, &job, outcome)?.unwrap_or(job))
    }

    /// Applies an input to a job if it exists; errors of the machine are logged, not returned.
    fn apply_to(
        &mut self,
        txn: &mut Txn,
        id: JobId,
        input: Input<'_>,
        now: SystemTime,
    ) -> Result<()> {
        let Some(job) = txn.job(&self.store, id)? else {
            return Ok(());
        };
        match apply(&job, input, now, &self.settings.policy) {
            Ok(outcome) => {
                self.save(txn, &job, outcome)?;
            }
            Err(err) => tracing::warn!(job_id = %id, error = %err, "input not applied"),
        }
        Ok(())
    }

    /// Records an outcome: the new version, slot bookkeeping and worker actions.
    fn save(&mut self, txn: &mut Txn, before: &Job, outcome: Outcome) -> Result<Option<Job>> {
        for action in outcome.actions {
            txn.actions.push(WorkerAction {
                job_id: before.id,
                action,
                job: before.clone(),
            });
        }
        let Some(mut after) = outcome.job else {
            return Ok(None);
        };
        if after.parent_id.is_some() {
            // A step job goes with its parent, never on its own.
            after.expires_at = None;
        }
        self.cluster().track(Some(before), Some(&after));
        let freed = before.state.holds_slot() && !after.state.holds_slot();
        if after.state == JobState::Queued || freed {
            self.schedule_needed = true;
        }
        txn.put(
            &self.store,
            after.clone(),
            outcome.change,
            Some(outcome.previous_state),
        )?;
        if after.parent_id.is_some() {
            self.step_changed(txn, &after, after.updated_at)?;
        }
        Ok(Some(after))
    }

    /// Reads a split's manifest in a task of its own, then hands it to the engine.
    fn read_manifest(&self, read: AfterCommit) {
        let AfterCommit::ReadManifest { parent, split, key } = read else {
            return;
        };
        let blobs = Arc::clone(&self.blobs);
        let engine = self.engine.clone();
        tokio::spawn(async move {
            let manifest = crate::engine::manifest::read(blobs.as_ref(), &key).await;
            engine
                .send(Command::Expand {
                    parent,
                    split,
                    manifest,
                })
                .await;
        });
    }

    fn delete(&mut self, txn: &mut Txn, id: JobId, now: SystemTime, expiring: bool) -> Result<()> {
        let job = txn
            .job(&self.store, id)?
            .ok_or_else(|| Error::not_found("job", id.to_string()))?;
        if job.is_parent() && !job.state.is_terminal() {
            return Err(Error::precondition(format!(
                "job {id} is running its steps; cancel it first"
            ))
            .into());
        }
        if job.state.holds_slot() {
            return Err(Error::precondition(format!(
                "job {id} is {} on node {}; cancel it first",
                job.state,
                job.node_id.as_deref().unwrap_or("?")
            ))
            .into());
        }
        if let Some(parent) = job.parent_id
            && txn.job(&self.store, parent)?.is_some()
        {
            return Err(Error::precondition(format!(
                "job {id} is a step of job {parent}: delete that job (its steps go with it)"
            ))
            .into());
        }
        if expiring && job.expires_at.is_none_or(|at| at > now) {
            return Ok(());
        }
        // A parent's steps go with it (they never expire on their own).
        let steps: Vec<JobId> = job.step_jobs().map(|piece| piece.job).collect();
        for step in steps {
            if let Some(step_job) = txn.job(&self.store, step)?
                && step_job.state.holds_slot()
            {
                return Err(Error::precondition(format!(
                    "step job {step} of job {id} is still {}; wait for it to stop",
                    step_job.state
                ))
                .into());
            }
        }
        self.remove_job(txn, job, now)
    }

    /// Removes a job, its history, logs and outputs (and its steps, for a parent).
    fn remove_job(&mut self, txn: &mut Txn, job: Job, now: SystemTime) -> Result<()> {
        let id = job.id;
        let steps: Vec<JobId> = job.step_jobs().map(|piece| piece.job).collect();
        for step in steps {
            if let Some(step_job) = txn.job(&self.store, step)? {
                self.remove_job(txn, step_job, now)?;
            }
        }
        let raw = self.store.raw();
        for tree in [JOB_EVENTS, JOB_LOGS] {
            for entry in raw.scan_prefix(tree, id.as_bytes(), Direction::Forward)? {
                txn.batch.delete(tree, entry?.0);
            }
        }
        txn.forget_mark(id);
        txn.batch.delete(LOG_MARKS, id.as_bytes().to_vec());
        // Its outputs in the artifact store go too, by the janitor, which retries until they are.
        txn.batch.put(
            GC,
            id.as_bytes().to_vec(),
            reelay_artifacts::keys::job_outputs(&id.to_string()).into_bytes(),
        );
        txn.after.push(AfterCommit::CollectGarbage);
        if !job.request_id.is_empty() {
            txn.batch
                .delete(REQUESTS, job.request_id.as_bytes().to_vec());
        }
        if let Some(node) = &job.node_id {
            txn.after.push(AfterCommit::DeleteOnWorker {
                node: node.clone(),
                job_id: id,
            });
        }
        self.cluster().track(Some(&job), None);
        txn.remove(&self.store, &job, now)
    }

    fn expire(&mut self, txn: &mut Txn, now: SystemTime) -> Result<()> {
        let due: Vec<JobId> = self
            .store
            .expiring(EXPIRE_BATCH)?
            .into_iter()
            .filter(|(at, _)| *at <= now)
            .map(|(_, id)| id)
            .collect();
        for id in &due {
            if let Err(err) = self.delete(txn, *id, now, true) {
                tracing::warn!(job_id = %id, error = %err, "cannot remove an expired job");
            }
        }
        if !due.is_empty() {
            tracing::info!(removed = due.len(), "removed jobs past their retention");
            txn.durable = true;
        }
        Ok(())
    }

    // === scheduling ===

    fn schedule(&mut self, txn: &mut Txn, now: SystemTime) -> Result<()> {
        let mut slots = self.cluster().slots();
        if reelay_core::scheduler::free_slots(&slots) == 0 {
            return Ok(());
        }
        let queue = self.store.queue()?.filter_map(|entry| match entry {
            Ok(job) => Some(job),
            Err(err) => {
                tracing::error!(error = %err, "unreadable queue entry skipped");
                None
            }
        });
        let assignments = plan(queue, &mut slots);
        for (id, node) in assignments {
            let Some(job) = txn.job(&self.store, id)? else {
                continue;
            };
            if job.state != JobState::Queued {
                continue;
            }
            let outcome = apply(
                &job,
                Input::Assign { node: &node },
                now,
                &self.settings.policy,
            )?;
            self.save(txn, &job, outcome)?;
            txn.durable = true;
        }
        // Assignments do not free anything: no second pass needed.
        self.schedule_needed = false;
        Ok(())
    }

    fn start_result(
        &mut self,
        txn: &mut Txn,
        id: JobId,
        attempt: u32,
        node: &str,
        failure: StartFailure,
        now: SystemTime,
    ) -> Result<()> {
        let (error, requeue) = match failure {
            StartFailure::Unreachable(_) => return Ok(()),
            StartFailure::Requeue(error) => {
                if let Some(entry) = self.cluster().nodes.get_mut(node) {
                    entry.full = true;
                }
                (error, true)
            }
            StartFailure::Refused(error) => (error, false),
        };
        let Some(job) = txn.job(&self.store, id)? else {
            return Ok(());
        };
        if job.node_id.as_deref() != Some(node) {
            return Ok(());
        }
        let outcome = apply(
            &job,
            Input::StartFailed {
                attempt,
                error,
                requeue,
            },
            now,
            &self.settings.policy,
        )?;
        self.save(txn, &job, outcome)?;
        Ok(())
    }

    // === worker events ===

    fn worker_events(
        &mut self,
        txn: &mut Txn,
        node: &str,
        log_id: &str,
        events: Vec<v1::WorkerEvent>,
        now: SystemTime,
    ) -> Result<()> {
        if !self.cluster().nodes.contains_key(node) {
            return Err(Error::not_found("node", node).into());
        }
        let mut last_seq = 0;
        self.metrics.worker_events.inc_by(events.len() as u64);
        for event in events {
            if event.seq > 0 {
                last_seq = event.seq;
            }
            match v1::WorkerEventKind::try_from(event.kind) {
                Ok(v1::WorkerEventKind::Node) => self.node_info(node, event.info.as_ref()),
                Ok(v1::WorkerEventKind::Job) => self.job_report(txn, node, &event, now)?,
                Ok(v1::WorkerEventKind::Log) => self.log_line(txn, node, &event)?,
                _ => tracing::warn!(%node, seq = event.seq, "event of unknown kind ignored"),
            }
        }
        if let Some(entry) = self.cluster().nodes.get_mut(node) {
            entry.touch(now);
        }
        if last_seq > 0 {
            let cursor = Cursor {
                seq: last_seq,
                log_id: log_id.to_owned(),
            };
            txn.batch
                .put(CURSORS, node.as_bytes().to_vec(), encode_cursor(&cursor));
        }
        Ok(())
    }

    fn node_info(&mut self, node: &str, info: Option<&v1::WorkerInfo>) {
        let Some(info) = info else { return };
        let became_ready = {
            let mut cluster = self.cluster();
            let Some(entry) = cluster.nodes.get_mut(node) else {
                return;
            };
            let condition = (!info.executor_ready).then(|| info.condition.clone());
            let became_ready = entry.executor_condition.is_some() && condition.is_none();
            entry.executor_condition = condition;
            entry.node.condition = info.condition.clone();
            became_ready
        };
        if became_ready {
            self.schedule_needed = true;
        }
    }

    fn job_report(
        &mut self,
        txn: &mut Txn,
        node: &str,
        event: &v1::WorkerEvent,
        now: SystemTime,
    ) -> Result<()> {
        let Some(worker_job) = &event.job else {
            return Ok(());
        };
        let Ok(id) = JobId::parse(&event.job_id, "job_id") else {
            tracing::warn!(%node, job_id = %event.job_id, "event for a malformed job id ignored");
            return Ok(());
        };
        let report = match AttemptReport::try_from(worker_job) {
            Ok(report) => report,
            Err(err) => {
                tracing::warn!(%node, job_id = %id, error = %err, "malformed report ignored");
                return Ok(());
            }
        };
        let was_full = self
            .cluster()
            .nodes
            .get_mut(node)
            .is_some_and(|entry| std::mem::replace(&mut entry.full, false));
        if was_full {
            // The node said it had no free slot; its news may mean it has one now.
            self.schedule_needed = true;
        }
        match txn.job(&self.store, id)? {
            Some(job) => {
                let outcome = apply(
                    &job,
                    Input::Report {
                        node,
                        report: &report,
                    },
                    now,
                    &self.settings.policy,
                )?;
                self.save(txn, &job, outcome)?;
            }
            None if !report.state.is_terminal() => {
                // The job was deleted while this attempt ran: stop it.
                stop_deleted(txn, id, node, report.attempt, now);
            }
            None => {}
        }
        Ok(())
    }

    /// A node that came back runs `attempt` of a job: stopped unless it is the job's current
    /// attempt there (it was superseded while the node was away, and its stop, if one was sent,
    /// could not be delivered).
    fn attempt_active(
        &mut self,
        txn: &mut Txn,
        id: JobId,
        attempt: u32,
        node: &str,
        now: SystemTime,
    ) -> Result<()> {
        match txn.job(&self.store, id)? {
            Some(job) => {
                let outcome = apply(
                    &job,
                    Input::AttemptActive { node, attempt },
                    now,
                    &self.settings.policy,
                )?;
                if !outcome.actions.is_empty() {
                    tracing::info!(%node, job_id = %id, attempt, current = job.attempt, state = %job.state, "stopping an attempt superseded while its node was away");
                }
                self.save(txn, &job, outcome)?;
            }
            None => stop_deleted(txn, id, node, attempt, now),
        }
        Ok(())
    }

    /// Stores a log line of the job's current attempt, numbered per job; lines a worker sends
    /// again (after its own restart) are recognised by their per-attempt number and skipped.
    fn log_line(&mut self, txn: &mut Txn, node: &str, event: &v1::WorkerEvent) -> Result<()> {
        let Some(line) = &event.log else {
            return Ok(());
        };
        let Ok(id) = JobId::parse(&event.job_id, "job_id") else {
            return Ok(());
        };
        let Some(job) = txn.job(&self.store, id)? else {
            return Ok(());
        };
        if job.node_id.as_deref() != Some(node) || job.attempt != event.attempt {
            return Ok(());
        }
        let mut mark = txn.mark(&self.store, id)?;
        if mark.attempt != event.attempt {
            mark = LogMark {
                attempt: event.attempt,
                attempt_lines: 0,
                total: mark.total,
            };
        }
        if line.number <= mark.attempt_lines {
            return Ok(());
        }
        mark.total += 1;
        mark.attempt_lines = line.number;
        txn.set_mark(id, mark);
        let stored = v1::LogLine {
            number: mark.total,
            attempt: event.attempt,
            ..line.clone()
        };
        txn.batch
            .put(JOB_LOGS, log_key(id, mark.total), stored.encode_to_vec());
        txn.logs.push((id, Arc::new(stored)));
        Ok(())
    }

    // === nodes ===

    fn register(
        &mut self,
        txn: &mut Txn,
        registration: Registration,
        now: SystemTime,
    ) -> Result<Node> {
        validate_node_id(&registration.id, "id")?;
        let address_ok = registration.address.len() <= MAX_ADDRESS
            && (registration.address.starts_with("http://")
                || registration.address.starts_with("https://"))
            && registration
                .address
                .parse::<http::Uri>()
                .is_ok_and(|uri| uri.host().is_some());
        if !address_ok {
            return Err(Error::invalid(
                "address",
                format!(
                    "{} is not a URL like http://10.0.0.5:7071 (set the worker's --advertise)",
                    quote(&registration.address)
                ),
            )
            .into());
        }
        if registration.slots == 0 || registration.slots > MAX_SLOTS {
            return Err(Error::invalid(
                "slots",
                format!("{} is not between 1 and {MAX_SLOTS}", registration.slots),
            )
            .into());
        }
        validate_labels(&registration.labels, "labels")?;
        for (field, value) in [
            ("version", &registration.version),
            ("executor", &registration.executor),
        ] {
            if value.len() > MAX_NODE_WORD {
                return Err(Error::invalid(
                    field,
                    format!("{} is longer than {MAX_NODE_WORD} bytes", quote(value)),
                )
                .into());
            }
        }
        let node = {
            let mut cluster = self.cluster();
            let entry = cluster
                .nodes
                .entry(registration.id.clone())
                .or_insert_with(|| {
                    NodeEntry::new(Node {
                        id: registration.id.clone(),
                        address: String::new(),
                        labels: Default::default(),
                        slots: 0,
                        running: 0,
                        state: NodeState::Offline,
                        last_seen: None,
                        version: String::new(),
                        executor: String::new(),
                        drained: false,
                        condition: "registered; connecting".to_owned(),
                        registered_at: None,
                    })
                });
            entry.node.address = registration.address.clone();
            entry.node.labels = registration.labels;
            entry.node.slots = registration.slots;
            entry.node.version = registration.version;
            entry.node.executor = registration.executor;
            entry.node.registered_at = Some(now);
            entry.touch(now);
            entry.view()
        };
        self.persist_node(txn, &node);
        self.links.ensure(&node.id, &node.address, &self.engine);
        self.schedule_needed = true;
        tracing::info!(node = %node.id, address = %node.address, slots = node.slots, "node registered");
        Ok(node)
    }

    fn set_drained(&mut self, txn: &mut Txn, id: &str, drained: bool) -> Result<Node> {
        let node = {
            let mut cluster = self.cluster();
            let entry = cluster
                .nodes
                .get_mut(id)
                .ok_or_else(|| Error::not_found("node", id))?;
            entry.node.drained = drained;
            if entry.connected {
                entry.node.state = entry.online_state();
            }
            entry.view()
        };
        self.persist_node(txn, &node);
        if !drained {
            self.schedule_needed = true;
        }
        Ok(node)
    }

    fn remove_node(&mut self, txn: &mut Txn, id: &str, now: SystemTime) -> Result<()> {
        let holders: Vec<JobId> = {
            let cluster = self.cluster();
            let entry = cluster
                .nodes
                .get(id)
                .ok_or_else(|| Error::not_found("node", id))?;
            if entry.connected && !entry.holders.is_empty() {
                return Err(Error::precondition(format!(
                    "node {id} is connected and runs {} job(s); drain it and wait for them, or stop the worker first",
                    entry.holders.len()
                ))
                .into());
            }
            entry.holders.keys().copied().collect()
        };
        let reason = format!("node {id} was removed");
        for job_id in holders {
            self.apply_to(
                txn,
                job_id,
                Input::NodeLost {
                    node: id,
                    reason: &reason,
                },
                now,
            )?;
        }
        self.cluster().nodes.remove(id);
        self.links.remove(id);
        txn.batch.delete(NODES, id.as_bytes().to_vec());
        txn.batch.delete(CURSORS, id.as_bytes().to_vec());
        self.schedule_needed = true;
        tracing::info!(node = %id, "node removed");
        Ok(())
    }

    fn link_up(&mut self, txn: &mut Txn, up: LinkUp, now: SystemTime) -> Result<Vec<(JobId, u32)>> {
        let (node, holders) = {
            let mut cluster = self.cluster();
            let Some(entry) = cluster.nodes.get_mut(&up.node) else {
                return Ok(Vec::new());
            };
            entry.connected = true;
            entry.node.state = entry.online_state();
            entry.executor_condition = (!up.info.executor_ready).then(|| up.info.condition.clone());
            entry.node.condition = up.info.condition.clone();
            entry.node.version = up.info.version.clone();
            entry.node.executor = up.info.executor.clone();
            entry.full = false;
            entry.touch(now);
            let holders: Vec<(JobId, u32)> = entry
                .holders
                .iter()
                .map(|(id, attempt)| (*id, *attempt))
                .collect();
            (entry.view(), holders)
        };
        for (job_id, _) in &holders {
            self.apply_to(
                txn,
                *job_id,
                Input::NodeReachable {
                    node: &node.id,
                    reachable: true,
                },
                now,
            )?;
        }
        // A cancel asked for while the link was down (or whose call was lost) is sent again.
        for (job_id, attempt) in &holders {
            if let Some(job) = txn.job(&self.store, *job_id)?
                && job.cancel_requested
                && job.is_current_attempt(&node.id, *attempt)
            {
                let reason = "cancelled by user".to_owned();
                let action = Action::CancelOnWorker {
                    node: node.id.clone(),
                    attempt: *attempt,
                    reason,
                };
                txn.actions.push(WorkerAction {
                    job_id: *job_id,
                    action,
                    job,
                });
            }
        }
        self.persist_node(txn, &node);
        self.schedule_needed = true;
        tracing::info!(node = %node.id, state = %node.state, "node connected");
        Ok(holders)
    }

    fn link_down(
        &mut self,
        txn: &mut Txn,
        node: &str,
        error: String,
        now: SystemTime,
    ) -> Result<()> {
        let was_connected = self
            .cluster()
            .nodes
            .get(node)
            .is_some_and(|entry| entry.connected);
        if !was_connected {
            if let Some(entry) = self.cluster().nodes.get_mut(node) {
                entry.node.condition = error;
            }
            return Ok(());
        }
        let generation = self.mark_offline(node, error);
        let holders: Vec<JobId> = self
            .cluster()
            .nodes
            .get(node)
            .map(|entry| entry.holders.keys().copied().collect())
            .unwrap_or_default();
        for job_id in holders {
            self.apply_to(
                txn,
                job_id,
                Input::NodeReachable {
                    node,
                    reachable: false,
                },
                now,
            )?;
        }
        if let Some(view) = self.cluster().node(node) {
            self.persist_node(txn, &view);
        }
        self.start_lost_timer(node.to_owned(), generation);
        Ok(())
    }

    /// Marks a node offline; returns its new offline generation.
    fn mark_offline(&mut self, node: &str, condition: String) -> u64 {
        let mut cluster = self.cluster();
        let Some(entry) = cluster.nodes.get_mut(node) else {
            return 0;
        };
        entry.connected = false;
        entry.node.state = NodeState::Offline;
        entry.node.condition = condition;
        entry.offline_generation += 1;
        entry.offline_generation
    }

    fn start_lost_timer(&self, node: String, generation: u64) {
        let commands = self.commands.clone();
        let after = self.settings.node_lost_after;
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if let Some(commands) = commands.upgrade() {
                let _ = commands.send(Command::NodeLost { node, generation }).await;
            }
        });
    }

    fn node_lost(
        &mut self,
        txn: &mut Txn,
        node: &str,
        generation: u64,
        now: SystemTime,
    ) -> Result<()> {
        let holders: Vec<JobId> = {
            let cluster = self.cluster();
            let Some(entry) = cluster.nodes.get(node) else {
                return Ok(());
            };
            if entry.connected || entry.offline_generation != generation {
                return Ok(());
            }
            entry.holders.keys().copied().collect()
        };
        if holders.is_empty() {
            return Ok(());
        }
        let reason = format!(
            "node lost: node {node} did not answer for {}",
            human(self.settings.node_lost_after)
        );
        tracing::warn!(%node, jobs = holders.len(), "node lost; failing its attempts");
        for job_id in holders {
            self.apply_to(
                txn,
                job_id,
                Input::NodeLost {
                    node,
                    reason: &reason,
                },
                now,
            )?;
        }
        txn.durable = true;
        Ok(())
    }

    fn persist_node(&self, txn: &mut Txn, node: &Node) {
        txn.batch.put(
            NODES,
            node.id.as_bytes().to_vec(),
            v1::Node::from(node).encode_to_vec(),
        );
    }
}

/// Tells `node` to stop `attempt` of job `id`, which no longer exists.
fn stop_deleted(txn: &mut Txn, id: JobId, node: &str, attempt: u32, now: SystemTime) {
    let action = Action::CancelOnWorker {
        node: node.to_owned(),
        attempt,
        reason: format!("job {id} no longer exists"),
    };
    let placeholder = Job::new(id, JobSpec::default(), String::new(), now);
    txn.actions.push(WorkerAction {
        job_id: id,
        action,
        job: placeholder,
    });
}

/// Queues the reply to a command for after the cycle's writes.
fn respond<T: Send + 'static>(
    txn: &mut Txn,
    reply: oneshot::Sender<Result<T>>,
    result: Result<T>,
    durable: bool,
) {
    match result {
        Ok(value) => {
            txn.durable |= durable;
            txn.reply(move |stored| {
                let _ = reply.send(match stored {
                    Ok(()) => Ok(value),
                    Err(err) => Err(CoordinatorError::Internal(format!("not stored: {err}"))),
                });
            });
        }
        Err(err) => {
            // Nothing of this command was written; answer right away.
            let _ = reply.send(Err(err));
        }
    }
}

fn human(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
