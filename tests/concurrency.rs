//! Concurrent steps inside a task (`join!`, `join_all`, `tasker::spawn`), nested steps, and many
//! tasks at once on a multi-threaded runtime, each with its own ordered events.

mod support;

use std::collections::HashMap;

use support::{assert_one_task, lines};
use tasker::testing::Capture;
use tasker::FutureExt;

#[tasker::step(max_attempts = 1)]
async fn reserve(order: u32) -> u32 {
    tokio::task::yield_now().await;
    order * 10
}

#[tasker::step(max_attempts = 1)]
async fn charge(order: u32) -> Result<u32, std::io::Error> {
    tokio::task::yield_now().await;
    Ok(order * 100)
}

#[tasker::step(max_attempts = 1)]
async fn ship(order: u32) -> u32 {
    order + 1
}

#[tasker::task(name = "concurrent_order", version = "1.0.0")]
async fn concurrent_order(order: u32) -> Result<u32, std::io::Error> {
    let shipped = ship(order).await;
    let (reservation, receipt) = tasker::join!(reserve(order), charge(order));
    Ok(shipped + reservation + receipt?)
}

const CONCURRENT_ORDER: [&str; 12] = [
    "task.initialize success",
    "task.start",
    "task.handle",
    "step.handle ship 1/1",
    "step.complete ship 1",
    "step.find_viable [\"reserve\", \"charge\"]",
    "step.handle reserve 1/1",
    "step.handle charge 1/1",
    "step.complete reserve 1",
    "step.complete charge 1",
    "task.finalize completed=3 failed=0 skipped=0",
    "task.complete",
];

#[tokio::test]
async fn join_announces_its_batch_before_any_step_starts() {
    let capture = Capture::new();
    assert_eq!(
        capture.wrap(concurrent_order(2)).await.unwrap(),
        3 + 20 + 200
    );
    let events = capture.events();
    assert_one_task(&events, true);
    assert_eq!(lines(&events), CONCURRENT_ORDER);
    let batch = events[5].to_json();
    assert_eq!(batch["count"], 2);
    assert!(batch.get("step_id").is_none());
}

#[tokio::test]
async fn join_all_announces_a_dynamic_batch_in_order() {
    #[tasker::task(name = "fan_out", version = "1.0.0")]
    async fn fan_out() -> Vec<u32> {
        tasker::join_all((1..=3).map(ship)).await
    }
    let capture = Capture::new();
    assert_eq!(capture.wrap(fan_out()).await, [2, 3, 4]);
    assert_eq!(
        lines(&capture.events()),
        [
            "task.initialize success",
            "task.start",
            "task.handle",
            "step.find_viable [\"ship\", \"ship\", \"ship\"]",
            "step.handle ship 1/1",
            "step.complete ship 1",
            "step.handle ship 1/1",
            "step.complete ship 1",
            "step.handle ship 1/1",
            "step.complete ship 1",
            "task.finalize completed=3 failed=0 skipped=0",
            "task.complete",
        ]
    );
}

