//! The `#[tasker::task]` and `#[tasker::step]` attribute macros. Use them through the `tasker`
//! crate; generated code names only `::tasker::__private` (or `crate = path`).
//!
//! The macro is split as in `tracing-attributes`: `attr` parses the arguments, `item` reads the
//! function, `model` decides everything about the expansion, `expand` generates code.
#![deny(missing_docs)]

mod attr;
mod ctxt;
mod expand;
mod item;
mod model;
mod spans;
mod typed_request;

use proc_macro::TokenStream;

/// Instruments a step: every call emits `step.handle`, `step.complete` or `step.error`, and
/// applies the retry, backoff and skip policy. See the `tasker` crate for the keys.
#[proc_macro_attribute]
pub fn step(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::step(args.into(), item.into()).into()
}

/// Instruments a task: every call runs it inline, emitting `task.initialize` … `task.complete`
/// or `task.error`, and the steps called inside belong to it.
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::task(args.into(), item.into()).into()
}
