//! Startup gating and draining.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client, counting, get, serve, switchable};
use zs_observe_health::{drain_on, CheckSpec, HealthRegistry, Status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_fails_readiness_and_keeps_liveness() {
    let runs = Arc::new(AtomicUsize::new(0));
    let registry = HealthRegistry::builder()
        .with_liveness_check("runtime", counting(Status::Pass, Arc::default()))
        .with_readiness_check("db", counting(Status::Pass, runs.clone()))
        .build()
        .unwrap();
    let addr = serve(&registry).await;
    let http = client();
    assert_eq!(get(&http, addr, "/health/ready").await.code, 200);
    assert!(!registry.is_draining());

    registry.clone().drain();
    assert!(registry.is_draining());
    for path in ["/health/ready", "/readyz"] {
        let ready = get(&http, addr, path).await;
        assert_eq!((ready.code, ready.status()), (503, "fail"), "{path}");
        assert!(ready.json["output"]
            .as_str()
            .unwrap()
            .starts_with("draining"));
    }
    for path in ["/health/live", "/healthz"] {
        let live = get(&http, addr, path).await;
        assert_eq!((live.code, live.status()), (200, "pass"), "{path}");
    }
    let detail = get(&http, addr, "/health/detail").await;
    assert_eq!(
        (detail.code, detail.json["draining"].as_bool()),
        (503, Some(true))
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "a draining probe runs no check"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_gates_readiness_until_it_passes_once() {
    let startup = Arc::new(AtomicUsize::new(0)); // 0 fail, 2 pass
    let ready = Arc::new(AtomicUsize::new(2));
    let startup_runs = Arc::new(AtomicUsize::new(0));
    let counted = {
        let state = startup.clone();
        let runs = startup_runs.clone();
        zs_observe_health::check_fn(move || {
            runs.fetch_add(1, Ordering::SeqCst);
            let pass = state.load(Ordering::SeqCst) == 2;
            async move {
                if pass {
                    zs_observe_health::CheckResult::pass()
                } else {
                    zs_observe_health::CheckResult::fail("migrations running")
                }
            }
        })
    };
    let registry = HealthRegistry::builder()
        .with_cache_ttl(Duration::ZERO)
        .with_startup_check("db:migrations", counted)
        // A failing non-critical startup check does not gate readiness.
        .with_check(
            CheckSpec::startup("warmup", switchable(Arc::new(AtomicUsize::new(0))))
                .with_critical(false),
        )
        .with_readiness_check("db", switchable(ready.clone()))
        .build()
        .unwrap();
    let addr = serve(&registry).await;
    let http = client();

    let answer = get(&http, addr, "/health/ready").await;
    assert_eq!(answer.code, 503, "{answer:?}");
    let output = answer.json["output"].as_str().unwrap();
    assert!(
        output.contains("startup") && output.contains("db:migrations"),
        "{output}"
    );
    assert!(!output.contains("warmup"), "{output}");
    assert_eq!(answer.check("db:migrations")["status"], "fail");
    assert!(
        answer.json["checks"].get("db").is_none(),
        "readiness not run yet"
    );
    assert_eq!(get(&http, addr, "/health/startup").await.code, 503);
    assert!(!registry.startup_complete());

    // Startup passes once...
    startup.store(2, Ordering::SeqCst);
    let answer = get(&http, addr, "/health/ready").await;
    assert_eq!((answer.code, answer.status()), (200, "pass"), "{answer:?}");
    assert!(registry.startup_complete());
    let runs_at_completion = startup_runs.load(Ordering::SeqCst);

    // ...and from then on readiness follows the readiness checks, not startup.
    startup.store(0, Ordering::SeqCst);
    ready.store(0, Ordering::SeqCst);
    assert_eq!(get(&http, addr, "/health/ready").await.code, 503);
    ready.store(1, Ordering::SeqCst);
    let answer = get(&http, addr, "/health/ready").await;
    assert_eq!((answer.code, answer.status()), (200, "warn"));
    let startup_answer = get(&http, addr, "/health/startup").await;
    assert_eq!(
        startup_answer.check("db:migrations")["status"],
        "pass",
        "latched"
    );
    assert_eq!(
        startup_answer.status(),
        "warn",
        "warmup still failing, non-critical"
    );
    assert_eq!(
        startup_runs.load(Ordering::SeqCst),
        runs_at_completion,
        "a passed startup check is not run again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_on_drains_then_waits_the_grace_period() {
    let registry = HealthRegistry::builder().build().unwrap();
    let addr = serve(&registry).await;
    let http = client();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let grace = Duration::from_millis(300);
    let shutdown = tokio::spawn(drain_on(registry.clone(), rx, grace));
    assert_eq!(get(&http, addr, "/health/ready").await.code, 200);

    let signalled = Instant::now();
    tx.send(()).unwrap();
    // Bounded wait for the drain to take effect.
    let mut code = 200;
    for _ in 0..100 {
        code = get(&http, addr, "/health/ready").await.code;
        if code == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(code, 503);
    assert_eq!(get(&http, addr, "/health/live").await.code, 200);
    assert!(!shutdown.is_finished(), "still in the grace period");
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .unwrap()
        .unwrap();
    assert!(signalled.elapsed() >= grace);
}
