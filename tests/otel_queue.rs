//! The OpenTelemetry adapter across a queue: the enqueuing side's `enqueue task.<name>`
//! PRODUCER span, the W3C context the envelope carries, the worker's CONSUMER `task.<name>`
//! span continuing it (or a new trace for an invalid context), a delivery after one that died
//! linking to that one's span, and `tasker.task.queue_latency`.
#![cfg(feature = "opentelemetry")]

mod otel_support;

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
use support::LogBuffer as Buffer;
use tasker::queue::{
    BoxFuture, Claim, Completion, Envelope, LeaseId, MemoryQueue, Queue, QueueError, RunTrace,
};
use tasker::telemetry::otel::{held_producer_context_count, open_span_count, MeterProviderHandle};
use tasker::telemetry::propagation::{self, TraceContext};
use tasker::{Runtime, TaskRequest};

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
        assert!(support::within("a task's outcome", handle.wait())
            .await
            .is_ok());
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

/// Counts the calls of `hand_over`: the first one never finishes.
static HANDED_OVER: AtomicU32 = AtomicU32::new(0);

#[tasker::step(max_attempts = 1)]
async fn hand_over(parcel: &Parcel) -> Result<u32, EmptyParcel> {
    if HANDED_OVER.fetch_add(1, Ordering::SeqCst) == 0 {
        std::future::pending::<()>().await;
    }
    Ok(parcel.items)
}

#[tasker::task(name = "relay_parcel", version = "1.0.0")]
async fn relay_parcel(parcel: Parcel) -> Result<u32, EmptyParcel> {
    hand_over(&parcel).await
}

/// Waits (at most 30 s) until `done` holds.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "waited 30 s for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The spans named `name`, by delivery (`tasker.delivery.attempt`), first delivery first.
fn deliveries<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    let mut found: Vec<&SpanData> = spans.iter().filter(|span| span.name == name).collect();
    found.sort_by_key(|span| text(span, "tasker.delivery.attempt"));
    found
}

/// Checks that `second` continues the producer's trace with `first` as the one link, to the
/// first delivery.
fn assert_linked(producer: &SpanData, first: &SpanData, second: &SpanData) {
    for run in [first, second] {
        assert_eq!(run.span_kind, SpanKind::Consumer);
        assert_eq!(
            run.span_context.trace_id(),
            producer.span_context.trace_id(),
            "every delivery continues the original trace"
        );
        assert_eq!(run.parent_span_id, producer.span_context.span_id());
        assert_eq!(
            text(run, "tasker.task.id"),
            text(producer, "tasker.task.id")
        );
    }
    assert_eq!(text(first, "tasker.delivery.attempt"), "1");
    assert_eq!(text(second, "tasker.delivery.attempt"), "2");
    assert!(first.links.is_empty(), "a first delivery links to nothing");
    assert_eq!(second.links.len(), 1, "{:#?}", second.links);
    let link = &second.links[0];
    assert_eq!(link.span_context.span_id(), first.span_context.span_id());
    assert_eq!(link.span_context.trace_id(), first.span_context.trace_id());
    let attributes: Vec<String> = link
        .attributes
        .iter()
        .map(|kv| format!("{}={}", kv.key.as_str(), value(&kv.value)))
        .collect();
    assert_eq!(attributes, ["tasker.delivery.attempt=1"]);
    assert_eq!(text(second, "tasker.task.result"), "success");
}

