//! Finding and reading the crate's catalog, once per compilation.
//!
//! The default is `[package.metadata.zs-observe] catalog = "path"` in the crate's
//! `Cargo.toml`; the environment variable `ZS_OBSERVE_CATALOG` overrides it.
//! Relative paths are relative to the crate's directory. The parsed catalog is
//! cached in this process (rustc loads the macro once per crate), keyed by path
//! and modification time, so long-lived hosts such as rust-analyzer see edits.

use std::collections::HashMap;
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

/// The crate's catalog, or `None` when it has none (lexical checks only).
pub(crate) fn lookup() -> Option<Loaded> {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let setting = std::env::var(ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| {
            let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
            zs_observe_catalog::catalog_setting_from_manifest(&manifest)
        })?;
    let dir = dir.canonicalize().unwrap_or(dir);
    let path = dir.join(setting);
    let path = path.canonicalize().unwrap_or(path);
    let shown = relative(&path, &dir);
    let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();

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
