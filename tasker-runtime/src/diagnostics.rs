//! Helper traits whose only job is a readable compile error at the user's token.
//!
//! rustc shows a trait's `#[diagnostic::on_unimplemented]` message when the bound that failed
//! (after following blanket impls) has the same self type as the bound the code asked for:
//! `Order: RetryArgument` failing on `Order: Clone` shows ours, `Result<T, E>: FromTimeout`
//! failing on `E: From<StepTimeout>` shows rustc's. So every bound here is asked on the type the
//! message talks about, and the expansion points it at the user's argument or return type.

use crate::{StepTimeout, TaskTimeout};

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

/// The by-value arguments of a task with `max_attempts > 1` are given to every attempt.
#[diagnostic::on_unimplemented(
    message = "retrying a task re-runs its body, so its by-value argument of type `{Self}` must be `Clone`",
    label = "this argument is passed to every attempt",
    note = "borrow the argument instead (`&{Self}`), implement or derive `Clone`, or remove `max_attempts` (a task runs once by default)"
)]
pub trait TaskRetryArgument: Sized {
    /// A copy for one more attempt.
    fn clone_for_task_retry(&self) -> Self;
}

impl<T: Clone> TaskRetryArgument for T {
    #[inline]
    fn clone_for_task_retry(&self) -> Self {
        self.clone()
    }
}

/// A skipped step returns `Default::default()`, or `Ok(Default::default())` for a `Result`
/// (see the `skip` support module).
#[diagnostic::on_unimplemented(
    message = "a step with `skip_if` returns `Default::default()` when it is skipped, but `{Self}` does not implement `Default`",
    label = "this return type needs `Default`",
    note = "return a type that implements `Default`, or `Result<T, E>` with `T: Default` (a skipped step returns `Ok(T::default())`), or remove `skip_if`"
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

/// The value of a step that was skipped: `Default::default()`.
#[inline]
pub fn skipped<T: SkippedOutput>() -> T {
    T::skipped()
}

/// A `skip_if` predicate is called with a reference to each of the step's arguments, before the
/// step runs: it cannot take them by value, since the step still needs them.
#[diagnostic::on_unimplemented(
    message = "a `skip_if` predicate must take each argument of the step by reference and return `bool`, but `{Self}` does not",
    label = "`skip_if` calls this with a reference to each argument of the step",
    note = "declare the predicate as `fn(&T, ...) -> bool`, with one reference per argument of the step in order (`&self` first in a method): it runs before the step, which still needs its arguments"
)]
pub trait SkipPredicate<Arguments> {
    /// Whether the step is skipped.
    fn skips(self, arguments: Arguments) -> bool;
}

macro_rules! skip_predicate {
    ($($argument:ident),*) => {
        impl<'a, F, $($argument: ?Sized),*> SkipPredicate<($(&'a $argument,)*)> for F
        where
            F: FnOnce($(&'a $argument),*) -> bool,
        {
            #[inline]
            #[allow(non_snake_case)]
            fn skips(self, ($($argument,)*): ($(&'a $argument,)*)) -> bool {
                self($($argument),*)
            }
        }
    };
}

skip_predicate!();
skip_predicate!(A);
skip_predicate!(A, B);
skip_predicate!(A, B, C);
skip_predicate!(A, B, C, D);
skip_predicate!(A, B, C, D, E);
skip_predicate!(A, B, C, D, E, G);
skip_predicate!(A, B, C, D, E, G, H);
skip_predicate!(A, B, C, D, E, G, H, I);
skip_predicate!(A, B, C, D, E, G, H, I, J);
skip_predicate!(A, B, C, D, E, G, H, I, J, K);
skip_predicate!(A, B, C, D, E, G, H, I, J, K, L);
skip_predicate!(A, B, C, D, E, G, H, I, J, K, L, M);

/// Whether `predicate`, called with `arguments` (one reference per argument of the step), skips
/// the step. Implemented for up to 12 arguments; `#[step]` calls a predicate of a longer step
/// directly.
#[inline]
pub fn skip_predicate<Arguments, P: SkipPredicate<Arguments>>(
    predicate: P,
    arguments: Arguments,
) -> bool {
    predicate.skips(arguments)
}

/// A step with `timeout_ms` returns a `Result`, so that a timed-out attempt can be an `Err`.
#[diagnostic::on_unimplemented(
    message = "a step with `timeout_ms` must return a `Result`, but it returns `{Self}`",
    label = "an attempt that times out cannot be expressed as this type",
    note = "return `Result<T, E>` with `E: From<tasker::StepTimeout>` (such as `anyhow::Result<T>`), or remove `timeout_ms`"
)]
pub trait TimeoutOutput: Sized {
    /// The error type.
    type Error;
    /// The `Err` holding `error`.
    fn from_error(error: Self::Error) -> Self;
}

