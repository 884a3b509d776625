//! The OTLP export scenario with head sampling: sampled `#[instrumented]` spans go
//! through the runtime's own bridge (`zs_observe::otel::bridge`), not
//! `tracing-opentelemetry`, and must reach the collector the same.

#[path = "common/otlp_fns.rs"]
mod common;

#[test]
fn bridged_spans_reach_an_http_collector_like_layer_spans() {
    zs_observe_tests::otlp::export_scenario_sampled(
        zs_observe::OtlpProtocol::HttpProtobuf,
        &common::CALLS,
        zs_observe::TraceSampler::ParentBasedAlwaysOn,
    );
}

#[test]
fn bridged_spans_reach_a_grpc_collector_like_layer_spans() {
    zs_observe_tests::otlp::export_scenario_sampled(
        zs_observe::OtlpProtocol::Grpc,
        &common::CALLS,
        zs_observe::TraceSampler::ParentBasedAlwaysOn,
    );
}
