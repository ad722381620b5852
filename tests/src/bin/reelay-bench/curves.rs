//! `reelay-bench --curves`: how cost grows with work. Each curve is measured at several points
//! against real processes, written as CSV (`<name>.csv`, a header row, medians of `--runs`) and
//! drawn as SVG (`<name>.svg`) into `--out` (default `docs/perf/` of the repository).
//!
//! - `creates`: durable CreateJob/s against concurrent clients;
//! - `progress`: `::progress` line → WatchJob client latency against concurrent running jobs;
//! - `watchers`: coordinator RSS against idle WatchJob streams;
//! - `restart` and `stored-memory`: time to serving after SIGTERM / SIGKILL, and coordinator RSS,
//!   against stored jobs (one data directory grown from point to point).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reelay_proto::v1;
use reelay_tests::process::{children_cpu_seconds, cpu_seconds, rss_mib};
use reelay_tests::{TestCluster, WorkerSpec};

use crate::api;
use crate::plot::{self, Chart, Series};
use crate::stats::{median, ms, quantile};
use crate::table::{Table, growth_exponents};

/// A job that prints `::progress … t=<ns since the epoch>` every `interval` seconds, `ticks`
/// times. Bash with builtins only (`printf`, `$EPOCHREALTIME`, `read -t` on a pipe that never
/// speaks): a thousand of them cost little memory and no fork per line.
const CURVE_TICK_PIPELINE: &str = r#"
[[pipeline]]
name = "curve-tick"
command = ["bash", "-c", """
exec 9<> <(:)
ticks=$REELAY_PARAM_TICKS
for ((i = 1; i <= ticks; i++)); do
  printf '::progress %d tick t=%s000\\n' $((i * 100 / ticks)) "${EPOCHREALTIME/./}"
  read -t "$REELAY_PARAM_INTERVAL" -u 9
done
"""]
input_required = false
params = [
  { name = "ticks", default = "100", pattern = "[0-9]{1,6}" },
  { name = "interval", default = "0.1", pattern = "[0-9]{1,2}(\\.[0-9]{1,3})?" },
]
"#;

/// Each running job prints a progress line this often.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// WatchJob streams opened on the running jobs (the first ones created): the latency sample.
const WATCHED_AT_MOST: usize = 100;
/// Workers and slots of the progress cluster: room for 1,000 running jobs.
const PROGRESS_WORKERS: usize = 4;
const PROGRESS_SLOTS: u32 = 256;

/// What `--curves` measures, from the command line.
#[derive(Debug, Clone)]
pub struct CurveOptions {
    pub quick: bool,
    pub runs: usize,
    /// CreateJob calls per creates run.
    pub creates: usize,
    pub out: PathBuf,
    /// Curves to measure (`creates,progress,watchers,stored`); all when empty.
    pub only: Vec<String>,
}

impl CurveOptions {
    pub fn from_args(args: &[String]) -> Self {
        let value = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let quick = args.iter().any(|a| a == "--quick");
        let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = tests.parent().unwrap_or(tests);
        Self {
            quick,
            runs: value("--runs").and_then(|v| v.parse().ok()).unwrap_or(3),
            creates: value("--creates")
                .and_then(|v| v.parse().ok())
                .unwrap_or(if quick { 5_000 } else { 20_000 }),
            out: value("--out")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("docs/perf")),
            only: value("--only")
                .map(|list| list.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
        }
    }

    fn wants(&self, curve: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|c| c == curve)
    }

    fn points(&self, full: &[usize], quick: &[usize]) -> Vec<usize> {
        if self.quick { quick } else { full }.to_vec()
    }
}

