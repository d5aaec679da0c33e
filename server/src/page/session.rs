//! Admin sessions of the page: a random cookie (stored hashed in the
//! `sessions` table), a CSRF token per session, and the checks every
//! state-changing request passes.
//!
//! The cookie is `HttpOnly; SameSite=Strict; Path=/` (and `Secure` when the
//! server speaks TLS) and expires after [`SESSION_TTL_MS`].
//!
//! A session is bound to the credentials it was made under: the stored
//! hash is of the cookie together with [`credential_fingerprint`] (of the
//! admin token and the password hash), so a restart with a new token or
//! password ends every older session with no table to rewrite. "Log out
//! everywhere" ends them all at once. SameSite alone
//! is not trusted to stop cross-site requests: every POST must also carry
//! the session's CSRF token (form field `csrf` or header `X-CSRF-Token`),
//! and a request whose `Origin` or `Sec-Fetch-Site` says it came from
//! elsewhere is refused.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::super::error::db;
use super::super::store::{now_ms, Store};
use super::super::{secret, FleetError};
use crate::access::users::stored_role;
use crate::access::{Audit, Principal, Role, Via};
use crate::state::FleetState;

/// The session cookie's name.
pub const COOKIE: &str = "cu_session";
/// How long a session lasts from login (12 hours: a working day).
pub const SESSION_TTL_MS: i64 = 12 * 60 * 60 * 1000;
/// The header a script sends the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A logged-in session: a named user's, or the break-glass admin's.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token every form of this session carries.
    pub csrf: String,
    /// Who is logged in, with the role in force now (a user's current
    /// role, read at every request) and this request's source address.
    pub principal: Principal,
}

impl Session {
    /// 403 (as a page) unless the session's user holds `role`.
    pub fn require(&self, role: Role) -> Result<(), FleetError> {
        self.principal.require(role)
    }

    /// Whether the session's user holds `role`: what the pages show (a
    /// form, a button, a link) follows it; what the server accepts follows
    /// [`Session::require`].
    pub fn may(&self, role: Role) -> bool {
        self.principal.role >= role
    }

    /// A named user's session with `role` (for tests of what each role
    /// sees).
    #[cfg(test)]
    pub fn for_test(role: Role) -> Self {
        let principal =
            Principal { user: Some("tester".into()), via: Via::Page, role, source: "127.0.0.1".into() };
        Self { csrf: "c".repeat(64), principal }
    }
}

