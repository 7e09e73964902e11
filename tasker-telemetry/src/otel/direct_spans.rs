//! The span tree of the direct export path: the same spans as [`SpanTree`](super::spans), kept
//! as [`SpanRecord`]s with ids picked at their start and handed to a [`DirectExport`] at their
//! end. The caller's thread makes no SDK span; its work per step call is a record in a map,
//! a few stores per event, and one OpenTelemetry context (current while the step runs).

use std::borrow::Cow;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::trace::{SpanContext, SpanKind, TraceContextExt};
use opentelemetry::Context as OtelContext;

use super::attributes::event_attributes;
use super::direct_export::DirectExport;
use super::ids::{new_span_id, new_trace_id};
use super::names::span_name;
use super::propagator::{ProducerContexts, SpanContexts, StepContexts};
use super::record::{SpanEnd, SpanRecord, TaskIdentity};
use super::span_map::SpanMap;
use super::spans::{task_origin, Closed};
use crate::adapter::SpanOutcome;
use crate::context::{Context, StepRef, TaskOrigin, TaskRef};
use crate::event::{Details, Event, InitializeStatus};

/// A `task.initialize` seen before its task span opens (at `task.start`).
struct PendingStart {
    timestamp: SystemTime,
    details: Details<'static>,
}

enum Entry {
    Open(SpanRecord),
    Pending(PendingStart),
    /// The `enqueue task.<name>` span of a task being enqueued, from `task.initialize` to
    /// `task.enqueue`, with the context its envelope carries.
    Producer(SpanRecord, OtelContext),
}

/// The open span records of one adapter and the export they go to.
pub(crate) struct DirectTree {
    export: DirectExport,
    /// Shared with the propagator, which finds a step's current context in its record.
    entries: Arc<SpanMap<Entry>>,
    producers: Arc<ProducerContexts>,
    runs: Arc<SpanContexts>,
    warned_invalid: AtomicBool,
}

/// The context of a span starting under `parent` (invalid: a root), with the sampling decision
/// of `export` and the parent's trace state, as the SDK's tracer would make it.
fn child_context(export: &DirectExport, parent: &SpanContext) -> SpanContext {
    let trace_id = if parent.is_valid() {
        parent.trace_id()
    } else {
        new_trace_id()
    };
    let sampled = export.sampler().samples(parent, trace_id);
    SpanContext::new(
        trace_id,
        new_span_id(),
        parent.trace_flags().with_sampled(sampled),
        false,
        parent.trace_state().clone(),
    )
}

fn identity(task: &TaskRef) -> TaskIdentity {
    TaskIdentity {
        id: task.id,
        name: task.name,
        version: task.version,
    }
}

impl StepContexts for SpanMap<Entry> {
    fn step_context(&self, id: u128) -> Option<OtelContext> {
        self.with(id, |entry| match entry {
            Entry::Open(record) => record.current.clone(),
            Entry::Pending(_) | Entry::Producer(..) => None,
        })
        .flatten()
    }
}

impl DirectTree {
    pub(crate) fn new(export: DirectExport) -> Self {
        Self {
            export,
            entries: Arc::new(SpanMap::new()),
            producers: Arc::default(),
            runs: Arc::default(),
            warned_invalid: AtomicBool::new(false),
        }
    }

    pub(crate) fn producers(&self) -> Arc<ProducerContexts> {
        self.producers.clone()
    }

    pub(crate) fn steps(&self) -> Arc<dyn StepContexts> {
        self.entries.clone()
    }

    pub(crate) fn runs(&self) -> Arc<SpanContexts> {
        self.runs.clone()
    }

    fn with_open<R>(&self, id: u128, f: impl FnOnce(&mut SpanRecord) -> R) -> Option<R> {
        self.entries
            .with(id, |entry| match entry {
                Entry::Open(record) => Some(f(record)),
                Entry::Pending(_) | Entry::Producer(..) => None,
            })
            .flatten()
    }

