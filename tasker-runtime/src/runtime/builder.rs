//! Configuring a runtime and starting its workers.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::worker::{work, CLAIM_FAILURE_REPORTS};
use super::{isolation, report, BuildError, Inner, Registry, Runtime};
use crate::queue::{MemoryQueue, Queue};
use crate::repeated_failure::RepeatedFailure;

/// Configures a [`Runtime`].
#[derive(Clone)]
pub struct RuntimeBuilder {
    workers: usize,
    queue: Option<Arc<dyn Queue>>,
    lease: Duration,
    poll: Duration,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("workers", &self.workers)
            .field(
                "queue",
                &self.queue.as_ref().map(|queue| queue.name().to_owned()),
            )
            .field("lease", &self.lease)
            .finish()
    }
}

impl RuntimeBuilder {
    /// How many tasks run at once (default: the number of CPUs). `0` makes a producer-only
    /// runtime, for processes that enqueue work other processes run.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// The queue requests go through (default: a new [`MemoryQueue`]).
    pub fn queue(mut self, queue: impl Queue) -> Self {
        self.queue = Some(Arc::new(queue));
        self
    }

    /// A queue shared with other runtimes or code, behind `dyn Queue`. The queues of this crate
    /// are cheap `Clone` handles: `queue(queue.clone())` shares them too.
    pub fn shared_queue(mut self, queue: Arc<dyn Queue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// How long a worker's claim lasts before another worker may take the task (default 30 s);
    /// workers renew it while the task runs. On a durable queue it is also how often this
    /// runtime (with workers) looks for terminal events left unreported, and how long one must
    /// have been left so before this runtime emits it.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(10));
        self
    }

    /// Checks the registered tasks and starts the workers on the current Tokio runtime.
    pub fn build(self) -> Result<Runtime, BuildError> {
        let handle =
            tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoTokioRuntime)?;
        let registry = Registry::from_linked()?;
        let (stop, stopped) = watch::channel(false);
        let inner = Arc::new(Inner {
            queue: self.queue.unwrap_or_else(|| Arc::new(MemoryQueue::new())),
            registry: Arc::new(registry),
            pending: Mutex::new(HashMap::new()),
            lease: self.lease,
            poll: self.poll,
            has_workers: self.workers > 0,
            claim_failures: Mutex::new(RepeatedFailure::new(CLAIM_FAILURE_REPORTS)),
            suspect_check: isolation::SuspectCheck::new(),
            idle_wait: isolation::IdleWait::new(),
            marks: Arc::default(),
            handback: watch::channel(false).0,
            finished: AtomicU64::new(0),
            handed_back: AtomicU64::new(0),
        });
        let workers = (0..self.workers)
            .map(|_| handle.spawn(work(inner.clone(), stopped.clone())))
            .collect();
        // On a queue that keeps terminal events, workers' terminal events are marked reported
        // in batches, and a process with workers also emits those a dead worker left unreported.
        let background = if self.workers > 0 && inner.queue.keeps_terminal_events() {
            vec![
                handle.spawn(report::mark_in_batches(
                    inner.marks.clone(),
                    inner.queue.clone(),
                    stopped.clone(),
                )),
                handle.spawn(report::recover_unreported(
                    inner.queue.clone(),
                    inner.registry.clone(),
                    inner.lease,
                    stopped,
                )),
            ]
        } else {
            Vec::new()
        };
        Ok(Runtime {
            inner,
            stop,
            workers: Mutex::new(workers),
            background: Mutex::new(background),
        })
    }
}

impl Runtime {
    /// A builder with the defaults: one worker per CPU, an in-memory queue, 30 s leases.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            queue: None,
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(200),
        }
    }
}
