//! The cardinality guard against the capturing recorder: per-call label values of
//! `#[instrumented]` and of `bounded_label` stay within their bound, the rest
//! collapse into `_overflow` and are counted, exactly, also under concurrency.

use std::sync::OnceLock;

use zs_observe::cardinality::OVERFLOW_VALUE;
use zs_observe::catalog::Catalog;
use zs_observe::instrumented;
use zs_observe_tests::{counter, gauge, histogram, series_of};

const OUTCOMES: &str = r#"outcome = ["ok", "error", "panic", "cancelled"]"#;

/// Bound of `peer` on the fetch metrics.
const N: usize = 10;
/// Bound of labels the catalog doesn't declare.
const DEFAULT_BOUND: usize = 20;
/// Bound of `worker` on the concurrent metric.
const WORKERS: usize = 16;

fn setup() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let src = format!(
            r#"
[catalog]
namespace = "cardtest"
default_buckets = [0.1, 1.0]

[[metric]]
name = "cardtest_fetch_total"
type = "counter"
help = "Fetches by peer."
labels = {{ peer = {{ cardinality = {N} }}, {OUTCOMES} }}

[[metric]]
name = "cardtest_fetch_duration_seconds"
type = "histogram"
help = "Fetch duration by peer."
labels = {{ peer = {{ cardinality = {N} }}, {OUTCOMES} }}

[[metric]]
name = "cardtest_fetch_active"
type = "gauge"
help = "Fetches running, by peer."
labels = {{ peer = {{ cardinality = {N} }} }}

[[metric]]
name = "cardtest_jobs_total"
type = "counter"
help = "Jobs by kind."
labels = {{ kind = ["build", "test"], {OUTCOMES} }}

[[metric]]
name = "cardtest_work_total"
type = "counter"
help = "Work by worker."
labels = {{ worker = {{ cardinality = {WORKERS} }}, {OUTCOMES} }}
"#
        );
        let catalog = Catalog::parse(&src, "cardtest.toml").expect("valid catalog");
        zs_observe_tests::install_recorder();
        zs_observe::cardinality::configure("cardtest", Some(&catalog), DEFAULT_BOUND);
    });
}

fn overflows(metric: &str, label: &str) -> u64 {
    counter(
        "cardtest_cardinality_overflow_total",
        &[("metric", metric), ("label", label)],
    )
}

#[instrumented(
    counter = "cardtest_fetch_total",
    histogram = "cardtest_fetch_duration_seconds",
    in_flight = "cardtest_fetch_active",
    labels(peer = peer.to_string())
)]
fn fetch(peer: usize) {}

