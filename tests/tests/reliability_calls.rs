//! Reliability under concurrency, against the real runtime (`Telemetry`, its
//! registry and its HTTP exposition on 127.0.0.1):
//!
//! - every exit path of 10,000 concurrent `#[instrumented]` calls (async on a
//!   multi-thread runtime and sync on threads; ok, error, panic, and cancellation
//!   by abort, timeout, `select!` and drop) is counted exactly once under its
//!   outcome, the histogram agrees with the counter, and the in-flight gauge comes
//!   back to its start value;
//! - 100 concurrent `/metrics` scrapers during a call load see no HTTP error, no
//!   counter going down between their consecutive scrapes, and in every scrape
//!   histograms whose `_count` equals the `+Inf` bucket and whose buckets are
//!   cumulative.
//!
//! The two tests share the process's runtime and use distinct metric names.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::watch;
use zs_observe::{instrumented, Telemetry};
use zs_observe_tests::scrape::{self, Scrape};

/// The payload of every panic these tests provoke; the panic hook keeps them quiet
/// (and prints any other panic as usual).
const PLANNED: &str = "planned panic (reliability test)";

fn telemetry() -> &'static Telemetry {
    static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();
    TELEMETRY.get_or_init(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if msg != Some(PLANNED) {
                default_hook(info);
            }
        }));
        Telemetry::builder()
            .with_service_name("reliability")
            .with_namespace("rel")
            .with_subscriber(false)
            .with_admin_listener("127.0.0.1:0".parse().expect("address"))
            .install()
            .expect("runtime installs")
    })
}

fn render() -> Scrape {
    let body = telemetry().render();
    scrape::parse(&body).unwrap_or_else(|e| panic!("exposition does not parse: {e}\n{body}"))
}

/// A small deterministic generator (splitmix64), so a failing plan can be replayed
/// from its printed seed (`REL_SEED=<n>`).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    match std::env::var("REL_SEED") {
        Ok(s) => s.parse().expect("REL_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as u64,
    }
}

// ---------------------------------------------------------------------------
// 1. Exit paths under concurrency
// ---------------------------------------------------------------------------

/// What a call does once released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ok,
    Error,
    Panic,
    /// Never completes; the caller drops it.
    Hang,
}

/// How an async call is driven, and so how it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Driver {
    /// A spawned task awaiting the call (a panic ends the task: `JoinError::is_panic`).
    Task,
    /// `FutureExt::catch_unwind` in the task: the panic is caught, the future dropped later.
    CatchUnwind,
    /// `JoinHandle::abort` of the task awaiting the call.
    Abort,
    /// Polled once, then `tokio::time::timeout` gives up on it.
    Timeout,
    /// A `select!` whose other branch wins.
    Select,
    /// Polled once by hand, then dropped.
    DropAfterPoll,
}

/// The outcome label values, in the order of the expected-count arrays.
const OUTCOMES: [&str; 4] = ["ok", "error", "panic", "cancelled"];

#[derive(Clone, Copy, Debug)]
enum Planned {
    Sync(Kind),
    Async(Kind, Driver),
}

impl Planned {
    /// The index into [`OUTCOMES`] this call must be counted under.
    fn outcome(self) -> usize {
        match self {
            Planned::Sync(Kind::Ok) | Planned::Async(Kind::Ok, _) => 0,
            Planned::Sync(Kind::Error) | Planned::Async(Kind::Error, _) => 1,
            Planned::Sync(Kind::Panic) | Planned::Async(Kind::Panic, _) => 2,
            Planned::Async(Kind::Hang, _) => 3,
            Planned::Sync(Kind::Hang) => unreachable!("sync calls cannot be cancelled"),
        }
    }
}

