//! Metrics from the same events as the spans, through the OpenTelemetry metrics API.

use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::{KeyValue, StringValue};

use super::attributes as keys;
use crate::adapter::SpanOutcome;
use crate::context::{StepRef, TaskRef};

/// `tasker.task.duration`: seconds from `task.start` to `task.complete`/`task.error`.
pub const TASK_DURATION: &str = "tasker.task.duration";
/// `tasker.step.duration`: seconds of a step call, all attempts and waits included.
pub const STEP_DURATION: &str = "tasker.step.duration";
/// `tasker.step.attempts`: attempts started.
pub const STEP_ATTEMPTS: &str = "tasker.step.attempts";
/// `tasker.step.retries`: retries scheduled.
pub const STEP_RETRIES: &str = "tasker.step.retries";
/// `tasker.task.queue_latency`: seconds from a request's enqueue to `task.start` of its run by
/// a worker.
pub const TASK_QUEUE_LATENCY: &str = "tasker.task.queue_latency";

/// Bucket boundaries in seconds, as OpenTelemetry's semantic conventions advise for durations.
const DURATION_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The instruments of one adapter.
pub(crate) struct Instruments {
    task_duration: Histogram<f64>,
    step_duration: Histogram<f64>,
    step_attempts: Counter<u64>,
    step_retries: Counter<u64>,
    queue_latency: Histogram<f64>,
}

impl Instruments {
    pub(crate) fn new(meter: &Meter) -> Self {
        let duration = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(DURATION_BOUNDARIES.to_vec())
                .build()
        };
        Self {
            task_duration: duration(TASK_DURATION, "Duration of task runs"),
            step_duration: duration(
                STEP_DURATION,
                "Duration of step calls, all attempts and backoff included",
            ),
            step_attempts: meter
                .u64_counter(STEP_ATTEMPTS)
                .with_unit("{attempt}")
                .with_description("Step attempts started")
                .build(),
            step_retries: meter
                .u64_counter(STEP_RETRIES)
                .with_unit("{retry}")
                .with_description("Step retries scheduled")
                .build(),
            queue_latency: duration(
                TASK_QUEUE_LATENCY,
                "Time requests waited in a queue, from enqueue to the start of their run",
            ),
        }
    }

    /// A task run ended after `duration`.
    pub(crate) fn task_ended(
        &self,
        task: &TaskRef,
        outcome: SpanOutcome,
        duration: Duration,
        error_type: Option<StringValue>,
    ) {
        let name = KeyValue::new(keys::TASK_NAME, task.name);
        let result = KeyValue::new(keys::TASK_RESULT, outcome.as_str());
        let seconds = duration.as_secs_f64();
        match error_type {
            Some(error_type) => self.task_duration.record(
                seconds,
                &[name, result, KeyValue::new(keys::ERROR_TYPE, error_type)],
            ),
            None => self.task_duration.record(seconds, &[name, result]),
        }
    }

    /// A worker started a task `latency` after it was enqueued.
    pub(crate) fn queued_task_started(&self, task: &TaskRef, latency: Duration) {
        self.queue_latency.record(
            latency.as_secs_f64(),
            &[KeyValue::new(keys::TASK_NAME, task.name)],
        );
    }

    /// A step call ended after `duration`.
    pub(crate) fn step_ended(
        &self,
        step: &StepRef,
        task: Option<&TaskRef>,
        outcome: SpanOutcome,
        duration: Duration,
        error_type: Option<StringValue>,
    ) {
        let mut attributes: [Option<KeyValue>; 4] = [
            task.map(|task| KeyValue::new(keys::TASK_NAME, task.name)),
            Some(KeyValue::new(keys::STEP_NAME, step.name)),
            Some(KeyValue::new(keys::STEP_RESULT, outcome.as_str())),
            error_type.map(|error_type| KeyValue::new(keys::ERROR_TYPE, error_type)),
        ];
        with_present(&mut attributes, |attributes| {
            self.step_duration
                .record(duration.as_secs_f64(), attributes)
        });
    }

    /// An attempt of a step started.
    pub(crate) fn attempt_started(&self, step: &StepRef, task: Option<&TaskRef>) {
        self.count(&self.step_attempts, step, task);
    }

    /// A retry of a step was scheduled.
    pub(crate) fn retry_scheduled(&self, step: &StepRef, task: Option<&TaskRef>) {
        self.count(&self.step_retries, step, task);
    }

    fn count(&self, counter: &Counter<u64>, step: &StepRef, task: Option<&TaskRef>) {
        let step_name = KeyValue::new(keys::STEP_NAME, step.name);
        match task {
            Some(task) => counter.add(1, &[KeyValue::new(keys::TASK_NAME, task.name), step_name]),
            None => counter.add(1, &[step_name]),
        }
    }
}

/// Calls `f` with the present attributes, in order, without allocating.
fn with_present<R>(attributes: &mut [Option<KeyValue>; 4], f: impl FnOnce(&[KeyValue]) -> R) -> R {
    let mut present: [KeyValue; 4] = std::array::from_fn(|_| KeyValue::new("", false));
    let mut count = 0;
    for attribute in attributes.iter_mut().filter_map(Option::take) {
        present[count] = attribute;
        count += 1;
    }
    f(&present[..count])
}
