//! How often each watched pull request is polled. After anything changed (a new head, a review,
//! a CI result) or while something is expected (CI running), at the base interval; while nothing
//! changes, the interval doubles up to the maximum, so a pull request waiting for its reviewers
//! costs a few calls an hour instead of one every few seconds. In a repository whose webhooks
//! reach us, GitHub says when something changes, so polling is only the fallback for a lost
//! delivery: every `hooked` interval (an hour by default). Pure, so it is tested without time.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub base: Duration,
    pub max: Duration,
    /// The fallback interval where webhooks arrive.
    pub hooked: Duration,
}

/// When a pull request is next polled, and the interval that led there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub at: Instant,
    pub interval: Duration,
}

impl Pace {
    /// A pull request seen for the first time is polled at once.
    pub fn first(&self, now: Instant) -> Due {
        Due {
            at: now,
            interval: self.base,
        }
    }

    /// After a poll at `now`: where webhooks arrive, the fallback interval; else the base
    /// interval when it was `busy`, or twice the last one.
    pub fn after(&self, last: Due, now: Instant, busy: bool, hooked: bool) -> Due {
        let interval = if hooked {
            self.hooked
        } else if busy {
            self.base
        } else {
            last.interval
                .saturating_mul(2)
                .clamp(self.base, self.max.max(self.base))
        };
        Due {
            at: now + interval,
            interval,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::Pace;

    const PACE: Pace = Pace {
        base: Duration::from_secs(15),
        max: Duration::from_secs(240),
        hooked: Duration::from_secs(1200),
    };

    /// Polls in one hour of a pull request where nothing happens after the first answer.
    fn polls_in_an_hour_of_quiet(hooked: bool) -> usize {
        let start = Instant::now();
        let mut due = PACE.first(start);
        let mut polls = 0;
        while due.at < start + Duration::from_secs(3600) {
            let first_answer = polls == 0;
            polls += 1;
            due = PACE.after(due, due.at, first_answer, hooked);
        }
        polls
    }

    #[test]
    fn quiet_doubles_up_to_the_maximum_and_activity_resets() {
        let now = Instant::now();
        let first = PACE.first(now);
        assert_eq!(first.at, now);
        let intervals: Vec<u64> =
            std::iter::successors(Some(first), |d| Some(PACE.after(*d, d.at, false, false)))
                .skip(1)
                .take(6)
                .map(|d| d.interval.as_secs())
                .collect();
        assert_eq!(intervals, [30, 60, 120, 240, 240, 240]);
        let busy = PACE.after(PACE.after(first, now, false, false), now, true, false);
        assert_eq!(busy.interval, PACE.base, "activity polls at the base again");
        let hooked = PACE.after(first, now, true, true);
        assert_eq!(
            hooked.interval, PACE.hooked,
            "where webhooks arrive, polling is the fallback"
        );
    }

    #[test]
    fn an_hour_of_quiet_is_under_twenty_polls() {
        // 0, 15, 45, 105, 225 s, then every 240 s: 5 + 14 = 19, against 240 at a fixed 15 s.
        assert_eq!(polls_in_an_hour_of_quiet(false), 19);
    }

    #[test]
    fn an_hour_with_webhooks_is_three_polls() {
        // 0, 1200, 2400 s.
        assert_eq!(polls_in_an_hour_of_quiet(true), 3);
    }
}
