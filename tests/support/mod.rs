//! Shared helpers of the integration tests: a compact, exact rendering of events.

#![allow(dead_code)]

pub mod task_log;

use tasker::telemetry::{Details, Event};

/// How long a test waits for anything (a task's outcome, a condition) before it fails.
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// `future`'s output, or a panic naming `what` after [`DEADLINE`]: a regression fails the test
/// instead of hanging CI.
pub async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {DEADLINE:?}"))
}

/// One line per event with every payload value that does not vary between runs (ids,
/// timestamps and durations are checked separately).
pub fn line(event: &Event<'_>) -> String {
    let step = event
        .step_name()
        .map(|name| format!(" {name}"))
        .unwrap_or_default();
    let name = event.name();
    match event.details() {
        Details::TaskInitialize { status, errors } => {
            let errors = if errors.is_empty() {
                String::new()
            } else {
                format!(" {errors:?}")
            };
            format!("{name} {}{errors}", status.as_str())
        }
        Details::TaskEnqueue { queue } => format!("{name} {queue}"),
        Details::TaskFinalize {
            completed_steps,
            failed_steps,
            skipped_steps,
        } => format!(
            "{name} completed={completed_steps} failed={failed_steps} skipped={skipped_steps}"
        ),
        Details::TaskError {
            error, error_steps, ..
        } => format!(
            "{name} {} {:?} steps={error_steps:?}",
            error.class, error.message
        ),
        Details::TaskRetry {
            attempt,
            max_attempts,
            error,
        } => format!(
            "{name} {attempt}/{max_attempts} {} {:?}",
            error.class, error.message
        ),
        Details::TaskBackoff { attempt, backoff } => {
            format!("{name} {attempt} {}ms", backoff.as_millis())
        }
        Details::StepFindViable { step_names } => format!("{name} {step_names:?}"),
        Details::StepHandle {
            attempt,
            max_attempts,
        }
        | Details::StepRetry {
            attempt,
            max_attempts,
        } => format!("{name}{step} {attempt}/{max_attempts}"),
        Details::StepComplete { attempt, .. } => format!("{name}{step} {attempt}"),
        Details::StepError {
            attempt,
            error,
            retryable,
        } => format!(
            "{name}{step} {attempt} {} {:?} retryable={retryable}",
            error.class, error.message
        ),
        Details::StepBackoff { attempt, .. } => format!("{name}{step} {attempt}"),
        Details::StepSkip { reason } => format!("{name}{step} {reason}"),
        Details::StepMaxRetriesReached {
            attempts,
            max_attempts,
        } => format!("{name}{step} {attempts}/{max_attempts}"),
        Details::Custom { payload, .. } => {
            format!(
                "{name}{step} {}",
                serde_json::Value::Object(payload.clone().into_owned())
            )
        }
        _ => format!("{name}{step}"),
    }
}

/// [`line`] for every event.
pub fn lines(events: &[Event<'_>]) -> Vec<String> {
    events.iter().map(line).collect()
}

/// Panics unless every event carries the same task id (or none, when `expect_task` is false).
pub fn assert_one_task(events: &[Event<'_>], expect_task: bool) {
    let first = events.first().and_then(Event::task_id);
    assert_eq!(first.is_some(), expect_task, "task id presence");
    for event in events {
        assert_eq!(
            event.task_id(),
            first,
            "{} belongs to another task",
            event.name()
        );
    }
}

/// An in-memory writer for `tracing_subscriber::fmt`: give a clone to `with_writer`, read what
/// the subscriber wrote with [`LogBuffer::lines`].
#[derive(Clone, Default)]
pub struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuffer {
    /// Every line written so far.
    pub fn lines(&self) -> Vec<String> {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The lines that contain `text`.
    pub fn lines_containing(&self, text: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|line| line.contains(text))
            .collect()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> LogBuffer {
        self.clone()
    }
}
