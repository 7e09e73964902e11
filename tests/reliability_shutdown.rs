//! Shutdown and cancellation: `Runtime::shutdown` with tasks in backoff sleeps, in-flight steps
//! and queued requests; a dropped `TaskHandle`; a worker aborted mid-task. No span stays open, no
//! event is duplicated (every sequence follows the lifecycle grammar), queued work is not lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tasker::queue::MemoryQueue;
use tasker::telemetry::{Adapter, Event, SpanOutcome, StepRef, TaskRef};
use tasker::testing::assert_valid_tasks;
use tasker::{Runtime, TaskError, TaskRequest, TelemetryAdapter};

/// Trace and span hooks still open, by task or step id (as text), and what closed them.
static OPEN: Mutex<Option<HashMap<String, i64>>> = Mutex::new(None);

/// Counts the trace and span hooks: a span that stays open leaves a count of 1.
#[derive(Default)]
pub struct SpanLedger;

fn ledger(id: String, change: i64) {
    let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
    let open = open.get_or_insert_with(HashMap::new);
    let count = open.entry(id.clone()).or_default();
    *count += change;
    if *count == 0 {
        open.remove(&id);
    }
}

impl Adapter for SpanLedger {
    fn record(&self, _event: &Event<'_>) {}
    fn start_trace(&self, task: &TaskRef) {
        ledger(format!("{}", task.id), 1);
    }
    fn end_trace(&self, task: &TaskRef, _outcome: SpanOutcome) {
        ledger(format!("{}", task.id), -1);
    }
    fn start_span(&self, step: &StepRef, _task: Option<&TaskRef>) {
        ledger(format!("{}", step.id), 1);
    }
    fn end_span(&self, step: &StepRef, _task: Option<&TaskRef>, _outcome: SpanOutcome) {
        ledger(format!("{}", step.id), -1);
    }
}

tasker::register_adapter!(SpanLedger);

/// How long any wait in this file may take: a regression fails the test instead of hanging CI.
const DEADLINE: Duration = Duration::from_secs(30);

/// `future`, or a panic naming `what` if it takes longer than [`DEADLINE`].
async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {DEADLINE:?}"))
}

/// Polls `condition` until it holds, for at most [`DEADLINE`].
async fn until(what: &str, condition: impl Fn() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
}

/// Every test here wants the same configuration: the span ledger alone.
fn configure() {
    static CONFIGURED: OnceLock<()> = OnceLock::new();
    CONFIGURED.get_or_init(|| {
        tasker::configure(|config| {
            config.enable_telemetry = true;
            config.telemetry_adapters = vec![TelemetryAdapter::Custom];
            config.telemetry_adapter_classes = vec!["reliability_shutdown::SpanLedger".into()];
        })
        .expect("the ledger is registered in this binary");
    });
}

/// Events of the tasks named `name`, from any runtime or thread.
struct Recorder {
    events: Arc<Mutex<Vec<Event<'static>>>>,
    _subscription: tasker::events::Subscription,
}

