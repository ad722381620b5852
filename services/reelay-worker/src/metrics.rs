//! The worker's Prometheus metrics at `/metrics` on its own port (HTTP/1.1 or HTTP/2, no token:
//! counts only, like the coordinator's): the server streams it holds open and its jobs.
//!
//! The coordinator cannot see these: a `StreamEvents` or download stream that a client left
//! behind on a worker is visible only here. Each stream holds an [`OpenStream`] guard from the
//! moment it is opened until it is dropped with the stream.

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::supervisor::Supervisor;

type Labels = Vec<(&'static str, String)>;

/// The kinds of server stream a worker holds open (the `kind` label of `reelay_worker_open_streams`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    StreamEvents,
    DownloadOutput,
}

impl StreamKind {
    const ALL: [StreamKind; 2] = [StreamKind::StreamEvents, StreamKind::DownloadOutput];

    fn label(self) -> &'static str {
        match self {
            StreamKind::StreamEvents => "StreamEvents",
            StreamKind::DownloadOutput => "DownloadOutput",
        }
    }
}

/// The worker's metrics.
#[derive(Clone)]
pub struct WorkerMetrics {
    registry: Arc<Registry>,
    streams: Family<Labels, Gauge>,
    /// Attempts holding a slot, read from the supervisor when scraped.
    running: Gauge,
    supervisor: Arc<Supervisor>,
}

impl std::fmt::Debug for WorkerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerMetrics").finish_non_exhaustive()
    }
}

impl WorkerMetrics {
    pub fn new(supervisor: Arc<Supervisor>) -> Self {
        let mut registry = Registry::with_prefix("reelay_worker");
        let streams = Family::<Labels, Gauge>::default();
        // Every kind is shown from the start, at 0: a baseline to compare with.
        for kind in StreamKind::ALL {
            drop(streams.get_or_create(&vec![("kind", kind.label().to_owned())]));
        }
        registry.register(
            "open_streams",
            "Server streams open now, by kind",
            streams.clone(),
        );
        let running = Gauge::default();
        registry.register(
            "running_jobs",
            "Attempts holding a slot of this node",
            running.clone(),
        );
        WorkerMetrics {
            registry: Arc::new(registry),
            streams,
            running,
            supervisor,
        }
    }

    /// Counts one more open stream of `kind` until the returned guard is dropped.
    pub fn open(&self, kind: StreamKind) -> OpenStream {
        let gauge = self
            .streams
            .get_or_create(&vec![("kind", kind.label().to_owned())])
            .clone();
        gauge.inc();
        OpenStream(gauge)
    }

    /// The text exposition format.
    pub async fn render(&self) -> String {
        self.running
            .set(i64::from(self.supervisor.info().await.running));
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text = "# metrics could not be encoded\n".to_owned();
        }
        text
    }
}

/// One open stream, counted in its kind's gauge until dropped.
#[derive(Debug)]
pub struct OpenStream(Gauge);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}
