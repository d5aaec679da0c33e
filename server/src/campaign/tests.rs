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
    let token = store
        .create_token(3_600_000, 100, labels, &crate::access::Principal::server().audit("test", "", ""))
        .await
        .expect("campaign test step")
        .token;
    let mut ids = Vec::new();
    for i in 0..n {
        let request = EnrolRequest { token: token.clone(), name: format!("h{i}"), manifest: manifest("app") };
        let id = store.enrol(&request, "-").await.expect("campaign test step").agent_id;
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
    let id = runner::create(&store, &request("1.1.0"), None, &crate::access::Principal::server())
        .await
        .expect("campaign test step");
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
    runner::apply(&store, &id, super::engine::Command::Rollback, &crate::access::Principal::server())
        .await
        .expect("campaign test step");
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
    let sink = crate::notify::catalog::NewSink {
        name: "ops".into(),
        kind: crate::notify::sinks::SinkKind::Ntfy,
        url: "http://127.0.0.1:9/topic".into(),
        secret: None,
        events: Vec::new(),
    };
    let sink =
        store.add_sink(&sink, crate::notify::catalog::Source::Page, None).await.expect("campaign test step");
    fleet(&store, 4).await;
    let id = runner::create(&store, &request("1.1.0"), None, &crate::access::Principal::server())
        .await
        .expect("campaign test step");
    let canary = store.campaign(&id).await.expect("campaign test step").campaign.members[0].agent.clone();
    event(&store, &canary, "op-1", "1.1.0", "rolled_back", Some("health: exited with code 4")).await;
    runner::tick(&store).await.expect("campaign test step");
    let view = store.campaign_view(&id).await.expect("campaign test step");
    assert_eq!(view.summary.state, "paused");
    // The sinks are told, in the order it happened, each in its change's
    // transaction.
    let told: Vec<(String, String)> =
        sqlx::query_as("SELECT kind, payload FROM notify_outbox WHERE sink_id = $1 ORDER BY seq")
            .bind(&sink.id)
            .fetch_all(&store.pool)
            .await
            .expect("campaign test step");
    let kinds: Vec<&str> = told.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["campaign.started", "agent.op_failed", "campaign.failed"]);
    assert!(told[2].1.contains("exited with code 4"), "the reason is told: {}", told[2].1);
    assert!(view.summary.reason.as_deref().is_some_and(|r| r.contains("exited with code 4")), "{view:?}");
    assert_eq!(view.agent_states.iter().map(|a| a.sends).sum::<i64>(), 1, "nobody else was sent");
    let err = runner::apply(&store, &id, super::engine::Command::Pause, &crate::access::Principal::server())
        .await
        .expect_err("already paused");
    assert!(err.to_string().contains("only a running one"), "{err}");
}

