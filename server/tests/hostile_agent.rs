//! An enrolled agent turned hostile, against the real server binary: it
//! reports images on hosts its manifest does not name (the server must
//! not fetch them: no request forgery), and it floods events with 1 MB
//! reasons (the server's disk must not fill). Each fails on a server
//! without the bounds of issue 20.
#![cfg(feature = "docker-tests")]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{http, FleetServer, TestRun};
use serde_json::{json, Value};

/// A listener that counts the connections made to it (and answers none):
/// a host the server must never contact.
fn counting_host() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stream.is_ok() {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (addr, seen)
}

/// An enrolled agent whose manifest names `image`; (server, credential).
fn agent(run: &TestRun, image: &str, extra: &[&str]) -> (FleetServer, String) {
    let db = format!("sqlite://{}", run.empty_dir("db").join("fleet.db").display());
    let server = FleetServer::start(run, &db, extra);
    let token = server.enrolment_token(run, &[]);
    let manifest = format!("version: 1\ntargets:\n  - container: app\n    image: {image}\n");
    let body = json!({ "token": token, "name": "hostile", "manifest": manifest }).to_string();
    let auth = format!("Bearer {token}");
    let answer = enrol(&server, &auth, &body);
    assert_eq!(answer.status, 201, "{}", answer.text());
    let enrolled: Value = serde_json::from_slice(&answer.body).expect("JSON");
    let credential = enrolled["credential"].as_str().expect("a credential").to_string();
    (server, credential)
}

/// `POST /v1/agent/enrol` with the token in the header as agents send it.
fn enrol(server: &FleetServer, auth: &str, body: &str) -> common::Answer {
    http(
        &server.addr,
        "POST",
        "/v1/agent/enrol",
        &[("Content-Type", "application/json"), ("Authorization", auth)],
        body.as_bytes(),
    )
}

fn post(server: &FleetServer, credential: &str, path: &str, body: &Value) -> common::Answer {
    let auth = format!("Bearer {credential}");
    http(
        &server.addr,
        "POST",
        path,
        &[("Content-Type", "application/json"), ("Authorization", &auth)],
        body.to_string().as_bytes(),
    )
}

#[test]
fn an_agent_cannot_make_the_server_fetch_hosts_its_manifest_does_not_name() {
    let run = TestRun::new("hostile-ssrf");
    let (internal, contacted) = counting_host();
    let (server, credential) = agent(
        &run,
        "registry.invalid/team/app:1.0.0",
        &["--version-check-interval", "1s", "--registry-timeout", "2s"],
    );
    let target = |name: &str, image: &str| {
        json!({ "target": name, "container": name, "image": image, "version": "1.0.0",
                "action": "up_to_date", "reason": "" })
    };
    let report = json!({
        "controller_version": "0.1.0",
        "targets": [
            target("app", "registry.invalid/team/app:1.0.0"),
            target("probe", &format!("{internal}/secret:1.0.0")),
            target("metadata", "169.254.169.254/latest:1.0.0"),
        ],
    });
    let answer = post(&server, &credential, "/v1/agent/report", &report);
    assert_eq!(answer.status, 204, "{}", answer.text());
    // Several version checks pass (every second, and one for the new
    // repositories at once).
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(contacted.load(Ordering::SeqCst), 0, "the server connected to a host no manifest names");
    let repos = server.get_json("/v1/fleet/repositories").to_string();
    assert!(!repos.contains("secret") && !repos.contains("169.254.169.254"), "{repos}");
    assert!(repos.contains("registry.invalid/team/app"), "what the manifest names is checked: {repos}");
}

