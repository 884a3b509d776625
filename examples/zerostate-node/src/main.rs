//! A ZeroState compute node instrumented with zs-observe.
//!
//! `cargo run -p zerostate-node --release` starts the node on 127.0.0.1:8080 with
//! its built-in workload; `/metrics` serves the Prometheus exposition. Everything
//! runs on embedded defaults: no collector or Prometheus is needed.
//!
//! A task executor with health checks, HTTP metrics and request tracing; the full node (P2P,
//! guilds, WASM, payments, reputation) grows here in its own issue.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use zs_observe::propagation::RequestTraceLayer;
use zs_observe::{instrumented, Telemetry};
use zs_observe_health::{check_fn, CheckResult, CheckSpec, HealthRegistry};

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

#[derive(Debug)]
struct Config {
    listen: SocketAddr,
    workload: bool,
    check_catalog: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: zerostate-node [--listen ADDR] [--no-workload] [--check-catalog]\n\
         \n  --listen ADDR     address to serve on (env ZEROSTATE_LISTEN, default {DEFAULT_LISTEN})\
         \n  --no-workload     do not run the built-in workload generator\
         \n  --check-catalog   compare the catalog with the code's metrics, print the report and exit"
    );
    std::process::exit(2)
}

fn parse_args() -> Config {
    let mut listen =
        std::env::var("ZEROSTATE_LISTEN").unwrap_or_else(|_| DEFAULT_LISTEN.to_owned());
    let mut workload = true;
    let mut check_catalog = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().unwrap_or_else(|| usage()),
            "--no-workload" => workload = false,
            "--check-catalog" => check_catalog = true,
            "-h" | "--help" => usage(),
            other => {
                eprintln!("unknown argument `{other}`");
                usage()
            }
        }
    }
    let listen = listen.parse().unwrap_or_else(|e| {
        eprintln!("invalid --listen address `{listen}`: {e}");
        usage()
    });
    Config {
        listen,
        workload,
        check_catalog,
    }
}

/// A unit of work submitted to the node: a deterministic compute job with a fuel budget.
#[derive(Debug, Clone, Copy)]
struct Task {
    id: u64,
    fuel: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum TaskError {
    OutOfFuel { used: u64 },
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskError::OutOfFuel { used } => write!(f, "out of fuel after {used} units"),
        }
    }
}

#[derive(Default)]
struct Node {
    completed: AtomicU64,
    failed: AtomicU64,
}

impl Node {
    /// Executes a task: iterates a hash until it reaches a target or runs out of fuel.
    #[instrumented(
        span = "wasm.execute",
        histogram = "zerostate_wasm_execution_duration_seconds",
        counter = "zerostate_tasks_executed_total",
        in_flight = "zerostate_tasks_executing",
        fields(task.id = task.id),
        skip(self, task),
        err(level = "warn")
    )]
    fn execute(&self, task: Task) -> Result<u64, TaskError> {
        let mut state = task.id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for used in 0..task.fuel {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if state % 4096 == 0 {
                self.completed.fetch_add(1, Ordering::Relaxed);
                return Ok(used);
            }
        }
        self.failed.fetch_add(1, Ordering::Relaxed);
        Err(TaskError::OutOfFuel { used: task.fuel })
    }

    /// Runs the health-check task: id 1 reaches its target after a known amount of fuel.
    fn probe(&self) -> Result<u64, TaskError> {
        self.execute(Task {
            id: 1,
            fuel: 1_000_000,
        })
    }
}

async fn workload(node: Arc<Node>) {
    let mut id = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        id += 1;
        let fuel = 2_000 + (id % 7) * 1_000;
        let _ = node.execute(Task { id, fuel });
    }
}

async fn index(State(node): State<Arc<Node>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "service": "zerostate-node",
        "version": env!("CARGO_PKG_VERSION"),
        "tasks": {
            "completed": node.completed.load(Ordering::Relaxed),
            "failed": node.failed.load(Ordering::Relaxed),
        },
        "endpoints": [
            "/metrics", "/healthz", "/readyz", "/health/live", "/health/ready",
            "/health/startup", "/health/detail"
        ],
    }))
}

