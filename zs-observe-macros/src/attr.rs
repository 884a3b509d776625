//! Parsing of the attribute: `#[instrumented(key = value, key(...), flag, ...)]`.
//!
//! Parsing happens in two passes so that every mistake in one attribute is
//! reported at once: [`RawItem`]s are read leniently (only token-level garbage
//! stops the parse), then [`Args::from_raw`] interprets each item and collects
//! errors in a [`Ctxt`].

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Token};

/// Collects errors so that they can be reported together.
#[derive(Default)]
pub(crate) struct Ctxt {
    errors: Vec<syn::Error>,
}

impl Ctxt {
    pub(crate) fn error(&mut self, span: impl Spanned, msg: impl std::fmt::Display) {
        self.errors.push(syn::Error::new(span.span(), msg));
    }

    pub(crate) fn push(&mut self, err: syn::Error) {
        self.errors.push(err);
    }

    pub(crate) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// All errors combined into one, or `None` when there were none.
    pub(crate) fn finish(self) -> Option<syn::Error> {
        self.errors.into_iter().reduce(|mut a, b| {
            a.combine(b);
            a
        })
    }
}

/// One `key`, `key = value` or `key(...)` item, not yet interpreted.
pub(crate) struct RawItem {
    pub(crate) key: Ident,
    pub(crate) value: RawValue,
}

pub(crate) enum RawValue {
    Flag,
    Eq(Expr),
    List(TokenStream, Span),
}

impl Parse for RawItem {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key = Ident::parse_any(input)?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            RawValue::Eq(input.parse()?)
        } else if input.peek(syn::token::Paren) {
            let content;
            let paren = syn::parenthesized!(content in input);
            RawValue::List(content.parse()?, paren.span.join())
        } else {
            RawValue::Flag
        };
        Ok(RawItem { key, value })
    }
}

/// The keys the attribute understands, for "unknown key" messages.
pub(crate) const KEYS: &[&str] = &[
    "span",
    "histogram",
    "counter",
    "in_flight",
    "labels",
    "outcome",
    "fields",
    "skip",
    "skip_all",
    "level",
    "target",
    "err",
    "ret",
    "log",
];

/// A metric key (`histogram`, `counter`, `in_flight`) and its name.
pub(crate) struct MetricArg {
    pub(crate) name: LitStr,
}

pub(crate) enum SpanArg {
    /// `span = "a.b"`.
    Named(LitStr),
    /// `span = false`: metrics only.
    Off,
}

/// A `labels(...)` entry.
pub(crate) struct LabelArg {
    pub(crate) key: Ident,
    pub(crate) value: LabelValue,
}

pub(crate) enum LabelValue {
    /// Checked at compile time, resolved once per call site.
    Literal(LitStr),
    /// Evaluated on every call (before the body runs).
    Expr(Box<Expr>),
}

impl Parse for LabelArg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key = Ident::parse_any(input)?;
        if !input.peek(Token![=]) {
            return Err(syn::Error::new(
                key.span(),
                format!("label `{key}` needs a value: `{key} = \"literal\"` or `{key} = expr`"),
            ));
        }
        input.parse::<Token![=]>()?;
        let expr: Expr = input.parse()?;
        let value = match expr {
            Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) => LabelValue::Literal(s),
            other => LabelValue::Expr(Box::new(other)),
        };
        Ok(LabelArg { key, value })
    }
}

/// How the outcome label is configured.
pub(crate) enum OutcomeArg {
    Default,
    Renamed(LitStr),
    Off,
}

/// A `fields(...)` entry, with `tracing::instrument` syntax.
pub(crate) struct FieldArg {
    pub(crate) name: Punctuated<Ident, Token![.]>,
    pub(crate) value: Option<(Option<FieldKind>, Expr)>,
}

#[derive(Clone, Copy)]
pub(crate) enum FieldKind {
    Display,
    Debug,
}

impl Parse for FieldArg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let name = Punctuated::parse_separated_nonempty_with(input, Ident::parse_any)?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            let kind = if input.peek(Token![%]) {
                input.parse::<Token![%]>()?;
                Some(FieldKind::Display)
            } else if input.peek(Token![?]) {
                input.parse::<Token![?]>()?;
                Some(FieldKind::Debug)
            } else {
                None
            };
            Some((kind, input.parse()?))
        } else {
            None
        };
        Ok(FieldArg { name, value })
    }
}

