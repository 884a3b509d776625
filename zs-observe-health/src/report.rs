//! A [`HealthReport`] is what an endpoint answers: the aggregate status, the entries of the checks
//! it covers, and (for `/health/detail`) the service's identity. Rendering it as
//! `application/health+json` knows nothing about HTTP.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::check::{CheckResult, Kind, Status};

/// The content type of the health responses (draft-inadarei-api-health-check).
pub const CONTENT_TYPE: &str = "application/health+json";

/// Which endpoint a report is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Probe {
    /// `/health/live`, `/healthz`: liveness checks only.
    Live,
    /// `/health/ready`, `/readyz`: fails while draining or before startup completes, then
    /// follows the readiness checks.
    Ready,
    /// `/health/startup`: the startup checks.
    Startup,
    /// `/health/detail`: every check, with durations, version, service id and uptime.
    Detail,
}

/// The registration of a check, as shown in reports.
#[derive(Debug)]
pub struct CheckMeta {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) critical: bool,
    pub(crate) timeout: Duration,
    pub(crate) component_type: Option<String>,
}

impl CheckMeta {
    /// The check's name (`component:measurement`).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The check's kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// Whether a failure fails the endpoint (otherwise it only warns).
    pub fn is_critical(&self) -> bool {
        self.critical
    }
    /// The check's timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
    /// The check's `componentType`, if set.
    pub fn component_type(&self) -> Option<&str> {
        self.component_type.as_deref()
    }
}

/// One run of a check: its result, when it finished and how long it took.
#[derive(Clone, Debug)]
pub struct CheckOutcome {
    pub(crate) result: CheckResult,
    pub(crate) time: SystemTime,
    pub(crate) duration: Duration,
}

impl CheckOutcome {
    /// What the check found (a timeout or a panic is a failure saying so).
    pub fn result(&self) -> &CheckResult {
        &self.result
    }
    /// When the run finished (the entry's `time`).
    pub fn time(&self) -> SystemTime {
        self.time
    }
    /// How long the run took.
    pub fn duration(&self) -> Duration {
        self.duration
    }
}

/// A check and its latest outcome, as included in a report.
#[derive(Clone, Debug)]
pub struct CheckEntry {
    pub(crate) meta: Arc<CheckMeta>,
    pub(crate) outcome: Arc<CheckOutcome>,
}

impl CheckEntry {
    /// The check's registration.
    pub fn meta(&self) -> &CheckMeta {
        &self.meta
    }
    /// The check's latest outcome.
    pub fn outcome(&self) -> &CheckOutcome {
        &self.outcome
    }
    /// What this entry contributes to the aggregate: its status, except that a non-critical
    /// failure only warns.
    pub fn contribution(&self) -> Status {
        match self.outcome.result.status() {
            Status::Fail if !self.meta.critical => Status::Warn,
            status => status,
        }
    }
}

/// The service's identity, shown by `/health/detail`.
#[derive(Clone, Debug, Default)]
pub(crate) struct ServiceInfo {
    pub(crate) service_id: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) uptime: Duration,
    pub(crate) draining: bool,
    pub(crate) startup_complete: bool,
}

/// What an endpoint answers.
#[derive(Clone, Debug)]
pub struct HealthReport {
    pub(crate) probe: Probe,
    pub(crate) status: Status,
    pub(crate) output: Option<String>,
    pub(crate) entries: Vec<CheckEntry>,
    pub(crate) service: Option<ServiceInfo>,
}

impl HealthReport {
    /// A report over `entries`, whose status is the worst contribution (pass when empty), or
    /// fail with `reason` when a reason is given.
    pub(crate) fn new(probe: Probe, entries: Vec<CheckEntry>, reason: Option<String>) -> Self {
        let worst = entries
            .iter()
            .map(CheckEntry::contribution)
            .fold(Status::Pass, Status::worst);
        let status = if reason.is_some() {
            Status::Fail
        } else {
            worst
        };
        HealthReport {
            probe,
            status,
            output: reason,
            entries,
            service: None,
        }
    }

    /// The endpoint the report is for.
    pub fn probe(&self) -> Probe {
        self.probe
    }

    /// The aggregate status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The HTTP status code: 200 for pass and warn, 503 for fail.
    pub fn http_status(&self) -> u16 {
        self.status.http_status()
    }

    /// Why the endpoint fails regardless of its checks (draining, startup not complete).
    pub fn output(&self) -> Option<&str> {
        self.output.as_deref()
    }

    /// The checks the report covers, in registration order.
    pub fn entries(&self) -> &[CheckEntry] {
        &self.entries
    }

    /// The entry of the check named `name`.
    pub fn entry(&self, name: &str) -> Option<&CheckEntry> {
        self.entries.iter().find(|e| e.meta.name == name)
    }

    /// The report as an `application/health+json` body.
    pub fn to_json(&self) -> String {
        let detail = self.service.as_ref();
        let times: Vec<String> = self
            .entries
            .iter()
            .map(|e| rfc3339(e.outcome.time))
            .collect();
        let mut checks = BTreeMap::new();
        for (entry, time) in self.entries.iter().zip(&times) {
            let result = &entry.outcome.result;
            let body = EntryBody {
                component_type: entry.meta.component_type.as_deref(),
                observed_value: result.observed_value(),
                observed_unit: result.observed_unit(),
                status: result.status(),
                time,
                output: result.output(),
                kind: detail.map(|_| entry.meta.kind),
                critical: detail.map(|_| entry.meta.critical),
                duration_seconds: detail.map(|_| entry.outcome.duration.as_secs_f64()),
            };
            checks.insert(entry.meta.name.as_str(), [body]);
        }
        let body = Body {
            status: self.status,
            version: detail.and_then(|d| d.version.as_deref()),
            service_id: detail.and_then(|d| d.service_id.as_deref()),
            description: detail.and_then(|d| d.description.as_deref()),
            output: self.output.as_deref(),
            uptime: detail.map(|d| d.uptime.as_secs_f64()),
            draining: detail.map(|d| d.draining),
            startup_complete: detail.map(|d| d.startup_complete),
            checks,
        };
        // Serialising these plain structs cannot fail; fall back to a minimal body anyway.
        serde_json::to_string(&body)
            .unwrap_or_else(|_| format!("{{\"status\":\"{}\"}}", self.status))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uptime: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    draining: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    startup_complete: Option<bool>,
    checks: BTreeMap<&'a str, [EntryBody<'a>; 1]>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    component_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_value: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_unit: Option<&'a str>,
    status: Status,
    time: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<Kind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    critical: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_seconds: Option<f64>,
}

/// `time` in RFC 3339 (UTC, milliseconds), e.g. `2026-05-01T12:00:00.123Z`. A clock before
/// 1970 is shown as the epoch.
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time.max(UNIX_EPOCH)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_123); // leap day 2000
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.123Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_767_225_599); // last second of 2025
        assert_eq!(rfc3339(t), "2025-12-31T23:59:59.000Z");
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(rfc3339(before), "1970-01-01T00:00:00.000Z");
    }
}
