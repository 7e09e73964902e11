//! `TelemetryAdapter::OpenTelemetry`: the span tree and the metrics, behind the `Adapter` hooks.

use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::Tracer;
use opentelemetry::StringValue;
use opentelemetry_sdk::trace::SdkTracer;

use super::direct_export::DirectExport;
use super::direct_spans::DirectTree;
use super::metrics::Instruments;
use super::propagator::OpenTelemetryPropagator;
use super::providers::{choose_meter, choose_tracer, ChosenTracer};
use super::spans::{Closed, SpanTree};
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
/// use tasker::{configure, TelemetryAdapter};
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
    spans: Spans<T>,
    /// `None` when the configuration turned the adapter's metrics off.
    instruments: Option<Instruments>,
}

/// Where the adapter's spans go: SDK spans made by a tracer while they run, or records built
/// into spans once, at their end, for a [`DirectExport`].
enum Spans<T: Tracer> {
    // Boxed: the SDK path's tree (its sharded map inline) is far larger than the direct one.
    Tracer(Box<SpanTree<T>>),
    Direct(DirectTree),
}

impl<T> Spans<T>
where
    T: Tracer,
    T::Span: Send + Sync + 'static,
{
    fn record(&self, event: &Event<'_>) {
        match self {
            Spans::Tracer(tree) => tree.record(event),
            Spans::Direct(tree) => tree.record(event),
        }
    }

    fn open_task(&self, task: &TaskRef) {
        match self {
            Spans::Tracer(tree) => tree.open_task(task),
            Spans::Direct(tree) => tree.open_task(task),
        }
    }

    fn close_task(&self, task: &TaskRef, outcome: SpanOutcome) -> Option<Closed> {
        match self {
            Spans::Tracer(tree) => tree.close_task(task, outcome),
            Spans::Direct(tree) => tree.close_task(task, outcome),
        }
    }

    fn open_step(&self, step: &StepRef, task: Option<&TaskRef>) {
        match self {
            Spans::Tracer(tree) => tree.open_step(step, task),
            Spans::Direct(tree) => tree.open_step(step, task),
        }
    }

    fn close_step(&self, step: &StepRef, outcome: SpanOutcome) -> Option<Closed> {
        match self {
            Spans::Tracer(tree) => tree.close_step(step, outcome),
            Spans::Direct(tree) => tree.close_step(step, outcome),
        }
    }

    fn propagator(&self) -> OpenTelemetryPropagator {
        match self {
            Spans::Tracer(tree) => {
                OpenTelemetryPropagator::new(tree.producers(), tree.step_contexts(), tree.runs())
            }
            Spans::Direct(tree) => {
                OpenTelemetryPropagator::new(tree.producers(), tree.steps(), tree.runs())
            }
        }
    }
}

impl<T> OpenTelemetryAdapter<T>
where
    T: Tracer,
    T::Span: Send + Sync + 'static,
{
    /// An adapter recording spans with `tracer` and metrics with `meter`.
    pub fn new(tracer: T, meter: &opentelemetry::metrics::Meter) -> Self {
        Self {
            spans: Spans::Tracer(Box::new(SpanTree::new(tracer))),
            instruments: Some(Instruments::new(meter)),
        }
    }

    /// This adapter without its metrics: spans only.
    pub fn without_metrics(mut self) -> Self {
        self.instruments = None;
        self
    }

    /// The [`Propagator`](crate::propagation::Propagator) that gives an enqueued task's
    /// envelope the context of this adapter's `enqueue task.<name>` span. `configure` installs
    /// it along with the adapter; install it yourself with
    /// [`set_propagator`](crate::propagation::set_propagator) when you register the adapter
    /// some other way.
    pub fn propagator(&self) -> OpenTelemetryPropagator {
        self.spans.propagator()
    }
}

impl OpenTelemetryAdapter<SdkTracer> {
    /// An adapter whose spans are built once, at their end, and exported by `export` (no SDK
    /// span on the caller's thread), with metrics recorded with `meter`.
    pub fn with_direct_export(export: DirectExport, meter: &opentelemetry::metrics::Meter) -> Self {
        Self {
            spans: Spans::Direct(DirectTree::new(export)),
            instruments: Some(Instruments::new(meter)),
        }
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
    fn metrics_as_configured<T>(
        adapter: OpenTelemetryAdapter<T>,
        config: &Configuration,
    ) -> OpenTelemetryAdapter<T>
    where
        T: Tracer,
        T::Span: Send + Sync + 'static,
    {
        if config.otel_metrics {
            adapter
        } else {
            adapter.without_metrics()
        }
    }
    let meter = choose_meter(config.meter_provider.as_ref());
    match choose_tracer(config.tracer_provider.as_ref()) {
        ChosenTracer::Direct(export) => boxed(metrics_as_configured(
            OpenTelemetryAdapter::with_direct_export(export, &meter),
            config,
        )),
        ChosenTracer::Sdk(tracer) => boxed(metrics_as_configured(
            OpenTelemetryAdapter::<SdkTracer>::new(tracer, &meter),
            config,
        )),
        ChosenTracer::Boxed(tracer) => boxed(metrics_as_configured(
            OpenTelemetryAdapter::<BoxedTracer>::new(tracer, &meter),
            config,
        )),
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
        let Some(instruments) = &self.instruments else {
            return;
        };
        match (event.details(), event.step()) {
            (Details::StepHandle { .. }, Some(step)) => {
                instruments.attempt_started(step, event.task());
            }
            (Details::StepRetry { .. }, Some(step)) => {
                instruments.retry_scheduled(step, event.task());
            }
            (Details::TaskStart, _) => {
                if let Some(task) = event
                    .task()
                    .filter(|task| task.origin == TaskOrigin::Queued)
                {
                    if let Some(latency) = queue_latency(task, event.timestamp()) {
                        instruments.queued_task_started(task, latency);
                    }
                }
            }
            (Details::TaskComplete { duration }, _) => {
                if let Some(task) = event.task() {
                    instruments.task_ended(task, SpanOutcome::Success, *duration, None);
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
                    instruments.task_ended(task, outcome, *duration, Some(error_type));
                }
            }
            _ => {}
        }
    }

    fn start_trace(&self, task: &TaskRef) {
        self.spans.open_task(task);
    }

    fn end_trace(&self, task: &TaskRef, outcome: SpanOutcome) {
        // The task's duration metric comes from its terminal event, not from here.
        let _ = self.spans.close_task(task, outcome);
    }

    fn start_span(&self, step: &StepRef, task: Option<&TaskRef>) {
        self.spans.open_step(step, task);
    }

    fn end_span(&self, step: &StepRef, task: Option<&TaskRef>, outcome: SpanOutcome) {
        let closed = self.spans.close_step(step, outcome);
        if let (Some(closed), Some(instruments)) = (closed, &self.instruments) {
            instruments.step_ended(step, task, outcome, closed.elapsed, closed.error_type);
        }
    }
}
