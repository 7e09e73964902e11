//! The attribute arguments of `#[step(...)]` and `#[task(...)]`, parsed into a model. Every key is
//! read in one place, with one error message per mistake.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens as _;
use syn::meta::ParseNestedMeta;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned as _;
use syn::{Expr, Ident, LitFloat, LitInt, LitStr, Path, Token};

use crate::ctxt::Ctxt;

const STEP_KEYS: &str = "name, max_attempts, backoff_ms, backoff_multiplier, max_backoff_ms, \
                         jitter, retry_if, skip_if, skippable, timeout_ms, fields, crate";
const TASK_KEYS: &str = "name, version, max_attempts, backoff_ms, backoff_multiplier, \
                         max_backoff_ms, jitter, timeout_ms, associated, crate";

/// A value with the tokens it was read from, for errors that point at all of them (`-0.5`).
#[derive(Clone)]
pub(crate) struct Spanned<T> {
    pub(crate) value: T,
    /// The key, for errors about the key itself.
    pub(crate) key: Path,
    pub(crate) tokens: TokenStream,
}

impl<T> Spanned<T> {
    /// An error pointing at the value.
    pub(crate) fn error(&self, message: impl std::fmt::Display) -> syn::Error {
        syn::Error::new_spanned(&self.tokens, message)
    }

