//! The collector is slow: a real OTLP/gRPC receiver that answers each export only
//! after a delay, first shorter than the exporter's timeout (exports succeed, one
//! at a time, and the queue backs up), then longer (every export times out).
//! Instrumented calls are not slowed, every span is accounted for (exported, or
//! dropped and counted by reason), and resident memory stays bounded by the queue.
//! Its own test binary: it reads this process's resident memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use zs_observe::TraceStats;
use zs_observe_tests::otlp::SlowCollector;

#[path = "common/otlp_fns.rs"]
mod common;

/// Spans the exporter may hold: the queue bounds memory.
const QUEUE: usize = 512;
const BATCH: usize = 64;
const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// Each `execute` call ends two spans (`wasm.execute` and the inner `payment.send`).
const SPANS_PER_CALL: u64 = 2;

/// What `n` calls took.
#[derive(Debug)]
struct Run {
    total: Duration,
    slowest: Duration,
    /// Calls slower than [`STALL`].
    stalled: usize,
}

/// Half the shortest export delay: a call that waited for an export takes longer.
const STALL: Duration = Duration::from_millis(100);
/// Calls allowed over [`STALL`] for reasons of a shared, loaded machine (a
/// preempted thread). A queue that blocked when full would stall one call per
/// batch: hundreds.
const STALLS_ALLOWED: usize = 10;

fn calls(n: u64) -> Run {
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut stalled = 0;
    for i in 0..n {
        let t = Instant::now();
        assert_eq!((common::CALLS.execute)(i), i * 2);
        let took = t.elapsed();
        slowest = slowest.max(took);
        stalled += usize::from(took > STALL);
    }
    Run {
        total: started.elapsed(),
        slowest,
        stalled,
    }
}

