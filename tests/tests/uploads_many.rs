//! Several uploaded files, typed as a newcomer types them: each command runs through `sh -c` (the
//! shell expands the glob), with `reelay` found on PATH, the server from `REELAY_SERVER` and a
//! working directory of its own. `reelay job submit copy --upload clips/*.bin --watch` uploads each
//! file and makes one job each, whose output is the same bytes; the same command again sends and
//! submits nothing; a new file in the folder is the only one sent. A file the pipeline refuses
//! fails the watch, which names it; `--from` lines name uploads by `input_uri`.

use std::path::Path;
use std::process::{Command, Output};

use reelay_proto::v1;
use reelay_tests::artifacts::{derived_upload_id, download, random_bytes};
use reelay_tests::process::reelay_bin;
use reelay_tests::{TestCluster, WorkerSpec};

const MIB: usize = 1024 * 1024;

/// Copies its input to copy.bin, like `copy`, but fails on an input that starts with `BAD`.
const PICKY: &str = r#"
[[pipeline]]
name = "picky"
description = "copies its input to copy.bin; fails on an input that starts with BAD"
command = ["sh", "-c", '''
if [ "$(head -c 3 "$REELAY_INPUT")" = BAD ]; then echo "refusing the input: it starts with BAD" >&2; exit 4; fi
cp "$REELAY_INPUT" "$REELAY_OUTPUT_DIR/copy.bin"
''']
input_required = true
outputs = ["copy.bin"]
"#;

/// A shell prompt in `cwd` with `reelay` on PATH, talking to the cluster.
struct Prompt {
    /// Holds a `reelay` link to the binary under test (REELAY_BIN may give it another name).
    bin_dir: tempfile::TempDir,
    server: String,
    cwd: std::path::PathBuf,
}

impl Prompt {
    fn new(cluster: &TestCluster, cwd: &Path) -> Self {
        let bin_dir = tempfile::tempdir().unwrap();
        let bin = std::fs::canonicalize(reelay_bin()).expect("the reelay binary");
        std::os::unix::fs::symlink(bin, bin_dir.path().join("reelay")).unwrap();
        Prompt {
            bin_dir,
            server: cluster.url(),
            cwd: cwd.to_owned(),
        }
    }

