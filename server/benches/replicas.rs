//! 10,000 simulated agents across three fleet server replicas on one
//! PostgreSQL, printed, not asserted: in-process tasks speaking the real
//! HTTP protocol to three real server processes (release build) on one
//! throw-away PostgreSQL cluster the bench starts.
//!
//! The agents are spread over the replicas directly, round-robin by agent
//! (agent `i` talks to replica `i % 3`), not through HAProxy: with this
//! machine's open-file limit (20,000) HAProxy holds about 9,900 client
//! connections (each costs it two descriptors), fewer than 10,000 held
//! polls. The bench raises its own soft open-file limit to the hard one
//! (`prlimit`; the replicas inherit it) and stops when that cannot hold
//! every agent's poll.
//!
//! Phases:
//! 1. **enrol**: every agent enrols on its replica (50 at a time per
//!    replica) and starts its desired-state long-poll (`wait=30`) there.
//! 2. **steady** (`FLEET_BENCH_SECS`, default 60 s): every agent holds its
//!    poll and reports every 30 s (the first 5 s after the start, spread
//!    over 30 s), one report in ten followed by an op event sent twice; an
//!    admin pins 50 agents one by one through replica A (the first), each
//!    an agent whose poll replica B or C holds: the time from the pin to
//!    that poll answering is the wake latency across replicas
//!    (PostgreSQL `LISTEN`/`NOTIFY`).
//! 3. **burst** (10 s each, polls still held): 2,000 agents
//!    (`FLEET_BENCH_BURST_AGENTS`) report back to back, first each to its
//!    own replica (three), then all to replica A (one) — the requests per
//!    second, and how they grow from one replica to three on the same
//!    database in the same run.
//!
//! Printed: p50/p99/max per endpoint (client side, held polls excluded),
//! each replica's RSS (VmRSS, VmHWM) and CPU, the database's size after
//! the run (`pg_database_size`, and per 10,000 agents), and a table of the
//! figures against the targets: report p99 < 50 ms, pin → held poll
//! answered p99 < 100 ms, RSS < 150 MiB per replica.
//!
//! `cargo bench -p container-upgrader-server --features docker-tests --bench replicas`
//! (`FLEET_BENCH_AGENTS`, default 10,000; `FLEET_BENCH_SECS`, default 60;
//! `FLEET_BENCH_POLL_SPREAD=1` spreads the first held polls over 1–30 s,
//! a diagnostic for the polls that time out together). Also printed: the
//! steady phase per 5 s (report p99, polls answered) and who had the CPU
//! (the replicas, PostgreSQL, the simulated agents, other processes): the
//! machine's two cores are shared.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ms, usage, FleetServer, Quantiles, Samples, TestPostgres, TestRun, ADMIN_TOKEN};
use serde_json::{json, Value};

const REPLICAS: usize = 3;
/// A held poll's `wait` (a real agent's `--server-poll` default is 30 s).
const POLL_WAIT_SECS: u64 = 30;
const REPORT: &str = "POST /v1/agent/report";
/// The steady phase's timeline is printed in windows this long.
const WINDOW: Duration = Duration::from_secs(5);
/// Enrolments in flight per replica.
const ENROL_AT_ONCE: usize = 50;
const REPORT_EVERY: Duration = Duration::from_secs(30);
const PINS: usize = 50;
const BURST: Duration = Duration::from_secs(10);
/// Reports start this long after the steady phase does.
const WARM_UP: Duration = Duration::from_secs(5);
/// An enrolment token's most uses (the server's cap).
const TOKEN_USES: usize = 10_000;
/// Every simulated agent connects from 127.0.0.1, as a fleet behind one
/// NAT address or balancer would, so the per-address cap is off; and one
/// replica holds a third of the polls plus the whole burst in its second
/// half, past the default 4,096 connections.
const SERVER_FLAGS: &[&str] =
    &["--version-check-interval", "1h", "--max-connections-per-address", "0", "--max-connections", "12000"];
/// Descriptors the bench needs beyond one per held poll and one per
/// bursting agent: idle pooled connections, the runtime, pipes.
const SPARE_FDS: u64 = 1000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|s| s.replace(['_', ','], "").parse().ok()).unwrap_or(default)
}

