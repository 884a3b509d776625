//! The storage behind every series: plain atomics, fixed histogram buckets, and
//! per-thread shards for the series that `#[instrumented]` call sites write.
//!
//! Nothing here allocates after construction, so memory does not grow with the
//! number of calls, and a render reads exactly what was recorded (no raw samples
//! waiting for an upkeep to fold them, none lost while folding).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

/// Words (of 8 bytes) between the end of one shard and the start of the next, so two
/// shards never share a 64-byte cache line.
const GAP_WORDS: usize = 8;

/// How many shards a call-site series gets: the number of CPUs, as a power of two,
/// at most 16. One per CPU is enough for threads to rarely write the same line.
pub(crate) fn site_shards() -> usize {
    static SHARDS: OnceLock<usize> = OnceLock::new();
    *SHARDS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 16)
            .next_power_of_two()
    })
}

/// This thread's number, which picks its shard in every sharded cell (see
/// [`Sharded::base_for`]). Threads are numbered in the order they first record, so
/// the first `shards` threads never share a shard. Taken once per call by
/// `#[instrumented]` call sites that write several cells.
#[inline]
pub(crate) fn thread_number() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|i| {
        let v = i.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT.fetch_add(1, Relaxed);
        i.set(v);
        v
    })
}

/// `shards` copies of `width` words, each at least [`GAP_WORDS`] from the next.
#[derive(Debug)]
struct Sharded {
    words: Box<[AtomicU64]>,
    shards: usize,
    stride: usize,
}

impl Sharded {
    fn new(width: usize, shards: usize) -> Self {
        let shards = shards.max(1).next_power_of_two();
        let stride = if shards == 1 {
            width
        } else {
            width + GAP_WORDS
        };
        Sharded {
            words: (0..shards * stride).map(|_| AtomicU64::new(0)).collect(),
            shards,
            stride,
        }
    }

    /// The first word of this thread's shard.
    #[inline]
    fn base(&self) -> usize {
        if self.shards == 1 {
            return 0;
        }
        self.base_for(thread_number())
    }

    /// The first word of the shard of the thread numbered `thread` ([`thread_number`]).
    #[inline]
    fn base_for(&self, thread: usize) -> usize {
        (thread & (self.shards - 1)) * self.stride
    }

    #[inline]
    fn add(&self, base: usize, offset: usize, n: u64) {
        self.words[base + offset].fetch_add(n, Relaxed);
    }

    /// The sum over shards of the word at `offset` (wrapping, as the counters do).
    fn total(&self, offset: usize) -> u64 {
        (0..self.shards).fold(0u64, |acc, s| {
            acc.wrapping_add(self.words[s * self.stride + offset].load(Relaxed))
        })
    }

    fn word(&self, shard: usize, offset: usize) -> &AtomicU64 {
        &self.words[shard * self.stride + offset]
    }
}

/// A monotonic counter: one word in the cell itself (no second allocation to chase
/// when a scrape walks 100k of them), plus per-thread shards for call sites.
#[derive(Debug)]
pub(crate) struct CounterCell {
    value: AtomicU64,
    shards: Option<Sharded>,
}

impl CounterCell {
    pub(crate) fn new(shards: usize) -> Self {
        CounterCell {
            value: AtomicU64::new(0),
            shards: (shards > 1).then(|| Sharded::new(1, shards)),
        }
    }

    #[inline]
    pub(crate) fn add(&self, n: u64) {
        match &self.shards {
            Some(s) => s.add(s.base(), 0, n),
            None => {
                self.value.fetch_add(n, Relaxed);
            }
        }
    }

    /// [`CounterCell::add`] from the thread numbered `thread` ([`thread_number`]).
    #[inline]
    pub(crate) fn add_from(&self, thread: usize, n: u64) {
        match &self.shards {
            Some(s) => s.add(s.base_for(thread), 0, n),
            None => {
                self.value.fetch_add(n, Relaxed);
            }
        }
    }

