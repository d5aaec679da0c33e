//! The server in-process: SQLite in a temporary directory, the router on
//! 127.0.0.1:0, spoken to with reqwest as agents and the admin would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use super::protocol::{self, EnrolResponse};
use super::{store, Store};

const ADMIN: &str = "admin-token-for-tests";

const MANIFEST: &str = "version: 1
policy:
  allowed_images: [\"127.0.0.1:5000/*\"]
targets:
  - container: web   # the front
    image: 127.0.0.1:5000/nginx:1.25.3
  - selector: {label: \"tier=edge\"}
    image: 127.0.0.1:5000/proxy:2.0.0
";

struct Fleet {
    base: String,
    store: Store,
    http: Client,
    _dir: tempfile::TempDir,
}

/// SQLite in a temporary directory; with `FLEET_TEST_POSTGRES` set to a
/// server's URL (`postgres://postgres@127.0.0.1:55432/postgres`), a fresh
/// database there instead, so the same tests prove the SQL portable.
pub(crate) async fn database(dir: &std::path::Path) -> String {
    let Ok(admin) = std::env::var("FLEET_TEST_POSTGRES") else {
        return store::sqlite_url(&dir.join("fleet.db"));
    };
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&admin).await.expect("fleet test step");
    let name = format!("fleet_test_{}", super::secret::new_id().expect("fleet test step"));
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&pool).await.expect("fleet test step");
    pool.close().await;
    let (server, _) = admin.rsplit_once('/').expect("fleet test step");
    format!("{server}/{name}")
}

/// Serves the fleet API and page over `store` on a loopback port, with
/// `admin` as the admin token, for the rest of the test; its base URL.
pub(crate) async fn serve_in_process(store: &Store, admin: &str) -> String {
    serve_with_registry(store, admin, None).await
}

