#![doc = include_str!("../README.md")]
//!
//! # Crate layout
//!
//! - [`instrumented`]: the attribute (from `zs-observe-macros`).
//! - [`Telemetry`]: the runtime builder and handle: the recorder and its exposition
//!   ([`MetricsHandle`]),
//!   constant labels, `<namespace>_build_info`, `/metrics` routes.
//! - [`Outcome`]: the values of the automatic outcome label.
//! - [`propagation`]: W3C `traceparent` in and out of HTTP, request ids
//!   (see `docs/tracing.md`); logs are described in `docs/logging.md`.
//! - [`set_global_recorder`]: install any other `metrics` recorder so that
//!   call sites cache their handles for it.

mod call_span;
mod callsite;
pub mod cardinality;
pub mod coverage;
mod exposition;
mod filter;
mod http;
mod light;
mod logging;
mod otel;
mod profile;
pub mod propagation;
mod raw_fields;
mod red;
mod redact;
mod subscriber;
mod telemetry;

pub use call_span::record_current;
pub use callsite::{Completion, Outcome};
pub use cardinality::bounded_label;
pub use exposition::{MetricsHandle, SeriesCount};
pub use http::{metrics_router, CONTENT_TYPE};
pub use logging::{LogFormat, LogRateLimit, LogSink};
pub use otel::{OtlpProtocol, TraceSampler};
pub use red::{HttpMetrics, HttpMetricsFuture, HttpMetricsLayer};
pub use redact::{DEFAULT_SENSITIVE, REDACTED};
pub use telemetry::{InitError, Telemetry, TelemetryBuilder, TraceStats, DEFAULT_BUCKETS};

/// The attribute: see `docs/attribute.md` (inlined below from `zs-observe-macros`).
#[doc(inline)]
pub use zs_observe_macros::instrumented;

/// From `cargo add` to a function's series on `/metrics`, its span in Jaeger and its
/// panel in Grafana (`docs/guide.md`; its examples are doc tests).
///
#[doc = include_str!("../../docs/guide.md")]
pub mod guide {}

/// The metric catalog (the `zs-observe-catalog` crate): its format, parser and naming rules.
pub mod catalog {
    pub use zs_observe_catalog::*;
}

/// Parses a catalog file embedded at compile time, relative to the current file:
/// `zs_observe::include_catalog!("../catalog.toml")` gives
/// `Result<Catalog, Vec<CatalogError>>`.
#[macro_export]
macro_rules! include_catalog {
    ($path:literal) => {
        $crate::catalog::Catalog::parse(::core::include_str!($path), $path)
    };
}

/// Installs `recorder` as the process-wide `metrics` recorder and lets
/// `#[instrumented]` call sites cache their handles from now on.
///
/// [`Telemetry::builder`] calls this for the Prometheus recorder; use it directly
/// for another recorder (a test's `DebuggingRecorder`, say). Recorders installed
/// with `metrics::set_global_recorder` work too, but call sites then look their
/// handles up on every call.
pub fn set_global_recorder<R>(recorder: R) -> Result<(), metrics::SetRecorderError<R>>
where
    R: metrics::Recorder + Sync + 'static,
{
    metrics::set_global_recorder(recorder)?;
    callsite::mark_recorder_installed();
    Ok(())
}

/// Used by the code `#[instrumented]` generates. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::call_span::{
        Builder as SpanBuilder, CallSpan, Capture, CaptureDyn, CaptureRaw, Captured, SpanVerdict,
    };
    pub use crate::callsite::{CallSite, Completion, Guard, OutcomeOfAny, OutcomeOfResult};
    pub use crate::coverage::Registration;
    pub use inventory;
    pub use metrics::Label;
    pub use tracing;
}
