//! Retry policy and the backoff between attempts.

use std::time::Duration;

/// How a step is retried: the attempts allowed and the waits between them.
///
/// The defaults are Tasker's: 3 attempts, a first wait of 1 s doubling up to 60 s, ±10 % jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included; `1` means no retry.
    pub max_attempts: u32,
    /// The wait before the second attempt, in milliseconds.
    pub backoff_ms: u64,
    /// Each further wait is the previous one times this.
    pub backoff_multiplier: f64,
    /// No wait is longer than this, jitter included, in milliseconds.
    pub max_backoff_ms: u64,
    /// Each wait is varied at random by up to this fraction either way (0 to 1).
    pub jitter: f64,
}

impl RetryPolicy {
    /// Tasker's defaults.
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        max_attempts: 3,
        backoff_ms: 1000,
        backoff_multiplier: 2.0,
        max_backoff_ms: 60_000,
        jitter: 0.1,
    };

    /// A task's defaults: one attempt (a task is retried only when it asks to be, with
    /// `#[task(max_attempts = …)]`), and otherwise the step defaults for the waits.
    pub const TASK_DEFAULT: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::DEFAULT
    };

    /// This policy with `max_attempts` attempts in total.
    pub const fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// This policy with a first wait of `backoff_ms`; the cap rises to at least that wait.
    pub const fn with_backoff_ms(mut self, backoff_ms: u64) -> Self {
        self.backoff_ms = backoff_ms;
        if self.max_backoff_ms < backoff_ms {
            self.max_backoff_ms = backoff_ms;
        }
        self
    }

    /// This policy with each further wait `backoff_multiplier` times the previous one.
    pub const fn with_backoff_multiplier(mut self, backoff_multiplier: f64) -> Self {
        self.backoff_multiplier = backoff_multiplier;
        self
    }

    /// This policy with no wait longer than `max_backoff_ms`.
    pub const fn with_max_backoff_ms(mut self, max_backoff_ms: u64) -> Self {
        self.max_backoff_ms = max_backoff_ms;
        self
    }

    /// This policy with waits varied at random by up to `jitter` of themselves either way.
    pub const fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// The wait after failed attempt `attempt` (from 1), before attempt `attempt + 1`.
    ///
    /// `random` is a number in `[0, 1)`: the wait is `backoff_ms × multiplier^(attempt-1)`,
    /// capped at `max_backoff_ms`, then varied by `jitter × (2 × random − 1)` of itself and capped
    /// again, so it lies in `[base × (1 − jitter), min(base × (1 + jitter), max)]`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tasker::RetryPolicy;
    /// let policy = RetryPolicy { backoff_ms: 100, jitter: 0.0, ..RetryPolicy::DEFAULT };
    /// assert_eq!(policy.backoff(1, 0.5), Duration::from_millis(100));
    /// assert_eq!(policy.backoff(3, 0.5), Duration::from_millis(400));
    /// ```
    pub fn backoff(&self, attempt: u32, random: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(1024) as i32;
        let max = self.max_backoff_ms as f64;
        let base = (self.backoff_ms as f64 * self.backoff_multiplier.powi(exponent)).min(max);
        let jittered = base * (1.0 + self.jitter * (2.0 * random.clamp(0.0, 1.0) - 1.0));
        let millis = jittered.clamp(0.0, max);
        Duration::from_micros((millis * 1000.0).round() as u64)
    }

    /// [`RetryPolicy::backoff`] with a fresh random number, rounded to whole milliseconds as
    /// `step.backoff` reports them.
    pub fn next_backoff(&self, attempt: u32) -> Duration {
        let wait = self.backoff(attempt, fastrand::f64());
        Duration::from_millis(wait.as_millis() as u64)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff_ms: u64, multiplier: f64, max: u64, jitter: f64) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            backoff_ms,
            backoff_multiplier: multiplier,
            max_backoff_ms: max,
            jitter,
        }
    }

    #[test]
    fn waits_grow_by_the_multiplier() {
        let policy = policy(50, 2.0, 60_000, 0.0);
        let waits: Vec<u128> = (1..=5)
            .map(|n| policy.backoff(n, 0.3).as_millis())
            .collect();
        assert_eq!(waits, [50, 100, 200, 400, 800]);
    }

    #[test]
    fn waits_are_capped() {
        let policy = policy(1000, 3.0, 5000, 0.0);
        assert_eq!(policy.backoff(2, 0.0), Duration::from_millis(3000));
        assert_eq!(policy.backoff(3, 0.0), Duration::from_millis(5000));
        assert_eq!(policy.backoff(1000, 0.0), Duration::from_millis(5000));
    }

    #[test]
    fn jitter_spans_both_sides_of_the_base() {
        let policy = policy(1000, 2.0, 60_000, 0.1);
        assert_eq!(policy.backoff(1, 0.0), Duration::from_millis(900));
        assert_eq!(policy.backoff(1, 0.5), Duration::from_millis(1000));
        assert_eq!(policy.backoff(1, 1.0), Duration::from_millis(1100));
    }

    #[test]
    fn jitter_never_exceeds_the_cap() {
        let policy = policy(1000, 2.0, 1000, 0.5);
        assert_eq!(policy.backoff(1, 1.0), Duration::from_millis(1000));
        assert_eq!(policy.backoff(1, 0.0), Duration::from_millis(500));
    }

    #[test]
    fn random_waits_stay_within_the_jitter_bounds() {
        let policy = policy(200, 2.0, 60_000, 0.25);
        for _ in 0..1000 {
            let wait = policy.next_backoff(2).as_millis();
            assert!((300..=500).contains(&wait), "{wait}");
        }
    }

    #[test]
    fn a_first_wait_above_the_default_cap_raises_the_cap() {
        let policy = RetryPolicy::DEFAULT.with_backoff_ms(120_000);
        assert_eq!(policy.max_backoff_ms, 120_000);
        let policy = RetryPolicy::DEFAULT
            .with_backoff_ms(50)
            .with_max_backoff_ms(500);
        assert_eq!((policy.backoff_ms, policy.max_backoff_ms), (50, 500));
    }

    #[test]
    fn tasks_run_once_unless_they_ask_for_retries() {
        assert_eq!(RetryPolicy::TASK_DEFAULT.max_attempts, 1);
        assert_eq!(
            RetryPolicy::TASK_DEFAULT.with_max_attempts(3),
            RetryPolicy::DEFAULT
        );
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        let policy = policy(u64::MAX / 2, 10.0, u64::MAX, 1.0);
        let _ = policy.backoff(u32::MAX, 0.99);
    }
}
