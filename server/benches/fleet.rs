//! The fleet server under 1,000 simulated agents, printed, not asserted:
//! in-process tasks speaking the real HTTP protocol to the real server
//! binary (release build), once on SQLite and once on a PostgreSQL
//! cluster the bench starts.
//!
//! Phases, per database:
//! 1. **enrol**: 1,000 agents enrol (50 at a time) with one token.
//! 2. **steady** (`FLEET_BENCH_SECS`, default 60 s): every agent holds a
//!    desired-state long-poll (`wait=30`, started as soon as the agent is
//!    enrolled; the first answer is timed) and reports every 30 s (the
//!    first 5 s after, spread over 30 s), one in ten reports followed by an op
//!    event (sent twice: at-least-once delivery); an admin lists the
//!    agents every 5 s and pins 20 agents one by one — the time from the
//!    pin to the pinned agent's poll answering is the wake latency.
//! 3. **burst** (10 s): every agent reports back to back — the requests
//!    per second the server sustains.
//! 4. **campaign**: one campaign over all 1,000 agents (canary 1, batches
//!    of 10%, monitor 5 s) to a new image; each simulated agent answers its
//!    pin as a real one does (an op event `committed`, then a report
//!    showing the image; the images are in no registry, so the campaign
//!    hands out the tag: pinning by digest adds one registry request per
//!    campaign). Printed: the time to complete, the server's CPU
//!    and RSS meanwhile, and every agent's sends (exactly one each).
//! 5. **page**: the fleet view (`GET /`, 1,000 agents) loaded 20 times
//!    after a login — the time to the last byte over loopback, which is
//!    the server's time (target < 200 ms).
//!
//! Printed: p50/p99/max latency per endpoint (client side, held polls
//! excluded), requests per second, the server's RSS (VmRSS, VmHWM) and
//! CPU time, and the database's size. Targets: p99 < 50 ms and RSS <
//! 100 MiB at 1,000 agents; the fleet view < 200 ms.
//!
//! `cargo bench -p container-upgrader-server --features docker-tests --bench fleet`

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ms, usage, FleetServer, Samples, TestPostgres, TestRun, ADMIN_TOKEN};
use serde_json::{json, Value};

const AGENTS: usize = 1000;
const ENROL_AT_ONCE: usize = 50;
const REPORT_EVERY: Duration = Duration::from_secs(30);
const PINS: usize = 20;
const BURST: Duration = Duration::from_secs(10);
/// Reports start this long after the first polls.
const WARM_UP: Duration = Duration::from_secs(5);
/// The image the campaign phase moves every agent to.
const CAMPAIGN_IMAGE: &str = "registry.local:5000/team/app:2.0.0";
/// The server's flags: every simulated agent connects from 127.0.0.1, as
/// a fleet behind one NAT address or balancer would, so the per-address
/// connection cap is off.
const SERVER_FLAGS: &[&str] = &["--version-check-interval", "1h", "--max-connections-per-address", "0"];
/// Fleet view loads timed.
const PAGE_LOADS: usize = 20;

fn manifest(i: usize) -> String {
    format!(
        "version: 1\ndefaults:\n  drift_interval: 5m\ntargets:\n  - container: app-{i}\n    image: registry.local:5000/team/app:1.0.{}\n",
        i % 3
    )
}

fn report(i: usize, tag: &str) -> Value {
    report_of(i, &format!("registry.local:5000/team/app:{tag}"))
}

fn report_of(i: usize, image: &str) -> Value {
    let tag = image.rsplit_once(':').map_or("", |(_, t)| t);
    json!({
        "controller_version": "0.1.0",
        "controller": {"container": format!("ctl-{i}"), "image": "registry.local:5000/ops/container-upgrader:0.1.0"},
        "updated_at": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "targets": [{
            "target": format!("app-{i}"),
            "container": format!("app-{i}"),
            "image": image,
            "digest": "sha256:2f5e4c3b1a0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f",
            "version": tag,
            "desired": image,
            "action": "none",
            "reason": "up to date",
        }],
        "holds": [],
    })
}

fn event(i: usize, n: u64) -> Value {
    event_of(
        &format!("20261201T000000Z-{i:04}-{n:06}"),
        i,
        "registry.local:5000/team/app:1.0.0",
        "registry.local:5000/team/app:1.0.1",
    )
}

