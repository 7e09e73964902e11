//! The in-process queue.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::wait::{Attempt, ClaimWait};
use super::{Claim, Envelope, LeaseId, Queue, QueueError, RunTrace};
use crate::runner::BoxFuture;

/// The embedded default queue: a FIFO in memory, shared by the producers and workers of one
/// process, with the lease semantics of [`Queue`].
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use tasker_runtime::queue::{Envelope, MemoryQueue, Queue};
/// let queue = MemoryQueue::new();
/// queue.push(Envelope::new("t", "1", serde_json::Value::Null)).await.unwrap();
/// let claim = queue.claim(Duration::from_secs(30), Duration::ZERO).await.unwrap().unwrap();
/// queue.acknowledge(claim.lease).await.unwrap();
/// assert_eq!(queue.len(), 0);
/// # });
/// ```
#[derive(Debug)]
pub struct MemoryQueue {
    name: String,
    state: Mutex<State>,
    /// Every push and requeue wakes a waiting claim: nothing changes the queue behind its back,
    /// so waiting claims never poll.
    waiting: ClaimWait,
    next_lease: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    ready: VecDeque<Envelope>,
    /// Requeued with a delay: not handed out before their instant.
    delayed: Vec<(Instant, Envelope)>,
    leased: HashMap<LeaseId, (Instant, Envelope)>,
    /// The trace context of each unfinished task's latest recorded run.
    runs: HashMap<uuid::Uuid, RunTrace>,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryQueue {
    /// An empty queue named `memory`.
    pub fn new() -> Self {
        Self::named("memory")
    }

    /// An empty queue with a name of your choice.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            state: Mutex::new(State::default()),
            waiting: ClaimWait::new(None),
            next_lease: AtomicU64::new(1),
        }
    }

    /// Envelopes not yet acknowledged: ready, delayed and leased.
    pub fn len(&self) -> usize {
        let state = self.lock();
        state.ready.len() + state.delayed.len() + state.leased.len()
    }

    /// Whether no envelope is left.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Envelopes waiting for a worker (not leased).
    pub fn pending(&self) -> usize {
        let state = self.lock();
        state.ready.len() + state.delayed.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a ready envelope, after returning expired leases and due delayed envelopes.
    fn try_claim(&self, lease: Duration) -> Option<Claim> {
        let now = Instant::now();
        let mut state = self.lock();
        let expired: Vec<LeaseId> = state
            .leased
            .iter()
            .filter(|(_, (until, _))| *until <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some((_, mut envelope)) = state.leased.remove(&id) {
                envelope.delivery_attempt = envelope.delivery_attempt.saturating_add(1);
                state.ready.push_back(envelope);
            }
        }
        let mut index = 0;
        while index < state.delayed.len() {
            if state.delayed[index].0 <= now {
                let (_, envelope) = state.delayed.swap_remove(index);
                state.ready.push_back(envelope);
            } else {
                index += 1;
            }
        }
        let envelope = state.ready.pop_front()?;
        let id = LeaseId(u128::from(self.next_lease.fetch_add(1, Ordering::Relaxed)));
        let previous_run = state.runs.get(&envelope.task_id).cloned();
        state.leased.insert(id, (now + lease, envelope.clone()));
        Some(Claim {
            envelope,
            lease: id,
            previous_run,
        })
    }

    /// How long until a lease expires or a delayed envelope is due, if anything is pending.
    fn next_deadline(&self) -> Option<Duration> {
        let state = self.lock();
        let now = Instant::now();
        state
            .leased
            .values()
            .map(|(until, _)| *until)
            .chain(state.delayed.iter().map(|(at, _)| *at))
            .min()
            .map(|deadline| deadline.saturating_duration_since(now))
    }
}

impl Queue for MemoryQueue {
    fn name(&self) -> &str {
        &self.name
    }

    fn push(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), QueueError>> {
        self.lock().ready.push_back(envelope);
        self.waiting.wake(1);
        Box::pin(std::future::ready(Ok(())))
    }

    fn claim(
        &self,
        lease: Duration,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Option<Claim>, QueueError>> {
        Box::pin(self.waiting.claim(wait, move |_| {
            std::future::ready(Ok(match self.try_claim(lease) {
                Some(claim) => Attempt::Claimed(claim),
                None => Attempt::Empty {
                    due: self.next_deadline(),
                },
            }))
        }))
    }

    fn renew(&self, lease: LeaseId, duration: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
        let result = match self.lock().leased.get_mut(&lease) {
            Some((until, _)) => {
                *until = Instant::now() + duration;
                Ok(())
            }
            None => Err(QueueError::LeaseLost(lease)),
        };
        Box::pin(std::future::ready(result))
    }

    fn acknowledge(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), QueueError>> {
        let mut state = self.lock();
        let result = match state.leased.remove(&lease) {
            Some((_, envelope)) => {
                state.runs.remove(&envelope.task_id);
                Ok(())
            }
            None => Err(QueueError::LeaseLost(lease)),
        };
        Box::pin(std::future::ready(result))
    }

    fn record_run(&self, lease: LeaseId, run: &RunTrace) -> BoxFuture<'_, Result<(), QueueError>> {
        let mut state = self.lock();
        let result = match state.leased.get(&lease) {
            Some((_, envelope)) => {
                let task_id = envelope.task_id;
                state.runs.insert(task_id, run.clone());
                Ok(())
            }
            None => Err(QueueError::LeaseLost(lease)),
        };
        Box::pin(std::future::ready(result))
    }