/// The soft and hard open-file limits of this process.
fn fd_limits() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or_default();
    let mut numbers = line.split_whitespace().skip(3).map(|n| n.parse::<u64>().unwrap_or(u64::MAX));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0))
}

/// Raises the soft open-file limit to the hard one (the lints forbid the
/// `unsafe` of setrlimit; util-linux's `prlimit` sets it on this process
/// from outside, and the replicas started later inherit it). Panics when
/// even the hard limit is below `needed`.
fn raise_fd_limit(needed: u64) -> u64 {
    let (soft, hard) = fd_limits();
    if soft < hard {
        let limit = if hard == u64::MAX { "unlimited".to_string() } else { hard.to_string() };
        let done = Command::new("prlimit")
            .arg("--pid")
            .arg(std::process::id().to_string())
            .arg(format!("--nofile={limit}:{limit}"))
            .status();
        if !matches!(done, Ok(s) if s.success()) {
            eprintln!("prlimit could not raise the open-file limit from {soft} to {hard}: {done:?}");
        }
    }
    let (soft, _) = fd_limits();
    assert!(
        soft >= needed,
        "the open-file limit is {soft}, the bench needs {needed} (a held poll and a report per agent, and spare): \
         raise the hard limit (ulimit -Hn) or lower FLEET_BENCH_AGENTS / FLEET_BENCH_BURST_AGENTS"
    );
    soft
}

fn manifest(i: usize) -> String {
    format!(
        "version: 1\ndefaults:\n  drift_interval: 5m\ntargets:\n  - container: app-{i}\n    image: registry.local:5000/team/app:1.0.{}\n",
        i % 3
    )
}

fn report(i: usize) -> Value {
    let image = "registry.local:5000/team/app:1.0.0";
    json!({
        "controller_version": "0.1.0",
        "controller": {"container": format!("ctl-{i}"), "image": "registry.local:5000/ops/container-upgrader:0.1.0"},
        "updated_at": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "targets": [{
            "target": format!("app-{i}"),
            "container": format!("app-{i}"),
            "image": image,
            "digest": "sha256:2f5e4c3b1a0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f",
            "version": "1.0.0",
            "desired": image,
            "action": "none",
            "reason": "up to date",
        }],
        "holds": [],
    })
}

fn event(i: usize, n: u64) -> Value {
    json!({
        "op_id": format!("20261201T000000Z-{i:05}-{n:06}"),
        "container": format!("app-{i}"),
        "from": "registry.local:5000/team/app:1.0.0",
        "to": "registry.local:5000/team/app:1.0.1",
        "outcome": "committed",
        "reason": null,
        "started_at": "2026-12-01T00:00:00Z",
        "ended_at": "2026-12-01T00:00:03Z",
        "duration_ms": 3000,
        "controller_version": "0.1.0",
    })
}

struct Agent {
    i: usize,
    id: String,
    credential: String,
}

impl Agent {
    /// The replica it enrols, polls and reports on.
    fn home(&self) -> usize {
        self.i % REPLICAS
    }
}

/// Reports (sent at, took) and poll answers (at).
type Timeline = (Vec<(Instant, Duration)>, Vec<Instant>);

struct Shared {
    /// `http://127.0.0.1:PORT` of each replica.
    bases: Vec<String>,
    http: reqwest::Client,
    samples: Samples,
    /// When each report was sent and what it took, and when each poll
    /// was answered (to be re-armed): the steady phase's timeline.
    timeline: Mutex<Timeline>,
    requests: AtomicU64,
    stop: AtomicBool,
    /// Pinned agent index → when the pin was sent.
    pinned: Mutex<BTreeMap<usize, Instant>>,
}

impl Shared {
    /// Sends `request`, timing it under `endpoint` when it succeeds;
    /// whether it did.
    async fn timed(&self, endpoint: &'static str, request: reqwest::RequestBuilder) -> bool {
        let started = Instant::now();
        let Ok(answer) = request.send().await else { return false };
        let status = answer.status();
        let bytes = answer.bytes().await.unwrap_or_default();
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status.is_success() || status.as_u16() == 304 {
            self.samples.add(endpoint, started.elapsed());
            if endpoint == REPORT {
                if let Ok(mut t) = self.timeline.lock() {
                    t.0.push((started, started.elapsed()));
                }
            }
            true
        } else {
            eprintln!("{endpoint}: {status} {}", String::from_utf8_lossy(&bytes));
            false
        }
    }
}

