//! Built-in adapters: the logger ([`LoggerAdapter`], `TelemetryAdapter::Default`) and the
//! console trace view ([`ConsoleAdapter`], `TelemetryAdapter::Console`).

mod console;
mod logger;

pub use console::{ColorChoice, ConsoleAdapter, ConsoleBuilder, ConsoleLimits, UnknownColorChoice};
pub use logger::LoggerAdapter;
