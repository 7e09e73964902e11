//! Exporter faults, against real OTLP exports on loopback: an endpoint that accepts connections
//! and never answers, and a collector that goes away mid-run and comes back. Tasks finish with
//! the results they have without telemetry, export errors are counted, and the spans of the tasks
//! run after the recovery reach the collector. (A collector that refuses connections outright:
//! `an_unreachable_collector_leaves_tasks_unaffected` in `tests/otel_export.rs`.)
#![cfg(feature = "opentelemetry")]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tasker::telemetry::otel::{OtelGuard, OtlpSettings};
use tasker::TelemetryAdapter;

/// The adapter is configured process-wide: the tests of this binary take turns.
static EXCLUSIVE: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    EXCLUSIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, thiserror::Error)]
#[error("out of stock")]
struct OutOfStock;

#[tasker::step(max_attempts = 2, backoff_ms = 1, jitter = 0.0)]
async fn reserve(order_id: u64) -> Result<u64, OutOfStock> {
    if order_id % 3 == 0 {
        return Err(OutOfStock);
    }
    Ok(order_id)
}

#[tasker::task(name = "before_fault", version = "1.0.0")]
async fn before_fault(order_id: u64) -> Result<u64, OutOfStock> {
    reserve(order_id).await
}

#[tasker::task(name = "during_fault", version = "1.0.0")]
async fn during_fault(order_id: u64) -> Result<u64, OutOfStock> {
    reserve(order_id).await
}

#[tasker::task(name = "after_recovery", version = "1.0.0")]
async fn after_recovery(order_id: u64) -> Result<u64, OutOfStock> {
    reserve(order_id).await
}

type Task =
    fn(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, OutOfStock>>>>;

/// Runs `task` for orders 1..=count; the results and the wall time.
fn run(task: Task, count: u64) -> (Vec<Result<u64, String>>, Duration) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let started = Instant::now();
        let mut results = Vec::new();
        for order in 1..=count {
            results.push(task(order).await.map_err(|error| error.to_string()));
        }
        (results, started.elapsed())
    })
}

fn before(
    order: u64,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, OutOfStock>>>> {
    Box::pin(before_fault(order))
}
fn during(
    order: u64,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, OutOfStock>>>> {
    Box::pin(during_fault(order))
}
fn after(
    order: u64,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, OutOfStock>>>> {
    Box::pin(after_recovery(order))
}

/// The results the tasks give with telemetry off.
fn expected(count: u64) -> Vec<Result<u64, String>> {
    unconfigure();
    run(before, count).0
}

fn guard(protocol: &str, address: SocketAddr) -> OtelGuard {
    let mut settings = OtlpSettings::from_lookup(|name| match name {
        "OTEL_EXPORTER_OTLP_PROTOCOL" => Some(protocol.to_owned()),
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some(format!("http://{address}")),
        "OTEL_SERVICE_NAME" => Some("exporter-faults".to_owned()),
        _ => None,
    })
    .expect("valid settings");
    settings.timeout = Duration::from_secs(1);
    settings.shutdown_timeout = Duration::from_secs(3);
    let guard = settings
        .build()
        .expect("building does not contact the collector");
    tasker::configure(|config| {
        config.enable_telemetry = true;
        config.telemetry_adapters = vec![TelemetryAdapter::OpenTelemetry];
        guard.configure(config);
    })
    .expect("the OpenTelemetry adapter is available");
    guard
}

fn unconfigure() {
    let _ = tasker::configure(|config| {
        config.enable_telemetry = false;
        config.telemetry_adapters = vec![TelemetryAdapter::Default];
        config.tracer_provider = None;
        config.meter_provider = None;
    });
}

/// A listener that accepts every connection and never answers.
struct Hanging {
    address: SocketAddr,
    _held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Hanging {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let address = listener.local_addr().expect("its address");
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let keep = held.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                keep.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(stream);
            }
        });
        Self {
            address,
            _held: held,
        }
    }
}

#[test]
fn a_collector_that_never_answers_slows_no_task_and_its_errors_are_counted() {
    let _exclusive = exclusive();
    let expected = expected(30);
    for protocol in ["http/protobuf", "grpc"] {
        let hanging = Hanging::start();
        let guard = guard(protocol, hanging.address);
        let (results, took) = run(during, 30);
        assert_eq!(results, expected, "{protocol}: identical results");
        assert!(
            took < Duration::from_secs(5),
            "{protocol}: exports happen in the background, yet the tasks took {took:?}"
        );
        guard.flush(); // waits for one export, which times out
        assert!(
            guard.export_errors().spans > 0,
            "{protocol}: the timed-out export is counted: {:?}",
            guard.export_errors()
        );
        unconfigure();
        let dropping = Instant::now();
        drop(guard);
        assert!(
            dropping.elapsed() < Duration::from_secs(15),
            "{protocol}: shutting down is bounded"
        );
    }
}

/// An OTLP/HTTP receiver of spans on `address`, serving until dropped.
struct Collector {
    spans: Arc<Mutex<Vec<String>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Collector {
    fn start(address: SocketAddr, spans: Arc<Mutex<Vec<String>>>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the collector");
        // Tokio's listener reuses the address, so the collector comes back on its port.
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(address))
            .expect("the collector's port");
        let sink = spans.clone();
        let app = axum::Router::new()
            .route(
                "/v1/traces",
                axum::routing::post(move |body: Bytes| async move {
                    let request =
                        ExportTraceServiceRequest::decode(body).expect("a protobuf trace request");
                    let mut spans = sink.lock().unwrap_or_else(PoisonError::into_inner);
                    for resource in request.resource_spans {
                        for scope in resource.scope_spans {
                            spans.extend(scope.spans.into_iter().map(|span| span.name));
                        }
                    }
                    (
                        [("content-type", "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }),
            )
            .route(
                "/v1/metrics",
                axum::routing::post(|| async { [("content-type", "application/x-protobuf")] }),
            );
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self {
            spans,
            _runtime: runtime,
        }
    }

    fn count(&self, name: &str) -> usize {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|span| *span == name)
            .count()
    }
}

fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_collector_that_goes_away_and_comes_back_gets_the_spans_after_its_return() {
    let _exclusive = exclusive();
    let expected = expected(10);
    let address = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a loopback port");
    let spans: Arc<Mutex<Vec<String>>> = Arc::default();
    let collector = Collector::start(address, spans.clone());
    let guard = guard("http/protobuf", address);

    let (results, _) = run(before, 10);
    assert_eq!(results, expected);
    guard.flush();
    eventually("the spans before the fault", || {
        collector.count("task.before_fault") == 10
    });
    assert_eq!(guard.export_errors().spans, 0);

    drop(collector); // the collector goes away
    let (results, took) = run(during, 10);
    assert_eq!(results, expected, "identical results while it is away");
    assert!(took < Duration::from_secs(5), "tasks took {took:?}");
    guard.flush();
    let errors = guard.export_errors().spans;
    assert!(errors > 0, "the failed exports are counted");

    let collector = Collector::start(address, spans.clone()); // … and comes back
    let (results, _) = run(after, 10);
    assert_eq!(results, expected);
    guard.flush();
    eventually("the spans after the recovery", || {
        collector.count("task.after_recovery") == 10
    });
    assert_eq!(
        collector.count("step.reserve"),
        20 + collector.count("task.during_fault")
    );
    assert_eq!(
        guard.export_errors().spans,
        errors,
        "no export failed after the recovery"
    );
    unconfigure();
    drop(guard);
}
