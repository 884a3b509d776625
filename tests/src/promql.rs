//! Static checks of monitoring queries: parse PromQL with `promql-parser`, list
//! the metrics an expression selects, and compare them with the metric catalogs
//! (plus the names recording rules define and a few Prometheus built-ins). Also
//! reads every query out of Grafana dashboard JSON, with Grafana's variables
//! replaced by concrete values so the result is plain PromQL.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr, VectorSelector};
use serde_json::Value;
use zs_observe_catalog::{Catalog, MetricKind};

/// The metric names an expression selects (vector and matrix selectors, at any
/// depth), exactly as written. A selector without a literal name (`{job="x"}`, or
/// `{__name__=~"zerostate_.*"}`) is an error: it cannot be checked against a catalog.
pub fn selected_metrics(expr: &str) -> Result<BTreeSet<String>, String> {
    let ast = parser::parse(expr).map_err(|e| format!("does not parse: {e}"))?;
    let mut names = BTreeSet::new();
    let mut problems = Vec::new();
    walk(&ast, &mut names, &mut problems);
    if problems.is_empty() {
        Ok(names)
    } else {
        Err(problems.join("; "))
    }
}

fn walk(expr: &Expr, names: &mut BTreeSet<String>, problems: &mut Vec<String>) {
    match expr {
        Expr::Aggregate(a) => {
            walk(&a.expr, names, problems);
            if let Some(p) = &a.param {
                walk(p, names, problems);
            }
        }
        Expr::Unary(u) => walk(&u.expr, names, problems),
        Expr::Binary(b) => {
            walk(&b.lhs, names, problems);
            walk(&b.rhs, names, problems);
        }
        Expr::Paren(p) => walk(&p.expr, names, problems),
        Expr::Subquery(s) => walk(&s.expr, names, problems),
        Expr::VectorSelector(vs) => selector(vs, names, problems),
        Expr::MatrixSelector(ms) => selector(&ms.vs, names, problems),
        Expr::Call(c) => {
            for arg in &c.args.args {
                walk(arg, names, problems);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

fn selector(vs: &VectorSelector, names: &mut BTreeSet<String>, problems: &mut Vec<String>) {
    if let Some(name) = &vs.name {
        names.insert(name.clone());
        return;
    }
    let by_name: Vec<_> = vs
        .matchers
        .matchers
        .iter()
        .filter(|m| m.name == "__name__")
        .collect();
    match by_name.as_slice() {
        [m] if matches!(m.op, MatchOp::Equal) => {
            names.insert(m.value.clone());
        }
        _ => problems.push(format!(
            "selector `{vs}` does not name its metric literally (no catalog check is possible)"
        )),
    }
}

/// What a monitoring query may select: catalog metrics (histograms also as their
/// `_bucket`, `_count` and `_sum` series), names recorded by recording rules, and
/// Prometheus' own `up`, `ALERTS`, `ALERTS_FOR_STATE`, `process_*`, `prometheus_*`
/// and `scrape_*` series.
#[derive(Debug, Clone, Default)]
pub struct KnownMetrics {
    /// Catalog metric name → its type.
    pub catalog: BTreeMap<String, MetricKind>,
    /// Names defined by `record:` rules.
    pub recorded: BTreeSet<String>,
}

impl KnownMetrics {
    /// Every metric of `monitoring/catalog/*.toml` and every `record:` of
    /// `monitoring/prometheus/rules/*.yml`.
    pub fn load() -> KnownMetrics {
        let mut known = KnownMetrics::default();
        for path in files_with_extension(&crate::stack::monitoring_dir().join("catalog"), "toml") {
            let catalog = Catalog::load(&path).unwrap_or_else(|errors| {
                panic!("catalog {} does not load: {errors:?}", path.display())
            });
            known.add_catalog(&catalog);
        }
        for file in crate::stack::rule_files() {
            for rule in crate::stack::load_rules(&file) {
                if let Some(record) = rule.record {
                    known.recorded.insert(record);
                }
            }
        }
        known
    }

    /// Adds the metrics of one catalog.
    pub fn add_catalog(&mut self, catalog: &Catalog) {
        for m in &catalog.metrics {
            self.catalog.insert(m.name.clone(), m.kind);
        }
    }

    /// Why `name` may not be selected, or `None` when it may.
    pub fn problem(&self, name: &str) -> Option<String> {
        if self.catalog.contains_key(name) || self.recorded.contains(name) {
            return None;
        }
        const BUILTIN: [&str; 3] = ["up", "ALERTS", "ALERTS_FOR_STATE"];
        const BUILTIN_PREFIXES: [&str; 3] = ["process_", "prometheus_", "scrape_"];
        if BUILTIN.contains(&name) || BUILTIN_PREFIXES.iter().any(|p| name.starts_with(p)) {
            return None;
        }
        for suffix in ["_bucket", "_count", "_sum"] {
            if let Some(base) = name.strip_suffix(suffix) {
                match self.catalog.get(base) {
                    Some(MetricKind::Histogram) => return None,
                    Some(kind) => {
                        return Some(format!(
                            "`{name}`: `{base}` is a {} in the catalog, not a histogram",
                            kind.as_str()
                        ))
                    }
                    None => {}
                }
            }
        }
        let all = self
            .catalog
            .keys()
            .map(String::as_str)
            .chain(self.recorded.iter().map(String::as_str));
        Some(match zs_observe_catalog::rules::closest(name, all) {
            Some(close) => format!("`{name}` is in no catalog (did you mean `{close}`?)"),
            None => format!("`{name}` is in no catalog"),
        })
    }

    /// Parses `expr` and checks every metric it selects: `Ok(names)` when all are
    /// known, otherwise every problem found.
    pub fn check(&self, expr: &str) -> Result<BTreeSet<String>, String> {
        let names = selected_metrics(expr)?;
        let problems: Vec<String> = names.iter().filter_map(|n| self.problem(n)).collect();
        if problems.is_empty() {
            Ok(names)
        } else {
            Err(problems.join("; "))
        }
    }
}

/// The files in `dir` whose name ends in `.ext`, sorted; empty when `dir` does not exist.
pub fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

/// The query language of a dashboard target, from its (or its panel's) datasource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryLanguage {
    /// A Prometheus datasource (or the dashboard's `${datasource}` variable, or none).
    PromQl,
    /// A Loki datasource.
    LogQl,
    /// Anything else (Jaeger, Alertmanager, ...).
    Other,
}

/// One query of a Grafana dashboard.
#[derive(Debug, Clone)]
pub struct DashboardQuery {
    /// The dashboard's uid (or title).
    pub dashboard: String,
    /// The panel's title (or `templating:<var>` for a variable's query).
    pub panel: String,
    /// The target's refId.
    pub ref_id: String,
    /// Its query language.
    pub language: QueryLanguage,
    /// The query as written in the JSON.
    pub raw: String,
    /// The query with every Grafana variable replaced (see [`substitute_variables`]).
    pub expr: String,
}

/// Every query of a dashboard: `panels[].targets[].expr`, panels nested in rows
/// (`panels[].panels[]`) and in the old `rows[].panels[]` layout, and the metric
/// selector of `label_values(...)` / `query_result(...)` template variables.
pub fn dashboard_queries(dashboard: &Value) -> Vec<DashboardQuery> {
    let name = dashboard
        .get("uid")
        .or_else(|| dashboard.get("title"))
        .and_then(Value::as_str)
        .unwrap_or("<no uid>")
        .to_owned();
    let vars = template_values(dashboard);
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = Vec::new();
    collect_panels(dashboard.get("panels"), &mut panels);
    if let Some(rows) = dashboard.get("rows").and_then(Value::as_array) {
        for row in rows {
            collect_panels(row.get("panels"), &mut panels);
        }
    }
    for panel in panels {
        let title = panel
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or("<untitled>");
        let panel_ds = panel.get("datasource");
        for target in panel
            .get("targets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(raw) = target.get("expr").and_then(Value::as_str) else {
                continue;
            };
            let ds = target
                .get("datasource")
                .filter(|d| !d.is_null())
                .or(panel_ds);
            out.push(DashboardQuery {
                dashboard: name.clone(),
                panel: title.to_owned(),
                ref_id: target
                    .get("refId")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                language: language_of(ds),
                raw: raw.to_owned(),
                expr: substitute_variables(raw, &vars),
            });
        }
    }
    for var in template_list(dashboard) {
        if var.get("type").and_then(Value::as_str) != Some("query") {
            continue;
        }
        let query = match var.get("query") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Object(o)) => o
                .get("query")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            _ => continue,
        };
        let Some(selector) = variable_query_expr(&query) else {
            continue;
        };
        let var_name = var.get("name").and_then(Value::as_str).unwrap_or("?");
        out.push(DashboardQuery {
            dashboard: name.clone(),
            panel: format!("templating:{var_name}"),
            ref_id: String::new(),
            language: language_of(var.get("datasource")),
            raw: query.clone(),
            expr: substitute_variables(&selector, &vars),
        });
    }
    out
}

