//! The cardinality guard: label values computed per call (`labels(peer = expr)` of
//! `#[instrumented]`, or [`bounded_label`] by hand) are admitted up to a bound per
//! metric and label; past it, new values collapse into [`OVERFLOW_VALUE`] and
//! `<namespace>_cardinality_overflow_total{metric, label}` counts how often.
//!
//! The bound of a label comes from the metric catalog when one was configured:
//!
//! - an open label, `peer_id = { cardinality = 500 }`, keeps its first 500 distinct
//!   values;
//! - a closed label, `status = ["ok", "failed"]`, keeps exactly its declared values;
//!   any other value collapses;
//! - a label the catalog does not declare (or no catalog at all) keeps the first
//!   [`DEFAULT_BOUND`] values (configurable).
//!
//! Memory is bounded by the sum of the bounds: each `(metric, label)` pair holds at
//! most its bound of values. Values already admitted keep their own series after
//! the label is full. Checking a known value takes two read locks and no
//! allocation; the guard never panics and holds a write lock only to insert one
//! value.
//!
//! [`Telemetry`](crate::Telemetry) configures the guard from its namespace and
//! catalog. With a recorder installed by hand ([`set_global_recorder`](crate::set_global_recorder)),
//! call [`configure`]; until then the namespace is `zs_observe` and every label
//! has the default bound.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use metrics::{Counter, Key, Label, Level, Metadata, SharedString};

use crate::catalog::{Catalog, LabelValues};

/// The value a label takes once its bound is reached (or, for a closed label, when
/// the value is not declared). Greppable, and not a plausible real value.
pub const OVERFLOW_VALUE: &str = "_overflow";

/// The bound of a label without one in the catalog, until configured otherwise.
pub const DEFAULT_BOUND: usize = 1000;

/// The namespace of the overflow counter until [`configure`] is called.
pub const DEFAULT_NAMESPACE: &str = "zs_observe";

/// The most series (distinct label sets) one metric family keeps in the runtime's
/// recorder when the catalog declares no bound for it; changed with
/// [`TelemetryBuilder::with_series_limit`](crate::TelemetryBuilder::with_series_limit).
///
/// This is the backstop for calls the guard above does not see: a third-party
/// `metrics::counter!("x_total", "peer" => value)` with unbounded values. Past the
/// limit, a new label set is recorded on the family's one overflow series (every
/// label value [`OVERFLOW_VALUE`]) and counted in
/// `<namespace>_cardinality_overflow_total`. Why 10,000: a family within the
/// guard's default bounds (one open label of [`DEFAULT_BOUND`] values times an
/// outcome label of 4 to 5 values, plus their `_overflow` values) stays below it, so
/// the limit never clips a well-behaved metric; and 10,000 series cost a few MiB of
/// memory and about 1 MiB of `/metrics` text for a counter (10 to 15 MiB for a
/// histogram), where an unbounded family costs that per 10,000 distinct values,
/// without end.
pub const DEFAULT_SERIES_LIMIT: usize = 10_000;

pub(crate) const OVERFLOW_HELP: &str =
    "Label values that exceeded their metric's cardinality bound \
     and were recorded as `_overflow`, by metric and label.";

/// (Re)configures the process-wide guard: the namespace of
/// `<namespace>_cardinality_overflow_total`, the catalog whose label declarations
/// bound each label, and the bound of every other label (at least 1).
///
/// Values admitted so far are forgotten: call it once at start-up, before the
/// first instrumented call. [`Telemetry::builder`](crate::Telemetry::builder)
/// calls it on install.
pub fn configure(namespace: &str, catalog: Option<&Catalog>, default_bound: usize) {
    let guard = LabelGuard::new(namespace, catalog, default_bound);
    *write(&GLOBAL) = guard;
}

