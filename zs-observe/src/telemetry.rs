//! The runtime: one builder that installs the recorder (`crate::exposition`),
//! constant labels, `<namespace>_build_info`, and optionally an admin listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::exposition::{BucketConfig, MetricsHandle, Registry, ZsRecorder};

use crate::catalog::{rules, Catalog, MetricKind};
use crate::http;
use crate::logging::{LogFormat, LogRateLimit, LogSink};
use crate::otel::{OtlpProtocol, TraceSampler, TraceSettings};
use crate::subscriber::{LevelControl, SubscriberSettings};

/// Prometheus' default buckets, in seconds: fit for request and call durations.
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Why [`TelemetryBuilder::install`] failed.
///
/// Configuration errors are found before anything global is installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// Histogram buckets were empty, unsorted or not finite.
    #[error("invalid histogram buckets for {metric}: {reason}")]
    InvalidBuckets {
        /// The metric, or `default`.
        metric: String,
        /// What is wrong with them.
        reason: String,
    },
    /// A name or label given to the builder is not a valid Prometheus name.
    #[error("invalid {what} `{value}`: {reason}")]
    InvalidName {
        /// `namespace`, `label name`, ...
        what: &'static str,
        /// The rejected value.
        value: String,
        /// Why.
        reason: String,
    },
    /// Another `metrics` recorder is already installed in this process.
    #[error("a global metrics recorder is already installed")]
    RecorderAlreadyInstalled,
    /// Another `tracing` subscriber is already installed in this process.
    #[error("a global tracing subscriber is already installed")]
    SubscriberAlreadyInstalled,
    /// The trace configuration (builder or `OTEL_*` environment) is invalid, or
    /// the OTLP exporter could not be built.
    #[error("tracing: {0}")]
    Tracing(String),
    /// The log configuration (`RUST_LOG`, `ZS_LOG_FORMAT`, level directives) is invalid.
    #[error("logging: {0}")]
    Logging(String),
    /// The exposure configuration is inconsistent or unsafe: an admin token that is too
    /// short or not a header-safe string (the token itself is never shown), `/metrics`
    /// moved to an admin listener that is not configured, or the log-level endpoint
    /// without the subscriber it controls; after `install`, application admin routes
    /// with nowhere safe to go ([`Telemetry::mount_admin_routes`] without an admin
    /// listener or twice, [`Telemetry::guard_admin`] without a token).
    #[error("exposure: {0}")]
    Exposure(String),
    /// The admin listener could not bind or start.
    #[error("admin listener on {addr}: {source}")]
    AdminListener {
        /// The requested address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Builds and installs the runtime. Start with [`Telemetry::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct TelemetryBuilder {
    service_name: Option<String>,
    namespace: Option<String>,
    version: Option<String>,
    environment: Option<String>,
    constant_labels: bool,
    extra_labels: Vec<(String, String)>,
    default_buckets: Vec<f64>,
    buckets: Vec<(String, Vec<f64>)>,
    admin_listener: Option<SocketAddr>,
    /// Redacted in `Debug`.
    admin_token: Option<http::AdminToken>,
    metrics_on_admin_only: bool,
    profile_endpoint: bool,
    catalog: Option<Catalog>,
    traces: TraceSettings,
    logs: SubscriberSettings,
    default_label_bound: usize,
    series_limit: usize,
}

impl Default for TelemetryBuilder {
    fn default() -> Self {
        TelemetryBuilder {
            service_name: None,
            namespace: None,
            version: None,
            environment: None,
            constant_labels: true,
            extra_labels: Vec::new(),
            default_buckets: DEFAULT_BUCKETS.to_vec(),
            buckets: Vec::new(),
            admin_listener: None,
            admin_token: None,
            metrics_on_admin_only: false,
            profile_endpoint: false,
            catalog: None,
            traces: TraceSettings {
                enabled: true,
                ..TraceSettings::default()
            },
            logs: SubscriberSettings::default(),
            default_label_bound: crate::cardinality::DEFAULT_BOUND,
            series_limit: crate::cardinality::DEFAULT_SERIES_LIMIT,
        }
    }
}

