//! A worker's checkpoints: a record the database did not take is tried again, with backoff,
//! for up to one lease length; a record that cannot be written (or that the queue refuses, the
//! lease having ended) stops the run as a lost lease does. So a step completes only once its
//! checkpoint is durable: `step.complete` always means the checkpoint is written.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use super::{CheckpointError, Checkpoints};
use crate::queue::{LeaseId, Queue, QueueError};
use crate::runtime::Lost;

/// The wait before the first retry of a record; it doubles up to [`LAST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(25);

/// The longest wait between two tries of a record.
const LAST_RETRY: Duration = Duration::from_millis(500);

/// Why a run's checkpoints stopped it, for the worker that keeps its lease to see.
#[derive(Debug, Default)]
pub(crate) struct CheckpointStop(Mutex<Option<CheckpointError>>);

impl CheckpointStop {
    /// The error that stopped the run, once one has.
    pub(crate) fn error(&self) -> Option<CheckpointError> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, error: CheckpointError) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(error);
    }
}

/// The checkpoints a queue hands a worker's run, recorded durably or not at all.
pub(crate) struct DurableCheckpoints {
    inner: Arc<dyn Checkpoints>,
    /// How long a record is tried: the lease's length, which a held lease outlasts.
    limit: Duration,
    stop: Arc<CheckpointStop>,
}

impl DurableCheckpoints {
    /// Wraps `inner`, trying each record for up to `limit`; `stop` says why the run must stop.
    pub(crate) fn new(
        inner: Arc<dyn Checkpoints>,
        limit: Duration,
        stop: Arc<CheckpointStop>,
    ) -> Self {
        DurableCheckpoints { inner, limit, stop }
    }
}

impl Checkpoints for DurableCheckpoints {
    fn recorded(&self, position: u32) -> Option<serde_json::Value> {
        self.inner.recorded(position)
    }

    fn record(
        &self,
        position: u32,
        step: &'static str,
        output: serde_json::Value,
    ) -> Pin<Box<dyn Future<Output = Result<(), CheckpointError>> + Send + 'static>> {
        let (inner, limit, stop) = (self.inner.clone(), self.limit, self.stop.clone());
        Box::pin(async move {
            let deadline = Instant::now() + limit;
            let mut wait = FIRST_RETRY;
            let mut reported = false;
            let error = loop {
                match inner.record(position, step, output.clone()).await {
                    Ok(()) => return Ok(()),
                    Err(CheckpointError::LeaseLost) => break CheckpointError::LeaseLost,
                    Err(error) if Instant::now() + wait >= deadline => break error,
                    Err(error) => {
                        if !std::mem::replace(&mut reported, true) {
                            tracing::warn!(
                                target: "tasker",
                                "[Tasker] could not record the checkpoint of step `{step}`: \
                                 {error}; retrying for up to {} ms while the task's lease is \
                                 held (the step completes only once it is recorded)",
                                limit.as_millis()
                            );
                        }
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(LAST_RETRY);
                    }
                }
            };
            stop.set(error);
            // The step never completes here: the worker sees `stop` when this wakes it, and
            // drops the run.
            stopped().await
        })
    }
}

