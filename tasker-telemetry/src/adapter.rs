//! The `Adapter` trait and the link-time registry of custom adapters.

use crate::context::{StepRef, TaskRef};
use crate::event::Event;

/// How a task or step ended, as the span hooks of an [`Adapter`] see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpanOutcome {
    /// It succeeded.
    Success,
    /// Its final attempt failed (error, panic).
    Failure,
    /// It was skipped and did not run.
    Skip,
    /// Its future was dropped before it finished.
    Cancellation,
    /// A task run by a worker that lost the task's lease (it expired and the task may be
    /// running elsewhere), or that handed a failed attempt back to the queue for the next one
    /// (`task.backoff` of a queued task): the worker reports no end; another delivery of the
    /// task ends it. Only [`Adapter::end_trace`] receives it.
    Abandoned,
}

impl SpanOutcome {
    /// `success`, `failure`, `skip` or `cancellation` (the values of `tasker.step.result`), or
    /// `abandoned` (a value of `tasker.task.result`).
    pub fn as_str(self) -> &'static str {
        match self {
            SpanOutcome::Success => "success",
            SpanOutcome::Failure => "failure",
            SpanOutcome::Skip => "skip",
            SpanOutcome::Cancellation => "cancellation",
            SpanOutcome::Abandoned => "abandoned",
        }
    }
}

/// A telemetry destination: receives every event while telemetry is enabled and the adapter is
/// configured.
///
/// `record` is the one required method. The trace and span hooks mirror Tasker's `start_trace`,
/// `end_trace` and `add_span`; since many tasks run at once there is no "current trace" per
/// adapter, so each hook receives the identity of the task or step it concerns. They are derived
/// from the events: `start_trace` just before `task.start` is recorded, `end_trace` just after
/// `task.complete`/`task.error` (or, with [`SpanOutcome::Abandoned`], when a worker that lost
/// the task's lease stopped running it, without either); `start_span` before a step's first `step.handle` (or its
/// `step.skip`), `end_span` after its last event. Adapters are called synchronously on the task's
/// thread and must be quick; a panic is isolated and counted.
///
/// ```
/// use tasker::telemetry::{Adapter, Event};
///
/// #[derive(Default)]
/// pub struct AuditAdapter;
///
/// impl Adapter for AuditAdapter {
///     fn record(&self, event: &Event<'_>) {
///         println!("{} {}", event.name(), event.to_json());
///     }
/// }
/// tasker::register_adapter!(AuditAdapter);
/// ```
pub trait Adapter: Send + Sync + 'static {
    /// Called for every event.
    fn record(&self, event: &Event<'_>);

    /// Whether this adapter is called on the thread that fires each event, inside the task's
    /// context, instead of on the collector thread. Asked once, when the configuration is
    /// built. Default `false`: a synchronous adapter adds its whole cost to every step call.
    fn synchronous(&self) -> bool {
        false
    }

    /// Hands on what the adapter holds (a queue of its own, an exporter's batch), waiting at
    /// most `timeout`; `true` when nothing is left. [`flush`](crate::flush) calls it after the
    /// collector delivered every earlier event. Default: nothing to do.
    fn flush(&self, timeout: std::time::Duration) -> bool {
        let _ = timeout;
        true
    }

    /// A task run begins (before `task.start` is recorded).
    fn start_trace(&self, task: &TaskRef) {
        let _ = task;
    }

    /// A task run ended (after `task.complete` or `task.error` is recorded), or was abandoned by
    /// a worker that lost its lease ([`SpanOutcome::Abandoned`], with no terminal event).
    fn end_trace(&self, task: &TaskRef, outcome: SpanOutcome) {
        let _ = (task, outcome);
    }

    /// A step call begins (before its first event is recorded); `task` is `None` outside a task.
    fn start_span(&self, step: &StepRef, task: Option<&TaskRef>) {
        let _ = (step, task);
    }

    /// A step call ended, all attempts included (after its last event is recorded).
    fn end_span(&self, step: &StepRef, task: Option<&TaskRef>, outcome: SpanOutcome) {
        let _ = (step, task, outcome);
    }
}

