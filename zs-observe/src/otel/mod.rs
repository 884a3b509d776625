//! Traces: configuration from the standard `OTEL_*` environment with builder
//! overrides, the sampler, the resource, and the OTLP pipeline behind the
//! `tracing-opentelemetry` layer.

pub(crate) mod bridge;
mod export;
pub(crate) mod head;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;

pub(crate) use export::{ExportStats, QueueProcessor, SharedProcessor};

/// The wire protocol of the OTLP exporter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OtlpProtocol {
    /// OTLP over gRPC (Jaeger and collectors listen on 4317).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318, path `/v1/traces`).
    HttpProtobuf,
}

impl OtlpProtocol {
    /// Parses the values of `OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc`, `http/protobuf`.
    pub fn parse(value: &str) -> Option<OtlpProtocol> {
        match value.trim() {
            "grpc" => Some(OtlpProtocol::Grpc),
            "http/protobuf" => Some(OtlpProtocol::HttpProtobuf),
            _ => None,
        }
    }

    /// The value as written in `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// Which spans are recorded and exported.
///
/// The default is [`TraceSampler::ParentBasedRatio`]`(0.1)`: a call that continues a
/// caller's trace follows the caller's decision; a new trace is kept with
/// probability 0.1. Every call still gets a trace id (logs carry it either way).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum TraceSampler {
    /// Every span (`always_on`).
    AlwaysOn,
    /// No span (`always_off`).
    AlwaysOff,
    /// New traces with this probability, ignoring any parent (`traceidratio`).
    Ratio(f64),
    /// Follow the parent; new traces always (`parentbased_always_on`).
    ParentBasedAlwaysOn,
    /// Follow the parent; new traces never (`parentbased_always_off`).
    ParentBasedAlwaysOff,
    /// Follow the parent; new traces with this probability (`parentbased_traceidratio`).
    ParentBasedRatio(f64),
}

impl Default for TraceSampler {
    fn default() -> Self {
        TraceSampler::ParentBasedRatio(0.1)
    }
}

impl TraceSampler {
    /// Parses `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` as the
    /// OpenTelemetry specification defines them. A missing ratio argument means 1.0;
    /// an unknown sampler or a ratio outside `[0, 1]` is an error.
    pub fn from_env_values(sampler: &str, arg: Option<&str>) -> Result<TraceSampler, String> {
        let ratio = || -> Result<f64, String> {
            match arg.map(str::trim).filter(|a| !a.is_empty()) {
                None => Ok(1.0),
                Some(a) => match a.parse::<f64>() {
                    Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                    _ => Err(format!(
                        "OTEL_TRACES_SAMPLER_ARG `{a}` is not a ratio between 0 and 1"
                    )),
                },
            }
        };
        Ok(match sampler.trim() {
            "always_on" => TraceSampler::AlwaysOn,
            "always_off" => TraceSampler::AlwaysOff,
            "traceidratio" => TraceSampler::Ratio(ratio()?),
            "parentbased_always_on" => TraceSampler::ParentBasedAlwaysOn,
            "parentbased_always_off" => TraceSampler::ParentBasedAlwaysOff,
            "parentbased_traceidratio" => TraceSampler::ParentBasedRatio(ratio()?),
            other => {
                return Err(format!(
                    "OTEL_TRACES_SAMPLER `{other}` is not supported (use always_on, always_off, \
                     traceidratio, parentbased_always_on, parentbased_always_off or \
                     parentbased_traceidratio)"
                ))
            }
        })
    }

    fn ratio_ok(self) -> bool {
        match self {
            TraceSampler::Ratio(r) | TraceSampler::ParentBasedRatio(r) => (0.0..=1.0).contains(&r),
            _ => true,
        }
    }

    /// For parent-based samplers, the probability of keeping a new root: these are
    /// decided before any OTel data is built (see `head.rs`).
    pub(crate) fn head_ratio(self) -> Option<f64> {
        match self {
            TraceSampler::ParentBasedAlwaysOn => Some(1.0),
            TraceSampler::ParentBasedAlwaysOff => Some(0.0),
            TraceSampler::ParentBasedRatio(r) => Some(r),
            _ => None,
        }
    }

    fn to_sdk(self) -> Sampler {
        match self {
            TraceSampler::AlwaysOn => Sampler::AlwaysOn,
            TraceSampler::AlwaysOff => Sampler::AlwaysOff,
            TraceSampler::Ratio(r) => Sampler::TraceIdRatioBased(r),
            TraceSampler::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            TraceSampler::ParentBasedAlwaysOff => {
                Sampler::ParentBased(Box::new(Sampler::AlwaysOff))
            }
            TraceSampler::ParentBasedRatio(r) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
            }
        }
    }
}

