//! The worker's durable state: its attempts (`jobs`, `active`) and its event log (`events`).
//!
//! Every change of an attempt is written together with the event that reports it, in one atomic
//! batch. Events are keyed by a big-endian `seq`, per worker and never reused: seqs are handed out
//! from blocks reserved durably in `meta` *before* any of them is used, so even events that were
//! streamed but not yet flushed when the worker crashed cannot have their numbers given again.
//! State changes are flushed before they are acknowledged — and before they are streamed
//! ([`crate::visibility`]); log lines and progress are not (they are cheap to lose and the
//! coordinator de-duplicates re-sent log lines by their number).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use prost::Message;
use reelay_proto::convert::timestamp;
use reelay_proto::v1;
use reelay_store::keys::{read_u64, u64_key};
use reelay_store::sled_store::{Schema, SledOptions};
use reelay_store::{Direction, SledStore, Store, WriteBatch};
use tokio::sync::watch;

use crate::error::WorkerError;
use crate::visibility::Visibility;

pub(crate) const JOBS: &str = "jobs";
pub(crate) const ACTIVE: &str = "active";
pub(crate) const EVENTS: &str = "events";
pub(crate) const META: &str = "meta";

/// The worker database's schema.
pub const SCHEMA: Schema = Schema {
    kind: "worker",
    version: 2,
    trees: &[JOBS, ACTIVE, EVENTS, META],
    upgrades: &[],
};

const SEQ_RESERVED_KEY: &[u8] = b"seq_reserved";
const LOG_ID_KEY: &[u8] = b"log_id";
/// Seqs reserved per durable write of `seq_reserved`.
const SEQ_BLOCK: u64 = 100_000;

/// One change to record: an attempt's new record, and/or a log line of it.
#[derive(Debug, Default)]
pub(crate) struct Change {
    /// The attempt's record after the change.
    pub(crate) job: Option<v1::WorkerJob>,
    /// Whether the record change is worth an event (state, progress, outputs); a record change that
    /// only moves log bookkeeping is stored without one.
    pub(crate) job_event: bool,
    pub(crate) log: Option<v1::LogLine>,
}

#[derive(Debug)]
struct SeqState {
    next: u64,
    reserved_until: u64,
}

/// The attempt records and the event log, over a [`Store`].
#[derive(Debug)]
pub struct EventLog {
    store: Arc<dyn Store>,
    seq: Mutex<SeqState>,
    last_seq: watch::Sender<u64>,
    /// Which events may be streamed: all but those behind a durable append not flushed yet.
    visibility: Mutex<Visibility>,
    visible: watch::Sender<u64>,
    /// Identifies this log; a new one (a wiped data dir) makes the coordinator start from seq 0.
    log_id: String,
}

impl EventLog {
    /// Opens the worker's database under `dir`.
    pub fn open_dir(dir: &std::path::Path) -> Result<Self, WorkerError> {
        let store = SledStore::open(
            dir,
            &SCHEMA,
            SledOptions {
                cache_bytes: 64 * 1024 * 1024,
            },
        )?;
        Self::open(Arc::new(store))
    }

    pub(crate) fn open(store: Arc<dyn Store>) -> Result<Self, WorkerError> {
        let reserved = store
            .get(META, SEQ_RESERVED_KEY)?
            .and_then(|bytes| read_u64(&bytes))
            .unwrap_or(0);
        let log_id = match store.get(META, LOG_ID_KEY)? {
            Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            None => uuid::Uuid::now_v7().to_string(),
        };
        let last_written = match store.last_with_prefix(EVENTS, b"")? {
            Some((key, _)) => read_u64(&key).unwrap_or(0),
            None => 0,
        };
        let next = reserved.max(last_written) + 1;
        let reserved_until = next + SEQ_BLOCK - 1;
        let mut batch = WriteBatch::default();
        batch.put(
            META,
            SEQ_RESERVED_KEY.to_vec(),
            u64_key(reserved_until).to_vec(),
        );
        batch.put(META, LOG_ID_KEY.to_vec(), log_id.as_bytes().to_vec());
        store.commit(&batch)?;
        store.flush()?;
        let (last_seq, _) = watch::channel(last_written);
        let (visible, _) = watch::channel(last_written);
        Ok(EventLog {
            store,
            seq: Mutex::new(SeqState {
                next,
                reserved_until,
            }),
            last_seq,
            visibility: Mutex::new(Visibility::starting_at(last_written)),
            visible,
            log_id,
        })
    }

