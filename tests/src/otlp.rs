//! A real OTLP trace receiver for the tests: the official protobuf types of
//! `opentelemetry-proto`, served over gRPC (tonic, the generated
//! `TraceService` server) and over HTTP/protobuf (`POST /v1/traces`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

/// One span as the receiver got it, with its resource.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedSpan {
    /// Hex trace id.
    pub trace_id: String,
    /// Hex span id.
    pub span_id: String,
    /// Hex parent span id, empty for a root.
    pub parent_span_id: String,
    /// The span name.
    pub name: String,
    /// OTLP span kind (2 = server, 3 = client, 1 = internal).
    pub kind: i32,
    /// Attributes, values rendered as strings.
    pub attributes: BTreeMap<String, String>,
    /// OTLP status code (0 unset, 1 ok, 2 error).
    pub status_code: i32,
    /// The status message.
    pub status_message: String,
    /// Resource attributes of the batch the span came in.
    pub resource: BTreeMap<String, String>,
    /// Names of the span's events.
    pub events: Vec<String>,
}

fn value_string(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), value_string(kv.value.as_ref())))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the receiver has collected.
#[derive(Clone, Debug, Default)]
pub struct Collected(Arc<Mutex<Vec<ReceivedSpan>>>);

impl Collected {
    fn add(&self, request: &ExportTraceServiceRequest) {
        let mut spans = self.0.lock().unwrap();
        for rs in &request.resource_spans {
            let resource = rs
                .resource
                .as_ref()
                .map(|r| attrs(&r.attributes))
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    let status = s.status.clone().unwrap_or_default();
                    spans.push(ReceivedSpan {
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent_span_id: hex(&s.parent_span_id),
                        name: s.name.clone(),
                        kind: s.kind,
                        attributes: attrs(&s.attributes),
                        status_code: status.code,
                        status_message: status.message,
                        resource: resource.clone(),
                        events: s.events.iter().map(|e| e.name.clone()).collect(),
                    });
                }
            }
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.0.lock().unwrap().clone()
    }

    /// Waits (bounded) until `done` holds for the received spans.
    pub fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) || Instant::now() >= deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[derive(Clone)]
struct GrpcService(Collected);

#[tonic::async_trait]
impl TraceService for GrpcService {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.add(request.get_ref());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A receiver running on its own thread and runtime, so it outlives any test runtime.
#[derive(Debug)]
pub struct Receiver {
    /// Where it listens (loopback).
    pub addr: SocketAddr,
    /// What it received.
    pub collected: Collected,
}

impl Receiver {
    /// OTLP/gRPC on 127.0.0.1, a free port.
    pub fn grpc() -> Receiver {
        Self::start(true)
    }

    /// OTLP/HTTP (protobuf) on 127.0.0.1, a free port.
    pub fn http() -> Receiver {
        Self::start(false)
    }

    /// The endpoint to configure: `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn start(grpc: bool) -> Receiver {
        let collected = Collected::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let c = collected.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                if grpc {
                    let incoming = tonic::transport::server::TcpIncoming::from(listener);
                    tonic::transport::Server::builder()
                        .add_service(TraceServiceServer::new(GrpcService(c)))
                        .serve_with_incoming(incoming)
                        .await
                        .unwrap();
                } else {
                    let app = axum::Router::new()
                        .route(
                            "/v1/traces",
                            axum::routing::post(
                                |axum::extract::State(c): axum::extract::State<Collected>,
                                 body: axum::body::Bytes| async move {
                                    match ExportTraceServiceRequest::decode(body) {
                                        Ok(request) => {
                                            c.add(&request);
                                            let response = ExportTraceServiceResponse {
                                                partial_success: None,
                                            };
                                            (
                                                axum::http::StatusCode::OK,
                                                [("content-type", "application/x-protobuf")],
                                                response.encode_to_vec(),
                                            )
                                        }
                                        Err(_) => (
                                            axum::http::StatusCode::BAD_REQUEST,
                                            [("content-type", "text/plain")],
                                            b"not an ExportTraceServiceRequest".to_vec(),
                                        ),
                                    }
                                },
                            ),
                        )
                        .with_state(c);
                    axum::serve(listener, app).await.unwrap();
                }
            });
        });
        Receiver { addr, collected }
    }
}

