//! The runtime uses the catalog: help text and units, per-metric buckets, the
//! catalog's namespace, and label bounds for the cardinality guard.

use zs_observe::catalog::{Catalog, LabelValues};
use zs_observe::{instrumented, Telemetry};
use zs_observe_tests::{parse_exposition, promtool_check_metrics};

const CATALOG: &str = r#"
[catalog]
service = "rtcat"
namespace = "rtcat"
default_buckets = [0.5, 5.0]

[[metric]]
name = "rtcat_build_info"
type = "gauge"
help = "Build information."
labels = { version = { cardinality = 4 }, environment = { cardinality = 4 } }

[[metric]]
name = "rtcat_fetch_duration_seconds"
type = "histogram"
help = "Fetch duration."
unit = "seconds"
labels = { outcome = ["ok", "error", "panic", "cancelled"], peer = { cardinality = 16 } }
buckets = [0.001, 0.002, 0.004]

[[metric]]
name = "rtcat_plain_seconds"
type = "histogram"
help = "Default buckets apply."
"#;

#[instrumented(histogram = "rtcat_fetch_duration_seconds", labels(peer = "p1"))]
fn fetch() {}

#[test]
fn catalog_drives_help_buckets_and_bounds() {
    let catalog = Catalog::parse(CATALOG, "rtcat.toml").expect("valid");
    let telemetry = Telemetry::builder()
        .with_service_name("rtcat")
        .with_catalog(catalog)
        .install()
        .expect("installs");
    assert_eq!(
        telemetry.namespace(),
        "rtcat",
        "the catalog's namespace is the default"
    );
    fetch();
    metrics::histogram!("rtcat_plain_seconds").record(1.0);

    let body = telemetry.render();
    assert!(
        body.contains("# HELP rtcat_fetch_duration_seconds Fetch duration."),
        "{body}"
    );
    assert!(
        body.contains("# HELP rtcat_build_info Build information."),
        "{body}"
    );
    let samples = parse_exposition(&body);
    let les = |name: &str| -> Vec<String> {
        let mut v: Vec<String> = samples
            .iter()
            .filter(|s| s.name == name && s.labels.get("outcome").is_none_or(|o| o == "ok"))
            .filter_map(|s| s.labels.get("le").cloned())
            .collect();
        v.dedup();
        v
    };
    assert_eq!(
        les("rtcat_fetch_duration_seconds_bucket"),
        ["0.001", "0.002", "0.004", "+Inf"]
    );
    assert_eq!(
        les("rtcat_plain_seconds_bucket"),
        ["0.5", "5", "+Inf"],
        "catalog default buckets"
    );

    let complaints = promtool_check_metrics(&body);
    assert!(
        complaints.trim().is_empty(),
        "promtool:\n{complaints}\n{body}"
    );

    let bounds = telemetry
        .catalog()
        .expect("kept")
        .get("rtcat_fetch_duration_seconds")
        .unwrap();
    assert_eq!(
        bounds.label("peer").unwrap().values,
        LabelValues::Open { cardinality: 16 }
    );
}
