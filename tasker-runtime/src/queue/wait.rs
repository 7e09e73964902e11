//! The wait of a claim, shared by every queue: look, and when nothing is claimable, sleep until
//! a wake-up (one per new task), something falls due, or the queue's next poll.
//!
//! Idle polling backs off: each look that finds nothing doubles the pause before the next one,
//! up to the queue's poll interval, and a claim or a wake-up brings it back to the start. The
//! schedule is the queue's, not each claim's: however many claims of a process wait, one of
//! them looks at each poll, so an idle process costs a few statements a second, not a few per
//! worker.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Claim, QueueError};

/// The shortest pause between two looks of waiting claims (the first after a claim or a wake).
const FIRST_PAUSE: Duration = Duration::from_millis(50);

/// What one look at the queue found.
pub(crate) enum Attempt<T = Claim> {
    /// A leased envelope, or several.
    Claimed(T),
    /// Nothing claimable; `due` says how long until something may be (a delayed envelope, an
    /// expiring lease), when the look was asked for it and there is anything.
    Empty { due: Option<Duration> },
}

/// The claim wait of one queue object: its wake-ups and its polling schedule.
#[derive(Debug)]
pub(crate) struct ClaimWait {
    wake: Notify,
    /// The longest pause between two looks; `None` for a queue that nothing changes behind its
    /// back (every new task wakes it), which never polls.
    poll_interval: Option<Duration>,
    idle: Mutex<Idle>,
}

#[derive(Debug)]
struct Idle {
    /// The pause after the next look that finds nothing.
    pause: Duration,
    /// When waiting claims look next, unless woken.
    next_poll: Instant,
}

impl ClaimWait {
    /// A wait that polls at most every `poll_interval` once idle (`None`: never polls).
    pub(crate) fn new(poll_interval: Option<Duration>) -> Self {
        let pause = poll_interval.map_or(FIRST_PAUSE, |interval| FIRST_PAUSE.min(interval));
        ClaimWait {
            wake: Notify::new(),
            poll_interval,
            idle: Mutex::new(Idle {
                pause,
                next_poll: Instant::now(),
            }),
        }
    }

    /// Wakes `tasks` waiting claims, one per new task (a claim that starts waiting next takes
    /// a wake-up left while none waited).
    pub(crate) fn wake(&self, tasks: usize) {
        for _ in 0..tasks {
            self.wake.notify_one();
        }
    }