    pub fn log_id(&self) -> &str {
        &self.log_id
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The last seq written.
    pub fn last_seq(&self) -> u64 {
        *self.last_seq.borrow()
    }

    /// The last seq that may be streamed, notified as it grows: the events appended, except those
    /// behind a durable append no flush has covered yet ([`EventLog::append_durable`]).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.visible.subscribe()
    }

    /// Records `changes` atomically, with an event each. Not flushed: see [`EventLog::flush`].
    pub(crate) fn append(&self, changes: Vec<Change>) -> Result<u64, WorkerError> {
        self.append_held(changes, false)
    }

    /// Records `changes` and makes them durable before it returns — and before their events (or
    /// any appended after them) can be streamed: the coordinator never learns of a state the
    /// worker could forget in a crash.
    pub(crate) async fn append_durable(&self, changes: Vec<Change>) -> Result<u64, WorkerError> {
        let last = self.append_held(changes, true)?;
        self.flush().await?;
        Ok(last)
    }

    /// [`EventLog::append`]; `held` keeps the events from streaming until a flush covers them.
    fn append_held(&self, changes: Vec<Change>, held: bool) -> Result<u64, WorkerError> {
        let now = timestamp(SystemTime::now());
        let mut seq = self.seq.lock().unwrap_or_else(PoisonError::into_inner);
        let mut batch = WriteBatch::default();
        let mut first = 0;
        let mut last = 0;
        for change in changes {
            if let Some(job) = &change.job {
                let stored = self.get_job(&job.job_id)?;
                // An attempt superseded on this node goes on reporting while it stops (its last
                // lines, its end) after the newer attempt was accepted: its events are logged, but
                // its record must not replace the newer one, which the coordinator reconciles with
                // (GetJob) and recovery resumes from (`active`).
                let superseded = stored
                    .as_ref()
                    .is_some_and(|stored| stored.attempt > job.attempt);
                if !superseded {
                    batch.put(JOBS, job.job_id.as_bytes().to_vec(), job.encode_to_vec());
                    let was_active = stored.is_some_and(|stored| !is_terminal(stored.state));
                    if is_terminal(job.state) {
                        batch.delete(ACTIVE, job.job_id.as_bytes().to_vec());
                    } else if !was_active {
                        // An active attempt's entry is there already (progress rewrites nothing).
                        batch.put(ACTIVE, job.job_id.as_bytes().to_vec(), Vec::new());
                    }
                }
            }
            let (job_id, attempt) = match (&change.job, &change.log) {
                (Some(job), _) => (job.job_id.clone(), job.attempt),
                (None, Some(log)) => (String::new(), log.attempt),
                (None, None) => continue,
            };
            let mut events = Vec::new();
            if let Some(log) = change.log {
                events.push((v1::WorkerEventKind::Log, None, Some(log)));
            }
            if change.job_event {
                events.push((v1::WorkerEventKind::Job, change.job, None));
            }
            for (kind, job, log) in events {
                let number = self.next_seq(&mut seq, &mut batch)?;
                let event = v1::WorkerEvent {
                    seq: number,
                    job_id: job_id.clone(),
                    attempt,
                    kind: kind as i32,
                    time: Some(now),
                    job,
                    log,
                    info: None,
                };
                batch.put(EVENTS, u64_key(number).to_vec(), event.encode_to_vec());
                if first == 0 {
                    first = number;
                }
                last = number;
            }
        }
        self.store.commit(&batch)?;
        if last > 0 {
            self.last_seq.send_replace(last);
            self.update_visibility(|visibility| visibility.appended(first, last, held));
        }
        drop(seq);
        Ok(last)
    }

