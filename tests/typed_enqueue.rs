//! Enqueueing through the task function itself: `ship::request(order)` checks the input's type
//! at compile time, and the handle's `wait()` gives the task's output type. On the default
//! in-process queue, on a `MemoryQueue` kept by the program, and on SQLite.

mod support;

use serde::{Deserialize, Serialize};
use support::lines;
use tasker::queue::MemoryQueue;
use tasker::testing::Capture;
use tasker::{EnqueueError, Runtime, TaskError, TaskHandle, TaskRequest};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Order {
    id: u64,
    items: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Shipment {
    order_id: u64,
    parcels: usize,
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

#[tasker::task(name = "typed.ship", version = "2.1.0")]
async fn ship(order: Order) -> Result<Shipment, EmptyOrder> {
    let parcels = pack(&order).await?;
    Ok(Shipment {
        order_id: order.id,
        parcels,
    })
}

#[tasker::task(name = "typed.count_words", version = "1.0.0")]
fn count_words(text: String) -> usize {
    text.split_whitespace().count()
}

#[tasker::task(name = "typed.ping", version = "1.0.0")]
async fn ping() -> String {
    "pong".to_owned()
}

/// Inline calls are untouched by the struct beside the function.
#[tasker::task(name = "typed.two_arguments", version = "1.0.0")]
fn add(a: u32, b: u32) -> u32 {
    a + b
}

fn order(id: u64, items: &[&str]) -> Order {
    Order {
        id,
        items: items.iter().map(|item| item.to_string()).collect(),
    }
}

const SHIPPED: [&str; 8] = [
    "task.initialize success",
    "task.enqueue memory",
    "task.start",
    "task.handle",
    "step.handle pack 1/1",
    "step.complete pack 1",
    "task.finalize completed=1 failed=0 skipped=0",
    "task.complete",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_request_waits_for_the_task_output_type() {
    let capture = Capture::new();
    let runtime = Runtime::builder().workers(1).build().unwrap();
    let handle: TaskHandle<Shipment> = capture
        .wrap(runtime.enqueue(ship::request(order(7, &["lamp", "desk"]))))
        .await
        .unwrap();
    let task_id = handle.task_id();
    let shipment = support::within("the shipment", handle.wait()).await;
    assert_eq!(
        shipment,
        Ok(Shipment {
            order_id: 7,
            parcels: 2
        })
    );
    let events = capture.events();
    assert!(events.iter().all(|event| event.task_id() == Some(task_id)));
    assert!(events
        .iter()
        .all(|event| event.task().map(|task| (task.name, task.version))
            == Some(("typed.ship", "2.1.0"))));
    assert_eq!(lines(&events), SHIPPED);
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_request_failure_is_the_task_error() {
    let capture = Capture::new();
    let runtime = Runtime::builder().workers(1).build().unwrap();
    let handle = capture
        .wrap(runtime.enqueue(ship::request(order(9, &[]))))
        .await
        .unwrap();
    assert_eq!(
        support::within("the failure", handle.wait()).await,
        Err(TaskError::Failed {
            class: "typed_enqueue::EmptyOrder".into(),
            message: "order 9 has no items".into()
        })
    );
    assert_eq!(
        lines(&capture.events()),
        [
            "task.initialize success",
            "task.enqueue memory",
            "task.start",
            "task.handle",
            "step.handle pack 1/1",
            "step.error pack 1 typed_enqueue::EmptyOrder \"order 9 has no items\" retryable=true",
            "step.max_retries_reached pack 1/1",
            "task.finalize completed=0 failed=1 skipped=0",
            "task.error typed_enqueue::EmptyOrder \"order 9 has no items\" steps=[\"pack\"]",
        ]
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_tasks_tasks_without_input_and_by_name_requests_share_a_queue_kept_by_the_program() {
    let queue = MemoryQueue::named("kept");
    let runtime = Runtime::builder()
        .workers(2)
        .queue(queue.clone())
        .build()
        .unwrap();
    let capture = Capture::new();
    let words: TaskHandle<usize> = capture
        .wrap(runtime.enqueue(count_words::request("one two three".to_owned())))
        .await
        .unwrap();
    assert_eq!(
        support::within("the count", words.wait()).await,
        Ok(3_usize)
    );
    let pong: TaskHandle<String> = runtime.enqueue(ping::request()).await.unwrap();
    assert_eq!(
        support::within("the pong", pong.wait()).await,
        Ok("pong".to_owned())
    );
    // The by-name API stays, its handle waiting for JSON.
    let by_name: TaskHandle = runtime
        .enqueue(TaskRequest::new("typed.count_words", &"a b").unwrap())
        .await
        .unwrap();
    assert_eq!(
        support::within("the by-name count", by_name.wait()).await,
        Ok(serde_json::json!(2))
    );
    assert_eq!(
        lines(&capture.events()),
        [
            "task.initialize success",
            "task.enqueue kept",
            "task.start",
            "task.handle",
            "task.finalize completed=0 failed=0 skipped=0",
            "task.complete",
        ]
    );
    assert!(queue.is_empty());
    assert_eq!(add(2, 3), 5);
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_request_bypasses_only_skippable_steps() {
    let runtime = Runtime::builder().workers(1).build().unwrap();
    let refused = runtime
        .enqueue(ship::request(order(1, &["a"])).bypass_steps(["pack"]))
        .await
        .unwrap_err();
    assert_eq!(
        refused,
        EnqueueError::NotSkippable {
            step: "pack".into(),
            skippable: Vec::new(),
        }
    );
    runtime.shutdown().await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_request_through_sqlite() {
    let dir = std::env::temp_dir().join(format!("tasker-typed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let queue = tasker::queue::SqliteQueue::builder(dir.join("queue.db"))
        .name("typed-sqlite")
        .open()
        .await
        .unwrap();
    let runtime = Runtime::builder()
        .workers(1)
        .queue(queue.clone())
        .build()
        .unwrap();
    let capture = Capture::new();
    let handle = capture
        .wrap(runtime.enqueue(ship::request(order(11, &["chair"]))))
        .await
        .unwrap();
    let task_id = handle.task_id();
    assert_eq!(
        support::within("the shipment", handle.wait()).await,
        Ok(Shipment {
            order_id: 11,
            parcels: 1
        })
    );
    let mut expected = SHIPPED.to_vec();
    expected[1] = "task.enqueue typed-sqlite";
    assert_eq!(lines(&capture.events()), expected);
    runtime.shutdown().await;
    // The queue kept the completion, output as JSON.
    let completion = queue.result(task_id).await.unwrap().unwrap();
    assert!(completion.succeeded);
    assert_eq!(
        completion.output,
        Some(serde_json::json!({"order_id": 11, "parcels": 1}))
    );
    drop(queue);
    let _ = std::fs::remove_dir_all(&dir);
}