impl Recorder {
    fn of(name: &'static str) -> Self {
        configure();
        let events: Arc<Mutex<Vec<Event<'static>>>> = Arc::default();
        let sink = events.clone();
        let subscription = tasker::events::subscribe(move |event: &Event<'_>| {
            if event.task_name() == Some(name) {
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(event.clone().into_owned());
            }
        });
        Self {
            events,
            _subscription: subscription,
        }
    }

    fn events(&self) -> Vec<Event<'static>> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn names_of(&self, task_id: impl std::fmt::Display) -> Vec<String> {
        let task_id = task_id.to_string();
        self.events()
            .iter()
            .filter(|event| event.task_id().map(|id| id.to_string()) == Some(task_id.clone()))
            .map(|event| event.name().to_owned())
            .collect()
    }

    /// Waits (bounded) until `count` tasks have a terminal event.
    async fn wait_for_terminals(&self, count: usize) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let terminals = self
                .events()
                .iter()
                .filter(|event| matches!(event.name(), "task.complete" | "task.error"))
                .count();
            if terminals >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{terminals} of {count} tasks ended"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Panics unless no trace or span of these tasks is open.
    fn assert_nothing_open(&self) {
        let events = self.events();
        let open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(open) = open.as_ref() else { return };
        for event in &events {
            for id in [event.task_id(), event.step_id()].into_iter().flatten() {
                assert_eq!(
                    open.get(&id.to_string()),
                    None,
                    "the trace or span of {id} ({}) is still open",
                    event.name()
                );
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("not yet")]
struct NotYet;

static IN_BACKOFF: AtomicU32 = AtomicU32::new(0);

#[tasker::step(max_attempts = 2, backoff_ms = 200, jitter = 0.0)]
async fn fails_once(tries: &AtomicU32) -> Result<u32, NotYet> {
    if tries.fetch_add(1, Ordering::SeqCst) == 0 {
        IN_BACKOFF.fetch_add(1, Ordering::SeqCst);
        return Err(NotYet);
    }
    Ok(7)
}

#[tasker::task(name = "shutdown_backoff", version = "1.0.0")]
async fn shutdown_backoff(_: ()) -> Result<u32, NotYet> {
    let tries = AtomicU32::new(0);
    fails_once(&tries).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_backoff_finishes_claimed_tasks_and_keeps_queued_ones_for_the_next_runtime()
{
    let recorder = Recorder::of("shutdown_backoff");
    let queue = Arc::new(MemoryQueue::new());
    let runtime = Runtime::builder()
        .workers(2)
        .shared_queue(queue.clone())
        .build()
        .unwrap();
    let mut handles = Vec::new();
    for _ in 0..6 {
        let request = TaskRequest::new("shutdown_backoff", &()).unwrap();
        handles.push(within("enqueue", runtime.enqueue(request)).await.unwrap());
    }
    until("two tasks in their backoff", || {
        IN_BACKOFF.load(Ordering::SeqCst) >= 2
    })
    .await;
    within("shutdown", runtime.shutdown()).await;
    let mut outcomes = Vec::new();
    for handle in handles {
        outcomes.push(within("a task's outcome", handle.wait()).await);
    }
    let finished = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    let abandoned = outcomes
        .iter()
        .filter(|outcome| **outcome == Err(TaskError::Abandoned))
        .count();
    assert_eq!((finished, abandoned), (2, 4), "{outcomes:?}");
    assert_eq!(
        queue.len(),
        4,
        "the unclaimed requests stay queued, no lease left"
    );

    // The next runtime on the same queue runs them: nothing was lost.
    let next = Runtime::builder()
        .workers(2)
        .shared_queue(queue.clone())
        .build()
        .unwrap();
    recorder.wait_for_terminals(6).await;
    within("the next runtime's shutdown", next.shutdown()).await;
    assert!(queue.is_empty());
    let events = recorder.events();
    assert_eq!(assert_valid_tasks(&events), 6);
    assert_eq!(
        events
            .iter()
            .filter(|event| event.name() == "task.complete")
            .count(),
        6
    );
    recorder.assert_nothing_open();
}

static STEP_STARTED: AtomicU32 = AtomicU32::new(0);

#[tasker::step(max_attempts = 1)]
async fn slow_step(millis: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    millis
}

#[tasker::step(max_attempts = 1)]
async fn slow_in_flight_step(millis: u64) -> u64 {
    STEP_STARTED.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(millis)).await;
    millis
}

#[tasker::task(name = "shutdown_in_flight", version = "1.0.0")]
async fn shutdown_in_flight(millis: u64) -> u64 {
    slow_in_flight_step(millis).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_in_flight_steps_and_closes_their_spans() {
    let recorder = Recorder::of("shutdown_in_flight");
    let runtime = Runtime::builder().workers(1).build().unwrap();
    let handle = within(
        "enqueue",
        runtime.enqueue(TaskRequest::new("shutdown_in_flight", &300u64).unwrap()),
    )
    .await
    .unwrap();
    until("the step started", || {
        STEP_STARTED.load(Ordering::SeqCst) > 0
    })
    .await;
    within("shutdown", runtime.shutdown()).await;
    assert_eq!(
        within("the task's outcome", handle.wait()).await,
        Ok(serde_json::json!(300))
    );
    assert_eq!(assert_valid_tasks(&recorder.events()), 1);
    recorder.assert_nothing_open();
}

static DROPPED_HANDLE_RUNS: AtomicU32 = AtomicU32::new(0);

#[tasker::task(name = "shutdown_handle_dropped", version = "1.0.0")]
async fn shutdown_handle_dropped(millis: u64) -> u64 {
    DROPPED_HANDLE_RUNS.fetch_add(1, Ordering::SeqCst);
    slow_step(millis).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_task_handle_neither_cancels_nor_repeats_the_task() {
    let recorder = Recorder::of("shutdown_handle_dropped");
    let runtime = Runtime::builder().workers(2).build().unwrap();
    for _ in 0..3 {
        let handle = within(
            "enqueue",
            runtime.enqueue(TaskRequest::new("shutdown_handle_dropped", &20u64).unwrap()),
        )
        .await
        .unwrap();
        drop(handle);
    }
    recorder.wait_for_terminals(3).await;
    within("shutdown", runtime.shutdown()).await;
    assert_eq!(DROPPED_HANDLE_RUNS.load(Ordering::SeqCst), 3);
    let events = recorder.events();
    assert_eq!(assert_valid_tasks(&events), 3);
    assert_eq!(
        events
            .iter()
            .filter(|event| event.name() == "task.complete")
            .count(),
        3
    );
    recorder.assert_nothing_open();
}

static ABORT_RUNS: AtomicU32 = AtomicU32::new(0);
static ABORT_STEP_RUNNING: AtomicU32 = AtomicU32::new(0);

/// The first delivery hangs in its step until its worker is aborted; the next one is quick.
#[tasker::step(max_attempts = 1)]
async fn hangs_first_time() -> u32 {
    if ABORT_RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
        ABORT_STEP_RUNNING.store(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    42
}

#[tasker::task(name = "shutdown_aborted_worker", version = "1.0.0")]
async fn shutdown_aborted_worker(_: ()) -> u32 {
    hangs_first_time().await
}

#[test]
fn an_aborted_worker_cancels_its_task_and_another_worker_runs_it_again() {
    let recorder = Recorder::of("shutdown_aborted_worker");
    let queue = Arc::new(MemoryQueue::new());
    let lease = Duration::from_millis(300);

    // The first worker lives in a Tokio runtime of its own, which is torn down mid-task.
    let crashing = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let first = crashing.block_on(async {
        let runtime = Runtime::builder()
            .workers(1)
            .lease(lease)
            .shared_queue(queue.clone())
            .build()
            .unwrap();
        let handle = within(
            "enqueue",
            runtime.enqueue(TaskRequest::new("shutdown_aborted_worker", &()).unwrap()),
        )
        .await
        .unwrap();
        until("the first delivery's step runs", || {
            ABORT_STEP_RUNNING.load(Ordering::SeqCst) > 0
        })
        .await;
        (runtime, handle)
    });
    let (first_runtime, handle) = first;
    let task_id = handle.task_id();
    crashing.shutdown_background(); // the worker's future is dropped mid-step
    drop(first_runtime);

    let rescue = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rescue.block_on(async {
        assert_eq!(
            within("the aborted task's outcome", handle.wait()).await,
            Err(TaskError::Abandoned),
            "the aborted runtime's handle learns that it will not get the result"
        );
        let runtime = Runtime::builder()
            .workers(1)
            .lease(lease)
            .shared_queue(queue.clone())
            .build()
            .unwrap();
        recorder.wait_for_terminals(2).await;
        within("shutdown", runtime.shutdown()).await;
    });
    assert!(queue.is_empty(), "the second delivery was acknowledged");
    assert_eq!(ABORT_RUNS.load(Ordering::SeqCst), 2);
    assert_eq!(
        recorder.names_of(task_id),
        [
            "task.initialize",
            "task.enqueue",
            "task.start",
            "task.handle",
            "step.handle",
            "step.error",
            "task.finalize",
            "task.error",
            "task.start",
            "task.handle",
            "step.handle",
            "step.complete",
            "task.finalize",
            "task.complete",
        ]
    );
    assert_eq!(assert_valid_tasks(&recorder.events()), 1);
    recorder.assert_nothing_open();
}
