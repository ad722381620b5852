//! The pipeline config file and the validation of job specs against it.
//!
//! Jobs name a pipeline; nobody can run an arbitrary command through the API. The file is TOML:
//!
//! ```toml
//! [[pipeline]]
//! name = "transcode"
//! description = "H.264 transcode with a thumbnail"
//! image = "reelay/pipeline:latest"          # docker executor
//! command = ["reelay-transcode"]             # argv, never a shell string
//! timeout_seconds = 3600
//! resources = { cpus = 2.0, memory_mb = 2048 }
//! params = [ { name = "height", default = "720", pattern = "^[0-9]{3,4}$" } ]
//! ```
//!
//! Errors name the file, line and column and say what to change.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, excerpt, quote};
use crate::input::InputUri;
use crate::job::JobSpec;
use crate::names::{validate_labels, validate_node_id};

/// Longest parameter value and input path accepted.
const MAX_VALUE_LEN: usize = 4096;
/// Upper bound of `max_attempts`.
pub const MAX_ATTEMPTS: u32 = 100;
/// Upper bound of `timeout_seconds` (7 days).
pub const MAX_TIMEOUT_SECONDS: u32 = 7 * 24 * 3600;

/// When the docker executor pulls a pipeline's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Never pull: an absent image fails the job with "image not found".
    Never,
    /// Pull when the image is not on the node.
    #[default]
    IfMissing,
    /// Pull before every job.
    Always,
}

/// CPU and memory limits of a pipeline's container.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub cpus: Option<f64>,
    pub memory_mb: Option<u64>,
}

/// A parameter a job may (or must) set.
#[derive(Debug, Clone)]
pub struct Param {
    /// Lowercase `[a-z0-9_]`; the process sees it as `REELAY_PARAM_<NAME>`.
    pub name: String,
    pub description: String,
    pub default: Option<String>,
    pub pattern: Option<Regex>,
    pub required: bool,
}

/// One `[[pipeline]]` of the config.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub description: String,
    /// Image for the docker executor.
    pub image: Option<String>,
    /// argv of the pipeline program; never run through a shell by Reelay.
    pub command: Vec<String>,
    /// Default timeout of its jobs, 0 for none.
    pub timeout_seconds: u32,
    pub resources: Resources,
    pub params: Vec<Param>,
    pub pull: PullPolicy,
    /// Docker network mode; `none` unless the pipeline needs a network.
    pub network: String,
    /// Extra environment for the pipeline program.
    pub env: BTreeMap<String, String>,
    /// Seconds between SIGTERM and SIGKILL when a job is stopped.
    pub grace_seconds: u32,
    /// Whether jobs must give an input; `false` unless the config says `input_required = true`.
    pub input_required: bool,
    /// Container user (`uid:gid` or name); default `1000:1000` when the image has it, else the image's.
    pub user: Option<String>,
    /// Files a successful run must leave in `REELAY_OUTPUT_DIR` (`outputs = ["*.mp4", "thumb.jpg"]`):
    /// a run that exits 0 without a file matching each pattern fails, so outputs written elsewhere
    /// are never reported as a success. Empty: any outputs, none included.
    pub outputs: Vec<OutputPattern>,
    /// Directory of the config file; a relative program path in `command` (`./bin/x`) is taken
    /// from it by the process executor. `None` for a config that is not a file.
    pub base_dir: Option<PathBuf>,
    /// A pipeline made of steps: a job of it runs nowhere itself, it becomes a split job, a job
    /// per piece and a join job, of the pipelines named here. `command` is then empty.
    pub steps: Option<PipelineSteps>,
}

/// The pipelines of a job made of steps (`steps = { split = "…", map = "…", join = "…" }`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSteps {
    /// Cuts the input into pieces: outputs `manifest.json` and the pieces it lists.
    pub split: String,
    /// Runs once per piece.
    pub map: String,
    /// Gets the manifest, the map jobs' outputs and the split's other outputs; its outputs are
    /// the job's.
    pub join: String,
}

