//! The HTTP transport: an axum router serving the reports, and the shutdown helpers that drain
//! readiness before the server stops.

use std::future::Future;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::registry::HealthRegistry;
use crate::report::{HealthReport, Probe, CONTENT_TYPE};

impl HealthRegistry {
    /// An axum router with the health endpoints, to merge into the application's router:
    ///
    /// | path | probe |
    /// | --- | --- |
    /// | `/health/live`, `/healthz` | [`Probe::Live`] |
    /// | `/health/ready`, `/readyz` | [`Probe::Ready`] |
    /// | `/health/startup` | [`Probe::Startup`] |
    /// | `/health/detail` | [`Probe::Detail`] |
    ///
    /// Bodies are `application/health+json`; the status is 200 for pass and warn, 503 for fail.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/health/live", get(live))
            .route("/healthz", get(live))
            .route("/health/ready", get(ready))
            .route("/readyz", get(ready))
            .route("/health/startup", get(startup))
            .route("/health/detail", get(detail))
            .with_state(self.clone())
    }
}

async fn live(State(registry): State<HealthRegistry>) -> Response {
    respond(&registry.report(Probe::Live).await)
}

async fn ready(State(registry): State<HealthRegistry>) -> Response {
    respond(&registry.report(Probe::Ready).await)
}

async fn startup(State(registry): State<HealthRegistry>) -> Response {
    respond(&registry.report(Probe::Startup).await)
}

async fn detail(State(registry): State<HealthRegistry>) -> Response {
    respond(&registry.report(Probe::Detail).await)
}

fn respond(report: &HealthReport) -> Response {
    let status =
        StatusCode::from_u16(report.http_status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        report.to_json(),
    )
        .into_response()
}

/// Waits for `signal`, then drains `registry` (readiness fails, liveness stays as it is), then
/// waits `grace` so load balancers and the orchestrator see the failing readiness before the
/// server stops, then returns. For `axum::serve(..).with_graceful_shutdown(..)`; see
/// [`shutdown_signal`] for the usual signals.
pub async fn drain_on<F: Future>(registry: HealthRegistry, signal: F, grace: Duration) {
    signal.await;
    registry.drain();
    tracing::info!(
        grace_seconds = grace.as_secs_f64(),
        "shutdown requested: readiness now fails; stopping after the grace period"
    );
    tokio::time::sleep(grace).await;
}

/// Waits for SIGTERM (on Unix) or Ctrl-C, then drains `registry`, waits `grace`, and returns:
///
/// ```rust,no_run
/// # use std::time::Duration;
/// # use zs_observe_health::{shutdown_signal, HealthRegistry};
/// # async fn serve(registry: HealthRegistry) -> std::io::Result<()> {
/// let app = axum::Router::new().merge(registry.router());
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
/// axum::serve(listener, app)
///     .with_graceful_shutdown(shutdown_signal(registry, Duration::from_secs(5)))
///     .await
/// # }
/// ```
///
/// A signal whose handler cannot be installed is logged and never fires (the other one still
/// does), so the server is never stopped by an installation error.
pub async fn shutdown_signal(registry: HealthRegistry, grace: Duration) {
    drain_on(registry, termination(), grace).await;
}

/// Resolves on the first of SIGTERM (Unix) and Ctrl-C.
async fn termination() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
