//! `#[instrumented]` on every function shape, through every exit path, against a
//! capturing recorder and a capturing subscriber. Each test uses its own metric
//! names, so tests can share the process-wide recorder.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::task::{Context, Poll};

use zs_observe::instrumented;
use zs_observe_tests::{counter, gauge, histogram, install_recorder, series_of, Capture};

fn ok_only() -> [(&'static str, u64); 4] {
    [("ok", 1), ("error", 0), ("panic", 0), ("cancelled", 0)]
}

fn outcomes(name: &str) -> Vec<(String, u64)> {
    ["ok", "error", "panic", "cancelled"]
        .iter()
        .map(|o| (o.to_string(), counter(name, &[("outcome", o)])))
        .collect()
}

fn expect(name: &str, ok: u64, error: u64, panic: u64, cancelled: u64) {
    assert_eq!(
        outcomes(name),
        vec![
            ("ok".to_string(), ok),
            ("error".to_string(), error),
            ("panic".to_string(), panic),
            ("cancelled".to_string(), cancelled)
        ],
        "outcome counts of {name}"
    );
}

/// Polls a future once with a no-op waker.
fn poll_once<F: Future + ?Sized>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    fut.poll(&mut cx)
}

// ---------------------------------------------------------------- sync fn

#[instrumented(
    span = "shape.sync",
    counter = "shape_sync_calls_total",
    histogram = "shape_sync_duration_seconds",
    in_flight = "shape_sync_in_flight"
)]
fn sync_add(a: u32, b: u32) -> u32 {
    assert_eq!(
        gauge("shape_sync_in_flight", &[]),
        Some(1.0),
        "in flight during the call"
    );
    a + b
}

#[test]
fn sync_fn_counts_times_and_spans() {
    install_recorder();
    let capture = Capture::default();
    let sum = tracing::subscriber::with_default(capture.subscriber(), || sync_add(2, 3));
    assert_eq!(sum, 5);
    for (outcome, n) in ok_only() {
        assert_eq!(
            counter("shape_sync_calls_total", &[("outcome", outcome)]),
            n,
            "{outcome}"
        );
    }
    let samples = histogram("shape_sync_duration_seconds", &[("outcome", "ok")]);
    assert_eq!(samples.len(), 1);
    assert!(
        samples[0] >= 0.0 && samples[0] < 5.0,
        "duration in seconds: {samples:?}"
    );
    assert_eq!(gauge("shape_sync_in_flight", &[]), Some(0.0));

    let span = capture.span("shape.sync");
    assert_eq!(span.fields.get("a").map(String::as_str), Some("2"));
    assert_eq!(span.fields.get("b").map(String::as_str), Some("3"));
    assert_eq!(span.level, tracing::Level::INFO);
    assert_eq!(span.target, module_path!());
}

// ------------------------------------------------- Result, `?` and early return

#[derive(Debug)]
struct ParseError(String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot parse {:?}", self.0)
    }
}

impl From<std::num::ParseIntError> for ParseError {
    fn from(e: std::num::ParseIntError) -> Self {
        ParseError(e.to_string())
    }
}

#[instrumented(span = "shape.parse", counter = "shape_parse_calls_total", err)]
fn parse_positive(input: &str) -> Result<u32, ParseError> {
    if input.is_empty() {
        return Err(ParseError("empty".into()));
    }
    let n: u32 = input.trim().parse()?;
    if n == 0 {
        return Ok(1);
    }
    Ok(n)
}

#[test]
fn question_mark_and_early_return_are_counted_by_outcome() {
    install_recorder();
    let capture = Capture::default();
    tracing::subscriber::with_default(capture.subscriber(), || {
        assert_eq!(parse_positive("7").unwrap(), 7);
        assert_eq!(parse_positive("0").unwrap(), 1);
        assert!(parse_positive("").is_err());
        assert!(parse_positive("x").is_err());
    });
    expect("shape_parse_calls_total", 2, 2, 0, 0);
    let errors: Vec<_> = capture
        .events()
        .into_iter()
        .filter(|e| e.level == tracing::Level::ERROR)
        .collect();
    assert_eq!(
        errors.len(),
        2,
        "`err` emits one event per Err: {errors:#?}"
    );
    assert_eq!(errors[0].fields["error"], "cannot parse \"empty\"");
    assert_eq!(errors[0].span.as_deref(), Some("shape.parse"));
    assert_eq!(
        errors[0].span_fields["input"], "",
        "&str is recorded as a value, not with Debug"
    );
}

// ------------------------------------------------------------------- panic