/// A collector that accepts connections and never answers (nor reads).
#[derive(Debug)]
pub struct BlackHole {
    /// Where it listens.
    pub addr: SocketAddr,
}

impl BlackHole {
    /// Starts accepting on 127.0.0.1 and holding every connection open.
    pub fn start() -> BlackHole {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            // Bounded: a test opens a handful of connections at most.
            for stream in listener.incoming().take(1_000) {
                match stream {
                    Ok(s) => held.push(s),
                    Err(_) => break,
                }
            }
        });
        BlackHole { addr }
    }
}

/// A real OTLP collector that answers every export only after a delay, which can be
/// changed while it runs: slower than the exporter's timeout it fails every export,
/// a little faster it backs the exporter's queue up. It decodes each request as an
/// `ExportTraceServiceRequest` and counts its spans without keeping them, so its own
/// memory does not grow with what it receives (the memory tests measure the process
/// it runs in).
#[derive(Debug)]
pub struct SlowCollector {
    /// Where it listens (loopback).
    pub addr: SocketAddr,
    state: SlowState,
}

#[derive(Clone, Debug, Default)]
struct SlowState {
    delay_ms: Arc<AtomicU64>,
    spans: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    bad_requests: Arc<AtomicU64>,
}

impl SlowState {
    /// Counts a request's spans, then waits the current delay.
    async fn take(&self, request: &ExportTraceServiceRequest) {
        let spans: usize = request
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum();
        self.spans.fetch_add(spans as u64, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        let delay = self.delay_ms.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
}

#[tonic::async_trait]
impl TraceService for SlowState {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.take(request.get_ref()).await;
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl SlowCollector {
    /// OTLP/gRPC on 127.0.0.1, a free port, answering after `delay`.
    pub fn grpc(delay: Duration) -> SlowCollector {
        Self::start(true, delay)
    }

    /// OTLP/HTTP (protobuf) on 127.0.0.1, a free port, answering after `delay`.
    pub fn http(delay: Duration) -> SlowCollector {
        Self::start(false, delay)
    }

    /// The endpoint to configure: `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the delay of the exports that arrive from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Spans received so far (answered or not yet).
    pub fn spans(&self) -> u64 {
        self.state.spans.load(Ordering::Relaxed)
    }

    /// Export requests received so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// HTTP bodies that were not an `ExportTraceServiceRequest`.
    pub fn bad_requests(&self) -> u64 {
        self.state.bad_requests.load(Ordering::Relaxed)
    }

    fn start(grpc: bool, delay: Duration) -> SlowCollector {
        let state = SlowState::default();
        state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let s = state.clone();
        std::thread::spawn(move || {
            // Two workers: a request waiting out its delay must not hold up the next.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                if grpc {
                    let incoming = tonic::transport::server::TcpIncoming::from(listener);
                    tonic::transport::Server::builder()
                        .add_service(TraceServiceServer::new(s))
                        .serve_with_incoming(incoming)
                        .await
                        .unwrap();
                } else {
                    let app = axum::Router::new()
                        .route(
                            "/v1/traces",
                            axum::routing::post(
                                |axum::extract::State(s): axum::extract::State<SlowState>,
                                 body: axum::body::Bytes| async move {
                                    match ExportTraceServiceRequest::decode(body) {
                                        Ok(request) => {
                                            s.take(&request).await;
                                            (
                                                axum::http::StatusCode::OK,
                                                [("content-type", "application/x-protobuf")],
                                                ExportTraceServiceResponse {
                                                    partial_success: None,
                                                }
                                                .encode_to_vec(),
                                            )
                                        }
                                        Err(_) => {
                                            s.bad_requests.fetch_add(1, Ordering::Relaxed);
                                            (
                                                axum::http::StatusCode::BAD_REQUEST,
                                                [("content-type", "text/plain")],
                                                b"not an ExportTraceServiceRequest".to_vec(),
                                            )
                                        }
                                    }
                                },
                            ),
                        )
                        .with_state(s);
                    axum::serve(listener, app).await.unwrap();
                }
            });
        });
        SlowCollector { addr, state }
    }
}

