//! `reelay job submit`: CreateJob (after uploading the input with `--upload`), then optionally the
//! watch; with several inputs or `--from`, one job each through CreateJobs (see [`super::batch`])
//! and a watch of them all.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use reelay_proto::v1;

use crate::{Ctx, args, format, json};

use super::batch::{self, Item};
use super::upload::{self, Show};
use super::watch_many::{self, Tracked};
use super::{from_file, watch};

/// Flags of `reelay job submit`.
#[derive(Debug, Args)]
#[command(after_help = "\
Several jobs at once: each --input file (or each line of --from) is a job of its own, all sent in
one CreateJobs call (batches of 1,000). Each of them gets a request id derived from its spec, so
running the same command again submits nothing twice (it prints the jobs submitted before);
--request-id PREFIX makes the ids PREFIX/…, a new PREFIX submits them anew. A --from line is a
JSON object: {\"pipeline\": \"transcode\", \"params\": {\"height\": \"720\"}, \"input_path\": \"a.mov\"}
with any of pipeline, params, input_path, input_uri (upload:<id> from `reelay job upload`, or
s3://BUCKET/KEY), node_id, priority, max_attempts, timeout_seconds, labels, request_id; what a line
leaves out comes from PIPELINE and the flags. A bad line stops the command
before anything is sent. With --watch: one overall bar and a bar per running job; the exit code is
0 only when every job succeeded, and each job that did not is named with its error.

Examples:
  reelay job submit count --param steps=50 --watch
  reelay job submit transcode --upload clip.mov --param height=720 --watch
  reelay job submit transcode --upload videos/*.mp4 --param height=360 --watch
  reelay job submit transcode --input /srv/media/clip.mov --param height=720 --priority 10
  reelay job submit transcode --input /srv/media/*.mp4 --param height=360 --watch
  reelay job submit transcode --from jobs.jsonl
  find /srv/videos -name '*.mov' | jq -Rc '{input_path: .}' | reelay job submit transcode --from -
  id=$(reelay job submit count -q) && reelay job watch \"$id\"
  reelay job submit count --watch && echo done")]
pub struct SubmitArgs {
    /// The pipeline to run (see `reelay pipeline list`); with --from, for lines that name none.
    #[arg(required_unless_present = "from")]
    pub(crate) pipeline: Option<String>,
    /// A pipeline parameter, KEY=VALUE; repeat for several.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE", value_parser = args::key_value)]
    pub(crate) params: Vec<(String, String)>,
    /// The input file, as a path on the worker node (it is not uploaded: see --upload). A relative path is
    /// made absolute against the current directory, which is right when the worker runs on this
    /// machine (`reelay dev`). Several files (`--input a.mov b.mov`, `--input a.mov --input
    /// b.mov`, a shell glob: `transcode --input videos/*.mp4`) make one job each.
    #[arg(long, short = 'i', value_name = "PATH", num_args = 1..)]
    pub(crate) input: Vec<PathBuf>,
    /// Files on this machine, sent to the coordinator as the jobs' inputs before the jobs are
    /// submitted (workers fetch them); one job per file, a few files sent at once with one overall
    /// progress. Resumable: after a cut or Ctrl-C, the same command continues where the uploads
    /// stopped; a file already uploaded is not sent again.
    #[arg(long, short = 'u', value_name = "FILE", num_args = 1.., conflicts_with = "input")]
    pub(crate) upload: Vec<PathBuf>,
    /// Read the jobs from a JSON Lines file, one job per line (`-`: stdin); see below.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["input", "upload"])]
    pub(crate) from: Option<PathBuf>,
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
    /// new one (safe retries from scripts). With several jobs, the prefix of their ids.
    #[arg(long, value_name = "ID")]
    pub(crate) request_id: Option<String>,
    /// Then follow the job like `reelay job watch`: exit 0 if it succeeds, 1 if not. With several
    /// jobs, follow them all: exit 0 only if every one succeeds.
    #[arg(long, short = 'w')]
    pub(crate) watch: bool,
    /// Print only the job id (one per line with several jobs), and no upload progress.
    #[arg(long, short = 'q', conflicts_with = "watch")]
    pub(crate) quiet: bool,
}

impl SubmitArgs {
    /// Several jobs (several inputs or uploads, or --from): CreateJobs rather than CreateJob.
    fn is_batch(&self) -> bool {
        self.from.is_some() || self.input.len() > 1 || self.upload.len() > 1
    }
}

pub(crate) async fn run(ctx: &Ctx, args: SubmitArgs) -> anyhow::Result<ExitCode> {
    if args.is_batch() {
        return run_many(ctx, args).await;
    }
    // Checked before a long upload.
    let mut request = request(&args)?;
    if let Some(path) = args.upload.first() {
        let upload = upload::upload_file(ctx, path, show(&args)).await?;
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

/// Several jobs: every item checked, request ids derived, CreateJobs in batches, then the watch.
async fn run_many(ctx: &Ctx, args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let mut items = items(ctx, &args).await?;
    batch::assign_request_ids(&mut items, args.request_id.as_deref())?;
    let labels: Vec<String> = items.iter().map(label).collect();
    // Opened before the jobs exist, so no change of theirs is missed.
    let watch = if args.watch {
        Some(watch_many::Watch::open(ctx).await?)
    } else {
        None
    };
    let outcomes = batch::submit(ctx, items).await?;
    batch::print(ctx, &outcomes, args.quiet, args.watch)?;
    let refused = outcomes.iter().filter(|o| o.result.is_err()).count();
    let Some(watch) = watch else {
        return Ok(if refused == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    };
    let jobs: Vec<Tracked> = outcomes
        .into_iter()
        .zip(labels)
        .filter_map(|(outcome, label)| {
            outcome.result.ok().map(|submitted| Tracked {
                job: submitted.job,
                label,
            })
        })
        .collect();
    if !ctx.json() {
        let count = jobs.len();
        crate::out::line(format_args!(
            "watching {count} job{}; Ctrl-C stops watching, not the jobs",
            if count == 1 { "" } else { "s" }
        ))?;
    }
    let watched = watch.follow(ctx, jobs).await;
    match watched {
        Ok(code) if refused > 0 && code == ExitCode::SUCCESS => {
            eprintln!("error: {refused} job(s) were refused (above); the others succeeded");
            Ok(ExitCode::FAILURE)
        }
        other => other,
    }
}

/// The jobs of the command: one per --input or --upload (uploaded first), or one per line of
/// --from.
async fn items(ctx: &Ctx, args: &SubmitArgs) -> anyhow::Result<Vec<Item>> {
    let defaults = spec(args)?;
    let cwd = std::env::current_dir()
        .context("cannot read the current directory to make input paths absolute")?;
    if let Some(path) = &args.from {
        return from_file::read(path, &defaults, &cwd);
    }
    if !args.upload.is_empty() {
        let uploads = upload::upload_files(ctx, &args.upload, show(args)).await?;
        return Ok(args
            .upload
            .iter()
            .zip(uploads)
            .map(|(path, upload)| Item {
                spec: v1::JobSpec {
                    input_uri: format!("upload:{}", upload.id),
                    ..defaults.clone()
                },
                request_id: None,
                source: path.display().to_string(),
            })
            .collect());
    }
    args.input
        .iter()
        .map(|path| {
            let input_path = args::absolute_input(path, &cwd).map_err(anyhow::Error::msg)?;
            Ok(Item {
                spec: v1::JobSpec {
                    input_path,
                    ..defaults.clone()
                },
                request_id: None,
                source: path.display().to_string(),
            })
        })
        .collect()
}

/// How uploads show their progress: not at all with -q.
fn show(args: &SubmitArgs) -> Show {
    if args.quiet {
        Show::Nothing
    } else {
        Show::Auto
    }
}

/// What a job is called while watched: its input file's name, else where it came from.
fn label(item: &Item) -> String {
    std::path::Path::new(&item.spec.input_path)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| item.source.clone())
}

/// The spec the flags give (no input).
fn spec(args: &SubmitArgs) -> anyhow::Result<v1::JobSpec> {
    let params = args::pairs_to_map(&args.params, "--param").map_err(anyhow::Error::msg)?;
    let labels = args::pairs_to_map(&args.labels, "--label").map_err(anyhow::Error::msg)?;
    Ok(v1::JobSpec {
        pipeline: args.pipeline.clone().unwrap_or_default(),
        params,
        input_path: String::new(),
        input_uri: String::new(),
        node_id: args.node_id.clone().unwrap_or_default(),
        priority: args.priority,
        max_attempts: args.max_attempts.unwrap_or(0),
        timeout_seconds: args.timeout.unwrap_or(0),
        labels,
    })
}

fn request(args: &SubmitArgs) -> anyhow::Result<v1::CreateJobRequest> {
    let input_path = match args.input.first() {
        None => String::new(),
        Some(path) => {
            let cwd = std::env::current_dir()
                .context("--input: cannot read the current directory to make the path absolute")?;
            args::absolute_input(path, &cwd).map_err(anyhow::Error::msg)?
        }
    };
    Ok(v1::CreateJobRequest {
        spec: Some(v1::JobSpec {
            input_path,
            ..spec(args)?
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
        assert_eq!(args.upload, [std::path::PathBuf::from("clip.mov")]);
        assert!(!args.is_batch());
        let several = parse(&["copy", "--upload", "a.mov", "b.mov"]);
        assert!(several.is_batch());
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
