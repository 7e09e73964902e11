//! Checkpoints with telemetry off. A plain step (one attempt, no skip, no timeout) runs its body
//! alone when nothing observes it; inside a task that keeps checkpoints it must still record and
//! replay its output. This binary has no observer, no adapter and no `tracing` subscriber, so
//! every step here takes that path: the task is delivered again after its first worker died, and
//! the steps that completed before are replayed, not run again.
#![cfg(feature = "sqlite")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tasker::queue::{Queue, SqliteQueue};
use tasker::{Runtime, TaskRequest};

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

#[tasker::task(name = "quiet_checkpointed_order", version = "1.0.0")]
async fn order(order: u32) -> Result<String, String> {
    let reservation = reserve(order).await?;
    let receipt = charge(order).await;
    let parcel = ship(order).await?;
    Ok(format!("{parcel}/{reservation}/{receipt}"))
}

/// Removes the test's directory, even when the test fails.
struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn with_telemetry_off_a_redelivered_task_still_replays_its_completed_steps() {
    assert!(
        !tasker::events::listening(),
        "this binary must have no observer: the quiet path is what it tests"
    );
    let dir = std::env::temp_dir().join(format!("tasker-checkpoints-quiet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _remove = RemoveDir(dir.clone());
    let path = dir.join("queue.db");

    // The first worker runs `reserve` and `charge`, then dies inside `ship`.
    let first = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let task_id = first.block_on(async {
        let queue = Arc::new(SqliteQueue::open(&path).await.unwrap());
        let runtime = Runtime::builder()
            .workers(1)
            .lease(Duration::from_millis(300))
            .shared_queue(queue as Arc<dyn Queue>)
            .build()
            .unwrap();
        let handle = runtime
            .enqueue(TaskRequest::new("quiet_checkpointed_order", &7u32).unwrap())
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while SHIPPED.load(Ordering::SeqCst) == 0 {
            assert!(
                Instant::now() < deadline,
                "the first worker never reached `ship`"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Stuck in `ship`: tear the worker down, as a crash would.
        std::mem::forget(runtime);
        handle.task_id()
    });
    first.shutdown_timeout(Duration::from_secs(5));
    assert_eq!(
        (
            RESERVED.load(Ordering::SeqCst),
            CHARGED.load(Ordering::SeqCst)
        ),
        (1, 1),
        "the first worker ran the first two steps"
    );

    // A second worker takes the task once the lease has expired and finishes it.
    let second = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let completion = second.block_on(async {
        let queue = Arc::new(SqliteQueue::open(&path).await.unwrap());
        let runtime = Runtime::builder()
            .workers(1)
            .shared_queue(queue.clone() as Arc<dyn Queue>)
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let completion = loop {
            if let Some(completion) = queue.result(task_id).await.unwrap() {
                break completion;
            }
            assert!(
                Instant::now() < deadline,
                "the second worker never finished the task"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        runtime.shutdown().await;
        completion
    });

    assert!(completion.succeeded, "the task succeeded: {completion:?}");
    assert_eq!(
        completion.output,
        Some(serde_json::json!("parcel-7/70/700")),
        "the replayed outputs are the recorded ones"
    );
    assert_eq!(
        RESERVED.load(Ordering::SeqCst),
        1,
        "reserve was replayed, not run"
    );
    assert_eq!(
        CHARGED.load(Ordering::SeqCst),
        1,
        "charge was replayed, not run"
    );
    assert_eq!(SHIPPED.load(Ordering::SeqCst), 2, "ship ran again");
}
