//! The annotated function, read into what the expansion needs: its shape (sync, async, or an
//! `#[async_trait]` method already rewritten to return a boxed future), its return type, and its
//! arguments.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{
    Block, Expr, FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, ReturnType, Stmt, Type,
    TypeParamBound,
};

use crate::ctxt::Ctxt;

/// How the body runs.
pub(crate) enum Shape {
    /// `fn`.
    Sync,
    /// `async fn`.
    Async,
    /// A method already expanded by `#[async_trait]`: a sync fn whose last statement is
    /// `Box::pin(async move { … })`; the step wraps that inner block.
    AsyncTrait {
        /// The future's `Output`.
        output: Box<Type>,
    },
}

/// One argument of the function.
pub(crate) enum Argument {
    /// `self`, `&self`, `&mut self`.
    Receiver { by_value: bool, span: Span },
    /// A reference: shared by every attempt, never cloned.
    Borrowed { name: Ident },
    /// A value: each attempt gets a clone (the last one the original).
    Owned {
        /// The name it has in the signature after the expansion (`__tasker_arg_N` for patterns).
        name: Ident,
        /// The pattern the body expects, bound per attempt.
        pattern: Pat,
        /// The argument's type, for error spans.
        ty: Box<Type>,
    },
}

impl Argument {
    /// The binding the body expects, when it differs from the name in the signature: a `mut`
    /// name or a destructuring pattern (`let (a, b) = __tasker_arg_0;`). Every path that runs the
    /// body makes it, from the argument itself or from the retry slot.
    pub(crate) fn rebinding(&self) -> Option<(&Ident, &Pat)> {
        let Argument::Owned { name, pattern, .. } = self else {
            return None;
        };
        match pattern {
            Pat::Ident(ident)
                if ident.mutability.is_none()
                    && ident.by_ref.is_none()
                    && ident.subpat.is_none()
                    && ident.ident == *name =>
            {
                None
            }
            _ => Some((name, pattern)),
        }
    }
}

/// The annotated function, with its arguments renamed for the expansion.
pub(crate) struct Function {
    pub(crate) item: ItemFn,
    pub(crate) shape: Shape,
    pub(crate) arguments: Vec<Argument>,
}

