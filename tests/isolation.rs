//! A task whose lease expired (a *suspect*) runs alone in its process: a worker claims it only
//! once the process's other runs ended, and the process claims nothing else until it ends
//! (`Isolation`, the runtime's process-wide gate). The queue here hands its suspect only to a
//! claimer that says it runs alone, as the durable queues do (`tests/queue_suite`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tasker::queue::{
    BoxFuture, Claim, Completion, Envelope, Isolation, LeaseId, MemoryQueue, Queue, QueueError,
    RunTrace,
};
use tasker::{Runtime, TaskRequest};

/// Marks the leases of [`Suspects::suspects`], to route calls to the queue that issued them.
const SUSPECT_LEASE: u128 = 1 << 100;

/// A [`MemoryQueue`] of ordinary envelopes, and one of suspects that only a claimer running
/// alone is handed.
#[derive(Default)]
struct Suspects {
    queue: MemoryQueue,
    suspects: MemoryQueue,
    /// Whether the queue has said a suspect waits.
    said: AtomicBool,
}

impl Suspects {
    fn route(&self, lease: LeaseId) -> (&MemoryQueue, LeaseId) {
        if lease.0 & SUSPECT_LEASE != 0 {
            (&self.suspects, LeaseId(lease.0 & !SUSPECT_LEASE))
        } else {
            (&self.queue, lease)
        }
    }
}

impl Queue for Suspects {
    fn name(&self) -> &str {
        "suspects"
    }
    fn push(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), QueueError>> {
        self.queue.push(envelope)
    }
    fn claim(
        &self,
        lease: Duration,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Option<Claim>, QueueError>> {
        self.claim_isolated(lease, wait, Isolation::Alone)
    }
    fn claim_isolated(
        &self,
        lease: Duration,
        wait: Duration,
        isolation: Isolation,
    ) -> BoxFuture<'_, Result<Option<Claim>, QueueError>> {
        Box::pin(async move {
            if isolation == Isolation::Alone {
                if let Some(mut claim) = self.suspects.claim(lease, Duration::ZERO).await? {
                    claim.lease = LeaseId(claim.lease.0 | SUSPECT_LEASE);
                    return Ok(Some(claim));
                }
            }
            self.queue.claim(lease, wait).await
        })
    }
    fn suspects_waiting(&self) -> BoxFuture<'_, Result<bool, QueueError>> {
        let waiting = self.suspects.pending() > 0;
        if waiting {
            self.said.store(true, Ordering::SeqCst);
        }
        Box::pin(std::future::ready(Ok(waiting)))
    }
    fn renew(&self, lease: LeaseId, duration: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
        let (queue, lease) = self.route(lease);
        queue.renew(lease, duration)
    }
    fn acknowledge(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), QueueError>> {
        let (queue, lease) = self.route(lease);
        queue.acknowledge(lease)
    }
    fn complete(
        &self,
        lease: LeaseId,
        completion: &Completion,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        let (queue, lease) = self.route(lease);
        queue.complete(lease, completion)
    }
    fn requeue(&self, lease: LeaseId, delay: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
        let (queue, lease) = self.route(lease);
        queue.requeue(lease, delay)
    }
    fn record_run(&self, lease: LeaseId, run: &RunTrace) -> BoxFuture<'_, Result<(), QueueError>> {
        let (queue, lease) = self.route(lease);
        queue.record_run(lease, run)
    }
}

/// The labels whose [`held`] task may finish.
static RELEASED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn release(label: &str) {
    RELEASED
        .lock()
        .unwrap()
        .get_or_insert_with(HashSet::new)
        .insert(label.to_owned());
}

/// Runs until the test releases its label.
#[tasker::task(name = "isolation_held", version = "1.0.0")]
async fn held(label: String) -> String {
    while !RELEASED
        .lock()
        .unwrap()
        .as_ref()
        .is_some_and(|released| released.contains(&label))
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    label
}

/// `task.start` and `task.complete` of the test's tasks, by label, in order. Events are kept
/// with their task id and labelled when read: a worker may start a task before `enqueue`
/// returns its id.
#[derive(Default)]
struct Starts {
    labels: Mutex<HashMap<uuid::Uuid, String>>,
    events: Mutex<Vec<(uuid::Uuid, &'static str)>>,
}

impl Starts {
    fn lines(&self) -> Vec<String> {
        let labels = self.labels.lock().unwrap();
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(id, name)| Some(format!("{name} {}", labels.get(id)?)))
            .collect()
    }

