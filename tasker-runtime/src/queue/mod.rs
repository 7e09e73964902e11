//! Queues of task requests: the [`Queue`] trait where durable and distributed backends plug in,
//! and the in-process [`MemoryQueue`], the embedded default.
//!
//! Claims are *leases*: a worker that claims an envelope must acknowledge it (done) or requeue it
//! before the lease ends, renewing the lease while it runs; an expired lease — a crashed worker —
//! puts the envelope back for another worker, as its next delivery.
//!
//! Durable backends: `PostgresQueue` (feature `postgres`), for workers on any number of
//! machines, and `SqliteQueue` (feature `sqlite`), for processes on one machine.

mod envelope;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::time::Duration;

pub use envelope::{
    now_micros, Envelope, EnvelopeError, ENVELOPE_FORMAT, MAX_CONTEXT_BYTES, MAX_ENVELOPE_BYTES,
};
pub use memory::MemoryQueue;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresQueue, PostgresQueueBuilder};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use sql::Counts;
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteQueue, SqliteQueueBuilder};

/// The future type of [`Queue`]'s methods, for implementations outside this crate.
pub use crate::runner::BoxFuture;
/// The trace context of one delivery's run, as a queue keeps it for the next delivery.
pub use tasker_telemetry::propagation::RunTrace;

/// How a task run ended, as its worker completes the envelope (and a durable queue keeps it).
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Whether the task succeeded.
    pub succeeded: bool,
    /// Its output as JSON (the `Ok` value of a `Result`), on success.
    pub output: Option<serde_json::Value>,
    /// What went wrong, on failure.
    pub error: Option<String>,
}

/// Identifies one claim of one envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseId(pub u128);

/// An envelope handed to a worker, leased until acknowledged, requeued or expired.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The request.
    pub envelope: Envelope,
    /// The lease to acknowledge, renew or requeue.
    pub lease: LeaseId,
    /// The trace context of the latest earlier delivery's run that the queue kept (see
    /// [`Queue::record_run`]): a delivery after one that died links to it.
    pub previous_run: Option<RunTrace>,
}

impl Claim {
    /// A claim of `envelope` under `lease`, with no earlier run recorded.
    pub fn new(envelope: Envelope, lease: LeaseId) -> Self {
        Claim {
            envelope,
            lease,
            previous_run: None,
        }
    }
}

/// Why a queue operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The lease expired (the envelope went back to the queue) or was never handed out.
    #[error("lease {0:?} is not held: it expired and the envelope was handed out again, or it was already released")]
    LeaseLost(LeaseId),
    /// The queue no longer accepts work.
    #[error("the queue `{0}` is closed")]
    Closed(String),
    /// The backend failed.
    #[error("queue backend error: {0}")]
    Backend(String),
}

/// A queue of task requests.
///
/// Implementations must be safe to share between producers and workers (possibly in several
/// processes, for a durable backend). The runtime only ever uses these operations, so a database
/// table or a broker can implement them without changes elsewhere.
pub trait Queue: Send + Sync + 'static {
    /// The name events carry in `task.enqueue`'s `queue`.
    fn name(&self) -> &str;

    /// Adds an envelope.
    fn push(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), QueueError>>;

    /// Takes the next available envelope, leased for `lease`, waiting up to `wait` for one.
    fn claim(
        &self,
        lease: Duration,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Option<Claim>, QueueError>>;

    /// Extends a lease that is still held by `lease` from now.
    fn renew(&self, lease: LeaseId, duration: Duration) -> BoxFuture<'_, Result<(), QueueError>>;

    /// Removes a claimed envelope for good: its task finished.
    fn acknowledge(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), QueueError>>;

    /// Completes a claimed envelope: records how its task ended and removes the envelope, in
    /// one transaction on a durable queue, refused with [`QueueError::LeaseLost`] once the lease
    /// has ended (another worker may have taken the task over). By default, an acknowledgement.
    fn complete(
        &self,
        lease: LeaseId,
        completion: &Completion,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        let _ = completion;
        self.acknowledge(lease)
    }

    /// Puts a claimed envelope back, for another delivery after `delay`.
    fn requeue(&self, lease: LeaseId, delay: Duration) -> BoxFuture<'_, Result<(), QueueError>>;

    /// Puts a claimed envelope back for its task's next attempt (`#[task(max_attempts = …)]`):
    /// as [`requeue`](Queue::requeue) — another delivery after `delay`, counted toward the
    /// queue's delivery limit — with [`Envelope::task_attempt`] set to `task_attempt`, so that
    /// the attempt number survives in the queue. The checkpoints of the task's steps are kept:
    /// the next attempt replays them. By default a backend error: a queue that cannot keep the
    /// attempt must not retry the task for ever.
    fn requeue_attempt(
        &self,
        lease: LeaseId,
        delay: Duration,
        task_attempt: u32,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        let _ = (lease, delay, task_attempt);
        let message = format!(
            "queue `{}` does not implement `Queue::requeue_attempt`, so a failed task is not \
             retried through it",
            self.name()
        );
        Box::pin(std::future::ready(Err(QueueError::Backend(message))))
    }

    /// The step checkpoints of task `task_id`, claimed under `lease`: the outputs its completed
    /// steps recorded during earlier deliveries, and where new ones are recorded — only while
    /// `lease` is held: a record after the lease ended is refused with
    /// [`CheckpointError::LeaseLost`](tasker_telemetry::context::CheckpointError), and the step
    /// does not complete (the worker stops the task). `None` (the default) for a queue that keeps none, such as [`MemoryQueue`], whose
    /// envelopes do not outlive the process. Completing or acknowledging a task's envelope
    /// removes its checkpoints.
    fn checkpoints(
        &self,
        task_id: uuid::Uuid,
        lease: LeaseId,
    ) -> BoxFuture<
        '_,
        Result<Option<std::sync::Arc<dyn tasker_telemetry::context::Checkpoints>>, QueueError>,
    > {
        let _ = (task_id, lease);
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Keeps the trace context of the run of the envelope claimed under `lease` (while the lease
    /// is held; [`QueueError::LeaseLost`] otherwise), so that the next claim of the envelope —
    /// should this run die — carries it as [`Claim::previous_run`]. Workers record it as the
    /// run starts, when a tracing integration gives the run a trace context. By default
    /// nothing is kept.
    fn record_run(&self, lease: LeaseId, run: &RunTrace) -> BoxFuture<'_, Result<(), QueueError>> {
        let _ = (lease, run);
        Box::pin(std::future::ready(Ok(())))
    }
}
