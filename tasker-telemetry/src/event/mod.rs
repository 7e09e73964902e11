//! Lifecycle and custom events, and their JSON form.

mod kind;
pub(crate) mod serialize;

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use uuid::Uuid;

pub use kind::{EventKind, UnknownEventKind};

use crate::context::{StepRef, TaskRef};

/// An error as events carry it: its class and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorInfo<'a> {
    /// The Rust type name of the error (`std::any::type_name`), or `panic`, or `tasker::Cancelled`.
    pub class: Cow<'a, str>,
    /// The error's `Display`, with its source chain joined by `: `.
    pub message: Cow<'a, str>,
}

impl ErrorInfo<'_> {
    /// An owned copy.
    pub fn into_owned(self) -> ErrorInfo<'static> {
        ErrorInfo {
            class: Cow::Owned(self.class.into_owned()),
            message: Cow::Owned(self.message.into_owned()),
        }
    }
}

/// `task.initialize`'s `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitializeStatus {
    /// The task was created.
    Success,
    /// The task could not be created; see `errors`.
    Error,
}

impl InitializeStatus {
    /// `"success"` or `"error"`.
    pub fn as_str(self) -> &'static str {
        match self {
            InitializeStatus::Success => "success",
            InitializeStatus::Error => "error",
        }
    }
}

/// The payload that depends on the kind of event: the keys of DESIGN.md §3 beyond the identity.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Details<'a> {
    /// `task.initialize`: `status`, and `errors` when it is `error`.
    TaskInitialize {
        /// Whether the task could be created.
        status: InitializeStatus,
        /// Why not, when it could not.
        errors: Cow<'a, [String]>,
    },
    /// `task.enqueue`: the queue's name.
    TaskEnqueue {
        /// Name of the queue the request went to.
        queue: Cow<'a, str>,
    },
    /// `task.start`.
    TaskStart,
    /// `task.handle`.
    TaskHandle,
    /// `task.retry`: an attempt of a task with `max_attempts > 1` failed and another is
    /// scheduled (`task.error` stays the one terminal event, after the last attempt).
    TaskRetry {
        /// The next attempt's number.
        attempt: u32,
        /// Attempts allowed in total.
        max_attempts: u32,
        /// Why the attempt before it failed.
        error: ErrorInfo<'a>,
    },
    /// `task.backoff`: the wait before the task's next attempt.
    TaskBackoff {
        /// The attempt that follows the wait.
        attempt: u32,
        /// The wait.
        backoff: Duration,
    },
    /// `task.finalize`: how the task's step calls ended.
    TaskFinalize {
        /// Step calls that succeeded.
        completed_steps: u32,
        /// Step calls whose final attempt failed.
        failed_steps: u32,
        /// Step calls that were skipped.
        skipped_steps: u32,
    },
    /// `task.complete`.
    TaskComplete {
        /// Wall time from `task.start` to the end.
        duration: Duration,
    },
    /// `task.error`.
    TaskError {
        /// Wall time from `task.start` to the end.
        duration: Duration,
        /// What failed.
        error: ErrorInfo<'a>,
        /// Names of the steps whose final outcome was a failure.
        error_steps: Cow<'a, [&'static str]>,
    },
    /// `step.find_viable`: the batch about to run.
    StepFindViable {
        /// The steps of the batch, in argument order.
        step_names: Cow<'a, [&'static str]>,
    },
    /// `step.handle`: an attempt starts.
    StepHandle {
        /// This attempt's number, from 1.
        attempt: u32,
        /// Attempts allowed in total.
        max_attempts: u32,
    },
    /// `step.complete`: an attempt succeeded.
    StepComplete {
        /// The attempt that succeeded.
        attempt: u32,
        /// Wall time of that attempt.
        duration: Duration,
    },
    /// `step.error`: an attempt failed.
    StepError {
        /// The attempt that failed.
        attempt: u32,
        /// What failed.
        error: ErrorInfo<'a>,
        /// Whether the error may be retried (by `retry_if`); a retryable error on the last attempt
        /// is followed by `step.max_retries_reached`, a non-retryable one by nothing.
        retryable: bool,
    },
    /// `step.retry`: another attempt is scheduled.
    StepRetry {
        /// The next attempt's number.
        attempt: u32,
        /// Attempts allowed in total.
        max_attempts: u32,
    },
    /// `step.backoff`: the wait before the next attempt.
    StepBackoff {
        /// The attempt that follows the wait.
        attempt: u32,
        /// The wait.
        backoff: Duration,
    },
    /// `step.skip`: the step will not run.
    StepSkip {
        /// Why: `skip_if`, `bypassed`, …
        reason: Cow<'a, str>,
    },
    /// `step.max_retries_reached`: the last allowed attempt failed.
    StepMaxRetriesReached {
        /// Attempts made.
        attempts: u32,
        /// Attempts allowed.
        max_attempts: u32,
    },
    /// A custom event sent with [`record`](crate::record).
    Custom {
        /// The event's name.
        name: Cow<'a, str>,
        /// The payload's keys, already masked.
        payload: Cow<'a, serde_json::Map<String, serde_json::Value>>,
    },
}

