//! The value a skipped step returns: `Ok(T::default())` for a `Result<T, E>`, else
//! `Default::default()`.
//!
//! `Result` does not implement `Default`, yet the natural skippable step returns
//! `Result<(), E>`; the expansion picks the right value at compile time with the same autoref
//! specialisation as [`outcome`](crate::outcome): `(&&SkipProbe::<Output>::new()).tasker_skipped()`.

use std::marker::PhantomData;

use crate::diagnostics::SkippedOutput;

/// Names the output type of a skipped step.
pub struct SkipProbe<T>(PhantomData<fn() -> T>);

impl<T> SkipProbe<T> {
    /// A probe for output type `T`.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        SkipProbe(PhantomData)
    }
}

/// Picks `Result<T, E>` with `T: Default`: a skipped step succeeds with `Ok(T::default())`.
pub trait SkipResult<T, E> {
    /// `Ok(T::default())`.
    fn tasker_skipped(&self) -> Result<T, E>;
}

impl<T: Default, E> SkipResult<T, E> for &SkipProbe<Result<T, E>> {
    #[inline]
    fn tasker_skipped(&self) -> Result<T, E> {
        Ok(T::default())
    }
}

/// Picks every other type: `Default::default()`, with a readable error when it is not `Default`.
pub trait SkipDefault<T> {
    /// `T::default()`.
    fn tasker_skipped(&self) -> T
    where
        T: SkippedOutput;
}

impl<T> SkipDefault<T> for SkipProbe<T> {
    #[inline]
    fn tasker_skipped(&self) -> T
    where
        T: SkippedOutput,
    {
        T::skipped()
    }
}

#[cfg(test)]
// The borrows select the impl: that is the whole point of autoref specialisation.
#[allow(clippy::needless_borrow)]
mod tests {
    use super::*;

    #[test]
    fn skipped_result_is_ok_with_the_default_value() {
        let value: Result<u32, String> =
            (&&SkipProbe::<Result<u32, String>>::new()).tasker_skipped();
        assert_eq!(value, Ok(0));
    }

    #[test]
    fn skipped_default_type_is_its_default() {
        let value: Option<u8> = (&&SkipProbe::<Option<u8>>::new()).tasker_skipped();
        assert_eq!(value, None);
        let text: String = (&&SkipProbe::<String>::new()).tasker_skipped();
        assert_eq!(text, "");
    }
}
