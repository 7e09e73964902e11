//! The span tree: a `task.<name>` span per task run, a `step.<name>` span per step call (all of
//! its attempts), lifecycle events as span events, errors as statuses and `exception` events.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use opentelemetry::trace::{Link, Span, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context as OtelContext, KeyValue, StringValue};

use super::attributes::{self as keys, event_attributes};
use super::names::span_name;
use super::propagator::{extract_context, ProducerContexts, SpanContexts, StepContexts};
use super::span_map::SpanMap;
use crate::adapter::SpanOutcome;
use crate::context::{Context, SourceLocation, StepRef, TaskOrigin, TaskRef};
use crate::event::{Details, ErrorInfo, Event, InitializeStatus};

/// One open span and what its end needs to know.
struct OpenSpan<S> {
    span: S,
    /// When the span started: event timestamps are never earlier (another adapter may run
    /// between an event's creation and this adapter's hook).
    start_time: SystemTime,
    /// The latest event timestamp: the span never ends before it.
    last_event: SystemTime,
    started: Instant,
    /// The context that makes this span the explicit parent of a child, built on first use.
    as_parent: Option<OtelContext>,
    /// `tasker.task.id` as a shared string, so that steps do not format it again.
    task_id: Option<StringValue>,
    /// The last attempt started (0: skipped).
    attempts: u32,
    max_attempts: u32,
    /// The class of the final error, for `error.type` on the duration metric.
    error_type: Option<StringValue>,
}

impl<S: Span> OpenSpan<S> {
    /// Ends the span now, or at its last event if that was stamped later: event timestamps come
    /// from the events' own clock, which may run a little ahead of the system clock.
    fn end(&mut self) {
        self.span
            .end_with_timestamp(SystemTime::now().max(self.last_event));
    }

    fn parent_context(&mut self) -> OtelContext {
        self.as_parent
            .get_or_insert_with(|| {
                OtelContext::new().with_remote_span_context(self.span.span_context().clone())
            })
            .clone()
    }

    fn add_event(&mut self, name: Cow<'static, str>, at: SystemTime, attributes: Vec<KeyValue>) {
        let at = at.max(self.start_time);
        self.last_event = self.last_event.max(at);
        self.span.add_event_with_timestamp(name, at, attributes);
    }

    /// Error status, `error.type` and an `exception` event: a final failure.
    fn fail(&mut self, error: &ErrorInfo<'_>, at: SystemTime) {
        let class = StringValue::from(error.class.clone().into_owned());
        self.span
            .set_status(Status::error(error.message.clone().into_owned()));
        self.span
            .set_attribute(KeyValue::new(keys::ERROR_TYPE, class.clone()));
        self.add_event(
            Cow::Borrowed("exception"),
            at,
            vec![
                KeyValue::new(keys::EXCEPTION_TYPE, class.clone()),
                KeyValue::new(keys::EXCEPTION_MESSAGE, error.message.clone().into_owned()),
            ],
        );
        self.error_type = Some(class);
    }
}

/// What the end of a task or step tells the metrics.
pub(crate) struct Closed {
    pub(crate) elapsed: std::time::Duration,
    pub(crate) error_type: Option<StringValue>,
}

/// A `task.initialize` seen before its task span opens (at `task.start`).
struct PendingStart {
    timestamp: SystemTime,
    attributes: Vec<KeyValue>,
}

enum Entry<S> {
    Open(OpenSpan<S>),
    Pending(PendingStart),
    /// The `enqueue task.<name>` span of a task being enqueued, from `task.initialize` to
    /// `task.enqueue`; its `as_parent` is what the envelope carries.
    Producer(OpenSpan<S>),
}

/// The open spans of one adapter and the tracer that makes them.
pub(crate) struct SpanTree<T: Tracer> {
    tracer: T,
    entries: SpanMap<Entry<T::Span>>,
    /// Ended producer spans' contexts, until the runtime injects them into their envelope.
    producers: Arc<ProducerContexts>,
    /// Open step spans' contexts, for the propagator to make current while an attempt runs.
    steps: Arc<SpanContexts>,
    /// Open spans of queued task runs, by task id, for the propagator to give the runtime.
    runs: Arc<SpanContexts>,
    /// Whether an invalid carried trace context was reported already.
    warned_invalid: AtomicBool,
}

