//! The collector accepts connections and never answers: calls are not slowed,
//! exports time out, drops are counted.

#[path = "common/otlp_fns.rs"]
mod common;

#[test]
fn black_holed_collector_neither_blocks_calls_nor_loses_count_of_spans() {
    let hole = zs_observe_tests::otlp::BlackHole::start();
    zs_observe_tests::otlp::fault_scenario(
        format!("http://{}", hole.addr),
        zs_observe::OtlpProtocol::HttpProtobuf,
        &common::CALLS,
    );
}
