//! A parent's steps in a watch (`reelay job watch PARENT`): what changed between two versions of
//! the parent's `steps` as lines, and a bar per running step under the parent's bar.
//!
//! Everything comes from the parent's own WatchJob events: each change of a step is a new version
//! of the parent carrying every step's state, node and progress, so no stream per step is needed.

use std::collections::HashMap;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use reelay_proto::v1;

use crate::format;

/// Running steps shown with a bar of their own at most; the parent's message counts the others.
const MAX_STEP_BARS: usize = 12;

/// One step of a parent, in order: the split, each piece, the join.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepView<'a> {
    /// `split`, `piece 2/4`, `join`.
    pub(crate) label: Label,
    pub(crate) piece: &'a v1::Piece,
}

/// What a step is called on screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Label {
    Split,
    /// Index from 0 and the number of pieces.
    Piece(usize, usize),
    Join,
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Label::Split => f.write_str("split"),
            // From 1, as the parent's messages and errors count them ("piece 2 of 3").
            Label::Piece(index, count) => write!(f, "piece {}/{count}", index + 1),
            Label::Join => f.write_str("join"),
        }
    }
}

/// The steps made so far, in their order.
pub(crate) fn steps_of(steps: &v1::Steps) -> Vec<StepView<'_>> {
    let count = steps.pieces.len();
    let split = steps.split.iter().map(|piece| StepView {
        label: Label::Split,
        piece,
    });
    let pieces = steps
        .pieces
        .iter()
        .enumerate()
        .map(|(index, piece)| StepView {
            label: Label::Piece(index, count),
            piece,
        });
    let join = steps.join.iter().map(|piece| StepView {
        label: Label::Join,
        piece,
    });
    split.chain(pieces).chain(join).collect()
}

fn is_running(piece: &v1::Piece) -> bool {
    piece.state == v1::JobState::Running as i32 || piece.state == v1::JobState::Assigned as i32
}

/// `RUNNING on w1 (job …)`, `SUCCEEDED`, `QUEUED (job …)`: a step's state, for a line.
fn state_text(piece: &v1::Piece, with_id: bool) -> String {
    let mut text = format::job_state(piece.state);
    if is_running(piece) && !piece.node_id.is_empty() {
        text.push_str(&format!(" on {}", piece.node_id));
    }
    if with_id {
        text.push_str(&format!(" (job {})", piece.job_id));
    }
    text
}

/// `45% · 10.0 fps on w1`: a running step's progress, for a line or next to its bar.
fn progress_text(piece: &v1::Piece) -> String {
    let mut text = format!("{}%", piece.progress.min(100));
    if piece.fps > 0.0 {
        text.push_str(&format!(" · {:.1} fps", piece.fps));
    }
    if !piece.node_id.is_empty() {
        text.push_str(&format!(" on {}", piece.node_id));
    }
    text
}

/// The lines that tell what changed in the steps from `prev` to `next` (`prev` none: the watch
/// begins, and each step under way gets a line). A step that appears or changes state gets a line
/// with its job id (to look at it: `reelay job logs ID`); a running step whose progress moved gets
/// its progress.
pub(crate) fn change_lines(prev: Option<&v1::Steps>, next: &v1::Steps) -> Vec<String> {
    let Some(prev) = prev else {
        return steps_of(next)
            .into_iter()
            .filter(|step| is_running(step.piece))
            .map(|step| format!("{} {}", step.label, state_text(step.piece, true)))
            .collect();
    };
    let before: HashMap<&str, &v1::Piece> = steps_of(prev)
        .into_iter()
        .map(|step| (step.piece.job_id.as_str(), step.piece))
        .collect();
    let mut lines = Vec::new();
    for step in steps_of(next) {
        let piece = step.piece;
        match before.get(piece.job_id.as_str()) {
            Some(old) if old.state == piece.state => {
                if is_running(piece) && old.progress != piece.progress {
                    lines.push(format!("{} {}", step.label, progress_text(piece)));
                }
            }
            Some(_) => {
                // A success needs no id to follow up on; anything else may.
                let with_id = piece.state != v1::JobState::Succeeded as i32;
                lines.push(format!("{} {}", step.label, state_text(piece, with_id)));
            }
            None => lines.push(format!("{} {}", step.label, state_text(piece, true))),
        }
    }
    lines
}

