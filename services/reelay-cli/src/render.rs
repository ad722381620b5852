//! Showing a watched job: a live progress bar on a terminal, one line per change in a log file or a
//! pipe, JSON lines for scripts. A parent's steps (see [`crate::render_steps`]) get a bar each
//! under the parent's while they run, or their own lines in a pipe.
//!
//! The renderer only shows; the watch loop ([`crate::job::watch`]) owns the stream and prints the
//! outcome (succeeded, failed, cancelled) once the job ends.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use reelay_proto::v1;

use crate::format::{self, job_state};
use crate::json;
use crate::render_steps::{self, StepBars};

/// How a watch is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A progress bar on stderr, state changes as lines above it.
    Bar,
    /// One line per change on stdout, for logs and pipes.
    Lines,
    /// One JSON object per event on stdout.
    Json,
}

/// Shows the events of one job as they arrive.
#[derive(Debug)]
pub(crate) struct Renderer {
    mode: Mode,
    /// The job's bar and, under it, its running steps' bars (a parent's), on a terminal.
    bars: Option<(MultiProgress, ProgressBar)>,
    step_bars: StepBars,
    /// The job as of the last event, to tell what changed.
    last: Option<v1::Job>,
    /// A state already printed (by `job submit`), not repeated for the first snapshot.
    announced: Option<i32>,
}

