//! The collector refuses connections: calls are not slowed, drops are counted.

#[path = "common/otlp_fns.rs"]
mod common;

#[test]
fn refused_collector_neither_blocks_calls_nor_loses_count_of_spans() {
    let addr = zs_observe_tests::otlp::refused_addr();
    zs_observe_tests::otlp::fault_scenario(
        format!("http://{addr}"),
        zs_observe::OtlpProtocol::Grpc,
        &common::CALLS,
    );
}
