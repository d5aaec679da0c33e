//! Campaigns over the real store (SQLite in a temporary directory, or the
//! PostgreSQL of `FLEET_TEST_POSTGRES` like the fleet's own tests), with
//! agents played by reports and events: pins land in the manifests, a
//! restart resumes without a second send, commands and validation.

use serde_json::json;

use super::runner;
use super::spec::Request;
use crate::Store;
use container_upgrader::protocol::{EnrolRequest, Report};
use container_upgrader::report::OpEvent;

const REG: &str = "127.0.0.1:5000/app";

fn manifest(container: &str) -> String {
    format!(
        "version: 1\npolicy:\n  allowed_images: [\"127.0.0.1:5000/*\"]\ntargets:\n  - container: {container}\n    image: {REG}:1.0.0\n"
    )
}

/// A fresh database in `dir` (or on `FLEET_TEST_POSTGRES`), opened; its URL
/// too, to open it again as a restarted server would.
async fn open(dir: &std::path::Path) -> (Store, String) {
    let url = crate::tests::database(dir).await;
    (Store::open(&url).await.expect("campaign test step"), url)
}

/// `n` agents named h0… each running `app` on 1.0.0; their ids.
async fn fleet(store: &Store, n: usize) -> Vec<String> {
    let labels = [("env".to_string(), "test".to_string())].into();
    let token = store.create_token(3_600_000, 100, labels).await.expect("campaign test step").token;
    let mut ids = Vec::new();
    for i in 0..n {
        let request = EnrolRequest { token: token.clone(), name: format!("h{i}"), manifest: manifest("app") };
        let id = store.enrol(&request).await.expect("campaign test step").agent_id;
        report(store, &id, "1.0.0").await;
        ids.push(id);
    }
    ids
}

async fn report(store: &Store, agent: &str, version: &str) {
    let r: Report = serde_json::from_value(json!({
        "controller_version": "0.1.0",
        "targets": [{ "target": "app", "container": "app", "image": format!("{REG}:{version}"),
                      "version": version, "action": "up_to_date", "reason": "" }],
    }))
    .expect("campaign test step");
    store.store_report(agent, &r).await.expect("campaign test step");
}

async fn event(store: &Store, agent: &str, op: &str, to: &str, outcome: &str, reason: Option<&str>) {
    let e: OpEvent = serde_json::from_value(json!({
        "op_id": op, "container": "app", "from": format!("{REG}:1.0.0"), "to": format!("{REG}:{to}"),
        "outcome": outcome, "reason": reason, "started_at": "2026-01-01T00:00:00Z",
        "ended_at": "2026-01-01T00:00:05Z", "duration_ms": 5000, "controller_version": "0.1.0",
    }))
    .expect("campaign test step");
    store.store_event(agent, &e).await.expect("campaign test step");
}

fn request(version: &str) -> Request {
    Request {
        label: Some("env=test".into()),
        target: "app".into(),
        version: Some(version.into()),
        canary: Some(1),
        batch: Some(json!(2)),
        monitor: Some("0s".into()),
        max_failure_ratio: Some(0.3),
        ..Request::default()
    }
}

async fn pinned(store: &Store, agent: &str) -> bool {
    store.desired(agent).await.expect("campaign test step").manifest.contains(":1.1.0")
}

#[tokio::test]
async fn a_campaign_pins_in_waves_and_a_restart_never_sends_twice() {
    let dir = tempfile::tempdir().expect("campaign test step");
    let (store, url) = open(dir.path()).await;
    let ids = fleet(&store, 5).await;
    let id = runner::create(&store, &request("1.1.0"), None).await.expect("campaign test step");
    let c = store.campaign(&id).await.expect("campaign test step").campaign;
    assert_eq!(c.spec.image, format!("{REG}:1.1.0"), "the version resolved in the agents' repository");
    let order: Vec<String> = c.members.iter().map(|m| m.agent.clone()).collect();
    assert!(pinned(&store, &order[0]).await, "the canary is pinned at once");
    assert!(!pinned(&store, &order[1]).await);

    // The server restarts: a new store over the same database.
    store.close().await;
    let store = Store::open(&url).await.expect("campaign test step");
    runner::tick(&store).await.expect("campaign test step");
    let sends = store.campaign_sends(&id).await.expect("campaign test step");
    assert_eq!(sends.values().sum::<i64>(), 1, "still one pin: {sends:?}");

    // Each agent commits what it was pinned to; waves follow.
    for _ in 0..6 {
        for (i, agent) in order.iter().enumerate() {
            if pinned(&store, agent).await {
                event(&store, agent, &format!("op-{i}"), "1.1.0", "committed", None).await;
                report(&store, agent, "1.1.0").await;
            }
        }
        runner::tick(&store).await.expect("campaign test step");
    }
    let view = store.campaign_view(&id).await.expect("campaign test step");
    assert_eq!(view.summary.state, "completed", "{view:?}");
    assert!(view.agent_states.iter().all(|a| a.sends == 1 && a.name.starts_with('h')));
    assert_eq!(view.waves.len(), 3);
    assert_eq!(ids.len(), 5);

    // Rolled back: every agent goes back to 1.0.0, once each.
    runner::apply(&store, &id, super::engine::Command::Rollback).await.expect("campaign test step");
    for _ in 0..6 {
        for (i, agent) in order.iter().enumerate() {
            let text = store.desired(agent).await.expect("campaign test step").manifest;
            if text.contains(":1.0.0") {
                event(&store, agent, &format!("back-{i}"), "1.0.0", "committed", None).await;
            }
        }
        runner::tick(&store).await.expect("campaign test step");
    }
    let view = store.campaign_view(&id).await.expect("campaign test step");
    assert_eq!(view.summary.state, "rolled_back", "{view:?}");
    assert!(view.agent_states.iter().all(|a| a.sends == 2));
}

