//! Compile-time diagnostics of `#[instrumented]`: one file per diagnostic under
//! `tests/ui/<check>/`, with the exact compiler output in the `.stderr` beside it.
//! Regenerate after an intended change with `TRYBUILD=overwrite`.
//!
//! The catalog cases point the macro at a catalog through `ZS_OBSERVE_CATALOG`,
//! one trybuild run per catalog (the variable is read by the macro inside rustc).
//! This is one test function so that the runs never overlap.

use std::path::Path;

fn with_catalog(catalog: &str, run: impl FnOnce(&trybuild::TestCases)) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(catalog);
    // Edition 2021: `set_var` is safe; nothing else in this process reads it concurrently.
    std::env::set_var("ZS_OBSERVE_CATALOG", &path);
    {
        let t = trybuild::TestCases::new();
        run(&t);
    } // the cases are built and checked here
    std::env::remove_var("ZS_OBSERVE_CATALOG");
}

#[test]
fn ui() {
    std::env::remove_var("ZS_OBSERVE_CATALOG");
    {
        let t = trybuild::TestCases::new();
        t.pass("ui/pass/*.rs");
        for check in ["grammar", "metric_name", "label", "span"] {
            t.compile_fail(format!("ui/{check}/*.rs"));
        }
    }
    with_catalog("ui/catalog/catalog.toml", |t| {
        t.pass("ui/catalog_pass/*.rs");
        t.compile_fail("ui/catalog/*.rs");
    });
    for bad in [
        "syntax_error",
        "duplicate_metric",
        "invalid_name",
        "histogram_without_buckets",
        "unknown_field",
        "missing_file",
    ] {
        with_catalog(&format!("ui/bad_catalog/{bad}.toml"), |t| {
            t.compile_fail(format!("ui/bad_catalog/{bad}.rs"));
        });
    }
}
