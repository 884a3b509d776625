//! The built-in checks against real loopback sockets, a real axum server and a temp directory.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use common::{client, serve, serve_router};
use zs_observe_health::{
    dir_writable, http_get, tcp_connect, Check, CheckResult, CheckSpec, HealthRegistry, Status,
};

const TIMEOUT: Duration = Duration::from_millis(500);

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn output(result: &CheckResult) -> &str {
    result.output().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connect_to_bound_and_unbound_ports() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = listener.local_addr().unwrap();
    let result = tcp_connect(open.to_string(), TIMEOUT).check().await;
    assert_eq!(result.status(), Status::Pass, "{result:?}");
    assert_eq!(result.observed_unit(), Some("s"));
    assert!(result.observed_value().unwrap().as_f64().unwrap() < 0.5);

    let closed = format!("127.0.0.1:{}", closed_port());
    let result = tcp_connect(closed.clone(), TIMEOUT).check().await;
    assert_eq!(result.status(), Status::Fail);
    assert!(output(&result).contains(&closed), "{result:?}");

    // Through the registry and the endpoint.
    let registry = HealthRegistry::builder()
        .with_readiness_check("peer:open", tcp_connect(open.to_string(), TIMEOUT))
        .with_check(
            CheckSpec::readiness("peer:closed", tcp_connect(closed, TIMEOUT)).with_critical(false),
        )
        .build()
        .unwrap();
    let addr = serve(&registry).await;
    let answer = common::get(&client(), addr, "/health/ready").await;
    assert_eq!((answer.code, answer.status()), (200, "warn"), "{answer:?}");
    assert_eq!(answer.check("peer:open")["status"], "pass");
    assert_eq!(answer.check("peer:closed")["status"], "fail");
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_get_by_status_class() {
    let app = axum::Router::new()
        .route("/ok", get(|| async { "fine" }))
        .route("/created", get(|| async { (StatusCode::CREATED, "made") }))
        .route(
            "/boom",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route(
            "/moved",
            get(|| async { (StatusCode::FOUND, [("location", "/ok")], "") }),
        );
    let addr = serve_router(app).await;

    for path in ["/ok", "/created"] {
        let result = http_get(format!("http://{addr}{path}"), TIMEOUT)
            .check()
            .await;
        assert_eq!(result.status(), Status::Pass, "{path}: {result:?}");
        assert_eq!(result.observed_unit(), Some("s"));
    }
    for (path, code) in [("/boom", "500"), ("/moved", "302"), ("/missing", "404")] {
        let result = http_get(format!("http://{addr}{path}"), TIMEOUT)
            .check()
            .await;
        assert_eq!(result.status(), Status::Fail, "{path}: {result:?}");
        assert!(output(&result).contains(code), "{path}: {result:?}");
    }

    let result = http_get(format!("http://127.0.0.1:{}/", closed_port()), TIMEOUT)
        .check()
        .await;
    assert_eq!(result.status(), Status::Fail);

    let result = http_get("https://127.0.0.1/", TIMEOUT).check().await;
    assert_eq!(result.status(), Status::Fail);
    assert!(output(&result).contains("https"), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_get_times_out_on_a_silent_server() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        for _ in 0..4 {
            match listener.accept().await {
                Ok((socket, _)) => held.push(socket),
                Err(_) => break,
            }
        }
        std::future::pending::<()>().await;
    });
    let timeout = Duration::from_millis(200);
    let start = std::time::Instant::now();
    let result = http_get(format!("http://{addr}/health"), timeout)
        .check()
        .await;
    assert_eq!(result.status(), Status::Fail);
    assert!(output(&result).contains("timed out"), "{result:?}");
    assert!(start.elapsed() < timeout + Duration::from_millis(300));
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dir_writable_and_free_space() {
    let dir = tempfile::tempdir().unwrap();
    let result = dir_writable(dir.path()).check().await;
    assert_eq!(result.status(), Status::Pass, "{result:?}");

    let result = dir_writable(dir.path()).fail_below(1).check().await;
    assert_eq!(result.status(), Status::Pass, "{result:?}");
    assert_eq!(result.observed_unit(), Some("bytes"));
    let available = result.observed_value().unwrap().as_u64().unwrap();
    assert!(available > 1);

    let result = dir_writable(dir.path()).warn_below(u64::MAX).check().await;
    assert_eq!(result.status(), Status::Warn, "{result:?}");
    assert!(output(&result).contains("below the warning level"));

    let result = dir_writable(dir.path())
        .warn_below(u64::MAX)
        .fail_below(u64::MAX)
        .check()
        .await;
    assert_eq!(result.status(), Status::Fail, "{result:?}");
    assert!(output(&result).contains("below the minimum"));

    let missing = dir.path().join("does-not-exist");
    let result = dir_writable(&missing).check().await;
    assert_eq!(result.status(), Status::Fail, "{result:?}");
    assert!(output(&result).contains("not writable"));

    // The probe files are removed.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
