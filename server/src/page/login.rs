//! `GET/POST /login` and `POST /logout`.
//!
//! The admin logs in with the admin token, or with the password whose
//! argon2 hash `--admin-password-file` holds. How many attempts are heard,
//! and how fast, is [`super::login_limit`]'s; a failed one is answered
//! after [`FAILED_LOGIN_DELAY`]. A hash whose memory cost is over
//! [`MAX_HASH_MEMORY_KIB`] is refused at start: every verification
//! allocates it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use axum::extract::{ConnectInfo, Form, FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Extension;
use serde::Deserialize;

use super::html::{escape, layout};
use super::login_limit::Refused;
use super::session::{self, check_post, clear_cookie, cookie, set_cookie, Authed};
use super::PageError;
use crate::access::{Audit, Principal, Role, Via};
use crate::state::FleetState;
use crate::{secret, FleetError};

/// How long a failed login waits before its answer.
pub const FAILED_LOGIN_DELAY: Duration = Duration::from_secs(1);
/// The longest secret the form takes (a password or the token).
pub(super) const MAX_SECRET: usize = 1024;
/// The largest argon2 memory cost accepted for the admin password's hash
/// (256 MiB; the default is 19 MiB): each verification allocates it, and
/// [`super::login_limit::MAX_VERIFYING`] may run at once.
pub const MAX_HASH_MEMORY_KIB: u32 = 256 * 1024;
/// The largest argon2 time cost (passes) accepted.
pub const MAX_HASH_TIME_COST: u32 = 16;
/// The largest argon2 parallelism accepted.
pub const MAX_HASH_LANES: u32 = 16;

