//! Shared test helpers: serve a router on 127.0.0.1:0 and call it with a real client.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use zs_observe_health::{check_fn, CheckResult, FnCheck, HealthRegistry, Status};

/// Serves `registry.router()` on 127.0.0.1:0 in a task of the current runtime.
pub async fn serve(registry: &HealthRegistry) -> SocketAddr {
    serve_router(registry.router()).await
}

/// Serves `router` on 127.0.0.1:0 in a task of the current runtime.
pub async fn serve_router(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    addr
}

/// A response: status code, content type and parsed JSON body.
#[derive(Debug)]
pub struct Answer {
    pub code: u16,
    pub content_type: String,
    pub json: serde_json::Value,
}

impl Answer {
    pub fn status(&self) -> &str {
        self.json["status"].as_str().unwrap_or("<missing>")
    }
    pub fn check(&self, name: &str) -> &serde_json::Value {
        &self.json["checks"][name][0]
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub async fn get(client: &reqwest::Client, addr: SocketAddr, path: &str) -> Answer {
    let response = client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap();
    let code = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    Answer {
        code,
        content_type,
        json,
    }
}

/// A check returning `status`, counting its runs.
pub fn counting(
    status: Status,
    runs: Arc<AtomicUsize>,
) -> FnCheck<impl Fn() -> futures::future::Ready<CheckResult> + Send + Sync + 'static> {
    check_fn(move || {
        runs.fetch_add(1, Ordering::SeqCst);
        futures::future::ready(CheckResult::new(status).with_output(format!("it is {status}")))
    })
}

/// A check that never finishes.
pub fn hanging(
) -> FnCheck<impl Fn() -> futures::future::Pending<CheckResult> + Send + Sync + 'static> {
    check_fn(futures::future::pending::<CheckResult>)
}

/// A check that returns whatever `cell` holds (0 fail, 1 warn, 2 pass).
pub fn switchable(
    cell: Arc<AtomicUsize>,
) -> FnCheck<impl Fn() -> futures::future::Ready<CheckResult> + Send + Sync + 'static> {
    check_fn(move || {
        let status = match cell.load(Ordering::SeqCst) {
            0 => Status::Fail,
            1 => Status::Warn,
            _ => Status::Pass,
        };
        futures::future::ready(CheckResult::new(status))
    })
}
