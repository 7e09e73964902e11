//! Code generation from the parsed model. The expansion is a thin loop around
//! `tasker::__private::StepRun`/`TaskRun`; every behaviour lives in `tasker-runtime`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::{parse_quote, Block, ItemFn, Path};

use crate::attr::{PolicyArgs, StepArgs, TaskArgs};
use crate::ctxt::Ctxt;
use crate::item::{replace_inner_async_block, Argument, Function, Shape};
use crate::spans::{error_type_span, respan, span_range, type_span};

/// `#[step]`: parse, check, expand. On error, the item is emitted unchanged beside the errors so
/// that they do not cascade into "function not found".
pub(crate) fn step(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let args = StepArgs::parse(&mut cx, args);
    let function = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(item) => Function::analyze(&mut cx, item, "step"),
        Err(error) => return with_item(error, item),
    };
    check_step(&mut cx, &args, &function);
    match cx.check() {
        Ok(()) => expand_step(&args, function),
        Err(error) => with_item(error, item),
    }
}

/// `#[task]`.
pub(crate) fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let args = TaskArgs::parse(&mut cx, args);
    let function = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(item) => Function::analyze(&mut cx, item, "task"),
        Err(error) => return with_item(error, item),
    };
    check_timeout(&mut cx, &args.policy, &function, "task");
    match cx.check() {
        Ok(()) => expand_task(&args, function),
        Err(error) => with_item(error, item),
    }
}

