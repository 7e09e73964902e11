//! What can go wrong when starting a runtime, enqueueing a request, or running a task.

use crate::queue::QueueError;

/// Why a [`Runtime`](super::Runtime) could not start.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Two `#[tasker::task]`s share a name and version.
    #[error(
        "task `{name}` version `{version}` is registered twice: at {first} and at {second}; give \
         one of them another name or version"
    )]
    DuplicateTask {
        /// The name.
        name: String,
        /// The version.
        version: String,
        /// `file:line` of one.
        first: String,
        /// `file:line` of the other.
        second: String,
    },
    /// `build` was called outside a Tokio runtime.
    #[error("Runtime::build must be called inside a Tokio runtime (its workers are Tokio tasks)")]
    NoTokioRuntime,
}

tasker_telemetry::__debug_shows_message!(BuildError {
    DuplicateTask,
    NoTokioRuntime
});

/// Why a request was refused. Nothing reaches the queue in these cases, and `task.initialize`
/// is emitted with `status: "error"` and the message in `errors`.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnqueueError {
    /// No task is registered under the name.
    #[error("no task is registered as `{name}`; registered tasks are: {}", list(.registered))]
    UnknownTask {
        /// The name asked for.
        name: String,
        /// The names registered.
        registered: Vec<String>,
    },
    /// The task exists, not in this version.
    #[error("task `{name}` has no version `{version}`; registered versions are: {}", list(.available))]
    UnknownVersion {
        /// The task.
        name: String,
        /// The version asked for.
        version: String,
        /// The versions registered.
        available: Vec<String>,
    },
    /// The task cannot be run from JSON.
    #[error(
        "task `{name}` version `{version}` cannot be enqueued: a task runs from a queue when it \
         is a free function whose single argument is `DeserializeOwned` and whose output is \
         `Serialize` (or a `Result` whose value is)"
    )]
    NotEnqueueable {
        /// The task.
        name: String,
        /// The version.
        version: String,
    },
    /// The input of a typed request (`task::request(input)`) does not serialize to JSON.
    #[error("the input of the request for task `{name}` does not serialize to JSON: {reason}")]
    InvalidInput {
        /// The task.
        name: String,
        /// serde's error.
        reason: String,
    },
    /// The context does not deserialize into the task's input.
    #[error("the context for task `{name}` version `{version}` does not fit its input: {reason}")]
    InvalidContext {
        /// The task.
        name: String,
        /// The version.
        version: String,
        /// serde's message.
        reason: String,
    },
    /// The context is larger than an envelope may carry, so no worker could read it.
    #[error(
        "the context for task `{name}` is too large: more than {size} bytes of JSON, and a \
         request may carry at most {limit}; pass a reference to the data (an id, a URL) instead"
    )]
    TooLarge {
        /// The task.
        name: String,
        /// Bytes counted before giving up (just over the limit).
        size: usize,
        /// The largest context accepted.
        limit: usize,
    },
    /// A bypassed step that no `#[tasker::step]` is named.
    #[error("cannot bypass `{step}`: no step has that name; skippable steps are: {}", list(.skippable))]
    UnknownStep {
        /// The step asked for.
        step: String,
        /// The steps marked `skippable`.
        skippable: Vec<String>,
    },
    /// A bypassed step that is not marked `skippable`.
    #[error(
        "cannot bypass `{step}`: it is not `skippable` (mark it `#[tasker::step(skippable)]`); \
         skippable steps are: {}",
        list(.skippable)
    )]
    NotSkippable {
        /// The step asked for.
        step: String,
        /// The steps marked `skippable`.
        skippable: Vec<String>,
    },
    /// The queue refused the envelope.
    #[error("the queue refused the request: {0}")]
    Queue(#[from] QueueError),
}

tasker_telemetry::__debug_shows_message!(EnqueueError {
    UnknownTask,
    UnknownVersion,
    NotEnqueueable,
    InvalidContext,
    InvalidInput,
    TooLarge,
    UnknownStep,
    NotSkippable,
    Queue,
    InvalidInput,
});

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names
            .iter()
            .map(|name| format!("`{name}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Why a task that was enqueued did not give a value.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task returned an error (its `task.error` describes it the same way).
    #[error("task failed with {class}: {message}")]
    Failed {
        /// The error's class.
        class: String,
        /// The error's message.
        message: String,
    },
    /// The task panicked.
    #[error("task panicked: {message}")]
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The worker could not deserialize the context (a producer of another version?).
    #[error("the worker could not read the task's context: {0}")]
    InvalidContext(String),
    /// The output does not serialize to JSON.
    #[error("the task's output does not serialize to JSON: {0}")]
    InvalidOutput(String),
    /// The output does not read as the type the handle waits for (a worker ran another version
    /// of the task, whose output type differs).
    #[error(
        "the task's output does not read as `{expected}`: {reason}; did a worker run another \
         version of the task?"
    )]
    UnexpectedOutput {
        /// The type the handle waits for.
        expected: &'static str,
        /// serde's error.
        reason: String,
    },
    /// The worker does not know the task.
    #[error("no worker of this runtime knows task `{name}` version `{version}`")]
    UnknownTask {
        /// The task.
        name: String,
        /// The version.
        version: String,
    },
    /// The runtime shut down before one of its workers ran the task; the request is still in
    /// the queue.
    #[error("the runtime shut down before the task ran; the request is still queued")]
    Abandoned,
}

tasker_telemetry::__debug_shows_message!(TaskError {
    Failed,
    Panicked,
    InvalidContext,
    InvalidOutput,
    UnexpectedOutput,
    UnknownTask,
    Abandoned,
    UnexpectedOutput,
});
