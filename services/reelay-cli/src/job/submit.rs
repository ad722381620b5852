//! `reelay job submit`: CreateJob (after uploading the input with `--upload`), then optionally the
//! watch.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use reelay_proto::v1;

use crate::{Ctx, args, format, json};

use super::upload::{self, Show};
use super::watch;

/// Flags of `reelay job submit`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  reelay job submit count --param steps=50 --watch
  reelay job submit transcode --upload clip.mov --param height=720 --watch
  reelay job submit transcode --input /srv/media/clip.mov --param height=720 --priority 10
  id=$(reelay job submit count -q) && reelay job watch \"$id\"
  reelay job submit count --watch && echo done")]
pub struct SubmitArgs {
    /// The pipeline to run (see `reelay pipeline list`).
    pub(crate) pipeline: String,
    /// A pipeline parameter, KEY=VALUE; repeat for several.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE", value_parser = args::key_value)]
    pub(crate) params: Vec<(String, String)>,
    /// The input file, as a path on the worker node (it is not uploaded: see --upload). A relative path is
    /// made absolute against the current directory, which is right when the worker runs on this
    /// machine (`reelay dev`).
    #[arg(long, short = 'i', value_name = "PATH")]
    pub(crate) input: Option<PathBuf>,
    /// A file on this machine, sent to the coordinator as the job's input before the job is
    /// submitted (the worker fetches it). Resumable: after a cut or Ctrl-C, the same command
    /// continues where the upload stopped; a file already uploaded is not sent again.
    #[arg(long, short = 'u', value_name = "FILE", conflicts_with = "input")]
    pub(crate) upload: Option<PathBuf>,
    /// Run only on this node (the job waits for it when it is busy, draining or offline).
    #[arg(long = "node", value_name = "ID")]
    pub(crate) node_id: Option<String>,
    /// Higher runs first; jobs of equal priority run oldest first. May be negative.
    #[arg(
        long,
        default_value_t = 0,
        allow_negative_numbers = true,
        value_name = "N"
    )]
    pub(crate) priority: i32,
    /// How many times the job may run before a failure is final (default 1).
    #[arg(long, value_name = "N")]
    pub(crate) max_attempts: Option<u32>,
    /// Stop the job after this long: seconds (90) or a duration (10m, 1h30m). Default: the
    /// pipeline's own timeout.
    #[arg(long, value_name = "SECONDS", value_parser = args::seconds)]
    pub(crate) timeout: Option<u32>,
    /// Run only on a node that has this label, KEY=VALUE; repeat for several.
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE", value_parser = args::key_value)]
    pub(crate) labels: Vec<(String, String)>,
    /// An idempotency key: submitting again with the same id returns the same job instead of a
    /// new one (safe retries from scripts).
    #[arg(long, value_name = "ID")]
    pub(crate) request_id: Option<String>,
    /// Then follow the job like `reelay job watch`: exit 0 if it succeeds, 1 if not.
    #[arg(long, short = 'w')]
    pub(crate) watch: bool,
    /// Print only the job id (and no upload progress).
    #[arg(long, short = 'q', conflicts_with = "watch")]
    pub(crate) quiet: bool,
}

pub(crate) async fn run(ctx: &Ctx, args: SubmitArgs) -> anyhow::Result<ExitCode> {
    // Checked before a long upload.
    let mut request = request(&args)?;
    if let Some(path) = &args.upload {
        let show = if args.quiet {
            Show::Nothing
        } else {
            Show::Auto
        };
        let upload = upload::upload_file(ctx, path, show).await?;
        if let Some(spec) = request.spec.as_mut() {
            spec.input_uri = format!("upload:{}", upload.id);
        }
    }
    let job = ctx
        .conn
        .jobs()
        .create_job(request)
        .await
        .context("submitting the job")?
        .into_inner();
    if ctx.json() {
        // With --watch the first event (a snapshot) carries the job: one kind of object per line.
        if !args.watch {
            json::print_line(&json::job(&job))?;
        }
    } else if args.quiet {
        crate::out::line(format_args!("{}", job.id))?;
    } else {
        crate::out::line(format_args!("{}", submitted_line(&job)))?;
    }
    if !args.watch {
        return Ok(ExitCode::SUCCESS);
    }
    watch::follow(ctx, &job.id, Some(job.state)).await
}