impl Store {
    /// Starts a session for `principal` (a named user, or the break-glass
    /// admin) under `credential` ([`credential_fingerprint`]), writing the
    /// login's audit row in the same transaction: returns the cookie's
    /// value (shown once, stored only as its hash) and the session.
    /// Expired sessions are dropped.
    pub async fn create_session(
        &self,
        credential: &str,
        principal: &Principal,
        audit: &Audit,
    ) -> Result<(String, Session), FleetError> {
        let (cookie, csrf) = (secret::new_secret()?, secret::new_secret()?);
        let now = now_ms();
        let _gate = self.write_gate().await;
        let mut tx = self.pool.begin().await.map_err(db("starting a session"))?;
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db("dropping expired sessions"))?;
        sqlx::query(
            "INSERT INTO sessions (id_hash, csrf, created_at, expires_at, user_name) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(session_hash(&cookie, credential))
        .bind(&csrf)
        .bind(now)
        .bind(now.saturating_add(SESSION_TTL_MS))
        .bind(principal.user.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(db("storing a session"))?;
        audit.record(&mut tx, crate::access::audit::OK).await?;
        tx.commit().await.map_err(db("storing a session"))?;
        Ok((cookie, Session { csrf, principal: principal.clone() }))
    }

    /// The unexpired session whose cookie is `cookie`, made under
    /// `credential` (one made under other credentials is not found), with
    /// its user's current role (a removed user's session is not found).
    pub async fn session(&self, cookie: &str, credential: &str) -> Result<Option<Session>, FleetError> {
        let row: Option<(String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT s.csrf, s.user_name, u.role FROM sessions s LEFT JOIN users u ON u.name = s.user_name \
             WHERE s.id_hash = $1 AND s.expires_at > $2",
        )
        .bind(session_hash(cookie, credential))
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a session"))?;
        let principal = match row {
            None | Some((_, Some(_), None)) => return Ok(None),
            Some((csrf, Some(user), Some(role))) => (
                csrf,
                Principal {
                    user: Some(user),
                    via: Via::Page,
                    role: stored_role(&role)?,
                    source: String::new(),
                },
            ),
            Some((csrf, None, _)) => (
                csrf,
                Principal { user: None, via: Via::BreakGlassPage, role: Role::Admin, source: String::new() },
            ),
        };
        Ok(Some(Session { csrf: principal.0, principal: principal.1 }))
    }

    /// Ends the session of `cookie` (nothing if there is none).
    /// The logout's audit row is written with it.
    pub async fn end_session(&self, cookie: &str, credential: &str, audit: &Audit) -> Result<(), FleetError> {
        let _gate = self.write_gate().await;
        let mut tx = self.pool.begin().await.map_err(db("starting to end a session"))?;
        let done = sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(session_hash(cookie, credential))
            .execute(&mut *tx)
            .await
            .map_err(db("ending a session"))?;
        if done.rows_affected() == 1 {
            audit.record(&mut tx, crate::access::audit::OK).await?;
        }
        tx.commit().await.map_err(db("ending a session"))
    }

    /// Ends every session ("log out everywhere"); how many there were.
    pub async fn end_all_sessions(&self, audit: &Audit) -> Result<u64, FleetError> {
        let _gate = self.write_gate().await;
        let mut tx = self.pool.begin().await.map_err(db("starting to end every session"))?;
        let done = sqlx::query("DELETE FROM sessions")
            .execute(&mut *tx)
            .await
            .map_err(db("ending every session"))?;
        audit.record(&mut tx, crate::access::audit::OK).await?;
        tx.commit().await.map_err(db("ending every session"))?;
        Ok(done.rows_affected())
    }
}

/// What the sessions made under these credentials are bound to: a hash of
/// the admin token and the admin password's hash (neither is stored).
pub fn credential_fingerprint(admin_token: &str, password_hash: Option<&str>) -> String {
    secret::hash(&format!(
        "admin-token:{}\npassword:{}",
        secret::hash(admin_token),
        password_hash.unwrap_or("")
    ))
}

/// The stored form of a session's cookie under `credential`.
fn session_hash(cookie: &str, credential: &str) -> String {
    secret::hash(&format!("{credential}:{cookie}"))
}

/// The session cookie's value in `headers`, if it has the shape we issue
/// (64 hex digits); anything else is ignored unread.
pub fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(value: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}", SESSION_TTL_MS / 1000)
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}")
}

/// Whether the request may come from our own pages. A browser's
/// `Sec-Fetch-Site` (which pages cannot forge) decides when present: it must
/// be `same-origin`, or `none` (typed by the user). Without it, an `Origin`
/// must name the host the request was sent to. (`Origin` alone is not
/// enough where `Sec-Fetch-Site` exists: under our `Referrer-Policy:
/// no-referrer` Chromium sends `Origin: null` on our own forms.)
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.to_str(), Ok("same-origin" | "none"));
    }
    let value = |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap_or("\u{0}"));
    match value(header::ORIGIN) {
        None => true,
        Some(origin) => {
            let host = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
            host.is_some_and(|h| Some(h) == value(header::HOST))
        }
    }
}

