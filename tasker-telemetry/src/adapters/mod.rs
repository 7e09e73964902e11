//! Built-in adapters: the logger ([`LoggerAdapter`], `TelemetryAdapter::Default`) and the
//! console trace view ([`ConsoleAdapter`], `TelemetryAdapter::Console`).

mod console;
mod logger;
mod non_blocking;

pub use console::{ColorChoice, ConsoleAdapter, ConsoleBuilder, ConsoleLimits, UnknownColorChoice};
pub use logger::{level_of, LogFormat, LoggerAdapter, UnknownLogFormat};
pub use non_blocking::{
    dropped_events, NonBlocking, NonBlockingBuilder, NonBlockingHandle, NonBlockingStats,
    DEFAULT_CAPACITY, DEFAULT_SHUTDOWN_TIMEOUT,
};
