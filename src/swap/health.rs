//! The health gate: what a new container must show before a swap commits.
//!
//! [`judge`] is a pure function from what was observed to a verdict, so
//! every rule is tested without Docker; [`wait`] polls the engine (and the
//! optional HTTP/TCP probe) and asks `judge` until it passes or fails.

use std::time::{Duration, Instant};

use crate::engine::{ContainerDetails, Engine, EngineError, Sample};
use crate::manifest::{HealthGate, Probe};

/// How often the gate looks.
const POLL: Duration = Duration::from_millis(250);
/// Time one probe attempt may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Log lines quoted in a failure reason.
const LOG_LINES: usize = 5;

/// The gate's decision at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Healthy: commit.
    Pass,
    /// Failed, with why.
    Fail(String),
    /// Not decided yet; what is awaited.
    Wait(String),
}

/// Everything `judge` looks at.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    /// The container's state right after start.
    pub first: &'a Sample,
    /// Its state now.
    pub now: &'a Sample,
    /// Whether it has a Docker HEALTHCHECK (its own or its image's).
    pub has_healthcheck: bool,
    /// Time since the gate began.
    pub elapsed: Duration,
    /// The latest probe result (HTTP/TCP gates only).
    pub probe: Option<Result<(), String>>,
}

/// The verdict for one observation.
pub fn judge(gate: &HealthGate, o: &Observation<'_>) -> Verdict {
    let now = o.now;
    if now.restart_count > o.first.restart_count {
        let n = now.restart_count - o.first.restart_count;
        return Verdict::Fail(format!(
            "restarted {n} time(s) by its restart policy; last exit code {}{}",
            now.exit_code,
            oom(now)
        ));
    }
    if !now.running {
        let error = now.error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default();
        return Verdict::Fail(format!("exited with code {}{}{error}", now.exit_code, oom(now)));
    }
    let stable = o.elapsed >= gate.stable;
    let waiting = match (&gate.probe, o.has_healthcheck) {
        (Probe::Auto, true) => match now.health.as_deref() {
            Some("healthy") => return Verdict::Pass,
            Some("unhealthy") => {
                let output = now.health_output.as_deref().unwrap_or("no output");
                return Verdict::Fail(format!("health check failed: {output}"));
            }
            other => format!("health check {}", other.unwrap_or("not reported yet")),
        },
        (Probe::Auto | Probe::Running, _) if stable => return Verdict::Pass,
        (Probe::Auto | Probe::Running, _) => {
            format!("running for {}s of the {}s stable period", o.elapsed.as_secs(), gate.stable.as_secs())
        }
        (Probe::Http { .. } | Probe::Tcp { .. }, _) => match &o.probe {
            Some(Ok(())) if stable => return Verdict::Pass,
            Some(Ok(())) => {
                format!("probe passed; running for {}s of {}s", o.elapsed.as_secs(), gate.stable.as_secs())
            }
            Some(Err(e)) => e.clone(),
            None => "probe not tried yet".to_string(),
        },
    };
    if o.elapsed >= gate.timeout {
        return Verdict::Fail(format!("not healthy within {}s: {waiting}", gate.timeout.as_secs()));
    }
    Verdict::Wait(waiting)
}

fn oom(s: &Sample) -> &'static str {
    if s.oom_killed {
        ", killed by the kernel OOM killer"
    } else {
        ""
    }
}

/// True when the container's config has a HEALTHCHECK that is not `NONE`.
pub fn has_healthcheck(d: &ContainerDetails) -> bool {
    d.config
        .as_ref()
        .and_then(|c| c.healthcheck.as_ref())
        .and_then(|h| h.test.as_ref())
        .and_then(|t| t.first())
        .is_some_and(|first| first != "NONE")
}

