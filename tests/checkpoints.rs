//! Step checkpoints: a step's checkpoint is durable before its `step.complete` is emitted, and a
//! task delivered again after its worker died replays the steps that completed (`step.skip`
//! with reason `replayed`, returning their recorded outputs) and runs the rest, on each durable
//! queue.
#![cfg(all(feature = "sqlite", feature = "postgres"))]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tasker::queue::{BoxFuture, Claim, Envelope, LeaseId, MemoryQueue, Queue, QueueError};
use tasker::queue::{CheckpointError, Checkpoints};
use tasker::telemetry::{Details, Event};
use tasker::{Runtime, TaskRequest};

/// The scenario, written once: the first worker enqueues the task, runs two steps and dies in
/// the third (its Tokio runtime is torn down); a second worker on the same database takes the
/// task once the lease has expired. `$open` makes a queue on the shared database.
macro_rules! scenario {
    ($module:ident, $task:literal, $open:expr, $cleanup:expr) => {
        mod $module {
            use super::*;
            use std::sync::atomic::{AtomicU32, Ordering};

            static RESERVED: AtomicU32 = AtomicU32::new(0);
            static CHARGED: AtomicU32 = AtomicU32::new(0);
            static SHIPPED: AtomicU32 = AtomicU32::new(0);

            #[tasker::step(max_attempts = 1)]
            async fn reserve(order: u32) -> Result<u32, String> {
                RESERVED.fetch_add(1, Ordering::SeqCst);
                Ok(order * 10)
            }

            #[tasker::step(max_attempts = 1)]
            async fn charge(order: u32) -> u32 {
                CHARGED.fetch_add(1, Ordering::SeqCst);
                order * 100
            }

            #[tasker::step(max_attempts = 1)]
            async fn ship(order: u32) -> Result<String, String> {
                if SHIPPED.fetch_add(1, Ordering::SeqCst) == 0 {
                    // The first worker dies here.
                    std::future::pending::<()>().await;
                }
                Ok(format!("parcel-{order}"))
            }

            #[tasker::task(name = $task, version = "1.0.0")]
            async fn order(order: u32) -> Result<String, String> {
                let reservation = reserve(order).await?;
                let receipt = charge(order).await;
                let parcel = ship(order).await?;
                Ok(format!("{parcel}/{reservation}/{receipt}"))
            }

            #[test]
            fn a_redelivered_task_replays_its_completed_steps_and_runs_the_rest() {
                let Some(database) = $open else {
                    eprintln!("skipped: set TASKER_TEST_DATABASE_URL to run it");
                    return;
                };
                let lines = run_and_crash_then_recover(database, $task, &SHIPPED);
                assert_eq!(
                    lines,
                    [
                        "task.start",
                        "task.handle",
                        "step.skip reserve replayed",
                        "step.skip charge replayed",
                        "step.handle ship 1/1",
                        "step.complete ship 1",
                        "task.finalize completed=1 failed=0 skipped=2",
                        "task.complete",
                    ]
                );
                assert_eq!(RESERVED.load(Ordering::SeqCst), 1, "reserve ran once");
                assert_eq!(CHARGED.load(Ordering::SeqCst), 1, "charge ran once");
                assert_eq!(SHIPPED.load(Ordering::SeqCst), 2, "ship ran again");
                $cleanup;
            }
        }
    };
}

/// Where both workers find the queue.
type Open = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Arc<dyn Queue>>>> + Send + Sync,
>;

