//! Queues of task requests: the [`Queue`] trait where durable and distributed backends plug in,
//! and the in-process [`MemoryQueue`], the embedded default.
//!
//! Claims are *leases*: a worker that claims an envelope must acknowledge it (done) or requeue it
//! before the lease ends, renewing the lease while it runs; an expired lease — a crashed worker —
//! puts the envelope back for another worker, as its next delivery. On a durable queue that
//! delivery goes only to a worker that runs it alone in its process, and the expired one counts
//! toward the delivery limit only if it, too, ran alone ([`Isolation`]).
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
mod terminal;
mod wait;

use std::time::Duration;

pub use crate::checkpoint::{CheckpointError, Checkpoints};
pub use envelope::{
    now_micros, Envelope, EnvelopeError, ENVELOPE_FORMAT, MAX_CONTEXT_BYTES, MAX_ENVELOPE_BYTES,
};
pub use memory::MemoryQueue;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresQueue, PostgresQueueBuilder, MAX_SCHEMA_NAME_BYTES};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use sql::{
    Counts, DeadLetter, RetriedDeadLetters, TaskCounts, DEAD_LETTER_DECODED_BYTES,
    DEAD_LETTER_RAW_BYTES,
};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteQueue, SqliteQueueBuilder};
pub use terminal::{TerminalEvent, TerminalEventError};

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

/// What [`Queue::report_unreported`] hands each terminal event it takes to: the runtime's
/// emitter (it may be called on a blocking thread).
pub type EmitTerminal = std::sync::Arc<dyn Fn(&TerminalEvent) + Send + Sync>;

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

/// Whether a claimer's run would be alone in its process: what decides, should its lease expire
/// (the process died or stalled), whether that delivery counts toward a durable queue's
/// `max_deliveries`.
///
/// A lease that expires while its process ran other tasks too is ambiguous: any of them may have
/// brought the process down. That delivery does not count, and the envelope becomes a *suspect*:
/// it is handed out again only to a claimer that runs alone, so that its next crash, if any, is
/// its own. A lease that expires while its run was alone counts, and its envelope also waits for a
/// lone claimer: a task that crashed its process once runs alone until it finishes or is
/// dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isolation {
    /// The run shares its process with others. Should its lease expire, that delivery does not
    /// count toward `max_deliveries`. A shared claimer is never handed a suspect.
    Shared,
    /// The run is alone in its process, which claims nothing else while it runs. Should its lease
    /// expire, that delivery counts. What [`Queue::claim`] assumes.
    Alone,
}

/// Why a queue operation failed.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
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
    /// A PostgreSQL schema name longer than the server keeps: it would cut the name short, and
    /// two queues whose names differ only past the cut would share tables.
    #[error(
        "the PostgreSQL schema name `{schema}` is {length} bytes long; PostgreSQL keeps at most \
         {limit} bytes of a name (it would silently cut it short): choose a shorter one"
    )]
    SchemaNameTooLong {
        /// The name given.
        schema: String,
        /// Its length in bytes.
        length: usize,
        /// The longest name PostgreSQL keeps, in bytes.
        limit: usize,
    },
    /// No row of the queue with this id is in the dead-letter state (an operator's retry or
    /// purge of one dead letter).
    #[error(
        "queue `{queue}` has no dead letter with id {id}: `dead_letters()` (or `cargo tasker \
         queue dead-letters`) lists the ids there are"
    )]
    NoSuchDeadLetter {
        /// The queue's name.
        queue: String,
        /// The id asked for.
        id: i64,
    },
    /// A dead letter whose stored envelope does not decode cannot be delivered again: no worker
    /// could read it. It can only be purged.
    #[error("dead letter {id} cannot be retried: {reason}; it can only be purged")]
    UnreadableDeadLetter {
        /// The row's id.
        id: i64,
        /// What is wrong with its envelope.
        reason: String,
    },
}

