//! Link-time descriptions of every task and step, so the runtime can list them.

use std::time::Duration;

use tasker_telemetry::SourceLocation;

use crate::retry::RetryPolicy;
use crate::runner::TaskRunner;

/// What `#[tasker::step]` knows about a step at compile time.
#[derive(Debug)]
pub struct StepDescriptor {
    /// The step's name (`name = …`, default: the function's name).
    pub name: &'static str,
    /// Where the step is defined.
    pub source: SourceLocation,
    /// Its retry policy.
    pub policy: RetryPolicy,
    /// Whether a task request may bypass it.
    pub skippable: bool,
    /// The time limit of each attempt (async steps only).
    pub timeout: Option<Duration>,
}

/// What `#[tasker::task]` knows about a task at compile time.
#[derive(Debug)]
pub struct TaskDescriptor {
    /// The task's registered name.
    pub name: &'static str,
    /// The task's version.
    pub version: &'static str,
    /// Where the task is defined.
    pub source: SourceLocation,
    /// Its retry policy (`#[task(max_attempts = …, backoff_ms = …)]`; one attempt by default).
    pub policy: RetryPolicy,
    /// The time limit of each attempt (`#[task(timeout_ms = …)]`, async tasks only).
    pub timeout: Option<Duration>,
}

/// A step's link-time registration, submitted by the macro.
#[derive(Debug)]
pub struct StepRegistration(pub &'static StepDescriptor);

/// A task's link-time registration, submitted by the macro.
#[derive(Debug)]
pub struct TaskRegistration {
    descriptor: &'static TaskDescriptor,
    runner: fn() -> Option<TaskRunner>,
}

impl TaskRegistration {
    /// Registers `descriptor`, with `runner` giving the task's JSON runner if it can be enqueued.
    pub const fn new(
        descriptor: &'static TaskDescriptor,
        runner: fn() -> Option<TaskRunner>,
    ) -> Self {
        Self { descriptor, runner }
    }

    /// The task's description.
    pub fn descriptor(&self) -> &'static TaskDescriptor {
        self.descriptor
    }

    /// The task's JSON runner, if it can be enqueued by name.
    pub fn runner(&self) -> Option<TaskRunner> {
        (self.runner)()
    }
}

/// The runner of a task that cannot be enqueued.
pub fn no_runner() -> Option<TaskRunner> {
    None
}

inventory::collect!(StepRegistration);
inventory::collect!(TaskRegistration);

/// Every `#[tasker::task]` linked into this program, sorted by name, version and location.
pub fn tasks() -> Vec<&'static TaskDescriptor> {
    let mut tasks: Vec<_> = inventory::iter::<TaskRegistration>
        .into_iter()
        .map(TaskRegistration::descriptor)
        .collect();
    tasks.sort_by_key(|task| (task.name, task.version, task.source.file, task.source.line));
    tasks
}

/// Every `#[tasker::step]` linked into this program, sorted by name and location.
pub fn steps() -> Vec<&'static StepDescriptor> {
    let mut steps: Vec<_> = inventory::iter::<StepRegistration>
        .into_iter()
        .map(|registration| registration.0)
        .collect();
    steps.sort_by_key(|step| (step.name, step.source.file, step.source.line));
    steps
}
