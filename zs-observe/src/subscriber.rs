//! The global `tracing` subscriber: the OpenTelemetry layer (its own filter) and
//! the log layer (JSON or console, its own reloadable level and rate limits).

use std::io::IsTerminal;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use std::any::TypeId;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::SubscriberExt;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_core::span::Current;
use tracing_subscriber::{Layer, Registry};

use crate::filter::Directives;
use crate::logging::{JsonLayer, LogFormat, LogRateLimit, LogSampler, LogSink};
use crate::otel::TracePipeline;
use crate::raw_fields::RawFields;
use crate::redact::Redactor;
use crate::InitError;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{MutexGuard, OnceLock};

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
    let plan_traces = plan.trace_filter.clone();
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
        .clone()
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
                JsonLayer::console(sink, service, redactor, ansi)
                    .with_filter(filter)
                    .boxed(),
            );
        }
    }
    // Light spans need every consumer to understand them: the log layer (both
    // formats), and head sampling deciding what the OTel layer sees (or no OTel layer
    // at all).
    let head_ratio = traces.and_then(|t| t.resolved.sampler.head_ratio());
    let light = traces.is_none() || head_ratio.is_some();
    // Sampled `#[instrumented]` calls skip `tracing-opentelemetry` (see
    // `crate::otel::bridge`) under head sampling.
    let bridge = traces.is_some() && head_ratio.is_some();
    let subscriber = ZsSubscriber {
        inner: tracing_subscriber::registry().with(layers),
        // One runtime subscriber per process (it is the global default): its light
        // settings are global too, for call sites that build light frames
        // themselves (`direct_verdict`).
        light: light.then(|| {
            LIGHT.get_or_init(|| LightSettings {
                levels: plan.level.clone(),
                traces: bridge.then_some(plan_traces),
            })
        }),
    };
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|_| InitError::SubscriberAlreadyInstalled)?;
    if light {
        remember_global_dispatch();
        create_carrier();
        if let Some(traces) = traces.filter(|_| bridge) {
            if crate::otel::bridge::install(traces.processor.clone()) {
                crate::light::activate_bridge();
            }
        }
        crate::light::activate(head_ratio);
    }
    Ok(control)
}

/// Creates the carrier span (see `crate::light`) through the global dispatcher, as
/// the `span!` macro would, so the per-layer filters decide who records it.
fn create_carrier() {
    let meta = crate::light::carrier_meta();
    let interest = crate::light::CARRIER_CALLSITE.interest();
    if interest.is_never() {
        return;
    }
    tracing::dispatcher::get_default(|dispatch| {
        if !dispatch.enabled(meta) {
            return;
        }
        let values = meta.fields().value_set(&[]);
        let id = dispatch.new_span(&tracing::span::Attributes::new_root(meta, &values));
        // Never closed: it outlives every light span.
        crate::light::set_carrier(&id);
    });
}

struct LightSettings {
    levels: Directives,
    /// The OTel layer's own filter, when sampled calls go through the bridge.
    traces: Option<Directives>,
}

/// The light settings of the runtime's subscriber, once installed with light spans.
static LIGHT: OnceLock<LightSettings> = OnceLock::new();

/// What the filters alone say about a light span of `kind` (`light::UNSAMPLED` or
/// `light::SAMPLED_FRAME`) at `meta` (see [`LightSettings::light_verdict`]); `None`
/// also before the runtime's subscriber is installed with light spans. `cache` is
/// the call site's own (`crate::call_span::SpanVerdict`): the verdict with the
/// directives' epoch it was taken under, one atomic load per call while they do not
/// change.
pub(crate) fn direct_verdict(meta: &Metadata<'_>, kind: u8, cache: &AtomicU64) -> Option<bool> {
    let settings = LIGHT.get()?;
    // Read before the verdict is taken: a change in between leaves an entry of the
    // old epoch, taken again by the next call.
    let epoch = crate::filter::epoch();
    let cached = cache.load(Ordering::Relaxed);
    if cached >> 2 == epoch && cached & 3 != 3 {
        return decode_verdict((cached & 3) as u8);
    }
    let verdict = settings.light_verdict(meta, kind);
    cache.store(
        epoch << 2 | u64::from(encode_verdict(verdict)),
        Ordering::Relaxed,
    );
    verdict
}

/// Whether the call site's remembered verdicts say its span is disabled whether or
/// not the call is sampled, under the current directives: such a call needs no
/// sampling decision (`crate::light::begin_call`). Both verdicts are remembered
/// after the first unsampled and the first sampled call of the site.
#[inline]
pub(crate) fn cached_disabled(verdict: &crate::call_span::SpanVerdict) -> bool {
    let disabled = crate::filter::epoch() << 2 | u64::from(encode_verdict(Some(false)));
    verdict.unsampled.load(Ordering::Relaxed) == disabled
        && verdict.sampled.load(Ordering::Relaxed) == disabled
}

