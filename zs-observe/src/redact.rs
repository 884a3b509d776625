//! Redaction of sensitive fields, shared by the log layers and the span exporter.

use std::sync::Arc;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Field names that are always redacted: a field is sensitive when its name,
/// lowercased, contains one of these (so `db_password`, `access_token` and
/// `x_api_key` are covered).
pub const DEFAULT_SENSITIVE: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "private_key",
    "credential",
];

/// Decides which field names are sensitive: the defaults plus a configured list.
#[derive(Clone, Debug)]
pub(crate) struct Redactor {
    extra: Arc<[String]>,
}

impl Redactor {
    pub(crate) fn new(extra: &[String]) -> Redactor {
        Redactor {
            extra: extra.iter().map(|s| s.to_ascii_lowercase()).collect(),
        }
    }

    /// Whether a field of this name must not be written out.
    pub(crate) fn is_sensitive(&self, name: &str) -> bool {
        is_sensitive_with(name, &self.extra)
    }

    pub(crate) fn redact_key_values(&self, attributes: &mut [opentelemetry::KeyValue]) {
        for kv in attributes.iter_mut() {
            if self.is_sensitive(kv.key.as_str()) {
                kv.value = opentelemetry::Value::from(REDACTED);
            }
        }
    }
}

fn is_sensitive_with(name: &str, extra: &[String]) -> bool {
    // Field names are short; compare without allocating.
    let contains = |needle: &str| {
        name.len() >= needle.len()
            && name
                .as_bytes()
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
    };
    DEFAULT_SENSITIVE.iter().any(|n| contains(n)) || extra.iter().any(|n| contains(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_extras() {
        let r = Redactor::new(&["ssn".to_owned()]);
        for name in [
            "password",
            "DB_PASSWORD",
            "access_token",
            "api_key",
            "x_api_key",
            "Authorization",
            "session_cookie",
            "customer_ssn",
        ] {
            assert!(r.is_sensitive(name), "{name}");
        }
        for name in ["task_id", "peer", "message", "duration_seconds", "tok"] {
            assert!(!r.is_sensitive(name), "{name}");
        }
    }

    #[test]
    fn key_values_are_replaced() {
        let r = Redactor::new(&[]);
        let mut kvs = vec![
            opentelemetry::KeyValue::new("password", "hunter2"),
            opentelemetry::KeyValue::new("task", "t-1"),
        ];
        r.redact_key_values(&mut kvs);
        assert_eq!(kvs[0].value.as_str(), REDACTED);
        assert_eq!(kvs[1].value.as_str(), "t-1");
    }
}
