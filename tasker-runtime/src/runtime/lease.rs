//! Keeping a claim's lease while its task runs: renewing it every third of its length, having
//! the queue keep the run's trace context for a later delivery, and stopping the run once the
//! lease is gone.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::checkpoint::CheckpointError;
use tasker_telemetry::propagation::{self, RunTrace};
use tasker_telemetry::TaskRef;

use crate::checkpoint::durable::CheckpointStop;
use crate::handoff::{abandon_run, TerminalSlot};
use crate::queue::{LeaseId, Queue, QueueError};
use crate::runner::BoxFuture;

/// Why a worker stopped a task run before it finished.
#[derive(Debug)]
pub(crate) enum Lost {
    /// The queue says the lease is not held: it expired and another worker may have claimed
    /// the task, or the envelope is gone.
    Taken,
    /// Renewals failed (the queue did not answer) until the lease would have ended.
    Unrenewable(QueueError),
    /// A step's checkpoint could not be written for a lease's length: the step must not
    /// complete without it, so the run stops and the next delivery runs the step again.
    Unrecorded(CheckpointError),
    /// The checkpoints of earlier deliveries could not be read before the lease would end: the
    /// run did not start, since it would have run completed steps again.
    Unread(QueueError),
    /// The runtime is stopping and its deadline passed: the task goes back to the queue.
    HandedBack,
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::Taken => {
                f.write_str("its lease expired and another worker may have taken the task over")
            }
            Lost::Unrenewable(error) => write!(
                f,
                "its lease could not be renewed before it ended (last error: {error})"
            ),
            Lost::Unrecorded(error) => write!(
                f,
                "a step's checkpoint could not be recorded for the length of its lease ({error}); \
                 the step did not complete and runs again on the task's next delivery"
            ),
            Lost::Unread(error) => write!(
                f,
                "the checkpoints of its earlier deliveries could not be read before its lease \
                 would end ({error}); the task did not start and runs on its next delivery"
            ),
            Lost::HandedBack => {
                f.write_str("the runtime stopped and its deadline passed before the task ended")
            }
        }
    }
}

/// The lease of one claim, kept while its task runs.
pub(super) struct Held<'a> {
    pub(super) queue: &'a dyn Queue,
    pub(super) lease: LeaseId,
    /// The lease's length; renewals extend it by as much.
    pub(super) length: Duration,
    /// When the lease ends at the latest, by this process's clock: the length after the moment
    /// the claim (or the last renewal that succeeded) was asked for.
    pub(super) until: Instant,
    /// The task, whose run's trace context the queue keeps for a later delivery.
    pub(super) task: TaskRef,
    pub(super) delivery_attempt: u32,
    /// The run's terminal event, marked abandoned when the lease is lost.
    pub(super) terminal: &'a TerminalSlot,
    /// The scope of the worker's run, for observers told of an abandonment.
    pub(super) scope: tasker_telemetry::context::ScopeTag,
    /// Set when the run's checkpoints stop it (see [`DurableCheckpoints`](super::durable)).
    pub(super) checkpoints: &'a CheckpointStop,
    /// Turns `true` when the runtime hands its running tasks back (its stop deadline passed).
    pub(super) handback: tokio::sync::watch::Receiver<bool>,
}

