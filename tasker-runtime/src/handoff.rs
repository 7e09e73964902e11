//! Handing a worker's request to the task run it starts: the task id the producer saw, the
//! bypassed steps, the trace context, and where to report a failure.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as PollContext, Poll};

use tasker_telemetry::__private::QueuedInfo;
use tasker_telemetry::context::{Context, ScopeTag};

use crate::checkpoint::Checkpoints;
use uuid::Uuid;

/// A request about to be run by a worker.
#[derive(Debug)]
pub(crate) struct QueuedRun {
    pub(crate) task_id: Uuid,
    pub(crate) info: QueuedInfo,
    /// The step outputs recorded by earlier deliveries, and where to record new ones, when the
    /// queue keeps checkpoints (the durable queues do).
    pub(crate) checkpoints: Option<Arc<dyn Checkpoints>>,
    pub(crate) failure: FailureSlot,
    /// Where the run leaves its `task.complete`/`task.error`, for the worker to emit once the
    /// queue has accepted the completion: never for a task whose lease another worker took over.
    pub(crate) terminal: TerminalSlot,
    /// The task's attempt this delivery runs (`#[task(max_attempts = …)]`), from 1.
    pub(crate) attempt: u32,
    /// Where the run asks for its next attempt, after a failed one with attempts left.
    pub(crate) retry: RetrySlot,
}

/// Where a worker's run leaves how it failed, for the worker's completion.
#[derive(Debug, Clone, Default)]
pub(crate) struct FailureSlot(Arc<Mutex<Option<RunFailure>>>);

impl FailureSlot {
    /// Records the run's failure (the last one recorded wins).
    pub(crate) fn set(&self, class: &str, message: String) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(RunFailure {
            class: class.to_owned(),
            message,
        });
    }

    /// The failure recorded, if any, leaving none.
    pub(crate) fn take(&self) -> Option<RunFailure> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Where a worker's run leaves the next attempt it asks for.
#[derive(Debug, Clone, Default)]
pub(crate) struct RetrySlot(Arc<Mutex<Option<QueuedRetry>>>);

impl RetrySlot {
    /// Asks the worker to hand the task back for `attempt`, delivered after `backoff`.
    pub(crate) fn ask(&self, attempt: u32, backoff: std::time::Duration) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(QueuedRetry { attempt, backoff });
    }

    /// The attempt the run asked for, if any.
    pub(crate) fn asked(&self) -> Option<QueuedRetry> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The next attempt of a task that failed with attempts left, for the queue to deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueuedRetry {
    /// The attempt, from 2.
    pub(crate) attempt: u32,
    /// The wait before its delivery.
    pub(crate) backoff: std::time::Duration,
}

/// A task run's terminal event, held until the worker's completion is accepted. The run may
/// only [`hold`](TerminalSlot::hold) its event and ask whether it was abandoned; the worker
/// takes, restores and abandons it.
#[derive(Debug, Clone, Default)]
pub(crate) struct TerminalSlot(Arc<Mutex<Terminal>>);

/// What became of a worker's task run's terminal event.
// One per run, in its slot: boxing the event would cost an allocation per task for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Default)]
enum Terminal {
    /// The run has not ended.
    #[default]
    Running,
    /// The run ended; its event waits for the queue to accept the completion.
    Held(tasker_telemetry::Event<'static>),
    /// The worker lost the task's lease: the run reports no end (it may be dropped, or, for a
    /// sync task, finish on its own thread) and is abandoned.
    Abandoned,
}

impl TerminalSlot {
    /// Locks the slot, whatever a panic elsewhere left in it.
    fn lock(&self) -> std::sync::MutexGuard<'_, Terminal> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the worker abandoned the run (it lost the task's lease).
    pub(crate) fn is_abandoned(&self) -> bool {
        matches!(*self.lock(), Terminal::Abandoned)
    }

    /// Leaves the run's terminal event for the worker; `false` (the event dropped) when the
    /// worker abandoned the run meanwhile (a sync task, ending on a thread of its own).
    #[must_use]
    pub(crate) fn hold(&self, event: tasker_telemetry::Event<'static>) -> bool {
        let mut terminal = self.lock();
        if matches!(*terminal, Terminal::Abandoned) {
            return false;
        }
        *terminal = Terminal::Held(event);
        true
    }

    /// The event the run holds, taken out; `None`, with the slot unchanged, when it holds none.
    pub(crate) fn take_held(&self) -> Option<tasker_telemetry::Event<'static>> {
        let mut slot = self.lock();
        match std::mem::take(&mut *slot) {
            Terminal::Held(event) => Some(event),
            other => {
                *slot = other;
                None
            }
        }
    }

    /// Puts a taken event back, for an abandonment to report.
    pub(crate) fn restore(&self, event: tasker_telemetry::Event<'static>) {
        *self.lock() = Terminal::Held(event);
    }
}

