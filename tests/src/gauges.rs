//! Reading gauges from a server's `/metrics` (the coordinator's or a worker's) and waiting for
//! them to reach a value: how the stream tests see what a server holds open.

use std::time::{Duration, Instant};

use crate::http::{get, metric};

/// The `reelay_open_streams` sample of `kind` on a coordinator (`reelay_worker_open_streams` with
/// `worker`).
pub fn open_streams_sample(kind: &str, worker: bool) -> String {
    let prefix = if worker { "reelay_worker" } else { "reelay" };
    format!("{prefix}_open_streams{{kind=\"{kind}\"}}")
}

/// The value of `sample` in `/metrics` of the server at `address` (`127.0.0.1:PORT`).
pub fn gauge(address: &str, sample: &str) -> f64 {
    let text = get(address, "/metrics", &[]).text();
    metric(&text, sample).unwrap_or_else(|| panic!("{sample} is not in /metrics:\n{text}"))
}

/// Polls `sample` until it equals `want`; how long that took. Panics after `timeout` with the
/// last value.
pub async fn wait_gauge(address: &str, sample: &str, want: f64, timeout: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let address = address.to_owned();
        let name = sample.to_owned();
        let value = tokio::task::spawn_blocking(move || gauge(&address, &name))
            .await
            .expect("read /metrics");
        if value == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "{sample} is {value}, not {want}, after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
