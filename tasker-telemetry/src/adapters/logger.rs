//! The default adapter: one `tracing` line per event.

use std::fmt;
use std::str::FromStr;

use tracing::field::{debug, display};
use tracing::Level;

use crate::adapter::Adapter;
use crate::event::{serialize::millis, Details, Event, EventKind};
use crate::notice::Notice;

/// How [`LoggerAdapter`] writes each event's line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LogFormat {
    /// The message `[Tasker] <event>` and the payload as `tracing` fields only, so each
    /// subscriber renders them its own way (fmt as `key=value`, JSON as typed fields,
    /// OpenTelemetry logs as attributes). The default.
    #[default]
    Compact,
    /// Tasker's Ruby-style line: the message `[Tasker] <event>: <payload as JSON>`, with the
    /// payload's keys also as fields.
    Json,
}

impl LogFormat {
    /// The words [`LogFormat`] parses from, for error messages.
    pub const WORDS: &'static str = "compact, json";
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Compact => "compact",
            LogFormat::Json => "json",
        })
    }
}

/// A word that is not a [`LogFormat`].
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a log format; valid formats are: {words}", words = LogFormat::WORDS)]
pub struct UnknownLogFormat(pub String);

crate::__debug_shows_message!(UnknownLogFormat);

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(word: &str) -> Result<Self, Self::Err> {
        match word.trim().to_ascii_lowercase().as_str() {
            "compact" => Ok(LogFormat::Compact),
            "json" => Ok(LogFormat::Json),
            _ => Err(UnknownLogFormat(word.to_owned())),
        }
    }
}

/// The default adapter: every event becomes one `tracing` event with target `tasker` and the
/// message `[Tasker] <event>`, its payload's keys as structured fields (`event`, `task_id`,
/// `step_name`, `attempt`, `error_class`, …); with [`LogFormat::Json`], the message also holds
/// the payload as JSON, as Tasker's Ruby logger writes it.
///
/// Levels say what happened: `task.error` and `step.max_retries_reached` at ERROR, `step.error`
/// at WARN, everything else at INFO — so `RUST_LOG=tasker=warn` shows failures only, and an
/// event whose level is off costs the level check alone.
///
/// Custom payloads appear as one `payload` field holding their JSON, since `tracing` field names
/// are fixed at compile time.
///
/// ```
/// use tasker::telemetry::adapters::{LogFormat, LoggerAdapter};
/// let ruby_style = LoggerAdapter::new(LogFormat::Json);
/// assert_eq!(ruby_style.format(), LogFormat::Json);
/// assert_eq!(LoggerAdapter::default().format(), LogFormat::Compact);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct LoggerAdapter {
    format: LogFormat,
}

impl LoggerAdapter {
    /// A logger writing lines in `format`.
    pub const fn new(format: LogFormat) -> Self {
        Self { format }
    }

    /// How this logger writes its lines.
    pub const fn format(&self) -> LogFormat {
        self.format
    }
}

/// The level of `kind`'s line: failures stand out, everything else is INFO.
pub fn level_of(kind: Option<EventKind>) -> Level {
    match kind {
        Some(EventKind::TaskError | EventKind::StepMaxRetriesReached) => Level::ERROR,
        // A failed attempt of a step, or of a task that will be retried.
        Some(EventKind::StepError | EventKind::TaskRetry) => Level::WARN,
        _ => Level::INFO,
    }
}

/// One `tracing` event at a level chosen at run time: each level is its own call site, since a
/// call site's level is fixed at compile time.
macro_rules! event_at {
    ($level:expr, $($rest:tt)*) => {
        match $level {
            Level::ERROR => tracing::event!(target: "tasker", Level::ERROR, $($rest)*),
            Level::WARN => tracing::event!(target: "tasker", Level::WARN, $($rest)*),
            _ => tracing::event!(target: "tasker", Level::INFO, $($rest)*),
        }
    };
}

/// Said the first time an INFO line finds no subscriber that takes it.
static NOBODY_READS: Notice = Notice::new();

/// What [`NOBODY_READS`] says.
pub(crate) fn nobody_reads_message() -> &'static str {
    "the default logger writes its lines through `tracing` (target `tasker`, level INFO), and no \
     subscriber takes them, so they are lost; install one first in `main`, e.g. \
     `tracing_subscriber::fmt().init()` (with `RUST_LOG=tasker=info` if you filter), or list \
     `TelemetryAdapter::Console` instead of `Default` for a view without a subscriber"
}