fn plan(rng: &mut Rng, calls: usize) -> Vec<Planned> {
    (0..calls)
        .map(|_| {
            if rng.below(10) < 3 {
                Planned::Sync([Kind::Ok, Kind::Error, Kind::Panic][rng.below(3) as usize])
            } else {
                match rng.below(4) {
                    0 => Planned::Async(Kind::Ok, Driver::Task),
                    1 => Planned::Async(Kind::Error, Driver::Task),
                    2 => Planned::Async(
                        Kind::Panic,
                        [Driver::Task, Driver::CatchUnwind][rng.below(2) as usize],
                    ),
                    _ => Planned::Async(
                        Kind::Hang,
                        [
                            Driver::Abort,
                            Driver::Timeout,
                            Driver::Select,
                            Driver::DropAfterPoll,
                        ][rng.below(4) as usize],
                    ),
                }
            }
        })
        .collect()
}

fn parse_fails() -> Result<u32, String> {
    "not a number".parse::<u32>().map_err(|e| e.to_string())
}

/// Counts its start, waits for the gate (so every call is in flight at once),
/// then ends as `kind` says; `Err` leaves through `?`.
#[instrumented(
    span = false,
    counter = "rel_exit_async_calls_total",
    histogram = "rel_exit_async_call_duration_seconds",
    in_flight = "rel_exit_async_calls_in_flight"
)]
async fn async_call(
    kind: Kind,
    mut gate: watch::Receiver<bool>,
    started: Arc<AtomicUsize>,
) -> Result<u32, String> {
    started.fetch_add(1, Ordering::SeqCst);
    gate.wait_for(|open| *open)
        .await
        .map_err(|_| "gate dropped".to_string())?;
    match kind {
        Kind::Ok => Ok(1),
        Kind::Error => {
            let n = parse_fails()?;
            Ok(n)
        }
        Kind::Panic => std::panic::panic_any(PLANNED),
        Kind::Hang => {
            std::future::pending::<()>().await;
            unreachable!("pending never completes")
        }
    }
}

#[instrumented(
    span = false,
    counter = "rel_exit_sync_calls_total",
    histogram = "rel_exit_sync_call_duration_seconds",
    in_flight = "rel_exit_sync_calls_in_flight"
)]
fn sync_call(kind: Kind) -> Result<u32, String> {
    match kind {
        Kind::Ok => Ok(1),
        Kind::Error => {
            let n = parse_fails()?;
            Ok(n)
        }
        Kind::Panic => std::panic::panic_any(PLANNED),
        Kind::Hang => unreachable!("sync calls are not cancelled"),
    }
}

/// Counter and histogram `_count` per outcome, and the in-flight gauge, of `prefix`.
fn exit_state(s: &Scrape, prefix: &str) -> ([f64; 4], [f64; 4], f64) {
    let counters = OUTCOMES.map(|o| s.sum_of(&format!("{prefix}_calls_total"), &[("outcome", o)]));
    let counts = OUTCOMES.map(|o| {
        s.sum_of(
            &format!("{prefix}_call_duration_seconds_count"),
            &[("outcome", o)],
        )
    });
    let in_flight = s.sum_of(&format!("{prefix}_calls_in_flight"), &[]);
    (counters, counts, in_flight)
}

