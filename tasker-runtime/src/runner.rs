//! Type-erased runners: JSON in, JSON out, for tasks that can be enqueued by name.
//!
//! `#[tasker::task]` expands, for a free function with one argument (or none), to
//! `(&&&AsyncProbe::<_, Input>::new(task)).tasker_runner()`; autoref specialisation picks
//! a runner when the input is `DeserializeOwned` and the output is a `Result` with a `Serialize`
//! value, or a `Serialize` value, and `None` otherwise (the task still runs inline).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// A boxed, `Send` future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What running a task from JSON gave.
#[derive(Debug)]
pub enum RunOutput {
    /// The task succeeded; its output (the `Ok` value of a `Result`) as JSON.
    Success(Value),
    /// The task returned an `Err`; its `task.error` event describes it.
    Failure,
    /// The context does not deserialize into the task's input.
    InvalidContext(serde_json::Error),
    /// The output does not serialize to JSON.
    InvalidOutput(serde_json::Error),
}

type Check = fn(&Value) -> Result<(), serde_json::Error>;
type Run = dyn Fn(Value) -> BoxFuture<'static, RunOutput> + Send + Sync;

/// Runs a registered task from a JSON context.
#[derive(Clone)]
pub struct TaskRunner {
    check: Check,
    run: Arc<Run>,
    blocking: bool,
}

impl std::fmt::Debug for TaskRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskRunner")
            .field("blocking", &self.blocking)
            .finish_non_exhaustive()
    }
}

impl TaskRunner {
    /// Whether `context` deserializes into the task's input.
    pub fn check(&self, context: &Value) -> Result<(), serde_json::Error> {
        (self.check)(context)
    }

    /// Runs the task with `context`. A sync task's future must be polled where blocking is
    /// allowed (see [`TaskRunner::is_blocking`]).
    pub fn run(&self, context: Value) -> BoxFuture<'static, RunOutput> {
        (self.run)(context)
    }

    /// Whether the task is a sync function, which the worker runs on a blocking thread.
    pub fn is_blocking(&self) -> bool {
        self.blocking
    }
}

fn check<I: DeserializeOwned>(context: &Value) -> Result<(), serde_json::Error> {
    I::deserialize(context).map(drop)
}

fn serialize(value: impl Serialize) -> RunOutput {
    match serde_json::to_value(value) {
        Ok(value) => RunOutput::Success(value),
        Err(error) => RunOutput::InvalidOutput(error),
    }
}

/// Probes an async task function taking `I`: `AsyncProbe::<_, Input>::new(task)`.
///
/// The function is kept as its own (zero-sized) type rather than a `fn` pointer, so its output
/// type is known while the impl is chosen.
pub struct AsyncProbe<F, I>(F, PhantomData<fn(I)>);

impl<F, I> AsyncProbe<F, I> {
    /// Probes `task`.
    pub fn new(task: F) -> Self {
        AsyncProbe(task, PhantomData)
    }
}

/// Probes a sync task function taking `I`: `SyncProbe::<_, Input>::new(task)`.
pub struct SyncProbe<F, I>(F, PhantomData<fn(I)>);

impl<F, I> SyncProbe<F, I> {
    /// Probes `task`.
    pub fn new(task: F) -> Self {
        SyncProbe(task, PhantomData)
    }
}

/// Level 1: an async task returning `Result<T: Serialize, E>`.
pub trait AsyncResultRunner {
    /// The runner.
    fn tasker_runner(&self) -> Option<TaskRunner>;
}

impl<F, I, Fut, T, E> AsyncResultRunner for &&AsyncProbe<F, I>
where
    F: Fn(I) -> Fut + Copy + Send + Sync + 'static,
    I: DeserializeOwned + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Serialize,
{
    fn tasker_runner(&self) -> Option<TaskRunner> {
        let task = self.0;
        Some(TaskRunner {
            check: check::<I>,
            run: Arc::new(move |context| {
                Box::pin(async move {
                    match I::deserialize(context) {
                        Err(error) => RunOutput::InvalidContext(error),
                        Ok(input) => match task(input).await {
                            Ok(value) => serialize(value),
                            Err(_) => RunOutput::Failure,
                        },
                    }
                })
            }),
            blocking: false,
        })
    }
}

/// Level 2: an async task returning any `Serialize` value.
pub trait AsyncValueRunner {
    /// The runner.
    fn tasker_runner(&self) -> Option<TaskRunner>;
}

impl<F, I, Fut> AsyncValueRunner for &AsyncProbe<F, I>
where
    F: Fn(I) -> Fut + Copy + Send + Sync + 'static,
    I: DeserializeOwned + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: Serialize,
{
    fn tasker_runner(&self) -> Option<TaskRunner> {
        let task = self.0;
        Some(TaskRunner {
            check: check::<I>,
            run: Arc::new(move |context| {
                Box::pin(async move {
                    match I::deserialize(context) {
                        Err(error) => RunOutput::InvalidContext(error),
                        Ok(input) => serialize(task(input).await),
                    }
                })
            }),
            blocking: false,
        })
    }
}

/// Level 1 for sync tasks: `Result<T: Serialize, E>`.
pub trait SyncResultRunner {
    /// The runner.
    fn tasker_runner(&self) -> Option<TaskRunner>;
}

impl<F, I, T, E> SyncResultRunner for &&SyncProbe<F, I>
where
    F: Fn(I) -> Result<T, E> + Copy + Send + Sync + 'static,
    I: DeserializeOwned + Send + 'static,
    T: Serialize + 'static,
    E: 'static,
{
    fn tasker_runner(&self) -> Option<TaskRunner> {
        let task = self.0;
        Some(TaskRunner {
            check: check::<I>,
            run: Arc::new(move |context| {
                Box::pin(std::future::ready(match I::deserialize(context) {
                    Err(error) => RunOutput::InvalidContext(error),
                    Ok(input) => match task(input) {
                        Ok(value) => serialize(value),
                        Err(_) => RunOutput::Failure,
                    },
                }))
            }),
            blocking: true,
        })
    }
}

/// Level 2 for sync tasks: any `Serialize` value.
pub trait SyncValueRunner {
    /// The runner.
    fn tasker_runner(&self) -> Option<TaskRunner>;
}

impl<F, I, R> SyncValueRunner for &SyncProbe<F, I>
where
    F: Fn(I) -> R + Copy + Send + Sync + 'static,
    I: DeserializeOwned + Send + 'static,
    R: Serialize + 'static,
{
    fn tasker_runner(&self) -> Option<TaskRunner> {
        let task = self.0;
        Some(TaskRunner {
            check: check::<I>,
            run: Arc::new(move |context| {
                Box::pin(std::future::ready(match I::deserialize(context) {
                    Err(error) => RunOutput::InvalidContext(error),
                    Ok(input) => serialize(task(input)),
                }))
            }),
            blocking: true,
        })
    }
}

/// Level 3: anything else has no runner; the task runs inline only.
pub trait NoRunner {
    /// `None`.
    fn tasker_runner(&self) -> Option<TaskRunner> {
        None
    }
}

impl<F, I> NoRunner for AsyncProbe<F, I> {}
impl<F, I> NoRunner for SyncProbe<F, I> {}
