//! W3C trace context over HTTP: a tower layer that continues the caller's trace
//! and tags every request with a request id, and helpers that inject the current
//! context into outgoing requests.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use zs_observe::propagation::RequestTraceLayer;
//!
//! let app: Router = Router::new()
//!     .route("/tasks/{id}", get(|| async { "ok" }))
//!     // `Router::layer` so the matched route template is known to the layer.
//!     .layer(RequestTraceLayer::new());
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};

use axum::extract::MatchedPath;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The request id header, read from the caller and echoed in the response.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The request id of the request being served, in the request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The OpenTelemetry context carried by `traceparent` / `tracestate` in `headers`.
/// A missing or malformed header gives an empty context (a new root trace), as
/// does a request with more than one `traceparent` header (W3C: the caller's
/// context is ambiguous, so the trace restarts). Several `tracestate` headers are
/// combined in order; a combined list with a duplicated key or more than 32
/// members is discarded (the trace itself is still continued).
pub fn extract_context(headers: &HeaderMap) -> opentelemetry::Context {
    // The SDK's parser accepts ids of the wrong length; the W3C rules say to
    // ignore such a header, so it is checked here first.
    let mut traceparents = headers.get_all("traceparent").iter();
    let (Some(first), None) = (traceparents.next(), traceparents.next()) else {
        return opentelemetry::Context::new();
    };
    match first.to_str() {
        Ok(value) if is_valid_traceparent(value) => {
            TraceContextPropagator::new().extract(&TraceContextExtractor {
                traceparent: value,
                tracestate: combined_tracestate(headers),
            })
        }
        _ => opentelemetry::Context::new(),
    }
}

/// The only two keys the trace-context propagator reads.
struct TraceContextExtractor<'a> {
    traceparent: &'a str,
    tracestate: Option<String>,
}

impl Extractor for TraceContextExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => Some(self.traceparent),
            "tracestate" => self.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        let mut keys = vec!["traceparent"];
        if self.tracestate.is_some() {
            keys.push("tracestate");
        }
        keys
    }
}

/// Every `tracestate` header joined with `,` (W3C: several headers are one list),
/// or `None` when there is none, one is not text, or the list has a duplicated
/// key or more than 32 members (W3C: such a list is discarded).
fn combined_tracestate(headers: &HeaderMap) -> Option<String> {
    const MAX_MEMBERS: usize = 32;
    let mut members: Vec<&str> = Vec::new();
    for value in headers.get_all("tracestate") {
        let text = value.to_str().ok()?;
        for member in text.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            let key = member.split('=').next().unwrap_or(member);
            if members.len() == MAX_MEMBERS
                || members.iter().any(|m| m.split('=').next() == Some(key))
            {
                return None;
            }
            members.push(member);
        }
    }
    (!members.is_empty()).then(|| members.join(","))
}

/// W3C Trace Context, level 1: `version-traceid-parentid-flags`, lowercase hex,
/// version not `ff`, ids not all zero; version `00` has exactly four parts, later
/// versions may append parts.
pub fn is_valid_traceparent(value: &str) -> bool {
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    // Leading and trailing HTTP OWS (spaces, tabs) are allowed around the value.
    let mut parts = value.trim_matches([' ', '\t']).split('-');
    let (Some(version), Some(trace_id), Some(parent_id), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let rest_ok = if version == "00" {
        parts.next().is_none()
    } else {
        true
    };
    hex(version, 2)
        && version != "ff"
        && hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && hex(parent_id, 16)
        && parent_id.bytes().any(|b| b != b'0')
        && hex(flags, 2)
        && rest_ok
}

/// Writes `traceparent` (and `tracestate`) for the current `tracing` span into
/// `headers`. Does nothing when the current span has no valid trace context.
///
/// Under head sampling (the default parent-based samplers), a span that was not
/// sampled has no OpenTelemetry context; the header then carries a fresh trace id
/// with the sampled flag off, so the callee does not start a trace of its own.
pub fn inject_current(headers: &mut HeaderMap) {
    use opentelemetry::trace::TraceContextExt;
    let current = tracing::Span::current();
    // Inside a sampled `#[instrumented]` call, its context is the attached one
    // (`crate::otel::bridge`); `Span::current()` names a stand-in there.
    let cx = if crate::light::current_light_sampled() == Some(true) {
        opentelemetry::Context::current()
    } else {
        current.context()
    };
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
    } else if crate::otel::head::is_active() && !current.is_none() {
        let random = crate::otel::head::random_u64;
        let value = format!(
            "00-{:016x}{:016x}-{:016x}-00",
            random(),
            random() | 1,
            random() | 1
        );
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert("traceparent", value);
        }
    }
}