/// Marks a worker's run abandoned (its worker lost the task's lease): a run still going
/// reports no end and tells observers of its abandonment as it stops; an end already held is
/// not reported, and observers are told of the abandonment now, in `scope`.
pub(crate) fn abandon_run(slot: &TerminalSlot, scope: ScopeTag) {
    let held = std::mem::replace(&mut *slot.lock(), Terminal::Abandoned);
    if let Terminal::Held(event) = held {
        if let Some(task) = event.task() {
            Context::default()
                .with_scope(scope)
                .in_scope(|| tasker_telemetry::__private::abandon_task(task));
        }
    }
}

/// How a task run by a worker failed, as its `task.error` event described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFailure {
    /// The error's class (its Rust type name, `panic`, …).
    pub class: String,
    /// The error's message.
    pub message: String,
}

thread_local! {
    static QUEUED: RefCell<Option<QueuedRun>> = const { RefCell::new(None) };
}

/// The request waiting to be taken by the task run starting on this thread, if any.
#[inline]
pub(crate) fn take_queued_run() -> Option<QueuedRun> {
    QUEUED.with(|queued| queued.borrow_mut().take())
}

/// Runs `f` with `run` waiting for the first task run `f` starts.
pub(crate) fn with_queued_run<R>(run: QueuedRun, f: impl FnOnce() -> R) -> R {
    QUEUED.with(|queued| *queued.borrow_mut() = Some(run));
    let result = f();
    // A task that never started must not hand its request to the next task on this thread.
    QUEUED.with(|queued| queued.borrow_mut().take());
    result
}

/// A task future whose first poll hands `run` to the task run it starts.
pub(crate) struct WithQueuedRun<F> {
    run: Option<QueuedRun>,
    future: F,
}

impl<F> WithQueuedRun<F> {
    pub(crate) fn new(run: QueuedRun, future: F) -> Self {
        Self {
            run: Some(run),
            future,
        }
    }
}

impl<F: Future> Future for WithQueuedRun<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut PollContext<'_>) -> Poll<F::Output> {
        // SAFETY: `future` is structurally pinned and never moved; `run` is not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        match this.run.take() {
            Some(run) => with_queued_run(run, || future.poll(cx)),
            None => future.poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use tasker_telemetry::{Details, Event, TaskOrigin, TaskRef};

    use super::*;

    fn complete() -> Event<'static> {
        let task = TaskRef {
            id: Uuid::now_v7(),
            name: "t",
            version: "1",
            source: None,
            origin: TaskOrigin::Queued,
        };
        Event::new(
            Some(task),
            None,
            Details::TaskComplete {
                duration: std::time::Duration::from_millis(3),
            },
        )
        .into_owned()
    }

    #[test]
    fn a_held_event_is_taken_once_and_can_be_restored() {
        let slot = TerminalSlot::default();
        assert!(!slot.is_abandoned());
        assert!(slot.hold(complete()));
        let taken = slot.take_held().map(|event| event.name().to_owned());
        assert_eq!(taken, Some("task.complete".to_owned()));
        assert!(slot.take_held().is_none());
        slot.restore(complete());
        assert_eq!(
            slot.take_held().map(|event| event.name().to_owned()),
            Some("task.complete".to_owned())
        );
    }

    #[test]
    fn an_abandoned_run_holds_no_event() {
        let slot = TerminalSlot::default();
        abandon_run(&slot, ScopeTag::default());
        assert!(slot.is_abandoned());
        assert!(!slot.hold(complete()));
        assert!(slot.take_held().is_none());
        assert!(slot.is_abandoned());
    }

    #[test]
    fn failure_and_retry_slots_give_back_what_the_run_left() {
        let failure = FailureSlot::default();
        failure.set("io", "first".to_owned());
        failure.set("io", "last".to_owned());
        assert_eq!(
            failure.take(),
            Some(RunFailure {
                class: "io".to_owned(),
                message: "last".to_owned()
            })
        );
        assert_eq!(failure.take(), None);
        let retry = RetrySlot::default();
        assert_eq!(retry.asked(), None);
        retry.ask(2, std::time::Duration::from_millis(50));
        assert_eq!(
            retry.asked(),
            Some(QueuedRetry {
                attempt: 2,
                backoff: std::time::Duration::from_millis(50)
            })
        );
    }
}
