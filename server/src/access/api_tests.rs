//! Roles, API tokens and the audit log through the real router on a
//! loopback port, as a user's script would use them.

use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

use super::audit::AuditFilter;
use crate::tests::{database, serve_in_process, FormBody};
use crate::Store;

const ADMIN: &str = "admin-token-for-access-tests";
const REG: &str = "127.0.0.1:5000/app";

struct Server {
    base: String,
    store: Store,
    http: Client,
    _dir: tempfile::TempDir,
}

async fn server() -> Server {
    let dir = tempfile::tempdir().expect("access test step");
    let store = Store::open(&database(dir.path()).await).await.expect("access test step");
    let base = serve_in_process(&store, ADMIN).await;
    let http = container_upgrader::tls::http_client("test", |b| b.timeout(Duration::from_secs(20)))
        .expect("access test step");
    Server { base, store, http, _dir: dir }
}

impl Server {
    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.expect("access test step");
        let status = answer.status();
        let text = answer.text().await.expect("access test step");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn ok(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.call(token, method, path, body).await;
        assert!(status.is_success(), "{path}: {status} {answer}");
        answer
    }

    /// A user with `role` and a password, and an API token of theirs.
    async fn user(&self, name: &str, role: &str) -> String {
        let body = json!({ "name": name, "role": role, "password": "correct horse battery" });
        self.ok(ADMIN, Method::POST, "/v1/fleet/users", Some(body)).await;
        let body = json!({ "name": "script", "user": name, "expires_in": "1h" });
        let made = self.ok(ADMIN, Method::POST, "/v1/fleet/api-tokens", Some(body)).await;
        made["token"].as_str().expect("a token").to_string()
    }

    async fn audit(&self) -> Vec<super::audit::AuditEntry> {
        let filter = AuditFilter { limit: Some(1000), ..AuditFilter::default() };
        self.store.audit_log(&filter).await.expect("access test step").entries
    }

    /// An agent running `app` 1.0.0; its id.
    async fn agent(&self, name: &str) -> String {
        let body = json!({ "uses": 1, "expires_in": "1h" });
        let token = self.ok(ADMIN, Method::POST, "/v1/fleet/enrolment-tokens", Some(body)).await;
        let manifest = format!(
            "version: 1\npolicy:\n  allowed_images: [\"127.0.0.1:5000/*\"]\ntargets:\n  - container: app\n    image: {REG}:1.0.0\n"
        );
        let body = json!({ "token": token["token"], "name": name, "manifest": manifest });
        let answer = self.http.post(format!("{}/v1/agent/enrol", self.base)).json(&body).send().await;
        let enrolled: Value = answer.expect("access test step").json().await.expect("access test step");
        let credential = enrolled["credential"].as_str().expect("a credential").to_string();
        let report = json!({
            "controller_version": "0.1.0",
            "targets": [{ "target": "app", "container": "app", "image": format!("{REG}:1.0.0"),
                          "version": "1.0.0", "action": "up_to_date", "reason": "" }],
        });
        let sent =
            self.http.post(format!("{}/v1/agent/report", self.base)).bearer_auth(&credential).json(&report);
        assert!(sent.send().await.expect("access test step").status().is_success());
        enrolled["agent_id"].as_str().expect("an id").to_string()
    }
}

/// One state-changing request and the least role it takes.
struct Action {
    what: &'static str,
    method: Method,
    path: String,
    body: Option<Value>,
    needs: &'static str,
    audited_as: &'static str,
}

