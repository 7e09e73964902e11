//! The in-process queue.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
/// use tasker::queue::{Envelope, MemoryQueue, Queue};
/// let queue = MemoryQueue::new();
/// queue.push(Envelope::new("t", "1", serde_json::Value::Null)).await.unwrap();
/// let claim = queue.claim(Duration::from_secs(30), Duration::ZERO).await.unwrap().unwrap();
/// queue.acknowledge(claim.lease).await.unwrap();
/// assert_eq!(queue.len(), 0);
/// # });
/// ```
///
/// A `MemoryQueue` is a cheap handle: clones share the same queue, so a program can keep one for
/// enqueueing and give another to a [`Runtime`](crate::Runtime).
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    name: String,
    state: Arc<Mutex<State>>,
    /// Every push and requeue wakes a waiting claim: nothing changes the queue behind its back,
    /// so waiting claims never poll.
    waiting: Arc<ClaimWait>,
    next_lease: Arc<AtomicU64>,
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
            state: Arc::default(),
            waiting: Arc::new(ClaimWait::new(None)),
            next_lease: Arc::new(AtomicU64::new(1)),
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

    /// The lease's deadline and envelope while it is held: a lease that ended is refused even
    /// before the next claim hands its envelope out again, as on the durable queues, since
    /// another worker may take it at any moment.
    fn held(state: &mut State, lease: LeaseId) -> Result<&mut (Instant, Envelope), QueueError> {
        match state.leased.get_mut(&lease) {
            Some(held) if held.0 > Instant::now() => Ok(held),
            _ => Err(QueueError::LeaseLost(lease)),
        }
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
        let result = Self::held(&mut self.lock(), lease).map(|(until, _)| {
            *until = Instant::now() + duration;
        });
        Box::pin(std::future::ready(result))
    }

    fn acknowledge(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), QueueError>> {
        let mut state = self.lock();
        let result = Self::held(&mut state, lease).map(|(_, envelope)| envelope.task_id);
        if let Ok(task_id) = result {
            state.leased.remove(&lease);
            state.runs.remove(&task_id);
        }
        Box::pin(std::future::ready(result.map(drop)))
    }

    fn record_run(&self, lease: LeaseId, run: &RunTrace) -> BoxFuture<'_, Result<(), QueueError>> {
        let mut state = self.lock();
        let result = Self::held(&mut state, lease).map(|(_, envelope)| envelope.task_id);
        if let Ok(task_id) = result {
            state.runs.insert(task_id, run.clone());
        }
        Box::pin(std::future::ready(result.map(drop)))
    }

    fn requeue(&self, lease: LeaseId, delay: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
        self.put_back(lease, delay, None)
    }

    fn requeue_attempt(
        &self,
        lease: LeaseId,
        delay: Duration,
        task_attempt: u32,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        self.put_back(lease, delay, Some(task_attempt))
    }

    fn unfinished(&self) -> BoxFuture<'_, Result<Option<u64>, QueueError>> {
        let unfinished = u64::try_from(self.len()).unwrap_or(u64::MAX);
        Box::pin(std::future::ready(Ok(Some(unfinished))))
    }
}

impl MemoryQueue {
    /// Hands a claimed envelope out again after `delay`, for `task_attempt` when given.
    fn put_back(
        &self,
        lease: LeaseId,
        delay: Duration,
        task_attempt: Option<u32>,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        let result = {
            let mut state = self.lock();
            Self::held(&mut state, lease).map(drop).map(|()| {
                if let Some((_, mut envelope)) = state.leased.remove(&lease) {
                    envelope.delivery_attempt = envelope.delivery_attempt.saturating_add(1);
                    if let Some(task_attempt) = task_attempt {
                        envelope.task_attempt = task_attempt;
                    }
                    if delay.is_zero() {
                        state.ready.push_back(envelope);
                    } else {
                        state.delayed.push((Instant::now() + delay, envelope));
                    }
                }
            })
        };
        self.waiting.wake(1);
        Box::pin(std::future::ready(result))
    }
}
