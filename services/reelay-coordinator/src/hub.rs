//! Fan-out of job changes and log lines to watchers.
//!
//! One broadcast channel carries every job change (for `WatchJobs`); per-job channels, created
//! when someone watches that job and dropped when nobody does, carry one job's changes and log
//! lines (for `WatchJob` and `GetJobLogs`), so a watcher of one job never filters the whole
//! cluster's traffic. Channels are bounded: a watcher that falls behind gets `Lagged` and resyncs
//! from storage (a fresh snapshot), it never slows the others down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use reelay_core::JobId;
use reelay_proto::v1;
use tokio::sync::broadcast;

/// Changes buffered for `WatchJobs` watchers before a slow one lags.
const ALL_CAPACITY: usize = 8192;
/// Changes (or log lines) buffered per watched job before a slow watcher lags. Small: every
/// watched job allocates this many slots, and a watcher that lags resyncs from storage.
const JOB_CAPACITY: usize = 128;
/// Node changes buffered for `WatchNodes` watchers before a slow one lags.
const NODE_CAPACITY: usize = 1024;

/// Fan-out of job changes and log lines.
#[derive(Debug)]
pub struct Hub {
    all: broadcast::Sender<Arc<v1::JobEvent>>,
    jobs: Mutex<HashMap<JobId, broadcast::Sender<Arc<v1::JobEvent>>>>,
    logs: Mutex<HashMap<JobId, broadcast::Sender<Arc<v1::LogLine>>>>,
    /// Node changes, for `WatchNodes`.
    nodes: broadcast::Sender<Arc<v1::NodeEvent>>,
    /// Nodes as last published (without regard to `last_seen`); read under the same lock as the
    /// publishing, so a new watcher's first view and the changes after it follow each other.
    published_nodes: Mutex<HashMap<String, v1::Node>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            all: broadcast::channel(ALL_CAPACITY).0,
            jobs: Mutex::default(),
            logs: Mutex::default(),
            nodes: broadcast::channel(NODE_CAPACITY).0,
            published_nodes: Mutex::default(),
        }
    }
}

impl Hub {
    pub fn subscribe_all(&self) -> broadcast::Receiver<Arc<v1::JobEvent>> {
        self.all.subscribe()
    }

    pub fn subscribe_job(&self, id: JobId) -> broadcast::Receiver<Arc<v1::JobEvent>> {
        subscribe(&self.jobs, id)
    }

    pub fn subscribe_logs(&self, id: JobId) -> broadcast::Receiver<Arc<v1::LogLine>> {
        subscribe(&self.logs, id)
    }

    pub fn publish_job(&self, id: JobId, event: Arc<v1::JobEvent>) {
        // No receiver is not an error: nobody watches right now.
        let _ = self.all.send(Arc::clone(&event));
        publish(&self.jobs, id, event);
    }

    /// Every node as last published, and the changes that follow.
    pub fn subscribe_nodes(&self) -> (Vec<v1::Node>, broadcast::Receiver<Arc<v1::NodeEvent>>) {
        let published = self
            .published_nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut nodes: Vec<v1::Node> = published.values().cloned().collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        (nodes, self.nodes.subscribe())
    }

    /// Publishes the nodes that differ from what was last published (ignoring `last_seen`),
    /// and the removal of those no longer in `nodes`.
    pub fn publish_nodes(&self, nodes: Vec<v1::Node>) {
        let mut published = self
            .published_nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let same = |a: &v1::Node, b: &v1::Node| {
            v1::Node {
                last_seen: None,
                ..a.clone()
            } == v1::Node {
                last_seen: None,
                ..b.clone()
            }
        };
        let mut current = HashMap::with_capacity(nodes.len());
        for node in nodes {
            if published.get(&node.id).is_none_or(|old| !same(old, &node)) {
                let _ = self.nodes.send(Arc::new(v1::NodeEvent {
                    node: Some(node.clone()),
                    removed: false,
                    synced: false,
                }));
            }
            current.insert(node.id.clone(), node);
        }
        for (id, node) in published.iter() {
            if !current.contains_key(id) {
                let _ = self.nodes.send(Arc::new(v1::NodeEvent {
                    node: Some(node.clone()),
                    removed: true,
                    synced: false,
                }));
            }
        }
        *published = current;
    }

    pub fn publish_log(&self, id: JobId, line: Arc<v1::LogLine>) {
        publish(&self.logs, id, line);
    }

    /// Drops the channels of a job nobody watches any more (called when a watch ends).
    pub fn release(&self, id: JobId) {
        release(&self.jobs, id);
        release(&self.logs, id);
    }

    /// Watched jobs (for metrics).
    pub fn watched_jobs(&self) -> usize {
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn all_watchers(&self) -> usize {
        self.all.receiver_count()
    }
}

fn subscribe<T: Clone>(
    map: &Mutex<HashMap<JobId, broadcast::Sender<T>>>,
    id: JobId,
) -> broadcast::Receiver<T> {
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    map.entry(id)
        .or_insert_with(|| broadcast::channel(JOB_CAPACITY).0)
        .subscribe()
}

fn release<T: Clone>(map: &Mutex<HashMap<JobId, broadcast::Sender<T>>>, id: JobId) {
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    if map
        .get(&id)
        .is_some_and(|sender| sender.receiver_count() == 0)
    {
        map.remove(&id);
    }
}

fn publish<T: Clone>(map: &Mutex<HashMap<JobId, broadcast::Sender<T>>>, id: JobId, value: T) {
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(sender) = map.get(&id)
        && sender.send(value).is_err()
    {
        // Every watcher of this job left.
        map.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: JobId, version: u64) -> Arc<v1::JobEvent> {
        Arc::new(v1::JobEvent {
            job_id: id.to_string(),
            version,
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn per_job_watchers_get_only_their_job() {
        let hub = Hub::default();
        let (a, b) = (
            JobId::new(std::time::SystemTime::now()),
            JobId::new(std::time::SystemTime::now()),
        );
        let mut watch_a = hub.subscribe_job(a);
        let mut all = hub.subscribe_all();
        hub.publish_job(b, event(b, 1));
        hub.publish_job(a, event(a, 7));
        assert_eq!(watch_a.recv().await.unwrap().version, 7);
        assert_eq!(all.recv().await.unwrap().job_id, b.to_string());
        assert_eq!(all.recv().await.unwrap().job_id, a.to_string());
    }

    #[tokio::test]
    async fn channels_of_unwatched_jobs_are_dropped() {
        let hub = Hub::default();
        let id = JobId::new(std::time::SystemTime::now());
        drop(hub.subscribe_job(id));
        assert_eq!(hub.watched_jobs(), 1);
        hub.publish_job(id, event(id, 1));
        assert_eq!(hub.watched_jobs(), 0);
    }

    #[tokio::test]
    async fn released_channels_go_when_nobody_watches() {
        let hub = Hub::default();
        let id = JobId::new(std::time::SystemTime::now());
        let first = hub.subscribe_job(id);
        let second = hub.subscribe_logs(id);
        drop(first);
        hub.release(id);
        assert_eq!(hub.watched_jobs(), 0);
        drop(second);
        hub.release(id);
        assert!(hub.logs.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_slow_watcher_lags_instead_of_blocking() {
        let hub = Hub::default();
        let id = JobId::new(std::time::SystemTime::now());
        let mut slow = hub.subscribe_job(id);
        for version in 0..(JOB_CAPACITY as u64 + 10) {
            hub.publish_job(id, event(id, version));
        }
        assert!(matches!(
            slow.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
    }
}
