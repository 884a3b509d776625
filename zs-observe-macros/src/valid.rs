//! Every semantic check on the attribute, in one pass over [`Args`] and the [`Func`].

use crate::ast::Func;
use crate::attr::{Args, Ctxt, LabelValue};

/// Runs all checks, recording each problem in `cx`.
pub(crate) fn check(args: &Args, func: &Func, cx: &mut Ctxt) {
    check_skips(args, func, cx);
    check_labels(args, cx);
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
