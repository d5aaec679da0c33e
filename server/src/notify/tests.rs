//! Notifications over the real store (SQLite, or the PostgreSQL of
//! `FLEET_TEST_POSTGRES`): sinks, what is queued for whom and in which
//! order, presence notices once per episode.

use std::time::Duration;

use serde_json::json;

use super::catalog::{NewSink, Source};
use super::sinks::SinkKind;
use super::{Event, Kind};
use crate::Store;
use container_upgrader::protocol::EnrolRequest;
use container_upgrader::report::OpEvent;

async fn open() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("notify test step");
    let url = crate::tests::database(dir.path()).await;
    (Store::open(&url).await.expect("notify test step"), dir)
}

fn sink(name: &str, events: &[&str]) -> NewSink {
    NewSink {
        name: name.into(),
        kind: SinkKind::Webhook,
        url: "http://127.0.0.1:9/hook".into(),
        secret: Some("0123456789abcdef".into()),
        events: events.iter().map(|s| s.to_string()).collect(),
    }
}

async fn agent(store: &Store) -> String {
    let token = store
        .create_token(
            3_600_000,
            1,
            Default::default(),
            &crate::access::Principal::server().audit("test", "", ""),
        )
        .await
        .expect("notify test step")
        .token;
    let manifest =
        "version: 1\ntargets:\n  - container: app\n    image: 127.0.0.1:5000/app:1.0.0\n".to_string();
    let request = EnrolRequest { token, name: "host-1".into(), manifest };
    store.enrol(&request, "-").await.expect("notify test step").agent_id
}

fn op(id: &str, outcome: &str) -> OpEvent {
    serde_json::from_value(json!({
        "op_id": id, "container": "app", "from": "127.0.0.1:5000/app:1.0.0", "to": "127.0.0.1:5000/app:1.1.0",
        "outcome": outcome, "reason": "health: exited with 4", "started_at": "2026-01-01T00:00:00Z",
        "ended_at": "2026-01-01T00:00:05Z", "duration_ms": 5000, "controller_version": "0.1.0",
    }))
    .expect("notify test step")
}

/// Every event queued for `sink`, in order (delivering none).
async fn queued(store: &Store, sink: &str) -> Vec<Event> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT payload FROM notify_outbox WHERE sink_id = $1 ORDER BY seq")
            .bind(sink)
            .fetch_all(&store.pool)
            .await
            .expect("notify test step");
    rows.iter().map(|(p,)| serde_json::from_str(p).expect("notify test step")).collect()
}

#[tokio::test]
async fn sinks_are_added_listed_without_secrets_and_a_name_is_taken_once() {
    let (store, _dir) = open().await;
    let added = store.add_sink(&sink("ops", &[]), Source::Page, None).await.expect("notify test step");
    assert_eq!(added.secret, Some("set"));
    let listed = serde_json::to_string(&store.sinks().await.expect("notify test step")).expect("json");
    assert!(!listed.contains("0123456789abcdef"), "{listed}");
    let again = store.add_sink(&sink("ops", &[]), Source::Page, None).await.expect_err("taken");
    assert!(matches!(again, crate::FleetError::Conflict(_)), "{again}");
    let bad = NewSink { url: "file:///etc/passwd".into(), ..sink("x", &[]) };
    assert!(matches!(store.add_sink(&bad, Source::Page, None).await, Err(crate::FleetError::Invalid(_))));
    store.remove_sink(&added.id, None).await.expect("notify test step");
    assert!(store.sinks().await.expect("notify test step").is_empty());
}

