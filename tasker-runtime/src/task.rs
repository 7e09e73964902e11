//! Running a task inline: `task.initialize` … `task.complete` or `task.error`.

use std::any::Any;
use std::borrow::Cow;
use std::future::Future;
use std::panic::resume_unwind;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as PollContext, Poll};
use std::time::{Duration, Instant};

use tasker_telemetry::__private::TaskFrame;
use tasker_telemetry::context::Context;
use tasker_telemetry::{
    events, panic_message, Details, ErrorInfo, Event, InitializeStatus, TaskOrigin, TaskRef,
    CANCELLED_CLASS,
};

use crate::checkpoint::RunCheckpoints;
use crate::descriptor::TaskDescriptor;
use crate::diagnostics::{FromTaskTimeout, TaskRetryArgument, TaskTimeoutError, TimeoutOutput};
use crate::handoff::{self, FailureSlot, QueuedRun, RetrySlot, TerminalSlot};
use crate::ids;
use crate::outcome::{DescribeError, FixedError, Outcome};
use crate::scoped::run_in;
use crate::step::Next;
use crate::timeout::{TaskTimeout, TIMEOUT_CLASS};

/// One run of a task, across its attempts (`#[task(max_attempts = …)]`): inline, the
/// expansion loops `run` → [`finish`](TaskRun::finish) until it says [`Next::Return`]; run by a
/// worker, a failed attempt with attempts left is handed back to the queue instead.
#[derive(Debug)]
pub struct TaskRun {
    descriptor: &'static TaskDescriptor,
    /// The attempt running (or about to), from 1.
    attempt: u32,
    /// The attempt whose `task.handle` was emitted.
    handled: u32,
    /// Set when the attempt ran out of time: its failure is reported with [`TIMEOUT_CLASS`].
    timed_out: Option<TaskTimeout>,
    live: Option<Live>,
}

#[derive(Debug)]
struct Live {
    /// The task's context; while the body is polled, the context it replaced (see `run_in`).
    context: Option<Context>,
    frame: Arc<TaskFrame>,
    started: Instant,
    finished: bool,
    /// Where a worker wants the class and message of a failure.
    failure: Option<FailureSlot>,
    /// Where a worker wants the terminal event, to emit it after its completion is accepted.
    terminal: Option<TerminalSlot>,
    /// Where a worker wants the next attempt of a failed one, to hand the task back to the
    /// queue for it.
    retry: Option<RetrySlot>,
}

impl TaskRun {
    /// Starts a run: inline, it emits `task.initialize`, `task.start` and `task.handle`; run by a
    /// worker (which already emitted `task.initialize` and `task.enqueue` when the request was
    /// made), `task.start` and `task.handle` with the request's task id.
    #[inline]
    pub fn start(descriptor: &'static TaskDescriptor) -> TaskRun {
        if let Some(queued) = handoff::take_queued_run() {
            return TaskRun::queued(descriptor, queued);
        }
        if !events::listening() {
            return TaskRun::silent(descriptor, 1);
        }
        TaskRun::live(descriptor)
    }

    fn silent(descriptor: &'static TaskDescriptor, attempt: u32) -> TaskRun {
        TaskRun {
            descriptor,
            attempt,
            handled: attempt,
            timed_out: None,
            live: None,
        }
    }

    #[cold]
    fn live(descriptor: &'static TaskDescriptor) -> TaskRun {
        let task = TaskRef {
            id: ids::new_id(),
            name: descriptor.name,
            version: descriptor.version,
            source: Some(&descriptor.source),
            origin: TaskOrigin::Inline,
        };
        let frame = Arc::new(TaskFrame::new(task));
        let mut run = TaskRun::silent(descriptor, 1);
        run.live = Some(Live {
            context: Some(Context::current().with_task(frame.clone())),
            frame,
            started: Instant::now(),
            finished: false,
            failure: None,
            terminal: None,
            retry: None,
        });
        run.emit(Details::TaskInitialize {
            status: InitializeStatus::Success,
            errors: Cow::Borrowed(&[]),
        });
        run.emit(Details::TaskStart);
        if let Some(live) = &mut run.live {
            live.started = Instant::now();
        }
        run.emit(Details::TaskHandle);
        run
    }

