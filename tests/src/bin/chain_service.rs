//! One hop of the three-service trace test: `chain_service NAME [NEXT_URL]`.
//! Serves `GET /work` on 127.0.0.1 (a free port, printed on stderr as
//! `LISTENING <addr>`); handles it in an instrumented function that calls the next
//! hop, if any, with the trace context injected. Traces go where the standard
//! `OTEL_*` variables say; JSON logs go to stdout.

use std::time::Duration;

use axum::routing::get;
use zs_observe::propagation::{RequestBuilderExt, RequestTraceLayer};

#[zs_observe::instrumented(span = "chain.work", skip(client))]
async fn work(
    hop: String,
    client: reqwest::Client,
    next: Option<String>,
) -> Result<String, String> {
    tracing::info!(hop = %hop, "work started");
    let downstream = match &next {
        Some(url) => {
            let response = client
                .get(url.as_str())
                .with_trace_context()
                .send()
                .await
                .map_err(|e| e.to_string())?;
            response.text().await.map_err(|e| e.to_string())?
        }
        None => String::new(),
    };
    tracing::info!(hop = %hop, "work done");
    Ok(format!("{hop}>{downstream}"))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().expect("usage: chain_service NAME [NEXT_URL]");
    let next = args.next();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let telemetry = zs_observe::Telemetry::builder()
        .with_service_name(name.clone())
        .with_namespace("chain")
        .with_trace_batch(64, Duration::from_millis(50))
        .install()
        .expect("telemetry");
    runtime.block_on(async move {
        let client = reqwest::Client::new();
        let app = axum::Router::new()
            .route(
                "/work",
                get(move || {
                    let (name, client, next) = (name.clone(), client.clone(), next.clone());
                    async move { work(name, client, next).await.unwrap_or_else(|e| e) }
                }),
            )
            .layer(RequestTraceLayer::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        eprintln!("LISTENING {}", listener.local_addr().expect("addr"));
        // Ends when the test closes our stdin.
        let stop = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            let _ = std::io::stdin().read_line(&mut sink);
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop.await;
            })
            .await
            .expect("serve");
    });
    // Flushes the spans.
    drop(telemetry);
}
