//! The runtime: enqueue task requests by name, and run them on workers.

mod durable;
mod error;
mod isolation;
mod lease;
mod registry;
mod report;
mod run_loop;

use std::collections::HashMap;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use serde_json::Value;
use tasker_telemetry::context::{CheckpointedRun, Checkpoints, Context, QueuedInfo, ScopeTag};
use tasker_telemetry::{
    events, propagation, Details, Event, InitializeStatus, TaskOrigin, TaskRef,
};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use error::{BuildError, EnqueueError, TaskError};
use registry::{Registered, Registry};
pub use run_loop::{RunError, RunSummary, StopSignal};

use crate::queue::{
    Claim, Completion, Envelope, MemoryQueue, Queue, QueueError, TerminalEvent, MAX_CONTEXT_BYTES,
};
use crate::repeated_failure::{FailureReport, RepeatedFailure};
use crate::request::TaskRequest;
use crate::runner::{BoxFuture, RunOutput};
use crate::worker::{
    abandon_run, lock_terminal, with_queued_run, QueuedRetry, QueuedRun, RetrySlot, RunFailure,
    Terminal, TerminalSlot, WithQueuedRun,
};
use durable::{read_checkpoints, CheckpointStop, DurableCheckpoints};
use lease::{Held, Lost};
use report::Marks;

/// Configures a [`Runtime`].
#[derive(Clone)]
pub struct RuntimeBuilder {
    workers: usize,
    queue: Option<Arc<dyn Queue>>,
    lease: Duration,
    poll: Duration,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("workers", &self.workers)
            .field(
                "queue",
                &self.queue.as_ref().map(|queue| queue.name().to_owned()),
            )
            .field("lease", &self.lease)
            .finish()
    }
}

impl RuntimeBuilder {
    /// How many tasks run at once (default: the number of CPUs). `0` makes a producer-only
    /// runtime, for processes that enqueue work other processes run.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// The queue requests go through (default: a new [`MemoryQueue`]).
    pub fn queue(mut self, queue: impl Queue) -> Self {
        self.queue = Some(Arc::new(queue));
        self
    }

    /// A queue shared with other runtimes or code, behind `dyn Queue`. The queues of this crate
    /// are cheap `Clone` handles: `queue(queue.clone())` shares them too.
    pub fn shared_queue(mut self, queue: Arc<dyn Queue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// How long a worker's claim lasts before another worker may take the task (default 30 s);
    /// workers renew it while the task runs. On a durable queue it is also how often this
    /// runtime (with workers) looks for terminal events left unreported, and how long one must
    /// have been left so before this runtime emits it.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(10));
        self
    }

    /// Checks the registered tasks and starts the workers on the current Tokio runtime.
    pub fn build(self) -> Result<Runtime, BuildError> {
        let handle =
            tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoTokioRuntime)?;
        let registry = Registry::from_linked()?;
        let (stop, stopped) = watch::channel(false);
        let inner = Arc::new(Inner {
            queue: self.queue.unwrap_or_else(|| Arc::new(MemoryQueue::new())),
            registry: Arc::new(registry),
            pending: Mutex::new(HashMap::new()),
            lease: self.lease,
            poll: self.poll,
            has_workers: self.workers > 0,
            claim_failures: Mutex::new(RepeatedFailure::new(CLAIM_FAILURE_REPORTS)),
            suspect_check: isolation::SuspectCheck::new(),
            idle_wait: isolation::IdleWait::new(),
            marks: Arc::default(),
            handback: watch::channel(false).0,
            finished: AtomicU64::new(0),
            handed_back: AtomicU64::new(0),
        });
        let workers = (0..self.workers)
            .map(|_| handle.spawn(work(inner.clone(), stopped.clone())))
            .collect();
        // On a queue that keeps terminal events, workers' terminal events are marked reported
        // in batches, and a process with workers also emits those a dead worker left unreported.
        let background = if self.workers > 0 && inner.queue.keeps_terminal_events() {
            vec![
                handle.spawn(report::mark_in_batches(
                    inner.marks.clone(),
                    inner.queue.clone(),
                    stopped.clone(),
                )),
                handle.spawn(report::recover_unreported(
                    inner.queue.clone(),
                    inner.registry.clone(),
                    inner.lease,
                    stopped,
                )),
            ]
        } else {
            Vec::new()
        };
        Ok(Runtime {
            inner,
            stop,
            workers: Mutex::new(workers),
            background: Mutex::new(background),
        })
    }
}

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

