//! The campaign pages in-process: the server's router on 127.0.0.1:0 over
//! a fresh store (SQLite, or `FLEET_TEST_POSTGRES`), agents played by
//! enrolments and reports, and reqwest as a browser without JavaScript
//! (it reads the HTML, posts the forms, follows no redirect).

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use super::html::urlencode;
use crate::Store;
use container_upgrader::protocol::{EnrolRequest, Report};

const ADMIN: &str = "admin-token-for-the-page-tests";
/// Port 1: nothing listens there, so a registry lookup fails at once.
const REG: &str = "127.0.0.1:1/app";
/// An agent name that is markup: it must never reach a page as such.
const EVIL: &str = "<img src=x onerror=alert(1)>";

struct Page {
    base: String,
    store: Store,
    http: Client,
    cookie: String,
    csrf: String,
    agents: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Page {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .http
            .get(self.url(path))
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("page test step");
        (r.status(), r.text().await.expect("page test step"))
    }

    /// POSTs `pairs` as a form; (status, Location, body).
    async fn post(&self, path: &str, pairs: &[(&str, &str)]) -> (StatusCode, String, String) {
        let body = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let r = self
            .http
            .post(self.url(path))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("page test step");
        let location =
            r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        (r.status(), location, r.text().await.expect("page test step"))
    }

    async fn campaigns(&self) -> usize {
        self.store.campaigns().await.expect("page test step").len()
    }
}

fn manifest() -> String {
    format!(
        "version: 1\npolicy:\n  allowed_images: [\"127.0.0.1:1/*\"]\ntargets:\n  - container: app\n    image: {REG}:1.0.0\n"
    )
}

async fn report(store: &Store, agent: &str) {
    let r: Report = serde_json::from_value(json!({
        "controller_version": "0.1.0",
        "targets": [{ "target": "app", "container": "app", "image": format!("{REG}:1.0.0"),
                      "version": "1.0.0", "action": "up_to_date", "reason": "" }],
    }))
    .expect("page test step");
    store.store_report(agent, &r).await.expect("page test step");
}

/// Three agents on app 1.0.0 (the first named [`EVIL`]), the registry's
/// tags known, and a logged-in session with its CSRF token.
async fn page() -> Page {
    page_with(None).await
}

/// [`page`] with the server's registry access set to `registry`.
async fn page_with(registry: Option<crate::versions::CheckerConfig>) -> Page {
    let dir = tempfile::tempdir().expect("page test step");
    let store = Store::open(&crate::tests::database(dir.path()).await).await.expect("page test step");
    let labels = [("env".to_string(), "test".to_string())].into();
    let token = store
        .create_token(3_600_000, 10, labels, &crate::access::Principal::server().audit("test", "", ""))
        .await
        .expect("page test step")
        .token;
    let mut agents = Vec::new();
    for name in [EVIL, "host-2", "host-3"] {
        let request = EnrolRequest { token: token.clone(), name: name.into(), manifest: manifest() };
        let id = store.enrol(&request, "-").await.expect("page test step").agent_id;
        report(&store, &id).await;
        agents.push(id);
    }
    sqlx::query("INSERT INTO repositories (repository, tags, checked_at) VALUES ($1, $2, 0)")
        .bind(REG)
        .bind(r#"["1.0.0","1.1.0","2.0.0","latest"]"#)
        .execute(&store.pool)
        .await
        .expect("page test step");
    let base = crate::tests::serve_with_registry(&store, ADMIN, registry).await;
    let http = container_upgrader::tls::http_client("test", |b| {
        b.timeout(Duration::from_secs(20)).redirect(reqwest::redirect::Policy::none())
    })
    .expect("page test step");
    let login = http
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("secret={ADMIN}"))
        .send()
        .await
        .expect("page test step");
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let set = login.headers()["set-cookie"].to_str().expect("page test step");
    let cookie = set.split(';').next().expect("page test step").to_string();
    let mut p = Page { base, store, http, cookie, csrf: String::new(), agents, _dir: dir };
    let (_, form) = p.get("/campaigns/new").await;
    p.csrf = value_of(&form, "csrf").expect("a CSRF field");
    p
}

