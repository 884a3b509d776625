//! Log output: JSON lines for production, a human console format for
//! development; both redact sensitive fields. Events of high-volume targets can be
//! rate-limited, and the level can be changed at run time.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::light::Fields;
use crate::raw_fields::{RawFields, RawValue};
use crate::redact::{Redactor, REDACTED};

/// The log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// One JSON object per line on stdout (production; what Loki ingests).
    Json,
    /// Human-readable lines on stderr (development).
    Console,
}

impl LogFormat {
    /// Parses `ZS_LOG_FORMAT`: `json` or `console` (also `pretty`, `text`).
    pub fn parse(value: &str) -> Option<LogFormat> {
        match value.trim().to_ascii_lowercase().as_str() {
            "json" => Some(LogFormat::Json),
            "console" | "pretty" | "text" => Some(LogFormat::Console),
            _ => None,
        }
    }
}

/// Where log lines go. Defaults: stdout for JSON, stderr for the console format.
#[derive(Clone)]
pub struct LogSink(Arc<dyn Fn() -> Box<dyn Write + Send> + Send + Sync>);

impl LogSink {
    /// Standard output.
    pub fn stdout() -> LogSink {
        LogSink(Arc::new(|| Box::new(io::stdout())))
    }

    /// Standard error.
    pub fn stderr() -> LogSink {
        LogSink(Arc::new(|| Box::new(io::stderr())))
    }

    /// Any writer: `make` is called once per log line and the line is written to
    /// the returned writer in one `write_all`.
    pub fn from_fn<W, F>(make: F) -> LogSink
    where
        W: Write + Send + 'static,
        F: Fn() -> W + Send + Sync + 'static,
    {
        LogSink(Arc::new(move || Box::new(make())))
    }
}

impl fmt::Debug for LogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LogSink")
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = Box<dyn Write + Send>;

    fn make_writer(&'a self) -> Self::Writer {
        (self.0)()
    }
}

/// Keys every JSON line has; span and event fields with these names are written
/// as `field.<name>` instead, so they never overwrite them.
const RESERVED: &[&str] = &[
    "timestamp",
    "level",
    "service",
    "target",
    "message",
    "trace_id",
    "span_id",
    "trace_sampled",
    "span",
];

/// The log layer: JSON lines, or the human console format rendered from the same
/// fields. One layer for both, so both understand light spans (`crate::light`), which
/// are not in the registry: with `tracing-subscriber`'s own formatter every span of
/// the console format had to be a full registry span (it keeps each span's formatted
/// fields in the registry), which cost the example node twice what JSON logs cost.
pub(crate) struct JsonLayer {
    sink: LogSink,
    service: Arc<str>,
    redactor: Redactor,
    /// `None`: JSON. `Some(ansi)`: the console format, coloured when `ansi`.
    console: Option<bool>,
}

impl JsonLayer {
    pub(crate) fn new(sink: LogSink, service: &str, redactor: Redactor) -> JsonLayer {
        JsonLayer {
            sink,
            service: service.into(),
            redactor,
            console: None,
        }
    }

    /// The console format: `<time> <LEVEL> <span>{k=v}:<span>{k=v}: <target>: <message>
    /// k=v`, as `tracing-subscriber`'s full format lays it out, with control
    /// characters escaped so that a value cannot forge a line or move the terminal.
    pub(crate) fn console(
        sink: LogSink,
        service: &str,
        redactor: Redactor,
        ansi: bool,
    ) -> JsonLayer {
        JsonLayer {
            console: Some(ansi),
            ..JsonLayer::new(sink, service, redactor)
        }
    }
}

