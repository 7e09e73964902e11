//! The runtime: enqueue task requests by name, and run them on workers.

mod builder;
mod enqueue;
mod error;
mod execution;
mod handle;
mod isolation;
mod lease;
mod registry;
mod report;
mod run_loop;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tasker_telemetry::context::ScopeTag;
use tasker_telemetry::{TaskOrigin, TaskRef};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use builder::RuntimeBuilder;
pub use error::{BuildError, EnqueueError, TaskError};
pub use handle::TaskHandle;
pub(crate) use lease::Lost;
use registry::Registry;
pub use run_loop::{RunError, RunSummary, StopSignal};

use crate::queue::Queue;
use crate::repeated_failure::RepeatedFailure;
use report::Marks;

/// Runs registered tasks requested by name: producers [`enqueue`](Runtime::enqueue) requests
/// into a [`Queue`], workers claim and run them, continuing the producer's task id and trace.
///
/// A task is enqueued by its registered name, with a context that deserializes into its
/// argument; [`TaskHandle::wait`] gives its output as JSON:
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Order {
///     id: u64,
/// }
///
/// #[tasker::task(name = "fulfil", version = "1.0.0")]
/// async fn fulfil(order: Order) -> Result<u64, std::io::Error> {
///     Ok(order.id * 10)
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
/// let runtime = tasker::Runtime::builder().workers(2).build()?; // inside a Tokio runtime
/// let request = tasker::TaskRequest::new("fulfil", &Order { id: 7 })?;
/// let handle = runtime.enqueue(request).await?;
/// assert_eq!(handle.wait().await?, serde_json::json!(70));
/// runtime.shutdown().await;
/// # Ok(())
/// # })
/// # }
/// ```
///
/// Durable queues ([`SqliteQueue`](crate::queue::SqliteQueue),
/// [`PostgresQueue`](crate::queue::PostgresQueue)) go in with
/// [`RuntimeBuilder::queue`]; `examples/worker.rs` in the repository runs producers and workers
/// as separate processes.
pub struct Runtime {
    inner: Arc<Inner>,
    stop: watch::Sender<bool>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// The marker of reported terminal events and the recovery of unreported ones.
    background: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("queue", &self.inner.queue.name())
            .finish_non_exhaustive()
    }
}

struct Inner {
    queue: Arc<dyn Queue>,
    registry: Arc<Registry>,
    /// Requests enqueued here and not finished: who waits, and the producer's scope.
    pending: Mutex<HashMap<Uuid, Pending>>,
    lease: Duration,
    poll: Duration,
    /// Whether this runtime runs requests itself; a producer-only one keeps no pending results
    /// (nobody here would ever complete them).
    has_workers: bool,
    /// The workers' failed claims, reported together.
    claim_failures: Mutex<RepeatedFailure>,
    /// When the workers next ask whether tasks whose lease expired wait to run alone.
    suspect_check: isolation::SuspectCheck,
    /// How long the workers' next shared claim waits: longer while they find nothing.
    idle_wait: isolation::IdleWait,
    /// Terminal events emitted here, to mark reported.
    marks: Arc<Marks>,
    /// Turns `true` when a run loop's stop deadline passes: running tasks are handed back.
    handback: watch::Sender<bool>,
    /// Tasks whose completion the queue accepted.
    finished: AtomicU64,
    /// Tasks stopped and handed back to the queue.
    handed_back: AtomicU64,
}

struct Pending {
    result: oneshot::Sender<Result<Value, TaskError>>,
    scope: ScopeTag,
}

impl Runtime {
    /// The queue requests go through.
    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.inner.queue
    }

    /// Stops claiming new requests, lets the workers finish the tasks they claimed, and waits
    /// for them. Requests not yet claimed stay in the queue. Before it returns, every event of
    /// those tasks has reached the adapters ([`tasker_telemetry::flush`]).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        for worker in workers {
            let _ = worker.await;
        }
        let background =
            std::mem::take(&mut *self.background.lock().unwrap_or_else(|e| e.into_inner()));
        for task in background {
            let _ = task.await;
        }
        // The marks of the last tasks, written after the marker's last batch.
        self.inner.marks.flush(&*self.inner.queue).await;
        // Whoever still waits on a request that no worker here will run learns it now.
        self.inner.lock_pending().clear();
        // The workers' last events reach the adapters before `shutdown` returns; the wait is
        // blocking, but bounded, and `shutdown` is the end of the runtime's life.
        let _ = tokio::task::spawn_blocking(tasker_telemetry::flush).await;
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Workers finish the task in hand and stop.
        let _ = self.stop.send(true);
    }
}

impl Inner {
    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn task_ref(id: Uuid, descriptor: &'static crate::TaskDescriptor) -> TaskRef {
    TaskRef {
        id,
        name: descriptor.name,
        version: descriptor.version,
        source: Some(&descriptor.source),
        origin: TaskOrigin::Queued,
    }
}
