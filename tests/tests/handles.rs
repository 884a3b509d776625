//! Handles for literal label sets are resolved once per call site; per-call
//! labels are looked up per call; before any recorder is installed through
//! zs-observe, calls still record (without caching) once one is.
//!
//! Its own test binary: it installs a counting recorder for the whole process.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use zs_observe::instrumented;

#[derive(Clone)]
struct Counting {
    registry: Arc<Registry<Key, AtomicStorage>>,
    registrations: Arc<AtomicUsize>,
}

impl Recorder for Counting {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.registrations.fetch_add(1, Ordering::SeqCst);
        self.registry
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.registrations.fetch_add(1, Ordering::SeqCst);
        self.registry
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.registrations.fetch_add(1, Ordering::SeqCst);
        self.registry
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

#[instrumented(
    counter = "cached_total",
    histogram = "cached_seconds",
    labels(kind = "a")
)]
fn cached() {}

#[instrumented(counter = "per_call_total", labels(kind = k))]
fn per_call(k: &'static str) {
    let _ = k;
}

#[test]
fn literal_labels_resolve_once_per_call_site_and_expressions_per_call() {
    let local = Counting {
        registry: Arc::new(Registry::atomic()),
        registrations: Arc::new(AtomicUsize::new(0)),
    };
    // Before zs-observe knows of a global recorder: no caching (a handle from the
    // no-op recorder would stay a no-op forever), so a local recorder sees every call.
    metrics::with_local_recorder(&local, || {
        cached();
        cached();
    });
    assert_eq!(
        local.registrations.load(Ordering::SeqCst),
        4,
        "two calls, one counter + one histogram each"
    );

    let global = Counting {
        registry: Arc::new(Registry::atomic()),
        registrations: Arc::new(AtomicUsize::new(0)),
    };
    let registrations = global.registrations.clone();
    let registry = global.registry.clone();
    zs_observe::set_global_recorder(global).unwrap_or_else(|_| panic!("first recorder"));

    for _ in 0..1000 {
        cached();
    }
    // 4 outcomes x (counter + histogram), registered once, on the first call.
    assert_eq!(registrations.load(Ordering::SeqCst), 8);

    let before = registrations.load(Ordering::SeqCst);
    for _ in 0..10 {
        per_call("x");
    }
    assert_eq!(
        registrations.load(Ordering::SeqCst) - before,
        10,
        "one lookup per call"
    );

    let counters = registry.get_counter_handles();
    let total: u64 = counters
        .iter()
        .filter(|(k, _)| k.name() == "cached_total")
        .map(|(_, c)| c.load(Ordering::SeqCst))
        .sum();
    assert_eq!(total, 1000);
}
