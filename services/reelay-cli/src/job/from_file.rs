//! `reelay job submit --from FILE`: one job per line of a JSON Lines file (`-` for stdin).
//!
//! A line is an object with the fields of a job spec, as in `-o json` (`pipeline`, `params`,
//! `input_path`, `input_uri`, `node_id`, `priority`, `max_attempts`, `timeout_seconds`, `labels`)
//! and an optional `request_id`. `input_uri` names an input in the artifact store (`upload:<id>`
//! as `reelay job upload` prints it, or `s3://BUCKET/KEY`). What a line leaves out comes from the command line (`PIPELINE`,
//! `--param`, `--label`, …); what it gives wins. Blank lines are skipped. Every line is read
//! and checked before anything is sent: a bad line is reported with its number and nothing is
//! submitted.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use reelay_proto::v1;
use serde::Deserialize;

use super::batch::Item;
use crate::args;

/// One line as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    pipeline: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, Scalar>,
    input_path: Option<String>,
    input_uri: Option<String>,
    node_id: Option<String>,
    priority: Option<i32>,
    max_attempts: Option<u32>,
    timeout_seconds: Option<u32>,
    #[serde(default)]
    labels: BTreeMap<String, Scalar>,
    request_id: Option<String>,
}

/// A parameter or label value: a string, or a number or boolean taken as its text.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
}

impl Scalar {
    fn into_text(self) -> String {
        match self {
            Scalar::Text(text) => text,
            Scalar::Number(number) => number.to_string(),
            Scalar::Bool(value) => value.to_string(),
        }
    }
}

/// Reads the jobs of `path` (`-`: stdin); `defaults` is the spec the command line gives, `cwd`
/// makes relative input paths absolute. Every bad line is reported (up to a few), or none.
pub(crate) fn read(path: &Path, defaults: &v1::JobSpec, cwd: &Path) -> anyhow::Result<Vec<Item>> {
    let name = if path == Path::new("-") {
        "stdin".to_owned()
    } else {
        path.display().to_string()
    };
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(path)
            .map_err(|err| anyhow::anyhow!("--from: cannot read {name}: {err}"))?;
        Box::new(std::io::BufReader::new(file))
    };
    parse(reader, &name, defaults, cwd)
}

/// Bad lines reported at most before the rest are only counted.
const SHOWN_ERRORS: usize = 10;

fn parse(
    reader: impl BufRead,
    name: &str,
    defaults: &v1::JobSpec,
    cwd: &Path,
) -> anyhow::Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|err| anyhow::anyhow!("--from: reading {name}: {err}"))?;
        if line.trim().is_empty() {
            continue;
        }
        match item(&line, defaults, cwd) {
            Ok(mut item) => {
                item.source = format!("{name} line {number}");
                items.push(item);
            }
            Err(reason) => errors.push(format!("{name} line {number}: {reason}")),
        }
    }
    if !errors.is_empty() {
        let more = errors.len().saturating_sub(SHOWN_ERRORS);
        let mut message = errors
            .iter()
            .take(SHOWN_ERRORS)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  ");
        if more > 0 {
            message.push_str(&format!("\n  … and {more} more bad lines"));
        }
        anyhow::bail!(
            "--from: {} bad line(s); nothing was submitted:\n  {message}",
            errors.len()
        );
    }
    if items.is_empty() {
        anyhow::bail!("--from: {name} has no jobs (expected one JSON object per line)");
    }
    Ok(items)
}

