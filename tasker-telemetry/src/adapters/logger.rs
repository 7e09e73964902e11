//! The default adapter: one `tracing` line per event.

use std::fmt;

use tracing::field::{debug, display};

use crate::adapter::Adapter;
use crate::event::{serialize::millis, Details, Event};

/// The default adapter: every event becomes one `tracing` event at INFO with target `tasker`,
/// formatted `[Tasker] <event>: <payload as JSON>`, with the payload's keys also as structured
/// fields (`event`, `task_id`, `step_name`, `attempt`, `error_class`, …) for JSON subscribers.
///
/// Custom payloads appear as one `payload` field holding their JSON, since `tracing` field names
/// are fixed at compile time.
#[derive(Debug, Default, Clone, Copy)]
pub struct LoggerAdapter;

impl Adapter for LoggerAdapter {
    fn record(&self, event: &Event<'_>) {
        let details = event.details();
        let (completed, failed, skipped) = match *details {
            Details::TaskFinalize {
                completed_steps,
                failed_steps,
                skipped_steps,
            } => (
                Some(completed_steps),
                Some(failed_steps),
                Some(skipped_steps),
            ),
            _ => (None, None, None),
        };
        let (status, queue, retryable, step_names, error_steps, attempts, payload) = match details {
            Details::TaskInitialize { status, .. } => {
                (Some(status.as_str()), None, None, None, None, None, None)
            }
            Details::TaskEnqueue { queue } => (None, Some(&**queue), None, None, None, None, None),
            Details::StepError { retryable, .. } => {
                (None, None, Some(*retryable), None, None, None, None)
            }
            Details::StepFindViable { step_names } => (
                None,
                None,
                None,
                Some(debug(&**step_names)),
                None,
                None,
                None,
            ),
            Details::TaskError { error_steps, .. } => (
                None,
                None,
                None,
                None,
                Some(debug(&**error_steps)),
                None,
                None,
            ),
            Details::StepMaxRetriesReached { attempts, .. } => {
                (None, None, None, None, None, Some(*attempts), None)
            }
            Details::Custom { payload, .. } => (
                None,
                None,
                None,
                None,
                None,
                None,
                Some(display(Json(&**payload))),
            ),
            _ => (None, None, None, None, None, None, None),
        };
        let error = event.error();
        tracing::info!(
            target: "tasker",
            event = event.name(),
            task_id = event.task_id().map(display),
            task_name = event.task_name(),
            task_version = event.task().map(|task| task.version),
            step_id = event.step_id().map(display),
            step_name = event.step_name(),
            attempt = event.attempt(),
            max_attempts = event.max_attempts(),
            attempts,
            duration_ms = event.duration().map(millis),
            backoff_ms = event.backoff().map(|backoff| backoff.as_millis() as u64),
            error_class = error.map(|error| &*error.class),
            error_message = error.map(|error| &*error.message),
            retryable,
            reason = event.reason(),
            status,
            queue,
            completed_steps = completed,
            failed_steps = failed,
            skipped_steps = skipped,
            step_names,
            error_steps,
            payload,
            "[Tasker] {}: {}",
            event.name(),
            Json(event),
        );
    }
}

/// Writes a value's JSON straight into a formatter.
struct Json<'a, T: ?Sized>(&'a T);

impl<T: serde::Serialize + ?Sized> fmt::Display for Json<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        serde_json::to_writer(FormatterWriter(f), self.0).map_err(|_| fmt::Error)
    }
}

struct FormatterWriter<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl std::io::Write for FormatterWriter<'_, '_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        // serde_json writes whole UTF-8 sequences; anything else is a bug worth an error.
        let text = std::str::from_utf8(bytes)
            .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))?;
        self.0.write_str(text).map_err(std::io::Error::other)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;
    use uuid::Uuid;

    use super::*;
    use crate::context::{StepRef, TaskRef};
    use crate::event::ErrorInfo;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    fn step_error() -> Event<'static> {
        Event::new(
            Some(TaskRef {
                id: Uuid::from_u128(1),
                name: "order",
                version: "1.0.0",
                source: None,
                origin: crate::context::TaskOrigin::Inline,
            }),
            Some(StepRef {
                id: Uuid::from_u128(2),
                name: "charge",
                parent_id: None,
                source: None,
            }),
            Details::StepError {
                attempt: 1,
                error: ErrorInfo {
                    class: Cow::Borrowed("my::CardDeclined"),
                    message: Cow::Borrowed("card declined"),
                },
                retryable: true,
            },
        )
    }

    #[test]
    fn prints_one_line_with_the_json_payload() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        let event = step_error();
        tracing::subscriber::with_default(subscriber, || LoggerAdapter.record(&event));
        let output = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let expected_json = serde_json::to_string(&event).unwrap();
        assert!(
            output.starts_with(&format!(
                " INFO tasker: [Tasker] step.error: {expected_json} event=\"step.error\""
            )),
            "{output}"
        );
        assert_eq!(output.lines().count(), 1);
    }

    #[test]
    fn json_subscribers_get_the_payload_as_typed_fields() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(buffer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || LoggerAdapter.record(&step_error()));
        let output = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(output.trim()).unwrap();
        let fields = &line["fields"];
        assert_eq!(line["target"], "tasker");
        assert_eq!(line["level"], "INFO");
        assert_eq!(fields["event"], "step.error");
        assert_eq!(fields["task_id"], Uuid::from_u128(1).to_string());
        assert_eq!(fields["task_name"], "order");
        assert_eq!(fields["step_name"], "charge");
        assert_eq!(fields["attempt"], 1);
        assert_eq!(fields["error_class"], "my::CardDeclined");
        assert_eq!(fields["error_message"], "card declined");
        assert_eq!(fields["retryable"], true);
        assert!(fields.get("duration_ms").is_none());
    }
}
