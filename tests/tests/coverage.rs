//! The coverage report on a small "crate" (this test binary): one catalog metric
//! that no code records and one recorded metric the catalog lacks, seen both
//! through call sites (link-time registration) and through the exposition.

use zs_observe::catalog::Catalog;
use zs_observe::{coverage, instrumented};

#[instrumented(counter = "cov_jobs_total", histogram = "cov_job_duration_seconds")]
fn job() {}

// Never called: registration happens at link time, so it still counts as recorded code.
#[instrumented(counter = "cov_undeclared_total")]
#[allow(dead_code)]
fn not_in_catalog() {}

const CATALOG: &str = r#"
[catalog]
namespace = "cov"
default_buckets = [0.1, 1.0]

[[metric]]
name = "cov_jobs_total"
type = "counter"
help = "Jobs."
labels = { outcome = ["ok", "error", "panic", "cancelled"] }

[[metric]]
name = "cov_job_duration_seconds"
type = "histogram"
help = "Job duration."
labels = { outcome = ["ok", "error", "panic", "cancelled"] }

[[metric]]
name = "cov_defined_never_recorded_total"
type = "counter"
help = "Seed 002's gap: defined, never recorded."
"#;

#[test]
fn reports_unrecorded_and_undeclared_metrics() {
    job();
    let catalog = Catalog::parse(CATALOG, "cov.toml").expect("valid catalog");
    let sites: Vec<_> = coverage::call_sites().collect();
    assert!(
        sites
            .iter()
            .any(|(f, m)| f.ends_with("::job") && m.contains(&"cov_jobs_total")),
        "{sites:?}"
    );
    assert!(
        sites.iter().any(|(f, _)| f.ends_with("::not_in_catalog")),
        "uncalled call sites register too"
    );
    // On ELF targets the call-site statics sit in a linker section; nothing goes
    // through `inventory` (whose per-function constructor costs compile time).
    #[cfg(target_os = "linux")]
    assert_eq!(
        zs_observe::__private::inventory::iter::<zs_observe::__private::Registration>
            .into_iter()
            .count(),
        0
    );

    let report = coverage::report(&catalog, "");
    assert_eq!(
        report.unrecorded,
        vec!["cov_defined_never_recorded_total".to_string()]
    );
    assert_eq!(report.undeclared.len(), 1, "{report}");
    assert!(
        report.undeclared[0].starts_with("cov_undeclared_total (recorded by "),
        "{report}"
    );

    // A plain `metrics::` family in the exposition is seen too, and one that is
    // in the catalog counts as recorded.
    let exposition =
        "# TYPE cov_defined_never_recorded_total counter\ncov_defined_never_recorded_total 1\n\
                      # TYPE cov_cache_hits_total counter\ncov_cache_hits_total 3\n";
    let report = coverage::report(&catalog, exposition);
    assert!(report.unrecorded.is_empty(), "{report}");
    assert_eq!(
        report.undeclared,
        vec![
            "cov_cache_hits_total (in the exposition)".to_string(),
            report.undeclared[1].clone()
        ]
    );
    let message = std::panic::catch_unwind(|| coverage::assert_complete(&catalog, exposition))
        .expect_err("the helper fails loudly");
    let text = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        text.contains("recorded metrics missing from the catalog"),
        "{text}"
    );
    assert!(text.contains("cov_cache_hits_total"), "{text}");
}
