//! Aggregation, status codes, routes and the `application/health+json` body, through the real
//! router on 127.0.0.1:0 and a real client.

mod common;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{client, counting, get, serve};
use zs_observe_health::{check_fn, CheckResult, CheckSpec, HealthRegistry, Status};

fn registry_with(readiness: Vec<CheckSpec>) -> HealthRegistry {
    let mut builder = HealthRegistry::builder()
        .with_namespace("test")
        .with_cache_ttl(Duration::ZERO);
    for spec in readiness {
        builder = builder.with_check(spec);
    }
    builder.build().unwrap()
}

fn ready_check(name: &str, status: Status, critical: bool) -> CheckSpec {
    let runs = Arc::new(AtomicUsize::new(0));
    CheckSpec::readiness(name, counting(status, runs)).with_critical(critical)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregation_and_status_codes() {
    use Status::{Fail, Pass, Warn};
    // (checks as (status, critical), expected aggregate, expected HTTP status)
    type Case = (Vec<(Status, bool)>, &'static str, u16);
    let cases: Vec<Case> = vec![
        (vec![], "pass", 200),
        (vec![(Pass, true), (Pass, false)], "pass", 200),
        (vec![(Pass, true), (Warn, true)], "warn", 200),
        (vec![(Pass, true), (Warn, false)], "warn", 200),
        (vec![(Pass, true), (Fail, false)], "warn", 200),
        (vec![(Warn, true), (Fail, false)], "warn", 200),
        (vec![(Pass, true), (Fail, true)], "fail", 503),
        (vec![(Warn, false), (Fail, true)], "fail", 503),
    ];
    let http = client();
    for (i, (checks, want_status, want_code)) in cases.into_iter().enumerate() {
        let specs = checks
            .iter()
            .enumerate()
            .map(|(j, (status, critical))| ready_check(&format!("dep{j}"), *status, *critical))
            .collect();
        let registry = registry_with(specs);
        let addr = serve(&registry).await;
        for path in ["/health/ready", "/readyz"] {
            let answer = get(&http, addr, path).await;
            assert_eq!(answer.status(), want_status, "case {i} {path}: {answer:?}");
            assert_eq!(answer.code, want_code, "case {i} {path}: {answer:?}");
        }
        // Each check keeps its own status in its entry, even when it only makes the whole warn.
        let answer = get(&http, addr, "/health/ready").await;
        for (j, (status, _)) in checks.iter().enumerate() {
            assert_eq!(answer.check(&format!("dep{j}"))["status"], status.as_str());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_endpoint_covers_its_kind() {
    let runs = || Arc::new(AtomicUsize::new(0));
    let registry = HealthRegistry::builder()
        .with_liveness_check("runtime", counting(Status::Pass, runs()))
        .with_readiness_check("db", counting(Status::Fail, runs()))
        .with_startup_check("migrations", counting(Status::Pass, runs()))
        .build()
        .unwrap();
    let addr = serve(&registry).await;
    let http = client();

    for path in ["/health/live", "/healthz"] {
        let live = get(&http, addr, path).await;
        assert_eq!((live.code, live.status()), (200, "pass"), "{path}");
        let keys: Vec<&String> = live.json["checks"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["runtime"], "{path} runs liveness checks only");
    }
    let startup = get(&http, addr, "/health/startup").await;
    assert_eq!((startup.code, startup.status()), (200, "pass"));
    assert!(startup.json["checks"].get("migrations").is_some());
    assert!(startup.json["checks"].get("db").is_none());

    let ready = get(&http, addr, "/health/ready").await;
    assert_eq!((ready.code, ready.status()), (503, "fail"));
    let keys: Vec<&String> = ready.json["checks"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["db"]);

    let detail = get(&http, addr, "/health/detail").await;
    assert_eq!(detail.code, 503);
    let mut keys: Vec<&String> = detail.json["checks"].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["db", "migrations", "runtime"]);

    let missing = http
        .get(format!("http://{addr}/health/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_shape() {
    let before = SystemTime::now() - Duration::from_secs(1);
    let registry = HealthRegistry::builder()
        .with_namespace("test")
        .with_service_id("zerostate-node")
        .with_version("1.2.3")
        .with_description("the ZeroState node")
        .with_check(
            CheckSpec::readiness(
                "postgres:connections",
                check_fn(|| async { CheckResult::pass().with_observed(5, "connections") }),
            )
            .with_component_type("datastore"),
        )
        .with_check(
            CheckSpec::readiness(
                "disk:free",
                check_fn(|| async {
                    CheckResult::warn("disk is filling up").with_observed(0.93, "ratio")
                }),
            )
            .with_critical(false),
        )
        .build()
        .unwrap();
    let addr = serve(&registry).await;
    let http = client();

    let ready = get(&http, addr, "/health/ready").await;
    assert_eq!(ready.code, 200);
    assert_eq!(ready.content_type, "application/health+json");
    assert_eq!(ready.status(), "warn");
    let pg = ready.check("postgres:connections");
    assert_eq!(pg["status"], "pass");
    assert_eq!(pg["observedValue"], 5);
    assert_eq!(pg["observedUnit"], "connections");
    assert_eq!(pg["componentType"], "datastore");
    assert!(
        pg.get("output").is_none(),
        "no output on a silent pass: {pg}"
    );
    let disk = ready.check("disk:free");
    assert_eq!(disk["status"], "warn");
    assert_eq!(disk["observedValue"], 0.93);
    assert_eq!(disk["output"], "disk is filling up");
    assert!(disk.get("componentType").is_none());
    for entry in [pg, disk] {
        let time = entry["time"].as_str().unwrap();
        let parsed = humantime::parse_rfc3339(time).unwrap();
        assert!(parsed >= before && parsed <= SystemTime::now(), "{time}");
        // Short endpoints omit details.
        assert!(entry.get("durationSeconds").is_none());
    }
    assert!(
        ready.json["checks"]["postgres:connections"]
            .as_array()
            .unwrap()
            .len()
            == 1
    );
    for key in ["version", "serviceId", "uptime"] {
        assert!(ready.json.get(key).is_none(), "{key} only in detail");
    }

    tokio::time::sleep(Duration::from_millis(20)).await;
    let detail = get(&http, addr, "/health/detail").await;
    assert_eq!(detail.content_type, "application/health+json");
    assert_eq!(detail.status(), "warn");
    assert_eq!(detail.json["version"], "1.2.3");
    assert_eq!(detail.json["serviceId"], "zerostate-node");
    assert_eq!(detail.json["description"], "the ZeroState node");
    assert_eq!(detail.json["draining"], false);
    assert_eq!(detail.json["startupComplete"], true);
    let uptime = detail.json["uptime"].as_f64().unwrap();
    assert!(uptime > 0.0 && uptime < 60.0, "{uptime}");
    let pg = detail.check("postgres:connections");
    assert_eq!(pg["kind"], "readiness");
    assert_eq!(pg["critical"], true);
    let duration = pg["durationSeconds"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&duration), "{duration}");
    assert_eq!(detail.check("disk:free")["critical"], false);
}

#[tokio::test]
async fn build_errors() {
    use zs_observe_health::BuildError;
    let ok = || check_fn(|| async { CheckResult::pass() });
    let err = HealthRegistry::builder()
        .with_readiness_check("a b", ok())
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::InvalidName { .. }), "{err}");
    let err = HealthRegistry::builder()
        .with_readiness_check("db", ok())
        .with_liveness_check("db", ok())
        .build()
        .unwrap_err();
    assert_eq!(err, BuildError::DuplicateName("db".into()));
    let err = HealthRegistry::builder()
        .with_check(CheckSpec::readiness("db", ok()).with_timeout(Duration::ZERO))
        .build()
        .unwrap_err();
    assert_eq!(err, BuildError::ZeroTimeout("db".into()));
    let err = HealthRegistry::builder()
        .with_namespace("zero-state")
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::InvalidNamespace { .. }), "{err}");
    // The namespace defaults to the service id, snake-cased.
    assert!(HealthRegistry::builder()
        .with_service_id("zerostate-node")
        .build()
        .is_ok());
}

#[test]
fn background_refresh_needs_a_runtime() {
    let err = HealthRegistry::builder()
        .with_refresh_interval(Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert_eq!(err, zs_observe_health::BuildError::NoRuntime);
}
