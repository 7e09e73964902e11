//! Enqueue by name: requests, envelopes through the queue, workers, errors, shutdown.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use support::lines;
use tasker::queue::{Envelope, MemoryQueue, Queue};
use tasker::telemetry::propagation::TraceContext;
use tasker::testing::Capture;
use tasker::{EnqueueError, Runtime, TaskError, TaskRequest};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Order {
    id: u64,
    items: Vec<String>,
    gift: bool,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Shipment {
    order_id: u64,
    items: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("order {0} has no items")]
struct EmptyOrder(u64);

#[tasker::step(max_attempts = 1)]
async fn pack(order: &Order) -> Result<usize, EmptyOrder> {
    if order.items.is_empty() {
        return Err(EmptyOrder(order.id));
    }
    Ok(order.items.len())
}

#[tasker::step(max_attempts = 1, skippable)]
async fn gift_wrap(order: &Order) -> Result<(), EmptyOrder> {
    let _ = order;
    Ok(())
}

#[tasker::task(name = "ship_order", version = "1.0.0")]
async fn ship_order(order: Order) -> Result<Shipment, EmptyOrder> {
    let items = pack(&order).await?;
    if order.gift {
        gift_wrap(&order).await?;
    }
    Ok(Shipment {
        order_id: order.id,
        items,
    })
}

#[tasker::task(name = "count_words", version = "1.0.0")]
fn count_words(text: String) -> usize {
    text.split_whitespace().count()
}

#[tasker::task(name = "borrowing", version = "1.0.0")]
async fn borrowing(text: &str) -> usize {
    text.len()
}

#[tasker::task(name = "exploding_job", version = "1.0.0")]
async fn exploding_job(reason: String) -> u32 {
    panic!("{reason}")
}

#[tasker::task(name = "trace_reader", version = "1.0.0")]
async fn trace_reader(_: ()) -> Option<String> {
    tasker::telemetry::propagation::current_trace_context().map(|context| context.traceparent)
}

fn order(id: u64, items: &[&str]) -> Order {
    Order {
        id,
        items: items.iter().map(|item| item.to_string()).collect(),
        gift: false,
    }
}

#[tokio::test]
async fn enqueued_task_returns_its_output_as_json() {
    let runtime = Runtime::builder().workers(2).build().unwrap();
    let handle = runtime
        .enqueue(TaskRequest::new("ship_order", &order(7, &["a", "b"])).unwrap())
        .await
        .unwrap();
    assert_eq!(
        support::within("the task's outcome", handle.wait()).await,
        Ok(serde_json::json!({"order_id": 7, "items": 2}))
    );
    let words = runtime
        .enqueue(TaskRequest::new("count_words", &"one two three").unwrap())
        .await
        .unwrap();
    assert_eq!(
        support::within("the task's outcome", words.wait()).await,
        Ok(serde_json::json!(3))
    );
    runtime.shutdown().await;
}

#[tokio::test]
async fn producer_and_worker_events_share_one_task_id_in_order() {
    let capture = Capture::new();
    let runtime = Runtime::builder().workers(1).build().unwrap();
    let handle = capture
        .wrap(runtime.enqueue(TaskRequest::new("ship_order", &order(8, &["a"])).unwrap()))
        .await
        .unwrap();
    let task_id = handle.task_id();
    support::within("the task's outcome", handle.wait())
        .await
        .unwrap();
    let events = capture.events();
    assert!(events.iter().all(|event| event.task_id() == Some(task_id)));
    assert_eq!(
        lines(&events),
        [
            "task.initialize success",
            "task.enqueue memory",
            "task.start",
            "task.handle",
            "step.handle pack 1/1",
            "step.complete pack 1",
            "task.finalize completed=1 failed=0 skipped=0",
            "task.complete",
        ]
    );
    assert_eq!(
        events[2].task().map(|task| task.origin),
        Some(tasker::telemetry::TaskOrigin::Queued)
    );
    runtime.shutdown().await;
}

#[tokio::test]
async fn failed_and_panicking_tasks_report_why() {
    let capture = Capture::new();
    let runtime = Runtime::builder().workers(1).build().unwrap();
    let failed = capture
        .wrap(runtime.enqueue(TaskRequest::new("ship_order", &order(9, &[])).unwrap()))
        .await
        .unwrap();
    assert_eq!(
        support::within("the task's outcome", failed.wait()).await,
        Err(TaskError::Failed {
            class: "runtime::EmptyOrder".into(),
            message: "order 9 has no items".into()
        })
    );
    let panicked = runtime
        .enqueue(TaskRequest::new("exploding_job", &"bad input").unwrap())
        .await
        .unwrap();
    assert_eq!(
        support::within("the task's outcome", panicked.wait()).await,
        Err(TaskError::Panicked {
            message: "bad input".into()
        })
    );
    assert_eq!(
        lines(&capture.events()).last().unwrap(),
        "task.error runtime::EmptyOrder \"order 9 has no items\" steps=[\"pack\"]"
    );
    runtime.shutdown().await;
}

#[tokio::test]
async fn bypassed_skippable_steps_emit_skip_and_do_not_run() {
    let capture = Capture::new();
    let runtime = Runtime::builder().workers(1).build().unwrap();
    let mut gift = order(10, &["a"]);
    gift.gift = true;
    let handle = capture
        .wrap(
            runtime.enqueue(
                TaskRequest::new("ship_order", &gift)
                    .unwrap()
                    .bypass_steps(["gift_wrap"]),
            ),
        )
        .await
        .unwrap();
    support::within("the task's outcome", handle.wait())
        .await
        .unwrap();
    assert_eq!(
        lines(&capture.events())[4..],
        [
            "step.handle pack 1/1",
            "step.complete pack 1",
            "step.skip gift_wrap bypassed",
            "task.finalize completed=1 failed=0 skipped=1",
            "task.complete",
        ]
    );
    runtime.shutdown().await;
}

#[tokio::test]
async fn refused_requests_emit_an_initialize_error_and_reach_no_queue() {
    let capture = Capture::new();
    let queue = std::sync::Arc::new(MemoryQueue::new());
    let runtime = Runtime::builder()
        .workers(0)
        .shared_queue(queue.clone())
        .build()
        .unwrap();
    let cases: Vec<(TaskRequest, String)> = vec![
        (
            TaskRequest::new("ship_orders", &order(1, &["a"])).unwrap(),
            "no task is registered as `ship_orders`; registered tasks are: ".to_owned(),
        ),
        (
            TaskRequest::new("ship_order", &order(1, &["a"]))
                .unwrap()
                .version("9.9.9"),
            "task `ship_order` has no version `9.9.9`; registered versions are: `1.0.0`".to_owned(),
        ),
        (
            TaskRequest::new("ship_order", &serde_json::json!({"id": "seven"})).unwrap(),
            "the context for task `ship_order` version `1.0.0` does not fit its input: invalid \
             type: string \"seven\", expected u64"
                .to_owned(),
        ),
        (
            TaskRequest::new("ship_order", &order(1, &["a"]))
                .unwrap()
                .bypass_steps(["pack"]),
            "cannot bypass `pack`: it is not `skippable` (mark it `#[tasker::step(skippable)]`); \
             skippable steps are: "
                .to_owned(),
        ),
        (
            TaskRequest::new("ship_order", &order(1, &["a"]))
                .unwrap()
                .bypass_steps(["wrap_gift"]),
            "cannot bypass `wrap_gift`: no step has that name; skippable steps are: ".to_owned(),
        ),
        (
            TaskRequest::new("borrowing", &"text").unwrap(),
            "task `borrowing` version `1.0.0` cannot be enqueued: a task runs from a queue when it \
             is a free function whose single argument is `DeserializeOwned` and whose output is \
             `Serialize` (or a `Result` whose value is)"
                .to_owned(),
        ),
    ];
    for (request, expected) in cases {
        let error: EnqueueError = capture.wrap(runtime.enqueue(request)).await.unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with(&expected), "{message}");
    }
    assert!(queue.is_empty(), "nothing reaches the queue");
    let events = capture.events();
    assert_eq!(events.len(), 6);
    for event in &events {
        let json = event.to_json();
        assert_eq!(json["event"], "task.initialize");
        assert_eq!(json["status"], "error");
        assert_eq!(json["errors"].as_array().map(Vec::len), Some(1));
    }
    // An unknown name or version has no registered identity; the other refusals name the task.
    assert!(events[0].task().is_none() && events[1].task().is_none());
    for event in &events[2..] {
        assert!(event.task_id().is_some());
    }
    assert_eq!(events[2].task_name(), Some("ship_order"));
    assert_eq!(events[5].task_name(), Some("borrowing"));
    let unknown = events[0].to_json();
    assert!(unknown["errors"][0]
        .as_str()
        .unwrap()
        .contains("`ship_order`"));
}

