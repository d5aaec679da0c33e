//! `/tokens`: API tokens on the page. Every logged-in user sees and
//! revokes their own; an admin sees and revokes everyone's (with a user
//! column) and makes tokens for any user. A new token is shown once, on
//! the answer to its form; the list never holds a secret (the store keeps
//! only its hash).
//!
//! The rules are the API's (`access::api`): a token's role is at most
//! the caller's when it is their own (and at most its user's, which the
//! store checks), another user's tokens are an admin's to touch, and the
//! break-glass admin — who is no user — makes tokens only for a named
//! user. Every POST carries the CSRF token and is audited as
//! `api-token.create` or `api-token.revoke`.

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::html::{csrf_field, escape, layout, urlencode};
use super::session::{check_post, Authed, Session};
use super::users_view::{role_select, ROLES};
use super::PageError;
use crate::access::api::may_touch;
use crate::access::tokens::{ApiTokenInfo, NewApiToken};
use crate::access::Role;
use crate::state::FleetState;
use crate::FleetError;

/// How long a token made on the page may be valid: the form's choices
/// (the store allows at most 366 days).
pub const VALIDITY: [(&str, i64); 4] =
    [("7d", 7 * DAY_MS), ("30d", 30 * DAY_MS), ("90d", 90 * DAY_MS), ("365d", 365 * DAY_MS)];
/// The choice the form starts on.
const DEFAULT_VALIDITY: &str = "30d";
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn token_row(t: &ApiTokenInfo, session: &Session, user_column: bool) -> String {
    let user = if user_column { format!("<td>{}</td>", escape(&t.user)) } else { String::new() };
    let revoke = if t.status == "active" {
        format!(
            r#"<form method="post" action="/tokens/{id}/revoke" class="inline">{csrf}<button type="submit" class="revoke-token">Revoke</button></form>"#,
            id = escape(&urlencode(&t.id)),
            csrf = csrf_field(&session.csrf),
        )
    } else {
        String::new()
    };
    format!(
        r#"<tr data-token="{id}"><td class="name">{name}</td>{user}<td>{role}</td><td class="token-{status}">{status}</td><td class="time">{created}</td><td class="time">{expires}</td><td class="time">{used}</td><td>{revoke}</td></tr>"#,
        id = escape(&t.id),
        name = escape(&t.name),
        role = t.role,
        status = escape(&t.status),
        created = escape(&t.created_at),
        expires = escape(&t.expires_at),
        used = escape(t.last_used_at.as_deref().unwrap_or("never")),
    )
}

