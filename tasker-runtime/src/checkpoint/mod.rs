//! Step checkpoints: the outputs a task run's steps recorded, so that a request delivered again
//! after a crash replays them instead of running them again.
//!
//! - this module: what a queue implements ([`Checkpoints`]), and the run's checkpoints as the
//!   runtime keeps them in the task's frame ([`RunCheckpoints`]);
//! - [`durable`]: a worker's checkpoints, retried while the lease is held, stopping the run when
//!   a record cannot be written;
//! - [`replay`]: what generated code calls to replay and record a step's output.

pub(crate) mod durable;
pub mod replay;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use tasker_telemetry::__private::TaskFrame;

/// Step checkpoints of one task run: the outputs of the step calls that completed, by their
/// position in the task (the order in which the task's checkpointed steps start), so that a
/// request delivered again after a crash replays them instead of running them again.
pub trait Checkpoints: Send + Sync + 'static {
    /// The output recorded for the step call at `position`, if any.
    fn recorded(&self, position: u32) -> Option<serde_json::Value>;

    /// Records `output` for the step call at `position`, once: the future ends `Ok` when the
    /// record is durable, or with why it is not (the worker retries a
    /// [`CheckpointError::Backend`] while it holds the task's lease, and stops the run otherwise,
    /// so that a step completes only once its checkpoint is durable).
    fn record(
        &self,
        position: u32,
        step: &'static str,
        output: serde_json::Value,
    ) -> Pin<Box<dyn Future<Output = Result<(), CheckpointError>> + Send + 'static>>;
}

/// Why a step's checkpoint was not recorded.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The queue refused the record: the run's lease has ended, and another delivery may run
    /// the task, so this one's steps must not count as completed.
    #[error("the task's lease has ended; another delivery of the task may run it")]
    LeaseLost,
    /// The database did not take the record (it may on a later try).
    #[error("the checkpoint could not be written: {0}")]
    Backend(String),
}

tasker_telemetry::__debug_shows_message!(CheckpointError { LeaseLost, Backend });

impl std::fmt::Debug for dyn Checkpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn Checkpoints")
    }
}

/// Worker runs with checkpoints in progress in this process: while there are any, even silent
/// step calls look for their task's checkpoints.
static CHECKPOINTED_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Whether any task run with checkpoints is in progress (one relaxed load).
#[inline]
pub(crate) fn checkpointing() -> bool {
    CHECKPOINTED_RUNS.load(Ordering::Relaxed) > 0
}

/// Counts a task run with checkpoints as in progress until dropped.
#[derive(Debug)]
pub(crate) struct CheckpointedRun(());

impl CheckpointedRun {
    /// Starts counting.
    pub(crate) fn begin() -> Self {
        CHECKPOINTED_RUNS.fetch_add(1, Ordering::Relaxed);
        CheckpointedRun(())
    }
}

impl Drop for CheckpointedRun {
    fn drop(&mut self) {
        CHECKPOINTED_RUNS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A worker run's checkpoints, kept in its task's frame (the frame's extension slot).
#[derive(Debug)]
pub(crate) struct RunCheckpoints {
    checkpoints: Arc<dyn Checkpoints>,
    /// The position of the next checkpointed step call of this run, from 0.
    next_position: AtomicU32,
}

impl RunCheckpoints {
    /// The per-run state for a run with `checkpoints`.
    pub(crate) fn new(checkpoints: Arc<dyn Checkpoints>) -> Self {
        RunCheckpoints {
            checkpoints,
            next_position: AtomicU32::new(0),
        }
    }

    /// The checkpoints of the run `frame` belongs to, if it keeps any.
    pub(crate) fn of(frame: &TaskFrame) -> Option<&RunCheckpoints> {
        frame.extension::<RunCheckpoints>()
    }

    /// The checkpoints themselves.
    pub(crate) fn checkpoints(&self) -> &Arc<dyn Checkpoints> {
        &self.checkpoints
    }

    /// Numbers the next checkpointed step call of this run, from 0.
    pub(crate) fn next_position(&self) -> u32 {
        self.next_position.fetch_add(1, Ordering::Relaxed)
    }
}
