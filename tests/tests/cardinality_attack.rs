//! Cardinality attack: one million distinct per-call label values, through the
//! runtime as installed (`Telemetry` with a catalog, its own recorder and
//! `/metrics` exposition), on each path the cardinality guard covers:
//!
//! - `#[instrumented(labels(peer = expr))]` on a label the catalog bounds
//!   (`peer = { cardinality = 500 }`), recorded on a counter and a histogram;
//! - the same on a label the catalog does not declare (the default bound, set with
//!   `with_default_label_bound`);
//! - a third-party `metrics::counter!` whose value goes through
//!   `zs_observe::bounded_label`, as docs/catalog.md prescribes for calls by hand;
//! - raw third-party `metrics::counter!` and `metrics::histogram!` calls that no
//!   guard sees, on metrics the catalog does not declare: the recorder's per-family
//!   series limit (`with_series_limit`) bounds them.
//!
//! Each keeps exactly its bound of series plus `_overflow`, counts every collapsed
//! value exactly, renders a small `/metrics`, and resident memory does not grow
//! with the attack. Its own test binary: it reads this process's resident memory.

use zs_observe::cardinality::OVERFLOW_VALUE;
use zs_observe::catalog::Catalog;
use zs_observe::{instrumented, Telemetry};

/// Distinct values per attack.
const VALUES: u64 = 1_000_000;
/// The catalog's bound on `peer` and `user`.
const BOUND: u64 = 500;
/// The bound of labels the catalog does not declare.
const DEFAULT_BOUND: u64 = 200;
/// The recorder's series limit of metrics the catalog does not declare.
const SERIES_LIMIT: u64 = 300;
/// Values each attack sends before memory is first measured: the label fills
/// up and the overflow series exist.
const WARM_UP: u64 = 20_000;

const CATALOG: &str = r#"
[catalog]
namespace = "attack"

[[metric]]
name = "attack_requests_total"
type = "counter"
help = "Requests by peer."
labels = { peer = { cardinality = 500 }, outcome = ["ok", "error", "panic", "cancelled"] }

[[metric]]
name = "attack_request_duration_seconds"
type = "histogram"
help = "Request duration by peer."
labels = { peer = { cardinality = 500 }, outcome = ["ok", "error", "panic", "cancelled"] }
buckets = [0.001, 0.01, 0.1, 1.0]

[[metric]]
name = "attack_sessions_total"
type = "counter"
help = "Sessions; the catalog does not bound `session`."
labels = { outcome = ["ok", "error", "panic", "cancelled"] }

[[metric]]
name = "attack_logins_total"
type = "counter"
help = "Logins by user, recorded by hand."
labels = { user = { cardinality = 500 } }
"#;

#[instrumented(
    counter = "attack_requests_total",
    histogram = "attack_request_duration_seconds",
    span = false,
    labels(peer = format!("12D3KooW{peer:016x}"))
)]
fn request(peer: u64) {}

#[instrumented(
    counter = "attack_sessions_total",
    span = false,
    labels(session = session.to_string())
)]
fn session(session: u64) {}

/// A third-party crate's calls that nobody made safe: only the recorder's series
/// limit stands between them and a million series each.
fn raw(peer: u64) {
    let value = format!("peer-{peer}");
    metrics::counter!("attack_raw_peers_total", "peer" => value.clone()).increment(1);
    metrics::histogram!("attack_raw_latency_seconds", "peer" => value).record(0.005);
}

/// A third-party crate's call, made safe by hand as docs/catalog.md says.
fn login(user: u64) {
    let user = zs_observe::bounded_label("attack_logins_total", "user", format!("user-{user}"));
    metrics::counter!("attack_logins_total", "user" => user).increment(1);
}

/// Sample lines of `family` (`name{` or `name ` prefixed).
fn samples<'a>(exposition: &'a str, family: &str) -> Vec<&'a str> {
    exposition
        .lines()
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect()
}

/// The value of the one sample of `family` whose line contains every `needle`.
fn value(exposition: &str, family: &str, needles: &[&str]) -> f64 {
    let lines: Vec<&str> = samples(exposition, family)
        .into_iter()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .collect();
    assert_eq!(lines.len(), 1, "{family} {needles:?}: {lines:#?}");
    lines[0]
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .expect("number")
}

fn overflows(exposition: &str, metric: &str, label: &str) -> f64 {
    value(
        exposition,
        "attack_cardinality_overflow_total",
        &[
            &format!("metric=\"{metric}\""),
            &format!("label=\"{label}\""),
        ],
    )
}

