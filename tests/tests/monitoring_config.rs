//! Static checks of everything in `monitoring/`: the real tools (promtool, amtool,
//! docker-compose) accept the configurations, every rule and dashboard query parses
//! and names only catalog metrics, every alert follows the conventions and has a
//! runbook and promtool unit tests that make it fire and keep it silent, and the
//! Kubernetes, Loki, Alloy and Grafana files say what docs/monitoring.md promises.
//!
//! Written over whole directories, so new rule files, rule tests and dashboards are
//! covered as soon as they land.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;
use serde_norway::Value as Yaml;
use zs_observe_tests::promql::{
    dashboard_queries, selected_metrics, substitute_variables, KnownMetrics, QueryLanguage,
};
use zs_observe_tests::stack::{
    amtool_check_config, amtool_route, docker_compose_config, load_rules, monitoring_dir,
    promtool_check_config, promtool_check_rules, promtool_test_rules, rule_files, rule_test_files,
    shorten_for_durations, workspace_root,
};

/// The form of every `runbook_url`: this prefix, the alert name, `.md`.
const RUNBOOK_PREFIX: &str = "https://example.invalid/zs-observe/docs/runbooks/";

fn yaml(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut doc: Yaml = serde_norway::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    // `<<: *anchor` merge keys (docker-compose.yaml uses one).
    doc.apply_merge()
        .unwrap_or_else(|e| panic!("{}: bad merge key: {e}", path.display()));
    doc
}

/// The documents of a multi-document YAML file (separated by `---` lines).
fn yaml_docs(path: &Path) -> Vec<Yaml> {
    let text = std::fs::read_to_string(path).expect("read");
    text.split("\n---\n")
        .map(|doc| {
            serde_norway::from_str(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect()
}

fn s<'a>(v: &'a Yaml, path: &[&str]) -> &'a str {
    let mut cur = v;
    for key in path {
        cur = cur
            .get(*key)
            .unwrap_or_else(|| panic!("missing `{}` in {v:?}", path.join(".")));
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("`{}` is not a string", path.join(".")))
}

// ---------------------------------------------------------------------------------
// Prometheus

#[test]
fn prometheus_config_passes_promtool_and_scrapes_both_examples() {
    let path = monitoring_dir().join("prometheus/prometheus.yml");
    let out = promtool_check_config(&path);
    out.assert_success();
    assert!(!out.output.contains("0 rule files found"), "{}", out.output);

    let config = yaml(&path);
    let jobs: BTreeMap<String, Vec<String>> = config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .map(|job| {
            let targets = job["static_configs"][0]["targets"]
                .as_sequence()
                .expect("static targets")
                .iter()
                .map(|t| t.as_str().expect("target").to_owned())
                .collect();
            (s(job, &["job_name"]).to_owned(), targets)
        })
        .collect();
    assert_eq!(jobs["zerostate-node"], ["zerostate-node:8080"]);
    assert_eq!(jobs["ains-api"], ["ains-api:8000"]);
    assert!(jobs.contains_key("prometheus"), "{jobs:?}");
    assert_eq!(config["rule_files"][0].as_str(), Some("rules/*.yml"));
    assert_eq!(
        config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0].as_str(),
        Some("alertmanager:9093")
    );
}

#[test]
fn every_rule_file_passes_promtool_check_rules() {
    let files = rule_files();
    assert!(
        files.iter().any(|f| f.ends_with("framework.yml")),
        "no rule files found in monitoring/prometheus/rules: {files:?}"
    );
    promtool_check_rules(&files).assert_success();
}

#[test]
fn every_promtool_rule_test_passes() {
    let files = rule_test_files();
    assert!(!files.is_empty(), "no files in monitoring/prometheus/tests");
    let out = promtool_test_rules(&files);
    out.assert_success();
    assert!(
        out.output.matches("SUCCESS").count() >= files.len(),
        "{}",
        out.output
    );
}

