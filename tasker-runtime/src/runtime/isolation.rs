//! Running suspects alone: a task whose lease expired (its process died or stalled) runs again
//! only in a process that runs nothing else meanwhile, so that a crash it causes is counted
//! against it alone and takes no other task down with it (see [`Isolation`]).
//!
//! Every run of the process holds one gate shared; a worker that runs a suspect holds it
//! exclusively. Tokio's `RwLock` is write-preferring: once a worker waits to run a suspect, the
//! process claims nothing new and drains, instead of starving that worker.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::Inner;
use crate::queue::{Claim, Isolation, QueueError};
use crate::repeated_failure::{failure_counter, RepeatedFailure};

/// The process's gate: process-wide, since a crash takes down every runtime of the process.
static GATE: RwLock<()> = RwLock::const_new(());

/// How often a runtime asks its queue whether suspects wait: processes drain only when they do.
const SUSPECT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The longest an idle worker's claim waits before the worker looks around again (suspects,
/// the stop signal): long enough that idle workers cost the database a few statements a second.
const IDLE_WAIT_MAX: Duration = Duration::from_secs(10);

/// How long a worker's shared claim waits: the runtime's poll interval after a claim, doubling
/// while claims find nothing, up to [`IDLE_WAIT_MAX`] and a quarter of the lease (a worker that
/// drains the process for a suspect waits for the claims in flight, bounded by the lease).
pub(super) struct IdleWait {
    wait: Mutex<Option<Duration>>,
}

