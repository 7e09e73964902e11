//! W3C trace context across a queue: the producer's `enqueue task.<name>` span is what the
//! envelope carries, and the worker's `task.<name>` span continues it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry::Context as OtelContext;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

use crate::context::{StepRef, TaskRef};
use crate::propagation::{ActiveContext, Propagator, TraceContext};

/// At most this many ended producer spans wait for their context to be injected; beyond it the
/// oldest is forgotten. The runtime injects right after `task.enqueue`, on the same thread, so
/// one per enqueuing thread is the most ever held in practice.
const HELD_MAX: usize = 1024;

/// Producer contexts held by every OpenTelemetry adapter of the process.
static HELD: AtomicUsize = AtomicUsize::new(0);

/// How many ended `enqueue task.<name>` spans the OpenTelemetry adapters of this process keep
/// for their envelope's trace context and have not handed out yet. Zero once every enqueue has
/// finished; bounded whatever happens.
pub fn held_producer_context_count() -> usize {
    HELD.load(Ordering::Relaxed)
}

/// The contexts of open spans by id: step calls' (so an attempt's code can run with its step's
/// span as the current OpenTelemetry context) or queued task runs' (so the runtime can have the
/// queue keep a run's context for the next delivery to link to).
#[derive(Default)]
pub(crate) struct SpanContexts {
    open: Mutex<IdMap<OtelContext>>,
}

/// Task and step ids end in random bits: hashed as they are (see `span_map::IdHasher`).
type IdMap<V> = HashMap<u128, V, std::hash::BuildHasherDefault<super::span_map::IdHasher>>;

impl SpanContexts {
    fn lock(&self) -> MutexGuard<'_, IdMap<OtelContext>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps, for span `id`, the context to make current while it runs: built once per span,
    /// so entering it on every poll allocates nothing.
    pub(crate) fn insert(&self, id: u128, span: SpanContext) {
        let context = OtelContext::current().with_remote_span_context(span);
        self.lock().insert(id, context);
    }

    pub(crate) fn remove(&self, id: u128) {
        self.lock().remove(&id);
    }

    fn get(&self, id: u128) -> Option<OtelContext> {
        self.lock().get(&id).cloned()
    }
}

/// Where the propagator finds the context to make current while a step's attempts run.
pub(crate) trait StepContexts: Send + Sync {
    /// The context of the open span of step call `id`, if any.
    fn step_context(&self, id: u128) -> Option<OtelContext>;
}

impl StepContexts for SpanContexts {
    fn step_context(&self, id: u128) -> Option<OtelContext> {
        self.get(id)
    }
}

/// The contexts of ended producer spans, by task id, until the runtime asks for them.
#[derive(Default)]
pub(crate) struct ProducerContexts {
    held: Mutex<VecDeque<(u128, OtelContext)>>,
}

impl ProducerContexts {
    fn lock(&self) -> MutexGuard<'_, VecDeque<(u128, OtelContext)>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `context` (a producer span's) for the envelope of task `id`.
    pub(crate) fn hold(&self, id: u128, context: OtelContext) {
        let mut held = self.lock();
        if held.len() >= HELD_MAX {
            held.pop_front();
            HELD.fetch_sub(1, Ordering::Relaxed);
        }
        held.push_back((id, context));
        HELD.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the context kept for task `id`, if any.
    pub(crate) fn take(&self, id: u128) -> Option<OtelContext> {
        let mut held = self.lock();
        let index = held.iter().rposition(|(held_id, _)| *held_id == id)?;
        let (_, context) = held.remove(index)?;
        HELD.fetch_sub(1, Ordering::Relaxed);
        Some(context)
    }
}

impl Drop for ProducerContexts {
    fn drop(&mut self) {
        let held = self.held.get_mut().unwrap_or_else(|e| e.into_inner()).len();
        HELD.fetch_sub(held, Ordering::Relaxed);
    }
}