#[tokio::test]
async fn the_producers_trace_context_is_what_the_worker_sees() {
    let runtime = Runtime::builder().workers(1).build().unwrap();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let handle = runtime
        .enqueue(
            TaskRequest::new("trace_reader", &())
                .unwrap()
                .trace_context(Some(TraceContext {
                    traceparent: traceparent.into(),
                    tracestate: Some("vendor=1".into()),
                    baggage: None,
                })),
        )
        .await
        .unwrap();
    assert_eq!(
        support::within("the task's outcome", handle.wait()).await,
        Ok(serde_json::json!(traceparent))
    );
    runtime.shutdown().await;
}

#[tokio::test]
async fn the_envelope_is_all_a_worker_needs() {
    // A producer-only runtime and a worker runtime share nothing but encoded envelopes.
    let producer_queue = std::sync::Arc::new(MemoryQueue::named("outbox"));
    let producer = Runtime::builder()
        .workers(0)
        .shared_queue(producer_queue.clone())
        .build()
        .unwrap();
    let capture = Capture::new();
    let handle = capture
        .wrap(producer.enqueue(TaskRequest::new("ship_order", &order(11, &["x"])).unwrap()))
        .await
        .unwrap();
    let claim = producer_queue
        .claim(Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let bytes = claim.envelope.encode();
    producer_queue.acknowledge(claim.lease).await.unwrap();

    let worker_queue = std::sync::Arc::new(MemoryQueue::named("inbox"));
    worker_queue
        .push(Envelope::decode(&bytes).unwrap())
        .await
        .unwrap();
    let worker = Runtime::builder()
        .workers(1)
        .shared_queue(worker_queue.clone())
        .build()
        .unwrap();
    // The worker's events are not in the producer's scope: find them by the producer's task id.
    let task_id = handle.task_id();
    let names = std::sync::Arc::new(Mutex::new(Vec::new()));
    let subscription = tasker::events::subscribe({
        let names = names.clone();
        move |event: &tasker::telemetry::Event<'_>| {
            if event.task_id() == Some(task_id) {
                names.lock().unwrap().push(event.name().to_owned());
            }
        }
    });
    for _ in 0..200 {
        if worker_queue.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.shutdown().await;
    drop(subscription);
    assert_eq!(
        *names.lock().unwrap(),
        [
            "task.start",
            "task.handle",
            "step.handle",
            "step.complete",
            "task.finalize",
            "task.complete"
        ]
    );
    assert_eq!(capture.names(), ["task.initialize", "task.enqueue"]);
    producer.shutdown().await;
}

static RUNS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static IN_FLIGHT: AtomicU32 = AtomicU32::new(0);

#[tasker::task(name = "count_run", version = "1.0.0")]
async fn count_run(number: u32) -> u32 {
    RUNS.lock().unwrap().push(number);
    number
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tasks_through_eight_workers_run_exactly_once() {
    let runtime = Runtime::builder().workers(8).build().unwrap();
    let mut handles = Vec::with_capacity(10_000);
    for number in 0..10_000u32 {
        let request = TaskRequest::new("count_run", &number).unwrap();
        handles.push(runtime.enqueue(request).await.unwrap());
    }
    for (number, handle) in handles.into_iter().enumerate() {
        assert_eq!(
            support::within("the task's outcome", handle.wait()).await,
            Ok(serde_json::json!(number))
        );
    }
    runtime.shutdown().await;
    let mut runs = std::mem::take(&mut *RUNS.lock().unwrap());
    runs.sort_unstable();
    assert_eq!(runs, (0..10_000).collect::<Vec<_>>());
}

#[tasker::task(name = "slow_job", version = "1.0.0")]
async fn slow_job(millis: u64) -> u64 {
    IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(millis)).await;
    millis
}

#[tokio::test]
async fn shutdown_finishes_claimed_tasks_and_leaves_the_rest_queued() {
    let queue = std::sync::Arc::new(MemoryQueue::new());
    let runtime = Runtime::builder()
        .workers(2)
        .shared_queue(queue.clone())
        .build()
        .unwrap();
    let mut handles = Vec::new();
    for _ in 0..6 {
        handles.push(
            runtime
                .enqueue(TaskRequest::new("slow_job", &100u64).unwrap())
                .await
                .unwrap(),
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while IN_FLIGHT.load(Ordering::SeqCst) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "waited 30 s for: IN_FLIGHT.load(Ordering::SeqCst) < 2"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    runtime.shutdown().await;
    let mut finished = 0;
    let mut abandoned = 0;
    for handle in handles {
        match support::within("the task's outcome", handle.wait()).await {
            Ok(value) => {
                assert_eq!(value, serde_json::json!(100));
                finished += 1;
            }
            Err(TaskError::Abandoned) => abandoned += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((finished, abandoned), (2, 4));
    assert_eq!(queue.pending(), 4);
    assert_eq!(queue.len(), 4, "no lease is left behind");
}

#[tokio::test]
async fn tasks_lists_every_registered_task() {
    let names: Vec<_> = tasker::tasks()
        .into_iter()
        .map(|task| (task.name, task.version))
        .collect();
    for expected in [
        ("borrowing", "1.0.0"),
        ("count_words", "1.0.0"),
        ("ship_order", "1.0.0"),
        ("trace_reader", "1.0.0"),
    ] {
        assert!(names.contains(&expected), "{expected:?} in {names:?}");
    }
}

#[tokio::test]
async fn a_context_the_worker_cannot_read_ends_the_task_with_an_error() {
    // A producer of another version could send it; this producer's own check is bypassed by
    // pushing the envelope directly.
    let queue = std::sync::Arc::new(MemoryQueue::new());
    let runtime = Runtime::builder()
        .workers(1)
        .shared_queue(queue.clone())
        .build()
        .unwrap();
    let envelope = Envelope::new("ship_order", "1.0.0", serde_json::json!({"id": "seven"}));
    let task_id = envelope.task_id;
    let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
    let subscription = tasker::events::subscribe({
        let seen = seen.clone();
        move |event: &tasker::telemetry::Event<'_>| {
            if event.task_id() == Some(task_id) {
                seen.lock().unwrap().push(support::line(event));
            }
        }
    });
    queue.push(envelope).await.unwrap();
    for _ in 0..200 {
        if queue.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    runtime.shutdown().await;
    drop(subscription);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "task.start",
            "task.handle",
            "task.finalize completed=0 failed=0 skipped=0",
            "task.error tasker::InvalidContext \"invalid type: string \\\"seven\\\", expected u64\" steps=[]",
        ]
    );
}

/// A queue that counts the requests handed back to it.
struct CountingRequeues {
    inner: MemoryQueue,
    requeues: AtomicU32,
}

impl Queue for CountingRequeues {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn push(
        &self,
        envelope: Envelope,
    ) -> tasker::queue::BoxFuture<'_, Result<(), tasker::queue::QueueError>> {
        self.inner.push(envelope)
    }
    fn claim(
        &self,
        lease: Duration,
        wait: Duration,
    ) -> tasker::queue::BoxFuture<'_, Result<Option<tasker::queue::Claim>, tasker::queue::QueueError>>
    {
        self.inner.claim(lease, wait)
    }
    fn renew(
        &self,
        lease: tasker::queue::LeaseId,
        duration: Duration,
    ) -> tasker::queue::BoxFuture<'_, Result<(), tasker::queue::QueueError>> {
        self.inner.renew(lease, duration)
    }
    fn acknowledge(
        &self,
        lease: tasker::queue::LeaseId,
    ) -> tasker::queue::BoxFuture<'_, Result<(), tasker::queue::QueueError>> {
        self.inner.acknowledge(lease)
    }
    fn requeue(
        &self,
        lease: tasker::queue::LeaseId,
        delay: Duration,
    ) -> tasker::queue::BoxFuture<'_, Result<(), tasker::queue::QueueError>> {
        self.requeues.fetch_add(1, Ordering::SeqCst);
        self.inner.requeue(lease, delay)
    }
}