/// The create form: roles up to the session's, the validity choices, and
/// for an admin a user select (the break-glass admin must pick one).
fn create_form(session: &Session, users: &[String]) -> String {
    let me = session.principal.user.as_deref();
    let user_field = if session.may(Role::Admin) {
        if users.is_empty() {
            return r#"<p class="muted" id="no-token-users">An API token belongs to a named user, and there is none yet: add one on the <a href="/users">Users</a> page first.</p>"#.into();
        }
        let none =
            if me.is_none() { r#"<option value="" selected disabled>choose a user</option>"# } else { "" };
        let options: String = users
            .iter()
            .map(|u| {
                let selected = if Some(u.as_str()) == me { " selected" } else { "" };
                format!(r#"<option value="{u}"{selected}>{u}</option>"#, u = escape(u))
            })
            .collect();
        format!(
            r#"<label>For user <select name="user" id="token-user" required>{none}{options}</select></label>"#
        )
    } else {
        String::new()
    };
    let roles: Vec<Role> = ROLES.into_iter().filter(|r| session.may(*r)).collect();
    let validity: String = VALIDITY
        .iter()
        .map(|(word, _)| {
            let selected = if *word == DEFAULT_VALIDITY { " selected" } else { "" };
            format!(r#"<option value="{word}"{selected}>{word}</option>"#)
        })
        .collect();
    format!(
        r#"<form method="post" action="/tokens" class="add-token" id="add-token">{csrf}
<label>Name <input type="text" name="name" id="token-name" maxlength="64" required placeholder="ci deploy"></label>
{user_field}<label>Role {roles}</label>
<label>Valid for <select name="expires_in" id="token-expires">{validity}</select></label>
<button type="submit" id="create-token">Create token</button>
<p class="hint">The token is shown once, on the next page. Its role is at most its user's, and it follows the user's role: lower the user and the token drops with them.</p></form>"#,
        csrf = csrf_field(&session.csrf),
        roles = role_select("token-role", &roles, Role::Viewer),
    )
}

/// The tokens table and the create form.
pub fn render(tokens: &[ApiTokenInfo], users: &[String], session: &Session) -> String {
    let everyone = session.may(Role::Admin);
    let rows: String = tokens.iter().map(|t| token_row(t, session, everyone)).collect();
    let (intro, user_th) = if everyone {
        ("Every user's API tokens, newest first.", "<th>User</th>")
    } else {
        ("Your API tokens, newest first.", "")
    };
    let empty =
        if tokens.is_empty() { r#"<p class="muted" id="no-tokens">No API token yet.</p>"# } else { "" };
    let body = format!(
        r#"<p>{intro} A token is for the <code>fleet</code> CLI (<code>--token-file</code>) and the API (<code>Authorization: Bearer …</code>).</p>
<table class="tokens" id="tokens"><thead><tr><th>Name</th>{user_th}<th>Role</th><th>Status</th><th>Created (UTC)</th><th>Expires</th><th>Last used</th><th></th></tr></thead><tbody>{rows}</tbody></table>{empty}
<h2>Create a token</h2>{form}"#,
        form = create_form(session, users),
    );
    layout("API tokens", Some(session), &body)
}

/// The answer that shows a new token this once.
fn made_page(made: &NewApiToken, session: &Session) -> String {
    let body = format!(
        r#"<p class="notice" id="token-done">API token {name} made for {user} ({role}), valid until {until}.</p>
<p>The token; it is shown only this once:</p>
<p><code id="api-token" class="secret">{token}</code> <button type="button" data-copy="api-token" class="copy" hidden>Copy</button></p>
<p class="hint">Copy it now into a file only you can read (<code>fleet --token-file FILE</code>) or your CI's secret store: the server keeps only its hash and cannot show it again. Lost it? Revoke it and make another.</p>
<p><a href="/tokens">← API tokens</a></p>"#,
        name = escape(&made.info.name),
        user = escape(&made.info.user),
        role = made.info.role,
        until = escape(&made.info.expires_at),
        token = escape(&made.token),
    );
    layout("API token made", Some(session), &body)
}

/// The user names an admin may make tokens for.
async fn user_names(state: &FleetState, session: &Session) -> Result<Vec<String>, FleetError> {
    if !session.may(Role::Admin) {
        return Ok(Vec::new());
    }
    Ok(state.store.users().await?.into_iter().map(|u| u.name).collect())
}

/// `GET /tokens`: one's own tokens; an admin's, everyone's.
pub async fn list(State(state): State<FleetState>, Authed(session): Authed) -> Result<Response, PageError> {
    session.require(Role::Viewer)?;
    let whose = if session.may(Role::Admin) { None } else { session.principal.user.as_deref() };
    let tokens = state.store.api_tokens(whose).await?;
    let users = user_names(&state, &session).await?;
    Ok(Html(render(&tokens, &users, &session)).into_response())
}

/// The create form's fields.
#[derive(Debug, Deserialize)]
pub struct CreateForm {
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    expires_in: String,
    #[serde(default)]
    user: String,
}

/// `POST /tokens` (CSRF): makes the token and shows it once.
pub async fn create(
    State(state): State<FleetState>,
    Authed(session): Authed,
    headers: HeaderMap,
    Form(form): Form<CreateForm>,
) -> Result<Response, PageError> {
    check_post(&session, &headers, form.csrf.as_deref())?;
    session.require(Role::Viewer)?;
    let by = &session.principal;
    let chosen = Some(form.user.trim()).filter(|u| !u.is_empty()).map(str::to_string);
    let Some(user) = chosen.or_else(|| by.user.clone()) else {
        return Err(FleetError::Invalid(
            "user: the break-glass admin belongs to no user; choose the user the token is for".into(),
        )
        .into());
    };
    may_touch(by, &user)?;
    let role: Role = form.role.parse()?;
    if by.user.as_deref() == Some(user.as_str()) && role > by.role {
        return Err(FleetError::Forbidden(format!(
            "a token of the {role} role is above the {} role of this session",
            by.role
        ))
        .into());
    }
    let Some((valid_word, valid_ms)) = VALIDITY.iter().find(|(w, _)| *w == form.expires_in.trim()) else {
        let allowed: Vec<&str> = VALIDITY.iter().map(|(w, _)| *w).collect();
        return Err(FleetError::Invalid(format!(
            "valid for `{}`: allowed {}",
            form.expires_in,
            allowed.join(", ")
        ))
        .into());
    };
    let name = form.name.trim();
    let audit = by.audit(
        "api-token.create",
        format!("user {user}"),
        format!("API token `{name}` ({role}) valid for {valid_word}"),
    );
    let made = state.store.create_api_token(&user, name, role, *valid_ms, &audit).await?;
    tracing::info!(user = %user, token = %made.info.id, "API token made from the page");
    Ok((StatusCode::CREATED, Html(made_page(&made, &session))).into_response())
}

/// The revoke form's fields.
#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    csrf: Option<String>,
}

/// `POST /tokens/{id}/revoke` (CSRF): one's own token, or any for an
/// admin; back to the list.
pub async fn revoke(
    State(state): State<FleetState>,
    Authed(session): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<RevokeForm>,
) -> Result<Response, PageError> {
    check_post(&session, &headers, form.csrf.as_deref())?;
    session.require(Role::Viewer)?;
    let token = state.store.api_token(&id).await?;
    may_touch(&session.principal, &token.user)?;
    let audit = session.principal.audit(
        "api-token.revoke",
        format!("user {}", token.user),
        format!("API token `{}` ({}) revoked", token.name, token.id),
    );
    state.store.revoke_api_token(&id, &audit).await?;
    tracing::info!(user = %token.user, token = %id, "API token revoked from the page");
    Ok(Redirect::to("/tokens").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(user: &str, status: &str) -> ApiTokenInfo {
        ApiTokenInfo {
            id: "0123abcd".into(),
            user: user.into(),
            name: "ci <deploy>".into(),
            role: Role::Viewer,
            status: status.into(),
            created_at: "2026-12-06T03:00:00Z".into(),
            expires_at: "2027-01-05T03:00:00Z".into(),
            last_used_at: None,
        }
    }

    #[test]
    fn the_form_offers_only_roles_up_to_the_sessions_and_admins_pick_the_user() {
        let viewer = render(&[token("tester", "active")], &[], &Session::for_test(Role::Viewer));
        assert!(viewer.contains(r#"<option value="viewer" selected>viewer</option>"#), "{viewer}");
        assert!(!viewer.contains(r#"value="operator""#) && !viewer.contains(r#"value="admin""#));
        assert!(!viewer.contains("<th>User</th>") && !viewer.contains(r#"name="user""#));
        assert!(viewer.contains("ci &lt;deploy&gt;") && viewer.contains("/tokens/0123abcd/revoke"));
        let admin = render(
            &[token("bob", "revoked")],
            &["bob".into(), "tester".into()],
            &Session::for_test(Role::Admin),
        );
        assert!(admin.contains("<th>User</th>") && admin.contains(r#"value="admin""#));
        assert!(admin.contains(r#"<option value="tester" selected>tester</option>"#), "{admin}");
        assert!(!admin.contains("/revoke"), "a revoked token has no button");
        for (word, _) in VALIDITY {
            assert!(admin.contains(&format!(r#"value="{word}""#)));
        }
    }
}