impl Renderer {
    pub(crate) fn new(mode: Mode, announced: Option<i32>) -> Self {
        let bars = (mode == Mode::Bar).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let bar = multi.add(new_bar());
            bar.enable_steady_tick(Duration::from_millis(120));
            (multi, bar)
        });
        Renderer {
            mode,
            bars,
            step_bars: StepBars::new(),
            last: None,
            announced,
        }
    }

    pub(crate) fn event(&mut self, event: &v1::JobEvent) -> anyhow::Result<()> {
        let before = self.last.as_ref().and_then(|job| job.steps.clone());
        let steps = event.job.as_ref().and_then(|job| job.steps.as_ref());
        match self.mode {
            Mode::Json => json::print_line(&json::event(event))?,
            Mode::Lines => {
                let mut lines: Vec<String> = self.line_for(event).into_iter().collect();
                // A parent's steps: what changed in them, indented under the parent's line.
                if let Some(steps) = steps {
                    lines.extend(
                        render_steps::change_lines(before.as_ref(), steps)
                            .into_iter()
                            .map(|line| format!("  {line}")),
                    );
                }
                let time = format::time(event.time.as_ref())
                    .map(|t| humantime::format_rfc3339_seconds(t).to_string())
                    .unwrap_or_default();
                for line in lines {
                    crate::out::line(format_args!("{time} {line}"))?;
                }
            }
            Mode::Bar => {
                if let Some(line) = self.line_for(event).filter(|_| !is_progress_only(event)) {
                    self.say(&line);
                }
                if let Some(steps) = steps {
                    for line in render_steps::trouble_lines(before.as_ref(), steps) {
                        self.say(&format!("  {line}"));
                    }
                }
                if let (Some((multi, bar)), Some(job)) = (&self.bars, &event.job) {
                    update_bar(bar, job);
                    if let Some(steps) = steps {
                        self.step_bars.update(multi, steps);
                    }
                }
            }
        }
        if let Some(job) = &event.job {
            self.last = Some(job.clone());
        }
        Ok(())
    }

    /// A line on stderr that does not break the bars (reconnection notices).
    pub(crate) fn say(&self, text: &str) {
        match &self.bars {
            Some((multi, _)) => multi.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    /// Removes the bars; gives the job as last seen.
    pub(crate) fn finish(mut self) -> Option<v1::Job> {
        if let Some((multi, bar)) = &self.bars {
            self.step_bars.clear(multi);
            bar.finish_and_clear();
            let _ = multi.clear();
        }
        self.last
    }

    fn line_for(&mut self, event: &v1::JobEvent) -> Option<String> {
        let announced = self.announced.take();
        let first = self.last.is_none();
        let state = event.job.as_ref().map(|job| job.state);
        // A state already printed, or a job already over (the outcome says how): no line.
        if first
            && event.change == v1::JobChange::Snapshot as i32
            && (state == announced || state.is_some_and(format::is_terminal))
        {
            return None;
        }
        change_line(self.last.as_ref(), event)
    }
}

fn is_progress_only(event: &v1::JobEvent) -> bool {
    event.change == v1::JobChange::Progress as i32
}

fn new_bar() -> ProgressBar {
    let bar = ProgressBar::new(100);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner:.cyan} {prefix:9.bold} [{bar:32.cyan/blue}] {pos:>3}%  {wide_msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message("connecting…");
    bar
}

fn update_bar(bar: &ProgressBar, job: &v1::Job) {
    bar.set_prefix(job_state(job.state));
    bar.set_position(u64::from(job.progress.min(100)));
    bar.set_message(bar_message(job));
}

/// What the bar says next to the percentage: the stage, speed and ETA while running, why it waits
/// while queued.
pub(crate) fn bar_message(job: &v1::Job) -> String {
    if job.state == v1::JobState::Queued as i32 {
        return format::job_note(job);
    }
    let mut parts = Vec::new();
    if !job.stage.is_empty() {
        parts.push(job.stage.clone());
    }
    // A parent has no stage of its own: how far its steps are (`pieces: 3 of 12 done, 2 running`).
    if job.stage.is_empty() && job.steps.is_some() && !format::is_terminal(job.state) {
        parts.push(job.message.clone());
    }
    // Staging the input or uploading the outputs: the bytes moved and the rate.
    if let Some(transfer) = job.transfer.as_ref().filter(|t| t.total_bytes > 0) {
        parts.push(format!(
            "{} of {}",
            format::size(transfer.done_bytes),
            format::size(transfer.total_bytes)
        ));
        if transfer.bytes_per_second >= 1.0 {
            parts.push(format!(
                "{}/s",
                format::size(transfer.bytes_per_second as u64)
            ));
        }
    }
    if job.fps > 0.0 {
        parts.push(format!("{:.1} fps", job.fps));
    }
    if job.eta_seconds >= 0.5 {
        parts.push(format!("eta {}", format::eta(job.eta_seconds)));
    }
    if !job.node_reachable && !job.node_id.is_empty() {
        parts.push(format!("node {} not answering", job.node_id));
    }
    parts.join(" · ")
}

/// The line that tells a person what an event changed; `None` when nothing worth a line did.
/// Terminal states get no line here: the watch prints the outcome.
pub(crate) fn change_line(prev: Option<&v1::Job>, event: &v1::JobEvent) -> Option<String> {
    let job = event.job.as_ref()?;
    if event.change == v1::JobChange::Deleted as i32 {
        return Some(format!("job {} was deleted", job.id));
    }
    let Some(prev) = prev else {
        return Some(snapshot_line(job));
    };
    if prev.state != job.state {
        return state_line(prev, job);
    }
    if prev.node_reachable != job.node_reachable && !job.node_id.is_empty() {
        return Some(if job.node_reachable {
            format!("node {} answers again", job.node_id)
        } else {
            format!(
                "node {} is not answering; the job keeps its state until it comes back",
                job.node_id
            )
        });
    }
    if job.outputs.len() > prev.outputs.len() {
        let names: Vec<String> = job
            .outputs
            .iter()
            .filter(|file| !prev.outputs.iter().any(|old| old.name == file.name))
            .map(|file| format!("{} ({})", file.name, format::size(file.size)))
            .collect();
        if !names.is_empty() {
            return Some(format!("output {}", names.join(", ")));
        }
    }
    if job.cancel_requested && !prev.cancel_requested {
        return Some("cancel requested".to_owned());
    }
    if prev.progress != job.progress || prev.stage != job.stage {
        let message = bar_message(job);
        return Some(if message.is_empty() {
            format!("{}%", job.progress)
        } else {
            format!("{}% {message}", job.progress)
        });
    }
    if prev.message != job.message && !job.message.is_empty() {
        return Some(job.message.clone());
    }
    None
}

/// How a job stands when a watch starts.
fn snapshot_line(job: &v1::Job) -> String {
    let state = job_state(job.state);
    let mut line = format!("job {} is {state}", job.id);
    match v1::JobState::try_from(job.state) {
        Ok(v1::JobState::Queued) => {
            let note = format::job_note(job);
            if !note.is_empty() {
                line.push_str(&format!(": {note}"));
            }
        }
        Ok(v1::JobState::Assigned | v1::JobState::Running) => {
            // A parent runs on no node: its steps do.
            if !job.node_id.is_empty() {
                line.push_str(&format!(" on {}", job.node_id));
            }
            line.push_str(&format!(", {}%", job.progress));
            let message = bar_message(job);
            if !message.is_empty() {
                line.push_str(&format!(" {message}"));
            }
        }
        _ => {}
    }
    if job.cancel_requested && !format::is_terminal(job.state) {
        line.push_str(" (cancel requested)");
    }
    line
}

fn state_line(prev: &v1::Job, job: &v1::Job) -> Option<String> {
    let line = match v1::JobState::try_from(job.state).ok()? {
        v1::JobState::Queued if prev.attempt > 0 && !job.error.is_empty() => format!(
            "QUEUED again: attempt {} failed: {}",
            prev.attempt.max(job.attempt),
            job.error
        ),
        v1::JobState::Queued => format!("QUEUED: {}", format::job_note(job)),
        v1::JobState::Assigned => format!("ASSIGNED to {}", job.node_id),
        v1::JobState::Running if job.node_id.is_empty() => match job.message.as_str() {
            "" => "RUNNING".to_owned(),
            message => format!("RUNNING: {message}"),
        },
        v1::JobState::Running => format!("RUNNING on {} (attempt {})", job.node_id, job.attempt),
        _ => return None,
    };
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: v1::JobState, progress: u32) -> v1::Job {
        v1::Job {
            id: "j1".into(),
            state: state as i32,
            progress,
            node_id: "local".into(),
            node_reachable: true,
            attempt: 1,
            ..Default::default()
        }
    }

    fn event(change: v1::JobChange, job: v1::Job) -> v1::JobEvent {
        v1::JobEvent {
            job_id: job.id.clone(),
            version: 1,
            job: Some(job),
            change: change as i32,
            previous_state: 0,
            time: None,
        }
    }

    #[test]
    fn a_watch_starts_with_where_the_job_stands() {
        let mut running = job(v1::JobState::Running, 40);
        running.stage = "counting".into();
        let line = change_line(None, &event(v1::JobChange::Snapshot, running)).unwrap();
        assert_eq!(line, "job j1 is RUNNING on local, 40% counting");
        let mut queued = job(v1::JobState::Queued, 0);
        queued.pending_reason = "no node has a free slot".into();
        let line = change_line(None, &event(v1::JobChange::Snapshot, queued)).unwrap();
        assert_eq!(line, "job j1 is QUEUED: no node has a free slot");
    }

    #[test]
    fn state_changes_and_progress_get_lines() {
        let assigned = job(v1::JobState::Assigned, 0);
        let running = job(v1::JobState::Running, 0);
        let line = change_line(
            Some(&assigned),
            &event(v1::JobChange::State, running.clone()),
        );
        assert_eq!(line.unwrap(), "RUNNING on local (attempt 1)");
        let mut later = job(v1::JobState::Running, 60);
        later.stage = "encoding".into();
        later.fps = 29.97;
        later.eta_seconds = 65.0;
        let line = change_line(
            Some(&running),
            &event(v1::JobChange::Progress, later.clone()),
        );
        assert_eq!(line.unwrap(), "60% encoding · 30.0 fps · eta 1m05s");
        // Nothing visible changed.
        assert_eq!(
            change_line(Some(&later), &event(v1::JobChange::Info, later.clone())),
            None
        );
    }

    #[test]
    fn transfers_show_bytes_and_rate() {
        let mut staging = job(v1::JobState::Running, 25);
        staging.stage = "staging".into();
        staging.eta_seconds = 6.0;
        staging.transfer = Some(v1::Transfer {
            done_bytes: 10 << 20,
            total_bytes: 40 << 20,
            bytes_per_second: 5.0 * 1048576.0,
        });
        assert_eq!(
            bar_message(&staging),
            "staging · 10.0 MiB of 40.0 MiB · 5.0 MiB/s · eta 6s"
        );
        let running = job(v1::JobState::Running, 0);
        let line = change_line(Some(&running), &event(v1::JobChange::Progress, staging));
        assert_eq!(
            line.unwrap(),
            "25% staging · 10.0 MiB of 40.0 MiB · 5.0 MiB/s · eta 6s"
        );
        // The rate is not known yet at the first report.
        let mut uploading = job(v1::JobState::Running, 0);
        uploading.stage = "uploading".into();
        uploading.transfer = Some(v1::Transfer {
            done_bytes: 0,
            total_bytes: 2048,
            bytes_per_second: 0.0,
        });
        assert_eq!(bar_message(&uploading), "uploading · 0 B of 2.0 KiB");
    }

    #[test]
    fn the_end_is_left_to_the_outcome() {
        let running = job(v1::JobState::Running, 100);
        let done = job(v1::JobState::Succeeded, 100);
        assert_eq!(
            change_line(Some(&running), &event(v1::JobChange::State, done)),
            None
        );
    }

    #[test]
    fn a_failed_attempt_that_is_retried_says_so() {
        let running = job(v1::JobState::Running, 30);
        let mut queued = job(v1::JobState::Queued, 0);
        queued.error = "exit code 3".into();
        let line = change_line(Some(&running), &event(v1::JobChange::State, queued));
        assert_eq!(line.unwrap(), "QUEUED again: attempt 1 failed: exit code 3");
    }

    #[test]
    fn node_loss_is_a_condition_not_a_state() {
        let running = job(v1::JobState::Running, 30);
        let mut lost = running.clone();
        lost.node_reachable = false;
        let line = change_line(Some(&running), &event(v1::JobChange::Node, lost)).unwrap();
        assert!(line.starts_with("node local is not answering"), "{line}");
    }

    fn parent(progress: u32) -> v1::Job {
        v1::Job {
            id: "p1".into(),
            state: v1::JobState::Running as i32,
            progress,
            message: "pieces: 1 of 4 done, 2 running".into(),
            fps: 20.0,
            eta_seconds: 3.0,
            steps: Some(v1::Steps::default()),
            ..Default::default()
        }
    }

    #[test]
    fn a_parent_runs_on_no_node_and_says_how_far_its_pieces_are() {
        let line = change_line(None, &event(v1::JobChange::Snapshot, parent(37))).unwrap();
        assert_eq!(
            line,
            "job p1 is RUNNING, 37% pieces: 1 of 4 done, 2 running · 20.0 fps · eta 3s"
        );
        let line = change_line(
            Some(&parent(37)),
            &event(v1::JobChange::Progress, parent(52)),
        );
        assert_eq!(
            line.unwrap(),
            "52% pieces: 1 of 4 done, 2 running · 20.0 fps · eta 3s"
        );
        // A retry of a failed parent.
        let mut failed = parent(60);
        failed.state = v1::JobState::Failed as i32;
        let mut again = parent(60);
        again.message = "queued again by retry: the steps that did not succeed run again".into();
        let line = change_line(Some(&failed), &event(v1::JobChange::State, again)).unwrap();
        assert_eq!(
            line,
            "RUNNING: queued again by retry: the steps that did not succeed run again"
        );
        // Once it ended, its message is no longer a progress note.
        let mut done = parent(100);
        done.state = v1::JobState::Succeeded as i32;
        done.fps = 0.0;
        done.eta_seconds = 0.0;
        assert_eq!(bar_message(&done), "");
    }

    #[test]
    fn the_announced_state_is_not_repeated() {
        let mut renderer = Renderer::new(Mode::Lines, Some(v1::JobState::Queued as i32));
        let queued = event(v1::JobChange::Snapshot, job(v1::JobState::Queued, 0));
        assert_eq!(renderer.line_for(&queued), None);
        let mut renderer = Renderer::new(Mode::Lines, Some(v1::JobState::Queued as i32));
        let running = event(v1::JobChange::Snapshot, job(v1::JobState::Running, 5));
        assert!(renderer.line_for(&running).is_some());
        let mut renderer = Renderer::new(Mode::Lines, None);
        let done = event(v1::JobChange::Snapshot, job(v1::JobState::Succeeded, 100));
        assert_eq!(renderer.line_for(&done), None);
    }
}
