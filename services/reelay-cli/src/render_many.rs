//! Showing several watched jobs: on a terminal one overall bar plus a bar per running job, in a
//! log or a pipe one line per state change and outcome, JSON lines for scripts.
//!
//! The renderer only shows; [`crate::job::watch_many`] owns the stream and the exit code.

use std::collections::HashMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use reelay_proto::v1;

use crate::render::{Mode, bar_message, change_line};
use crate::{format, json};

/// Running jobs shown with a bar of their own at most; the others are counted in the overall bar.
const MAX_JOB_BARS: usize = 12;

/// How a followed job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Ended {
    Succeeded,
    Failed,
    Cancelled,
    Deleted,
}

/// Shows the events of many jobs.
#[derive(Debug)]
pub(crate) struct ManyRenderer {
    mode: Mode,
    bars: Option<Bars>,
    /// Jobs by state (queued, assigned, running) and ended, for the overall bar.
    states: HashMap<String, i32>,
    ended: usize,
    failed: usize,
}

#[derive(Debug)]
struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    /// Bars of running jobs, by job id.
    jobs: HashMap<String, ProgressBar>,
}

impl ManyRenderer {
    pub(crate) fn new(mode: Mode) -> Self {
        ManyRenderer {
            mode,
            bars: None,
            states: HashMap::new(),
            ended: 0,
            failed: 0,
        }
    }

    /// Before the first job: the overall bar for `total` jobs.
    pub(crate) fn start(&mut self, total: usize) {
        if self.mode != Mode::Bar {
            return;
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(total as u64));
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner:.cyan} {prefix:.bold} [{bar:32.green/blue}] {pos}/{len}  {wide_msg}",
        ) {
            overall.set_style(style.progress_chars("=> "));
        }
        overall.set_prefix("jobs");
        overall.enable_steady_tick(Duration::from_millis(120));
        self.bars = Some(Bars {
            multi,
            overall,
            jobs: HashMap::new(),
        });
    }

    /// A job as it stood when the watch began.
    pub(crate) fn first(&mut self, label: &str, job: &v1::Job, ended: Option<Ended>) {
        match self.mode {
            Mode::Json => {
                let event = v1::JobEvent {
                    job_id: job.id.clone(),
                    version: job.version,
                    job: Some(job.clone()),
                    change: v1::JobChange::Snapshot as i32,
                    previous_state: 0,
                    time: None,
                };
                // stdout closed: the watch goes on, its outcome still decides the exit code.
                let _ = json::print_line(&json::event(&event));
            }
            // A job that had ended before the watch (submitted before): its outcome at once.
            Mode::Lines if ended.is_some() => {
                let _ = crate::out::line(outcome_line(label, job, ended));
            }
            Mode::Bar if ended.is_some() => self.say(&outcome_line(label, job, ended)),
            Mode::Lines | Mode::Bar => {}
        }
        self.track(label, job, ended);
    }

    /// An event of a followed job; `before` is the job as known until now.
    pub(crate) fn event(
        &mut self,
        label: &str,
        before: &v1::Job,
        event: &v1::JobEvent,
        ended: Option<Ended>,
    ) -> anyhow::Result<()> {
        let Some(job) = &event.job else {
            return Ok(());
        };
        match self.mode {
            Mode::Json => json::print_line(&json::event(event))?,
            Mode::Lines => {
                let line = match ended {
                    Some(_) => Some(outcome_line(label, job, ended)),
                    None if event.change == v1::JobChange::Progress as i32 => None,
                    None => change_line(Some(before), event)
                        .map(|line| format!("{} {line}", name(label, &job.id))),
                };
                if let Some(line) = line {
                    crate::out::line(line)?;
                }
            }
            Mode::Bar => {
                if ended.is_some() {
                    self.say(&outcome_line(label, job, ended));
                }
            }
        }
        self.track(label, job, ended);
        Ok(())
    }

    /// Updates the counts and bars after a job changed.
    fn track(&mut self, label: &str, job: &v1::Job, ended: Option<Ended>) {
        match ended {
            Some(how) => {
                // A job ends once: the follower shows nothing of an ended job.
                self.states.remove(&job.id);
                self.ended += 1;
                if how != Ended::Succeeded {
                    self.failed += 1;
                }
            }
            None => {
                self.states.insert(job.id.clone(), job.state);
            }
        }
        let overall = self.overall_message();
        let ended_count = self.ended as u64;
        let Some(bars) = &mut self.bars else { return };
        let running =
            job.state == v1::JobState::Running as i32 || job.state == v1::JobState::Assigned as i32;
        if ended.is_some() || !running {
            if let Some(bar) = bars.jobs.remove(&job.id) {
                bar.finish_and_clear();
                bars.multi.remove(&bar);
            }
        } else {
            if !bars.jobs.contains_key(&job.id) && bars.jobs.len() < MAX_JOB_BARS {
                let bar = bars.multi.add(job_bar(label));
                bars.jobs.insert(job.id.clone(), bar);
            }
            if let Some(bar) = bars.jobs.get(&job.id) {
                bar.set_position(u64::from(job.progress.min(100)));
                bar.set_message(bar_message(job));
            }
        }
        bars.overall.set_position(ended_count);
        bars.overall.set_message(overall);
    }

    /// `2 running · 5 queued · 1 failed`.
    fn overall_message(&self) -> String {
        let count = |state: v1::JobState| {
            self.states
                .values()
                .filter(|value| **value == state as i32)
                .count()
        };
        let running = count(v1::JobState::Running) + count(v1::JobState::Assigned);
        let queued = count(v1::JobState::Queued);
        let mut parts = Vec::new();
        if running > 0 {
            parts.push(format!("{running} running"));
        }
        if queued > 0 {
            parts.push(format!("{queued} queued"));
        }
        if self.failed > 0 {
            parts.push(format!("{} failed", self.failed));
        }
        parts.join(" · ")
    }

    /// A line on stderr that does not break the bars (reconnection notices, outcomes).
    pub(crate) fn say(&self, text: &str) {
        match &self.bars {
            Some(bars) => {
                if bars.multi.println(text).is_err() {
                    eprintln!("{text}");
                }
            }
            None => eprintln!("{text}"),
        }
    }

    /// Removes the bars.
    pub(crate) fn finish(&mut self) {
        if let Some(bars) = self.bars.take() {
            for bar in bars.jobs.values() {
                bar.finish_and_clear();
            }
            bars.overall.finish_and_clear();
            let _ = bars.multi.clear();
        }
    }
}