/// Measures the curves `options` asks for, writing each as soon as it is measured.
pub async fn run(options: &CurveOptions) {
    std::fs::create_dir_all(&options.out).expect("create the output directory");
    eprintln!(
        "curves into {} ({} run(s) per point{})",
        options.out.display(),
        options.runs,
        if options.quick { ", quick points" } else { "" }
    );
    if options.wants("creates") {
        let table = creates_curve(options).await;
        save(options, "creates", &table, &creates_chart(&table));
    }
    if options.wants("progress") {
        let table = progress_curve(options).await;
        save(options, "progress", &table, &progress_chart(&table));
        let cpu = table.select(&[
            "running_jobs",
            "cores_coordinator",
            "cores_workers",
            "cores_pipelines",
            "cores_bench",
            "reelay_cpu_us_per_line",
            "runs",
        ]);
        save(options, "progress-cpu", &cpu, &progress_cpu_chart(&cpu));
    }
    if options.wants("watchers") {
        let table = watchers_curve(options).await;
        save(options, "watchers", &table, &watchers_chart(&table));
    }
    if options.wants("stored") {
        let table = stored_curve(options).await;
        let restart = table.select(&[
            "stored_jobs",
            "restart_sigterm_first_ms",
            "stop_sigterm_first_ms",
            "restart_sigterm_ms",
            "restart_sigkill_ms",
            "runs",
        ]);
        save(options, "restart", &restart, &restart_chart(&restart));
        let memory = table.select(&[
            "stored_jobs",
            "rss_written_mib",
            "rss_after_restart_mib",
            "rss_serving_mib",
            "runs",
        ]);
        save(
            options,
            "stored-memory",
            &memory,
            &stored_memory_chart(&memory),
        );
    }
}

/// Writes `<name>.csv` and `<name>.svg`, and prints the table with its growth exponents.
fn save(options: &CurveOptions, name: &str, table: &Table, chart: &Chart) {
    let csv = options.out.join(format!("{name}.csv"));
    table.write_csv(&csv).expect("write the CSV");
    let svg = options.out.join(format!("{name}.svg"));
    if let Err(error) = plot::draw(chart, &svg) {
        eprintln!("{name}: no plot: {error:#}");
    }
    println!("\n### {}\n\n{}", chart.title, table.to_csv());
    for series in &chart.series {
        let exponents: Vec<String> = growth_exponents(&series.points)
            .iter()
            .map(|k| format!("{k:.2}"))
            .collect();
        println!(
            "growth exponent of {} between points (1 = linear): {}",
            series.name,
            exponents.join(", ")
        );
    }
    eprintln!("wrote {} and {}", csv.display(), svg.display());
}

fn series(table: &Table, column: &str, name: &str) -> Series {
    Series {
        name: name.to_owned(),
        points: table.points(column),
    }
}

fn chart(title: &str, x_label: &str, y_label: &str, series: Vec<Series>) -> Chart {
    Chart {
        title: title.to_owned(),
        x_label: x_label.to_owned(),
        y_label: y_label.to_owned(),
        log_x: true,
        series,
    }
}

async fn creates_curve(options: &CurveOptions) -> Table {
    let mut table = Table::new(&["clients", "creates_per_s", "jobs_per_run", "runs"]);
    for clients in options.points(&[1, 4, 16, 64, 256], &[1, 4, 16, 64]) {
        let mut rates = Vec::new();
        for run in 0..options.runs {
            let cluster = TestCluster::builder()
                .extra_config(api::TICK_PIPELINE)
                .start()
                .await;
            rates.push(
                api::create_throughput(&cluster, options.creates, clients, run * options.creates)
                    .await,
            );
        }
        let rate = median(&mut rates);
        eprintln!("creates: {clients} clients → {rate:.0}/s");
        table.push(vec![
            clients as f64,
            rate,
            options.creates as f64,
            options.runs as f64,
        ]);
    }
    table
}

fn creates_chart(table: &Table) -> Chart {
    chart(
        "Durable CreateJob throughput against concurrent clients",
        "concurrent clients (log scale)",
        "durable creates per second (jobs/s)",
        vec![series(table, "creates_per_s", "CreateJob/s (median)")],
    )
}

/// One point of the progress curve: latencies of the watched jobs' lines within the window.
struct ProgressPoint {
    /// Jobs the coordinator saw running when the window opened.
    running: usize,
    p50: Duration,
    p99: Duration,
    samples: usize,
    /// Progress events a watched job delivered per second (1 / interval when keeping up).
    per_job_per_s: f64,
    /// Cores used over the window by the coordinator, the workers, the pipelines (the jobs'
    /// own processes) and this bench's watchers.
    cpu: ProcessCpu,
}

/// Cores used over a window, by process group.
#[derive(Debug, Clone, Copy, Default)]
struct ProcessCpu {
    coordinator: f64,
    workers: f64,
    pipelines: f64,
    bench: f64,
}

