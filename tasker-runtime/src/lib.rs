//! Tasker's runtime: what `#[tasker::task]` and `#[tasker::step]` expand to call.
//!
//! The expansion is a thin loop around `StepRun` and `TaskRun`; every behaviour — events,
//! retries with backoff, skips, panics, cancellation, context propagation, concurrent batches —
//! lives here as ordinary, tested Rust. What only generated code calls is `#[doc(hidden)]`.
//! Users depend on the `tasker` crate, which re-exports what they need.
#![deny(missing_docs)]

#[doc(hidden)]
pub mod arguments;
#[doc(hidden)]
pub mod batch;
mod checkpoint;
mod descriptor;
mod diagnostics;
mod handoff;
mod ids;
#[doc(hidden)]
pub mod outcome;
mod policy;
pub mod queue;
mod repeated_failure;
mod request;
#[doc(hidden)]
pub mod runner;
mod runtime;
mod scoped;
#[doc(hidden)]
pub mod skip;
mod spawn;
mod step;
mod task;
mod timeout;
mod typed;

pub use batch::{join_all, JoinAll};
pub use descriptor::{steps, tasks, StepDescriptor, TaskDescriptor};
pub use handoff::RunFailure;
pub use policy::RetryPolicy;
pub use request::{RequestError, TaskRequest};
pub use runtime::{
    BuildError, EnqueueError, RunError, RunSummary, Runtime, RuntimeBuilder, StopSignal, TaskError,
    TaskHandle,
};
pub use spawn::{spawn, FutureExt};
pub use timeout::{StepTimeout, TaskTimeout, TIMEOUT_CLASS};

// What only generated code calls (through `tasker::__private`): hidden from the documentation,
// public only because another crate's expansion names it.
#[doc(hidden)]
pub use arguments::Slot;
#[doc(hidden)]
pub use descriptor::{no_runner, StepRegistration, TaskRegistration};
#[doc(hidden)]
pub use diagnostics::{
    field_value, skip_predicate, skipped, FromTaskTimeout, FromTimeout, RetryArgument,
    SkipPredicate, SkippedOutput, TaskRetryArgument, TaskTimeoutError, TimeoutError, TimeoutOutput,
};
#[doc(hidden)]
pub use runner::TaskRunner;
#[doc(hidden)]
pub use step::{
    backoff, backoff_sync, observed, quiet, quiet_uncheckpointed, Attempt, Next, Start, StepRun,
    TimedAttempt,
};
#[doc(hidden)]
pub use task::{Body, TaskRun, TimedBody};
pub use typed::{Enqueue, TypedRequest};

#[doc(hidden)]
pub mod __private {
    pub use crate::arguments;
    pub use crate::batch;
    pub use crate::checkpoint::replay as checkpoint;
    pub use crate::outcome;
    pub use crate::runner;
    pub use crate::skip;
    pub use crate::typed::{NamedOwnedTypes, NotEnqueueable, OneArgument, TaskInput, TaskOutput};
}
