//! What `#[instrumented]` expands to at run time: one [`CallSite`] static per
//! annotated function, and a [`Guard`] per call that records on every exit.

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::call_span::{CallSpan, Entered};
use crate::exposition::{self, CounterCell, GaugeCell, HistogramCell};
use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata};

/// Set once a global recorder is installed through this crate. Until then call
/// sites do not cache handles: a handle taken from the no-op recorder would stay
/// a no-op forever.
static RECORDER_READY: AtomicBool = AtomicBool::new(false);

pub(crate) fn mark_recorder_installed() {
    RECORDER_READY.store(true, Ordering::Release);
}

/// Whether handles may be cached (see [`RECORDER_READY`]).
pub(crate) fn recorder_ready() -> bool {
    RECORDER_READY.load(Ordering::Acquire)
}

/// The clock of call durations: the CPU's time-stamp counter where it is invariant
/// (a read is one instruction, against a `clock_gettime` call for `Instant::now`),
/// scaled to nanoseconds by a calibration against the monotonic clock done once;
/// the monotonic clock elsewhere.
///
/// `quanta` chooses the source and calibrates it. Its reads are calls into another
/// crate, so where it chose the TSC the counter is read here, inline at the call
/// site, and scaled with the factor `quanta` computed (two calls and ~25
/// instructions fewer per timed call).
pub(crate) struct CallClock {
    quanta: quanta::Clock,
    /// Nanoseconds per 2^32 ticks when the source is the TSC; 0 otherwise.
    tsc_scale: u64,
}

impl CallClock {
    fn new() -> CallClock {
        let quanta = quanta::Clock::new();
        let tsc_scale = if reads_tsc(&quanta) {
            quanta.delta_as_nanos(0, 1 << 32)
        } else {
            0
        };
        CallClock { quanta, tsc_scale }
    }

    /// A raw reading, for [`CallClock::delta_as_nanos`].
    #[inline]
    pub(crate) fn raw(&self) -> u64 {
        if self.tsc_scale != 0 {
            return tsc();
        }
        self.quanta.raw()
    }

    /// Nanoseconds from `start` to `end` (0 when `end` is not later).
    #[inline]
    pub(crate) fn delta_as_nanos(&self, start: u64, end: u64) -> u64 {
        if self.tsc_scale != 0 {
            if end <= start {
                return 0;
            }
            let nanos = (u128::from(end - start) * u128::from(self.tsc_scale)) >> 32;
            return u64::try_from(nanos).unwrap_or(u64::MAX);
        }
        self.quanta.delta_as_nanos(start, end)
    }
}

/// The time-stamp counter (0 on other architectures, where it is never used).
#[inline]
fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code, unused_unsafe)]
    // SAFETY: `rdtsc` exists on every x86_64 CPU and only reads the counter.
    return unsafe { core::arch::x86_64::_rdtsc() };
    #[cfg(not(target_arch = "x86_64"))]
    0
}

/// Whether `quanta` reads the time-stamp counter: its reading falls between two
/// reads of the counter, three times in a row (a monotonic-clock reading, in
/// nanoseconds since boot, would have to equal the counter to the tick).
fn reads_tsc(quanta: &quanta::Clock) -> bool {
    cfg!(target_arch = "x86_64")
        && (0..3).all(|_| {
            let before = tsc();
            let raw = quanta.raw();
            let after = tsc();
            before <= raw && raw <= after
        })
}

#[inline]
pub(crate) fn clock() -> &'static CallClock {
    static CLOCK: OnceLock<CallClock> = OnceLock::new();
    CLOCK.get_or_init(CallClock::new)
}

/// Calibrates the clock now (about a millisecond), not in the first call.
pub(crate) fn warm_clock() {
    let _ = clock();
}

/// How an instrumented call ended; the value of the automatic outcome label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Returned normally (for a `Result`, returned `Ok`).
    Ok,
    /// Returned `Err`.
    Error,
    /// Unwound with a panic (the panic continues untouched).
    Panic,
    /// The future was dropped before it completed.
    Cancelled,
}

