//! `cargo tasker events`: the lifecycle-event catalog with each payload's keys.
//!
//! The events come from the real catalog ([`EventKind::ALL`]); their payload keys from
//! [`payload_keys`], the one table of them, which a test checks against the JSON that each
//! event actually serialises to.

use serde_json::{json, Value};
use tasker::telemetry::EventKind;

/// Keys every event carries (null outside a task).
pub const COMMON_KEYS: [&str; 5] = ["event", "timestamp", "task_id", "task_name", "task_version"];

/// The payload keys of `kind` besides [`COMMON_KEYS`], and when it is fired. Keys present only
/// sometimes say so in parentheses.
pub fn payload_keys(kind: EventKind) -> (&'static [&'static str], &'static str) {
    match kind {
        EventKind::TaskInitialize => (
            &["status", "errors (on error)"],
            "a task is created from a call or a request",
        ),
        EventKind::TaskEnqueue => (&["queue"], "a request is queued"),
        EventKind::TaskStart => (&[], "processing begins"),
        EventKind::TaskHandle => (&[], "the task function is invoked"),
        EventKind::TaskRetry => (
            &["attempt", "max_attempts", "error_class", "error_message"],
            "an attempt of the task failed and another is scheduled (attempt: the next one)",
        ),
        EventKind::TaskBackoff => (
            &["attempt", "backoff_ms"],
            "the wait before the task's next attempt",
        ),
        EventKind::TaskFinalize => (
            &["completed_steps", "failed_steps", "skipped_steps"],
            "the body returned; the outcome is being decided",
        ),
        EventKind::TaskComplete => (&["duration_ms"], "the task succeeded"),
        EventKind::TaskError => (
            &["duration_ms", "error_class", "error_message", "error_steps"],
            "the task failed (error, panic, cancellation)",
        ),
        EventKind::StepFindViable => (
            &["step_names", "count"],
            "a batch of steps is about to run together",
        ),
        EventKind::StepHandle => (
            &["step_id", "step_name", "attempt", "max_attempts"],
            "an attempt starts",
        ),
        EventKind::StepComplete => (
            &["step_id", "step_name", "attempt", "duration_ms"],
            "an attempt succeeded",
        ),
        EventKind::StepError => (
            &[
                "step_id",
                "step_name",
                "attempt",
                "error_class",
                "error_message",
                "retryable",
            ],
            "an attempt failed",
        ),
        EventKind::StepRetry => (
            &["step_id", "step_name", "attempt", "max_attempts"],
            "another attempt is scheduled (attempt: the next one)",
        ),
        EventKind::StepBackoff => (
            &["step_id", "step_name", "attempt", "backoff_ms"],
            "the wait before that attempt",
        ),
        EventKind::StepSkip => (&["step_id", "step_name", "reason"], "the step will not run"),
        EventKind::StepMaxRetriesReached => (
            &["step_id", "step_name", "attempts", "max_attempts"],
            "the last allowed attempt failed",
        ),
    }
}

/// The catalog as text: one line per event, aligned.
pub fn render_text() -> String {
    let mut out = format!(
        "Tasker lifecycle events ({}). Every payload also has: {}.\n\n",
        EventKind::ALL.len(),
        COMMON_KEYS.join(", ")
    );
    let width = EventKind::ALL
        .iter()
        .map(|kind| kind.name().len())
        .max()
        .unwrap_or(0);
    for kind in EventKind::ALL {
        let (keys, when) = payload_keys(kind);
        let keys = if keys.is_empty() {
            "—".to_owned()
        } else {
            keys.join(", ")
        };
        out.push_str(&format!(
            "{:<width$}  {keys}\n{:<width$}    {when}\n",
            kind.name(),
            ""
        ));
    }
    out.push_str(
        "\nSteps that opt in with #[step(fields(...))] add a `fields` object; custom events \
         (tasker::telemetry::record) carry their own keys.\n",
    );
    out
}

