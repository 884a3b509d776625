//! The Grafana dashboards of `monitoring/grafana/dashboards/`, proven against the running
//! examples: a real Prometheus on loopback (1 s scrapes, the real rule files) scrapes a
//! `zerostate-node` and an `ains-api --workload`, and every Prometheus query of every
//! dashboard (panel targets and `label_values` variables, Grafana variables substituted)
//! must return at least one sample. The Loki queries of the logs explorer cannot run here
//! (no Loki binary in Debian): their LogQL is checked for shape instead - a stream
//! selector that uses only the labels Alloy sets, never `trace_id`.
//!
//! Also checked without any process: the dashboard conventions of docs/monitoring.md
//! (uid, schemaVersion, datasource variable, units, descriptions, `$__rate_interval`),
//! and that the JSON files are what `monitoring/grafana/generate.py` emits.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use zs_observe_tests::promql::{dashboard_queries, substitute_variables, QueryLanguage};
use zs_observe_tests::stack::{
    dashboard_files, example_binary, monitoring_dir, require_tool, Prometheus, ServiceProcess,
};

/// The dashboards this repository ships, by uid.
const EXPECTED: [&str; 10] = [
    "zs-network-overview",
    "zs-execution-performance",
    "zs-economic-activity",
    "zs-system-health",
    "zs-logs-explorer",
    "zs-ains-system-overview",
    "zs-ains-task-management",
    "zs-ains-agent-performance",
    "zs-ains-chain-execution",
    "zs-ains-scheduled-tasks",
];

/// What `$__rate_interval` becomes: Grafana's value for a 1 s scrape interval is far
/// smaller, 15 s is the smallest realistic production value and holds enough samples.
const RATE_INTERVAL: &str = "15s";

/// The longest wait for every query to return data.
const DATA_DEADLINE: Duration = Duration::from_secs(90);

fn dashboards() -> Vec<(PathBuf, Value)> {
    let files = dashboard_files();
    assert!(
        !files.is_empty(),
        "no dashboards in monitoring/grafana/dashboards"
    );
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", f.display()));
            let json: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", f.display()));
            (f, json)
        })
        .collect()
}

fn uid(d: &Value) -> &str {
    d["uid"].as_str().unwrap_or("<no uid>")
}

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&d["panels"], &mut out);
    out
}

fn variable<'a>(d: &'a Value, name: &str) -> Option<&'a Value> {
    d.pointer("/templating/list")?
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)
}

// ---------------------------------------------------------------------------------
// Conventions (no process)

