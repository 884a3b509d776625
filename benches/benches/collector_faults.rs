//! What a dead or slow trace collector costs the instrumented code:
//! `cargo bench -p zs-observe-benches --bench collector_faults`.
//!
//! One process, one runtime (installed once), exporting every span (parent-based,
//! every new trace sampled: the export pressure is maximal) over OTLP/HTTP to one
//! loopback port, behind which the collector changes between the scenarios:
//!
//! - `collector/healthy`: a real OTLP/HTTP receiver (decodes each
//!   `ExportTraceServiceRequest`, counts its spans, answers at once);
//! - `collector/slow`: the same, answering each export after 500 ms (within the 1 s
//!   export timeout: the queue backs up);
//! - `collector/blackhole`: accepts connections, never reads nor answers (every
//!   export times out);
//! - `collector/refused`: nothing listens (every connection is refused);
//! - `collector/healthy_again`: the healthy receiver once more, to show the drift
//!   of the run.
//!
//! Switching stops the previous collector's runtime, which closes its listener and
//! every connection it accepted, so the exporter's pooled connection goes too.
//! After each scenario the export counters moved during it are printed.

use std::hint::black_box;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

#[inline(never)]
#[zs_observe::instrumented(
    span = "bench.call",
    counter = "bench_calls_total",
    histogram = "bench_call_duration_seconds",
    labels(variant = "collector_faults")
)]
fn zs_span_metrics_exported(x: u64) -> u64 {
    black_box(x).wrapping_add(1)
}

const SLOW_DELAY: Duration = Duration::from_millis(500);
const EXPORT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Healthy,
    Slow,
    BlackHole,
    Refused,
}

/// The collector behind one port, switchable between the scenarios.
struct Collector {
    addr: SocketAddr,
    spans: Arc<AtomicU64>,
    running: Option<(tokio::sync::oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Collector {
    fn new() -> Collector {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port");
        Collector {
            addr,
            spans: Arc::default(),
            running: None,
        }
    }

    fn switch(&mut self, fault: Fault) {
        if let Some((stop, thread)) = self.running.take() {
            let _ = stop.send(());
            thread.join().expect("the collector thread ends");
        }
        if fault == Fault::Refused {
            return;
        }
        // The port was just closed: binding it again may take a moment (bounded).
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("cannot bind {} again: {e}", self.addr),
            }
        };
        listener.set_nonblocking(true).expect("non-blocking");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let spans = self.spans.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("collector runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                tokio::select! {
                    _ = stopped => {}
                    _ = serve(listener, fault, spans) => {}
                }
            });
            // Dropping the runtime closes the listener and every accepted connection.
            drop(rt);
        });
        self.running = Some((stop, thread));
    }
}

async fn serve(listener: tokio::net::TcpListener, fault: Fault, spans: Arc<AtomicU64>) {
    if fault == Fault::BlackHole {
        let mut held = Vec::new();
        // Bounded: the exporter holds one or two connections at a time.
        while held.len() < 10_000 {
            match listener.accept().await {
                Ok((stream, _)) => held.push(stream),
                Err(_) => return,
            }
        }
        std::future::pending::<()>().await;
    }
    let delay = if fault == Fault::Slow {
        SLOW_DELAY
    } else {
        Duration::ZERO
    };
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let spans = spans.clone();
            async move {
                let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                    return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
                };
                let n: usize = request
                    .resource_spans
                    .iter()
                    .flat_map(|rs| &rs.scope_spans)
                    .map(|ss| ss.spans.len())
                    .sum();
                spans.fetch_add(n as u64, Ordering::Relaxed);
                tokio::time::sleep(delay).await;
                let response = ExportTraceServiceResponse {
                    partial_success: None,
                };
                (axum::http::StatusCode::OK, response.encode_to_vec())
            }
        }),
    );
    let _ = axum::serve(listener, app).await;
}

fn collector_faults(c: &mut Criterion) {
    let mut collector = Collector::new();
    let telemetry = zs_observe::Telemetry::builder()
        .with_service_name("bench")
        .with_log_sink(zs_observe::LogSink::from_fn(std::io::sink))
        .with_sampler(zs_observe::TraceSampler::ParentBasedAlwaysOn)
        .with_otlp_endpoint(format!("http://{}", collector.addr))
        .with_otlp_protocol(zs_observe::OtlpProtocol::HttpProtobuf)
        .with_trace_export_timeout(EXPORT_TIMEOUT)
        .install()
        .expect("install the runtime");
    let mut group = c.benchmark_group("collector");
    for (name, fault) in [
        ("healthy", Fault::Healthy),
        ("slow", Fault::Slow),
        ("blackhole", Fault::BlackHole),
        ("refused", Fault::Refused),
        ("healthy_again", Fault::Healthy),
    ] {
        collector.switch(fault);
        let before = telemetry.trace_stats();
        let received = collector.spans.load(Ordering::Relaxed);
        let started = Instant::now();
        group.bench_function(name, |b| b.iter(|| zs_span_metrics_exported(black_box(7))));
        let after = telemetry.trace_stats();
        eprintln!(
            "collector/{name}: in {:.1} s, spans exported +{}, dropped queue_full +{}, \
             dropped export_failed +{}, received by the collector +{}",
            started.elapsed().as_secs_f64(),
            after.exported - before.exported,
            after.dropped_queue_full - before.dropped_queue_full,
            after.dropped_export_failed - before.dropped_export_failed,
            collector.spans.load(Ordering::Relaxed) - received,
        );
    }
    group.finish();
    collector.switch(Fault::Refused);
    // Shutting down against a dead collector is bounded by the export timeout.
    drop(telemetry);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = collector_faults
}
criterion_main!(benches);
