//! Sampled `#[instrumented]` spans exported without `tracing-opentelemetry`.
//!
//! A sampled call used to create a full registry span that the OTel layer turned
//! into an SDK span: a registry slot, per-layer filter state, a span builder, a
//! started SDK span with its own lock, a thread-name allocation, busy/idle timings
//! and the export data, ~14,000 instructions a call (callgrind), ten times an
//! unsampled call. Under head sampling the decision is taken at the call site
//! (`crate::light::begin_call`), so a sampled call's span can be a light frame too,
//! carrying an [`OtelFrame`]: ids, parent, start time, attributes, events and
//! status, collected the way the OTel layer collects them, and handed to our
//! batch processor as SDK [`SpanData`] when the frame closes.
//!
//! What keeps the two kinds of span in one trace:
//! - **Parent.** The frame's parent is `opentelemetry::Context::current()` when it
//!   starts: the OTel layer activates the context of every sampled registry span
//!   it enters (`context_activation`, on by default), and a sampled frame attaches
//!   its own context when entered, so either kind parents the other.
//! - **Children.** A registry span created inside a sampled frame is sampled
//!   (`head.rs`), and the OTel layer takes its parent from the current context:
//!   the frame's.
//! - **Events** inside a sampled frame are recorded on it (not on the registry
//!   span outside it): the head sampler keeps them from the OTel layer and the
//!   runtime's subscriber records them here, with the OTel layer's conventions
//!   (`level` and `target` attributes, the message as the name, `error` fields as
//!   `exception` events that set the error status, ERROR events set the status).
//! - **Logs** take their trace id from the current context: the frame's.
//! - **Outgoing requests** (`propagation::inject_current`) inject the current
//!   context inside a sampled frame.
//!
//! Exported spans have the OTel layer's shape: `thread.id`, `thread.name`,
//! `busy_ns`, `idle_ns`, the span's fields as attributes (`otel.name`,
//! `otel.kind`, `otel.status_code`, `otel.status_description` applied, not
//! recorded), the end time at the last exit.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, InstrumentationScope, Key, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks, SpanProcessor};
use tracing::field::{Field, Visit};
use tracing::Metadata;

use super::QueueProcessor;

/// The OpenTelemetry SDK's default span limits.
const MAX_ATTRIBUTES: usize = 128;
const MAX_EVENTS: usize = 128;

