//! Starting the node binary as a process on a free loopback port, and a minimal
//! HTTP client for its endpoints.

#![allow(dead_code)] // each test file uses a part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Kills the node when the test ends, however it ends.
pub(crate) struct Node(Child, std::path::PathBuf, Arc<Mutex<Vec<String>>>);

impl Node {
    /// The lines the node wrote to stdout so far (its logs; the last 20,000 kept).
    pub(crate) fn stdout_lines(&self) -> Vec<String> {
        self.2.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// Starts the node on port 0 and returns it with the address it bound.
pub(crate) fn start(args: &[&str]) -> (Node, String) {
    start_with_env(args, &[])
}

/// Starts the node on port 0 with extra environment variables, and a data directory
/// of its own (removed with the node).
pub(crate) fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> (Node, String) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let data_dir =
        std::env::temp_dir().join(format!("zerostate-node-test-{}-{n}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_zerostate-node"))
        .args(["--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&data_dir)
        .args(args)
        .envs(env.iter().copied())
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("ZEROSTATE_LISTEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let stdout = child.stdout.take().expect("piped stdout");
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(mut lines) = sink.lock() {
                if lines.len() >= 20_000 {
                    lines.remove(0);
                }
                lines.push(line);
            }
        }
    });
    let node = Node(child, data_dir, logs);
    let mut lines = BufReader::new(stderr).lines();
    let mut addr = None;
    for line in lines.by_ref().take(200) {
        let line = line.expect("stderr is text");
        if let Some(a) = line.strip_prefix("LISTENING ") {
            addr = Some(a.to_owned());
            break;
        }
    }
    let addr = addr.expect("a LISTENING line on stderr");
    // Keep draining stderr so the node never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (node, addr)
}

/// GET `path` over HTTP/1.0 (close-delimited body); returns status line and body.
pub(crate) fn get(addr: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}
