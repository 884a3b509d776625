//! The AINS API (seed 003) instrumented with zs-observe.
//!
//! `cargo run -p ains-api` serves a REST API for tasks, agents, chains of task steps and
//! scheduled tasks on 127.0.0.1:8000, over an embedded SQLite database (in memory unless
//! `--db PATH`), with a cache for GETs, a scheduler that runs due scheduled tasks and a
//! router that gives each new task to the active agent with the highest trust score.
//! `/metrics` serves the Prometheus exposition and `/health/*` the health checks; logs
//! are JSON lines on stdout. The first line on stderr is `LISTENING <addr>`. With
//! `--debug`, the profiling endpoints are served on a separate admin listener
//! (`--admin-addr`, loopback by default), behind `ZS_ADMIN_TOKEN` when it is set, and the
//! second line on stderr is `ADMIN <addr>`.

mod api;
mod app;
mod cache;
mod db;
mod debug;
mod workload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use zs_observe::propagation::RequestTraceLayer;
use zs_observe::Telemetry;
use zs_observe_health::{check_fn, CheckResult, CheckSpec, HealthRegistry};

use crate::app::App;
use crate::cache::Cache;
use crate::db::Db;

const DEFAULT_LISTEN: &str = "127.0.0.1:8000";
/// Where the admin listener (profiling endpoints, with `--debug`) binds by default.
const DEFAULT_ADMIN: &str = "127.0.0.1:8001";

/// Which spans reach the OTLP exporter (when `OTEL_EXPORTER_OTLP_ENDPOINT` is set):
/// the service's own debug-level spans (`db.query`, `cache.*`, `scheduler.tick`) too.
/// `AINS_TRACE_FILTER` replaces it; the log level (`RUST_LOG`) is separate.
const DEFAULT_TRACE_FILTER: &str = "info,ains_api=debug";

#[derive(Debug)]
struct Config {
    listen: SocketAddr,
    admin: SocketAddr,
    db: String,
    tick: Duration,
    agent_ttl: Duration,
    task_timeout: Duration,
    check_catalog: bool,
    debug: bool,
    workload: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: ains-api [--listen ADDR] [--db PATH] [--tick-ms N] [--agent-ttl-secs N]\n\
         \x20               [--task-timeout-secs N] [--workload] [--debug [--admin-addr ADDR]]\n\
         \x20               [--check-catalog]\n\
         \n  --listen ADDR            address to serve on (env AINS_LISTEN, default {DEFAULT_LISTEN})\
         \n  --db PATH                SQLite database file (default :memory:)\
         \n  --tick-ms N              scheduler period in milliseconds (default 1000)\
         \n  --agent-ttl-secs N       an agent without a heartbeat for N s gets no tasks (default 30)\
         \n  --task-timeout-secs N    a task running for N s is marked failed (default 300)\
         \n  --workload               drive the API with a built-in workload (agents, tasks, chains)\
         \n  --debug                  serve /debug/profile/cpu and /debug/profile/memory on the admin\
         \n                           listener only, behind ZS_ADMIN_TOKEN when set (env AINS_DEBUG=1)\
         \n  --admin-addr ADDR        the admin listener's address, with --debug (env AINS_ADMIN_ADDR,\
         \n                           default {DEFAULT_ADMIN}); a non-loopback address needs ZS_ADMIN_TOKEN\
         \n  --check-catalog          compare the catalog with the code's metrics, print the report and exit\
         \n\nenvironment: OTEL_EXPORTER_OTLP_ENDPOINT (export spans over OTLP), OTEL_EXPORTER_OTLP_PROTOCOL,\
         \n  OTEL_TRACES_SAMPLER[_ARG], OTEL_SERVICE_NAME, RUST_LOG (log level), ZS_LOG_FORMAT (json|console),\
         \n  AINS_TRACE_FILTER (spans exported, default {DEFAULT_TRACE_FILTER}),\
         \n  ZS_ADMIN_TOKEN (16 to 4096 visible ASCII characters: the admin endpoints need\
         \n  `Authorization: Bearer <token>`)"
    );
    std::process::exit(2)
}

fn number(flag: &str, value: Option<String>) -> u64 {
    let value = value.unwrap_or_else(|| usage());
    match value.parse::<u64>() {
        Ok(n) if n > 0 => n,
        _ => {
            eprintln!("{flag} needs a positive integer, not `{value}`");
            usage()
        }
    }
}

