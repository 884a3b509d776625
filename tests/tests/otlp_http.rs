//! OTLP over HTTP/protobuf into a real receiver (`POST /v1/traces`, official protobuf types).

#[path = "common/otlp_fns.rs"]
mod common;

#[test]
fn spans_reach_an_http_collector_with_names_attributes_status_and_resource() {
    zs_observe_tests::otlp::export_scenario(zs_observe::OtlpProtocol::HttpProtobuf, &common::CALLS);
}