/// [`serve_in_process`] with the server's registry access (what pins a
/// campaign's image by digest) set to `registry`.
pub(crate) async fn serve_with_registry(
    store: &Store,
    admin: &str,
    registry: Option<crate::versions::CheckerConfig>,
) -> String {
    let state = crate::state::FleetState {
        store: store.clone(),
        admin_token: Arc::from(admin),
        offline_after: 3,
        new_repository: Arc::default(),
        page: Default::default(),
        registry,
        guards: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("fleet test step");
    let base = format!("http://{}", listener.local_addr().expect("fleet test step"));
    tokio::spawn(container_upgrader::serve::serve(
        listener,
        crate::routes::router(state),
        super::limits(64, 0),
        None,
        std::future::pending(),
    ));
    base
}

async fn fleet() -> Fleet {
    let dir = tempfile::tempdir().expect("fleet test step");
    let store = Store::open(&database(dir.path()).await).await.expect("fleet test step");
    let base = serve_in_process(&store, ADMIN).await;
    let http = container_upgrader::tls::http_client("test", |b| b.timeout(Duration::from_secs(20)))
        .expect("fleet test step");
    Fleet { base, store, http, _dir: dir }
}

impl Fleet {
    async fn token(&self, uses: i64) -> String {
        let labels = [("tier".to_string(), "edge".to_string())].into();
        self.store.create_token(3_600_000, uses, labels).await.expect("fleet test step").token
    }

    async fn enrol_raw(&self, token: &str, manifest: &str) -> reqwest::Response {
        let body = json!({ "token": token, "name": "host-1", "manifest": manifest });
        self.http
            .post(format!("{}{}", self.base, protocol::ENROL))
            .json(&body)
            .send()
            .await
            .expect("fleet test step")
    }

    async fn enrol(&self) -> EnrolResponse {
        let token = self.token(1).await;
        let response = self.enrol_raw(&token, MANIFEST).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.expect("fleet test step")
    }

    async fn poll(&self, credential: &str, known: Option<i64>, wait: u64) -> reqwest::Response {
        let mut request =
            self.http.get(format!("{}{}?wait={wait}", self.base, protocol::DESIRED)).bearer_auth(credential);
        if let Some(known) = known {
            request = request.header("if-none-match", protocol::etag(known));
        }
        request.send().await.expect("fleet test step")
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(ADMIN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("fleet test step")
    }
}

fn report() -> Value {
    json!({
        "controller_version": "0.1.0",
        "controller": { "container": "cu", "image": "127.0.0.1:5000/cu:0.1.0" },
        "targets": [
            { "target": "web", "container": "web", "image": "127.0.0.1:5000/nginx:1.25.3", "version": "1.25.3",
              "action": "up_to_date", "reason": "" },
        ],
        "holds": [
            { "container": "web", "image": "127.0.0.1:5000/nginx:1.26.0", "until": "2026-01-01T01:00:00Z",
              "reason": "health check failed" },
        ],
    })
}

fn event(op: &str) -> Value {
    json!({
        "op_id": op, "container": "web", "from": "nginx:1.25.2", "to": "nginx:1.25.3", "outcome": "committed",
        "reason": null, "started_at": "2026-01-01T00:00:00Z", "ended_at": "2026-01-01T00:00:05Z",
        "duration_ms": 5000, "controller_version": "0.1.0",
    })
}

#[tokio::test]
async fn an_enrolled_agent_reads_its_manifest_reports_and_its_events_are_deduplicated() {
    let f = fleet().await;
    let me = f.enrol().await;
    let first = f.poll(&me.credential, None, 0).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["etag"], "\"1\"");
    assert_eq!(first.headers()["content-type"], "application/yaml");
    assert_eq!(first.text().await.expect("fleet test step"), MANIFEST);

    let url = |p: &str| format!("{}{p}", f.base);
    let sent = f
        .http
        .post(url(protocol::REPORT))
        .bearer_auth(&me.credential)
        .json(&report())
        .send()
        .await
        .expect("fleet test step");
    assert_eq!(sent.status(), StatusCode::NO_CONTENT);
    for _ in 0..2 {
        let sent = f
            .http
            .post(url(protocol::EVENTS))
            .bearer_auth(&me.credential)
            .header("idempotency-key", "op-1")
            .json(&event("op-1"))
            .send()
            .await
            .expect("fleet test step");
        assert_eq!(sent.status(), StatusCode::NO_CONTENT, "a repeat is accepted too");
    }
    // The version checker's result, as it would store it.
    sqlx::query("INSERT INTO repositories (repository, tags, checked_at) VALUES ($1, $2, 0)")
        .bind("127.0.0.1:5000/nginx")
        .bind(r#"["1.25.3","1.25.4","1.26.0","2.0.0","2.1.0-rc.1"]"#)
        .execute(&f.store.pool)
        .await
        .expect("fleet test step");

    let detail: Value = f
        .admin(reqwest::Method::GET, &format!("/v1/fleet/agents/{}", me.agent_id), None)
        .await
        .json()
        .await
        .expect("fleet test step");
    assert_eq!(detail["labels"], json!({ "tier": "edge" }), "the token's labels");
    assert_eq!(detail["status"], "online");
    assert_eq!(detail["controller_version"], "0.1.0");
    assert_eq!(detail["controller_image"], "127.0.0.1:5000/cu:0.1.0");
    assert_eq!(detail["desired_revision"], 1);
    assert_eq!(detail["holds"][0]["reason"], "health check failed");
    assert_eq!(detail["history"].as_array().expect("fleet test step").len(), 1, "one event, de-duplicated");
    assert_eq!(
        detail["targets"][0]["updates"],
        json!({ "patch": "1.25.4", "minor": "1.26.0", "major": "2.0.0" })
    );

    let listed: Value = f
        .admin(reqwest::Method::GET, "/v1/fleet/agents?label=tier=edge&has_update=major", None)
        .await
        .json()
        .await
        .expect("fleet test step");
    assert_eq!(listed.as_array().expect("fleet test step").len(), 1);
    let none: Value = f
        .admin(reqwest::Method::GET, "/v1/fleet/agents?status=offline", None)
        .await
        .json()
        .await
        .expect("fleet test step");
    assert_eq!(none, json!([]));
    let repos: Value = f
        .admin(reqwest::Method::GET, "/v1/fleet/repositories", None)
        .await
        .json()
        .await
        .expect("fleet test step");
    assert_eq!(repos[0]["repository"], "127.0.0.1:5000/nginx");
    assert_eq!(repos[0]["newest"], "2.0.0");
    assert_eq!(repos[0]["targets"], 1);
}

#[tokio::test]
async fn expired_used_up_revoked_and_wrong_tokens_are_refused() {
    let f = fleet().await;
    let once = f.token(1).await;
    assert_eq!(f.enrol_raw(&once, MANIFEST).await.status(), StatusCode::CREATED);
    let again = f.enrol_raw(&once, MANIFEST).await;
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    assert!(again.text().await.expect("fleet test step").contains("used"));

    let expired = f.store.create_token(1, 1, Default::default()).await.expect("fleet test step").token;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(f.enrol_raw(&expired, MANIFEST).await.status(), StatusCode::UNAUTHORIZED);

    let revoked = f.token(5).await;
    let id = revoked.split('.').next().expect("fleet test step");
    let gone = f.admin(reqwest::Method::DELETE, &format!("/v1/fleet/enrolment-tokens/{id}"), None).await;
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    assert_eq!(f.enrol_raw(&revoked, MANIFEST).await.status(), StatusCode::UNAUTHORIZED);

    // Revoked after a use (its hash and labels are known to the server by
    // then): refused at once, saying why.
    let used_then_revoked = f.token(5).await;
    assert_eq!(f.enrol_raw(&used_then_revoked, MANIFEST).await.status(), StatusCode::CREATED);
    let id = used_then_revoked.split('.').next().expect("fleet test step");
    let gone = f.admin(reqwest::Method::DELETE, &format!("/v1/fleet/enrolment-tokens/{id}"), None).await;
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    let refused = f.enrol_raw(&used_then_revoked, MANIFEST).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.text().await.expect("fleet test step").contains("revoked"));
    let forged_known = format!("{id}.{}", "1".repeat(64));
    assert_eq!(f.enrol_raw(&forged_known, MANIFEST).await.status(), StatusCode::UNAUTHORIZED);

    let good = f.token(1).await;
    let forged = format!("{}.{}", good.split('.').next().expect("fleet test step"), "0".repeat(64));
    assert_eq!(f.enrol_raw(&forged, MANIFEST).await.status(), StatusCode::UNAUTHORIZED);
    let bad = f.enrol_raw(&good, "version: 1\ntargets: 7\n").await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY, "an invalid manifest, with the parse error");
    assert!(bad.text().await.expect("fleet test step").contains("targets"));
    assert_eq!(
        f.enrol_raw(&good, MANIFEST).await.status(),
        StatusCode::CREATED,
        "a refused manifest spends no use"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_on_one_token_enrols_exactly_as_many_agents_as_it_has_uses() {
    let f = Arc::new(fleet().await);
    let (five, other) = (f.token(5).await, f.token(3).await);
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let (f, token) = (f.clone(), if i % 3 == 0 { other.clone() } else { five.clone() });
            tokio::spawn(async move {
                let answer = f.enrol_raw(&token, MANIFEST).await;
                let status = answer.status();
                (token, status, answer.text().await.expect("fleet test step"))
            })
        })
        .collect();
    let mut created = std::collections::HashMap::<String, usize>::new();
    for t in tasks {
        let (token, status, text) = t.await.expect("fleet test step");
        match status {
            StatusCode::CREATED => *created.entry(token).or_default() += 1,
            StatusCode::UNAUTHORIZED => assert!(text.contains("used"), "{text}"),
            other => panic!("enrolment answered {other}: {text}"),
        }
    }
    assert_eq!(created.get(&five), Some(&5), "a five-use token enrols five agents");
    assert_eq!(created.get(&other), Some(&3), "a three-use token enrols three");
    let tokens = f.admin(reqwest::Method::GET, "/v1/fleet/enrolment-tokens", None).await;
    let tokens: Value = tokens.json().await.expect("fleet test step");
    assert!(tokens.as_array().expect("fleet test step").iter().all(|t| t["uses_left"] == 0), "{tokens:#}");
    let agents = f.admin(reqwest::Method::GET, "/v1/fleet/agents", None).await;
    let agents: Value = agents.json().await.expect("fleet test step");
    assert_eq!(agents.as_array().map(Vec::len), Some(8), "one agent per use: {agents:#}");
    for a in agents.as_array().expect("fleet test step") {
        let id = a["id"].as_str().expect("fleet test step");
        let desired = f.store.desired(id).await.expect("each agent has its manifest");
        assert_eq!(desired.manifest, MANIFEST);
    }
}

