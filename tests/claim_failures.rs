//! A worker whose claims fail says so at once, then counts the failures at most once every
//! 10 s for as long as they last, and says when claims work again.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::LogBuffer as Log;
use tasker::queue::{
    BoxFuture, Claim, Completion, Envelope, LeaseId, MemoryQueue, Queue, QueueError,
};
use tasker::{Runtime, TaskRequest};

/// A [`MemoryQueue`] whose first `failures_left` claims fail, counting them.
struct FailingClaims {
    queue: MemoryQueue,
    failures_left: AtomicU32,
    failed: AtomicU32,
}

impl Queue for FailingClaims {
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
        let failing = self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if !failing {
            return self.queue.claim(lease, wait);
        }
        self.failed.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::ready(Err(QueueError::Backend(
            "the database is down".to_owned(),
        ))))
    }
    fn renew(&self, lease: LeaseId, duration: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
        self.queue.renew(lease, duration)
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

#[tasker::task(name = "claim_failures_echo", version = "1.0.0")]
async fn echo(n: u32) -> u32 {
    n
}

/// The number in `line` between `before` and `after`.
fn number_in(line: &str, before: &str, after: &str) -> u32 {
    let start = line.find(before).map(|at| at + before.len());
    let number = start.and_then(|start| {
        let end = line[start..].find(after)? + start;
        line[start..end].parse().ok()
    });
    number.unwrap_or_else(|| panic!("no number between {before:?} and {after:?} in {line:?}"))
}

/// About 12 s of failing claims (a worker retries every 200 ms): one line at once, one count
/// after 10 s, one line when they work again, then the worker runs tasks as before.
#[tokio::test]
async fn failing_claims_are_reported_at_once_then_counted_every_10_s_until_they_work_again() {
    const FAILURES: u32 = 60;
    let output = Log::default();
    // The worker runs on the test's one thread, where this subscriber is the default.
    let _log = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(output.clone())
            .with_ansi(false)
            .without_time()
            .finish(),
    );
    let queue = Arc::new(FailingClaims {
        queue: MemoryQueue::new(),
        failures_left: AtomicU32::new(FAILURES),
        failed: AtomicU32::new(0),
    });
    let worker = Runtime::builder()
        .workers(1)
        .shared_queue(queue.clone())
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while output.lines_containing("work again").is_empty() {
        assert!(Instant::now() < deadline, "{:#?}", output.lines());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let handle = worker
        .enqueue(TaskRequest::new("claim_failures_echo", &7u32).unwrap())
        .await
        .unwrap();
    let output_value = tokio::time::timeout(Duration::from_secs(10), handle.wait())
        .await
        .expect("the worker runs tasks once claims work")
        .unwrap();
    assert_eq!(output_value, serde_json::json!(7));
    worker.shutdown().await;
    assert_eq!(queue.failed.load(Ordering::SeqCst), FAILURES);

    let lines: Vec<String> = output
        .lines_containing("claim")
        .iter()
        .map(|line| line.trim().to_owned())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert_eq!(
        lines[0],
        "ERROR tasker: [Tasker] a worker could not claim from queue `memory`: queue backend \
         error: the database is down; retrying, reported at most every 10 s while it lasts"
    );
    let counted = number_in(&lines[1], "failed ", " times");
    assert_eq!(
        lines[1],
        format!(
            "ERROR tasker: [Tasker] claims from queue `memory` failed {counted} times in the \
             last 10 s: queue backend error: the database is down"
        )
    );
    // 10 s of retries every 200 ms (and a little more each): at most 50 after the first.
    assert!((40..=50).contains(&counted), "{}", lines[1]);
    assert!(
        lines[2].starts_with(&format!(
            "INFO tasker: [Tasker] claims from queue `memory` work again, after {FAILURES} \
             failures over "
        )) && lines[2].ends_with(" s"),
        "{}",
        lines[2]
    );
    let over: f64 = lines[2]
        .trim_end_matches(" s")
        .rsplit(' ')
        .next()
        .and_then(|seconds| seconds.parse().ok())
        .unwrap_or_else(|| panic!("no duration in {:?}", lines[2]));
    assert!((11.0..30.0).contains(&over), "{}", lines[2]);
}
