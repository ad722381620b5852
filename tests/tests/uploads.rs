//! Job inputs uploaded to the coordinator, against a real cluster: `reelay job submit --upload`
//! (the worker stages the upload, the job's output is the same bytes), an upload cut by SIGKILL and
//! resumed by running the same command again, a wrong SHA-256 refused with nothing kept, `POST
//! /upload` whole, cut and resumed, and a job naming an incomplete upload refused.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reelay_proto::v1;
use reelay_tests::artifacts::{derived_upload_id, random_bytes, sha256_hex};
use reelay_tests::http;
use reelay_tests::process::{reelay_bin, reelay_cli, stderr, stdout};
use reelay_tests::proxy::FaultProxy;
use reelay_tests::{TestCluster, spec};
use serde_json::Value;
use tonic::Code;

const MIB: usize = 1024 * 1024;
/// The coordinator stores uploads in parts of this size: `received` is a multiple of it.
const PART: u64 = 8 << 20;

fn write_file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

/// `reelay job download ID NAME` into `dir`; the file's bytes.
fn download(cluster: &TestCluster, dir: &Path, id: &str, name: &str) -> Vec<u8> {
    let target = format!("{}/", dir.display());
    let saved = reelay_cli(
        &cluster.url(),
        dir,
        &["job", "download", id, name, "-O", &target, "--force"],
    );
    assert!(saved.status.success(), "{}", stderr(&saved));
    assert!(stdout(&saved).contains("sha256 ok"), "{}", stdout(&saved));
    let bytes = std::fs::read(dir.join(name)).unwrap();
    std::fs::remove_file(dir.join(name)).unwrap();
    bytes
}

async fn get_upload(cluster: &TestCluster, id: &str) -> Result<v1::Upload, tonic::Status> {
    cluster
        .connect()
        .jobs()
        .await
        .get_upload(v1::GetUploadRequest { id: id.to_owned() })
        .await
        .map(tonic::Response::into_inner)
}

