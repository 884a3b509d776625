//! Resident memory between two scrapes: `cargo bench -p zs-observe-benches --bench memory`.
//!
//! Under the runtime as installed by default, renders `/metrics`, makes 10 million
//! calls of a function with span, counter and histogram, renders again, and prints
//! `VmRSS` (from `/proc/self/status`) at each step. Memory is flat when the growth
//! does not depend on the number of calls: the second 10 million calls must not
//! grow it again. Not a criterion bench: one measurement, printed.
//! Without `--bench` (as `cargo test --benches` runs it) it makes 10,000 calls.

use std::hint::black_box;
use std::time::Instant;

use zs_observe_benches::vm_rss_kib;

#[inline(never)]
#[zs_observe::instrumented(
    span = "bench.call",
    counter = "bench_calls_total",
    histogram = "bench_call_duration_seconds",
    labels(variant = "memory_zs_span_metrics_10pct")
)]
fn zs_span_metrics_10pct(x: u64) -> u64 {
    black_box(x).wrapping_add(1)
}

fn rss() -> u64 {
    vm_rss_kib().unwrap_or(0)
}

fn main() {
    let calls: u64 = if std::env::args().any(|a| a == "--bench") {
        10_000_000
    } else {
        10_000
    };
    let telemetry = zs_observe::Telemetry::builder()
        .with_service_name("bench")
        .with_log_sink(zs_observe::LogSink::from_fn(std::io::sink))
        .install()
        .expect("install the runtime");

    for i in 0..10_000 {
        zs_span_metrics_10pct(i);
    }
    let first = telemetry.render().len();
    let start_kib = rss();
    println!("memory/scrape_to_scrape: {calls} calls per round, VmRSS after the first scrape {start_kib} KiB (render {first} bytes)");
    let mut previous = start_kib;
    for round in 1..=3 {
        let started = Instant::now();
        for i in 0..calls {
            zs_span_metrics_10pct(black_box(i));
        }
        let per_call = started.elapsed().as_nanos() as f64 / calls as f64;
        let after_calls = rss();
        let rendered = telemetry.render().len();
        let after_render = rss();
        println!(
            "memory/scrape_to_scrape/round{round}: before calls {previous} KiB, after calls {after_calls} KiB ({:+} KiB), after scrape {after_render} KiB ({:+} KiB since previous scrape), {per_call:.1} ns/call, render {rendered} bytes",
            after_calls as i64 - previous as i64,
            after_render as i64 - previous as i64,
        );
        previous = after_render;
    }
}