/// An address nothing listens on (bound, then closed).
pub fn refused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// The instrumented functions the scenarios call: `execute` (span `wasm.execute`)
/// calls `send_payment` (span `payment.send`, with `err` and a secret field).
#[derive(Clone, Copy, Debug)]
pub struct Calls {
    /// `execute(fuel) == fuel * 2`.
    pub execute: fn(u64) -> u64,
    /// `Err` when the amount is 0.
    pub send_payment: fn(&str, u64) -> Result<u64, String>,
}

/// The secret planted in fields named like secrets; it must never reach a collector or a log.
pub const PLANTED_SECRET: &str = "hunter2-planted-secret";

/// Installs the runtime exporting to a receiver over `protocol` with every span
/// sampled, makes instrumented calls, and checks what the receiver got: names,
/// attributes, parent links, error status and message, resource, redaction.
///
/// The instrumented functions live in the test binaries (`tests/tests/common/`): a
/// catalog-checked UI build compiles this library too.
pub fn export_scenario(protocol: zs_observe::OtlpProtocol, calls: &Calls) {
    export_scenario_sampled(protocol, calls, zs_observe::TraceSampler::AlwaysOn);
}

/// [`export_scenario`] under `sampler`, which must keep every root (`AlwaysOn`
/// through `tracing-opentelemetry`; `ParentBasedAlwaysOn` through head sampling
/// and the runtime's own bridge).
pub fn export_scenario_sampled(
    protocol: zs_observe::OtlpProtocol,
    calls: &Calls,
    sampler: zs_observe::TraceSampler,
) {
    let Calls {
        execute,
        send_payment,
    } = *calls;
    let receiver = match protocol {
        zs_observe::OtlpProtocol::Grpc => Receiver::grpc(),
        _ => Receiver::http(),
    };
    let logs = crate::logs::CapturedLogs::default();
    let telemetry = zs_observe::Telemetry::builder()
        .with_service_name("otlp-test")
        .with_version("1.2.3")
        .with_environment("ci")
        .with_resource_attribute("host.name", "test-host")
        .with_otlp_endpoint(receiver.endpoint())
        .with_otlp_protocol(protocol)
        .with_sampler(sampler)
        .with_trace_batch(64, Duration::from_millis(50))
        .with_log_sink(logs.sink())
        .install()
        .expect("install");
    assert!(telemetry.exports_traces());

    assert_eq!(execute(21), 42);
    assert!(send_payment("ch-7", 0).is_err());
    telemetry.flush().expect("flush");

    let spans = receiver
        .collected
        .wait_for(Duration::from_secs(10), |s| s.len() >= 3);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let wasm = spans.iter().find(|s| s.name == "wasm.execute").unwrap();
    let inner = spans
        .iter()
        .find(|s| {
            s.name == "payment.send"
                && s.attributes.get("channel").map(String::as_str) == Some("ch-inner")
        })
        .unwrap();
    let failed = spans
        .iter()
        .find(|s| {
            s.name == "payment.send"
                && s.attributes.get("channel").map(String::as_str) == Some("ch-7")
        })
        .unwrap();

    // Parameters and fields become attributes.
    assert_eq!(wasm.attributes.get("fuel").map(String::as_str), Some("21"));
    assert_eq!(
        failed.attributes.get("amount").map(String::as_str),
        Some("0")
    );
    // Parent link within the process.
    assert_eq!(inner.trace_id, wasm.trace_id);
    assert_eq!(inner.parent_span_id, wasm.span_id);
    assert_eq!(wasm.parent_span_id, "");
    assert_ne!(failed.trace_id, wasm.trace_id);
    // `err`: error status with the message; success stays unset.
    assert_eq!(failed.status_code, 2, "{failed:#?}");
    assert_eq!(
        failed.status_message,
        "amount must be positive on channel ch-7"
    );
    assert_eq!(inner.status_code, 0);
    assert_eq!(wasm.status_code, 0);
    // Resource.
    for s in &spans {
        assert_eq!(
            s.resource.get("service.name").map(String::as_str),
            Some("otlp-test")
        );
        assert_eq!(
            s.resource.get("service.version").map(String::as_str),
            Some("1.2.3")
        );
        assert_eq!(
            s.resource
                .get("deployment.environment.name")
                .map(String::as_str),
            Some("ci")
        );
        assert_eq!(
            s.resource.get("host.name").map(String::as_str),
            Some("test-host")
        );
    }
    // Redaction in span attributes and in logs.
    assert_eq!(
        failed.attributes.get("api_key").map(String::as_str),
        Some(zs_observe::REDACTED)
    );
    assert!(!format!("{spans:?}").contains(PLANTED_SECRET));
    let lines = logs.json_lines();
    let err_line = lines
        .iter()
        .find(|l| l["error"] == "amount must be positive on channel ch-7")
        .expect("the err event is logged");
    assert_eq!(err_line["trace_id"], failed.trace_id.as_str());
    assert_eq!(err_line["span_id"], failed.span_id.as_str());
    assert_eq!(err_line["api_key"], zs_observe::REDACTED);
    assert!(!logs.text().contains(PLANTED_SECRET));

    let stats = telemetry.trace_stats();
    assert_eq!(stats.exported, 3);
    assert_eq!(stats.dropped_queue_full + stats.dropped_export_failed, 0);
    let exposition = telemetry.render();
    assert!(
        exposition.contains("otlp_test_trace_spans_exported_total{service=\"otlp-test\",version=\"1.2.3\",environment=\"ci\"} 3")
            || exposition.lines().any(|l| l.starts_with("otlp_test_trace_spans_exported_total") && l.ends_with(" 3")),
        "{exposition}"
    );
}