fn event_of(op_id: &str, i: usize, from: &str, to: &str) -> Value {
    json!({
        "op_id": op_id,
        "container": format!("app-{i}"),
        "from": from,
        "to": to,
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
    /// The image its container runs (the campaign phase changes it).
    running: Mutex<String>,
}

struct Shared {
    base: String,
    http: reqwest::Client,
    samples: Samples,
    requests: AtomicU64,
    stop: AtomicBool,
    /// Pinned agent index → when the pin was written.
    pinned: Mutex<BTreeMap<usize, Instant>>,
    /// Whether agents act on a new manifest (the campaign phase).
    respond: AtomicBool,
}

impl Shared {
    /// Sends `request`, timing it under `endpoint` when it succeeds.
    async fn timed(&self, endpoint: &'static str, request: reqwest::RequestBuilder) {
        let started = Instant::now();
        let Ok(answer) = request.send().await else { return };
        let status = answer.status();
        let bytes = answer.bytes().await.unwrap_or_default();
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status.is_success() || status.as_u16() == 304 {
            self.samples.add(endpoint, started.elapsed());
        } else {
            eprintln!("{endpoint}: {status} {}", String::from_utf8_lossy(&bytes));
        }
    }
}

async fn enrol(shared: &Shared, token: &str, i: usize) -> Option<Agent> {
    let body = json!({"token": token, "name": format!("bench-{i:04}"), "manifest": manifest(i)});
    let started = Instant::now();
    let answer = shared
        .http
        .post(format!("{}/v1/agent/enrol", shared.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
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
        running: Mutex::new(format!("registry.local:5000/team/app:1.0.{}", i % 3)),
    })
}

/// One agent's long-poll loop until stopped.
async fn poll(shared: Arc<Shared>, agent: Arc<Agent>) {
    let mut etag: Option<String> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let url = format!("{}/v1/agent/desired?wait=30", shared.base);
        let mut request =
            shared.http.get(url).bearer_auth(&agent.credential).timeout(Duration::from_secs(60));
        if let Some(tag) = &etag {
            request = request.header("If-None-Match", tag);
        }
        let started = Instant::now();
        let Ok(answer) = request.send().await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let status = answer.status().as_u16();
        let tag = answer.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = answer.bytes().await.unwrap_or_default();
        match status {
            200 if etag.is_none() => shared.samples.add("GET /v1/agent/desired (first)", started.elapsed()),
            200 => {
                let pinned = shared.pinned.lock().ok().and_then(|mut p| p.remove(&agent.i));
                if let Some(at) = pinned {
                    shared.samples.add("pin → poll answered (wake)", at.elapsed());
                }
                if shared.respond.load(Ordering::Relaxed) {
                    if let Some(image) = image_in(&String::from_utf8_lossy(&body)) {
                        tokio::spawn(upgrade(shared.clone(), agent.clone(), image));
                    }
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

/// The first `image:` of a manifest.
fn image_in(manifest: &str) -> Option<String> {
    manifest.lines().find_map(|l| {
        let value = l.trim_start().strip_prefix("image:")?;
        Some(value.split('#').next()?.trim().trim_matches(['"', '\'']).to_string())
    })
}

/// What a real agent does with a new image: swaps (at once here), sends
/// the op event, then reports the pass that shows the new image.
async fn upgrade(shared: Arc<Shared>, agent: Arc<Agent>, image: String) {
    let Some(from) = agent.running.lock().ok().map(|mut r| std::mem::replace(&mut *r, image.clone())) else {
        return;
    };
    if from == image {
        return;
    }
    static OPS: AtomicU64 = AtomicU64::new(0);
    let op_id = format!("20261201T010000Z-{:04}-{:06}", agent.i, OPS.fetch_add(1, Ordering::Relaxed));
    let body = event_of(&op_id, agent.i, &from, &image);
    let url = format!("{}/v1/agent/events", shared.base);
    let request =
        shared.http.post(url).bearer_auth(&agent.credential).header("Idempotency-Key", &op_id).json(&body);
    shared.timed("POST /v1/agent/events", request).await;
    let url = format!("{}/v1/agent/report", shared.base);
    let body = report_of(agent.i, &image);
    shared
        .timed("POST /v1/agent/report", shared.http.post(url).bearer_auth(&agent.credential).json(&body))
        .await;
}

/// One agent's reports (and sometimes an event, twice) until stopped.
async fn reports(shared: Arc<Shared>, agent: Arc<Agent>, every: Option<Duration>) {
    let mut n = 0u64;
    if let Some(every) = every {
        // An agent reports after its first pass, which follows its first
        // poll.
        let offset = WARM_UP + every.mul_f64((agent.i as f64 * 0.618_034).fract());
        tokio::time::sleep(offset).await;
    }
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        let url = format!("{}/v1/agent/report", shared.base);
        let body = report(agent.i, "1.0.0");
        shared
            .timed("POST /v1/agent/report", shared.http.post(url).bearer_auth(&agent.credential).json(&body))
            .await;
        if (agent.i as u64 + n).is_multiple_of(10) {
            let url = format!("{}/v1/agent/events", shared.base);
            let body = event(agent.i, n);
            let key = body["op_id"].as_str().unwrap_or_default().to_string();
            for _ in 0..2 {
                let request = shared
                    .http
                    .post(&url)
                    .bearer_auth(&agent.credential)
                    .header("Idempotency-Key", &key)
                    .json(&body);
                shared.timed("POST /v1/agent/events", request).await;
            }
        }
        match every {
            Some(every) => tokio::time::sleep(every).await,
            None => tokio::task::yield_now().await,
        }
    }
}

async fn admin(shared: Arc<Shared>, agents: Vec<Arc<Agent>>, secs: u64) {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let pin_every = Duration::from_secs(secs.max(PINS as u64) / PINS as u64);
    let mut next_pin = Instant::now() + Duration::from_secs(5);
    let mut next_list = Instant::now();
    let mut pins = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        if Instant::now() >= next_list {
            let url = format!("{}/v1/fleet/agents", shared.base);
            shared
                .timed("GET /v1/fleet/agents (admin)", shared.http.get(url).header("Authorization", &auth))
                .await;
            next_list += Duration::from_secs(5);
        }
        if pins < PINS && Instant::now() >= next_pin {
            let agent = &agents[(pins * 37) % agents.len()];
            let url = format!("{}/v1/fleet/agents/{}/targets/app-{}", shared.base, agent.id, agent.i);
            if let Ok(mut p) = shared.pinned.lock() {
                p.insert(agent.i, Instant::now());
            }
            let body = json!({"image": "registry.local:5000/team/app:1.1.0"});
            shared
                .timed(
                    "PUT …/targets/{t} (admin)",
                    shared.http.put(url).header("Authorization", &auth).json(&body),
                )
                .await;
            pins += 1;
            next_pin += pin_every;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn measure(label: &str, server: &FleetServer, db_size: impl Fn() -> u64) {
    let secs: u64 = std::env::var("FLEET_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let pid = server.pid().expect("server pid");
    let token_body = format!("{{\"uses\": {AGENTS}, \"expires_in\": \"1h\"}}");
    let answer = server.admin("POST", "/v1/fleet/enrolment-tokens", &token_body);
    assert_eq!(answer.status, 201, "{}", answer.text());
    let token: Value = serde_json::from_slice(&answer.body).expect("JSON");
    let token = token["token"].as_str().expect("token").to_string();

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    container_upgrader::tls::ensure_crypto_provider();
    let http = reqwest::Client::builder().pool_max_idle_per_host(2 * AGENTS).build().expect("client");
    let shared = Arc::new(Shared {
        base: server.url(),
        http,
        samples: Samples::default(),
        requests: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        pinned: Mutex::new(BTreeMap::new()),
        respond: AtomicBool::new(false),
    });
    println!("{label}: {AGENTS} agents, steady phase {secs} s");
    let (rss0, _, cpu0) = usage(pid);
    println!("  server at start: RSS {rss0:.1} MiB");

    // 1. Enrolment; like a real agent, each starts its long-poll as soon
    // as it is enrolled.
    let started = Instant::now();
    let (agents, polls): (Vec<Arc<Agent>>, Vec<_>) = runtime.block_on(async {
        let (mut agents, mut polls) = (Vec::new(), Vec::new());
        for chunk in (0..AGENTS).collect::<Vec<_>>().chunks(ENROL_AT_ONCE) {
            let tasks: Vec<_> = chunk
                .iter()
                .map(|&i| {
                    let (shared, token) = (shared.clone(), token.clone());
                    tokio::spawn(async move { enrol(&shared, &token, i).await })
                })
                .collect();
            for t in tasks {
                if let Ok(Some(a)) = t.await {
                    let a = Arc::new(a);
                    polls.push(tokio::spawn(poll(shared.clone(), a.clone())));
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
    shared.samples.print("enrol");
    assert_eq!(agents.len(), AGENTS, "every agent enrols");

    // 2. Steady state.
    shared.requests.store(0, Ordering::Relaxed);
    let (_, _, cpu_before) = usage(pid);
    let started = Instant::now();
    let mut peak_rss = 0f64;
    runtime.block_on(async {
        let mut tasks = polls;
        for a in &agents {
            tasks.push(tokio::spawn(reports(shared.clone(), a.clone(), Some(REPORT_EVERY))));
        }
        tasks.push(tokio::spawn(admin(shared.clone(), agents.clone(), secs)));
        let until = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_secs(1)).await;
            peak_rss = peak_rss.max(usage(pid).0);
        }
        shared.stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.abort();
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let (rss, hwm, cpu_after) = usage(pid);
    let requests = shared.requests.load(Ordering::Relaxed);
    println!(
        "  steady: {requests} requests in {elapsed:.0} s ({:.1}/s; polls answered at their timeout are counted, not timed); server CPU {:.1} s ({:.1}% of one core); RSS {rss:.1} MiB (peak sampled {peak_rss:.1}, HWM {hwm:.1})",
        requests as f64 / elapsed,
        cpu_after - cpu_before,
        100.0 * (cpu_after - cpu_before) / elapsed,
    );
    shared.samples.print("steady");

    // 3. Burst: every agent reports back to back.
    shared.stop.store(false, Ordering::Relaxed);
    shared.requests.store(0, Ordering::Relaxed);
    let (_, _, cpu_before) = usage(pid);
    let started = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> =
            agents.iter().map(|a| tokio::spawn(reports(shared.clone(), a.clone(), None))).collect();
        tokio::time::sleep(BURST).await;
        shared.stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let (rss, hwm, cpu_after) = usage(pid);
    let requests = shared.requests.load(Ordering::Relaxed);
    println!(
        "  burst: {requests} requests in {elapsed:.1} s = {:.0} requests/s sustained; server CPU {:.1} s; RSS {rss:.1} MiB (HWM {hwm:.1})",
        requests as f64 / elapsed,
        cpu_after - cpu_before,
    );
    shared.samples.print("burst");
    let trouble: Vec<String> = server
        .output()
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .take(10)
        .map(str::to_string)
        .collect();
    if !trouble.is_empty() {
        println!("  the server's first warnings and errors:\n    {}", trouble.join("\n    "));
    }

    // 4. A campaign over every agent; the polls run again, and answer.
    shared.stop.store(false, Ordering::Relaxed);
    shared.respond.store(true, Ordering::Relaxed);
    let (_, _, cpu_before) = usage(pid);
    let ids: Vec<&str> = agents.iter().map(|a| a.id.as_str()).collect();
    let body = json!({
        "name": "bench", "agents": ids, "target": "app-*", "image": CAMPAIGN_IMAGE,
        "canary": 1, "batch": "10%", "monitor": "5s", "delay": "0s", "deadline": "60s",
        "max_failure_ratio": 0.0, "failure_action": "pause",
        // The simulated agents' images live in no registry; pinning by
        // digest is one registry request per campaign.
        "pin_digest": false,
    });
    let (campaign, took, peak) = runtime.block_on(async {
        // The polls start again spread over 3 s, as agents that were
        // polling all along would be, and have their first answer (the
        // current manifest) before the campaign starts.
        let polls: Vec<_> = agents
            .iter()
            .enumerate()
            .map(|(n, a)| {
                let (shared, a) = (shared.clone(), a.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(3 * n as u64)).await;
                    poll(shared, a).await;
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(4)).await;
        let auth = format!("Bearer {ADMIN_TOKEN}");
        let started = Instant::now();
        let created: Value = shared
            .http
            .post(format!("{}/v1/fleet/campaigns", shared.base))
            .header("Authorization", &auth)
            .json(&body)
            .send()
            .await
            .expect("create the campaign")
            .json()
            .await
            .expect("JSON");
        let id =
            created["id"].as_str().unwrap_or_else(|| panic!("campaign not created: {created}")).to_string();
        let mut peak = 0f64;
        let campaign = loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            peak = peak.max(usage(pid).0);
            let c: Value = shared
                .http
                .get(format!("{}/v1/fleet/campaigns/{id}", shared.base))
                .header("Authorization", &auth)
                .send()
                .await
                .expect("campaign")
                .json()
                .await
                .expect("JSON");
            if c["state"] != "running" || started.elapsed() > Duration::from_secs(600) {
                break c;
            }
        };
        let took = started.elapsed();
        shared.stop.store(true, Ordering::Relaxed);
        for t in polls {
            t.abort();
        }
        (campaign, took, peak)
    });
    let (rss, hwm, cpu_after) = usage(pid);
    let states = campaign["agent_states"].as_array().cloned().unwrap_or_default();
    let succeeded = states.iter().filter(|a| a["state"] == "succeeded").count();
    let sent_once = states.iter().filter(|a| a["sends"] == 1).count();
    let upgraded =
        agents.iter().filter(|a| a.running.lock().is_ok_and(|r| r.as_str() == CAMPAIGN_IMAGE)).count();
    println!(
        "  campaign: {} over {} agents in {} waves took {:.1} s; {succeeded} succeeded, {sent_once} sent exactly once, {upgraded} running the new image; server CPU {:.1} s; RSS {rss:.1} MiB (peak sampled {peak:.1}, HWM {hwm:.1})",
        campaign["state"],
        states.len(),
        campaign["waves"].as_array().map_or(0, Vec::len),
        took.as_secs_f64(),
        cpu_after - cpu_before,
    );
    shared.samples.print("campaign");

    // 5. The fleet view with every agent.
    let loads = runtime.block_on(async {
        let http =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let login = http
            .post(format!("{}/login", shared.base))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("secret={ADMIN_TOKEN}"))
            .send()
            .await
            .expect("login");
        let cookie = login
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no session cookie: {}", login.status()));
        let mut loads = Vec::new();
        for _ in 0..PAGE_LOADS {
            let started = Instant::now();
            let answer =
                http.get(format!("{}/", shared.base)).header("Cookie", &cookie).send().await.expect("page");
            let status = answer.status();
            let page = answer.text().await.unwrap_or_default();
            loads.push(started.elapsed());
            // The list is paged: the first page and the count of all.
            let all = format!("of {},{:03} rows", agents.len() / 1000, agents.len() % 1000);
            assert!(status.is_success() && page.contains(&all), "the fleet view: {status}");
        }
        loads
    });
    let mut sorted = loads.clone();
    sorted.sort();
    println!(
        "  page: GET / (fleet view, {} agents) n={PAGE_LOADS} p50 {:.1} ms  max {:.1} ms",
        agents.len(),
        ms(sorted[PAGE_LOADS / 2]),
        ms(sorted[PAGE_LOADS - 1])
    );
    println!(
        "  database size: {:.1} MiB; server CPU over the whole run {:.1} s",
        db_size() as f64 / 1048576.0,
        cpu_after - cpu0
    );
}

fn main() {
    let run = TestRun::new("bench_fleet");
    let dir = run.write_file("fleet/db/.keep", "").parent().expect("dir").to_path_buf();
    let sqlite = format!("sqlite://{}", dir.join("fleet.db").display());
    // FLEET_BENCH_DB=postgres (or sqlite) runs one database only.
    let only = std::env::var("FLEET_BENCH_DB").unwrap_or_default();
    if only != "postgres" {
        let server = FleetServer::start(&run, &sqlite, SERVER_FLAGS);
        let size = || {
            std::fs::read_dir(&dir)
                .map(|d| d.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
                .unwrap_or(0)
        };
        measure("SQLite", &server, size);
    }
    if only == "sqlite" {
        return;
    }
    let postgres = TestPostgres::start();
    {
        let server = FleetServer::start(&run, &postgres.url, SERVER_FLAGS);
        let size = || postgres.psql("SELECT pg_database_size(current_database())").parse().unwrap_or(0);
        measure("PostgreSQL", &server, size);
    }
}
