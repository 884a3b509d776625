//! Hostile input (issue 9, item 7), end to end:
//!
//! - label values with quotes, backslashes, newlines, control characters and
//!   multi-byte UTF-8 (a fixed list plus arbitrary unicode from proptest) render to
//!   an exposition `promtool check metrics` accepts, and a real Prometheus scraping
//!   it stores every value byte for byte (read back through its HTTP API);
//! - log injection: newlines, quotes, control characters and JSON-looking text in
//!   span fields, event fields and messages stay inside one JSON line each, with the
//!   exact original value;
//! - arbitrary `traceparent` / `tracestate` header bytes through a real server never
//!   break a request.
//!
//! The parsers themselves have property tests next to them: `traceparent` in
//! `zs-observe/src/propagation.rs`, the catalog in `zs-observe-catalog/src/lib.rs`,
//! the console log format in `zs-observe/src/logging.rs`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use zs_observe::propagation::RequestTraceLayer;
use zs_observe::Telemetry;
use zs_observe_tests::logs::CapturedLogs;
use zs_observe_tests::stack::Prometheus;

const METRIC: &str = "hostile_label_values_total";

fn setup() -> &'static (Telemetry, CapturedLogs) {
    static SETUP: OnceLock<(Telemetry, CapturedLogs)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let logs = CapturedLogs::default();
        let telemetry = Telemetry::builder()
            .with_service_name("hostile")
            .with_log_sink(logs.sink())
            .with_log_format(zs_observe::LogFormat::Json)
            .with_log_level("info")
            .install()
            .expect("install");
        (telemetry, logs)
    })
}

