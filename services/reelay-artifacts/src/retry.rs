//! Waiting out an unreachable store: exponential backoff up to a deadline.

use std::time::{Duration, Instant};

/// First wait after a failure.
const FIRST: Duration = Duration::from_millis(500);
/// Longest wait between two tries.
const LONGEST: Duration = Duration::from_secs(30);

/// When to try again after a retryable failure, until `deadline`.
#[derive(Debug, Clone)]
pub struct Backoff {
    deadline: Instant,
    next: Duration,
}

impl Backoff {
    /// Tries until `give_up_after` from `now`.
    pub fn new(give_up_after: Duration, now: Instant) -> Self {
        Backoff {
            deadline: now + give_up_after,
            next: FIRST,
        }
    }

    /// How long to wait before the next try, or `None` when the deadline has passed.
    pub fn next_delay(&mut self, now: Instant) -> Option<Duration> {
        if now >= self.deadline {
            return None;
        }
        let wait = self.next.min(self.deadline - now);
        self.next = (self.next * 2).min(LONGEST);
        Some(wait)
    }

    /// When this gives up.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_deadline() {
        let now = Instant::now();
        let mut backoff = Backoff::new(Duration::from_secs(3), now);
        assert_eq!(backoff.next_delay(now), Some(Duration::from_millis(500)));
        assert_eq!(backoff.next_delay(now), Some(Duration::from_secs(1)));
        assert_eq!(backoff.next_delay(now), Some(Duration::from_secs(2)));
        // Never past the deadline.
        assert_eq!(
            backoff.next_delay(now + Duration::from_millis(2500)),
            Some(Duration::from_millis(500))
        );
        assert_eq!(backoff.next_delay(now + Duration::from_secs(3)), None);
    }
}
