//! The reference pipeline with the process executor: `deploy/pipeline/reelay-transcode` run on the
//! host's ffmpeg, as `reelay dev` does when ffmpeg is installed.

use std::path::PathBuf;

use reelay_proto::v1;
use reelay_tests::docker::{ffprobe, make_test_video};
use reelay_tests::{TestCluster, spec};

#[tokio::test(flavor = "multi_thread")]
async fn the_reference_pipeline_transcodes_as_a_local_process() {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/pipeline/reelay-transcode");
    let script = std::fs::canonicalize(script).unwrap();
    let config = format!(
        "\n[[pipeline]]\nname = \"ptranscode\"\ncommand = [\"{}\"]\nparams = [ {{ name = \"height\", default = \"720\", pattern = \"[0-9]{{2,4}}\" }} ]\n",
        script.display()
    );
    let cluster = TestCluster::builder()
        .extra_config(&config)
        .workers(1)
        .start()
        .await;
    let input = make_test_video(&cluster.path().join("videos/clip.mp4"), 4, "640x480");
    let mut job = spec("ptranscode", &[("height", "240")]);
    job.input_path = input.display().to_string();
    let job = cluster.submit_spec(job).await;
    let events = cluster
        .wait_terminal_within(&job.id, std::time::Duration::from_secs(120))
        .await;
    let done = events.last().unwrap().job.clone().unwrap();
    assert_eq!(
        done.state,
        v1::JobState::Succeeded as i32,
        "{done:#?}\n{}",
        cluster.logs()
    );
    let progress: Vec<u32> = events
        .iter()
        .filter(|e| e.change == v1::JobChange::Progress as i32)
        .map(|e| e.job.as_ref().unwrap().progress)
        .collect();
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]) && progress.len() >= 3,
        "{progress:?}"
    );
    let names: Vec<&str> = done.outputs.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["final_without_post_process__clip.mp4", "thumbnail.jpg"]
    );
    // Read from the artifact store (the coordinator's directory): the worker keeps no copy.
    let outputs = reelay_tests::artifacts::local_store(&cluster)
        .join("outputs")
        .join(&job.id)
        .join(done.attempt.to_string());
    let probe = ffprobe(&outputs.join("final_without_post_process__clip.mp4"));
    assert_eq!(
        (probe.codec.as_str(), probe.height),
        ("h264", 240),
        "{probe:?}"
    );
    assert!((probe.duration - 4.0).abs() < 0.5, "{probe:?}");
}