/// A custom adapter registered at link time by [`register_adapter!`](crate::register_adapter).
#[derive(Debug)]
pub struct AdapterRegistration {
    name: &'static str,
    constructor: fn() -> Box<dyn Adapter>,
}

impl AdapterRegistration {
    /// A registration of `constructor` under `name`; used by [`register_adapter!`](crate::register_adapter).
    pub const fn new(name: &'static str, constructor: fn() -> Box<dyn Adapter>) -> Self {
        Self { name, constructor }
    }

    /// The name that `telemetry_adapter_classes` refers to.
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub(crate) fn construct(&self) -> Box<dyn Adapter> {
        (self.constructor)()
    }
}

impl std::fmt::Debug for dyn Adapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn Adapter")
    }
}

inventory::collect!(AdapterRegistration);

/// The names of every custom adapter linked into this program, sorted.
pub fn registered_adapters() -> Vec<&'static str> {
    let mut names: Vec<_> = inventory::iter::<AdapterRegistration>
        .into_iter()
        .map(AdapterRegistration::name)
        .collect();
    names.sort_unstable();
    names
}

pub(crate) fn find_adapter(name: &str) -> Option<&'static AdapterRegistration> {
    inventory::iter::<AdapterRegistration>
        .into_iter()
        .find(|registration| registration.name == name)
}

/// Registers a custom adapter at link time, so `telemetry_adapter_classes` can name it.
///
/// Two forms:
/// - `register_adapter!(Type)`: the name is `module_path!()` + `"::"` + the type's name, and the
///   adapter is built with `Default`;
/// - `register_adapter!("name", constructor)`: an explicit name and a `fn() -> Type`.
///
/// A crate that is a dependency but never referenced is not linked, and its adapters are missing;
/// reference it with [`use_adapters!`](crate::use_adapters).
///
/// ```
/// #[derive(Default)]
/// pub struct AuditAdapter;
/// impl tasker::telemetry::Adapter for AuditAdapter {
///     fn record(&self, _event: &tasker::telemetry::Event<'_>) {}
/// }
/// tasker::register_adapter!(AuditAdapter);
/// tasker::register_adapter!("audit-v2", AuditAdapter::default);
/// assert!(tasker::telemetry::registered_adapters().contains(&"audit-v2"));
/// ```
#[macro_export]
macro_rules! register_adapter {
    ($name:literal, $constructor:expr $(,)?) => {
        $crate::__private::inventory::submit! {
            $crate::AdapterRegistration::new($name, || {
                ::std::boxed::Box::new(($constructor)()) as ::std::boxed::Box<dyn $crate::Adapter>
            })
        }
    };
    ($($segment:ident)::+) => {
        $crate::register_adapter!(
            @named ::core::concat!(::core::module_path!(), "::", $crate::__last_segment!($($segment)::+)),
            <$($segment)::+ as ::core::default::Default>::default
        );
    };
    (@named $name:expr, $constructor:expr) => {
        $crate::__private::inventory::submit! {
            $crate::AdapterRegistration::new($name, || {
                ::std::boxed::Box::new(($constructor)()) as ::std::boxed::Box<dyn $crate::Adapter>
            })
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __last_segment {
    ($last:ident) => {
        ::core::stringify!($last)
    };
    ($first:ident :: $($rest:ident)::+) => {
        $crate::__last_segment!($($rest)::+)
    };
}

/// Links the adapters (and observers) of crates that are dependencies but never referenced.
///
/// The linker drops a crate nobody refers to, link-time registrations included; this macro refers
/// to each crate named.
///
/// ```ignore
/// tasker::use_adapters!(my_audit_adapters, my_metrics_adapters);
/// ```
#[macro_export]
macro_rules! use_adapters {
    ($($krate:ident),+ $(,)?) => {
        $(
            #[allow(unused_imports)]
            use $krate as _;
        )+
    };
}