impl ProcessCpu {
    /// CPU seconds used so far by each group of `cluster`'s processes.
    fn used_so_far(cluster: &TestCluster) -> ProcessCpu {
        let workers: Vec<u32> = cluster
            .workers
            .iter()
            .filter_map(|worker| worker.process.pid())
            .collect();
        ProcessCpu {
            coordinator: cluster.coordinator.pid().map(cpu_seconds).unwrap_or(0.0),
            workers: workers.iter().copied().map(cpu_seconds).sum(),
            pipelines: children_cpu_seconds(&workers),
            bench: cpu_seconds(std::process::id()),
        }
    }

    /// Cores used between `before` and `self`, `window` apart.
    fn cores_since(&self, before: &ProcessCpu, window: Duration) -> ProcessCpu {
        let cores = |now: f64, then: f64| (now - then).max(0.0) / window.as_secs_f64();
        ProcessCpu {
            coordinator: cores(self.coordinator, before.coordinator),
            workers: cores(self.workers, before.workers),
            pipelines: cores(self.pipelines, before.pipelines),
            bench: cores(self.bench, before.bench),
        }
    }
}

async fn progress_curve(options: &CurveOptions) -> Table {
    let mut table = Table::new(&[
        "running_jobs",
        "p50_ms",
        "p99_ms",
        "watched_jobs",
        "samples",
        "lines_per_job_per_s",
        "seen_running",
        "interval_ms",
        "cores_coordinator",
        "cores_workers",
        "cores_pipelines",
        "cores_bench",
        "reelay_cpu_us_per_line",
        "runs",
    ]);
    for jobs in options.points(&[1, 10, 100, 1000], &[1, 10, 100]) {
        let watched = jobs.min(WATCHED_AT_MOST);
        // Enough lines for a p99: ~500 from the watched jobs, within bounds.
        let (least, most) = if options.quick { (3, 15) } else { (5, 40) };
        let window = (PROGRESS_INTERVAL * (500 / watched) as u32)
            .clamp(Duration::from_secs(least), Duration::from_secs(most));
        let mut points = Vec::new();
        for _ in 0..options.runs {
            points.push(progress_point(jobs, watched, window).await);
        }
        let p50 = median(&mut points.iter().map(|p| ms(p.p50)).collect::<Vec<_>>());
        let p99 = median(&mut points.iter().map(|p| ms(p.p99)).collect::<Vec<_>>());
        let samples = median(&mut points.iter().map(|p| p.samples as f64).collect::<Vec<_>>());
        let rate = median(&mut points.iter().map(|p| p.per_job_per_s).collect::<Vec<_>>());
        let seen_running = median(&mut points.iter().map(|p| p.running as f64).collect::<Vec<_>>());
        let cores = |pick: fn(&ProcessCpu) -> f64| {
            median(&mut points.iter().map(|p| pick(&p.cpu)).collect::<Vec<_>>())
        };
        let coordinator = cores(|cpu| cpu.coordinator);
        let workers = cores(|cpu| cpu.workers);
        let pipelines = cores(|cpu| cpu.pipelines);
        let bench = cores(|cpu| cpu.bench);
        // Reelay's own CPU per line printed: both servers' cores over the lines all jobs printed
        // per second (each watched job's delivered rate stands for every job's).
        let per_line_us = (coordinator + workers) / (jobs as f64 * rate).max(1.0) * 1e6;
        eprintln!(
            "progress: {jobs} running → p50 {p50:.3} ms, p99 {p99:.3} ms ({samples} lines); cores: coordinator {coordinator:.2}, workers {workers:.2}, pipelines {pipelines:.2}, bench {bench:.2}; Reelay {per_line_us:.0} µs of CPU per line"
        );
        table.push(vec![
            jobs as f64,
            p50,
            p99,
            watched as f64,
            samples,
            rate,
            seen_running,
            ms(PROGRESS_INTERVAL),
            coordinator,
            workers,
            pipelines,
            bench,
            per_line_us,
            options.runs as f64,
        ]);
    }
    table
}

