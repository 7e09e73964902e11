//! A failure that repeats, reported so that a log shows how often and for how long without a
//! line per attempt: the first at once, then at most one count per interval, and one line when
//! it stops.

use std::time::{Duration, Instant};

/// Failures of a background operation (marking events reported, looking for unreported ones,
/// asking for suspects) are reported at most once per this interval...
const BACKGROUND_REPORTS: Duration = Duration::from_secs(10);
/// ...and end (a line saying it works again; the next failure reported as new) only after the
/// operation worked this long with no failure.
const BACKGROUND_QUIET: Duration = Duration::from_secs(60);

/// The failure counter of one background operation, behind a lock for its callers.
pub(crate) fn failure_counter() -> std::sync::Mutex<RepeatedFailure> {
    std::sync::Mutex::new(RepeatedFailure::new(BACKGROUND_REPORTS).quiet_for(BACKGROUND_QUIET))
}

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
    /// How long after its last failure a success ends the failures (see [`Self::quiet_for`]).
    quiet: Duration,
    failing: Option<Failing>,
}

#[derive(Debug)]
struct Failing {
    since: Instant,
    total: u64,
    last_failure: Instant,
    reported_at: Instant,
    unreported: u64,
}

impl RepeatedFailure {
    /// Reports at most one count per `interval` while failures last.
    pub(crate) const fn new(interval: Duration) -> Self {
        RepeatedFailure {
            interval,
            quiet: Duration::ZERO,
            failing: None,
        }
    }

    /// Ends the failures only at a success `quiet` or more after the last failure: failures
    /// that alternate with successes are counted as one stretch, not each reported as first.
    pub(crate) const fn quiet_for(mut self, quiet: Duration) -> Self {
        self.quiet = quiet;
        self
    }

    /// Counts the outcome of one attempt at `now`, and logs what is due as a `WARN` (a failure)
    /// or an `INFO` (it works again) on target `tasker`, saying `what` failed.
    pub(crate) fn log<E: std::fmt::Display>(
        &mut self,
        now: Instant,
        outcome: Result<(), &E>,
        what: impl FnOnce() -> String,
    ) {
        let report = match outcome {
            Ok(()) => self.succeeded(now),
            Err(_) => self.failed(now),
        };
        match (outcome, report) {
            (Err(error), Some(FailureReport::First)) => {
                tracing::warn!(target: "tasker", "[Tasker] {}: {error}", what());
            }
            (Err(error), Some(FailureReport::Repeated { count, over })) => tracing::warn!(
                target: "tasker",
                "[Tasker] {}: {count} more failures in {over:?}, the latest: {error}",
                what()
            ),
            (_, Some(FailureReport::Recovered { count, over })) => tracing::info!(
                target: "tasker",
                "[Tasker] {} works again, after {count} failures over {over:?}",
                what()
            ),
            _ => {}
        }
    }

    /// Counts a failure at `now`; what to report, if anything.
    pub(crate) fn failed(&mut self, now: Instant) -> Option<FailureReport> {
        let Some(failing) = &mut self.failing else {
            self.failing = Some(Failing {
                since: now,
                total: 1,
                last_failure: now,
                reported_at: now,
                unreported: 0,
            });
            return Some(FailureReport::First);
        };
        failing.total += 1;
        failing.unreported += 1;
        failing.last_failure = now;
        let over = now.saturating_duration_since(failing.reported_at);
        if over < self.interval {
            return None;
        }
        let count = std::mem::take(&mut failing.unreported);
        failing.reported_at = now;
        Some(FailureReport::Repeated { count, over })
    }

    /// Notes a success at `now`: [`FailureReport::Recovered`] if it ends failures (it does
    /// only [`quiet`](Self::quiet_for) or more after the last one).
    pub(crate) fn succeeded(&mut self, now: Instant) -> Option<FailureReport> {
        let failing = self.failing.as_ref()?;
        if now.saturating_duration_since(failing.last_failure) < self.quiet {
            return None;
        }
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

    #[test]
    fn failures_alternating_with_successes_are_one_stretch_until_a_quiet_interval() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut failures = RepeatedFailure::new(TEN).quiet_for(Duration::from_secs(60));
        let mut reports = Vec::new();
        for tick in 0..12 {
            reports.push((tick, failures.failed(at(tick * 2))));
            reports.push((tick, failures.succeeded(at(tick * 2 + 1))));
        }
        let reports: Vec<_> = reports
            .into_iter()
            .filter_map(|(tick, report)| Some((tick, report?)))
            .collect();
        assert_eq!(
            reports,
            [
                (0, FailureReport::First),
                (
                    5,
                    FailureReport::Repeated {
                        count: 5,
                        over: TEN
                    }
                ),
                (
                    10,
                    FailureReport::Repeated {
                        count: 5,
                        over: TEN
                    }
                ),
            ]
        );
        assert_eq!(failures.succeeded(at(22 + 59)), None);
        assert_eq!(
            failures.succeeded(at(22 + 60)),
            Some(FailureReport::Recovered {
                count: 12,
                over: Duration::from_secs(82)
            })
        );
        assert_eq!(failures.failed(at(90)), Some(FailureReport::First));
    }

    /// The lines a closure logs on target `tasker`, without timestamps.
    fn logged(body: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .without_time()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, body);
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    /// An operation that fails every other time for 24 s logs its first failure, then counts
    /// every 10 s, and says it works again only after a quiet minute: not a "first" line each
    /// time it fails again.
    #[test]
    fn alternating_failures_log_one_first_line_then_counts() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut failures = RepeatedFailure::new(TEN).quiet_for(Duration::from_secs(60));
        let what = || "could not mark".to_owned();
        let lines = logged(|| {
            for tick in 0..12 {
                failures.log(at(tick * 2), Err(&"refused"), what);
                failures.log::<&str>(at(tick * 2 + 1), Ok(()), what);
            }
            failures.log::<&str>(at(82), Ok(()), what);
        });
        assert_eq!(
            lines,
            [
                " WARN tasker: [Tasker] could not mark: refused",
                " WARN tasker: [Tasker] could not mark: 5 more failures in 10s, the latest: refused",
                " WARN tasker: [Tasker] could not mark: 5 more failures in 10s, the latest: refused",
                " INFO tasker: [Tasker] could not mark works again, after 12 failures over 82s",
            ]
        );
    }
}