impl<T> SpanTree<T>
where
    T: Tracer,
    T::Span: Send + Sync + 'static,
{
    pub(crate) fn new(tracer: T) -> Self {
        Self {
            tracer,
            entries: SpanMap::new(),
            producers: Arc::default(),
            steps: Arc::default(),
            runs: Arc::default(),
            warned_invalid: AtomicBool::new(false),
        }
    }

    /// Where the contexts of ended producer spans wait for the propagator.
    pub(crate) fn producers(&self) -> Arc<ProducerContexts> {
        self.producers.clone()
    }

    /// The contexts of the open step spans, for the propagator.
    pub(crate) fn step_contexts(&self) -> Arc<dyn StepContexts> {
        self.steps.clone()
    }

    /// The contexts of the open spans of queued task runs, for the propagator.
    pub(crate) fn runs(&self) -> Arc<SpanContexts> {
        self.runs.clone()
    }

    fn with_open<R>(&self, id: u128, f: impl FnOnce(&mut OpenSpan<T::Span>) -> R) -> Option<R> {
        self.entries
            .with(id, |entry| match entry {
                Entry::Open(open) => Some(f(open)),
                Entry::Pending(_) | Entry::Producer(_) => None,
            })
            .flatten()
    }

    /// How a task's span starts: its kind, the context it continues, and for a run by a worker,
    /// which delivery it is and the link to an earlier delivery's run.
    ///
    /// An inline run is an INTERNAL root: each task is a trace of its own. A run taken from a
    /// queue is a CONSUMER span whose remote parent is the producer's `enqueue task.<name>`
    /// span, extracted from the trace context of the task's frame (current at `task.start`);
    /// without one, or with an invalid one (reported once), it starts a new trace. A delivery
    /// after one that died links to that one's run when the queue kept its context.
    fn task_origin(&self, task: &TaskRef) -> TaskOrigins {
        task_origin(task, &self.warned_invalid)
    }

    /// Opens the `enqueue task.<name>` PRODUCER span of a task being enqueued (at its
    /// successful `task.initialize`), child of the enqueuing code's current OpenTelemetry
    /// context.
    fn open_producer(
        &self,
        task: &TaskRef,
        name: Cow<'static, str>,
        timestamp: SystemTime,
        event_attributes: Vec<KeyValue>,
    ) {
        let current = OtelContext::current();
        let task_id = StringValue::from(Arc::<str>::from(task.id.to_string()));
        let attributes = vec![
            KeyValue::new(keys::TASK_ID, task_id.clone()),
            KeyValue::new(keys::TASK_NAME, task.name),
            KeyValue::new(keys::TASK_VERSION, task.version),
        ];
        let span = self
            .tracer
            .span_builder(span_name("enqueue task.", task.name))
            .with_kind(SpanKind::Producer)
            .with_start_time(timestamp)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &current);
        // The envelope carries this span's context, with the enqueuing code's baggage.
        let as_parent = current.with_remote_span_context(span.span_context().clone());
        let mut open = OpenSpan {
            span,
            start_time: timestamp,
            last_event: timestamp,
            started: Instant::now(),
            as_parent: Some(as_parent),
            task_id: Some(task_id),
            attempts: 0,
            max_attempts: 0,
            error_type: None,
        };
        open.add_event(name, timestamp, event_attributes);
        self.entries
            .insert(task.id.as_u128(), Entry::Producer(open));
    }

    /// Ends the producer span of task `id` (at `task.enqueue`) and keeps its context for the
    /// propagator.
    fn close_producer(&self, id: u128, name: Cow<'static, str>, event: &Event<'_>, queue: &str) {
        match self.entries.remove(id) {
            Some(Entry::Producer(mut open)) => {
                open.add_event(name, event.timestamp(), event_attributes(event));
                open.span
                    .set_attribute(KeyValue::new(keys::QUEUE, queue.to_owned()));
                open.end();
                if let Some(context) = open.as_parent.take() {
                    self.producers.hold(id, context);
                }
            }
            // A task span of that id is not this enqueue's business.
            Some(Entry::Open(open)) => self.entries.insert(id, Entry::Open(open)),
            // What an inline `task.initialize` left: there is no span to end.
            Some(Entry::Pending(_)) | None => {}
        }
    }

    /// Opens the task's span (the `start_trace` hook, just before `task.start`).
    pub(crate) fn open_task(&self, task: &TaskRef) {
        let id = task.id.as_u128();
        let pending = match self.entries.remove(id) {
            Some(Entry::Pending(pending)) => Some(pending),
            Some(Entry::Producer(mut producer)) => {
                // An enqueue that never reached `task.enqueue`: its span ends here.
                producer.end();
                None
            }
            Some(Entry::Open(open)) => {
                // A task id opened twice: keep the first span, as ids are unique per run.
                self.entries.insert(id, Entry::Open(open));
                return;
            }
            None => None,
        };
        let origin = self.task_origin(task);
        let task_id = StringValue::from(Arc::<str>::from(task.id.to_string()));
        let mut attributes = Vec::with_capacity(8);
        attributes.push(KeyValue::new(keys::TASK_ID, task_id.clone()));
        attributes.push(KeyValue::new(keys::TASK_NAME, task.name));
        attributes.push(KeyValue::new(keys::TASK_VERSION, task.version));
        if let Some(delivery) = origin.delivery {
            attributes.push(KeyValue::new(keys::DELIVERY_ATTEMPT, i64::from(delivery)));
        }
        push_source(&mut attributes, task.source);
        let start_time = pending
            .as_ref()
            .map_or_else(SystemTime::now, |pending| pending.timestamp);
        let mut builder = self
            .tracer
            .span_builder(span_name("task.", task.name))
            .with_kind(origin.kind)
            .with_start_time(start_time)
            .with_attributes(attributes);
        if let Some(link) = origin.link {
            builder = builder.with_links(vec![link]);
        }
        let span = builder.start_with_context(&self.tracer, &origin.parent);
        if origin.delivery.is_some() {
            self.runs.insert(id, span.span_context().clone());
        }
        let mut open = OpenSpan {
            span,
            start_time,
            last_event: start_time,
            started: Instant::now(),
            as_parent: None,
            task_id: Some(task_id),
            attempts: 0,
            max_attempts: 0,
            error_type: None,
        };
        if let Some(pending) = pending {
            open.add_event(
                Cow::Borrowed("task.initialize"),
                pending.timestamp,
                pending.attributes,
            );
        }
        self.entries.insert(id, Entry::Open(open));
    }

    /// Ends the task's span (the `end_trace` hook, after `task.complete` or `task.error`).
    /// [`SpanOutcome::Abandoned`] ends the span of a run whose worker lost the task's lease.
    pub(crate) fn close_task(&self, task: &TaskRef, outcome: SpanOutcome) -> Option<Closed> {
        self.runs.remove(task.id.as_u128());
        let Entry::Open(mut open) = self.entries.remove(task.id.as_u128())? else {
            return None;
        };
        open.span
            .set_attribute(KeyValue::new(keys::TASK_RESULT, outcome.as_str()));
        open.end();
        Some(Closed {
            elapsed: open.started.elapsed(),
            error_type: open.error_type,
        })
    }

    /// Opens a step call's span (the `start_span` hook, before its first event): the child of
    /// the step it was called from, else of its task, else a root.
    pub(crate) fn open_step(&self, step: &StepRef, task: Option<&TaskRef>) {
        let parent_of =
            |id: u128| self.with_open(id, |open| (open.parent_context(), open.task_id.clone()));
        let found = step
            .parent_id
            .and_then(|id| parent_of(id.as_u128()))
            .or_else(|| task.and_then(|task| parent_of(task.id.as_u128())));
        let (parent, task_id) = match found {
            Some((parent, task_id)) => (parent, task_id),
            None => (OtelContext::new(), None),
        };
        let task_id = task_id
            .or_else(|| task.map(|task| StringValue::from(Arc::<str>::from(task.id.to_string()))));
        let mut attributes = Vec::with_capacity(12);
        if let (Some(task), Some(task_id)) = (task, &task_id) {
            attributes.push(KeyValue::new(keys::TASK_ID, task_id.clone()));
            attributes.push(KeyValue::new(keys::TASK_NAME, task.name));
            attributes.push(KeyValue::new(keys::TASK_VERSION, task.version));
        }
        attributes.push(KeyValue::new(keys::STEP_ID, step.id.to_string()));
        attributes.push(KeyValue::new(keys::STEP_NAME, step.name));
        push_source(&mut attributes, step.source);
        let start_time = SystemTime::now();
        let span = self
            .tracer
            .span_builder(span_name("step.", step.name))
            .with_kind(SpanKind::Internal)
            .with_start_time(start_time)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        self.steps
            .insert(step.id.as_u128(), span.span_context().clone());
        self.entries.insert(
            step.id.as_u128(),
            Entry::Open(OpenSpan {
                span,
                start_time,
                last_event: start_time,
                started: Instant::now(),
                as_parent: None,
                task_id,
                attempts: 0,
                max_attempts: 0,
                error_type: None,
            }),
        );
    }

    /// Ends a step call's span (the `end_span` hook, after its last event).
    pub(crate) fn close_step(&self, step: &StepRef, outcome: SpanOutcome) -> Option<Closed> {
        self.steps.remove(step.id.as_u128());
        let Entry::Open(mut open) = self.entries.remove(step.id.as_u128())? else {
            return None;
        };
        let attempts = if outcome == SpanOutcome::Skip {
            0
        } else {
            open.attempts
        };
        open.span
            .set_attribute(KeyValue::new(keys::STEP_ATTEMPTS, i64::from(attempts)));
        open.span
            .set_attribute(KeyValue::new(keys::STEP_RESULT, outcome.as_str()));
        open.end();
        Some(Closed {
            elapsed: open.started.elapsed(),
            error_type: open.error_type,
        })
    }

    /// Records `event` as a span event on its span, and the status and attributes it implies.
    pub(crate) fn record(&self, event: &Event<'_>) {
        let details = event.details();
        let name = match event.kind() {
            Some(kind) => Cow::Borrowed(kind.name()),
            None => Cow::Owned(event.name().to_owned()),
        };
        let timestamp = event.timestamp();
        let Some(id) = self.target(event) else {
            // A custom event outside any task or step: on the application's active span, if any.
            if matches!(details, Details::Custom { .. }) {
                let attributes = event_attributes(event);
                opentelemetry::trace::get_active_span(|span| {
                    span.add_event_with_timestamp(name, timestamp, attributes)
                });
            }
            return;
        };
        if let Details::TaskInitialize { status, .. } = details {
            // The task span opens at `task.start`; keep the event until then. A request that
            // failed to initialize never starts, so nothing is kept for it.
            // A request enqueued for a worker gets its PRODUCER span instead.
            if *status == InitializeStatus::Success {
                match event.task() {
                    Some(task) if task.origin == TaskOrigin::Queued => {
                        self.open_producer(task, name, timestamp, event_attributes(event));
                    }
                    _ => self.entries.insert(
                        id,
                        Entry::Pending(PendingStart {
                            timestamp,
                            attributes: event_attributes(event),
                        }),
                    ),
                }
            }
            return;
        }
        if let Details::TaskEnqueue { queue } = details {
            self.close_producer(id, name, event, queue);
            return;
        }
        let attributes = event_attributes(event);
        self.with_open(id, |open| {
            open.add_event(name, timestamp, attributes);
            match details {
                Details::StepHandle {
                    attempt,
                    max_attempts,
                } => {
                    open.attempts = *attempt;
                    if *attempt == 1 || open.max_attempts == 0 {
                        open.max_attempts = *max_attempts;
                        open.span.set_attribute(KeyValue::new(
                            keys::STEP_MAX_ATTEMPTS,
                            i64::from(*max_attempts),
                        ));
                        record_fields(open, event);
                    }
                }
                Details::StepSkip { .. } => record_fields(open, event),
                Details::StepError {
                    attempt,
                    error,
                    retryable,
                } if !*retryable || *attempt >= open.max_attempts => open.fail(error, timestamp),
                Details::TaskError { error, .. } => open.fail(error, timestamp),
                _ => {}
            }
        });
    }

    /// The id of the span an event belongs on: its step's, else (for a batch or a custom event)
    /// the current step's, else its task's.
    fn target(&self, event: &Event<'_>) -> Option<u128> {
        if let Some(step) = event.step() {
            return Some(step.id.as_u128());
        }
        if matches!(event.details(), Details::StepFindViable { .. }) {
            // A batch inside a step belongs on that step's span.
            let current = Context::with_current(|context| context.step().map(|step| step.id));
            if let Some(step) = current {
                return Some(step.as_u128());
            }
        }
        event.task().map(|task| task.id.as_u128())
    }
}