#[tokio::test]
async fn each_role_is_refused_what_it_may_not_do_with_a_reason_and_refusals_leave_no_audit_row() {
    let s = server().await;
    let viewer = s.user("vera", "viewer").await;
    let operator = s.user("otto", "operator").await;
    let admin = s.user("ada", "admin").await;
    let agent = s.agent("h1").await;
    let other = s.agent("h2").await;
    let tokens = [("viewer", &viewer), ("operator", &operator), ("admin", &admin)];
    let rank = |role: &str| ["viewer", "operator", "admin"].iter().position(|r| *r == role).expect("a role");

    let campaign = json!({ "name": "c1", "agents": [agent], "target": "app", "image": format!("{REG}:1.1.0"),
                           "pin_digest": false, "monitor": "0s" });
    let actions = [
        Action {
            what: "pin",
            method: Method::PUT,
            path: format!("/v1/fleet/agents/{agent}/targets/app"),
            body: Some(json!({ "image": format!("{REG}:1.0.1") })),
            needs: "operator",
            audited_as: "pin",
        },
        Action {
            what: "manifest put",
            method: Method::PUT,
            path: format!("/v1/fleet/agents/{other}/manifest"),
            body: None,
            needs: "operator",
            audited_as: "manifest.put",
        },
        Action {
            what: "campaign create",
            method: Method::POST,
            path: "/v1/fleet/campaigns".into(),
            body: Some(campaign),
            needs: "operator",
            audited_as: "campaign.create",
        },
        Action {
            what: "enrolment token",
            method: Method::POST,
            path: "/v1/fleet/enrolment-tokens".into(),
            body: Some(json!({ "uses": 1 })),
            needs: "admin",
            audited_as: "enrolment-token.create",
        },
        Action {
            what: "user add",
            method: Method::POST,
            path: "/v1/fleet/users".into(),
            body: Some(json!({ "name": "newbie", "role": "viewer" })),
            needs: "admin",
            audited_as: "user.add",
        },
        Action {
            what: "revoke agent",
            method: Method::POST,
            path: format!("/v1/fleet/agents/{other}/revoke"),
            body: None,
            needs: "admin",
            audited_as: "agent.revoke",
        },
        Action {
            what: "log out everywhere",
            method: Method::DELETE,
            path: "/v1/fleet/sessions".into(),
            body: None,
            needs: "admin",
            audited_as: "sessions.end-all",
        },
    ];
    for action in &actions {
        for (role, token) in tokens.iter().filter(|(role, _)| rank(role) < rank(action.needs)) {
            let before = s.audit().await.len();
            let (status, answer) =
                s.call(token, action.method.clone(), &action.path, action.body.clone()).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{} as {role}: {answer}", action.what);
            let reason = answer["error"].as_str().unwrap_or_default();
            assert!(
                reason.contains(&format!("has the {role} role"))
                    && reason.contains(&format!("needs the {} role", action.needs)),
                "{} as {role}: {reason}",
                action.what
            );
            assert_eq!(s.audit().await.len(), before, "{} refused to {role} is not audited", action.what);
        }
        let (name, token) = tokens.iter().find(|(role, _)| *role == action.needs).expect("a role");
        let user = ["vera", "otto", "ada"][rank(name)];
        let mut request =
            s.http.request(action.method.clone(), format!("{}{}", s.base, action.path)).bearer_auth(token);
        request = match (&action.body, action.what) {
            (Some(body), _) => request.json(body),
            (None, "manifest put") => request.body(format!(
                "version: 1\npolicy:\n  allowed_images: [\"127.0.0.1:5000/*\"]\ntargets:\n  - container: app\n    image: {REG}:1.0.2\n"
            )),
            (None, _) => request,
        };
        let answer = request.send().await.expect("access test step");
        let status = answer.status();
        assert!(
            status.is_success(),
            "{} as {name}: {status} {}",
            action.what,
            answer.text().await.unwrap_or_default()
        );
        let newest = s.audit().await.into_iter().find(|e| e.action == action.audited_as).expect("audited");
        assert_eq!((newest.actor.as_str(), newest.outcome.as_str()), (user, "ok"), "{}", action.what);
        assert_eq!(newest.via, "API token `script`", "{}", action.what);
        assert_eq!(newest.source, "127.0.0.1", "{}", action.what);
    }

    // Every role reads; the audit log names who did what, and the
    // break-glass token as such.
    for (_, token) in tokens {
        s.ok(token, Method::GET, "/v1/fleet/agents", None).await;
        s.ok(token, Method::GET, "/v1/fleet/audit?limit=5", None).await;
    }
    let log = s.audit().await;
    let added = log.iter().find(|e| e.action == "user.add" && e.object == "user vera").expect("audited");
    assert_eq!(added.actor, "admin token (break-glass)");
    assert!(added.summary.contains("viewer"), "{added:?}");
    let pinned = log.iter().find(|e| e.action == "pin").expect("audited");
    assert!(pinned.object.contains(&agent) && pinned.summary.contains("1.0.1"), "{pinned:?}");
    assert!(log.iter().any(|e| e.action == "agent.enrol" && e.object == format!("agent {agent}")));

    // The campaign's timeline names the user and the token.
    let campaigns = s.ok(&viewer, Method::GET, "/v1/fleet/campaigns", None).await;
    let id = campaigns[0]["id"].as_str().expect("an id").to_string();
    s.ok(&operator, Method::POST, &format!("/v1/fleet/campaigns/{id}/pause"), None).await;
    let view = s.ok(&viewer, Method::GET, &format!("/v1/fleet/campaigns/{id}"), None).await;
    let by: Vec<String> =
        view["timeline"].as_array().into_iter().flatten().map(|e| e["by"].to_string()).collect();
    assert!(by.iter().filter(|b| b.contains("otto (token script)")).count() >= 2, "{by:?}");
}

