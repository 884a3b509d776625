//! The AINS API end to end: the real binary on a loopback port, driven with a real HTTP
//! client (good and bad requests), then its `/metrics` checked against the catalog
//! (monitoring/catalog/ains.toml) and by `promtool check metrics`; its spans checked in a
//! real OTLP receiver and its JSON logs on stdout.

mod common;

use std::process::Stdio;

use common::{bad, send, start, wait_for};
use reqwest::StatusCode;
use serde_json::{json, Value};

const CATALOG: &str = include_str!("../../../monitoring/catalog/ains.toml");

#[test]
fn catalog_coverage_is_complete() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ains-api"))
        .arg("--check-catalog")
        .env_remove("OTEL_SERVICE_NAME")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("ains-api runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = stdout.lines().last().unwrap_or_default();
    assert!(
        out.status.success(),
        "coverage report:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report.trim(), "catalog and code agree");
}

fn catalog_metrics() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut name = None;
    for line in CATALOG.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("name = ") {
            name = Some(v.trim_matches('"').to_owned());
        } else if let Some(v) = line.strip_prefix("type = ") {
            if let Some(n) = name.take() {
                out.push((n, v.trim_matches('"').to_owned()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_end_to_end_with_metrics() {
    let server = start(&[]).await;
    let base = &server.base;
    let c = reqwest::Client::new();

    // Agents: the task router picks the most trusted active one.
    let low = send(
        &c,
        c.post(format!("{base}/agents"))
            .json(&json!({"name": "low", "trust_score": 0.3})),
        StatusCode::CREATED,
    )
    .await;
    let high = send(
        &c,
        c.post(format!("{base}/agents"))
            .json(&json!({"name": "high", "trust_score": 0.9})),
        StatusCode::CREATED,
    )
    .await;
    let task = send(
        &c,
        c.post(format!("{base}/tasks"))
            .json(&json!({"title": "index", "priority": "high"})),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(task["agent_id"], high["id"], "{task}");
    assert_eq!(task["status"], "pending");
    let low_id = low["id"].as_i64().expect("agent id");
    let beat = send(
        &c,
        c.post(format!("{base}/agents/{low_id}/heartbeat"))
            .json(&json!({"trust_score": 0.95})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(beat["trust_score"], 0.95);
    let agent = send(&c, c.get(format!("{base}/agents/{low_id}")), StatusCode::OK).await;
    assert_eq!(
        agent["trust_score"], 0.95,
        "the heartbeat invalidated the cache"
    );
    let agents = send(&c, c.get(format!("{base}/agents")), StatusCode::OK).await;
    assert_eq!(agents[0]["id"], low["id"], "most trusted first: {agents}");
    let next = send(
        &c,
        c.post(format!("{base}/tasks"))
            .json(&json!({"title": "next"})),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(next["agent_id"], low["id"], "the new most trusted agent");

    // A task's life: cached GETs, status changes, list, delete.
    let id = task["id"].as_i64().expect("task id");
    for _ in 0..2 {
        let got = send(&c, c.get(format!("{base}/tasks/{id}")), StatusCode::OK).await;
        assert_eq!(got["title"], "index");
    }
    send(
        &c,
        c.put(format!("{base}/tasks/{id}/status"))
            .json(&json!({"status": "running"})),
        StatusCode::OK,
    )
    .await;
    let done = send(
        &c,
        c.put(format!("{base}/tasks/{id}/status"))
            .json(&json!({"status": "completed"})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(done["status"], "completed");
    let got = send(&c, c.get(format!("{base}/tasks/{id}")), StatusCode::OK).await;
    assert_eq!(
        got["status"], "completed",
        "the update invalidated the cache"
    );
    bad(
        &c,
        c.put(format!("{base}/tasks/{id}/status"))
            .json(&json!({"status": "running"})),
        StatusCode::CONFLICT,
    )
    .await;
    let listed = send(
        &c,
        c.get(format!("{base}/tasks?status=completed")),
        StatusCode::OK,
    )
    .await;
    assert!(
        listed
            .as_array()
            .expect("a list")
            .iter()
            .any(|t| t["id"] == id),
        "{listed}"
    );

    // A retry: failed back to pending.
    let nid = next["id"].as_i64().expect("task id");
    send(
        &c,
        c.put(format!("{base}/tasks/{nid}/status"))
            .json(&json!({"status": "failed"})),
        StatusCode::OK,
    )
    .await;
    let retried = send(
        &c,
        c.put(format!("{base}/tasks/{nid}/status"))
            .json(&json!({"status": "pending"})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(retried["retries"], 1);
    send(
        &c,
        c.delete(format!("{base}/tasks/{nid}")),
        StatusCode::NO_CONTENT,
    )
    .await;
    bad(
        &c,
        c.get(format!("{base}/tasks/{nid}")),
        StatusCode::NOT_FOUND,
    )
    .await;

    // A chain of two steps: the second task exists once the first completed.
    let chain = send(
        &c,
        c.post(format!("{base}/chains"))
            .json(&json!({"name": "etl", "steps": ["extract", "load"]})),
        StatusCode::CREATED,
    )
    .await;
    let chain_id = chain["id"].as_i64().expect("chain id");
    for step in 0..2 {
        let chain = send(
            &c,
            c.get(format!("{base}/chains/{chain_id}")),
            StatusCode::OK,
        )
        .await;
        let tid = chain["tasks"][step]["id"]
            .as_i64()
            .expect("the step's task");
        send(
            &c,
            c.put(format!("{base}/tasks/{tid}/status"))
                .json(&json!({"status": "running"})),
            StatusCode::OK,
        )
        .await;
        send(
            &c,
            c.put(format!("{base}/tasks/{tid}/status"))
                .json(&json!({"status": "completed"})),
            StatusCode::OK,
        )
        .await;
    }
    let chain = send(
        &c,
        c.get(format!("{base}/chains/{chain_id}")),
        StatusCode::OK,
    )
    .await;
    assert_eq!(chain["status"], "completed", "{chain}");
    assert_eq!(chain["tasks"].as_array().map(Vec::len), Some(2));

    // A scheduled task runs (creating a task) within about a second.
    send(
        &c,
        c.post(format!("{base}/scheduled-tasks"))
            .json(&json!({"title": "nightly", "interval_seconds": 1})),
        StatusCode::CREATED,
    )
    .await;
    wait_for(&c, &format!("{base}/scheduled-tasks"), |v| {
        v[0]["runs"].as_i64().unwrap_or(0) >= 1
    })
    .await;

    // A running task past the 1 s timeout is marked failed by the scheduler.
    let slow = send(
        &c,
        c.post(format!("{base}/tasks"))
            .json(&json!({"title": "slow"})),
        StatusCode::CREATED,
    )
    .await;
    let sid = slow["id"].as_i64().expect("task id");
    send(
        &c,
        c.put(format!("{base}/tasks/{sid}/status"))
            .json(&json!({"status": "running"})),
        StatusCode::OK,
    )
    .await;
    wait_for(&c, &format!("{base}/tasks?status=failed"), |v| {
        v.as_array()
            .is_some_and(|a| a.iter().any(|t| t["id"] == sid))
    })
    .await;

    // Bad requests: 4xx with a JSON reason, never a panic.
    bad(
        &c,
        c.post(format!("{base}/tasks"))
            .header("content-type", "application/json")
            .body("{not json"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    bad(
        &c,
        c.post(format!("{base}/tasks")).json(&json!({})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    bad(
        &c,
        c.post(format!("{base}/tasks")).json(&json!({"title": ""})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    bad(
        &c,
        c.post(format!("{base}/tasks")).body("title=x"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    // Over the 16 KiB limit: 413. The server answers before reading the whole body and
    // closes, so the client may see a reset instead of the answer: try a few times.
    let huge = json!({"title": "x".repeat(17 * 1024)});
    let mut answered = false;
    for _ in 0..5 {
        let Ok(res) = c.post(format!("{base}/tasks")).json(&huge).send().await else {
            continue;
        };
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body: Value = res.json().await.expect("a JSON error");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
        answered = true;
        break;
    }
    assert!(answered, "an oversized body gets 413");
    bad(
        &c,
        c.get(format!("{base}/tasks/abc")),
        StatusCode::NOT_FOUND,
    )
    .await;
    bad(
        &c,
        c.get(format!("{base}/tasks/999999")),
        StatusCode::NOT_FOUND,
    )
    .await;
    bad(
        &c,
        c.get(format!("{base}/tasks?status=bogus")),
        StatusCode::BAD_REQUEST,
    )
    .await;
    bad(
        &c,
        c.get(format!("{base}/agents/999")),
        StatusCode::NOT_FOUND,
    )
    .await;
    bad(
        &c,
        c.post(format!("{base}/agents/{low_id}/heartbeat"))
            .json(&json!({"trust_score": 2.0})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    bad(
        &c,
        c.post(format!("{base}/chains"))
            .json(&json!({"name": "empty", "steps": []})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    bad(
        &c,
        c.post(format!("{base}/scheduled-tasks"))
            .json(&json!({"title": "t", "interval_seconds": 0})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    bad(
        &c,
        c.get(format!("{base}/no/such/route")),
        StatusCode::NOT_FOUND,
    )
    .await;

    // Without --debug the profiling routes do not exist: the plain 404 of any unknown path.
    for path in [
        "/debug/profile/memory",
        "/debug/profile/cpu?seconds=1",
        "/debug/profile/cpu?seconds=0",
    ] {
        let body = send(&c, c.get(format!("{base}{path}")), StatusCode::NOT_FOUND).await;
        assert_eq!(body, json!({"error": "no such route"}), "{path}");
    }

    // Health: the database and the cache are checked.
    for probe in ["live", "ready", "startup", "detail"] {
        let res = c
            .get(format!("{base}/health/{probe}"))
            .send()
            .await
            .expect("probe");
        assert_eq!(res.status(), StatusCode::OK, "/health/{probe}");
        let body: Value = res.json().await.expect("health JSON");
        assert_eq!(body["status"], "pass", "/health/{probe}: {body}");
        let checks = &body["checks"];
        let expected: &[&str] = match probe {
            "live" => &["process:alive"],
            "ready" => &["sqlite:select", "cache:entries"],
            "startup" => &["sqlite:schema"],
            _ => &[
                "process:alive",
                "sqlite:select",
                "cache:entries",
                "sqlite:schema",
            ],
        };
        for check in expected {
            assert_eq!(
                checks[check][0]["status"], "pass",
                "/health/{probe} has {check}: {body}"
            );
        }
    }

    // More agents than the 100 values `agent_id` may take: the guard collapses the rest.
    for i in 0..101 {
        send(
            &c,
            c.post(format!("{base}/agents"))
                .json(&json!({"name": format!("extra-{i}"), "trust_score": 0.1})),
            StatusCode::CREATED,
        )
        .await;
    }

    // Metrics: every catalog metric has a sample; 4xx are counted by status.
    let exposition = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    let samples: Vec<&str> = exposition.lines().filter(|l| !l.starts_with('#')).collect();
    let catalog = catalog_metrics();
    assert!(catalog.len() > 30, "the catalog parsed: {catalog:?}");
    for (name, kind) in &catalog {
        let series = if kind == "histogram" {
            format!("{name}_count")
        } else {
            name.clone()
        };
        assert!(
            samples
                .iter()
                .any(|l| l.starts_with(&format!("{series}{{"))
                    || l.starts_with(&format!("{series} "))),
            "no sample of {series} in\n{exposition}"
        );
    }
    for status in ["400", "404", "409", "413", "415", "422"] {
        let counted = samples.iter().any(|l| {
            l.starts_with("ains_http_requests_total{")
                && l.contains(&format!("status=\"{status}\""))
        });
        assert!(
            counted,
            "ains_http_requests_total has status {status}:\n{exposition}"
        );
    }
    assert!(
        samples
            .iter()
            .any(|l| l.starts_with("ains_http_requests_total{")
                && l.contains("route=\"/tasks/{id}\"")
                && l.contains("status=\"404\"")),
        "404 on the task route, by template"
    );
    let value_of = |series: &str, labels: &[&str]| -> Option<f64> {
        samples
            .iter()
            .filter(|l| l.starts_with(&format!("{series}{{")))
            .find(|l| labels.iter().all(|want| l.contains(want)))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    assert_eq!(value_of("ains_task_retries_total", &[]), Some(1.0));
    assert!(value_of("ains_task_timeouts_total", &[]) >= Some(1.0));
    assert!(value_of("ains_cache_hits_total", &[]) >= Some(1.0));
    assert!(value_of("ains_chain_steps_total", &["status=\"completed\""]) >= Some(2.0));
    assert_eq!(
        value_of(
            "ains_chain_duration_seconds_count",
            &["status=\"completed\""]
        ),
        Some(1.0)
    );
    assert!(
        value_of(
            "ains_db_queries_total",
            &["operation=\"select\"", "outcome=\"ok\""]
        ) >= Some(1.0)
    );
    assert!(
        value_of(
            "ains_cardinality_overflow_total",
            &["metric=\"ains_agent_trust_score\"", "label=\"agent_id\""]
        ) >= Some(1.0),
        "past 100 agents, agent_id overflows"
    );
    assert!(
        value_of("ains_agent_trust_score", &["agent_id=\"_overflow\""]).is_some(),
        "the overflow series"
    );
    assert!(
        !samples.iter().any(|l| l.contains("route=\"/debug/profile")),
        "no profiling route exists without --debug"
    );
    // The coverage report of this scrape, both ways: no catalog metric without a series,
    // no series outside the catalog.
    let parsed = zs_observe::catalog::Catalog::parse(CATALOG, "ains.toml").expect("the catalog");
    let report = zs_observe::coverage::report(&parsed, &exposition);
    assert!(report.is_empty(), "coverage report:\n{report}");
    let complaints = zs_observe_tests::promtool_check_metrics(&exposition);
    assert!(
        complaints.trim().is_empty(),
        "promtool check metrics:\n{complaints}"
    );
}

/// The admin token the `--debug` tests configure (`ZS_ADMIN_TOKEN`).
const ADMIN_TOKEN: &str = "ains-admin-token-0123456789";

/// A request's status, `WWW-Authenticate` header and body.
async fn answer(req: reqwest::RequestBuilder) -> (StatusCode, Option<String>, String) {
    let res = req.send().await.expect("request sent");
    let status = res.status();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, challenge, res.text().await.expect("body read"))
}

/// With `--debug` the profiling endpoints are on the admin listener only, behind the
/// token: the application listener answers its plain 404, the admin listener 401
/// without the token or with another one, and the real profiles with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_and_profiling_with_debug() {
    let server = common::start_with(
        &["--workload", "--debug", "--admin-addr", "127.0.0.1:0"],
        &[("ZS_ADMIN_TOKEN", ADMIN_TOKEN)],
    )
    .await;
    let base = &server.base;
    let admin = server
        .admin
        .as_deref()
        .expect("an admin listener with --debug");
    assert_ne!(base, admin, "two listeners");
    let c = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("client");
    let bearer = format!("Bearer {ADMIN_TOKEN}");

    // The built-in workload registers agents and walks tasks to completion.
    wait_for(&c, &format!("{base}/tasks?status=completed"), |v| {
        v.as_array().is_some_and(|a| a.len() >= 3)
    })
    .await;
    let agents = send(&c, c.get(format!("{base}/agents")), StatusCode::OK).await;
    assert_eq!(agents.as_array().map(Vec::len), Some(3), "{agents}");

    // The application listener: no profiling route, whatever the credentials.
    for path in [
        "/debug/profile/memory",
        "/debug/profile/cpu?seconds=1",
        "/debug/profile/cpu?seconds=0",
    ] {
        for auth in [None, Some(bearer.as_str())] {
            let mut req = c.get(format!("{base}{path}"));
            if let Some(auth) = auth {
                req = req.header("authorization", auth);
            }
            let body = send(&c, req, StatusCode::NOT_FOUND).await;
            assert_eq!(body, json!({"error": "no such route"}), "{path} {auth:?}");
        }
    }

    // The admin listener, without the token or with another one: 401, a reason and a
    // challenge; the token is never echoed. `/metrics` there needs no token.
    let wrong = format!("Bearer {}", ADMIN_TOKEN.replace('0', "1"));
    for path in ["/debug/profile/memory", "/debug/profile/cpu?seconds=1"] {
        for (auth, reason) in [
            (None, "missing admin token"),
            (Some(wrong.as_str()), "invalid admin token"),
            (Some(ADMIN_TOKEN), "malformed authorization"),
        ] {
            let mut req = c.get(format!("{admin}{path}"));
            if let Some(auth) = auth {
                req = req.header("authorization", auth);
            }
            let (status, challenge, body) = answer(req).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {auth:?}: {body}");
            assert!(body.starts_with(reason), "{path} {auth:?}: {body}");
            assert!(
                challenge.is_some_and(|c| c.starts_with("Bearer realm=")),
                "{path} {auth:?}"
            );
            assert!(!body.contains(ADMIN_TOKEN), "the token is not echoed");
        }
    }
    let (status, _, exposition) = answer(c.get(format!("{admin}/metrics"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(exposition.contains("ains_build_info"), "{exposition}");

    // With the token: the real memory figures.
    let memory = send(
        &c,
        c.get(format!("{admin}/debug/profile/memory"))
            .header("authorization", &bearer),
        StatusCode::OK,
    )
    .await;
    assert!(
        memory["process"]["resident_bytes"].as_u64() > Some(0),
        "{memory}"
    );
    assert!(memory["database"]["bytes"].as_i64() > Some(0), "{memory}");

    for query in ["seconds=0", "seconds=x", "seconds=61", "sconds=1"] {
        bad(
            &c,
            c.get(format!("{admin}/debug/profile/cpu?{query}"))
                .header("authorization", &bearer),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    let res = c
        .get(format!("{admin}/debug/profile/cpu?seconds=1"))
        .header("authorization", &bearer)
        .send()
        .await
        .expect("profile");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/svg+xml")
    );
    let svg = res.text().await.expect("svg");
    assert!(
        svg.contains("<svg"),
        "a flame graph: {}",
        &svg[..svg.len().min(200)]
    );

    // Admin requests are not API traffic: the API's RED metrics do not count them.
    let exposition = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("exposition");
    assert!(
        !exposition.contains("route=\"/debug/profile"),
        "no profiling route in the API's HTTP metrics"
    );
}

/// `--debug` without a token: the admin listener (loopback) is the protection; the
/// application listener still has no profiling route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_without_token_serves_profiles_on_the_admin_listener_only() {
    let server = start(&["--debug", "--admin-addr", "127.0.0.1:0"]).await;
    let (base, admin) = (&server.base, server.admin.as_deref().expect("admin"));
    let c = reqwest::Client::new();
    let body = send(
        &c,
        c.get(format!("{base}/debug/profile/memory")),
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(body, json!({"error": "no such route"}));
    let memory = send(
        &c,
        c.get(format!("{admin}/debug/profile/memory")),
        StatusCode::OK,
    )
    .await;
    assert!(
        memory["process"]["resident_bytes"].as_u64() > Some(0),
        "{memory}"
    );
    let (status, _, _) = answer(c.get(format!("{admin}/no/such/route"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Without `--debug` there is no admin listener, even when `--admin-addr` names one:
/// nothing listens there, and the application listener answers 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_admin_listener_without_debug() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let admin = free.local_addr().expect("its address");
    drop(free);
    let admin_arg = admin.to_string();
    let server = start(&["--admin-addr", &admin_arg]).await;
    assert!(server.admin.is_none());
    let c = reqwest::Client::new();
    for path in ["/debug/profile/memory", "/debug/profile/cpu?seconds=1"] {
        let body = send(
            &c,
            c.get(format!("{}{path}", server.base)),
            StatusCode::NOT_FOUND,
        )
        .await;
        assert_eq!(body, json!({"error": "no such route"}), "{path}");
    }
    let refused = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::TcpStream::connect(admin),
    )
    .await
    .expect("connect answers within 5 s");
    assert!(
        refused.is_err(),
        "nothing listens on {admin} without --debug"
    );
}

/// Unsafe or bad exposure settings stop the service with a clear message (never a
/// panic): a non-loopback admin address without a token, a token too short, a bad
/// admin address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_debug_settings_are_refused() {
    let (code, stderr) = common::run_to_exit(
        &[
            "--debug",
            "--listen",
            "127.0.0.1:0",
            "--admin-addr",
            "0.0.0.0:0",
        ],
        &[],
    )
    .await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("non-loopback admin address 0.0.0.0:0 needs ZS_ADMIN_TOKEN"),
        "{stderr}"
    );
    let (code, stderr) = common::run_to_exit(
        &[
            "--debug",
            "--listen",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ],
        &[("ZS_ADMIN_TOKEN", "tiny-tok")],
    )
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot start telemetry: exposure: the admin token")
            && stderr.contains("needs 16 to 4096"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("tiny-tok") && !stderr.contains("panicked"),
        "{stderr}"
    );
    let (code, stderr) = common::run_to_exit(
        &[
            "--debug",
            "--listen",
            "127.0.0.1:0",
            "--admin-addr",
            "not-an-address",
        ],
        &[],
    )
    .await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid --admin-addr address `not-an-address`"),
        "{stderr}"
    );
}

/// A database file outlives the process, and a file from before agents had API keys
/// is upgraded in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_database_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!(
        "ains-api-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("ains.db");
    let db = path.to_str().expect("utf-8 path").to_owned();
    {
        let old = rusqlite::Connection::open(&path).expect("an old database");
        old.execute_batch(
            "CREATE TABLE agents (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, \
             trust_score REAL NOT NULL DEFAULT 0.5, last_heartbeat REAL NOT NULL, \
             created_at REAL NOT NULL);
             INSERT INTO agents (name, trust_score, last_heartbeat, created_at) \
             VALUES ('veteran', 0.7, 0, 0);",
        )
        .expect("the old schema");
    }
    let c = reqwest::Client::new();
    let task_id = {
        let server = common::start(&["--db", &db]).await;
        let base = &server.base;
        let veteran = send(&c, c.get(format!("{base}/agents/1")), StatusCode::OK).await;
        assert_eq!(veteran["name"], "veteran");
        assert_eq!(veteran["api_key_set"], false);
        let agent = send(
            &c,
            c.post(format!("{base}/agents"))
                .json(&json!({"name": "keyed", "api_key": "k-123"})),
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(agent["api_key_set"], true, "{agent}");
        assert!(agent.get("api_key").is_none(), "the key is never served");
        let task = send(
            &c,
            c.post(format!("{base}/tasks"))
                .json(&json!({"title": "durable"})),
            StatusCode::CREATED,
        )
        .await;
        task["id"].as_i64().expect("task id")
    };
    // The first process is killed (dropped); a second one reads the same file.
    let server = common::start(&["--db", &db]).await;
    let base = &server.base;
    let task = send(&c, c.get(format!("{base}/tasks/{task_id}")), StatusCode::OK).await;
    assert_eq!(task["title"], "durable");
    let agents = send(&c, c.get(format!("{base}/agents")), StatusCode::OK).await;
    assert_eq!(agents.as_array().map(Vec::len), Some(2), "{agents}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
