//! A model of the annotated function that keeps the spans of its parts.

use proc_macro2::TokenStream;
use syn::spanned::Spanned;
use syn::{Block, Expr, ExprAsync, FnArg, Ident, ItemFn, Pat, Stmt, Type};

/// The annotated function.
pub(crate) struct Func {
    pub(crate) item: ItemFn,
    pub(crate) params: Vec<Param>,
}

/// One named binding among the function's parameters.
pub(crate) struct Param {
    /// `self`, or the identifier bound by the pattern.
    pub(crate) ident: Ident,
    /// The declared type, when the binding is the whole parameter.
    pub(crate) ty: Option<Type>,
}

/// How the body is run, which decides how it is wrapped.
pub(crate) enum Shape<'a> {
    /// A plain `fn`: the body runs in a closure so that `return` and `?` are seen.
    Sync,
    /// An `async fn`: the body becomes an inner future polled inside the span.
    Async,
    /// A `fn` produced by `#[async_trait]`: `Box::pin(async move { ... })`.
    AsyncTrait(&'a mut ExprAsync),
}

impl Func {
    pub(crate) fn parse(item: TokenStream) -> syn::Result<Func> {
        let item: ItemFn = syn::parse2(item.clone()).map_err(|_| {
            syn::Error::new(
                item.span(),
                "#[instrumented] can only be applied to a function with a body \
                 (free function, method, or trait method with a default body)",
            )
        })?;
        if let Some(constness) = &item.sig.constness {
            return Err(syn::Error::new(
                constness.span,
                "#[instrumented] cannot be applied to a `const fn`: metrics and spans need run time",
            ));
        }
        let mut params = Vec::new();
        for input in &item.sig.inputs {
            match input {
                FnArg::Receiver(r) => params.push(Param {
                    ident: Ident::new("self", r.self_token.span),
                    ty: None,
                }),
                FnArg::Typed(t) => {
                    if let Pat::Ident(p) = &*t.pat {
                        params.push(Param {
                            ident: p.ident.clone(),
                            ty: Some((*t.ty).clone()),
                        });
                    } else {
                        collect_idents(&t.pat, &mut params);
                    }
                }
            }
        }
        Ok(Func { item, params })
    }

    pub(crate) fn name(&self) -> &Ident {
        &self.item.sig.ident
    }

    /// The shape of the body; for `#[async_trait]` output, the inner async block.
    pub(crate) fn shape(block: &mut Block, is_async: bool) -> Shape<'_> {
        if is_async {
            return Shape::Async;
        }
        match block.stmts.last_mut() {
            Some(Stmt::Expr(Expr::Call(call), None))
                if is_box_pin(&call.func) && call.args.len() == 1 =>
            {
                match call.args.first_mut() {
                    Some(Expr::Async(inner)) if inner.capture.is_some() => Shape::AsyncTrait(inner),
                    _ => Shape::Sync,
                }
            }
            _ => Shape::Sync,
        }
    }
}

fn is_box_pin(func: &Expr) -> bool {
    let Expr::Path(path) = func else { return false };
    let segs: Vec<String> = path
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    segs.len() >= 2 && segs[segs.len() - 1] == "pin" && segs[segs.len() - 2] == "Box"
}

fn collect_idents(pat: &Pat, out: &mut Vec<Param>) {
    match pat {
        Pat::Ident(p) => out.push(Param {
            ident: p.ident.clone(),
            ty: None,
        }),
        Pat::Tuple(t) => t.elems.iter().for_each(|p| collect_idents(p, out)),
        Pat::TupleStruct(t) => t.elems.iter().for_each(|p| collect_idents(p, out)),
        Pat::Struct(s) => s.fields.iter().for_each(|f| collect_idents(&f.pat, out)),
        Pat::Reference(r) => collect_idents(&r.pat, out),
        Pat::Type(t) => collect_idents(&t.pat, out),
        Pat::Paren(p) => collect_idents(&p.pat, out),
        Pat::Slice(s) => s.elems.iter().for_each(|p| collect_idents(p, out)),
        _ => {}
    }
}

/// Whether a type is recorded as a `tracing::Value` rather than with `Debug`
/// (`tracing::instrument`'s rule, plus `String`, which it records with `Debug`).
pub(crate) fn is_value_type(ty: &Type) -> bool {
    const VALUE_TYPES: &[&str] = &[
        "bool", "str", "u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "u128", "i128", "f32",
        "f64", "usize", "isize", "String",
    ];
    match ty {
        Type::Path(p) if p.qself.is_none() => p
            .path
            .get_ident()
            .is_some_and(|i| VALUE_TYPES.contains(&i.to_string().as_str())),
        Type::Reference(r) => is_value_type(&r.elem),
        Type::Paren(p) => is_value_type(&p.elem),
        _ => false,
    }
}

/// Whether `impl Trait` appears in a type (such a type cannot annotate a `let`).
pub(crate) fn contains_impl_trait(ty: &Type) -> bool {
    use quote::ToTokens;
    contains_impl(ty.to_token_stream())
}

fn contains_impl(ts: TokenStream) -> bool {
    ts.into_iter().any(|t| match t {
        proc_macro2::TokenTree::Ident(i) => i == "impl",
        proc_macro2::TokenTree::Group(g) => contains_impl(g.stream()),
        _ => false,
    })
}