#[instrumented(
    counter = "shape_panic_calls_total",
    in_flight = "shape_panic_in_flight"
)]
fn may_panic(fail: bool) -> u8 {
    if fail {
        std::panic::panic_any(String::from("planted panic"));
    }
    1
}

#[test]
fn panic_is_counted_and_reraised_untouched() {
    install_recorder();
    assert_eq!(may_panic(false), 1);
    let caught = std::panic::catch_unwind(|| may_panic(true)).expect_err("the panic propagates");
    assert_eq!(
        caught.downcast_ref::<String>().map(String::as_str),
        Some("planted panic"),
        "the payload is the original one"
    );
    expect("shape_panic_calls_total", 1, 0, 1, 0);
    assert_eq!(gauge("shape_panic_in_flight", &[]), Some(0.0));
}

// ------------------------------------------------- per-call labels, in flight

#[instrumented(
    counter = "shape_routed_calls_total",
    histogram = "shape_routed_duration_seconds",
    in_flight = "shape_routed_in_flight",
    labels(route = route)
)]
fn routed(route: &'static str, fail: bool) -> u8 {
    assert_eq!(
        gauge("shape_routed_in_flight", &[("route", route)]),
        Some(1.0),
        "in flight, under this call's label, while the body runs"
    );
    if fail {
        std::panic::panic_any(String::from("planted"));
    }
    1
}

#[test]
fn per_call_labels_reach_the_counter_histogram_and_in_flight_gauge_on_every_exit() {
    install_recorder();
    assert_eq!(routed("a", false), 1);
    assert_eq!(routed("a", false), 1);
    assert_eq!(routed("b", false), 1);
    let caught = std::panic::catch_unwind(|| routed("b", true));
    assert!(caught.is_err());
    let count = |route, outcome| {
        counter(
            "shape_routed_calls_total",
            &[("route", route), ("outcome", outcome)],
        )
    };
    assert_eq!(
        (count("a", "ok"), count("b", "ok"), count("b", "panic")),
        (2, 1, 1)
    );
    assert_eq!(count("a", "panic"), 0);
    for route in ["a", "b"] {
        assert_eq!(
            gauge("shape_routed_in_flight", &[("route", route)]),
            Some(0.0)
        );
    }
    assert_eq!(
        histogram(
            "shape_routed_duration_seconds",
            &[("route", "b"), ("outcome", "panic")]
        )
        .len(),
        1
    );
}

// ---------------------------------------------------------------- async fn

#[instrumented(
    span = "shape.async",
    counter = "shape_async_calls_total",
    histogram = "shape_async_duration_seconds",
    in_flight = "shape_async_in_flight",
    err
)]
async fn fetch(id: u64, fail: bool) -> Result<u64, String> {
    tokio::task::yield_now().await;
    if fail {
        Err(format!("no record {id}"))?;
    }
    Ok(id * 2)
}

#[tokio::test]
async fn async_fn_ok_error_and_cancelled() {
    install_recorder();
    assert_eq!(fetch(4, false).await, Ok(8));
    assert!(fetch(5, true).await.is_err());
    {
        // Started (polled once, parked at the yield) and then dropped: cancelled.
        let mut fut = pin!(fetch(6, false));
        assert!(poll_once(fut.as_mut()).is_pending());
        assert_eq!(gauge("shape_async_in_flight", &[]), Some(1.0));
    }
    // Created but never polled: never started, so nothing is recorded.
    drop(fetch(7, false));
    expect("shape_async_calls_total", 1, 1, 0, 1);
    assert_eq!(gauge("shape_async_in_flight", &[]), Some(0.0));
    assert_eq!(
        histogram("shape_async_duration_seconds", &[("outcome", "cancelled")]).len(),
        1
    );
}

#[instrumented(span = "shape.async.panic", counter = "shape_async_panic_total")]
async fn async_panics() {
    tokio::task::yield_now().await;
    panic!("async planted panic");
}

#[tokio::test]
async fn async_panic_is_counted() {
    install_recorder();
    let result = futures::FutureExt::catch_unwind(AssertUnwindSafe(async_panics())).await;
    let payload = result.expect_err("panics");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"async planted panic"));
    expect("shape_async_panic_total", 0, 0, 1, 0);
}

