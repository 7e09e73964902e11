//! Adapter faults: an adapter that panics, one that blocks for seconds, one that is slow only
//! sometimes. Task results are identical and timings comparable to the same run without the
//! faulty adapter; what is lost is counted and reported, never silent. `NonBlocking` is what keeps
//! a slow adapter off the tasks' threads.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tasker::telemetry::adapters::{dropped_events, NonBlocking, NonBlockingHandle};
use tasker::telemetry::{Adapter, Event};
use tasker::TelemetryAdapter;

/// Configuration is process-wide: the tests of this binary take turns.
static EXCLUSIVE: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    EXCLUSIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Everything written through `tracing`, from every thread.
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        log
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Lines logged since `from` (a length of the log) that contain `needle`.
fn logged_since(from: usize, needle: &str) -> usize {
    let log = log().lock().unwrap_or_else(PoisonError::into_inner);
    String::from_utf8_lossy(&log[from..])
        .lines()
        .filter(|line| line.contains(needle))
        .count()
}

fn log_len() -> usize {
    log().lock().unwrap_or_else(PoisonError::into_inner).len()
}

static COUNTED: AtomicU64 = AtomicU64::new(0);

/// A quick adapter: the baseline every run has, so runs differ only by the faulty adapter.
#[derive(Default)]
pub struct CountingAdapter;

impl Adapter for CountingAdapter {
    fn record(&self, _event: &Event<'_>) {
        COUNTED.fetch_add(1, Ordering::Relaxed);
    }
}

tasker::register_adapter!(CountingAdapter);

#[derive(Default)]
pub struct PanickingAdapter;

impl Adapter for PanickingAdapter {
    fn record(&self, event: &Event<'_>) {
        panic!("adapter bug on {}", event.name());
    }
}

tasker::register_adapter!(PanickingAdapter);
tasker::register_adapter!("faults-panicking-behind-a-queue", || {
    // Room for every call of a run, so that each one reaches the adapter (and panics).
    NonBlocking::builder(PanickingAdapter)
        .name("faults-panicking-behind-a-queue")
        .capacity(100_000)
        .shutdown_timeout(Duration::from_secs(30))
        .build()
});

/// Blocks for seconds on every call: a stalled exporter.
#[derive(Default)]
pub struct BlockingAdapter;

impl Adapter for BlockingAdapter {
    fn record(&self, _event: &Event<'_>) {
        std::thread::sleep(Duration::from_secs(2));
    }
}

tasker::register_adapter!("faults-blocking", || {
    NonBlocking::builder(BlockingAdapter)
        .name("faults-blocking")
        .capacity(64)
        .shutdown_timeout(Duration::from_millis(100))
        .build()
});

/// Slow on one call in a hundred; keeps what it got to check it afterwards.
#[derive(Default)]
pub struct SometimesSlowAdapter {
    calls: AtomicU64,
}

static SEEN_BY_SLOW: Mutex<Vec<Event<'static>>> = Mutex::new(Vec::new());
static SLOW_HANDLE: Mutex<Option<NonBlockingHandle>> = Mutex::new(None);

impl Adapter for SometimesSlowAdapter {
    fn record(&self, event: &Event<'_>) {
        if self.calls.fetch_add(1, Ordering::Relaxed) % 100 == 99 {
            std::thread::sleep(Duration::from_millis(50));
        }
        SEEN_BY_SLOW
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event.clone().into_owned());
    }
}

tasker::register_adapter!("faults-sometimes-slow", || {
    let adapter = NonBlocking::builder(SometimesSlowAdapter::default())
        .name("faults-sometimes-slow")
        .capacity(100_000)
        .build();
    *SLOW_HANDLE.lock().unwrap_or_else(PoisonError::into_inner) = Some(adapter.handle());
    adapter
});

#[derive(Debug, thiserror::Error)]
#[error("order {0} declined")]
struct Declined(u64);

#[tasker::step(max_attempts = 1)]
async fn double(n: u64) -> u64 {
    tokio::task::yield_now().await;
    n * 2
}

#[tasker::step(max_attempts = 2, backoff_ms = 1, jitter = 0.0)]
async fn check(n: u64) -> Result<u64, Declined> {
    if n % 5 == 0 {
        return Err(Declined(n));
    }
    Ok(n)
}

#[tasker::task(name = "fault_order", version = "1.0.0")]
async fn fault_order(n: u64) -> Result<u64, Declined> {
    let (doubled, checked) = tasker::join!(double(n), check(n));
    Ok(doubled + checked?)
}

const TASKS: u64 = 300;

/// Runs `TASKS` tasks at once on two threads; their results and the wall time.
fn run_tasks() -> (Vec<Result<u64, String>>, Duration) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let started = Instant::now();
        let handles: Vec<_> = (0..TASKS).map(|n| tokio::spawn(fault_order(n))).collect();
        let mut results = Vec::new();
        for handle in handles {
            let result = handle.await.expect("the task does not panic");
            results.push(result.map_err(|error| error.to_string()));
        }
        (results, started.elapsed())
    })
}

