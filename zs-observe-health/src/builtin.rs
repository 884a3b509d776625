//! Built-in checks: TCP connect, HTTP GET, and a writable directory with enough free space.
//! (The closure adapter is [`check_fn`](crate::check_fn).)

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::check::{Check, CheckResult};

/// Connects to `address` (`host:port`; names are resolved) and passes when the connection is
/// accepted within `timeout`. Reports the connect time in seconds (`observedUnit` `s`).
pub fn tcp_connect(address: impl Into<String>, timeout: Duration) -> TcpConnect {
    TcpConnect {
        address: address.into(),
        timeout,
    }
}

/// See [`tcp_connect`].
#[derive(Clone, Debug)]
pub struct TcpConnect {
    address: String,
    timeout: Duration,
}

impl Check for TcpConnect {
    fn check(&self) -> BoxFuture<'_, CheckResult> {
        async move {
            let start = Instant::now();
            match tokio::time::timeout(self.timeout, TcpStream::connect(self.address.as_str()))
                .await
            {
                Ok(Ok(_stream)) => {
                    CheckResult::pass().with_observed(start.elapsed().as_secs_f64(), "s")
                }
                Ok(Err(err)) => CheckResult::fail(format!("connect to {}: {err}", self.address)),
                Err(_) => CheckResult::fail(format!(
                    "connect to {} timed out after {:?}",
                    self.address, self.timeout
                )),
            }
        }
        .boxed()
    }
}

/// Sends `GET url` (plain `http://` only, HTTP/1.1, `Connection: close`) and passes on a 2xx
/// status, fails on anything else or on no answer within `timeout`. Reports the response time
/// in seconds (`observedUnit` `s`); the output names the status when it is not 2xx.
///
/// This is a minimal client for health endpoints and admin ports; for TLS or authentication,
/// wrap your HTTP client in [`check_fn`](crate::check_fn).
pub fn http_get(url: impl Into<String>, timeout: Duration) -> HttpGet {
    HttpGet {
        url: url.into(),
        timeout,
    }
}

/// See [`http_get`].
#[derive(Clone, Debug)]
pub struct HttpGet {
    url: String,
    timeout: Duration,
}

impl Check for HttpGet {
    fn check(&self) -> BoxFuture<'_, CheckResult> {
        async move {
            let start = Instant::now();
            match tokio::time::timeout(self.timeout, get_status(&self.url)).await {
                Ok(Ok((code, line))) => {
                    let result = if (200..300).contains(&code) {
                        CheckResult::pass()
                    } else {
                        CheckResult::fail(format!("GET {} answered `{line}`", self.url))
                    };
                    result.with_observed(start.elapsed().as_secs_f64(), "s")
                }
                Ok(Err(err)) => CheckResult::fail(format!("GET {}: {err}", self.url)),
                Err(_) => CheckResult::fail(format!(
                    "GET {} timed out after {:?}",
                    self.url, self.timeout
                )),
            }
        }
        .boxed()
    }
}

/// The parts of an `http://` URL: the address to connect to, the `Host` header and the path.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) connect: String,
    pub(crate) host: String,
    pub(crate) path: String,
}

pub(crate) fn parse_url(url: &str) -> Result<Target, String> {
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "scheme `{scheme}` is not supported by http_get (plain http only; wrap a TLS client in check_fn)"
            ))
        }
        None => return Err("the URL has no scheme (expected http://host[:port]/path)".into()),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err("the URL needs a host (and no user info)".into());
    }
    let has_port = match authority.rfind(':') {
        Some(i) => !authority[i..].contains(']'),
        None => false,
    };
    let connect = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    if path.contains(['\r', '\n', ' ']) || authority.contains(['\r', '\n', ' ']) {
        return Err("the URL contains whitespace".into());
    }
    Ok(Target {
        connect,
        host: authority.to_owned(),
        path,
    })
}

/// The status code and status line of `GET url`.
async fn get_status(url: &str) -> Result<(u16, String), String> {
    let target = parse_url(url)?;
    let mut stream = TcpStream::connect(target.connect.as_str())
        .await
        .map_err(|e| format!("connect to {}: {e}", target.connect))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: zs-observe-health\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path, target.host
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 512];
    // The status line must arrive within the first 8 KiB.
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("receive: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    parse_status_line(&head)
}

pub(crate) fn parse_status_line(head: &[u8]) -> Result<(u16, String), String> {
    let end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or("no HTTP status line in the response")?;
    let line = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x response: `{line}`"));
    }
    let code = code
        .parse::<u16>()
        .ok()
        .filter(|c| (100..600).contains(c))
        .ok_or_else(|| format!("bad status code in `{line}`"))?;
    Ok((code, line))
}

