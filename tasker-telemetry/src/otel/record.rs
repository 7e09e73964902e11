//! A span as the direct export path keeps it while its task or step runs: ids, times, the
//! identity it was started with, typed events, the final failure and links — nothing formatted.
//! [`SpanRecord::into_span_data`] builds the exported `SpanData` once, on the exporter's thread.

use std::borrow::Cow;
use std::time::SystemTime;

use opentelemetry::trace::{Event as SpanEvent, Link, SpanContext, SpanId, SpanKind, Status};
use opentelemetry::{Context as OtelContext, InstrumentationScope, KeyValue, StringValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use smallvec::SmallVec;
use uuid::Uuid;

use super::attributes::{self as keys, details_attributes, json_value};
use crate::adapter::SpanOutcome;
use crate::clock::Tick;
use crate::context::SourceLocation;
use crate::event::{Details, ErrorInfo};

/// The task a span belongs to, for its `tasker.task.*` attributes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskIdentity {
    pub(crate) id: Uuid,
    pub(crate) name: &'static str,
    pub(crate) version: &'static str,
}

/// What a span event is: a lifecycle or custom event, or the `exception` of the final failure.
#[derive(Debug)]
pub(crate) enum RecordedEvent {
    /// A lifecycle or custom event, with its typed details (which name it).
    Event {
        at: SystemTime,
        details: Details<'static>,
    },
    /// The `exception` event of [`SpanRecord::failure`].
    Exception { at: SystemTime },
}

/// How the span ended, for its end attributes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SpanEnd {
    /// A step call: `tasker.step.attempts` and `tasker.step.result`.
    Step { attempts: u32, outcome: SpanOutcome },
    /// A task run: `tasker.task.result`.
    Task { outcome: SpanOutcome },
    /// An `enqueue task.<name>` span: `tasker.queue` is set.
    Producer,
}

/// One span of the direct export path, from its start to its end.
#[derive(Debug)]
pub(crate) struct SpanRecord {
    /// Ids picked at start, the sampling decision in the flags and the parent's trace state.
    pub(crate) context: SpanContext,
    pub(crate) parent_span_id: SpanId,
    pub(crate) parent_is_remote: bool,
    pub(crate) kind: SpanKind,
    pub(crate) name: Cow<'static, str>,
    pub(crate) start_time: SystemTime,
    /// Monotonic start, for the duration metrics.
    pub(crate) started: Tick,
    pub(crate) end_time: SystemTime,
    pub(crate) task: Option<TaskIdentity>,
    /// `tasker.step.id` and `tasker.step.name` of a step call's span.
    pub(crate) step: Option<(Uuid, &'static str)>,
    pub(crate) delivery: Option<u32>,
    pub(crate) source: Option<&'static SourceLocation>,
    /// `tasker.step.max_attempts`, once the first attempt told it.
    pub(crate) max_attempts: Option<u32>,
    /// The last attempt started (0: skipped).
    pub(crate) attempts: u32,
    /// `#[step(fields(...))]` values, as `tasker.step.fields.<key>`.
    pub(crate) fields: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// A step call's usual events (`step.handle`, `step.complete`) fit inline.
    pub(crate) events: SmallVec<[RecordedEvent; 2]>,
    /// The final failure: status `Error`, `error.type`, the `exception` event.
    pub(crate) failure: Option<Box<ErrorInfo<'static>>>,
    pub(crate) links: Vec<Link>,
    pub(crate) queue: Option<Box<str>>,
    /// A step call's context, current while its attempts run (log correlation).
    pub(crate) current: Option<OtelContext>,
    pub(crate) end: Option<SpanEnd>,
}

impl SpanRecord {
    /// A record started at `start_time` (its monotonic start: now), with no events yet.
    pub(crate) fn new(
        context: SpanContext,
        parent: &SpanContext,
        parent_is_remote: bool,
        kind: SpanKind,
        name: Cow<'static, str>,
        start_time: SystemTime,
        started: Tick,
    ) -> Self {
        Self {
            context,
            parent_span_id: if parent.is_valid() {
                parent.span_id()
            } else {
                SpanId::INVALID
            },
            parent_is_remote: parent.is_valid() && parent_is_remote,
            kind,
            name,
            start_time,
            started,
            end_time: start_time,
            task: None,
            step: None,
            delivery: None,
            source: None,
            max_attempts: None,
            attempts: 0,
            fields: None,
            events: SmallVec::new(),
            failure: None,
            links: Vec::new(),
            queue: None,
            current: None,
            end: None,
        }
    }

    /// Keeps an event; never earlier than the span's start (another adapter may run between an
    /// event's creation and this adapter's hook).
    pub(crate) fn add_event(&mut self, at: SystemTime, details: Details<'static>) {
        self.events.push(RecordedEvent::Event {
            at: at.max(self.start_time),
            details,
        });
    }

    /// A final failure: error status, `error.type` and an `exception` event.
    pub(crate) fn fail(&mut self, error: &ErrorInfo<'_>, at: SystemTime) {
        self.failure = Some(Box::new(error.clone().into_owned()));
        self.events.push(RecordedEvent::Exception {
            at: at.max(self.start_time),
        });
    }

