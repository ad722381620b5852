//! A transfer's bytes, rate and time left, as reported to users while a file moves.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The rate is measured over about this long, so it follows changes without jumping around.
const WINDOW: Duration = Duration::from_secs(3);

/// Counts the bytes of one transfer.
#[derive(Debug, Clone)]
pub struct Meter {
    total: u64,
    done: u64,
    /// (when, done then), oldest first, spanning about [`WINDOW`].
    samples: VecDeque<(Instant, u64)>,
}

impl Meter {
    /// A transfer of `total` bytes of which `done` were already moved (a resumed transfer).
    pub fn new(total: u64, done: u64, now: Instant) -> Self {
        Meter {
            total,
            done,
            samples: VecDeque::from([(now, done)]),
        }
    }

    /// `bytes` more moved at `now`.
    pub fn add(&mut self, bytes: u64, now: Instant) {
        self.done = self.done.saturating_add(bytes);
        self.samples.push_back((now, self.done));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(at, _)| now.duration_since(*at) >= WINDOW)
        {
            self.samples.pop_front();
        }
    }

    pub fn done(&self) -> u64 {
        self.done
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes per second over the last few seconds (0 before there is a measure).
    pub fn rate(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some((first, from)), Some((last, to))) if last > first => {
                (to - from) as f64 / last.duration_since(*first).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// Seconds left at the current rate (`None` while the rate is unknown).
    pub fn eta_seconds(&self) -> Option<f64> {
        let rate = self.rate();
        (rate > 0.0).then(|| self.total.saturating_sub(self.done) as f64 / rate)
    }

    /// 0 to 100.
    pub fn percent(&self) -> u32 {
        if self.total == 0 {
            return 100;
        }
        ((self.done.min(self.total) as f64 / self.total as f64) * 100.0).floor() as u32
    }
}

/// Human bytes: `512 B`, `1.5 MB`, `2.0 GB` (powers of 1000, as transfer rates are given).
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_time_left_follow_the_last_seconds() {
        let start = Instant::now();
        let mut meter = Meter::new(1000, 100, start);
        assert_eq!(meter.rate(), 0.0);
        assert_eq!(meter.eta_seconds(), None);
        meter.add(100, start + Duration::from_secs(1));
        assert_eq!(meter.rate(), 100.0);
        assert_eq!(meter.eta_seconds(), Some(8.0));
        assert_eq!(meter.percent(), 20);
        // Faster later: the old samples leave the window.
        for second in 2..=10 {
            meter.add(10, start + Duration::from_secs(second));
        }
        assert!((meter.rate() - 10.0).abs() < 1e-9, "{}", meter.rate());
        assert_eq!(Meter::new(0, 0, start).percent(), 100);
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(1_500_000.0), "1.5 MB");
        assert_eq!(human_bytes(2e9), "2.0 GB");
    }
}
