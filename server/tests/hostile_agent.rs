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
    let answer = http(
        &server.addr,
        "POST",
        "/v1/agent/enrol",
        &[("Content-Type", "application/json"), ("Authorization", &auth)],
        body.as_bytes(),
    );
    assert_eq!(answer.status, 201, "{}", answer.text());
    let enrolled: Value = serde_json::from_slice(&answer.body).expect("JSON");
    let credential = enrolled["credential"].as_str().expect("a credential").to_string();
    (server, credential)
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