#[tokio::test]
async fn a_failed_op_is_queued_once_for_subscribed_sinks_in_order_behind_tests() {
    let (store, _dir) = open().await;
    let all = store.add_sink(&sink("all", &[]), Source::Page, None).await.expect("notify test step").id;
    let campaigns = store
        .add_sink(&sink("campaigns", &["campaign.failed"]), Source::Page, None)
        .await
        .expect("notify test step")
        .id;
    let id = agent(&store).await;
    store.test_sink(&all, None).await.expect("notify test step");
    store.store_event(&id, &op("op-1", "rolled_back")).await.expect("notify test step");
    store.store_event(&id, &op("op-1", "rolled_back")).await.expect("a repeat");
    store.store_event(&id, &op("op-2", "committed")).await.expect("notify test step");
    store.store_event(&id, &op("op-3", "failed")).await.expect("notify test step");
    let got = queued(&store, &all).await;
    let kinds: Vec<Kind> = got.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [Kind::Test, Kind::AgentOpFailed, Kind::AgentOpFailed]);
    assert_eq!(got[1].op.as_ref().map(|o| o.op_id.as_str()), Some("op-1"));
    assert_eq!(got[2].op.as_ref().map(|o| o.op_id.as_str()), Some("op-3"));
    assert!(
        got[1].summary.contains("host-1") && got[1].summary.contains("rolled back"),
        "{}",
        got[1].summary
    );
    assert!(queued(&store, &campaigns).await.is_empty(), "not subscribed, and tests go only where asked");
    let info = store.sink(&all).await.expect("notify test step");
    assert_eq!(info.backlog, 3);
    // Head of line: the oldest waits first; delivering it moves on.
    let head = store.head(&all).await.expect("notify test step").expect("a head");
    store.attempt_failed(&all, head.seq, "refused", 0).await.expect("notify test step");
    assert_eq!(store.head(&all).await.expect("notify test step").map(|h| h.seq), Some(head.seq));
    store.delivered(&all, head.seq).await.expect("notify test step");
    let next = store.head(&all).await.expect("notify test step").expect("a head");
    assert!(next.seq > head.seq);
    assert_eq!(store.sink(&all).await.expect("notify test step").backlog, 2);
}

#[tokio::test]
async fn an_offline_agent_is_told_once_per_episode_and_again_when_back() {
    let (store, _dir) = open().await;
    let s = store.add_sink(&sink("all", &[]), Source::Page, None).await.expect("notify test step").id;
    let id = agent(&store).await;
    let quiet = Duration::from_secs(60);
    assert_eq!(store.scan_presence(quiet, true).await.expect("notify test step"), 0, "just enrolled");
    let long_ago = crate::store::now_ms() - 3_600_000;
    sqlx::query("UPDATE agents SET last_seen = $1 WHERE id = $2")
        .bind(long_ago)
        .bind(&id)
        .execute(&store.pool)
        .await
        .expect("notify test step");
    assert_eq!(
        store.scan_presence(quiet, false).await.expect("notify test step"),
        0,
        "not before this server has watched for the whole threshold"
    );
    assert_eq!(store.scan_presence(quiet, true).await.expect("notify test step"), 1);
    assert_eq!(store.scan_presence(quiet, true).await.expect("notify test step"), 0, "once per episode");
    sqlx::query("UPDATE agents SET last_seen = $1 WHERE id = $2")
        .bind(crate::store::now_ms() + 1)
        .bind(&id)
        .execute(&store.pool)
        .await
        .expect("notify test step");
    assert_eq!(store.scan_presence(quiet, false).await.expect("notify test step"), 1, "back online at once");
    let kinds: Vec<Kind> = queued(&store, &s).await.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [Kind::AgentOffline, Kind::AgentOnline]);
}

#[tokio::test]
async fn the_file_s_sinks_are_synced_and_cannot_be_removed_on_the_page() {
    let (store, _dir) = open().await;
    store.add_sink(&sink("page", &[]), Source::Page, None).await.expect("notify test step");
    store.sync_file_sinks(&[sink("filed", &[]), sink("gone", &[])]).await.expect("notify test step");
    store.sync_file_sinks(&[sink("filed", &["agent.offline"])]).await.expect("notify test step");
    let sinks = store.sinks().await.expect("notify test step");
    let names: Vec<&str> = sinks.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["filed", "page"]);
    assert_eq!(sinks[0].events, ["agent.offline"]);
    let e = store.remove_sink(&sinks[0].id, None).await.expect_err("a file's sink");
    assert!(e.to_string().contains("--notifications-file"), "{e}");
}

const ADMIN: &str = "admin-token-for-notify-tests";