impl PipelineSteps {
    /// The pipeline of `step`.
    pub fn pipeline(&self, step: crate::job::Step) -> &str {
        match step {
            crate::job::Step::Split => &self.split,
            crate::job::Step::Map => &self.map,
            crate::job::Step::Join => &self.join,
        }
    }
}

/// A file name pattern of a pipeline's `outputs`: `*` matches any run of characters, `?` one.
#[derive(Debug, Clone)]
pub struct OutputPattern {
    text: String,
    regex: Regex,
}

impl OutputPattern {
    /// Parses a pattern; names are plain file names, so `/` is refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.contains('/') || text.contains('\0') {
            return Err(format!(
                "output pattern {text:?}: give a file name, with * and ? as wildcards (no '/')"
            ));
        }
        let mut anchored = String::from("^");
        for c in text.chars() {
            match c {
                '*' => anchored.push_str(".*"),
                '?' => anchored.push('.'),
                c => anchored.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
            }
        }
        anchored.push('$');
        let regex =
            Regex::new(&anchored).map_err(|err| format!("output pattern {text:?}: {err}"))?;
        Ok(OutputPattern {
            text: text.to_owned(),
            regex,
        })
    }

    pub fn matches(&self, name: &str) -> bool {
        self.regex.is_match(name)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// All pipelines of a config file, by name.
#[derive(Debug, Clone, Default)]
pub struct Pipelines {
    by_name: BTreeMap<String, Pipeline>,
    /// The file they came from, for messages.
    pub source: Option<PathBuf>,
}

/// A config file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}:{column}: {reason}")]
pub struct ConfigError {
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub reason: String,
}

// === raw file format ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    pipeline: Vec<Spanned<RawPipeline>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    image: Option<String>,
    command: Option<Spanned<Vec<String>>>,
    steps: Option<Spanned<PipelineSteps>>,
    #[serde(default)]
    timeout_seconds: u32,
    resources: Option<Spanned<Resources>>,
    #[serde(default)]
    params: Vec<Spanned<RawParam>>,
    #[serde(default)]
    pull: PullPolicy,
    network: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    grace_seconds: Option<u32>,
    input_required: Option<bool>,
    user: Option<String>,
    outputs: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    default: Option<String>,
    pattern: Option<Spanned<String>>,
    required: Option<bool>,
}

