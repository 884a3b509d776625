//! The span of an `#[instrumented]` call, built by the call site itself.
//!
//! The expansion declares the span's callsite and metadata as statics (as
//! `tracing::span!` would) and calls [`CallSpan::start`] with a closure that lists
//! the field values. What happens next depends on the sampling decision taken
//! before any field is evaluated ([`crate::light::begin_call`]):
//!
//! - an unsampled call under the runtime's own subscriber gets a light frame
//!   built here, without `tracing`'s dispatcher: no `enabled`, `new_span`,
//!   `enter`, `exit` or `try_close` call through it. Entering the span pushes
//!   the frame on the thread's span stack that the log layer and
//!   `Span::current()` read, exactly as the subscriber does for light spans it
//!   is handed;
//! - a sampled call, when the bridge exports sampled calls and the filters alone
//!   keep its span, gets a light frame with its span data built here too;
//!   entering attaches its OpenTelemetry context, dropping it hands the span to
//!   the export queue;
//! - a span the log level disables is not built, and its fields are not
//!   evaluated;
//! - anything else (another subscriber, another sampler, filters that need the
//!   layers) is an ordinary `tracing` span, with the same checks as
//!   `tracing::span!`: the static and dynamic level limits, the callsite's
//!   interest, `enabled`.
//!
//! An unsampled call went from 1,084 to ~920 instructions with this, a sampled
//! one from 3,416 to 3,250 (callgrind; docs/performance.md, item 10).

use std::mem::ManuallyDrop;
use std::sync::atomic::AtomicU64;

use tracing::callsite::{Callsite, DefaultCallsite};
use tracing::field::{Field, FieldSet, Value, Visit};
use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
use tracing::span::Id;
use tracing::{Metadata, Span};

use crate::light::{self, Frame, Scope, Start};
use crate::raw_fields::RawFields;

/// A call site's remembered filter verdicts: for its unsampled spans (the log level)
/// and its sampled ones (the log level and the trace filter); see
/// `crate::subscriber::direct_verdict`.
#[doc(hidden)]
pub struct SpanVerdict {
    pub(crate) unsampled: AtomicU64,
    pub(crate) sampled: AtomicU64,
}

impl SpanVerdict {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> SpanVerdict {
        // No verdict yet.
        SpanVerdict {
            unsampled: AtomicU64::new(u64::MAX),
            sampled: AtomicU64::new(u64::MAX),
        }
    }
}

/// One field value as the expansion hands it to [`Builder::build`]: numbers, booleans
/// and text as they are (recorded into a light frame without a dynamic call through
/// `tracing::Value` and the `Visit` trait: ~35 instructions fewer a field), anything
/// else as a `tracing::Value`.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub enum Captured<'a> {
    /// A field declared without a value (`tracing::field::Empty`).
    Empty,
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Str(&'a str),
    Dyn(&'a dyn Value),
}

impl Captured<'_> {
    /// The value as `tracing` records it: what the field would have been given.
    fn as_value(&self) -> Option<&dyn Value> {
        Some(match self {
            Captured::Empty => return None,
            Captured::U64(v) => v,
            Captured::I64(v) => v,
            Captured::F64(v) => v,
            Captured::Bool(v) => v,
            Captured::Str(v) => v,
            Captured::Dyn(v) => *v,
        })
    }

    /// Records the value as `tracing::Value::record` would: the same `Visit` method
    /// with the same argument (an unsigned integer as `u64`, a signed one as `i64`, a
    /// float as `f64`, `&str` as text).
    #[inline]
    fn record<V: Visit>(&self, field: &Field, visitor: &mut V) {
        match *self {
            Captured::Empty => {}
            Captured::U64(v) => visitor.record_u64(field, v),
            Captured::I64(v) => visitor.record_i64(field, v),
            Captured::F64(v) => visitor.record_f64(field, v),
            Captured::Bool(v) => visitor.record_bool(field, v),
            Captured::Str(v) => visitor.record_str(field, v),
            Captured::Dyn(v) => v.record(field, visitor),
        }
    }
}

/// The expansion's probe for a field value: `Capture(&value).__zs_capture()` picks
/// [`CaptureRaw`] for the primitive types `tracing` records as numbers, booleans or
/// text (method resolution prefers it: it takes the probe by value, [`CaptureDyn`]
/// by reference), and [`CaptureDyn`] for everything else. An unsuffixed literal
/// is an `i32` or `f64`, as it would have been.
#[doc(hidden)]
pub struct Capture<'a, T: ?Sized>(pub &'a T);