#[tokio::test]
async fn async_span_is_entered_on_every_poll() {
    install_recorder();
    let capture = Capture::default();
    let _default = tracing::subscriber::set_default(capture.subscriber());
    #[instrumented(span = "shape.async.events", counter = "shape_async_events_total")]
    async fn logs_across_awaits(n: u32) {
        tracing::info!("before");
        tokio::task::yield_now().await;
        tracing::info!(n, "after");
    }
    logs_across_awaits(3).await;
    let events = capture.events();
    assert_eq!(events.len(), 2);
    for e in &events {
        assert_eq!(e.span.as_deref(), Some("shape.async.events"), "{e:?}");
        assert_eq!(e.span_fields["n"], "3");
    }
}

// ----------------------------------------------------------------- methods

#[derive(Debug, Default)]
struct Ledger {
    balance: i64,
}

impl Ledger {
    #[instrumented(span = "ledger.balance", counter = "shape_ref_self_total")]
    fn balance(&self) -> i64 {
        self.balance
    }

    #[instrumented(span = "ledger.deposit", counter = "shape_mut_self_total", skip(self))]
    fn deposit(&mut self, amount: i64) -> Result<i64, String> {
        if amount <= 0 {
            return Err("amount must be positive".into());
        }
        self.balance += amount;
        Ok(self.balance)
    }

    #[instrumented(span = "ledger.close", counter = "shape_self_total")]
    fn close(self) -> i64 {
        self.balance
    }

    #[instrumented(span = "ledger.settle", counter = "shape_async_self_total", skip_all)]
    async fn settle(&mut self) -> i64 {
        tokio::task::yield_now().await;
        std::mem::take(&mut self.balance)
    }
}

#[tokio::test]
async fn methods_on_ref_mut_and_owned_self() {
    install_recorder();
    let capture = Capture::default();
    let _default = tracing::subscriber::set_default(capture.subscriber());
    let mut ledger = Ledger::default();
    assert_eq!(ledger.deposit(10), Ok(10));
    assert!(ledger.deposit(-1).is_err());
    assert_eq!(ledger.balance(), 10);
    assert_eq!(ledger.settle().await, 10);
    ledger.balance = 3;
    assert_eq!(ledger.close(), 3);
    expect("shape_mut_self_total", 1, 1, 0, 0);
    expect("shape_ref_self_total", 1, 0, 0, 0);
    expect("shape_self_total", 1, 0, 0, 0);
    expect("shape_async_self_total", 1, 0, 0, 0);

    let balance = capture.span("ledger.balance");
    assert_eq!(
        balance.fields["self"], "Ledger { balance: 10 }",
        "self recorded with Debug"
    );
    let deposits: Vec<_> = capture
        .spans()
        .into_iter()
        .filter(|s| s.name == "ledger.deposit")
        .collect();
    assert!(!deposits[0].fields.contains_key("self"), "skip(self)");
    assert_eq!(deposits[0].fields["amount"], "10");
    assert!(capture.span("ledger.settle").fields.is_empty(), "skip_all");
}

// ------------------------------------------------- generics and impl Trait

#[instrumented(span = "shape.generic", counter = "shape_generic_total")]
fn largest<T: PartialOrd + Copy + std::fmt::Debug>(items: &[T]) -> Option<T> {
    items.iter().copied().fold(None, |m, x| match m {
        Some(m) if m >= x => Some(m),
        _ => Some(x),
    })
}

#[instrumented(span = "shape.impl_trait", counter = "shape_impl_trait_total")]
fn evens(limit: u32) -> impl Iterator<Item = u32> {
    (0..limit).filter(|n| n % 2 == 0)
}

#[instrumented(
    span = "shape.impl_trait.result",
    counter = "shape_impl_trait_result_total"
)]
fn checked_evens(limit: u32) -> Result<impl Iterator<Item = u32>, String> {
    if limit > 100 {
        return Err("too many".into());
    }
    Ok((0..limit).filter(|n| n % 2 == 0))
}

#[test]
fn generic_functions_share_one_call_site() {
    install_recorder();
    assert_eq!(largest(&[1, 5, 3]), Some(5));
    assert_eq!(largest(&[1.5, 0.5]), Some(1.5));
    assert_eq!(largest::<u8>(&[]), None);
    expect("shape_generic_total", 3, 0, 0, 0);
    assert_eq!(
        series_of("shape_generic_total").len(),
        4,
        "one series per outcome, all instantiations"
    );
}

#[test]
fn impl_trait_returns() {
    install_recorder();
    assert_eq!(evens(7).collect::<Vec<_>>(), vec![0, 2, 4, 6]);
    expect("shape_impl_trait_total", 1, 0, 0, 0);
    assert_eq!(checked_evens(5).unwrap().count(), 3);
    assert!(checked_evens(500).is_err());
    expect("shape_impl_trait_result_total", 1, 1, 0, 0);
}

// -------------------------------------------- async fn in traits, async_trait