impl Details<'_> {
    /// The lifecycle kind of these details, or `None` for a custom event.
    pub fn kind(&self) -> Option<EventKind> {
        Some(match self {
            Details::TaskInitialize { .. } => EventKind::TaskInitialize,
            Details::TaskEnqueue { .. } => EventKind::TaskEnqueue,
            Details::TaskStart => EventKind::TaskStart,
            Details::TaskHandle => EventKind::TaskHandle,
            Details::TaskRetry { .. } => EventKind::TaskRetry,
            Details::TaskBackoff { .. } => EventKind::TaskBackoff,
            Details::TaskFinalize { .. } => EventKind::TaskFinalize,
            Details::TaskComplete { .. } => EventKind::TaskComplete,
            Details::TaskError { .. } => EventKind::TaskError,
            Details::StepFindViable { .. } => EventKind::StepFindViable,
            Details::StepHandle { .. } => EventKind::StepHandle,
            Details::StepComplete { .. } => EventKind::StepComplete,
            Details::StepError { .. } => EventKind::StepError,
            Details::StepRetry { .. } => EventKind::StepRetry,
            Details::StepBackoff { .. } => EventKind::StepBackoff,
            Details::StepSkip { .. } => EventKind::StepSkip,
            Details::StepMaxRetriesReached { .. } => EventKind::StepMaxRetriesReached,
            Details::Custom { .. } => return None,
        })
    }

    /// A copy that owns all of its data (the strings it borrows are copied; the rest is moved).
    pub fn into_owned(self) -> Details<'static> {
        match self {
            Details::TaskInitialize { status, errors } => Details::TaskInitialize {
                status,
                errors: Cow::Owned(errors.into_owned()),
            },
            Details::TaskEnqueue { queue } => Details::TaskEnqueue {
                queue: Cow::Owned(queue.into_owned()),
            },
            Details::TaskStart => Details::TaskStart,
            Details::TaskHandle => Details::TaskHandle,
            Details::TaskRetry {
                attempt,
                max_attempts,
                error,
            } => Details::TaskRetry {
                attempt,
                max_attempts,
                error: error.into_owned(),
            },
            Details::TaskBackoff { attempt, backoff } => Details::TaskBackoff { attempt, backoff },
            Details::TaskFinalize {
                completed_steps,
                failed_steps,
                skipped_steps,
            } => Details::TaskFinalize {
                completed_steps,
                failed_steps,
                skipped_steps,
            },
            Details::TaskComplete { duration } => Details::TaskComplete { duration },
            Details::TaskError {
                duration,
                error,
                error_steps,
            } => Details::TaskError {
                duration,
                error: error.into_owned(),
                error_steps: Cow::Owned(error_steps.into_owned()),
            },
            Details::StepFindViable { step_names } => Details::StepFindViable {
                step_names: Cow::Owned(step_names.into_owned()),
            },
            Details::StepHandle {
                attempt,
                max_attempts,
            } => Details::StepHandle {
                attempt,
                max_attempts,
            },
            Details::StepComplete { attempt, duration } => {
                Details::StepComplete { attempt, duration }
            }
            Details::StepError {
                attempt,
                error,
                retryable,
            } => Details::StepError {
                attempt,
                error: error.into_owned(),
                retryable,
            },
            Details::StepRetry {
                attempt,
                max_attempts,
            } => Details::StepRetry {
                attempt,
                max_attempts,
            },
            Details::StepBackoff { attempt, backoff } => Details::StepBackoff { attempt, backoff },
            Details::StepSkip { reason } => Details::StepSkip {
                reason: Cow::Owned(reason.into_owned()),
            },
            Details::StepMaxRetriesReached {
                attempts,
                max_attempts,
            } => Details::StepMaxRetriesReached {
                attempts,
                max_attempts,
            },
            Details::Custom { name, payload } => Details::Custom {
                name: Cow::Owned(name.into_owned()),
                payload: Cow::Owned(payload.into_owned()),
            },
        }
    }
}