/// The headers [`inject_current`] writes, for clients that take a `HeaderMap`:
/// `client.get(url).headers(zs_observe::propagation::current_headers())`.
pub fn current_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    inject_current(&mut headers);
    headers
}

/// Adds the current trace context to an outgoing `reqwest` request.
#[cfg(feature = "reqwest")]
pub trait RequestBuilderExt {
    /// `traceparent` / `tracestate` of the current span.
    fn with_trace_context(self) -> Self;
}

#[cfg(feature = "reqwest")]
impl RequestBuilderExt for reqwest::RequestBuilder {
    fn with_trace_context(self) -> Self {
        self.headers(current_headers())
    }
}

/// A tower layer for axum servers: each request runs in an `http.request` span
/// (server kind, named `METHOD /route/{template}`) that continues the caller's
/// trace from `traceparent`, and carries a request id (`x-request-id` from the
/// caller when it is a sane value, generated otherwise) that every log line of
/// the request shows and the response echoes.
#[derive(Clone, Debug, Default)]
pub struct RequestTraceLayer {
    _private: (),
}

impl RequestTraceLayer {
    /// The layer.
    pub fn new() -> RequestTraceLayer {
        RequestTraceLayer::default()
    }
}

impl<S> tower::Layer<S> for RequestTraceLayer {
    type Service = RequestTrace<S>;

    fn layer(&self, inner: S) -> RequestTrace<S> {
        RequestTrace { inner }
    }
}

/// The service of [`RequestTraceLayer`].
#[derive(Clone, Debug)]
pub struct RequestTrace<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<Request<B>> for RequestTrace<S>
where
    S: tower::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let request_id = request
            .headers()
            .get(&REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| is_sane_request_id(v))
            .map(str::to_owned)
            .unwrap_or_else(new_request_id);
        let method = request.method().as_str().to_owned();
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_owned());
        let name = match &route {
            Some(route) => format!("{method} {route}"),
            None => method.clone(),
        };
        // A malformed traceparent extracts to an empty context: a new root.
        let parent = extract_context(request.headers());
        let remote_sampled = {
            use opentelemetry::trace::TraceContextExt;
            let remote = parent.span();
            let sc = remote.span_context();
            sc.is_valid().then(|| sc.is_sampled())
        };
        let span = crate::otel::head::with_remote_parent(remote_sampled, || {
            tracing::info_span!(
                "http.request",
                otel.name = %name,
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                http.request.method = %method,
                http.route = route.as_deref().unwrap_or(""),
                url.path = %request.uri().path(),
                request_id = %request_id,
                http.response.status_code = tracing::field::Empty,
            )
        });
        let _ = span.set_parent(parent);
        request
            .extensions_mut()
            .insert(RequestId(request_id.clone()));
        let future = self.inner.call(request).instrument(span.clone());
        Box::pin(async move {
            let mut response = future.await?;
            let status = response.status();
            span.record("http.response.status_code", status.as_u16());
            if status.is_server_error() {
                span.record("otel.status_code", "ERROR");
            }
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                response.headers_mut().insert(REQUEST_ID_HEADER, value);
            }
            Ok(response)
        })
    }
}

