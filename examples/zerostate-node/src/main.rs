//! A ZeroState compute node instrumented with zs-observe.
//!
//! `cargo run -p zerostate-node --release` starts the node on 127.0.0.1:8080 with
//! its built-in workload; `/metrics` serves the Prometheus exposition. Everything
//! runs on embedded defaults: no collector or Prometheus is needed.
//!
//! Every task goes the whole way a ZeroState task goes: announced over the simulated
//! P2P network (`p2p`), taken by a guild (`guilds`), auctioned among the guild's members
//! with its price in escrow (`economy`), executed in a fuel-metered WASM interpreter
//! (`wasm`), receipted with an ed25519 signature (`receipt`), paid over a payment
//! channel and recorded in the executor's reputation (`economy`).

mod economy;
mod guilds;
mod p2p;
mod peer;
mod receipt;
mod storage;
mod wasm;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use economy::{Economy, EconomyConfig, TaskResult};
use guilds::Guilds;
use p2p::{Network, NetworkConfig};
use receipt::{ReceiptError, ReceiptSigner, SignedReceipt};
use storage::Storage;
use wasm::{ExecError, Execution, Program, Runtime};
use zs_observe::propagation::RequestTraceLayer;
use zs_observe::Telemetry;
use zs_observe_health::{check_fn, CheckResult, CheckSpec, HealthRegistry};

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_TASK_FAILURE_RATE: f64 = 0.02;
/// Below the 99.9 % payment-success SLO's budget, so a healthy node pages nobody.
const DEFAULT_PAYMENT_FAILURE_RATE: f64 = 0.0005;
const DEFAULT_PEER_LOSS_RATE: f64 = 0.0;
const DEFAULT_PEERS: u32 = 12;
/// Tasks executing at once at most; the workload waits for a free slot.
const MAX_TASKS_IN_FLIGHT: usize = 8;

#[derive(Debug)]
struct Config {
    listen: SocketAddr,
    workload: bool,
    check_catalog: bool,
    task_failure_rate: f64,
    payment_failure_rate: f64,
    peer_loss_rate: f64,
    slow_wasm: Duration,
    peers: u32,
    data_dir: std::path::PathBuf,
    bench_tasks: Option<u64>,
}

fn usage() -> ! {
    eprintln!(
        "usage: zerostate-node [OPTIONS]\n\
         \n  --listen ADDR     address to serve on (env ZEROSTATE_LISTEN, default {DEFAULT_LISTEN})\
         \n  --data-dir DIR    where receipts are stored (env ZEROSTATE_DATA_DIR,\
         \n                    default <temp dir>/zerostate-node)\
         \n  --peers N         peers in the simulated network (1..=64, default {DEFAULT_PEERS})\
         \n  --no-workload     do not run the built-in workload generator\
         \n  --check-catalog   compare the catalog with the code's metrics, print the report and exit\
         \n  --bench-tasks N   run N tasks back to back on one thread (no 20 ms pacing, no server),\
         \n                    with a fixed simulation seed, a fixed receipt key and a simulated\
         \n                    clock (20 ms a round), print the tasks per second and exit\
         \n                    (docs/performance.md)\
         \n\nfault injection (each drives alerts of monitoring/prometheus/rules):\
         \n  --task-failure-rate F     fraction (0..1) of tasks that run a trapping module\
         \n                            (default {DEFAULT_TASK_FAILURE_RATE})\
         \n  --payment-failure-rate F  fraction (0..1) of channel payments that fail\
         \n                            (default {DEFAULT_PAYMENT_FAILURE_RATE})\
         \n  --peer-loss-rate F        chance (0..1) per round that a connected peer is lost\
         \n                            (default {DEFAULT_PEER_LOSS_RATE})\
         \n  --slow-wasm-ms N          host time added to every WASM run (default 0)"
    );
    std::process::exit(2)
}

