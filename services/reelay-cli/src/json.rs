//! `--output json`: the API's messages as JSON, written by hand (prost types do not derive serde).
//!
//! Field names are the proto field names (snake_case); enums are their proto names
//! (`"JOB_STATE_RUNNING"`); timestamps are RFC 3339 strings in UTC, `null` when unset; maps are
//! objects with sorted keys; 64-bit integers are JSON numbers.

use std::collections::HashMap;
use std::io::Write;

use reelay_proto::v1;
use serde_json::{Map, Value, json};

use crate::format;

/// Prints one JSON value on its own line (JSON Lines).
pub(crate) fn print_line(value: &Value) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, value)?;
    stdout.write_all(b"\n")?;
    stdout.flush()?;
    Ok(())
}

pub(crate) fn timestamp(ts: Option<&prost_types::Timestamp>) -> Value {
    match format::time(ts) {
        Some(time) => Value::String(humantime::format_rfc3339_millis(time).to_string()),
        None => Value::Null,
    }
}

fn map(map: &HashMap<String, String>) -> Value {
    Value::Object(
        map.iter()
            .map(|(key, value)| (key.clone(), Value::String(value.clone())))
            .collect::<Map<String, Value>>(),
    )
}

/// An enum value by its proto name; the number when this client does not know it.
fn enum_name(name: Option<&'static str>, value: i32) -> Value {
    name.map_or_else(|| Value::from(value), Value::from)
}

pub(crate) fn job_state(value: i32) -> Value {
    enum_name(
        v1::JobState::try_from(value).ok().map(|s| s.as_str_name()),
        value,
    )
}

fn job_change(value: i32) -> Value {
    enum_name(
        v1::JobChange::try_from(value).ok().map(|c| c.as_str_name()),
        value,
    )
}

fn node_state(value: i32) -> Value {
    enum_name(
        v1::NodeState::try_from(value).ok().map(|s| s.as_str_name()),
        value,
    )
}

fn log_stream(value: i32) -> Value {
    enum_name(
        v1::LogStream::try_from(value).ok().map(|s| s.as_str_name()),
        value,
    )
}

pub(crate) fn spec(spec: &v1::JobSpec) -> Value {
    json!({
        "pipeline": spec.pipeline,
        "params": map(&spec.params),
        "input_path": spec.input_path,
        "input_uri": spec.input_uri,
        "node_id": spec.node_id,
        "priority": spec.priority,
        "max_attempts": spec.max_attempts,
        "timeout_seconds": spec.timeout_seconds,
        "labels": map(&spec.labels),
    })
}

/// A job's input from the artifact store.
pub(crate) fn input_file(input: &v1::InputFile) -> Value {
    json!({ "uri": input.uri, "name": input.name, "size": input.size, "sha256": input.sha256 })
}

/// The transfer under way (stages `staging` and `uploading`).
pub(crate) fn transfer(transfer: &v1::Transfer) -> Value {
    json!({
        "done_bytes": transfer.done_bytes,
        "total_bytes": transfer.total_bytes,
        "bytes_per_second": transfer.bytes_per_second,
    })
}

/// An upload, with `uri` (`upload:<id>`, what a job names) besides the proto fields.
pub(crate) fn upload(upload: &v1::Upload) -> Value {
    json!({
        "id": upload.id,
        "uri": format!("upload:{}", upload.id),
        "name": upload.name,
        "size": upload.size,
        "sha256": upload.sha256,
        "received": upload.received,
        "complete": upload.complete,
        "created_at": timestamp(upload.created_at.as_ref()),
        "expires_at": timestamp(upload.expires_at.as_ref()),
    })
}

pub(crate) fn output_file(file: &v1::OutputFile) -> Value {
    json!({ "name": file.name, "size": file.size, "sha256": file.sha256 })
}

pub(crate) fn job(job: &v1::Job) -> Value {
    json!({
        "id": job.id,
        "spec": job.spec.as_ref().map_or(Value::Null, spec),
        "state": job_state(job.state),
        "progress": job.progress,
        "stage": job.stage,
        "message": job.message,
        "error": job.error,
        "exit_code": job.exit_code,
        "node_id": job.node_id,
        "attempt": job.attempt,
        "node_reachable": job.node_reachable,
        "outputs": job.outputs.iter().map(output_file).collect::<Vec<_>>(),
        "created_at": timestamp(job.created_at.as_ref()),
        "started_at": timestamp(job.started_at.as_ref()),
        "finished_at": timestamp(job.finished_at.as_ref()),
        "updated_at": timestamp(job.updated_at.as_ref()),
        "version": job.version,
        "pending_reason": job.pending_reason,
        "queue_position": job.queue_position,
        "fps": job.fps,
        "eta_seconds": job.eta_seconds,
        "expires_at": timestamp(job.expires_at.as_ref()),
        "request_id": job.request_id,
        "cancel_requested": job.cancel_requested,
        "input": job.input.as_ref().map_or(Value::Null, input_file),
        "transfer": job.transfer.as_ref().map_or(Value::Null, transfer),
        "parent_id": job.parent_id,
        "step": job.step,
        "piece": job.piece,
        "steps": job.steps.as_ref().map_or(Value::Null, steps),
    })
}