impl IdleWait {
    pub(super) fn new() -> Self {
        IdleWait {
            wait: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Duration>> {
        self.wait.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The wait for the next claim.
    fn current(&self, poll: Duration) -> Duration {
        self.lock().unwrap_or(poll)
    }

    /// A claim found something (`claimed`) or nothing: the next wait is the shortest, or twice
    /// as long, up to its bound.
    fn after(&self, claimed: bool, poll: Duration, lease: Duration) {
        let mut wait = self.lock();
        *wait = match claimed {
            true => None,
            false => {
                let longest = IDLE_WAIT_MAX.min(lease / 4).max(poll);
                Some((wait.unwrap_or(poll) * 2).min(longest))
            }
        };
    }
}

/// The longest a process drains for a suspect, whatever its lease.
const MAX_DRAIN: Duration = Duration::from_secs(10);

/// How long a worker waits for its process's runs to end before it runs a suspect: a third of
/// a lease, at most [`MAX_DRAIN`]. Meanwhile the process claims nothing new; after it, the
/// process hands the suspect to others for a lease and claims as before.
fn drain_budget(lease: Duration) -> Duration {
    (lease / 3).min(MAX_DRAIN)
}

/// A run's hold on the process's gate, kept until the run ends.
pub(super) enum Gate {
    /// An ordinary run, beside others.
    Shared { _held: RwLockReadGuard<'static, ()> },
    /// A suspect's run, alone in the process.
    Alone {
        _held: RwLockWriteGuard<'static, ()>,
    },
}

/// When a runtime's workers next ask the queue whether suspects wait.
pub(super) struct SuspectCheck {
    next: Mutex<Instant>,
    /// Failed checks, reported rate-limited for as long as they last.
    failures: Mutex<RepeatedFailure>,
}

impl SuspectCheck {
    /// A check due at once: a process that starts after a crash runs the suspects soon.
    pub(super) fn new() -> Self {
        SuspectCheck {
            next: Mutex::new(Instant::now()),
            failures: failure_counter(),
        }
    }

    /// Whether the calling worker should check now: at most once per interval for all the
    /// runtime's workers.
    fn due(&self) -> bool {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if now < *next {
            return false;
        }
        *next = now + SUSPECT_CHECK_INTERVAL;
        true
    }

    /// No check before `pause` has passed.
    fn postpone(&self, pause: Duration) {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        *next = (*next).max(Instant::now() + pause);
    }
}

impl Inner {
    /// Claims the next envelope for a worker of this process, with its hold on the gate and
    /// when the claim was asked for (no later than the lease's start, by this process's clock).
    ///
    /// When the queue says suspects wait, the worker first drains the process and claims alone;
    /// otherwise it claims beside the process's other runs, waiting up to the poll interval, or
    /// longer while claims find nothing ([`IdleWait`]).
    pub(super) async fn claim_next(&self) -> (Instant, Result<Option<Claim>, QueueError>, Gate) {
        if self.suspect_check.due() && self.suspects_waiting().await {
            // Bounded: the process claims nothing new while it drains, and a run that outlasts
            // the budget (or waits on work of this same process) would hold it there. Such a
            // process leaves its suspects to others for a lease, and works on.
            match tokio::time::timeout(drain_budget(self.lease), GATE.write()).await {
                Ok(alone) => {
                    let asked = Instant::now();
                    let claim = self
                        .queue
                        .claim_isolated(self.lease, Duration::ZERO, Isolation::Alone)
                        .await;
                    return (asked, claim, Gate::Alone { _held: alone });
                }
                Err(_) => self.suspect_check.postpone(self.lease),
            }
        }
        let shared = GATE.read().await;
        let asked = Instant::now();
        let wait = self.idle_wait.current(self.poll);
        let claim = self
            .queue
            .claim_isolated(self.lease, wait, Isolation::Shared)
            .await;
        // A failed claim says nothing about idleness: the worker retries after the poll interval.
        if let Ok(claimed) = &claim {
            self.idle_wait
                .after(claimed.is_some(), self.poll, self.lease);
        }
        (asked, claim, Gate::Shared { _held: shared })
    }

    /// Whether the queue says suspects wait; a failure is reported (rate-limited) and taken as
    /// "no".
    async fn suspects_waiting(&self) -> bool {
        let outcome = self.queue.suspects_waiting().await;
        self.suspect_check
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .log(Instant::now(), outcome.as_ref().map(|_| ()), || {
                format!(
                    "could not ask queue `{}` whether tasks whose lease expired wait to run \
                     alone (asking again in a second)",
                    self.queue.name()
                )
            });
        outcome.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suspect_check_is_due_at_once_then_once_per_interval() {
        let check = SuspectCheck::new();
        assert!(check.due(), "a new runtime asks at once");
        assert!(
            !check.due(),
            "its other workers do not ask again within the interval"
        );
        *check.next.lock().unwrap() = Instant::now();
        assert!(check.due(), "due again once the interval has passed");
    }

    #[test]
    fn an_idle_wait_doubles_up_to_its_bound_and_restarts_after_a_claim() {
        let (poll, lease) = (Duration::from_millis(200), Duration::from_secs(30));
        let idle = IdleWait::new();
        let mut waits = vec![idle.current(poll)];
        for _ in 0..7 {
            idle.after(false, poll, lease);
            waits.push(idle.current(poll));
        }
        let ms = |ms| Duration::from_millis(ms);
        let expected = [200, 400, 800, 1600, 3200, 6400, 7500, 7500].map(ms);
        assert_eq!(waits, expected, "up to a quarter of the 30 s lease");
        idle.after(true, poll, lease);
        assert_eq!(idle.current(poll), poll);
        // A short lease bounds it: a suspect's drain waits for these claims.
        for _ in 0..6 {
            idle.after(false, poll, Duration::from_secs(1));
        }
        assert_eq!(idle.current(poll), ms(250));
        // A long one, by IDLE_WAIT_MAX.
        for _ in 0..10 {
            idle.after(false, poll, Duration::from_secs(60));
        }
        assert_eq!(idle.current(poll), IDLE_WAIT_MAX);
    }

    #[test]
    fn a_postponed_check_waits_out_the_pause() {
        let check = SuspectCheck::new();
        check.postpone(Duration::from_secs(60));
        assert!(!check.due());
        let next = *check.next.lock().unwrap();
        assert!(next >= Instant::now() + Duration::from_secs(59));
        check.postpone(Duration::ZERO);
        assert_eq!(
            *check.next.lock().unwrap(),
            next,
            "a shorter pause does not bring the check forward"
        );
    }
}