fn job_bar(label: &str) -> ProgressBar {
    let bar = ProgressBar::new(100);
    if let Ok(style) =
        ProgressStyle::with_template("  {prefix:24} [{bar:24.cyan/blue}] {pos:>3}%  {wide_msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(format::truncate(label, 24));
    bar
}

/// `clip.mov (job <id>)`, or the id alone when the label is the id.
fn name(label: &str, id: &str) -> String {
    if label.is_empty() || label == id {
        format!("job {id}")
    } else {
        format!("{label} (job {id})")
    }
}

/// `clip.mov (job <id>) succeeded in 2.3s` / `… failed: exit code 3`.
fn outcome_line(label: &str, job: &v1::Job, ended: Option<Ended>) -> String {
    let who = name(label, &job.id);
    let took = took(job);
    match ended {
        Some(Ended::Succeeded) => format!("{who} succeeded{took}"),
        Some(Ended::Failed) => {
            let why = if job.error.is_empty() {
                &job.message
            } else {
                &job.error
            };
            format!("{who} failed{took}: {why}")
        }
        Some(Ended::Cancelled) => format!("{who} was cancelled{took}"),
        Some(Ended::Deleted) => format!("{who} was deleted"),
        None => format!("{who} is {}", format::job_state(job.state)),
    }
}

/// ` in 2.3s`: from the start of the last attempt (or the creation) to the end.
fn took(job: &v1::Job) -> String {
    let start = format::time(job.started_at.as_ref()).or(format::time(job.created_at.as_ref()));
    let end = format::time(job.finished_at.as_ref());
    match (start, end) {
        (Some(start), Some(end)) => match end.duration_since(start) {
            Ok(elapsed) => format!(" in {}", format::duration(elapsed)),
            Err(_) => String::new(),
        },
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, state: v1::JobState) -> v1::Job {
        v1::Job {
            id: id.into(),
            state: state as i32,
            node_id: "w0".into(),
            attempt: 1,
            ..Default::default()
        }
    }

    #[test]
    fn outcomes_name_the_input_and_the_job() {
        let mut failed = job("j1", v1::JobState::Failed);
        failed.error = "exit code 3".into();
        assert_eq!(
            outcome_line("b.mov", &failed, Some(Ended::Failed)),
            "b.mov (job j1) failed: exit code 3"
        );
        let done = job("j2", v1::JobState::Succeeded);
        assert_eq!(
            outcome_line("j2", &done, Some(Ended::Succeeded)),
            "job j2 succeeded"
        );
    }

    #[test]
    fn the_overall_counts_follow_the_jobs() {
        let mut renderer = ManyRenderer::new(Mode::Json);
        renderer.track("a", &job("a", v1::JobState::Queued), None);
        renderer.track("b", &job("b", v1::JobState::Running), None);
        renderer.track("c", &job("c", v1::JobState::Queued), None);
        assert_eq!(renderer.overall_message(), "1 running · 2 queued");
        renderer.track("b", &job("b", v1::JobState::Failed), Some(Ended::Failed));
        renderer.track(
            "a",
            &job("a", v1::JobState::Succeeded),
            Some(Ended::Succeeded),
        );
        assert_eq!(renderer.ended, 2);
        assert_eq!(renderer.overall_message(), "1 queued · 1 failed");
    }
}
