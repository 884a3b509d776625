//! The node under its workload, as its users see it: every metric of its catalog moves
//! (nothing in the catalog without a series, no series outside the catalog), and with
//! an OTLP endpoint set, a real OTLP receiver gets the spans named in seed 000 task 9.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{get, start, start_with_env};
use zs_observe_catalog::Catalog;
use zs_observe_tests::otlp::Receiver;

const CATALOG: &str = include_str!("../../../monitoring/catalog/zerostate.toml");

/// Families of an exposition (`_bucket`/`_sum`/`_count` folded into their histogram).
fn families(body: &str, catalog: &Catalog) -> BTreeSet<String> {
    zs_observe_tests::parse_exposition(body)
        .into_iter()
        .map(|s| {
            for suffix in ["_bucket", "_sum", "_count"] {
                if let Some(base) = s.name.strip_suffix(suffix) {
                    if catalog.get(base).is_some() {
                        return base.to_owned();
                    }
                }
            }
            s.name
        })
        .collect()
}

#[test]
fn every_catalog_metric_has_a_series_under_the_workload() {
    let catalog = Catalog::parse(CATALOG, "zerostate.toml").expect("catalog parses");
    let declared: BTreeSet<String> = catalog.metrics.iter().map(|m| m.name.clone()).collect();
    // The cardinality guard's counter has a series only once some label overflowed its
    // bound, and the node's only open label (`peer_id`, bound 64) cannot: `--peers` is at
    // most 64. (ains-api's test drives it past its bound; `tests/tests/cardinality.rs`
    // proves the guard.)
    let overflow = "zerostate_cardinality_overflow_total";
    let declared: BTreeSet<String> = declared.into_iter().filter(|m| m != overflow).collect();
    // Faults on at moderate rates, so that failures, refunds, disputes and peer churn
    // happen within seconds.
    let (_node, addr) = start(&[
        "--task-failure-rate",
        "0.1",
        "--payment-failure-rate",
        "0.05",
        "--peer-loss-rate",
        "0.01",
    ]);
    // Health endpoints and the index: the HTTP and health families.
    for path in [
        "/",
        "/health/ready",
        "/health/startup",
        "/health/live",
        "/health/detail",
    ] {
        let (status, body) = get(&addr, path);
        assert!(status.contains("200"), "{path}: {status} {body}");
    }
    let deadline = Instant::now() + Duration::from_secs(40);
    let (missing, body) = loop {
        let (status, body) = get(&addr, "/metrics");
        assert!(status.contains("200"), "{status}");
        let seen = families(&body, &catalog);
        let missing: Vec<String> = declared.difference(&seen).cloned().collect();
        if missing.is_empty() || Instant::now() >= deadline {
            break (missing, body);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        missing.is_empty(),
        "catalog metrics without a series: {missing:?}"
    );
    let mut seen = families(&body, &catalog);
    seen.remove(overflow);
    let undeclared: Vec<&String> = seen.difference(&declared).collect();
    assert!(
        undeclared.is_empty(),
        "series outside the catalog: {undeclared:?}"
    );
    let complaints = zs_observe_tests::promtool_check_metrics(&body);
    assert!(complaints.trim().is_empty(), "promtool:\n{complaints}");
}

/// The span names of seed 000 task 9.
const SEED_SPANS: [&str; 12] = [
    "guild.create",
    "guild.join",
    "guild.dissolve",
    "wasm.execute",
    "wasm.validate",
    "wasm.meter",
    "payment.channel.open",
    "payment.send",
    "payment.settle",
    "reputation.record",
    "reputation.calculate",
    "reputation.blacklist",
];

#[test]
fn the_seed_spans_reach_an_otlp_receiver() {
    let receiver = Receiver::grpc();
    let endpoint = receiver.endpoint();
    let (node, _addr) = start_with_env(
        &[
            "--task-failure-rate",
            "0.2",
            "--payment-failure-rate",
            "0.05",
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_TRACES_SAMPLER", "always_on"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("ZS_LOG_FORMAT", "json"),
        ],
    );
    let spans = receiver
        .collected
        .wait_for(Duration::from_secs(40), |spans| {
            let names: BTreeSet<&str> = spans.iter().map(|s| s.name.as_str()).collect();
            SEED_SPANS.iter().all(|n| names.contains(n))
        });
    let names: BTreeSet<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let missing: Vec<&&str> = SEED_SPANS.iter().filter(|n| !names.contains(**n)).collect();
    assert!(
        missing.is_empty(),
        "spans not received: {missing:?}; got {names:?}"
    );

    // The resource names the service, and the meter span is a child of its execution.
    let execute = spans
        .iter()
        .find(|s| s.name == "wasm.execute")
        .expect("execute");
    assert_eq!(
        execute.resource.get("service.name").map(String::as_str),
        Some("zerostate-node")
    );
    let meter = spans
        .iter()
        .find(|s| s.name == "wasm.meter" && s.trace_id == execute.trace_id)
        .or_else(|| spans.iter().find(|s| s.name == "wasm.meter"))
        .expect("meter");
    let parent = spans
        .iter()
        .find(|s| s.span_id == meter.parent_span_id)
        .expect("the meter span's parent was exported");
    assert_eq!(parent.name, "wasm.execute");
    // Failed tasks are error spans.
    assert!(
        spans
            .iter()
            .any(|s| s.name == "wasm.execute" && s.status_code == 2),
        "no wasm.execute span with an error status"
    );

    // Logs: JSON lines on stdout; the warning a failed execution logs inside its span
    // carries that span's trace and span ids, which the receiver got.
    let deadline = Instant::now() + Duration::from_secs(20);
    let linked = loop {
        let spans = receiver.collected.spans();
        let linked = node.stdout_lines().into_iter().find_map(|line| {
            let log: serde_json::Value = serde_json::from_str(&line).ok()?;
            let span = spans.iter().find(|s| {
                s.name == "wasm.execute"
                    && log["trace_id"] == s.trace_id.as_str()
                    && log["span_id"] == s.span_id.as_str()
            })?;
            Some((log, span.clone()))
        });
        if linked.is_some() || Instant::now() >= deadline {
            break linked;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (log, span) = linked.expect("a log line carrying an exported wasm.execute span's ids");
    assert_eq!(log["service"], "zerostate-node", "{log}");
    assert_eq!(log["level"], "warn", "{log}");
    assert_eq!(span.status_code, 2, "{span:?}");
    let lines = node.stdout_lines();
    let malformed: Vec<&String> = lines
        .iter()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
        .collect();
    assert!(
        malformed.is_empty(),
        "stdout lines that are not JSON: {malformed:?}"
    );
}
