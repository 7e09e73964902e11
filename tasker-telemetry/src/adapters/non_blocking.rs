//! [`NonBlocking`]: an adapter moved behind a bounded queue, on a thread of its own, so that a
//! slow or stalled adapter cannot hold up the others.
//!
//! Every adapter is already called off the tasks' path, on the telemetry collector's thread
//! (see [`collector`](crate::collector)); that thread is shared, so an adapter that blocks (a
//! network call per event) belongs behind a `NonBlocking`, whose queue the collector fills
//! without waiting. [`flush`](crate::flush) waits for that queue too.

use std::collections::{BTreeMap, VecDeque};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::adapter::{Adapter, SpanOutcome};
use crate::context::{StepRef, TaskRef};
use crate::event::Event;
use crate::isolate::Isolated;

/// Events a [`NonBlocking`] adapter holds by default before it drops new ones.
pub const DEFAULT_CAPACITY: usize = 4096;

/// How long dropping a [`NonBlocking`] adapter waits, by default, for its queue to drain.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// Wraps an adapter so that its calls happen on a thread of its own, behind a bounded queue.
///
/// Every call (`record` and the trace and span hooks) is queued in order, events as owned copies
/// ([`Event::into_owned`]), and the task goes on at once. When the queue is full the newest call
/// is dropped (the task is never made to wait): drops are counted ([`NonBlocking::stats`],
/// [`dropped_events`]) and the first one is reported through `tracing` (target `tasker`). A
/// panic of the wrapped adapter is caught on its thread, counted in
/// `tasker::events::panic_counts()` under `"adapter <name>"` and reported once. Dropping the
/// wrapper delivers what is queued, waiting at most its shutdown timeout.
///
/// Register it like any adapter:
///
/// ```
/// use tasker::telemetry::adapters::NonBlocking;
///
/// #[derive(Default)]
/// pub struct SlowAudit;
/// impl tasker::telemetry::Adapter for SlowAudit {
///     fn record(&self, _event: &tasker::telemetry::Event<'_>) { /* a network call */ }
/// }
///
/// tasker::register_adapter!("slow-audit", || {
///     NonBlocking::builder(SlowAudit).name("slow-audit").capacity(10_000).build()
/// });
/// ```
pub struct NonBlocking<A: Adapter> {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
    shutdown_timeout: Duration,
    _adapter: PhantomData<fn() -> A>,
}

impl<A: Adapter> std::fmt::Debug for NonBlocking<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonBlocking")
            .field("name", &self.shared.name)
            .field("capacity", &self.shared.capacity)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Configures a [`NonBlocking`] adapter.
#[derive(Debug)]
pub struct NonBlockingBuilder<A> {
    adapter: A,
    name: String,
    capacity: usize,
    shutdown_timeout: Duration,
}

