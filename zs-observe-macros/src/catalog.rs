//! Finding and reading the crate's catalog, once per compilation.
//!
//! The default is `[package.metadata.zs-observe] catalog = "path"` in the crate's
//! `Cargo.toml`; the environment variable `ZS_OBSERVE_CATALOG` overrides it.
//! Relative paths are relative to the crate's directory. The parsed catalog is
//! cached in this process (rustc loads the macro once per crate), keyed by path
//! and modification time, so long-lived hosts such as rust-analyzer see edits.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use zs_observe_catalog::{Catalog, CatalogError};

/// The environment variable that overrides the crate's catalog setting.
pub(crate) const ENV: &str = "ZS_OBSERVE_CATALOG";

/// A catalog the crate points at.
pub(crate) struct Loaded {
    /// Absolute path, for `include_bytes!`.
    pub(crate) path: PathBuf,
    /// The path relative to the crate's directory, for messages.
    pub(crate) shown: String,
    pub(crate) catalog: Result<Arc<Catalog>, Arc<Vec<CatalogError>>>,
}

type Cache = HashMap<
    PathBuf,
    (
        Option<SystemTime>,
        Result<Arc<Catalog>, Arc<Vec<CatalogError>>>,
    ),
>;

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Where the crate's catalog is (absolute path, path shown in messages), resolved
/// from `ZS_OBSERVE_CATALOG` or the crate's `Cargo.toml`. Cached per crate
/// directory, override and manifest modification time: `Cargo.toml` is read once
/// per compilation, not once per attribute.
fn resolve(dir: PathBuf) -> Option<(PathBuf, String)> {
    let over = std::env::var(ENV).ok().filter(|v| !v.trim().is_empty());
    let manifest = dir.join("Cargo.toml");
    let key = (dir.clone(), over.clone(), mtime(&manifest));
    type Resolved =
        HashMap<(PathBuf, Option<String>, Option<SystemTime>), Option<(PathBuf, String)>>;
    static RESOLVED: OnceLock<Mutex<Resolved>> = OnceLock::new();
    let mut resolved = RESOLVED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if key.2.is_some() {
        if let Some(hit) = resolved.get(&key) {
            return hit.clone();
        }
    }
    let found = over
        .or_else(|| {
            let text = std::fs::read_to_string(&manifest).ok()?;
            zs_observe_catalog::catalog_setting_from_manifest(&text)
        })
        .map(|setting| {
            let dir = dir.canonicalize().unwrap_or(dir);
            let path = dir.join(setting);
            let path = path.canonicalize().unwrap_or(path);
            let shown = relative(&path, &dir);
            (path, shown)
        });
    resolved.insert(key, found.clone());
    found
}

/// Whether this is the first expansion in this compilation (this process and crate)
/// to use `path`: only that one emits the rebuild tracking (`include_bytes!` of the
/// catalog), so rustc reads the file once per compilation, not once per attribute.
pub(crate) fn first_use(path: &Path) -> bool {
    static SEEN: OnceLock<Mutex<HashSet<(String, PathBuf)>>> = OnceLock::new();
    // One rustc process compiles one crate; a long-lived host (rust-analyzer's
    // proc-macro server) expands many, hence the crate in the key.
    let krate = format!(
        "{}#{}",
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default(),
        std::env::var("CARGO_CRATE_NAME").unwrap_or_default()
    );
    SEEN.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert((krate, path.to_owned()))
}

/// The crate's catalog, or `None` when it has none (lexical checks only).
pub(crate) fn lookup() -> Option<Loaded> {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let (path, shown) = resolve(dir)?;
    let mtime = mtime(&path);

    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some((seen, catalog)) = cache.get(&path) {
        if *seen == mtime && mtime.is_some() {
            return Some(Loaded {
                path,
                shown,
                catalog: catalog.clone(),
            });
        }
    }
    let catalog = match std::fs::read_to_string(&path) {
        Ok(src) => Catalog::parse(&src, &shown),
        Err(e) => Err(vec![CatalogError {
            file: shown.clone(),
            line: 0,
            message: format!("cannot read the catalog: {e}"),
        }]),
    }
    .map(Arc::new)
    .map_err(Arc::new);
    cache.insert(path.clone(), (mtime, catalog.clone()));
    Some(Loaded {
        path,
        shown,
        catalog,
    })
}

/// `path` relative to `base` (both absolute), e.g. `../../monitoring/catalog/x.toml`.
fn relative(path: &Path, base: &Path) -> String {
    let p: Vec<_> = path.components().collect();
    let b: Vec<_> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if common == 0 {
        return path.display().to_string();
    }
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c);
    }
    out.display().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn relative_paths() {
        use std::path::Path;
        let r = |p, b| super::relative(Path::new(p), Path::new(b));
        assert_eq!(
            r("/w/monitoring/catalog/z.toml", "/w/examples/node"),
            "../../monitoring/catalog/z.toml"
        );
        assert_eq!(r("/w/node/catalog.toml", "/w/node"), "catalog.toml");
    }
}