impl TelemetryBuilder {
    /// The service name. `OTEL_SERVICE_NAME`, when set, takes precedence so that
    /// operators can rename a deployment without a rebuild. Default: `unknown_service`.
    pub fn with_service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// The metric namespace (prefix of `<namespace>_build_info`, the HTTP metrics, ...).
    /// Default: the service name with `-` and `.` turned into `_`.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The service version, usually `env!("CARGO_PKG_VERSION")`. Default: `unknown`.
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// The deployment environment. `ZS_ENVIRONMENT`, when set, takes precedence.
    /// Default: `development`.
    pub fn with_environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = Some(environment.into());
        self
    }

    /// Whether `service`, `version` and `environment` are added to every series
    /// (default `true`). Turn off when Prometheus' target labels carry them; they
    /// stay on `<namespace>_build_info` either way.
    pub fn with_constant_labels(mut self, enabled: bool) -> Self {
        self.constant_labels = enabled;
        self
    }

    /// One more label added to every series.
    pub fn with_constant_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_labels.push((key.into(), value.into()));
        self
    }

    /// Buckets for every histogram without its own (default [`DEFAULT_BUCKETS`]).
    /// Histograms always render as `_bucket` series, never as summaries.
    pub fn with_default_buckets(mut self, buckets: &[f64]) -> Self {
        self.default_buckets = buckets.to_vec();
        self
    }

    /// Buckets for one histogram, by its full name.
    pub fn with_buckets(mut self, metric: impl Into<String>, buckets: &[f64]) -> Self {
        self.buckets.push((metric.into(), buckets.to_vec()));
        self
    }

    /// Serves [`Telemetry::admin_router`] (`GET /metrics`, the log-level and profile
    /// endpoints when enabled, and the application's routes given to
    /// [`Telemetry::mount_admin_routes`]) on its own listener (its own thread and runtime,
    /// so a saturated application runtime does not stall scrapes). Port 0 picks a free
    /// port; see [`Telemetry::admin_addr`]. Bind it to a private interface
    /// (`127.0.0.1:9464`, a pod-internal port) rather than the public one.
    pub fn with_admin_listener(mut self, addr: SocketAddr) -> Self {
        self.admin_listener = Some(addr);
        self
    }

    /// Serves `/metrics` only on the admin listener: [`Telemetry::metrics_router`] then
    /// has no route, so an application router that merges it answers `/metrics` with its
    /// 404. Needs [`with_admin_listener`](Self::with_admin_listener) (`install` fails
    /// otherwise, as the metrics would be served nowhere). Default `false`.
    pub fn with_metrics_on_admin_only(mut self, enabled: bool) -> Self {
        self.metrics_on_admin_only = enabled;
        self
    }

    /// Requires `Authorization: Bearer <token>` on the admin endpoints that control or
    /// inspect the process: `/log-level`, `/debug/profile` and the application's routes
    /// mounted with [`Telemetry::mount_admin_routes`] (wherever
    /// [`Telemetry::admin_router`] is served); [`Telemetry::guard_admin`] applies the same
    /// check to a router of the application's. A request without it, or with another
    /// token, gets `401 Unauthorized` with a `WWW-Authenticate` challenge and a one-line
    /// reason; tokens are compared in constant time. `/metrics` stays open, so scrapers
    /// need no credentials. `ZS_ADMIN_TOKEN`, when set and not blank, takes precedence,
    /// so the secret can come from the deployment rather than the code. The token must
    /// be 16 to 4096 visible ASCII characters; `install` fails otherwise (without
    /// showing it). Default: no token.
    pub fn with_admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(http::AdminToken(token.into().into()));
        self
    }

    /// Serves `GET /debug/profile` on [`Telemetry::admin_router`] and the admin listener:
    /// a JSON snapshot of every `#[instrumented]` call site linked into the binary (calls
    /// by outcome, total and mean duration since start, calls in flight), plus the
    /// process's CPU time, resident memory and threads from `/proc`. It reports what the
    /// runtime already measures; it is **not** a sampling CPU profile (no stacks, no
    /// pprof). Off by default; pair it with [`with_admin_token`](Self::with_admin_token).
    pub fn with_profile_endpoint(mut self, enabled: bool) -> Self {
        self.profile_endpoint = enabled;
        self
    }

    /// The most distinct values a per-call label keeps when the catalog gives it no
    /// bound (default 1000); past it, values are recorded as `_overflow` and counted
    /// in `<namespace>_cardinality_overflow_total` (see docs/catalog.md, "Cardinality guard").
    pub fn with_default_label_bound(mut self, bound: usize) -> Self {
        self.default_label_bound = bound.max(1);
        self
    }

    /// The most series (distinct label sets) one metric family keeps, for every
    /// metric the catalog does not declare (default
    /// [`DEFAULT_SERIES_LIMIT`](crate::cardinality::DEFAULT_SERIES_LIMIT), 10,000; at
    /// least 1). A catalog metric keeps instead every label set the label guard can
    /// let through (its labels' declared bounds, or the default label bound for a
    /// label it does not declare, each plus `_overflow`). This bounds what the label guard does not see, such as a third-party
    /// `metrics::counter!("x_total", "peer" => value)` with unbounded values: past
    /// the limit a new label set is recorded on the family's one overflow series
    /// (same label names, every value `_overflow`) and counted in
    /// `<namespace>_cardinality_overflow_total{metric, label}`. Existing series and
    /// handles keep working; the check runs only when a new label set registers (see
    /// docs/catalog.md, "Series limit").
    pub fn with_series_limit(mut self, limit: usize) -> Self {
        self.series_limit = limit.max(1);
        self
    }

    /// Shorthand for `.with_log_format(LogFormat::Console)` (`true`) or
    /// `.with_log_format(LogFormat::Json)` (`false`).
    pub fn with_console_logs(self, enabled: bool) -> Self {
        self.with_log_format(if enabled {
            LogFormat::Console
        } else {
            LogFormat::Json
        })
    }

    /// Whether `install` sets the global `tracing` subscriber (default `true`): the
    /// OTLP trace layer plus the log layer. Turn off when the application installs
    /// its own subscriber; metrics work either way.
    pub fn with_subscriber(mut self, enabled: bool) -> Self {
        self.logs.install = enabled;
        self
    }

    /// The log format (default JSON). `ZS_LOG_FORMAT` (`json`, `console`), when
    /// set, takes precedence, so a deployment can switch without a rebuild.
    pub fn with_log_format(mut self, format: LogFormat) -> Self {
        self.logs.format = Some(format);
        self
    }

    /// Where log lines go (default: stdout for JSON, stderr for the console format).
    pub fn with_log_sink(mut self, sink: LogSink) -> Self {
        self.logs.sink = Some(sink);
        self
    }

    /// Level directives (`EnvFilter` syntax, e.g. `info,zerostate::p2p=debug`) used
    /// when `RUST_LOG` is not set. Default `info`.
    pub fn with_log_level(mut self, directives: impl Into<String>) -> Self {
        self.logs.level = Some(directives.into());
        self
    }

    /// Serves `GET /log-level` (the current directives) and `PUT /log-level`
    /// (new directives in the body) on [`Telemetry::admin_router`] and the admin
    /// listener, never on [`Telemetry::metrics_router`]. Off by default; pair it with
    /// [`with_admin_token`](Self::with_admin_token). Needs the subscriber
    /// ([`with_subscriber`](Self::with_subscriber), on by default): `install` fails
    /// otherwise.
    pub fn with_log_level_endpoint(mut self, enabled: bool) -> Self {
        self.logs.level_endpoint = enabled;
        self
    }

    /// Keeps at most `per_second` events a second from targets starting with
    /// `target` at `level` or more verbose; the rest are dropped and counted in
    /// `<namespace>_log_events_sampled_out_total{level}`. The first matching limit applies.
    pub fn with_log_rate_limit(
        mut self,
        target: impl Into<String>,
        level: tracing::Level,
        per_second: u32,
    ) -> Self {
        self.logs.rate_limits.push(LogRateLimit {
            target: target.into(),
            level,
            per_second,
        });
        self
    }

    /// One more sensitive field name, redacted in logs and span attributes like the
    /// built-in ones (`password`, `secret`, `token`, `api_key`, `authorization`, ...):
    /// any field whose name contains it, ignoring case.
    pub fn with_redacted_field(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.logs.redact.push(name.clone());
        self.traces.redact.push(name);
        self
    }

    /// Whether spans are recorded for OpenTelemetry at all (default `true`). With
    /// tracing on and no endpoint configured, spans get trace ids (logs carry them,
    /// `traceparent` propagates) but nothing is exported.
    pub fn with_tracing(mut self, enabled: bool) -> Self {
        self.traces.enabled = enabled;
        self
    }

    /// The OTLP endpoint, like `OTEL_EXPORTER_OTLP_ENDPOINT` (which it overrides):
    /// `http://collector:4317` for gRPC, `http://collector:4318` for HTTP (the
    /// `/v1/traces` path is appended).
    pub fn with_otlp_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.traces.endpoint = Some(endpoint.into());
        self
    }

    /// The OTLP protocol, overriding `OTEL_EXPORTER_OTLP_PROTOCOL`. Default
    /// `http/protobuf`, as the specification says.
    pub fn with_otlp_protocol(mut self, protocol: OtlpProtocol) -> Self {
        self.traces.protocol = Some(protocol);
        self
    }

    /// The sampler, overriding `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`.
    /// Default: parent-based, ratio 0.1.
    pub fn with_sampler(mut self, sampler: TraceSampler) -> Self {
        self.traces.sampler = Some(sampler);
        self
    }

    /// The bounded span queue (default 2048, or `OTEL_BSP_MAX_QUEUE_SIZE`). When it
    /// is full, ended spans are dropped and counted in
    /// `<namespace>_trace_spans_dropped_total{reason="queue_full"}`.
    pub fn with_trace_queue_size(mut self, spans: usize) -> Self {
        self.traces.queue_size = Some(spans);
        self
    }

    /// Export batches: at most `max_spans` spans, sent at least every `delay`
    /// (defaults 512 and 5 s, or `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` / `OTEL_BSP_SCHEDULE_DELAY`).
    pub fn with_trace_batch(mut self, max_spans: usize, delay: Duration) -> Self {
        self.traces.batch_size = Some(max_spans);
        self.traces.schedule_delay = Some(delay);
        self
    }

    /// How long one export may take before its spans count as dropped
    /// (`reason="export_failed"`). Default 10 s, or `OTEL_EXPORTER_OTLP_TIMEOUT`.
    pub fn with_trace_export_timeout(mut self, timeout: Duration) -> Self {
        self.traces.export_timeout = Some(timeout);
        self
    }

    /// One more resource attribute on every exported span (after
    /// `OTEL_RESOURCE_ATTRIBUTES`, which is read too).
    pub fn with_resource_attribute(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.traces
            .resource_attributes
            .push((key.into(), value.into()));
        self
    }

    /// Which spans reach the OpenTelemetry layer (`EnvFilter` syntax, default
    /// `info`), independent of the log level: `RUST_LOG=warn` keeps the traces.
    pub fn with_trace_filter(mut self, directives: impl Into<String>) -> Self {
        self.logs.trace_filter = Some(directives.into());
        self
    }

    /// The service's metric catalog (see `docs/catalog.md`): every metric is described
    /// (`# HELP` and unit), each histogram gets its catalog buckets (explicit
    /// [`with_buckets`](Self::with_buckets) still win), and its label bounds are
    /// available from [`Telemetry::catalog`]. Its namespace becomes the default namespace.
    ///
    /// ```no_run
    /// let catalog = zs_observe::include_catalog!("../../monitoring/catalog/zerostate.toml")
    ///     .expect("valid catalog");
    /// let telemetry = zs_observe::Telemetry::builder().with_catalog(catalog).install()?;
    /// # Ok::<(), zs_observe::InitError>(())
    /// ```
    pub fn with_catalog(mut self, catalog: Catalog) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Installs the recorder globally (and starts the admin listener, when configured).
    pub fn install(self) -> Result<Telemetry, InitError> {
        let exposure = self.exposure()?;
        let service = env_over("OTEL_SERVICE_NAME", self.service_name)
            .unwrap_or_else(|| "unknown_service".to_owned());
        let namespace = self
            .namespace
            .or_else(|| self.catalog.as_ref().and_then(|c| c.namespace.clone()))
            .unwrap_or_else(|| service.replace(['-', '.', ' '], "_"));
        check_name("namespace", &namespace)?;
        let version = self.version.unwrap_or_else(|| "unknown".to_owned());
        let environment = env_over("ZS_ENVIRONMENT", self.environment)
            .unwrap_or_else(|| "development".to_owned());

        check_buckets("default", &self.default_buckets)?;
        let mut buckets = BucketConfig::new(&self.default_buckets);
        if let Some(catalog) = &self.catalog {
            if let Some(default) = &catalog.default_buckets {
                check_buckets("catalog default_buckets", default)?;
                buckets.set_default(default);
            }
            for metric in catalog
                .metrics
                .iter()
                .filter(|m| m.kind == MetricKind::Histogram)
            {
                if let Some(upper) = &metric.buckets {
                    check_buckets(&metric.name, upper)?;
                    buckets.set(&metric.name, upper);
                }
            }
        }
        for (metric, upper) in &self.buckets {
            check_buckets(metric, upper)?;
            buckets.set(metric, upper);
        }
        let mut labels = Vec::new();
        if self.constant_labels {
            labels.push(("service".to_owned(), service.clone()));
            labels.push(("version".to_owned(), version.clone()));
            labels.push(("environment".to_owned(), environment.clone()));
        }
        for (key, value) in self.extra_labels {
            check_name("label name", &key)?;
            match labels.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => labels.push((key, value)),
            }
        }
        for (key, _) in &labels {
            check_name("label name", key)?;
        }
        let registry = Arc::new(Registry::new(labels, buckets).with_series_limits(
            crate::exposition::SeriesLimits::new(
                self.series_limit,
                self.catalog.as_ref(),
                self.default_label_bound,
                &namespace,
            ),
        ));
        let handle = MetricsHandle {
            registry: registry.clone(),
        };

        // Bind before installing anything, so a bad address leaves no global state behind.
        let admin_listener = match self.admin_listener {
            Some(addr) => Some(
                std::net::TcpListener::bind(addr)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .map_err(|source| InitError::AdminListener { addr, source })?,
            ),
            None => None,
        };

        // Trace and log configuration errors are found before anything is installed.
        let resolved = if self.traces.enabled {
            Some(
                self.traces
                    .resolve(&crate::otel::env_var)
                    .map_err(InitError::Tracing)?,
            )
        } else {
            None
        };
        let log_plan = self.logs.plan().map_err(InitError::Logging)?;

        metrics::set_global_recorder(ZsRecorder {
            registry: registry.clone(),
        })
        .map_err(|_| InitError::RecorderAlreadyInstalled)?;
        // Before call sites may cache handles, so they all take the direct path.
        crate::exposition::mark_installed(registry);
        crate::callsite::warm_clock();
        crate::callsite::mark_recorder_installed();
        crate::cardinality::configure(&namespace, self.catalog.as_ref(), self.default_label_bound);

        let traces = match resolved {
            Some(resolved) => Some(
                crate::otel::TracePipeline::build(
                    &self.traces,
                    resolved,
                    &crate::otel::ServiceIdentity {
                        service: &service,
                        version: &version,
                        environment: &environment,
                    },
                    &namespace,
                )
                .map_err(InitError::Tracing)?,
            ),
            None => None,
        };
        let level = if self.logs.install {
            Some(crate::subscriber::install(
                log_plan,
                &self.logs,
                traces.as_ref(),
                &service,
                &namespace,
            )?)
        } else {
            None
        };
        if let Some(traces) = &traces {
            opentelemetry::global::set_tracer_provider(traces.provider.clone());
        }

        let build_info = format!("{namespace}_build_info");
        metrics::describe_gauge!(
            build_info.clone(),
            "Build and deployment information of the running service; the value is always 1."
        );
        metrics::gauge!(build_info, "version" => version.clone(), "environment" => environment.clone())
            .set(1.0);
        // After the runtime's own descriptions, so the catalog's text wins.
        if let Some(catalog) = &self.catalog {
            describe_catalog(catalog);
        }

        let mounted = http::MountedRoutes::default();
        let admin = match admin_listener {
            Some(listener) => {
                let router = admin_router(&handle, level.as_ref(), &exposure, &mounted);
                Some(
                    http::AdminServer::start(listener, router).map_err(|source| {
                        InitError::AdminListener {
                            addr: self
                                .admin_listener
                                .unwrap_or_else(|| ([127, 0, 0, 1], 0).into()),
                            source,
                        }
                    })?,
                )
            }
            None => None,
        };

        Ok(Telemetry {
            handle,
            catalog: self.catalog,
            service,
            namespace,
            version,
            environment,
            admin,
            traces,
            level,
            exposure,
            mounted,
        })
    }

    /// The admin endpoints' settings, checked: the token (environment first), and the
    /// combinations that would silently expose or serve nothing.
    fn exposure(&self) -> Result<Exposure, InitError> {
        let from_env = std::env::var("ZS_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
            .map(|t| http::AdminToken(t.into()));
        let token = from_env.or_else(|| self.admin_token.clone());
        if let Some(token) = &token {
            check_token(&token.0)?;
        }
        if self.metrics_on_admin_only && self.admin_listener.is_none() {
            return Err(InitError::Exposure(
                "with_metrics_on_admin_only(true) needs with_admin_listener(addr): \
                 /metrics would be served nowhere"
                    .to_owned(),
            ));
        }
        if self.logs.level_endpoint && !self.logs.install {
            return Err(InitError::Exposure(
                "with_log_level_endpoint(true) needs the subscriber (with_subscriber(true)): \
                 there would be no level to change"
                    .to_owned(),
            ));
        }
        Ok(Exposure {
            level_endpoint: self.logs.level_endpoint,
            profile_endpoint: self.profile_endpoint,
            metrics_on_admin_only: self.metrics_on_admin_only,
            token,
        })
    }
}

