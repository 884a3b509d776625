//! Log lines captured in memory through a [`zs_observe::LogSink`].

use std::io::Write;
use std::sync::{Arc, Mutex};

/// A buffer the runtime writes its log lines into.
#[derive(Clone, Debug, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

struct Writer(Arc<Mutex<Vec<u8>>>);

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    /// The sink to give to `TelemetryBuilder::with_log_sink`.
    pub fn sink(&self) -> zs_observe::LogSink {
        let buf = self.0.clone();
        zs_observe::LogSink::from_fn(move || Writer(buf.clone()))
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Every line parsed as JSON; panics on a line that is not a JSON object.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .map(|l| {
                let v: serde_json::Value =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
                assert!(v.is_object(), "not an object: {l}");
                v
            })
            .collect()
    }
}
