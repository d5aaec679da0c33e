//! The fleet server under attack (issue 20), against the real binary: an
//! attacker without any credential trickles enrolment bodies over
//! thousands of connections while an admin and 50 agents go on working.
//!
//! Every client here is a raw tokio socket bound to its own loopback
//! source address before it connects — the attacker 127.0.0.2, the admin
//! 127.0.0.3, agent N 127.0.1.N — so per-address limits are tested on
//! one machine. No Docker needed: only the server's binary.
#![cfg(feature = "docker-tests")]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{FleetServer, TestRun, ADMIN_TOKEN};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Where the attacker connects from.
const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Where the admin connects from.
const ADMIN: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// The server's connection cap in these tests: far below the default so
/// the attacker can exceed it with a descriptor budget a test may use.
const MAX_CONNECTIONS: usize = 512;
/// The attacker's connections: three times the server's cap.
const ATTACK_SOCKETS: usize = 1536;
/// The attacker sends one body byte this often.
const TRICKLE_EVERY: Duration = Duration::from_secs(3);
/// The attacker connects again this long after the server let go.
const RECONNECT_AFTER: Duration = Duration::from_secs(5);
/// Simulated agents reporting during the attack.
const AGENTS: usize = 50;
/// How long the admin and the agents are measured under attack.
const MEASURED: Duration = Duration::from_secs(20);
/// What every answer to the admin and the agents must beat, at p99.
const P99_TARGET: Duration = Duration::from_millis(200);
/// One legitimate request may take this long before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Held by the tests that load the machine (the floods), so one does not
/// measure the other's load.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Agent `i`'s source address.
fn agent_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1, u8::try_from(i + 1).expect("fewer than 255 agents"))
}

/// A connection to `server` from `from`.
async fn connect(from: Ipv4Addr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(server).await
}

/// An HTTP/1.1 request with `Connection: close`.
fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: fleet\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// An answer: its status and body.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: String,
}

/// Sends `raw` from `from` and reads the answer to the end.
async fn send(from: Ipv4Addr, server: SocketAddr, raw: &[u8]) -> Result<Reply, String> {
    let exchange = async {
        let mut stream = connect(from, server).await.map_err(|e| format!("connect: {e}"))?;
        stream.write_all(raw).await.map_err(|e| format!("write: {e}"))?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("no answer: {text:?}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status: {head:?}"))?;
        Ok(Reply { status, body: body.to_string() })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {REQUEST_TIMEOUT:?}")))
}

fn socket_addr(server: &FleetServer) -> SocketAddr {
    server.addr.parse().expect("the server's address")
}

fn manifest(i: usize) -> String {
    format!("version: 1\ntargets:\n  - container: app-{i}\n    image: registry.local:5000/team/app:1.0.0\n")
}

fn report(i: usize) -> Vec<u8> {
    json!({
        "controller_version": "0.1.0",
        "targets": [{
            "target": format!("app-{i}"),
            "container": format!("app-{i}"),
            "image": "registry.local:5000/team/app:1.0.0",
            "version": "1.0.0",
            "action": "none",
            "reason": "up to date",
        }],
        "holds": [],
    })
    .to_string()
    .into_bytes()
}

/// An enrolment token for `uses` agents, made by the admin.
async fn enrolment_token(server: SocketAddr, uses: usize) -> String {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let body = json!({ "uses": uses }).to_string();
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let reply =
        send(ADMIN, server, &request("POST", "/v1/fleet/enrolment-tokens", &headers, body.as_bytes()))
            .await
            .expect("the admin makes a token");
    assert_eq!(reply.status, 201, "{reply:?}");
    let token: Value = serde_json::from_str(&reply.body).expect("JSON");
    token["token"].as_str().expect("the token").to_string()
}

/// Enrols agent `i` through the protocol (the token in the body, as every
/// agent so far sends it); its credential.
async fn enrol(server: SocketAddr, token: &str, i: usize) -> String {
    let body = json!({ "token": token, "name": format!("agent-{i}"), "manifest": manifest(i) }).to_string();
    let raw = request("POST", "/v1/agent/enrol", &[("Content-Type", "application/json")], body.as_bytes());
    let reply = send(agent_addr(i), server, &raw).await.expect("the agent enrols");
    assert_eq!(reply.status, 201, "{reply:?}");
    let answer: Value = serde_json::from_str(&reply.body).expect("JSON");
    answer["credential"].as_str().expect("a credential").to_string()
}

