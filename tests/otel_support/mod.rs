//! Shared helpers of the OpenTelemetry tests: one explicit provider per test, and an exact,
//! readable rendering of the span trees it exported.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tasker::telemetry::otel::{DirectExport, MeterProviderHandle, TracerProviderHandle};
use tasker::TelemetryAdapter;

/// The adapter is configured process-wide: the tests of one binary take turns.
static EXCLUSIVE: Mutex<()> = Mutex::new(());

/// A test's own in-memory exporter, fed by the adapter's direct export (Tasker's spans, built
/// at their end and exported in batches; [`Otel::spans`] flushes first) and by a tracer provider
/// with the simple processor (the application's own spans, exported as they end).
///
/// With `TASKER_TEST_OTEL_PATH=sdk`, the adapter is given the provider instead, so that the same
/// tests check the SDK path (spans made by the provider's tracer while they run).
pub struct Otel {
    pub exporter: InMemorySpanExporter,
    pub provider: SdkTracerProvider,
    pub direct: Option<DirectExport>,
    _exclusive: MutexGuard<'static, ()>,
}

impl Otel {
    /// Configures the OpenTelemetry adapter alone with a fresh provider.
    pub fn new() -> Self {
        Self::with_meter(None)
    }

    /// [`Otel::new`] with a meter provider as well.
    pub fn with_meter(meter_provider: Option<MeterProviderHandle>) -> Self {
        let exclusive = EXCLUSIVE.lock().unwrap_or_else(PoisonError::into_inner);
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let sdk_path = std::env::var("TASKER_TEST_OTEL_PATH").is_ok_and(|path| path == "sdk");
        let direct = (!sdk_path).then(|| {
            DirectExport::builder(exporter.clone())
                .build()
                .expect("the direct export starts")
        });
        let handle = match &direct {
            Some(direct) => TracerProviderHandle::from(direct.clone()),
            None => TracerProviderHandle::from(provider.clone()),
        };
        tasker::configure(|config| {
            // From the defaults: an earlier test's settings (`otel_metrics = false`) must not
            // leak into this one.
            *config = tasker::Configuration::default();
            config.enable_telemetry = true;
            config.telemetry_adapters = vec![TelemetryAdapter::OpenTelemetry];
            config.telemetry_adapter_classes = Vec::new();
            config.tracer_provider = Some(handle);
            config.meter_provider = meter_provider;
        })
        .expect("the OpenTelemetry adapter is available with the feature");
        Self {
            exporter,
            provider,
            direct,
            _exclusive: exclusive,
        }
    }

    /// Every span exported so far (the direct export flushed first).
    pub fn spans(&self) -> Vec<SpanData> {
        if let Some(direct) = &self.direct {
            assert!(
                direct.flush(),
                "the direct export flushed within its timeout"
            );
        }
        self.exporter
            .get_finished_spans()
            .expect("the in-memory exporter is readable")
    }
}

impl Drop for Otel {
    fn drop(&mut self) {
        let _ = tasker::configure(|config| *config = tasker::Configuration::default());
    }
}

/// An attribute value with its type visible: strings quoted, ints and floats bare.
pub fn value(value: &Value) -> String {
    match value {
        Value::String(text) => format!("{:?}", text.as_str()),
        other => other.to_string(),
    }
}

/// The value of `key` among `attributes`.
pub fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|attribute| attribute.key.as_str() == key)
        .map(|attribute| &attribute.value)
}

/// The value of `key` on `span`, as text (strings unquoted).
pub fn text(span: &SpanData, key: &str) -> String {
    attribute(&span.attributes, key)
        .map(|value| value.to_string())
        .unwrap_or_else(|| panic!("span {} has no attribute {key}", span.name))
}

/// Keys whose values vary between runs, checked by dedicated tests.
const VARYING: [&str; 6] = [
    "tasker.task.id",
    "tasker.step.id",
    "code.function.name",
    "code.file.path",
    "code.line.number",
    "duration_ms",
];