/// Polls `done` every 2 ms until it holds, at most `limit`.
async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_concurrent_calls_count_every_exit_path_exactly() {
    const CALLS: usize = 10_000;
    const SYNC_THREADS: usize = 4;
    let seed = seed();
    println!("plan seed {seed} (replay with REL_SEED={seed})");
    let plan = plan(&mut Rng(seed), CALLS);

    let mut expected_async = [0u64; 4];
    let mut expected_sync = [0u64; 4];
    for p in &plan {
        match p {
            Planned::Sync(_) => expected_sync[p.outcome()] += 1,
            Planned::Async(..) => expected_async[p.outcome()] += 1,
        }
    }
    let n_async: u64 = expected_async.iter().sum();
    println!("expected async {expected_async:?}, sync {expected_sync:?}");
    // Every outcome of every mode occurs (with 10,000 calls the chance that one
    // does not is below 1e-100).
    assert!(expected_async.iter().all(|&n| n > 0) && expected_sync[..3].iter().all(|&n| n > 0));

    let before = render();
    let (a_counters0, a_counts0, a_flight0) = exit_state(&before, "rel_exit_async");
    let (s_counters0, s_counts0, s_flight0) = exit_state(&before, "rel_exit_sync");

    let (gate_tx, gate_rx) = watch::channel(false);
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let started = Arc::new(AtomicUsize::new(0));

    // Futures dropped before their first poll never started: they record nothing.
    for _ in 0..100 {
        drop(async_call(Kind::Ok, gate_rx.clone(), started.clone()));
    }

    // Sync calls on threads, released together once every async call is in flight.
    let barrier = Arc::new(Barrier::new(SYNC_THREADS + 1));
    let sync_kinds: Vec<Kind> = plan
        .iter()
        .filter_map(|p| match p {
            Planned::Sync(k) => Some(*k),
            Planned::Async(..) => None,
        })
        .collect();
    let threads: Vec<_> = (0..SYNC_THREADS)
        .map(|t| {
            let kinds: Vec<Kind> = sync_kinds
                .iter()
                .copied()
                .skip(t)
                .step_by(SYNC_THREADS)
                .collect();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let mut seen = [0u64; 4];
                for kind in kinds {
                    match std::panic::catch_unwind(|| sync_call(kind)) {
                        Ok(Ok(_)) => seen[0] += 1,
                        Ok(Err(_)) => seen[1] += 1,
                        Err(_) => seen[2] += 1,
                    }
                }
                seen
            })
        })
        .collect();

    // Async calls: one task each, driven as planned. Each task reports the outcome
    // it observed (index into OUTCOMES), or the join error tells it.
    let mut tasks = Vec::new();
    let mut aborts = Vec::new();
    for p in &plan {
        let Planned::Async(kind, driver) = *p else {
            continue;
        };
        let (gate, started, mut cancel) = (gate_rx.clone(), started.clone(), cancel_rx.clone());
        let handle = match driver {
            Driver::Task | Driver::Abort => tokio::spawn(async move {
                match async_call(kind, gate, started).await {
                    Ok(_) => 0,
                    Err(_) => 1,
                }
            }),
            Driver::CatchUnwind => tokio::spawn(async move {
                match AssertUnwindSafe(async_call(kind, gate, started))
                    .catch_unwind()
                    .await
                {
                    Ok(Ok(_)) => 0,
                    Ok(Err(_)) => 1,
                    Err(_) => 2,
                }
            }),
            Driver::Timeout => tokio::spawn(async move {
                let mut call = Box::pin(async_call(kind, gate, started));
                assert!(futures::poll!(call.as_mut()).is_pending());
                let _ = cancel.wait_for(|c| *c).await;
                match tokio::time::timeout(Duration::from_millis(20), call.as_mut()).await {
                    Err(_elapsed) => 3,
                    Ok(r) => panic!("a hanging call completed: {r:?}"),
                }
            }),
            Driver::Select => tokio::spawn(async move {
                tokio::select! {
                    biased;
                    r = async_call(kind, gate, started) => panic!("a hanging call completed: {r:?}"),
                    _ = cancel.wait_for(|c| *c) => 3,
                }
            }),
            Driver::DropAfterPoll => tokio::spawn(async move {
                let mut call = Box::pin(async_call(kind, gate, started));
                assert!(futures::poll!(call.as_mut()).is_pending());
                let _ = cancel.wait_for(|c| *c).await;
                drop(call);
                3
            }),
        };
        if driver == Driver::Abort {
            aborts.push(handle);
        } else {
            tasks.push(handle);
        }
    }

    let started_ref = started.clone();
    wait_until(Duration::from_secs(60), "every async call started", || {
        started_ref.load(Ordering::SeqCst) as u64 == n_async
    })
    .await;
    // All async calls are in flight at once: the gauge says so.
    let (_, _, a_flight_mid) = exit_state(&render(), "rel_exit_async");
    assert_eq!(
        a_flight_mid - a_flight0,
        n_async as f64,
        "in-flight gauge while every async call waits"
    );

    // Release everything at once: sync threads, the gate, the cancellations.
    let barrier_wait = barrier.clone();
    let release = tokio::task::spawn_blocking(move || barrier_wait.wait());
    gate_tx.send(true).expect("gate open");
    cancel_tx.send(true).expect("cancel sent");
    for handle in &aborts {
        handle.abort();
    }
    release.await.expect("barrier");

    let mut seen_async = [0u64; 4];
    let joined = tokio::time::timeout(Duration::from_secs(60), async {
        for handle in tasks.into_iter().chain(aborts) {
            match handle.await {
                Ok(i) => seen_async[i] += 1,
                Err(e) if e.is_panic() => seen_async[2] += 1,
                Err(e) if e.is_cancelled() => seen_async[3] += 1,
                Err(e) => panic!("task failed: {e}"),
            }
        }
    })
    .await;
    assert!(joined.is_ok(), "async calls did not finish within 60 s");
    let mut seen_sync = [0u64; 4];
    let sync_seen = tokio::task::spawn_blocking(move || {
        threads
            .into_iter()
            .map(|t| t.join().expect("sync thread"))
            .collect::<Vec<_>>()
    })
    .await
    .expect("join sync threads");
    for seen in sync_seen {
        for (total, n) in seen_sync.iter_mut().zip(seen) {
            *total += n;
        }
    }
    // The harness did what the plan says (so the metrics below are compared with
    // what really happened).
    assert_eq!(
        seen_async, expected_async,
        "async outcomes observed by the caller"
    );
    assert_eq!(
        seen_sync, expected_sync,
        "sync outcomes observed by the caller"
    );

    let after = render();
    for (prefix, expected, counters0, counts0, flight0) in [
        (
            "rel_exit_async",
            expected_async,
            a_counters0,
            a_counts0,
            a_flight0,
        ),
        (
            "rel_exit_sync",
            expected_sync,
            s_counters0,
            s_counts0,
            s_flight0,
        ),
    ] {
        let (counters, counts, flight) = exit_state(&after, prefix);
        let delta = |now: [f64; 4], then: [f64; 4]| -> [u64; 4] {
            std::array::from_fn(|i| (now[i] - then[i]) as u64)
        };
        assert_eq!(
            delta(counters, counters0),
            expected,
            "{prefix}: counter per outcome {OUTCOMES:?}"
        );
        assert_eq!(
            delta(counts, counts0),
            expected,
            "{prefix}: histogram _count per outcome {OUTCOMES:?}"
        );
        assert_eq!(
            flight, flight0,
            "{prefix}: in-flight gauge back to its start"
        );
        // The series of every outcome exist (a zero is a series at zero).
        for o in OUTCOMES {
            assert!(
                after.has(&format!("{prefix}_calls_total"), &[("outcome", o)]),
                "{prefix}: no series for outcome {o}"
            );
        }
    }
    let violations = after.histogram_violations();
    assert!(violations.is_empty(), "{violations:#?}");
}

