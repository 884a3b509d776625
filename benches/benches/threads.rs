//! Two threads calling the same instrumented function against one thread, under
//! the runtime as installed by default: `cargo bench -p zs-observe-benches --bench threads`.
//!
//! Each sample starts N threads that wait on a barrier, make `iters` calls each and
//! wait again; the time between the two barriers is the sample. Throughput is
//! `N × iters` calls over that time, so two threads scale perfectly when their
//! time per iteration equals one thread's.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use zs_observe_benches::Floor;

static FLOOR: Floor = Floor::new();

#[inline(never)]
fn floor(x: u64) -> u64 {
    FLOOR.call(|| black_box(x).wrapping_add(1))
}

#[inline(never)]
#[zs_observe::instrumented(
    span = false,
    counter = "bench_calls_total",
    histogram = "bench_call_duration_seconds",
    labels(variant = "threads_zs_metrics_only")
)]
fn zs_metrics_only(x: u64) -> u64 {
    black_box(x).wrapping_add(1)
}

#[inline(never)]
#[zs_observe::instrumented(
    span = "bench.call",
    counter = "bench_calls_total",
    histogram = "bench_call_duration_seconds",
    labels(variant = "threads_zs_span_metrics_10pct")
)]
fn zs_span_metrics_10pct(x: u64) -> u64 {
    black_box(x).wrapping_add(1)
}

/// A function of the benchmark.
type Call = fn(u64) -> u64;

/// Wall time of `threads` threads making `iters` calls each, all started together.
fn run(threads: usize, iters: u64, call: Call) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                barrier.wait();
                for i in 0..iters {
                    black_box(call(black_box(i)));
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

fn threads(c: &mut Criterion) {
    let _telemetry = zs_observe::Telemetry::builder()
        .with_service_name("bench")
        .with_log_sink(zs_observe::LogSink::from_fn(std::io::sink))
        .install()
        .expect("install the runtime");
    let variants: [(&str, Call); 3] = [
        ("floor", floor),
        ("zs_metrics_only", zs_metrics_only),
        ("zs_span_metrics_10pct", zs_span_metrics_10pct),
    ];
    for (name, call) in variants {
        let mut group = c.benchmark_group(format!("threads/{name}"));
        for n in [1usize, 2] {
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(n.to_string(), |b| {
                b.iter_custom(|iters| run(n, iters, call))
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = threads
}
criterion_main!(benches);