fn configure(classes: &[&str]) {
    tasker::configure(|config| {
        config.enable_telemetry = true;
        config.telemetry_adapters = vec![TelemetryAdapter::Custom; classes.len()];
        config.telemetry_adapter_classes = classes.iter().map(|class| class.to_string()).collect();
    })
    .expect("the adapters are registered in this binary");
}

fn unconfigure() {
    let _ = tasker::configure(|config| {
        config.enable_telemetry = false;
        config.telemetry_adapters = vec![TelemetryAdapter::Default];
        config.telemetry_adapter_classes = Vec::new();
    });
}

const BASELINE: &str = "reliability_adapter_faults::CountingAdapter";

/// The same tasks with the baseline adapter alone, then with `faulty` beside it: results must be
/// identical and the wall time comparable. Returns the events the baseline adapter counted in
/// the faulty run.
fn compare_with_baseline(faulty: &str) -> u64 {
    configure(&[BASELINE]);
    let (expected, baseline) = run_tasks();
    configure(&[BASELINE, faulty]);
    let before = COUNTED.load(Ordering::Relaxed);
    let (results, took) = run_tasks();
    // Adapters get their events on the collector thread: count once it delivered them.
    assert!(
        tasker::telemetry::collector::drain(Duration::from_secs(30)),
        "the collector drains"
    );
    let events = COUNTED.load(Ordering::Relaxed) - before;
    assert_eq!(results, expected, "{faulty}: identical results");
    // Generous, and relative: the faulty adapter blocks for seconds per call, so a run that
    // waited for it would take minutes.
    assert!(
        took < baseline * 5 + Duration::from_millis(500),
        "{faulty}: {took:?} against {baseline:?} without it"
    );
    events
}

/// The adapter's thousands of panics are expected: keep them out of the test output (and
/// their backtraces out of the timing).
fn quiet_adapter_panics() {
    static QUIET: OnceLock<()> = OnceLock::new();
    QUIET.get_or_init(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or_default();
            if !message.starts_with("adapter bug on ") {
                default(info);
            }
        }));
    });
}

#[test]
fn a_panicking_adapter_changes_no_result_and_every_panic_is_counted() {
    let _exclusive = exclusive();
    quiet_adapter_panics();
    let from = log_len();
    let counts = tasker::events::panic_counts;
    for (class, label) in [
        (
            "reliability_adapter_faults::PanickingAdapter",
            "adapter reliability_adapter_faults::PanickingAdapter",
        ),
        (
            "faults-panicking-behind-a-queue",
            "adapter faults-panicking-behind-a-queue",
        ),
    ] {
        let before = counts().get(label);
        let events = compare_with_baseline(class);
        unconfigure(); // a queued adapter delivers what it holds when it is dropped
        assert_eq!(
            counts().get(label) - before,
            events,
            "{label}: every panic counted"
        );
        assert_eq!(
            logged_since(from, &format!("{label} panicked and was isolated")),
            usize::from(before == 0),
            "{label}: reported once"
        );
    }
}

#[test]
fn an_adapter_that_blocks_for_seconds_slows_no_task_and_its_losses_are_counted() {
    let _exclusive = exclusive();
    let from = log_len();
    let dropped_before = dropped_events()
        .get("faults-blocking")
        .copied()
        .unwrap_or(0);
    let events = compare_with_baseline("faults-blocking");
    let dropped = dropped_events()["faults-blocking"] - dropped_before;
    // One call in the adapter's hands, 64 in its queue: at least the rest is dropped.
    assert!(
        dropped >= events.saturating_sub(65),
        "{dropped} of {events} dropped"
    );
    assert_eq!(
        logged_since(from, "adapter faults-blocking is behind"),
        1,
        "the first drop is reported, once"
    );
    let stopping = Instant::now();
    unconfigure();
    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "dropping a stuck adapter waits only its shutdown timeout"
    );
    let dropped = dropped_events()["faults-blocking"] - dropped_before;
    assert!(
        dropped >= events - 1,
        "what it never got is counted at shutdown: {dropped} of {events}"
    );
    assert_eq!(
        logged_since(from, "adapter faults-blocking did not drain its queue"),
        1
    );
}

#[test]
fn an_adapter_slow_only_sometimes_gets_every_event_in_order() {
    let _exclusive = exclusive();
    SEEN_BY_SLOW
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    let events = compare_with_baseline("faults-sometimes-slow");
    let handle = SLOW_HANDLE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .expect("built by configure");
    assert!(handle.flush(Duration::from_secs(30)), "the queue drains");
    let stats = handle.stats();
    assert_eq!((stats.dropped, stats.queued), (0, 0), "{stats:?}");
    let seen = std::mem::take(&mut *SEEN_BY_SLOW.lock().unwrap_or_else(PoisonError::into_inner));
    assert_eq!(seen.len() as u64, events, "every event arrived");
    assert_eq!(
        tasker::testing::assert_valid_tasks(&seen) as u64,
        TASKS,
        "each task's events arrived in order"
    );
    unconfigure();
}