/// A request that was enqueued: its task id, and its result once a worker of this runtime ran
/// it, as a `T`: the task's output type for a [`TypedRequest`](crate::TypedRequest), JSON for a
/// by-name [`TaskRequest`].
pub struct TaskHandle<T = Value> {
    task_id: Uuid,
    result: oneshot::Receiver<Result<Value, TaskError>>,
    _output: std::marker::PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for TaskHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle")
            .field("task_id", &self.task_id)
            .field("output", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

impl<T> TaskHandle<T> {
    /// The id every event of the task carries, on the producer's side and the worker's.
    pub fn task_id(&self) -> Uuid {
        self.task_id
    }
}

impl<T: serde::de::DeserializeOwned> TaskHandle<T> {
    /// The task's output (the `Ok` value for a task returning a `Result`), once a worker of this
    /// runtime has run it. A producer-only runtime (`workers(0)`) never runs it, so waiting
    /// gives [`TaskError::Abandoned`] at once. An output that does not read as a `T` (a worker
    /// of another version of the task) is [`TaskError::UnexpectedOutput`].
    pub async fn wait(self) -> Result<T, TaskError> {
        let value = self.result.await.unwrap_or(Err(TaskError::Abandoned))?;
        serde_json::from_value(value).map_err(|error| TaskError::UnexpectedOutput {
            expected: std::any::type_name::<T>(),
            reason: error.to_string(),
        })
    }
}

impl Runtime {
    /// A builder with the defaults: one worker per CPU, an in-memory queue, 30 s leases.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            queue: None,
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(200),
        }
    }

