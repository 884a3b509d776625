//! Editing the catalog recompiles the crates that use it, and the crate finds
//! its catalog through `[package.metadata.zs-observe]` (default) or
//! `ZS_OBSERVE_CATALOG` (override). The fixture is copied to a scratch directory
//! (its own workspace) and built offline with this workspace's lock file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cargo_build(dir: &Path, target: &Path, env: Option<(&str, &str)>) -> Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--offline", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target)
        .env_remove("ZS_OBSERVE_CATALOG");
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    cmd.output().expect("cargo runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn editing_the_catalog_recompiles_and_rechecks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let target: PathBuf = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let work = target.join("fixtures/catalog-rebuild-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("src")).unwrap();
    let fixture = root.join("tests/fixtures/catalog-rebuild");
    std::fs::copy(fixture.join("src/main.rs"), work.join("src/main.rs")).unwrap();
    let good = std::fs::read_to_string(fixture.join("catalog.toml")).unwrap();
    std::fs::write(work.join("catalog.toml"), &good).unwrap();
    std::fs::copy(root.join("Cargo.lock"), work.join("Cargo.lock")).unwrap();
    std::fs::write(
        work.join("Cargo.toml"),
        format!(
            "[workspace]\n\n[package]\nname = \"catalog-rebuild\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
             [dependencies]\nzs-observe = {{ path = {:?} }}\n\n\
             [package.metadata.zs-observe]\ncatalog = \"catalog.toml\"\n",
            root.join("zs-observe").display().to_string()
        ),
    )
    .unwrap();
    let target = target.join("fixtures");

    let first = cargo_build(&work, &target, None);
    assert!(
        first.status.success(),
        "builds against its catalog:\n{}",
        stderr(&first)
    );

    // The metric disappears from the catalog: without rebuild tracking cargo would
    // call the crate fresh and this build would pass.
    std::fs::write(
        work.join("catalog.toml"),
        good.replace("fixture_jobs_total", "fixture_jobs_done_total"),
    )
    .unwrap();
    let edited = cargo_build(&work, &target, None);
    assert!(!edited.status.success(), "the edit is seen");
    let err = stderr(&edited);
    assert!(
        err.contains("metric \"fixture_jobs_total\" is not in the catalog catalog.toml; did you mean \"fixture_jobs_done_total\"?"),
        "{err}"
    );

    std::fs::write(work.join("catalog.toml"), &good).unwrap();
    let restored = cargo_build(&work, &target, None);
    assert!(restored.status.success(), "{}", stderr(&restored));

    // The environment variable overrides the metadata, and changing it rebuilds too.
    std::fs::write(
        work.join("other.toml"),
        "[[metric]]\nname = \"other_total\"\ntype = \"counter\"\nhelp = \"x\"\n",
    )
    .unwrap();
    let overridden = cargo_build(&work, &target, Some(("ZS_OBSERVE_CATALOG", "other.toml")));
    assert!(!overridden.status.success());
    assert!(
        stderr(&overridden).contains("is not in the catalog other.toml"),
        "{}",
        stderr(&overridden)
    );
}