pub(crate) fn task_origin(task: &TaskRef, warned_invalid: &AtomicBool) -> TaskOrigins {
    if task.origin != TaskOrigin::Queued {
        return TaskOrigins::inline();
    }
    let queued = Context::with_current(|context| {
        context
            .task_frame()
            .filter(|frame| frame.task().id == task.id)
            .and_then(|frame| frame.queued().cloned())
    });
    let Some(queued) = queued else {
        return TaskOrigins::queued(OtelContext::new(), None, None);
    };
    let delivery = Some(queued.delivery_attempt);
    let link = queued.previous_run.as_ref().and_then(|run| {
        let context = extract_context(&run.trace_context);
        let span = context.span().span_context().clone();
        span.is_valid().then(|| {
            Link::new(
                span,
                vec![KeyValue::new(
                    keys::DELIVERY_ATTEMPT,
                    i64::from(run.delivery_attempt),
                )],
                0,
            )
        })
    });
    let Some(carried) = queued.trace_context else {
        return TaskOrigins::queued(OtelContext::new(), delivery, link);
    };
    let parent = extract_context(&carried);
    if parent.span().span_context().is_valid() {
        return TaskOrigins::queued(parent, delivery, link);
    }
    if !warned_invalid.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            target: "tasker",
            task_id = %task.id,
            "[Tasker] task `{}` carries an invalid trace context (traceparent {:?}); its run \
             starts a new trace (reported once)",
            task.name,
            carried.traceparent,
        );
    }
    TaskOrigins::queued(OtelContext::new(), delivery, link)
}