    /// Waits (ten seconds at most) until `line` was seen.
    async fn wait_for(&self, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.lines().iter().any(|seen| seen == line) {
            assert!(
                Instant::now() < deadline,
                "no `{line}` in {:?}",
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The tests of this binary one at a time: the gate they exercise is process-wide.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Subscribes `starts` to the task starts and completions of every task.
fn observe(starts: &Arc<Starts>) -> tasker::events::Subscription {
    let starts = starts.clone();
    tasker::events::subscribe(move |event: &tasker::telemetry::Event<'_>| {
        let name = match event.name() {
            "task.start" => "task.start",
            "task.complete" => "task.complete",
            _ => return,
        };
        if let Some(id) = event.task_id() {
            starts.events.lock().unwrap().push((id, name));
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspect_runs_once_its_process_drained_and_nothing_else_runs_beside_it() {
    let _serial = SERIAL.lock().await;
    let starts = Arc::new(Starts::default());
    let _subscription = tasker::events::subscribe({
        let starts = starts.clone();
        move |event: &tasker::telemetry::Event<'_>| {
            let name = match event.name() {
                "task.start" => "task.start",
                "task.complete" => "task.complete",
                _ => return,
            };
            if let Some(id) = event.task_id() {
                starts.events.lock().unwrap().push((id, name));
            }
        }
    });
    let queue = Arc::new(Suspects::default());
    let runtime = Runtime::builder()
        .workers(3)
        .shared_queue(queue.clone())
        .build()
        .unwrap();
    let enqueue = |label: &'static str| {
        let (runtime, starts) = (&runtime, starts.clone());
        async move {
            let handle = runtime
                .enqueue(TaskRequest::new("isolation_held", &label).unwrap())
                .await
                .unwrap();
            let mut labels = starts.labels.lock().unwrap();
            labels.insert(handle.task_id(), label.to_owned());
        }
    };
    // Two tasks run beside each other; a third worker is free.
    enqueue("a").await;
    starts.wait_for("task.start a").await;
    enqueue("b").await;
    starts.wait_for("task.start b").await;
    // A suspect appears: a worker waits for the process to drain, which claims nothing new.
    let suspect = Envelope::new("isolation_held", "1.0.0", json!("suspect"));
    let labels = HashMap::from([(suspect.task_id, "suspect".to_owned())]);
    starts.labels.lock().unwrap().extend(labels);
    queue.suspects.push(suspect).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !queue.said.load(Ordering::SeqCst) {
        assert!(
            !starts.lines().contains(&"task.start suspect".to_owned()),
            "the suspect started beside `a` and `b`: {:?}",
            starts.lines()
        );
        assert!(Instant::now() < deadline, "no worker asked for suspects");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    enqueue("c").await;
    release("a");
    starts.wait_for("task.complete a").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        starts.lines(),
        ["task.start a", "task.start b", "task.complete a"],
        "the process drains: nothing starts while `b` still runs"
    );
    release("b");
    starts.wait_for("task.start suspect").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        starts.lines(),
        [
            "task.start a",
            "task.start b",
            "task.complete a",
            "task.complete b",
            "task.start suspect",
        ],
        "the suspect runs alone: `c` waits"
    );
    release("suspect");
    release("c");
    starts.wait_for("task.complete c").await;
    assert_eq!(
        starts.lines(),
        [
            "task.start a",
            "task.start b",
            "task.complete a",
            "task.complete b",
            "task.start suspect",
            "task.complete suspect",
            "task.start c",
            "task.complete c",
        ]
    );
    runtime.shutdown().await;
}

/// A run that outlasts the drain budget (a third of the lease) does not hold the process's
/// claims for a whole lease: after the budget the process claims again (a task enqueued
/// meanwhile starts beside the long run) and takes the suspect later, once it can drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_that_outlasts_its_budget_hands_the_suspect_over_and_claims_again() {
    let _serial = SERIAL.lock().await;
    let starts = Arc::new(Starts::default());
    let _subscription = observe(&starts);
    let queue = Arc::new(Suspects::default());
    let lease = Duration::from_secs(3);
    let runtime = Runtime::builder()
        .workers(3)
        .lease(lease)
        .shared_queue(queue.clone())
        .build()
        .unwrap();
    let enqueue = |label: &'static str| {
        let (runtime, starts) = (&runtime, starts.clone());
        async move {
            let handle = runtime
                .enqueue(TaskRequest::new("isolation_held", &label).unwrap())
                .await
                .unwrap();
            let mut labels = starts.labels.lock().unwrap();
            labels.insert(handle.task_id(), label.to_owned());
        }
    };
    enqueue("long").await;
    starts.wait_for("task.start long").await;
    let suspect = Envelope::new("isolation_held", "1.0.0", json!("late suspect"));
    let labels = HashMap::from([(suspect.task_id, "late suspect".to_owned())]);
    starts.labels.lock().unwrap().extend(labels);
    queue.suspects.push(suspect).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !queue.said.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "no worker asked for suspects");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let asked = Instant::now();
    enqueue("meanwhile").await;
    starts.wait_for("task.start meanwhile").await;
    let waited = asked.elapsed();
    // The budget is 1 s; before, claims waited the whole lease (3 s).
    assert!(
        waited < Duration::from_secs(2),
        "claims waited {waited:?} for a drain"
    );
    release("long");
    starts.wait_for("task.complete long").await;
    release("meanwhile");
    starts.wait_for("task.complete meanwhile").await;
    starts.wait_for("task.start late suspect").await;
    release("late suspect");
    starts.wait_for("task.complete late suspect").await;
    assert_eq!(
        starts.lines(),
        [
            "task.start long",
            "task.start meanwhile",
            "task.complete long",
            "task.complete meanwhile",
            "task.start late suspect",
            "task.complete late suspect",
        ]
    );
    runtime.shutdown().await;
}
