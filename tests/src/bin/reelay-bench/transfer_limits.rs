//! The ceilings of a file transfer on this machine, next to which Reelay's upload, staging and
//! output figures are read: raw loopback TCP (the limit of any upload through the coordinator),
//! disk write + fsync (the limit of a local artifact store), and SeaweedFS alone through a plain
//! S3 client (the limit of an `s3://` store). MB are 10^6 bytes.

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, WriteMultipart};
use reelay_tests::process::{RssPeak, rss_peak_while};
use reelay_tests::s3::S3Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The size of one write (TCP, disk) and of the buffer a reader reads into.
const CHUNK: usize = 1 << 20;
/// The part size of the S3 multipart upload.
pub const PART: usize = 16 << 20;
/// Parts in flight at once: 2 was the best of 1, 2, 4 and 8 here (2 cores; 8 and 16 MiB parts).
pub const PARTS_IN_FLIGHT: usize = 2;

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64()
}

/// A buffer whose bytes vary (nothing on the path may shortcut runs of zeros).
fn pattern(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i * 31 + i / 4093) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// MB/s of a plain tokio TCP sender → receiver on 127.0.0.1 moving `bytes` in 1 MiB writes,
/// timed from the first write until the receiver has read the last byte.
pub async fn loopback_mb_s(bytes: u64) -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let address = listener.local_addr().expect("local addr");
    let receiver = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut buffer = vec![0u8; CHUNK];
        let mut received = 0u64;
        loop {
            let n = socket.read(&mut buffer).await.expect("read");
            if n == 0 {
                return received;
            }
            received += n as u64;
        }
    });
    let mut sender = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let chunk = pattern(CHUNK);
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        let n = (bytes - sent).min(CHUNK as u64) as usize;
        sender.write_all(&chunk[..n]).await.expect("write");
        sent += n as u64;
    }
    sender.shutdown().await.expect("shutdown");
    let received = receiver.await.expect("receiver");
    let elapsed = started.elapsed();
    assert_eq!(received, bytes, "the receiver got every byte");
    mb_per_s(bytes, elapsed)
}

/// Writes `bytes` of [`pattern`] to a new file at `path` in 1 MiB writes, then fsyncs it; the time
/// from the first write until the fsync returned.
fn write_new_file(path: &std::path::Path, bytes: u64) -> Duration {
    let mut file = std::fs::File::create(path).expect("file");
    let chunk = pattern(CHUNK);
    let started = Instant::now();
    let mut written = 0u64;
    while written < bytes {
        let n = (bytes - written).min(CHUNK as u64) as usize;
        file.write_all(&chunk[..n]).expect("write");
        written += n as u64;
    }
    file.sync_all().expect("fsync");
    started.elapsed()
}

/// MB/s of writing `bytes` to a new file in 1 MiB writes, then fsync, timed together (in the
/// system's temp dir, on the same disk as the data dirs here).
pub fn disk_write_fsync_mb_s(bytes: u64) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    mb_per_s(bytes, write_new_file(&dir.path().join("transfer"), bytes))
}

/// MB/s of each of `files` new files of `bytes` written + fsynced one after another and all kept
/// until the last is written — as a transfer through Reelay keeps what it writes (the upload, the
/// node's cached copy, the pipeline's output, the stored output: four new files of the same size).
/// On a VM that reports its free pages to the host, only pages freed recently are fast to reuse,
/// so the later files can be much slower than the first.
pub fn disk_writes_kept_mb_s(bytes: u64, files: usize) -> Vec<f64> {
    let dir = tempfile::tempdir().expect("temp dir");
    (0..files)
        .map(|index| {
            let path = dir.path().join(format!("kept-{index}"));
            mb_per_s(bytes, write_new_file(&path, bytes))
        })
        .collect()
}

/// SHA-256 on a thread of its own, fed chunk by chunk: what a verifying receiver adds at least
/// (the hash on a core of its own, overlapping with the write).
struct Hasher {
    chunks: Option<std::sync::mpsc::SyncSender<Bytes>>,
    thread: std::thread::JoinHandle<Vec<u8>>,
}

