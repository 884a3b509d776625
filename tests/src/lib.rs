//! Support for the cross-crate tests: a capturing metrics recorder and a
//! capturing `tracing` subscriber, so behaviour is asserted on what was
//! recorded rather than on log text.

pub mod logs;
pub mod otlp;
pub mod promql;
pub mod scrape;
pub mod stack;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The value of one series in the capturing recorder.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A counter.
    Counter(u64),
    /// A gauge.
    Gauge(f64),
    /// Every sample a histogram received since the process started.
    Histogram(Vec<f64>),
}

/// A recorder whose reads do not reset anything (unlike `DebuggingRecorder`,
/// whose snapshot swaps counters and gauges to zero), so any number of tests can
/// read the same process-wide state.
struct CapturingRecorder {
    registry: Arc<Registry<Key, AtomicStorage>>,
}

impl Recorder for CapturingRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.registry
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.registry
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.registry
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

fn registry() -> &'static Registry<Key, AtomicStorage> {
    static REGISTRY: OnceLock<Arc<Registry<Key, AtomicStorage>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let registry = Arc::new(Registry::atomic());
        zs_observe::set_global_recorder(CapturingRecorder {
            registry: registry.clone(),
        })
        .unwrap_or_else(|_| panic!("another metrics recorder is already installed"));
        registry
    })
}

/// Serves `app` on a fresh loopback port from a task of the current tokio runtime, and
/// returns the address.
pub async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

/// This process's resident memory in bytes (Linux `/proc/self/statm`), for tests that
/// show memory stays bounded (each in its own test binary).
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .expect("resident field")
        .parse()
        .expect("number");
    pages * 4096
}

/// Installs the capturing recorder for this process (idempotent). Call it before
/// the first instrumented call of a test.
pub fn install_recorder() {
    registry();
}

/// `name{k="v",...}` with labels sorted, the identity of a series.
pub fn series_id(name: &str, labels: &[(&str, &str)]) -> String {
    let sorted: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let labels: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

fn id_of(key: &Key) -> String {
    let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
    series_id(key.name(), &labels)
}

/// Every series recorded so far, read without resetting anything.
pub fn snapshot() -> HashMap<String, Value> {
    let registry = registry();
    let mut out = HashMap::new();
    for (key, c) in registry.get_counter_handles() {
        out.insert(id_of(&key), Value::Counter(c.load(Ordering::Acquire)));
    }
    for (key, g) in registry.get_gauge_handles() {
        out.insert(
            id_of(&key),
            Value::Gauge(f64::from_bits(g.load(Ordering::Acquire))),
        );
    }
    for (key, h) in registry.get_histogram_handles() {
        out.insert(id_of(&key), Value::Histogram(h.data()));
    }
    out
}

/// The counter `name` with exactly `labels`, or 0 when the series does not exist.
pub fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    match snapshot().get(&series_id(name, labels)) {
        Some(Value::Counter(v)) => *v,
        Some(other) => panic!("{name} is not a counter: {other:?}"),
        None => 0,
    }
}

/// The gauge `name` with exactly `labels`, if the series exists.
pub fn gauge(name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    match snapshot().get(&series_id(name, labels)) {
        Some(Value::Gauge(v)) => Some(*v),
        Some(other) => panic!("{name} is not a gauge: {other:?}"),
        None => None,
    }
}

/// All samples of the histogram `name` with exactly `labels`.
pub fn histogram(name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    match snapshot().get(&series_id(name, labels)) {
        Some(Value::Histogram(v)) => v.clone(),
        Some(other) => panic!("{name} is not a histogram: {other:?}"),
        None => Vec::new(),
    }
}

/// Every series id whose metric name is `name`.
pub fn series_of(name: &str) -> Vec<String> {
    let prefix = format!("{name}{{");
    let mut ids: Vec<String> = snapshot()
        .into_keys()
        .filter(|k| k.starts_with(&prefix))
        .collect();
    ids.sort();
    ids
}

/// A span the capturing subscriber saw.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    /// The span's name.
    pub name: String,
    /// Its target.
    pub target: String,
    /// Its level.
    pub level: tracing::Level,
    /// Fields, formatted with `Debug` (as recorded, including later `record`s).
    pub fields: BTreeMap<String, String>,
    /// The parent span's name.
    pub parent: Option<String>,
}

/// An event the capturing subscriber saw.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// Its level.
    pub level: tracing::Level,
    /// Its target.
    pub target: String,
    /// Fields (the message under `message`).
    pub fields: BTreeMap<String, String>,
    /// The name of the span it occurred in.
    pub span: Option<String>,
    /// The fields of that span.
    pub span_fields: BTreeMap<String, String>,
}