    /// The queue requests go through.
    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.inner.queue
    }

    /// Checks `request` against the registered tasks and queues it: emits `task.initialize`, then
    /// `task.enqueue`, with the task id the worker's events will carry too.
    ///
    /// `request` is the task function's own request, typed (`fulfill::request(order)`: the
    /// handle waits for the task's output type), or a by-name [`TaskRequest`] (the handle waits
    /// for JSON).
    ///
    /// A request for an unknown task or version, with a context that does not fit the task's
    /// input, or bypassing a step that is not `skippable`, is refused: `task.initialize` is
    /// emitted with `status: "error"` and the message, and nothing reaches the queue.
    pub async fn enqueue<R: crate::typed::Enqueue>(
        &self,
        request: R,
    ) -> Result<TaskHandle<R::Output>, EnqueueError> {
        let request = request.into_request()?;
        let task_id = crate::ids::new_id();
        let registered = match self.check(&request) {
            Ok(registered) => registered,
            Err((error, task)) => {
                let task = task.map(|descriptor| task_ref(task_id, descriptor));
                initialize(task, Some(&error));
                return Err(error);
            }
        };
        let descriptor = registered.descriptor;
        let task = task_ref(task_id, descriptor);
        initialize(Some(task), None);
        if events::listening() {
            events::fire(&Event::new(
                Some(task),
                None,
                Details::TaskEnqueue {
                    queue: self.inner.queue.name().into(),
                },
            ));
        }
        let trace_context = propagation::propagator_context(Some(&task))
            .or_else(|| request.carried_trace_context().cloned());
        let envelope = Envelope {
            format: crate::queue::ENVELOPE_FORMAT,
            task_id,
            task_name: descriptor.name.to_owned(),
            task_version: descriptor.version.to_owned(),
            context: request.context().clone(),
            bypass_steps: request.bypassed_steps().to_vec(),
            trace_context,
            enqueued_at_us: crate::queue::now_micros(),
            delivery_attempt: 1,
            task_attempt: 1,
        };
        let (sender, receiver) = oneshot::channel();
        if self.inner.has_workers {
            self.inner.lock_pending().insert(
                task_id,
                Pending {
                    result: sender,
                    scope: Context::with_current(Context::scope),
                },
            );
        }
        if let Err(error) = self.inner.queue.push(envelope).await {
            self.inner.lock_pending().remove(&task_id);
            return Err(EnqueueError::Queue(error));
        }
        Ok(TaskHandle {
            task_id,
            result: receiver,
            _output: std::marker::PhantomData,
        })
    }

    /// Resolves the task, and checks the context and the bypassed steps; on error, also the
    /// descriptor when the task is known, for the `task.initialize` event.
    #[allow(clippy::result_large_err)]
    fn check(
        &self,
        request: &TaskRequest,
    ) -> Result<&Registered, (EnqueueError, Option<&'static crate::TaskDescriptor>)> {
        let registered = self
            .inner
            .registry
            .resolve(request.name(), request.requested_version())
            .map_err(|error| (error, None))?;
        let descriptor = registered.descriptor;
        let fail = |error| Err((error, Some(descriptor)));
        let Some(runner) = &registered.runner else {
            return fail(EnqueueError::NotEnqueueable {
                name: descriptor.name.to_owned(),
                version: descriptor.version.to_owned(),
            });
        };
        if let Err(size) = fits(request.context(), MAX_CONTEXT_BYTES) {
            return fail(EnqueueError::TooLarge {
                name: descriptor.name.to_owned(),
                size,
                limit: MAX_CONTEXT_BYTES,
            });
        }
        if let Err(error) = runner.check(request.context()) {
            return fail(EnqueueError::InvalidContext {
                name: descriptor.name.to_owned(),
                version: descriptor.version.to_owned(),
                reason: error.to_string(),
            });
        }
        for step in request.bypassed_steps() {
            let steps = crate::steps();
            let skippable = || {
                let mut names: Vec<String> = steps
                    .iter()
                    .filter(|step| step.skippable)
                    .map(|step| step.name.to_owned())
                    .collect();
                names.dedup();
                names
            };
            match steps.iter().find(|candidate| candidate.name == step) {
                None => {
                    return fail(EnqueueError::UnknownStep {
                        step: step.clone(),
                        skippable: skippable(),
                    })
                }
                Some(found) if !found.skippable => {
                    return fail(EnqueueError::NotSkippable {
                        step: step.clone(),
                        skippable: skippable(),
                    })
                }
                Some(_) => {}
            }
        }
        Ok(registered)
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

    /// Releases the lease of a task stopped at a run loop's deadline, for another worker to
    /// take at once, with no delivery counted against it.
    async fn hand_back(&self, lease: crate::queue::LeaseId, task_id: Uuid) {
        match self.queue.release(lease).await {
            Ok(()) => {
                self.handed_back.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    target: "tasker",
                    %task_id,
                    "[Tasker] task {task_id} was still running at the stop deadline: handed back                      to the queue for another worker"
                );
            }
            Err(error) => tracing::warn!(
                target: "tasker",
                %task_id,
                "[Tasker] could not hand task {task_id} back at the stop deadline: {error}; it                  runs again once its lease expires"
            ),
        }
    }

    /// Runs a claimed request (asked for at `asked`) and completes it.
    async fn run(
        &self,
        claim: Claim,
        asked: std::time::Instant,
        timer: &mut Pin<Box<tokio::time::Sleep>>,
    ) {
        let lease = claim.lease;
        let task_id = claim.envelope.task_id;
        let delivery = claim.envelope.delivery_attempt;
        let scope = self
            .lock_pending()
            .get(&task_id)
            .map_or_else(ScopeTag::default, |pending| pending.scope);
        let terminal = TerminalSlot::default();
        let retry = RetrySlot::default();
        let result = match Context::default()
            .with_scope(scope)
            .wrap(self.execute(claim, asked, timer, &terminal, &retry, scope))
            .await
        {
            Ok(result) => result,
            Err(Lost::HandedBack) => {
                self.hand_back(lease, task_id).await;
                return;
            }
            Err(lost) => {
                // The run was dropped (a sync one left to finish on its thread) and reports no
                // end; whoever waits on it here keeps waiting for the delivery that finishes it.
                tracing::warn!(
                    target: "tasker",
                    %task_id,
                    "[Tasker] this worker stopped task {task_id} (delivery {delivery}): {lost}; \
                     it reports no end for it (a sync task still finishes on its thread)"
                );
                return;
            }
        };
        if let Err(TaskError::UnknownTask { name, version }) = &result {
            // A producer of another version (a rolling deployment): hand the request back for a
            // worker that knows the task, a few times, rather than lose it.
            if delivery < UNKNOWN_TASK_DELIVERIES {
                tracing::warn!(
                    target: "tasker",
                    %task_id,
                    "[Tasker] no task `{name}` version `{version}` is registered in this worker; \
                     handing the request back (delivery {delivery} of {UNKNOWN_TASK_DELIVERIES})"
                );
                if let Err(error) = self.queue.requeue(lease, UNKNOWN_TASK_DELAY).await {
                    tracing::warn!(target: "tasker", %task_id, "[Tasker] could not hand task {task_id} back: {error}");
                }
                return;
            }
            tracing::error!(
                target: "tasker",
                %task_id,
                "[Tasker] no worker that took it knows task `{name}` version `{version}`; \
                 dropping the request after {delivery} deliveries"
            );
        }
        let next = *retry.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(QueuedRetry { attempt, backoff }) = next {
            // The attempt failed with attempts left (its `task.retry`/`task.backoff` are out):
            // the queue delivers the next attempt after the wait; whoever waits keeps waiting.
            match self.queue.requeue_attempt(lease, backoff, attempt).await {
                Ok(()) => return,
                Err(QueueError::LeaseLost(_)) => {
                    abandon_run(&terminal, scope);
                    tracing::warn!(
                        target: "tasker",
                        %task_id,
                        "[Tasker] task {task_id} could not be handed back for attempt {attempt}: \
                         its lease expired and another worker may have taken it over"
                    );
                    return;
                }
                Err(error) => tracing::warn!(
                    target: "tasker",
                    %task_id,
                    "[Tasker] could not hand task {task_id} back for attempt {attempt}: {error}; \
                     completing it with the failure of attempt {} instead",
                    attempt - 1
                ),
            }
        }
        // The terminal event follows the queue's acceptance of the completion: a worker whose
        // lease expired (another worker took the task over) does not report a completion.
        let completion = Completion {
            succeeded: result.is_ok(),
            output: result.as_ref().ok().cloned(),
            error: result.as_ref().err().map(ToString::to_string),
        };
        // The event gets its id now, and a durable queue keeps it with the completion, so
        // that a process that finds it unreported (this one died first) emits it identically.
        let event = {
            let mut slot = lock_terminal(&terminal);
            match std::mem::take(&mut *slot) {
                Terminal::Held(event) => Some(event.with_id(crate::ids::new_id())),
                other => {
                    *slot = other;
                    None
                }
            }
        };
        let stored = event
            .as_ref()
            .filter(|_| self.queue.keeps_terminal_events())
            .and_then(TerminalEvent::from_event);
        let completed = self
            .queue
            .complete_reporting(lease, &completion, stored.as_ref())
            .await;
        let event = match (&completed, event) {
            (Err(_), Some(event)) => {
                // Back in its slot, for the abandonment below to report.
                *lock_terminal(&terminal) = Terminal::Held(event);
                None
            }
            (_, event) => event,
        };
        match completed {
            Ok(()) => {
                self.finished.fetch_add(1, Ordering::Relaxed);
                if let Some(event) = &event {
                    Context::default()
                        .with_scope(scope)
                        .in_scope(|| events::fire(event));
                }
                if stored.is_some() {
                    self.marks.add(task_id);
                }
            }
            Err(QueueError::LeaseLost(_)) => {
                abandon_run(&terminal, scope);
                tracing::warn!(
                    target: "tasker",
                    %task_id,
                    "[Tasker] the completion of task {task_id} was refused: its lease expired \
                     and another worker may have taken it over; its terminal event is not \
                     reported here"
                );
            }
            Err(error) => {
                abandon_run(&terminal, scope);
                tracing::warn!(
                    target: "tasker",
                    %task_id,
                    "[Tasker] could not acknowledge task {task_id}: {error}; its terminal event \
                     is not reported here, since the request may be delivered again (should \
                     the completion have committed anyway, a process with workers on the queue \
                     reports it a lease length later)"
                );
            }
        }
        if let Some(pending) = self.lock_pending().remove(&task_id) {
            let _ = pending.result.send(result);
        }
    }

    /// Runs the claimed task (asked for at `asked`) while keeping its lease; `Err` when the
    /// lease was lost and the run stopped.
    async fn execute(
        &self,
        claim: Claim,
        asked: std::time::Instant,
        timer: &mut Pin<Box<tokio::time::Sleep>>,
        terminal: &TerminalSlot,
        retry: &RetrySlot,
        scope: ScopeTag,
    ) -> Result<Result<Value, TaskError>, Lost> {
        let Claim {
            envelope,
            lease,
            previous_run,
        } = claim;
        let Some(Registered {
            runner: Some(runner),
            descriptor,
        }) = self
            .registry
            .exact(&envelope.task_name, &envelope.task_version)
        else {
            return Ok(Err(TaskError::UnknownTask {
                name: envelope.task_name,
                version: envelope.task_version,
            }));
        };
        let checkpoint_stop = Arc::new(CheckpointStop::default());
        let held = Held {
            checkpoints: &checkpoint_stop,
            queue: &*self.queue,
            lease,
            length: self.lease,
            until: asked + self.lease,
            task: task_ref(envelope.task_id, descriptor),
            delivery_attempt: envelope.delivery_attempt,
            terminal,
            scope,
            handback: self.handback.subscribe(),
        };
        let failure = Arc::new(Mutex::new(None));
        // Checkpoints of earlier deliveries, on a queue that keeps them (a first delivery has
        // none to read). A run without the ones it has would run completed steps again, so a
        // read that keeps failing until the lease would end stops the run before it starts, as
        // a lost lease does.
        let checkpoints = read_checkpoints(
            &*self.queue,
            envelope.task_id,
            lease,
            envelope.delivery_attempt,
            asked + self.lease,
        )
        .await?
        .map(|checkpoints| {
            Arc::new(DurableCheckpoints::new(
                checkpoints,
                self.lease,
                checkpoint_stop.clone(),
            )) as Arc<dyn Checkpoints>
        });
        let _checkpointing = checkpoints.is_some().then(CheckpointedRun::begin);
        let info = QueuedInfo {
            bypass_steps: envelope.bypass_steps.clone(),
            trace_context: envelope.trace_context.clone(),
            enqueued_at: Some(envelope.enqueued_at()),
            delivery_attempt: envelope.delivery_attempt,
            previous_run,
            checkpoints,
        };
        let refused = (
            envelope.task_id,
            info.clone(),
            *descriptor,
            terminal.clone(),
        );
        let queued = QueuedRun {
            task_id: envelope.task_id,
            info,
            failure: failure.clone(),
            terminal: terminal.clone(),
            attempt: envelope.task_attempt,
            retry: retry.clone(),
        };
        let context = envelope.context;
        let runner = runner.clone();
        let current = Context::current();
        // A sync task runs on a blocking thread; an async one inside this worker, which is what
        // bounds how many tasks run at once.
        let run: BoxFuture<'static, Result<RunOutput, String>> = if runner.is_blocking() {
            let blocking = tokio::task::spawn_blocking(move || {
                current.in_scope(|| {
                    let output = with_queued_run(queued, || runner.run(context));
                    // A sync runner has already run; its future is ready.
                    futures_ready(output)
                })
            });
            Box::pin(async move {
                blocking.await.map_err(|join| match join.try_into_panic() {
                    Ok(payload) => tasker_telemetry::panic_message(&*payload).to_owned(),
                    Err(_) => "the task was cancelled".to_owned(),
                })
            })
        } else {
            Box::pin(CatchUnwind(
                current.wrap(WithQueuedRun::new(queued, runner.run(context))),
            ))
        };
        let output = held.run(run, timer).await?;
        Ok(match output {
            Ok(RunOutput::Success(value)) => Ok(value),
            Ok(RunOutput::Failure) => {
                let failure = failure.lock().unwrap_or_else(|e| e.into_inner()).take();
                let RunFailure { class, message } = failure.unwrap_or(RunFailure {
                    class: "unknown".to_owned(),
                    message: "the task failed".to_owned(),
                });
                Err(TaskError::Failed { class, message })
            }
            Ok(RunOutput::InvalidContext(error)) => {
                let message = error.to_string();
                let (task_id, info, descriptor, terminal) = refused;
                report_invalid_context(descriptor, task_id, info, terminal, &message);
                Err(TaskError::InvalidContext(message))
            }
            Ok(RunOutput::InvalidOutput(error)) => Err(TaskError::InvalidOutput(error.to_string())),
            Err(message) => Err(TaskError::Panicked { message }),
        })
    }
}