/// Steps that ended badly (failed, cancelled) between `prev` and `next`: the lines a terminal
/// shows above the bars, where successes and progress are the bars' to show.
pub(crate) fn trouble_lines(prev: Option<&v1::Steps>, next: &v1::Steps) -> Vec<String> {
    let Some(prev) = prev else { return Vec::new() };
    let before: HashMap<&str, i32> = steps_of(prev)
        .into_iter()
        .map(|step| (step.piece.job_id.as_str(), step.piece.state))
        .collect();
    steps_of(next)
        .into_iter()
        .filter(|step| {
            let state = step.piece.state;
            (state == v1::JobState::Failed as i32 || state == v1::JobState::Cancelled as i32)
                && before.get(step.piece.job_id.as_str()) != Some(&state)
        })
        .map(|step| format!("{} {}", step.label, state_text(step.piece, true)))
        .collect()
}

/// A bar per running step, under the parent's bar, on a terminal.
#[derive(Debug)]
pub(crate) struct StepBars {
    /// Bars of running steps, by step job id.
    bars: HashMap<String, ProgressBar>,
}

impl StepBars {
    pub(crate) fn new() -> Self {
        StepBars {
            bars: HashMap::new(),
        }
    }

    /// Adds bars for steps that started, moves the others, removes those that ended.
    pub(crate) fn update(&mut self, multi: &MultiProgress, steps: &v1::Steps) {
        let views = steps_of(steps);
        for step in &views {
            let piece = step.piece;
            if !is_running(piece) {
                if let Some(bar) = self.bars.remove(&piece.job_id) {
                    bar.finish_and_clear();
                    multi.remove(&bar);
                }
                continue;
            }
            if !self.bars.contains_key(&piece.job_id) && self.bars.len() < MAX_STEP_BARS {
                let bar = multi.add(step_bar(step.label));
                self.bars.insert(piece.job_id.clone(), bar);
            }
            if let Some(bar) = self.bars.get(&piece.job_id) {
                bar.set_position(u64::from(piece.progress.min(100)));
                bar.set_message(bar_message(piece));
            }
        }
        // Steps no longer listed (a retry made them anew): their bars go.
        self.bars.retain(|id, bar| {
            let listed = views.iter().any(|step| &step.piece.job_id == id);
            if !listed {
                bar.finish_and_clear();
                multi.remove(bar);
            }
            listed
        });
    }

    /// Removes every bar.
    pub(crate) fn clear(&mut self, multi: &MultiProgress) {
        for (_, bar) in self.bars.drain() {
            bar.finish_and_clear();
            multi.remove(&bar);
        }
    }
}

