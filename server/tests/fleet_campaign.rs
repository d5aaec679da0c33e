//! Campaigns end to end: the real server binary, six real `run --server`
//! agents on this host, each keeping its own container, a seventh that is
//! a controller container keeping itself, and a real registry. A campaign
//! to an image that fails its health gate stops at the canary and pauses
//! by itself, the other agents untouched; a campaign to a good version
//! (created with the CLI) completes across a server restart in the middle,
//! every agent sent exactly once; rolling it back brings every agent it
//! upgraded back to the previous version; a campaign upgrades the
//! controller container through its helper. The whole story runs once on
//! SQLite and once on a PostgreSQL cluster the test starts.
#![cfg(feature = "docker-tests")]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{
    publish_fleet_images, set_mode, start_controller_agent, wait_for, FleetServer, HostAgent, TestPostgres,
    TestRun,
};
use serde_json::Value;

const AGENTS: usize = 6;

fn campaign(server: &FleetServer, id: &str) -> Value {
    server.get_json(&format!("/v1/fleet/campaigns/{id}"))
}

fn agent_states(c: &Value) -> Vec<Value> {
    c["agent_states"].as_array().cloned().unwrap_or_default()
}

fn sends(c: &Value) -> Vec<i64> {
    agent_states(c).iter().map(|a| a["sends"].as_i64().unwrap_or(-1)).collect()
}