/// Catches a panic of the future it polls, as the panic's message.
struct CatchUnwind<F>(F);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        // SAFETY: the inner future is structurally pinned and never moved.
        let inner = unsafe { self.map_unchecked_mut(|this| &mut this.0) };
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(tasker_telemetry::panic_message(&*payload).to_owned())),
        }
    }
}

/// Closes the lifecycle of a request whose context the worker could not read (the producer
/// checked it, so a producer of another version sent it): `task.start`, `task.handle`,
/// `task.finalize` and `task.error` with class `tasker::InvalidContext`, with the producer's
/// task id, so its sequence ends instead of stopping at `task.enqueue`.
fn report_invalid_context(
    descriptor: &'static crate::TaskDescriptor,
    task_id: Uuid,
    info: QueuedInfo,
    terminal: TerminalSlot,
    message: &str,
) {
    let run = QueuedRun {
        task_id,
        info,
        failure: Arc::default(),
        terminal,
        attempt: 1,
        retry: Arc::default(),
    };
    with_queued_run(run, || {
        let mut task = crate::TaskRun::start(descriptor);
        task.finish(crate::outcome::Outcome::Failure {
            retryable: false,
            error: &crate::outcome::FixedError {
                class: "tasker::InvalidContext",
                message,
            },
        });
    });
}

