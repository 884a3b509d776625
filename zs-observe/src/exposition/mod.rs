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
//!
//! Each family holds at most its series limit of label sets ([`SeriesLimits`]: the
//! catalog's declared bound, else the builder's limit, by default
//! [`DEFAULT_SERIES_LIMIT`](crate::cardinality::DEFAULT_SERIES_LIMIT)). The check
//! runs only when a new label set is registered, under the write lock that inserts
//! it; looking up an existing series, and every handle, cost what they did. Past
//! the limit, a new label set gets the family's overflow series (same label names,
//! every value `_overflow`) and is counted in
//! `<namespace>_cardinality_overflow_total{metric, label}`.

pub(crate) mod cells;
pub(crate) mod render;

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, PoisonError, RwLock};

use std::sync::OnceLock;

use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString, Unit,
};

use crate::cardinality::{self, OVERFLOW_VALUE};

pub(crate) use cells::{site_shards, thread_number, Bounds, CounterCell, GaugeCell, HistogramCell};

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
    /// The most series this family keeps (its overflow series comes on top).
    limit: usize,
    /// Where label sets past the limit go, once the first one came.
    overflow: Option<Arc<Overflow<C>>>,
}

impl<C> Family<C> {
    fn new(limit: usize) -> Self {
        Family {
            arena: String::new(),
            series: Vec::new(),
            limit,
            overflow: None,
        }
    }
}

/// A family's overflow series and the counter of the label sets redirected to it.
struct Overflow<C> {
    cell: Arc<C>,
    /// `<namespace>_cardinality_overflow_total{metric, label}`, registered on the
    /// first redirect (outside the store's lock: it may be the counter store).
    counted: OnceLock<Arc<CounterCell>>,
    metric: String,
    label: String,
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

/// How many series each family may hold. A metric the catalog declares keeps every
/// label set the label guard can let through
/// ([`cardinality::series_limit_of_bounds`] of its labels' bounds: declared, or the
/// default label bound for a label the catalog does not declare); any other metric
/// keeps `default`. The overflow counter itself is exempt (one series per
/// overflowing metric and label; capping it would hide the overflow it reports).
#[derive(Debug, Clone)]
pub(crate) struct SeriesLimits {
    default: usize,
    default_label_bound: usize,
    /// Catalog metric → label → bound.
    declared: HashMap<String, HashMap<String, usize>>,
    overflow_metric: String,
}

impl Default for SeriesLimits {
    fn default() -> Self {
        SeriesLimits::new(
            cardinality::DEFAULT_SERIES_LIMIT,
            None,
            cardinality::DEFAULT_BOUND,
            cardinality::DEFAULT_NAMESPACE,
        )
    }
}

impl SeriesLimits {
    /// `default` (at least 1) for every metric `catalog` does not declare;
    /// `default_label_bound` is the guard's bound of undeclared labels; `namespace`
    /// names the overflow counter, as the label guard does.
    pub(crate) fn new(
        default: usize,
        catalog: Option<&crate::catalog::Catalog>,
        default_label_bound: usize,
        namespace: &str,
    ) -> Self {
        let declared = cardinality::declared_labels(catalog, cardinality::declared_bound);
        SeriesLimits {
            default: default.max(1),
            default_label_bound: default_label_bound.max(1),
            declared,
            overflow_metric: cardinality::overflow_metric_name(namespace),
        }
    }

    /// The limit of the family `key` is the first series of.
    fn for_key(&self, key: &Key) -> usize {
        if key.name() == self.overflow_metric {
            return usize::MAX;
        }
        match self.declared.get(key.name()) {
            Some(labels) => cardinality::series_limit_of_bounds(key.labels().map(|l| {
                labels
                    .get(l.key())
                    .copied()
                    .unwrap_or(self.default_label_bound)
            })),
            None => self.default,
        }
    }
}

/// The registry of every series in the process, shared by the recorder and the
/// handles that render it.
pub(crate) struct Registry {
    constant: Vec<(String, String)>,
    buckets: BucketConfig,
    limits: SeriesLimits,
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

/// Whether every label value of `key` is `_overflow` (and it has labels).
fn is_overflow_key(key: &Key) -> bool {
    let mut labels = key.labels().peekable();
    labels.peek().is_some() && labels.all(|l| l.value() == OVERFLOW_VALUE)
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
            limits: SeriesLimits::default(),
            counters: RwLock::default(),
            gauges: RwLock::default(),
            histograms: RwLock::default(),
            help: RwLock::default(),
        }
    }

