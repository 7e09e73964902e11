//! The telemetry observer: routes each event to the configured adapters and derives their trace
//! and span hooks from the lifecycle. Adapters that ask for it are called here, on the caller's
//! thread; the others through the [collector](crate::collector).

use std::sync::Arc;

use crate::adapter::{Adapter, SpanOutcome};
use crate::bus::Observer;
use crate::collector::{self, AdapterSet, Call, ConfiguredAdapter};
use crate::context::{TaskOrigin, TaskRef};
use crate::event::{Details, Event};
use crate::isolate::Isolated;

/// `error_class` of a task or step whose future was dropped before it finished.
pub const CANCELLED_CLASS: &str = "tasker::Cancelled";

pub(crate) struct TelemetryObserver {
    set: Arc<AdapterSet>,
    /// Whether some adapter is called here, on the caller's thread.
    any_inline: bool,
    /// Every adapter is called here: none asked for the collector, or it could not start.
    all_inline: bool,
    /// The set's id at the collector, when some adapter receives events there.
    collected: Option<u64>,
}

impl TelemetryObserver {
    pub(crate) fn new(adapters: Vec<(Box<dyn Adapter>, Isolated)>) -> Self {
        let adapters: Vec<ConfiguredAdapter> = adapters
            .into_iter()
            .map(|(adapter, isolated)| ConfiguredAdapter {
                synchronous: adapter.synchronous(),
                adapter,
                isolated,
            })
            .collect();
        let any_synchronous = adapters.iter().any(|configured| configured.synchronous);
        let any_collected = adapters.iter().any(|configured| !configured.synchronous);
        let set = Arc::new(AdapterSet { adapters });
        let collected = any_collected
            .then(|| collector::register(set.clone()))
            .flatten();
        // Without a collector thread, every adapter is called here.
        let all_inline = collected.is_none();
        Self {
            set,
            any_inline: any_synchronous || all_inline,
            all_inline,
            collected,
        }
    }

    fn inline(&self) -> impl Iterator<Item = &ConfiguredAdapter> {
        let all = self.all_inline;
        self.set
            .adapters
            .iter()
            .filter(move |configured| all || configured.synchronous)
    }
}

impl Observer for TelemetryObserver {
    #[inline]
    fn on_event(&self, event: &Event<'_>) {
        if self.any_inline {
            for configured in self.inline() {
                configured
                    .isolated
                    .call(|| dispatch(configured.adapter.as_ref(), event));
            }
        }
        if let Some(set) = self.collected {
            collector::push(set, || Call::Event(event.to_owned_event()));
        }
    }

    fn on_task_abandoned(&self, task: &TaskRef) {
        for configured in self.inline() {
            configured
                .isolated
                .call(|| configured.adapter.end_trace(task, SpanOutcome::Abandoned));
        }
        if let Some(set) = self.collected {
            collector::push(set, || Call::Abandoned(*task));
        }
    }
}

impl Drop for TelemetryObserver {
    fn drop(&mut self) {
        if let Some(set) = self.collected {
            collector::retire(set);
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