fn request(args: &SubmitArgs) -> anyhow::Result<v1::CreateJobRequest> {
    let params = args::pairs_to_map(&args.params, "--param").map_err(anyhow::Error::msg)?;
    let labels = args::pairs_to_map(&args.labels, "--label").map_err(anyhow::Error::msg)?;
    let input_path = match &args.input {
        None => String::new(),
        Some(path) => {
            let cwd = std::env::current_dir()
                .context("--input: cannot read the current directory to make the path absolute")?;
            args::absolute_input(path, &cwd).map_err(anyhow::Error::msg)?
        }
    };
    Ok(v1::CreateJobRequest {
        spec: Some(v1::JobSpec {
            pipeline: args.pipeline.clone(),
            params,
            input_path,
            input_uri: String::new(),
            node_id: args.node_id.clone().unwrap_or_default(),
            priority: args.priority,
            max_attempts: args.max_attempts.unwrap_or(0),
            timeout_seconds: args.timeout.unwrap_or(0),
            labels,
        }),
        request_id: args.request_id.clone().unwrap_or_default(),
    })
}

/// `job <id> queued: <why it waits>`.
fn submitted_line(job: &v1::Job) -> String {
    let state = format::job_state(job.state).to_lowercase();
    let note = format::job_note(job);
    if note.is_empty() {
        format!("job {} {state}", job.id)
    } else {
        format!("job {} {state}: {note}", job.id)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        submit: SubmitArgs,
    }

    fn parse(argv: &[&str]) -> SubmitArgs {
        let mut full = vec!["submit"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full).unwrap().submit
    }

    #[test]
    fn flags_become_the_spec() {
        let args = parse(&[
            "count",
            "--param",
            "steps=5",
            "-p",
            "interval_ms=10",
            "--priority",
            "-3",
            "--timeout",
            "2m",
            "--label",
            "gpu=yes",
            "--node",
            "local",
            "--max-attempts",
            "2",
            "--request-id",
            "r1",
        ]);
        let request = request(&args).unwrap();
        let spec = request.spec.unwrap();
        assert_eq!(spec.pipeline, "count");
        assert_eq!(spec.params.len(), 2);
        assert_eq!(spec.params["steps"], "5");
        assert_eq!(spec.priority, -3);
        assert_eq!(spec.timeout_seconds, 120);
        assert_eq!(spec.labels["gpu"], "yes");
        assert_eq!(spec.node_id, "local");
        assert_eq!(spec.max_attempts, 2);
        assert_eq!(request.request_id, "r1");
    }

    #[test]
    fn relative_input_is_made_absolute() {
        let args = parse(&["transcode", "--input", "clip.mov"]);
        let spec = request(&args).unwrap().spec.unwrap();
        assert!(spec.input_path.starts_with('/'), "{}", spec.input_path);
        assert!(
            spec.input_path.ends_with("/clip.mov"),
            "{}",
            spec.input_path
        );
    }

    #[test]
    fn upload_and_input_exclude_each_other() {
        let args = parse(&["copy", "--upload", "clip.mov", "-p", "label=x"]);
        assert_eq!(
            args.upload.as_deref(),
            Some(std::path::Path::new("clip.mov"))
        );
        // The spec is checked before the upload; the upload sets input_uri, not input_path.
        assert_eq!(request(&args).unwrap().spec.unwrap().input_path, "");
        let both = Cli::try_parse_from(["submit", "copy", "--upload", "a", "--input", "b"]);
        let err = both.unwrap_err().to_string();
        assert!(err.contains("cannot be used with"), "{err}");
    }

    #[test]
    fn a_param_given_twice_is_refused() {
        let args = parse(&["count", "--param", "steps=5", "--param", "steps=6"]);
        let err = request(&args).unwrap_err();
        assert!(err.to_string().contains("more than once"), "{err}");
    }

    #[test]
    fn the_submitted_line_says_why_the_job_waits() {
        let job = v1::Job {
            id: "j1".into(),
            state: v1::JobState::Queued as i32,
            pending_reason: "no node has a free slot".into(),
            queue_position: 2,
            ..Default::default()
        };
        assert_eq!(
            submitted_line(&job),
            "job j1 queued: no node has a free slot; #2 in the queue"
        );
    }
}
