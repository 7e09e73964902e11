//! Log correlation with Tasker's telemetry off. A plain step (one attempt, no skip, no timeout)
//! skips its whole state machine when nothing observes it; a `tracing` subscriber that takes INFO
//! spans is an observer, so the step's own `tracing` events still say which step and attempt they
//! belong to. This binary has no Tasker observer, so `events::listening()` is false throughout.

mod support;

use support::LogBuffer as Buffer;

/// The tests take turns: `tracing` caches each call site's interest when the call site first
/// registers, and a call site registering while another test's subscriber registers can keep
/// the interest it had before (the race lost the `label` line under load).
static TURNS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURNS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[tasker::step(max_attempts = 1)]
fn weigh(parcel: u32) -> u32 {
    tracing::info!(parcel, "weighing");
    parcel * 2
}

#[tasker::step(max_attempts = 1)]
async fn label(parcel: u32) -> String {
    tracing::info!(parcel, "labelling");
    format!("P-{parcel}")
}

#[test]
fn with_telemetry_off_user_events_inside_a_plain_step_still_carry_the_step_and_attempt() {
    let _turn = turn();
    assert!(!tasker::events::listening(), "this binary has no observer");
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(buffer.clone())
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .finish();
    let (weight, label) = tracing::subscriber::with_default(subscriber, || {
        let weight = weigh(21);
        let label = block_on(label(weight));
        (weight, label)
    });
    assert_eq!((weight, label.as_str()), (42, "P-42"));
    assert_eq!(
        buffer.lines(),
        [
            " INFO step{step_name=\"weigh\" attempt=1}: weighing parcel=21",
            " INFO step{step_name=\"label\" attempt=1}: labelling parcel=42",
        ]
    );
}

#[test]
fn with_telemetry_off_and_no_subscriber_a_plain_step_is_just_its_body() {
    let _turn = turn();
    assert!(!tasker::events::listening(), "this binary has no observer");
    assert_eq!(weigh(5), 10);
    assert_eq!(block_on(label(7)), "P-7");
}

/// Polls a future to completion on this thread.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}
