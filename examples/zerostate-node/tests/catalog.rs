//! The node's code and its catalog (monitoring/catalog/zerostate.toml) agree both
//! ways: no catalog metric without code recording it, no recorded metric missing
//! from the catalog.

#[test]
fn catalog_coverage_is_complete() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zerostate-node"))
        .arg("--check-catalog")
        .env_remove("OTEL_SERVICE_NAME")
        .output()
        .expect("node runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "coverage report:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report.trim(), "catalog and code agree");
}
