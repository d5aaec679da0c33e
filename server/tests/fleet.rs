//! The fleet end to end, with the real server binary and real agents
//! against the real engine and a real registry: six agents enrol (five
//! `run --server` processes on this host, each with its own container,
//! and one controller container that upgrades itself through its helper),
//! appear with their versions and the newer versions their registry has; a
//! pin through the API is applied and reported within seconds; a broken
//! image rolls back with its reason; the server is killed mid-way and
//! loses no report. The same suite runs on SQLite and on a PostgreSQL
//! cluster the test starts.
#![cfg(feature = "docker-tests")]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{
    agent_manifest, publish_fleet_images, set_mode, start_controller_agent, wait_for, FleetServer, HostAgent,
    TestPostgres, TestRun,
};
use serde_json::Value;

const VERSIONS: [&str; 4] = ["1.0.0", "1.0.1", "1.1.0", "2.0.0"];
const HOST_AGENTS: usize = 5;

/// The target `container` of agent `agent` as the server shows it.
fn target(agent: &Value, container: &str) -> Value {
    agent["targets"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["container"] == container).cloned())
        .unwrap_or(Value::Null)
}

/// The agent's history entries (newest first) for `container`.
fn history(agent: &Value, container: &str) -> Vec<Value> {
    agent["history"]
        .as_array()
        .map(|h| h.iter().filter(|e| e["container"] == container).cloned().collect())
        .unwrap_or_default()
}