/// Polls container `id` until the gate passes (`Ok`) or fails (`Err` with a
/// reason that quotes the last log lines). Engine errors end the wait as
/// failures too: a gate that cannot look has not passed.
pub async fn wait(engine: &Engine, id: &str, gate: &HealthGate) -> Result<(), String> {
    let started = Instant::now();
    let first = inspect(engine, id).await.map_err(|e| e.to_string())?;
    let has_hc = has_healthcheck(&first);
    // The reason goes to the journal, `status`, the API and the webhook:
    // the container's own configuration must not ride along in its output.
    let secrets = crate::redact::env_values(
        first.config.as_ref().and_then(|c| c.env.as_deref()).unwrap_or_default().iter().map(String::as_str),
    );
    let first = Sample::from_details(&first);
    let client = http_client()?;
    loop {
        let details = inspect(engine, id).await.map_err(|e| e.to_string())?;
        let now = Sample::from_details(&details);
        let probe = match &gate.probe {
            Probe::Http { .. } | Probe::Tcp { .. } if now.running => {
                Some(probe(&client, &details, &gate.probe).await)
            }
            _ => None,
        };
        let observation = Observation {
            first: &first,
            now: &now,
            has_healthcheck: has_hc,
            elapsed: started.elapsed(),
            probe,
        };
        match judge(gate, &observation) {
            Verdict::Pass => return Ok(()),
            Verdict::Fail(reason) => {
                return Err(crate::redact::text(&with_logs(engine, id, reason).await, &secrets))
            }
            Verdict::Wait(what) => tracing::debug!(container = id, waiting = %what, "health gate"),
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn inspect(engine: &Engine, id: &str) -> Result<ContainerDetails, EngineError> {
    engine.inspect_container(id).await?.ok_or_else(|| EngineError::Timeout {
        what: format!("container {id} disappeared during the health gate"),
        after: Duration::ZERO,
    })
}

/// Appends the container's last output lines to a failure reason.
async fn with_logs(engine: &Engine, id: &str, reason: String) -> String {
    match engine.logs_tail(id, LOG_LINES).await {
        Ok(lines) if !lines.is_empty() => format!("{reason}; last output: {}", lines.join(" | ")),
        Ok(_) => format!("{reason}; no output"),
        Err(e) => format!("{reason}; logs unavailable: {e}"),
    }
}

/// A plain-HTTP client for the probe. No CA roots are loaded (the probe
/// never speaks TLS), so it builds even where the system has none.
fn http_client() -> Result<reqwest::Client, String> {
    crate::registry::ensure_crypto_provider();
    reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_only(Vec::new())
        .build()
        .map_err(|e| format!("cannot build the HTTP probe client: {e}"))
}

/// The container's first IP address on any of its networks.
fn address(d: &ContainerDetails) -> Option<String> {
    let networks = d.network_settings.as_ref()?.networks.as_ref()?;
    let mut names: Vec<&String> = networks.keys().collect();
    names.sort();
    names.into_iter().find_map(|n| networks[n].ip_address.clone().filter(|ip| !ip.is_empty()))
}

async fn probe(client: &reqwest::Client, d: &ContainerDetails, probe: &Probe) -> Result<(), String> {
    let ip = address(d).ok_or("the probe needs the container to have an IP address on a network")?;
    match probe {
        Probe::Http { port, path, status } => {
            let url = format!("http://{ip}:{port}{path}");
            match client.get(&url).send().await {
                Ok(r) if r.status().as_u16() == *status => Ok(()),
                Ok(r) => {
                    Err(format!("http probe GET {url} returned {}, expected {status}", r.status().as_u16()))
                }
                Err(e) => Err(format!("http probe GET {url} failed: {e}")),
            }
        }
        Probe::Tcp { port } => {
            let addr = format!("{ip}:{port}");
            match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(&addr)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("tcp probe {addr} failed: {e}")),
                Err(_) => Err(format!("tcp probe {addr} timed out")),
            }
        }
        Probe::Auto | Probe::Running => Ok(()),
    }
}

#[cfg(test)]
mod tests;
