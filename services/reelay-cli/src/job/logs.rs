//! `reelay job logs`: GetJobLogs, resuming a dropped stream after the last line number printed.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use reelay_proto::v1;

use crate::error::is_transient;
use crate::reconnect::{self, Backoff};
use crate::{Ctx, format, json, tty};

/// Flags of `reelay job logs`.
#[derive(Debug, Args)]
#[command(after_help = "\
Lines the pipeline wrote to stdout are printed as they are; lines from its stderr start with
`[stderr] `, lines from Reelay itself (start, exit, cancel) with `[reelay] `. Every line has a
number (shown by --line-numbers and in -o json); --after-line N starts after line N.

Examples:
  reelay job logs 0193a1b2-7c4e-7d10-9a0b-2f6c1e3d4a5b
  reelay job logs 0193a1b2-7c4e-7d10-9a0b-2f6c1e3d4a5b --follow
  reelay job logs 0193a1b2-7c4e-7d10-9a0b-2f6c1e3d4a5b --after-line 120 -o json")]
pub struct LogsArgs {
    /// The job's id.
    pub(crate) id: String,
    /// Keep printing new lines until the job ends.
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
    /// Start after this line number (0: from the first line).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub(crate) after_line: u64,
    /// Start each line with its time (RFC 3339, UTC).
    #[arg(long, short = 't')]
    pub(crate) timestamps: bool,
    /// Start each line with its number.
    #[arg(long, short = 'N')]
    pub(crate) line_numbers: bool,
}

pub(crate) async fn run(ctx: &Ctx, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let mut client = ctx.conn.jobs();
    let style = LineStyle {
        timestamps: args.timestamps,
        numbers: args.line_numbers,
        color: tty::color_stdout(),
    };
    let mut last = args.after_line;
    let mut backoff = Backoff::new();
    let mut stdout = std::io::BufWriter::new(std::io::stdout());
    let mut connected_once = false;
    loop {
        let request = v1::GetJobLogsRequest {
            id: args.id.clone(),
            follow: args.follow,
            after_line: last,
        };
        let cause = match client.get_job_logs(request).await {
            Ok(response) => {
                connected_once = true;
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(line)) => {
                            backoff.reset();
                            if line.number <= last {
                                continue;
                            }
                            last = line.number;
                            if ctx.json() {
                                json::print_line(&json::log_line(&line))?;
                            } else {
                                writeln!(stdout, "{}", style.render(&line))?;
                                if args.follow {
                                    stdout.flush()?;
                                }
                            }
                        }
                        Ok(None) => break None,
                        Err(status) if is_transient(&status) => {
                            break Some(status.message().to_owned());
                        }
                        Err(status) => {
                            return Err(status)
                                .context(format!("reading the log of job {}", args.id));
                        }
                    }
                }
            }
            Err(status) if connected_once && is_transient(&status) => {
                Some(status.message().to_owned())
            }
            Err(status) => return Err(status.into()),
        };
        stdout.flush()?;
        let cause = match cause {
            // Without --follow a clean end means every stored line was sent.
            None if !args.follow => {
                if last == args.after_line && !ctx.json() {
                    eprintln!(
                        "no log lines{} (yet: --follow waits for them)",
                        if last > 0 {
                            format!(" after line {last}")
                        } else {
                            String::new()
                        }
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            // With --follow the server ends the stream when the job has ended, or when it shuts
            // down: ask which.
            None => {
                let job = client
                    .get_job(v1::GetJobRequest {
                        id: args.id.clone(),
                    })
                    .await;
                match job {
                    Ok(job) if format::is_terminal(job.get_ref().state) => {
                        return Ok(ExitCode::SUCCESS);
                    }
                    Ok(_) => "the stream ended before the job".to_owned(),
                    Err(status) if is_transient(&status) => status.message().to_owned(),
                    Err(status) => return Err(status.into()),
                }
            }
            Some(cause) => cause,
        };
        if !reconnect::wait(&mut backoff, &cause, |text| eprintln!("{text}")).await {
            anyhow::bail!(
                "lost the log of job {} after line {last} ({cause}); resume with \
                 `reelay job logs {} --after-line {last}`",
                args.id,
                args.id
            );
        }
    }
}

/// How log lines are printed in text.
#[derive(Debug, Clone, Copy)]
struct LineStyle {
    timestamps: bool,
    numbers: bool,
    /// stderr lines in red, Reelay's own dimmed.
    color: bool,
}

impl LineStyle {
    fn render(&self, line: &v1::LogLine) -> String {
        let mut out = String::new();
        if self.timestamps {
            match format::time(line.time.as_ref()) {
                Some(time) => out.push_str(&humantime::format_rfc3339_millis(time).to_string()),
                None => out.push('-'),
            }
            out.push(' ');
        }
        if self.numbers {
            out.push_str(&format!("{:>5} ", line.number));
        }
        let (tag, color) = match v1::LogStream::try_from(line.stream) {
            Ok(v1::LogStream::Stderr) => ("[stderr] ", "31"),
            Ok(v1::LogStream::System) => ("[reelay] ", "2"),
            _ => ("", ""),
        };
        let text = format!("{tag}{}", line.text);
        out.push_str(&tty::paint(&text, color, self.color && !color.is_empty()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(stream: v1::LogStream, text: &str) -> v1::LogLine {
        v1::LogLine {
            number: 7,
            text: text.into(),
            stream: stream as i32,
            time: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            attempt: 1,
        }
    }

    #[test]
    fn stdout_is_verbatim_and_the_rest_is_marked() {
        let plain = LineStyle {
            timestamps: false,
            numbers: false,
            color: false,
        };
        assert_eq!(
            plain.render(&line(v1::LogStream::Stdout, "step 1")),
            "step 1"
        );
        assert_eq!(
            plain.render(&line(v1::LogStream::Stderr, "oops")),
            "[stderr] oops"
        );
        assert_eq!(
            plain.render(&line(v1::LogStream::System, "exit 0")),
            "[reelay] exit 0"
        );
    }

    #[test]
    fn numbers_and_times_come_first() {
        let full = LineStyle {
            timestamps: true,
            numbers: true,
            color: false,
        };
        assert_eq!(
            full.render(&line(v1::LogStream::Stdout, "step 1")),
            "2023-11-14T22:13:20.000Z     7 step 1"
        );
        let colored = LineStyle {
            timestamps: false,
            numbers: false,
            color: true,
        };
        assert_eq!(
            colored.render(&line(v1::LogStream::Stderr, "oops")),
            "\x1b[31m[stderr] oops\x1b[0m"
        );
    }
}
