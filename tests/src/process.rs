//! One real `reelay` process: started with arguments, logs to a file, stopped by PID.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

static DEFAULT_BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Makes `path` the binary under test when `REELAY_BIN` is not set (the benchmark uses the
/// release build).
pub fn set_default_bin(path: PathBuf) {
    let _ = DEFAULT_BIN.set(path);
}

/// The `reelay` binary under test: `REELAY_BIN`, else the one given to [`set_default_bin`], else
/// `target/<profile>/reelay` next to the test binary.
pub fn reelay_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("REELAY_BIN") {
        return PathBuf::from(path);
    }
    if let Some(path) = DEFAULT_BIN.get() {
        return path.clone();
    }
    // A test binary is target/<profile>/deps/<name>, the benchmark target/<profile>/reelay-bench;
    // the binary is target/<profile>/reelay.
    let exe = std::env::current_exe().expect("current exe");
    let exe_dir = exe.parent().expect("the executable's dir");
    let profile_dir = if exe_dir.ends_with("deps") {
        exe_dir.parent().expect("target profile dir")
    } else {
        exe_dir
    };
    let bin = profile_dir.join("reelay");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p reelay`",
        bin.display()
    );
    bin
}

/// Runs the `reelay` CLI with `args` in `dir` against `server` (`REELAY_SERVER`; a `REELAY_TOKEN` of
/// the environment is not passed on) and waits for it.
pub fn reelay_cli(server: &str, dir: &Path, args: &[&str]) -> Output {
    Command::new(reelay_bin())
        .args(args)
        .env("REELAY_SERVER", server)
        .env_remove("REELAY_TOKEN")
        .current_dir(dir)
        .output()
        .expect("run reelay")
}

/// What a command printed on standard output, as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What a command printed on standard error, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Resident memory of process `pid` in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// The `/proc/PID/stat` fields after the command name (which may hold spaces and parentheses):
/// the state is field 0, the parent's pid 1, user and system time 11 and 12.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    Some(after_name.split_whitespace().map(str::to_owned).collect())
}

/// Clock ticks per second of `/proc` times: USER_HZ, 100 on every Linux ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time (user + system) process `pid` has used so far, in seconds; 0 once it is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Some(fields) = stat_fields(pid) else {
        return 0.0;
    };
    let ticks = |n: usize| {
        fields
            .get(n)
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / TICKS_PER_SECOND
}

/// CPU time used so far by the living threads of process `pid`, in seconds, to the nanosecond:
/// the scheduler's run time of each (`/proc/PID/task/TID/schedstat`). `/proc/PID/stat` counts in
/// 10 ms units, which a light process's time between two readings (a few wake-ups) falls within.
fn run_time_seconds(pid: u32) -> f64 {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let nanos: u64 = threads
        .filter_map(|thread| {
            let stat = std::fs::read_to_string(thread.ok()?.path().join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum();
    nanos as f64 / 1e9
}

/// CPU time used so far by the living processes whose parent is one of `parents` (a worker's
/// pipelines), in seconds, to the nanosecond (their living threads' run time).
pub fn children_cpu_seconds(parents: &[u32]) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            stat_fields(*pid)
                .and_then(|fields| fields.get(1)?.parse::<u32>().ok())
                .is_some_and(|ppid| parents.contains(&ppid))
        })
        .map(run_time_seconds)
        .sum()
}

/// Resident memory of processes before and at the highest while something ran, in MiB
/// ([`rss_peak_while`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RssPeak {
    pub before: f64,
    pub peak: f64,
}

impl RssPeak {
    /// How much the process grew at most: `peak - before`.
    pub fn growth(&self) -> f64 {
        self.peak - self.before
    }
}

/// Runs `work` while sampling the RSS of each of `pids` every `every` (and once before and
/// after): its output and each process's [`RssPeak`], in the order of `pids`. For "RSS of the
/// coordinator and the worker while a 2 GB file passes through". A peak shorter than `every` can
/// be missed: sample often (10 ms costs little, it reads /proc).
pub async fn rss_peak_while<T>(
    pids: &[u32],
    every: Duration,
    work: impl std::future::Future<Output = T>,
) -> (T, Vec<RssPeak>) {
    let mut peaks: Vec<RssPeak> = pids
        .iter()
        .map(|&pid| {
            let now = rss_mib(pid);
            RssPeak {
                before: now,
                peak: now,
            }
        })
        .collect();
    let sample = |peaks: &mut Vec<RssPeak>| {
        for (peak, &pid) in peaks.iter_mut().zip(pids) {
            peak.peak = peak.peak.max(rss_mib(pid));
        }
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut work = std::pin::pin!(work);
    let output = loop {
        tokio::select! {
            output = &mut work => break output,
            _ = ticks.tick() => sample(&mut peaks),
        }
    };
    sample(&mut peaks);
    (output, peaks)
}

/// A free loopback port (bound, then released for the process to take).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// A running (or stopped) `reelay` process.
#[derive(Debug)]
pub struct ReelayProcess {
    pub name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl ReelayProcess {
    /// Starts `reelay ARGS` with its output appended to `log`.
    pub fn start(name: &str, args: Vec<String>, env: Vec<(String, String)>, log: PathBuf) -> Self {
        let mut process = ReelayProcess {
            name: name.to_owned(),
            args,
            env,
            log,
            child: None,
        };
        process.spawn();
        process
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        let err = log.try_clone().expect("clone log");
        let child = Command::new(reelay_bin())
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "REELAY_LOG",
                "info,reelay_coordinator=debug,reelay_worker=debug,h2=warn,tower=warn,hyper=warn",
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("spawn reelay");
        self.child = Some(child);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; returns whether it exited by itself.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Starts the process again with the same arguments (after a kill).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Waits for the process to exit by itself (for start-up failures); its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; returns the log. Panics after `timeout`.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let log = self.log_text();
            if log.contains(needle) {
                return log;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} never logged {needle:?}:\n{log}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for ReelayProcess {
    fn drop(&mut self) {
        // Clean up even when a test fails: stop gracefully (so workers leave nothing behind), then kill.
        self.terminate(Duration::from_secs(10));
    }
}

/// Copies the directory `from` to `to`, recursively (made when missing).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("make the copy's directory");
    for entry in std::fs::read_dir(from).expect("read the directory to copy") {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy a file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rss_peak_while_sees_memory_that_was_touched_and_given_back() {
        let pid = std::process::id();
        let (sum, peaks) = rss_peak_while(&[pid], Duration::from_millis(5), async {
            // 128 MiB, every page written, held across a few samples, then freed.
            let block = vec![1u8; 128 << 20];
            tokio::time::sleep(Duration::from_millis(100)).await;
            let sum: u64 = block.iter().step_by(4096).map(|&b| u64::from(b)).sum();
            drop(block);
            sum
        })
        .await;
        assert_eq!(sum, (128 << 20) / 4096);
        assert_eq!(peaks.len(), 1);
        assert!(peaks[0].growth() >= 100.0, "peak missed: {:?}", peaks[0]);
        assert!(
            rss_mib(pid) < peaks[0].peak - 100.0,
            "the block was given back"
        );
    }

    #[test]
    fn cpu_seconds_count_a_busy_child_and_nothing_for_a_sleeping_one() {
        let me = std::process::id();
        let mut busy = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let mut idle = Command::new("sleep").arg("30").spawn().unwrap();
        // Until the loop has had 0.2 s of a core (at once on an idle machine, later on a busy one).
        let started = std::time::Instant::now();
        while cpu_seconds(busy.id()) < 0.2 && started.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let (busy_cpu, idle_cpu) = (cpu_seconds(busy.id()), cpu_seconds(idle.id()));
        let children = children_cpu_seconds(&[me]);
        busy.kill().unwrap();
        idle.kill().unwrap();
        busy.wait().unwrap();
        idle.wait().unwrap();
        assert!(busy_cpu >= 0.2, "a busy loop for 20 s: {busy_cpu} s");
        assert!(idle_cpu < 0.05, "a sleep: {idle_cpu} s");
        assert!(
            children >= busy_cpu,
            "children {children} s, busy {busy_cpu} s"
        );
        assert_eq!(cpu_seconds(busy.id()), 0.0, "gone");
        assert!(children_cpu_seconds(&[u32::MAX]) == 0.0);
    }
}
