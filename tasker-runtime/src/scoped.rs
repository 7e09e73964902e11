//! Running code of a task or step inside its context.

use std::panic::{catch_unwind, AssertUnwindSafe};

use tasker_telemetry::context::Context;

/// Runs `f` with the context held in `slot` entered, then puts the context back; a panic of `f`
/// is caught and returned, so the caller can report it before it resumes unwinding.
///
/// The context is swapped in place with the current one, and back, rather than cloned: entering
/// costs no reference counting. While `f` runs, `slot` holds the context it replaced.
#[inline]
pub(crate) fn run_in<R>(
    slot: &mut Option<Context>,
    f: impl FnOnce() -> R,
) -> std::thread::Result<R> {
    let context = slot.get_or_insert_with(Context::default);
    Context::swap_current(context);
    let result = catch_unwind(AssertUnwindSafe(f));
    Context::swap_current(context);
    result
}