#[test]
fn an_agent_flooding_events_with_megabyte_reasons_does_not_fill_the_disk() {
    let run = TestRun::new("hostile-disk");
    let (server, credential) = agent(&run, "registry.invalid/team/app:1.0.0", &[]);
    let reason = "x".repeat(1_000_000);
    let (mut stored, mut refused) = (0, 0);
    for i in 0..400 {
        let event = json!({
            "op_id": format!("op-{i}"), "container": "app", "from": "registry.invalid/team/app:1.0.0",
            "to": "registry.invalid/team/app:1.1.0", "outcome": "rolled_back", "reason": reason,
            "started_at": "2026-01-01T00:00:00Z", "ended_at": "2026-01-01T00:00:05Z",
            "duration_ms": 5000, "controller_version": "0.1.0",
        });
        match post(&server, &credential, "/v1/agent/events", &event).status {
            204 => stored += 1,
            429 => refused += 1,
            other => panic!("event {i}: {other}"),
        }
    }
    assert!(stored >= 300 && refused > 0, "its burst, then refused: {stored} stored, {refused} refused");
    let dir = run.empty_dir("db");
    let bytes: u64 = std::fs::read_dir(&dir)
        .expect("the database's directory")
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert!(bytes < 30_000_000, "{stored} events of 1 MB reasons took {bytes} bytes on disk");
    // The agent's page is not megabytes of HTML either.
    let agents = server.agents();
    let id = agents[0]["id"].as_str().expect("an id");
    let detail = server.get_json(&format!("/v1/fleet/agents/{id}")).to_string();
    assert!(detail.len() < 1_000_000, "the agent's detail is {} bytes", detail.len());
}

/// A registry on loopback whose tag lists take `delay`.
fn slow_registry(delay: Duration) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                std::thread::sleep(delay);
                let name = first.split_whitespace().nth(1).unwrap_or("/").trim_start_matches("/v2/");
                let name = name.trim_end_matches("/tags/list").to_string();
                let body = json!({ "name": name, "tags": ["1.0.0", "1.1.0"] }).to_string();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes());
            });
        }
    });
    addr
}