fn parse_args() -> Config {
    let mut listen =
        std::env::var("ZEROSTATE_LISTEN").unwrap_or_else(|_| DEFAULT_LISTEN.to_owned());
    let mut workload = true;
    let mut check_catalog = false;
    let mut task_failure_rate = DEFAULT_TASK_FAILURE_RATE;
    let mut payment_failure_rate = DEFAULT_PAYMENT_FAILURE_RATE;
    let mut peer_loss_rate = DEFAULT_PEER_LOSS_RATE;
    let mut slow_wasm = Duration::ZERO;
    let mut peers = DEFAULT_PEERS;
    let mut bench_tasks = None;
    let mut data_dir = std::env::var_os("ZEROSTATE_DATA_DIR")
        .map_or_else(|| std::env::temp_dir().join("zerostate-node"), Into::into);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            let value = args.next().unwrap_or_else(|| {
                eprintln!("{name} needs a value");
                usage()
            });
            (value, name.to_owned())
        };
        let rate = |(value, name): (String, String)| {
            parse_rate(&value).unwrap_or_else(|e| {
                eprintln!("invalid {name} `{value}`: {e}");
                usage()
            })
        };
        match arg.as_str() {
            "--listen" => listen = value("--listen").0,
            "--data-dir" => data_dir = value("--data-dir").0.into(),
            "--no-workload" => workload = false,
            "--check-catalog" => check_catalog = true,
            "--task-failure-rate" => task_failure_rate = rate(value("--task-failure-rate")),
            "--payment-failure-rate" => {
                payment_failure_rate = rate(value("--payment-failure-rate"));
            }
            "--peer-loss-rate" => peer_loss_rate = rate(value("--peer-loss-rate")),
            "--slow-wasm-ms" => {
                let (v, _) = value("--slow-wasm-ms");
                slow_wasm = match v.parse::<u64>() {
                    Ok(ms) if ms <= 600_000 => Duration::from_millis(ms),
                    _ => {
                        eprintln!(
                            "invalid --slow-wasm-ms `{v}`: a whole number of ms up to 600000"
                        );
                        usage()
                    }
                };
            }
            "--peers" => {
                let (v, _) = value("--peers");
                peers = match v.parse::<u32>() {
                    Ok(n) if (1..=64).contains(&n) => n,
                    _ => {
                        eprintln!("invalid --peers `{v}`: a number from 1 to 64");
                        usage()
                    }
                };
            }
            "--bench-tasks" => {
                let (v, _) = value("--bench-tasks");
                bench_tasks = match v.parse::<u64>() {
                    Ok(n) if n > 0 => Some(n),
                    _ => {
                        eprintln!("invalid --bench-tasks `{v}`: a positive number");
                        usage()
                    }
                };
            }
            "-h" | "--help" => usage(),
            other => {
                eprintln!("unknown argument `{other}`");
                usage()
            }
        }
    }
    let listen = listen.parse().unwrap_or_else(|e| {
        eprintln!("invalid --listen address `{listen}`: {e}");
        usage()
    });
    Config {
        listen,
        workload,
        check_catalog,
        task_failure_rate,
        payment_failure_rate,
        peer_loss_rate,
        slow_wasm,
        peers,
        data_dir,
        bench_tasks,
    }
}

/// A fraction in 0..=1.
fn parse_rate(value: &str) -> Result<f64, String> {
    let rate: f64 = value.trim().parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err("must be a number from 0 to 1".to_owned())
    }
}

/// A unit of work submitted to the node: a bundled WASM program, its input and a fuel budget.
#[derive(Debug, Clone, Copy)]
struct Task {
    id: u64,
    program: Program,
    input: i64,
    fuel: u64,
}

impl Task {
    /// The most the task's creator pays for it.
    fn budget(&self) -> u64 {
        100 + (self.id % 9) * 100
    }
}

/// One executed task: what happened and the node's signed receipt for it.
#[derive(Debug)]
struct Report {
    result: Result<Execution, ExecError>,
    receipt: SignedReceipt,
}

/// The time the node's economy runs on (channel lifetimes, bans, gauge intervals)
/// and that task durations are measured with.
enum Clock {
    /// The wall clock.
    Wall,
    /// Under `--bench-tasks`: 20 ms a round (the pacing of the normal workload) from
    /// the start, and every task taking 1 ms. On the wall clock the binary with
    /// instrumentation, being slower, closed more channels per task than the one
    /// without (each close verifies signatures): ~5,000 instructions a task of
    /// difference that was not instrumentation.
    Simulated {
        start: std::time::Instant,
        round: AtomicU64,
    },
}

impl Clock {
    fn now(&self) -> std::time::Instant {
        match self {
            Clock::Wall => std::time::Instant::now(),
            Clock::Simulated { start, round } => {
                *start + Duration::from_millis(20) * round.load(Ordering::Relaxed) as u32
            }
        }
    }
}

struct Node {
    clock: Clock,
    runtime: Runtime,
    signer: ReceiptSigner,
    network: Network,
    guilds: Guilds,
    economy: Economy,
    storage: Storage,
    completed: AtomicU64,
    failed: AtomicU64,
}