impl Pipelines {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            path: path.display().to_string(),
            line: 0,
            column: 0,
            reason: format!("cannot read the config file: {err}"),
        })?;
        let mut pipelines = Self::parse(&text, &path.display().to_string())?;
        let base_dir = path.parent().map(Path::to_path_buf);
        for pipeline in pipelines.by_name.values_mut() {
            pipeline.base_dir.clone_from(&base_dir);
        }
        pipelines.source = Some(path.to_owned());
        Ok(pipelines)
    }

    /// Parses config text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let at = |span: Option<Range<usize>>, reason: String| {
            let (line, column) = span
                .map(|span| line_column(text, span.start))
                .unwrap_or((0, 0));
            ConfigError {
                path: origin.to_owned(),
                line,
                column,
                reason,
            }
        };
        let raw: RawConfig =
            toml::from_str(text).map_err(|err| at(err.span(), err.message().trim().to_owned()))?;
        let mut by_name = BTreeMap::new();
        for raw_pipeline in raw.pipeline {
            let span = raw_pipeline.span();
            let pipeline = build_pipeline(raw_pipeline.into_inner())
                .map_err(|(span, reason)| at(Some(span), reason))?;
            if by_name.contains_key(&pipeline.name) {
                return Err(at(
                    Some(span),
                    format!("pipeline {:?} is defined twice", pipeline.name),
                ));
            }
            by_name.insert(pipeline.name.clone(), (pipeline, span));
        }
        // Steps name pipelines of their own, which run commands.
        for (pipeline, span) in by_name.values() {
            let Some(steps) = &pipeline.steps else {
                continue;
            };
            for step in [
                crate::job::Step::Split,
                crate::job::Step::Map,
                crate::job::Step::Join,
            ] {
                let named = steps.pipeline(step);
                let problem = match by_name.get(named) {
                    None => Some("is not defined in this file"),
                    Some((other, _)) if other.steps.is_some() => {
                        Some("is made of steps itself; a step runs a command")
                    }
                    Some(_) => None,
                };
                if let Some(problem) = problem {
                    return Err(at(
                        Some(span.clone()),
                        format!(
                            "pipeline {:?}: its {} step names pipeline {named:?}, which {problem}",
                            pipeline.name,
                            step.name()
                        ),
                    ));
                }
            }
        }
        Ok(Pipelines {
            by_name: by_name
                .into_iter()
                .map(|(name, (pipeline, _))| (name, pipeline))
                .collect(),
            source: None,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Pipeline> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Pipeline> {
        self.by_name.values()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    fn names(&self) -> String {
        if self.by_name.is_empty() {
            return "none are configured (see --config)".to_owned();
        }
        self.by_name
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks a job spec from a client and fills in defaults (params, attempts). Errors name the field.
    pub fn validate(&self, spec: &JobSpec) -> Result<JobSpec, Error> {
        if spec.pipeline.is_empty() {
            return Err(Error::invalid(
                "spec.pipeline",
                format!("a pipeline is required; known: {}", self.names()),
            ));
        }
        let Some(pipeline) = self.get(&spec.pipeline) else {
            return Err(Error::invalid(
                "spec.pipeline",
                format!(
                    "unknown pipeline {}; known: {}",
                    quote(&spec.pipeline),
                    self.names()
                ),
            ));
        };
        let mut valid = spec.clone();
        valid.params = pipeline.validate_params(&spec.params)?;
        validate_input(spec, pipeline)?;
        if let Some(node_id) = &spec.node_id {
            validate_node_id(node_id, "spec.node_id")?;
        }
        valid.max_attempts = match spec.max_attempts {
            0 => 1,
            n if n > MAX_ATTEMPTS => {
                return Err(Error::invalid(
                    "spec.max_attempts",
                    format!("{n} is more than {MAX_ATTEMPTS}"),
                ));
            }
            n => n,
        };
        if spec.timeout_seconds > MAX_TIMEOUT_SECONDS {
            return Err(Error::invalid(
                "spec.timeout_seconds",
                format!(
                    "{} is more than 7 days ({MAX_TIMEOUT_SECONDS})",
                    spec.timeout_seconds
                ),
            ));
        }
        validate_labels(&spec.labels, "spec.labels")?;
        Ok(valid)
    }
}

impl Pipeline {
    /// The declared output patterns that no file of `names` matches.
    pub fn missing_outputs<'a>(&'a self, names: &[&str]) -> Vec<&'a str> {
        self.outputs
            .iter()
            .filter(|pattern| !names.iter().any(|name| pattern.matches(name)))
            .map(OutputPattern::as_str)
            .collect()
    }

    /// The timeout of a job of this pipeline: the job's own, else the pipeline's; 0 for none.
    pub fn effective_timeout(&self, spec: &JobSpec) -> u32 {
        if spec.timeout_seconds > 0 {
            spec.timeout_seconds
        } else {
            self.timeout_seconds
        }
    }

    /// Checks the given params and returns them with defaults filled in.
    pub fn validate_params(
        &self,
        given: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, Error> {
        for name in given.keys() {
            if !self.params.iter().any(|param| &param.name == name) {
                let known: Vec<&str> = self
                    .params
                    .iter()
                    .map(|param| param.name.as_str())
                    .collect();
                let known = if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                };
                return Err(Error::invalid(
                    format!("spec.params.{}", excerpt(name)),
                    format!(
                        "pipeline {:?} has no parameter {}; its parameters: {known}",
                        self.name,
                        quote(name)
                    ),
                ));
            }
        }
        let mut params = BTreeMap::new();
        for param in &self.params {
            let field = format!("spec.params.{}", param.name);
            let value = match given.get(&param.name).or(param.default.as_ref()) {
                Some(value) => value,
                None if param.required => {
                    return Err(Error::invalid(
                        field,
                        format!("required by pipeline {:?}", self.name),
                    ));
                }
                None => continue,
            };
            if value.len() > MAX_VALUE_LEN || value.contains('\0') {
                return Err(Error::invalid(
                    field,
                    "values are at most 4096 bytes, without NUL",
                ));
            }
            if let Some(pattern) = &param.pattern
                && !pattern.is_match(value)
            {
                return Err(Error::invalid(
                    field,
                    format!(
                        "{} does not match the pattern {}",
                        quote(value),
                        pattern.as_str()
                    ),
                ));
            }
            params.insert(param.name.clone(), value.clone());
        }
        Ok(params)
    }
}

/// A job gives at most one input: a file on the worker (`input_path`) or one in the artifact store
/// (`input_uri`); it must give one when its pipeline says `input_required = true`.
fn validate_input(spec: &JobSpec, pipeline: &Pipeline) -> Result<(), Error> {
    match (spec.input_path.is_empty(), spec.input_uri.is_empty()) {
        (true, true) if pipeline.input_required => Err(Error::invalid(
            "spec.input_uri",
            format!(
                "pipeline {:?} needs an input file (its config says input_required = true): \
                 upload one (`reelay job submit {} --upload FILE`, input_uri = upload:<id>) or \
                 name one (input_uri = s3://BUCKET/KEY, or input_path = a file on the worker)",
                pipeline.name, pipeline.name
            ),
        )),
        (true, true) => Ok(()),
        (false, false) => Err(Error::invalid(
            "spec.input_uri",
            "give input_uri or input_path, not both",
        )),
        (true, false) => InputUri::parse(&spec.input_uri, "spec.input_uri").map(drop),
        (false, true) => validate_input_path(&spec.input_path),
    }
}

fn validate_input_path(path: &str) -> Result<(), Error> {
    const FIELD: &str = "spec.input_path";
    if !path.starts_with('/') {
        return Err(Error::invalid(
            FIELD,
            format!(
                "{} is relative; give an absolute path on the worker",
                quote(path)
            ),
        ));
    }
    if path.len() > MAX_VALUE_LEN || path.contains('\0') {
        return Err(Error::invalid(
            FIELD,
            "paths are at most 4096 bytes, without NUL",
        ));
    }
    Ok(())
}

fn build_pipeline(raw: RawPipeline) -> Result<Pipeline, (Range<usize>, String)> {
    let name_span = raw.name.span();
    let name = raw.name.into_inner();
    if !is_identifier(&name, true) {
        return Err((
            name_span,
            format!("pipeline name {name:?}: use letters, digits, '-' and '_'"),
        ));
    }
    let (command, steps) = match (raw.command, raw.steps) {
        (Some(command), None) => {
            let command_span = command.span();
            let command = command.into_inner();
            if command.first().is_none_or(|program| program.is_empty()) {
                return Err((
                    command_span,
                    format!("pipeline {name:?}: command needs at least the program to run"),
                ));
            }
            (command, None)
        }
        (None, Some(steps)) => (Vec::new(), Some(steps)),
        (Some(command), Some(_)) => {
            return Err((
                command.span(),
                format!("pipeline {name:?}: give a command, or steps (split, map, join), not both"),
            ));
        }
        (None, None) => {
            return Err((
                name_span,
                format!(
                    "pipeline {name:?}: a command is required (the program to run, as argv), or \
                     steps = {{ split = …, map = …, join = … }}"
                ),
            ));
        }
    };
    let steps = steps.map(Spanned::into_inner);
    let resources = match raw.resources {
        None => Resources::default(),
        Some(spanned) => {
            let span = spanned.span();
            let resources = spanned.into_inner();
            if resources
                .cpus
                .is_some_and(|cpus| cpus <= 0.0 || !cpus.is_finite())
                || resources.memory_mb == Some(0)
            {
                return Err((
                    span,
                    format!("pipeline {name:?}: cpus and memory_mb must be more than 0"),
                ));
            }
            resources
        }
    };
    let mut seen = BTreeSet::new();
    let mut params = Vec::new();
    for raw_param in raw.params {
        let param_span = raw_param.span();
        let param = build_param(raw_param.into_inner(), &name)?;
        if !seen.insert(param.name.clone()) {
            return Err((
                param_span,
                format!(
                    "pipeline {name:?}: parameter {:?} is defined twice",
                    param.name
                ),
            ));
        }
        params.push(param);
    }
    let outputs = match raw.outputs {
        None => Vec::new(),
        Some(spanned) => {
            let span = spanned.span();
            spanned
                .into_inner()
                .iter()
                .map(|text| OutputPattern::parse(text))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|reason| (span, format!("pipeline {name:?}: {reason}")))?
        }
    };
    Ok(Pipeline {
        description: raw.description,
        image: raw.image.filter(|image| !image.is_empty()),
        command,
        timeout_seconds: raw.timeout_seconds,
        resources,
        params,
        pull: raw.pull,
        network: raw.network.unwrap_or_else(|| "none".to_owned()),
        env: raw.env,
        grace_seconds: raw.grace_seconds.unwrap_or(10),
        input_required: raw.input_required.unwrap_or(false),
        user: raw.user,
        outputs,
        base_dir: None,
        steps,
        name,
    })
}

