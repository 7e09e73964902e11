//! The error of an attempt that ran out of time.

use std::time::Duration;

/// An attempt of a step with `timeout_ms` ran longer than allowed and was dropped.
///
/// A step with `timeout_ms` returns `Result<T, E>` with `E: From<StepTimeout>`; the timed-out
/// attempt returns `Err(StepTimeout.into())`, which is retried like any other error.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("step `{step}` timed out after {} ms (attempt {attempt})", limit.as_millis())]
pub struct StepTimeout {
    /// The step.
    pub step: &'static str,
    /// The attempt that timed out.
    pub attempt: u32,
    /// The limit it exceeded.
    pub limit: Duration,
}

tasker_telemetry::__debug_shows_message!(StepTimeout);

/// The `error_class` of a task attempt that ran longer than its `timeout_ms`.
pub const TIMEOUT_CLASS: &str = "tasker::Timeout";

/// An attempt of a task with `timeout_ms` ran longer than allowed and was dropped (its steps
/// report `tasker::Cancelled`, as for any dropped future).
///
/// A task with `timeout_ms` returns `Result<T, E>` with `E: From<TaskTimeout>`: the attempt
/// returns `Err(TaskTimeout.into())`, retried like any other failure while attempts remain;
/// `task.retry`/`task.error` report it with class [`TIMEOUT_CLASS`].
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("task `{task}` timed out after {} ms (attempt {attempt})", limit.as_millis())]
pub struct TaskTimeout {
    /// The task.
    pub task: &'static str,
    /// The attempt that timed out.
    pub attempt: u32,
    /// The limit it exceeded.
    pub limit: Duration,
}

tasker_telemetry::__debug_shows_message!(TaskTimeout);