impl Node {
    fn new(
        runtime: Runtime,
        signer: ReceiptSigner,
        network: Network,
        economy: Economy,
        storage: Storage,
    ) -> Self {
        Node {
            clock: Clock::Wall,
            runtime,
            signer,
            network,
            guilds: Guilds::new(),
            economy,
            storage,
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// The node on a simulated clock (`--bench-tasks`).
    fn with_simulated_clock(mut self) -> Self {
        self.clock = Clock::Simulated {
            start: std::time::Instant::now(),
            round: AtomicU64::new(0),
        };
        self
    }

    /// One round of upkeep: the network, the guilds and the economy.
    fn maintain(&self, round: u64) {
        if let Clock::Simulated { round: r, .. } = &self.clock {
            r.store(round, Ordering::Relaxed);
        }
        self.network.tick();
        if round % 10 == 1 {
            self.guilds.maintain(&self.network.connected());
        }
        self.economy.tick_at(self.clock.now());
    }

    /// A task the whole way: announced over the network, taken by a guild, auctioned
    /// among the guild's members, executed, receipted, stored, paid and recorded.
    fn run_task(&self, task: Task) {
        metrics::counter!("zerostate_tasks_submitted_total").increment(1);
        let Some(members) = self.guilds.assign(task.id) else {
            tracing::warn!(task.id = task.id, "no guild to take the task");
            return;
        };
        let announcement = serde_json::json!({
            "task_id": task.id,
            "program": format!("{:?}", task.program),
            "fuel": task.fuel,
        });
        let heard = self
            .network
            .announce(task.id, announcement.to_string().as_bytes());
        let bidders: Vec<_> = heard.into_iter().filter(|p| members.contains(p)).collect();
        let award = match self.economy.auction(task.id, task.budget(), &bidders) {
            Ok(award) => award,
            Err(e) => {
                tracing::info!(task.id = task.id, error = %e, "task not awarded");
                return;
            }
        };
        let started = std::time::Instant::now();
        let (success, fuel_used, receipt_verified) = match self.execute(task) {
            Ok(report) => {
                if let Err(e) = self.storage.append(&report.receipt) {
                    tracing::error!(task.id = task.id, error = %e, "receipt not stored");
                }
                let fuel = match &report.result {
                    Ok(e) => e.fuel_used,
                    Err(e) => e.fuel_used(),
                };
                (report.result.is_ok(), fuel, true)
            }
            Err(e) => {
                tracing::error!(task.id = task.id, error = %e, "receipt failed");
                (false, 0, false)
            }
        };
        let duration = match self.clock {
            Clock::Wall => started.elapsed(),
            Clock::Simulated { .. } => Duration::from_millis(1),
        };
        let result = TaskResult {
            success,
            receipt_verified,
            fuel_used,
            duration,
        };
        self.economy.complete_at(&award, &result, self.clock.now());
    }

    /// Executes a task in the WASM runtime, then signs and checks its receipt.
    fn execute(&self, task: Task) -> Result<Report, ReceiptError> {
        let module = self.runtime.program(task.program);
        let result = self.runtime.execute(task.id, module, task.input, task.fuel);
        let counter = if result.is_ok() {
            &self.completed
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let key = self.signer.verifying_key();
        let receipt = receipt::Receipt::new(task.id, &module.hash, task.fuel, &result, &key);
        let receipt = self.signer.sign(receipt)?;
        receipt::verify(&receipt, &key)?;
        Ok(Report { result, receipt })
    }

    /// Runs the health-check task: the sum of 1..=1000 with a known answer.
    fn probe(&self) -> Result<u64, String> {
        let task = Task {
            id: 0,
            program: Program::Sum,
            input: 1_000,
            fuel: 1_000_000,
        };
        let report = self.execute(task).map_err(|e| e.to_string())?;
        match report.result {
            Ok(e) if e.value == 500_500 => Ok(e.fuel_used),
            Ok(e) => Err(format!("wrong answer {}", e.value)),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The workload's task number `id`: mostly sums, some memory growth, every 50th a
/// runaway loop stopped by its fuel budget (2 %, well under the 5 % of the
/// TaskTimeoutRate alert), and `failure_rate` of them trapping.
fn workload_task(id: u64, failure_rate: f64) -> Task {
    // splitmix64: a uniform, reproducible draw per task.
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let draw = (z >> 11) as f64 / (1u64 << 53) as f64;
    let (program, input, fuel) = if draw < failure_rate {
        (Program::Trap, 0, 10_000)
    } else if id % 50 == 0 {
        (Program::Spin, 0, 5_000 + (id % 5) * 1_000)
    } else if id % 10 == 5 {
        (Program::Grow, (id % 8) as i64, 10_000)
    } else {
        (Program::Sum, 100 + (id % 7) as i64 * 500, 1_000_000)
    };
    Task {
        id,
        program,
        input,
        fuel,
    }
}

/// A task every 20 ms, run on the blocking pool (at most `MAX_TASKS_IN_FLIGHT` at once,
/// so a slow WASM run slows the workload down instead of piling up), with a round of
/// network, guild and economy upkeep before each.
async fn workload(node: Arc<Node>, failure_rate: f64) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_TASKS_IN_FLIGHT));
    let mut id = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        id += 1;
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let node = node.clone();
        let task = workload_task(id, failure_rate);
        node.maintain(id);
        tokio::task::spawn_blocking(move || {
            node.run_task(task);
            drop(slot);
        });
    }
}

/// The simulation's seed under `--bench-tasks`.
const BENCH_SEED: u64 = 0x5EED_2026;

/// The receipt key under `--bench-tasks`: [`BENCH_SEED`] four times.
fn bench_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    for chunk in key.chunks_mut(8) {
        chunk.copy_from_slice(&BENCH_SEED.to_le_bytes());
    }
    key
}

/// `--bench-tasks N`: the workload's task path (a round of upkeep, then the task) N times
/// back to back on this thread, without the 20 ms pacing. Built with and without the
/// `disabled` feature, it measures what the instrumentation costs a task. Besides the
/// wall time it prints the CPU time of this thread and of the whole process (Linux),
/// which a machine shared with other work disturbs much less.
fn bench_tasks(node: &Node, tasks: u64, failure_rate: f64) {
    let cpu = || {
        (
            cpu_seconds("/proc/thread-self/stat"),
            cpu_seconds("/proc/self/stat"),
        )
    };
    let (thread0, process0) = cpu();
    let started = std::time::Instant::now();
    for id in 1..=tasks {
        node.maintain(id);
        node.run_task(workload_task(id, failure_rate));
    }
    let secs = started.elapsed().as_secs_f64();
    let (thread1, process1) = cpu();
    let delta = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}", b - a),
        _ => "n/a".to_owned(),
    };
    println!(
        "BENCH tasks={tasks} seconds={secs:.3} tasks_per_second={:.1} \
         thread_cpu_seconds={} process_cpu_seconds={}",
        tasks as f64 / secs,
        delta(thread0, thread1),
        delta(process0, process1),
    );
}

