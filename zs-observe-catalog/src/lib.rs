//! The zs-observe metric catalog: one TOML file per service, the single source
//! of truth for every metric's name, type, help, unit, labels and buckets.
//!
//! Read by `#[instrumented]` at compile time, by the runtime (descriptions and
//! buckets) and by the monitoring tests. The format is documented in
//! `docs/catalog.md`:
//!
//! ```
//! let catalog = zs_observe_catalog::Catalog::parse(r#"
//! [catalog]
//! service = "zerostate-node"
//! namespace = "zerostate"
//!
//! [[metric]]
//! name = "zerostate_tasks_total"
//! type = "counter"
//! help = "Tasks handled, by status."
//! labels = { status = ["submitted", "completed", "failed"], peer_id = { cardinality = 1000 } }
//! "#, "zerostate.toml").unwrap();
//! let tasks = catalog.get("zerostate_tasks_total").unwrap();
//! assert_eq!(tasks.kind, zs_observe_catalog::MetricKind::Counter);
//! assert_eq!(tasks.labels.len(), 2);
//! ```

pub mod rules;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use rules::{bucket_problem, label_name_problem, metric_name_problems, MetricKey};

/// The type of a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic count; name ends in `_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Observations in buckets.
    Histogram,
}

impl MetricKind {
    /// `counter`, `gauge` or `histogram`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// The allowed values of a label.
#[derive(Clone, Debug, PartialEq)]
pub enum LabelValues {
    /// A closed set: only these values may be recorded.
    Closed(Vec<String>),
    /// An open label (e.g. `peer_id`) with a bound on its distinct values.
    Open {
        /// The most distinct values kept before values collapse into an overflow value.
        cardinality: usize,
    },
}

/// One declared label.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelSpec {
    /// The label name.
    pub name: String,
    /// Its allowed values.
    pub values: LabelValues,
}

/// One metric of the catalog.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// Full name, including the namespace prefix.
    pub name: String,
    /// Its type.
    pub kind: MetricKind,
    /// The `# HELP` text.
    pub help: String,
    /// The base unit (`seconds`, `bytes`, ...), if any.
    pub unit: Option<String>,
    /// Declared labels, sorted by name.
    pub labels: Vec<LabelSpec>,
    /// Bucket bounds (histograms only; else the catalog's default buckets apply).
    pub buckets: Option<Vec<f64>>,
    /// The line of its `[[metric]]` entry, 1-based.
    pub line: usize,
}

impl Metric {
    /// The declared label named `name`.
    pub fn label(&self, name: &str) -> Option<&LabelSpec> {
        self.labels.iter().find(|l| l.name == name)
    }
}

/// A parsed, validated catalog.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalog {
    /// The service the catalog describes.
    pub service: Option<String>,
    /// The prefix every metric name carries (without the trailing `_`).
    pub namespace: Option<String>,
    /// Buckets for histograms that declare none.
    pub default_buckets: Option<Vec<f64>>,
    /// Every metric, in file order.
    pub metrics: Vec<Metric>,
}

/// A problem in a catalog file, with its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogError {
    /// The file, as given to the parser.
    pub file: String,
    /// 1-based line (0 when the problem is the file as a whole).
    pub line: usize,
    /// What is wrong and what would be right.
    pub message: String,
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

impl std::error::Error for CatalogError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    catalog: Option<RawHeader>,
    #[serde(default)]
    metric: Vec<Spanned<RawMetric>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    service: Option<String>,
    namespace: Option<Spanned<String>>,
    default_buckets: Option<Spanned<Vec<f64>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetric {
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    help: Spanned<String>,
    unit: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, Spanned<RawLabel>>,
    buckets: Option<Spanned<Vec<f64>>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawLabel {
    Closed(Vec<String>),
    Open { cardinality: usize },
}

/// Line numbers of byte offsets, from the newline positions found once. (Counting
/// newlines from the start for each metric was quadratic: for a catalog of 1,000
/// metrics, ~3 s of an unoptimised proc macro in every crate that uses it.)
struct Lines(Vec<usize>);

impl Lines {
    fn new(src: &str) -> Lines {
        Lines(
            src.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i)
                .collect(),
        )
    }

    /// The 1-based line of `offset`.
    fn of(&self, offset: usize) -> usize {
        self.0.partition_point(|&nl| nl < offset) + 1
    }
}