#[doc(hidden)]
pub trait CaptureRaw<'a> {
    fn __zs_capture(self) -> Captured<'a>;
}

#[doc(hidden)]
pub trait CaptureDyn<'a> {
    fn __zs_capture(&self) -> Captured<'a>;
}

impl<'a, T: Value> CaptureDyn<'a> for Capture<'a, T> {
    #[inline]
    fn __zs_capture(&self) -> Captured<'a> {
        Captured::Dyn(self.0)
    }
}

macro_rules! capture_as {
    ($variant:ident($as:ty): $($t:ty),*) => {$(
        impl<'a> CaptureRaw<'a> for Capture<'a, $t> {
            #[inline]
            fn __zs_capture(self) -> Captured<'a> {
                Captured::$variant(<$as>::from(*self.0))
            }
        }
    )*};
}
capture_as!(U64(u64): u8, u16, u32, u64);
capture_as!(I64(i64): i8, i16, i32, i64);
capture_as!(F64(f64): f32, f64);

impl<'a> CaptureRaw<'a> for Capture<'a, usize> {
    #[inline]
    fn __zs_capture(self) -> Captured<'a> {
        // As `tracing` records it (`as u64`: lossless on every supported target).
        Captured::U64(*self.0 as u64)
    }
}

impl<'a> CaptureRaw<'a> for Capture<'a, isize> {
    #[inline]
    fn __zs_capture(self) -> Captured<'a> {
        Captured::I64(*self.0 as i64)
    }
}

impl<'a> CaptureRaw<'a> for Capture<'a, bool> {
    #[inline]
    fn __zs_capture(self) -> Captured<'a> {
        Captured::Bool(*self.0)
    }
}

impl<'a, 's: 'a> CaptureRaw<'a> for Capture<'a, &'s str> {
    #[inline]
    fn __zs_capture(self) -> Captured<'a> {
        Captured::Str(self.0)
    }
}

/// Records `value` into the current span's field `name`: what
/// `tracing::Span::current().record(name, value)` does, for less when the current span
/// is an `#[instrumented]` call's under the runtime's subscriber (no `Span` handle is
/// taken, cloned and closed through `tracing`'s dispatcher: ~110 instructions instead
/// of ~400 in the example node, less when the span has no field of that name). Anywhere
/// else it is exactly that call, and always with the `disabled` feature (no
/// `#[instrumented]` span exists then).
///
/// ```
/// #[zs_observe::instrumented(span = "blob.store", fields(bytes), skip(blob))]
/// fn store(blob: &[u8]) {
///     zs_observe::record_current("bytes", blob.len());
/// }
/// store(b"abc");
/// ```
pub fn record_current<V: Value>(name: &str, value: V) {
    #[cfg(not(feature = "disabled"))]
    if crate::subscriber::is_current() && light::record_in_innermost(name, &value) {
        return;
    }
    Span::current().record(name, value);
}

/// The span of one `#[instrumented]` call: an ordinary `tracing` span, or a light
/// frame built without the dispatcher.
#[doc(hidden)]
pub struct CallSpan(ManuallyDrop<Inner>);

