//! Jobs made of jobs, in the engine: making a parent's step jobs and moving the parent as they
//! change. The decisions are `reelay_core::composite`'s; this module makes the step jobs it asks
//! for (split, a map job per piece, join), stops or retries them, reads the split's manifest
//! through the artifact store (outside the engine's task) and removes steps with their parent.

use std::time::SystemTime;

use reelay_core::composite::{self, ParentOutcome, StepAction};
use reelay_core::input::InputUri;
use reelay_core::machine::Input;
use reelay_core::{Error, InputFile, Job, JobId, JobSpec, OutputFile, Step};

use super::Actor;
use crate::engine::manifest::Manifest;
use crate::engine::txn::{AfterCommit, Txn};
use crate::error::Result;

/// The manifest the split step leaves among its outputs.
pub(crate) const MANIFEST: &str = "manifest.json";

impl Actor {
    /// A job of a pipeline with steps is being created: makes it a parent and makes its split
    /// job (both are put by the caller's transaction).
    pub(super) fn start_parent(
        &mut self,
        txn: &mut Txn,
        parent: &mut Job,
        now: SystemTime,
    ) -> Result<()> {
        composite::start(parent, now);
        let input = parent.input.clone();
        let split = self.new_step(
            parent,
            (Step::Split, 0),
            input,
            Vec::new(),
            JobId::new(now),
            now,
        )?;
        if let Some(steps) = parent.steps.as_mut() {
            steps.split = Some(reelay_core::Piece::new(split.id, 0.0));
        }
        txn.put_new(split);
        self.schedule_needed = true;
        Ok(())
    }

    /// A step job of `parent`: its pipeline, the parent's params it declares, the parent's
    /// placement (priority, labels, pin, attempts, timeout), and its inputs.
    fn new_step(
        &self,
        parent: &Job,
        (step, piece): (Step, u32),
        input: Option<InputFile>,
        more_inputs: Vec<InputFile>,
        id: JobId,
        now: SystemTime,
    ) -> Result<Job> {
        let pipelines = &self.settings.pipelines;
        let steps = pipelines
            .get(&parent.spec.pipeline)
            .and_then(|pipeline| pipeline.steps.clone())
            .ok_or_else(|| {
                Error::precondition(format!(
                    "pipeline {:?} of job {} has no steps in this coordinator's config",
                    parent.spec.pipeline, parent.id
                ))
            })?;
        let name = steps.pipeline(step);
        let pipeline = pipelines.get(name).ok_or_else(|| {
            Error::precondition(format!(
                "the {} step's pipeline {name:?} is not configured",
                step.name()
            ))
        })?;
        let spec = JobSpec {
            pipeline: name.to_owned(),
            params: parent
                .spec
                .params
                .iter()
                .filter(|(key, _)| pipeline.params.iter().any(|param| &param.name == *key))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
            input_path: String::new(),
            input_uri: input
                .as_ref()
                .map(|input| input.uri.clone())
                .unwrap_or_default(),
            ..parent.spec.clone()
        };
        let spec = pipelines.validate(&spec)?;
        let mut job = Job::new(id, spec, String::new(), now);
        job.parent_id = Some(parent.id);
        job.step = Some(step);
        job.piece = piece;
        job.input = input;
        job.more_inputs = more_inputs;
        job.message = match step {
            Step::Map => format!("queued: piece {} of job {}", piece + 1, parent.id),
            other => format!("queued: the {} step of job {}", other.name(), parent.id),
        };
        Ok(job)
    }

    /// A step job changed (it is `step` now): its parent hears it.
    pub(super) fn step_changed(
        &mut self,
        txn: &mut Txn,
        step: &Job,
        now: SystemTime,
    ) -> Result<()> {
        let Some(parent_id) = step.parent_id else {
            return Ok(());
        };
        let Some(parent) = txn.job(&self.store, parent_id)? else {
            return Ok(());
        };
        let outcome = composite::on_step(&parent, step, now, &self.settings.policy);
        self.apply_parent(txn, &parent, outcome, now)
    }

