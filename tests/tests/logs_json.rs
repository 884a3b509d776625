//! JSON log lines end to end: a real router with the request layer on 127.0.0.1:0,
//! a real client, and the lines captured from the runtime's sink.

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::routing::get;
use zs_observe::propagation::RequestTraceLayer;
use zs_observe::Telemetry;
use zs_observe_tests::logs::CapturedLogs;

const SECRET: &str = "s3cr3t-value-planted";

#[zs_observe::instrumented(span = "task.submit", fields(tenant = "acme", password = SECRET))]
async fn submit(task_id: String, customer_ssn: String) -> usize {
    tracing::info!(token = SECRET, size = 3, "task \"accepted\"\nnext line");
    tracing::debug!("debug detail");
    // No endpoint here: the sampled span keeps only its context, which still gives
    // this line its ids and the next service its `traceparent`.
    let headers = zs_observe::propagation::current_headers();
    let traceparent = headers["traceparent"].to_str().unwrap_or_default();
    tracing::info!(traceparent, "calling the next service");
    task_id.len() + customer_ssn.len()
}

fn setup() -> &'static (Telemetry, CapturedLogs) {
    static SETUP: OnceLock<(Telemetry, CapturedLogs)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let logs = CapturedLogs::default();
        let telemetry = Telemetry::builder()
            .with_service_name("logtest")
            .with_log_sink(logs.sink())
            .with_log_format(zs_observe::LogFormat::Json)
            .with_log_level("info")
            .with_log_level_endpoint(true)
            // Trace ids are on the lines of sampled traces only.
            .with_sampler(zs_observe::TraceSampler::ParentBasedAlwaysOn)
            .with_log_rate_limit("logs_json::noisy", tracing::Level::INFO, 10)
            .with_redacted_field("ssn")
            .with_admin_listener("127.0.0.1:0".parse().unwrap())
            .install()
            .expect("install");
        (telemetry, logs)
    })
}

async fn serve() -> SocketAddr {
    setup();
    let app = axum::Router::new()
        .route(
            "/tasks/{id}",
            get(
                |axum::extract::Path(id): axum::extract::Path<String>| async move {
                    submit(id, SECRET.to_owned()).await.to_string()
                },
            ),
        )
        .layer(RequestTraceLayer::new());
    zs_observe_tests::serve(app).await
}

fn lines_with(logs: &CapturedLogs, message: &str) -> Vec<serde_json::Value> {
    logs.json_lines()
        .into_iter()
        .filter(|l| l["message"] == message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_fields_trace_ids_request_ids_and_no_secrets() {
    let addr = serve().await;
    let (_, logs) = setup();
    let client = reqwest::Client::new();

    // A sane caller request id is kept and echoed.
    let r = client
        .get(format!("http://{addr}/tasks/t-42"))
        .header("x-request-id", "req-from-caller-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-from-caller-1");
    assert_eq!(r.text().await.unwrap(), (4 + SECRET.len()).to_string());
    // A hostile one is replaced by a generated id.
    let r = client
        .get(format!("http://{addr}/tasks/t-43"))
        .header("x-request-id", "bad id\twith spaces")
        .send()
        .await
        .unwrap();
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 32);

    let accepted = lines_with(logs, "task \"accepted\"\nnext line");
    assert_eq!(accepted.len(), 2, "{}", logs.text());
    let first = accepted
        .iter()
        .find(|l| l["task_id"] == "t-42")
        .expect("span field task_id flattened");
    for key in [
        "timestamp",
        "level",
        "service",
        "target",
        "message",
        "trace_id",
        "span_id",
    ] {
        assert!(first.get(key).is_some(), "{key} missing: {first}");
    }
    assert_eq!(first["service"], "logtest");
    assert_eq!(first["level"], "info");
    assert_eq!(first["target"], "logs_json");
    assert_eq!(first["span"], "task.submit");
    assert_eq!(first["tenant"], "acme");
    assert_eq!(first["size"], 3);
    assert_eq!(first["request_id"], "req-from-caller-1");
    assert_eq!(first["http.route"], "/tasks/{id}");
    assert_eq!(first["trace_id"].as_str().unwrap().len(), 32);
    assert_eq!(first["span_id"].as_str().unwrap().len(), 16);
    // The outgoing header names the span the line was written in, sampled.
    let calling = lines_with(logs, "calling the next service");
    assert_eq!(calling.len(), 2, "{}", logs.text());
    for line in &calling {
        let (trace_id, span_id) = (line["trace_id"].as_str(), line["span_id"].as_str());
        assert_eq!(
            line["traceparent"].as_str(),
            Some(format!("00-{}-{}-01", trace_id.unwrap(), span_id.unwrap()).as_str()),
            "{line}"
        );
        assert_eq!(line["span"], "task.submit");
    }
    let same_call = calling.iter().find(|l| l["task_id"] == "t-42").unwrap();
    assert_eq!(same_call["trace_id"], first["trace_id"]);
    assert_eq!(same_call["span_id"], first["span_id"]);
    let second = accepted.iter().find(|l| l["task_id"] == "t-43").unwrap();
    assert_eq!(second["request_id"], generated.as_str());
    assert_ne!(second["trace_id"], first["trace_id"]);
    // Redaction: built-in names (password, token) and the configured one (ssn).
    assert_eq!(first["password"], zs_observe::REDACTED);
    assert_eq!(first["token"], zs_observe::REDACTED);
    assert_eq!(first["customer_ssn"], zs_observe::REDACTED);
    assert!(!logs.text().contains(SECRET), "a planted secret leaked");
    // Log injection: the newline and quotes stayed inside one JSON string.
    assert!(logs
        .text()
        .lines()
        .all(|l| l.starts_with('{') && l.ends_with('}')));
    // Level `info`: the debug event is filtered out.
    assert!(lines_with(logs, "debug detail").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn level_changes_at_run_time_through_the_admin_endpoint() {
    setup();
    let (telemetry, logs) = setup();
    let admin = telemetry.admin_addr().unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://{admin}/log-level");

    let bad = client.put(&url).body("info,=[").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad
        .text()
        .await
        .unwrap()
        .contains("invalid level directives"));
    let empty = client.put(&url).body("  ").send().await.unwrap();
    assert_eq!(empty.status(), 400);

    tracing::debug!(target: "logs_json::level", "before the change");
    let ok = client
        .put(&url)
        .body("info,logs_json::level=debug")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        client
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .trim(),
        "info,logs_json::level=debug"
    );
    tracing::debug!(target: "logs_json::level", "after the change");
    assert!(lines_with(logs, "before the change").is_empty());
    assert_eq!(lines_with(logs, "after the change").len(), 1);
    telemetry.set_log_level("info").unwrap();
}

#[test]
fn high_volume_events_are_rate_limited_and_counted() {
    let (telemetry, logs) = setup();
    for i in 0..1_000 {
        tracing::info!(target: "logs_json::noisy", i, "noisy event");
    }
    let kept = lines_with(logs, "noisy event").len();
    // 10 a second; the loop may straddle one second boundary.
    assert!((10..=20).contains(&kept), "kept {kept}");
    let exposition = telemetry.render();
    let sampled_out: f64 = exposition
        .lines()
        .find(|l| {
            l.starts_with("logtest_log_events_sampled_out_total{") && l.contains("level=\"info\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{exposition}"));
    assert_eq!(sampled_out as usize, 1_000 - kept);
}