fn build_param(raw: RawParam, pipeline: &str) -> Result<Param, (Range<usize>, String)> {
    let name_span = raw.name.span();
    let name = raw.name.into_inner();
    if !is_identifier(&name, false) {
        return Err((
            name_span,
            format!(
                "pipeline {pipeline:?}: parameter name {name:?}: use lowercase letters, digits and '_'"
            ),
        ));
    }
    let pattern = match raw.pattern {
        None => None,
        Some(spanned) => {
            let span = spanned.span();
            let text = spanned.into_inner();
            // A pattern constrains the whole value.
            let anchored = format!("^(?:{text})$");
            Some(Regex::new(&anchored).map_err(|err| {
                (
                    span,
                    format!(
                        "pipeline {pipeline:?}: parameter {name:?}: bad pattern {text:?}: {err}"
                    ),
                )
            })?)
        }
    };
    if let (Some(pattern), Some(default)) = (&pattern, &raw.default)
        && !pattern.is_match(default)
    {
        return Err((
            name_span,
            format!("pipeline {pipeline:?}: default {default:?} of {name:?} fails its own pattern"),
        ));
    }
    Ok(Param {
        required: raw.required.unwrap_or(raw.default.is_none()),
        description: raw.description,
        default: raw.default,
        pattern,
        name,
    })
}