    fn update_visibility(&self, change: impl FnOnce(&mut Visibility)) {
        let mut visibility = self
            .visibility
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        change(&mut visibility);
        let visible = visibility.visible();
        self.visible.send_if_modified(|current| {
            let grew = visible > *current;
            *current = (*current).max(visible);
            grew
        });
    }

    /// Hands out the next seq, reserving (durably) a new block first when the current one is used up.
    fn next_seq(&self, seq: &mut SeqState, batch: &mut WriteBatch) -> Result<u64, WorkerError> {
        if seq.next > seq.reserved_until {
            // Commit what is pending first so the reservation record is flushed with it.
            self.store.commit(batch)?;
            *batch = WriteBatch::default();
            let reserved_until = seq.next + SEQ_BLOCK - 1;
            let mut reserve = WriteBatch::default();
            reserve.put(
                META,
                SEQ_RESERVED_KEY.to_vec(),
                u64_key(reserved_until).to_vec(),
            );
            self.store.commit(&reserve)?;
            self.store.flush()?;
            seq.reserved_until = reserved_until;
        }
        let number = seq.next;
        seq.next += 1;
        Ok(number)
    }

    /// Makes everything appended so far durable (runs on a blocking thread), and lets the events
    /// it covers stream.
    pub async fn flush(&self) -> Result<(), WorkerError> {
        // Every append that published its seq before this point is covered by the flush below.
        let upto = self.last_seq();
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || store.flush())
            .await
            .map_err(|err| WorkerError::Internal(format!("flush task: {err}")))??;
        self.update_visibility(|visibility| visibility.flushed(upto));
        Ok(())
    }

    /// Up to `limit` events after `after_seq` and up to `upto` (included), in order.
    pub fn read_between(
        &self,
        after_seq: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<v1::WorkerEvent>, WorkerError> {
        if upto <= after_seq {
            return Ok(Vec::new());
        }
        let from = std::ops::Bound::Excluded(u64_key(after_seq).to_vec());
        let to = std::ops::Bound::Included(u64_key(upto).to_vec());
        let mut events = Vec::new();
        for entry in self
            .store
            .scan(EVENTS, from, to, Direction::Forward)?
            .take(limit)
        {
            let (_, value) = entry?;
            events.push(v1::WorkerEvent::decode(value.as_slice())?);
        }
        Ok(events)
    }

    /// Deletes events up to and including `seq` (the coordinator has them durably).
    pub fn trim_through(&self, seq: u64) -> Result<usize, WorkerError> {
        let mut removed = 0;
        loop {
            let to = std::ops::Bound::Included(u64_key(seq).to_vec());
            let mut batch = WriteBatch::default();
            for entry in self
                .store
                .scan(EVENTS, std::ops::Bound::Unbounded, to, Direction::Forward)?
                .take(10_000)
            {
                batch.delete(EVENTS, entry?.0);
            }
            if batch.is_empty() {
                return Ok(removed);
            }
            removed += batch.len();
            self.store.commit(&batch)?;
        }
    }

    pub fn get_job(&self, job_id: &str) -> Result<Option<v1::WorkerJob>, WorkerError> {
        match self.store.get(JOBS, job_id.as_bytes())? {
            Some(bytes) => Ok(Some(v1::WorkerJob::decode(bytes.as_slice())?)),
            None => Ok(None),
        }
    }

    /// Attempts that have not finished.
    pub fn active_jobs(&self) -> Result<Vec<v1::WorkerJob>, WorkerError> {
        let mut jobs = Vec::new();
        for entry in self.store.scan_prefix(ACTIVE, b"", Direction::Forward)? {
            let (key, _) = entry?;
            if let Some(job) = self.get_job(&String::from_utf8_lossy(&key))? {
                jobs.push(job);
            }
        }
        Ok(jobs)
    }

    /// Every attempt record (newest job ids last).
    pub fn all_jobs(&self) -> Result<Vec<v1::WorkerJob>, WorkerError> {
        let mut jobs = Vec::new();
        for entry in self.store.scan_prefix(JOBS, b"", Direction::Forward)? {
            jobs.push(v1::WorkerJob::decode(entry?.1.as_slice())?);
        }
        Ok(jobs)
    }

    /// Forgets a finished attempt.
    pub fn delete_job(&self, job_id: &str) -> Result<(), WorkerError> {
        let mut batch = WriteBatch::default();
        batch.delete(JOBS, job_id.as_bytes().to_vec());
        batch.delete(ACTIVE, job_id.as_bytes().to_vec());
        self.store.commit(&batch)?;
        Ok(())
    }
}