/// The catalog as JSON: `[{"event", "keys", "when"}]`.
pub fn render_json() -> Value {
    Value::Array(
        EventKind::ALL
            .into_iter()
            .map(|kind| {
                let (keys, when) = payload_keys(kind);
                json!({ "event": kind.name(), "keys": keys, "when": when })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use tasker::telemetry::{
        Details, ErrorInfo, Event, InitializeStatus, StepRef, TaskOrigin, TaskRef,
    };

    use super::*;

    /// One event of `kind`, with every optional key present.
    fn sample(kind: EventKind) -> Event<'static> {
        let error = || ErrorInfo {
            class: Cow::Borrowed("E"),
            message: Cow::Borrowed("m"),
        };
        let details = match kind {
            EventKind::TaskInitialize => Details::TaskInitialize {
                status: InitializeStatus::Error,
                errors: Cow::Owned(vec!["bad".into()]),
            },
            EventKind::TaskEnqueue => Details::TaskEnqueue {
                queue: Cow::Borrowed("memory"),
            },
            EventKind::TaskStart => Details::TaskStart,
            EventKind::TaskHandle => Details::TaskHandle,
            EventKind::TaskRetry => Details::TaskRetry {
                attempt: 2,
                max_attempts: 3,
                error: error(),
            },
            EventKind::TaskBackoff => Details::TaskBackoff {
                attempt: 2,
                backoff: Duration::ZERO,
            },
            EventKind::TaskFinalize => Details::TaskFinalize {
                completed_steps: 1,
                failed_steps: 0,
                skipped_steps: 0,
            },
            EventKind::TaskComplete => Details::TaskComplete {
                duration: Duration::ZERO,
            },
            EventKind::TaskError => Details::TaskError {
                duration: Duration::ZERO,
                error: error(),
                error_steps: Cow::Borrowed(&["s"]),
            },
            EventKind::StepFindViable => Details::StepFindViable {
                step_names: Cow::Borrowed(&["s"]),
            },
            EventKind::StepHandle => Details::StepHandle {
                attempt: 1,
                max_attempts: 3,
            },
            EventKind::StepComplete => Details::StepComplete {
                attempt: 1,
                duration: Duration::ZERO,
            },
            EventKind::StepError => Details::StepError {
                attempt: 1,
                error: error(),
                retryable: true,
            },
            EventKind::StepRetry => Details::StepRetry {
                attempt: 2,
                max_attempts: 3,
            },
            EventKind::StepBackoff => Details::StepBackoff {
                attempt: 2,
                backoff: Duration::ZERO,
            },
            EventKind::StepSkip => Details::StepSkip {
                reason: Cow::Borrowed("skip_if"),
            },
            EventKind::StepMaxRetriesReached => Details::StepMaxRetriesReached {
                attempts: 3,
                max_attempts: 3,
            },
        };
        let task = TaskRef {
            id: Default::default(),
            name: "t",
            version: "1",
            source: None,
            origin: TaskOrigin::Inline,
        };
        let step =
            (!kind.is_task_event() && kind != EventKind::StepFindViable).then_some(StepRef {
                id: Default::default(),
                name: "s",
                parent_id: None,
                source: None,
            });
        Event::new(Some(task), step, details)
    }

    #[test]
    fn the_key_table_matches_what_every_event_serialises_to() {
        for kind in EventKind::ALL {
            let json = sample(kind).to_json();
            let mut actual: Vec<&str> = json
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .filter(|key| !COMMON_KEYS.contains(key))
                .collect();
            let mut documented: Vec<&str> = payload_keys(kind)
                .0
                .iter()
                .map(|key| key.split(' ').next().unwrap_or(key))
                .collect();
            actual.sort_unstable();
            documented.sort_unstable();
            assert_eq!(actual, documented, "payload keys of {kind}");
            for key in COMMON_KEYS {
                assert!(json.get(key).is_some(), "{kind} lacks {key}");
            }
        }
    }

    #[test]
    fn the_text_lists_every_event_in_catalog_order() {
        let text = render_text();
        let mut from = 0;
        for kind in EventKind::ALL {
            let at = text[from..].find(kind.name()).map(|at| at + from);
            assert!(at.is_some(), "{kind} missing or out of order");
            from = at.unwrap_or(from);
        }
    }
}
