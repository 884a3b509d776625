//! The node as a process: it binds a free loopback port, runs its WASM workload
//! with injected trapping tasks, and serves a clean Prometheus exposition with the
//! outcomes of real executions and receipts.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{get, start};

/// The value of the first sample of `metric` whose labels contain every one of `labels`.
fn sample(exposition: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with('{'))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn workload_executes_real_wasm_with_receipts_and_a_clean_exposition() {
    let (_node, addr) = start(&["--task-failure-rate", "0.3"]);
    // The workload runs a task every 20 ms, every 50th out of fuel: wait (at most 30 s)
    // until each exit has been seen.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = get(&addr, "/metrics");
        assert!(status.contains("200"), "{status}");
        let seen = ["ok", "trap", "out_of_fuel"].iter().all(|exit| {
            sample(
                &body,
                "zerostate_wasm_exit_codes_total",
                &[&format!("exit=\"{exit}\"")],
            )
            .is_some_and(|v| v > 0.0)
        });
        if seen || std::time::Instant::now() >= deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(250));
    };

    let exits = "zerostate_wasm_exit_codes_total";
    let ok = sample(&body, exits, &[r#"exit="ok""#]).expect("ok exits");
    let traps = sample(&body, exits, &[r#"exit="trap""#]).expect("trap exits");
    let out_of_fuel = sample(&body, exits, &[r#"exit="out_of_fuel""#]).expect("out of fuel");
    assert!(ok > 0.0 && traps > 0.0 && out_of_fuel > 0.0, "{body}");
    // Traps and fuel exhaustion are errors of the task executor.
    let tasks = "zerostate_tasks_executed_total";
    let errors = sample(&body, tasks, &[r#"outcome="error""#]).expect("errors");
    let oks = sample(&body, tasks, &[r#"outcome="ok""#]).expect("oks");
    // A scrape can land between two recordings of a running task: allow one per
    // task slot of the workload (8) and the health probe.
    assert!((errors - (traps + out_of_fuel)).abs() <= 9.0, "{body}");
    assert!((oks - ok).abs() <= 9.0, "{body}");

    // Every task has a generated, signed and verified receipt; none was rejected.
    let receipts = "zerostate_receipts_total";
    let generated = sample(&body, receipts, &[r#"status="generated""#]).expect("generated");
    assert!(
        (generated - (ok + traps + out_of_fuel)).abs() <= 9.0,
        "{body}"
    );
    let verified = sample(&body, receipts, &[r#"status="verified""#]).expect("verified");
    assert!(generated - verified <= 9.0 && verified > 0.0, "{body}");
    assert_eq!(sample(&body, receipts, &[r#"status="rejected""#]), None);

    // Fuel and memory of real runs: the probe's sum of 1..=1000 costs 5,007 fuel.
    let cost = "zerostate_task_cost_units_bucket";
    let actual_le_5000 = sample(&body, cost, &[r#"type="actual""#, r#"le="5000""#]);
    let actual_le_10000 = sample(&body, cost, &[r#"type="actual""#, r#"le="10000""#]);
    assert!(actual_le_10000 > actual_le_5000, "{body}");
    assert!(
        body.contains("zerostate_wasm_memory_bytes_bucket"),
        "{body}"
    );

    // Fails, rather than skips, without promtool (scripts/test.sh installs it).
    let complaints = zs_observe_tests::promtool_check_metrics(&body);
    assert!(complaints.trim().is_empty(), "promtool:\n{complaints}");
}

#[test]
fn invalid_failure_rates_are_usage_errors() {
    for bad in ["2", "-0.5", "abc", "NaN"] {
        let out = Command::new(env!("CARGO_BIN_EXE_zerostate-node"))
            .args(["--listen", "127.0.0.1:0", "--task-failure-rate", bad])
            .output()
            .expect("node runs");
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("invalid --task-failure-rate `{bad}`")),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_zerostate-node"))
        .arg("--task-failure-rate")
        .output()
        .expect("node runs");
    assert_eq!(out.status.code(), Some(2));
}