/// Takes the output of a future that is already ready, without an executor.
fn futures_ready(future: crate::runner::BoxFuture<'static, RunOutput>) -> RunOutput {
    let mut future = future;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        // Sync runners build a ready future; anything else is a bug worth a clear message.
        std::task::Poll::Pending => RunOutput::InvalidOutput(serde::de::Error::custom(
            "a sync task's runner was not ready",
        )),
    }
}

/// How many deliveries a request for a task this runtime does not know gets before it is dropped
/// (a durable queue may dead-letter it sooner).
const UNKNOWN_TASK_DELIVERIES: u32 = 5;

/// How long such a request waits before its next delivery.
const UNKNOWN_TASK_DELAY: Duration = Duration::from_secs(1);

/// How often failing claims are reported at most, after the first failure.
const CLAIM_FAILURE_REPORTS: Duration = Duration::from_secs(10);

/// One worker: claims requests and runs them until the runtime stops.
async fn work(inner: Arc<Inner>, mut stopped: watch::Receiver<bool>) {
    let mut timer = Box::pin(tokio::time::sleep(inner.lease));
    loop {
        if *stopped.borrow() {
            return;
        }
        // The gate is held while the claimed task runs: alone, or beside the process's others.
        let (asked, claim, _gate) = tokio::select! {
            next = inner.claim_next() => next,
            _ = stopped.changed() => return,
        };
        report_claim(&inner, claim.as_ref().err());
        match claim {
            Ok(Some(claim)) => inner.run(claim, asked, &mut timer).await,
            Ok(None) => {}
            Err(_) => tokio::time::sleep(inner.poll).await,
        }
    }
}