#[tokio::test]
async fn a_revoked_agent_is_refused_and_no_agent_reaches_another_agents_rows() {
    let f = fleet().await;
    let (a, b) = (f.enrol().await, f.enrol().await);
    let pinned = f
        .admin(
            reqwest::Method::PUT,
            &format!("/v1/fleet/agents/{}/targets/web", b.agent_id),
            Some(json!({"image": "127.0.0.1:5000/nginx:1.26.0"})),
        )
        .await;
    assert_eq!(pinned.status(), StatusCode::OK);
    let mine = f.poll(&a.credential, None, 0).await;
    assert_eq!(mine.headers()["etag"], "\"1\"", "a sees its own revision, not b's");
    assert_eq!(mine.text().await.expect("fleet test step"), MANIFEST);

    let a_secret = a.credential.split('.').nth(1).expect("fleet test step");
    let mixed = format!("{}.{a_secret}", b.agent_id);
    assert_eq!(f.poll(&mixed, None, 0).await.status(), StatusCode::UNAUTHORIZED, "a's secret opens only a");

    let revoked =
        f.admin(reqwest::Method::POST, &format!("/v1/fleet/agents/{}/revoke", a.agent_id), None).await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let refused = f.poll(&a.credential, None, 0).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.text().await.expect("fleet test step").contains("revoked"));
    assert_eq!(f.poll(&b.credential, None, 0).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_long_poll_wakes_on_a_pin_and_times_out_with_304() {
    let f = fleet().await;
    let me = f.enrol().await;
    let started = Instant::now();
    assert_eq!(f.poll(&me.credential, Some(1), 1).await.status(), StatusCode::NOT_MODIFIED);
    assert!(started.elapsed() >= Duration::from_secs(1));

    let poll = f.poll(&me.credential, Some(1), 30);
    let pin = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let target = "label%20tier%3Dedge";
        let path = format!("/v1/fleet/agents/{}/targets/{target}", me.agent_id);
        f.admin(reqwest::Method::PUT, &path, Some(json!({"image": "127.0.0.1:5000/proxy:2.1.0"}))).await
    };
    let started = Instant::now();
    let (woken, pinned) = tokio::join!(poll, pin);
    assert!(started.elapsed() < Duration::from_secs(3), "woken by the pin, not by a timer");
    assert_eq!(pinned.status(), StatusCode::OK);
    assert_eq!(woken.status(), StatusCode::OK);
    assert_eq!(woken.headers()["etag"], "\"2\"");
    let text = woken.text().await.expect("fleet test step");
    assert!(text.contains("proxy:2.1.0") && text.contains("# the front"), "edited in place: {text}");

    let outside = f
        .admin(
            reqwest::Method::PUT,
            &format!("/v1/fleet/agents/{}/targets/web", me.agent_id),
            Some(json!({"image": "evil.example/x:1"})),
        )
        .await;
    assert_eq!(outside.status(), StatusCode::FORBIDDEN, "the manifest's own policy holds");
    let unknown = f
        .admin(
            reqwest::Method::PUT,
            &format!("/v1/fleet/agents/{}/targets/nope", me.agent_id),
            Some(json!({"image": "127.0.0.1:5000/x:1"})),
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_admin_api_needs_the_token_and_bodies_are_bounded() {
    let f = fleet().await;
    let anonymous = f.http.get(format!("{}/v1/fleet/agents", f.base)).send().await.expect("fleet test step");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let wrong = f
        .http
        .get(format!("{}/v1/fleet/agents", f.base))
        .bearer_auth("admin-token-for-test")
        .send()
        .await
        .expect("fleet test step");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        f.http.get(format!("{}/healthz", f.base)).send().await.expect("fleet test step").status(),
        StatusCode::OK
    );
    let huge = vec![b'x'; protocol::MAX_BODY_BYTES + 1];
    let too_big = f
        .http
        .post(format!("{}{}", f.base, protocol::ENROL))
        .body(huge)
        .send()
        .await
        .expect("fleet test step");
    assert_eq!(too_big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let made = f
        .admin(
            reqwest::Method::POST,
            "/v1/fleet/enrolment-tokens",
            Some(json!({"expires_in": "1h", "uses": 3, "labels": {"site": "paris"}})),
        )
        .await;
    assert_eq!(made.status(), StatusCode::CREATED);
    let made: Value = made.json().await.expect("fleet test step");
    assert!(made["token"]
        .as_str()
        .expect("fleet test step")
        .starts_with(made["id"].as_str().expect("fleet test step")));
    let listed = f
        .admin(reqwest::Method::GET, "/v1/fleet/enrolment-tokens", None)
        .await
        .text()
        .await
        .expect("fleet test step");
    assert!(!listed.contains(made["token"].as_str().expect("fleet test step")), "no secret in a listing");
    assert!(listed.contains("\"uses_left\":3"));
    let bad = f.admin(reqwest::Method::POST, "/v1/fleet/enrolment-tokens", Some(json!({"uses": 0}))).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_stopping_server_answers_held_polls_at_once() {
    let f = fleet().await;
    let me = f.enrol().await;
    let poll = f.poll(&me.credential, Some(1), 30);
    let stop = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        f.store.stop_polls();
    };
    let started = Instant::now();
    let (answer, ()) = tokio::join!(poll, stop);
    assert_eq!(answer.status(), StatusCode::NOT_MODIFIED);
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// A registry that lists tags, on loopback (so plain HTTP).
async fn fake_registry(tags: &'static [&'static str]) -> String {
    use axum::routing::get;
    let app = axum::Router::new().route("/v2/", get(|| async { "{}" })).route(
        "/v2/nginx/tags/list",
        get(move || async move { axum::Json(json!({ "name": "nginx", "tags": tags })) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("fleet test step");
    let addr = listener.local_addr().expect("fleet test step");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr.to_string()
}

#[tokio::test]
async fn the_version_check_lists_each_repository_once_and_marks_targets() {
    let f = fleet().await;
    let registry = fake_registry(&["1.25.3", "1.25.9", "1.27.0", "2.0.0-rc.1", "latest"]).await;
    let me = f.enrol().await;
    let mut body = report();
    body["targets"][0]["image"] = json!(format!("{registry}/nginx:1.25.3"));
    let url = format!("{}{}", f.base, protocol::REPORT);
    let sent =
        f.http.post(url).bearer_auth(&me.credential).json(&body).send().await.expect("fleet test step");
    assert_eq!(sent.status(), StatusCode::NO_CONTENT);

    let config = super::versions::CheckerConfig {
        interval: Duration::from_secs(3600),
        insecure: vec![],
        timeout: Duration::from_secs(5),
    };
    f.store.check_versions(&config).await.expect("fleet test step");
    let repos = f.store.repositories().await.expect("fleet test step");
    assert_eq!(repos.len(), 1);
    assert_eq!(repos[0].error, None);
    assert_eq!(repos[0].newest.as_deref(), Some("1.27.0"), "no pre-release is newest");
    let agents = f.store.agents(&Default::default(), 3).await.expect("fleet test step");
    let marks = &agents[0].targets[0].updates;
    assert_eq!(
        (marks.patch.as_deref(), marks.minor.as_deref(), marks.major.as_deref()),
        (Some("1.25.9"), Some("1.27.0"), None)
    );
}

#[tokio::test]
async fn wrong_routes_and_methods_answer_json_errors() {
    let f = fleet().await;
    let missing = f.admin(reqwest::Method::GET, "/v1/fleet/nothing", None).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing.json::<Value>().await.expect("fleet test step")["error"].is_string());
    let wrong = f.admin(reqwest::Method::DELETE, "/v1/fleet/agents", None).await;
    assert_eq!(wrong.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(wrong.json::<Value>().await.expect("fleet test step")["error"].is_string());
    let unknown = f.admin(reqwest::Method::GET, "/v1/fleet/agents/nobody", None).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let filter = f.admin(reqwest::Method::GET, "/v1/fleet/agents?status=asleep", None).await;
    assert_eq!(filter.status(), StatusCode::BAD_REQUEST);
    assert!(filter.text().await.expect("fleet test step").contains("online|offline|revoked"));
}

#[tokio::test]
async fn a_report_that_changes_only_its_time_keeps_the_targets_and_a_changed_one_replaces_them() {
    let f = fleet().await;
    let me = f.enrol().await;
    let send = |body: Value| {
        let request =
            f.http.post(format!("{}{}", f.base, protocol::REPORT)).bearer_auth(&me.credential).json(&body);
        async move { request.send().await.expect("fleet test step").status() }
    };
    let version = || async {
        let detail: Value = f
            .admin(reqwest::Method::GET, &format!("/v1/fleet/agents/{}", me.agent_id), None)
            .await
            .json()
            .await
            .expect("fleet test step");
        (detail["targets"][0]["version"].clone(), detail["reported_at"].clone())
    };
    let mut first = report();
    first["updated_at"] = json!("2026-01-01T00:00:00Z");
    assert_eq!(send(first.clone()).await, StatusCode::NO_CONTENT);
    let (v1, _) = version().await;
    assert_eq!(v1, "1.25.3");
    let mut same = first.clone();
    same["updated_at"] = json!("2026-01-01T00:00:30Z");
    assert_eq!(send(same).await, StatusCode::NO_CONTENT);
    assert_eq!(version().await.0, "1.25.3", "the same targets");
    let mut changed = first;
    changed["targets"][0]["image"] = json!("127.0.0.1:5000/nginx:1.26.0");
    changed["targets"][0]["version"] = json!("1.26.0");
    assert_eq!(send(changed).await, StatusCode::NO_CONTENT);
    assert_eq!(version().await.0, "1.26.0", "a change is stored");
}

/// The page's session cookie from a login answer.
fn session_cookie(response: &reqwest::Response) -> String {
    let set = response.headers()["set-cookie"].to_str().expect("fleet test step");
    set.split(';').next().expect("fleet test step").to_string()
}

/// The CSRF token in a page's forms.
fn csrf_of(page: &str) -> String {
    let at = page.find(r#"name="csrf" value=""#).expect("a CSRF field") + r#"name="csrf" value=""#.len();
    page[at..at + 64].to_string()
}

#[tokio::test]
async fn the_page_logs_in_by_cookie_and_refuses_every_change_without_the_csrf_token() {
    let f = fleet().await;
    let me = f.enrol().await;
    let sent = f
        .http
        .post(format!("{}{}", f.base, protocol::REPORT))
        .bearer_auth(&me.credential)
        .json(&report())
        .send();
    assert_eq!(sent.await.expect("fleet test step").status(), StatusCode::NO_CONTENT);
    sqlx::query("INSERT INTO repositories (repository, tags, checked_at) VALUES ($1, $2, 0)")
        .bind("127.0.0.1:5000/nginx")
        .bind(r#"["1.25.3","1.25.4","2.0.0"]"#)
        .execute(&f.store.pool)
        .await
        .expect("fleet test step");
    let browser = container_upgrader::tls::http_client("test", |b| {
        b.timeout(Duration::from_secs(20)).redirect(reqwest::redirect::Policy::none())
    })
    .expect("fleet test step");
    let url = |p: &str| format!("{}{p}", f.base);

    // No session: to the login form, with the page's security headers.
    let anonymous = browser.get(url("/")).send().await.expect("fleet test step");
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(anonymous.headers()["location"], "/login");
    for (name, want) in [
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
    ] {
        assert_eq!(anonymous.headers()[name], want, "{name}");
    }
    let csp = anonymous.headers()["content-security-policy"].to_str().expect("fleet test step");
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    let json = browser.get(url("/?format=json")).send().await.expect("fleet test step");
    assert_eq!(json.status(), StatusCode::UNAUTHORIZED);

    // A wrong secret waits and fails; the token logs in.
    let started = Instant::now();
    let wrong = browser.post(url("/login")).form(&[("secret", "not-the-token")]).send().await;
    assert_eq!(wrong.expect("fleet test step").status(), StatusCode::UNAUTHORIZED);
    assert!(started.elapsed() >= super::page::login::FAILED_LOGIN_DELAY);
    let foreign = browser
        .post(url("/login"))
        .header("origin", "http://evil.example")
        .form(&[("secret", ADMIN)])
        .send()
        .await
        .expect("fleet test step");
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN, "a cross-site login is refused");
    let login = browser.post(url("/login")).form(&[("secret", ADMIN)]).send().await.expect("fleet test step");
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let set = login.headers()["set-cookie"].to_str().expect("fleet test step").to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && !set.contains("Secure"), "{set}");
    let cookie = session_cookie(&login);

    // The fleet: the agent, its version and its badges; the JSON of the script.
    let page = browser.get(url("/")).header("cookie", &cookie).send().await.expect("fleet test step");
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.expect("fleet test step");
    assert!(page.contains("host-1") && page.contains("1.25.3"), "{page}");
    assert!(page.contains("patch 1.25.4") && page.contains("major 2.0.0"), "{page}");
    let filtered = browser.get(url("/?status=offline")).header("cookie", &cookie).send().await;
    assert!(!filtered.expect("fleet test step").text().await.expect("fleet test step").contains("host-1"));
    let live: Value = browser
        .get(url("/?format=json"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("fleet test step")
        .json()
        .await
        .expect("fleet test step");
    let key = format!("{}/web", me.agent_id);
    assert_eq!(live["rows"], json!([key]));
    assert_eq!(live["cells"][format!("{key}:version")]["html"], "1.25.3");

    // A pin without the token, with a wrong one, or from another site is
    // refused and changes nothing; with it, it is written.
    let agent_page = format!("/agents/{}", me.agent_id);
    let page = browser.get(url(&agent_page)).header("cookie", &cookie).send().await.expect("fleet test step");
    let csrf = csrf_of(&page.text().await.expect("fleet test step"));
    let pin = |form: Vec<(&'static str, String)>, origin: Option<&'static str>| {
        let mut request =
            browser.post(url(&format!("{agent_page}/pin"))).header("cookie", &cookie).form(&form);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let image = ("image", "127.0.0.1:5000/nginx:1.25.4".to_string());
    let target = ("target", "web".to_string());
    for (form, origin) in [
        (vec![target.clone(), image.clone()], None),
        (vec![("csrf", "0".repeat(64)), target.clone(), image.clone()], None),
        (vec![("csrf", csrf.clone()), target.clone(), image.clone()], Some("http://evil.example")),
    ] {
        let refused = pin(form, origin).await.expect("fleet test step");
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(f.store.desired(&me.agent_id).await.expect("fleet test step").revision, 1, "nothing written");
    let bearer_only = browser
        .post(url(&format!("{agent_page}/pin")))
        .bearer_auth(ADMIN)
        .form(&[target.clone(), image.clone()]);
    assert_eq!(
        bearer_only.send().await.expect("fleet test step").status(),
        StatusCode::SEE_OTHER,
        "to /login"
    );
    let done = pin(vec![("csrf", csrf.clone()), target, image], None).await.expect("fleet test step");
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(f.store.desired(&me.agent_id).await.expect("fleet test step").revision, 2);

    // The cookie does not open the bearer API; the bearer API is unchanged.
    let api = browser.get(url("/v1/fleet/agents")).header("cookie", &cookie).send().await;
    assert_eq!(api.expect("fleet test step").status(), StatusCode::UNAUTHORIZED);
    assert_eq!(f.admin(reqwest::Method::GET, "/v1/fleet/agents", None).await.status(), StatusCode::OK);

    // Sessions live in the database: another server on it knows them.
    let value = cookie.split_once('=').expect("fleet test step").1;
    assert!(f.store.session(value, "").await.expect("fleet test step").is_some());

    // Logout needs the token too, then the cookie is dead.
    let no_token = browser.post(url("/logout")).header("cookie", &cookie).form(&[("x", "y")]).send().await;
    assert_eq!(no_token.expect("fleet test step").status(), StatusCode::FORBIDDEN);
    let out = browser.post(url("/logout")).header("cookie", &cookie).form(&[("csrf", &csrf)]).send().await;
    assert_eq!(out.expect("fleet test step").status(), StatusCode::SEE_OTHER);
    let after = browser.get(url("/")).header("cookie", &cookie).send().await.expect("fleet test step");
    assert_eq!(after.headers()["location"], "/login");
}

/// `application/x-www-form-urlencoded` bodies, as a browser's forms send
/// them (reqwest's `form` feature is not enabled for one test).
trait FormBody {
    fn form<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> Self {
        use super::page::html::urlencode;
        let body = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k.as_ref()), urlencode(v.as_ref())))
            .collect::<Vec<_>>()
            .join("&");
        self.header("content-type", "application/x-www-form-urlencoded").body(body)
    }
}