#[test]
fn dashboards_follow_the_conventions() {
    let all = dashboards();
    let uids: BTreeSet<&str> = all.iter().map(|(_, d)| uid(d)).collect();
    for expected in EXPECTED {
        assert!(uids.contains(expected), "dashboard {expected} is missing");
    }
    let mut problems = Vec::new();
    for (file, d) in &all {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        let u = uid(d);
        if !u.starts_with("zs-") || format!("{u}.json") != name {
            problems.push(format!(
                "{name}: uid `{u}` (want zs-..., equal to the file name)"
            ));
        }
        if d["schemaVersion"].as_u64().unwrap_or(0) < 39 {
            problems.push(format!("{u}: schemaVersion {} < 39", d["schemaVersion"]));
        }
        let ds = variable(d, "datasource");
        let kind = ds.and_then(|v| v["query"].as_str()).unwrap_or("");
        if ds.map(|v| &v["type"]) != Some(&Value::from("datasource"))
            || !["prometheus", "loki"].contains(&kind)
        {
            problems.push(format!("{u}: no `datasource` variable of type datasource"));
        }
        for p in panels(d) {
            if p["type"] == "row" {
                continue;
            }
            let title = p["title"].as_str().unwrap_or("<untitled>");
            let at = format!("{u} / {title}");
            if p["datasource"]["uid"] != "${datasource}" || p["datasource"]["type"] != kind {
                problems.push(format!("{at}: datasource is not ${{datasource}} ({kind})"));
            }
            if p.pointer("/fieldConfig/defaults/unit")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                problems.push(format!("{at}: no unit"));
            }
            if p["description"].as_str().is_none_or(str::is_empty) {
                problems.push(format!("{at}: no description"));
            }
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                problems.push(format!("{at}: a panel without a query"));
            }
            for t in &targets {
                let expr = t["expr"].as_str().unwrap_or("");
                if expr.trim().is_empty() {
                    problems.push(format!("{at}: an empty query"));
                }
                if t["datasource"]["uid"] != "${datasource}" {
                    problems.push(format!(
                        "{at}: a target's datasource is not ${{datasource}}"
                    ));
                }
                if kind == "prometheus" {
                    for window in range_windows(expr, &["rate(", "increase(", "irate("]) {
                        if window != "$__rate_interval" {
                            problems.push(format!(
                                "{at}: rate/increase over [{window}], not [$__rate_interval]"
                            ));
                        }
                    }
                }
            }
        }
        if kind == "prometheus" {
            for var in ["job", "instance", "environment"] {
                if variable(d, var).is_none() {
                    problems.push(format!("{u}: no `{var}` variable"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The `[...]` windows of every call to one of `functions` in `expr`: the last
/// bracket outside quotes before the call's closing parenthesis.
fn range_windows(expr: &str, functions: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for f in functions {
        let mut from = 0;
        while let Some(i) = expr[from..].find(f).map(|i| i + from) {
            from = i + f.len();
            // `irate(` also contains `rate(`: only a call that starts a word counts.
            let starts_word = expr[..i]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_');
            if !starts_word {
                continue;
            }
            let (mut depth, mut quoted, mut open, mut window) = (1, false, None, None);
            for (j, c) in expr[from..].char_indices() {
                match c {
                    '"' => quoted = !quoted,
                    _ if quoted => {}
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    '[' if depth == 1 => open = Some(j + 1),
                    ']' if depth == 1 => {
                        if let Some(o) = open.take() {
                            window = Some(expr[from + o..from + j].to_owned());
                        }
                    }
                    _ => {}
                }
            }
            out.push(window.unwrap_or_else(|| "<none>".to_owned()));
        }
    }
    out
}

#[test]
fn dashboards_are_the_generator_output() {
    let python = require_tool("python3", "python3");
    let generator = monitoring_dir().join("grafana/generate.py");
    let out = Command::new(python)
        .arg(&generator)
        .arg("--check")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", generator.display()));
    assert!(
        out.status.success(),
        "the dashboards differ from `python3 monitoring/grafana/generate.py` (run it and commit both):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------
// LogQL (no Loki binary in Debian: shape only)

/// The stream labels Alloy attaches (monitoring/alloy/config.alloy): the
/// `target_label`s of its relabel rules and the keys of `stage.labels`.
fn alloy_stream_labels() -> BTreeSet<String> {
    let path = monitoring_dir().join("alloy/config.alloy");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut labels = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("target_label") {
            let value = rest.trim_start_matches([' ', '=']).trim_matches('"');
            labels.insert(value.to_owned());
        }
    }
    // stage.labels { values = { level = "", service = "" } }
    let block = text
        .split("stage.labels")
        .nth(1)
        .expect("config.alloy has a stage.labels block");
    let block = &block[..block.find("\n  }").unwrap_or(block.len())];
    for line in block.lines() {
        if let Some((key, _)) = line.trim().split_once('=') {
            let key = key.trim();
            if !key.is_empty()
                && key != "values"
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                labels.insert(key.to_owned());
            }
        }
    }
    labels
}

/// A label matcher of a stream selector: name, operator, value.
type Matcher = (String, String, String);

/// The matchers of the stream selector that starts at `text[0] == '{'`, and the rest.
fn stream_selector(text: &str) -> Result<(Vec<Matcher>, &str), String> {
    let body = text.strip_prefix('{').ok_or("no `{`")?;
    let mut matchers = Vec::new();
    let mut rest = body.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((matchers, after));
        }
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or("unterminated selector")?;
        let name = &rest[..name_len];
        if name.is_empty() {
            return Err(format!("a matcher without a label name at `{rest}`"));
        }
        rest = rest[name_len..].trim_start();
        let op = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .ok_or_else(|| format!("no operator after `{name}`"))?;
        rest = rest[op.len()..].trim_start();
        let value_body = rest
            .strip_prefix('"')
            .ok_or_else(|| format!("`{name}{op}` without a quoted value"))?;
        let end = value_body
            .find('"')
            .ok_or_else(|| format!("unterminated value of `{name}`"))?;
        matchers.push((name.to_owned(), op.to_owned(), value_body[..end].to_owned()));
        rest = value_body[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
}

/// Problems of one LogQL query: log queries start with a stream selector, metric
/// queries wrap one in a range aggregation; selectors use only `labels`, never
/// `trace_id`, and have a matcher that cannot match the empty string; a `trace_id`
/// filter comes after `| json`.
fn logql_problems(raw: &str, labels: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let expr = raw.trim();
    let Some(start) = expr.find('{') else {
        return vec!["no stream selector `{...}`".into()];
    };
    if start > 0 {
        let head = &expr[..start];
        let aggregations = [
            "count_over_time(",
            "rate(",
            "bytes_over_time(",
            "bytes_rate(",
        ];
        if !aggregations.iter().any(|a| head.contains(a)) {
            problems.push(format!(
                "text before the stream selector is not a range aggregation: `{head}`"
            ));
        }
        if !(expr.contains("[$__interval]")
            || expr.contains("[$__range]")
            || expr.contains("[$__auto]"))
        {
            problems.push("a metric query without a [$__interval] / [$__range] window".into());
        }
    }
    match stream_selector(&expr[start..]) {
        Err(e) => problems.push(format!("malformed stream selector: {e}")),
        Ok((matchers, rest)) => {
            if matchers.is_empty() {
                problems.push("an empty stream selector".into());
            }
            for (name, _, _) in &matchers {
                if name == "trace_id" {
                    problems.push("trace_id in the stream selector (it is never a label)".into());
                } else if !labels.contains(name) {
                    problems.push(format!(
                        "label `{name}` is not set by Alloy (labels: {labels:?})"
                    ));
                }
            }
            // Loki needs one matcher that does not match "": `=` a non-empty value, or
            // `=~` a variable whose All value is `.+`, or `.+`.
            let selective = matchers.iter().any(|(_, op, v)| {
                (op == "=" && !v.is_empty()) || (op == "=~" && (v.starts_with('$') || v == ".+"))
            });
            if !selective {
                problems.push("no matcher that excludes the empty string".into());
            }
            if let Some(i) = rest.find("trace_id") {
                if !rest[..i].contains("| json") {
                    problems.push("a trace_id filter before `| json`".into());
                }
            }
            if rest.contains('{') {
                problems.push("a second `{` after the stream selector".into());
            }
        }
    }
    let open = expr.matches('(').count();
    let close = expr.matches(')').count();
    if open != close {
        problems.push(format!("unbalanced parentheses ({open} vs {close})"));
    }
    problems
}

#[test]
fn loki_queries_are_well_formed_and_keep_trace_id_out_of_stream_selectors() {
    let labels = alloy_stream_labels();
    assert!(
        labels.contains("service") && labels.contains("level"),
        "Alloy sets no service/level labels: {labels:?}"
    );
    assert!(
        !labels.contains("trace_id"),
        "Alloy makes trace_id a stream label: {labels:?}"
    );
    let mut problems = Vec::new();
    let mut count = 0;
    let mut trace_panel = false;
    for (_, d) in dashboards() {
        for q in dashboard_queries(&d) {
            if q.language != QueryLanguage::LogQl {
                continue;
            }
            count += 1;
            for p in logql_problems(&q.raw, &labels) {
                problems.push(format!("{} / {}: {p}\n    {}", q.dashboard, q.panel, q.raw));
            }
            if q.raw.contains(r#"| json | trace_id="$trace_id""#) {
                trace_panel = true;
            }
        }
    }
    assert!(count > 0, "no Loki query in any dashboard");
    assert!(
        trace_panel,
        "no panel filters `| json | trace_id=\"$trace_id\"`"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The checker itself rejects what it must.
    for bad in [
        r#"{trace_id="abc"}"#,
        r#"{job="docker"} | json"#,
        r#"{service=~".*"}"#,
        r#"sum(count_over_time({service="a"}))"#,
    ] {
        assert!(!logql_problems(bad, &labels).is_empty(), "accepted {bad}");
    }
}

// ---------------------------------------------------------------------------------
// Every Prometheus query returns data against the running examples

/// One query to run, with where it came from.
struct Check {
    at: String,
    expr: String,
}

fn prometheus_checks() -> Vec<Check> {
    let mut checks = Vec::new();
    for (_, d) in dashboards() {
        let Some(job) = variable(&d, "job")
            .and_then(|v| v.pointer("/current/value"))
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            continue; // the logs explorer
        };
        let vars: BTreeMap<String, String> = [
            ("datasource", "prometheus"),
            ("job", job.as_str()),
            ("instance", ".*"),
            ("environment", ".*"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for q in dashboard_queries(&d) {
            if q.language != QueryLanguage::PromQl {
                continue;
            }
            // A variable's query: the harness already extracted its selector.
            let raw = if q.panel.starts_with("templating:") {
                q.expr.clone()
            } else {
                q.raw.replace("$__rate_interval", RATE_INTERVAL)
            };
            let expr = substitute_variables(&raw, &vars);
            assert!(
                !expr.contains('$'),
                "{} / {}: a variable this test does not substitute: {expr}",
                q.dashboard,
                q.panel
            );
            checks.push(Check {
                at: format!("{} / {} [{}]", q.dashboard, q.panel, q.ref_id),
                expr,
            });
        }
    }
    checks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_prometheus_panel_query_returns_data_from_the_running_examples() {
    let started = Instant::now();
    let checks = prometheus_checks();
    assert!(
        checks.len() > 100,
        "only {} Prometheus queries",
        checks.len()
    );

    let data_dir = tempfile::tempdir().expect("temp dir");
    let data_dir_arg = data_dir.path().to_string_lossy().into_owned();
    let node = ServiceProcess::start(
        &example_binary("zerostate-node", "zerostate-node"),
        &[
            "--data-dir",
            &data_dir_arg,
            // Faults at moderate rates (as the node's own workload test), so failures,
            // refunds, disputes and peer churn happen within seconds.
            "--task-failure-rate",
            "0.1",
            "--payment-failure-rate",
            "0.05",
            "--peer-loss-rate",
            "0.01",
        ],
    );
    let ains = ServiceProcess::start(&example_binary("ains-api", "ains-api"), &["--workload"]);
    let prom = Prometheus::builder()
        .interval(Duration::from_secs(1))
        .scrape("zerostate-node", node.addr())
        .scrape("ains-api", ains.addr())
        .real_rules(None)
        .start()
        .await;
    let processes_ready = started.elapsed();

    prom.wait_for(r#"up{job="zerostate-node"} == 1"#, Duration::from_secs(20))
        .await;
    prom.wait_for(r#"up{job="ains-api"} == 1"#, Duration::from_secs(20))
        .await;

    let deadline = Instant::now() + DATA_DEADLINE;
    let mut pending: Vec<(Check, String)> = checks
        .into_iter()
        .map(|c| (c, "not run yet".to_owned()))
        .collect();
    let total = pending.len();
    // Queries whose samples were all NaN (0/0: nothing happened in the window) when
    // they first returned data: reported, not failed.
    let mut only_nan = Vec::new();
    loop {
        let mut still = Vec::new();
        for (check, _) in pending {
            match prom.query(&check.expr).await {
                Ok(samples) if !samples.is_empty() => {
                    if samples.iter().all(|s| s.value.is_nan()) {
                        only_nan.push(check.at);
                    }
                }
                Ok(_) => still.push((check, "no samples".to_owned())),
                Err(e) => still.push((check, e)),
            }
        }
        pending = still;
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // The real rule files loaded and evaluate without error.
    let rules = prom.rules().await;
    assert!(!rules.is_empty(), "no rules loaded");
    let broken_rules: Vec<String> = rules
        .iter()
        .filter(|r| r["health"] == "err")
        .map(|r| format!("{}: {}", r["name"], r["lastError"]))
        .collect();
    eprintln!(
        "{total} Prometheus queries, {} without data; processes ready after {processes_ready:?}, done after {:?}",
        pending.len(),
        started.elapsed()
    );
    if !only_nan.is_empty() {
        eprintln!("answered NaN only (0/0) when first queried: {only_nan:#?}");
    }
    let failing: Vec<String> = pending
        .iter()
        .map(|(c, why)| format!("{}: {why}\n    {}", c.at, c.expr))
        .collect();
    assert!(
        failing.is_empty(),
        "{} of {total} dashboard queries returned no data within {DATA_DEADLINE:?}:\n{}\nprometheus log:\n{}",
        failing.len(),
        failing.join("\n"),
        prom.log_tail()
    );
    assert!(
        broken_rules.is_empty(),
        "rules failing to evaluate: {broken_rules:?}"
    );
    drop((node, ains));
}
