//! Three services over loopback HTTP (coordinator → executor → payments), each a
//! separate process with its own tracer and service name, produce one trace: one
//! trace id, correct parent links across the hops, and the JSON logs of all three
//! carry that trace id.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use zs_observe_tests::otlp::Receiver;

struct Service {
    child: Child,
    url: String,
}

fn start(name: &str, next: Option<&str>, endpoint: &str) -> Service {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chain_service"));
    cmd.arg(name)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("OTEL_TRACES_SAMPLER", "parentbased_always_on")
        .env(
            "OTEL_RESOURCE_ATTRIBUTES",
            format!("team=chain,hop.name={name}"),
        )
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("RUST_LOG")
        .env_remove("ZS_LOG_FORMAT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(next) = next {
        cmd.arg(next);
    }
    let mut child = cmd.spawn().expect("spawn chain_service");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("LISTENING ")
        .unwrap_or_else(|| panic!("{name} did not start: {line}"))
        .to_owned();
    Service {
        child,
        url: format!("http://{addr}/work"),
    }
}

fn stop(mut service: Service) -> Vec<serde_json::Value> {
    drop(service.child.stdin.take()); // graceful shutdown
    let mut out = String::new();
    service
        .child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = service.child.wait().unwrap();
    assert!(status.success(), "{status}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn one_trace_across_three_services() {
    let receiver = Receiver::grpc();
    let endpoint = receiver.endpoint();
    let payments = start("payments", None, &endpoint);
    let executor = start("executor", Some(&payments.url), &endpoint);
    let coordinator = start("coordinator", Some(&executor.url), &endpoint);

    let body = raw_http::blocking_get(&coordinator.url);
    assert_eq!(body, "coordinator>executor>payments>");

    let logs: Vec<(&str, Vec<serde_json::Value>)> = vec![
        ("coordinator", stop(coordinator)),
        ("executor", stop(executor)),
        ("payments", stop(payments)),
    ];
    let spans = receiver
        .collected
        .wait_for(Duration::from_secs(10), |s| s.len() >= 6);
    assert_eq!(spans.len(), 6, "{spans:#?}");

    let span = |service: &str, name: &str| {
        spans
            .iter()
            .find(|s| {
                s.name.starts_with(name)
                    && s.resource.get("service.name").map(String::as_str) == Some(service)
            })
            .unwrap_or_else(|| panic!("no {name} span from {service}: {spans:#?}"))
            .clone()
    };
    let trace_id = spans[0].trace_id.clone();
    assert!(spans.iter().all(|s| s.trace_id == trace_id), "{spans:#?}");

    // coordinator: server span (root) → chain.work → (HTTP) executor server span → ...
    let c_server = span("coordinator", "GET /work");
    let c_work = span("coordinator", "chain.work");
    let e_server = span("executor", "GET /work");
    let e_work = span("executor", "chain.work");
    let p_server = span("payments", "GET /work");
    let p_work = span("payments", "chain.work");
    // OTEL_RESOURCE_ATTRIBUTES reaches the resource of every span of each process.
    for s in &spans {
        let service = s.resource.get("service.name").cloned().unwrap_or_default();
        assert_eq!(s.resource.get("team").map(String::as_str), Some("chain"));
        assert_eq!(s.resource.get("hop.name"), Some(&service));
    }
    assert_eq!(c_server.parent_span_id, "");
    assert_eq!(c_server.kind, 2, "server kind");
    assert_eq!(c_work.parent_span_id, c_server.span_id);
    assert_eq!(e_server.parent_span_id, c_work.span_id);
    assert_eq!(e_work.parent_span_id, e_server.span_id);
    assert_eq!(p_server.parent_span_id, e_work.span_id);
    assert_eq!(p_work.parent_span_id, p_server.span_id);
    assert_eq!(
        c_server.attributes.get("http.route").map(String::as_str),
        Some("/work")
    );
    assert_eq!(
        c_server
            .attributes
            .get("http.response.status_code")
            .map(String::as_str),
        Some("200")
    );

    for (service, lines) in &logs {
        let done: Vec<_> = lines
            .iter()
            .filter(|l| l["message"] == "work done")
            .collect();
        assert_eq!(done.len(), 1, "{service}: {lines:#?}");
        let line = done[0];
        assert_eq!(line["service"], *service);
        assert_eq!(line["trace_id"], trace_id.as_str(), "{service}");
        assert_eq!(line["level"], "info");
        assert!(
            line["request_id"].as_str().is_some_and(|id| id.len() == 32),
            "{line}"
        );
        assert_eq!(line["hop"], *service);
        assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
}

mod raw_http {
    /// A plain blocking GET over a std TcpStream (HTTP/1.1, no keep-alive).
    pub(super) fn blocking_get(url: &str) -> String {
        use super::*;
        let rest = url.strip_prefix("http://").unwrap();
        let (addr, path) = rest.split_at(rest.find('/').unwrap());
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("x-request-id: "),
            "{head}"
        );
        body.to_owned()
    }
}
