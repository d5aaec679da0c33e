//! Three servers on one PostgreSQL behind HAProxy, started by the
//! README's command (`examples/server/ha/up.sh`, Debian's haproxy and a
//! throw-away PostgreSQL cluster): agents enrol, poll and report through
//! the balancer, whichever replica answers; a campaign goes on when the
//! replica running it is killed mid-way, taken over by another, and no
//! agent is sent its step twice. The agents here are simulated over HTTP
//! (what a controller sends) in the first test; the second runs five real
//! agents keeping real containers: a pin through one replica reaches an
//! agent held on another within a second, the campaign survives its
//! runner's death, and a PostgreSQL restart loses nothing.
#![cfg(feature = "docker-tests")]

#[path = "../../tests/common/mod.rs"]
mod common;

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

    fn replica_url(&self, n: usize) -> String {
        format!("http://127.0.0.1:{}", usize::from(self.port) + n)
    }

    /// Restarts the PostgreSQL cluster up.sh made (fast: connections cut).
    fn restart_postgres(&self) {
        let data = self.state().join("pg/data");
        let pg_ctl = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin/pg_ctl"))
            .find(|p| p.exists())
            .expect("pg_ctl");
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_ctl)
            .arg("-D")
            .arg(&data)
            .args(["-m", "fast", "-w", "-t", "60", "-l"])
            .arg(self.state().join("pg/log"))
            .arg("restart")
            // The new postmaster keeps whatever it inherits open: no pipes
            // (output() would wait for it to exit).
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("pg_ctl restart");
        assert!(out.success(), "pg_ctl restart failed; see {}", self.state().join("pg/log").display());
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
        let (http, url, admin) = (http.clone(), ha.url(&format!("/v1/fleet/campaigns/{id}")), admin.clone());
        async move { get_json(&http, &url, &admin).await }
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

