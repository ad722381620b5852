//! `reelay-bench`: Reelay's performance budget, measured against real processes on loopback and
//! printed next to the targets of DESIGN.md and the limits of this machine.
//!
//! ```sh
//! cargo build --release -p reelay
//! cargo run --release -p reelay-tests --bin reelay-bench            # full run (1,000,000 stored jobs)
//! cargo run --release -p reelay-tests --bin reelay-bench -- --quick # a smaller, faster run
//! cargo run --release -p reelay-tests --bin reelay-bench -- --only create,watchers
//! cargo run --release -p reelay-tests --bin reelay-bench -- --only transfer-limits
//! cargo run --release -p reelay-tests --bin reelay-bench -- --only transfers
//! cargo run --release -p reelay-tests --bin reelay-bench -- --curves [--quick] [--out DIR]
//! ```
//!
//! Throughput figures are medians of several runs (`--runs`, default 3) on a fresh cluster each;
//! latencies are percentiles over many calls. The machine is shared: compare ratios, not absolutes.

mod api;
mod batch;
mod chunked;
mod curves;
mod limits;
mod plot;
mod stats;
mod table;
mod transfer_limits;
mod transfers;

use std::time::Duration;

use reelay_tests::process::cpu_seconds;
use reelay_tests::{TestCluster, WorkerSpec};
use stats::{median, ms};

const USAGE: &str = "\
reelay-bench: measures Reelay against the performance targets of DESIGN.md

Usage: reelay-bench [--quick] [--runs N] [--creates N] [--stored N] [--watchers N]
                    [--transfer-mib N] [--rss-mib N] [--video-seconds N] [--only LIST]

  --quick        a smaller run (5,000 creates, 100,000 stored jobs, 256 MiB transfers)
  --runs N       fresh clusters per throughput figure; the median is printed (default 3)
  --creates N    CreateJob calls per throughput run (default 20,000); CreateJobs runs create
                 as many jobs (a tenth of it in batches of 1)
  --stored N     jobs stored before the restart and ListJobs measures (default 1,000,000)
  --watchers N   idle WatchJob streams for the memory measure (default 10,000)
  --transfer-mib N  MiB moved by each transfer-limits and transfers run (default 1024)
  --rss-mib N    MiB of the file whose passage the transfers section measures RSS during
                 (default 2048; 0 skips it)
  --video-seconds N  length of the chunked section's 720p input (default 60; --quick 20)
  --only LIST    comma-separated: limits,transfer-limits,transfers,chunked,create,batch,latency,
                 progress,start,watchers,stored

chunked compares transcode with transcode-chunked on 1, 2 and 3 workers sharing the cores, and on
workers pinned to a core each (taskset) as many as there are cores

--curves       instead: cost against work, as CSV + SVG into --out DIR (default docs/perf):
               creates/s by clients, progress latency and the cores each process uses by
               running jobs, RSS by watchers, restart time and RSS by stored jobs (--quick:
               smaller points; --only picks creates,progress,watchers,stored)

transfer-limits and the S3 half of transfers need SeaweedFS (scripts/setup-test-env.sh puts it in
~/.cache/reelay-s3/); transfers prints the transfer limits too, to read its ratios against.

The reelay binary is the one REELAY_BIN names, else target/release/reelay when built.";

struct Options {
    runs: usize,
    creates: usize,
    stored: usize,
    watchers: usize,
    /// Bytes each transfer-limits and transfers run moves.
    transfer_bytes: u64,
    /// Bytes of the file the transfers section measures RSS with (0: not measured).
    rss_bytes: u64,
    /// Length of the chunked section's input video.
    video_seconds: u32,
    /// Measures to run (`--only create,watchers`); all when empty.
    only: Vec<String>,
}