// ---------------------------------------------------------------------------
// 4. Scrape load
// ---------------------------------------------------------------------------

const KINDS: [&str; 5] = ["gossip", "request", "reply", "ping", "sync"];

#[instrumented(
    span = false,
    counter = "rel_load_calls_total",
    histogram = "rel_load_call_duration_seconds",
    in_flight = "rel_load_calls_in_flight",
    labels(worker = "static")
)]
fn load_call(i: u64) -> Result<u64, String> {
    if i % 7 == 0 {
        Err(format!("call {i} refused"))
    } else {
        Ok(i)
    }
}

/// Per-call label values: series are created while scrapers read.
#[instrumented(
    span = false,
    counter = "rel_load_messages_total",
    histogram = "rel_load_message_duration_seconds",
    labels(kind = KINDS[(i % KINDS.len() as u64) as usize])
)]
fn load_message(i: u64) -> u64 {
    i
}

async fn serve_app() -> SocketAddr {
    zs_observe_tests::serve(telemetry().metrics_router()).await
}

/// What one scraper saw.
#[derive(Default)]
struct ScraperReport {
    problems: Vec<String>,
    latencies: Vec<Duration>,
    /// `rel_load_calls_total{outcome="ok"}` in each scrape.
    load_ok: Vec<f64>,
}