impl Outcome {
    /// Every outcome, in label-value order.
    pub const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Error,
        Outcome::Panic,
        Outcome::Cancelled,
    ];

    /// The label value: `ok`, `error`, `panic` or `cancelled`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Panic => "panic",
            Outcome::Cancelled => "cancelled",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }

    #[inline]
    fn from_index(index: u8) -> Option<Outcome> {
        Outcome::ALL.get(usize::from(index)).copied()
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classifies a `Result` by its variant (picked by method resolution in the
/// expansion: `(&ret).__zs_outcome()`).
#[doc(hidden)]
pub trait OutcomeOfResult {
    fn __zs_outcome(&self) -> Outcome;
}

impl<T, E> OutcomeOfResult for Result<T, E> {
    #[inline]
    fn __zs_outcome(&self) -> Outcome {
        if self.is_ok() {
            Outcome::Ok
        } else {
            Outcome::Error
        }
    }
}

/// Any other return type is `ok` (chosen through auto-ref when the value is not a `Result`).
#[doc(hidden)]
pub trait OutcomeOfAny {
    fn __zs_outcome(&self) -> Outcome;
}

impl<T: ?Sized> OutcomeOfAny for &T {
    #[inline]
    fn __zs_outcome(&self) -> Outcome {
        Outcome::Ok
    }
}

/// Passed to the completion-log hook of a call site (`log` key).
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    /// How the call ended.
    pub outcome: Outcome,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Completion {
    /// The duration in seconds, the base unit of the duration histograms.
    pub fn elapsed_seconds(&self) -> f64 {
        self.elapsed.as_secs_f64()
    }
}

/// Metric handles of one call site with only literal labels, one per outcome.
enum Handles {
    /// The runtime's own registry is the global recorder: the cells themselves,
    /// sharded per thread, durations recorded as integer nanoseconds.
    Native {
        counters: Option<[Arc<CounterCell>; 4]>,
        histograms: Option<[Arc<HistogramCell>; 4]>,
        in_flight: Option<Arc<GaugeCell>>,
    },
    /// Any other recorder: its handles, through the `metrics` API.
    Recorder {
        counters: Option<[Counter; 4]>,
        histograms: Option<[Histogram; 4]>,
        in_flight: Option<Gauge>,
    },
}

/// The static an `#[instrumented]` function gets: its metric names and literal
/// labels, plus the handles, resolved once per call site.
#[doc(hidden)]
pub struct CallSite {
    module: &'static str,
    function: &'static str,
    metrics: &'static [&'static str],
    counter: Option<&'static str>,
    histogram: Option<&'static str>,
    in_flight: Option<&'static str>,
    labels: &'static [(&'static str, &'static str)],
    dynamic_labels: bool,
    outcome_label: Option<&'static str>,
    on_complete: Option<fn(&Completion)>,
    handles: OnceLock<Handles>,
}

impl CallSite {
    #[allow(clippy::too_many_arguments)]
    #[doc(hidden)]
    pub const fn new(
        module: &'static str,
        function: &'static str,
        metrics: &'static [&'static str],
        counter: Option<&'static str>,
        histogram: Option<&'static str>,
        in_flight: Option<&'static str>,
        labels: &'static [(&'static str, &'static str)],
        dynamic_labels: bool,
        outcome_label: Option<&'static str>,
        on_complete: Option<fn(&Completion)>,
    ) -> Self {
        CallSite {
            module,
            function,
            metrics,
            counter,
            histogram,
            in_flight,
            labels,
            dynamic_labels,
            outcome_label,
            on_complete,
            handles: OnceLock::new(),
        }
    }

    /// The annotated function, with its module path.
    pub(crate) fn function(&self) -> &'static str {
        self.function
    }

    /// The metric names this call site records (counter, histogram, in-flight gauge).
    pub(crate) fn metrics(&self) -> &'static [&'static str] {
        self.metrics
    }

    #[inline]
    fn handles(&'static self) -> Option<&'static Handles> {
        if self.dynamic_labels {
            return None;
        }
        if let Some(handles) = self.handles.get() {
            return Some(handles);
        }
        if RECORDER_READY.load(Ordering::Acquire) {
            Some(self.handles.get_or_init(|| self.register_all()))
        } else {
            None
        }
    }

    fn metadata(&self) -> Metadata<'static> {
        Metadata::new(self.module, Level::INFO, Some(self.module))
    }

    fn key(&self, name: &'static str, dynamic: &[Label], outcome: Option<Outcome>) -> Key {
        let mut labels: Vec<Label> = Vec::with_capacity(self.labels.len() + dynamic.len() + 1);
        labels.extend(
            self.labels
                .iter()
                .map(|(k, v)| Label::from_static_parts(k, v)),
        );
        // Per-call values pass the cardinality guard: over the bound they collapse.
        labels.extend(
            dynamic
                .iter()
                .map(|l| crate::cardinality::bound_label(name, l)),
        );
        if let (Some(label), Some(outcome)) = (self.outcome_label, outcome) {
            labels.push(Label::from_static_parts(label, outcome.as_str()));
        }
        Key::from_parts(name, labels)
    }

    fn counter(&self, dynamic: &[Label], outcome: Outcome) -> Option<Counter> {
        let name = self.counter?;
        let key = self.key(name, dynamic, Some(outcome));
        Some(metrics::with_recorder(|r| {
            r.register_counter(&key, &self.metadata())
        }))
    }

    fn histogram(&self, dynamic: &[Label], outcome: Outcome) -> Option<Histogram> {
        let name = self.histogram?;
        let key = self.key(name, dynamic, Some(outcome));
        Some(metrics::with_recorder(|r| {
            r.register_histogram(&key, &self.metadata())
        }))
    }

    fn gauge(&self, dynamic: &[Label]) -> Option<Gauge> {
        let name = self.in_flight?;
        let key = self.key(name, dynamic, None);
        Some(metrics::with_recorder(|r| {
            r.register_gauge(&key, &self.metadata())
        }))
    }

    /// Registers every outcome's series up front, so that an error rate of zero
    /// is a series at zero rather than an absent one.
    fn register_all(&self) -> Handles {
        if let Some(registry) = exposition::installed() {
            let shards = exposition::site_shards();
            return Handles::Native {
                counters: self.counter.map(|name| {
                    Outcome::ALL.map(|o| registry.counter(&self.key(name, &[], Some(o)), shards))
                }),
                histograms: self.histogram.map(|name| {
                    Outcome::ALL.map(|o| registry.histogram(&self.key(name, &[], Some(o)), shards))
                }),
                in_flight: self
                    .in_flight
                    .map(|name| registry.gauge(&self.key(name, &[], None))),
            };
        }
        Handles::Recorder {
            counters: self
                .counter
                .map(|_| Outcome::ALL.map(|o| self.counter(&[], o).unwrap_or_else(Counter::noop))),
            histograms: self.histogram.map(|_| {
                Outcome::ALL.map(|o| self.histogram(&[], o).unwrap_or_else(Histogram::noop))
            }),
            in_flight: self.gauge(&[]),
        }
    }
}