#[tokio::test]
async fn a_failing_canary_pauses_the_campaign_with_the_agents_reason() {
    let dir = tempfile::tempdir().expect("campaign test step");
    let (store, _) = open(dir.path()).await;
    fleet(&store, 4).await;
    let id = runner::create(&store, &request("1.1.0"), None).await.expect("campaign test step");
    let canary = store.campaign(&id).await.expect("campaign test step").campaign.members[0].agent.clone();
    event(&store, &canary, "op-1", "1.1.0", "rolled_back", Some("health: exited with code 4")).await;
    runner::tick(&store).await.expect("campaign test step");
    let view = store.campaign_view(&id).await.expect("campaign test step");
    assert_eq!(view.summary.state, "paused");
    assert!(view.summary.reason.as_deref().is_some_and(|r| r.contains("exited with code 4")), "{view:?}");
    assert_eq!(view.agent_states.iter().map(|a| a.sends).sum::<i64>(), 1, "nobody else was sent");
    let err = runner::apply(&store, &id, super::engine::Command::Pause).await.expect_err("already paused");
    assert!(err.to_string().contains("only a running one"), "{err}");
}

#[tokio::test]
async fn creation_refuses_what_it_cannot_do_and_says_why() {
    let dir = tempfile::tempdir().expect("campaign test step");
    let (store, _) = open(dir.path()).await;
    fleet(&store, 2).await;
    let refuse = |r: Request| {
        let store = store.clone();
        async move { runner::create(&store, &r, None).await.expect_err("refused").to_string() }
    };
    let no_target = Request { target: "nope".into(), ..request("1.1.0") };
    assert!(refuse(no_target).await.contains("no agent matches"));
    let both = Request { image: Some(format!("{REG}:2")), ..request("1.1.0") };
    assert!(refuse(both).await.contains("exactly one of image"));
    let ratio = Request { max_failure_ratio: Some(2.0), ..request("1.1.0") };
    assert!(refuse(ratio).await.contains("from 0 to 1"));
    let stranger = Request { label: None, agents: vec!["ghost".into()], ..request("1.1.0") };
    assert!(refuse(stranger).await.contains("no agent `ghost`"));
    let below = Request { label: None, below: Some("1.0.0".into()), ..request("1.1.0") };
    assert!(refuse(below).await.contains("no agent matches"), "nobody runs below 1.0.0");
    let outside =
        Request { version: None, image: Some("elsewhere.example/app:2".into()), ..request("1.1.0") };
    let why = refuse(outside).await;
    assert!(why.contains("2 agent(s) would refuse") && why.contains("allowed_images"), "{why}");
    let preview =
        runner::plan(&store, &Request { label: None, below: Some("1.1.0".into()), ..request("1.1.0") })
            .await
            .expect("campaign test step");
    assert_eq!(preview.members.len(), 2);
}

#[tokio::test]
async fn the_api_creates_previews_lists_shows_and_refuses_with_reasons() {
    let dir = tempfile::tempdir().expect("campaign test step");
    let (store, _) = open(dir.path()).await;
    fleet(&store, 3).await;
    let base = format!("{}/v1/fleet/campaigns", crate::tests::serve_in_process(&store, "admin").await);
    let http =
        container_upgrader::tls::http_client("test", |b| b.timeout(std::time::Duration::from_secs(20)))
            .expect("campaign test step");
    let call = |method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
        let mut r = http.request(method, format!("{base}{path}")).bearer_auth("admin");
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let answer = r.send().await.expect("campaign test step");
            let status = answer.status().as_u16();
            (status, answer.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    use reqwest::Method;
    let body = json!({"label": "env=test", "target": "app", "version": "1.1.0", "canary": 1, "batch": "50%"});
    let (status, preview) = call(Method::POST, "/preview", Some(body.clone())).await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(
        preview["waves"].as_array().map(Vec::len),
        Some(2),
        "the canary, then 50% of 3 rounded up: {preview}"
    );
    let (status, created) = call(Method::POST, "", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("campaign test step").to_string();
    assert_eq!(created["state"], "running");
    assert_eq!(created["agent_states"][0]["state"], "sent");
    let (status, listed) = call(Method::GET, "", None).await;
    assert_eq!((status, listed[0]["id"].as_str()), (200, Some(id.as_str())));
    let (status, paused) = call(Method::POST, &format!("/{id}/pause"), None).await;
    assert_eq!((status, paused["state"].as_str()), (200, Some("paused")));
    let (status, e) = call(Method::POST, &format!("/{id}/pause"), None).await;
    assert_eq!(status, 409, "{e}");
    let (status, e) = call(Method::POST, &format!("/{id}/explode"), None).await;
    assert!(status == 404 && e["error"].as_str().is_some_and(|e| e.contains("pause, resume")), "{e}");
    let (status, e) = call(Method::GET, "/nope", None).await;
    assert_eq!(status, 404, "{e}");
    let (status, e) =
        call(Method::POST, "", Some(json!({"target": "app", "label": "env=test", "bogus": 1}))).await;
    assert!(status == 400 && e["error"].as_str().is_some_and(|e| e.contains("bogus")), "{e}");
    let bad_window =
        json!({"label": "env=test", "target": "app", "version": "1.1.0", "window": {"hours": "9-5"}});
    let (status, e) = call(Method::POST, "", Some(bad_window)).await;
    assert!(status == 422 && e["error"].as_str().is_some_and(|e| e.contains("HH:MM-HH:MM")), "{e}");
    let answer = http.get(&base).send().await.expect("campaign test step");
    assert_eq!(answer.status().as_u16(), 401, "no admin token");
}
