//! The runtime end to end: the Prometheus recorder installed by the builder, an
//! axum app with `/metrics` on 127.0.0.1:0, a real HTTP client, and promtool.

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use zs_observe::{instrumented, Telemetry};
use zs_observe_tests::{parse_exposition, sample_value};

#[instrumented(
    span = "work.handle",
    counter = "httptest_work_total",
    histogram = "httptest_work_duration_seconds",
    in_flight = "httptest_work_in_flight",
    labels(queue = "default")
)]
async fn work(n: u32) -> Result<u32, String> {
    if n % 3 == 0 {
        return Err(format!("{n} is divisible by three"));
    }
    tokio::task::yield_now().await;
    Ok(n * 2)
}

#[instrumented(counter = "httptest_admin_probe_total")]
fn admin_probe() {}

fn telemetry() -> &'static Telemetry {
    static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();
    TELEMETRY.get_or_init(|| {
        let telemetry = Telemetry::builder()
            .with_service_name("http-test")
            .with_namespace("httptest")
            .with_version("1.2.3")
            .with_environment("test")
            .with_buckets("httptest_work_duration_seconds", &[0.001, 0.01, 0.1, 1.0])
            .with_admin_listener("127.0.0.1:0".parse().unwrap())
            .install()
            .expect("runtime installs");
        metrics::describe_counter!("httptest_work_total", "Work requests handled, by outcome.");
        metrics::describe_histogram!(
            "httptest_work_duration_seconds",
            metrics::Unit::Seconds,
            "Time to handle a work request."
        );
        metrics::describe_gauge!("httptest_work_in_flight", "Work requests being handled.");
        metrics::describe_counter!("httptest_admin_probe_total", "Calls of the admin probe.");
        telemetry
    })
}

async fn serve() -> SocketAddr {
    let app = Router::new()
        .route(
            "/work/{n}",
            get(|Path(n): Path<u32>| async move {
                match work(n).await {
                    Ok(v) => (axum::http::StatusCode::OK, v.to_string()),
                    Err(e) => (axum::http::StatusCode::UNPROCESSABLE_ENTITY, e),
                }
            }),
        )
        .merge(telemetry().metrics_router());
    zs_observe_tests::serve(app).await
}

async fn scrape(addr: SocketAddr) -> (String, String) {
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (content_type, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_shows_help_type_buckets_labels_and_outcomes() {
    let addr = serve().await;
    let client = reqwest::Client::new();
    for n in 1..=9 {
        let status = client
            .get(format!("http://{addr}/work/{n}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.is_success(), n % 3 != 0);
    }
    let (content_type, body) = scrape(addr).await;
    assert_eq!(content_type, zs_observe::CONTENT_TYPE);

    assert!(
        body.contains("# HELP httptest_work_total Work requests handled, by outcome."),
        "{body}"
    );
    assert!(body.contains("# TYPE httptest_work_total counter"));
    assert!(body.contains("# TYPE httptest_work_duration_seconds histogram"));
    assert!(body.contains("# TYPE httptest_work_in_flight gauge"));
    assert!(
        !body.contains("quantile="),
        "histograms never render as summaries:\n{body}"
    );

    let samples = parse_exposition(&body);
    let constant = [
        ("service", "http-test"),
        ("version", "1.2.3"),
        ("environment", "test"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        constant.iter().chain(extra).copied().collect()
    };
    let count = |outcome| {
        sample_value(
            &samples,
            "httptest_work_total",
            &with(&[("queue", "default"), ("outcome", outcome)]),
        )
    };
    assert_eq!(count("ok"), Some(6.0), "{body}");
    assert_eq!(count("error"), Some(3.0));
    assert_eq!(
        count("panic"),
        Some(0.0),
        "all outcomes exist from the first call"
    );
    assert_eq!(count("cancelled"), Some(0.0));

    // Per-metric buckets from the builder, plus +Inf; _count equals the +Inf bucket.
    let ok = with(&[("queue", "default"), ("outcome", "ok")]);
    let bucket = |le: &'static str| {
        let mut labels = ok.clone();
        labels.push(("le", le));
        sample_value(&samples, "httptest_work_duration_seconds_bucket", &labels)
    };
    for le in ["0.001", "0.01", "0.1", "1", "+Inf"] {
        assert!(bucket(le).is_some(), "bucket le={le} in\n{body}");
    }
    assert_eq!(bucket("+Inf"), Some(6.0));
    assert_eq!(
        sample_value(&samples, "httptest_work_duration_seconds_count", &ok),
        Some(6.0)
    );
    assert!(sample_value(&samples, "httptest_work_duration_seconds_sum", &ok).is_some());
    assert_eq!(
        samples
            .iter()
            .filter(|s| s.name == "httptest_work_duration_seconds_bucket"
                && s.labels["outcome"] == "ok")
            .count(),
        5,
        "exactly the configured buckets"
    );

    assert_eq!(
        sample_value(
            &samples,
            "httptest_work_in_flight",
            &with(&[("queue", "default")])
        ),
        Some(0.0)
    );
    assert!(body.contains("# TYPE httptest_build_info gauge"));
    assert_eq!(
        sample_value(&samples, "httptest_build_info", &constant),
        Some(1.0),
        "{body}"
    );

    let complaints = zs_observe_tests::promtool_check_metrics(&body);
    assert!(
        complaints.trim().is_empty(),
        "promtool check metrics:\n{complaints}\n---\n{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_serves_the_same_exposition() {
    telemetry();
    admin_probe();
    let admin = telemetry().admin_addr().expect("admin listener configured");
    assert_ne!(admin.port(), 0, "port 0 resolves to the bound port");
    let (_, body) = scrape(admin).await;
    assert!(
        body.contains("# TYPE httptest_admin_probe_total counter"),
        "{body}"
    );
    assert!(body.contains("httptest_build_info"));
    let missing = reqwest::get(format!("http://{admin}/nope")).await.unwrap();
    assert_eq!(missing.status(), 404);
    // The log-level endpoint is off unless enabled.
    let level = reqwest::get(format!("http://{admin}/log-level"))
        .await
        .unwrap();
    assert_eq!(level.status(), 404);
}
