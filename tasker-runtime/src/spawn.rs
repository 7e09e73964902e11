//! Carrying the current task into spawned futures.

use std::future::Future;

use tasker_telemetry::context::{Context, WithContext};

/// Extension for futures: run them in the task (and step) that is current now.
pub trait FutureExt: Future + Sized {
    /// Wraps the future so that, wherever it is polled, its steps belong to the task that is
    /// current where `in_current_task` was called.
    ///
    /// ```
    /// use tasker::FutureExt;
    /// # async fn work() {}
    /// # async fn example() {
    /// let handle = tokio::spawn(work().in_current_task());
    /// # }
    /// ```
    fn in_current_task(self) -> WithContext<Self> {
        Context::current().wrap(self)
    }
}

impl<F: Future> FutureExt for F {}

/// `tokio::spawn`, with the current task carried into the spawned future.
///
/// Must be called inside a Tokio runtime, like `tokio::spawn`.
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(future.in_current_task())
}
