//! The telemetry collector: adapters receive events on one collector thread, in per-task order,
//! with bounded buffers; `flush` makes every earlier event visible; a program that returns from
//! `main` loses nothing; a full buffer drops, counts and reports once; a panicking adapter on the
//! collector is isolated.
//!
//! Tests here share the process-wide configuration and collector, so they run one at a time.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tasker::telemetry::{collector, Adapter, Event};
use tasker::TelemetryAdapter;

fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

fn configure(class: &str) {
    tasker::configure(|config| {
        config.enable_telemetry = true;
        config.telemetry_adapters = vec![TelemetryAdapter::Custom];
        config.telemetry_adapter_classes = vec![class.into()];
    })
    .expect("the adapter is registered in this binary");
}

fn unconfigure() {
    tasker::configure(|config| *config = tasker::Configuration::default())
        .expect("the defaults are valid");
}

/// What the global `tracing` subscriber wrote: reports made on the collector thread go there.
fn global_log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let writer = SharedWriter(log.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        log
    })
}

#[derive(Clone)]
struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for SharedWriter {
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

fn lines_containing(needle: &str) -> usize {
    let log = global_log().lock().unwrap_or_else(PoisonError::into_inner);
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|line| line.contains(needle))
        .count()
}

// ---------------------------------------------------------------------------------------------
// 100,000 tasks, in per-task order.

/// `(task id, event name)` of every event, in the order the adapter got them.
static ORDERED: Mutex<Vec<(u128, &'static str)>> = Mutex::new(Vec::new());
static ON_COLLECTOR_THREAD: AtomicBool = AtomicBool::new(true);

#[derive(Default)]
pub struct OrderAdapter;

impl Adapter for OrderAdapter {
    fn record(&self, event: &Event<'_>) {
        if std::thread::current().name() != Some("tasker-collector") {
            ON_COLLECTOR_THREAD.store(false, Ordering::Relaxed);
        }
        let (Some(task), Some(kind)) = (event.task_id(), event.kind()) else {
            return;
        };
        ORDERED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((task.as_u128(), kind.name()));
    }
}

tasker::register_adapter!(OrderAdapter);

#[tasker::step(max_attempts = 1)]
async fn hop(n: u64) -> u64 {
    // Lets the task resume on the other worker thread: its events come from both.
    tokio::task::yield_now().await;
    n + 1
}

#[tasker::task(name = "collector_hopping", version = "1")]
async fn hopping(n: u64) -> u64 {
    let first = hop(n).await;
    tokio::task::yield_now().await;
    hop(first).await
}

const HOPPING_EVENTS: [&str; 9] = [
    "task.initialize",
    "task.start",
    "task.handle",
    "step.handle",
    "step.complete",
    "step.handle",
    "step.complete",
    "task.finalize",
    "task.complete",
];

#[test]
fn events_of_100_000_tasks_reach_a_collector_fed_adapter_complete_and_in_task_order() {
    let _exclusive = exclusive();
    ORDERED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    configure("telemetry_collector::OrderAdapter");
    let dropped_before = collector::stats().dropped;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a runtime");
    let tasks = 100_000u64;
    let wave = 2_000u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    runtime.block_on(async {
        for first in (0..tasks).step_by(wave as usize) {
            let handles: Vec<_> = (first..first + wave)
                .map(|n| tokio::spawn(hopping(n)))
                .collect();
            for (n, handle) in (first..).zip(handles) {
                let left = deadline.saturating_duration_since(Instant::now());
                let result = tokio::time::timeout(left, handle)
                    .await
                    .expect("every task ends within the deadline")
                    .expect("no task panics");
                assert_eq!(result, n + 2);
            }
        }
    });
    assert!(
        tasker::telemetry::flush_timeout(Duration::from_secs(60)),
        "the collector drains"
    );
    unconfigure();

    assert_eq!(
        collector::stats().dropped,
        dropped_before,
        "nothing dropped"
    );
    assert!(
        ON_COLLECTOR_THREAD.load(Ordering::Relaxed),
        "the adapter is called on the collector thread only"
    );
    let ordered = std::mem::take(&mut *ORDERED.lock().unwrap_or_else(PoisonError::into_inner));
    assert_eq!(ordered.len() as u64, tasks * HOPPING_EVENTS.len() as u64);
    let mut by_task: HashMap<u128, Vec<&'static str>> = HashMap::new();
    for (task, name) in ordered {
        by_task.entry(task).or_default().push(name);
    }
    assert_eq!(by_task.len() as u64, tasks);
    for (task, names) in by_task {
        assert_eq!(names, HOPPING_EVENTS, "task {task:x}");
    }
}

// ---------------------------------------------------------------------------------------------
// flush.

static SLOWLY_SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Takes a millisecond per event, so that the collector is still busy when `flush` is called.
#[derive(Default)]
pub struct SlowAdapter;

impl Adapter for SlowAdapter {
    fn record(&self, event: &Event<'_>) {
        std::thread::sleep(Duration::from_millis(1));
        SLOWLY_SEEN
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event.name().to_owned());
    }
}