fn with_item(error: syn::Error, item: TokenStream) -> TokenStream {
    let error = error.to_compile_error();
    quote!(#error #item)
}

fn check_step(cx: &mut Ctxt, args: &StepArgs, function: &Function) {
    check_timeout(cx, &args.policy, function, "step");
    if args.policy.retries(true) {
        if let Some(span) = function.receiver_by_value() {
            cx.syn_error(syn::Error::new(
                span,
                "retrying a step re-runs its body, which would use `self` again after it was \
                 moved; take `&self` or `&mut self`, or set `max_attempts = 1`",
            ));
        }
    }
}

/// `timeout_ms` needs an async function: a sync one cannot be interrupted.
fn check_timeout(cx: &mut Ctxt, policy: &PolicyArgs, function: &Function, what: &str) {
    if let Some(timeout) = &policy.timeout_ms {
        if !function.is_async() {
            cx.syn_error(timeout.entry_error(format_args!(
                "`timeout_ms` needs an async {what}: a sync function cannot be interrupted; make \
                 it `async fn` or remove `timeout_ms`"
            )));
        }
    }
}

/// The `RetryPolicy` of `policy`: `base` (the runtime's defaults) with each key that was given.
fn policy_tokens(p: &TokenStream, base: TokenStream, policy: &PolicyArgs) -> TokenStream {
    let mut tokens = quote!(#p::RetryPolicy::#base);
    if let Some(value) = &policy.max_attempts {
        let value = value.value;
        tokens = quote!(#tokens.with_max_attempts(#value));
    }
    if let Some(value) = &policy.backoff_ms {
        let value = value.value;
        tokens = quote!(#tokens.with_backoff_ms(#value));
    }
    if let Some(value) = &policy.backoff_multiplier {
        let value = value.value;
        tokens = quote!(#tokens.with_backoff_multiplier(#value));
    }
    if let Some(value) = &policy.max_backoff_ms {
        let value = value.value;
        tokens = quote!(#tokens.with_max_backoff_ms(#value));
    }
    if let Some(value) = &policy.jitter {
        let value = value.value;
        tokens = quote!(#tokens.with_jitter(#value));
    }
    tokens
}

/// `Option<Duration>`: the time limit of one attempt.
fn timeout_tokens(policy: &PolicyArgs) -> TokenStream {
    match &policy.timeout_ms {
        Some(value) => {
            let millis = value.value;
            quote!(::core::option::Option::Some(::core::time::Duration::from_millis(#millis)))
        }
        None => quote!(::core::option::Option::None),
    }
}

fn private(krate: &Option<Path>) -> TokenStream {
    match krate {
        Some(path) => quote!(#path::__private),
        None => quote!(::tasker::__private),
    }
}

fn source_location(p: &TokenStream, function: &Function) -> TokenStream {
    let ident = &function.item.sig.ident;
    let name = ident.to_string().trim_start_matches("r#").to_owned();
    // `line!()`/`file!()` spanned at the function's name report its location, not the macro's.
    let line = quote_spanned!(ident.span()=> ::core::line!());
    let file = quote_spanned!(ident.span()=> ::core::file!());
    quote! {
        #p::SourceLocation {
            function: ::core::concat!(::core::module_path!(), "::", #name),
            file: #file,
            line: #line,
        }
    }
}

fn expand_step(args: &StepArgs, mut function: Function) -> TokenStream {
    let p = private(&args.krate);
    let name = args.name.as_ref().map_or_else(
        || {
            function
                .item
                .sig
                .ident
                .to_string()
                .trim_start_matches("r#")
                .to_owned()
        },
        |name| name.value(),
    );
    let policy = policy_tokens(&p, quote!(DEFAULT), &args.policy);
    let skippable = args.skippable.is_some();
    let timeout = timeout_tokens(&args.policy);
    let source = source_location(&p, &function);
    let is_async = function.is_async();
    let retries = args.policy.retries(true);

    let start = if is_async {
        quote!(let mut __tasker_step = #p::StepRun::start(&__TASKER_STEP).await;)
    } else {
        quote!(let mut __tasker_step = #p::StepRun::start_sync(&__TASKER_STEP);)
    };

    let fields = args.fields.as_ref().map(|fields| {
        let entries = fields.iter().map(|field| {
            let key = field.key.to_string();
            let value = match &field.value {
                Some(expr) => quote!(&(#expr)),
                None => {
                    let ident = &field.key;
                    quote!(&#ident)
                }
            };
            quote!((#key, #p::field_value(#value)))
        });
        quote!(__tasker_step.record_fields(|| [#(#entries),*]);)
    });

    let return_type = function.return_type();
    // Trait errors about the output (`Default` for `skip_if`, `From<StepTimeout>` for
    // `timeout_ms`) point at the return type.
    let output_span = type_span(&return_type);
    // The value a skipped step returns, for `skip_if` and for a bypassed `skippable` step.
    let skipped = (args.skip_if.is_some() || args.skippable.is_some()).then(|| {
        match function.return_annotation() {
            Some(ty) => {
                // rustc reports the method's `SkippedOutput` bound at the method name, so only
                // that is spanned at the type; the autoref `&&` stays the macro's own code.
                let method = respan(quote!(tasker_skipped), output_span);
                quote! {{
                    #[allow(unused_imports)]
                    use #p::skip::{SkipDefault as _, SkipResult as _};
                    (&&#p::skip::SkipProbe::<#ty>::new()).#method()
                }}
            }
            // An opaque output cannot be named; it can only be `Default`.
            None => respan(quote!(#p::skipped()), output_span),
        }
    });
    let bypass = args.skippable.is_some().then(|| {
        quote! {
            if __tasker_step.bypassed() {
                return #skipped;
            }
        }
    });
    let skip = args.skip_if.as_ref().map(|predicate| {
        let arguments = function.arguments.iter().map(|argument| match argument {
            Argument::Receiver { .. } => quote!(&self),
            Argument::Borrowed { name } | Argument::Owned { name, .. } => quote!(&#name),
        });
        quote! {
            if __tasker_step.skip_if(#predicate(#(#arguments),*)) {
                return #skipped;
            }
        }
    });

    let body = function.body().clone();
    // A step with no policy to apply runs its body alone when nothing observes it (`quiet`):
    // the body is bound first, then either called directly or given to the attempt.
    let plain = !retries
        && args.skip_if.is_none()
        && args.skippable.is_none()
        && args.policy.timeout_ms.is_none()
        && args.fields.is_none();
    let attempt = match (is_async, args.policy.timeout_ms.is_some()) {
        (true, false) if plain => quote!(__tasker_step.attempt(__tasker_body).await),
        (false, _) if plain => quote!(__tasker_step.attempt_sync(__tasker_body)),
        (true, false) => quote!(__tasker_step.attempt(async #body).await),
        (true, true) => {
            // `attempt_timed` asks `From<StepTimeout>` of the error type itself; spanned at the
            // return type, a missing impl is reported there with a readable message.
            let timed = respan(
                quote!(__tasker_step.attempt_timed(__tasker_body).await),
                error_type_span(&return_type),
            );
            quote!({
                let __tasker_body = async #body;
                #timed
            })
        }
        (false, _) => quote!(__tasker_step.attempt_sync(|| #body)),
    };
    let annotation = function.return_annotation().map(|ty| quote!(: #ty));
    let classify = match &args.retry_if {
        Some(predicate) => quote! {
            #p::classify!(&__tasker_result, retry_if = #predicate,
                |__tasker_outcome| __tasker_step.finish(__tasker_outcome))
        },
        None => quote! {
            #p::classify!(&__tasker_result, |__tasker_outcome| __tasker_step.finish(__tasker_outcome))
        },
    };

    // Step checkpoints (a worker run on a durable queue): an async step whose output type is
    // nameable and owned replays a recorded output, and records its own once an attempt
    // succeeds — before `step.complete` is emitted, so that an event log showing the step
    // completed implies its checkpoint is durable. Whether the type goes to JSON and back is
    // decided by the probe; borrowed types are left out because autoref specialisation cannot
    // tell lifetimes apart.
    let checkpoint_type = match (&function.shape, function.return_annotation()) {
        (Shape::Async, Some(ty)) if !contains_impl_trait_or_lifetime(&ty) => Some(ty),
        _ => None,
    };
    let replay = checkpoint_type.as_ref().map(|ty| {
        quote! {
            if let ::core::option::Option::Some(__tasker_replayed) = {
                #[allow(unused_imports)]
                use #p::checkpoint::{CheckpointResult as _, CheckpointValue as _, NoCheckpoint as _};
                (&&&#p::checkpoint::Probe::<#ty>::new()).tasker_replay(&mut __tasker_step)
            } {
                return __tasker_replayed;
            }
        }
    });
    // Records the attempt's output when it is a success (an `Ok`, or any plain value); a
    // failure records nothing.
    let record = checkpoint_type.as_ref().map(|ty| {
        quote! {
            #[allow(unreachable_code)]
            let () = {
                #[allow(unused_imports)]
                use #p::checkpoint::{CheckpointResult as _, CheckpointValue as _, NoCheckpoint as _};
                (&&&#p::checkpoint::Probe::<#ty>::new()).tasker_record(&__tasker_step, &__tasker_result)
            }
            .await;
        }
    });

    let quiet = plain.then(|| {
        // Only async steps keep checkpoints, so only they ask about them.
        let quiet = if checkpoint_type.is_some() {
            quote!(quiet_uncheckpointed)
        } else {
            quote!(quiet)
        };
        if is_async {
            quote! {
                let __tasker_body = async #body;
                if #p::#quiet() {
                    return __tasker_body.await;
                }
            }
        } else {
            quote! {
                let __tasker_body = || #body;
                if #p::#quiet() {
                    return __tasker_body();
                }
            }
        }
    });

    let run = if retries {
        let owned: Vec<_> = function
            .arguments
            .iter()
            .filter_map(|argument| match argument {
                Argument::Owned { name, pattern, ty } => Some((name, pattern, ty)),
                _ => None,
            })
            .collect();
        // One slot per by-value argument, named by position: `__tasker_slot_0`, ….
        let slot = |index: usize| format_ident!("__tasker_slot_{}", index);
        let slots = owned.iter().enumerate().map(|(index, (name, _, _))| {
            let slot = slot(index);
            quote!(let mut #slot = ::core::option::Option::Some(#name);)
        });
        let bindings = owned.iter().enumerate().map(|(index, (_, pattern, ty))| {
            let slot = slot(index);
            // A missing `Clone` is reported at the argument: `&mut slot` spans `pattern: Type`.
            let (first, _) = span_range(quote!(#pattern));
            let (_, last) = span_range(quote!(#ty));
            let borrow = respan(quote!(&mut), first);
            let slot = respan(quote!(#slot), last);
            quote!(let #pattern = __tasker_step.argument(#borrow #slot);)
        });
        let backoff = if is_async {
            quote!(#p::backoff(__tasker_wait).await)
        } else {
            quote!(#p::backoff_sync(__tasker_wait))
        };
        quote! {
            #(#slots)*
            loop {
                #(#bindings)*
                let __tasker_result #annotation = #attempt;
                #record
                #[allow(unreachable_code)]
                match #classify {
                    #p::Next::Return => return __tasker_result,
                    #p::Next::Retry(__tasker_wait) => #backoff,
                }
            }
        }
    } else {
        quote! {
            let __tasker_result #annotation = #attempt;
            #record
            #[allow(unreachable_code)]
            let __tasker_value = {
                let _ = #classify;
                __tasker_result
            };
            __tasker_value
        }
    };

    let observed = quote! {
        #start
        #fields
        #replay
        #bypass
        #skip
        #run
    };
    // A plain sync step keeps the observed path out of line, so that the quiet path costs its
    // checks and the body's call, not the frame of the whole state machine.
    let observed = if plain && !is_async {
        quote!(#p::observed(move || { #observed }))
    } else {
        observed
    };
    let new_body: Block = parse_quote! {{
        static __TASKER_STEP: #p::StepDescriptor = #p::StepDescriptor {
            name: #name,
            source: #source,
            policy: #policy,
            skippable: #skippable,
            timeout: #timeout,
        };
        #p::inventory::submit! { #p::StepRegistration(&__TASKER_STEP) }
        #quiet
        #observed
    }};
    install_body(&mut function, new_body);
    let item = &function.item;
    quote!(#item)
}

fn expand_task(args: &TaskArgs, mut function: Function) -> TokenStream {
    let p = private(&args.krate);
    let name = args.name.as_ref().map_or_else(
        || {
            function
                .item
                .sig
                .ident
                .to_string()
                .trim_start_matches("r#")
                .to_owned()
        },
        |name| name.value(),
    );
    let version = match &args.version {
        Some(version) => quote!(#version),
        None => quote!(::core::env!("CARGO_PKG_VERSION")),
    };
    let source = source_location(&p, &function);
    let policy = policy_tokens(&p, quote!(TASK_DEFAULT), &args.policy);
    let timeout = timeout_tokens(&args.policy);
    let body = function.body().clone();
    let run = if function.is_async() {
        quote!(__tasker_task.run(async #body).await)
    } else {
        quote!(__tasker_task.run_sync(|| #body))
    };
    let annotation = function.return_annotation().map(|ty| quote!(: #ty));
    let runner = task_runner(&p, &function);
    let new_body: Block = parse_quote! {{
        static __TASKER_TASK: #p::TaskDescriptor = #p::TaskDescriptor {
            name: #name,
            version: #version,
            source: #source,
            policy: #policy,
            timeout: #timeout,
        };
        #runner
        #p::inventory::submit! { #p::TaskRegistration::new(&__TASKER_TASK, __tasker_runner) }
        let mut __tasker_task = #p::TaskRun::start(&__TASKER_TASK);
        let __tasker_result #annotation = #run;
        #[allow(unreachable_code)]
        let __tasker_value = {
            #p::classify!(&__tasker_result, |__tasker_outcome| __tasker_task.finish(__tasker_outcome));
            __tasker_result
        };
        __tasker_value
    }};
    let typed_request = crate::typed_request::expand(&p, &function, &name, &version);
    install_body(&mut function, new_body);
    let item = &function.item;
    quote!(#item #typed_request)
}

/// `fn __tasker_runner() -> Option<TaskRunner>`: the task's JSON runner when it can be enqueued
/// by name. Only a free function's shape is probed — no receiver, no generics, one owned argument
/// (or none), nameable types — since the probe names the function; everything else gets
/// `no_runner` and runs inline only. The probe itself decides on `DeserializeOwned`/`Serialize`.
fn task_runner(p: &TokenStream, function: &Function) -> TokenStream {
    let sig = &function.item.sig;
    let ident = &sig.ident;
    let output = function.return_annotation();
    let input = match function.arguments.as_slice() {
        [] => Some(None),
        [Argument::Owned { ty, .. }] if !contains_impl_trait_or_lifetime(ty) => Some(Some(ty)),
        _ => None,
    };
    // Autoref specialisation cannot tell lifetimes apart (`Vec<&str>` would be taken for
    // `DeserializeOwned` and then fail to compile), so borrowed types get no runner.
    let eligible = sig.generics.params.is_empty()
        && output
            .as_ref()
            .is_some_and(|output| !contains_impl_trait_or_lifetime(output))
        && !matches!(function.shape, Shape::AsyncTrait { .. });
    let (Some(input), true) = (input, eligible) else {
        return quote!(use #p::no_runner as __tasker_runner;);
    };
    // An argument named like the function shadows it inside the body, where the runner is; the
    // function is then named through its module (a task named like its argument is a free
    // function of a module in practice).
    let shadowed = function.arguments.iter().any(|argument| match argument {
        Argument::Owned { name, pattern, .. } => name == ident || pattern_binds(pattern, ident),
        Argument::Borrowed { name } => name == ident,
        Argument::Receiver { .. } => false,
    });
    let path = if shadowed {
        quote!(self::#ident)
    } else {
        quote!(#ident)
    };
    let (input, task) = match input {
        Some(ty) => (quote!(#ty), quote!(#path)),
        None => (quote!(()), quote!(|(): ()| #path())),
    };
    let (probe, levels) = if function.is_async() {
        (
            quote!(AsyncProbe),
            quote!(AsyncResultRunner as _, AsyncValueRunner as _, NoRunner as _),
        )
    } else {
        (
            quote!(SyncProbe),
            quote!(SyncResultRunner as _, SyncValueRunner as _, NoRunner as _),
        )
    };
    quote! {
        fn __tasker_runner() -> ::core::option::Option<#p::TaskRunner> {
            #[allow(unused_imports)]
            use #p::runner::{#levels};
            (&&&#p::runner::#probe::<_, #input>::new(#task)).tasker_runner()
        }
    }
}

/// Whether `pattern` binds the name `ident`.
fn pattern_binds(pattern: &syn::Pat, ident: &syn::Ident) -> bool {
    struct Finder<'a>(&'a syn::Ident, bool);
    impl syn::visit::Visit<'_> for Finder<'_> {
        fn visit_pat_ident(&mut self, pattern: &syn::PatIdent) {
            self.1 |= pattern.ident == *self.0;
            syn::visit::visit_pat_ident(self, pattern);
        }
    }
    let mut finder = Finder(ident, false);
    syn::visit::Visit::visit_pat(&mut finder, pattern);
    finder.1
}

fn contains_impl_trait_or_lifetime(ty: &syn::Type) -> bool {
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

fn install_body(function: &mut Function, body: Block) {
    match function.shape {
        Shape::AsyncTrait { .. } => replace_inner_async_block(&mut function.item.block, body),
        Shape::Sync | Shape::Async => *function.item.block = body,
    }
}