/// Tells the log about failing claims (`error`: this one's), shared by the runtime's workers:
/// the first failure at once, then a count at most every [`CLAIM_FAILURE_REPORTS`] while they
/// last, and one line when claims work again.
fn report_claim(inner: &Inner, error: Option<&QueueError>) {
    // Paused in tests that pause Tokio's clock, like the rest of the worker's timing.
    let now = tokio::time::Instant::now().into_std();
    let report = {
        let mut failures = inner
            .claim_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match error {
            None => failures.succeeded(now),
            Some(_) => failures.failed(now),
        }
    };
    let queue = inner.queue.name();
    match (report, error) {
        (Some(FailureReport::First), Some(error)) => tracing::error!(
            target: "tasker",
            "[Tasker] a worker could not claim from queue `{queue}`: {error}; retrying, \
             reported at most every {} s while it lasts",
            CLAIM_FAILURE_REPORTS.as_secs(),
        ),
        (Some(FailureReport::Repeated { count, over }), Some(error)) => tracing::error!(
            target: "tasker",
            "[Tasker] claims from queue `{queue}` failed {count} times in the last {} s: \
             {error}",
            over.as_secs(),
        ),
        (Some(FailureReport::Recovered { count, over }), _) => tracing::info!(
            target: "tasker",
            "[Tasker] claims from queue `{queue}` work again, after {count} failures over \
             {:.1} s",
            over.as_secs_f64(),
        ),
        _ => {}
    }
}

/// `Ok` when `context` encodes to at most `limit` bytes of JSON; else the bytes counted before
/// stopping (just over the limit). Stops as soon as the limit is passed.
fn fits(context: &Value, limit: usize) -> Result<(), usize> {
    struct Counter {
        written: usize,
        limit: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.written += bytes.len();
            if self.written > self.limit {
                return Err(std::io::Error::other("over the limit"));
            }
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter { written: 0, limit };
    match serde_json::to_writer(&mut counter, context) {
        Ok(()) => Ok(()),
        Err(_) => Err(counter.written),
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

fn initialize(task: Option<TaskRef>, error: Option<&EnqueueError>) {
    if !events::listening() {
        return;
    }
    let (status, errors) = match error {
        None => (InitializeStatus::Success, Vec::new()),
        Some(error) => (InitializeStatus::Error, vec![error.to_string()]),
    };
    events::fire(&Event::new(
        task,
        None,
        Details::TaskInitialize {
            status,
            errors: errors.into(),
        },
    ));
}
