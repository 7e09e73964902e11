//! The event collector: adapters receive events off the caller's path.
//!
//! The telemetry observer hands each event for the adapters that do not ask for synchronous
//! delivery ([`Adapter::synchronous`]) to a buffer of the calling thread: a sequence stamp and a
//! push under that thread's own lock, nothing else. One collector thread drains every buffer in
//! batches, puts the events back in stamp order and calls the adapters there, each call isolated.
//!
//! Order: the stamp comes from one counter, taken while the buffer's lock is held. A sweep first
//! reads the counter (`hi`), then drains the buffers; every event stamped below `hi` is then in
//! hand (its thread held its buffer's lock from stamp to push, and the sweep takes that lock
//! after reading `hi`), so the sweep delivers those in stamp order and keeps the rest for the
//! next one. Events of one task — even when the task hops threads — are stamped in the order they
//! happened, so they reach every adapter in that order.
//!
//! Bounds: each thread's buffer holds at most [`buffer_capacity`] events; when it is full the
//! new event is dropped, counted ([`stats`]) and the first drop is reported through `tracing`.
//!
//! Drain: [`flush`] waits until every event stamped before the call was delivered. The runtime's
//! `Runtime::shutdown` and the OpenTelemetry guard's drop call it, and so does an `atexit` hook
//! that the collector installs when it starts, so a program that returns from `main` (or calls
//! `std::process::exit`) loses no event recorded before. A process killed by a signal, or one
//! that aborts, loses what the collector had not delivered yet.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::adapter::Adapter;
use crate::context::TaskRef;
use crate::event::Event;
use crate::isolate::Isolated;
use crate::telemetry::dispatch;

/// Events each thread's buffer holds, by default, before new ones are dropped.
pub const DEFAULT_BUFFER_CAPACITY: usize = 65_536;

/// Entries a buffer has room for before it grows.
const INITIAL_BUFFER: usize = 1024;

/// How long [`flush`] waits, at most, for the collector.
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the `atexit` hook waits for the collector before the process ends.
const EXIT_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Sweeps without work, one `IDLE_POLL` apart, before the collector sleeps until woken.
const IDLE_SWEEPS: u32 = 100;
const IDLE_POLL: Duration = Duration::from_millis(1);
/// A sleeping collector still looks once in this long, should a wake-up ever be missed.
const DEEP_SLEEP: Duration = Duration::from_secs(1);

/// The adapters of one configuration, each with its isolation and whether it asked for
/// synchronous delivery.
pub(crate) struct AdapterSet {
    pub(crate) adapters: Vec<ConfiguredAdapter>,
}

/// One adapter of a configuration.
pub(crate) struct ConfiguredAdapter {
    pub(crate) adapter: Box<dyn Adapter>,
    pub(crate) isolated: Isolated,
    /// [`Adapter::synchronous`], asked once.
    pub(crate) synchronous: bool,
}

/// One call the collector makes on every adapter of a set.
// Events are nearly every call; boxing them would allocate on the caller's thread.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Call {
    /// An event to record (with the trace and span hooks it implies).
    Event(Event<'static>),
    /// A worker abandoned a task run (`Adapter::end_trace` with `Abandoned`).
    Abandoned(TaskRef),
}

struct Entry {
    seq: u64,
    set: u64,
    call: Call,
}

/// One thread's buffer. The collector keeps it after the thread ends, until it is empty.
struct Buffer {
    entries: Mutex<Vec<Entry>>,
    /// The thread that owns it ended (its thread-local was destroyed).
    orphaned: AtomicBool,
}

