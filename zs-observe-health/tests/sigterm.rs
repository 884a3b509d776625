//! `shutdown_signal` drains on a real SIGTERM sent to this test process (its own binary, so the
//! signal reaches no other test).

#![cfg(unix)]

mod common;

use std::time::Duration;

use common::{client, get, serve};
use zs_observe_health::{shutdown_signal, HealthRegistry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_then_returns() {
    let registry = HealthRegistry::builder().build().unwrap();
    let addr = serve(&registry).await;
    let http = client();
    let grace = Duration::from_millis(200);
    let shutdown = tokio::spawn(shutdown_signal(registry.clone(), grace));
    // Let the task install its handlers; without them SIGTERM would end this process (and fail
    // the test run).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!shutdown.is_finished());
    assert_eq!(get(&http, addr, "/health/ready").await.code, 200);

    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("kill -TERM {}", std::process::id()))
        .status()
        .unwrap();
    assert!(status.success());

    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("shutdown_signal returned after SIGTERM and the grace period")
        .unwrap();
    assert!(registry.is_draining());
    assert_eq!(get(&http, addr, "/health/ready").await.code, 503);
    assert_eq!(get(&http, addr, "/health/live").await.code, 200);
}
