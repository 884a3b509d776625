//! The global `tracing` subscriber: the OpenTelemetry layer (its own filter) and
//! the log layer (JSON or console, its own reloadable level and rate limits).

use std::io::IsTerminal;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::filter::Directives;
use crate::logging::{self, JsonLayer, LogFormat, LogRateLimit, LogSampler, LogSink};
use crate::otel::TracePipeline;
use crate::redact::Redactor;
use crate::InitError;

/// Log settings gathered by the builder.
#[derive(Clone, Debug)]
pub(crate) struct SubscriberSettings {
    pub(crate) install: bool,
    pub(crate) format: Option<LogFormat>,
    pub(crate) sink: Option<LogSink>,
    pub(crate) level: Option<String>,
    pub(crate) level_endpoint: bool,
    pub(crate) rate_limits: Vec<LogRateLimit>,
    pub(crate) redact: Vec<String>,
    pub(crate) trace_filter: Option<String>,
}

impl Default for SubscriberSettings {
    fn default() -> Self {
        SubscriberSettings {
            install: true,
            format: None,
            sink: None,
            level: None,
            level_endpoint: false,
            rate_limits: Vec::new(),
            redact: Vec::new(),
            trace_filter: None,
        }
    }
}

/// Settings checked and resolved against the environment, before anything is installed.
pub(crate) struct Plan {
    format: LogFormat,
    level: Directives,
    trace_filter: Directives,
}

impl SubscriberSettings {
    pub(crate) fn plan(&self) -> Result<Plan, String> {
        let format = match crate::otel::env_var("ZS_LOG_FORMAT") {
            Some(v) => LogFormat::parse(&v)
                .ok_or_else(|| format!("ZS_LOG_FORMAT `{v}` is not json or console"))?,
            None => self.format.unwrap_or(LogFormat::Json),
        };
        let level = match crate::otel::env_var("RUST_LOG") {
            Some(v) => Directives::parse(&v).map_err(|e| format!("RUST_LOG `{v}`: {e}"))?,
            None => {
                let d = self.level.as_deref().unwrap_or("info");
                Directives::parse(d).map_err(|e| format!("log level `{d}`: {e}"))?
            }
        };
        let t = self.trace_filter.as_deref().unwrap_or("info");
        let trace_filter = Directives::parse(t).map_err(|e| format!("trace filter `{t}`: {e}"))?;
        Ok(Plan {
            format,
            level,
            trace_filter,
        })
    }
}

/// Changes the log level of the installed subscriber.
#[derive(Clone, Debug)]
pub(crate) struct LevelControl {
    directives: Directives,
}

impl LevelControl {
    pub(crate) fn set(&self, directives: &str) -> Result<(), String> {
        self.directives
            .set(directives)
            .map_err(|e| format!("invalid level directives `{}`: {e}", directives.trim()))
    }

    pub(crate) fn current(&self) -> String {
        self.directives.current()
    }
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the global subscriber.
pub(crate) fn install(
    plan: Plan,
    settings: &SubscriberSettings,
    traces: Option<&TracePipeline>,
    service: &str,
    namespace: &str,
) -> Result<LevelControl, InitError> {
    let redactor = Redactor::new(&settings.redact);
    let mut layers: Vec<BoxedLayer> = Vec::new();
    if let Some(traces) = traces {
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(traces.tracer())
                .with_location(false)
                .with_target(false)
                .with_filter(
                    plan.trace_filter.and(
                        traces
                            .resolved
                            .sampler
                            .head_ratio()
                            .map(crate::otel::head::HeadSampler::new),
                    ),
                )
                .boxed(),
        );
    }
    let control = LevelControl {
        directives: plan.level.clone(),
    };
    let filter = plan
        .level
        .and(LogSampler::new(&settings.rate_limits, namespace));
    match plan.format {
        LogFormat::Json => {
            let sink = settings.sink.clone().unwrap_or_else(LogSink::stdout);
            layers.push(
                JsonLayer::new(sink, service, redactor)
                    .with_filter(filter)
                    .boxed(),
            );
        }
        LogFormat::Console => {
            let (sink, ansi) = match &settings.sink {
                Some(sink) => (sink.clone(), false),
                None => (LogSink::stderr(), std::io::stderr().is_terminal()),
            };
            layers.push(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(logging::console_fields(redactor))
                    .with_writer(sink)
                    .with_ansi(ansi)
                    .with_filter(filter)
                    .boxed(),
            );
        }
    }
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|_| InitError::SubscriberAlreadyInstalled)?;
    Ok(control)
}

/// `GET /log-level` and `PUT /log-level`.
pub(crate) fn level_router(level: LevelControl) -> axum::Router {
    axum::Router::new()
        .route("/log-level", get(get_level).put(put_level))
        .with_state(level)
}

async fn get_level(State(level): State<LevelControl>) -> String {
    level.current() + "\n"
}

async fn put_level(State(level): State<LevelControl>, body: String) -> (StatusCode, String) {
    if body.trim().is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "empty body: send level directives such as `info,zerostate::p2p=debug`\n".to_owned(),
        );
    }
    if body.len() > 4096 {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "level directives longer than 4096 bytes\n".to_owned(),
        );
    }
    match level.set(&body) {
        Ok(()) => (StatusCode::OK, level.current() + "\n"),
        Err(e) => (StatusCode::BAD_REQUEST, e + "\n"),
    }
}
