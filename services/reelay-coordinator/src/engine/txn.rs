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
    JOB_EVENTS, JobStore, LOG_MARKS, LogMark, encode_mark, event_key, index_writes, job_event,
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
    /// A parent's split succeeded: read its manifest (`key`) and come back with `Command::Expand`.
    ReadManifest {
        parent: JobId,
        split: JobId,
        key: String,
    },
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
        // A job's creation event is stored with its first change (see `put_new`).
        if let Some(Some(before)) = self.current.get(&job.id)
            && before.version == 1
        {
            let created = job_event(before, JobChange::Created, None);
            self.batch.put(
                JOB_EVENTS,
                event_key(before.id, before.version),
                created.encode_to_vec(),
            );
        }
        let event = job_event(&job, change, previous);
        self.batch.put(
            JOB_EVENTS,
            event_key(job.id, job.version),
            event.encode_to_vec(),
        );
        self.events.push(Arc::new(event));
        self.current.insert(job.id, Some(job));
        Ok(())
    }

    /// Records a job just made, and publishes its creation. Its id is new (UUIDv7, random below
    /// the millisecond), so storage is not asked whether it exists. The creation event is not
    /// stored now: until the job's first change its record *is* that version (and
    /// [`JobStore::events_after`] makes the event from it); the first change stores it. One key
    /// less per created job, and the largest.
    pub(crate) fn put_new(&mut self, job: Job) {
        debug_assert!(
            !self.current.contains_key(&job.id),
            "a new job id seen before"
        );
        self.original.insert(job.id, None);
        self.events
            .push(Arc::new(job_event(&job, JobChange::Created, None)));
        self.current.insert(job.id, Some(job));
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use reelay_core::{JobSpec, JobState};
    use reelay_store::SledStore;
    use reelay_store::sled_store::SledOptions;

    use super::*;
    use crate::store::SCHEMA;

    fn store() -> (tempfile::TempDir, JobStore) {
        let dir = tempfile::tempdir().unwrap();
        let sled = SledStore::open(
            dir.path(),
            &SCHEMA,
            SledOptions {
                cache_bytes: 1 << 20,
            },
        )
        .unwrap();
        (dir, JobStore::new(Arc::new(sled)))
    }

    fn commit(store: &JobStore, txn: &mut Txn) {
        store.raw().commit(&txn.take_writes()).unwrap();
    }

    fn versions(store: &JobStore, id: JobId) -> Vec<(u64, i32)> {
        store
            .events_after(id, 0, 100)
            .unwrap()
            .iter()
            .map(|event| (event.version, event.change))
            .collect()
    }

    #[test]
    fn a_creation_is_history_before_and_after_the_first_change() {
        let (_dir, store) = store();
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let spec = JobSpec {
            pipeline: "p".into(),
            ..JobSpec::default()
        };
        let job = Job::new(JobId::new(at), spec, "r1".into(), at);
        let mut create = Txn::default();
        create.put_new(job.clone());
        assert_eq!(
            create.events.len(),
            1,
            "watchers hear of the creation at once"
        );
        commit(&store, &mut create);
        let created = v1::JobChange::Created as i32;
        assert_eq!(versions(&store, job.id), [(1, created)]);
        assert!(store.events_after(job.id, 1, 100).unwrap().is_empty());

        // The first change stores the creation with it, as it was.
        let mut change = Txn::default();
        let mut assigned = change.job(&store, job.id).unwrap().unwrap();
        assigned.state = JobState::Assigned;
        assigned.version = 2;
        change
            .put(
                &store,
                assigned.clone(),
                JobChange::State,
                Some(JobState::Queued),
            )
            .unwrap();
        commit(&store, &mut change);
        let history = store.events_after(job.id, 0, 100).unwrap();
        assert_eq!(
            history.iter().map(|e| e.version).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(history[0].change, created);
        assert_eq!(history[0].job, Some(v1::Job::from(&job)));
        assert_eq!(store.events_after(job.id, 1, 100).unwrap().len(), 1);

        // Created and changed in one cycle: both stored too.
        let other = Job::new(JobId::new(at), JobSpec::default(), String::new(), at);
        let mut both = Txn::default();
        both.put_new(other.clone());
        let mut cancelled = other.clone();
        cancelled.state = JobState::Cancelled;
        cancelled.version = 2;
        both.put(&store, cancelled, JobChange::State, Some(JobState::Queued))
            .unwrap();
        commit(&store, &mut both);
        assert_eq!(
            versions(&store, other.id)
                .iter()
                .map(|v| v.0)
                .collect::<Vec<_>>(),
            [1, 2]
        );
    }
}