/// Hand-picked hostile values: every escape of the text format, things that look
/// like exposition syntax, and multi-byte UTF-8.
fn fixed_values() -> Vec<String> {
    [
        "a\"b",
        "back\\slash",
        "line1\nline2",
        "\\n (a backslash and an n, not a newline)",
        "\"",
        "\\",
        "\\\\",
        "\\\"",
        "ends with a backslash\\",
        "carriage\r\nreturn",
        "tab\there",
        "bell\u{7}escape\u{1b}[31mred",
        "nul\u{0}byte",
        "del\u{7f}",
        "ünïcödé",
        "日本語のラベル",
        "emoji 🎉🦀 and a ZWJ family 👨‍👩‍👧",
        "zero\u{200b}width and rtl \u{202e}override",
        "{}=,",
        "value=\"x\",other=\"y\"",
        "} 1\nforged_metric{a=\"b\"} 1",
        "# HELP hostile_label_values_total forged",
        " leading and trailing spaces ",
        "\u{feff}bom",
        "\u{fffd}replacement",
        "nonchar\u{ffff}\u{10ffff}",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(std::iter::once("long ".repeat(400)))
    .collect()
}

/// The fixed values plus arbitrary unicode strings from proptest (deterministic
/// seed), 50 distinct non-empty values in all (Prometheus drops empty labels).
fn hostile_values() -> Vec<String> {
    let mut values = fixed_values();
    let mut runner = TestRunner::deterministic();
    let strategy = "\\PC{1,40}|.{1,40}|[\\x00-\\x7f]{1,40}";
    let mut seen: BTreeSet<String> = values.iter().cloned().collect();
    for _ in 0..10_000 {
        if values.len() >= 50 {
            break;
        }
        let value = strategy.new_tree(&mut runner).expect("generate").current();
        if seen.insert(value.clone()) {
            values.push(value);
        }
    }
    assert_eq!(values.len(), 50, "generated {} values", values.len());
    values
}

async fn serve(router: axum::Router) -> SocketAddr {
    zs_observe_tests::serve(router).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_label_values_survive_promtool_and_a_real_prometheus_scrape() {
    let started = Instant::now();
    let (telemetry, _) = setup();
    let values = hostile_values();
    metrics::describe_counter!(METRIC, "Series whose label values are hostile.");
    for (i, value) in values.iter().enumerate() {
        metrics::counter!(METRIC, "value" => value.clone()).increment(i as u64 + 1);
    }

    // The exposition is valid for the real promtool.
    let body = telemetry.render();
    let series = body.lines().filter(|l| l.starts_with(METRIC)).count();
    assert_eq!(series, values.len(), "one line per value:\n{body}");
    let complaints = zs_observe_tests::promtool_check_metrics(&body);
    assert!(
        complaints.trim().is_empty(),
        "promtool check metrics:\n{complaints}\n---\n{body}"
    );

    // A real Prometheus scrapes it and stores every value byte for byte.
    let addr = serve(telemetry.metrics_router()).await;
    let prom = Prometheus::builder()
        .interval(Duration::from_millis(500))
        .scrape("hostile", addr)
        .start()
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let samples = loop {
        let samples = prom.query(METRIC).await.unwrap_or_default();
        if samples.len() >= values.len() {
            break samples;
        }
        if Instant::now() > deadline {
            let targets = prom.targets().await;
            panic!(
                "Prometheus has {} of {} series after 30 s; targets: {targets:#?}\nlog:\n{}",
                samples.len(),
                values.len(),
                prom.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let targets = prom.targets().await;
    assert_eq!(targets.len(), 1, "{targets:#?}");
    assert_eq!(targets[0]["health"], "up", "{targets:#?}");
    assert_eq!(targets[0]["lastError"], "", "{targets:#?}");
    assert_eq!(samples.len(), values.len());
    for sample in &samples {
        let got = sample.labels.get("value").expect("value label");
        let index = sample.value as usize - 1;
        assert_eq!(
            got.as_bytes(),
            values[index].as_bytes(),
            "series {index}: Prometheus stored {got:?}, the code recorded {:?}",
            values[index]
        );
    }
    let stored: BTreeSet<&str> = samples.iter().map(|s| s.labels["value"].as_str()).collect();
    let recorded: BTreeSet<&str> = values.iter().map(String::as_str).collect();
    assert_eq!(stored, recorded);
    eprintln!(
        "{} hostile label values scraped back byte for byte in {:?}",
        values.len(),
        started.elapsed()
    );
}

fn lines_of_case(logs: &CapturedLogs, case: u64) -> Vec<serde_json::Value> {
    let needle = format!("\"case\":{case}");
    logs.text()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"))
        })
        .filter(|v| v["case"] == case)
        .collect()
}

/// One event with hostile text in a span field, event fields (Display and Debug)
/// and the message; returns the lines it produced.
fn emit(logs: &CapturedLogs, case: u64, in_span: &str, field: &str, message: &str) {
    let span = tracing::info_span!("hostile.span", case, span_payload = %in_span);
    let _entered = span.enter();
    tracing::info!(
        target: "hostile_log",
        case,
        display = %field,
        debug = ?field,
        "{message}"
    );
    drop(_entered);
    let lines = lines_of_case(logs, case);
    assert_eq!(
        lines.len(),
        1,
        "case {case}: one event, one line: {lines:#?}"
    );
    let line = &lines[0];
    assert!(line.is_object());
    assert_eq!(line["span_payload"].as_str(), Some(in_span), "{line}");
    assert_eq!(line["display"].as_str(), Some(field), "{line}");
    assert_eq!(line["debug"].as_str(), Some(format!("{field:?}").as_str()));
    assert_eq!(line["message"].as_str(), Some(message), "{line}");
    assert_eq!(line["target"], "hostile_log");
}

#[test]
fn log_injection_stays_inside_one_json_line() {
    let started = Instant::now();
    let (_, logs) = setup();
    let forged = "x\"}\n{\"level\":\"error\",\"message\":\"forged\",\"admin\":true}\n";
    let mut case = 1_000_000;
    for hostile in fixed_values().iter().map(String::as_str).chain([
        forged,
        "\u{2028}line separator\u{2029}paragraph",
        "{\"json\": [1, 2, {\"nested\": \"yes\"}]}",
        "\r\n\r\n",
        "\\u0000 \\n \\\"",
    ]) {
        case += 1;
        emit(logs, case, hostile, hostile, hostile);
    }
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 300,
        ..ProptestConfig::default()
    });
    let case = std::sync::atomic::AtomicU64::new(2_000_000);
    runner
        .run(
            &(any::<String>(), any::<String>(), any::<String>()),
            |(span, field, message)| {
                let c = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                emit(logs, c, &span, &field, &message);
                Ok(())
            },
        )
        .unwrap();
    // No forged line anywhere: every line of the whole output is one JSON object.
    let all = logs.json_lines();
    assert!(all.iter().all(|l| l.get("admin").is_none()));
    assert!(all.iter().all(|l| l["message"] != "forged"));
    eprintln!("{} log lines checked in {:?}", all.len(), started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_trace_headers_never_break_a_request() {
    setup();
    let app = axum::Router::new()
        .route(
            "/t",
            axum::routing::get(|| async {
                use zs_observe::propagation::current_headers;
                let _ = current_headers();
                "ok"
            }),
        )
        .layer(RequestTraceLayer::new());
    let addr = serve(app).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut runner = TestRunner::deterministic();
    // Header values: any byte HTTP allows in a value (visible ASCII, space, tab,
    // obs-text), and near-misses of the traceparent shape.
    let bytes = prop_oneof![
        proptest::collection::vec(
            prop_oneof![Just(b'\t'), 0x20u8..=0x7e, 0x80u8..=0xff],
            0..120
        ),
        "[0-9a-fA-F+]{1,3}-[0-9a-fA-F]{30,34}-[0-9a-f]{14,18}-[0-9a-f+.]{1,3}(-.{0,10})?"
            .prop_map(String::into_bytes),
        "[ -~]{0,120}".prop_map(String::into_bytes),
    ];
    let strategy = (bytes.clone(), bytes);
    let mut sent = 0;
    for _ in 0..300 {
        let (tp, ts) = strategy.new_tree(&mut runner).expect("generate").current();
        let (Ok(tp), Ok(ts)) = (
            reqwest::header::HeaderValue::from_bytes(&tp),
            reqwest::header::HeaderValue::from_bytes(&ts),
        ) else {
            continue;
        };
        let r = client
            .get(format!("http://{addr}/t"))
            .header("traceparent", tp)
            .header("tracestate", ts)
            .send()
            .await
            .expect("the server answers");
        assert_eq!(r.status(), 200);
        sent += 1;
    }
    assert!(sent >= 250, "only {sent} requests had valid header bytes");
}
