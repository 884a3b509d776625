//! Code generation for `#[instrumented]`.
//!
//! The body is wrapped so that a drop guard sees every exit: the guard is
//! created before the body runs, `finish`ed with the outcome of the returned
//! value, and otherwise dropped during a panic (outcome `panic`) or when the
//! future is dropped (outcome `cancelled`). Generated locals use
//! `Span::mixed_site()` so the user's body cannot see or clash with them.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Block, Ident, LitStr, ReturnType};

use crate::ast::{self, Func, Shape};
use crate::attr::{Args, Ctxt, EventArg, FieldKind, LabelValue, Level, SpanArg};

pub(crate) fn instrumented(args: TokenStream, item: TokenStream) -> TokenStream {
    expand_with(args, item, cfg!(feature = "disabled"))
}

/// `disabled`: validate, then emit the function exactly as written.
pub(crate) fn expand_with(args: TokenStream, item: TokenStream, disabled: bool) -> TokenStream {
    let mut cx = Ctxt::default();
    let parsed_args = Args::parse(args, &mut cx);
    let func = match Func::parse(item.clone()) {
        Ok(func) => func,
        Err(err) => {
            cx.push(err);
            return fallback(item, cx);
        }
    };
    let catalog = if parsed_args.has_metrics() {
        crate::catalog::lookup()
    } else {
        None
    };
    let checked = match &catalog {
        Some(loaded) => match &loaded.catalog {
            Ok(c) => Some((&**c, loaded.shown.clone())),
            Err(errors) => {
                for e in errors.iter() {
                    cx.error(Span::call_site(), format!("invalid metric catalog: {e}"));
                }
                None
            }
        },
        None => None,
    };
    crate::valid::check(
        &parsed_args,
        &func,
        checked.as_ref().map(|(c, f)| (*c, f.as_str())),
        &mut cx,
    );
    if cx.has_errors() {
        return fallback(func.item.into_token_stream(), cx);
    }
    if disabled {
        return compiled_out(&parsed_args, func);
    }
    let tracked = match (&catalog, &checked) {
        (Some(loaded), Some(_)) => Some(loaded.path.display().to_string()),
        _ => None,
    };
    expand(&parsed_args, func, tracked.as_deref())
}

