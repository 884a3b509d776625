//! The registry: its builder, its lifecycle state (startup, draining) and how reports are
//! assembled for each probe. How checks run is in `run.rs`.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::check::{name_problem, Check, CheckSpec, Kind, DEFAULT_TIMEOUT};
use crate::metrics::MetricNames;
use crate::report::{CheckEntry, CheckMeta, HealthReport, Probe, ServiceInfo};
use crate::run::{refresh_loop, start_runs, Mode, Slot, SlotState};

/// Why [`HealthRegistryBuilder::build`] refused a configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// A check name is not of the `component:measurement` form.
    #[error("invalid check name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two checks have the same name.
    #[error("check {0:?} is registered twice")]
    DuplicateName(String),
    /// A check (or the default) has a zero timeout.
    #[error("check {0:?} has a zero timeout")]
    ZeroTimeout(String),
    /// The background refresh interval is zero.
    #[error("the refresh interval must be greater than zero")]
    ZeroInterval,
    /// The metric namespace would make invalid Prometheus names.
    #[error("invalid metric namespace {namespace:?}: {reason}")]
    InvalidNamespace {
        /// The namespace.
        namespace: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Background refresh was asked for, but `build()` was not called inside a Tokio runtime.
    #[error("with_refresh_interval needs build() to be called inside a Tokio runtime")]
    NoRuntime,
}

/// Builds a [`HealthRegistry`]; see [`HealthRegistry::builder`].
#[must_use]
pub struct HealthRegistryBuilder {
    namespace: Option<String>,
    service_id: Option<String>,
    version: Option<String>,
    description: Option<String>,
    ttl: Duration,
    refresh_interval: Option<Duration>,
    default_timeout: Duration,
    metrics: bool,
    specs: Vec<CheckSpec>,
}

impl fmt::Debug for HealthRegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthRegistryBuilder")
            .field("namespace", &self.namespace)
            .field("service_id", &self.service_id)
            .field("ttl", &self.ttl)
            .field("refresh_interval", &self.refresh_interval)
            .field("checks", &self.specs)
            .finish_non_exhaustive()
    }
}

impl HealthRegistryBuilder {
    /// The metric namespace: metrics are `<namespace>_health_check_status` and
    /// `<namespace>_health_check_duration_seconds`. Defaults to the service id with `-`, `.` and
    /// spaces turned into `_` (as `zs-observe`'s `Telemetry` does), or no prefix without one.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The service's id (`serviceId` in `/health/detail`).
    pub fn with_service_id(mut self, service_id: impl Into<String>) -> Self {
        self.service_id = Some(service_id.into());
        self
    }