    /// Replaces the series limits (before any series is registered).
    pub(crate) fn with_series_limits(mut self, limits: SeriesLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The series of `key`: the existing one (a read lock, no allocation), a new
    /// one while its family is under its limit, else the family's overflow series,
    /// the redirect counted.
    fn get_or_insert<C: Lines>(
        &self,
        store: &RwLock<Store<C>>,
        key: &Key,
        make: impl FnOnce() -> C,
    ) -> Arc<C> {
        let known = {
            let store = read(store);
            match store.by_key.get(key) {
                Some(cell) => Ok(cell.clone()),
                // A full family (it has an overflow series) answers under the read
                // lock too, so a flood of new label sets does not queue every
                // registration of its kind behind the write lock. (Looked up by the
                // raw name: a name that needs sanitizing takes the write path.)
                None => Err(store
                    .families
                    .get(key.name())
                    .and_then(|f| f.overflow.clone())
                    .filter(|_| !is_overflow_key(key))),
            }
        };
        let overflow = match known {
            Ok(cell) => return cell,
            Err(Some(overflow)) => overflow,
            Err(None) => {
                let mut store = write(store);
                if let Some(cell) = store.by_key.get(key) {
                    return cell.clone();
                }
                let name = render::metric_name(key.name());
                let full = store
                    .families
                    .get(&name)
                    .is_some_and(|f| f.series.len() >= f.limit);
                // A label set that is all `_overflow` is the overflow series itself
                // (the guard's, or ours): never redirected, never counted.
                if !full || is_overflow_key(key) {
                    return self.insert(&mut store, key.clone(), name, make());
                }
                self.overflow_of(&mut store, key, name, make)
            }
        };
        // Outside the store's lock: the overflow counter may live in this store.
        self.count_overflow(&overflow);
        overflow.cell.clone()
    }

    /// The overflow series of `key`'s family (full), created on the first call with
    /// `key`'s label names.
    fn overflow_of<C: Lines>(
        &self,
        store: &mut Store<C>,
        key: &Key,
        name: String,
        make: impl FnOnce() -> C,
    ) -> Arc<Overflow<C>> {
        if let Some(overflow) = store.families.get(&name).and_then(|f| f.overflow.clone()) {
            return overflow;
        }
        let labels: Vec<Label> = key
            .labels()
            .map(|l| Label::new(l.key().to_owned(), OVERFLOW_VALUE))
            .collect();
        let label = match &labels[..] {
            [one] => one.key().to_owned(),
            _ => "all".to_owned(),
        };
        let overflow_key = Key::from_parts(key.name().to_owned(), labels);
        let cell = match store.by_key.get(&overflow_key) {
            Some(cell) => cell.clone(),
            None => self.insert(store, overflow_key, name.clone(), make()),
        };
        let overflow = Arc::new(Overflow {
            cell,
            counted: OnceLock::new(),
            metric: key.name().to_owned(),
            label,
        });
        if let Some(family) = store.families.get_mut(&name) {
            family.overflow = Some(overflow.clone());
        }
        overflow
    }

    /// One more label set redirected to `overflow`'s series.
    fn count_overflow<C>(&self, overflow: &Overflow<C>) {
        overflow
            .counted
            .get_or_init(|| {
                let metric = &self.limits.overflow_metric;
                write(&self.help)
                    .entry(render::metric_name(metric))
                    .or_insert_with(|| render::help_text(cardinality::OVERFLOW_HELP));
                let key = cardinality::overflow_key(
                    metric.clone(),
                    overflow.metric.clone(),
                    overflow.label.clone(),
                );
                // Exempt from the limit: never redirected, so this never recurses.
                self.counter(&key, 1)
            })
            .add(1);
    }

    /// Adds a new series (the caller checked that `key` is not there).
    fn insert<C: Lines>(&self, store: &mut Store<C>, key: Key, name: String, cell: C) -> Arc<C> {
        let cell = Arc::new(cell);
        let labels = render::label_text(&self.constant, key.labels().map(|l| (l.key(), l.value())));
        let limit = self.limits.for_key(&key);
        store.by_key.insert(key, cell.clone());
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
        let family = store
            .families
            .entry(name)
            .or_insert_with(|| Family::new(limit));
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

    fn meta() -> Metadata<'static> {
        Metadata::new("t", metrics::Level::INFO, None)
    }

    fn limited(limit: usize, catalog: Option<&crate::catalog::Catalog>) -> ZsRecorder {
        ZsRecorder {
            registry: Arc::new(
                registry().with_series_limits(SeriesLimits::new(limit, catalog, 100, "t")),
            ),
        }
    }

    /// The value rendered on the one line starting with `prefix`.
    fn sample(text: &str, prefix: &str) -> Option<f64> {
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(prefix)).collect();
        assert!(lines.len() <= 1, "{prefix}: {lines:?}");
        lines
            .first()
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
    }

