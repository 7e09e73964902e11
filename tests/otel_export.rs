//! End to end over OTLP: a real receiver on 127.0.0.1 (tonic for gRPC, axum for HTTP/protobuf,
//! both built from the official `opentelemetry-proto` types) gets the spans and metrics that the
//! real `opentelemetry-otlp` exporters send, configured the way `init_from_env` reads the
//! `OTEL_*` variables. And an unreachable collector leaves tasks unaffected.
#![cfg(feature = "opentelemetry")]

mod otel_support;
mod support;

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tasker::telemetry::otel::{OtelGuard, OtlpSettings};
use tasker::TelemetryAdapter;

/// The adapter is configured process-wide: the tests of this binary take turns.
static EXCLUSIVE: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    EXCLUSIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, thiserror::Error)]
#[error("card declined")]
struct CardDeclined;

#[tasker::step(max_attempts = 2, backoff_ms = 1, jitter = 0.0)]
async fn charge(order_id: u64) -> Result<u64, CardDeclined> {
    if order_id % 2 == 0 {
        return Err(CardDeclined);
    }
    Ok(order_id * 100)
}

#[tasker::step(max_attempts = 1)]
fn validate(order_id: u64) -> Result<u64, CardDeclined> {
    Ok(order_id)
}

#[tasker::task(name = "checkout", version = "3.1.0")]
async fn checkout(order_id: u64) -> Result<u64, CardDeclined> {
    let order_id = validate(order_id)?;
    charge(order_id).await
}

/// What the receiver got: every request, and the `x-tasker-test` header of each.
#[derive(Clone, Default)]
struct Received {
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    headers: Arc<Mutex<Vec<String>>>,
}

impl Received {
    fn spans(&self) -> Vec<Span> {
        let traces = self.traces.lock().unwrap_or_else(PoisonError::into_inner);
        traces
            .iter()
            .flat_map(|request| &request.resource_spans)
            .flat_map(|resource| &resource.scope_spans)
            .flat_map(|scope| scope.spans.clone())
            .collect()
    }

    fn metric_names(&self) -> Vec<String> {
        let metrics = self.metrics.lock().unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<String> = metrics
            .iter()
            .flat_map(|request| &request.resource_metrics)
            .flat_map(|resource| &resource.scope_metrics)
            .flat_map(|scope| &scope.metrics)
            .map(|metric| metric.name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn service_names(&self) -> Vec<String> {
        let traces = self.traces.lock().unwrap_or_else(PoisonError::into_inner);
        traces
            .iter()
            .flat_map(|request| &request.resource_spans)
            .filter_map(|resource| resource.resource.as_ref())
            .filter_map(|resource| string(&resource.attributes, "service.name"))
            .collect()
    }

    fn header(&self, value: Option<&str>) {
        self.headers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(value.unwrap_or("<missing>").to_owned());
    }
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.header(
            request
                .metadata()
                .get("x-tasker-test")
                .and_then(|value| value.to_str().ok()),
        );
        self.traces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// A receiver serving on 127.0.0.1, on a runtime of its own that stops when it is dropped.
struct Receiver {
    address: SocketAddr,
    received: Received,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    fn start(protocol: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the receiver");
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        listener.set_nonblocking(true).expect("non-blocking");
        let address = listener.local_addr().expect("its address");
        let received = Received::default();
        let _entered = runtime.enter();
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        match protocol {
            "grpc" => {
                let server = tonic::transport::Server::builder()
                    .add_service(TraceServiceServer::new(received.clone()))
                    .add_service(MetricsServiceServer::new(received.clone()))
                    .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
                runtime.spawn(server);
            }
            _ => {
                let traces = received.clone();
                let metrics = received.clone();
                let app = axum::Router::new()
                    .route(
                        "/v1/traces",
                        axum::routing::post(move |headers: HeaderMap, body: Bytes| async move {
                            traces.header(
                                headers
                                    .get("x-tasker-test")
                                    .and_then(|value| value.to_str().ok()),
                            );
                            let request = ExportTraceServiceRequest::decode(body)
                                .expect("a protobuf trace request");
                            traces
                                .traces
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(request);
                            protobuf(ExportTraceServiceResponse::default().encode_to_vec())
                        }),
                    )
                    .route(
                        "/v1/metrics",
                        axum::routing::post(move |body: Bytes| async move {
                            let request = ExportMetricsServiceRequest::decode(body)
                                .expect("a protobuf metrics request");
                            metrics
                                .metrics
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(request);
                            protobuf(ExportMetricsServiceResponse::default().encode_to_vec())
                        }),
                    );
                runtime.spawn(async move { axum::serve(listener, app).await });
            }
        }
        drop(_entered);
        Self {
            address,
            received,
            _runtime: runtime,
        }
    }
}

fn protobuf(body: Vec<u8>) -> impl axum::response::IntoResponse {
    ([("content-type", "application/x-protobuf")], body)
}

fn string(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| attribute.value.as_ref()?.value.as_ref())
        .and_then(|value| match value {
            AnyValue::StringValue(text) => Some(text.clone()),
            _ => None,
        })
}

fn int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| attribute.value.as_ref()?.value.as_ref())
        .and_then(|value| match value {
            AnyValue::IntValue(int) => Some(*int),
            _ => None,
        })
}