fn collect_panels<'a>(panels: Option<&'a Value>, out: &mut Vec<&'a Value>) {
    for panel in panels.and_then(Value::as_array).into_iter().flatten() {
        out.push(panel);
        collect_panels(panel.get("panels"), out);
    }
}

fn template_list(dashboard: &Value) -> Vec<&Value> {
    dashboard
        .pointer("/templating/list")
        .and_then(Value::as_array)
        .map(|l| l.iter().collect())
        .unwrap_or_default()
}

fn language_of(ds: Option<&Value>) -> QueryLanguage {
    let text = match ds {
        None | Some(Value::Null) => return QueryLanguage::PromQl,
        Some(Value::String(s)) => s.to_lowercase(),
        Some(Value::Object(o)) => {
            let ty = o.get("type").and_then(Value::as_str).unwrap_or("");
            let uid = o.get("uid").and_then(Value::as_str).unwrap_or("");
            if ty.is_empty() {
                uid.to_lowercase()
            } else {
                ty.to_lowercase()
            }
        }
        Some(_) => return QueryLanguage::Other,
    };
    if text.contains("loki") {
        QueryLanguage::LogQl
    } else if text.contains("prometheus")
        || text.contains("datasource")
        || text.starts_with('$')
        || text.is_empty()
    {
        QueryLanguage::PromQl
    } else {
        QueryLanguage::Other
    }
}

