//! TLS, against real processes, with certificates made at test time (rcgen): a whole cluster over
//! TLS — gRPC, grpc-web, the UI, downloads and metrics on the coordinator's one port, links and
//! registration both ways, the CLI — and the refusals: a plain-text client, a client or a worker
//! that trusts another CA, a coordinator that does, certificate files that cannot be used.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use prost::Message;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use reelay_proto::v1;
use reelay_tests::connect::Connect;
use reelay_tests::process::{ReelayProcess, free_port, reelay_bin};
use reelay_tests::{TestCluster, TlsFiles, WorkerSpec, grpc_web, http, watch};
use serde_json::Value;
use tonic::Code;

// === certificates ===

/// A CA, a server certificate it signed for 127.0.0.1 and localhost, and a second, unrelated CA
/// with a certificate of its own.
struct Pki {
    dir: tempfile::TempDir,
    files: TlsFiles,
    other_ca: PathBuf,
    /// A certificate for 127.0.0.1 signed by the other CA.
    other_cert: PathBuf,
    other_key: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A server certificate for 127.0.0.1 and localhost signed by `issuer`: (cert PEM, key PEM).
fn server_cert(issuer: &CertifiedIssuer<'static, KeyPair>) -> (String, String) {
    let mut params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "reelay test server");
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    let dir = tempfile::Builder::new()
        .prefix("reelay-pki-")
        .tempdir()
        .unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let root = ca("Reelay test CA");
    let other = ca("Some other CA");
    let (cert, key) = server_cert(&root);
    let (other_cert, other_key) = server_cert(&other);
    let files = TlsFiles {
        ca: write("ca.pem", &root.pem()),
        cert: write("server.pem", &cert),
        key: write("server.key", &key),
    };
    Pki {
        other_ca: write("other-ca.pem", &other.pem()),
        other_cert: write("other-server.pem", &other_cert),
        other_key: write("other-server.key", &other_key),
        files,
        dir,
    }
}

// === helpers ===

