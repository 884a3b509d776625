//! Upkeep folds histogram samples into buckets between scrapes, so memory does
//! not grow with the number of calls. Without it the exporter keeps every raw
//! sample until the next scrape: 4 million observations would hold ~32 MB.
//! Its own test binary: it reads this process's resident memory.
//!
//! Known and open (see the issue notes): `metrics-exporter-prometheus` drains its
//! raw-sample buckets (`metrics_util::AtomicBucket::clear_with`) concurrently with
//! recording and loses a few samples per drain: 3 of 4.2 M at a 20 ms upkeep,
//! 17,224 at 1 ms. The exact-count invariant therefore waits for our own
//! fixed-bucket histogram storage (performance and reliability issues); this test
//! asserts only the memory bound.

use std::time::Duration;

use zs_observe::{instrumented, Telemetry};

#[instrumented(
    histogram = "upkeep_call_duration_seconds",
    span = false,
    outcome = false
)]
fn call() {}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .expect("resident field")
        .parse()
        .expect("number");
    pages * 4096
}

#[test]
fn histogram_memory_stays_flat_between_scrapes() {
    let interval = std::env::var("UPKEEP_TEST_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let telemetry = Telemetry::builder()
        .with_service_name("upkeep")
        .with_upkeep_interval(Duration::from_millis(interval))
        .install()
        .expect("installs");
    for _ in 0..200_000 {
        call();
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = resident_bytes();
    for _ in 0..4_000_000 {
        call();
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = resident_bytes();
    let growth = after.saturating_sub(before);
    assert!(
        growth < 8 << 20,
        "resident memory grew by {} KiB over 4M observations without a scrape",
        growth >> 10
    );
    let body = telemetry.render();
    assert!(
        body.contains("upkeep_call_duration_seconds_count"),
        "{body}"
    );
}