/// Which admin endpoints exist, where `/metrics` is served, and the token guarding them.
#[derive(Debug, Clone)]
struct Exposure {
    level_endpoint: bool,
    profile_endpoint: bool,
    metrics_on_admin_only: bool,
    token: Option<http::AdminToken>,
}

/// Shortest and longest admin token accepted.
const TOKEN_LENGTHS: std::ops::RangeInclusive<usize> = 16..=4096;

/// A token must be long enough to resist guessing and fit an `Authorization` header
/// unchanged. The reason never includes the token.
fn check_token(token: &str) -> Result<(), InitError> {
    if !TOKEN_LENGTHS.contains(&token.len()) {
        return Err(InitError::Exposure(format!(
            "the admin token (with_admin_token or ZS_ADMIN_TOKEN) has {} characters; it \
             needs {} to {}",
            token.len(),
            TOKEN_LENGTHS.start(),
            TOKEN_LENGTHS.end()
        )));
    }
    if let Some(position) = token.bytes().position(|b| !b.is_ascii_graphic()) {
        return Err(InitError::Exposure(format!(
            "the admin token (with_admin_token or ZS_ADMIN_TOKEN) has a character that is \
             not visible ASCII at position {position}"
        )));
    }
    Ok(())
}

/// The environment variable `var` when set and not blank, else the builder's value.
fn env_over(var: &str, configured: Option<String>) -> Option<String> {
    prefer(std::env::var(var).ok(), configured)
}