impl Options {
    fn wants(&self, measure: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|m| m == measure)
    }
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        std::process::exit(0);
    }
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
    };
    let quick = args.iter().any(|a| a == "--quick");
    Options {
        runs: value("--runs").unwrap_or(3),
        creates: value("--creates").unwrap_or(if quick { 5_000 } else { 20_000 }),
        stored: value("--stored").unwrap_or(if quick { 100_000 } else { 1_000_000 }),
        watchers: value("--watchers").unwrap_or(10_000),
        transfer_bytes: (value("--transfer-mib").unwrap_or(if quick { 256 } else { 1024 }) as u64)
            << 20,
        rss_bytes: (value("--rss-mib").unwrap_or(if quick { 512 } else { 2048 }) as u64) << 20,
        video_seconds: value("--video-seconds").unwrap_or(if quick { 20 } else { 60 }) as u32,
        only: args
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| args.get(i + 1))
            .map(|list| list.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
    }
}

fn row(what: &str, target: &str, measured: String, verdict: bool) {
    println!(
        "| {what} | {target} | {measured} | {} |",
        if verdict { "ok" } else { "MISSED" }
    );
}

#[tokio::main]
async fn main() {
    let options = options();
    let release = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/reelay");
    if release.exists() {
        reelay_tests::process::set_default_bin(release);
    }
    eprintln!(
        "benchmarking {}",
        reelay_tests::process::reelay_bin().display()
    );
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--curves") {
        curves::run(&curves::CurveOptions::from_args(&args)).await;
        return;
    }

    let mut sled_each = 0.0;
    if options.wants("limits") {
        let fsync = limits::fsync_p50();
        let (each, grouped) = limits::sled_writes_per_second();
        sled_each = each;
        println!("\n## Limits of this machine\n");
        println!("- fsync of a 4 KiB write: p50 {:.3} ms", ms(fsync));
        println!(
            "- sled insert + flush each: {each:.0}/s; 1,000 inserts per flush: {grouped:.0}/s"
        );
        let (batch, single) = limits::sled_batch_p50();
        println!(
            "- an atomic commit of 4 writes (Reelay's store: an intent, see docs/decisions.md), not flushed: p50 {:.3} ms; the same 4 writes one by one: p50 {:.3} ms\n",
            ms(batch),
            ms(single)
        );
    }

    if options.wants("transfer-limits") || options.wants("transfers") {
        let s3 = reelay_tests::s3::weed_bin_path()
            .exists()
            .then(reelay_tests::s3::S3Server::start);
        let s3 = match s3 {
            Some(starting) => Some(starting.await),
            None => None,
        };
        let limits = transfer_limits_section(&options, s3.as_ref()).await;
        if options.wants("transfers") {
            transfers_section(&options, &limits, s3.as_ref()).await;
        }
    }

    if options.wants("chunked") {
        chunked_section(&options).await;
    }

    println!("## Reelay\n\n| measure | target | measured | |\n| --- | --- | --- | --- |");
    if options.wants("create") {
        let (mut throughputs, mut server_us, mut client_us) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..options.runs {
            let cluster = TestCluster::builder()
                .extra_config(api::TICK_PIPELINE)
                .start()
                .await;
            let coordinator = cluster.coordinator.pid().expect("coordinator pid");
            let (server, client) = (cpu_seconds(coordinator), cpu_seconds(std::process::id()));
            throughputs.push(
                api::create_throughput(&cluster, options.creates, 64, run * options.creates).await,
            );
            let per_create = |now: f64, then: f64| (now - then) / options.creates as f64 * 1e6;
            server_us.push(per_create(cpu_seconds(coordinator), server));
            client_us.push(per_create(cpu_seconds(std::process::id()), client));
        }
        let throughput = median(&mut throughputs);
        // What the cores are spent on: at 20,000/s two cores give 100 µs per create in all.
        let cpu = format!(
            "; CPU per create: coordinator {:.0} µs, the 64 clients {:.0} µs",
            median(&mut server_us),
            median(&mut client_us)
        );
        let versus = if sled_each > 0.0 {
            format!("; {:.1}x sled flush-each", throughput / sled_each)
        } else {
            String::new()
        };
        row(
            "durable CreateJob, 64 clients",
            "≥ 20,000/s",
            format!(
                "{throughput:.0}/s (median of {}{versus}{cpu})",
                options.runs
            ),
            throughput >= 20_000.0,
        );
    }

    if options.wants("latency") {
        let cluster = TestCluster::builder()
            .extra_config(api::TICK_PIPELINE)
            .start()
            .await;
        // Reads first: the creates' jobs keep the cluster busy for a while after them.
        let read = api::read_latency(&cluster, 2000).await;
        let (p50, p99) = api::create_latency(&cluster, 2000).await;
        // What no durable call can go below here: a call through the same server that only
        // reads, plus one durable store write (the limits).
        let floor = if sled_each > 0.0 {
            format!(
                "; the floor of a durable call, GetJob + one flushed write: {:.3} ms",
                ms(read) + 1000.0 / sled_each
            )
        } else {
            String::new()
        };
        row(
            "CreateJob, one client",
            "p50 ≤ 0.5 ms",
            format!(
                "p50 {:.3} ms, p99 {:.3} ms (GetJob, one client: p50 {:.3} ms{floor})",
                ms(p50),
                ms(p99),
                ms(read)
            ),
            p50 <= Duration::from_micros(500),
        );
    }

    if options.wants("progress") || options.wants("start") {
        let cluster = TestCluster::builder()
            .worker(WorkerSpec {
                slots: 4,
                ..Default::default()
            })
            .extra_config(api::TICK_PIPELINE)
            .start()
            .await;
        if options.wants("progress") {
            let alone = api::progress_latency(&cluster, 300, false).await;
            let (p50, p99) = alone.watch;
            let split = api::progress_latency(&cluster, 300, true).await;
            row(
                "`::progress` line → WatchJob client",
                "p50 ≤ 1 ms, p99 ≤ 5 ms",
                format!(
                    "p50 {:.3} ms, p99 {:.3} ms ({} lines); with a second client of the worker's stream, timing inside it: p50 {:.3} ms — line read {:.3}, stored {:.3}, at that client {:.3} ms",
                    ms(p50),
                    ms(p99),
                    alone.count,
                    ms(split.watch.0),
                    ms(split.worker_read),
                    ms(split.worker_stored),
                    ms(split.worker_streamed),
                ),
                p50 <= Duration::from_millis(1) && p99 <= Duration::from_millis(5),
            );
        }
        if options.wants("start") {
            let (p50, p99) = api::start_latency(&cluster, 200).await;
            row(
                "job created → worker asked to start",
                "p99 ≤ 5 ms",
                format!("p50 {:.3} ms, p99 {:.3} ms", ms(p50), ms(p99)),
                p99 <= Duration::from_millis(5),
            );
        }
    }

    if options.wants("watchers") {
        let cluster = TestCluster::builder()
            .extra_config(api::TICK_PIPELINE)
            .start()
            .await;
        let (before, after) = api::watchers_memory(&cluster, options.watchers).await;
        row(
            &format!("{} concurrent WatchJob streams", options.watchers),
            "≤ 100 MB",
            format!(
                "+{:.1} MiB ({before:.1} → {after:.1} MiB RSS)",
                after - before
            ),
            after - before <= 100.0,
        );
    }

    if options.wants("stored") {
        let mut cluster = TestCluster::builder()
            .extra_config(api::TICK_PIPELINE)
            .start()
            .await;
        let stored = api::stored_jobs(&mut cluster, options.stored).await;
        row(
            &format!("restart with {} stored jobs", options.stored),
            "serving ≤ 1 s",
            format!(
                "{:.0} ms after SIGTERM (the stop took {:.0} ms), {:.0} ms after SIGKILL (RSS {:.0} MiB)",
                ms(stored.restart_clean),
                ms(stored.stop_clean),
                ms(stored.restart_crash),
                stored.rss_after_restart
            ),
            stored.restart_clean <= Duration::from_secs(1)
                && stored.restart_crash <= Duration::from_secs(1),
        );
        drop(cluster);
        let crash_first = api::crash_restart_after_writes(options.stored).await;
        row(
            &format!(
                "restart after kill -9 right after writing {} jobs",
                options.stored
            ),
            "serving ≤ 1 s (issue 12)",
            format!(
                "{:.0} ms (sled replays what it logged since the database was opened)",
                ms(crash_first)
            ),
            crash_first <= Duration::from_secs(1),
        );
        row(
            &format!("ListJobs page of 50 at {} jobs", options.stored),
            "≤ 5 ms (issue 12: ≤ 1 ms)",
            format!(
                "p50 {:.2} ms newest, {:.2} ms by state, {:.2} ms deep",
                ms(stored.first_page),
                ms(stored.state_page),
                ms(stored.deep_page)
            ),
            stored
                .first_page
                .max(stored.state_page)
                .max(stored.deep_page)
                <= Duration::from_millis(1),
        );
    }

    if options.wants("batch") {
        batch_section(&options).await;
    }
}

