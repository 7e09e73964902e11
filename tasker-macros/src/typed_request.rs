//! Typed enqueue: beside a free `#[task] fn fulfill(order: Order) -> Result<Shipment, E>`, a
//! `struct fulfill {}` (type namespace only, so it does not clash with the function) whose
//! `request(order)` makes a `TypedRequest<Order, Shipment>`.
//!
//! The bounds of `request` are written `for<'__tasker> Order: TaskInput`: a higher-ranked bound
//! is checked where `request` is called, not where it is defined, so a task that cannot be
//! enqueued still compiles (and runs inline), and only a call to its `request` is an error,
//! with the message of the runtime's diagnostic trait.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{GenericArgument, PathArguments, Type};

use crate::item::{Argument, Function, Shape};

/// The struct and its `request` for the task `name` at `version` (tokens of a `&'static str`),
/// with generated code under `p` (`::tasker::__private`). Nothing for a method: a struct cannot
/// be declared in an `impl` block.
pub(crate) fn expand(
    p: &TokenStream,
    function: &Function,
    name: &str,
    version: &TokenStream,
) -> TokenStream {
    let is_method = function
        .arguments
        .iter()
        .any(|argument| matches!(argument, Argument::Receiver { .. }))
        || matches!(function.shape, Shape::AsyncTrait { .. });
    if is_method {
        return TokenStream::new();
    }
    let sig = &function.item.sig;
    let ident = &sig.ident;
    let vis = &function.item.vis;
    let output = ok_type(function.return_type());
    let struct_doc = format!(
        "Enqueues the task `{name}`: `{ident}::request(…)` makes the typed request that \
         `tasker::Runtime::enqueue` takes."
    );
    let request_doc = format!(
        "A request for the task `{name}` at this version, whose handle's `wait()` gives the \
         task's output type."
    );
    let owned_and_named = sig.generics.params.is_empty() && names_owned_types(&output);
    let request = match function.arguments.as_slice() {
        [] if owned_and_named => quote_spanned! {output.span()=>
            #[doc = #request_doc]
            #vis fn request() -> #p::TypedRequest<(), #output>
            where
                for<'__tasker> #output: #p::TaskOutput,
            {
                #p::TypedRequest::new(#name, #version, &())
            }
        },
        [Argument::Owned { ty, .. }] if owned_and_named && names_owned_types(ty) => {
            let bounds = quote_spanned! {ty.span()=> for<'__tasker> #ty: #p::TaskInput, };
            let output_bound =
                quote_spanned! {output.span()=> for<'__tasker> #output: #p::TaskOutput, };
            quote! {
                #[doc = #request_doc]
                #vis fn request(input: #ty) -> #p::TypedRequest<#ty, #output>
                where
                    #bounds
                    #output_bound
                {
                    #p::TypedRequest::new(#name, #version, &input)
                }
            }
        }
        arguments => {
            let several = arguments.len() > 1;
            let (span, reason) = if several {
                (sig.inputs.span(), quote!(OneArgument))
            } else {
                (sig.span(), quote!(NamedOwnedTypes))
            };
            quote_spanned! {span=>
                #[doc = #request_doc]
                #vis fn request<__TaskerInput>(input: __TaskerInput)
                    -> #p::TypedRequest<__TaskerInput, ()>
                where
                    for<'__tasker> #p::NotEnqueueable: #p::#reason<#ident>,
                {
                    let _ = input;
                    #p::TypedRequest::not_enqueueable(#name, #version)
                }
            }
        }
    };
    quote! {
        #[doc = #struct_doc]
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #ident {}

        #[allow(dead_code)]
        impl #ident {
            #request
        }
    }
}

/// The type a handle waits for: `T` of a return type spelled `…Result<T, …>` (`Result`,
/// `io::Result`, `anyhow::Result`, aliases named so), else the return type itself.
fn ok_type(returned: Type) -> Type {
    if let Type::Path(path) = &returned {
        if let Some(last) = path.path.segments.last() {
            if last.ident.to_string().ends_with("Result") {
                if let PathArguments::AngleBracketed(arguments) = &last.arguments {
                    if let Some(GenericArgument::Type(ok)) = arguments.args.first() {
                        return ok.clone();
                    }
                }
            }
        }
    }
    returned
}

/// Whether `ty` is owned and nameable outside the function: no reference, lifetime or
/// `impl Trait`.
fn names_owned_types(ty: &Type) -> bool {
    struct Finder(bool);
    impl Visit<'_> for Finder {
        fn visit_type_impl_trait(&mut self, _: &syn::TypeImplTrait) {
            self.0 = false;
        }
        fn visit_type_reference(&mut self, _: &syn::TypeReference) {
            self.0 = false;
        }
        fn visit_lifetime(&mut self, _: &syn::Lifetime) {
            self.0 = false;
        }
    }
    let mut finder = Finder(true);
    finder.visit_type(ty);
    finder.0
}