#[test]
fn a_delivery_after_a_worker_died_continues_the_trace_and_links_to_the_run_that_died() {
    let otel = Otel::new();
    HANDED_OVER.store(0, Ordering::SeqCst);
    let queue = Arc::new(MemoryQueue::named("relay"));
    // The first worker's process: it takes the task and dies in its step (its Tokio runtime is
    // torn down, dropping the run).
    let first = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    first.block_on(async {
        let runtime = Runtime::builder()
            .workers(1)
            .lease(Duration::from_millis(300))
            .shared_queue(queue.clone())
            .build()
            .unwrap();
        runtime
            .enqueue(TaskRequest::new("relay_parcel", &Parcel { id: 5, items: 3 }).unwrap())
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while HANDED_OVER.load(Ordering::SeqCst) == 0 {
            assert!(
                Instant::now() < deadline,
                "the first worker never ran the step"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        std::mem::forget(runtime);
    });
    first.shutdown_timeout(Duration::from_secs(5));
    wait_until("the first delivery's span to end", || {
        otel.spans()
            .iter()
            .any(|span| span.name == "task.relay_parcel")
    });
    // Another worker takes the task once the dead one's lease has ended.
    let second = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        let runtime = Runtime::builder()
            .workers(1)
            .shared_queue(queue.clone())
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !queue.is_empty() {
            assert!(
                Instant::now() < deadline,
                "the second worker never finished"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        runtime.shutdown().await;
    });
    let spans = otel.spans();
    let producer = the(&spans, "enqueue task.relay_parcel");
    let runs = deliveries(&spans, "task.relay_parcel");
    assert_eq!(runs.len(), 2, "{spans:#?}");
    assert_eq!(text(runs[0], "tasker.task.result"), "cancellation");
    assert_linked(producer, runs[0], runs[1]);
    assert_nothing_left();
}

/// A [`MemoryQueue`] that cannot renew the first lease it hands out (its database is
/// unreachable for that one), and renews the others.
struct FirstLeaseUnrenewable {
    queue: MemoryQueue,
    first: Mutex<Option<LeaseId>>,
}

impl Queue for FirstLeaseUnrenewable {
    fn name(&self) -> &str {
        self.queue.name()
    }
    fn push(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), QueueError>> {
        self.queue.push(envelope)
    }
    fn claim(
        &self,
        lease: Duration,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Option<Claim>, QueueError>> {
        Box::pin(async move {
            let claim = self.queue.claim(lease, wait).await?;
            if let Some(claim) = &claim {
                self.first.lock().unwrap().get_or_insert(claim.lease);
            }
            Ok(claim)
        })
    }
    fn renew(&self, lease: LeaseId, duration: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
        if *self.first.lock().unwrap() == Some(lease) {
            return Box::pin(std::future::ready(Err(QueueError::Backend(
                "connection refused".to_owned(),
            ))));
        }
        self.queue.renew(lease, duration)
    }
    fn acknowledge(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), QueueError>> {
        self.queue.acknowledge(lease)
    }
    fn complete(
        &self,
        lease: LeaseId,
        completion: &Completion,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        self.queue.complete(lease, completion)
    }
    fn requeue(&self, lease: LeaseId, delay: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
        self.queue.requeue(lease, delay)
    }
    fn record_run(&self, lease: LeaseId, run: &RunTrace) -> BoxFuture<'_, Result<(), QueueError>> {
        self.queue.record_run(lease, run)
    }
}

/// Counts the calls of `hand_over_later`: the first one never finishes.
static HANDED_OVER_LATER: AtomicU32 = AtomicU32::new(0);

#[tasker::step(max_attempts = 1)]
async fn hand_over_later(parcel: &Parcel) -> Result<u32, EmptyParcel> {
    if HANDED_OVER_LATER.fetch_add(1, Ordering::SeqCst) == 0 {
        std::future::pending::<()>().await;
    }
    Ok(parcel.items)
}

#[tasker::task(name = "relay_parcel_later", version = "1.0.0")]
async fn relay_parcel_later(parcel: Parcel) -> Result<u32, EmptyParcel> {
    hand_over_later(&parcel).await
}

#[tokio::test]
async fn a_run_whose_lease_was_lost_ends_its_span_as_abandoned_and_the_next_links_to_it() {
    let otel = Otel::new();
    let queue = Arc::new(FirstLeaseUnrenewable {
        queue: MemoryQueue::named("relay"),
        first: Mutex::new(None),
    });
    let runtime = Runtime::builder()
        .workers(1)
        .lease(Duration::from_millis(300))
        .shared_queue(queue.clone())
        .build()
        .unwrap();
    let handle = runtime
        .enqueue(TaskRequest::new("relay_parcel_later", &Parcel { id: 6, items: 4 }).unwrap())
        .await
        .unwrap();
    // The first delivery's lease cannot be renewed: its worker stops it when the lease would
    // end, takes the task again once the lease has, and finishes it.
    let output = tokio::time::timeout(Duration::from_secs(30), handle.wait())
        .await
        .expect("the second delivery finished within 30 s");
    assert_eq!(output.unwrap(), serde_json::json!(4));
    runtime.shutdown().await;

    let spans = otel.spans();
    let producer = the(&spans, "enqueue task.relay_parcel_later");
    let runs = deliveries(&spans, "task.relay_parcel_later");
    assert_eq!(runs.len(), 2, "{spans:#?}");
    assert_eq!(text(runs[0], "tasker.task.result"), "abandoned");
    assert_eq!(
        runs[0].status,
        Status::Unset,
        "an abandoned run is no failure"
    );
    let events: Vec<&str> = runs[0]
        .events
        .iter()
        .map(|event| event.name.as_ref())
        .collect();
    assert_eq!(events, ["task.start", "task.handle"], "no end is reported");
    let steps = children(&spans, runs[0]);
    assert_eq!(steps.len(), 1);
    assert_eq!(text(steps[0], "tasker.step.result"), "cancellation");
    assert_linked(producer, runs[0], runs[1]);
    assert_nothing_left();
}

static RETRIED: AtomicU32 = AtomicU32::new(0);

#[tasker::task(
    name = "retried_parcel",
    version = "1.0.0",
    max_attempts = 2,
    backoff_ms = 10,
    jitter = 0.0
)]
async fn retried_parcel(parcel: Parcel) -> Result<u32, EmptyParcel> {
    if RETRIED.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err(EmptyParcel(parcel.id));
    }
    weigh(&parcel).await
}

