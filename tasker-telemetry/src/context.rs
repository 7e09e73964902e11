//! The task and step an event belongs to, and the ambient context that carries them.
//!
//! The runtime sets the current [`Context`] while it polls a task or step future (like
//! `tracing::Instrumented`) and while it runs sync code; anything fired from inside — lifecycle
//! events of nested steps, custom events from [`record`](crate::record) — reads it from here.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;

use uuid::Uuid;

pub(crate) use crate::frame::TaskFrame;

/// Where an instrumented function is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceLocation {
    /// Fully qualified function name, such as `my_app::orders::charge`.
    pub function: &'static str,
    /// Source file, as `file!()` gives it.
    pub file: &'static str,
    /// Line of the function's signature.
    pub line: u32,
}

/// The identity of a task run: what adapters use to find "their" trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskRef {
    /// Unique id of this run (UUIDv7).
    pub id: Uuid,
    /// Registered task name.
    pub name: &'static str,
    /// Registered task version.
    pub version: &'static str,
    /// Where the task function is defined, when it is known.
    pub source: Option<&'static SourceLocation>,
    /// Whether the task runs inline (called directly) or was taken from a queue by a worker.
    pub origin: TaskOrigin,
}

/// How a task run came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TaskOrigin {
    /// The task function was called directly.
    #[default]
    Inline,
    /// A worker took the task from a queue; it continues the trace of the code that enqueued it.
    Queued,
}

/// The identity of a step call (all of its attempts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StepRef {
    /// Unique id of this call (UUIDv7).
    pub id: Uuid,
    /// Step name.
    pub name: &'static str,
    /// The step this one was called from, if any.
    pub parent_id: Option<Uuid>,
    /// Where the step function is defined.
    pub source: Option<&'static SourceLocation>,
}

/// An opaque tag that scopes observers such as [`testing::Capture`](crate::testing::Capture) to
/// the work started inside them, so parallel tests do not see each other's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ScopeTag(u64);

impl ScopeTag {
    /// A tag never handed out before.
    pub fn unique() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ScopeTag(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// Whether this is the empty tag (no scope).
    pub fn is_none(self) -> bool {
        self.0 == 0
    }
}

/// The ambient context: the current task, the current step and the scope tag.
#[derive(Debug, Clone, Default)]
pub struct Context {
    task: Option<Arc<TaskFrame>>,
    step: Option<StepRef>,
    scope: ScopeTag,
}

thread_local! {
    static CURRENT: Cell<Context> = const {
        Cell::new(Context { task: None, step: None, scope: ScopeTag(0) })
    };
}

impl Context {
    /// The context of the code that is running now.
    pub fn current() -> Context {
        // SAFETY: the cell is this thread's and nothing else runs while the context is cloned
        // (cloning an `Arc` and copying plain data never touch `CURRENT`), so the shared
        // reference does not outlive or overlap a mutation. Reading in place spares moving the
        // whole context out of the cell and back.
        CURRENT.with(|cell| unsafe { (*cell.as_ptr()).clone() })
    }

