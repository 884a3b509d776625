//! Unsampled calls' spans are light (kept out of the registry, `zs_observe`'s
//! `light` module): their log lines must read exactly as an ordinary span's would.
//! Every root here loses the sampling roll (`ParentBasedAlwaysOff`), so every
//! `#[instrumented]` span in this process is a light one.

use std::sync::OnceLock;

use serde_json::Value;
use zs_observe::Telemetry;
use zs_observe_tests::logs::CapturedLogs;

fn setup() -> &'static (Telemetry, CapturedLogs) {
    static SETUP: OnceLock<(Telemetry, CapturedLogs)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let logs = CapturedLogs::default();
        let telemetry = Telemetry::builder()
            .with_service_name("lighttest")
            .with_log_sink(logs.sink())
            .with_log_format(zs_observe::LogFormat::Json)
            .with_log_level("info")
            .with_sampler(zs_observe::TraceSampler::ParentBasedAlwaysOff)
            // The OTel layer keeps an interest in debug spans, so a debug span's
            // callsite stays "sometimes" at the `info` log level and the light
            // span's level verdict is asked (and remembered) on every call.
            .with_trace_filter("debug")
            .install()
            .expect("install");
        (telemetry, logs)
    })
}

fn line(logs: &CapturedLogs, message: &str) -> Value {
    let found: Vec<Value> = logs
        .json_lines()
        .into_iter()
        .filter(|l| l["message"] == message)
        .collect();
    assert_eq!(found.len(), 1, "one line `{message}`: {found:#?}");
    found.into_iter().next().unwrap()
}

#[zs_observe::instrumented(
    span = "outer.op",
    counter = "light_outer_total",
    fields(job = "j1", late = tracing::field::Empty, password = "hunter2")
)]
fn outer(n: u64) -> u64 {
    tracing::Span::current().record("late", "filled");
    tracing::info!("in outer");
    let headers = zs_observe::propagation::current_headers();
    let traceparent = headers["traceparent"].to_str().unwrap().to_owned();
    assert!(
        traceparent.ends_with("-00"),
        "an unsampled call propagates sampled=0: {traceparent}"
    );
    let user = tracing::info_span!("user.span", u = 7);
    let r = user.in_scope(|| {
        tracing::info!("in user");
        inner(n + 1).unwrap_or(0)
    });
    let _ = inner(0);
    tracing::info!("outer again");
    r
}

#[zs_observe::instrumented(span = "inner.op", counter = "light_inner_total", err)]
fn inner(m: u64) -> Result<u64, String> {
    if m == 0 {
        return Err("m is zero".to_owned());
    }
    tracing::info!(depth = 2, "in inner");
    Ok(m * 10)
}

