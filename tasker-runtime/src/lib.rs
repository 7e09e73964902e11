//! Tasker's runtime: what `#[tasker::task]` and `#[tasker::step]` expand to call.
//!
//! The expansion is a thin loop around `StepRun` and `TaskRun`; every behaviour — events,
//! retries with backoff, skips, panics, cancellation, context propagation, concurrent batches —
//! lives here as ordinary, tested Rust. What only generated code calls is in the hidden `__private`.
//! Users depend on the `tasker` crate, which re-exports what they need.
#![deny(missing_docs)]

mod checkpoint;
mod descriptor;
mod diagnostics;
mod handoff;
mod ids;
pub mod queue;
mod repeated_failure;
mod request;
mod retry;
mod runtime;
mod scoped;
mod spawn;
mod step;
mod task;
mod timeout;
mod typed;

pub use batch::{join_all, JoinAll};
pub use descriptor::{steps, tasks, StepDescriptor, TaskDescriptor};
pub use handoff::RunFailure;
pub use request::{RequestError, TaskRequest};
pub use retry::RetryPolicy;
pub use runtime::{
    BuildError, EnqueueError, RunError, RunSummary, Runtime, RuntimeBuilder, StopSignal, TaskError,
    TaskHandle,
};
pub use spawn::{spawn, FutureExt};
pub use timeout::{StepTimeout, TaskTimeout, TIMEOUT_CLASS};
pub use typed::{Enqueue, TypedRequest};

// What only the code `#[task]` and `#[step]` generate calls: one hidden module, public only
// because another crate's expansion names it.
#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
// The support modules live in `__private`; the crate uses them by their short paths.
use __private::{arguments, batch, outcome, runner};