tasker_telemetry::__debug_shows_message!(QueueError {
    LeaseLost,
    Closed,
    Backend,
    SchemaNameTooLong,
    NoSuchDeadLetter,
    UnreadableDeadLetter,
});

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

    /// Takes the next available envelope, leased for `lease`, waiting up to `wait` for one. A
    /// durable queue takes the claimer to run alone ([`Isolation::Alone`]): should the lease
    /// expire, that delivery counts toward `max_deliveries`.
    fn claim(
        &self,
        lease: Duration,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Option<Claim>, QueueError>>;

    /// Takes the next available envelope like [`claim`](Self::claim), saying whether the run
    /// would be alone in its process (see [`Isolation`]): a durable queue records it with the
    /// lease, counts an expired lease toward `max_deliveries` only if its run was alone, and hands
    /// suspects (envelopes whose lease expired) only to [`Isolation::Alone`] claimers. By default,
    /// a [`claim`](Self::claim): a queue that loses its envelopes with its process, such as
    /// [`MemoryQueue`], has no crash to tell apart.
    fn claim_isolated(
        &self,
        lease: Duration,
        wait: Duration,
        isolation: Isolation,
    ) -> BoxFuture<'_, Result<Option<Claim>, QueueError>> {
        let _ = isolation;
        self.claim(lease, wait)
    }

    /// Takes up to `max` available envelopes at once, each under a lease of its own for
    /// `lease`, waiting up to `wait` for at least one; otherwise like
    /// [`claim_isolated`](Self::claim_isolated) (oldest first; a claimer that runs alone is
    /// handed suspects first). Empty when none came within `wait`, or `max` is 0. A durable
    /// queue leases them in one statement or transaction. By default, one
    /// [`claim_isolated`](Self::claim_isolated).
    fn claim_batch(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
        isolation: Isolation,
    ) -> BoxFuture<'_, Result<Vec<Claim>, QueueError>> {
        Box::pin(async move {
            if max == 0 {
                return Ok(Vec::new());
            }
            let claim = self.claim_isolated(lease, wait, isolation).await?;
            Ok(claim.into_iter().collect())
        })
    }

    /// Whether suspects wait: envelopes whose lease expired and that only a claimer running
    /// alone ([`Isolation::Alone`]) may take. Workers ask it about once a second and drain their
    /// process to claim one only when it says so. `false` by default.
    fn suspects_waiting(&self) -> BoxFuture<'_, Result<bool, QueueError>> {
        Box::pin(std::future::ready(Ok(false)))
    }

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

    /// Whether this queue keeps completions' terminal events until they are reported (see
    /// [`complete_reporting`](Self::complete_reporting)): the runtime hands terminal events to
    /// it, marks them and looks for unreported ones only then. A queue that overrides
    /// `complete_reporting`, [`mark_reported`](Self::mark_reported) and
    /// [`report_unreported`](Self::report_unreported) returns `true`. By default, `false`.
    fn keeps_terminal_events(&self) -> bool {
        false
    }

    /// Completes a claimed envelope like [`complete`](Self::complete) and, in the same
    /// transaction on a durable queue, keeps `terminal` — the task's `task.complete` or
    /// `task.error`, which the worker emits once this returns `Ok` — as *unreported* until
    /// [`mark_reported`](Self::mark_reported) names its task. Should the worker die in between,
    /// another process finds it with [`report_unreported`](Self::report_unreported) and emits it
    /// again, with the same ids. By default (a queue whose completions do not outlive the
    /// process, such as [`MemoryQueue`]), [`complete`](Self::complete), keeping nothing.
    fn complete_reporting(
        &self,
        lease: LeaseId,
        completion: &Completion,
        terminal: Option<&TerminalEvent>,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        let _ = terminal;
        self.complete(lease, completion)
    }

    /// Marks the terminal events of the tasks `task_ids` reported (emitted), so that no process
    /// emits them again. Workers call it in small batches, off the tasks' path. By default
    /// nothing is kept, so nothing is marked.
    fn mark_reported(&self, task_ids: &[uuid::Uuid]) -> BoxFuture<'_, Result<(), QueueError>> {
        let _ = task_ids;
        Box::pin(std::future::ready(Ok(())))
    }

    /// Takes up to `limit` terminal events of this queue's completions left unreported for
    /// longer than `grace` (their worker died between the completion's commit and the event's
    /// emission, or before its mark was written), hands each to `emit`, and marks them
    /// reported, holding them meanwhile so that no other process takes them too (a row lock
    /// skipped by others on PostgreSQL, the write lock on SQLite). Returns how many it took:
    /// `limit` means there may be more. A process killed after `emit` and before the marks
    /// commit leaves them for another process, which emits them again, with the same ids. By
    /// default there are none.
    fn report_unreported(
        &self,
        grace: Duration,
        limit: usize,
        emit: EmitTerminal,
    ) -> BoxFuture<'_, Result<usize, QueueError>> {
        let _ = (grace, limit, emit);
        Box::pin(std::future::ready(Ok(0)))
    }

    /// Puts a claimed envelope back, for another delivery after `delay`. The delivery counts
    /// toward a durable queue's `max_deliveries`.
    fn requeue(&self, lease: LeaseId, delay: Duration) -> BoxFuture<'_, Result<(), QueueError>>;

    /// Hands a claimed envelope back for another worker to take at once, without counting the
    /// delivery against its task: its worker is stopping (the task did nothing wrong). Refused
    /// with [`QueueError::LeaseLost`] once the lease has ended. By default, a
    /// [`requeue`](Self::requeue) with no delay (which counts, on a queue that counts).
    fn release(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), QueueError>> {
        self.requeue(lease, Duration::ZERO)
    }

    /// Work left in the queue: envelopes ready, delayed or leased (dead letters excluded) plus,
    /// on a queue that keeps terminal events, completions whose event is not reported yet.
    /// `None` (the default) when the queue cannot tell. What
    /// [`Runtime::run_until_drained`](crate::Runtime::run_until_drained) waits on.
    fn unfinished(&self) -> BoxFuture<'_, Result<Option<u64>, QueueError>> {
        Box::pin(std::future::ready(Ok(None)))
    }

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
    /// [`CheckpointError::LeaseLost`](crate::queue::CheckpointError), and the step
    /// does not complete (the worker stops the task). `None` (the default) for a queue that keeps none, such as [`MemoryQueue`], whose
    /// envelopes do not outlive the process. Completing or acknowledging a task's envelope
    /// removes its checkpoints.
    fn checkpoints(
        &self,
        task_id: uuid::Uuid,
        lease: LeaseId,
    ) -> BoxFuture<'_, Result<Option<std::sync::Arc<dyn Checkpoints>>, QueueError>> {
        let _ = (task_id, lease);
        Box::pin(std::future::ready(Ok(None)))
    }

    /// The step checkpoints of delivery `delivery_attempt` of task `task_id`, claimed under
    /// `lease`, as [`checkpoints`](Self::checkpoints) gives them; a queue may skip reading them
    /// on the first delivery (`delivery_attempt == 1`: every delivery counts in it, so no
    /// earlier one recorded any). What workers call. By default,
    /// [`checkpoints`](Self::checkpoints).
    fn delivery_checkpoints(
        &self,
        task_id: uuid::Uuid,
        lease: LeaseId,
        delivery_attempt: u32,
    ) -> BoxFuture<'_, Result<Option<std::sync::Arc<dyn crate::checkpoint::Checkpoints>>, QueueError>>
    {
        let _ = delivery_attempt;
        self.checkpoints(task_id, lease)
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
