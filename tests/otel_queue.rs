//! The OpenTelemetry adapter across a queue: the enqueuing side's `enqueue task.<name>`
//! PRODUCER span, the W3C context the envelope carries, the worker's CONSUMER `task.<name>`
//! span continuing it (or a new trace for an invalid context), and `tasker.task.queue_latency`.
#![cfg(feature = "opentelemetry")]

mod otel_support;

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::trace::{
    FutureExt, Span as _, SpanId, SpanKind, Status, TraceContextExt, Tracer,
};
use opentelemetry::{Context as OtelContext, KeyValue};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SpanData;
use otel_support::{children, render_tree, root, text, value, Otel};
use serde::{Deserialize, Serialize};
use tasker::queue::{Envelope, MemoryQueue, Queue};
use tasker::telemetry::otel::{held_producer_context_count, open_span_count, MeterProviderHandle};
use tasker::telemetry::propagation::{self, TraceContext};
use tasker::{Runtime, TaskRequest};
use tracing_subscriber::fmt::MakeWriter;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Parcel {
    id: u64,
    items: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("parcel {0} is empty")]
struct EmptyParcel(u64);

#[tasker::step(max_attempts = 1)]
async fn weigh(parcel: &Parcel) -> Result<u32, EmptyParcel> {
    if parcel.items == 0 {
        return Err(EmptyParcel(parcel.id));
    }
    Ok(parcel.items * 250)
}

#[tasker::step(max_attempts = 1)]
async fn label(parcel: &Parcel, grams: u32) -> Result<String, EmptyParcel> {
    Ok(format!("PCL-{}-{grams}", parcel.id))
}

#[tasker::task(name = "send_parcel", version = "1.0.0")]
async fn send_parcel(parcel: Parcel) -> Result<String, EmptyParcel> {
    let grams = weigh(&parcel).await?;
    label(&parcel, grams).await
}

fn request(id: u64) -> TaskRequest {
    TaskRequest::new("send_parcel", &Parcel { id, items: 2 }).expect("a serialisable parcel")
}

/// Takes the one envelope out of `queue`, as the bytes a broker would carry.
async fn take_bytes(queue: &MemoryQueue) -> Vec<u8> {
    let claim = queue
        .claim(Duration::from_secs(30), Duration::ZERO)
        .await
        .expect("the queue answers")
        .expect("an envelope");
    let bytes = claim.envelope.encode();
    queue.acknowledge(claim.lease).await.expect("acknowledged");
    bytes
}

/// Runs `envelope` in a runtime of its own (one worker, its own queue) until it is acknowledged.
async fn run_in_worker(envelope: Envelope) {
    let queue = Arc::new(MemoryQueue::named("inbox"));
    queue.push(envelope).await.expect("pushed");
    let worker = Runtime::builder()
        .workers(1)
        .shared_queue(queue.clone())
        .build()
        .expect("a worker runtime");
    for _ in 0..500 {
        if queue.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(queue.is_empty(), "the worker ran and acknowledged the task");
    worker.shutdown().await;
}

/// An in-memory writer for `tracing_subscriber::fmt`.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;

    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

fn the<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let found: Vec<_> = spans.iter().filter(|span| span.name == name).collect();
    assert_eq!(found.len(), 1, "one span {name}: {found:#?}");
    found[0]
}

fn assert_nothing_left() {
    assert_eq!(open_span_count(), 0, "no span is left open");
    assert_eq!(
        held_producer_context_count(),
        0,
        "every producer context was handed to its envelope"
    );
}