    pub(crate) fn value(&self) -> u64 {
        let own = self.value.load(Relaxed);
        match &self.shards {
            Some(s) => own.wrapping_add(s.total(0)),
            None => own,
        }
    }
}

impl metrics::CounterFn for CounterCell {
    #[inline]
    fn increment(&self, value: u64) {
        self.add(value);
    }

    /// Raises the counter to `value` if it is below (`metrics`' semantics of
    /// `absolute`); the difference goes to the cell's own word.
    fn absolute(&self, value: u64) {
        let _ = self.value.fetch_update(Relaxed, Relaxed, |own| {
            let others = self.value().wrapping_sub(own);
            let wanted = value.checked_sub(others)?;
            (wanted > own).then_some(wanted)
        });
    }
}

/// A gauge: an `f64` in an atomic word.
#[derive(Debug, Default)]
pub(crate) struct GaugeCell(AtomicU64);

impl GaugeCell {
    pub(crate) fn value(&self) -> f64 {
        f64::from_bits(self.0.load(Relaxed))
    }

    #[inline]
    fn update(&self, f: impl Fn(f64) -> f64) {
        let _ = self.0.fetch_update(Relaxed, Relaxed, |bits| {
            Some(f(f64::from_bits(bits)).to_bits())
        });
    }
}

impl metrics::GaugeFn for GaugeCell {
    #[inline]
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }

    #[inline]
    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }

    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Relaxed);
    }
}

/// The upper bounds of a histogram, in seconds (or the metric's unit), in
/// nanoseconds for durations, and as rendered `le` values.
#[derive(Debug)]
pub(crate) struct Bounds {
    upper: Box<[f64]>,
    upper_nanos: Box<[u64]>,
    pub(crate) le: Box<[Box<str>]>,
}

impl Bounds {
    /// `upper` must be finite and strictly increasing (checked by the builder).
    pub(crate) fn new(upper: &[f64]) -> Arc<Self> {
        let le = upper
            .iter()
            .map(|b| {
                let mut s = String::new();
                super::render::push_f64(&mut s, *b);
                s.into_boxed_str()
            })
            .chain(std::iter::once("+Inf".into()))
            .collect();
        // v seconds <= b  <=>  n nanoseconds <= floor(b * 1e9), for integer n.
        let upper_nanos = upper
            .iter()
            .map(|b| {
                let n = (b * 1e9).floor();
                if n < 0.0 {
                    0
                } else if n >= u64::MAX as f64 {
                    u64::MAX
                } else {
                    n as u64
                }
            })
            .collect();
        Arc::new(Bounds {
            upper: upper.into(),
            upper_nanos,
            le,
        })
    }

    /// Buckets including `+Inf`.
    pub(crate) fn buckets(&self) -> usize {
        self.upper.len() + 1
    }
}

/// A histogram with fixed buckets. Per shard: one count per bucket (not
/// cumulative; `+Inf` last), the sum of `f64` observations, and the sum of
/// nanosecond observations.
#[derive(Debug)]
pub(crate) struct HistogramCell {
    bounds: Arc<Bounds>,
    words: Sharded,
}

/// What a render reads of a histogram. `count` is the sum of the buckets read,
/// so `_count` always equals the `+Inf` bucket.
pub(crate) struct HistogramSnapshot<'a> {
    pub(crate) bounds: &'a Bounds,
    pub(crate) cumulative: &'a [u64],
    pub(crate) sum: f64,
}

impl HistogramCell {
    pub(crate) fn new(bounds: Arc<Bounds>, shards: usize) -> Self {
        let width = bounds.buckets() + 2;
        HistogramCell {
            words: Sharded::new(width, shards),
            bounds,
        }
    }

    /// Buckets including `+Inf`.
    pub(crate) fn bucket_count(&self) -> usize {
        self.bounds.buckets()
    }

    /// Records one observation. `NaN` is ignored.
    #[inline]
    pub(crate) fn observe(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        let bucket = self.bounds.upper.partition_point(|b| *b < value);
        let base = self.words.base();
        self.words.add(base, bucket, 1);
        let sum = &self.words.words[base + self.bounds.buckets()];
        let _ = sum.fetch_update(Relaxed, Relaxed, |bits| {
            Some((f64::from_bits(bits) + value).to_bits())
        });
    }

