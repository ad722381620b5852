//! Property tests of the parts of the domain that read untrusted text or drive a job: the
//! `::progress` parser, the pipeline config parser, output-name validation and the job state machine.
//!
//! Case counts stay modest (256 per property) so the suite remains fast; a failure prints the
//! smallest input proptest could shrink it to.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::{Component, Path};
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use reelay_core::machine::{AttemptReport, Input, Policy, apply};
use reelay_core::names::validate_output_name;
use reelay_core::pipeline::Pipelines;
use reelay_core::progress::{Progress, parse_progress};
use reelay_core::{Job, JobId, JobSpec, JobState, OutputFile};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

// === ::progress ===

/// The `::progress` line that sets `progress`.
fn progress_line(progress: &Progress) -> String {
    let mut line = format!("::progress {}", progress.percent);
    if !progress.stage.is_empty() {
        line.push(' ');
        line.push_str(&progress.stage);
    }
    if let Some(fps) = progress.fps {
        line.push_str(&format!(" fps={fps}"));
    }
    if let Some(eta) = progress.eta_seconds {
        line.push_str(&format!(" eta={eta}"));
    }
    line
}

/// Lines near the protocol: the marker, odd whitespace, numbers of every shape, fps/eta tokens.
fn progress_like_line() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        any::<f64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[-+]?[0-9]{0,4}(\\.[0-9]{0,3})?(e[-+]?[0-9]{1,3})?",
        Just("NaN".to_owned()),
        Just("inf".to_owned()),
    ];
    let word = prop_oneof!["[a-z]{1,6}", "(fps|eta)=[-0-9.a-z]{0,6}", "\\PC{0,4}"];
    (
        prop_oneof![
            Just("::progress"),
            Just("::progres"),
            Just("::progressive"),
            Just(""),
        ],
        prop_oneof![
            Just(" "),
            Just("\t"),
            Just(""),
            Just("\u{3000}"),
            Just("  ")
        ],
        number,
        proptest::collection::vec(word, 0..4),
        prop_oneof![Just(""), Just("\n"), Just("\r\n"), Just("\r")],
    )
        .prop_map(|(marker, space, number, words, end)| {
            format!("{marker}{space}{number} {}{end}", words.join(" "))
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn progress_parser_never_panics_and_accepts_only_0_to_100(
        line in prop_oneof![any::<String>(), progress_like_line()]
    ) {
        if let Some(progress) = parse_progress(&line) {
            prop_assert!(progress.percent <= 100, "{line:?} gave {progress:?}");
            for value in [progress.fps, progress.eta_seconds].into_iter().flatten() {
                prop_assert!(value.is_finite() && value >= 0.0, "{line:?} gave {progress:?}");
            }
        }
    }

    #[test]
    fn numbers_outside_0_to_100_are_never_progress(
        number in prop_oneof![
            100.000_001f64..1000.0,
            1000.0f64..1e300,
            -1000.0f64..-0.000_001,
            -1e300f64..-1000.0,
            (101u64..1000).prop_map(|n| n as f64),
            (1000u64..=u64::MAX).prop_map(|n| n as f64),
        ],
        stage in "[a-z ]{0,12}",
    ) {
        for text in [number.to_string(), format!("{number:e}"), format!("{number:.3}")] {
            // A rounding that lands back inside the range is a number inside the range.
            let parsed: f64 = text.parse().unwrap();
            if (0.0..=100.0).contains(&parsed) {
                continue;
            }
            let line = format!("::progress {text} {stage}");
            prop_assert_eq!(parse_progress(&line), None, "{}", line);
        }
    }

    #[test]
    fn accepted_progress_round_trips(
        percent in 0u32..=100,
        stage in proptest::collection::vec("[A-Za-z0-9_:.,()/-]{1,10}", 0..5),
        fps in proptest::option::of(0f64..1e6),
        eta in proptest::option::of(prop_oneof![0f64..1e7, Just(0.0)]),
    ) {
        let progress = Progress { percent, stage: stage.join(" "), fps, eta_seconds: eta };
        let line = progress_line(&progress);
        prop_assert_eq!(parse_progress(&line), Some(progress.clone()), "{}", line);
        // Decimals of the percent are rounded down; a line ending is not part of it.
        let decimal = line.replacen(&format!(" {percent}"), &format!(" {percent}.99"), 1);
        if percent < 100 {
            prop_assert_eq!(parse_progress(&format!("{decimal}\r\n")), Some(progress), "{}", decimal);
        }
    }
}

// === the pipeline config ===

/// Config-shaped text: fragments of valid and invalid TOML, shuffled together.
fn config_like_text() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("[[pipeline]]\n".to_owned()),
        Just("[pipeline]\n".to_owned()),
        "name = \"[a-zA-Z0-9_ -]{0,8}\"\n",
        Just("command = [\"x\"]\n".to_owned()),
        Just("command = []\n".to_owned()),
        Just("command = \"sh -c x\"\n".to_owned()),
        "timeout_seconds = -?[0-9]{1,12}\n",
        "resources = \\{ cpus = -?[0-9.]{1,4}, memory_mb = [0-9]{1,3} \\}\n",
        "params = \\[ \\{ name = \"[a-z_]{0,4}\", default = \"[0-9a-z]{0,3}\", pattern = \"[\\[\\]()a-z0-9{},*+?|^$]{0,6}\" \\} \\]\n",
        "params = \\[ \\{ name = \"[a-z]{1,3}\" \\}, \\{ name = \"[a-z]{1,3}\" \\} \\]\n",
        "pull = \"(never|always|if-missing|sometimes)\"\n",
        "input_required = (true|false|1)\n",
        "[a-z]{1,6} = [0-9]{1,3}\n",
        "\\PC{0,12}",
        Just("\"\"\"\n".to_owned()),
        Just("é = 1\n".to_owned()),
    ];
    proptest::collection::vec(fragment, 0..10).prop_map(|parts| parts.concat())
}

