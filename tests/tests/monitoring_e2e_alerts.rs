//! End to end, for the service alerts: the real `zerostate-node` run with the
//! fault flag `--task-failure-rate 0.9`, scraped every second by a real Prometheus
//! that loads every real rule file (recording rules, ZeroState, AINS and SLO
//! alerts), which sends to a real Alertmanager running the real
//! `alertmanager.yml`, which posts to a webhook receiver here.
//!
//! As in `monitoring_e2e.rs` (the harness is `zs_observe_tests::stack`), only two
//! things change for speed: every rule's `for:` becomes 2 s, and Alertmanager's
//! `group_wait` / `group_interval` become 1 s. What this test adds to the promtool
//! unit tests of `monitoring/prometheus/tests/`: the recording rules and the alert
//! expressions select what the running node really exports (every rule evaluates
//! cleanly against it), the recording rule an alert reads carries the failure
//! ratio the flag asks for, and labels, annotations, severity routing and the
//! `family` inhibition survive the whole path.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use zs_observe_tests::stack::{
    example_binary, load_rules, rule_files, test_alertmanager_config, Alertmanager, Prometheus,
    ServiceProcess, WebhookReceiver,
};

/// The `for:` every rule gets in this test.
const SHORT_FOR: &str = "2s";

/// The share of tasks the node is told to fail (each runs a trapping module).
const TASK_FAILURE_RATE: &str = "0.9";

/// The real rule named `alert`.
fn real_rule(alert: &str) -> zs_observe_tests::stack::Rule {
    rule_files()
        .iter()
        .flat_map(|f| load_rules(f))
        .find(|r| r.alert.as_deref() == Some(alert))
        .unwrap_or_else(|| panic!("no alert {alert} in monitoring/prometheus/rules"))
}

fn label<'a>(alert: &'a Value, name: &str) -> &'a str {
    alert["labels"][name].as_str().unwrap_or("")
}

