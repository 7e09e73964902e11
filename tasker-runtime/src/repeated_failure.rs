//! A failure that repeats, reported so that a log shows how often and for how long without a
//! line per attempt: the first at once, then at most one count per interval, and one line when
//! it stops.

use std::time::{Duration, Instant};

/// What to report about a repeated failure now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureReport {
    /// The first failure since the operation last worked (or ever): report it with its error.
    First,
    /// `count` failures (the latest included) in the `over` since the last report.
    Repeated { count: u64, over: Duration },
    /// The operation worked again after `count` failures over `over` (from the first).
    Recovered { count: u64, over: Duration },
}

/// Counts the failures of one operation and says when to report them; the caller logs, with
/// its own words and the error at hand. Time is passed in, so tests drive it.
#[derive(Debug)]
pub(crate) struct RepeatedFailure {
    interval: Duration,
    failing: Option<Failing>,
}

#[derive(Debug)]
struct Failing {
    since: Instant,
    total: u64,
    reported_at: Instant,
    unreported: u64,
}

impl RepeatedFailure {
    /// Reports at most one count per `interval` while failures last.
    pub(crate) const fn new(interval: Duration) -> Self {
        RepeatedFailure {
            interval,
            failing: None,
        }
    }

    /// Counts a failure at `now`; what to report, if anything.
    pub(crate) fn failed(&mut self, now: Instant) -> Option<FailureReport> {
        let Some(failing) = &mut self.failing else {
            self.failing = Some(Failing {
                since: now,
                total: 1,
                reported_at: now,
                unreported: 0,
            });
            return Some(FailureReport::First);
        };
        failing.total += 1;
        failing.unreported += 1;
        let over = now.saturating_duration_since(failing.reported_at);
        if over < self.interval {
            return None;
        }
        let count = std::mem::take(&mut failing.unreported);
        failing.reported_at = now;
        Some(FailureReport::Repeated { count, over })
    }

    /// Notes a success at `now`: [`FailureReport::Recovered`] if it ends failures.
    pub(crate) fn succeeded(&mut self, now: Instant) -> Option<FailureReport> {
        let failing = self.failing.take()?;
        Some(FailureReport::Recovered {
            count: failing.total,
            over: now.saturating_duration_since(failing.since),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN: Duration = Duration::from_secs(10);

    #[test]
    fn the_first_failure_is_reported_at_once_then_counts_once_per_interval() {
        let start = Instant::now();
        let at = |millis: u64| start + Duration::from_millis(millis);
        let mut failures = RepeatedFailure::new(TEN);
        let reports: Vec<_> = (0..=125)
            .map(|tick| (tick * 200, failures.failed(at(tick * 200))))
            .filter_map(|(millis, report)| Some((millis, report?)))
            .collect();
        assert_eq!(
            reports,
            [
                (0, FailureReport::First),
                (
                    10_000,
                    FailureReport::Repeated {
                        count: 50,
                        over: TEN
                    }
                ),
                (
                    20_000,
                    FailureReport::Repeated {
                        count: 50,
                        over: TEN
                    }
                ),
            ]
        );
        assert_eq!(
            failures.succeeded(at(25_100)),
            Some(FailureReport::Recovered {
                count: 126,
                over: Duration::from_millis(25_100)
            })
        );
    }

    #[test]
    fn a_success_without_failures_reports_nothing_and_the_next_failure_is_first_again() {
        let start = Instant::now();
        let mut failures = RepeatedFailure::new(TEN);
        assert_eq!(failures.succeeded(start), None);
        assert_eq!(failures.failed(start), Some(FailureReport::First));
        assert_eq!(
            failures.succeeded(start + Duration::from_secs(1)),
            Some(FailureReport::Recovered {
                count: 1,
                over: Duration::from_secs(1)
            })
        );
        assert_eq!(failures.succeeded(start + Duration::from_secs(2)), None);
        assert_eq!(
            failures.failed(start + Duration::from_secs(3)),
            Some(FailureReport::First)
        );
    }

    #[test]
    fn failures_further_apart_than_the_interval_are_each_reported_with_the_time_between() {
        let start = Instant::now();
        let mut failures = RepeatedFailure::new(TEN);
        assert_eq!(failures.failed(start), Some(FailureReport::First));
        assert_eq!(
            failures.failed(start + Duration::from_secs(30)),
            Some(FailureReport::Repeated {
                count: 1,
                over: Duration::from_secs(30)
            })
        );
    }
}
