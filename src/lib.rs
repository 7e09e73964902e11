//! # Tasker: instrumented workflows
//!
//! Annotate plain functions with [`#[tasker::task]`](task) and [`#[tasker::step]`](step); every
//! call emits the full lifecycle of events (`task.initialize` … `task.complete`, `step.handle`,
//! `step.retry`, `step.skip`, …) and applies each step's retry, backoff and skip policy. Events
//! flow through one bus ([`events`]) to observers; the telemetry observer routes them to the
//! configured adapters: the logger (default) and custom adapters registered at link time with
//! [`register_adapter!`].
//!
//! ```
//! #[tasker::step(max_attempts = 3, backoff_ms = 10)]
//! async fn charge(amount: u32) -> Result<u32, std::io::Error> {
//!     Ok(amount)
//! }
//!
//! #[tasker::task(name = "checkout", version = "1.0.0")]
//! async fn checkout(amount: u32) -> Result<u32, std::io::Error> {
//!     charge(amount).await
//! }
//!
//! # tokio_test_block_on(async {
//! let capture = tasker::testing::Capture::new();
//! let receipt = capture.wrap(checkout(42)).await;
//! assert_eq!(receipt.unwrap(), 42);
//! capture.assert_names(&[
//!     "task.initialize", "task.start", "task.handle",
//!     "step.handle", "step.complete",
//!     "task.finalize", "task.complete",
//! ]);
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```
//!
//! Telemetry is off by default, as in Tasker; turn it on with [`configure`]:
//!
//! ```
//! use tasker::TelemetryAdapter;
//! tasker::configure(|config| {
//!     config.enable_telemetry = true;
//!     config.telemetry_adapters = vec![TelemetryAdapter::Default];
//! })?;
//! # tasker::configure(|config| config.enable_telemetry = false)?;
//! # Ok::<(), tasker::ConfigError>(())
//! ```
#![deny(missing_docs)]

pub use tasker_macros::{step, task};
pub use tasker_runtime::{
    join, join_all, queue, spawn, steps, tasks, BuildError, Enqueue, EnqueueError, FutureExt,
    JoinAll, RequestError, RetryPolicy, RunError, RunSummary, Runtime, RuntimeBuilder,
    StepDescriptor, StepTimeout, StopSignal, TaskDescriptor, TaskError, TaskHandle, TaskRequest,
    TaskTimeout, TypedRequest,
};
pub use tasker_telemetry::{
    configuration, configure, register_adapter, register_observer, use_adapters, ConfigError,
    Configuration, TelemetryAdapter,
};

/// Telemetry: events, adapters, manual events (configuration is at the crate root:
/// [`configure`], [`Configuration`]).
///
/// ```
/// tasker::telemetry::record("order.flagged", serde_json::json!({"order_id": 42}))?;
/// # Ok::<(), tasker::telemetry::RecordError>(())
/// ```
pub mod telemetry {
    // Configuration lives at the crate root, beside `configure`; `PanicCounts` in `events`,
    // beside `panic_counts`: one path each.
    pub use tasker_telemetry::{
        adapters, collector, context, env, filter, flush, flush_timeout, propagation, record,
        registered_adapters, Adapter, AdapterRegistration, Details, ErrorInfo, Event, EventKind,
        InitializeStatus, RecordError, SourceLocation, SpanOutcome, StepRef, TaskOrigin, TaskRef,
        UnknownEventKind, CANCELLED_CLASS,
    };

    /// OpenTelemetry: the adapter's spans and metrics, and OTLP export (feature
    /// `opentelemetry`).
    #[cfg(feature = "opentelemetry")]
    pub use tasker_telemetry::otel;
}

pub use tasker_telemetry::events;
pub use tasker_telemetry::testing;

pub mod listing;
pub use listing::list_registered_and_exit_if_requested;

/// The names most programs use.
pub mod prelude {
    pub use crate::telemetry::{Adapter, Event};
    pub use crate::{join, join_all, step, task, FutureExt};
}

/// Paths used by the code that `#[task]` and `#[step]` generate. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use serde_json;
    pub use tasker_runtime::__private::*;
    pub use tasker_runtime::{classify, RetryPolicy, StepDescriptor, TaskDescriptor, TypedRequest};
    pub use tasker_telemetry::__private::{fire, inventory};
    pub use tasker_telemetry::SourceLocation;
}
