//! A zs-observe call with span, counter and histogram under the runtime as
//! installed by default (parent-based ratio 0.1, OTel layer, JSON log layer at
//! `info` writing to a sink, no exporter):
//! `cargo bench -p zs-observe-benches --bench per_call_sampled`.
//! Its own process: the runtime installs its recorder and subscriber once.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

#[inline(never)]
#[zs_observe::instrumented(
    span = "bench.call",
    counter = "bench_calls_total",
    histogram = "bench_call_duration_seconds",
    labels(variant = "zs_span_metrics_10pct")
)]
fn zs_span_metrics_10pct(x: u64) -> u64 {
    black_box(x).wrapping_add(1)
}

#[inline(never)]
fn floor(f: &zs_observe_benches::Floor, x: u64) -> u64 {
    f.call(|| black_box(x).wrapping_add(1))
}

fn per_call(c: &mut Criterion) {
    let _telemetry = zs_observe::Telemetry::builder()
        .with_service_name("bench")
        .with_log_sink(zs_observe::LogSink::from_fn(std::io::sink))
        .install()
        .expect("install the runtime");
    let mut group = c.benchmark_group("call/trivial");
    // The floor again, in this process and just before: the machine's speed moves
    // between bench binaries, so the span target's ratio is taken against this one.
    static FLOOR: zs_observe_benches::Floor = zs_observe_benches::Floor::new();
    group.bench_function("floor_beside_sampled", |b| {
        b.iter(|| floor(&FLOOR, black_box(7)))
    });
    group.bench_function("zs_span_metrics_10pct", |b| {
        b.iter(|| zs_span_metrics_10pct(black_box(7)))
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
