//! `GET /notifications`: the notification sinks ([`crate::notify`]) with
//! the state of their queues - backlog, the head's tries and last error,
//! the last delivery, events given up - a form to add a webhook, Slack or
//! ntfy sink, and per sink "Send test" and "Remove" (not for a sink of
//! `--notifications-file`). Secrets are written, never shown back.

use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::html::{csrf_field, escape, layout, urlencode};
use super::session::{check_post, Authed, Session};
use super::PageError;
use crate::access::Role;
use crate::notify::catalog::{NewSink, SinkInfo, Source};
use crate::notify::sinks::SinkKind;
use crate::notify::Kind;
use crate::state::FleetState;
use crate::FleetError;

/// What the last action said (after its redirect).
#[derive(Debug, Default, Deserialize)]
pub struct Done {
    #[serde(default)]
    added: Option<String>,
    #[serde(default)]
    tested: Option<String>,
    #[serde(default)]
    removed: Option<String>,
}

fn state_cell(s: &SinkInfo) -> String {
    let mut parts = Vec::new();
    if s.backlog == 0 {
        parts.push("<span>up to date</span>".to_string());
    } else {
        parts.push(format!(
            r#"<span class="warning">{} waiting</span> <span class="muted">(oldest {}, {} tries, next {})</span>"#,
            s.backlog,
            escape(s.oldest_waiting.as_deref().unwrap_or("?")),
            s.attempts,
            escape(s.next_attempt_at.as_deref().unwrap_or("?")),
        ));
    }
    if let Some(e) = &s.last_error {
        parts.push(format!(r#"<br><span class="error">last error: {}</span>"#, escape(e)));
    }
    if s.abandoned > 0 {
        parts.push(format!(r#"<br><span class="error">{} given up</span>"#, s.abandoned));
    }
    parts.concat()
}

fn row(s: &SinkInfo, csrf: &str) -> String {
    let id = escape(&urlencode(&s.id));
    let events = if s.events.is_empty() { "all".to_string() } else { s.events.join(", ") };
    let remove = match s.source {
        Source::File => r#"<span class="muted">from the file</span>"#.to_string(),
        Source::Page => format!(
            r#"<form method="post" action="/notifications/{id}/remove" class="command">{}<button type="submit">Remove</button></form>"#,
            csrf_field(csrf)
        ),
    };
    format!(
        r#"<tr id="sink-{id}"><td class="name">{name}</td><td>{kind}</td><td><code>{url}</code></td><td>{secret}</td><td>{events}</td><td>{state}</td><td class="time">{delivered}</td><td><form method="post" action="/notifications/{id}/test" class="command">{csrf}<button type="submit">Send test</button></form>{remove}</td></tr>"#,
        name = escape(&s.name),
        kind = s.kind.as_str(),
        url = escape(&s.url),
        secret = if s.secret.is_some() { "set" } else { "-" },
        events = escape(&events),
        state = state_cell(s),
        delivered = escape(s.last_delivered_at.as_deref().unwrap_or("never")),
        csrf = csrf_field(csrf),
    )
}

/// The page: the sinks, then the form.
pub fn render(sinks: &[SinkInfo], session: &Session, done: &Done) -> String {
    let csrf = session.csrf.as_str();
    let flash = match (&done.added, &done.tested, &done.removed) {
        (Some(n), _, _) => format!(r#"<p id="flash">Sink <b>{}</b> added.</p>"#, escape(n)),
        (_, Some(n), _) => format!(
            r#"<p id="flash">A test event is queued for <b>{}</b> (behind anything it is still waiting for).</p>"#,
            escape(n)
        ),
        (_, _, Some(n)) => format!(r#"<p id="flash">Sink <b>{}</b> removed.</p>"#, escape(n)),
        _ => String::new(),
    };
    let table = if sinks.is_empty() {
        r#"<p class="muted" id="no-sinks">No sink yet: events are not sent anywhere.</p>"#.to_string()
    } else {
        let rows: String = sinks.iter().map(|s| row(s, csrf)).collect();
        format!(
            r#"<table id="sinks"><thead><tr><th>Name</th><th>Kind</th><th>URL</th><th>Secret</th><th>Events</th><th>Queue</th><th>Last delivered (UTC)</th><th></th></tr></thead><tbody>{rows}</tbody></table>"#
        )
    };
    let kinds: Vec<&str> = Kind::ALL.iter().filter(|k| **k != Kind::Test).map(|k| k.as_str()).collect();
    let body = format!(
        r#"{flash}{table}
<h2>Add a sink</h2>
<form method="post" action="/notifications" class="login" id="add-sink">{csrf}
<label>Name <input name="name" required maxlength="64" pattern="[A-Za-z0-9._-]+"></label>
<label>Kind <select name="kind"><option value="webhook">webhook (JSON, signed)</option><option value="slack">slack</option><option value="ntfy">ntfy</option></select></label>
<label>URL <input name="url" type="url" required placeholder="https://…"></label>
<label>Secret <input name="secret" type="password" autocomplete="off" placeholder="webhook: HMAC key, 16+ characters; ntfy: optional token"></label>
<label>Events <input name="events" placeholder="all, or a comma-separated list"></label>
<button type="submit">Add</button></form>
<p class="muted">Event kinds: {kinds}. A webhook gets the event's JSON with <code>Idempotency-Key</code> and <code>X-Container-Upgrader-Signature: sha256=HMAC</code>; each sink gets its events in order, retried until delivered.</p>"#,
        csrf = csrf_field(csrf),
        kinds = escape(&kinds.join(", ")),
    );
    layout("Notifications", Some(session), &body)
}

/// `GET /notifications`.
pub async fn list(
    State(state): State<FleetState>,
    Authed(session): Authed,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    session.require(Role::Admin)?;
    let sinks = state.store.sinks().await?;
    Ok(Html(render(&sinks, &session, &done)).into_response())
}

/// The add form's fields.
#[derive(Debug, Deserialize)]
pub struct AddForm {
    csrf: Option<String>,
    name: String,
    kind: String,
    url: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    events: String,
}

/// `POST /notifications`: adds a sink.
pub async fn add(
    State(state): State<FleetState>,
    Authed(session): Authed,
    headers: HeaderMap,
    Form(form): Form<AddForm>,
) -> Result<Response, PageError> {
    check_post(&session, &headers, form.csrf.as_deref())?;
    session.require(Role::Admin)?;
    let kind = SinkKind::parse(&form.kind).map_err(FleetError::BadRequest)?;
    let sink = NewSink {
        name: form.name.trim().to_string(),
        kind,
        url: form.url.trim().to_string(),
        secret: Some(form.secret.trim().to_string()).filter(|s| !s.is_empty()),
        events: form
            .events
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty() && *e != "all")
            .map(str::to_string)
            .collect(),
    };
    let audit = session.principal.audit(
        "notification.add",
        format!("sink {}", sink.name),
        crate::notify::api::added(&sink),
    );
    let added = state.store.add_sink(&sink, Source::Page, Some(&audit)).await?;
    Ok(Redirect::to(&format!("/notifications?added={}", urlencode(&added.name))).into_response())
}

/// The buttons' field.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

/// `POST /notifications/{id}/test` and `/notifications/{id}/remove`.
pub async fn command(
    State(state): State<FleetState>,
    Authed(session): Authed,
    Path((id, command)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    check_post(&session, &headers, form.csrf.as_deref())?;
    session.require(Role::Admin)?;
    let name = state.store.sink(&id).await?.name;
    match command.as_str() {
        "test" => {
            let audit =
                session.principal.audit("notification.test", format!("sink {id}"), "test event queued");
            state.store.test_sink(&id, Some(&audit)).await?;
            Ok(Redirect::to(&format!("/notifications?tested={}", urlencode(&name))).into_response())
        }
        "remove" => {
            let audit = session.principal.audit(
                "notification.remove",
                format!("sink {id}"),
                "sink removed with its waiting events",
            );
            state.store.remove_sink(&id, Some(&audit)).await?;
            Ok(Redirect::to(&format!("/notifications?removed={}", urlencode(&name))).into_response())
        }
        other => Err(FleetError::NotFound(format!("no sink command `{other}`; test or remove")).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(name: &str, source: Source, backlog: i64) -> SinkInfo {
        SinkInfo {
            id: "s1".into(),
            name: name.into(),
            kind: SinkKind::Webhook,
            url: "https://h.example/x".into(),
            secret: Some("set"),
            events: Vec::new(),
            source,
            created_at: "2026-12-06T00:00:00Z".into(),
            backlog,
            oldest_waiting: (backlog > 0).then(|| "2026-12-06T00:00:01Z".into()),
            attempts: 3,
            next_attempt_at: Some("2026-12-06T00:00:09Z".into()),
            last_error: (backlog > 0).then(|| "the sink answered 500 <x>".into()),
            last_delivered_at: None,
            abandoned: 0,
        }
    }

    #[test]
    fn sinks_show_their_queue_and_only_page_sinks_can_be_removed() {
        let html = render(
            &[sink("<b>hook</b>", Source::Page, 2), sink("filed", Source::File, 0)],
            &Session { csrf: "tok".into(), principal: crate::access::Principal::server() },
            &Done::default(),
        );
        assert!(html.contains("&lt;b&gt;hook&lt;/b&gt;") && !html.contains("<b>hook</b>"), "{html}");
        assert!(html.contains("2 waiting") && html.contains("the sink answered 500 &lt;x&gt;"), "{html}");
        assert_eq!(html.matches("/remove").count(), 1, "the file's sink has no Remove");
        assert_eq!(html.matches("Send test").count(), 2);
        assert!(html.contains("from the file") && html.contains("up to date"));
        assert!(html.contains(r#"name="csrf" value="tok""#));
    }
}
