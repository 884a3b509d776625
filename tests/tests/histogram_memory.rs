//! A histogram is a fixed set of bucket counters: memory does not grow with the
//! number of observations between scrapes (10 million observations from two
//! threads, resident memory sampled while they land), and a scrape reads every
//! observation (none waits for an upkeep, none is lost while one folds samples, as
//! happened with `metrics-exporter-prometheus`' raw-sample buckets: 3 of 4.2 M lost
//! at a 20 ms upkeep, 17,224 at 1 ms). Its own test binary: it reads this
//! process's resident memory.

use zs_observe::{instrumented, Telemetry};

#[instrumented(
    histogram = "flat_call_duration_seconds",
    span = false,
    outcome = false
)]
fn call() {}

fn count(body: &str, thread_total: u64) -> u64 {
    let line = body
        .lines()
        .find(|l| l.starts_with("flat_call_duration_seconds_count"))
        .unwrap_or_else(|| panic!("no _count line after {thread_total} calls:\n{body}"));
    line.rsplit(' ').next().unwrap().parse().expect("count")
}

/// Observations before the baseline (allocates the call site's cells and the
/// thread-local shards of the main thread).
const WARMUP: u64 = 200_000;
/// Writer threads, so several per-thread shards are written.
const THREADS: u64 = 2;
/// Observations between the baseline and the scrape: 10 million.
const OBSERVATIONS: u64 = 10_000_000;
/// Calls per chunk; the writers report progress between chunks.
const CHUNK: u64 = 250_000;

#[test]
fn histogram_memory_is_flat_and_every_observation_is_counted() {
    let telemetry = Telemetry::builder()
        .with_service_name("flat")
        .install()
        .expect("installs");
    for _ in 0..WARMUP {
        call();
    }
    let started = std::time::Instant::now();
    let before = zs_observe_tests::resident_bytes();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let per_thread = OBSERVATIONS / THREADS;
    assert_eq!(per_thread * THREADS, OBSERVATIONS);
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let done = done.clone();
            std::thread::spawn(move || {
                for _ in 0..per_thread / CHUNK {
                    for _ in 0..CHUNK {
                        call();
                    }
                    done.fetch_add(CHUNK, std::sync::atomic::Ordering::Relaxed);
                }
                for _ in 0..per_thread % CHUNK {
                    call();
                }
            })
        })
        .collect();
    // Resident memory sampled while the observations land (every 20 ms, bounded by
    // the writers finishing or two minutes), not only at the end.
    let mut peak = before;
    let mut samples = 0u32;
    let deadline = started + std::time::Duration::from_secs(120);
    while threads.iter().any(|t| !t.is_finished()) {
        assert!(
            std::time::Instant::now() < deadline,
            "writers did not finish in 2 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        peak = peak.max(zs_observe_tests::resident_bytes());
        samples += 1;
    }
    for t in threads {
        t.join().expect("no panic");
    }
    let after = zs_observe_tests::resident_bytes();
    peak = peak.max(after);
    let growth = peak.saturating_sub(before);
    println!(
        "{OBSERVATIONS} observations from {THREADS} threads in {:?}: resident {} KiB before, \
         {} KiB after, peak growth {} KiB over {samples} samples",
        started.elapsed(),
        before >> 10,
        after >> 10,
        growth >> 10
    );
    assert_eq!(
        done.load(std::sync::atomic::Ordering::Relaxed),
        OBSERVATIONS,
        "every writer chunk ran"
    );
    // Two thread stacks and their thread-locals are the only new memory (a store
    // of the raw samples would need 80 MB: 10 M × 8 bytes).
    assert!(
        growth < 1 << 20,
        "resident memory grew by {} KiB over {OBSERVATIONS} observations without a scrape",
        growth >> 10
    );
    let body = telemetry.render();
    let total = WARMUP + OBSERVATIONS;
    assert_eq!(count(&body, total), total, "{body}");
    let inf = body
        .lines()
        .find(|l| l.starts_with("flat_call_duration_seconds_bucket") && l.contains("le=\"+Inf\""))
        .expect("+Inf bucket");
    assert!(inf.ends_with(&format!(" {total}")), "{inf}");
}
