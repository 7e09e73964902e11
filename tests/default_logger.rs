//! The default adapter: one `tracing` line per event, target `tasker`, the message
//! `[Tasker] <event>` with the payload's keys as structured fields (or, in the opt-in JSON
//! format, `[Tasker] <event>: <payload as JSON>` and the same fields); ERROR for `task.error` and
//! `step.max_retries_reached`, WARN for `step.error`, INFO for the rest.
//!
//! Each test installs a `tracing_subscriber::fmt` subscriber writing to memory for its own thread
//! (`tracing::subscriber::with_default`) and runs a sync task there, so only its own lines land in
//! the buffer. Telemetry is configured per test, so every test holds [`LOCK`] and restores the
//! default configuration when it ends.

mod support;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::{json, Value};
use support::LogBuffer as Buffer;
use tasker::telemetry::adapters::LogFormat;
use tasker::telemetry::{Adapter, Event};
use tasker::testing::Capture;
use tasker::{Configuration, TelemetryAdapter};

// This binary never names anything of the adapter crate: without this line the linker would
// drop it, and with it its adapters (see `use_adapters_links_a_crate_this_binary_never_names`).
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

/// Takes the lock and applies `change` to the default configuration with telemetry on.
fn configured(change: impl FnOnce(&mut Configuration)) -> Exclusive {
    let guard = Exclusive {
        _lock: LOCK.lock().unwrap_or_else(PoisonError::into_inner),
    };
    tasker::configure(|config| {
        *config = Configuration::default();
        config.enable_telemetry = true;
        change(config);
    })
    .expect("the test's configuration is valid");
    guard
}

/// Runs `f` on this thread under a plain-text fmt subscriber (no time, no colours) and inside
/// `capture`; returns its result and the lines written.
fn with_text_log<R>(capture: &Capture, f: impl FnOnce() -> R) -> (R, Vec<String>) {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(buffer.clone())
        .with_ansi(false)
        .without_time()
        .finish();
    let result = tracing::subscriber::with_default(subscriber, || capture.run(f));
    (result, buffer.lines())
}

/// Like [`with_text_log`] with the JSON formatter; each line parsed.
fn with_json_log<R>(capture: &Capture, f: impl FnOnce() -> R) -> (R, Vec<Value>) {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(buffer.clone())
        .finish();
    let result = tracing::subscriber::with_default(subscriber, || capture.run(f));
    let lines = buffer
        .lines()
        .iter()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    (result, lines)
}

// ---------------------------------------------------------------------------------------------
// Tasks under test.

#[tasker::step(max_attempts = 2, backoff_ms = 1, jitter = 0.0)]
fn charge(amount: u32, declines_left: &AtomicBool) -> Result<u32, io::Error> {
    if declines_left.swap(false, Ordering::Relaxed) {
        return Err(io::Error::other("card declined"));
    }
    Ok(amount)
}

#[tasker::task(name = "logger_order", version = "1.0.0")]
fn order(amount: u32) -> Result<u32, io::Error> {
    tasker::telemetry::record(
        "app.cart_checked",
        json!({ "items": 2, "password": "hunter2" }),
    )
    .expect("a valid custom event");
    let declines_left = AtomicBool::new(true);
    charge(amount, &declines_left)
}

fn no_gift(gift: &bool) -> bool {
    !*gift
}

#[tasker::step(skip_if = no_gift)]
fn wrap_gift(gift: bool) -> String {
    format!("wrapped: {gift}")
}

#[tasker::step(max_attempts = 1)]
fn ship() -> Result<(), io::Error> {
    Err(io::Error::other("no courier available"))
}

#[tasker::task(name = "logger_failing_order", version = "2.1.0")]
fn failing_order() -> Result<(), io::Error> {
    wrap_gift(false);
    ship()
}

/// Panics in `record`, to show how the logger reports an isolated adapter.
#[derive(Default)]
struct PanickingAdapter;

impl Adapter for PanickingAdapter {
    fn record(&self, event: &Event<'_>) {
        panic!("panicking adapter refuses {}", event.name());
    }

