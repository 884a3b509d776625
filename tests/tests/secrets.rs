//! Secrets never leave the process (issue 9, item 8). A unique random marker is
//! planted in every place a secret realistically ends up — fields named like
//! secrets (function parameters and event fields), an error message returned by an
//! `#[instrumented(err)]` function (`bad password=<secret>`), a `Debug` dump of the
//! request headers, and the `authorization`, `proxy-authorization`, `cookie`,
//! `set-cookie` and `x-api-key` headers of requests through the HTTP layers — and
//! every output is grepped for it: the JSON log lines, the raw OTLP/HTTP bodies a
//! real receiver got (span attributes, events, status messages), and `/metrics`.
//! The console format gets the same check in `zs-observe/src/logging.rs`
//! (`console_lines_cannot_be_forged_and_hide_secrets`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use zs_observe::propagation::RequestTraceLayer;
use zs_observe::{HttpMetricsLayer, Telemetry};
use zs_observe_tests::logs::CapturedLogs;

/// A marker no output can contain by chance.
fn marker() -> String {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let mut h = state.build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("mk{:016x}zz", h.finish())
}

/// Raw OTLP/HTTP request bodies, as received.
#[derive(Clone, Default)]
struct Bodies(Arc<Mutex<Vec<Vec<u8>>>>);

impl Bodies {
    fn contains(&self, needle: &str) -> bool {
        let bodies = self.0.lock().unwrap();
        bodies
            .iter()
            .any(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
    }
}

impl Bodies {
    /// The decoded spans whose text holds `needle` (for failure messages).
    fn context_of(&self, needle: &str) -> String {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message;
        let bodies = self.0.lock().unwrap();
        let mut out = String::new();
        for body in bodies.iter() {
            let Ok(request) = ExportTraceServiceRequest::decode(body.as_slice()) else {
                continue;
            };
            for rs in &request.resource_spans {
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        let text = format!("{span:?}");
                        if text.contains(needle) {
                            out.push_str(&text);
                            out.push('\n');
                        }
                    }
                }
            }
        }
        out
    }
}

/// A real OTLP/HTTP receiver that keeps every body (and checks it decodes).
async fn otlp_receiver() -> (SocketAddr, Bodies) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    let bodies = Bodies::default();
    let kept = bodies.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                if ExportTraceServiceRequest::decode(body.clone()).is_err() {
                    return StatusCode::BAD_REQUEST;
                }
                kept.0.lock().unwrap().push(body.to_vec());
                StatusCode::OK
            }
        }),
    );
    (serve(app).await, bodies)
}

async fn serve(router: axum::Router) -> SocketAddr {
    zs_observe_tests::serve(router).await
}

/// Parameters named like secrets are span fields; the error carries one in its text.
#[zs_observe::instrumented(span = "secrets.login", err)]
async fn login(user: String, password: String, api_key: String) -> Result<u64, String> {
    tracing::info!(authorization = %format!("Bearer {api_key}"), "checking credentials");
    tracing::info!("login attempt for {user} with password={password}");
    Err(format!("bad password={password} for {user}"))
}

async fn handler(Path(user): Path<String>, headers: HeaderMap) -> StatusCode {
    // A realistic mistake: dumping every request header into a log line.
    tracing::info!(headers = ?headers, "request headers");
    let secret = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    tracing::warn!(api_key = %secret, user_token = %secret, "using the caller's key");
    match login(user, secret.clone(), secret).await {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::UNAUTHORIZED,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_secrets_appear_in_no_log_span_or_metric() {
    let started = Instant::now();
    let secret = marker();
    let (otlp, bodies) = otlp_receiver().await;
    let logs = CapturedLogs::default();
    let telemetry = Telemetry::builder()
        .with_service_name("secrets")
        .with_log_sink(logs.sink())
        .with_log_format(zs_observe::LogFormat::Json)
        .with_log_level("info")
        .with_otlp_endpoint(format!("http://{otlp}"))
        .with_otlp_protocol(zs_observe::OtlpProtocol::HttpProtobuf)
        .with_sampler(zs_observe::TraceSampler::AlwaysOn)
        .with_trace_batch(64, Duration::from_millis(50))
        .install()
        .expect("install");

    let app = axum::Router::new()
        .route("/login/{user}", get(handler))
        .layer(HttpMetricsLayer::new("secrets"))
        .layer(RequestTraceLayer::new())
        .merge(telemetry.metrics_router());
    let addr = serve(app).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for _ in 0..3 {
        let r = client
            .get(format!("http://{addr}/login/bob"))
            .header("authorization", format!("Bearer {secret}"))
            .header("proxy-authorization", format!("Basic {secret}"))
            .header("cookie", format!("theme=dark; session={secret}; lang=en"))
            .header("set-cookie", format!("session={secret}; HttpOnly"))
            .header("x-api-key", secret.as_str())
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 401);
    }
    let metrics = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    telemetry.flush().expect("flush");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !bodies.contains("secrets.login") {
        assert!(Instant::now() < deadline, "no span reached the receiver");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The outputs are really there (so a clean grep means something)...
    let text = logs.text();
    let lines = logs.json_lines();
    assert!(metrics.contains("secrets_http_requests_total"), "{metrics}");
    for message in [
        "request headers",
        "using the caller's key",
        "checking credentials",
        "login attempt for bob with password=[REDACTED]",
    ] {
        assert!(
            lines.iter().any(|l| l["message"] == message),
            "{message:?} missing:\n{text}"
        );
    }
    let error = lines
        .iter()
        .find(|l| l["level"] == "error" && l["span"] == "secrets.login")
        .unwrap_or_else(|| panic!("no err event:\n{text}"));
    assert_eq!(error["error"], "bad password=[REDACTED] for bob", "{error}");
    assert!(bodies.contains("[REDACTED]"));
    assert!(bodies.contains("bad password=[REDACTED] for bob"));

    // ...and the marker is in none of them.
    let leaks: Vec<&str> = text.lines().filter(|l| l.contains(&secret)).collect();
    assert!(
        leaks.is_empty(),
        "secret in log lines:\n{}",
        leaks.join("\n")
    );
    assert!(
        !bodies.contains(&secret),
        "secret in an OTLP export: {}",
        bodies.context_of(&secret)
    );
    assert!(!metrics.contains(&secret), "secret in /metrics:\n{metrics}");
    assert!(!telemetry.render().contains(&secret));
    eprintln!(
        "{} log lines, {} OTLP bodies, {} bytes of /metrics: no secret ({:?})",
        lines.len(),
        bodies.0.lock().unwrap().len(),
        metrics.len(),
        started.elapsed()
    );
}