/// The head of the attacker's enrolment: a large declared body, no token.
const TRICKLE_HEAD: &[u8] =
    b"POST /v1/agent/enrol HTTP/1.1\r\nHost: fleet\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{";

/// What the attacker achieved.
#[derive(Default)]
struct Attack {
    stop: AtomicBool,
    /// Connections open from the attacker's side right now.
    open: AtomicUsize,
    /// The most open at once.
    most: AtomicUsize,
    /// Connections made in all.
    made: AtomicUsize,
}

/// One attacker socket: connects, declares a megabyte and sends a byte
/// every [`TRICKLE_EVERY`]; when the server lets go, connects again.
async fn trickle(server: SocketAddr, attack: Arc<Attack>) {
    while !attack.stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = connect(ATTACKER, server).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        attack.made.fetch_add(1, Ordering::Relaxed);
        let open = attack.open.fetch_add(1, Ordering::Relaxed) + 1;
        attack.most.fetch_max(open, Ordering::Relaxed);
        let mut sent = stream.write_all(TRICKLE_HEAD).await.is_ok();
        let mut buf = [0u8; 512];
        while sent && !attack.stop.load(Ordering::Relaxed) {
            tokio::select! {
                // Any answer (or a close) means the server let go.
                _ = stream.read(&mut buf) => break,
                () = tokio::time::sleep(TRICKLE_EVERY) => sent = stream.write_all(b" ").await.is_ok(),
            }
        }
        attack.open.fetch_sub(1, Ordering::Relaxed);
        drop(stream);
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

/// Latencies and failures of the legitimate clients.
#[derive(Default)]
struct Served {
    took: Mutex<Vec<Duration>>,
    failed: Mutex<Vec<String>>,
}

impl Served {
    async fn time(&self, what: &str, expect: u16, from: Ipv4Addr, server: SocketAddr, raw: &[u8]) {
        let started = Instant::now();
        let result = send(from, server, raw).await;
        let took = started.elapsed();
        match result {
            Ok(reply) if reply.status == expect => self.took.lock().expect("lock").push(took),
            Ok(reply) => {
                self.failed.lock().expect("lock").push(format!("{what}: {} {}", reply.status, reply.body))
            }
            Err(e) => self.failed.lock().expect("lock").push(format!("{what}: {e}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_enrolment_flood_locks_out_neither_the_admin_nor_the_agents() {
    let _alone = HEAVY.lock().await;
    let run = TestRun::new("attack-trickle");
    let max = MAX_CONNECTIONS.to_string();
    let db = format!("sqlite://{}", run.empty_dir("db").join("fleet.db").display());
    let server = FleetServer::start(&run, &db, &["--max-connections", &max]);
    let addr = socket_addr(&server);
    let token = enrolment_token(addr, AGENTS).await;
    let mut credentials = Vec::new();
    for i in 0..AGENTS {
        credentials.push(enrol(addr, &token, i).await);
    }

    let attack = Arc::new(Attack::default());
    // ATTACK_SOCKETS=0 measures the same traffic without the attack.
    let sockets = std::env::var("ATTACK_SOCKETS").ok().and_then(|v| v.parse().ok()).unwrap_or(ATTACK_SOCKETS);
    let attackers: Vec<_> = (0..sockets).map(|_| tokio::spawn(trickle(addr, attack.clone()))).collect();
    // Let the attacker take what it can before anyone else asks.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let served = Arc::new(Served::default());
    let until = Instant::now() + MEASURED;
    let admin = {
        let served = served.clone();
        tokio::spawn(async move {
            let auth = format!("Bearer {ADMIN_TOKEN}");
            let raw = request("GET", "/v1/fleet/agents", &[("Authorization", &auth)], b"");
            while Instant::now() < until {
                served.time("admin GET /v1/fleet/agents", 200, ADMIN, addr, &raw).await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let agents: Vec<_> = credentials
        .into_iter()
        .enumerate()
        .map(|(i, credential)| {
            let served = served.clone();
            tokio::spawn(async move {
                let auth = format!("Bearer {credential}");
                let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
                let raw = request("POST", "/v1/agent/report", &headers, &report(i));
                // Spread over the first two seconds, then every two seconds.
                tokio::time::sleep(Duration::from_millis(40 * i as u64)).await;
                while Instant::now() < until {
                    served.time(&format!("agent {i} report"), 204, agent_addr(i), addr, &raw).await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            })
        })
        .collect();
    let _ = admin.await;
    for agent in agents {
        let _ = agent.await;
    }
    attack.stop.store(true, Ordering::Relaxed);
    for attacker in &attackers {
        attacker.abort();
    }

    let mut took = served.took.lock().expect("lock").clone();
    let failed = served.failed.lock().expect("lock").clone();
    took.sort();
    let p99 = took.get((took.len().saturating_sub(1)) * 99 / 100).copied().unwrap_or(Duration::MAX);
    eprintln!(
        "attacker: {} connections made, at most {} open at once; served {} (p50 {:?}, p90 {:?}, p99 {p99:?}, max {:?}), failed {}",
        attack.made.load(Ordering::Relaxed),
        attack.most.load(Ordering::Relaxed),
        took.len(),
        took.get(took.len() / 2),
        took.get(took.len() * 9 / 10),
        took.last(),
        failed.len(),
    );
    assert!(
        failed.is_empty(),
        "{} requests failed under the attack, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(took.len() >= 300, "the admin and the agents were served: {}", took.len());
    assert!(p99 < P99_TARGET, "p99 {p99:?} under the attack, over {P99_TARGET:?}");
}

/// A server for the smaller tests, with an enrolment token for 10 agents.
async fn small_server(run: &TestRun, extra: &[&str]) -> (FleetServer, SocketAddr, String) {
    let db = format!("sqlite://{}", run.empty_dir("db").join("fleet.db").display());
    let server = FleetServer::start(run, &db, extra);
    let addr = socket_addr(&server);
    let token = enrolment_token(addr, 10).await;
    (server, addr, token)
}

/// Sends `head` and waits up to `within` for the server's first answer.
async fn answer_to_head(from: Ipv4Addr, addr: SocketAddr, head: &str, within: Duration) -> Option<String> {
    let mut stream = connect(from, addr).await.expect("a connection");
    stream.write_all(head.as_bytes()).await.expect("the head is sent");
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrolment_with_a_wrong_token_in_its_header_is_refused_before_its_body() {
    // Not beside a flood test: its timings are measured.
    let _alone = HEAVY.lock().await;
    let run = TestRun::new("attack-enrol-header");
    let (_server, addr, token) = small_server(&run, &[]).await;
    let head =
        "POST /v1/agent/enrol HTTP/1.1\r\nHost: fleet\r\nAuthorization: Bearer 0123456789abcdef0123.nope\r\n\
                Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n";
    let said = answer_to_head(ATTACKER, addr, head, Duration::from_secs(2)).await;
    let said = said.expect("an answer without the body being sent");
    assert!(said.starts_with("HTTP/1.1 401"), "{said}");
    assert!(said.to_ascii_lowercase().contains("connection: close"), "{said}");

    // The right token in the header enrols, with or without it in the body.
    for (i, body_token) in [(1, token.as_str()), (2, "")] {
        let body =
            json!({ "token": body_token, "name": format!("hdr-{i}"), "manifest": manifest(i) }).to_string();
        let auth = format!("Bearer {token}");
        let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
        let reply = send(agent_addr(i), addr, &request("POST", "/v1/agent/enrol", &headers, body.as_bytes()))
            .await
            .expect("an answer");
        assert_eq!(reply.status, 201, "{reply:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolments_without_a_header_token_keep_to_their_budget_and_others_are_served() {
    // Not beside a flood test: its timings are measured.
    let _alone = HEAVY.lock().await;
    let run = TestRun::new("attack-budget");
    let (_server, addr, token) = small_server(&run, &[]).await;
    // 32 trickles hold the unauthenticated budget...
    let mut held = Vec::new();
    for _ in 0..32 {
        let mut stream = connect(ATTACKER, addr).await.expect("a connection");
        stream.write_all(TRICKLE_HEAD).await.expect("the head");
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...so the next one is turned away at once, told when to come back.
    let head = std::str::from_utf8(TRICKLE_HEAD).expect("text");
    let said = answer_to_head(ATTACKER, addr, head, Duration::from_secs(2)).await.expect("an answer at once");
    assert!(said.starts_with("HTTP/1.1 429"), "{said}");
    let lower = said.to_ascii_lowercase();
    assert!(lower.contains("retry-after: ") && lower.contains("connection: close"), "{said}");
    // An agent with the token in its header, and the admin, are not.
    let body = json!({ "token": token, "name": "fresh", "manifest": manifest(3) }).to_string();
    let auth = format!("Bearer {token}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let reply = send(agent_addr(3), addr, &request("POST", "/v1/agent/enrol", &headers, body.as_bytes()))
        .await
        .expect("an answer");
    assert_eq!(reply.status, 201, "{reply:?}");
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let reply = send(ADMIN, addr, &request("GET", "/v1/fleet/agents", &[("Authorization", &admin)], b""))
        .await
        .expect("an answer");
    assert_eq!(reply.status, 200, "{reply:?}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_stalls_its_report_body_is_cut_off_within_seconds() {
    // Not beside a flood test: its timings are measured.
    let _alone = HEAVY.lock().await;
    let run = TestRun::new("attack-stall");
    let (_server, addr, token) = small_server(&run, &[]).await;
    let credential = enrol(addr, &token, 4).await;
    let head = format!(
        "POST /v1/agent/report HTTP/1.1\r\nHost: fleet\r\nAuthorization: Bearer {credential}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{"
    );
    let started = Instant::now();
    let said = answer_to_head(agent_addr(4), addr, &head, Duration::from_secs(20)).await;
    let took = started.elapsed();
    // Not 90 s (the request timeout): the body's stall timeout.
    assert!(took < Duration::from_secs(10), "held for {took:?}: {said:?}");
    assert!(!said.unwrap_or_default().starts_with("HTTP/1.1 2"), "not accepted");
}

/// The argon2id PHC hash of `password` with memory cost `m` KiB, t=1, p=1.
fn password_hash(password: &str, m: u32) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(m, 1, 1, None).expect("argon2 parameters");
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").expect("a salt");
    argon.hash_password(password.as_bytes(), &salt).expect("hashing").to_string()
}

/// A server whose admin password is `password` (its hash in a 0600 file).
fn with_password(run: &TestRun, password: &str) -> (FleetServer, std::path::PathBuf) {
    let file = run.write_file("fleet/admin.password", password_hash(password, 4096));
    common::set_mode(&file, 0o600);
    let db = format!("sqlite://{}", run.empty_dir("db").join("fleet.db").display());
    let path = file.to_string_lossy().to_string();
    (FleetServer::start(run, &db, &["--admin-password-file", &path]), file)
}

fn login_request(secret: &str) -> Vec<u8> {
    let body = format!("secret={secret}");
    request("POST", "/login", &[("Content-Type", "application/x-www-form-urlencoded")], body.as_bytes())
}

const RIGHT_PASSWORD: &str = "the right password";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_password_gets_in_within_a_second_behind_200_parallel_wrong_logins() {
    let _alone = HEAVY.lock().await;
    let run = TestRun::new("attack-login");
    let (server, _) = with_password(&run, RIGHT_PASSWORD);
    let addr = socket_addr(&server);
    let stop = Arc::new(AtomicBool::new(false));
    let statuses = Arc::new(Mutex::new(std::collections::BTreeMap::<u16, usize>::new()));
    // GUESSERS=0 times the same logins without the attack.
    let guessers = std::env::var("GUESSERS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let guessers: Vec<_> = (0..guessers)
        .map(|n| {
            let (stop, statuses) = (stop.clone(), statuses.clone());
            tokio::spawn(async move {
                let mut guess = 0;
                while !stop.load(Ordering::Relaxed) {
                    guess += 1;
                    let status =
                        match send(ATTACKER, addr, &login_request(&format!("guess-{n}-{guess}"))).await {
                            Ok(reply) => reply.status,
                            Err(_) => 0,
                        };
                    *statuses.lock().expect("lock").entry(status).or_default() += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The admin on a thread of its own: its time is the server's, not a
    // turn in this process's busy runtime behind the guessers.
    let admin = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async {
            let mut took = Vec::new();
            for _ in 0..5 {
                let started = Instant::now();
                let reply = send(ADMIN, addr, &login_request(RIGHT_PASSWORD)).await;
                took.push(started.elapsed());
                let reply = reply.expect("the admin's login is answered");
                assert_eq!(reply.status, 303, "the right password logs in: {}", reply.body);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            took
        })
    });
    let took = tokio::task::spawn_blocking(move || admin.join()).await.expect("joined").expect("the admin");
    stop.store(true, Ordering::Relaxed);
    for guesser in guessers {
        let _ = guesser.await;
    }
    let statuses = statuses.lock().expect("lock").clone();
    eprintln!("the admin's logins took {took:?}; the guessers got {statuses:?} (status: count)");
    let slowest = took.iter().max().copied().unwrap_or_default();
    assert!(slowest < Duration::from_secs(1), "the right password took {slowest:?} behind the attack");
    // Answers 401 are guesses the server checked: a handful, not thousands.
    let checked = statuses.get(&401).copied().unwrap_or(0);
    assert!(checked <= 12, "{checked} guesses checked in about 9 s from one address");
    assert!(statuses.get(&429).copied().unwrap_or(0) > 0, "the others were turned away: {statuses:?}");
}

#[test]
fn a_password_hash_over_the_memory_cap_is_refused_at_start() {
    let run = TestRun::new("attack-hash-cap");
    // A real hash with its memory cost raised to 4 GiB: never computed.
    let phc = password_hash("pw", 1024).replace("m=1024", "m=4194304");
    let file = run.write_file("fleet/admin.password", &phc);
    common::set_mode(&file, 0o600);
    let token = run.write_file("fleet/admin.token", ADMIN_TOKEN);
    common::set_mode(&token, 0o600);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_container-upgrader-server"))
        .args(["--listen", &common::free_addr()])
        .arg("--admin-token-file")
        .arg(&token)
        .arg("--admin-password-file")
        .arg(&file)
        .arg("--state-dir")
        .arg(run.empty_dir("state"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting the server");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    let status = status.unwrap_or_else(|| panic!("the server started with m=4 GiB: {stderr}"));
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("m=4194304") && stderr.contains("256 MiB"), "a clear message: {stderr}");
}

/// The CSRF token of the page at `path` for `cookie`.
fn csrf_of(server: &FleetServer, cookie: &str, path: &str) -> String {
    let (status, html) = server.page(cookie, path);
    assert_eq!(status, 200, "{html}");
    let at = html.find(r#"name="csrf" value=""#).expect("a CSRF field") + r#"name="csrf" value=""#.len();
    html[at..].split('"').next().expect("its value").to_string()
}

#[test]
fn sessions_end_when_the_admin_token_or_password_changes() {
    let run = TestRun::new("attack-sessions");
    let (mut server, password_file) = with_password(&run, RIGHT_PASSWORD);
    let cookie = server.login(ADMIN_TOKEN);
    assert_eq!(server.page(&cookie, "/").0, 200);
    server.restart();
    assert_eq!(server.page(&cookie, "/").0, 200, "a restart with the same credentials keeps the session");

    std::fs::write(&password_file, password_hash("a new password", 4096)).expect("a new password");
    server.restart();
    assert_eq!(server.page(&cookie, "/").0, 303, "a new password ends the old session");

    let cookie = server.login("a new password");
    assert_eq!(server.page(&cookie, "/").0, 200);
    std::fs::write(server.admin_token_file(), "a-new-admin-token-for-the-attack-test").expect("a new token");
    server.restart();
    assert_eq!(server.page(&cookie, "/").0, 303, "a new admin token ends the old session");
}

#[test]
fn log_out_everywhere_ends_every_session() {
    let run = TestRun::new("attack-everywhere");
    let db = format!("sqlite://{}", run.empty_dir("db").join("fleet.db").display());
    let server = FleetServer::start(&run, &db, &[]);
    let (here, there) = (server.login(ADMIN_TOKEN), server.login(ADMIN_TOKEN));
    let csrf = csrf_of(&server, &here, "/logout-everywhere");
    let post = |cookie: &str, body: &str| {
        let headers = [("Cookie", cookie), ("Content-Type", "application/x-www-form-urlencoded")];
        common::http(&server.addr, "POST", "/logout-everywhere", &headers, body.as_bytes())
    };
    assert_eq!(post(&here, "csrf=wrong").status, 403, "the CSRF token is needed");
    assert_eq!(server.page(&there, "/").0, 200);
    let done = post(&here, &format!("csrf={csrf}"));
    assert_eq!(done.status, 303, "{}", done.text());
    assert_eq!(server.page(&here, "/").0, 303, "this browser is logged out");
    assert_eq!(server.page(&there, "/").0, 303, "and every other");
    // The admin API does the same.
    let again = server.login(ADMIN_TOKEN);
    let ended = server.admin("DELETE", "/v1/fleet/sessions", "");
    assert_eq!(ended.status, 200, "{}", ended.text());
    assert_eq!(server.page(&again, "/").0, 303);
}
