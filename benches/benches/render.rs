//! `/metrics` render time for 1k, 10k and 100k series:
//! `cargo bench -p zs-observe-benches --bench render`.
//!
//! Ours is `Telemetry::render()` of the installed runtime; theirs is
//! `PrometheusHandle::render()` of a `metrics-exporter-prometheus` recorder built
//! with the same buckets and not installed. Both hold the same series: counters
//! `bench_render_<k>_total{id="<i>"}` spread over ten metric names (ours adds the
//! runtime's constant labels `service`, `version`, `environment` to each line and
//! its `bench_build_info` gauge).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::PrometheusBuilder;

const NAMES: [&str; 10] = [
    "bench_render_0_total",
    "bench_render_1_total",
    "bench_render_2_total",
    "bench_render_3_total",
    "bench_render_4_total",
    "bench_render_5_total",
    "bench_render_6_total",
    "bench_render_7_total",
    "bench_render_8_total",
    "bench_render_9_total",
];

fn key(i: usize) -> Key {
    Key::from_parts(
        NAMES[i % NAMES.len()],
        vec![Label::new("id", i.to_string())],
    )
}

fn render(c: &mut Criterion) {
    let telemetry = zs_observe::Telemetry::builder()
        .with_service_name("bench")
        .with_subscriber(false)
        .with_tracing(false)
        .install()
        .expect("install the runtime");
    let metadata = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));
    let mut group = c.benchmark_group("render/counters");
    let mut registered = 0;
    for series in [1_000usize, 10_000, 100_000] {
        // Ours: the global recorder grows to `series`.
        metrics::with_recorder(|recorder| {
            for i in registered..series {
                recorder.register_counter(&key(i), &metadata).increment(1);
            }
        });
        registered = series;
        group.bench_function(BenchmarkId::new("zs_observe", series), |b| {
            b.iter(|| telemetry.render())
        });

        // Theirs: a fresh recorder with the same series.
        let theirs = PrometheusBuilder::new()
            .set_buckets(zs_observe::DEFAULT_BUCKETS)
            .expect("buckets")
            .build_recorder();
        for i in 0..series {
            theirs.register_counter(&key(i), &metadata).increment(1);
        }
        let handle = theirs.handle();
        group.bench_function(
            BenchmarkId::new("metrics_exporter_prometheus", series),
            |b| b.iter(|| handle.render()),
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    targets = render
}
criterion_main!(benches);