/// Whether a line at `level` would be written by the current subscriber.
fn enabled(level: Level) -> bool {
    match level {
        Level::ERROR => tracing::enabled!(target: "tasker", Level::ERROR),
        Level::WARN => tracing::enabled!(target: "tasker", Level::WARN),
        _ => tracing::enabled!(target: "tasker", Level::INFO),
    }
}

impl Adapter for LoggerAdapter {
    /// The logger writes through `tracing` on the task's own thread, so the line goes to the
    /// subscriber in force there (a scoped default included) inside the user's current span,
    /// and log correlation keeps working; an application that wants the writing off its
    /// threads gives its subscriber a non-blocking writer.
    fn synchronous(&self) -> bool {
        true
    }

    fn record(&self, event: &Event<'_>) {
        let level = level_of(event.kind());
        if !enabled(level) {
            if level == Level::INFO && !NOBODY_READS.said() {
                NOBODY_READS.say(|| nobody_reads_message().to_owned());
            }
            return;
        }
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
        let message = Message {
            event,
            format: self.format,
        };
        event_at!(
            level,
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
            "{}",
            message,
        );
    }
}

/// The line's message: `[Tasker] <event>`, and `: <payload as JSON>` in the JSON format.
struct Message<'a, 'e> {
    event: &'a Event<'e>,
    format: LogFormat,
}

impl fmt::Display for Message<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[Tasker] {}", self.event.name())?;
        match self.format {
            LogFormat::Compact => Ok(()),
            LogFormat::Json => write!(f, ": {}", Json(self.event)),
        }
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

    fn text_line(adapter: LoggerAdapter, event: &Event<'_>) -> String {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        tracing::subscriber::with_default(subscriber, || adapter.record(event));
        let output = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        output
    }

    const STEP_FIELDS: &str = "event=\"step.error\" task_id=00000000-0000-0000-0000-000000000001 \
        task_name=\"order\" task_version=\"1.0.0\" step_id=00000000-0000-0000-0000-000000000002 \
        step_name=\"charge\" attempt=1 error_class=\"my::CardDeclined\" \
        error_message=\"card declined\" retryable=true";

    #[test]
    fn compact_lines_hold_the_event_name_and_the_payload_as_fields_only() {
        let output = text_line(LoggerAdapter::default(), &step_error());
        assert_eq!(
            output,
            format!(" WARN tasker: [Tasker] step.error {STEP_FIELDS}\n")
        );
    }

    #[test]
    fn the_json_format_adds_the_payload_as_json_to_the_message() {
        let event = step_error();
        let output = text_line(LoggerAdapter::new(LogFormat::Json), &event);
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            output,
            format!(" WARN tasker: [Tasker] step.error: {json} {STEP_FIELDS}\n")
        );
    }

    #[test]
    fn levels_say_what_happened() {
        assert_eq!(level_of(Some(EventKind::TaskError)), Level::ERROR);
        assert_eq!(
            level_of(Some(EventKind::StepMaxRetriesReached)),
            Level::ERROR
        );
        assert_eq!(level_of(Some(EventKind::StepError)), Level::WARN);
        assert_eq!(level_of(Some(EventKind::TaskRetry)), Level::WARN);
        for kind in EventKind::ALL {
            if !matches!(
                kind,
                EventKind::TaskError
                    | EventKind::StepMaxRetriesReached
                    | EventKind::StepError
                    | EventKind::TaskRetry
            ) {
                assert_eq!(level_of(Some(kind)), Level::INFO, "{kind}");
            }
        }
        assert_eq!(level_of(None), Level::INFO, "custom events");
    }

    #[test]
    fn an_event_below_the_subscribers_level_writes_nothing() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .with_max_level(Level::ERROR)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            LoggerAdapter::default().record(&step_error())
        });
        assert!(buffer.0.lock().unwrap().is_empty());
    }

    #[test]
    fn log_formats_parse_from_their_words_and_name_the_valid_ones() {
        assert_eq!("compact".parse(), Ok(LogFormat::Compact));
        assert_eq!(" JSON ".parse(), Ok(LogFormat::Json));
        assert_eq!(
            "ruby".parse::<LogFormat>().unwrap_err().to_string(),
            "`ruby` is not a log format; valid formats are: compact, json"
        );
        for format in [LogFormat::Compact, LogFormat::Json] {
            assert_eq!(format.to_string().parse(), Ok(format));
        }
    }

    #[test]
    fn json_subscribers_get_the_payload_as_typed_fields() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(buffer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            LoggerAdapter::default().record(&step_error())
        });
        let output = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(output.trim()).unwrap();
        let fields = &line["fields"];
        assert_eq!(line["target"], "tasker");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["fields"]["message"], "[Tasker] step.error");
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