/// Resolves once `handback` turns `true`; never, should its sender go away.
async fn handed_back(mut handback: tokio::sync::watch::Receiver<bool>) {
    if handback.wait_for(|handed| *handed).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Where recording the run's trace context stands.
enum Recording<'a> {
    /// Waiting for the run's span (the task starts on its first poll; a sync task on a thread of
    /// its own, seen by the first renewal at the latest).
    Looking,
    Writing(BoxFuture<'a, Result<(), QueueError>>),
    Done,
}

impl Held<'_> {
    /// Awaits `run`, renewing the lease every third of its length; the worker's one `timer` is
    /// armed only when the task does not finish on its first poll. When the lease is lost —
    /// the queue refuses a renewal or the run's trace record, or renewals fail until the lease
    /// would have ended — the run is marked abandoned and dropped at once (between two of its
    /// polls), and `Err` says why. A database error short of that is reported once and
    /// retried at the next renewal. A step checkpoint that could not be recorded stops the run
    /// the same way.
    pub(super) async fn run<T>(
        mut self,
        run: BoxFuture<'static, T>,
        timer: &mut Pin<Box<tokio::time::Sleep>>,
    ) -> Result<T, Lost> {
        let period = self.length / 3;
        let mut run = run;
        let mut armed = false;
        let mut ticked = false;
        let mut renewal: Option<(Instant, BoxFuture<'_, Result<(), QueueError>>)> = None;
        let mut recording = Recording::Looking;
        let mut reported = false;
        let queue = self.queue;
        let mut handback = std::pin::pin!(handed_back(self.handback.clone()));
        let outcome = std::future::poll_fn(|cx| {
            if let Poll::Ready(output) = run.as_mut().poll(cx) {
                return Poll::Ready(Ok(output));
            }
            match self.checkpoints.error() {
                None => {}
                Some(CheckpointError::LeaseLost) => return Poll::Ready(Err(Lost::Taken)),
                Some(error) => return Poll::Ready(Err(Lost::Unrecorded(error))),
            }
            if handback.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(Lost::HandedBack));
            }
            if let Recording::Looking = recording {
                if let Some(trace_context) = propagation::run_context(&self.task) {
                    let run = RunTrace {
                        delivery_attempt: self.delivery_attempt,
                        trace_context,
                    };
                    recording = Recording::Writing(queue.record_run(self.lease, &run));
                } else if ticked {
                    // No span by the first renewal: no tracing integration keeps one.
                    recording = Recording::Done;
                }
            }
            if let Recording::Writing(write) = &mut recording {
                match write.as_mut().poll(cx) {
                    Poll::Pending => {}
                    Poll::Ready(Ok(())) => recording = Recording::Done,
                    Poll::Ready(Err(QueueError::LeaseLost(_))) => {
                        return Poll::Ready(Err(Lost::Taken))
                    }
                    Poll::Ready(Err(error)) => {
                        tracing::warn!(
                            target: "tasker",
                            task_id = %self.task.id,
                            "[Tasker] could not record the trace context of task {}'s run: \
                             {error}; a later delivery of the task will not link to it",
                            self.task.id,
                        );
                        recording = Recording::Done;
                    }
                }
            }
            loop {
                if let Some((asked, renewing)) = &mut renewal {
                    let Poll::Ready(renewed) = renewing.as_mut().poll(cx) else {
                        return Poll::Pending;
                    };
                    let asked = *asked;
                    renewal = None;
                    match renewed {
                        Ok(()) => self.until = asked + self.length,
                        Err(QueueError::LeaseLost(_)) => return Poll::Ready(Err(Lost::Taken)),
                        Err(error) if Instant::now() >= self.until => {
                            return Poll::Ready(Err(Lost::Unrenewable(error)))
                        }
                        Err(error) => {
                            if !std::mem::replace(&mut reported, true) {
                                tracing::warn!(
                                    target: "tasker",
                                    task_id = %self.task.id,
                                    "[Tasker] could not renew the lease of task {}: {error}; \
                                     retrying at each renewal until the lease would end",
                                    self.task.id,
                                );
                            }
                        }
                    }
                }
                if !armed {
                    timer.as_mut().reset(tokio::time::Instant::now() + period);
                    armed = true;
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                armed = false;
                ticked = true;
                renewal = Some((Instant::now(), queue.renew(self.lease, self.length)));
            }
        })
        .await;
        if outcome.is_err() {
            // Before `run` is dropped, so that the task run, as it is torn down, reports its
            // abandonment instead of a cancellation.
            abandon_run(self.terminal, self.scope);
        }
        outcome
    }
}