/// One call in progress. Created before the body runs; records when dropped,
/// whichever way the call ends.
#[doc(hidden)]
pub struct Guard {
    site: &'static CallSite,
    handles: Option<&'static Handles>,
    /// Ended by the drop, after the completion hook (see [`CallSpan::end`]).
    span: ManuallyDrop<CallSpan>,
    /// Raw clock reading at the start (see [`clock`]); read only when the site
    /// times its calls ([`CallSite::timed`]).
    start: u64,
    /// The per-call labels and in-flight gauge of a site with dynamic labels (most
    /// sites have none: the guard stays small, and moving it cheap).
    /// Taken once, by the drop (kept out of the drop glue, which called a function
    /// to drop `None` at every call).
    dynamic: ManuallyDrop<Option<Box<DynamicCall>>>,
    /// Set by [`Guard::finish`] (an [`Outcome::index`]); [`NO_OUTCOME`] at drop: the
    /// call panicked or was cancelled. Atomic rather than a `Cell` so that the guard
    /// stays `Sync`: an `async fn`'s future holds `&Guard` across its awaits.
    outcome: AtomicU8,
}

const NO_OUTCOME: u8 = u8::MAX;

struct DynamicCall {
    labels: Vec<Label>,
    in_flight: Option<Gauge>,
}

