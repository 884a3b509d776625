//! The built-in workload (`--workload`): drives the service's own API over loopback
//! like a small fleet of agents would, so that dashboards and alerts have data.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

/// One plain HTTP/1.1 exchange over loopback: `(status, body)`.
pub(crate) async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .map_err(|_| format!("{method} {path}: no answer in 5 s"))?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {path}: not an HTTP response: {text}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Drives the API at `addr` every `period` until the task is aborted at shutdown: three
/// agents with heartbeats, a scheduled task, new tasks of every priority walked through
/// their statuses (one in ten fails and is retried), a chain every 50 rounds, and an
/// occasional bad request. It only walks and heartbeats what it created itself (titles
/// starting with `workload:`), so other clients of the same instance keep their tasks.
pub(crate) async fn run(addr: SocketAddr, period: Duration) {
    let mut agents = Vec::new();
    for (name, trust) in [("alpha", 0.6), ("beta", 0.75), ("gamma", 0.9)] {
        let body = format!(r#"{{"name":"workload:{name}","trust_score":{trust}}}"#);
        if let Ok((201, created)) = call(addr, "POST", "/agents", Some(&body)).await {
            if let Some(id) = serde_json::from_str::<Value>(&created)
                .ok()
                .and_then(|v| v["id"].as_i64())
            {
                agents.push(id);
            }
        }
    }
    let _ = call(
        addr,
        "POST",
        "/scheduled-tasks",
        Some(r#"{"title":"workload:report","interval_seconds":5}"#),
    )
    .await;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round: u64 = 0;
    loop {
        tick.tick().await;
        round += 1;
        if let Err(e) = one_round(addr, round, &agents).await {
            tracing::debug!(error = %e, "workload round failed");
        }
    }
}

async fn one_round(addr: SocketAddr, round: u64, agents: &[i64]) -> Result<(), String> {
    let priority = ["low", "normal", "high"][(round % 3) as usize];
    let body = format!(r#"{{"title":"workload:{round}","priority":"{priority}"}}"#);
    let (_, created) = call(addr, "POST", "/tasks", Some(&body)).await?;
    if let Some(id) = serde_json::from_str::<Value>(&created)
        .ok()
        .and_then(|v| v["id"].as_i64())
    {
        call(addr, "GET", &format!("/tasks/{id}"), None).await?;
        call(addr, "GET", &format!("/tasks/{id}"), None).await?;
    }
    // Walk up to five of our pending tasks (ours, chain steps, scheduled runs) to an end.
    let (_, pending) = call(addr, "GET", "/tasks?status=pending&limit=50", None).await?;
    let pending: Vec<Value> = serde_json::from_str(&pending).unwrap_or_default();
    let ours = pending.iter().filter(|t| {
        t["title"]
            .as_str()
            .is_some_and(|title| title.starts_with("workload:"))
    });
    for task in ours.take(5) {
        let Some(id) = task["id"].as_i64() else {
            continue;
        };
        let path = format!("/tasks/{id}/status");
        call(addr, "PUT", &path, Some(r#"{"status":"running"}"#)).await?;
        let fails = (id % 10 == 0) && task["chain_id"].is_null() && task["retries"] == 0;
        let end = if fails { "failed" } else { "completed" };
        call(
            addr,
            "PUT",
            &path,
            Some(&format!(r#"{{"status":"{end}"}}"#)),
        )
        .await?;
        if fails {
            call(addr, "PUT", &path, Some(r#"{"status":"pending"}"#)).await?;
        }
    }
    if round % 20 == 0 {
        for (n, agent) in (1u64..).zip(agents) {
            let trust = 0.5 + ((round / 20 + n) % 5) as f64 / 10.0;
            let body = format!(r#"{{"trust_score":{trust}}}"#);
            call(
                addr,
                "POST",
                &format!("/agents/{agent}/heartbeat"),
                Some(&body),
            )
            .await?;
        }
    }
    if round % 50 == 0 {
        let body = r#"{"name":"workload:pipeline","steps":["workload:fetch","workload:transform","workload:store"]}"#;
        call(addr, "POST", "/chains", Some(body)).await?;
    }
    if round % 25 == 0 {
        call(addr, "GET", "/tasks/0", None).await?;
    }
    Ok(())
}
