//! Concurrent step calls: [`join!`](crate::join) and [`join_all`], each emitting one
//! `step.find_viable` with the batch's step names before any of them starts.
//!
//! How the names are known before anything runs: the first poll of a join is an *announce* poll.
//! Each argument is polled once with a thread-local flag armed; the first step future that sees
//! the flag records its name and stays pending without starting. Then `step.find_viable` is
//! emitted and the arguments are polled for real.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as PollContext, Poll};

use tasker_telemetry::context::Context;
use tasker_telemetry::{events, Details, Event};

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static BATCH: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
}

/// Called by a starting step: when an announce poll is armed, records `name`, disarms, and
/// returns `true` (the step then stays pending once).
pub(crate) fn announce(name: &'static str) -> bool {
    if !ARMED.with(|armed| armed.replace(false)) {
        return false;
    }
    BATCH.with(|batch| batch.borrow_mut().push(name));
    true
}

/// Runs an announce poll: `poll_each(i)` polls argument `i`; returns the names recorded, in
/// argument order. Nested joins save and restore the outer batch.
fn announce_batch(count: usize, mut poll_each: impl FnMut(usize)) -> Vec<&'static str> {
    let outer_armed = ARMED.with(|armed| armed.replace(false));
    let outer_batch = BATCH.with(|batch| std::mem::take(&mut *batch.borrow_mut()));
    for index in 0..count {
        ARMED.with(|armed| armed.set(true));
        poll_each(index);
        ARMED.with(|armed| armed.set(false));
    }
    let names = BATCH.with(|batch| std::mem::replace(&mut *batch.borrow_mut(), outer_batch));
    // The outer join's argument was this join, not a step: its flag is spent.
    let _ = outer_armed;
    names
}

fn find_viable(names: Vec<&'static str>) {
    if names.is_empty() {
        return;
    }
    let task = Context::with_current(|context| context.task().copied());
    tasker_telemetry::__private::fire(&Event::new(
        task,
        None,
        Details::StepFindViable {
            step_names: Cow::Owned(names),
        },
    ));
}

/// A future, or its output once it finished: one argument of [`join!`](crate::join).
///
/// Support for the macro's generated code, not an API: the only way to get the output out is
/// through [`JoinTuple::take_outputs`], which gives `None` (and changes nothing) until every
/// future has finished, so a pinned future is never moved.
#[doc(hidden)]
#[derive(Debug)]
pub enum MaybeDone<F: Future> {
    /// Still running.
    Future(F),
    /// Finished.
    Done(F::Output),
    /// Output taken.
    Gone,
}

impl<F: Future> MaybeDone<F> {
    /// Wraps a future.
    pub fn new(future: F) -> Self {
        MaybeDone::Future(future)
    }

    /// Polls the future if it is still running; `true` once it has finished.
    pub fn poll_done(self: Pin<&mut Self>, cx: &mut PollContext<'_>) -> bool {
        // SAFETY: the future is structurally pinned; it is only dropped in place, never moved.
        let this = unsafe { self.get_unchecked_mut() };
        match this {
            MaybeDone::Future(future) => match unsafe { Pin::new_unchecked(future) }.poll(cx) {
                Poll::Ready(output) => {
                    *this = MaybeDone::Done(output);
                    true
                }
                Poll::Pending => false,
            },
            MaybeDone::Done(_) => true,
            MaybeDone::Gone => true,
        }
    }

    fn is_done(&self) -> bool {
        matches!(self, MaybeDone::Done(_))
    }

    /// Takes the output of a finished future; `None`, touching nothing, otherwise.
    fn take_output(self: Pin<&mut Self>) -> Option<F::Output> {
        // SAFETY: the value is moved out only when it is `Done`, which holds no future; the
        // output itself is not structurally pinned.
        let this = unsafe { self.get_unchecked_mut() };
        if !this.is_done() {
            return None;
        }
        match std::mem::replace(this, MaybeDone::Gone) {
            MaybeDone::Done(output) => Some(output),
            MaybeDone::Future(_) | MaybeDone::Gone => None,
        }
    }
}