/// CreateJobs in batches of 1, 10, 100, 1,000 from 1 and 4 clients, each next to sled alone
/// storing the same writes with one flush per batch.
async fn batch_section(options: &Options) {
    println!(
        "\n### CreateJobs: durable jobs/s by batch size (median of {} runs)\n",
        options.runs
    );
    println!("| batch | 1 client | 4 clients | sled alone, same writes, one flush per batch |");
    println!("| --- | --- | --- | --- |");
    let mut at_100: f64 = 0.0;
    for size in batch::SIZES {
        // Batches of one are slow: a tenth of the jobs keeps the run short.
        let jobs = if size == 1 {
            options.creates / 10
        } else {
            options.creates.max(size * 8)
        };
        let mut cells = Vec::new();
        for clients in batch::CLIENTS {
            let mut runs = Vec::new();
            for _ in 0..options.runs {
                let cluster = TestCluster::builder()
                    .extra_config(api::TICK_PIPELINE)
                    .start()
                    .await;
                runs.push(batch::throughput(&cluster, jobs, size, clients).await);
            }
            let rate = median(&mut runs);
            if size == 100 {
                at_100 = at_100.max(rate);
            }
            cells.push(format!("{rate:.0}/s"));
        }
        let mut sled = Vec::new();
        for _ in 0..options.runs {
            sled.push(batch::sled_jobs_per_second(size, jobs.min(20_000)));
        }
        let sled = median(&mut sled);
        println!("| {size} | {} | {} | {sled:.0}/s |", cells[0], cells[1]);
    }
    println!(
        "\nTarget: durable CreateJobs in batches of 100 ≥ 50,000/s: {at_100:.0}/s (best of 1 and 4 clients) {}",
        if at_100 >= 50_000.0 { "ok" } else { "MISSED" }
    );
}

