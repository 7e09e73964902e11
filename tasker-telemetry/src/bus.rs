//! The lifecycle-event bus: every event goes through [`fire`] to every observer.
//!
//! Observers subscribe at run time ([`subscribe`]) or at link time ([`register_observer!`]);
//! telemetry (the adapters of the configuration) is one observer among them. When nobody listens,
//! [`listening`] is a single relaxed atomic load and callers skip building events at all.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;

use crate::context::TaskRef;
use crate::event::Event;
use crate::isolate::Isolated;

/// Receives every event fired on the bus.
///
/// Observers run synchronously on the thread that fires the event, inside the task's context, so
/// they must be quick. A panicking observer is caught, counted and reported once; it never
/// affects the code that fired the event.
///
/// ```
/// use tasker::{events, telemetry::Event};
/// let subscription = events::subscribe(|event: &Event<'_>| println!("{}", event.name()));
/// drop(subscription); // unsubscribes
/// ```
pub trait Observer: Send + Sync + 'static {
    /// Called once for every event.
    fn on_event(&self, event: &Event<'_>);

    /// Called when a worker stopped running `task` without ending it: it lost the task's lease
    /// (the lease expired and another worker may have taken the task over), so neither
    /// `task.complete` nor `task.error` follows from this run; the delivery that finishes the
    /// task emits its own. Called inside the task's context, once per abandoned run. By default,
    /// nothing.
    fn on_task_abandoned(&self, task: &TaskRef) {
        let _ = task;
    }
}

impl<F> Observer for F
where
    F: Fn(&Event<'_>) + Send + Sync + 'static,
{
    fn on_event(&self, event: &Event<'_>) {
        self(event)
    }
}

/// An observer registered at link time by [`register_observer!`](crate::register_observer).
#[derive(Debug)]
pub struct ObserverRegistration {
    name: &'static str,
    constructor: fn() -> Arc<dyn Observer>,
}

impl ObserverRegistration {
    /// A registration of `constructor` under `name`; used by [`register_observer!`](crate::register_observer).
    pub const fn new(name: &'static str, constructor: fn() -> Arc<dyn Observer>) -> Self {
        Self { name, constructor }
    }

    /// The observer's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

inventory::collect!(ObserverRegistration);

impl std::fmt::Debug for dyn Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn Observer")
    }
}

/// Registers an observer at link time, so it sees every event without code at startup.
///
/// ```
/// #[derive(Default)]
/// struct Counter;
/// impl tasker::events::Observer for Counter {
///     fn on_event(&self, _event: &tasker::telemetry::Event<'_>) {}
/// }
/// tasker::register_observer!(Counter);                     // `module_path!()::Counter`, built with `Default`
/// tasker::register_observer!("counter-v2", Counter::default); // name and constructor
/// ```
#[macro_export]
macro_rules! register_observer {
    ($name:expr, $constructor:expr $(,)?) => {
        $crate::__private::inventory::submit! {
            $crate::events::ObserverRegistration::new($name, || {
                ::std::sync::Arc::new(($constructor)()) as ::std::sync::Arc<dyn $crate::events::Observer>
            })
        }
    };
    ($($segment:ident)::+) => {
        $crate::register_observer!(
            ::core::concat!(::core::module_path!(), "::", $crate::__last_segment!($($segment)::+)),
            <$($segment)::+ as ::core::default::Default>::default
        );
    };
}

struct Entry {
    id: u64,
    observer: Arc<dyn Observer>,
    isolated: Isolated,
}

const UNINITIALIZED: u8 = 0;
const SILENT: u8 = 1;
const LISTENING: u8 = 2;
/// The slot of the telemetry observer, replaced by `configure`.
const TELEMETRY_ID: u64 = 0;

static STATE: AtomicU8 = AtomicU8::new(UNINITIALIZED);
static OBSERVERS: ArcSwapOption<Vec<Entry>> = ArcSwapOption::const_empty();
/// Serializes changes of the observer list; readers never take it.
static WRITER: Mutex<()> = Mutex::new(());
static NEXT_ID: AtomicU64 = AtomicU64::new(TELEMETRY_ID + 1);

/// Whether any observer listens. Callers check this before building an event.
#[inline]
pub fn listening() -> bool {
    match STATE.load(Ordering::Relaxed) {
        LISTENING => true,
        SILENT => false,
        _ => initialize(),
    }
}

