//! Running a task inline: `task.initialize` … `task.complete` or `task.error`.

use std::any::Any;
use std::borrow::Cow;
use std::future::Future;
use std::panic::resume_unwind;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as PollContext, Poll};
use std::time::Instant;

use tasker_telemetry::context::{Context, TaskFrame};
use tasker_telemetry::{
    events, panic_message, Details, ErrorInfo, Event, InitializeStatus, TaskOrigin, TaskRef,
    CANCELLED_CLASS,
};

use crate::descriptor::TaskDescriptor;
use crate::ids;
use crate::outcome::{DescribeError, FixedError, Outcome};
use crate::scoped::run_in;
use crate::worker::{self, lock_terminal, QueuedRun, RunFailure, Terminal, TerminalSlot};

/// One run of a task.
#[derive(Debug)]
pub struct TaskRun {
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
    failure: Option<Arc<std::sync::Mutex<Option<RunFailure>>>>,
    /// Where a worker wants the terminal event, to emit it after its completion is accepted.
    terminal: Option<TerminalSlot>,
}

impl TaskRun {
    /// Starts a run: inline, it emits `task.initialize`, `task.start` and `task.handle`; run by a
    /// worker (which already emitted `task.initialize` and `task.enqueue` when the request was
    /// made), `task.start` and `task.handle` with the request's task id.
    #[inline]
    pub fn start(descriptor: &'static TaskDescriptor) -> TaskRun {
        if let Some(queued) = worker::take_queued_run() {
            return TaskRun::queued(descriptor, queued);
        }
        if !events::listening() {
            return TaskRun { live: None };
        }
        TaskRun::live(descriptor)
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
        let mut run = TaskRun {
            live: Some(Live {
                context: Some(Context::current().with_task(frame.clone())),
                frame,
                started: Instant::now(),
                finished: false,
                failure: None,
                terminal: None,
            }),
        };
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
        let frame = Arc::new(TaskFrame::with_queued(task, Some(queued.info)));
        let mut run = TaskRun {
            live: Some(Live {
                context: Some(Context::current().with_task(frame.clone())),
                frame,
                started: Instant::now(),
                finished: false,
                failure: Some(queued.failure),
                terminal: Some(queued.terminal),
            }),
        };
        run.emit(Details::TaskStart);
        run.emit(Details::TaskHandle);
        run
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

    /// Emits `task.finalize` and then `task.complete` or `task.error`.
    #[inline]
    pub fn finish(&mut self, outcome: Outcome<'_>) {
        if self.live.is_some() {
            self.finish_live(outcome);
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
            .is_some_and(|slot| matches!(*lock_terminal(slot), Terminal::Abandoned))
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
                    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(RunFailure {
                        class: class.to_owned(),
                        message: message.clone(),
                    });
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
            let mut terminal = lock_terminal(slot);
            if matches!(*terminal, Terminal::Abandoned) {
                // Abandoned while the run was ending (a sync task, on a thread of its own).
                drop(terminal);
                self.abandon();
            } else {
                *terminal = Terminal::Held(event);
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
        events::abandon_task(&task);
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
        events::fire(&event);
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
        let Some(live) = &mut this.run.live else {
            return body.poll(cx);
        };
        match run_in(&mut live.context, || body.poll(cx)) {
            Ok(poll) => poll,
            Err(payload) => this.run.panicked(payload),
        }
    }
}
