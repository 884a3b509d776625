//! Head sampling with a parent-based sampler: whole traces are kept or dropped
//! before any OpenTelemetry data is built, remote parents' flags are followed, and
//! unsampled spans propagate "not sampled" downstream.

use std::time::Duration;

use axum::routing::get;
use zs_observe::propagation::{current_headers, RequestTraceLayer};
use zs_observe_tests::otlp::Receiver;

#[zs_observe::instrumented(span = "head.inner")]
fn inner(i: u64) -> u64 {
    i + 1
}

#[zs_observe::instrumented(span = "head.outer")]
fn outer(i: u64) -> u64 {
    inner(i) * 2
}

#[zs_observe::instrumented(span = "head.handler")]
async fn handler() -> String {
    // What this service would send to the next one.
    current_headers()
        .get("traceparent")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

static QUIET_FIELDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn quiet_field() -> u64 {
    QUIET_FIELDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as u64 + 1
}

/// A span disabled for logs (`info`) and for traces (the trace filter's `info`),
/// sampled calls and unsampled ones alike.
#[zs_observe::instrumented(span = "head.quiet", level = "debug", fields(cost = quiet_field()))]
fn quiet() {
    tracing::info!("quiet work");
}

#[test]
fn whole_traces_are_kept_or_dropped_and_remote_flags_are_followed() {
    let receiver = Receiver::http();
    let logs = zs_observe_tests::logs::CapturedLogs::default();
    let telemetry = zs_observe::Telemetry::builder()
        .with_service_name("head-test")
        .with_otlp_endpoint(receiver.endpoint())
        .with_sampler(zs_observe::TraceSampler::ParentBasedRatio(0.5))
        .with_trace_batch(256, Duration::from_millis(50))
        .with_log_sink(logs.sink())
        .with_log_format(zs_observe::LogFormat::Json)
        .install()
        .unwrap();

    // 1. Local roots: about half kept, each with its child; no orphan children.
    for i in 0..400 {
        assert_eq!(outer(i), (i + 1) * 2);
    }
    telemetry.flush().unwrap();
    let spans = receiver.collected.spans();
    let outers: Vec<_> = spans.iter().filter(|s| s.name == "head.outer").collect();
    let inners: Vec<_> = spans.iter().filter(|s| s.name == "head.inner").collect();
    // Binomial(400, 0.5): mean 200, sd 10; ±70 is 7 sd.
    assert!(
        (130..=270).contains(&outers.len()),
        "kept {} of 400",
        outers.len()
    );
    assert_eq!(inners.len(), outers.len());
    for child in &inners {
        assert!(
            outers
                .iter()
                .any(|p| p.span_id == child.parent_span_id && p.trace_id == child.trace_id),
            "orphan child {child:?}"
        );
    }

    // 2. Remote parents: the caller's sampled flag decides, whatever the ratio.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (sampled_ids, unsampled_answers) = runtime.block_on(async {
        let app = axum::Router::new()
            .route("/h", get(handler))
            .layer(RequestTraceLayer::new());
        let addr = zs_observe_tests::serve(app).await;
        let client = reqwest::Client::new();
        let mut sampled_ids = Vec::new();
        let mut unsampled_answers = Vec::new();
        for i in 0..40u64 {
            let trace_id = format!("{:032x}", 0xabc0_0000 + i);
            let flag = if i % 2 == 0 { "01" } else { "00" };
            let answer = client
                .get(format!("http://{addr}/h"))
                .header(
                    "traceparent",
                    format!("00-{trace_id}-00f067aa0ba902b7-{flag}"),
                )
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if flag == "01" {
                // Propagated with the same trace id and the sampled flag.
                assert!(answer.starts_with(&format!("00-{trace_id}-")), "{answer}");
                assert!(answer.ends_with("-01"), "{answer}");
                sampled_ids.push(trace_id);
            } else {
                unsampled_answers.push((trace_id, answer));
            }
        }
        (sampled_ids, unsampled_answers)
    });
    telemetry.flush().unwrap();
    let spans = receiver.collected.spans();
    for id in &sampled_ids {
        let trace: Vec<_> = spans.iter().filter(|s| &s.trace_id == id).collect();
        assert_eq!(trace.len(), 2, "server + handler span of {id}: {trace:?}");
        assert_eq!(
            trace
                .iter()
                .find(|s| s.name == "GET /h")
                .unwrap()
                .parent_span_id,
            "00f067aa0ba902b7"
        );
    }
    for (id, answer) in &unsampled_answers {
        assert!(
            spans.iter().all(|s| &s.trace_id != id),
            "unsampled trace {id} exported"
        );
        // Downstream is told "not sampled", so it does not start a trace of its own.
        assert!(
            answer.starts_with("00-") && answer.ends_with("-00"),
            "{answer}"
        );
        assert_eq!(answer.len(), 55, "{answer}");
    }
    assert_eq!(telemetry.trace_stats().dropped_queue_full, 0);

    // 4. A span disabled either way: once a call site has seen a sampled and an
    // unsampled call (100 roots at 0.5), it remembers that and skips the sampling
    // roll; a level change still reaches it.
    let quiet_lines = || -> Vec<serde_json::Value> {
        logs.json_lines()
            .into_iter()
            .filter(|l| l["message"] == "quiet work")
            .collect()
    };
    for _ in 0..100 {
        quiet();
    }
    assert_eq!(QUIET_FIELDS.load(std::sync::atomic::Ordering::Relaxed), 0);
    let before = quiet_lines();
    assert_eq!(before.len(), 100);
    assert!(
        before.iter().all(|l| l["span"].is_null()),
        "{:#?}",
        before[0]
    );
    telemetry.set_log_level("debug").unwrap();
    for _ in 0..10 {
        quiet();
    }
    let after = quiet_lines();
    assert_eq!(after.len(), 110);
    for line in &after[100..] {
        assert_eq!(line["span"], "head.quiet", "{line:#?}");
    }
    assert_eq!(QUIET_FIELDS.load(std::sync::atomic::Ordering::Relaxed), 10);
    telemetry.flush().unwrap();
    assert!(receiver
        .collected
        .spans()
        .iter()
        .all(|s| s.name != "head.quiet"));
}
