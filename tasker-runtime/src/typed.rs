//! Enqueueing through the task function itself: `fulfill::request(order)` is a
//! [`TypedRequest`] whose [`TaskHandle`](crate::TaskHandle) waits for the task's own output type.
//!
//! For a free `#[tasker::task] fn fulfill(order: Order) -> Result<Shipment, E>`, the macro also
//! emits `struct fulfill {}` (a braced struct lives in the type namespace only, so it does not
//! clash with the function) with `fn request(input: Order) -> TypedRequest<Order, Shipment>`.
//! Its bounds are checked where it is called, with the traits below, so a task that cannot be
//! enqueued still compiles and runs inline, and only enqueueing it is a compile error that says
//! why.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::request::TaskRequest;
use crate::runtime::EnqueueError;

/// A request for one task, made by the task function's `request` (see the module docs): the
/// input's type was checked at compile time, and the [`TaskHandle`](crate::TaskHandle) that
/// [`Runtime::enqueue`](crate::Runtime::enqueue) returns waits for an `O`.
///
/// ```ignore
/// let handle = runtime.enqueue(fulfill::request(order)).await?;
/// let shipment: Shipment = handle.wait().await?;
/// ```
#[derive(Debug)]
pub struct TypedRequest<I, O> {
    request: Result<TaskRequest, EnqueueError>,
    _types: PhantomData<fn(I) -> O>,
}

impl<I: TaskInput, O> TypedRequest<I, O> {
    /// A request for task `name` at exactly `version`, with `input` as its context. What the
    /// generated `request` functions call.
    pub fn new(name: &'static str, version: &'static str, input: &I) -> Self {
        let request = input
            .to_context()
            .and_then(|context| TaskRequest::new(name, &context).map_err(serde::ser::Error::custom))
            .map(|request| request.version(version))
            .map_err(|error| EnqueueError::InvalidInput {
                name: name.to_owned(),
                reason: error.to_string(),
            });
        TypedRequest {
            request,
            _types: PhantomData,
        }
    }
}

impl<I, O> TypedRequest<I, O> {
    /// The request of a task that cannot be enqueued: refused by `enqueue`. Only the
    /// `request` of such a task calls it, and that call does not compile.
    pub fn not_enqueueable(name: &'static str, version: &'static str) -> Self {
        TypedRequest {
            request: Err(EnqueueError::NotEnqueueable {
                name: name.to_owned(),
                version: version.to_owned(),
            }),
            _types: PhantomData,
        }
    }

    /// Skips these `skippable` steps (see [`TaskRequest::bypass_steps`]).
    pub fn bypass_steps<S, T>(self, steps: S) -> Self
    where
        S: IntoIterator<Item = T>,
        T: Into<String>,
    {
        TypedRequest {
            request: self.request.map(|request| request.bypass_steps(steps)),
            _types: PhantomData,
        }
    }

    /// The by-name request it stands for; `Err` when the input did not serialize to JSON.
    pub fn into_untyped(self) -> Result<TaskRequest, EnqueueError> {
        self.request
    }
}

/// What [`Runtime::enqueue`](crate::Runtime::enqueue) takes: a by-name [`TaskRequest`] (whose
/// handle waits for JSON) or a [`TypedRequest`] (whose handle waits for the task's output type).
pub trait Enqueue {
    /// What the handle's [`wait`](crate::TaskHandle::wait) gives.
    type Output;

    /// The request to queue.
    fn into_request(self) -> Result<TaskRequest, EnqueueError>;
}

impl Enqueue for TaskRequest {
    type Output = serde_json::Value;

    fn into_request(self) -> Result<TaskRequest, EnqueueError> {
        Ok(self)
    }
}

impl<I, O> Enqueue for TypedRequest<I, O> {
    type Output = O;

    fn into_request(self) -> Result<TaskRequest, EnqueueError> {
        self.request
    }
}

/// The input of a task enqueued through `request`: it travels as JSON.
#[diagnostic::on_unimplemented(
    message = "a task enqueued with `request` gets its input as JSON, so its argument type `{Self}` must be `Serialize` and `DeserializeOwned`",
    label = "this input must be `Serialize` and `DeserializeOwned`",
    note = "derive `serde::Serialize` and `serde::Deserialize` for `{Self}` (owning its data: no borrowed fields), or call the task inline instead of enqueueing it"
)]
pub trait TaskInput {
    /// The input as the request's JSON context.
    fn to_context(&self) -> Result<serde_json::Value, serde_json::Error>;
}

impl<T: Serialize + DeserializeOwned> TaskInput for T {
    fn to_context(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(self)
    }
}

/// The output of a task enqueued through `request`: the worker sends it as JSON and
/// [`TaskHandle::wait`](crate::TaskHandle::wait) reads it back.
#[diagnostic::on_unimplemented(
    message = "a task enqueued with `request` sends its output back as JSON, so its output type `{Self}` must be `Serialize` and `DeserializeOwned`",
    label = "this output must be `Serialize` and `DeserializeOwned`",
    note = "for a task returning `Result<T, E>` the output is `T`; derive `serde::Serialize` and `serde::Deserialize` for it, or call the task inline instead of enqueueing it"
)]
pub trait TaskOutput {}

impl<T: Serialize + DeserializeOwned> TaskOutput for T {}

/// Implemented by no type: the bound of the `request` of a task with more than one argument,
/// whose message says why it cannot be enqueued.
#[diagnostic::on_unimplemented(
    message = "task `{Task}` cannot be enqueued: it takes more than one argument, and a queued task gets one input",
    label = "`{Task}::request` cannot be called",
    note = "take one argument (a struct or tuple that is `Serialize` and `DeserializeOwned`) holding what the task needs, or call the task inline instead of enqueueing it"
)]
pub trait OneArgument<Task> {}

/// Implemented by no type: the bound of the `request` of a task whose argument is borrowed,
/// generic or an `impl Trait`, whose message says why it cannot be enqueued.
#[diagnostic::on_unimplemented(
    message = "task `{Task}` cannot be enqueued: its argument or output is borrowed, generic or an `impl Trait`, and a queued task gets an owned input and gives an owned output, both of named types",
    label = "`{Task}::request` cannot be called",
    note = "take the argument by value and name its type (no references, lifetimes, generics or `impl Trait`) in the input and the output, or call the task inline instead of enqueueing it"
)]
pub trait NamedOwnedTypes<Task> {}

/// The self type of the never-satisfied bounds above.
#[derive(Debug)]
pub enum NotEnqueueable {}
