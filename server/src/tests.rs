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
        trusted_proxies: Arc::from([]),
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
        self.store
            .create_token(3_600_000, uses, labels, &crate::access::Principal::server().audit("test", "", ""))
            .await
            .expect("fleet test step")
            .token
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

    let expired = f
        .store
        .create_token(1, 1, Default::default(), &crate::access::Principal::server().audit("test", "", ""))
        .await
        .expect("fleet test step")
        .token;
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
    // Held for 80-100 % of the wait asked for (jitter spreads the re-polls).
    assert!(started.elapsed() >= Duration::from_millis(800), "{:?}", started.elapsed());

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
    // The agent's manifest names that registry: the server may ask it.
    let manifest = MANIFEST.replace("127.0.0.1:5000/nginx", &format!("{registry}/nginx"));
    f.store
        .put_manifest(&me.agent_id, &manifest, &crate::access::Principal::server().audit("test", "", ""))
        .await
        .expect("fleet test step");
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
        allow: vec![],
        verify_keys: Vec::new(),
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
pub(crate) trait FormBody {
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

#[tokio::test]
async fn one_agent_cannot_fill_the_disk_its_texts_are_cut_its_writes_rate_limited_its_history_pruned() {
    let f = fleet().await;
    let me = f.enrol().await;
    let url = format!("{}{}", f.base, protocol::EVENTS);
    let huge = "x".repeat(1_000_000);
    let mut sent = 0;
    let mut refused = None;
    for i in 0..400 {
        let mut e = event(&format!("op-{i}"));
        e["reason"] = json!(huge);
        let answer =
            f.http.post(&url).bearer_auth(&me.credential).json(&e).send().await.expect("fleet test step");
        match answer.status() {
            StatusCode::NO_CONTENT => sent += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                let wait =
                    answer.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
                refused = Some((i, wait, answer.text().await.expect("fleet test step")));
                break;
            }
            other => panic!("event {i}: {other}"),
        }
    }
    let (at, wait, why) = refused.expect("the agent's burst ends");
    assert!((300..400).contains(&at) && sent == at, "refused after its burst, at {at}");
    assert!(wait.is_some_and(|w| w.parse::<u64>().is_ok_and(|s| s >= 1)), "with Retry-After");
    assert!(why.contains("try again in"), "{why}");
    // Each reason stored once, cut to its bound and marked.
    let (reason, body): (String, String) =
        sqlx::query_as("SELECT reason, body FROM events WHERE agent_id = $1 AND op_id = 'op-0'")
            .bind(&me.agent_id)
            .fetch_one(&f.store.pool)
            .await
            .expect("fleet test step");
    assert!(reason.len() <= crate::bounds::MAX_REASON && reason.ends_with("bytes cut]"), "{}", reason.len());
    assert!(!body.contains("xxxx"), "the body does not hold the reason again");
    let (total,): (i64,) =
        sqlx::query_as("SELECT COALESCE(SUM(LENGTH(reason) + LENGTH(body)), 0) FROM events")
            .fetch_one(&f.store.pool)
            .await
            .expect("fleet test step");
    assert!(total < 2_000_000, "{sent} events of 1 MB reasons took {total} bytes");
    // The page shows the cut text, not megabytes.
    let detail = f.admin(reqwest::Method::GET, &format!("/v1/fleet/agents/{}", me.agent_id), None).await;
    assert!(detail.text().await.expect("fleet test step").len() < 1_000_000);

    // Pruned to the newest N per agent.
    let keep = crate::bounds::Retention { max_events: 10, max_age: Duration::from_secs(3600) };
    let removed = f.store.prune_history(keep).await.expect("fleet test step");
    assert_eq!(removed, u64::try_from(sent - 10).expect("fleet test step"));
    let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM events WHERE agent_id = $1")
        .bind(&me.agent_id)
        .fetch_one(&f.store.pool)
        .await
        .expect("fleet test step");
    assert_eq!(left, 10);
    let newest: Vec<(String,)> =
        sqlx::query_as("SELECT op_id FROM events ORDER BY received_at DESC, op_id DESC LIMIT 1")
            .fetch_all(&f.store.pool)
            .await
            .expect("fleet test step");
    assert_ne!(newest[0].0, "op-0", "the oldest went first");
}