enum Inner {
    /// No span (`span = false`, or disabled by the level).
    Off,
    /// Boxed: rare under the runtime, and the guard that holds the span stays small
    /// (it is moved at every call).
    Tracing(Box<Span>),
    /// A light frame (`crate::light`) of an unsampled call, built here; released on
    /// drop. The frame is kept beside its id: this span holds a reference, so the
    /// frame stays its own until then.
    Light(Id, &'static Frame),
    /// A light frame of a sampled call with its span data for the bridge, built here;
    /// released on drop, its span data then going to the export queue.
    Sampled(Id, &'static Frame),
}

impl CallSpan {
    /// No span.
    #[inline]
    pub fn none() -> CallSpan {
        CallSpan(ManuallyDrop::new(Inner::Off))
    }

    /// Builds the span of `callsite`; `values` is called, to evaluate the fields,
    /// only when the span is enabled.
    #[inline]
    pub fn start(
        callsite: &'static DefaultCallsite,
        verdict: &'static SpanVerdict,
        values: impl FnOnce(&mut Builder),
    ) -> CallSpan {
        match Builder::begin(callsite, verdict) {
            Some(mut builder) => {
                values(&mut builder);
                builder.finish()
            }
            None => CallSpan::none(),
        }
    }

    /// Enters the span until the guard is dropped.
    #[inline]
    pub fn enter(&self) -> Entered<'_> {
        match &*self.0 {
            Inner::Off => Entered(EnteredInner::Off, std::marker::PhantomData),
            Inner::Tracing(span) => Entered(
                EnteredInner::Tracing(span.enter()),
                std::marker::PhantomData,
            ),
            Inner::Light(id, frame) => {
                light::push_light(id, frame, false);
                Entered(EnteredInner::Light(id), std::marker::PhantomData)
            }
            Inner::Sampled(id, frame) => {
                light::push_light(id, frame, true);
                light::enter_sampled(id);
                Entered(EnteredInner::Sampled(id), std::marker::PhantomData)
            }
        }
    }

    /// Marks the span failed: `otel.status_code = "ERROR"` and the description (the
    /// OTel layer turns them into the span's status).
    pub fn record_error<V: Value>(&self, description: V) {
        match &*self.0 {
            Inner::Off => {}
            Inner::Tracing(span) => {
                span.record("otel.status_code", "ERROR");
                span.record("otel.status_description", description);
            }
            Inner::Light(_, frame) | Inner::Sampled(_, frame) => {
                let Some(meta) = frame.meta() else { return };
                let fields = meta.fields();
                let code = fields.field("otel.status_code");
                let text = fields.field("otel.status_description");
                let record = |v: &mut dyn Visit| {
                    if let Some(f) = &code {
                        "ERROR".record(f, v);
                    }
                    if let Some(f) = &text {
                        description.record(f, v);
                    }
                };
                // Busy only while one of its values is being formatted on this thread.
                if let Some(mut raw) = frame.try_fields() {
                    record(&mut *raw);
                }
                // A sampled frame's span data: the exported span's status.
                if let Inner::Sampled(..) = *self.0 {
                    frame.with_span_data(|otel| otel.record(record));
                }
            }
        }
    }

    /// Whether this is a light frame built here (tests).
    #[cfg(test)]
    fn is_light(&self) -> bool {
        matches!(*self.0, Inner::Light(..) | Inner::Sampled(..))
    }

    /// Ends the span now, as dropping it does; it is no span after. (The guard calls
    /// this itself: dropping the span through the drop glue was a function call at
    /// every call.) Always inlined: into the guard's drop, the one place that ends
    /// call spans at every call.
    #[inline(always)]
    pub(crate) fn end(&mut self) {
        match std::mem::replace(&mut *self.0, Inner::Off) {
            Inner::Light(id, frame) | Inner::Sampled(id, frame) => {
                light::release_owned(&id, frame);
            }
            Inner::Tracing(span) => drop(span),
            Inner::Off => {}
        }
    }
}

impl Drop for CallSpan {
    #[inline]
    fn drop(&mut self) {
        self.end();
    }
}

/// Entered [`CallSpan`]; exits it when dropped, on the thread that entered it (not
/// `Send`, as `tracing`'s own guard: the span stack is per thread).
#[doc(hidden)]
pub struct Entered<'a>(EnteredInner<'a>, std::marker::PhantomData<*const ()>);

