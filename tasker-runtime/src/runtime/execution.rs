//! Helpers of a worker's run: catching a panic, a sync runner's output, a context that does
//! not read.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::Poll;

use tasker_telemetry::__private::QueuedInfo;
use uuid::Uuid;

use crate::handoff::{with_queued_run, FailureSlot, QueuedRun, RetrySlot, TerminalSlot};
use crate::runner::RunOutput;

/// Catches a panic of the future it polls, as the panic's message.
pub(super) struct CatchUnwind<F>(pub(super) F);

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
pub(super) fn report_invalid_context(
    descriptor: &'static crate::TaskDescriptor,
    task_id: Uuid,
    info: QueuedInfo,
    terminal: TerminalSlot,
    message: &str,
) {
    let run = QueuedRun {
        task_id,
        info,
        checkpoints: None,
        failure: FailureSlot::default(),
        terminal,
        attempt: 1,
        retry: RetrySlot::default(),
    };
    with_queued_run(run, || {
        let mut task = crate::task::TaskRun::start(descriptor);
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
pub(super) fn futures_ready(future: crate::runner::BoxFuture<'static, RunOutput>) -> RunOutput {
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
