//! Helper traits whose only job is a readable compile error at the user's token.

/// The by-value arguments of a step are given to every attempt, so they are cloned.
#[diagnostic::on_unimplemented(
    message = "retrying a step re-runs its body, so its by-value argument of type `{Self}` must be `Clone`",
    label = "this argument is passed to every attempt",
    note = "borrow the argument instead (`&{Self}`), implement or derive `Clone`, or set `max_attempts = 1` to disable retries"
)]
pub trait RetryArgument: Sized {
    /// A copy for one more attempt.
    fn clone_for_retry(&self) -> Self;
}

impl<T: Clone> RetryArgument for T {
    #[inline]
    fn clone_for_retry(&self) -> Self {
        self.clone()
    }
}

/// A skipped step returns `Default::default()`.
#[diagnostic::on_unimplemented(
    message = "a step with `skip_if` returns `Default::default()` when it is skipped, but `{Self}` does not implement `Default`",
    label = "this return type needs `Default`",
    note = "return a type that implements `Default` (such as `Option<T>` or `Result<T, E>` with `T: Default`), or remove `skip_if`"
)]
pub trait SkippedOutput: Sized {
    /// The value a skipped step returns.
    fn skipped() -> Self;
}

impl<T: Default> SkippedOutput for T {
    #[inline]
    fn skipped() -> Self {
        T::default()
    }
}

/// An attempt that runs out of time returns `Err(StepTimeout.into())`.
#[diagnostic::on_unimplemented(
    message = "a step with `timeout_ms` must return `Result<T, E>` with `E: From<tasker::StepTimeout>`, but it returns `{Self}`",
    label = "an attempt that times out must be able to return this type",
    note = "add a variant to the error type with `#[from] tasker::StepTimeout`, or use an error type that converts from any error (anyhow::Error, Box<dyn Error>)"
)]
pub trait FromTimeout {
    /// The value of an attempt that timed out.
    fn from_timeout(timeout: crate::StepTimeout) -> Self;
}

impl<T, E: From<crate::StepTimeout>> FromTimeout for Result<T, E> {
    fn from_timeout(timeout: crate::StepTimeout) -> Self {
        Err(E::from(timeout))
    }
}

/// The value of a step that was skipped: `Default::default()`.
#[inline]
pub fn skipped<T: SkippedOutput>() -> T {
    T::skipped()
}

/// A value recorded by `#[step(fields(...))]`, as JSON.
pub fn field_value<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Value {
    serde_json::to_value(value)
        .unwrap_or_else(|error| serde_json::Value::String(format!("<not serializable: {error}>")))
}
