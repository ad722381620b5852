//! Which events of the worker's log may be streamed yet.
//!
//! A state change (an attempt accepted, started, ended) is flushed before the worker relies on it,
//! and it must not reach the coordinator before that either: a coordinator that saw RUNNING from a
//! worker killed before its flush would wait on an attempt the restarted worker remembers as only
//! ASSIGNED (and starts again). So an append that asks for durability *holds* the stream at the
//! event before it until a flush covers it; events appended after it wait behind it, in order.
//! Appends that need no durability (log lines, progress) are visible at once when nothing is held.

use std::collections::BTreeSet;

#[derive(Debug, Default)]
pub(crate) struct Visibility {
    /// The last seq appended.
    last: u64,
    /// The first seq of each durable append that no completed flush covers yet.
    held: BTreeSet<u64>,
}

impl Visibility {
    /// A log whose events up to `last` are all on disk (just opened).
    pub(crate) fn starting_at(last: u64) -> Self {
        Visibility {
            last,
            held: BTreeSet::new(),
        }
    }

    /// Seqs `first..=last` were appended; a `durable` append is held until a flush covers it.
    pub(crate) fn appended(&mut self, first: u64, last: u64, durable: bool) {
        self.last = self.last.max(last);
        if durable {
            self.held.insert(first);
        }
    }

    /// A flush completed that began when `upto` was the last seq appended: everything up to it is
    /// durable.
    pub(crate) fn flushed(&mut self, upto: u64) {
        self.held.retain(|first| *first > upto);
    }

    /// The last seq that may be streamed.
    pub(crate) fn visible(&self) -> u64 {
        match self.held.first() {
            Some(first) => first - 1,
            None => self.last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_without_durability_are_visible_at_once() {
        let mut visibility = Visibility::starting_at(4);
        assert_eq!(visibility.visible(), 4);
        visibility.appended(5, 6, false);
        assert_eq!(visibility.visible(), 6);
    }

    #[test]
    fn a_durable_append_and_all_after_it_wait_for_a_flush_that_covers_it() {
        let mut visibility = Visibility::starting_at(4);
        visibility.appended(5, 5, false);
        visibility.appended(6, 7, true);
        visibility.appended(8, 9, false);
        assert_eq!(
            visibility.visible(),
            5,
            "held at the event before the durable append"
        );
        // A flush that began before the durable append covers nothing of it.
        visibility.flushed(5);
        assert_eq!(visibility.visible(), 5);
        visibility.flushed(7);
        assert_eq!(visibility.visible(), 9, "the lines after it go with it");
    }

    #[test]
    fn two_durable_appends_are_released_in_order() {
        let mut visibility = Visibility::starting_at(0);
        visibility.appended(1, 1, true);
        // The first one's flush began before the second append.
        visibility.appended(2, 3, true);
        visibility.flushed(1);
        assert_eq!(visibility.visible(), 1);
        visibility.appended(4, 4, false);
        assert_eq!(visibility.visible(), 1);
        visibility.flushed(4);
        assert_eq!(visibility.visible(), 4);
    }
}