/// A collector fault: the runtime exports to `endpoint` (which refuses or never
/// answers) with a small queue. Instrumented calls must keep returning at full
/// speed and the dropped-span counter must rise.
pub fn fault_scenario(endpoint: String, protocol: zs_observe::OtlpProtocol, calls: &Calls) {
    let execute = calls.execute;
    let telemetry = zs_observe::Telemetry::builder()
        .with_service_name("fault-test")
        .with_otlp_endpoint(endpoint)
        .with_otlp_protocol(protocol)
        .with_sampler(zs_observe::TraceSampler::AlwaysOn)
        .with_trace_queue_size(64)
        .with_trace_batch(16, Duration::from_millis(20))
        .with_trace_export_timeout(Duration::from_millis(300))
        .with_log_sink(crate::logs::CapturedLogs::default().sink())
        .install()
        .expect("a dead collector is not an install error");

    // 20,000 calls; each would take >= 300 ms if it waited for an export.
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..20_000u64 {
        let t = Instant::now();
        assert_eq!(execute(i), i * 2);
        slowest = slowest.max(t.elapsed());
    }
    let total = started.elapsed();
    // Generous bounds that only a call blocked on the exporter would exceed.
    assert!(
        slowest < Duration::from_millis(250),
        "slowest call {slowest:?}"
    );
    assert!(total < Duration::from_secs(20), "20k calls took {total:?}");

    // Every one of the 40,000 spans is either dropped at the queue or in a failed export.
    let deadline = Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let s = telemetry.trace_stats();
        if s.dropped_queue_full + s.dropped_export_failed >= 40_000 || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(stats.exported, 0, "{stats:?}");
    assert!(stats.dropped_queue_full > 0, "{stats:?}");
    assert_eq!(
        stats.dropped_queue_full + stats.dropped_export_failed,
        40_000,
        "{stats:?}"
    );
    let exposition = telemetry.render();
    let dropped: f64 = exposition
        .lines()
        .filter(|l| l.starts_with("fault_test_trace_spans_dropped_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(dropped, 40_000.0, "{exposition}");

    // Shutting down against a dead collector is bounded too.
    let t = Instant::now();
    drop(telemetry);
    assert!(
        t.elapsed() < Duration::from_secs(7),
        "drop took {:?}",
        t.elapsed()
    );
}