/// User plus system CPU seconds from a `/proc/.../stat` file (fields 14 and 15, in
/// clock ticks of 10 ms), `None` where there is no such file.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(stat).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let mut fields = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

async fn index(State(node): State<Arc<Node>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "service": "zerostate-node",
        "version": env!("CARGO_PKG_VERSION"),
        "tasks": {
            "completed": node.completed.load(Ordering::Relaxed),
            "failed": node.failed.load(Ordering::Relaxed),
        },
        "endpoints": [
            "/metrics", "/healthz", "/readyz", "/health/live", "/health/ready",
            "/health/startup", "/health/detail"
        ],
    }))
}

#[tokio::main]
async fn main() {
    let config = parse_args();
    // The same catalog the compiler checked the call sites against (Cargo.toml metadata).
    let catalog = match zs_observe::include_catalog!("../../../monitoring/catalog/zerostate.toml") {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            std::process::exit(1);
        }
    };
    let telemetry = match Telemetry::builder()
        .with_catalog(catalog)
        .with_service_name("zerostate-node")
        .with_namespace("zerostate")
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_console_logs(true)
        .install()
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot start telemetry: {e}");
            std::process::exit(1);
        }
    };
    let runtime = match Runtime::new() {
        Ok(r) => Ok(r.with_host_delay(config.slow_wasm)),
        Err(e) => Err(e),
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the WASM runtime: {e}");
            std::process::exit(1);
        }
    };
    // `--bench-tasks` signs with a fixed key: verifying a signature takes a number of
    // instructions that depends on the key (variable-time scalar multiplication), so a
    // fresh key per run moved the per-task count by several thousand.
    let signer = match config.bench_tasks {
        Some(_) => Ok(ReceiptSigner::from_seed(bench_key())),
        None => ReceiptSigner::generate(),
    };
    let signer = match signer {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot create the node key: {e}");
            std::process::exit(1);
        }
    };
    let public_key = wasm::hex(signer.verifying_key().as_bytes());
    let storage = match Storage::open(&config.data_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "cannot open the data directory {}: {e}",
                config.data_dir.display()
            );
            std::process::exit(1);
        }
    };
    // `--bench-tasks` runs the same simulated network and economy every time, so that
    // the binaries with and without instrumentation run the same tasks (instruction
    // counts of the two then differ by the instrumentation alone).
    let seed = match config.bench_tasks {
        Some(_) => BENCH_SEED,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    };
    let network = Network::new(NetworkConfig {
        peers: config.peers,
        peer_loss_rate: config.peer_loss_rate,
        seed,
    });
    let economy = Economy::new(EconomyConfig {
        payment_failure_rate: config.payment_failure_rate,
        seed: seed.rotate_left(17),
    });
    let node = Node::new(runtime, signer, network, economy, storage);
    let node = Arc::new(match config.bench_tasks {
        Some(_) => node.with_simulated_clock(),
        None => node,
    });
    if let Some(tasks) = config.bench_tasks {
        bench_tasks(&node, tasks, config.task_failure_rate);
        return;
    }
    let health = match health_registry(node.clone()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("cannot build the health checks: {e}");
            std::process::exit(1);
        }
    };
    let app = Router::new()
        .route("/", get(index))
        .with_state(node.clone())
        .merge(health.router())
        .merge(telemetry.metrics_router())
        .layer(telemetry.http_metrics_layer())
        .layer(RequestTraceLayer::new());

    if config.check_catalog {
        // Call sites register at link time; the exposition adds what the runtime, the
        // HTTP layer and the health checks record once one request has been served, and
        // what the domain records as the workload runs: run it (at most 30 s) until
        // every catalog metric has a series.
        let probe = self_probe(app.clone()).await;
        if let Err(e) = probe {
            eprintln!("self probe failed: {e}");
            std::process::exit(1);
        }
        let Some(catalog) = telemetry.catalog() else {
            eprintln!("telemetry was installed without its catalog");
            std::process::exit(1);
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut round = 0;
        let report = loop {
            let report = zs_observe::coverage::report(catalog, &telemetry.render());
            if report.is_empty() || std::time::Instant::now() >= deadline {
                break report;
            }
            let node = node.clone();
            let rate = config.task_failure_rate;
            round = tokio::task::spawn_blocking(move || {
                for id in round + 1..=round + 25 {
                    node.maintain(id);
                    node.run_task(workload_task(id, rate));
                    std::thread::sleep(Duration::from_millis(20));
                }
                round + 25
            })
            .await
            .unwrap_or(round + 25);
        };
        println!("{report}");
        std::process::exit(i32::from(!report.is_empty()));
    }

    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", config.listen);
            std::process::exit(1);
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    // First stderr line, for tests and scripts that pass port 0.
    eprintln!("LISTENING {addr}");
    tracing::info!(%public_key, "receipts are signed with this ed25519 key");
    tracing::info!(
        %addr,
        workload = config.workload,
        task_failure_rate = config.task_failure_rate,
        payment_failure_rate = config.payment_failure_rate,
        peer_loss_rate = config.peer_loss_rate,
        slow_wasm_ms = config.slow_wasm.as_millis() as u64,
        data_dir = %config.data_dir.display(),
        "zerostate-node listening; metrics at /metrics"
    );
    if config.workload {
        tokio::spawn(workload(node, config.task_failure_rate));
    }
    // SIGTERM or Ctrl-C: readiness turns to fail, then the server stops after a grace period.
    let shutdown = async move {
        zs_observe_health::shutdown_signal(health, Duration::from_secs(2)).await;
        tracing::info!("shutting down");
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("server error: {e}");
        std::process::exit(1);
    }
}