impl Buffer {
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Marks the buffer orphaned when its thread ends, so the collector forgets it once drained.
struct Local(Arc<Buffer>);

impl Drop for Local {
    fn drop(&mut self) {
        self.0.orphaned.store(true, Ordering::Release);
    }
}

thread_local! {
    static LOCAL: Local = Local(new_buffer());
    /// This thread is the collector (a flush from an adapter cannot wait for itself).
    static ON_COLLECTOR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

struct Registry {
    buffers: Vec<Arc<Buffer>>,
    /// Adapter sets by id, with the stamp after which a retired set gets no more events.
    sets: Vec<(u64, Arc<AdapterSet>, Option<u64>)>,
}

struct Shared {
    registry: Mutex<Registry>,
    /// Guards the collector's sleep and the flushers' waits.
    signal: Mutex<()>,
    wake: Condvar,
    delivered_changed: Condvar,
}

/// The next stamp; every event pushed so far has a smaller one.
static NEXT_SEQ: AtomicU64 = AtomicU64::new(0);
/// Every event stamped below this was delivered (or dropped with its set).
static DELIVERED: AtomicU64 = AtomicU64::new(0);
static NEXT_SET: AtomicU64 = AtomicU64::new(1);
static CAPACITY: AtomicUsize = AtomicUsize::new(DEFAULT_BUFFER_CAPACITY);
static SLEEPING: AtomicBool = AtomicBool::new(false);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static DROP_REPORTED: AtomicBool = AtomicBool::new(false);
static BATCHES: AtomicU64 = AtomicU64::new(0);
/// The collector could not be started; sets deliver on the caller's thread instead.
static UNAVAILABLE: AtomicBool = AtomicBool::new(false);

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| Shared {
        registry: Mutex::new(Registry {
            buffers: Vec::new(),
            sets: Vec::new(),
        }),
        signal: Mutex::new(()),
        wake: Condvar::new(),
        delivered_changed: Condvar::new(),
    })
}

fn registry() -> MutexGuard<'static, Registry> {
    shared().registry.lock().unwrap_or_else(|e| e.into_inner())
}

fn new_buffer() -> Arc<Buffer> {
    let buffer = Arc::new(Buffer {
        entries: Mutex::new(Vec::with_capacity(INITIAL_BUFFER)),
        orphaned: AtomicBool::new(false),
    });
    registry().buffers.push(buffer.clone());
    buffer
}

/// A buffer for threads whose own is gone (an event fired from a thread-local's destructor).
fn fallback_buffer() -> &'static Arc<Buffer> {
    static FALLBACK: OnceLock<Arc<Buffer>> = OnceLock::new();
    FALLBACK.get_or_init(new_buffer)
}

/// Registers the adapters of a configuration with the collector (starting it if needed) and
/// returns the set's id; `None` if no collector thread could be started, in which case the
/// caller delivers on its own thread.
pub(crate) fn register(set: Arc<AdapterSet>) -> Option<u64> {
    if !start() {
        return None;
    }
    let id = NEXT_SET.fetch_add(1, Ordering::Relaxed);
    registry().sets.push((id, set, None));
    Some(id)
}

/// The set will get no more events: the collector forgets it once it delivered those it has.
/// Waits for that (at most [`DEFAULT_FLUSH_TIMEOUT`]), so that the adapters of a replaced
/// configuration have every event of theirs when `configure` returns, and are dropped by the
/// caller, not on the collector.
pub(crate) fn retire(set: u64) {
    let after = NEXT_SEQ.load(Ordering::SeqCst);
    if let Some(slot) = registry().sets.iter_mut().find(|slot| slot.0 == set) {
        slot.2 = Some(after);
    }
    if ON_COLLECTOR.with(|flag| flag.get()) {
        return;
    }
    let deadline = Instant::now().checked_add(DEFAULT_FLUSH_TIMEOUT);
    if wait_delivered(after, deadline) {
        registry().sets.retain(|slot| slot.0 != set);
    } else {
        tracing::warn!(
            target: "tasker",
            "[Tasker] the adapters of a replaced configuration did not get their last events \
             within {DEFAULT_FLUSH_TIMEOUT:?}; they are dropped when the collector is done with \
             them"
        );
    }
}

