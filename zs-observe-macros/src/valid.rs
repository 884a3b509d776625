//! Every semantic check on the attribute, in one pass over [`Args`] and the [`Func`].

use syn::LitStr;

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

/// Which key a metric name is used with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum MetricKey {
    Counter,
    Histogram,
    InFlight,
}

impl MetricKey {
    pub(crate) fn key(self) -> &'static str {
        match self {
            MetricKey::Counter => "counter",
            MetricKey::Histogram => "histogram",
            MetricKey::InFlight => "in_flight",
        }
    }
}

/// Units that are not base units, and the base unit to use instead.
const NON_BASE_UNITS: &[(&str, &str)] = &[
    ("ms", "seconds"),
    ("msec", "seconds"),
    ("millis", "seconds"),
    ("milliseconds", "seconds"),
    ("us", "seconds"),
    ("usec", "seconds"),
    ("micros", "seconds"),
    ("microseconds", "seconds"),
    ("ns", "seconds"),
    ("nanos", "seconds"),
    ("nanoseconds", "seconds"),
    ("secs", "seconds"),
    ("sec", "seconds"),
    ("minute", "seconds"),
    ("minutes", "seconds"),
    ("mins", "seconds"),
    ("hour", "seconds"),
    ("hours", "seconds"),
    ("days", "seconds"),
    ("kb", "bytes"),
    ("kib", "bytes"),
    ("kilobytes", "bytes"),
    ("mb", "bytes"),
    ("mib", "bytes"),
    ("megabytes", "bytes"),
    ("gb", "bytes"),
    ("gib", "bytes"),
    ("gigabytes", "bytes"),
    ("percent", "ratio"),
];

/// Checks a metric name against the Prometheus naming rules; every problem is reported.
pub(crate) fn check_metric_name(key: MetricKey, lit: &LitStr, cx: &mut Ctxt) {
    for problem in metric_name_problems(key, &lit.value()) {
        cx.error(lit, problem);
    }
}

/// The problems of `name` used with `key`, each saying what would be right.
pub(crate) fn metric_name_problems(key: MetricKey, name: &str) -> Vec<String> {
    let k = key.key();
    let mut out = Vec::new();
    if name.is_empty() {
        out.push(format!("empty metric name for `{k}`"));
        return out;
    }
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid_chars {
        let fixed = snake(name);
        out.push(format!(
            "invalid metric name {name:?}: names match [a-zA-Z_:][a-zA-Z0-9_:]*; use {fixed:?}"
        ));
        return out;
    }
    if name.contains(':') {
        out.push(format!(
            "metric name {name:?} contains `:`, which is reserved for recording rules; use {:?}",
            name.replace(':', "_")
        ));
    }
    if name.starts_with("__") {
        out.push(format!(
            "metric name {name:?} starts with `__`, which is reserved for Prometheus' internal use; use {:?}",
            name.trim_start_matches('_')
        ));
    }
    // Later rules are judged on the name with earlier fixes applied, so their
    // suggestions agree with each other (`latencyMs` gets one coherent fix).
    let mut fixed = name.replace(':', "_").trim_start_matches('_').to_owned();
    if name.chars().any(|c| c.is_ascii_uppercase())
        || (name.contains("__") && !name.starts_with("__"))
        || name.ends_with('_')
    {
        fixed = snake(name);
        out.push(format!(
            "metric name {name:?} is not snake_case; use {fixed:?}"
        ));
    }
    let words: Vec<String> = fixed.split('_').map(str::to_owned).collect();
    for word in &words {
        if let Some((_, base)) = NON_BASE_UNITS.iter().find(|(u, _)| *u == word.as_str()) {
            fixed = fixed
                .split('_')
                .map(|w| if w == word { *base } else { w })
                .collect::<Vec<_>>()
                .join("_");
            out.push(format!(
                "metric name {name:?} uses the unit `{word}`; Prometheus metrics use base units: use {fixed:?} and record {base}"
            ));
        }
    }
    for suffix in ["_bucket", "_count", "_sum"] {
        if fixed.ends_with(suffix) {
            out.push(format!(
                "metric name {name:?} ends in `{suffix}`, a suffix Prometheus reserves for histogram and summary series; drop it"
            ));
        }
    }
    let total = fixed.ends_with("_total");
    match key {
        MetricKey::Counter if !total => out.push(format!(
            "counter {name:?} must end in `_total`; use {:?}",
            format!("{}_total", fixed.trim_end_matches('_'))
        )),
        MetricKey::InFlight if total => out.push(format!(
            "`{k}` metric {name:?} ends in `_total`, which marks a counter; use {:?}",
            fixed.trim_end_matches("_total")
        )),
        _ => {}
    }
    if key == MetricKey::Histogram && !fixed.ends_with("_seconds") {
        let stem = fixed.trim_end_matches("_total");
        let suggestion = if stem.ends_with("_duration") {
            format!("{stem}_seconds")
        } else {
            format!("{stem}_duration_seconds")
        };
        let counter_hint = if total {
            " (`_total` marks a counter)"
        } else {
            ""
        };
        out.push(format!(
            "`histogram` records the call's duration in seconds, so its name must end in `_seconds`{counter_hint}; use {suggestion:?}"
        ));
    }
    out
}