impl FieldArg {
    pub(crate) fn name_string(&self) -> String {
        self.name
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(".")
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn parse_str(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "trace" => Level::Trace,
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warn" => Level::Warn,
            "error" => Level::Error,
            _ => return None,
        })
    }

    pub(crate) fn ident(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

/// `err`, `ret`: which formatting and which level.
pub(crate) struct EventArg {
    pub(crate) kind: Option<FieldKind>,
    pub(crate) level: Option<Level>,
}

/// `log`, `log = "message"`, `log(message = "...", level = "...")`.
pub(crate) struct LogArg {
    pub(crate) message: Option<LitStr>,
    pub(crate) level: Option<Level>,
}

/// The interpreted attribute.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) span: Option<SpanArg>,
    pub(crate) histogram: Option<MetricArg>,
    pub(crate) counter: Option<MetricArg>,
    pub(crate) in_flight: Option<MetricArg>,
    pub(crate) labels: Vec<LabelArg>,
    pub(crate) outcome: Option<OutcomeArg>,
    pub(crate) fields: Vec<FieldArg>,
    pub(crate) skips: Vec<Ident>,
    pub(crate) skip_all: Option<Span>,
    pub(crate) level: Option<Level>,
    pub(crate) target: Option<LitStr>,
    pub(crate) err: Option<EventArg>,
    pub(crate) ret: Option<EventArg>,
    pub(crate) log: Option<LogArg>,
    /// Span of `skip(...)`, for the `skip` + `skip_all` check.
    pub(crate) skip_span: Option<Span>,
}

/// The default name of the outcome label.
pub(crate) const OUTCOME_LABEL: &str = "outcome";

impl Args {
    pub(crate) fn outcome_label(&self) -> Option<String> {
        match &self.outcome {
            None | Some(OutcomeArg::Default) => Some(OUTCOME_LABEL.to_owned()),
            Some(OutcomeArg::Renamed(name)) => Some(name.value()),
            Some(OutcomeArg::Off) => None,
        }
    }

    pub(crate) fn has_metrics(&self) -> bool {
        self.histogram.is_some() || self.counter.is_some() || self.in_flight.is_some()
    }

    /// Parses the attribute's tokens, recording every problem in `cx`.
    pub(crate) fn parse(tokens: TokenStream, cx: &mut Ctxt) -> Args {
        let parser = Punctuated::<RawItem, Token![,]>::parse_terminated;
        match parser.parse2(tokens) {
            Ok(items) => Args::from_raw(items, cx),
            Err(err) => {
                cx.push(err);
                Args::default()
            }
        }
    }

    fn from_raw(items: Punctuated<RawItem, Token![,]>, cx: &mut Ctxt) -> Args {
        let mut args = Args::default();
        let mut seen: Vec<Ident> = Vec::new();
        for item in items {
            let key = item.key.to_string();
            if !KEYS.contains(&key.as_str()) {
                let hint = zs_observe_catalog::rules::closest(&key, KEYS.iter().copied())
                    .map(|k| format!("; did you mean `{k}`?"))
                    .unwrap_or_default();
                cx.error(
                    &item.key,
                    format!(
                        "unknown key `{key}` in #[instrumented]{hint} (known keys: {})",
                        KEYS.join(", ")
                    ),
                );
                continue;
            }
            if let Some(first) = seen.iter().find(|k| **k == item.key) {
                let mut err = syn::Error::new(
                    item.key.span(),
                    format!("duplicate key `{key}` in #[instrumented]; give it once"),
                );
                err.combine(syn::Error::new(
                    first.span(),
                    format!("`{key}` first given here"),
                ));
                cx.push(err);
                continue;
            }
            seen.push(item.key.clone());
            args.apply(item, cx);
        }
        args
    }

