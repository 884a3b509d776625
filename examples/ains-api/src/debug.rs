//! Profiling endpoints (seed 003, 8.7), served only when the service runs with
//! `--debug`, and then only on the admin listener (`--admin-addr`), behind the admin
//! token when one is set (`ZS_ADMIN_TOKEN`): `GET /debug/profile/cpu?seconds=N` samples
//! the process's stacks for N seconds (1 to 60, default 10) and answers a flame graph
//! (SVG); `GET /debug/profile/memory` answers the process's memory figures and the sizes
//! of the cache and the database. The application listener never has these routes: it
//! answers them with the API's plain 404 (`{"error": "no such route"}`), as any unknown
//! path; without `--debug` there is no admin listener at all.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use zs_observe::instrumented;

use crate::api::ApiError;
use crate::app::App;
use crate::db::Op;

/// Most seconds one CPU profile may run.
const MAX_SECONDS: u64 = 60;

#[derive(Debug)]
struct Debug {
    app: Arc<App>,
    /// One CPU profile at a time: the profiler is process-wide.
    profiling: AtomicBool,
}

/// The `/debug/profile/*` routes, for the admin listener
/// (`Telemetry::mount_admin_routes`).
pub(crate) fn router(app: Arc<App>) -> Router {
    let state = Arc::new(Debug {
        app,
        profiling: AtomicBool::new(false),
    });
    Router::new()
        .route("/debug/profile/cpu", get(cpu))
        .route("/debug/profile/memory", get(memory))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CpuQuery {
    seconds: Option<u64>,
}

/// Clears the "profiling" flag however the request ends.
struct Running<'a>(&'a AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

#[instrumented(span = "debug.profile.cpu", skip_all)]
async fn cpu(
    State(debug): State<Arc<Debug>>,
    query: Result<Query<CpuQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let seconds = q.seconds.unwrap_or(10);
    if !(1..=MAX_SECONDS).contains(&seconds) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("`seconds` must be between 1 and {MAX_SECONDS}"),
        ));
    }
    if debug.profiling.swap(true, Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "a CPU profile is already running",
        ));
    }
    let _running = Running(&debug.profiling);
    tracing::info!(seconds, "CPU profile started");
    // The profiler samples every thread with SIGPROF; the wait and the report's symbol
    // resolution run on a blocking thread.
    let svg = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(99)
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()
            .map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_secs(seconds));
        let report = guard.report().build().map_err(|e| e.to_string())?;
        let mut svg = Vec::new();
        report.flamegraph(&mut svg).map_err(|e| e.to_string())?;
        Ok(svg)
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r)
    .map_err(|e| {
        tracing::error!(error = %e, "CPU profile failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("profiling failed: {e}"),
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

/// `VmRSS`, `VmHWM`, `VmSize` (bytes) and `Threads` from /proc/self/status, where it exists.
fn proc_status() -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    let Ok(text) = std::fs::read_to_string("/proc/self/status") else {
        return out;
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let mut words = value.split_whitespace();
        let number = words.next().and_then(|n| n.parse::<u64>().ok());
        let field = match key {
            "VmRSS" => "resident_bytes",
            "VmHWM" => "resident_peak_bytes",
            "VmSize" => "virtual_bytes",
            "Threads" => "threads",
            _ => continue,
        };
        if let Some(n) = number {
            let n = if words.next() == Some("kB") {
                n * 1024
            } else {
                n
            };
            out.insert(field.into(), n.into());
        }
    }
    out
}

#[instrumented(span = "debug.profile.memory", skip_all)]
async fn memory(State(debug): State<Arc<Debug>>) -> Result<Response, ApiError> {
    let app = &debug.app;
    let db_bytes = app
        .db
        .run(Op::Select, |c| {
            c.query_row(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .ok();
    Ok(Json(serde_json::json!({
        "process": proc_status(),
        "cache": {
            "entries": app.cache.check().ok(),
            "hit_ratio": app.cache.hit_ratio(),
        },
        "database": { "bytes": db_bytes },
    }))
    .into_response())
}
