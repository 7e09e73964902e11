//! `TelemetryAdapter::OpenTelemetry`: the span tree and the metrics, behind the `Adapter` hooks.

use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::Tracer;
use opentelemetry::StringValue;
use opentelemetry_sdk::trace::SdkTracer;

use super::metrics::Instruments;
use super::propagator::OpenTelemetryPropagator;
use super::providers::{choose_meter, choose_tracer, ChosenTracer};
use super::spans::SpanTree;
use crate::adapter::{Adapter, SpanOutcome};
use crate::config::Configuration;
use crate::context::{Context, StepRef, TaskOrigin, TaskRef};
use crate::event::{Details, Event};
use crate::telemetry::CANCELLED_CLASS;

/// The OpenTelemetry adapter: a trace per task, a span per step call, lifecycle events as span
/// events, and the `tasker.*` metrics.
///
/// It is built by `configure` when `telemetry_adapters` lists
/// [`TelemetryAdapter::OpenTelemetry`](crate::TelemetryAdapter::OpenTelemetry), with the
/// configuration's `tracer_provider` and `meter_provider`, else the global ones as installed at
/// that moment (configure again after installing a global provider). It never installs a
/// global provider itself.
///
/// ```
/// use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
/// use tasker_telemetry::{configure, TelemetryAdapter};
///
/// let exporter = InMemorySpanExporter::default();
/// let provider = SdkTracerProvider::builder()
///     .with_simple_exporter(exporter.clone())
///     .build();
/// configure(|config| {
///     config.enable_telemetry = true;
///     config.telemetry_adapters = vec![TelemetryAdapter::OpenTelemetry];
///     config.tracer_provider = Some(provider.clone().into());
/// })
/// .unwrap();
/// # configure(|config| config.enable_telemetry = false).unwrap();
/// ```
pub struct OpenTelemetryAdapter<T: Tracer> {
    spans: SpanTree<T>,
    instruments: Instruments,
}

impl<T> OpenTelemetryAdapter<T>
where
    T: Tracer,
    T::Span: Send + Sync + 'static,
{
    /// An adapter recording spans with `tracer` and metrics with `meter`.
    pub fn new(tracer: T, meter: &opentelemetry::metrics::Meter) -> Self {
        Self {
            spans: SpanTree::new(tracer),
            instruments: Instruments::new(meter),
        }
    }

    /// The [`Propagator`](crate::propagation::Propagator) that gives an enqueued task's
    /// envelope the context of this adapter's `enqueue task.<name>` span. `configure` installs
    /// it along with the adapter; install it yourself with
    /// [`set_propagator`](crate::propagation::set_propagator) when you register the adapter
    /// some other way.
    pub fn propagator(&self) -> OpenTelemetryPropagator {
        OpenTelemetryPropagator::new(
            self.spans.producers(),
            self.spans.steps(),
            self.spans.runs(),
        )
    }
}

/// Builds the adapter from the configuration's providers (else the global ones), with its
/// propagator.
pub(crate) fn build(config: &Configuration) -> (Box<dyn Adapter>, OpenTelemetryPropagator) {
    fn boxed<T>(adapter: OpenTelemetryAdapter<T>) -> (Box<dyn Adapter>, OpenTelemetryPropagator)
    where
        T: Tracer + Send + Sync + 'static,
        T::Span: Send + Sync + 'static,
    {
        let propagator = adapter.propagator();
        (Box::new(adapter), propagator)
    }
    let meter = choose_meter(config.meter_provider.as_ref());
    match choose_tracer(config.tracer_provider.as_ref()) {
        ChosenTracer::Sdk(tracer) => boxed(OpenTelemetryAdapter::<SdkTracer>::new(tracer, &meter)),
        ChosenTracer::Boxed(tracer) => {
            boxed(OpenTelemetryAdapter::<BoxedTracer>::new(tracer, &meter))
        }
    }
}

/// How long the queued run of `task` waited since its enqueue, from the frame current at its
/// `task.start`.
fn queue_latency(task: &TaskRef, started: std::time::SystemTime) -> Option<std::time::Duration> {
    let enqueued_at = Context::with_current(|context| {
        context
            .task_frame()
            .filter(|frame| frame.task().id == task.id)
            .and_then(|frame| frame.queued())
            .and_then(|queued| queued.enqueued_at)
    })?;
    // A clock behind the producer's counts as no wait.
    Some(started.duration_since(enqueued_at).unwrap_or_default())
}

impl<T> Adapter for OpenTelemetryAdapter<T>
where
    T: Tracer + Send + Sync + 'static,
    T::Span: Send + Sync + 'static,
{
    /// Spans are started and ended on the task's thread for now: a step's span must exist
    /// while the step is polled (log correlation reads it) and the queue latency is read from
    /// the task's context.
    fn synchronous(&self) -> bool {
        true
    }

    fn record(&self, event: &Event<'_>) {
        self.spans.record(event);
        match (event.details(), event.step()) {
            (Details::StepHandle { .. }, Some(step)) => {
                self.instruments.attempt_started(step, event.task());
            }
            (Details::StepRetry { .. }, Some(step)) => {
                self.instruments.retry_scheduled(step, event.task());
            }
            (Details::TaskStart, _) => {
                if let Some(task) = event
                    .task()
                    .filter(|task| task.origin == TaskOrigin::Queued)
                {
                    if let Some(latency) = queue_latency(task, event.timestamp()) {
                        self.instruments.queued_task_started(task, latency);
                    }
                }
            }
            (Details::TaskComplete { duration }, _) => {
                if let Some(task) = event.task() {
                    self.instruments
                        .task_ended(task, SpanOutcome::Success, *duration, None);
                }
            }
            (
                Details::TaskError {
                    duration, error, ..
                },
                _,
            ) => {
                if let Some(task) = event.task() {
                    let outcome = if error.class == CANCELLED_CLASS {
                        SpanOutcome::Cancellation
                    } else {
                        SpanOutcome::Failure
                    };
                    let error_type = StringValue::from(error.class.clone().into_owned());
                    self.instruments
                        .task_ended(task, outcome, *duration, Some(error_type));
                }
            }
            _ => {}
        }
    }

    fn start_trace(&self, task: &TaskRef) {
        self.spans.open_task(task);
    }

    fn end_trace(&self, task: &TaskRef, outcome: SpanOutcome) {
        self.spans.close_task(task, outcome);
    }

    fn start_span(&self, step: &StepRef, task: Option<&TaskRef>) {
        self.spans.open_step(step, task);
    }

    fn end_span(&self, step: &StepRef, task: Option<&TaskRef>, outcome: SpanOutcome) {
        if let Some(closed) = self.spans.close_step(step, outcome) {
            self.instruments
                .step_ended(step, task, outcome, closed.elapsed, closed.error_type);
        }
    }
}