/// The API and the page in-process: admin only, sinks added, listed
/// without secrets, tested and removed; the page's forms need the CSRF
/// token.
#[tokio::test]
async fn the_api_and_the_page_manage_sinks_for_the_admin_only() {
    let (store, _dir) = open().await;
    let base = crate::tests::serve_in_process(&store, ADMIN).await;
    let http = container_upgrader::tls::http_client("test", |b| {
        b.timeout(Duration::from_secs(20)).redirect(reqwest::redirect::Policy::none())
    })
    .expect("notify test step");
    let url = |p: &str| format!("{base}{p}");
    let anonymous = http.get(url("/v1/fleet/notifications")).send().await.expect("notify test step");
    assert_eq!(anonymous.status(), 401);
    let body = json!({"name": "ops", "kind": "webhook", "url": "http://127.0.0.1:9/h", "secret": "0123456789abcdef"});
    let refused =
        http.post(url("/v1/fleet/notifications")).json(&body).send().await.expect("notify test step");
    assert_eq!(refused.status(), 401, "adding needs the admin");
    let bad =
        json!({"name": "x", "kind": "webhook", "url": "file:///etc/passwd", "secret": "0123456789abcdef"});
    let answer = http
        .post(url("/v1/fleet/notifications"))
        .bearer_auth(ADMIN)
        .json(&bad)
        .send()
        .await
        .expect("notify test step");
    assert_eq!(answer.status(), 422);
    assert!(answer.text().await.expect("notify test step").contains("only http:// and https://"));
    let unknown = json!({"name": "x", "kind": "pager", "url": "https://h/x"});
    let answer = http
        .post(url("/v1/fleet/notifications"))
        .bearer_auth(ADMIN)
        .json(&unknown)
        .send()
        .await
        .expect("notify test step");
    assert_eq!(answer.status(), 400);
    let added = http
        .post(url("/v1/fleet/notifications"))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .expect("notify test step");
    assert_eq!(added.status(), 201);
    let added: serde_json::Value = added.json().await.expect("notify test step");
    let id = added["id"].as_str().expect("an id").to_string();
    let listed = http
        .get(url("/v1/fleet/notifications"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("notify test step")
        .text()
        .await
        .expect("notify test step");
    assert!(listed.contains("\"secret\":\"set\"") && !listed.contains("0123456789abcdef"), "{listed}");
    let tested = http
        .post(url(&format!("/v1/fleet/notifications/{id}/test")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("notify test step");
    assert_eq!(tested.status(), 202);
    assert_eq!(store.sink(&id).await.expect("notify test step").backlog, 1);

    // The page: log in, see the sink, a test without the CSRF token is
    // refused, with it queued.
    let login = http
        .post(url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("secret={ADMIN}"))
        .send()
        .await
        .expect("notify test step");
    let cookie = login.headers()["set-cookie"].to_str().expect("notify test step");
    let cookie = cookie.split(';').next().expect("notify test step").to_string();
    let page = http
        .get(url("/notifications"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("notify test step")
        .text()
        .await
        .expect("notify test step");
    assert!(
        page.contains(">ops<") && page.contains("1 waiting") && !page.contains("0123456789abcdef"),
        "{page}"
    );
    let marker = r#"name="csrf" value=""#;
    let at = page.find(marker).expect("a CSRF field") + marker.len();
    let csrf = page[at..].split('"').next().expect("notify test step").to_string();
    let post = |path: String, form: String| {
        http.post(url(&path))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
    };
    let forged =
        post(format!("/notifications/{id}/test"), "csrf=wrong".into()).await.expect("notify test step");
    assert_eq!(forged.status(), 403);
    let ok =
        post(format!("/notifications/{id}/test"), format!("csrf={csrf}")).await.expect("notify test step");
    assert_eq!(ok.status(), 303);
    assert_eq!(store.sink(&id).await.expect("notify test step").backlog, 2);
    let add = format!("csrf={csrf}&name=phone&kind=ntfy&url=https%3A%2F%2Fntfy.sh%2Ft&secret=&events=agent.offline%2C+campaign.failed");
    let added = post("/notifications".into(), add).await.expect("notify test step");
    assert_eq!(added.status(), 303);
    let phone = store.sinks().await.expect("notify test step").into_iter().find(|s| s.name == "phone");
    let phone = phone.expect("added on the page");
    assert_eq!(phone.events, ["agent.offline", "campaign.failed"]);
    assert_eq!(phone.secret, None);
    let removed = post(format!("/notifications/{}/remove", phone.id), format!("csrf={csrf}"))
        .await
        .expect("notify test step");
    assert_eq!(removed.status(), 303);
    let deleted = http
        .delete(url(&format!("/v1/fleet/notifications/{id}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("notify test step");
    assert_eq!(deleted.status(), 204);
    assert!(store.sinks().await.expect("notify test step").is_empty());
    // Each change wrote its audit row, none with a secret; the refused
    // ones (no token, bad URL, forged form) wrote none.
    let filter =
        crate::access::audit::AuditFilter { action: Some("notification".into()), ..Default::default() };
    let log = store.audit_log(&filter).await.expect("notify test step").entries;
    let mut actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    actions.reverse();
    assert_eq!(
        actions,
        [
            "notification.add",
            "notification.test",
            "notification.test",
            "notification.add",
            "notification.remove",
            "notification.remove"
        ]
    );
    assert!(log.iter().all(|e| !e.summary.contains("0123456789abcdef")), "{log:?}");
    assert!(log.iter().any(|e| e.summary.contains("secret set")), "{log:?}");
}