#[test]
fn nested_light_spans_give_log_lines_their_fields_in_order() {
    let (telemetry, logs) = setup();
    assert_eq!(outer(1), 20);
    assert!(
        tracing::Span::current().is_none(),
        "no span is left entered after the calls"
    );

    let l = line(logs, "in outer");
    assert_eq!(l["span"], "outer.op");
    assert_eq!(l["n"], 1);
    assert_eq!(l["job"], "j1");
    assert_eq!(
        l["late"], "filled",
        "Span::current().record reaches the light span"
    );
    assert_eq!(l["password"], zs_observe::REDACTED);
    assert!(l.get("trace_id").is_none(), "unsampled: no trace id: {l}");

    let l = line(logs, "in user");
    assert_eq!(l["span"], "user.span");
    assert_eq!(
        (l["n"].clone(), l["u"].clone()),
        (Value::from(1), Value::from(7))
    );

    let l = line(logs, "in inner");
    assert_eq!(l["span"], "inner.op", "{l}");
    assert_eq!(l["m"], 2);
    assert_eq!(l["u"], 7, "the user span encloses the inner call");
    assert_eq!(l["job"], "j1");
    assert_eq!(l["depth"], 2);

    let err = logs
        .json_lines()
        .into_iter()
        .find(|l| l["error"] == "m is zero")
        .expect("the err event");
    assert_eq!(err["span"], "inner.op");
    assert_eq!(err["m"], 0);
    assert_eq!(err["level"], "error");

    let l = line(logs, "outer again");
    assert_eq!(l["span"], "outer.op");
    assert!(l.get("m").is_none() && l.get("u").is_none(), "{l}");

    let text = telemetry.render();
    let value = |name: &str, outcome: &str| -> Option<String> {
        text.lines()
            .find(|l| {
                l.starts_with(&format!("{name}{{")) && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    };
    assert_eq!(
        value("light_inner_total", "error").as_deref(),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        value("light_inner_total", "ok").as_deref(),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        value("light_outer_total", "ok").as_deref(),
        Some("1"),
        "{text}"
    );
}

#[zs_observe::instrumented(span = "async.op", fields(job = "a1"))]
async fn across_awaits(k: u64) -> u64 {
    tracing::info!("before await");
    tokio::task::yield_now().await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    tracing::info!(id = k, "after await");
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_light_spans_follow_their_future_across_threads() {
    let (_, logs) = setup();
    let tasks: Vec<_> = (0..50u64)
        .map(|k| tokio::spawn(across_awaits(1000 + k)))
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let after: Vec<Value> = logs
        .json_lines()
        .into_iter()
        .filter(|l| l["message"] == "after await")
        .collect();
    assert_eq!(after.len(), 50);
    for l in after {
        assert_eq!(l["span"], "async.op");
        assert_eq!(l["job"], "a1");
        // The span's own field and the event's field carry the same value: the
        // line never mixes one task's span with another's event.
        assert_eq!(l["k"], l["id"], "{l}");
    }
}

#[zs_observe::instrumented(span = "debug.op", level = "debug", fields(tag = "dbg"))]
fn debug_level_call(i: u64) -> u64 {
    tracing::info!(i, "inside a debug span");
    i
}

/// The light span's level verdict is remembered per callsite, and forgotten when
/// the directives change: a debug-level span is off at `info`, on at `debug`, off
/// again at `info`.
#[test]
fn a_level_change_reaches_light_spans_whose_verdict_was_remembered() {
    let (telemetry, logs) = setup();
    let span_of = |i: u64| -> Value {
        let message = "inside a debug span";
        let found: Vec<Value> = logs
            .json_lines()
            .into_iter()
            .filter(|l| l["message"] == message && l["i"] == i)
            .collect();
        assert_eq!(found.len(), 1, "{found:#?}");
        found[0]["span"].clone()
    };
    for i in 0..3 {
        debug_level_call(i);
    }
    assert_eq!(span_of(2), Value::Null);
    telemetry.set_log_level("debug").unwrap();
    for i in 10..13 {
        debug_level_call(i);
    }
    assert_eq!(span_of(12), "debug.op");
    assert_eq!(
        logs.json_lines().iter().find(|l| l["i"] == 12).unwrap()["tag"],
        "dbg"
    );
    telemetry.set_log_level("info").unwrap();
    for i in 20..23 {
        debug_level_call(i);
    }
    assert_eq!(span_of(22), Value::Null);
}

#[zs_observe::instrumented(span = "current.op", fields(seen = tracing::field::Empty))]
fn takes_the_current_span_often(k: u64) {
    // `Span::current()` here names the carrier (a registry span that is never
    // closed): its clones and closes must balance, or a later call would find it
    // closed.
    for _ in 0..3 {
        let current = tracing::Span::current();
        let _another = current.clone();
    }
    tracing::Span::current().record("seen", k);
    tracing::info!("current taken");
}

#[test]
fn the_current_span_of_a_light_span_can_be_taken_and_dropped_again_and_again() {
    let (_, logs) = setup();
    for k in 0..3 {
        takes_the_current_span_often(k);
    }
    let seen: Vec<Value> = logs
        .json_lines()
        .into_iter()
        .filter(|l| l["message"] == "current taken")
        .inspect(|l| assert_eq!(l["span"], "current.op", "{l}"))
        .map(|l| l["seen"].clone())
        .collect();
    assert_eq!(seen, [0, 1, 2].map(Value::from));
}

/// Counts the evaluations of [`evaluated_field`]'s field.
static FIELD_EVALUATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn counted(v: u64) -> u64 {
    FIELD_EVALUATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    v
}

#[zs_observe::instrumented(span = "debug.counted", level = "debug", fields(c = counted(i)))]
fn evaluated_field(i: u64) -> u64 {
    i
}

/// An unsampled call's span is built by the call site itself once the level allows
/// it: a span the level disables evaluates none of its fields.
#[test]
fn a_span_the_level_disables_evaluates_none_of_its_fields() {
    use std::sync::atomic::Ordering::Relaxed;
    let (telemetry, _) = setup();
    for i in 0..5 {
        assert_eq!(evaluated_field(i), i);
    }
    assert_eq!(FIELD_EVALUATIONS.load(Relaxed), 0, "disabled at `info`");
    telemetry.set_log_level("debug").unwrap();
    for i in 0..5 {
        evaluated_field(i);
    }
    assert_eq!(
        FIELD_EVALUATIONS.load(Relaxed),
        5,
        "once per call at `debug`"
    );
    telemetry.set_log_level("info").unwrap();
}

/// What a subscriber set for a scope sees of the spans it creates.
#[derive(Clone, Default)]
struct SeenSpans(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SeenSpans {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={v:?}", f.name()));
            }
        }
        let mut fields = Fields(attrs.metadata().name().to_owned());
        attrs.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

/// Under a subscriber an application (or a test) sets for a scope, call sites build
/// ordinary spans that reach it, with their fields: the shortcut past the dispatcher
/// is taken only while the runtime's subscriber is the current one.
#[test]
fn a_scoped_subscriber_gets_ordinary_spans_with_their_fields() {
    use tracing_subscriber::layer::SubscriberExt;
    let (_, logs) = setup();
    let seen = SeenSpans::default();
    let scoped = tracing_subscriber::registry().with(seen.clone());
    tracing::subscriber::with_default(scoped, || {
        assert_eq!(outer(1), 20);
    });
    let spans = seen.0.lock().unwrap().clone();
    assert!(
        spans.contains(&"outer.op n=1 job=\"j1\" password=\"hunter2\"".to_owned()),
        "{spans:#?}"
    );
    assert!(spans.contains(&"inner.op m=2".to_owned()), "{spans:#?}");
    assert!(
        logs.json_lines().is_empty(),
        "nothing reached the runtime's log layer"
    );
    // Back under the runtime's subscriber: light spans again.
    assert_eq!(outer(1), 20);
    assert_eq!(line(logs, "in outer")["span"], "outer.op");
}

/// A value whose formatting logs, and records into the span being recorded.
struct Noisy(u64);

impl std::fmt::Display for Noisy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        tracing::info!(inner = self.0, "formatting a field");
        tracing::Span::current().record("late", "from inside the formatting");
        write!(f, "noisy-{}", self.0)
    }
}

#[zs_observe::instrumented(
    span = "reentrant.op",
    fields(note = tracing::field::Empty, late = tracing::field::Empty)
)]
fn records_a_value_that_logs(k: u64) {
    tracing::Span::current().record("note", tracing::field::display(Noisy(k)));
    tracing::info!("after the record");
}

