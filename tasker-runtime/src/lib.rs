//! Tasker's runtime: what `#[tasker::task]` and `#[tasker::step]` expand to call.
//!
//! The expansion is a thin loop around [`StepRun`] and [`TaskRun`]; every behaviour — events,
//! retries with backoff, skips, panics, cancellation, context propagation, concurrent batches —
//! lives here as ordinary, tested Rust. Users depend on the `tasker` crate, which re-exports
//! what they need.
#![deny(missing_docs)]

#[doc(hidden)]
pub mod batch;
#[doc(hidden)]
pub mod checkpoint;
mod descriptor;
mod diagnostics;
mod ids;
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
mod worker;

pub use batch::{join_all, JoinAll};
pub use descriptor::{
    no_runner, steps, tasks, StepDescriptor, StepRegistration, TaskDescriptor, TaskRegistration,
};
pub use diagnostics::{
    field_value, skipped, FromTimeout, RetryArgument, SkippedOutput, TimeoutError, TimeoutOutput,
};
pub use policy::RetryPolicy;
pub use request::{RequestError, TaskRequest};
pub use runner::TaskRunner;
pub use runtime::{
    BuildError, EnqueueError, RunError, RunSummary, Runtime, RuntimeBuilder, StopSignal, TaskError,
    TaskHandle,
};
pub use spawn::{spawn, FutureExt};
pub use step::{
    backoff, backoff_sync, observed, quiet, quiet_uncheckpointed, Attempt, Next, Start, StepRun,
    TimedAttempt,
};
pub use task::{Body, TaskRun};
pub use timeout::StepTimeout;
pub use typed::{Enqueue, TypedRequest};
pub use worker::RunFailure;

#[doc(hidden)]
pub mod __private {
    pub use crate::batch;
    pub use crate::checkpoint;
    pub use crate::outcome;
    pub use crate::runner;
    pub use crate::skip;
    pub use crate::typed::{NamedOwnedTypes, NotEnqueueable, OneArgument, TaskInput, TaskOutput};
}