/// One event: when it happened, the task and step it belongs to, and its [`Details`].
///
/// Events are built on the stack from borrowed data, so firing one allocates nothing unless an
/// observer keeps it ([`Event::into_owned`]).
///
/// ```
/// use tasker::telemetry::{Details, Event};
/// let event = Event::new(None, None, Details::TaskStart);
/// assert_eq!(event.name(), "task.start");
/// let json = event.to_json();
/// assert_eq!(json["event"], "task.start");
/// assert!(json["task_id"].is_null()); // fired outside a task
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    /// The event's own id, for events that may be emitted again and must be recognisable as a
    /// repeat (a queued task's terminal event, re-emitted after its worker died).
    id: Option<Uuid>,
    timestamp: SystemTime,
    task: Option<TaskRef>,
    step: Option<StepRef>,
    details: Details<'a>,
    fields: Option<Cow<'a, serde_json::Map<String, serde_json::Value>>>,
}

impl<'a> Event<'a> {
    /// An event happening now.
    pub fn new(task: Option<TaskRef>, step: Option<StepRef>, details: Details<'a>) -> Self {
        Self::at(crate::clock::now().system, task, step, details)
    }

    /// An event with an explicit timestamp.
    pub fn at(
        timestamp: SystemTime,
        task: Option<TaskRef>,
        step: Option<StepRef>,
        details: Details<'a>,
    ) -> Self {
        Self {
            id: None,
            timestamp,
            task,
            step,
            details,
            fields: None,
        }
    }