/// Recording formats the value with the span's fields locked; a log line (or another
/// record into the same span) from inside that formatting must not wait for the lock
/// on the same thread forever.
#[test]
fn a_value_that_logs_while_it_is_recorded_does_not_deadlock() {
    let (_, logs) = setup();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        records_a_value_that_logs(7);
        let _ = done.send(());
    });
    finished
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the call returns (no self-deadlock on the span's fields)");
    let inner = line(logs, "formatting a field");
    assert_eq!(inner["span"], "reentrant.op", "{inner}");
    assert_eq!(inner["inner"], 7);
    let after = line(logs, "after the record");
    assert_eq!(after["span"], "reentrant.op");
    assert_eq!(after["k"], 7);
    assert_eq!(
        after["note"], "noisy-7",
        "the outer record is kept: {after}"
    );
}

#[zs_observe::instrumented(span = "record.op", fields(a, b, token))]
fn records_through_record_current(n: u64) {
    zs_observe::record_current("a", n * 10);
    zs_observe::record_current("b", tracing::field::display("shown"));
    zs_observe::record_current("token", "s3cr3t");
    // Not a field of the span: ignored, as `Span::record` ignores it.
    zs_observe::record_current("missing", 1u64);
    // A registry span inside: recorded through `tracing`, into that span.
    let user = tracing::info_span!("user.records", z = tracing::field::Empty);
    user.in_scope(|| {
        zs_observe::record_current("z", 5u64);
        zs_observe::record_current("a", 99u64);
        tracing::info!(n, "in the user span");
    });
    // Replaced: the later value is the one a line sees.
    zs_observe::record_current("a", n * 100);
    tracing::info!(n, "after records");
}

#[test]
fn record_current_reaches_the_current_span_whatever_its_kind() {
    let (_, logs) = setup();
    // Outside any span: nothing to record into, nothing happens.
    zs_observe::record_current("a", 1u64);
    records_through_record_current(3);
    let lines_of = |message: &str| -> Vec<Value> {
        logs.json_lines()
            .into_iter()
            .filter(|l| l["message"] == message && l["n"] == 3)
            .collect()
    };
    let after = lines_of("after records");
    assert_eq!(after.len(), 1, "{after:#?}");
    let l = &after[0];
    assert_eq!(l["span"], "record.op");
    assert_eq!(l["a"], 300);
    assert_eq!(l["b"], "shown");
    assert_eq!(l["token"], zs_observe::REDACTED, "redacted like any field");
    assert!(l.get("missing").is_none(), "{l}");
    let inside = lines_of("in the user span");
    assert_eq!(inside.len(), 1, "{inside:#?}");
    assert_eq!(inside[0]["span"], "user.records");
    assert_eq!(inside[0]["z"], 5);
    // The registry span has no `a`: the light span's value at that time shows.
    assert_eq!(inside[0]["a"], 30);
}

#[zs_observe::instrumented(
    span = "kinds.op",
    fields(small = 8u8, neg = -1, ratio = 0.5f32, flag = true, len = bytes.len(), opt = ?Some(2)),
    skip(bytes)
)]
fn kinds(bytes: &[u8], label: &str, big: u64) {
    tracing::info!("in kinds");
}

/// Numbers, booleans and text reach a light span's log lines with their JSON kinds,
/// whichever way the expansion hands them over (as they are, or as `tracing::Value`).
#[test]
fn field_values_of_every_kind_reach_log_lines_as_tracing_records_them() {
    let (_, logs) = setup();
    kinds(b"abc", "the label", u64::MAX);
    let l = line(logs, "in kinds");
    assert_eq!(l["span"], "kinds.op");
    assert_eq!(l["label"], "the label");
    assert_eq!(l["big"], u64::MAX);
    assert_eq!(l["small"], 8);
    assert_eq!(l["neg"], -1);
    assert_eq!(l["ratio"], 0.5);
    assert_eq!(l["flag"], true);
    assert_eq!(l["len"], 3);
    assert_eq!(l["opt"], "Some(2)");
}