impl Function {
    /// Reads `item`, renaming pattern arguments to plain identifiers so the expansion can refer to
    /// them. Misuses are reported to `cx`.
    pub(crate) fn analyze(cx: &mut Ctxt, mut item: ItemFn, what: &str) -> Function {
        if let Some(constness) = &item.sig.constness {
            cx.error_spanned_by(
                constness,
                format_args!(
                    "`#[tasker::{what}]` cannot be used on a `const fn`: it emits events when \
                     called at run time; remove `const`"
                ),
            );
        }
        if let Some(variadic) = &item.sig.variadic {
            cx.error_spanned_by(
                variadic,
                format_args!("`#[tasker::{what}]` cannot be used on a variadic function"),
            );
        }
        let shape = if item.sig.asyncness.is_some() {
            Shape::Async
        } else if let Some(output) = async_trait_output(&item) {
            reborrow_async_trait_self(&mut item);
            Shape::AsyncTrait { output }
        } else {
            Shape::Sync
        };
        let arguments = item
            .sig
            .inputs
            .iter_mut()
            .enumerate()
            .map(|(index, input)| match input {
                FnArg::Receiver(receiver) => Argument::Receiver {
                    by_value: receiver.reference.is_none(),
                    span: receiver.self_token.span(),
                },
                FnArg::Typed(typed) => {
                    if let Type::Reference(_) = &*typed.ty {
                        if let Pat::Ident(ident) = &*typed.pat {
                            if ident.by_ref.is_none() && ident.subpat.is_none() {
                                return Argument::Borrowed {
                                    name: ident.ident.clone(),
                                };
                            }
                        }
                    }
                    let pattern = (*typed.pat).clone();
                    let name = match &mut *typed.pat {
                        // Plain `name` or `mut name`: keep the name, move `mut` to the per-attempt
                        // binding.
                        Pat::Ident(ident) if ident.by_ref.is_none() && ident.subpat.is_none() => {
                            ident.mutability = None;
                            ident.ident.clone()
                        }
                        other => {
                            let name = Ident::new(&format!("__tasker_arg_{index}"), other.span());
                            *other = syn::parse_quote!(#name);
                            name
                        }
                    };
                    Argument::Owned {
                        name,
                        pattern,
                        ty: typed.ty.clone(),
                    }
                }
            })
            .collect();
        Function {
            item,
            shape,
            arguments,
        }
    }

    /// The declared return type, `()` when there is none.
    pub(crate) fn return_type(&self) -> Type {
        match (&self.shape, &self.item.sig.output) {
            (Shape::AsyncTrait { output }, _) => (**output).clone(),
            (_, ReturnType::Type(_, ty)) => (**ty).clone(),
            (_, ReturnType::Default) => syn::parse_quote!(()),
        }
    }

    /// The return type as a `let` annotation: `None` where it cannot be written there (it
    /// contains `impl Trait`), so the value's type is inferred instead.
    pub(crate) fn return_annotation(&self) -> Option<Type> {
        let ty = self.return_type();
        let mut finder = ImplTraitFinder(false);
        finder.visit_type(&ty);
        (!finder.0).then_some(ty)
    }

    /// The block the expansion wraps: the function's, or the one inside `Box::pin(async move …)`.
    pub(crate) fn body(&self) -> &Block {
        match &self.shape {
            Shape::AsyncTrait { .. } => {
                inner_async_block(&self.item.block).unwrap_or(&self.item.block)
            }
            _ => &self.item.block,
        }
    }

    /// The receiver, if it is taken by value.
    pub(crate) fn receiver_by_value(&self) -> Option<Span> {
        self.arguments.iter().find_map(|argument| match argument {
            Argument::Receiver {
                by_value: true,
                span,
            } => Some(*span),
            _ => None,
        })
    }

    /// Whether the body is async (directly or through `#[async_trait]`).
    pub(crate) fn is_async(&self) -> bool {
        !matches!(self.shape, Shape::Sync)
    }
}

struct ImplTraitFinder(bool);

impl Visit<'_> for ImplTraitFinder {
    fn visit_type_impl_trait(&mut self, _: &syn::TypeImplTrait) {
        self.0 = true;
    }
}

/// The `T` of a `Pin<Box<dyn Future<Output = T> + …>>` return type, when the body ends in
/// `Box::pin(async move { … })`: the shape `#[async_trait]` gives a method.
fn async_trait_output(item: &ItemFn) -> Option<Box<Type>> {
    inner_async_block(&item.block)?;
    let ReturnType::Type(_, ty) = &item.sig.output else {
        return None;
    };
    let pinned = last_generic_type(ty, "Pin")?;
    let boxed = last_generic_type(pinned, "Box")?;
    let Type::TraitObject(object) = boxed else {
        return None;
    };
    object.bounds.iter().find_map(|bound| {
        let TypeParamBound::Trait(bound) = bound else {
            return None;
        };
        let segment = bound.path.segments.last()?;
        if segment.ident != "Future" {
            return None;
        }
        let PathArguments::AngleBracketed(arguments) = &segment.arguments else {
            return None;
        };
        arguments.args.iter().find_map(|argument| match argument {
            GenericArgument::AssocType(assoc) if assoc.ident == "Output" => {
                Some(Box::new(assoc.ty.clone()))
            }
            _ => None,
        })
    })
}

fn last_generic_type<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(path) = ty else { return None };
    let segment = path.path.segments.last()?;
    if segment.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(arguments) = &segment.arguments else {
        return None;
    };
    arguments.args.iter().find_map(|argument| match argument {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    })
}