/// Queues `call` for the adapter set `set` on this thread's buffer; `call` runs only if the
/// buffer has room.
#[inline]
pub(crate) fn push(set: u64, call: impl FnOnce() -> Call) {
    let mut call = Some(call);
    let pushed = LOCAL.try_with(|local| {
        if let Some(call) = call.take() {
            push_into(&local.0, set, call);
        }
    });
    if pushed.is_err() {
        // The thread is ending and its buffer is gone (an event from a thread-local's
        // destructor): the shared fallback buffer takes it.
        if let Some(call) = call.take() {
            push_into(fallback_buffer(), set, call);
        }
    }
    if SLEEPING.load(Ordering::SeqCst) {
        wake();
    }
}

#[inline]
fn push_into(buffer: &Buffer, set: u64, call: impl FnOnce() -> Call) {
    let mut entries = buffer.lock();
    if entries.len() >= CAPACITY.load(Ordering::Relaxed) {
        drop(entries);
        dropped();
        return;
    }
    let call = call();
    // Stamped under the buffer's lock: see the module's note on order.
    let seq = NEXT_SEQ.fetch_add(1, Ordering::SeqCst);
    entries.push(Entry { seq, set, call });
}

#[cold]
fn dropped() {
    DROPPED.fetch_add(1, Ordering::Relaxed);
    if !DROP_REPORTED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            target: "tasker",
            capacity = CAPACITY.load(Ordering::Relaxed),
            "[Tasker] the telemetry collector is behind: a thread's buffer of {} events is full, \
             so new events are dropped instead of slowing tasks; later drops are counted, not \
             logged (tasker::telemetry::collector::stats)",
            CAPACITY.load(Ordering::Relaxed),
        );
    }
}

#[cold]
fn wake() {
    let shared = shared();
    SLEEPING.store(false, Ordering::SeqCst);
    let _signal = shared.signal.lock().unwrap_or_else(|e| e.into_inner());
    shared.wake.notify_one();
}

/// Starts the collector thread once; `false` if it could not be started.
fn start() -> bool {
    static STARTED: OnceLock<bool> = OnceLock::new();
    *STARTED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("tasker-collector".into())
            .spawn(run);
        match spawned {
            Ok(handle) => {
                thread_clock::remember(&handle);
                exit_hook::install();
                true
            }
            Err(error) => {
                UNAVAILABLE.store(true, Ordering::Relaxed);
                tracing::warn!(
                    target: "tasker",
                    %error,
                    "[Tasker] the telemetry collector thread could not be started ({error}); \
                     adapters are called on the tasks' own threads instead"
                );
                false
            }
        }
    })
}

/// The collector's own state between sweeps.
#[derive(Default)]
struct Collector {
    /// Drained buffers' storage, handed back to them so pushing never reallocates in the steady
    /// state.
    spare: Vec<Vec<Entry>>,
    /// Entries in hand, to deliver in stamp order.
    batch: Vec<Entry>,
    /// Entries stamped at or after the sweep's mark, kept for the next sweep.
    later: Vec<Entry>,
    /// Adapter sets by id, refreshed from the registry when an unknown id appears.
    sets: Vec<(u64, Arc<AdapterSet>)>,
    /// The registry's buffers, copied for one sweep.
    buffers: Vec<Arc<Buffer>>,
}

fn run() {
    ON_COLLECTOR.with(|flag| flag.set(true));
    let mut collector = Collector::default();
    let mut idle = 0u32;
    loop {
        let hi = NEXT_SEQ.load(Ordering::SeqCst);
        let delivered = collector.sweep(hi);
        if delivered >= FULL_BATCH {
            // Behind: sweep again at once.
            idle = 0;
            continue;
        }
        idle = if delivered > 0 {
            0
        } else {
            idle.saturating_add(1)
        };
        collector.sleep(hi, idle);
    }
}

/// A sweep that delivered this many is followed by another at once; after a smaller one the
/// collector waits `IDLE_POLL`, so that events gather into batches and the callers' buffers are
/// not taken from under them after every push.
const FULL_BATCH: usize = 4096;