/// A fixed set of futures joined by [`join!`](crate::join): implemented for tuples of
/// [`MaybeDone`] of up to 12 futures. Support for the macro's generated code.
#[doc(hidden)]
pub trait JoinTuple {
    /// The tuple of outputs.
    type Output;
    /// How many futures.
    const LEN: usize;
    /// Polls future `index`; `true` once it has finished.
    fn poll_one(self: Pin<&mut Self>, index: usize, cx: &mut PollContext<'_>) -> bool;
    /// Takes every output once all have finished; before that `None`, and nothing is taken.
    fn take_outputs(self: Pin<&mut Self>) -> Option<Self::Output>;
}

macro_rules! join_tuple {
    ($len:literal: $($name:ident $index:tt),+) => {
        impl<$($name: Future),+> JoinTuple for ($(MaybeDone<$name>,)+) {
            type Output = ($($name::Output,)+);
            const LEN: usize = $len;

            fn poll_one(self: Pin<&mut Self>, index: usize, cx: &mut PollContext<'_>) -> bool {
                // SAFETY: each field is structurally pinned inside the pinned tuple.
                let this = unsafe { self.get_unchecked_mut() };
                match index {
                    $($index => unsafe { Pin::new_unchecked(&mut this.$index) }.poll_done(cx),)+
                    _ => true,
                }
            }

            fn take_outputs(self: Pin<&mut Self>) -> Option<Self::Output> {
                // SAFETY: as above; only finished outputs are moved out.
                let this = unsafe { self.get_unchecked_mut() };
                // All or nothing: an output taken before a later one turns out unfinished would
                // be lost.
                if !($(this.$index.is_done())&&+) {
                    return None;
                }
                Some(($(unsafe { Pin::new_unchecked(&mut this.$index) }.take_output()?,)+))
            }
        }
    };
}

join_tuple!(1: A 0);
join_tuple!(2: A 0, B 1);
join_tuple!(3: A 0, B 1, C 2);
join_tuple!(4: A 0, B 1, C 2, D 3);
join_tuple!(5: A 0, B 1, C 2, D 3, E 4);
join_tuple!(6: A 0, B 1, C 2, D 3, E 4, F 5);
join_tuple!(7: A 0, B 1, C 2, D 3, E 4, F 5, G 6);
join_tuple!(8: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
join_tuple!(9: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
join_tuple!(10: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
join_tuple!(11: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);
join_tuple!(12: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11);

/// The future of [`join!`](crate::join).
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Join<T> {
    futures: T,
    announced: bool,
}

impl<T: JoinTuple> Join<T> {
    /// Joins a tuple of [`MaybeDone`]s.
    pub fn new(futures: T) -> Self {
        Join {
            futures,
            announced: false,
        }
    }
}

impl<T: JoinTuple> Future for Join<T> {
    type Output = T::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut PollContext<'_>) -> Poll<T::Output> {
        // SAFETY: `futures` is structurally pinned and never moved.
        let this = unsafe { self.get_unchecked_mut() };
        let mut futures = unsafe { Pin::new_unchecked(&mut this.futures) };
        if !std::mem::replace(&mut this.announced, true) && events::listening() {
            let names = announce_batch(T::LEN, |index| {
                futures.as_mut().poll_one(index, cx);
            });
            find_viable(names);
        }
        let mut finished = true;
        for index in 0..T::LEN {
            finished &= futures.as_mut().poll_one(index, cx);
        }
        match finished.then(|| futures.take_outputs()).flatten() {
            Some(outputs) => Poll::Ready(outputs),
            None => Poll::Pending,
        }
    }
}

/// Runs step calls (or any futures) concurrently inside the current task and returns their
/// outputs as a tuple; like `tokio::join!`, it awaits them itself, so use it inside `async` code. Emits one `step.find_viable` with the steps' names, in argument order,
/// before any of them emits `step.handle`.
///
/// ```
/// # async fn reserve() -> u32 { 1 }
/// # async fn charge() -> u32 { 2 }
/// # async fn example() {
/// let (reservation, receipt) = tasker::join!(reserve(), charge());
/// # }
/// ```
#[macro_export]
macro_rules! join {
    ($($future:expr),+ $(,)?) => {
        $crate::__private::batch::Join::new(($($crate::__private::batch::MaybeDone::new($future),)+)).await
    };
}

/// The future of [`join_all`].
#[must_use = "futures do nothing unless awaited"]
pub struct JoinAll<F: Future> {
    futures: Pin<Box<[MaybeDone<F>]>>,
    announced: bool,
}

impl<F: Future> std::fmt::Debug for JoinAll<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinAll")
            .field("len", &self.futures.len())
            .finish()
    }
}

/// Runs a dynamic batch of step calls concurrently, like [`join!`](crate::join), and returns
/// their outputs in order.
///
/// ```
/// # async fn ship(_: u32) -> u32 { 1 }
/// # async fn example() {
/// let receipts = tasker::join_all((0..3).map(ship)).await;
/// assert_eq!(receipts.len(), 3);
/// # }
/// ```
pub fn join_all<I>(futures: I) -> JoinAll<I::Item>
where
    I: IntoIterator,
    I::Item: Future,
{
    JoinAll {
        futures: Box::into_pin(futures.into_iter().map(MaybeDone::new).collect()),
        announced: false,
    }
}

/// Element `index` of a pinned boxed slice, pinned.
fn slot<F: Future>(futures: &mut Pin<Box<[MaybeDone<F>]>>, index: usize) -> Pin<&mut MaybeDone<F>> {
    // SAFETY: the boxed slice is pinned; its elements are never moved.
    unsafe {
        futures
            .as_mut()
            .map_unchecked_mut(|slice| &mut slice[index])
    }
}

impl<F: Future> Future for JoinAll<F> {
    type Output = Vec<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut PollContext<'_>) -> Poll<Vec<F::Output>> {
        let this = &mut *self;
        let count = this.futures.len();
        let futures = &mut this.futures;
        if !std::mem::replace(&mut this.announced, true) && events::listening() {
            let names = announce_batch(count, |index| {
                slot(futures, index).poll_done(cx);
            });
            find_viable(names);
        }
        let mut finished = true;
        for index in 0..count {
            finished &= slot(futures, index).poll_done(cx);
        }
        if !finished || !futures.iter().all(MaybeDone::is_done) {
            return Poll::Pending;
        }
        let outputs: Option<Vec<_>> = (0..count)
            .map(|index| slot(futures, index).take_output())
            .collect();
        match outputs {
            Some(outputs) => Poll::Ready(outputs),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    /// Ready on its second poll.
    struct SecondPoll {
        value: u32,
        polled: bool,
    }

    impl Future for SecondPoll {
        type Output = u32;
        fn poll(mut self: Pin<&mut Self>, _cx: &mut PollContext<'_>) -> Poll<u32> {
            if std::mem::replace(&mut self.polled, true) {
                Poll::Ready(self.value)
            } else {
                Poll::Pending
            }
        }
    }

    #[test]
    fn outputs_are_taken_all_at_once_or_not_at_all() {
        let mut cx = PollContext::from_waker(Waker::noop());
        let mut pair = Box::pin((
            MaybeDone::new(std::future::ready(1u32)),
            MaybeDone::new(SecondPoll {
                value: 2,
                polled: false,
            }),
        ));
        assert!(pair.as_mut().poll_one(0, &mut cx));
        assert!(!pair.as_mut().poll_one(1, &mut cx));
        assert_eq!(
            pair.as_mut().take_outputs(),
            None,
            "the second is unfinished"
        );
        assert!(
            matches!(pair.0, MaybeDone::Done(1)),
            "the first output is kept"
        );
        assert!(
            matches!(pair.1, MaybeDone::Future(_)),
            "the future is left in place"
        );
        assert!(pair.as_mut().poll_one(1, &mut cx));
        assert_eq!(pair.as_mut().take_outputs(), Some((1, 2)));
        assert_eq!(pair.as_mut().take_outputs(), None, "taken once");
    }

    #[test]
    fn an_unfinished_future_gives_no_output_and_stays_where_it_is() {
        let mut cx = PollContext::from_waker(Waker::noop());
        let mut one = Box::pin(MaybeDone::new(SecondPoll {
            value: 7,
            polled: false,
        }));
        assert!(!one.as_mut().poll_done(&mut cx));
        assert_eq!(one.as_mut().take_output(), None);
        assert!(matches!(
            *one,
            MaybeDone::Future(SecondPoll { polled: true, .. })
        ));
        assert!(one.as_mut().poll_done(&mut cx));
        assert_eq!(one.as_mut().take_output(), Some(7));
        assert!(matches!(*one, MaybeDone::Gone));
    }
}
