//! Running a worker process: until SIGINT or SIGTERM, then stopping within a deadline
//! ([`Runtime::run_until_signal`]); or until the queue holds no work
//! ([`Runtime::run_until_drained`]).

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::Runtime;
use crate::queue::QueueError;

/// The signal that stopped [`Runtime::run_until_signal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopSignal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (what `kill`, systemd and Kubernetes send).
    Terminate,
}

impl std::fmt::Display for StopSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
        })
    }
}

/// What a run loop did, once it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunSummary {
    /// The signal that stopped it ([`Runtime::run_until_signal`]); `None` when the queue was
    /// drained.
    pub signal: Option<StopSignal>,
    /// Tasks this runtime's workers ran to their end (success or failure) since it was built.
    pub finished: u64,
    /// Tasks still running at the deadline, stopped and handed back to the queue for another
    /// worker to take at once (no delivery counted against them).
    pub handed_back: u64,
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.signal {
            Some(signal) => write!(f, "stopped by {signal}: ")?,
            None => f.write_str("queue drained: ")?,
        }
        write!(
            f,
            "{} tasks finished, {} handed back",
            self.finished, self.handed_back
        )
    }
}

/// Why a run loop could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The process's signal handlers could not be installed.
    #[error("could not listen for SIGINT and SIGTERM: {0}")]
    Signals(#[source] std::io::Error),
    /// The runtime has no workers (`workers(0)`): nothing would ever drain the queue.
    #[error(
        "this runtime has no workers (`workers(0)`), so it would wait for ever for queue `{queue}` \
         to drain; give it workers, or let other processes drain the queue"
    )]
    NoWorkers {
        /// The queue's name.
        queue: String,
    },
    /// The queue cannot tell how much work it holds ([`Queue::unfinished`] returned `None`).
    ///
    /// [`Queue::unfinished`]: crate::queue::Queue::unfinished
    #[error(
        "queue `{queue}` cannot tell how much work it holds (its `Queue::unfinished` returns \
         `None`), so `run_until_drained` cannot know when it is drained; implement \
         `Queue::unfinished` for it, or use `run_until_signal`"
    )]
    Uncountable {
        /// The queue's name.
        queue: String,
    },
    /// Counting the work left in the queue failed.
    #[error("could not count the work left in the queue: {0}")]
    Queue(#[from] QueueError),
}

/// How often [`Runtime::run_until_drained`] counts the work left.
const DRAIN_POLL: Duration = Duration::from_millis(50);

impl Runtime {
    /// Runs this runtime's workers until the process receives SIGINT or SIGTERM (Ctrl-C
    /// elsewhere than Unix), then stops: workers claim nothing more, running tasks get until
    /// `deadline` to finish (a second signal cuts it short), and those still running then are
    /// stopped and handed back to the queue ([`Queue::release`]: another worker may take them
    /// at once, and no delivery is counted against them; a sync task keeps running on its
    /// thread until it returns, its result unused). Returns what was done, once every worker
    /// has stopped.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// let queue = tasker_runtime::queue::MemoryQueue::new();
    /// let runtime = tasker_runtime::Runtime::builder().queue(queue.clone()).build()?;
    /// let summary = runtime.run_until_signal(Duration::from_secs(10)).await?;
    /// eprintln!("{summary}");
    /// # Ok(()) }
    /// ```
    ///
    /// [`Queue::release`]: crate::queue::Queue::release
    pub async fn run_until_signal(self, deadline: Duration) -> Result<RunSummary, RunError> {
        // Installed before the first await, so that a signal sent once this was polled is seen.
        let mut signals = Signals::listen().map_err(RunError::Signals)?;
        let signal = signals.next().await;
        tracing::info!(
            target: "tasker",
            "[Tasker] {signal}: the workers claim nothing more; running tasks have {:.1} s to \
             finish before they are handed back (a second signal hands them back at once)",
            deadline.as_secs_f64(),
        );
        let second = async move {
            let signal = signals.next().await;
            tracing::info!(
                target: "tasker",
                "[Tasker] {signal} again: handing the running tasks back now"
            );
        };
        let mut summary = self.stop_within(deadline, second).await;
        summary.signal = Some(signal);
        Ok(summary)
    }

    /// Runs this runtime's workers until the queue holds no work — nothing ready, delayed or
    /// leased, and (on a durable queue) no completion whose terminal event is unreported —
    /// then stops them and returns. Tasks other processes run count as work too.
    pub async fn run_until_drained(self) -> Result<RunSummary, RunError> {
        let queue = self.inner.queue.name().to_owned();
        if !self.inner.has_workers {
            return Err(RunError::NoWorkers { queue });
        }
        loop {
            match self.inner.queue.unfinished().await? {
                None => return Err(RunError::Uncountable { queue }),
                Some(0) => break,
                Some(_) => tokio::time::sleep(DRAIN_POLL).await,
            }
        }
        Ok(self
            .stop_within(Duration::MAX, std::future::pending())
            .await)
    }

    /// Stops claiming, waits up to `deadline` (or until `cut` resolves) for the running tasks,
    /// hands back those still running, and shuts down.
    async fn stop_within(
        self,
        deadline: Duration,
        cut: impl std::future::Future<Output = ()>,
    ) -> RunSummary {
        let _ = self.stop.send(true);
        let workers: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        let until = tokio::time::Instant::now()
            .checked_add(deadline)
            .unwrap_or_else(far_future);
        let mut cut = std::pin::pin!(async move {
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = cut => {}
            }
        });
        let mut running = Vec::new();
        let mut over = false;
        for mut worker in workers {
            if over {
                running.push(worker);
                continue;
            }
            tokio::select! {
                _ = &mut worker => {}
                () = &mut cut => {
                    over = true;
                    running.push(worker);
                }
            }
        }
        if !running.is_empty() {
            let _ = self.inner.handback.send(true);
            for worker in running {
                let _ = worker.await;
            }
        }
        let summary = RunSummary {
            signal: None,
            finished: self.inner.finished.load(Ordering::Relaxed),
            handed_back: self.inner.handed_back.load(Ordering::Relaxed),
        };
        self.shutdown().await;
        summary
    }
}

/// About thirty years from now: a deadline no run loop reaches.
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

/// The stop signals this process listens to.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers: from now on, these signals no longer end the process.
    #[cfg(unix)]
    fn listen() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Ctrl-C is the one stop signal outside Unix.
    #[cfg(not(unix))]
    fn listen() -> std::io::Result<Signals> {
        Ok(Signals {})
    }

    /// The next signal.
    #[cfg(unix)]
    async fn next(&mut self) -> StopSignal {
        tokio::select! {
            _ = self.interrupt.recv() => StopSignal::Interrupt,
            _ = self.terminate.recv() => StopSignal::Terminate,
        }
    }

    /// The next Ctrl-C; never, when there is nothing to listen to.
    #[cfg(not(unix))]
    async fn next(&mut self) -> StopSignal {
        match tokio::signal::ctrl_c().await {
            Ok(()) => StopSignal::Interrupt,
            Err(_) => std::future::pending().await,
        }
    }
}
