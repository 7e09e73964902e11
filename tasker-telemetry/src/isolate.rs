//! Isolation of observer and adapter code: a panic is caught, counted, and reported once.

use std::any::Any;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The message of a panic payload: the `&str` or `String` given to `panic!`, else a placeholder.
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(message) = payload.downcast_ref::<&'static str>() {
        message
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message
    } else {
        "Box<dyn Any> (a panic without a message)"
    }
}

/// How many times the observers and adapters of this process have panicked, by name.
///
/// Counts survive reconfiguration: a name keeps its count when its adapter is built again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PanicCounts {
    /// `"observer <name>"` or `"adapter <name>"` → panics caught.
    pub by_name: BTreeMap<String, u64>,
}

impl PanicCounts {
    /// Panics caught in the component named `name` (such as `"adapter my_app::Audit"`).
    pub fn get(&self, name: &str) -> u64 {
        self.by_name.get(name).copied().unwrap_or(0)
    }

    /// Panics caught in all components.
    pub fn total(&self) -> u64 {
        self.by_name.values().sum()
    }
}

fn counters() -> &'static Mutex<BTreeMap<String, Arc<AtomicU64>>> {
    static COUNTERS: OnceLock<Mutex<BTreeMap<String, Arc<AtomicU64>>>> = OnceLock::new();
    COUNTERS.get_or_init(Default::default)
}

/// The panics caught so far in observers and adapters.
pub fn panic_counts() -> PanicCounts {
    let counters = counters().lock().unwrap_or_else(|e| e.into_inner());
    PanicCounts {
        by_name: counters
            .iter()
            .map(|(name, count)| (name.clone(), count.load(Ordering::Relaxed)))
            .collect(),
    }
}

/// A named component whose calls are isolated.
#[derive(Debug, Clone)]
pub(crate) struct Isolated {
    label: String,
    panics: Arc<AtomicU64>,
}

impl Isolated {
    /// `label` names the component in reports, such as `"adapter my_app::Audit"`.
    pub(crate) fn new(label: String) -> Self {
        let panics = counters()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(label.clone())
            .or_default()
            .clone();
        Self { label, panics }
    }

    /// Runs `f`; a panic is caught, counted, and reported through the logger the first time.
    #[inline]
    pub(crate) fn call(&self, f: impl FnOnce()) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
            self.caught(&*payload);
        }
    }

    #[cold]
    fn caught(&self, payload: &(dyn Any + Send)) {
        if self.panics.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::error!(
                target: "tasker",
                component = %self.label,
                panic = panic_message(payload),
                "[Tasker] {} panicked and was isolated: {}; later panics of it are counted, not logged (tasker::events::panic_counts)",
                self.label,
                panic_message(payload),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_is_caught_and_counted() {
        let isolated = Isolated::new("adapter isolate::tests::counted".into());
        isolated.call(|| panic!("first"));
        isolated.call(|| panic!("second {}", 2));
        isolated.call(|| {});
        assert_eq!(panic_counts().get("adapter isolate::tests::counted"), 2);
    }

    #[test]
    fn panic_messages_are_read_from_str_and_string_payloads() {
        let payload = catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(panic_message(&*payload), "static");
        let payload = catch_unwind(|| panic!("formatted {}", 1)).unwrap_err();
        assert_eq!(panic_message(&*payload), "formatted 1");
    }
}