#[test]
fn one_slow_registry_delays_only_its_own_repositories() {
    let run = TestRun::new("hostile-slow-registry");
    let slow = slow_registry(Duration::from_secs(3));
    // `localhost` sorts after `127.0.0.1`: checked one at a time, the fast
    // repository would wait for the six slow ones (18 s).
    let fast = slow_registry(Duration::ZERO).replace("127.0.0.1", "localhost");
    let mut images: Vec<String> = (0..6).map(|i| format!("{slow}/slow{i}:1.0.0")).collect();
    images.push(format!("{fast}/quick:1.0.0"));
    let mut manifest = "version: 1\ntargets:\n".to_string();
    let mut targets = Vec::new();
    for (i, image) in images.iter().enumerate() {
        manifest.push_str(&format!("  - container: c{i}\n    image: {image}\n"));
        targets.push(json!({ "target": format!("c{i}"), "container": format!("c{i}"), "image": image,
                             "version": "1.0.0", "action": "up_to_date", "reason": "" }));
    }
    let db = format!("sqlite://{}", run.empty_dir("db").join("fleet.db").display());
    let server = FleetServer::start(&run, &db, &["--version-check-interval", "1h"]);
    let token = server.enrolment_token(&run, &[]);
    let auth = format!("Bearer {token}");
    let body = json!({ "token": token, "name": "many", "manifest": manifest }).to_string();
    let answer = enrol(&server, &auth, &body);
    assert_eq!(answer.status, 201, "{}", answer.text());
    let enrolled: Value = serde_json::from_slice(&answer.body).expect("JSON");
    let credential = enrolled["credential"].as_str().expect("a credential").to_string();
    // The report brings seven repositories never checked: a check starts.
    let started = Instant::now();
    let report = json!({ "controller_version": "0.1.0", "targets": targets });
    assert_eq!(post(&server, &credential, "/v1/agent/report", &report).status, 204);
    let quick = format!("{fast}/quick");
    let listed = |name: &str| {
        let repos = server.get_json("/v1/fleet/repositories");
        repos.as_array().into_iter().flatten().any(|r| r["repository"] == name && r["newest"] == "1.1.0")
    };
    let mut fast_after = None;
    while started.elapsed() < Duration::from_secs(30) {
        if listed(&quick) {
            fast_after = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let fast_after = fast_after.expect("the fast repository is listed");
    assert!(
        fast_after < Duration::from_secs(3),
        "the fast registry waited {fast_after:?} behind the slow one"
    );
    let slow0 = format!("{slow}/slow0");
    while !listed(&slow0) && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(listed(&slow0), "the slow ones are listed too, in their own time");
}

#[test]
fn the_database_file_is_private_and_a_file_that_is_not_one_is_named() {
    use std::os::unix::fs::PermissionsExt;
    let run = TestRun::new("hostile-db-file");
    let path = run.empty_dir("db").join("fleet.db");
    let server = FleetServer::start(&run, &format!("sqlite://{}", path.display()), &[]);
    let mode = std::fs::metadata(&path).expect("the database").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the SQLite file the server creates");
    // Every answer says nosniff and no-store, the 404 fallback too.
    for route in ["/v1/fleet/agents", "/no/such/route"] {
        let auth = format!("Bearer {}", common::ADMIN_TOKEN);
        let answer = http(&server.addr, "GET", route, &[("Authorization", &auth)], b"");
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"), "{route}");
        assert_eq!(answer.header("cache-control"), Some("no-store"), "{route}");
    }
    // Names that read other than they are, refused at enrolment.
    let token = server.enrolment_token(&run, &[]);
    let manifest = "version: 1\ntargets:\n  - container: app\n    image: registry.invalid/app:1.0.0\n";
    let body = json!({ "token": token, "name": "host\u{202E}1-bew", "manifest": manifest }).to_string();
    let auth = format!("Bearer {token}");
    let answer = enrol(&server, &auth, &body);
    assert_eq!(answer.status, 422, "{}", answer.text());
    assert!(answer.text().contains("bidirectional"), "{}", answer.text());
    drop(server);

    // A file that is not a database: the start says so, and stops.
    let garbage =
        run.write_file("garbage/fleet.db", "this is not a database, it is a note about one\n".repeat(100));
    let token_file = run.write_file("garbage/admin.token", common::ADMIN_TOKEN);
    let state = run.empty_dir("garbage-state");
    let db = format!("sqlite://{}", garbage.display());
    let (token_file, state) = (token_file.display().to_string(), state.display().to_string());
    let out = run.server_cli(&[
        "--listen",
        "127.0.0.1:0",
        "--db",
        &db,
        "--admin-token-file",
        &token_file,
        "--state-dir",
        &state,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("is not an SQLite database"), "{stderr}");
    assert!(!stderr.contains("pool timed out"), "{stderr}");
}

/// `policy.verify` key files name files on the agent's host: the server
/// never opens them, so an agent cannot read or probe the server's disk
/// through its manifest (a file that exists here and is no key would be
/// refused as "not a public key" if it were read), and an agent with a key
/// file can enrol at all.
#[test]
fn an_agents_key_file_paths_are_never_opened_on_the_server() {
    let run = TestRun::new("hostile_key_paths");
    let db = format!("sqlite://{}", run.empty_dir("db").join("fleet.db").display());
    let server = FleetServer::start(&run, &db, &[]);
    let here = run.write_file(
        "server-secret.pem",
        "-----BEGIN PRIVATE KEY-----\nnot for agents\n-----END PRIVATE KEY-----\n",
    );
    for (name, path) in [("probe", here.display().to_string()), ("relative", "cosign.pub".to_string())] {
        let token = server.enrolment_token(&run, &[]);
        let manifest = format!(
            "version: 1\npolicy:\n  verify:\n    keys: [\"{path}\"]\ntargets:\n  - container: app\n    image: 127.0.0.1:5000/app:1\n"
        );
        let body = json!({ "token": token, "name": name, "manifest": manifest }).to_string();
        let answer = enrol(&server, &format!("Bearer {token}"), &body);
        assert_eq!(answer.status, 201, "{name}: {}", answer.text());
        assert!(!answer.text().contains("PRIVATE"), "{}", answer.text());
    }
    // An inline key is still checked where it is: a bad one is refused.
    let token = server.enrolment_token(&run, &[]);
    let manifest = "version: 1\npolicy:\n  verify:\n    keys: [\"-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----\"]\ntargets:\n  - container: app\n    image: 127.0.0.1:5000/app:1\n";
    let body = json!({ "token": token, "name": "inline", "manifest": manifest }).to_string();
    let answer = enrol(&server, &format!("Bearer {token}"), &body);
    assert_eq!(answer.status, 422, "{}", answer.text());
    assert!(answer.text().contains("policy.verify.keys[0]"), "{}", answer.text());
}