/// A parent's steps as it last heard of them (the split, the pieces, the join).
fn steps(steps: &v1::Steps) -> Value {
    let piece = |piece: &v1::Piece| {
        json!({
            "job_id": piece.job_id,
            "seconds": piece.seconds,
            "state": job_state(piece.state),
            "progress": piece.progress,
            "fps": piece.fps,
            "node_id": piece.node_id,
        })
    };
    json!({
        "split": steps.split.as_ref().map_or(Value::Null, piece),
        "pieces": steps.pieces.iter().map(piece).collect::<Vec<_>>(),
        "join": steps.join.as_ref().map_or(Value::Null, piece),
        "frame_rate": steps.frame_rate,
        "total_seconds": steps.total_seconds,
    })
}

/// A job event. Besides the proto fields (`job_id`, `version`, `change`, `previous_state`, `time`,
/// `job`), the job's `state`, `progress`, `stage`, `message` and `error` are repeated at the top
/// level so that `jq .state` works on every line.
pub(crate) fn event(event: &v1::JobEvent) -> Value {
    let current = event.job.as_ref();
    json!({
        "job_id": event.job_id,
        "version": event.version,
        "change": job_change(event.change),
        "previous_state": job_state(event.previous_state),
        "time": timestamp(event.time.as_ref()),
        "state": current.map_or(Value::Null, |j| job_state(j.state)),
        "progress": current.map(|j| j.progress),
        "stage": current.map(|j| j.stage.as_str()),
        "message": current.map(|j| j.message.as_str()),
        "error": current.map(|j| j.error.as_str()),
        "job": current.map_or(Value::Null, job),
    })
}

pub(crate) fn log_line(line: &v1::LogLine) -> Value {
    json!({
        "number": line.number,
        "text": line.text,
        "stream": log_stream(line.stream),
        "time": timestamp(line.time.as_ref()),
        "attempt": line.attempt,
    })
}

pub(crate) fn node(node: &v1::Node) -> Value {
    json!({
        "id": node.id,
        "address": node.address,
        "labels": map(&node.labels),
        "slots": node.slots,
        "running": node.running,
        "state": node_state(node.state),
        "last_seen": timestamp(node.last_seen.as_ref()),
        "version": node.version,
        "executor": node.executor,
        "drained": node.drained,
        "condition": node.condition,
        "registered_at": timestamp(node.registered_at.as_ref()),
    })
}