fn parse_args() -> Config {
    let mut listen = std::env::var("AINS_LISTEN").unwrap_or_else(|_| DEFAULT_LISTEN.to_owned());
    let mut admin = std::env::var("AINS_ADMIN_ADDR").unwrap_or_else(|_| DEFAULT_ADMIN.to_owned());
    let mut config = Config {
        listen: ([127, 0, 0, 1], 8000).into(),
        admin: ([127, 0, 0, 1], 8001).into(),
        db: ":memory:".to_owned(),
        tick: Duration::from_secs(1),
        agent_ttl: Duration::from_secs(30),
        task_timeout: Duration::from_secs(300),
        check_catalog: false,
        debug: std::env::var("AINS_DEBUG").is_ok_and(|v| v == "1" || v == "true"),
        workload: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().unwrap_or_else(|| usage()),
            "--admin-addr" => admin = args.next().unwrap_or_else(|| usage()),
            "--db" => config.db = args.next().unwrap_or_else(|| usage()),
            "--tick-ms" => config.tick = Duration::from_millis(number(&arg, args.next())),
            "--agent-ttl-secs" => config.agent_ttl = Duration::from_secs(number(&arg, args.next())),
            "--task-timeout-secs" => {
                config.task_timeout = Duration::from_secs(number(&arg, args.next()))
            }
            "--check-catalog" => config.check_catalog = true,
            "--debug" => config.debug = true,
            "--workload" => config.workload = true,
            "-h" | "--help" => usage(),
            other => {
                eprintln!("unknown argument `{other}`");
                usage()
            }
        }
    }
    config.listen = listen.parse().unwrap_or_else(|e| {
        eprintln!("invalid --listen address `{listen}`: {e}");
        usage()
    });
    config.admin = admin.parse().unwrap_or_else(|e| {
        eprintln!("invalid --admin-addr address `{admin}`: {e}");
        usage()
    });
    if config.debug && !config.admin.ip().is_loopback() && !admin_token_set() {
        eprintln!(
            "--debug with the non-loopback admin address {} needs ZS_ADMIN_TOKEN: the \
             profiling endpoints would be open to anyone who reaches it",
            config.admin
        );
        std::process::exit(2);
    }
    config
}

/// Whether the admin token is configured (zs-observe reads `ZS_ADMIN_TOKEN` itself and
/// refuses to start with a token that is too short).
fn admin_token_set() -> bool {
    std::env::var("ZS_ADMIN_TOKEN").is_ok_and(|t| !t.trim().is_empty())
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("{what}: {e}");
    std::process::exit(1)
}

#[tokio::main]
async fn main() {
    let config = parse_args();
    // The same catalog the compiler checked the call sites against (Cargo.toml metadata).
    let catalog = match zs_observe::include_catalog!("../../../monitoring/catalog/ains.toml") {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            std::process::exit(1);
        }
    };
    let mut builder = Telemetry::builder();
    if config.debug {
        // The profiling endpoints live on their own listener, never the API's.
        builder = builder.with_admin_listener(config.admin);
    }
    let telemetry = builder
        .with_catalog(catalog)
        .with_service_name("ains-api")
        .with_namespace("ains")
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_trace_filter(
            std::env::var("AINS_TRACE_FILTER").unwrap_or_else(|_| DEFAULT_TRACE_FILTER.to_owned()),
        )
        .install()
        .unwrap_or_else(|e| fail("cannot start telemetry", e));

    let db = Db::open(&config.db).unwrap_or_else(|e| fail("cannot open the database", e));
    let cache = Cache::new(1024, Duration::from_secs(5));
    let app = Arc::new(App::new(db, cache, config.agent_ttl, config.task_timeout));
    app.refresh_gauges();
    let health =
        health_registry(app.clone()).unwrap_or_else(|e| fail("cannot build the health checks", e));

    if config.debug {
        telemetry
            .mount_admin_routes(debug::router(app.clone()).layer(RequestTraceLayer::new()))
            .unwrap_or_else(|e| fail("cannot serve the profiling endpoints", e));
    }
    let router = api::router(app.clone())
        .merge(health.router())
        .layer(telemetry.http_metrics_layer())
        .merge(telemetry.metrics_router())
        .layer(RequestTraceLayer::new());

    if config.check_catalog {
        // Call sites register at link time; the exposition adds what the runtime, the
        // HTTP layer, the health checks and the domain's plain metrics record once the
        // API has been exercised.
        if let Err(e) = self_probe(router.clone(), app.clone()).await {
            fail("self probe failed", e);
        }
        let report = zs_observe::coverage::report(
            telemetry.catalog().expect("installed with a catalog"),
            &telemetry.render(),
        );
        println!("{report}");
        std::process::exit(i32::from(!report.is_empty()));
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .unwrap_or_else(|e| fail(&format!("cannot listen on {}", config.listen), e));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| fail("no local address", e));
    eprintln!("LISTENING {addr}");
    tracing::info!(%addr, db = %config.db, "ains-api listening; metrics at /metrics");
    if let Some(admin) = telemetry.admin_addr() {
        eprintln!("ADMIN {admin}");
        tracing::info!(
            %admin,
            guarded = admin_token_set(),
            "profiling endpoints at /debug/profile/{{cpu,memory}} on the admin listener"
        );
    }

    let scheduler = tokio::spawn(scheduler(app, config.tick));
    let workload = config
        .workload
        .then(|| tokio::spawn(workload::run(addr, Duration::from_millis(50))));
    let shutdown = async move {
        zs_observe_health::shutdown_signal(health, Duration::from_secs(2)).await;
        tracing::info!("shutting down");
    };
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await;
    scheduler.abort();
    if let Some(w) = workload {
        w.abort();
    }
    if let Err(e) = served {
        fail("server error", e);
    }
}