    /// Ends `record` now and hands it to the export.
    fn finish(&self, mut record: SpanRecord, end: SpanEnd) -> Closed {
        let now = crate::clock::now();
        record.end = Some(end);
        record.end_time = now.system;
        let closed = Closed {
            elapsed: now.tick.duration_since(record.started),
            error_type: record.error_type(),
        };
        self.export.push(record);
        closed
    }

    /// Starts the task's span record (the `start_trace` hook, at `task.start`); see
    /// [`SpanTree::open_task`](super::spans::SpanTree) for the shape.
    pub(crate) fn open_task(&self, task: &TaskRef) {
        let id = task.id.as_u128();
        let pending = match self.entries.remove(id) {
            Some(Entry::Pending(pending)) => Some(pending),
            Some(Entry::Producer(producer, _)) => {
                // An enqueue that never reached `task.enqueue`: its span ends here.
                self.finish(producer, SpanEnd::Producer);
                None
            }
            Some(Entry::Open(open)) => {
                // A task id opened twice: keep the first span, as ids are unique per run.
                self.entries.insert(id, Entry::Open(open));
                return;
            }
            None => None,
        };
        let origin = task_origin(task, &self.warned_invalid);
        let parent = origin.parent.span().span_context().clone();
        let context = child_context(&self.export, &parent);
        let now = crate::clock::now();
        let start_time = pending
            .as_ref()
            .map_or(now.system, |pending| pending.timestamp);
        let mut record = SpanRecord::new(
            context,
            &parent,
            parent.is_remote(),
            origin.kind,
            span_name("task.", task.name),
            start_time,
            now.tick,
        );
        record.task = Some(identity(task));
        record.delivery = origin.delivery;
        record.source = task.source;
        record.links.extend(origin.link);
        if origin.delivery.is_some() {
            self.runs.insert(id, record.context.clone());
        }
        if let Some(pending) = pending {
            record.add_event(pending.timestamp, pending.details);
        }
        self.entries.insert(id, Entry::Open(record));
    }

    /// Ends the task's span (the `end_trace` hook).
    pub(crate) fn close_task(&self, task: &TaskRef, outcome: SpanOutcome) -> Option<Closed> {
        self.runs.remove(task.id.as_u128());
        let Entry::Open(record) = self.entries.remove(task.id.as_u128())? else {
            return None;
        };
        Some(self.finish(record, SpanEnd::Task { outcome }))
    }

    /// Starts a step call's span record (the `start_span` hook): the child of the step it was
    /// called from, else of its task, else a root.
    pub(crate) fn open_step(&self, step: &StepRef, task: Option<&TaskRef>) {
        let parent_of = |id: u128| self.with_open(id, |record| record.context.clone());
        let parent = step
            .parent_id
            .and_then(|id| parent_of(id.as_u128()))
            .or_else(|| task.and_then(|task| parent_of(task.id.as_u128())))
            .unwrap_or_else(SpanContext::empty_context);
        let context = child_context(&self.export, &parent);
        // The one allocation of a step call: the context current while its attempts run, kept
        // in the record (and dropped with it on the export's thread).
        let current = OtelContext::current().with_remote_span_context(context.clone());
        let now = crate::clock::now();
        let mut record = SpanRecord::new(
            context,
            &parent,
            false,
            SpanKind::Internal,
            span_name("step.", step.name),
            now.system,
            now.tick,
        );
        record.task = task.map(identity);
        record.step = Some((step.id, step.name));
        record.source = step.source;
        record.current = Some(current);
        self.entries.insert(step.id.as_u128(), Entry::Open(record));
    }

    /// Ends a step call's span (the `end_span` hook).
    pub(crate) fn close_step(&self, step: &StepRef, outcome: SpanOutcome) -> Option<Closed> {
        let Entry::Open(record) = self.entries.remove(step.id.as_u128())? else {
            return None;
        };
        let attempts = if outcome == SpanOutcome::Skip {
            0
        } else {
            record.attempts
        };
        Some(self.finish(record, SpanEnd::Step { attempts, outcome }))
    }

