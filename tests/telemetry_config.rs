//! Configuration of telemetry: which adapters receive events, in which order, with which hooks;
//! every configuration error; the environment; isolation of a panicking adapter.
//!
//! Configuration is process-global, so every test that configures (or fires events that an
//! adapter could see) holds [`LOCK`] through [`exclusive`] and restores the defaults when it ends.
//! Adapters receive the events of every thread, so assertions on the adapters' journal filter by
//! the task id of the test's own run (taken from a `Capture`) or by a custom event name.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context as PollContext, Poll, Waker};

use serde_json::json;
use tasker::telemetry::{Adapter, Event, SpanOutcome};
use tasker::testing::Capture;
use tasker::{ConfigError, Configuration, TelemetryAdapter};
use tasker_test_adapters::{journal_where, Call, Received, AUDIT_ADAPTER, METRICS_ADAPTER};

// The adapter crate is also referenced by name below; this line is what a program that only
// names its classes in configuration needs (see `default_logger.rs` for a binary that relies
// on it).
tasker::use_adapters!(tasker_test_adapters);

static LOCK: Mutex<()> = Mutex::new(());

/// Holds [`LOCK`]; restores the default configuration when dropped, even when the test fails.
struct Exclusive {
    _lock: MutexGuard<'static, ()>,
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        tasker::configure(|config| *config = Configuration::default())
            .expect("the default configuration is valid");
    }
}

fn exclusive() -> Exclusive {
    let lock = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    Exclusive { _lock: lock }
}

/// Takes the lock and applies `change` to the default configuration, with telemetry on.
fn configured(change: impl FnOnce(&mut Configuration)) -> Exclusive {
    let guard = exclusive();
    tasker::configure(|config| {
        *config = Configuration::default();
        config.enable_telemetry = true;
        change(config);
    })
    .expect("the test's configuration is valid");
    guard
}

// ---------------------------------------------------------------------------------------------
// Tasks and steps under test.

#[derive(Debug, Clone, PartialEq)]
struct StockError(&'static str);

impl fmt::Display for StockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for StockError {}

#[tasker::step]
fn reserve(quantity: u32) -> Result<u32, StockError> {
    Ok(quantity * 2)
}

#[tasker::task(name = "config_order", version = "1.0.0")]
fn order(quantity: u32) -> Result<u32, StockError> {
    let reserved = reserve(quantity)?;
    tasker::telemetry::record("app.order_reserved", json!({ "reserved": reserved }))
        .expect("a valid custom event");
    Ok(reserved)
}

fn no_gift_wrap(gift: &bool) -> bool {
    !*gift
}

#[tasker::step(skip_if = no_gift_wrap)]
fn gift_wrap(gift: bool) -> String {
    format!("wrapped: {gift}")
}

#[tasker::step(max_attempts = 2, backoff_ms = 1, jitter = 0.0)]
fn flaky_charge(failures_left: &AtomicU32) -> Result<&'static str, StockError> {
    if failures_left.fetch_sub(1, Ordering::Relaxed) > 0 {
        Err(StockError("card network timeout"))
    } else {
        Ok("charged")
    }
}

#[tasker::step(max_attempts = 2, backoff_ms = 1, jitter = 0.0)]
fn ship() -> Result<(), StockError> {
    Err(StockError("no courier available"))
}

#[tasker::task(name = "config_outcomes", version = "2.0.0")]
fn outcomes() -> Result<(), StockError> {
    assert_eq!(
        gift_wrap(false),
        "",
        "a skipped step returns Default::default()"
    );
    let failures_left = AtomicU32::new(1);
    flaky_charge(&failures_left)?;
    ship()
}

/// Never ready: lets a test drop a task in the middle of a step.
struct Stalled;

impl Future for Stalled {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, _cx: &mut PollContext<'_>) -> Poll<()> {
        Poll::Pending
    }
}

#[tasker::step(max_attempts = 1)]
async fn await_courier() -> Result<(), StockError> {
    Stalled.await;
    Ok(())
}

#[tasker::task(name = "config_cancelled", version = "1.0.0")]
async fn cancelled() -> Result<(), StockError> {
    await_courier().await
}

/// Panics in `record`: what isolation must contain.
#[derive(Default)]
struct PanickingAdapter;

impl Adapter for PanickingAdapter {
    fn record(&self, event: &Event<'_>) {
        panic!("panicking adapter refuses {}", event.name());
    }
}

