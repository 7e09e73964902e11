//! Custom telemetry adapters registered from a crate of their own, for tasker's integration tests.
//!
//! Two adapters are registered at link time, one with each form of `tasker::register_adapter!`:
//!
//! - [`AuditAdapter`], with `register_adapter!(AuditAdapter)`: its name is this module's path plus
//!   the type's name, [`AUDIT_ADAPTER`], and it is built with `Default`;
//! - [`MetricsAdapter`], with `register_adapter!("metrics-v2", MetricsAdapter::new)`: an explicit
//!   name, [`METRICS_ADAPTER`], and constructor.
//!
//! Both append every call they receive (events and trace/span hooks) to one process-wide
//! [`journal`], tagged with the adapter's name and the instance that received it, so a test can see
//! which adapter got what, in which order, and whether a reconfiguration built new instances.
//! Adapters receive the events of every thread of the process: filter the journal by something
//! unique to the test, such as a task id or a custom event name.
//!
//! ```
//! use tasker_test_adapters::{AUDIT_ADAPTER, METRICS_ADAPTER};
//! let registered = tasker::telemetry::registered_adapters();
//! assert!(registered.contains(&AUDIT_ADAPTER));
//! assert!(registered.contains(&METRICS_ADAPTER));
//! ```
#![deny(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tasker::telemetry::{Adapter, Event, SpanOutcome, StepRef, TaskRef};

/// The registered name of [`AuditAdapter`]: `module_path!()` + `"::AuditAdapter"`.
pub const AUDIT_ADAPTER: &str = "tasker_test_adapters::AuditAdapter";

/// The registered name of [`MetricsAdapter`], given explicitly.
pub const METRICS_ADAPTER: &str = "metrics-v2";

/// One call an adapter received.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `record(event)`, with an owned copy of the event.
    Record(Event<'static>),
    /// `start_trace(task)`.
    StartTrace(TaskRef),
    /// `end_trace(task, outcome)`.
    EndTrace(TaskRef, SpanOutcome),
    /// `start_span(step, task)`.
    StartSpan(StepRef, Option<TaskRef>),
    /// `end_span(step, task, outcome)`.
    EndSpan(StepRef, Option<TaskRef>, SpanOutcome),
}

impl Call {
    /// The task the call concerns, if any.
    pub fn task(&self) -> Option<&TaskRef> {
        match self {
            Call::Record(event) => event.task(),
            Call::StartTrace(task) | Call::EndTrace(task, _) => Some(task),
            Call::StartSpan(_, task) | Call::EndSpan(_, task, _) => task.as_ref(),
        }
    }

    /// The event of a `record` call.
    pub fn event(&self) -> Option<&Event<'static>> {
        match self {
            Call::Record(event) => Some(event),
            _ => None,
        }
    }

    /// A one-line description for assertions on sequences: `record task.start`,
    /// `start_trace <task>`, `end_trace <task> <outcome>`, `start_span <step>`,
    /// `end_span <step> <outcome>`.
    pub fn summary(&self) -> String {
        match self {
            Call::Record(event) => format!("record {}", event.name()),
            Call::StartTrace(task) => format!("start_trace {}", task.name),
            Call::EndTrace(task, outcome) => {
                format!("end_trace {} {}", task.name, outcome.as_str())
            }
            Call::StartSpan(step, _) => format!("start_span {}", step.name),
            Call::EndSpan(step, _, outcome) => {
                format!("end_span {} {}", step.name, outcome.as_str())
            }
        }
    }
}

/// A call as the journal keeps it: who received it, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The registered name of the adapter: [`AUDIT_ADAPTER`] or [`METRICS_ADAPTER`].
    pub adapter: &'static str,
    /// Which instance received it: every construction of an adapter gets a new number.
    pub instance: u64,
    /// The call.
    pub call: Call,
}

static JOURNAL: Mutex<Vec<Received>> = Mutex::new(Vec::new());
static INSTANCES: AtomicU64 = AtomicU64::new(1);

fn append(adapter: &'static str, instance: u64, call: Call) {
    JOURNAL
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Received {
            adapter,
            instance,
            call,
        });
}

/// Every call received so far by any instance of either adapter, in the order received.
///
/// Adapters receive events on the telemetry collector's thread, so it first waits until every
/// event recorded before the call was delivered.
pub fn journal() -> Vec<Received> {
    assert!(
        tasker::telemetry::flush_timeout(std::time::Duration::from_secs(30)),
        "the telemetry collector delivers every event within 30 s"
    );
    JOURNAL.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The calls of the journal that `keep` accepts, in order; filter by something unique to the
/// test, such as `|received| received.call.task().map(|task| task.id) == Some(task_id)`.
pub fn journal_where(keep: impl Fn(&Received) -> bool) -> Vec<Received> {
    journal()
        .into_iter()
        .filter(|received| keep(received))
        .collect()
}

/// The `record` calls of the journal whose event is named `name`, in order.
pub fn journal_for_event(name: &str) -> Vec<Received> {
    journal_where(|received| received.call.event().is_some_and(|e| e.name() == name))
}

/// Forgets every call received so far.
pub fn clear_journal() {
    JOURNAL.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// Forwards every `Adapter` method to the journal under `$name`.
macro_rules! journaling_adapter {
    ($type:ty, $name:expr) => {
        impl Adapter for $type {
            fn record(&self, event: &Event<'_>) {
                append(
                    $name,
                    self.instance,
                    Call::Record(event.clone().into_owned()),
                );
            }

            fn start_trace(&self, task: &TaskRef) {
                append($name, self.instance, Call::StartTrace(*task));
            }

            fn end_trace(&self, task: &TaskRef, outcome: SpanOutcome) {
                append($name, self.instance, Call::EndTrace(*task, outcome));
            }

            fn start_span(&self, step: &StepRef, task: Option<&TaskRef>) {
                append($name, self.instance, Call::StartSpan(*step, task.copied()));
            }

            fn end_span(&self, step: &StepRef, task: Option<&TaskRef>, outcome: SpanOutcome) {
                append(
                    $name,
                    self.instance,
                    Call::EndSpan(*step, task.copied(), outcome),
                );
            }
        }
    };
}

/// An audit trail: registered by type, so its name is [`AUDIT_ADAPTER`] and it is built with
/// `Default`.
#[derive(Debug)]
pub struct AuditAdapter {
    instance: u64,
}

impl Default for AuditAdapter {
    fn default() -> Self {
        Self {
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
        }
    }
}

journaling_adapter!(AuditAdapter, AUDIT_ADAPTER);
tasker::register_adapter!(AuditAdapter);

/// A metrics exporter: registered with an explicit name, [`METRICS_ADAPTER`], and constructor.
#[derive(Debug)]
pub struct MetricsAdapter {
    instance: u64,
}

impl MetricsAdapter {
    /// A new instance; the constructor named in the registration.
    pub fn new() -> Self {
        Self {
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl Default for MetricsAdapter {
    fn default() -> Self {
        Self::new()
    }
}

journaling_adapter!(MetricsAdapter, METRICS_ADAPTER);
tasker::register_adapter!("metrics-v2", MetricsAdapter::new);
