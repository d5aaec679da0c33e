//! `/account`: a named user changes their own password — the current one,
//! then the new one twice. The current one is checked like a login (the
//! same per-address limiter, a verification slot for argon2, the delay
//! after a wrong one, and a `failed` audit row), so a borrowed session
//! cannot be used to guess it. The change is audited as `user.password`
//! and ends every session of the user; this browser gets a fresh one.
//!
//! The break-glass admin has no account here: their password is
//! `--admin-password-file`'s.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;

use super::html::{csrf_field, escape, layout};
use super::login::{matches, FAILED_LOGIN_DELAY};
use super::login_limit::Refused;
use super::session::{check_post, set_cookie, Authed, Session};
use super::PageError;
use crate::access::users::{check_password, hash_password_blocking, MIN_PASSWORD};
use crate::access::Role;
use crate::state::FleetState;
use crate::FleetError;

/// The account page: who, and the password form (for a named user).
pub fn render(session: &Session, notice: Option<&str>, error: Option<&str>) -> String {
    let p = &session.principal;
    let notice = notice.map(|n| format!(r#"<p class="notice" id="account-notice">{}</p>"#, escape(n)));
    let error =
        error.map(|e| format!(r#"<p class="error" id="account-error" role="alert">{}</p>"#, escape(e)));
    let form = match &p.user {
        Some(_) => format!(
            r#"<h2>Change your password</h2>
<form method="post" action="/account" class="login" id="password-form">{csrf}
<label for="current">Current password</label>
<input type="password" id="current" name="current" autocomplete="current-password" required>
<label for="password">New password ({min} characters or more)</label>
<input type="password" id="password" name="password" autocomplete="new-password" minlength="{min}" required>
<label for="again">New password again</label>
<input type="password" id="again" name="again" autocomplete="new-password" minlength="{min}" required>
<button type="submit" id="change-password">Change password</button>
<p class="hint">Every other browser logged in as you is logged out; your API tokens keep working (revoke them on the <a href="/tokens">API tokens</a> page).</p></form>"#,
            csrf = csrf_field(&session.csrf),
            min = MIN_PASSWORD,
        ),
        None => r#"<p id="break-glass-account">You are logged in as the break-glass admin, which is no user: its password is the one in <code>--admin-password-file</code> (or the admin token). Named users are added on the <a href="/users">Users</a> page.</p>"#.into(),
    };
    let body = format!(
        r#"{notice}{error}<table class="facts"><tr><th>User</th><td id="account-user">{who}</td></tr><tr><th>Role</th><td id="account-role">{role}</td></tr><tr><th>Via</th><td>{via}</td></tr></table>{form}"#,
        notice = notice.unwrap_or_default(),
        error = error.unwrap_or_default(),
        who = escape(&p.actor()),
        role = p.role,
        via = escape(&p.via()),
    );
    layout("Account", Some(session), &body)
}

/// `GET /account`'s query.
#[derive(Debug, Default, Deserialize)]
pub struct AccountQuery {
    #[serde(default)]
    changed: String,
}

/// `GET /account`.
pub async fn account(Authed(session): Authed, Query(q): Query<AccountQuery>) -> Result<Response, PageError> {
    session.require(Role::Viewer)?;
    let notice =
        (q.changed == "1").then_some("Password changed; every other session of yours was logged out.");
    Ok(Html(render(&session, notice, None)).into_response())
}

/// The password form's fields.
#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    csrf: Option<String>,
    #[serde(default)]
    current: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    again: String,
}

/// The form again with `error` and `status`.
fn again(session: &Session, status: StatusCode, error: &str) -> Response {
    (status, Html(render(session, None, Some(error)))).into_response()
}

/// 429 with `Retry-After`: the attempt was not heard.
fn not_now(session: &Session, refused: Refused) -> Response {
    let secs = refused.retry_after();
    let message = format!("Too many password attempts; try again in {secs} s.");
    let mut response = again(session, StatusCode::TOO_MANY_REQUESTS, &message);
    response.headers_mut().insert(header::RETRY_AFTER, secs.into());
    response
}

/// `POST /account` (CSRF): checks the current password, sets the new one
/// (audited), and gives this browser a new session.
pub async fn change_password(
    State(state): State<FleetState>,
    Authed(session): Authed,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Result<Response, PageError> {
    check_post(&session, &headers, form.csrf.as_deref())?;
    session.require(Role::Viewer)?;
    let Some(name) = session.principal.user.clone() else {
        return Err(FleetError::Invalid(
            "the break-glass admin has no password here; it is --admin-password-file's".into(),
        )
        .into());
    };
    if form.password != form.again {
        return Ok(again(&session, StatusCode::UNPROCESSABLE_ENTITY, "The two new passwords differ."));
    }
    if let Err(e) = check_password(&form.password) {
        return Ok(again(&session, StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()));
    }
    let ip = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |Extension(ConnectInfo(a))| a.ip());
    let attempt = match state.page.logins.admit(ip) {
        Ok(attempt) => attempt,
        Err(refused) => return Ok(not_now(&session, refused)),
    };
    let Some((stored, _)) = state.store.login_of(&name).await? else {
        return Err(FleetError::Conflict(format!("user `{name}` has no password set; ask an admin")).into());
    };
    let current = if form.current.len() > super::login::MAX_SECRET { "" } else { form.current.as_str() };
    match matches(&state, Arc::from(stored), current).await {
        Err(refused) => return Ok(not_now(&session, refused)),
        Ok(false) => {
            attempt.failed();
            let audit = session.principal.audit(
                "user.password",
                format!("user {name}"),
                "a password change whose current password did not match",
            );
            state.store.audit_alone(&audit, crate::access::audit::FAILED).await?;
            tokio::time::sleep(FAILED_LOGIN_DELAY).await;
            let wrong = "That is not your current password; nothing changed.";
            return Ok(again(&session, StatusCode::UNPROCESSABLE_ENTITY, wrong));
        }
        Ok(true) => attempt.succeeded(),
    }
    drop(attempt);
    let Ok(_slot) = state.page.logins.verification_slot().await else {
        return Ok(not_now(&session, Refused::Saturated));
    };
    let hash = hash_password_blocking(form.password).await?;
    let audit = session.principal.audit(
        "user.password",
        format!("user {name}"),
        "changed their own password; their sessions ended",
    );
    state.store.change_password(&name, &hash, &audit).await?;
    tracing::info!(user = %name, "password changed from the page");
    // Every session of the user ended with the change, this one too: this
    // browser gets a new one.
    let login = session.principal.audit("login", "page", "logged in again after changing the password");
    let (cookie, _) = state.store.create_session(&state.page.credential, &session.principal, &login).await?;
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, set_cookie(&cookie, state.page.secure_cookies)),
            (header::LOCATION, "/account?changed=1".into()),
        ],
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_user_gets_the_form_and_the_break_glass_admin_an_explanation() {
        let page = render(&Session::for_test(Role::Viewer), Some("done <ok>"), None);
        assert!(page.contains(r#"id="password-form""#) && page.contains("done &lt;ok&gt;"), "{page}");
        let mut glass = Session::for_test(Role::Admin);
        glass.principal.user = None;
        glass.principal.via = crate::access::Via::BreakGlassPage;
        let page = render(&glass, None, None);
        assert!(!page.contains(r#"id="password-form""#) && page.contains("break-glass-account"));
    }
}
