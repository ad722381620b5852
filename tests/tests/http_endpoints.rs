//! The coordinator's plain-HTTP side on its one port: file downloads with ranges, the web UI's
//! content types and caching, `/metrics`, and gRPC calls to unknown methods.

use reelay_tests::TestCluster;
use reelay_tests::http::{get, metric};
use sha2::{Digest, Sha256};

#[tokio::test(flavor = "multi_thread")]
async fn downloads_have_length_disposition_and_ranges() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let job = cluster
        .submit("count", &[("steps", "30"), ("interval_ms", "1")])
        .await;
    let done = cluster.wait_finished(&job.id).await;
    let file = &done.outputs[0];
    let path = format!("/download/{}/count.txt", job.id);

    let whole = get(&cluster.address(), &path, &[]);
    assert_eq!(whole.status, 200, "{}", whole.text());
    assert_eq!(whole.body.len() as u64, file.size);
    assert_eq!(hex::encode(Sha256::digest(&whole.body)), file.sha256);
    assert_eq!(
        whole.header("content-length"),
        Some(file.size.to_string().as_str())
    );
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    let disposition = whole.header("content-disposition").unwrap();
    assert!(
        disposition.starts_with("attachment;") && disposition.contains("filename=\"count.txt\""),
        "{disposition}"
    );

    let part = get(&cluster.address(), &path, &[("Range", "bytes=10-19")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, whole.body[10..20]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 10-19/{}", file.size).as_str())
    );
    let tail = get(&cluster.address(), &path, &[("Range", "bytes=-5")]);
    assert_eq!(tail.body, whole.body[whole.body.len() - 5..]);
    let open_ended = get(&cluster.address(), &path, &[("Range", "bytes=100-")]);
    assert_eq!(open_ended.body, whole.body[100..]);

    let unsatisfiable = get(
        &cluster.address(),
        &path,
        &[("Range", &format!("bytes={}-", file.size + 10))],
    );
    assert_eq!(unsatisfiable.status, 416);
    assert_eq!(
        unsatisfiable.header("content-range"),
        Some(format!("bytes */{}", file.size).as_str())
    );
    assert_eq!(
        get(
            &cluster.address(),
            &format!("/download/{}/nope.txt", job.id),
            &[]
        )
        .status,
        404
    );
    assert_eq!(
        get(&cluster.address(), "/download/not-a-job/count.txt", &[]).status,
        400
    );
    assert_eq!(
        get(
            &cluster.address(),
            &format!("/download/{}/..%2Fsecret", job.id),
            &[]
        )
        .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ui_metrics_and_unknown_grpc_methods() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let index = get(&cluster.address(), "/", &[]);
    assert_eq!(index.status, 200);
    assert!(
        index
            .header("content-type")
            .unwrap()
            .starts_with("text/html"),
        "{:?}",
        index.headers
    );
    assert_eq!(index.header("cache-control"), Some("no-cache"));
    let page = index.text();
    if page.contains("built without the web UI") {
        // A binary built before `npm run build`: the page says how to build the UI.
        assert!(page.contains("npm --prefix web run build"), "{page}");
    } else {
        // Client-side routes get the same page; hashed assets are cached for good.
        let route = get(&cluster.address(), "/jobs/some-id", &[]);
        assert_eq!((route.status, route.text()), (200, page.clone()));
        let asset = page
            .split("src=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a script in index.html");
        let script = get(&cluster.address(), asset, &[]);
        assert_eq!(script.status, 200, "{asset}");
        assert!(
            script
                .header("content-type")
                .unwrap()
                .contains("javascript"),
            "{:?}",
            script.headers
        );
        assert!(
            script
                .header("cache-control")
                .unwrap()
                .contains("immutable")
        );
        assert_eq!(
            get(&cluster.address(), "/assets/missing-0000.js", &[]).status,
            404
        );
    }

    let job = cluster
        .submit("count", &[("steps", "2"), ("interval_ms", "1")])
        .await;
    cluster.wait_terminal(&job.id).await;
    let metrics = get(&cluster.address(), "/metrics", &[]).text();
    assert_eq!(
        metric(&metrics, "reelay_jobs_created_total"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "reelay_jobs_finished_total{state=\"succeeded\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "reelay_nodes{state=\"ready\"}"),
        Some(1.0),
        "{metrics}"
    );

    // A gRPC call to a method nobody serves: UNIMPLEMENTED, not the UI.
    let channel = cluster.channel().await;
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/reelay.v1.JobService/NoSuchMethod");
    let codec =
        tonic_prost::ProstCodec::<reelay_proto::v1::GetJobRequest, reelay_proto::v1::Job>::default(
        );
    let status = client
        .unary(
            tonic::Request::new(reelay_proto::v1::GetJobRequest::default()),
            path,
            codec,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
}
