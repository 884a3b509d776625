//! The AINS API's traces and logs end to end: the real binary exports over OTLP/HTTP to
//! the real receiver of `zs-observe-tests` (`OTEL_EXPORTER_OTLP_ENDPOINT`, every trace
//! sampled) while its workload runs and a client sends requests with known request ids.
//! The spans arrive with their names, attributes and parent links; the JSON log lines on
//! stdout carry the request id and the trace id of the same request; a planted secret
//! reaches neither.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{send, start_with};
use reqwest::StatusCode;
use serde_json::{json, Value};
use zs_observe_tests::otlp::{ReceivedSpan, Receiver};

const SECRET: &str = "ains-planted-secret-4f1c";

/// Waits (at most 15 s) until `done` holds for the spans received so far.
async fn spans_until(
    receiver: &Receiver,
    what: &str,
    done: impl Fn(&[ReceivedSpan]) -> bool,
) -> Vec<ReceivedSpan> {
    for _ in 0..300 {
        let spans = receiver.collected.spans();
        if done(&spans) {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut names = std::collections::BTreeMap::<String, usize>::new();
    for s in receiver.collected.spans() {
        *names.entry(s.name).or_default() += 1;
    }
    panic!("never received {what}; span names so far (with counts): {names:?}");
}

/// The server span of the request sent with `x-request-id: id`.
fn request_span<'a>(spans: &'a [ReceivedSpan], id: &str) -> Option<&'a ReceivedSpan> {
    spans
        .iter()
        .find(|s| s.kind == 2 && s.attributes.get("request_id").map(String::as_str) == Some(id))
}

fn attr<'a>(span: &'a ReceivedSpan, key: &str) -> &'a str {
    span.attributes.get(key).map(String::as_str).unwrap_or("")
}

/// Whether `span` descends from `ancestor` through received parent links.
fn descends_from(
    by_id: &HashMap<&str, &ReceivedSpan>,
    span: &ReceivedSpan,
    ancestor: &ReceivedSpan,
) -> bool {
    let mut current = span;
    // Bounded by the depth of any real trace.
    for _ in 0..32 {
        if current.parent_span_id == ancestor.span_id {
            return true;
        }
        match by_id.get(current.parent_span_id.as_str()) {
            Some(parent) => current = parent,
            None => return false,
        }
    }
    false
}

/// The spans of `root`'s trace.
fn trace_of<'a>(spans: &'a [ReceivedSpan], root: &ReceivedSpan) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.trace_id == root.trace_id)
        .collect()
}