/// One generated pipeline: its TOML and what a job of it gets without params.
#[derive(Debug, Clone)]
struct GeneratedPipeline {
    toml: String,
    name: String,
    defaults: BTreeMap<String, String>,
}

/// A valid pipeline: unique names, params whose defaults match their own (unanchored) patterns.
fn generated_pipeline(index: usize) -> impl Strategy<Value = GeneratedPipeline> {
    let param = ("[a-z][a-z0-9_]{0,6}", 0usize..3, "[0-9]{1,3}", "[a-z]{1,5}");
    (
        "[A-Za-z][A-Za-z0-9_-]{0,10}",
        "[ -~&&[^\"\\\\]]{0,20}",
        proptest::collection::vec(param, 0..4),
        0u32..100_000,
        any::<bool>(),
    )
        .prop_map(move |(name, description, params, timeout, input_required)| {
            let name = format!("{name}{index}");
            let mut defaults = BTreeMap::new();
            let mut table = String::new();
            for (param_index, (param_name, kind, digits, letters)) in params.iter().enumerate() {
                let param_name = format!("{param_name}{param_index}");
                let (default, pattern) = match kind {
                    0 => (digits.clone(), "[0-9]{1,3}"),
                    1 => (letters.clone(), "^[a-z]+$"),
                    _ => (format!("{letters}{digits}"), "[a-z]+[0-9]+|x"),
                };
                table.push_str(&format!(
                    "  {{ name = \"{param_name}\", default = \"{default}\", pattern = \"{pattern}\" }},\n"
                ));
                defaults.insert(param_name, default);
            }
            let toml = format!(
                "[[pipeline]]\nname = \"{name}\"\ndescription = \"{description}\"\n\
                 command = [\"prog\", \"--flag\"]\ntimeout_seconds = {timeout}\n\
                 input_required = {input_required}\nparams = [\n{table}]\n\n"
            );
            GeneratedPipeline { toml, name, defaults }
        })
}

fn generated_config() -> impl Strategy<Value = Vec<GeneratedPipeline>> {
    (1usize..5).prop_flat_map(|count| (0..count).map(generated_pipeline).collect::<Vec<_>>())
}

/// Patterns with an oracle that does not use regexes: literal alternatives, or a class repeated.
#[derive(Debug, Clone)]
enum SimplePattern {
    Alternatives(Vec<String>),
    Repeat { min: usize, max: usize },
}

impl SimplePattern {
    fn text(&self) -> String {
        match self {
            SimplePattern::Alternatives(words) => words.join("|"),
            SimplePattern::Repeat { min, max } => format!("[a-c]{{{min},{max}}}"),
        }
    }

    fn accepts(&self, value: &str) -> bool {
        match self {
            SimplePattern::Alternatives(words) => words.iter().any(|word| word == value),
            SimplePattern::Repeat { min, max } => {
                value.chars().all(|c| ('a'..='c').contains(&c))
                    && (*min..=*max).contains(&value.chars().count())
            }
        }
    }
}

