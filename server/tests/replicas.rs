//! Three servers on one PostgreSQL behind HAProxy, started by the
//! README's command (`examples/server/ha/up.sh`, Debian's haproxy and a
//! throw-away PostgreSQL cluster): agents enrol, poll and report through
//! the balancer, whichever replica answers; a campaign goes on when the
//! replica running it is killed mid-way, taken over by another, and no
//! agent is sent its step twice. The agents here are simulated over HTTP
//! (what a controller sends); the agent side is the other tests'.
#![cfg(feature = "docker-tests")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_container-upgrader-server");
const REG: &str = "127.0.0.1:5000/app";
const AGENTS: usize = 6;

/// The three replicas and HAProxy of `up.sh`, stopped by `down.sh` when
/// dropped (also on failure).
struct Ha {
    dir: tempfile::TempDir,
    port: u16,
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/server/ha").join(name)
}

/// Four free consecutive ports (HAProxy and three replicas) and one for
/// PostgreSQL.
fn free_ports() -> (u16, u16) {
    let seed = u16::try_from(std::process::id() % 2000).unwrap_or(0);
    for base in (20000 + seed * 10..60000).step_by(10) {
        let all: Vec<_> =
            (0..5).filter_map(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).ok()).collect();
        if all.len() == 5 {
            return (base, base + 4);
        }
    }
    panic!("no five free ports");
}

impl Ha {
    fn up() -> Ha {
        let dir = tempfile::tempdir().expect("tempdir");
        // PostgreSQL runs as `postgres` and keeps its cluster in here.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let (port, pg_port) = free_ports();
        let ha = Ha { dir, port };
        let out = Command::new("bash")
            .arg(script("up.sh"))
            .env("FLEET_HA_DIR", ha.state())
            .env("FLEET_HA_PORT", port.to_string())
            .env("FLEET_HA_PG_PORT", pg_port.to_string())
            .env("FLEET_HA_BIN", BIN)
            .output()
            .expect("running up.sh");
        assert!(out.status.success(), "up.sh: {}\n{}", String::from_utf8_lossy(&out.stderr), ha.logs());
        ha
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn admin_token(&self) -> String {
        std::fs::read_to_string(self.state().join("admin.token")).expect("the admin token").trim().to_string()
    }

    fn log(&self, n: usize) -> String {
        std::fs::read_to_string(self.state().join(format!("replica-{n}.log"))).unwrap_or_default()
    }

    fn logs(&self) -> String {
        (1..=3).map(|n| format!("--- replica {n}\n{}", self.log(n))).collect()
    }

    /// The replicas whose log says they lead `lease`, in the order seen.
    fn leaders(&self, lease: &str) -> Vec<usize> {
        let needle = format!("leads now lease=\"{lease}\"");
        (1..=3).filter(|n| self.log(*n).contains(&needle)).collect()
    }

    fn kill(&self, n: usize) {
        let pid = std::fs::read_to_string(self.state().join(format!("replica-{n}.pid"))).expect("pid");
        let done = Command::new("kill").args(["-9", pid.trim()]).status().expect("kill");
        assert!(done.success());
    }
}

impl Drop for Ha {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script("down.sh")).env("FLEET_HA_DIR", self.state()).output();
    }
}

/// A simulated agent: polls its desired manifest through the balancer
/// and, for each new image, reports the op committed and the version.
async fn agent(http: Client, base: String, credential: String) {
    let mut known = 1;
    let mut op = 0;
    loop {
        let answer = http
            .get(format!("{base}/v1/agent/desired?wait=20"))
            .bearer_auth(&credential)
            .header("if-none-match", format!("\"{known}\""))
            .send()
            .await;
        let Ok(answer) = answer else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if answer.status() != StatusCode::OK {
            continue;
        }
        let revision = answer
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim_matches('"').parse().ok())
            .unwrap_or(known);
        let manifest = answer.text().await.unwrap_or_default();
        known = revision;
        let Some(image) = manifest.lines().find_map(|l| l.trim().strip_prefix("image: ")).map(str::to_string)
        else {
            continue;
        };
        let version = image.rsplit(':').next().unwrap_or_default().to_string();
        op += 1;
        let event = json!({
            "op_id": format!("{credential:.8}-{op}"), "container": "app", "from": format!("{REG}:1.0.0"),
            "to": image, "outcome": "committed", "reason": null, "started_at": "2026-01-01T00:00:00Z",
            "ended_at": "2026-01-01T00:00:01Z", "duration_ms": 1000, "controller_version": "0.1.0",
        });
        report(&http, &base, &credential, &image, &version).await;
        let _ =
            http.post(format!("{base}/v1/agent/events")).bearer_auth(&credential).json(&event).send().await;
    }
}