fn inner_async_block(block: &Block) -> Option<&Block> {
    let Some(Stmt::Expr(Expr::Call(call), None)) = block.stmts.last() else {
        return None;
    };
    let Expr::Path(function) = &*call.func else {
        return None;
    };
    let segments: Vec<_> = function
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    if !segments.ends_with(&["Box".to_owned(), "pin".to_owned()]) || call.args.len() != 1 {
        return None;
    }
    match call.args.first() {
        Some(Expr::Async(future)) if future.capture.is_some() => Some(&future.block),
        _ => None,
    }
}

/// `#[async_trait]` starts the body with `let mut __self = self;`, which moves a `&mut self` into
/// the first attempt; a reborrow, `let mut __self = &mut *self;`, lets every attempt borrow it.
fn reborrow_async_trait_self(item: &mut ItemFn) {
    let mutable_receiver = item.sig.inputs.iter().any(|input| {
        matches!(input, FnArg::Receiver(receiver)
            if receiver.reference.is_some() && receiver.mutability.is_some())
    });
    if !mutable_receiver {
        return;
    }
    let Some(Stmt::Expr(Expr::Call(call), None)) = item.block.stmts.last_mut() else {
        return;
    };
    let Some(Expr::Async(future)) = call.args.first_mut() else {
        return;
    };
    for statement in &mut future.block.stmts {
        let Stmt::Local(local) = statement else {
            continue;
        };
        let Pat::Ident(binding) = &local.pat else {
            continue;
        };
        let Some(init) = &mut local.init else {
            continue;
        };
        let moves_self = matches!(
            &*init.expr,
            Expr::Path(path) if path.qself.is_none() && path.path.is_ident("self")
        );
        if binding.ident == "__self" && moves_self {
            let self_token = &init.expr;
            *init.expr = syn::parse_quote_spanned!(self_token.span()=> &mut *#self_token);
            return;
        }
    }
}

/// Replaces the block inside `Box::pin(async move { … })` of an `#[async_trait]` method.
pub(crate) fn replace_inner_async_block(block: &mut Block, new: Block) {
    if let Some(Stmt::Expr(Expr::Call(call), None)) = block.stmts.last_mut() {
        if let Some(Expr::Async(future)) = call.args.first_mut() {
            future.block = new;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arguments(item: ItemFn) -> Vec<Option<(String, String)>> {
        let mut cx = Ctxt::default();
        let function = Function::analyze(&mut cx, item, "step");
        assert!(cx.check().is_ok());
        function
            .arguments
            .iter()
            .map(|argument| {
                argument
                    .rebinding()
                    .map(|(name, pattern)| (name.to_string(), quote::quote!(#pattern).to_string()))
            })
            .collect()
    }

    #[test]
    fn mut_names_and_patterns_are_bound_again_and_plain_names_are_not() {
        let item = syn::parse_quote! {
            fn f(&self, plain: u32, mut counter: u32, (a, _): (u32, u32), _: u8, r: &u32, mut m: &mut u32) {}
        };
        assert_eq!(
            arguments(item),
            [
                None,
                None,
                Some(("counter".to_owned(), "mut counter".to_owned())),
                Some(("__tasker_arg_3".to_owned(), "(a , _)".to_owned())),
                Some(("__tasker_arg_4".to_owned(), "_".to_owned())),
                None,
                None,
            ]
        );
    }

    #[test]
    fn the_signature_keeps_plain_names_without_mut() {
        let mut cx = Ctxt::default();
        let item = syn::parse_quote!(
            fn f(mut counter: u32, (a, b): (u32, u32)) {}
        );
        let function = Function::analyze(&mut cx, item, "step");
        let inputs = &function.item.sig.inputs;
        assert_eq!(
            quote::quote!(#inputs).to_string(),
            "counter : u32 , __tasker_arg_1 : (u32 , u32)"
        );
    }
}