#[tokio::test]
async fn a_request_for_a_task_this_worker_does_not_know_is_handed_back_not_lost() {
    let queue = std::sync::Arc::new(CountingRequeues {
        inner: MemoryQueue::new(),
        requeues: AtomicU32::new(0),
    });
    let runtime = Runtime::builder()
        .workers(1)
        .shared_queue(queue.clone())
        .build()
        .unwrap();
    let envelope = Envelope::new("shipped_by_a_newer_version", "2.0.0", serde_json::json!({}));
    let task_id = envelope.task_id;
    queue.push(envelope).await.unwrap();
    // The worker claims it, does not know the task, and hands it back with a delay.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while queue.requeues.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "waited 30 s for: queue.requeues.load(Ordering::SeqCst) == 0"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    runtime.shutdown().await;
    assert_eq!(queue.requeues.load(Ordering::SeqCst), 1);
    let claim = queue
        .claim(Duration::from_secs(30), Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the request is still queued");
    assert_eq!(claim.envelope.task_id, task_id);
    assert_eq!(claim.envelope.delivery_attempt, 2);
}

/// A queue whose leases cannot be renewed: a slow task's lease expires while it runs.
struct NoRenewals(MemoryQueue);

impl Queue for NoRenewals {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn push(
        &self,
        envelope: Envelope,
    ) -> tasker::queue::BoxFuture<'_, Result<(), tasker::queue::QueueError>> {
        self.0.push(envelope)
    }
    fn claim(
        &self,
        lease: Duration,
        wait: Duration,
    ) -> tasker::queue::BoxFuture<'_, Result<Option<tasker::queue::Claim>, tasker::queue::QueueError>>
    {
        self.0.claim(lease, wait)
    }
    fn renew(
        &self,
        _lease: tasker::queue::LeaseId,
        _duration: Duration,
    ) -> tasker::queue::BoxFuture<'_, Result<(), tasker::queue::QueueError>> {
        Box::pin(std::future::ready(Ok(())))
    }
    fn acknowledge(
        &self,
        lease: tasker::queue::LeaseId,
    ) -> tasker::queue::BoxFuture<'_, Result<(), tasker::queue::QueueError>> {
        self.0.acknowledge(lease)
    }
    fn requeue(
        &self,
        lease: tasker::queue::LeaseId,
        delay: Duration,
    ) -> tasker::queue::BoxFuture<'_, Result<(), tasker::queue::QueueError>> {
        self.0.requeue(lease, delay)
    }
}

