//! The events of a step call: success, retries, exhausted retries, `retry_if`, `skip_if`,
//! timeouts, panics, cancellation, fields, steps outside any task, sync and async, methods.

mod support;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::Context;
use std::time::Duration;

use support::{assert_one_task, lines};
use tasker::testing::Capture;

#[derive(Debug, thiserror::Error, PartialEq)]
enum PaymentError {
    #[error("card declined")]
    Declined,
    #[error("gateway unavailable")]
    Unavailable,
}

fn is_transient(error: &PaymentError) -> bool {
    *error == PaymentError::Unavailable
}

/// Fails with `Unavailable` while `failures` is positive, counting down.
#[tasker::step(max_attempts = 3, backoff_ms = 10)]
async fn charge(failures: &AtomicU32) -> Result<u32, PaymentError> {
    if failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Err(PaymentError::Unavailable);
    }
    Ok(4200)
}

#[tasker::step(max_attempts = 3, backoff_ms = 1, retry_if = is_transient)]
async fn charge_declined() -> Result<u32, PaymentError> {
    Err(PaymentError::Declined)
}

#[tasker::step(max_attempts = 1)]
fn validate(total: u32) -> Result<u32, String> {
    if total == 0 {
        return Err("empty order".to_owned());
    }
    Ok(total)
}

fn no_gift(gift: &bool) -> bool {
    !*gift
}

#[tasker::step(skip_if = no_gift)]
async fn gift_wrap(gift: bool) -> Option<&'static str> {
    let _ = gift;
    Some("wrapped")
}

#[tasker::step(max_attempts = 2, backoff_ms = 1, timeout_ms = 20)]
async fn slow_lookup() -> anyhow::Result<u32> {
    futures_pending().await;
    Ok(1)
}

async fn futures_pending() {
    std::future::pending::<()>().await
}

#[tasker::step(max_attempts = 1)]
fn explode() -> u32 {
    panic!("boom")
}

#[tasker::step(max_attempts = 1, fields(order_id, card_token = token))]
fn tokenize(order_id: u64, token: &str) -> usize {
    token.len() + order_id as usize
}

struct Inventory {
    reserved: u32,
}

impl Inventory {
    #[tasker::step]
    fn available(&self) -> u32 {
        100 - self.reserved
    }

    #[tasker::step(name = "reserve_inventory")]
    async fn reserve(&mut self, count: u32) -> Result<u32, PaymentError> {
        self.reserved += count;
        Ok(self.reserved)
    }
}

#[tokio::test]
async fn successful_step_emits_handle_then_complete() {
    let capture = Capture::new();
    let failures = AtomicU32::new(0);
    assert_eq!(capture.wrap(charge(&failures)).await, Ok(4200));
    let events = capture.events();
    assert_eq!(
        lines(&events),
        ["step.handle charge 1/3", "step.complete charge 1"]
    );
    assert_eq!(events[0].step_id(), events[1].step_id());
    assert!(events[0].step_id().is_some());
}

#[tokio::test]
async fn failed_attempts_schedule_retries_with_backoff_until_success() {
    let capture = Capture::new();
    let failures = AtomicU32::new(2);
    assert_eq!(capture.wrap(charge(&failures)).await, Ok(4200));
    let events = capture.events();
    let class = "step_lifecycle::PaymentError";
    assert_eq!(
        lines(&events),
        [
            "step.handle charge 1/3".to_owned(),
            format!("step.error charge 1 {class} \"gateway unavailable\" retryable=true"),
            "step.retry charge 2/3".to_owned(),
            "step.backoff charge 2".to_owned(),
            "step.handle charge 2/3".to_owned(),
            format!("step.error charge 2 {class} \"gateway unavailable\" retryable=true"),
            "step.retry charge 3/3".to_owned(),
            "step.backoff charge 3".to_owned(),
            "step.handle charge 3/3".to_owned(),
            "step.complete charge 3".to_owned(),
        ]
    );
    // backoff_ms = 10, multiplier 2, jitter 10 %: 9..=11 ms, then 18..=22 ms.
    let waits: Vec<Duration> = events.iter().filter_map(|e| e.backoff()).collect();
    assert!(
        (9..=11).contains(&waits[0].as_millis()),
        "first wait {waits:?}"
    );
    assert!(
        (18..=22).contains(&waits[1].as_millis()),
        "second wait {waits:?}"
    );
    assert!(events.iter().all(|e| e.step_id() == events[0].step_id()));
}

#[tokio::test]
async fn exhausted_retries_end_with_max_retries_reached() {
    let capture = Capture::new();
    let failures = AtomicU32::new(5);
    assert_eq!(
        capture.wrap(charge(&failures)).await,
        Err(PaymentError::Unavailable)
    );
    let names = capture.names();
    assert_eq!(
        names,
        [
            "step.handle",
            "step.error",
            "step.retry",
            "step.backoff",
            "step.handle",
            "step.error",
            "step.retry",
            "step.backoff",
            "step.handle",
            "step.error",
            "step.max_retries_reached",
        ]
    );
    assert_eq!(
        lines(&capture.events()).last().unwrap(),
        "step.max_retries_reached charge 3/3"
    );
    assert_eq!(failures.load(Ordering::SeqCst), 2, "three attempts ran");
}

#[tokio::test]
async fn retry_if_stops_on_a_permanent_error() {
    let capture = Capture::new();
    assert_eq!(
        capture.wrap(charge_declined()).await,
        Err(PaymentError::Declined)
    );
    assert_eq!(
        lines(&capture.events()),
        [
            "step.handle charge_declined 1/3",
            "step.error charge_declined 1 step_lifecycle::PaymentError \"card declined\" retryable=false",
        ]
    );
}

