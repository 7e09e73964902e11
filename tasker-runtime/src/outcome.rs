//! Success or failure of a returned value, decided from its type at the call site.
//!
//! The macros expand [`classify!`](crate::classify) where the return type is concrete;
//! autoref specialisation then picks, at compile time, whether the value is a `Result` and how to
//! describe its error (source chain, `Display`, `Debug`, or the type's name). Everything else is
//! ordinary generic code here.
//!
//! How the specialisation works: every method takes `&self`, and the call is made on a value with
//! one more `&` than the most specific impl. Method lookup tries the receiver's type, then each
//! dereference in turn, so the impl on the type with the most `&`s wins, then the next, and so
//! on down to the catch-all on the bare type.

use std::any::type_name;
use std::error::Error;
use std::fmt::{self, Debug, Display, Write as _};
use std::marker::PhantomData;

/// How an attempt ended.
#[derive(Clone, Copy)]
pub enum Outcome<'r> {
    /// The value is not an `Err`.
    Success,
    /// The value is an `Err`.
    Failure {
        /// Whether `retry_if` (or the default, every error) allows another attempt.
        retryable: bool,
        /// The error's class and message, computed only when somebody listens.
        error: &'r dyn DescribeError,
    },
}

impl fmt::Debug for Outcome<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Success => f.write_str("Success"),
            Outcome::Failure { retryable, error } => f
                .debug_struct("Failure")
                .field("retryable", retryable)
                .field("class", &error.class())
                .field("message", &error.message())
                .finish(),
        }
    }
}

/// The class and message of an error, as `step.error` and `task.error` report them.
pub trait DescribeError {
    /// `std::any::type_name` of the error type.
    fn class(&self) -> &'static str;
    /// The message: the source chain joined by `: ` where there is one.
    fn message(&self) -> String;
}

/// Probes a returned value: `(&&ResultProbe(&value)).tasker_error()` is `Some(&error)` for an
/// `Err`, `None` for an `Ok`, and `None` for any type that is not a `Result`.
pub struct ResultProbe<'r, T>(pub &'r T);

/// The stand-in error type of values that are not `Result`s.
pub enum NotAnError {}

/// Picks `Result<T, E>`.
pub trait ProbeResult<'r> {
    /// The error type.
    type Error;
    /// The error, if the value is an `Err`.
    fn tasker_error(&self) -> Option<&'r Self::Error>;
}

impl<'r, T, E> ProbeResult<'r> for &ResultProbe<'r, Result<T, E>> {
    type Error = E;
    #[inline]
    fn tasker_error(&self) -> Option<&'r E> {
        self.0.as_ref().err()
    }
}

/// Picks every other type: always a success.
pub trait ProbeOther {
    /// The error, never.
    #[inline]
    fn tasker_error(&self) -> Option<&'static NotAnError> {
        None
    }
}

impl<T> ProbeOther for ResultProbe<'_, T> {}

/// Chooses how to describe an error of type `E`: `(&&&&&Describe(&error)).tasker_describe()`.
pub struct Describe<'r, E: ?Sized>(pub &'r E);

/// An error described by walking its `source()` chain.
pub struct ViaChain<'r>(&'r (dyn Error + 'r), &'static str);
/// An error described by its `Display` in alternate form (which `anyhow` uses for the chain).
pub struct ViaDisplay<'r, E: ?Sized>(&'r E);
/// An error described by its `Debug`.
pub struct ViaDebug<'r, E: ?Sized>(&'r E);
/// An error described by its type name only.
pub struct ViaTypeName<E: ?Sized>(PhantomData<fn() -> *const E>);

/// Level 1: boxed trait-object errors, which do not implement `Error` themselves.
pub trait DescribeBoxed<'r> {
    /// The describer.
    fn tasker_describe(&self) -> ViaChain<'r>;
}
impl<'r> DescribeBoxed<'r> for &&&&Describe<'r, Box<dyn Error>> {
    fn tasker_describe(&self) -> ViaChain<'r> {
        ViaChain(&**self.0, type_name::<Box<dyn Error>>())
    }
}
impl<'r> DescribeBoxed<'r> for &&&&Describe<'r, Box<dyn Error + Send>> {
    fn tasker_describe(&self) -> ViaChain<'r> {
        ViaChain(&**self.0, type_name::<Box<dyn Error + Send>>())
    }
}
impl<'r> DescribeBoxed<'r> for &&&&Describe<'r, Box<dyn Error + Send + Sync>> {
    fn tasker_describe(&self) -> ViaChain<'r> {
        ViaChain(&**self.0, type_name::<Box<dyn Error + Send + Sync>>())
    }
}