#[tokio::test]
async fn a_worker_in_another_runtime_continues_the_producers_trace() {
    // The enqueuing process: a producer-only runtime with its own provider.
    let producer_otel = Otel::new();
    let outbox = Arc::new(MemoryQueue::named("outbox"));
    let producer = Runtime::builder()
        .workers(0)
        .shared_queue(outbox.clone())
        .build()
        .expect("a producer runtime");
    let tracer = producer_otel.provider.tracer("shop");
    let checkout = OtelContext::current_with_span(tracer.start("checkout"))
        .with_baggage([KeyValue::new("tenant", "acme")]);
    let handle = producer
        .enqueue(request(41))
        .with_context(checkout.clone())
        .await
        .expect("enqueued");
    checkout.span().end();
    assert_eq!(
        held_producer_context_count(),
        0,
        "injected into the envelope"
    );
    let bytes = take_bytes(&outbox).await;
    producer.shutdown().await;

    let producer_spans = producer_otel.spans();
    assert_eq!(producer_spans.len(), 2, "{producer_spans:#?}");
    let checkout_span = root(&producer_spans, "checkout");
    let enqueue = the(&producer_spans, "enqueue task.send_parcel");
    assert_eq!(
        render_tree(&producer_spans, checkout_span),
        [
            "checkout internal unset",
            "  @ ",
            "  enqueue task.send_parcel producer unset",
            "    @ tasker.queue=\"outbox\" tasker.task.name=\"send_parcel\" tasker.task.version=\"1.0.0\"",
            "    - task.initialize status=\"success\"",
            "    - task.enqueue queue=\"outbox\"",
        ]
    );
    assert_eq!(
        text(enqueue, "tasker.task.id"),
        handle.task_id().to_string()
    );
    drop(producer_otel);

    // The envelope carries the PRODUCER span's context, and the baggage.
    let envelope = Envelope::decode(&bytes).expect("a valid envelope");
    let carried = envelope.trace_context.clone().expect("a trace context");
    assert_eq!(
        carried.traceparent,
        format!(
            "00-{}-{}-01",
            enqueue.span_context.trace_id(),
            enqueue.span_context.span_id()
        )
    );
    assert_eq!(carried.baggage.as_deref(), Some("tenant=acme"));

    // The worker's process: another runtime, another provider, only the bytes in common.
    let worker_otel = Otel::new();
    run_in_worker(envelope).await;
    let worker_spans = worker_otel.spans();
    let task = the(&worker_spans, "task.send_parcel");
    assert_eq!(task.span_kind, SpanKind::Consumer);
    assert_eq!(
        task.span_context.trace_id(),
        checkout_span.span_context.trace_id()
    );
    assert_eq!(task.parent_span_id, enqueue.span_context.span_id());
    assert!(task.parent_span_is_remote);
    assert_eq!(text(task, "tasker.task.id"), handle.task_id().to_string());
    assert_eq!(text(task, "tasker.task.result"), "success");
    let mut steps: Vec<&str> = children(&worker_spans, task)
        .iter()
        .map(|span| span.name.as_ref())
        .collect();
    steps.sort();
    assert_eq!(steps, ["step.label", "step.weigh"]);
    assert_eq!(worker_spans.len(), 3, "{worker_spans:#?}");
    for span in &worker_spans {
        assert_eq!(
            span.span_context.trace_id(),
            enqueue.span_context.trace_id()
        );
    }
    assert_nothing_left();
}

#[tokio::test]
async fn an_invalid_traceparent_starts_a_new_trace_and_the_task_still_runs() {
    // The test's runtime has one thread: the workers' warnings land in this subscriber.
    let log = Buffer::default();
    let _subscriber = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(log.clone())
            .with_ansi(false)
            .without_time()
            .finish(),
    );
    let otel = Otel::new();
    let producer = Runtime::builder()
        .workers(0)
        .queue(MemoryQueue::named("outbox"))
        .build()
        .expect("a producer runtime");
    for id in [42, 43] {
        producer.enqueue(request(id)).await.expect("enqueued");
        let claim = producer
            .queue()
            .claim(Duration::from_secs(30), Duration::ZERO)
            .await
            .expect("the queue answers")
            .expect("an envelope");
        let mut envelope = Envelope::decode(&claim.envelope.encode()).expect("a valid envelope");
        envelope.trace_context = Some(TraceContext::new("00-not-a-trace-id-00f067aa0ba902b7-01"));
        run_in_worker(envelope).await;
    }
    producer.shutdown().await;

    let spans = otel.spans();
    let tasks: Vec<&SpanData> = spans
        .iter()
        .filter(|span| span.name == "task.send_parcel")
        .collect();
    assert_eq!(tasks.len(), 2);
    let producers: Vec<&SpanData> = spans
        .iter()
        .filter(|span| span.span_kind == SpanKind::Producer)
        .collect();
    for task in tasks {
        assert_eq!(task.span_kind, SpanKind::Consumer);
        assert_eq!(task.parent_span_id, SpanId::INVALID, "a new trace");
        assert!(task.span_context.is_valid());
        for producer in &producers {
            assert_ne!(
                producer.span_context.trace_id(),
                task.span_context.trace_id()
            );
        }
        assert_eq!(task.status, Status::Unset);
        assert_eq!(text(task, "tasker.task.result"), "success");
        assert_eq!(children(&spans, task).len(), 2);
    }
    let warnings: Vec<String> = log
        .lines()
        .into_iter()
        .filter(|line| line.contains("invalid trace context"))
        .collect();
    assert_eq!(warnings.len(), 1, "reported once: {warnings:#?}");
    assert!(
        warnings[0].starts_with(" WARN tasker:") || warnings[0].starts_with("WARN tasker:"),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].contains("00-not-a-trace-id-00f067aa0ba902b7-01"));
    assert_nothing_left();
}

