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

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

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
/// A missing or malformed header gives an empty context (a new root trace).
pub fn extract_context(headers: &HeaderMap) -> opentelemetry::Context {
    // The SDK's parser accepts ids of the wrong length; the W3C rules say to
    // ignore such a header, so it is checked here first.
    match headers.get("traceparent").map(|v| v.to_str()) {
        Some(Ok(value)) if is_valid_traceparent(value) => {
            TraceContextPropagator::new().extract(&HeaderExtractor(headers))
        }
        _ => opentelemetry::Context::new(),
    }
}

/// W3C Trace Context, level 1: `version-traceid-parentid-flags`, lowercase hex,
/// version not `ff`, ids not all zero; version `00` has exactly four parts, later
/// versions may append parts.
pub fn is_valid_traceparent(value: &str) -> bool {
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let mut parts = value.trim().split('-');
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
    let cx = current.context();
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
}
