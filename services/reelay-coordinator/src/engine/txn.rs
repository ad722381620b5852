//! One engine cycle's writes: jobs changed so far (an overlay over storage), the events to record
//! and publish, other writes, replies to send and actions to carry out once the writes are stored.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use prost::Message;
use reelay_core::machine::Action;
use reelay_core::{Job, JobChange, JobId, JobState};
use reelay_proto::convert::timestamp;
use reelay_proto::v1;
use reelay_store::WriteBatch;

use crate::error::{CoordinatorError, Result};
use crate::store::{
    JOB_EVENTS, JobStore, LOG_MARKS, LogMark, encode_mark, event_key, index_writes,
};

/// A reply to send once the cycle's writes are stored (and flushed when durable).
pub(crate) type Reply = Box<dyn FnOnce(Result<(), &CoordinatorError>) + Send>;

/// An action for a worker, after the cycle's writes are stored.
#[derive(Debug, Clone)]
pub(crate) struct WorkerAction {
    pub(crate) job_id: JobId,
    pub(crate) action: Action,
    /// The job as it was when the action was decided (for StartJob's spec).
    pub(crate) job: Job,
}

/// Extra work after storage, beyond replies and actions.
#[derive(Debug)]
pub(crate) enum AfterCommit {
    /// Remove a deleted job's attempt and outputs on its node.
    DeleteOnWorker { node: String, job_id: JobId },
    /// Objects of deleted jobs are due for removal from the artifact store (the `gc` tree).
    CollectGarbage,
}

#[derive(Default)]
pub(crate) struct Txn {
    /// Jobs as stored before this cycle touched them (`None`: absent).
    original: HashMap<JobId, Option<Job>>,
    /// Jobs as they are now in this cycle.
    current: HashMap<JobId, Option<Job>>,
    pub(crate) events: Vec<Arc<v1::JobEvent>>,
    pub(crate) logs: Vec<(JobId, Arc<v1::LogLine>)>,
    pub(crate) batch: WriteBatch,
    pub(crate) replies: Vec<Reply>,
    pub(crate) actions: Vec<WorkerAction>,
    pub(crate) after: Vec<AfterCommit>,
    /// Some reply promises durability: flush before replying.
    pub(crate) durable: bool,
    /// Log bookkeeping of jobs whose lines arrived in this cycle.
    marks: HashMap<JobId, LogMark>,
    /// request_id -> job created in this cycle.
    pub(crate) requests: HashMap<String, JobId>,
}

impl Txn {
    /// The job as this cycle sees it.
    pub(crate) fn job(&mut self, store: &JobStore, id: JobId) -> Result<Option<Job>> {
        if let Some(job) = self.current.get(&id) {
            return Ok(job.clone());
        }
        let stored = store.job(id)?;
        self.original.insert(id, stored.clone());
        self.current.insert(id, stored.clone());
        Ok(stored)
    }

    /// Records a new version of a job (or a new job) and its event.
    pub(crate) fn put(
        &mut self,
        store: &JobStore,
        job: Job,
        change: JobChange,
        previous: Option<JobState>,
    ) -> Result<()> {
        if !self.current.contains_key(&job.id) {
            self.job(store, job.id)?;
        }
        let event = v1::JobEvent {
            job_id: job.id.to_string(),
            version: job.version,
            job: Some(v1::Job::from(&job)),
            change: v1::JobChange::from(change) as i32,
            previous_state: previous.map_or(0, |state| v1::JobState::from(state) as i32),
            time: Some(timestamp(job.updated_at)),
        };
        self.batch.put(
            JOB_EVENTS,
            event_key(job.id, job.version),
            event.encode_to_vec(),
        );
        self.events.push(Arc::new(event));
        self.current.insert(job.id, Some(job));
        Ok(())
    }

    /// Removes a job; `last` is its final snapshot for watchers.
    pub(crate) fn remove(&mut self, store: &JobStore, last: &Job, now: SystemTime) -> Result<()> {
        if !self.current.contains_key(&last.id) {
            self.job(store, last.id)?;
        }
        let event = v1::JobEvent {
            job_id: last.id.to_string(),
            version: last.version + 1,
            job: Some(v1::Job::from(last)),
            change: v1::JobChange::Deleted as i32,
            previous_state: v1::JobState::from(last.state) as i32,
            time: Some(timestamp(now)),
        };
        self.events.push(Arc::new(event));
        self.current.insert(last.id, None);
        Ok(())
    }

    /// The log bookkeeping of a job as this cycle sees it.
    pub(crate) fn mark(&mut self, store: &JobStore, id: JobId) -> Result<LogMark> {
        if let Some(mark) = self.marks.get(&id) {
            return Ok(*mark);
        }
        let mark = store.log_mark(id)?;
        self.marks.insert(id, mark);
        Ok(mark)
    }

    pub(crate) fn set_mark(&mut self, id: JobId, mark: LogMark) {
        self.marks.insert(id, mark);
    }

    /// Forgets the bookkeeping of a deleted job (its stored mark is deleted by the caller).
    pub(crate) fn forget_mark(&mut self, id: JobId) {
        self.marks.remove(&id);
    }

    pub(crate) fn reply(
        &mut self,
        reply: impl FnOnce(Result<(), &CoordinatorError>) + Send + 'static,
    ) {
        self.replies.push(Box::new(reply));
    }

    /// Every job touched in this cycle: (as stored before, as it is now).
    pub(crate) fn changed_jobs(&self) -> impl Iterator<Item = (Option<&Job>, Option<&Job>)> {
        self.current.iter().filter_map(|(id, now)| {
            let before = self.original.get(id).and_then(Option::as_ref);
            let now = now.as_ref();
            (before != now).then_some((before, now))
        })
    }

    /// The writes of the cycle: other writes, then each changed job with its index entries.
    pub(crate) fn take_writes(&mut self) -> WriteBatch {
        let mut batch = std::mem::take(&mut self.batch);
        for (before, now) in self.changed_jobs() {
            index_writes(before, now, &mut batch);
        }
        for (id, mark) in &self.marks {
            batch.put(LOG_MARKS, id.as_bytes().to_vec(), encode_mark(*mark));
        }
        batch
    }
}
