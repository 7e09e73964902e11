//! OpenTelemetry: the adapter behind [`TelemetryAdapter::OpenTelemetry`](crate::TelemetryAdapter),
//! its metrics, and [`init_from_env`] for OTLP export. Needs the `opentelemetry` feature.
//!
//! What the adapter records (DESIGN.md §5):
//!
//! - a trace per task run: a root span `task.<name>` (kind INTERNAL for inline runs);
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
//!   `error.type` on failure) and counters `tasker.step.attempts` and `tasker.step.retries`.
//!
//! The adapter uses the configuration's `tracer_provider` and `meter_provider`, else the
//! global ones; the library never installs a global provider unless you call
//! [`init_from_env`].
//!
//! ```
//! use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
//! use tasker_telemetry::{configure, TelemetryAdapter};
//!
//! let exporter = InMemorySpanExporter::default();
//! let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
//! configure(|config| {
//!     config.enable_telemetry = true;
//!     config.telemetry_adapters = vec![TelemetryAdapter::OpenTelemetry];
//!     config.tracer_provider = Some(provider.clone().into());
//! })?;
//! # configure(|config| config.enable_telemetry = false)?;
//! # Ok::<(), tasker_telemetry::ConfigError>(())
//! ```

mod adapter;
pub mod attributes;
mod export_errors;
mod init;
pub mod metrics;
mod names;
mod providers;
mod span_map;
mod spans;

pub(crate) use adapter::build as build_adapter;
pub use adapter::OpenTelemetryAdapter;
pub use export_errors::ExportErrorCounts;
pub use init::{
    env, init_from_env, OtelGuard, OtelInitError, OtlpProtocol, OtlpSettings, SamplerSetting,
};
pub use providers::{MeterProviderHandle, TracerProviderHandle};
pub use span_map::open_span_count;