/// Waits until campaign `id` passes `done`; on timeout, fails with the
/// campaign and the server's log.
fn wait_campaign(
    server: &FleetServer,
    id: &str,
    what: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let c = campaign(server, id);
        if done(&c) {
            return c;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {c:#}\n{}", server.output());
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits until campaign `id` is in `state`, failing early on a wrong end.
fn wait_state(server: &FleetServer, id: &str, state: &str, within: Duration) -> Value {
    wait_campaign(server, id, &format!("campaign {id} to be {state}"), within, |c| {
        let now = c["state"].as_str().unwrap_or_default();
        assert!(
            now == state || now == "running" || now == "rolling_back",
            "campaign {id} is {now}, not {state}: {c:#}\n{}",
            server.output()
        );
        now == state
    })
}

#[test]
fn campaigns_on_sqlite_stop_at_a_failing_canary_complete_across_a_restart_and_roll_back() {
    scenario("fleet_campaign_sqlite", |run| {
        let dir = run.write_file("fleet/db/.keep", "").parent().expect("dir").to_path_buf();
        format!("sqlite://{}", dir.join("fleet.db").display())
    });
}

#[test]
fn campaigns_on_postgresql_stop_at_a_failing_canary_complete_across_a_restart_and_roll_back() {
    let postgres = TestPostgres::start();
    let url = postgres.url.clone();
    scenario("fleet_campaign_postgres", move |_| url);
    drop(postgres);
}

/// Seven agents (one a controller container) through a failing campaign,
/// a good one across a server restart, its rollback, and a self-upgrade,
/// on the database `db` gives.
fn scenario(test: &str, db: impl FnOnce(&TestRun) -> String) {
    let run = TestRun::new(test);
    let registry = run.registry();
    let (app, ctl) = publish_fleet_images(&run, &registry, &["1.0.0", "1.1.0"]);

    let mut server = FleetServer::start(&run, &db(&run), &[]);
    let token = server.enrolment_token(&run, &["--uses", "10", "--label", "env=test"]);
    let token_file = run.write_file("fleet/secrets/enrol.token", format!("{token}\n"));
    set_mode(&token_file, 0o600);
    let old = format!("{app}:1.0.0");
    let mut agents: Vec<HostAgent> = (1..=AGENTS)
        .map(|i| {
            HostAgent::start(&run, &server, &token_file, &format!("agent-{i}"), &format!("app{i}"), &old)
        })
        .collect();
    let ctl_container =
        start_controller_agent(&run, &server, &token_file, "ctl-agent", "ctl", &format!("{ctl}:1.0.0"));
    wait_for("seven agents to report 1.0.0", Duration::from_secs(120), || {
        let listed = server.agents();
        listed.len() == AGENTS + 1
            && listed
                .iter()
                .all(|a| a["targets"].as_array().is_some_and(|t| t.len() == 1 && t[0]["version"] == "1.0.0"))
    });
    // The containers are `<run id>-app<i>`, one per host as in a fleet
    // where each host names its container after itself.
    let target = format!("{}-app*", run.id());

    // A broken image: the canary's health gate rolls it back, the campaign
    // pauses by itself with the agent's reason, nobody else is sent.
    let body = serde_json::json!({
        "name": "broken", "label": "env=test", "target": target, "version": "broken",
        "canary": 1, "batch": 2, "max_failure_ratio": 0.3, "failure_action": "pause",
        "monitor": "2s", "delay": "1s", "deadline": "90s",
    });
    let answer = server.admin("POST", "/v1/fleet/campaigns", &body.to_string());
    assert_eq!(answer.status, 201, "{}", answer.text());
    let created: Value = serde_json::from_slice(&answer.body).expect("JSON");
    let bad = created["id"].as_str().expect("id").to_string();
    let paused = wait_state(&server, &bad, "paused", Duration::from_secs(120));
    let states = agent_states(&paused);
    assert_eq!(states[0]["state"], "rolled_back", "{paused:#}");
    assert!(states[0]["reason"].as_str().is_some_and(|r| !r.is_empty()), "the agent's reason: {paused:#}");
    assert!(paused["reason"].as_str().is_some_and(|r| r.contains("canary")), "{paused:#}");
    for a in &states[1..] {
        assert_eq!(a["state"], "pending", "{paused:#}");
        assert_eq!(a["sends"], 0, "{paused:#}");
    }
    for agent in &agents {
        assert_eq!(run.inspect(&agent.container, "{{.Config.Image}}"), old, "{} left on 1.0.0", agent.name);
    }
    for agent in &agents[1..] {
        let text = std::fs::read_to_string(&agent.manifest).expect("manifest");
        assert!(!text.contains(":broken"), "{} was never sent the broken image", agent.name);
    }
    // The page shows why, and offers resume, abort and roll back.
    let cookie = server.login(common::ADMIN_TOKEN);
    let (status, html) = server.page(&cookie, &format!("/campaigns/{bad}"));
    assert_eq!(status, 200, "{html}");
    let agent_reason = states[0]["reason"].as_str().unwrap_or_default();
    let plain: String =
        agent_reason.chars().take_while(|c| c.is_alphanumeric() || c.is_whitespace()).collect();
    assert!(
        plain.trim().len() >= 6 && html.contains(plain.trim()),
        "the agent's reason `{agent_reason}` on the page: {html}"
    );
    assert!(html.contains("paused") && html.contains("canary"), "the campaign's state and reason: {html}");
    let answer = server.admin("POST", &format!("/v1/fleet/campaigns/{bad}/abort"), "");
    assert_eq!(answer.status, 200, "{}", answer.text());

    // A good version, created with the CLI; the server restarts mid-way.
    let (url, token_path) = (server.url(), server.admin_token_file().to_string_lossy().to_string());
    let out = run.server_cli(&[
        "fleet",
        "--server",
        &url,
        "--admin-token-file",
        &token_path,
        "campaign",
        "create",
        "--name",
        "good",
        "--label",
        "env=test",
        "--target",
        &target,
        "--version",
        "1.1.0",
        "--canary",
        "1",
        "--batch",
        "2",
        "--max-failure-ratio",
        "0.3",
        "--failure-action",
        "pause",
        "--monitor",
        "2s",
        "--delay",
        "1s",
        "--deadline",
        "90s",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "campaign create: {}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let good = created["id"].as_str().expect("id").to_string();
    wait_campaign(&server, &good, "the second wave to start", Duration::from_secs(120), |c| {
        c["waves"].as_array().is_some_and(|w| w.len() > 1 && !w[1]["started_at"].is_null())
    });
    server.restart();
    let done = wait_state(&server, &good, "completed", Duration::from_secs(240));
    assert_eq!(sends(&done), vec![1; AGENTS], "every agent sent exactly once: {done:#}");
    assert!(agent_states(&done).iter().all(|a| a["state"] == "succeeded"), "{done:#}");
    // The server read the digest once; every host runs exactly it.
    let new = format!("{app}:1.1.0@{}", registry.digest_of(&format!("{app}:1.1.0")));
    assert_eq!(done["image"], new.as_str(), "the campaign pins by digest: {done:#}");
    for agent in &agents {
        assert_eq!(run.inspect(&agent.container, "{{.Config.Image}}"), new, "{}", agent.name);
    }
    wait_for("every agent to report 1.1.0", Duration::from_secs(60), || {
        server
            .agents()
            .iter()
            .filter(|a| a["name"] != "ctl-agent")
            .all(|a| a["targets"][0]["version"] == "1.1.0")
    });
    let out =
        run.server_cli(&["fleet", "--server", &url, "--admin-token-file", &token_path, "campaign", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(listed.contains("completed") && listed.contains("aborted"), "{listed}");

    // Rolled back: every agent it upgraded returns to 1.0.0, in waves —
    // to exactly the bits it ran, pinned by the digest it reported.
    let old_pinned = format!("{old}@{}", registry.digest_of(&old));
    let answer = server.admin("POST", &format!("/v1/fleet/campaigns/{good}/rollback"), "");
    assert_eq!(answer.status, 200, "{}", answer.text());
    let back = wait_state(&server, &good, "rolled_back", Duration::from_secs(240));
    assert_eq!(sends(&back), vec![2; AGENTS], "one upgrade and one rollback each: {back:#}");
    assert!(agent_states(&back).iter().all(|a| a["rollback"] == "done"), "{back:#}");
    assert!(back["waves"]
        .as_array()
        .is_some_and(|w| w.iter().filter(|w| w["kind"] == "rollback").count() >= 3));
    for agent in &agents {
        assert_eq!(
            run.inspect(&agent.container, "{{.Config.Image}}"),
            old_pinned,
            "{} back on 1.0.0",
            agent.name
        );
    }
    for agent in &mut agents {
        assert!(agent.process.alive(), "{} exited: {}", agent.name, agent.process.output());
    }

    // The controller container upgrades itself when a campaign pins it.
    let ctl_id = server.agent_named("ctl-agent").expect("ctl-agent")["id"].as_str().expect("id").to_string();
    let body = serde_json::json!({
        "name": "self", "agents": [ctl_id], "target": ctl_container, "image": format!("{ctl}:1.1.0"),
        "canary": 1, "monitor": "2s", "deadline": "180s",
    });
    let answer = server.admin("POST", "/v1/fleet/campaigns", &body.to_string());
    assert_eq!(answer.status, 201, "{}", answer.text());
    let created: Value = serde_json::from_slice(&answer.body).expect("JSON");
    let own = created["id"].as_str().expect("id").to_string();
    let done = wait_state(&server, &own, "completed", Duration::from_secs(240));
    let own_image = format!("{ctl}:1.1.0@{}", registry.digest_of(&format!("{ctl}:1.1.0")));
    assert_eq!(done["image"], own_image.as_str(), "{done:#}");
    assert_eq!(sends(&done), vec![1], "{done:#}");
    assert_eq!(agent_states(&done)[0]["state"], "succeeded", "{done:#}");
    wait_for("the new controller to report itself", Duration::from_secs(120), || {
        server.agent_named("ctl-agent").is_some_and(|a| a["controller_image"] == own_image.as_str())
    });
    assert_eq!(run.inspect(&ctl_container, "{{.Config.Image}}"), own_image);
    run.docker(&["rm", "-f", &ctl_container]);
}

/// A host whose manifest requires signatures (`policy.verify`) is pinned
/// by a campaign of a server that does not verify: the host refuses the
/// unsigned digest, its container untouched, and the campaign learns why
/// from the host's event at once — not when its deadline runs out.
#[test]
fn a_host_refusing_an_unsigned_pin_fails_its_campaign_member_at_once_with_the_reason() {
    let run = TestRun::new("campaign_unsigned_refused");
    let registry = run.registry();
    let app = registry.repo("app");
    for v in ["1.0.0", "2.0.0"] {
        let spec = common::ImageSpec { env: vec![("TESTBOX_VERSION", v)], ..Default::default() };
        run.publish(&format!("{app}:{v}"), &spec);
    }
    let server =
        FleetServer::start(&run, &format!("sqlite://{}", run.empty_dir("db").join("f.db").display()), &[]);
    let token = server.enrolment_token(&run, &["--uses", "1"]);
    let token_file = run.write_file("fleet/secrets/enrol.token", format!("{token}\n"));
    set_mode(&token_file, 0o600);
    let key = common::cosign::Key::p256();
    run.write_file("verifying/cosign.pub", key.public_pem());
    let old = format!("{app}:1.0.0");
    let manifest = format!(
        "version: 1\npolicy:\n  verify:\n    keys: [cosign.pub]\n    require: true\ndefaults:\n  drift_interval: 5s\n  \
         health: {{stable: 1s, timeout: 20s}}\ntargets:\n  - container: {}\n    image: {old}\n",
        run.name("app")
    );
    let agent =
        HostAgent::start_with_manifest(&run, &server.url(), &token_file, "verifying", "app", &old, &manifest);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !server.agents().first().is_some_and(|a| a["targets"][0]["version"] == "1.0.0") {
        assert!(
            Instant::now() < deadline,
            "the agent never reported:
{}
{}",
            agent.process.output(),
            server.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = run.inspect(&agent.container, "{{.Id}}");

    let body = serde_json::json!({
        "name": "unsigned", "target": agent.container, "version": "2.0.0",
        "agents": [server.agents()[0]["id"]], "canary": 1, "deadline": "10m",
    });
    let answer = server.admin("POST", "/v1/fleet/campaigns", &body.to_string());
    assert_eq!(answer.status, 201, "{}", answer.text());
    let created: Value = serde_json::from_slice(&answer.body).expect("JSON");
    let id = created["id"].as_str().expect("id").to_string();
    let c = wait_campaign(&server, &id, "the member to fail", Duration::from_secs(90), |c| {
        agent_states(c).first().is_some_and(|a| a["state"] == "failed")
    });
    let reason = agent_states(&c)[0]["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("no signature"), "the host's reason: {c:#}\n{}", agent.process.output());
    assert_eq!(run.inspect(&agent.container, "{{.Id}}"), before, "the container is untouched");
    assert_eq!(run.inspect(&agent.container, "{{.Config.Image}}"), old);
}
