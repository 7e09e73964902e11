//! Every argument shape a function can be written with, on every path the macros generate.
//!
//! `matrix!` expands each shape of the list at the bottom on each path of its list: a new path
//! or a new shape is one line, and no path can leave a shape out. Each case calls the function
//! as written — `mut` arguments, tuple and struct patterns, `_`, `&T`, `&mut T`, `impl Trait`,
//! generics, lifetimes — and asserts its exact value and its exact events.

mod support;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use support::lines;
use tasker::testing::Capture;

/// The error of an attempt that a retried case fails on purpose, once.
#[derive(Debug, Clone, PartialEq)]
struct Flaky;

impl fmt::Display for Flaky {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("first attempt fails")
    }
}

impl std::error::Error for Flaky {}

/// Steps with `timeout_ms` return it for an attempt that runs out of time (none does here).
impl From<tasker::StepTimeout> for Flaky {
    fn from(_: tasker::StepTimeout) -> Self {
        Flaky
    }
}

/// `Err(Flaky)` the first time, `Ok` after: a retried case's second attempt binds its
/// arguments again.
fn fail_once(failed: &AtomicBool) -> Result<(), Flaky> {
    if failed.swap(true, Ordering::SeqCst) {
        Ok(())
    } else {
        Err(Flaky)
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Pair {
    left: u32,
    right: u32,
}

/// The events of one step call that succeeds at once.
fn once(name: &str, max_attempts: u32) -> Vec<String> {
    vec![
        format!("step.handle {name} 1/{max_attempts}"),
        format!("step.complete {name} 1"),
    ]
}

/// The events of one step call whose first attempt fails and second succeeds.
fn retried(name: &str) -> Vec<String> {
    vec![
        format!("step.handle {name} 1/2"),
        format!("step.error {name} 1 shape_matrix::Flaky \"first attempt fails\" retryable=true"),
        format!("step.retry {name} 2/2"),
        format!("step.backoff {name} 2"),
        format!("step.handle {name} 2/2"),
        format!("step.complete {name} 2"),
    ]
}

/// The events of a task with no steps.
fn task() -> Vec<String> {
    [
        "task.initialize success",
        "task.start",
        "task.handle",
        "task.finalize completed=0 failed=0 skipped=0",
        "task.complete",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Two calls of one step in `tasker::join!`: announced together, then run.
fn joined(name: &str) -> Vec<String> {
    vec![
        format!("step.find_viable [\"{name}\", \"{name}\"]"),
        format!("step.handle {name} 1/1"),
        format!("step.complete {name} 1"),
        format!("step.handle {name} 1/1"),
        format!("step.complete {name} 1"),
    ]
}

/// A predicate for `skip_if` taking one reference per argument, whatever their types: never
/// skips, so the step runs past its skip check.
macro_rules! never_skip {
    ($($argument:ident),*) => {
        #[allow(non_camel_case_types)]
        fn never<$($argument: ?Sized),*>($(_: &$argument),*) -> bool {
            false
        }
    };
}

/// One shape on one path: the function, and a test of its value and events.
macro_rules! case {
    (step_once_sync $name:ident [$($generics:tt)*] ($($params:tt)*) -> $ret:ty $body:block
        skip($($skip:ident),*) call($($arg:expr),*) => $expected:expr) => {
        #[tasker::step(max_attempts = 1)]
        fn $name<$($generics)*>($($params)*) -> $ret $body

        #[test]
        fn runs_as_written() {
            let capture = Capture::new();
            assert_eq!(capture.run(|| $name($($arg),*)), $expected);
            assert_eq!(lines(&capture.events()), once(stringify!($name), 1));
        }
    };
    (step_once_async $name:ident [$($generics:tt)*] ($($params:tt)*) -> $ret:ty $body:block
        skip($($skip:ident),*) call($($arg:expr),*) => $expected:expr) => {
        #[tasker::step(max_attempts = 1)]
        async fn $name<$($generics)*>($($params)*) -> $ret $body

        #[tokio::test]
        async fn runs_as_written() {
            let capture = Capture::new();
            assert_eq!(capture.wrap($name($($arg),*)).await, $expected);
            assert_eq!(lines(&capture.events()), once(stringify!($name), 1));
        }
    };
    // Default attempts with an output that cannot fail: one attempt, arguments moved.
    (step_cannot_fail_sync $name:ident [$($generics:tt)*] ($($params:tt)*) -> $ret:ty $body:block
        skip($($skip:ident),*) call($($arg:expr),*) => $expected:expr) => {
        #[tasker::step]
        fn $name<$($generics)*>($($params)*) -> $ret $body

        #[test]
        fn runs_as_written() {
            let capture = Capture::new();
            assert_eq!(capture.run(|| $name($($arg),*)), $expected);
            assert_eq!(lines(&capture.events()), once(stringify!($name), 3));
        }
    };
    (step_retry_sync $name:ident [$($generics:tt)*] ($($params:tt)*) -> $ret:ty $body:block
        skip($($skip:ident),*) call($($arg:expr),*) => $expected:expr) => {
        static FAILED: AtomicBool = AtomicBool::new(false);

        #[tasker::step(max_attempts = 2, backoff_ms = 1)]
        fn $name<$($generics)*>($($params)*) -> Result<$ret, Flaky> {
            let value = $body;
            fail_once(&FAILED)?;
            Ok(value)
        }

        #[test]
        fn runs_as_written() {
            let capture = Capture::new();
            assert_eq!(capture.run(|| $name($($arg),*)), Ok($expected));
            assert_eq!(lines(&capture.events()), retried(stringify!($name)));
        }
    };
    (step_retry_async $name:ident [$($generics:tt)*] ($($params:tt)*) -> $ret:ty $body:block
        skip($($skip:ident),*) call($($arg:expr),*) => $expected:expr) => {
        static FAILED: AtomicBool = AtomicBool::new(false);

        #[tasker::step(max_attempts = 2, backoff_ms = 1)]
        async fn $name<$($generics)*>($($params)*) -> Result<$ret, Flaky> {
            let value = $body;
            fail_once(&FAILED)?;
            Ok(value)
        }

        #[tokio::test]
        async fn runs_as_written() {
            let capture = Capture::new();
            assert_eq!(capture.wrap($name($($arg),*)).await, Ok($expected));
            assert_eq!(lines(&capture.events()), retried(stringify!($name)));
        }
    };
    // One observed attempt: `fields` takes the step off the quiet path.
    (step_single_sync $name:ident [$($generics:tt)*] ($($params:tt)*) -> $ret:ty $body:block
        skip($($skip:ident),*) call($($arg:expr),*) => $expected:expr) => {
        #[tasker::step(max_attempts = 1, fields(path = "single"))]
        fn $name<$($generics)*>($($params)*) -> $ret $body

        #[test]
        fn runs_as_written() {
            let capture = Capture::new();
            assert_eq!(capture.run(|| $name($($arg),*)), $expected);
            assert_eq!(lines(&capture.events()), once(stringify!($name), 1));
        }
    };
    (step_skip_if_sync $name:ident [$($generics:tt)*] ($($params:tt)*) -> $ret:ty $body:block
        skip($($skip:ident),*) call($($arg:expr),*) => $expected:expr) => {
        never_skip!($($skip),*);

        #[tasker::step(max_attempts = 1, skip_if = never)]
        fn $name<$($generics)*>($($params)*) -> $ret $body

        #[test]
        fn runs_as_written() {
            let capture = Capture::new();
            assert_eq!(capture.run(|| $name($($arg),*)), $expected);
            assert_eq!(lines(&capture.events()), once(stringify!($name), 1));
        }
    };
    (step_skip_if_retry_async $name:ident [$($generics:tt)*] ($($params:tt)*) -> $ret:ty $body:block
        skip($($skip:ident),*) call($($arg:expr),*) => $expected:expr) => {
        never_skip!($($skip),*);
        static FAILED: AtomicBool = AtomicBool::new(false);

        #[tasker::step(max_attempts = 2, backoff_ms = 1, skip_if = never)]
        async fn $name<$($generics)*>($($params)*) -> Result<$ret, Flaky> {
            let value = $body;
            fail_once(&FAILED)?;
            Ok(value)
        }

        #[tokio::test]
        async fn runs_as_written() {
            let capture = Capture::new();
            assert_eq!(capture.wrap($name($($arg),*)).await, Ok($expected));
            assert_eq!(lines(&capture.events()), retried(stringify!($name)));
        }
    };
    // Attempts with a time limit, once and retried.
    (step_timeout_once_async $name:ident [$($generics:tt)*] ($($params:tt)*) -> $ret:ty $body:block
        skip($($skip:ident),*) call($($arg:expr),*) => $expected:expr) => {
        #[tasker::step(max_attempts = 1, timeout_ms = 60000)]
        async fn $name<$($generics)*>($($params)*) -> Result<$ret, Flaky> {
            Ok($body)
        }

        #[tokio::test]
        async fn runs_as_written() {
            let capture = Capture::new();
            assert_eq!(capture.wrap($name($($arg),*)).await, Ok($expected));
            assert_eq!(lines(&capture.events()), once(stringify!($name), 1));
        }
    };
    (step_timeout_retry_async $name:ident [$($generics:tt)*] ($($params:tt)*) -> $ret:ty $body:block
        skip($($skip:ident),*) call($($arg:expr),*) => $expected:expr) => {
        static FAILED: AtomicBool = AtomicBool::new(false);

        #[tasker::step(max_attempts = 2, backoff_ms = 1, timeout_ms = 60000)]
        async fn $name<$($generics)*>($($params)*) -> Result<$ret, Flaky> {
            let value = $body;
            fail_once(&FAILED)?;
            Ok(value)
        }

        #[tokio::test]
        async fn runs_as_written() {
            let capture = Capture::new();
            assert_eq!(capture.wrap($name($($arg),*)).await, Ok($expected));
            assert_eq!(lines(&capture.events()), retried(stringify!($name)));
        }
    };
    (method_ref_retry_sync $name:ident [$($generics:tt)*] ($($params:tt)*) -> $ret:ty $body:block
        skip($($skip:ident),*) call($($arg:expr),*) => $expected:expr) => {
        static FAILED: AtomicBool = AtomicBool::new(false);
        struct Host;

        impl Host {
            #[tasker::step(max_attempts = 2, backoff_ms = 1)]
            fn $name<$($generics)*>(&self, $($params)*) -> Result<$ret, Flaky> {
                let value = $body;
                fail_once(&FAILED)?;
                Ok(value)
            }
        }

        #[test]
        fn runs_as_written() {
            let capture = Capture::new();
            assert_eq!(capture.run(|| Host.$name($($arg),*)), Ok($expected));
            assert_eq!(lines(&capture.events()), retried(stringify!($name)));
        }
    };
    (method_mut_once_async $name:ident [$($generics:tt)*] ($($params:tt)*) -> $ret:ty $body:block
        skip($($skip:ident),*) call($($arg:expr),*) => $expected:expr) => {
        struct Host {
            calls: u32,
        }

        impl Host {
            #[tasker::step(max_attempts = 1)]
            async fn $name<$($generics)*>(&mut self, $($params)*) -> $ret {
                self.calls += 1;
                $body
            }
        }

        #[tokio::test]
        async fn runs_as_written() {
            let capture = Capture::new();
            let mut host = Host { calls: 0 };
            assert_eq!(capture.wrap(host.$name($($arg),*)).await, $expected);
            assert_eq!(host.calls, 1);
            assert_eq!(lines(&capture.events()), once(stringify!($name), 1));
        }
    };
    (method_mut_retry_async $name:ident [$($generics:tt)*] ($($params:tt)*) -> $ret:ty $body:block
        skip($($skip:ident),*) call($($arg:expr),*) => $expected:expr) => {
        struct Host {
            calls: u32,
        }

        impl Host {
            #[tasker::step(max_attempts = 2, backoff_ms = 1)]
            async fn $name<$($generics)*>(&mut self, $($params)*) -> Result<$ret, Flaky> {
                self.calls += 1;
                let value = $body;
                if self.calls == 1 {
                    return Err(Flaky);
                }
                Ok(value)
            }
        }

        #[tokio::test]
        async fn runs_as_written() {
            let capture = Capture::new();
            let mut host = Host { calls: 0 };
            assert_eq!(capture.wrap(host.$name($($arg),*)).await, Ok($expected));
            assert_eq!(host.calls, 2);
            assert_eq!(lines(&capture.events()), retried(stringify!($name)));
        }
    };
    (task_sync $name:ident [$($generics:tt)*] ($($params:tt)*) -> $ret:ty $body:block
        skip($($skip:ident),*) call($($arg:expr),*) => $expected:expr) => {
        #[tasker::task]
        fn $name<$($generics)*>($($params)*) -> $ret $body

        #[test]
        fn runs_as_written() {
            let capture = Capture::new();
            assert_eq!(capture.run(|| $name($($arg),*)), $expected);
            assert_eq!(lines(&capture.events()), task());
        }
    };
    (task_async $name:ident [$($generics:tt)*] ($($params:tt)*) -> $ret:ty $body:block
        skip($($skip:ident),*) call($($arg:expr),*) => $expected:expr) => {
        #[tasker::task]
        async fn $name<$($generics)*>($($params)*) -> $ret $body

        #[tokio::test]
        async fn runs_as_written() {
            let capture = Capture::new();
            assert_eq!(capture.wrap($name($($arg),*)).await, $expected);
            assert_eq!(lines(&capture.events()), task());
        }
    };
    (joined_async $name:ident [$($generics:tt)*] ($($params:tt)*) -> $ret:ty $body:block
        skip($($skip:ident),*) call($($arg:expr),*) => $expected:expr) => {
        #[tasker::step(max_attempts = 1)]
        async fn $name<$($generics)*>($($params)*) -> $ret $body

        #[tokio::test]
        async fn runs_as_written() {
            let capture = Capture::new();
            let (first, second) = capture
                .wrap(async { tasker::join!($name($($arg),*), $name($($arg),*)) })
                .await;
            assert_eq!((first, second), ($expected, $expected));
            assert_eq!(lines(&capture.events()), joined(stringify!($name)));
        }
    };
}

/// Every shape of `$shapes` on the path `$path`, one module per shape.
macro_rules! cases {
    ($path:ident {
        $($name:ident [$($generics:tt)*] ($($params:tt)*) -> $ret:ty $body:block
            skip($($skip:ident),*) call($($arg:expr),*) => $expected:expr;)*
    }) => {
        mod $path {
            #[allow(unused_imports)]
            use super::*;

            $(
                mod $name {
                    #[allow(unused_imports)]
                    use super::*;

                    case!($path $name [$($generics)*] ($($params)*) -> $ret $body
                        skip($($skip),*) call($($arg),*) => $expected);
                }
            )*
        }
    };
}

/// Every shape on every path.
macro_rules! matrix {
    (paths: [$($path:ident),* $(,)?] shapes: $shapes:tt) => {
        $(cases!($path $shapes);)*
    };
}

matrix! {
    paths: [
        step_once_sync,
        step_once_async,
        step_cannot_fail_sync,
        step_retry_sync,
        step_retry_async,
        step_single_sync,
        step_skip_if_sync,
        step_skip_if_retry_async,
        step_timeout_once_async,
        step_timeout_retry_async,
        method_ref_retry_sync,
        method_mut_once_async,
        method_mut_retry_async,
        task_sync,
        task_async,
        joined_async,
    ]
    shapes: {
        mut_value [] (mut n: u32) -> u32 {
            n += 1;
            n
        } skip(A) call(41) => 42;
        mut_owned [] (mut digits: Vec<u32>) -> Vec<u32> {
            digits.push(2);
            digits
        } skip(A) call(vec![4]) => vec![4, 2];
        tuple_pattern [] ((tens, ones): (u32, u32)) -> u32 {
            tens * 10 + ones
        } skip(A) call((4, 2)) => 42;
        struct_pattern [] (Pair { left, right }: Pair) -> u32 {
            left * 10 + right
        } skip(A) call(Pair { left: 4, right: 2 }) => 42;
        wildcard [] (_: u32, n: u32) -> u32 {
            n
        } skip(A, B) call(7, 42) => 42;
        mixed [] ((tens, _): (u32, u32), mut ones: u32, _: &str) -> u32 {
            ones += tens * 10;
            ones
        } skip(A, B, C) call((4, 9), 2, "unused") => 42;
        shared_reference [] (n: &u32) -> u32 {
            *n + 1
        } skip(A) call(&41) => 42;
        mutable_reference [] (digits: &mut Vec<u32>) -> u32 {
            // Idempotent, so that a retried attempt sees what the first saw.
            digits.truncate(1);
            digits.push(2);
            digits[0] * 10 + digits[1]
        } skip(A) call(Box::leak(Box::new(vec![4]))) => 42;
        impl_trait [] (n: impl Into<u32> + Clone) -> u32 {
            n.into()
        } skip(A) call(42_u8) => 42;
        generic [T: Into<u32> + Clone] (n: T, mut offset: u32) -> u32 {
            offset += n.into();
            offset
        } skip(A, B) call(40_u16, 2) => 42;
        lifetime ['a] (text: &'a str, mut trim: bool) -> &'a str {
            trim &= !text.is_empty();
            if trim { text.trim() } else { text }
        } skip(A, B) call(" 42 ", true) => "42";
    }
}

/// A non-`Clone` value: a step that cannot fail takes it by value under the default retries.
#[derive(Debug, PartialEq)]
struct Ticket(u32);

/// An alias the macro cannot see through: only the type system knows it is not a `Result`.
type Count = u32;

#[tasker::step]
fn redeem(ticket: Ticket, mut bonus: u32) -> Count {
    bonus += ticket.0;
    bonus
}

#[tasker::step]
async fn redeem_later((ticket, _): (Ticket, u32)) -> Ticket {
    ticket
}

#[test]
fn step_that_cannot_fail_takes_non_clone_arguments_by_value() {
    let capture = Capture::new();
    assert_eq!(capture.run(|| redeem(Ticket(40), 2)), 42);
    assert_eq!(lines(&capture.events()), once("redeem", 3));
}

#[tokio::test]
async fn async_step_that_cannot_fail_takes_non_clone_arguments_by_value() {
    let capture = Capture::new();
    assert_eq!(
        capture.wrap(redeem_later((Ticket(42), 0))).await,
        Ticket(42)
    );
    assert_eq!(lines(&capture.events()), once("redeem_later", 3));
}
