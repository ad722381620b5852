//! The SeaweedFS harness itself (`reelay_tests::s3`): it starts and stores objects, keeps them
//! across a restart and a kill -9, and freeze/thaw make it unreachable and back without losing them.

use std::time::{Duration, Instant};

use object_store::ObjectStoreExt;
use object_store::path::Path;
use reelay_tests::s3::S3Server;
use sha2::{Digest, Sha256};

/// Bytes that differ from one position to the next, so a truncated or shifted copy shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[tokio::test]
async fn stores_lists_and_reads_back_through_object_store() {
    let server = S3Server::start().await;
    server.create_bucket("artifacts").await;
    server.create_bucket("artifacts").await; // making it again is fine

    let data = pattern(3 << 20);
    server
        .put_object("artifacts", "jobs/a/input.bin", data.clone())
        .await;
    server
        .put_object("artifacts", "jobs/a/out.txt", b"hello".to_vec())
        .await;
    server
        .put_object("artifacts", "jobs/ab/other", b"x".to_vec())
        .await;

    let read = server
        .get_object("artifacts", "jobs/a/input.bin")
        .await
        .expect("object");
    assert_eq!(
        Sha256::digest(&read),
        Sha256::digest(&data),
        "the bytes read back are the bytes put"
    );
    assert_eq!(server.get_object("artifacts", "jobs/a/missing").await, None);
    assert_eq!(
        server.list("artifacts", "jobs/a").await,
        vec![
            ("jobs/a/input.bin".to_owned(), 3 << 20),
            ("jobs/a/out.txt".to_owned(), 5)
        ],
        "a prefix lists whole path segments"
    );
    assert_eq!(server.list("artifacts", "").await.len(), 3);

    // The environment a reelay process gets points a from_env client at the same server.
    let env = server.env();
    let value = |key: &str| {
        env.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .expect(key)
    };
    assert_eq!(value("AWS_ENDPOINT_URL"), server.endpoint());
    let mut builder = object_store::aws::AmazonS3Builder::new().with_bucket_name("artifacts");
    for (key, value) in &env {
        builder = builder.with_config(
            key.to_lowercase().parse().expect("an AWS config key"),
            value,
        );
    }
    let from_env = builder.build().expect("client from env()");
    let meta = from_env
        .head(&Path::from("jobs/a/out.txt"))
        .await
        .expect("head through env()");
    assert_eq!(meta.size, 5);
}

#[tokio::test]
async fn restart_and_kill9_keep_the_objects_on_the_same_endpoint() {
    let mut server = S3Server::start().await;
    server.create_bucket("keep").await;
    server
        .put_object("keep", "one", b"before restart".to_vec())
        .await;
    let endpoint = server.endpoint();
    let pid = server.pid();

    server.restart().await;
    assert_eq!(server.endpoint(), endpoint);
    assert_ne!(server.pid(), pid, "a new process");
    assert_eq!(
        server.get_object("keep", "one").await.as_deref(),
        Some(&b"before restart"[..])
    );
    server
        .put_object("keep", "two", b"before kill -9".to_vec())
        .await;

    server.kill9();
    assert_eq!(server.pid(), None);
    server.restart().await;
    assert_eq!(
        server.get_object("keep", "two").await.as_deref(),
        Some(&b"before kill -9"[..])
    );
    assert_eq!(server.list("keep", "").await.len(), 2);
}

#[tokio::test]
async fn freeze_makes_requests_time_out_and_thaw_brings_them_back() {
    let mut server = S3Server::start().await;
    server.create_bucket("frozen").await;
    server
        .put_object("frozen", "k", b"still here".to_vec())
        .await;

    server.freeze();
    let started = Instant::now();
    let client = server.client("frozen");
    let attempt = tokio::time::timeout(Duration::from_secs(2), client.get(&Path::from("k"))).await;
    assert!(attempt.is_err(), "a frozen server must not answer");
    assert!(started.elapsed() >= Duration::from_secs(2));

    server.thaw();
    let read = tokio::time::timeout(Duration::from_secs(10), server.get_object("frozen", "k"))
        .await
        .expect("answers again after thaw");
    assert_eq!(read.as_deref(), Some(&b"still here"[..]));
}
