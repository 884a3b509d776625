//! Exposure of the admin endpoints (issue 9, item 9), over real HTTP on 127.0.0.1: the
//! log-level (`/log-level`) and profile (`/debug/profile`) endpoints are off by default
//! (404 on the application listener and on the admin listener); when on, they are served
//! on the admin listener only, behind the admin token when one is set (401 with a reason
//! without it or with another one; the token from `ZS_ADMIN_TOKEN` wins over the
//! builder's); `/metrics` can be moved to the admin listener; unsafe or inconsistent
//! configurations are refused by `install` with a clear error. The application's own
//! admin routes (`Telemetry::mount_admin_routes`) are served on the admin listener only,
//! behind the token; `Telemetry::guard_admin` puts a router of the application's behind
//! it, and refuses when there is no token.
//!
//! The runtime is installed once per process, so each configuration runs in a child
//! process: the test binary itself, running the ignored test `scenario` with
//! `ZS_EXPOSURE_SCENARIO` naming the configuration.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::routing::get;
use zs_observe::Telemetry;

/// The token the scenarios configure in code.
const CODE_TOKEN: &str = "code-token-0123456789abcdef";
/// The token the `env_token` scenario sets in `ZS_ADMIN_TOKEN`.
const ENV_TOKEN: &str = "env-token-fedcba9876543210";
/// How long one child scenario may run.
const CHILD_LIMIT: Duration = Duration::from_secs(60);

#[zs_observe::instrumented(histogram = "exposure_job_duration_seconds")]
fn job(fail: bool) -> Result<u32, String> {
    std::thread::sleep(Duration::from_millis(2));
    if fail {
        Err("failed".into())
    } else {
        Ok(1)
    }
}

