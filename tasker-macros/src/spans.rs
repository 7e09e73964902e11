//! Spans for generated code whose errors must point at the user's tokens (an argument, the return
//! type) rather than at the attribute.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use syn::spanned::Spanned as _;
use syn::{GenericArgument, PathArguments, Type};

/// `tokens` with every span set to `span`, so that a trait error inside them is reported at the
/// user's token `span` comes from instead of at the attribute. Never give it the expansion's own
/// locals (`__tasker_step`): with the user's span they would resolve with the user's hygiene, and
/// a step written inside a `macro_rules!` could not see them.
pub(crate) fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|token| match token {
            TokenTree::Group(group) => {
                let mut respanned = Group::new(group.delimiter(), respan(group.stream(), span));
                respanned.set_span(span);
                TokenTree::Group(respanned)
            }
            mut other => {
                other.set_span(span);
                other
            }
        })
        .collect()
}

/// The spans of the first and the last token of `tokens`.
pub(crate) fn span_range(tokens: TokenStream) -> (Span, Span) {
    let mut spans = tokens.into_iter().map(|token| token.span());
    let first = spans.next().unwrap_or_else(Span::call_site);
    (first, spans.last().unwrap_or(first))
}

/// Where to report a problem with the error type of `ty`: at `E` in `Result<T, E>`, else at the
/// type (an alias such as `io::Result<T>` does not show its error type).
pub(crate) fn error_type_span(ty: &Type) -> Span {
    if let Type::Path(path) = ty {
        if let Some(PathArguments::AngleBracketed(arguments)) =
            path.path.segments.last().map(|segment| &segment.arguments)
        {
            let types: Vec<_> = arguments
                .args
                .iter()
                .filter_map(|argument| match argument {
                    GenericArgument::Type(ty) => Some(ty),
                    _ => None,
                })
                .collect();
            if let [_, error] = types[..] {
                return type_span(error);
            }
        }
    }
    type_span(ty)
}

/// The token that names `ty`: `Result` in `std::io::Result<u32>`, else its first token.
pub(crate) fn type_span(ty: &Type) -> Span {
    match ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .map_or_else(|| ty.span(), |segment| segment.ident.span()),
        _ => ty.span(),
    }
}