fn is_identifier(text: &str, allow_dash_and_upper: bool) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text.chars().all(|c| {
            c.is_ascii_digit()
                || c == '_'
                || c.is_ascii_lowercase()
                || (allow_dash_and_upper && (c == '-' || c.is_ascii_uppercase()))
        })
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |newline| newline + 1) + 1;
    (line, column)
}

impl fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PullPolicy::Never => "never",
            PullPolicy::IfMissing => "if-missing",
            PullPolicy::Always => "always",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[[pipeline]]
name = "transcode"
description = "H.264 transcode"
image = "reelay/pipeline:latest"
command = ["reelay-transcode"]
timeout_seconds = 3600
resources = { cpus = 2.0, memory_mb = 2048 }
input_required = true
outputs = ["final_*.mp4", "thumb?.jpg"]
params = [ { name = "height", default = "720", pattern = "^[0-9]{3,4}$" },
           { name = "label" } ]

[[pipeline]]
name = "noinput"
command = ["true"]
input_required = false
"#;

    fn spec(pipeline: &str, params: &[(&str, &str)], input: &str) -> JobSpec {
        JobSpec {
            pipeline: pipeline.into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            input_path: input.into(),
            ..JobSpec::default()
        }
    }

    fn field_of(err: Error) -> String {
        match err {
            Error::InvalidArgument { field, .. } => field,
            other => panic!("expected invalid argument, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_design_example() {
        let pipelines = Pipelines::parse(CONFIG, "test.toml").unwrap();
        let transcode = pipelines.get("transcode").unwrap();
        assert_eq!(transcode.command, ["reelay-transcode"]);
        assert_eq!(transcode.resources.memory_mb, Some(2048));
        assert_eq!(transcode.network, "none");
        assert!(transcode.params[0].pattern.is_some());
        assert!(!transcode.params[0].required);
        assert!(transcode.params[1].required);
        assert!(!pipelines.get("noinput").unwrap().input_required);
    }

    #[test]
    fn input_is_optional_and_outputs_are_any_unless_declared() {
        let pipelines =
            Pipelines::parse("[[pipeline]]\nname = \"plain\"\ncommand = [\"x\"]\n", "t").unwrap();
        let plain = pipelines.get("plain").unwrap();
        assert!(!plain.input_required);
        pipelines.validate(&spec("plain", &[], "")).unwrap();
        assert!(plain.missing_outputs(&[]).is_empty());
        assert_eq!(plain.base_dir, None);

        let pipelines = Pipelines::parse(CONFIG, "test.toml").unwrap();
        let transcode = pipelines.get("transcode").unwrap();
        assert_eq!(
            transcode.missing_outputs(&["final_a.b.mp4", "thumb1.jpg"]),
            Vec::<&str>::new()
        );
        assert_eq!(
            transcode.missing_outputs(&["final_a.mkv", "thumb12.jpg", "x"]),
            ["final_*.mp4", "thumb?.jpg"]
        );
        // Regex characters in a pattern are literal.
        let dotted = OutputPattern::parse("a.b").unwrap();
        assert!(dotted.matches("a.b") && !dotted.matches("axb"));
        for bad in ["", "dir/x.mp4"] {
            assert!(OutputPattern::parse(bad).is_err(), "{bad:?}");
        }
        let err = Pipelines::parse(
            "[[pipeline]]\nname = \"a\"\ncommand = [\"x\"]\noutputs = [\"out/*.mp4\"]\n",
            "p.toml",
        )
        .unwrap_err();
        assert_eq!(err.line, 4, "{err}");
    }

    #[test]
    fn a_loaded_config_knows_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipelines.toml");
        std::fs::write(
            &path,
            "[[pipeline]]\nname = \"a\"\ncommand = [\"./bin/a\"]\n",
        )
        .unwrap();
        let pipelines = Pipelines::load(&path).unwrap();
        assert_eq!(
            pipelines.get("a").unwrap().base_dir.as_deref(),
            Some(dir.path())
        );
    }

    #[test]
    fn fills_defaults_and_checks_params() {
        let pipelines = Pipelines::parse(CONFIG, "test.toml").unwrap();
        let valid = pipelines
            .validate(&spec("transcode", &[("label", "x")], "/in.mp4"))
            .unwrap();
        assert_eq!(valid.params["height"], "720");
        assert_eq!(valid.max_attempts, 1);

        let err = pipelines
            .validate(&spec("transcode", &[], "/in.mp4"))
            .unwrap_err();
        assert_eq!(field_of(err), "spec.params.label");
        let err = pipelines
            .validate(&spec(
                "transcode",
                &[("label", "x"), ("height", "12a")],
                "/in.mp4",
            ))
            .unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
        assert_eq!(field_of(err), "spec.params.height");
        // The pattern applies to the whole value even without anchors in the config.
        let err = pipelines
            .validate(&spec(
                "transcode",
                &[("label", "x"), ("height", "720; rm")],
                "/a",
            ))
            .unwrap_err();
        assert_eq!(field_of(err), "spec.params.height");
        let err = pipelines
            .validate(&spec(
                "transcode",
                &[("label", "x"), ("nope", "1")],
                "/in.mp4",
            ))
            .unwrap_err();
        assert_eq!(field_of(err), "spec.params.nope");
    }

    #[test]
    fn checks_pipeline_and_input_path() {
        let pipelines = Pipelines::parse(CONFIG, "test.toml").unwrap();
        let err = pipelines
            .validate(&spec("nope", &[], "/in.mp4"))
            .unwrap_err();
        assert_eq!(field_of(err.clone()), "spec.pipeline");
        assert!(
            err.to_string().contains("transcode"),
            "lists the known pipelines: {err}"
        );
        assert_eq!(
            field_of(pipelines.validate(&spec("", &[], "/a")).unwrap_err()),
            "spec.pipeline"
        );
        let relative = pipelines
            .validate(&spec("transcode", &[("label", "x")], "in.mp4"))
            .unwrap_err();
        assert_eq!(field_of(relative), "spec.input_path");
        let missing = pipelines
            .validate(&spec("transcode", &[("label", "x")], ""))
            .unwrap_err();
        assert!(missing.to_string().contains("--upload"), "{missing}");
        assert_eq!(field_of(missing), "spec.input_uri");
        let mut both = spec("transcode", &[("label", "x")], "/in.mp4");
        both.input_uri = "s3://b/k.mp4".into();
        assert_eq!(
            field_of(pipelines.validate(&both).unwrap_err()),
            "spec.input_uri"
        );
        both.input_path.clear();
        pipelines.validate(&both).unwrap();
        both.input_uri = "upload:nope".into();
        assert_eq!(
            field_of(pipelines.validate(&both).unwrap_err()),
            "spec.input_uri"
        );
        pipelines.validate(&spec("noinput", &[], "")).unwrap();
    }

    #[test]
    fn checks_attempts_timeout_and_node() {
        let pipelines = Pipelines::parse(CONFIG, "t").unwrap();
        let mut s = spec("noinput", &[], "");
        s.max_attempts = 1000;
        assert_eq!(
            field_of(pipelines.validate(&s).unwrap_err()),
            "spec.max_attempts"
        );
        s.max_attempts = 3;
        s.timeout_seconds = u32::MAX;
        assert_eq!(
            field_of(pipelines.validate(&s).unwrap_err()),
            "spec.timeout_seconds"
        );
        s.timeout_seconds = 5;
        s.node_id = Some("bad node".into());
        assert_eq!(
            field_of(pipelines.validate(&s).unwrap_err()),
            "spec.node_id"
        );
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let err = Pipelines::parse("[[pipeline]]\nname = \"a\"\ncommand = [\"x\"\n", "bad.toml")
            .unwrap_err();
        assert_eq!(err.path, "bad.toml");
        assert!(err.line >= 3, "{err}");
        let err = Pipelines::parse(
            "[[pipeline]]\nname = \"a\"\ncommand = [\"x\"]\ncolour = 1\n",
            "c.toml",
        )
        .unwrap_err();
        assert_eq!(err.line, 4, "{err}");
        assert!(err.reason.contains("colour"), "{err}");
    }

    #[test]
    fn semantic_errors_point_at_their_line() {
        let text = "[[pipeline]]\nname = \"a\"\ncommand = [\"x\"]\nparams = [\n  { name = \"h\", pattern = \"([\" },\n]\n";
        let err = Pipelines::parse(text, "p.toml").unwrap_err();
        assert_eq!(err.line, 5, "{err}");
        assert!(err.reason.contains("bad pattern"), "{err}");
        let err =
            Pipelines::parse("[[pipeline]]\nname = \"a\"\ncommand = []\n", "p.toml").unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        let dup = "[[pipeline]]\nname = \"a\"\ncommand = [\"x\"]\n[[pipeline]]\nname = \"a\"\ncommand = [\"y\"]\n";
        assert!(
            Pipelines::parse(dup, "p")
                .unwrap_err()
                .reason
                .contains("twice")
        );
        let bad_default = "[[pipeline]]\nname = \"a\"\ncommand = [\"x\"]\nparams = [{ name = \"h\", default = \"x\", pattern = \"[0-9]+\" }]\n";
        assert!(
            Pipelines::parse(bad_default, "p")
                .unwrap_err()
                .reason
                .contains("own pattern")
        );
    }
}
