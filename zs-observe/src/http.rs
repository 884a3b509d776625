//! HTTP transport for the exposition: an axum route, and an optional admin listener.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::oneshot;

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
