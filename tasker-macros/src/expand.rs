//! Code generation from the resolved model ([`Step`](crate::model::Step)): small functions, one
//! per piece of the expansion — descriptor, prologue, attempt, retry loop, checkpoint — around
//! `tasker::__private::StepRun`/`TaskRun`; every behaviour lives in `tasker-runtime`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned as _;
use syn::{parse_quote, Block, Ident, ItemFn, Path, Type};

use crate::attr::{PolicyArgs, StepArgs, TaskArgs};
use crate::ctxt::Ctxt;
use crate::item::{replace_inner_async_block, Argument, Function, Shape};
use crate::model::{
    check_timeout, contains_impl_trait_or_lifetime, function_name, private, Attempts,
    RetryArguments, Step,
};
use crate::spans::{error_type_span, respan, span_range, type_span};

/// `#[step]`: parse, resolve, expand. On error, the item is emitted unchanged beside the errors
/// so that they do not cascade into "function not found".
pub(crate) fn step(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let args = StepArgs::parse(&mut cx, args);
    let function = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(item) => Function::analyze(&mut cx, item, "step"),
        Err(error) => return with_item(error, item),
    };
    let step = Step::resolve(&mut cx, &args, function);
    match cx.check() {
        Ok(()) => expand_step(step),
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
    if args.policy.retries(false) {
        if let Some(span) = function.receiver_by_value() {
            cx.syn_error(syn::Error::new(
                span,
                "retrying a task re-runs its body, which would use `self` again after it was \
                 moved; take `&self` or `&mut self`, or remove `max_attempts`",
            ));
        }
    }
    match cx.check() {
        Ok(()) => expand_task(&args, function),
        Err(error) => with_item(error, item),
    }
}

