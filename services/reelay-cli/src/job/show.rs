//! Reading jobs: `reelay job get` (with a parent's steps, see [`super::children`]), `list`,
//! `history`, `outputs`.

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use clap::Args;
use reelay_proto::v1;

use crate::args::{StateArg, wire_states};
use crate::format::{self, Table};
use crate::{Ctx, json};

/// The largest page the server gives (ListJobs caps `page_size` at 1000).
const MAX_PAGE: u32 = 1000;

/// Flags of `reelay job list`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  reelay job list
  reelay job list --state running,queued
  reelay job list --state failed --node gpu-1 --limit 200
  reelay job list --all -o json | jq -r 'select(.state == \"JOB_STATE_FAILED\") | .id'")]
pub struct ListArgs {
    /// Only jobs in these states, comma-separated.
    #[arg(
        long,
        short = 's',
        value_enum,
        value_delimiter = ',',
        value_name = "STATE,..."
    )]
    pub(crate) state: Vec<StateArg>,
    /// Only jobs whose (last) attempt ran on this node.
    #[arg(long = "node", value_name = "ID")]
    pub(crate) node_id: Option<String>,
    /// At most this many jobs (newest first).
    #[arg(long, short = 'n', default_value_t = 50, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) limit: u32,
    /// Every matching job, however many (ignores --limit).
    #[arg(long, short = 'a')]
    pub(crate) all: bool,
    /// Also the step jobs of chunked jobs (split, pieces, join); shown anyway with --node.
    #[arg(long)]
    pub(crate) steps: bool,
}