tasker::register_adapter!(PanickingAdapter);
const PANICKING_ADAPTER: &str = "telemetry_config::PanickingAdapter";

fn exploding_constructor() -> PanickingAdapter {
    panic!("no credentials for the audit store");
}

tasker::register_adapter!("exploding-constructor", exploding_constructor);

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Runs `order(quantity)` inside a fresh capture: its result, the captured events, the task id.
fn run_order(quantity: u32) -> (Result<u32, StockError>, Vec<Event<'static>>, TaskId) {
    let capture = Capture::new();
    let result = capture.run(|| order(quantity));
    let ids = capture.task_ids();
    assert_eq!(ids.len(), 1, "one task run: {:?}", capture.names());
    (result, capture.events(), TaskId(ids[0].to_string()))
}

/// A task run's id as a string (the adapter crate's journal carries `TaskRef`s).
#[derive(Debug, Clone, PartialEq)]
struct TaskId(String);

fn journal_of(task: &TaskId) -> Vec<Received> {
    journal_where(|received| {
        received
            .call
            .task()
            .is_some_and(|t| t.id.to_string() == task.0)
    })
}

/// `(adapter, summary)` of each call concerning `task`, in the order the adapters received them.
fn calls_of(task: &TaskId) -> Vec<(&'static str, String)> {
    journal_of(task)
        .iter()
        .map(|received| (received.adapter, received.call.summary()))
        .collect()
}

/// The events `adapter` recorded for `task`, in order.
fn recorded_by(adapter: &str, task: &TaskId) -> Vec<Event<'static>> {
    journal_of(task)
        .into_iter()
        .filter(|received| received.adapter == adapter)
        .filter_map(|received| received.call.event().cloned())
        .collect()
}

const ORDER_EVENTS: [&str; 8] = [
    "task.initialize",
    "task.start",
    "task.handle",
    "step.handle",
    "step.complete",
    "app.order_reserved",
    "task.finalize",
    "task.complete",
];

/// The calls an adapter receives for one `order` run, grouped by event: the hooks an event opens
/// come before its `record`, those it closes after, all in one go for each adapter.
const ORDER_CALLS_BY_EVENT: [&[&str]; 8] = [
    &["record task.initialize"],
    &["start_trace config_order", "record task.start"],
    &["record task.handle"],
    &["start_span reserve", "record step.handle"],
    &["record step.complete", "end_span reserve success"],
    &["record app.order_reserved"],
    &["record task.finalize"],
    &["record task.complete", "end_trace config_order success"],
];

/// The calls one adapter receives for one `order` run, in order.
fn order_calls() -> Vec<&'static str> {
    ORDER_CALLS_BY_EVENT.concat()
}