fn simple_pattern() -> impl Strategy<Value = SimplePattern> {
    prop_oneof![
        proptest::collection::vec("[a-c]{1,3}", 1..4).prop_map(SimplePattern::Alternatives),
        (0usize..3, 0usize..3).prop_map(|(min, extra)| SimplePattern::Repeat {
            min,
            max: min + extra
        }),
    ]
}

fn spec_with(pipeline: &str, params: &[(&str, &str)]) -> JobSpec {
    JobSpec {
        pipeline: pipeline.to_owned(),
        params: params
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect(),
        input_path: "/in.mp4".to_owned(),
        ..JobSpec::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn config_parser_never_panics_and_errors_have_a_position(
        text in prop_oneof![any::<String>(), config_like_text()]
    ) {
        if let Err(err) = Pipelines::parse(&text, "fuzz.toml") {
            prop_assert!(err.line >= 1 && err.column >= 1, "{err} for {text:?}");
            prop_assert_eq!(&err.path, "fuzz.toml");
            prop_assert!(!err.reason.is_empty());
            let lines = text.split('\n').count();
            prop_assert!(err.line <= lines.max(1), "{err} is past the end of {text:?}");
        }
    }

    #[test]
    fn generated_configs_parse_and_validate(pipelines in generated_config()) {
        let text: String = pipelines.iter().map(|pipeline| pipeline.toml.as_str()).collect();
        let parsed = Pipelines::parse(&text, "generated.toml")
            .map_err(|err| TestCaseError::fail(format!("{err}\n{text}")))?;
        prop_assert_eq!(parsed.iter().count(), pipelines.len());
        for pipeline in &pipelines {
            let valid = parsed
                .validate(&spec_with(&pipeline.name, &[]))
                .map_err(|err| TestCaseError::fail(format!("{err}\n{text}")))?;
            prop_assert_eq!(&valid.params, &pipeline.defaults);
            prop_assert_eq!(valid.max_attempts, 1);
        }
    }

    #[test]
    fn a_pattern_constrains_the_whole_value(
        pattern in simple_pattern(),
        anchored in any::<bool>(),
        value in "[a-d|]{0,5}",
    ) {
        let written = if anchored { format!("^{}$", pattern.text()) } else { pattern.text() };
        let text = format!(
            "[[pipeline]]\nname = \"p\"\ncommand = [\"x\"]\nparams = [ {{ name = \"v\", pattern = \"{written}\" }} ]\n"
        );
        let pipelines = Pipelines::parse(&text, "p.toml").unwrap();
        let result = pipelines.validate(&spec_with("p", &[("v", &value)]));
        prop_assert_eq!(
            result.is_ok(),
            pattern.accepts(&value),
            "pattern {} value {:?}: {:?}", written, value, result
        );
        if let Err(err) = result {
            prop_assert!(err.to_string().starts_with("spec.params.v: "), "{}", err);
        }
    }
}

// === output names ===

fn name_like_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[./\\\\a\\x00 ]{0,4}",
        "[a-z.]{0,3}(/|\\\\|\\x00)?[a-z.]{0,3}",
        "\\PC{250,260}",
        Just("..".to_owned()),
        Just(".".to_owned()),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn accepted_output_names_stay_in_their_directory(name in name_like_text()) {
        let Ok(()) = validate_output_name(&name, "name") else {
            return Ok(());
        };
        prop_assert!(!name.contains('/') && !name.contains('\0'), "{name:?}");
        prop_assert!(name != ".." && name != "." && !name.is_empty(), "{name:?}");
        let dir = tempfile::tempdir().unwrap();
        let joined = dir.path().join(&name);
        prop_assert_eq!(joined.parent(), Some(dir.path()), "{:?} escapes", name);
        let components: Vec<Component<'_>> = Path::new(&name).components().collect();
        prop_assert_eq!(components.len(), 1, "{:?} is not one component", name);
        prop_assert!(matches!(components[0], Component::Normal(part) if part == name.as_str()));
        // The OS takes it as one file in the directory, named exactly so.
        std::fs::write(&joined, b"x").map_err(|err| TestCaseError::fail(format!("{name:?}: {err}")))?;
        let listed: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        prop_assert_eq!(listed.len(), 1);
        prop_assert_eq!(listed[0].to_str(), Some(name.as_str()));
    }
}

