//! Warnings about a set-up that cannot do what it asks for (adapters with telemetry off, a
//! logger nobody reads, OpenTelemetry with no provider…), each said once per process, with the
//! fix.
//!
//! They go through `tracing` (target `tasker`, WARN) when a subscriber takes them, else to
//! standard error: the mistakes they report are often "no subscriber is installed".

use std::sync::atomic::{AtomicBool, Ordering};

/// One warning, said at most once per process.
pub(crate) struct Notice {
    said: AtomicBool,
}

impl Notice {
    /// A warning not said yet.
    pub(crate) const fn new() -> Self {
        Self {
            said: AtomicBool::new(false),
        }
    }

    /// Whether it was said already: one relaxed load, for callers on a hot path.
    pub(crate) fn said(&self) -> bool {
        self.said.load(Ordering::Relaxed)
    }

    /// Says `message()` unless this notice was said before.
    pub(crate) fn say(&self, message: impl FnOnce() -> String) {
        if !self.said.swap(true, Ordering::Relaxed) {
            say(&message());
        }
    }
}

/// Says `message` now: a WARN event of target `tasker` when a subscriber takes it, else a line
/// on standard error, both starting `[Tasker] `.
pub(crate) fn say(message: &str) {
    if tracing::enabled!(target: "tasker", tracing::Level::WARN) {
        tracing::warn!(target: "tasker", "[Tasker] {message}");
    } else {
        eprintln!("[Tasker] warning: {message}");
    }
}
