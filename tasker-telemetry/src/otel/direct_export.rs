//! [`DirectExport`]: the OpenTelemetry adapter's own export path. A finished task or step span is
//! one compact record pushed onto a bounded queue; a thread of its own builds each `SpanData`
//! and calls `SpanExporter::export` in batches. No SDK span, processor or context is made on the
//! caller's thread.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::trace::SpanExporter;
use opentelemetry_sdk::Resource;

use super::providers::scope;
use super::record::SpanRecord;
use super::settings::SamplerSetting;

/// Defaults as the SDK's batch processor has them (`OTEL_BSP_*`), but a shorter delay: the
/// thread wakes early anyway whenever a batch is full.
const DEFAULT_MAX_QUEUE: usize = 8192;
const DEFAULT_MAX_BATCH: usize = 512;
const DEFAULT_DELAY: Duration = Duration::from_millis(500);
/// How long [`DirectExport::flush`] and the shutdown wait for the exporter at most.
const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a [`DirectExport`] could not be built.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum DirectExportError {
    /// A size of zero.
    #[error("{what} of the direct span export must be at least 1 (got 0)")]
    Zero {
        /// `max_queue_size` or `max_export_batch_size`.
        what: &'static str,
    },
    /// The exporter thread could not be started.
    #[error("the direct span export's thread could not be started: {0}")]
    Thread(#[source] std::io::Error),
}

crate::__debug_shows_message!(DirectExportError { Zero, Thread });

/// Counts of a [`DirectExport`] since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectExportStats {
    /// Spans handed to the exporter (whatever the exporter then made of them).
    pub exported: u64,
    /// Spans dropped because the queue was full (the first drop is also logged).
    pub dropped: u64,
    /// Spans not exported because the sampler decided so.
    pub unsampled: u64,
}

/// The OpenTelemetry adapter's direct export: finished spans built once, at their end, and
/// handed to `exporter` in batches by a thread of its own, with the resource and the sampler
/// given here. Give it to the adapter as its tracer provider
/// (`config.tracer_provider = Some(export.into())`); [`OtelGuard::configure`](super::OtelGuard)
/// does so with an OTLP exporter.
///
/// The queue is bounded: when the exporter falls behind, further spans are dropped and
/// counted ([`DirectExport::stats`]), never waited for. [`DirectExport::flush`] exports what
/// is queued and waits for it; dropping the last handle flushes and shuts the exporter down.
///
/// Spans of other instrumentation in the application do not pass through here: give them a
/// tracer provider of their own (the W3C context the adapter makes current while a step runs
/// makes their spans children of the step's).
///
/// ```
/// use opentelemetry_sdk::trace::InMemorySpanExporter;
/// use tasker::telemetry::otel::DirectExport;
/// use tasker::{configure, TelemetryAdapter};
///
/// let exporter = InMemorySpanExporter::default();
/// let export = DirectExport::builder(exporter.clone()).build()?;
/// configure(|config| {
///     config.enable_telemetry = true;
///     config.telemetry_adapters = vec![TelemetryAdapter::OpenTelemetry];
///     config.tracer_provider = Some(export.clone().into());
/// })?;
/// // … run tasks …
/// export.flush();
/// # configure(|config| config.enable_telemetry = false)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct DirectExport {
    handle: Arc<Handle>,
}

/// Builds a [`DirectExport`]: [`DirectExport::builder`].
#[derive(Debug)]
pub struct DirectExportBuilder<E> {
    exporter: E,
    resource: Option<Resource>,
    sampler: SamplerSetting,
    max_queue_size: usize,
    max_export_batch_size: usize,
    scheduled_delay: Duration,
    flush_timeout: Duration,
}