    /// The final failure's class, for `error.type` on the duration metrics.
    pub(crate) fn error_type(&self) -> Option<StringValue> {
        self.failure
            .as_ref()
            .map(|failure| StringValue::from(failure.class.clone().into_owned()))
    }

    /// Whether the span is exported (the sampling decision taken at its start).
    pub(crate) fn is_sampled(&self) -> bool {
        self.context.is_sampled()
    }

    /// The finished span, as the SDK's own span would have exported it.
    pub(crate) fn into_span_data(self, scope: &InstrumentationScope) -> SpanData {
        let mut attributes = Vec::with_capacity(14);
        if let Some(task) = &self.task {
            attributes.push(KeyValue::new(keys::TASK_ID, task.id.to_string()));
            attributes.push(KeyValue::new(keys::TASK_NAME, task.name));
            attributes.push(KeyValue::new(keys::TASK_VERSION, task.version));
        }
        if let Some(delivery) = self.delivery {
            attributes.push(KeyValue::new(keys::DELIVERY_ATTEMPT, i64::from(delivery)));
        }
        if let Some((id, name)) = self.step {
            attributes.push(KeyValue::new(keys::STEP_ID, id.to_string()));
            attributes.push(KeyValue::new(keys::STEP_NAME, name));
        }
        if let Some(source) = self.source {
            attributes.push(KeyValue::new(keys::CODE_FUNCTION, source.function));
            attributes.push(KeyValue::new(keys::CODE_FILE, source.file));
            attributes.push(KeyValue::new(keys::CODE_LINE, i64::from(source.line)));
        }
        if let Some(max_attempts) = self.max_attempts {
            attributes.push(KeyValue::new(
                keys::STEP_MAX_ATTEMPTS,
                i64::from(max_attempts),
            ));
        }
        if let Some(fields) = &self.fields {
            for (key, value) in fields.iter() {
                attributes.push(KeyValue::new(
                    format!("{}{key}", keys::FIELDS_PREFIX),
                    json_value(value),
                ));
            }
        }
        if let Some(failure) = &self.failure {
            attributes.push(KeyValue::new(
                keys::ERROR_TYPE,
                failure.class.clone().into_owned(),
            ));
        }
        if let Some(queue) = self.queue {
            attributes.push(KeyValue::new(keys::QUEUE, String::from(queue)));
        }
        match self.end {
            Some(SpanEnd::Step { attempts, outcome }) => {
                attributes.push(KeyValue::new(keys::STEP_ATTEMPTS, i64::from(attempts)));
                attributes.push(KeyValue::new(keys::STEP_RESULT, outcome.as_str()));
            }
            Some(SpanEnd::Task { outcome }) => {
                attributes.push(KeyValue::new(keys::TASK_RESULT, outcome.as_str()));
            }
            Some(SpanEnd::Producer) | None => {}
        }
        let failure = self.failure;
        // Event timestamps come from the events' own clock reads: the span covers them all.
        let last_event = self
            .events
            .iter()
            .map(|event| match event {
                RecordedEvent::Event { at, .. } | RecordedEvent::Exception { at } => *at,
            })
            .max();
        let end_time = self
            .end_time
            .max(self.start_time)
            .max(last_event.unwrap_or(self.start_time));
        let events = self
            .events
            .into_iter()
            .map(|event| match event {
                RecordedEvent::Event { at, details } => {
                    let attributes = details_attributes(&details);
                    SpanEvent::new(event_name(details), at, attributes, 0)
                }
                RecordedEvent::Exception { at } => {
                    let (class, message) = failure
                        .as_ref()
                        .map(|failure| {
                            (
                                failure.class.clone().into_owned(),
                                failure.message.clone().into_owned(),
                            )
                        })
                        .unwrap_or_default();
                    SpanEvent::new(
                        "exception",
                        at,
                        vec![
                            KeyValue::new(keys::EXCEPTION_TYPE, class),
                            KeyValue::new(keys::EXCEPTION_MESSAGE, message),
                        ],
                        0,
                    )
                }
            })
            .collect();
        let status = match &failure {
            Some(failure) => Status::error(failure.message.clone().into_owned()),
            None => Status::Unset,
        };
        // Both are non-exhaustive: filled through their public fields.
        let mut span_events = SpanEvents::default();
        span_events.events = events;
        let mut span_links = SpanLinks::default();
        span_links.links = self.links;
        SpanData {
            span_context: self.context,
            parent_span_id: self.parent_span_id,
            parent_span_is_remote: self.parent_is_remote,
            span_kind: self.kind,
            name: self.name,
            start_time: self.start_time,
            end_time,
            attributes,
            dropped_attributes_count: 0,
            events: span_events,
            links: span_links,
            status,
            instrumentation_scope: scope.clone(),
        }
    }
}

/// The span event's name: the lifecycle kind's, or the custom event's own.
fn event_name(details: Details<'static>) -> Cow<'static, str> {
    match details {
        Details::Custom { name, .. } => name,
        other => Cow::Borrowed(other.kind().map_or("", |kind| kind.name())),
    }
}
