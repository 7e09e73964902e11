//! The events of a task run inline: success, failure with the failed steps named, panics,
//! cancellation, nested calls, sync and async tasks, registration.

mod support;

use std::future::Future;
use std::task::Context;

use support::{assert_one_task, lines};
use tasker::testing::Capture;

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("out of stock: {sku}")]
struct OutOfStock {
    sku: &'static str,
}

#[tasker::step(max_attempts = 1)]
async fn reserve(sku: &'static str) -> Result<u32, OutOfStock> {
    if sku == "gone" {
        return Err(OutOfStock { sku });
    }
    Ok(1)
}

#[tasker::step(max_attempts = 1)]
async fn notify(email: &str) -> usize {
    email.len()
}

/// A helper that is not a step: its steps still belong to the task.
async fn reserve_all(skus: &[&'static str]) -> Result<u32, OutOfStock> {
    let mut total = 0;
    for sku in skus {
        total += reserve(sku).await?;
    }
    Ok(total)
}

#[tasker::task(name = "order_fulfillment", version = "2.1.0")]
async fn fulfill(skus: Vec<&'static str>) -> Result<u32, OutOfStock> {
    let reserved = reserve_all(&skus).await?;
    notify("ada@example.com").await;
    Ok(reserved)
}

#[tasker::task(name = "sync_report", version = "1.0.0")]
fn report(lines: &[u32]) -> u32 {
    lines.iter().sum()
}

#[tasker::task(name = "exploding", version = "1.0.0")]
async fn exploding() -> u32 {
    panic!("kaboom")
}

#[tasker::step(max_attempts = 1)]
async fn hang() {
    std::future::pending::<()>().await
}

#[tasker::task(name = "waiting", version = "1.0.0")]
async fn waiting() -> Result<(), OutOfStock> {
    reserve("slow").await?;
    hang().await;
    Ok(())
}

#[tokio::test]
async fn successful_task_emits_the_whole_lifecycle_around_its_steps() {
    let capture = Capture::new();
    assert_eq!(capture.wrap(fulfill(vec!["a", "b"])).await, Ok(2));
    let events = capture.events();
    assert_one_task(&events, true);
    assert_eq!(
        lines(&events),
        [
            "task.initialize success",
            "task.start",
            "task.handle",
            "step.handle reserve 1/1",
            "step.complete reserve 1",
            "step.handle reserve 1/1",
            "step.complete reserve 1",
            "step.handle notify 1/1",
            "step.complete notify 1",
            "task.finalize completed=3 failed=0 skipped=0",
            "task.complete",
        ]
    );
    let json = events[0].to_json();
    assert_eq!(json["task_name"], "order_fulfillment");
    assert_eq!(json["task_version"], "2.1.0");
    assert!(events.last().unwrap().duration().is_some());
}

#[tokio::test]
async fn failed_task_names_its_error_and_failed_steps() {
    let capture = Capture::new();
    assert_eq!(
        capture.wrap(fulfill(vec!["a", "gone"])).await,
        Err(OutOfStock { sku: "gone" })
    );
    assert_eq!(
        lines(&capture.events()),
        [
            "task.initialize success",
            "task.start",
            "task.handle",
            "step.handle reserve 1/1",
            "step.complete reserve 1",
            "step.handle reserve 1/1",
            "step.error reserve 1 task_lifecycle::OutOfStock \"out of stock: gone\" retryable=true",
            "step.max_retries_reached reserve 1/1",
            "task.finalize completed=1 failed=1 skipped=0",
            "task.error task_lifecycle::OutOfStock \"out of stock: gone\" steps=[\"reserve\"]",
        ]
    );
}

#[test]
fn sync_task_runs_inline() {
    let capture = Capture::new();
    assert_eq!(capture.run(|| report(&[1, 2, 3])), 6);
    assert_eq!(
        lines(&capture.events()),
        [
            "task.initialize success",
            "task.start",
            "task.handle",
            "task.finalize completed=0 failed=0 skipped=0",
            "task.complete",
        ]
    );
}

#[tokio::test]
async fn panicking_task_reports_the_panic_and_keeps_unwinding() {
    let capture = Capture::new();
    let joined = tokio::spawn(capture.wrap(exploding())).await;
    let panic = joined.unwrap_err().into_panic();
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"kaboom"));
    assert_eq!(
        lines(&capture.events()),
        [
            "task.initialize success",
            "task.start",
            "task.handle",
            "task.finalize completed=0 failed=0 skipped=0",
            "task.error panic \"kaboom\" steps=[]",
        ]
    );
}

#[test]
fn dropped_task_future_cancels_its_steps_then_itself() {
    let capture = Capture::new();
    {
        let mut future = Box::pin(capture.wrap(waiting()));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(future.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(
        lines(&capture.events()),
        [
            "task.initialize success",
            "task.start",
            "task.handle",
            "step.handle reserve 1/1",
            "step.complete reserve 1",
            "step.handle hang 1/1",
            "step.error hang 1 tasker::Cancelled \"step `hang` was dropped before it finished\" retryable=false",
            "task.finalize completed=1 failed=1 skipped=0",
            "task.error tasker::Cancelled \"task `waiting` was dropped before it finished\" steps=[\"hang\"]",
        ]
    );
}

#[tokio::test]
async fn tasks_called_inside_tasks_are_separate_runs() {
    #[tasker::task(name = "outer", version = "1.0.0")]
    async fn outer() -> u32 {
        report(&[4, 5])
    }
    let capture = Capture::new();
    assert_eq!(capture.wrap(outer()).await, 9);
    let events = capture.events();
    let ids = capture.task_ids();
    assert_eq!(ids.len(), 2);
    let names: Vec<_> = events.iter().map(|e| e.task_name().unwrap()).collect();
    assert_eq!(
        names,
        [
            "outer",
            "outer",
            "outer",
            "sync_report",
            "sync_report",
            "sync_report",
            "sync_report",
            "sync_report",
            "outer",
            "outer"
        ]
    );
}

#[test]
fn tasks_are_described_at_link_time() {
    let task = tasker::tasks()
        .into_iter()
        .find(|task| task.name == "order_fulfillment")
        .expect("registered");
    assert_eq!(task.version, "2.1.0");
    assert_eq!(task.source.function, "task_lifecycle::fulfill");
    assert!(task.source.file.ends_with("task_lifecycle.rs"));
    assert!(task.source.line > 0);
}

#[test]
fn task_version_defaults_to_the_crate_version() {
    #[tasker::task]
    fn unversioned() {}
    let capture = Capture::new();
    capture.run(unversioned);
    assert_eq!(
        capture.events()[0].task().map(|t| (t.name, t.version)),
        Some(("unversioned", env!("CARGO_PKG_VERSION")))
    );
}