#[tokio::test]
async fn join_outside_a_task_still_announces_its_batch() {
    let capture = Capture::new();
    let (a, b) = capture
        .wrap(async { tasker::join!(reserve(1), ship(1)) })
        .await;
    assert_eq!((a, b), (10, 2));
    let events = capture.events();
    assert_one_task(&events, false);
    assert_eq!(
        lines(&events),
        [
            "step.find_viable [\"reserve\", \"ship\"]",
            "step.handle reserve 1/1",
            "step.handle ship 1/1",
            "step.complete ship 1",
            "step.complete reserve 1",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_futures_carry_the_task() {
    #[tasker::task(name = "spawner", version = "1.0.0")]
    async fn spawner() -> u32 {
        let carried = tasker::spawn(ship(1)).await.unwrap_or_default();
        let wrapped = tokio::spawn(ship(2).in_current_task())
            .await
            .unwrap_or_default();
        carried + wrapped
    }
    let capture = Capture::new();
    assert_eq!(capture.wrap(spawner()).await, 5);
    let events = capture.events();
    assert_one_task(&events, true);
    assert_eq!(
        lines(&events),
        [
            "task.initialize success",
            "task.start",
            "task.handle",
            "step.handle ship 1/1",
            "step.complete ship 1",
            "step.handle ship 1/1",
            "step.complete ship 1",
            "task.finalize completed=2 failed=0 skipped=0",
            "task.complete",
        ]
    );
}

#[tokio::test]
async fn nested_steps_name_their_parent_step() {
    #[tasker::step(max_attempts = 1)]
    async fn outer_step() -> u32 {
        ship(1).await + ship(2).await
    }
    let capture = Capture::new();
    assert_eq!(capture.wrap(outer_step()).await, 5);
    let events = capture.events();
    assert_eq!(
        lines(&events),
        [
            "step.handle outer_step 1/1",
            "step.handle ship 1/1",
            "step.complete ship 1",
            "step.handle ship 1/1",
            "step.complete ship 1",
            "step.complete outer_step 1",
        ]
    );
    let outer_id = events[0].step_id();
    assert_eq!(events[1].step().and_then(|s| s.parent_id), outer_id);
    assert_eq!(events[3].step().and_then(|s| s.parent_id), outer_id);
    assert_eq!(events[0].step().and_then(|s| s.parent_id), None);
    assert_ne!(events[1].step_id(), events[3].step_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_tasks_each_keep_their_own_ordered_events() {
    let capture = Capture::new();
    let handles: Vec<_> = (0..1000)
        .map(|order| tokio::spawn(capture.wrap(concurrent_order(order))))
        .collect();
    for (order, handle) in handles.into_iter().enumerate() {
        let order = order as u32;
        assert_eq!(handle.await.unwrap().unwrap(), order + 1 + order * 110);
    }
    let events = capture.events();
    assert_eq!(events.len(), 1000 * 12);
    let mut by_task: HashMap<_, Vec<_>> = HashMap::new();
    for event in events {
        let task = event.task_id().expect("every event belongs to a task");
        by_task.entry(task).or_default().push(event);
    }
    assert_eq!(by_task.len(), 1000);
    for task_events in by_task.values() {
        assert_eq!(lines(task_events), CONCURRENT_ORDER);
    }
}

/// Fails its first attempt, then backs off for a second; reports each attempt on `progress`.
#[tasker::step(max_attempts = 2, backoff_ms = 1000, jitter = 0.0)]
fn flaky_sync(
    progress: &std::sync::mpsc::Sender<&'static str>,
    tries: &std::sync::atomic::AtomicU32,
) -> Result<u32, std::io::Error> {
    let attempt = tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    if attempt == 1 {
        let _ = progress.send("attempt 1 failed");
        return Err(std::io::Error::other("card network down"));
    }
    let _ = progress.send("attempt 2 succeeded");
    Ok(attempt)
}

const FLAKY_SYNC: [&str; 6] = [
    "step.handle flaky_sync 1/2",
    "step.error flaky_sync 1 std::io::error::Error \"card network down\" retryable=true",
    "step.retry flaky_sync 2/2",
    "step.backoff flaky_sync 2",
    "step.handle flaky_sync 2/2",
    "step.complete flaky_sync 2",
];

/// Every wait of the two tests below.
const DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

#[test]
fn a_sync_step_backing_off_on_a_tokio_worker_lets_other_tasks_run() {
    // One worker: while the step backs off, only a freed worker can run the other task.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let capture = Capture::new();
    let (progress, reports) = std::sync::mpsc::channel();
    let step_progress = progress.clone();
    let step = runtime.spawn(capture.wrap(async move {
        let tries = std::sync::atomic::AtomicU32::new(0);
        flaky_sync(&step_progress, &tries).map_err(|error| error.to_string())
    }));
    assert_eq!(reports.recv_timeout(DEADLINE), Ok("attempt 1 failed"));
    runtime.spawn(async move {
        let _ = progress.send("other task ran");
    });
    assert_eq!(
        reports.recv_timeout(DEADLINE),
        Ok("other task ran"),
        "the other task ran only after the backoff: the step slept on the worker"
    );
    assert_eq!(reports.recv_timeout(DEADLINE), Ok("attempt 2 succeeded"));
    let output = runtime.block_on(async { tokio::time::timeout(DEADLINE, step).await });
    assert_eq!(output.expect("the step ended").expect("no panic"), Ok(2));
    assert_eq!(lines(&capture.events()), FLAKY_SYNC);
}

#[test]
fn a_sync_step_backing_off_on_a_current_thread_runtime_keeps_its_events() {
    // No other thread can take the runtime's tasks here: the backoff blocks it (documented on
    // `backoff_sync`) but must neither panic nor change the step's events.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let capture = Capture::new();
    let (progress, reports) = std::sync::mpsc::channel();
    let step = capture.wrap(async move {
        let tries = std::sync::atomic::AtomicU32::new(0);
        flaky_sync(&progress, &tries).map_err(|error| error.to_string())
    });
    let output = runtime.block_on(async { tokio::time::timeout(DEADLINE, step).await });
    assert_eq!(output.expect("the step ended"), Ok(2));
    assert_eq!(
        reports.try_iter().collect::<Vec<_>>(),
        ["attempt 1 failed", "attempt 2 succeeded"]
    );
    assert_eq!(lines(&capture.events()), FLAKY_SYNC);
}
