//! The benchmark suite of zs-observe (not published): what an instrumented call
//! costs against the physical floor and against its peers, how it scales to two
//! threads, how long `/metrics` takes to render, and whether memory stays flat
//! between scrapes.
//!
//! Everything lives in `benches/*.rs`; run it all with
//! `cargo bench -p zs-observe-benches`. Each global setup (a `metrics` recorder,
//! a `tracing` subscriber) can be installed once per process, so each setup has
//! its own bench binary. Results and their analysis: `docs/performance.md`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Upper bounds of the floor's histogram buckets, in seconds: the runtime's
/// default buckets (`zs_observe::DEFAULT_BUCKETS`).
pub const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The physical floor of "count a call and time it": two `Instant::now()` reads,
/// one relaxed add to a counter and one to the matching histogram bucket.
/// Nothing an instrumentation library does per call can be cheaper.
#[derive(Debug, Default)]
pub struct Floor {
    calls: AtomicU64,
    buckets: [AtomicU64; 12],
}

impl Floor {
    /// A floor with every count at zero (usable in a `static`).
    pub const fn new() -> Self {
        Floor {
            calls: AtomicU64::new(0),
            buckets: [const { AtomicU64::new(0) }; 12],
        }
    }

    /// Runs `body`, then counts the call and its duration's bucket.
    #[inline]
    pub fn call<T>(&self, body: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let ret = body();
        self.count(Instant::now().duration_since(start).as_secs_f64());
        ret
    }

    /// The two relaxed adds: the call and its bucket.
    #[inline]
    fn count(&self, seconds: f64) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let bucket = BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The same work timed with the CPU's time-stamp counter (`quanta`, the clock
    /// zs-observe's call sites use) instead of `Instant::now()`: the floor for a
    /// library that chose that clock.
    #[inline]
    pub fn call_tsc<T>(&self, clock: &quanta::Clock, body: impl FnOnce() -> T) -> T {
        let start = clock.raw();
        let ret = body();
        self.count(clock.delta_as_nanos(start, clock.raw()) as f64 / 1e9);
        ret
    }

    /// How many calls were counted.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// The resident set size of this process in KiB (`VmRSS` of `/proc/self/status`),
/// or `None` where that file does not exist.
pub fn vm_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_counts_each_call_once() {
        let floor = Floor::new();
        assert_eq!(floor.call(|| 2 + 2), 4);
        floor.call(|| ());
        floor.call_tsc(&quanta::Clock::new(), || ());
        assert_eq!(floor.calls(), 3);
        let bucketed: u64 = floor
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum();
        assert_eq!(bucketed, 3);
    }

    #[test]
    fn rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(vm_rss_kib().is_some_and(|kib| kib > 0));
        }
    }
}