pub(crate) fn is_terminal(state: i32) -> bool {
    matches!(
        v1::JobState::try_from(state),
        Ok(v1::JobState::Succeeded | v1::JobState::Failed | v1::JobState::Cancelled)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, state: v1::JobState) -> v1::WorkerJob {
        v1::WorkerJob {
            job_id: id.into(),
            attempt: 1,
            state: state as i32,
            ..Default::default()
        }
    }

    fn change(job: v1::WorkerJob) -> Change {
        Change {
            job: Some(job),
            job_event: true,
            log: None,
        }
    }

    #[tokio::test]
    async fn a_durable_change_and_what_follows_stream_only_after_its_flush() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open_dir(dir.path()).unwrap();
        let visible = log.subscribe();
        let running = log
            .append(vec![change(job("a", v1::JobState::Running))])
            .unwrap();
        assert_eq!(
            *visible.borrow(),
            running,
            "a progress-like change streams at once"
        );
        let ended = log
            .append_held(vec![change(job("a", v1::JobState::Succeeded))], true)
            .unwrap();
        let other = log
            .append(vec![change(job("b", v1::JobState::Running))])
            .unwrap();
        assert!(running < ended && ended < other);
        assert_eq!(*visible.borrow(), running, "held until a flush covers it");
        let streamable = log.read_between(0, *visible.borrow(), 10).unwrap();
        assert_eq!(streamable.len(), 1);
        log.flush().await.unwrap();
        assert_eq!(
            *visible.borrow(),
            other,
            "the flush lets it and what follows go"
        );
        assert_eq!(log.read_between(0, *visible.borrow(), 10).unwrap().len(), 3);
        let last = log
            .append_durable(vec![change(job("b", v1::JobState::Failed))])
            .await
            .unwrap();
        assert_eq!(
            *visible.borrow(),
            last,
            "durable on return, streamable on return"
        );
        assert!(log.read_between(last, last, 10).unwrap().is_empty());
    }

    #[test]
    fn seqs_grow_and_are_never_reused_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (first_log_id, last) = {
            let log = EventLog::open_dir(dir.path()).unwrap();
            log.append(vec![change(job("a", v1::JobState::Running))])
                .unwrap();
            let last = log
                .append(vec![change(job("a", v1::JobState::Succeeded))])
                .unwrap();
            assert_eq!(log.read_between(0, u64::MAX, 10).unwrap().len(), 2);
            // Nothing flushed explicitly: a crash could lose these two events.
            (log.log_id().to_owned(), last)
        };
        let log = EventLog::open_dir(dir.path()).unwrap();
        assert_eq!(log.log_id(), first_log_id);
        let next = log
            .append(vec![change(job("b", v1::JobState::Running))])
            .unwrap();
        assert!(next > last, "{next} must be greater than {last}");
        assert!(next > SEQ_BLOCK, "a restart starts a new reserved block");
    }

    #[test]
    fn an_older_attempt_never_replaces_the_record_of_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open_dir(dir.path()).unwrap();
        let attempt = |attempt: u32, state: v1::JobState| v1::WorkerJob {
            attempt,
            ..job("a", state)
        };
        log.append(vec![change(attempt(1, v1::JobState::Running))])
            .unwrap();
        // Attempt 2 is accepted while attempt 1 stops: attempt 1 still prints, then ends.
        log.append(vec![change(attempt(2, v1::JobState::Assigned))])
            .unwrap();
        log.append(vec![Change {
            job: Some(attempt(1, v1::JobState::Running)),
            job_event: false,
            log: Some(v1::LogLine {
                number: 7,
                text: "stopping".into(),
                attempt: 1,
                ..Default::default()
            }),
        }])
        .unwrap();
        log.append(vec![change(attempt(1, v1::JobState::Cancelled))])
            .unwrap();
        let record = log.get_job("a").unwrap().unwrap();
        assert_eq!(
            (record.attempt, record.state),
            (2, v1::JobState::Assigned as i32)
        );
        let active: Vec<u32> = log
            .active_jobs()
            .unwrap()
            .iter()
            .map(|job| job.attempt)
            .collect();
        assert_eq!(active, [2], "attempt 2 is resumed after a restart");
        // Attempt 1's line and end are still in the log (the coordinator ignores them).
        let events = log.read_between(0, u64::MAX, 10).unwrap();
        let attempts: Vec<u32> = events.iter().map(|event| event.attempt).collect();
        assert_eq!(attempts, [1, 2, 1, 1]);
        // The newer attempt goes on as usual.
        log.append(vec![change(attempt(2, v1::JobState::Succeeded))])
            .unwrap();
        assert_eq!(
            log.get_job("a").unwrap().unwrap().state,
            v1::JobState::Succeeded as i32
        );
        assert!(log.active_jobs().unwrap().is_empty());
    }

    #[test]
    fn records_and_events_are_written_together() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open_dir(dir.path()).unwrap();
        let line = v1::LogLine {
            number: 1,
            text: "hello".into(),
            attempt: 1,
            ..Default::default()
        };
        log.append(vec![Change {
            job: Some(job("a", v1::JobState::Running)),
            job_event: false,
            log: Some(line),
        }])
        .unwrap();
        let events = log.read_between(0, u64::MAX, 10).unwrap();
        assert_eq!(
            events.len(),
            1,
            "a bookkeeping-only record change has no event of its own"
        );
        assert_eq!(events[0].kind, v1::WorkerEventKind::Log as i32);
        assert_eq!(log.active_jobs().unwrap().len(), 1);
        log.append(vec![change(job("a", v1::JobState::Failed))])
            .unwrap();
        assert!(log.active_jobs().unwrap().is_empty());
        assert_eq!(
            log.get_job("a").unwrap().unwrap().state,
            v1::JobState::Failed as i32
        );
    }

    #[test]
    fn an_attempt_stays_active_through_its_progress_and_a_retry_is_active_again() {
        let dir = tempfile::tempdir().unwrap();
        let attempt = |attempt: u32, state: v1::JobState, progress: u32| v1::WorkerJob {
            attempt,
            progress,
            ..job("a", state)
        };
        let active = |log: &EventLog| -> Vec<(u32, u32)> {
            let jobs = log.active_jobs().unwrap();
            jobs.iter().map(|job| (job.attempt, job.progress)).collect()
        };
        {
            let log = EventLog::open_dir(dir.path()).unwrap();
            log.append(vec![change(attempt(1, v1::JobState::Running, 0))])
                .unwrap();
            for progress in [10, 20, 30] {
                log.append(vec![change(attempt(1, v1::JobState::Running, progress))])
                    .unwrap();
            }
            assert_eq!(active(&log), [(1, 30)]);
        }
        let log = EventLog::open_dir(dir.path()).unwrap();
        assert_eq!(active(&log), [(1, 30)], "still active after a restart");
        log.append(vec![change(attempt(1, v1::JobState::Failed, 30))])
            .unwrap();
        assert!(active(&log).is_empty());
        log.append(vec![change(attempt(2, v1::JobState::Running, 0))])
            .unwrap();
        log.append(vec![change(attempt(2, v1::JobState::Running, 50))])
            .unwrap();
        assert_eq!(active(&log), [(2, 50)], "the retry is active");
    }

    #[test]
    fn read_after_and_trim() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open_dir(dir.path()).unwrap();
        let mut seqs = Vec::new();
        for _ in 0..5 {
            seqs.push(
                log.append(vec![change(job("a", v1::JobState::Running))])
                    .unwrap(),
            );
        }
        let after = log.read_between(seqs[1], u64::MAX, 2).unwrap();
        assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), &seqs[2..4]);
        assert_eq!(log.trim_through(seqs[2]).unwrap(), 3);
        assert_eq!(log.read_between(0, u64::MAX, 10).unwrap().len(), 2);
        assert_eq!(log.last_seq(), seqs[4]);
    }
}