fn step_bar(label: Label) -> ProgressBar {
    let bar = ProgressBar::new(100);
    if let Ok(style) =
        ProgressStyle::with_template("  {prefix:12} [{bar:24.cyan/blue}] {pos:>3}%  {wide_msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_string());
    bar
}

/// Next to a step's bar: its node and speed.
fn bar_message(piece: &v1::Piece) -> String {
    let mut parts = Vec::new();
    if !piece.node_id.is_empty() {
        parts.push(piece.node_id.clone());
    }
    if piece.fps > 0.0 {
        parts.push(format!("{:.1} fps", piece.fps));
    }
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(id: &str, state: v1::JobState, progress: u32, node: &str) -> v1::Piece {
        v1::Piece {
            job_id: id.into(),
            seconds: 1.0,
            state: state as i32,
            progress,
            fps: if state == v1::JobState::Running {
                10.0
            } else {
                0.0
            },
            node_id: node.into(),
        }
    }

    fn steps(split: v1::Piece, pieces: Vec<v1::Piece>, join: Option<v1::Piece>) -> v1::Steps {
        v1::Steps {
            split: Some(split),
            pieces,
            join,
            frame_rate: 10.0,
            total_seconds: 3.0,
        }
    }

    use v1::JobState::{Assigned, Failed, Queued, Running, Succeeded};

    #[test]
    fn steps_come_in_order_with_pieces_counted_from_one() {
        let view = steps(
            piece("s", Succeeded, 100, "w0"),
            vec![piece("a", Running, 5, "w0"), piece("b", Queued, 0, "")],
            Some(piece("j", Queued, 0, "")),
        );
        let labels: Vec<String> = steps_of(&view)
            .iter()
            .map(|step| step.label.to_string())
            .collect();
        assert_eq!(labels, ["split", "piece 1/2", "piece 2/2", "join"]);
    }

    #[test]
    fn a_watch_begins_with_a_line_per_step_under_way() {
        let view = steps(
            piece("s", Succeeded, 100, "w0"),
            vec![
                piece("a", Succeeded, 100, "w0"),
                piece("b", Running, 40, "w1"),
                piece("c", Assigned, 0, "w0"),
                piece("d", Queued, 0, ""),
            ],
            None,
        );
        assert_eq!(
            change_lines(None, &view),
            [
                "piece 2/4 RUNNING on w1 (job b)",
                "piece 3/4 ASSIGNED on w0 (job c)"
            ]
        );
    }

    #[test]
    fn state_changes_and_progress_of_steps_get_lines() {
        let before = steps(piece("s", Running, 50, "w0"), Vec::new(), None);
        // The split is done and made two pieces: one runs, one waits.
        let after = steps(
            piece("s", Succeeded, 100, "w0"),
            vec![piece("a", Running, 0, "w0"), piece("b", Queued, 0, "")],
            None,
        );
        assert_eq!(
            change_lines(Some(&before), &after),
            [
                "split SUCCEEDED",
                "piece 1/2 RUNNING on w0 (job a)",
                "piece 2/2 QUEUED (job b)"
            ]
        );
        let later = steps(
            piece("s", Succeeded, 100, "w0"),
            vec![piece("a", Running, 45, "w0"), piece("b", Queued, 0, "")],
            None,
        );
        assert_eq!(
            change_lines(Some(&after), &later),
            ["piece 1/2 45% · 10.0 fps on w0"]
        );
        // Nothing moved: no line.
        assert!(change_lines(Some(&later), &later).is_empty());
        let failed = steps(
            piece("s", Succeeded, 100, "w0"),
            vec![piece("a", Failed, 45, "w0"), piece("b", Queued, 0, "")],
            None,
        );
        assert_eq!(
            change_lines(Some(&later), &failed),
            ["piece 1/2 FAILED (job a)"]
        );
        assert_eq!(
            trouble_lines(Some(&later), &failed),
            ["piece 1/2 FAILED (job a)"]
        );
        assert!(trouble_lines(Some(&failed), &failed).is_empty());
        assert!(trouble_lines(Some(&before), &after).is_empty());
    }

    #[test]
    fn a_bar_per_running_step_comes_and_goes() {
        let multi = MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
        let mut bars = StepBars::new();
        let running = steps(
            piece("s", Succeeded, 100, "w0"),
            vec![
                piece("a", Running, 30, "w0"),
                piece("b", Running, 60, "w1"),
                piece("c", Queued, 0, ""),
            ],
            None,
        );
        bars.update(&multi, &running);
        assert_eq!(bars.bars.len(), 2);
        assert_eq!(bars.bars["b"].position(), 60);
        assert_eq!(bars.bars["b"].message(), "w1 · 10.0 fps");
        assert_eq!(bars.bars["a"].prefix(), "piece 1/3");
        let next = steps(
            piece("s", Succeeded, 100, "w0"),
            vec![
                piece("a", Succeeded, 100, "w0"),
                piece("b", Running, 80, "w1"),
                piece("c", Running, 0, "w0"),
            ],
            None,
        );
        bars.update(&multi, &next);
        let mut ids: Vec<&String> = bars.bars.keys().collect();
        ids.sort();
        assert_eq!(ids, ["b", "c"]);
        bars.clear(&multi);
        assert!(bars.bars.is_empty());
    }
}
