//! A driver for instruction counts per call under `valgrind --tool=callgrind`:
//! `callgrind.rs <variant> <calls>` installs what `<variant>` needs (as the
//! benches do), makes `<calls>` calls and exits. Running it with two call counts
//! and subtracting the totals gives the instructions of one call, without the
//! setup. The commands are in `docs/performance.md`.

use std::hint::black_box;
use std::time::Instant;

use metrics::{counter, histogram};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;
use zs_observe_benches::Floor;

static FLOOR: Floor = Floor::new();

#[inline(never)]
fn bare(x: u64) -> u64 {
    black_box(x).wrapping_add(1)
}

#[inline(never)]
fn floor(x: u64) -> u64 {
    FLOOR.call(|| black_box(x).wrapping_add(1))
}

#[inline(never)]
fn metrics_cached(calls: &metrics::Counter, duration: &metrics::Histogram, x: u64) -> u64 {
    let start = Instant::now();
    let ret = black_box(x).wrapping_add(1);
    calls.increment(1);
    duration.record(start.elapsed().as_secs_f64());
    ret
}

#[inline(never)]
#[tracing::instrument(name = "bench.call")]
fn tracing_otel_metrics(x: u64) -> u64 {
    let start = Instant::now();
    let ret = black_box(x).wrapping_add(1);
    counter!("bench_calls_total", "variant" => "tracing_otel_metrics", "outcome" => "ok")
        .increment(1);
    histogram!("bench_call_duration_seconds", "variant" => "tracing_otel_metrics", "outcome" => "ok")
        .record(start.elapsed().as_secs_f64());
    ret
}

#[inline(never)]
#[zs_observe::instrumented(
    counter = "bench_calls_total",
    histogram = "bench_call_duration_seconds",
    labels(variant = "zs_metrics_only")
)]
fn zs_metrics_only(x: u64) -> u64 {
    black_box(x).wrapping_add(1)
}

#[inline(never)]
#[zs_observe::instrumented(
    span = "bench.call",
    counter = "bench_calls_total",
    histogram = "bench_call_duration_seconds",
    labels(variant = "zs_span_metrics")
)]
fn zs_span_metrics(x: u64) -> u64 {
    black_box(x).wrapping_add(1)
}

fn runtime(subscriber: bool, sampler: zs_observe::TraceSampler) -> zs_observe::Telemetry {
    zs_observe::Telemetry::builder()
        .with_service_name("bench")
        .with_subscriber(subscriber)
        .with_tracing(subscriber)
        .with_sampler(sampler)
        .with_log_sink(zs_observe::LogSink::from_fn(std::io::sink))
        .install()
        .expect("install the runtime")
}

fn repeat(calls: u64, call: impl Fn(u64) -> u64) {
    for i in 0..calls {
        black_box(call(black_box(i)));
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "floor".to_owned());
    let calls: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(1_000);
    let ratio = zs_observe::TraceSampler::ParentBasedRatio(0.1);
    match variant.as_str() {
        "bare" => repeat(calls, bare),
        "floor" => repeat(calls, floor),
        "metrics_cached" => {
            let _telemetry = runtime(false, ratio);
            let c = counter!("bench_calls_total", "variant" => "metrics_cached", "outcome" => "ok");
            let h = histogram!("bench_call_duration_seconds", "variant" => "metrics_cached", "outcome" => "ok");
            repeat(calls, |x| metrics_cached(&c, &h, x));
        }
        "tracing_otel_metrics" => {
            let _telemetry = runtime(false, ratio);
            let provider = SdkTracerProvider::builder()
                .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                    0.1,
                ))))
                .build();
            let subscriber = tracing_subscriber::registry()
                .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench")));
            tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
            repeat(calls, tracing_otel_metrics);
        }
        "zs_metrics_only" => {
            let _telemetry = runtime(false, ratio);
            repeat(calls, zs_metrics_only);
        }
        "zs_span_metrics_10pct" => {
            let _telemetry = runtime(true, ratio);
            repeat(calls, zs_span_metrics);
        }
        "zs_span_metrics_never" => {
            let _telemetry = runtime(true, zs_observe::TraceSampler::ParentBasedAlwaysOff);
            repeat(calls, zs_span_metrics);
        }
        "zs_span_metrics_always" => {
            let _telemetry = runtime(true, zs_observe::TraceSampler::ParentBasedAlwaysOn);
            repeat(calls, zs_span_metrics);
        }
        other => panic!("unknown variant {other}"),
    }
}
