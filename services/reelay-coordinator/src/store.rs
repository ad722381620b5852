//! The coordinator's trees, their keys and typed access to them.
//!
//! | tree | key | value |
//! | --- | --- | --- |
//! | `jobs` | job id (16 bytes, UUIDv7: sorts by age) | `Job` |
//! | `job_events` | id \| version (be u64) | `JobEvent` (the job after each change; version 1 is stored with version 2, see [`JobStore::events_after`]) |
//! | `jobs_by_state` | state (1 byte) \| id, for every state but queued (the queue lists those) | — |
//! | `jobs_by_node` | node (length-prefixed) \| id | — |
//! | `queue` | priority (flipped, be) \| id | pin and labels (`JobSpec` subset) |
//! | `expiry` | expires_at (be u64 ms) \| id | — |
//! | `requests` | request_id | id |
//! | `job_logs` | id \| line number (be u64) | `LogLine` |
//! | `log_marks` | id | attempt, lines of that attempt, lines in all |
//! | `nodes` | node id | `Node` |
//! | `cursors` | node id | seq (be u64) \| log id |
//! | `uploads` | upload id (16 bytes) | `StoredUpload` |
//! | `gc` | job id | key prefix of objects to delete from the artifact store |
//! | `jobs_by_parent` | parent id \| step job id | — |
//!
//! Every index entry is derived from the job by [`index_writes`], so indexes cannot drift from the
//! job they point at: the engine writes a job and its index changes in one batch.

use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use reelay_core::{Job, JobId, JobState, Node};
use reelay_proto::v1;
use reelay_store::keys::{prefix_end, prefix_range, read_u64, u64_key, with_str_part};
use reelay_store::sled_store::{Schema, Upgrade};
use reelay_store::{Direction, Store, WriteBatch};

use crate::error::{CoordinatorError, Result};

pub(crate) const JOBS: &str = "jobs";
pub(crate) const JOB_EVENTS: &str = "job_events";
pub(crate) const BY_STATE: &str = "jobs_by_state";
pub(crate) const BY_NODE: &str = "jobs_by_node";
pub(crate) const QUEUE: &str = "queue";
pub(crate) const EXPIRY: &str = "expiry";
pub(crate) const REQUESTS: &str = "requests";
pub(crate) const JOB_LOGS: &str = "job_logs";
pub(crate) const LOG_MARKS: &str = "log_marks";
pub(crate) const NODES: &str = "nodes";
pub(crate) const CURSORS: &str = "cursors";
pub(crate) const UPLOADS: &str = "uploads";
pub(crate) const GC: &str = "gc";
pub(crate) const BY_PARENT: &str = "jobs_by_parent";

/// The coordinator database's schema.
///
/// Version 3: queued jobs are no longer in `jobs_by_state` (the `queue` tree lists them), one
/// sled key less per created job.
pub const SCHEMA: Schema = Schema {
    kind: "coordinator",
    version: 3,
    upgrades: &[Upgrade {
        from: 2,
        what: "queued jobs leave jobs_by_state (the queue lists them)",
        run: drop_queued_state_index,
    }],
    trees: &[
        JOBS, JOB_EVENTS, BY_STATE, BY_NODE, QUEUE, EXPIRY, REQUESTS, JOB_LOGS, LOG_MARKS, NODES,
        CURSORS, "meta",
        // Added after `meta` (a tree's key prefix is its place in this list): databases made before
        // them open unchanged, with these empty.
        UPLOADS, GC, BY_PARENT,
    ],
};

/// Schema 2 → 3: removes the queued jobs' `jobs_by_state` entries, in batches of bounded size.
fn drop_queued_state_index(store: &dyn Store) -> reelay_store::Result<()> {
    const CHUNK: usize = 10_000;
    loop {
        let keys = store
            .scan_prefix(BY_STATE, &[JobState::Queued.code()], Direction::Forward)?
            .take(CHUNK)
            .map(|entry| entry.map(|(key, _)| key))
            .collect::<reelay_store::Result<Vec<_>>>()?;
        if keys.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        keys.into_iter().for_each(|key| batch.delete(BY_STATE, key));
        store.commit(&batch)?;
    }
}