#[tokio::main]
async fn main() {
    let config = parse_args();
    // The same catalog the compiler checked the call sites against (Cargo.toml metadata).
    let catalog = match zs_observe::include_catalog!("../../../monitoring/catalog/zerostate.toml") {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            std::process::exit(1);
        }
    };
    let telemetry = match Telemetry::builder()
        .with_catalog(catalog)
        .with_service_name("zerostate-node")
        .with_namespace("zerostate")
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_console_logs(true)
        .install()
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot start telemetry: {e}");
            std::process::exit(1);
        }
    };
    let node = Arc::new(Node::default());
    let health = match health_registry(node.clone()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("cannot build the health checks: {e}");
            std::process::exit(1);
        }
    };
    let app = Router::new()
        .route("/", get(index))
        .with_state(node.clone())
        .merge(health.router())
        .merge(telemetry.metrics_router())
        .layer(telemetry.http_metrics_layer())
        .layer(RequestTraceLayer::new());

    if config.check_catalog {
        // Call sites register at link time; the exposition adds what the runtime, the
        // HTTP layer and the health checks record once one request has been served.
        let probe = self_probe(app.clone()).await;
        if let Err(e) = probe {
            eprintln!("self probe failed: {e}");
            std::process::exit(1);
        }
        let report = zs_observe::coverage::report(
            telemetry.catalog().expect("installed with a catalog"),
            &telemetry.render(),
        );
        println!("{report}");
        std::process::exit(i32::from(!report.is_empty()));
    }

    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", config.listen);
            std::process::exit(1);
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(%addr, workload = config.workload, "zerostate-node listening; metrics at /metrics");
    if config.workload {
        tokio::spawn(workload(node));
    }
    // SIGTERM or Ctrl-C: readiness turns to fail, then the server stops after a grace period.
    let shutdown = async move {
        zs_observe_health::shutdown_signal(health, Duration::from_secs(2)).await;
        tracing::info!("shutting down");
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("server error: {e}");
        std::process::exit(1);
    }
}

/// The node's health checks: the workload is alive (liveness), the task executor
/// runs a known task correctly (startup and readiness).
fn health_registry(node: Arc<Node>) -> Result<HealthRegistry, zs_observe_health::BuildError> {
    let executor = node.clone();
    HealthRegistry::builder()
        .with_namespace("zerostate")
        .with_service_id("zerostate-node")
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_refresh_interval(Duration::from_secs(2))
        .with_liveness_check("process:alive", check_fn(|| async { CheckResult::pass() }))
        .with_check(
            CheckSpec::readiness(
                "wasm:runtime",
                check_fn(move || {
                    let node = executor.clone();
                    async move {
                        // A fixed task with a known answer: the executor works.
                        match node.probe() {
                            Ok(used) => CheckResult::pass().with_observed(used, "fuel"),
                            Err(e) => CheckResult::fail(e.to_string()),
                        }
                    }
                }),
            )
            .with_component_type("component"),
        )
        .with_startup_check(
            "wasm:warmup",
            check_fn(move || {
                let node = node.clone();
                async move {
                    match node.probe() {
                        Ok(_) => CheckResult::pass(),
                        Err(e) => CheckResult::fail(e.to_string()),
                    }
                }
            }),
        )
        .build()
}

/// Serves `app` on a free loopback port and sends it one request to each health
/// endpoint, so that every runtime metric has a series.
async fn self_probe(app: Router) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    for path in ["/health/startup", "/health/ready", "/health/live"] {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
            .await
            .map_err(|_| format!("{path}: no answer in 5 s"))?
            .map_err(|e| e.to_string())?;
        if !response.starts_with(b"HTTP/1.1 200") {
            return Err(format!("{path}: {}", String::from_utf8_lossy(&response)));
        }
    }
    server.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_is_deterministic_and_fails_without_fuel() {
        let node = Node::default();
        let a = node.execute(Task {
            id: 1,
            fuel: 1_000_000,
        });
        assert_eq!(
            a,
            node.execute(Task {
                id: 1,
                fuel: 1_000_000
            })
        );
        assert_eq!(
            node.execute(Task { id: 1, fuel: 0 }),
            Err(TaskError::OutOfFuel { used: 0 })
        );
    }
}