impl<A: Adapter> NonBlockingBuilder<A> {
    /// The name in reports and in [`dropped_events`] (default: the adapter's type name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How many calls may wait before new ones are dropped (default [`DEFAULT_CAPACITY`]; at
    /// least 1).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// How long dropping the wrapper waits for the queue to drain (default
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`]); what is left then is counted as dropped and reported.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Starts the adapter's thread.
    ///
    /// # Panics
    ///
    /// When the operating system refuses a new thread.
    pub fn build(self) -> NonBlocking<A> {
        let shared = Arc::new(Shared {
            dropped: drop_counter(&self.name),
            isolated: Isolated::new(format!("adapter {}", self.name)),
            name: self.name,
            capacity: self.capacity,
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            idle: Condvar::new(),
            delivered: AtomicU64::new(0),
            dropped_here: AtomicU64::new(0),
            reported: AtomicBool::new(false),
        });
        let adapter = self.adapter;
        let worker = std::thread::Builder::new()
            .name(format!("tasker-{}", short(&shared.name)))
            .spawn({
                let shared = shared.clone();
                move || shared.run(&adapter)
            })
            .expect("tasker: the thread of a NonBlocking adapter could not be started");
        NonBlocking {
            shared,
            worker: Some(worker),
            shutdown_timeout: self.shutdown_timeout,
            _adapter: PhantomData,
        }
    }
}

/// Thread names are limited to 15 bytes on Linux; keep the end of the name, the type's own.
fn short(name: &str) -> &str {
    let tail = name.rsplit("::").next().unwrap_or(name);
    let mut end = tail.len().min(8);
    while !tail.is_char_boundary(end) {
        end -= 1;
    }
    &tail[..end]
}

impl<A: Adapter> NonBlocking<A> {
    /// `adapter` on a thread of its own, with the defaults.
    pub fn new(adapter: A) -> Self {
        Self::builder(adapter).build()
    }

    /// A builder for `adapter`.
    pub fn builder(adapter: A) -> NonBlockingBuilder<A> {
        NonBlockingBuilder {
            adapter,
            name: std::any::type_name::<A>().to_owned(),
            capacity: DEFAULT_CAPACITY,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }

    /// What happened to the calls so far.
    pub fn stats(&self) -> NonBlockingStats {
        self.shared.stats()
    }

    /// A handle that reads the statistics and flushes, and outlives the configuration.
    pub fn handle(&self) -> NonBlockingHandle {
        NonBlockingHandle {
            shared: self.shared.clone(),
        }
    }

    /// Waits until every call queued so far was delivered, at most `timeout`; `true` if it was.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.shared.flush(timeout)
    }
}

impl<A: Adapter> Adapter for NonBlocking<A> {
    /// Waits for this adapter's own queue, so that `tasker::telemetry::flush` covers it.
    fn flush(&self, timeout: Duration) -> bool {
        self.shared.flush(timeout)
    }

    fn record(&self, event: &Event<'_>) {
        self.shared
            .push(|| Call::Record(event.clone().into_owned()));
    }

    fn start_trace(&self, task: &TaskRef) {
        self.shared.push(|| Call::StartTrace(*task));
    }

    fn end_trace(&self, task: &TaskRef, outcome: SpanOutcome) {
        self.shared.push(|| Call::EndTrace(*task, outcome));
    }

    fn start_span(&self, step: &StepRef, task: Option<&TaskRef>) {
        self.shared.push(|| Call::StartSpan(*step, task.copied()));
    }

    fn end_span(&self, step: &StepRef, task: Option<&TaskRef>, outcome: SpanOutcome) {
        self.shared
            .push(|| Call::EndSpan(*step, task.copied(), outcome));
    }
}

impl<A: Adapter> Drop for NonBlocking<A> {
    fn drop(&mut self) {
        self.shared.close();
        let drained = self.shared.flush(self.shutdown_timeout);
        let Some(worker) = self.worker.take() else {
            return;
        };
        if drained {
            let _ = worker.join();
            return;
        }
        // The adapter is stuck: leave its thread behind, and say what it did not get.
        let left = self.shared.abandon();
        tracing::warn!(
            target: "tasker",
            adapter = %self.shared.name,
            undelivered = left,
            "[Tasker] adapter {} did not drain its queue within {:?} at shutdown; {} events were \
             not delivered (counted as dropped)",
            self.shared.name,
            self.shutdown_timeout,
            left,
        );
    }
}

/// What a [`NonBlocking`] adapter did with the calls it got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NonBlockingStats {
    /// Calls handed to the wrapped adapter (a call that panicked included).
    pub delivered: u64,
    /// Calls dropped because the queue was full, or left undelivered at shutdown.
    pub dropped: u64,
    /// Calls waiting in the queue now.
    pub queued: u64,
}

/// Reads the statistics of a [`NonBlocking`] adapter and flushes it, from anywhere.
#[derive(Clone)]
pub struct NonBlockingHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NonBlockingHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonBlockingHandle")
            .field("name", &self.shared.name)
            .finish()
    }
}

impl NonBlockingHandle {
    /// What happened to the calls so far.
    pub fn stats(&self) -> NonBlockingStats {
        self.shared.stats()
    }

    /// Waits until every call queued so far was delivered, at most `timeout`; `true` if it was.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.shared.flush(timeout)
    }
}

/// Calls dropped by the [`NonBlocking`] adapters of this process, by name; counts survive
/// reconfiguration (an adapter built again under the same name keeps counting).
pub fn dropped_events() -> BTreeMap<String, u64> {
    drop_counters()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(name, count)| (name.clone(), count.load(Ordering::Relaxed)))
        .collect()
}

fn drop_counters() -> &'static Mutex<BTreeMap<String, Arc<AtomicU64>>> {
    static COUNTERS: OnceLock<Mutex<BTreeMap<String, Arc<AtomicU64>>>> = OnceLock::new();
    COUNTERS.get_or_init(Default::default)
}

fn drop_counter(name: &str) -> Arc<AtomicU64> {
    drop_counters()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(name.to_owned())
        .or_default()
        .clone()
}

/// One queued call of the [`Adapter`] trait.
enum Call {
    Record(Event<'static>),
    StartTrace(TaskRef),
    EndTrace(TaskRef, SpanOutcome),
    StartSpan(StepRef, Option<TaskRef>),
    EndSpan(StepRef, Option<TaskRef>, SpanOutcome),
}

impl Call {
    fn deliver(self, adapter: &dyn Adapter) {
        match self {
            Call::Record(event) => adapter.record(&event),
            Call::StartTrace(task) => adapter.start_trace(&task),
            Call::EndTrace(task, outcome) => adapter.end_trace(&task, outcome),
            Call::StartSpan(step, task) => adapter.start_span(&step, task.as_ref()),
            Call::EndSpan(step, task, outcome) => adapter.end_span(&step, task.as_ref(), outcome),
        }
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<Call>,
    /// Calls accepted into the queue, ever.
    accepted: u64,
    /// Calls the worker finished with, ever.
    finished: u64,
    /// The worker sleeps and must be woken by the next push.
    sleeping: bool,
    closed: bool,
}

struct Shared {
    name: String,
    capacity: usize,
    state: Mutex<State>,
    /// Wakes the worker.
    work: Condvar,
    /// Wakes flushers when the worker finished a batch.
    idle: Condvar,
    isolated: Isolated,
    delivered: AtomicU64,
    /// The process-wide counter of this name.
    dropped: Arc<AtomicU64>,
    /// This instance's drops.
    dropped_here: AtomicU64,
    reported: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, call: impl FnOnce() -> Call) {
        let mut state = self.lock();
        if state.closed || state.queue.len() >= self.capacity {
            drop(state);
            self.dropped(1);
            return;
        }
        state.queue.push_back(call());
        state.accepted += 1;
        if std::mem::take(&mut state.sleeping) {
            drop(state);
            self.work.notify_one();
        }
    }

    #[cold]
    fn dropped(&self, count: u64) {
        self.dropped.fetch_add(count, Ordering::Relaxed);
        self.dropped_here.fetch_add(count, Ordering::Relaxed);
        if !self.reported.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "tasker",
                adapter = %self.name,
                capacity = self.capacity,
                "[Tasker] adapter {} is behind: its queue of {} events is full, so new events are \
                 dropped instead of slowing tasks; later drops are counted, not logged \
                 (tasker::telemetry::adapters::dropped_events)",
                self.name,
                self.capacity,
            );
        }
    }

    fn run(&self, adapter: &dyn Adapter) {
        loop {
            let batch = {
                let mut state = self.lock();
                while state.queue.is_empty() && !state.closed {
                    state.sleeping = true;
                    state = self.work.wait(state).unwrap_or_else(|e| e.into_inner());
                }
                if state.queue.is_empty() {
                    return;
                }
                std::mem::take(&mut state.queue)
            };
            let count = batch.len() as u64;
            for call in batch {
                self.isolated.call(|| call.deliver(adapter));
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            self.lock().finished += count;
            self.idle.notify_all();
        }
    }

    fn flush(&self, timeout: Duration) -> bool {
        // A timeout too long to add to now waits without limit.
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.lock();
        let target = state.accepted;
        while state.finished < target {
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(1),
            };
            if left.is_zero() {
                return false;
            }
            state = self
                .idle
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    fn close(&self) {
        self.lock().closed = true;
        self.work.notify_one();
    }

    /// Gives up on what is still queued; returns how many calls that was.
    fn abandon(&self) -> u64 {
        let left = {
            let mut state = self.lock();
            state.queue.clear();
            // Taken by the worker but not delivered yet counts too: the stuck call among them.
            state
                .accepted
                .saturating_sub(self.delivered.load(Ordering::Relaxed))
        };
        if left > 0 {
            self.dropped.fetch_add(left, Ordering::Relaxed);
            self.dropped_here.fetch_add(left, Ordering::Relaxed);
        }
        left
    }

    fn stats(&self) -> NonBlockingStats {
        let queued = self.lock().queue.len() as u64;
        NonBlockingStats {
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped_here.load(Ordering::Relaxed),
            queued,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Details;
    use std::sync::mpsc;

    struct Channel(Mutex<mpsc::Sender<String>>);

    impl Adapter for Channel {
        fn record(&self, event: &Event<'_>) {
            let _ = self.0.lock().unwrap().send(event.name().to_owned());
        }
        fn start_trace(&self, _task: &TaskRef) {
            let _ = self.0.lock().unwrap().send("start_trace".into());
        }
    }

    fn custom(name: &'static str) -> Event<'static> {
        Event::new(
            None,
            None,
            Details::Custom {
                name: name.into(),
                payload: std::borrow::Cow::Owned(serde_json::Map::new()),
            },
        )
    }

    #[test]
    fn calls_arrive_in_order_on_another_thread() {
        let (sender, receiver) = mpsc::channel();
        let adapter = NonBlocking::new(Channel(Mutex::new(sender)));
        let task = TaskRef {
            id: uuid::Uuid::from_u128(1),
            name: "t",
            version: "1",
            source: None,
            origin: Default::default(),
        };
        adapter.start_trace(&task);
        adapter.record(&custom("app.a"));
        adapter.record(&custom("app.b"));
        assert!(adapter.flush(Duration::from_secs(5)));
        let got: Vec<String> = receiver.try_iter().collect();
        assert_eq!(got, ["start_trace", "app.a", "app.b"]);
        assert_eq!(
            adapter.stats(),
            NonBlockingStats {
                delivered: 3,
                dropped: 0,
                queued: 0
            }
        );
    }

    struct Gate(Arc<(Mutex<bool>, Condvar)>);

    impl Adapter for Gate {
        fn record(&self, _event: &Event<'_>) {
            let (open, changed) = &*self.0;
            let mut open = open.lock().unwrap();
            while !*open {
                open = changed.wait(open).unwrap();
            }
        }
    }

    #[test]
    fn a_full_queue_drops_the_newest_and_counts_it() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let adapter = NonBlocking::builder(Gate(gate.clone()))
            .name("non_blocking::tests::full")
            .capacity(2)
            .build();
        // The first call may already be on the worker, blocked; fill the queue behind it.
        for _ in 0..10 {
            adapter.record(&custom("app.a"));
        }
        let stats = adapter.stats();
        assert!(stats.dropped >= 7, "{stats:?}");
        assert_eq!(dropped_events()["non_blocking::tests::full"], stats.dropped);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        assert!(adapter.flush(Duration::from_secs(5)));
        let stats = adapter.stats();
        assert_eq!(stats.delivered + stats.dropped, 10, "{stats:?}");
    }

    #[test]
    fn drop_gives_up_on_a_stuck_adapter_after_its_timeout() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let adapter = NonBlocking::builder(Gate(gate.clone()))
            .name("non_blocking::tests::stuck")
            .shutdown_timeout(Duration::from_millis(50))
            .build();
        for _ in 0..3 {
            adapter.record(&custom("app.a"));
        }
        let handle = adapter.handle();
        let started = Instant::now();
        drop(adapter);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(handle.stats().dropped, 3);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
    }
}
