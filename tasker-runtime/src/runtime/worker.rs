//! The worker loop: claim a request, run it while holding its lease, complete it.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tasker_telemetry::__private::QueuedInfo;
use tasker_telemetry::context::{Context, ScopeTag};
use tokio::sync::watch;
use uuid::Uuid;

use super::execution::{futures_ready, report_invalid_context, CatchUnwind};
use super::lease::{Held, Lost};
use super::registry::Registered;
use super::{task_ref, Inner, TaskError};
use crate::checkpoint::durable::{read_checkpoints, CheckpointStop, DurableCheckpoints};
use crate::checkpoint::{CheckpointedRun, Checkpoints};
use crate::handoff::{
    abandon_run, with_queued_run, FailureSlot, QueuedRetry, QueuedRun, RetrySlot, RunFailure,
    TerminalSlot, WithQueuedRun,
};
use crate::queue::{Claim, Completion, QueueError, TerminalEvent};
use crate::repeated_failure::FailureReport;
use crate::runner::{BoxFuture, RunOutput};

/// How many deliveries a request for a task this runtime does not know gets before it is dropped
/// (a durable queue may dead-letter it sooner).
const UNKNOWN_TASK_DELIVERIES: u32 = 5;

/// How long such a request waits before its next delivery.
const UNKNOWN_TASK_DELAY: Duration = Duration::from_secs(1);

/// How often failing claims are reported at most, after the first failure.
pub(super) const CLAIM_FAILURE_REPORTS: Duration = Duration::from_secs(10);

/// One worker: claims requests and runs them until the runtime stops.
pub(super) async fn work(inner: Arc<Inner>, mut stopped: watch::Receiver<bool>) {
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

impl Inner {
    /// Releases the lease of a task stopped at a run loop's deadline, for another worker to
    /// take at once, with no delivery counted against it.
    async fn hand_back(&self, lease: crate::queue::LeaseId, task_id: Uuid) {
        match self.queue.release(lease).await {
            Ok(()) => {
                self.handed_back.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    target: "tasker",
                    %task_id,
                    "[Tasker] task {task_id} was still running at the stop deadline: handed back \
                     to the queue for another worker"
                );
            }
            Err(error) => tracing::warn!(
                target: "tasker",
                %task_id,
                "[Tasker] could not hand task {task_id} back at the stop deadline: {error}; it \
                 runs again once its lease expires"
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
        let next = retry.asked();
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
        let event = terminal
            .take_held()
            .map(|event| event.with_id(crate::ids::new_id()));
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
                terminal.restore(event);
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
                        .in_scope(|| tasker_telemetry::__private::fire(event));
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
        let failure = FailureSlot::default();
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
            checkpoints,
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
                let failure = failure.take();
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