    /// The service's version (`version` in `/health/detail`).
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// A human-friendly description (`description` in `/health/detail`).
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// How long a result is reused before a probe runs the check again (default 1 s). Concurrent
    /// probes that find a result stale share one run. Zero means every probe runs the checks
    /// (still one run for probes that arrive while it is in flight). Ignored with
    /// [`with_refresh_interval`](Self::with_refresh_interval).
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Runs every check in a background task every `interval` instead of on probes: probes then
    /// only read the latest results and never wait on a check (except for a check's very first
    /// run). `build()` must then be called inside a Tokio runtime; the task ends when the last
    /// clone of the registry is dropped.
    pub fn with_refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = Some(interval);
        self
    }

    /// The timeout of checks registered without one (default [`DEFAULT_TIMEOUT`], 500 ms).
    pub fn with_default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// Whether to record the health metrics (default `true`).
    pub fn with_metrics(mut self, enabled: bool) -> Self {
        self.metrics = enabled;
        self
    }

    /// Registers a check with its full registration.
    pub fn with_check(mut self, spec: CheckSpec) -> Self {
        self.specs.push(spec);
        self
    }

    /// Registers a critical liveness check with the default timeout. Liveness checks must be
    /// in-process: never call a database or a peer from one.
    pub fn with_liveness_check(self, name: impl Into<String>, check: impl Check) -> Self {
        self.with_check(CheckSpec::liveness(name, check))
    }

    /// Registers a critical readiness check with the default timeout.
    pub fn with_readiness_check(self, name: impl Into<String>, check: impl Check) -> Self {
        self.with_check(CheckSpec::readiness(name, check))
    }

    /// Registers a critical startup check with the default timeout.
    pub fn with_startup_check(self, name: impl Into<String>, check: impl Check) -> Self {
        self.with_check(CheckSpec::startup(name, check))
    }

    /// Validates the configuration, describes the metrics and, with a refresh interval, starts
    /// the background task.
    pub fn build(self) -> Result<HealthRegistry, BuildError> {
        let namespace = self
            .namespace
            .clone()
            .or_else(|| {
                self.service_id
                    .as_ref()
                    .map(|s| s.replace(['-', '.', ' '], "_"))
            })
            .unwrap_or_default();
        let names =
            MetricNames::new(&namespace).map_err(|reason| BuildError::InvalidNamespace {
                namespace: namespace.clone(),
                reason,
            })?;
        if self.default_timeout.is_zero() {
            return Err(BuildError::ZeroTimeout("(default)".into()));
        }
        if self.refresh_interval.is_some_and(|i| i.is_zero()) {
            return Err(BuildError::ZeroInterval);
        }
        let mut slots: Vec<Arc<Slot>> = Vec::with_capacity(self.specs.len());
        for spec in self.specs {
            if let Some(reason) = name_problem(&spec.name) {
                return Err(BuildError::InvalidName {
                    name: spec.name,
                    reason: reason.into(),
                });
            }
            if slots.iter().any(|s| s.meta.name == spec.name) {
                return Err(BuildError::DuplicateName(spec.name));
            }
            let timeout = spec.timeout.unwrap_or(self.default_timeout);
            if timeout.is_zero() {
                return Err(BuildError::ZeroTimeout(spec.name));
            }
            slots.push(Arc::new(Slot {
                meta: Arc::new(CheckMeta {
                    name: spec.name,
                    kind: spec.kind,
                    critical: spec.critical,
                    timeout,
                    component_type: spec.component_type,
                }),
                check: spec.check,
                state: Mutex::new(SlotState::default()),
                passed_once: AtomicBool::new(false),
            }));
        }
        let runtime = tokio::runtime::Handle::try_current();
        if self.refresh_interval.is_some() && runtime.is_err() {
            return Err(BuildError::NoRuntime);
        }
        let metrics = self.metrics.then(|| Arc::new(names));
        if let Some(names) = &metrics {
            names.describe();
        }
        let inner = Arc::new(Inner {
            slots,
            ttl: self.ttl,
            background: self.refresh_interval.is_some(),
            metrics,
            draining: AtomicBool::new(false),
            startup_complete: AtomicBool::new(false),
            started: Instant::now(),
            service_id: self.service_id,
            version: self.version,
            description: self.description,
        });
        if let (Some(interval), Ok(runtime)) = (self.refresh_interval, runtime) {
            // The first runs start here, so a probe arriving before the task is first polled
            // joins them instead of starting its own.
            let _entered = runtime.enter();
            start_runs(&inner);
            runtime.spawn(refresh_loop(Arc::downgrade(&inner), interval));
        }
        Ok(HealthRegistry { inner })
    }
}

/// The registered checks, their latest results and the service's lifecycle state (startup,
/// draining). Cheap to clone: clones share everything.
///
/// Probes are answered by [`report`](Self::report) (and by the endpoints of
/// [`router`](Self::router)). Each check runs in its own Tokio task under its timeout: a hanging
/// check is reported as failed when its timeout expires, a panicking one as failed with the
/// panic's message, and neither affects other checks or the host. Probes must be made inside a
/// Tokio runtime with its time driver enabled (as `#[tokio::main]` sets up).
#[derive(Clone)]
pub struct HealthRegistry {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.inner.slots.iter().map(|s| s.meta.name()).collect();
        f.debug_struct("HealthRegistry")
            .field("checks", &names)
            .field("draining", &self.is_draining())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) slots: Vec<Arc<Slot>>,
    ttl: Duration,
    background: bool,
    pub(crate) metrics: Option<Arc<MetricNames>>,
    draining: AtomicBool,
    startup_complete: AtomicBool,
    started: Instant,
    service_id: Option<String>,
    version: Option<String>,
    description: Option<String>,
}

impl HealthRegistry {
    /// A builder with no checks, a 1 s cache TTL and a 500 ms default timeout.
    pub fn builder() -> HealthRegistryBuilder {
        HealthRegistryBuilder {
            namespace: None,
            service_id: None,
            version: None,
            description: None,
            ttl: Duration::from_secs(1),
            refresh_interval: None,
            default_timeout: DEFAULT_TIMEOUT,
            metrics: true,
            specs: Vec::new(),
        }
    }

