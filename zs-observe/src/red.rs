//! HTTP RED metrics (rate, errors, duration) as a tower layer: requests total,
//! request duration and requests in progress, by method, route template and status.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Once, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use axum::http::{Method, Request, Response};
use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, SharedString, Unit};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::Telemetry;

/// The `route` of requests that matched no route (the router's fallback, a 404).
const UNMATCHED_ROUTE: &str = "unmatched";

/// The `method` of requests whose method is not one of the nine standard ones.
const OTHER_METHOD: &str = "other";

/// The `status` of requests whose response future was dropped before it completed,
/// usually because the client disconnected (nginx's "client closed request").
const CLIENT_CLOSED_STATUS: u16 = 499;

/// The `status` of requests whose inner service returned an error or panicked:
/// no response was produced, and the client sees a failed request.
const FAILED_STATUS: u16 = 500;

/// The standard methods, by label index; [`OTHER_METHOD`] is the last index.
const METHODS: [&str; 10] = [
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
    OTHER_METHOD,
];

fn method_index(method: &Method) -> usize {
    let m = method.as_str();
    METHODS[..9]
        .iter()
        .position(|s| *s == m)
        .unwrap_or(METHODS.len() - 1)
}

#[doc = include_str!("../../docs/http.md")]
#[derive(Clone)]
pub struct HttpMetricsLayer {
    shared: Arc<Shared>,
}

impl HttpMetricsLayer {
    /// The `route` of requests that matched no route: `unmatched`.
    pub const UNMATCHED_ROUTE: &'static str = UNMATCHED_ROUTE;
    /// The `method` of non-standard methods: `other`.
    pub const OTHER_METHOD: &'static str = OTHER_METHOD;
    /// The `status` of requests dropped before completing (client gone): `499`.
    pub const CLIENT_CLOSED_STATUS: u16 = CLIENT_CLOSED_STATUS;
    /// The `status` of requests whose service failed or panicked: `500`.
    pub const FAILED_STATUS: u16 = FAILED_STATUS;

    /// A layer recording `<namespace>_http_requests_total`,
    /// `<namespace>_http_request_duration_seconds` and
    /// `<namespace>_http_requests_in_progress` (without a prefix when `namespace`
    /// is empty).
    pub fn new(namespace: impl AsRef<str>) -> Self {
        let ns = namespace.as_ref();
        let name = |suffix: &str| -> SharedString {
            if ns.is_empty() {
                suffix.to_owned().into()
            } else {
                format!("{ns}_{suffix}").into()
            }
        };
        HttpMetricsLayer {
            shared: Arc::new(Shared {
                requests_total: name("http_requests_total"),
                duration: name("http_request_duration_seconds"),
                in_progress: name("http_requests_in_progress"),
                described: Once::new(),
                routes: Default::default(),
            }),
        }
    }
}

impl fmt::Debug for HttpMetricsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpMetricsLayer")
            .field("requests_total", &&*self.shared.requests_total)
            .field("duration", &&*self.shared.duration)
            .field("in_progress", &&*self.shared.in_progress)
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// The [`HttpMetricsLayer`] of this runtime's namespace: add it to the
    /// application's router with `Router::layer`, after its routes.
    pub fn http_metrics_layer(&self) -> HttpMetricsLayer {
        HttpMetricsLayer::new(self.namespace())
    }
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetrics {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`HttpMetricsLayer`] wraps around each route.
#[derive(Clone)]
pub struct HttpMetrics<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for HttpMetrics<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpMetrics")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B, ResBody> Service<Request<B>> for HttpMetrics<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = HttpMetricsFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
        let series = self.shared.series(method_index(req.method()), route);
        series.in_progress.increment(1.0);
        let tracker = Tracker {
            series,
            start: Instant::now(),
            status: None,
        };
        HttpMetricsFuture {
            inner: self.inner.call(req),
            tracker: Some(tracker),
        }
    }
}

pin_project! {
    /// The response future of [`HttpMetrics`]: records when it completes or is dropped.
    pub struct HttpMetricsFuture<F> {
        #[pin]
        inner: F,
        tracker: Option<Tracker>,
    }
}

impl<F> fmt::Debug for HttpMetricsFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpMetricsFuture").finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for HttpMetricsFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Some(mut tracker) = this.tracker.take() {
            tracker.status = Some(match &result {
                Ok(response) => response.status().as_u16(),
                Err(_) => FAILED_STATUS,
            });
            // Dropping records.
        }
        Poll::Ready(result)
    }
}

/// One request in progress; records on drop, whichever way the request ended.
struct Tracker {
    series: Arc<RouteSeries>,
    start: Instant,
    status: Option<u16>,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let status = self.status.unwrap_or_else(|| {
            if std::thread::panicking() {
                FAILED_STATUS
            } else {
                CLIENT_CLOSED_STATUS
            }
        });
        let series = &self.series;
        // Count first, then lower the gauge: a reader that sees the request gone
        // also sees it counted.
        series.duration.record(self.start.elapsed().as_secs_f64());
        series.requests(status).increment(1);
        series.in_progress.decrement(1.0);
    }
}

