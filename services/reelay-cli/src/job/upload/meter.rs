//! How an upload shows its progress on stderr (stdout stays for what the command prints): a bar
//! with bytes, rate and ETA on a terminal; elsewhere (a log, CI) a line at every 10%.
//!
//! A [`Meter`] follows one phase — hashing the file, then sending it — and may be moved to the
//! reading thread, so it is a cheap clone of a shared state.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::format;

/// How much an upload shows of its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Show {
    /// A bar when stderr is a terminal, a line per 10% otherwise.
    Auto,
    /// Nothing but what goes wrong (`-q`; callers that draw their own progress).
    Nothing,
}

/// Progress of one phase, shared with the thread that moves the bytes.
#[derive(Debug, Clone)]
pub(crate) struct Meter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bar: Option<ProgressBar>,
    /// Lines per 10% (no terminal, and the caller asked for them).
    lines: bool,
    /// `hashing clip.mp4`, `uploading clip.mp4`.
    label: String,
    total: u64,
    state: Mutex<State>,
    /// The overall meter of several files, told of every change of this one.
    parent: Option<Meter>,
}

#[derive(Debug)]
struct State {
    /// Bytes done when the rate started counting (a resume starts past 0).
    start: u64,
    started: Instant,
    done: u64,
    /// The last tenth a line was printed for.
    printed_tenth: u64,
}

impl Meter {
    /// A meter for `total` bytes. `lines`: whether to print a line per 10% when there is no
    /// terminal (a quick phase need not).
    pub(crate) fn new(show: Show, label: String, total: u64, lines: bool) -> Self {
        let terminal = show == Show::Auto && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = terminal.then(|| new_bar(&label, total));
        Meter {
            inner: Arc::new(Inner {
                bar,
                lines: show == Show::Auto && !terminal && lines,
                label,
                total,
                state: Mutex::new(State {
                    start: 0,
                    started: Instant::now(),
                    done: 0,
                    printed_tenth: 0,
                }),
                parent: None,
            }),
        }
    }

    /// A meter of one file of several that shows nothing itself: its bytes count in this one.
    pub(crate) fn child(&self, label: String, total: u64) -> Meter {
        let mut child = Meter::new(Show::Nothing, label, total, false);
        if let Some(inner) = Arc::get_mut(&mut child.inner) {
            inner.parent = Some(self.clone());
        }
        child
    }

    /// Moves this meter by `delta` bytes (a child's change).
    fn shift(&self, delta: i64) {
        let done = self.state().done.saturating_add_signed(delta);
        self.set(done);
    }

    /// The phase (re)starts at `done` bytes (a resume): the rate counts from here.
    pub(crate) fn restart_at(&self, done: u64) {
        let mut state = self.state();
        let previous = state.done;
        state.start = done;
        state.done = done;
        state.started = Instant::now();
        state.printed_tenth = tenth(done, self.inner.total);
        if let Some(bar) = &self.inner.bar {
            bar.reset();
            bar.set_position(done);
        }
        drop(state);
        if let Some(parent) = &self.inner.parent {
            parent.shift(done as i64 - previous as i64);
        }
    }

    /// `done` bytes of the total are through.
    pub(crate) fn set(&self, done: u64) {
        if let Some(bar) = &self.inner.bar {
            bar.set_position(done);
        }
        let line = {
            let mut state = self.state();
            let previous = state.done;
            state.done = done;
            if let Some(parent) = &self.inner.parent {
                parent.shift(done as i64 - previous as i64);
            }
            let tenth = tenth(done, self.inner.total);
            if !self.inner.lines || tenth <= state.printed_tenth {
                return;
            }
            state.printed_tenth = tenth;
            progress_line(
                &self.inner.label,
                done,
                self.inner.total,
                rate(&state, Instant::now()),
            )
        };
        eprintln!("{line}");
    }

    /// A line on stderr that does not break the bar.
    pub(crate) fn say(&self, text: &str) {
        match &self.inner.bar {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    /// Bytes per second since the phase (re)started.
    pub(crate) fn rate(&self) -> f64 {
        rate(&self.state(), Instant::now())
    }

    /// How long since the phase (re)started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.state().started.elapsed()
    }

    /// Removes the bar.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.inner.bar {
            bar.finish_and_clear();
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn new_bar(label: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Which tenth of the total `done` reached (0 to 10); an empty file is done at once.
fn tenth(done: u64, total: u64) -> u64 {
    if total == 0 {
        return 10;
    }
    (u128::from(done.min(total)) * 10 / u128::from(total)) as u64
}

fn rate(state: &State, now: Instant) -> f64 {
    let seconds = now.duration_since(state.started).as_secs_f64();
    if seconds <= 0.0 {
        return 0.0;
    }
    state.done.saturating_sub(state.start) as f64 / seconds
}

/// `uploading clip.mp4: 30% (19.2 MiB of 64.0 MiB, 41.3 MiB/s)`.
fn progress_line(label: &str, done: u64, total: u64, rate: f64) -> String {
    let percent = tenth(done, total) * 10;
    let speed = if rate > 0.0 {
        format!(", {}/s", format::size(rate as u64))
    } else {
        String::new()
    };
    format!(
        "{label}: {percent}% ({} of {}{speed})",
        format::size(done),
        format::size(total)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_add_up_in_their_parent() {
        let all = Meter::new(Show::Nothing, "uploading 2 files".into(), 300, false);
        let a = all.child("a".into(), 100);
        let b = all.child("b".into(), 200);
        a.set(60);
        b.set(150);
        assert_eq!(all.state().done, 210);
        // A resume sends again what was not stored: the parent goes back as much.
        b.restart_at(100);
        assert_eq!(all.state().done, 160);
        a.set(100);
        b.set(200);
        assert_eq!(all.state().done, 300);
    }

    #[test]
    fn tenths_count_whole_steps() {
        assert_eq!(tenth(0, 100), 0);
        assert_eq!(tenth(9, 100), 0);
        assert_eq!(tenth(10, 100), 1);
        assert_eq!(tenth(99, 100), 9);
        assert_eq!(tenth(100, 100), 10);
        assert_eq!(tenth(0, 0), 10);
        assert_eq!(tenth(u64::MAX, u64::MAX), 10);
    }

    #[test]
    fn lines_say_bytes_and_rate() {
        assert_eq!(
            progress_line("uploading clip.mp4", 3 << 20, 10 << 20, 2.5 * 1048576.0),
            "uploading clip.mp4: 30% (3.0 MiB of 10.0 MiB, 2.5 MiB/s)"
        );
        assert_eq!(
            progress_line("hashing a", 0, 10, 0.0),
            "hashing a: 0% (0 B of 10 B)"
        );
    }

    #[test]
    fn a_resume_counts_the_rate_from_where_it_restarted() {
        let meter = Meter::new(Show::Nothing, "x".into(), 100, true);
        meter.restart_at(40);
        {
            let mut state = meter.state();
            state.started = Instant::now() - Duration::from_secs(2);
        }
        meter.set(60);
        let rate = meter.rate();
        assert!((9.0..=10.5).contains(&rate), "{rate}");
        assert_eq!(meter.state().printed_tenth, 4, "Nothing shows no lines");
    }
}