/// Runs the scheduler's tick every `period` until the task is aborted at shutdown.
async fn scheduler(app: Arc<App>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let app = app.clone();
        match tokio::task::spawn_blocking(move || app.tick()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "scheduler tick failed"),
            Err(e) => tracing::error!(error = %e, "scheduler tick panicked"),
        }
    }
}

/// The health checks: the process answers (liveness), the database answers `SELECT 1`
/// and the cache is usable (readiness), the schema is in place (startup).
fn health_registry(app: Arc<App>) -> Result<HealthRegistry, zs_observe_health::BuildError> {
    let (db, cache, startup) = (app.clone(), app.clone(), app);
    HealthRegistry::builder()
        .with_namespace("ains")
        .with_service_id("ains-api")
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_liveness_check("process:alive", check_fn(|| async { CheckResult::pass() }))
        .with_check(
            CheckSpec::readiness(
                "sqlite:select",
                check_fn(move || {
                    let app = db.clone();
                    async move {
                        let started = std::time::Instant::now();
                        match app.db.ping() {
                            Ok(()) => CheckResult::pass()
                                .with_observed(started.elapsed().as_secs_f64() * 1000.0, "ms"),
                            Err(e) => CheckResult::fail(e.to_string()),
                        }
                    }
                }),
            )
            .with_component_type("datastore"),
        )
        .with_check(
            CheckSpec::readiness(
                "cache:entries",
                check_fn(move || {
                    let app = cache.clone();
                    async move {
                        match app.cache.check() {
                            Ok(n) => CheckResult::pass().with_observed(n as u64, "entries"),
                            Err(e) => CheckResult::fail(e),
                        }
                    }
                }),
            )
            .with_component_type("component"),
        )
        .with_startup_check(
            "sqlite:schema",
            check_fn(move || {
                let app = startup.clone();
                async move {
                    match app.queue_depth() {
                        Ok(depth) => CheckResult::pass().with_observed(depth as u64, "tasks"),
                        Err(e) => CheckResult::fail(e.to_string()),
                    }
                }
            }),
        )
        .build()
}

/// Serves `router` on a free loopback port and drives every part of the API once (an
/// agent, tasks through every status, a chain, a due scheduled task, a bad request),
/// so that every catalog metric has a series.
async fn self_probe(router: axum::Router, app: Arc<App>) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let steps: [(&str, &str, Option<&str>, u16); 16] = [
        ("GET", "/health/startup", None, 200),
        ("GET", "/health/ready", None, 200),
        ("GET", "/health/live", None, 200),
        (
            "POST",
            "/agents",
            Some(r#"{"name":"probe","trust_score":0.8}"#),
            201,
        ),
        (
            "POST",
            "/agents/1/heartbeat",
            Some(r#"{"trust_score":0.9}"#),
            200,
        ),
        ("GET", "/agents/1", None, 200),
        (
            "POST",
            "/tasks",
            Some(r#"{"title":"probe","priority":"high"}"#),
            201,
        ),
        ("GET", "/tasks/1", None, 200),
        ("GET", "/tasks/1", None, 200),
        (
            "PUT",
            "/tasks/1/status",
            Some(r#"{"status":"running"}"#),
            200,
        ),
        (
            "PUT",
            "/tasks/1/status",
            Some(r#"{"status":"completed"}"#),
            200,
        ),
        (
            "POST",
            "/chains",
            Some(r#"{"name":"probe","steps":["a"]}"#),
            201,
        ),
        (
            "PUT",
            "/tasks/2/status",
            Some(r#"{"status":"running"}"#),
            200,
        ),
        (
            "PUT",
            "/tasks/2/status",
            Some(r#"{"status":"completed"}"#),
            200,
        ),
        (
            "POST",
            "/scheduled-tasks",
            Some(r#"{"title":"probe","interval_seconds":1}"#),
            201,
        ),
        ("POST", "/tasks", Some("{not json"), 400),
    ];
    for (method, path, body, expected) in steps {
        let (status, text) = workload::call(addr, method, path, body).await?;
        if status != expected {
            server.abort();
            return Err(format!(
                "{method} {path}: {status} (expected {expected}): {text}"
            ));
        }
    }
    // Make the schedule due and run the scheduler once.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let ticked = tokio::task::spawn_blocking(move || app.tick()).await;
    server.abort();
    match ticked {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("scheduler tick: {e}")),
        Err(e) => Err(format!("scheduler tick: {e}")),
    }
}
