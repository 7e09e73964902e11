//! A committed completion's terminal event is never lost, and a reported one is not repeated:
//! scenarios with three runtimes, each with its own connection to one database (as three
//! processes would have), run by each durable backend's test binary.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tasker::queue::{Completion, Envelope, Queue, TerminalEvent};
use tasker::telemetry::Event;
use tasker::{Runtime, TaskRequest};

/// The lease of the runtimes that look for unreported events: they look at start and then once
/// per lease, for events unreported for longer than a lease.
const LEASE: Duration = Duration::from_millis(200);

#[tasker::task(name = "suite_terminal", version = "1.0.0")]
async fn suite_terminal(n: u64) -> Result<u64, String> {
    Ok(n * 2)
}

/// The terminal events (`task.complete`, `task.error`) observers receive, of every task: the
/// test reads those of its task, whose id it may learn after a worker finished it.
struct Terminals {
    events: Arc<Mutex<Vec<Event<'static>>>>,
    _subscription: tasker::events::Subscription,
}

impl Terminals {
    fn observe() -> Terminals {
        let events = Arc::new(Mutex::new(Vec::new()));
        let kept = events.clone();
        let subscription = tasker::events::subscribe(move |event: &Event<'_>| {
            if matches!(event.name(), "task.complete" | "task.error") {
                kept.lock().unwrap().push(event.clone().into_owned());
            }
        });
        Terminals {
            events,
            _subscription: subscription,
        }
    }

    /// The terminal events of task `task_id` so far.
    fn of(&self, task_id: uuid::Uuid) -> Vec<Event<'static>> {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter(|event| event.task_id() == Some(task_id))
            .cloned()
            .collect()
    }

    /// Waits (at most 10 s) for the first terminal event of task `task_id`.
    async fn wait_for_one(&self, task_id: uuid::Uuid, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.of(task_id).is_empty() {
            assert!(
                Instant::now() < deadline,
                "waited 10 s for {what} of task {task_id}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A runtime with one worker on `queue` that looks for unreported events every [`LEASE`].
fn runtime_on(queue: Arc<dyn Queue>) -> Runtime {
    Runtime::builder()
        .workers(1)
        .lease(LEASE)
        .shared_queue(queue)
        .build()
        .unwrap()
}

/// A worker commits a task's completion with its `task.error` and dies before emitting it (the
/// test completes the claim through the queue itself and emits nothing): a second runtime on
/// the same database emits that event once, with the stored event id, task id, timestamp and
/// payload; a third one, started afterwards, does not emit it again.
pub async fn an_unreported_completion_is_emitted_once_by_another_runtime(
    queues: [Arc<dyn Queue>; 3],
) {
    let [first, second, third] = queues;
    let envelope = Envelope::new("suite_terminal", "1.0.0", json!(5));
    let task_id = envelope.task_id;
    let terminals = Terminals::observe();
    first.push(envelope).await.unwrap();
    let claim = first
        .claim(Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let event_id: uuid::Uuid = "01920000-0000-7000-8000-0000000000e1".parse().unwrap();
    let stored = TerminalEvent {
        event_id,
        task_id,
        task_name: "suite_terminal".to_owned(),
        task_version: "1.0.0".to_owned(),
        succeeded: false,
        timestamp_ns: 1_764_086_400_123_456_789,
        duration_ns: 12_345_678,
        error_class: Some("suite::OrderError".to_owned()),
        error_message: Some("order 5 is empty".to_owned()),
        error_steps: vec!["suite_pack".to_owned()],
    };
    let completion = Completion {
        succeeded: false,
        output: None,
        error: Some("order 5 is empty".to_owned()),
    };
    first
        .complete_reporting(claim.lease, &completion, Some(&stored))
        .await
        .unwrap();
    assert!(terminals.of(task_id).is_empty(), "nothing emitted it yet");

    let recovering = runtime_on(second);
    terminals
        .wait_for_one(
            task_id,
            "the unreported task.error, emitted by the second runtime",
        )
        .await;
    // Two more looks, which find nothing left.
    tokio::time::sleep(LEASE * 2 + LEASE / 2).await;
    recovering.shutdown().await;
    let expected = json!({
        "event": "task.error",
        "event_id": "01920000-0000-7000-8000-0000000000e1",
        "timestamp": "2025-11-25T16:00:00.123456Z",
        "task_id": task_id.to_string(),
        "task_name": "suite_terminal",
        "task_version": "1.0.0",
        "duration_ms": 12.345,
        "error_class": "suite::OrderError",
        "error_message": "order 5 is empty",
        "error_steps": ["suite_pack"],
    });
    let emitted = terminals.of(task_id);
    assert_eq!(
        emitted.iter().map(Event::to_json).collect::<Vec<_>>(),
        std::slice::from_ref(&expected)
    );
    assert_eq!(emitted[0].event_id(), Some(event_id));
    assert_eq!(emitted[0].task_id(), Some(task_id));
    assert_eq!(
        emitted[0].timestamp(),
        std::time::UNIX_EPOCH + Duration::from_nanos(1_764_086_400_123_456_789)
    );
    assert_eq!(
        emitted[0].duration(),
        Some(Duration::from_nanos(12_345_678))
    );

    let later = runtime_on(third);
    tokio::time::sleep(LEASE * 3).await;
    later.shutdown().await;
    assert_eq!(
        terminals
            .of(task_id)
            .iter()
            .map(Event::to_json)
            .collect::<Vec<_>>(),
        [expected],
        "the third runtime emitted it again"
    );
}

/// Twenty completions committed with their terminal events and never emitted, left longer than
/// a lease: two runtimes that start together and look for them at the same moment emit each
/// one exactly once between them.
pub async fn runtimes_looking_at_once_emit_each_unreported_event_once(queues: [Arc<dyn Queue>; 2]) {
    const TASKS: usize = 20;
    let [first, second] = queues;
    let terminals = Terminals::observe();
    let mut task_ids = Vec::new();
    for n in 0..TASKS as u64 {
        let envelope = Envelope::new("suite_terminal", "1.0.0", json!(n));
        let task_id = envelope.task_id;
        first.push(envelope).await.unwrap();
        let claim = first
            .claim(Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        let stored = TerminalEvent {
            event_id: uuid::Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0100 + n as u128),
            task_id,
            task_name: "suite_terminal".to_owned(),
            task_version: "1.0.0".to_owned(),
            succeeded: true,
            timestamp_ns: 1_764_086_400_000_000_000 + n,
            duration_ns: 1_000_000,
            error_class: None,
            error_message: None,
            error_steps: Vec::new(),
        };
        let completion = Completion {
            succeeded: true,
            output: Some(json!(n * 2)),
            error: None,
        };
        first
            .complete_reporting(claim.lease, &completion, Some(&stored))
            .await
            .unwrap();
        task_ids.push((task_id, stored.event_id));
    }
    // Old enough for the first look of each runtime, which both make as they start.
    tokio::time::sleep(LEASE + LEASE / 2).await;
    let racing = [runtime_on(first), runtime_on(second)];
    for (task_id, _) in &task_ids {
        terminals
            .wait_for_one(*task_id, "the unreported task.complete")
            .await;
    }
    tokio::time::sleep(LEASE * 2 + LEASE / 2).await;
    for runtime in racing {
        runtime.shutdown().await;
    }
    for (task_id, event_id) in task_ids {
        let emitted = terminals.of(task_id);
        assert_eq!(
            emitted
                .iter()
                .map(|event| (event.name(), event.event_id()))
                .collect::<Vec<_>>(),
            [("task.complete", Some(event_id))],
            "task {task_id}"
        );
    }
}

/// A worker that emits a task's terminal event marks it reported: another runtime on the same
/// database, looking for unreported events long after, emits nothing for it.
pub async fn a_reported_terminal_event_is_not_emitted_again(queues: [Arc<dyn Queue>; 2]) {
    let [first, second] = queues;
    let terminals = Terminals::observe();
    let worker = runtime_on(first);
    let handle = worker
        .enqueue(TaskRequest::new("suite_terminal", &21u64).unwrap())
        .await
        .unwrap();
    let task_id = handle.task_id();
    assert_eq!(handle.wait().await, Ok(json!(42)));
    worker.shutdown().await;
    let emitted = terminals.of(task_id);
    assert_eq!(
        emitted.iter().map(Event::name).collect::<Vec<_>>(),
        ["task.complete"]
    );
    let event_id = emitted[0].event_id();
    assert!(
        event_id.is_some(),
        "a queued task's terminal event has an id"
    );

    let later = runtime_on(second);
    tokio::time::sleep(LEASE * 3).await;
    later.shutdown().await;
    let again = terminals.of(task_id);
    assert_eq!(again.len(), 1, "emitted again: {again:#?}");
    assert_eq!(again[0].event_id(), event_id);
}

/// A stored `task.complete` of task `n`, event id `1000 + n`, as a worker that died before
/// emitting it would have left it.
pub fn stored_terminal(n: u128) -> TerminalEvent {
    TerminalEvent {
        event_id: uuid::Uuid::from_u128(1000 + n),
        task_id: uuid::Uuid::from_u128(n),
        task_name: "t".to_owned(),
        task_version: "1".to_owned(),
        succeeded: true,
        timestamp_ns: 1,
        duration_ns: 1,
        error_class: None,
        error_message: None,
        error_steps: Vec::new(),
    }
}

/// An emitter that keeps the event ids it is given, `delay` apart (a slow adapter).
pub fn recording_emitter(
    delay: Duration,
) -> (tasker::queue::EmitTerminal, Arc<Mutex<Vec<uuid::Uuid>>>) {
    let emitted = Arc::new(Mutex::new(Vec::new()));
    let kept = emitted.clone();
    let emit: tasker::queue::EmitTerminal = Arc::new(move |event: &TerminalEvent| {
        std::thread::sleep(delay);
        kept.lock().unwrap().push(event.event_id);
    });
    (emit, emitted)
}