/// Settings as `init_from_env` would read them from these variables.
fn settings(variables: &[(&str, String)]) -> OtlpSettings {
    let mut settings = OtlpSettings::from_lookup(|name| {
        variables
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
    })
    .expect("valid OTEL_* variables");
    // Keep a failing export short, so that the tests stay quick.
    settings.timeout = Duration::from_secs(2);
    settings.shutdown_timeout = Duration::from_secs(5);
    settings
}

fn configure(guard: &OtelGuard) {
    tasker::configure(|config| {
        config.enable_telemetry = true;
        config.telemetry_adapters = vec![TelemetryAdapter::OpenTelemetry];
        guard.configure(config);
    })
    .expect("the OpenTelemetry adapter is available");
}

fn unconfigure() {
    let _ = tasker::configure(|config| {
        config.enable_telemetry = false;
        config.telemetry_adapters = vec![TelemetryAdapter::Default];
        config.tracer_provider = None;
        config.meter_provider = None;
    });
}

fn run_checkouts(orders: std::ops::RangeInclusive<u64>) -> Vec<Result<u64, String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut results = Vec::new();
        for order in orders {
            results.push(checkout(order).await.map_err(|error| error.to_string()));
        }
        results
    })
}

/// Waits (bounded) until `done` holds.
fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Exports to a `protocol` receiver (`grpc` or `http`), with `OTEL_EXPORTER_OTLP_PROTOCOL` set
/// to `variable`, or unset.
fn exports_spans_and_metrics_over(protocol: &str, variable: Option<&str>) {
    let _exclusive = exclusive();
    let receiver = Receiver::start(protocol);
    let mut variables = vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", receiver.address),
        ),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-tasker-test=yes".to_owned()),
        ("OTEL_SERVICE_NAME", format!("checkout-{protocol}")),
    ];
    if let Some(variable) = variable {
        variables.push(("OTEL_EXPORTER_OTLP_PROTOCOL", variable.to_owned()));
    }
    let guard = settings(&variables).build().expect("OTLP providers");
    configure(&guard);

    let results = run_checkouts(1..=2);
    assert_eq!(results, [Ok(100), Err("card declined".to_owned())]);
    guard.flush();
    eventually("six spans", || receiver.received.spans().len() == 6);
    eventually("the metrics", || {
        receiver.received.metric_names().len() == 4
    });
    unconfigure();

    let received = &receiver.received;
    assert_eq!(
        received.metric_names(),
        [
            "tasker.step.attempts",
            "tasker.step.duration",
            "tasker.step.retries",
            "tasker.task.duration"
        ]
    );
    assert!(received
        .service_names()
        .iter()
        .all(|name| *name == format!("checkout-{protocol}")));
    assert!(received
        .headers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .all(|header| header == "yes"));

    let spans = received.spans();
    let mut names: Vec<&str> = spans.iter().map(|span| &*span.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "step.charge",
            "step.charge",
            "step.validate",
            "step.validate",
            "task.checkout",
            "task.checkout"
        ]
    );
    for task in spans.iter().filter(|span| span.name == "task.checkout") {
        assert!(task.parent_span_id.is_empty(), "a task span is a root");
        let steps: Vec<&Span> = spans
            .iter()
            .filter(|span| span.parent_span_id == task.span_id)
            .collect();
        assert_eq!(steps.len(), 2, "two step spans under each task span");
        for step in &steps {
            assert_eq!(step.trace_id, task.trace_id, "one trace per task");
            assert_eq!(
                string(&step.attributes, "tasker.task.id"),
                string(&task.attributes, "tasker.task.id")
            );
        }
        let charge = steps
            .iter()
            .find(|span| span.name == "step.charge")
            .expect("a charge span");
        let declined = string(&task.attributes, "tasker.task.result").as_deref() == Some("failure");
        assert_eq!(
            int(&charge.attributes, "tasker.step.attempts"),
            Some(if declined { 2 } else { 1 }),
            "ints stay ints over the wire"
        );
        let events: Vec<&str> = charge.events.iter().map(|event| &*event.name).collect();
        if declined {
            assert_eq!(
                events,
                [
                    "step.handle",
                    "step.error",
                    "step.retry",
                    "step.backoff",
                    "step.handle",
                    "step.error",
                    "exception",
                    "step.max_retries_reached"
                ]
            );
            let status = charge.status.as_ref().expect("a status");
            assert_eq!(status.message, "card declined");
        } else {
            assert_eq!(events, ["step.handle", "step.complete"]);
        }
    }
    assert_eq!(guard.export_errors().spans, 0);
}

