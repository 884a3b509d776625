//! The soak script (`scripts/soak.sh`) in CI: the ZeroState node (debug build) under
//! its workload for 60 s, its resident memory and series count sampled every 5 s;
//! the script must judge both flat. Its judgement is checked too: a CSV whose
//! memory or series count climbs is rejected.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use zs_observe_tests::stack::{example_binary, workspace_root};

fn script() -> PathBuf {
    let path = workspace_root().join("scripts/soak.sh");
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

fn run(envs: &[(&str, &str)]) -> (Output, String) {
    let output = Command::new("bash")
        .arg(script())
        .current_dir(workspace_root())
        .envs(envs.iter().copied())
        .output()
        .expect("bash runs");
    let text = format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, text)
}

/// Writes a CSV of `samples` (elapsed, rss KiB, series, tasks) and judges it.
fn judge(dir: &Path, name: &str, samples: &[(u64, u64, u64, u64)]) -> (Option<i32>, String) {
    let csv = dir.join(name);
    let mut text = String::from("elapsed_s,rss_kib,series,tasks_executed\n");
    for (t, rss, series, tasks) in samples {
        text.push_str(&format!("{t},{rss},{series},{tasks}\n"));
    }
    std::fs::write(&csv, text).expect("write the CSV");
    let csv = csv.to_str().expect("UTF-8 path").to_owned();
    let (output, text) = run(&[("JUDGE", &csv), ("WARMUP", "10")]);
    (output.status.code(), text)
}

#[test]
fn the_node_soaks_flat_for_a_minute() {
    let node = example_binary("zerostate-node", "zerostate-node");
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("soak.csv");
    let started = Instant::now();
    // The node's series fill up for about a minute (rare outcomes and events add a label
    // set late: the documented 10-minute run went 1,129 -> 1,368 and was flat from 61 s
    // on), so a one-minute soak cannot hold the series count to 2 %. A leak proportional
    // to tasks (~3,000 in this minute) still overshoots 10 % by far; flatness to 2 % is
    // the documented run's job (docs/reliability.md).
    let (output, text) = run(&[
        ("DURATION", "60"),
        ("INTERVAL", "5"),
        ("WARMUP", "15"),
        ("SERIES_TOLERANCE", "10"),
        ("NODE", node.to_str().expect("UTF-8 path")),
        ("OUT", csv.to_str().expect("UTF-8 path")),
    ]);
    eprintln!("{text}");
    assert!(output.status.success(), "the soak failed:\n{text}");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
    assert!(text.contains("soak: flat"), "{text}");

    // The CSV holds one sample every ~5 s, of a live node that did work.
    let csv = std::fs::read_to_string(&csv).expect("the CSV was written");
    let rows: Vec<Vec<u64>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|f| f.parse().expect(l)).collect())
        .collect();
    assert!(rows.len() >= 12, "{csv}");
    for row in &rows {
        assert_eq!(row.len(), 4, "{csv}");
        assert!(row[1] > 1024, "RSS in KiB of a running node: {csv}");
        assert!(
            row[2] > 100,
            "the node's /metrics has its catalog's series: {csv}"
        );
    }
    let last = rows.last().expect("rows");
    assert!(last[0] >= 60, "{csv}");
    // The workload submits a task every 20 ms; even a loaded debug build runs
    // hundreds in a minute, and the count only rises.
    assert!(last[3] >= 100, "tasks executed: {csv}");
    assert!(rows.windows(2).all(|w| w[1][3] >= w[0][3]), "{csv}");
}

#[test]
fn the_judgement_rejects_growth_and_accepts_noise() {
    let dir = tempfile::tempdir().expect("temp dir");
    // 5 s samples over 60 s after a 10 s warm-up.
    let times: Vec<u64> = (0..=14).map(|i| i * 5).collect();
    let flat: Vec<_> = times
        .iter()
        .map(|&t| (t, 40_000 + (t % 3) * 300, 900 + t % 2, t * 50))
        .collect();
    let (code, text) = judge(dir.path(), "flat.csv", &flat);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("soak: flat"), "{text}");

    // A leak: +1 MiB every 5 s.
    let leak: Vec<_> = times
        .iter()
        .map(|&t| (t, 40_000 + t * 205, 900, t * 50))
        .collect();
    let (code, text) = judge(dir.path(), "leak.csv", &leak);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("NOT FLAT: resident memory grew"), "{text}");

    // A label leak: a new series every sample.
    let series: Vec<_> = times
        .iter()
        .map(|&t| (t, 40_000, 900 + t * 4, t * 50))
        .collect();
    let (code, text) = judge(dir.path(), "series.csv", &series);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("NOT FLAT: the series count grew"), "{text}");

    // A node that did nothing is not a soak.
    let idle: Vec<_> = times.iter().map(|&t| (t, 40_000, 900, 0)).collect();
    let (code, text) = judge(dir.path(), "idle.csv", &idle);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no task was executed"), "{text}");
}