#[tokio::test]
async fn tokens_past_expiry_revoked_or_of_a_lowered_or_removed_user_are_refused() {
    let s = server().await;
    let ada = s.user("ada", "admin").await;
    s.ok(&ada, Method::GET, "/v1/fleet/users", None).await;

    // Past its expiry: 401 naming the token and when it expired.
    sqlx::query("UPDATE api_tokens SET expires_at = 1000 WHERE user_name = 'ada'")
        .execute(&s.store.pool)
        .await
        .expect("access test step");
    let (status, answer) = s.call(&ada, Method::GET, "/v1/fleet/agents", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert!(
        answer["error"].as_str().is_some_and(|e| e.contains("`script` of user `ada` expired")),
        "{answer}"
    );

    // A token above its user's role cannot be made; one made for an admin
    // who is then lowered to viewer acts as a viewer at once.
    let body = json!({ "name": "ops", "user": "ada", "expires_in": "1h" });
    let ops = s.ok(ADMIN, Method::POST, "/v1/fleet/api-tokens", Some(body)).await;
    let ops = ops["token"].as_str().expect("a token").to_string();
    s.ok(ADMIN, Method::PUT, "/v1/fleet/users/ada/role", Some(json!({ "role": "viewer" }))).await;
    let (status, _) = s.call(&ops, Method::GET, "/v1/fleet/users", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    s.ok(&ops, Method::GET, "/v1/fleet/agents", None).await;
    let body = json!({ "name": "higher", "role": "admin" });
    let (status, answer) = s.call(&ops, Method::POST, "/v1/fleet/api-tokens", Some(body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let body = json!({ "name": "higher", "role": "operator", "user": "ada" });
    let (status, answer) = s.call(ADMIN, Method::POST, "/v1/fleet/api-tokens", Some(body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("above user `ada`'s role")), "{answer}");

    // A token with no expiry, or over a year, is refused.
    let body = json!({ "name": "forever", "user": "ada", "expires_in": "400d" });
    let (status, _) = s.call(ADMIN, Method::POST, "/v1/fleet/api-tokens", Some(body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Revoked by its user: 401 at the next request; listing never shows
    // a secret.
    let list = s.ok(&ops, Method::GET, "/v1/fleet/api-tokens", None).await;
    assert!(!list.to_string().contains(ops.rsplit('.').next().expect("a secret")), "{list}");
    let id =
        list.as_array().into_iter().flatten().find(|t| t["name"] == "ops").expect("listed")["id"].clone();
    let id = id.as_str().expect("an id").to_string();
    s.ok(&ops, Method::DELETE, &format!("/v1/fleet/api-tokens/{id}"), None).await;
    let (status, answer) = s.call(&ops, Method::GET, "/v1/fleet/agents", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("revoked")), "{answer}");

    // Another user's token is theirs: a viewer may not revoke it.
    let bob = s.user("bob", "operator").await;
    let vera = s.user("vera", "viewer").await;
    let bobs = s.ok(&bob, Method::GET, "/v1/fleet/api-tokens", None).await;
    let bob_id = bobs[0]["id"].as_str().expect("an id").to_string();
    let (status, _) = s.call(&vera, Method::DELETE, &format!("/v1/fleet/api-tokens/{bob_id}"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s.call(&vera, Method::GET, "/v1/fleet/api-tokens?user=bob", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A removed user's tokens stop working.
    s.ok(ADMIN, Method::DELETE, "/v1/fleet/users/bob", None).await;
    let (status, _) = s.call(&bob, Method::GET, "/v1/fleet/agents", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Neither a wrong secret nor garbage gets in.
    // The last hex digit changed (to another one, whatever it was).
    let last = if vera.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &vera[..vera.len() - 1]);
    assert_ne!(forged, vera);
    assert_eq!(s.call(&forged, Method::GET, "/v1/fleet/agents", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(s.call("cut.", Method::GET, "/v1/fleet/agents", None).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logins_are_audited_failed_ones_too_and_the_log_pages_and_filters() {
    let s = server().await;
    s.user("ada", "admin").await;
    let form = |name: &str, secret: &str| {
        s.http
            .post(format!("{}/login", s.base))
            .form(&[("name", name), ("secret", secret)])
            .header("sec-fetch-site", "same-origin")
    };
    let no_redirects =
        container_upgrader::tls::http_client("test", |b| b.redirect(reqwest::redirect::Policy::none()))
            .expect("access test step");
    let bad = form("ada", "wrong password!").send().await.expect("access test step");
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let good = no_redirects
        .post(format!("{}/login", s.base))
        .form(&[("name", "ada"), ("secret", "correct horse battery")])
        .send()
        .await
        .expect("access test step");
    assert_eq!(good.status(), StatusCode::SEE_OTHER);
    let glass = no_redirects
        .post(format!("{}/login", s.base))
        .form(&[("name", ""), ("secret", ADMIN)])
        .send()
        .await
        .expect("access test step");
    assert_eq!(glass.status(), StatusCode::SEE_OTHER);
    let logins: Vec<_> = s.audit().await.into_iter().filter(|e| e.action == "login").collect();
    assert_eq!(logins.len(), 3, "{logins:?}");
    assert!(logins.iter().any(|e| e.actor == "ada" && e.outcome == "failed"));
    assert!(logins.iter().any(|e| e.actor == "ada" && e.outcome == "ok" && e.via == "page"));
    assert!(logins.iter().any(|e| e.summary.contains("break-glass admin token") && e.outcome == "ok"));

    // Filters and pages: 25 more rows, read 10 at a time, newest first,
    // every row once.
    for i in 0..25 {
        let body = json!({ "name": format!("u{i:02}"), "role": "viewer" });
        s.ok(ADMIN, Method::POST, "/v1/fleet/users", Some(body)).await;
    }
    let mut seen = Vec::new();
    let mut path = "/v1/fleet/audit?action=user.add&limit=10".to_string();
    loop {
        let page = s.ok(ADMIN, Method::GET, &path, None).await;
        for e in page["entries"].as_array().into_iter().flatten() {
            seen.push(e["object"].as_str().expect("an object").to_string());
        }
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/fleet/audit?action=user.add&limit=10&before={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 26, "{seen:?}");
    assert_eq!(seen.first().map(String::as_str), Some("user u24"), "newest first");
    assert_eq!(seen.last().map(String::as_str), Some("user ada"));
    let failed = s.ok(ADMIN, Method::GET, "/v1/fleet/audit?outcome=failed", None).await;
    assert_eq!(failed["entries"].as_array().map(Vec::len), Some(1), "{failed}");
    let (status, answer) = s.call(ADMIN, Method::GET, "/v1/fleet/audit?since=yesterday", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let (status, _) = s.call(ADMIN, Method::GET, "/v1/fleet/audit?colour=red", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