    /// A run by a worker: always carries its context, so bypassed steps are skipped and the
    /// trace context is known, whether or not anybody listens.
    #[cold]
    fn queued(descriptor: &'static TaskDescriptor, queued: QueuedRun) -> TaskRun {
        let task = TaskRef {
            id: queued.task_id,
            name: descriptor.name,
            version: descriptor.version,
            source: Some(&descriptor.source),
            origin: TaskOrigin::Queued,
        };
        let mut frame = TaskFrame::with_queued(task, Some(queued.info));
        if let Some(checkpoints) = queued.checkpoints {
            frame = frame.with_extension(Arc::new(RunCheckpoints::new(checkpoints)));
        }
        let frame = Arc::new(frame);
        let mut run = TaskRun::silent(descriptor, queued.attempt.max(1));
        run.live = Some(Live {
            context: Some(Context::current().with_task(frame.clone())),
            frame,
            started: Instant::now(),
            finished: false,
            failure: Some(queued.failure),
            terminal: Some(queued.terminal),
            retry: Some(queued.retry),
        });
        // Every delivery begins processing, a later attempt's too (its trace follows the
        // earlier delivery's).
        run.emit(Details::TaskStart);
        run.emit(Details::TaskHandle);
        run
    }

    /// The attempt running (or about to), from 1.
    pub fn attempt_number(&self) -> u32 {
        self.attempt
    }

    /// Gives a by-value argument to the next attempt: a clone while more attempts may follow,
    /// the original on the last one.
    #[inline]
    pub fn argument<T: TaskRetryArgument>(&self, slot: &mut Option<T>) -> T {
        if self.attempt < self.descriptor.policy.max_attempts {
            if let Some(value) = slot.as_ref() {
                return value.clone_for_task_retry();
            }
        }
        // The slot is only emptied on the last attempt, after which the task returns.
        slot.take()
            .expect("tasker: a task argument was requested after the last attempt")
    }

    /// Starts an attempt after the first: emits its `task.handle`.
    #[inline]
    pub fn begin_attempt(&mut self) {
        if self.handled != self.attempt {
            self.handled = self.attempt;
            self.emit(Details::TaskHandle);
        }
    }

    /// [`TaskRun::run`] with the task's `timeout_ms`: an attempt that runs longer is dropped
    /// (its steps report cancellation) and returns `Err(TaskTimeout.into())`, which
    /// [`finish`](TaskRun::finish) reports with class [`TIMEOUT_CLASS`].
    pub fn run_timed<F>(&mut self, body: F) -> TimedBody<'_, F>
    where
        F: Future,
        F::Output: TimeoutOutput,
        <F::Output as TimeoutOutput>::Error: TaskTimeoutError,
    {
        let limit = self.descriptor.timeout.unwrap_or(Duration::MAX);
        TimedBody {
            run: self,
            timer: futures_timer::Delay::new(limit),
            limit,
            timed_out: <F::Output as FromTaskTimeout>::from_task_timeout,
            body: Some(body),
        }
    }

    /// The run's identity, when somebody listens.
    pub fn task(&self) -> Option<TaskRef> {
        self.live.as_ref().map(|live| *live.frame.task())
    }