    /// Runs `line` as typed at the prompt.
    fn run(&self, line: &str) -> Output {
        let path = format!(
            "{}:{}",
            self.bin_dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("sh")
            .arg("-c")
            .arg(line)
            .env("PATH", path)
            .env("REELAY_SERVER", &self.server)
            .env_remove("REELAY_TOKEN")
            .current_dir(&self.cwd)
            .output()
            .expect("run sh")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes the files into `dir`; returns them as (name, bytes).
fn write_files(dir: &Path, files: &[(&str, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    std::fs::create_dir_all(dir).unwrap();
    files
        .iter()
        .map(|(name, data)| {
            std::fs::write(dir.join(name), data).unwrap();
            ((*name).to_owned(), data.clone())
        })
        .collect()
}

/// The job of `pipeline` on the upload of file `name` holding `data`.
fn job_on<'a>(jobs: &'a [v1::Job], pipeline: &str, name: &str, data: &[u8]) -> &'a v1::Job {
    let uri = format!("upload:{}", derived_upload_id(name, data));
    jobs.iter()
        .find(|job| {
            let spec = job.spec.as_ref().unwrap();
            spec.pipeline == pipeline && spec.input_uri == uri
        })
        .unwrap_or_else(|| panic!("no {pipeline} job on {name} ({uri}): {jobs:#?}"))
}

/// Each file has its job of `pipeline`, succeeded, whose copy.bin is the file's bytes.
async fn assert_copied(cluster: &TestCluster, pipeline: &str, files: &[(String, Vec<u8>)]) {
    let jobs = cluster.all_jobs().await;
    for (name, data) in files {
        let job = job_on(&jobs, pipeline, name, data);
        assert_eq!(
            job.state,
            v1::JobState::Succeeded as i32,
            "{name}: {job:#?}"
        );
        let output = download(cluster, &job.id, "copy.bin").await;
        assert!(
            output == *data,
            "{name}: its job's copy.bin has {} bytes, not the file's {}",
            output.len(),
            data.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_glob_of_files_is_uploaded_once_and_makes_one_job_each() {
    let cluster = TestCluster::builder()
        .worker(WorkerSpec {
            slots: 3,
            ..Default::default()
        })
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let clips = dir.path().join("clips");
    // More than one 8 MiB part, a few MiB, a few bytes; and a file the glob does not take.
    let mut files = write_files(
        &clips,
        &[
            ("a.bin", random_bytes(9 * MIB + 17, 1)),
            ("b.bin", random_bytes(3 * MIB, 2)),
            ("c.bin", random_bytes(1000, 3)),
        ],
    );
    std::fs::write(clips.join("notes.txt"), "not a clip\n").unwrap();
    let prompt = Prompt::new(&cluster, dir.path());
    let command = "reelay job submit copy --upload clips/*.bin --watch";

    let first = prompt.run(command);
    let (out, err) = (text(&first.stdout), text(&first.stderr));
    assert!(first.status.success(), "{out}{err}");
    assert!(
        err.contains("uploaded 3 files (12.0 MiB sent) in "),
        "{err}"
    );
    assert!(out.contains("submitted 3 jobs"), "{out}");
    assert!(out.contains("3 jobs: 3 succeeded"), "{out}");
    for (name, _) in &files {
        assert!(
            out.contains(&format!("clips/{name} (job ")),
            "each job named by its file: {out}"
        );
    }
    assert_eq!(cluster.all_jobs().await.len(), 3, "notes.txt is no job");
    assert_copied(&cluster, "copy", &files).await;

    // The same command again: every file is found uploaded, every job submitted before.
    let again = prompt.run(command);
    let (out, err) = (text(&again.stdout), text(&again.stderr));
    assert!(again.status.success(), "{out}{err}");
    assert!(
        err.contains("all 3 files were uploaded before (12.0 MiB): nothing sent"),
        "{err}"
    );
    assert!(
        out.contains("nothing new: all 3 jobs were submitted before"),
        "{out}"
    );
    assert!(out.contains("3 jobs: 3 succeeded"), "{out}");
    assert_eq!(cluster.all_jobs().await.len(), 3, "no job twice");

    // A new file in the folder: only it is sent, only its job is new.
    files.extend(write_files(&clips, &[("d.bin", random_bytes(2 * MIB, 4))]));
    let more = prompt.run(command);
    let (out, err) = (text(&more.stdout), text(&more.stderr));
    assert!(more.status.success(), "{out}{err}");
    assert!(
        err.contains("uploaded 1 file (2.0 MiB sent) in ")
            && err.contains("; 3 were uploaded before (not sent again)"),
        "{err}"
    );
    assert!(
        out.contains(
            "submitted 1 new job; 3 more were submitted before with the same spec (not again)"
        ),
        "{out}"
    );
    assert!(out.contains("4 jobs: 4 succeeded"), "{out}");
    assert_eq!(cluster.all_jobs().await.len(), 4);
    assert_copied(&cluster, "copy", &files).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_the_pipeline_refuses_fails_the_watch_by_name_and_from_lines_name_uploads() {
    let cluster = TestCluster::builder()
        .worker(WorkerSpec {
            slots: 3,
            ..Default::default()
        })
        .extra_config(PICKY)
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut bad = b"BAD".to_vec();
    bad.extend(random_bytes(100_000, 11));
    let files = write_files(
        &dir.path().join("in"),
        &[
            ("one.bin", random_bytes(MIB, 12)),
            ("bad.bin", bad),
            ("two.bin", random_bytes(512 * 1024, 13)),
        ],
    );
    let prompt = Prompt::new(&cluster, dir.path());

    let watched = prompt.run("reelay job submit picky --upload in/*.bin --watch");
    let (out, err) = (text(&watched.stdout), text(&watched.stderr));
    assert_eq!(watched.status.code(), Some(1), "one job failed: {out}{err}");
    let jobs = cluster.all_jobs().await;
    assert_eq!(jobs.len(), 3, "{jobs:#?}");
    let (name, data) = &files[1];
    let failed = job_on(&jobs, "picky", name, data);
    assert_eq!(failed.state, v1::JobState::Failed as i32, "{failed:#?}");
    assert!(
        err.contains(&format!(
            "error: job {} (in/bad.bin) failed: exit code 4",
            failed.id
        )),
        "names the failed file, its job and its error: {err}"
    );
    assert!(out.contains("3 jobs: 2 succeeded, 1 failed"), "{out}");
    let good = [files[0].clone(), files[2].clone()];
    assert_copied(&cluster, "picky", &good).await;

    // --from: one line per upload, written by a loop over `reelay job upload -q` (which finds the
    // files uploaded already and prints their input URIs).
    let from = prompt.run(
        r#"for f in in/one.bin in/two.bin; do printf '{"input_uri": "%s"}\n' "$(reelay job upload -q "$f")"; done > jobs.jsonl && reelay job submit copy --from jobs.jsonl --watch"#,
    );
    let (out, err) = (text(&from.stdout), text(&from.stderr));
    assert!(from.status.success(), "{out}{err}");
    let lines = std::fs::read_to_string(dir.path().join("jobs.jsonl")).unwrap();
    let expected: String = good
        .iter()
        .map(|(name, data)| {
            format!(
                "{{\"input_uri\": \"upload:{}\"}}\n",
                derived_upload_id(name, data)
            )
        })
        .collect();
    assert_eq!(lines, expected);
    assert!(out.contains("submitted 2 jobs"), "{out}");
    assert!(
        out.contains("jobs.jsonl line 1 (job ") && out.contains("jobs.jsonl line 2 (job "),
        "{out}"
    );
    assert!(out.contains("2 jobs: 2 succeeded"), "{out}");
    assert_eq!(cluster.all_jobs().await.len(), 5);
    assert_copied(&cluster, "copy", &good).await;
}