    /// This event with `id` as its [`event_id`](Self::event_id): the same id on every emission
    /// of the same event, so that a consumer can recognise a repeat.
    ///
    /// ```
    /// use tasker::telemetry::{Details, Event};
    /// let id = uuid::Uuid::from_u128(7);
    /// let event = Event::new(None, None, Details::TaskStart).with_id(id);
    /// assert_eq!(event.event_id(), Some(id));
    /// assert_eq!(event.to_json()["event_id"], id.to_string());
    /// ```
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = Some(id);
        self
    }

    /// The event's id, when it carries one: a queued task's `task.complete` or `task.error`
    /// does, identical when a process re-emits it after its worker died; other events do not.
    pub fn event_id(&self) -> Option<Uuid> {
        self.id
    }

    /// This event with the fields a step records by opting in (`#[step(fields(...))]`),
    /// already masked.
    pub fn with_fields(mut self, fields: &'a serde_json::Map<String, serde_json::Value>) -> Self {
        self.fields = Some(Cow::Borrowed(fields));
        self
    }

    /// The fields recorded by `#[step(fields(...))]`, if any.
    pub fn fields(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.fields.as_deref()
    }

    /// The lifecycle kind, or `None` for a custom event.
    pub fn kind(&self) -> Option<EventKind> {
        self.details.kind()
    }

    /// The dotted name: `"step.complete"`, or a custom event's own name.
    pub fn name(&self) -> &str {
        match &self.details {
            Details::Custom { name, .. } => name,
            _ => self.kind().map_or("", EventKind::name),
        }
    }

    /// When the event happened.
    pub fn timestamp(&self) -> SystemTime {
        self.timestamp
    }

    /// The task it belongs to; `None` for a step called outside any task.
    pub fn task(&self) -> Option<&TaskRef> {
        self.task.as_ref()
    }

    /// The step it belongs to; `None` for task events and batches.
    pub fn step(&self) -> Option<&StepRef> {
        self.step.as_ref()
    }

    /// The kind-specific payload.
    pub fn details(&self) -> &Details<'a> {
        &self.details
    }

    /// `task_id`.
    pub fn task_id(&self) -> Option<Uuid> {
        self.task.map(|task| task.id)
    }

    /// `task_name`.
    pub fn task_name(&self) -> Option<&'static str> {
        self.task.map(|task| task.name)
    }

    /// `step_id`.
    pub fn step_id(&self) -> Option<Uuid> {
        self.step.map(|step| step.id)
    }

    /// `step_name`.
    pub fn step_name(&self) -> Option<&'static str> {
        self.step.map(|step| step.name)
    }

    /// `attempt` of `step.handle`, `step.complete`, `step.error`, `step.retry`, `step.backoff`,
    /// `task.retry` and `task.backoff`.
    pub fn attempt(&self) -> Option<u32> {
        match self.details {
            Details::TaskRetry { attempt, .. }
            | Details::TaskBackoff { attempt, .. }
            | Details::StepHandle { attempt, .. }
            | Details::StepComplete { attempt, .. }
            | Details::StepError { attempt, .. }
            | Details::StepRetry { attempt, .. }
            | Details::StepBackoff { attempt, .. } => Some(attempt),
            _ => None,
        }
    }

    /// `max_attempts` of `step.handle`, `step.retry`, `step.max_retries_reached`, `task.retry`.
    pub fn max_attempts(&self) -> Option<u32> {
        match self.details {
            Details::TaskRetry { max_attempts, .. }
            | Details::StepHandle { max_attempts, .. }
            | Details::StepRetry { max_attempts, .. }
            | Details::StepMaxRetriesReached { max_attempts, .. } => Some(max_attempts),
            _ => None,
        }
    }

    /// The error of `step.error`, `task.error`, and of the failed attempt `task.retry` follows.
    pub fn error(&self) -> Option<&ErrorInfo<'a>> {
        match &self.details {
            Details::StepError { error, .. }
            | Details::TaskError { error, .. }
            | Details::TaskRetry { error, .. } => Some(error),
            _ => None,
        }
    }

    /// `duration_ms` of `step.complete`, `task.complete` and `task.error`.
    pub fn duration(&self) -> Option<Duration> {
        match self.details {
            Details::StepComplete { duration, .. }
            | Details::TaskComplete { duration }
            | Details::TaskError { duration, .. } => Some(duration),
            _ => None,
        }
    }

    /// `backoff_ms` of `step.backoff` and `task.backoff`.
    pub fn backoff(&self) -> Option<Duration> {
        match self.details {
            Details::StepBackoff { backoff, .. } | Details::TaskBackoff { backoff, .. } => {
                Some(backoff)
            }
            _ => None,
        }
    }

    /// `reason` of `step.skip`.
    pub fn reason(&self) -> Option<&str> {
        match &self.details {
            Details::StepSkip { reason } => Some(reason),
            _ => None,
        }
    }

    /// The payload of a custom event.
    pub fn payload(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        match &self.details {
            Details::Custom { payload, .. } => Some(payload),
            _ => None,
        }
    }

    /// The event as a JSON object: `"event"` plus every payload key.
    ///
    /// Keys always present: `event`, `timestamp` (RFC 3339, UTC, microseconds), `task_id`,
    /// `task_name`, `task_version` (null outside a task); `event_id` follows `event` in events
    /// that carry one ([`event_id`](Self::event_id)). Step events add `step_id` and
    /// `step_name`; custom events add them only when recorded inside a step. Then the keys of the
    /// event's kind (DESIGN.md §3): durations as `duration_ms` (float, milliseconds), waits as
    /// `backoff_ms` (integer). `errors` of `task.initialize` is present only on error. Steps that
    /// opt in with `fields(...)` add a `fields` object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_else(|error| {
            // Every field serializes infallibly; keep the contract of an object anyway.
            serde_json::json!({ "event": self.name(), "serialization_error": error.to_string() })
        })
    }

    /// An owned copy of a borrowed event: what the collector queues for the adapters. Cloning
    /// copies only the `Cow` references; [`into_owned`](Self::into_owned) then copies the data
    /// once.
    pub fn to_owned_event(&self) -> Event<'static> {
        self.clone().into_owned()
    }

    /// A copy that owns all of its data, for observers that keep events.
    pub fn into_owned(self) -> Event<'static> {
        let details = self.details.into_owned();
        Event {
            id: self.id,
            timestamp: self.timestamp,
            task: self.task,
            step: self.step,
            details,
            fields: self.fields.map(|fields| Cow::Owned(fields.into_owned())),
        }
    }
}