/// The value to record for `label` of `metric`: `value` itself while the label is
/// within its bound (or `value` is already known), else [`OVERFLOW_VALUE`], counted
/// in `<namespace>_cardinality_overflow_total`.
///
/// For metrics recorded by hand with values from requests, peers, users...:
///
/// ```
/// # let peer_id = "12D3KooW";
/// let peer = zs_observe::bounded_label(
///     "zerostate_p2p_bandwidth_bytes_total",
///     "peer_id",
///     peer_id.to_string(),
/// );
/// metrics::counter!("zerostate_p2p_bandwidth_bytes_total", "peer_id" => peer).increment(512);
/// ```
pub fn bounded_label(metric: &str, label: &str, value: impl Into<SharedString>) -> SharedString {
    let value = value.into();
    if read(&GLOBAL).admit(metric, label, &value) {
        value
    } else {
        SharedString::const_str(OVERFLOW_VALUE)
    }
}

/// The hook of `#[instrumented]` call sites: `label` of `metric`, collapsed when over
/// its bound.
pub(crate) fn bound_label(metric: &str, label: &Label) -> Label {
    if read(&GLOBAL).admit(metric, label.key(), label.value()) {
        label.clone()
    } else {
        let (key, _) = label.clone().into_parts();
        Label::new(key, SharedString::const_str(OVERFLOW_VALUE))
    }
}

static GLOBAL: LazyLock<RwLock<LabelGuard>> =
    LazyLock::new(|| RwLock::new(LabelGuard::new(DEFAULT_NAMESPACE, None, DEFAULT_BOUND)));

/// Lock helpers that shrug off poisoning: the guarded data is valid after any
/// panic (an insert either happened or not), and the guard must never panic.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// One guard: the configuration and the values seen per (metric, label).
struct LabelGuard {
    overflow_metric: SharedString,
    default_bound: usize,
    /// Declared label values of the catalog: metric → label → values.
    declared: HashMap<String, HashMap<String, LabelValues>>,
    /// metric → label → its set. Two levels so that lookups take `&str`s.
    sets: RwLock<HashMap<Box<str>, LabelSets>>,
}

/// label → its set, for one metric.
type LabelSets = HashMap<Box<str>, Arc<LabelSet>>;

impl LabelGuard {
    fn new(namespace: &str, catalog: Option<&Catalog>, default_bound: usize) -> Self {
        let declared = declared_labels(catalog, LabelValues::clone);
        LabelGuard {
            overflow_metric: overflow_metric_name(namespace).into(),
            default_bound: default_bound.max(1),
            declared,
            sets: RwLock::new(HashMap::new()),
        }
    }

    /// Whether `value` may be recorded as is; counts the overflow when not.
    fn admit(&self, metric: &str, label: &str, value: &str) -> bool {
        let set = self.set(metric, label);
        let admitted = set.admit(value);
        if !admitted {
            set.record_overflow(&self.overflow_metric);
        }
        admitted
    }

    fn set(&self, metric: &str, label: &str) -> Arc<LabelSet> {
        if let Some(set) = read(&self.sets).get(metric).and_then(|m| m.get(label)) {
            return set.clone();
        }
        let mut sets = write(&self.sets);
        let labels = sets.entry(metric.into()).or_default();
        labels
            .entry(label.into())
            .or_insert_with(|| Arc::new(LabelSet::new(metric, label, self.limit(metric, label))))
            .clone()
    }

    fn limit(&self, metric: &str, label: &str) -> Limit {
        match self.declared.get(metric).and_then(|m| m.get(label)) {
            Some(LabelValues::Closed(values)) => {
                Limit::Closed(values.iter().map(|v| v.as_str().into()).collect())
            }
            Some(LabelValues::Open { cardinality }) => Limit::Open((*cardinality).max(1)),
            None => Limit::Open(self.default_bound),
        }
    }

    #[cfg(test)]
    fn overflows(&self, metric: &str, label: &str) -> u64 {
        self.set(metric, label).overflows.load(Ordering::Relaxed)
    }
}

enum Limit {
    /// The first `n` distinct values.
    Open(usize),
    /// Exactly these values.
    Closed(HashSet<Box<str>>),
}

/// The admitted values of one label of one metric.
struct LabelSet {
    limit: Limit,
    seen: RwLock<HashSet<Box<str>>>,
    /// Set once `seen` holds the bound, so overflowing values skip the write lock.
    full: AtomicBool,
    overflows: AtomicU64,
    metric: SharedString,
    label: SharedString,
    overflow_counter: OnceLock<Counter>,
}