/// Where a worker keeps its database inside its data dir (see reelay-worker's `data_dir`).
const WORKER_STATE_DIR: &str = "state";

/// Refuses a worker's data dir given to the coordinator: sled would make a new, empty database
/// next to the worker's files instead of saying so.
pub fn refuse_worker_data_dir(data_dir: &std::path::Path) -> Result<()> {
    let state = data_dir.join(WORKER_STATE_DIR);
    match reelay_store::sled_store::database_in(&state) {
        Some(tag) => Err(reelay_store::StoreError::Unusable(format!(
            "{} is a worker's data directory ({} holds a {tag} database): give the coordinator \
             its own --data-dir",
            data_dir.display(),
            state.display()
        ))
        .into()),
        None => Ok(()),
    }
}

/// Where the coordinator is in a worker's event log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    pub seq: u64,
    pub log_id: String,
}

/// Log line bookkeeping of a job: de-duplicates lines a worker sends again after a restart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogMark {
    /// The attempt the lines below belong to.
    pub attempt: u32,
    /// Highest worker line number applied for that attempt.
    pub attempt_lines: u64,
    /// Lines of the job in all attempts (the last job line number).
    pub total: u64,
}

/// Typed access to the coordinator's trees.
#[derive(Debug, Clone)]
pub struct JobStore {
    store: Arc<dyn Store>,
}

impl JobStore {
    pub fn new(store: Arc<dyn Store>) -> Self {
        JobStore { store }
    }

