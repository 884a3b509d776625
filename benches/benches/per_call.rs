//! One call of a trivial function under each way of counting and timing it,
//! without a span or with one sampled at 10 %:
//! `cargo bench -p zs-observe-benches --bench per_call`.
//!
//! The process installs the runtime's Prometheus recorder once
//! (`Telemetry::install` without its subscriber), so every `metrics` variant —
//! ours and the peers' — records into the same recorder with the same buckets.
//! The variants without a subscriber run first; then the hand-written
//! `tracing-opentelemetry` stack becomes the global subscriber for the last one.
//! The zs-observe variants with the runtime's subscriber need a second install
//! and live in `per_call_sampled.rs` and `per_call_always.rs`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use autometrics::autometrics;
use criterion::{criterion_group, criterion_main, Criterion};
use metrics::{counter, histogram, Counter, Histogram};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;
use zs_observe_benches::Floor;

#[inline(never)]
fn bare(x: u64) -> u64 {
    black_box(x).wrapping_add(1)
}

static FLOOR: Floor = Floor::new();

#[inline(never)]
fn floor(x: u64) -> u64 {
    FLOOR.call(|| black_box(x).wrapping_add(1))
}

#[inline(never)]
fn floor_tsc(clock: &quanta::Clock, x: u64) -> u64 {
    FLOOR.call_tsc(clock, || black_box(x).wrapping_add(1))
}

struct Handles {
    calls: Counter,
    duration: Histogram,
}

#[inline(never)]
fn metrics_cached(handles: &Handles, x: u64) -> u64 {
    let start = Instant::now();
    let ret = black_box(x).wrapping_add(1);
    handles.calls.increment(1);
    handles.duration.record(start.elapsed().as_secs_f64());
    ret
}

#[inline(never)]
fn metrics_macros(x: u64) -> u64 {
    let start = Instant::now();
    let ret = black_box(x).wrapping_add(1);
    counter!("bench_calls_total", "variant" => "metrics_macros", "outcome" => "ok").increment(1);
    histogram!("bench_call_duration_seconds", "variant" => "metrics_macros", "outcome" => "ok")
        .record(start.elapsed().as_secs_f64());
    ret
}

/// What a user writes by hand today: `#[tracing::instrument]` for the span,
/// the `metrics` macros for the counter and the histogram.
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
#[autometrics]
fn autometrics_call(x: u64) -> u64 {
    black_box(x).wrapping_add(1)
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

fn per_call(c: &mut Criterion) {
    let _telemetry = zs_observe::Telemetry::builder()
        .with_service_name("bench")
        .with_subscriber(false)
        .with_tracing(false)
        .install()
        .expect("install the runtime's recorder");

    let mut group = c.benchmark_group("call/trivial");
    group.bench_function("bare", |b| b.iter(|| bare(black_box(7))));
    group.bench_function("floor", |b| b.iter(|| floor(black_box(7))));
    let clock = quanta::Clock::new();
    group.bench_function("floor_tsc", |b| b.iter(|| floor_tsc(&clock, black_box(7))));

    let handles = Handles {
        calls: counter!("bench_calls_total", "variant" => "metrics_cached", "outcome" => "ok"),
        duration: histogram!(
            "bench_call_duration_seconds",
            "variant" => "metrics_cached",
            "outcome" => "ok"
        ),
    };
    group.bench_function("metrics_cached", |b| {
        b.iter(|| metrics_cached(&handles, black_box(7)))
    });
    group.bench_function("metrics_macros", |b| {
        b.iter(|| metrics_macros(black_box(7)))
    });
    group.bench_function("autometrics", |b| b.iter(|| autometrics_call(black_box(7))));
    group.bench_function("zs_metrics_only", |b| {
        b.iter(|| zs_metrics_only(black_box(7)))
    });

    // From here on a global subscriber exists: the hand-written stack, parent-based
    // ratio 0.1 as the runtime's default, no exporter.
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            0.1,
        ))))
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench")));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    group.bench_function("tracing_otel_metrics", |b| {
        b.iter(|| tracing_otel_metrics(black_box(7)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = per_call
}
criterion_main!(benches);