/// The PromQL inside a variable query: `label_values(expr, label)` → `expr`,
/// `query_result(expr)` → `expr`, `metrics(re)` / `label_names()` / `label_values(label)`
/// → none.
fn variable_query_expr(query: &str) -> Option<String> {
    let q = query.trim();
    if let Some(inner) = q
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let (expr, _label) = inner.rsplit_once(',')?;
        return Some(expr.trim().to_owned());
    }
    q.strip_prefix("query_result(")
        .and_then(|r| r.strip_suffix(')'))
        .map(|e| e.trim().to_owned())
}

/// A concrete value for every template variable of the dashboard: its current
/// value, the first option, `5m` for interval variables, else `value`.
pub fn template_values(dashboard: &Value) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for var in template_list(dashboard) {
        let Some(name) = var.get("name").and_then(Value::as_str) else {
            continue;
        };
        let current = var.pointer("/current/value").and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_owned),
            _ => None,
        });
        let kind = var.get("type").and_then(Value::as_str).unwrap_or("");
        let value = match current {
            Some(v) if !v.is_empty() && !v.starts_with('$') => v,
            _ if kind == "interval" => "5m".to_owned(),
            _ if kind == "datasource" => "prometheus".to_owned(),
            _ => "value".to_owned(),
        };
        vars.insert(name.to_owned(), value);
    }
    vars
}

/// Replaces Grafana's variables with concrete values: `$__rate_interval`,
/// `$__interval` → `1m`, `$__range` → `1h` (`_s`/`_ms` variants as numbers),
/// `$__all` → `.*`, then each of `vars` in its `$name`, `${name}`,
/// `${name:format}` and `[[name]]` spellings (longest names first).
pub fn substitute_variables(expr: &str, vars: &BTreeMap<String, String>) -> String {
    let builtins: [(&str, &str); 9] = [
        ("__rate_interval_ms", "60000"),
        ("__rate_interval", "1m"),
        ("__interval_ms", "60000"),
        ("__interval", "1m"),
        ("__range_ms", "3600000"),
        ("__range_s", "3600"),
        ("__range", "1h"),
        ("__all", ".*"),
        ("__name", "value"),
    ];
    let mut all: Vec<(String, String)> = builtins
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    all.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
    all.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    let mut out = expr.to_owned();
    // ${name:format} first, then ${name}, [[name]], $name.
    for (name, value) in &all {
        let braced = format!("${{{name}:");
        while let Some(start) = out.find(&braced) {
            let Some(end) = out[start..].find('}') else {
                break;
            };
            out.replace_range(start..start + end + 1, value);
        }
        out = out.replace(&format!("${{{name}}}"), value);
        out = out.replace(&format!("[[{name}]]"), value);
        out = replace_bare(&out, name, value);
    }
    out
}

/// Replaces `$name` where the next character cannot continue an identifier.
fn replace_bare(text: &str, name: &str, value: &str) -> String {
    let needle = format!("${name}");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(&needle) {
        let after = &rest[i + needle.len()..];
        let continues = after
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        out.push_str(&rest[..i]);
        if continues {
            out.push_str(&needle);
        } else {
            out.push_str(value);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}