    pub fn raw(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn job(&self, id: JobId) -> Result<Option<Job>> {
        self.store
            .get(JOBS, id.as_bytes())?
            .map(|bytes| decode_job(&bytes))
            .transpose()
    }

    /// The job or NOT_FOUND.
    pub fn require_job(&self, id: JobId) -> Result<Job> {
        self.job(id)?
            .ok_or_else(|| reelay_core::Error::not_found("job", id.to_string()).into())
    }

    pub fn job_for_request(&self, request_id: &str) -> Result<Option<JobId>> {
        Ok(self
            .store
            .get(REQUESTS, request_id.as_bytes())?
            .and_then(|bytes| job_id_from(&bytes)))
    }

    /// The job's history after `after_version`, oldest first.
    pub fn events_after(
        &self,
        id: JobId,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<v1::JobEvent>> {
        // A job still at version 1 has no stored history: its creation event is stored with its
        // first change, and until then its record is that version.
        if after_version == 0
            && let Some(job) = self.job(id)?
            && job.version == 1
        {
            let created = job_event(&job, reelay_core::JobChange::Created, None);
            return Ok(std::iter::once(created).take(limit).collect());
        }
        let from = Bound::Excluded(event_key(id, after_version));
        let (_, to) = prefix_range(id.as_bytes());
        let mut events = Vec::new();
        for entry in self
            .store
            .scan(JOB_EVENTS, from, to, Direction::Forward)?
            .take(limit)
        {
            events.push(v1::JobEvent::decode(entry?.1.as_slice())?);
        }
        Ok(events)
    }

    /// Log lines of a job after `after_line`, in order.
    pub fn logs_after(&self, id: JobId, after_line: u64, limit: usize) -> Result<Vec<v1::LogLine>> {
        let from = Bound::Excluded(log_key(id, after_line));
        let (_, to) = prefix_range(id.as_bytes());
        let mut lines = Vec::new();
        for entry in self
            .store
            .scan(JOB_LOGS, from, to, Direction::Forward)?
            .take(limit)
        {
            lines.push(v1::LogLine::decode(entry?.1.as_slice())?);
        }
        Ok(lines)
    }

    pub fn log_mark(&self, id: JobId) -> Result<LogMark> {
        Ok(self
            .store
            .get(LOG_MARKS, id.as_bytes())?
            .map(|bytes| decode_mark(&bytes))
            .unwrap_or_default())
    }

    pub fn nodes(&self) -> Result<Vec<Node>> {
        let mut nodes = Vec::new();
        for entry in self.store.scan_prefix(NODES, b"", Direction::Forward)? {
            nodes.push(v1::Node::decode(entry?.1.as_slice())?.into());
        }
        Ok(nodes)
    }

    pub fn cursor(&self, node: &str) -> Result<Cursor> {
        Ok(match self.store.get(CURSORS, node.as_bytes())? {
            Some(bytes) => Cursor {
                seq: read_u64(&bytes).unwrap_or(0),
                log_id: String::from_utf8_lossy(bytes.get(8..).unwrap_or_default()).into_owned(),
            },
            None => Cursor::default(),
        })
    }

    /// Ids of jobs in `state`, newest first, starting below `before` (exclusive).
    pub fn ids_in_state(
        &self,
        state: JobState,
        before: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<JobId>> {
        match state {
            JobState::Queued => self.queued_ids(before, limit),
            state => self.index_ids(BY_STATE, &[state.code()], before, limit),
        }
    }

    /// Ids of queued jobs, newest first, below `before`. The queue orders them by priority, then
    /// age: each priority's run of it is read newest first, and the runs are merged by id (one
    /// seek per priority in use).
    fn queued_ids(&self, before: Option<JobId>, limit: usize) -> Result<Vec<JobId>> {
        type Run<'a> =
            Box<dyn Iterator<Item = reelay_store::Result<reelay_store::Entry>> + Send + 'a>;
        fn next_id(run: &mut Run<'_>) -> Result<Option<JobId>> {
            run.next()
                .transpose()?
                .map(|(key, _)| queued_job(&key))
                .transpose()
        }
        let mut runs: Vec<(JobId, Run<'_>)> = Vec::new();
        let mut from = Bound::Unbounded;
        while let Some(entry) = self
            .store
            .scan(QUEUE, from, Bound::Unbounded, Direction::Forward)?
            .next()
        {
            let (key, _) = entry?;
            let priority = key
                .get(..PRIORITY_LEN)
                .ok_or_else(|| CoordinatorError::Internal("bad queue key".into()))?;
            let to = match before {
                Some(id) => Bound::Excluded([priority, id.as_bytes()].concat()),
                None => prefix_range(priority).1,
            };
            let mut run = self.store.scan(
                QUEUE,
                Bound::Included(priority.to_vec()),
                to,
                Direction::Reverse,
            )?;
            if let Some(head) = next_id(&mut run)? {
                runs.push((head, run));
            }
            match prefix_end(priority) {
                Some(end) => from = Bound::Included(end),
                None => break,
            }
        }
        let mut ids = Vec::new();
        while ids.len() < limit {
            let Some(newest) = (0..runs.len()).max_by_key(|&run| runs[run].0) else {
                break;
            };
            ids.push(runs[newest].0);
            match next_id(&mut runs[newest].1)? {
                Some(head) => runs[newest].0 = head,
                None => drop(runs.swap_remove(newest)),
            }
        }
        Ok(ids)
    }

    /// Ids of jobs whose last attempt ran on `node`, newest first.
    pub fn ids_on_node(
        &self,
        node: &str,
        before: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<JobId>> {
        self.index_ids(BY_NODE, &with_str_part(node, b""), before, limit)
    }

    /// Ids of the step jobs of `parent`, in the order they were made (at most `limit`).
    pub fn ids_of_parent(&self, parent: JobId, limit: usize) -> Result<Vec<JobId>> {
        let mut ids = Vec::new();
        for entry in self
            .store
            .scan_prefix(BY_PARENT, parent.as_bytes(), Direction::Forward)?
            .take(limit)
        {
            let (key, _) = entry?;
            if let Some(id) = key.get(16..).and_then(job_id_from) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Ids of all jobs, newest first.
    pub fn ids(&self, before: Option<JobId>, limit: usize) -> Result<Vec<JobId>> {
        self.index_ids(JOBS, b"", before, limit)
    }

    fn index_ids(
        &self,
        tree: &'static str,
        prefix: &[u8],
        before: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<JobId>> {
        let (from, prefix_end) = prefix_range(prefix);
        let to = match before {
            Some(id) => Bound::Excluded([prefix, id.as_bytes()].concat()),
            None => prefix_end,
        };
        let mut ids = Vec::new();
        for entry in self
            .store
            .scan(tree, from, to, Direction::Reverse)?
            .take(limit)
        {
            let (key, _) = entry?;
            if let Some(id) = key.get(prefix.len()..).and_then(job_id_from) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Queued jobs in scheduling order (priority, then age), lazily.
    pub fn queue(
        &self,
    ) -> Result<impl Iterator<Item = Result<reelay_core::scheduler::QueuedJob>> + '_> {
        let iter = self.store.scan_prefix(QUEUE, b"", Direction::Forward)?;
        Ok(iter.map(|entry| {
            let (key, value) = entry?;
            let id = queued_job(&key)?;
            let spec = v1::JobSpec::decode(value.as_slice())?;
            Ok(reelay_core::scheduler::QueuedJob {
                id,
                priority: spec.priority,
                pinned: Some(spec.node_id).filter(|node| !node.is_empty()),
                labels: spec.labels.into_iter().collect(),
            })
        }))
    }

    /// Places in the queue (from 1) of the queued jobs among `ids`, in one pass over the queue that
    /// stops when all are found or after `cap` entries (jobs further back get no position).
    pub fn queue_positions(
        &self,
        ids: &[JobId],
        cap: usize,
    ) -> Result<std::collections::HashMap<JobId, usize>> {
        let mut wanted: std::collections::HashSet<JobId> = ids.iter().copied().collect();
        let mut positions = std::collections::HashMap::new();
        if wanted.is_empty() {
            return Ok(positions);
        }
        for (index, entry) in self
            .store
            .scan_prefix(QUEUE, b"", Direction::Forward)?
            .take(cap)
            .enumerate()
        {
            let (key, _) = entry?;
            if let Ok(id) = queued_job(&key)
                && wanted.remove(&id)
            {
                positions.insert(id, index + 1);
                if wanted.is_empty() {
                    break;
                }
            }
        }
        Ok(positions)
    }

    /// The first jobs to expire, up to `limit`, with their expiry time.
    pub fn expiring(&self, limit: usize) -> Result<Vec<(SystemTime, JobId)>> {
        let mut out = Vec::new();
        for entry in self
            .store
            .scan_prefix(EXPIRY, b"", Direction::Forward)?
            .take(limit)
        {
            let (key, _) = entry?;
            if let (Some(millis), Some(id)) = (read_u64(&key), key.get(8..).and_then(job_id_from)) {
                out.push((UNIX_EPOCH + Duration::from_millis(millis), id));
            }
        }
        Ok(out)
    }
}

// === keys and encodings ===

/// The event of a change that left the job as `job`; `previous`: its state before a state change.
pub(crate) fn job_event(
    job: &Job,
    change: reelay_core::JobChange,
    previous: Option<JobState>,
) -> v1::JobEvent {
    v1::JobEvent {
        job_id: job.id.to_string(),
        version: job.version,
        job: Some(v1::Job::from(job)),
        change: v1::JobChange::from(change) as i32,
        previous_state: previous.map_or(0, |state| v1::JobState::from(state) as i32),
        time: Some(reelay_proto::convert::timestamp(job.updated_at)),
    }
}

pub(crate) fn event_key(id: JobId, version: u64) -> Vec<u8> {
    [id.as_bytes().as_slice(), &u64_key(version)].concat()
}

pub(crate) fn log_key(id: JobId, line: u64) -> Vec<u8> {
    [id.as_bytes().as_slice(), &u64_key(line)].concat()
}

/// Bytes of a queue key before the job id: the priority.
const PRIORITY_LEN: usize = 4;

/// The job id of a queue key.
fn queued_job(key: &[u8]) -> Result<JobId> {
    key.get(PRIORITY_LEN..)
        .and_then(job_id_from)
        .ok_or_else(|| CoordinatorError::Internal("bad queue key".into()))
}

/// Higher priorities sort first: the order-preserving map of i32 to u32, inverted.
pub(crate) fn queue_key(priority: i32, id: JobId) -> Vec<u8> {
    let ordered = (priority as u32) ^ 0x8000_0000;
    [(!ordered).to_be_bytes().as_slice(), id.as_bytes()].concat()
}

fn expiry_key(at: SystemTime, id: JobId) -> Vec<u8> {
    let millis = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    [u64_key(millis).as_slice(), id.as_bytes()].concat()
}

pub(crate) fn job_id_from(bytes: &[u8]) -> Option<JobId> {
    Some(JobId::from_bytes(bytes.get(..16)?.try_into().ok()?))
}

pub(crate) fn decode_job(bytes: &[u8]) -> Result<Job> {
    let wire = v1::Job::decode(bytes)?;
    Job::try_from(wire)
        .map_err(|err| CoordinatorError::Internal(format!("stored job is invalid: {err}")))
}

pub(crate) fn encode_mark(mark: LogMark) -> Vec<u8> {
    [
        mark.attempt.to_be_bytes().as_slice(),
        &u64_key(mark.attempt_lines),
        &u64_key(mark.total),
    ]
    .concat()
}

fn decode_mark(bytes: &[u8]) -> LogMark {
    LogMark {
        attempt: bytes
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .unwrap_or(0),
        attempt_lines: bytes.get(4..).and_then(read_u64).unwrap_or(0),
        total: bytes.get(12..).and_then(read_u64).unwrap_or(0),
    }
}

pub(crate) fn encode_cursor(cursor: &Cursor) -> Vec<u8> {
    [u64_key(cursor.seq).as_slice(), cursor.log_id.as_bytes()].concat()
}

/// The writes that take the stored state of a job from `before` to `after` (`None`: absent):
/// the record itself and every index entry derived from it.
pub(crate) fn index_writes(before: Option<&Job>, after: Option<&Job>, batch: &mut WriteBatch) {
    let id = before.or(after).map(|job| job.id);
    let Some(id) = id else { return };
    // Queued jobs are listed from the queue.
    let state_key = |job: &Job| {
        (job.state != JobState::Queued).then(|| [&[job.state.code()][..], id.as_bytes()].concat())
    };
    let node_key = |job: &Job| {
        job.node_id
            .as_deref()
            .map(|node| with_str_part(node, id.as_bytes()))
    };
    let queue_entry = |job: &Job| {
        (job.state == JobState::Queued).then(|| {
            let value = v1::JobSpec {
                node_id: job.spec.node_id.clone().unwrap_or_default(),
                priority: job.spec.priority,
                labels: job.spec.labels.clone().into_iter().collect(),
                ..Default::default()
            };
            (queue_key(job.spec.priority, id), value.encode_to_vec())
        })
    };
    let expiry = |job: &Job| job.expires_at.map(|at| expiry_key(at, id));

    match after {
        Some(job) => batch.put(
            JOBS,
            id.as_bytes().to_vec(),
            v1::Job::from(job).encode_to_vec(),
        ),
        None => batch.delete(JOBS, id.as_bytes().to_vec()),
    }
    let old_state = before.and_then(state_key);
    let new_state = after.and_then(state_key);
    if old_state != new_state {
        old_state
            .into_iter()
            .for_each(|key| batch.delete(BY_STATE, key));
        new_state
            .into_iter()
            .for_each(|key| batch.put(BY_STATE, key, Vec::new()));
    }
    let old_node = before.and_then(node_key);
    let new_node = after.and_then(node_key);
    if old_node != new_node {
        old_node
            .into_iter()
            .for_each(|key| batch.delete(BY_NODE, key));
        new_node
            .into_iter()
            .for_each(|key| batch.put(BY_NODE, key, Vec::new()));
    }
    let old_queue = before.and_then(queue_entry);
    let new_queue = after.and_then(queue_entry);
    if old_queue != new_queue {
        old_queue
            .into_iter()
            .for_each(|(key, _)| batch.delete(QUEUE, key));
        new_queue
            .into_iter()
            .for_each(|(key, value)| batch.put(QUEUE, key, value));
    }
    let parent_key = |job: &Job| {
        job.parent_id
            .map(|parent| [parent.as_bytes().as_slice(), id.as_bytes()].concat())
    };
    let old_parent = before.and_then(parent_key);
    let new_parent = after.and_then(parent_key);
    if old_parent != new_parent {
        old_parent
            .into_iter()
            .for_each(|key| batch.delete(BY_PARENT, key));
        new_parent
            .into_iter()
            .for_each(|key| batch.put(BY_PARENT, key, Vec::new()));
    }
    let old_expiry = before.and_then(expiry);
    let new_expiry = after.and_then(expiry);
    if old_expiry != new_expiry {
        old_expiry
            .into_iter()
            .for_each(|key| batch.delete(EXPIRY, key));
        new_expiry
            .into_iter()
            .for_each(|key| batch.put(EXPIRY, key, Vec::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reelay_core::JobSpec;
    use reelay_store::SledStore;
    use reelay_store::sled_store::SledOptions;

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

    fn job(n: u64, priority: i32) -> Job {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + n);
        let spec = JobSpec {
            pipeline: "p".into(),
            priority,
            ..JobSpec::default()
        };
        Job::new(JobId::new(at), spec, String::new(), at)
    }

    fn write(store: &JobStore, before: Option<&Job>, after: Option<&Job>) {
        let mut batch = WriteBatch::default();
        index_writes(before, after, &mut batch);
        store.raw().commit(&batch).unwrap();
    }

    #[test]
    fn queue_keys_sort_high_priority_first() {
        let id = JobId::new(SystemTime::now());
        assert!(queue_key(10, id) < queue_key(0, id));
        assert!(queue_key(0, id) < queue_key(-5, id));
        assert!(queue_key(i32::MAX, id) < queue_key(i32::MIN, id));
    }

    #[test]
    fn indexes_follow_the_job() {
        let (_dir, store) = store();
        let (a, b) = (job(1, 0), job(2, 5));
        write(&store, None, Some(&a));
        write(&store, None, Some(&b));
        assert_eq!(
            store.ids_in_state(JobState::Queued, None, 10).unwrap(),
            [b.id, a.id]
        );
        let queue: Vec<JobId> = store.queue().unwrap().map(|q| q.unwrap().id).collect();
        assert_eq!(queue, [b.id, a.id], "priority 5 before priority 0");
        assert_eq!(
            store.queue_positions(&[a.id, b.id], 100).unwrap(),
            [(b.id, 1), (a.id, 2)].into()
        );
        assert!(
            store.queue_positions(&[a.id], 1).unwrap().is_empty(),
            "beyond the cap"
        );

        let mut running = a.clone();
        running.state = JobState::Running;
        running.node_id = Some("n1".into());
        write(&store, Some(&a), Some(&running));
        assert_eq!(
            store.ids_in_state(JobState::Queued, None, 10).unwrap(),
            [b.id]
        );
        assert_eq!(
            store.ids_in_state(JobState::Running, None, 10).unwrap(),
            [a.id]
        );
        assert_eq!(store.ids_on_node("n1", None, 10).unwrap(), [a.id]);
        assert_eq!(store.queue().unwrap().count(), 1);

        let mut done = running.clone();
        done.state = JobState::Succeeded;
        done.expires_at = Some(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        write(&store, Some(&running), Some(&done));
        assert_eq!(store.expiring(10).unwrap()[0].1, a.id);

        write(&store, Some(&done), None);
        assert!(store.job(a.id).unwrap().is_none());
        assert!(store.ids_on_node("n1", None, 10).unwrap().is_empty());
        assert!(store.expiring(10).unwrap().is_empty());
        assert!(
            store
                .ids_in_state(JobState::Succeeded, None, 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn pages_go_newest_first_from_a_token() {
        let (_dir, store) = store();
        let jobs: Vec<Job> = (0..5).map(|n| job(n, 0)).collect();
        for job in &jobs {
            write(&store, None, Some(job));
        }
        let first = store.ids(None, 2).unwrap();
        assert_eq!(first, [jobs[4].id, jobs[3].id]);
        let second = store.ids(Some(first[1]), 2).unwrap();
        assert_eq!(second, [jobs[2].id, jobs[1].id]);
        let by_state = store
            .ids_in_state(JobState::Queued, Some(jobs[1].id), 10)
            .unwrap();
        assert_eq!(by_state, [jobs[0].id]);
    }

    fn state_index_is_empty(store: &JobStore) -> bool {
        let mut entries = store
            .raw()
            .scan_prefix(BY_STATE, b"", Direction::Forward)
            .unwrap();
        entries.next().is_none()
    }

    #[test]
    fn queued_jobs_list_newest_first_across_priorities_and_pages() {
        let (_dir, store) = store();
        // Ages 0..12, priorities in no order of age, the extremes of i32 included.
        let priorities = [0, 5, i32::MIN, 0, -3, 5, i32::MAX, 0, -3, 9, 0, 5];
        let jobs: Vec<Job> = priorities
            .iter()
            .enumerate()
            .map(|(n, &priority)| job(n as u64, priority))
            .collect();
        for job in &jobs {
            write(&store, None, Some(job));
        }
        let newest_first: Vec<JobId> = jobs.iter().rev().map(|job| job.id).collect();
        assert_eq!(
            store.ids_in_state(JobState::Queued, None, 100).unwrap(),
            newest_first
        );
        let mut paged = Vec::new();
        let mut before = None;
        loop {
            let page = store.ids_in_state(JobState::Queued, before, 5).unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 5);
            before = page.last().copied();
            paged.extend(page);
        }
        assert_eq!(paged, newest_first, "pages of 5 join up to the whole list");
        assert!(
            state_index_is_empty(&store),
            "queued jobs have no state index entry"
        );
    }

    #[test]
    fn schema_2_databases_are_upgraded_and_keep_their_queued_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let options = SledOptions {
            cache_bytes: 1 << 20,
        };
        let schema_2 = Schema {
            version: 2,
            upgrades: &[],
            ..SCHEMA
        };
        let jobs: Vec<Job> = (0..25_000).map(|n| job(n, (n % 3) as i32)).collect();
        {
            // What version 2 wrote for a queued job: its state index entry too.
            let sled = SledStore::open(dir.path(), &schema_2, options).unwrap();
            let mut batch = WriteBatch::default();
            for job in &jobs {
                index_writes(None, Some(job), &mut batch);
                batch.put(
                    BY_STATE,
                    [&[JobState::Queued.code()][..], job.id.as_bytes()].concat(),
                    Vec::new(),
                );
            }
            sled.commit(&batch).unwrap();
            sled.flush().unwrap();
        }
        let sled = SledStore::open(dir.path(), &SCHEMA, options).unwrap();
        let store = JobStore::new(Arc::new(sled));
        assert!(
            state_index_is_empty(&store),
            "the upgrade removed every queued state entry"
        );
        let listed = store
            .ids_in_state(JobState::Queued, None, usize::MAX)
            .unwrap();
        assert_eq!(listed.len(), jobs.len());
        assert_eq!(listed.first(), jobs.last().map(|job| &job.id));
        assert_eq!(store.queue().unwrap().count(), jobs.len());
        drop(store);
        assert_eq!(
            reelay_store::sled_store::database_in(dir.path()).unwrap(),
            SCHEMA.tag()
        );
    }

    #[test]
    fn node_prefixes_do_not_collide() {
        let (_dir, store) = store();
        let mut a = job(1, 0);
        a.node_id = Some("n1".into());
        let mut b = job(2, 0);
        b.node_id = Some("n10".into());
        write(&store, None, Some(&a));
        write(&store, None, Some(&b));
        assert_eq!(store.ids_on_node("n1", None, 10).unwrap(), [a.id]);
    }

    #[test]
    fn marks_and_cursors_round_trip() {
        let mark = LogMark {
            attempt: 3,
            attempt_lines: 70,
            total: 900,
        };
        assert_eq!(decode_mark(&encode_mark(mark)), mark);
        let (_dir, store) = store();
        let cursor = Cursor {
            seq: 42,
            log_id: "abc".into(),
        };
        let mut batch = WriteBatch::default();
        batch.put(CURSORS, b"n1".to_vec(), encode_cursor(&cursor));
        store.raw().commit(&batch).unwrap();
        assert_eq!(store.cursor("n1").unwrap(), cursor);
        assert_eq!(store.cursor("n2").unwrap(), Cursor::default());
    }
}
