//! zs-observe's own `metrics` recorder and its Prometheus text exposition.
//!
//! Why not `metrics-exporter-prometheus` (which the runtime used first; the
//! measurements are in `docs/performance.md`):
//! - it keeps every histogram sample as an `f64` until an upkeep or a scrape folds
//!   it into buckets, so memory grows with calls between scrapes, an upkeep thread
//!   is needed, and samples recorded while a fold runs can be lost;
//! - every operation goes through `metrics-util`'s recency wrapper;
//! - a scrape formats every label of every series again (the constant labels on
//!   every line) and groups all series by name.
//!
//! Here a histogram is a fixed array of bucket counters plus its sums, series that
//! `#[instrumented]` call sites write are sharded per thread, label text is
//! rendered once when a series is registered, and families are kept sorted by
//! name, so a scrape is one pass that copies text and formats numbers. Third-party
//! `metrics::` calls go through the same [`metrics::Recorder`] implementation and
//! appear in the same exposition.

pub(crate) mod cells;
pub(crate) mod render;

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, PoisonError, RwLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

pub(crate) use cells::{site_shards, Bounds, CounterCell, GaugeCell, HistogramCell};

/// `metrics::Key` hashes itself once, at construction; its `Hash` writes that one
/// `u64`, which this hasher passes through.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by `Key`; kept correct for any other caller.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type KeyMap<V> = HashMap<Key, V, BuildHasherDefault<KeyHasher>>;

/// One series: where its text is in the family's arena, and its cell.
struct Series<C> {
    text: std::ops::Range<usize>,
    cell: Arc<C>,
}

/// The series of one name. Their text lives in one arena, in registration order, so
/// a scrape reads it front to back (with 100k series, chasing one small allocation
/// per series was most of the render time: cache misses). For counters and gauges
/// the text is the whole `name{labels} ` before the value; for histograms, the
/// labels alone (the suffix and `le` go in between).
struct Family<C> {
    arena: String,
    series: Vec<Series<C>>,
}

impl<C> Default for Family<C> {
    fn default() -> Self {
        Family {
            arena: String::new(),
            series: Vec::new(),
        }
    }
}

impl<C> Family<C> {
    fn text(&self, s: &Series<C>) -> &str {
        &self.arena[s.text.clone()]
    }
}

/// All series of one kind: by key for registration, by sanitized name (sorted) for
/// rendering, in registration order within a name.
struct Store<C> {
    by_key: KeyMap<Arc<C>>,
    families: BTreeMap<String, Family<C>>,
    series: usize,
    /// Bytes a render of this store writes, about: its output buffer is reserved
    /// once, never grown (and copied) while 100k series are written.
    text_bytes: usize,
}

impl<C> Default for Store<C> {
    fn default() -> Self {
        Store {
            by_key: KeyMap::default(),
            families: BTreeMap::new(),
            series: 0,
            text_bytes: 0,
        }
    }
}

/// How many exposition lines a series of this kind renders.
trait Lines {
    /// Whether the arena holds the whole `name{labels} ` prefix (one line a series).
    const WHOLE_LINE: bool = true;

    fn lines(&self) -> usize {
        1
    }
}

impl Lines for CounterCell {}
impl Lines for GaugeCell {}
impl Lines for HistogramCell {
    const WHOLE_LINE: bool = false;

    fn lines(&self) -> usize {
        self.bucket_count() + 2
    }
}

/// Histogram buckets: per metric name, else the default.
#[derive(Debug, Clone)]
pub(crate) struct BucketConfig {
    default: Arc<Bounds>,
    per_metric: HashMap<String, Arc<Bounds>>,
}

impl BucketConfig {
    pub(crate) fn new(default: &[f64]) -> Self {
        BucketConfig {
            default: Bounds::new(default),
            per_metric: HashMap::new(),
        }
    }

    pub(crate) fn set_default(&mut self, upper: &[f64]) {
        self.default = Bounds::new(upper);
    }

    pub(crate) fn set(&mut self, metric: &str, upper: &[f64]) {
        self.per_metric
            .insert(metric.to_owned(), Bounds::new(upper));
    }

    fn for_metric(&self, name: &str) -> Arc<Bounds> {
        self.per_metric.get(name).unwrap_or(&self.default).clone()
    }
}

/// The registry of every series in the process, shared by the recorder and the
/// handles that render it.
pub(crate) struct Registry {
    constant: Vec<(String, String)>,
    buckets: BucketConfig,
    counters: RwLock<Store<CounterCell>>,
    gauges: RwLock<Store<GaugeCell>>,
    histograms: RwLock<Store<HistogramCell>>,
    help: RwLock<HashMap<String, String>>,
}

/// Series in each family kind, for tests and the render benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeriesCount {
    /// Counter series.
    pub counters: usize,
    /// Gauge series.
    pub gauges: usize,
    /// Histogram series.
    pub histograms: usize,
}

