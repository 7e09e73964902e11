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
