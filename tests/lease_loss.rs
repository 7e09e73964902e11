//! A worker that loses a running task's lease stops running it: the task's run reports no end
//! (no `task.finalize`, `task.complete` or `task.error`), observers hear of the abandonment, and
//! the worker says so once in its log. A renewal that fails for a database error is retried
//! until the lease would have ended. (The same on SQLite and PostgreSQL: `tests/queue_suite`.)

mod support;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::task_log::{Observe, TaskLog};
use support::LogBuffer as Log;
use tasker::queue::{
    BoxFuture, Claim, Completion, Envelope, LeaseId, MemoryQueue, Queue, QueueError,
};
use tasker::{Runtime, TaskRequest};

/// What a [`Renewals`] queue does with renewals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// They reach the queue.
    Pass,
    /// They succeed without reaching the queue: the lease ends there unnoticed.
    HeldBack,
    /// They fail with a database error.
    Failing,
}

/// A [`MemoryQueue`] whose renewals the test controls, counting them.
struct Renewals {
    queue: MemoryQueue,
    mode: Mutex<Mode>,
    /// Renewals asked for, in any mode.
    asked: AtomicU32,
    /// In [`Mode::Failing`], how many fail before the mode goes back to [`Mode::Pass`] (0: all).
    failures_left: AtomicU32,
}