/// Answers `Dispatch::is` for the runtime's subscriber, whatever its layers.
struct Marker;

/// The address of the global `Dispatch` once it is the runtime's subscriber (`0`:
/// not known to be). `tracing_core::dispatcher::get_default` hands out that one
/// static whenever no scoped dispatcher is set on the thread; a scoped one (an
/// application's or a test's `with_default`) lives elsewhere.
static GLOBAL_DISPATCH: AtomicUsize = AtomicUsize::new(0);

/// Remembers the global dispatcher's address, right after the runtime's subscriber
/// became it.
fn remember_global_dispatch() {
    let address = tracing::dispatcher::get_default(|d| {
        d.is::<Marker>()
            .then_some(d as *const tracing::Dispatch as usize)
    });
    // Inside a scoped dispatcher of the installing thread this is not the global
    // one: call sites then keep asking the dispatcher.
    if let Some(address) = address {
        GLOBAL_DISPATCH.store(address, Ordering::Release);
    }
}

/// Whether the current dispatcher is the runtime's subscriber (not one an
/// application or a test set for a scope). Compares addresses: `Dispatch::is`
/// is a virtual call and two type-id comparisons, ~50 instructions per call.
#[inline]
pub(crate) fn is_current() -> bool {
    let global = GLOBAL_DISPATCH.load(Ordering::Relaxed);
    global != 0
        && tracing::dispatcher::get_default(|d| d as *const tracing::Dispatch as usize == global)
}

/// The runtime's subscriber: the registry and its layers, plus light spans for
/// unsampled `#[instrumented]` calls (`crate::light`).
struct ZsSubscriber<S> {
    inner: S,
    light: Option<&'static LightSettings>,
}

impl<S> ZsSubscriber<S>
where
    S: Subscriber,
{
    /// Rewrites an explicit light parent to a registry one: the registry must
    /// never see a light id.
    fn registry_parent(&self, attrs: &Attributes<'_>) -> Option<Option<Id>> {
        let parent = attrs.parent()?;
        crate::light::is_light(parent).then(crate::light::carrier)
    }
}

impl LightSettings {
    /// What the filters alone say about a light span of `kind`: `Some(true)` build
    /// it, `Some(false)` the span is disabled, `None` build an ordinary span and let
    /// the layers' filters decide.
    fn light_verdict(&self, meta: &Metadata<'_>, kind: u8) -> Option<bool> {
        // An unsampled call's span: only the log level decides; the per-layer
        // filters are not asked (nothing of theirs will run).
        let logged = self.levels.static_verdict(meta)?;
        if kind == crate::light::SAMPLED_FRAME {
            // A sampled one is a light frame when both the log level and the trace
            // filter keep it, and disabled when neither does (no layer of the
            // runtime would record it); otherwise the layers decide as for any span.
            let traced = self.traces.as_ref()?.static_verdict(meta)?;
            return match (logged, traced) {
                (true, true) => Some(true),
                (false, false) => Some(false),
                _ => None,
            };
        }
        Some(logged)
    }
}

fn encode_verdict(verdict: Option<bool>) -> u8 {
    match verdict {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    }
}

fn decode_verdict(v: u8) -> Option<bool> {
    match v {
        1 => Some(false),
        2 => Some(true),
        _ => None,
    }
}

