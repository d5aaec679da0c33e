//! Notifications across a server crash, against the real binary: a
//! webhook declared in `--notifications-file` points at a loopback port
//! where nothing listens; the server makes events through its real paths
//! ("send test" calls, an agent's failed ops), fails to deliver them, is
//! SIGKILLed and started again; only then does a receiver listen (and
//! refuses its first request). Every event must arrive, in the order it
//! was made, at least once, each with its `Idempotency-Key` and a valid
//! HMAC signature. No Docker needed.
#![cfg(feature = "docker-tests")]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_addr, http, FleetServer, TestPostgres, TestRun};
use serde_json::{json, Value};

const SECRET: &str = "notify-test-secret-0123456789";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// An HTTP receiver on `addr` recording every POST; it answers 503 to
/// the first `refuse` requests, then 200. Stops with the test process.
fn receiver(addr: &str, refuse: usize) -> Arc<Mutex<Vec<Received>>> {
    let listener = TcpListener::bind(addr).expect("the receiver binds the sink's port");
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let seen = got.clone();
    std::thread::spawn(move || {
        let mut answered = 0usize;
        for stream in listener.incoming().map_while(Result::ok) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = BufReader::new(&stream);
            let mut headers = Vec::new();
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.trim_end().split_once(':') {
                    headers.push((k.trim().to_string(), v.trim().to_string()));
                }
            }
            let length = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            answered += 1;
            let status = if answered <= refuse { "503 Service Unavailable" } else { "200 OK" };
            if answered > refuse {
                seen.lock().expect("lock").push(Received { headers, body });
            }
            let mut stream = &stream;
            let _ = stream.write_all(
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes(),
            );
        }
    });
    got
}