fn snake(name: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        } else {
            out.push('_');
            prev_lower = false;
        }
    }
    let parts: Vec<&str> = out.split('_').filter(|p| !p.is_empty()).collect();
    let joined = parts.join("_");
    if joined.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{joined}")
    } else {
        joined
    }
}

/// Why `name` is not a usable label name, if it is not.
pub(crate) fn label_name_problem(name: &str) -> Option<String> {
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Some(format!(
            "label names match [a-zA-Z_][a-zA-Z0-9_]*; use {:?}",
            snake(name)
        ));
    }
    if name.starts_with("__") {
        return Some(
            "label names starting with `__` are reserved for Prometheus' internal use".into(),
        );
    }
    if name == "le" || name == "quantile" {
        return Some(format!(
            "`{name}` is reserved: Prometheus uses it for histogram buckets and summary quantiles"
        ));
    }
    None
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

/// The candidate closest to `word` by edit distance, if it is close enough to be a likely typo.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.len() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (levenshtein(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(key: MetricKey, name: &str) -> Vec<String> {
        metric_name_problems(key, name)
    }

    #[test]
    fn good_names_pass() {
        assert!(problems(MetricKey::Counter, "zerostate_tasks_total").is_empty());
        assert!(problems(
            MetricKey::Histogram,
            "zerostate_wasm_execution_duration_seconds"
        )
        .is_empty());
        assert!(problems(MetricKey::InFlight, "zerostate_tasks_executing").is_empty());
        assert!(problems(MetricKey::InFlight, "zerostate_memory_bytes").is_empty());
    }

    #[test]
    fn seed_mistakes_are_caught_with_the_fix() {
        let p = problems(MetricKey::Counter, "zerostate_tasks");
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("\"zerostate_tasks_total\""), "{p:?}");
        let p = problems(MetricKey::InFlight, "zerostate_guild_total");
        assert!(p[0].contains("marks a counter"), "{p:?}");
        assert!(p[0].contains("\"zerostate_guild\""), "{p:?}");
    }

    #[test]
    fn units_case_suffixes_and_reserved() {
        let p = problems(MetricKey::Histogram, "latency_ms");
        assert!(p.iter().any(|m| m.contains("\"latency_seconds\"")), "{p:?}");
        assert!(problems(MetricKey::InFlight, "cache_size_mb")[0].contains("\"cache_size_bytes\""));
        assert_eq!(
            problems(MetricKey::Counter, "TasksTotal").len(),
            1,
            "one coherent fix"
        );
        assert!(problems(MetricKey::Counter, "TasksTotal")[0].contains("\"tasks_total\""));
        assert_eq!(
            problems(MetricKey::Histogram, "latency_ms").len(),
            1,
            "one coherent fix"
        );
        assert!(problems(MetricKey::Counter, "__tasks_total")[0].contains("reserved"));
        assert!(problems(MetricKey::InFlight, "queue_count")[0].contains("`_count`"));
        assert!(
            problems(MetricKey::Counter, "job:tasks:rate5m_total")[0].contains("recording rules")
        );
        assert!(problems(MetricKey::Counter, "1tasks_total")[0].contains("invalid metric name"));
        assert!(problems(MetricKey::Histogram, "task_duration")[0]
            .contains("\"task_duration_seconds\""));
        assert!(problems(MetricKey::Histogram, "task_time")[0]
            .contains("\"task_time_duration_seconds\""));
    }

    #[test]
    fn label_names() {
        assert_eq!(label_name_problem("peer_id"), None);
        assert!(label_name_problem("le").is_some());
        assert!(label_name_problem("quantile").is_some());
        assert!(label_name_problem("__name__").is_some());
        assert!(label_name_problem("peer-id")
            .unwrap()
            .contains("\"peer_id\""));
    }

    #[test]
    fn levenshtein_counts_edits() {
        assert_eq!(levenshtein("histogram", "histogram"), 0);
        assert_eq!(levenshtein("histgram", "histogram"), 1);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }

    #[test]
    fn closest_suggests_only_near_words() {
        let keys = ["histogram", "counter", "labels"];
        assert_eq!(closest("histgram", keys), Some("histogram"));
        assert_eq!(closest("countr", keys), Some("counter"));
        assert_eq!(closest("zzzzzzzz", keys), None);
    }
}