impl SeriesCount {
    /// All series.
    pub fn total(&self) -> usize {
        self.counters + self.gauges + self.histograms
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // A panic while holding the lock cannot leave a store half-written (inserts are
    // single calls), so a poisoned lock is still consistent.
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
    pub(crate) fn new(constant: Vec<(String, String)>, buckets: BucketConfig) -> Self {
        Registry {
            constant,
            buckets,
            counters: RwLock::default(),
            gauges: RwLock::default(),
            histograms: RwLock::default(),
            help: RwLock::default(),
        }
    }

    fn get_or_insert<C: Lines>(
        &self,
        store: &RwLock<Store<C>>,
        key: &Key,
        make: impl FnOnce() -> C,
    ) -> Arc<C> {
        if let Some(cell) = read(store).by_key.get(key) {
            return cell.clone();
        }
        let mut store = write(store);
        if let Some(cell) = store.by_key.get(key) {
            return cell.clone();
        }
        let cell = Arc::new(make());
        let labels = render::label_text(&self.constant, key.labels().map(|l| (l.key(), l.value())));
        let name = render::metric_name(key.name());
        store.by_key.insert(key.clone(), cell.clone());
        store.series += 1;
        store.text_bytes += cell.lines() * (name.len() + labels.len() + 40);
        if !store.families.contains_key(&name) {
            store.text_bytes += 2 * name.len() + 40;
        }
        let mut line = String::new();
        let piece = if C::WHOLE_LINE {
            render::push_series(&mut line, &name, "", &labels, None);
            &line
        } else {
            &labels
        };
        let family = store.families.entry(name).or_default();
        let start = family.arena.len();
        family.arena.push_str(piece);
        let text = start..family.arena.len();
        family.series.push(Series {
            text,
            cell: cell.clone(),
        });
        cell
    }

    /// The counter of `key`; a new one gets `shards` per-thread shards.
    pub(crate) fn counter(&self, key: &Key, shards: usize) -> Arc<CounterCell> {
        self.get_or_insert(&self.counters, key, || CounterCell::new(shards))
    }

    pub(crate) fn gauge(&self, key: &Key) -> Arc<GaugeCell> {
        self.get_or_insert(&self.gauges, key, GaugeCell::default)
    }

    /// The histogram of `key` with its metric's buckets; a new one gets `shards` shards.
    pub(crate) fn histogram(&self, key: &Key, shards: usize) -> Arc<HistogramCell> {
        self.get_or_insert(&self.histograms, key, || {
            HistogramCell::new(self.buckets.for_metric(key.name()), shards)
        })
    }

    fn describe(&self, name: &str, description: &str) {
        write(&self.help).insert(render::metric_name(name), render::help_text(description));
    }

    fn text_bytes(&self) -> usize {
        read(&self.counters).text_bytes
            + read(&self.gauges).text_bytes
            + read(&self.histograms).text_bytes
            + read(&self.help)
                .values()
                .map(|h| h.len() + 64)
                .sum::<usize>()
    }

    pub(crate) fn series_count(&self) -> SeriesCount {
        SeriesCount {
            counters: read(&self.counters).series,
            gauges: read(&self.gauges).series,
            histograms: read(&self.histograms).series,
        }
    }

    /// The whole exposition: counters, gauges, then histograms, each family sorted
    /// by name, a blank line after each.
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(1024 + self.text_bytes());
        let help = read(&self.help);
        render_lines(
            &mut out,
            &help,
            &read(&self.counters),
            "counter",
            |out, c| {
                render::push_u64(out, c.value());
            },
        );
        render_lines(&mut out, &help, &read(&self.gauges), "gauge", |out, g| {
            render::push_f64(out, g.value());
        });
        {
            let histograms = read(&self.histograms);
            let mut scratch = Vec::new();
            for (name, family) in &histograms.families {
                family_header(&mut out, &help, name, "histogram");
                for s in &family.series {
                    let labels = family.text(s);
                    let snap = s.cell.snapshot(&mut scratch);
                    for (le, count) in snap.bounds.le.iter().zip(snap.cumulative) {
                        render::push_series(&mut out, name, "_bucket", labels, Some(("le", le)));
                        render::push_u64(&mut out, *count);
                        out.push('\n');
                    }
                    render::push_series(&mut out, name, "_sum", labels, None);
                    render::push_f64(&mut out, snap.sum);
                    out.push('\n');
                    render::push_series(&mut out, name, "_count", labels, None);
                    render::push_u64(&mut out, snap.cumulative.last().copied().unwrap_or(0));
                    out.push('\n');
                }
                out.push('\n');
            }
        }
        out
    }
}