/// Caller-supplied ids are kept when short and made of visible ASCII, so they
/// cannot break log lines or headers.
fn is_sane_request_id(value: &str) -> bool {
    !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_graphic())
}

/// A 128-bit random id in hex.
fn new_request_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // RandomState is seeded randomly per process; hashing a counter with two
    // independent states gives 128 unpredictable, unique-per-process bits.
    let state = std::collections::hash_map::RandomState::new();
    let mut a = state.build_hasher();
    a.write_u64(n);
    let mut b = state.build_hasher();
    b.write_u64(!n);
    format!("{:016x}{:016x}", a.finish(), b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;

    #[test]
    fn valid_traceparent_is_continued() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let cx = extract_context(&headers);
        let span = cx.span();
        let sc = span.span_context();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn malformed_traceparent_gives_a_new_root() {
        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("traceparent", HeaderValue::from_static(bad));
            let cx = extract_context(&headers);
            assert!(!cx.span().span_context().is_valid(), "{bad}");
        }
    }

    #[test]
    fn request_ids() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(is_sane_request_id("abc-123"));
        assert!(!is_sane_request_id("has space"));
        assert!(!is_sane_request_id(""));
        assert!(!is_sane_request_id(&"x".repeat(129)));
    }

    fn context_of(values: &[(&str, &str)]) -> opentelemetry::trace::SpanContext {
        let mut headers = HeaderMap::new();
        for (name, value) in values {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        extract_context(&headers).span().span_context().clone()
    }

    /// The traceparent cases of the W3C trace-context test suite
    /// (`test/test.py`: version, ids, flags, OWS, duplicates), and its tracestate
    /// cases that depend on how headers are combined.
    #[test]
    fn w3c_test_suite_cases() {
        const ID: &str = "12345678901234567890123456789012";
        let continued = |v: &[(&str, &str)]| {
            let sc = context_of(v);
            sc.is_valid() && sc.trace_id().to_string() == ID
        };
        for ok in [
            "00-12345678901234567890123456789012-1234567890123456-01",
            "cc-12345678901234567890123456789012-1234567890123456-01",
            "cc-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
            " 00-12345678901234567890123456789012-1234567890123456-01",
            "\t00-12345678901234567890123456789012-1234567890123456-01",
            "00-12345678901234567890123456789012-1234567890123456-01 ",
            "\t 00-12345678901234567890123456789012-1234567890123456-01 \t",
        ] {
            assert!(continued(&[("traceparent", ok)]), "{ok:?} must be accepted");
            assert!(is_valid_traceparent(ok), "{ok:?}");
        }
        for bad in [
            "00-12345678901234567890123456789012-1234567890123456-01.",
            "00-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
            "cc-12345678901234567890123456789012-1234567890123456-01.what-the-future-will-be-like",
            "ff-12345678901234567890123456789012-1234567890123456-01",
            ".0-12345678901234567890123456789012-1234567890123456-01",
            "0.-12345678901234567890123456789012-1234567890123456-01",
            "000-12345678901234567890123456789012-1234567890123456-01",
            "0000-12345678901234567890123456789012-1234567890123456-01",
            "0-12345678901234567890123456789012-1234567890123456-01",
            "00-00000000000000000000000000000000-1234567890123456-01",
            "00-.2345678901234567890123456789012-1234567890123456-01",
            "00-1234567890123456789012345678901.-1234567890123456-01",
            "00-123456789012345678901234567890123-1234567890123456-01",
            "00-1234567890123456789012345678901-1234567890123456-01",
            "00-12345678901234567890123456789012-0000000000000000-01",
            "00-12345678901234567890123456789012-.234567890123456-01",
            "00-12345678901234567890123456789012-123456789012345.-01",
            "00-12345678901234567890123456789012-12345678901234567-01",
            "00-12345678901234567890123456789012-123456789012345-01",
            "00-12345678901234567890123456789012-1234567890123456-.0",
            "00-12345678901234567890123456789012-1234567890123456-0.",
            "00-12345678901234567890123456789012-1234567890123456-001",
            "00-12345678901234567890123456789012-1234567890123456-1",
            // The SDK's own parser accepts these (u128::from_str_radix takes a sign).
            "00-+2345678901234567890123456789012-1234567890123456-01",
            "00-12345678901234567890123456789012-+234567890123456-01",
            "00-12345678901234567890123456789012-1234567890123456-+1",
            "00-12345678901234567890123456789012-1234567890123456-01-",
        ] {
            assert!(!is_valid_traceparent(bad), "{bad:?} must be rejected");
            assert!(!context_of(&[("traceparent", bad)]).is_valid(), "{bad:?}");
        }
        // Two traceparent headers: ambiguous, the trace restarts.
        assert!(!context_of(&[
            (
                "traceparent",
                "00-12345678901234567890123456789011-1234567890123456-01"
            ),
            (
                "traceparent",
                "00-12345678901234567890123456789012-1234567890123456-01"
            ),
        ])
        .is_valid());
        // Header names are case-insensitive.
        assert!(continued(&[(
            "TrAcEpArEnT",
            "00-12345678901234567890123456789012-1234567890123456-01"
        )]));

        let tp = (
            "traceparent",
            "00-12345678901234567890123456789012-1234567890123456-00",
        );
        let state = |extra: &[(&str, &str)]| {
            let mut all = vec![tp];
            all.extend_from_slice(extra);
            let sc = context_of(&all);
            assert!(sc.is_valid() && sc.trace_id().to_string() == ID);
            sc.trace_state().header()
        };
        assert_eq!(state(&[("tracestate", "foo=1,bar=2")]), "foo=1,bar=2");
        assert_eq!(
            state(&[
                ("tracestate", "foo=1,bar=2"),
                ("tracestate", "rojo=1,congo=2"),
                ("tracestate", "baz=3"),
            ]),
            "foo=1,bar=2,rojo=1,congo=2,baz=3"
        );
        assert_eq!(
            state(&[("tracestate", ""), ("tracestate", "foo=1")]),
            "foo=1"
        );
        assert_eq!(
            state(&[("tracestate", "foo=1"), ("tracestate", "")]),
            "foo=1"
        );
        assert_eq!(
            state(&[("tracestate", "foo=1 \t , \t bar=2")]),
            "foo=1,bar=2"
        );
        assert_eq!(state(&[("tracestate", "foo=1,foo=2")]), "");
        assert_eq!(
            state(&[("tracestate", "foo=1"), ("tracestate", "foo=1")]),
            ""
        );
        let members = |range: std::ops::RangeInclusive<u32>| {
            range
                .map(|i| format!("bar{i:02}={i:02}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(state(&[("tracestate", &members(1..=32))]), members(1..=32));
        assert_eq!(state(&[("tracestate", &members(1..=33))]), "");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn hex(len: usize) -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop_oneof![
                    Just('0'),
                    proptest::char::ranges(vec!['0'..='9', 'a'..='f'].into())
                ],
                len,
            )
            .prop_map(|v| v.into_iter().collect::<String>())
            .prop_filter("all-zero ids are invalid", |s| s.bytes().any(|b| b != b'0'))
        }

        prop_compose! {
            /// A valid traceparent: its parts, and the header text.
            fn valid()(
                version in (0u8..=0xfe),
                trace in hex(32),
                parent in hex(16),
                flags in any::<u8>(),
                suffix in proptest::option::of("[a-z0-9.-]{0,20}"),
            ) -> (u8, String, String, u8, String) {
                let mut text = format!("{version:02x}-{trace}-{parent}-{flags:02x}");
                if version != 0 {
                    if let Some(suffix) = suffix {
                        text.push('-');
                        text.push_str(&suffix);
                    }
                }
                (version, trace, parent, flags, text)
            }
        }

        fn extract(text: &str) -> opentelemetry::trace::SpanContext {
            let mut headers = HeaderMap::new();
            headers.insert("traceparent", HeaderValue::from_str(text).unwrap());
            extract_context(&headers).span().span_context().clone()
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

            #[test]
            fn arbitrary_text_never_panics(text in any::<String>()) {
                let valid = is_valid_traceparent(&text);
                if let Ok(value) = HeaderValue::from_str(&text) {
                    let mut headers = HeaderMap::new();
                    headers.insert("traceparent", value.clone());
                    headers.append("tracestate", value);
                    let sc = extract_context(&headers).span().span_context().clone();
                    // Nothing the check rejects reaches the SDK's parser.
                    prop_assert!(valid || !sc.is_valid(), "{text:?}");
                }
            }

            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
                if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                    let mut headers = HeaderMap::new();
                    headers.insert("traceparent", value.clone());
                    headers.insert("tracestate", value);
                    let _ = extract_context(&headers);
                }
                let _ = is_valid_traceparent(&String::from_utf8_lossy(&bytes));
            }

            #[test]
            fn valid_headers_round_trip((_v, trace, parent, flags, text) in valid()) {
                prop_assert!(is_valid_traceparent(&text), "{text}");
                let sc = extract(&text);
                prop_assert!(sc.is_valid() && sc.is_remote(), "{text}");
                prop_assert_eq!(sc.trace_id().to_string(), trace.clone());
                prop_assert_eq!(sc.span_id().to_string(), parent.clone());
                prop_assert_eq!(sc.is_sampled(), flags & 1 == 1);
                // Injected again (as version 00, unknown flags cleared).
                let cx = opentelemetry::Context::new().with_remote_span_context(sc);
                let mut out = HeaderMap::new();
                TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut out));
                prop_assert_eq!(
                    out["traceparent"].to_str().unwrap(),
                    format!("00-{trace}-{parent}-{:02x}", flags & 1)
                );
            }

            #[test]
            fn broken_headers_are_rejected(
                (version, _t, _p, _f, text) in valid(),
                which in 0usize..4,
                pos in any::<proptest::sample::Index>(),
                kind in 0u8..6,
                junk in "[g-zG-Z+ .,_:]",
            ) {
                let mut parts: Vec<String> = text.splitn(5, '-').map(str::to_owned).collect();
                let field = &mut parts[which];
                let i = pos.index(field.len());
                match kind {
                    // One character more or fewer.
                    0 => field.insert(i, 'a'),
                    1 => { field.remove(i); }
                    // A character outside lowercase hex.
                    2 => field.replace_range(i..=i, &junk),
                    // Uppercase hex.
                    3 => {
                        let upper = if field.bytes().any(|b| b.is_ascii_lowercase()) {
                            field.to_ascii_uppercase()
                        } else {
                            field.clone() + "A"
                        };
                        *field = upper;
                    }
                    // All zeros (ids) / version ff.
                    4 => *field = if which == 0 { "ff".into() } else if which == 3 { "0".into() } else { "0".repeat(field.len()) },
                    // Version 00 with an extra field.
                    _ => {
                        parts[0] = "00".into();
                        parts.truncate(4);
                        parts.push("extra".into());
                    }
                }
                // Flags may legitimately be all zero: that case is a wrong length instead.
                let broken = parts.join("-");
                let _ = version;
                prop_assert!(!is_valid_traceparent(&broken), "{broken}");
                if let Ok(value) = HeaderValue::from_str(&broken) {
                    let mut headers = HeaderMap::new();
                    headers.insert("traceparent", value);
                    prop_assert!(!extract_context(&headers).span().span_context().is_valid(), "{broken}");
                }
            }
        }
    }
}