    fn apply(&mut self, item: RawItem, cx: &mut Ctxt) {
        let key = item.key.to_string();
        match key.as_str() {
            "span" => match &item.value {
                RawValue::Eq(Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                })) => self.span = Some(SpanArg::Named(s.clone())),
                RawValue::Eq(Expr::Lit(ExprLit {
                    lit: Lit::Bool(b), ..
                })) if !b.value => self.span = Some(SpanArg::Off),
                _ => wrong_type(cx, &item, "a string literal, e.g. `span = \"wasm.execute\"`, or `span = false` for no span"),
            },
            "histogram" | "counter" | "in_flight" => {
                let Some(name) = lit_str(&item) else {
                    let example = match key.as_str() {
                        "histogram" => "histogram = \"zerostate_wasm_execution_duration_seconds\"",
                        "counter" => "counter = \"zerostate_tasks_total\"",
                        _ => "in_flight = \"zerostate_tasks_executing\"",
                    };
                    wrong_type(cx, &item, &format!("a metric name string, e.g. `{example}`"));
                    return;
                };
                let arg = Some(MetricArg { name });
                match key.as_str() {
                    "histogram" => self.histogram = arg,
                    "counter" => self.counter = arg,
                    _ => self.in_flight = arg,
                }
            }
            "labels" => {
                let RawValue::List(tokens, _) = item.value else {
                    wrong_type(cx, &item, "a list, e.g. `labels(kind = \"gossip\", peer = peer.id())`");
                    return;
                };
                match Punctuated::<LabelArg, Token![,]>::parse_terminated.parse2(tokens) {
                    Ok(list) => self.labels = list.into_iter().collect(),
                    Err(e) => cx.push(e),
                }
            }
            "outcome" => match &item.value {
                RawValue::Eq(Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                })) => self.outcome = Some(OutcomeArg::Renamed(s.clone())),
                RawValue::Eq(Expr::Lit(ExprLit {
                    lit: Lit::Bool(b), ..
                })) => {
                    self.outcome = Some(if b.value {
                        OutcomeArg::Default
                    } else {
                        OutcomeArg::Off
                    })
                }
                _ => wrong_type(cx, &item, "a label name string (`outcome = \"result\"`) or `outcome = false`"),
            },
            "fields" => {
                let RawValue::List(tokens, _) = item.value else {
                    wrong_type(cx, &item, "a list, e.g. `fields(task_id = %task.id, attempt)`");
                    return;
                };
                match Punctuated::<FieldArg, Token![,]>::parse_terminated.parse2(tokens) {
                    Ok(list) => self.fields = list.into_iter().collect(),
                    Err(e) => cx.push(e),
                }
            }
            "skip" => {
                let RawValue::List(tokens, span) = item.value else {
                    wrong_type(cx, &item, "a list of parameter names, e.g. `skip(payload, self)`");
                    return;
                };
                self.skip_span = Some(span);
                let parser = |input: ParseStream<'_>| {
                    Punctuated::<Ident, Token![,]>::parse_terminated_with(input, Ident::parse_any)
                };
                match parser.parse2(tokens) {
                    Ok(list) => self.skips = list.into_iter().collect(),
                    Err(e) => cx.push(e),
                }
            }
            "skip_all" => match item.value {
                RawValue::Flag => self.skip_all = Some(item.key.span()),
                _ => wrong_type(cx, &item, "no value: write `skip_all`"),
            },
            "level" => {
                let level = match &item.value {
                    RawValue::Eq(Expr::Lit(ExprLit {
                        lit: Lit::Str(s), ..
                    })) => Level::parse_str(&s.value()),
                    RawValue::Eq(Expr::Path(p)) => p
                        .path
                        .segments
                        .last()
                        .and_then(|s| Level::parse_str(&s.ident.to_string())),
                    _ => None,
                };
                match level {
                    Some(level) => self.level = Some(level),
                    None => wrong_type(cx, &item, "one of \"trace\", \"debug\", \"info\", \"warn\", \"error\" (or `Level::INFO`)"),
                }
            }
            "target" => match lit_str(&item) {
                Some(s) => self.target = Some(s),
                None => wrong_type(cx, &item, "a string literal, e.g. `target = \"zerostate::wasm\"`"),
            },
            "err" | "ret" => {
                let parsed = match item.value {
                    RawValue::Flag => Ok(EventArg {
                        kind: None,
                        level: None,
                    }),
                    RawValue::List(tokens, _) => parse_event_arg(tokens),
                    RawValue::Eq(_) => Err(syn::Error::new(
                        item.key.span(),
                        format!("`{key}` takes no `=`: write `{key}`, `{key}(Debug)` or `{key}(level = \"warn\")`"),
                    )),
                };
                match parsed {
                    Ok(arg) if key == "err" => self.err = Some(arg),
                    Ok(arg) => self.ret = Some(arg),
                    Err(e) => cx.push(e),
                }
            }
            "log" => {
                let parsed = match item.value {
                    RawValue::Flag => Ok(LogArg {
                        message: None,
                        level: None,
                    }),
                    RawValue::Eq(Expr::Lit(ExprLit {
                        lit: Lit::Str(s), ..
                    })) => Ok(LogArg {
                        message: Some(s),
                        level: None,
                    }),
                    RawValue::List(tokens, _) => parse_log_arg(tokens),
                    RawValue::Eq(other) => Err(syn::Error::new(
                        other.span(),
                        "`log` takes a message string (`log = \"task finished\"`) or `log(message = \"...\", level = \"info\")`",
                    )),
                };
                match parsed {
                    Ok(arg) => self.log = Some(arg),
                    Err(e) => cx.push(e),
                }
            }
            _ => unreachable!("key list and match arms agree"),
        }
    }
}

