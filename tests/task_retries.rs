//! `#[task(max_attempts, backoff_ms, timeout_ms)]` run inline: a failed attempt is retried with
//! `task.retry` and `task.backoff` between its attempts, each attempt re-running the body with
//! its own steps; a timed-out attempt fails with class `tasker::Timeout`; `task.error` comes
//! once, after the last attempt.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use support::{assert_one_task, lines};
use tasker::testing::validate_task;
use tasker::testing::Capture;

#[derive(Debug, thiserror::Error, PartialEq)]
enum OrderError {
    #[error("the warehouse is busy (try {0})")]
    Busy(u32),
    #[error(transparent)]
    Timeout(#[from] tasker::TaskTimeout),
}

#[tasker::step(max_attempts = 1)]
async fn count(order: u32) -> u32 {
    order + 1
}

static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);

/// Fails its first two attempts (waits of 1 ms, then 2 ms). The argument is by value: each
/// attempt gets a clone.
#[tasker::task(
    name = "flaky_order",
    version = "1.0.0",
    max_attempts = 3,
    backoff_ms = 1,
    jitter = 0.0
)]
async fn flaky_order(order: Vec<u32>) -> Result<u32, OrderError> {
    let total = count(order.iter().sum()).await;
    let call = FLAKY_CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    if call < 3 {
        return Err(OrderError::Busy(call));
    }
    Ok(total)
}

#[tokio::test]
async fn a_failed_attempt_is_retried_after_its_backoff_until_one_succeeds() {
    let capture = Capture::new();
    assert_eq!(capture.wrap(flaky_order(vec![2, 3])).await, Ok(6));
    let events = capture.events();
    assert_one_task(&events, true);
    assert_eq!(validate_task(&events), Ok(()));
    assert_eq!(
        lines(&events),
        [
            "task.initialize success",
            "task.start",
            "task.handle",
            "step.handle count 1/1",
            "step.complete count 1",
            "task.retry 2/3 task_retries::OrderError \"the warehouse is busy (try 1)\"",
            "task.backoff 2 1ms",
            "task.handle",
            "step.handle count 1/1",
            "step.complete count 1",
            "task.retry 3/3 task_retries::OrderError \"the warehouse is busy (try 2)\"",
            "task.backoff 3 2ms",
            "task.handle",
            "step.handle count 1/1",
            "step.complete count 1",
            "task.finalize completed=1 failed=0 skipped=0",
            "task.complete",
        ]
    );
}

#[tasker::task(
    name = "always_busy",
    version = "1.0.0",
    max_attempts = 2,
    backoff_ms = 1,
    jitter = 0.0
)]
fn always_busy(order: u32) -> Result<u32, OrderError> {
    Err(OrderError::Busy(order))
}

#[test]
fn the_last_failed_attempt_ends_the_task_with_task_error() {
    let capture = Capture::new();
    assert_eq!(capture.run(|| always_busy(7)), Err(OrderError::Busy(7)));
    let events = capture.events();
    assert_eq!(validate_task(&events), Ok(()));
    assert_eq!(
        lines(&events),
        [
            "task.initialize success",
            "task.start",
            "task.handle",
            "task.retry 2/2 task_retries::OrderError \"the warehouse is busy (try 7)\"",
            "task.backoff 2 1ms",
            "task.handle",
            "task.finalize completed=0 failed=0 skipped=0",
            "task.error task_retries::OrderError \"the warehouse is busy (try 7)\" steps=[]",
        ]
    );
}

#[tasker::step(max_attempts = 1)]
async fn wait_for_ever() {
    std::future::pending::<()>().await
}

static HUNG_CALLS: AtomicU32 = AtomicU32::new(0);

/// Hangs in its first attempt; the second returns at once.
#[tasker::task(
    name = "hangs_once",
    version = "1.0.0",
    timeout_ms = 50,
    max_attempts = 2,
    backoff_ms = 1,
    jitter = 0.0
)]
async fn hangs_once() -> Result<u32, OrderError> {
    if HUNG_CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
        wait_for_ever().await;
    }
    Ok(1)
}

#[tokio::test]
async fn a_timed_out_attempt_cancels_its_steps_and_is_retried() {
    let capture = Capture::new();
    let result = tokio::time::timeout(Duration::from_secs(10), capture.wrap(hangs_once()))
        .await
        .expect("the timeout stops the hung attempt");
    assert_eq!(result, Ok(1));
    let events = capture.events();
    assert_eq!(validate_task(&events), Ok(()));
    assert_eq!(
        lines(&events),
        [
            "task.initialize success",
            "task.start",
            "task.handle",
            "step.handle wait_for_ever 1/1",
            "step.error wait_for_ever 1 tasker::Cancelled \"step `wait_for_ever` was dropped before it finished\" retryable=false",
            "task.retry 2/2 tasker::Timeout \"task `hangs_once` timed out after 50 ms (attempt 1)\"",
            "task.backoff 2 1ms",
            "task.handle",
            "task.finalize completed=0 failed=0 skipped=0",
            "task.complete",
        ]
    );
}

