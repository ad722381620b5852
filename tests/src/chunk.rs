//! The steps of `transcode-chunked` run directly, as a worker runs a pipeline program:
//! `sh deploy/pipeline/reelay-chunk STEP` with the pipeline protocol's environment, each step in
//! directories of its own (split's outputs, one per encoded piece, the join's input and output).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// `deploy/pipeline/reelay-chunk`.
pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/pipeline/reelay-chunk")
}

/// What one step did.
#[derive(Debug)]
pub struct Step {
    pub step: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Step {
    /// Panics with the step's output unless it exited 0.
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "reelay-chunk {} failed:\n{self}",
            self.step
        );
        self
    }

    /// The values of its `::progress N …` lines, in order.
    pub fn progress(&self) -> Vec<u32> {
        self.stdout
            .lines()
            .filter_map(|line| line.strip_prefix("::progress "))
            .map(|rest| {
                rest.split(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("a bad progress line: {rest}"))
            })
            .collect()
    }

    /// Panics unless its progress starts at 0, never decreases and ends at 100.
    pub fn assert_progress(&self) {
        let progress = self.progress();
        assert!(
            progress.first() == Some(&0)
                && progress.last() == Some(&100)
                && progress.windows(2).all(|w| w[0] <= w[1]),
            "reelay-chunk {}: progress {progress:?}\n{self}",
            self.step
        );
    }

    /// Its last stderr line: the job's error when it fails.
    pub fn last_error(&self) -> &str {
        self.stderr.lines().last().unwrap_or_default()
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `sh reelay-chunk STEP` with `env` (and no other `REELAY_*` variable).
pub fn run(step: &str, env: &[(&str, &Path)], params: &[(&str, &str)]) -> Step {
    let mut command = Command::new("sh");
    command.arg(script()).arg(step);
    for (key, _) in std::env::vars() {
        if key.starts_with("REELAY_") {
            command.env_remove(key);
        }
    }
    for (key, value) in env {
        command.env(key, value);
    }
    for (name, value) in params {
        command.env(format!("REELAY_PARAM_{}", name.to_uppercase()), value);
    }
    let output = command.output().expect("run sh reelay-chunk");
    Step {
        step: step.to_owned(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `reelay-chunk split` of `input` into `out`.
pub fn split(input: &Path, out: &Path, segment_seconds: &str) -> Step {
    run(
        "split",
        &[("REELAY_INPUT", input), ("REELAY_OUTPUT_DIR", out)],
        &[("segment_seconds", segment_seconds)],
    )
}

/// `reelay-chunk encode` of one piece into `out`.
pub fn encode(piece: &Path, out: &Path, height: &str, preset: &str) -> Step {
    run(
        "encode",
        &[("REELAY_INPUT", piece), ("REELAY_OUTPUT_DIR", out)],
        &[("height", height), ("preset", preset)],
    )
}

/// `reelay-chunk join` of the files in `input_dir` into `out`; `REELAY_INPUT` is the manifest.
pub fn join(input_dir: &Path, out: &Path) -> Step {
    run(
        "join",
        &[
            ("REELAY_INPUT_DIR", input_dir),
            ("REELAY_INPUT", &input_dir.join("manifest.json")),
            ("REELAY_OUTPUT_DIR", out),
        ],
        &[],
    )
}

/// split's manifest.json, parsed as the coordinator parses it.
pub fn manifest(split_dir: &Path) -> Value {
    let text = std::fs::read_to_string(split_dir.join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("manifest.json: {err}\n{text}"))
}

/// A chunked transcode up to the join: split, every piece encoded in its own directory, and the
/// join's input directory filled (manifest, audio, encoded pieces) as the coordinator fills it.
#[derive(Debug)]
pub struct Chunked {
    /// Under the caller's temp dir: `split/`, `encoded/NNNN/`, `join-input/`, `out/`.
    pub root: PathBuf,
    pub split: Step,
    pub encodes: Vec<Step>,
    pub manifest: Value,
}

impl Chunked {
    /// Splits `input` every `segment_seconds` and encodes each piece at `height` with `preset`.
    pub fn prepare(
        root: &Path,
        input: &Path,
        segment_seconds: &str,
        height: &str,
        preset: &str,
    ) -> Self {
        let split_dir = root.join("split");
        let split = split(input, &split_dir, segment_seconds);
        split.assert_ok().assert_progress();
        let manifest = manifest(&split_dir);
        let join_input = root.join("join-input");
        std::fs::create_dir_all(&join_input).expect("mkdir join-input");
        std::fs::copy(
            split_dir.join("manifest.json"),
            join_input.join("manifest.json"),
        )
        .expect("copy the manifest");
        if split_dir.join("audio.m4a").exists() {
            std::fs::copy(split_dir.join("audio.m4a"), join_input.join("audio.m4a"))
                .expect("copy the audio");
        }
        let mut encodes = Vec::new();
        for piece in pieces(&manifest) {
            let out = root.join("encoded").join(format!("{:04}", piece.index));
            let step = encode(&split_dir.join(&piece.name), &out, height, preset);
            step.assert_ok().assert_progress();
            let encoded = piece.name.replace(".mkv", ".mp4");
            std::fs::copy(out.join(&encoded), join_input.join(&encoded)).expect("copy a piece");
            encodes.push(step);
        }
        Self {
            root: root.to_owned(),
            split,
            encodes,
            manifest,
        }
    }

    pub fn split_dir(&self) -> PathBuf {
        self.root.join("split")
    }

    pub fn join_input(&self) -> PathBuf {
        self.root.join("join-input")
    }

    pub fn out(&self) -> PathBuf {
        self.root.join("out")
    }

    /// Joins what `prepare` left in `join-input/` into `out/`.
    pub fn join(&self) -> Step {
        join(&self.join_input(), &self.out())
    }
}

/// One entry of the manifest's `pieces`.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub name: String,
    pub index: u64,
    pub frames: u64,
    pub start: f64,
    pub duration: f64,
}

/// The manifest's pieces, in order.
pub fn pieces(manifest: &Value) -> Vec<Piece> {
    manifest["pieces"]
        .as_array()
        .expect("pieces is a list")
        .iter()
        .map(|piece| Piece {
            name: piece["name"].as_str().expect("name").to_owned(),
            index: piece["index"].as_u64().expect("index"),
            frames: piece["frames"].as_u64().expect("frames"),
            start: piece["start"].as_f64().expect("start"),
            duration: piece["duration"].as_f64().expect("duration"),
        })
        .collect()
}

/// The names of the files in `dir`, sorted (hidden ones included).
pub fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|entry| {
                    entry
                        .expect("dir entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `transcode` and `transcode-chunked` with its three steps, run from the scripts in deploy/pipeline/
/// (process executor; the image names let a Docker worker run them too, with the script paths
/// replaced by the image's).
pub fn pipelines_config() -> String {
    let chunk = script()
        .canonicalize()
        .expect("deploy/pipeline/reelay-chunk");
    let transcode = script()
        .with_file_name("reelay-transcode")
        .canonicalize()
        .expect("deploy/pipeline/reelay-transcode");
    format!(
        r#"
[[pipeline]]
name = "transcode"
image = "reelay/pipeline:latest"
pull = "never"
command = ["{transcode}"]
input_required = true
outputs = ["final_without_post_process__*.mp4", "thumbnail.jpg"]
params = [ {{ name = "height", default = "360", pattern = "[0-9]{{2,4}}" }},
           {{ name = "preset", default = "ultrafast", pattern = "[a-z]+" }},
           {{ name = "crf", default = "30", pattern = "[0-9]{{1,2}}" }} ]
[[pipeline]]
name = "transcode-chunked"
input_required = true
steps = {{ split = "chunk-split", map = "chunk-encode", join = "chunk-join" }}
params = [ {{ name = "height", default = "360", pattern = "[0-9]{{2,4}}" }},
           {{ name = "preset", default = "ultrafast", pattern = "[a-z]+" }},
           {{ name = "crf", default = "30", pattern = "[0-9]{{1,2}}" }},
           {{ name = "segment_seconds", default = "10", pattern = "[0-9]{{1,5}}" }} ]

[[pipeline]]
name = "chunk-split"
image = "reelay/pipeline:latest"
pull = "never"
command = ["{chunk}", "split"]
input_required = true
outputs = ["manifest.json"]
params = [ {{ name = "segment_seconds", default = "10", pattern = "[0-9]{{1,5}}" }} ]

[[pipeline]]
name = "chunk-encode"
image = "reelay/pipeline:latest"
pull = "never"
command = ["{chunk}", "encode"]
input_required = true
outputs = ["piece-*.mp4"]
params = [ {{ name = "height", default = "360", pattern = "[0-9]{{2,4}}" }},
           {{ name = "preset", default = "ultrafast", pattern = "[a-z]+" }},
           {{ name = "crf", default = "30", pattern = "[0-9]{{1,2}}" }} ]

[[pipeline]]
name = "chunk-join"
image = "reelay/pipeline:latest"
pull = "never"
command = ["{chunk}", "join"]
input_required = true
outputs = ["final_without_post_process__*.mp4", "thumbnail.jpg"]
"#,
        chunk = chunk.display(),
        transcode = transcode.display()
    )
}

/// `seconds` of 1280x720 testsrc with a sine, a keyframe every 2 s.
pub fn make_input(path: &Path, seconds: u32) {
    let video = format!("testsrc=duration={seconds}:size=1280x720:rate=30");
    let audio = format!("sine=frequency=440:duration={seconds}");
    crate::media::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &video,
        "-f",
        "lavfi",
        "-i",
        &audio,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "60",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-shortest",
        &path.display().to_string(),
    ]);
}
