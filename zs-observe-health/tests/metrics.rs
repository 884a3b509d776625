//! The status gauge and duration histogram, read from a `DebuggingRecorder` installed as this
//! test binary's global recorder (the runs happen in Tokio tasks on other threads).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::hanging;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use zs_observe_health::{check_fn, CheckResult, CheckSpec, HealthRegistry};

type Key = (String, Vec<(String, String)>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_gauge_and_duration_histogram() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let registry = HealthRegistry::builder()
        .with_namespace("ains")
        .with_liveness_check("runtime", check_fn(|| async { CheckResult::pass() }))
        .with_readiness_check("db", check_fn(|| async { CheckResult::pass() }))
        .with_check(
            CheckSpec::readiness(
                "cache:hits",
                check_fn(|| async { CheckResult::warn("cold cache") }),
            )
            .with_critical(false),
        )
        .with_readiness_check("peer", check_fn(|| async { CheckResult::fail("down") }))
        .with_check(
            CheckSpec::readiness("slow", hanging()).with_timeout(Duration::from_millis(100)),
        )
        .build()
        .unwrap();
    registry.refresh().await;
    registry.refresh().await;

    let mut gauges: HashMap<Key, f64> = HashMap::new();
    let mut histograms: HashMap<Key, Vec<f64>> = HashMap::new();
    let mut descriptions = HashMap::new();
    for (key, unit, description, value) in snapshotter.snapshot().into_vec() {
        let name = key.key().name().to_owned();
        let mut labels: Vec<(String, String)> = key
            .key()
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        labels.sort();
        descriptions.insert((key.kind(), name.clone()), (unit, description));
        match value {
            DebugValue::Gauge(v) => {
                gauges.insert((name, labels), v.into_inner());
            }
            DebugValue::Histogram(values) => {
                histograms.insert(
                    (name, labels),
                    values.iter().map(|v| v.into_inner()).collect(),
                );
            }
            DebugValue::Counter(_) => panic!("no counters expected: {name}"),
        }
    }

    let status = |check: &str, kind: &str| {
        let key = (
            "ains_health_check_status".to_owned(),
            vec![
                ("check".to_owned(), check.to_owned()),
                ("kind".to_owned(), kind.to_owned()),
            ],
        );
        gauges.get(&key).copied()
    };
    assert_eq!(status("runtime", "liveness"), Some(1.0));
    assert_eq!(status("db", "readiness"), Some(1.0));
    assert_eq!(status("cache:hits", "readiness"), Some(0.5));
    assert_eq!(status("peer", "readiness"), Some(0.0));
    assert_eq!(status("slow", "readiness"), Some(0.0));
    assert_eq!(gauges.len(), 5, "{gauges:?}");

    let durations = |check: &str| {
        let key = (
            "ains_health_check_duration_seconds".to_owned(),
            vec![("check".to_owned(), check.to_owned())],
        );
        histograms.get(&key).cloned().unwrap_or_default()
    };
    let slow = durations("slow");
    assert_eq!(slow.len(), 2, "one sample per run: {slow:?}");
    assert!(slow.iter().all(|s| (0.1..0.5).contains(s)), "{slow:?}");
    let db = durations("db");
    assert_eq!(db.len(), 2);
    assert!(db.iter().all(|s| (0.0..0.1).contains(s)), "{db:?}");
    assert_eq!(histograms.len(), 5, "{histograms:?}");

    let (unit, help) = &descriptions[&(MetricKind::Gauge, "ains_health_check_status".to_owned())];
    assert_eq!(*unit, None);
    assert!(help.as_ref().unwrap().contains("1 pass, 0.5 warn, 0 fail"));
    let (unit, help) = &descriptions[&(
        MetricKind::Histogram,
        "ains_health_check_duration_seconds".to_owned(),
    )];
    assert_eq!(*unit, Some(metrics::Unit::Seconds));
    assert!(help.is_some());
}
