//! The exporter's own stack (tonic, h2, hyper) runs without a subscriber: with every
//! level enabled for logs and traces, none of its spans reach the pipeline (which
//! would export them, and export the spans of that export, and so on).

use std::time::Duration;

use zs_observe_tests::otlp::Receiver;

#[zs_observe::instrumented(span = "quiet.op")]
fn op(i: u64) -> u64 {
    i + 1
}

#[test]
fn the_exporters_own_spans_do_not_feed_back() {
    let receiver = Receiver::grpc();
    let telemetry = zs_observe::Telemetry::builder()
        .with_service_name("quiet-test")
        .with_otlp_endpoint(receiver.endpoint())
        .with_otlp_protocol(zs_observe::OtlpProtocol::Grpc)
        .with_sampler(zs_observe::TraceSampler::ParentBasedAlwaysOn)
        .with_trace_batch(256, Duration::from_millis(20))
        .with_log_sink(zs_observe_tests::logs::CapturedLogs::default().sink())
        .with_log_level("trace")
        .with_trace_filter("trace")
        .install()
        .unwrap();
    for i in 0..3 {
        assert_eq!(op(i), i + 1);
        telemetry.flush().unwrap();
    }
    // Time for exports of exports, if any were made.
    std::thread::sleep(Duration::from_millis(300));
    telemetry.flush().unwrap();
    let spans = receiver
        .collected
        .wait_for(Duration::from_secs(10), |s| s.len() >= 3);
    let ours: Vec<_> = spans.iter().filter(|s| s.name == "quiet.op").collect();
    assert_eq!(ours.len(), 3, "{spans:#?}");
    let from_exporter: Vec<_> = spans
        .iter()
        .filter(|s| s.attributes.get("thread.name").map(String::as_str) == Some("zs-observe-otlp"))
        .collect();
    assert!(from_exporter.is_empty(), "{from_exporter:#?}");
}
