//! Tasker's telemetry: the lifecycle-event catalog, the event bus and its observers, telemetry
//! adapters with their link-time registry, configuration, and test capture.
//!
//! Users depend on the `tasker` crate, which re-exports this one as `tasker::telemetry` (and the
//! bus as `tasker::events`).
#![deny(missing_docs)]

mod adapter;
pub mod adapters;
mod bus;
pub mod clock;
pub mod collector;
mod config;
pub mod context;
mod debug_message;
mod event;
pub mod filter;
mod frame;
mod isolate;
mod notice;
#[cfg(feature = "opentelemetry")]
pub mod otel;
pub mod propagation;
mod record;
mod telemetry;
pub mod testing;

pub use adapter::{registered_adapters, Adapter, AdapterRegistration, SpanOutcome};
pub use collector::{flush, flush_timeout};
pub use config::{configuration, configure, env, ConfigError, Configuration, TelemetryAdapter};
pub use context::{SourceLocation, StepRef, TaskOrigin, TaskRef};
pub use event::{Details, ErrorInfo, Event, EventKind, InitializeStatus, UnknownEventKind};
pub use isolate::{panic_message, PanicCounts};
pub use record::{record, RecordError};
pub use telemetry::CANCELLED_CLASS;

/// The lifecycle-event bus: [`subscribe`](events::subscribe) observers to every event the
/// runtime fires (custom events go through [`record`], which refuses the
/// reserved `task.*`/`step.*` names).
pub mod events {
    pub use crate::bus::{
        listening, registered_observers, subscribe, Observer, ObserverRegistration, Subscription,
    };
    pub use crate::isolate::{panic_counts, PanicCounts};
}

#[doc(hidden)]
pub mod __private {
    // Firing an event is the runtime's: through it, any `task.*`/`step.*` event could be forged,
    // which `record` refuses.
    pub use crate::bus::{abandon_task, fire};
    pub use crate::frame::{QueuedInfo, StepTally, TaskFrame};
    pub use inventory;
}