fn sign(body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let hex: String = ring::hmac::sign(&key, body).as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn sinks(server: &FleetServer) -> Vec<Value> {
    server.get_json("/v1/fleet/notifications").as_array().cloned().unwrap_or_default()
}

/// Waits until the one sink's backlog is `n`.
fn wait_backlog(server: &FleetServer, n: i64) {
    common::wait_for(&format!("a backlog of {n}"), Duration::from_secs(20), || {
        sinks(server).first().is_some_and(|s| s["backlog"] == n)
    });
}

fn op_event(op: &str, outcome: &str) -> Value {
    json!({
        "op_id": op, "container": "app", "from": "127.0.0.1:5000/app:1.0.0", "to": "127.0.0.1:5000/app:1.1.0",
        "outcome": outcome, "reason": "health: exited with 4", "started_at": "2026-01-01T00:00:00Z",
        "ended_at": "2026-01-01T00:00:05Z", "duration_ms": 5000, "controller_version": "0.1.0",
    })
}

#[test]
fn a_receiver_down_across_a_server_crash_gets_every_event_in_order_signed_with_its_key() {
    let run = TestRun::new("notify_restart");
    let db = format!("sqlite://{}", run.empty_dir("db").join("fleet.db").display());
    across_a_crash(&run, &db);
}

#[test]
fn on_postgresql_too_a_receiver_down_across_a_crash_gets_every_event_in_order() {
    let run = TestRun::new("notify_restart_pg");
    let postgres = TestPostgres::start();
    across_a_crash(&run, &postgres.url);
    drop(postgres);
}

/// Events made while the sink is down, a SIGKILL and a restart, then a
/// receiver: every event, in order, keyed and signed.
fn across_a_crash(run: &TestRun, db: &str) {
    let sink_addr = free_addr();
    let file = run.write_file(
        "fleet/notifications.yaml",
        format!(
            "sinks:\n  - name: ops\n    kind: webhook\n    url: http://{sink_addr}/hook\n    secret_file: hook.secret\n"
        ),
    );
    run.write_file("fleet/hook.secret", format!("{SECRET}\n"));
    let file_arg = file.to_string_lossy().to_string();
    let mut server = FleetServer::start(run, db, &["--notifications-file", &file_arg]);
    let listed = sinks(&server);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["secret"], "set");
    assert!(!listed.iter().any(|s| s.to_string().contains(SECRET)), "the secret is never shown");
    let sink_id = listed[0]["id"].as_str().expect("an id").to_string();

    // An agent whose failed ops make events.
    let token = server.enrolment_token(run, &[]);
    let manifest = "version: 1\ntargets:\n  - container: app\n    image: 127.0.0.1:5000/app:1.0.0\n";
    let body = json!({ "token": token, "name": "edge-1", "manifest": manifest }).to_string();
    let answer = http(
        &server.addr,
        "POST",
        "/v1/agent/enrol",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(answer.status, 201, "{}", answer.text());
    let credential = serde_json::from_slice::<Value>(&answer.body).expect("JSON")["credential"]
        .as_str()
        .expect("a credential")
        .to_string();
    let auth = format!("Bearer {credential}");

    // Five events of two kinds, each waited for so their order is known.
    let mut expected: Vec<String> = Vec::new();
    let test = |server: &FleetServer| -> String {
        let answer = server.admin("POST", &format!("/v1/fleet/notifications/{sink_id}/test"), "");
        assert_eq!(answer.status, 202, "{}", answer.text());
        serde_json::from_slice::<Value>(&answer.body).expect("JSON")["event"]
            .as_str()
            .expect("id")
            .to_string()
    };
    let fail_op = |server: &FleetServer, op: &str| {
        let body = op_event(op, "rolled_back").to_string();
        let headers = [("Content-Type", "application/json"), ("Authorization", auth.as_str())];
        let answer = http(&server.addr, "POST", "/v1/agent/events", &headers, body.as_bytes());
        assert!(answer.status / 100 == 2, "{}", answer.text());
    };
    expected.push(format!("test:{}", test(&server)));
    wait_backlog(&server, 1);
    fail_op(&server, "op-1");
    expected.push("agent.op_failed:op-1".into());
    wait_backlog(&server, 2);
    expected.push(format!("test:{}", test(&server)));
    wait_backlog(&server, 3);
    fail_op(&server, "op-2");
    expected.push("agent.op_failed:op-2".into());
    wait_backlog(&server, 4);
    expected.push(format!("test:{}", test(&server)));
    wait_backlog(&server, 5);

    // Nothing listens: tries fail and are visible.
    common::wait_for("failed tries", Duration::from_secs(20), || {
        sinks(&server)
            .first()
            .is_some_and(|s| s["attempts"].as_i64().unwrap_or(0) >= 2 && s["last_error"].is_string())
    });
    server.kill();
    server.restart();
    assert_eq!(sinks(&server)[0]["backlog"], 5, "the outbox survived the crash");
    std::thread::sleep(Duration::from_secs(1));

    let got = receiver(&sink_addr, 1);
    let deadline = Instant::now() + Duration::from_secs(120);
    let order = loop {
        let received = got.lock().expect("lock").clone();
        let mut order: Vec<String> = Vec::new();
        for r in &received {
            let event: Value = serde_json::from_slice(&r.body).expect("a JSON body");
            let id = event["id"].as_str().expect("an id").to_string();
            assert_eq!(r.header("Idempotency-Key"), Some(id.as_str()), "the key is the event's id");
            assert_eq!(
                r.header("X-Container-Upgrader-Signature"),
                Some(sign(&r.body).as_str()),
                "a valid HMAC"
            );
            let key = match event["kind"].as_str() {
                Some("test") => format!("test:{id}"),
                Some("agent.op_failed") => {
                    format!("agent.op_failed:{}", event["op"]["op_id"].as_str().unwrap_or(""))
                }
                other => panic!("an unexpected event {other:?}: {event}"),
            };
            assert!(event["summary"].as_str().is_some_and(|s| !s.is_empty()), "{event}");
            if !order.contains(&key) {
                order.push(key);
            }
        }
        if order.len() >= expected.len() || Instant::now() > deadline {
            break order;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        order,
        expected,
        "every event, once it is back, in the order made\nserver: {}",
        server.output()
    );
    common::wait_for("an empty backlog", Duration::from_secs(10), || {
        sinks(&server).first().is_some_and(|s| s["backlog"] == 0 && s["last_delivered_at"].is_string())
    });
    let cookie = server.login(common::ADMIN_TOKEN);
    let (status, page) = server.page(&cookie, "/notifications");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(">ops<") && page.contains("from the file") && page.contains("up to date"),
        "{page}"
    );
    assert!(!page.contains(SECRET), "the page never shows the secret");
    let file_sink = server.admin("DELETE", &format!("/v1/fleet/notifications/{sink_id}"), "");
    assert_eq!(file_sink.status, 409, "a file's sink is not removed through the API: {}", file_sink.text());

    // The CLI: list, add, remove.
    let token_file = server.admin_token_file().to_string_lossy().to_string();
    let url = server.url();
    let cli = |args: &[&str]| -> String {
        let mut full = vec!["fleet", "--server", &url, "--admin-token-file", &token_file, "notifications"];
        full.extend_from_slice(args);
        let out = run.server_cli(&full);
        assert!(
            out.status.success(),
            "fleet notifications {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(cli(&["list"]).contains("ops"));
    let phone_url = format!("http://{}/topic", free_addr());
    let id = cli(&["add", "phone", "--kind", "ntfy", "--url", &phone_url, "--event", "agent.offline"]);
    assert!(cli(&["list"]).contains("phone"));
    cli(&["remove", id.trim()]);
    assert!(!cli(&["list"]).contains("phone"));
}

#[test]
fn a_bad_notifications_file_stops_the_server_at_its_line_and_column() {
    let run = TestRun::new("notify_bad_file");
    let file = run.write_file(
        "fleet/notifications.yaml",
        "sinks:\n  - name: ops\n    kind: webhook\n    url: gopher://h/x\n    secret: 0123456789abcdef0\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_container-upgrader-server"))
        .args(["--listen", &free_addr(), "--notifications-file"])
        .arg(&file)
        .arg("--state-dir")
        .arg(run.empty_dir("state"))
        .output()
        .expect("the server runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("notifications.yaml:2:11") && stderr.contains("only http:// and https://"),
        "{stderr}"
    );
}
