//! One violating sequence per rule, and the valid shapes the grammar must accept.

use std::borrow::Cow;
use std::time::Duration;

use uuid::Uuid;

use super::*;
use crate::context::{StepRef, TaskOrigin, TaskRef};
use crate::event::ErrorInfo;

const TASK: TaskRef = TaskRef {
    id: Uuid::from_u128(1),
    name: "order",
    version: "1.0.0",
    source: None,
    origin: TaskOrigin::Inline,
};

/// A step call named `name`; calls of the same name share an id unless `call` differs.
fn step(name: &'static str, call: u128) -> StepRef {
    let seed = name
        .bytes()
        .fold(0u128, |acc, byte| acc * 31 + u128::from(byte));
    StepRef {
        id: Uuid::from_u128(seed * 1000 + call),
        name,
        parent_id: None,
        source: None,
    }
}

fn t(details: Details<'static>) -> Event<'static> {
    Event::new(Some(TASK), None, details)
}

fn s(name: &'static str, details: Details<'static>) -> Event<'static> {
    Event::new(Some(TASK), Some(step(name, 0)), details)
}

fn init() -> Event<'static> {
    t(Details::TaskInitialize {
        status: InitializeStatus::Success,
        errors: Cow::Borrowed(&[]),
    })
}
fn refused() -> Event<'static> {
    t(Details::TaskInitialize {
        status: InitializeStatus::Error,
        errors: Cow::Owned(vec!["no such task".into()]),
    })
}
fn enqueue() -> Event<'static> {
    t(Details::TaskEnqueue {
        queue: Cow::Borrowed("memory"),
    })
}
fn start() -> Event<'static> {
    t(Details::TaskStart)
}
fn task_handle() -> Event<'static> {
    t(Details::TaskHandle)
}
fn finalize(completed_steps: u32, failed_steps: u32, skipped_steps: u32) -> Event<'static> {
    t(Details::TaskFinalize {
        completed_steps,
        failed_steps,
        skipped_steps,
    })
}
fn complete() -> Event<'static> {
    t(Details::TaskComplete {
        duration: Duration::ZERO,
    })
}
fn failed(class: &'static str) -> Event<'static> {
    t(Details::TaskError {
        duration: Duration::ZERO,
        error: ErrorInfo {
            class: Cow::Borrowed(class),
            message: Cow::Borrowed("failed"),
        },
        error_steps: Cow::Borrowed(&[]),
    })
}
fn viable(names: &'static [&'static str]) -> Event<'static> {
    t(Details::StepFindViable {
        step_names: Cow::Borrowed(names),
    })
}
fn handle(name: &'static str, attempt: u32, max_attempts: u32) -> Event<'static> {
    s(
        name,
        Details::StepHandle {
            attempt,
            max_attempts,
        },
    )
}
fn done(name: &'static str, attempt: u32) -> Event<'static> {
    s(
        name,
        Details::StepComplete {
            attempt,
            duration: Duration::ZERO,
        },
    )
}
fn error_of(
    name: &'static str,
    attempt: u32,
    retryable: bool,
    class: &'static str,
) -> Event<'static> {
    s(
        name,
        Details::StepError {
            attempt,
            error: ErrorInfo {
                class: Cow::Borrowed(class),
                message: Cow::Borrowed("boom"),
            },
            retryable,
        },
    )
}
fn error(name: &'static str, attempt: u32, retryable: bool) -> Event<'static> {
    error_of(name, attempt, retryable, "app::Error")
}
fn retry(name: &'static str, attempt: u32, max_attempts: u32) -> Event<'static> {
    s(
        name,
        Details::StepRetry {
            attempt,
            max_attempts,
        },
    )
}
fn backoff(name: &'static str, attempt: u32) -> Event<'static> {
    s(
        name,
        Details::StepBackoff {
            attempt,
            backoff: Duration::from_millis(1),
        },
    )
}
fn skip(name: &'static str) -> Event<'static> {
    s(
        name,
        Details::StepSkip {
            reason: Cow::Borrowed("skip_if"),
        },
    )
}
fn exhausted(name: &'static str, attempts: u32, max_attempts: u32) -> Event<'static> {
    s(
        name,
        Details::StepMaxRetriesReached {
            attempts,
            max_attempts,
        },
    )
}

/// `init, start, handle`, then `middle`, then `tail`.
fn task(middle: Vec<Event<'static>>, tail: Vec<Event<'static>>) -> Vec<Event<'static>> {
    let mut events = vec![init(), start(), task_handle()];
    events.extend(middle);
    events.extend(tail);
    events
}

#[track_caller]
fn assert_violation(events: &[Event<'_>], index: usize, rule: Rule) {
    match validate_task(events) {
        Ok(()) => panic!("expected {rule:?} at #{index}, the sequence validated"),
        Err(violation) => {
            assert_eq!(
                (violation.index, violation.rule),
                (index, rule),
                "{violation}"
            );
        }
    }
}

#[test]
fn a_step_that_retries_and_succeeds_validates() {
    let events = task(
        vec![
            handle("charge", 1, 3),
            error("charge", 1, true),
            retry("charge", 2, 3),
            backoff("charge", 2),
            handle("charge", 2, 3),
            done("charge", 2),
        ],
        vec![finalize(1, 0, 0), complete()],
    );
    assert_valid_task(&events);
}

#[test]
fn exhausted_non_retryable_and_skipped_steps_validate() {
    let events = task(
        vec![
            handle("a", 1, 2),
            error("a", 1, true),
            retry("a", 2, 2),
            backoff("a", 2),
            handle("a", 2, 2),
            error("a", 2, true),
            exhausted("a", 2, 2),
            handle("b", 1, 3),
            error("b", 1, false),
            skip("c"),
        ],
        vec![finalize(0, 2, 1), failed("app::Error")],
    );
    assert_valid_task(&events);
}

#[test]
fn a_batch_with_interleaved_steps_validates() {
    let events = task(
        vec![
            viable(&["a", "b"]),
            handle("a", 1, 1),
            handle("b", 1, 1),
            done("b", 1),
            done("a", 1),
        ],
        vec![finalize(2, 0, 0), complete()],
    );
    assert_valid_task(&events);
}

#[test]
fn a_queued_task_a_refused_request_and_a_redelivery_validate() {
    let queued = vec![
        init(),
        enqueue(),
        start(),
        task_handle(),
        finalize(0, 0, 0),
        complete(),
    ];
    assert_valid_task(&queued);
    assert_valid_task(&[refused()]);
    let redelivered = vec![
        init(),
        enqueue(),
        start(),
        task_handle(),
        handle("a", 1, 3),
        error("a", 1, true),
        retry("a", 2, 3),
        backoff("a", 2),
        error_of("a", 2, false, CANCELLED_CLASS),
        finalize(0, 1, 0),
        failed(CANCELLED_CLASS),
        start(),
        task_handle(),
        Event::new(
            Some(TASK),
            Some(step("a", 1)),
            Details::StepHandle {
                attempt: 1,
                max_attempts: 3,
            },
        ),
        Event::new(
            Some(TASK),
            Some(step("a", 1)),
            Details::StepComplete {
                attempt: 1,
                duration: Duration::ZERO,
            },
        ),
        finalize(1, 0, 0),
        complete(),
    ];
    assert_valid_task(&redelivered);
}

#[test]
fn custom_events_are_ignored() {
    let custom = Event::new(
        Some(TASK),
        None,
        Details::Custom {
            name: Cow::Borrowed("app.note"),
            payload: Cow::Owned(serde_json::Map::new()),
        },
    );
    let events = task(vec![custom], vec![finalize(0, 0, 0), complete()]);
    assert_valid_task(&events);
}

#[test]
fn one_task_rule() {
    let mut events = task(vec![], vec![finalize(0, 0, 0), complete()]);
    events[1] = Event::new(
        Some(TaskRef {
            id: Uuid::from_u128(2),
            ..TASK
        }),
        None,
        Details::TaskStart,
    );
    assert_violation(&events, 1, Rule::OneTask);
}

#[test]
fn initialize_first_rule() {
    assert_violation(&[start()], 0, Rule::InitializeFirst);
    assert_violation(&[], 0, Rule::InitializeFirst);
    assert_violation(&[init(), init()], 1, Rule::InitializeFirst);
}

#[test]
fn refused_alone_rule() {
    assert_violation(&[refused(), enqueue()], 1, Rule::RefusedAlone);
}

#[test]
fn enqueue_between_initialize_and_start_rule() {
    assert_violation(
        &[init(), start(), enqueue()],
        2,
        Rule::EnqueueBetweenInitializeAndStart,
    );
    assert_violation(
        &[init(), enqueue(), enqueue()],
        2,
        Rule::EnqueueBetweenInitializeAndStart,
    );
}

#[test]
fn start_once_rule() {
    assert_violation(&[init(), start(), start()], 2, Rule::StartOnce);
    // Not cancelled: no second delivery.
    let events = task(
        vec![],
        vec![finalize(0, 0, 0), failed("app::Error"), start()],
    );
    assert_violation(&events, 5, Rule::OneTerminal);
}

#[test]
fn handle_after_start_rule() {
    assert_violation(&[init(), task_handle()], 1, Rule::HandleAfterStart);
    assert_violation(
        &[init(), start(), task_handle(), task_handle()],
        3,
        Rule::HandleAfterStart,
    );
}

#[test]
fn step_inside_task_handle_rule() {
    assert_violation(
        &[init(), start(), handle("a", 1, 1)],
        2,
        Rule::StepInsideTaskHandle,
    );
    let events = task(vec![], vec![finalize(0, 0, 0), handle("a", 1, 1)]);
    assert_violation(&events, 4, Rule::StepInsideTaskHandle);
}

#[test]
fn step_begins_rule() {
    let events = task(vec![backoff("a", 2)], vec![]);
    assert_violation(&events, 3, Rule::StepBegins);
}

#[test]
fn handle_closed_rule() {
    let events = task(vec![handle("a", 1, 3), handle("a", 1, 3)], vec![]);
    assert_violation(&events, 4, Rule::HandleClosed);
    let events = task(vec![handle("a", 1, 3)], vec![finalize(0, 0, 0), complete()]);
    assert_violation(&events, 4, Rule::HandleClosed);
    let events = task(vec![done("a", 1)], vec![]);
    assert_violation(&events, 3, Rule::HandleClosed);
}

#[test]
fn attempts_consecutive_rule() {
    let events = task(
        vec![handle("a", 1, 3), error("a", 1, true), retry("a", 3, 3)],
        vec![],
    );
    assert_violation(&events, 5, Rule::AttemptsConsecutive);
    assert_violation(
        &task(vec![handle("a", 2, 3)], vec![]),
        3,
        Rule::AttemptsConsecutive,
    );
    let events = task(vec![handle("a", 1, 3), done("a", 2)], vec![]);
    assert_violation(&events, 4, Rule::AttemptsConsecutive);
    let events = task(
        vec![
            handle("a", 1, 3),
            error("a", 1, true),
            retry("a", 2, 3),
            backoff("a", 2),
            handle("a", 2, 4),
        ],
        vec![],
    );
    assert_violation(&events, 7, Rule::AttemptsConsecutive);
}

#[test]
fn retry_only_after_retryable_error_rule() {
    let events = task(
        vec![handle("a", 1, 3), error("a", 1, false), retry("a", 2, 3)],
        vec![],
    );
    assert_violation(&events, 5, Rule::RetryOnlyAfterRetryableError);
    let events = task(
        vec![handle("a", 1, 1), error("a", 1, true), retry("a", 2, 1)],
        vec![],
    );
    assert_violation(&events, 5, Rule::RetryOnlyAfterRetryableError);
    let events = task(vec![retry("a", 2, 3)], vec![]);
    assert_violation(&events, 3, Rule::RetryOnlyAfterRetryableError);
}

#[test]
fn retry_sequence_rule() {
    // The retry is missing: a new attempt right after the error.
    let events = task(
        vec![handle("a", 1, 3), error("a", 1, true), handle("a", 2, 3)],
        vec![],
    );
    assert_violation(&events, 5, Rule::RetrySequence);
    // The backoff is missing.
    let events = task(
        vec![
            handle("a", 1, 3),
            error("a", 1, true),
            retry("a", 2, 3),
            handle("a", 2, 3),
        ],
        vec![],
    );
    assert_violation(&events, 6, Rule::RetrySequence);
    // The sequence stops after the error.
    let events = task(
        vec![handle("a", 1, 3), error("a", 1, true)],
        vec![finalize(0, 1, 0), failed("app::Error")],
    );
    assert_violation(&events, 5, Rule::RetrySequence);
}

#[test]
fn max_retries_at_limit_rule() {
    let events = task(
        vec![handle("a", 1, 3), error("a", 1, true), exhausted("a", 1, 3)],
        vec![],
    );
    assert_violation(&events, 5, Rule::MaxRetriesAtLimit);
    let events = task(
        vec![handle("a", 1, 1), error("a", 1, true)],
        vec![finalize(0, 1, 0), failed("app::Error")],
    );
    assert_violation(&events, 5, Rule::MaxRetriesAtLimit);
    let events = task(
        vec![
            handle("a", 1, 1),
            error("a", 1, false),
            exhausted("a", 1, 1),
        ],
        vec![],
    );
    assert_violation(&events, 5, Rule::MaxRetriesAtLimit);
}

#[test]
fn skip_alone_rule() {
    assert_violation(
        &task(vec![skip("a"), handle("a", 1, 1)], vec![]),
        4,
        Rule::SkipAlone,
    );
    assert_violation(
        &task(vec![handle("a", 1, 1), skip("a")], vec![]),
        4,
        Rule::SkipAlone,
    );
}

#[test]
fn after_step_end_rule() {
    let events = task(vec![handle("a", 1, 1), done("a", 1), done("a", 1)], vec![]);
    assert_violation(&events, 5, Rule::AfterStepEnd);
}

#[test]
fn find_viable_before_its_steps_rule() {
    let events = task(
        vec![handle("a", 1, 1), done("a", 1), viable(&["a"])],
        vec![finalize(1, 0, 0), complete()],
    );
    assert_violation(&events, 7, Rule::FindViableBeforeItsSteps);
}

#[test]
fn finalize_counts_rule() {
    let events = task(
        vec![handle("a", 1, 1), done("a", 1), skip("b")],
        vec![finalize(2, 0, 0), complete()],
    );
    assert_violation(&events, 6, Rule::FinalizeCounts);
}

#[test]
fn one_terminal_rule() {
    let events = task(vec![], vec![finalize(0, 0, 0), complete(), complete()]);
    assert_violation(&events, 5, Rule::OneTerminal);
    assert_violation(&task(vec![], vec![complete()]), 3, Rule::OneTerminal);
    assert_violation(&task(vec![], vec![finalize(0, 0, 0)]), 4, Rule::OneTerminal);
}

#[test]
fn the_violation_names_the_index_the_event_and_the_rule() {
    let events = task(vec![handle("a", 1, 3), done("a", 2)], vec![]);
    let violation = validate_task(&events).unwrap_err();
    assert_eq!(
        violation.to_string(),
        "event #4 `step.complete a attempt=2` breaks rule AttemptsConsecutive (attempt numbers \
         are consecutive and max_attempts does not change): step.complete of attempt 2 while \
         attempt 1 is open"
    );
}

#[test]
fn validate_tasks_splits_by_task_and_reports_the_failing_one() {
    let mut events = task(vec![], vec![finalize(0, 0, 0), complete()]);
    let other = TaskRef {
        id: Uuid::from_u128(9),
        ..TASK
    };
    events.insert(1, Event::new(Some(other), None, Details::TaskStart));
    let (task_id, violation) = validate_tasks(&events).unwrap_err();
    assert_eq!(task_id, other.id);
    assert_eq!(violation.rule, Rule::InitializeFirst);
    events.remove(1);
    assert_eq!(validate_tasks(&events), Ok(1));
}

fn task_retry(attempt: u32, max_attempts: u32) -> Event<'static> {
    t(Details::TaskRetry {
        attempt,
        max_attempts,
        error: ErrorInfo {
            class: Cow::Borrowed("app::Error"),
            message: Cow::Borrowed("boom"),
        },
    })
}
fn task_backoff(attempt: u32) -> Event<'static> {
    t(Details::TaskBackoff {
        attempt,
        backoff: Duration::from_millis(1),
    })
}
/// `step.handle` and `step.complete` of the `call`-th call of step `name`, in one attempt.
fn call_done(name: &'static str, call: u128) -> [Event<'static>; 2] {
    let step = Some(step(name, call));
    [
        Event::new(
            Some(TASK),
            step,
            Details::StepHandle {
                attempt: 1,
                max_attempts: 1,
            },
        ),
        Event::new(
            Some(TASK),
            step,
            Details::StepComplete {
                attempt: 1,
                duration: Duration::ZERO,
            },
        ),
    ]
}

#[test]
fn a_task_that_retries_and_succeeds_validates() {
    let mut events = vec![init(), start(), task_handle()];
    events.extend(call_done("reserve", 0));
    events.extend([task_retry(2, 3), task_backoff(2), task_handle()]);
    events.extend(call_done("reserve", 1));
    events.extend([task_retry(3, 3), task_backoff(3), task_handle()]);
    events.extend(call_done("reserve", 2));
    // finalize counts the last attempt's steps.
    events.extend([finalize(1, 0, 0), complete()]);
    assert_eq!(validate_task(&events), Ok(()));
}

#[test]
fn task_retry_sequence_rule() {
    // task.retry must announce the next attempt.
    assert_violation(
        &task(vec![task_retry(3, 3)], vec![]),
        3,
        Rule::TaskRetrySequence,
    );
    // … within max_attempts.
    assert_violation(
        &task(vec![task_retry(2, 1)], vec![]),
        3,
        Rule::TaskRetrySequence,
    );
    // task.backoff must follow task.retry, with its attempt.
    assert_violation(
        &task(vec![task_retry(2, 3), task_handle()], vec![]),
        4,
        Rule::TaskRetrySequence,
    );
    assert_violation(
        &task(vec![task_retry(2, 3), task_backoff(3)], vec![]),
        4,
        Rule::TaskRetrySequence,
    );
    // No task.backoff without task.retry, and nothing but task.handle after it.
    assert_violation(
        &task(vec![task_backoff(2)], vec![]),
        3,
        Rule::TaskRetrySequence,
    );
    assert_violation(
        &task(
            vec![task_retry(2, 3), task_backoff(2)],
            vec![finalize(0, 0, 0)],
        ),
        5,
        Rule::OneTerminal,
    );
    // max_attempts does not change between retries.
    assert_violation(
        &task(
            vec![
                task_retry(2, 3),
                task_backoff(2),
                task_handle(),
                task_retry(3, 4),
            ],
            vec![],
        ),
        6,
        Rule::TaskRetrySequence,
    );
    // Not before task.handle, nor after task.finalize.
    assert_violation(
        &[init(), start(), task_retry(2, 3)],
        2,
        Rule::TaskRetrySequence,
    );
    assert_violation(
        &task(vec![finalize(0, 0, 0), task_retry(2, 3)], vec![]),
        4,
        Rule::TaskRetrySequence,
    );
}

#[test]
fn a_task_retry_waits_for_its_steps_to_end() {
    assert_violation(
        &task(vec![handle("charge", 1, 1), task_retry(2, 3)], vec![]),
        4,
        Rule::HandleClosed,
    );
}

#[test]
fn a_queued_task_retried_by_a_later_delivery_validates() {
    let mut events = vec![init(), enqueue(), start(), task_handle()];
    events.extend(call_done("reserve", 0));
    events.extend([task_retry(2, 2), task_backoff(2), start(), task_handle()]);
    events.push(Event::new(
        Some(TASK),
        Some(step("reserve", 1)),
        Details::StepSkip {
            reason: Cow::Borrowed("replayed"),
        },
    ));
    events.extend([finalize(0, 0, 1), complete()]);
    assert_eq!(validate_task(&events), Ok(()));
    // task.start after task.backoff is a delivery of the next attempt; task.handle must follow.
    assert_violation(
        &task(
            vec![task_retry(2, 2), task_backoff(2), start(), start()],
            vec![],
        ),
        6,
        Rule::StartOnce,
    );
}