impl Collector {
    /// Drains every buffer, delivers what was stamped below `hi`, in order; returns how many
    /// entries it delivered.
    fn sweep(&mut self, hi: u64) -> usize {
        let mut buffers = std::mem::take(&mut self.buffers);
        buffers.extend(registry().buffers.iter().cloned());
        self.batch.append(&mut self.later);
        for buffer in &buffers {
            let mut storage = {
                let mut entries = buffer.lock();
                if entries.is_empty() {
                    continue;
                }
                // The storage the buffer gets back is at least as large as what it held, and
                // any allocation for it happens here: a caller's pushes allocate only when a
                // burst outgrows every earlier one.
                let capacity = entries.capacity().max(INITIAL_BUFFER);
                let mut storage = match self.spare.pop() {
                    Some(spare) if spare.capacity() >= capacity => spare,
                    _ => Vec::with_capacity(capacity),
                };
                std::mem::swap(&mut *entries, &mut storage);
                storage
            };
            for entry in storage.drain(..) {
                if entry.seq < hi {
                    self.batch.push(entry);
                } else {
                    self.later.push(entry);
                }
            }
            self.spare.push(storage);
        }
        // Per-thread runs are already sorted; a stable sort merges them cheaply.
        self.batch.sort_by_key(|entry| entry.seq);
        let count = self.batch.len();
        let mut batch = std::mem::take(&mut self.batch);
        for entry in batch.drain(..) {
            if let Some(set) = self.set(entry.set) {
                deliver(&set, &entry.call);
            }
        }
        self.batch = batch;
        if count > 0 {
            BATCHES.fetch_add(1, Ordering::Relaxed);
        }
        buffers.clear();
        self.buffers = buffers;
        self.finish_sweep(hi);
        count
    }

    fn set(&mut self, id: u64) -> Option<Arc<AdapterSet>> {
        if let Some((_, set)) = self.sets.iter().find(|(known, _)| *known == id) {
            return Some(set.clone());
        }
        let set = registry()
            .sets
            .iter()
            .find(|slot| slot.0 == id)
            .map(|slot| slot.1.clone())?;
        self.sets.push((id, set.clone()));
        Some(set)
    }

    /// Publishes the mark, wakes flushers, forgets retired sets and ended threads' buffers.
    fn finish_sweep(&mut self, hi: u64) {
        // No set outlives a sweep here, so a retired configuration's adapters are dropped by
        // whoever replaced it (see `retire`), not on the collector.
        self.sets.clear();
        // Before the registry's lock: its first use registers it there.
        let fallback = fallback_buffer();
        let mut registry = registry();
        registry
            .sets
            .retain(|(_, _, after)| !after.is_some_and(|after| after <= hi));
        registry.buffers.retain(|buffer| {
            !(buffer.orphaned.load(Ordering::Acquire)
                && !Arc::ptr_eq(buffer, fallback)
                && buffer.lock().is_empty())
        });
        drop(registry);
        self.spare.truncate(64);
        DELIVERED.store(hi, Ordering::SeqCst);
        let shared = shared();
        let _signal = shared.signal.lock().unwrap_or_else(|e| e.into_inner());
        shared.delivered_changed.notify_all();
    }

    fn sleep(&mut self, hi: u64, idle: u32) {
        let shared = shared();
        let signal = shared.signal.lock().unwrap_or_else(|e| e.into_inner());
        if FLUSH_WANTED.swap(false, Ordering::SeqCst) {
            return;
        }
        let deep = idle > IDLE_SWEEPS;
        if deep {
            SLEEPING.store(true, Ordering::SeqCst);
            // An event stamped since the sweep: the pusher may have missed the flag.
            if NEXT_SEQ.load(Ordering::SeqCst) != hi {
                SLEEPING.store(false, Ordering::SeqCst);
                return;
            }
        }
        let timeout = if deep { DEEP_SLEEP } else { IDLE_POLL };
        let _ = shared
            .wake
            .wait_timeout(signal, timeout)
            .unwrap_or_else(|e| e.into_inner());
        SLEEPING.store(false, Ordering::SeqCst);
    }
}