/// The `value` of the input named `name` in `html`.
fn value_of(html: &str, name: &str) -> Option<String> {
    let marker = format!(r#"name="{name}" value=""#);
    let at = html.find(&marker)? + marker.len();
    Some(html[at..].split('"').next()?.to_string())
}

/// A valid form over every agent with the label, 1.1.0 from the tags.
fn fields<'a>(csrf: &'a str, action: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("name", "roll 1.1.0"),
        ("selection", "label"),
        ("label", "env=test"),
        ("target", "app"),
        ("by", "version"),
        ("version", "1.1.0"),
        ("canary", "1"),
        ("batch", "1"),
        ("delay", "0s"),
        ("monitor", "0s"),
        ("max_failure_ratio", "0.5"),
        ("failure_action", "pause"),
        ("deadline", "10m"),
        ("action", action),
    ]
}

fn with<'a>(mut form: Vec<(&'a str, &'a str)>, key: &'a str, value: &'a str) -> Vec<(&'a str, &'a str)> {
    form.retain(|(k, _)| *k != key);
    form.push((key, value));
    form
}

#[tokio::test]
async fn bad_campaign_forms_come_back_filled_in_naming_the_field_and_nothing_is_created() {
    let p = page().await;
    let cases: [(&str, &str, &str); 11] = [
        ("batch", "0", "batch `0`: expected a number of agents (1 or more) or a percentage"),
        ("batch", "150%", "batch `150%`: a percentage must be above 0% and at most 100%"),
        ("canary", "one", "canary `one`: expected a whole number of agents"),
        ("max_failure_ratio", "2", "max_failure_ratio 2: expected a number from 0 to 1"),
        ("delay", "soon", "delay `soon`"),
        ("label", "", "label: required when selecting by label"),
        ("label", "nolabel", "label `nolabel`: expected KEY=VALUE"),
        ("version", "", "version: pick one of the registry"),
        ("window_days", "mon", "window.hours: required for a maintenance window"),
        ("start_at", "tomorrow", "start_at `tomorrow`"),
        ("target", "db", "no agent matches the selection with a target `db`"),
    ];
    for (field, value, message) in cases {
        let form = with(fields(&p.csrf, "preview"), field, value);
        let (status, _, body) = p.post("/campaigns/new", &form).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}={value}: {body}");
        let shown = body.split(r#"id="form-error" role="alert">"#).nth(1).unwrap_or_default();
        assert!(
            shown.starts_with(&super::html::escape(message)),
            "{field}={value}: the message: {shown:.200}"
        );
        assert!(body.contains(r#"value="roll 1.1.0""#), "{field}={value}: the form comes back filled in");
        assert!(!body.contains("Start campaign"), "{field}={value}: no start without a valid preview");
    }
    // The input the message names is marked for the eye and for screen readers.
    let (_, _, body) = p.post("/campaigns/new", &with(fields(&p.csrf, "preview"), "batch", "0")).await;
    assert!(
        body.contains(r#"name="batch" id="f-batch" value="0" class="invalid" aria-invalid="true""#),
        "{body}"
    );
    // Explicit selection with nobody ticked; an unknown agent id.
    let form = with(fields(&p.csrf, "preview"), "selection", "agents");
    let (status, _, body) = p.post("/campaigns/new", &form).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("agents: tick at least one agent"), "{body}");
    let form = with(with(fields(&p.csrf, "start"), "selection", "agents"), "agents", "nobody");
    let (status, _, body) = p.post("/campaigns/new", &form).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("agents: no agent `nobody`"), "{body}");
    assert_eq!(p.campaigns().await, 0, "nothing was created");
}

#[tokio::test]
async fn the_form_previews_the_waves_of_the_api_and_starts_only_what_was_previewed() {
    let p = page().await;
    // The fleet page's selection arrives ticked, its common target filled in.
    let (status, form) =
        p.get(&format!("/campaigns/new?agents={}&agents={}", p.agents[1], p.agents[2])).await;
    assert_eq!(status, StatusCode::OK);
    assert!(form.contains(&format!(r#"value="{}" checked"#, p.agents[1])), "{form}");
    assert!(!form.contains(&format!(r#"value="{}" checked"#, p.agents[0])));
    assert!(form.contains(r#"value="agents" id="sel-agents" checked"#));
    assert!(form.contains(r#"name="target" id="f-target" value="app""#));
    assert!(
        form.contains(r#"<optgroup label="127.0.0.1:1/app"><option value="2.0.0">2.0.0</option>"#),
        "{form}"
    );
    assert!(!form.contains(">latest<"), "only versions are offered");
    // The fleet's label filter, nothing ticked: the label selector.
    let (_, form) = p.get("/campaigns/new?label=env%3Dtest").await;
    assert!(form.contains(r#"value="label" id="sel-label" checked"#));
    assert!(form.contains(r#"name="label" id="f-label" value="env=test""#), "{form}");

    // The preview is the API's: the same waves for the same settings.
    let (status, _, body) = p.post("/campaigns/new", &fields(&p.csrf, "preview")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let api_preview: Value = p
        .http
        .post(p.url("/v1/fleet/campaigns/preview"))
        .bearer_auth(ADMIN)
        .json(&json!({"label": "env=test", "target": "app", "version": "1.1.0", "canary": 1, "batch": 1,
                      "monitor": "0s", "max_failure_ratio": 0.5}))
        .send()
        .await
        .expect("page test step")
        .json()
        .await
        .expect("page test step");
    let waves = api_preview["waves"].as_array().expect("waves");
    assert_eq!(waves.len(), 3, "the canary, then 2 waves of 1: {api_preview}");
    assert_eq!(body.matches("<tr data-wave=").count(), waves.len(), "{body}");
    assert!(body.contains(&format!(r#"<code id="preview-image">{REG}:1.1.0</code>"#)));
    assert!(body.contains("0 (canary)"));
    assert!(
        body.contains("&lt;img src=x onerror=alert(1)&gt;") && !body.contains(EVIL),
        "escaped in the preview"
    );
    let print = value_of(&body, "previewed").expect("the start button's fingerprint");
    assert_eq!(p.campaigns().await, 0, "a preview stores nothing");

    // Settings changed after the preview are previewed again, not started.
    let mut changed = with(fields(&p.csrf, "start"), "batch", "2");
    changed.push(("previewed", &print));
    let (status, _, body) = p.post("/campaigns/new", &changed).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("The settings changed since the preview"), "{body}");
    assert_eq!(p.campaigns().await, 0);

    // The previewed settings start; the campaign page opens.
    let mut start = fields(&p.csrf, "start");
    start.push(("previewed", &print));
    let (status, location, body) = p.post("/campaigns/new", &start).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let all = p.store.campaigns().await.expect("page test step");
    assert_eq!(all.len(), 1);
    assert_eq!(location, format!("/campaigns/{}", all[0].id));
    assert_eq!(all[0].campaign.spec.image, format!("{REG}:1.1.0"));
    assert_eq!(all[0].campaign.spec.name, "roll 1.1.0");

    // The history lists it.
    let (status, list) = p.get("/campaigns").await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.contains("roll 1.1.0") && list.contains(&location), "{list}");
}

#[tokio::test]
async fn the_campaign_page_reads_without_javascript_escapes_agent_names_and_its_commands_need_the_csrf_token()
{
    let p = page().await;
    let request = crate::campaign::spec::Request {
        name: Some("<b>bold</b>".into()),
        agents: p.agents.clone(),
        target: "app".into(),
        version: Some("1.1.0".into()),
        canary: Some(1),
        ..Default::default()
    };
    let id = crate::campaign::runner::create(&p.store, &request, None, &crate::access::Principal::server())
        .await
        .expect("page test step");
    let path = format!("/campaigns/{id}");

    // Server-rendered: state, waves and every agent's state are in the
    // HTML itself; the only script is our own file.
    let (status, html) = p.get(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"data-cell="c:state" class="state state-running">running<"#), "{html}");
    assert_eq!(html.matches(r#"<tr data-row="w/upgrade/"#).count(), 3, "canary + 2 waves of 1");
    assert_eq!(html.matches(r#"<tr data-row="a/"#).count(), 3);
    assert!(html.contains(r#"class="state state-sent">sent<"#), "the canary was sent: {html}");
    assert_eq!(html.matches(r#"class="state state-pending">pending<"#).count(), 2);
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains(r#"<script src="/static/fleet.js" defer></script>"#));
    // Agent-supplied and admin-supplied names are text, never markup.
    assert!(!html.contains(EVIL) && html.contains("&lt;img src=x onerror=alert(1)&gt;"), "{html}");
    assert!(!html.contains("<b>bold</b>") && html.contains("&lt;b&gt;bold&lt;/b&gt;"));
    // The buttons of the commands that apply, each a form with the token.
    for word in ["pause", "abort", "rollback"] {
        assert!(html.contains(&format!(r#"action="/campaigns/{id}/{word}""#)), "{word}: {html}");
    }
    assert!(
        !html.contains(&format!(r#"action="/campaigns/{id}/resume""#)),
        "a running campaign does not resume"
    );

    // The live cells are the same HTML, escaped.
    let (_, live) = p.get(&format!("{path}?format=json")).await;
    let live: Value = serde_json::from_str(&live).expect("JSON");
    assert_eq!(live["cells"]["c:state"]["html"], "running");
    assert_eq!(live["rows"].as_array().map(Vec::len), Some(6));
    assert!(!live.to_string().contains("<img"));

    // Without the token, with a wrong one, or from another site: refused,
    // the campaign untouched.
    let running = || async { p.store.campaign_view(&id).await.expect("page test step").summary.state };
    for form in [vec![], vec![("csrf", "0".repeat(64))]] {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _, _) = p.post(&format!("{path}/pause"), &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let foreign = p
        .http
        .post(p.url(&format!("{path}/abort")))
        .header("cookie", &p.cookie)
        .header("origin", "http://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={}", p.csrf))
        .send()
        .await
        .expect("page test step");
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    let (status, _, _) = p.post("/campaigns/new", &fields("", "start")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "creating needs the token too");
    assert_eq!(running().await, "running");

    // With the token: paused, then a command that does not apply says why.
    let (status, location, _) = p.post(&format!("{path}/pause"), &[("csrf", &p.csrf)]).await;
    assert_eq!((status, location.as_str()), (StatusCode::SEE_OTHER, path.as_str()));
    assert_eq!(running().await, "paused");
    let (status, _, body) = p.post(&format!("{path}/pause"), &[("csrf", &p.csrf)]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains("cannot pause a campaign that is paused"), "{body}");
    let (status, _, _) = p.post(&format!("{path}/explode"), &[("csrf", &p.csrf)]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, html) = p.get(&path).await;
    assert!(html.contains(&format!(r#"action="/campaigns/{id}/resume""#)));
    // Abort asks first: the confirmation page changes nothing.
    let (status, _, body) = p.post(&format!("{path}/abort"), &[("csrf", &p.csrf)]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains(r#"name="confirm" value="yes""#) && body.contains("stops the campaign for good"),
        "{body}"
    );
    assert_eq!(running().await, "paused");
    let (status, _, _) = p.post(&format!("{path}/abort"), &[("csrf", &p.csrf), ("confirm", "yes")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(running().await, "aborted");
    // Aborted without revert: the agent it pinned is listed, with why.
    let (_, html) = p.get(&path).await;
    assert!(html.contains(r#"id="pinned-agents""#) && html.contains("aborted without revert"), "{html}");
    let (status, html) = p.get("/campaigns/no-such-campaign").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains(r#"class="error""#), "an error page, not a blank one: {html}");
}

#[tokio::test]
async fn the_version_picker_marks_pre_releases_and_downgrades() {
    let p = page().await;
    sqlx::query("UPDATE repositories SET tags = $1 WHERE repository = $2")
        .bind(r#"["0.9.0","1.0.0","1.1.0","2.1.0-rc.1"]"#)
        .bind(REG)
        .execute(&p.store.pool)
        .await
        .expect("page test step");
    let (_, html) = p.get("/campaigns/new").await;
    assert!(
        html.contains(r#"<option value="0.9.0">0.9.0 · downgrade: 3 agent(s) run 1.0.0</option>"#),
        "{html}"
    );
    assert!(html.contains(r#"<option value="2.1.0-rc.1">2.1.0-rc.1 · pre-release</option>"#), "{html}");
    assert!(html.contains(r#"<option value="1.1.0">1.1.0</option>"#), "an upgrade is unmarked: {html}");
}

#[tokio::test]
async fn an_unreachable_registry_is_shown_in_the_preview_and_start_keeps_the_form_with_the_pin_switch() {
    // Nothing listens on port 1: the registry of 127.0.0.1:1/app cannot be read.
    let access = crate::versions::CheckerConfig {
        interval: Duration::from_secs(3600),
        insecure: Vec::new(),
        timeout: Duration::from_secs(2),
        allow: Vec::new(),
        verify_keys: Vec::new(),
    };
    let p = page_with(Some(access)).await;
    sqlx::query("UPDATE repositories SET error = $1 WHERE repository = $2")
        .bind("connection refused")
        .bind(REG)
        .execute(&p.store.pool)
        .await
        .expect("page test step");
    let (_, form) = p.get("/campaigns/new").await;
    assert!(form.contains(r#"id="registry-errors""#) && form.contains("connection refused"), "{form}");
    let (_, repos) = p.get("/repositories").await;
    assert!(repos.contains("unreachable: connection refused"), "{repos}");

    let (status, _, preview) = p.post("/campaigns/new", &fields(&p.csrf, "preview")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(preview.contains("The digest Start would pin is unknown: registry unreachable"), "{preview}");
    let print = value_of(&preview, "previewed").expect("the preview's fingerprint");
    let start = with(fields(&p.csrf, "start"), "previewed", &print);
    let (status, _, body) = p.post("/campaigns/new", &start).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("could not be read from its registry"), "{body}");
    assert!(body.contains(r#"id="f-pin_digest" checked"#), "the switch is there, still on: {body}");
    assert_eq!(p.campaigns().await, 0, "nothing started");

    // Unticked: the agents get the tag, and the preview says so.
    let untick = with(fields(&p.csrf, "preview"), "pin_digest_shown", "1");
    let (_, preview) = {
        let (s, _, b) = p.post("/campaigns/new", &untick).await;
        (s, b)
    };
    assert!(
        preview.contains(&format!(r#"Start pins <code id="preview-pin">{REG}:1.1.0</code>."#)),
        "{preview}"
    );
    let print = value_of(&preview, "previewed").expect("the preview's fingerprint");
    let start = with(with(untick, "action", "start"), "previewed", &print);
    let (status, _, _) = p.post("/campaigns/new", &start).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let c = p.store.campaigns().await.expect("page test step");
    assert_eq!(c[0].campaign.spec.image, format!("{REG}:1.1.0"));
}

#[tokio::test]
async fn create_campaign_for_these_n_turns_the_fleet_filter_into_the_selection() {
    let p = page().await;
    let (status, form) =
        p.get("/campaigns/new?selection=filter&label=env%3Dtest&version=1.0.0&target=app").await;
    assert_eq!(status, StatusCode::OK);
    assert!(form.contains(r#"id="sel-filter" checked"#), "{form}");
    assert!(form.contains("agents labelled env=test, running 1.0.0"), "{form}");
    assert!(form.contains(r#"<p id="filter-count"><strong>3</strong> agent(s) match now."#), "{form}");
    assert!(form.contains(r#"name="filter_labels" value="env=test""#));
    assert!(form.contains(r#"<details id="filter-agents">"#), "a collapsible list, not checkboxes");
    // Posted as the form carries it: previewed and started over those agents.
    let mut fields = fields(&p.csrf, "preview");
    fields.retain(|(k, _)| *k != "selection" && *k != "label");
    fields.extend([("selection", "filter"), ("filter_labels", "env=test"), ("filter_version", "1.0.0")]);
    let (status, _, preview) = p.post("/campaigns/new", &fields).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert!(preview.contains("on 3 agent(s)"), "{preview}");
    let print = value_of(&preview, "previewed").expect("the preview's fingerprint");
    let start = with(with(fields, "action", "start"), "previewed", &print);
    let (status, _, _) = p.post("/campaigns/new", &start).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let c = p.store.campaigns().await.expect("page test step");
    assert!(matches!(c[0].campaign.spec.selection, crate::campaign::spec::Selection::Filter(_)));
}