fn login_page(state: &FleetState, message: Option<&str>) -> String {
    let glass = if state.page.password_hash.is_some() { "admin password or token" } else { "admin token" };
    let message = message.map(|m| format!(r#"<p class="error" id="login-error">{}</p>"#, escape(m)));
    let body = format!(
        r#"{}<form method="post" action="/login" class="login">
<label for="name">User</label>
<input type="text" id="name" name="name" autocomplete="username" autofocus>
<label for="secret">Password (or your setup code)</label>
<input type="password" id="secret" name="secret" autocomplete="current-password" required>
<button type="submit" id="login">Log in</button>
<p class="hint">Break-glass: leave User empty and give the {glass}.</p></form>"#,
        message.unwrap_or_default()
    );
    layout("Log in", None, &body)
}

/// The form where a new user chooses their password with their setup
/// code.
fn setup_page(name: &str, code: &str, message: Option<&str>) -> String {
    let message = message.map(|m| format!(r#"<p class="error" id="setup-error">{}</p>"#, escape(m)));
    let body = format!(
        r#"{}<p>Welcome, {name}. Choose your password ({min} characters or more).</p>
<form method="post" action="/setup" class="login">
<input type="hidden" name="name" value="{name}"><input type="hidden" name="code" value="{code}">
<label for="password">New password</label>
<input type="password" id="password" name="password" autocomplete="new-password" minlength="{min}" required autofocus>
<label for="again">Again</label>
<input type="password" id="again" name="again" autocomplete="new-password" minlength="{min}" required>
<button type="submit" id="set-password">Set password and log in</button></form>"#,
        message.unwrap_or_default(),
        name = escape(name),
        code = escape(code),
        min = crate::access::users::MIN_PASSWORD,
    );
    layout("Choose your password", None, &body)
}

/// `GET /login`: the form (or the fleet, when already logged in).
pub async fn form(State(state): State<FleetState>, headers: HeaderMap) -> Result<Response, PageError> {
    if let Some(value) = cookie(&headers) {
        if state.store.session(&value, &state.page.credential).await?.is_some() {
            return Ok(Redirect::to("/").into_response());
        }
    }
    Ok(Html(login_page(&state, None)).into_response())
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    name: String,
    secret: String,
}

/// What a login attempt turned out to be.
enum Outcome {
    /// A session for this principal; the audit summary.
    In(Principal, &'static str),
    /// A user's valid setup code: they choose their password next.
    Setup,
    /// Nothing matched.
    Failed,
    /// Not heard now (too many verifications at once).
    NotNow(Refused),
}

/// Whether `given` is `stored`'s password; argon2 runs in one of the
/// limited verification slots, off the async workers (slow on purpose).
pub(super) async fn matches(state: &FleetState, stored: Arc<str>, given: &str) -> Result<bool, Refused> {
    let slot = state.page.logins.verification_slot().await?;
    let given = given.to_string();
    let matched =
        tokio::task::spawn_blocking(move || password_matches(&stored, &given)).await.unwrap_or(false);
    drop(slot);
    Ok(matched)
}

/// Checks a login: with a user name, that user's password (or setup
/// code); without one, the break-glass admin token or admin password.
async fn check(state: &FleetState, name: &str, given: &str, source: &str) -> Result<Outcome, PageError> {
    if given.is_empty() || given.len() > MAX_SECRET || name.len() > 64 {
        return Ok(Outcome::Failed);
    }
    let glass = |what| {
        let p = Principal { user: None, via: Via::BreakGlassPage, role: Role::Admin, source: source.into() };
        Ok(Outcome::In(p, what))
    };
    if name.is_empty() {
        if secret::equal(given, &state.admin_token) {
            return glass("logged in with the break-glass admin token");
        }
        let Some(stored) = state.page.password_hash.clone() else { return Ok(Outcome::Failed) };
        return match matches(state, stored, given).await {
            Ok(true) => glass("logged in with the break-glass admin password"),
            Ok(false) => Ok(Outcome::Failed),
            Err(refused) => Ok(Outcome::NotNow(refused)),
        };
    }
    if let Some((stored, role)) = state.store.login_of(name).await? {
        return match matches(state, Arc::from(stored), given).await {
            Ok(true) => {
                let p = Principal { user: Some(name.into()), via: Via::Page, role, source: source.into() };
                Ok(Outcome::In(p, "logged in"))
            }
            Ok(false) => Ok(Outcome::Failed),
            Err(refused) => Ok(Outcome::NotNow(refused)),
        };
    }
    if state.store.setup_code_valid(name, given).await? {
        return Ok(Outcome::Setup);
    }
    Ok(Outcome::Failed)
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
    let params = argon2::Params::try_from(&hash).map_err(|e| format!("its argon2 parameters: {e}"))?;
    if params.m_cost() > MAX_HASH_MEMORY_KIB {
        return Err(format!(
            "its memory cost m={} KiB is over the {MAX_HASH_MEMORY_KIB} KiB (256 MiB) this server accepts: \
             every login would allocate it; hash the password again with a smaller m (the default is 19456)",
            params.m_cost()
        ));
    }
    if params.t_cost() > MAX_HASH_TIME_COST || params.p_cost() > MAX_HASH_LANES {
        return Err(format!(
            "its time cost t={} or parallelism p={} is over the {MAX_HASH_TIME_COST} this server accepts",
            params.t_cost(),
            params.p_cost()
        ));
    }
    Ok(())
}

/// `POST /login`: a session cookie and the fleet, or the form again (429
/// when the attempt is not heard now, see [`super::login_limit`]).
pub async fn login(
    State(state): State<FleetState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    request: Request,
) -> Result<Response, PageError> {
    if !session::same_origin(request.headers()) {
        return Err(FleetError::Forbidden("a login from another site is refused".into()).into());
    }
    // In-process callers without an address share one.
    let ip = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |Extension(ConnectInfo(a))| a.ip());
    // Admitted (and given a slot) before the body is read: a refused
    // attempt costs neither a read nor a verification.
    let attempt = match admit(&state, ip).await? {
        Ok(attempt) => attempt,
        Err(not_heard) => return Ok(not_heard),
    };
    let Some(_slot) = state.guards.login_slot() else {
        let busy = "too many logins in progress; try again shortly";
        return Ok(crate::guard::too_many(crate::guard::RETRY_AFTER_SECS, busy.into()));
    };
    let form = Form::<LoginForm>::from_request(request, &state).await;
    let (name, given) = form.map(|Form(f)| (f.name.trim().to_string(), f.secret)).unwrap_or_default();
    let source = ip.to_string();
    let (principal, summary) = match check(&state, &name, &given, &source).await {
        Err(e) => return Err(e),
        Ok(Outcome::NotNow(refused)) => return Ok(not_now(&state, ip, refused)),
        Ok(Outcome::Setup) => {
            attempt.succeeded();
            tracing::info!(%ip, user = %name, "a new user opened their password setup");
            return Ok(Html(setup_page(&name, &given, None)).into_response());
        }
        Ok(Outcome::Failed) => {
            attempt.failed();
            state.store.login_failed(ip).await?;
            let who = if name.is_empty() { "break-glass admin".to_string() } else { name.clone() };
            let audit = Audit {
                actor: who,
                via: "page".into(),
                source,
                action: "login".into(),
                object: "page".into(),
                summary: "a login that did not match".into(),
            };
            state.store.audit_alone(&audit, crate::access::audit::FAILED).await?;
            tokio::time::sleep(FAILED_LOGIN_DELAY).await;
            let page = login_page(&state, Some("That user name and password do not match."));
            return Ok((StatusCode::UNAUTHORIZED, Html(page)).into_response());
        }
        Ok(Outcome::In(principal, summary)) => {
            attempt.succeeded();
            state.store.login_succeeded(ip).await?;
            (principal, summary)
        }
    };
    drop(attempt);
    logged_in(&state, &principal, summary).await
}

/// A new session for `principal` (audited with `summary` in the same
/// transaction): the cookie, and to the fleet.
async fn logged_in(state: &FleetState, principal: &Principal, summary: &str) -> Result<Response, PageError> {
    let audit = principal.audit("login", "page", summary);
    let (value, _) = state.store.create_session(&state.page.credential, principal, &audit).await?;
    Ok((
        StatusCode::SEE_OTHER,
        [(header::SET_COOKIE, set_cookie(&value, state.page.secure_cookies)), (header::LOCATION, "/".into())],
    )
        .into_response())
}

/// The setup form's fields.
#[derive(Debug, Deserialize)]
pub struct SetupForm {
    name: String,
    code: String,
    password: String,
    again: String,
}

/// `POST /setup`: a new user's setup code and the password they chose:
/// the password set (the code spent), a session, to the fleet.
pub async fn setup(
    State(state): State<FleetState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    request: Request,
) -> Result<Response, PageError> {
    if !session::same_origin(request.headers()) {
        return Err(FleetError::Forbidden("a request from another site is refused".into()).into());
    }
    let ip = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |Extension(ConnectInfo(a))| a.ip());
    let attempt = match admit(&state, ip).await? {
        Ok(attempt) => attempt,
        Err(not_heard) => return Ok(not_heard),
    };
    let Ok(Form(f)) = Form::<SetupForm>::from_request(request, &state).await else {
        return Err(FleetError::BadRequest("the form needs name, code, password and again".into()).into());
    };
    if f.code.len() > MAX_SECRET || !state.store.setup_code_valid(&f.name, &f.code).await? {
        attempt.failed();
        state.store.login_failed(ip).await?;
        tokio::time::sleep(FAILED_LOGIN_DELAY).await;
        let page =
            login_page(&state, Some("That setup code is not valid (used, expired or reset); ask an admin."));
        return Ok((StatusCode::UNAUTHORIZED, Html(page)).into_response());
    }
    let mismatch = (f.password != f.again).then_some("The two passwords differ.".to_string());
    let problem =
        mismatch.or_else(|| crate::access::users::check_password(&f.password).err().map(|e| e.to_string()));
    if let Some(problem) = problem {
        let page = setup_page(&f.name, &f.code, Some(&problem));
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page)).into_response());
    }
    attempt.succeeded();
    drop(attempt);
    let Ok(_slot) = state.page.logins.verification_slot().await else {
        let busy = "too many logins in progress; try again shortly";
        return Ok(crate::guard::too_many(crate::guard::RETRY_AFTER_SECS, busy.into()));
    };
    let hash = crate::access::users::hash_password_blocking(f.password).await?;
    let role = state.store.user(&f.name).await?.role;
    let principal = Principal { user: Some(f.name.clone()), via: Via::Page, role, source: ip.to_string() };
    let audit = principal.audit(
        "user.set-password",
        format!("user {}", f.name),
        "chose a password with the setup code",
    );
    if !state.store.complete_setup(&f.name, &f.code, &hash, &audit).await? {
        let page = login_page(&state, Some("That setup code was just used; log in with your password."));
        return Ok((StatusCode::UNAUTHORIZED, Html(page)).into_response());
    }
    logged_in(&state, &principal, "logged in after choosing a password").await
}