async fn enrol(shared: &Shared, token: &str, i: usize) -> Option<Agent> {
    let body = json!({"token": token, "name": format!("bench-{i:05}"), "manifest": manifest(i)});
    let started = Instant::now();
    let answer = shared
        .http
        .post(format!("{}/v1/agent/enrol", shared.bases[i % REPLICAS]))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(|e| eprintln!("enrol {i}: {e}"))
        .ok()?;
    let status = answer.status();
    let value: Value = answer.json().await.ok()?;
    shared.requests.fetch_add(1, Ordering::Relaxed);
    if status.as_u16() != 201 {
        eprintln!("enrol {i}: {status} {value}");
        return None;
    }
    shared.samples.add("POST /v1/agent/enrol", started.elapsed());
    Some(Agent {
        i,
        id: value["agent_id"].as_str()?.to_string(),
        credential: value["credential"].as_str()?.to_string(),
    })
}

/// One agent's long-poll loop on its replica until stopped. As a real
/// agent does, it asks again at once with the same `wait`; with `spread`
/// its first held poll waits 1–30 s instead (a diagnostic: fleets whose
/// polls do not time out together).
async fn poll(shared: Arc<Shared>, agent: Arc<Agent>, spread: bool) {
    let mut etag: Option<String> = None;
    let base = &shared.bases[agent.home()];
    let mut held = 0u32;
    while !shared.stop.load(Ordering::Relaxed) {
        let wait = match (spread, etag.is_some() && held == 0) {
            (true, true) => 1 + (29.0 * (agent.i as f64 * 0.618_034).fract()) as u64,
            _ => POLL_WAIT_SECS,
        };
        if etag.is_some() {
            held += 1;
        }
        let url = format!("{base}/v1/agent/desired?wait={wait}");
        let mut request =
            shared.http.get(&url).bearer_auth(&agent.credential).timeout(Duration::from_secs(60));
        if let Some(tag) = &etag {
            request = request.header("If-None-Match", tag);
        }
        let started = Instant::now();
        let answer = match request.send().await {
            Ok(answer) => answer,
            Err(e) => {
                eprintln!("desired {}: {e}", agent.i);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        shared.requests.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut t) = shared.timeline.lock() {
            t.1.push(Instant::now());
        }
        let status = answer.status().as_u16();
        let tag = answer.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_string);
        let _ = answer.bytes().await;
        match status {
            200 if etag.is_none() => shared.samples.add("GET /v1/agent/desired (first)", started.elapsed()),
            200 => {
                let pinned = shared.pinned.lock().ok().and_then(|mut p| p.remove(&agent.i));
                if let Some(at) = pinned {
                    shared.samples.add("pin on A → poll on B/C answered", at.elapsed());
                }
            }
            304 => {}
            other => eprintln!("desired {}: {other}", agent.i),
        }
        if tag.is_some() {
            etag = tag;
        }
    }
}

/// A group of reporters: when they stop, and how many of their requests
/// were answered.
#[derive(Default)]
struct Reporters {
    stop: AtomicBool,
    answered: AtomicU64,
}

