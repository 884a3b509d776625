//! Sampled `#[instrumented]` spans through the runtime's own bridge, mixed with
//! ordinary `tracing` spans (which go through `tracing-opentelemetry`): one tree,
//! whichever kind is the parent, events on the right span, log lines and
//! outgoing `traceparent` headers carrying the bridged span's ids.

use std::collections::HashMap;
use std::time::Duration;

use axum::routing::get;
use zs_observe::propagation::{current_headers, RequestTraceLayer};
use zs_observe_tests::otlp::{ReceivedSpan, Receiver};

#[zs_observe::instrumented(span = "bridge.leaf", fields(depth = 2))]
fn leaf(x: u64) -> u64 {
    tracing::info!(step = "leaf", "leaf working");
    x + 1
}

#[zs_observe::instrumented(span = "bridge.middle", fields(note = tracing::field::Empty, fast))]
fn middle(x: u64) -> u64 {
    tracing::Span::current().record("note", "recorded later");
    zs_observe::record_current("fast", 17u64);
    // A user span between two bridged spans.
    let user = tracing::info_span!("user.section", part = "b");
    let _entered = user.enter();
    tracing::warn!("inside the user span");
    leaf(x) * 2
}

#[zs_observe::instrumented(span = "bridge.outbound")]
fn outbound() -> String {
    current_headers()
        .get("traceparent")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

#[zs_observe::instrumented(span = "bridge.fails", err)]
fn fails(code: u32) -> Result<u32, String> {
    Err(format!("code {code} refused"))
}

static QUIET_FIELDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn quiet_field() -> u64 {
    QUIET_FIELDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    1
}

/// Disabled for logs (`info`) and for traces (the trace filter's `info`) although
/// every call is sampled: no span, fields never evaluated, children attach to what
/// encloses it.
#[zs_observe::instrumented(span = "bridge.quiet", level = "debug", fields(cost = quiet_field()))]
fn quiet() -> String {
    tracing::info!("quiet work");
    outbound()
}

#[zs_observe::instrumented(span = "bridge.handler")]
async fn handler() -> String {
    tokio::time::sleep(Duration::from_millis(20)).await;
    outbound()
}

fn by_name<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
}