    /// An error pointing at `key = value`.
    pub(crate) fn entry_error(&self, message: impl std::fmt::Display) -> syn::Error {
        let (key, value) = (&self.key, &self.tokens);
        syn::Error::new_spanned(quote::quote!(#key #value), message)
    }
}

/// One entry of `fields(...)`: an argument by name, or `key = expression`.
pub(crate) struct Field {
    pub(crate) key: Ident,
    pub(crate) value: Option<Expr>,
}

impl Parse for Field {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key: Ident = input.call(Ident::parse_any_ident)?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Ok(Field { key, value })
    }
}

trait ParseAnyIdent {
    fn parse_any_ident(input: ParseStream<'_>) -> syn::Result<Ident>;
}

impl ParseAnyIdent for Ident {
    fn parse_any_ident(input: ParseStream<'_>) -> syn::Result<Ident> {
        syn::ext::IdentExt::parse_any(input)
    }
}

/// The keys `#[step]` and `#[task]` share: the retry policy and the time limit of an attempt.
/// Keys left out take the runtime's `RetryPolicy` defaults; the macro writes no default numbers.
#[derive(Default)]
pub(crate) struct PolicyArgs {
    pub(crate) max_attempts: Option<Spanned<u32>>,
    pub(crate) backoff_ms: Option<Spanned<u64>>,
    pub(crate) backoff_multiplier: Option<Spanned<f64>>,
    pub(crate) max_backoff_ms: Option<Spanned<u64>>,
    pub(crate) jitter: Option<Spanned<f64>>,
    pub(crate) timeout_ms: Option<Spanned<u64>>,
}

/// `#[step(...)]`.
#[derive(Default)]
pub(crate) struct StepArgs {
    pub(crate) name: Option<LitStr>,
    pub(crate) policy: PolicyArgs,
    pub(crate) retry_if: Option<Path>,
    pub(crate) skip_if: Option<Path>,
    pub(crate) skippable: Option<Span>,
    pub(crate) fields: Option<Vec<Field>>,
    pub(crate) krate: Option<Path>,
}

/// `#[task(...)]`.
#[derive(Default)]
pub(crate) struct TaskArgs {
    pub(crate) name: Option<LitStr>,
    pub(crate) version: Option<LitStr>,
    pub(crate) policy: PolicyArgs,
    /// `associated`: the function is an associated function of an `impl` block that shows
    /// neither `self` nor `Self` in its signature. The macro cannot see the block, and there a
    /// task can be neither registered for enqueueing by name nor given a typed `request` (both
    /// are items that cannot name `Self`), so it runs inline only.
    pub(crate) associated: Option<Span>,
    pub(crate) krate: Option<Path>,
}

impl PolicyArgs {
    /// Reads `key` if it is one of the shared keys; `Ok(false)` if it is not.
    fn parse_key(
        &mut self,
        cx: &mut Ctxt,
        key: &str,
        meta: &ParseNestedMeta<'_>,
    ) -> syn::Result<bool> {
        match key {
            "max_attempts" => {
                let value = int(meta)?;
                set_once(cx, &mut self.max_attempts, meta, value);
            }
            "backoff_ms" => {
                let value = int(meta)?;
                set_once(cx, &mut self.backoff_ms, meta, value);
            }
            "backoff_multiplier" => {
                let value = float(meta)?;
                set_once(cx, &mut self.backoff_multiplier, meta, value);
            }
            "max_backoff_ms" => {
                let value = int(meta)?;
                set_once(cx, &mut self.max_backoff_ms, meta, value);
            }
            "jitter" => {
                let value = float(meta)?;
                set_once(cx, &mut self.jitter, meta, value);
            }
            "timeout_ms" => {
                let value = int(meta)?;
                set_once(cx, &mut self.timeout_ms, meta, value);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Whether the function may run more than once: `max_attempts` above 1, or left out where
    /// the default retries (steps).
    pub(crate) fn retries(&self, by_default: bool) -> bool {
        self.max_attempts
            .as_ref()
            .map_or(by_default, |max_attempts| max_attempts.value > 1)
    }

    /// Values that can never work.
    fn validate(&self, cx: &mut Ctxt) {
        if let Some(max_attempts @ Spanned { value: 0, .. }) = &self.max_attempts {
            cx.syn_error(max_attempts.error(
                "`max_attempts` counts the first attempt too, so it must be at least 1 (1 means no retry)",
            ));
        }
        if let Some(jitter) = &self.jitter {
            let value = jitter.value;
            if !(0.0..=1.0).contains(&value) {
                cx.syn_error(jitter.error(format_args!(
                    "`jitter` is a fraction of the wait and must be between 0 and 1 (inclusive), not {value}"
                )));
            }
        }
        if let Some(multiplier) = &self.backoff_multiplier {
            let value = multiplier.value;
            if !(value.is_finite() && value >= 1.0) {
                cx.syn_error(multiplier.error(format_args!(
                    "`backoff_multiplier` must be a finite number of at least 1.0 (waits never shrink), not {value}"
                )));
            }
        }
        if let (Some(backoff), Some(max)) = (&self.backoff_ms, &self.max_backoff_ms) {
            if max.value < backoff.value {
                cx.syn_error(max.error(
                    format_args!(
                        "`max_backoff_ms` ({}) is less than `backoff_ms` ({}); the cap must be at least the first wait",
                        max.value, backoff.value
                    ),
                ));
            }
        }
        if let Some(timeout @ Spanned { value: 0, .. }) = &self.timeout_ms {
            cx.syn_error(
                timeout.error("`timeout_ms` must be at least 1; remove it for no time limit"),
            );
        }
    }
}

/// Records `value` in `slot`, or an error if the key was given before.
fn set_once<T>(cx: &mut Ctxt, slot: &mut Option<T>, meta: &ParseNestedMeta<'_>, value: T) {
    if slot.is_some() {
        cx.error_spanned_by(
            &meta.path,
            format_args!(
                "duplicate attribute key `{}`: give each key at most once",
                key_name(&meta.path)
            ),
        );
    } else {
        *slot = Some(value);
    }
}

fn key_name(path: &Path) -> String {
    path.get_ident()
        .map(ToString::to_string)
        .unwrap_or_else(|| quote::quote!(#path).to_string().replace(' ', ""))
}

fn int<T: std::str::FromStr>(meta: &ParseNestedMeta<'_>) -> syn::Result<Spanned<T>>
where
    T::Err: std::fmt::Display,
{
    let input = meta.value()?;
    if input.peek(Token![-]) {
        let minus: Token![-] = input.parse()?;
        let literal: LitInt = input.parse()?;
        return Err(syn::Error::new_spanned(
            quote::quote!(#minus #literal),
            format_args!("`{}` cannot be negative", key_name(&meta.path)),
        ));
    }
    let literal: LitInt = input.parse()?;
    Ok(Spanned {
        value: literal.base10_parse()?,
        key: meta.path.clone(),
        tokens: literal.to_token_stream(),
    })
}

/// A number, written as an integer or a float literal, possibly negative.
fn float(meta: &ParseNestedMeta<'_>) -> syn::Result<Spanned<f64>> {
    let input = meta.value()?;
    let minus: Option<Token![-]> = input.parse()?;
    let (value, literal): (f64, TokenStream) = if input.peek(LitInt) {
        let literal: LitInt = input.parse()?;
        (literal.base10_parse()?, literal.to_token_stream())
    } else {
        let literal: LitFloat = input.parse()?;
        (literal.base10_parse()?, literal.to_token_stream())
    };
    Ok(Spanned {
        value: if minus.is_some() { -value } else { value },
        key: meta.path.clone(),
        tokens: quote::quote!(#minus #literal),
    })
}

impl StepArgs {
    pub(crate) fn parse(cx: &mut Ctxt, tokens: TokenStream) -> StepArgs {
        let mut args = StepArgs::default();
        let parser = syn::meta::parser(|meta| {
            let Some(key) = meta.path.get_ident().map(ToString::to_string) else {
                cx.error_spanned_by(
                    &meta.path,
                    format_args!(
                        "unknown attribute key `{}`; valid keys are: {STEP_KEYS}",
                        key_name(&meta.path)
                    ),
                );
                return skip_value(&meta);
            };
            match key.as_str() {
                "name" => {
                    let value = meta.value()?.parse()?;
                    set_once(cx, &mut args.name, &meta, value);
                }
                "retry_if" => {
                    let value = meta.value()?.parse()?;
                    set_once(cx, &mut args.retry_if, &meta, value);
                }
                "skip_if" => {
                    let value = meta.value()?.parse()?;
                    set_once(cx, &mut args.skip_if, &meta, value);
                }
                "skippable" => {
                    if meta.input.peek(Token![=]) || meta.input.peek(syn::token::Paren) {
                        cx.error_spanned_by(
                            &meta.path,
                            "`skippable` takes no value: write `skippable`",
                        );
                        return skip_value(&meta);
                    }
                    set_once(cx, &mut args.skippable, &meta, meta.path.span());
                }
                "fields" => {
                    let content;
                    syn::parenthesized!(content in meta.input);
                    let fields = Punctuated::<Field, Token![,]>::parse_terminated(&content)?;
                    set_once(cx, &mut args.fields, &meta, fields.into_iter().collect());
                }
                "crate" => {
                    let value = meta.value()?.parse()?;
                    set_once(cx, &mut args.krate, &meta, value);
                }
                other => {
                    if !args.policy.parse_key(cx, other, &meta)? {
                        cx.error_spanned_by(
                            &meta.path,
                            format_args!(
                                "unknown attribute key `{key}`; valid keys are: {STEP_KEYS}"
                            ),
                        );
                        return skip_value(&meta);
                    }
                }
            }
            Ok(())
        });
        if let Err(error) = syn::parse::Parser::parse2(parser, tokens) {
            cx.syn_error(error);
        }
        args.validate(cx);
        args
    }

    /// Values that can never work.
    fn validate(&self, cx: &mut Ctxt) {
        self.policy.validate(cx);
        if let Some(name) = &self.name {
            if name.value().trim().is_empty() {
                cx.error_spanned_by(name, "a step's `name` must not be empty");
            }
        }
    }
}

impl TaskArgs {
    pub(crate) fn parse(cx: &mut Ctxt, tokens: TokenStream) -> TaskArgs {
        let mut args = TaskArgs::default();
        let parser = syn::meta::parser(|meta| {
            let key = key_name(&meta.path);
            match key.as_str() {
                "name" => {
                    let value = meta.value()?.parse()?;
                    set_once(cx, &mut args.name, &meta, value);
                }
                "version" => {
                    let value = meta.value()?.parse()?;
                    set_once(cx, &mut args.version, &meta, value);
                }
                "crate" => {
                    let value = meta.value()?.parse()?;
                    set_once(cx, &mut args.krate, &meta, value);
                }
                "associated" => {
                    if meta.input.peek(Token![=]) || meta.input.peek(syn::token::Paren) {
                        cx.error_spanned_by(
                            &meta.path,
                            "`associated` takes no value: write `associated`",
                        );
                        return skip_value(&meta);
                    }
                    set_once(cx, &mut args.associated, &meta, meta.path.span());
                }
                other => {
                    if !args.policy.parse_key(cx, other, &meta)? {
                        cx.error_spanned_by(
                            &meta.path,
                            format_args!(
                                "unknown attribute key `{key}`; valid keys are: {TASK_KEYS}"
                            ),
                        );
                        return skip_value(&meta);
                    }
                }
            }
            Ok(())
        });
        if let Err(error) = syn::parse::Parser::parse2(parser, tokens) {
            cx.syn_error(error);
        }
        args.policy.validate(cx);
        for (key, value) in [("name", &args.name), ("version", &args.version)] {
            if let Some(value) = value {
                if value.value().trim().is_empty() {
                    cx.error_spanned_by(value, format_args!("a task's `{key}` must not be empty"));
                }
            }
        }
        args
    }
}

/// Consumes the value of a key that was rejected, so parsing goes on to report the other keys.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        let _: Expr = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _content;
        syn::parenthesized!(_content in meta.input);
        let _: TokenStream = _content.parse()?;
    }
    Ok(())
}