tasker::register_adapter!(SlowAdapter);

#[test]
fn flush_makes_every_earlier_event_visible() {
    let _exclusive = exclusive();
    configure("telemetry_collector::SlowAdapter");
    SLOWLY_SEEN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    let names: Vec<String> = (0..50).map(|n| format!("app.flush_{n}")).collect();
    for name in &names {
        tasker::telemetry::record(name, ()).expect("a valid custom event");
    }
    assert!(
        tasker::telemetry::flush(),
        "flush completes within its timeout"
    );
    let seen = SLOWLY_SEEN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    assert_eq!(seen, names);
    unconfigure();
}

// ---------------------------------------------------------------------------------------------
// A program that returns from `main`.

/// Writes each event to stdout from the collector thread, slowly: a process that ended without
/// draining the collector would lose the last ones.
#[derive(Default)]
pub struct StdoutAdapter;

impl Adapter for StdoutAdapter {
    fn record(&self, event: &Event<'_>) {
        std::thread::sleep(Duration::from_millis(20));
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "EVENT {}", event.name());
        let _ = stdout.flush();
    }
}

tasker::register_adapter!(StdoutAdapter);

#[tasker::step(max_attempts = 1)]
fn exit_step(n: u64) -> u64 {
    n * 2
}

#[tasker::task(name = "collector_exit", version = "1")]
fn exit_task(n: u64) -> u64 {
    exit_step(n)
}

const CHILD: &str = "TASKER_COLLECTOR_EXIT_CHILD";

/// The child's body: runs one task and returns, leaving its events with the collector.
#[test]
fn exit_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    configure("telemetry_collector::StdoutAdapter");
    assert_eq!(exit_task(21), 42);
    let _ = writeln!(std::io::stdout().lock(), "TASK DONE");
}

#[test]
fn a_program_that_returns_from_main_loses_no_event_of_a_finished_task() {
    let _exclusive = exclusive();
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "exit_child",
            "--test-threads",
            "1",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the child starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child's status") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status:?}");
    let mut output = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("piped stdout"), &mut output)
        .expect("the child's output");
    let events: Vec<&str> = output
        .lines()
        .filter_map(|line| line.strip_prefix("EVENT "))
        .collect();
    assert_eq!(
        events,
        [
            "task.initialize",
            "task.start",
            "task.handle",
            "step.handle",
            "step.complete",
            "task.finalize",
            "task.complete",
        ],
        "{output}"
    );
}

// ---------------------------------------------------------------------------------------------
// A full buffer.

/// Blocks the collector on its first event until the test opens the gate.
#[derive(Default)]
pub struct GateAdapter;

struct Gate {
    state: Mutex<(bool, bool)>, // (entered, open)
    changed: Condvar,
}

fn gate() -> &'static Gate {
    static GATE: Gate = Gate {
        state: Mutex::new((false, false)),
        changed: Condvar::new(),
    };
    &GATE
}

static GATED: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl Adapter for GateAdapter {
    fn record(&self, event: &Event<'_>) {
        let gate = gate();
        let mut state = gate.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0 = true;
        gate.changed.notify_all();
        // Bounded, so that a broken test fails instead of holding the collector for ever.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !state.1 && Instant::now() < deadline {
            state = gate
                .changed
                .wait_timeout(state, Duration::from_millis(50))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(state);
        GATED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event.name().to_owned());
    }
}

