//! The attribute's keys: labels (literal and per call), the outcome label (renamed,
//! removed), fields, level, target, err/ret and the completion log event.

use zs_observe::instrumented;
use zs_observe_tests::{counter, gauge, histogram, install_recorder, series_of, Capture};

#[instrumented(
    counter = "keys_messages_total",
    histogram = "keys_message_duration_seconds",
    in_flight = "keys_messages_in_flight",
    labels(kind = "gossip", peer = peer.to_string())
)]
fn send(peer: u32, ok: bool) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err("unreachable peer".into())
    }
}

#[test]
fn literal_and_per_call_labels() {
    install_recorder();
    send(1, true).unwrap();
    send(1, false).unwrap_err();
    send(2, true).unwrap();
    let l = |peer, outcome| {
        counter(
            "keys_messages_total",
            &[("kind", "gossip"), ("peer", peer), ("outcome", outcome)],
        )
    };
    assert_eq!(l("1", "ok"), 1);
    assert_eq!(l("1", "error"), 1);
    assert_eq!(l("2", "ok"), 1);
    assert_eq!(
        series_of("keys_messages_total").len(),
        3,
        "per-call labels create series lazily"
    );
    assert_eq!(
        histogram(
            "keys_message_duration_seconds",
            &[("kind", "gossip"), ("peer", "2"), ("outcome", "ok")]
        )
        .len(),
        1
    );
    for peer in ["1", "2"] {
        assert_eq!(
            gauge(
                "keys_messages_in_flight",
                &[("kind", "gossip"), ("peer", peer)]
            ),
            Some(0.0),
            "the in-flight gauge has no outcome label"
        );
    }
}

#[instrumented(counter = "keys_renamed_total", outcome = "result")]
fn renamed(fail: bool) -> Result<u8, u8> {
    if fail {
        Err(1)
    } else {
        Ok(0)
    }
}

#[instrumented(
    counter = "keys_no_outcome_total",
    histogram = "keys_no_outcome_seconds",
    outcome = false
)]
fn no_outcome(fail: bool) -> Result<u8, u8> {
    if fail {
        Err(1)
    } else {
        Ok(0)
    }
}

#[test]
fn outcome_label_can_be_renamed_or_removed() {
    install_recorder();
    renamed(false).unwrap();
    renamed(true).unwrap_err();
    assert_eq!(counter("keys_renamed_total", &[("result", "ok")]), 1);
    assert_eq!(counter("keys_renamed_total", &[("result", "error")]), 1);
    assert_eq!(counter("keys_renamed_total", &[("outcome", "ok")]), 0);

    no_outcome(false).unwrap();
    no_outcome(true).unwrap_err();
    assert_eq!(
        series_of("keys_no_outcome_total"),
        vec!["keys_no_outcome_total{}".to_string()]
    );
    assert_eq!(counter("keys_no_outcome_total", &[]), 2);
    assert_eq!(histogram("keys_no_outcome_seconds", &[]).len(), 2);
}

#[derive(Debug)]
struct Task {
    id: u64,
    tenant: &'static str,
}

#[instrumented(
    span = "task.run",
    level = "debug",
    target = "zerostate::tasks",
    fields(task.id = task.id, tenant = %task.tenant, attempt, queue = ?"default"),
    skip(task),
    ret,
    log = "task finished"
)]
fn run_task(task: &Task, retries: u8) -> u64 {
    tracing::Span::current().record("attempt", 2);
    task.id + u64::from(retries)
}

#[test]
fn fields_level_target_ret_and_completion_log() {
    install_recorder();
    let capture = Capture::default();
    let task = Task {
        id: 40,
        tenant: "acme",
    };
    let out = tracing::subscriber::with_default(capture.subscriber(), || run_task(&task, 2));
    assert_eq!(out, 42);

    let span = capture.span("task.run");
    assert_eq!(span.level, tracing::Level::DEBUG);
    assert_eq!(span.target, "zerostate::tasks");
    assert_eq!(span.fields["task.id"], "40");
    assert_eq!(span.fields["tenant"], "acme");
    assert_eq!(span.fields["queue"], "\"default\"");
    assert_eq!(
        span.fields["retries"], "2",
        "unskipped parameters are fields"
    );
    assert_eq!(
        span.fields["attempt"], "2",
        "an empty field can be recorded later"
    );
    assert!(!span.fields.contains_key("task"), "skip(task)");

    let events = capture.events();
    let ret = events
        .iter()
        .find(|e| e.fields.contains_key("return"))
        .expect("ret event");
    assert_eq!(ret.fields["return"], "42");
    assert_eq!(
        ret.level,
        tracing::Level::DEBUG,
        "ret uses the span's level"
    );
    let done = events
        .iter()
        .find(|e| e.fields.get("message").map(String::as_str) == Some("task finished"))
        .expect("completion event");
    assert_eq!(done.fields["outcome"], "ok");
    let seconds: f64 = done.fields["duration_seconds"].parse().expect("a number");
    assert!((0.0..5.0).contains(&seconds));
    assert_eq!(
        done.span.as_deref(),
        Some("task.run"),
        "the completion event carries the span's fields"
    );
    assert_eq!(done.span_fields["task.id"], "40");
    assert_eq!(done.target, "zerostate::tasks");
}

#[instrumented(
    span = "payment.settle",
    err(Debug, level = "warn"),
    log(level = "info", message = "settled")
)]
async fn settle(amount: u64) -> Result<u64, String> {
    if amount == 0 {
        return Err("nothing to settle".into());
    }
    Ok(amount)
}

#[tokio::test]
async fn err_with_debug_and_level_and_log_on_error_and_cancel() {
    install_recorder();
    let capture = Capture::default();
    let _default = tracing::subscriber::set_default(capture.subscriber());
    settle(0).await.unwrap_err();
    let events = capture.events();
    let err = events
        .iter()
        .find(|e| e.fields.contains_key("error"))
        .expect("err event");
    assert_eq!(err.level, tracing::Level::WARN);
    assert_eq!(
        err.fields["error"], "\"nothing to settle\"",
        "Debug formatting"
    );
    let done = events
        .iter()
        .find(|e| e.fields.get("message").map(String::as_str) == Some("settled"))
        .unwrap();
    assert_eq!(done.fields["outcome"], "error");

    // A cancelled call still logs its completion, with outcome `cancelled`.
    #[instrumented(span = "slow.call", log)]
    async fn slow() {
        std::future::pending::<()>().await
    }
    let _ = tokio::time::timeout(std::time::Duration::from_millis(5), slow()).await;
    let done = capture
        .events()
        .into_iter()
        .find(|e| e.fields.get("message").map(String::as_str) == Some("slow completed"))
        .expect("default message is `<fn> completed`");
    assert_eq!(done.fields["outcome"], "cancelled");
    assert_eq!(done.span.as_deref(), Some("slow.call"));
}

#[instrumented(span = false, counter = "keys_no_span_total")]
fn metrics_only() -> u8 {
    7
}

#[test]
fn span_false_creates_no_span() {
    install_recorder();
    let capture = Capture::default();
    tracing::subscriber::with_default(capture.subscriber(), metrics_only);
    assert!(capture.spans().is_empty());
    assert_eq!(counter("keys_no_span_total", &[("outcome", "ok")]), 1);
}

#[test]
fn default_span_name_is_the_function_name() {
    install_recorder();
    #[instrumented]
    fn plain_function(x: i32) -> i32 {
        x
    }
    let capture = Capture::default();
    tracing::subscriber::with_default(capture.subscriber(), || plain_function(1));
    assert_eq!(capture.span("plain_function").fields["x"], "1");
}
