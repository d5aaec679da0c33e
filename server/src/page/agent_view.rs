//! `GET /agents/{id}`: one agent with its targets (live), its errors, held
//! images and history, and a form per target to pin another image
//! (`POST /agents/{id}/pin`, with the session's CSRF token).

use crate::access::Role;
use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use serde::Deserialize;

use super::fleet_view::{badges, last_op, version_html};
use super::html::{csrf_field, escape, image, layout, urlencode};
use super::live::{when, Cell, Live};
use super::session::{check_post, Authed, Session};
use super::PageError;
use crate::agents::{AgentDetail, Status, TargetView};
use crate::state::FleetState;
use crate::store::now_ms;
use container_upgrader::protocol::GitReport;
use container_upgrader::reference::ImageRef;

/// The agent page's query.
#[derive(Debug, Default, Deserialize)]
pub struct AgentQuery {
    /// `json` for the live cells.
    #[serde(default)]
    format: String,
    /// The revision a pin just wrote (a notice after the redirect).
    pinned: Option<i64>,
    /// The history's page, 1 (the newest) by default.
    history: Option<String>,
}

/// The history page asked for (1-based), or a message naming the value.
fn history_page(given: Option<&str>) -> Result<usize, String> {
    match given.map(str::trim) {
        None | Some("") => Ok(1),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1 && *n <= 1_000_000)
            .ok_or_else(|| format!("history `{v}`: expected a page number from 1 (the newest ops) on")),
    }
}

