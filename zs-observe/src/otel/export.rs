//! The batch span processor: a bounded queue in front of the OTLP exporter, on its
//! own thread with its own single-threaded runtime.
//!
//! The SDK's `BatchSpanProcessor` counts the spans it drops but does not expose the
//! count; an observability library has to export it. This processor keeps the same
//! contract (bounded queue, batches by size and delay, export timeout, flush and
//! shutdown with timeouts) and counts every span it loses, by reason, in
//! `<ns>_trace_spans_dropped_total{reason}`. Ending a span never blocks: when the
//! queue is full the span is dropped and counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter as _, SpanProcessor};
use opentelemetry_sdk::Resource;

use super::{ExportTarget, OtlpProtocol, ResolvedTraces};
use crate::redact::Redactor;

/// Counters of the export pipeline, mirrored into metrics.
#[derive(Debug)]
pub(crate) struct ExportStats {
    pub(crate) exported: AtomicU64,
    pub(crate) dropped_queue_full: AtomicU64,
    pub(crate) dropped_export_failed: AtomicU64,
    exported_metric: metrics::Counter,
    queue_full_metric: metrics::Counter,
    export_failed_metric: metrics::Counter,
}

impl ExportStats {
    pub(crate) fn new(namespace: &str) -> ExportStats {
        let dropped = format!("{namespace}_trace_spans_dropped_total");
        let exported = format!("{namespace}_trace_spans_exported_total");
        metrics::describe_counter!(
            dropped.clone(),
            "Sampled spans lost before reaching the collector, by reason (queue_full, export_failed)."
        );
        metrics::describe_counter!(
            exported.clone(),
            "Sampled spans the OTLP collector accepted."
        );
        ExportStats {
            exported: AtomicU64::new(0),
            dropped_queue_full: AtomicU64::new(0),
            dropped_export_failed: AtomicU64::new(0),
            exported_metric: metrics::counter!(exported),
            queue_full_metric: metrics::counter!(dropped.clone(), "reason" => "queue_full"),
            export_failed_metric: metrics::counter!(dropped, "reason" => "export_failed"),
        }
    }

    fn add_exported(&self, n: u64) {
        self.exported.fetch_add(n, Ordering::Relaxed);
        self.exported_metric.increment(n);
    }

    fn add_queue_full(&self, n: u64) {
        self.dropped_queue_full.fetch_add(n, Ordering::Relaxed);
        self.queue_full_metric.increment(n);
    }

    fn add_export_failed(&self, n: u64) {
        self.dropped_export_failed.fetch_add(n, Ordering::Relaxed);
        self.export_failed_metric.increment(n);
    }
}

enum Control {
    Resource(Resource),
    Flush(SyncSender<()>),
    Shutdown(SyncSender<()>),
}

enum Message {
    Span(Box<SpanData>),
    /// Look at the control channel.
    Wake,
}

/// A `SpanProcessor` with a bounded queue, drop accounting and redaction.
#[derive(Debug)]
pub(crate) struct QueueProcessor {
    queue: SyncSender<Message>,
    control: Mutex<mpsc::Sender<ControlBox>>,
    stats: Arc<ExportStats>,
    redactor: Redactor,
    flush_timeout: Duration,
    worker: Mutex<Option<JoinHandle<()>>>,
}

/// `Control` in a `Debug` wrapper (`Resource` is, the senders are not).
struct ControlBox(Control);

impl std::fmt::Debug for ControlBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Control")
    }
}

impl QueueProcessor {
    /// Starts the export thread and builds the exporter on it (the gRPC client
    /// needs the thread's runtime). Exporter configuration errors are returned.
    pub(crate) fn start(
        target: ExportTarget,
        resolved: &ResolvedTraces,
        stats: Arc<ExportStats>,
        redactor: Redactor,
    ) -> Result<QueueProcessor, String> {
        let (queue_tx, queue_rx) = mpsc::sync_channel::<Message>(resolved.queue_size);
        let (control_tx, control_rx) = mpsc::channel::<ControlBox>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), String>>(1);
        let worker = Worker {
            batch_size: resolved.batch_size,
            queue_size: resolved.queue_size,
            delay: resolved.schedule_delay,
            export_timeout: resolved.export_timeout,
            stats: stats.clone(),
        };
        let export_timeout = resolved.export_timeout;
        let thread = std::thread::Builder::new()
            .name("zs-observe-otlp".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("OTLP export runtime: {e}")));
                        return;
                    }
                };
                let exporter = quiet(|| {
                    let _entered = runtime.enter();
                    build_exporter(&target, export_timeout)
                });
                match exporter {
                    Ok(exporter) => {
                        let _ = ready_tx.send(Ok(()));
                        worker.run(&runtime, exporter, &queue_rx, &control_rx);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| format!("OTLP export thread: {e}"))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => return Err("OTLP export thread ended during start".to_owned()),
        }
        Ok(QueueProcessor {
            queue: queue_tx,
            control: Mutex::new(control_tx),
            stats,
            redactor,
            flush_timeout: export_timeout + Duration::from_secs(1),
            worker: Mutex::new(Some(thread)),
        })
    }

    fn send_control(&self, control: Control) -> bool {
        let sent = match self.control.lock() {
            Ok(tx) => tx.send(ControlBox(control)).is_ok(),
            Err(_) => false,
        };
        // When the queue is full the worker is busy and sees the control soon.
        let _ = self.queue.try_send(Message::Wake);
        sent
    }

    fn request(
        &self,
        make: impl FnOnce(SyncSender<()>) -> Control,
        timeout: Duration,
    ) -> OTelSdkResult {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        if !self.send_control(make(ack_tx)) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        match ack_rx.recv_timeout(timeout) {
            Ok(()) => Ok(()),
            Err(RecvTimeoutError::Timeout) => Err(OTelSdkError::Timeout(timeout)),
            Err(RecvTimeoutError::Disconnected) => Err(OTelSdkError::AlreadyShutdown),
        }
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, mut span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        self.redactor.redact_span(&mut span);
        match self.queue.try_send(Message::Span(Box::new(span))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.add_queue_full(1);
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.request(Control::Flush, self.flush_timeout)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let result = self.request(Control::Shutdown, timeout);
        if result.is_ok() {
            if let Some(thread) = self.worker.lock().ok().and_then(|mut w| w.take()) {
                let _ = thread.join();
            }
        }
        result
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.send_control(Control::Resource(resource.clone()));
    }
}

