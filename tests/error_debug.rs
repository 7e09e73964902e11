//! `fn main() -> Result<(), Box<dyn Error>>` prints an error's `Debug` form: every public error
//! shows `Type::Variant: <its message>` there, so the fix in the message is what users read.

use std::error::Error;

use tasker::queue::CheckpointError;
use tasker::queue::{EnvelopeError, LeaseId, QueueError, TerminalEventError};
use tasker::telemetry::{EventKind, RecordError};
use tasker::{
    BuildError, ConfigError, EnqueueError, RequestError, RunError, StepTimeout, TaskError,
    TaskTimeout, TelemetryAdapter,
};

/// The `Debug` form `fn main` would print, next to the expected one.
fn debug_is(error: &dyn Error, expected_prefix: &str) {
    let debug = format!("{error:?}");
    assert_eq!(debug, format!("{expected_prefix}: {error}"));
}

#[test]
fn unknown_adapter_class_debug_names_the_fix() {
    let error = tasker::configure(|config| {
        config.enable_telemetry = false;
        config.telemetry_adapters = vec![TelemetryAdapter::Custom];
        config.telemetry_adapter_classes = vec!["audit_adapter::AuditAdapter".into()];
    })
    .unwrap_err();
    let boxed: Box<dyn Error> = Box::new(error);
    assert_eq!(
        format!("{boxed:?}"),
        "ConfigError::UnknownAdapterClass: no custom telemetry adapter is registered as \
         `audit_adapter::AuditAdapter`; no custom adapter is registered in this program (a crate \
         that registers adapters but is never referenced is not linked: add \
         `tasker::use_adapters!(that_crate);`)"
    );
}

#[test]
fn every_public_error_debug_shows_its_message() {
    let serde_error = || serde_json::from_str::<u32>("x").unwrap_err();
    let cases: Vec<(Box<dyn Error>, &str)> = vec![
        (
            Box::new(ConfigError::EmptyFilterParameter),
            "ConfigError::EmptyFilterParameter",
        ),
        (
            Box::new("nope".parse::<TelemetryAdapter>().unwrap_err()),
            "ConfigError::UnknownAdapter",
        ),
        (
            Box::new(tasker::telemetry::record("task.flagged", ()).unwrap_err()),
            "RecordError::ReservedName",
        ),
        (
            Box::new(RecordError::Payload {
                name: "app.x".into(),
                source: serde_error(),
            }),
            "RecordError::Payload",
        ),
        (
            Box::new("task.nope".parse::<EventKind>().unwrap_err()),
            "UnknownEventKind",
        ),
        (
            Box::new(
                "yaml"
                    .parse::<tasker::telemetry::adapters::LogFormat>()
                    .unwrap_err(),
            ),
            "UnknownLogFormat",
        ),
        (
            Box::new(
                "rainbow"
                    .parse::<tasker::telemetry::adapters::ColorChoice>()
                    .unwrap_err(),
            ),
            "UnknownColorChoice",
        ),
        (
            Box::new(BuildError::NoTokioRuntime),
            "BuildError::NoTokioRuntime",
        ),
        (
            Box::new(EnqueueError::UnknownTask {
                name: "nope".into(),
                registered: vec!["checkout".into()],
            }),
            "EnqueueError::UnknownTask",
        ),
        (
            Box::new(EnqueueError::Queue(QueueError::Closed("orders".into()))),
            "EnqueueError::Queue",
        ),
        (Box::new(TaskError::Abandoned), "TaskError::Abandoned"),
        (
            Box::new(QueueError::LeaseLost(LeaseId(7))),
            "QueueError::LeaseLost",
        ),
        (
            Box::new(QueueError::Backend("down".into())),
            "QueueError::Backend",
        ),
        (
            Box::new(EnvelopeError::Malformed(serde_error())),
            "EnvelopeError::Malformed",
        ),
        (
            Box::new(EnvelopeError::TooLarge { size: 2, limit: 1 }),
            "EnvelopeError::TooLarge",
        ),
        (
            Box::new(RequestError::Context {
                name: "checkout".into(),
                source: serde_error(),
            }),
            "RequestError::Context",
        ),
        (
            Box::new(TerminalEventError {
                task_id: "t1".into(),
                reason: "not an object".into(),
            }),
            "TerminalEventError",
        ),
        (
            Box::new(StepTimeout {
                step: "charge",
                limit: std::time::Duration::from_millis(5),
                attempt: 1,
            }),
            "StepTimeout",
        ),
        (
            Box::new(TaskTimeout {
                task: "checkout",
                limit: std::time::Duration::from_millis(5),
                attempt: 2,
            }),
            "TaskTimeout",
        ),
        (
            Box::new(CheckpointError::Backend("the table is gone".into())),
            "CheckpointError::Backend",
        ),
        (
            Box::new(RunError::NoWorkers {
                queue: "orders".into(),
            }),
            "RunError::NoWorkers",
        ),
        (
            Box::new(
                tasker::testing::validate_task(&[])
                    .err()
                    .unwrap_or_else(|| panic!("an empty sequence breaks the grammar")),
            ),
            "Violation",
        ),
    ];
    for (error, prefix) in &cases {
        debug_is(error.as_ref(), prefix);
    }
}

#[cfg(feature = "opentelemetry")]
#[test]
fn otel_init_error_debug_shows_its_message() {
    let error = tasker::telemetry::otel::OtlpSettings::from_lookup(|name| {
        (name == "OTEL_EXPORTER_OTLP_PROTOCOL").then(|| "carrier-pigeon".to_owned())
    })
    .unwrap_err();
    debug_is(&error, "OtelInitError::InvalidEnvironment");
}

#[cfg(feature = "opentelemetry")]
#[test]
fn direct_export_error_debug_shows_its_message() {
    let error = tasker::telemetry::otel::DirectExport::builder(
        opentelemetry_sdk::trace::InMemorySpanExporter::default(),
    )
    .with_max_export_batch_size(0)
    .build()
    .unwrap_err();
    debug_is(&error, "DirectExportError::Zero");
}