fn attributes_line(attributes: &[KeyValue]) -> String {
    let mut pairs: Vec<String> = attributes
        .iter()
        .filter(|attribute| !VARYING.contains(&attribute.key.as_str()))
        .map(|attribute| format!("{}={}", attribute.key.as_str(), value(&attribute.value)))
        .collect();
    pairs.sort();
    pairs.join(" ")
}

fn kind(kind: &SpanKind) -> &'static str {
    match kind {
        SpanKind::Internal => "internal",
        SpanKind::Client => "client",
        SpanKind::Server => "server",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
    }
}

fn status(status: &Status) -> String {
    match status {
        Status::Unset => "unset".to_owned(),
        Status::Ok => "ok".to_owned(),
        Status::Error { description } => format!("error({description:?})"),
    }
}

/// The tree of spans under `root`, one line per span (`name kind status`), one for its
/// attributes (sorted, without the varying ones), and one per span event in order (attributes in
/// recorded order, without `duration_ms`). Siblings are sorted by name; children are indented.
pub fn render_tree(spans: &[SpanData], root: &SpanData) -> Vec<String> {
    let mut lines = Vec::new();
    render(spans, root, 0, &mut lines);
    lines
}

fn render(spans: &[SpanData], span: &SpanData, depth: usize, lines: &mut Vec<String>) {
    let indent = "  ".repeat(depth);
    lines.push(format!(
        "{indent}{} {} {}",
        span.name,
        kind(&span.span_kind),
        status(&span.status)
    ));
    lines.push(format!("{indent}  @ {}", attributes_line(&span.attributes)));
    for event in span.events.iter() {
        let attributes: Vec<String> = event
            .attributes
            .iter()
            .filter(|attribute| attribute.key.as_str() != "duration_ms")
            .map(|attribute| format!("{}={}", attribute.key.as_str(), value(&attribute.value)))
            .collect();
        lines.push(
            format!("{indent}  - {} {}", event.name, attributes.join(" "))
                .trim_end()
                .to_owned(),
        );
    }
    let mut children: Vec<&SpanData> = children(spans, span);
    children.sort_by(|a, b| a.name.cmp(&b.name));
    for child in children {
        render(spans, child, depth + 1, lines);
    }
}

/// The spans whose parent is `span`.
pub fn children<'a>(spans: &'a [SpanData], span: &SpanData) -> Vec<&'a SpanData> {
    spans
        .iter()
        .filter(|candidate| {
            candidate.parent_span_id == span.span_context.span_id()
                && candidate.span_context.trace_id() == span.span_context.trace_id()
        })
        .collect()
}

/// The root spans (no parent), in export order.
pub fn roots(spans: &[SpanData]) -> Vec<&SpanData> {
    spans
        .iter()
        .filter(|span| span.parent_span_id == SpanId::INVALID)
        .collect()
}

/// The one root span named `name`.
pub fn root<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let found: Vec<_> = roots(spans)
        .into_iter()
        .filter(|span| span.name == name)
        .collect();
    assert_eq!(found.len(), 1, "one root span {name}: {found:#?}");
    found[0]
}

/// Spans grouped by trace id.
pub fn by_trace(spans: &[SpanData]) -> HashMap<TraceId, Vec<SpanData>> {
    let mut traces: HashMap<TraceId, Vec<SpanData>> = HashMap::new();
    for span in spans {
        traces
            .entry(span.span_context.trace_id())
            .or_default()
            .push(span.clone());
    }
    traces
}

/// Panics, printing both, unless the lines are equal.
#[track_caller]
pub fn assert_lines(actual: &[String], expected: &[&str]) {
    if actual != expected {
        panic!(
            "span trees differ\n--- actual\n{}\n--- expected\n{}\n",
            actual.join("\n"),
            expected.join("\n")
        );
    }
}

/// The line of this test file where `needle` first appears (1-based).
pub fn line_of(source: &str, needle: &str) -> i64 {
    source
        .lines()
        .position(|line| line.contains(needle))
        .map(|index| index as i64 + 1)
        .unwrap_or_else(|| panic!("`{needle}` is not in the source"))
}