enum EnteredInner<'a> {
    Off,
    // Held for its drop, which exits the span.
    Tracing(#[allow(dead_code)] tracing::span::Entered<'a>),
    Light(&'a Id),
    Sampled(&'a Id),
}

impl Drop for Entered<'_> {
    #[inline]
    fn drop(&mut self) {
        match self.0 {
            EnteredInner::Light(id) => light::pop(id),
            EnteredInner::Sampled(id) => {
                light::exit_sampled(id);
                light::pop(id);
            }
            EnteredInner::Off | EnteredInner::Tracing(_) => {}
        }
    }
}

enum Mode {
    /// A light frame, built here.
    Direct,
    /// A light frame with its span data for the bridge, built here.
    DirectSampled,
    /// An ordinary span; the scope holds what `begin_call` set for the subscriber
    /// until the span exists.
    Tracing(#[allow(dead_code)] Scope),
}

/// Receives the field values of an enabled span (see [`CallSpan::start`]).
#[doc(hidden)]
pub struct Builder {
    meta: &'static Metadata<'static>,
    mode: Mode,
    span: Option<CallSpan>,
}

impl Builder {
    /// `None`: the span is disabled.
    fn begin(callsite: &'static DefaultCallsite, verdict: &SpanVerdict) -> Option<Builder> {
        let meta = callsite.metadata();
        let level = *meta.level();
        if level > STATIC_MAX_LEVEL {
            return None;
        }
        let mode = match light::begin_call(meta, verdict) {
            Start::Direct => Mode::Direct,
            Start::DirectSampled => Mode::DirectSampled,
            Start::Disabled => return None,
            Start::Tracing(scope) => {
                // `tracing::span!`'s checks, in its order.
                if level > LevelFilter::current() {
                    return None;
                }
                let interest = callsite.interest();
                if interest.is_never()
                    || !(interest.is_always()
                        || tracing::dispatcher::get_default(|d| d.enabled(meta)))
                {
                    return None;
                }
                Mode::Tracing(scope)
            }
        };
        Some(Builder {
            meta,
            mode,
            span: None,
        })
    }

    /// The span's field values, in the order of the metadata's field names
    /// ([`Captured::Empty`]: a field declared without a value).
    #[inline]
    pub fn build<const N: usize>(&mut self, values: [Captured<'_>; N]) {
        if self.meta.fields().len() != N {
            // The expansion lists names and values together: never the case.
            return;
        }
        if self.build_light(&values) {
            return;
        }
        self.span = Some(CallSpan(ManuallyDrop::new(Inner::Tracing(Box::new(
            traced(self.meta, self.meta.fields(), &values),
        )))));
    }

    /// A light frame with these values, unless the span goes through `tracing` or
    /// every frame slot is in use (`false`). One function for the whole of it (frame,
    /// values, id), not generic: the call sites share it.
    #[inline(never)]
    fn build_light(&mut self, values: &[Captured<'_>]) -> bool {
        let sampled = match self.mode {
            Mode::Direct => false,
            Mode::DirectSampled => true,
            Mode::Tracing(_) => return false,
        };
        let fields = self.meta.fields();
        let otel = sampled.then(|| start_span_data(self.meta, fields, values));
        let Some((id, frame)) =
            light::create(self.meta, |raw| record_values(fields, values, raw), otel)
        else {
            return false;
        };
        self.span = Some(CallSpan(ManuallyDrop::new(if sampled {
            Inner::Sampled(id, frame)
        } else {
            Inner::Light(id, frame)
        })));
        true
    }

    #[inline]
    fn finish(self) -> CallSpan {
        // Dropping `self.mode` now restores what `begin_call` set.
        self.span.unwrap_or_else(CallSpan::none)
    }
}

/// A sampled call's span data for the bridge (out of line: most calls are not sampled,
/// and [`Builder::build`] stays small enough to be inlined into every call site).
#[cold]
#[inline(never)]
fn start_span_data(
    meta: &'static Metadata<'static>,
    fields: &FieldSet,
    values: &[Captured<'_>],
) -> Box<crate::otel::bridge::OtelFrame> {
    // The bridge's visitor is a `dyn Visit`: every value through `tracing::Value`.
    crate::otel::bridge::OtelFrame::start(meta, |v| {
        for (field, value) in fields.iter().zip(values) {
            if let Some(value) = value.as_value() {
                value.record(&field, v);
            }
        }
    })
}

/// Records each value into a new frame's fields, in the metadata's order (numbers,
/// booleans and text without a dynamic call: `Captured::record`).
#[inline]
fn record_values(fields: &FieldSet, values: &[Captured<'_>], raw: &mut RawFields) {
    let mut fresh = raw.fresh();
    for (field, value) in fields.iter().zip(values) {
        value.record(&field, &mut fresh);
    }
}

/// An ordinary span with these values (`fields` has exactly `N` names).
fn traced<const N: usize>(
    meta: &'static Metadata<'static>,
    fields: &FieldSet,
    values: &[Captured<'_>; N],
) -> Span {
    let Some(first) = fields.iter().next() else {
        let none: [(&Field, Option<&dyn Value>); 0] = [];
        return Span::new(meta, &fields.value_set(&none));
    };
    let mut names = fields.iter();
    // `fields` has `N` names: the fallback is never taken.
    let all: [Field; N] = std::array::from_fn(|_| names.next().unwrap_or_else(|| first.clone()));
    let pairs: [(&Field, Option<&dyn Value>); N] =
        std::array::from_fn(|i| (&all[i], values[i].as_value()));
    Span::new(meta, &fields.value_set(&pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    static VERDICT: SpanVerdict = SpanVerdict::new();
    static CS: DefaultCallsite = DefaultCallsite::new(&META);
    static META: Metadata<'static> = tracing::metadata! {
        name: "call_span.test",
        target: "zs_observe::call_span",
        level: tracing::Level::INFO,
        fields: &["a", "b", "c"],
        callsite: &CS,
        kind: tracing::metadata::Kind::SPAN,
    };

    #[test]
    fn without_the_runtime_a_call_span_is_an_ordinary_span_with_its_fields() {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::SubscriberExt;

        #[derive(Clone, Default)]
        struct Seen(Arc<Mutex<Vec<String>>>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Seen {
            fn on_new_span(
                &self,
                attrs: &tracing::span::Attributes<'_>,
                _: &Id,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                struct V<'a>(&'a mut Vec<String>);
                impl tracing::field::Visit for V<'_> {
                    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
                        self.0.push(format!("{}={v:?}", f.name()));
                    }
                }
                attrs.record(&mut V(&mut self.0.lock().unwrap()));
            }
        }
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry().with(seen.clone());
        let mut evaluated = false;
        tracing::subscriber::with_default(subscriber, || {
            let span = CallSpan::start(&CS, &VERDICT, |b| {
                evaluated = true;
                b.build([Captured::U64(1), Captured::Empty, Captured::Str("x")]);
            });
            assert!(!span.is_light());
            let _entered = span.enter();
            assert_eq!(
                tracing::Span::current().metadata().map(|m| m.name()),
                Some("call_span.test")
            );
        });
        assert!(evaluated);
        assert_eq!(*seen.0.lock().unwrap(), ["a=1", "c=\"x\""]);
    }

    /// Every `Visit` call as `method name=value`.
    #[derive(Default)]
    struct Calls(Vec<String>);

    impl Visit for Calls {
        fn record_u64(&mut self, f: &Field, v: u64) {
            self.0.push(format!("u64 {}={v}", f.name()));
        }
        fn record_i64(&mut self, f: &Field, v: i64) {
            self.0.push(format!("i64 {}={v}", f.name()));
        }
        fn record_f64(&mut self, f: &Field, v: f64) {
            self.0.push(format!("f64 {}={v}", f.name()));
        }
        fn record_bool(&mut self, f: &Field, v: bool) {
            self.0.push(format!("bool {}={v}", f.name()));
        }
        fn record_str(&mut self, f: &Field, v: &str) {
            self.0.push(format!("str {}={v}", f.name()));
        }
        fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
            self.0.push(format!("debug {}={v:?}", f.name()));
        }
    }

    #[test]
    fn captured_values_are_recorded_with_the_visit_call_tracing_makes() {
        #[allow(unused_imports)]
        use super::{CaptureDyn as _, CaptureRaw as _};
        let field = META.fields().field("a").unwrap();
        // What the expansion does with a field value (the probe at the value's own
        // type, as at a call site), and what `tracing` does with it.
        macro_rules! same {
            ($($v:expr),* $(,)?) => {$(
                let mut captured = Calls::default();
                Capture(&$v).__zs_capture().record(&field, &mut captured);
                let mut traced = Calls::default();
                $v.record(&field, &mut traced);
                assert_eq!(captured.0, traced.0, "{}", stringify!($v));
                assert_eq!(captured.0.len(), 1);
            )*};
        }
        same!(
            u8::MAX,
            u16::MAX,
            u32::MAX,
            u64::MAX,
            usize::MAX,
            i8::MIN,
            i16::MIN,
            i32::MIN,
            i64::MIN,
            isize::MIN,
            0.1f32,
            -2.5f64,
            f64::NAN,
            true,
            false,
            "text",
            "",
            5,
            2.5,
            Some(3),
            tracing::field::display("shown"),
            tracing::field::debug("dbg"),
            &7u64,
            String::from("owned").as_str(),
        );
        // The raw kinds are taken for what `tracing` records as numbers, booleans and
        // text; the rest goes through `tracing::Value`.
        assert!(matches!(Capture(&1u8).__zs_capture(), Captured::U64(1)));
        assert!(matches!(Capture(&-1).__zs_capture(), Captured::I64(-1)));
        assert!(matches!(Capture(&"t").__zs_capture(), Captured::Str("t")));
        assert!(matches!(Capture(&Some(1)).__zs_capture(), Captured::Dyn(_)));
    }

    static CS_DEBUG: DefaultCallsite = DefaultCallsite::new(&META_DEBUG);
    static META_DEBUG: Metadata<'static> = tracing::metadata! {
        name: "call_span.debug",
        target: "zs_observe::call_span",
        level: tracing::Level::DEBUG,
        fields: &["a"],
        callsite: &CS_DEBUG,
        kind: tracing::metadata::Kind::SPAN,
    };

    #[test]
    fn a_disabled_span_does_not_evaluate_its_fields() {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(LevelFilter::INFO);
        tracing::subscriber::with_default(subscriber, || {
            let span = CallSpan::start(&CS_DEBUG, &VERDICT, |_| {
                panic!("fields of a disabled span evaluated")
            });
            let _entered = span.enter();
            span.record_error("nothing to record into");
        });
    }
}
