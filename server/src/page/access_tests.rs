//! Users, roles, API tokens and the audit log on the page, in-process:
//! the server's router on 127.0.0.1:0 over a fresh store, reqwest as a
//! browser without JavaScript (no redirect followed). Sessions of each
//! role are made straight in the store (no argon2 per login); the setup
//! code flow goes through the real forms.

use std::time::Duration;

use reqwest::{Client, StatusCode};

use super::html::urlencode;
use crate::access::audit::{AuditEntry, AuditFilter};
use crate::access::{Principal, Role, Via};
use crate::Store;
use container_upgrader::protocol::EnrolRequest;

const ADMIN: &str = "admin-token-for-the-access-page-tests";
const MANIFEST: &str = "version: 1\npolicy:\n  allowed_images: [\"127.0.0.1:1/*\"]\ntargets:\n  - container: app\n    image: 127.0.0.1:1/app:1.0.0\n";

struct Site {
    base: String,
    store: Store,
    http: Client,
    agent: String,
    _dir: tempfile::TempDir,
}

/// A logged-in browser: its cookie and CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

/// An answer: status, `Location`, `Set-Cookie`'s cookie, body.
struct Answer {
    status: StatusCode,
    location: String,
    cookie: Option<String>,
    body: String,
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v))).collect::<Vec<_>>().join("&")
}

impl Site {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("access test step");
        let store = Store::open(&crate::tests::database(dir.path()).await).await.expect("access test step");
        let audit = Principal::server().audit("test", "", "");
        let token =
            store.create_token(3_600_000, 1, Default::default(), &audit).await.expect("access test step");
        let request = EnrolRequest { token: token.token, name: "host-1".into(), manifest: MANIFEST.into() };
        let agent = store.enrol(&request, "-").await.expect("access test step").agent_id;
        let base = crate::tests::serve_in_process(&store, ADMIN).await;
        let http = container_upgrader::tls::http_client("test", |b| {
            b.timeout(Duration::from_secs(30)).redirect(reqwest::redirect::Policy::none())
        })
        .expect("access test step");
        Self { base, store, http, agent, _dir: dir }
    }

    /// A session of user `name` with `role` (added with a placeholder
    /// password hash), or of the break-glass admin when `name` is `None`.
    async fn login(&self, name: Option<&str>, role: Role) -> Browser {
        let audit = Principal::server().audit("test", "", "");
        let principal = match name {
            Some(name) => {
                self.store
                    .add_user(name, role, Some("unused".into()), &audit)
                    .await
                    .expect("access test step");
                Principal { user: Some(name.into()), via: Via::Page, role, source: "127.0.0.1".into() }
            }
            None => Principal { user: None, via: Via::BreakGlassPage, role: Role::Admin, source: "-".into() },
        };
        // The test server's page credential is the default (empty) one.
        let (cookie, session) =
            self.store.create_session("", &principal, &audit).await.expect("access test step");
        Browser { cookie: format!("{}={cookie}", super::session::COOKIE), csrf: session.csrf }
    }

    async fn send(&self, b: Option<&Browser>, method: reqwest::Method, path: &str, body: String) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = b {
            request = request.header("cookie", &b.cookie);
        }
        let r = request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("access test step");
        let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let location = header("location").unwrap_or_default();
        let cookie = header("set-cookie").and_then(|c| c.split(';').next().map(str::to_string));
        Answer { status: r.status(), location, cookie, body: r.text().await.expect("access test step") }
    }

    async fn get(&self, b: &Browser, path: &str) -> Answer {
        self.send(Some(b), reqwest::Method::GET, path, String::new()).await
    }

    /// POSTs `pairs` with `b`'s CSRF token.
    async fn post(&self, b: &Browser, path: &str, pairs: &[(&str, &str)]) -> Answer {
        let mut all = vec![("csrf", b.csrf.as_str())];
        all.extend_from_slice(pairs);
        self.send(Some(b), reqwest::Method::POST, path, form(&all)).await
    }

    /// Every audit row, newest first.
    async fn audit(&self) -> Vec<AuditEntry> {
        self.store.audit_log(&AuditFilter::default()).await.expect("access test step").entries
    }

    /// The rows written since `before` (a count of rows), newest first.
    async fn audit_since(&self, before: usize) -> Vec<AuditEntry> {
        let all = self.audit().await;
        all[..all.len() - before].to_vec()
    }
}