/// Calls `visit` with the name and fields of every span the event is in, outermost
/// first. Light spans (unsampled `#[instrumented]` calls, see `crate::light`) are not in
/// the registry: each goes after the registry span entered just before it.
fn for_each_span<S>(
    event: &Event<'_>,
    ctx: &Context<'_, S>,
    redactor: &Redactor,
    mut visit: impl FnMut(&'static str, &Fields),
) where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let mut lights = Vec::new();
    if event.is_contextual() {
        crate::light::entered_frames(&mut lights);
    }
    let mut placed = vec![false; lights.len()];
    let mut place =
        |after: Option<u64>, all: bool, visit: &mut dyn FnMut(&'static str, &Fields)| {
            for (i, (parent, id)) in lights.iter().enumerate() {
                if placed[i] || (!all && *parent != after) {
                    continue;
                }
                placed[i] = true;
                if let Some(frame) = crate::light::frame(id) {
                    let mut fields = Vec::new();
                    // Busy: this line is written while a value of the span is being
                    // recorded (its formatting logs). The span is named, its fields
                    // left out.
                    if let Some(raw) = frame.try_fields() {
                        render_raw_fields(redactor, &raw, &mut fields);
                    }
                    visit(frame.name(), &fields);
                }
            }
        };
    place(None, false, &mut visit);
    if let Some(scope) = ctx.event_scope(event) {
        for span in scope.from_root() {
            match span.extensions().get::<SpanFields>() {
                Some(SpanFields(fields)) => visit(span.name(), fields),
                None => visit(span.name(), &Vec::new()),
            }
            place(Some(crate::light::raw_id(&span.id())), false, &mut visit);
        }
    }
    place(None, true, &mut visit);
}

/// A field value as the console shows it: text as it is (control characters escaped),
/// anything else as JSON.
fn push_console_value(out: &mut String, value: &Value) {
    match value {
        Value::String(text) => out.push_str(&escape_controls(text)),
        other => out.push_str(&other.to_string()),
    }
}

/// The fields of one span, kept in its extensions: a small vector in declaration
/// order (one allocation for the span, none for a span without fields), where a map
/// cost a tree node and a `String` key per field, made and freed for every span.
struct SpanFields(crate::light::Fields);

/// A light frame's fields (kept as recorded, see `crate::raw_fields`) as the log
/// layer writes them: what the layer's visitor makes of the same records, with the
/// same redaction, reserved-name renaming and `otel.`/`log.` fields left out.
pub(crate) fn render_raw_fields(redactor: &Redactor, raw: &RawFields, out: &mut Fields) {
    let mut visitor = JsonVisitor {
        fields: out,
        redactor,
        message: None,
    };
    for (name, value) in raw.iter() {
        let value = match value {
            RawValue::U64(v) => Value::from(v),
            RawValue::I64(v) => Value::from(v),
            RawValue::F64(v) => f64_value(v),
            RawValue::Bool(v) => Value::Bool(v),
            RawValue::Text(text) => Value::String(text.to_owned()),
        };
        visitor.put_named(name, value);
    }
}

/// A float as JSON: a number, or its text where JSON has none (NaN, infinities).
fn f64_value(value: f64) -> Value {
    serde_json::Number::from_f64(value)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(value.to_string()))
}

/// Where a visitor puts the fields it reads.
trait FieldSink {
    fn put_field(&mut self, key: Cow<'static, str>, value: Value);
}

impl FieldSink for Map<String, Value> {
    fn put_field(&mut self, key: Cow<'static, str>, value: Value) {
        self.insert(key.into_owned(), value);
    }
}

impl FieldSink for Vec<(Cow<'static, str>, Value)> {
    fn put_field(&mut self, key: Cow<'static, str>, value: Value) {
        match self.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.push((key, value)),
        }
    }
}

struct JsonVisitor<'a, F: FieldSink> {
    fields: &'a mut F,
    redactor: &'a Redactor,
    message: Option<&'a mut Option<String>>,
}

impl<F: FieldSink> JsonVisitor<'_, F> {
    fn put(&mut self, field: &Field, value: Value) {
        self.put_named(field.name(), value);
    }

    fn put_named(&mut self, name: &'static str, value: Value) {
        if name.starts_with("otel.") || name.starts_with("log.") {
            return; // instructions to the OTel layer and tracing-log metadata
        }
        if name == "message" && self.message.is_some() {
            let text = match value {
                Value::String(s) => self.scrubbed(s),
                other => other.to_string(),
            };
            if let Some(message) = self.message.as_deref_mut() {
                *message = Some(text);
            }
            return;
        }
        let value = if self.redactor.is_sensitive_field(name) {
            Value::String(REDACTED.to_owned())
        } else {
            match value {
                Value::String(s) => Value::String(self.scrubbed(s)),
                other => other,
            }
        };
        let key = if RESERVED.contains(&name) {
            Cow::Owned(format!("field.{name}"))
        } else {
            Cow::Borrowed(name)
        };
        self.fields.put_field(key, value);
    }
}

impl<F: FieldSink> JsonVisitor<'_, F> {
    /// `text` with the secrets written into it redacted (see `Redactor::scrub`).
    fn scrubbed(&self, text: String) -> String {
        match self.redactor.scrub(&text) {
            Cow::Borrowed(_) => text,
            Cow::Owned(scrubbed) => scrubbed,
        }
    }
}