#[test]
fn bridged_and_layer_spans_make_one_tree_with_events_logs_and_headers() {
    let receiver = Receiver::http();
    let logs = zs_observe_tests::logs::CapturedLogs::default();
    let telemetry = zs_observe::Telemetry::builder()
        .with_service_name("bridge-test")
        .with_otlp_endpoint(receiver.endpoint())
        .with_sampler(zs_observe::TraceSampler::ParentBasedAlwaysOn)
        .with_trace_batch(256, Duration::from_millis(50))
        .with_log_sink(logs.sink())
        .install()
        .unwrap();

    // A user root span around bridged spans, a user span inside them.
    let root = tracing::info_span!("user.root");
    let outer_headers = root.in_scope(|| {
        assert_eq!(middle(4), 10);
        outbound()
    });
    drop(root);
    assert!(fails(7).is_err());
    // Twice: the second call finds both of the site's verdicts remembered.
    let quiet_headers = [quiet(), quiet()];

    // A server span (tracing-opentelemetry) from a remote parent, a bridged handler.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let answer = runtime.block_on(async {
        let app = axum::Router::new()
            .route("/h", get(handler))
            .layer(RequestTraceLayer::new());
        let addr = zs_observe_tests::serve(app).await;
        reqwest::Client::new()
            .get(format!("http://{addr}/h"))
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    telemetry.flush().unwrap();
    let spans = receiver
        .collected
        .wait_for(Duration::from_secs(10), |s| s.len() >= 11);

    // The tree: user.root > bridge.middle > user.section > bridge.leaf, and
    // user.root > bridge.outbound.
    let root = by_name(&spans, "user.root");
    let middle = by_name(&spans, "bridge.middle");
    let section = by_name(&spans, "user.section");
    let leaf = by_name(&spans, "bridge.leaf");
    assert_eq!(root.parent_span_id, "");
    assert_eq!(middle.parent_span_id, root.span_id, "{middle:#?}");
    assert_eq!(section.parent_span_id, middle.span_id, "{section:#?}");
    assert_eq!(leaf.parent_span_id, section.span_id, "{leaf:#?}");
    let outbound_root = spans
        .iter()
        .find(|s| s.name == "bridge.outbound" && s.parent_span_id == root.span_id)
        .expect("bridge.outbound under user.root");
    for s in [middle, section, leaf, outbound_root] {
        assert_eq!(s.trace_id, root.trace_id, "{s:#?}");
    }

    // Attributes as the OTel layer writes them, records included.
    assert_eq!(leaf.attributes.get("x").map(String::as_str), Some("4"));
    assert_eq!(leaf.attributes.get("depth").map(String::as_str), Some("2"));
    assert_eq!(
        middle.attributes.get("note").map(String::as_str),
        Some("recorded later")
    );
    assert_eq!(
        middle.attributes.get("fast").map(String::as_str),
        Some("17"),
        "record_current reaches a sampled span's data"
    );
    for key in ["thread.id", "busy_ns", "idle_ns"] {
        assert!(leaf.attributes.contains_key(key), "{key}: {leaf:#?}");
    }
    assert_eq!(leaf.kind, 1, "internal");

    // Events land on the span they happened in.
    assert_eq!(leaf.events, vec!["leaf working".to_owned()]);
    assert_eq!(section.events, vec!["inside the user span".to_owned()]);
    assert!(middle.events.is_empty(), "{middle:#?}");

    // `err`: status error with the message, and an exception event.
    let failed = by_name(&spans, "bridge.fails");
    assert_eq!(failed.parent_span_id, "");
    assert_eq!(failed.status_code, 2);
    assert_eq!(failed.status_message, "code 7 refused");
    assert_eq!(failed.events, vec!["exception".to_owned()]);

    // The disabled debug span: not exported, fields not evaluated; the call inside
    // it is a root of its own, its headers naming it.
    assert!(spans.iter().all(|s| s.name != "bridge.quiet"), "{spans:#?}");
    assert_eq!(QUIET_FIELDS.load(std::sync::atomic::Ordering::Relaxed), 0);
    let quiet_roots: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.name == "bridge.outbound" && s.parent_span_id.is_empty())
        .collect();
    assert_eq!(quiet_roots.len(), 2, "{spans:#?}");
    for headers in &quiet_headers {
        assert!(
            quiet_roots
                .iter()
                .any(|s| headers == &format!("00-{}-{}-01", s.trace_id, s.span_id)),
            "{headers} names no root bridge.outbound: {quiet_roots:#?}"
        );
    }

    // The outgoing traceparent names the bridged span, sampled.
    assert_eq!(
        outer_headers,
        format!("00-{}-{}-01", root.trace_id, outbound_root.span_id)
    );

    // Server span from the remote parent > bridged handler > bridged outbound.
    let server = by_name(&spans, "GET /h");
    let handler = by_name(&spans, "bridge.handler");
    let inner = spans
        .iter()
        .find(|s| s.name == "bridge.outbound" && s.parent_span_id == handler.span_id)
        .expect("bridge.outbound under bridge.handler");
    assert_eq!(server.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(server.parent_span_id, "00f067aa0ba902b7");
    assert_eq!(handler.parent_span_id, server.span_id);
    assert_eq!(handler.trace_id, server.trace_id);
    assert_eq!(inner.trace_id, server.trace_id);
    assert_eq!(
        answer,
        format!("00-{}-{}-01", server.trace_id, inner.span_id)
    );
    // An async call: idle while it slept, busy while polled.
    let idle: u64 = handler.attributes["idle_ns"].parse().unwrap();
    assert!(idle >= 15_000_000, "idle {idle} ns: {handler:#?}");

    // Log lines carry the ids of the span they were written in.
    let lines = logs.json_lines();
    let ids: HashMap<&str, (&str, &str)> = lines
        .iter()
        .filter_map(|l| {
            Some((
                l["message"].as_str()?,
                (l["trace_id"].as_str()?, l["span_id"].as_str()?),
            ))
        })
        .collect();
    assert_eq!(
        ids.get("leaf working"),
        Some(&(leaf.trace_id.as_str(), leaf.span_id.as_str())),
        "{lines:#?}"
    );
    assert_eq!(
        ids.get("inside the user span"),
        Some(&(section.trace_id.as_str(), section.span_id.as_str()))
    );
    let leaf_line = lines
        .iter()
        .find(|l| l["message"] == "leaf working")
        .unwrap();
    // Span fields in the log line, as for unsampled (light) and registry spans.
    assert_eq!(leaf_line["span"], "bridge.leaf");
    assert_eq!(leaf_line["depth"], 2);
    assert_eq!(leaf_line["part"], "b");
    assert_eq!(leaf_line["note"], "recorded later");

    let stats = telemetry.trace_stats();
    assert_eq!(stats.exported as usize, spans.len());
    assert_eq!(stats.dropped_queue_full + stats.dropped_export_failed, 0);

    // The quiet span's remembered "disabled" verdicts give way to a level change.
    let quiet_lines = |logs: &zs_observe_tests::logs::CapturedLogs| -> Vec<serde_json::Value> {
        logs.json_lines()
            .into_iter()
            .filter(|l| l["message"] == "quiet work")
            .collect()
    };
    assert!(quiet_lines(&logs)
        .iter()
        .all(|l| l["span"] != "bridge.quiet"));
    telemetry.set_log_level("debug").unwrap();
    quiet();
    let after = quiet_lines(&logs);
    assert_eq!(after.len(), 3, "{after:#?}");
    assert_eq!(after[2]["span"], "bridge.quiet", "{after:#?}");
    assert_eq!(after[2]["cost"], 1);
    assert_eq!(QUIET_FIELDS.load(std::sync::atomic::Ordering::Relaxed), 1);
}