/// Sends `event` to every observer, in registration order (link-time observers first, then
/// telemetry, then run-time subscriptions).
#[inline]
pub fn fire(event: &Event<'_>) {
    if listening() {
        deliver(event);
    }
}

/// Tells every observer that a worker abandoned its run of `task` (see
/// [`Observer::on_task_abandoned`]); the runtime calls it inside the task's context.
pub fn abandon_task(task: &TaskRef) {
    if !listening() {
        return;
    }
    if let Some(entries) = &*OBSERVERS.load() {
        for entry in entries.iter() {
            entry
                .isolated
                .call(|| entry.observer.on_task_abandoned(task));
        }
    }
}

fn deliver(event: &Event<'_>) {
    if let Some(entries) = &*OBSERVERS.load() {
        for entry in entries.iter() {
            entry.isolated.call(|| entry.observer.on_event(event));
        }
    }
}

/// Subscribes `observer` until the returned [`Subscription`] is dropped.
pub fn subscribe(observer: impl Observer) -> Subscription {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let label = format!("observer {}", std::any::type_name_of_val(&observer));
    update(|entries| {
        entries.push(Entry {
            id,
            observer: Arc::new(observer),
            isolated: Isolated::new(label),
        })
    });
    Subscription { id }
}

/// Keeps an observer subscribed; dropping it unsubscribes.
#[must_use = "dropping the Subscription unsubscribes the observer at once"]
#[derive(Debug)]
pub struct Subscription {
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let id = self.id;
        update(|entries| entries.retain(|entry| entry.id != id));
    }
}

/// Installs (or with `None` removes) the telemetry observer; returns the one it replaced, for
/// the caller to drop outside its locks (dropping it drains the adapters it routed to).
pub(crate) fn set_telemetry(observer: Option<Arc<dyn Observer>>) -> Option<Arc<dyn Observer>> {
    let mut replaced = None;
    update(|entries| {
        let linked = entries
            .iter()
            .take_while(|entry| entry.id > u64::MAX / 2)
            .count();
        if let Some(old) = entries.iter().find(|entry| entry.id == TELEMETRY_ID) {
            replaced = Some(old.observer.clone());
        }
        entries.retain(|entry| entry.id != TELEMETRY_ID);
        if let Some(observer) = observer {
            entries.insert(
                linked,
                Entry {
                    id: TELEMETRY_ID,
                    observer,
                    isolated: Isolated::new("observer telemetry".into()),
                },
            );
        }
    });
    replaced
}

fn update(change: impl FnOnce(&mut Vec<Entry>)) {
    listening();
    let _writer = WRITER.lock().unwrap_or_else(|e| e.into_inner());
    let current = OBSERVERS.load_full();
    let mut entries: Vec<Entry> = current
        .as_deref()
        .map(|entries| entries.iter().map(Entry::share).collect())
        .unwrap_or_default();
    change(&mut entries);
    let state = if entries.is_empty() {
        SILENT
    } else {
        LISTENING
    };
    OBSERVERS.store(Some(Arc::new(entries)));
    STATE.store(state, Ordering::Relaxed);
}

impl Entry {
    fn share(&self) -> Entry {
        Entry {
            id: self.id,
            observer: self.observer.clone(),
            isolated: self.isolated.clone(),
        }
    }
}

#[cold]
fn initialize() -> bool {
    let _writer = WRITER.lock().unwrap_or_else(|e| e.into_inner());
    if STATE.load(Ordering::Relaxed) != UNINITIALIZED {
        drop(_writer);
        return listening();
    }
    // Link-time observers get ids from the top of the range, so they stay first.
    // A constructor that panics is reported like a panicking observer and left out.
    let entries: Vec<Entry> = inventory::iter::<ObserverRegistration>
        .into_iter()
        .enumerate()
        .filter_map(|(index, registration)| {
            let isolated = Isolated::new(format!("observer {}", registration.name));
            let mut observer = None;
            isolated.call(|| observer = Some((registration.constructor)()));
            Some(Entry {
                id: u64::MAX - index as u64,
                observer: observer?,
                isolated,
            })
        })
        .collect();
    let listening = !entries.is_empty();
    OBSERVERS.store(Some(Arc::new(entries)));
    STATE.store(
        if listening { LISTENING } else { SILENT },
        Ordering::Relaxed,
    );
    listening
}

/// The names of the observers registered at link time.
pub fn registered_observers() -> Vec<Cow<'static, str>> {
    inventory::iter::<ObserverRegistration>
        .into_iter()
        .map(|registration| Cow::Borrowed(registration.name))
        .collect()
}
