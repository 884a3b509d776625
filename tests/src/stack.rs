//! The monitoring-stack harness: real `prometheus`, `prometheus-alertmanager`,
//! `promtool` and `amtool` binaries, a webhook receiver that collects what
//! Alertmanager sends, and the example services as processes. Everything listens
//! on 127.0.0.1, every wait is bounded, every process is killed on drop, and a
//! missing tool fails the test with the command that installs it.
//!
//! A typical end-to-end test (tests/tests/monitoring_e2e.rs):
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use zs_observe_tests::stack::*;
//! let node = ServiceProcess::start(&example_binary("zerostate-node", "zerostate-node"), &[]);
//! let webhook = WebhookReceiver::start().await;
//! let am = Alertmanager::start(&test_alertmanager_config(&webhook.url())).await;
//! let prom = Prometheus::builder()
//!     .scrape("zerostate-node", node.addr())
//!     .real_rules(Some("2s"))
//!     .alertmanager(am.addr())
//!     .start()
//!     .await;
//! prom.wait_for("up{job=\"zerostate-node\"} == 1", Duration::from_secs(20)).await;
//! drop(node); // TargetDown follows
//! let (path, alert) = webhook
//!     .wait_for_alert("TargetDown", "firing", Duration::from_secs(30))
//!     .await;
//! # let _ = (path, alert, prom);
//! # }
//! ```

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use serde_norway::Value as Yaml;

// ---------------------------------------------------------------------------------
// Paths and files

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the workspace")
        .to_path_buf()
}

/// `monitoring/` of the workspace.
pub fn monitoring_dir() -> PathBuf {
    workspace_root().join("monitoring")
}

/// Every rule file: `monitoring/prometheus/rules/*.yml` (and `*.yaml`), sorted.
pub fn rule_files() -> Vec<PathBuf> {
    let dir = monitoring_dir().join("prometheus/rules");
    let mut files = crate::promql::files_with_extension(&dir, "yml");
    files.extend(crate::promql::files_with_extension(&dir, "yaml"));
    files.sort();
    files
}

/// Every promtool unit-test file: `monitoring/prometheus/tests/*.yml`, sorted.
pub fn rule_test_files() -> Vec<PathBuf> {
    crate::promql::files_with_extension(&monitoring_dir().join("prometheus/tests"), "yml")
}

/// Every dashboard: `monitoring/grafana/dashboards/*.json`, sorted (may be empty).
pub fn dashboard_files() -> Vec<PathBuf> {
    crate::promql::files_with_extension(&monitoring_dir().join("grafana/dashboards"), "json")
}

/// One rule of a rule file.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    /// The file it came from.
    pub file: PathBuf,
    /// Its group's name.
    pub group: String,
    /// `alert:` name, for alerting rules.
    pub alert: Option<String>,
    /// `record:` name, for recording rules.
    pub record: Option<String>,
    /// The PromQL expression.
    pub expr: String,
    /// `for:` as written.
    pub for_: Option<String>,
    /// Static labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations (templates as written).
    pub annotations: BTreeMap<String, String>,
}

/// Every rule of a rule file, in file order. Panics on a file that is not a
/// Prometheus rule file.
pub fn load_rules(path: &Path) -> Vec<Rule> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let doc: Yaml = serde_norway::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    let str_map = |v: Option<&Yaml>| -> BTreeMap<String, String> {
        v.and_then(Yaml::as_mapping)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (yaml_string(k), yaml_string(v)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut rules = Vec::new();
    let groups = doc
        .get("groups")
        .and_then(Yaml::as_sequence)
        .unwrap_or_else(|| panic!("{} has no `groups:` list", path.display()));
    for group in groups {
        let name = group.get("name").map(yaml_string).unwrap_or_default();
        for rule in group
            .get("rules")
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
        {
            rules.push(Rule {
                file: path.to_path_buf(),
                group: name.clone(),
                alert: rule.get("alert").map(yaml_string),
                record: rule.get("record").map(yaml_string),
                expr: rule.get("expr").map(yaml_string).unwrap_or_default(),
                for_: rule.get("for").map(yaml_string),
                labels: str_map(rule.get("labels")),
                annotations: str_map(rule.get("annotations")),
            });
        }
    }
    rules
}

fn yaml_string(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Null => String::new(),
        other => serde_norway::to_string(other).unwrap_or_default(),
    }
}

