//! `/users`: an admin's page of the named users — who they are, their
//! role and status, who added them and how many API tokens they hold — and
//! the forms that add one, change a role, reset a password and remove one.
//!
//! A user added without a password, or reset, gets a one-time setup code:
//! the answer shows it this once (it is stored only hashed) with how the
//! user spends it. Reset and remove answer a confirmation page first.
//! Every POST carries the CSRF token, needs the admin role and is audited
//! by the store method it calls, with the same action names as the API
//! (`user.add`, `user.role`, `user.reset`, `user.remove`).

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::html::{csrf_field, escape, layout, urlencode};
use super::session::{check_post, Authed, Session};
use super::PageError;
use crate::access::users::{NewUser, UserInfo};
use crate::access::Role;
use crate::state::FleetState;

/// The roles, least first, for the selects.
pub const ROLES: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

/// A `<select name="role">` of `roles` with `current` chosen.
pub fn role_select(id: &str, roles: &[Role], current: Role) -> String {
    let options: String = roles
        .iter()
        .map(|r| {
            let selected = if *r == current { " selected" } else { "" };
            format!(r#"<option value="{r}"{selected}>{r}</option>"#)
        })
        .collect();
    format!(r#"<select name="role" id="{}" aria-label="role">{options}</select>"#, escape(id))
}

fn user_row(u: &UserInfo, csrf: &str) -> String {
    let path = escape(&urlencode(&u.name));
    let id = escape(&u.name);
    format!(
        r#"<tr data-user="{id}"><td class="name">{id}</td><td class="role">{role}</td><td class="status status-{status_class}">{status}</td><td class="time">{created}</td><td>{by}</td><td>{tokens}</td>
<td class="user-actions"><form method="post" action="/users/{path}/role" class="inline">{csrf}{select}<button type="submit" class="set-role">Change role</button></form>
<form method="post" action="/users/{path}/reset" class="inline">{csrf}<button type="submit" class="reset-user">Reset password…</button></form>
<form method="post" action="/users/{path}/remove" class="inline">{csrf}<button type="submit" class="remove-user">Remove…</button></form></td></tr>"#,
        role = u.role,
        status_class = escape(&u.status.replace(' ', "-")),
        status = escape(&u.status),
        created = escape(&u.created_at),
        by = escape(&u.created_by),
        tokens = u.tokens,
        csrf = csrf_field(csrf),
        select = role_select(&format!("role-{}", u.name), &ROLES, u.role),
    )
}

/// The users table and the add form.
pub fn render(users: &[UserInfo], session: &Session) -> String {
    let rows: String = users.iter().map(|u| user_row(u, &session.csrf)).collect();
    let empty = if users.is_empty() {
        r#"<p class="muted" id="no-users">No named user yet: everyone logs in with the break-glass admin token or password. Add one below.</p>"#
    } else {
        ""
    };
    let body = format!(
        r#"<p>A viewer reads everything; an operator also pins and runs campaigns; an admin also manages users, API tokens, enrolment and revocation. Changing a user's role, resetting or removing them logs them out; their API tokens follow their role at once.</p>
<table class="users" id="users"><thead><tr><th>User</th><th>Role</th><th>Status</th><th>Added (UTC)</th><th>Added by</th><th>Active API tokens</th><th></th></tr></thead><tbody>{rows}</tbody></table>{empty}
<h2>Add a user</h2>
<form method="post" action="/users" class="add-user" id="add-user">{csrf}
<label>Name <input type="text" name="name" id="new-user-name" maxlength="64" required pattern="[A-Za-z0-9][A-Za-z0-9._@\-]*"></label>
<label>Role {select}</label>
<button type="submit" id="add-user-button">Add user</button>
<p class="hint">They get a one-time setup code, shown once on the next page, with which they choose their own password.</p></form>"#,
        csrf = csrf_field(&session.csrf),
        select = role_select("new-user-role", &ROLES, Role::Viewer),
    );
    layout("Users", Some(session), &body)
}

/// The answer that shows a setup code this once, and how it is used.
fn setup_code_page(made: &NewUser, what: &str, session: &Session) -> String {
    let code = made.setup_code.as_deref().unwrap_or("");
    let body = format!(
        r#"<p class="notice" id="user-done">{what}</p>
<p>The one-time setup code for <strong>{name}</strong> ({role}); it is shown only this once and works until {until}:</p>
<p><code id="setup-code" class="secret">{code}</code></p>
<p class="hint">Copy it now and hand it to {name} by a channel you trust. They open <code>/login</code>, enter <strong>{name}</strong> as the user and the code as the password, then choose their own password. Lost it? “Reset password” makes a new one.</p>
<p><a href="/users">← Users</a></p>"#,
        what = escape(what),
        name = escape(&made.user.name),
        role = made.user.role,
        until = escape(made.setup_expires_at.as_deref().unwrap_or("")),
        code = escape(code),
    );
    layout("Setup code", Some(session), &body)
}

/// `GET /users` (admin).
pub async fn list(State(state): State<FleetState>, Authed(session): Authed) -> Result<Response, PageError> {
    session.require(Role::Admin)?;
    let users = state.store.users().await?;
    Ok(Html(render(&users, &session)).into_response())
}

/// The add form's fields.
#[derive(Debug, Deserialize)]
pub struct AddForm {
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
}

/// `POST /users` (admin, CSRF): adds the user with a setup code, shown
/// once.
pub async fn add(
    State(state): State<FleetState>,
    Authed(session): Authed,
    headers: HeaderMap,
    Form(form): Form<AddForm>,
) -> Result<Response, PageError> {
    check_post(&session, &headers, form.csrf.as_deref())?;
    session.require(Role::Admin)?;
    let name = form.name.trim();
    let role: Role = form.role.parse()?;
    crate::access::users::check_name(name)?;
    let audit = session.principal.audit(
        "user.add",
        format!("user {name}"),
        format!("added as {role}, with a setup code for the first login"),
    );
    let made = state.store.add_user(name, role, None, &audit).await?;
    let what = format!("User {name} added as {role}.");
    Ok((StatusCode::CREATED, Html(setup_code_page(&made, &what, &session))).into_response())
}

/// The fields of the per-user forms.
#[derive(Debug, Deserialize)]
pub struct UserForm {
    csrf: Option<String>,
    #[serde(default)]
    role: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /users/{name}/role` (admin, CSRF): the new role; back to the
/// users (or to the login, when an admin changed their own).
pub async fn set_role(
    State(state): State<FleetState>,
    Authed(session): Authed,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<UserForm>,
) -> Result<Response, PageError> {
    check_post(&session, &headers, form.csrf.as_deref())?;
    session.require(Role::Admin)?;
    let role: Role = form.role.parse()?;
    let before = state.store.user(&name).await?.role;
    if before == role {
        // Already so: nothing to change, nothing to audit, no session ended.
        return Ok(Redirect::to("/users").into_response());
    }
    let audit =
        session.principal.audit("user.role", format!("user {name}"), format!("role {before} → {role}"));
    state.store.set_role(&name, role, &audit).await?;
    tracing::info!(user = %name, %role, "role changed from the page");
    Ok(Redirect::to("/users").into_response())
}

/// "Reset X's password?" or "Remove X?": the confirmation step.
fn confirm_page(name: &str, action: &str, session: &Session) -> String {
    let (title, what, button) = match action {
        "reset" => (
            "Reset password",
            "This forgets their password, logs them out everywhere and makes a new one-time setup code (shown once on the next page) with which they choose a new password. Their API tokens keep working.",
            "Yes, reset",
        ),
        _ => (
            "Remove user",
            "This removes the user, logs them out everywhere and revokes every API token they hold. The audit log keeps what they did.",
            "Yes, remove",
        ),
    };
    let body = format!(
        r#"<h2>{title}: {name}?</h2><p id="confirm-what">{what}</p>
<form method="post" action="/users/{path}/{action}" class="command">{csrf}<input type="hidden" name="confirm" value="yes"><button type="submit" id="confirm">{button}</button></form>
<p><a href="/users" id="cancel">Cancel: back to the users</a></p>"#,
        name = escape(name),
        path = escape(&urlencode(name)),
        csrf = csrf_field(&session.csrf),
    );
    layout(&format!("{title}: {name}"), Some(session), &body)
}

/// `POST /users/{name}/reset` (admin, CSRF): a confirmation page, then
/// with `confirm=yes` the new setup code, shown once.
pub async fn reset(
    State(state): State<FleetState>,
    Authed(session): Authed,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<UserForm>,
) -> Result<Response, PageError> {
    if let Some(page) = confirm_first(&state, &session, &headers, &name, &form, "reset").await? {
        return Ok(page);
    }
    let audit = session.principal.audit(
        "user.reset",
        format!("user {name}"),
        "password forgotten, a new setup code made",
    );
    let made = state.store.reset_user(&name, &audit).await?;
    let what = format!("The password of {name} is forgotten and they are logged out.");
    Ok(Html(setup_code_page(&made, &what, &session)).into_response())
}

/// `POST /users/{name}/remove` (admin, CSRF): a confirmation page, then
/// with `confirm=yes` the user goes, back to the users.
pub async fn remove(
    State(state): State<FleetState>,
    Authed(session): Authed,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<UserForm>,
) -> Result<Response, PageError> {
    if let Some(page) = confirm_first(&state, &session, &headers, &name, &form, "remove").await? {
        return Ok(page);
    }
    let audit = session.principal.audit(
        "user.remove",
        format!("user {name}"),
        "removed, with their API tokens and sessions",
    );
    state.store.remove_user(&name, &audit).await?;
    tracing::info!(user = %name, "user removed from the page");
    Ok(Redirect::to("/users").into_response())
}

/// What an admin's action on user `name` needs first: a POST with the
/// CSRF token, the admin role, a user by that name and, until the form says
/// `confirm=yes`, the confirmation page (returned, nothing done).
async fn confirm_first(
    state: &FleetState,
    session: &Session,
    headers: &HeaderMap,
    name: &str,
    form: &UserForm,
    verb: &str,
) -> Result<Option<Response>, PageError> {
    check_post(session, headers, form.csrf.as_deref())?;
    session.require(Role::Admin)?;
    let user = state.store.user(name).await?;
    Ok((form.confirm != "yes").then(|| Html(confirm_page(&user.name, verb, session)).into_response()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, status: &str) -> UserInfo {
        UserInfo {
            name: name.into(),
            role: Role::Operator,
            status: status.into(),
            created_at: "2026-12-06T03:00:00Z".into(),
            created_by: "admin token (break-glass)".into(),
            tokens: 2,
        }
    }

    #[test]
    fn the_users_table_escapes_names_and_every_form_carries_the_csrf_token() {
        let session = Session::for_test(Role::Admin);
        let page = render(&[user("a<b", "active"), user("bob", "setup expired")], &session);
        assert!(!page.contains("a<b") && page.contains("a&lt;b"), "{page}");
        assert!(page.contains(r#"action="/users/a%3Cb/role""#), "{page}");
        assert!(page.contains(r#"<option value="operator" selected>operator</option>"#));
        assert!(page.contains("status-setup-expired"));
        let forms = page.matches("<form method=\"post\"").count();
        let tokens = page.matches(&format!(r#"name="csrf" value="{}""#, session.csrf)).count();
        assert_eq!(forms, tokens, "every form has the token (the logout one too)");
    }
}