impl LabelSet {
    fn new(metric: &str, label: &str, limit: Limit) -> Self {
        LabelSet {
            limit,
            seen: RwLock::new(HashSet::new()),
            full: AtomicBool::new(false),
            overflows: AtomicU64::new(0),
            metric: metric.to_owned().into(),
            label: label.to_owned().into(),
            overflow_counter: OnceLock::new(),
        }
    }

    fn admit(&self, value: &str) -> bool {
        let bound = match &self.limit {
            Limit::Closed(values) => return values.contains(value),
            Limit::Open(bound) => *bound,
        };
        if read(&self.seen).contains(value) {
            return true;
        }
        if self.full.load(Ordering::Acquire) {
            return false;
        }
        let mut seen = write(&self.seen);
        if seen.contains(value) {
            return true;
        }
        if seen.len() >= bound {
            self.full.store(true, Ordering::Release);
            return false;
        }
        seen.insert(value.into());
        if seen.len() >= bound {
            self.full.store(true, Ordering::Release);
        }
        true
    }

    fn record_overflow(&self, overflow_metric: &SharedString) {
        self.overflows.fetch_add(1, Ordering::Relaxed);
        if let Some(counter) = self.overflow_counter.get() {
            counter.increment(1);
            return;
        }
        let register = || {
            metrics::with_recorder(|r| {
                r.describe_counter(overflow_metric.clone().into(), None, OVERFLOW_HELP.into());
                let key = overflow_key(
                    overflow_metric.clone(),
                    self.metric.clone(),
                    self.label.clone(),
                );
                r.register_counter(&key, &METADATA)
            })
        };
        // A handle from before a recorder is installed would stay a no-op: only
        // cache it once one is.
        if crate::callsite::recorder_ready() {
            self.overflow_counter.get_or_init(register).increment(1);
        } else {
            register().increment(1);
        }
    }
}

/// `<namespace>_cardinality_overflow_total` (without a namespace, the bare name).
pub(crate) fn overflow_metric_name(namespace: &str) -> String {
    if namespace.is_empty() {
        "cardinality_overflow_total".to_owned()
    } else {
        format!("{namespace}_cardinality_overflow_total")
    }
}

/// The overflow counter's series for `label` of `metric`: the guard's and the
/// recorder's series limit count into the same series.
pub(crate) fn overflow_key(
    overflow_metric: impl Into<SharedString>,
    metric: impl Into<SharedString>,
    label: impl Into<SharedString>,
) -> Key {
    Key::from_parts(
        overflow_metric.into(),
        vec![
            Label::new("metric", metric.into()),
            Label::new("label", label.into()),
        ],
    )
}

/// How many values the guard lets through for a label the catalog declares.
/// metric → label → `f` of its declared values, for every metric of `catalog` (empty
/// without one).
pub(crate) fn declared_labels<T>(
    catalog: Option<&Catalog>,
    f: impl Fn(&LabelValues) -> T,
) -> HashMap<String, HashMap<String, T>> {
    let Some(catalog) = catalog else {
        return HashMap::new();
    };
    catalog
        .metrics
        .iter()
        .map(|m| {
            let labels = m
                .labels
                .iter()
                .map(|l| (l.name.clone(), f(&l.values)))
                .collect();
            (m.name.clone(), labels)
        })
        .collect()
}

pub(crate) fn declared_bound(values: &LabelValues) -> usize {
    match values {
        LabelValues::Closed(values) => values.len(),
        LabelValues::Open { cardinality } => *cardinality,
    }
}

