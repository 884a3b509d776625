//! Which catalog metrics the code records, and which recorded metrics the
//! catalog lacks.
//!
//! Every `#[instrumented]` call site registers its metrics at link time, so the
//! report sees call sites that have not run yet. Metrics recorded with plain
//! `metrics::` calls are seen through the exposition (`Telemetry::render`).
//!
//! ```
//! use zs_observe::catalog::Catalog;
//! use zs_observe::coverage;
//!
//! #[zs_observe::instrumented(counter = "demo_jobs_total")]
//! fn job() {}
//!
//! let catalog = Catalog::parse(r#"
//! [[metric]]
//! name = "demo_jobs_total"
//! type = "counter"
//! help = "Jobs run."
//! labels = { outcome = ["ok", "error", "panic", "cancelled"] }
//! "#, "demo.toml").unwrap();
//! let report = coverage::report(&catalog, "");
//! assert!(report.unrecorded.is_empty() && report.undeclared.is_empty(), "{report}");
//! ```

use std::collections::BTreeSet;
use std::fmt;

use crate::catalog::Catalog;

/// One call site's metrics, registered at link time by the expansion.
#[doc(hidden)]
#[derive(Debug)]
pub struct Registration {
    /// The annotated function.
    pub function: &'static str,
    /// Metric names the call site records.
    pub metrics: &'static [&'static str],
}

inventory::collect!(Registration);

/// Every `#[instrumented]` call site linked into this binary, with its metric names.
pub fn call_sites() -> impl Iterator<Item = (&'static str, &'static [&'static str])> {
    inventory::iter::<Registration>
        .into_iter()
        .map(|r| (r.function, r.metrics))
}

/// The result of [`report`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoverageReport {
    /// Catalog metrics that no call site records and that are absent from the exposition.
    pub unrecorded: Vec<String>,
    /// Metrics recorded by call sites or present in the exposition but missing from
    /// the catalog, each with where it was seen.
    pub undeclared: Vec<String>,
}

impl CoverageReport {
    /// Whether code and catalog agree both ways.
    pub fn is_empty(&self) -> bool {
        self.unrecorded.is_empty() && self.undeclared.is_empty()
    }
}

impl fmt::Display for CoverageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("catalog and code agree");
        }
        if !self.unrecorded.is_empty() {
            writeln!(f, "catalog metrics that no code records:")?;
            for m in &self.unrecorded {
                writeln!(f, "  - {m}")?;
            }
        }
        if !self.undeclared.is_empty() {
            writeln!(f, "recorded metrics missing from the catalog:")?;
            for m in &self.undeclared {
                writeln!(f, "  - {m}")?;
            }
        }
        Ok(())
    }
}

/// Metric family names of a text exposition (its `# TYPE` lines).
pub fn exposition_families(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Compares the catalog with the call sites linked into this binary and with an
/// exposition (pass `""` to compare with call sites only).
pub fn report(catalog: &Catalog, exposition: &str) -> CoverageReport {
    let mut seen: Vec<(String, String)> = Vec::new();
    for (function, metrics) in call_sites() {
        for m in metrics {
            seen.push(((*m).to_owned(), format!("recorded by {function}")));
        }
    }
    for family in exposition_families(exposition) {
        seen.push((family, "in the exposition".to_owned()));
    }
    let mut recorded: BTreeSet<&str> = seen.iter().map(|(m, _)| m.as_str()).collect();
    // The runtime records this one only when a label overflows, so it has no series
    // until then; its code exists in every binary.
    let overflow = catalog
        .namespace
        .as_ref()
        .map(|ns| format!("{ns}_cardinality_overflow_total"));
    if let Some(overflow) = &overflow {
        recorded.insert(overflow.as_str());
    }
    let unrecorded = catalog
        .metrics
        .iter()
        .filter(|m| !recorded.contains(m.name.as_str()))
        .map(|m| m.name.clone())
        .collect();
    let mut undeclared: BTreeSet<String> = BTreeSet::new();
    for (metric, place) in &seen {
        if catalog.get(metric).is_none() {
            undeclared.insert(format!("{metric} ({place})"));
        }
    }
    CoverageReport {
        unrecorded,
        undeclared: undeclared.into_iter().collect(),
    }
}

/// Test helper: panics with the report unless code and catalog agree both ways.
#[track_caller]
pub fn assert_complete(catalog: &Catalog, exposition: &str) {
    let report = report(catalog, exposition);
    assert!(report.is_empty(), "metric coverage:\n{report}");
}