/// Runs `jobs` curve-tick jobs at once on a fresh cluster, watches `watched` of them and
/// measures, over `window` once all are running, each progress line's printed → received time.
async fn progress_point(jobs: usize, watched: usize, window: Duration) -> ProgressPoint {
    let mut builder = TestCluster::builder().extra_config(CURVE_TICK_PIPELINE);
    for _ in 0..PROGRESS_WORKERS {
        builder = builder.worker(WorkerSpec {
            slots: PROGRESS_SLOTS,
            ..Default::default()
        });
    }
    let cluster = builder.start().await;
    // Long enough to start them all, warm up and measure; cancelled after.
    let ticks = (Duration::from_secs(300) + window).as_millis() / PROGRESS_INTERVAL.as_millis();
    let interval = format!("{:.3}", PROGRESS_INTERVAL.as_secs_f64());
    let mut ids = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        let job = cluster
            .submit(
                "curve-tick",
                &[("ticks", &ticks.to_string()), ("interval", &interval)],
            )
            .await;
        ids.push(job.id);
    }
    let recording = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let mut watchers = Vec::new();
    let mut connection = cluster.jobs().await;
    for (n, id) in ids.iter().take(watched).enumerate() {
        // Ten streams per connection.
        if n % 10 == 0 && n > 0 {
            connection = cluster.jobs().await;
        }
        let mut client = connection.clone();
        let request = v1::WatchJobRequest {
            id: id.clone(),
            after_version: 0,
        };
        let recording = Arc::clone(&recording);
        let samples = Arc::clone(&samples);
        watchers.push(tokio::spawn(async move {
            let mut stream = client.watch_job(request).await.expect("watch").into_inner();
            while let Ok(Some(event)) = stream.message().await {
                let received = api::now_ns();
                if !recording.load(Ordering::Relaxed) {
                    continue;
                }
                if let Some(job) = event.job
                    && event.change == v1::JobChange::Progress as i32
                    && let Some(printed) = api::printed_at(&job.stage)
                {
                    let latency = Duration::from_nanos(received.saturating_sub(printed) as u64);
                    samples.lock().expect("samples").push(latency);
                }
            }
        }));
    }
    let running = wait_running(&cluster, jobs, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    recording.store(true, Ordering::Relaxed);
    let cpu_before = ProcessCpu::used_so_far(&cluster);
    let opened = Instant::now();
    tokio::time::sleep(window).await;
    recording.store(false, Ordering::Relaxed);
    let cpu = ProcessCpu::used_so_far(&cluster).cores_since(&cpu_before, opened.elapsed());
    let mut samples = std::mem::take(&mut *samples.lock().expect("samples"));
    cancel_all(&cluster, &ids).await;
    for watcher in watchers {
        watcher.abort();
    }
    ProgressPoint {
        running,
        p50: quantile(&mut samples, 0.5),
        p99: quantile(&mut samples, 0.99),
        per_job_per_s: samples.len() as f64 / watched as f64 / window.as_secs_f64(),
        samples: samples.len(),
        cpu,
    }
}