#[tokio::test]
async fn names_that_read_other_than_they_are_are_refused_at_enrolment() {
    let f = fleet().await;
    for name in ["host\u{202E}1-bew", "web\u{200B}1", "\u{2066}db\u{2069}"] {
        let token = f.token(1).await;
        let body = json!({ "token": token, "name": name, "manifest": MANIFEST });
        let answer = f
            .http
            .post(format!("{}{}", f.base, protocol::ENROL))
            .json(&body)
            .send()
            .await
            .expect("fleet test step");
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY, "{name:?}");
        let why = answer.text().await.expect("fleet test step");
        assert!(why.contains("bidirectional") && why.contains("zero-width"), "{why}");
    }
}

#[tokio::test]
async fn every_answer_says_nosniff_and_no_store_the_fallback_too() {
    let f = fleet().await;
    for path in ["/v1/fleet/agents", "/no/such/route", "/healthz"] {
        let answer =
            f.http.get(format!("{}{path}", f.base)).bearer_auth(ADMIN).send().await.expect("fleet test step");
        assert_eq!(
            answer.headers().get("x-content-type-options").map(|v| v.as_bytes()),
            Some(&b"nosniff"[..]),
            "{path}"
        );
        assert_eq!(
            answer.headers().get("cache-control").map(|v| v.as_bytes()),
            Some(&b"no-store"[..]),
            "{path}"
        );
    }
}