impl<T, E> TimeoutOutput for Result<T, E> {
    type Error = E;
    #[inline]
    fn from_error(error: E) -> Self {
        Err(error)
    }
}

/// The error type of a step with `timeout_ms` holds the [`StepTimeout`] of an attempt.
#[diagnostic::on_unimplemented(
    message = "a step with `timeout_ms` returns `Err(tasker::StepTimeout.into())` when an attempt times out, but its error type `{Self}` does not implement `From<tasker::StepTimeout>`",
    label = "this error type needs `From<tasker::StepTimeout>`",
    note = "add a variant with `#[from] tasker::StepTimeout`, implement `From<tasker::StepTimeout> for {Self}`, use an error type that converts from any error (`anyhow::Error`, `Box<dyn Error + Send + Sync>`), or remove `timeout_ms`"
)]
pub trait TimeoutError {
    /// The error for an attempt that timed out.
    fn from_timeout(timeout: StepTimeout) -> Self;
}

impl<E: From<StepTimeout>> TimeoutError for E {
    #[inline]
    fn from_timeout(timeout: StepTimeout) -> Self {
        E::from(timeout)
    }
}

/// An attempt that runs out of time returns `Err(StepTimeout.into())`.
pub trait FromTimeout {
    /// The value of an attempt that timed out.
    fn from_timeout(timeout: StepTimeout) -> Self;
}

impl<R> FromTimeout for R
where
    R: TimeoutOutput,
    R::Error: TimeoutError,
{
    #[inline]
    fn from_timeout(timeout: StepTimeout) -> Self {
        R::from_error(<R::Error as TimeoutError>::from_timeout(timeout))
    }
}

/// The error type of a task with `timeout_ms` holds the [`TaskTimeout`] of an attempt.
#[diagnostic::on_unimplemented(
    message = "a task with `timeout_ms` returns `Err(tasker::TaskTimeout.into())` when an attempt times out, but its error type `{Self}` does not implement `From<tasker::TaskTimeout>`",
    label = "this error type needs `From<tasker::TaskTimeout>`",
    note = "add a variant with `#[from] tasker::TaskTimeout`, implement `From<tasker::TaskTimeout> for {Self}`, use an error type that converts from any error (`anyhow::Error`, `Box<dyn Error + Send + Sync>`), or remove `timeout_ms`"
)]
pub trait TaskTimeoutError {
    /// The error for an attempt that timed out.
    fn from_task_timeout(timeout: TaskTimeout) -> Self;
}

impl<E: From<TaskTimeout>> TaskTimeoutError for E {
    #[inline]
    fn from_task_timeout(timeout: TaskTimeout) -> Self {
        E::from(timeout)
    }
}

/// A task attempt that runs out of time returns `Err(TaskTimeout.into())`.
pub trait FromTaskTimeout {
    /// The value of an attempt that timed out.
    fn from_task_timeout(timeout: TaskTimeout) -> Self;
}

impl<R> FromTaskTimeout for R
where
    R: TimeoutOutput,
    R::Error: TaskTimeoutError,
{
    #[inline]
    fn from_task_timeout(timeout: TaskTimeout) -> Self {
        R::from_error(<R::Error as TaskTimeoutError>::from_task_timeout(timeout))
    }
}

/// A value recorded by `#[step(fields(...))]`, as JSON.
pub fn field_value<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Value {
    serde_json::to_value(value)
        .unwrap_or_else(|error| serde_json::Value::String(format!("<not serializable: {error}>")))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn timeout() -> StepTimeout {
        StepTimeout {
            step: "charge",
            attempt: 2,
            limit: Duration::from_millis(5),
        }
    }

    #[test]
    fn timed_out_attempt_is_the_err_of_its_result() {
        let value = <Result<u32, StepTimeout> as FromTimeout>::from_timeout(timeout());
        assert_eq!(value, Err(timeout()));
        let boxed = <Result<(), Box<dyn std::error::Error + Send + Sync>>>::from_timeout(timeout());
        assert_eq!(
            boxed.unwrap_err().to_string(),
            "step `charge` timed out after 5 ms (attempt 2)"
        );
    }

    fn no_gift(gift: &bool, _note: &str) -> bool {
        !*gift
    }

    #[test]
    fn skip_predicate_is_called_with_each_argument_by_reference() {
        assert!(skip_predicate(no_gift, (&false, "plain")));
        assert!(!skip_predicate(no_gift, (&true, "wrapped")));
        assert!(skip_predicate(|| true, ()));
    }

    #[test]
    fn retry_argument_is_a_clone() {
        let original = vec![1, 2];
        assert_eq!(original.clone_for_retry(), original);
    }
}