/// Jobs in `states`, counted through ListJobs pages of 1,000.
async fn count_jobs(cluster: &TestCluster, states: &[v1::JobState]) -> usize {
    let mut client = cluster.jobs().await;
    let (mut count, mut token) = (0, String::new());
    loop {
        let page = client
            .list_jobs(v1::ListJobsRequest {
                page_size: 1000,
                page_token: token,
                states: states.iter().map(|s| *s as i32).collect(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        count += page.jobs.len();
        if page.next_page_token.is_empty() {
            return count;
        }
        token = page.next_page_token;
    }
}

/// Waits until the coordinator sees `jobs` running, or `timeout`: the jobs it sees running then.
/// A saturated cluster reports the starts late; the point is measured anyway, and says so.
async fn wait_running(cluster: &TestCluster, jobs: usize, timeout: Duration) -> usize {
    let started = Instant::now();
    loop {
        let running = count_jobs(cluster, &[v1::JobState::Running]).await;
        if running >= jobs {
            return running;
        }
        if started.elapsed() >= timeout {
            eprintln!("progress: only {running} of {jobs} jobs seen running after {timeout:?}");
            return running;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Cancels `ids` (16 calls at a time) and waits until none is active.
async fn cancel_all(cluster: &TestCluster, ids: &[String]) {
    let client = cluster.jobs().await;
    let mut tasks = Vec::new();
    for part in ids.chunks(ids.len().div_ceil(16).max(1)) {
        let mut client = client.clone();
        let part = part.to_vec();
        tasks.push(tokio::spawn(async move {
            for id in part {
                // A job that already ended answers FAILED_PRECONDITION: nothing to cancel.
                let _ = client.cancel_job(v1::CancelJobRequest { id }).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("cancel task");
    }
    let active = [
        v1::JobState::Queued,
        v1::JobState::Assigned,
        v1::JobState::Running,
    ];
    let started = Instant::now();
    while count_jobs(cluster, &active).await > 0 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn progress_chart(table: &Table) -> Chart {
    chart(
        "::progress line → WatchJob client latency against running jobs",
        "concurrent running jobs, each printing every 100 ms (log scale)",
        "latency (ms)",
        vec![
            series(table, "p50_ms", "p50"),
            series(table, "p99_ms", "p99"),
        ],
    )
}

fn progress_cpu_chart(table: &Table) -> Chart {
    chart(
        "Cores used while jobs print progress, by process",
        "concurrent running jobs, each printing every 100 ms (log scale)",
        "cores (of the machine's 2)",
        vec![
            series(table, "cores_coordinator", "coordinator"),
            series(table, "cores_workers", "workers"),
            series(table, "cores_pipelines", "the jobs' own processes"),
            series(table, "cores_bench", "bench (watchers)"),
        ],
    )
}

async fn watchers_curve(options: &CurveOptions) -> Table {
    let mut table = Table::new(&[
        "watchers",
        "rss_mib",
        "rss_before_mib",
        "growth_mib",
        "kib_per_watcher",
        "runs",
    ]);
    for watchers in options.points(&[1_000, 10_000, 50_000], &[1_000, 3_000, 10_000]) {
        let (mut before, mut after) = (Vec::new(), Vec::new());
        for _ in 0..options.runs {
            let cluster = TestCluster::builder()
                .extra_config(api::TICK_PIPELINE)
                .start()
                .await;
            let (b, a) = api::watchers_memory(&cluster, watchers).await;
            before.push(b);
            after.push(a);
        }
        let growth = median(
            &mut before
                .iter()
                .zip(&after)
                .map(|(b, a)| a - b)
                .collect::<Vec<_>>(),
        );
        let (before, after) = (median(&mut before), median(&mut after));
        eprintln!("watchers: {watchers} → {after:.1} MiB (+{growth:.1})");
        table.push(vec![
            watchers as f64,
            after,
            before,
            growth,
            growth * 1024.0 / watchers as f64,
            options.runs as f64,
        ]);
    }
    table
}

fn watchers_chart(table: &Table) -> Chart {
    chart(
        "Coordinator memory against idle WatchJob streams",
        "idle WatchJob streams (log scale)",
        "coordinator RSS (MiB)",
        vec![
            series(table, "rss_mib", "RSS with the streams open"),
            series(table, "growth_mib", "growth over no streams"),
        ],
    )
}

async fn stored_curve(options: &CurveOptions) -> Table {
    let mut table = Table::new(&[
        "stored_jobs",
        "restart_sigterm_first_ms",
        "stop_sigterm_first_ms",
        "restart_sigterm_ms",
        "restart_sigkill_ms",
        "rss_written_mib",
        "rss_after_restart_mib",
        "rss_serving_mib",
        "runs",
    ]);
    let mut cluster = TestCluster::builder()
        .extra_config(api::TICK_PIPELINE)
        .start()
        .await;
    let mut stored = 0;
    for point in options.points(
        &[10_000, 100_000, 1_000_000, 5_000_000],
        &[10_000, 30_000, 100_000],
    ) {
        let started = Instant::now();
        api::create_throughput(&cluster, point - stored, 64, 100_000_000 + stored).await;
        stored = point;
        eprintln!(
            "stored: {stored} jobs ({:.0} s to add the last ones)",
            started.elapsed().as_secs_f64()
        );
        let rss_written = coordinator_rss(&cluster);
        let (mut clean, mut crash, mut first_stop) = (Vec::new(), Vec::new(), 0.0);
        for run in 0..options.runs.max(1) {
            let (stop, start) = api::time_stop_and_restart(&mut cluster, false).await;
            if run == 0 {
                first_stop = ms(stop);
            }
            clean.push(ms(start));
            crash.push(ms(api::time_restart(&mut cluster, true).await));
        }
        let rss_restarted = coordinator_rss(&cluster);
        serve_pages(&cluster, Duration::from_secs(2)).await;
        let rss_serving = coordinator_rss(&cluster);
        let first = clean[0];
        let (clean, crash) = (median(&mut clean), median(&mut crash));
        eprintln!(
            "stored: {stored} → first stop {first_stop:.0} ms, first restart {first:.0} ms, SIGTERM {clean:.0} ms, SIGKILL {crash:.0} ms, RSS {rss_restarted:.0} / {rss_serving:.0} MiB"
        );
        table.push(vec![
            stored as f64,
            first,
            first_stop,
            clean,
            crash,
            rss_written,
            rss_restarted,
            rss_serving,
            options.runs as f64,
        ]);
    }
    table
}

fn coordinator_rss(cluster: &TestCluster) -> f64 {
    rss_mib(cluster.coordinator.pid().expect("coordinator pid"))
}

/// ListJobs for `time`: the newest page, a state-filtered page, and walks 20 pages of 1,000 deep.
async fn serve_pages(cluster: &TestCluster, time: Duration) {
    let mut client = cluster.jobs().await;
    let started = Instant::now();
    while started.elapsed() < time {
        let mut token = String::new();
        for _ in 0..20 {
            let page = client
                .list_jobs(v1::ListJobsRequest {
                    page_size: 1000,
                    page_token: token,
                    ..Default::default()
                })
                .await
                .expect("list")
                .into_inner();
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        client
            .list_jobs(v1::ListJobsRequest {
                page_size: 50,
                states: vec![v1::JobState::Queued as i32],
                ..Default::default()
            })
            .await
            .expect("list by state");
    }
}

fn restart_chart(table: &Table) -> Chart {
    chart(
        "Coordinator restart time against stored jobs",
        "stored jobs (log scale)",
        "time (ms): start to serving ListJobs, or SIGTERM to exit",
        vec![
            series(
                table,
                "restart_sigterm_first_ms",
                "first start after the writes",
            ),
            series(
                table,
                "stop_sigterm_first_ms",
                "the stop before it (SIGTERM to exit, with the checkpoint)",
            ),
            series(table, "restart_sigterm_ms", "after SIGTERM (median)"),
            series(table, "restart_sigkill_ms", "after SIGKILL (median)"),
        ],
    )
}

fn stored_memory_chart(table: &Table) -> Chart {
    chart(
        "Coordinator memory against stored jobs",
        "stored jobs (log scale)",
        "coordinator RSS (MiB)",
        vec![
            series(table, "rss_written_mib", "after writing them"),
            series(table, "rss_after_restart_mib", "just restarted"),
            series(table, "rss_serving_mib", "serving ListJobs"),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn quick_shrinks_the_points_and_out_moves_the_files() {
        let quick = CurveOptions::from_args(&args("--curves --quick --out /tmp/x --runs 1"));
        assert_eq!(
            quick.points(&[1, 10, 100, 1000], &[1, 10, 100]),
            [1, 10, 100]
        );
        assert_eq!(quick.out, PathBuf::from("/tmp/x"));
        assert_eq!(quick.runs, 1);
        let full = CurveOptions::from_args(&args("--curves --only creates,stored"));
        assert_eq!(
            full.points(&[1, 10, 100, 1000], &[1, 10]),
            [1, 10, 100, 1000]
        );
        assert!(full.out.ends_with("docs/perf"));
        assert!(full.wants("stored") && !full.wants("progress"));
    }

    #[test]
    fn each_chart_plots_its_table_columns() {
        let mut table = Table::new(&[
            "stored_jobs",
            "restart_sigterm_first_ms",
            "stop_sigterm_first_ms",
            "restart_sigterm_ms",
            "restart_sigkill_ms",
            "rss_written_mib",
            "rss_after_restart_mib",
            "rss_serving_mib",
            "runs",
        ]);
        table.push(vec![
            10_000.0, 50.0, 70.0, 40.0, 60.0, 30.0, 20.0, 25.0, 3.0,
        ]);
        table.push(vec![
            100_000.0, 90.0, 120.0, 80.0, 100.0, 60.0, 40.0, 45.0, 3.0,
        ]);
        assert_eq!(restart_chart(&table).series.len(), 4);
        assert_eq!(stored_memory_chart(&table).series.len(), 3);
        for chart in [restart_chart(&table), stored_memory_chart(&table)] {
            for series in &chart.series {
                assert_eq!(series.points.len(), 2, "{}", series.name);
            }
        }
    }
}