/// Runs the scenario and returns the second worker's events for the task.
fn run_and_crash_then_recover(
    open: Open,
    task: &'static str,
    shipped: &'static std::sync::atomic::AtomicU32,
) -> Vec<String> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let task_id = Arc::new(Mutex::new(None));
    let subscription = tasker::events::subscribe({
        let (events, task_id) = (events.clone(), task_id.clone());
        move |event: &tasker::telemetry::Event<'_>| {
            if event.task_id().is_some() && event.task_id() == *task_id.lock().unwrap() {
                events.lock().unwrap().push(support::line(event));
            }
        }
    });
    let first = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    first.block_on(async {
        let runtime = Runtime::builder()
            .workers(1)
            .lease(Duration::from_millis(300))
            .shared_queue(open().await)
            .build()
            .unwrap();
        let handle = runtime
            .enqueue(TaskRequest::new(task, &7u32).unwrap())
            .await
            .unwrap();
        *task_id.lock().unwrap() = Some(handle.task_id());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while shipped.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the first worker never reached `ship`"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The worker is stuck in `ship`: tear its process down, as a crash would.
        std::mem::forget(runtime);
    });
    // Tearing the runtime down drops the task: the first worker reports the cancellation.
    first.shutdown_timeout(Duration::from_secs(5));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !events
        .lock()
        .unwrap()
        .iter()
        .any(|line| line.starts_with("task.error tasker::Cancelled"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the first worker's run never ended"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    let second = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let before = events.lock().unwrap().len();
    second.block_on(async {
        let runtime = Runtime::builder()
            .workers(1)
            .shared_queue(open().await)
            .build()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !events.lock().unwrap()[before..]
            .iter()
            .any(|line| line.starts_with("task.complete") || line.starts_with("task.error"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the second worker never finished the task"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        runtime.shutdown().await;
    });
    drop(subscription);
    let all = events.lock().unwrap().clone();
    let second_start = all
        .iter()
        .rposition(|line| line == "task.start")
        .expect("the second worker started the task");
    all[second_start..].to_vec()
}

fn sqlite() -> Option<Open> {
    let dir = std::env::temp_dir().join(format!("tasker-checkpoints-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join("queue.db");
    Some(Arc::new(move || {
        let path = path.clone();
        Box::pin(async move {
            Arc::new(tasker::queue::SqliteQueue::open(&path).await.unwrap()) as Arc<dyn Queue>
        })
    }))
}

fn postgres_schema() -> String {
    format!("tasker_checkpoints_{}", std::process::id())
}

/// Drops the scenario's schema.
fn drop_postgres_schema() {
    let Ok(url) = std::env::var("TASKER_TEST_DATABASE_URL") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, driver) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(driver);
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                postgres_schema()
            ))
            .await
            .unwrap();
        drop(client);
        let _ = driver.await;
    });
}

fn postgres() -> Option<Open> {
    let url = std::env::var("TASKER_TEST_DATABASE_URL").ok()?;
    let schema = postgres_schema();
    Some(Arc::new(move || {
        let (url, schema) = (url.clone(), schema.clone());
        Box::pin(async move {
            let queue = tasker::queue::PostgresQueue::builder(&url)
                .schema(&schema)
                .connect()
                .await
                .unwrap();
            queue.migrate().await.unwrap();
            Arc::new(queue) as Arc<dyn Queue>
        })
    }))
}

scenario!(on_sqlite, "checkpointed_order_sqlite", sqlite(), {
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("tasker-checkpoints-{}", std::process::id())),
    );
});
scenario!(
    on_postgres,
    "checkpointed_order_postgres",
    postgres(),
    drop_postgres_schema()
);

/// Checkpoints kept in memory, each record taking a while to become durable.
#[derive(Default)]
struct SlowCheckpoints {
    /// Durable records: position → (step, output).
    durable: Arc<Mutex<HashMap<u32, (&'static str, serde_json::Value)>>>,
}

impl Checkpoints for SlowCheckpoints {
    fn recorded(&self, position: u32) -> Option<serde_json::Value> {
        let durable = self.durable.lock().unwrap();
        durable.get(&position).map(|(_, output)| output.clone())
    }