/// Trace settings gathered by the builder. `None` means "from the environment".
#[derive(Clone, Debug, Default)]
pub(crate) struct TraceSettings {
    pub(crate) enabled: bool,
    pub(crate) endpoint: Option<String>,
    pub(crate) protocol: Option<OtlpProtocol>,
    pub(crate) sampler: Option<TraceSampler>,
    pub(crate) queue_size: Option<usize>,
    pub(crate) batch_size: Option<usize>,
    pub(crate) schedule_delay: Option<Duration>,
    pub(crate) export_timeout: Option<Duration>,
    pub(crate) resource_attributes: Vec<(String, String)>,
    pub(crate) redact: Vec<String>,
}

/// What was resolved from the settings and the environment.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ResolvedTraces {
    /// `None`: no endpoint anywhere, nothing is exported.
    pub(crate) export: Option<ExportTarget>,
    pub(crate) sampler: TraceSampler,
    pub(crate) queue_size: usize,
    pub(crate) batch_size: usize,
    pub(crate) schedule_delay: Duration,
    pub(crate) export_timeout: Duration,
}

/// Where and how spans are sent.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ExportTarget {
    pub(crate) protocol: OtlpProtocol,
    /// The full URL spans are sent to (for HTTP, including `/v1/traces`).
    pub(crate) endpoint: String,
}

/// Reads one variable; blank counts as unset.
pub(crate) fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl TraceSettings {
    /// Builder values win; the standard environment fills the rest.
    pub(crate) fn resolve(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ResolvedTraces, String> {
        let protocol = match self.protocol {
            Some(p) => p,
            None => match env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
            {
                Some(v) => OtlpProtocol::parse(&v).ok_or_else(|| {
                    format!("OTEL_EXPORTER_OTLP_PROTOCOL `{v}` is not supported (use grpc or http/protobuf)")
                })?,
                None => OtlpProtocol::HttpProtobuf,
            },
        };
        let signal = |base: &str| -> String {
            match protocol {
                OtlpProtocol::Grpc => base.to_owned(),
                OtlpProtocol::HttpProtobuf => {
                    format!("{}/v1/traces", base.trim_end_matches('/'))
                }
            }
        };
        let endpoint = match &self.endpoint {
            Some(base) => Some(signal(base)),
            None => env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT").map(|b| signal(&b))),
        };
        if let Some(e) = &endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(format!(
                    "OTLP endpoint `{e}` must start with http:// or https://"
                ));
            }
        }
        let sampler = match self.sampler {
            Some(s) if !s.ratio_ok() => {
                return Err(format!("sampling ratio in {s:?} is not between 0 and 1"))
            }
            Some(s) => s,
            None => match env("OTEL_TRACES_SAMPLER") {
                Some(s) => {
                    TraceSampler::from_env_values(&s, env("OTEL_TRACES_SAMPLER_ARG").as_deref())?
                }
                None => match env("OTEL_TRACES_SAMPLER_ARG") {
                    // An argument alone adjusts the default sampler's ratio.
                    Some(arg) => {
                        TraceSampler::from_env_values("parentbased_traceidratio", Some(&arg))?
                    }
                    None => TraceSampler::default(),
                },
            },
        };
        let env_usize = |name: &str| env(name).and_then(|v| v.trim().parse::<usize>().ok());
        let env_millis = |name: &str| {
            env(name)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_millis)
        };
        let queue_size = self
            .queue_size
            .or_else(|| env_usize("OTEL_BSP_MAX_QUEUE_SIZE"))
            .unwrap_or(2048)
            .max(1);
        let batch_size = self
            .batch_size
            .or_else(|| env_usize("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"))
            .unwrap_or(512)
            .clamp(1, queue_size);
        Ok(ResolvedTraces {
            export: endpoint.map(|endpoint| ExportTarget { protocol, endpoint }),
            sampler,
            queue_size,
            batch_size,
            schedule_delay: self
                .schedule_delay
                .or_else(|| env_millis("OTEL_BSP_SCHEDULE_DELAY"))
                .unwrap_or(Duration::from_secs(5)),
            export_timeout: self
                .export_timeout
                .or_else(|| env_millis("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"))
                .or_else(|| env_millis("OTEL_EXPORTER_OTLP_TIMEOUT"))
                .unwrap_or(Duration::from_secs(10)),
        })
    }
}

/// Identity of the service in every exported span.
pub(crate) struct ServiceIdentity<'a> {
    pub(crate) service: &'a str,
    pub(crate) version: &'a str,
    pub(crate) environment: &'a str,
}

/// The installed trace pipeline: the provider (kept to flush and shut down) and
/// the export statistics.
#[derive(Debug)]
pub(crate) struct TracePipeline {
    pub(crate) provider: SdkTracerProvider,
    pub(crate) stats: std::sync::Arc<ExportStats>,
    pub(crate) resolved: ResolvedTraces,
    /// The processor behind the provider, shared with the bridge (`None`: no
    /// endpoint).
    pub(crate) processor: Option<std::sync::Arc<QueueProcessor>>,
}