/// Polls the stats (bounded) until `done` holds.
fn wait_stats(telemetry: &zs_observe::Telemetry, done: impl Fn(&TraceStats) -> bool) -> TraceStats {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = telemetry.trace_stats();
        if done(&s) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn dropped_metric(exposition: &str, reason: &str) -> f64 {
    let prefix = "slow_test_trace_spans_dropped_total{";
    let reason = format!("reason=\"{reason}\"");
    exposition
        .lines()
        .filter(|l| l.starts_with(prefix) && l.contains(&reason))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn slow_collector_neither_blocks_calls_nor_grows_memory_nor_loses_count_of_spans() {
    let collector = SlowCollector::grpc(Duration::from_millis(200));
    let telemetry = zs_observe::Telemetry::builder()
        .with_service_name("slow-test")
        .with_otlp_endpoint(collector.endpoint())
        .with_otlp_protocol(zs_observe::OtlpProtocol::Grpc)
        .with_sampler(zs_observe::TraceSampler::AlwaysOn)
        .with_trace_queue_size(QUEUE)
        .with_trace_batch(BATCH, Duration::from_millis(20))
        .with_trace_export_timeout(EXPORT_TIMEOUT)
        .with_log_sink(zs_observe_tests::logs::CapturedLogs::default().sink())
        .install()
        .expect("install");

    // Phase 1: 200 ms per export, within the 2 s timeout. The collector takes
    // at most 64 spans per 200 ms; the calls end spans far faster.
    const PHASE1: u64 = 30_000;
    let run1 = calls(PHASE1);
    assert!(
        run1.stalled <= STALLS_ALLOWED,
        "calls waited for the exporter: {run1:?}"
    );
    // Waiting for each of its 940 batches would take over 180 s.
    assert!(run1.total < Duration::from_secs(40), "{run1:?}");
    assert!(run1.slowest < EXPORT_TIMEOUT, "{run1:?}");
    let s1 = wait_stats(&telemetry, |s| s.exported > 0 && s.dropped_queue_full > 0);
    assert!(s1.exported > 0, "a slow collector still gets spans: {s1:?}");
    assert!(s1.dropped_queue_full > 0, "the queue backed up: {s1:?}");
    assert_eq!(s1.dropped_export_failed, 0, "no export timed out: {s1:?}");
    assert!(
        collector.spans() >= s1.exported,
        "the collector saw {} spans, the exporter counts {} exported",
        collector.spans(),
        s1.exported
    );
    let exposition = telemetry.render();
    assert!(
        dropped_metric(&exposition, "queue_full") > 0.0,
        "the dropped-span counter rose:\n{exposition}"
    );

    // Flushing under load, 50 ms per export: the flush exports what is queued
    // when it arrives (the queue's 512 spans at most, 8 batches), not everything
    // the calls keep adding meanwhile, so it returns within its timeout.
    collector.set_delay(Duration::from_millis(50));
    let stop = AtomicBool::new(false);
    let (flushed, flush_took, loaded) = std::thread::scope(|s| {
        let load = s.spawn(|| {
            let mut n = 0u64;
            // Bounded: the flush below ends it within seconds.
            while !stop.load(Ordering::Relaxed) && n < 5_000_000 {
                assert_eq!((common::CALLS.execute)(n), n * 2);
                n += 1;
            }
            n
        });
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        let flushed = telemetry.flush();
        let took = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        (flushed, took, load.join().expect("no panic"))
    });
    eprintln!("slow collector: flush under load {flushed:?} in {flush_took:?}, {loaded} calls");
    assert!(
        flushed.is_ok(),
        "flush under load: {flushed:?} after {flush_took:?}"
    );

    // Phase 2: 5 s per export, past the timeout: every export fails. Memory is
    // measured from here, after phase 1 warmed the pipeline up.
    collector.set_delay(Duration::from_secs(5));
    let rss_before = zs_observe_tests::resident_bytes();
    const PHASE2: u64 = 100_000;
    let run2 = calls(PHASE2);
    let rss_after = zs_observe_tests::resident_bytes();
    assert!(
        run2.stalled <= STALLS_ALLOWED,
        "calls waited for the exporter: {run2:?}"
    );
    assert!(run2.total < Duration::from_secs(90), "{run2:?}");
    assert!(run2.slowest < EXPORT_TIMEOUT, "{run2:?}");
    let s2 = wait_stats(&telemetry, |s| s.dropped_export_failed > 0);
    assert!(s2.dropped_export_failed > 0, "exports timed out: {s2:?}");
    assert!(s2.dropped_queue_full > s1.dropped_queue_full, "{s2:?}");
    // 200,000 spans went by; kept, they would be well over 100 MiB. The queue holds
    // at most 512 of them, and one batch is being exported.
    let growth = rss_after.saturating_sub(rss_before);
    eprintln!(
        "slow collector: RSS {} KiB -> {} KiB (+{} KiB) over {} spans; phase 1 {run1:?}, phase 2 {run2:?}",
        rss_before >> 10,
        rss_after >> 10,
        growth >> 10,
        PHASE2 * SPANS_PER_CALL,
    );
    assert!(
        growth < 8 << 20,
        "resident memory grew by {} KiB over {} spans to a slow collector",
        growth >> 10,
        PHASE2 * SPANS_PER_CALL
    );

    // The collector recovers: what is still queued is exported, and every span
    // ever ended is exported or counted as dropped, by reason, in /metrics too.
    collector.set_delay(Duration::ZERO);
    let _ = telemetry.flush();
    let ended = (PHASE1 + loaded + PHASE2) * SPANS_PER_CALL;
    let s3 = wait_stats(&telemetry, |s| {
        s.exported + s.dropped_queue_full + s.dropped_export_failed >= ended
    });
    assert_eq!(
        s3.exported + s3.dropped_queue_full + s3.dropped_export_failed,
        ended,
        "{s3:?}"
    );
    assert!(s3.exported > s2.exported, "exports resumed: {s3:?}");
    assert!(collector.spans() >= s3.exported);
    assert_eq!(collector.bad_requests(), 0);
    let exposition = telemetry.render();
    assert_eq!(
        dropped_metric(&exposition, "queue_full"),
        s3.dropped_queue_full as f64
    );
    assert_eq!(
        dropped_metric(&exposition, "export_failed"),
        s3.dropped_export_failed as f64
    );
    eprintln!(
        "slow collector: {s3:?}; collector received {} spans in {} requests",
        collector.spans(),
        collector.requests()
    );

    let t = Instant::now();
    drop(telemetry);
    assert!(
        t.elapsed() < Duration::from_secs(7),
        "drop took {:?}",
        t.elapsed()
    );
}
