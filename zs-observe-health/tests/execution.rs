//! How checks run: timeouts, panics, single-flight caching and background refresh.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client, counting, get, hanging, serve};
use zs_observe_health::{check_fn, CheckResult, CheckSpec, HealthRegistry, Probe, Status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_check_fails_within_its_timeout() {
    let timeout = Duration::from_millis(200);
    let runs = Arc::new(AtomicUsize::new(0));
    let registry = HealthRegistry::builder()
        .with_cache_ttl(Duration::ZERO)
        .with_check(CheckSpec::readiness("peer:sync", hanging()).with_timeout(timeout))
        .with_readiness_check("db", counting(Status::Pass, runs.clone()))
        .build()
        .unwrap();
    let addr = serve(&registry).await;
    let http = client();
    for round in 0..2 {
        let start = Instant::now();
        let answer = get(&http, addr, "/health/ready").await;
        let took = start.elapsed();
        assert_eq!((answer.code, answer.status()), (503, "fail"), "{answer:?}");
        assert!(
            took >= timeout && took < timeout + Duration::from_millis(400),
            "round {round}: answered in {took:?}"
        );
        let peer = answer.check("peer:sync");
        assert_eq!(peer["status"], "fail");
        assert!(
            peer["output"]
                .as_str()
                .unwrap()
                .contains("timed out after 200ms"),
            "{peer}"
        );
        assert_eq!(
            answer.check("db")["status"],
            "pass",
            "other checks unaffected"
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_background_refresh_probes_do_not_wait_on_a_hanging_check() {
    let registry = HealthRegistry::builder()
        .with_refresh_interval(Duration::from_millis(100))
        .with_check(
            CheckSpec::readiness("peer:sync", hanging()).with_timeout(Duration::from_millis(300)),
        )
        .with_readiness_check("db", check_fn(|| async { CheckResult::pass() }))
        .build()
        .unwrap();
    let addr = serve(&registry).await;
    let http = client();
    // The first answer waits for the first run (bounded by the timeout)...
    let first = get(&http, addr, "/health/ready").await;
    assert_eq!(first.code, 503);
    // ...then a hanging run is always in flight, and probes read the last result at once.
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let start = Instant::now();
        let answer = get(&http, addr, "/health/ready").await;
        slowest = slowest.max(start.elapsed());
        assert_eq!(answer.code, 503);
        assert_eq!(answer.check("db")["status"], "pass");
    }
    assert!(
        slowest < Duration::from_millis(100),
        "slowest probe {slowest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_check_fails_and_the_server_keeps_serving() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let registry = HealthRegistry::builder()
        .with_cache_ttl(Duration::ZERO)
        .with_readiness_check(
            "cache",
            check_fn(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::task::yield_now().await;
                    if n < 2 {
                        panic!("cache client poisoned (call {n})");
                    }
                    CheckResult::pass()
                }
            }),
        )
        // Panics in the closure itself, before any future exists.
        .with_check(
            CheckSpec::readiness(
                "eager",
                check_fn(|| -> futures::future::Ready<CheckResult> { panic!("eager boom") }),
            )
            .with_critical(false),
        )
        .build()
        .unwrap();
    let addr = serve(&registry).await;
    let http = client();
    for call in 0..2 {
        let answer = get(&http, addr, "/health/ready").await;
        assert_eq!((answer.code, answer.status()), (503, "fail"), "{answer:?}");
        let output = answer.check("cache")["output"].as_str().unwrap().to_owned();
        assert!(output.contains("panicked"), "{output}");
        assert!(output.contains(&format!("(call {call})")), "{output}");
        let eager = answer.check("eager");
        assert_eq!(eager["status"], "fail");
        assert!(eager["output"].as_str().unwrap().contains("eager boom"));
    }
    // The third run passes: the panics left nothing behind; the eager one only warns.
    let answer = get(&http, addr, "/health/ready").await;
    assert_eq!((answer.code, answer.status()), (200, "warn"), "{answer:?}");
    assert_eq!(answer.check("cache")["status"], "pass");
    assert_eq!(get(&http, addr, "/health/live").await.code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_runs_each_check_once_per_ttl() {
    let ttl = Duration::from_millis(1500);
    let slow_runs = Arc::new(AtomicUsize::new(0));
    let fast_runs = Arc::new(AtomicUsize::new(0));
    let counter = slow_runs.clone();
    let registry = HealthRegistry::builder()
        .with_cache_ttl(ttl)
        .with_readiness_check(
            "db",
            check_fn(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async {
                    // Slow enough that the burst arrives while the run is in flight.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    CheckResult::pass()
                }
            }),
        )
        .with_readiness_check("queue", counting(Status::Pass, fast_runs.clone()))
        .build()
        .unwrap();
    let addr = serve(&registry).await;
    let http = client();

    for (round, expected) in [(0, 1), (1, 2)] {
        let burst = (0..200).map(|_| get(&http, addr, "/health/ready"));
        let answers = futures::future::join_all(burst).await;
        assert!(answers.iter().all(|a| a.code == 200), "round {round}");
        // In round 1 the burst is answered from the stale result while one run refreshes
        // it in the background: wait (bounded) for that run to be counted.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while slow_runs.load(Ordering::SeqCst) < expected && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await; // let the run finish
        assert_eq!(slow_runs.load(Ordering::SeqCst), expected, "round {round}");
        assert_eq!(fast_runs.load(Ordering::SeqCst), expected, "round {round}");
        // Within the TTL the result is reused...
        get(&http, addr, "/health/ready").await;
        assert_eq!(slow_runs.load(Ordering::SeqCst), expected, "round {round}");
        // ...and after it, the next probe runs the checks again.
        tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_background_refresh_probes_never_run_checks() {
    let runs = Arc::new(AtomicUsize::new(0));
    let registry = HealthRegistry::builder()
        .with_refresh_interval(Duration::from_secs(3600))
        .with_readiness_check("db", counting(Status::Pass, runs.clone()))
        .build()
        .unwrap();
    let addr = serve(&registry).await;
    let http = client();
    for _ in 0..50 {
        assert_eq!(get(&http, addr, "/health/ready").await.code, 200);
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "only the background task's first tick ran the check"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_task_refreshes_and_stops_with_the_registry() {
    let runs = Arc::new(AtomicUsize::new(0));
    let registry = HealthRegistry::builder()
        .with_refresh_interval(Duration::from_millis(20))
        .with_readiness_check("db", counting(Status::Pass, runs.clone()))
        .build()
        .unwrap();
    // Bounded wait for a few refreshes.
    let deadline = Instant::now() + Duration::from_secs(5);
    while runs.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        runs.load(Ordering::SeqCst) >= 3,
        "refreshed in the background"
    );
    let report = registry.report(Probe::Ready).await;
    assert_eq!(report.status(), Status::Pass);
    drop(registry);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after_drop = runs.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        after_drop,
        "stopped after drop"
    );
}

#[tokio::test]
async fn refresh_runs_everything_now() {
    let runs = Arc::new(AtomicUsize::new(0));
    let registry = HealthRegistry::builder()
        .with_cache_ttl(Duration::from_secs(3600))
        .with_readiness_check("db", counting(Status::Pass, runs.clone()))
        .build()
        .unwrap();
    registry.report(Probe::Ready).await;
    registry.report(Probe::Ready).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let report = registry.refresh().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let entry = report.entry("db").unwrap();
    assert_eq!(entry.outcome().result().status(), Status::Pass);
    assert_eq!(entry.meta().timeout(), zs_observe_health::DEFAULT_TIMEOUT);
}