fn with_item(error: syn::Error, item: TokenStream) -> TokenStream {
    let error = error.to_compile_error();
    quote!(#error #item)
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

fn expand_step(step: Step<'_>) -> TokenStream {
    let descriptor = step_descriptor(&step);
    let run = match &step.attempts {
        Attempts::Plain => plain_call(&step),
        Attempts::Single => {
            let prologue = observed_prologue(&step);
            let bindings = bind_arguments(&step.function);
            let once = attempt_once(&step, attempt(&step));
            quote!(#prologue #bindings #once)
        }
        Attempts::Retry(arguments) => {
            let prologue = observed_prologue(&step);
            let attempts = retry_loop(&step, arguments);
            quote!(#prologue #attempts)
        }
    };
    let mut function = step.function;
    let new_body: Block = parse_quote!({ #descriptor #run });
    install_body(&mut function, new_body);
    let item = &function.item;
    quote!(#item)
}

/// The step's `static` descriptor, registered at link time.
fn step_descriptor(step: &Step<'_>) -> TokenStream {
    let p = &step.private;
    let name = &step.name;
    let policy = policy_tokens(p, quote!(DEFAULT), &step.args.policy);
    let skippable = step.args.skippable.is_some();
    let timeout = timeout_tokens(&step.args.policy);
    let source = source_location(p, &step.function);
    quote! {
        static __TASKER_STEP: #p::StepDescriptor = #p::StepDescriptor {
            name: #name,
            source: #source,
            policy: #policy,
            skippable: #skippable,
            timeout: #timeout,
        };
        #p::inventory::submit! { #p::StepRegistration(&__TASKER_STEP) }
    }
}

/// A step with no policy to apply: the body, bound once, runs alone when nothing observes it;
/// else it is the one observed attempt. A sync step keeps the observed path out of line, so
/// that the quiet path costs its checks and the body's call, not the whole state machine.
fn plain_call(step: &Step<'_>) -> TokenStream {
    let p = &step.private;
    let body = step.function.body();
    let bindings = bind_arguments(&step.function);
    let once = attempt_once(step, attempt(step));
    if step.is_async() {
        // Only async steps keep checkpoints, so only they ask about them.
        let quiet = if step.checkpoint.is_some() {
            quote!(quiet_uncheckpointed)
        } else {
            quote!(quiet)
        };
        let start = start(step);
        let replay = checkpoint_replay(step);
        quote! {
            #bindings
            let __tasker_body = async #body;
            if #p::#quiet() {
                return __tasker_body.await;
            }
            #start
            #replay
            #once
        }
    } else {
        let start = start(step);
        // `mut`: a body that mutates what it captures (a `mut` argument, a `&mut T`) is `FnMut`.
        quote! {
            #bindings
            #[allow(unused_mut)]
            let mut __tasker_body = || #body;
            if #p::quiet() {
                return __tasker_body();
            }
            #p::observed(move || {
                #start
                #once
            })
        }
    }
}

/// `let mut __tasker_step = StepRun::start…`.
fn start(step: &Step<'_>) -> TokenStream {
    let p = &step.private;
    if step.is_async() {
        quote!(let mut __tasker_step = #p::StepRun::start(&__TASKER_STEP).await;)
    } else {
        quote!(let mut __tasker_step = #p::StepRun::start_sync(&__TASKER_STEP);)
    }
}

/// What an observed call does before its first attempt: start, record fields, replay a
/// checkpoint, and return early when bypassed or skipped.
fn observed_prologue(step: &Step<'_>) -> TokenStream {
    let p = &step.private;
    let start = start(step);
    let fields = step.args.fields.as_ref().map(|fields| {
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
    let replay = checkpoint_replay(step);
    let skipped = skipped_value(step);
    let bypass = step.args.skippable.is_some().then(|| {
        quote! {
            if __tasker_step.bypassed() {
                return #skipped;
            }
        }
    });
    let skip = step.args.skip_if.as_ref().map(|predicate| {
        let decision = skip_decision(step, predicate);
        quote! {
            if __tasker_step.skip_if(#decision) {
                return #skipped;
            }
        }
    });
    quote!(#start #fields #replay #bypass #skip)
}

/// Most arguments `tasker::__private::skip_predicate` is implemented for.
const SKIP_PREDICATE_MAX_ARGUMENTS: usize = 12;

/// The `skip_if` predicate called with a reference to each argument. Through `skip_predicate`,
/// a predicate that takes an argument by value gets a message saying to borrow it, at the
/// predicate, instead of a type mismatch at the attribute.
fn skip_decision(step: &Step<'_>, predicate: &Path) -> TokenStream {
    let p = &step.private;
    let arguments: Vec<_> = step
        .function
        .arguments
        .iter()
        .map(|argument| match argument {
            Argument::Receiver { by_value: true, .. } => quote!(&self),
            Argument::Receiver { .. } => quote!(&*self),
            Argument::Borrowed { name } => quote!(&*#name),
            Argument::Owned { name, .. } => quote!(&#name),
        })
        .collect();
    if arguments.len() > SKIP_PREDICATE_MAX_ARGUMENTS {
        return quote!(#predicate(#(#arguments),*));
    }
    let call = respan(quote!(#p::skip_predicate), predicate.span());
    quote!(#call(#predicate, (#(#arguments,)*)))
}

/// The value a skipped step returns, for `skip_if` and for a bypassed `skippable` step.
fn skipped_value(step: &Step<'_>) -> TokenStream {
    let p = &step.private;
    // Trait errors about the output (`Default`) point at the return type.
    let output_span = type_span(&step.output);
    match &step.annotation {
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
}

/// `let pattern = name;` for each argument whose pattern the signature does not bind itself (a
/// `mut` name, a destructuring pattern): the bindings of the paths that run the body once.
fn bind_arguments(function: &Function) -> TokenStream {
    let bindings = function
        .arguments
        .iter()
        .filter_map(Argument::rebinding)
        .map(|(name, pattern)| quote!(let #pattern = #name;));
    quote!(#(#bindings)*)
}

/// One attempt's value: runs the body (bound by `plain_call` as `__tasker_body` on the plain
/// path) inside `__tasker_step`.
fn attempt(step: &Step<'_>) -> TokenStream {
    let body = step.function.body();
    let plain = matches!(step.attempts, Attempts::Plain);
    match (step.is_async(), step.args.policy.timeout_ms.is_some()) {
        (true, false) if plain => quote!(__tasker_step.attempt(__tasker_body).await),
        (false, _) if plain => quote!(__tasker_step.attempt_sync(__tasker_body)),
        (true, false) => quote!(__tasker_step.attempt(async #body).await),
        (true, true) => {
            // `attempt_timed` asks `From<StepTimeout>` of the error type itself; spanned at the
            // return type, a missing impl is reported there with a readable message.
            // The future is named with that span where it is made and where it is used, so that
            // both resolve alike when the user's tokens come from a `macro_rules!`.
            let span = error_type_span(&step.output);
            let future = Ident::new("__tasker_body", span);
            let method = respan(quote!(attempt_timed), span);
            quote!({
                let #future = async #body;
                __tasker_step.#method(#future).await
            })
        }
        (false, _) => quote!(__tasker_step.attempt_sync(|| #body)),
    }
}

/// Classifies `__tasker_result` and hands the outcome to `__tasker_step.finish`.
fn classify(step: &Step<'_>) -> TokenStream {
    let p = &step.private;
    match &step.args.retry_if {
        Some(predicate) => quote! {
            #p::classify!(&__tasker_result, retry_if = #predicate,
                |__tasker_outcome| __tasker_step.finish(__tasker_outcome))
        },
        None => quote! {
            #p::classify!(&__tasker_result, |__tasker_outcome| __tasker_step.finish(__tasker_outcome))
        },
    }
}

/// The single attempt of a call that does not retry, and its value.
fn attempt_once(step: &Step<'_>, attempt: TokenStream) -> TokenStream {
    let annotation = step.annotation.as_ref().map(|ty| quote!(: #ty));
    let record = checkpoint_record(step);
    let classify = classify(step);
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
}

/// Attempts until one succeeds or the policy says stop. Each by-value argument waits in a slot
/// (`__tasker_slot_N`), from which every attempt binds the body's pattern.
fn retry_loop(step: &Step<'_>, arguments: &RetryArguments) -> TokenStream {
    let p = &step.private;
    let owned: Vec<_> = step
        .function
        .arguments
        .iter()
        .filter_map(|argument| match argument {
            Argument::Owned { name, pattern, ty } => Some((name, pattern, ty)),
            _ => None,
        })
        .collect();
    // The slots are named with the span of the argument's type, where they are made and where
    // they are used: a missing `Clone` is reported at the argument, and both resolve alike when
    // the user's tokens come from a `macro_rules!`.
    let slot = |index: usize, ty: &Type| {
        let (_, last) = span_range(quote!(#ty));
        Ident::new(&format!("__tasker_slot_{index}"), last)
    };
    let slots = owned.iter().enumerate().map(|(index, (name, _, ty))| {
        let slot = slot(index, ty);
        match arguments {
            RetryArguments::ByOutput(output) => {
                quote!(let mut #slot = #p::Slot::<#output, _>::new(#name);)
            }
            RetryArguments::Cloned => quote!(let mut #slot = ::core::option::Option::Some(#name);),
        }
    });
    let bindings = owned.iter().enumerate().map(|(index, (_, pattern, ty))| {
        let (first, _) = span_range(quote!(#pattern));
        let borrow = respan(quote!(&mut), first);
        let slot = slot(index, ty);
        match arguments {
            RetryArguments::ByOutput(_) => {
                let method = respan(quote!(argument), slot.span());
                quote!(let #pattern = (#borrow #slot).#method(&__tasker_step);)
            }
            RetryArguments::Cloned => {
                quote!(let #pattern = __tasker_step.argument(#borrow #slot);)
            }
        }
    });
    let annotation = step.annotation.as_ref().map(|ty| quote!(: #ty));
    let attempt = attempt(step);
    let record = checkpoint_record(step);
    let classify = classify(step);
    let backoff = if step.is_async() {
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
}

/// Returns the output an earlier delivery of the task recorded for this call (a worker run on
/// a durable queue); whether the type goes to JSON and back is decided by the probe.
fn checkpoint_replay(step: &Step<'_>) -> Option<TokenStream> {
    let p = &step.private;
    step.checkpoint.as_ref().map(|ty| {
        quote! {
            if let ::core::option::Option::Some(__tasker_replayed) = {
                #[allow(unused_imports)]
                use #p::checkpoint::{CheckpointResult as _, CheckpointValue as _, NoCheckpoint as _};
                (&&&#p::checkpoint::Probe::<#ty>::new()).tasker_replay(&mut __tasker_step)
            } {
                return __tasker_replayed;
            }
        }
    })
}

/// Records an attempt's output when it is a success (an `Ok`, or any plain value), before
/// `step.complete` is emitted, so that an event log showing the step completed implies its
/// checkpoint is durable. A failure records nothing.
fn checkpoint_record(step: &Step<'_>) -> Option<TokenStream> {
    let p = &step.private;
    step.checkpoint.as_ref().map(|ty| {
        quote! {
            #[allow(unreachable_code)]
            let () = {
                #[allow(unused_imports)]
                use #p::checkpoint::{CheckpointResult as _, CheckpointValue as _, NoCheckpoint as _};
                (&&&#p::checkpoint::Probe::<#ty>::new()).tasker_record(&__tasker_step, &__tasker_result)
            }
            .await;
        }
    })
}

fn expand_task(args: &TaskArgs, mut function: Function) -> TokenStream {
    let p = private(&args.krate);
    let name = args
        .name
        .as_ref()
        .map_or_else(|| function_name(&function), |name| name.value());
    let version = match &args.version {
        Some(version) => quote!(#version),
        None => quote!(::core::env!("CARGO_PKG_VERSION")),
    };
    let source = source_location(&p, &function);
    let policy = policy_tokens(&p, quote!(TASK_DEFAULT), &args.policy);
    let timeout = timeout_tokens(&args.policy);
    let run = task_attempt(args, &function);
    let annotation = function.return_annotation().map(|ty| quote!(: #ty));
    let classify = quote! {
        #p::classify!(&__tasker_result, |__tasker_outcome| __tasker_task.finish(__tasker_outcome))
    };
    let attempts = if args.policy.retries(false) {
        let (slots, bindings) = task_retry_arguments(&function);
        let backoff = if function.is_async() {
            quote!(#p::backoff(__tasker_wait).await)
        } else {
            quote!(#p::backoff_sync(__tasker_wait))
        };
        // Each attempt re-runs the body, as a step's do; `task.handle` opens each one after
        // the first.
        quote! {
            #slots
            loop {
                __tasker_task.begin_attempt();
                #bindings
                let __tasker_result #annotation = #run;
                #[allow(unreachable_code)]
                match #classify {
                    #p::Next::Return => return __tasker_result,
                    #p::Next::Retry(__tasker_wait) => #backoff,
                }
            }
        }
    } else {
        let bindings = bind_arguments(&function);
        quote! {
            #bindings
            let __tasker_result #annotation = #run;
            #[allow(unreachable_code)]
            let __tasker_value = {
                let _ = #classify;
                __tasker_result
            };
            __tasker_value
        }
    };
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
        #attempts
    }};
    let typed_request = crate::typed_request::expand(&p, &function, &name, &version);
    install_body(&mut function, new_body);
    let item = &function.item;
    quote!(#item #typed_request)
}

/// One attempt of a task's body, inside `__tasker_task`; with `timeout_ms`, limited by it.
fn task_attempt(args: &TaskArgs, function: &Function) -> TokenStream {
    let body = function.body();
    match (function.is_async(), args.policy.timeout_ms.is_some()) {
        (true, false) => quote!(__tasker_task.run(async #body).await),
        (true, true) => {
            // `run_timed` asks `From<TaskTimeout>` of the error type itself; spanned at the
            // return type, a missing impl is reported there with a readable message.
            let timed = respan(
                quote!(__tasker_task.run_timed(__tasker_body).await),
                error_type_span(&function.return_type()),
            );
            quote!({
                let __tasker_body = async #body;
                #timed
            })
        }
        (false, _) => quote!(__tasker_task.run_sync(|| #body)),
    }
}

/// The by-value arguments of a task that retries: one slot each before the attempts, and at the
/// top of each attempt the body's pattern bound from it by `__tasker_task.argument` (a clone
/// while attempts remain; a missing `Clone` is reported at the argument).
fn task_retry_arguments(function: &Function) -> (TokenStream, TokenStream) {
    let owned: Vec<_> = function
        .arguments
        .iter()
        .filter_map(|argument| match argument {
            Argument::Owned { name, pattern, ty } => Some((name, pattern, ty)),
            _ => None,
        })
        .collect();
    let slot = |index: usize, ty: &Type| {
        let (_, last) = span_range(quote!(#ty));
        Ident::new(&format!("__tasker_slot_{index}"), last)
    };
    let slots = owned.iter().enumerate().map(|(index, (name, _, ty))| {
        let slot = slot(index, ty);
        quote!(let mut #slot = ::core::option::Option::Some(#name);)
    });
    let bindings = owned.iter().enumerate().map(|(index, (_, pattern, ty))| {
        let (first, _) = span_range(quote!(#pattern));
        let borrow = respan(quote!(&mut), first);
        let slot = slot(index, ty);
        quote!(let #pattern = __tasker_task.argument(#borrow #slot);)
    });
    (quote!(#(#slots)*), quote!(#(#bindings)*))
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

fn install_body(function: &mut Function, body: Block) {
    match function.shape {
        Shape::AsyncTrait { .. } => replace_inner_async_block(&mut function.item.block, body),
        Shape::Sync | Shape::Async => *function.item.block = body,
    }
}
