//! The lifecycle-event bus: run-time subscriptions, link-time observers, isolation of panicking
//! observers, and the event catalog as users see it through the facade.
//!
//! No test here configures telemetry: observers see the events of every thread, so each test
//! filters by event names (`bus.<test>.*`) or task names of its own.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::json;
use tasker::events::{self, Observer};
use tasker::telemetry::{Details, Event, EventKind};
use tasker::testing::Capture;

/// `(observer, event name)` in the order the link-time observers and the ordering test's
/// subscription saw `bus.order.*` events.
static DELIVERIES: Mutex<Vec<(&'static str, String)>> = Mutex::new(Vec::new());
/// `bus.linked.*` events as each link-time observer saw them.
static LINKED: Mutex<Vec<(&'static str, String)>> = Mutex::new(Vec::new());

fn push(sink: &Mutex<Vec<(&'static str, String)>>, observer: &'static str, event: &Event<'_>) {
    sink.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((observer, event.name().to_owned()));
}

fn entries(
    sink: &Mutex<Vec<(&'static str, String)>>,
    observer: &str,
) -> Vec<(&'static str, String)> {
    sink.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|(name, _)| *name == observer)
        .cloned()
        .collect()
}

/// Registered by type: named `event_bus::TypedObserver`, built with `Default`.
#[derive(Default)]
struct TypedObserver;

impl Observer for TypedObserver {
    fn on_event(&self, event: &Event<'_>) {
        if event.name().starts_with("bus.linked.") {
            push(&LINKED, "typed", event);
        }
        if event.name().starts_with("bus.order.") {
            push(&DELIVERIES, "typed", event);
        }
    }
}

tasker::register_observer!(TypedObserver);

/// Registered with an explicit name and constructor.
struct NamedObserver {
    label: &'static str,
}

impl NamedObserver {
    fn new() -> Self {
        Self { label: "named" }
    }
}

impl Observer for NamedObserver {
    fn on_event(&self, event: &Event<'_>) {
        if event.name().starts_with("bus.linked.") {
            push(&LINKED, self.label, event);
        }
        if event.name().starts_with("bus.order.") {
            push(&DELIVERIES, self.label, event);
        }
    }
}

tasker::register_observer!("event-bus-named", NamedObserver::new);

/// A link-time observer that panics on `bus.panic.*` events and the panic test's `task.complete`.
#[derive(Default)]
struct PanickingLinkedObserver;

impl Observer for PanickingLinkedObserver {
    fn on_event(&self, event: &Event<'_>) {
        if panics_on(event) {
            panic!("linked observer refuses {}", event.name());
        }
    }
}

tasker::register_observer!("event-bus-panicking", PanickingLinkedObserver::default);

/// A run-time observer that panics on the same events.
struct PanickingObserver;

impl Observer for PanickingObserver {
    fn on_event(&self, event: &Event<'_>) {
        if panics_on(event) {
            panic!("subscribed observer refuses {}", event.name());
        }
    }
}

fn panics_on(event: &Event<'_>) -> bool {
    event.name().starts_with("bus.panic.")
        || (event.name() == "task.complete" && event.task_name() == Some("bus_panicking_order"))
}

/// A subscription that keeps the events `keep` accepts.
fn collect(
    keep: impl Fn(&Event<'_>) -> bool + Send + Sync + 'static,
) -> (events::Subscription, Arc<Mutex<Vec<Event<'static>>>>) {
    let sink: Arc<Mutex<Vec<Event<'static>>>> = Arc::default();
    let kept = sink.clone();
    let subscription = events::subscribe(move |event: &Event<'_>| {
        if keep(event) {
            kept.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(event.clone().into_owned());
        }
    });
    (subscription, sink)
}

fn names_of(sink: &Mutex<Vec<Event<'static>>>) -> Vec<String> {
    sink.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|event| event.name().to_owned())
        .collect()
}

fn record(name: &str) {
    tasker::telemetry::record(name, ()).expect("a valid custom event");
}

#[tasker::step]
fn pack(items: u32) -> Result<u32, std::io::Error> {
    tasker::telemetry::record("bus.subscribe.packing", json!({ "items": items }))
        .expect("a valid custom event");
    Ok(items + 1)
}

#[tasker::task(name = "bus_subscribed_order", version = "1.0.0")]
fn subscribed_order(items: u32) -> Result<u32, std::io::Error> {
    pack(items)
}

#[tasker::step]
fn weigh(items: u32) -> Result<u32, std::io::Error> {
    tasker::telemetry::record("bus.panic.inside_step", ()).expect("observers never fail a record");
    Ok(items * 10)
}

#[tasker::task(name = "bus_panicking_order", version = "1.0.0")]
fn panicking_order(items: u32) -> Result<u32, std::io::Error> {
    weigh(items)
}

#[tasker::step]
fn label(items: u32) -> String {
    format!("{items} items")
}

#[tasker::task(name = "bus_kinds_order", version = "1.0.0")]
fn kinds_order(items: u32) -> String {
    let label = label(items);
    tasker::telemetry::record("bus.kinds.labelled", ()).expect("a valid custom event");
    label
}

#[test]
fn subscription_receives_every_event_in_firing_order_until_dropped() {
    let (subscription, received) = collect(|event| {
        event.name().starts_with("bus.subscribe.")
            || event.task_name() == Some("bus_subscribed_order")
    });
    let capture = Capture::new();

    let result = capture.run(|| {
        record("bus.subscribe.first");
        let result = subscribed_order(4);
        record("bus.subscribe.last");
        result
    });
    drop(subscription);
    record("bus.subscribe.after_drop");
    subscribed_order(5).expect("the task succeeds");

    assert_eq!(result.expect("the task succeeds"), 5);
    assert_eq!(
        names_of(&received),
        [
            "bus.subscribe.first",
            "task.initialize",
            "task.start",
            "task.handle",
            "step.handle",
            "bus.subscribe.packing",
            "step.complete",
            "task.finalize",
            "task.complete",
            "bus.subscribe.last",
        ]
    );
    // The subscription saw the very events the capture saw, equal in every field.
    assert_eq!(
        *received.lock().unwrap_or_else(PoisonError::into_inner),
        capture.events()
    );
}

#[test]
fn fire_delivers_a_hand_built_event_to_subscriptions() {
    let (_subscription, received) = collect(|event| event.name() == "bus.fire.direct");
    let mut payload = serde_json::Map::new();
    payload.insert("order_id".into(), json!(42));
    let event = Event::new(
        None,
        None,
        Details::Custom {
            name: Cow::Borrowed("bus.fire.direct"),
            payload: Cow::Borrowed(&payload),
        },
    );

    // Firing is the runtime's (hidden): `record` is the public way, and refuses reserved names.
    tasker::__private::fire(&event);

    let received = received.lock().unwrap_or_else(PoisonError::into_inner);
    assert_eq!(*received, [event.clone().into_owned()]);
    assert_eq!(received[0].payload(), Some(&payload));
    assert_eq!(received[0].kind(), None);
}

#[test]
fn linked_observers_of_both_forms_receive_events() {
    record("bus.linked.one");
    record("bus.linked.two");

    let expected = |observer: &'static str| {
        vec![
            (observer, "bus.linked.one".to_owned()),
            (observer, "bus.linked.two".to_owned()),
        ]
    };
    assert_eq!(entries(&LINKED, "typed"), expected("typed"));
    assert_eq!(entries(&LINKED, "named"), expected("named"));
}

#[test]
fn linked_observers_are_listed_by_name() {
    let mut names: Vec<String> = events::registered_observers()
        .into_iter()
        .map(Cow::into_owned)
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "event-bus-named",
            "event-bus-panicking",
            "event_bus::TypedObserver"
        ]
    );
}