/// The provider's handle on a [`QueueProcessor`] that the bridge
/// (`super::bridge`) sends to as well.
#[derive(Debug)]
pub(crate) struct SharedProcessor(pub(crate) Arc<QueueProcessor>);

impl SpanProcessor for SharedProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.send_control(Control::Resource(resource.clone()));
    }
}

fn build_exporter(target: &ExportTarget, timeout: Duration) -> Result<SpanExporter, String> {
    let built = match target.protocol {
        OtlpProtocol::Grpc => SpanExporter::builder()
            .with_tonic()
            .with_endpoint(target.endpoint.clone())
            .with_timeout(timeout)
            .build(),
        OtlpProtocol::HttpProtobuf => SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(target.endpoint.clone())
            .with_timeout(timeout)
            .build(),
    };
    built.map_err(|e| format!("OTLP exporter for {}: {e}", target.endpoint))
}

struct Worker {
    batch_size: usize,
    queue_size: usize,
    delay: Duration,
    export_timeout: Duration,
    stats: Arc<ExportStats>,
}

/// Runs exporter work with no subscriber: spans and events of the exporter's own
/// stack (hyper, tonic, reqwest) must not feed back into the pipeline.
///
/// Only around that work, not for the export thread's whole life: while any thread
/// has a scoped dispatcher, `tracing`'s `get_default` takes its slow, thread-local
/// path on every thread, for every span, event and `Span::current()` of the process
/// (~25 instructions each, ~1,200 a task in the example node).
fn quiet<R>(work: impl FnOnce() -> R) -> R {
    tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::new(), work)
}

impl Worker {
    fn run(
        &self,
        runtime: &tokio::runtime::Runtime,
        mut exporter: SpanExporter,
        queue: &Receiver<Message>,
        control: &mpsc::Receiver<ControlBox>,
    ) {
        let mut batch: Vec<SpanData> = Vec::with_capacity(self.batch_size);
        let mut deadline = Instant::now() + self.delay;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match queue.recv_timeout(wait) {
                Ok(Message::Span(span)) => {
                    batch.push(*span);
                    if batch.len() >= self.batch_size {
                        self.export(runtime, &exporter, &mut batch);
                        deadline = Instant::now() + self.delay;
                    }
                }
                Ok(Message::Wake) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.export(runtime, &exporter, &mut batch);
                    quiet(|| {
                        let _ = exporter.shutdown();
                    });
                    return;
                }
            }
            if Instant::now() >= deadline {
                self.export(runtime, &exporter, &mut batch);
                deadline = Instant::now() + self.delay;
            }
            while let Ok(ControlBox(c)) = control.try_recv() {
                match c {
                    Control::Resource(resource) => quiet(|| exporter.set_resource(&resource)),
                    Control::Flush(ack) => {
                        self.drain(runtime, &exporter, queue, &mut batch);
                        let _ = ack.send(());
                    }
                    Control::Shutdown(ack) => {
                        self.drain(runtime, &exporter, queue, &mut batch);
                        quiet(|| {
                            let _ = exporter.shutdown_with_timeout(self.export_timeout);
                        });
                        let _ = ack.send(());
                        return;
                    }
                }
            }
        }
    }

    /// Exports what is queued now: the queue's capacity at most. Spans that calls
    /// keep ending meanwhile wait for the next batch; taking them too would keep a
    /// flush (or shutdown) draining as long as the load lasts when the collector
    /// is slower than the calls.
    fn drain(
        &self,
        runtime: &tokio::runtime::Runtime,
        exporter: &SpanExporter,
        queue: &Receiver<Message>,
        batch: &mut Vec<SpanData>,
    ) {
        for _ in 0..self.queue_size {
            let Ok(message) = queue.try_recv() else {
                break;
            };
            if let Message::Span(span) = message {
                batch.push(*span);
                if batch.len() >= self.batch_size {
                    self.export(runtime, exporter, batch);
                }
            }
        }
        self.export(runtime, exporter, batch);
    }

    fn export(
        &self,
        runtime: &tokio::runtime::Runtime,
        exporter: &SpanExporter,
        batch: &mut Vec<SpanData>,
    ) {
        if batch.is_empty() {
            return;
        }
        let spans = std::mem::replace(batch, Vec::with_capacity(self.batch_size));
        let n = spans.len() as u64;
        let result = quiet(|| {
            runtime.block_on(async {
                tokio::time::timeout(self.export_timeout, exporter.export(spans)).await
            })
        });
        match result {
            Ok(Ok(())) => self.stats.add_exported(n),
            Ok(Err(_)) | Err(_) => self.stats.add_export_failed(n),
        }
    }
}
