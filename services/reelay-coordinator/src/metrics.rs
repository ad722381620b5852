//! Prometheus metrics at `/metrics`.
//!
//! Counters are bumped by the engine as things happen; gauges (nodes, watchers) are read from the
//! live state when scraped, except the open-stream gauges, which each stream's guard moves
//! ([`OpenStreams`]).

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::engine::Engine;
use crate::hub::Hub;

type Labels = Vec<(&'static str, String)>;

/// The coordinator's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Jobs created.
    pub jobs_created: Counter,
    /// Jobs that reached a terminal state, by state.
    pub jobs_finished: Family<Labels, Counter>,
    /// Worker events applied.
    pub worker_events: Counter,
    /// Commands per engine cycle (how much group commit batches).
    pub cycle_commands: Histogram,
    nodes: Family<Labels, Gauge>,
    watchers: Gauge,
    /// Server streams open now, by kind.
    pub streams: OpenStreams,
    sources: Arc<std::sync::OnceLock<(Engine, Arc<Hub>)>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("reelay");
        let jobs_created = Counter::default();
        registry.register("jobs_created", "Jobs created", jobs_created.clone());
        let jobs_finished = Family::<Labels, Counter>::default();
        registry.register(
            "jobs_finished",
            "Jobs that reached a terminal state",
            jobs_finished.clone(),
        );
        let worker_events = Counter::default();
        registry.register(
            "worker_events",
            "Events applied from workers",
            worker_events.clone(),
        );
        let cycle_commands = Histogram::new([
            1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
        ]);
        registry.register(
            "engine_cycle_commands",
            "Commands handled per engine cycle",
            cycle_commands.clone(),
        );
        let nodes = Family::<Labels, Gauge>::default();
        registry.register("nodes", "Nodes by state", nodes.clone());
        let watchers = Gauge::default();
        registry.register(
            "job_watchers",
            "Subscribers of every job's changes (WatchJobs streams)",
            watchers.clone(),
        );
        let streams = OpenStreams::default();
        registry.register(
            "open_streams",
            "Server streams open now, by kind",
            streams.gauges.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            jobs_created,
            jobs_finished,
            worker_events,
            cycle_commands,
            nodes,
            watchers,
            streams,
            sources: Arc::default(),
        }
    }
}

impl Metrics {
    /// Where gauges are read from when scraped.
    pub fn observe(&self, engine: Engine, hub: Arc<Hub>) {
        let _ = self.sources.set((engine, hub));
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        if let Some((engine, hub)) = self.sources.get() {
            self.nodes.clear();
            for node in engine.cluster().nodes() {
                self.nodes
                    .get_or_create(&vec![("state", node.state.to_string())])
                    .inc();
            }
            self.watchers.set(hub.all_watchers() as i64);
        }
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text = "# metrics could not be encoded\n".to_owned();
        }
        text
    }
}

/// The kinds of server stream the coordinator holds open (the `kind` label of
/// `reelay_open_streams`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    WatchJob,
    WatchJobs,
    /// `GetJobLogs`, following or not.
    GetJobLogs,
    WatchNodes,
    /// `DownloadOutput` over gRPC.
    DownloadOutput,
    /// `GET /download/…` over plain HTTP.
    HttpDownload,
}

impl StreamKind {
    const ALL: [StreamKind; 6] = [
        StreamKind::WatchJob,
        StreamKind::WatchJobs,
        StreamKind::GetJobLogs,
        StreamKind::WatchNodes,
        StreamKind::DownloadOutput,
        StreamKind::HttpDownload,
    ];

    fn label(self) -> &'static str {
        match self {
            StreamKind::WatchJob => "WatchJob",
            StreamKind::WatchJobs => "WatchJobs",
            StreamKind::GetJobLogs => "GetJobLogs",
            StreamKind::WatchNodes => "WatchNodes",
            StreamKind::DownloadOutput => "DownloadOutput",
            StreamKind::HttpDownload => "http_download",
        }
    }
}

/// Gauges of open server streams. A stream counts from [`OpenStreams::open`] until its guard is
/// dropped, which the stream's task does when it ends: the gauge shows tasks and subscriptions
/// held, not merely connections.
#[derive(Debug, Clone)]
pub struct OpenStreams {
    gauges: Family<Labels, Gauge>,
}

impl Default for OpenStreams {
    fn default() -> Self {
        let gauges = Family::<Labels, Gauge>::default();
        // Every kind is shown from the start, at 0: a baseline to compare with.
        for kind in StreamKind::ALL {
            drop(gauges.get_or_create(&vec![("kind", kind.label().to_owned())]));
        }
        OpenStreams { gauges }
    }
}

impl OpenStreams {
    /// Counts one more open stream of `kind` until the returned guard is dropped.
    pub fn open(&self, kind: StreamKind) -> OpenStream {
        let gauge = self
            .gauges
            .get_or_create(&vec![("kind", kind.label().to_owned())])
            .clone();
        gauge.inc();
        OpenStream(gauge)
    }

    /// Streams of `kind` open now.
    pub fn count(&self, kind: StreamKind) -> i64 {
        self.gauges
            .get_or_create(&vec![("kind", kind.label().to_owned())])
            .get()
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