impl Renewals {
    fn new(mode: Mode) -> Arc<Self> {
        Arc::new(Renewals {
            queue: MemoryQueue::new(),
            mode: Mutex::new(mode),
            asked: AtomicU32::new(0),
            failures_left: AtomicU32::new(0),
        })
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

impl Queue for Renewals {
    fn name(&self) -> &str {
        self.queue.name()
    }
    fn push(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), QueueError>> {
        self.queue.push(envelope)
    }
    fn claim(
        &self,
        lease: Duration,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Option<Claim>, QueueError>> {
        self.queue.claim(lease, wait)
    }
    fn renew(&self, lease: LeaseId, duration: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Pass => self.queue.renew(lease, duration),
            Mode::HeldBack => Box::pin(std::future::ready(Ok(()))),
            Mode::Failing => {
                let left = self.failures_left.load(Ordering::SeqCst);
                if left == 1 {
                    self.set(Mode::Pass);
                }
                if left > 0 {
                    self.failures_left.store(left - 1, Ordering::SeqCst);
                }
                Box::pin(std::future::ready(Err(QueueError::Backend(
                    "connection refused".to_owned(),
                ))))
            }
        }
    }
    fn acknowledge(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), QueueError>> {
        self.queue.acknowledge(lease)
    }
    fn complete(
        &self,
        lease: LeaseId,
        completion: &Completion,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        self.queue.complete(lease, completion)
    }
    fn requeue(&self, lease: LeaseId, delay: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
        self.queue.requeue(lease, delay)
    }
}

/// Set by a test to let its waiting step finish.
static RELEASE: AtomicBool = AtomicBool::new(false);

#[tasker::step(max_attempts = 1)]
async fn reserve(order: u32) -> u32 {
    order * 10
}

#[tasker::step(max_attempts = 1)]
async fn wait_for_ever(reservation: u32) -> u32 {
    std::future::pending::<()>().await;
    reservation
}

/// Waits until its renewals queue has seen `renewals` of them.
#[tasker::step(max_attempts = 1)]
async fn wait_for_renewals(queue: &Renewals, renewals: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    while queue.asked.load(Ordering::SeqCst) < renewals {
        assert!(
            Instant::now() < deadline,
            "waited 30 s for {renewals} renewals"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    renewals
}

#[tasker::task(name = "lease_lost_async", version = "1.0.0")]
async fn lease_lost_async(order: u32) -> u32 {
    let reservation = reserve(order).await;
    wait_for_ever(reservation).await
}

#[tasker::step(max_attempts = 1)]
fn block_until_released(order: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !RELEASE.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    order
}

#[tasker::task(name = "lease_lost_sync", version = "1.0.0")]
fn lease_lost_sync(order: u32) -> u32 {
    block_until_released(order)
}

/// The queue the `renewals_then_finish` task's step watches: set by its test.
static WATCHED: Mutex<Option<Arc<Renewals>>> = Mutex::new(None);

#[tasker::task(name = "renewals_then_finish", version = "1.0.0")]
async fn renewals_then_finish(renewals: u32) -> u32 {
    let queue = WATCHED.lock().unwrap().clone().expect("a watched queue");
    wait_for_renewals(&queue, renewals).await
}

/// Waits (at most 30 s) until `done` holds.
async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "waited 30 s for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A subscriber writing the worker's log to `log`: the tests run their workers on the test's
/// one thread, where it is the default.
fn capture(log: &Log) -> tracing::subscriber::DefaultGuard {
    tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(log.clone())
            .with_ansi(false)
            .without_time()
            .finish(),
    )
}

/// Starts a worker on `queue` with a 300 ms lease, enqueues `request`, and logs its task.
async fn start(queue: &Arc<Renewals>, request: TaskRequest, log: &Arc<TaskLog>) -> Runtime {
    let worker = Runtime::builder()
        .workers(1)
        .lease(Duration::from_millis(300))
        .shared_queue(queue.clone())
        .build()
        .unwrap();
    let handle = worker.enqueue(request).await.unwrap();
    *log.task_id.lock().unwrap() = Some(handle.task_id());
    worker
}

#[tokio::test]
async fn a_worker_whose_lease_is_taken_stops_the_task_and_says_so_once() {
    let output = Log::default();
    let _log = capture(&output);
    let log = Arc::new(TaskLog::default());
    let _subscription = tasker::events::subscribe(Observe(log.clone()));
    let queue = Renewals::new(Mode::HeldBack);
    let worker = start(
        &queue,
        TaskRequest::new("lease_lost_async", &4u32).unwrap(),
        &log,
    )
    .await;
    wait_for("the second step to start", || {
        log.lines()
            .iter()
            .any(|line| line == "step.handle wait_for_ever")
    })
    .await;
    // The lease ends unrenewed and another claimer takes the task over.
    let thief = queue
        .claim(Duration::from_secs(30), Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the expired lease hands the task out again");
    assert_eq!(thief.envelope.delivery_attempt, 2);
    queue.set(Mode::Pass);
    wait_for("the worker to stop the task", || {
        !log.abandoned().is_empty()
    })
    .await;
    queue.acknowledge(thief.lease).await.unwrap();
    worker.shutdown().await;
    assert_eq!(
        log.lines(),
        [
            "task.start",
            "task.handle",
            "step.handle reserve",
            "step.complete reserve",
            "step.handle wait_for_ever",
            "step.error wait_for_ever tasker::Cancelled",
        ]
    );
    assert_eq!(log.abandoned().len(), 1);
    let said = output.lines_containing(&thief.envelope.task_id.to_string());
    assert_eq!(said.len(), 1, "said once: {said:#?}");
    assert!(said[0].contains("WARN tasker"), "{}", said[0]);
    assert!(
        said[0].contains("this worker stopped task")
            && said[0].contains("(delivery 1)")
            && said[0]
                .contains("its lease expired and another worker may have taken the task over"),
        "{}",
        said[0]
    );
}

#[tokio::test]
async fn a_sync_task_whose_lease_is_taken_finishes_on_its_thread_and_reports_no_end() {
    let output = Log::default();
    let _log = capture(&output);
    let log = Arc::new(TaskLog::default());
    let _subscription = tasker::events::subscribe(Observe(log.clone()));
    let queue = Renewals::new(Mode::HeldBack);
    let worker = start(
        &queue,
        TaskRequest::new("lease_lost_sync", &5u32).unwrap(),
        &log,
    )
    .await;
    wait_for("the step to start", || {
        log.lines()
            .iter()
            .any(|line| line == "step.handle block_until_released")
    })
    .await;
    let thief = queue
        .claim(Duration::from_secs(30), Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the expired lease hands the task out again");
    queue.set(Mode::Pass);
    let task_id = thief.envelope.task_id;
    wait_for("the worker to give the task up", || {
        !output.lines_containing(&task_id.to_string()).is_empty()
    })
    .await;
    // A sync task cannot be interrupted: it finishes on its thread, and reports no end.
    assert_eq!(log.abandoned().len(), 0);
    RELEASE.store(true, Ordering::SeqCst);
    wait_for("the sync task to finish", || !log.abandoned().is_empty()).await;
    queue.acknowledge(thief.lease).await.unwrap();
    worker.shutdown().await;
    assert_eq!(
        log.lines(),
        [
            "task.start",
            "task.handle",
            "step.handle block_until_released",
            "step.complete block_until_released",
        ]
    );
    assert_eq!(log.abandoned().len(), 1);
    assert_eq!(output.lines_containing(&task_id.to_string()).len(), 1);
}

#[tokio::test]
async fn a_renewal_that_fails_for_a_while_is_retried_and_the_task_finishes() {
    let output = Log::default();
    let _log = capture(&output);
    let log = Arc::new(TaskLog::default());
    let _subscription = tasker::events::subscribe(Observe(log.clone()));
    // The first renewal fails; the second, a third of the lease later, succeeds, well before
    // the lease would end.
    let queue = Renewals::new(Mode::Failing);
    queue.failures_left.store(1, Ordering::SeqCst);
    *WATCHED.lock().unwrap() = Some(queue.clone());
    let worker = Runtime::builder()
        .workers(1)
        .lease(Duration::from_millis(600))
        .shared_queue(queue.clone())
        .build()
        .unwrap();
    let handle = worker
        .enqueue(TaskRequest::new("renewals_then_finish", &4u32).unwrap())
        .await
        .unwrap();
    let task_id = handle.task_id();
    *log.task_id.lock().unwrap() = Some(task_id);
    assert_eq!(
        support::within("the task's outcome", handle.wait())
            .await
            .unwrap(),
        serde_json::json!(4)
    );
    worker.shutdown().await;
    assert_eq!(
        log.lines(),
        [
            "task.start",
            "task.handle",
            "step.handle wait_for_renewals",
            "step.complete wait_for_renewals",
            "task.finalize",
            "task.complete",
        ]
    );
    assert_eq!(log.abandoned().len(), 0);
    let said = output.lines_containing(&task_id.to_string());
    assert_eq!(said.len(), 1, "{said:#?}");
    assert!(
        said[0].contains("could not renew the lease of task")
            && said[0].contains("connection refused")
            && said[0].contains("retrying at each renewal until the lease would end"),
        "{}",
        said[0]
    );
}

#[tokio::test]
async fn renewals_that_fail_until_the_lease_would_end_stop_the_task() {
    let output = Log::default();
    let _log = capture(&output);
    let log = Arc::new(TaskLog::default());
    let _subscription = tasker::events::subscribe(Observe(log.clone()));
    let queue = Renewals::new(Mode::Failing);
    let worker = start(
        &queue,
        TaskRequest::new("lease_lost_async", &6u32).unwrap(),
        &log,
    )
    .await;
    wait_for("the worker to stop the task", || {
        !log.abandoned().is_empty()
    })
    .await;
    // The stopped task's lease has ended: the worker may take it again before it shuts down,
    // and then stops that delivery the same way.
    worker.shutdown().await;
    let lines = log.lines();
    let run = [
        "task.start",
        "task.handle",
        "step.handle reserve",
        "step.complete reserve",
        "step.handle wait_for_ever",
        "step.error wait_for_ever tasker::Cancelled",
    ];
    assert!(
        !lines.is_empty() && lines.chunks(run.len()).all(|chunk| chunk == run),
        "each delivery ran up to the waiting step and was stopped there: {lines:#?}"
    );
    let runs = lines.len() / run.len();
    assert_eq!(log.abandoned().len(), runs);
    assert!(
        queue.asked.load(Ordering::SeqCst) >= 2,
        "renewals were retried before the lease would end"
    );
    let task_id = log.task_id.lock().unwrap().unwrap();
    let said = output.lines_containing(&task_id.to_string());
    assert_eq!(said.len(), 2 * runs, "{said:#?}");
    for said in said.chunks(2) {
        assert!(
            said[0].contains("could not renew the lease of task"),
            "{}",
            said[0]
        );
        assert!(
            said[1].contains("this worker stopped task")
                && said[1].contains(
                    "its lease could not be renewed before it ended (last error: queue backend \
                     error: connection refused)"
                ),
            "{}",
            said[1]
        );
    }
}