/// Where finished spans go: the trace pipeline's processor (`None`: no endpoint,
/// spans are built and dropped, as the SDK does without a processor).
struct Sink {
    processor: Option<Arc<QueueProcessor>>,
    scope: InstrumentationScope,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Connects the bridge to the installed trace pipeline (once per process, with the
/// global subscriber). Returns whether this call installed it.
pub(crate) fn install(processor: Option<Arc<QueueProcessor>>) -> bool {
    SINK.set(Sink {
        processor,
        scope: InstrumentationScope::builder("zs-observe").build(),
    })
    .is_ok()
}

/// Whether finished spans go anywhere: the bridge is installed with a processor (an
/// endpoint is configured).
fn exporting() -> bool {
    SINK.get().is_some_and(|sink| sink.processor.is_some())
}

/// The OpenTelemetry part of a sampled light frame.
///
/// Without an endpoint nothing reads a span's data, only its context: log lines take
/// their trace and span ids from it, outgoing requests their `traceparent`. Such a
/// frame keeps the context and records nothing else (no attributes, events, timings
/// or status; no span data built at the end): a sampled call costs little more than an
/// unsampled one then.
pub(crate) struct OtelFrame {
    /// Whether the span's data is kept and handed to the processor at the end.
    exporting: bool,
    /// The context attached while the frame is entered: the parent's, with this
    /// span's context.
    cx: Context,
    span_context: SpanContext,
    parent_span_id: SpanId,
    parent_is_remote: bool,
    name: Cow<'static, str>,
    kind: SpanKind,
    start: SystemTime,
    /// Raw clock readings (`crate::callsite::clock`).
    start_raw: u64,
    last: u64,
    last_exit: Option<u64>,
    entered: u32,
    busy: u64,
    idle: u64,
    attributes: Vec<KeyValue>,
    dropped_attributes: u32,
    events: Vec<Event>,
    dropped_events: u32,
    status: Status,
}

thread_local! {
    /// `thread.id` and `thread.name`, as the OTel layer writes them.
    static THREAD: (i64, Option<StringValue>) = {
        let current = std::thread::current();
        let id = format!("{:?}", current.id())
            .trim_start_matches("ThreadId(")
            .trim_end_matches(')')
            .parse::<i64>()
            .unwrap_or(0);
        (id, current.name().map(|n| StringValue::from(Arc::<str>::from(n))))
    };
}

fn nonzero_u64() -> u64 {
    loop {
        let v = super::head::random_u64();
        if v != 0 {
            return v;
        }
    }
}

impl OtelFrame {
    /// Starts the span of `meta`, child of the current context; `record` visits
    /// its fields.
    pub(crate) fn start(
        meta: &'static Metadata<'static>,
        record: impl FnOnce(&mut dyn Visit),
    ) -> Box<OtelFrame> {
        let parent = Context::current();
        let (trace_id, parent_span_id, parent_is_remote, trace_state) = {
            let span = parent.span();
            let psc = span.span_context();
            if psc.is_valid() {
                (
                    psc.trace_id(),
                    psc.span_id(),
                    psc.is_remote(),
                    psc.trace_state().clone(),
                )
            } else {
                let high = nonzero_u64() as u128;
                let low = super::head::random_u64() as u128;
                (
                    TraceId::from((high << 64) | low),
                    SpanId::INVALID,
                    false,
                    TraceState::default(),
                )
            }
        };
        let span_context = SpanContext::new(
            trace_id,
            SpanId::from(nonzero_u64()),
            TraceFlags::SAMPLED,
            false,
            trace_state,
        );
        let cx = parent.with_remote_span_context(span_context.clone());
        let exporting = exporting();
        let mut attributes = Vec::new();
        if exporting {
            attributes.reserve_exact(meta.fields().len() + 4);
            THREAD.with(|(id, name)| {
                attributes.push(KeyValue::new("thread.id", *id));
                if let Some(name) = name {
                    attributes.push(KeyValue::new("thread.name", name.clone()));
                }
            });
        }
        let now = crate::callsite::clock().raw();
        let mut frame = Box::new(OtelFrame {
            exporting,
            cx,
            span_context,
            parent_span_id,
            parent_is_remote,
            name: Cow::Borrowed(meta.name()),
            kind: SpanKind::Internal,
            // The wall clock is read only for a span that is exported.
            start: if exporting {
                opentelemetry::time::now()
            } else {
                SystemTime::UNIX_EPOCH
            },
            start_raw: now,
            last: now,
            last_exit: None,
            entered: 0,
            busy: 0,
            idle: 0,
            attributes,
            dropped_attributes: 0,
            events: Vec::new(),
            dropped_events: 0,
            status: Status::Unset,
        });
        if exporting {
            record(&mut AttributeVisitor(&mut frame));
        }
        frame
    }

    /// The context to attach while the frame is entered.
    pub(crate) fn context(&self) -> &Context {
        &self.cx
    }

    /// Records `Span::record` values.
    pub(crate) fn record(&mut self, record: impl FnOnce(&mut dyn Visit)) {
        if self.exporting {
            record(&mut AttributeVisitor(self));
        }
    }

    pub(crate) fn entered(&mut self) {
        if self.exporting && self.entered == 0 {
            let now = crate::callsite::clock().raw();
            self.idle += delta(self.last, now);
            self.last = now;
        }
        self.entered += 1;
    }

    pub(crate) fn exited(&mut self) {
        self.entered = self.entered.saturating_sub(1);
        if self.exporting && self.entered == 0 {
            let now = crate::callsite::clock().raw();
            self.busy += delta(self.last, now);
            self.last = now;
            self.last_exit = Some(now);
        }
    }

    /// Records an event inside the frame.
    pub(crate) fn event(&mut self, event: &tracing::Event<'_>) {
        if !self.exporting {
            return;
        }
        let meta = event.metadata();
        if self.status == Status::Unset && *meta.level() == tracing::Level::ERROR {
            self.status = Status::error("");
        }
        if self.events.len() >= MAX_EVENTS {
            self.dropped_events += 1;
            return;
        }
        let mut otel_event = Event::new(
            String::new(),
            opentelemetry::time::now(),
            vec![
                KeyValue::new("level", meta.level().as_str()),
                KeyValue::new("target", Value::String(meta.target().to_owned().into())),
            ],
            0,
        );
        let mut status = None;
        event.record(&mut EventVisitor {
            event: &mut otel_event,
            status: &mut status,
        });
        if otel_event.name.is_empty() {
            otel_event.name = Cow::Borrowed(meta.name());
        }
        if let Some(status) = status {
            self.status = status;
        }
        self.events.push(otel_event);
    }

    fn push_attribute(&mut self, kv: KeyValue) {
        if let Some(slot) = self.attributes.iter_mut().find(|a| a.key == kv.key) {
            *slot = kv;
        } else if self.attributes.len() < MAX_ATTRIBUTES {
            self.attributes.push(kv);
        } else {
            self.dropped_attributes += 1;
        }
    }

    /// Ends the span and hands it to the processor.
    pub(crate) fn finish(self: Box<OtelFrame>) {
        let Some(sink) = SINK.get() else { return };
        let Some(processor) = sink.processor.as_ref().filter(|_| self.exporting) else {
            return;
        };
        let frame = *self;
        let clock = crate::callsite::clock();
        let end_raw = frame.last_exit.unwrap_or_else(|| clock.raw());
        let end = frame.start + Duration::from_nanos(delta(frame.start_raw, end_raw));
        let mut attributes = frame.attributes;
        attributes.push(KeyValue::new("busy_ns", frame.busy as i64));
        attributes.push(KeyValue::new("idle_ns", frame.idle as i64));
        let mut events = SpanEvents::default();
        events.events = frame.events;
        events.dropped_count = frame.dropped_events;
        let data = SpanData {
            span_context: frame.span_context,
            parent_span_id: frame.parent_span_id,
            parent_span_is_remote: frame.parent_is_remote,
            span_kind: frame.kind,
            name: frame.name,
            start_time: frame.start,
            end_time: end,
            attributes,
            dropped_attributes_count: frame.dropped_attributes,
            events,
            links: SpanLinks::default(),
            status: frame.status,
            instrumentation_scope: sink.scope.clone(),
        };
        processor.on_end(data);
    }
}

fn delta(from: u64, to: u64) -> u64 {
    crate::callsite::clock().delta_as_nanos(from, to)
}

fn span_kind(s: &str) -> Option<SpanKind> {
    [
        ("server", SpanKind::Server),
        ("client", SpanKind::Client),
        ("producer", SpanKind::Producer),
        ("consumer", SpanKind::Consumer),
        ("internal", SpanKind::Internal),
    ]
    .into_iter()
    .find(|(name, _)| s.eq_ignore_ascii_case(name))
    .map(|(_, kind)| kind)
}

fn status(s: &str) -> Status {
    if s.eq_ignore_ascii_case("ok") {
        Status::Ok
    } else if s.eq_ignore_ascii_case("error") {
        Status::error("")
    } else {
        Status::Unset
    }
}

/// Span fields as the OTel layer records them.
struct AttributeVisitor<'a>(&'a mut OtelFrame);

impl AttributeVisitor<'_> {
    fn special(&mut self, field: &Field, text: impl FnOnce() -> String) -> bool {
        match field.name() {
            "otel.name" => self.0.name = Cow::Owned(text()),
            "otel.kind" => {
                if let Some(kind) = span_kind(&text()) {
                    self.0.kind = kind;
                }
            }
            "otel.status_code" => self.0.status = status(&text()),
            "otel.status_description" => self.0.status = Status::error(text()),
            _ => return false,
        }
        true
    }
}