async fn scraper(id: usize, url: String, scrapes: usize) -> ScraperReport {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let mut report = ScraperReport::default();
    let mut previous: Option<Scrape> = None;
    for n in 0..scrapes {
        let t0 = Instant::now();
        let response = match client.get(&url).send().await {
            Ok(r) => r,
            Err(e) => {
                report.problems.push(format!("scraper {id} #{n}: {e}"));
                continue;
            }
        };
        let status = response.status();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = match response.text().await {
            Ok(b) => b,
            Err(e) => {
                report
                    .problems
                    .push(format!("scraper {id} #{n}: body: {e}"));
                continue;
            }
        };
        report.latencies.push(t0.elapsed());
        if status != reqwest::StatusCode::OK {
            report
                .problems
                .push(format!("scraper {id} #{n}: status {status}"));
            continue;
        }
        if content_type.as_deref() != Some(zs_observe::CONTENT_TYPE) {
            report
                .problems
                .push(format!("scraper {id} #{n}: content type {content_type:?}"));
        }
        let parsed = match scrape::parse(&body) {
            Ok(p) => p,
            Err(e) => {
                report.problems.push(format!("scraper {id} #{n}: {e}"));
                continue;
            }
        };
        report.problems.extend(
            parsed
                .histogram_violations()
                .into_iter()
                .map(|p| format!("scraper {id} #{n}: {p}")),
        );
        if let Some(prev) = &previous {
            report.problems.extend(
                parsed
                    .regressions_since(prev)
                    .into_iter()
                    .map(|p| format!("scraper {id} #{n}: {p}")),
            );
        }
        report
            .load_ok
            .push(parsed.sum_of("rel_load_calls_total", &[("outcome", "ok")]));
        previous = Some(parsed);
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_scrapers_during_call_load_see_consistent_expositions() {
    const SCRAPERS: usize = 100;
    const SCRAPES: usize = 10;
    const LOAD_THREADS: usize = 2;
    /// Each load thread stops at this many calls even if the scrapers are slow.
    const MAX_CALLS_PER_THREAD: u64 = 20_000_000;
    const BATCH: u64 = 500;

    let admin = telemetry().admin_addr().expect("admin listener configured");
    let app = serve_app().await;
    let before = render();
    let ok0 = before.sum_of("rel_load_calls_total", &[("outcome", "ok")]);
    let err0 = before.sum_of("rel_load_calls_total", &[("outcome", "error")]);
    let msg0 = before.sum_of("rel_load_messages_total", &[]);

    // The call load: a fixed maximum of calls per thread, stopped early once the
    // scrapers are done; every call is counted here to compare with the exposition.
    let stop = Arc::new(AtomicBool::new(false));
    let made_ok = Arc::new(AtomicU64::new(0));
    let made_err = Arc::new(AtomicU64::new(0));
    let made_msg = Arc::new(AtomicU64::new(0));
    let load: Vec<_> = (0..LOAD_THREADS)
        .map(|t| {
            let (stop, made_ok, made_err, made_msg) = (
                stop.clone(),
                made_ok.clone(),
                made_err.clone(),
                made_msg.clone(),
            );
            std::thread::spawn(move || {
                let (mut ok, mut err, mut msg) = (0u64, 0u64, 0u64);
                let mut i = 0u64;
                while i < MAX_CALLS_PER_THREAD && !stop.load(Ordering::Relaxed) {
                    // Batches with a pause, so the load spans the scrapes on 2 cores.
                    for _ in 0..BATCH {
                        if t == 0 {
                            load_message(i);
                            msg += 1;
                        } else if load_call(i).is_ok() {
                            ok += 1;
                        } else {
                            err += 1;
                        }
                        i += 1;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                made_ok.fetch_add(ok, Ordering::SeqCst);
                made_err.fetch_add(err, Ordering::SeqCst);
                made_msg.fetch_add(msg, Ordering::SeqCst);
                // Still running when told to stop: the load spanned every scrape.
                i < MAX_CALLS_PER_THREAD
            })
        })
        .collect();

    let t0 = Instant::now();
    let scrapers: Vec<_> = (0..SCRAPERS)
        .map(|id| {
            // Half on the runtime's admin listener, half on an application's server.
            let addr = if id % 2 == 0 { admin } else { app };
            tokio::spawn(scraper(id, format!("http://{addr}/metrics"), SCRAPES))
        })
        .collect();
    let mut reports = Vec::new();
    let joined = tokio::time::timeout(Duration::from_secs(120), async {
        for s in scrapers {
            reports.push(s.await.expect("scraper task"));
        }
    })
    .await;
    let scrape_time = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let load_joined = tokio::task::spawn_blocking(move || {
        load.into_iter()
            .map(|t| t.join().expect("load thread"))
            .collect::<Vec<bool>>()
    })
    .await;
    assert!(joined.is_ok(), "scrapers did not finish within 120 s");
    assert!(
        load_joined
            .expect("load threads")
            .into_iter()
            .all(|spanned| spanned),
        "a load thread reached its call bound before the scrapers finished"
    );

    let problems: Vec<&String> = reports.iter().flat_map(|r| &r.problems).collect();
    assert!(
        problems.is_empty(),
        "{} problems, first: {:#?}",
        problems.len(),
        &problems[..problems.len().min(20)]
    );
    let mut latencies: Vec<Duration> = reports.iter().flat_map(|r| r.latencies.clone()).collect();
    latencies.sort();
    assert_eq!(latencies.len(), SCRAPERS * SCRAPES, "every scrape answered");
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let (made_ok, made_err, made_msg) = (
        made_ok.load(Ordering::SeqCst),
        made_err.load(Ordering::SeqCst),
        made_msg.load(Ordering::SeqCst),
    );
    println!(
        "{} scrapes by {SCRAPERS} scrapers in {scrape_time:?}: latency p50 {:?}, p99 {:?}, max {:?}; \
         {} calls during the scrapes ({made_ok} ok, {made_err} error, {made_msg} messages)",
        latencies.len(),
        p(0.5),
        p(0.99),
        p(1.0),
        made_ok + made_err + made_msg
    );

    // The scrapes really happened during the load: some scraper saw the counter
    // strictly between its start and final values, and saw it move.
    let final_ok = ok0 + made_ok as f64;
    let mid = reports
        .iter()
        .flat_map(|r| &r.load_ok)
        .filter(|&&v| v > ok0 && v < final_ok)
        .count();
    assert!(
        mid > 0,
        "no scrape saw the load in progress (start {ok0}, final {final_ok})"
    );
    assert!(
        reports.iter().any(|r| r.load_ok.first() < r.load_ok.last()),
        "no scraper saw the counter move"
    );

    // What one scrape costs the server, without the load and the other scrapers.
    let t_render = Instant::now();
    let mut lines = 0;
    for _ in 0..100 {
        lines = telemetry().render().lines().count();
    }
    println!(
        "render alone: {:?} per scrape of {lines} lines",
        t_render.elapsed() / 100
    );

    // Nothing lost: the final exposition has exactly the calls made.
    let after = render();
    assert_eq!(
        after.sum_of("rel_load_calls_total", &[("outcome", "ok")]) - ok0,
        made_ok as f64
    );
    assert_eq!(
        after.sum_of("rel_load_calls_total", &[("outcome", "error")]) - err0,
        made_err as f64
    );
    assert_eq!(
        after.sum_of("rel_load_calls_total", &[]),
        after.sum_of("rel_load_call_duration_seconds_count", &[]),
        "histogram _count equals the counter"
    );
    assert_eq!(
        after.sum_of("rel_load_messages_total", &[]) - msg0,
        made_msg as f64
    );
    for kind in KINDS {
        assert!(
            after.has("rel_load_messages_total", &[("kind", kind)]),
            "series for kind {kind}"
        );
    }
    assert_eq!(
        after.sum_of("rel_load_calls_in_flight", &[]),
        0.0,
        "in-flight gauge back to zero"
    );
}