    /// Wakes every waiting claim: what changed is unknown (a listener that reconnected).
    #[cfg(feature = "postgres")]
    pub(crate) fn wake_all(&self) {
        self.wake.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Work was found or announced: poll soon again.
    fn busy(&self) {
        let mut idle = self.lock();
        idle.pause = self
            .poll_interval
            .map_or(FIRST_PAUSE, |interval| FIRST_PAUSE.min(interval));
        idle.next_poll = Instant::now();
    }

    /// Takes the poll due at `now`, if it is due: the next one comes after the pause, which
    /// doubles. Of the claims that wake for a poll, the first takes it and the others sleep on.
    fn take_poll(&self, now: Instant) -> bool {
        let Some(interval) = self.poll_interval else {
            return false;
        };
        let mut idle = self.lock();
        if idle.next_poll > now {
            return false;
        }
        idle.next_poll = now + idle.pause;
        idle.pause = (idle.pause * 2).min(interval);
        true
    }

    /// When waiting claims look next, unless woken (`None`: never).
    fn next_poll(&self) -> Option<Instant> {
        self.poll_interval?;
        Some(self.lock().next_poll)
    }

    /// Claims through `attempt` (told whether the claim would wait, so that it says what is
    /// due), waiting up to `wait` for a wake-up, something due, or a poll.
    pub(crate) async fn claim<T, F, Fut>(
        &self,
        wait: Duration,
        mut attempt: F,
    ) -> Result<Option<T>, QueueError>
    where
        F: FnMut(bool) -> Fut,
        Fut: Future<Output = Result<Attempt<T>, QueueError>>,
    {
        let start = Instant::now();
        // A wait too long for the clock (`Duration::MAX`) waits for ever, in effect.
        let deadline = start
            .checked_add(wait)
            .unwrap_or_else(|| start + Duration::from_secs(100 * 365 * 86_400));
        let mut look = true;
        let mut due_at: Option<Instant> = None;
        loop {
            // Registered before the look: a wake-up during it is not lost (and, should this
            // claim return without waiting, passes to another waiting claim).
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if look {
                match attempt(Instant::now() < deadline).await? {
                    Attempt::Claimed(claim) => {
                        self.busy();
                        return Ok(Some(claim));
                    }
                    Attempt::Empty { due } => {
                        let now = Instant::now();
                        due_at = due.map(|due| now + due.max(Duration::from_millis(1)));
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            if look {
                // A look that found nothing counts as the poll, if one was due.
                self.take_poll(now);
            }
            let next_poll = self.next_poll();
            let wake_at = [Some(deadline), next_poll, due_at]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(deadline);
            tokio::select! {
                _ = &mut notified => {
                    self.busy();
                    look = true;
                }
                _ = tokio::time::sleep_until(wake_at) => {
                    let now = Instant::now();
                    let due = due_at.is_some_and(|due| due <= now);
                    look = due || self.take_poll(now);
                    if due {
                        due_at = None;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn claim() -> Claim {
        Claim::new(
            super::super::Envelope::new("t", "1", serde_json::Value::Null),
            super::super::LeaseId(1),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn idle_looks_back_off_up_to_the_poll_interval() {
        let wait = ClaimWait::new(Some(Duration::from_millis(400)));
        let looks = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let claimed = wait
            .claim(Duration::from_millis(1500), |_| {
                looks.lock().unwrap().push(start.elapsed().as_millis());
                std::future::ready(Ok(Attempt::<Claim>::Empty { due: None }))
            })
            .await
            .unwrap();
        assert!(claimed.is_none());
        assert_eq!(
            *looks.lock().unwrap(),
            [0, 50, 150, 350, 750, 1150],
            "pauses of 50, 100, 200, then 400 ms (the interval), until the wait ends"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_claims_share_one_polling_schedule() {
        let wait = Arc::new(ClaimWait::new(Some(Duration::from_millis(100))));
        let looks = Arc::new(AtomicUsize::new(0));
        let claims: Vec<_> = (0..8)
            .map(|_| {
                let (wait, looks) = (wait.clone(), looks.clone());
                tokio::spawn(async move {
                    wait.claim(Duration::from_millis(1000), |_| {
                        looks.fetch_add(1, Ordering::SeqCst);
                        std::future::ready(Ok(Attempt::<Claim>::Empty { due: None }))
                    })
                    .await
                })
            })
            .collect();
        for claim in claims {
            assert!(claim.await.unwrap().unwrap().is_none());
        }
        // Each claim looks once as it starts; then one look per poll for all of them: after
        // 50 and 100 ms, then every 100 ms until 1000 ms (at 150, 250, …, 950).
        assert_eq!(looks.load(Ordering::SeqCst), 8 + 10);
    }

    #[tokio::test(start_paused = true)]
    async fn each_wake_up_wakes_one_waiting_claim() {
        let wait = Arc::new(ClaimWait::new(None));
        let tasks = Arc::new(AtomicUsize::new(0));
        let looks = Arc::new(AtomicUsize::new(0));
        let claims: Vec<_> = (0..8)
            .map(|_| {
                let (wait, tasks, looks) = (wait.clone(), tasks.clone(), looks.clone());
                tokio::spawn(async move {
                    wait.claim(Duration::from_secs(10), move |_| {
                        looks.fetch_add(1, Ordering::SeqCst);
                        let taken = tasks
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok();
                        std::future::ready(Ok(if taken {
                            Attempt::Claimed(claim())
                        } else {
                            Attempt::<Claim>::Empty { due: None }
                        }))
                    })
                    .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(looks.load(Ordering::SeqCst), 8, "each looked once");
        tasks.store(3, Ordering::SeqCst);
        wait.wake(3);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            looks.load(Ordering::SeqCst),
            8 + 3,
            "three tasks woke three claims"
        );
        let mut claimed = 0;
        for claim in claims {
            if claim.await.unwrap().unwrap().is_some() {
                claimed += 1;
            }
        }
        assert_eq!(claimed, 3);
        assert_eq!(
            looks.load(Ordering::SeqCst),
            8 + 3,
            "no poll without an interval"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn something_due_is_looked_at_when_due_without_polling() {
        let wait = ClaimWait::new(None);
        let looks = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let claimed = wait
            .claim(Duration::from_secs(1), |will_wait| {
                let mut looks = looks.lock().unwrap();
                looks.push((start.elapsed().as_millis(), will_wait));
                let due = (looks.len() == 1).then_some(Duration::from_millis(300));
                std::future::ready(Ok(match due {
                    Some(due) => Attempt::<Claim>::Empty { due: Some(due) },
                    None => Attempt::Claimed(claim()),
                }))
            })
            .await
            .unwrap();
        assert!(claimed.is_some());
        assert_eq!(*looks.lock().unwrap(), [(0, true), (300, true)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_too_long_for_the_clock_is_no_panic() {
        let wait = ClaimWait::new(Some(Duration::from_millis(100)));
        let claimed = wait
            .claim(Duration::MAX, |_| {
                std::future::ready(Ok(Attempt::Claimed(claim())))
            })
            .await
            .unwrap();
        assert!(claimed.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_that_does_not_wait_looks_once_and_asks_for_nothing_due() {
        let wait = ClaimWait::new(Some(Duration::from_millis(100)));
        let looks = Arc::new(Mutex::new(Vec::new()));
        let claimed = wait
            .claim(Duration::ZERO, |will_wait| {
                looks.lock().unwrap().push(will_wait);
                std::future::ready(Ok(Attempt::<Claim>::Empty { due: None }))
            })
            .await
            .unwrap();
        assert!(claimed.is_none());
        assert_eq!(*looks.lock().unwrap(), [false]);
    }
}