fn reelay(args: &[&str]) -> Output {
    Command::new(reelay_bin())
        .args(args)
        .env_remove("REELAY_TOKEN")
        .env_remove("REELAY_TLS_CA")
        .env_remove("REELAY_SERVER")
        .output()
        .expect("run reelay")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What a plain-text HTTP/1.1 request to a TLS port gets back (never an HTTP response).
fn plain_http_answer(address: &str) -> Vec<u8> {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let _ = stream.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

async fn node_ids(cluster: &TestCluster) -> Vec<String> {
    let mut nodes: Vec<String> = cluster
        .connect()
        .nodes()
        .await
        .list_nodes(v1::ListNodesRequest {})
        .await
        .expect("list nodes")
        .into_inner()
        .nodes
        .into_iter()
        .map(|node| node.id)
        .collect();
    nodes.sort();
    nodes
}

// === tests ===

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_over_tls_runs_jobs_and_serves_everything_on_https() {
    let pki = pki();
    let cluster = TestCluster::builder()
        .tls(pki.files.clone())
        .workers(2)
        .start()
        .await;
    assert!(cluster.url().starts_with("https://127.0.0.1:"));

    // Workers advertise https:// and the coordinator's links verified them with the CA.
    let nodes = cluster
        .connect()
        .nodes()
        .await
        .list_nodes(v1::ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert_eq!(nodes.len(), 2);
    for node in &nodes {
        assert!(node.address.starts_with("https://127.0.0.1:"), "{node:#?}");
        assert_eq!(node.state, v1::NodeState::Ready as i32, "{node:#?}");
    }

    // A job end to end over TLS: created, followed, its output listed.
    let job = cluster
        .submit("count", &[("steps", "5"), ("interval_ms", "10")])
        .await;
    let done = cluster.wait_finished(&job.id).await;
    assert_eq!(done.state, v1::JobState::Succeeded as i32, "{done:#?}");
    assert_eq!(done.progress, 100);

    // The CLI over https with --tls-ca: submit and watch to the end.
    let ca = pki.files.ca.display().to_string();
    let url = cluster.url();
    let submitted = reelay(&[
        "job",
        "submit",
        "count",
        "-p",
        "steps=3",
        "-p",
        "interval_ms=10",
        "--watch",
        "-o",
        "json",
        "--server",
        &url,
        "--tls-ca",
        &ca,
    ]);
    assert!(
        submitted.status.success(),
        "{}{}",
        text(&submitted.stdout),
        text(&submitted.stderr)
    );
    let last: Value =
        serde_json::from_str(text(&submitted.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["state"], "JOB_STATE_SUCCEEDED", "{last}");

    // The CA from the environment; a verified download.
    let target = tempfile::tempdir().unwrap();
    let downloaded = Command::new(reelay_bin())
        .args([
            "job",
            "download",
            &job.id,
            "count.txt",
            "-O",
            &format!("{}/", target.path().display()),
        ])
        .env("REELAY_SERVER", &url)
        .env("REELAY_TLS_CA", &ca)
        .env_remove("REELAY_TOKEN")
        .output()
        .unwrap();
    assert!(downloaded.status.success(), "{}", text(&downloaded.stderr));
    assert!(
        text(&downloaded.stdout).contains("sha256 ok"),
        "{}",
        text(&downloaded.stdout)
    );
    assert_eq!(
        std::fs::read_to_string(target.path().join("count.txt")).unwrap(),
        "step 1\nstep 2\nstep 3\nstep 4\nstep 5\n"
    );

    // Without the CA the CLI does not trust the coordinator, and says what to do.
    let untrusted = reelay(&["job", "list", "--server", &url]);
    assert!(!untrusted.status.success());
    let untrusted_err = text(&untrusted.stderr);
    assert!(untrusted_err.contains("--tls-ca"), "{untrusted_err}");

    // The same port serves the UI, downloads, metrics and grpc-web, all over HTTPS.
    let address = cluster.address();
    let ca_path = pki.files.ca.clone();
    let metrics = http::get_tls(&address, "/metrics", &[], &ca_path);
    assert_eq!(metrics.status, 200);
    assert!(metrics.text().contains("reelay_"), "{}", metrics.text());
    let ui = http::get_tls(&address, "/", &[], &ca_path);
    assert_eq!(ui.status, 200);
    assert!(ui.text().contains("<html"), "{}", ui.text());
    let download = http::get_tls(
        &address,
        &format!("/download/{}/count.txt", job.id),
        &[],
        &ca_path,
    );
    assert_eq!(download.status, 200, "{}", download.text());
    assert!(download.text().starts_with("step 1\n"));
    let payload = v1::ListJobsRequest::default().encode_to_vec();
    let web_address = address.clone();
    let web_ca = ca_path.clone();
    let reply = tokio::task::spawn_blocking(move || {
        grpc_web::call(
            &web_address,
            Some(&web_ca),
            "/reelay.v1.JobService/ListJobs",
            &payload,
            None,
            2,
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(reply.code(), Code::Ok, "{reply:?}");
    let listed: v1::ListJobsResponse = reply.decode(0);
    assert!(listed.jobs.iter().any(|listed| listed.id == job.id));

    // Workers serve TLS too, and answer only over it.
    let info = cluster
        .worker_connect(0)
        .worker()
        .await
        .get_info(v1::GetInfoRequest {})
        .await
        .expect("GetInfo over TLS");
    assert_eq!(info.into_inner().node_id, "w0");
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_text_and_untrusted_peers_are_refused() {
    let pki = pki();
    let mut cluster = TestCluster::builder()
        .tls(pki.files.clone())
        .workers(1)
        .start()
        .await;
    let address = cluster.address();

    // Plain text cannot talk to the TLS ports: not gRPC, not HTTP/1.1.
    for port in [cluster.coordinator_port, cluster.workers[0].port] {
        let plain = Connect::plain(&format!("http://127.0.0.1:{port}"));
        let refused = match plain.try_channel().await {
            Err(_) => true,
            Ok(channel) => v1::node_service_client::NodeServiceClient::new(channel)
                .list_nodes(v1::ListNodesRequest {})
                .await
                .is_err(),
        };
        assert!(refused, "a plain-text gRPC call to port {port} got through");
        let answer = plain_http_answer(&format!("127.0.0.1:{port}"));
        assert!(
            !answer.starts_with(b"HTTP/"),
            "port {port} answered plain HTTP: {}",
            String::from_utf8_lossy(&answer)
        );
    }

    // A client that trusts another CA is refused at the handshake, with the reason.
    let wrong = cluster.connect().with_ca(Some(&pki.other_ca));
    let err = wrong
        .try_channel()
        .await
        .expect_err("a client trusting another CA connected");
    assert!(err.contains("certificate"), "{err}");
    let err = http::connect(&address, Some(&pki.other_ca))
        .err()
        .expect("an HTTPS client trusting another CA connected");
    assert!(err.to_string().contains("certificate"), "{err}");
    let ca = pki.other_ca.display().to_string();
    let url = cluster.url();
    let cli = reelay(&["node", "list", "--server", &url, "--tls-ca", &ca]);
    assert!(!cli.status.success());
    assert!(
        text(&cli.stderr).contains("certificate"),
        "{}",
        text(&cli.stderr)
    );

    // A worker that trusts another CA cannot register: it says why and never becomes a node.
    let index = cluster.add_worker(WorkerSpec {
        tls: Some(TlsFiles {
            ca: pki.other_ca.clone(),
            ..pki.files.clone()
        }),
        ..Default::default()
    });
    let log = cluster.workers[index]
        .process
        .wait_log("cannot register", Duration::from_secs(30))
        .await;
    assert!(log.contains("certificate"), "{log}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(node_ids(&cluster).await, ["w0"]);

    // A worker whose certificate another CA signed registers (it trusts the coordinator), but the
    // coordinator's link does not trust it: the node stays OFFLINE and says why.
    let index = cluster.add_worker(WorkerSpec {
        tls: Some(TlsFiles {
            ca: pki.files.ca.clone(),
            cert: pki.other_cert.clone(),
            key: pki.other_key.clone(),
        }),
        ..Default::default()
    });
    let node_id = cluster.workers[index].node_id.clone();
    let mut nodes = cluster.connect().nodes().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let node = loop {
        let node = nodes
            .get_node(v1::GetNodeRequest {
                id: node_id.clone(),
            })
            .await
            .map(tonic::Response::into_inner);
        if let Ok(node) = &node
            && node.condition.contains("certificate")
        {
            break node.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{node_id} never said its certificate was refused: {node:#?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(node.state, v1::NodeState::Offline as i32, "{node:#?}");
    let job = cluster.submit("count", &[("steps", "2")]).await;
    let done = cluster.wait_finished(&job.id).await;
    assert_eq!(
        done.node_id, "w0",
        "jobs go only to the node the coordinator trusts"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unusable_certificate_files_stop_servers_at_start_saying_which() {
    let pki = pki();
    let dir = pki.dir.path();
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "this is not PEM\n").unwrap();
    let missing = dir.join("missing.pem");
    let cert = pki.files.cert.display().to_string();
    let key = pki.files.key.display().to_string();
    let other_key = pki.other_key.display().to_string();
    let junk_text = junk.display().to_string();
    let missing_text = missing.display().to_string();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--tls-cert", &missing_text, "--tls-key", &key],
            vec!["cannot read the TLS certificate", &missing_text],
        ),
        (
            vec!["--tls-cert", &cert, "--tls-key", &missing_text],
            vec!["cannot read the TLS private key", &missing_text],
        ),
        (
            vec!["--tls-cert", &junk_text, "--tls-key", &key],
            vec!["holds no certificate", &junk_text],
        ),
        (
            vec!["--tls-cert", &cert, "--tls-key", &junk_text],
            vec!["holds no usable key", &junk_text],
        ),
        (
            vec!["--tls-cert", &cert, "--tls-key", &other_key],
            vec![
                "cannot use the TLS certificate",
                &cert,
                &other_key,
                "does not belong",
            ],
        ),
        (
            vec![
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
                "--tls-ca",
                &junk_text,
            ],
            vec!["holds no certificate", &junk_text],
        ),
        (vec!["--tls-cert", &cert], vec!["--tls-key"]),
    ];
    for command in ["coordinator", "worker", "dev"] {
        for (index, (flags, says)) in cases.iter().enumerate() {
            let port = free_port();
            let mut args = vec![
                command.to_owned(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--data-dir".into(),
                dir.join(format!("{command}-{index}")).display().to_string(),
            ];
            args.extend(flags.iter().map(|flag| (*flag).to_owned()));
            let mut process = ReelayProcess::start(
                &format!("{command}-{index}"),
                args,
                Vec::new(),
                dir.join(format!("{command}-{index}.log")),
            );
            let status = process
                .wait_exit(Duration::from_secs(30))
                .unwrap_or_else(|| panic!("{command} {flags:?} kept running"));
            assert!(!status.success());
            let log = process.log_text();
            for needle in says {
                assert!(
                    log.contains(needle),
                    "{command} {flags:?}: {needle:?} not in\n{log}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_serves_tls_on_both_of_its_ports() {
    let pki = pki();
    let port = free_port();
    let data = pki.dir.path().join("dev-data");
    let _dev = ReelayProcess::start(
        "dev",
        vec![
            "dev".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            data.display().to_string(),
            "--tls-cert".into(),
            pki.files.cert.display().to_string(),
            "--tls-key".into(),
            pki.files.key.display().to_string(),
            "--tls-ca".into(),
            pki.files.ca.display().to_string(),
        ],
        Vec::new(),
        pki.dir.path().join("dev.log"),
    );
    let target = Connect {
        url: format!("https://127.0.0.1:{port}"),
        token: None,
        ca: Some(pki.files.ca.clone()),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let node = loop {
        if let Ok(channel) = target.try_channel().await
            && let Ok(nodes) = v1::node_service_client::NodeServiceClient::new(channel)
                .list_nodes(v1::ListNodesRequest {})
                .await
            && let Some(node) = nodes
                .into_inner()
                .nodes
                .into_iter()
                .find(|node| node.state == v1::NodeState::Ready as i32)
        {
            break node;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the built-in worker never became READY over TLS:\n{}",
            std::fs::read_to_string(pki.dir.path().join("dev.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(node.address.starts_with("https://127.0.0.1:"), "{node:#?}");
    let job = target
        .jobs()
        .await
        .create_job(v1::CreateJobRequest {
            spec: Some(reelay_tests::spec(
                "count",
                &[("steps", "3"), ("interval_ms", "10")],
            )),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let events = tokio::time::timeout(
        Duration::from_secs(60),
        watch::until_terminal_at(target.clone(), job.id.clone()),
    )
    .await
    .expect("the job finished");
    let last = events.last().unwrap().job.as_ref().unwrap();
    assert_eq!(last.state, v1::JobState::Succeeded as i32, "{last:#?}");
    assert!(
        plain_http_answer(&format!("127.0.0.1:{port}"))
            .iter()
            .take(5)
            .ne(b"HTTP/".iter()),
        "dev answered plain HTTP"
    );
}
