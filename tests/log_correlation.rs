//! A user's own `tracing` events inside a step say which task, step and attempt they belong to;
//! with the OpenTelemetry adapter, log records bridged by `opentelemetry-appender-tracing` carry
//! the trace and span ids of the step's span.

mod support;

use std::sync::Mutex;

use support::LogBuffer as Buffer;
use tasker::testing::Capture;

static FAILURES: Mutex<u32> = Mutex::new(1);

#[tasker::step(max_attempts = 2, backoff_ms = 1)]
fn charge_card(amount: u32) -> Result<u32, String> {
    tracing::info!(amount, "charging the card");
    let mut failures = FAILURES.lock().unwrap();
    if *failures > 0 {
        *failures -= 1;
        return Err("gateway timeout".into());
    }
    Ok(amount)
}

#[tasker::task(name = "log_correlation_checkout", version = "1.0.0")]
fn checkout(amount: u32) -> Result<u32, String> {
    charge_card(amount)
}

#[test]
fn user_events_inside_a_retried_step_carry_the_task_step_and_attempt() {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(buffer.clone())
        .with_ansi(false)
        .without_time()
        .finish();
    let capture = Capture::new();
    let result = tracing::subscriber::with_default(subscriber, || capture.run(|| checkout(42)));
    assert_eq!(result, Ok(42));
    let task_id = capture.task_ids()[0];
    let step_id = capture.events()[3]
        .step_id()
        .expect("step.handle has a step id");
    let output = buffer.lines().join("\n");
    let lines: Vec<&str> = output
        .lines()
        .filter(|line| line.contains("charging the card"))
        .collect();
    assert_eq!(lines.len(), 2, "{output}");
    for (index, line) in lines.iter().enumerate() {
        let expected = format!(
            " INFO step{{task_id={task_id} task_name=\"log_correlation_checkout\" step_id={step_id} \
             step_name=\"charge_card\" attempt={}}}: log_correlation: charging the card amount=42",
            index + 1
        );
        assert_eq!(*line, expected);
    }
}

#[tasker::step(max_attempts = 1)]
fn double(value: u32) -> u32 {
    tracing::info!(value, "doubling");
    value * 2
}

#[test]
fn without_a_subscriber_a_step_runs_as_usual() {
    // No subscriber on this thread: the attempt span goes nowhere and the step's result and
    // events are unchanged. (Whether the span is `Span::none()` depends on other threads'
    // subscribers in this test binary, so only the behaviour is asserted.)
    let capture = Capture::new();
    assert_eq!(capture.run(|| double(21)), 42);
    capture.assert_names(&["step.handle", "step.complete"]);
}

#[cfg(feature = "opentelemetry")]
mod opentelemetry_logs {
    use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
    use opentelemetry_sdk::logs::{InMemoryLogExporter, SdkLoggerProvider};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tasker::TelemetryAdapter;
    use tracing_subscriber::layer::SubscriberExt;

    /// The adapter is configured process-wide: these tests take turns.
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[tasker::step(max_attempts = 1)]
    fn reserve(items: u32) -> u32 {
        tracing::info!(items, "reserving stock");
        items
    }

    #[test]
    fn bridged_log_records_carry_the_ids_of_the_step_span() {
        bridged_log_records_carry_the_ids_of_the_step_span_with(false);
    }

    #[test]
    fn bridged_log_records_carry_the_ids_of_the_step_span_with_the_direct_export() {
        bridged_log_records_carry_the_ids_of_the_step_span_with(true);
    }

    /// The step's span made by the SDK provider's tracer, or by the direct export from ids the
    /// adapter picked itself: either way the log record names the span that is exported.
    fn bridged_log_records_carry_the_ids_of_the_step_span_with(direct: bool) {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let spans = InMemorySpanExporter::default();
        let tracer_provider = SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build();
        let direct_export = direct.then(|| {
            tasker::telemetry::otel::DirectExport::builder(spans.clone())
                .build()
                .expect("the direct export starts")
        });
        let handle: tasker::telemetry::otel::TracerProviderHandle = match &direct_export {
            Some(export) => export.clone().into(),
            None => tracer_provider.clone().into(),
        };
        let logs = InMemoryLogExporter::default();
        let logger_provider = SdkLoggerProvider::builder()
            .with_simple_exporter(logs.clone())
            .build();
        tasker::configure(|config| {
            config.enable_telemetry = true;
            config.telemetry_adapters = vec![TelemetryAdapter::OpenTelemetry];
            config.tracer_provider = Some(handle);
        })
        .expect("the OpenTelemetry adapter is available");
        let subscriber =
            tracing_subscriber::registry().with(OpenTelemetryTracingBridge::new(&logger_provider));
        let reserved = tracing::subscriber::with_default(subscriber, || reserve(3));
        tasker::configure(|config| {
            config.enable_telemetry = false;
            config.tracer_provider = None;
        })
        .expect("telemetry turns off");
        assert_eq!(reserved, 3);
        if let Some(export) = &direct_export {
            assert!(export.flush(), "the direct export flushed");
        }

        let finished = spans.get_finished_spans().expect("spans are readable");
        let step = finished
            .iter()
            .find(|span| span.name == "step.reserve")
            .expect("the step's span");
        let records = logs.get_emitted_logs().expect("logs are readable");
        let record = records
            .iter()
            .find(|log| {
                log.record
                    .body()
                    .is_some_and(|body| format!("{body:?}").contains("reserving stock"))
            })
            .expect("the user's log record");
        let context = record.record.trace_context().expect("a trace context");
        assert_eq!(context.trace_id, step.span_context.trace_id());
        assert_eq!(context.span_id, step.span_context.span_id());
    }
}