/// The `disabled` feature: the function as written, its body preceded by one
/// statement that never runs and reads what the instrumentation would have read
/// (the parameters it records, its field and label expressions). Without it a
/// parameter or a helper used only by the attribute becomes an `unused` warning in
/// the compiled-out build, an error under `#![deny(warnings)]`. The optimiser
/// removes the statement: the function compiles to the same code as without the
/// attribute.
fn compiled_out(args: &Args, func: Func) -> TokenStream {
    let Func { mut item, params } = func;
    let mut reads: Vec<TokenStream> = Vec::new();
    if !matches!(args.span, Some(SpanArg::Off)) {
        if args.skip_all.is_none() {
            let user_fields: Vec<String> = args.fields.iter().map(|f| f.name_string()).collect();
            for param in &params {
                let ident = &param.ident;
                if args.skips.iter().any(|s| s == ident) || user_fields.contains(&ident.to_string())
                {
                    continue;
                }
                reads.push(quote!(&#ident));
            }
        }
        for field in &args.fields {
            if let Some((_, expr)) = &field.value {
                reads.push(quote!(&(#expr)));
            }
        }
    }
    for label in &args.labels {
        if let LabelValue::Expr(expr) = &label.value {
            reads.push(quote!(&(#expr)));
        }
    }
    // An `#[async_trait]` body moved its parameters into a boxed future already:
    // left as written.
    let is_async = item.sig.asyncness.is_some();
    if reads.is_empty() || matches!(Func::shape(&mut item.block, is_async), Shape::AsyncTrait(_)) {
        return item.into_token_stream();
    }
    let stmt: syn::Stmt = syn::parse_quote! {
        #[allow(unreachable_code, clippy::all)]
        if false {
            let _ = (#(#reads,)*);
        }
    };
    item.block.stmts.insert(0, stmt);
    item.into_token_stream()
}

/// On error: the original item, untouched, next to the errors, so one mistake
/// does not cascade into errors about the function's body or its callers.
fn fallback(item: TokenStream, cx: Ctxt) -> TokenStream {
    let errors = cx.finish().map(|e| e.to_compile_error());
    quote! { #errors #item }
}

fn private() -> TokenStream {
    quote!(::zs_observe::__private)
}

fn level_tokens(level: Level) -> TokenStream {
    let p = private();
    let ident = Ident::new(level.ident(), Span::call_site());
    quote!(#p::tracing::Level::#ident)
}

fn expand(args: &Args, func: Func, catalog_file: Option<&str>) -> TokenStream {
    let p = private();
    let site = Ident::new("__ZS_SITE", Span::mixed_site());
    let guard = Ident::new("__zs_guard", Span::mixed_site());
    let ret = Ident::new("__zs_ret", Span::mixed_site());
    let entered = Ident::new("__zs_entered", Span::mixed_site());
    let level = args.level.unwrap_or(Level::Info);
    let target = match &args.target {
        Some(t) => t.to_token_stream(),
        None => quote!(::core::module_path!()),
    };

    let mut site_static = callsite_static(args, &func, &site, &target, level);
    site_static.extend(rebuild_tracking(catalog_file));
    let span = span_expr(args, &func, &target, level);
    let dynamic = dynamic_labels(args);
    let events = result_events(args, &guard, &ret, &target, level);

    let Func { mut item, .. } = func;
    let is_async = item.sig.asyncness.is_some();
    let ret_ty = match &item.sig.output {
        ReturnType::Default => Some(quote!(())),
        ReturnType::Type(_, ty) if !ast::contains_impl_trait(ty) => Some(ty.to_token_stream()),
        ReturnType::Type(..) => None,
    };
    let ann = ret_ty.as_ref().map(|t| quote!(: #t));
    // A function returning `()` or a number, `bool` or `char` can only end `ok`: no
    // need for the trait probe that tells a `Result` (less for rustc to resolve per
    // function).
    let outcome = if returns_plain_value(&item.sig.output) {
        quote!(::zs_observe::Outcome::Ok)
    } else {
        quote! {{
            #[allow(unused_imports)]
            use #p::{OutcomeOfAny as _, OutcomeOfResult as _};
            (&#ret).__zs_outcome()
        }}
    };

    let block = &mut item.block;
    let new_body = match Func::shape(block, is_async) {
        Shape::Sync => {
            let body = block.clone();
            // The closure makes `return` and `?` come back here, to be counted; a body
            // that can do neither runs as it is (one closure type less per function).
            let body = if may_leave_early(body.to_token_stream()) {
                quote!((move || #body)())
            } else {
                quote!(#body)
            };
            quote! {
                #site_static
                let #guard = #p::Guard::start(&#site, #span, #dynamic);
                let #ret #ann = {
                    let #entered = #guard.enter();
                    #[allow(clippy::redundant_closure_call)]
                    #body
                };
                #events
                #guard.finish(#outcome);
                #ret
            }
        }
        Shape::Async => {
            let body = block.clone();
            let wrapped = async_wrap(
                &body.to_token_stream(),
                &guard,
                &ret,
                ann.as_ref(),
                &events,
                &outcome,
            );
            quote! {
                #site_static
                let #guard = #p::Guard::start(&#site, #span, #dynamic);
                #wrapped
            }
        }
        Shape::AsyncTrait(inner) => {
            // The span and per-call labels are built at the call, where the parameters
            // still have their names; the guard starts at the first poll, as for `async fn`.
            let inner_block = &inner.block;
            let wrapped = async_wrap(
                &inner_block.to_token_stream(),
                &guard,
                &ret,
                None,
                &events,
                &outcome,
            );
            let span_var = Ident::new("__zs_span", Span::mixed_site());
            let dyn_var = Ident::new("__zs_dynamic", Span::mixed_site());
            let new_inner: Block = syn::parse_quote! {{
                let #guard = #p::Guard::start(&#site, #span_var, #dyn_var);
                #wrapped
            }};
            inner.block = new_inner;
            let stmts = &block.stmts;
            let body = quote! {
                #site_static
                let #span_var = #span;
                let #dyn_var = #dynamic;
                #(#stmts)*
            };
            *block = syn::parse_quote!({ #body });
            return item.into_token_stream();
        }
    };
    *item.block = syn::parse_quote!({ #new_body });
    item.into_token_stream()
}

fn async_wrap(
    body: &TokenStream,
    guard: &Ident,
    ret: &Ident,
    ann: Option<&TokenStream>,
    events: &TokenStream,
    outcome: &TokenStream,
) -> TokenStream {
    let fut = Ident::new("__zs_fut", Span::mixed_site());
    let entered = Ident::new("__zs_entered", Span::mixed_site());
    let cx = Ident::new("__zs_cx", Span::mixed_site());
    quote! {
        let mut #fut = ::core::pin::pin!(async move #body);
        let #ret #ann = ::core::future::poll_fn(|#cx| {
            let #entered = #guard.enter();
            ::core::future::Future::poll(#fut.as_mut(), #cx)
        })
        .await;
        #events
        #guard.finish(#outcome);
        #ret
    }
}

/// Whether a function with this return type always ends `ok` when it returns: none,
/// `()`, or a primitive number, `bool` or `char`.
fn returns_plain_value(output: &ReturnType) -> bool {
    match output {
        ReturnType::Default => true,
        ReturnType::Type(_, ty) => match &**ty {
            syn::Type::Tuple(t) => t.elems.is_empty(),
            syn::Type::Path(p) if p.qself.is_none() => p.path.get_ident().is_some_and(|i| {
                matches!(
                    i.to_string().as_str(),
                    "bool"
                        | "char"
                        | "u8"
                        | "u16"
                        | "u32"
                        | "u64"
                        | "u128"
                        | "usize"
                        | "i8"
                        | "i16"
                        | "i32"
                        | "i64"
                        | "i128"
                        | "isize"
                        | "f32"
                        | "f64"
                )
            }),
            _ => false,
        },
    }
}

/// Macros known not to expand to `return` (std's and `tracing`'s): a body using only
/// these, with no `return` and no `?`, cannot leave before its end.
const NON_RETURNING_MACROS: &[&str] = &[
    "assert",
    "assert_eq",
    "assert_ne",
    "concat",
    "debug",
    "debug_assert",
    "debug_assert_eq",
    "debug_assert_ne",
    "debug_span",
    "eprint",
    "eprintln",
    "error",
    "error_span",
    "event",
    "format",
    "format_args",
    "info",
    "info_span",
    "line",
    "matches",
    "module_path",
    "panic",
    "print",
    "println",
    "span",
    "stringify",
    "todo",
    "trace",
    "trace_span",
    "unimplemented",
    "unreachable",
    "vec",
    "warn",
    "warn_span",
    "write",
    "writeln",
];

/// Whether the body may leave the function before its end: a `return`, a `?`, or a
/// macro not known to be free of them, anywhere in it (also in nested closures,
/// which is merely conservative).
fn may_leave_early(body: TokenStream) -> bool {
    use proc_macro2::{Spacing, TokenTree};
    let tokens: Vec<TokenTree> = body.into_iter().collect();
    tokens.iter().enumerate().any(|(i, tt)| match tt {
        TokenTree::Group(g) => may_leave_early(g.stream()),
        TokenTree::Ident(id) => {
            id == "return"
                || (matches!(
                    tokens.get(i + 1),
                    Some(TokenTree::Punct(p)) if p.as_char() == '!' && p.spacing() == Spacing::Alone
                ) && matches!(tokens.get(i + 2), Some(TokenTree::Group(_)))
                    && !NON_RETURNING_MACROS.iter().any(|m| id == m))
        }
        TokenTree::Punct(p) => p.as_char() == '?',
        TokenTree::Literal(_) => false,
    })
}

/// Makes cargo rebuild the crate when the catalog file or the variable that
/// points at it changes (rustc records both in the crate's dep-info).
fn rebuild_tracking(catalog_file: Option<&str>) -> TokenStream {
    let env = crate::catalog::ENV;
    // Once per compilation: every further `include_bytes!` would read the file again.
    let file = catalog_file
        .filter(|f| crate::catalog::first_use(std::path::Path::new(f)))
        .map(|f| {
            quote!(
                const _: &[u8] = ::core::include_bytes!(#f);
            )
        });
    quote! {
        #file
        const _: ::core::option::Option<&str> = ::core::option_env!(#env);
    }
}

fn opt_name(name: Option<&LitStr>) -> TokenStream {
    match name {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    }
}

/// The per-call-site static: metric names, literal labels, outcome label and the
/// completion-log hook. Its metric handles are resolved once, on first use.
fn callsite_static(
    args: &Args,
    func: &Func,
    site: &Ident,
    target: &TokenStream,
    level: Level,
) -> TokenStream {
    let p = private();
    let fn_name = func.name().to_string();
    let counter = opt_name(args.counter.as_ref().map(|m| &m.name));
    let histogram = opt_name(args.histogram.as_ref().map(|m| &m.name));
    let in_flight = opt_name(args.in_flight.as_ref().map(|m| &m.name));
    let literal = args.labels.iter().filter_map(|l| match &l.value {
        LabelValue::Literal(v) => {
            let k = LitStr::new(&l.key.to_string(), l.key.span());
            Some(quote!((#k, #v)))
        }
        LabelValue::Expr(_) => None,
    });
    let has_dynamic = args
        .labels
        .iter()
        .any(|l| matches!(l.value, LabelValue::Expr(_)));
    let outcome = match args.outcome_label() {
        Some(name) => quote!(::core::option::Option::Some(#name)),
        None => quote!(::core::option::Option::None),
    };
    let on_complete = match &args.log {
        Some(log) => {
            let message = log
                .message
                .as_ref()
                .map(LitStr::value)
                .unwrap_or_else(|| format!("{fn_name} completed"));
            let lvl = level_tokens(log.level.unwrap_or(level));
            let hook = Ident::new("__zs_on_complete", Span::mixed_site());
            quote! {
                ::core::option::Option::Some({
                    fn #hook(c: &#p::Completion) {
                        #p::tracing::event!(
                            target: #target,
                            #lvl,
                            outcome = c.outcome.as_str(),
                            duration_seconds = c.elapsed_seconds(),
                            "{}",
                            #message
                        );
                    }
                    #hook as fn(&#p::Completion)
                })
            }
        }
        None => quote!(::core::option::Option::None),
    };
    let names: Vec<&LitStr> = [&args.counter, &args.histogram, &args.in_flight]
        .into_iter()
        .flatten()
        .map(|m| &m.name)
        .collect();
    // Registered at link time: on ELF targets the static itself goes into a linker
    // section that `zs_observe::coverage` reads (nothing more to compile per
    // function); elsewhere through `inventory`, at start-up. Keep the target list and
    // the section name in step with `zs_observe::coverage::SECTION`.
    let elf = quote!(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "fuchsia"
    ));
    let registration = (!names.is_empty()).then(|| {
        quote! {
            #[cfg(not(#elf))]
            #p::inventory::submit! {
                #p::Registration {
                    function: ::core::concat!(::core::module_path!(), "::", #fn_name),
                    metrics: &[#(#names),*],
                }
            }
        }
    });
    quote! {
        #registration
        #[cfg_attr(#elf, used, unsafe(link_section = "zs_observe_call_sites_v1"))]
        static #site: #p::CallSite = #p::CallSite::new(
            ::core::module_path!(),
            ::core::concat!(::core::module_path!(), "::", #fn_name),
            &[#(#names),*],
            #counter,
            #histogram,
            #in_flight,
            &[#(#literal),*],
            #has_dynamic,
            #outcome,
            #on_complete,
        );
    }
}

/// The span, with the parameters and `fields(...)` as fields (`tracing::instrument` rules).
///
/// The callsite and metadata are statics, as `tracing::span!` makes them; the values
/// are listed in a closure that `CallSpan::start` calls only for an enabled span, after
/// the sampling decision (an unsampled call's span is a light frame built without the
/// dispatcher: `zs_observe::call_span`).
fn span_expr(args: &Args, func: &Func, target: &TokenStream, level: Level) -> TokenStream {
    let p = private();
    let name = match &args.span {
        Some(SpanArg::Off) => return quote!(#p::CallSpan::none()),
        Some(SpanArg::Named(name)) => name.value(),
        None => func.name().to_string(),
    };
    let lvl = level_tokens(level);
    let user_fields: Vec<String> = args.fields.iter().map(|f| f.name_string()).collect();
    let captured = quote!(#p::Captured);
    // Numbers, booleans and `&str` are handed over as they are, anything else as a
    // `tracing::Value` (`zs_observe::call_span::Capture`).
    let capture = |value: TokenStream, span: Span| {
        quote_spanned!(span=> {
            #[allow(unused_imports)]
            use #p::{CaptureDyn as _, CaptureRaw as _};
            #p::Capture(#value).__zs_capture()
        })
    };
    let mut names: Vec<String> = Vec::new();
    let mut values: Vec<TokenStream> = Vec::new();
    if args.skip_all.is_none() {
        for param in &func.params {
            let ident = &param.ident;
            let name = ident.to_string();
            if args.skips.iter().any(|s| s == ident) || user_fields.contains(&name) {
                continue;
            }
            let is_value = param.ty.as_ref().is_some_and(ast::is_value_type);
            // Spanned on the parameter: a parameter that is not `Debug` is blamed there.
            values.push(if is_value {
                capture(quote_spanned!(ident.span()=> &#ident), ident.span())
            } else {
                quote_spanned!(ident.span()=> #captured::Dyn(&#p::tracing::field::debug(&#ident)))
            });
            names.push(name);
        }
    }
    for field in &args.fields {
        names.push(field.name_string());
        values.push(match &field.value {
            None => quote!(#captured::Empty),
            Some((Some(FieldKind::Display), expr)) => {
                quote!(#captured::Dyn(&#p::tracing::field::display(&#expr)))
            }
            Some((Some(FieldKind::Debug), expr)) => {
                quote!(#captured::Dyn(&#p::tracing::field::debug(&#expr)))
            }
            Some((None, expr)) => capture(quote!(&(#expr)), expr.span()),
        });
    }
    if args.err.is_some() {
        // Filled in on `Err`: the OTel layer turns them into the span's error status.
        for name in ["otel.status_code", "otel.status_description"] {
            names.push(name.to_owned());
            values.push(quote!(#captured::Empty));
        }
    }
    let callsite = Ident::new("__ZS_SPAN", Span::mixed_site());
    let meta = Ident::new("__ZS_SPAN_META", Span::mixed_site());
    let verdict = Ident::new("__ZS_SPAN_VERDICT", Span::mixed_site());
    let builder = Ident::new("__zs_span", Span::mixed_site());
    quote!({
        static #callsite: #p::tracing::callsite::DefaultCallsite =
            #p::tracing::callsite::DefaultCallsite::new(&#meta);
        static #meta: #p::tracing::Metadata<'static> = #p::tracing::metadata! {
            name: #name,
            target: #target,
            level: #lvl,
            fields: &[#(#names),*],
            callsite: &#callsite,
            kind: #p::tracing::metadata::Kind::SPAN,
        };
        static #verdict: #p::SpanVerdict = #p::SpanVerdict::new();
        #p::CallSpan::start(&#callsite, &#verdict, |#builder: &mut #p::SpanBuilder| {
            #builder.build([#(#values),*])
        })
    })
}

/// Per-call label values, evaluated before the body runs (it may move the parameters).
fn dynamic_labels(args: &Args) -> TokenStream {
    let p = private();
    let dynamic: Vec<TokenStream> = args
        .labels
        .iter()
        .filter_map(|l| match &l.value {
            LabelValue::Expr(expr) => {
                let k = LitStr::new(&l.key.to_string(), l.key.span());
                Some(quote_spanned!(l.key.span()=> #p::Label::new(#k, #expr)))
            }
            LabelValue::Literal(_) => None,
        })
        .collect();
    if dynamic.is_empty() {
        quote!(::core::option::Option::None)
    } else {
        quote!(::core::option::Option::Some(::std::vec![#(#dynamic),*]))
    }
}

/// The `err` and `ret` events, emitted inside the span once the body returned.
fn result_events(
    args: &Args,
    guard: &Ident,
    ret: &Ident,
    target: &TokenStream,
    level: Level,
) -> TokenStream {
    let p = private();
    let entered = Ident::new("__zs_entered", Span::mixed_site());
    let err_var = Ident::new("__zs_err", Span::mixed_site());
    let mut out = TokenStream::new();
    if let Some(EventArg {
        kind,
        level: err_level,
    }) = &args.err
    {
        let lvl = level_tokens(err_level.unwrap_or(Level::Error));
        let (field, describe) = match kind {
            Some(FieldKind::Debug) => (
                quote!(error = ?#err_var),
                quote!(#p::tracing::field::debug(#err_var)),
            ),
            _ => (
                quote!(error = %#err_var),
                quote!(#p::tracing::field::display(#err_var)),
            ),
        };
        out.extend(quote! {
            if let ::core::result::Result::Err(#err_var) = &#ret {
                #guard.record_error(#describe);
                let #entered = #guard.enter();
                #p::tracing::event!(target: #target, #lvl, #field);
            }
        });
    }
    if let Some(EventArg {
        kind,
        level: ret_level,
    }) = &args.ret
    {
        let lvl = level_tokens(ret_level.unwrap_or(level));
        let field = match kind {
            Some(FieldKind::Display) => quote!(return = %#ret),
            _ => quote!(return = ?#ret),
        };
        out.extend(quote! {{
            let #entered = #guard.enter();
            #p::tracing::event!(target: #target, #lvl, #field);
        }});
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> TokenStream {
        quote! {
            async fn fetch(id: u64) -> Result<u64, String> {
                if id == 0 { return Err("zero".into()); }
                Ok(id)
            }
        }
    }

    #[test]
    fn disabled_emits_the_function_unchanged() {
        let args = quote!(
            span = "db.fetch",
            counter = "db_fetch_total",
            histogram = "db_fetch_duration_seconds",
            err
        );
        let out = expand_with(args, item(), true);
        let expected: syn::ItemFn = syn::parse2(item()).unwrap();
        let mut actual: syn::ItemFn = syn::parse2(out).unwrap();
        // One statement first, reading the recorded parameter inside `if false`.
        let first = actual.block.stmts.remove(0);
        assert_eq!(
            first.to_token_stream().to_string(),
            quote!(
                #[allow(unreachable_code, clippy::all)]
                if false {
                    let _ = (&id,);
                }
            )
            .to_string()
        );
        assert_eq!(actual, expected);
    }

    #[test]
    fn disabled_reads_fields_and_labels_but_not_skipped_parameters() {
        let args = quote!(
            span = "db.fetch",
            counter = "db_fetch_total",
            labels(table = table_name(id)),
            fields(kind = %kind_of(id)),
            skip(id)
        );
        let out = expand_with(args, item(), true).to_string();
        let reads = quote!(let _ = (&(kind_of(id)), &(table_name(id)),);).to_string();
        assert!(out.contains(&reads), "{out}");
        // Nothing to read: the function exactly as written.
        let out = expand_with(
            quote!(span = false, counter = "db_fetch_total"),
            item(),
            true,
        );
        let expected: syn::ItemFn = syn::parse2(item()).unwrap();
        assert_eq!(syn::parse2::<syn::ItemFn>(out).unwrap(), expected);
    }

    #[test]
    fn disabled_still_reports_attribute_errors() {
        let out = expand_with(quote!(histgram = "x_seconds"), item(), true).to_string();
        assert!(out.contains("compile_error"), "{out}");
        assert!(out.contains("did you mean `histogram`"), "{out}");
        assert!(
            out.contains("async fn fetch"),
            "the function is still emitted: {out}"
        );
    }

    #[test]
    fn early_exits_are_found_wherever_they_hide() {
        for body in [
            quote!({
                if x {
                    return 1;
                }
                2
            }),
            quote!({
                let v = parse(s)?;
                v
            }),
            quote!({
                bail!("no");
            }),
            quote!({
                let f = || {
                    return 3;
                };
                f()
            }),
            quote!({ vec![try_it()?] }),
            quote!({
                my_macro! { x }
            }),
        ] {
            assert!(may_leave_early(body.clone()), "{body}");
        }
        for body in [
            quote!({ x.wrapping_mul(3) ^ y }),
            quote!({
                info!("x = {}", x);
                if a != b {
                    1
                } else {
                    2
                }
            }),
            quote!({
                let v = vec![1, 2];
                assert_eq!(v.len(), 2);
                format!("{v:?}")
            }),
            quote!({ !flag }),
        ] {
            assert!(!may_leave_early(body.clone()), "{body}");
        }
    }

    #[test]
    fn plain_return_types_skip_the_outcome_probe() {
        let plain = |f: TokenStream| {
            let f: syn::ItemFn = syn::parse2(f).unwrap();
            returns_plain_value(&f.sig.output)
        };
        assert!(plain(quote!(
            fn f() {}
        )));
        assert!(plain(quote!(
            fn f() -> () {}
        )));
        assert!(plain(quote!(
            fn f() -> u64 {
                1
            }
        )));
        assert!(!plain(quote!(
            fn f() -> Result<u64, E> {
                Ok(1)
            }
        )));
        assert!(!plain(quote!(
            fn f() -> io::Result<()> {
                Ok(())
            }
        )));
        assert!(!plain(quote!(
            fn f() -> Option<u64> {
                None
            }
        )));
        assert!(!plain(quote!(
            fn f() -> Outcome {
                x
            }
        )));
    }

    #[test]
    fn enabled_wraps_the_body() {
        let out = expand_with(quote!(counter = "db_fetch_total"), item(), false).to_string();
        assert!(out.contains("Guard :: start"), "{out}");
    }
}
