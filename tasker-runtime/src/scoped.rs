//! Running code of a task or step inside its context.

use std::panic::{catch_unwind, AssertUnwindSafe};

use tasker_telemetry::context::Context;

/// Runs `f` with the context held in `slot` entered, then puts the context back; a panic of `f`
/// is caught and returned, so the caller can report it before it resumes unwinding.
///
/// The context is moved in and out of `slot` rather than cloned, so entering costs no reference
/// counting.
#[inline]
pub(crate) fn run_in<R>(
    slot: &mut Option<Context>,
    f: impl FnOnce() -> R,
) -> std::thread::Result<R> {
    let guard = slot.take().unwrap_or_default().enter();
    let result = catch_unwind(AssertUnwindSafe(f));
    *slot = Some(guard.exit());
    result
}