impl<F: FieldSink> Visit for JsonVisitor<'_, F> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, f64_value(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

impl<S> Layer<S> for JsonLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Vec::with_capacity(attrs.metadata().fields().len());
        attrs.record(&mut JsonVisitor {
            fields: &mut fields,
            redactor: &self.redactor,
            message: None,
        });
        span.extensions_mut().insert(SpanFields(fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(fields)) = extensions.get_mut::<SpanFields>() {
            values.record(&mut JsonVisitor {
                fields,
                redactor: &self.redactor,
                message: None,
            });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if let Some(ansi) = self.console {
            return self.console_event(event, &ctx, ansi);
        }
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::String(rfc3339_now()));
        line.insert(
            "level".into(),
            Value::String(meta.level().as_str().to_ascii_lowercase()),
        );
        line.insert("service".into(), Value::String(self.service.to_string()));
        line.insert("target".into(), Value::String(meta.target().to_owned()));

        let cx = opentelemetry::Context::current();
        let span_ref = cx.span();
        let sc = span_ref.span_context();
        if sc.is_valid() {
            line.insert("trace_id".into(), Value::String(sc.trace_id().to_string()));
            line.insert("span_id".into(), Value::String(sc.span_id().to_string()));
            line.insert("trace_sampled".into(), Value::Bool(sc.is_sampled()));
        }

        // Span fields, outermost first so inner spans win; then the event's own.
        let mut innermost: Option<&'static str> = None;
        for_each_span(event, &ctx, &self.redactor, |name, fields| {
            for (k, v) in fields {
                line.insert(k.to_string(), v.clone());
            }
            innermost = Some(name);
        });
        if let Some(name) = innermost {
            line.insert("span".into(), Value::String(name.to_owned()));
        }
        let mut message = None;
        event.record(&mut JsonVisitor {
            fields: &mut line,
            redactor: &self.redactor,
            message: Some(&mut message),
        });
        line.insert("message".into(), Value::String(message.unwrap_or_default()));

        let mut buf = match serde_json::to_vec(&Value::Object(line)) {
            Ok(buf) => buf,
            Err(_) => return,
        };
        buf.push(b'\n');
        let mut writer = (self.sink.0)();
        let _ = writer.write_all(&buf);
    }
}

impl JsonLayer {
    fn console_event<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>, ansi: bool)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let meta = event.metadata();
        let level = *meta.level();
        let mut out = rfc3339_now();
        out.push(' ');
        let (on, off) = match (ansi, level) {
            (false, _) => ("", ""),
            (true, Level::ERROR) => ("\x1b[31m", "\x1b[0m"),
            (true, Level::WARN) => ("\x1b[33m", "\x1b[0m"),
            (true, Level::INFO) => ("\x1b[32m", "\x1b[0m"),
            (true, Level::DEBUG) => ("\x1b[34m", "\x1b[0m"),
            (true, _) => ("\x1b[35m", "\x1b[0m"),
        };
        out.push_str(on);
        out.push_str(&format!("{:>5}", level.as_str()));
        out.push_str(off);
        out.push(' ');
        let mut any_span = false;
        for_each_span(event, ctx, &self.redactor, |name, fields| {
            any_span = true;
            out.push_str(name);
            if !fields.is_empty() {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push('=');
                    push_console_value(&mut out, v);
                }
                out.push('}');
            }
            out.push(':');
        });
        if any_span {
            out.push(' ');
        }
        out.push_str(meta.target());
        out.push_str(": ");
        let mut fields: Fields = Vec::new();
        let mut message = None;
        event.record(&mut JsonVisitor {
            fields: &mut fields,
            redactor: &self.redactor,
            message: Some(&mut message),
        });
        let message = message.unwrap_or_default();
        out.push_str(&escape_controls(&message));
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 || !message.is_empty() {
                out.push(' ');
            }
            out.push_str(k);
            out.push('=');
            push_console_value(&mut out, v);
        }
        out.push('\n');
        let mut writer = (self.sink.0)();
        let _ = writer.write_all(out.as_bytes());
    }
}

/// `2026-11-23T10:30:15.123456Z` for the current time.
pub(crate) fn rfc3339_now() -> String {
    humantime::format_rfc3339_micros(SystemTime::now().max(UNIX_EPOCH)).to_string()
}

