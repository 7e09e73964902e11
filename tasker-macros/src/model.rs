//! The step model: every decision the expansion needs — which path a call takes, how each
//! argument reaches the body, whether outputs are checkpointed — made once from the attribute
//! and the function, before any code is generated (as serde_derive resolves its `Container`).

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Path, Type};

use crate::attr::{PolicyArgs, StepArgs};
use crate::ctxt::Ctxt;
use crate::item::{Function, Shape};

/// How the attempts of a step call run.
pub(crate) enum Attempts {
    /// One attempt and no policy to apply (no skip, bypass, timeout or fields): the body runs
    /// alone when nothing observes it (`quiet`).
    Plain,
    /// One attempt, always observed.
    Single,
    /// Attempts in a loop until one succeeds or the policy says stop; each attempt takes its
    /// by-value arguments from a slot.
    Retry(RetryArguments),
}

/// How a retried step gives its by-value arguments to each attempt.
pub(crate) enum RetryArguments {
    /// Asked of the output type at compile time: cloned for a `Result`, moved for any other
    /// type (which cannot fail, so runs once).
    ByOutput(Box<Type>),
    /// The output cannot be named (it contains `impl Trait`) and may be a `Result`: cloned.
    Cloned,
}

/// A `#[step]`, resolved.
pub(crate) struct Step<'a> {
    pub(crate) args: &'a StepArgs,
    pub(crate) function: Function,
    /// `::tasker::__private`, or the `crate = path` override's.
    pub(crate) private: TokenStream,
    /// The step's name in events.
    pub(crate) name: String,
    pub(crate) attempts: Attempts,
    /// The declared output type, `()` when there is none.
    pub(crate) output: Type,
    /// The output as a `let` annotation, where it can be written (no `impl Trait`).
    pub(crate) annotation: Option<Type>,
    /// The output type an async step replays and records as its checkpoint.
    pub(crate) checkpoint: Option<Type>,
}

impl<'a> Step<'a> {
    /// Decides everything about the expansion of `function` under `args`; misuses go to `cx`.
    pub(crate) fn resolve(cx: &mut Ctxt, args: &'a StepArgs, function: Function) -> Step<'a> {
        check_timeout(cx, &args.policy, &function, "step");
        let output = function.return_type();
        let annotation = function.return_annotation();
        // Only a `Result` can fail; a step whose output certainly is not one runs once.
        let retries = args.policy.retries(true) && !certainly_not_result(&output);
        let attempts = if retries {
            if let Some(span) = function.receiver_by_value() {
                cx.syn_error(syn::Error::new(
                    span,
                    "retrying a step re-runs its body, which would use `self` again after it was \
                     moved; take `&self` or `&mut self`, or set `max_attempts = 1`",
                ));
            }
            Attempts::Retry(match &annotation {
                Some(ty) => RetryArguments::ByOutput(Box::new(ty.clone())),
                None => RetryArguments::Cloned,
            })
        } else if args.skip_if.is_none()
            && args.skippable.is_none()
            && args.policy.timeout_ms.is_none()
            && args.fields.is_none()
        {
            Attempts::Plain
        } else {
            Attempts::Single
        };
        // An async step whose output type is nameable and owned replays a recorded output and
        // records its own; borrowed types are left out because autoref specialisation cannot
        // tell lifetimes apart.
        let checkpoint = match (&function.shape, &annotation) {
            (Shape::Async, Some(ty)) if !contains_impl_trait_or_lifetime(ty) => Some(ty.clone()),
            _ => None,
        };
        Step {
            private: private(&args.krate),
            name: args
                .name
                .as_ref()
                .map_or_else(|| function_name(&function), |name| name.value()),
            args,
            function,
            attempts,
            output,
            annotation,
            checkpoint,
        }
    }

    pub(crate) fn is_async(&self) -> bool {
        self.function.is_async()
    }
}

/// `timeout_ms` needs an async function: a sync one cannot be interrupted.
pub(crate) fn check_timeout(cx: &mut Ctxt, policy: &PolicyArgs, function: &Function, what: &str) {
    if let Some(timeout) = &policy.timeout_ms {
        if !function.is_async() {
            cx.syn_error(timeout.entry_error(format_args!(
                "`timeout_ms` needs an async {what}: a sync function cannot be interrupted; make \
                 it `async fn` or remove `timeout_ms`"
            )));
        }
    }
}

/// The path generated code names the runtime by.
pub(crate) fn private(krate: &Option<Path>) -> TokenStream {
    match krate {
        Some(path) => quote!(#path::__private),
        None => quote!(::tasker::__private),
    }
}

/// The function's name without a raw-identifier prefix.
pub(crate) fn function_name(function: &Function) -> String {
    function
        .item
        .sig
        .ident
        .to_string()
        .trim_start_matches("r#")
        .to_owned()
}

/// Whether `ty` is certainly not a `Result`, from its syntax alone: `()`, tuples, references,
/// arrays, slices, pointers, `fn` types, `!`, `impl Trait` and `dyn Trait`. A path may name a
/// `Result` through an alias, so only the type system can tell (see `RetryArguments::ByOutput`).
fn certainly_not_result(ty: &Type) -> bool {
    match ty {
        Type::Paren(inner) => certainly_not_result(&inner.elem),
        Type::Group(inner) => certainly_not_result(&inner.elem),
        Type::Tuple(_)
        | Type::Reference(_)
        | Type::Array(_)
        | Type::Slice(_)
        | Type::Ptr(_)
        | Type::BareFn(_)
        | Type::Never(_)
        | Type::ImplTrait(_)
        | Type::TraitObject(_) => true,
        _ => false,
    }
}

/// Whether `ty` mentions `impl Trait`, a reference or a lifetime.
pub(crate) fn contains_impl_trait_or_lifetime(ty: &Type) -> bool {
    struct Finder(bool);
    impl syn::visit::Visit<'_> for Finder {
        fn visit_type_impl_trait(&mut self, _: &syn::TypeImplTrait) {
            self.0 = true;
        }
        fn visit_type_reference(&mut self, _: &syn::TypeReference) {
            self.0 = true;
        }
        fn visit_lifetime(&mut self, _: &syn::Lifetime) {
            self.0 = true;
        }
    }
    let mut finder = Finder(false);
    syn::visit::Visit::visit_type(&mut finder, ty);
    finder.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_types_that_cannot_name_a_result_are_certainly_not_one() {
        let types: [Type; 7] = [
            syn::parse_quote!(()),
            syn::parse_quote!((u32, String)),
            syn::parse_quote!(&'a str),
            syn::parse_quote!([u8; 4]),
            syn::parse_quote!(impl Iterator<Item = u32>),
            syn::parse_quote!(Box<dyn Fn()>),
            syn::parse_quote!(!),
        ];
        let expected = [true, true, true, true, true, false, true];
        for (ty, expected) in types.iter().zip(expected) {
            assert_eq!(certainly_not_result(ty), expected, "{}", quote!(#ty));
        }
        // A path may be an alias of a `Result`: only the type system can tell.
        for ty in [
            syn::parse_quote!(u32),
            syn::parse_quote!(io::Result<()>),
            syn::parse_quote!(Count),
            syn::parse_quote!(Self),
        ] {
            let ty: Type = ty;
            assert!(!certainly_not_result(&ty), "{}", quote!(#ty));
        }
    }
}