impl TracePipeline {
    pub(crate) fn build(
        settings: &TraceSettings,
        resolved: ResolvedTraces,
        id: &ServiceIdentity<'_>,
        namespace: &str,
    ) -> Result<TracePipeline, String> {
        // OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME come in through the
        // SDK's environment detector; ours are applied after, so they win.
        let mut attributes = vec![
            KeyValue::new("service.version", id.version.to_owned()),
            KeyValue::new("deployment.environment.name", id.environment.to_owned()),
        ];
        attributes.extend(
            settings
                .resource_attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        );
        let resource = Resource::builder()
            .with_service_name(id.service.to_owned())
            .with_attributes(attributes)
            .build();
        let stats = std::sync::Arc::new(ExportStats::new(namespace));
        let mut builder = SdkTracerProvider::builder()
            .with_sampler(match resolved.sampler.head_ratio() {
                // Head sampling already decided; the SDK follows the parent or keeps the root.
                Some(_) => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
                None => resolved.sampler.to_sdk(),
            })
            .with_resource(resource);
        let mut shared = None;
        if let Some(target) = &resolved.export {
            let processor = std::sync::Arc::new(QueueProcessor::start(
                target.clone(),
                &resolved,
                stats.clone(),
                crate::redact::Redactor::new(&settings.redact),
            )?);
            builder = builder.with_span_processor(SharedProcessor(processor.clone()));
            shared = Some(processor);
        }
        Ok(TracePipeline {
            provider: builder.build(),
            stats,
            resolved,
            processor: shared,
        })
    }

    pub(crate) fn tracer(&self) -> opentelemetry_sdk::trace::SdkTracer {
        self.provider.tracer("zs-observe")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(settings: &TraceSettings, env: &[(&str, &str)]) -> Result<ResolvedTraces, String> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        settings.resolve(&|name| env.get(name).cloned())
    }

    #[test]
    fn nothing_configured_exports_nothing_with_the_default_sampler() {
        let r = resolve(&TraceSettings::default(), &[]).unwrap();
        assert_eq!(r.export, None);
        assert_eq!(r.sampler, TraceSampler::ParentBasedRatio(0.1));
        assert_eq!((r.queue_size, r.batch_size), (2048, 512));
    }

    #[test]
    fn endpoint_and_protocol_from_the_environment() {
        let r = resolve(
            &TraceSettings::default(),
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/")],
        )
        .unwrap();
        assert_eq!(
            r.export,
            Some(ExportTarget {
                protocol: OtlpProtocol::HttpProtobuf,
                endpoint: "http://127.0.0.1:4318/v1/traces".into()
            })
        );
        let r = resolve(
            &TraceSettings::default(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
        )
        .unwrap();
        assert_eq!(r.export.unwrap().endpoint, "http://127.0.0.1:4317");
        // The per-signal variable is used as is.
        let r = resolve(
            &TraceSettings::default(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/custom"),
            ],
        )
        .unwrap();
        assert_eq!(r.export.unwrap().endpoint, "http://c:4318/custom");
    }

    #[test]
    fn builder_values_override_the_environment() {
        let settings = TraceSettings {
            endpoint: Some("http://127.0.0.1:9999".into()),
            protocol: Some(OtlpProtocol::Grpc),
            sampler: Some(TraceSampler::AlwaysOn),
            ..TraceSettings::default()
        };
        let r = resolve(
            &settings,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_TRACES_SAMPLER", "always_off"),
            ],
        )
        .unwrap();
        assert_eq!(
            r.export,
            Some(ExportTarget {
                protocol: OtlpProtocol::Grpc,
                endpoint: "http://127.0.0.1:9999".into()
            })
        );
        assert_eq!(r.sampler, TraceSampler::AlwaysOn);
    }

    #[test]
    fn samplers_from_the_environment() {
        let s = |v: &str, a: Option<&str>| TraceSampler::from_env_values(v, a);
        assert_eq!(s("always_on", None), Ok(TraceSampler::AlwaysOn));
        assert_eq!(
            s("traceidratio", Some("0.25")),
            Ok(TraceSampler::Ratio(0.25))
        );
        assert_eq!(s("traceidratio", None), Ok(TraceSampler::Ratio(1.0)));
        assert_eq!(
            s("parentbased_traceidratio", Some("0.5")),
            Ok(TraceSampler::ParentBasedRatio(0.5))
        );
        assert!(s("traceidratio", Some("1.5")).unwrap_err().contains("1.5"));
        assert!(s("jaeger_remote", None)
            .unwrap_err()
            .contains("not supported"));
        let r = resolve(
            &TraceSettings::default(),
            &[("OTEL_TRACES_SAMPLER_ARG", "0.3")],
        )
        .unwrap();
        assert_eq!(r.sampler, TraceSampler::ParentBasedRatio(0.3));
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(resolve(
            &TraceSettings::default(),
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]
        )
        .unwrap_err()
        .contains("http/json"));
        assert!(resolve(
            &TraceSettings::default(),
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:4317")]
        )
        .unwrap_err()
        .contains("http://"));
        let settings = TraceSettings {
            sampler: Some(TraceSampler::Ratio(2.0)),
            ..TraceSettings::default()
        };
        assert!(resolve(&settings, &[]).is_err());
    }
}