    /// Keeps `event` on its span's record, with the status and attributes it implies.
    pub(crate) fn record(&self, event: &Event<'_>) {
        let details = event.details();
        let timestamp = event.timestamp();
        let Some(id) = self.target(event) else {
            // A custom event outside any task or step: on the application's active span, if any.
            if matches!(details, Details::Custom { .. }) {
                let name = Cow::Owned(event.name().to_owned());
                let attributes = event_attributes(event);
                opentelemetry::trace::get_active_span(|span| {
                    span.add_event_with_timestamp(name, timestamp, attributes)
                });
            }
            return;
        };
        if let Details::TaskInitialize { status, .. } = details {
            // As in `SpanTree::record`: kept until `task.start`, or a PRODUCER span when the
            // request is enqueued for a worker; nothing for a request that failed.
            if *status == InitializeStatus::Success {
                let details = details.clone().into_owned();
                match event.task() {
                    Some(task) if task.origin == TaskOrigin::Queued => {
                        self.open_producer(task, timestamp, details);
                    }
                    _ => self
                        .entries
                        .insert(id, Entry::Pending(PendingStart { timestamp, details })),
                }
            }
            return;
        }
        if let Details::TaskEnqueue { queue } = details {
            self.close_producer(id, event, queue);
            return;
        }
        self.with_open(id, |record| {
            record.add_event(timestamp, details.clone().into_owned());
            match details {
                Details::StepHandle {
                    attempt,
                    max_attempts,
                } => {
                    record.attempts = *attempt;
                    if *attempt == 1 || record.max_attempts.is_none() {
                        record.max_attempts = Some(*max_attempts);
                        record.fields = event.fields().cloned().map(Box::new);
                    }
                }
                Details::StepSkip { .. } => record.fields = event.fields().cloned().map(Box::new),
                Details::StepError {
                    attempt,
                    error,
                    retryable,
                } if !*retryable || Some(*attempt) >= record.max_attempts => {
                    record.fail(error, timestamp)
                }
                Details::TaskError { error, .. } => record.fail(error, timestamp),
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
            let current = Context::with_current(|context| context.step().map(|step| step.id));
            if let Some(step) = current {
                return Some(step.as_u128());
            }
        }
        event.task().map(|task| task.id.as_u128())
    }

    /// Starts the `enqueue task.<name>` PRODUCER span record of a task being enqueued, child of
    /// the enqueuing code's current OpenTelemetry context.
    fn open_producer(&self, task: &TaskRef, timestamp: SystemTime, details: Details<'static>) {
        let current = OtelContext::current();
        let parent = current.span().span_context().clone();
        let context = child_context(&self.export, &parent);
        // The envelope carries this span's context, with the enqueuing code's baggage.
        let as_parent = current.with_remote_span_context(context.clone());
        let mut record = SpanRecord::new(
            context,
            &parent,
            parent.is_remote(),
            SpanKind::Producer,
            span_name("enqueue task.", task.name),
            timestamp,
            crate::clock::now().tick,
        );
        record.task = Some(identity(task));
        record.add_event(timestamp, details);
        self.entries
            .insert(task.id.as_u128(), Entry::Producer(record, as_parent));
    }

    /// Ends the producer span of task `id` (at `task.enqueue`) and keeps its context for the
    /// propagator.
    fn close_producer(&self, id: u128, event: &Event<'_>, queue: &str) {
        match self.entries.remove(id) {
            Some(Entry::Producer(mut record, as_parent)) => {
                record.add_event(event.timestamp(), event.details().clone().into_owned());
                record.queue = Some(queue.into());
                self.finish(record, SpanEnd::Producer);
                self.producers.hold(id, as_parent);
            }
            Some(Entry::Open(open)) => self.entries.insert(id, Entry::Open(open)),
            Some(Entry::Pending(_)) | None => {}
        }
    }
}