#[test]
fn linked_observers_see_each_event_before_run_time_subscriptions() {
    let _subscription = events::subscribe(|event: &Event<'_>| {
        if event.name().starts_with("bus.order.") {
            push(&DELIVERIES, "subscribed", event);
        }
    });

    record("bus.order.first");
    record("bus.order.second");

    let deliveries = DELIVERIES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    assert_eq!(deliveries.len(), 6, "{deliveries:?}");
    for (index, event) in ["bus.order.first", "bus.order.second"].iter().enumerate() {
        let round = &deliveries[index * 3..index * 3 + 3];
        assert!(round.iter().all(|(_, name)| name == event), "{round:?}");
        let mut linked = [round[0].0, round[1].0];
        linked.sort_unstable();
        assert_eq!(linked, ["named", "typed"]);
        assert_eq!(round[2].0, "subscribed");
    }
}

#[test]
fn panicking_observer_is_caught_counted_once_per_panic_and_isolated() {
    let subscribed_label = "observer event_bus::PanickingObserver";
    let linked_label = "observer event-bus-panicking";
    let before = events::panic_counts();
    let _panicking = events::subscribe(PanickingObserver);
    let (_after, after) = collect(|event| event.name().starts_with("bus.panic."));
    let capture = Capture::new();

    let (first, result, second) = capture.run(|| {
        (
            tasker::telemetry::record("bus.panic.first", ()),
            panicking_order(3),
            tasker::telemetry::record("bus.panic.last", ()),
        )
    });

    // The code that fired the events is unaffected.
    assert!(first.is_ok());
    assert!(second.is_ok());
    assert_eq!(result.expect("the task succeeds"), 30);
    capture.assert_names(&[
        "bus.panic.first",
        "task.initialize",
        "task.start",
        "task.handle",
        "step.handle",
        "bus.panic.inside_step",
        "step.complete",
        "task.finalize",
        "task.complete",
        "bus.panic.last",
    ]);
    // Observers after the panicking ones still receive every event.
    assert_eq!(
        names_of(&after),
        ["bus.panic.first", "bus.panic.inside_step", "bus.panic.last"]
    );
    // Four panics each: three custom events and the task's `task.complete`.
    let counts = events::panic_counts();
    assert_eq!(
        counts.get(subscribed_label) - before.get(subscribed_label),
        4
    );
    assert_eq!(counts.get(linked_label) - before.get(linked_label), 4);
}

