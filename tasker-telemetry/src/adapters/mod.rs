//! Built-in adapters.

mod logger;

pub use logger::LoggerAdapter;