fn prefer(from_env: Option<String>, configured: Option<String>) -> Option<String> {
    from_env.filter(|s| !s.trim().is_empty()).or(configured)
}

/// `/metrics`, plus the enabled control endpoints behind the token (when one is set),
/// plus the application's mounted admin routes (already behind it).
fn admin_router(
    handle: &MetricsHandle,
    level: Option<&LevelControl>,
    exposure: &Exposure,
    mounted: &http::MountedRoutes,
) -> axum::Router {
    let mut guarded = axum::Router::new();
    if let (Some(level), true) = (level, exposure.level_endpoint) {
        guarded = guarded.merge(crate::subscriber::level_router(level.clone()));
    }
    if exposure.profile_endpoint {
        guarded = guarded.merge(crate::profile::profile_router(handle.clone()));
    }
    if let Some(token) = &exposure.token {
        guarded = http::require_token(guarded, token.clone());
    }
    http::with_mounted(
        http::metrics_router(handle.clone()).merge(guarded),
        mounted.clone(),
    )
}

/// Describes every catalog metric to the installed recorder: `# HELP` and unit.
fn describe_catalog(catalog: &Catalog) {
    for m in &catalog.metrics {
        let unit = m.unit.as_deref().and_then(metrics::Unit::from_string);
        let (name, help) = (m.name.clone(), m.help.clone());
        match (m.kind, unit) {
            (MetricKind::Counter, Some(u)) => metrics::describe_counter!(name, u, help),
            (MetricKind::Counter, None) => metrics::describe_counter!(name, help),
            (MetricKind::Gauge, Some(u)) => metrics::describe_gauge!(name, u, help),
            (MetricKind::Gauge, None) => metrics::describe_gauge!(name, help),
            (MetricKind::Histogram, Some(u)) => metrics::describe_histogram!(name, u, help),
            (MetricKind::Histogram, None) => metrics::describe_histogram!(name, help),
        }
    }
}

