//! Compile-time diagnostics of `#[instrumented]`: one file per diagnostic under
//! `tests/ui/<check>/`, with the exact compiler output in the `.stderr` beside it.
//! Regenerate after an intended change with `TRYBUILD=overwrite`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    for check in ["grammar", "metric_name", "label", "span"] {
        t.compile_fail(format!("ui/{check}/*.rs"));
    }
}