impl CallSite {
    /// Whether calls are timed (a duration histogram or a completion hook).
    #[inline]
    fn timed(&self) -> bool {
        self.histogram.is_some() || self.on_complete.is_some()
    }
}

impl Guard {
    /// Starts a call: takes the time and raises the in-flight gauge.
    #[inline]
    pub fn start(site: &'static CallSite, span: CallSpan, dynamic: Option<Vec<Label>>) -> Guard {
        let handles = site.handles();
        let mut in_flight = None;
        if site.in_flight.is_some() {
            match handles {
                Some(Handles::Native {
                    in_flight: Some(g), ..
                }) => metrics::GaugeFn::increment(&**g, 1.0),
                Some(Handles::Recorder {
                    in_flight: Some(g), ..
                }) => g.increment(1.0),
                Some(_) => {}
                None => {
                    in_flight = site.gauge(dynamic.as_deref().unwrap_or(&[]));
                    if let Some(g) = &in_flight {
                        g.increment(1.0);
                    }
                }
            }
        }
        let dynamic = match (dynamic, in_flight) {
            (None, None) => None,
            (labels, in_flight) => Some(Box::new(DynamicCall {
                labels: labels.unwrap_or_default(),
                in_flight,
            })),
        };
        let start = if site.timed() { clock().raw() } else { 0 };
        Guard {
            site,
            handles,
            span: ManuallyDrop::new(span),
            start,
            dynamic: ManuallyDrop::new(dynamic),
            outcome: AtomicU8::new(NO_OUTCOME),
        }
    }

    /// Enters the call's span.
    #[inline]
    pub fn enter(&self) -> Entered<'_> {
        self.span.enter()
    }

    /// Marks the call's span failed (on `Err`), with the error as its description.
    pub fn record_error<V: tracing::Value>(&self, description: V) {
        self.span.record_error(description);
    }

    /// Ends the call with a known outcome (the drop records it).
    #[inline]
    pub fn finish(&self, outcome: Outcome) {
        self.outcome.store(outcome.index() as u8, Ordering::Relaxed);
    }
}