#[test]
fn event_kind_catalog_lists_every_lifecycle_event_in_order() {
    let names: Vec<&str> = EventKind::ALL.iter().map(|kind| kind.name()).collect();
    assert_eq!(
        names,
        [
            "task.initialize",
            "task.enqueue",
            "task.start",
            "task.handle",
            "task.retry",
            "task.backoff",
            "task.finalize",
            "task.complete",
            "task.error",
            "step.find_viable",
            "step.handle",
            "step.complete",
            "step.error",
            "step.retry",
            "step.backoff",
            "step.skip",
            "step.max_retries_reached",
        ]
    );
}

#[test]
fn event_kind_round_trips_through_display_and_from_str() {
    for kind in EventKind::ALL {
        let name = kind.to_string();
        assert_eq!(name, kind.name());
        assert_eq!(name.parse::<EventKind>(), Ok(kind));
    }
    assert_eq!("step.retry".parse(), Ok(EventKind::StepRetry));
}

#[test]
fn unknown_event_kind_lists_the_valid_names() {
    let error = "task.explode"
        .parse::<EventKind>()
        .expect_err("not in the catalog");
    assert_eq!(error.name, "task.explode");
    assert_eq!(
        error.to_string(),
        "unknown lifecycle event `task.explode`; valid names are: task.initialize, task.enqueue, \
         task.start, task.handle, task.retry, task.backoff, task.finalize, task.complete, \
         task.error, step.find_viable, \
         step.handle, step.complete, step.error, step.retry, step.backoff, step.skip, \
         step.max_retries_reached"
    );
    // Names are exact: no case folding, no surrounding spaces.
    assert!("Task.Start".parse::<EventKind>().is_err());
    assert!(" task.start".parse::<EventKind>().is_err());
}

#[test]
fn fired_lifecycle_events_report_their_kind() {
    let capture = Capture::new();
    assert_eq!(capture.run(|| kinds_order(2)), "2 items");
    let kinds: Vec<Option<EventKind>> = capture.events().iter().map(Event::kind).collect();
    assert_eq!(
        kinds,
        [
            Some(EventKind::TaskInitialize),
            Some(EventKind::TaskStart),
            Some(EventKind::TaskHandle),
            Some(EventKind::StepHandle),
            Some(EventKind::StepComplete),
            None, // bus.kinds.labelled, a custom event
            Some(EventKind::TaskFinalize),
            Some(EventKind::TaskComplete),
        ]
    );
}
