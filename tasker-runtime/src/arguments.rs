//! How a retried step's by-value arguments reach each attempt, decided by its output type.
//!
//! Only a step that returns a `Result` can fail and run again, so only its by-value arguments
//! are cloned for the attempts before the last; any other step runs once and gets its
//! arguments themselves, `Clone` or not. Whether the output is a `Result` is known only to the
//! type system (`io::Result<T>` and other aliases), so the expansion asks it through method
//! lookup on a [`Slot`] named with the output type: `Slot::<Output, _>::new(argument)`.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use crate::diagnostics::RetryArgument;
use crate::step::StepRun;

/// A by-value argument of a retried step, kept between attempts; `R` is the step's output type.
///
/// The choice is made by method lookup: `slot.argument(&run)` finds the inherent method of
/// `Slot<Result<T, E>, A>` when the output is a `Result`, and otherwise goes on through `Deref`
/// to [`OnceSlot::argument`], so the expansion needs no trait in scope.
pub struct Slot<R, A> {
    once: OnceSlot<A>,
    output: PhantomData<fn() -> R>,
}

/// The argument of a step whose output is not a `Result`: it cannot fail, so its one attempt
/// gets the argument itself, `Clone` or not.
pub struct OnceSlot<A>(Option<A>);

impl<R, A> Slot<R, A> {
    /// Keeps `argument` for the attempts of a step with output type `R`.
    #[inline]
    pub fn new(argument: A) -> Self {
        Slot {
            once: OnceSlot(Some(argument)),
            output: PhantomData,
        }
    }
}

impl<T, E, A> Slot<Result<T, E>, A> {
    /// The argument for the attempt about to run: a clone while more attempts may follow, the
    /// original on the last one (see [`StepRun::argument`]).
    #[inline]
    pub fn argument(&mut self, run: &StepRun) -> A
    where
        A: RetryArgument,
    {
        run.argument(&mut self.once.0)
    }
}

impl<A> OnceSlot<A> {
    /// The argument itself.
    #[inline]
    pub fn argument(&mut self, _run: &StepRun) -> A {
        // An output that is not a `Result` always succeeds: the loop ends after this attempt.
        self.0
            .take()
            .expect("tasker: a step that cannot fail asked for its argument twice")
    }
}

impl<R, A> Deref for Slot<R, A> {
    type Target = OnceSlot<A>;

    fn deref(&self) -> &OnceSlot<A> {
        &self.once
    }
}

impl<R, A> DerefMut for Slot<R, A> {
    fn deref_mut(&mut self) -> &mut OnceSlot<A> {
        &mut self.once
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RetryPolicy, StepDescriptor};
    use tasker_telemetry::SourceLocation;

    static STEP: StepDescriptor = StepDescriptor {
        name: "probe",
        source: SourceLocation {
            function: "arguments::tests::probe",
            file: file!(),
            line: line!(),
        },
        policy: RetryPolicy::DEFAULT,
        skippable: false,
        timeout: None,
    };

    /// Not `Clone`: only a step that cannot fail may take it by value under retries.
    #[derive(Debug, PartialEq)]
    struct Ticket(u32);

    #[test]
    fn result_output_clones_the_argument_while_attempts_remain() {
        let run = StepRun::start_sync(&STEP);
        let mut slot = Slot::<Result<u32, String>, _>::new(vec![1, 2]);
        assert_eq!(slot.argument(&run), [1, 2]);
        assert_eq!(
            slot.once.0,
            Some(vec![1, 2]),
            "the original stays for the next attempt"
        );
    }

    #[test]
    fn result_alias_output_clones_the_argument() {
        let run = StepRun::start_sync(&STEP);
        let mut slot = Slot::<std::io::Result<()>, _>::new(String::from("order"));
        assert_eq!(slot.argument(&run), "order");
        assert_eq!(slot.once.0.as_deref(), Some("order"));
    }

    #[test]
    fn other_output_moves_the_argument_without_clone() {
        let run = StepRun::start_sync(&STEP);
        let mut slot = Slot::<u32, _>::new(Ticket(7));
        assert_eq!(slot.argument(&run), Ticket(7));
        assert_eq!(slot.once.0, None);
    }
}
