//! A completion's terminal event as a durable queue keeps it until it is reported: everything
//! needed to emit it again, exactly, from another process.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tasker_telemetry::{Details, ErrorInfo, Event, EventKind, TaskRef};
use uuid::Uuid;

/// A queued task's `task.complete` or `task.error`, stored with its completion (see
/// [`Queue::complete_reporting`](super::Queue::complete_reporting)) so that a process that
/// finds it unreported can emit it again with the same event id, task id and payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalEvent {
    /// The event's id ([`Event::event_id`]), the same on every emission.
    pub event_id: Uuid,
    /// The task it ends.
    pub task_id: Uuid,
    /// The task's registered name.
    pub task_name: String,
    /// The task's registered version.
    pub task_version: String,
    /// Whether the task succeeded (`task.complete`) or failed (`task.error`).
    pub succeeded: bool,
    /// When the event happened, in nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// `duration_ms`, in nanoseconds.
    pub duration_ns: u64,
    /// `error_class` of a `task.error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// `error_message` of a `task.error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// `error_steps` of a `task.error`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_steps: Vec<String>,
}

/// Why a stored terminal event could not be read back.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the stored terminal event of task {task_id} is not a terminal event's JSON \
     (an object with event_id, task_id, task_name, task_version, succeeded, timestamp_ns and \
     duration_ns): {reason}"
)]
pub struct TerminalEventError {
    /// The task whose row it was, as the row names it.
    pub task_id: String,
    /// What the decoder found wrong.
    pub reason: String,
}

tasker_telemetry::__debug_shows_message!(TerminalEventError);

impl TerminalEvent {
    /// The stored form of `event`, when it is a `task.complete` or `task.error` of a task and
    /// carries an [`event_id`](Event::event_id); `None` otherwise.
    pub fn from_event(event: &Event<'_>) -> Option<TerminalEvent> {
        let task = event.task()?;
        let event_id = event.event_id()?;
        let since_epoch = event
            .timestamp()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let nanos = |duration: Duration| u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let mut stored = TerminalEvent {
            event_id,
            task_id: task.id,
            task_name: task.name.to_owned(),
            task_version: task.version.to_owned(),
            succeeded: true,
            timestamp_ns: nanos(since_epoch),
            duration_ns: 0,
            error_class: None,
            error_message: None,
            error_steps: Vec::new(),
        };
        match event.details() {
            Details::TaskComplete { duration } => stored.duration_ns = nanos(*duration),
            Details::TaskError {
                duration,
                error,
                error_steps,
            } => {
                stored.succeeded = false;
                stored.duration_ns = nanos(*duration);
                stored.error_class = Some(error.class.clone().into_owned());
                stored.error_message = Some(error.message.clone().into_owned());
                stored.error_steps = error_steps.iter().map(|step| (*step).to_owned()).collect();
            }
            _ => return None,
        }
        Some(stored)
    }

    /// `task.complete` or `task.error`.
    pub fn kind(&self) -> EventKind {
        if self.succeeded {
            EventKind::TaskComplete
        } else {
            EventKind::TaskError
        }
    }

    /// The event again, for `task` (whose id is [`task_id`](Self::task_id)); `step_name`
    /// gives the `&'static` name of each of `error_steps`.
    pub fn to_event(
        &self,
        task: TaskRef,
        step_name: impl Fn(&str) -> &'static str,
    ) -> Event<'static> {
        let timestamp = UNIX_EPOCH + Duration::from_nanos(self.timestamp_ns);
        let duration = Duration::from_nanos(self.duration_ns);
        let details = if self.succeeded {
            Details::TaskComplete { duration }
        } else {
            Details::TaskError {
                duration,
                error: ErrorInfo {
                    class: Cow::Owned(self.error_class.clone().unwrap_or_default()),
                    message: Cow::Owned(self.error_message.clone().unwrap_or_default()),
                },
                error_steps: Cow::Owned(self.error_steps.iter().map(|s| step_name(s)).collect()),
            }
        };
        Event::at(timestamp, Some(task), None, details).with_id(self.event_id)
    }

    /// When the event happened.
    pub fn timestamp(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.timestamp_ns)
    }

    /// The JSON text a queue stores.
    pub fn encode(&self) -> String {
        // Strings, numbers and booleans only: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads what [`encode`](Self::encode) wrote, for the row of `task_id`.
    pub fn decode(task_id: &str, text: &str) -> Result<TerminalEvent, TerminalEventError> {
        serde_json::from_str(text).map_err(|error| TerminalEventError {
            task_id: task_id.to_owned(),
            reason: error.to_string(),
        })
    }
}

