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
///
/// A step is a free function or a method (`&self`, `&mut self`, or `self` with
/// `max_attempts = 1`, since a retry would need the moved receiver again), sync or async. Its
/// name is the function's name alone — for a method too: the macro cannot see the `impl`'s type,
/// so `Cart::total` and `Invoice::total` would both be `total`; give each a `name` to tell them
/// apart. `code.function.name` in spans is `module::method`.
///
/// ```
/// struct Cart {
///     prices: Vec<u32>,
/// }
///
/// impl Cart {
///     #[tasker::step] // named `total`
///     fn total(&self) -> u32 {
///         self.prices.iter().sum()
///     }
///
///     #[tasker::step(name = "cart.add")]
///     fn add(&mut self, price: u32) {
///         self.prices.push(price);
///     }
/// }
///
/// #[tasker::task(name = "checkout", version = "1.0.0")]
/// fn checkout(cart: Cart) -> u32 {
///     let mut cart = cart;
///     cart.add(5);
///     cart.total()
/// }
///
/// let capture = tasker::testing::Capture::new();
/// assert_eq!(capture.run(|| checkout(Cart { prices: vec![10] })), 15);
/// let steps: Vec<_> = capture
///     .events()
///     .iter()
///     .filter_map(|event| event.step_name().map(str::to_owned))
///     .collect();
/// assert_eq!(steps, ["cart.add", "cart.add", "total", "total"]);
/// ```
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