/// Level 2: `std::error::Error`.
pub trait DescribeStdError<'r> {
    /// The describer.
    fn tasker_describe(&self) -> ViaChain<'r>;
}
impl<'r, E: Error + 'r> DescribeStdError<'r> for &&&Describe<'r, E> {
    fn tasker_describe(&self) -> ViaChain<'r> {
        ViaChain(self.0, type_name::<E>())
    }
}

/// Level 3: `Display`.
pub trait DescribeDisplay<'r, E: ?Sized> {
    /// The describer.
    fn tasker_describe(&self) -> ViaDisplay<'r, E>;
}
impl<'r, E: Display + ?Sized> DescribeDisplay<'r, E> for &&Describe<'r, E> {
    fn tasker_describe(&self) -> ViaDisplay<'r, E> {
        ViaDisplay(self.0)
    }
}

/// Level 4: `Debug`.
pub trait DescribeDebug<'r, E: ?Sized> {
    /// The describer.
    fn tasker_describe(&self) -> ViaDebug<'r, E>;
}
impl<'r, E: Debug + ?Sized> DescribeDebug<'r, E> for &Describe<'r, E> {
    fn tasker_describe(&self) -> ViaDebug<'r, E> {
        ViaDebug(self.0)
    }
}

/// Level 5: anything, by its type name.
pub trait DescribeAny<E: ?Sized> {
    /// The describer.
    fn tasker_describe(&self) -> ViaTypeName<E>;
}
impl<E: ?Sized> DescribeAny<E> for Describe<'_, E> {
    fn tasker_describe(&self) -> ViaTypeName<E> {
        ViaTypeName(PhantomData)
    }
}

impl DescribeError for ViaChain<'_> {
    fn class(&self) -> &'static str {
        self.1
    }
    fn message(&self) -> String {
        chain_message(self.0)
    }
}

impl<E: Display + ?Sized> DescribeError for ViaDisplay<'_, E> {
    fn class(&self) -> &'static str {
        type_name::<E>()
    }
    fn message(&self) -> String {
        format!("{:#}", self.0)
    }
}

impl<E: Debug + ?Sized> DescribeError for ViaDebug<'_, E> {
    fn class(&self) -> &'static str {
        type_name::<E>()
    }
    fn message(&self) -> String {
        format!("{:?}", self.0)
    }
}

impl<E: ?Sized> DescribeError for ViaTypeName<E> {
    fn class(&self) -> &'static str {
        type_name::<E>()
    }
    fn message(&self) -> String {
        type_name::<E>().to_owned()
    }
}

/// `error` and its sources, joined by `: `; a source whose text is already the end of the
/// message so far is not repeated (many errors print their source themselves).
pub fn chain_message(error: &dyn Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.ends_with(&text) {
            let _ = write!(message, ": {text}");
        }
        source = cause.source();
    }
    message
}

/// A fixed class and message, for panics and cancellations.
pub struct FixedError<'a> {
    /// The class.
    pub class: &'static str,
    /// The message.
    pub message: &'a str,
}

impl DescribeError for FixedError<'_> {
    fn class(&self) -> &'static str {
        self.class
    }
    fn message(&self) -> String {
        self.message.to_owned()
    }
}