impl Catalog {
    /// Reads and validates the catalog at `path`. Every problem is returned, each
    /// with the file and line.
    pub fn load(path: &Path) -> Result<Catalog, Vec<CatalogError>> {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(src) => Catalog::parse(&src, &file),
            Err(e) => Err(vec![CatalogError {
                file,
                line: 0,
                message: format!("cannot read the catalog: {e}"),
            }]),
        }
    }

    /// Parses and validates catalog source; `file` names it in errors.
    pub fn parse(src: &str, file: &str) -> Result<Catalog, Vec<CatalogError>> {
        let lines = Lines::new(src);
        let err = |offset: usize, message: String| CatalogError {
            file: file.to_owned(),
            line: lines.of(offset),
            message,
        };
        let raw: RawCatalog = toml::from_str(src).map_err(|e| {
            vec![err(
                e.span().map_or(0, |s| s.start),
                format!("invalid catalog TOML: {}", e.message()),
            )]
        })?;
        let mut errors = Vec::new();
        let mut catalog = Catalog::default();
        if let Some(header) = raw.catalog {
            catalog.service = header.service;
            if let Some(ns) = header.namespace {
                let value = ns.get_ref().trim_end_matches('_').to_owned();
                if let Some(problem) = label_name_problem(&value) {
                    errors.push(err(
                        ns.span().start,
                        format!("invalid namespace {value:?}: {problem}"),
                    ));
                }
                catalog.namespace = Some(value);
            }
            if let Some(b) = header.default_buckets {
                if let Some(problem) = bucket_problem(b.get_ref()) {
                    errors.push(err(b.span().start, format!("default_buckets: {problem}")));
                }
                catalog.default_buckets = Some(b.into_inner());
            }
        }
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for entry in raw.metric {
            let at = entry.span().start;
            let m = entry.into_inner();
            let name = m.name.get_ref().clone();
            let name_at = m.name.span().start;
            let kind = match m.kind.get_ref().as_str() {
                "counter" => MetricKind::Counter,
                "gauge" => MetricKind::Gauge,
                "histogram" => MetricKind::Histogram,
                other => {
                    errors.push(err(
                        m.kind.span().start,
                        format!("metric {name:?}: unknown type {other:?}; expected \"counter\", \"gauge\" or \"histogram\""),
                    ));
                    continue;
                }
            };
            if let Some(first) = seen.get(&name) {
                errors.push(err(
                    name_at,
                    format!("duplicate metric {name:?}; first declared on line {first}"),
                ));
                continue;
            }
            seen.insert(name.clone(), lines.of(at));
            let key = match kind {
                MetricKind::Counter => MetricKey::Counter,
                MetricKind::Gauge => MetricKey::Gauge,
                MetricKind::Histogram => MetricKey::AnyHistogram,
            };
            for problem in metric_name_problems(key, &name) {
                errors.push(err(name_at, problem));
            }
            if let Some(ns) = &catalog.namespace {
                if !name.starts_with(&format!("{ns}_")) {
                    errors.push(err(
                        name_at,
                        format!("metric {name:?} lacks the catalog's namespace prefix `{ns}_`; use {:?}", format!("{ns}_{name}")),
                    ));
                }
            }
            if m.help.get_ref().trim().is_empty() {
                errors.push(err(
                    m.help.span().start,
                    format!("metric {name:?}: empty help text"),
                ));
            }
            let mut labels = Vec::new();
            for (label, spec) in m.labels {
                let label_at = spec.span().start;
                if let Some(problem) = label_name_problem(&label) {
                    errors.push(err(
                        label_at,
                        format!("metric {name:?}: invalid label name `{label}`: {problem}"),
                    ));
                }
                let values = match spec.into_inner() {
                    RawLabel::Closed(values) => {
                        if values.is_empty() {
                            errors.push(err(
                                label_at,
                                format!("metric {name:?}: label `{label}` declares no values; list them, or write `{{ cardinality = N }}` for an open label"),
                            ));
                        }
                        for (i, v) in values.iter().enumerate() {
                            if values[..i].contains(v) {
                                errors.push(err(
                                    label_at,
                                    format!("metric {name:?}: label `{label}` lists {v:?} twice"),
                                ));
                            }
                        }
                        LabelValues::Closed(values)
                    }
                    RawLabel::Open { cardinality } => {
                        if cardinality == 0 {
                            errors.push(err(
                                label_at,
                                format!("metric {name:?}: label `{label}` has cardinality 0"),
                            ));
                        }
                        LabelValues::Open { cardinality }
                    }
                };
                labels.push(LabelSpec {
                    name: label,
                    values,
                });
            }
            let buckets = match (kind, m.buckets) {
                (MetricKind::Histogram, Some(b)) => {
                    if let Some(problem) = bucket_problem(b.get_ref()) {
                        errors.push(err(b.span().start, format!("metric {name:?}: {problem}")));
                    }
                    Some(b.into_inner())
                }
                (MetricKind::Histogram, None) => {
                    if catalog.default_buckets.is_none() {
                        errors.push(err(
                            at,
                            format!("histogram {name:?} has no `buckets` and the catalog has no `default_buckets`; add one of them"),
                        ));
                    }
                    None
                }
                (_, Some(b)) => {
                    errors.push(err(
                        b.span().start,
                        format!("metric {name:?}: `buckets` only apply to histograms"),
                    ));
                    None
                }
                (_, None) => None,
            };
            catalog.metrics.push(Metric {
                name,
                kind,
                help: m.help.into_inner(),
                unit: m.unit,
                labels,
                buckets,
                line: lines.of(at),
            });
        }
        if errors.is_empty() {
            Ok(catalog)
        } else {
            Err(errors)
        }
    }

    /// The metric named `name`.
    pub fn get(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }

    /// The declared metric closest to `name`, for did-you-mean messages.
    pub fn closest(&self, name: &str) -> Option<&str> {
        rules::closest(name, self.metrics.iter().map(|m| m.name.as_str()))
    }

    /// The buckets a histogram uses: its own, else the catalog's default.
    pub fn buckets_for<'a>(&'a self, metric: &'a Metric) -> Option<&'a [f64]> {
        metric
            .buckets
            .as_deref()
            .or(self.default_buckets.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[catalog]
service = "zerostate-node"
namespace = "zerostate"
default_buckets = [0.01, 0.1, 1.0]

[[metric]]
name = "zerostate_tasks_total"
type = "counter"
help = "Tasks, by status."
labels = { status = ["submitted", "completed"] }

[[metric]]
name = "zerostate_wasm_memory_bytes"
type = "histogram"
help = "Memory used by a WASM task."
unit = "bytes"
buckets = [1024.0, 65536.0]

[[metric]]
name = "zerostate_task_duration_seconds"
type = "histogram"
help = "Task duration."
labels = { peer_id = { cardinality = 100 } }
"#;

    #[test]
    fn parses_a_good_catalog() {
        let c = Catalog::parse(GOOD, "z.toml").expect("valid");
        assert_eq!(c.namespace.as_deref(), Some("zerostate"));
        assert_eq!(c.metrics.len(), 3);
        let tasks = c.get("zerostate_tasks_total").unwrap();
        assert_eq!(tasks.line, 7);
        assert_eq!(
            tasks.label("status").unwrap().values,
            LabelValues::Closed(vec!["submitted".into(), "completed".into()])
        );
        let d = c.get("zerostate_task_duration_seconds").unwrap();
        assert_eq!(
            c.buckets_for(d),
            Some(&[0.01, 0.1, 1.0][..]),
            "default buckets apply"
        );
        assert_eq!(
            d.label("peer_id").unwrap().values,
            LabelValues::Open { cardinality: 100 }
        );
        assert_eq!(
            c.closest("zerostate_task_total"),
            Some("zerostate_tasks_total")
        );
    }

    fn errors(src: &str) -> Vec<String> {
        Catalog::parse(src, "bad.toml")
            .expect_err("invalid")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let e = errors("[[metric]]\nname = \"a_total\"\ntype = \n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("bad.toml:3: invalid catalog TOML"),
            "{e:?}"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let src = r#"[catalog]
namespace = "zerostate"

[[metric]]
name = "zerostate_tasks"
type = "counter"
help = "x"

[[metric]]
name = "zerostate_tasks"
type = "counter"
help = "again"

[[metric]]
name = "zerostate_guild_total"
type = "gauge"
help = "guilds"

[[metric]]
name = "other_latency_seconds"
type = "histogram"
help = ""
labels = { le = ["1"], kind = [] }
"#;
        let e = errors(src);
        let has =
            |prefix: &str, text: &str| e.iter().any(|m| m.starts_with(prefix) && m.contains(text));
        assert!(has("bad.toml:5:", "must end in `_total`"), "{e:#?}");
        assert!(
            has(
                "bad.toml:10:",
                "duplicate metric \"zerostate_tasks\"; first declared on line 4"
            ),
            "{e:#?}"
        );
        assert!(has("bad.toml:15:", "marks a counter"), "{e:#?}");
        assert!(
            has("bad.toml:20:", "namespace prefix `zerostate_`"),
            "{e:#?}"
        );
        assert!(has("bad.toml:22:", "empty help"), "{e:#?}");
        assert!(has("bad.toml:23:", "`le` is reserved"), "{e:#?}");
        assert!(has("bad.toml:23:", "declares no values"), "{e:#?}");
        assert!(has("bad.toml:19:", "no `buckets`"), "{e:#?}");
    }

    #[test]
    fn unknown_fields_and_types_are_errors() {
        assert!(errors(
            "[[metric]]\nname = \"a_total\"\ntype = \"counter\"\nhelp = \"h\"\nhelpp = \"x\"\n"
        )[0]
        .contains("unknown field"));
        assert!(
            errors("[[metric]]\nname = \"a\"\ntype = \"summary\"\nhelp = \"h\"\n")[0]
                .contains("unknown type \"summary\"")
        );
        assert!(errors(
            "[[metric]]\nname = \"a_total\"\ntype = \"counter\"\nhelp = \"h\"\nbuckets = [1.0]\n"
        )[0]
        .contains("only apply to histograms"));
    }

    #[test]
    fn missing_file_is_an_error_not_a_panic() {
        let e = Catalog::load(Path::new("/nonexistent/catalog.toml")).expect_err("missing");
        assert!(
            e[0].to_string()
                .starts_with("/nonexistent/catalog.toml: cannot read the catalog"),
            "{e:?}"
        );
    }
}

/// The `catalog` setting of `[package.metadata.zs-observe]` in a crate's
/// `Cargo.toml` source, if present.
pub fn catalog_setting_from_manifest(manifest: &str) -> Option<String> {
    let table: toml::Table = toml::from_str(manifest).ok()?;
    table
        .get("package")?
        .get("metadata")?
        .get("zs-observe")?
        .get("catalog")?
        .as_str()
        .map(str::to_owned)
}

#[cfg(test)]
mod manifest_tests {
    #[test]
    fn reads_the_metadata_setting() {
        let manifest = "[package]\nname = \"x\"\n\n[package.metadata.zs-observe]\ncatalog = \"../monitoring/catalog/x.toml\"\n";
        assert_eq!(
            super::catalog_setting_from_manifest(manifest).as_deref(),
            Some("../monitoring/catalog/x.toml")
        );
        assert_eq!(
            super::catalog_setting_from_manifest("[package]\nname = \"x\"\n"),
            None
        );
        assert_eq!(super::catalog_setting_from_manifest("not toml ["), None);
    }
}

#[cfg(test)]
mod doc_tests {
    /// The catalog examples of docs/catalog.md parse with this parser.
    #[test]
    fn catalog_md_examples_parse() {
        let doc = include_str!("../../docs/catalog.md");
        let mut blocks = 0;
        for (i, block) in doc.split("```toml\n").skip(1).enumerate() {
            let src = block.split("```").next().unwrap_or_default();
            if !src.contains("[[metric]]") {
                continue; // Cargo.toml and .cargo/config.toml snippets
            }
            blocks += 1;
            if let Err(errors) = super::Catalog::parse(src, "docs/catalog.md") {
                panic!("toml block {i} of docs/catalog.md: {errors:?}");
            }
        }
        assert!(blocks >= 1, "docs/catalog.md has a catalog example");
    }
}

#[cfg(test)]
mod line_tests {
    #[test]
    fn lines_of_offsets() {
        let src = "a\nbc\n\nd";
        let lines = super::Lines::new(src);
        let naive = |o: usize| src[..o].bytes().filter(|b| *b == b'\n').count() + 1;
        for o in 0..=src.len() {
            assert_eq!(lines.of(o), naive(o), "offset {o}");
        }
    }
}

/// Hostile catalogs: whatever the text, parsing returns a value (never panics), and
/// a rejected catalog says where and why.
#[cfg(test)]
mod hostile {
    use super::*;
    use proptest::prelude::*;

    fn check(src: &str) {
        match Catalog::parse(src, "hostile.toml") {
            Ok(catalog) => {
                for m in &catalog.metrics {
                    assert!(!m.name.is_empty() && !m.help.is_empty(), "{src:?}");
                }
            }
            Err(errors) => {
                assert!(!errors.is_empty(), "{src:?}");
                let lines = src.lines().count() + 1;
                for e in &errors {
                    assert!(!e.message.is_empty() && e.line <= lines, "{e} in {src:?}");
                    assert!(e.to_string().starts_with("hostile.toml"), "{e}");
                }
            }
        }
    }

    /// Text made of catalog syntax: headers, keys and values, valid and not.
    fn tomlish() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("name"),
            Just("type"),
            Just("help"),
            Just("unit"),
            Just("labels"),
            Just("buckets"),
            Just("service"),
            Just("namespace"),
            Just("default_buckets"),
            Just("cardinality"),
            Just("bogus"),
        ];
        let value = prop_oneof![
            "\"[a-z_:]{0,12}\"",
            "\"\\PC{0,12}\"",
            Just("\"counter\"".to_owned()),
            Just("\"histogram\"".to_owned()),
            Just("\"zs_things_total\"".to_owned()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| format!("[{f:?}, 1.0]")),
            Just("[nan, inf, -inf, -1.0, 0.0]".to_owned()),
            Just("[1e308, 1e-308, 5e-324]".to_owned()),
            Just("{ a = [\"x\", \"\"], b = { cardinality = 18446744073709551615 } }".to_owned()),
            Just("{ le = [\"1\"], __x = [], \"bad name\" = { cardinality = 0 } }".to_owned()),
            Just("[[[[[[]]]]]]".to_owned()),
            Just("\"\"\"multi\nline\"\"\"".to_owned()),
            "[\\[\\]{}=,\"a-z0-9 .]{0,20}",
        ];
        let line = prop_oneof![
            Just("[catalog]".to_owned()),
            Just("[[metric]]".to_owned()),
            Just("[metric]".to_owned()),
            (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
            "\\PC{0,30}",
        ];
        proptest::collection::vec(line, 0..25).prop_map(|lines| lines.join("\n"))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_gives_a_value(src in any::<String>()) {
            check(&src);
        }

        #[test]
        fn arbitrary_bytes_give_a_value(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            check(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn tomlish_text_gives_a_value(src in tomlish()) {
            check(&src);
        }
    }

    /// What the macro does with the file (read, then parse): bytes that are not
    /// UTF-8 are an error naming the file, not a panic.
    #[test]
    fn unreadable_bytes_are_an_error() {
        let path = std::env::temp_dir().join(format!("zs-hostile-{}.toml", std::process::id()));
        std::fs::write(&path, [0xff, 0xfe, b'[', 0x80, b'\n', 0]).unwrap();
        let errors = Catalog::load(&path).unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.starts_with("cannot read the catalog"),
            "{}",
            errors[0]
        );
    }
}
