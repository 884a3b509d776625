//! What a check is: its result, the [`Check`] trait, the closure adapter and the registration
//! ([`CheckSpec`]) that gives a check its name, kind, timeout and criticality.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::Serialize;

/// The status of a check or of an endpoint, in the `application/health+json` vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Healthy.
    Pass,
    /// Healthy, with a concern (served with HTTP 200).
    Warn,
    /// Unhealthy (served with HTTP 503).
    Fail,
}

impl Status {
    /// `"pass"`, `"warn"` or `"fail"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }

    /// The value of the `<ns>_health_check_status` gauge: 1 for pass, 0.5 for warn, 0 for fail.
    pub fn gauge_value(self) -> f64 {
        match self {
            Status::Pass => 1.0,
            Status::Warn => 0.5,
            Status::Fail => 0.0,
        }
    }

    /// The HTTP status code an endpoint answers with: 200 for pass and warn, 503 for fail.
    pub fn http_status(self) -> u16 {
        match self {
            Status::Pass | Status::Warn => 200,
            Status::Fail => 503,
        }
    }

    /// The worse of two statuses (`fail` > `warn` > `pass`).
    pub fn worst(self, other: Status) -> Status {
        self.max(other)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which probe a check answers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Is the process alive? Served on `/health/live` and `/healthz`. Liveness checks must be
    /// in-process checks (an event loop ticks, a worker is not wedged): a liveness check that
    /// calls a database makes the orchestrator restart every pod when the database is down.
    Liveness,
    /// Can the process take traffic now? Served on `/health/ready` and `/readyz`; this is where
    /// dependencies (databases, peers, disks) are checked.
    Readiness,
    /// Has initialisation finished? Served on `/health/startup`; each startup check runs until it
    /// passes once, and readiness fails until every critical startup check has.
    Startup,
}

impl Kind {
    /// `"liveness"`, `"readiness"` or `"startup"` (the `kind` label of the status gauge).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Liveness => "liveness",
            Kind::Readiness => "readiness",
            Kind::Startup => "startup",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one run of a check found: a status, and optionally an observed value with its unit and
/// a human-readable message (`output`).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckResult {
    status: Status,
    observed_value: Option<serde_json::Value>,
    observed_unit: Option<String>,
    output: Option<String>,
}

impl CheckResult {
    /// A result with `status` and nothing else.
    pub fn new(status: Status) -> Self {
        CheckResult {
            status,
            observed_value: None,
            observed_unit: None,
            output: None,
        }
    }

    /// A passing result.
    pub fn pass() -> Self {
        CheckResult::new(Status::Pass)
    }

    /// A warning, with a message saying what is of concern.
    pub fn warn(output: impl Into<String>) -> Self {
        CheckResult::new(Status::Warn).with_output(output)
    }

    /// A failure, with a message saying what failed.
    pub fn fail(output: impl Into<String>) -> Self {
        CheckResult::new(Status::Fail).with_output(output)
    }

    /// Adds the observed value and its unit (`observedValue`, `observedUnit`), e.g.
    /// `.with_observed(12, "connections")`. The value can be any JSON value.
    pub fn with_observed(
        mut self,
        value: impl Into<serde_json::Value>,
        unit: impl Into<String>,
    ) -> Self {
        self.observed_value = Some(value.into());
        self.observed_unit = Some(unit.into());
        self
    }

    /// Adds an observed value without a unit.
    pub fn with_value(mut self, value: impl Into<serde_json::Value>) -> Self {
        self.observed_value = Some(value.into());
        self
    }

    /// Sets the message (`output`).
    pub fn with_output(mut self, output: impl Into<String>) -> Self {
        self.output = Some(output.into());
        self
    }

    /// The status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The observed value, when the check reported one.
    pub fn observed_value(&self) -> Option<&serde_json::Value> {
        self.observed_value.as_ref()
    }

    /// The unit of the observed value, when the check reported one.
    pub fn observed_unit(&self) -> Option<&str> {
        self.observed_unit.as_deref()
    }

    /// The message, when the check gave one.
    pub fn output(&self) -> Option<&str> {
        self.output.as_deref()
    }
}

impl From<Status> for CheckResult {
    fn from(status: Status) -> Self {
        CheckResult::new(status)
    }
}

/// `Ok(result)` is the result; `Err(e)` is a failure whose output is `e`'s message, so a check
/// can use `?` on its dependency's errors.
impl<E: fmt::Display> From<Result<CheckResult, E>> for CheckResult {
    fn from(result: Result<CheckResult, E>) -> Self {
        result.unwrap_or_else(|e| CheckResult::fail(e.to_string()))
    }
}

/// A health check: an async function returning a [`CheckResult`].
///
/// The registry runs each check in its own task with a timeout, and turns a panic or a timeout
/// into a failure, so a check needs to handle neither. A check must not block its thread
/// (use `tokio::task::spawn_blocking` for blocking work): a blocked worker thread cannot be
/// interrupted by the timeout.
pub trait Check: Send + Sync + 'static {
    /// Runs the check once.
    fn check(&self) -> BoxFuture<'_, CheckResult>;
}

impl<C: Check + ?Sized> Check for Arc<C> {
    fn check(&self) -> BoxFuture<'_, CheckResult> {
        (**self).check()
    }
}

impl<C: Check + ?Sized> Check for Box<C> {
    fn check(&self) -> BoxFuture<'_, CheckResult> {
        (**self).check()
    }
}