/// A terminal-event row a recovery took: its `task_id` column as text, and its `event` column
/// as text, or what is wrong with it.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) type TakenRow = (String, Result<String, String>);

/// Emits the events of the rows a recovery took, outside any transaction; a row that does not
/// hold one is said once (it can never be emitted) and removed with the others.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn emit_taken(rows: &[TakenRow], emit: &super::EmitTerminal) {
    for (task_id, text) in rows {
        let event = text
            .as_deref()
            .map_err(|reason| TerminalEventError {
                task_id: task_id.clone(),
                reason: reason.clone(),
            })
            .and_then(|text| TerminalEvent::decode(task_id, text));
        match event {
            Ok(event) => emit(&event),
            Err(error) => tracing::warn!(
                target: "tasker",
                %task_id,
                "[Tasker] {error}; it is not reported again"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tasker_telemetry::TaskOrigin;

    fn task() -> TaskRef {
        TaskRef {
            id: Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0001),
            name: "ship",
            version: "1.0.0",
            source: None,
            origin: TaskOrigin::Queued,
        }
    }

    #[test]
    fn a_task_error_round_trips_through_its_stored_text() {
        let event = Event::at(
            UNIX_EPOCH + Duration::from_nanos(1_764_086_400_123_456_789),
            Some(task()),
            None,
            Details::TaskError {
                duration: Duration::from_nanos(12_345_678),
                error: ErrorInfo {
                    class: Cow::Borrowed("my::Error"),
                    message: Cow::Borrowed("order 3 is empty"),
                },
                error_steps: Cow::Borrowed(&["pack"]),
            },
        )
        .with_id(Uuid::from_u128(9));
        let stored = TerminalEvent::from_event(&event).unwrap();
        let text = stored.encode();
        let read = TerminalEvent::decode("t", &text).unwrap();
        assert_eq!(read, stored);
        assert_eq!(read.to_event(task(), |_| "pack"), event);
    }

    #[test]
    fn a_task_complete_round_trips_and_other_events_are_not_stored() {
        let complete = Event::new(
            Some(task()),
            None,
            Details::TaskComplete {
                duration: Duration::from_micros(1500),
            },
        )
        .with_id(Uuid::from_u128(10));
        let stored = TerminalEvent::from_event(&complete).unwrap();
        assert_eq!(stored.kind(), EventKind::TaskComplete);
        assert_eq!(stored.to_event(task(), |_| ""), complete);
        let start = Event::new(Some(task()), None, Details::TaskStart).with_id(Uuid::nil());
        assert_eq!(TerminalEvent::from_event(&start), None);
        let no_id = Event::new(
            Some(task()),
            None,
            Details::TaskComplete {
                duration: Duration::ZERO,
            },
        );
        assert_eq!(TerminalEvent::from_event(&no_id), None);
    }

    #[test]
    fn unreadable_text_is_an_error_naming_the_task() {
        let error = TerminalEvent::decode("0192-x", "{\"event_id\": 3}").unwrap_err();
        assert_eq!(error.task_id, "0192-x");
        assert!(
            error.to_string().starts_with(
                "the stored terminal event of task 0192-x is not a terminal event's JSON"
            ),
            "{error}"
        );
    }
}