/// The checkpoints of task `task_id` claimed under `lease`, read again with backoff while the
/// database fails, until `until` (when the lease would end unrenewed).
pub(crate) async fn read_checkpoints(
    queue: &dyn Queue,
    task_id: uuid::Uuid,
    lease: LeaseId,
    delivery_attempt: u32,
    until: Instant,
) -> Result<Option<Arc<dyn Checkpoints>>, Lost> {
    let mut wait = FIRST_RETRY;
    let mut reported = false;
    loop {
        match queue
            .delivery_checkpoints(task_id, lease, delivery_attempt)
            .await
        {
            Ok(checkpoints) => return Ok(checkpoints),
            Err(QueueError::LeaseLost(_)) => return Err(Lost::Taken),
            Err(error) if Instant::now() + wait >= until => return Err(Lost::Unread(error)),
            Err(error) => {
                if !std::mem::replace(&mut reported, true) {
                    tracing::warn!(
                        target: "tasker",
                        %task_id,
                        "[Tasker] could not read the checkpoints of task {task_id}: {error}; \
                         retrying while its lease is held (the task starts once they are read)"
                    );
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(LAST_RETRY);
            }
        }
    }
}

/// Wakes its task once, then stays pending: the worker polling the run drops it.
async fn stopped() -> Result<(), CheckpointError> {
    let mut woken = false;
    std::future::poll_fn(|cx| {
        if !std::mem::replace(&mut woken, true) {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::runner::BoxFuture;

    /// Fails its first `failures` records with a database error.
    struct Flaky {
        failures: u32,
        tries: AtomicU32,
        refuse: bool,
    }

    impl Checkpoints for Flaky {
        fn recorded(&self, _: u32) -> Option<serde_json::Value> {
            None
        }
        fn record(
            &self,
            _: u32,
            _: &'static str,
            _: serde_json::Value,
        ) -> Pin<Box<dyn Future<Output = Result<(), CheckpointError>> + Send + 'static>> {
            let tries = self.tries.fetch_add(1, Ordering::SeqCst) + 1;
            let result = if self.refuse {
                Err(CheckpointError::LeaseLost)
            } else if tries <= self.failures {
                Err(CheckpointError::Backend("no such table".to_owned()))
            } else {
                Ok(())
            };
            Box::pin(std::future::ready(result))
        }
    }

    fn durable(
        flaky: Flaky,
        limit: Duration,
    ) -> (Arc<Flaky>, DurableCheckpoints, Arc<CheckpointStop>) {
        let flaky = Arc::new(flaky);
        let stop = Arc::new(CheckpointStop::default());
        let durable = DurableCheckpoints::new(flaky.clone(), limit, stop.clone());
        (flaky, durable, stop)
    }

    #[tokio::test]
    async fn a_record_the_database_refused_for_a_while_is_written_on_a_later_try() {
        let flaky = Flaky {
            failures: 3,
            tries: AtomicU32::new(0),
            refuse: false,
        };
        let (flaky, durable, stop) = durable(flaky, Duration::from_secs(10));
        let recorded = tokio::time::timeout(
            Duration::from_secs(10),
            durable.record(0, "charge", serde_json::json!(1)),
        )
        .await;
        assert_eq!(recorded, Ok(Ok(())));
        assert_eq!(flaky.tries.load(Ordering::SeqCst), 4);
        assert_eq!(stop.error(), None);
    }

    #[tokio::test]
    async fn a_record_that_cannot_be_written_within_the_lease_stops_the_run() {
        let flaky = Flaky {
            failures: u32::MAX,
            tries: AtomicU32::new(0),
            refuse: false,
        };
        let (_, durable, stop) = durable(flaky, Duration::from_millis(200));
        let recorded = tokio::time::timeout(
            Duration::from_secs(2),
            durable.record(0, "charge", serde_json::json!(1)),
        )
        .await;
        assert!(
            recorded.is_err(),
            "the step must never complete: {recorded:?}"
        );
        assert_eq!(
            stop.error(),
            Some(CheckpointError::Backend("no such table".to_owned()))
        );
    }

    /// A `MemoryQueue` whose first `failures` checkpoint reads fail with a database error.
    struct UnreadableFor {
        queue: crate::queue::MemoryQueue,
        failures: u32,
        reads: AtomicU32,
    }

    impl Queue for UnreadableFor {
        fn name(&self) -> &str {
            self.queue.name()
        }
        fn push(&self, envelope: crate::queue::Envelope) -> BoxFuture<'_, Result<(), QueueError>> {
            self.queue.push(envelope)
        }
        fn claim(
            &self,
            lease: Duration,
            wait: Duration,
        ) -> BoxFuture<'_, Result<Option<crate::queue::Claim>, QueueError>> {
            self.queue.claim(lease, wait)
        }
        fn renew(&self, lease: LeaseId, length: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
            self.queue.renew(lease, length)
        }
        fn acknowledge(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), QueueError>> {
            self.queue.acknowledge(lease)
        }
        fn requeue(
            &self,
            lease: LeaseId,
            delay: Duration,
        ) -> BoxFuture<'_, Result<(), QueueError>> {
            self.queue.requeue(lease, delay)
        }
        fn checkpoints(
            &self,
            _: uuid::Uuid,
            _: LeaseId,
        ) -> BoxFuture<'_, Result<Option<Arc<dyn Checkpoints>>, QueueError>> {
            let read = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
            let result = if read <= self.failures {
                Err(QueueError::Backend("no such table".to_owned()))
            } else {
                let flaky = Flaky {
                    failures: 0,
                    tries: AtomicU32::new(0),
                    refuse: false,
                };
                Ok(Some(Arc::new(flaky) as Arc<dyn Checkpoints>))
            };
            Box::pin(std::future::ready(result))
        }
    }

    async fn read_from(failures: u32, limit: Duration) -> (Result<bool, String>, u32) {
        let queue = UnreadableFor {
            queue: crate::queue::MemoryQueue::new(),
            failures,
            reads: AtomicU32::new(0),
        };
        let until = Instant::now() + limit;
        let read = tokio::time::timeout(
            Duration::from_secs(10),
            // A second delivery: a first one has no checkpoints to read.
            read_checkpoints(&queue, uuid::Uuid::nil(), LeaseId(1), 2, until),
        )
        .await
        .expect("the reads end within 10 s")
        .map(|checkpoints| checkpoints.is_some())
        .map_err(|lost| lost.to_string());
        (read, queue.reads.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn checkpoints_the_database_could_not_read_for_a_while_are_read_on_a_later_try() {
        assert_eq!(read_from(2, Duration::from_secs(10)).await, (Ok(true), 3));
    }

    #[tokio::test]
    async fn checkpoints_unreadable_until_the_lease_would_end_do_not_start_the_run() {
        let (read, _) = read_from(u32::MAX, Duration::from_millis(200)).await;
        assert_eq!(
            read,
            Err(
                "the checkpoints of its earlier deliveries could not be read before its lease \
                 would end (queue backend error: no such table); the task did not start and runs \
                 on its next delivery"
                    .to_owned()
            )
        );
    }

    #[tokio::test]
    async fn a_refused_record_stops_the_run_at_once() {
        let flaky = Flaky {
            failures: 0,
            tries: AtomicU32::new(0),
            refuse: true,
        };
        let (flaky, durable, stop) = durable(flaky, Duration::from_secs(60));
        let recorded = tokio::time::timeout(
            Duration::from_millis(300),
            durable.record(0, "charge", serde_json::json!(1)),
        )
        .await;
        assert!(
            recorded.is_err(),
            "the step must never complete: {recorded:?}"
        );
        assert_eq!(stop.error(), Some(CheckpointError::LeaseLost));
        assert_eq!(
            flaky.tries.load(Ordering::SeqCst),
            1,
            "a refusal is not retried"
        );
    }
}
