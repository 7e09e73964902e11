//! The handle an enqueued request gives its producer.

use serde_json::Value;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::TaskError;

/// A request that was enqueued: its task id, and its result once a worker of this runtime ran
/// it, as a `T`: the task's output type for a [`TypedRequest`](crate::TypedRequest), JSON for a
/// by-name [`TaskRequest`](crate::TaskRequest).
pub struct TaskHandle<T = Value> {
    pub(super) task_id: Uuid,
    pub(super) result: oneshot::Receiver<Result<Value, TaskError>>,
    pub(super) _output: std::marker::PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for TaskHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle")
            .field("task_id", &self.task_id)
            .field("output", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

impl<T> TaskHandle<T> {
    /// The id every event of the task carries, on the producer's side and the worker's.
    pub fn task_id(&self) -> Uuid {
        self.task_id
    }
}

impl<T: serde::de::DeserializeOwned> TaskHandle<T> {
    /// The task's output (the `Ok` value for a task returning a `Result`), once a worker of this
    /// runtime has run it. A producer-only runtime (`workers(0)`) never runs it, so waiting
    /// gives [`TaskError::Abandoned`] at once. An output that does not read as a `T` (a worker
    /// of another version of the task) is [`TaskError::UnexpectedOutput`].
    pub async fn wait(self) -> Result<T, TaskError> {
        let value = self.result.await.unwrap_or(Err(TaskError::Abandoned))?;
        serde_json::from_value(value).map_err(|error| TaskError::UnexpectedOutput {
            expected: std::any::type_name::<T>(),
            reason: error.to_string(),
        })
    }
}
