//! Per-task state shared by the steps of a task run: the task's identity, what a worker knows of
//! a queued request, the step counts for `task.finalize`, and the runtime's opaque per-run state.
//! Runtime support, reached through `tasker_telemetry::__private`: not a public API.

use std::any::Any;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::context::TaskRef;
use crate::propagation::{RunTrace, TraceContext};

/// Per-task state shared by every step running inside the task.
#[derive(Debug)]
pub struct TaskFrame {
    task: TaskRef,
    queued: Option<QueuedInfo>,
    completed_steps: AtomicU32,
    failed_steps: AtomicU32,
    skipped_steps: AtomicU32,
    error_steps: Mutex<Vec<&'static str>>,
    /// The runtime's per-run state, opaque here (see [`TaskFrame::extension`]).
    extension: Option<Arc<dyn Any + Send + Sync>>,
}

/// How a step call ended, as counted for `task.finalize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepTally {
    /// The step returned a success.
    Completed,
    /// The step's final attempt failed.
    Failed,
    /// The step did not run.
    Skipped,
}

/// What a worker knows about a task it took from a queue.
#[derive(Debug, Clone, Default)]
pub struct QueuedInfo {
    /// The steps the request bypasses (only `skippable` ones).
    pub bypass_steps: Vec<String>,
    /// The trace context of the code that enqueued it.
    pub trace_context: Option<TraceContext>,
    /// When it was enqueued.
    pub enqueued_at: Option<SystemTime>,
    /// Which delivery of the request this is, from 1.
    pub delivery_attempt: u32,
    /// The run of an earlier delivery that died, when the queue kept its trace context: this
    /// run's trace links to it.
    pub previous_run: Option<RunTrace>,
}

impl TaskFrame {
    /// A frame for a new task run.
    pub fn new(task: TaskRef) -> Self {
        Self::with_queued(task, None)
    }

    /// A frame for a task run that a worker took from a queue.
    pub fn with_queued(task: TaskRef, queued: Option<QueuedInfo>) -> Self {
        Self {
            task,
            queued,
            completed_steps: AtomicU32::new(0),
            failed_steps: AtomicU32::new(0),
            skipped_steps: AtomicU32::new(0),
            error_steps: Mutex::new(Vec::new()),
            extension: None,
        }
    }

    /// Gives the frame the runtime's state for this run (its checkpoints, for a worker run on a
    /// queue that keeps them), for steps to find with [`extension`](TaskFrame::extension).
    pub fn with_extension(mut self, extension: Arc<dyn Any + Send + Sync>) -> Self {
        self.extension = Some(extension);
        self
    }

    /// The runtime's state for this run, when it is a `T`. Telemetry never reads it: the slot
    /// lets the runtime keep its per-run state (checkpoints) to itself.
    pub fn extension<T: Any>(&self) -> Option<&T> {
        self.extension.as_deref()?.downcast_ref()
    }

    /// The task's identity.
    pub fn task(&self) -> &TaskRef {
        &self.task
    }

    /// What the worker knows of the request, for a task taken from a queue.
    pub fn queued(&self) -> Option<&QueuedInfo> {
        self.queued.as_ref()
    }

    /// The trace context the task continues, for a task taken from a queue.
    pub fn trace_context(&self) -> Option<&TraceContext> {
        self.queued.as_ref()?.trace_context.as_ref()
    }

    /// Whether the request bypasses the step named `step`.
    pub fn bypasses(&self, step: &str) -> bool {
        self.queued
            .as_ref()
            .is_some_and(|queued| queued.bypass_steps.iter().any(|name| name == step))
    }

    /// Counts how a step call of this task ended.
    pub fn tally(&self, step_name: &'static str, tally: StepTally) {
        match tally {
            StepTally::Completed => self.completed_steps.fetch_add(1, Ordering::Relaxed),
            StepTally::Skipped => self.skipped_steps.fetch_add(1, Ordering::Relaxed),
            StepTally::Failed => {
                let mut names = self.error_steps.lock().unwrap_or_else(|e| e.into_inner());
                if !names.contains(&step_name) {
                    names.push(step_name);
                }
                self.failed_steps.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    /// Starts counting the steps of another attempt of the task: `task.finalize` and
    /// `task.error` describe the attempt that ended the task.
    pub fn begin_attempt(&self) {
        self.completed_steps.store(0, Ordering::Relaxed);
        self.failed_steps.store(0, Ordering::Relaxed);
        self.skipped_steps.store(0, Ordering::Relaxed);
        self.error_steps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// `(completed, failed, skipped)` step counts so far.
    pub fn counts(&self) -> (u32, u32, u32) {
        (
            self.completed_steps.load(Ordering::Relaxed),
            self.failed_steps.load(Ordering::Relaxed),
            self.skipped_steps.load(Ordering::Relaxed),
        )
    }

    /// Names of the steps whose final outcome was a failure, in the order they failed.
    pub fn error_steps(&self) -> Vec<&'static str> {
        self.error_steps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::TaskOrigin;

    fn frame() -> TaskFrame {
        TaskFrame::new(TaskRef {
            id: uuid::Uuid::now_v7(),
            name: "t",
            version: "1",
            source: None,
            origin: TaskOrigin::Queued,
        })
    }

    #[test]
    fn a_frame_without_an_extension_gives_none() {
        assert_eq!(frame().extension::<u32>(), None);
    }

    #[test]
    fn the_extension_is_given_back_as_its_own_type_only() {
        let frame = frame().with_extension(Arc::new(7_u32));
        assert_eq!(frame.extension::<u32>(), Some(&7));
        assert_eq!(frame.extension::<u64>(), None);
    }
}