fn scenario(test: &str, db: impl FnOnce(&TestRun) -> String) {
    let run = TestRun::new(test);
    let registry = run.registry();
    let (app, ctl) = publish_fleet_images(&run, &registry, &VERSIONS);

    let db = db(&run);
    let mut server = FleetServer::start(&run, &db, &["--version-check-interval", "2s"]);
    let token = server.enrolment_token(&run, &["--uses", "10", "--label", "env=test"]);
    let token_file = run.write_file("fleet/secrets/enrol.token", format!("{token}\n"));
    set_mode(&token_file, 0o600);

    // Five agents on this host, each keeping its own container on 1.0.0.
    let old = format!("{app}:1.0.0");
    let mut agents: Vec<HostAgent> = (1..=HOST_AGENTS)
        .map(|i| {
            HostAgent::start(&run, &server, &token_file, &format!("agent-{i}"), &format!("app{i}"), &old)
        })
        .collect();

    // The sixth: a controller container whose manifest names itself.
    let ctl_image = format!("{ctl}:1.0.0");
    let ctl_name = start_controller_agent(&run, &server, &token_file, "agent-ctl", "ctl", &ctl_image);

    // Everyone enrols and reports what runs, with its version and labels.
    let everyone_reported = |server: &FleetServer| {
        let listed = server.agents();
        listed.len() == HOST_AGENTS + 1
            && listed.iter().all(|a| {
                a["labels"]["env"] == "test"
                    && a["targets"].as_array().is_some_and(|ts| {
                        ts.len() == 1
                            && ts[0]["version"] == "1.0.0"
                            && ts[0]["image"].as_str().is_some_and(|i| i.ends_with(":1.0.0"))
                    })
            })
    };
    wait_for("six agents to enrol and report their versions", Duration::from_secs(120), || {
        everyone_reported(&server)
    });
    let ctl_agent = server.agent_named("agent-ctl").expect("agent-ctl");
    assert_eq!(ctl_agent["controller_image"], ctl_image.as_str(), "{ctl_agent}");

    // The registry's newer versions, per target.
    let first = &agents[0];
    wait_for("the newer versions of the app", Duration::from_secs(60), || {
        let a = server.agent_named(&first.name).unwrap_or(Value::Null);
        let updates = &target(&a, &first.container)["updates"];
        updates["patch"] == "1.0.1" && updates["minor"] == "1.1.0" && updates["major"] == "2.0.0"
    });
    let repos = server.get_json("/v1/fleet/repositories");
    assert!(repos.to_string().contains("/app"), "{repos}");

    // A pin through the API is applied and reported back within seconds.
    let pin = |server: &FleetServer, agent: &str, container: &str, image: &str| {
        let id = server.agent_named(agent).expect("agent")["id"].as_str().expect("id").to_string();
        let path = format!("/v1/fleet/agents/{id}/targets/{container}");
        let answer = server.admin("PUT", &path, &format!("{{\"image\": \"{image}\"}}"));
        assert_eq!(answer.status, 200, "PUT {path}: {}", answer.text());
    };
    let started = Instant::now();
    pin(&server, &first.name, &first.container, &format!("{app}:1.1.0"));
    wait_for("the pin to be applied and reported", Duration::from_secs(60), || {
        let a = server.agent_named(&first.name).unwrap_or(Value::Null);
        target(&a, &first.container)["version"] == "1.1.0"
            && history(&a, &first.container).iter().any(|e| e["outcome"] == "committed")
    });
    eprintln!("pin → reported on the server: {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(run.inspect(&first.container, "{{.Config.Image}}"), format!("{app}:1.1.0"));

    // A broken image rolls back, with its reason on the server.
    let second = &agents[1];
    pin(&server, &second.name, &second.container, &format!("{app}:broken"));
    wait_for("the rollback to be reported with its reason", Duration::from_secs(90), || {
        let a = server.agent_named(&second.name).unwrap_or(Value::Null);
        history(&a, &second.container)
            .iter()
            .any(|e| e["outcome"] == "rolled_back" && e["reason"].as_str().is_some_and(|r| !r.is_empty()))
    });
    assert_eq!(run.inspect(&second.container, "{{.Config.Image}}"), format!("{app}:1.0.0"), "rolled back");

    // The server dies right after handing out a pin; the agent upgrades
    // while it is down and reports once it is back. Nothing is lost.
    let third = &agents[2];
    pin(&server, &third.name, &third.container, &format!("{app}:1.0.1"));
    wait_for("the third agent to write the pin to its file", Duration::from_secs(30), || {
        std::fs::read_to_string(&third.manifest).is_ok_and(|t| t.contains(":1.0.1"))
    });
    server.kill();
    wait_for("the third agent to upgrade with the server down", Duration::from_secs(60), || {
        run.try_docker(&["inspect", "-f", "{{.Config.Image}}", &third.container])
            .is_ok_and(|i| i == format!("{app}:1.0.1"))
    });
    std::thread::sleep(Duration::from_secs(3));
    server.restart();
    wait_for("the upgrade done while the server was down to be reported", Duration::from_secs(90), || {
        let a = server.agent_named(&third.name).unwrap_or(Value::Null);
        target(&a, &third.container)["version"] == "1.0.1"
            && history(&a, &third.container).iter().any(|e| e["outcome"] == "committed")
    });
    let a = server.agent_named(&first.name).expect("first");
    assert!(
        history(&a, &first.container).iter().any(|e| e["outcome"] == "committed"),
        "kept across the restart: {a}"
    );
    let a = server.agent_named(&second.name).expect("second");
    assert!(history(&a, &second.container).iter().any(|e| e["outcome"] == "rolled_back"), "kept: {a}");

    // The controller container upgrades itself through its helper; the new
    // controller reports its own image.
    pin(&server, "agent-ctl", &ctl_name, &format!("{ctl}:1.1.0"));
    wait_for("the new controller to report itself", Duration::from_secs(180), || {
        let a = server.agent_named("agent-ctl").unwrap_or(Value::Null);
        a["controller_image"] == format!("{ctl}:1.1.0").as_str()
            && history(&a, &ctl_name).iter().any(|e| e["outcome"] == "committed")
    });
    assert_eq!(run.inspect(&ctl_name, "{{.Config.Image}}"), format!("{ctl}:1.1.0"));

    // Still one record per agent: the new controller kept the credential.
    assert_eq!(server.agents().len(), HOST_AGENTS + 1);
    for agent in &mut agents {
        assert!(agent.process.alive(), "{} exited: {}", agent.name, agent.process.output());
    }
    run.docker(&["rm", "-f", &ctl_name]);
}

#[test]
fn six_agents_on_sqlite_enrol_report_follow_pins_and_survive_a_server_restart() {
    scenario("fleet_sqlite", |run| {
        let dir = run.write_file("fleet/db/.keep", "").parent().expect("dir").to_path_buf();
        format!("sqlite://{}", dir.join("fleet.db").display())
    });
}

#[test]
fn six_agents_on_postgresql_enrol_report_follow_pins_and_survive_a_server_restart() {
    let postgres = TestPostgres::start();
    let url = postgres.url.clone();
    scenario("fleet_postgres", move |_| url);
    drop(postgres);
}

/// An agent's request with `credential` as its bearer.
fn as_agent(server: &FleetServer, credential: &str, method: &str, path: &str, body: &str) -> common::Answer {
    let auth = format!("Bearer {credential}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    common::http(&server.addr, method, path, &headers, body.as_bytes())
}

fn enrol(server: &FleetServer, token: &str, name: &str, manifest: &str) -> common::Answer {
    let body = serde_json::json!({"token": token, "name": name, "manifest": manifest}).to_string();
    common::http(
        &server.addr,
        "POST",
        "/v1/agent/enrol",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

fn new_token(server: &FleetServer, body: &str) -> (String, String) {
    let answer = server.admin("POST", "/v1/fleet/enrolment-tokens", body);
    assert_eq!(answer.status, 201, "{}", answer.text());
    let v: Value = serde_json::from_slice(&answer.body).expect("JSON");
    (v["token"].as_str().expect("token").to_string(), v["id"].as_str().expect("id").to_string())
}

#[test]
fn strangers_other_agents_revoked_agents_and_spent_tokens_are_refused() {
    let run = TestRun::new("fleet_security");
    let dir = run.write_file("fleet/db/.keep", "").parent().expect("dir").to_path_buf();
    let db_file = dir.join("fleet.db");
    let server = FleetServer::start(&run, &format!("sqlite://{}", db_file.display()), &[]);
    let refused = |a: &common::Answer| (400..500).contains(&a.status) && a.status != 404;

    // A one-use token enrols once.
    let (once, _) = new_token(&server, r#"{"uses": 1}"#);
    let a = enrol(&server, &once, "a", &agent_manifest("a-marker", "registry.local/app:1"));
    assert_eq!(a.status, 201, "{}", a.text());
    let a: Value = serde_json::from_slice(&a.body).expect("JSON");
    let cred_a = a["credential"].as_str().expect("credential").to_string();
    let again = enrol(&server, &once, "a2", &agent_manifest("x", "registry.local/app:1"));
    assert!(refused(&again), "a spent token enrolled: {} {}", again.status, again.text());

    // Expired and revoked tokens, and made-up ones.
    let (short, _) = new_token(&server, r#"{"uses": 5, "expires_in": "1s"}"#);
    std::thread::sleep(Duration::from_millis(1500));
    let expired = enrol(&server, &short, "late", &agent_manifest("x", "registry.local/app:1"));
    assert!(refused(&expired), "an expired token enrolled: {} {}", expired.status, expired.text());
    let (revoked, revoked_id) = new_token(&server, r#"{"uses": 5}"#);
    assert_eq!(
        server.admin("DELETE", &format!("/v1/fleet/enrolment-tokens/{revoked_id}"), "").status / 100,
        2
    );
    let answer = enrol(&server, &revoked, "r", &agent_manifest("x", "registry.local/app:1"));
    assert!(refused(&answer), "a revoked token enrolled: {} {}", answer.status, answer.text());
    let forged = format!("{revoked_id}.{}", "A".repeat(43));
    assert!(refused(&enrol(&server, &forged, "f", &agent_manifest("x", "registry.local/app:1"))));

    // A second agent.
    let (two, _) = new_token(&server, r#"{"uses": 1}"#);
    let b = enrol(&server, &two, "b", &agent_manifest("b-marker", "registry.local/app:1"));
    assert_eq!(b.status, 201, "{}", b.text());
    let b: Value = serde_json::from_slice(&b.body).expect("JSON");
    let cred_b = b["credential"].as_str().expect("credential").to_string();

    // Each reads its own manifest, never the other's, whatever it tries.
    let own = as_agent(&server, &cred_a, "GET", "/v1/agent/desired", "");
    assert_eq!(own.status, 200, "{}", own.text());
    assert!(own.text().contains("a-marker") && !own.text().contains("b-marker"), "{}", own.text());
    let id_a = a["agent_id"].as_str().expect("id");
    let id_b = b["agent_id"].as_str().expect("id");
    for path in [
        format!("/v1/agent/desired?agent={id_b}"),
        format!("/v1/fleet/agents/{id_b}/manifest"),
        format!("/v1/fleet/agents/{id_b}"),
        "/v1/fleet/agents".to_string(),
    ] {
        let answer = as_agent(&server, &cred_a, "GET", &path, "");
        assert!(!answer.text().contains("b-marker"), "{path} showed b's manifest to a");
        if path.starts_with("/v1/fleet") {
            assert_eq!(answer.status, 401, "{path} with an agent's credential: {}", answer.text());
        }
    }
    let (_, secret_b) = cred_b.split_once('.').expect("ID.SECRET");
    let mixed = format!("{id_a}.{secret_b}");
    for bad in ["", "nope", mixed.as_str(), ADMIN_TOKEN_FOR_AGENTS] {
        let answer = as_agent(&server, bad, "GET", "/v1/agent/desired", "");
        assert_eq!(answer.status, 401, "credential {bad:?}: {}", answer.text());
    }
    let answer = common::http(&server.addr, "GET", "/v1/fleet/agents", &[], b"");
    assert_eq!(answer.status, 401, "the admin API without a token");
    let answer = common::http(
        &server.addr,
        "GET",
        "/v1/fleet/agents",
        &[("Authorization", "Bearer wrong-admin-token-xxxx")],
        b"",
    );
    assert_eq!(answer.status, 401, "a wrong admin token");

    // Revoked: refused at once, for reading and reporting; b goes on.
    assert_eq!(server.admin("POST", &format!("/v1/fleet/agents/{id_a}/revoke"), "").status / 100, 2);
    assert_eq!(as_agent(&server, &cred_a, "GET", "/v1/agent/desired", "").status, 401);
    let report = r#"{"controller_version": "9", "targets": []}"#;
    assert_eq!(as_agent(&server, &cred_a, "POST", "/v1/agent/report", report).status, 401);
    assert_eq!(as_agent(&server, &cred_b, "POST", "/v1/agent/report", report).status, 204);

    // The database holds no credential or token in the clear.
    drop(server);
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("db dir").flatten() {
        stored.extend(std::fs::read(entry.path()).unwrap_or_default());
    }
    let stored = String::from_utf8_lossy(&stored);
    for secret in [cred_a.split_once('.').expect("dot").1, secret_b, once.split_once('.').expect("dot").1] {
        assert!(!stored.contains(secret), "a secret is stored in the clear");
    }
}

/// The admin token presented as an agent's credential.
const ADMIN_TOKEN_FOR_AGENTS: &str = common::ADMIN_TOKEN;

/// Issue 24 on the server: with `--verify-key`, a campaign whose digest no
/// listed key signed is refused at creation (with the host's reason), a
/// tag campaign too, a signed version starts pinned by its digest, and the
/// API and the page mark each version the fleet runs or is offered.
#[test]
fn a_verifying_server_refuses_a_campaign_to_an_unsigned_digest_and_marks_versions_signed_or_not() {
    use common::cosign::{sign_image, Key};
    let run = TestRun::new("fleet_signed");
    let registry = run.registry();
    let repo = registry.repo("app");
    for v in ["1.0.0", "1.1.0", "2.0.0"] {
        run.publish(
            &format!("{repo}:{v}"),
            &common::ImageSpec { env: vec![("TESTBOX_VERSION", v)], ..Default::default() },
        );
    }
    let digest = |v: &str| registry.digest_of(&format!("{repo}:{v}"));
    let (ours, stranger) = (Key::p256(), Key::ed25519());
    for (v, key) in [("1.0.0", &ours), ("1.1.0", &ours), ("2.0.0", &stranger)] {
        sign_image(&registry, &repo, &digest(v), key);
    }
    let key_file = run.write_file("fleet/cosign.pub", ours.public_pem());
    let dir = run.write_file("fleet/db/.keep", "").parent().expect("dir").to_path_buf();
    let db = format!("sqlite://{}", dir.join("fleet.db").display());
    let server = FleetServer::start(&run, &db, &["--verify-key", &key_file.display().to_string()]);

    let (token, _) = new_token(&server, r#"{"uses": 1}"#);
    let answer = enrol(&server, &token, "signed-host", &agent_manifest("web", &format!("{repo}:1.0.0")));
    assert_eq!(answer.status, 201, "{}", answer.text());
    let me: Value = serde_json::from_slice(&answer.body).expect("JSON");
    let (credential, id) =
        (me["credential"].as_str().expect("credential"), me["agent_id"].as_str().expect("id"));
    let report = serde_json::json!({
        "controller_version": "0.1.0",
        "targets": [{"target": "web", "container": "web", "image": format!("{repo}:1.0.0"),
                     "digest": digest("1.0.0"), "version": "1.0.0", "action": "up_to_date"}],
    });
    assert_eq!(as_agent(&server, credential, "POST", "/v1/agent/report", &report.to_string()).status, 204);

    // The version checker judges what the host runs and what it is offered.
    let mut seen = Value::Null;
    wait_for("the version checker to mark the three versions", Duration::from_secs(60), || {
        seen = target(&server.agents()[0], "web");
        seen["signatures"].as_object().is_some_and(|s| s.len() == 3)
    });
    assert_eq!(seen["updates"]["minor"], "1.1.0", "{seen}");
    assert_eq!(seen["updates"]["major"], "2.0.0", "{seen}");
    assert_eq!(seen["signatures"]["1.0.0"]["signed"], true, "{seen}");
    assert_eq!(seen["signatures"]["1.1.0"]["signed"], true, "{seen}");
    assert_eq!(seen["signatures"]["2.0.0"]["signed"], false, "{seen}");
    let reason = seen["signatures"]["2.0.0"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("signed by an unknown key"), "{seen}");

    // A campaign to the unsigned version is refused, as is handing out a tag.
    let to = |version: &str, extra: &str| {
        format!(r#"{{"agents": ["{id}"], "target": "web", "version": "{version}"{extra}}}"#)
    };
    let refused = server.admin("POST", "/v1/fleet/campaigns", &to("2.0.0", ""));
    assert_eq!(refused.status, 422, "{}", refused.text());
    assert!(refused.text().contains("not signed by a key of --verify-key"), "{}", refused.text());
    assert!(refused.text().contains(&digest("2.0.0")), "names the digest: {}", refused.text());
    let preview = server.admin("POST", "/v1/fleet/campaigns/preview", &to("2.0.0", ""));
    assert_eq!(preview.status, 200, "{}", preview.text());
    let preview: Value = serde_json::from_slice(&preview.body).expect("JSON");
    assert!(preview["pin_error"].as_str().is_some_and(|e| e.contains("not signed")), "{preview}");
    let by_tag = server.admin("POST", "/v1/fleet/campaigns", &to("1.1.0", r#", "pin_digest": false"#));
    assert_eq!(by_tag.status, 422, "{}", by_tag.text());
    assert!(by_tag.text().contains("pin_digest"), "{}", by_tag.text());
    assert_eq!(server.get_json("/v1/fleet/campaigns").as_array().map_or(1, Vec::len), 0, "none created");

    // The page shows the marks next to the running version and the offers.
    let cookie = server.login(common::ADMIN_TOKEN);
    let (status, fleet) = server.page(&cookie, "/");
    assert_eq!(status, 200, "{fleet}");
    assert!(fleet.contains(r#"1.0.0 <span class="sig sig-signed""#), "the running version: {fleet}");
    assert!(fleet.contains(r#"major 2.0.0</span> <span class="sig sig-unsigned""#), "{fleet}");
    let (_, form) = server.page(&cookie, "/campaigns/new");
    assert!(form.contains("2.0.0 · unsigned: Start is refused"), "{form}");
    assert!(form.contains("1.1.0 · signed"), "{form}");

    // A signed version starts, pinned by the digest that was verified.
    let started = server.admin("POST", "/v1/fleet/campaigns", &to("1.1.0", ""));
    assert_eq!(started.status, 201, "{}", started.text());
    let campaigns = server.get_json("/v1/fleet/campaigns");
    let image = campaigns[0]["image"].as_str().unwrap_or_default().to_string();
    assert_eq!(image, format!("{repo}:1.1.0@{}", digest("1.1.0")), "{campaigns}");
}

/// `run --git --server`: Git is the one source of the host's manifest and
/// the fleet server sees which commit it runs (API, fleet table, agent
/// page) — and refuses to pin it, since the agent would never apply it.
#[test]
fn an_agent_following_git_reports_its_commit_and_the_server_does_not_pin_it() {
    let run = TestRun::new("fleet_gitops");
    let (_registry, repo) = run.registry_with_versions();
    let name = run.name("web");
    run.run_container("web", &format!("{repo}:1"), &[]);
    let manifest_for = |tag: &str| {
        format!(
            "version: 1\ndefaults:\n  health: {{stable: 1s, timeout: 30s}}\ntargets:\n  - container: {name}\n    image: {repo}:{tag}\n"
        )
    };
    let file = run.write_file("gitops/desired-state.yaml", manifest_for("1"));
    let state = file.parent().expect("dir").join("state");
    let git = common::GitServer::start(&run.empty_dir("git"), None);
    let commit = git.commit(&[("desired-state.yaml", &manifest_for("2"))], "web to 2");
    git.git(&["push", "-q", "origin", "main"]);

    let db = format!("sqlite://{}", run.empty_dir("db").join("fleet.db").display());
    let server = FleetServer::start(&run, &db, &[]);
    let token = server.enrolment_token(&run, &["--uses", "1"]);
    let token_file = run.write_file("gitops/enrol.token", format!("{token}\n"));
    set_mode(&token_file, 0o600);
    let mut cmd = run.cli_command();
    cmd.arg("run").arg("-f").arg(&file).arg("--state-dir").arg(&state);
    cmd.args([
        "--git",
        &git.url(),
        "--git-interval",
        "1h",
        "--server",
        &server.url(),
        "--agent-name",
        "gitops",
    ]);
    cmd.args(["--server-poll", "10s", "--enrol-token-file"]).arg(&token_file);
    let agent = common::Spawned::start(cmd, "run --git --server");

    // The commit moves the container, and the server shows which commit.
    let deadline = Instant::now() + Duration::from_secs(120);
    let seen = loop {
        let seen = server.agents().first().cloned().unwrap_or(Value::Null);
        if seen["git"]["commit"] == commit.as_str() && target(&seen, &name)["image"] == format!("{repo}:2") {
            break seen;
        }
        assert!(Instant::now() < deadline, "{seen:#}\n{}\n{}", agent.output(), server.output());
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(seen["git"]["url"], git.url().as_str(), "{seen:#}");
    assert_eq!(seen["git"]["path"], "desired-state.yaml", "{seen:#}");
    assert_eq!(seen["git"]["author"], "Test Author <author@example.test>", "{seen:#}");
    let id = seen["id"].as_str().expect("id").to_string();

    // A pin is refused with the reason: the agent would never apply it.
    let pin = server.admin(
        "PUT",
        &format!("/v1/fleet/agents/{id}/targets/{name}"),
        &format!(r#"{{"image": "{repo}:1"}}"#),
    );
    assert_eq!(pin.status, 409, "{}", pin.text());
    assert!(pin.text().contains("takes its desired state from Git"), "{}", pin.text());
    let campaign = server.admin(
        "POST",
        "/v1/fleet/campaigns",
        &format!(r#"{{"agents": ["{id}"], "target": "{name}", "image": "{repo}:1", "pin_digest": false}}"#),
    );
    assert_eq!(campaign.status, 422, "{}", campaign.text());
    assert!(campaign.text().contains("takes its desired state from Git"), "{}", campaign.text());

    // The page shows the commit in the fleet table and on the agent's page.
    let cookie = server.login(common::ADMIN_TOKEN);
    let (_, fleet) = server.page(&cookie, "/");
    assert!(fleet.contains(&format!(">git {}</span>", &commit[..7])), "{fleet}");
    let (_, page) = server.page(&cookie, &format!("/agents/{id}"));
    assert!(page.contains(&format!(r#"<code id="agent-git-commit">{commit}</code>"#)), "{page}");
    assert!(!page.contains(r#"class="pin""#), "no pin form for an agent following Git: {page}");
    assert_eq!(
        run.inspect(&name, "{{.Config.Image}}"),
        format!("{repo}:2"),
        "the server's manifest was never applied:\n{}",
        agent.output()
    );
}