/// What the journal holds for one `order` run when `adapters` are configured in this order:
/// each event goes to every adapter in turn, with its hooks.
fn order_calls_through(adapters: &[&'static str]) -> Vec<(&'static str, String)> {
    ORDER_CALLS_BY_EVENT
        .iter()
        .flat_map(|calls| {
            adapters
                .iter()
                .flat_map(move |adapter| calls.iter().map(move |call| (*adapter, call.to_string())))
        })
        .collect()
}

fn names<'a>(events: &'a [Event<'_>]) -> Vec<&'a str> {
    events.iter().map(Event::name).collect()
}

fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    move |name| vars.get(name).cloned()
}

// ---------------------------------------------------------------------------------------------
// Which adapters receive what.

#[test]
fn default_and_two_custom_classes_receive_the_same_events_in_configured_order() {
    let _guard = configured(|config| {
        config.telemetry_adapters = vec![
            TelemetryAdapter::Default,
            TelemetryAdapter::Custom,
            TelemetryAdapter::Custom,
        ];
        config.telemetry_adapter_classes = vec![AUDIT_ADAPTER.into(), METRICS_ADAPTER.into()];
    });

    let (result, fired, task) = run_order(2);

    assert_eq!(result, Ok(4));
    assert_eq!(names(&fired), ORDER_EVENTS);
    // Each adapter got exactly the events the bus fired, equal in every field.
    assert_eq!(recorded_by(AUDIT_ADAPTER, &task), fired);
    assert_eq!(recorded_by(METRICS_ADAPTER, &task), fired);
    assert_eq!(fired[5].to_json()["reserved"], json!(4));
    // Every event reaches the first `custom` entry's class, then the second's.
    assert_eq!(
        calls_of(&task),
        order_calls_through(&[AUDIT_ADAPTER, METRICS_ADAPTER])
    );
}

#[test]
fn each_custom_entry_maps_to_its_own_class_in_order() {
    let _guard = configured(|config| {
        config.telemetry_adapters = vec![
            TelemetryAdapter::Custom,
            TelemetryAdapter::Default,
            TelemetryAdapter::Custom,
        ];
        config.telemetry_adapter_classes = vec![METRICS_ADAPTER.into(), AUDIT_ADAPTER.into()];
    });

    let (_, fired, task) = run_order(1);

    assert_eq!(
        calls_of(&task),
        order_calls_through(&[METRICS_ADAPTER, AUDIT_ADAPTER])
    );
    assert_eq!(recorded_by(METRICS_ADAPTER, &task), fired);
}

#[test]
fn the_same_class_twice_gets_two_instances() {
    let _guard = configured(|config| {
        config.telemetry_adapters = vec![TelemetryAdapter::Custom, TelemetryAdapter::Custom];
        config.telemetry_adapter_classes = vec![AUDIT_ADAPTER.into(), AUDIT_ADAPTER.into()];
    });

    let (_, fired, task) = run_order(1);

    let journal = journal_of(&task);
    let (first, second) = (journal[0].instance, journal[1].instance);
    assert_ne!(first, second);
    let by_instance: Vec<(u64, String)> = journal
        .iter()
        .map(|received| (received.instance, received.call.summary()))
        .collect();
    let expected: Vec<(u64, String)> = ORDER_CALLS_BY_EVENT
        .iter()
        .flat_map(|calls| {
            [first, second]
                .into_iter()
                .flat_map(move |instance| calls.iter().map(move |c| (instance, c.to_string())))
        })
        .collect();
    assert_eq!(by_instance, expected);
    assert!(journal
        .iter()
        .all(|received| received.adapter == AUDIT_ADAPTER));
    assert_eq!(recorded_by(AUDIT_ADAPTER, &task).len(), 2 * fired.len());
}

#[test]
fn trace_and_span_hooks_carry_the_identity_of_their_task_and_step() {
    let _guard = configured(|config| {
        config.telemetry_adapters = vec![TelemetryAdapter::Custom];
        config.telemetry_adapter_classes = vec![AUDIT_ADAPTER.into()];
    });

    let (_, fired, task) = run_order(3);

    let task_ref = *fired[0].task().expect("task events carry the task");
    let step_ref = *fired[3].step().expect("step events carry the step");
    assert_eq!(task_ref.name, "config_order");
    assert_eq!(task_ref.version, "1.0.0");
    assert_eq!(step_ref.name, "reserve");
    let hooks: Vec<Call> = journal_of(&task)
        .into_iter()
        .map(|received| received.call)
        .filter(|call| call.event().is_none())
        .collect();
    assert_eq!(
        hooks,
        [
            Call::StartTrace(task_ref),
            Call::StartSpan(step_ref, Some(task_ref)),
            Call::EndSpan(step_ref, Some(task_ref), SpanOutcome::Success),
            Call::EndTrace(task_ref, SpanOutcome::Success),
        ]
    );
}

#[test]
fn span_hooks_report_skip_retry_and_failure_outcomes() {
    let _guard = configured(|config| {
        config.telemetry_adapters = vec![TelemetryAdapter::Custom];
        config.telemetry_adapter_classes = vec![METRICS_ADAPTER.into()];
    });

    let capture = Capture::new();
    let result = capture.run(outcomes);
    let task = TaskId(capture.task_ids()[0].to_string());

    assert_eq!(result, Err(StockError("no courier available")));
    let calls: Vec<String> = calls_of(&task).into_iter().map(|(_, call)| call).collect();
    assert_eq!(
        calls,
        [
            "record task.initialize",
            "start_trace config_outcomes",
            "record task.start",
            "record task.handle",
            // skipped: the span opens and closes around `step.skip`
            "start_span gift_wrap",
            "record step.skip",
            "end_span gift_wrap skip",
            // a failed attempt that is retried does not end the span
            "start_span flaky_charge",
            "record step.handle",
            "record step.error",
            "record step.retry",
            "record step.backoff",
            "record step.handle",
            "record step.complete",
            "end_span flaky_charge success",
            // attempts exhausted
            "start_span ship",
            "record step.handle",
            "record step.error",
            "record step.retry",
            "record step.backoff",
            "record step.handle",
            "record step.error",
            "record step.max_retries_reached",
            "end_span ship failure",
            "record task.finalize",
            "record task.error",
            "end_trace config_outcomes failure",
        ]
    );
    assert_eq!(
        recorded_by(METRICS_ADAPTER, &task),
        capture.events(),
        "the adapter saw exactly the events the bus fired"
    );
}

#[test]
fn dropped_task_ends_its_span_and_trace_as_cancellation() {
    let _guard = configured(|config| {
        config.telemetry_adapters = vec![TelemetryAdapter::Custom];
        config.telemetry_adapter_classes = vec![AUDIT_ADAPTER.into()];
    });

    let capture = Capture::new();
    {
        let mut future = pin!(capture.wrap(cancelled()));
        let mut cx = PollContext::from_waker(Waker::noop());
        assert!(future.as_mut().poll(&mut cx).is_pending());
    }
    let task = TaskId(capture.task_ids()[0].to_string());

    let calls: Vec<String> = calls_of(&task).into_iter().map(|(_, call)| call).collect();
    assert_eq!(
        calls,
        [
            "record task.initialize",
            "start_trace config_cancelled",
            "record task.start",
            "record task.handle",
            "start_span await_courier",
            "record step.handle",
            "record step.error",
            "end_span await_courier cancellation",
            "record task.finalize",
            "record task.error",
            "end_trace config_cancelled cancellation",
        ]
    );
    let events = capture.events();
    assert_eq!(events[4].name(), "step.error");
    assert_eq!(events[4].to_json()["error_class"], "tasker::Cancelled");
    assert_eq!(events[4].to_json()["retryable"], false);
    assert_eq!(events[6].name(), "task.error");
    assert_eq!(events[6].to_json()["error_class"], "tasker::Cancelled");
}

#[test]
fn disabled_telemetry_reaches_no_adapter_but_the_bus_still_fires() {
    let _guard = configured(|config| {
        config.enable_telemetry = false;
        config.telemetry_adapters = vec![
            TelemetryAdapter::Default,
            TelemetryAdapter::Custom,
            TelemetryAdapter::Custom,
        ];
        config.telemetry_adapter_classes = vec![AUDIT_ADAPTER.into(), METRICS_ADAPTER.into()];
    });

    let (result, fired, task) = run_order(2);
    tasker::telemetry::record("app.config_disabled_probe", ()).expect("a valid custom event");

    assert_eq!(result, Ok(4));
    assert_eq!(names(&fired), ORDER_EVENTS);
    assert_eq!(calls_of(&task), []);
    assert_eq!(
        tasker_test_adapters::journal_for_event("app.config_disabled_probe"),
        []
    );
}

#[test]
fn reconfiguring_swaps_the_adapter_set() {
    let _guard = configured(|config| {
        config.telemetry_adapters = vec![TelemetryAdapter::Custom];
        config.telemetry_adapter_classes = vec![AUDIT_ADAPTER.into()];
    });
    let (_, _, first) = run_order(1);

    tasker::configure(|config| config.telemetry_adapter_classes = vec![METRICS_ADAPTER.into()])
        .expect("a valid configuration");
    let (_, _, second) = run_order(1);

    tasker::configure(|config| config.telemetry_adapter_classes = vec![AUDIT_ADAPTER.into()])
        .expect("a valid configuration");
    let (_, _, third) = run_order(1);

    let adapters = |task: &TaskId| -> Vec<&str> {
        let mut adapters: Vec<&str> = journal_of(task).iter().map(|r| r.adapter).collect();
        adapters.dedup();
        adapters
    };
    assert_eq!(adapters(&first), [AUDIT_ADAPTER]);
    assert_eq!(adapters(&second), [METRICS_ADAPTER]);
    assert_eq!(adapters(&third), [AUDIT_ADAPTER]);
    assert_eq!(journal_of(&first).len(), order_calls().len());
    assert_eq!(journal_of(&second).len(), order_calls().len());
    // Configuring builds new adapters: the third run reached a new audit instance.
    assert_ne!(
        journal_of(&first)[0].instance,
        journal_of(&third)[0].instance
    );
}

#[test]
fn configure_hands_the_closure_the_configuration_in_force() {
    let _guard = configured(|config| {
        config.telemetry_adapters = vec![TelemetryAdapter::Default, TelemetryAdapter::Custom];
        config.telemetry_adapter_classes = vec![AUDIT_ADAPTER.into()];
        config.filter_parameters = vec!["iban".into()];
    });

    let mut seen = None;
    tasker::configure(|config| seen = Some(config.clone())).expect("unchanged is valid");

    let seen = seen.expect("the closure ran");
    assert!(seen.enable_telemetry);
    assert_eq!(
        seen.telemetry_adapters,
        [TelemetryAdapter::Default, TelemetryAdapter::Custom]
    );
    assert_eq!(seen.telemetry_adapter_classes, [AUDIT_ADAPTER]);
    assert_eq!(seen.filter_parameters, ["iban"]);
    assert_eq!(tasker::configuration(), seen);
}

#[test]
fn default_configuration_is_telemetry_off_with_the_logger() {
    let _guard = exclusive();
    let config = tasker::configuration();
    assert_eq!(config, Configuration::default());
    assert!(!config.enable_telemetry);
    assert_eq!(config.telemetry_adapters, [TelemetryAdapter::Default]);
    assert!(config.telemetry_adapter_classes.is_empty());
    assert_eq!(
        config.filter_parameters,
        [
            "passw",
            "secret",
            "token",
            "_key",
            "crypt",
            "salt",
            "certificate",
            "otp",
            "ssn",
            "email"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// A panicking adapter.

#[test]
fn panicking_adapter_is_isolated_and_counted() {
    let _guard = exclusive();
    let silent_result = order(5);
    tasker::configure(|config| {
        config.enable_telemetry = true;
        config.telemetry_adapters = vec![TelemetryAdapter::Custom, TelemetryAdapter::Custom];
        config.telemetry_adapter_classes = vec![PANICKING_ADAPTER.into(), AUDIT_ADAPTER.into()];
    })
    .expect("a valid configuration");
    let label = format!("adapter {PANICKING_ADAPTER}");
    let panics_before = tasker::events::panic_counts().get(&label);

    let (result, fired, task) = run_order(5);

    // The task's result is what it is without telemetry.
    assert_eq!(result, silent_result);
    assert_eq!(result, Ok(10));
    // The adapter after the panicking one still got every event and hook.
    assert_eq!(recorded_by(AUDIT_ADAPTER, &task), fired);
    let calls: Vec<String> = calls_of(&task).into_iter().map(|(_, call)| call).collect();
    assert_eq!(calls, order_calls());
    // One panic per event reaching the panicking adapter.
    let counts = tasker::events::panic_counts();
    assert_eq!(
        counts.get(&label) - panics_before,
        ORDER_EVENTS.len() as u64
    );
    assert_eq!(counts.get(&format!("adapter {AUDIT_ADAPTER}")), 0);
    assert_eq!(counts.get("observer telemetry"), 0);
}

// ---------------------------------------------------------------------------------------------
// Configuration errors.

/// `configure` with `change` on top of the configuration in force must fail with `expected`
/// and change nothing.
#[track_caller]
fn assert_refused(change: impl FnOnce(&mut Configuration), expected: &str) -> ConfigError {
    let before = tasker::configuration();
    let error = tasker::configure(change).expect_err("the configuration is invalid");
    assert_eq!(error.to_string(), expected);
    assert_eq!(tasker::configuration(), before);
    error
}

#[test]
fn unknown_adapter_class_lists_the_registered_names() {
    let _guard = exclusive();
    let error = assert_refused(
        |config| {
            config.telemetry_adapters = vec![TelemetryAdapter::Custom];
            config.telemetry_adapter_classes = vec!["billing::LedgerAdapter".into()];
        },
        "no custom telemetry adapter is registered as `billing::LedgerAdapter`; registered \
         adapters are: `exploding-constructor`, `metrics-v2`, \
         `tasker_test_adapters::AuditAdapter`, `telemetry_config::PanickingAdapter` (a crate \
         that is never referenced is not linked: see `tasker::use_adapters!`)",
    );
    assert_eq!(
        error,
        ConfigError::UnknownAdapterClass {
            name: "billing::LedgerAdapter".into(),
            registered: vec![
                "exploding-constructor",
                "metrics-v2",
                AUDIT_ADAPTER,
                PANICKING_ADAPTER
            ],
        }
    );
    assert_eq!(
        tasker::telemetry::registered_adapters(),
        [
            "exploding-constructor",
            "metrics-v2",
            AUDIT_ADAPTER,
            PANICKING_ADAPTER
        ]
    );
}

#[test]
fn fewer_class_names_than_custom_entries_are_refused() {
    let _guard = exclusive();
    assert_refused(
        |config| {
            config.telemetry_adapters = vec![TelemetryAdapter::Custom, TelemetryAdapter::Custom];
            config.telemetry_adapter_classes = vec![AUDIT_ADAPTER.into()];
        },
        "telemetry_adapters has 2 `custom` entries but telemetry_adapter_classes has 1 name \
         (`tasker_test_adapters::AuditAdapter`); give exactly one class name per `custom` \
         entry, in order",
    );
    assert_refused(
        |config| config.telemetry_adapters = vec![TelemetryAdapter::Custom],
        "telemetry_adapters has 1 `custom` entry but telemetry_adapter_classes has 0 names \
         (none); give exactly one class name per `custom` entry, in order",
    );
}

#[test]
fn more_class_names_than_custom_entries_are_refused() {
    let _guard = exclusive();
    let error = assert_refused(
        |config| {
            config.telemetry_adapters = vec![TelemetryAdapter::Default, TelemetryAdapter::Custom];
            config.telemetry_adapter_classes = vec![AUDIT_ADAPTER.into(), METRICS_ADAPTER.into()];
        },
        "telemetry_adapters has 1 `custom` entry but telemetry_adapter_classes has 2 names \
         (`tasker_test_adapters::AuditAdapter`, `metrics-v2`); give exactly one class name per \
         `custom` entry, in order",
    );
    assert_eq!(
        error,
        ConfigError::AdapterClassCount {
            custom_entries: 1,
            classes: 2,
            class_names: vec![AUDIT_ADAPTER.into(), METRICS_ADAPTER.into()],
        }
    );
    assert_refused(
        |config| config.telemetry_adapter_classes = vec![METRICS_ADAPTER.into()],
        "telemetry_adapters has 0 `custom` entries but telemetry_adapter_classes has 1 name \
         (`metrics-v2`); give exactly one class name per `custom` entry, in order",
    );
}

#[cfg(not(feature = "opentelemetry"))]
#[test]
fn opentelemetry_without_its_feature_is_refused() {
    let _guard = exclusive();
    let error = assert_refused(
        |config| {
            config.telemetry_adapters =
                vec![TelemetryAdapter::Default, TelemetryAdapter::OpenTelemetry]
        },
        "the `opentelemetry` telemetry adapter needs the `opentelemetry` feature of the `tasker` \
         crate; enable it in Cargo.toml (tasker = { features = [\"opentelemetry\"] }) or remove \
         `opentelemetry`",
    );
    assert_eq!(
        error,
        ConfigError::FeatureDisabled {
            adapter: TelemetryAdapter::OpenTelemetry,
            feature: "opentelemetry",
        }
    );
}

#[test]
fn a_builtin_adapter_listed_twice_is_refused() {
    let _guard = exclusive();
    assert_refused(
        |config| {
            config.telemetry_adapters = vec![
                TelemetryAdapter::Default,
                TelemetryAdapter::Custom,
                TelemetryAdapter::Default,
            ];
            config.telemetry_adapter_classes = vec![AUDIT_ADAPTER.into()];
        },
        "telemetry_adapters lists `default` twice; list each built-in adapter once",
    );
}

#[test]
fn an_empty_filter_pattern_is_refused() {
    let _guard = exclusive();
    let error = assert_refused(
        |config| config.filter_parameters = vec!["iban".into(), String::new()],
        "filter_parameters contains an empty pattern, which would mask every key; remove it \
         (patterns match keys containing them, ignoring case)",
    );
    assert_eq!(error, ConfigError::EmptyFilterParameter);
}

#[test]
fn a_panicking_adapter_constructor_is_refused() {
    let _guard = exclusive();
    assert_refused(
        |config| {
            config.enable_telemetry = true;
            config.telemetry_adapters = vec![TelemetryAdapter::Custom];
            config.telemetry_adapter_classes = vec!["exploding-constructor".into()];
        },
        "the constructor of telemetry adapter `exploding-constructor` panicked: no credentials \
         for the audit store",
    );
}

#[test]
fn failing_configure_keeps_the_configuration_and_adapters_in_force() {
    let _guard = configured(|config| {
        config.telemetry_adapters = vec![TelemetryAdapter::Custom];
        config.telemetry_adapter_classes = vec![AUDIT_ADAPTER.into()];
    });
    tasker::telemetry::record("app.config_before_failure", ()).expect("a valid custom event");
    let before = tasker::configuration();

    // A valid change to the adapters, spoilt by an invalid filter: nothing of it applies.
    let error = tasker::configure(|config| {
        config.telemetry_adapter_classes = vec![METRICS_ADAPTER.into()];
        config.filter_parameters.push(String::new());
    })
    .expect_err("an empty pattern is invalid");
    assert_eq!(error, ConfigError::EmptyFilterParameter);
    // And one that fails after building a first adapter.
    tasker::configure(|config| {
        config.telemetry_adapters = vec![TelemetryAdapter::Custom, TelemetryAdapter::Custom];
        config.telemetry_adapter_classes = vec![METRICS_ADAPTER.into(), "missing".into()];
    })
    .expect_err("`missing` is not registered");
    tasker::telemetry::record("app.config_after_failure", ()).expect("a valid custom event");

    assert_eq!(tasker::configuration(), before);
    let receivers = |name: &str| -> Vec<(&str, u64)> {
        tasker_test_adapters::journal_for_event(name)
            .iter()
            .map(|received| (received.adapter, received.instance))
            .collect()
    };
    let before_failure = receivers("app.config_before_failure");
    assert_eq!(before_failure.len(), 1);
    assert_eq!(before_failure[0].0, AUDIT_ADAPTER);
    // The same audit instance still receives; no metrics adapter was installed.
    assert_eq!(receivers("app.config_after_failure"), before_failure);
}

// ---------------------------------------------------------------------------------------------
// The environment.

#[test]
fn environment_sets_every_variable() {
    let config = Configuration::from_lookup(lookup(&[
        ("TASKER_ENABLE_TELEMETRY", "true"),
        ("TASKER_TELEMETRY_ADAPTERS", "default,custom,custom"),
        (
            "TASKER_TELEMETRY_ADAPTER_CLASSES",
            "tasker_test_adapters::AuditAdapter,metrics-v2",
        ),
        ("TASKER_FILTER_PARAMETERS", "iban,card_number"),
    ]))
    .expect("valid variables");

    let mut expected = Configuration::default();
    expected.enable_telemetry = true;
    expected.telemetry_adapters = vec![
        TelemetryAdapter::Default,
        TelemetryAdapter::Custom,
        TelemetryAdapter::Custom,
    ];
    expected.telemetry_adapter_classes = vec![AUDIT_ADAPTER.into(), METRICS_ADAPTER.into()];
    expected.filter_parameters = vec!["iban".into(), "card_number".into()];
    assert_eq!(config, expected);
}

#[test]
fn environment_without_variables_gives_the_defaults() {
    assert_eq!(
        Configuration::from_lookup(|_| None),
        Ok(Configuration::default())
    );
}

#[test]
fn environment_reads_each_variable_alone() {
    let only = |name: &str, value: &str| {
        Configuration::from_lookup(lookup(&[(name, value)])).expect("a valid value")
    };
    let defaults = Configuration::default();

    let config = only("TASKER_ENABLE_TELEMETRY", "true");
    assert!(config.enable_telemetry);
    assert_eq!(config.telemetry_adapters, defaults.telemetry_adapters);

    let config = only("TASKER_TELEMETRY_ADAPTERS", "opentelemetry");
    assert_eq!(config.telemetry_adapters, [TelemetryAdapter::OpenTelemetry]);
    assert!(!config.enable_telemetry);

    let config = only("TASKER_TELEMETRY_ADAPTER_CLASSES", "a::One, b::Two");
    assert_eq!(config.telemetry_adapter_classes, ["a::One", "b::Two"]);
    assert_eq!(config.telemetry_adapters, defaults.telemetry_adapters);

    let config = only("TASKER_FILTER_PARAMETERS", "pin");
    assert_eq!(config.filter_parameters, ["pin"]);
    assert_eq!(
        config.telemetry_adapter_classes,
        defaults.telemetry_adapter_classes
    );
}

#[test]
fn environment_booleans_accept_the_usual_spellings() {
    let enabled = |value: &str| {
        Configuration::from_lookup(lookup(&[("TASKER_ENABLE_TELEMETRY", value)]))
            .map(|config| config.enable_telemetry)
    };
    for value in ["true", "1", "yes", "on", "TRUE", " On "] {
        assert_eq!(enabled(value), Ok(true), "{value:?}");
    }
    for value in ["false", "0", "no", "off", "False", ""] {
        assert_eq!(enabled(value), Ok(false), "{value:?}");
    }
}

#[test]
fn environment_lists_ignore_case_spaces_and_empty_items() {
    let config = Configuration::from_lookup(lookup(&[
        ("TASKER_TELEMETRY_ADAPTERS", " Custom ,, DEFAULT,"),
        ("TASKER_TELEMETRY_ADAPTER_CLASSES", " metrics-v2 ,"),
        ("TASKER_FILTER_PARAMETERS", "iban, ,pin"),
    ]))
    .expect("valid variables");
    assert_eq!(
        config.telemetry_adapters,
        [TelemetryAdapter::Custom, TelemetryAdapter::Default]
    );
    assert_eq!(config.telemetry_adapter_classes, ["metrics-v2"]);
    assert_eq!(config.filter_parameters, ["iban", "pin"]);
}

#[test]
fn environment_with_an_invalid_boolean_is_refused() {
    for value in ["maybe", "2", "enabled"] {
        let error = Configuration::from_lookup(lookup(&[("TASKER_ENABLE_TELEMETRY", value)]))
            .expect_err("not a boolean");
        assert_eq!(
            error.to_string(),
            format!(
                "TASKER_ENABLE_TELEMETRY={value:?} is not valid: expected true or false (also \
                 1/0, yes/no, on/off)"
            )
        );
    }
}

#[test]
fn environment_with_an_unknown_adapter_word_is_refused() {
    let error = Configuration::from_lookup(lookup(&[(
        "TASKER_TELEMETRY_ADAPTERS",
        "default,jaeger,custom",
    )]))
    .expect_err("jaeger is not an adapter");
    assert_eq!(
        error,
        ConfigError::InvalidEnvironment {
            variable: "TASKER_TELEMETRY_ADAPTERS",
            value: "default,jaeger,custom".into(),
            reason: "`jaeger` is not a telemetry adapter; valid adapters are: default, \
                     opentelemetry, console, custom"
                .into(),
        }
    );
    assert_eq!(
        error.to_string(),
        "TASKER_TELEMETRY_ADAPTERS=\"default,jaeger,custom\" is not valid: `jaeger` is not a \
         telemetry adapter; valid adapters are: default, opentelemetry, console, \
         custom"
    );
}

#[test]
fn environment_class_names_are_checked_when_applied() {
    let _guard = exclusive();
    let config = Configuration::from_lookup(lookup(&[
        ("TASKER_ENABLE_TELEMETRY", "1"),
        ("TASKER_TELEMETRY_ADAPTERS", "custom"),
        ("TASKER_TELEMETRY_ADAPTER_CLASSES", "billing::LedgerAdapter"),
    ]))
    .expect("parsing does not look the classes up");

    let applied = config.clone();
    let error = tasker::configure(|current| *current = applied).expect_err("unregistered class");
    assert!(matches!(
        error,
        ConfigError::UnknownAdapterClass { ref name, .. } if name == "billing::LedgerAdapter"
    ));
    assert_eq!(tasker::configuration(), Configuration::default());

    let config = Configuration::from_lookup(lookup(&[
        ("TASKER_ENABLE_TELEMETRY", "1"),
        ("TASKER_TELEMETRY_ADAPTERS", "custom"),
        ("TASKER_TELEMETRY_ADAPTER_CLASSES", "metrics-v2"),
    ]))
    .expect("valid variables");
    let applied = config.clone();
    tasker::configure(|current| *current = applied).expect("a registered class");
    assert_eq!(tasker::configuration(), config);
}

#[test]
fn telemetry_adapter_words_round_trip() {
    for adapter in [
        TelemetryAdapter::Default,
        TelemetryAdapter::OpenTelemetry,
        TelemetryAdapter::Console,
        TelemetryAdapter::Custom,
    ] {
        assert_eq!(adapter.to_string().parse::<TelemetryAdapter>(), Ok(adapter));
    }
    assert_eq!(TelemetryAdapter::OpenTelemetry.to_string(), "opentelemetry");
    assert_eq!(
        "zipkin"
            .parse::<TelemetryAdapter>()
            .map_err(|e| e.to_string()),
        Err(
            "`zipkin` is not a telemetry adapter; valid adapters are: default, opentelemetry, \
             console, custom"
                .to_owned()
        )
    );
}