    /// On the task's thread, so that its report reaches the test's scoped subscriber (from the
    /// collector thread it goes to the global one: see tests/telemetry_collector.rs).
    fn synchronous(&self) -> bool {
        true
    }
}

tasker::register_adapter!(PanickingAdapter);

// ---------------------------------------------------------------------------------------------
// Helpers reading the captured events.

fn string(value: &Value) -> String {
    value.as_str().expect("a string").to_owned()
}

/// The captured events as JSON, read for the values that differ from run to run.
struct Captured {
    json: Vec<Value>,
}

impl Captured {
    fn timestamp(&self, index: usize) -> String {
        string(&self.json[index]["timestamp"])
    }

    /// `duration_ms` as JSON writes it.
    fn json_ms(&self, index: usize) -> String {
        self.json[index]["duration_ms"].to_string()
    }

    /// `duration_ms` as the fmt subscriber prints an `f64` field.
    fn field_ms(&self, index: usize) -> String {
        let ms = self.json[index]["duration_ms"]
            .as_f64()
            .expect("a duration");
        format!("{ms:?}")
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn logger_prints_one_compact_line_per_event_with_its_payload_as_fields() {
    let _guard = configured(|config| config.telemetry_adapters = vec![TelemetryAdapter::Default]);
    let capture = Capture::new();

    let (result, lines) = with_text_log(&capture, || order(25));

    assert_eq!(result.expect("the retried step succeeds"), 25);
    let captured = Captured {
        json: capture.json(),
    };
    let task = string(&captured.json[0]["task_id"]);
    let step = string(&captured.json[4]["step_id"]);
    let task_fields = format!(r#"task_id={task} task_name="logger_order" task_version="1.0.0""#);
    let step_fields = format!(r#"{task_fields} step_id={step} step_name="charge""#);
    let expected = [
        format!(
            r#" INFO tasker: [Tasker] task.initialize event="task.initialize" {task_fields} status="success""#
        ),
        format!(r#" INFO tasker: [Tasker] task.start event="task.start" {task_fields}"#),
        format!(r#" INFO tasker: [Tasker] task.handle event="task.handle" {task_fields}"#),
        format!(
            r#" INFO tasker: [Tasker] app.cart_checked event="app.cart_checked" {task_fields} payload={{"items":2,"password":"[FILTERED]"}}"#
        ),
        format!(
            r#" INFO tasker: [Tasker] step.handle event="step.handle" {step_fields} attempt=1 max_attempts=2"#
        ),
        format!(
            r#" WARN tasker: [Tasker] step.error event="step.error" {step_fields} attempt=1 error_class="std::io::error::Error" error_message="card declined" retryable=true"#
        ),
        format!(
            r#" INFO tasker: [Tasker] step.retry event="step.retry" {step_fields} attempt=2 max_attempts=2"#
        ),
        format!(
            r#" INFO tasker: [Tasker] step.backoff event="step.backoff" {step_fields} attempt=2 backoff_ms=1"#
        ),
        format!(
            r#" INFO tasker: [Tasker] step.handle event="step.handle" {step_fields} attempt=2 max_attempts=2"#
        ),
        format!(
            r#" INFO tasker: [Tasker] step.complete event="step.complete" {step_fields} attempt=2 duration_ms={}"#,
            captured.field_ms(9)
        ),
        format!(
            r#" INFO tasker: [Tasker] task.finalize event="task.finalize" {task_fields} completed_steps=1 failed_steps=0 skipped_steps=0"#
        ),
        format!(
            r#" INFO tasker: [Tasker] task.complete event="task.complete" {task_fields} duration_ms={}"#,
            captured.field_ms(11)
        ),
    ];
    assert_eq!(lines, expected);
}

#[test]
fn the_json_log_format_prints_the_ruby_style_line_with_the_same_fields() {
    let _guard = configured(|config| {
        config.telemetry_adapters = vec![TelemetryAdapter::Default];
        config.log_format = LogFormat::Json;
    });
    let capture = Capture::new();

    let (result, lines) = with_text_log(&capture, || order(25));

    assert_eq!(result.expect("the retried step succeeds"), 25);
    let captured = Captured {
        json: capture.json(),
    };
    let task = string(&captured.json[0]["task_id"]);
    let step = string(&captured.json[4]["step_id"]);
    let ts = |index| captured.timestamp(index);
    let task_keys =
        format!(r#""task_id":"{task}","task_name":"logger_order","task_version":"1.0.0""#);
    let step_keys = format!(r#"{task_keys},"step_id":"{step}","step_name":"charge""#);
    let task_fields = format!(r#"task_id={task} task_name="logger_order" task_version="1.0.0""#);
    let step_fields = format!(r#"{task_fields} step_id={step} step_name="charge""#);
    let expected = [
        format!(
            r#" INFO tasker: [Tasker] task.initialize: {{"event":"task.initialize","timestamp":"{}",{task_keys},"status":"success"}} event="task.initialize" {task_fields} status="success""#,
            ts(0)
        ),
        format!(
            r#" INFO tasker: [Tasker] task.start: {{"event":"task.start","timestamp":"{}",{task_keys}}} event="task.start" {task_fields}"#,
            ts(1)
        ),
        format!(
            r#" INFO tasker: [Tasker] task.handle: {{"event":"task.handle","timestamp":"{}",{task_keys}}} event="task.handle" {task_fields}"#,
            ts(2)
        ),
        format!(
            r#" INFO tasker: [Tasker] app.cart_checked: {{"event":"app.cart_checked","timestamp":"{}",{task_keys},"items":2,"password":"[FILTERED]"}} event="app.cart_checked" {task_fields} payload={{"items":2,"password":"[FILTERED]"}}"#,
            ts(3)
        ),
        format!(
            r#" INFO tasker: [Tasker] step.handle: {{"event":"step.handle","timestamp":"{}",{step_keys},"attempt":1,"max_attempts":2}} event="step.handle" {step_fields} attempt=1 max_attempts=2"#,
            ts(4)
        ),
        format!(
            r#" WARN tasker: [Tasker] step.error: {{"event":"step.error","timestamp":"{}",{step_keys},"attempt":1,"error_class":"std::io::error::Error","error_message":"card declined","retryable":true}} event="step.error" {step_fields} attempt=1 error_class="std::io::error::Error" error_message="card declined" retryable=true"#,
            ts(5)
        ),
        format!(
            r#" INFO tasker: [Tasker] step.retry: {{"event":"step.retry","timestamp":"{}",{step_keys},"attempt":2,"max_attempts":2}} event="step.retry" {step_fields} attempt=2 max_attempts=2"#,
            ts(6)
        ),
        format!(
            r#" INFO tasker: [Tasker] step.backoff: {{"event":"step.backoff","timestamp":"{}",{step_keys},"attempt":2,"backoff_ms":1}} event="step.backoff" {step_fields} attempt=2 backoff_ms=1"#,
            ts(7)
        ),
        format!(
            r#" INFO tasker: [Tasker] step.handle: {{"event":"step.handle","timestamp":"{}",{step_keys},"attempt":2,"max_attempts":2}} event="step.handle" {step_fields} attempt=2 max_attempts=2"#,
            ts(8)
        ),
        format!(
            r#" INFO tasker: [Tasker] step.complete: {{"event":"step.complete","timestamp":"{}",{step_keys},"attempt":2,"duration_ms":{}}} event="step.complete" {step_fields} attempt=2 duration_ms={}"#,
            ts(9),
            captured.json_ms(9),
            captured.field_ms(9)
        ),
        format!(
            r#" INFO tasker: [Tasker] task.finalize: {{"event":"task.finalize","timestamp":"{}",{task_keys},"completed_steps":1,"failed_steps":0,"skipped_steps":0}} event="task.finalize" {task_fields} completed_steps=1 failed_steps=0 skipped_steps=0"#,
            ts(10)
        ),
        format!(
            r#" INFO tasker: [Tasker] task.complete: {{"event":"task.complete","timestamp":"{}",{task_keys},"duration_ms":{}}} event="task.complete" {task_fields} duration_ms={}"#,
            ts(11),
            captured.json_ms(11),
            captured.field_ms(11)
        ),
    ];
    assert_eq!(lines, expected);
}

#[test]
fn json_formatter_gets_every_payload_key_as_a_typed_field() {
    let _guard = configured(|config| config.telemetry_adapters = vec![TelemetryAdapter::Default]);
    let capture = Capture::new();

    let (result, lines) = with_json_log(&capture, || order(40));

    assert_eq!(result.expect("the retried step succeeds"), 40);
    let events = capture.events();
    assert_eq!(lines.len(), events.len());
    for (line, event) in lines.iter().zip(&events) {
        let level = if event.name() == "step.error" {
            "WARN"
        } else {
            "INFO"
        };
        assert_eq!(line["level"], level, "{}", event.name());
        assert_eq!(line["target"], "tasker");
        assert_eq!(
            line["fields"]["message"],
            format!("[Tasker] {}", event.name())
        );
    }
    let captured = Captured {
        json: capture.json(),
    };
    let task = captured.json[0]["task_id"].clone();
    let step = captured.json[4]["step_id"].clone();
    let fields: Vec<Value> = lines
        .iter()
        .map(|line| {
            let mut fields = line["fields"].clone();
            fields.as_object_mut().expect("an object").remove("message");
            fields
        })
        .collect();
    let task_fields = |event: &str| {
        json!({
            "event": event,
            "task_id": task,
            "task_name": "logger_order",
            "task_version": "1.0.0",
        })
    };
    let with = |mut base: Value, more: Value| {
        let base_map = base.as_object_mut().expect("an object");
        for (key, value) in more.as_object().expect("an object") {
            base_map.insert(key.clone(), value.clone());
        }
        base
    };
    let step_fields = |event: &str, more: Value| {
        with(
            with(
                task_fields(event),
                json!({ "step_id": step, "step_name": "charge" }),
            ),
            more,
        )
    };
    let ms = |index: usize| captured.json[index]["duration_ms"].clone();
    assert_eq!(
        fields,
        [
            with(
                task_fields("task.initialize"),
                json!({ "status": "success" })
            ),
            task_fields("task.start"),
            task_fields("task.handle"),
            with(
                task_fields("app.cart_checked"),
                json!({ "payload": r#"{"items":2,"password":"[FILTERED]"}"# })
            ),
            step_fields("step.handle", json!({ "attempt": 1, "max_attempts": 2 })),
            step_fields(
                "step.error",
                json!({
                    "attempt": 1,
                    "error_class": "std::io::error::Error",
                    "error_message": "card declined",
                    "retryable": true,
                })
            ),
            step_fields("step.retry", json!({ "attempt": 2, "max_attempts": 2 })),
            step_fields("step.backoff", json!({ "attempt": 2, "backoff_ms": 1 })),
            step_fields("step.handle", json!({ "attempt": 2, "max_attempts": 2 })),
            step_fields(
                "step.complete",
                json!({ "attempt": 2, "duration_ms": ms(9) })
            ),
            with(
                task_fields("task.finalize"),
                json!({ "completed_steps": 1, "failed_steps": 0, "skipped_steps": 0 })
            ),
            with(
                task_fields("task.complete"),
                json!({ "duration_ms": ms(11) })
            ),
        ]
    );
}

#[test]
fn failed_task_is_logged_with_its_error_skip_and_count_fields() {
    let _guard = configured(|config| config.telemetry_adapters = vec![TelemetryAdapter::Default]);
    let capture = Capture::new();

    let (result, lines) = with_json_log(&capture, failing_order);

    assert_eq!(
        result.expect_err("ship fails").to_string(),
        "no courier available"
    );
    let captured = Captured {
        json: capture.json(),
    };
    let task = captured.json[0]["task_id"].clone();
    let identity = |event: &str, more: Value| {
        let mut fields = json!({
            "event": event,
            "task_id": task,
            "task_name": "logger_failing_order",
            "task_version": "2.1.0",
        });
        let map = fields.as_object_mut().expect("an object");
        for (key, value) in more.as_object().expect("an object") {
            map.insert(key.clone(), value.clone());
        }
        fields
    };
    let wrap_gift = captured.json[3]["step_id"].clone();
    let ship = captured.json[4]["step_id"].clone();
    let fields: Vec<Value> = lines
        .iter()
        .map(|line| {
            let mut fields = line["fields"].clone();
            fields.as_object_mut().expect("an object").remove("message");
            fields
        })
        .collect();
    assert_eq!(
        fields,
        [
            identity("task.initialize", json!({ "status": "success" })),
            identity("task.start", json!({})),
            identity("task.handle", json!({})),
            identity(
                "step.skip",
                json!({ "step_id": wrap_gift, "step_name": "wrap_gift", "reason": "skip_if" })
            ),
            identity(
                "step.handle",
                json!({ "step_id": ship, "step_name": "ship", "attempt": 1, "max_attempts": 1 })
            ),
            identity(
                "step.error",
                json!({
                    "step_id": ship,
                    "step_name": "ship",
                    "attempt": 1,
                    "error_class": "std::io::error::Error",
                    "error_message": "no courier available",
                    "retryable": true,
                })
            ),
            identity(
                "step.max_retries_reached",
                json!({ "step_id": ship, "step_name": "ship", "attempts": 1, "max_attempts": 1 })
            ),
            identity(
                "task.finalize",
                json!({ "completed_steps": 0, "failed_steps": 1, "skipped_steps": 1 })
            ),
            identity(
                "task.error",
                json!({
                    "duration_ms": captured.json[8]["duration_ms"],
                    "error_class": "std::io::error::Error",
                    "error_message": "no courier available",
                    "error_steps": r#"["ship"]"#,
                })
            ),
        ]
    );
}

#[test]
fn logger_is_silent_while_telemetry_is_disabled() {
    let _guard = configured(|config| config.enable_telemetry = false);
    let capture = Capture::new();

    let (result, lines) = with_text_log(&capture, || order(3));

    assert_eq!(result.expect("the retried step succeeds"), 3);
    assert_eq!(capture.events().len(), 12, "the bus still fires");
    assert_eq!(lines, Vec::<String>::new());
}

#[test]
fn panicking_adapter_is_reported_once_through_the_logger() {
    let _guard = configured(|config| {
        config.telemetry_adapters = vec![TelemetryAdapter::Default, TelemetryAdapter::Custom];
        config.telemetry_adapter_classes = vec!["default_logger::PanickingAdapter".into()];
    });
    let capture = Capture::new();

    let (result, lines) = with_text_log(&capture, || order(8));

    assert_eq!(result.expect("the retried step succeeds"), 8);
    let errors: Vec<&String> = lines
        .iter()
        .filter(|line| line.starts_with("ERROR"))
        .collect();
    assert_eq!(
        errors,
        [
            "ERROR tasker: [Tasker] adapter default_logger::PanickingAdapter panicked and was \
             isolated: panicking adapter refuses task.initialize; later panics of it are \
             counted, not logged (tasker::events::panic_counts) component=adapter \
             default_logger::PanickingAdapter panic=\"panicking adapter refuses \
             task.initialize\""
        ]
    );
    // The report follows the logger's line for the event that first panicked; every event is
    // still logged.
    assert!(lines[0].starts_with(" INFO tasker: [Tasker] task.initialize event="));
    assert!(lines[1].starts_with("ERROR"));
    assert_eq!(lines.len(), 12 + 1);
    assert_eq!(
        tasker::events::panic_counts().get("adapter default_logger::PanickingAdapter"),
        12
    );
}

#[test]
fn use_adapters_links_a_crate_this_binary_never_names() {
    let _guard = configured(|config| config.telemetry_adapters = vec![TelemetryAdapter::Default]);

    assert_eq!(
        tasker::telemetry::registered_adapters(),
        [
            "default_logger::PanickingAdapter",
            "metrics-v2",
            "tasker_test_adapters::AuditAdapter"
        ]
    );
    tasker::configure(|config| {
        config.telemetry_adapters = vec![TelemetryAdapter::Default, TelemetryAdapter::Custom];
        config.telemetry_adapter_classes = vec!["tasker_test_adapters::AuditAdapter".into()];
    })
    .expect("the adapter crate is linked, so its class is registered");
}
