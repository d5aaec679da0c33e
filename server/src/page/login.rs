//! `GET/POST /login` and `POST /logout`.
//!
//! The admin logs in with the admin token, or with the password whose
//! argon2 hash `--admin-password-file` holds. A failed attempt is answered
//! after [`FAILED_LOGIN_DELAY`], one at a time, so guessing runs at about
//! one try a second for the whole server.

use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::html::{escape, layout};
use super::session::{self, check_post, clear_cookie, cookie, set_cookie, Authed};
use super::PageError;
use crate::state::FleetState;
use crate::{secret, FleetError};

/// How long a failed login waits before its answer.
pub const FAILED_LOGIN_DELAY: Duration = Duration::from_secs(1);
/// The longest secret the form takes (a password or the token).
const MAX_SECRET: usize = 1024;

fn login_page(state: &FleetState, message: Option<&str>) -> String {
    let what = if state.page.password_hash.is_some() { "Admin password or token" } else { "Admin token" };
    let message = message.map(|m| format!(r#"<p class="error" id="login-error">{}</p>"#, escape(m)));
    let body = format!(
        r#"{}<form method="post" action="/login" class="login">
<label for="secret">{what}</label>
<input type="password" id="secret" name="secret" autocomplete="current-password" required autofocus>
<button type="submit" id="login">Log in</button></form>"#,
        message.unwrap_or_default()
    );
    layout("Log in", None, &body)
}

/// `GET /login`: the form (or the fleet, when already logged in).
pub async fn form(State(state): State<FleetState>, headers: HeaderMap) -> Result<Response, PageError> {
    if let Some(value) = cookie(&headers) {
        if state.store.session(&value).await?.is_some() {
            return Ok(Redirect::to("/").into_response());
        }
    }
    Ok(Html(login_page(&state, None)).into_response())
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    secret: String,
}

/// Whether `given` is the admin token or the admin password.
async fn valid(state: &FleetState, given: &str) -> bool {
    if given.is_empty() || given.len() > MAX_SECRET {
        return false;
    }
    if secret::equal(given, &state.admin_token) {
        return true;
    }
    let Some(stored) = state.page.password_hash.clone() else { return false };
    let given = given.to_string();
    // argon2 is slow on purpose: off the async workers.
    tokio::task::spawn_blocking(move || password_matches(&stored, &given)).await.unwrap_or(false)
}

/// Whether `password` matches the argon2 PHC string `stored`.
pub fn password_matches(stored: &str, password: &str) -> bool {
    PasswordHash::new(stored)
        .is_ok_and(|hash| argon2::Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
}

/// Checks that `phc` is an argon2 PHC string (`$argon2id$v=19$…`), for
/// `--admin-password-file` at start.
pub fn check_password_hash(phc: &str) -> Result<(), String> {
    let hash = PasswordHash::new(phc).map_err(|e| format!("not a PHC hash string: {e}"))?;
    if !hash.algorithm.as_str().starts_with("argon2") {
        return Err(format!("the hash is {}, expected argon2id (or argon2i/argon2d)", hash.algorithm));
    }
    Ok(())
}

/// `POST /login`: a session cookie and the fleet, or the form again.
pub async fn login(
    State(state): State<FleetState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    if !session::same_origin(&headers) {
        return Err(FleetError::Forbidden("a login from another site is refused".into()).into());
    }
    let given = form.map(|Form(f)| f.secret).unwrap_or_default();
    if !valid(&state, &given).await {
        let _one_at_a_time = state.page.login_gate.lock().await;
        tokio::time::sleep(FAILED_LOGIN_DELAY).await;
        tracing::warn!("a failed admin login on the page");
        let page = login_page(&state, Some("That is not the admin token or password."));
        return Ok((StatusCode::UNAUTHORIZED, Html(page)).into_response());
    }
    let (value, _) = state.store.create_session().await?;
    tracing::info!("an admin logged in on the page");
    Ok((
        StatusCode::SEE_OTHER,
        [(header::SET_COOKIE, set_cookie(&value, state.page.secure_cookies)), (header::LOCATION, "/".into())],
    )
        .into_response())
}

/// The logout form's fields.
#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    csrf: Option<String>,
}

/// `POST /logout` (with the CSRF token): ends the session.
pub async fn logout(
    State(state): State<FleetState>,
    Authed(session): Authed,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Result<Response, PageError> {
    check_post(&session, &headers, form.csrf.as_deref())?;
    if let Some(value) = cookie(&headers) {
        state.store.end_session(&value).await?;
    }
    Ok((
        StatusCode::SEE_OTHER,
        [(header::SET_COOKIE, clear_cookie(state.page.secure_cookies)), (header::LOCATION, "/login".into())],
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, SaltString};

    #[test]
    fn passwords_verify_against_their_argon2_hash_only() {
        let salt = SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").expect("a valid salt");
        let phc = argon2::Argon2::default()
            .hash_password(b"correct horse", &salt)
            .expect("hashing works")
            .to_string();
        assert!(check_password_hash(&phc).is_ok());
        assert!(password_matches(&phc, "correct horse"));
        assert!(!password_matches(&phc, "correct horse "));
        assert!(!password_matches("not a hash", "correct horse"));
        assert!(check_password_hash("plain text").is_err());
    }
}