#[test]
fn a_million_distinct_label_values_keep_the_bound_count_the_overflow_and_the_memory() {
    let catalog = Catalog::parse(CATALOG, "attack.toml").expect("valid catalog");
    let telemetry = Telemetry::builder()
        .with_service_name("attack")
        .with_catalog(catalog)
        .with_default_label_bound(DEFAULT_BOUND as usize)
        .with_series_limit(SERIES_LIMIT as usize)
        .with_buckets("attack_raw_latency_seconds", &[0.001, 0.01, 0.1, 1.0])
        .with_log_sink(zs_observe::LogSink::from_fn(std::io::sink))
        .install()
        .expect("installs");

    // Each path in turn, timed.
    let attack = |range: std::ops::Range<u64>| -> [std::time::Duration; 4] {
        let timed = |f: &dyn Fn(u64)| {
            let started = std::time::Instant::now();
            for v in range.clone() {
                f(v);
            }
            started.elapsed()
        };
        [timed(&request), timed(&session), timed(&login), timed(&raw)]
    };
    attack(0..WARM_UP);
    let warm = telemetry.render();
    let before = zs_observe_tests::resident_bytes();
    let took = attack(WARM_UP..VALUES);
    let after = zs_observe_tests::resident_bytes();
    let growth = after.saturating_sub(before);
    let body = telemetry.render();
    let after_render = zs_observe_tests::resident_bytes();
    let series = telemetry.metrics_handle().series_count();
    eprintln!(
        "cardinality attack: {} distinct values on each path in {took:?} (request, session, \
         login, raw); RSS {} KiB -> {} KiB (+{} KiB), {} KiB after rendering; {} series; /metrics {} \
         bytes (after the warm-up: {} bytes)",
        VALUES - WARM_UP,
        before >> 10,
        after >> 10,
        growth >> 10,
        after_render >> 10,
        series.total(),
        body.len(),
        warm.len()
    );

    // Exactly the bound of series, plus `_overflow`.
    let overflow_peer = format!("peer=\"{OVERFLOW_VALUE}\"");
    assert_eq!(
        samples(&body, "attack_requests_total").len() as u64,
        BOUND + 1
    );
    assert_eq!(
        samples(&body, "attack_request_duration_seconds_count").len() as u64,
        BOUND + 1
    );
    assert_eq!(
        samples(&body, "attack_sessions_total").len() as u64,
        DEFAULT_BOUND + 1
    );
    assert_eq!(
        samples(&body, "attack_logins_total").len() as u64,
        BOUND + 1
    );
    // Every value past the bound was recorded, as `_overflow`.
    assert_eq!(
        value(&body, "attack_requests_total", &[&overflow_peer]),
        (VALUES - BOUND) as f64
    );
    assert_eq!(
        value(
            &body,
            "attack_request_duration_seconds_count",
            &[&overflow_peer]
        ),
        (VALUES - BOUND) as f64
    );
    assert_eq!(
        value(
            &body,
            "attack_sessions_total",
            &[&format!("session=\"{OVERFLOW_VALUE}\"")]
        ),
        (VALUES - DEFAULT_BOUND) as f64
    );
    assert_eq!(
        value(
            &body,
            "attack_logins_total",
            &[&format!("user=\"{OVERFLOW_VALUE}\"")]
        ),
        (VALUES - BOUND) as f64
    );
    // Raw third-party calls: the series limit, plus the overflow series, which
    // took every later value.
    assert_eq!(
        samples(&body, "attack_raw_peers_total").len() as u64,
        SERIES_LIMIT + 1
    );
    assert_eq!(
        samples(&body, "attack_raw_latency_seconds_count").len() as u64,
        SERIES_LIMIT + 1
    );
    let overflow_raw = format!("peer=\"{OVERFLOW_VALUE}\"");
    assert_eq!(
        value(&body, "attack_raw_peers_total", &[&overflow_raw]),
        (VALUES - SERIES_LIMIT) as f64
    );
    assert_eq!(
        value(&body, "attack_raw_latency_seconds_count", &[&overflow_raw]),
        (VALUES - SERIES_LIMIT) as f64
    );
    assert_eq!(
        value(
            &body,
            "attack_raw_latency_seconds_bucket",
            &[&overflow_raw, "le=\"0.01\""]
        ),
        (VALUES - SERIES_LIMIT) as f64
    );
    // The series kept before the limit keep their own counts.
    for kept in [0, SERIES_LIMIT - 1] {
        let peer = format!("peer=\"peer-{kept}\"");
        assert_eq!(value(&body, "attack_raw_peers_total", &[&peer]), 1.0);
        assert_eq!(
            value(&body, "attack_raw_latency_seconds_count", &[&peer]),
            1.0
        );
    }
    assert!(!body.contains(&format!("peer=\"peer-{SERIES_LIMIT}\"")));
    // An admitted value kept its own series.
    assert_eq!(
        value(
            &body,
            "attack_requests_total",
            &[&format!("peer=\"12D3KooW{:016x}\"", BOUND - 1)]
        ),
        1.0
    );
    // The overflow is counted exactly, once per metric the value was recorded on.
    assert_eq!(
        overflows(&body, "attack_requests_total", "peer"),
        (VALUES - BOUND) as f64
    );
    assert_eq!(
        overflows(&body, "attack_request_duration_seconds", "peer"),
        (VALUES - BOUND) as f64
    );
    assert_eq!(
        overflows(&body, "attack_sessions_total", "session"),
        (VALUES - DEFAULT_BOUND) as f64
    );
    assert_eq!(
        overflows(&body, "attack_logins_total", "user"),
        (VALUES - BOUND) as f64
    );
    assert_eq!(
        overflows(&body, "attack_raw_peers_total", "peer"),
        (VALUES - SERIES_LIMIT) as f64
    );
    assert_eq!(
        overflows(&body, "attack_raw_latency_seconds", "peer"),
        (VALUES - SERIES_LIMIT) as f64
    );
    // The whole exposition stays small: the attack added no series after the
    // warm-up (the counts grew, not the lines), and a scrape is under 2 MiB
    // (about 950 KB: 2,300 series, 1,100 of them histograms), where five million
    // series would be hundreds of MiB.
    assert_eq!(body.lines().count(), warm.lines().count());
    assert!(series.total() < 5_000, "{series:?}");
    assert!(body.len() < 2 << 20, "{} bytes", body.len());
    // Four million values went by (five million label sets: the raw path records
    // each on a counter and a histogram); kept, each would cost at least its label
    // text and a series (far over 100 MiB). The guard and the series limit hold at
    // most 1,800 of them.
    assert!(
        growth < 4 << 20,
        "resident memory grew by {} KiB over 4 x {} distinct label values",
        growth >> 10,
        VALUES - WARM_UP
    );
}