    /// Polls the async body inside the task's context, reporting a panic before it resumes.
    #[inline]
    pub fn run<F: Future>(&mut self, body: F) -> Body<'_, F> {
        Body { run: self, body }
    }

    /// Runs the sync body inside the task's context, reporting a panic before it resumes.
    #[inline]
    pub fn run_sync<R>(&mut self, body: impl FnOnce() -> R) -> R {
        let Some(live) = &mut self.live else {
            return body();
        };
        match run_in(&mut live.context, body) {
            Ok(value) => value,
            Err(payload) => self.panicked(payload),
        }
    }

    /// Decides what follows an attempt: `task.finalize` and then `task.complete` or
    /// `task.error` ([`Next::Return`]), or, for a failure with attempts left, `task.retry` and
    /// `task.backoff` — then [`Next::Retry`] inline, and [`Next::Return`] in a worker's run, which
    /// the queue delivers again for the next attempt.
    #[inline]
    pub fn finish(&mut self, outcome: Outcome<'_>) -> Next {
        let timeout = self.timed_out.take().map(|timeout| timeout.to_string());
        let outcome = match (&timeout, outcome) {
            (Some(message), Outcome::Failure { retryable, .. }) => {
                return self.finish_failure(
                    retryable,
                    &FixedError {
                        class: TIMEOUT_CLASS,
                        message,
                    },
                )
            }
            (_, outcome) => outcome,
        };
        match outcome {
            Outcome::Success => {
                if self.live.is_some() {
                    self.finish_live(outcome);
                }
                Next::Return
            }
            Outcome::Failure { retryable, error } => self.finish_failure(retryable, error),
        }
    }

    fn finish_failure(&mut self, retryable: bool, error: &dyn DescribeError) -> Next {
        if retryable && self.attempt < self.descriptor.policy.max_attempts {
            return self.retry(error);
        }
        if self.live.is_some() {
            self.end(Some(error), true);
        }
        Next::Return
    }

    /// Schedules the next attempt after a failed one.
    #[cold]
    fn retry(&mut self, error: &dyn DescribeError) -> Next {
        let policy = &self.descriptor.policy;
        let wait = policy.next_backoff(self.attempt);
        self.attempt += 1;
        let (attempt, max_attempts) = (self.attempt, policy.max_attempts);
        if events::listening() && self.live.is_some() {
            self.emit(Details::TaskRetry {
                attempt,
                max_attempts,
                error: ErrorInfo {
                    class: Cow::Borrowed(error.class()),
                    message: Cow::Owned(error.message()),
                },
            });
            self.emit(Details::TaskBackoff {
                attempt,
                backoff: wait,
            });
        }
        let Some(live) = &mut self.live else {
            return Next::Retry(wait);
        };
        live.frame.begin_attempt();
        match &live.retry {
            Some(slot) => {
                // Should the queue refuse the hand-back, the worker completes the task with it.
                if let Some(failure) = &live.failure {
                    failure.set(error.class(), error.message());
                }
                // A worker's run: the queue delivers the next attempt after the wait; this run
                // ends here without a terminal event.
                slot.ask(attempt, wait);
                live.finished = true;
                Next::Return
            }
            None => Next::Retry(wait),
        }
    }

    #[cold]
    fn finish_live(&mut self, outcome: Outcome<'_>) {
        match outcome {
            Outcome::Success => self.end(None, true),
            Outcome::Failure { error, .. } => self.end(Some(error), true),
        }
    }

    /// Emits `task.finalize` and the terminal event. With `defer`, a worker's run leaves the
    /// terminal event to the worker (see [`TerminalSlot`]); a run torn down by a drop emits it at
    /// once, since no completion will follow. A run its worker abandoned (it lost the task's
    /// lease) emits neither: observers hear of the abandonment instead.
    fn end(&mut self, error: Option<&dyn DescribeError>, defer: bool) {
        let Some(live) = &mut self.live else { return };
        live.finished = true;
        if live
            .terminal
            .as_ref()
            .is_some_and(TerminalSlot::is_abandoned)
        {
            self.abandon();
            return;
        }
        let Some(live) = &mut self.live else { return };
        let (completed_steps, failed_steps, skipped_steps) = live.frame.counts();
        let duration = live.started.elapsed();
        self.emit(Details::TaskFinalize {
            completed_steps,
            failed_steps,
            skipped_steps,
        });
        let Some(live) = &self.live else { return };
        let details = match error {
            None => Details::TaskComplete { duration },
            Some(error) => {
                let (class, message) = (error.class(), error.message());
                if let Some(slot) = &live.failure {
                    slot.set(class, message.clone());
                }
                Details::TaskError {
                    duration,
                    error: ErrorInfo {
                        class: Cow::Borrowed(class),
                        message: Cow::Owned(message),
                    },
                    error_steps: Cow::Owned(live.frame.error_steps()),
                }
            }
        };
        if let (true, Some(slot)) = (defer, &live.terminal) {
            if !events::listening() {
                return;
            }
            let event = Event::new(Some(*live.frame.task()), None, details).into_owned();
            if !slot.hold(event) {
                // Abandoned while the run was ending (a sync task, on a thread of its own).
                self.abandon();
            }
            return;
        }
        self.emit(details);
    }

    /// Tells observers, in the task's context, that its worker abandoned this run.
    fn abandon(&mut self) {
        let Some(live) = &mut self.live else { return };
        let task = *live.frame.task();
        let context = live.context.take().unwrap_or_default();
        let guard = context.enter();
        tasker_telemetry::__private::abandon_task(&task);
        live.context = Some(guard.exit());
    }

    #[cold]
    fn panicked(&mut self, payload: Box<dyn Any + Send>) -> ! {
        let message = panic_message(&*payload).to_owned();
        self.end(
            Some(&FixedError {
                class: "panic",
                message: &message,
            }),
            true,
        );
        resume_unwind(payload)
    }

    fn emit(&mut self, details: Details<'_>) {
        // A run by a worker is live for its context even when nobody listens.
        if !events::listening() {
            return;
        }
        let Some(live) = &mut self.live else { return };
        let context = live.context.take().unwrap_or_default();
        let event = Event::new(Some(*live.frame.task()), None, details);
        let guard = context.enter();
        tasker_telemetry::__private::fire(&event);
        live.context = Some(guard.exit());
    }
}

