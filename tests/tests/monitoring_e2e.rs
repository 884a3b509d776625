//! End to end: the real `zerostate-node` binary, scraped every second by a real
//! Prometheus that loads the real rule files, which sends to a real Alertmanager
//! running the real `alertmanager.yml`, which posts to a webhook receiver here.
//!
//! Two things are changed for speed, and nothing else: every rule's `for:` becomes
//! 2 s (`shorten_for_durations`; expressions, labels and annotations stay byte for
//! byte, and `monitoring_config.rs` checks that), and Alertmanager's `group_wait` /
//! `group_interval` become 1 s with the webhook URLs pointed here
//! (`test_alertmanager_config`). Waiting out a real `for: 1m` would prove nothing
//! more about the rules than their promtool unit tests already do; what this test
//! adds is that the expressions select what the running service really exports, and
//! that labels, annotations and routing survive the whole path.

use std::time::{Duration, Instant};

use serde_json::Value;
use zs_observe_tests::stack::{example_binary, real_rule, AlertingStack, ServiceProcess};

fn label<'a>(alert: &'a Value, name: &str) -> &'a str {
    alert["labels"][name].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_down_reaches_the_webhook_with_its_labels_and_annotations() {
    let started = Instant::now();
    let exe = example_binary("zerostate-node", "zerostate-node");
    let build_time = started.elapsed();
    let mut node = ServiceProcess::start(&exe, &[]);
    let addr = node.addr();
    let stack = AlertingStack::start("zerostate-node", addr).await;
    let prom = &stack.prometheus;

    // The node's own series arrive, and every real rule evaluates without error
    // against them (a rule with a bad expression would report health "err").
    prom.wait_for("zerostate_build_info", Duration::from_secs(20))
        .await;
    prom.wait_for(
        "zerostate_health_check_status{kind=\"readiness\"} == 1",
        Duration::from_secs(20),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A group with its own longer `interval:` may not have run yet ("unknown");
    // none may fail ("err"), and the framework's rules have all run cleanly.
    let rules = prom.rules().await;
    assert!(rules.len() >= 9, "rules loaded: {rules:#?}");
    for rule in &rules {
        assert_ne!(rule["health"], "err", "rule does not evaluate: {rule:#}");
    }
    for name in [
        "TargetDown",
        "TraceSpansDropped",
        "CardinalityOverflow",
        "HealthCheckFailing",
        "HealthCheckDegraded",
    ] {
        let rule = rules
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} not loaded"));
        assert_eq!(rule["health"], "ok", "{rule:#}");
    }
    // Healthy: TargetDown is neither pending nor firing, and nothing was sent.
    let active = prom
        .query("ALERTS{alertname=\"TargetDown\"}")
        .await
        .expect("query ALERTS");
    assert!(
        active.is_empty(),
        "TargetDown while the node is up: {active:?}"
    );
    assert!(
        stack.webhook.alerts().is_empty(),
        "{:#?}",
        stack.webhook.calls()
    );

    // A crash: the next scrape fails, `up` drops to 0, TargetDown goes pending, then
    // fires after `for`, and Alertmanager routes it by severity to the webhook.
    node.kill();
    let killed = Instant::now();
    let (path, alert) = stack
        .webhook
        .wait_for_alert("TargetDown", "firing", Duration::from_secs(45))
        .await;
    let latency = killed.elapsed();

    let rule = real_rule("TargetDown");
    assert_eq!(path, "/alerts/critical", "severity routing");
    assert_eq!(label(&alert, "severity"), "critical");
    assert_eq!(label(&alert, "severity"), rule.labels["severity"]);
    assert_eq!(label(&alert, "family"), rule.labels["family"]);
    assert_eq!(label(&alert, "job"), "zerostate-node");
    assert_eq!(label(&alert, "instance"), addr.to_string());
    let annotations = &alert["annotations"];
    assert_eq!(
        annotations["summary"].as_str(),
        Some(rule.annotations["summary"].as_str())
    );
    assert_eq!(
        annotations["description"].as_str(),
        Some(
            format!(
                "Scrapes of {addr} (job zerostate-node) fail: the process is down, \
                 unreachable or not serving /metrics."
            )
            .as_str()
        ),
        "the description template is rendered with the alert's labels"
    );
    assert_eq!(
        annotations["runbook_url"].as_str(),
        Some(rule.annotations["runbook_url"].as_str())
    );
    assert!(
        annotations["runbook_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/docs/runbooks/TargetDown.md")),
        "{annotations}"
    );
    assert!(
        latency < Duration::from_secs(30),
        "TargetDown took {latency:?} from the kill to the webhook"
    );
    // The service-level alerts of the same job (ServiceDown: no instance up) fire too,
    // but Alertmanager holds them back: TargetDown already said it, naming the instance.
    let am = format!("http://{}/api/v2/alerts", stack.alertmanager.addr());
    let deadline = Instant::now() + Duration::from_secs(30);
    let service_down = loop {
        let alerts: serde_json::Value = reqwest::get(&am)
            .await
            .expect("alertmanager answers")
            .json()
            .await
            .expect("alerts as JSON");
        let found = alerts.as_array().and_then(|a| {
            a.iter()
                .find(|x| x["labels"]["alertname"] == "ServiceDown")
                .cloned()
        });
        if found.is_some() || Instant::now() >= deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let service_down = service_down.expect("ServiceDown reached Alertmanager");
    assert_eq!(
        service_down["status"]["state"], "suppressed",
        "{service_down:#}"
    );
    assert!(
        service_down["status"]["inhibitedBy"]
            .as_array()
            .is_some_and(|by| !by.is_empty()),
        "{service_down:#}"
    );
    eprintln!(
        "build {build_time:?}, kill → webhook {latency:?}, whole test {:?}",
        started.elapsed()
    );
}