impl<E: SpanExporter + 'static> DirectExportBuilder<E> {
    /// The resource the exporter describes the spans with (default: the exporter's own
    /// default, as an SDK provider without `with_resource`).
    pub fn with_resource(mut self, resource: Resource) -> Self {
        self.resource = Some(resource);
        self
    }

    /// Which traces are recorded (default: the parent's decision, else every trace, as the
    /// SDK's default sampler). Decided when a task or step starts.
    pub fn with_sampler(mut self, sampler: SamplerSetting) -> Self {
        self.sampler = sampler;
        self
    }

    /// Spans waiting for the exporter at most (default 8192); beyond, spans are dropped and
    /// counted.
    pub fn with_max_queue_size(mut self, max_queue_size: usize) -> Self {
        self.max_queue_size = max_queue_size;
        self
    }

    /// Spans per `export` call at most (default 512).
    pub fn with_max_export_batch_size(mut self, max_export_batch_size: usize) -> Self {
        self.max_export_batch_size = max_export_batch_size;
        self
    }

    /// How long a span waits at most for its batch to fill (default 500 ms).
    pub fn with_scheduled_delay(mut self, scheduled_delay: Duration) -> Self {
        self.scheduled_delay = scheduled_delay;
        self
    }

    /// How long [`DirectExport::flush`] and the final shutdown wait at most (default 10 s).
    pub fn with_flush_timeout(mut self, flush_timeout: Duration) -> Self {
        self.flush_timeout = flush_timeout;
        self
    }

    /// Starts the exporter's thread.
    pub fn build(self) -> Result<DirectExport, DirectExportError> {
        if self.max_queue_size == 0 {
            return Err(DirectExportError::Zero {
                what: "max_queue_size",
            });
        }
        if self.max_export_batch_size == 0 {
            return Err(DirectExportError::Zero {
                what: "max_export_batch_size",
            });
        }
        let mut exporter = self.exporter;
        if let Some(resource) = &self.resource {
            exporter.set_resource(resource);
        }
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                records: VecDeque::with_capacity(self.max_queue_size),
                pushed: 0,
                exported: 0,
                flush_requested: false,
                shutdown: false,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
            max_queue_size: self.max_queue_size,
            max_export_batch_size: self.max_export_batch_size,
            dropped: AtomicU64::new(0),
            unsampled: AtomicU64::new(0),
            exported: AtomicU64::new(0),
            reported_drop: AtomicBool::new(false),
        });
        let worker = Worker {
            shared: shared.clone(),
            scope: scope(),
            scheduled_delay: self.scheduled_delay,
        };
        let thread = std::thread::Builder::new()
            .name("tasker-otel-export".into())
            .spawn(move || worker.run(exporter))
            .map_err(DirectExportError::Thread)?;
        Ok(DirectExport {
            handle: Arc::new(Handle {
                shared,
                sampler: self.sampler,
                flush_timeout: self.flush_timeout,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }
}

impl DirectExport {
    /// A builder exporting through `exporter`.
    pub fn builder<E: SpanExporter + 'static>(exporter: E) -> DirectExportBuilder<E> {
        DirectExportBuilder {
            exporter,
            resource: None,
            sampler: SamplerSetting::ParentBasedAlwaysOn,
            max_queue_size: DEFAULT_MAX_QUEUE,
            max_export_batch_size: DEFAULT_MAX_BATCH,
            scheduled_delay: DEFAULT_DELAY,
            flush_timeout: DEFAULT_FLUSH_TIMEOUT,
        }
    }

    /// Exports every span queued so far and waits until the exporter returned (at most the
    /// flush timeout). Returns whether everything queued before the call was exported.
    pub fn flush(&self) -> bool {
        self.handle.shared.flush(self.handle.flush_timeout)
    }

    /// Spans exported, dropped and left unsampled so far.
    pub fn stats(&self) -> DirectExportStats {
        let shared = &self.handle.shared;
        DirectExportStats {
            exported: shared.exported.load(Ordering::Relaxed),
            dropped: shared.dropped.load(Ordering::Relaxed),
            unsampled: shared.unsampled.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn sampler(&self) -> SamplerSetting {
        self.handle.sampler
    }

    /// Hands a finished span to the exporter's thread, or counts it as dropped or unsampled.
    pub(crate) fn push(&self, record: SpanRecord) {
        let shared = &self.handle.shared;
        if !record.is_sampled() {
            shared.unsampled.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut queue = shared.lock();
        if queue.shutdown || queue.records.len() >= shared.max_queue_size {
            drop(queue);
            shared.count_drop();
            return;
        }
        queue.records.push_back(record);
        queue.pushed += 1;
        // Wake the thread only when a batch is full: a wake-up per span would cost a system
        // call on the caller's thread.
        let full = queue.records.len() == shared.max_export_batch_size;
        drop(queue);
        if full {
            shared.work.notify_one();
        }
    }

    /// Whether two handles are clones of one export.
    pub(crate) fn same_as(&self, other: &DirectExport) -> bool {
        Arc::ptr_eq(&self.handle, &other.handle)
    }
}

impl fmt::Debug for DirectExport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectExport")
            .field("sampler", &self.handle.sampler)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// The last handle flushes and stops the exporter's thread.
struct Handle {
    shared: Arc<Shared>,
    sampler: SamplerSetting,
    flush_timeout: Duration,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.flush(self.flush_timeout);
        self.shared.lock().shutdown = true;
        self.shared.work.notify_one();
        let thread = self
            .thread
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(thread) = thread {
            // A thread still inside a hanging export is left to finish on its own: the
            // program's exit must not wait for an unreachable collector.
            if thread.is_finished() || self.shared.wait_idle(self.flush_timeout) {
                let _ = thread.join();
            }
        }
    }
}

struct Queue {
    records: VecDeque<SpanRecord>,
    /// Spans ever queued, and spans whose export returned: a flush waits for the second to
    /// reach what the first was when it began.
    pushed: u64,
    exported: u64,
    flush_requested: bool,
    shutdown: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the exporter's thread: a full batch, a flush, the shutdown.
    work: Condvar,
    /// Wakes flushes: a batch was exported.
    progress: Condvar,
    max_queue_size: usize,
    max_export_batch_size: usize,
    dropped: AtomicU64,
    unsampled: AtomicU64,
    exported: AtomicU64,
    reported_drop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue stays consistent across a panic elsewhere: keep using it.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        if !self.reported_drop.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "tasker::otel",
                "[Tasker] the OpenTelemetry span queue is full ({} spans): spans are dropped \
                 until the exporter catches up; drops are counted (DirectExport::stats) and not \
                 logged again. Raise DirectExport's max_queue_size or export faster",
                self.max_queue_size
            );
        }
    }

    fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut queue = self.lock();
        let target = queue.pushed;
        queue.flush_requested = true;
        self.work.notify_one();
        while queue.exported < target && !queue.shutdown {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            queue = self
                .progress
                .wait_timeout(queue, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        queue.exported >= target
    }

    /// Waits until the queue is empty and no export is running.
    fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut queue = self.lock();
        while queue.exported < queue.pushed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            queue = self
                .progress
                .wait_timeout(queue, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

/// The exporter's thread.
struct Worker {
    shared: Arc<Shared>,
    scope: InstrumentationScope,
    scheduled_delay: Duration,
}

impl Worker {
    // Never inlined: `benches/instructions.sh` counts the export thread's work by this name.
    #[inline(never)]
    fn run<E: SpanExporter>(self, exporter: E) {
        let shared = &*self.shared;
        let mut batch = Vec::with_capacity(shared.max_export_batch_size);
        loop {
            let mut queue = shared.lock();
            let waiting_since = Instant::now();
            loop {
                let full = queue.records.len() >= shared.max_export_batch_size;
                let due =
                    !queue.records.is_empty() && waiting_since.elapsed() >= self.scheduled_delay;
                if full || due || queue.flush_requested || queue.shutdown {
                    break;
                }
                let left = self
                    .scheduled_delay
                    .saturating_sub(waiting_since.elapsed())
                    .max(Duration::from_millis(1));
                queue = shared
                    .work
                    .wait_timeout(queue, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if queue.records.is_empty() {
                queue.flush_requested = false;
                let shutdown = queue.shutdown;
                drop(queue);
                shared.progress.notify_all();
                if shutdown {
                    break;
                }
                continue;
            }
            let take = queue.records.len().min(shared.max_export_batch_size);
            let records: Vec<SpanRecord> = queue.records.drain(..take).collect();
            drop(queue);
            // The SpanData of each record is built here, off the caller's thread.
            batch.extend(
                records
                    .into_iter()
                    .map(|record| record.into_span_data(&self.scope)),
            );
            let count = batch.len() as u64;
            let spans =
                std::mem::replace(&mut batch, Vec::with_capacity(shared.max_export_batch_size));
            // An exporter error is the exporter's to report (the OTLP one is counted by
            // `OtelGuard`); the spans are gone either way, as with the SDK's processors.
            let _ = futures_executor::block_on(exporter.export(spans));
            shared.exported.fetch_add(count, Ordering::Relaxed);
            shared.lock().exported += count;
            shared.progress.notify_all();
        }
        let _ = exporter.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otel::ids::{new_span_id, new_trace_id};
    use opentelemetry::trace::{SpanContext, SpanKind, TraceFlags, TraceState};
    use opentelemetry_sdk::trace::InMemorySpanExporter;
    use std::borrow::Cow;
    use std::time::SystemTime;

    fn record(sampled: bool) -> SpanRecord {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanRecord::new(
            SpanContext::new(
                new_trace_id(),
                new_span_id(),
                flags,
                false,
                TraceState::default(),
            ),
            &SpanContext::empty_context(),
            false,
            SpanKind::Internal,
            Cow::Borrowed("step.a"),
            SystemTime::now(),
            crate::clock::now().tick,
        )
    }

    #[test]
    fn flush_exports_every_queued_span_in_batches() {
        let exporter = InMemorySpanExporter::default();
        let export = DirectExport::builder(exporter.clone())
            .with_max_export_batch_size(3)
            .with_scheduled_delay(Duration::from_secs(60))
            .build()
            .expect("valid sizes");
        for _ in 0..7 {
            export.push(record(true));
        }
        export.push(record(false));
        assert!(export.flush());
        let spans = exporter.get_finished_spans().expect("readable");
        assert_eq!(spans.len(), 7);
        assert!(spans.iter().all(|span| span.name == "step.a"));
        assert_eq!(
            export.stats(),
            DirectExportStats {
                exported: 7,
                dropped: 0,
                unsampled: 1
            }
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        #[derive(Debug)]
        struct Slow(Mutex<std::sync::mpsc::Receiver<()>>);
        impl SpanExporter for Slow {
            async fn export(
                &self,
                _batch: Vec<opentelemetry_sdk::trace::SpanData>,
            ) -> opentelemetry_sdk::error::OTelSdkResult {
                // Blocks until the test lets it go (or gives up after 10 s).
                let blocked = self.0.lock().unwrap_or_else(|e| e.into_inner());
                let _ = blocked.recv_timeout(Duration::from_secs(10));
                Ok(())
            }
        }
        let (release, blocked) = std::sync::mpsc::channel();
        let export = DirectExport::builder(Slow(Mutex::new(blocked)))
            .with_max_queue_size(4)
            .with_max_export_batch_size(1)
            .build()
            .expect("valid sizes");
        // The first span is taken by the (blocked) exporter, four fill the queue, the rest drop.
        export.push(record(true));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !export.handle.shared.lock().records.is_empty() {
            assert!(
                Instant::now() < deadline,
                "the exporter never took its batch"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        for _ in 0..6 {
            export.push(record(true));
        }
        assert_eq!(export.stats().dropped, 2);
        for _ in 0..5 {
            let _ = release.send(());
        }
        assert!(export.flush());
        assert_eq!(export.stats().exported, 5);
    }

    #[test]
    fn zero_sizes_are_refused() {
        let error = DirectExport::builder(InMemorySpanExporter::default())
            .with_max_queue_size(0)
            .build()
            .expect_err("zero");
        assert_eq!(
            format!("{error:?}"),
            "DirectExportError::Zero: max_queue_size of the direct span export must be at least 1 \
             (got 0)"
        );
    }
}