trait Executor {
    async fn run(&self, fuel: u64) -> Result<u64, String>;
}

#[derive(Debug)]
struct Wasm;

impl Executor for Wasm {
    #[instrumented(span = "wasm.execute", counter = "shape_trait_async_total")]
    async fn run(&self, fuel: u64) -> Result<u64, String> {
        tokio::task::yield_now().await;
        if fuel == 0 {
            return Err("out of fuel".into());
        }
        Ok(fuel - 1)
    }
}

#[async_trait::async_trait]
trait Payments {
    async fn pay(&self, amount: u64) -> Result<u64, String>;
    async fn ping(&self);
}

struct Channel {
    id: u32,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "channel-{}", self.id)
    }
}

// `#[async_trait]` goes on the impl block and `#[instrumented]` on the method: the
// impl attribute expands first and the macro instruments the boxed future.
#[async_trait::async_trait]
impl Payments for Channel {
    #[instrumented(
        span = "payment.send",
        counter = "shape_async_trait_total",
        in_flight = "shape_async_trait_in_flight"
    )]
    async fn pay(&self, amount: u64) -> Result<u64, String> {
        tokio::task::yield_now().await;
        if amount == 0 {
            return Err("zero payment".into());
        }
        Ok(amount + u64::from(self.id))
    }

    #[instrumented(span = "payment.ping", counter = "shape_async_trait_unit_total")]
    async fn ping(&self) {
        tracing::info!("pong");
    }
}

#[tokio::test]
async fn native_async_fn_in_trait() {
    install_recorder();
    let capture = Capture::default();
    let _default = tracing::subscriber::set_default(capture.subscriber());
    assert_eq!(Wasm.run(3).await, Ok(2));
    assert!(Wasm.run(0).await.is_err());
    expect("shape_trait_async_total", 1, 1, 0, 0);
    assert_eq!(
        capture
            .spans()
            .iter()
            .filter(|s| s.name == "wasm.execute")
            .count(),
        2
    );
}

#[tokio::test]
async fn async_trait_methods() {
    install_recorder();
    let capture = Capture::default();
    let _default = tracing::subscriber::set_default(capture.subscriber());
    let channel = Channel { id: 1 };
    assert_eq!(channel.pay(5).await, Ok(6));
    assert!(channel.pay(0).await.is_err());
    {
        let mut fut = channel.pay(9);
        assert!(poll_once(fut.as_mut()).is_pending());
        assert_eq!(gauge("shape_async_trait_in_flight", &[]), Some(1.0));
    }
    channel.ping().await;
    expect("shape_async_trait_total", 1, 1, 0, 1);
    expect("shape_async_trait_unit_total", 1, 0, 0, 0);
    assert_eq!(gauge("shape_async_trait_in_flight", &[]), Some(0.0));
    let spans: Vec<_> = capture
        .spans()
        .into_iter()
        .filter(|s| s.name == "payment.send")
        .collect();
    assert_eq!(spans.len(), 3);
    assert_eq!(spans[0].fields["amount"], "5");
    assert_eq!(spans[0].fields["self"], "channel-1");
    let pong = capture
        .events()
        .into_iter()
        .find(|e| e.fields.get("message").map(String::as_str) == Some("pong"));
    assert_eq!(pong.and_then(|e| e.span).as_deref(), Some("payment.ping"));
}

// ----------------------------------------- 1,000 concurrently cancelled futures

#[instrumented(counter = "shape_cancel_total", in_flight = "shape_cancel_in_flight")]
async fn wait_forever(i: usize) -> usize {
    std::future::pending::<()>().await;
    i
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrently_cancelled_futures_leave_in_flight_at_zero() {
    install_recorder();
    let (started_tx, mut started_rx) = tokio::sync::mpsc::channel::<()>(1000);
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let started = started_tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut fut = pin!(wait_forever(i));
            // Poll once so the call has started, then report and wait to be aborted.
            assert!(futures::poll!(fut.as_mut()).is_pending());
            started.send(()).await.expect("receiver alive");
            fut.await
        }));
    }
    for _ in 0..1000 {
        tokio::time::timeout(std::time::Duration::from_secs(30), started_rx.recv())
            .await
            .expect("all tasks start in time");
    }
    assert_eq!(gauge("shape_cancel_in_flight", &[]), Some(1000.0));
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        assert!(task.await.expect_err("aborted").is_cancelled());
    }
    assert_eq!(gauge("shape_cancel_in_flight", &[]), Some(0.0));
    expect("shape_cancel_total", 0, 0, 0, 1000);
}