impl Visit for AttributeVisitor<'_> {
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.push_attribute(KeyValue::new(field.name(), value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.push_attribute(KeyValue::new(field.name(), value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.push_attribute(KeyValue::new(field.name(), value));
    }

    // The OTel layer formats a `u64` as a string (through `Debug`); an OTLP integer
    // is what it is, when it fits (and formatting cost ~700 instructions a field).
    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(v) => self.record_i64(field, v),
            Err(_) => self
                .0
                .push_attribute(KeyValue::new(field.name(), value.to_string())),
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.special(field, || value.to_owned()) {
            self.0
                .push_attribute(KeyValue::new(field.name(), value.to_owned()));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let message = value.to_string();
        self.0
            .push_attribute(KeyValue::new("exception.message", message.clone()));
        self.0.push_attribute(KeyValue::new(field.name(), message));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if !self.special(field, || format!("{value:?}")) {
            self.0.push_attribute(KeyValue::new(
                Key::new(field.name()),
                Value::String(format!("{value:?}").into()),
            ));
        }
    }
}

/// Event fields as the OTel layer records them.
struct EventVisitor<'a> {
    event: &'a mut Event,
    status: &'a mut Option<Status>,
}

impl EventVisitor<'_> {
    fn text(&mut self, field: &Field, text: String) {
        match field.name() {
            "message" => self.event.name = text.into(),
            "error" if self.event.name.is_empty() => {
                *self.status = Some(Status::error(text.clone()));
                self.event.name = "exception".into();
                self.event
                    .attributes
                    .push(KeyValue::new("exception.message", text));
            }
            name if name.starts_with("log.") => {}
            name => self.event.attributes.push(KeyValue::new(name, text)),
        }
    }
}

impl Visit for EventVisitor<'_> {
    fn record_bool(&mut self, field: &Field, value: bool) {
        match field.name() {
            "message" => self.event.name = value.to_string().into(),
            name => self.event.attributes.push(KeyValue::new(name, value)),
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        match field.name() {
            "message" => self.event.name = value.to_string().into(),
            name => self.event.attributes.push(KeyValue::new(name, value)),
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        match field.name() {
            "message" => self.event.name = value.to_string().into(),
            name => self.event.attributes.push(KeyValue::new(name, value)),
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        // The OTel layer writes `error` values through `Debug` (quoted); others as is.
        if field.name() == "error" {
            self.text(field, format!("{value:?}"));
        } else {
            self.text(field, value.to_owned());
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.event
            .attributes
            .push(KeyValue::new("exception.message", value.to_string()));
        self.event
            .attributes
            .push(KeyValue::new(field.name(), value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.text(field, format!("{value:?}"));
    }
}