/// Classifies `$result` (a reference to the returned value) and passes the [`Outcome`] to
/// `$finish` (a closure-like `|outcome| expr`). With `retry_if = path`, the error decides whether
/// it is retryable through `path(&error)`.
#[doc(hidden)]
#[macro_export]
macro_rules! classify {
    ($result:expr, |$outcome:ident| $finish:expr) => {
        $crate::classify!($result, retry_if = (|_| true), |$outcome| $finish)
    };
    ($result:expr, retry_if = $retry_if:expr, |$outcome:ident| $finish:expr) => {{
        #[allow(unused_imports)]
        use $crate::__private::outcome::{
            DescribeAny as _, DescribeBoxed as _, DescribeDebug as _, DescribeDisplay as _,
            DescribeStdError as _, ProbeOther as _, ProbeResult as _,
        };
        match (&&$crate::__private::outcome::ResultProbe($result)).tasker_error() {
            ::core::option::Option::None => {
                let $outcome = $crate::__private::outcome::Outcome::Success;
                $finish
            }
            ::core::option::Option::Some(error) => {
                let describer =
                    (&&&&&$crate::__private::outcome::Describe(error)).tasker_describe();
                let $outcome = $crate::__private::outcome::Outcome::Failure {
                    retryable: ($retry_if)(error),
                    error: &describer,
                };
                $finish
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use std::io;

    #[test]
    fn io_result_is_classified_with_its_type_and_message() {
        let result: io::Result<u8> = Err(io::Error::other("disk on fire"));
        let seen = crate::classify!(&result, |outcome| match outcome {
            super::Outcome::Failure { retryable, error } =>
                Some((error.class(), error.message(), retryable)),
            super::Outcome::Success => None,
        });
        assert_eq!(
            seen,
            Some(("std::io::error::Error", "disk on fire".to_owned(), true))
        );
    }

    #[test]
    fn ok_and_non_result_values_are_successes() {
        let ok: Result<u8, String> = Ok(1);
        assert!(crate::classify!(&ok, |outcome| matches!(
            outcome,
            super::Outcome::Success
        )));
        let plain = 5_u32;
        assert!(crate::classify!(&plain, |outcome| matches!(
            outcome,
            super::Outcome::Success
        )));
        let unit = ();
        assert!(crate::classify!(&unit, |outcome| matches!(
            outcome,
            super::Outcome::Success
        )));
    }

    #[derive(Debug)]
    struct Outer(io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("could not charge")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn error_chains_are_joined() {
        let result: Result<(), Outer> = Err(Outer(io::Error::other("timeout")));
        let seen = crate::classify!(&result, |outcome| match outcome {
            super::Outcome::Failure { error, .. } => Some((error.class(), error.message())),
            super::Outcome::Success => None,
        });
        assert_eq!(
            seen,
            Some((
                "tasker_runtime::__private::outcome::tests::Outer",
                "could not charge: timeout".to_owned()
            ))
        );
    }

    #[test]
    fn display_debug_and_opaque_errors_are_described() {
        let display: Result<(), String> = Err("plain text".into());
        let seen = crate::classify!(&display, |o| match o {
            super::Outcome::Failure { error, .. } => (error.class(), error.message()),
            super::Outcome::Success => unreachable!(),
        });
        assert_eq!(seen, ("alloc::string::String", "plain text".to_owned()));

        #[derive(Debug)]
        struct OnlyDebug(#[allow(dead_code)] u8);
        let debug: Result<(), OnlyDebug> = Err(OnlyDebug(7));
        let seen = crate::classify!(&debug, |o| match o {
            super::Outcome::Failure { error, .. } => error.message(),
            super::Outcome::Success => unreachable!(),
        });
        assert_eq!(seen, "OnlyDebug(7)");

        struct Opaque;
        let opaque: Result<(), Opaque> = Err(Opaque);
        let seen = crate::classify!(&opaque, |o| match o {
            super::Outcome::Failure { error, .. } => error.message(),
            super::Outcome::Success => unreachable!(),
        });
        assert_eq!(
            seen,
            "tasker_runtime::__private::outcome::tests::display_debug_and_opaque_errors_are_described::Opaque"
        );
    }

    #[test]
    fn boxed_errors_walk_their_chain() {
        let boxed: Result<(), Box<dyn std::error::Error + Send + Sync>> =
            Err(Box::new(Outer(io::Error::other("reset"))));
        let seen = crate::classify!(&boxed, |o| match o {
            super::Outcome::Failure { error, .. } => error.message(),
            super::Outcome::Success => unreachable!(),
        });
        assert_eq!(seen, "could not charge: reset");
    }

    #[test]
    fn retry_if_decides_retryability() {
        let result: Result<(), io::Error> = Err(io::Error::from(io::ErrorKind::PermissionDenied));
        let retryable = crate::classify!(
            &result,
            retry_if = (|error: &io::Error| error.kind() != io::ErrorKind::PermissionDenied),
            |o| match o {
                super::Outcome::Failure { retryable, .. } => retryable,
                super::Outcome::Success => unreachable!(),
            }
        );
        assert!(!retryable);
    }
}