/// Hangs in every attempt: one attempt, then `task.error` with class `tasker::Timeout`.
#[tasker::task(name = "always_hangs", version = "1.0.0", timeout_ms = 30)]
async fn always_hangs() -> Result<u32, OrderError> {
    wait_for_ever().await;
    Ok(1)
}

#[tokio::test]
async fn a_task_whose_only_attempt_times_out_ends_with_a_timeout_error() {
    let capture = Capture::new();
    let result = tokio::time::timeout(Duration::from_secs(10), capture.wrap(always_hangs()))
        .await
        .expect("the timeout stops the hung task");
    let timeout = tasker::TaskTimeout {
        task: "always_hangs",
        attempt: 1,
        limit: Duration::from_millis(30),
    };
    assert_eq!(result, Err(OrderError::Timeout(timeout)));
    let events = capture.events();
    assert_eq!(validate_task(&events), Ok(()));
    assert_eq!(
        lines(&events),
        [
            "task.initialize success",
            "task.start",
            "task.handle",
            "step.handle wait_for_ever 1/1",
            "step.error wait_for_ever 1 tasker::Cancelled \"step `wait_for_ever` was dropped before it finished\" retryable=false",
            "task.finalize completed=0 failed=1 skipped=0",
            "task.error tasker::Timeout \"task `always_hangs` timed out after 30 ms (attempt 1)\" steps=[\"wait_for_ever\"]",
        ]
    );
}

mod queued {
    //! The same keys on a task run by a worker from the embedded `MemoryQueue` (which keeps no
    //! checkpoints: the next attempt runs its steps again).

    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use tasker::testing::Capture;
    use tasker::{Runtime, TaskRequest};

    use crate::support::lines;

    static CALLS: AtomicU32 = AtomicU32::new(0);

    #[tasker::step(max_attempts = 1)]
    async fn queued_count(order: u32) -> u32 {
        order + 1
    }

    #[tasker::task(
        name = "queued_flaky",
        version = "1.0.0",
        max_attempts = 2,
        backoff_ms = 20,
        jitter = 0.0
    )]
    async fn queued_flaky(order: u32) -> Result<u32, String> {
        let total = queued_count(order).await;
        if CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err("busy".to_owned());
        }
        Ok(total)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_queued_attempt_is_delivered_again_after_its_backoff() {
        let capture = Capture::new();
        capture
            .wrap(async {
                let runtime = Runtime::builder().workers(1).build().unwrap();
                let handle = runtime
                    .enqueue(TaskRequest::new("queued_flaky", &4u32).unwrap())
                    .await
                    .unwrap();
                let output = tokio::time::timeout(Duration::from_secs(10), handle.wait())
                    .await
                    .expect("the second attempt finished within 10 s")
                    .unwrap();
                assert_eq!(output, serde_json::json!(5));
                runtime.shutdown().await;
            })
            .await;
        let events = capture.events();
        assert_eq!(tasker::testing::validate_task(&events), Ok(()));
        assert_eq!(
            lines(&events),
            [
                "task.initialize success",
                "task.enqueue memory",
                "task.start",
                "task.handle",
                "step.handle queued_count 1/1",
                "step.complete queued_count 1",
                "task.retry 2/2 alloc::string::String \"busy\"",
                "task.backoff 2 20ms",
                "task.start",
                "task.handle",
                "step.handle queued_count 1/1",
                "step.complete queued_count 1",
                "task.finalize completed=1 failed=0 skipped=0",
                "task.complete",
            ]
        );
    }

    #[tasker::task(
        name = "queued_always_busy",
        version = "1.0.0",
        max_attempts = 2,
        backoff_ms = 1,
        jitter = 0.0
    )]
    async fn queued_always_busy(order: u32) -> Result<u32, String> {
        Err(format!("busy with {order}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queued_task_out_of_attempts_ends_with_its_last_error() {
        let capture = Capture::new();
        capture
            .wrap(async {
                let runtime = Runtime::builder().workers(1).build().unwrap();
                let handle = runtime
                    .enqueue(TaskRequest::new("queued_always_busy", &9u32).unwrap())
                    .await
                    .unwrap();
                let result = tokio::time::timeout(Duration::from_secs(10), handle.wait())
                    .await
                    .expect("the last attempt finished within 10 s");
                assert_eq!(
                    result,
                    Err(tasker::TaskError::Failed {
                        class: "alloc::string::String".to_owned(),
                        message: "busy with 9".to_owned(),
                    })
                );
                runtime.shutdown().await;
            })
            .await;
        let events = capture.events();
        assert_eq!(tasker::testing::validate_task(&events), Ok(()));
        assert_eq!(
            lines(&events),
            [
                "task.initialize success",
                "task.enqueue memory",
                "task.start",
                "task.handle",
                "task.retry 2/2 alloc::string::String \"busy with 9\"",
                "task.backoff 2 1ms",
                "task.start",
                "task.handle",
                "task.finalize completed=0 failed=0 skipped=0",
                "task.error alloc::string::String \"busy with 9\" steps=[]",
            ]
        );
    }
}