/// A registry on loopback whose tag lists take `delay` and which counts
/// the requests it gets.
async fn counting_registry(delay: Duration) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use axum::extract::Path;
    use axum::routing::get;
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = seen.clone();
    let app = axum::Router::new().route("/v2/", get(|| async { "{}" })).route(
        "/v2/{name}/tags/list",
        get(move |Path(name): Path<String>| {
            let count = count.clone();
            async move {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                axum::Json(json!({ "name": name, "tags": ["1.0.0", "1.1.0"] }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("fleet test step");
    let addr = listener.local_addr().expect("fleet test step");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr.to_string(), seen)
}

/// A manifest with one container target per image, and the report that
/// says each runs.
fn targets(images: &[String]) -> (String, Value) {
    let mut manifest = "version: 1\ntargets:\n".to_string();
    let mut reported = Vec::new();
    for (i, image) in images.iter().enumerate() {
        manifest.push_str(&format!("  - container: c{i}\n    image: {image}\n"));
        reported.push(json!({ "target": format!("c{i}"), "container": format!("c{i}"), "image": image,
                              "version": "1.0.0", "action": "up_to_date", "reason": "" }));
    }
    (manifest, json!({ "controller_version": "0.1.0", "targets": reported }))
}

impl Fleet {
    /// Posts `report` as the agent holding `credential`; it must be taken.
    async fn report_as(&self, credential: &str, report: &Value) {
        let sent = self
            .http
            .post(format!("{}{}", self.base, protocol::REPORT))
            .bearer_auth(credential)
            .json(report)
            .send()
            .await
            .expect("fleet test step");
        assert_eq!(sent.status(), StatusCode::NO_CONTENT);
    }
}

fn checker(allow: Vec<String>) -> super::versions::CheckerConfig {
    super::versions::CheckerConfig {
        interval: Duration::from_secs(3600),
        insecure: vec![],
        timeout: Duration::from_secs(10),
        allow,
        verify_keys: Vec::new(),
    }
}

#[tokio::test]
async fn the_version_checker_asks_only_registries_the_agents_manifest_names_and_never_link_local_ones() {
    let f = fleet().await;
    let (named, named_seen) = counting_registry(Duration::ZERO).await;
    let (other, other_seen) = counting_registry(Duration::ZERO).await;
    let me = f.enrol().await;
    let (manifest, _) = targets(&[format!("{named}/app:1.0.0"), "169.254.169.254/latest:1.0.0".to_string()]);
    f.store
        .put_manifest(&me.agent_id, &manifest, &crate::access::Principal::server().audit("test", "", ""))
        .await
        .expect("fleet test step");
    // The agent reports what its manifest names, and more: a repository
    // on another registry and one on the metadata address.
    let (_, report) = targets(&[
        format!("{named}/app:1.0.0"),
        "169.254.169.254/latest:1.0.0".to_string(),
        format!("{other}/secret:1.0.0"),
    ]);
    f.report_as(&me.credential, &report).await;
    f.store.check_versions(&checker(vec![])).await.expect("fleet test step");
    let repos = f.store.repositories().await.expect("fleet test step");
    let by_name = |r: &str| repos.iter().find(|x| x.repository == r).cloned();
    assert_eq!(by_name(&format!("{named}/app")).and_then(|r| r.newest).as_deref(), Some("1.1.0"));
    assert!(by_name(&format!("{other}/secret")).is_none(), "not in its manifest: never listed");
    assert_eq!(other_seen.load(std::sync::atomic::Ordering::SeqCst), 0, "and never asked");
    let metadata = by_name("169.254.169.254/latest").expect("named by the manifest, so listed");
    assert!(metadata.error.is_some_and(|e| e.starts_with("not allowed") && e.contains("link-local")));
    assert_eq!(named_seen.load(std::sync::atomic::Ordering::SeqCst), 1);

    // With --registry-allow, only the hosts listed are asked.
    f.store.check_versions(&checker(vec!["registry.example".into()])).await.expect("fleet test step");
    let repos = f.store.repositories().await.expect("fleet test step");
    let app = repos.iter().find(|x| x.repository == format!("{named}/app")).expect("listed");
    assert!(app.error.as_deref().is_some_and(|e| e.contains("not in --registry-allow")), "{:?}", app.error);
    assert_eq!(named_seen.load(std::sync::atomic::Ordering::SeqCst), 1, "refused without a request");
    let agents = f.store.agents(&Default::default(), 3).await.expect("fleet test step");
    let unknown = agents[0].targets.iter().find_map(|t| t.updates_unknown.clone());
    assert!(
        unknown.is_some_and(|u| u.starts_with("not allowed")),
        "the target says why its versions are unknown"
    );
    f.store.check_versions(&checker(vec![named.clone()])).await.expect("fleet test step");
    assert_eq!(named_seen.load(std::sync::atomic::Ordering::SeqCst), 2, "asked once allowed");
}

#[tokio::test]
async fn one_slow_registry_delays_only_its_own_repositories() {
    let f = fleet().await;
    let (slow, slow_seen) = counting_registry(Duration::from_secs(3)).await;
    let (fast, _) = counting_registry(Duration::ZERO).await;
    // `localhost` sorts after `127.0.0.1`: one at a time, the fast one
    // would wait for all six slow ones (18 s).
    let fast = fast.replace("127.0.0.1", "localhost");
    let mut images: Vec<String> = (0..6).map(|i| format!("{slow}/slow{i}:1.0.0")).collect();
    images.push(format!("{fast}/quick:1.0.0"));
    let me = f.enrol().await;
    let (manifest, report) = targets(&images);
    f.store
        .put_manifest(&me.agent_id, &manifest, &crate::access::Principal::server().audit("test", "", ""))
        .await
        .expect("fleet test step");
    f.report_as(&me.credential, &report).await;
    let store = f.store.clone();
    let started = Instant::now();
    let check = tokio::spawn(async move { store.check_versions(&checker(vec![])).await });
    let quick = format!("{fast}/quick");
    let mut listed_after = None;
    while started.elapsed() < Duration::from_secs(30) {
        let repos = f.store.repositories().await.expect("fleet test step");
        if repos.iter().any(|r| r.repository == quick && r.newest.is_some()) {
            listed_after = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listed_after = listed_after.expect("the fast repository was listed");
    assert!(listed_after < Duration::from_secs(2), "the fast registry waited {listed_after:?}");
    check.await.expect("fleet test step").expect("fleet test step");
    let all = started.elapsed();
    assert!(all < Duration::from_secs(12), "six slow ones, two at a time: about 9 s, took {all:?}");
    assert!(all >= Duration::from_secs(8), "at most two at once on the slow host: {all:?}");
    assert_eq!(slow_seen.load(std::sync::atomic::Ordering::SeqCst), 6);
}

#[tokio::test]
async fn an_agents_history_is_read_a_page_at_a_time_newest_first() {
    let f = fleet().await;
    let me = f.enrol().await;
    for i in 0..250 {
        let e: container_upgrader::report::OpEvent =
            serde_json::from_value(event(&format!("op-{i:03}"))).expect("fleet test step");
        f.store.store_event(&me.agent_id, &e).await.expect("fleet test step");
    }
    let (first, total) = f.store.history(&me.agent_id, 0).await.expect("fleet test step");
    assert_eq!((first.len(), total), (100, 250));
    let (last, _) = f.store.history(&me.agent_id, 2).await.expect("fleet test step");
    assert_eq!(last.len(), 50, "the third page holds the rest");
    assert_eq!(last.last().map(|e| e.op_id.as_str()), Some("op-000"), "the oldest last");
    let (past, _) = f.store.history(&me.agent_id, 3).await.expect("fleet test step");
    assert!(past.is_empty());
}