#[test]
fn spans_and_metrics_reach_an_otlp_grpc_receiver() {
    exports_spans_and_metrics_over("grpc", Some("grpc"));
}

#[test]
fn spans_and_metrics_reach_an_otlp_http_protobuf_receiver() {
    exports_spans_and_metrics_over("http", Some("http/protobuf"));
}

#[test]
fn with_no_protocol_variable_the_exporter_speaks_http_protobuf() {
    exports_spans_and_metrics_over("http", None);
}

/// Every WARN line of this binary, from any thread (exports fail on the exporters' threads).
fn warnings() -> &'static support::LogBuffer {
    static WARNINGS: std::sync::OnceLock<support::LogBuffer> = std::sync::OnceLock::new();
    WARNINGS.get_or_init(|| {
        let buffer = support::LogBuffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .with_ansi(false)
            .without_time()
            .with_max_level(tracing::Level::WARN)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        buffer
    })
}

#[test]
fn the_first_failed_export_names_endpoint_protocol_and_variable_once() {
    let _exclusive = exclusive();
    let warnings = warnings();
    // The usual mistake the other way round: a gRPC collector, the default (HTTP) exporter.
    let receiver = Receiver::start("grpc");
    let endpoint = format!("http://{}/v1/traces", receiver.address);
    let guard = settings(&[(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://{}", receiver.address),
    )])
    .build()
    .expect("OTLP providers");
    configure(&guard);
    for _ in 0..2 {
        let results = run_checkouts(1..=1);
        assert_eq!(results, [Ok(100)]);
        guard.flush();
    }
    unconfigure();
    assert_eq!(guard.export_errors().spans, 2, "both flushes failed");
    assert!(receiver.received.spans().is_empty());

    let lines = warnings.lines_containing(&endpoint);
    let [line] = lines.as_slice() else {
        panic!("one warning for {endpoint}, said once: {lines:#?}");
    };
    let prefix = format!(
        " WARN tasker: [Tasker] exporting spans over OTLP to {endpoint} with protocol \
         http/protobuf failed: "
    );
    let suffix = "; check that a collector listens there and speaks http/protobuf, or set \
                  OTEL_EXPORTER_OTLP_PROTOCOL (`http/protobuf`, usually port 4318, or `grpc`, \
                  usually port 4317) and OTEL_EXPORTER_OTLP_ENDPOINT to match it; tasks are not \
                  affected, and further export errors are counted (OtelGuard::export_errors) \
                  but not logged";
    assert!(
        line.starts_with(&prefix) && line.ends_with(suffix),
        "{line}"
    );
    let cause = &line[prefix.len()..line.len() - suffix.len()];
    assert!(
        !cause.is_empty(),
        "the exporter's own error is kept: {line}"
    );
}

#[test]
fn an_unreachable_collector_leaves_tasks_unaffected() {
    let _exclusive = exclusive();
    let expected = {
        unconfigure();
        run_checkouts(1..=20)
    };
    for protocol in ["grpc", "http/protobuf"] {
        // A port that was free a moment ago: nothing listens there.
        let closed = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a loopback port");
        let guard = settings(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{closed}")),
        ])
        .build()
        .expect("building the providers does not contact the collector");
        configure(&guard);

        let started = Instant::now();
        let results = run_checkouts(1..=20);
        let took = started.elapsed();
        assert_eq!(results, expected, "{protocol}: identical results");
        // Twenty tasks take milliseconds; exports happen in the background, so even a generous
        // bound is far below one export timeout per task.
        assert!(
            took < Duration::from_secs(10),
            "{protocol}: tasks took {took:?}"
        );

        guard.flush();
        let errors = guard.export_errors();
        assert!(
            errors.spans > 0,
            "{protocol}: span export errors are counted"
        );
        unconfigure();
        let dropping = Instant::now();
        drop(guard);
        assert!(
            dropping.elapsed() < Duration::from_secs(30),
            "{protocol}: shutting down is bounded"
        );
    }
}
