//! `Debug` for public errors that shows their message.
//!
//! `fn main() -> Result<(), Box<dyn Error>>` prints an error's `Debug` form, so a derived `Debug`
//! (the fields) would hide the message and its fix. Tasker's errors print
//! `Type::Variant: <message>` instead: the message first-class, the variant still findable.

/// Implements `Debug` as `Type::Variant: <Display>` for an enum (listing its variants, so a new
/// variant is a compile error here rather than a silent gap) or `Type: <Display>` for a struct.
#[doc(hidden)]
#[macro_export]
macro_rules! __debug_shows_message {
    ($error:ident { $($variant:ident),+ $(,)? }) => {
        impl ::core::fmt::Debug for $error {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                let variant = match self {
                    $(Self::$variant { .. } => ::core::stringify!($variant),)+
                };
                ::core::write!(f, "{}::{}: {}", ::core::stringify!($error), variant, self)
            }
        }
    };
    ($error:ident) => {
        impl ::core::fmt::Debug for $error {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::write!(f, "{}: {}", ::core::stringify!($error), self)
            }
        }
    };
}