/// One line as an item of the batch.
fn item(text: &str, defaults: &v1::JobSpec, cwd: &Path) -> Result<Item, String> {
    let line: Line = serde_json::from_str(text).map_err(|err| {
        format!("{err} (a line is one JSON object such as {{\"pipeline\": \"count\", \"params\": {{\"steps\": \"5\"}}}})")
    })?;
    let mut spec = defaults.clone();
    if let Some(pipeline) = line.pipeline {
        spec.pipeline = pipeline;
    }
    if spec.pipeline.is_empty() {
        return Err(
            "no pipeline: give \"pipeline\" on the line, or PIPELINE on the command line".into(),
        );
    }
    for (key, value) in line.params {
        spec.params.insert(key, value.into_text());
    }
    for (key, value) in line.labels {
        spec.labels.insert(key, value.into_text());
    }
    if let Some(input) = line.input_path {
        spec.input_path = args::absolute_input(Path::new(&input), cwd)?;
    }
    if let Some(uri) = line.input_uri {
        spec.input_uri = uri;
    }
    if let Some(node) = line.node_id {
        spec.node_id = node;
    }
    if let Some(priority) = line.priority {
        spec.priority = priority;
    }
    if let Some(attempts) = line.max_attempts {
        spec.max_attempts = attempts;
    }
    if let Some(timeout) = line.timeout_seconds {
        spec.timeout_seconds = timeout;
    }
    Ok(Item {
        spec,
        request_id: line.request_id,
        source: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> v1::JobSpec {
        v1::JobSpec {
            pipeline: "count".into(),
            params: [("steps".to_owned(), "5".to_owned())].into(),
            priority: 3,
            ..Default::default()
        }
    }

    fn parse_text(text: &str) -> anyhow::Result<Vec<Item>> {
        parse(
            text.as_bytes(),
            "jobs.jsonl",
            &defaults(),
            Path::new("/data"),
        )
    }

    #[test]
    fn lines_override_the_command_line() {
        let items = parse_text(
            "{\"params\": {\"steps\": 7, \"fast\": true}, \"input_path\": \"a.mov\"}\n\
             \n\
             {\"pipeline\": \"transcode\", \"priority\": -1, \"request_id\": \"r2\", \
             \"input_uri\": \"upload:0198aaaa-0000-8000-8000-000000000001\"}\n",
        )
        .unwrap();
        assert_eq!(items.len(), 2, "the blank line is skipped");
        let first = &items[0].spec;
        assert_eq!(first.pipeline, "count");
        assert_eq!(first.params["steps"], "7");
        assert_eq!(first.params["fast"], "true");
        assert_eq!(first.input_path, "/data/a.mov");
        assert_eq!(first.input_uri, "");
        assert_eq!(first.priority, 3);
        assert_eq!(items[0].source, "jobs.jsonl line 1");
        assert_eq!(items[0].request_id, None);
        let second = &items[1].spec;
        assert_eq!(second.pipeline, "transcode");
        assert_eq!(second.params["steps"], "5");
        assert_eq!(second.priority, -1);
        assert_eq!(
            second.input_uri,
            "upload:0198aaaa-0000-8000-8000-000000000001"
        );
        assert_eq!(second.input_path, "");
        assert_eq!(items[1].request_id.as_deref(), Some("r2"));
        assert_eq!(items[1].source, "jobs.jsonl line 3");
    }

    #[test]
    fn bad_lines_are_reported_by_number_and_nothing_is_kept() {
        let err = parse_text(
            "{\"params\": {}}\n{\"pipline\": \"count\"}\nnot json\n{\"priority\": \"high\"}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("3 bad line(s); nothing was submitted"),
            "{err}"
        );
        assert!(
            err.contains("jobs.jsonl line 2: unknown field `pipline`"),
            "{err}"
        );
        assert!(err.contains("jobs.jsonl line 3: expected"), "{err}");
        assert!(err.contains("jobs.jsonl line 4: invalid type"), "{err}");
        assert!(!err.contains("line 1:"), "{err}");
    }

    #[test]
    fn a_line_needs_a_pipeline_from_somewhere() {
        let err = parse(
            "{\"params\": {}}\n".as_bytes(),
            "stdin",
            &v1::JobSpec::default(),
            Path::new("/"),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("stdin line 1: no pipeline"),
            "{err}"
        );
        let empty = parse_text("\n\n").unwrap_err();
        assert!(empty.to_string().contains("has no jobs"), "{empty}");
    }
}