/// A queued attempt handed back for a retry ends its delivery's span (result `abandoned`, with
/// the `task.retry` and `task.backoff` span events; no error status, since the task goes on),
/// and the next delivery's span ends the task: no span is left open.
#[tokio::test]
async fn a_queued_attempt_handed_back_for_a_retry_ends_its_deliverys_span() {
    let otel = Otel::new();
    let runtime = Runtime::builder().workers(1).build().unwrap();
    let handle = runtime
        .enqueue(
            TaskRequest::new("retried_parcel", &Parcel { id: 8, items: 2 })
                .expect("a serialisable parcel"),
        )
        .await
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(10), handle.wait())
        .await
        .expect("the second attempt finished within 10 s")
        .unwrap();
    assert_eq!(output, serde_json::json!(500));
    runtime.shutdown().await;
    let spans = otel.spans();
    let runs = deliveries(&spans, "task.retried_parcel");
    assert_eq!(runs.len(), 2, "{runs:#?}");
    let results: Vec<String> = runs
        .iter()
        .map(|run| text(run, "tasker.task.result"))
        .collect();
    assert_eq!(results, ["abandoned", "success"]);
    assert_eq!(runs[0].status, Status::Unset);
    let events: Vec<&str> = runs[0]
        .events
        .iter()
        .map(|event| event.name.as_ref())
        .collect();
    assert_eq!(
        events,
        ["task.start", "task.handle", "task.retry", "task.backoff"]
    );
    let events: Vec<&str> = runs[1]
        .events
        .iter()
        .map(|event| event.name.as_ref())
        .collect();
    assert_eq!(
        events,
        [
            "task.start",
            "task.handle",
            "task.finalize",
            "task.complete"
        ]
    );
    assert_nothing_left();
}