static SLOW_FIRST_DELIVERY: AtomicU32 = AtomicU32::new(0);

#[tasker::step(max_attempts = 1)]
async fn slow_on_first_delivery(millis: u64) -> u64 {
    if SLOW_FIRST_DELIVERY.fetch_add(1, Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(millis)).await;
    }
    millis
}

#[tasker::task(name = "lease_race", version = "1.0.0")]
async fn lease_race(millis: u64) -> u64 {
    slow_on_first_delivery(millis).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_lease_expired_reports_no_completion() {
    let queue = std::sync::Arc::new(NoRenewals(MemoryQueue::new()));
    let slow = Runtime::builder()
        .workers(1)
        .lease(Duration::from_millis(100))
        .shared_queue(queue.clone())
        .build()
        .unwrap();
    let completes = std::sync::Arc::new(AtomicU32::new(0));
    let starts = std::sync::Arc::new(AtomicU32::new(0));
    let handle = slow
        .enqueue(TaskRequest::new("lease_race", &400u64).unwrap())
        .await
        .unwrap();
    let task_id = handle.task_id();
    let subscription = tasker::events::subscribe({
        let (completes, starts) = (completes.clone(), starts.clone());
        move |event: &tasker::telemetry::Event<'_>| {
            if event.task_id() == Some(task_id) {
                match event.name() {
                    "task.complete" => completes.fetch_add(1, Ordering::SeqCst),
                    "task.start" => starts.fetch_add(1, Ordering::SeqCst),
                    _ => 0,
                };
            }
        }
    });
    // The slow worker holds the task; once its lease expires a second worker takes it over.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while starts.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "waited 30 s for: starts.load(Ordering::SeqCst) == 0"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let takeover = Runtime::builder()
        .workers(1)
        .lease(Duration::from_secs(30))
        .shared_queue(queue.clone())
        .build()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while completes.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "waited 30 s for: completes.load(Ordering::SeqCst) == 0"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The slow worker finishes its run too, but its completion is refused.
    slow.shutdown().await;
    takeover.shutdown().await;
    drop(subscription);
    assert_eq!(
        starts.load(Ordering::SeqCst),
        2,
        "both workers ran the task"
    );
    assert_eq!(
        completes.load(Ordering::SeqCst),
        1,
        "one task.complete, from the worker whose completion was accepted"
    );
    assert_eq!(SLOW_FIRST_DELIVERY.load(Ordering::SeqCst), 2);
    assert!(queue.0.is_empty());
}
