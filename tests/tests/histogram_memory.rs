//! A histogram is a fixed set of bucket counters: memory does not grow with the
//! number of observations between scrapes, and a scrape reads every observation
//! (none waits for an upkeep, none is lost while one folds samples, as happened with
//! `metrics-exporter-prometheus`' raw-sample buckets: 3 of 4.2 M lost at a 20 ms
//! upkeep, 17,224 at 1 ms). Its own test binary: it reads this process's resident
//! memory.

use zs_observe::{instrumented, Telemetry};

#[instrumented(
    histogram = "flat_call_duration_seconds",
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

fn count(body: &str, thread_total: u64) -> u64 {
    let line = body
        .lines()
        .find(|l| l.starts_with("flat_call_duration_seconds_count"))
        .unwrap_or_else(|| panic!("no _count line after {thread_total} calls:\n{body}"));
    line.rsplit(' ').next().unwrap().parse().expect("count")
}

#[test]
fn histogram_memory_is_flat_and_every_observation_is_counted() {
    let telemetry = Telemetry::builder()
        .with_service_name("flat")
        .install()
        .expect("installs");
    for _ in 0..200_000 {
        call();
    }
    let before = resident_bytes();
    // Two threads, so the per-thread shards are both written.
    let threads: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(|| {
                for _ in 0..2_000_000 {
                    call();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no panic");
    }
    let after = resident_bytes();
    let growth = after.saturating_sub(before);
    // Two thread stacks and their thread-locals are the only new memory.
    assert!(
        growth < 1 << 20,
        "resident memory grew by {} KiB over 4M observations without a scrape",
        growth >> 10
    );
    let body = telemetry.render();
    assert_eq!(count(&body, 4_200_000), 4_200_000, "{body}");
    let inf = body
        .lines()
        .find(|l| l.starts_with("flat_call_duration_seconds_bucket") && l.contains("le=\"+Inf\""))
        .expect("+Inf bucket");
    assert!(inf.ends_with(" 4200000"), "{inf}");
}