    fn record(
        &self,
        position: u32,
        step: &'static str,
        output: serde_json::Value,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), CheckpointError>> + Send + 'static>,
    > {
        let durable = self.durable.clone();
        Box::pin(async move {
            // A write that takes its time, as a database's does.
            tokio::time::sleep(Duration::from_millis(20)).await;
            durable.lock().unwrap().insert(position, (step, output));
            Ok(())
        })
    }
}

/// The checkpoints the test's queue hands out.
static SLOW: Mutex<Option<Arc<SlowCheckpoints>>> = Mutex::new(None);

/// A [`MemoryQueue`] that keeps checkpoints (slowly).
struct CheckpointingQueue(MemoryQueue);

impl Queue for CheckpointingQueue {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn push(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), QueueError>> {
        self.0.push(envelope)
    }
    fn claim(
        &self,
        lease: Duration,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Option<Claim>, QueueError>> {
        self.0.claim(lease, wait)
    }
    fn renew(&self, lease: LeaseId, duration: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
        self.0.renew(lease, duration)
    }
    fn acknowledge(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), QueueError>> {
        self.0.acknowledge(lease)
    }
    fn requeue(&self, lease: LeaseId, delay: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
        self.0.requeue(lease, delay)
    }
    fn checkpoints(
        &self,
        _task_id: uuid::Uuid,
        _lease: LeaseId,
    ) -> BoxFuture<'_, Result<Option<Arc<dyn Checkpoints>>, QueueError>> {
        let checkpoints = SLOW
            .lock()
            .unwrap()
            .clone()
            .map(|c| c as Arc<dyn Checkpoints>);
        Box::pin(std::future::ready(Ok(checkpoints)))
    }
}

static RESERVE_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

#[tasker::step(max_attempts = 2, backoff_ms = 1, jitter = 0.0)]
async fn flaky_reserve(order: u32) -> Result<u32, String> {
    if RESERVE_ATTEMPTS.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err("the warehouse is busy".to_owned());
    }
    Ok(order * 10)
}

#[tasker::step(max_attempts = 1)]
async fn plain_charge(reservation: u32) -> u32 {
    reservation + 1
}

#[tasker::step(max_attempts = 1)]
async fn refuse_shipping(receipt: u32) -> Result<u32, String> {
    Err(format!("receipt {receipt} refused"))
}

#[tasker::task(name = "checkpoint_order", version = "1.0.0")]
async fn checkpoint_order(order: u32) -> Result<u32, String> {
    let reservation = flaky_reserve(order).await?;
    let receipt = plain_charge(reservation).await;
    refuse_shipping(receipt).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steps_checkpoint_is_durable_before_its_step_complete_and_failures_record_nothing() {
    let checkpoints = Arc::new(SlowCheckpoints::default());
    *SLOW.lock().unwrap() = Some(checkpoints.clone());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let task_id = Arc::new(Mutex::new(None));
    // At each step event, whether the step's checkpoint is durable at that moment.
    let subscription = tasker::events::subscribe({
        let (seen, checkpoints) = (seen.clone(), checkpoints.clone());
        move |event: &Event<'_>| {
            // Kept with the task id and filtered at the end: the worker may start the task
            // before the test learns its id.
            let (Some(id), Some(step)) = (event.task_id(), event.step_name()) else {
                return;
            };
            if matches!(
                event.details(),
                Details::StepComplete { .. } | Details::StepError { .. }
            ) {
                let durable = checkpoints
                    .durable
                    .lock()
                    .unwrap()
                    .values()
                    .any(|(name, _)| *name == step);
                seen.lock()
                    .unwrap()
                    .push((id, format!("{} {step} durable={durable}", event.name())));
            }
        }
    });
    let runtime = Runtime::builder()
        .workers(1)
        .queue(CheckpointingQueue(MemoryQueue::new()))
        .build()
        .unwrap();
    let handle = runtime
        .enqueue(TaskRequest::new("checkpoint_order", &4u32).unwrap())
        .await
        .unwrap();
    *task_id.lock().unwrap() = Some(handle.task_id());
    let result = support::within("the task's outcome", handle.wait()).await;
    runtime.shutdown().await;
    drop(subscription);
    assert!(result.is_err(), "shipping is refused: {result:?}");
    let task_id = task_id.lock().unwrap().expect("the task's id");
    let seen: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(id, _)| *id == task_id)
        .map(|(_, line)| line.clone())
        .collect();
    assert_eq!(
        seen,
        [
            "step.error flaky_reserve durable=false",
            "step.complete flaky_reserve durable=true",
            "step.complete plain_charge durable=true",
            "step.error refuse_shipping durable=false",
        ]
    );
    let mut durable: Vec<_> = checkpoints
        .durable
        .lock()
        .unwrap()
        .iter()
        .map(|(position, (step, output))| format!("{position} {step} {output}"))
        .collect();
    durable.sort();
    assert_eq!(durable, ["0 flaky_reserve 40", "1 plain_charge 41"]);
}
