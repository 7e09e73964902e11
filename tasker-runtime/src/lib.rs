//! Tasker's runtime: what `#[tasker::task]` and `#[tasker::step]` expand to call.
//!
//! The expansion is a thin loop around `StepRun` and `TaskRun`; every behaviour — events,
//! retries with backoff, skips, panics, cancellation, context propagation, concurrent batches —
//! lives here as ordinary, tested Rust. What only generated code calls is in the hidden `__private`.
//! Users depend on the `tasker` crate, which re-exports what they need.
#![deny(missing_docs)]

mod arguments;
mod batch;
mod checkpoint;
mod descriptor;
mod diagnostics;
mod handoff;
mod ids;
mod outcome;
mod policy;
pub mod queue;
mod repeated_failure;
mod request;
mod runner;
mod runtime;
mod scoped;
mod skip;
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
pub use typed::{Enqueue, TypedRequest};

/// What only the code `#[task]` and `#[step]` generate calls (through `tasker::__private`):
/// public only because another crate's expansion names it. Not a public API.
#[doc(hidden)]
pub mod __private {
    /// Binding a step's arguments for its retry loop.
    pub mod arguments {
        pub use crate::arguments::*;
    }
    /// `join!`'s futures.
    pub mod batch {
        pub use crate::batch::*;
    }
    /// Replaying and recording a step's checkpoint.
    pub mod checkpoint {
        pub use crate::checkpoint::replay::*;
    }
    /// Classifying a step's or task's output as success or failure.
    pub mod outcome {
        pub use crate::outcome::*;
    }
    /// Running a task by name, from a queued request's context.
    pub mod runner {
        pub use crate::runner::*;
    }
    /// `skip_if` predicates.
    pub mod skip {
        pub use crate::skip::*;
    }

    pub use crate::arguments::Slot;
    pub use crate::descriptor::{no_runner, StepRegistration, TaskRegistration};
    pub use crate::diagnostics::{
        field_value, skip_predicate, skipped, FromTaskTimeout, FromTimeout, RetryArgument,
        SkipPredicate, SkippedOutput, TaskRetryArgument, TaskTimeoutError, TimeoutError,
        TimeoutOutput,
    };
    pub use crate::runner::TaskRunner;
    pub use crate::step::{
        backoff, backoff_sync, observed, quiet, quiet_uncheckpointed, Attempt, Next, Start,
        StepRun, TimedAttempt,
    };
    pub use crate::task::{Body, TaskRun, TimedBody};
    pub use crate::typed::{NamedOwnedTypes, NotEnqueueable, OneArgument, TaskInput, TaskOutput};
}