/// Names, descriptions and the handle cache of one layer (shared by its clones and
/// by every route it wraps).
struct Shared {
    requests_total: SharedString,
    duration: SharedString,
    in_progress: SharedString,
    described: Once,
    /// Per method index: route template → its series. Bounded by the router's
    /// routes (plus `unmatched`) times ten methods.
    routes: [RwLock<HashMap<Box<str>, Arc<RouteSeries>>>; 10],
}

impl Shared {
    /// The handles of (method, route), cached once a recorder is installed.
    fn series(&self, method: usize, route: &str) -> Arc<RouteSeries> {
        if !crate::callsite::recorder_ready() {
            // A handle from the no-op recorder would stay a no-op: do not cache.
            return Arc::new(RouteSeries::new(self, method, route));
        }
        let cache = &self.routes[method];
        if let Some(series) = cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route)
        {
            return series.clone();
        }
        self.described.call_once(|| self.describe());
        cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(route.into())
            .or_insert_with(|| Arc::new(RouteSeries::new(self, method, route)))
            .clone()
    }

    fn describe(&self) {
        metrics::with_recorder(|r| {
            r.describe_counter(
                self.requests_total.clone().into(),
                None,
                "HTTP requests completed, by method, route template and status code \
                 (499: the client went away first)."
                    .into(),
            );
            r.describe_histogram(
                self.duration.clone().into(),
                Some(Unit::Seconds),
                "Time from receiving an HTTP request to its response head, by method and \
                 route template."
                    .into(),
            );
            r.describe_gauge(
                self.in_progress.clone().into(),
                None,
                "HTTP requests being handled right now, by method and route template.".into(),
            );
        });
    }
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The series of one (method, route).
struct RouteSeries {
    requests_total: SharedString,
    labels: [Label; 2],
    duration: Histogram,
    in_progress: Gauge,
    /// Status code → counter. A handful per route; read-locked on every response.
    by_status: RwLock<Vec<(u16, Counter)>>,
}

impl RouteSeries {
    fn new(shared: &Shared, method: usize, route: &str) -> Self {
        let labels = [
            Label::from_static_parts("method", METHODS[method]),
            Label::new("route", route.to_owned()),
        ];
        let (duration, in_progress) = metrics::with_recorder(|r| {
            (
                r.register_histogram(
                    &Key::from_parts(shared.duration.clone(), labels.to_vec()),
                    &METADATA,
                ),
                r.register_gauge(
                    &Key::from_parts(shared.in_progress.clone(), labels.to_vec()),
                    &METADATA,
                ),
            )
        });
        RouteSeries {
            requests_total: shared.requests_total.clone(),
            labels,
            duration,
            in_progress,
            by_status: RwLock::new(Vec::new()),
        }
    }

    fn requests(&self, status: u16) -> Counter {
        let find =
            |v: &[(u16, Counter)]| v.iter().find(|(s, _)| *s == status).map(|(_, c)| c.clone());
        if let Some(counter) = find(
            &self
                .by_status
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        ) {
            return counter;
        }
        let mut by_status = self
            .by_status
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(counter) = find(&by_status) {
            return counter;
        }
        let mut labels = self.labels.to_vec();
        labels.push(Label::new("status", status.to_string()));
        let key = Key::from_parts(self.requests_total.clone(), labels);
        let counter = metrics::with_recorder(|r| r.register_counter(&key, &METADATA));
        by_status.push((status, counter.clone()));
        counter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_bounded() {
        assert_eq!(METHODS[method_index(&Method::GET)], "GET");
        assert_eq!(METHODS[method_index(&Method::PATCH)], "PATCH");
        assert_eq!(METHODS[method_index(&Method::CONNECT)], "CONNECT");
        let purge = Method::from_bytes(b"PURGE").expect("valid method");
        assert_eq!(METHODS[method_index(&purge)], OTHER_METHOD);
        let lower = Method::from_bytes(b"get").expect("valid method");
        assert_eq!(
            METHODS[method_index(&lower)],
            OTHER_METHOD,
            "methods are case-sensitive"
        );
    }

    #[test]
    fn names_carry_the_namespace() {
        let layer = HttpMetricsLayer::new("zerostate");
        assert_eq!(
            &*layer.shared.requests_total,
            "zerostate_http_requests_total"
        );
        assert_eq!(
            &*layer.shared.duration,
            "zerostate_http_request_duration_seconds"
        );
        assert_eq!(
            &*layer.shared.in_progress,
            "zerostate_http_requests_in_progress"
        );
        let bare = HttpMetricsLayer::new("");
        assert_eq!(&*bare.shared.requests_total, "http_requests_total");
    }
}
