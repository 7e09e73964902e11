//! The JSON form of an [`Event`]: written straight from the borrowed fields, never through an
//! intermediate `serde_json::Value`.

use std::time::Duration;

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::{Details, Event};

/// Milliseconds as a float with microsecond precision, as `duration_ms` carries them.
pub(crate) fn millis(duration: Duration) -> f64 {
    (duration.as_micros() as f64) / 1000.0
}

impl Serialize for Event<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("event", self.name())?;
        if let Some(id) = self.id {
            map.serialize_entry("event_id", &Collect(id))?;
        }
        map.serialize_entry(
            "timestamp",
            &Collect(humantime::format_rfc3339_micros(self.timestamp)),
        )?;
        map.serialize_entry("task_id", &self.task.map(|task| Collect(task.id)))?;
        map.serialize_entry("task_name", &self.task.map(|task| task.name))?;
        map.serialize_entry("task_version", &self.task.map(|task| task.version))?;
        if let Some(step) = &self.step {
            map.serialize_entry("step_id", &Collect(step.id))?;
            map.serialize_entry("step_name", step.name)?;
        }
        match &self.details {
            Details::TaskInitialize { status, errors } => {
                map.serialize_entry("status", status.as_str())?;
                if !errors.is_empty() {
                    map.serialize_entry("errors", errors.as_ref())?;
                }
            }
            Details::TaskEnqueue { queue } => map.serialize_entry("queue", queue)?,
            Details::TaskStart | Details::TaskHandle => {}
            Details::TaskRetry {
                attempt,
                max_attempts,
                error,
            } => {
                map.serialize_entry("attempt", attempt)?;
                map.serialize_entry("max_attempts", max_attempts)?;
                map.serialize_entry("error_class", &error.class)?;
                map.serialize_entry("error_message", &error.message)?;
            }
            Details::TaskFinalize {
                completed_steps,
                failed_steps,
                skipped_steps,
            } => {
                map.serialize_entry("completed_steps", completed_steps)?;
                map.serialize_entry("failed_steps", failed_steps)?;
                map.serialize_entry("skipped_steps", skipped_steps)?;
            }
            Details::TaskComplete { duration } => {
                map.serialize_entry("duration_ms", &millis(*duration))?;
            }
            Details::TaskError {
                duration,
                error,
                error_steps,
            } => {
                map.serialize_entry("duration_ms", &millis(*duration))?;
                map.serialize_entry("error_class", &error.class)?;
                map.serialize_entry("error_message", &error.message)?;
                map.serialize_entry("error_steps", error_steps.as_ref())?;
            }
            Details::StepFindViable { step_names } => {
                map.serialize_entry("step_names", step_names.as_ref())?;
                map.serialize_entry("count", &step_names.len())?;
            }
            Details::StepHandle {
                attempt,
                max_attempts,
            }
            | Details::StepRetry {
                attempt,
                max_attempts,
            } => {
                map.serialize_entry("attempt", attempt)?;
                map.serialize_entry("max_attempts", max_attempts)?;
            }
            Details::StepComplete { attempt, duration } => {
                map.serialize_entry("attempt", attempt)?;
                map.serialize_entry("duration_ms", &millis(*duration))?;
            }
            Details::StepError {
                attempt,
                error,
                retryable,
            } => {
                map.serialize_entry("attempt", attempt)?;
                map.serialize_entry("error_class", &error.class)?;
                map.serialize_entry("error_message", &error.message)?;
                map.serialize_entry("retryable", retryable)?;
            }
            Details::StepBackoff { attempt, backoff }
            | Details::TaskBackoff { attempt, backoff } => {
                map.serialize_entry("attempt", attempt)?;
                map.serialize_entry("backoff_ms", &(backoff.as_millis() as u64))?;
            }
            Details::StepSkip { reason } => map.serialize_entry("reason", reason)?,
            Details::StepMaxRetriesReached {
                attempts,
                max_attempts,
            } => {
                map.serialize_entry("attempts", attempts)?;
                map.serialize_entry("max_attempts", max_attempts)?;
            }
            Details::Custom { payload, .. } => {
                for (key, value) in payload.iter() {
                    map.serialize_entry(key, value)?;
                }
            }
        }
        if let Some(fields) = &self.fields {
            map.serialize_entry("fields", fields.as_ref())?;
        }
        map.end()
    }
}

/// Serializes a `Display` value as a string without allocating it first.
struct Collect<T>(T);