fn child<'a>(
    spans: &[&'a ReceivedSpan],
    parent: &ReceivedSpan,
    name: &str,
) -> Option<&'a ReceivedSpan> {
    spans
        .iter()
        .copied()
        .find(|s| s.name == name && s.parent_span_id == parent.span_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_receiver_and_logs_carry_their_ids() {
    let receiver = Receiver::http();
    let endpoint = receiver.endpoint();
    let server = start_with(
        &["--workload"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_TRACES_SAMPLER", "always_on"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let base = &server.base;
    let c = reqwest::Client::new();

    // An agent with a secret, a task routed to an agent, read twice (miss then hit),
    // run, completed, then a forbidden transition; a one-step chain; a schedule due in 1 s.
    send(
        &c,
        c.post(format!("{base}/agents"))
            .header("x-request-id", "otlp-agent")
            .json(&json!({"name": "otlp", "trust_score": 0.99, "api_key": SECRET})),
        StatusCode::CREATED,
    )
    .await;
    let task = send(
        &c,
        c.post(format!("{base}/tasks"))
            .header("x-request-id", "otlp-create")
            .json(&json!({"title": "traced", "task_type": "index", "priority": "high"})),
        StatusCode::CREATED,
    )
    .await;
    let id = task["id"].as_i64().expect("task id");
    assert!(task["agent_id"].is_i64(), "routed: {task}");
    for rid in ["otlp-get-miss", "otlp-get-hit"] {
        send(
            &c,
            c.get(format!("{base}/tasks/{id}"))
                .header("x-request-id", rid),
            StatusCode::OK,
        )
        .await;
    }
    for (rid, status, expected) in [
        ("otlp-run", "running", StatusCode::OK),
        ("otlp-complete", "completed", StatusCode::OK),
        ("otlp-conflict", "running", StatusCode::CONFLICT),
    ] {
        send(
            &c,
            c.put(format!("{base}/tasks/{id}/status"))
                .header("x-request-id", rid)
                .json(&json!({ "status": status })),
            expected,
        )
        .await;
    }
    let chain = send(
        &c,
        c.post(format!("{base}/chains"))
            .json(&json!({"name": "traced", "steps": ["only"]})),
        StatusCode::CREATED,
    )
    .await;
    let step = chain["tasks"][0]["id"].as_i64().expect("the step's task");
    for (rid, status) in [
        ("otlp-step-run", "running"),
        ("otlp-step-done", "completed"),
    ] {
        send(
            &c,
            c.put(format!("{base}/tasks/{step}/status"))
                .header("x-request-id", rid)
                .json(&json!({ "status": status })),
            StatusCode::OK,
        )
        .await;
    }
    send(
        &c,
        c.post(format!("{base}/scheduled-tasks"))
            .json(&json!({"title": "traced", "interval_seconds": 1})),
        StatusCode::CREATED,
    )
    .await;

    let spans = spans_until(&receiver, "every expected span", |spans| {
        [
            "otlp-agent",
            "otlp-create",
            "otlp-get-miss",
            "otlp-get-hit",
            "otlp-conflict",
            "otlp-step-done",
        ]
        .iter()
        .all(|rid| request_span(spans, rid).is_some())
            && ["chain.step", "cache.invalidate"]
                .iter()
                .all(|name| spans.iter().any(|s| s.name == *name))
            // A scheduled run and the tick around it (which ends, and is exported, later).
            && spans.iter().any(|run| {
                run.name == "schedule.run"
                    && spans.iter().any(|tick| tick.span_id == run.parent_span_id)
            })
            // Children end (and are exported) before their request span; wait for the
            // last request's whole trace.
            && request_span(spans, "otlp-step-done").is_some_and(|r| {
                spans
                    .iter()
                    .any(|s| s.trace_id == r.trace_id && s.name == "chain.step")
            })
    })
    .await;
    let by_id: HashMap<&str, &ReceivedSpan> =
        spans.iter().map(|s| (s.span_id.as_str(), s)).collect();

    for s in &spans {
        assert_eq!(
            s.resource.get("service.name").map(String::as_str),
            Some("ains-api"),
            "{s:#?}"
        );
    }

    // The API request: server span named by the route template, with its handler, the
    // task's lifecycle and the DB statements under it, all in one trace.
    let create = request_span(&spans, "otlp-create").expect("the POST /tasks span");
    assert_eq!(create.name, "POST /tasks");
    assert_eq!(create.parent_span_id, "", "a root: no traceparent was sent");
    assert_eq!(attr(create, "http.route"), "/tasks");
    assert_eq!(attr(create, "http.response.status_code"), "201");
    let trace = trace_of(&spans, create);
    let handler = child(&trace, create, "api.tasks.create").expect("the handler's span");
    let lifecycle = child(&trace, handler, "task.create").expect("task.create");
    assert_eq!(attr(lifecycle, "task.type"), "index");
    assert_eq!(attr(lifecycle, "task.priority"), "high");
    let route = child(&trace, lifecycle, "task.route").expect("task.route");
    assert_eq!(attr(route, "task.routing_strategy"), "highest_trust");
    assert!(attr(route, "agent.id").parse::<i64>().is_ok(), "{route:#?}");
    let insert = child(&trace, lifecycle, "db.query").expect("the INSERT's span");
    assert_eq!(attr(insert, "db.system"), "sqlite");
    assert_eq!(attr(insert, "db.operation"), "insert");
    assert_eq!(insert.trace_id, create.trace_id);
    let queries: Vec<_> = trace.iter().filter(|s| s.name == "db.query").collect();
    assert!(queries.len() >= 3, "insert, route, read back: {queries:#?}");
    for q in &queries {
        assert_eq!(attr(q, "db.system"), "sqlite");
        assert!(
            ["select", "insert", "update", "delete"].contains(&attr(q, "db.operation")),
            "{q:#?}"
        );
        assert!(descends_from(&by_id, q, create), "{q:#?}");
    }

    // Cache operations: a miss then a put on the first read, a hit on the second.
    let miss = request_span(&spans, "otlp-get-miss").expect("the first GET");
    assert_eq!(miss.name, "GET /tasks/{id}");
    let miss_trace = trace_of(&spans, miss);
    let key = format!("task:{id}");
    let get = miss_trace
        .iter()
        .find(|s| s.name == "cache.get")
        .expect("cache.get on a miss");
    assert_eq!(attr(get, "cache.key"), key);
    assert_eq!(attr(get, "cache.hit"), "false");
    assert!(descends_from(&by_id, get, miss));
    let put = miss_trace
        .iter()
        .find(|s| s.name == "cache.put")
        .expect("cache.put after a miss");
    assert_eq!(attr(put, "cache.key"), key);
    let hit = request_span(&spans, "otlp-get-hit").expect("the second GET");
    let hit_trace = trace_of(&spans, hit);
    let get = hit_trace
        .iter()
        .find(|s| s.name == "cache.get")
        .expect("cache.get on a hit");
    assert_eq!(attr(get, "cache.hit"), "true");
    assert!(
        !hit_trace.iter().any(|s| s.name == "db.query"),
        "a hit does not touch the database: {hit_trace:#?}"
    );

    // The lifecycle's status changes; a forbidden one is an error span.
    let conflict = request_span(&spans, "otlp-conflict").expect("the 409");
    assert_eq!(conflict.name, "PUT /tasks/{id}/status");
    assert_eq!(attr(conflict, "http.response.status_code"), "409");
    let update = trace_of(&spans, conflict)
        .into_iter()
        .find(|s| s.name == "task.update_status")
        .expect("task.update_status");
    assert_eq!(attr(update, "task.id"), id.to_string());
    assert_eq!(attr(update, "task.status"), "running");
    assert_eq!(update.status_code, 2, "{update:#?}");
    assert!(update
        .status_message
        .contains("cannot go from completed to running"));

    // A chain step finishing advances its chain inside the same request.
    let done = request_span(&spans, "otlp-step-done").expect("the step's completion");
    let step_span = trace_of(&spans, done)
        .into_iter()
        .find(|s| s.name == "chain.step")
        .expect("chain.step");
    assert_eq!(attr(step_span, "chain.step"), "0");
    assert_eq!(attr(step_span, "chain.id"), chain["id"].to_string());
    assert!(descends_from(&by_id, step_span, done));

    // The scheduler: a due schedule runs under the tick, outside any request.
    let run = spans
        .iter()
        .find(|s| s.name == "schedule.run" && by_id.contains_key(s.parent_span_id.as_str()))
        .expect("schedule.run");
    let tick = by_id
        .get(run.parent_span_id.as_str())
        .expect("schedule.run has a received parent");
    assert_eq!(tick.name, "scheduler.tick");
    assert_eq!(tick.parent_span_id, "");
    assert!(
        spans
            .iter()
            .any(|s| s.name == "task.create" && s.parent_span_id == run.span_id),
        "the scheduled run creates a task"
    );

    // Redaction: the agent's key is a span attribute, redacted before export.
    let agent = request_span(&spans, "otlp-agent").expect("the POST /agents span");
    let register = trace_of(&spans, agent)
        .into_iter()
        .find(|s| s.name == "agent.register")
        .expect("agent.register");
    assert_eq!(attr(register, "api_key"), zs_observe::REDACTED);
    assert!(!format!("{spans:?}").contains(SECRET));

    // Logs: JSON lines on stdout, with the request id and the request's trace id.
    // stdout is read by a task of its own: wait (bounded) for the two lines we look at.
    let mut lines: Vec<String> = Vec::new();
    for _ in 0..100 {
        lines = server.stdout.lock().expect("stdout").clone();
        let seen = |id: &str| {
            lines
                .iter()
                .any(|l| l.contains(&format!("\"request_id\":\"{id}\"")))
        };
        if seen("otlp-create") && seen("otlp-agent") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let created = logs
        .iter()
        .find(|l| l["message"] == "task created" && l["request_id"] == "otlp-create")
        .expect("the `task created` line of the POST /tasks request");
    assert_eq!(created["trace_id"], create.trace_id.as_str());
    assert_eq!(created["service"], "ains-api");
    assert_eq!(created["level"], "info");
    assert_eq!(created["task.type"], "index");
    let registered = logs
        .iter()
        .find(|l| l["message"] == "agent registered" && l["request_id"] == "otlp-agent")
        .expect("the `agent registered` line");
    assert_eq!(registered["api_key"], zs_observe::REDACTED);
    assert_eq!(registered["trace_id"], agent.trace_id.as_str());
    assert!(
        !lines.iter().any(|l| l.contains(SECRET)),
        "the planted secret is in the logs"
    );
}