/// The node's health checks (seed 000 task 13): the process is alive (liveness, never
/// depending on anything outside it); P2P connectivity, storage, payment channel state,
/// the guild manager and the WASM runtime (readiness); the WASM runtime warmed up
/// (startup). Readiness checks run in the background every 2 s, so probes never wait.
fn health_registry(node: Arc<Node>) -> Result<HealthRegistry, zs_observe_health::BuildError> {
    /// A readiness check of one of the node's subsystems.
    fn subsystem(name: &str, node: &Arc<Node>, check: fn(&Node) -> CheckResult) -> CheckSpec {
        let node = node.clone();
        CheckSpec::readiness(
            name,
            check_fn(move || {
                let node = node.clone();
                async move { check(&node) }
            }),
        )
        .with_component_type("component")
    }
    let warmup = node.clone();
    HealthRegistry::builder()
        .with_namespace("zerostate")
        .with_service_id("zerostate-node")
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_refresh_interval(Duration::from_secs(2))
        .with_liveness_check("process:alive", check_fn(|| async { CheckResult::pass() }))
        .with_check(subsystem("wasm:runtime", &node, |node| {
            // A fixed task with a known answer: the executor works.
            match node.probe() {
                Ok(used) => CheckResult::pass().with_observed(used, "fuel"),
                Err(e) => CheckResult::fail(e),
            }
        }))
        .with_check(subsystem("p2p:connectivity", &node, |node| {
            node.network.health()
        }))
        .with_check(subsystem("guilds:manager", &node, |node| {
            node.guilds.health()
        }))
        .with_check(subsystem("payments:channels", &node, |node| {
            node.economy.health()
        }))
        .with_check(
            CheckSpec::readiness(
                "storage:receipts",
                zs_observe_health::dir_writable(node.storage.dir()),
            )
            .with_component_type("datastore"),
        )
        .with_startup_check(
            "wasm:warmup",
            check_fn(move || {
                let node = warmup.clone();
                async move {
                    match node.probe() {
                        Ok(_) => CheckResult::pass(),
                        Err(e) => CheckResult::fail(e),
                    }
                }
            }),
        )
        .build()
}