fn lit_str(item: &RawItem) -> Option<LitStr> {
    match &item.value {
        RawValue::Eq(Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        })) => Some(s.clone()),
        _ => None,
    }
}

fn wrong_type(cx: &mut Ctxt, item: &RawItem, expected: &str) {
    let span = match &item.value {
        RawValue::Flag => item.key.span(),
        RawValue::Eq(e) => e.span(),
        RawValue::List(_, span) => *span,
    };
    cx.error(
        span,
        format!("wrong value for `{}`: expected {expected}", item.key),
    );
}

fn parse_level_lit(s: &LitStr) -> syn::Result<Level> {
    Level::parse_str(&s.value()).ok_or_else(|| {
        syn::Error::new(
            s.span(),
            "unknown level: expected one of \"trace\", \"debug\", \"info\", \"warn\", \"error\"",
        )
    })
}

fn parse_event_arg(tokens: TokenStream) -> syn::Result<EventArg> {
    let mut arg = EventArg {
        kind: None,
        level: None,
    };
    let items = Punctuated::<RawItem, Token![,]>::parse_terminated.parse2(tokens)?;
    for item in items {
        match (item.key.to_string().as_str(), &item.value) {
            ("Debug", RawValue::Flag) => arg.kind = Some(FieldKind::Debug),
            ("Display", RawValue::Flag) => arg.kind = Some(FieldKind::Display),
            (
                "level",
                RawValue::Eq(Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                })),
            ) => arg.level = Some(parse_level_lit(s)?),
            _ => {
                return Err(syn::Error::new(
                    item.key.span(),
                    format!(
                        "unexpected `{}`: expected `Debug`, `Display` or `level = \"...\"`",
                        item.key.to_token_stream()
                    ),
                ))
            }
        }
    }
    Ok(arg)
}

fn parse_log_arg(tokens: TokenStream) -> syn::Result<LogArg> {
    let mut arg = LogArg {
        message: None,
        level: None,
    };
    let items = Punctuated::<RawItem, Token![,]>::parse_terminated.parse2(tokens)?;
    for item in items {
        match (item.key.to_string().as_str(), &item.value) {
            ("message", RawValue::Eq(Expr::Lit(ExprLit { lit: Lit::Str(s), .. }))) => {
                arg.message = Some(s.clone())
            }
            ("level", RawValue::Eq(Expr::Lit(ExprLit { lit: Lit::Str(s), .. }))) => {
                arg.level = Some(parse_level_lit(s)?)
            }
            _ => {
                return Err(syn::Error::new(
                    item.key.span(),
                    format!(
                        "unexpected `{}` in `log(...)`: expected `message = \"...\"` or `level = \"...\"`",
                        item.key
                    ),
                ))
            }
        }
    }
    Ok(arg)
}