    /// Turns readiness to failing for good (liveness is unaffected), so the load balancer stops
    /// sending traffic before the server stops. Idempotent.
    pub fn drain(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Whether [`drain`](Self::drain) has been called.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Whether every critical startup check has passed (or warned) once.
    pub fn startup_complete(&self) -> bool {
        let inner = &self.inner;
        if inner.startup_complete.load(Ordering::Acquire) {
            return true;
        }
        let done = inner
            .slots
            .iter()
            .filter(|s| s.meta.kind == Kind::Startup && s.meta.critical)
            .all(|s| s.passed_once.load(Ordering::Acquire));
        if done {
            inner.startup_complete.store(true, Ordering::Release);
        }
        done
    }

    /// Time since the registry was built.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// The names of the registered checks, in registration order.
    pub fn check_names(&self) -> Vec<&str> {
        self.inner.slots.iter().map(|s| s.meta.name()).collect()
    }

    /// Runs every check now (except startup checks that already passed), waits for the runs
    /// (each bounded by its timeout) and returns the detail report. Runs already in flight are
    /// joined rather than duplicated.
    pub async fn refresh(&self) -> HealthReport {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.without_runtime(Probe::Detail);
        }
        let runs = self.inner.slots.iter().map(|slot| {
            let slot = Arc::clone(slot);
            let metrics = self.inner.metrics.clone();
            async move { slot.current(Mode::Force, metrics).await }
        });
        join_all(runs).await;
        self.report(Probe::Detail).await
    }

    /// The report for `probe`, running the checks it covers when their results are stale (or
    /// reading the background results). See [`Probe`] for what each probe covers.
    pub async fn report(&self, probe: Probe) -> HealthReport {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.without_runtime(probe);
        }
        match probe {
            Probe::Live => {
                HealthReport::new(probe, self.gather(|k| k == Kind::Liveness).await, None)
            }
            Probe::Startup => {
                HealthReport::new(probe, self.gather(|k| k == Kind::Startup).await, None)
            }
            Probe::Ready => {
                if self.is_draining() {
                    return HealthReport::new(probe, Vec::new(), Some(draining_reason()));
                }
                if !self.startup_complete() {
                    let entries = self.gather(|k| k == Kind::Startup).await;
                    if !self.startup_complete() {
                        let reason = self.startup_reason();
                        return HealthReport::new(probe, entries, Some(reason));
                    }
                }
                HealthReport::new(probe, self.gather(|k| k == Kind::Readiness).await, None)
            }
            Probe::Detail => {
                let entries = self.gather(|_| true).await;
                let reason = if self.is_draining() {
                    Some(draining_reason())
                } else if !self.startup_complete() {
                    Some(self.startup_reason())
                } else {
                    None
                };
                let mut report = HealthReport::new(probe, entries, reason);
                report.service = Some(self.service_info());
                report
            }
        }
    }

    fn service_info(&self) -> ServiceInfo {
        ServiceInfo {
            service_id: self.inner.service_id.clone(),
            version: self.inner.version.clone(),
            description: self.inner.description.clone(),
            uptime: self.uptime(),
            draining: self.is_draining(),
            startup_complete: self.startup_complete(),
        }
    }

    fn startup_reason(&self) -> String {
        let pending: Vec<&str> = self
            .inner
            .slots
            .iter()
            .filter(|s| s.meta.kind == Kind::Startup && s.meta.critical)
            .filter(|s| !s.passed_once.load(Ordering::Acquire))
            .map(|s| s.meta.name())
            .collect();
        format!(
            "starting: startup checks have not passed yet: {}",
            pending.join(", ")
        )
    }

    async fn gather(&self, wanted: impl Fn(Kind) -> bool) -> Vec<CheckEntry> {
        let mode = if self.inner.background {
            Mode::Background
        } else {
            Mode::Cached(self.inner.ttl)
        };
        let runs = self
            .inner
            .slots
            .iter()
            .filter(|slot| wanted(slot.meta.kind))
            .map(|slot| {
                let metrics = self.inner.metrics.clone();
                async move {
                    let outcome = Arc::clone(slot).current(mode, metrics).await;
                    CheckEntry {
                        meta: Arc::clone(&slot.meta),
                        outcome,
                    }
                }
            });
        join_all(runs).await
    }

    fn without_runtime(&self, probe: Probe) -> HealthReport {
        let reason = "health checks need a Tokio runtime (with timers) to run".to_owned();
        let mut report = HealthReport::new(probe, Vec::new(), Some(reason));
        if probe == Probe::Detail {
            report.service = Some(self.service_info());
        }
        report
    }
}

fn draining_reason() -> String {
    "draining: the service is shutting down".to_owned()
}
