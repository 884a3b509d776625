//! Which catalog metrics the code records, and which recorded metrics the
//! catalog lacks.
//!
//! Every `#[instrumented]` call site is registered at link time (a linker section on
//! ELF targets, `inventory` elsewhere), so the report sees call sites that have not
//! run yet. Metrics recorded with plain
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

/// One call site's metrics, registered at start-up by the expansion on targets
/// without a [`SECTION`] (see [`call_sites`]).
#[doc(hidden)]
#[derive(Debug)]
pub struct Registration {
    /// The annotated function.
    pub function: &'static str,
    /// Metric names the call site records.
    pub metrics: &'static [&'static str],
}

inventory::collect!(Registration);

/// The linker section holding every `#[instrumented]` call site's static, on ELF
/// targets (Linux, Android, FreeBSD, Fuchsia). The expansion emits
/// `#[used] #[link_section = "zs_observe_call_sites_v1"]` on the call-site static itself,
/// so registering a call site costs the compiler nothing beyond that static (an
/// `inventory::submit!` per function cost ~10 % of a 500-function crate's build:
/// docs/performance.md, "Compile time"). The name carries a layout version: two
/// incompatible `zs-observe` versions in one binary must not share a section.
/// Other targets register through `inventory`, at start-up.
#[doc(hidden)]
pub const SECTION: &str = "zs_observe_call_sites_v1";

#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "fuchsia"
))]
#[allow(unsafe_code)]
mod section {
    use crate::callsite::CallSite;

    // The linker defines `__start_<name>`/`__stop_<name>` around a section whose name is
    // a C identifier: the call sites of every crate linked in, one array of `CallSite`
    // (equal size and alignment, so no padding between objects).
    extern "Rust" {
        #[link_name = "__start_zs_observe_call_sites_v1"]
        static START: [CallSite; 0];
        #[link_name = "__stop_zs_observe_call_sites_v1"]
        static STOP: [CallSite; 0];
    }

    // Makes the section exist (and the two symbols defined) when no call site does.
    #[used]
    #[link_section = "zs_observe_call_sites_v1"]
    static EMPTY: [CallSite; 0] = [];

    pub(super) fn all() -> &'static [CallSite] {
        // SAFETY: `START..STOP` is the section, which holds only `CallSite` statics
        // placed there by the expansion (`zs-observe-macros`, the same version as this
        // crate: the section name is versioned), each initialised at compile time and
        // never moved. Statics are valid for the whole program.
        unsafe {
            let start = std::ptr::addr_of!(START).cast::<CallSite>();
            let stop = std::ptr::addr_of!(STOP).cast::<CallSite>();
            let len = (stop as usize - start as usize) / std::mem::size_of::<CallSite>();
            std::slice::from_raw_parts(start, len)
        }
    }
}

/// Every `#[instrumented]` call site linked into this binary that records metrics,
/// with its metric names: also the call sites that have not run yet.
pub fn call_sites() -> impl Iterator<Item = (&'static str, &'static [&'static str])> {
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "fuchsia"
    ))]
    let linked = section::all()
        .iter()
        .filter(|site| !site.metrics().is_empty())
        .map(|site| (site.function(), site.metrics()));
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "fuchsia"
    )))]
    let linked = std::iter::empty();
    linked.chain(
        inventory::iter::<Registration>
            .into_iter()
            .map(|r| (r.function, r.metrics)),
    )
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