/// Which alerts some promtool test expects to fire, and which it expects silent
/// (`exp_alerts: []`), over every test file.
fn tested_alerts() -> (BTreeSet<String>, BTreeSet<String>) {
    let mut fires = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for file in rule_test_files() {
        let doc = yaml(&file);
        for test in doc["tests"].as_sequence().into_iter().flatten() {
            for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
                let name = s(case, &["alertname"]).to_owned();
                let expected = case
                    .get("exp_alerts")
                    .and_then(Yaml::as_sequence)
                    .map_or(0, Vec::len);
                if expected == 0 {
                    silent.insert(name);
                } else {
                    fires.insert(name);
                }
            }
        }
    }
    (fires, silent)
}

#[test]
fn every_alert_has_a_promtool_test_that_fires_it_and_one_that_keeps_it_silent() {
    let (fires, silent) = tested_alerts();
    let mut missing = Vec::new();
    for file in rule_files() {
        for rule in load_rules(&file) {
            let Some(alert) = rule.alert else { continue };
            if !fires.contains(&alert) {
                missing.push(format!(
                    "{alert} ({}): no test where it fires",
                    file.display()
                ));
            }
            if !silent.contains(&alert) {
                missing.push(format!(
                    "{alert} ({}): no test where it stays silent",
                    file.display()
                ));
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}

#[test]
fn every_rule_expression_parses_and_names_only_catalog_metrics() {
    let known = KnownMetrics::load();
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in rule_files() {
        for rule in load_rules(&file) {
            let name = rule.alert.or(rule.record).unwrap_or_default();
            match known.check(&rule.expr) {
                Ok(names) => {
                    assert!(
                        !names.is_empty() || rule.expr.contains("vector("),
                        "{name}: selects nothing"
                    );
                    checked += 1;
                }
                Err(e) => problems.push(format!("{} {name}: {e}\n  {}", file.display(), rule.expr)),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked >= 9, "only {checked} rules checked");
}

fn is_camel_case(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
}

#[test]
fn every_alert_follows_the_conventions_and_has_a_runbook() {
    let mut problems = Vec::new();
    for file in rule_files() {
        for rule in load_rules(&file) {
            let Some(alert) = &rule.alert else { continue };
            let at = format!("{alert} in {}", file.display());
            if !is_camel_case(alert) {
                problems.push(format!("{at}: name is not CamelCase"));
            }
            match rule.labels.get("severity").map(String::as_str) {
                Some("critical" | "warning" | "info") => {}
                other => problems.push(format!(
                    "{at}: severity {other:?} is not critical/warning/info"
                )),
            }
            if rule.labels.get("family").is_none_or(String::is_empty) {
                problems.push(format!(
                    "{at}: no `family` label (Alertmanager inhibits by it)"
                ));
            }
            match rule.annotations.get("summary") {
                Some(summary) if !summary.is_empty() && !summary.contains("{{") => {}
                other => {
                    problems.push(format!("{at}: summary {other:?} must be a static sentence"))
                }
            }
            match rule.annotations.get("description") {
                Some(d) if d.contains("{{") => {}
                other => problems.push(format!("{at}: description {other:?} must be templated")),
            }
            let expected_url = format!("{RUNBOOK_PREFIX}{alert}.md");
            if rule.annotations.get("runbook_url") != Some(&expected_url) {
                problems.push(format!(
                    "{at}: runbook_url {:?}, expected {expected_url}",
                    rule.annotations.get("runbook_url")
                ));
            }
            let runbook = workspace_root().join(format!("docs/runbooks/{alert}.md"));
            match std::fs::read_to_string(&runbook) {
                Ok(text) => {
                    for section in ["## Meaning", "## Impact", "## Diagnosis", "## Mitigation"] {
                        if !text.contains(section) {
                            problems.push(format!("{}: no `{section}` section", runbook.display()));
                        }
                    }
                    if !text.contains("```promql") {
                        problems.push(format!("{}: no PromQL diagnosis query", runbook.display()));
                    }
                }
                Err(_) => problems.push(format!("{at}: {} does not exist", runbook.display())),
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn runbook_queries_parse_and_name_only_catalog_metrics() {
    let known = KnownMetrics::load();
    let dir = workspace_root().join("docs/runbooks");
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in zs_observe_tests::promql::files_with_extension(&dir, "md") {
        let text = std::fs::read_to_string(&file).expect("read runbook");
        for block in text.split("```promql").skip(1) {
            let query = block.split("```").next().unwrap_or("");
            for expr in query.split("\n\n").map(str::trim).filter(|q| !q.is_empty()) {
                let expr: String = expr
                    .lines()
                    .filter(|l| !l.trim_start().starts_with('#'))
                    .collect::<Vec<_>>()
                    .join("\n");
                checked += 1;
                if let Err(e) = known.check(&expr) {
                    problems.push(format!("{}: {e}\n  {expr}", file.display()));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked >= 5, "only {checked} runbook queries");
}

#[test]
fn shortening_for_changes_nothing_but_for() {
    for file in rule_files() {
        let text = std::fs::read_to_string(&file).expect("read");
        let short = shorten_for_durations(&text, "2s");
        let dir = tempfile::tempdir().expect("temp dir");
        let copy = dir.path().join("rules.yml");
        std::fs::write(&copy, &short).expect("write");
        promtool_check_rules(std::slice::from_ref(&copy)).assert_success();
        let (orig, new) = (load_rules(&file), load_rules(&copy));
        assert_eq!(orig.len(), new.len());
        for (a, b) in orig.iter().zip(&new) {
            assert_eq!(
                (&a.expr, &a.labels, &a.annotations),
                (&b.expr, &b.labels, &b.annotations)
            );
            assert_eq!(b.for_.as_deref(), a.for_.as_ref().map(|_| "2s"));
        }
    }
}

// ---------------------------------------------------------------------------------
// The PromQL checker itself (so an empty dashboards directory proves something)

#[test]
fn promql_checker_finds_selectors_at_any_depth_and_rejects_unknown_names() {
    let names = selected_metrics(
        r#"histogram_quantile(0.95, sum by (le) (rate(zerostate_wasm_execution_duration_seconds_bucket{outcome="ok"}[5m])))
           / on() group_left() (1 - avg_over_time(up{job="x"}[1h:1m])) + count(ALERTS) * {__name__="zerostate_tasks_executing"}"#,
    )
    .expect("parses");
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "ALERTS",
            "up",
            "zerostate_tasks_executing",
            "zerostate_wasm_execution_duration_seconds_bucket"
        ]
    );
    assert!(
        selected_metrics("sum(rate(x[5m])").is_err(),
        "unbalanced parens must not parse"
    );
    assert!(selected_metrics(r#"{__name__=~"zerostate_.*"}"#).is_err());

    let known = KnownMetrics::load();
    known
        .check("sum(rate(zerostate_wasm_execution_duration_seconds_count[5m])) + zerostate_wasm_execution_duration_seconds_sum")
        .expect("histogram series of a catalog histogram");
    known
        .check("process_resident_memory_bytes + prometheus_build_info")
        .expect("built-ins");
    let err = known
        .check("rate(zerostate_task_executed_total[5m])")
        .unwrap_err();
    assert!(
        err.contains("did you mean `zerostate_tasks_executed_total`"),
        "{err}"
    );
    let err = known
        .check("zerostate_tasks_executed_total_bucket")
        .unwrap_err();
    assert!(err.contains("not a histogram"), "{err}");
    assert!(
        known.check("execution_tasks_total").is_err(),
        "seed names are not catalog names"
    );
}

#[test]
fn dashboard_helper_reads_nested_panels_and_substitutes_variables() {
    let dashboard: Value = serde_json::json!({
        "uid": "zs-test",
        "templating": { "list": [
            { "name": "datasource", "type": "datasource", "query": "prometheus" },
            { "name": "job", "type": "query", "current": { "value": "zerostate-node" },
              "query": { "query": "label_values(zerostate_build_info, job)" } },
            { "name": "window", "type": "interval", "current": { "value": "$__auto" } }
        ]},
        "panels": [
            { "type": "row", "title": "Row", "panels": [
                { "title": "Nested", "datasource": { "type": "prometheus", "uid": "${datasource}" },
                  "targets": [{ "refId": "A",
                    "expr": "sum(rate(zerostate_tasks_executed_total{job=~\"$job\"}[$__rate_interval])) / ${window:text}" }] }
            ]},
            { "title": "Logs", "datasource": { "type": "loki", "uid": "loki" },
              "targets": [{ "refId": "A", "expr": "{service=\"zerostate-node\"} | json" }] },
            { "title": "Top", "targets": [{ "refId": "B", "expr": "increase(up[$__range]) + $__interval_ms" }] }
        ]
    });
    let queries = dashboard_queries(&dashboard);
    let by_panel: BTreeMap<&str, (&str, QueryLanguage)> = queries
        .iter()
        .map(|q| (q.panel.as_str(), (q.expr.as_str(), q.language)))
        .collect();
    assert_eq!(
        by_panel["Nested"],
        (
            "sum(rate(zerostate_tasks_executed_total{job=~\"zerostate-node\"}[1m])) / 5m",
            QueryLanguage::PromQl
        )
    );
    assert_eq!(by_panel["Logs"].1, QueryLanguage::LogQl);
    assert_eq!(by_panel["Top"].0, "increase(up[1h]) + 60000");
    assert_eq!(by_panel["templating:job"].0, "zerostate_build_info");
    let known = KnownMetrics::load();
    for q in queries
        .iter()
        .filter(|q| q.language == QueryLanguage::PromQl)
    {
        known
            .check(&q.expr)
            .unwrap_or_else(|e| panic!("{}: {e}", q.expr));
    }
    // $jobs is not $job.
    let vars = BTreeMap::from([("job".to_owned(), "a".to_owned())]);
    assert_eq!(substitute_variables("$jobs $job", &vars), "$jobs a");
}

// ---------------------------------------------------------------------------------
// Grafana

fn dashboard_files() -> Vec<PathBuf> {
    zs_observe_tests::stack::dashboard_files()
}

#[test]
fn every_dashboard_query_parses_and_names_only_catalog_metrics() {
    let known = KnownMetrics::load();
    let mut problems = Vec::new();
    let mut uids = BTreeSet::new();
    for file in dashboard_files() {
        let text = std::fs::read_to_string(&file).expect("read dashboard");
        let dashboard: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.display()));
        match dashboard["uid"].as_str() {
            Some(uid) if !uid.is_empty() => {
                if !uids.insert(uid.to_owned()) {
                    problems.push(format!("{}: uid {uid} is used twice", file.display()));
                }
            }
            _ => problems.push(format!("{}: no stable uid", file.display())),
        }
        let has_ds_var = dashboard
            .pointer("/templating/list")
            .and_then(Value::as_array)
            .is_some_and(|l| l.iter().any(|v| v["type"] == "datasource"));
        if !has_ds_var {
            problems.push(format!("{}: no datasource variable", file.display()));
        }
        for q in dashboard_queries(&dashboard) {
            if q.language != QueryLanguage::PromQl {
                continue;
            }
            if let Err(e) = known.check(&q.expr) {
                problems.push(format!(
                    "{} panel {:?} {}: {e}\n  {}",
                    file.display(),
                    q.panel,
                    q.ref_id,
                    q.expr
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn grafana_provisioning_links_metrics_logs_and_traces() {
    let ds = yaml(&monitoring_dir().join("grafana/provisioning/datasources/datasources.yaml"));
    let by_uid: BTreeMap<&str, &Yaml> = ds["datasources"]
        .as_sequence()
        .expect("datasources")
        .iter()
        .map(|d| (s(d, &["uid"]), d))
        .collect();
    assert_eq!(s(by_uid["prometheus"], &["type"]), "prometheus");
    assert_eq!(s(by_uid["loki"], &["type"]), "loki");
    assert_eq!(s(by_uid["jaeger"], &["type"]), "jaeger");
    let derived = by_uid["loki"]["jsonData"]["derivedFields"]
        .as_sequence()
        .expect("derived fields");
    assert!(derived
        .iter()
        .any(|f| f["datasourceUid"].as_str() == Some("jaeger")
            && f["matcherRegex"].as_str() == Some("trace_id")));
    assert_eq!(
        s(
            by_uid["jaeger"],
            &["jsonData", "tracesToLogsV2", "datasourceUid"]
        ),
        "loki"
    );
    let providers = yaml(&monitoring_dir().join("grafana/provisioning/dashboards/dashboards.yaml"));
    let path = s(&providers["providers"][0], &["options", "path"]).to_owned();
    let compose =
        std::fs::read_to_string(monitoring_dir().join("docker-compose.yaml")).expect("compose");
    assert!(
        compose.contains(&format!("./grafana/dashboards:{path}")),
        "docker-compose does not mount grafana/dashboards at {path}"
    );
}

// ---------------------------------------------------------------------------------
// Alertmanager

#[test]
fn alertmanager_config_passes_amtool_and_routes_by_severity() {
    let path = monitoring_dir().join("alertmanager/alertmanager.yml");
    amtool_check_config(&path).assert_success();
    for (severity, receiver) in [
        ("critical", "critical"),
        ("warning", "default"),
        ("info", "info"),
    ] {
        assert_eq!(
            amtool_route(
                &path,
                &[("alertname", "TargetDown"), ("severity", severity)]
            ),
            receiver,
            "severity={severity}"
        );
    }
    let config = yaml(&path);
    let inhibit = config["inhibit_rules"]
        .as_sequence()
        .expect("inhibit_rules");
    let critical_over_warning = inhibit.iter().any(|r| {
        r["source_matchers"][0].as_str() == Some("severity=\"critical\"")
            && r["target_matchers"][0]
                .as_str()
                .is_some_and(|t| t.contains("warning"))
            && r["equal"]
                .as_sequence()
                .is_some_and(|e| e.iter().any(|l| l.as_str() == Some("family")))
    });
    assert!(
        critical_over_warning,
        "no critical-inhibits-warning rule by family: {inhibit:?}"
    );
}

// ---------------------------------------------------------------------------------
// docker-compose, Loki, Alloy

#[test]
fn docker_compose_file_is_valid_and_wires_the_examples_to_the_stack() {
    let path = monitoring_dir().join("docker-compose.yaml");
    docker_compose_config(&path).assert_success();
    let compose = yaml(&path);
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().filter_map(Yaml::as_str).collect();
    for wanted in [
        "prometheus",
        "grafana",
        "jaeger",
        "alertmanager",
        "loki",
        "alloy",
        "zerostate-node",
        "ains-api",
    ] {
        assert!(names.contains(wanted), "no service {wanted}: {names:?}");
    }
    assert!(s(&compose["services"]["jaeger"], &["image"]).starts_with("jaegertracing/jaeger:2."));
    let jaeger_ports =
        serde_norway::to_string(&compose["services"]["jaeger"]["ports"]).expect("ports");
    for port in ["4317", "4318", "16686"] {
        assert!(
            jaeger_ports.contains(port),
            "jaeger does not publish {port}"
        );
    }
    for (service, listen_var, listen) in [
        ("zerostate-node", "ZEROSTATE_LISTEN", "0.0.0.0:8080"),
        ("ains-api", "AINS_LISTEN", "0.0.0.0:8000"),
    ] {
        let env = &compose["services"][service]["environment"];
        assert_eq!(s(env, &[listen_var]), listen, "{service}");
        assert_eq!(s(env, &["ZS_LOG_FORMAT"]), "json", "{service}");
        assert_eq!(
            s(env, &["OTEL_EXPORTER_OTLP_ENDPOINT"]),
            "http://jaeger:4317",
            "{service}"
        );
        assert_eq!(
            s(env, &["OTEL_EXPORTER_OTLP_PROTOCOL"]),
            "grpc",
            "{service}"
        );
    }
    // Every file the stack mounts exists.
    for service in services.values() {
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let source = volume
                .as_str()
                .expect("short volume syntax")
                .split(':')
                .next()
                .unwrap_or("");
            if source.starts_with("./") {
                assert!(
                    monitoring_dir().join(source).exists(),
                    "mounted {source} does not exist"
                );
            }
        }
    }
    let dockerfile = s(
        &compose["services"]["zerostate-node"],
        &["build", "dockerfile"],
    );
    assert!(workspace_root().join(dockerfile).is_file(), "{dockerfile}");
}

#[test]
fn loki_keeps_trace_ids_out_of_labels_and_retains_logs() {
    let loki = yaml(&monitoring_dir().join("loki/config.yaml"));
    assert_eq!(loki["compactor"]["retention_enabled"].as_bool(), Some(true));
    assert!(!s(&loki, &["limits_config", "retention_period"]).is_empty());
    assert_eq!(
        loki["limits_config"]["allow_structured_metadata"].as_bool(),
        Some(true)
    );
    assert_eq!(s(&loki["schema_config"]["configs"][0], &["schema"]), "v13");
    assert_eq!(s(&loki["schema_config"]["configs"][0], &["store"]), "tsdb");

    let alloy =
        std::fs::read_to_string(monitoring_dir().join("alloy/config.alloy")).expect("alloy");
    let block = |name: &str| -> String {
        let start = alloy
            .find(name)
            .unwrap_or_else(|| panic!("no `{name}` in config.alloy"));
        let body = &alloy[start..];
        let mut depth = 0;
        for (i, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return body[..=i].to_owned();
                    }
                }
                _ => {}
            }
        }
        panic!("unbalanced `{name}` block")
    };
    for component in [
        "discovery.docker",
        "loki.source.docker",
        "loki.process",
        "loki.write",
        "stage.json",
    ] {
        block(component);
    }
    let labels = block("stage.labels");
    assert!(
        labels.contains("level") && labels.contains("service"),
        "{labels}"
    );
    assert!(
        !labels.contains("trace_id") && !labels.contains("span_id"),
        "{labels}"
    );
    let metadata = block("stage.structured_metadata");
    assert!(
        metadata.contains("trace_id") && metadata.contains("span_id"),
        "{metadata}"
    );
    assert!(block("loki.write").contains("http://loki:3100/loki/api/v1/push"));
}

// ---------------------------------------------------------------------------------
// Kubernetes

#[test]
fn kubernetes_deployment_probes_the_health_endpoints() {
    let docs = yaml_docs(&monitoring_dir().join("kubernetes/zerostate-node.yaml"));
    let deployment = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("Deployment"))
        .expect("a Deployment");
    assert!(
        docs.iter().any(|d| d["kind"].as_str() == Some("Service")),
        "a Service"
    );
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    for (probe, path) in [
        ("livenessProbe", "/health/live"),
        ("readinessProbe", "/health/ready"),
        ("startupProbe", "/health/startup"),
    ] {
        assert_eq!(s(&container[probe], &["httpGet", "path"]), path, "{probe}");
    }
    // The node drains 2 s after SIGTERM; Kubernetes must wait longer before SIGKILL.
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace period");
    assert!(
        (3..=30).contains(&grace),
        "terminationGracePeriodSeconds {grace}"
    );
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                !container["resources"][kind][resource].is_null(),
                "no resources.{kind}.{resource}"
            );
        }
    }
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(s(annotations, &["prometheus.io/scrape"]), "true");
    assert_eq!(s(annotations, &["prometheus.io/path"]), "/metrics");
    let port = s(annotations, &["prometheus.io/port"]);
    assert_eq!(
        container["ports"][0]["containerPort"]
            .as_u64()
            .map(|p| p.to_string())
            .as_deref(),
        Some(port)
    );

    let scrape = std::fs::read_to_string(monitoring_dir().join("kubernetes/prometheus-scrape.yml"))
        .expect("scrape");
    for key in [
        "prometheus_io_scrape",
        "prometheus_io_path",
        "prometheus_io_port",
        "app_kubernetes_io_name",
    ] {
        assert!(
            scrape.contains(&format!("__meta_kubernetes_pod_annotation_{key}"))
                || scrape.contains(&format!("__meta_kubernetes_pod_label_{key}")),
            "{key}"
        );
    }
}
