//! `GET /debug/profile`: a snapshot of what the runtime already measures, for a person
//! looking at a live process. It is **not** a CPU profile (no stack sampling, no pprof,
//! no flame graph): it reports, for every `#[instrumented]` call site linked into the
//! binary, its calls by outcome and its total and mean duration since the process
//! started (read from the call site's own series in the exposition), plus the process's
//! CPU time, resident memory and thread count from `/proc` (Linux; `null` elsewhere).
//!
//! Off by default; see `TelemetryBuilder::with_profile_endpoint`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};

use crate::exposition::MetricsHandle;

/// The route of the profile.
pub(crate) const PATH: &str = "/debug/profile";

/// What the body says it is, so that nobody mistakes it for a sampling profile.
const KIND: &str = "zs-observe call-site profile: calls and durations recorded by \
    #[instrumented] call sites since the process started, and process CPU time and resident \
    memory from /proc; not a sampling CPU profile";

/// An axum router serving `GET /debug/profile` as JSON.
pub(crate) fn profile_router(handle: MetricsHandle) -> Router {
    Router::new()
        .route(PATH, get(serve_profile))
        .with_state(handle)
}

async fn serve_profile(State(handle): State<MetricsHandle>) -> impl IntoResponse {
    let body = snapshot(&handle.render(), process_stats());
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
}

/// The profile of the call sites linked into this binary, from an exposition.
pub(crate) fn snapshot(exposition: &str, process: Value) -> Value {
    let families = parse(exposition);
    let sites: Vec<(&'static str, &'static [&'static str])> =
        crate::coverage::call_sites().collect();
    let mut out = Vec::with_capacity(sites.len());
    for (function, metrics) in &sites {
        out.push(call_site(function, metrics, &sites, &families));
    }
    out.sort_by(|a, b| a["function"].as_str().cmp(&b["function"].as_str()));
    json!({
        "kind": KIND,
        "process": process,
        "call_sites": out,
    })
}

fn call_site(
    function: &str,
    metrics: &[&str],
    sites: &[(&'static str, &'static [&'static str])],
    families: &Families,
) -> Value {
    let mut site = Map::new();
    site.insert("function".into(), json!(function));
    site.insert("metrics".into(), json!(metrics));
    // A metric recorded by several call sites cannot be split between them.
    let shared: Vec<&str> = sites
        .iter()
        .filter(|(f, ms)| *f != function && ms.iter().any(|m| metrics.contains(m)))
        .map(|(f, _)| *f)
        .collect();
    if !shared.is_empty() {
        site.insert("shares_metrics_with".into(), json!(shared));
    }
    // Calls and durations: from the duration histogram when there is one, else the counter.
    let histogram = metrics
        .iter()
        .find(|m| families.kinds.get(**m).map(String::as_str) == Some("histogram"));
    let counter = metrics
        .iter()
        .find(|m| families.kinds.get(**m).map(String::as_str) == Some("counter"));
    let calls_from = histogram
        .map(|m| (format!("{m}_count"), true))
        .or_else(|| counter.map(|m| ((*m).to_owned(), false)));
    if let Some((series, timed)) = calls_from {
        let mut by_outcome: BTreeMap<String, f64> = BTreeMap::new();
        let mut total = 0.0;
        for sample in families.samples.iter().filter(|s| s.name == series) {
            total += sample.value;
            if let Some(outcome) = sample.label("outcome") {
                *by_outcome.entry(outcome.to_owned()).or_default() += sample.value;
            }
        }
        site.insert("calls".into(), json!(total as u64));
        if !by_outcome.is_empty() {
            let by_outcome: Map<String, Value> = by_outcome
                .into_iter()
                .map(|(k, v)| (k, json!(v as u64)))
                .collect();
            site.insert("calls_by_outcome".into(), Value::Object(by_outcome));
        }
        if timed {
            let name = histogram.map(|m| format!("{m}_sum")).unwrap_or_default();
            let seconds: f64 = families
                .samples
                .iter()
                .filter(|s| s.name == name)
                .map(|s| s.value)
                .sum();
            site.insert("total_seconds".into(), json!(seconds));
            let mean = if total > 0.0 { seconds / total } else { 0.0 };
            site.insert("mean_seconds".into(), json!(mean));
        }
    }
    let gauge = metrics
        .iter()
        .find(|m| families.kinds.get(**m).map(String::as_str) == Some("gauge"));
    if let Some(gauge) = gauge {
        let in_flight: f64 = families
            .samples
            .iter()
            .filter(|s| s.name == *gauge)
            .map(|s| s.value)
            .sum();
        site.insert("in_flight".into(), json!(in_flight));
    }
    Value::Object(site)
}

/// The families' kinds (`# TYPE`) and every sample of an exposition.
#[derive(Default)]
struct Families {
    kinds: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the text exposition this crate renders (format 0.0.4). Lines it cannot read
/// are skipped: the profile is best effort, never a failure.
fn parse(exposition: &str) -> Families {
    let mut families = Families::default();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                families.kinds.insert(name.to_owned(), kind.to_owned());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(sample) = parse_sample(line) {
            families.samples.push(sample);
        }
    }
    families
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    rest = &after[i + 1..];
                    break;
                }
                ',' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.push((std::mem::take(&mut key), value));
                }
                other => key.push(other),
            }
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Linux reports CPU times in `USER_HZ` ticks, 100 a second on every architecture
/// Rust supports on Linux (the kernel ABI fixes it independently of `CONFIG_HZ`).
const USER_HZ: f64 = 100.0;

/// The process's CPU time, resident memory and threads, from `/proc/self` (all `null`
/// where it cannot be read).
pub(crate) fn process_stats() -> Value {
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    // Fields after the command name (which may contain spaces), from field 3 (`state`).
    let fields: Vec<&str> = stat
        .as_deref()
        .and_then(|s| s.rsplit_once(')'))
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let ticks = |n: usize| field(n).map(|t| t as f64 / USER_HZ);
    let resident = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib * 1024);
    json!({
        "cpu_user_seconds": ticks(14),
        "cpu_system_seconds": ticks(15),
        "resident_bytes": resident,
        "threads": field(20),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_with_escaped_labels() {
        let s = parse_sample(r#"a_total{x="q\"u,o}te",outcome="ok"} 3"#).expect("sample");
        assert_eq!(s.name, "a_total");
        assert_eq!(s.label("x"), Some("q\"u,o}te"));
        assert_eq!(s.label("outcome"), Some("ok"));
        assert_eq!(s.value, 3.0);
        let s = parse_sample("b 2.5").expect("sample");
        assert_eq!((s.name.as_str(), s.value), ("b", 2.5));
        let s = parse_sample(r#"h_bucket{le="+Inf"} +Inf"#).expect("sample");
        assert!(s.value.is_infinite());
        assert!(parse_sample(r#"broken{x="unterminated} 1"#).is_none());
        assert!(parse_sample("no_value").is_none());
    }

    #[test]
    fn process_stats_are_read_on_linux() {
        let stats = process_stats();
        if cfg!(target_os = "linux") {
            assert!(stats["resident_bytes"].as_u64().unwrap_or(0) > 0, "{stats}");
            assert!(stats["threads"].as_u64().unwrap_or(0) >= 1, "{stats}");
            assert!(stats["cpu_user_seconds"].as_f64().is_some(), "{stats}");
        }
    }
}