#[tokio::test]
async fn queue_latency_has_a_point_per_queued_task_and_workers_continue_the_enqueue_span() {
    let exporter = InMemoryMetricExporter::default();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let otel = Otel::with_meter(Some(MeterProviderHandle::from(meter_provider.clone())));
    // Producer and workers in one runtime: the same adapter sees both sides.
    let runtime = Runtime::builder().workers(2).build().expect("a runtime");
    let mut handles = Vec::new();
    for id in 1..=3 {
        handles.push(runtime.enqueue(request(id)).await.expect("enqueued"));
    }
    for handle in handles {
        assert!(handle.wait().await.is_ok());
    }
    // An inline run is not queued: no latency.
    send_parcel(Parcel { id: 9, items: 1 })
        .await
        .expect("an inline run");
    runtime.shutdown().await;
    meter_provider.force_flush().expect("metrics flushed");

    let metrics = exporter.get_finished_metrics().expect("metrics");
    let last = metrics.last().expect("an export happened");
    let mut points = Vec::new();
    for scope in last.scope_metrics() {
        for metric in scope.metrics() {
            if metric.name() != "tasker.task.queue_latency" {
                continue;
            }
            assert_eq!(metric.unit(), "s");
            let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = metric.data() else {
                panic!("queue latency is a histogram of seconds");
            };
            for point in histogram.data_points() {
                assert!(point.sum() >= 0.0);
                let attributes: Vec<String> = point
                    .attributes()
                    .map(|kv| format!("{}={}", kv.key.as_str(), value(&kv.value)))
                    .collect();
                points.push(format!("{} count={}", attributes.join(" "), point.count()));
            }
        }
    }
    assert_eq!(points, ["tasker.task.name=\"send_parcel\" count=3"]);

    let spans = otel.spans();
    let consumers: Vec<&SpanData> = spans
        .iter()
        .filter(|span| span.span_kind == SpanKind::Consumer)
        .collect();
    assert_eq!(consumers.len(), 3);
    for consumer in consumers {
        let producer = spans
            .iter()
            .find(|span| span.span_context.span_id() == consumer.parent_span_id)
            .expect("the consumer's parent is exported too");
        assert_eq!(producer.name, "enqueue task.send_parcel");
        assert_eq!(producer.span_kind, SpanKind::Producer);
        assert_eq!(producer.parent_span_id, SpanId::INVALID, "no current span");
        assert_eq!(
            text(producer, "tasker.task.id"),
            text(consumer, "tasker.task.id")
        );
        assert_eq!(children(&spans, consumer).len(), 2);
    }
    let inline = root(&spans, "task.send_parcel");
    assert_eq!(inline.span_kind, SpanKind::Internal);
    assert_nothing_left();
}

#[tokio::test]
async fn the_propagator_follows_the_adapter_and_falls_back_to_the_current_context() {
    let otel = Otel::new();
    assert_eq!(
        propagation::propagator_context(None),
        None,
        "no current span"
    );
    let tracer = otel.provider.tracer("shop");
    let span = tracer.start("handler");
    let expected = format!(
        "00-{}-{}-01",
        span.span_context().trace_id(),
        span.span_context().span_id()
    );
    let context = OtelContext::current_with_span(span);
    {
        let _attached = context.clone().attach();
        let carried = propagation::propagator_context(None).expect("the current span");
        assert_eq!(carried.traceparent, expected);
    }
    // Without the adapter (still holding this test's turn), no propagator.
    tasker::configure(|config| config.enable_telemetry = false).expect("configured");
    {
        let _attached = context.clone().attach();
        assert_eq!(propagation::propagator_context(None), None);
    }
    context.span().end();
    drop(otel);
    assert_nothing_left();
}
