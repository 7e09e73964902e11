//! W3C trace context carried from the code that enqueues a task to the worker that runs it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use serde::{Deserialize, Serialize};

use crate::context::{Context, StepRef, TaskRef};

/// A W3C trace context: the `traceparent`, `tracestate` and `baggage` headers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TraceContext {
    /// `version-traceid-parentid-flags`, such as
    /// `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`.
    pub traceparent: String,
    /// Vendor-specific trace state, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
    /// W3C baggage, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baggage: Option<String>,
}

impl TraceContext {
    /// A context with only a `traceparent`.
    pub fn new(traceparent: impl Into<String>) -> Self {
        Self {
            traceparent: traceparent.into(),
            tracestate: None,
            baggage: None,
        }
    }

    /// Whether `traceparent` has the W3C form: version `00`, a 32-hex-digit non-zero trace id,
    /// a 16-hex-digit non-zero parent id and 2 hex digits of flags, lower case, `-`-separated.
    pub fn is_valid(&self) -> bool {
        let parts: Vec<&str> = self.traceparent.split('-').collect();
        let hex = |part: &str, len: usize| {
            part.len() == len && part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        let non_zero = |part: &str| part.bytes().any(|b| b != b'0');
        matches!(parts.as_slice(), [version, trace, parent, flags]
            if *version == "00" && hex(trace, 32) && non_zero(trace)
                && hex(parent, 16) && non_zero(parent) && hex(flags, 2))
    }
}

/// The trace context of one delivery's run of a queued task (its task span), as a durable queue
/// keeps it: should that delivery die, the next one links to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunTrace {
    /// Which delivery of the task ran, from 1.
    pub delivery_attempt: u32,
    /// The W3C context of its run.
    pub trace_context: TraceContext,
}

/// Where the current trace context comes from: installed by a telemetry integration such as the
/// OpenTelemetry adapter, absent otherwise.
pub trait Propagator: Send + Sync + 'static {
    /// The trace context to send along with a request for `task`, made by the code running now.
    fn inject(&self, task: Option<&TaskRef>) -> Option<TraceContext>;

    /// Makes the step's trace context current while an attempt of it runs, so that the user's
    /// own telemetry inside it (log records, child spans) belongs to the step; `None` when there
    /// is nothing to make current. The guard is dropped when the attempt's poll ends.
    fn enter_step(&self, step: &StepRef) -> Option<ActiveContext> {
        let _ = step;
        None
    }

    /// The trace context of the run of `task` (a task a worker took from a queue) while it runs
    /// in this process, for the queue to keep so that a later delivery of the task, should this
    /// one die, can link to it; `None` (the default) when there is none.
    fn run_context(&self, task: &TaskRef) -> Option<TraceContext> {
        let _ = task;
        None
    }
}

/// A trace context made current by [`Propagator::enter_step`], until dropped.
pub struct ActiveContext(#[allow(dead_code)] Guard);

enum Guard {
    /// The OpenTelemetry adapter's guard, held without a box: it is taken on every poll.
    #[cfg(feature = "opentelemetry")]
    OpenTelemetry(#[allow(dead_code)] opentelemetry::ContextGuard),
    /// Any other integration's guard.
    Other(#[allow(dead_code)] Box<dyn std::any::Any>),
}

impl ActiveContext {
    /// Keeps `guard` (whatever restores the previous context when dropped) alive.
    pub fn new(guard: impl std::any::Any) -> Self {
        ActiveContext(Guard::Other(Box::new(guard)))
    }

    #[cfg(feature = "opentelemetry")]
    pub(crate) fn opentelemetry(guard: opentelemetry::ContextGuard) -> Self {
        ActiveContext(Guard::OpenTelemetry(guard))
    }
}

impl std::fmt::Debug for ActiveContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ActiveContext")
    }
}

/// Makes `step`'s trace context current through the installed propagator, if any.
#[inline]
pub fn enter_step(step: &StepRef) -> Option<ActiveContext> {
    if !INSTALLED.load(Ordering::Relaxed) {
        return None;
    }
    PROPAGATOR.load().as_ref()?.enter_step(step)
}

impl std::fmt::Debug for dyn Propagator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Propagator")
    }
}

static PROPAGATOR: ArcSwapOption<Box<dyn Propagator>> = ArcSwapOption::const_empty();
/// Whether `PROPAGATOR` holds one: a relaxed load spares every step attempt the `ArcSwap` load
/// when none is installed (the common case without the OpenTelemetry adapter).
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Stores `propagator` and whether there is one.
fn store(propagator: Option<Box<dyn Propagator>>) {
    let installed = propagator.is_some();
    PROPAGATOR.store(propagator.map(Arc::new));
    INSTALLED.store(installed, Ordering::Relaxed);
}
/// Whether the installed propagator is the one `configure` installed with its adapters.
static CONFIGURED: AtomicBool = AtomicBool::new(false);

/// Installs (or with `None` removes) the process's propagator.
///
/// `configure` installs the OpenTelemetry adapter's propagator when it builds that adapter, and
/// removes it when the configuration no longer has it; a propagator installed here stays until
/// replaced here or by a configuration with the OpenTelemetry adapter.
pub fn set_propagator(propagator: Option<Box<dyn Propagator>>) {
    store(propagator);
    CONFIGURED.store(false, Ordering::Relaxed);
}

/// What `configure` does with the propagator of its adapters: installs `Some`, and on `None`
/// removes only a propagator it installed itself.
pub(crate) fn set_configured_propagator(propagator: Option<Box<dyn Propagator>>) {
    match propagator {
        Some(propagator) => {
            store(Some(propagator));
            CONFIGURED.store(true, Ordering::Relaxed);
        }
        None => {
            if CONFIGURED.swap(false, Ordering::Relaxed) {
                store(None);
            }
        }
    }
}

/// The trace context of the code running now, for a request for `task`: from the installed
/// propagator, else the context the current task was started with, else none.
pub fn inject(task: Option<&TaskRef>) -> Option<TraceContext> {
    propagator_context(task).or_else(current_trace_context)
}

/// The trace context the installed propagator gives for a request for `task`, if any.
pub fn propagator_context(task: Option<&TaskRef>) -> Option<TraceContext> {
    if !INSTALLED.load(Ordering::Relaxed) {
        return None;
    }
    PROPAGATOR.load().as_ref()?.inject(task)
}

/// The trace context of the run of queued task `task` in this process, from the installed
/// propagator (see [`Propagator::run_context`]), if any.
pub fn run_context(task: &TaskRef) -> Option<TraceContext> {
    PROPAGATOR.load().as_ref()?.run_context(task)
}

/// The trace context the current task was started with (a task run by a worker continues the
/// trace of the code that enqueued it).
pub fn current_trace_context() -> Option<TraceContext> {
    Context::with_current(|context| {
        context
            .task_frame()
            .and_then(|frame| frame.trace_context().cloned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_must_have_the_w3c_form() {
        let valid = TraceContext::new("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert!(valid.is_valid());
        for invalid in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(!TraceContext::new(invalid).is_valid(), "{invalid}");
        }
    }
}