/// "ops 101-200 of 1,000 · newer · older", linking the pages around `page`.
fn history_pager(id: &str, page: usize, shown: usize, total: i64) -> String {
    let total = usize::try_from(total).unwrap_or(0);
    if total == 0 {
        return r#"<p class="muted" id="history-pager">No op yet.</p>"#.into();
    }
    let per = usize::try_from(crate::agents::HISTORY).unwrap_or(100);
    let first = (page - 1) * per + 1;
    let link = |p: usize, text: &str, rel: &str| {
        format!(r#"<a href="/agents/{}?history={p}" rel="{rel}">{text}</a>"#, escape(&urlencode(id)))
    };
    let mut parts = vec![if shown == 0 {
        format!("no ops on this page; {total} in all")
    } else {
        format!("ops {first}–{} of {total}, newest first", first + shown - 1)
    }];
    if page > 1 {
        parts.push(link(page - 1, "newer", "prev"));
    }
    if first + shown - 1 < total {
        parts.push(link(page + 1, "older", "next"));
    }
    format!(r#"<p id="history-pager">{}</p>"#, parts.join(" · "))
}

fn target_cells(t: &TargetView) -> Vec<Cell> {
    let id = |field: &str| format!("t/{}:{field}", t.target);
    let (op_html, op_class) = last_op(t);
    vec![
        Cell { id: id("image"), html: image(t.image.as_deref().unwrap_or("")), class: "image".into() },
        Cell {
            id: id("digest"),
            html: image(t.digest.as_deref().unwrap_or("")),
            class: "image digest".into(),
        },
        Cell { id: id("version"), html: version_html(t), class: "version".into() },
        Cell {
            id: id("desired"),
            html: image(t.desired.as_deref().unwrap_or("")),
            class: "desired image".into(),
        },
        Cell::text(id("action"), format!("{} {}", t.action, t.reason).trim(), "action"),
        Cell { id: id("updates"), html: badges(&t.updates, &t.signatures), class: "updates".into() },
        Cell { id: id("op"), html: op_html, class: op_class },
    ]
}

fn agent_cells(a: &AgentDetail, now: i64) -> Vec<Cell> {
    let s = &a.agent;
    let status = match s.status {
        Status::Online => "online",
        Status::Offline => "offline",
        Status::Revoked => "revoked",
    };
    let mut cells = vec![
        Cell::text("agent:status".into(), status, &format!("status status-{status}")),
        Cell::text("agent:controller".into(), s.controller_version.as_deref().unwrap_or(""), "controller"),
        Cell::text("agent:seen".into(), &when(&s.last_seen, now), "seen"),
    ];
    cells.extend(s.targets.iter().flat_map(target_cells));
    cells
}

fn pin_form(agent_id: &str, t: &TargetView, csrf: &str) -> String {
    // The newer versions as whole references, offered in the input's list.
    let current = t.image.as_deref().and_then(|i| ImageRef::parse(i).ok());
    let suggestions: String = [&t.updates.patch, &t.updates.minor, &t.updates.major]
        .into_iter()
        .flatten()
        .filter_map(|v| current.as_ref().map(|r| r.with_tag(v).familiar()))
        .map(|image| format!(r#"<option value="{}">"#, escape(&image)))
        .collect();
    let list = format!("versions-{}", urlencode(&t.target));
    format!(
        r#"<form method="post" action="/agents/{id}/pin" class="pin">{csrf}<input type="hidden" name="target" value="{target}">
<input type="text" name="image" value="{image}" list="{list}" aria-label="image for {target}" class="pin-image" required>
<datalist id="{list}">{suggestions}</datalist><button type="submit" class="pin-button">Pin</button></form>"#,
        id = escape(&urlencode(agent_id)),
        csrf = csrf_field(csrf),
        target = escape(&t.target),
        image = escape(t.desired.as_deref().or(t.image.as_deref()).unwrap_or("")),
        list = escape(&list),
    )
}

fn render(a: &AgentDetail, session: &Session, pinned: Option<i64>, now: i64, page: usize) -> String {
    // Pinning is an operator's: a viewer sees no pin form (the server
    // refuses the POST anyway).
    // An agent following Git is changed in Git: the server refuses its pins.
    let may_pin = session.may(Role::Operator) && a.agent.git.is_none();
    let s = &a.agent;
    let cells = agent_cells(a, now);
    let td = |id: &str| cells.iter().find(|c| c.id == id).map(Cell::td).unwrap_or_default();
    let labels: String = s
        .labels
        .iter()
        .map(|(k, v)| format!(r#"<span class="label">{}={}</span> "#, escape(k), escape(v)))
        .collect();
    let targets: String = s
        .targets
        .iter()
        .map(|t| {
            let cell = |f: &str| td(&format!("t/{}:{f}", t.target));
            format!(
                r#"<tr data-row="t/{key}"><td class="target">{target}</td><td class="container">{container}</td>{image}{digest}{version}{updates}{desired}{action}{op}{pin}</tr>"#,
                key = escape(&t.target),
                target = escape(&t.target),
                container = escape(&t.container),
                image = cell("image"),
                digest = cell("digest"),
                version = cell("version"),
                updates = cell("updates"),
                desired = cell("desired"),
                action = cell("action"),
                op = cell("op"),
                pin = if may_pin { format!("<td>{}</td>", pin_form(&s.id, t, &session.csrf)) } else { String::new() },
            )
        })
        .collect();
    let errors: String = [("Manifest error", &a.manifest_error), ("Pass error", &a.pass_error)]
        .iter()
        .filter_map(|(what, e)| e.as_ref().map(|e| format!(r#"<p class="error">{what}: {}</p>"#, escape(e))))
        .collect();
    let holds: String = a
        .holds
        .iter()
        .map(|h| {
            format!(
                "<li><code>{}</code> on {} until {}: {}</li>",
                image(&h.image),
                escape(&h.container),
                escape(&when(&h.until, now)),
                escape(&h.reason)
            )
        })
        .collect();
    let holds =
        if holds.is_empty() { String::new() } else { format!("<h2>Held images</h2><ul>{holds}</ul>") };
    let history: String = a
        .history
        .iter()
        .map(|e| {
            format!(
                r#"<tr><td class="time">{}</td><td>{}</td><td class="image"><code>{}</code> → <code>{}</code></td><td class="outcome-{outcome}">{outcome}</td><td class="reason">{}</td><td><code>{}</code></td></tr>"#,
                escape(&when(&e.ended_at, now)),
                escape(&e.container),
                image(&e.from),
                image(&e.to),
                escape(e.reason.as_deref().unwrap_or("")),
                escape(&e.op_id),
                outcome = escape(&e.outcome),
            )
        })
        .collect();
    let notice = pinned
        .map(|r| format!(r#"<p class="notice" id="pinned">Pinned: desired manifest revision {r}; the agent applies it on its next poll.</p>"#))
        .unwrap_or_default();
    let body = format!(
        r#"<p><a href="/">← Fleet</a></p>{notice}
<table class="facts"><tr><th>Name</th><td id="agent-name">{name}</td></tr><tr><th>Id</th><td><code>{id}</code></td></tr>
<tr><th>Labels</th><td>{labels}</td></tr><tr><th>Status</th>{status}</tr><tr><th>Controller</th>{controller}</tr>
<tr><th>Controller image</th><td class="image"><code>{ctl_image}</code></td></tr><tr><th>Last seen</th>{seen}</tr>
<tr><th>Enrolled</th><td>{enrolled}</td></tr><tr><th>Desired revision</th><td>{revision}</td></tr>{git}</table>{errors}
<h2>Targets</h2><p class="live" id="live-note" data-live="1">{n} targets</p>
<table class="targets" id="targets"><thead><tr><th>Target</th><th>Container</th><th>Image</th><th>Digest</th><th>Version</th><th>New version</th><th>Desired</th><th>Last pass</th><th>Last op</th>{pin_th}</tr></thead><tbody>{targets}</tbody></table>
{holds}<h2>History</h2><table class="history"><thead><tr><th>Ended</th><th>Container</th><th>Change</th><th>Outcome</th><th>Reason</th><th>Op</th></tr></thead><tbody>{history}</tbody></table>{pager}"#,
        pin_th = if may_pin { "<th>Pin</th>" } else { "" },
        pager = history_pager(&s.id, page, a.history.len(), a.history_total),
        name = escape(&s.name),
        id = escape(&s.id),
        status = td("agent:status"),
        controller = td("agent:controller"),
        ctl_image = image(s.controller_image.as_deref().unwrap_or("")),
        seen = td("agent:seen"),
        enrolled = escape(&when(&s.enrolled_at, now)),
        revision = a.desired_revision,
        git = git_row(s.git.as_ref(), now),
        n = s.targets.len(),
    );
    layout(&format!("Agent {}", s.name), Some(session), &body)
}

/// Where the manifest comes from, for an agent following Git.
fn git_row(git: Option<&GitReport>, now: i64) -> String {
    let Some(g) = git else { return String::new() };
    let reference =
        g.reference.as_deref().map(|r| format!(" <code>{}</code>", escape(r))).unwrap_or_default();
    let commit = match &g.commit {
        Some(c) => format!(
            r#"commit <code id="agent-git-commit">{}</code>{}{}{}"#,
            escape(c),
            g.author.as_deref().map(|a| format!(" by {}", escape(a))).unwrap_or_default(),
            g.authored_at.as_deref().map(|t| format!(", {}", escape(&when(t, now)))).unwrap_or_default(),
            g.signer.as_deref().map(|s| format!(", signed by {}", escape(s))).unwrap_or_default(),
        ),
        None => "no commit applied yet".to_string(),
    };
    let error = g
        .error
        .as_deref()
        .map(|e| format!(r#"<br><span class="error">{}</span>"#, escape(e)))
        .unwrap_or_default();
    format!(
        r#"<tr><th>Desired state</th><td id="agent-git">from Git <code>{}</code>{reference}, <code>{}</code>: {commit}. Change it there: the server does not pin this agent.{error}</td></tr>"#,
        escape(&g.url),
        escape(&g.path)
    )
}

/// `GET /agents/{id}`.
pub async fn agent(
    State(state): State<FleetState>,
    Authed(session): Authed,
    Path(id): Path<String>,
    Query(q): Query<AgentQuery>,
) -> Result<Response, PageError> {
    let page = history_page(q.history.as_deref()).map_err(crate::FleetError::BadRequest)?;
    let mut detail = state.store.agent(&id, state.offline_after).await?;
    if page > 1 {
        detail.history = state.store.history(&id, page - 1).await?.0;
    }
    let now = now_ms();
    if q.format == "json" {
        let rows = detail.agent.targets.iter().map(|t| format!("t/{}", t.target)).collect();
        return Ok(Json(Live::new(rows, agent_cells(&detail, now))).into_response());
    }
    Ok(Html(render(&detail, &session, q.pinned, now, page)).into_response())
}

/// The pin form's fields.
#[derive(Debug, Deserialize)]
pub struct PinForm {
    csrf: Option<String>,
    target: String,
    image: String,
}

/// `POST /agents/{id}/pin`: writes the target's image into the agent's
/// desired manifest, then back to the agent page.
pub async fn pin(
    State(state): State<FleetState>,
    Authed(session): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<PinForm>,
) -> Result<Response, PageError> {
    check_post(&session, &headers, form.csrf.as_deref())?;
    session.require(Role::Operator)?;
    let audit = session.principal.audit(
        "pin",
        format!("agent {id}"),
        format!("target {} pinned to {}", form.target, form.image.trim()),
    );
    let revision = state.store.pin(&id, &form.target, form.image.trim(), Some(&audit)).await?;
    tracing::info!(agent = %id, target = %form.target, image = %form.image.trim(), revision, "pinned from the page");
    Ok(Redirect::to(&format!("/agents/{}?pinned={revision}", urlencode(&id))).into_response())
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_history_pages_say_where_they_are_and_refuse_a_bad_page_by_name() {
        assert_eq!(super::history_page(None), Ok(1));
        assert_eq!(super::history_page(Some("3")), Ok(3));
        for bad in ["0", "abc", "-1"] {
            let e = super::history_page(Some(bad)).expect_err("refused");
            assert!(e.starts_with(&format!("history `{bad}`: expected a page number")), "{e}");
        }
        let middle = super::history_pager("a1", 2, 100, 250);
        assert!(middle.contains("ops 101–200 of 250"), "{middle}");
        assert!(middle.contains(r#"href="/agents/a1?history=1" rel="prev""#));
        assert!(middle.contains(r#"href="/agents/a1?history=3" rel="next""#));
        let last = super::history_pager("a1", 3, 50, 250);
        assert!(!last.contains("rel=\"next\""), "{last}");
        assert!(super::history_pager("a1", 1, 0, 0).contains("No op yet"));
    }
    use super::*;
    use crate::versions::Updates;

    #[test]
    fn the_pin_form_offers_the_newer_versions_as_whole_references_and_carries_the_csrf_token() {
        let t = TargetView {
            target: "web\"><script>".into(),
            container: "web".into(),
            image: Some("127.0.0.1:5000/app:1.0.0".into()),
            digest: None,
            version: Some("1.0.0".into()),
            desired: None,
            action: String::new(),
            reason: String::new(),
            last_op_id: None,
            last_outcome: None,
            last_reason: None,
            failure: None,
            updates: Updates { minor: Some("1.1.0".into()), ..Updates::default() },
            updates_unknown: None,
            signatures: Default::default(),
        };
        let form = pin_form("a1", &t, "c".repeat(64).as_str());
        assert!(form.contains(r#"<option value="127.0.0.1:5000/app:1.1.0">"#), "{form}");
        assert!(form.contains(&format!(r#"name="csrf" value="{}""#, "c".repeat(64))));
        assert!(form.contains(r#"action="/agents/a1/pin""#));
        assert!(!form.contains("<script>"), "{form}");
    }
}
