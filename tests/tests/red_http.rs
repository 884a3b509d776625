//! The HTTP RED layer end to end: the Prometheus runtime, a real axum router on
//! 127.0.0.1:0 with the layer, and a real client. Each test uses its own
//! namespace, so the tests share the process's recorder without sharing series.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use zs_observe::{HttpMetricsLayer, Telemetry};
use zs_observe_tests::{parse_exposition, sample_value, Sample};

fn telemetry() -> &'static Telemetry {
    static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();
    TELEMETRY.get_or_init(|| {
        Telemetry::builder()
            .with_service_name("red-test")
            .with_namespace("redtest")
            .with_constant_labels(false)
            .install()
            .expect("runtime installs")
    })
}

async fn serve(app: Router) -> SocketAddr {
    zs_observe_tests::serve(app).await
}

fn samples() -> Vec<Sample> {
    parse_exposition(&telemetry().render())
}

/// Series (sample lines) of `name`.
fn series(samples: &[Sample], name: &str) -> Vec<Sample> {
    samples.iter().filter(|s| s.name == name).cloned().collect()
}

fn items_router() -> Router {
    Router::new()
        .route(
            "/items",
            get(|| async { "all items" }).post(|| async { (StatusCode::CREATED, "created") }),
        )
        .route(
            "/items/{id}",
            get(|Path(id): Path<u32>| async move { format!("item {id}") }),
        )
        .route(
            "/fail",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_by_method_route_template_and_status() {
    let app = items_router().layer(telemetry().http_metrics_layer());
    let addr = serve(app).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    let purge = reqwest::Method::from_bytes(b"PURGE").unwrap();
    let calls: &[(reqwest::Method, &str, u16)] = &[
        (reqwest::Method::GET, "/items/1", 200),
        (reqwest::Method::GET, "/items/2", 200),
        (reqwest::Method::GET, "/items/3", 200),
        (reqwest::Method::GET, "/items", 200),
        (reqwest::Method::POST, "/items", 201),
        (reqwest::Method::POST, "/items", 201),
        (reqwest::Method::GET, "/fail", 503),
        (reqwest::Method::GET, "/nope", 404),
        (reqwest::Method::GET, "/nope/deeper/path", 404),
        (reqwest::Method::POST, "/also/nope", 404),
        (reqwest::Method::DELETE, "/items/1", 405),
        (purge.clone(), "/items/1", 405),
        (purge, "/elsewhere", 404),
    ];
    for (method, path, status) in calls {
        let response = client
            .request(method.clone(), url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), *status, "{method} {path}");
    }

    let samples = samples();
    let requests = |method, route, status| {
        sample_value(
            &samples,
            "redtest_http_requests_total",
            &[("method", method), ("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("GET", "/items/{id}", "200"), Some(3.0));
    assert_eq!(requests("GET", "/items", "200"), Some(1.0));
    assert_eq!(requests("POST", "/items", "201"), Some(2.0));
    assert_eq!(requests("GET", "/fail", "503"), Some(1.0));
    assert_eq!(requests("GET", "unmatched", "404"), Some(2.0));
    assert_eq!(requests("POST", "unmatched", "404"), Some(1.0));
    assert_eq!(requests("DELETE", "/items/{id}", "405"), Some(1.0));
    assert_eq!(requests("other", "/items/{id}", "405"), Some(1.0));
    assert_eq!(requests("other", "unmatched", "404"), Some(1.0));
    let total: f64 = series(&samples, "redtest_http_requests_total")
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(total, calls.len() as f64, "nothing else was counted");
    assert_eq!(
        series(&samples, "redtest_http_requests_total").len(),
        9,
        "one series per (method, route, status) seen"
    );

    let count = |method, route| {
        sample_value(
            &samples,
            "redtest_http_request_duration_seconds_count",
            &[("method", method), ("route", route)],
        )
    };
    assert_eq!(count("GET", "/items/{id}"), Some(3.0));
    assert_eq!(count("POST", "/items"), Some(2.0));
    assert_eq!(count("GET", "unmatched"), Some(2.0));
    assert_eq!(count("other", "/items/{id}"), Some(1.0));
    for gauge in series(&samples, "redtest_http_requests_in_progress") {
        assert_eq!(gauge.value, 0.0, "{gauge:?}");
    }
    assert_eq!(
        series(&samples, "redtest_http_requests_in_progress").len(),
        9,
        "one per (method, route) seen"
    );

    let body = telemetry().render();
    assert!(
        !body.contains("/items/1") && !body.contains("/nope") && !body.contains("PURGE"),
        "raw paths and methods never become label values:\n{body}"
    );
    for line in [
        "# TYPE redtest_http_requests_total counter",
        "# TYPE redtest_http_request_duration_seconds histogram",
        "# TYPE redtest_http_requests_in_progress gauge",
        "# HELP redtest_http_requests_total HTTP requests completed",
        "# HELP redtest_http_request_duration_seconds Time from receiving an HTTP request",
        "# HELP redtest_http_requests_in_progress HTTP requests being handled right now",
    ] {
        assert!(body.contains(line), "{line} in\n{body}");
    }
    let complaints = zs_observe_tests::promtool_check_metrics(&body);
    assert!(
        complaints.trim().is_empty(),
        "promtool check metrics:\n{complaints}\n---\n{body}"
    );
}

/// Polls the exposition until `done` holds (at most 10 s).
async fn eventually(what: &str, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let samples = samples();
        if done(&samples) {
            return samples;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_request_returns_the_gauge_and_counts_499() {
    telemetry();
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "too late"
            }),
        )
        .layer(HttpMetricsLayer::new("reddrop"));
    let addr = serve(app).await;
    let slow = [("method", "GET"), ("route", "/slow")];
    let in_progress = |s: &[Sample]| sample_value(s, "reddrop_http_requests_in_progress", &slow);

    let request = tokio::spawn(reqwest::get(format!("http://{addr}/slow")));
    eventually("the request to start", |s| in_progress(s) == Some(1.0)).await;
    let started = Instant::now();
    // The client goes away: its connection closes, the server drops the handler.
    request.abort();
    let _ = request.await;
    // One render reads counters before gauges, so it can show the gauge lowered and
    // the count not yet: wait for both.
    let counted = |s: &[Sample]| {
        sample_value(
            s,
            "reddrop_http_requests_total",
            &[("method", "GET"), ("route", "/slow"), ("status", "499")],
        ) == Some(1.0)
    };
    let samples = eventually("the gauge to return and the 499 to count", |s| {
        in_progress(s) == Some(0.0) && counted(s)
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "returned on disconnect, not when the handler finished"
    );
    assert_eq!(
        sample_value(
            &samples,
            "reddrop_http_requests_total",
            &[("method", "GET"), ("route", "/slow"), ("status", "499")]
        ),
        Some(1.0)
    );
    assert_eq!(
        series(&samples, "reddrop_http_requests_total").len(),
        1,
        "only the 499"
    );
    assert_eq!(
        sample_value(
            &samples,
            "reddrop_http_request_duration_seconds_count",
            &slow
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_raw_paths_make_a_handful_of_series() {
    telemetry();
    const PATHS: usize = 10_000;
    let app = Router::new()
        .route(
            "/items/{id}",
            get(|Path(id): Path<u32>| async move { format!("item {id}") }),
        )
        .layer(HttpMetricsLayer::new("redmany"));
    let addr = serve(app).await;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let statuses: Vec<u16> = futures::stream::iter(0..2 * PATHS)
        .map(|i| {
            let path = if i % 2 == 0 {
                format!("/items/{}", i / 2)
            } else {
                format!("/nope/{}", i / 2)
            };
            let request = client.get(format!("http://{addr}{path}")).send();
            async move { request.await.map(|r| r.status().as_u16()).unwrap_or(0) }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let elapsed = started.elapsed();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), PATHS);
    assert_eq!(statuses.iter().filter(|s| **s == 404).count(), PATHS);

    let body = telemetry().render();
    let samples = parse_exposition(&body);
    let requests = series(&samples, "redmany_http_requests_total");
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_eq!(
        sample_value(
            &samples,
            "redmany_http_requests_total",
            &[
                ("method", "GET"),
                ("route", "/items/{id}"),
                ("status", "200")
            ]
        ),
        Some(PATHS as f64)
    );
    assert_eq!(
        sample_value(
            &samples,
            "redmany_http_requests_total",
            &[("method", "GET"), ("route", "unmatched"), ("status", "404")]
        ),
        Some(PATHS as f64)
    );
    assert_eq!(
        series(&samples, "redmany_http_request_duration_seconds_count").len(),
        2
    );
    assert_eq!(
        series(&samples, "redmany_http_requests_in_progress").len(),
        2
    );
    let all = samples
        .iter()
        .filter(|s| s.name.starts_with("redmany_"))
        .count();
    // 2 counters, 2 gauges, 2 × (11 default buckets + +Inf + _sum + _count).
    assert_eq!(all, 2 + 2 + 2 * (12 + 2), "{body}");
    eprintln!(
        "{} requests in {elapsed:?}; {all} redmany_ samples",
        2 * PATHS
    );
}