    fn peer(v: usize) -> Key {
        Key::from_parts("peers_total", vec![Label::new("peer", v.to_string())])
    }

    #[test]
    fn a_full_family_redirects_new_label_sets_to_one_counted_overflow_series() {
        let rec = limited(3, None);
        let first: Vec<Counter> = (0..3)
            .map(|v| rec.register_counter(&peer(v), &meta()))
            .collect();
        for v in 0..10 {
            rec.register_counter(&peer(v), &meta()).increment(1);
        }
        // Handles taken before the family filled still write their own series.
        first[0].increment(100);
        let counts = rec.registry.series_count();
        // 3 series, the overflow series, and the overflow counter's one series.
        assert_eq!(counts.counters, 3 + 1 + 1, "{counts:?}");
        let text = rec.registry.render();
        assert_eq!(
            sample(&text, r#"peers_total{service="svc",peer="0"}"#),
            Some(101.0)
        );
        assert_eq!(
            sample(&text, r#"peers_total{service="svc",peer="2"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"peers_total{service="svc",peer="3"}"#),
            None
        );
        assert_eq!(
            sample(&text, r#"peers_total{service="svc",peer="_overflow"}"#),
            Some(7.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"t_cardinality_overflow_total{service="svc",metric="peers_total",label="peer"}"#
            ),
            Some(7.0)
        );
        assert!(
            text.contains("# HELP t_cardinality_overflow_total Label values"),
            "{text}"
        );
        // A redirected label set is not remembered: memory stays at the limit.
        assert_eq!(read(&rec.registry.counters).by_key.len(), 5);
    }

    #[test]
    fn histograms_and_gauges_have_the_limit_too_and_several_labels_count_as_all() {
        let rec = limited(2, None);
        for v in 0..5 {
            let key = Key::from_parts(
                "wait_seconds",
                vec![Label::new("peer", v.to_string()), Label::new("kind", "a")],
            );
            rec.register_histogram(&key, &meta()).record(0.5);
            rec.register_gauge(
                &Key::from_parts("depth", vec![Label::new("q", v.to_string())]),
                &meta(),
            )
            .increment(1.0);
        }
        let counts = rec.registry.series_count();
        assert_eq!((counts.histograms, counts.gauges), (3, 3), "{counts:?}");
        let text = rec.registry.render();
        assert_eq!(
            sample(
                &text,
                r#"wait_seconds_count{service="svc",peer="_overflow",kind="_overflow"}"#
            ),
            Some(3.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"wait_seconds_bucket{service="svc",peer="_overflow",kind="_overflow",le="1"}"#
            ),
            Some(3.0)
        );
        assert_eq!(
            sample(&text, r#"depth{service="svc",q="_overflow"}"#),
            Some(3.0)
        );
        let overflow = |metric: &str, label: &str| {
            sample(
                &text,
                &format!(
                    r#"t_cardinality_overflow_total{{service="svc",metric="{metric}",label="{label}"}}"#
                ),
            )
        };
        assert_eq!(overflow("wait_seconds", "all"), Some(3.0));
        assert_eq!(overflow("depth", "q"), Some(3.0));
    }

    #[test]
    fn the_catalog_bound_takes_precedence_and_the_guards_overflow_series_is_not_counted() {
        let catalog = crate::catalog::Catalog::parse(
            r#"
[[metric]]
name = "peers_total"
type = "counter"
help = "By peer."
labels = { peer = { cardinality = 4 } }

[[metric]]
name = "sessions_total"
type = "counter"
help = "The catalog does not declare `session`."
labels = { outcome = ["ok"] }

[[metric]]
name = "calls_total"
type = "counter"
help = "By peer and outcome."
labels = { peer = { cardinality = 2 }, outcome = ["ok", "error"] }
"#,
            "t.toml",
        )
        .expect("valid");
        assert_eq!(cardinality::series_limit_of_bounds([2, 2]), 3 * 3 - 1);
        assert_eq!(cardinality::series_limit_of_bounds([]), 1);
        assert_eq!(
            cardinality::series_limit_of_bounds([usize::MAX, 3]),
            usize::MAX - 1
        );
        let rec = limited(1000, Some(&catalog));
        for v in 0..10 {
            rec.register_counter(&peer(v), &meta()).increment(1);
        }
        // The guard's own `_overflow` value arriving once the family is full: it is
        // the overflow series, not a redirect.
        let guard_overflow =
            Key::from_parts("peers_total", vec![Label::new("peer", OVERFLOW_VALUE)]);
        rec.register_counter(&guard_overflow, &meta()).increment(1);
        // Every combination the guard can let through fits.
        for p in ["a", "b", OVERFLOW_VALUE] {
            for o in ["ok", "error", OVERFLOW_VALUE] {
                let key = Key::from_parts(
                    "calls_total",
                    vec![Label::new("peer", p), Label::new("outcome", o)],
                );
                rec.register_counter(&key, &meta()).increment(1);
            }
        }
        // A label the catalog does not declare has the default label bound (100
        // here): (100 + 1) x (1 + 1) - 1 = 201 label sets fit, not the 1 that the
        // declared `outcome` alone would allow.
        for v in 0..150 {
            let key = Key::from_parts(
                "sessions_total",
                vec![
                    Label::new("session", v.to_string()),
                    Label::new("outcome", "ok"),
                ],
            );
            rec.register_counter(&key, &meta()).increment(1);
        }
        // Undeclared metrics get the builder's limit: exactly 1000 fit.
        for v in 0..1000 {
            rec.register_counter(
                &Key::from_parts("other_total", vec![Label::new("x", v.to_string())]),
                &meta(),
            )
            .increment(1);
        }
        let text = rec.registry.render();
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("peers_total{"))
                .count(),
            5
        );
        assert_eq!(
            sample(&text, r#"peers_total{service="svc",peer="_overflow"}"#),
            Some(7.0)
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("calls_total{"))
                .count(),
            9
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("other_total{"))
                .count(),
            1000
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("sessions_total{"))
                .count(),
            150
        );
        let overflow_lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("t_cardinality_overflow_total{"))
            .collect();
        assert_eq!(
            overflow_lines,
            [r#"t_cardinality_overflow_total{service="svc",metric="peers_total",label="peer"} 6"#]
        );
    }