    fn requeue(&self, lease: LeaseId, delay: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
        let result = {
            let mut state = self.lock();
            match state.leased.remove(&lease) {
                Some((_, mut envelope)) => {
                    envelope.delivery_attempt = envelope.delivery_attempt.saturating_add(1);
                    if delay.is_zero() {
                        state.ready.push_back(envelope);
                    } else {
                        state.delayed.push((Instant::now() + delay, envelope));
                    }
                    Ok(())
                }
                None => Err(QueueError::LeaseLost(lease)),
            }
        };
        self.waiting.wake(1);
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn envelope(name: &str) -> Envelope {
        Envelope::new(name, "1", Value::Null)
    }

    const LEASE: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn claims_come_out_in_push_order() {
        let queue = MemoryQueue::new();
        for name in ["a", "b", "c"] {
            queue.push(envelope(name)).await.unwrap();
        }
        let mut names = Vec::new();
        while let Some(claim) = queue.claim(LEASE, Duration::ZERO).await.unwrap() {
            names.push(claim.envelope.task_name.clone());
            queue.acknowledge(claim.lease).await.unwrap();
        }
        assert_eq!(names, ["a", "b", "c"]);
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn an_expired_lease_hands_the_envelope_out_again() {
        let queue = MemoryQueue::new();
        queue.push(envelope("a")).await.unwrap();
        let first = queue
            .claim(Duration::from_millis(10), Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        assert!(queue.claim(LEASE, Duration::ZERO).await.unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second = queue.claim(LEASE, Duration::ZERO).await.unwrap().unwrap();
        assert_eq!(second.envelope.task_id, first.envelope.task_id);
        assert_eq!(second.envelope.delivery_attempt, 2);
        assert_eq!(
            queue.acknowledge(first.lease).await,
            Err(QueueError::LeaseLost(first.lease))
        );
        assert_eq!(queue.acknowledge(second.lease).await, Ok(()));
    }

    #[tokio::test]
    async fn a_renewed_lease_does_not_expire() {
        let queue = MemoryQueue::new();
        queue.push(envelope("a")).await.unwrap();
        let claim = queue
            .claim(Duration::from_millis(30), Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        queue.renew(claim.lease, LEASE).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(queue.claim(LEASE, Duration::ZERO).await.unwrap().is_none());
        queue.acknowledge(claim.lease).await.unwrap();
    }

    #[tokio::test]
    async fn requeued_envelope_waits_out_its_delay() {
        let queue = MemoryQueue::new();
        queue.push(envelope("a")).await.unwrap();
        let claim = queue.claim(LEASE, Duration::ZERO).await.unwrap().unwrap();
        queue
            .requeue(claim.lease, Duration::from_millis(30))
            .await
            .unwrap();
        assert!(queue.claim(LEASE, Duration::ZERO).await.unwrap().is_none());
        let again = queue
            .claim(LEASE, Duration::from_secs(2))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.envelope.delivery_attempt, 2);
    }

    #[tokio::test]
    async fn the_next_delivery_carries_the_run_an_earlier_one_recorded() {
        let queue = MemoryQueue::new();
        queue.push(envelope("a")).await.unwrap();
        let first = queue
            .claim(Duration::from_millis(10), Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.previous_run, None);
        let run = RunTrace {
            delivery_attempt: 1,
            trace_context: tasker_telemetry::propagation::TraceContext::new(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        };
        queue.record_run(first.lease, &run).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second = queue.claim(LEASE, Duration::ZERO).await.unwrap().unwrap();
        assert_eq!(second.envelope.delivery_attempt, 2);
        assert_eq!(second.previous_run, Some(run.clone()));
        assert_eq!(
            queue.record_run(first.lease, &run).await,
            Err(QueueError::LeaseLost(first.lease)),
            "a lease that ended records nothing"
        );
        queue.acknowledge(second.lease).await.unwrap();
        assert!(
            queue.lock().runs.is_empty(),
            "the record leaves with the task"
        );
    }

    #[tokio::test]
    async fn a_waiting_claim_wakes_up_on_push() {
        let queue = std::sync::Arc::new(MemoryQueue::new());
        let waiter = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.claim(LEASE, Duration::from_secs(5)).await })
        };
        tokio::task::yield_now().await;
        queue.push(envelope("late")).await.unwrap();
        let claim = waiter.await.unwrap().unwrap().unwrap();
        assert_eq!(claim.envelope.task_name, "late");
    }
}
