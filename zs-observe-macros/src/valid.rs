//! Every semantic check on the attribute, in one pass over [`Args`] and the [`Func`].

use syn::LitStr;
use zs_observe_catalog::rules::{
    closest, label_name_problem, metric_name_problems, snake, MetricKey,
};

use crate::ast::Func;
use crate::attr::{Args, Ctxt, LabelValue, MetricArg, OutcomeArg, SpanArg};
use zs_observe_catalog::{Catalog, LabelValues, MetricKind};

/// Runs all checks, recording each problem in `cx`; with a catalog, also the
/// cross-checks against it.
pub(crate) fn check(args: &Args, func: &Func, catalog: Option<(&Catalog, &str)>, cx: &mut Ctxt) {
    if let Some((catalog, file)) = catalog {
        check_against_catalog(args, catalog, file, cx);
    }
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

/// The values of the automatic outcome label.
const OUTCOMES: [&str; 4] = ["ok", "error", "panic", "cancelled"];

fn check_against_catalog(args: &Args, catalog: &Catalog, file: &str, cx: &mut Ctxt) {
    let uses = [
        (&args.counter, MetricKey::Counter, MetricKind::Counter),
        (&args.histogram, MetricKey::Histogram, MetricKind::Histogram),
        (&args.in_flight, MetricKey::InFlight, MetricKind::Gauge),
    ];
    for (arg, key, kind) in uses {
        if let Some(MetricArg { name }) = arg {
            check_metric_in_catalog(args, name, key, kind, catalog, file, cx);
        }
    }
}

fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_metric_in_catalog(
    args: &Args,
    lit: &LitStr,
    key: MetricKey,
    kind: MetricKind,
    catalog: &Catalog,
    file: &str,
    cx: &mut Ctxt,
) {
    let name = lit.value();
    let Some(metric) = catalog.get(&name) else {
        if let Some(ns) = &catalog.namespace {
            if !name.starts_with(&format!("{ns}_")) {
                cx.error(lit, format!("metric {name:?} lacks the namespace prefix `{ns}_` set in {file}; use {:?}", format!("{ns}_{name}")));
                return;
            }
        }
        let hint = match catalog.closest(&name) {
            Some(near) => format!("; did you mean {near:?}?"),
            None => "; declare it there (see docs/catalog.md)".to_owned(),
        };
        cx.error(
            lit,
            format!("metric {name:?} is not in the catalog {file}{hint}"),
        );
        return;
    };
    let at = format!("{file}:{}", metric.line);
    if metric.kind != kind {
        cx.error(
            lit,
            format!(
                "`{}` needs a {}, but {at} declares {name:?} as a {}",
                key.key(),
                kind.as_str(),
                metric.kind.as_str()
            ),
        );
        return;
    }
    // The labels this call site records, in attribute order.
    let mut given: Vec<String> = args.labels.iter().map(|l| l.key.to_string()).collect();
    let outcome = if key == MetricKey::InFlight {
        None
    } else {
        args.outcome_label()
    };
    if let Some(o) = &outcome {
        given.push(o.clone());
    }
    let declared: Vec<&str> = metric.labels.iter().map(|l| l.name.as_str()).collect();
    let missing: Vec<&str> = declared
        .iter()
        .copied()
        .filter(|d| !given.iter().any(|g| g == d))
        .collect();
    let extra: Vec<&str> = given
        .iter()
        .map(String::as_str)
        .filter(|g| !declared.contains(g))
        .collect();
    if !missing.is_empty() || !extra.is_empty() {
        let mut msg = format!(
            "labels of {name:?} do not match {at}: declared [{}], this call site records [{}]",
            list(&declared),
            list(&given.iter().map(String::as_str).collect::<Vec<_>>())
        );
        if !missing.is_empty() {
            msg.push_str(&format!("; missing: {}", list(&missing)));
        }
        if !extra.is_empty() {
            msg.push_str(&format!("; not declared: {}", list(&extra)));
        }
        if outcome.as_deref().is_some_and(|o| extra.contains(&o)) {
            msg.push_str(&format!(
                "; the outcome label is added automatically: declare `{} = [\"ok\", \"error\", \"panic\", \"cancelled\"]` or write `outcome = false`",
                outcome.as_deref().unwrap_or("outcome")
            ));
        }
        cx.error(lit, msg);
    }
    if let Some(o) = &outcome {
        if let Some(spec) = metric.label(o) {
            if let LabelValues::Closed(values) = &spec.values {
                let absent: Vec<&str> = OUTCOMES
                    .iter()
                    .copied()
                    .filter(|v| !values.iter().any(|x| x == v))
                    .collect();
                if !absent.is_empty() {
                    cx.error(
                        lit,
                        format!(
                            "label `{o}` of {name:?} ({at}) must allow every outcome; missing: {}",
                            list(&absent)
                        ),
                    );
                }
            }
        }
    }
    for label in &args.labels {
        let (LabelValue::Literal(value), Some(spec)) =
            (&label.value, metric.label(&label.key.to_string()))
        else {
            continue;
        };
        if let LabelValues::Closed(allowed) = &spec.values {
            let v = value.value();
            if !allowed.contains(&v) {
                let hint = closest(&v, allowed.iter().map(String::as_str))
                    .map(|n| format!("; did you mean {n:?}?"))
                    .unwrap_or_default();
                cx.error(
                    value,
                    format!(
                        "{v:?} is not an allowed value of label `{}` of {name:?} ({at}); allowed: {}{hint}",
                        label.key,
                        list(&allowed.iter().map(String::as_str).collect::<Vec<_>>())
                    ),
                );
            }
        }
    }
}