/// Serves `app` on a free loopback port and sends it one request to each health
/// endpoint, so that every runtime metric has a series.
async fn self_probe(app: Router) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    for path in ["/health/startup", "/health/ready", "/health/live"] {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
            .await
            .map_err(|_| format!("{path}: no answer in 5 s"))?
            .map_err(|e| e.to_string())?;
        if !response.starts_with(b"HTTP/1.1 200") {
            return Err(format!("{path}: {}", String::from_utf8_lossy(&response)));
        }
    }
    server.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        let dir = std::env::temp_dir().join(format!("zerostate-node-unit-{}", std::process::id()));
        Node::new(
            Runtime::new().expect("runtime"),
            ReceiptSigner::from_seed([1; 32]),
            Network::new(NetworkConfig {
                peers: 8,
                peer_loss_rate: 0.0,
                seed: 1,
            }),
            Economy::new(EconomyConfig {
                payment_failure_rate: 0.0,
                seed: 2,
            }),
            Storage::open(&dir).expect("storage"),
        )
    }

    #[test]
    fn every_task_gets_a_verified_receipt() {
        let node = node();
        let key = node.signer.verifying_key();
        for id in 1..=40 {
            let task = workload_task(id, 0.25);
            let report = node.execute(task).expect("receipt");
            assert_eq!(report.receipt.receipt.task_id, id);
            assert_eq!(receipt::verify(&report.receipt, &key), Ok(()));
            let fuel = report
                .result
                .as_ref()
                .map_or_else(ExecError::fuel_used, |e| e.fuel_used);
            assert_eq!(report.receipt.receipt.fuel_used, fuel);
        }
        assert_eq!(
            node.completed.load(Ordering::Relaxed) + node.failed.load(Ordering::Relaxed),
            40
        );
        assert!(node.failed.load(Ordering::Relaxed) > 0);
        assert_eq!(node.probe(), node.probe());
        assert!(node.probe().is_ok());
    }

    #[test]
    fn the_failure_rate_picks_that_fraction_of_trapping_tasks() {
        let traps = |rate| {
            (1..=10_000u64)
                .filter(|&id| workload_task(id, rate).program == Program::Trap)
                .count()
        };
        assert_eq!(traps(0.0), 0);
        assert_eq!(traps(1.0), 10_000);
        let tenth = traps(0.1);
        assert!((900..=1_100).contains(&tenth), "{tenth}");
        // The default mix has all three outcomes.
        let programs: Vec<_> = (1..=100).map(|id| workload_task(id, 0.0).program).collect();
        assert!(programs.contains(&Program::Spin) && programs.contains(&Program::Sum));
    }

    #[test]
    fn rates_outside_0_to_1_are_rejected() {
        assert_eq!(parse_rate("0.25"), Ok(0.25));
        assert_eq!(parse_rate("0"), Ok(0.0));
        assert_eq!(parse_rate("1"), Ok(1.0));
        for bad in ["-0.1", "1.5", "NaN", "inf", "abc", ""] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
