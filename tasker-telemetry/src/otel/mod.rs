//! OpenTelemetry: the adapter behind [`TelemetryAdapter::OpenTelemetry`](crate::TelemetryAdapter),
//! its metrics, and [`init_from_env`] for OTLP export. Needs the `opentelemetry` feature.
//!
//! What the adapter records (DESIGN.md §5):
//!
//! - a trace per task run: a root span `task.<name>` (kind INTERNAL for inline runs); a task
//!   enqueued through a `Runtime` gets a PRODUCER span `enqueue task.<name>` on the enqueuing
//!   side (child of the current OpenTelemetry context, from `task.initialize` to `task.enqueue`,
//!   with `tasker.queue`), whose W3C context the envelope carries
//!   ([`OpenTelemetryPropagator`], installed by `configure` with the adapter); the worker's
//!   `task.<name>` span is then a CONSUMER span, child of it (a new trace if the carried
//!   `traceparent` is invalid), with `tasker.delivery.attempt`; a delivery after one that died
//!   links to that one's span (the link's `tasker.delivery.attempt` names it), whose context
//!   the queue kept ([`OpenTelemetryPropagator`] gives it to the runtime as the run starts); a
//!   run whose worker lost the lease ends its span with `tasker.task.result` `abandoned`;
//! - a span `step.<name>` per step call, covering all of its attempts, child of the step it was
//!   called from, else of its task (explicit parents, never "whatever is current"); a step called
//!   outside any task is a root span;
//! - attributes at start: `tasker.task.id`, `tasker.task.name`, `tasker.task.version`,
//!   `tasker.step.id`, `tasker.step.name`, `tasker.step.max_attempts`, `code.function.name`,
//!   `code.file.path`, `code.line.number`; at the end `tasker.step.attempts`,
//!   `tasker.step.result` (`success`, `failure`, `skip`, `cancellation`) and
//!   `tasker.task.result` on task spans;
//! - every lifecycle event as a span event on its span, with typed attributes (the event's
//!   payload keys: `attempt`, `duration_ms`, `error_class`, …), custom events
//!   ([`record`](crate::record)) on the current step's or task's span;
//! - on a *final* failure only: status `Error` with the message, `error.type`, and an
//!   `exception` event (`exception.type`, `exception.message`); skipped steps keep status Unset;
//! - metrics: histograms `tasker.task.duration` and `tasker.step.duration` (seconds, with
//!   `tasker.task.name`, `tasker.step.name`, `tasker.task.result`/`tasker.step.result` and
//!   `error.type` on failure), counters `tasker.step.attempts` and `tasker.step.retries`, and
//!   the histogram `tasker.task.queue_latency` (seconds from enqueue to `task.start` of a run
//!   by a worker, with `tasker.task.name`).
//!
//! The adapter uses the configuration's `tracer_provider` and `meter_provider`, else the
//! global ones; the library never installs a global provider unless you call
//! [`init_from_env`]. A [`DirectExport`] as the tracer provider is the fast path: ids picked
//! when a span starts, one compact record per span, the `SpanData` built once at its end and
//! exported in batches by the export's own thread. An SDK provider gets SDK spans made while
//! they run, through all of its processors. `config.otel_metrics = false` turns the metrics
//! off.
//!
//! ```
//! use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
//! use tasker::{configure, TelemetryAdapter};
//!
//! let exporter = InMemorySpanExporter::default();
//! let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
//! configure(|config| {
//!     config.enable_telemetry = true;
//!     config.telemetry_adapters = vec![TelemetryAdapter::OpenTelemetry];
//!     config.tracer_provider = Some(provider.clone().into());
//! })?;
//! # configure(|config| config.enable_telemetry = false)?;
//! # Ok::<(), tasker::ConfigError>(())
//! ```

mod adapter;
pub mod attributes;
mod direct_export;
mod direct_spans;
mod export_errors;
mod ids;
mod init;
pub mod metrics;
mod names;
mod propagator;
mod providers;
mod record;
mod sampling;
mod settings;
mod span_map;
mod spans;

pub(crate) use adapter::build as build_adapter;
pub use adapter::OpenTelemetryAdapter;
pub use direct_export::{DirectExport, DirectExportBuilder, DirectExportError, DirectExportStats};
pub use export_errors::ExportErrorCounts;
pub(crate) use init::guards_alive;
pub use init::{init_from_env, init_from_lookup, OtelGuard};
pub use propagator::{held_producer_context_count, OpenTelemetryPropagator};
pub use providers::{MeterProviderHandle, TracerProviderHandle};
pub use settings::{env, OtelInitError, OtlpProtocol, OtlpSettings, SamplerSetting};
pub use span_map::open_span_count;