fn upload_spec(id: &str) -> v1::JobSpec {
    let mut spec = spec("copy", &[]);
    spec.input_uri = format!("upload:{id}");
    spec
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_uploads_an_input_and_the_job_gets_the_same_bytes() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(24 * MIB + 321, 1);
    let path = write_file(dir.path(), "clip.bin", &data);
    let id = derived_upload_id("clip.bin", &data);

    let submitted = reelay_cli(
        &cluster.url(),
        dir.path(),
        &[
            "job",
            "submit",
            "copy",
            "--upload",
            path.to_str().unwrap(),
            "--watch",
            "-o",
            "json",
        ],
    );
    let said = stderr(&submitted);
    assert!(submitted.status.success(), "{}{said}", stdout(&submitted));
    // Progress and the summary go to stderr (no terminal: a line per 10%); stdout is JSON only.
    assert!(said.contains("uploading clip.bin: 50% ("), "{said}");
    assert!(said.contains("uploading clip.bin: 100% ("), "{said}");
    assert!(said.contains("uploaded clip.bin (24.0 MiB) in "), "{said}");
    assert!(said.contains(&format!("upload:{id}")), "{said}");
    let events: Vec<Value> = stdout(&submitted)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect();
    let last = events.last().unwrap();
    assert_eq!(last["state"], "JOB_STATE_SUCCEEDED");
    let job_id = last["job_id"].as_str().unwrap().to_owned();
    let job = &last["job"];
    assert_eq!(job["spec"]["input_uri"], format!("upload:{id}"));
    assert_eq!(job["input"]["name"], "clip.bin");
    assert_eq!(job["input"]["size"], data.len());
    assert_eq!(job["input"]["sha256"], sha256_hex(&data));

    // The worker staged the input (and uploaded the output) with byte counts, as the history says.
    let history = cluster.history(&job_id).await;
    let staged = history
        .iter()
        .filter_map(|event| event.job.as_ref())
        .find(|job| job.stage == "staging" && job.transfer.is_some())
        .expect("a staging report");
    assert_eq!(
        staged.transfer.as_ref().unwrap().total_bytes,
        data.len() as u64
    );
    assert!(
        history
            .iter()
            .filter_map(|event| event.job.as_ref())
            .any(|job| job.stage == "uploading"),
        "no uploading report"
    );

    assert!(download(&cluster, dir.path(), &job_id, "copy.bin") == data);
    let shown = reelay_cli(&cluster.url(), dir.path(), &["job", "get", &job_id]);
    assert!(
        stdout(&shown).contains(&format!("clip.bin (24.0 MiB, upload:{id})")),
        "{}",
        stdout(&shown)
    );

    // The same file again: the upload is found complete and nothing is sent.
    let again = reelay_cli(
        &cluster.url(),
        dir.path(),
        &["job", "upload", path.to_str().unwrap()],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        stdout(&again),
        format!(
            "upload:{id} clip.bin (24.0 MiB, sha256 {})\n",
            sha256_hex(&data)
        )
    );
    assert!(
        stderr(&again).contains(&format!(
            "clip.bin (24.0 MiB) is already uploaded: upload:{id}"
        )),
        "{}",
        stderr(&again)
    );
    assert!(!stderr(&again).contains("uploading"), "{}", stderr(&again));
    let quiet = reelay_cli(
        &cluster.url(),
        dir.path(),
        &["job", "upload", path.to_str().unwrap(), "-q"],
    );
    assert_eq!(stdout(&quiet), format!("upload:{id}\n"));
    assert_eq!(stderr(&quiet), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_killed_midway_resumes_when_the_command_runs_again() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let proxy = FaultProxy::start(cluster.address().parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(64 * MIB, 2);
    let path = write_file(dir.path(), "big.bin", &data);
    let id = derived_upload_id("big.bin", &data);
    let args = ["job", "submit", "copy", "--upload", path.to_str().unwrap()];

    // The CLI uploads through the proxy. Once the coordinator says a part is stored, the proxy
    // holds every byte (the upload cannot finish) and the CLI is killed; the proxy then cuts the
    // connection, as the kernel would on a real client's death.
    let log = std::fs::File::create(dir.path().join("cut.log")).unwrap();
    let mut cut = Command::new(reelay_bin())
        .args(args)
        .env("REELAY_SERVER", proxy.url())
        .env_remove("REELAY_TOKEN")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(upload) = get_upload(&cluster, &id).await
            && upload.received >= PART
        {
            break;
        }
        assert!(Instant::now() < deadline, "no part was stored");
        assert!(cut.try_wait().unwrap().is_none(), "the CLI exited early");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    proxy.black_hole();
    cut.kill().unwrap(); // SIGKILL
    cut.wait().unwrap();
    proxy.cut();
    // The coordinator notices the broken call and records the parts it finished storing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let upload = get_upload(&cluster, &id).await.unwrap();
    let stored = upload.received;
    assert!(!upload.complete);
    assert!(
        stored >= PART && stored < data.len() as u64 && stored % PART == 0,
        "{stored} bytes stored"
    );

    // A job cannot use it yet, and says how far it got.
    let refused = cluster
        .connect()
        .jobs()
        .await
        .create_job(v1::CreateJobRequest {
            spec: Some(upload_spec(&id)),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused
            .message()
            .contains(&format!("not complete ({stored} of {} bytes)", data.len())),
        "{}",
        refused.message()
    );

    // The same command again: it resumes from what is stored and the job gets intact bytes.
    proxy.restore();
    let before = proxy.bytes();
    let resumed = reelay_cli(
        &proxy.url(),
        dir.path(),
        &[&args[..], &["--watch"]].concat(),
    );
    let said = stderr(&resumed);
    assert!(resumed.status.success(), "{}{said}", stdout(&resumed));
    let sent = proxy.bytes() - before;
    println!(
        "stored before the resume: {stored} B; sent through the proxy by the resume: {sent} B"
    );
    assert!(said.contains("resuming the upload of big.bin at"), "{said}");
    assert!(
        sent < data.len() as u64 - stored + (2 * MIB) as u64,
        "the resume moved {sent} bytes; {stored} of {} were stored already",
        data.len()
    );
    let job_id = stdout(&resumed)
        .split_whitespace()
        .nth(1)
        .expect("job <id> …")
        .to_owned();
    let upload = get_upload(&cluster, &id).await.unwrap();
    assert!(upload.complete && upload.received == data.len() as u64);
    assert!(download(&cluster, dir.path(), &job_id, "copy.bin") == data);
}

/// An UploadInput call made by hand: the header, then `data` in 1 MiB messages.
async fn upload_input(
    cluster: &TestCluster,
    header: v1::UploadHeader,
    data: &[u8],
) -> Result<v1::Upload, tonic::Status> {
    let mut messages = vec![v1::UploadInputRequest {
        part: Some(v1::upload_input_request::Part::Header(header)),
    }];
    messages.extend(data.chunks(MIB).map(|chunk| v1::UploadInputRequest {
        part: Some(v1::upload_input_request::Part::Data(chunk.to_vec().into())),
    }));
    cluster
        .connect()
        .jobs()
        .await
        .upload_input(tokio_stream::iter(messages))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_sha256_is_refused_and_nothing_is_kept() {
    let cluster = TestCluster::builder().workers(0).start().await;
    let data = random_bytes(3 * MIB, 3);
    let id = derived_upload_id("x.bin", &data);
    let header = v1::UploadHeader {
        name: "x.bin".into(),
        size: data.len() as u64,
        sha256: sha256_hex(b"other bytes"),
        id: id.clone(),
        offset: 0,
    };
    let refused = upload_input(&cluster, header.clone(), &data)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("nothing was kept"),
        "{}",
        refused.message()
    );
    assert_eq!(
        get_upload(&cluster, &id).await.unwrap_err().code(),
        Code::NotFound
    );

    // Data before the header is refused too; the right hash is taken.
    let no_header = cluster
        .connect()
        .jobs()
        .await
        .upload_input(tokio_stream::iter(vec![v1::UploadInputRequest {
            part: Some(v1::upload_input_request::Part::Data(vec![1u8; 10].into())),
        }]))
        .await
        .unwrap_err();
    assert_eq!(no_header.code(), Code::InvalidArgument, "{no_header:?}");
    let good = v1::UploadHeader {
        sha256: sha256_hex(&data),
        ..header
    };
    let upload = upload_input(&cluster, good, &data).await.unwrap();
    assert!(upload.complete && upload.id == id, "{upload:?}");
}

/// `POST /upload?…` with `body`; status and body text.
fn post_upload(address: &str, query: &str, body: &[u8]) -> (u16, String) {
    let response = http::request(
        address,
        None,
        "POST",
        &format!("/upload?{query}"),
        &[("content-type", "application/octet-stream")],
        body,
    )
    .expect("POST /upload");
    (response.status, response.text())
}

/// `POST /upload` that declares the whole `size` but sends only `body`, then closes: a cut.
fn post_cut(address: &str, query: &str, size: usize, body: &[u8]) {
    let mut stream = TcpStream::connect(address).unwrap();
    let head = format!(
        "POST /upload?{query} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {size}\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    stream.flush().unwrap();
    stream.shutdown(std::net::Shutdown::Both).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn http_uploads_whole_cut_and_resumed_feed_a_job() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let address = cluster.address();

    // Whole, without an id: the coordinator makes one.
    let small = random_bytes(3 * MIB + 5, 4);
    let (status, text) = post_upload(
        &address,
        &format!(
            "name=small.bin&size={}&sha256={}",
            small.len(),
            sha256_hex(&small)
        ),
        &small,
    );
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["complete"], true);
    assert_eq!(answer["received"], small.len());
    assert_eq!(answer["id"].as_str().unwrap().len(), 36, "{answer}");

    // Cut after 12 MiB: one 8 MiB part is kept.
    let data = random_bytes(20 * MIB + 7, 5);
    let id = derived_upload_id("cut.bin", &data);
    let query = |offset: usize| {
        format!(
            "name=cut.bin&size={}&sha256={}&id={id}&offset={offset}",
            data.len(),
            sha256_hex(&data)
        )
    };
    post_cut(&address, &query(0), data.len(), &data[..12 * MIB]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let stored = loop {
        let response = http::get(&address, &format!("/upload/{id}"), &[]);
        if response.status == 200 {
            let upload: Value = serde_json::from_str(&response.text()).unwrap();
            if upload["received"] == PART {
                assert_eq!(upload["complete"], false);
                break PART as usize;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} {}",
            response.status,
            response.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // An incomplete upload feeds no job.
    let refused = cluster
        .connect()
        .jobs()
        .await
        .create_job(v1::CreateJobRequest {
            spec: Some(upload_spec(&id)),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused
            .message()
            .contains(&format!("not complete ({stored} of {} bytes)", data.len())),
        "{}",
        refused.message()
    );

    // A wrong offset is a conflict that says where to resume (the cut call may still be ending:
    // it answers 409 too, saying another call writes). The answer comes before the body is read:
    // a small one, so that the request is all written.
    let (status, text) = loop {
        let (status, text) = post_upload(&address, &query(0), &data[..4096]);
        if !(status == 409 && text.contains("another call")) || Instant::now() > deadline {
            break (status, text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 409, "{text}");
    assert!(
        text.contains(&format!("resume from offset {stored}")),
        "{text}"
    );

    // Resumed at `received`: complete, and a job on it gets the same bytes.
    let (status, text) = post_upload(&address, &query(stored), &data[stored..]);
    assert_eq!(status, 200, "{text}");
    let upload: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(upload["complete"], true);
    assert_eq!(upload["id"], id.as_str());
    let job = cluster.submit_spec(upload_spec(&id)).await;
    let done = cluster.wait_finished(&job.id).await;
    assert_eq!(done.state, v1::JobState::Succeeded as i32, "{done:?}");
    let dir = tempfile::tempdir().unwrap();
    assert!(download(&cluster, dir.path(), &job.id, "copy.bin") == data);
}