impl<S> Subscriber for ZsSubscriber<S>
where
    S: Subscriber,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.inner.max_level_hint()
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        self.inner.enabled(meta)
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        match self.registry_parent(attrs) {
            None => self.inner.new_span(attrs),
            Some(parent) => {
                let values = attrs.values();
                let attrs = match &parent {
                    Some(p) => Attributes::child_of(p.clone(), attrs.metadata(), values),
                    None => Attributes::new_root(attrs.metadata(), values),
                };
                self.inner.new_span(&attrs)
            }
        }
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        if self.light.is_none() {
            return self.inner.record(span, values);
        }
        let (target, frame) = if crate::light::is_light(span) {
            let Some(frame) = crate::light::frame(span) else {
                return;
            };
            // Busy: a record made while a value of the same span is being formatted
            // (see `Frame::try_fields`) is dropped rather than waited for forever.
            let Some(mut fields) = frame.try_fields() else {
                return;
            };
            values.record(&mut *fields);
            (span.clone(), frame)
        } else if crate::light::is_carrier_id(span) {
            // `Span::current()` inside a light span names the carrier with the
            // light span's metadata: the values belong to that light span.
            let mut visitor = CarrierRecord::default();
            values.record(&mut visitor);
            match visitor.target {
                Some((id, frame, _)) => (id, frame),
                None => return,
            }
        } else {
            return self.inner.record(span, values);
        };
        if crate::light::is_sampled_light(&target) {
            frame.with_span_data(|otel| otel.record(|v| values.record(v)));
        }
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        if !crate::light::is_light(span) && !crate::light::is_light(follows) {
            self.inner.record_follows_from(span, follows);
        }
    }

    fn event_enabled(&self, event: &Event<'_>) -> bool {
        self.inner.event_enabled(event)
    }

    fn event(&self, event: &Event<'_>) {
        // Light ids never reach user code (`Span::current()` names the carrier), so
        // no event has one as its explicit parent. A contextual event inside a
        // sampled frame belongs to its span data (the head sampler keeps it from
        // the OTel layer).
        if event.is_contextual() {
            if let Some((id, true)) = crate::light::innermost_light() {
                if let Some(frame) = crate::light::frame(&id) {
                    // Busy: an event from the formatting of a value being recorded
                    // into this span's data; it still reaches the log layer below.
                    frame.with_span_data(|otel| otel.event(event));
                }
            }
        }
        self.inner.event(event)
    }

    fn enter(&self, span: &Id) {
        if crate::light::is_light(span) {
            crate::light::push(span, true);
            if crate::light::is_sampled_light(span) {
                crate::light::enter_sampled(span);
            }
        } else {
            self.inner.enter(span);
            crate::light::push(span, false);
        }
    }

    fn exit(&self, span: &Id) {
        if !crate::light::is_light(span) {
            self.inner.exit(span);
        } else if crate::light::is_sampled_light(span) {
            crate::light::exit_sampled(span);
        }
        crate::light::pop(span);
    }

    fn clone_span(&self, span: &Id) -> Id {
        if crate::light::is_light(span) {
            crate::light::clone(span);
            return span.clone();
        }
        // The carrier is never closed (`create_carrier`): `Span::current()` inside a
        // light span (a clone, later a close) need not count its references in the
        // registry.
        if crate::light::is_carrier_id(span) {
            return span.clone();
        }
        self.inner.clone_span(span)
    }

    #[allow(deprecated)]
    fn drop_span(&self, span: Id) {
        let _ = self.try_close(span);
    }

    fn try_close(&self, span: Id) -> bool {
        if crate::light::is_light(&span) {
            return crate::light::release(&span);
        }
        if crate::light::is_carrier_id(&span) {
            return false;
        }
        self.inner.try_close(span)
    }

    // The OTel layer's span extensions (`OpenTelemetrySpanExt`) find it through the
    // dispatcher by downcasting: answers must come from the inner subscriber.
    #[allow(unsafe_code)]
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        if id == TypeId::of::<Marker>() {
            // A zero-sized type: any aligned, non-null pointer is a valid one.
            return Some(std::ptr::NonNull::<Marker>::dangling().as_ptr() as *const ());
        }
        // SAFETY: the inner subscriber's own answer for `id`, unchanged; it points
        // into `self.inner`, which lives as long as `self`.
        unsafe { self.inner.downcast_raw(id) }
    }

    fn current_span(&self) -> Current {
        if let Some(frame) = crate::light::current_light_frame() {
            let meta = frame.meta();
            if let (Some(meta), Some(carrier)) = (meta, crate::light::carrier()) {
                return Current::new(carrier, meta);
            }
        }
        self.inner.current_span()
    }
}

/// Records made through the carrier (see `ZsSubscriber::record`), in one pass: the
/// first field's callsite names the entered light frame they belong to, whose
/// fields stay locked for the rest of the record.
#[derive(Default)]
struct CarrierRecord {
    looked_up: bool,
    target: Option<(
        Id,
        &'static crate::light::Frame,
        MutexGuard<'static, RawFields>,
    )>,
}

impl CarrierRecord {
    fn fields(&mut self, field: &Field) -> Option<&mut RawFields> {
        if !self.looked_up {
            self.looked_up = true;
            // Busy fields (a record from inside the formatting of a value being
            // recorded into the same span): the record is dropped.
            self.target = crate::light::entered_frame_of(&field.callsite())
                .and_then(|(id, frame)| Some((id, frame, frame.try_fields()?)));
        }
        self.target.as_mut().map(|(_, _, fields)| &mut **fields)
    }
}

impl Visit for CarrierRecord {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if let Some(f) = self.fields(field) {
            f.record_f64(field, value);
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        if let Some(f) = self.fields(field) {
            f.record_i64(field, value);
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if let Some(f) = self.fields(field) {
            f.record_u64(field, value);
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        if let Some(f) = self.fields(field) {
            f.record_bool(field, value);
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if let Some(f) = self.fields(field) {
            f.record_str(field, value);
        }
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if let Some(f) = self.fields(field) {
            f.record_error(field, value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if let Some(f) = self.fields(field) {
            f.record_debug(field, value);
        }
    }
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