    /// Records one duration in nanoseconds, from the thread numbered `thread`
    /// ([`thread_number`]): one bucket increment and one integer add.
    #[inline]
    pub(crate) fn observe_nanos_from(&self, thread: usize, nanos: u64) {
        let base = self.words.base_for(thread);
        let bucket = self
            .bounds
            .upper_nanos
            .iter()
            .position(|b| nanos <= *b)
            .unwrap_or(self.bounds.upper_nanos.len());
        self.words.add(base, bucket, 1);
        self.words.add(base, self.bounds.buckets() + 1, nanos);
    }

    /// Fills `scratch` with the cumulative bucket counts and returns the snapshot.
    pub(crate) fn snapshot<'a>(&'a self, scratch: &'a mut Vec<u64>) -> HistogramSnapshot<'a> {
        let n = self.bounds.buckets();
        scratch.clear();
        scratch.resize(n, 0);
        let mut sum = 0.0;
        let mut nanos = 0u64;
        for shard in 0..self.words.shards {
            for (b, slot) in scratch.iter_mut().enumerate() {
                *slot = slot.wrapping_add(self.words.word(shard, b).load(Relaxed));
            }
            sum += f64::from_bits(self.words.word(shard, n).load(Relaxed));
            nanos = nanos.wrapping_add(self.words.word(shard, n + 1).load(Relaxed));
        }
        let mut running = 0u64;
        for slot in scratch.iter_mut() {
            running = running.wrapping_add(*slot);
            *slot = running;
        }
        HistogramSnapshot {
            bounds: &self.bounds,
            cumulative: scratch,
            sum: sum + nanos as f64 / 1e9,
        }
    }
}

impl metrics::HistogramFn for HistogramCell {
    #[inline]
    fn record(&self, value: f64) {
        self.observe(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::CounterFn;

    #[test]
    fn buckets_follow_le_semantics() {
        let cell = HistogramCell::new(Bounds::new(&[0.1, 1.0]), 1);
        for v in [0.05, 0.1, 0.5, 1.0, 2.0, f64::NAN, -1.0] {
            cell.observe(v);
        }
        let mut scratch = Vec::new();
        let snap = cell.snapshot(&mut scratch);
        // -1, 0.05, 0.1 <= 0.1; 0.5, 1.0 <= 1; 2.0 only in +Inf; NaN ignored.
        assert_eq!(snap.cumulative, &[3, 5, 6]);
        assert!((snap.sum - 2.65).abs() < 1e-12, "{}", snap.sum);
    }

    #[test]
    fn nanosecond_observations_use_the_same_bounds() {
        let cell = HistogramCell::new(Bounds::new(&[0.005, 0.01]), 4);
        for n in [5_000_000, 5_000_001, 10_000_000, 10_000_001] {
            cell.observe_nanos_from(thread_number(), n);
        }
        cell.observe(0.004);
        let mut scratch = Vec::new();
        let snap = cell.snapshot(&mut scratch);
        assert_eq!(snap.cumulative, &[2, 4, 5]);
        assert!((snap.sum - 0.034000002).abs() < 1e-12, "{}", snap.sum);
    }

    #[test]
    fn shards_add_up_across_threads() {
        let counter = Arc::new(CounterCell::new(4));
        let hist = Arc::new(HistogramCell::new(Bounds::new(&[1.0]), 4));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (c, h) = (counter.clone(), hist.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        c.add(1);
                        h.observe_nanos_from(thread_number(), 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counter.value(), 80_000);
        let mut scratch = Vec::new();
        assert_eq!(hist.snapshot(&mut scratch).cumulative, &[80_000, 80_000]);
    }

    #[test]
    fn absolute_only_raises() {
        let c = CounterCell::new(2);
        c.add(5);
        c.absolute(3);
        assert_eq!(c.value(), 5);
        c.absolute(12);
        assert_eq!(c.value(), 12);
    }
}
