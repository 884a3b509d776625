//! The two metrics of the health checks, recorded through the `metrics` facade after every run:
//!
//! - `<ns>_health_check_status{check, kind}`, a gauge: 1 for pass, 0.5 for warn, 0 for fail;
//! - `<ns>_health_check_duration_seconds{check}`, a histogram of run durations (a timed-out run
//!   records its timeout).

use std::time::Duration;

use zs_observe_catalog::rules::{metric_name_problems, MetricKey};

use crate::check::{Kind, Status};

/// The names of the health metrics under one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricNames {
    /// `<ns>_health_check_status`.
    pub status: String,
    /// `<ns>_health_check_duration_seconds`.
    pub duration: String,
}

impl MetricNames {
    /// The names under `namespace` (no prefix when it is empty), or what is wrong with them.
    pub fn new(namespace: &str) -> Result<MetricNames, String> {
        let prefix = if namespace.is_empty() {
            String::new()
        } else {
            format!("{namespace}_")
        };
        let names = MetricNames {
            status: format!("{prefix}health_check_status"),
            duration: format!("{prefix}health_check_duration_seconds"),
        };
        let mut problems = metric_name_problems(MetricKey::Gauge, &names.status);
        problems.extend(metric_name_problems(MetricKey::Histogram, &names.duration));
        if namespace.contains(':') {
            problems.push(format!(
                "namespace {namespace:?} contains `:`, which is reserved for recording rules"
            ));
        }
        if problems.is_empty() {
            Ok(names)
        } else {
            Err(problems.join("; "))
        }
    }

    /// Describes both metrics to the installed recorder (help text and unit).
    pub(crate) fn describe(&self) {
        metrics::describe_gauge!(
            self.status.clone(),
            "Status of a health check at its last run: 1 pass, 0.5 warn, 0 fail."
        );
        metrics::describe_histogram!(
            self.duration.clone(),
            metrics::Unit::Seconds,
            "Duration of health check runs, in seconds (a timed-out run records its timeout)."
        );
    }

    /// Records one run of `check`.
    pub(crate) fn record(&self, check: &str, kind: Kind, status: Status, duration: Duration) {
        metrics::gauge!(
            self.status.clone(),
            "check" => check.to_owned(),
            "kind" => kind.as_str(),
        )
        .set(status.gauge_value());
        metrics::histogram!(self.duration.clone(), "check" => check.to_owned())
            .record(duration.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_conventions() {
        let names = MetricNames::new("zerostate").unwrap();
        assert_eq!(names.status, "zerostate_health_check_status");
        assert_eq!(names.duration, "zerostate_health_check_duration_seconds");
        assert_eq!(MetricNames::new("").unwrap().status, "health_check_status");
        assert!(MetricNames::new("zero-state").is_err());
        assert!(MetricNames::new("9lives").is_err());
        assert!(MetricNames::new("a:b").is_err());
    }
}