/// The series limit of a family whose labels have these bounds: every combination
/// of values the guard can let through (each label's kept values, plus
/// `_overflow`), except all of them `_overflow` at once, which is the family's
/// overflow series itself. One open label of 500 values keeps 500 series plus
/// `_overflow`, exactly what the guard keeps: the limit never clips a label set the
/// guard admits. At least 1; saturates instead of overflowing.
pub(crate) fn series_limit_of_bounds(bounds: impl IntoIterator<Item = usize>) -> usize {
    bounds
        .into_iter()
        .fold(1usize, |product, n| {
            product.saturating_mul(n.saturating_add(1))
        })
        .saturating_sub(1)
        .max(1)
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::parse(
            r#"
[[metric]]
name = "t_calls_total"
type = "counter"
help = "Calls."
labels = { peer = { cardinality = 3 }, kind = ["a", "b"] }
"#,
            "t.toml",
        )
        .expect("valid")
    }

    #[test]
    fn open_label_keeps_its_first_values_then_collapses() {
        let guard = LabelGuard::new("t", Some(&catalog()), 100);
        let admitted: Vec<bool> = ["p0", "p1", "p2", "p3", "p4"]
            .iter()
            .map(|v| guard.admit("t_calls_total", "peer", v))
            .collect();
        assert_eq!(admitted, [true, true, true, false, false]);
        // Known values keep their series after the set is full.
        assert!(guard.admit("t_calls_total", "peer", "p1"));
        assert!(!guard.admit("t_calls_total", "peer", "p3"));
        assert_eq!(guard.overflows("t_calls_total", "peer"), 3);
    }

    #[test]
    fn closed_label_keeps_exactly_its_declared_values() {
        let guard = LabelGuard::new("t", Some(&catalog()), 100);
        assert!(guard.admit("t_calls_total", "kind", "a"));
        assert!(guard.admit("t_calls_total", "kind", "b"));
        assert!(!guard.admit("t_calls_total", "kind", "c"));
        assert!(!guard.admit("t_calls_total", "kind", ""));
        assert_eq!(guard.overflows("t_calls_total", "kind"), 2);
    }

    #[test]
    fn undeclared_labels_and_metrics_get_the_default_bound() {
        let guard = LabelGuard::new("t", Some(&catalog()), 2);
        for metric in ["t_calls_total", "t_other_total"] {
            let admitted: Vec<bool> = (0..4)
                .map(|i| guard.admit(metric, "region", &format!("r{i}")))
                .collect();
            assert_eq!(admitted, [true, true, false, false], "{metric}");
        }
        // Sets are per (metric, label): another label starts empty.
        assert!(guard.admit("t_other_total", "zone", "z"));
    }

    #[test]
    fn unconfigured_guard_uses_the_defaults() {
        let guard = LabelGuard::new(DEFAULT_NAMESPACE, None, DEFAULT_BOUND);
        assert_eq!(
            &*guard.overflow_metric,
            "zs_observe_cardinality_overflow_total"
        );
        let admitted = (0..DEFAULT_BOUND + 5)
            .filter(|i| guard.admit("m_total", "l", &i.to_string()))
            .count();
        assert_eq!(admitted, DEFAULT_BOUND);
        assert_eq!(guard.overflows("m_total", "l"), 5);
    }

    #[test]
    fn zero_bound_is_raised_to_one() {
        let guard = LabelGuard::new("", None, 0);
        assert_eq!(&*guard.overflow_metric, "cardinality_overflow_total");
        assert!(guard.admit("m_total", "l", "x"));
        assert!(!guard.admit("m_total", "l", "y"));
    }

    #[test]
    fn concurrent_admission_is_exact() {
        let guard = LabelGuard::new("t", None, 64);
        let run = || -> u64 {
            std::thread::scope(|s| {
                let threads: Vec<_> = (0..4)
                    .map(|t| {
                        let guard = &guard;
                        s.spawn(move || {
                            (0..100)
                                .filter(|i| guard.admit("m_total", "l", &format!("v{t}-{i}")))
                                .count() as u64
                        })
                    })
                    .collect();
                threads.into_iter().map(|t| t.join().unwrap_or(0)).sum()
            })
        };
        // 400 distinct values from 4 threads: exactly the bound is admitted.
        assert_eq!(run(), 64);
        assert_eq!(guard.overflows("m_total", "l"), 336);
        assert_eq!(read(&guard.set("m_total", "l").seen).len(), 64);
        // Again: the 64 admitted values are known, the other 336 overflow again.
        assert_eq!(run(), 64);
        assert_eq!(guard.overflows("m_total", "l"), 672);
    }
}
