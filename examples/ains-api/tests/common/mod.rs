//! What the end-to-end tests share: the binary started on a loopback port with a clean
//! environment, and HTTP helpers that assert statuses and JSON error bodies.

#![allow(dead_code, unreachable_pub)]

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The running binary; killed when dropped.
pub struct Server {
    _child: tokio::process::Child,
    pub base: String,
    /// `http://<admin listener>`, when started with `--debug` (the second stderr line,
    /// `ADMIN <addr>`).
    pub admin: Option<String>,
    /// Its stdout (the JSON log lines) so far.
    pub stdout: Arc<Mutex<Vec<String>>>,
}

/// Settings of the environment the tests must not inherit.
pub const INHERITED: [&str; 21] = [
    "OTEL_SERVICE_NAME",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_SCHEDULE_DELAY",
    "RUST_LOG",
    "ZS_LOG_FORMAT",
    "ZS_ENVIRONMENT",
    "AINS_LISTEN",
    "AINS_DEBUG",
    "AINS_TRACE_FILTER",
    "AINS_ADMIN_ADDR",
    "ZS_ADMIN_TOKEN",
];

pub async fn start(extra: &[&str]) -> Server {
    start_with(extra, &[]).await
}

pub async fn start_with(extra: &[&str], env: &[(&str, &str)]) -> Server {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_ains-api"));
    command.args([
        "--listen",
        "127.0.0.1:0",
        "--tick-ms",
        "100",
        "--task-timeout-secs",
        "1",
    ]);
    command.args(extra);
    for name in INHERITED {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ains-api starts");
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let mut out_lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let collected = stdout.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = out_lines.next_line().await {
            collected.lock().expect("stdout buffer").push(line);
        }
    });
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("a first stderr line within 30 s")
        .expect("stderr readable")
        .expect("a first stderr line");
    let addr = first
        .strip_prefix("LISTENING ")
        .unwrap_or_else(|| panic!("first stderr line is `LISTENING <addr>`, got {first:?}"))
        .to_owned();
    let admin = if extra.contains(&"--debug") {
        let second = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("a second stderr line within 10 s")
            .expect("stderr readable")
            .expect("a second stderr line");
        let admin = second
            .strip_prefix("ADMIN ")
            .unwrap_or_else(|| panic!("second stderr line is `ADMIN <addr>`, got {second:?}"));
        Some(format!("http://{admin}"))
    } else {
        None
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Server {
        _child: child,
        base: format!("http://{addr}"),
        admin,
        stdout,
    }
}

/// Runs the binary with `args` and `env` (in a clean environment) until it exits, for at
/// most 30 s: its exit code and stderr.
pub async fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_ains-api"));
    command.args(args);
    for name in INHERITED {
        command.env_remove(name);
    }
    command.envs(env.iter().copied()).kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("ains-api exits within 30 s")
        .expect("ains-api runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub async fn send(
    client: &reqwest::Client,
    req: reqwest::RequestBuilder,
    expected: StatusCode,
) -> Value {
    let _ = client;
    let res = req.send().await.expect("request sent");
    let status = res.status();
    let text = res.text().await.expect("body read");
    assert_eq!(status, expected, "body: {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("JSON body ({e}): {text}"))
    }
}

/// Asserts a 4xx answer carries `{"error": "..."}`.
pub async fn bad(client: &reqwest::Client, req: reqwest::RequestBuilder, expected: StatusCode) {
    let body = send(client, req, expected).await;
    let reason = body["error"].as_str().unwrap_or_default();
    assert!(
        !reason.is_empty(),
        "a JSON error reason for {expected}: {body}"
    );
}

/// Polls `url` until `done` holds for its JSON body, for at most 10 s.
pub async fn wait_for(client: &reqwest::Client, url: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        last = send(client, client.get(url), StatusCode::OK).await;
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never reached the expected state; last: {last}");
}