/// Refuses a state-changing request unless it carries this session's CSRF
/// token (`given`, from the form, or the `X-CSRF-Token` header) and
/// passes [`same_origin`].
pub fn check_post(session: &Session, headers: &HeaderMap, given: Option<&str>) -> Result<(), FleetError> {
    let header = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    let token = given.or(header).unwrap_or("");
    if !secret::equal(token, &session.csrf) {
        return Err(FleetError::Forbidden(
            "this form is missing its CSRF token or it is stale; reload the page and try again".into(),
        ));
    }
    if !same_origin(headers) {
        return Err(FleetError::Forbidden("a request from another site is refused".into()));
    }
    Ok(())
}

/// A logged-in admin, from the session cookie. Without one, a page request
/// is sent to `/login` and a JSON request (`?format=json`) gets 401.
#[derive(Debug, Clone)]
pub struct Authed(pub Session);

impl FromRequestParts<FleetState> for Authed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &FleetState) -> Result<Self, Self::Rejection> {
        let found = match cookie(&parts.headers) {
            Some(value) => state
                .store
                .session(&value, &state.page.credential)
                .await
                .map_err(IntoResponse::into_response)?,
            None => None,
        };
        match found {
            Some(mut session) => {
                session.principal.source = crate::access::source(parts);
                Ok(Authed(session))
            }
            None if parts.uri.query().is_some_and(|q| q.split('&').any(|p| p == "format=json")) => {
                Err((StatusCode::UNAUTHORIZED, "log in again").into_response())
            }
            None => Err(Redirect::to("/login").into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("a valid header value"));
        }
        h
    }

    #[test]
    fn the_cookie_is_found_among_others_and_only_in_our_shape() {
        let good = "a".repeat(64);
        let h = headers(&[("cookie", &format!("x=1; {COOKIE}={good}; y=2"))]);
        assert_eq!(cookie(&h), Some(good.clone()));
        assert_eq!(
            cookie(&headers(&[("cookie", "x=1"), ("cookie", &format!("{COOKIE}={good}"))])),
            Some(good)
        );
        assert_eq!(cookie(&headers(&[("cookie", &format!("{COOKIE}=short"))])), None);
        assert_eq!(cookie(&headers(&[("cookie", &format!("{COOKIE}={}", "g".repeat(64)))])), None);
        assert_eq!(cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_under_tls() {
        let c = set_cookie("v", true);
        for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure", "Max-Age=43200"] {
            assert!(c.contains(part), "{c}");
        }
        assert!(!set_cookie("v", false).contains("Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }

    #[test]
    fn cross_site_requests_are_refused_even_with_the_token() {
        let session = Session { csrf: "t".repeat(64), principal: crate::access::Principal::server() };
        let token = session.csrf.clone();
        let ok = |pairs: &[(&'static str, &str)], given: Option<&str>| {
            check_post(&session, &headers(pairs), given).is_ok()
        };
        assert!(ok(&[("host", "h:1")], Some(&token)));
        assert!(ok(
            &[("host", "h:1"), ("origin", "http://h:1"), ("sec-fetch-site", "same-origin")],
            Some(&token)
        ));
        assert!(ok(&[("host", "h:1"), (CSRF_HEADER, &token)], None));
        assert!(!ok(&[("host", "h:1")], None), "no token");
        assert!(!ok(&[("host", "h:1")], Some("wrong")), "wrong token");
        assert!(!ok(&[("host", "h:1"), ("origin", "http://evil:1")], Some(&token)));
        assert!(!ok(&[("host", "h:1"), ("origin", "null")], Some(&token)));
        assert!(ok(&[("host", "h:1"), ("origin", "null"), ("sec-fetch-site", "same-origin")], Some(&token)));
        assert!(!ok(
            &[("host", "h:1"), ("origin", "http://h:1"), ("sec-fetch-site", "cross-site")],
            Some(&token)
        ));
        assert!(!ok(&[("host", "h:1"), ("sec-fetch-site", "cross-site")], Some(&token)));
        assert!(!ok(&[("host", "h:1"), ("sec-fetch-site", "same-site")], Some(&token)));
    }
}