pub(crate) async fn get(ctx: &Ctx, id: &str) -> anyhow::Result<ExitCode> {
    let job = ctx
        .conn
        .jobs()
        .get_job(v1::GetJobRequest { id: id.to_owned() })
        .await?
        .into_inner();
    if ctx.json() {
        json::print_line(&json::job(&job))?;
        return Ok(ExitCode::SUCCESS);
    }
    crate::out::text(&describe_job(&job, SystemTime::now()))?;
    // A job made of jobs: its steps as they are, each with its own id.
    if job.steps.is_some() {
        let steps = super::children::list(ctx, &job.id)
            .await
            .context(format!("listing the steps of job {}", job.id))?;
        if !steps.is_empty() {
            crate::out::text(&format!("\nsteps:\n{}", super::children::table(&steps)))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn list(ctx: &Ctx, args: ListArgs) -> anyhow::Result<ExitCode> {
    let mut client = ctx.conn.jobs();
    let states = wire_states(&args.state);
    let node_id = args.node_id.clone().unwrap_or_default();
    let wanted = if args.all { None } else { Some(args.limit) };
    let now = SystemTime::now();
    let mut table = Table::new(&[
        "ID", "PIPELINE", "STATE", "PROGRESS", "NODE", "AGE", "MESSAGE",
    ]);
    let mut printed: u32 = 0;
    let mut page_token = String::new();
    let more = loop {
        let page_size = page_size(wanted, printed);
        let page = client
            .list_jobs(v1::ListJobsRequest {
                page_size: page_size as i32,
                page_token: page_token.clone(),
                states: states.clone(),
                node_id: node_id.clone(),
                parent_id: String::new(),
                top_level: !args.steps && node_id.is_empty(),
            })
            .await?
            .into_inner();
        for job in &page.jobs {
            if ctx.json() {
                json::print_line(&json::job(job))?;
            } else {
                table.row(list_row(job, now));
            }
            printed += 1;
        }
        page_token = page.next_page_token;
        if page_token.is_empty() || page.jobs.is_empty() {
            break false;
        }
        if wanted.is_some_and(|wanted| printed >= wanted) {
            break true;
        }
    };
    if ctx.json() {
        return Ok(ExitCode::SUCCESS);
    }
    if table.len() == 0 {
        eprintln!("no jobs{}", filter_note(&args));
        return Ok(ExitCode::SUCCESS);
    }
    crate::out::text(&table.render())?;
    if more {
        eprintln!("(the {printed} newest shown; more with --limit N or --all)");
    }
    Ok(ExitCode::SUCCESS)
}

/// The page to ask for: what is still wanted (all: as much as the server gives), at most a full
/// page.
fn page_size(wanted: Option<u32>, printed: u32) -> u32 {
    match wanted {
        Some(wanted) => wanted.saturating_sub(printed).clamp(1, MAX_PAGE),
        None => MAX_PAGE,
    }
}

fn filter_note(args: &ListArgs) -> String {
    let mut parts = Vec::new();
    if !args.state.is_empty() {
        parts.push("in the states asked for".to_owned());
    }
    if let Some(node) = &args.node_id {
        parts.push(format!("on node {node}"));
    }
    if parts.is_empty() {
        " yet: submit one with `reelay job submit PIPELINE` (see `reelay pipeline list`)".to_owned()
    } else {
        format!(" {}", parts.join(" "))
    }
}

fn list_row(job: &v1::Job, now: SystemTime) -> Vec<String> {
    let pipeline = job
        .spec
        .as_ref()
        .map(|spec| spec.pipeline.clone())
        .unwrap_or_default();
    vec![
        job.id.clone(),
        pipeline,
        format::job_state(job.state),
        format!("{}%", job.progress),
        format::node_cell(job),
        format::age_of(job.created_at.as_ref(), now),
        format::truncate(&format::job_note(job), 80),
    ]
}

/// `reelay job get` in text: one field per line, empty fields left out.
fn describe_job(job: &v1::Job, now: SystemTime) -> String {
    let mut lines: Vec<(&str, String)> = vec![("id", job.id.clone())];
    let spec = job.spec.clone().unwrap_or_default();
    lines.push(("pipeline", spec.pipeline.clone()));
    if !job.parent_id.is_empty() {
        lines.push((
            "step of",
            format!("job {} ({})", job.parent_id, step_name(job)),
        ));
    }
    if !spec.params.is_empty() {
        lines.push(("params", format::pairs(&spec.params)));
    }
    if !spec.input_path.is_empty() {
        lines.push(("input", spec.input_path.clone()));
    }
    if let Some(input) = &job.input {
        lines.push(("input", input_line(input)));
    }
    let mut state = format!("{} {}%", format::job_state(job.state), job.progress);
    let detail = crate::render::bar_message(job);
    if !detail.is_empty() {
        state.push_str(&format!(" {detail}"));
    }
    let state_has_message = !job.message.is_empty() && state.contains(&job.message);
    lines.push(("state", state));
    if job.cancel_requested && !format::is_terminal(job.state) {
        lines.push(("cancel", "requested".to_owned()));
    }
    if !job.node_id.is_empty() {
        let reachable = if job.node_reachable {
            ""
        } else {
            " (not answering)"
        };
        lines.push(("node", format!("{}{reachable}", job.node_id)));
    }
    let max_attempts = spec.max_attempts.max(1);
    if job.attempt > 0 {
        lines.push(("attempt", format!("{} of {max_attempts}", job.attempt)));
    }
    // A parent's message is in its state line already.
    if !job.message.is_empty() && !state_has_message {
        lines.push(("message", job.message.clone()));
    }
    if !job.error.is_empty() {
        lines.push(("error", job.error.clone()));
    }
    if let Some(code) = job.exit_code {
        lines.push(("exit code", code.to_string()));
    }
    for file in &job.outputs {
        lines.push((
            "output",
            format!("{} ({})", file.name, format::size(file.size)),
        ));
    }
    if !spec.node_id.is_empty() {
        lines.push(("pinned to", spec.node_id.clone()));
    }
    if !spec.labels.is_empty() {
        lines.push(("labels", format::pairs(&spec.labels)));
    }
    if spec.priority != 0 {
        lines.push(("priority", spec.priority.to_string()));
    }
    if spec.timeout_seconds > 0 {
        lines.push(("timeout", format!("{}s", spec.timeout_seconds)));
    }
    for (name, ts) in [
        ("created", &job.created_at),
        ("started", &job.started_at),
        ("finished", &job.finished_at),
        ("expires", &job.expires_at),
    ] {
        if let Some(time) = format::time(ts.as_ref()) {
            let when = humantime::format_rfc3339_seconds(time);
            let relative = match now.duration_since(time) {
                Ok(ago) => format!("{} ago", format::duration(ago)),
                Err(ahead) => format!("in {}", format::duration(ahead.duration())),
            };
            lines.push((name, format!("{when} ({relative})")));
        }
    }
    if !job.request_id.is_empty() {
        lines.push(("request id", job.request_id.clone()));
    }
    lines.push(("version", job.version.to_string()));
    let width = lines.iter().map(|(name, _)| name.len()).max().unwrap_or(0) + 1;
    lines
        .iter()
        .map(|(name, value)| format!("{:<width$} {value}\n", format!("{name}:")))
        .collect()
}

pub(crate) async fn history(ctx: &Ctx, id: &str) -> anyhow::Result<ExitCode> {
    let events = ctx
        .conn
        .jobs()
        .get_job_history(v1::GetJobHistoryRequest {
            id: id.to_owned(),
            after_version: 0,
        })
        .await?
        .into_inner()
        .events;
    if ctx.json() {
        for event in &events {
            json::print_line(&json::event(event))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&["VERSION", "TIME", "CHANGE", "STATE", "PROGRESS", "DETAIL"]);
    let mut prev: Option<&v1::Job> = None;
    for event in &events {
        let time = format::time(event.time.as_ref())
            .map(|t| humantime::format_rfc3339_millis(t).to_string())
            .unwrap_or_else(|| "-".to_owned());
        let change = v1::JobChange::try_from(event.change)
            .map(|c| c.as_str_name().trim_start_matches("JOB_CHANGE_").to_owned())
            .unwrap_or_else(|_| event.change.to_string());
        let (state, progress) = match &event.job {
            Some(job) => (format::job_state(job.state), format!("{}%", job.progress)),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let detail = history_detail(prev, event);
        table.row(vec![
            event.version.to_string(),
            time,
            change,
            state,
            progress,
            detail,
        ]);
        prev = event.job.as_ref().or(prev);
    }
    crate::out::text(&table.render())?;
    Ok(ExitCode::SUCCESS)
}

/// `piece 2`, `the split step`: what a step job is to its parent.
fn step_name(job: &v1::Job) -> String {
    match job.step.as_str() {
        "map" => format!("piece {}", job.piece + 1),
        step => format!("the {step} step"),
    }
}

/// `in.mp4 (40.0 MiB, upload:<id>)`: a job's input from the artifact store.
fn input_line(input: &v1::InputFile) -> String {
    format!(
        "{} ({}, {})",
        input.name,
        format::size(input.size),
        input.uri
    )
}

fn history_detail(prev: Option<&v1::Job>, event: &v1::JobEvent) -> String {
    let Some(job) = &event.job else {
        return String::new();
    };
    if prev.is_some_and(|prev| prev.state != job.state) || prev.is_none() {
        return match v1::JobState::try_from(job.state) {
            Ok(v1::JobState::Queued) => format::job_note(job),
            Ok(v1::JobState::Assigned | v1::JobState::Running) => {
                format!("node {} attempt {}", job.node_id, job.attempt)
            }
            Ok(v1::JobState::Failed) => job.error.clone(),
            _ => job.message.clone(),
        };
    }
    crate::render::change_line(prev, event).unwrap_or_default()
}

/// The files a job produced (ListOutputs).
pub(super) async fn list_outputs(ctx: &Ctx, id: &str) -> anyhow::Result<Vec<v1::OutputFile>> {
    Ok(ctx
        .conn
        .jobs()
        .list_outputs(v1::ListOutputsRequest { id: id.to_owned() })
        .await
        .context(format!("listing the outputs of job {id}"))?
        .into_inner()
        .files)
}

/// Why a job lists no outputs, from its state (a finished job will not get any).
pub(super) async fn no_outputs_note(ctx: &Ctx, id: &str) -> String {
    let job = ctx
        .conn
        .jobs()
        .get_job(v1::GetJobRequest { id: id.to_owned() })
        .await
        .map(tonic::Response::into_inner);
    match job {
        Ok(job) => no_outputs_text(&job),
        Err(_) => format!("job {id} has no outputs"),
    }
}

fn no_outputs_text(job: &v1::Job) -> String {
    let id = &job.id;
    match v1::JobState::try_from(job.state) {
        Ok(v1::JobState::Succeeded) => format!(
            "job {id} succeeded without outputs: its pipeline left no files in REELAY_OUTPUT_DIR"
        ),
        Ok(v1::JobState::Failed) => format!("job {id} failed and left no outputs"),
        Ok(v1::JobState::Cancelled) => format!("job {id} was cancelled and left no outputs"),
        _ => format!(
            "job {id} has no outputs yet: they are listed when it finishes (`reelay job watch {id}`)"
        ),
    }
}

pub(crate) async fn outputs(ctx: &Ctx, id: &str) -> anyhow::Result<ExitCode> {
    let files = list_outputs(ctx, id).await?;
    if ctx.json() {
        for file in &files {
            json::print_line(&json::output_file(file))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if files.is_empty() {
        eprintln!("{}", no_outputs_note(ctx, id).await);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&["NAME", "SIZE", "SHA256"]);
    for file in &files {
        table.row(vec![
            file.name.clone(),
            format::size(file.size),
            file.sha256.clone(),
        ]);
    }
    crate::out::text(&table.render())?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn no_outputs_says_whether_more_can_come() {
        let job = |state: v1::JobState| v1::Job {
            id: "j1".into(),
            state: state as i32,
            ..Default::default()
        };
        assert!(
            no_outputs_text(&job(v1::JobState::Succeeded)).contains("succeeded without outputs")
        );
        assert!(no_outputs_text(&job(v1::JobState::Failed)).contains("failed and left no outputs"));
        assert!(no_outputs_text(&job(v1::JobState::Running)).contains("when it finishes"));
        assert!(!no_outputs_text(&job(v1::JobState::Succeeded)).contains("yet"));
    }

    use super::*;

    #[test]
    fn list_rows_show_full_ids_and_why_jobs_wait() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let job = v1::Job {
            id: "0193a1b2-7c4e-7d10-9a0b-2f6c1e3d4a5b".into(),
            spec: Some(v1::JobSpec {
                pipeline: "count".into(),
                ..Default::default()
            }),
            state: v1::JobState::Queued as i32,
            pending_reason: "no node has a free slot".into(),
            created_at: Some(prost_types::Timestamp {
                seconds: 880,
                nanos: 0,
            }),
            ..Default::default()
        };
        assert_eq!(
            list_row(&job, now),
            [
                "0193a1b2-7c4e-7d10-9a0b-2f6c1e3d4a5b",
                "count",
                "QUEUED",
                "0%",
                "-",
                "2m",
                "no node has a free slot"
            ]
        );
    }

    #[test]
    fn pages_ask_for_what_is_still_wanted() {
        assert_eq!(page_size(Some(50), 0), 50);
        assert_eq!(page_size(Some(2500), 0), 1000);
        assert_eq!(page_size(Some(2500), 2000), 500);
        assert_eq!(page_size(None, 123_456), 1000);
    }

    #[test]
    fn get_leaves_out_empty_fields() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let job = v1::Job {
            id: "j1".into(),
            spec: Some(v1::JobSpec {
                pipeline: "count".into(),
                ..Default::default()
            }),
            state: v1::JobState::Failed as i32,
            progress: 30,
            error: "exit code 3".into(),
            exit_code: Some(3),
            node_id: "local".into(),
            node_reachable: true,
            attempt: 1,
            version: 9,
            ..Default::default()
        };
        let text = describe_job(&job, now);
        assert!(text.contains("state:     FAILED 30%\n"), "{text}");
        assert!(text.contains("error:     exit code 3\n"), "{text}");
        assert!(text.contains("exit code: 3\n"), "{text}");
        assert!(text.contains("attempt:   1 of 1\n"), "{text}");
        assert!(!text.contains("input"), "{text}");
    }

    #[test]
    fn get_says_whose_step_a_job_is_and_a_parent_how_far_it_is() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let step = v1::Job {
            id: "m1".into(),
            parent_id: "p1".into(),
            step: "map".into(),
            piece: 1,
            state: v1::JobState::Running as i32,
            ..Default::default()
        };
        let text = describe_job(&step, now);
        assert!(text.contains("step of:  job p1 (piece 2)\n"), "{text}");
        let split = v1::Job {
            step: "split".into(),
            piece: 0,
            ..step
        };
        assert!(describe_job(&split, now).contains("(the split step)"));
        let parent = v1::Job {
            id: "p1".into(),
            state: v1::JobState::Running as i32,
            progress: 40,
            message: "pieces: 1 of 4 done, 2 running".into(),
            steps: Some(v1::Steps::default()),
            ..Default::default()
        };
        let text = describe_job(&parent, now);
        assert!(
            text.lines().any(|line| line.starts_with("state:")
                && line.ends_with(" RUNNING 40% pieces: 1 of 4 done, 2 running")),
            "{text}"
        );
        assert!(!text.contains("message:"), "said twice: {text}");
    }

    #[test]
    fn get_shows_an_uploaded_input() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let job = v1::Job {
            id: "j1".into(),
            spec: Some(v1::JobSpec {
                pipeline: "copy".into(),
                input_uri: "upload:u1".into(),
                ..Default::default()
            }),
            state: v1::JobState::Running as i32,
            progress: 50,
            stage: "staging".into(),
            input: Some(v1::InputFile {
                uri: "upload:u1".into(),
                name: "in.mp4".into(),
                size: 40 << 20,
                sha256: "ab".into(),
            }),
            transfer: Some(v1::Transfer {
                done_bytes: 20 << 20,
                total_bytes: 40 << 20,
                bytes_per_second: 0.0,
            }),
            ..Default::default()
        };
        let text = describe_job(&job, now);
        assert!(
            text.contains("input:    in.mp4 (40.0 MiB, upload:u1)\n"),
            "{text}"
        );
        assert!(
            text.contains("state:    RUNNING 50% staging · 20.0 MiB of 40.0 MiB\n"),
            "{text}"
        );
    }
}
