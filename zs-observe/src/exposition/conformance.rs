//! The exposition against `metrics-exporter-prometheus` (what the runtime used
//! before): the same operations on both recorders give the same samples.

use std::collections::BTreeMap;

use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::PrometheusBuilder;
use proptest::prelude::*;

use super::{BucketConfig, Registry, ZsRecorder};

const BUCKETS: &[f64] = &[0.01, 0.1, 1.0, 10.0];

#[derive(Debug, Clone)]
enum Op {
    Counter(usize, Vec<(usize, String)>, u64),
    Gauge(usize, Vec<(usize, String)>, f64),
    Histogram(usize, Vec<(usize, String)>, f64),
}

const NAMES: [&str; 3] = [
    "app_jobs_total",
    "app_queue_depth",
    "app_job_duration_seconds",
];
const LABELS: [&str; 3] = ["kind", "region", "service"];

fn labels() -> impl Strategy<Value = Vec<(usize, String)>> {
    // Distinct label names; values with quotes, newlines and multi-byte UTF-8 (no
    // backslashes: the exporter folds `\\` pairs, which is one of the reasons to
    // replace it; `render::tests` covers them).
    proptest::collection::btree_map(0..LABELS.len(), "[a-z\"\\n é✓]{0,6}", 0..3)
        .prop_map(|m| m.into_iter().collect())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, labels(), 0..1000u64).prop_map(|(n, l, v)| Op::Counter(n, l, v)),
        (0..3usize, labels(), -1e6..1e6f64).prop_map(|(n, l, v)| Op::Gauge(n, l, v)),
        (0..3usize, labels(), 0.0..20.0f64).prop_map(|(n, l, v)| Op::Histogram(n, l, v)),
    ]
}

fn key(name: usize, labels: &[(usize, String)], suffix: &str) -> Key {
    Key::from_parts(
        format!("{}{suffix}", NAMES[name]),
        labels
            .iter()
            .map(|(k, v)| Label::new(LABELS[*k], v.clone()))
            .collect::<Vec<_>>(),
    )
}

fn apply(recorder: &dyn Recorder, ops: &[Op]) {
    let meta = Metadata::new("t", Level::INFO, None);
    // One kind per name (suffixes keep the kinds apart), as a valid exposition needs.
    for op in ops {
        match op {
            Op::Counter(n, l, v) => recorder
                .register_counter(&key(*n, l, "_c"), &meta)
                .increment(*v),
            Op::Gauge(n, l, v) => recorder
                .register_gauge(&key(*n, l, "_g"), &meta)
                .increment(*v),
            Op::Histogram(n, l, v) => recorder
                .register_histogram(&key(*n, l, "_h"), &meta)
                .record(*v),
        }
    }
}

/// `name{labels}` (labels sorted, values unescaped) → value, for every sample line.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').expect("value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').expect("}"))),
            None => (series, Vec::new()),
        };
        let mut labels = labels;
        labels.sort();
        let value: f64 = match value {
            "+Inf" | "inf" => f64::INFINITY,
            v => v.parse().expect("number"),
        };
        let previous = out.insert(format!("{name}{labels:?}"), value);
        assert!(previous.is_none(), "duplicate series {line}");
    }
    out
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'));
        let mut value = String::new();
        loop {
            match chars.next().expect("closing quote") {
                '"' => break,
                '\\' => match chars.next().expect("escape") {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        }
        labels.push((name, value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn same_samples_as_metrics_exporter_prometheus(ops in proptest::collection::vec(op(), 1..60)) {
        let constant = vec![("service".to_owned(), "svc".to_owned()), ("environment".to_owned(), "test".to_owned())];
        let ours = ZsRecorder {
            registry: std::sync::Arc::new(Registry::new(constant.clone(), BucketConfig::new(BUCKETS))),
        };
        let mut builder = PrometheusBuilder::new().set_buckets(BUCKETS).unwrap();
        for (k, v) in &constant {
            builder = builder.add_global_label(k, v);
        }
        let theirs = builder.build_recorder();
        let handle = theirs.handle();
        apply(&ours, &ops);
        apply(&theirs, &ops);
        let text = ours.registry.render();
        // The buffer reserved up front holds the whole exposition (never regrown).
        prop_assert!(text.len() <= 1024 + ours.registry.text_bytes(), "{} > {}", text.len(), ours.registry.text_bytes());
        let (a, b) = (samples(&text), samples(&handle.render()));
        prop_assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (series, value) in &a {
            prop_assert!(close(*value, b[series]), "{}: ours {} theirs {}", series, value, b[series]);
        }
    }
}