async fn report(http: &Client, base: &str, credential: &str, image: &str, version: &str) {
    let body = json!({
        "controller_version": "0.1.0",
        "targets": [{ "target": "app", "container": "app", "image": image, "version": version,
                      "action": "up_to_date", "reason": "" }],
    });
    let sent = http.post(format!("{base}/v1/agent/report")).bearer_auth(credential).json(&body).send().await;
    assert!(sent.is_ok_and(|a| a.status().is_success()), "a report through the balancer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_behind_haproxy_carry_a_campaign_through_the_death_of_its_runner_sending_each_step_once(
) {
    let ha = Ha::up();
    let http =
        container_upgrader::tls::http_client("test", |b| b.timeout(Duration::from_secs(40))).expect("client");
    let admin = ha.admin_token();
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut request = http.request(method, ha.url(path)).bearer_auth(&admin);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };

    // Enrolment and reports through the balancer, each request to the
    // next replica.
    let token: Value =
        call(reqwest::Method::POST, "/v1/fleet/enrolment-tokens", Some(json!({ "uses": AGENTS })))
            .await
            .expect("token")
            .json()
            .await
            .expect("JSON");
    let manifest = format!(
        "version: 1\npolicy:\n  allowed_images: [\"127.0.0.1:5000/*\"]\ntargets:\n  - container: app\n    image: {REG}:1.0.0\n"
    );
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let body = json!({ "token": token["token"], "name": format!("host-{i}"), "manifest": manifest });
        let answer = http.post(ha.url("/v1/agent/enrol")).json(&body).send().await.expect("enrol");
        assert_eq!(answer.status(), StatusCode::CREATED);
        let enrolled: Value = answer.json().await.expect("JSON");
        let credential = enrolled["credential"].as_str().expect("credential").to_string();
        report(&http, &ha.url(""), &credential, &format!("{REG}:1.0.0"), "1.0.0").await;
        agents.push(tokio::spawn(agent(http.clone(), ha.url(""), credential)));
    }

    let leaders = ha.leaders("campaign-runner");
    assert_eq!(leaders.len(), 1, "one runner: {leaders:?}\n{}", ha.logs());
    let first = leaders[0];

    // One agent per wave, 2 s each: time to kill the runner mid-way.
    let body = json!({ "name": "ha", "below": "1.1.0", "target": "app", "image": format!("{REG}:1.1.0"),
                       "pin_digest": false, "canary": 1, "batch": 1, "monitor": "2s" });
    let answer = call(reqwest::Method::POST, "/v1/fleet/campaigns", Some(body)).await.expect("campaign");
    let status = answer.status();
    let created: Value = answer.json().await.expect("JSON");
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    let view = |id: String| {
        let request = call(reqwest::Method::GET, &format!("/v1/fleet/campaigns/{id}"), None);
        async move { request.await.expect("campaign").json::<Value>().await.expect("JSON") }
    };
    let committed = |c: &Value| {
        c["agent_states"].as_array().into_iter().flatten().filter(|a| a["state"] == "succeeded").count()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let c = view(id.clone()).await;
        if committed(&c) >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "two agents never committed: {c:#}\n{}", ha.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ha.kill(first);

    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let c = view(id.clone()).await;
        if c["state"] == "completed" {
            break c;
        }
        assert!(c["state"] == "running", "the campaign went {}: {c:#}\n{}", c["state"], ha.logs());
        assert!(Instant::now() < deadline, "not completed after its runner died: {c:#}\n{}", ha.logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let leaders = ha.leaders("campaign-runner");
    assert!(
        leaders.len() == 2 && leaders.contains(&first),
        "another replica took over: {leaders:?}\n{}",
        ha.logs()
    );
    let states = done["agent_states"].as_array().expect("agent states");
    assert_eq!(states.len(), AGENTS, "{done:#}");
    for a in states {
        assert_eq!(a["state"], "succeeded", "{done:#}");
        assert_eq!(a["sends"], 1, "each agent sent its step exactly once: {done:#}");
    }
    for task in agents {
        task.abort();
    }
}