/// A [`Check`] made from a closure returning a future; see [`check_fn`].
pub struct FnCheck<F> {
    f: F,
}

impl<F> fmt::Debug for FnCheck<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnCheck").finish_non_exhaustive()
    }
}

/// Adapts a closure returning a future into a [`Check`].
///
/// The future's output is anything that converts into a [`CheckResult`]: a `CheckResult`, a
/// [`Status`], or a `Result<CheckResult, E>` whose error becomes a failure with `E`'s message.
///
/// ```
/// use zs_observe_health::{check_fn, CheckResult};
///
/// let queue = check_fn(|| async {
///     let depth = 3; // ask the queue
///     if depth > 100 {
///         CheckResult::warn("queue is backing up").with_observed(depth, "jobs")
///     } else {
///         CheckResult::pass().with_observed(depth, "jobs")
///     }
/// });
/// # let _ = queue;
/// ```
pub fn check_fn<F, Fut, R>(f: F) -> FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: Into<CheckResult> + 'static,
{
    FnCheck { f }
}

impl<F, Fut, R> Check for FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: Into<CheckResult> + 'static,
{
    fn check(&self) -> BoxFuture<'_, CheckResult> {
        (self.f)().map(Into::into).boxed()
    }
}

/// The default timeout of a check: 500 ms, below Kubernetes' default probe timeout of 1 s, so a
/// hanging check is reported as a failure before the kubelet gives up on the probe.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);

/// A check with its registration: a name, a [`Kind`], a timeout, whether it is critical, and an
/// optional `componentType`.
///
/// ```
/// use std::time::Duration;
/// use zs_observe_health::{check_fn, CheckResult, CheckSpec};
///
/// let spec = CheckSpec::readiness("postgres:connections", check_fn(|| async {
///     CheckResult::pass().with_observed(5, "connections")
/// }))
/// .with_timeout(Duration::from_millis(200))
/// .with_component_type("datastore")
/// .with_critical(false);
/// assert_eq!(spec.name(), "postgres:connections");
/// ```
#[derive(Clone)]
pub struct CheckSpec {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) timeout: Option<Duration>,
    pub(crate) critical: bool,
    pub(crate) component_type: Option<String>,
    pub(crate) check: Arc<dyn Check>,
}

impl fmt::Debug for CheckSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("timeout", &self.timeout)
            .field("critical", &self.critical)
            .field("component_type", &self.component_type)
            .finish_non_exhaustive()
    }
}

impl CheckSpec {
    /// A check of `kind` named `name` (`component:measurement`, e.g. `postgres:connections`, or
    /// just `component`). Critical, with the registry's default timeout.
    pub fn new(name: impl Into<String>, kind: Kind, check: impl Check) -> Self {
        CheckSpec {
            name: name.into(),
            kind,
            timeout: None,
            critical: true,
            component_type: None,
            check: Arc::new(check),
        }
    }

    /// A liveness check (in-process only; see [`Kind::Liveness`]).
    pub fn liveness(name: impl Into<String>, check: impl Check) -> Self {
        CheckSpec::new(name, Kind::Liveness, check)
    }

    /// A readiness check.
    pub fn readiness(name: impl Into<String>, check: impl Check) -> Self {
        CheckSpec::new(name, Kind::Readiness, check)
    }

    /// A startup check.
    pub fn startup(name: impl Into<String>, check: impl Check) -> Self {
        CheckSpec::new(name, Kind::Startup, check)
    }

    /// How long a run may take before it is abandoned and reported as a failure.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Whether a failure fails the endpoint (`true`, the default) or only makes it `warn`.
    pub fn with_critical(mut self, critical: bool) -> Self {
        self.critical = critical;
        self
    }

    /// The `componentType` of the check's entries (e.g. `datastore`, `component`, `system`).
    pub fn with_component_type(mut self, component_type: impl Into<String>) -> Self {
        self.component_type = Some(component_type.into());
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Whether a failure fails the endpoint.
    pub fn is_critical(&self) -> bool {
        self.critical
    }
}

/// Why a check name is not of the `component:measurement` form, if it is not.
pub(crate) fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("the name is empty");
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("the name contains whitespace or control characters");
    }
    let mut parts = name.split(':');
    let component = parts.next().unwrap_or_default();
    let measurement = parts.next();
    if parts.next().is_some() {
        return Some("the name has more than one `:` (use `component:measurement`)");
    }
    if component.is_empty() || measurement.is_some_and(str::is_empty) {
        return Some("both sides of `:` must be non-empty (use `component:measurement`)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(name_problem("storage"), None);
        assert_eq!(name_problem("postgres:connections"), None);
        assert!(name_problem("").is_some());
        assert!(name_problem("a b").is_some());
        assert!(name_problem(":x").is_some());
        assert!(name_problem("x:").is_some());
        assert!(name_problem("a:b:c").is_some());
    }

    #[test]
    fn status_order_and_encoding() {
        assert_eq!(Status::Pass.worst(Status::Warn), Status::Warn);
        assert_eq!(Status::Fail.worst(Status::Warn), Status::Fail);
        assert_eq!(Status::Warn.gauge_value(), 0.5);
        assert_eq!(Status::Warn.http_status(), 200);
        assert_eq!(Status::Fail.http_status(), 503);
    }

    #[test]
    fn result_from_error() {
        let r: CheckResult = Err::<CheckResult, _>("connection refused").into();
        assert_eq!(r.status(), Status::Fail);
        assert_eq!(r.output(), Some("connection refused"));
    }
}