// === the job state machine ===

const POLICY: Policy = Policy {
    retain: Duration::from_secs(3600),
};
const NODES: [&str; 2] = ["n1", "n2"];

/// An input with its choices left abstract; attempts are picked relative to the job's.
#[derive(Debug, Clone)]
enum Step {
    Assign(usize),
    StartFailed {
        attempt: i64,
        requeue: bool,
    },
    Report {
        node: usize,
        attempt: i64,
        state: usize,
        progress: u32,
    },
    Cancel,
    Retry,
    Reachable {
        node: usize,
        reachable: bool,
    },
    Lost(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0usize..2).prop_map(Step::Assign),
        1 => (-1i64..=1, any::<bool>()).prop_map(|(attempt, requeue)| Step::StartFailed { attempt, requeue }),
        6 => (0usize..2, -1i64..=1, 0usize..6, 0u32..150).prop_map(|(node, attempt, state, progress)| Step::Report { node, attempt, state, progress }),
        1 => Just(Step::Cancel),
        1 => Just(Step::Retry),
        1 => (0usize..2, any::<bool>()).prop_map(|(node, reachable)| Step::Reachable { node, reachable }),
        1 => (0usize..2).prop_map(Step::Lost),
    ]
}

fn report(attempt: u32, state: JobState, progress: u32) -> AttemptReport {
    AttemptReport {
        attempt,
        state,
        progress,
        stage: format!("stage {progress}"),
        message: String::new(),
        error: if state == JobState::Failed {
            "exit code 1".to_owned()
        } else {
            String::new()
        },
        exit_code: None,
        outputs: if state == JobState::Succeeded {
            vec![OutputFile {
                name: "out".into(),
                size: 1,
                sha256: "00".into(),
            }]
        } else {
            Vec::new()
        },
        started_at: None,
        finished_at: None,
        fps: 0.0,
        eta_seconds: 0.0,
        transfer: None,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_state_machine_keeps_its_invariants(
        max_attempts in 0u32..4,
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let spec = JobSpec { pipeline: "p".into(), max_attempts, ..JobSpec::default() };
        let mut job = Job::new(JobId::new(t0), spec, String::new(), t0);
        let mut retries = 0u32;
        for (index, step) in steps.into_iter().enumerate() {
            let now = t0 + Duration::from_secs(index as u64 + 1);
            let relative = |offset: i64| (i64::from(job.attempt) + offset).max(0) as u32;
            let built_report;
            let input = match &step {
                Step::Assign(node) => Input::Assign { node: NODES[*node] },
                Step::StartFailed { attempt, requeue } => Input::StartFailed {
                    attempt: relative(*attempt),
                    error: "refused".into(),
                    requeue: *requeue,
                },
                Step::Report { node, attempt, state, progress } => {
                    built_report = report(relative(*attempt), JobState::ALL[*state], *progress);
                    Input::Report { node: NODES[*node], report: &built_report }
                }
                Step::Cancel => Input::Cancel,
                Step::Retry => Input::Retry,
                Step::Reachable { node, reachable } => {
                    Input::NodeReachable { node: NODES[*node], reachable: *reachable }
                }
                Step::Lost(node) => Input::NodeLost { node: NODES[*node], reason: "node lost" },
            };
            let foreign_report = match &input {
                Input::Report { node, report } => !job.is_current_attempt(node, report.attempt),
                _ => false,
            };
            let is_retry = matches!(input, Input::Retry);
            let before = job.clone();
            let Ok(outcome) = apply(&before, input, now, &POLICY) else {
                continue;
            };
            let Some(after) = outcome.job else {
                continue;
            };
            prop_assert_eq!(after.version, before.version + 1, "{:?}", step);
            prop_assert!(!foreign_report, "a report of another attempt changed the job: {:?}", step);
            if before.state.is_terminal() {
                prop_assert!(is_retry, "terminal {} changed by {:?}", before.state, step);
                prop_assert_eq!(after.state, JobState::Queued);
                retries += 1;
            }
            prop_assert!(after.progress <= 100);
            prop_assert!(!after.state.holds_slot() || after.node_id.is_some(), "{:?}", after);
            prop_assert!(
                after.attempt <= max_attempts.max(1) + retries,
                "attempt {} with max_attempts {max_attempts} and {retries} retries after {:?}",
                after.attempt, step
            );
            job = after;
        }
    }
}