#[tokio::test]
async fn skip_if_skips_and_returns_default() {
    let capture = Capture::new();
    assert_eq!(capture.wrap(gift_wrap(false)).await, None);
    assert_eq!(capture.wrap(gift_wrap(true)).await, Some("wrapped"));
    assert_eq!(
        lines(&capture.events()),
        [
            "step.skip gift_wrap skip_if",
            "step.handle gift_wrap 1/3",
            "step.complete gift_wrap 1",
        ]
    );
}

#[tokio::test]
async fn attempts_that_exceed_timeout_ms_fail_with_step_timeout() {
    let capture = Capture::new();
    let error = capture.wrap(slow_lookup()).await.unwrap_err();
    assert_eq!(
        error
            .downcast_ref::<tasker::StepTimeout>()
            .map(|t| t.attempt),
        Some(2)
    );
    assert_eq!(
        lines(&capture.events()),
        [
            "step.handle slow_lookup 1/2",
            "step.error slow_lookup 1 anyhow::Error \"step `slow_lookup` timed out after 20 ms (attempt 1)\" retryable=true",
            "step.retry slow_lookup 2/2",
            "step.backoff slow_lookup 2",
            "step.handle slow_lookup 2/2",
            "step.error slow_lookup 2 anyhow::Error \"step `slow_lookup` timed out after 20 ms (attempt 2)\" retryable=true",
            "step.max_retries_reached slow_lookup 2/2",
        ]
    );
}

#[test]
fn sync_step_outside_any_task_has_no_task_keys() {
    let capture = Capture::new();
    assert_eq!(capture.run(|| validate(12)), Ok(12));
    assert_eq!(capture.run(|| validate(0)), Err("empty order".to_owned()));
    let events = capture.events();
    assert_one_task(&events, false);
    let json = events[0].to_json();
    assert!(json["task_id"].is_null() && json["task_name"].is_null());
    assert_eq!(
        lines(&events),
        [
            "step.handle validate 1/1",
            "step.complete validate 1",
            "step.handle validate 1/1",
            "step.error validate 1 alloc::string::String \"empty order\" retryable=true",
            "step.max_retries_reached validate 1/1",
        ]
    );
}

#[test]
fn panicking_step_reports_the_panic_and_keeps_unwinding() {
    let capture = Capture::new();
    let panic = std::panic::catch_unwind(|| capture.run(explode)).unwrap_err();
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"boom"));
    assert_eq!(
        lines(&capture.events()),
        [
            "step.handle explode 1/1",
            "step.error explode 1 panic \"boom\" retryable=false",
        ]
    );
}

#[test]
fn dropped_step_future_reports_cancellation() {
    let capture = Capture::new();
    let failures = AtomicU32::new(10);
    {
        let mut future = Box::pin(capture.wrap(charge(&failures)));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // The first attempt fails; the step is now waiting out its backoff.
        assert!(future.as_mut().poll(&mut cx).is_pending());
    }
    let events = capture.events();
    assert_eq!(
        lines(&events),
        [
            "step.handle charge 1/3",
            "step.error charge 1 step_lifecycle::PaymentError \"gateway unavailable\" retryable=true",
            "step.retry charge 2/3",
            "step.backoff charge 2",
            "step.error charge 2 tasker::Cancelled \"step `charge` was dropped before it finished\" retryable=false",
        ]
    );
}

#[test]
fn fields_are_recorded_on_every_event_and_masked() {
    let capture = Capture::new();
    assert_eq!(capture.run(|| tokenize(7, "tok_123")), 14);
    for event in capture.events() {
        assert_eq!(
            event.to_json()["fields"],
            serde_json::json!({"order_id": 7, "card_token": "[FILTERED]"}),
            "{}",
            event.name()
        );
    }
}

#[tokio::test]
async fn methods_taking_self_by_reference_are_steps() {
    let capture = Capture::new();
    let mut inventory = Inventory { reserved: 0 };
    assert_eq!(capture.wrap(inventory.reserve(3)).await, Ok(3));
    assert_eq!(capture.run(|| inventory.available()), 97);
    assert_eq!(
        lines(&capture.events()),
        [
            "step.handle reserve_inventory 1/3",
            "step.complete reserve_inventory 1",
            "step.handle available 1/3",
            "step.complete available 1",
        ]
    );
}

#[test]
fn steps_are_described_at_link_time() {
    let charge = tasker::steps()
        .into_iter()
        .find(|step| step.name == "charge" && step.source.file.ends_with("step_lifecycle.rs"))
        .expect("charge is registered");
    assert_eq!(charge.policy.max_attempts, 3);
    assert_eq!(charge.policy.backoff_ms, 10);
    assert_eq!(charge.source.function, "step_lifecycle::charge");
    assert!(!charge.skippable);
    let slow = tasker::steps()
        .into_iter()
        .find(|step| step.name == "slow_lookup")
        .expect("slow_lookup is registered");
    assert_eq!(slow.timeout, Some(Duration::from_millis(20)));
}

#[test]
fn steps_run_without_telemetry_listeners_and_still_retry() {
    // No capture and no configuration: nobody listens in this thread's scope, but other tests
    // may have subscribers; the policy must hold either way.
    let calls = AtomicU32::new(0);
    #[tasker::step(max_attempts = 4, backoff_ms = 1, jitter = 0.0)]
    fn flaky(calls: &AtomicU32) -> Result<u32, String> {
        match calls.fetch_add(1, Ordering::SeqCst) {
            0..=2 => Err("not yet".into()),
            n => Ok(n),
        }
    }
    assert_eq!(flaky(&calls), Ok(3));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}