/// Runs the scenario `name` in a child process and fails with its output unless it passed.
fn run_child(name: &str, env_token: Option<&str>) {
    let exe = std::env::current_exe().expect("the test binary");
    let mut command = Command::new(exe);
    command
        .args([
            "scenario",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ZS_EXPOSURE_SCENARIO", name)
        .env_remove("ZS_ADMIN_TOKEN")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_TRACES_EXPORTER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(token) = env_token {
        command.env("ZS_ADMIN_TOKEN", token);
    }
    let mut child = command.spawn().expect("spawn the child scenario");
    let deadline = Instant::now() + CHILD_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("scenario {name} did not finish in {CHILD_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().expect("child output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        status.success() && stdout.contains("1 passed"),
        "scenario {name} failed ({status}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
}

#[test]
fn admin_endpoints_are_off_by_default() {
    run_child("defaults", None);
}

#[test]
fn when_on_they_are_only_on_the_admin_listener_behind_the_token_and_metrics_can_move() {
    run_child("on_with_token", None);
}

#[test]
fn the_token_from_the_environment_wins() {
    run_child("env_token", Some(ENV_TOKEN));
}

#[test]
fn application_admin_routes_are_mounted_on_the_admin_listener_behind_the_token() {
    run_child("mounted", None);
}

#[test]
fn application_admin_routes_without_a_token_only_on_the_admin_listener() {
    run_child("mounted_without_token", None);
}

#[test]
fn application_admin_routes_without_an_admin_listener_are_refused() {
    run_child("mount_without_listener", None);
}

#[test]
fn unsafe_or_inconsistent_exposure_is_refused() {
    let admin: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let refused = |builder: zs_observe::TelemetryBuilder| {
        let err = builder.install().expect_err("the configuration is refused");
        assert!(matches!(err, zs_observe::InitError::Exposure(_)), "{err:?}");
        err.to_string()
    };
    let short = "short-token";
    let message = refused(Telemetry::builder().with_admin_token(short));
    assert!(message.contains("needs 16 to 4096"), "{message}");
    assert!(
        !message.contains(short),
        "the token is not shown: {message}"
    );
    let spaced = "a token with spaces in it";
    let message = refused(Telemetry::builder().with_admin_token(spaced));
    assert!(
        message.contains("not visible ASCII at position 1"),
        "{message}"
    );
    assert!(
        !message.contains(spaced),
        "the token is not shown: {message}"
    );
    let message = refused(Telemetry::builder().with_metrics_on_admin_only(true));
    assert!(message.contains("needs with_admin_listener"), "{message}");
    let message = refused(
        Telemetry::builder()
            .with_subscriber(false)
            .with_log_level_endpoint(true)
            .with_admin_listener(admin),
    );
    assert!(message.contains("needs the subscriber"), "{message}");
    // The builder's Debug output does not show the token either.
    let debug = format!("{:?}", Telemetry::builder().with_admin_token(CODE_TOKEN));
    assert!(!debug.contains(CODE_TOKEN), "{debug}");
}

/// One configuration, in a child process (see `run_child`).
#[test]
#[ignore = "run in a child process by the other tests of this file"]
fn scenario() {
    let name = std::env::var("ZS_EXPOSURE_SCENARIO").expect("ZS_EXPOSURE_SCENARIO");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        match name.as_str() {
            "defaults" => defaults().await,
            "on_with_token" => on_with_token().await,
            "env_token" => env_token().await,
            "mounted" => mounted().await,
            "mounted_without_token" => mounted_without_token().await,
            "mount_without_listener" => mount_without_listener().await,
            other => panic!("no scenario {other}"),
        }
    });
}

/// Serves the application: a route of its own plus `telemetry.metrics_router()`, as the
/// examples do.
async fn serve_app(telemetry: &Telemetry) -> SocketAddr {
    let app = axum::Router::new()
        .route("/", get(|| async { "the application" }))
        .merge(telemetry.metrics_router());
    zs_observe_tests::serve(app).await
}

struct Reply {
    code: u16,
    www_authenticate: Option<String>,
    body: String,
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    addr: SocketAddr,
    path: &str,
    authorization: Option<&str>,
    body: &str,
) -> Reply {
    let mut request = http
        .request(method.clone(), format!("http://{addr}{path}"))
        .body(body.to_owned());
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let code = response.status().as_u16();
    let www_authenticate = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.text().await.unwrap();
    Reply {
        code,
        www_authenticate,
        body,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn defaults() {
    let telemetry = Telemetry::builder()
        .with_service_name("exposure-defaults")
        .with_admin_listener("127.0.0.1:0".parse().unwrap())
        .install()
        .expect("install");
    let admin = telemetry.admin_addr().expect("admin listener");
    let app = serve_app(&telemetry).await;
    let http = client();
    for addr in [app, admin] {
        for (method, path) in [
            (reqwest::Method::GET, "/log-level"),
            (reqwest::Method::PUT, "/log-level"),
            (reqwest::Method::GET, "/debug/profile"),
        ] {
            let reply = call(&http, method.clone(), addr, path, None, "debug").await;
            assert_eq!(reply.code, 404, "{method} {path} on {addr}: {}", reply.body);
            // Not even a token opens them: they do not exist.
            let reply = call(&http, method.clone(), addr, path, Some("Bearer x"), "").await;
            assert_eq!(reply.code, 404, "{method} {path} on {addr}: {}", reply.body);
        }
        // `/metrics` is on both by default.
        let reply = call(&http, reqwest::Method::GET, addr, "/metrics", None, "").await;
        assert_eq!(reply.code, 200, "/metrics on {addr}");
        assert!(reply.body.contains("exposure_defaults_build_info"));
    }
    assert_eq!(telemetry.log_level().as_deref(), Some("info"), "unchanged");
}

async fn on_with_token() {
    let telemetry = Telemetry::builder()
        .with_service_name("exposure-on")
        .with_log_level("info")
        .with_log_level_endpoint(true)
        .with_profile_endpoint(true)
        .with_admin_token(CODE_TOKEN)
        .with_metrics_on_admin_only(true)
        .with_admin_listener("127.0.0.1:0".parse().unwrap())
        .install()
        .expect("install");
    let admin = telemetry.admin_addr().expect("admin listener");
    let app = serve_app(&telemetry).await;
    let http = client();
    let bearer = format!("Bearer {CODE_TOKEN}");
    let get = reqwest::Method::GET;
    let put = reqwest::Method::PUT;

    // The application listener: none of them, whatever the credentials; `/metrics` moved.
    for (method, path) in [
        (&get, "/log-level"),
        (&put, "/log-level"),
        (&get, "/debug/profile"),
        (&get, "/metrics"),
    ] {
        for auth in [None, Some(bearer.as_str())] {
            let reply = call(&http, method.clone(), app, path, auth, "debug").await;
            assert_eq!(
                reply.code, 404,
                "{method} {path} on the application listener"
            );
        }
    }
    let reply = call(&http, get.clone(), app, "/", None, "").await;
    assert_eq!((reply.code, reply.body.as_str()), (200, "the application"));

    // The admin listener: `/metrics` without credentials (scrapers need none).
    let reply = call(&http, get.clone(), admin, "/metrics", None, "").await;
    assert_eq!(reply.code, 200);
    assert!(
        reply.body.contains("exposure_on_build_info"),
        "{}",
        reply.body
    );

    // Without the token, or with another one: 401 with a reason and a challenge.
    let wrong_token = format!("Bearer {}", CODE_TOKEN.replace('0', "1"));
    let shorter = format!("Bearer {}", &CODE_TOKEN[..CODE_TOKEN.len() - 1]);
    let longer = format!("Bearer {CODE_TOKEN}0");
    let cases: [(Option<&str>, &str, &str); 6] = [
        (
            None,
            "missing admin token",
            r#"Bearer realm="zs-observe admin""#,
        ),
        (
            Some(CODE_TOKEN),
            "malformed authorization",
            r#"Bearer realm="zs-observe admin""#,
        ),
        (
            Some("Basic YWRtaW46YWRtaW4="),
            "malformed authorization",
            r#"Bearer realm="zs-observe admin""#,
        ),
        (
            Some(&wrong_token),
            "invalid admin token",
            r#"Bearer realm="zs-observe admin", error="invalid_token""#,
        ),
        (
            Some(&shorter),
            "invalid admin token",
            r#"Bearer realm="zs-observe admin", error="invalid_token""#,
        ),
        (
            Some(&longer),
            "invalid admin token",
            r#"Bearer realm="zs-observe admin", error="invalid_token""#,
        ),
    ];
    for (method, path) in [
        (&get, "/log-level"),
        (&put, "/log-level"),
        (&get, "/debug/profile"),
    ] {
        for (auth, reason, challenge) in cases {
            let reply = call(&http, method.clone(), admin, path, auth, "trace").await;
            assert_eq!(
                reply.code, 401,
                "{method} {path} with {auth:?}: {}",
                reply.body
            );
            assert!(
                reply.body.starts_with(reason),
                "{method} {path} with {auth:?}: {}",
                reply.body
            );
            assert_eq!(reply.www_authenticate.as_deref(), Some(challenge));
            assert!(!reply.body.contains(CODE_TOKEN), "the token is not echoed");
        }
    }
    // None of the refused PUTs changed the level.
    assert_eq!(telemetry.log_level().as_deref(), Some("info"));

    // With the token (the scheme is case-insensitive).
    let reply = call(&http, get.clone(), admin, "/log-level", Some(&bearer), "").await;
    assert_eq!((reply.code, reply.body.trim()), (200, "info"));
    let lower = format!("bearer {CODE_TOKEN}");
    let reply = call(
        &http,
        put.clone(),
        admin,
        "/log-level",
        Some(&lower),
        "warn,exposure=debug",
    )
    .await;
    assert_eq!(reply.code, 200, "{}", reply.body);
    assert_eq!(
        telemetry.log_level().as_deref(),
        Some("warn,exposure=debug")
    );
    // Invalid directives still get the endpoint's own 400 once authorised.
    let reply = call(
        &http,
        put.clone(),
        admin,
        "/log-level",
        Some(&bearer),
        "info,exposure=loudest",
    )
    .await;
    assert_eq!(reply.code, 400, "{}", reply.body);
    assert_eq!(
        telemetry.log_level().as_deref(),
        Some("warn,exposure=debug")
    );

    // The profile: the call site's real counts and durations, and the process's figures.
    let (oks, errors) = (7u64, 3u64);
    for i in 0..oks + errors {
        let _ = job(i < errors);
    }
    let reply = call(
        &http,
        get.clone(),
        admin,
        "/debug/profile",
        Some(&bearer),
        "",
    )
    .await;
    assert_eq!(reply.code, 200, "{}", reply.body);
    let profile: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON profile");
    assert!(
        profile["kind"]
            .as_str()
            .unwrap_or_default()
            .contains("not a sampling CPU profile"),
        "{profile}"
    );
    let site = profile["call_sites"]
        .as_array()
        .expect("call sites")
        .iter()
        .find(|s| s["function"] == "exposure::job")
        .unwrap_or_else(|| panic!("exposure::job in {profile}"))
        .clone();
    assert_eq!(
        site["metrics"],
        serde_json::json!(["exposure_job_duration_seconds"])
    );
    assert_eq!(site["calls"], oks + errors, "{site}");
    assert_eq!(site["calls_by_outcome"]["ok"], oks, "{site}");
    assert_eq!(site["calls_by_outcome"]["error"], errors, "{site}");
    assert_eq!(site["calls_by_outcome"]["panic"], 0, "{site}");
    let total = site["total_seconds"].as_f64().expect("total_seconds");
    let mean = site["mean_seconds"].as_f64().expect("mean_seconds");
    // Each call sleeps 2 ms; the sum is the exposition's.
    assert!(total >= 0.002 * (oks + errors) as f64, "{site}");
    assert!(
        (mean * (oks + errors) as f64 - total).abs() < 1e-9,
        "{site}"
    );
    let exposition = telemetry.render();
    let sum: f64 = zs_observe_tests::parse_exposition(&exposition)
        .iter()
        .filter(|s| s.name == "exposure_job_duration_seconds_sum")
        .map(|s| s.value)
        .sum();
    assert!(
        (sum - total).abs() < 1e-6,
        "profile {total} vs exposition {sum}"
    );
    let process = &profile["process"];
    assert!(
        process["resident_bytes"].as_u64().unwrap_or(0) > 1 << 20,
        "{process}"
    );
    assert!(process["threads"].as_u64().unwrap_or(0) >= 2, "{process}");
    let cpu = process["cpu_user_seconds"]
        .as_f64()
        .expect("cpu_user_seconds")
        + process["cpu_system_seconds"]
            .as_f64()
            .expect("cpu_system_seconds");
    assert!(cpu >= 0.0, "{process}");
}

async fn env_token() {
    let telemetry = Telemetry::builder()
        .with_service_name("exposure-env")
        .with_profile_endpoint(true)
        .with_admin_token(CODE_TOKEN)
        .with_admin_listener("127.0.0.1:0".parse().unwrap())
        .install()
        .expect("install");
    let admin = telemetry.admin_addr().expect("admin listener");
    let http = client();
    let get = reqwest::Method::GET;
    let code = format!("Bearer {CODE_TOKEN}");
    let reply = call(&http, get.clone(), admin, "/debug/profile", Some(&code), "").await;
    assert_eq!(
        reply.code, 401,
        "the code's token is replaced: {}",
        reply.body
    );
    let env = format!("Bearer {ENV_TOKEN}");
    let reply = call(&http, get.clone(), admin, "/debug/profile", Some(&env), "").await;
    assert_eq!(reply.code, 200, "{}", reply.body);
    // `/metrics` is on both listeners unless moved.
    let app = serve_app(&telemetry).await;
    let reply = call(&http, get, app, "/metrics", None, "").await;
    assert_eq!(reply.code, 200);
}

/// The application's admin routes: a stateful counter (each call is counted, so a
/// refused request provably never reached the handler), and a `/metrics` of its own that
/// the built-in one must shadow.
fn ops_routes(hits: std::sync::Arc<std::sync::atomic::AtomicU64>) -> axum::Router {
    use std::sync::atomic::Ordering;
    axum::Router::new()
        .route(
            "/debug/ops",
            get(
                |axum::extract::State(hits): axum::extract::State<
                    std::sync::Arc<std::sync::atomic::AtomicU64>,
                >| async move {
                    format!("ops call {}", hits.fetch_add(1, Ordering::SeqCst) + 1)
                },
            ),
        )
        .route(
            "/metrics",
            get(|| async { "the application's own /metrics" }),
        )
        .with_state(hits)
}

async fn mounted() {
    use std::sync::atomic::Ordering;
    // A token and an admin listener but no built-in control endpoint: `install` used to
    // panic here (axum refuses a route layer on a router without routes).
    let telemetry = Telemetry::builder()
        .with_service_name("exposure-mounted")
        .with_admin_token(CODE_TOKEN)
        .with_admin_listener("127.0.0.1:0".parse().unwrap())
        .install()
        .expect("install with a token and no control endpoint");
    let admin = telemetry.admin_addr().expect("admin listener");
    let app = serve_app(&telemetry).await;
    let http = client();
    let get = reqwest::Method::GET;
    let bearer = format!("Bearer {CODE_TOKEN}");

    // Nothing mounted yet: a plain 404, with or without the token.
    for auth in [None, Some(bearer.as_str())] {
        let reply = call(&http, get.clone(), admin, "/debug/ops", auth, "").await;
        assert_eq!(reply.code, 404, "{auth:?}: {}", reply.body);
    }

    let hits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    telemetry
        .mount_admin_routes(ops_routes(hits.clone()))
        .expect("mounted");
    let again = telemetry
        .mount_admin_routes(ops_routes(hits.clone()))
        .expect_err("a second mount is refused");
    assert!(
        matches!(again, zs_observe::InitError::Exposure(_))
            && again.to_string().contains("already mounted"),
        "{again}"
    );

    // The application listener never has them.
    for auth in [None, Some(bearer.as_str())] {
        let reply = call(&http, get.clone(), app, "/debug/ops", auth, "").await;
        assert_eq!(reply.code, 404, "application listener, {auth:?}");
    }
    // The admin listener: 401 with a reason without the token or with another one.
    let wrong = format!("Bearer {}", CODE_TOKEN.replace('0', "1"));
    for (auth, reason) in [
        (None, "missing admin token"),
        (Some(wrong.as_str()), "invalid admin token"),
        (Some("Basic YWRtaW46YWRtaW4="), "malformed authorization"),
    ] {
        for path in ["/debug/ops", "/debug/unknown"] {
            let reply = call(&http, get.clone(), admin, path, auth, "").await;
            assert_eq!(reply.code, 401, "{path} {auth:?}: {}", reply.body);
            assert!(
                reply.body.starts_with(reason),
                "{path} {auth:?}: {}",
                reply.body
            );
            assert!(reply.www_authenticate.is_some(), "{path} {auth:?}");
            assert!(!reply.body.contains(CODE_TOKEN));
        }
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "no refused request reached the handler"
    );
    // With the token: the handler, with its state.
    let reply = call(&http, get.clone(), admin, "/debug/ops", Some(&bearer), "").await;
    assert_eq!((reply.code, reply.body.as_str()), (200, "ops call 1"));
    let reply = call(
        &http,
        get.clone(),
        admin,
        "/debug/unknown",
        Some(&bearer),
        "",
    )
    .await;
    assert_eq!(reply.code, 404, "an unknown path behind the token");
    // The built-in `/metrics` wins over the mounted one, and needs no token.
    let reply = call(&http, get.clone(), admin, "/metrics", None, "").await;
    assert_eq!(reply.code, 200);
    assert!(
        reply.body.contains("exposure_mounted_build_info"),
        "{}",
        reply.body
    );
    // `admin_router()` carries the mounted routes too, behind the same token.
    let router = telemetry.admin_router();
    let own = zs_observe_tests::serve(router).await;
    let reply = call(&http, get.clone(), own, "/debug/ops", None, "").await;
    assert_eq!(reply.code, 401);
    let reply = call(&http, get.clone(), own, "/debug/ops", Some(&bearer), "").await;
    assert_eq!((reply.code, reply.body.as_str()), (200, "ops call 2"));

    // guard_admin: the application's routes behind the token on its own listener; a
    // fallback of the guarded router is guarded too; the rest of the application is not.
    let guarded = telemetry
        .guard_admin(
            axum::Router::new()
                .route("/ops/flush", axum::routing::get(|| async { "flushed" }))
                .fallback(|| async { "guarded fallback" }),
        )
        .expect("a token is configured");
    let routes = axum::Router::new()
        .route("/", axum::routing::get(|| async { "open" }))
        .merge(guarded);
    let guarded_app = zs_observe_tests::serve(routes).await;
    let reply = call(&http, get.clone(), guarded_app, "/", None, "").await;
    assert_eq!((reply.code, reply.body.as_str()), (200, "open"));
    for path in ["/ops/flush", "/ops/elsewhere"] {
        let reply = call(&http, get.clone(), guarded_app, path, None, "").await;
        assert_eq!(reply.code, 401, "{path}: {}", reply.body);
        let reply = call(&http, get.clone(), guarded_app, path, Some(&wrong), "").await;
        assert_eq!(reply.code, 401, "{path}: {}", reply.body);
    }
    let reply = call(
        &http,
        get.clone(),
        guarded_app,
        "/ops/flush",
        Some(&bearer),
        "",
    )
    .await;
    assert_eq!((reply.code, reply.body.as_str()), (200, "flushed"));
    let reply = call(&http, get, guarded_app, "/ops/elsewhere", Some(&bearer), "").await;
    assert_eq!((reply.code, reply.body.as_str()), (200, "guarded fallback"));
}

async fn mounted_without_token() {
    let telemetry = Telemetry::builder()
        .with_service_name("exposure-mounted-open")
        .with_admin_listener("127.0.0.1:0".parse().unwrap())
        .install()
        .expect("install");
    let admin = telemetry.admin_addr().expect("admin listener");
    let app = serve_app(&telemetry).await;
    let http = client();
    let get = reqwest::Method::GET;
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    telemetry
        .mount_admin_routes(ops_routes(hits))
        .expect("mounted");
    // No token: the admin listener is the protection; the application listener has none.
    let reply = call(&http, get.clone(), admin, "/debug/ops", None, "").await;
    assert_eq!((reply.code, reply.body.as_str()), (200, "ops call 1"));
    let reply = call(&http, get.clone(), admin, "/debug/unknown", None, "").await;
    assert_eq!(reply.code, 404);
    let reply = call(&http, get, app, "/debug/ops", None, "").await;
    assert_eq!(reply.code, 404);
    // guard_admin without a token would let everybody in: refused.
    let err = telemetry
        .guard_admin(axum::Router::new().route("/ops", axum::routing::get(|| async { "x" })))
        .expect_err("no token");
    assert!(
        matches!(err, zs_observe::InitError::Exposure(_))
            && err.to_string().contains("needs an admin token"),
        "{err}"
    );
}

async fn mount_without_listener() {
    let telemetry = Telemetry::builder()
        .with_service_name("exposure-mount-nowhere")
        .with_admin_token(CODE_TOKEN)
        .install()
        .expect("install");
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let err = telemetry
        .mount_admin_routes(ops_routes(hits))
        .expect_err("no admin listener");
    assert!(
        matches!(err, zs_observe::InitError::Exposure(_))
            && err.to_string().contains("needs with_admin_listener"),
        "{err}"
    );
    // The application's router never got them.
    let app = serve_app(&telemetry).await;
    let reply = call(&client(), reqwest::Method::GET, app, "/debug/ops", None, "").await;
    assert_eq!(reply.code, 404);
}