/// The alerts Alertmanager holds under `alertname` (`/api/v2/alerts`), polled every
/// 250 ms until one is in `state` (`active`, `suppressed`), at most `timeout`.
async fn wait_for_alertmanager_state(
    am: SocketAddr,
    alertname: &str,
    state: &str,
    timeout: Duration,
) -> Value {
    let client = reqwest::Client::new();
    let filter = format!("alertname=\"{alertname}\"");
    let url = reqwest::Url::parse_with_params(
        &format!("http://{am}/api/v2/alerts"),
        [("filter", filter.as_str())],
    )
    .expect("Alertmanager API URL");
    let deadline = Instant::now() + timeout;
    loop {
        let last: Result<Value, String> = async {
            let resp = client
                .get(url.clone())
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            resp.json::<Value>().await.map_err(|e| e.to_string())
        }
        .await;
        if let Ok(alerts) = &last {
            if let Some(found) = alerts
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["status"]["state"] == state)
            {
                return found.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "Alertmanager holds no {state} {alertname} within {timeout:?}; last answer: {last:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_failures_page_through_alertmanager_and_inhibit_the_warning() {
    let started = Instant::now();
    let exe = example_binary("zerostate-node", "zerostate-node");
    let node = ServiceProcess::start(&exe, &["--task-failure-rate", TASK_FAILURE_RATE]);
    let webhook = WebhookReceiver::start().await;
    let alertmanager = Alertmanager::start(&test_alertmanager_config(&webhook.url())).await;
    let prom = Prometheus::builder()
        .scrape("zerostate-node", node.addr())
        .real_rules(Some(SHORT_FOR))
        .alertmanager(alertmanager.addr())
        .start()
        .await;
    prom.wait_for("up{job=\"zerostate-node\"} == 1", Duration::from_secs(20))
        .await;

    // The recording rule the task-failure alerts read carries the injected failures:
    // 90 % traps, plus the workload's runaway tasks stopped by their fuel budget,
    // minus the healthy probe tasks of the health checks (which weigh more in the
    // first seconds, so wait for the ratio to settle above 80 %).
    let ratio = prom
        .wait_for(
            "job:zerostate_tasks_executed:error_ratio_rate5m{job=\"zerostate-node\"} > 0.8",
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(ratio.len(), 1, "{ratio:?}");
    assert!(
        (0.8..=1.0).contains(&ratio[0].value),
        "error ratio {} for --task-failure-rate {TASK_FAILURE_RATE}",
        ratio[0].value
    );

    // The critical alert pages: routed by severity to the critical receiver.
    let (path, alert) = webhook
        .wait_for_alert("CriticalTaskFailureRate", "firing", Duration::from_secs(60))
        .await;
    let rule = real_rule("CriticalTaskFailureRate");
    assert_eq!(path, "/alerts/critical", "severity routing: {alert:#}");
    assert_eq!(label(&alert, "severity"), "critical");
    assert_eq!(label(&alert, "severity"), rule.labels["severity"]);
    assert_eq!(label(&alert, "family"), "task-failures");
    assert_eq!(label(&alert, "family"), rule.labels["family"]);
    assert_eq!(label(&alert, "job"), "zerostate-node");
    // A job-level alert: the recording rule sums the node's instances away.
    assert_eq!(label(&alert, "instance"), "", "{alert:#}");
    let annotations = &alert["annotations"];
    assert_eq!(
        annotations["summary"].as_str(),
        Some(rule.annotations["summary"].as_str())
    );
    assert_eq!(
        annotations["summary"].as_str(),
        Some("More than half of all WASM tasks fail.")
    );
    let description = annotations["description"].as_str().unwrap_or("");
    let rendered = description
        .strip_suffix(
            " of the tasks executed by job zerostate-node failed over the last 5 minutes: \
             the execution layer is severely degraded.",
        )
        .unwrap_or_else(|| panic!("description not rendered as expected: {description:?}"));
    // `{{ $value | humanizePercentage }}`: e.g. "90.48%".
    let percent: f64 = rendered
        .strip_suffix('%')
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no humanized percentage in {description:?}"));
    // Above the rule's own threshold (the ratio as the alert fired, early in the run).
    assert!(
        (50.0..=100.0).contains(&percent),
        "{percent}% in {description:?}"
    );
    assert_eq!(
        annotations["runbook_url"].as_str(),
        Some(rule.annotations["runbook_url"].as_str())
    );
    assert_eq!(
        annotations["runbook_url"].as_str(),
        Some("https://example.invalid/zs-observe/docs/runbooks/CriticalTaskFailureRate.md")
    );
    let runbook =
        zs_observe_tests::stack::workspace_root().join("docs/runbooks/CriticalTaskFailureRate.md");
    assert!(runbook.is_file(), "{} is missing", runbook.display());

    // The warning of the same family fires in Prometheus too, but Alertmanager
    // inhibits it (critical silences warning of the same family, job and instance).
    prom.wait_for(
        "ALERTS{alertname=\"HighTaskFailureRate\", alertstate=\"firing\"}",
        Duration::from_secs(30),
    )
    .await;
    let suppressed = wait_for_alertmanager_state(
        alertmanager.addr(),
        "HighTaskFailureRate",
        "suppressed",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        suppressed["status"]["inhibitedBy"]
            .as_array()
            .is_some_and(|by| !by.is_empty()),
        "{suppressed:#}"
    );
    assert_eq!(suppressed["labels"]["family"], "task-failures");

    // Every real rule evaluates cleanly against the real node's series.
    let rules = prom.rules().await;
    let in_files: usize = rule_files().iter().map(|f| load_rules(f).len()).sum();
    assert_eq!(rules.len(), in_files, "rules loaded by Prometheus");
    for rule in &rules {
        assert_ne!(rule["health"], "err", "rule does not evaluate: {rule:#}");
    }
    eprintln!(
        "CriticalTaskFailureRate at the webhook {:?} after start ({percent}% failed)",
        started.elapsed()
    );
    drop(node);
}