/// Who tries what (method, path, form) and the role it needs.
type Refusal<'a> = (&'a Browser, &'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

/// The text of the element whose `id` is `id` (up to its next `<`).
fn text_of(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!(r#"id="{id}""#))?;
    let start = at + html[at..].find('>')? + 1;
    Some(html[start..start + html[start..].find('<')?].to_string())
}

#[tokio::test]
async fn each_role_is_refused_what_it_may_not_do_with_the_reason_and_nothing_is_audited() {
    let site = Site::new().await;
    let viewer = site.login(Some("vera"), Role::Viewer).await;
    let operator = site.login(Some("otto"), Role::Operator).await;
    let pin_path = format!("/agents/{}/pin", urlencode(&site.agent));
    let pin: &[(&str, &str)] = &[("target", "app"), ("image", "127.0.0.1:1/app:1.1.0")];
    let start: &[(&str, &str)] = &[("action", "start"), ("name", "x")];
    let add: &[(&str, &str)] = &[("name", "mallory"), ("role", "admin")];
    let cases: [Refusal<'_>; 9] = [
        (&viewer, "POST", &pin_path, pin, "operator"),
        (&viewer, "POST", "/campaigns/new", start, "operator"),
        (&viewer, "POST", "/campaigns/some-campaign/pause", &[], "operator"),
        (&viewer, "GET", "/campaigns/new", &[], "operator"),
        (&viewer, "GET", "/users", &[], "admin"),
        (&viewer, "POST", "/users", add, "admin"),
        (&operator, "GET", "/users", &[], "admin"),
        (&operator, "POST", "/users", add, "admin"),
        (&operator, "POST", "/logout-everywhere", &[], "admin"),
    ];
    for (who, method, path, pairs, needed) in cases {
        let rows = site.audit().await.len();
        let answer = match method {
            "GET" => site.get(who, path).await,
            _ => site.post(who, path, pairs).await,
        };
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{method} {path}: {}", answer.body);
        let role = if std::ptr::eq(who, &viewer) { "viewer" } else { "operator" };
        let reason = format!("has the {role} role; this needs the {needed} role");
        assert!(answer.body.contains(&reason), "{method} {path} says why: {}", answer.body);
        assert_eq!(site.audit().await.len(), rows, "{method} {path}: a refusal writes no audit row");
    }
    assert!(site.store.users().await.expect("read").iter().all(|u| u.name != "mallory"));

    // What each may do, they can.
    for path in ["/", "/campaigns", "/audit", "/tokens", "/account", &format!("/agents/{}", site.agent)] {
        assert_eq!(site.get(&viewer, path).await.status, StatusCode::OK, "viewer GET {path}");
    }
    assert_eq!(site.post(&operator, &pin_path, pin).await.status, StatusCode::SEE_OTHER);
    assert_eq!(site.get(&operator, "/campaigns/new").await.status, StatusCode::OK);
    let admin = site.login(Some("ada"), Role::Admin).await;
    assert_eq!(site.get(&admin, "/users").await.status, StatusCode::OK);

    // And the pages do not offer what the role cannot do.
    let agent_page = site.get(&viewer, &format!("/agents/{}", site.agent)).await.body;
    assert!(!agent_page.contains("/pin\"") && agent_page.contains("vera · viewer"), "{agent_page}");
    let fleet = site.get(&viewer, "/").await.body;
    assert!(!fleet.contains("create-campaign") && !fleet.contains(r#"name="agents""#));
    assert!(!site.get(&viewer, "/campaigns").await.body.contains("new-campaign"));
    let operator_fleet = site.get(&operator, "/").await.body;
    assert!(operator_fleet.contains("create-campaign") && !operator_fleet.contains(r#"href="/users""#));
    assert!(!operator_fleet.contains(r#"href="/logout-everywhere""#));
    let admin_fleet = site.get(&admin, "/").await.body;
    assert!(admin_fleet.contains(r#"href="/users""#) && admin_fleet.contains(r#"href="/logout-everywhere""#));
}

#[tokio::test]
async fn every_page_action_writes_its_audit_row_and_a_confirmation_page_writes_none() {
    let site = Site::new().await;
    let admin = site.login(Some("ada"), Role::Admin).await;
    let operator = site.login(Some("otto"), Role::Operator).await;
    let expect = |rows: Vec<AuditEntry>, action: &str, actor: &str, object: &str| {
        assert_eq!(rows.len(), 1, "one row for {action}: {rows:?}");
        let row = &rows[0];
        assert_eq!((row.action.as_str(), row.actor.as_str(), row.outcome.as_str()), (action, actor, "ok"));
        assert_eq!(row.object, object);
        assert_eq!(row.via, "page");
    };

    let n = site.audit().await.len();
    let added = site.post(&admin, "/users", &[("name", "bob"), ("role", "viewer")]).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    expect(site.audit_since(n).await, "user.add", "ada", "user bob");

    let n = site.audit().await.len();
    let set = site.post(&admin, "/users/bob/role", &[("role", "operator")]).await;
    assert_eq!((set.status, set.location.as_str()), (StatusCode::SEE_OTHER, "/users"));
    expect(site.audit_since(n).await, "user.role", "ada", "user bob");
    assert_eq!(site.store.user("bob").await.expect("read").role, Role::Operator);

    for action in ["reset", "remove"] {
        let n = site.audit().await.len();
        let asked = site.post(&admin, &format!("/users/bob/{action}"), &[]).await;
        assert_eq!(asked.status, StatusCode::OK);
        assert!(asked.body.contains(r#"name="confirm" value="yes""#), "{action} asks first");
        assert_eq!(site.audit().await.len(), n, "asking changes nothing");
    }
    let n = site.audit().await.len();
    let reset = site.post(&admin, "/users/bob/reset", &[("confirm", "yes")]).await;
    assert_eq!(reset.status, StatusCode::OK);
    assert!(text_of(&reset.body, "setup-code").is_some_and(|c| c.len() == 64), "{}", reset.body);
    expect(site.audit_since(n).await, "user.reset", "ada", "user bob");

    let n = site.audit().await.len();
    let made =
        site.post(&operator, "/tokens", &[("name", "ci"), ("role", "operator"), ("expires_in", "7d")]).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    expect(site.audit_since(n).await, "api-token.create", "otto", "user otto");
    let id = site.store.api_tokens(Some("otto")).await.expect("read")[0].id.clone();
    let n = site.audit().await.len();
    let revoked = site.post(&operator, &format!("/tokens/{id}/revoke"), &[]).await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    expect(site.audit_since(n).await, "api-token.revoke", "otto", "user otto");

    let n = site.audit().await.len();
    let pin = format!("/agents/{}/pin", urlencode(&site.agent));
    let pinned = site.post(&operator, &pin, &[("target", "app"), ("image", "127.0.0.1:1/app:1.1.0")]).await;
    assert_eq!(pinned.status, StatusCode::SEE_OTHER, "{}", pinned.body);
    expect(site.audit_since(n).await, "pin", "otto", &format!("agent {}", site.agent));

    let n = site.audit().await.len();
    let removed = site.post(&admin, "/users/bob/remove", &[("confirm", "yes")]).await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER);
    expect(site.audit_since(n).await, "user.remove", "ada", "user bob");

    // The audit page shows them, newest first, filtered by action prefix.
    let page = site.get(&operator, "/audit?action=user.").await.body;
    let (remove, add) = (page.find("user.remove"), page.find("user.add"));
    assert!(remove.is_some() && add.is_some() && remove < add, "{page}");
    assert!(!page.contains("<code>pin</code>"), "the filter leaves pins out");

    // Logging out is audited too, and the session ends.
    let n = site.audit().await.len();
    let out = site.post(&operator, "/logout", &[]).await;
    assert_eq!((out.status, out.location.as_str()), (StatusCode::SEE_OTHER, "/login"));
    expect(site.audit_since(n).await, "logout", "otto", "page");
    assert_eq!(site.get(&operator, "/").await.location, "/login", "the session is gone");
}

#[tokio::test]
async fn a_new_user_chooses_a_password_with_the_setup_code_once_and_can_change_it() {
    let site = Site::new().await;
    let admin = site.login(None, Role::Admin).await;
    let added = site.post(&admin, "/users", &[("name", "carol"), ("role", "viewer")]).await;
    assert_eq!(added.status, StatusCode::CREATED);
    let code = text_of(&added.body, "setup-code").expect("the code is shown");
    assert!(added.body.contains("/login") && added.body.contains("only this once"), "{}", added.body);
    let users = site.get(&admin, "/users").await.body;
    assert!(users.contains("carol") && !users.contains(&code), "the list never shows the code");
    assert_eq!(site.audit().await[0].actor, "admin password (break-glass)");

    let post = |path: &'static str, pairs: Vec<(&'static str, String)>| {
        let body =
            pairs.iter().map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v))).collect::<Vec<_>>();
        site.send(None, reqwest::Method::POST, path, body.join("&"))
    };
    let opened = post("/login", vec![("name", "carol".into()), ("secret", code.clone())]).await;
    assert_eq!(opened.status, StatusCode::OK);
    assert!(opened.body.contains(r#"action="/setup""#), "{}", opened.body);
    let password = "correct horse battery staple";
    let setup = vec![
        ("name", "carol".to_string()),
        ("code", code.clone()),
        ("password", password.to_string()),
        ("again", password.to_string()),
    ];
    let done = post("/setup", setup.clone()).await;
    assert_eq!((done.status, done.location.as_str()), (StatusCode::SEE_OTHER, "/"), "{}", done.body);
    let carol = Browser { cookie: done.cookie.expect("a session"), csrf: String::new() };
    let account = site.get(&carol, "/account").await.body;
    assert!(account.contains("carol · viewer"), "{account}");
    let csrf = account.split(r#"name="csrf" value=""#).nth(1).and_then(|s| s.split('"').next());
    let carol = Browser { csrf: csrf.expect("a CSRF token").to_string(), ..carol };

    let again = post("/login", vec![("name", "carol".into()), ("secret", code.clone())]).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "the code is spent");
    assert_eq!(post("/setup", setup).await.status, StatusCode::UNAUTHORIZED);
    let failed = site.get(&carol, "/audit?outcome=failed").await.body;
    assert!(failed.contains(r#"class="audit-failed""#) && failed.contains("failed login"), "{failed}");

    // Her own password change: a wrong current one is refused (and
    // audited as failed), the right one changes it and keeps her in.
    let n = site.audit().await.len();
    let new = "another long passphrase";
    let wrong =
        site.post(&carol, "/account", &[("current", "nope"), ("password", new), ("again", new)]).await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    let rows = site.audit_since(n).await;
    assert_eq!(
        (rows.len(), rows[0].action.as_str(), rows[0].outcome.as_str()),
        (1, "user.password", "failed")
    );
    let n = site.audit().await.len();
    let changed =
        site.post(&carol, "/account", &[("current", password), ("password", new), ("again", new)]).await;
    assert_eq!((changed.status, changed.location.as_str()), (StatusCode::SEE_OTHER, "/account?changed=1"));
    let rows = site.audit_since(n).await;
    assert!(rows.iter().any(|r| r.action == "user.password" && r.outcome == "ok" && r.actor == "carol"));
    assert_eq!(site.get(&carol, "/account").await.status, StatusCode::SEE_OTHER, "the old session ended");
    let fresh = Browser { cookie: changed.cookie.expect("a new session"), csrf: String::new() };
    assert_eq!(site.get(&fresh, "/account").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_token_is_shown_once_never_listed_and_only_up_to_the_callers_role() {
    let site = Site::new().await;
    let viewer = site.login(Some("vera"), Role::Viewer).await;
    let operator = site.login(Some("otto"), Role::Operator).await;
    let glass = site.login(None, Role::Admin).await;

    let made = site
        .post(&operator, "/tokens", &[("name", "deploy"), ("role", "operator"), ("expires_in", "30d")])
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let token = text_of(&made.body, "api-token").expect("shown");
    assert!(token.starts_with("cut.") && made.body.contains("shown only this once"), "{}", made.body);
    let secret = token.rsplit('.').next().expect("a secret");
    for who in [&operator, &glass] {
        let list = site.get(who, "/tokens").await.body;
        assert!(list.contains("deploy") && !list.contains(secret), "the list never holds the secret");
    }
    let me = site
        .http
        .get(format!("{}/v1/fleet/me", site.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("access test step");
    assert_eq!(me.status(), StatusCode::OK, "the token works");

    let n = site.audit().await.len();
    let above =
        site.post(&viewer, "/tokens", &[("name", "x"), ("role", "operator"), ("expires_in", "7d")]).await;
    assert_eq!(above.status, StatusCode::FORBIDDEN);
    assert!(above.body.contains("above the viewer role"), "{}", above.body);
    let id = site.store.api_tokens(Some("otto")).await.expect("read")[0].id.clone();
    let theirs = site.post(&viewer, &format!("/tokens/{id}/revoke"), &[]).await;
    assert_eq!(theirs.status, StatusCode::FORBIDDEN);
    assert!(theirs.body.contains("only they or an admin"), "{}", theirs.body);
    let for_otto = site
        .post(
            &viewer,
            "/tokens",
            &[("name", "x"), ("role", "viewer"), ("expires_in", "7d"), ("user", "otto")],
        )
        .await;
    assert_eq!(for_otto.status, StatusCode::FORBIDDEN);
    assert_eq!(site.audit().await.len(), n, "refusals write no audit row");
    assert_eq!(site.store.api_token(&id).await.expect("read").status, "active");

    // The break-glass admin is no user: a token needs one named.
    let nobody =
        site.post(&glass, "/tokens", &[("name", "x"), ("role", "viewer"), ("expires_in", "7d")]).await;
    assert_eq!(nobody.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", nobody.body);
    let for_vera = site
        .post(
            &glass,
            "/tokens",
            &[("name", "ro"), ("role", "viewer"), ("expires_in", "365d"), ("user", "vera")],
        )
        .await;
    assert_eq!(for_vera.status, StatusCode::CREATED, "{}", for_vera.body);
    assert_eq!(site.audit().await[0].actor, "admin password (break-glass)");
    let revoke_any = site.post(&glass, &format!("/tokens/{id}/revoke"), &[]).await;
    assert_eq!(revoke_any.status, StatusCode::SEE_OTHER, "an admin revokes anyone's");
    assert_eq!(site.store.api_token(&id).await.expect("read").status, "revoked");
}

#[tokio::test]
async fn the_audit_page_pages_back_by_cursor_without_repeating_or_skipping_a_row() {
    let site = Site::new().await;
    let viewer = site.login(Some("vera"), Role::Viewer).await;
    for n in 0..5 {
        let audit = Principal::server().audit("test.paging", format!("row {n}"), "<b>not markup</b>");
        site.store.audit_alone(&audit, "ok").await.expect("access test step");
    }
    let rows_of = |html: &str| -> Vec<String> {
        html.split(r#"data-audit=""#)
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .map(str::to_string)
            .collect()
    };
    let mut seen = Vec::new();
    let mut path = "/audit?action=test.paging&limit=2".to_string();
    for _ in 0..5 {
        let page = site.get(&viewer, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(!page.body.contains("<b>not") && page.body.contains("&lt;b&gt;not markup"));
        seen.extend(rows_of(&page.body));
        let older = page.body.split(r#"<a href=""#).find_map(|s| {
            let (href, rest) = s.split_once('"')?;
            rest.starts_with(r#" id="audit-older""#).then(|| href.replace("&amp;", "&"))
        });
        match older {
            Some(next) => path = next,
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "every row once: {seen:?}");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first across pages");
    let bad = site.get(&viewer, "/audit?before=nonsense").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("before: `nonsense`"), "{}", bad.body);
}