impl Hasher {
    fn start() -> Hasher {
        use sha2::Digest;
        let (chunks, received) = std::sync::mpsc::sync_channel::<Bytes>(4);
        let thread = std::thread::spawn(move || {
            let mut hasher = sha2::Sha256::new();
            for chunk in received {
                hasher.update(&chunk);
            }
            hasher.finalize().to_vec()
        });
        Hasher {
            chunks: Some(chunks),
            thread,
        }
    }

    fn update(&self, chunk: Bytes) {
        if let Some(chunks) = &self.chunks {
            chunks.send(chunk).expect("the hashing thread runs");
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.chunks = None;
        self.thread.join().expect("the hashing thread")
    }
}

/// A new file a copy is written into, its chunks hashed meanwhile by a [`Hasher`] when verifying.
struct CopyFile {
    file: std::fs::File,
    hasher: Option<Hasher>,
    written: u64,
}

impl CopyFile {
    fn create(path: &std::path::Path, verify: bool) -> CopyFile {
        CopyFile {
            file: std::fs::File::create(path).expect("the copy's file"),
            hasher: verify.then(Hasher::start),
            written: 0,
        }
    }

    fn write(&mut self, chunk: Bytes) {
        self.file.write_all(&chunk).expect("write the copy");
        self.written += chunk.len() as u64;
        if let Some(hasher) = &self.hasher {
            hasher.update(chunk);
        }
    }

    /// Fsyncs the file and waits for the hash; the bytes written.
    fn finish(self) -> u64 {
        self.file.sync_all().expect("fsync the copy");
        if let Some(hasher) = self.hasher {
            std::hint::black_box(hasher.finish());
        }
        self.written
    }
}

/// Writes the chunks it is sent into a new file at `path` and fsyncs it, on a thread of its own;
/// with `verify`, a [`Hasher`] hashes them meanwhile. Returns the bytes written.
fn file_sink(
    path: std::path::PathBuf,
    verify: bool,
) -> (
    tokio::sync::mpsc::Sender<Bytes>,
    std::thread::JoinHandle<u64>,
) {
    let (sender, mut chunks) = tokio::sync::mpsc::channel::<Bytes>(4);
    let thread = std::thread::spawn(move || {
        let mut copy = CopyFile::create(&path, verify);
        while let Some(chunk) = chunks.blocking_recv() {
            copy.write(chunk);
        }
        copy.finish()
    });
    (sender, thread)
}

/// MB/s of a raw copy of a file over loopback TCP, the least any local transfer does without its
/// protocol: a thread reads a stored file (`bytes`, in the page cache, as a stored artifact is) in
/// 1 MiB reads and writes each to a socket; another reads the socket and writes a new file on the
/// same disk, then fsyncs it. Timed from the first read until the copy is synced. `verify`: the
/// receiver also hashes every byte (SHA-256, on a thread of its own), the least a verified
/// transfer adds.
pub fn loopback_copy_mb_s(bytes: u64, verify: bool) -> f64 {
    use std::io::Read;
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source");
    write_new_file(&source, bytes);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let address = listener.local_addr().expect("local addr");
    let target = dir.path().join("copy");
    let started = Instant::now();
    let receiver = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().expect("accept");
        let mut copy = CopyFile::create(&target, verify);
        loop {
            let mut buffer = Vec::with_capacity(CHUNK);
            (&mut socket)
                .take(CHUNK as u64)
                .read_to_end(&mut buffer)
                .expect("read the socket");
            if buffer.is_empty() {
                break;
            }
            copy.write(buffer.into());
        }
        copy.finish()
    });
    let mut socket = std::net::TcpStream::connect(address).expect("connect");
    let mut file = std::fs::File::open(&source).expect("open the source");
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buffer).expect("read the source");
        if n == 0 {
            break;
        }
        socket.write_all(&buffer[..n]).expect("write the socket");
    }
    socket
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let received = receiver.join().expect("receiver");
    let elapsed = started.elapsed();
    assert_eq!(received, bytes, "the copy has every byte");
    mb_per_s(bytes, elapsed)
}