impl<T: std::fmt::Display> Serialize for Collect<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::{Duration, UNIX_EPOCH};

    use serde_json::json;
    use uuid::Uuid;

    use crate::context::{StepRef, TaskRef};
    use crate::event::{Details, ErrorInfo, Event, InitializeStatus};

    const TASK_ID: Uuid = Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0001);
    const STEP_ID: Uuid = Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0002);

    fn task() -> TaskRef {
        TaskRef {
            id: TASK_ID,
            name: "order_fulfillment",
            version: "1.0.0",
            source: None,
            origin: crate::context::TaskOrigin::Inline,
        }
    }

    fn step() -> StepRef {
        StepRef {
            id: STEP_ID,
            name: "charge",
            parent_id: None,
            source: None,
        }
    }

    fn at(details: Details<'_>, with_step: bool) -> serde_json::Value {
        let timestamp = UNIX_EPOCH + Duration::from_micros(1_764_086_400_123_456);
        Event::at(timestamp, Some(task()), with_step.then(step), details).to_json()
    }

    #[test]
    fn step_error_carries_identity_attempt_and_error() {
        let json = at(
            Details::StepError {
                attempt: 2,
                error: ErrorInfo {
                    class: Cow::Borrowed("std::io::Error"),
                    message: Cow::Borrowed("connection reset"),
                },
                retryable: true,
            },
            true,
        );
        assert_eq!(
            json,
            json!({
                "event": "step.error",
                "timestamp": "2025-11-25T16:00:00.123456Z",
                "task_id": "01920000-0000-7000-8000-000000000001",
                "task_name": "order_fulfillment",
                "task_version": "1.0.0",
                "step_id": "01920000-0000-7000-8000-000000000002",
                "step_name": "charge",
                "attempt": 2,
                "error_class": "std::io::Error",
                "error_message": "connection reset",
                "retryable": true,
            })
        );
    }

    #[test]
    fn task_events_carry_their_counts_and_durations() {
        let finalize = at(
            Details::TaskFinalize {
                completed_steps: 3,
                failed_steps: 1,
                skipped_steps: 1,
            },
            false,
        );
        assert_eq!(finalize["completed_steps"], 3);
        assert_eq!(finalize["failed_steps"], 1);
        assert_eq!(finalize["skipped_steps"], 1);
        assert!(finalize.get("step_id").is_none());

        let error = at(
            Details::TaskError {
                duration: Duration::from_micros(12_345),
                error: ErrorInfo {
                    class: Cow::Borrowed("panic"),
                    message: Cow::Borrowed("boom"),
                },
                error_steps: Cow::Borrowed(&["charge"]),
            },
            false,
        );
        assert_eq!(error["duration_ms"], 12.345);
        assert_eq!(error["error_steps"], json!(["charge"]));
    }

    #[test]
    fn initialize_lists_errors_only_when_it_failed() {
        let ok = at(
            Details::TaskInitialize {
                status: InitializeStatus::Success,
                errors: Cow::Borrowed(&[]),
            },
            false,
        );
        assert_eq!(ok["status"], "success");
        assert!(ok.get("errors").is_none());
        let errors = vec!["unknown task `nope`".to_owned()];
        let failed = at(
            Details::TaskInitialize {
                status: InitializeStatus::Error,
                errors: Cow::Borrowed(&errors),
            },
            false,
        );
        assert_eq!(failed["errors"], json!(["unknown task `nope`"]));
    }

    #[test]
    fn batch_and_backoff_keys_keep_their_types() {
        let batch = at(
            Details::StepFindViable {
                step_names: Cow::Borrowed(&["reserve", "charge"]),
            },
            false,
        );
        assert_eq!(batch["step_names"], json!(["reserve", "charge"]));
        assert_eq!(batch["count"], 2);
        let backoff = at(
            Details::StepBackoff {
                attempt: 3,
                backoff: Duration::from_millis(200),
            },
            true,
        );
        assert_eq!(backoff["backoff_ms"], 200);
        assert_eq!(backoff["attempt"], 3);
    }

    #[test]
    fn an_event_with_an_id_carries_event_id_and_others_do_not() {
        let complete = Details::TaskComplete {
            duration: Duration::from_micros(2_500),
        };
        let timestamp = UNIX_EPOCH + Duration::from_micros(1_764_086_400_123_456);
        let id = Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0003);
        let event = Event::at(timestamp, Some(task()), None, complete.clone()).with_id(id);
        assert_eq!(event.event_id(), Some(id));
        assert_eq!(
            event.to_json(),
            json!({
                "event": "task.complete",
                "event_id": "01920000-0000-7000-8000-000000000003",
                "timestamp": "2025-11-25T16:00:00.123456Z",
                "task_id": "01920000-0000-7000-8000-000000000001",
                "task_name": "order_fulfillment",
                "task_version": "1.0.0",
                "duration_ms": 2.5,
            })
        );
        assert_eq!(event.clone().into_owned().event_id(), Some(id));
        let without = at(complete, false);
        assert!(without.get("event_id").is_none());
    }

    #[test]
    fn outside_a_task_the_task_keys_are_null() {
        let json = Event::new(
            None,
            Some(step()),
            Details::StepHandle {
                attempt: 1,
                max_attempts: 3,
            },
        )
        .to_json();
        assert!(json["task_id"].is_null());
        assert!(json["task_name"].is_null());
        assert!(json["task_version"].is_null());
        assert_eq!(json["step_name"], "charge");
        assert_eq!(json["max_attempts"], 3);
    }

    #[test]
    fn owned_copy_is_equal_to_the_borrowed_event() {
        let names = ["a", "b"];
        let event = Event::new(
            Some(task()),
            None,
            Details::StepFindViable {
                step_names: Cow::Borrowed(&names),
            },
        );
        assert_eq!(event.clone().into_owned(), event);
    }
}