tasker::register_adapter!(GateAdapter);

#[test]
fn a_full_buffer_drops_new_events_counts_them_and_reports_once() {
    let _exclusive = exclusive();
    configure("telemetry_collector::GateAdapter");
    let capacity = collector::buffer_capacity();
    collector::set_buffer_capacity(8);
    let dropped_before = collector::stats().dropped;

    let (_, lines) = with_scoped_log(|| {
        tasker::telemetry::record("app.gate_first", ()).expect("a valid custom event");
        // Wait, with a deadline, until the collector is inside the adapter with that event.
        let gate = gate();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut state = gate.state.lock().unwrap_or_else(PoisonError::into_inner);
        while !state.0 {
            assert!(
                Instant::now() < deadline,
                "the collector reached the adapter"
            );
            state = gate
                .changed
                .wait_timeout(state, Duration::from_millis(50))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(state);
        for n in 0..20 {
            tasker::telemetry::record(&format!("app.gate_{n}"), ()).expect("a valid event");
        }
    });

    assert_eq!(collector::stats().dropped - dropped_before, 12, "20 - 8");
    let reports: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains("the telemetry collector is behind"))
        .collect();
    assert_eq!(reports.len(), 1, "{lines:?}");
    assert!(
        reports[0].starts_with(
            " WARN tasker: [Tasker] the telemetry collector is behind: a \
             thread's buffer of 8 events is full"
        ),
        "{}",
        reports[0]
    );

    {
        let gate = gate();
        gate.state.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        gate.changed.notify_all();
    }
    assert!(tasker::telemetry::flush(), "the collector drains");
    collector::set_buffer_capacity(capacity);
    unconfigure();
    let gated = std::mem::take(&mut *GATED.lock().unwrap_or_else(PoisonError::into_inner));
    let expected: Vec<String> = std::iter::once("app.gate_first".to_owned())
        .chain((0..8).map(|n| format!("app.gate_{n}")))
        .collect();
    assert_eq!(gated, expected);
}

fn with_scoped_log<R>(f: impl FnOnce() -> R) -> (R, Vec<String>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let writer = SharedWriter(log.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .without_time()
        .finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let text =
        String::from_utf8_lossy(&log.lock().unwrap_or_else(PoisonError::into_inner)).into_owned();
    (result, text.lines().map(str::to_owned).collect())
}

// ---------------------------------------------------------------------------------------------
// A panicking adapter on the collector.

static PANICS_SEEN: AtomicU64 = AtomicU64::new(0);

#[derive(Default)]
pub struct PanickingAdapter;

impl Adapter for PanickingAdapter {
    fn record(&self, event: &Event<'_>) {
        PANICS_SEEN.fetch_add(1, Ordering::Relaxed);
        panic!("collector adapter bug on {}", event.name());
    }
}

tasker::register_adapter!(PanickingAdapter);

#[test]
fn a_panicking_adapter_on_the_collector_is_isolated_counted_and_reported_once() {
    let _exclusive = exclusive();
    let _ = global_log();
    let label = "adapter telemetry_collector::PanickingAdapter";
    let before = tasker::events::panic_counts().get(label);
    configure("telemetry_collector::PanickingAdapter");

    assert_eq!(exit_task(5), 10, "the task's result is unchanged");
    assert_eq!(exit_task(6), 12);
    assert!(tasker::telemetry::flush(), "the collector drains");
    unconfigure();

    assert_eq!(
        PANICS_SEEN.load(Ordering::Relaxed),
        14,
        "two tasks of seven events"
    );
    assert_eq!(tasker::events::panic_counts().get(label) - before, 14);
    assert_eq!(
        lines_containing(&format!("{label} panicked and was isolated")),
        1,
        "reported once, from the collector thread, through the global subscriber"
    );
    // The collector goes on delivering after the panics.
    configure("telemetry_collector::SlowAdapter");
    SLOWLY_SEEN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    tasker::telemetry::record("app.after_panics", ()).expect("a valid custom event");
    assert!(tasker::telemetry::flush());
    assert_eq!(
        *SLOWLY_SEEN.lock().unwrap_or_else(PoisonError::into_inner),
        ["app.after_panics"]
    );
    unconfigure();
}
