//! HTTP transport for the exposition: an axum route, an optional admin listener, and
//! the bearer-token guard of the admin endpoints.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::oneshot;
use tower::ServiceExt;

use crate::exposition::MetricsHandle;

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// An axum router serving `GET /metrics` from `handle`.
pub fn metrics_router(handle: MetricsHandle) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(handle)
}

async fn render_metrics(State(handle): State<MetricsHandle>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], handle.render())
}

/// The admin token: requests to the routes it guards need `Authorization: Bearer <token>`.
#[derive(Clone)]
pub(crate) struct AdminToken(pub(crate) Arc<str>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// Wraps every route of `router` so that a request without the right bearer token gets
/// `401 Unauthorized` with a `WWW-Authenticate` challenge and a body saying why. Paths
/// the router does not have keep their 404. A router without routes is returned as it is
/// (axum refuses a route layer on it, by panicking).
pub(crate) fn require_token(router: Router, token: AdminToken) -> Router {
    if !router.has_routes() {
        return router;
    }
    router.route_layer(axum::middleware::from_fn_with_state(token, check_token))
}

/// Like [`require_token`], but for every request the router sees, its fallback (and
/// any `nest_service` or `fallback_service`) included: for routers the application
/// hands over, whose shape the runtime does not know. Without the token, an unknown
/// path is a 401 too.
pub(crate) fn require_token_everywhere(router: Router, token: AdminToken) -> Router {
    router.layer(axum::middleware::from_fn_with_state(token, check_token))
}

async fn check_token(State(token): State<AdminToken>, request: Request, next: Next) -> Response {
    match authorize(request.headers().get(header::AUTHORIZATION), &token.0) {
        Ok(()) => next.run(request).await,
        Err((reason, challenge)) => {
            let mut response = (StatusCode::UNAUTHORIZED, format!("{reason}\n")).into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
            response
        }
    }
}

/// The application's own admin routes, mounted once after `install` by
/// `Telemetry::mount_admin_routes` (already behind the token when one is set).
pub(crate) type MountedRoutes = Arc<OnceLock<Router>>;

/// Sends every request that no route of `router` matches to the mounted application
/// routes, when there are any; otherwise `404`. The built-in routes therefore win over
/// mounted ones with the same path.
pub(crate) fn with_mounted(router: Router, mounted: MountedRoutes) -> Router {
    router.fallback(move |request: Request| {
        let mounted = mounted.clone();
        async move {
            match mounted.get() {
                Some(routes) => match routes.clone().oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                },
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
    })
}

/// Whether an `Authorization` header carries `token`; otherwise why not, and the challenge.
fn authorize(
    header: Option<&HeaderValue>,
    token: &str,
) -> Result<(), (&'static str, &'static str)> {
    const CHALLENGE: &str = r#"Bearer realm="zs-observe admin""#;
    const INVALID: &str = r#"Bearer realm="zs-observe admin", error="invalid_token""#;
    let Some(header) = header else {
        return Err((
            "missing admin token: send `Authorization: Bearer <token>`",
            CHALLENGE,
        ));
    };
    let given = header.as_bytes();
    // The scheme is case-insensitive (RFC 9110, 11.1).
    let credentials = match given.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => &given[7..],
        _ => {
            return Err((
                "malformed authorization: expected `Authorization: Bearer <token>`",
                CHALLENGE,
            ))
        }
    };
    if constant_time_eq(credentials, token.as_bytes()) {
        Ok(())
    } else {
        Err(("invalid admin token", INVALID))
    }
}

/// Compares in time that depends only on the lengths, not on where the bytes differ.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(!*e);
        diff |= usize::from(g ^ e);
    }
    std::hint::black_box(diff) == 0
}

/// A listener on its own thread and single-threaded runtime.
#[derive(Debug)]
pub(crate) struct AdminServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    pub(crate) fn start(listener: std::net::TcpListener, router: Router) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let (tx, rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("zs-observe-admin".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let server = axum::serve(listener, router).with_graceful_shutdown(async {
                        let _ = rx.await;
                    });
                    if let Err(err) = server.await {
                        tracing::error!(error = %err, "zs-observe admin listener stopped");
                    }
                });
            })?;
        Ok(AdminServer {
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"s3cret-token", b"s3cret-token"));
        assert!(!constant_time_eq(b"s3cret-tokem", b"s3cret-token"));
        assert!(!constant_time_eq(b"s3cret-toke", b"s3cret-token"));
        assert!(!constant_time_eq(b"s3cret-token!", b"s3cret-token"));
        assert!(!constant_time_eq(b"", b"s3cret-token"));
    }

    #[test]
    fn authorization_header_forms() {
        let token = "0123456789abcdef";
        let h = |v: &str| HeaderValue::from_str(v).unwrap();
        assert!(authorize(Some(&h("Bearer 0123456789abcdef")), token).is_ok());
        assert!(authorize(Some(&h("bearer 0123456789abcdef")), token).is_ok());
        assert_eq!(
            authorize(None, token).unwrap_err().0,
            "missing admin token: send `Authorization: Bearer <token>`"
        );
        assert_eq!(
            authorize(Some(&h("Basic YWxhZGRpbjpvcGVuc2VzYW1l")), token)
                .unwrap_err()
                .0,
            "malformed authorization: expected `Authorization: Bearer <token>`"
        );
        assert_eq!(
            authorize(Some(&h("Bearer 0123456789abcdeF")), token)
                .unwrap_err()
                .0,
            "invalid admin token"
        );
        assert!(authorize(Some(&h("Bearer ")), token).is_err());
    }
}
