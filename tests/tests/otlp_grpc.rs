//! OTLP over gRPC into a real receiver (tonic server of the official protobuf types).

#[path = "common/otlp_fns.rs"]
mod common;

#[test]
fn spans_reach_a_grpc_collector_with_names_attributes_status_and_resource() {
    zs_observe_tests::otlp::export_scenario(zs_observe::OtlpProtocol::Grpc, &common::CALLS);
}