/// One agent's reports to replica `to` (one in ten followed by an event,
/// sent twice) until `group` stops: every `every`, or back to back.
async fn reports(
    shared: Arc<Shared>,
    agent: Arc<Agent>,
    to: usize,
    every: Option<Duration>,
    group: Arc<Reporters>,
) {
    let mut n = 0u64;
    if let Some(every) = every {
        let offset = WARM_UP + every.mul_f64((agent.i as f64 * 0.618_034).fract());
        tokio::time::sleep(offset).await;
    }
    let report_url = format!("{}/v1/agent/report", shared.bases[to]);
    let event_url = format!("{}/v1/agent/events", shared.bases[to]);
    while !group.stop.load(Ordering::Relaxed) {
        n += 1;
        let request = shared.http.post(&report_url).bearer_auth(&agent.credential).json(&report(agent.i));
        let mut answered = u64::from(shared.timed(REPORT, request).await);
        if (agent.i as u64 + n).is_multiple_of(10) {
            let body = event(agent.i, n);
            let key = body["op_id"].as_str().unwrap_or_default().to_string();
            for _ in 0..2 {
                let request = shared
                    .http
                    .post(&event_url)
                    .bearer_auth(&agent.credential)
                    .header("Idempotency-Key", &key)
                    .json(&body);
                answered += u64::from(shared.timed("POST /v1/agent/events", request).await);
            }
        }
        group.answered.fetch_add(answered, Ordering::Relaxed);
        match every {
            Some(every) => tokio::time::sleep(every).await,
            None => tokio::task::yield_now().await,
        }
    }
}

