//! The `disabled` feature compiles instrumentation out. The fixture is its own
//! workspace (a feature in this workspace would unify into every test build); it
//! is built with this workspace's lock file and target directory, offline.

use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn disabled_feature_behaves_identically_and_emits_nothing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let fixture = root.join("tests/fixtures/compiled-out");
    std::fs::copy(root.join("Cargo.lock"), fixture.join("Cargo.lock")).expect("copy lock file");
    let target: PathBuf = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["run", "--quiet", "--offline", "--manifest-path"])
        .arg(fixture.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target.join("fixtures"))
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fixture failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Same results as instrumented code; no series, spans or events at all.
    assert_eq!(
        stdout.trim(),
        "ok=Ok(42) err=true panicked=true series=0 tracing=0"
    );
}