    /// Runs `f` with a reference to the current context, without cloning it.
    pub fn with_current<R>(f: impl FnOnce(&Context) -> R) -> R {
        CURRENT.with(|cell| {
            let context = cell.take();
            // Put the context back even if `f` panics.
            struct Restore<'a>(&'a Cell<Context>, Option<Context>);
            impl Drop for Restore<'_> {
                fn drop(&mut self) {
                    if let Some(context) = self.1.take() {
                        self.0.set(context);
                    }
                }
            }
            let restore = Restore(cell, Some(context));
            f(restore.1.as_ref().unwrap_or(&Context::EMPTY))
        })
    }

    const EMPTY: Context = Context {
        task: None,
        step: None,
        scope: ScopeTag(0),
    };

    /// This context with `task` as the current task and no current step.
    // Runtime support: the frame's type is reached only through `__private`.
    #[doc(hidden)]
    pub fn with_task(&self, task: Arc<TaskFrame>) -> Context {
        Context {
            task: Some(task),
            step: None,
            scope: self.scope,
        }
    }

    /// This context with `step` as the current step.
    pub fn with_step(&self, step: StepRef) -> Context {
        Context {
            task: self.task.clone(),
            step: Some(step),
            scope: self.scope,
        }
    }

    /// This context with `scope` as the scope tag.
    pub fn with_scope(&self, scope: ScopeTag) -> Context {
        Context {
            task: self.task.clone(),
            step: self.step,
            scope,
        }
    }

    /// The current task's frame.
    // Runtime support: the frame's type is reached only through `__private`.
    #[doc(hidden)]
    pub fn task_frame(&self) -> Option<&Arc<TaskFrame>> {
        self.task.as_ref()
    }

    /// The current task's identity.
    pub fn task(&self) -> Option<&TaskRef> {
        self.task.as_deref().map(TaskFrame::task)
    }

    /// The current step's identity.
    pub fn step(&self) -> Option<&StepRef> {
        self.step.as_ref()
    }

    /// The scope tag.
    pub fn scope(&self) -> ScopeTag {
        self.scope
    }

    /// Exchanges `context` with the current context, in place: called twice around a call,
    /// it runs the call in `context` and leaves `context` as it was (or as the call left the
    /// current context).
    #[inline]
    pub fn swap_current(context: &mut Context) {
        CURRENT.with(|cell| cell.swap(Cell::from_mut(context)));
    }

    /// Makes this the current context until the guard is dropped.
    pub fn enter(self) -> ContextGuard {
        let previous = CURRENT.with(|cell| cell.replace(self));
        ContextGuard {
            previous: Some(previous),
        }
    }

    /// Runs `f` with this as the current context.
    pub fn in_scope<R>(self, f: impl FnOnce() -> R) -> R {
        let _guard = self.enter();
        f()
    }

    /// Wraps `future` so that this is the current context on every poll.
    pub fn wrap<F: Future>(self, future: F) -> WithContext<F> {
        WithContext {
            context: Some(self),
            future,
        }
    }
}

/// Restores the previous context when dropped; see [`Context::enter`].
#[must_use = "the context is left as soon as the guard is dropped"]
#[derive(Debug)]
pub struct ContextGuard {
    previous: Option<Context>,
}

impl ContextGuard {
    /// Leaves the context now and gives it back, so it can be entered again without a clone.
    pub fn exit(mut self) -> Context {
        self.leave().unwrap_or_default()
    }

    fn leave(&mut self) -> Option<Context> {
        let previous = self.previous.take()?;
        Some(CURRENT.with(|cell| cell.replace(previous)))
    }
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        self.leave();
    }
}

/// A future that runs with a fixed [`Context`] on every poll; see [`Context::wrap`].
#[derive(Debug)]
pub struct WithContext<F> {
    context: Option<Context>,
    future: F,
}

impl<F: Future> Future for WithContext<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        // SAFETY: `future` is structurally pinned and never moved; `context` is not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        let Some(context) = this.context.take() else {
            return future.poll(cx);
        };
        let mut guard = context.enter();
        let poll = future.poll(cx);
        this.context = guard.leave();
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::StepTally;

    fn task(name: &'static str) -> Arc<TaskFrame> {
        Arc::new(TaskFrame::new(TaskRef {
            id: Uuid::now_v7(),
            name,
            version: "1",
            source: None,
            origin: TaskOrigin::Inline,
        }))
    }

    #[test]
    fn entered_context_is_current_until_the_guard_drops() {
        let frame = task("outer");
        {
            let _guard = Context::current().with_task(frame.clone()).enter();
            assert_eq!(Context::current().task().map(|t| t.name), Some("outer"));
        }
        assert!(Context::current().task().is_none());
    }

    #[test]
    fn wrapped_future_sees_its_context_on_every_poll_and_restores_the_callers() {
        let frame = task("wrapped");
        let mut future = std::pin::pin!(Context::default().with_task(frame).wrap(async {
            let first = Context::current().task().map(|t| t.name);
            YieldOnce(false).await;
            let second = Context::current().task().map(|t| t.name);
            (first, second)
        }));
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(future.as_mut().poll(&mut cx).is_pending());
        assert!(Context::current().task().is_none());
        assert_eq!(
            future.as_mut().poll(&mut cx),
            Poll::Ready((Some("wrapped"), Some("wrapped")))
        );
    }

    #[test]
    fn tally_counts_each_outcome_and_names_failed_steps_once() {
        let frame = task("tally");
        frame.tally("a", StepTally::Completed);
        frame.tally("b", StepTally::Failed);
        frame.tally("b", StepTally::Failed);
        frame.tally("c", StepTally::Skipped);
        assert_eq!(frame.counts(), (1, 2, 1));
        assert_eq!(frame.error_steps(), vec!["b"]);
    }

    struct YieldOnce(bool);
    impl Future for YieldOnce {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
            if self.0 {
                Poll::Ready(())
            } else {
                self.0 = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}