/// `\n`, `\r` and other control characters (tab excepted) written as escapes.
fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push('\t'),
            c if c.is_control() => {
                use fmt::Write as _;
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A rate limit for one target prefix and level: events at that level or more
/// verbose from a target starting with the prefix are kept at most `per_second`
/// times a second; the rest are counted in `<ns>_log_events_sampled_out_total{level}`.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRateLimit {
    /// Target prefix (`zerostate::p2p` matches `zerostate::p2p::gossip`); empty matches all.
    pub target: String,
    /// The least verbose level the limit applies to.
    pub level: Level,
    /// Events kept per second.
    pub per_second: u32,
}

struct RateWindow {
    limit: LogRateLimit,
    /// Upper 32 bits: the second the window belongs to; lower 32: events kept in it.
    state: AtomicU64,
}

/// The per-layer filter that applies the rate limits.
pub(crate) struct LogSampler {
    windows: Vec<RateWindow>,
    sampled_out: BTreeMap<Level, metrics::Counter>,
    started: std::time::Instant,
}

impl LogSampler {
    pub(crate) fn new(limits: &[LogRateLimit], namespace: &str) -> LogSampler {
        let name = format!("{namespace}_log_events_sampled_out_total");
        metrics::describe_counter!(
            name.clone(),
            "Log events not written because their target and level exceeded a configured rate."
        );
        let sampled_out = [
            Level::ERROR,
            Level::WARN,
            Level::INFO,
            Level::DEBUG,
            Level::TRACE,
        ]
        .into_iter()
        .map(|l| {
            let value = l.as_str().to_ascii_lowercase();
            (l, metrics::counter!(name.clone(), "level" => value))
        })
        .collect();
        LogSampler {
            windows: limits
                .iter()
                .map(|limit| RateWindow {
                    limit: limit.clone(),
                    state: AtomicU64::new(0),
                })
                .collect(),
            sampled_out,
            started: std::time::Instant::now(),
        }
    }

    fn admit(&self, meta: &Metadata<'_>) -> bool {
        let Some(window) = self.windows.iter().find(|w| {
            // Level ordering: TRACE > DEBUG > INFO > WARN > ERROR (more verbose is greater).
            *meta.level() >= w.limit.level && meta.target().starts_with(w.limit.target.as_str())
        }) else {
            return true;
        };
        let second = self.started.elapsed().as_secs() as u32;
        let mut current = window.state.load(Ordering::Relaxed);
        loop {
            let (sec, count) = ((current >> 32) as u32, current as u32);
            let next = if sec == second {
                if count >= window.limit.per_second {
                    if let Some(c) = self.sampled_out.get(meta.level()) {
                        c.increment(1);
                    }
                    return false;
                }
                (u64::from(sec) << 32) | u64::from(count + 1)
            } else {
                (u64::from(second) << 32) | 1
            };
            match window.state.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }
}

impl<S> Filter<S> for LogSampler {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    /// Spans are never limited, so the level filter's per-callsite verdict for them
    /// stays cached. Events stay `sometimes`: `event_enabled` must see each one
    /// (tracing-subscriber's per-layer filter state expects an `enabled` pass before
    /// an `event_enabled` that drops the event).
    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        if meta.is_span() {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::sometimes()
        }
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        self.admit(event.metadata())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let t = rfc3339_now();
        assert_eq!(t.len(), "2026-11-23T10:30:15.123456Z".len(), "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
        assert!(humantime::parse_rfc3339(&t).is_ok(), "{t}");
    }

