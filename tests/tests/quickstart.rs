//! The README, run literally by a newcomer: a fresh `git clone` into a temporary folder, `cargo build
//! --release -p reelay` (as the Performance section says) before the UI exists, then `scripts/dev.sh`
//! with the default relative data dir from the clone's root, then every command of the README's
//! Quickstart section as written — read from README.md itself, so the two cannot drift apart.
//!
//! What is changed in a command, and only that: `127.0.0.1:7070` becomes the port this test chose
//! (the CLI gets it from `REELAY_SERVER`), `/tmp/in.mp4` a file of this test's own, and `<job-id>` the
//! id the last submit printed. The clone is of the last commit (uncommitted changes are not in it).
//!
//! Slow on purpose: it builds the release binary of a fresh clone. The clone's `target/` is a link to
//! `target/quickstart/` of this repository, so the dependencies are compiled once per machine.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reelay_tests::docker::ffprobe;
use reelay_tests::process::free_port;
use reelay_tests::readme;

/// Building a fresh clone's release binary from cold takes minutes on two cores.
const BUILD_TIMEOUT: Duration = Duration::from_secs(40 * 60);
/// A Quickstart command (the transcode is the longest).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5 * 60);

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repo root")
}

/// `program args` in `dir`, with `env`, killed after `timeout`.
fn run(dir: &Path, env: &[(String, String)], line: &str, timeout: Duration) -> Output {
    let child = Command::new("bash")
        .args(["-c", line])
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn bash");
    let pid = child.id() as i32;
    let killer = std::thread::spawn(move || {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            // Ended by itself: the group no longer exists.
            if nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), None).is_err() {
                return;
            }
        }
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    });
    let output = child.wait_with_output().expect("wait bash");
    let _ = killer.join();
    output
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The first job id (a UUID) in `text`.
fn job_id_in(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
        .find(|word| word.len() == 36 && uuid_shaped(word))
        .map(str::to_owned)
}

fn uuid_shaped(word: &str) -> bool {
    word.split('-').map(str::len).eq([8, 4, 4, 4, 12])
}

/// `scripts/dev.sh` running in its own process group; stopped with SIGTERM (then SIGKILL) on drop.
struct Dev {
    child: std::process::Child,
    log: PathBuf,
}

impl Dev {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ =
            nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.child.id() as i32), signal);
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        for _ in 0..150 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

