//! Prometheus naming rules, shared by the macro's checks and the catalog's validation.
//! Each problem says what is wrong and what would be right.

/// How a metric name is used, which decides the suffix rules it must follow.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MetricKey {
    /// `counter = "..."`, or a catalog counter: must end in `_total`.
    Counter,
    /// `histogram = "..."`: a call duration, must end in `_seconds`.
    Histogram,
    /// `in_flight = "..."`: a gauge.
    InFlight,
    /// A catalog gauge.
    Gauge,
    /// A catalog histogram, of any base unit.
    AnyHistogram,
}

impl MetricKey {
    /// The word used in messages.
    pub fn key(self) -> &'static str {
        match self {
            MetricKey::Counter => "counter",
            MetricKey::Histogram | MetricKey::AnyHistogram => "histogram",
            MetricKey::InFlight => "in_flight",
            MetricKey::Gauge => "gauge",
        }
    }
}

/// Units that are not base units, and the base unit to use instead.
pub const NON_BASE_UNITS: &[(&str, &str)] = &[
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

/// The problems of `name` used with `key`, each saying what would be right.
pub fn metric_name_problems(key: MetricKey, name: &str) -> Vec<String> {
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
        MetricKey::InFlight | MetricKey::Gauge | MetricKey::AnyHistogram if total => {
            out.push(format!(
                "`{k}` metric {name:?} ends in `_total`, which marks a counter; use {:?}",
                fixed.trim_end_matches("_total")
            ))
        }
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

/// `name` in snake_case: `zerostateTasks` → `zerostate_tasks`, `peer-id` → `peer_id`.
pub fn snake(name: &str) -> String {
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
pub fn label_name_problem(name: &str) -> Option<String> {
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

/// The candidate closest to `word` by edit distance, if it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.len() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (levenshtein(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The edit distance between two strings (insertions, deletions, substitutions).
pub fn levenshtein(a: &str, b: &str) -> usize {
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

/// Why histogram bucket bounds are unusable, if they are.
pub fn bucket_problem(buckets: &[f64]) -> Option<&'static str> {
    if buckets.is_empty() {
        Some("empty buckets: a histogram without buckets renders as a summary and breaks histogram_quantile")
    } else if buckets.iter().any(|b| !b.is_finite()) {
        Some("bucket bounds must be finite (`+Inf` is added automatically)")
    } else if buckets.windows(2).any(|w| w[0] >= w[1]) {
        Some("bucket bounds must be strictly increasing")
    } else {
        None
    }
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
        assert!(problems(MetricKey::AnyHistogram, "zerostate_wasm_memory_bytes").is_empty());
        assert!(problems(MetricKey::Gauge, "zerostate_channel_balance_units").is_empty());
    }

    #[test]
    fn seed_mistakes_are_caught_with_the_fix() {
        let p = problems(MetricKey::Counter, "zerostate_tasks");
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("\"zerostate_tasks_total\""), "{p:?}");
        let p = problems(MetricKey::Gauge, "zerostate_guild_total");
        assert!(p[0].contains("marks a counter"), "{p:?}");
        assert!(p[0].contains("\"zerostate_guild\""), "{p:?}");
    }

    #[test]
    fn units_case_suffixes_and_reserved() {
        let p = problems(MetricKey::Histogram, "latency_ms");
        assert_eq!(p.len(), 1, "one coherent fix: {p:?}");
        assert!(p[0].contains("\"latency_seconds\""), "{p:?}");
        assert!(problems(MetricKey::InFlight, "cache_size_mb")[0].contains("\"cache_size_bytes\""));
        assert_eq!(
            problems(MetricKey::Counter, "TasksTotal").len(),
            1,
            "one coherent fix"
        );
        assert!(problems(MetricKey::Counter, "TasksTotal")[0].contains("\"tasks_total\""));
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
}