#[instrumented(counter = "cardtest_jobs_total", labels(kind = kind))]
fn job(kind: &'static str) {}

#[instrumented(counter = "cardtest_work_total", labels(worker = format!("w{worker}")))]
fn work(worker: usize) {}

#[test]
fn open_label_keeps_n_values_and_collapses_the_rest() {
    setup();
    for peer in 0..10 * N {
        fetch(peer);
    }
    let series = series_of("cardtest_fetch_total");
    assert_eq!(series.len(), N + 1, "N peers and the overflow: {series:#?}");
    for peer in 0..N {
        let p = peer.to_string();
        assert_eq!(
            counter("cardtest_fetch_total", &[("peer", &p), ("outcome", "ok")]),
            1,
            "peer {p}"
        );
    }
    let overflow = [("peer", OVERFLOW_VALUE), ("outcome", "ok")];
    assert_eq!(counter("cardtest_fetch_total", &overflow) as usize, 9 * N);
    assert_eq!(
        histogram("cardtest_fetch_duration_seconds", &overflow).len(),
        9 * N
    );
    assert_eq!(
        series_of("cardtest_fetch_duration_seconds").len(),
        N + 1,
        "{:#?}",
        series_of("cardtest_fetch_duration_seconds")
    );
    // Every collapsed value is counted once per metric it was recorded on.
    for metric in [
        "cardtest_fetch_total",
        "cardtest_fetch_duration_seconds",
        "cardtest_fetch_active",
    ] {
        assert_eq!(overflows(metric, "peer") as usize, 9 * N, "{metric}");
    }
    // The in-flight gauges, the overflow one included, are back at zero.
    assert_eq!(series_of("cardtest_fetch_active").len(), N + 1);
    assert_eq!(
        gauge("cardtest_fetch_active", &[("peer", OVERFLOW_VALUE)]),
        Some(0.0)
    );
    assert_eq!(gauge("cardtest_fetch_active", &[("peer", "3")]), Some(0.0));

    // Known values keep their own series once the label is full; new ones don't.
    fetch(3);
    fetch(10 * N + 1);
    assert_eq!(
        counter("cardtest_fetch_total", &[("peer", "3"), ("outcome", "ok")]),
        2
    );
    assert_eq!(
        counter("cardtest_fetch_total", &overflow) as usize,
        9 * N + 1
    );
    assert_eq!(
        overflows("cardtest_fetch_total", "peer") as usize,
        9 * N + 1
    );
    assert_eq!(series_of("cardtest_fetch_total").len(), N + 1);
}

#[test]
fn closed_label_values_outside_the_catalog_collapse() {
    setup();
    for kind in ["build", "test", "deploy", "build", "", "Test"] {
        job(kind);
    }
    let kind = |k| counter("cardtest_jobs_total", &[("kind", k), ("outcome", "ok")]);
    assert_eq!(kind("build"), 2);
    assert_eq!(kind("test"), 1);
    assert_eq!(kind(OVERFLOW_VALUE), 3, "deploy, the empty string and Test");
    assert_eq!(kind("deploy"), 0);
    assert_eq!(series_of("cardtest_jobs_total").len(), 3);
    assert_eq!(overflows("cardtest_jobs_total", "kind"), 3);
}

#[test]
fn bounded_label_by_hand_uses_the_default_bound() {
    setup();
    for user in 0..5 * DEFAULT_BOUND {
        let value = zs_observe::bounded_label("cardtest_logins_total", "user", format!("u{user}"));
        metrics::counter!("cardtest_logins_total", "user" => value).increment(1);
    }
    let series = series_of("cardtest_logins_total");
    assert_eq!(series.len(), DEFAULT_BOUND + 1, "{series:#?}");
    assert_eq!(counter("cardtest_logins_total", &[("user", "u0")]), 1);
    assert_eq!(
        counter("cardtest_logins_total", &[("user", OVERFLOW_VALUE)]) as usize,
        4 * DEFAULT_BOUND
    );
    assert_eq!(
        overflows("cardtest_logins_total", "user") as usize,
        4 * DEFAULT_BOUND
    );
    // A known value keeps its series.
    assert_eq!(
        &*zs_observe::bounded_label("cardtest_logins_total", "user", "u7"),
        "u7"
    );
    assert_eq!(
        &*zs_observe::bounded_label("cardtest_logins_total", "user", "new"),
        OVERFLOW_VALUE
    );
}

#[test]
fn concurrent_calls_keep_the_bound_and_exact_counts() {
    setup();
    const THREADS: usize = 4;
    const PER_THREAD: usize = 40; // 160 distinct workers for a bound of 16
    const ROUNDS: u64 = 3;
    for _ in 0..ROUNDS {
        std::thread::scope(|s| {
            for t in 0..THREADS {
                s.spawn(move || {
                    for i in 0..PER_THREAD {
                        work(t * PER_THREAD + i);
                    }
                });
            }
        });
    }
    let series = series_of("cardtest_work_total");
    assert_eq!(series.len(), WORKERS + 1, "{series:#?}");
    let total = (THREADS * PER_THREAD) as u64;
    let overflowed = counter(
        "cardtest_work_total",
        &[("worker", OVERFLOW_VALUE), ("outcome", "ok")],
    );
    // Whichever 16 workers won the race, each has all of its calls, every round.
    let admitted: Vec<u64> = series
        .iter()
        .filter(|s| !s.contains(OVERFLOW_VALUE))
        .map(|s| match zs_observe_tests::snapshot().get(s) {
            Some(zs_observe_tests::Value::Counter(v)) => *v,
            other => panic!("{s}: {other:?}"),
        })
        .collect();
    assert_eq!(admitted, vec![ROUNDS; WORKERS]);
    assert_eq!(overflowed, ROUNDS * (total - WORKERS as u64));
    assert_eq!(overflows("cardtest_work_total", "worker"), overflowed);
}