#[test]
fn the_readme_quickstart_works_on_a_fresh_clone() {
    let root = repo_root();
    let temp = tempfile::Builder::new()
        .prefix("reelay-quickstart-")
        .tempdir()
        .expect("temp dir");
    let clone = temp.path().join("reelay");
    let cloned = Command::new("git")
        .args(["clone", "--quiet", "--no-hardlinks"])
        .arg(&root)
        .arg(&clone)
        .output()
        .expect("git clone");
    assert!(cloned.status.success(), "git clone: {}", text(&cloned));
    let shared_target = root.join("target/quickstart");
    std::fs::create_dir_all(&shared_target).expect("target/quickstart");
    std::os::unix::fs::symlink(&shared_target, clone.join("target")).expect("link target");

    // The newcomer's environment: the machine's PATH and grpcurl (fetched by the test set-up).
    let grpcurl_dir =
        PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/reelay-conformance");
    let path = format!(
        "{}:{}",
        grpcurl_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let port = free_port();
    let server = format!("127.0.0.1:{port}");
    let mut env = vec![
        ("PATH".to_owned(), path),
        ("NO_COLOR".to_owned(), "1".to_owned()),
        ("REELAY_SERVER".to_owned(), format!("http://{server}")),
    ];
    for inherited in ["HOME", "CARGO_HOME", "RUSTUP_HOME", "LANG"] {
        if let Ok(value) = std::env::var(inherited) {
            env.push((inherited.to_owned(), value));
        }
    }

    // 1. The Performance section's build, before the UI was ever built: it works without Node
    //    and says how to get the UI.
    let built = run(
        &clone,
        &env,
        "cargo build --release --locked -p reelay",
        BUILD_TIMEOUT,
    );
    assert!(
        built.status.success(),
        "cargo build --release:\n{}",
        text(&built)
    );
    assert!(
        text(&built).contains("web/dist is not built"),
        "the build says how to get the UI:\n{}",
        text(&built)
    );

    // 2. scripts/dev.sh, from the clone's root, on the default relative data dir.
    let log = temp.path().join("dev.log");
    let log_file = std::fs::File::create(&log).expect("dev log");
    let child = Command::new("scripts/dev.sh")
        .args(["--listen", &server])
        .current_dir(&clone)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .expect("scripts/dev.sh");
    let mut dev = Dev { child, log };
    let deadline = Instant::now() + BUILD_TIMEOUT;
    while !dev.log().contains("Reelay is running") {
        if let Ok(Some(status)) = dev.child.try_wait() {
            panic!("scripts/dev.sh exited with {status}:\n{}", dev.log());
        }
        assert!(
            Instant::now() < deadline,
            "dev.sh never came up:\n{}",
            dev.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // 3. The Quickstart, line by line.
    let readme_text = std::fs::read_to_string(clone.join("README.md")).expect("README.md");
    let commands = readme::commands(&readme_text, "## Quickstart");
    assert!(
        commands.len() >= 10,
        "the Quickstart has its commands: {commands:?}"
    );
    let video = temp.path().join("in.mp4");
    let mut job_id: Option<String> = None;
    let mut outputs_of: Vec<(String, String)> = Vec::new();
    // (job id, the command that submitted it)
    let mut submitted: Vec<(String, String)> = Vec::new();
    for command in &commands {
        if let Some(assignment) = command.strip_prefix("export ") {
            // `export NAME=VALUE`: what the newcomer's shell would keep for the next lines.
            let (name, _) = assignment.split_once('=').expect("export NAME=VALUE");
            let value = run(
                &clone,
                &env,
                &format!("{command}; printf %s \"${name}\""),
                COMMAND_TIMEOUT,
            );
            assert!(value.status.success(), "{command}: {}", text(&value));
            let value = String::from_utf8_lossy(&value.stdout).into_owned();
            env.retain(|(key, _)| key != name);
            env.push((name.to_owned(), value));
            continue;
        }
        let mut line = command
            .replace("127.0.0.1:7070", &server)
            .replace("/tmp/in.mp4", &video.display().to_string());
        if line.contains("<job-id>") {
            let id = job_id
                .clone()
                .unwrap_or_else(|| panic!("{command}: no job was submitted before it"));
            line = line.replace("<job-id>", &id);
        }
        let output = run(&clone, &env, &line, COMMAND_TIMEOUT);
        let said = text(&output);
        assert!(
            output.status.success(),
            "README command failed: {line}\n{said}\n--- reelay dev:\n{}",
            dev.log()
        );
        if line.contains(" job submit ") || line.contains("/CreateJob") {
            let id = job_id_in(&String::from_utf8_lossy(&output.stdout))
                .unwrap_or_else(|| panic!("{line}: printed no job id:\n{said}"));
            submitted.push((id.clone(), line.clone()));
            job_id = Some(id);
        }
        if line.contains(" job outputs ") {
            outputs_of.push((job_id.clone().unwrap_or_default(), said.clone()));
        }
        if line.contains(" job download ") {
            assert!(
                said.contains("saved") && said.contains("sha256 ok"),
                "{line}: {said}"
            );
        }
    }

    // The count job: its file listed and downloaded (verified) into the clone's root.
    let count_id = &submitted[0].0;
    let listed = &outputs_of
        .iter()
        .find(|(id, _)| id == count_id)
        .expect("job outputs of the count job")
        .1;
    assert!(listed.contains("count.txt"), "{listed}");
    let count = std::fs::read_to_string(clone.join("count.txt")).expect("downloaded count.txt");
    assert_eq!(count.lines().count(), 50, "{count}");

    // The transcode job: the H.264 file and the thumbnail, listed and downloadable.
    // The last transcode (the README uploads its input: the worker fetched it from the store).
    let transcode_id = &submitted
        .iter()
        .rfind(|(_, line)| line.contains("submit transcode"))
        .expect("the transcode job")
        .0;
    let listed = &outputs_of
        .iter()
        .rfind(|(id, _)| id == transcode_id)
        .expect("job outputs of the transcode job")
        .1;
    assert!(
        listed.contains("final_without_post_process__in.mp4"),
        "{listed}"
    );
    assert!(listed.contains("thumbnail.jpg"), "{listed}");
    for name in ["final_without_post_process__in.mp4", "thumbnail.jpg"] {
        let target = temp.path().join(name);
        let download = run(
            &clone,
            &env,
            &format!(
                "reelay job download {transcode_id} {name} -O {}",
                target.display()
            ),
            COMMAND_TIMEOUT,
        );
        assert!(download.status.success(), "{}", text(&download));
    }
    let probe = ffprobe(&temp.path().join("final_without_post_process__in.mp4"));
    assert_eq!(
        (probe.codec.as_str(), probe.height),
        ("h264", 360),
        "{probe:?}"
    );

    // Everything went where it should: the relative data dir at the clone's root, the outputs in
    // its artifact store under the job's key (the worker's copy is removed once they are stored),
    // nothing nested under a relative path inside the job's output directory.
    let stored = clone
        .join("reelay-data/coordinator/artifacts/outputs")
        .join(transcode_id);
    let thumbnails = std::fs::read_dir(&stored)
        .map(|attempts| {
            attempts
                .filter_map(Result::ok)
                .filter(|attempt| attempt.path().join("thumbnail.jpg").is_file())
                .count()
        })
        .unwrap_or(0);
    assert_eq!(thumbnails, 1, "thumbnail.jpg in {}", stored.display());
    let outputs = clone.join("reelay-data/worker/outputs").join(transcode_id);
    assert!(
        !outputs.join("reelay-data").exists(),
        "outputs nested in {}",
        outputs.display()
    );

    // 4. The UI is the real one, though `cargo build --release` ran before the UI existed.
    let page = reelay_tests::http::get(&server, "/", &[]);
    let html = page.text();
    assert!(
        html.contains("<div id=\"root\">") && html.contains("/assets/"),
        "the coordinator serves the built UI:\n{html}"
    );
    assert!(!html.contains("built without the web UI"), "{html}");
    drop(dev);
}

#[test]
fn job_ids_are_found_in_cli_and_grpcurl_output() {
    assert_eq!(
        job_id_in("job 0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b queued: x").as_deref(),
        Some("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
    );
    assert_eq!(
        job_id_in("{\n  \"id\": \"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\",").as_deref(),
        Some("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
    );
    assert_eq!(job_id_in("no id here 1234"), None);
}
