#![doc = include_str!("../../docs/health.md")]

mod builtin;
mod check;
mod http;
mod metrics;
mod registry;
mod report;
mod run;

pub use builtin::{dir_writable, http_get, tcp_connect, DirWritable, HttpGet, TcpConnect};
pub use check::{check_fn, Check, CheckResult, CheckSpec, FnCheck, Kind, Status, DEFAULT_TIMEOUT};
pub use http::{drain_on, shutdown_signal};
pub use metrics::MetricNames;
pub use registry::{BuildError, HealthRegistry, HealthRegistryBuilder};
pub use report::{rfc3339, CheckEntry, CheckMeta, CheckOutcome, HealthReport, Probe, CONTENT_TYPE};