/// A flush is waiting: the collector sweeps at once instead of sleeping.
static FLUSH_WANTED: AtomicBool = AtomicBool::new(false);

/// Calls every adapter of `set` with `call`, each isolated.
pub(crate) fn deliver(set: &AdapterSet, call: &Call) {
    for configured in set
        .adapters
        .iter()
        .filter(|configured| !configured.synchronous)
    {
        let adapter = configured.adapter.as_ref();
        match call {
            Call::Event(event) => configured.isolated.call(|| dispatch(adapter, event)),
            Call::Abandoned(task) => configured
                .isolated
                .call(|| adapter.end_trace(task, crate::adapter::SpanOutcome::Abandoned)),
        }
    }
}

/// Waits until every event recorded before the call has reached every adapter, at most
/// [`DEFAULT_FLUSH_TIMEOUT`]; `true` if it has. See [`flush_timeout`].
///
/// ```
/// tasker_telemetry::record("app.audit", ()).unwrap();
/// assert!(tasker_telemetry::flush());
/// ```
pub fn flush() -> bool {
    flush_timeout(DEFAULT_FLUSH_TIMEOUT)
}

/// Waits until every event recorded before the call (on any thread) has reached every adapter,
/// at most `timeout`; `true` if it has.
///
/// Adapters that ask for synchronous delivery got their events already; the others get them on
/// the collector thread, and then their own [`Adapter::flush`] is asked to hand on what they
/// hold (a [`NonBlocking`](crate::adapters::NonBlocking) adapter's queue, an exporter's batch).
/// Called from an adapter on the collector thread it cannot wait for itself and returns whether
/// nothing is pending.
pub fn flush_timeout(timeout: Duration) -> bool {
    let deadline = Instant::now().checked_add(timeout);
    drain_until(deadline) && flush_adapters(deadline)
}

/// Waits until every event recorded before the call has been handed to every adapter's
/// `record` (or trace and span hooks), at most `timeout`; `true` if it has. Unlike
/// [`flush_timeout`] it does not wait for what adapters keep for later (a
/// [`NonBlocking`](crate::adapters::NonBlocking) adapter's queue).
pub fn drain(timeout: Duration) -> bool {
    drain_until(Instant::now().checked_add(timeout))
}

fn drain_until(deadline: Option<Instant>) -> bool {
    let target = NEXT_SEQ.load(Ordering::SeqCst);
    if DELIVERED.load(Ordering::SeqCst) >= target {
        return true;
    }
    if ON_COLLECTOR.with(|flag| flag.get()) || UNAVAILABLE.load(Ordering::Relaxed) {
        return false;
    }
    wait_delivered(target, deadline)
}

fn wait_delivered(target: u64, deadline: Option<Instant>) -> bool {
    if DELIVERED.load(Ordering::SeqCst) >= target {
        return true;
    }
    let shared = shared();
    FLUSH_WANTED.store(true, Ordering::SeqCst);
    wake();
    let mut signal = shared.signal.lock().unwrap_or_else(|e| e.into_inner());
    while DELIVERED.load(Ordering::SeqCst) < target {
        let wait = match deadline {
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left,
                _ => return false,
            },
            None => DEEP_SLEEP,
        };
        // The collector may be between its check and its sleep: keep asking.
        FLUSH_WANTED.store(true, Ordering::SeqCst);
        shared.wake.notify_one();
        signal = shared
            .delivered_changed
            .wait_timeout(signal, wait.min(IDLE_POLL * 10))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    true
}

/// Asks every adapter of the live sets to hand on what it holds.
fn flush_adapters(deadline: Option<Instant>) -> bool {
    let sets: Vec<Arc<AdapterSet>> = registry().sets.iter().map(|slot| slot.1.clone()).collect();
    let mut all = true;
    for set in sets {
        for configured in &set.adapters {
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            let mut flushed = false;
            configured
                .isolated
                .call(|| flushed = configured.adapter.flush(left));
            all &= flushed;
        }
    }
    all
}

