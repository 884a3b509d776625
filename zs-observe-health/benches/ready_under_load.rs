//! `health/ready/<mode>`: `/health/ready` at a paced 500 req/s for 10 s, over several
//! connections, while one check hangs forever (plus two normal checks), against the real router
//! on 127.0.0.1:0. Prints p50/p90/p99/max latency and the error count per mode.
//!
//! `cargo bench -p zs-observe-health --bench ready_under_load` (optional arguments: the duration
//! in seconds and the rate in req/s, e.g. `-- 5 1000`).
//!
//! The server runs on its own Tokio runtime (one worker thread), the load generator on another
//! (current thread), so each gets a core on a 2-core machine.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::future::Pending;
use zs_observe_health::{check_fn, CheckResult, CheckSpec, FnCheck, HealthRegistry};

const CONNECTIONS: usize = 8;

fn hanging() -> FnCheck<fn() -> Pending<CheckResult>> {
    check_fn(futures::future::pending::<CheckResult> as fn() -> Pending<CheckResult>)
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Checks refreshed by the background task every second; probes read the latest results.
    Background,
    /// Checks run by probes when the 1 s cached result is stale (single-flight).
    CachedTtl,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Background => "health/ready/background-1s",
            Mode::CachedTtl => "health/ready/cached-ttl-1s",
        }
    }
}

fn registry(mode: Mode) -> HealthRegistry {
    let mut builder = HealthRegistry::builder()
        .with_namespace("bench")
        .with_default_timeout(Duration::from_millis(200))
        .with_readiness_check(
            "db:connections",
            check_fn(|| async { CheckResult::pass().with_observed(4, "connections") }),
        )
        .with_readiness_check(
            "queue:depth",
            check_fn(|| async {
                tokio::time::sleep(Duration::from_millis(2)).await;
                CheckResult::pass().with_observed(17, "jobs")
            }),
        )
        .with_check(CheckSpec::readiness("peer:sync", hanging()).with_critical(false));
    builder = match mode {
        Mode::Background => builder.with_refresh_interval(Duration::from_secs(1)),
        Mode::CachedTtl => builder.with_cache_ttl(Duration::from_secs(1)),
    };
    builder.build().expect("valid registry")
}

/// The server on its own runtime and thread.
struct Server {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// Starts the server on its own runtime (one worker thread) and thread.
fn start_server(mode: Mode) -> Server {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.block_on(async move {
            let registry = registry(mode);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind 127.0.0.1:0");
            tx.send(listener.local_addr().expect("local addr"))
                .expect("report address");
            axum::serve(listener, registry.router())
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .expect("serve");
        });
    });
    let addr = rx.recv().expect("server address");
    Server { addr, stop, thread }
}

/// Which latency of a sample to report.
type Pick = fn(&Sample) -> Duration;

struct Sample {
    /// From sending the request to reading the whole body.
    latency: Duration,
    /// From the request's scheduled time to reading the whole body (counts the wait of requests
    /// delayed behind a slow one: no coordinated omission).
    corrected: Duration,
    ok: bool,
}

async fn probe(client: &reqwest::Client, url: &str) -> bool {
    match client.get(url).send().await {
        Ok(response) => {
            let ok = response.status().as_u16() == 200;
            response.bytes().await.is_ok() && ok
        }
        Err(_) => false,
    }
}

async fn load(addr: SocketAddr, seconds: u64, rate: u64) -> Vec<Sample> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .expect("client");
    let url = format!("http://{addr}/health/ready");
    // Warm up: the first background run (bounded by the 200 ms timeout) and the connections.
    for _ in 0..50 {
        let warm = (0..CONNECTIONS).map(|_| probe(&client, &url));
        futures::future::join_all(warm).await;
    }
    let total = seconds * rate;
    let period = Duration::from_nanos(1_000_000_000 / rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(10);
    let workers = (0..CONNECTIONS).map(|k| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let mut samples = Vec::new();
            for i in (k as u64..total).step_by(CONNECTIONS) {
                let due = start + period * u32::try_from(i).expect("bounded request count");
                tokio::time::sleep_until(due).await;
                let sent = Instant::now();
                let ok = probe(&client, &url).await;
                let latency = sent.elapsed();
                let corrected = due.into_std().elapsed();
                samples.push(Sample {
                    latency,
                    corrected,
                    ok,
                });
            }
            samples
        }
    });
    futures::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .filter_map(|a| a.parse::<u64>().ok());
    let seconds = args.next().unwrap_or(10).clamp(1, 120);
    let rate = args.next().unwrap_or(500).clamp(1, 10_000);
    println!(
        "/health/ready at {rate} req/s for {seconds} s over {CONNECTIONS} connections; \
         one non-critical check hangs forever (timeout 200 ms, so ready answers 200 warn), two pass"
    );
    println!("| scenario | latency from | requests | errors | p50 ms | p90 ms | p99 ms | max ms |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for mode in [Mode::Background, Mode::CachedTtl] {
        let server = start_server(mode);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("client runtime");
        let samples = runtime.block_on(load(server.addr, seconds, rate));
        drop(runtime); // closes the client's connections, so the server can stop
        let _ = server.stop.send(());
        server.thread.join().expect("server thread");
        let errors = samples.iter().filter(|s| !s.ok).count();
        let views: [(&str, Pick); 2] = [("send", |s| s.latency), ("schedule", |s| s.corrected)];
        for (from, pick) in views {
            let mut sorted: Vec<Duration> = samples.iter().map(pick).collect();
            sorted.sort();
            println!(
                "| {} | {from} | {} | {errors} | {} | {} | {} | {} |",
                mode.name(),
                samples.len(),
                ms(percentile(&sorted, 50.0)),
                ms(percentile(&sorted, 90.0)),
                ms(percentile(&sorted, 99.0)),
                ms(sorted.last().copied().unwrap_or_default()),
            );
        }
    }
}