/// Admits a login or setup attempt from `ip`: this server's turn for the
/// address, then the wait every server sharing the database imposes after
/// its failures; the 429 answer when it is not heard now.
async fn admit<'a>(
    state: &'a FleetState,
    ip: IpAddr,
) -> Result<Result<super::login_limit::Attempt<'a>, Response>, PageError> {
    let attempt = match state.page.logins.admit(ip) {
        Ok(attempt) => attempt,
        Err(refused) => return Ok(Err(not_now(state, ip, refused))),
    };
    if let Some(secs) = state.store.login_wait(ip).await? {
        return Ok(Err(not_now(state, ip, Refused::Backoff(secs))));
    }
    Ok(Ok(attempt))
}

/// 429 with `Retry-After` and the form: the attempt was not heard.
fn not_now(state: &FleetState, ip: IpAddr, refused: Refused) -> Response {
    let secs = refused.retry_after();
    tracing::debug!(%ip, ?refused, "a login was not heard now");
    let page = login_page(state, Some(&format!("Too many login attempts; try again in {secs} s.")));
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Html(page)).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, secs.into());
    response
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
    // No role check: every role may end its own session.
    if let Some(value) = cookie(&headers) {
        let audit = session.principal.audit("logout", "page", "logged out");
        state.store.end_session(&value, &state.page.credential, &audit).await?;
    }
    Ok((
        StatusCode::SEE_OTHER,
        [(header::SET_COOKIE, clear_cookie(state.page.secure_cookies)), (header::LOCATION, "/login".into())],
    )
        .into_response())
}

/// `GET /logout-everywhere`: what it does, and the button (CSRF); an
/// admin's.
pub async fn everywhere_form(Authed(session): Authed) -> Result<Html<String>, PageError> {
    session.require(Role::Admin)?;
    let body = format!(
        r#"<p>This ends every session of the page, in every browser, this one too. Use it when a
browser you logged in from is lost or shared. (Restarting the server with a new admin token or
password does the same.)</p>
<form method="post" action="/logout-everywhere"><input type="hidden" name="csrf" value="{}">
<button type="submit" id="logout-everywhere">Log out everywhere</button></form>"#,
        escape(&session.csrf)
    );
    Ok(Html(layout("Log out everywhere", Some(&session), &body)))
}

/// `POST /logout-everywhere` (with the CSRF token): ends every session.
pub async fn logout_everywhere(
    State(state): State<FleetState>,
    Authed(session): Authed,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Result<Response, PageError> {
    check_post(&session, &headers, form.csrf.as_deref())?;
    session.require(Role::Admin)?;
    let audit = session.principal.audit("sessions.end-all", "page sessions", "every page session ended");
    let ended = state.store.end_all_sessions(&audit).await?;
    tracing::info!(ended, "every page session ended (log out everywhere)");
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
