//! What an instrumented call with a span costs under the OpenTelemetry layer at
//! each sampling setting, against no subscriber and a bare registry:
//! `cargo bench -p zs-observe --bench span_sampling`. Numbers: docs/tracing.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;

#[zs_observe::instrumented(span = "bench.call")]
fn call(x: u64) -> u64 {
    black_box(x).wrapping_add(1)
}

fn with_otel(sampler: Sampler) -> (tracing::Dispatch, SdkTracerProvider) {
    let provider = SdkTracerProvider::builder().with_sampler(sampler).build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("bench"))
        .with_location(false)
        .with_target(false);
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    (dispatch, provider)
}

fn sampling(c: &mut Criterion) {
    let mut group = c.benchmark_group("span/sampling");
    group.bench_function("no_subscriber", |b| b.iter(|| call(black_box(7))));

    let registry = tracing::Dispatch::new(tracing_subscriber::registry());
    tracing::dispatcher::with_default(&registry, || {
        group.bench_function("registry_only", |b| b.iter(|| call(black_box(7))));
    });

    let variants = [
        ("otel_always_off", Sampler::AlwaysOff),
        (
            "otel_parent_ratio_0.1",
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.1))),
        ),
        ("otel_always_on", Sampler::AlwaysOn),
    ];
    for (name, sampler) in variants {
        let (dispatch, _provider) = with_otel(sampler);
        tracing::dispatcher::with_default(&dispatch, || {
            group.bench_function(name, |b| b.iter(|| call(black_box(7))));
        });
    }

    // The runtime as installed: OTel layer behind the head-sampling filter
    // (parent-based 0.1), JSON log layer with logs off, no exporter.
    let _telemetry = zs_observe::Telemetry::builder()
        .with_service_name("bench")
        .with_log_level("off")
        .with_log_sink(zs_observe::LogSink::from_fn(std::io::sink))
        .install()
        .expect("install");
    group.bench_function("runtime_head_sampled_0.1", |b| {
        b.iter(|| call(black_box(7)))
    });
    group.finish();
}

criterion_group!(benches, sampling);
criterion_main!(benches);