/// GET `path` with the admin token; the JSON.
///
/// A GET cut off by a replica's death (the balancer cannot resend what a
/// dead server had started to answer) is asked again, as the page's
/// script and the agents do; for at most 20 s.
async fn get_json(http: &Client, url: &str, token: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match http.get(url).bearer_auth(token).send().await {
            Ok(answer) if answer.status().is_success() => match answer.json().await {
                Ok(value) => return value,
                Err(e) => assert!(Instant::now() < deadline, "{url}: {e}"),
            },
            Ok(answer) => assert!(Instant::now() < deadline, "{url}: {}", answer.status()),
            Err(e) => assert!(Instant::now() < deadline, "{url}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_agents_across_replicas_a_pin_reaches_a_poll_held_elsewhere_at_once_and_a_database_restart_loses_nothing(
) {
    use common::{HostAgent, TestRun};
    let run = TestRun::new("ha-real-agents");
    let registry = run.registry();
    let app = registry.repo("app");
    for v in ["1.0.0", "1.1.0"] {
        run.publish(
            &format!("{app}:{v}"),
            &common::ImageSpec { env: vec![("TESTBOX_VERSION", v)], ..Default::default() },
        );
    }
    let ha = Ha::up();
    let http =
        container_upgrader::tls::http_client("test", |b| b.timeout(Duration::from_secs(40))).expect("client");
    let admin = ha.admin_token();
    let token: Value = http
        .post(ha.url("/v1/fleet/enrolment-tokens"))
        .bearer_auth(&admin)
        .json(&json!({ "uses": 5 }))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("JSON");
    let token_file =
        run.write_file("ha/enrol.token", format!("{}\n", token["token"].as_str().expect("token")));
    common::set_mode(&token_file, 0o600);

    // The runner leads on one replica; two agents are held on another
    // (B), the pins go through a third (A); the rest through HAProxy.
    let runner = ha.leaders("campaign-runner");
    assert_eq!(runner.len(), 1, "{}", ha.logs());
    let others: Vec<usize> = (1..=3).filter(|n| *n != runner[0]).collect();
    let (a, b) = (others[0], others[1]);
    let old = format!("{app}:1.0.0");
    let agents: Vec<HostAgent> = (1..=5)
        .map(|i| {
            let url = if i <= 2 { ha.replica_url(b) } else { ha.url("") };
            HostAgent::start_at(&run, &url, &token_file, &format!("agent-{i}"), &format!("app{i}"), &old)
        })
        .collect();
    let listed = || async { get_json(&http, &ha.url("/v1/fleet/agents"), &admin).await };
    let deadline = Instant::now() + Duration::from_secs(120);
    let ids: Vec<(String, String)> = loop {
        let all = listed().await;
        let ready: Vec<(String, String)> = all
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["targets"].as_array().is_some_and(|t| t.len() == 1 && t[0]["version"] == "1.0.0"))
            .map(|a| {
                (
                    a["name"].as_str().unwrap_or_default().to_string(),
                    a["id"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        if ready.len() == 5 {
            break ready;
        }
        assert!(Instant::now() < deadline, "five agents on 1.0.0: {all:#}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let id_of = |name: &str| ids.iter().find(|(n, _)| n == name).map(|(_, id)| id.clone()).expect("listed");

    // A pin through replica A reaches agent-1, whose poll replica B holds,
    // within a second (B hears A's NOTIFY; the re-read is 5 s).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let container = agents[0].container.clone();
    let pin = format!("{}/v1/fleet/agents/{}/targets/{container}", ha.replica_url(a), id_of("agent-1"));
    let new = format!("{app}:1.1.0");
    let answer = http.put(&pin).bearer_auth(&admin).json(&json!({ "image": new })).send().await.expect("pin");
    assert!(answer.status().is_success(), "pin: {}", answer.text().await.unwrap_or_default());
    let pinned = Instant::now();
    let reached = loop {
        if std::fs::read_to_string(&agents[0].manifest).is_ok_and(|m| m.contains(&new)) {
            break pinned.elapsed();
        }
        assert!(pinned.elapsed() < Duration::from_secs(10), "the pin never reached agent-1");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    eprintln!("a pin through replica {a} reached agent-1's poll held on replica {b} in {reached:?}");
    assert!(
        reached < Duration::from_secs(1),
        "a pin on replica {a} reached the poll held on {b} in {reached:?}"
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let agent = get_json(&http, &ha.url(&format!("/v1/fleet/agents/{}", id_of("agent-1"))), &admin).await;
        if agent["targets"][0]["version"] == "1.1.0" {
            break;
        }
        assert!(Instant::now() < deadline, "agent-1 never reported 1.1.0: {agent:#}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // A campaign for the other four through the balancer; its runner is
    // SIGKILLed after two waves; another replica finishes it, each agent
    // sent once.
    let body = json!({ "name": "ha", "below": "1.1.0", "target": format!("{}-app*", run.id()), "version": "1.1.0",
                       "pin_digest": false, "canary": 1, "batch": 1, "monitor": "2s" });
    let answer = http
        .post(ha.url("/v1/fleet/campaigns"))
        .bearer_auth(&admin)
        .json(&body)
        .send()
        .await
        .expect("create");
    let status = answer.status();
    let created: Value = answer.json().await.expect("JSON");
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    let campaign_url = ha.url(&format!("/v1/fleet/campaigns/{id}"));
    let succeeded = |c: &Value| {
        c["agent_states"].as_array().into_iter().flatten().filter(|a| a["state"] == "succeeded").count()
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let c = get_json(&http, &campaign_url, &admin).await;
        if succeeded(&c) >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "two waves never succeeded: {c:#}\n{}", ha.logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    ha.kill(runner[0]);
    let deadline = Instant::now() + Duration::from_secs(180);
    let done = loop {
        let c = get_json(&http, &campaign_url, &admin).await;
        if c["state"] == "completed" {
            break c;
        }
        assert!(c["state"] == "running", "{c:#}\n{}", ha.logs());
        assert!(Instant::now() < deadline, "not completed after its runner died: {c:#}\n{}", ha.logs());
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let states = done["agent_states"].as_array().expect("states");
    assert_eq!(states.len(), 4, "{done:#}");
    assert!(states.iter().all(|s| s["state"] == "succeeded" && s["sends"] == 1), "{done:#}");
    for agent in &agents {
        let deadline = Instant::now() + Duration::from_secs(60);
        while run.inspect(&agent.container, "{{.Config.Image}}") != new {
            assert!(Instant::now() < deadline, "{} never ran {new}", agent.name);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // PostgreSQL restarts under them: the replicas reconnect, the agents
    // report again, a pin made afterwards reaches its agent, and nothing
    // written before is gone.
    let audit_before = get_json(&http, &ha.url("/v1/fleet/audit?limit=1000"), &admin).await["entries"]
        .as_array()
        .map_or(0, Vec::len);
    let restarted_at = jiff::Timestamp::now();
    ha.restart_postgres();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ok = http.get(ha.url("/v1/fleet/agents")).bearer_auth(&admin).send().await;
        if let Ok(answer) = ok {
            if answer.status().is_success() {
                let all: Value = answer.json().await.expect("JSON");
                let fresh = all.as_array().into_iter().flatten().filter(|a| {
                    a["last_seen"]
                        .as_str()
                        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                        .is_some_and(|t| t > restarted_at)
                });
                if fresh.count() == 5 {
                    break;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "the agents did not report again after the restart\n{}",
            ha.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let container = agents[1].container.clone();
    let pin = format!("{}/v1/fleet/agents/{}/targets/{container}", ha.url(""), id_of("agent-2"));
    let answer = http.put(&pin).bearer_auth(&admin).json(&json!({ "image": old })).send().await.expect("pin");
    assert!(answer.status().is_success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while run.inspect(&agents[1].container, "{{.Config.Image}}") != old {
        assert!(Instant::now() < deadline, "a pin after the restart never reached agent-2\n{}", ha.logs());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = get_json(&http, &campaign_url, &admin).await;
    assert_eq!(after["state"], "completed", "the campaign is as it was");
    let audit_after = get_json(&http, &ha.url("/v1/fleet/audit?limit=1000"), &admin).await["entries"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(
        audit_after > audit_before,
        "the audit log kept its rows and the new pin's: {audit_before} → {audit_after}"
    );
}