/// The text of a rule file with every `for: <duration>` replaced by `for: <to>`,
/// and nothing else changed (expressions, labels and annotations stay byte for
/// byte), so an end-to-end test sees the real rules fire in seconds.
pub fn shorten_for_durations(rules_yaml: &str, to: &str) -> String {
    rules_yaml
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            match trimmed.strip_prefix("for:") {
                Some(_) => format!("{}for: {to}", &line[..line.len() - trimmed.len()]),
                None => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

// ---------------------------------------------------------------------------------
// Tools

/// The path of `tool` on `PATH`; panics naming the Debian package that provides it.
pub fn require_tool(tool: &str, debian_package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(tool);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{tool}` is required by this test but is not on PATH. Install it with \
         `apt-get update && apt-get install -y {debian_package}` (or run scripts/test.sh, \
         which does)."
    )
}

/// What a tool printed and how it exited.
#[derive(Debug)]
pub struct ToolOutput {
    /// The command line, for messages.
    pub command: String,
    /// Whether it exited with 0.
    pub success: bool,
    /// stdout and stderr, concatenated.
    pub output: String,
}

impl ToolOutput {
    /// Panics with the tool's output unless it succeeded.
    pub fn assert_success(&self) -> &Self {
        assert!(self.success, "`{}` failed:\n{}", self.command, self.output);
        self
    }
}

fn run_tool<I, S>(tool: &str, package: &str, args: I, cwd: Option<&Path>) -> ToolOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let exe = require_tool(tool, package);
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut cmd = Command::new(&exe);
    cmd.args(&args);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let out: Output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    ToolOutput {
        command: format!(
            "{tool} {}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        ),
        success: out.status.success(),
        output,
    }
}

/// `promtool <args>`.
pub fn promtool<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(args: I) -> ToolOutput {
    run_tool("promtool", "prometheus", args, None)
}

/// `promtool check config <file>` (also checks the rule files it references).
pub fn promtool_check_config(config: &Path) -> ToolOutput {
    promtool([
        OsStr::new("check"),
        OsStr::new("config"),
        config.as_os_str(),
    ])
}

/// `promtool check rules <files...>`.
pub fn promtool_check_rules(files: &[PathBuf]) -> ToolOutput {
    let mut args: Vec<&OsStr> = vec![OsStr::new("check"), OsStr::new("rules")];
    args.extend(files.iter().map(|f| f.as_os_str()));
    promtool(args)
}

/// `promtool test rules <files...>`.
pub fn promtool_test_rules(files: &[PathBuf]) -> ToolOutput {
    let mut args: Vec<&OsStr> = vec![OsStr::new("test"), OsStr::new("rules")];
    args.extend(files.iter().map(|f| f.as_os_str()));
    promtool(args)
}

/// `amtool check-config <file>`.
pub fn amtool_check_config(config: &Path) -> ToolOutput {
    run_tool(
        "amtool",
        "prometheus-alertmanager",
        [OsStr::new("check-config"), config.as_os_str()],
        None,
    )
}

/// The receiver(s) Alertmanager's routing tree picks for an alert with `labels`
/// (`amtool config routes test`), comma-separated as amtool prints them.
pub fn amtool_route(config: &Path, labels: &[(&str, &str)]) -> String {
    let mut args = vec![
        "config".to_owned(),
        "routes".to_owned(),
        "test".to_owned(),
        format!("--config.file={}", config.display()),
    ];
    args.extend(labels.iter().map(|(k, v)| format!("{k}={v}")));
    let out = run_tool("amtool", "prometheus-alertmanager", &args, None);
    out.assert_success();
    out.output
        .lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with("Warning:"))
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// `docker-compose -f <file> config -q` (validates the file without Docker running).
pub fn docker_compose_config(file: &Path) -> ToolOutput {
    run_tool(
        "docker-compose",
        "docker-compose",
        [
            OsStr::new("-f"),
            file.as_os_str(),
            OsStr::new("config"),
            OsStr::new("-q"),
        ],
        file.parent(),
    )
}

/// A port that was free on 127.0.0.1 a moment ago (bind `:0`, read, release).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client")
}

/// Starts `exe` (a Prometheus-family server: `/-/ready`, stderr to `log`) with the
/// arguments `args(addr)` on a free loopback port and waits (at most 30 s) until it is
/// ready. A port taken between choosing and binding makes the server exit at once: then
/// it tries another, three times in all.
async fn start_on_free_port(
    exe: &Path,
    what: &str,
    log: &Path,
    args: impl Fn(SocketAddr) -> Vec<String>,
) -> (Child, SocketAddr) {
    let mut last_error = String::new();
    for _attempt in 0..3 {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut child = Command::new(exe)
            .args(args(addr))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(Some(_)) = child.try_wait() {
            last_error = tail(log);
            continue;
        }
        wait_ready(
            &format!("http://{addr}/-/ready"),
            &mut child,
            log,
            what,
            Duration::from_secs(30),
        )
        .await;
        return (child, addr);
    }
    panic!("{what} did not start on three free ports:\n{last_error}");
}

/// Polls `GET url` until it answers 200, the child exits, or `timeout` passes.
async fn wait_ready(url: &str, child: &mut Child, log: &Path, what: &str, timeout: Duration) {
    let client = http_client();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}) before it was ready:\n{}",
                tail(log)
            );
        }
        if let Ok(resp) = client.get(url).send().await {
            if resp.status().is_success() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what} was not ready at {url} within {timeout:?}:\n{}",
            tail(log)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

// ---------------------------------------------------------------------------------
// Prometheus

/// Builds the configuration of a test Prometheus.
#[derive(Debug, Clone)]
pub struct PrometheusBuilder {
    scrape_interval: Duration,
    evaluation_interval: Duration,
    targets: Vec<(String, SocketAddr)>,
    rule_files: Vec<(String, String)>,
    alertmanager: Option<SocketAddr>,
}

impl Default for PrometheusBuilder {
    fn default() -> Self {
        PrometheusBuilder {
            scrape_interval: Duration::from_secs(1),
            evaluation_interval: Duration::from_secs(1),
            targets: Vec::new(),
            rule_files: Vec::new(),
            alertmanager: None,
        }
    }
}

fn prom_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

impl PrometheusBuilder {
    /// Scrape and evaluation every `interval` (default 1 s).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.scrape_interval = interval;
        self.evaluation_interval = interval;
        self
    }

    /// Scrapes `addr`'s `/metrics` as job `job` (use the real job names,
    /// `zerostate-node` and `ains-api`, so the rules' matchers apply).
    pub fn scrape(mut self, job: &str, addr: SocketAddr) -> Self {
        self.targets.push((job.to_owned(), addr));
        self
    }

    /// Loads a rule file given as text, under `name`.
    pub fn rule_text(mut self, name: &str, yaml: String) -> Self {
        self.rule_files.push((name.to_owned(), yaml));
        self
    }

    /// Loads every real rule file of `monitoring/prometheus/rules/`; with
    /// `Some(d)`, each `for:` is shortened to `d` by [`shorten_for_durations`] and
    /// nothing else changes.
    pub fn real_rules(mut self, shorten_for: Option<&str>) -> Self {
        for file in rule_files() {
            let text = std::fs::read_to_string(&file).expect("read rule file");
            let text = match shorten_for {
                Some(d) => shorten_for_durations(&text, d),
                None => text,
            };
            let name = file
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            self.rule_files.push((name, text));
        }
        self
    }

    /// Sends alerts to the Alertmanager at `addr`.
    pub fn alertmanager(mut self, addr: SocketAddr) -> Self {
        self.alertmanager = Some(addr);
        self
    }

    /// The `prometheus.yml` this builder generates (rule files under `rules/`).
    pub fn config_yaml(&self) -> String {
        let mut y = format!(
            "global:\n  scrape_interval: {}\n  scrape_timeout: {}\n  evaluation_interval: {}\n",
            prom_duration(self.scrape_interval),
            prom_duration(self.scrape_interval),
            prom_duration(self.evaluation_interval),
        );
        y.push_str("rule_files:\n");
        for (name, _) in &self.rule_files {
            y.push_str(&format!("  - rules/{name}\n"));
        }
        if let Some(am) = self.alertmanager {
            y.push_str(&format!(
                "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"{am}\"]\n"
            ));
        }
        y.push_str("scrape_configs:\n");
        let mut jobs: BTreeMap<&str, Vec<SocketAddr>> = BTreeMap::new();
        for (job, addr) in &self.targets {
            jobs.entry(job).or_default().push(*addr);
        }
        for (job, addrs) in jobs {
            let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
            y.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ));
        }
        y
    }

    /// Writes the configuration, checks it with promtool, starts `prometheus` on a
    /// free loopback port and waits (at most 30 s) until it is ready.
    pub async fn start(self) -> Prometheus {
        let exe = require_tool("prometheus", "prometheus");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("rules")).expect("rules dir");
        for (name, text) in &self.rule_files {
            std::fs::write(dir.path().join("rules").join(name), text).expect("write rules");
        }
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, self.config_yaml()).expect("write config");
        promtool_check_config(&config).assert_success();
        let log = dir.path().join("prometheus.log");
        let data = dir.path().join("data");
        let (child, addr) = start_on_free_port(&exe, "prometheus", &log, |addr| {
            vec![
                format!("--config.file={}", config.display()),
                format!("--storage.tsdb.path={}", data.display()),
                format!("--web.listen-address={addr}"),
                "--rules.alert.resend-delay=1s".to_owned(),
                "--log.level=info".to_owned(),
            ]
        })
        .await;
        Prometheus {
            child,
            addr,
            url: format!("http://{addr}"),
            log,
            client: http_client(),
            _dir: dir,
        }
    }
}

/// One sample of an instant-query result.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample {
    /// The series' labels (with `__name__` when the result keeps it).
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// A running Prometheus, killed on drop.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    url: String,
    log: PathBuf,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// A builder with 1 s scrape and evaluation intervals.
    pub fn builder() -> PrometheusBuilder {
        PrometheusBuilder::default()
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.url), query)
            .map_err(|e| format!("bad URL for {path}: {e}"))?;
        let resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let body: Value = resp
            .json()
            .await
            .map_err(|e| format!("GET {path}: body is not JSON: {e}"))?;
        if body["status"] != "success" {
            return Err(format!("GET {path} {query:?}: {body}"));
        }
        Ok(body["data"].clone())
    }

    /// An instant query (`/api/v1/query`) at the current time. Errors carry
    /// Prometheus' own message (a bad expression, say).
    pub async fn query(&self, promql: &str) -> Result<Vec<PromSample>, String> {
        let data = self.api("/api/v1/query", &[("query", promql)]).await?;
        let result = &data["result"];
        match data["resultType"].as_str() {
            Some("vector") => Ok(result
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| PromSample {
                    labels: s["metric"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                                .collect()
                        })
                        .unwrap_or_default(),
                    value: parse_value(&s["value"]),
                })
                .collect()),
            Some("scalar") => Ok(vec![PromSample {
                labels: BTreeMap::new(),
                value: parse_value(result),
            }]),
            other => Err(format!("unexpected result type {other:?} for `{promql}`")),
        }
    }

    /// Runs `promql` every 250 ms until it returns at least one sample, and
    /// returns them; panics after `timeout` with the last answer and the log.
    pub async fn wait_for(&self, promql: &str, timeout: Duration) -> Vec<PromSample> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.query(promql).await;
            if let Ok(samples) = &last {
                if !samples.is_empty() {
                    return samples.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "`{promql}` returned nothing within {timeout:?} (last: {last:?})\nprometheus log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `/api/v1/rules`: every loaded rule as JSON (with `health`, `lastError`, `state`).
    pub async fn rules(&self) -> Vec<Value> {
        let data = self
            .api("/api/v1/rules", &[])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// `/api/v1/targets`: the active targets as JSON (with `health`, `lastError`).
    pub async fn targets(&self) -> Vec<Value> {
        let data = self
            .api("/api/v1/targets", &[])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        data["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

fn parse_value(v: &Value) -> f64 {
    v[1].as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN)
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

// ---------------------------------------------------------------------------------
// Alertmanager

/// The real `monitoring/alertmanager/alertmanager.yml`, made fit for a test: the
/// receivers' `http://alert-webhook:5001` base becomes `webhook_base` (e.g.
/// [`WebhookReceiver::url`]), and `group_wait` / `group_interval` become 1 s. The
/// routes, matchers and inhibition rules are untouched.
pub fn test_alertmanager_config(webhook_base: &str) -> String {
    let path = monitoring_dir().join("alertmanager/alertmanager.yml");
    let text = std::fs::read_to_string(&path).expect("read alertmanager.yml");
    assert!(
        text.contains("http://alert-webhook:5001"),
        "alertmanager.yml no longer sends to http://alert-webhook:5001; update the harness"
    );
    text.replace(
        "http://alert-webhook:5001",
        webhook_base.trim_end_matches('/'),
    )
    .lines()
    .map(|line| {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if trimmed.starts_with("group_wait:") {
            format!("{indent}group_wait: 1s")
        } else if trimmed.starts_with("group_interval:") {
            format!("{indent}group_interval: 1s")
        } else {
            line.to_owned()
        }
    })
    .collect::<Vec<_>>()
    .join("\n")
        + "\n"
}

/// A running Alertmanager (clustering off), killed on drop.
#[derive(Debug)]
pub struct Alertmanager {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Writes `config_yaml`, checks it with amtool, starts `prometheus-alertmanager`
    /// on a free loopback port and waits (at most 30 s) until it is ready.
    pub async fn start(config_yaml: &str) -> Alertmanager {
        let exe = require_tool("prometheus-alertmanager", "prometheus-alertmanager");
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, config_yaml).expect("write config");
        amtool_check_config(&config).assert_success();
        let log = dir.path().join("alertmanager.log");
        let data = dir.path().join("data");
        let (child, addr) = start_on_free_port(&exe, "alertmanager", &log, |addr| {
            vec![
                format!("--config.file={}", config.display()),
                format!("--storage.path={}", data.display()),
                format!("--web.listen-address={addr}"),
                "--cluster.listen-address=".to_owned(),
            ]
        })
        .await;
        Alertmanager {
            child,
            addr,
            log,
            _dir: dir,
        }
    }

    /// Its address (give it to [`PrometheusBuilder::alertmanager`]).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

// ---------------------------------------------------------------------------------
// Webhook receiver

/// One webhook call: the request path and the JSON payload.
#[derive(Debug, Clone)]
pub struct WebhookCall {
    /// The path Alertmanager posted to (e.g. `/alerts/critical`).
    pub path: String,
    /// The Alertmanager webhook payload.
    pub body: Value,
}

/// An HTTP server on 127.0.0.1:0 that records every POST; stops on drop.
#[derive(Debug)]
pub struct WebhookReceiver {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<WebhookCall>>>,
    server: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    /// Starts the receiver on the current Tokio runtime.
    pub async fn start() -> WebhookReceiver {
        let calls: Arc<Mutex<Vec<WebhookCall>>> = Arc::default();
        let store = calls.clone();
        let app =
            axum::Router::new().fallback(move |uri: axum::http::Uri, body: axum::body::Bytes| {
                let store = store.clone();
                async move {
                    let body = serde_json::from_slice(&body)
                        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
                    store
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(WebhookCall {
                            path: uri.path().to_owned(),
                            body,
                        });
                    "ok"
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind webhook receiver");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        WebhookReceiver {
            addr,
            calls,
            server,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<WebhookCall> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every alert received so far with the path it came on: `(path, alert)`.
    pub fn alerts(&self) -> Vec<(String, Value)> {
        self.calls()
            .into_iter()
            .flat_map(|c| {
                let alerts = c.body["alerts"].as_array().cloned().unwrap_or_default();
                alerts.into_iter().map(move |a| (c.path.clone(), a))
            })
            .collect()
    }

    /// Waits (polling every 100 ms, at most `timeout`) for an alert named
    /// `alertname` with status `firing` or `resolved`; returns `(path, alert)`.
    pub async fn wait_for_alert(
        &self,
        alertname: &str,
        status: &str,
        timeout: Duration,
    ) -> (String, Value) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self
                .alerts()
                .into_iter()
                .find(|(_, a)| a["labels"]["alertname"] == alertname && a["status"] == status)
            {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no {status} {alertname} reached the webhook within {timeout:?}; received: {:#?}",
                self.calls()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

// ---------------------------------------------------------------------------------
// Example services

/// The example packages the monitoring tests run, built together by [`example_binary`]
/// (and by `scripts/test.sh` before the suite, with the same command).
pub const EXAMPLE_PACKAGES: [&str; 2] = ["zerostate-node", "ains-api"];

/// Builds `bin` of workspace package `package` (debug profile, in this
/// workspace's target directory, honouring `CARGO_TARGET_DIR`) and returns its
/// path. Each binary is built once per test process. Binaries of other packages
/// have no `CARGO_BIN_EXE_*` here, hence the build.
pub fn example_binary(package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<BTreeMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Mutex::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(bin) {
        return path.clone();
    }
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_relative() { root.join(t) } else { t })
        .unwrap_or_else(|| root.join("target"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Both examples in one build, the same command as scripts/test.sh runs before the
    // suite: one feature set, so the tests find it built instead of compiling the
    // dependency graph again inside a test.
    assert!(
        EXAMPLE_PACKAGES.contains(&package),
        "example_binary builds {EXAMPLE_PACKAGES:?}, not {package}"
    );
    let mut args = vec!["build", "--quiet", "--bins"];
    for p in EXAMPLE_PACKAGES {
        args.extend(["-p", p]);
    }
    let out = Command::new(cargo)
        .current_dir(&root)
        .args(&args)
        .env("CARGO_TARGET_DIR", &target)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    let path = target
        .join("debug")
        .join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.is_file(), "{} was not built", path.display());
    built.insert(bin.to_owned(), path.clone());
    path
}

/// A running example service (`zerostate-node`, `ains-api`): started with
/// `--listen 127.0.0.1:0`, its address read from the `LISTENING <addr>` first line
/// of stderr; JSON logs; killed on drop (or by [`ServiceProcess::kill`]).
#[derive(Debug)]
pub struct ServiceProcess {
    child: Child,
    addr: SocketAddr,
    output: Arc<Mutex<Vec<String>>>,
}

impl ServiceProcess {
    /// Starts `exe --listen 127.0.0.1:0 <args>` and waits (at most 60 s) for its
    /// `LISTENING` line.
    pub fn start(exe: &Path, args: &[&str]) -> ServiceProcess {
        let mut child = Command::new(exe)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("ZS_LOG_FORMAT", "json")
            .env("OTEL_TRACES_SAMPLER", "always_off")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let output: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = mpsc::channel::<String>();
        let stderr = child.stderr.take().expect("piped stderr");
        let store = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                store.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let mut stdout = child.stdout.take().expect("piped stdout");
        let store = output.clone();
        std::thread::spawn(move || {
            // Keep the pipe drained; remember the last lines for failure messages.
            let mut buf = [0u8; 8192];
            let mut pending = String::new();
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                pending.push_str(&String::from_utf8_lossy(&buf[..n]));
                let mut lines = store.lock().unwrap_or_else(|e| e.into_inner());
                while let Some(i) = pending.find('\n') {
                    lines.push(pending[..i].to_owned());
                    pending.drain(..=i);
                }
                let excess = lines.len().saturating_sub(200);
                lines.drain(..excess);
            }
        });
        let addr: SocketAddr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => match line.strip_prefix("LISTENING ") {
                Some(addr) => addr
                    .trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("bad LISTENING line {line:?}: {e}")),
                None => {
                    kill(&mut child);
                    panic!(
                        "{}: first stderr line is {line:?}, not `LISTENING <addr>`",
                        exe.display()
                    )
                }
            },
            Err(_) => {
                kill(&mut child);
                panic!(
                    "{} printed no LISTENING line within 60 s; output: {:#?}",
                    exe.display(),
                    output.lock().unwrap_or_else(|e| e.into_inner())
                )
            }
        };
        ServiceProcess {
            child,
            addr,
            output,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kills it (SIGKILL: no drain, the way a crash looks to Prometheus) and waits.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// The last lines it wrote (stderr and stdout interleaved).
    pub fn output(&self) -> Vec<String> {
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

// ---------------------------------------------------------------------------------
// The whole alerting path

/// The `for:` [`AlertingStack::start`] gives every rule.
pub const E2E_SHORT_FOR: &str = "2s";

/// webhook ← Alertmanager (the real `alertmanager.yml`, see
/// [`test_alertmanager_config`]) ← Prometheus (every real rule file, `for:`
/// shortened to [`E2E_SHORT_FOR`]) scraping one service. An end-to-end alert test
/// is: start the service, `AlertingStack::start(job, addr)`, provoke the
/// condition, `stack.webhook.wait_for_alert(name, "firing", timeout)`.
#[derive(Debug)]
pub struct AlertingStack {
    /// Receives what Alertmanager sends.
    pub webhook: WebhookReceiver,
    /// The running Alertmanager.
    pub alertmanager: Alertmanager,
    /// The running Prometheus.
    pub prometheus: Prometheus,
}

impl AlertingStack {
    /// Starts the stack scraping `addr` as `job` every second and waits (at most
    /// 20 s) until the first scrape succeeded.
    pub async fn start(job: &str, addr: SocketAddr) -> AlertingStack {
        let webhook = WebhookReceiver::start().await;
        let alertmanager = Alertmanager::start(&test_alertmanager_config(&webhook.url())).await;
        let prometheus = Prometheus::builder()
            .scrape(job, addr)
            .real_rules(Some(E2E_SHORT_FOR))
            .alertmanager(alertmanager.addr())
            .start()
            .await;
        prometheus
            .wait_for(
                &format!("up{{job=\"{job}\"}} == 1"),
                Duration::from_secs(20),
            )
            .await;
        AlertingStack {
            webhook,
            alertmanager,
            prometheus,
        }
    }
}

/// The real rule named `alert` (the first one, when several namespaces define it).
pub fn real_rule(alert: &str) -> Rule {
    rule_files()
        .iter()
        .flat_map(|f| load_rules(f))
        .find(|r| r.alert.as_deref() == Some(alert))
        .unwrap_or_else(|| panic!("no alert {alert} in monitoring/prometheus/rules"))
}