#[tokio::test]
async fn creation_refuses_what_it_cannot_do_and_says_why() {
    let dir = tempfile::tempdir().expect("campaign test step");
    let (store, _) = open(dir.path()).await;
    fleet(&store, 2).await;
    let refuse = |r: Request| {
        let store = store.clone();
        async move {
            runner::create(&store, &r, None, &crate::access::Principal::server())
                .await
                .expect_err("refused")
                .to_string()
        }
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
    assert_eq!(
        preview["pins"],
        format!("{REG}:1.1.0"),
        "no registry access here: the tag is what a start pins"
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

fn is_conflict(e: &crate::FleetError) -> bool {
    matches!(e, crate::FleetError::Conflict(_))
}

#[tokio::test]
async fn one_campaign_at_a_time_holds_a_target_even_when_ten_start_at_once() {
    let dir = tempfile::tempdir().expect("campaign test step");
    let (store, _) = open(dir.path()).await;
    fleet(&store, 3).await;
    let starts = (0..10).map(|i| {
        let store = store.clone();
        let r = Request { name: Some(format!("c{i}")), ..request("1.1.0") };
        tokio::spawn(
            async move { runner::create(&store, &r, None, &crate::access::Principal::server()).await },
        )
    });
    let mut won = Vec::new();
    for start in starts {
        match start.await.expect("campaign test step") {
            Ok(id) => won.push(id),
            Err(e) => assert!(is_conflict(&e) && e.to_string().contains("holds target `app`"), "{e}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one of ten campaigns on the same targets starts: {won:?}");
    let first = won[0].clone();
    let second = runner::create(&store, &request("1.2.0"), None, &crate::access::Principal::server())
        .await
        .expect_err("held");
    assert!(is_conflict(&second), "409: {second}");
    let why = second.to_string();
    assert!(
        why.contains(&format!("campaign `{first}`")) && why.contains("of agent h"),
        "names the holder: {why}"
    );
    let preview = runner::plan(&store, &request("1.2.0")).await.expect_err("the preview says so too");
    assert!(is_conflict(&preview));

    // Once the first ends, the target is free; rolling the first back
    // would now fight the second, so it is refused naming it.
    runner::apply(&store, &first, super::engine::Command::Abort, &crate::access::Principal::server())
        .await
        .expect("campaign test step");
    let next = runner::create(&store, &request("1.2.0"), None, &crate::access::Principal::server())
        .await
        .expect("free after the abort");
    let refused =
        runner::apply(&store, &first, super::engine::Command::Rollback, &crate::access::Principal::server())
            .await
            .expect_err("held");
    assert!(
        is_conflict(&refused) && refused.to_string().contains(&format!("campaign `{next}`")),
        "{refused}"
    );
    assert_eq!(store.campaign_view(&first).await.expect("campaign test step").summary.state, "aborted");
}

#[tokio::test]
async fn a_pattern_matching_several_targets_on_one_host_is_refused_naming_them() {
    let dir = tempfile::tempdir().expect("campaign test step");
    let (store, _) = open(dir.path()).await;
    let labels = [("env".to_string(), "test".to_string())].into();
    let token = store
        .create_token(3_600_000, 10, labels, &crate::access::Principal::server().audit("test", "", ""))
        .await
        .expect("campaign test step")
        .token;
    let two = format!(
        "version: 1\ntargets:\n  - container: web\n    image: {REG}:1.0.0\n  - container: db\n    image: {REG}:1.0.0\n"
    );
    let id = store
        .enrol(&EnrolRequest { token, name: "both".into(), manifest: two }, "-")
        .await
        .expect("campaign test step")
        .agent_id;
    let r: Report = serde_json::from_value(json!({
        "controller_version": "0.1.0",
        "targets": [
            { "target": "web", "container": "web", "image": format!("{REG}:1.0.0"), "version": "1.0.0", "action": "up_to_date", "reason": "" },
            { "target": "db", "container": "db", "image": format!("{REG}:1.0.0"), "version": "1.0.0", "action": "up_to_date", "reason": "" },
        ],
    }))
    .expect("campaign test step");
    store.store_report(&id, &r).await.expect("campaign test step");
    let any = Request { target: "*".into(), ..request("1.1.0") };
    let why = runner::plan(&store, &any).await.expect_err("ambiguous").to_string();
    assert!(
        why.contains("matches 2 targets of agent both") && why.contains("`web`") && why.contains("`db`"),
        "{why}"
    );
    // An exact name is never ambiguous, and the preview says which target.
    let web =
        runner::plan(&store, &Request { target: "web".into(), ..request("1.1.0") }).await.expect("exact");
    assert_eq!(web.members[0].target, "web");
    let w =
        runner::plan(&store, &Request { target: "w*".into(), ..request("1.1.0") }).await.expect("one match");
    assert_eq!(w.members[0].container, "web");
}

#[tokio::test]
async fn a_revoked_agent_takes_no_pin_no_manifest_and_no_campaign() {
    let dir = tempfile::tempdir().expect("campaign test step");
    let (store, _) = open(dir.path()).await;
    let ids = fleet(&store, 2).await;
    store
        .revoke_agent(&ids[0], &crate::access::Principal::server().audit("test", "", ""))
        .await
        .expect("campaign test step");
    let pin = store.pin(&ids[0], "app", &format!("{REG}:1.1.0"), None).await.expect_err("revoked");
    assert!(is_conflict(&pin) && pin.to_string().contains("is revoked"), "{pin}");
    let put = store
        .put_manifest(&ids[0], &manifest("app"), &crate::access::Principal::server().audit("test", "", ""))
        .await
        .expect_err("revoked");
    assert!(put.to_string().contains("is revoked"), "{put}");
    let named = Request { label: None, agents: vec![ids[0].clone()], ..request("1.1.0") };
    assert!(runner::plan(&store, &named).await.expect_err("revoked").to_string().contains("revoked"));
    let c = runner::plan(&store, &request("1.1.0")).await.expect("the label leaves it out");
    assert_eq!(c.members.iter().map(|m| m.agent.as_str()).collect::<Vec<_>>(), vec![ids[1].as_str()]);
}

#[tokio::test]
async fn a_rollback_leaves_no_agent_on_the_campaigns_image_whatever_its_upgrade_did() {
    let dir = tempfile::tempdir().expect("campaign test step");
    let (store, _) = open(dir.path()).await;
    fleet(&store, 4).await;
    // All four pinned at once; continue through failures.
    let r = Request {
        canary: Some(0),
        batch: Some(json!(4)),
        max_failure_ratio: Some(1.0),
        deadline: Some("1s".into()),
        ..request("1.1.0")
    };
    let id = runner::create(&store, &r, None, &crate::access::Principal::server())
        .await
        .expect("campaign test step");
    let order: Vec<String> = store
        .campaign(&id)
        .await
        .expect("campaign test step")
        .campaign
        .members
        .iter()
        .map(|m| m.agent.clone())
        .collect();
    assert!(all_pinned_to(&store, &order, ":1.1.0").await, "all four pinned");
    // h0 commits; h1's health gate rolls it back; h2 fails; h3 is offline.
    event(&store, &order[0], "op-0", "1.1.0", "committed", None).await;
    report(&store, &order[0], "1.1.0").await;
    event(&store, &order[1], "op-1", "1.1.0", "rolled_back", Some("health: exited with 4")).await;
    event(&store, &order[2], "op-2", "1.1.0", "failed", Some("pull: manifest unknown")).await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    runner::tick(&store).await.expect("campaign test step");
    let states: Vec<String> = store
        .campaign_view(&id)
        .await
        .expect("campaign test step")
        .agent_states
        .iter()
        .map(|a| format!("{:?}", a.state))
        .collect();
    assert_eq!(states[1..], ["RolledBack", "Failed", "TimedOut"], "{states:?}");

    runner::apply(&store, &id, super::engine::Command::Rollback, &crate::access::Principal::server())
        .await
        .expect("campaign test step");
    let view = store.campaign_view(&id).await.expect("campaign test step");
    assert!(all_pinned_to(&store, &order, ":1.0.0").await, "every pinned agent is pinned back: {view:?}");
    assert!(view.still_pinned.is_empty(), "{:?}", view.still_pinned);
    let sends = store.campaign_sends(&id).await.expect("campaign test step");
    assert!(
        order.iter().all(|a| sends.get(a) == Some(&2)),
        "one upgrade and one rollback pin each: {sends:?}"
    );
}

#[tokio::test]
async fn abort_leaves_the_pinned_listed_and_abort_and_revert_brings_them_back() {
    let dir = tempfile::tempdir().expect("campaign test step");
    let (store, _) = open(dir.path()).await;
    fleet(&store, 3).await;
    let id = runner::create(&store, &request("1.1.0"), None, &crate::access::Principal::server())
        .await
        .expect("campaign test step");
    let canary = store.campaign(&id).await.expect("campaign test step").campaign.members[0].agent.clone();
    runner::apply(&store, &id, super::engine::Command::Abort, &crate::access::Principal::server())
        .await
        .expect("campaign test step");
    let view = store.campaign_view(&id).await.expect("campaign test step");
    assert_eq!(view.still_pinned.len(), 1, "{:?}", view.still_pinned);
    assert_eq!(view.still_pinned[0].agent_id, canary);
    assert!(view.still_pinned[0].why.contains("aborted without revert"), "{}", view.still_pinned[0].why);

    let second = runner::create(&store, &request("1.1.0"), None, &crate::access::Principal::server())
        .await
        .expect("campaign test step");
    runner::apply(
        &store,
        &second,
        super::engine::Command::AbortAndRevert,
        &crate::access::Principal::server(),
    )
    .await
    .expect("campaign test step");
    let view = store.campaign_view(&second).await.expect("campaign test step");
    assert_eq!(view.summary.state, "rolling_back");
    assert!(
        view.still_pinned.is_empty(),
        "the canary's pin back is written at once: {:?}",
        view.still_pinned
    );
    assert!(store.desired(&canary).await.expect("campaign test step").manifest.contains(":1.0.0"));
}

/// Whether every agent's manifest contains `needle`.
async fn all_pinned_to(store: &Store, agents: &[String], needle: &str) -> bool {
    for a in agents {
        if !store.desired(a).await.expect("campaign test step").manifest.contains(needle) {
            return false;
        }
    }
    true
}

#[tokio::test]
async fn waves_spread_across_a_label_and_the_timeline_says_who_did_what() {
    let dir = tempfile::tempdir().expect("campaign test step");
    let (store, _) = open(dir.path()).await;
    // Six agents: four in eu, two in us (enrolled with those labels).
    let mut by_region = Vec::new();
    for (region, n) in [("eu", 4), ("us", 2)] {
        let labels =
            [("env".to_string(), "test".to_string()), ("region".to_string(), region.to_string())].into();
        let token = store
            .create_token(3_600_000, 10, labels, &crate::access::Principal::server().audit("test", "", ""))
            .await
            .expect("campaign test step")
            .token;
        for i in 0..n {
            let request = EnrolRequest {
                token: token.clone(),
                name: format!("{region}{i}"),
                manifest: manifest("app"),
            };
            let id = store.enrol(&request, "-").await.expect("campaign test step").agent_id;
            report(&store, &id, "1.0.0").await;
            by_region.push((id, region));
        }
    }
    let region = |agent: &str| by_region.iter().find(|(id, _)| id == agent).map(|(_, r)| *r).unwrap_or("?");
    let spread = Request { spread_by: Some("region".into()), canary: Some(0), ..request("1.1.0") };
    let c = runner::plan(&store, &spread).await.expect("campaign test step");
    let order: Vec<&str> = c.members.iter().map(|m| region(&m.agent)).collect();
    assert_eq!(order, ["eu", "us", "eu", "us", "eu", "eu"], "round-robin across regions");
    let waves: Vec<Vec<&str>> = (0..3)
        .map(|w| c.members.iter().filter(|m| m.wave == w).map(|m| region(&m.agent)).collect())
        .collect();
    assert_eq!(waves[0], ["eu", "us"], "the first wave is not one region's outage");
    let both = Request { shuffle: Some(true), ..spread.clone() };
    assert!(runner::plan(&store, &both).await.expect_err("both").to_string().contains("not both"));
    let shuffled = runner::plan(&store, &Request { shuffle: Some(true), ..request("1.1.0") })
        .await
        .expect("campaign test step");
    assert_eq!(shuffled.members.len(), 6);

    // The timeline: created by the test, paused by the server's ratio
    // with its reason, resumed by the admin.
    let id = runner::create(
        &store,
        &Request { canary: Some(1), ..request("1.1.0") },
        None,
        &crate::access::Principal::page_user("ops-alice"),
    )
    .await
    .expect("campaign test step");
    let canary = store.campaign(&id).await.expect("campaign test step").campaign.members[0].agent.clone();
    event(&store, &canary, "op-c", "1.1.0", "rolled_back", Some("health: exited with 4")).await;
    runner::tick(&store).await.expect("campaign test step");
    runner::apply(
        &store,
        &id,
        super::engine::Command::Resume,
        &crate::access::Principal::page_user("ops-bob"),
    )
    .await
    .expect("campaign test step");
    let view = store.campaign_view(&id).await.expect("campaign test step");
    let lines: Vec<(String, String)> = view.timeline.iter().map(|e| (e.what.clone(), e.by.clone())).collect();
    let has = |what: &str, by: &str| lines.iter().any(|(w, b)| w == what && b == by);
    assert!(has("created", "ops-alice (page)") && has("canary started", "server"), "{lines:?}");
    assert!(has("paused", "server") && has("resumed", "ops-bob (page)"), "{lines:?}");
    let paused = view.timeline.iter().find(|e| e.what == "paused").and_then(|e| e.detail.clone());
    assert!(paused.is_some_and(|d| d.contains("canary failed") && d.contains("exited with 4")));
    assert!(view.timeline.windows(2).all(|w| w[0].at_ms <= w[1].at_ms), "oldest first");
}

#[tokio::test]
async fn a_fleet_filter_selects_with_every_condition_and_offline_agents_can_be_left_out() {
    let dir = tempfile::tempdir().expect("campaign test step");
    let (store, _) = open(dir.path()).await;
    let mut ids = Vec::new();
    for (region, tier, version) in [
        ("eu", "web", "1.0.0"),
        ("eu", "web", "1.1.0"),
        ("eu", "db", "1.0.0"),
        ("us", "web", "1.0.0"),
        ("eu", "web", "1.0.0"),
    ] {
        let labels = [
            ("env".to_string(), "test".to_string()),
            ("region".to_string(), region.to_string()),
            ("tier".to_string(), tier.to_string()),
        ]
        .into();
        let token = store
            .create_token(3_600_000, 10, labels, &crate::access::Principal::server().audit("test", "", ""))
            .await
            .expect("campaign test step")
            .token;
        let request =
            EnrolRequest { token, name: format!("{region}-{tier}-{}", ids.len()), manifest: manifest("app") };
        let id = store.enrol(&request, "-").await.expect("campaign test step").agent_id;
        report(&store, &id, version).await;
        ids.push(id);
    }
    // The last one has not been seen for an hour: offline.
    sqlx::query("UPDATE agents SET last_seen = $1 WHERE id = $2")
        .bind(crate::store::now_ms() - 3_600_000)
        .bind(&ids[4])
        .execute(&store.pool)
        .await
        .expect("campaign test step");
    let filter = super::spec::FleetFilter {
        labels: vec!["region=eu".into(), "tier=web".into()],
        version: Some("1.0.0".into()),
        ..Default::default()
    };
    let r = Request { label: None, filter: Some(filter.clone()), ..request("1.2.0") };
    let c = runner::plan(&store, &r).await.expect("campaign test step");
    let picked: Vec<&str> = c.members.iter().map(|m| m.agent.as_str()).collect();
    assert_eq!(picked, vec![ids[0].as_str(), ids[4].as_str()], "eu AND web AND on 1.0.0, offline or not");
    assert_eq!(store.offline_members(&c).await.expect("campaign test step"), vec![ids[4].clone()]);
    let without = Request { exclude_offline: Some(true), ..r.clone() };
    let c = runner::plan(&store, &without).await.expect("campaign test step");
    assert_eq!(c.members.len(), 1, "the offline one left out");
    assert!(matches!(c.spec.selection, super::spec::Selection::Filter(ref f) if *f == filter));
    let bad = super::spec::FleetFilter { labels: vec!["region".into()], ..Default::default() };
    let e = runner::plan(&store, &Request { label: None, filter: Some(bad), ..request("1.2.0") })
        .await
        .expect_err("a label without =");
    assert!(e.to_string().contains("filter.labels `region`: expected KEY=VALUE"), "{e}");
    let both = Request { filter: Some(filter), ..request("1.2.0") };
    assert!(runner::plan(&store, &both)
        .await
        .expect_err("two selections")
        .to_string()
        .contains("exactly one of"));
}