/// Families of one-line series (counters, gauges): the stored prefix, the value.
fn render_lines<C>(
    out: &mut String,
    help: &HashMap<String, String>,
    store: &Store<C>,
    kind: &str,
    value: impl Fn(&mut String, &C),
) {
    for (name, family) in &store.families {
        family_header(out, help, name, kind);
        for s in &family.series {
            out.push_str(family.text(s));
            value(out, &s.cell);
            out.push('\n');
        }
        out.push('\n');
    }
}

fn family_header(out: &mut String, help: &HashMap<String, String>, name: &str, kind: &str) {
    if let Some(text) = help.get(name) {
        out.push_str("# HELP ");
        out.push_str(name);
        out.push(' ');
        out.push_str(text);
        out.push('\n');
    }
    out.push_str("# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

/// The `metrics::Recorder` the runtime installs. Every `metrics::` call in the
/// process (the attribute's, the runtime's, third-party crates') lands here.
#[derive(Clone)]
pub(crate) struct ZsRecorder {
    pub(crate) registry: Arc<Registry>,
}

impl Recorder for ZsRecorder {
    fn describe_counter(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.registry.describe(key.as_str(), &description);
    }

    fn describe_gauge(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.registry.describe(key.as_str(), &description);
    }

    fn describe_histogram(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.registry.describe(key.as_str(), &description);
    }

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.registry.counter(key, 1))
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.registry.gauge(key))
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.registry.histogram(key, 1))
    }
}

/// Renders the exposition of the installed runtime; cheap to clone. Get it from
/// [`Telemetry::metrics_handle`](crate::Telemetry::metrics_handle) for a transport
/// of your own.
#[derive(Clone)]
pub struct MetricsHandle {
    pub(crate) registry: Arc<Registry>,
}

impl std::fmt::Debug for MetricsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsHandle")
            .field("series", &self.registry.series_count())
            .finish()
    }
}

impl MetricsHandle {
    /// The Prometheus text exposition (format 0.0.4) of every series.
    pub fn render(&self) -> String {
        self.registry.render()
    }

    /// How many series exist, by kind.
    pub fn series_count(&self) -> SeriesCount {
        self.registry.series_count()
    }
}

/// The registry of the recorder installed by [`crate::Telemetry`], if that is the
/// global recorder: call sites then write its cells directly.
static INSTALLED: std::sync::OnceLock<Arc<Registry>> = std::sync::OnceLock::new();

pub(crate) fn installed() -> Option<&'static Arc<Registry>> {
    INSTALLED.get()
}

/// Makes `registry` the one call sites write directly. Called right after the
/// recorder holding it became the global recorder.
pub(crate) fn mark_installed(registry: Arc<Registry>) {
    let _ = INSTALLED.set(registry);
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::Label;

    fn registry() -> Registry {
        Registry::new(
            vec![("service".into(), "svc".into())],
            BucketConfig::new(&[0.1, 1.0]),
        )
    }

    #[test]
    fn renders_every_kind_with_help_and_constant_labels() {
        let r = registry();
        let rec = ZsRecorder {
            registry: Arc::new(r),
        };
        rec.describe_counter("jobs_total".into(), None, "Jobs\ndone \\ so far.".into());
        let k = Key::from_parts("jobs_total", vec![Label::new("kind", "a\"b")]);
        rec.register_counter(&k, &Metadata::new("t", metrics::Level::INFO, None))
            .increment(3);
        rec.register_gauge(
            &Key::from_name("queue_depth"),
            &Metadata::new("t", metrics::Level::INFO, None),
        )
        .set(2.5);
        let h = rec.register_histogram(
            &Key::from_name("job_duration_seconds"),
            &Metadata::new("t", metrics::Level::INFO, None),
        );
        h.record(0.05);
        h.record(5.0);
        let text = rec.registry.render();
        assert_eq!(
            text,
            "# HELP jobs_total Jobs\\ndone \\\\ so far.\n\
             # TYPE jobs_total counter\n\
             jobs_total{service=\"svc\",kind=\"a\\\"b\"} 3\n\n\
             # TYPE queue_depth gauge\n\
             queue_depth{service=\"svc\"} 2.5\n\n\
             # TYPE job_duration_seconds histogram\n\
             job_duration_seconds_bucket{service=\"svc\",le=\"0.1\"} 1\n\
             job_duration_seconds_bucket{service=\"svc\",le=\"1\"} 1\n\
             job_duration_seconds_bucket{service=\"svc\",le=\"+Inf\"} 2\n\
             job_duration_seconds_sum{service=\"svc\"} 5.05\n\
             job_duration_seconds_count{service=\"svc\"} 2\n\n"
        );
    }

    #[test]
    fn one_key_is_one_series() {
        let r = registry();
        let k = Key::from_parts("a_total", vec![Label::new("x", "1")]);
        let c1 = r.counter(&k, 1);
        let c2 = r.counter(&k, 4);
        assert!(Arc::ptr_eq(&c1, &c2));
        assert_eq!(r.series_count().counters, 1);
    }
}

#[cfg(test)]
mod conformance;