/// What the collector did so far in this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CollectorStats {
    /// Events (and abandonments) accepted into a buffer, ever.
    pub recorded: u64,
    /// Of those, the ones the collector has delivered to their adapters.
    pub delivered: u64,
    /// Events dropped because their thread's buffer was full.
    pub dropped: u64,
    /// Batches the collector delivered.
    pub batches: u64,
}

/// What the collector did so far: events accepted, delivered and dropped.
///
/// ```
/// let stats = tasker_telemetry::collector::stats();
/// assert!(stats.delivered <= stats.recorded);
/// ```
pub fn stats() -> CollectorStats {
    CollectorStats {
        recorded: NEXT_SEQ.load(Ordering::SeqCst),
        delivered: DELIVERED.load(Ordering::SeqCst),
        dropped: DROPPED.load(Ordering::Relaxed),
        batches: BATCHES.load(Ordering::Relaxed),
    }
}

/// Events each thread's buffer holds before new ones are dropped.
pub fn buffer_capacity() -> usize {
    CAPACITY.load(Ordering::Relaxed)
}

/// Sets how many events each thread's buffer holds before new ones are dropped (at least 1;
/// default [`DEFAULT_BUFFER_CAPACITY`]). Memory stays bounded by the number of threads that
/// record times this.
pub fn set_buffer_capacity(capacity: usize) {
    CAPACITY.store(capacity.max(1), Ordering::Relaxed);
}

/// The CPU time the collector thread has used so far, from its thread CPU clock: what moving
/// adapters off the tasks' threads costs, to add to theirs when measuring. `None` before the
/// collector started, or where thread clocks are not available (non-Unix).
///
/// ```
/// let _used = tasker_telemetry::collector::cpu_time();
/// ```
pub fn cpu_time() -> Option<Duration> {
    thread_clock::read()
}

/// The collector thread's CPU clock.
mod thread_clock {
    #[cfg(unix)]
    use std::sync::OnceLock;
    use std::time::Duration;

    #[cfg(unix)]
    static CLOCK: OnceLock<libc::clockid_t> = OnceLock::new();

    #[cfg(unix)]
    pub(super) fn remember(handle: &std::thread::JoinHandle<()>) {
        use std::os::unix::thread::JoinHandleExt;
        let mut clock: libc::clockid_t = 0;
        // SAFETY: the thread is running (it never ends), so its `pthread_t` is valid.
        if unsafe { libc::pthread_getcpuclockid(handle.as_pthread_t(), &mut clock) } == 0 {
            let _ = CLOCK.set(clock);
        }
    }

    #[cfg(unix)]
    pub(super) fn read() -> Option<Duration> {
        let clock = *CLOCK.get()?;
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid, writable timespec.
        if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
            return None;
        }
        Some(Duration::new(
            u64::try_from(now.tv_sec).ok()?,
            u32::try_from(now.tv_nsec).ok()?,
        ))
    }

    #[cfg(not(unix))]
    pub(super) fn remember(_handle: &std::thread::JoinHandle<()>) {}

    #[cfg(not(unix))]
    pub(super) fn read() -> Option<Duration> {
        None
    }
}

/// The process-exit hook: `exit` (returning from `main` included) runs it before the process
/// ends, while the collector thread still runs.
mod exit_hook {
    #[cfg(unix)]
    pub(super) fn install() {
        extern "C" fn flush_at_exit() {
            // Nothing may unwind into C.
            let _ = std::panic::catch_unwind(|| super::flush_timeout(super::EXIT_FLUSH_TIMEOUT));
        }
        // SAFETY: `flush_at_exit` is a plain `extern "C"` function that never unwinds.
        let refused = unsafe { libc::atexit(flush_at_exit) } != 0;
        if refused {
            tracing::warn!(
                target: "tasker",
                "[Tasker] could not install the exit hook that drains telemetry; call \
                 tasker::telemetry::flush() before the program ends"
            );
        }
    }

    #[cfg(not(unix))]
    pub(super) fn install() {}
}
