//! Bounded backoff for resuming a dropped stream (watch, logs, download).
//!
//! The delay doubles from 250 ms up to 5 s and starts over once a message arrives. After
//! [`GIVE_UP_AFTER`] without a single message the command stops with the last error: a watcher
//! must not hang forever on a coordinator that is gone for good.

use std::time::{Duration, Instant};

/// The first delay after a drop.
const FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest delay between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// How long to keep trying without receiving anything.
pub(crate) const GIVE_UP_AFTER: Duration = Duration::from_secs(300);

/// The state of reconnection attempts of one stream.
#[derive(Debug)]
pub(crate) struct Backoff {
    /// Attempts since the last message arrived.
    attempts: u32,
    /// When the stream first failed since the last message; `None` while it works.
    failing_since: Option<Instant>,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff {
            attempts: 0,
            failing_since: None,
        }
    }

    /// A message arrived: the stream works again.
    pub(crate) fn reset(&mut self) {
        self.attempts = 0;
        self.failing_since = None;
    }

    /// The delay before the next attempt, or `None` when it is time to give up.
    pub(crate) fn next_delay(&mut self, now: Instant) -> Option<Duration> {
        let since = *self.failing_since.get_or_insert(now);
        if now.duration_since(since) >= GIVE_UP_AFTER {
            return None;
        }
        let delay = delay(self.attempts);
        self.attempts = self.attempts.saturating_add(1);
        Some(delay)
    }
}

/// The delay before attempt `attempt` (from 0).
fn delay(attempt: u32) -> Duration {
    FIRST_DELAY
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(MAX_DELAY)
}

/// Says on stderr that the stream dropped, waits, and tells whether to try again.
/// `say` prints a line (through the progress bar when one is drawn).
pub(crate) async fn wait(backoff: &mut Backoff, cause: &str, say: impl Fn(&str)) -> bool {
    let Some(delay) = backoff.next_delay(Instant::now()) else {
        return false;
    };
    say(&format!(
        "reconnecting in {}... ({cause})",
        crate::format::duration(delay)
    ));
    tokio::time::sleep(delay).await;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_a_bound() {
        let delays: Vec<u64> = (0..8).map(|n| delay(n).as_millis() as u64).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
        assert_eq!(delay(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn gives_up_after_a_while_without_messages_and_starts_over_after_one() {
        let start = Instant::now();
        let mut backoff = Backoff::new();
        assert_eq!(backoff.next_delay(start), Some(FIRST_DELAY));
        assert_eq!(
            backoff.next_delay(start + Duration::from_secs(1)),
            Some(FIRST_DELAY * 2)
        );
        assert_eq!(backoff.next_delay(start + GIVE_UP_AFTER), None);
        backoff.reset();
        let later = start + GIVE_UP_AFTER + Duration::from_secs(1);
        assert_eq!(backoff.next_delay(later), Some(FIRST_DELAY));
    }
}