/// What a [`Capture`] layer saw.
#[derive(Debug, Default)]
pub struct Captures {
    /// Spans, in creation order.
    pub spans: Vec<SpanRecord>,
    /// Events, in order.
    pub events: Vec<EventRecord>,
}

/// A `tracing` layer that records spans and events.
#[derive(Clone, Default)]
pub struct Capture {
    inner: Arc<Mutex<Captures>>,
}

impl Capture {
    /// A subscriber made of this layer over a registry.
    pub fn subscriber(&self) -> impl Subscriber + Send + Sync {
        use tracing_subscriber::layer::SubscriberExt;
        tracing_subscriber::registry().with(self.clone())
    }

    /// The spans seen so far.
    pub fn spans(&self) -> Vec<SpanRecord> {
        self.lock().spans.clone()
    }

    /// The events seen so far.
    pub fn events(&self) -> Vec<EventRecord> {
        self.lock().events.clone()
    }

    /// The one span named `name`; panics unless exactly one was seen.
    pub fn span(&self, name: &str) -> SpanRecord {
        let spans: Vec<SpanRecord> = self
            .spans()
            .into_iter()
            .filter(|s| s.name == name)
            .collect();
        assert_eq!(spans.len(), 1, "expected one span `{name}`, saw {spans:#?}");
        spans.into_iter().next().expect("one span")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Captures> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct FieldMap(BTreeMap<String, String>);

impl Visit for FieldMap {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// Span fields stored in the registry's extensions, index into `Captures::spans`.
struct SpanIndex(usize);

impl<S> Layer<S> for Capture
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = FieldMap::default();
        attrs.record(&mut fields);
        let span = ctx.span(id).expect("span exists");
        let parent = span.parent().map(|p| p.name().to_owned());
        let mut captures = self.lock();
        captures.spans.push(SpanRecord {
            name: attrs.metadata().name().to_owned(),
            target: attrs.metadata().target().to_owned(),
            level: *attrs.metadata().level(),
            fields: fields.0,
            parent,
        });
        span.extensions_mut()
            .insert(SpanIndex(captures.spans.len() - 1));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let Some(index) = span.extensions().get::<SpanIndex>().map(|i| i.0) else {
            return;
        };
        let mut fields = FieldMap::default();
        values.record(&mut fields);
        self.lock().spans[index].fields.extend(fields.0);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = FieldMap::default();
        event.record(&mut fields);
        let span = ctx.event_span(event);
        let mut captures = self.lock();
        let (span_name, span_fields) = match span {
            Some(span) => {
                let fields = span
                    .extensions()
                    .get::<SpanIndex>()
                    .map(|i| captures.spans[i.0].fields.clone())
                    .unwrap_or_default();
                (Some(span.name().to_owned()), fields)
            }
            None => (None, BTreeMap::new()),
        };
        captures.events.push(EventRecord {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            fields: fields.0,
            span: span_name,
            span_fields,
        });
    }
}

/// Runs `promtool check metrics` on an exposition and returns its complaints
/// (empty when clean). Panics, saying how to install it, when promtool is missing:
/// a test that needs it must not pass silently without it.
pub fn promtool_check_metrics(exposition: &str) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "promtool is required by this test but could not be started ({e}). \
                 Install it with `apt-get update && apt-get install -y prometheus` \
                 (or run `scripts/test.sh`, which does)."
            )
        });
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(exposition.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    let mut complaints = String::from_utf8_lossy(&out.stdout).into_owned();
    complaints.push_str(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() && complaints.trim().is_empty() {
        complaints = format!("promtool exited with {}", out.status);
    }
    complaints
}

/// One sample line of a text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series name (with `_bucket`, `_sum`, `_count` suffixes as written).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// Parses the sample lines of a Prometheus text exposition (enough for tests:
/// label values without escaped quotes).
pub fn parse_exposition(body: &str) -> Vec<Sample> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').expect("closing brace");
                    let labels = inner
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once("=\"").expect("k=\"v\"");
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
                None => (series.to_owned(), BTreeMap::new()),
            };
            Sample {
                name,
                labels,
                value,
            }
        })
        .collect()
}

/// The value of the one sample named `name` whose labels include all of `labels`.
pub fn sample_value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(
        matching.len() <= 1,
        "{name}{labels:?} matches several samples: {matching:#?}"
    );
    matching.first().map(|s| s.value)
}
