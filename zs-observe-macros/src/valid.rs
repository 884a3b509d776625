//! Every semantic check on the attribute, in one pass over [`Args`] and the [`Func`].

use syn::LitStr;
use zs_observe_catalog::rules::{
    closest, label_name_problem, metric_name_problems, snake, MetricKey,
};

use crate::ast::Func;
use crate::attr::{Args, Ctxt, LabelValue, OutcomeArg, SpanArg};

/// Runs all checks, recording each problem in `cx`.
pub(crate) fn check(args: &Args, func: &Func, cx: &mut Ctxt) {
    check_skips(args, func, cx);
    check_labels(args, cx);
    if let Some(m) = &args.counter {
        check_metric_name(MetricKey::Counter, &m.name, cx);
    }
    if let Some(m) = &args.histogram {
        check_metric_name(MetricKey::Histogram, &m.name, cx);
    }
    if let Some(m) = &args.in_flight {
        check_metric_name(MetricKey::InFlight, &m.name, cx);
    }
    if let Some(SpanArg::Named(name)) = &args.span {
        check_span_name(name, cx);
    }
    if let Some(OutcomeArg::Renamed(name)) = &args.outcome {
        if let Some(problem) = label_name_problem(&name.value()) {
            cx.error(
                name,
                format!("invalid outcome label name {:?}: {problem}", name.value()),
            );
        }
    }
}

/// Checks a metric name against the Prometheus naming rules; every problem is reported.
fn check_metric_name(key: MetricKey, lit: &LitStr, cx: &mut Ctxt) {
    for problem in metric_name_problems(key, &lit.value()) {
        cx.error(lit, problem);
    }
}

/// Span names: lowercase words separated by dots, e.g. `wasm.execute`.
fn check_span_name(lit: &LitStr, cx: &mut Ctxt) {
    let name = lit.value();
    let ok = !name.is_empty()
        && name.split('.').all(|w| {
            w.starts_with(|c: char| c.is_ascii_lowercase())
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
    if !ok {
        let fixed = name
            .split(['.', ' ', '/', ':', '-'])
            .filter(|w| !w.is_empty())
            .map(snake)
            .collect::<Vec<_>>()
            .join(".");
        cx.error(
            lit,
            format!("span name {name:?} must be lowercase words separated by dots; use {fixed:?}"),
        );
    }
}

fn check_skips(args: &Args, func: &Func, cx: &mut Ctxt) {
    if let (Some(all), Some(list)) = (args.skip_all, args.skip_span) {
        let mut err = syn::Error::new(
            list,
            "`skip(...)` and `skip_all` cannot be used together: `skip_all` already skips every parameter",
        );
        err.combine(syn::Error::new(all, "`skip_all` given here"));
        cx.push(err);
    }
    for skip in &args.skips {
        if !func.params.iter().any(|p| p.ident == *skip) {
            let names: Vec<String> = func.params.iter().map(|p| p.ident.to_string()).collect();
            let hint = closest(&skip.to_string(), names.iter().map(String::as_str))
                .map(|n| format!("; did you mean `{n}`?"))
                .unwrap_or_default();
            cx.error(
                skip,
                format!(
                    "`skip({skip})`: `{}` has no parameter named `{skip}`{hint}",
                    func.name()
                ),
            );
        }
    }
}

fn check_labels(args: &Args, cx: &mut Ctxt) {
    if !args.labels.is_empty() && !args.has_metrics() {
        cx.error(
            &args.labels[0].key,
            "`labels(...)` has no metric to apply to: add `histogram = \"...\"`, `counter = \"...\"` or `in_flight = \"...\"`",
        );
    }
    let outcome = args.outcome_label();
    for (i, label) in args.labels.iter().enumerate() {
        let name = label.key.to_string();
        if let Some(problem) = label_name_problem(&name) {
            cx.error(
                &label.key,
                format!("invalid label name `{name}`: {problem}"),
            );
        }
        if args.labels[..i].iter().any(|l| l.key == label.key) {
            cx.error(
                &label.key,
                format!("duplicate label `{name}`: each label name may appear once"),
            );
        }
        if outcome.as_deref() == Some(name.as_str()) {
            cx.error(
                &label.key,
                format!(
                    "label `{name}` collides with the automatic outcome label; \
                     rename the outcome label with `outcome = \"...\"` or turn it off with `outcome = false`"
                ),
            );
        }
        if let LabelValue::Literal(value) = &label.value {
            if value.value().is_empty() {
                cx.error(value, format!("label `{name}` has an empty value; Prometheus treats an empty label as absent"));
            }
        }
    }
}