impl Drop for TaskRun {
    fn drop(&mut self) {
        let Some(live) = &self.live else { return };
        if live.finished {
            return;
        }
        let (class, verb) = if std::thread::panicking() {
            ("panic", "unwound by a panic")
        } else {
            (CANCELLED_CLASS, "dropped")
        };
        let message = format!(
            "task `{}` was {verb} before it finished",
            live.frame.task().name
        );
        self.end(
            Some(&FixedError {
                class,
                message: &message,
            }),
            false,
        );
    }
}

/// The future of [`TaskRun::run_timed`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct TimedBody<'a, F: Future> {
    run: &'a mut TaskRun,
    timer: futures_timer::Delay,
    limit: Duration,
    /// The output of an attempt that timed out, chosen where the bounds were checked.
    timed_out: fn(TaskTimeout) -> F::Output,
    /// `None` once the attempt timed out: dropped then, so that its steps report cancellation
    /// before the task reports the timeout.
    body: Option<F>,
}

impl<F: Future> Future for TimedBody<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut PollContext<'_>) -> Poll<F::Output> {
        // SAFETY: `body` is structurally pinned: polled in place and dropped in place, never
        // moved; `run` and `timer` (`Unpin`) are not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let Some(body) = &mut this.body else {
            return Poll::Pending;
        };
        let body = unsafe { Pin::new_unchecked(body) };
        if let Poll::Ready(value) = poll_in_task(this.run, body, cx) {
            return Poll::Ready(value);
        }
        if Pin::new(&mut this.timer).poll(cx).is_pending() {
            return Poll::Pending;
        }
        // Dropped in place; each step reports its own cancellation in its own context.
        this.body = None;
        let timeout = TaskTimeout {
            task: this.run.descriptor.name,
            attempt: this.run.attempt,
            limit: this.limit,
        };
        this.run.timed_out = Some(timeout.clone());
        Poll::Ready((this.timed_out)(timeout))
    }
}

/// Polls `body` inside `run`'s context, reporting a panic before it resumes.
#[inline]
fn poll_in_task<F: Future>(
    run: &mut TaskRun,
    body: Pin<&mut F>,
    cx: &mut PollContext<'_>,
) -> Poll<F::Output> {
    let Some(live) = &mut run.live else {
        return body.poll(cx);
    };
    match run_in(&mut live.context, || body.poll(cx)) {
        Ok(poll) => poll,
        Err(payload) => run.panicked(payload),
    }
}

/// The future of [`TaskRun::run`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Body<'a, F> {
    run: &'a mut TaskRun,
    body: F,
}

impl<F: Future> Future for Body<'_, F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut PollContext<'_>) -> Poll<F::Output> {
        // SAFETY: `body` is structurally pinned and never moved; `run` is not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let body = unsafe { Pin::new_unchecked(&mut this.body) };
        poll_in_task(this.run, body, cx)
    }
}
