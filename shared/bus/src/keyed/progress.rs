//! The low-water mark: which read events are done, in stream order.

use std::collections::VecDeque;

#[derive(Debug)]
pub(super) struct Progress {
    /// Every event at or below this is done.
    pub(super) done_through: u64,
    /// Events read after it, in order, with whether each is done.
    open: VecDeque<(u64, bool)>,
}

impl Progress {
    pub(super) fn after(done_through: u64) -> Self {
        Progress {
            done_through,
            open: VecDeque::new(),
        }
    }

    pub(super) fn started(&mut self, sequence: u64) {
        self.open.push_back((sequence, false));
    }

    pub(super) fn finished(&mut self, sequence: u64) {
        if let Ok(at) = self.open.binary_search_by_key(&sequence, |(s, _)| *s) {
            self.open[at].1 = true;
        }
        while let Some((sequence, true)) = self.open.front().copied() {
            self.done_through = sequence;
            self.open.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Progress;

    #[test]
    fn the_low_water_mark_moves_only_over_events_that_are_all_done() {
        let mut progress = Progress::after(10);
        for sequence in [11, 12, 14, 15] {
            progress.started(sequence);
        }
        progress.finished(12);
        progress.finished(14);
        assert_eq!(progress.done_through, 10, "11 is still open");
        progress.finished(11);
        assert_eq!(progress.done_through, 14, "gaps in the stream are not waited for");
        progress.finished(15);
        assert_eq!(progress.done_through, 15);
        assert!(progress.open.is_empty());
    }
}
