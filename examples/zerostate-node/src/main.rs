//! A ZeroState compute node instrumented with zs-observe.
//!
//! `cargo run -p zerostate-node --release` starts the node on 127.0.0.1:8080 with
//! its built-in workload; `/metrics` serves the Prometheus exposition. Everything
//! runs on embedded defaults: no collector or Prometheus is needed.
//!
//! This is the trunk's minimal node (a task executor); the full node (P2P,
//! guilds, WASM, payments, reputation) grows here in its own issue.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use zs_observe::{instrumented, Telemetry};

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
        "endpoints": ["/metrics", "/healthz"],
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
    if config.check_catalog {
        // Call sites register at link time; the exposition adds the runtime's own series.
        let report = zs_observe::coverage::report(
            telemetry.catalog().expect("installed with a catalog"),
            &telemetry.render(),
        );
        println!("{report}");
        std::process::exit(i32::from(!report.is_empty()));
    }

    let node = Arc::new(Node::default());
    let app = Router::new()
        .route("/", get(index))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(node.clone())
        .merge(telemetry.metrics_router());

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
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
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