/// MB/s of SHA-256 over `bytes` in 1 MiB chunks on one core (the `sha2` crate Reelay verifies
/// with): every local transfer hashes its bytes at least once on one side.
pub fn sha256_mb_s(bytes: u64) -> f64 {
    use sha2::Digest;
    let chunk = pattern(CHUNK);
    let mut hasher = sha2::Sha256::new();
    let started = Instant::now();
    let mut hashed = 0u64;
    while hashed < bytes {
        let n = (bytes - hashed).min(CHUNK as u64) as usize;
        hasher.update(&chunk[..n]);
        hashed += n as u64;
    }
    std::hint::black_box(hasher.finalize());
    mb_per_s(bytes, started.elapsed())
}

/// One round trip of an object through SeaweedFS alone.
#[derive(Debug, Clone, Copy)]
pub struct S3Figures {
    /// MB/s of `put_multipart` ([`PART`]-sized parts, [`PARTS_IN_FLIGHT`] at once), until
    /// the upload completed.
    pub put: f64,
    /// MB/s of a streamed `get` of the same object, read to its end.
    pub get: f64,
    /// MB/s of the same `get` into a new file (fsynced), hashed on a thread of its own meanwhile:
    /// the least a verified fetch into a node's cache does.
    pub get_verified: f64,
    /// weed's RSS during both.
    pub server_rss: RssPeak,
}

/// Puts `bytes` into `bucket` on `server` with a plain S3 client, then gets it back; deletes it.
/// `unsigned_payload`: skip the SHA-256 of each part that SigV4 signs by default.
pub async fn s3_round_trip(
    server: &S3Server,
    bucket: &str,
    bytes: u64,
    unsigned_payload: bool,
) -> S3Figures {
    let store = server
        .client_builder(bucket)
        .with_unsigned_payload(unsigned_payload)
        .build()
        .expect("S3 client");
    let path = ObjectPath::from(format!("bench/transfer-{unsigned_payload}"));
    let pid = server.pid().expect("weed runs");
    let part = pattern(PART);

    let (put, rss_put) = rss_peak_while(&[pid], Duration::from_millis(20), async {
        let started = Instant::now();
        let upload = store
            .put_multipart(&path)
            .await
            .expect("start multipart upload");
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut sent = 0u64;
        while sent < bytes {
            let n = (bytes - sent).min(PART as u64) as usize;
            writer
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .expect("part uploaded");
            writer.put(part.slice(..n));
            sent += n as u64;
        }
        writer.finish().await.expect("complete multipart upload");
        mb_per_s(bytes, started.elapsed())
    })
    .await;

    let (get, rss_get) = rss_peak_while(&[pid], Duration::from_millis(20), async {
        let started = Instant::now();
        let mut stream = store.get(&path).await.expect("get").into_stream();
        let mut received = 0u64;
        while let Some(chunk) = stream.next().await {
            received += chunk.expect("read object").len() as u64;
        }
        assert_eq!(received, bytes, "the object read back has every byte");
        mb_per_s(bytes, started.elapsed())
    })
    .await;

    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let (sink, written) = file_sink(dir.path().join("object"), true);
    let mut stream = store.get(&path).await.expect("get").into_stream();
    while let Some(chunk) = stream.next().await {
        sink.send(chunk.expect("read object"))
            .await
            .expect("the writing thread runs");
    }
    drop(sink);
    let written = tokio::task::spawn_blocking(move || written.join().expect("the writing thread"))
        .await
        .expect("join");
    assert_eq!(
        written, bytes,
        "the object written to a file has every byte"
    );
    let get_verified = mb_per_s(bytes, started.elapsed());

    store.delete(&path).await.expect("delete");
    S3Figures {
        put,
        get,
        get_verified,
        server_rss: RssPeak {
            before: rss_put[0].before,
            peak: rss_put[0].peak.max(rss_get[0].peak),
        },
    }
}