/// Checks that `dir` is writable (writes and removes a small probe file) and, with thresholds,
/// that its file system has enough space available to unprivileged users. Reports the available
/// bytes (`observedUnit` `bytes`).
pub fn dir_writable(dir: impl Into<PathBuf>) -> DirWritable {
    DirWritable {
        dir: dir.into(),
        fail_below: None,
        warn_below: None,
    }
}

/// See [`dir_writable`].
#[derive(Clone, Debug)]
pub struct DirWritable {
    dir: PathBuf,
    fail_below: Option<u64>,
    warn_below: Option<u64>,
}

impl DirWritable {
    /// Fails when fewer than `bytes` are available.
    pub fn fail_below(mut self, bytes: u64) -> Self {
        self.fail_below = Some(bytes);
        self
    }

    /// Warns when fewer than `bytes` are available.
    pub fn warn_below(mut self, bytes: u64) -> Self {
        self.warn_below = Some(bytes);
        self
    }
}

static PROBE_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Check for DirWritable {
    fn check(&self) -> BoxFuture<'_, CheckResult> {
        let this = self.clone();
        async move {
            match tokio::task::spawn_blocking(move || this.run()).await {
                Ok(result) => result,
                Err(err) => CheckResult::fail(format!("the directory check failed: {err}")),
            }
        }
        .boxed()
    }
}

impl DirWritable {
    fn run(&self) -> CheckResult {
        let dir = self.dir.display();
        let n = PROBE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let probe = self.dir.join(format!(
            ".zs-observe-health-probe-{}-{n}",
            std::process::id()
        ));
        if let Err(err) = std::fs::write(&probe, b"zs-observe-health probe\n") {
            return CheckResult::fail(format!("{dir} is not writable: {err}"));
        }
        if let Err(err) = std::fs::remove_file(&probe) {
            return CheckResult::fail(format!("cannot remove the probe file in {dir}: {err}"));
        }
        if self.fail_below.is_none() && self.warn_below.is_none() {
            return CheckResult::pass();
        }
        let available = match available_space(&self.dir) {
            Ok(bytes) => bytes,
            Err(err) => {
                return CheckResult::warn(format!("cannot read the free space of {dir}: {err}"))
            }
        };
        let result = if self.fail_below.is_some_and(|min| available < min) {
            CheckResult::fail(format!(
                "{available} bytes available in {dir}, below the minimum of {}",
                self.fail_below.unwrap_or_default()
            ))
        } else if self.warn_below.is_some_and(|min| available < min) {
            CheckResult::warn(format!(
                "{available} bytes available in {dir}, below the warning level of {}",
                self.warn_below.unwrap_or_default()
            ))
        } else {
            CheckResult::pass()
        };
        result.with_observed(available, "bytes")
    }
}

/// Bytes available to unprivileged users on the file system holding `path`.
#[cfg(unix)]
fn available_space(path: &std::path::Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(not(unix))]
fn available_space(_path: &std::path::Path) -> std::io::Result<u64> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "free space is only read on Unix",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("http://127.0.0.1:8080/health/ready?x=1").unwrap();
        assert_eq!(t.connect, "127.0.0.1:8080");
        assert_eq!(t.host, "127.0.0.1:8080");
        assert_eq!(t.path, "/health/ready?x=1");
        let t = parse_url("http://example.invalid").unwrap();
        assert_eq!(t.connect, "example.invalid:80");
        assert_eq!(t.path, "/");
        let t = parse_url("http://[::1]/x").unwrap();
        assert_eq!(t.connect, "[::1]:80");
        let t = parse_url("http://[::1]:9/x").unwrap();
        assert_eq!(t.connect, "[::1]:9");
        let t = parse_url("http://h?q").unwrap();
        assert_eq!(t.path, "/?q");
        assert!(parse_url("https://h/").is_err());
        assert!(parse_url("h/").is_err());
        assert!(parse_url("http:///x").is_err());
        assert!(parse_url("http://h/a b").is_err());
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status_line(b"HTTP/1.1 204 No Content\r\n").unwrap().0,
            204
        );
        assert_eq!(parse_status_line(b"HTTP/1.0 500\r\n").unwrap().0, 500);
        assert!(parse_status_line(b"HTTP/1.1 200 OK").is_err());
        assert!(parse_status_line(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(parse_status_line(b"HTTP/1.1 abc OK\r\n").is_err());
    }
}