/// The W3C headers of `context`, if its span context is valid.
pub(crate) fn inject_context(context: &OtelContext) -> Option<TraceContext> {
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier: HashMap<String, String> = HashMap::with_capacity(3);
    TraceContextPropagator::new().inject_context(context, &mut carrier);
    BaggagePropagator::new().inject_context(context, &mut carrier);
    let non_empty = |value: Option<String>| value.filter(|value| !value.is_empty());
    Some(TraceContext {
        traceparent: carrier.remove("traceparent")?,
        tracestate: non_empty(carrier.remove("tracestate")),
        baggage: non_empty(carrier.remove("baggage")),
    })
}

/// The context `carried` continues: a remote span context (invalid if the `traceparent` is) and
/// its baggage.
pub(crate) fn extract_context(carried: &TraceContext) -> OtelContext {
    let mut carrier: HashMap<String, String> = HashMap::with_capacity(3);
    carrier.insert("traceparent".to_owned(), carried.traceparent.clone());
    if let Some(tracestate) = &carried.tracestate {
        carrier.insert("tracestate".to_owned(), tracestate.clone());
    }
    if let Some(baggage) = &carried.baggage {
        carrier.insert("baggage".to_owned(), baggage.clone());
    }
    let context = TraceContextPropagator::new().extract_with_context(&OtelContext::new(), &carrier);
    BaggagePropagator::new().extract_with_context(&context, &carrier)
}

/// The [`Propagator`] of the OpenTelemetry adapter, installed by `configure` along with it.
///
/// For a task just enqueued it gives the W3C context of the task's `enqueue task.<name>`
/// PRODUCER span (once: the context is handed out and forgotten); otherwise that of the current
/// OpenTelemetry context, if it has a valid span.
pub struct OpenTelemetryPropagator {
    producers: Arc<ProducerContexts>,
    steps: Arc<dyn StepContexts>,
    runs: Arc<SpanContexts>,
}

impl OpenTelemetryPropagator {
    pub(crate) fn new(
        producers: Arc<ProducerContexts>,
        steps: Arc<dyn StepContexts>,
        runs: Arc<SpanContexts>,
    ) -> Self {
        Self {
            producers,
            steps,
            runs,
        }
    }
}

impl std::fmt::Debug for OpenTelemetryPropagator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenTelemetryPropagator")
            .finish_non_exhaustive()
    }
}

impl Propagator for OpenTelemetryPropagator {
    fn inject(&self, task: Option<&TaskRef>) -> Option<TraceContext> {
        let producer = task
            .and_then(|task| self.producers.take(task.id.as_u128()))
            .and_then(|context| inject_context(&context));
        producer.or_else(|| OtelContext::map_current(inject_context))
    }

    fn enter_step(&self, step: &StepRef) -> Option<ActiveContext> {
        let context = self.steps.step_context(step.id.as_u128())?;
        Some(ActiveContext::opentelemetry(context.attach()))
    }

    fn run_context(&self, task: &TaskRef) -> Option<TraceContext> {
        inject_context(&self.runs.get(task.id.as_u128())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    fn remote(trace: u128, span: u64) -> OtelContext {
        OtelContext::new().with_remote_span_context(SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ))
    }

    #[test]
    fn held_contexts_are_taken_once_and_bounded() {
        let producers = ProducerContexts::default();
        for id in 0..(HELD_MAX as u128 + 10) {
            producers.hold(id, remote(id + 1, 1));
        }
        assert_eq!(producers.lock().len(), HELD_MAX);
        assert!(producers.take(0).is_none(), "the oldest were forgotten");
        assert!(producers.take(HELD_MAX as u128 + 9).is_some());
        assert!(producers.take(HELD_MAX as u128 + 9).is_none());
    }

    #[test]
    fn a_context_round_trips_through_the_w3c_headers() {
        let context = remote(
            0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
            0x00f0_67aa_0ba9_02b7,
        );
        let carried = inject_context(&context).expect("a valid context");
        assert_eq!(
            carried.traceparent,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(carried.tracestate, None);
        let back = extract_context(&carried);
        assert_eq!(
            back.span().span_context().trace_id(),
            context.span().span_context().trace_id()
        );
        assert!(back.span().span_context().is_remote());
        assert!(inject_context(&OtelContext::new()).is_none());
        let invalid = extract_context(&TraceContext::new("00-zz-00f067aa0ba902b7-01"));
        assert!(!invalid.span().span_context().is_valid());
    }
}
