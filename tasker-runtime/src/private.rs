//! What only the code `#[task]` and `#[step]` generate calls (through `tasker::__private`):
//! public only because another crate's expansion names it. Not a public API.
//!
//! The support modules are declared here, not re-exported, so that compiler messages name them
//! by a path users can see (`tasker::__private::skip::…`).

#[path = "arguments.rs"]
pub mod arguments;
#[path = "batch.rs"]
pub mod batch;
#[path = "outcome.rs"]
pub mod outcome;
#[path = "runner.rs"]
pub mod runner;
#[path = "skip.rs"]
pub mod skip;

pub use crate::checkpoint::replay as checkpoint;

pub use crate::arguments::Slot;
pub use crate::descriptor::{no_runner, StepRegistration, TaskRegistration};
pub use crate::diagnostics::{
    field_value, skip_predicate, skipped, FromTaskTimeout, FromTimeout, RetryArgument,
    SkipPredicate, SkippedOutput, TaskRetryArgument, TaskTimeoutError, TimeoutError, TimeoutOutput,
};
pub use crate::runner::TaskRunner;
pub use crate::step::{
    backoff, backoff_sync, observed, quiet, quiet_uncheckpointed, Attempt, Next, Start, StepRun,
    TimedAttempt,
};
pub use crate::task::{Body, TaskRun, TimedBody};
pub use crate::typed::{NamedOwnedTypes, NotEnqueueable, OneArgument, TaskInput, TaskOutput};