pub(crate) fn pipeline(pipeline: &v1::Pipeline) -> Value {
    let params: Vec<Value> = pipeline
        .params
        .iter()
        .map(|param| {
            json!({
                "name": param.name,
                "description": param.description,
                "default": param.default,
                "pattern": param.pattern,
                "required": param.required,
            })
        })
        .collect();
    json!({
        "name": pipeline.name,
        "description": pipeline.description,
        "params": params,
        "timeout_seconds": pipeline.timeout_seconds,
        "input_required": pipeline.input_required,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_job() -> v1::Job {
        v1::Job {
            id: "0193a1b2-0000-7000-8000-000000000001".into(),
            spec: Some(v1::JobSpec {
                pipeline: "count".into(),
                params: [("steps".to_owned(), "5".to_owned())].into(),
                ..Default::default()
            }),
            state: v1::JobState::Running as i32,
            progress: 40,
            stage: "counting".into(),
            exit_code: None,
            created_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 250_000_000,
            }),
            version: 7,
            ..Default::default()
        }
    }

    #[test]
    fn jobs_use_proto_names_enum_names_and_rfc3339() {
        let value = job(&sample_job());
        assert_eq!(value["id"], "0193a1b2-0000-7000-8000-000000000001");
        assert_eq!(value["state"], "JOB_STATE_RUNNING");
        assert_eq!(value["progress"], 40);
        assert_eq!(value["spec"]["pipeline"], "count");
        assert_eq!(value["spec"]["params"]["steps"], "5");
        assert_eq!(value["created_at"], "2023-11-14T22:13:20.250Z");
        assert_eq!(value["finished_at"], Value::Null);
        assert_eq!(value["exit_code"], Value::Null);
        assert_eq!(value["version"], 7);
        assert_eq!(value["outputs"], json!([]));
    }

    #[test]
    fn events_repeat_the_job_fields_at_the_top() {
        let value = event(&v1::JobEvent {
            job_id: "j".into(),
            version: 7,
            job: Some(sample_job()),
            change: v1::JobChange::Progress as i32,
            previous_state: 0,
            time: None,
        });
        assert_eq!(value["change"], "JOB_CHANGE_PROGRESS");
        assert_eq!(value["previous_state"], "JOB_STATE_UNSPECIFIED");
        assert_eq!(value["state"], "JOB_STATE_RUNNING");
        assert_eq!(value["progress"], 40);
        assert_eq!(value["stage"], "counting");
        assert_eq!(value["job"]["version"], 7);
    }

    #[test]
    fn inputs_transfers_and_uploads() {
        let mut staging = sample_job();
        staging.input = Some(v1::InputFile {
            uri: "upload:u1".into(),
            name: "in.mp4".into(),
            size: 40,
            sha256: "ab".into(),
        });
        staging.transfer = Some(v1::Transfer {
            done_bytes: 10,
            total_bytes: 40,
            bytes_per_second: 2.5,
        });
        let value = job(&staging);
        assert_eq!(value["input"]["uri"], "upload:u1");
        assert_eq!(value["input"]["size"], 40);
        assert_eq!(value["transfer"]["done_bytes"], 10);
        assert_eq!(value["transfer"]["bytes_per_second"], 2.5);
        assert_eq!(job(&sample_job())["input"], Value::Null);
        let value = upload(&v1::Upload {
            id: "u1".into(),
            name: "in.mp4".into(),
            size: 40,
            received: 40,
            complete: true,
            ..Default::default()
        });
        assert_eq!(value["uri"], "upload:u1");
        assert_eq!(value["complete"], true);
        assert_eq!(value["expires_at"], Value::Null);
    }

    #[test]
    fn a_parent_carries_its_steps_and_a_step_its_parent() {
        let mut parent = sample_job();
        parent.steps = Some(v1::Steps {
            split: Some(v1::Piece {
                job_id: "s".into(),
                state: v1::JobState::Succeeded as i32,
                progress: 100,
                ..Default::default()
            }),
            pieces: vec![v1::Piece {
                job_id: "m0".into(),
                seconds: 2.5,
                state: v1::JobState::Running as i32,
                progress: 30,
                fps: 12.0,
                node_id: "w1".into(),
            }],
            join: None,
            frame_rate: 25.0,
            total_seconds: 2.5,
        });
        let value = job(&parent);
        assert_eq!(value["steps"]["split"]["state"], "JOB_STATE_SUCCEEDED");
        assert_eq!(value["steps"]["pieces"][0]["node_id"], "w1");
        assert_eq!(value["steps"]["pieces"][0]["fps"], 12.0);
        assert_eq!(value["steps"]["join"], Value::Null);
        assert_eq!(value["parent_id"], "");
        let mut step = sample_job();
        step.parent_id = "p".into();
        step.step = "map".into();
        step.piece = 3;
        let value = job(&step);
        assert_eq!(
            (
                value["parent_id"].clone(),
                value["step"].clone(),
                value["piece"].clone()
            ),
            (json!("p"), json!("map"), json!(3))
        );
        assert_eq!(value["steps"], Value::Null);
    }

    #[test]
    fn unknown_enum_values_stay_numbers() {
        assert_eq!(job_state(99), json!(99));
        assert_eq!(
            log_line(&v1::LogLine {
                number: 3,
                text: "hi".into(),
                stream: v1::LogStream::Stderr as i32,
                ..Default::default()
            })["stream"],
            "LOG_STREAM_STDERR"
        );
    }

    #[test]
    fn nodes_and_pipelines() {
        let value = node(&v1::Node {
            id: "local".into(),
            labels: [("gpu".to_owned(), "yes".to_owned())].into(),
            state: v1::NodeState::Ready as i32,
            slots: 4,
            running: 1,
            ..Default::default()
        });
        assert_eq!(value["state"], "NODE_STATE_READY");
        assert_eq!(value["labels"]["gpu"], "yes");
        assert_eq!(value["running"], 1);
        let value = pipeline(&v1::Pipeline {
            name: "count".into(),
            params: vec![v1::PipelineParam {
                name: "steps".into(),
                default: "20".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        assert_eq!(value["params"][0]["default"], "20");
        assert_eq!(value["params"][0]["required"], false);
    }
}