/// Pins `PINS` agents held on replicas B and C, one by one, through
/// replica A.
async fn admin(shared: Arc<Shared>, agents: Vec<Arc<Agent>>, secs: u64) {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let pin_every = Duration::from_secs_f64((secs.saturating_sub(10) as f64 / PINS as f64).max(0.2));
    let mut next_pin = Instant::now() + WARM_UP;
    let mut pins = 0;
    while pins < PINS && !shared.stop.load(Ordering::Relaxed) {
        if Instant::now() >= next_pin {
            let mut k = (pins * 197 + 1) % agents.len();
            if agents[k].home() == 0 {
                k = (k + 1) % agents.len();
            }
            let agent = &agents[k];
            let url = format!("{}/v1/fleet/agents/{}/targets/app-{}", shared.bases[0], agent.id, agent.i);
            if let Ok(mut p) = shared.pinned.lock() {
                p.insert(agent.i, Instant::now());
            }
            let body = json!({"image": format!("registry.local:5000/team/app:1.1.{pins}")});
            shared
                .timed(
                    "PUT …/targets/{t} on A (admin)",
                    shared.http.put(url).header("Authorization", &auth).json(&body),
                )
                .await;
            pins += 1;
            next_pin += pin_every;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each replica's (VmRSS, VmHWM, CPU seconds).
fn usages(pids: &[u32]) -> Vec<(f64, f64, f64)> {
    pids.iter().map(|p| usage(*p)).collect()
}

/// `agents` reporting back to back for `BURST`, agent `a` to replica
/// `to(a)`, while every poll stays held: the requests per second answered.
fn burst(
    runtime: &tokio::runtime::Runtime,
    shared: &Arc<Shared>,
    agents: &[Arc<Agent>],
    pids: &[u32],
    to: impl Fn(&Agent) -> usize,
    label: &str,
) -> f64 {
    let group = Arc::new(Reporters::default());
    let before = usages(pids);
    let started = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = agents
            .iter()
            .map(|a| tokio::spawn(reports(shared.clone(), a.clone(), to(a), None, group.clone())))
            .collect();
        tokio::time::sleep(BURST).await;
        group.stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let after = usages(pids);
    let answered = group.answered.load(Ordering::Relaxed);
    let rate = answered as f64 / elapsed;
    let cpu: Vec<String> = before.iter().zip(&after).map(|(b, a)| format!("{:.1} s", a.2 - b.2)).collect();
    println!(
        "  burst {label}: {} agents, {answered} requests answered in {elapsed:.1} s = {rate:.0} requests/s; replica CPU (A / B / C) {}",
        agents.len(),
        cpu.join(" / ")
    );
    shared.samples.print("burst");
    rate
}

fn main() {
    let agents_wanted = env_usize("FLEET_BENCH_AGENTS", 10_000);
    let burst_agents = env_usize("FLEET_BENCH_BURST_AGENTS", 2_000).min(agents_wanted);
    let secs = env_usize("FLEET_BENCH_SECS", 60) as u64;
    let spread = std::env::var("FLEET_BENCH_POLL_SPREAD").is_ok_and(|v| v == "1");
    let fds = raise_fd_limit((agents_wanted + burst_agents) as u64 + SPARE_FDS);

    let run = TestRun::new("bench_replicas");
    let postgres = TestPostgres::start();
    let empty = || postgres.psql("SELECT pg_database_size(current_database())").parse::<u64>().unwrap_or(0);
    let mut servers = Vec::new();
    for _ in 0..REPLICAS {
        // One after another: each applies the migrations it finds missing.
        servers.push(FleetServer::start(&run, &postgres.url, SERVER_FLAGS));
    }
    let size_empty = empty();
    let pids: Vec<u32> = servers.iter().map(|s| s.pid().expect("server pid")).collect();
    let tokens: Vec<String> = (0..agents_wanted.div_ceil(TOKEN_USES))
        .map(|n| {
            let uses = (agents_wanted - n * TOKEN_USES).min(TOKEN_USES);
            let body = format!("{{\"uses\": {uses}, \"expires_in\": \"1h\"}}");
            let answer = servers[0].admin("POST", "/v1/fleet/enrolment-tokens", &body);
            assert_eq!(answer.status, 201, "{}", answer.text());
            let token: Value = serde_json::from_slice(&answer.body).expect("JSON");
            token["token"].as_str().expect("token").to_string()
        })
        .collect();

    container_upgrader::tls::ensure_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let http = reqwest::Client::builder().pool_max_idle_per_host(agents_wanted).build().expect("client");
    let shared = Arc::new(Shared {
        bases: servers.iter().map(FleetServer::url).collect(),
        http,
        samples: Samples::default(),
        timeline: Mutex::default(),
        requests: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        pinned: Mutex::new(BTreeMap::new()),
    });
    println!(
        "{agents_wanted} agents over {REPLICAS} replicas on one PostgreSQL, steady phase {secs} s (open-file limit {fds}){}",
        if spread { "; first held polls spread over 1–30 s" } else { "" }
    );
    let start: Vec<String> = usages(&pids).iter().map(|u| format!("{:.1}", u.0)).collect();
    println!("  replicas at start: RSS {} MiB", start.join(" / "));

    // 1. Enrolment, spread; each agent polls as soon as it is enrolled.
    let started = Instant::now();
    let (agents, polls): (Vec<Arc<Agent>>, Vec<_>) = runtime.block_on(async {
        let (mut agents, mut polls) = (Vec::new(), Vec::new());
        for chunk in (0..agents_wanted).collect::<Vec<_>>().chunks(ENROL_AT_ONCE * REPLICAS) {
            let tasks: Vec<_> = chunk
                .iter()
                .map(|&i| {
                    let (shared, token) = (shared.clone(), tokens[i / TOKEN_USES].clone());
                    tokio::spawn(async move { enrol(&shared, &token, i).await })
                })
                .collect();
            for t in tasks {
                if let Ok(Some(a)) = t.await {
                    let a = Arc::new(a);
                    polls.push(tokio::spawn(poll(shared.clone(), a.clone(), spread)));
                    agents.push(a);
                }
            }
        }
        (agents, polls)
    });
    let took = started.elapsed();
    println!(
        "  enrolled {} agents in {:.1} s ({:.0}/s)",
        agents.len(),
        took.as_secs_f64(),
        agents.len() as f64 / took.as_secs_f64()
    );
    let enrol = shared.samples.print("enrol");
    assert_eq!(agents.len(), agents_wanted, "every agent enrols");

    // 2. Steady state, with the pins across replicas.
    shared.requests.store(0, Ordering::Relaxed);
    let pg_port = postgres.url.rsplit_once(':').and_then(|(_, r)| r.split('/').next()).unwrap_or_default();
    let cpu_before = CpuShares::now(pg_port);
    let before = usages(&pids);
    let started = Instant::now();
    let mut peak = [0f64; REPLICAS];
    let group = Arc::new(Reporters::default());
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for a in &agents {
            let every = Some(REPORT_EVERY);
            tasks.push(tokio::spawn(reports(shared.clone(), a.clone(), a.home(), every, group.clone())));
        }
        tasks.push(tokio::spawn(admin(shared.clone(), agents.clone(), secs)));
        let until = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_secs(1)).await;
            for (p, u) in peak.iter_mut().zip(usages(&pids)) {
                *p = p.max(u.0);
            }
        }
        group.stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.abort();
        }
    });
    // The polls go on; count those still held.
    let held = polls.iter().filter(|p| !p.is_finished()).count();
    let elapsed = started.elapsed().as_secs_f64();
    let after = usages(&pids);
    let cpu_after = CpuShares::now(pg_port);
    let requests = shared.requests.load(Ordering::Relaxed);
    println!(
        "  steady: {requests} requests in {elapsed:.0} s ({:.1}/s; polls answered at their timeout are counted, not timed); {} polls held",
        requests as f64 / elapsed,
        held,
    );
    for (n, (b, a)) in before.iter().zip(&after).enumerate() {
        println!(
            "    replica {}: CPU {:.1} s ({:.1}% of one core); RSS {:.1} MiB (peak sampled {:.1}, HWM {:.1})",
            name(n),
            a.2 - b.2,
            100.0 * (a.2 - b.2) / elapsed,
            a.0,
            peak[n],
            a.1
        );
    }
    let machine = cpu_after.since(&cpu_before, &before, &after, elapsed);
    println!("  {machine}");
    let steady = shared.samples.print("steady");
    print_timeline(&shared, started);
    let pins_missed = shared.pinned.lock().map(|p| p.len()).unwrap_or(0);
    if pins_missed > 0 {
        println!("  {pins_missed} pins not seen answered by the end of the steady phase");
    }
    let size_after = postgres.psql("SELECT pg_database_size(current_database())").parse::<u64>().unwrap_or(0);

    // 3. Bursts: the same agents, first each to its own replica, then all
    // to replica A; every poll still held.
    let bursting = &agents[..burst_agents];
    let three = burst(&runtime, &shared, bursting, &pids, Agent::home, "over 3 replicas");
    let one = burst(&runtime, &shared, bursting, &pids, |_| 0, "all on replica A");
    shared.stop.store(true, Ordering::Relaxed);
    for p in polls {
        p.abort();
    }
    let end = usages(&pids);
    let trouble: Vec<String> = servers
        .iter()
        .flat_map(|s| {
            s.output()
                .lines()
                .filter(|l| l.contains("ERROR") || l.contains("WARN"))
                .take(5)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    if !trouble.is_empty() {
        println!("  the replicas' first warnings and errors:\n    {}", trouble.join("\n    "));
    }

    let mib = |b: u64| b as f64 / 1048576.0;
    let per_10k = |b: u64| mib(b) * 10_000.0 / agents_wanted as f64;
    let q = |m: &BTreeMap<&str, Quantiles>, k: &str| m.get(k).copied().unwrap_or_default();
    let (report, pin) = (q(&steady, REPORT), q(&steady, "pin on A → poll on B/C answered"));
    let hwm: Vec<String> = end.iter().map(|u| format!("{:.1}", u.1)).collect();
    let highest = end.iter().map(|u| u.1).fold(0f64, f64::max);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!("\nfigures ({agents_wanted} agents, {REPLICAS} replicas, one PostgreSQL, {secs} s steady):");
    println!(
        "  enrolment p99 ({} at once)                 {:>8.1} ms",
        ENROL_AT_ONCE * REPLICAS,
        ms(q(&enrol, "POST /v1/agent/enrol").p99)
    );
    println!(
        "  report p99 (n={}, steady)               {:>8.1} ms   target < 50 ms: {}",
        report.n,
        ms(report.p99),
        verdict(report.n > 0 && report.p99 < Duration::from_millis(50))
    );
    println!(
        "  pin on A → poll held on B/C answered       p50 {:.1} / p99 {:.1} / max {:.1} ms (n={} of {PINS})   target p99 < 100 ms: {}",
        ms(pin.p50),
        ms(pin.p99),
        ms(pin.max),
        pin.n,
        verdict(pin.n == PINS && pin.p99 < Duration::from_millis(100))
    );
    println!(
        "  RSS per replica, VmHWM (A / B / C)         {} MiB   target < 150 MiB: {}",
        hwm.join(" / "),
        verdict(highest < 150.0)
    );
    println!(
        "  PostgreSQL size after the steady phase     {:.1} MiB (the empty schema {:.1} MiB): {:.1} MiB per 10,000 agents",
        mib(size_after),
        mib(size_empty),
        per_10k(size_after.saturating_sub(size_empty))
    );
    println!(
        "  burst, {burst_agents} agents back to back           1 replica {one:.0} req/s, 3 replicas {three:.0} req/s: ×{:.2}",
        three / one.max(1.0)
    );
    drop(servers);
    drop(postgres);
}

/// Per `WINDOW` of the steady phase (from `from`): reports sent, their
/// p99, and polls answered (each re-armed at once): where a tail comes
/// from.
fn print_timeline(shared: &Shared, from: Instant) {
    let Ok(mut t) = shared.timeline.lock() else { return };
    let (reports, polls) = std::mem::take(&mut *t);
    let window =
        |at: Instant| (at.saturating_duration_since(from).as_secs_f64() / WINDOW.as_secs_f64()) as usize;
    let mut by: BTreeMap<usize, (Vec<Duration>, usize)> = BTreeMap::new();
    for (at, took) in reports {
        by.entry(window(at)).or_default().0.push(took);
    }
    for at in polls.into_iter().filter(|at| *at >= from) {
        by.entry(window(at)).or_default().1 += 1;
    }
    println!("  steady timeline (per {} s): reports sent, their p99; polls answered", WINDOW.as_secs());
    for (w, (mut took, polls)) in by {
        took.sort();
        let p99 = took.get(((took.len() as f64 - 1.0) * 0.99).round() as usize).copied().unwrap_or_default();
        println!(
            "    {:>3}–{:<3} s  reports {:>5}  p99 {:>8.1} ms  polls answered {:>5}",
            w * WINDOW.as_secs() as usize,
            (w + 1) * WINDOW.as_secs() as usize,
            took.len(),
            ms(p99),
            polls
        );
    }
}

/// CPU seconds so far: the machine's (all cores, busy), this process's
/// (the simulated agents), and the bench's PostgreSQL cluster's.
struct CpuShares {
    machine: f64,
    bench: f64,
    postgres: f64,
    load: String,
}

impl CpuShares {
    fn now(pg_port: &str) -> CpuShares {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let ticks: Vec<f64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal: busy is all but
        // idle and iowait.
        let busy: f64 =
            ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        CpuShares {
            machine: busy / 100.0,
            bench: usage(std::process::id()).2,
            postgres: postgres_cpu(pg_port),
            load: load.split_whitespace().next().unwrap_or("?").to_string(),
        }
    }

    /// What the interval from `self` to `later` and the replicas' usage
    /// `before`/`after` say about who had the cores.
    fn since(
        &self,
        earlier: &CpuShares,
        before: &[(f64, f64, f64)],
        after: &[(f64, f64, f64)],
        secs: f64,
    ) -> String {
        let replicas: f64 = before.iter().zip(after).map(|(b, a)| a.2 - b.2).sum();
        let machine = self.machine - earlier.machine;
        let (bench, postgres) = (self.bench - earlier.bench, self.postgres - earlier.postgres);
        let others = (machine - bench - postgres - replicas).max(0.0);
        format!(
            "machine: {:.0}% of {} cores busy over {secs:.0} s (load average {} → {}): replicas {replicas:.1} s, PostgreSQL {postgres:.1} s, the simulated agents {bench:.1} s, other processes {others:.1} s CPU",
            100.0 * machine / (secs * cores() as f64),
            cores(),
            earlier.load,
            self.load,
        )
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// CPU seconds of the PostgreSQL cluster listening on `port`: its
/// postmaster (found by `-p PORT` on its command line) and its children.
fn postgres_cpu(port: &str) -> f64 {
    let flag = format!("-p\0{port}\0");
    let procs: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            head.ends_with("(postgres").then_some(())?;
            Some((pid, rest.split_whitespace().nth(1)?.parse().ok()?))
        })
        .collect();
    let postmaster = procs.iter().map(|(pid, _)| *pid).find(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&flag))
    });
    let Some(postmaster) = postmaster else { return 0.0 };
    procs
        .iter()
        .filter(|(pid, ppid)| *pid == postmaster || *ppid == postmaster)
        .map(|(pid, _)| usage(*pid).2)
        .sum()
}

fn name(n: usize) -> char {
    (b'A' + n as u8) as char
}