    /// Saves a parent's change and does what it asks.
    fn apply_parent(
        &mut self,
        txn: &mut Txn,
        before: &Job,
        outcome: ParentOutcome,
        now: SystemTime,
    ) -> Result<()> {
        let after = self
            .save(txn, before, outcome.outcome)?
            .unwrap_or_else(|| before.clone());
        for action in outcome.actions {
            if let Err(err) = self.step_action(txn, &after, action, now) {
                tracing::warn!(job_id = %after.id, error = %err, "a step of the job could not be done");
                let current = txn
                    .job(&self.store, after.id)?
                    .unwrap_or_else(|| after.clone());
                if !current.state.is_terminal() {
                    let failed =
                        composite::fail(&current, &err.to_string(), now, &self.settings.policy);
                    let saved = self.save(txn, &current, failed.outcome)?;
                    let latest = saved.unwrap_or(current);
                    for action in failed.actions {
                        self.step_action(txn, &latest, action, now)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn step_action(
        &mut self,
        txn: &mut Txn,
        parent: &Job,
        action: StepAction,
        now: SystemTime,
    ) -> Result<()> {
        match action {
            StepAction::ReadManifest { split } | StepAction::Expand { split } => {
                let split_job = txn
                    .job(&self.store, split)?
                    .ok_or_else(|| Error::not_found("job", split.to_string()))?;
                if !split_job.outputs.iter().any(|file| file.name == MANIFEST) {
                    return Err(Error::precondition(format!(
                        "the split step (job {split}) left no {MANIFEST}"
                    ))
                    .into());
                }
                txn.after.push(read_manifest(parent.id, &split_job));
            }
            StepAction::CreateJoin => self.create_join(txn, parent, now)?,
            StepAction::CancelSteps { reason } => {
                let jobs: Vec<JobId> = parent
                    .step_jobs()
                    .filter(|piece| !piece.state.is_terminal())
                    .map(|piece| piece.job)
                    .collect();
                for id in jobs {
                    tracing::info!(job_id = %id, parent = %parent.id, %reason, "stopping a step");
                    self.apply_to(txn, id, Input::Cancel, now)?;
                }
            }
            StepAction::RetrySteps { jobs } => {
                for id in jobs {
                    self.apply_to(txn, id, Input::Retry, now)?;
                }
            }
        }
        Ok(())
    }

    /// Every piece succeeded: the join gets the manifest, the split's other outputs (the audio)
    /// and every piece's outputs.
    fn create_join(&mut self, txn: &mut Txn, parent: &Job, now: SystemTime) -> Result<()> {
        let steps = parent.steps.clone().unwrap_or_default();
        let split = steps
            .split
            .as_ref()
            .and_then(|piece| txn.job(&self.store, piece.job).ok().flatten())
            .ok_or_else(|| Error::precondition(format!("job {} has no split step", parent.id)))?;
        // Each piece job once: the split output it encoded, and what it made.
        let mut piece_names = Vec::new();
        let mut piece_outputs = Vec::new();
        for piece in &steps.pieces {
            let job = txn
                .job(&self.store, piece.job)?
                .ok_or_else(|| Error::not_found("job", piece.job.to_string()))?;
            piece_names.extend(job.input.as_ref().map(|input| input.name.clone()));
            piece_outputs.extend(job.outputs.iter().map(|file| as_input(&job, file)));
        }
        let manifest = output_input(&split, MANIFEST)?;
        let mut more: Vec<InputFile> = split
            .outputs
            .iter()
            .filter(|file| file.name != MANIFEST && !piece_names.contains(&file.name))
            .map(|file| as_input(&split, file))
            .collect();
        more.extend(piece_outputs);
        let join = self.new_step(
            parent,
            (Step::Join, 0),
            Some(manifest),
            more,
            JobId::new(now),
            now,
        )?;
        let join_id = join.id;
        txn.put_new(join);
        self.schedule_needed = true;
        let outcome = composite::made(parent, Step::Join, join_id, now);
        self.save(txn, parent, outcome)?;
        Ok(())
    }

    /// The split's manifest was read (or could not be): makes a map job per piece.
    pub(super) fn expand(
        &mut self,
        txn: &mut Txn,
        (parent_id, split_id): (JobId, JobId),
        manifest: std::result::Result<Manifest, String>,
        now: SystemTime,
    ) -> Result<()> {
        let Some(parent) = txn.job(&self.store, parent_id)? else {
            return Ok(());
        };
        let expected = parent.steps.as_ref().is_some_and(|steps| {
            steps.pieces.is_empty() && steps.split.as_ref().is_some_and(|s| s.job == split_id)
        });
        if parent.state.is_terminal() || !expected {
            return Ok(());
        }
        let made = manifest.and_then(|manifest| {
            let split = txn
                .job(&self.store, split_id)
                .map_err(|err| err.to_string())?
                .ok_or_else(|| format!("the split step (job {split_id}) is gone"))?;
            if manifest.pieces.is_empty() {
                return Err(format!("the split step (job {split_id}) made no pieces"));
            }
            // Ids of one millisecond are random below it: handed out sorted, the pieces list
            // (and queue) in their order.
            let mut ids: Vec<JobId> = manifest.pieces.iter().map(|_| JobId::new(now)).collect();
            ids.sort_unstable();
            let mut jobs = Vec::new();
            for ((index, piece), id) in manifest.pieces.iter().enumerate().zip(ids) {
                let file = split
                    .outputs
                    .iter()
                    .find(|file| file.name == piece.name)
                    .ok_or_else(|| {
                        format!(
                            "the split's manifest names {:?}, which is not among its outputs",
                            piece.name
                        )
                    })?;
                let input = as_input(&split, file);
                let job = self
                    .new_step(
                        &parent,
                        (Step::Map, index as u32),
                        Some(input),
                        Vec::new(),
                        id,
                        now,
                    )
                    .map_err(|err| err.to_string())?;
                jobs.push((job, piece.seconds));
            }
            Ok((jobs, manifest.frame_rate))
        });
        match made {
            Ok((jobs, frame_rate)) => {
                let pieces: Vec<(JobId, f64)> = jobs
                    .iter()
                    .map(|(job, seconds)| (job.id, *seconds))
                    .collect();
                for (job, _) in jobs {
                    txn.put_new(job);
                }
                self.schedule_needed = true;
                let outcome = composite::expand(&parent, &pieces, frame_rate, now);
                self.save(txn, &parent, outcome)?;
                txn.durable = true;
            }
            Err(error) => {
                let outcome = composite::fail(&parent, &error, now, &self.settings.policy);
                self.apply_parent(txn, &parent, outcome, now)?;
                txn.durable = true;
            }
        }
        Ok(())
    }

    /// A user cancels or retries a parent.
    pub(super) fn parent_input(
        &mut self,
        txn: &mut Txn,
        parent: &Job,
        cancel: bool,
        now: SystemTime,
    ) -> Result<Job> {
        let outcome = if cancel {
            composite::cancel(parent, now, &self.settings.policy)?
        } else {
            composite::retry(parent, now)?
        };
        self.apply_parent(txn, parent, outcome, now)?;
        Ok(txn
            .job(&self.store, parent.id)?
            .unwrap_or_else(|| parent.clone()))
    }

    /// Parents whose split succeeded but whose pieces were never made (the coordinator stopped
    /// before it read the manifest): their manifests are read again.
    pub(super) fn resume_parents(&mut self) -> Result<Vec<AfterCommit>> {
        let mut reads = Vec::new();
        for id in self
            .store
            .ids_in_state(reelay_core::JobState::Running, None, usize::MAX)?
        {
            let Some(parent) = self.store.job(id)? else {
                continue;
            };
            let Some(steps) = &parent.steps else { continue };
            let Some(split) = &steps.split else { continue };
            if steps.pieces.is_empty()
                && split.state == reelay_core::JobState::Succeeded
                && let Some(split_job) = self.store.job(split.job)?
            {
                reads.push(read_manifest(parent.id, &split_job));
            }
        }
        Ok(reads)
    }
}

/// Reading the manifest `split` (a succeeded split job) left, for `parent`.
fn read_manifest(parent: JobId, split: &Job) -> AfterCommit {
    AfterCommit::ReadManifest {
        parent,
        split: split.id,
        key: reelay_artifacts::keys::output(&split.id.to_string(), split.attempt, MANIFEST),
    }
}

/// Output `name` of a finished step job, as an input of another.
fn output_input(job: &Job, name: &str) -> Result<InputFile> {
    let file = job
        .outputs
        .iter()
        .find(|file| file.name == name)
        .ok_or_else(|| Error::precondition(format!("job {} left no {name}", job.id)))?;
    Ok(as_input(job, file))
}

fn as_input(job: &Job, file: &OutputFile) -> InputFile {
    InputFile {
        uri: InputUri::Output {
            job: job.id.to_string(),
            attempt: job.attempt,
            name: file.name.clone(),
        }
        .to_string(),
        name: file.name.clone(),
        size: file.size,
        sha256: file.sha256.clone(),
    }
}