impl Drop for Guard {
    #[inline]
    fn drop(&mut self) {
        #[allow(unsafe_code)]
        // SAFETY: taken here only, once; `self.dynamic` is not used after.
        let mut dynamic = unsafe { ManuallyDrop::take(&mut self.dynamic) };
        let outcome =
            Outcome::from_index(self.outcome.load(Ordering::Relaxed)).unwrap_or_else(|| {
                if std::thread::panicking() {
                    Outcome::Panic
                } else {
                    Outcome::Cancelled
                }
            });
        let site = self.site;
        let nanos = site.timed().then(|| {
            let clock = clock();
            clock.delta_as_nanos(self.start, clock.raw())
        });
        let index = outcome.index();
        match self.handles {
            Some(Handles::Native {
                counters,
                histograms,
                in_flight,
            }) => {
                // One look at this thread's shard for both cells.
                let thread = exposition::thread_number();
                if let Some(c) = counters {
                    c[index].add_from(thread, 1);
                }
                if let (Some(h), Some(nanos)) = (histograms, nanos) {
                    h[index].observe_nanos_from(thread, nanos);
                }
                if let Some(g) = in_flight {
                    metrics::GaugeFn::decrement(&**g, 1.0);
                }
            }
            Some(Handles::Recorder {
                counters,
                histograms,
                in_flight,
            }) => {
                if let Some(c) = counters {
                    c[index].increment(1);
                }
                if let (Some(h), Some(nanos)) = (histograms, nanos) {
                    h[index].record(nanos as f64 / 1e9);
                }
                if let Some(g) = in_flight {
                    g.decrement(1.0);
                }
            }
            None => record_without_handles(site, dynamic.take(), outcome, nanos),
        }
        // Matched rather than left to the drop glue, which was a function call at
        // every call (a site with handles has no per-call labels or gauge: `None`).
        if let Some(dynamic) = dynamic {
            drop(dynamic);
        }
        if let (Some(hook), Some(nanos)) = (site.on_complete, nanos) {
            completed(&mut self.span, hook, outcome, nanos);
        }
        self.span.end();
    }
}

/// Runs a site's completion hook inside the call's span; the span ends after it, or
/// while unwinding if the hook panics.
#[inline(never)]
fn completed(span: &mut CallSpan, hook: fn(&Completion), outcome: Outcome, nanos: u64) {
    struct EndOnDrop<'a>(&'a mut CallSpan);
    impl Drop for EndOnDrop<'_> {
        fn drop(&mut self) {
            self.0.end();
        }
    }
    let span = EndOnDrop(span);
    let _entered = span.0.enter();
    hook(&Completion {
        outcome,
        elapsed: Duration::from_nanos(nanos),
    });
}

/// A site with dynamic labels, or any site before a recorder is installed: the
/// series are looked up per call.
#[inline(never)]
fn record_without_handles(
    site: &'static CallSite,
    dynamic: Option<Box<DynamicCall>>,
    outcome: Outcome,
    nanos: Option<u64>,
) {
    let labels = dynamic.as_ref().map_or(&[][..], |d| &d.labels[..]);
    if let Some(c) = site.counter(labels, outcome) {
        c.increment(1);
    }
    if let (Some(h), Some(nanos)) = (site.histogram(labels, outcome), nanos) {
        h.record(nanos as f64 / 1e9);
    }
    if let Some(g) = dynamic.and_then(|d| d.in_flight) {
        g.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_clock_durations_agree_with_the_monotonic_clock() {
        let clock = clock();
        for _ in 0..3 {
            let wall = std::time::Instant::now();
            let start = clock.raw();
            std::thread::sleep(Duration::from_millis(20));
            let nanos = clock.delta_as_nanos(start, clock.raw());
            let elapsed = wall.elapsed().as_nanos() as u64;
            // The call clock's interval lies inside the wall interval, give or take
            // the calibration's error (well under 1 %).
            assert!(
                nanos >= 20_000_000 * 99 / 100,
                "{nanos} ns for a 20 ms sleep"
            );
            assert!(
                nanos <= elapsed + elapsed / 100,
                "{nanos} ns within {elapsed} ns"
            );
        }
        assert_eq!(clock.delta_as_nanos(10, 10), 0);
        assert_eq!(clock.delta_as_nanos(11, 10), 0);
    }

    #[test]
    fn an_outcome_is_its_index_and_no_outcome_is_none() {
        for outcome in Outcome::ALL {
            assert_eq!(Outcome::from_index(outcome.index() as u8), Some(outcome));
        }
        assert_eq!(Outcome::from_index(NO_OUTCOME), None);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_tsc_is_read_inline_exactly_when_quanta_reads_it() {
        let clock = clock();
        let before = tsc();
        let raw = clock.quanta.raw();
        let after = tsc();
        let quanta_reads_tsc = before <= raw && raw <= after;
        assert_eq!(clock.tsc_scale != 0, quanta_reads_tsc);
    }
}