fn check_buckets(metric: &str, buckets: &[f64]) -> Result<(), InitError> {
    match rules::bucket_problem(buckets) {
        Some(reason) => Err(InitError::InvalidBuckets {
            metric: metric.to_owned(),
            reason: reason.to_owned(),
        }),
        None => Ok(()),
    }
}

/// Namespaces and constant label names follow the label-name rules (no `:`, no `__`).
fn check_name(what: &'static str, name: &str) -> Result<(), InitError> {
    match rules::label_name_problem(name) {
        Some(reason) => Err(InitError::InvalidName {
            what,
            value: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The installed runtime. Keep it alive for the life of the program: dropping it
/// flushes traces and stops the admin listener (the recorder stays installed).
#[derive(Debug)]
pub struct Telemetry {
    handle: MetricsHandle,
    catalog: Option<Catalog>,
    service: String,
    namespace: String,
    version: String,
    environment: String,
    admin: Option<http::AdminServer>,
    traces: Option<crate::otel::TracePipeline>,
    level: Option<LevelControl>,
    exposure: Exposure,
    mounted: http::MountedRoutes,
}

/// What the trace export pipeline has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TraceStats {
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans dropped because the queue was full (collector slow or down).
    pub dropped_queue_full: u64,
    /// Spans in batches the collector refused, failed or did not answer in time.
    pub dropped_export_failed: u64,
}

impl Telemetry {
    /// Starts configuring the runtime.
    pub fn builder() -> TelemetryBuilder {
        TelemetryBuilder::default()
    }

    /// The Prometheus text exposition of every metric recorded in this process,
    /// `#[instrumented]` or plain `metrics::` calls alike.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// The exposition's handle, for a transport of your own (and series counts).
    pub fn metrics_handle(&self) -> &MetricsHandle {
        &self.handle
    }

    /// An axum router serving `GET /metrics`; merge it into the application's router.
    /// With [`TelemetryBuilder::with_metrics_on_admin_only`] it has no route: `/metrics`
    /// is then served by the admin listener only.
    pub fn metrics_router(&self) -> axum::Router {
        if self.exposure.metrics_on_admin_only {
            return axum::Router::new();
        }
        http::metrics_router(self.handle.clone())
    }

    /// The bound address of the admin listener, when one was configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(http::AdminServer::local_addr)
    }

    /// The catalog given to the builder: allowed label values and cardinality bounds.
    pub fn catalog(&self) -> Option<&Catalog> {
        self.catalog.as_ref()
    }

    /// An axum router with `GET /metrics` and, when enabled,
    /// `GET`/`PUT /log-level` ([`TelemetryBuilder::with_log_level_endpoint`]) and
    /// `GET /debug/profile` ([`TelemetryBuilder::with_profile_endpoint`]), those two
    /// behind the admin token when one is set ([`TelemetryBuilder::with_admin_token`]),
    /// and the routes given to [`mount_admin_routes`](Self::mount_admin_routes) (behind
    /// it too). The admin listener serves exactly this; serve it yourself only on a private
    /// listener.
    pub fn admin_router(&self) -> axum::Router {
        admin_router(
            &self.handle,
            self.level.as_ref(),
            &self.exposure,
            &self.mounted,
        )
    }

    /// Serves the application's own admin routes (a profiler, a cache dump, a feature
    /// switch...) on the admin listener, next to `/metrics`, behind the admin token when
    /// one is set ([`TelemetryBuilder::with_admin_token`]): without it, or with another
    /// one, they answer `401` like `/log-level` (so does every path of the admin listener
    /// that no route matches, since it goes to the mounted router). Without a token the admin listener itself
    /// is the protection, so bind it to an address only operators reach. The routes are
    /// never served by [`metrics_router`](Self::metrics_router), so an application
    /// listener answers them with its own 404; they are also in
    /// [`admin_router`](Self::admin_router).
    ///
    /// Call it once, after `install` (so the routes can hold application state built
    /// after the runtime); merge several routers into one first. A built-in route
    /// (`/metrics`, `/log-level`, `/debug/profile`) wins over a mounted one with the same
    /// path. The routes run on the admin listener's own thread and single-threaded
    /// runtime: move blocking work to `tokio::task::spawn_blocking`.
    ///
    /// # Errors
    ///
    /// [`InitError::Exposure`] without an admin listener
    /// ([`TelemetryBuilder::with_admin_listener`]) — the routes would be served nowhere —
    /// or when routes were already mounted.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let telemetry = zs_observe::Telemetry::builder()
    ///     .with_service_name("ains-api")
    ///     .with_admin_listener("127.0.0.1:9464".parse()?)
    ///     .with_admin_token("change-me-to-a-long-random-secret") // or ZS_ADMIN_TOKEN
    ///     .install()?;
    /// let debug = axum::Router::new()
    ///     .route("/debug/cache", axum::routing::get(|| async { "cache entries: 12" }));
    /// // 200 on 127.0.0.1:9464 with `Authorization: Bearer <token>`, 401 without.
    /// telemetry.mount_admin_routes(debug)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn mount_admin_routes(&self, routes: axum::Router) -> Result<(), InitError> {
        if self.admin.is_none() {
            return Err(InitError::Exposure(
                "mount_admin_routes needs with_admin_listener(addr): the routes would be \
                 served nowhere"
                    .to_owned(),
            ));
        }
        let routes = match &self.exposure.token {
            Some(token) => http::require_token_everywhere(routes, token.clone()),
            None => routes,
        };
        self.mounted.set(routes).map_err(|_| {
            InitError::Exposure(
                "admin routes are already mounted: merge the routers into one and mount \
                 them once"
                    .to_owned(),
            )
        })
    }

    /// Puts every route of `router` behind the admin token, for admin routes the
    /// application serves on a listener of its own: a request without
    /// `Authorization: Bearer <token>`, or with another token, gets the same `401` (with
    /// a reason and a `WWW-Authenticate` challenge) as `/log-level`. The check covers
    /// every request the router sees, its fallback included (a path it does not have is a
    /// `401` without the token, its `404` with it), so merging the result into a larger
    /// router guards exactly these routes. To serve admin routes on the admin listener, use
    /// [`mount_admin_routes`](Self::mount_admin_routes) instead.
    ///
    /// # Errors
    ///
    /// [`InitError::Exposure`] when no token is configured
    /// ([`TelemetryBuilder::with_admin_token`] or `ZS_ADMIN_TOKEN`): the guard would let
    /// everybody in, so it refuses rather than serve the routes unprotected.
    pub fn guard_admin(&self, router: axum::Router) -> Result<axum::Router, InitError> {
        match &self.exposure.token {
            Some(token) => Ok(http::require_token_everywhere(router, token.clone())),
            None => Err(InitError::Exposure(
                "guard_admin needs an admin token (with_admin_token or ZS_ADMIN_TOKEN): \
                 without one the routes would be open to everybody"
                    .to_owned(),
            )),
        }
    }

    /// Changes the log level directives at run time (`EnvFilter` syntax).
    pub fn set_log_level(&self, directives: &str) -> Result<(), InitError> {
        match &self.level {
            Some(level) => level.set(directives).map_err(InitError::Logging),
            None => Err(InitError::Logging(
                "no subscriber was installed by zs-observe".to_owned(),
            )),
        }
    }

    /// The current log level directives, when zs-observe installed the subscriber.
    pub fn log_level(&self) -> Option<String> {
        self.level.as_ref().map(LevelControl::current)
    }

    /// Counts of exported and dropped spans (all zero when nothing is exported).
    pub fn trace_stats(&self) -> TraceStats {
        use std::sync::atomic::Ordering::Relaxed;
        match &self.traces {
            Some(t) => TraceStats {
                exported: t.stats.exported.load(Relaxed),
                dropped_queue_full: t.stats.dropped_queue_full.load(Relaxed),
                dropped_export_failed: t.stats.dropped_export_failed.load(Relaxed),
            },
            None => TraceStats::default(),
        }
    }

    /// Whether spans are exported (an OTLP endpoint was configured).
    pub fn exports_traces(&self) -> bool {
        self.traces
            .as_ref()
            .is_some_and(|t| t.resolved.export.is_some())
    }

    /// Exports every ended span now; waits at most the export timeout plus a second.
    pub fn flush(&self) -> Result<(), String> {
        match &self.traces {
            Some(t) => t.provider.force_flush().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// Flushes and stops the trace pipeline, waiting at most `timeout`. Dropping
    /// the `Telemetry` does the same with a 5 s bound.
    pub fn shutdown(&mut self, timeout: Duration) -> Result<(), String> {
        match self.traces.take() {
            Some(t) => t
                .provider
                .shutdown_with_timeout(timeout)
                .map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// The resolved service name.
    pub fn service_name(&self) -> &str {
        &self.service
    }

    /// The metric namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The service version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The deployment environment.
    pub fn environment(&self) -> &str {
        &self.environment
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.shutdown(Duration::from_secs(5));
        // The admin server stops in its own Drop.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_checked() {
        assert!(check_buckets("m", &[]).is_err());
        assert!(check_buckets("m", &[1.0, 1.0]).is_err());
        assert!(check_buckets("m", &[2.0, 1.0]).is_err());
        assert!(check_buckets("m", &[1.0, f64::INFINITY]).is_err());
        assert!(check_buckets("m", DEFAULT_BUCKETS).is_ok());
    }

    #[test]
    fn environment_wins_over_builder_unless_blank() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(prefer(s("from-env"), s("from-code")), s("from-env"));
        assert_eq!(prefer(s("  "), s("from-code")), s("from-code"));
        assert_eq!(prefer(None, s("from-code")), s("from-code"));
        assert_eq!(prefer(None, None), None);
    }

    #[test]
    fn configuration_errors_install_nothing() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = Telemetry::builder()
            .with_admin_listener(taken.local_addr().unwrap())
            .install()
            .expect_err("address in use");
        assert!(matches!(err, InitError::AdminListener { .. }), "{err}");
        let err = Telemetry::builder()
            .with_buckets("m_seconds", &[])
            .install()
            .expect_err("empty buckets");
        assert!(err.to_string().contains("m_seconds"), "{err}");
        let err = Telemetry::builder()
            .with_namespace("zero-state")
            .install()
            .expect_err("bad namespace");
        assert!(
            matches!(
                err,
                InitError::InvalidName {
                    what: "namespace",
                    ..
                }
            ),
            "{err}"
        );
        // None of the failures above installed the recorder: this one succeeds.
        let telemetry = Telemetry::builder()
            .with_service_name("unit")
            .install()
            .expect("installs");
        assert!(telemetry.render().contains("unit_build_info"));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("namespace", "zerostate").is_ok());
        assert!(check_name("namespace", "zero-state").is_err());
        assert!(check_name("namespace", "").is_err());
        assert!(check_name("label name", "service").is_ok());
        assert!(check_name("label name", "__name__").is_err());
        assert!(check_name("label name", "1abc").is_err());
    }
}
