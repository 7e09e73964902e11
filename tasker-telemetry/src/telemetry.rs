//! The telemetry observer: routes each event to the configured adapters and derives their trace
//! and span hooks from the lifecycle.

use crate::adapter::{Adapter, SpanOutcome};
use crate::bus::Observer;
use crate::context::{TaskOrigin, TaskRef};
use crate::event::{Details, Event};
use crate::isolate::Isolated;

/// `error_class` of a task or step whose future was dropped before it finished.
pub const CANCELLED_CLASS: &str = "tasker::Cancelled";

pub(crate) struct TelemetryObserver {
    adapters: Vec<(Box<dyn Adapter>, Isolated)>,
}

impl TelemetryObserver {
    pub(crate) fn new(adapters: Vec<(Box<dyn Adapter>, Isolated)>) -> Self {
        Self { adapters }
    }
}

impl Observer for TelemetryObserver {
    fn on_event(&self, event: &Event<'_>) {
        for (adapter, isolated) in &self.adapters {
            isolated.call(|| dispatch(adapter.as_ref(), event));
        }
    }

    fn on_task_abandoned(&self, task: &TaskRef) {
        for (adapter, isolated) in &self.adapters {
            isolated.call(|| adapter.end_trace(task, SpanOutcome::Abandoned));
        }
    }
}

/// Records `event` on `adapter`, calling the trace and span hooks it opens or closes.
pub(crate) fn dispatch(adapter: &dyn Adapter, event: &Event<'_>) {
    let task = event.task();
    match (event.details(), event.step()) {
        (Details::TaskStart, _) => {
            if let Some(task) = task {
                adapter.start_trace(task);
            }
            adapter.record(event);
        }
        (Details::TaskComplete { .. }, _) => {
            adapter.record(event);
            if let Some(task) = task {
                adapter.end_trace(task, SpanOutcome::Success);
            }
        }
        (Details::TaskBackoff { .. }, _) => {
            adapter.record(event);
            // A worker hands a failed attempt back to the queue: this delivery's trace ends
            // here without an end of the task, which the delivery of its next attempt reports.
            if let Some(task) = task.filter(|task| task.origin == TaskOrigin::Queued) {
                adapter.end_trace(task, SpanOutcome::Abandoned);
            }
        }
        (Details::TaskError { error, .. }, _) => {
            adapter.record(event);
            if let Some(task) = task {
                adapter.end_trace(task, failure_outcome(&error.class));
            }
        }
        (Details::StepHandle { attempt: 1, .. }, Some(step)) => {
            adapter.start_span(step, task);
            adapter.record(event);
        }
        (Details::StepSkip { .. }, Some(step)) => {
            adapter.start_span(step, task);
            adapter.record(event);
            adapter.end_span(step, task, SpanOutcome::Skip);
        }
        (Details::StepComplete { .. }, Some(step)) => {
            adapter.record(event);
            adapter.end_span(step, task, SpanOutcome::Success);
        }
        (
            Details::StepError {
                retryable: false,
                error,
                ..
            },
            Some(step),
        ) => {
            adapter.record(event);
            adapter.end_span(step, task, failure_outcome(&error.class));
        }
        (Details::StepMaxRetriesReached { .. }, Some(step)) => {
            adapter.record(event);
            adapter.end_span(step, task, SpanOutcome::Failure);
        }
        _ => adapter.record(event),
    }
}

fn failure_outcome(class: &str) -> SpanOutcome {
    if class == CANCELLED_CLASS {
        SpanOutcome::Cancellation
    } else {
        SpanOutcome::Failure
    }
}