    /// The fields of one span with every kind of value, recorded twice: straight into
    /// the layer's visitor (registry spans) and kept raw then rendered (light frames).
    #[test]
    fn raw_fields_render_as_the_layer_records_them() {
        use tracing::field::Value as _;
        static CS: tracing::callsite::DefaultCallsite =
            tracing::callsite::DefaultCallsite::new(&META);
        static META: Metadata<'static> = tracing::metadata! {
            name: "s",
            target: "unit",
            level: Level::INFO,
            fields: &["n", "neg", "ratio", "nan", "ok", "text", "shown", "password",
                      "level", "otel.kind", "later"],
            callsite: &CS,
            kind: tracing::metadata::Kind::SPAN,
        };
        let redactor = Redactor::new(&[]);
        let f = |name: &str| META.fields().field(name).unwrap();
        let record = |v: &mut dyn Visit| {
            7u64.record(&f("n"), v);
            (-3i64).record(&f("neg"), v);
            0.25f64.record(&f("ratio"), v);
            f64::NAN.record(&f("nan"), v);
            true.record(&f("ok"), v);
            "line\nwith password=hunter2".record(&f("text"), v);
            tracing::field::display("peer-07").record(&f("shown"), v);
            "hunter2".record(&f("password"), v);
            "warn".record(&f("level"), v);
            "server".record(&f("otel.kind"), v);
            "first".record(&f("later"), v);
            "second".record(&f("later"), v);
        };
        let mut direct: Fields = Vec::new();
        record(&mut JsonVisitor {
            fields: &mut direct,
            redactor: &redactor,
            message: None,
        });
        let mut raw = RawFields::default();
        record(&mut raw);
        let mut rendered: Fields = Vec::new();
        render_raw_fields(&redactor, &raw, &mut rendered);
        assert_eq!(rendered, direct);
        let get = |k: &str| {
            rendered
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("password"), Some(Value::String(REDACTED.to_owned())));
        assert_eq!(get("field.level"), Some(Value::from("warn")));
        assert_eq!(get("level"), None);
        assert_eq!(get("otel.kind"), None);
        assert_eq!(get("later"), Some(Value::from("second")));
        assert_eq!(get("nan"), Some(Value::from("NaN")));
        let text = get("text").unwrap();
        assert!(!text.as_str().unwrap().contains("hunter2"), "{text}");
    }

    /// The console format as `subscriber.rs` builds it, writing into a buffer.
    fn console_output(emit: impl FnOnce()) -> String {
        let buf = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = {
            let buf = buf.clone();
            LogSink::from_fn(move || CaptureWriter(buf.clone()))
        };
        use tracing_subscriber::layer::SubscriberExt as _;
        let subscriber = tracing_subscriber::registry().with(JsonLayer::console(
            sink,
            "unit",
            Redactor::new(&[]),
            false,
        ));
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        text
    }

    struct CaptureWriter(Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for CaptureWriter {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn console_lines_cannot_be_forged_and_hide_secrets() {
        let forged = "x\n2026-01-01T00:00:00Z ERROR forged: admin logged in\r\u{1b}[2K";
        let out = console_output(|| {
            let span = tracing::info_span!("req", path = %forged, note = forged);
            let _e = span.enter();
            tracing::info!(display = %forged, debug = ?forged, "message {forged}");
            tracing::info!(
                password = "hunter2-planted",
                "login password=hunter3-planted ok"
            );
            tracing::info!(error = %"Authorization: Bearer tok-planted", "upstream refused");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines.iter().all(|l| l.contains(" INFO ")), "{out}");
        assert!(!out.contains('\r') && !out.contains('\u{1b}'), "{out:?}");
        assert!(
            lines[0].contains("message x\\n2026-01-01T00:00:00Z ERROR forged"),
            "{out}"
        );
        assert!(lines[0].contains("path=x\\n2026"), "{out}");
        assert!(lines[0].contains("\\u{1b}[2K"), "{out}");
        assert!(!out.contains("planted"), "{out}");
        assert!(lines[1].contains("password=[REDACTED]"), "{out}");
        assert!(lines[1].contains("login password=[REDACTED] ok"), "{out}");
    }

    #[test]
    fn formats() {
        assert_eq!(LogFormat::parse("JSON"), Some(LogFormat::Json));
        assert_eq!(LogFormat::parse("console"), Some(LogFormat::Console));
        assert_eq!(LogFormat::parse("xml"), None);
    }

    #[test]
    fn rate_limit_admits_per_second_budget() {
        let sampler = LogSampler::new(
            &[LogRateLimit {
                target: "noisy".into(),
                level: Level::INFO,
                per_second: 3,
            }],
            "unit",
        );
        static CS: tracing::callsite::DefaultCallsite =
            tracing::callsite::DefaultCallsite::new(&META);
        static META: Metadata<'static> = tracing::metadata!(
            name: "e",
            target: "noisy::inner",
            level: Level::DEBUG,
            fields: &[],
            callsite: &CS,
            kind: tracing::metadata::Kind::EVENT
        );
        let kept = (0..10).filter(|_| sampler.admit(&META)).count();
        // The whole loop runs within one second (or straddles one boundary).
        assert!((3..=6).contains(&kept), "kept {kept}");
    }
}
