//! Test support: capture the events of your own test, even while other tests run in parallel,
//! and check every task's events against the lifecycle grammar.

use std::future::Future;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::bus::{self, Subscription};
use crate::context::{Context, ContextGuard, ScopeTag, WithContext};
use crate::event::Event;

mod lifecycle;

pub use lifecycle::{
    assert_valid_task, assert_valid_tasks, describe, validate_task, validate_tasks,
    LifecycleValidator, Rule, Violation,
};

/// Captures, in memory, the events fired inside its scope.
///
/// The scope is carried like the current task: work started inside [`Capture::run`],
/// [`Capture::wrap`] or [`Capture::enter`] — tasks, steps, spawned futures that carry the
/// context — is captured; events of other tests are not. A capture is an observer of the event
/// bus, so it works whether or not telemetry is enabled.
///
/// ```
/// use tasker::testing::Capture;
/// let capture = Capture::new();
/// capture.run(|| tasker::telemetry::record("app.hello", ()).unwrap());
/// tasker::telemetry::record("app.elsewhere", ()).unwrap(); // outside: not captured
/// capture.assert_names(&["app.hello"]);
/// ```
#[derive(Debug)]
pub struct Capture {
    scope: ScopeTag,
    events: Arc<Mutex<Vec<Event<'static>>>>,
    _subscription: Subscription,
}

impl Default for Capture {
    fn default() -> Self {
        Self::new()
    }
}

impl Capture {
    /// A new capture with a scope of its own.
    pub fn new() -> Self {
        let scope = ScopeTag::unique();
        let events: Arc<Mutex<Vec<Event<'static>>>> = Arc::default();
        let sink = events.clone();
        let subscription = bus::subscribe(move |event: &Event<'_>| {
            if Context::with_current(|context| context.scope() == scope) {
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(event.clone().into_owned());
            }
        });
        Self {
            scope,
            events,
            _subscription: subscription,
        }
    }

    /// Enters the capture's scope on this thread until the guard is dropped.
    pub fn enter(&self) -> ContextGuard {
        Context::current().with_scope(self.scope).enter()
    }

    /// Runs `f` inside the capture's scope.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        let _guard = self.enter();
        f()
    }

    /// Wraps `future` so it runs inside the capture's scope on every poll.
    pub fn wrap<F: Future>(&self, future: F) -> WithContext<F> {
        Context::current().with_scope(self.scope).wrap(future)
    }

    /// The scope tag, for code that builds contexts itself.
    pub fn scope(&self) -> ScopeTag {
        self.scope
    }

    /// Every event captured so far, in the order they were fired.
    pub fn events(&self) -> Vec<Event<'static>> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The names of the captured events, in order.
    pub fn names(&self) -> Vec<String> {
        self.events().iter().map(|e| e.name().to_owned()).collect()
    }

    /// The captured events as JSON, in order.
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.events().iter().map(Event::to_json).collect()
    }

    /// The events of one task run, in order.
    pub fn task_events(&self, task_id: Uuid) -> Vec<Event<'static>> {
        self.events()
            .into_iter()
            .filter(|event| event.task_id() == Some(task_id))
            .collect()
    }

    /// The ids of the task runs seen, in order of their first event.
    pub fn task_ids(&self) -> Vec<Uuid> {
        let mut ids = Vec::new();
        for id in self.events().iter().filter_map(Event::task_id) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    /// Forgets the events captured so far.
    pub fn clear(&self) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Panics, naming the first violation, unless every task captured has a valid lifecycle
    /// (see [`validate_tasks`]); returns how many tasks were checked.
    #[track_caller]
    pub fn assert_valid_tasks(&self) -> usize {
        assert_valid_tasks(&self.events())
    }

    /// Panics, with the first difference, unless the captured names are exactly `expected`.
    #[track_caller]
    pub fn assert_names(&self, expected: &[&str]) {
        assert_names(&self.events(), expected);
    }
}

/// Panics, showing the first difference and both sequences, unless the names of `events` are
/// exactly `expected`.
#[track_caller]
pub fn assert_names(events: &[Event<'_>], expected: &[&str]) {
    let actual: Vec<&str> = events.iter().map(Event::name).collect();
    if actual == expected {
        return;
    }
    let first_difference = actual
        .iter()
        .zip(expected)
        .position(|(a, e)| a != e)
        .unwrap_or(actual.len().min(expected.len()));
    panic!(
        "event sequences differ at index {first_difference}: got {:?}, expected {:?}\n  \
         actual:   {actual:?}\n  expected: {expected:?}",
        actual.get(first_difference),
        expected.get(first_difference),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_only_its_own_scope() {
        let mine = Capture::new();
        let other = Capture::new();
        mine.run(|| crate::record("app.mine", ()).unwrap());
        other.run(|| crate::record("app.other", ()).unwrap());
        mine.assert_names(&["app.mine"]);
        other.assert_names(&["app.other"]);
    }

    #[test]
    #[should_panic(
        expected = "event sequences differ at index 1: got Some(\"app.b\"), expected Some(\"app.c\")"
    )]
    fn mismatch_names_the_first_difference() {
        let capture = Capture::new();
        capture.run(|| {
            crate::record("app.a", ()).unwrap();
            crate::record("app.b", ()).unwrap();
        });
        capture.assert_names(&["app.a", "app.c"]);
    }

    #[test]
    fn payload_is_masked_and_carried() {
        let capture = Capture::new();
        capture.run(|| {
            crate::record(
                "app.login",
                serde_json::json!({"user": "ada", "password": "hunter2"}),
            )
            .unwrap()
        });
        let json = capture.json();
        assert_eq!(json[0]["user"], "ada");
        assert_eq!(json[0]["password"], "[FILTERED]");
        assert!(json[0]["task_id"].is_null());
    }
}