/// See [`task_origin`].
pub(crate) struct TaskOrigins {
    pub(crate) kind: SpanKind,
    pub(crate) parent: OtelContext,
    /// Which delivery a run by a worker is.
    pub(crate) delivery: Option<u32>,
    /// To the run of an earlier delivery that died.
    pub(crate) link: Option<Link>,
}

impl TaskOrigins {
    fn inline() -> Self {
        TaskOrigins {
            kind: SpanKind::Internal,
            parent: OtelContext::new(),
            delivery: None,
            link: None,
        }
    }

    fn queued(parent: OtelContext, delivery: Option<u32>, link: Option<Link>) -> Self {
        TaskOrigins {
            kind: SpanKind::Consumer,
            parent,
            delivery,
            link,
        }
    }
}

pub(crate) fn push_source(attributes: &mut Vec<KeyValue>, source: Option<&'static SourceLocation>) {
    if let Some(source) = source {
        attributes.push(KeyValue::new(keys::CODE_FUNCTION, source.function));
        attributes.push(KeyValue::new(keys::CODE_FILE, source.file));
        attributes.push(KeyValue::new(keys::CODE_LINE, i64::from(source.line)));
    }
}

/// The values of `#[step(fields(...))]` as span attributes `tasker.step.fields.<key>`.
fn record_fields<S: Span>(open: &mut OpenSpan<S>, event: &Event<'_>) {
    if let Some(fields) = event.fields() {
        for (key, value) in fields {
            open.span.set_attribute(KeyValue::new(
                format!("{}{key}", keys::FIELDS_PREFIX),
                keys::json_value(value),
            ));
        }
    }
}