    #[test]
    fn the_default_limit_is_ten_thousand() {
        let limits = SeriesLimits::default();
        assert_eq!(limits.for_key(&peer(0)), 10_000);
        assert_eq!(
            limits.for_key(&Key::from_name("zs_observe_cardinality_overflow_total")),
            usize::MAX
        );
    }

    #[test]
    fn the_overflow_counter_itself_is_never_limited() {
        let rec = limited(1, None);
        for m in 0..20 {
            for v in 0..2 {
                let key =
                    Key::from_parts(format!("m{m}_total"), vec![Label::new("x", v.to_string())]);
                rec.register_counter(&key, &meta()).increment(1);
            }
        }
        let text = rec.registry.render();
        let overflow_lines = text
            .lines()
            .filter(|l| l.starts_with("t_cardinality_overflow_total{"))
            .count();
        assert_eq!(overflow_lines, 20);
    }

    #[test]
    fn concurrent_registration_keeps_exactly_the_limit() {
        let rec = limited(64, None);
        std::thread::scope(|s| {
            for t in 0..4 {
                let rec = &rec;
                s.spawn(move || {
                    for i in 0..500 {
                        rec.register_counter(&peer(t * 1000 + i), &meta())
                            .increment(1);
                    }
                });
            }
        });
        let text = rec.registry.render();
        let series = text
            .lines()
            .filter(|l| l.starts_with("peers_total{"))
            .count();
        assert_eq!(series, 64 + 1);
        let total: f64 = text
            .lines()
            .filter(|l| l.starts_with("peers_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum();
        assert_eq!(total, 2000.0, "no increment lost");
        assert_eq!(
            sample(&text, r#"peers_total{service="svc",peer="_overflow"}"#),
            Some(2000.0 - 64.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"t_cardinality_overflow_total{service="svc",metric="peers_total",label="peer"}"#
            ),
            Some(2000.0 - 64.0)
        );
    }
}

#[cfg(test)]
mod conformance;