/// The transfer ceilings of this machine, MB/s (medians of `--runs`); `None` where not measured.
#[derive(Debug, Clone, Copy, Default)]
struct TransferLimits {
    loopback: f64,
    disk: f64,
    /// A raw loopback copy of a stored file into a new one: the local store's limit.
    copy: f64,
    /// The same copy, its receiver hashing every byte on a thread of its own.
    copy_verified: f64,
    /// SeaweedFS alone, object_store signing each part as Reelay does (its default).
    s3_put: Option<f64>,
    s3_get: Option<f64>,
    /// The get into a file, hashed meanwhile.
    s3_get_verified: Option<f64>,
}

/// The transfer ceilings of this machine (medians of `--runs`), printed like the other limits.
async fn transfer_limits_section(
    options: &Options,
    s3: Option<&reelay_tests::s3::S3Server>,
) -> TransferLimits {
    let bytes = options.transfer_bytes;
    let runs = options.runs.max(1);
    let (mut loopback, mut disk) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        loopback.push(transfer_limits::loopback_mb_s(bytes).await);
        disk.push(transfer_limits::disk_write_fsync_mb_s(bytes));
    }
    let mut limits = TransferLimits {
        loopback: median(&mut loopback),
        disk: median(&mut disk),
        ..TransferLimits::default()
    };
    println!(
        "\n## Transfer limits of this machine ({} MiB, median of {runs}; MB = 10^6 bytes)\n",
        bytes >> 20
    );
    println!(
        "- loopback TCP, 1 MiB writes: {:.0} MB/s (80%, the transfer target: {:.0} MB/s)",
        limits.loopback,
        limits.loopback * 0.8
    );
    println!(
        "- disk write + fsync of one file, 1 MiB writes: {:.0} MB/s",
        limits.disk
    );
    let kept = transfer_limits::disk_writes_kept_mb_s(bytes, 4);
    println!(
        "- four new files written + fsynced one after another, all kept (what one transfer run writes): {} MB/s",
        kept.iter()
            .map(|rate| format!("{rate:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut hashing: Vec<f64> = (0..runs)
        .map(|_| transfer_limits::sha256_mb_s(bytes))
        .collect();
    println!(
        "- SHA-256 on one core, 1 MiB chunks: {:.0} MB/s (what each verifying side spends a core on)",
        median(&mut hashing)
    );
    for verify in [false, true] {
        let mut copies: Vec<f64> = (0..runs)
            .map(|_| transfer_limits::loopback_copy_mb_s(bytes, verify))
            .collect();
        let copy = median(&mut copies);
        if verify {
            limits.copy_verified = copy;
            println!(
                "- the same copy, the receiver hashing every byte (SHA-256 on a thread of its own): {copy:.0} MB/s \
                 ({:.0}% of the raw copy: the most a verified local transfer can reach here)",
                copy / limits.copy * 100.0
            );
        } else {
            limits.copy = copy;
            println!(
                "- raw loopback copy: a stored file read, sent over loopback TCP, written to a new file + fsync: \
                 {copy:.0} MB/s (the local store's limit; 80%: {:.0} MB/s)",
                copy * 0.8
            );
        }
    }

    let Some(server) = s3 else {
        println!("- SeaweedFS: skipped, weed is missing (scripts/setup-test-env.sh fetches it)\n");
        return limits;
    };
    server.create_bucket("bench").await;
    // The first write to a bucket makes its volumes: not part of any run.
    server
        .put_object("bench", "warm-up", b"warm".to_vec())
        .await;
    for unsigned in [false, true] {
        let mut figures = Vec::new();
        for _ in 0..runs {
            figures.push(transfer_limits::s3_round_trip(server, "bench", bytes, unsigned).await);
        }
        let put = median(&mut figures.iter().map(|f| f.put).collect::<Vec<_>>());
        let get = median(&mut figures.iter().map(|f| f.get).collect::<Vec<_>>());
        let get_verified = median(&mut figures.iter().map(|f| f.get_verified).collect::<Vec<_>>());
        if !unsigned {
            limits.s3_put = Some(put);
            limits.s3_get = Some(get);
            limits.s3_get_verified = Some(get_verified);
        }
        let rss = figures
            .iter()
            .map(|f| f.server_rss.growth())
            .fold(0.0, f64::max);
        println!(
            "- SeaweedFS alone, object_store{}: put_multipart ({} MiB parts, {} in flight) {put:.0} MB/s, get {get:.0} MB/s, \
             get into a file + fsync, hashed meanwhile {get_verified:.0} MB/s (weed RSS +{rss:.0} MiB at most)",
            if unsigned {
                " with unsigned payload"
            } else {
                " (SigV4 hashes each part)"
            },
            transfer_limits::PART >> 20,
            transfer_limits::PARTS_IN_FLIGHT,
        );
    }
    println!();
    limits
}

/// One cell of the transfers table: the figure, its limit and the ratio (target ≥ 80%).
fn transfer_cell(measured: f64, limit: f64, misses: &mut Vec<String>, what: String) -> String {
    let ratio = measured / limit;
    if ratio < 0.8 {
        misses.push(format!("{what}: {:.0}% of its limit", ratio * 100.0));
    }
    format!(
        "{measured:.0} MB/s | {limit:.0} MB/s | {:.0}%{}",
        ratio * 100.0,
        if ratio >= 0.8 { "" } else { " MISSED" }
    )
}

/// Reelay's transfers next to the limits: upload, staging and output upload on the local store and
/// on S3 (medians of `--runs`, a fresh cluster each), then RSS while a big file passes through.
async fn transfers_section(
    options: &Options,
    limits: &TransferLimits,
    s3: Option<&reelay_tests::s3::S3Server>,
) {
    let bytes = options.transfer_bytes;
    let runs = options.runs.max(1);
    let mut stores = vec![(transfers::Store::Local, "local store")];
    if s3.is_some() {
        stores.push((transfers::Store::S3, "S3 store (SeaweedFS)"));
    }
    println!(
        "\n### Transfers through Reelay ({} MiB, median of {runs}; MB = 10^6 bytes; target ≥ 80% of the limit)\n",
        bytes >> 20
    );
    println!(
        "The local store's limit is a raw loopback copy of a file; the S3 store's is SeaweedFS alone (put for uploads, get\n\
         for staging). Every transfer is verified end to end (SHA-256), so each is also read against the same limit with\n\
         a hash on a core of its own: a verified copy (local), a verified get into a file (S3 staging); S3 puts are\n\
         hashed already (SigV4).\n"
    );
    println!("| transfer | store | measured | limit | ratio | verified limit | ratio |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut misses = Vec::new();
    for (store, label) in stores {
        let mut figures = Vec::new();
        for run in 0..runs {
            figures.push(transfers::run(store, s3, bytes, run).await);
        }
        let pick = |f: fn(&transfers::Figures) -> f64| {
            median(&mut figures.iter().map(f).collect::<Vec<_>>())
        };
        // (limit, verified limit) of an upload, a staging and an output upload.
        let (upload_limit, staging_limit, output_limit) = match store {
            transfers::Store::Local => {
                let local = (limits.copy, limits.copy_verified);
                (local, local, local)
            }
            transfers::Store::S3 => {
                let put = limits.s3_put.unwrap_or(f64::NAN);
                let get = limits.s3_get.unwrap_or(f64::NAN);
                let get_verified = limits.s3_get_verified.unwrap_or(f64::NAN);
                ((put, put), (get, get_verified), (put, put))
            }
        };
        for (what, measured, (limit, verified)) in [
            ("upload (UploadInput)", pick(|f| f.upload), upload_limit),
            (
                "staging (ASSIGNED → RUNNING)",
                pick(|f| f.staging),
                staging_limit,
            ),
            (
                "output upload (`uploading` stage)",
                pick(|f| f.output),
                output_limit,
            ),
        ] {
            let cell = transfer_cell(measured, limit, &mut misses, format!("{what}, {label}"));
            println!(
                "| {what} | {label} | {cell} | {verified:.0} MB/s | {:.0}% |",
                measured / verified * 100.0
            );
        }
    }
    if options.rss_bytes > 0 {
        let (coordinator, worker, figures) = transfers::rss(options.rss_bytes).await;
        let budget = 64.0;
        let ok = coordinator.growth() <= budget && worker.growth() <= budget;
        println!(
            "\nRSS while a {} MiB file is uploaded, staged and uploaded again as an output (local store; {:.0}, {:.0}, {:.0} MB/s): \
             coordinator +{:.1} MiB ({:.1} → {:.1}), worker +{:.1} MiB ({:.1} → {:.1}); budget +{budget:.0} MiB: {}",
            options.rss_bytes >> 20,
            figures.upload,
            figures.staging,
            figures.output,
            coordinator.growth(),
            coordinator.before,
            coordinator.peak,
            worker.growth(),
            worker.before,
            worker.peak,
            if ok { "ok" } else { "MISSED" }
        );
    }
    if misses.is_empty() {
        println!("\nEvery transfer is at 80% of its limit or more.");
    } else {
        println!("\nUnder 80% of the limit: {}.", misses.join("; "));
    }
    println!();
}

async fn chunked_section(options: &Options) {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("bench.mp4");
    let seconds = options.video_seconds.max(2);
    let segment = (seconds / 6).max(1);
    reelay_tests::chunk::make_input(&input, seconds);
    let runs = options.runs.max(1);
    let mut figures = Vec::new();
    for workers in 1..=3 {
        figures.push(chunked::measure(&input, segment, workers, false, runs).await);
    }
    for workers in 1..=chunked::cores().min(3) {
        figures.push(chunked::measure(&input, segment, workers, true, runs).await);
    }
    chunked::print(&figures, seconds, segment, runs);
}
